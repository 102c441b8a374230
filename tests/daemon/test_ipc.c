/* sluiced over ipc: a real daemon process, real ZeroMQ in a temp dir.
 * Plans match the planner run locally (byte-identical JSON), several clients
 * at once get their own replies, pipelined requests (step N+1 sent while N
 * is outstanding) come back by id, the socket file is owner-only, status
 * reports the jobs. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static th_daemon_t daemon_;
static char endpoint[300];

static int setup(void **state)
{
	(void)state;
	snprintf(endpoint, sizeof(endpoint), "ipc://%s/d.sock", th_tmpdir());
	const char *args[] = {"--endpoint", endpoint, "--threads", "2", "--log-level", "warn",
	                      "--policy", "static", NULL};
	if (!th_daemon_start(&daemon_, args, NULL))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return th_daemon_stop(&daemon_) == 0 ? 0 : -1;
}

static void test_socket_owner_only(void **state)
{
	(void)state;
	struct stat st;
	assert_int_equal(stat(endpoint + 6, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_string_equal(daemon_.endpoint, endpoint);
}

/* socket_group/socket_mode let members of one group connect (0660); any
 * mode with "other" bits, or an unknown group, is refused at start. */
static void test_socket_group_mode(void **state)
{
	(void)state;
	char ep[300], gid[32];
	snprintf(ep, sizeof(ep), "ipc://%s/g.sock", th_tmpdir());
	snprintf(gid, sizeof(gid), "%u", (unsigned)getegid());
	const char *args[] = {"--endpoint", ep, "--threads", "1", "--socket-group", gid,
	                      "--socket-mode", "0660", NULL};
	th_daemon_t d;
	assert_true(th_daemon_start(&d, args, NULL));
	struct stat st;
	assert_int_equal(stat(ep + 6, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0660);
	assert_int_equal(st.st_gid, getegid());
	sl_client_t *c = NULL;
	char *json = NULL;
	assert_int_equal(sl_client_new(ep, NULL, &c), SL_OK);
	assert_int_equal(sl_client_status_json(c, NULL, 0, 5000, &json), SL_OK);
	sl_free(json);
	sl_client_free(&c);
	assert_int_equal(th_daemon_stop(&d), 0);

	const char *bad[][2] = {{"--socket-mode", "0666"},
	                        {"--socket-group", "no-such-group-sluice-test"}};
	const char *why[] = {"socket_mode: '0666' is not 0600 or 0660",
	                     "socket_group: no group named 'no-such-group-sluice-test'"};
	for (int k = 0; k < 2; k++) {
		/* through sh for its stderr (where the error goes) on the pipe */
		char *argv[] = {"/bin/sh", "-c", "exec \"$0\" --endpoint \"$1\" \"$2\" \"$3\" 2>&1",
		                (char *)SLUICED_BIN, ep, (char *)bad[k][0], (char *)bad[k][1], NULL};
		int fd = -1, status = 0;
		pid_t pid = th_spawn(argv, NULL, &fd);
		assert_true(pid > 0);
		char line[512], all[4096] = "";
		while (th_read_line(fd, line, sizeof(line), 5000) > 0)
			strncat(all, line, sizeof(all) - strlen(all) - 1);
		assert_true(th_wait(pid, 5000, &status));
		close(fd);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 2);
		if (strstr(all, why[k]) == NULL)
			fail_msg("sluiced said '%s', not '%s'", all, why[k]);
	}
}

static void test_plan_matches_local(void **state)
{
	(void)state;
	int64_t len[64];
	th_lengths(1, len, 64, 30000);
	sl_client_t *c = NULL;
	assert_int_equal(sl_client_new(endpoint, NULL, &c), SL_OK);
	sl_plan_req_t r = th_req("ipc-job", 7, len, 64);
	sl_plan_t *p = NULL;
	assert_int_equal(sl_client_plan(c, &r, 5000, &p), SL_OK);
	assert_non_null(p);
	assert_int_equal(sl_client_last_step(c), 7);
	assert_int_equal(p->nseqs, 64);
	assert_string_equal(p->policy, "static");
	char *got = sl_plan_to_json(p);
	char *want = th_local_plan_json(&r);
	assert_non_null(want);
	assert_string_equal(got, want);
	free(got);
	free(want);

	/* the plan is valid under the reference model */
	sl_cost_t cost;
	sl_cluster_t cl = {8, 8};
	assert_int_equal(sl_cost_init(&cost, sl_profile_preset("gpt-7b-flexsp"), &cl), SL_OK);
	assert_int_equal(sl_plan_validate(p, &cost, NULL, NULL), 0);
	sl_cost_fini(&cost);
	sl_plan_free(&p);

	/* the JSON helper for bindings gives the same text */
	char *json = NULL;
	assert_int_equal(sl_client_plan_json(c, &r, 5000, &json), SL_OK);
	want = th_local_plan_json(&r);
	assert_string_equal(json, want);
	sl_free(json);
	free(want);
	sl_client_free(&c);
	assert_null(c);
}

typedef struct worker_arg {
	int idx;
	int ok;
} worker_arg_t;

/* One client thread: 20 requests with distinct steps and lengths; every
 * reply must be its own (step and sequence count match). */
static void *client_thread(void *arg)
{
	worker_arg_t *a = arg;
	sl_client_t *c = NULL;
	char job[32];
	snprintf(job, sizeof(job), "conc-%d", a->idx);
	if (sl_client_new(endpoint, NULL, &c) != SL_OK)
		return NULL;
	a->ok = 1;
	for (int i = 0; i < 20; i++) {
		int64_t n = 8 + a->idx * 3 + i;
		int64_t len[128];
		th_lengths((uint64_t)(a->idx * 100 + i), len, n, 20000);
		sl_plan_req_t r = th_req(job, (uint64_t)i, len, n);
		sl_plan_t *p = NULL;
		if (sl_client_plan(c, &r, 10000, &p) != SL_OK || p->nseqs != n ||
		    sl_client_last_step(c) != (uint64_t)i)
			a->ok = 0;
		for (int64_t k = 0; p != NULL && k < n; k++)
			if (p->seqs[k].length != len[k])
				a->ok = 0;
		sl_plan_free(&p);
	}
	sl_client_free(&c);
	return NULL;
}

static void test_concurrent_clients(void **state)
{
	(void)state;
	pthread_t th[8];
	worker_arg_t a[8];
	for (int i = 0; i < 8; i++) {
		a[i] = (worker_arg_t){i, 0};
		assert_int_equal(pthread_create(&th[i], NULL, client_thread, &a[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		assert_true(a[i].ok);
	}
}

/* A job asks for step N+1 while step N is outstanding; replies come back
 * tagged with their request ids. */
static void test_pipelined(void **state)
{
	(void)state;
	sl_client_t *c = NULL;
	assert_int_equal(sl_client_new(endpoint, NULL, &c), SL_OK);
	int64_t len[4][32];
	uint64_t ids[4];
	for (int s = 0; s < 4; s++) {
		th_lengths((uint64_t)(50 + s), len[s], 16 + s, 10000);
		sl_plan_req_t r = th_req("pipe", (uint64_t)s, len[s], 16 + s);
		assert_int_equal(sl_client_send(c, &r, &ids[s]), SL_OK);
	}
	int seen[4] = {0};
	for (int k = 0; k < 4; k++) {
		uint64_t id = 0;
		sl_plan_t *p = NULL;
		assert_int_equal(sl_client_poll(c, 5000), SL_OK);
		assert_int_equal(sl_client_recv(c, 5000, &id, &p), SL_OK);
		int s = -1;
		for (int q = 0; q < 4; q++)
			if (ids[q] == id)
				s = q;
		assert_true(s >= 0);
		assert_int_equal(seen[s], 0);
		seen[s] = 1;
		assert_int_equal(p->nseqs, 16 + s);
		sl_plan_free(&p);
	}
	/* nothing else is pending */
	assert_int_equal(sl_client_poll(c, 50), SL_ETIMEOUT);
	sl_client_free(&c);
}

static void test_status(void **state)
{
	(void)state;
	sl_client_t *c = NULL;
	assert_int_equal(sl_client_new(endpoint, NULL, &c), SL_OK);
	char *json = NULL;
	assert_int_equal(sl_client_status_json(c, NULL, 2, 5000, &json), SL_OK);
	assert_non_null(strstr(json, "\"format\": \"sluice.status/1\""));
	assert_non_null(strstr(json, "\"job\": \"ipc-job\""));
	assert_non_null(strstr(json, "\"job\": \"pipe\""));
	sl_free(json);
	assert_int_equal(sl_client_status_json(c, "pipe", 0, 5000, &json), SL_OK);
	assert_null(strstr(json, "ipc-job"));
	assert_non_null(strstr(json, "\"step\": 3"));
	sl_free(json);
	/* an unknown job is an error naming the field */
	assert_int_equal(sl_client_status_json(c, "nope", 0, 5000, &json), SL_ENOTFOUND);
	assert_string_equal(sl_client_error_field(c), "status_request.job");
	sl_client_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_socket_owner_only),
		cmocka_unit_test(test_socket_group_mode),
		cmocka_unit_test(test_plan_matches_local),
		cmocka_unit_test(test_concurrent_clients),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_status),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
