/* sluiced: workers: registration (hello), liveness (heartbeats), and their
 * reports (ack, metrics, step_failed), each taken only for an order that was
 * sent to that rank, once. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

void daemon_on_hello(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                     const Sluice__WorkerHello *h)
{
	char clean[COMM_JOB_MAX + 8];
	if (!comm_job_name_ok(h->job)) {
		comm_sanitize(clean, sizeof(clean), h->job);
		daemon_reply_error(s, rid, rid_len, id, SL_EINVAL, "hello.job",
		                   "'%s' is not a job name (1 to %d of [A-Za-z0-9._:@+/-])", clean, COMM_JOB_MAX);
		return;
	}
	if (h->rank < 0 || h->rank >= SL_MAX_RANKS) {
		daemon_reply_error(s, rid, rid_len, id, SL_ERANGE, "hello.rank", "rank %d is outside [0, %d)",
		            h->rank, SL_MAX_RANKS);
		return;
	}
	d_job_t *j = daemon_job_get(s, h->job);
	if (j == NULL) {
		daemon_reply_error(s, rid, rid_len, id, SL_EBUSY, "hello.job", "%s", sl_errmsg());
		return;
	}
	/* one rank per connection: a peer posing as many ranks would multiply
	 * the orders (and the reports) one process can make the daemon hold */
	for (int32_t i = 0; i < j->nworkers; i++) {
		const d_worker_t *o = &j->workers[i];
		if (o->alive && o->rank != h->rank && daemon_rid_eq(o, rid, rid_len)) {
			daemon_reply_error(s, rid, rid_len, id, SL_EINVAL, "hello.rank",
			                   "this connection is registered as rank %d of job %s already (one "
			                   "rank per connection)",
			                   o->rank, j->name);
			return;
		}
	}
	d_worker_t *w = daemon_job_worker(j, h->rank);
	if (w == NULL) {
		if (j->nworkers >= s->cfg.max_workers) {
			daemon_reply_error(s, rid, rid_len, id, SL_EBUSY, "hello.rank",
			                   "job %s has %d workers (max_workers=%lld)", j->name, j->nworkers,
			                   (long long)s->cfg.max_workers);
			return;
		}
		if (j->nworkers == j->workers_cap) {
			int32_t nc = j->workers_cap ? j->workers_cap * 2 : 8;
			d_worker_t *nw = realloc(j->workers, sizeof(*nw) * (size_t)nc);
			if (nw == NULL) {
				daemon_reply_error(s, rid, rid_len, id, SL_ENOMEM, "", "no memory for a worker");
				return;
			}
			j->workers = nw;
			j->workers_cap = nc;
		}
		w = &j->workers[j->nworkers++];
		memset(w, 0, sizeof(*w));
		w->rank = h->rank;
	} else if (w->alive && !daemon_rid_eq(w, rid, rid_len)) {
		SL_WARN(SL_SUB_DAEMON, "job %s rank %d registered again by a new peer (pid %u)", j->name,
		        h->rank, h->pid);
	}
	/* a hello repeated on the same connection is no news; anything else
	 * (first registration, a lost rank back, a new process) is */
	const char *joined = w->rid_len == 0      ? "joined"
	                     : !w->alive            ? "registered again after being lost"
	                     : !daemon_rid_eq(w, rid, rid_len) ? "registered again from a new connection"
	                                            : NULL;
	memcpy(w->rid, rid, rid_len);
	w->rid_len = rid_len;
	comm_sanitize(w->host, sizeof(w->host), h->host);
	w->pid = h->pid;
	w->alive = 1;
	daemon_job_metrics_workers(s, j);
	w->last_seen_ms = comm_now_ms();
	j->last_active_ms = w->last_seen_ms;
	SL_INFO(SL_SUB_DAEMON, "job %s: worker rank %d registered (pid %u on %s)", j->name, w->rank,
	        w->pid, w->host);

	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__HelloReply r = SLUICE__HELLO_REPLY__INIT;
	r.job = j->name;
	r.rank = w->rank;
	r.heartbeat_ms = (uint32_t)s->cfg.heartbeat_ms;
	env.body_case = SLUICE__ENVELOPE__BODY_HELLO_REPLY;
	env.hello_reply = &r;
	daemon_send(s, rid, rid_len, &env, id);
	if (joined != NULL) {
		char msg[256];
		snprintf(msg, sizeof(msg), "worker rank %d (pid %u on %s) of job %s %s", w->rank, w->pid,
		         w->host, j->name, joined);
		daemon_job_event(s, j, SLUICE__EVENT_KIND__EVENT_WORKER_JOINED, w->rank, 0, msg);
	}
}

/* The registered worker that sent a message about job/rank, or NULL after
 * telling the sender to register (field "hello"). */
static d_worker_t *sender_worker(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                                 const char *job, int32_t rank, d_job_t **jp)
{
	d_job_t *j = comm_job_name_ok(job) ? daemon_job_find(s, job) : NULL;
	d_worker_t *w = j != NULL ? daemon_job_worker(j, rank) : NULL;
	if (w == NULL || !w->alive || !daemon_rid_eq(w, rid, rid_len)) {
		char clean[COMM_JOB_MAX + 8];
		comm_sanitize(clean, sizeof(clean), job);
		daemon_reply_error(s, rid, rid_len, id, SL_ENOTFOUND, "hello",
		                   "job '%s' rank %d is not registered from this connection; send hello first",
		                   clean, rank);
		return NULL;
	}
	w->last_seen_ms = comm_now_ms();
	*jp = j;
	return w;
}

/* The outcome entry of rank in st (created PENDING), or NULL when the step
 * already tracks max_workers ranks or memory is short. */
static d_outcome_t *step_outcome(server_t *s, d_step_t *st, int32_t rank)
{
	for (int32_t i = 0; i < st->noutcomes; i++)
		if (st->outcomes[i].rank == rank)
			return &st->outcomes[i];
	if (st->noutcomes >= s->cfg.max_workers)
		return NULL;
	if (st->noutcomes == st->outcomes_cap) {
		int32_t nc = st->outcomes_cap ? st->outcomes_cap * 2 : 8;
		d_outcome_t *no = realloc(st->outcomes, sizeof(*no) * (size_t)nc);
		if (no == NULL)
			return NULL;
		st->outcomes = no;
		st->outcomes_cap = nc;
	}
	d_outcome_t *o = &st->outcomes[st->noutcomes++];
	memset(o, 0, sizeof(*o));
	o->rank = rank;
	return o;
}

/* Moves rank's outcome of st to state (with the sanitised error text),
 * keeping the completed/failed counters in step with it. */
static void step_set_outcome(server_t *s, d_step_t *st, int32_t rank, int32_t state,
                             const char *error)
{
	d_outcome_t *o = step_outcome(s, st, rank);
	if (o == NULL)
		return;
	if (o->state == SLUICE__RANK_STATE__RANK_COMPLETED)
		st->completed--;
	if (o->state == SLUICE__RANK_STATE__RANK_FAILED)
		st->failed--;
	if (o->state != state) {
		static const daemon_outcome_kind kinds[] = {
			[SLUICE__RANK_STATE__RANK_ACCEPTED] = DAEMON_OUTCOME_ACCEPTED,
			[SLUICE__RANK_STATE__RANK_REJECTED] = DAEMON_OUTCOME_REJECTED,
			[SLUICE__RANK_STATE__RANK_COMPLETED] = DAEMON_OUTCOME_COMPLETED,
			[SLUICE__RANK_STATE__RANK_FAILED] = DAEMON_OUTCOME_FAILED,
		};
		if (st->job != NULL && (state == SLUICE__RANK_STATE__RANK_ACCEPTED ||
		    state == SLUICE__RANK_STATE__RANK_REJECTED ||
		    state == SLUICE__RANK_STATE__RANK_COMPLETED ||
		    state == SLUICE__RANK_STATE__RANK_FAILED))
			daemon_metrics_job_outcome(s->metrics, st->job, kinds[state]);
	}
	o->state = state;
	if (state == SLUICE__RANK_STATE__RANK_COMPLETED)
		st->completed++;
	if (state == SLUICE__RANK_STATE__RANK_FAILED)
		st->failed++;
	comm_sanitize(o->error, sizeof(o->error), error ? error : "");
}

/* Records that rank was sent its order of st (with the order's group and
 * slot counts), so that its reports on that step are taken. */
void daemon_step_ordered(server_t *s, d_step_t *st, int32_t rank, int32_t ngroups,
                         int32_t nslots)
{
	d_outcome_t *o = step_outcome(s, st, rank);
	if (o == NULL)
		return;
	o->ngroups = ngroups;
	o->nslots = nslots;
}

/* The outcome of rank's order of job j's step, with the step in *stp; or
 * NULL after an error reply naming kind's field ("ack.step", ...) when the
 * step is not in the history, rank is outside its cluster, or rank got no
 * order of it. (sender_worker has checked that the sender is rank.) */
static d_outcome_t *report_outcome(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                                   d_job_t *j, const char *kind, uint64_t step, int32_t rank,
                                   d_step_t **stp)
{
	char field[32];
	d_step_t *st = daemon_job_find_step(j, step);
	if (st == NULL) {
		snprintf(field, sizeof(field), "%s.step", kind);
		daemon_reply_error(s, rid, rid_len, id, SL_ENOTFOUND, field,
		                   "job %s has no step %" PRIu64 " in its history (the last %d planned "
		                   "steps are kept)",
		                   j->name, step, j->hist_cap);
		return NULL;
	}
	snprintf(field, sizeof(field), "%s.rank", kind);
	if (st->ranks > 0 && rank >= st->ranks) {
		daemon_reply_error(s, rid, rid_len, id, SL_ERANGE, field,
		                   "rank %d is outside the %d-rank cluster of job %s step %" PRIu64, rank,
		                   st->ranks, j->name, step);
		return NULL;
	}
	for (int32_t i = 0; i < st->noutcomes; i++)
		if (st->outcomes[i].rank == rank) {
			*stp = st;
			return &st->outcomes[i];
		}
	daemon_reply_error(s, rid, rid_len, id, SL_ENOTFOUND, field,
	                   "rank %d was sent no order of job %s step %" PRIu64, rank, j->name, step);
	return NULL;
}

/* Refuses a second final report (metrics or step_failed) of one order;
 * 1 when this one may be taken. */
static int report_first(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                        const d_job_t *j, const char *field, uint64_t step, const d_outcome_t *o)
{
	if (!o->reported)
		return 1;
	daemon_reply_error(s, rid, rid_len, id, SL_EINVAL, field,
	                   "rank %d already reported the outcome of job %s step %" PRIu64 " (%s)", o->rank,
	                   j->name, step,
	                   o->state == SLUICE__RANK_STATE__RANK_FAILED ? "step_failed" : "metrics");
	return 0;
}

void daemon_on_ack(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                   const Sluice__WorkAck *m)
{
	d_job_t *j;
	d_worker_t *w = sender_worker(s, rid, rid_len, id, m->job, m->rank, &j);
	if (w == NULL)
		return;
	d_step_t *st = NULL;
	d_outcome_t *o = report_outcome(s, rid, rid_len, id, j, "ack", m->step, m->rank, &st);
	if (o == NULL)
		return;
	if (o->acked) {
		daemon_reply_error(s, rid, rid_len, id, SL_EINVAL, "ack.step",
		                   "rank %d already acknowledged job %s step %" PRIu64, m->rank, j->name,
		                   m->step);
		return;
	}
	o->acked = 1;
	w->acks++;
	if (m->error != NULL && m->error->code != 0) {
		char msg[200];
		comm_sanitize(msg, sizeof(msg), m->error->message);
		st->nacked++;
		step_set_outcome(s, st, m->rank, SLUICE__RANK_STATE__RANK_REJECTED, msg);
		SL_WARN(SL_SUB_DAEMON, "job %s step %" PRIu64 ": rank %d rejected its order: %s",
		        j->name, m->step, m->rank, msg);
	} else {
		st->acked++;
		/* an ack that comes after the step's outcome must not undo it */
		if (o->state == SLUICE__RANK_STATE__RANK_PENDING)
			step_set_outcome(s, st, m->rank, SLUICE__RANK_STATE__RANK_ACCEPTED, NULL);
	}
}

/* An accepted order that failed: recorded in the step's outcomes, logged,
 * and told to the job's client and other workers (EVENT_STEP_FAILED). */
void daemon_on_step_failed(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                           const Sluice__StepFailed *m)
{
	d_job_t *j;
	d_worker_t *w = sender_worker(s, rid, rid_len, id, m->job, m->rank, &j);
	if (w == NULL)
		return;
	d_step_t *st = NULL;
	d_outcome_t *o =
	    report_outcome(s, rid, rid_len, id, j, "step_failed", m->step, m->rank, &st);
	if (o == NULL || !report_first(s, rid, rid_len, id, j, "step_failed.step", m->step, o))
		return;
	o->reported = 1;
	char why[200], msg[512];
	comm_sanitize(why, sizeof(why),
	              m->error != NULL && m->error->message[0] != '\0' ? m->error->message
	                                                              : "(no reason given)");
	snprintf(msg, sizeof(msg), "rank %d of job %s failed step %" PRIu64 ": %s", m->rank,
	         j->name, m->step, why);
	SL_WARN(SL_SUB_DAEMON, "%s", msg);
	step_set_outcome(s, st, m->rank, SLUICE__RANK_STATE__RANK_FAILED, why);
	daemon_job_event(s, j, SLUICE__EVENT_KIND__EVENT_STEP_FAILED, m->rank, m->step, msg);
}

/* 1 when a time is a finite number >= 0; else an error reply naming the
 * field (index >= 0: "metrics.slots[index].name") and 0. */
static int metric_ms_ok(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                        const char *name, long index, double v)
{
	if (isfinite(v) && v >= 0)
		return 1;
	char field[64];
	if (index >= 0)
		snprintf(field, sizeof(field), "metrics.slots[%ld].%s", index, name);
	else
		snprintf(field, sizeof(field), "metrics.%s", name);
	daemon_reply_error(s, rid, rid_len, id, SL_ERANGE, field,
	                   "%s is %g (expected a finite number of milliseconds >= 0)", field, v);
	return 0;
}

/* Checks a metrics report against the order it reports on: finite,
 * non-negative times, no more slots than the order had groups, slot ids of
 * the plan, byte counts whose sums stay below 2^63. 1 when it may be taken;
 * else an error reply naming the field and 0. */
static int metrics_ok(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                      const Sluice__WorkerMetrics *m, const d_outcome_t *o)
{
	if (!metric_ms_ok(s, rid, rid_len, id, "step_ms", -1, m->step_ms))
		return 0;
	if (m->n_slots > (size_t)o->ngroups) {
		daemon_reply_error(s, rid, rid_len, id, SL_ERANGE, "metrics.slots",
		                   "%zu slot metrics for an order of %d groups (job %s step %" PRIu64
		                   " rank %d)",
		                   m->n_slots, o->ngroups, m->job, m->step, m->rank);
		return 0;
	}
	uint64_t sent = 0, recv = 0;
	for (size_t i = 0; i < m->n_slots; i++) {
		const Sluice__SlotMetrics *sm = m->slots[i];
		char field[64];
		if (sm->slot < 0 || sm->slot >= o->nslots) {
			snprintf(field, sizeof(field), "metrics.slots[%zu].slot", i);
			daemon_reply_error(s, rid, rid_len, id, SL_ERANGE, field,
			                   "slot %d is outside the plan's %d slots", sm->slot, o->nslots);
			return 0;
		}
		if (!metric_ms_ok(s, rid, rid_len, id, "compute_ms", (long)i, sm->compute_ms) ||
		    !metric_ms_ok(s, rid, rid_len, id, "comm_ms", (long)i, sm->comm_ms))
			return 0;
		const char *big = NULL;
		uint64_t v = 0;
		if (sm->bytes_sent > (uint64_t)INT64_MAX - sent) {
			big = "bytes_sent";
			v = sm->bytes_sent;
		} else if (sm->bytes_recv > (uint64_t)INT64_MAX - recv) {
			big = "bytes_recv";
			v = sm->bytes_recv;
		}
		if (big != NULL) {
			snprintf(field, sizeof(field), "metrics.slots[%zu].%s", i, big);
			daemon_reply_error(s, rid, rid_len, id, SL_ERANGE, field,
			                   "%s of %" PRIu64 " bytes takes the rank's total past 2^63-1", field,
			                   v);
			return 0;
		}
		sent += sm->bytes_sent;
		recv += sm->bytes_recv;
	}
	return 1;
}

void daemon_on_metrics(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                       const Sluice__WorkerMetrics *m)
{
	d_job_t *j;
	d_worker_t *w = sender_worker(s, rid, rid_len, id, m->job, m->rank, &j);
	if (w == NULL)
		return;
	d_step_t *st = NULL;
	d_outcome_t *o = report_outcome(s, rid, rid_len, id, j, "metrics", m->step, m->rank, &st);
	if (o == NULL || !report_first(s, rid, rid_len, id, j, "metrics.step", m->step, o) ||
	    !metrics_ok(s, rid, rid_len, id, m, o))
		return;
	o->reported = 1;
	d_rank_metrics_t *rm = NULL;
	if (st->nmetrics >= s->cfg.max_workers)
		return;
	if (st->nmetrics == st->metrics_cap) {
		int32_t nc = st->metrics_cap ? st->metrics_cap * 2 : 8;
		d_rank_metrics_t *nm = realloc(st->metrics, sizeof(*nm) * (size_t)nc);
		if (nm == NULL)
			return;
		st->metrics = nm;
		st->metrics_cap = nc;
	}
	rm = &st->metrics[st->nmetrics++];
	memset(rm, 0, sizeof(*rm));
	rm->rank = m->rank;
	rm->step_ms = m->step_ms;
	size_t n = m->n_slots < SLOT_METRICS_MAX ? m->n_slots : SLOT_METRICS_MAX;
	rm->slots = calloc(n ? n : 1, sizeof(*rm->slots));
	if (rm->slots == NULL)
		return;
	for (size_t i = 0; i < m->n_slots; i++) {
		const Sluice__SlotMetrics *sm = m->slots[i];
		rm->compute_ms += sm->compute_ms;
		rm->comm_ms += sm->comm_ms;
		rm->bytes_sent += sm->bytes_sent;
		rm->bytes_recv += sm->bytes_recv;
		if (i < n) {
			rm->slots[i].slot = sm->slot;
			rm->slots[i].compute_ms = sm->compute_ms;
			rm->slots[i].comm_ms = sm->comm_ms;
			rm->slots[i].bytes_sent = sm->bytes_sent;
			rm->slots[i].bytes_recv = sm->bytes_recv;
		}
	}
	rm->nslots = (int32_t)n;
	step_set_outcome(s, st, m->rank, SLUICE__RANK_STATE__RANK_COMPLETED, NULL);
}

/* Pings every live worker; a ping that cannot be routed means its
 * connection is gone (ROUTER_MANDATORY), so the worker is lost. */
void daemon_heartbeat_workers(server_t *s)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__Heartbeat hb = SLUICE__HEARTBEAT__INIT;
	hb.seq = ++s->hb_seq;
	env.body_case = SLUICE__ENVELOPE__BODY_HEARTBEAT;
	env.heartbeat = &hb;
	for (size_t i = 0; i < s->njobs; i++) {
		d_job_t *j = s->jobs[i];
		for (int32_t k = 0; k < j->nworkers; k++) {
			d_worker_t *w = &j->workers[k];
			if (!w->alive)
				continue;
			env.version = COMM_WIRE_VERSION;
			sl_err rc = comm_send(s->router, w->rid, w->rid_len, &env);
			if (rc == SL_ECLOSED)
				daemon_worker_lost(s, j, w, "its connection closed");
		}
	}
}
