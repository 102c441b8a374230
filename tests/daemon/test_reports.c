/* sluiced against forged and broken worker reports, over raw ZeroMQ
 * DEALERs posing as workers: reports on steps never dispatched to the
 * sender, ranks outside the step's cluster, duplicate acks and metrics,
 * NaN/inf/negative times, oversized byte counts and slot lists, one
 * connection registering several ranks. Each is refused with an error reply
 * naming the field, the step's status is unchanged, and the daemon goes on
 * serving; the per-job history (--history) stays bounded. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zmq.h>

#include "comm.h"
#include "harness.h"

#define HISTORY 4

static th_daemon_t daemon_;
static char endpoint[300];
static void *ctx;
static uint64_t next_id = 5000;
static void *socks[8]; /* closed by teardown, also after a failed check */
static int nsocks;

static int setup(void **state)
{
	(void)state;
	snprintf(endpoint, sizeof(endpoint), "ipc://%s/rep.sock", th_tmpdir());
	const char *args[] = {"--endpoint", endpoint, "--threads", "1", "--log-level", "error",
	                      "--policy", "static", "--history", "4", NULL};
	if (!th_daemon_start(&daemon_, args, NULL))
		return -1;
	ctx = zmq_ctx_new();
	return ctx != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < nsocks; i++)
		zmq_close(socks[i]);
	zmq_ctx_term(ctx);
	return th_daemon_stop(&daemon_) == 0 ? 0 : -1;
}

static void *peer(const char *id)
{
	void *s = zmq_socket(ctx, ZMQ_DEALER);
	int linger = 0;
	assert_non_null(s);
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(s, ZMQ_ROUTING_ID, id, strlen(id));
	assert_int_equal(zmq_connect(s, endpoint), 0);
	assert_true(nsocks < 8);
	socks[nsocks++] = s;
	return s;
}

/* Receives one envelope within 10 s (fails the test when none comes);
 * *size is the message's size in bytes when size is not NULL. */
static Sluice__Envelope *recv_env(void *s, size_t *size)
{
	zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
	assert_true(zmq_poll(&it, 1, 10000) == 1);
	zmq_msg_t m;
	zmq_msg_init(&m);
	assert_true(zmq_msg_recv(&m, s, 0) >= 0);
	if (size != NULL)
		*size = zmq_msg_size(&m);
	Sluice__Envelope *env = NULL;
	assert_int_equal(comm_decode(zmq_msg_data(&m), zmq_msg_size(&m), &env), SL_OK);
	zmq_msg_close(&m);
	return env;
}

/* Receives the next envelope that is not an event or a heartbeat (the
 * daemon sends those at any time); its kind is checked by the caller. */
static Sluice__Envelope *recv_kind(void *s, Sluice__Envelope__BodyCase body, size_t *size)
{
	(void)body;
	int64_t end = comm_now_ms() + 10000;
	for (;;) {
		if (comm_now_ms() > end)
			fail_msg("no reply but events and heartbeats for 10 s");
		Sluice__Envelope *env = recv_env(s, size);
		if (env->body_case != SLUICE__ENVELOPE__BODY_EVENT &&
		    env->body_case != SLUICE__ENVELOPE__BODY_HEARTBEAT)
			return env;
		comm_envelope_free(&env);
	}
}

static uint64_t send_env(void *s, Sluice__Envelope *env)
{
	void *buf;
	size_t len;
	env->version = COMM_WIRE_VERSION;
	env->request_id = next_id++;
	assert_int_equal(comm_encode(env, &buf, &len), SL_OK);
	assert_int_equal(zmq_send(s, buf, len, 0), (int)len);
	free(buf);
	return env->request_id;
}

/* Expects the next reply (events and heartbeats skipped) to be an error
 * with this code and field whose message holds part. */
static void expect_error(void *s, uint64_t id, sl_err code, const char *field, const char *part)
{
	Sluice__Envelope *env = recv_kind(s, SLUICE__ENVELOPE__BODY_ERROR, NULL);
	if (env->body_case != SLUICE__ENVELOPE__BODY_ERROR)
		fail_msg("expected an error for field %s, got %s", field,
		         comm_body_name(env->body_case));
	if (env->error->code != (int)code || strcmp(env->error->field, field) != 0)
		fail_msg("expected %s [%s], got %s [%s]: %s", sl_errname(code), field,
		         env->error->code_name, env->error->field, env->error->message);
	assert_int_equal(env->request_id, id);
	if (part != NULL && strstr(env->error->message, part) == NULL)
		fail_msg("message '%s' lacks '%s'", env->error->message, part);
	comm_envelope_free(&env);
}

static uint64_t hello(void *s, const char *job, int32_t rank)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__WorkerHello h = SLUICE__WORKER_HELLO__INIT;
	h.job = (char *)job;
	h.rank = rank;
	h.host = "forger";
	h.pid = 1;
	env.body_case = SLUICE__ENVELOPE__BODY_HELLO;
	env.hello = &h;
	return send_env(s, &env);
}

static void hello_ok(void *s, const char *job, int32_t rank)
{
	hello(s, job, rank);
	Sluice__Envelope *env = recv_kind(s, SLUICE__ENVELOPE__BODY_HELLO_REPLY, NULL);
	assert_int_equal(env->body_case, SLUICE__ENVELOPE__BODY_HELLO_REPLY);
	comm_envelope_free(&env);
}

static uint64_t ack(void *s, const char *job, uint64_t step, int32_t rank)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__WorkAck a = SLUICE__WORK_ACK__INIT;
	a.job = (char *)job;
	a.step = step;
	a.rank = rank;
	env.body_case = SLUICE__ENVELOPE__BODY_ACK;
	env.ack = &a;
	return send_env(s, &env);
}

static uint64_t step_failed(void *s, const char *job, uint64_t step, int32_t rank)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__StepFailed f = SLUICE__STEP_FAILED__INIT;
	Sluice__Error e = SLUICE__ERROR__INIT;
	e.code = SL_ECOMM;
	e.message = "forged";
	f.job = (char *)job;
	f.step = step;
	f.rank = rank;
	f.error = &e;
	env.body_case = SLUICE__ENVELOPE__BODY_STEP_FAILED;
	env.step_failed = &f;
	return send_env(s, &env);
}

/* Metrics of n slots (ids 0..n-1), each with these values. */
static uint64_t metrics(void *s, const char *job, uint64_t step, int32_t rank, double step_ms,
                        size_t n, double compute_ms, uint64_t bytes)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__WorkerMetrics m = SLUICE__WORKER_METRICS__INIT;
	Sluice__SlotMetrics sm[8], *smp[8];
	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++) {
		sluice__slot_metrics__init(&sm[i]);
		sm[i].slot = (int32_t)i;
		sm[i].compute_ms = compute_ms;
		sm[i].comm_ms = 1.0;
		sm[i].bytes_sent = bytes;
		sm[i].bytes_recv = bytes;
		smp[i] = &sm[i];
	}
	m.job = (char *)job;
	m.step = step;
	m.rank = rank;
	m.step_ms = step_ms;
	m.n_slots = n;
	m.slots = smp;
	env.body_case = SLUICE__ENVELOPE__BODY_METRICS;
	env.metrics = &m;
	return send_env(s, &env);
}

/* The status reply of job (caller frees); *size is its size in bytes. */
static Sluice__Envelope *status(void *s, const char *job, size_t *size)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__StatusRequest r = SLUICE__STATUS_REQUEST__INIT;
	r.job = (char *)job;
	env.body_case = SLUICE__ENVELOPE__BODY_STATUS_REQUEST;
	env.status_request = &r;
	send_env(s, &env);
	Sluice__Envelope *rep = recv_kind(s, SLUICE__ENVELOPE__BODY_STATUS_REPLY, size);
	assert_int_equal(rep->body_case, SLUICE__ENVELOPE__BODY_STATUS_REPLY);
	assert_int_equal(rep->status_reply->n_jobs, 1);
	return rep;
}

static const Sluice__StepStatus *find_step(const Sluice__Envelope *rep, uint64_t step)
{
	const Sluice__JobStatus *js = rep->status_reply->jobs[0];
	for (size_t i = 0; i < js->n_steps; i++)
		if (js->steps[i]->step == step)
			return js->steps[i];
	fail_msg("status lists no step %llu", (unsigned long long)step);
	return NULL;
}

/* Plans step of job over `ranks` ranks with a client; returns once the
 * plan is back (its orders are on their way to the registered ranks). */
static void plan(sl_client_t *c, const char *job, uint64_t step, int32_t ranks)
{
	int64_t len[4] = {900, 700, 500, 300};
	sl_plan_req_t r = th_req(job, step, len, 4);
	sl_plan_t *p = NULL;
	r.ranks = ranks;
	r.ranks_per_node = ranks;
	sl_err rc = sl_client_plan(c, &r, 10000, &p);
	if (rc != SL_OK)
		fail_msg("plan of %s step %llu: %s", job, (unsigned long long)step, sl_errmsg());
	sl_plan_free(&p);
}

/* The order of step sent to a worker socket: its group count. */
static size_t take_order(void *s, uint64_t step)
{
	Sluice__Envelope *env = recv_kind(s, SLUICE__ENVELOPE__BODY_WORK_ORDER, NULL);
	assert_int_equal(env->body_case, SLUICE__ENVELOPE__BODY_WORK_ORDER);
	assert_int_equal(env->work_order->step, step);
	size_t n = env->work_order->n_groups;
	comm_envelope_free(&env);
	return n;
}

static void test_forged_and_broken_reports(void **state)
{
	(void)state;
	const char *job = "rep";
	void *w0 = peer("rep-w0"), *w1 = peer("rep-w1"), *forger = peer("rep-forger");
	void *late = peer("rep-late");
	sl_client_t *c = NULL;
	assert_int_equal(sl_client_new(endpoint, NULL, &c), SL_OK);
	hello_ok(w0, job, 0);
	hello_ok(w1, job, 1);
	/* one connection is one rank: w0 cannot also be rank 2 */
	expect_error(w0, hello(w0, job, 2), SL_EINVAL, "hello.rank", "registered as rank 0");
	hello_ok(forger, job, 65535);
	plan(c, job, 1, 4);
	size_t groups0 = take_order(w0, 1);
	take_order(w1, 1);
	assert_true(groups0 >= 1 && groups0 < 8);
	/* rank 2 registers after step 1 went out: it got no order of it */
	hello_ok(late, job, 2);

	/* reports on orders the sender never got */
	expect_error(forger, ack(forger, job, 1, 65535), SL_ERANGE, "ack.rank",
	             "outside the 4-rank cluster");
	expect_error(forger, metrics(forger, job, 1, 65535, 5, 1, 1, 10), SL_ERANGE, "metrics.rank",
	             NULL);
	expect_error(forger, step_failed(forger, job, 1, 65535), SL_ERANGE, "step_failed.rank",
	             NULL);
	expect_error(late, ack(late, job, 1, 2), SL_ENOTFOUND, "ack.rank", "was sent no order");
	expect_error(late, step_failed(late, job, 1, 2), SL_ENOTFOUND, "step_failed.rank", NULL);
	expect_error(w0, ack(w0, job, 77, 0), SL_ENOTFOUND, "ack.step", "no step 77");
	/* posing as another registered rank is refused as before */
	expect_error(forger, ack(forger, job, 1, 0), SL_ENOTFOUND, "hello", NULL);

	/* bad metrics of a real order, before and after its ack */
	expect_error(w0, metrics(w0, job, 1, 0, NAN, 1, 1, 10), SL_ERANGE, "metrics.step_ms", "nan");
	ack(w0, job, 1, 0);
	expect_error(w0, ack(w0, job, 1, 0), SL_EINVAL, "ack.step", "already acknowledged");
	expect_error(w0, metrics(w0, job, 1, 0, -1, 1, 1, 10), SL_ERANGE, "metrics.step_ms", NULL);
	expect_error(w0, metrics(w0, job, 1, 0, 5, 1, INFINITY, 10), SL_ERANGE,
	             "metrics.slots[0].compute_ms", "inf");
	expect_error(w0, metrics(w0, job, 1, 0, 5, 1, 1, UINT64_MAX - 999), SL_ERANGE,
	             "metrics.slots[0].bytes_sent", "2^63-1");
	expect_error(w0, metrics(w0, job, 1, 0, 5, groups0 + 1, 1, 10), SL_ERANGE, "metrics.slots",
	             "slot metrics for an order of");
	size_t sz0 = 0;
	Sluice__Envelope *rep = status(forger, job, &sz0);
	const Sluice__StepStatus *st = find_step(rep, 1);
	assert_int_equal(st->dispatched, 2);
	assert_int_equal(st->acked, 1);
	assert_int_equal(st->nacked, 0);
	assert_int_equal(st->completed, 0);
	assert_int_equal(st->failed, 0);
	assert_int_equal(st->n_metrics, 0);
	assert_int_equal(st->n_outcomes, 2); /* ranks 0 and 1, nobody else */
	for (size_t i = 0; i < st->n_outcomes; i++)
		assert_true(st->outcomes[i]->rank == 0 || st->outcomes[i]->rank == 1);
	comm_envelope_free(&rep);

	/* good metrics are taken once; a second report of the step is refused */
	metrics(w0, job, 1, 0, 5, groups0, 2, 1000);
	expect_error(w0, metrics(w0, job, 1, 0, 5, groups0, 2, 1000), SL_EINVAL, "metrics.step",
	             "already reported");
	expect_error(w0, step_failed(w0, job, 1, 0), SL_EINVAL, "step_failed.step",
	             "already reported");
	rep = status(forger, job, NULL);
	st = find_step(rep, 1);
	assert_int_equal(st->completed, 1);
	assert_int_equal(st->failed, 0);
	assert_int_equal(st->n_metrics, 1);
	assert_int_equal(st->metrics[0]->rank, 0);
	assert_int_equal(st->metrics[0]->bytes_sent, 1000 * groups0);
	assert_true(isfinite(st->metrics[0]->step_ms));
	comm_envelope_free(&rep);
	/* w1's step_failed is its own and is taken, once */
	step_failed(w1, job, 1, 1);
	expect_error(w1, step_failed(w1, job, 1, 1), SL_EINVAL, "step_failed.step",
	             "already reported");
	rep = status(forger, job, NULL);
	assert_int_equal(find_step(rep, 1)->failed, 1);
	comm_envelope_free(&rep);

	/* many steps: status keeps the last --history of them, and its size
	 * stays that of a few steps */
	for (uint64_t k = 2; k <= 40; k++)
		plan(c, job, k, 4);
	size_t sz = 0;
	rep = status(forger, job, &sz);
	const Sluice__JobStatus *js = rep->status_reply->jobs[0];
	assert_int_equal(js->n_steps, HISTORY);
	assert_int_equal(js->steps[HISTORY - 1]->step, 40);
	if (sz > 8 * sz0 + 4096)
		fail_msg("status of %d steps is %zu bytes (of 1 step: %zu)", HISTORY, sz, sz0);
	comm_envelope_free(&rep);
	for (uint64_t k = 2; k <= 40; k++)
		take_order(w0, k);
	/* a report on a step that has left the history is refused */
	expect_error(w0, ack(w0, job, 1, 0), SL_ENOTFOUND, "ack.step", "the last 4 planned steps");

	/* and the daemon still plans */
	plan(c, "rep-other", 1, 4);
	sl_client_free(&c);
}

/* The worker library refuses bad metrics itself, and a report sluiced
 * refuses does not break the worker's next sl_worker_recv. */
static void test_worker_side(void **state)
{
	(void)state;
	const char *job = "rep-lib";
	sl_worker_t *w = NULL;
	sl_work_order_t *o = NULL;
	sl_client_t *c = NULL;
	assert_int_equal(sl_worker_new(endpoint, NULL, job, 0, 10000, &w), SL_OK);
	assert_int_equal(sl_client_new(endpoint, NULL, &c), SL_OK);
	plan(c, job, 1, 4);
	assert_int_equal(sl_worker_recv(w, 10000, &o), SL_OK);
	assert_int_equal(o->step, 1);
	sl_slot_metrics_t sm = {.slot = 0, .compute_ms = NAN, .comm_ms = 1};
	assert_int_equal(sl_worker_metrics(w, 1, 1.0, &sm, 1), SL_ERANGE);
	assert_non_null(strstr(sl_errmsg(), "slots[0].compute_ms"));
	assert_int_equal(sl_worker_metrics(w, 1, -INFINITY, NULL, 0), SL_ERANGE);
	assert_non_null(strstr(sl_errmsg(), "step_ms"));
	/* a second ack is refused by sluiced; the worker goes on */
	assert_int_equal(sl_worker_ack(w, o, SL_OK, NULL), SL_OK);
	assert_int_equal(sl_worker_ack(w, o, SL_OK, NULL), SL_OK);
	sl_work_order_free(&o);
	plan(c, job, 2, 4);
	assert_int_equal(sl_worker_recv(w, 10000, &o), SL_OK);
	assert_int_equal(o->step, 2);
	sl_work_order_free(&o);
	sl_client_free(&c);
	sl_worker_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_forged_and_broken_reports),
	    cmocka_unit_test(test_worker_side),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
