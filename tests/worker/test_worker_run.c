/* worker_run: real sluice-worker processes (one per rank, CPU backend, ZeroMQ
 * over ipc://) execute hand-built and policy-made plans; every output and
 * gradient must match the fp64 full-attention reference (relative error
 * < 1e-6). Also the errors for bad input. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sluice/policy.h"
#include "sluice/sluice.h"
#include "worker.h"

#define WORKER_EXE SL_BUILD_DIR "/worker/sluice-worker"

static char tmpdir[32];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/worker_run_XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Evaluates plan under cost and writes it to tmpdir/name; returns the path
 * (static buffer). */
static const char *write_plan(sl_plan_t *plan, const sl_cost_t *cost, const char *name)
{
	static char path[128];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	assert_int_equal(sl_plan_evaluate(plan, cost), SL_OK);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(sl_plan_write_json(plan, f), SL_OK);
	assert_int_equal(fclose(f), 0);
	return path;
}

static void preset_cost(sl_cost_t *cost, int32_t ranks, int32_t rpn)
{
	const sl_profile_t *p = sl_profile_preset("gpt-7b-flexsp");
	assert_non_null(p);
	sl_cluster_t cl = {.ranks = ranks, .ranks_per_node = rpn};
	assert_int_equal(sl_cost_init(cost, p, &cl), SL_OK);
}

/* Runs a plan file on real workers with the check; asserts it passed. */
static void run_checked(const char *path, worker_shape_t shape, uint64_t seed, const char *report)
{
	worker_launch_opts_t o = {.plan_path = path, .backend = "cpu", .worker_exe = WORKER_EXE,
	                          .shape = shape, .seed = seed, .check = 1, .iters = 1,
	                          .timeout_ms = 20000, .report_path = report, .out = stdout};
	worker_launch_result_t res;
	sl_err rc = worker_launch(&o, &res);
	if (rc != SL_OK)
		fail_msg("run-plan %s: %s", path, sl_errmsg());
	const worker_check_result_t *c = &res.check;
	printf("  %s (H %d, KV %d, D %d): rel err O %.2e dQ %.2e dK %.2e dV %.2e LSE %.2e\n", path,
	       shape.heads, shape.kv_heads, shape.head_dim, c->rel_err[0], c->rel_err[1],
	       c->rel_err[2], c->rel_err[3], c->lse_err);
	assert_true(c->ok);
	for (int k = 0; k < 4; k++)
		assert_true(c->rel_err[k] < 1e-6);
	assert_int_equal(c->bad_padding, 0);
	assert_int_equal(c->bad_coverage, 0);
	assert_int_equal(c->nonfinite, 0);
	assert_true(res.measured_ms > 0);
}

/* Several slots; groups of 1, 2, 3 and 4 ranks in shuffled ring order; packed
 * ragged sequences; a sequence shorter than 2d; a shard that is all padding
 * (3 tokens on 4 ranks: ring position 3 holds positions 3 and 4); a rank idle
 * in a slot. */
static sl_plan_t *hand_plan(sl_cost_t *cost)
{
	int64_t len[] = {37, 200, 5, 150, 64, 9, 1, 90, 120, 3};
	sl_seq_t seqs[10];
	for (int i = 0; i < 10; i++) {
		seqs[i].id = 10 * i + 1;
		seqs[i].length = len[i];
	}
	preset_cost(cost, 4, 4);
	sl_plan_t *p = sl_plan_new("hand", "gpt-7b-flexsp", 4, 4, cost->cap, seqs, 10);
	assert_non_null(p);
	int32_t g4[] = {0, 1, 2, 3}, g3[] = {2, 0, 3}, g1a[] = {1}, g2[] = {3, 1}, g1b[] = {0},
		g4b[] = {1, 3, 0, 2};
	assert_int_equal(sl_plan_add_slot(p), SL_OK);
	assert_int_equal(sl_plan_add_group(p, g4, 4), SL_OK);
	assert_int_equal(sl_plan_add_item(p, 0, 0.0), SL_OK);
	assert_int_equal(sl_plan_add_item(p, 1, 0.0), SL_OK);
	assert_int_equal(sl_plan_add_slot(p), SL_OK);
	assert_int_equal(sl_plan_add_group(p, g3, 3), SL_OK);
	assert_int_equal(sl_plan_add_item(p, 2, 0.0), SL_OK);
	assert_int_equal(sl_plan_add_item(p, 3, 0.0), SL_OK);
	assert_int_equal(sl_plan_add_group(p, g1a, 1), SL_OK);
	assert_int_equal(sl_plan_add_item(p, 4, 0.0), SL_OK);
	assert_int_equal(sl_plan_add_item(p, 5, 0.0), SL_OK);
	assert_int_equal(sl_plan_add_slot(p), SL_OK);
	assert_int_equal(sl_plan_add_group(p, g2, 2), SL_OK);
	assert_int_equal(sl_plan_add_item(p, 6, 0.0), SL_OK);
	assert_int_equal(sl_plan_add_item(p, 7, 0.0), SL_OK);
	assert_int_equal(sl_plan_add_group(p, g1b, 1), SL_OK);
	assert_int_equal(sl_plan_add_item(p, 8, 0.0), SL_OK);
	assert_int_equal(sl_plan_add_slot(p), SL_OK);
	assert_int_equal(sl_plan_add_group(p, g4b, 4), SL_OK);
	assert_int_equal(sl_plan_add_item(p, 9, 0.0), SL_OK);
	return p;
}

static void test_hand_plan(void **state)
{
	(void)state;
	sl_cost_t cost;
	sl_plan_t *p = hand_plan(&cost);
	const char *path = write_plan(p, &cost, "hand.json");
	char report[128];
	snprintf(report, sizeof report, "%s/hand-report.json", tmpdir);
	run_checked(path, (worker_shape_t){4, 2, 16}, 1, report);
	/* the report has every group, with bytes moved by the multi-rank ones */
	FILE *f = fopen(report, "r");
	assert_non_null(f);
	char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "\"predicted_ms\""));
	assert_non_null(strstr(buf, "\"bytes_sent\""));
	assert_non_null(strstr(buf, "\"rel_err_dk\""));
	/* other shapes: plain multi-head and one KV head for all query heads */
	run_checked(path, (worker_shape_t){4, 4, 8}, 2, NULL);
	run_checked(path, (worker_shape_t){4, 1, 16}, 3, NULL);
	sl_plan_free(&p);
	sl_cost_fini(&cost);
}

/* Plans from the registered policies, on a profile small enough (cap 96
 * tokens per rank) that a few hundred tokens need multi-rank groups. The
 * profile is a file, so the workers resolve the plan's profile name. */
static void test_policy_plans(void **state)
{
	(void)state;
	sl_profile_t prof = *sl_profile_preset("gpt-7b-flexsp");
	snprintf(prof.name, sizeof prof.name, "%s/tiny.json", tmpdir);
	prof.params = 0;
	prof.model_state_bytes = 0;
	prof.gpu_mem_bytes = 96 * prof.act_bytes_per_token;
	char *js = sl_profile_to_json(&prof);
	assert_non_null(js);
	FILE *f = fopen(prof.name, "w");
	assert_non_null(f);
	fputs(js, f);
	fclose(f);
	free(js);
	sl_cluster_t cl = {.ranks = 4, .ranks_per_node = 2};
	sl_cost_t cost;
	assert_int_equal(sl_cost_init(&cost, &prof, &cl), SL_OK);
	int64_t len[] = {300, 17, 90, 5, 150, 64, 33, 1, 240, 70};
	sl_seq_t seqs[10];
	for (int i = 0; i < 10; i++) {
		seqs[i].id = i;
		seqs[i].length = len[i];
	}
	int planned = 0, multi = 0;
	for (size_t i = 0; i < sl_policy_count(); i++) {
		const sl_policy_t *pol = sl_policy_at(i);
		sl_plan_t *p = NULL;
		if (sl_plan_request(pol->name, &cost, seqs, 10, NULL, &p) != SL_OK) {
			printf("  policy %s: no plan (%s); skipped\n", pol->name, sl_errmsg());
			continue;
		}
		for (int64_t g = 0; g < p->ngroups; g++)
			multi += p->groups[g].nranks > 1;
		char name[64];
		snprintf(name, sizeof name, "policy-%s.json", pol->name);
		const char *path = write_plan(p, &cost, name);
		run_checked(path, (worker_shape_t){4, 2, 16}, 100 + i, NULL);
		planned++;
		sl_plan_free(&p);
	}
	printf("  %d policies planned, %d multi-rank groups in all\n", planned, multi);
	assert_true(planned >= 1);
	assert_true(multi >= 1);
	sl_cost_fini(&cost);
}

/* Runs the worker with args (a shell fragment) and returns its exit status;
 * out gets stdout+stderr. */
static int run_worker(const char *args, char *out, size_t n)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", WORKER_EXE, args);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t got = fread(out, 1, n - 1, p);
	out[got] = '\0';
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_bad_input(void **state)
{
	(void)state;
	char out[4096], args[512];
	sl_cost_t cost;
	sl_plan_t *p = hand_plan(&cost);
	char good[128];
	snprintf(good, sizeof good, "%s", write_plan(p, &cost, "good.json"));

	assert_int_equal(run_worker("", out, sizeof out), 2);
	assert_non_null(strstr(out, "--plan is required"));
	assert_int_equal(run_worker("--version", out, sizeof out), 0);
	assert_non_null(strstr(out, "sluice-worker " SLUICE_VERSION));

	snprintf(args, sizeof args, "--plan %s/missing.json --rank 0 --run-dir %s", tmpdir, tmpdir);
	assert_int_equal(run_worker(args, out, sizeof out), 2); /* unreadable input */
	assert_non_null(strstr(out, "missing.json: cannot open plan"));

	snprintf(args, sizeof args, "--plan %s --rank 4 --run-dir %s", good, tmpdir);
	assert_int_equal(run_worker(args, out, sizeof out), 1);
	assert_non_null(strstr(out, "rank 4 out of range: the plan has 4 ranks"));

	snprintf(args, sizeof args, "--plan %s --rank 0 --backend nope --run-dir %s", good, tmpdir);
	assert_int_equal(run_worker(args, out, sizeof out), 2);
	assert_non_null(strstr(out, "unknown backend 'nope'"));

	snprintf(args, sizeof args, "--plan %s --rank 0 --heads 6 --kv-heads 4 --run-dir %s", good,
	         tmpdir);
	assert_int_equal(run_worker(args, out, sizeof out), 2);
	assert_non_null(strstr(out, "heads 6 is not a multiple of kv-heads 4"));

	snprintf(args, sizeof args, "--plan %s --rank x", good);
	assert_int_equal(run_worker(args, out, sizeof out), 2);
	assert_non_null(strstr(out, "--rank 'x' is not an integer"));

	/* a plan whose ring names rank 0 twice */
	char bad[128];
	snprintf(bad, sizeof bad, "%s/twice.json", tmpdir);
	FILE *f = fopen(bad, "w");
	assert_non_null(f);
	fprintf(f, "{\"format\": \"sluice.plan/1\", \"policy\": \"hand\", \"profile\": "
	           "\"gpt-7b-flexsp\", \"ranks\": 2, \"ranks_per_node\": 2, \"cap_tokens\": %lld,\n"
	           " \"sequences\": [{\"id\": 0, \"length\": 10}],\n"
	           " \"slots\": [{\"groups\": [{\"ranks\": [0, 0], \"sequences\": [{\"id\": 0}]}]}]}\n",
	        (long long)cost.cap);
	fclose(f);
	snprintf(args, sizeof args, "--plan %s --rank 0 --run-dir %s", bad, tmpdir);
	assert_int_equal(run_worker(args, out, sizeof out), 2); /* a plan that fails its checks */
	assert_non_null(strstr(out, "twice.json: plan: slot 0: rank 0 is in more than one group"));

	/* a plan that breaks a rule of the format (memory): invalid, named */
	sl_cost_t bcost;
	sl_plan_t *big = hand_plan(&bcost);
	big->seqs[1].length = 4 * bcost.cap + 1000; /* cannot fit on 4 ranks */
	char bigp[128];
	snprintf(bigp, sizeof bigp, "%s", write_plan(big, &bcost, "toobig.json"));
	sl_cost_fini(&bcost);
	snprintf(args, sizeof args, "--plan %s --rank 0 --run-dir %s", bigp, tmpdir);
	assert_int_equal(run_worker(args, out, sizeof out), 2);
	assert_non_null(strstr(out, "toobig.json: invalid plan"));
	assert_non_null(strstr(out, "exceed the capacity"));
	sl_plan_free(&big);

	/* the launcher refuses the same inputs before starting anything */
	worker_launch_opts_t o = {.plan_path = bad, .worker_exe = WORKER_EXE,
	                          .shape = {4, 2, 16}, .seed = 1, .check = 1};
	worker_launch_result_t res;
	assert_int_equal(worker_launch(&o, &res), SL_EFORMAT);
	assert_non_null(strstr(sl_errmsg(), "twice.json"));
	o.plan_path = good;
	o.shape.kv_heads = 3;
	assert_int_equal(worker_launch(&o, &res), SL_EINVAL);
	assert_non_null(strstr(sl_errmsg(), "kv-heads 3"));
	/* a worker that fails is reported with its rank */
	o.shape.kv_heads = 2;
	o.worker_exe = "/bin/false";
	assert_int_equal(worker_launch(&o, &res), SL_EIO);
	assert_non_null(strstr(sl_errmsg(), "exited with status 1"));
	sl_plan_free(&p);
	sl_cost_fini(&cost);
}

/* A worker whose peer never comes gives up after its timeout, naming it. */
static void test_peer_timeout(void **state)
{
	(void)state;
	char out[4096], args[512];
	sl_cost_t cost;
	sl_plan_t *p = hand_plan(&cost);
	char path[128];
	snprintf(path, sizeof path, "%s", write_plan(p, &cost, "alone.json"));
	snprintf(args, sizeof args, "--plan %s --rank 1 --run-dir %s --timeout-ms 300", path,
	         tmpdir);
	assert_int_equal(run_worker(args, out, sizeof out), 1);
	assert_non_null(strstr(out, "no message from rank 0"));
	sl_plan_free(&p);
	sl_cost_fini(&cost);
}

#ifdef SL_SLUICE_CLI
/* The `sluice run-plan` command end to end. */
static void test_cli_run_plan(void **state)
{
	(void)state;
	sl_cost_t cost;
	sl_plan_t *p = hand_plan(&cost);
	char path[128], cmd[1024], out[8192];
	snprintf(path, sizeof path, "%s", write_plan(p, &cost, "cli.json"));
	snprintf(cmd, sizeof cmd,
	         "SLUICE_WORKER='%s' '%s' run-plan --check --heads 2 --kv-heads 1 --head-dim 8 "
	         "--report %s/cli-report.json %s 2>&1",
	         WORKER_EXE, SL_SLUICE_CLI, tmpdir, path);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t n = fread(out, 1, sizeof out - 1, f);
	out[n] = '\0';
	int st = pclose(f);
	printf("%s", out);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_non_null(strstr(out, "PASS"));
	assert_non_null(strstr(out, "predicted"));
	snprintf(cmd, sizeof cmd, "'%s' run-plan %s/nothere.json 2>&1", SL_SLUICE_CLI, tmpdir);
	f = popen(cmd, "r");
	n = fread(out, 1, sizeof out - 1, f);
	out[n] = '\0';
	st = pclose(f);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
	assert_non_null(strstr(out, "nothere.json: cannot open plan"));
	sl_plan_free(&p);
	sl_cost_fini(&cost);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hand_plan),   cmocka_unit_test(test_policy_plans),
		cmocka_unit_test(test_bad_input),   cmocka_unit_test(test_peer_timeout),
#ifdef SL_SLUICE_CLI
		cmocka_unit_test(test_cli_run_plan),
#endif
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
