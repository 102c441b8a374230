/* wd_serve: a real sluiced, real sluice-worker processes serving it (CPU
 * backend, ZeroMQ mesh over ipc in a temp dir) and a libsluice client asking
 * for plans. Each step's work orders are acknowledged, executed and their
 * per-slot metrics reach the daemon's status; the outputs the workers dump
 * pass the same fp64 reference check as `sluice run-plan`, and the bytes
 * each rank reports are what its ring really moved. A worker that cannot
 * run an order says why (the daemon counts it as rejected) and goes on; a
 * killed worker's job hears of it, its peers refuse orders that need the
 * dead rank at once, another job runs undisturbed, and a restarted worker
 * takes its place. SIGTERM ends a worker cleanly; --max-steps too.
 *
 * With WD_BACKEND=cuda (ctest wd_serve_cuda, GPU machines only; WD_RANKS
 * ranks, WD_HEAD_DIM) only the steps test runs, on the cuda backend, checked
 * against the reference within the backend's bf16 tolerance. WD_WORKER_BIN
 * and WD_SLUICED_BIN override the binaries (a build carried elsewhere). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sluice/client.h"
#include "worker.h"

static worker_shape_t shape = {.heads = 4, .kv_heads = 2, .head_dim = 8};
#define SEED 7
#define NA na /* ranks of job wd-a */
#define NA_MAX 16
#define NB 2 /* ranks of job wd-b */
static int na = 4;
static const char *backend = "cpu";
static const char *worker_bin = WORKER_BIN, *sluiced_bin = SLUICED_BIN;

static char tmpdir[64], endpoint[128];
static pid_t daemon_pid = -1;
static pid_t wa[NA_MAX], wb[NB];

/* How long the test waits for something that is sure to happen (a line a
 * worker prints, a process that exits): only a guard against a hang, so
 * generous for any loaded machine; every wait returns as soon as it
 * happens. No test asserts how long anything took. */
#define SURE_MS 30000

/* ---- processes ------------------------------------------------------------ */

/* Starts argv with stdout and stderr appended to files under tmpdir. */
static pid_t spawn(char *const argv[], const char *name)
{
	char out[160], err[160];
	snprintf(out, sizeof out, "%s/%s.out", tmpdir, name);
	snprintf(err, sizeof err, "%s/%s.err", tmpdir, name);
	pid_t pid = fork();
	if (pid == 0) {
		int fo = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
		int fe = open(err, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fo, STDOUT_FILENO);
		dup2(fe, STDERR_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static char *slurp(const char *name)
{
	char path[160];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = calloc(1, 1 << 20);
	size_t n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* Waits until file `name` contains text; 1 when it did within timeout_ms. */
static int wait_text(const char *name, const char *text, int timeout_ms)
{
	for (double end = sl_now_ms() + timeout_ms; sl_now_ms() < end; usleep(20000)) {
		char *s = slurp(name);
		int ok = s && strstr(s, text);
		free(s);
		if (ok)
			return 1;
	}
	return 0;
}

static void show(const char *name)
{
	char *s = slurp(name);
	fprintf(stderr, "---- %s ----\n%s\n", name, s ? s : "(none)");
	free(s);
}

/* Starts the sluice-worker of rank r of job; extra: more arguments. */
static pid_t start_worker(const char *job, int r, const char *const extra[])
{
	char rank[16], name[64], rundir[128], dumpdir[128], dim[16];
	snprintf(dim, sizeof dim, "%d", (int)shape.head_dim);
	snprintf(rank, sizeof rank, "%d", r);
	snprintf(name, sizeof name, "%s-r%d", job, r);
	snprintf(rundir, sizeof rundir, "%s/run-%s", tmpdir, job);
	snprintf(dumpdir, sizeof dumpdir, "%s/dump-%s", tmpdir, job);
	mkdir(rundir, 0700);
	char *argv[40] = {(char *)worker_bin,
	                  "--endpoint",
	                  endpoint,
	                  "--job",
	                  (char *)job,
	                  "--rank",
	                  rank,
	                  "--run-dir",
	                  rundir,
	                  "--dump",
	                  dumpdir,
	                  "--heads",
	                  "4",
	                  "--kv-heads",
	                  "2",
	                  "--head-dim",
	                  dim,
	                  "--seed",
	                  "7",
	                  "--timeout-ms", /* a peer's message always comes: see SURE_MS */
	                  strcmp(backend, "cpu") == 0 ? "30000" : "60000",
	                  "--backend",
	                  (char *)backend};
	int n = 23;
	for (int i = 0; extra && extra[i] && n < 38; i++)
		argv[n++] = (char *)extra[i];
	argv[n] = NULL;
	char out[80];
	snprintf(out, sizeof out, "%s.out", name);
	/* a restarted rank appends to the same file: wait for one more line */
	char *before = slurp(out);
	int had = 0;
	for (const char *p = before; p && (p = strstr(p, "registered job")); p++)
		had++;
	free(before);
	pid_t pid = spawn(argv, name);
	for (double end = sl_now_ms() + SURE_MS; sl_now_ms() < end; usleep(20000)) {
		char *s = slurp(out);
		int now = 0;
		for (const char *p = s; p && (p = strstr(p, "registered job")); p++)
			now++;
		free(s);
		if (now > had)
			return pid;
	}
	snprintf(out, sizeof out, "%s.err", name);
	show(out);
	fail_msg("worker %s rank %d did not register", job, r);
	return -1;
}

/* Waits (SURE_MS) for pid to exit by itself; returns its exit status, or
 * 128 + the signal that ended it, or -1 when it was still running and had
 * to be killed. */
static int reap(pid_t pid)
{
	int st;
	for (double end = sl_now_ms() + SURE_MS; sl_now_ms() < end; usleep(10000))
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* SIGTERM, then reap (0: it exited cleanly by itself). */
static int stop_process(pid_t pid)
{
	if (pid <= 0)
		return -1;
	kill(pid, SIGTERM);
	return reap(pid);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/wd_serve_XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(endpoint, sizeof endpoint, "ipc://%s/d.sock", tmpdir);
	char *argv[] = {(char *)sluiced_bin, "--endpoint", endpoint,         "--threads", "2",
	                "--log-level",       "warn",       "--heartbeat-ms", "100",       NULL};
	daemon_pid = spawn(argv, "sluiced");
	if (!wait_text("sluiced.out", "listening on", SURE_MS)) {
		show("sluiced.err");
		return -1;
	}
	for (int r = 0; r < NA; r++)
		wa[r] = start_worker("wd-a", r, NULL);
	for (int r = 0; r < NB; r++)
		wb[r] = start_worker("wd-b", r, NULL);
	return 0;
}

/* Whether any process left a sanitizer report in its stderr file (child
 * processes of a sanitizer build report there, not to this test). */
static int sanitizer_reports(void)
{
	int bad = 0;
	DIR *d = opendir(tmpdir);
	for (struct dirent *e; d && (e = readdir(d));) {
		size_t n = strlen(e->d_name);
		if (n < 4 || strcmp(e->d_name + n - 4, ".err") != 0)
			continue;
		char *text = slurp(e->d_name);
		if (text && (strstr(text, "Sanitizer") || strstr(text, "runtime error:"))) {
			show(e->d_name);
			bad = 1;
		}
		free(text);
	}
	if (d)
		closedir(d);
	return bad;
}

static int teardown(void **state)
{
	(void)state;
	int bad = 0;
	/* A job's workers are stopped together: a cuda worker's NCCL teardown
	 * was seen waiting for its peers to tear down too. */
	for (int r = 0; r < NA; r++)
		if (wa[r] > 0)
			kill(wa[r], SIGTERM);
	for (int r = 0; r < NB; r++)
		if (wb[r] > 0)
			kill(wb[r], SIGTERM);
	for (int r = 0; r < NA; r++)
		if (wa[r] > 0 && stop_process(wa[r]) != 0) {
			fprintf(stderr, "wd-a rank %d did not stop cleanly\n", r);
			bad = 1;
		}
	for (int r = 0; r < NB; r++)
		if (wb[r] > 0 && stop_process(wb[r]) != 0) {
			fprintf(stderr, "wd-b rank %d did not stop cleanly\n", r);
			bad = 1;
		}
	if (stop_process(daemon_pid) != 0) {
		show("sluiced.err");
		bad = 1;
	}
	bad |= sanitizer_reports();
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		return -1;
	return bad ? -1 : 0;
}

static int run_plain(const char *const args[], const char *name, char *err, size_t size);

/* ---- requests and status ---------------------------------------------------- */

static sl_profile_t tiny_profile(void)
{
	sl_profile_t p = *sl_profile_preset("gpt-7b-flexsp");
	snprintf(p.name, sizeof p.name, "wd-tiny");
	p.params = 0;
	p.model_state_bytes = 0;
	p.act_bytes_per_token = 1e6;
	p.gpu_mem_bytes = 64e6; /* 64 tokens a rank and no offloading: long */
	p.max_offload = 0;      /* sequences must use rings */
	return p;
}

static const sl_profile_t *profile(void)
{
	static sl_profile_t p;
	static int done;
	if (!done) {
		p = tiny_profile();
		done = 1;
	}
	return &p;
}

/* Asks for a plan of step for job over ranks ranks; returns it. */
static sl_plan_t *plan_step(sl_client_t *c, const char *job, uint64_t step, int32_t ranks,
                            const char *policy, int32_t sp, const int64_t *len, int64_t n)
{
	sl_plan_req_t r;
	memset(&r, 0, sizeof r);
	r.job = job;
	r.step = step;
	r.lengths = len;
	r.n = n;
	r.policy = policy;
	r.inline_profile = profile();
	r.ranks = ranks;
	r.ranks_per_node = ranks;
	r.opts.sp = sp;
	sl_plan_t *p = NULL;
	if (sl_client_plan(c, &r, SURE_MS, &p) != SL_OK)
		fail_msg("plan %s step %llu: %s", job, (unsigned long long)step, sl_errmsg());
	return p;
}

/* The status entry of job's step (a new reference), or NULL. */
static json_t *step_status(sl_client_t *c, const char *job, uint64_t step)
{
	char *text = NULL;
	if (sl_client_status_json(c, job, 0, SURE_MS, &text) != SL_OK)
		fail_msg("status: %s", sl_errmsg());
	json_t *root = json_loads(text, 0, NULL);
	sl_free(text);
	assert_non_null(root);
	json_t *found = NULL;
	json_t *steps = json_object_get(json_array_get(json_object_get(root, "jobs"), 0), "steps");
	for (size_t i = 0; i < json_array_size(steps); i++) {
		json_t *s = json_array_get(steps, i);
		if ((uint64_t)json_integer_value(json_object_get(s, "step")) == step)
			found = s;
	}
	json_incref(found);
	json_decref(root);
	return found;
}

static json_int_t geti(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

/* Waits until the step has acked + nacked == answers and metrics from
 * nmetrics ranks; returns the step's status entry. */
static json_t *wait_step(sl_client_t *c, const char *job, uint64_t step, int answers, int nmetrics)
{
	json_t *s = NULL;
	for (double end = sl_now_ms() + SURE_MS; sl_now_ms() < end; usleep(30000)) {
		json_decref(s);
		s = step_status(c, job, step);
		if (s && geti(s, "acked") + geti(s, "nacked") >= answers &&
		    (int)json_array_size(json_object_get(s, "metrics")) >= nmetrics)
			return s;
	}
	char *dump = s ? json_dumps(s, JSON_INDENT(1)) : NULL;
	fprintf(stderr, "step status: %s\n", dump ? dump : "(none)");
	free(dump);
	for (int r = 0; r < NA; r++) {
		char name[32];
		snprintf(name, sizeof name, "%s-r%d.out", job, r);
		show(name);
		snprintf(name, sizeof name, "%s-r%d.err", job, r);
		show(name);
	}
	fail_msg("job %s step %llu: no %d answers and %d metrics", job, (unsigned long long)step,
	         answers, nmetrics);
	return NULL;
}

/* Checks the step's dumps against the fp64 reference (the checker of
 * `sluice run-plan`). */
static void check_outputs(const sl_plan_t *plan, const char *job, uint64_t step)
{
	char dir[128];
	snprintf(dir, sizeof dir, "%s/dump-%s", tmpdir, job);
	char **paths = calloc((size_t)plan->ranks, sizeof *paths);
	for (int32_t r = 0; r < plan->ranks; r++) {
		paths[r] = malloc(256);
		worker_dump_step_path(dir, step, r, paths[r], 256);
	}
	worker_check_result_t res;
	if (worker_check_dumps(plan, &shape, SEED, (const char *const *)paths, &res) != SL_OK)
		fail_msg("check %s step %llu: %s", job, (unsigned long long)step, sl_errmsg());
	printf(
	    "  %s step %llu (%s, %d slots, %lld groups): rel err O %.1e dQ %.1e dK %.1e dV %.1e\n",
	    job, (unsigned long long)step, plan->policy, (int)plan->nslots,
	    (long long)plan->ngroups, res.rel_err[0], res.rel_err[1], res.rel_err[2],
	    res.rel_err[3]);
	assert_true(res.ok);
	assert_int_equal(res.bad_coverage, 0);
	assert_int_equal(res.bad_padding, 0);
	for (int k = 0; k < 4; k++)
		assert_true(res.rel_err[k] < (strcmp(backend, "cpu") == 0 ? 1e-6 : res.tol));
	for (int32_t r = 0; r < plan->ranks; r++)
		free(paths[r]);
	free(paths);
}

/* The per-slot metrics of every rank name its slots and the bytes its ring
 * moved: (3d - 2) K|V buffers of 2 x ntok x kv_heads x head_dim doubles
 * each way (d - 1 forward hops, d - 1 K|V and d dK|dV backward hops). */
static void check_metrics(const sl_plan_t *plan, json_t *st, int32_t skip_rank)
{
	json_t *ms = json_object_get(st, "metrics");
	int rings = 0;
	for (int32_t r = 0; r < plan->ranks; r++) {
		if (r == skip_rank)
			continue;
		json_t *m = NULL;
		for (size_t i = 0; i < json_array_size(ms); i++)
			if (geti(json_array_get(ms, i), "rank") == r)
				m = json_array_get(ms, i);
		if (!m)
			fail_msg("no metrics from rank %d", (int)r);
		worker_order_t *o = NULL;
		assert_int_equal(worker_order_build(plan, r, &shape, &o), SL_OK);
		json_t *slots = json_object_get(m, "slots");
		assert_int_equal(json_array_size(slots), o->nwork);
		for (int32_t i = 0; i < o->nwork; i++) {
			const worker_group_work_t *w = &o->work[i];
			json_t *sm = json_array_get(slots, (size_t)i);
			json_int_t kv = 2 * w->ntok * shape.kv_heads * shape.head_dim * 8;
			json_int_t want = w->d > 1 ? (3 * w->d - 2) * kv : 0;
			assert_int_equal(geti(sm, "slot"), w->slot);
			if (strcmp(backend, "cpu") == 0) {
				assert_int_equal(geti(sm, "bytes_sent"), want);
				assert_int_equal(geti(sm, "bytes_recv"), want);
			} else {
				assert_true(geti(sm, "bytes_sent") > 0 || w->d == 1);
			}
			assert_true(json_real_value(json_object_get(sm, "compute_ms")) > 0);
			rings += w->d > 1;
		}
		assert_true(json_real_value(json_object_get(m, "step_ms")) > 0);
		worker_order_free(&o);
	}
	assert_true(rings > 0); /* groups of several ranks ran */
}

static const int64_t lens_a[] = {120, 90, 61, 33, 20, 12, 7, 5, 1, 64};

/* ---- tests ------------------------------------------------------------------ */

/* Three steps (static --sp 2 twice, then sluice) on job wd-a: every rank
 * acks, executes and reports; the outputs match the reference. */
static void test_steps_run_and_check(void **state)
{
	(void)state;
	sl_client_t *c = NULL;
	assert_int_equal(sl_client_new(endpoint, NULL, &c), SL_OK);
	for (uint64_t step = 1; step <= 3; step++) {
		const char *policy = step < 3 ? "static" : "sluice";
		int64_t len[10];
		for (int i = 0; i < 10; i++)
			len[i] = lens_a[(i + (int)step) % 10] + (int64_t)step;
		sl_plan_t *p = plan_step(c, "wd-a", step, NA, policy, step < 3 ? 2 : 0, len, 10);
		assert_int_equal(sl_client_last_dispatched(c), NA);
		json_t *st = wait_step(c, "wd-a", step, NA, NA);
		assert_int_equal(geti(st, "acked"), NA);
		assert_int_equal(geti(st, "nacked"), 0);
		check_metrics(p, st, -1);
		check_outputs(p, "wd-a", step);
		json_decref(st);
		sl_plan_free(&p);
	}
	for (int r = 0; r < NA; r++) {
		char name[32];
		snprintf(name, sizeof name, "wd-a-r%d.out", r);
		assert_true(wait_text(name, "step 3: done", SURE_MS));
	}
	sl_client_free(&c);
#ifdef SLUICE_CLI_BIN
	/* and `sluice status` shows them: every rank's metrics of step 3 (where
	 * the build's CLI is at hand: not in a carried copy) */
	if (access(SLUICE_CLI_BIN, X_OK) != 0)
		return;
	char *argv[] = {SLUICE_CLI_BIN, "status", "--endpoint", endpoint, "--job", "wd-a",
	                "--steps",      "1",      "--format",   "json",   NULL};
	pid_t pid = spawn(argv, "status");
	int st = -1;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char *text = slurp("status.out");
	json_t *root = json_loads(text ? text : "", 0, NULL);
	free(text);
	json_t *steps = json_object_get(json_array_get(json_object_get(root, "jobs"), 0), "steps");
	assert_int_equal(json_array_size(steps), 1);
	json_t *s3 = json_array_get(steps, 0);
	assert_int_equal(geti(s3, "step"), 3);
	assert_int_equal(geti(s3, "acked"), NA);
	assert_int_equal(json_array_size(json_object_get(s3, "metrics")), NA);
	json_decref(root);
#endif
}

/* Orders a worker cannot run are refused with the reason, and the worker
 * goes on with the next. */
static void test_refusals(void **state)
{
	(void)state;
	const char *limit[] = {"--max-tokens", "40", "--ranks", "2", NULL};
	/* rank 1 is to wait in vain once below: a shorter wait for a peer than
	 * SURE_MS, yet long enough that its ordinary step 3 never depends on how
	 * soon rank 0 gets its order on a busy machine */
	const char *impatient[] = {"--timeout-ms", "10000", NULL};
	pid_t w0 = start_worker("wd-c", 0, limit), w1 = start_worker("wd-c", 1, impatient);
	sl_client_t *c = NULL;
	assert_int_equal(sl_client_new(endpoint, NULL, &c), SL_OK);
	/* a plan of another size than --ranks 2 */
	int64_t small[] = {9, 5, 3};
	sl_plan_t *p = plan_step(c, "wd-c", 1, 1, "static", 1, small, 3);
	json_t *st = wait_step(c, "wd-c", 1, 1, 0);
	assert_int_equal(geti(st, "nacked"), 1);
	assert_true(wait_text("wd-c-r0.out",
	                      "step 1: rejected: the plan has 1 ranks but this "
	                      "worker was started with --ranks 2",
	                      SURE_MS));
	json_decref(st);
	sl_plan_free(&p);
	/* more local tokens than --max-tokens 40: rank 0 refuses; rank 1, its
	 * ring partner, waits for it in vain and reports the step failed: the
	 * client and rank 0 hear of it, status shows it */
	int64_t big[] = {120, 20};
	p = plan_step(c, "wd-c", 2, 2, "static", 2, big, 2);
	sl_event_t ev;
	int got = 0;
	for (double end = sl_now_ms() + SURE_MS; !got && sl_now_ms() < end;) {
		sl_client_poll(c, 50);
		while (!got && sl_client_next_event(c, &ev))
			got = ev.kind == SL_EVENT_STEP_FAILED;
	}
	assert_true(got);
	assert_int_equal(ev.rank, 1);
	assert_int_equal(ev.step, 2);
	assert_string_equal(ev.job, "wd-c");
	assert_non_null(strstr(ev.message, "no message from rank 0"));
	st = wait_step(c, "wd-c", 2, 2, 0);
	assert_int_equal(geti(st, "nacked"), 1);
	assert_int_equal(geti(st, "acked"), 1);
	assert_int_equal(geti(st, "failed"), 1);
	assert_int_equal(geti(st, "completed"), 0);
	json_t *oc = json_object_get(st, "outcomes");
	assert_int_equal(json_array_size(oc), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(oc, 0), "state")),
	                    "rejected");
	assert_string_equal(json_string_value(json_object_get(json_array_get(oc, 1), "state")),
	                    "failed");
	assert_non_null(strstr(json_string_value(json_object_get(json_array_get(oc, 1), "error")),
	                       "no message from rank 0"));
	assert_true(wait_text("wd-c-r0.out", "exceed this worker's --max-tokens 40", SURE_MS));
	assert_true(wait_text("wd-c-r1.out", "step 2: failed: rank 1, slot", SURE_MS));
	assert_true(wait_text("wd-c-r1.out", "no message from rank 0", SURE_MS));
	assert_true(wait_text("wd-c-r0.out", "event failed 1 step 2: rank 1 of job wd-c", SURE_MS));
	json_decref(st);
	sl_plan_free(&p);
	/* and both run the next step that fits */
	int64_t fit[] = {30, 21, 9, 4};
	p = plan_step(c, "wd-c", 3, 2, "static", 2, fit, 4);
	st = wait_step(c, "wd-c", 3, 2, 2);
	assert_int_equal(geti(st, "acked"), 2);
	assert_int_equal(geti(st, "nacked"), 0);
	check_metrics(p, st, -1);
	check_outputs(p, "wd-c", 3);
	json_decref(st);
	sl_plan_free(&p);
	sl_client_free(&c);
	assert_int_equal(stop_process(w0), 0);
	assert_int_equal(stop_process(w1), 0);
}

/* A backend that cannot start with the worker's shape refuses the order and
 * says why (only in builds with the cuda backend; head_dim 8 is refused
 * before any device is touched). */
static void test_backend_refusal(void **state)
{
	(void)state;
	char err[4096];
	const char *help[] = {"--help", NULL};
	run_plain(help, "help", err, sizeof err);
	char *out = slurp("help.out");
	int have_cuda = out && strstr(out, "backends: cpu cuda");
	free(out);
	if (!have_cuda) {
		printf("  no cuda backend in this build\n");
		return;
	}
	const char *cuda[] = {"--backend", "cuda", NULL};
	pid_t w = start_worker("wd-e", 0, cuda);
	sl_client_t *c = NULL;
	assert_int_equal(sl_client_new(endpoint, NULL, &c), SL_OK);
	int64_t len[] = {12, 7};
	sl_plan_t *p = plan_step(c, "wd-e", 1, 1, "static", 1, len, 2);
	json_t *st = wait_step(c, "wd-e", 1, 1, 0);
	assert_int_equal(geti(st, "nacked"), 1);
	assert_true(
	    wait_text("wd-e-r0.out", "step 1: rejected: cannot start the cuda backend", SURE_MS));
	assert_true(wait_text("wd-e-r0.out", "head_dim 8 not supported", SURE_MS));
	json_decref(st);
	sl_plan_free(&p);
	sl_client_free(&c);
	assert_int_equal(stop_process(w), 0);
}

/* A killed worker of wd-a: its job is told, orders needing it are refused
 * at once (not after the mesh timeout), orders not needing it run, job
 * wd-b is untouched, and a restarted worker rejoins. */
static void test_lost_worker(void **state)
{
	(void)state;
	sl_client_t *ca = NULL, *cb = NULL;
	assert_int_equal(sl_client_new(endpoint, NULL, &ca), SL_OK);
	assert_int_equal(sl_client_new(endpoint, NULL, &cb), SL_OK);
	kill(wa[3], SIGKILL);
	waitpid(wa[3], NULL, 0);
	wa[3] = -1;
	for (int r = 0; r < 3; r++) {
		char name[32];
		snprintf(name, sizeof name, "wd-a-r%d.out", r);
		if (!wait_text(name, "event lost 3:", SURE_MS)) {
			show(name);
			fail_msg("rank %d did not hear that rank 3 was lost", r);
		}
	}
	/* static --sp 2 on 4 ranks: rings {0,1} and {2,3} */
	sl_plan_t *p = plan_step(ca, "wd-a", 4, NA, "static", 2, lens_a, 10);
	int32_t nlost = 0;
	const int32_t *lost = sl_client_last_lost(ca, &nlost);
	assert_int_equal(nlost, 1);
	assert_int_equal(lost[0], 3);
	assert_int_equal(sl_client_last_dispatched(ca), NA - 1);
	json_t *st = wait_step(ca, "wd-a", 4, NA - 1, 2);
	/* refused at once, not after the mesh timeout: rank 2 answers its
	 * order with a refusal naming the lost rank (nacked), where waiting
	 * for rank 3 would have acked the order and then failed it ("no
	 * message from rank 3 within 30000 ms") */
	assert_int_equal(geti(st, "acked"), 2);
	assert_int_equal(geti(st, "nacked"), 1);
	assert_int_equal(geti(st, "failed"), 0);
	assert_true(wait_text("wd-a-r2.out", "step 4: rejected: slot", SURE_MS));
	assert_true(
	    wait_text("wd-a-r2.out", "needs rank 3, whose worker sluiced reported lost", SURE_MS));
	assert_true(wait_text("wd-a-r0.out", "step 4: done", SURE_MS));
	json_decref(st);
	sl_plan_free(&p);

	/* job wd-b heard nothing and runs */
	sl_client_poll(cb, 50);
	sl_event_t ev;
	assert_int_equal(sl_client_next_event(cb, &ev), 0);
	int64_t lb[] = {100, 40, 17, 3};
	p = plan_step(cb, "wd-b", 1, NB, "static", 2, lb, 4);
	st = wait_step(cb, "wd-b", 1, NB, NB);
	assert_int_equal(geti(st, "acked"), NB);
	check_metrics(p, st, -1);
	check_outputs(p, "wd-b", 1);
	json_decref(st);
	sl_plan_free(&p);
	assert_false(wait_text("wd-b-r0.out", "event lost", 100));

	/* rank 3 comes back: its peers and the client are told (WORKER_JOINED),
	 * and the next step runs whole and checks */
	wa[3] = start_worker("wd-a", 3, NULL);
	for (int r = 0; r < 3; r++) {
		char name[32];
		snprintf(name, sizeof name, "wd-a-r%d.out", r);
		if (!wait_text(name, "of job wd-a registered again after being lost", SURE_MS)) {
			show(name);
			fail_msg("rank %d did not hear that rank 3 joined", r);
		}
	}
	p = plan_step(ca, "wd-a", 5, NA, "static", 2, lens_a, 10);
	assert_int_equal(sl_client_last_dispatched(ca), NA);
	int joined = 0;
	for (double end = sl_now_ms() + SURE_MS; !joined && sl_now_ms() < end;) {
		sl_client_poll(ca, 50);
		while (!joined && sl_client_next_event(ca, &ev))
			joined = ev.kind == SL_EVENT_WORKER_JOINED && ev.rank == 3;
	}
	assert_true(joined);
	assert_false(wait_text("wd-b-r0.out", "of job wd-a", 50)); /* job wd-b: not its news */
	st = wait_step(ca, "wd-a", 5, NA, NA);
	assert_int_equal(geti(st, "acked"), NA);
	assert_int_equal(geti(st, "nacked"), 0);
	check_metrics(p, st, -1);
	check_outputs(p, "wd-a", 5);
	json_decref(st);
	sl_plan_free(&p);
	sl_client_free(&ca);
	sl_client_free(&cb);
}

/* SIGTERM while idle ends a worker with status 0; --max-steps 1 exits after
 * its first order. */
static void test_clean_exit(void **state)
{
	(void)state;
	const char *once[] = {"--max-steps", "1", NULL};
	pid_t w = start_worker("wd-d", 0, once);
	sl_client_t *c = NULL;
	assert_int_equal(sl_client_new(endpoint, NULL, &c), SL_OK);
	int64_t len[] = {12, 7};
	sl_plan_t *p = plan_step(c, "wd-d", 1, 1, "static", 1, len, 2);
	assert_int_equal(reap(w), 0);
	assert_true(wait_text("wd-d-r0.out", "done after 1 orders", SURE_MS));
	json_t *s = wait_step(c, "wd-d", 1, 1, 1);
	check_outputs(p, "wd-d", 1);
	json_decref(s);
	sl_plan_free(&p);
	sl_client_free(&c);

	/* an idle worker hears SIGTERM in its wait and exits 0 by itself (one
	 * that did not would still be running, and be killed: -1) */
	assert_int_equal(stop_process(wb[1]), 0);
	wb[1] = -1;
	assert_true(wait_text("wd-b-r1.out", "stopped (signal 15)", SURE_MS));
}

/* Runs sluice-worker with args (a NULL-terminated list after the binary);
 * returns its exit status and its stderr in err. */
static int run_plain(const char *const args[], const char *name, char *err, size_t size)
{
	char *argv[32] = {(char *)worker_bin};
	int n = 1;
	for (int i = 0; args[i] && n < 31; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	pid_t pid = spawn(argv, name);
	int st = -1;
	waitpid(pid, &st, 0);
	char file[80];
	snprintf(file, sizeof file, "%s.err", name);
	char *text = slurp(file);
	snprintf(err, size, "%s", text ? text : "");
	free(text);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Options of the wrong mode and a daemon that is not there are named. A
 * worker gives up on an absent daemon after its --register-timeout-ms:
 * one with 600 ms exits (1, naming the timeout) while one started before
 * it with 10 minutes (longer than any test run lives) still waits, and that
 * one stops cleanly on SIGTERM. The order of the two shows the timeout was
 * honoured; no clock is read. */
static void test_usage_and_no_daemon(void **state)
{
	(void)state;
	char err[2048], nowhere[160];
	const char *both[] = {"--plan", "p.json", "--job", "j", "--rank", "0", NULL};
	assert_int_equal(run_plain(both, "u1", err, sizeof err), 2);
	assert_non_null(strstr(err, "--plan and --job exclude each other"));
	const char *report[] = {"--job", "j", "--rank", "0", "--report", "r.json", NULL};
	assert_int_equal(run_plain(report, "u2", err, sizeof err), 2);
	assert_non_null(strstr(err, "--report is for --plan runs"));
	const char *ranks[] = {"--plan", "p.json", "--rank", "0", "--max-steps", "3", NULL};
	assert_int_equal(run_plain(ranks, "u3", err, sizeof err), 2);
	assert_non_null(strstr(err, "--max-steps is for serving sluiced"));
	const char *shape_bad[] = {"--job", "j",          "--rank", "0", "--heads",
	                           "6",     "--kv-heads", "4",      NULL};
	assert_int_equal(run_plain(shape_bad, "u4", err, sizeof err), 2);
	assert_non_null(strstr(err, "heads 6 is not a multiple of kv-heads 4"));
	snprintf(nowhere, sizeof nowhere, "ipc://%s/nobody.sock", tmpdir);
	char *patient[] = {
	    (char *)worker_bin,      "--endpoint", nowhere, "--job", "j", "--rank", "1",
	    "--register-timeout-ms", "600000",     NULL};
	pid_t waiting = spawn(patient, "u6");
	const char *absent[] = {
	    "--endpoint", nowhere, "--job", "j", "--rank", "0", "--register-timeout-ms",
	    "600",        NULL};
	assert_int_equal(run_plain(absent, "u5", err, sizeof err), 1);
	assert_non_null(strstr(err, "no answer within 600 ms"));
	assert_non_null(strstr(err, "is sluiced running?"));
	int st;
	assert_int_equal(waitpid(waiting, &st, WNOHANG), 0);
	assert_int_equal(stop_process(waiting), 0);
	assert_true(wait_text("u6.out", "stopped (signal 15) before registering", SURE_MS));
}

/* Number of /dev/nvidiaN devices (no CUDA call: this process forks). */
static int gpu_count(void)
{
	int n = 0;
	char path[32];
	for (int i = 0; i < 64; i++) {
		snprintf(path, sizeof path, "/dev/nvidia%d", i);
		n += access(path, F_OK) == 0;
	}
	return n;
}

int main(void)
{
	const char *e;
	if ((e = getenv("WD_WORKER_BIN")) && *e)
		worker_bin = e;
	if ((e = getenv("WD_SLUICED_BIN")) && *e)
		sluiced_bin = e;
	if ((e = getenv("WD_BACKEND")) && *e)
		backend = e;
	if ((e = getenv("WD_RANKS")) && *e)
		na = atoi(e);
	if ((e = getenv("WD_HEAD_DIM")) && *e)
		shape.head_dim = atoi(e);
	if (na < 2 || na > NA_MAX) {
		fprintf(stderr, "WD_RANKS=%d outside [2, %d]\n", na, NA_MAX);
		return 2;
	}
	if (strcmp(backend, "cpu") != 0 && gpu_count() < na) {
		printf("skipped: %d GPUs for %d ranks\n", gpu_count(), na);
		return 77;
	}
	/* The other tests assume 4 CPU ranks; on cuda, a lost rank's NCCL
	 * communicator is not rebuilt (see serve.c). */
	if (strcmp(backend, "cpu") != 0 || na != 4)
		cmocka_set_test_filter("test_steps_run_and_check");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_steps_run_and_check), cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_backend_refusal),     cmocka_unit_test(test_lost_worker),
	    cmocka_unit_test(test_clean_exit),          cmocka_unit_test(test_usage_and_no_daemon),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
