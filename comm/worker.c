/* sluice comm: the worker side of libsluice (sl_worker_*): a rank registers
 * with sluiced for its job, receives work orders, acknowledges them and
 * reports per-slot metrics (or that an accepted step failed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"
#include "sluice/sluice.h"

struct sl_worker {
	comm_peer_t peer;
	char job[COMM_JOB_MAX + 1];
	int32_t rank;
	uint32_t heartbeat_ms;
	uint64_t reregistered;
	uint64_t refused;      /* our reports sluiced refused (logged, not raised) */
	int64_t last_rx_ms;    /* last message from the daemon */
	int64_t last_probe_ms; /* last heartbeat we sent unasked */
};

static sl_err send_hello(sl_worker_t *w, uint64_t *id)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__WorkerHello h = SLUICE__WORKER_HELLO__INIT;
	char host[256] = "";
	gethostname(host, sizeof(host) - 1);
	h.job = w->job;
	h.rank = w->rank;
	h.host = host;
	h.pid = (uint32_t)getpid();
	h.version = (char *)SLUICE_VERSION;
	env.body_case = SLUICE__ENVELOPE__BODY_HELLO;
	env.hello = &h;
	return comm_peer_send(&w->peer, &env, id);
}

/* Answers the daemon's pings and re-registers when the daemon no longer
 * knows us (it restarted); every other message is left for the caller. */
static int worker_hook(comm_peer_t *p, Sluice__Envelope *env, void *arg)
{
	sl_worker_t *w = arg;
	w->last_rx_ms = comm_now_ms();
	if (env->body_case == SLUICE__ENVELOPE__BODY_HEARTBEAT) {
		Sluice__Envelope r = SLUICE__ENVELOPE__INIT;
		Sluice__Heartbeat hb = SLUICE__HEARTBEAT__INIT;
		hb.seq = env->heartbeat->seq;
		r.body_case = SLUICE__ENVELOPE__BODY_HEARTBEAT;
		r.heartbeat = &hb;
		if (comm_peer_send(p, &r, NULL) != SL_OK)
			SL_DEBUG(SL_SUB_COMM, "heartbeat answer not sent: %s", sl_errmsg());
		comm_envelope_free(&env);
		return 1;
	}
	if (env->body_case == SLUICE__ENVELOPE__BODY_ERROR && strcmp(env->error->field, "hello") == 0) {
		SL_INFO(SL_SUB_COMM, "sluiced does not know %s rank %d: registering again", w->job,
		        w->rank);
		w->reregistered++;
		if (send_hello(w, NULL) != SL_OK)
			SL_WARN(SL_SUB_COMM, "re-registering failed: %s", sl_errmsg());
		comm_envelope_free(&env);
		return 1;
	}
	/* sluiced refusing one of our reports (a step that left its history, a
	 * report it already has): the report is lost, the worker is not broken,
	 * so the refusal is logged rather than failing the next order's wait */
	if (env->body_case == SLUICE__ENVELOPE__BODY_ERROR &&
	    (strncmp(env->error->field, "ack.", 4) == 0 ||
	     strncmp(env->error->field, "metrics.", 8) == 0 ||
	     strncmp(env->error->field, "step_failed.", 12) == 0)) {
		char msg[256];
		comm_sanitize(msg, sizeof(msg), env->error->message);
		SL_WARN(SL_SUB_COMM, "%s rank %d: sluiced refused a report [%s]: %s", w->job, w->rank,
		        env->error->field, msg);
		w->refused++;
		comm_envelope_free(&env);
		return 1;
	}
	if (env->body_case == SLUICE__ENVELOPE__BODY_HELLO_REPLY) { /* a re-registration's */
		comm_envelope_free(&env);
		return 1;
	}
	return 0;
}

sl_err sl_worker_new(const char *endpoint, const sl_client_opts_t *opts, const char *job,
                     int32_t rank, int timeout_ms, sl_worker_t **out)
{
	uint64_t id;
	sl_err rc;
	*out = NULL;
	if (job == NULL || !comm_job_name_ok(job))
		return sl_seterr(SL_EINVAL, "'%s' is not a job name (1 to %d of [A-Za-z0-9._:@+/-])",
		                 job ? job : "(null)", COMM_JOB_MAX);
	if (rank < 0 || rank >= SL_MAX_RANKS)
		return sl_seterr(SL_ERANGE, "rank %d is outside [0, %d)", rank, SL_MAX_RANKS);
	sl_worker_t *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return sl_seterr(SL_ENOMEM, "sl_worker_new");
	snprintf(w->job, sizeof(w->job), "%s", job);
	w->rank = rank;
	rc = comm_peer_open(&w->peer, endpoint, opts, "w");
	if (rc != SL_OK) {
		free(w);
		return rc;
	}
	SL_CHECK_GOTO(send_hello(w, &id), rc, fail);
	SL_CHECK_GOTO(comm_peer_wait(&w->peer, timeout_ms, id, NULL, NULL), rc, fail);
	Sluice__Envelope *r = comm_peer_take(&w->peer, id);
	if (r->body_case == SLUICE__ENVELOPE__BODY_HELLO_REPLY) {
		w->heartbeat_ms = r->hello_reply->heartbeat_ms;
		w->last_rx_ms = comm_now_ms();
	} else if (r->body_case == SLUICE__ENVELOPE__BODY_ERROR) {
		rc = comm_error_raise(r->error, w->peer.error_field, sizeof(w->peer.error_field));
	} else {
		rc = sl_seterr(SL_EPROTO, "expected a hello reply, got %s",
		               comm_body_name(r->body_case));
	}
	comm_envelope_free(&r);
	if (rc != SL_OK)
		goto fail;
	*out = w;
	return SL_OK;
fail:
	comm_peer_close(&w->peer);
	free(w);
	return rc;
}

void sl_worker_free(sl_worker_t **w)
{
	if (w == NULL || *w == NULL)
		return;
	comm_peer_close(&(*w)->peer);
	free(*w);
	*w = NULL;
}

/* The daemon pings registered workers every heartbeat_ms. After three
 * silent intervals it may have restarted and forgotten us: a heartbeat of
 * ours makes it answer "send hello" (see worker_hook), and we register. */
static void probe_daemon(sl_worker_t *w)
{
	int64_t now = comm_now_ms(), hb = w->heartbeat_ms ? w->heartbeat_ms : 1000;
	if (now - w->last_rx_ms < 3 * hb || now - w->last_probe_ms < hb)
		return;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__Heartbeat h = SLUICE__HEARTBEAT__INIT;
	env.body_case = SLUICE__ENVELOPE__BODY_HEARTBEAT;
	env.heartbeat = &h;
	w->last_probe_ms = now;
	if (comm_peer_send(&w->peer, &env, NULL) != SL_OK)
		SL_DEBUG(SL_SUB_COMM, "probe not sent: %s", sl_errmsg());
}

sl_err sl_worker_recv(sl_worker_t *w, int timeout_ms, sl_work_order_t **out)
{
	*out = NULL;
	int64_t deadline = timeout_ms < 0 ? -1 : comm_now_ms() + timeout_ms;
	int64_t hb = w->heartbeat_ms ? w->heartbeat_ms : 1000;
	for (;;) {
		probe_daemon(w);
		/* wait in slices of one heartbeat interval so probes go out */
		int left = (int)hb;
		if (deadline >= 0) {
			int64_t l = deadline - comm_now_ms();
			left = l > 0 ? (int)(l < hb ? l : hb) : 0;
		}
		sl_err wrc = comm_peer_wait(&w->peer, left, 0, worker_hook, w);
		if (wrc == SL_ETIMEOUT && (deadline < 0 || comm_now_ms() < deadline))
			continue;
		if (wrc == SL_ETIMEOUT)
			return sl_seterr(SL_ETIMEOUT, "no work order from %s within %d ms",
			                 w->peer.endpoint, timeout_ms);
		if (wrc != SL_OK)
			return wrc;
		Sluice__Envelope *env = comm_peer_take(&w->peer, 0);
		if (env->body_case == SLUICE__ENVELOPE__BODY_WORK_ORDER) {
			sl_err rc = comm_order_from_proto(env->work_order, out);
			comm_envelope_free(&env);
			return rc;
		}
		if (env->body_case == SLUICE__ENVELOPE__BODY_ERROR) {
			sl_err rc = comm_error_raise(env->error, w->peer.error_field,
			                             sizeof(w->peer.error_field));
			comm_envelope_free(&env);
			return rc;
		}
		SL_DEBUG(SL_SUB_COMM, "worker ignores a %s message", comm_body_name(env->body_case));
		comm_envelope_free(&env);
	}
}

sl_err sl_worker_ack(sl_worker_t *w, const sl_work_order_t *o, sl_err status, const char *message)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__WorkAck ack = SLUICE__WORK_ACK__INIT;
	Sluice__Error err = SLUICE__ERROR__INIT;
	ack.job = w->job;
	ack.step = o->step;
	ack.rank = w->rank;
	if (status != SL_OK) {
		err.code = (int32_t)status;
		err.code_name = (char *)sl_errname(status);
		err.message = (char *)(message ? message : sl_strerror(status));
		ack.error = &err;
	}
	env.body_case = SLUICE__ENVELOPE__BODY_ACK;
	env.ack = &ack;
	return comm_peer_send(&w->peer, &env, NULL);
}

sl_err sl_worker_step_failed(sl_worker_t *w, uint64_t step, sl_err status, const char *message)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__StepFailed f = SLUICE__STEP_FAILED__INIT;
	Sluice__Error err = SLUICE__ERROR__INIT;
	if (status == SL_OK)
		return sl_seterr(SL_EINVAL, "sl_worker_step_failed: status SL_OK is not a failure");
	f.job = w->job;
	f.step = step;
	f.rank = w->rank;
	err.code = (int32_t)status;
	err.code_name = (char *)sl_errname(status);
	err.message = (char *)(message ? message : sl_strerror(status));
	f.error = &err;
	env.body_case = SLUICE__ENVELOPE__BODY_STEP_FAILED;
	env.step_failed = &f;
	return comm_peer_send(&w->peer, &env, NULL);
}

sl_err sl_worker_metrics(sl_worker_t *w, uint64_t step, double step_ms,
                         const sl_slot_metrics_t *slots, int32_t n)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__WorkerMetrics m = SLUICE__WORKER_METRICS__INIT;
	if (n < 0 || n > 65536)
		return sl_seterr(SL_ERANGE, "%d slot metrics (limit 65536)", n);
	/* what sluiced would refuse is refused here, naming the field */
	if (!(isfinite(step_ms) && step_ms >= 0))
		return sl_seterr(SL_ERANGE, "metrics step_ms is %g (expected finite, >= 0)", step_ms);
	for (int32_t i = 0; i < n; i++) {
		if (!(isfinite(slots[i].compute_ms) && slots[i].compute_ms >= 0))
			return sl_seterr(SL_ERANGE, "metrics slots[%d].compute_ms is %g (expected "
			                            "finite, >= 0)", i, slots[i].compute_ms);
		if (!(isfinite(slots[i].comm_ms) && slots[i].comm_ms >= 0))
			return sl_seterr(SL_ERANGE, "metrics slots[%d].comm_ms is %g (expected finite, "
			                            ">= 0)", i, slots[i].comm_ms);
	}
	Sluice__SlotMetrics *sm = calloc((size_t)(n > 0 ? n : 1), sizeof(*sm));
	Sluice__SlotMetrics **smp = calloc((size_t)(n > 0 ? n : 1), sizeof(*smp));
	if (sm == NULL || smp == NULL) {
		free(sm);
		free(smp);
		return sl_seterr(SL_ENOMEM, "metrics of %d slots", n);
	}
	for (int32_t i = 0; i < n; i++) {
		sluice__slot_metrics__init(&sm[i]);
		sm[i].slot = slots[i].slot;
		sm[i].compute_ms = slots[i].compute_ms;
		sm[i].comm_ms = slots[i].comm_ms;
		sm[i].bytes_sent = slots[i].bytes_sent;
		sm[i].bytes_recv = slots[i].bytes_recv;
		smp[i] = &sm[i];
	}
	m.job = w->job;
	m.step = step;
	m.rank = w->rank;
	m.step_ms = step_ms;
	m.n_slots = (size_t)n;
	m.slots = smp;
	env.body_case = SLUICE__ENVELOPE__BODY_METRICS;
	env.metrics = &m;
	sl_err rc = comm_peer_send(&w->peer, &env, NULL);
	free(sm);
	free(smp);
	return rc;
}

int sl_worker_next_event(sl_worker_t *w, sl_event_t *ev)
{
	return comm_peer_next_event(&w->peer, ev);
}
