/* sluiced against bad input, over a raw ZeroMQ DEALER: random and
 * truncated bytes, empty and multi-frame messages, valid messages of the
 * wrong type or version, zero/negative/huge lengths, 10^6 sequences,
 * unknown policy/profile, invalid profiles and clusters, an infeasible
 * batch, oversized messages, expired deadlines and a client leaving
 * mid-request. Every bad request gets exactly one error reply naming the
 * field; afterwards the daemon still serves, and nothing was lost. "Slow"
 * plans are small batches whose planner thread stalls for a set time
 * (PlanOptions.debug_delay_ms, enabled by --debug-plan-delay), so no
 * outcome depends on how fast the machine plans. */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "comm.h"
#include "harness.h"

static th_daemon_t daemon_;
static char endpoint[300];
static void *ctx, *sock;
static uint64_t next_id = 1000;

static int setup(void **state)
{
	(void)state;
	snprintf(endpoint, sizeof(endpoint), "ipc://%s/bad.sock", th_tmpdir());
	const char *args[] = {"--endpoint", endpoint, "--threads", "1", "--log-level", "error",
	                      "--policy", "static", "--max-seqs", "300000",
	                      "--max-request-bytes", "4m", "--debug-plan-delay", NULL};
	if (!th_daemon_start(&daemon_, args, NULL))
		return -1;
	ctx = zmq_ctx_new();
	sock = zmq_socket(ctx, ZMQ_DEALER);
	int linger = 0;
	zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(sock, ZMQ_ROUTING_ID, "raw-tester", 10);
	return zmq_connect(sock, endpoint) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	zmq_close(sock);
	zmq_ctx_term(ctx);
	return th_daemon_stop(&daemon_) == 0 ? 0 : -1;
}

/* Receives one reply within timeout_ms (NULL when none). */
static Sluice__Envelope *recv_env(void *s, int timeout_ms)
{
	zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
	if (zmq_poll(&it, 1, timeout_ms) <= 0)
		return NULL;
	zmq_msg_t m;
	zmq_msg_init(&m);
	if (zmq_msg_recv(&m, s, 0) < 0)
		return NULL;
	Sluice__Envelope *env = NULL;
	sl_err rc = comm_decode(zmq_msg_data(&m), zmq_msg_size(&m), &env);
	zmq_msg_close(&m);
	assert_int_equal(rc, SL_OK);
	return env;
}

/* Expects exactly one error reply with this code, id and blamed field. */
static void expect_error(uint64_t id, sl_err code, const char *field, const char *msg_part)
{
	Sluice__Envelope *env = recv_env(sock, 5000);
	assert_non_null(env);
	if (env->body_case != SLUICE__ENVELOPE__BODY_ERROR)
		fail_msg("expected an error reply, got %s", comm_body_name(env->body_case));
	if (env->error->code != (int)code)
		fail_msg("expected %s, got %s: %s", sl_errname(code), env->error->code_name,
		         env->error->message);
	assert_int_equal(env->request_id, id);
	assert_string_equal(env->error->field, field);
	assert_string_equal(env->error->code_name, sl_errname(code));
	if (msg_part != NULL && strstr(env->error->message, msg_part) == NULL)
		fail_msg("message '%s' lacks '%s'", env->error->message, msg_part);
	comm_envelope_free(&env);
}

static void send_raw(const void *data, size_t len)
{
	assert_int_equal(zmq_send(sock, data, len, 0), (int)len);
}

/* Packs and sends an envelope with a fresh request id; returns the id. */
static uint64_t send_env(Sluice__Envelope *env)
{
	void *buf;
	size_t len;
	env->version = env->version ? env->version : 1;
	env->request_id = next_id++;
	assert_int_equal(comm_encode(env, &buf, &len), SL_OK);
	send_raw(buf, len);
	free(buf);
	return env->request_id;
}

static uint64_t send_request(Sluice__PlanRequest *r)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.body_case = SLUICE__ENVELOPE__BODY_PLAN_REQUEST;
	env.plan_request = r;
	return send_env(&env);
}

/* A valid request of n sequences (lengths borrowed). */
static void make_request(Sluice__PlanRequest *r, Sluice__Cluster *cl, int64_t *len, size_t n)
{
	sluice__plan_request__init(r);
	sluice__cluster__init(cl);
	r->job = "bad-input";
	r->step = 1;
	r->lengths = len;
	r->n_lengths = n;
	cl->ranks = 8;
	cl->ranks_per_node = 8;
	r->cluster = cl;
}

/* The daemon still answers a good request with a plan (within wait_ms:
 * longer after a slow plan that holds the one planner thread). */
static void expect_serving_within(int wait_ms)
{
	int64_t len[8] = {100, 2000, 30000, 5, 77, 1024, 4096, 9};
	Sluice__PlanRequest r;
	Sluice__Cluster cl;
	make_request(&r, &cl, len, 8);
	uint64_t id = send_request(&r);
	Sluice__Envelope *env = recv_env(sock, wait_ms);
	assert_non_null(env);
	assert_int_equal(env->body_case, SLUICE__ENVELOPE__BODY_PLAN);
	assert_int_equal(env->request_id, id);
	assert_int_equal(env->plan->n_lengths, 8);
	comm_envelope_free(&env);
	assert_int_equal(kill(daemon_.pid, 0), 0);
}

static void expect_still_serving(void)
{
	expect_serving_within(5000);
}

static void test_garbage_bytes(void **state)
{
	(void)state;
	uint64_t x = 88172645463325252ull;
	for (int k = 0; k < 50; k++) {
		size_t n = 1 + (size_t)(x % 3000);
		unsigned char *b = malloc(n);
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			b[i] = (unsigned char)x;
		}
		send_raw(b, n);
		free(b);
		/* random bytes rarely parse; when they do, the envelope is still
		 * refused (version, body or type) */
		Sluice__Envelope *env = recv_env(sock, 5000);
		assert_non_null(env);
		assert_int_equal(env->body_case, SLUICE__ENVELOPE__BODY_ERROR);
		assert_true(env->error->code == SL_EPROTO);
		comm_envelope_free(&env);
	}
	send_raw("", 0);
	expect_error(0, SL_EPROTO, "envelope", "empty message");
	expect_still_serving();
}

static void test_truncated_and_multiframe(void **state)
{
	(void)state;
	int64_t len[100];
	th_lengths(5, len, 100, 100000);
	Sluice__PlanRequest r;
	Sluice__Cluster cl;
	make_request(&r, &cl, len, 100);
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.version = 1;
	env.request_id = 42;
	env.body_case = SLUICE__ENVELOPE__BODY_PLAN_REQUEST;
	env.plan_request = &r;
	void *buf;
	size_t n;
	assert_int_equal(comm_encode(&env, &buf, &n), SL_OK);
	send_raw(buf, n / 2);
	expect_error(0, SL_EPROTO, "envelope", "truncated");
	send_raw(buf, n - 1);
	expect_error(0, SL_EPROTO, "envelope", NULL);
	/* two frames */
	assert_int_equal(zmq_send(sock, buf, n, ZMQ_SNDMORE), (int)n);
	send_raw(buf, n);
	expect_error(0, SL_EPROTO, "envelope", "2 frames");
	free(buf);
	expect_still_serving();
}

static void test_wrong_type_and_version(void **state)
{
	(void)state;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__Plan plan = SLUICE__PLAN__INIT;
	env.body_case = SLUICE__ENVELOPE__BODY_PLAN;
	env.plan = &plan;
	uint64_t id = send_env(&env);
	expect_error(id, SL_EPROTO, "envelope.body", "plan messages");

	Sluice__Envelope e2 = SLUICE__ENVELOPE__INIT;
	Sluice__WorkOrder wo = SLUICE__WORK_ORDER__INIT;
	e2.body_case = SLUICE__ENVELOPE__BODY_WORK_ORDER;
	e2.work_order = &wo;
	id = send_env(&e2);
	expect_error(id, SL_EPROTO, "envelope.body", "work_order");

	Sluice__Envelope e3 = SLUICE__ENVELOPE__INIT;
	Sluice__StatusRequest st = SLUICE__STATUS_REQUEST__INIT;
	e3.body_case = SLUICE__ENVELOPE__BODY_STATUS_REQUEST;
	e3.status_request = &st;
	e3.version = 7;
	send_env(&e3);
	expect_error(0, SL_EPROTO, "envelope", "version is 7");

	Sluice__Envelope e4 = SLUICE__ENVELOPE__INIT;
	send_env(&e4);
	expect_error(0, SL_EPROTO, "envelope", "no body");

	/* an ack from a peer that never said hello */
	Sluice__Envelope e5 = SLUICE__ENVELOPE__INIT;
	Sluice__WorkAck ack = SLUICE__WORK_ACK__INIT;
	ack.job = "bad-input";
	e5.body_case = SLUICE__ENVELOPE__BODY_ACK;
	e5.ack = &ack;
	id = send_env(&e5);
	expect_error(id, SL_ENOTFOUND, "hello", "not registered");
	expect_still_serving();
}

static void test_bad_lengths(void **state)
{
	(void)state;
	int64_t len[4] = {100, 0, 5, 6};
	Sluice__PlanRequest r;
	Sluice__Cluster cl;
	make_request(&r, &cl, len, 4);
	uint64_t id = send_request(&r);
	expect_error(id, SL_ERANGE, "plan_request.lengths[1]", "length 0");
	len[1] = -5;
	id = send_request(&r);
	expect_error(id, SL_ERANGE, "plan_request.lengths[1]", "length -5");
	len[1] = INT64_MAX;
	id = send_request(&r);
	expect_error(id, SL_ERANGE, "plan_request.lengths[1]", NULL);
	len[1] = 50;
	/* too long for the cluster: infeasible, naming the sequence */
	len[3] = (int64_t)1 << 30;
	id = send_request(&r);
	expect_error(id, SL_EINFEASIBLE, "plan_request.lengths", "sequence 3");
	len[3] = 6;
	/* no sequences */
	r.n_lengths = 0;
	id = send_request(&r);
	expect_error(id, SL_EINVAL, "plan_request.lengths", "no sequences");
	r.n_lengths = 4;
	/* ids that do not match */
	int64_t ids[2] = {1, 2};
	r.ids = ids;
	r.n_ids = 2;
	id = send_request(&r);
	expect_error(id, SL_EINVAL, "plan_request.ids", "2 ids for 4 lengths");
	expect_still_serving();
}

static void test_million_sequences(void **state)
{
	(void)state;
	size_t n = 1000000;
	int64_t *len = malloc(sizeof(int64_t) * n);
	for (size_t i = 0; i < n; i++)
		len[i] = 1 + (int64_t)(i % 100);
	Sluice__PlanRequest r;
	Sluice__Cluster cl;
	make_request(&r, &cl, len, n);
	uint64_t id = send_request(&r);
	expect_error(id, SL_ERANGE, "plan_request.lengths", "1000000 sequences (limit max_seqs=300000)");
	/* and past max_request_bytes (4 MiB): refused before decoding */
	for (size_t i = 0; i < n; i++)
		len[i] = ((int64_t)1 << 35) + (int64_t)i; /* 6-byte varints: 6 MB */
	send_request(&r);
	expect_error(0, SL_ERANGE, "envelope", "limit max_request_bytes=4194304");
	free(len);
	expect_still_serving();
}

static void test_unknown_names(void **state)
{
	(void)state;
	int64_t len[3] = {10, 20, 30};
	Sluice__PlanRequest r;
	Sluice__Cluster cl;
	make_request(&r, &cl, len, 3);
	r.policy = "no-such-policy";
	uint64_t id = send_request(&r);
	expect_error(id, SL_ENOTFOUND, "plan_request.policy", "no-such-policy");
	r.policy = "../../x";
	id = send_request(&r);
	expect_error(id, SL_ENOTFOUND, "plan_request.policy", NULL);
	r.policy = "static";
	r.profile_source_case = SLUICE__PLAN_REQUEST__PROFILE_SOURCE_PROFILE_NAME;
	r.profile_name = "no-such-profile";
	id = send_request(&r);
	expect_error(id, SL_ENOTFOUND, "plan_request.profile_name", "unknown profile 'no-such-profile'");
	r.profile_name = "../../../etc/passwd";
	id = send_request(&r);
	expect_error(id, SL_ENOTFOUND, "plan_request.profile_name", "not a profile name");
	r.profile_source_case = SLUICE__PLAN_REQUEST__PROFILE_SOURCE__NOT_SET;
	r.job = "bad job\n";
	id = send_request(&r);
	expect_error(id, SL_EINVAL, "plan_request.job", "not a job name");
	r.job = "";
	id = send_request(&r);
	expect_error(id, SL_EINVAL, "plan_request.job", NULL);
	expect_still_serving();
}

static void test_bad_profile_cluster_options(void **state)
{
	(void)state;
	int64_t len[3] = {10, 20, 30};
	Sluice__PlanRequest r;
	Sluice__Cluster cl;
	make_request(&r, &cl, len, 3);
	/* an inline profile with a negative cost */
	comm_arena_t a = {0};
	Sluice__Profile prof;
	assert_int_equal(comm_profile_to_proto(sl_profile_preset("gpt-7b-flexsp"), &a, &prof), SL_OK);
	prof.alpha1 = -1;
	r.profile_source_case = SLUICE__PLAN_REQUEST__PROFILE_SOURCE_PROFILE;
	r.profile = &prof;
	uint64_t id = send_request(&r);
	expect_error(id, SL_ERANGE, "plan_request.profile", "alpha1");
	prof.alpha1 = 5e-6;
	prof.sp_comm = 9;
	id = send_request(&r);
	expect_error(id, SL_ERANGE, "profile.sp_comm", NULL);
	prof.sp_comm = 0;
	/* a valid inline profile works */
	prof.name = "inline-7b";
	id = send_request(&r);
	Sluice__Envelope *env = recv_env(sock, 5000);
	assert_non_null(env);
	assert_int_equal(env->body_case, SLUICE__ENVELOPE__BODY_PLAN);
	assert_string_equal(env->plan->profile, "inline-7b");
	comm_envelope_free(&env);
	comm_arena_free(&a);
	r.profile_source_case = SLUICE__PLAN_REQUEST__PROFILE_SOURCE__NOT_SET;

	cl.ranks = 70000;
	id = send_request(&r);
	expect_error(id, SL_ERANGE, "plan_request.cluster.ranks", "70000");
	cl.ranks = 4;
	cl.ranks_per_node = 8;
	id = send_request(&r);
	expect_error(id, SL_ERANGE, "plan_request.cluster", "ranks-per-node");
	cl.ranks_per_node = 4;
	Sluice__PlanOptions o = SLUICE__PLAN_OPTIONS__INIT;
	o.time_limit_ms = NAN;
	r.options = &o;
	id = send_request(&r);
	expect_error(id, SL_ERANGE, "plan_request.options.time_limit_ms", NULL);
	o.time_limit_ms = 0;
	o.sp = -3;
	id = send_request(&r);
	expect_error(id, SL_ERANGE, "plan_request.options.sp", NULL);
	expect_still_serving();
}

/* A small batch whose planner thread stalls delay_ms first: a slow plan
 * whose duration the test sets, not the machine. */
static void make_slow(Sluice__PlanRequest *r, Sluice__Cluster *cl, Sluice__PlanOptions *o,
                      int64_t *len, uint32_t delay_ms)
{
	th_lengths(77, len, 16, 30000);
	make_request(r, cl, len, 16);
	sluice__plan_options__init(o);
	o->debug_delay_ms = delay_ms;
	r->options = o;
}

/* A request whose deadline passes while it waits for a planner thread is
 * answered by the server at its deadline, not when a thread gets to it.
 * On a daemon of its own (so that nothing else needs its only planner
 * thread), request A stalls that thread until SIGTERM ends it, and request
 * B (deadline 30 ms) queued behind it gets SL_ETIMEOUT from the server's
 * deadline check ("no plan within the deadline"; a thread taking B after
 * its deadline would say "waited for a planner thread") while status still
 * shows both in flight. SIGTERM with a drain cap of 0 then answers A
 * (SL_ECLOSED), and B's late result is never sent: one reply each. The
 * test decides when A ends, so the order holds on any machine. */
static void test_deadlines(void **state)
{
	(void)state;
	th_daemon_t d;
	sl_client_t *c = NULL;
	assert_true(th_stall_daemon_start(&d, "queued", 1, 0, &c));
	int64_t len[3] = {10, 20, 30};
	sl_plan_req_t a = th_req("queued", 1, len, 3);
	a.debug_delay_ms = TH_STALL_FOREVER_MS;
	a.deadline_ms = 600000; /* the daemon's max_deadline_ms */
	sl_plan_req_t b = th_req("queued", 2, len, 3);
	b.deadline_ms = 30;
	uint64_t ida = 0, idb = 0, got = 0;
	sl_plan_t *p = NULL;
	assert_int_equal(sl_client_send(c, &a, &ida), SL_OK);
	assert_int_equal(sl_client_send(c, &b, &idb), SL_OK);

	assert_int_equal(sl_client_recv(c, 60000, &got, &p), SL_ETIMEOUT);
	assert_int_equal(got, idb);
	assert_null(p);
	assert_string_equal(sl_client_error_field(c), "plan_request.deadline_ms");
	if (strstr(sl_errmsg(), "no plan within the deadline of 30 ms") == NULL)
		fail_msg("B's timeout did not come from the server's deadline check: %s",
		         sl_errmsg());
	/* A holds the thread (or is about to take it), B still waits behind it */
	char *json = NULL;
	assert_int_equal(sl_client_status_json(c, NULL, 0, 60000, &json), SL_OK);
	int64_t queued = th_status_int(json, "queued"), planning = th_status_int(json, "planning");
	int64_t timeouts = th_status_int(json, "timeouts");
	sl_free(json);
	assert_int_equal(queued + planning, 2);
	assert_true(queued >= 1);
	assert_int_equal(timeouts, 1);

	kill(d.pid, SIGTERM);
	assert_int_equal(sl_client_recv(c, 60000, &got, &p), SL_ECLOSED);
	assert_int_equal(got, ida);
	assert_non_null(strstr(sl_errmsg(), "sluiced stopped before this plan was done"));
	assert_int_equal(th_daemon_stop(&d), 0);
	/* and nothing for B: its late result was dropped */
	assert_int_equal(sl_client_recv(c, 300, &got, &p), SL_ETIMEOUT);
	assert_null(p);
	sl_client_free(&c);
}

/* A request whose deadline passes while its planner thread is stalled gets
 * SL_ETIMEOUT and frees the thread: the stall would outlive the test, yet
 * the next good request, on the only planner thread, gets a plan, and it
 * is the next reply: the stalled plan's late result is dropped. */
static void test_stalled_thread_freed(void **state)
{
	(void)state;
	int64_t big[16];
	Sluice__PlanRequest slow;
	Sluice__Cluster cl;
	Sluice__PlanOptions so;
	make_slow(&slow, &cl, &so, big, TH_STALL_FOREVER_MS);
	slow.deadline_ms = 50;
	uint64_t slow_id = send_request(&slow);
	expect_error(slow_id, SL_ETIMEOUT, "plan_request.deadline_ms", "deadline of 50 ms");
	expect_serving_within(60000);
}

/* Options and ids the planner refuses are blamed on their own fields, not
 * on the lengths; debug_delay_ms is refused by a daemon not started with
 * debug_plan_delay (see test_signals.c). */
static void test_option_fields(void **state)
{
	(void)state;
	int64_t len[3] = {10, 20, 30};
	Sluice__PlanRequest r;
	Sluice__Cluster cl;
	make_request(&r, &cl, len, 3);
	Sluice__PlanOptions o = SLUICE__PLAN_OPTIONS__INIT;
	o.sp = 65536;
	r.options = &o;
	uint64_t id = send_request(&r);
	expect_error(id, SL_ERANGE, "plan_request.options.sp", "65536");
	o.sp = 0;
	int64_t ids[3] = {7, 8, 7};
	r.ids = ids;
	r.n_ids = 3;
	id = send_request(&r);
	expect_error(id, SL_EINVAL, "plan_request.ids", "sequence id 7 appears more than once");
	expect_still_serving();
}

/* A client that sends a request and leaves: the reply is undeliverable,
 * the daemon notes it and goes on. */
static void test_client_leaves(void **state)
{
	(void)state;
	int64_t big[16];
	for (int k = 0; k < 3; k++) {
		void *s = zmq_socket(ctx, ZMQ_DEALER);
		int linger = 0;
		zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
		assert_int_equal(zmq_connect(s, endpoint), 0);
		Sluice__PlanRequest r;
		Sluice__Cluster cl;
		Sluice__PlanOptions o;
		make_slow(&r, &cl, &o, big, 300);
		r.deadline_ms = 60000;
		Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
		env.version = 1;
		env.request_id = 1;
		env.body_case = SLUICE__ENVELOPE__BODY_PLAN_REQUEST;
		env.plan_request = &r;
		void *buf;
		size_t len;
		assert_int_equal(comm_encode(&env, &buf, &len), SL_OK);
		assert_int_equal(zmq_send(s, buf, len, 0), (int)len);
		free(buf);
		usleep(20000); /* the request is in; the plan is not yet (it stalls 300 ms) */
		zmq_close(s);
	}
	/* after the three stalls (the only planner thread takes them in turn);
	 * its deadline leaves room for them on any machine */
	expect_serving_within(60000);
	/* status counts what could not be delivered */
	sl_client_t *c = NULL;
	char *json = NULL;
	assert_int_equal(sl_client_new(endpoint, NULL, &c), SL_OK);
	assert_int_equal(sl_client_status_json(c, NULL, 1, 5000, &json), SL_OK);
	assert_true(th_status_int(json, "undeliverable") >= 3);
	sl_free(json);
	sl_client_free(&c);
}

/* Nothing was lost or duplicated: no reply is left over. */
static void test_no_stray_replies(void **state)
{
	(void)state;
	expect_still_serving();
	Sluice__Envelope *env = recv_env(sock, 300);
	if (env != NULL)
		fail_msg("stray %s reply with id %llu", comm_body_name(env->body_case),
		         (unsigned long long)env->request_id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_garbage_bytes),
		cmocka_unit_test(test_truncated_and_multiframe),
		cmocka_unit_test(test_wrong_type_and_version),
		cmocka_unit_test(test_bad_lengths),
		cmocka_unit_test(test_million_sequences),
		cmocka_unit_test(test_unknown_names),
		cmocka_unit_test(test_bad_profile_cluster_options),
		cmocka_unit_test(test_deadlines),
		cmocka_unit_test(test_stalled_thread_freed),
		cmocka_unit_test(test_option_fields),
		cmocka_unit_test(test_client_leaves),
		cmocka_unit_test(test_no_stray_replies),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
