/* sluiced with real worker processes (tests/daemon/test_worker.c): plans
 * are pushed as work orders to the registered ranks of their job, which
 * together hold every token of every sequence exactly once; acks and
 * metrics come back into `status`; a killed worker's job is told (its
 * client and its other workers get an event, the next plan lists the rank
 * as lost) while other jobs go on untouched; a slow plan of one job does
 * not hold up another job. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "comm.h"
#include "harness.h"

#define NA 8 /* workers of job A (one per rank) */
#define NB 2

static th_daemon_t daemon_;
static char endpoint[300];
static pid_t wa[NA], wb[NB];
static int fa[NA], fb[NB];

static int setup(void **state)
{
	(void)state;
	snprintf(endpoint, sizeof(endpoint), "ipc://%s/w.sock", th_tmpdir());
	const char *args[] = {"--endpoint", endpoint, "--threads", "2", "--log-level", "error",
	                      "--policy", "static", "--heartbeat-ms", "100", "--debug-plan-delay",
	                      NULL};
	if (!th_daemon_start(&daemon_, args, NULL))
		return -1;
	for (int r = 0; r < NA; r++)
		if ((wa[r] = th_worker_start(endpoint, "job-a", r, NULL, &fa[r])) < 0)
			return -1;
	for (int r = 0; r < NB; r++)
		if ((wb[r] = th_worker_start(endpoint, "job-b", r, NULL, &fb[r])) < 0)
			return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int r = 0; r < NA; r++)
		th_kill(wa[r]);
	for (int r = 0; r < NB; r++)
		th_kill(wb[r]);
	return th_daemon_stop(&daemon_) == 0 ? 0 : -1;
}

/* Reads a worker's lines until one starts with prefix; returns its rest. */
static int read_until(int fd, const char *prefix, char *rest, size_t size, int timeout_ms)
{
	char line[512];
	int64_t end = comm_now_ms() + timeout_ms;
	while (comm_now_ms() < end) {
		if (!th_read_line(fd, line, sizeof(line), (int)(end - comm_now_ms())))
			return 0;
		if (strncmp(line, prefix, strlen(prefix)) == 0) {
			/* cut to size on purpose (not snprintf: gcc -O3 warns of it) */
			size_t n = strnlen(line + strlen(prefix), size - 1);
			memcpy(rest, line + strlen(prefix), n);
			rest[n] = '\0';
			return 1;
		}
	}
	return 0;
}

/* Polls status until the step's acks (and metrics) reach n. */
static int wait_acks(sl_client_t *c, const char *job, uint64_t step, int n, int timeout_ms)
{
	char want_acked[64], want_step[64];
	snprintf(want_step, sizeof(want_step), "\"step\": %llu,", (unsigned long long)step);
	snprintf(want_acked, sizeof(want_acked), "\"acked\": %d,", n);
	int64_t end = comm_now_ms() + timeout_ms;
	while (comm_now_ms() < end) {
		char *json = NULL;
		if (sl_client_status_json(c, job, 1, 2000, &json) != SL_OK)
			return 0;
		int ok = strstr(json, want_step) != NULL && strstr(json, want_acked) != NULL;
		int nmetrics = 0;
		for (const char *p = json; (p = strstr(p, "\"slots\": [")) != NULL; p++)
			nmetrics++;
		sl_free(json);
		if (ok && nmetrics >= n)
			return 1;
		usleep(20000);
	}
	return 0;
}

static void test_orders_cover_every_token(void **state)
{
	(void)state;
	sl_client_t *c = NULL;
	assert_int_equal(sl_client_new(endpoint, NULL, &c), SL_OK);
	int64_t len[40];
	th_lengths(11, len, 40, 60000);
	sl_plan_req_t r = th_req("job-a", 1, len, 40);
	sl_plan_t *p = NULL;
	assert_int_equal(sl_client_plan(c, &r, 5000, &p), SL_OK);
	assert_int_equal(sl_client_last_dispatched(c), NA);
	int32_t nlost = -1;
	sl_client_last_lost(c, &nlost);
	assert_int_equal(nlost, 0);

	/* each worker's order matches the slice of the plan computed here */
	long total = 0;
	for (int rk = 0; rk < NA; rk++) {
		char rest[256];
		assert_true(read_until(fa[rk], "order ", rest, sizeof(rest), 5000));
		unsigned long long step;
		int groups;
		long shards, tokens;
		assert_int_equal(sscanf(rest, "%llu groups %d shards %ld tokens %ld", &step, &groups,
		                        &shards, &tokens),
		                 4);
		assert_int_equal(step, 1);
		sl_work_order_t *o = NULL;
		assert_int_equal(sl_work_order_from_plan(p, NULL, rk, "job-a", 1, &o), SL_OK);
		assert_int_equal(groups, o->ngroups);
		long want = 0;
		for (int32_t g = 0; g < o->ngroups; g++)
			want += o->groups[g].nshards;
		assert_int_equal(shards, want);
		sl_work_order_free(&o);
		total += tokens;
	}
	long all = 0;
	for (int i = 0; i < 40; i++)
		all += (long)len[i];
	assert_int_equal(total, all);
	/* acks and per-slot metrics reach the status */
	assert_true(wait_acks(c, "job-a", 1, NA, 5000));
	char *json = NULL;
	assert_int_equal(sl_client_status_json(c, "job-a", 1, 2000, &json), SL_OK);
	assert_non_null(strstr(json, "\"dispatched\": 8,"));
	assert_non_null(strstr(json, "\"nacked\": 0,"));
	assert_non_null(strstr(json, "\"compute_ms\""));
	assert_non_null(strstr(json, "\"alive\": true"));
	sl_free(json);
	sl_plan_free(&p);
	sl_client_free(&c);
}

static void test_worker_death_tells_its_job_only(void **state)
{
	(void)state;
	sl_client_t *ca = NULL, *cb = NULL;
	assert_int_equal(sl_client_new(endpoint, NULL, &ca), SL_OK);
	assert_int_equal(sl_client_new(endpoint, NULL, &cb), SL_OK);
	int64_t len[12];
	th_lengths(21, len, 12, 30000);
	/* both clients are known to their jobs */
	/* (8 ranks everywhere: the 7B profile's ZeRO-3 state needs them) */
	sl_plan_req_t ra = th_req("job-a", 2, len, 12), rb = th_req("job-b", 2, len, 12);
	sl_plan_t *p = NULL;
	assert_int_equal(sl_client_plan(ca, &ra, 5000, &p), SL_OK);
	sl_plan_free(&p);
	assert_int_equal(sl_client_plan(cb, &rb, 5000, &p), SL_OK);
	sl_plan_free(&p);

	th_kill(wa[3]);
	wa[3] = -1;
	/* job A's client hears of it */
	sl_event_t ev;
	int got = 0;
	int64_t end = comm_now_ms() + 5000;
	while (!got && comm_now_ms() < end) {
		sl_client_poll(ca, 50);
		while (sl_client_next_event(ca, &ev))
			if (ev.kind == SL_EVENT_WORKER_LOST && ev.rank == 3)
				got = 1;
	}
	assert_true(got);
	assert_string_equal(ev.job, "job-a");
	assert_non_null(strstr(ev.message, "rank 3"));
	/* and so do its other workers */
	char rest[256];
	assert_true(read_until(fa[0], "event lost ", rest, sizeof(rest), 3000));
	assert_int_equal(atoi(rest), 3);
	/* job B heard nothing and still works */
	sl_client_poll(cb, 100);
	assert_int_equal(sl_client_next_event(cb, &ev), 0);
	rb.step = 3;
	assert_int_equal(sl_client_plan(cb, &rb, 5000, &p), SL_OK);
	assert_int_equal(sl_client_last_dispatched(cb), NB);
	sl_plan_free(&p);
	for (int r = 0; r < NB; r++)
		assert_true(read_until(fb[r], "order 3 ", rest, sizeof(rest), 5000));
	/* job A's next plan goes to the 7 left and names the lost rank */
	ra.step = 3;
	assert_int_equal(sl_client_plan(ca, &ra, 5000, &p), SL_OK);
	sl_plan_free(&p);
	assert_int_equal(sl_client_last_dispatched(ca), NA - 1);
	int32_t nlost = 0;
	const int32_t *lost = sl_client_last_lost(ca, &nlost);
	assert_int_equal(nlost, 1);
	assert_int_equal(lost[0], 3);
	char *json = NULL;
	assert_int_equal(sl_client_status_json(ca, "job-a", 1, 2000, &json), SL_OK);
	assert_non_null(strstr(json, "\"alive\": false"));
	assert_non_null(strstr(json, "\"lost_ranks\": [\n            3\n"));
	sl_free(json);
	/* a new worker for rank 3 takes the place */
	wa[3] = th_worker_start(endpoint, "job-a", 3, NULL, &fa[3]);
	assert_true(wa[3] > 0);
	ra.step = 4;
	assert_int_equal(sl_client_plan(ca, &ra, 5000, &p), SL_OK);
	sl_plan_free(&p);
	assert_int_equal(sl_client_last_dispatched(ca), NA);
	/* its peers and the job's client are told it joined; job B is not */
	assert_true(read_until(fa[0], "event joined 3 ", rest, sizeof(rest), 3000));
	assert_non_null(strstr(rest, "registered again after being lost"));
	got = 0;
	end = comm_now_ms() + 3000;
	while (!got && comm_now_ms() < end) {
		sl_client_poll(ca, 50);
		while (!got && sl_client_next_event(ca, &ev))
			got = ev.kind == SL_EVENT_WORKER_JOINED && ev.rank == 3;
	}
	assert_true(got);
	assert_string_equal(ev.job, "job-a");
	sl_client_poll(cb, 50);
	assert_int_equal(sl_client_next_event(cb, &ev), 0);
	sl_client_free(&ca);
	sl_client_free(&cb);
}

static void test_rejecting_worker(void **state)
{
	(void)state;
	int fd;
	const char *extra[] = {"--reject", "--no-metrics", NULL};
	pid_t w = th_worker_start(endpoint, "job-c", 0, extra, &fd);
	assert_true(w > 0);
	sl_client_t *c = NULL;
	assert_int_equal(sl_client_new(endpoint, NULL, &c), SL_OK);
	int64_t len[3] = {5, 6, 7};
	sl_plan_req_t r = th_req("job-c", 9, len, 3);
	sl_plan_t *p = NULL;
	assert_int_equal(sl_client_plan(c, &r, 5000, &p), SL_OK);
	sl_plan_free(&p);
	char rest[256];
	assert_true(read_until(fd, "order 9 ", rest, sizeof(rest), 5000));
	int ok = 0;
	for (int k = 0; k < 100 && !ok; k++) {
		char *json = NULL;
		assert_int_equal(sl_client_status_json(c, "job-c", 1, 2000, &json), SL_OK);
		ok = strstr(json, "\"nacked\": 1,") != NULL &&
		     strstr(json, "\"state\": \"rejected\"") != NULL &&
		     strstr(json, "told to reject") != NULL;
		sl_free(json);
		usleep(20000);
	}
	assert_true(ok);
	/* no_dispatch keeps the plan away from the workers */
	r.no_dispatch = 1;
	r.step = 10;
	assert_int_equal(sl_client_plan(c, &r, 5000, &p), SL_OK);
	sl_plan_free(&p);
	assert_int_equal(sl_client_last_dispatched(c), 0);
	assert_false(read_until(fd, "order 10 ", rest, sizeof(rest), 300));
	sl_client_free(&c);
	th_kill(w);
	close(fd);
}

/* A worker that accepts its order and then fails it: the job's client gets
 * EVENT_STEP_FAILED (rank, step, why), the other worker of the job hears it
 * too, and status lists the rank's step as failed, the other as completed. */
static void test_failing_worker(void **state)
{
	(void)state;
	int fd0, fd1;
	const char *extra[] = {"--fail", NULL};
	pid_t w0 = th_worker_start(endpoint, "job-f", 0, extra, &fd0);
	pid_t w1 = th_worker_start(endpoint, "job-f", 1, NULL, &fd1);
	assert_true(w0 > 0 && w1 > 0);
	sl_client_t *c = NULL;
	assert_int_equal(sl_client_new(endpoint, NULL, &c), SL_OK);
	int64_t len[4] = {50, 6, 7, 8}; /* 8 ranks; only 0 and 1 have workers */
	sl_plan_req_t r = th_req("job-f", 7, len, 4);
	sl_plan_t *p = NULL;
	assert_int_equal(sl_client_plan(c, &r, 5000, &p), SL_OK);
	sl_plan_free(&p);
	assert_int_equal(sl_client_last_dispatched(c), 2);
	sl_event_t ev;
	int got = 0;
	int64_t end = comm_now_ms() + 5000;
	while (!got && comm_now_ms() < end) {
		sl_client_poll(c, 50);
		while (!got && sl_client_next_event(c, &ev))
			got = ev.kind == SL_EVENT_STEP_FAILED;
	}
	assert_true(got);
	assert_string_equal(ev.job, "job-f");
	assert_int_equal(ev.rank, 0);
	assert_int_equal(ev.step, 7);
	assert_non_null(strstr(ev.message, "told to fail"));
	char rest[256];
	assert_true(read_until(fd1, "event failed 0 7 ", rest, sizeof(rest), 3000));
	int ok = 0;
	for (int k = 0; k < 100 && !ok; k++) {
		char *json = NULL;
		assert_int_equal(sl_client_status_json(c, "job-f", 1, 2000, &json), SL_OK);
		ok = strstr(json, "\"acked\": 2,") && strstr(json, "\"failed\": 1,") &&
		     strstr(json, "\"completed\": 1,") && strstr(json, "\"state\": \"failed\"") &&
		     strstr(json, "\"state\": \"completed\"") && strstr(json, "told to fail");
		if (!ok && k == 99)
			printf("%s\n", json);
		sl_free(json);
		if (!ok)
			usleep(20000);
	}
	assert_true(ok);
	sl_client_free(&c);
	th_kill(w0);
	th_kill(w1);
	close(fd0);
	close(fd1);
}

/* Job D's slow plan occupies one planner thread; job E is served by the
 * other meanwhile. On a daemon of its own with two planner threads, D
 * stalls until SIGTERM ends it (a stall no test run outlives), so E's plan
 * can only have come from the other thread while D still held its own;
 * status shows D planning. SIGTERM (drain cap 0) then answers D with
 * SL_ECLOSED and the daemon exits 0. The test decides when D ends, not
 * the clock. */
static void test_slow_plan_does_not_block_others(void **state)
{
	(void)state;
	th_daemon_t d;
	sl_client_t *cd = NULL, *ce = NULL;
	assert_true(th_stall_daemon_start(&d, "two", 2, 0, &cd));
	assert_int_equal(sl_client_new(d.endpoint, NULL, &ce), SL_OK);
	int64_t n = 60;
	int64_t big[60]; /* on the stack: nothing leaks when an assertion fails */
	th_lengths(4, big, n, 30000);
	sl_plan_req_t rd = th_req("job-d", 1, big, n);
	rd.debug_delay_ms = TH_STALL_FOREVER_MS;
	rd.deadline_ms = 600000; /* the daemon's max_deadline_ms */
	uint64_t id = 0, got = 0;
	assert_int_equal(sl_client_send(cd, &rd, &id), SL_OK);
	/* once status answers on D's connection, D is in the daemon */
	char *json = NULL;
	assert_int_equal(sl_client_status_json(cd, NULL, 0, 60000, &json), SL_OK);
	sl_free(json);
	int64_t len[4] = {1000, 2000, 3000, 4000};
	sl_plan_req_t re = th_req("job-e", 1, len, 4);
	re.deadline_ms = 600000; /* E waits on no clock either */
	sl_plan_t *p = NULL;
	if (sl_client_plan(ce, &re, 60000, &p) != SL_OK)
		fail_msg("job-e's request failed: %s", sl_errmsg());
	assert_int_equal(p->nseqs, 4);
	sl_plan_free(&p);
	/* D was taken before E (one queue, in order) and is still stalled */
	assert_int_equal(sl_client_status_json(ce, NULL, 0, 60000, &json), SL_OK);
	int64_t planning = th_status_int(json, "planning"), queued = th_status_int(json, "queued");
	sl_free(json);
	assert_int_equal(planning, 1);
	assert_int_equal(queued, 0);
	/* D is answered exactly once, when the daemon stops */
	kill(d.pid, SIGTERM);
	assert_int_equal(sl_client_recv(cd, 60000, &got, &p), SL_ECLOSED);
	assert_int_equal(got, id);
	assert_null(p);
	assert_non_null(strstr(sl_errmsg(), "sluiced stopped before this plan was done"));
	assert_int_equal(th_daemon_stop(&d), 0);
	sl_client_free(&cd);
	sl_client_free(&ce);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_orders_cover_every_token),
		cmocka_unit_test(test_worker_death_tells_its_job_only),
		cmocka_unit_test(test_rejecting_worker),
		cmocka_unit_test(test_failing_worker),
		cmocka_unit_test(test_slow_plan_does_not_block_others),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
