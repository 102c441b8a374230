/* sluiced as a service: sd_notify READY/RELOADING/STOPPING over a real
 * datagram socket (a path and an abstract '@' name), SIGHUP reloads the
 * config file (a bad file keeps the old one), --record writes a trace that
 * the trace reader (and so `sluice replay`) reads back, SIGTERM drains the
 * requests in flight and exits 0, a second SIGTERM/SIGINT abandons the
 * drain. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "comm.h"
#include "harness.h"
#include "sluice/trace.h"

/* A datagram socket standing in for systemd's notify socket. */
static int notify_socket(const char *name, char *env, size_t size)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", name);
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
	if (name[0] == '@')
		sa.sun_path[0] = '\0';
	else
		len++;
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
	snprintf(env, size, "NOTIFY_SOCKET=%s", name);
	return fd;
}

/* Waits for a datagram holding want; returns 1 when one came. */
static int expect_notify(int fd, const char *want, char *got, size_t size)
{
	int64_t end = comm_now_ms() + 5000;
	while (comm_now_ms() < end) {
		struct timeval tv = {0, 100000};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		ssize_t n = recv(fd, got, size - 1, 0);
		if (n <= 0)
			continue;
		got[n] = '\0';
		if (strstr(got, want) != NULL)
			return 1;
	}
	return 0;
}

static void test_notify_abstract(void **state)
{
	(void)state;
	char name[64], env[128], got[512], ep[300];
	snprintf(name, sizeof(name), "@sluice-test-%d", (int)getpid());
	int fd = notify_socket(name, env, sizeof(env));
	snprintf(ep, sizeof(ep), "ipc://%s/n.sock", th_tmpdir());
	const char *args[] = {"--endpoint", ep, "--log-level", "error", NULL};
	char *envv[] = {env, NULL};
	th_daemon_t d;
	assert_true(th_daemon_start(&d, args, envv));
	assert_true(expect_notify(fd, "READY=1", got, sizeof(got)));
	char pid[32];
	snprintf(pid, sizeof(pid), "MAINPID=%d", (int)d.pid);
	assert_non_null(strstr(got, pid));
	assert_non_null(strstr(got, "STATUS=serving on ipc://"));
	assert_int_equal(th_daemon_stop(&d), 0);
	assert_true(expect_notify(fd, "STOPPING=1", got, sizeof(got)));
	close(fd);
	/* the socket file is gone */
	struct stat st;
	assert_int_not_equal(stat(ep + 6, &st), 0);
}

static void test_reload_record_drain(void **state)
{
	(void)state;
	char conf[300], rec[300], env[400], got[512], ep[300], nsock[300];
	const char *dir = th_tmpdir();
	snprintf(conf, sizeof(conf), "%s/sluiced.conf", dir);
	snprintf(rec, sizeof(rec), "%s/requests.trace", dir);
	snprintf(ep, sizeof(ep), "ipc://%s/r.sock", dir);
	snprintf(nsock, sizeof(nsock), "%s/notify", dir);
	int nfd = notify_socket(nsock, env, sizeof(env));
	char text[1024];
	snprintf(text, sizeof(text),
	         "# test config\nendpoint %s\npolicy static\nthreads 1\nrecord \"%s\"\n"
	         "log_level = error\nranks 8\nranks_per_node 8\nmax_seqs 200000\n"
	         "debug_plan_delay yes\n",
	         ep, rec);
	assert_true(th_write_file(conf, text, 0644));
	const char *args[] = {"--config", conf, NULL};
	char *envv[] = {env, NULL};
	th_daemon_t d;
	assert_true(th_daemon_start(&d, args, envv));
	assert_true(expect_notify(nfd, "READY=1", got, sizeof(got)));

	sl_client_t *c = NULL;
	assert_int_equal(sl_client_new(ep, NULL, &c), SL_OK);
	int64_t len[5] = {300, 4000, 25000, 7, 1};
	sl_plan_req_t r = th_req("rec-job", 11, len, 5);
	r.policy = NULL; /* the daemon's default */
	r.ranks = 0;     /* the daemon's default cluster */
	r.ranks_per_node = 0;
	sl_plan_t *p = NULL;
	assert_int_equal(sl_client_plan(c, &r, 5000, &p), SL_OK);
	assert_string_equal(p->policy, "static");
	assert_int_equal(p->ranks, 8);
	sl_plan_free(&p);

	/* SIGHUP: a new default policy */
	snprintf(text, sizeof(text),
	         "endpoint %s\npolicy batch-adaptive\nthreads 1\nrecord %s\nlog_level error\n"
	         "ranks 8\nranks_per_node 8\nmax_seqs 200000\ndebug_plan_delay yes\n",
	         ep, rec);
	assert_true(th_write_file(conf, text, 0644));
	kill(d.pid, SIGHUP);
	assert_true(expect_notify(nfd, "RELOADING=1", got, sizeof(got)));
	assert_true(expect_notify(nfd, "READY=1", got, sizeof(got)));
	r.step = 12;
	assert_int_equal(sl_client_plan(c, &r, 5000, &p), SL_OK);
	assert_string_equal(p->policy, "batch-adaptive");
	sl_plan_free(&p);

	/* a broken file is refused and the running config kept */
	assert_true(th_write_file(conf, "policy no-such-policy\n", 0644));
	kill(d.pid, SIGHUP);
	assert_true(expect_notify(nfd, "reload failed", got, sizeof(got)));
	r.step = 13;
	assert_int_equal(sl_client_plan(c, &r, 5000, &p), SL_OK);
	assert_string_equal(p->policy, "batch-adaptive");
	sl_plan_free(&p);

	/* the record reads back as a trace: 3 requests of 5 lengths */
	sl_lengths_t back = {0};
	assert_int_equal(sl_trace_read(rec, NULL, &back), SL_OK);
	assert_int_equal(back.n, 15);
	for (size_t i = 0; i < back.n; i++)
		assert_int_equal(back.v[i], len[i % 5]);
	sl_lengths_free(&back);
	char *rt = th_read_file(rec);
	assert_non_null(strstr(rt, "# rec-job 11\n300\n4000\n"));
	assert_non_null(strstr(rt, "# rec-job 13\n"));
	free(rt);

	/* SIGTERM while one slow and two fast requests are in flight: all
	 * three are answered with plans and sluiced exits 0. The slow one is a
	 * small batch whose planner thread stalls 1.5 s (well inside the 30 s
	 * drain). That a request during the drain gets SL_ECLOSED is
	 * test_second_signal_abandons_drain's: there the test, not the clock,
	 * decides how long the drain lasts. */
	sl_plan_req_t slow = th_req("drain", 1, len, 5);
	slow.debug_delay_ms = 1500;
	uint64_t ids[3];
	assert_int_equal(sl_client_send(c, &slow, &ids[0]), SL_OK);
	sl_plan_req_t fast = th_req("drain", 2, len, 5);
	assert_int_equal(sl_client_send(c, &fast, &ids[1]), SL_OK);
	fast.step = 3;
	assert_int_equal(sl_client_send(c, &fast, &ids[2]), SL_OK);
	/* once status answers, the three requests (sent before it on the
	 * same connection) are in the daemon */
	char *json = NULL;
	assert_int_equal(sl_client_status_json(c, NULL, 0, 5000, &json), SL_OK);
	sl_free(json);
	kill(d.pid, SIGTERM);
	assert_true(expect_notify(nfd, "STOPPING=1", got, sizeof(got)));
	int seen = 0;
	for (int k = 0; k < 3; k++) {
		uint64_t id = 0;
		assert_int_equal(sl_client_recv(c, 180000, &id, &p), SL_OK);
		for (int q = 0; q < 3; q++)
			if (id == ids[q])
				seen |= 1 << q;
		sl_plan_free(&p);
	}
	assert_int_equal(seen, 7);
	int st = 0;
	assert_true(th_wait(d.pid, 10000, &st));
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	sl_client_free(&c);
	close(nfd);
}

/* A worker outlives a daemon restart: it notices the silence, is told to
 * register again and gets the new daemon's work orders. */
static void test_worker_survives_restart(void **state)
{
	(void)state;
	char ep[300];
	snprintf(ep, sizeof(ep), "ipc://%s/restart.sock", th_tmpdir());
	const char *args[] = {"--endpoint", ep, "--log-level", "error", "--heartbeat-ms", "100",
	                      NULL};
	th_daemon_t d;
	assert_true(th_daemon_start(&d, args, NULL));
	int fd;
	pid_t w = th_worker_start(ep, "phoenix", 0, NULL, &fd);
	assert_true(w > 0);
	assert_int_equal(th_daemon_stop(&d), 0);
	assert_true(th_daemon_start(&d, args, NULL));
	sl_client_t *c = NULL;
	assert_int_equal(sl_client_new(ep, NULL, &c), SL_OK);
	int64_t len[4] = {10, 20, 30, 40};
	sl_plan_req_t r = th_req("phoenix", 1, len, 4);
	int dispatched = 0;
	for (int k = 0; k < 100 && !dispatched; k++) {
		sl_plan_t *p = NULL;
		r.step = (uint64_t)k;
		assert_int_equal(sl_client_plan(c, &r, 5000, &p), SL_OK);
		sl_plan_free(&p);
		dispatched = sl_client_last_dispatched(c);
		if (!dispatched)
			usleep(50000);
	}
	assert_int_equal(dispatched, 1);
	char line[256];
	int got = 0;
	while (!got && th_read_line(fd, line, sizeof(line), 3000))
		got = strncmp(line, "order ", 6) == 0;
	assert_true(got);
	sl_client_free(&c);
	th_kill(w);
	close(fd);
	assert_int_equal(th_daemon_stop(&d), 0);
}

/* The drain timeout is a hard cap: SIGTERM with --drain-timeout-ms 1000
 * while a plan stalls (a stall no test run outlives; without the cap it
 * would hold the drain until its 120 s deadline) answers that client with
 * SL_ECLOSED naming the cap, and sluiced exits 0 by itself. */
static void test_drain_cap(void **state)
{
	(void)state;
	th_daemon_t d;
	sl_client_t *c = NULL;
	assert_true(th_stall_daemon_start(&d, "cap", 1, 1000, &c));
	int64_t len[3] = {10, 20, 30};
	sl_plan_req_t r = th_req("capped", 1, len, 3);
	r.debug_delay_ms = TH_STALL_FOREVER_MS;
	r.deadline_ms = 120000;
	uint64_t id = 0;
	assert_int_equal(sl_client_send(c, &r, &id), SL_OK);
	char *json = NULL;
	assert_int_equal(sl_client_status_json(c, NULL, 0, 5000, &json), SL_OK);
	sl_free(json);
	kill(d.pid, SIGTERM);
	uint64_t got = 0;
	sl_plan_t *p = NULL;
	assert_int_equal(sl_client_recv(c, 60000, &got, &p), SL_ECLOSED);
	assert_int_equal(got, id);
	assert_null(p);
	const char *cap = "stopped before this plan was done (drain_timeout_ms=1000)";
	if (strstr(sl_errmsg(), cap) == NULL)
		fail_msg("not the drain cap's answer: %s", sl_errmsg());
	int st = 0;
	assert_true(th_wait(d.pid, 60000, &st));
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	sl_client_free(&c);
}

/* A second signal during the drain abandons it (first, then second: SIGTERM
 * or SIGINT). Two requests stall until cut (one planning on the only
 * thread, one queued behind it) and the drain cap is an hour, so nothing but
 * the second signal can end this drain: once the log says the drain began,
 * status says draining with both still in flight and a new request gets
 * SL_ECLOSED; after the second signal both stalled requests get SL_ECLOSED
 * naming it, the log counts them and sluiced exits 0 by itself. */
static void abandon_drain(const char *name, int first, const char *first_name, int second,
                          const char *second_name)
{
	th_daemon_t d;
	sl_client_t *c = NULL, *c2 = NULL;
	char line[512], want[256];
	assert_true(th_stall_daemon_start_logged(&d, name, 1, 3600000, "info", &c));
	int64_t len[3] = {10, 20, 30};
	uint64_t ids[2];
	for (int k = 0; k < 2; k++) {
		sl_plan_req_t r = th_req("abandoned", (uint64_t)k + 1, len, 3);
		r.debug_delay_ms = TH_STALL_FOREVER_MS;
		r.deadline_ms = 600000; /* max_deadline_ms: no test run outlives it */
		assert_int_equal(sl_client_send(c, &r, &ids[k]), SL_OK);
	}
	/* once status answers, both requests (sent before it) are in */
	char *json = NULL;
	assert_int_equal(sl_client_status_json(c, NULL, 0, 60000, &json), SL_OK);
	assert_int_equal(th_status_int(json, "queued") + th_status_int(json, "planning"), 2);
	sl_free(json);

	kill(d.pid, first);
	assert_true(th_read_until(d.out_fd, "draining 2 in-flight requests", line, sizeof(line),
	                          60000));
	assert_int_equal(sl_client_new(d.endpoint, NULL, &c2), SL_OK);
	assert_int_equal(sl_client_status_json(c2, NULL, 0, 60000, &json), SL_OK);
	if (strstr(json, "\"draining\": true") == NULL)
		fail_msg("status does not say draining: %s", json);
	assert_int_equal(th_status_int(json, "queued") + th_status_int(json, "planning"), 2);
	sl_free(json);
	sl_plan_req_t late = th_req("late", 1, len, 3);
	sl_plan_t *p = NULL;
	assert_int_equal(sl_client_plan(c2, &late, 60000, &p), SL_ECLOSED);
	snprintf(want, sizeof(want), "shutting down (%s) and takes no new requests", first_name);
	if (strstr(sl_errmsg(), want) == NULL)
		fail_msg("the late request's answer is not '%s': %s", want, sl_errmsg());

	kill(d.pid, second);
	snprintf(want, sizeof(want),
	         "sluiced is shutting down: drain abandoned by a second signal (%s after %s)",
	         second_name, first_name);
	int seen = 0;
	for (int k = 0; k < 2; k++) {
		uint64_t got = 0;
		assert_int_equal(sl_client_recv(c, 60000, &got, &p), SL_ECLOSED);
		assert_null(p);
		if (strstr(sl_errmsg(), want) == NULL)
			fail_msg("a stalled request's answer is not '%s': %s", want, sl_errmsg());
		for (int q = 0; q < 2; q++)
			if (got == ids[q])
				seen |= 1 << q;
	}
	assert_int_equal(seen, 3);
	snprintf(want, sizeof(want), "%s during the drain: drain abandoned, 2 requests cut",
	         second_name);
	assert_true(th_read_until(d.out_fd, want, line, sizeof(line), 60000));
	int st = 0;
	assert_true(th_wait(d.pid, 60000, &st));
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	close(d.out_fd);
	sl_client_free(&c);
	sl_client_free(&c2);
}

static void test_second_signal_abandons_drain(void **state)
{
	(void)state;
	abandon_drain("abandon-term", SIGTERM, "SIGTERM", SIGTERM, "SIGTERM");
}

static void test_sigint_then_sigterm_abandons_drain(void **state)
{
	(void)state;
	abandon_drain("abandon-int", SIGINT, "SIGINT", SIGTERM, "SIGTERM");
}

/* Slow plans do not starve other jobs: two requests stalled for 60 s with
 * 1 s deadlines on a 2-thread pool time out at their deadlines and free
 * both threads, so a third job's small request (generous deadline) gets a
 * plan. A daemon without debug_plan_delay refuses the stall, naming it. */
static void test_slow_plans_do_not_starve(void **state)
{
	(void)state;
	char ep[300];
	snprintf(ep, sizeof(ep), "ipc://%s/starve.sock", th_tmpdir());
	const char *args[] = {"--endpoint", ep, "--log-level", "error", "--threads", "2",
	                      "--debug-plan-delay", NULL};
	th_daemon_t d;
	assert_true(th_daemon_start(&d, args, NULL));
	int64_t len[3] = {10, 20, 30};
	sl_client_t *slow[2] = {NULL, NULL};
	uint64_t ids[2];
	const char *jobs[2] = {"hog-a", "hog-b"};
	for (int k = 0; k < 2; k++) {
		assert_int_equal(sl_client_new(ep, NULL, &slow[k]), SL_OK);
		sl_plan_req_t r = th_req(jobs[k], 1, len, 3);
		r.debug_delay_ms = 60000;
		r.deadline_ms = 1000;
		assert_int_equal(sl_client_send(slow[k], &r, &ids[k]), SL_OK);
		char *json = NULL; /* once status answers, the request is in */
		assert_int_equal(sl_client_status_json(slow[k], NULL, 0, 5000, &json), SL_OK);
		sl_free(json);
	}
	sl_client_t *c = NULL;
	assert_int_equal(sl_client_new(ep, NULL, &c), SL_OK);
	sl_plan_req_t r = th_req("victim", 1, len, 3);
	r.deadline_ms = 30000;
	sl_plan_t *p = NULL;
	if (sl_client_plan(c, &r, 40000, &p) != SL_OK)
		fail_msg("the third job's request failed: %s", sl_errmsg());
	assert_int_equal(p->nseqs, 3);
	sl_plan_free(&p);
	for (int k = 0; k < 2; k++) {
		uint64_t got = 0;
		assert_int_equal(sl_client_recv(slow[k], 30000, &got, &p), SL_ETIMEOUT);
		assert_int_equal(got, ids[k]);
		assert_string_equal(sl_client_error_field(slow[k]), "plan_request.deadline_ms");
		sl_client_free(&slow[k]);
	}
	sl_client_free(&c);
	assert_int_equal(th_daemon_stop(&d), 0);

	/* without --debug-plan-delay the option is refused, naming the field */
	const char *plain[] = {"--endpoint", ep, "--log-level", "error", NULL};
	assert_true(th_daemon_start(&d, plain, NULL));
	assert_int_equal(sl_client_new(ep, NULL, &c), SL_OK);
	r.debug_delay_ms = 10;
	assert_int_equal(sl_client_plan(c, &r, 5000, &p), SL_EINVAL);
	assert_non_null(strstr(sl_errmsg(), "debug_plan_delay"));
	sl_client_free(&c);
	assert_int_equal(th_daemon_stop(&d), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_notify_abstract),
		cmocka_unit_test(test_worker_survives_restart),
		cmocka_unit_test(test_reload_record_drain),
		cmocka_unit_test(test_drain_cap),
		cmocka_unit_test(test_second_signal_abandons_drain),
		cmocka_unit_test(test_sigint_then_sigterm_abandons_drain),
		cmocka_unit_test(test_slow_plans_do_not_starve),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
