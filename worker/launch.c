/* sluice worker: `sluice run-plan` — one local sluice-worker process per rank
 * of a plan, then the check and the report. The workers are exec'd, never
 * just forked: CUDA (and NCCL) must be first touched in a fresh process. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"

/* Finds the worker executable (see worker_launch_opts_t). buf gets a path or
 * the bare name to look up in PATH. */
static sl_err launch_find_worker(const worker_launch_opts_t *o, char *buf, size_t n)
{
	const char *env = getenv("SLUICE_WORKER");
	const char *given = o->worker_exe ? o->worker_exe : (env && *env ? env : NULL);
	if (given) {
		if (access(given, X_OK) != 0)
			return sl_seterr(SL_ENOTFOUND, "worker executable '%s' (%s) is not executable: %s",
			                 given, o->worker_exe ? "--worker" : "$SLUICE_WORKER",
			                 strerror(errno));
		snprintf(buf, n, "%s", given);
		return SL_OK;
	}
	char self[PATH_MAX];
	ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
	if (k > 0) {
		self[k] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			const char *rel[] = {"/sluice-worker", "/../worker/sluice-worker"};
			for (size_t i = 0; i < 2; i++) {
				snprintf(buf, n, "%s%s", self, rel[i]);
				if (access(buf, X_OK) == 0)
					return SL_OK;
			}
		}
	}
	snprintf(buf, n, "sluice-worker");
	return SL_OK;
}

/* Removes the files a run leaves in its directory, then the directory. */
static void launch_cleanup(const char *dir, int32_t nranks, int keep)
{
	char p[PATH_MAX + 32];
	for (int32_t r = 0; r < nranks; r++) {
		snprintf(p, sizeof p, "%s/out-r%d.bin", dir, (int)r);
		if (!keep)
			unlink(p);
		snprintf(p, sizeof p, "%s/rep-r%d.json", dir, (int)r);
		if (!keep)
			unlink(p);
		snprintf(p, sizeof p, "%s/w%d.ipc", dir, (int)r);
		unlink(p);
	}
	if (!keep)
		rmdir(dir);
}

/* Starts rank r's worker; *pid gets its id. */
static sl_err launch_spawn(const char *exe, const worker_launch_opts_t *o, const char *dir,
                           int32_t r, int32_t nranks, pid_t *pid)
{
	char a_rank[16], a_heads[16], a_kv[16], a_dim[16], a_seed[32], a_iters[16], a_warm[16],
		a_to[16], a_lsize[16], a_dump[PATH_MAX + 32], a_rep[PATH_MAX + 32];
	snprintf(a_rank, sizeof a_rank, "%d", (int)r);
	snprintf(a_heads, sizeof a_heads, "%d", (int)o->shape.heads);
	snprintf(a_kv, sizeof a_kv, "%d", (int)o->shape.kv_heads);
	snprintf(a_dim, sizeof a_dim, "%d", (int)o->shape.head_dim);
	snprintf(a_seed, sizeof a_seed, "%llu", (unsigned long long)o->seed);
	snprintf(a_iters, sizeof a_iters, "%d", o->iters);
	snprintf(a_warm, sizeof a_warm, "%d", o->warmup);
	snprintf(a_to, sizeof a_to, "%d", o->timeout_ms);
	snprintf(a_lsize, sizeof a_lsize, "%d", (int)nranks);
	snprintf(a_dump, sizeof a_dump, "%s/out-r%d.bin", dir, (int)r);
	snprintf(a_rep, sizeof a_rep, "%s/rep-r%d.json", dir, (int)r);
	const char *argv[40];
	int n = 0;
	argv[n++] = exe;
	argv[n++] = "--plan";
	argv[n++] = o->plan_path;
	argv[n++] = "--rank";
	argv[n++] = a_rank;
	argv[n++] = "--backend";
	argv[n++] = o->backend;
	argv[n++] = "--run-dir";
	argv[n++] = dir;
	argv[n++] = "--heads";
	argv[n++] = a_heads;
	argv[n++] = "--kv-heads";
	argv[n++] = a_kv;
	argv[n++] = "--head-dim";
	argv[n++] = a_dim;
	argv[n++] = "--seed";
	argv[n++] = a_seed;
	argv[n++] = "--iters";
	argv[n++] = a_iters;
	argv[n++] = "--warmup";
	argv[n++] = a_warm;
	argv[n++] = "--timeout-ms";
	argv[n++] = a_to;
	argv[n++] = "--local-rank";
	argv[n++] = a_rank;
	argv[n++] = "--local-size";
	argv[n++] = a_lsize;
	argv[n++] = "--report";
	argv[n++] = a_rep;
	/* This process checked the plan's rules already (and warned once). */
	argv[n++] = "--structure-only";
	if (o->check) {
		argv[n++] = "--dump";
		argv[n++] = a_dump;
	}
	argv[n] = NULL;
	fflush(NULL);
	pid_t p = fork();
	if (p < 0)
		return sl_seterr(SL_EIO, "cannot fork the worker of rank %d: %s", (int)r,
		                 strerror(errno));
	if (p == 0) {
		execvp(exe, (char *const *)argv);
		fprintf(stderr, "sluice run-plan: cannot execute worker '%s': %s\n", exe,
		        strerror(errno));
		_exit(127);
	}
	*pid = p;
	return SL_OK;
}

/* Waits for every worker (only ours: a host program's other children are
 * left alone). When one fails the others are stopped (their peers would only
 * wait for it until the timeout). Returns the first failure, naming the rank
 * and how it ended. */
static sl_err launch_wait(pid_t *pids, int32_t n)
{
	sl_err rc = SL_OK;
	int32_t left = 0;
	for (int32_t i = 0; i < n; i++)
		left += pids[i] > 0;
	while (left > 0) {
		int progressed = 0;
		for (int32_t r = 0; r < n; r++) {
			if (pids[r] <= 0)
				continue;
			int status;
			pid_t p = waitpid(pids[r], &status, WNOHANG);
			if (p == 0 || (p < 0 && errno == EINTR))
				continue;
			pids[r] = 0;
			left--;
			progressed = 1;
			if (p < 0) {
				if (rc == SL_OK)
					rc = sl_seterr(SL_EIO, "waiting for the worker of rank %d: %s", (int)r,
					               strerror(errno));
				continue;
			}
			int failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
			if (!failed || rc != SL_OK)
				continue;
			if (WIFEXITED(status))
				rc = sl_seterr(SL_EIO,
				               "worker of rank %d exited with status %d (its message is above)",
				               (int)r, WEXITSTATUS(status));
			else
				rc = sl_seterr(SL_EIO, "worker of rank %d was killed by signal %d", (int)r,
				               WIFSIGNALED(status) ? WTERMSIG(status) : -1);
			for (int32_t i = 0; i < n; i++)
				if (pids[i] > 0)
					kill(pids[i], SIGTERM);
		}
		if (!progressed && left > 0) {
			struct timespec ts = {.tv_sec = 0, .tv_nsec = 2000000};
			nanosleep(&ts, NULL);
		}
	}
	return rc;
}

/* Adds the per-group table rows and the combined JSON of the ranks' reports. */
static sl_err launch_report(const worker_launch_opts_t *o, const sl_plan_t *plan,
                            const sl_cost_t *cost, int have_cost, const char *dir,
                            const worker_check_result_t *chk, worker_launch_result_t *res)
{
	sl_err rc = SL_OK;
	json_t **rep = calloc((size_t)plan->ranks, sizeof *rep);
	json_t *groups = json_array(), *ranks = json_array();
	double *rank_ms = calloc((size_t)plan->ranks, sizeof *rank_ms);
	if (!rep || !groups || !ranks || !rank_ms) {
		rc = sl_seterr(SL_ENOMEM, "report: out of memory");
		goto out;
	}
	for (int32_t r = 0; r < plan->ranks; r++) {
		char p[PATH_MAX + 32];
		json_error_t je;
		snprintf(p, sizeof p, "%s/rep-r%d.json", dir, (int)r);
		rep[r] = json_load_file(p, 0, &je);
		if (!rep[r] || !json_is_array(json_object_get(rep[r], "slots"))) {
			rc = sl_seterr(SL_EFORMAT, "%s: worker report unreadable (line %d: %s)", p, je.line,
			               je.text);
			goto out;
		}
		json_array_append(ranks, rep[r]);
	}
	if (o->out) {
		fprintf(o->out, "%-5s %-6s %-5s %-5s %-8s %12s %10s %10s %10s %10s %10s\n", "slot",
		        "group", "ranks", "seqs", "tokens", "predicted", "measured", "fwd", "bwd",
		        "comm", "MiB sent");
		fprintf(o->out, "%-5s %-6s %-5s %-5s %-8s %12s %10s %10s %10s %10s %10s\n", "", "", "",
		        "", "", "ms (model)", "ms", "ms", "ms", "ms", "");
	}
	res->measured_ms = 0;
	for (int32_t t = 0; t < plan->nslots; t++) {
		const sl_slot_t *sl = &plan->slots[t];
		for (int32_t gj = 0; gj < sl->ngroups; gj++) {
			int64_t gi = sl->group_off + gj;
			const sl_group_t *g = &plan->groups[gi];
			const int32_t *ring = sl_group_ranks(plan, g);
			double fwd = 0, bwd = 0, comm = 0, compute = 0;
			int64_t bytes = 0, tokens = 0;
			for (int32_t k = 0; k < g->nitems; k++)
				tokens += plan->seqs[sl_group_items(plan, g)[k].seq].length;
			for (int32_t k = 0; k < g->nranks; k++) {
				json_t *slots = json_object_get(rep[ring[k]], "slots"), *e;
				size_t idx;
				json_array_foreach(slots, idx, e)
				{
					if (json_integer_value(json_object_get(e, "group")) != gi)
						continue;
					json_t *f = json_object_get(e, "fwd"), *b = json_object_get(e, "bwd");
					double fw = json_number_value(json_object_get(f, "wall_ms"));
					double bw = json_number_value(json_object_get(b, "wall_ms"));
					fwd = fmax(fwd, fw);
					bwd = fmax(bwd, bw);
					comm = fmax(comm, json_number_value(json_object_get(f, "comm_ms")) +
					                      json_number_value(json_object_get(b, "comm_ms")));
					compute = fmax(compute,
					               json_number_value(json_object_get(f, "compute_ms")) +
					                       json_number_value(json_object_get(b, "compute_ms")));
					bytes += json_integer_value(json_object_get(f, "bytes_sent")) +
					         json_integer_value(json_object_get(b, "bytes_sent"));
					rank_ms[ring[k]] += fw + bw;
				}
			}
			double pred = have_cost ? sl_plan_group_ms(plan, g, cost) : NAN;
			json_t *jr = json_array();
			for (int32_t k = 0; jr && k < g->nranks; k++)
				json_array_append_new(jr, json_integer(ring[k]));
			json_t *ge = json_pack("{s:i, s:I, s:o, s:i, s:I, s:o, s:{s:f, s:f, s:f, s:f, s:f, "
			                       "s:I}}",
			                       "slot", (int)t, "group", (json_int_t)gi, "ranks", jr, "sequences",
			                       (int)g->nitems, "tokens", (json_int_t)tokens, "predicted_ms",
			                       isnan(pred) ? json_null() : json_real(pred), "measured",
			                       "total_ms", fwd + bwd, "fwd_ms", fwd, "bwd_ms", bwd,
			                       "compute_ms", compute, "comm_ms", comm, "bytes_sent",
			                       (json_int_t)bytes);
			if (!ge || json_array_append_new(groups, ge) != 0) {
				rc = sl_seterr(SL_ENOMEM, "report: out of memory");
				goto out;
			}
			if (o->out) {
				char pr[32];
				if (isnan(pred))
					snprintf(pr, sizeof pr, "-");
				else
					snprintf(pr, sizeof pr, "%.1f", pred);
				fprintf(o->out, "%-5d %-6lld %-5d %-5d %-8lld %12s %10.3f %10.3f %10.3f %10.3f %10.3f\n",
				        (int)t, (long long)gi, (int)g->nranks, (int)g->nitems,
				        (long long)tokens, pr, fwd + bwd, fwd, bwd, comm,
				        (double)bytes / 1048576.0);
			}
		}
	}
	for (int32_t r = 0; r < plan->ranks; r++)
		res->measured_ms = fmax(res->measured_ms, rank_ms[r]);
	res->predicted_ms = have_cost ? plan->step_ms : NAN;
	if (have_cost) {
		/* The plan file's predicted step may be absent; recompute it. */
		sl_plan_t *copy = sl_plan_dup(plan);
		if (copy && sl_plan_evaluate(copy, cost) == SL_OK)
			res->predicted_ms = copy->step_ms;
		sl_plan_free(&copy);
	}
	if (o->out) {
		char pr[32];
		if (isnan(res->predicted_ms))
			snprintf(pr, sizeof pr, "-");
		else
			snprintf(pr, sizeof pr, "%.1f", res->predicted_ms);
		fprintf(o->out,
		        "step: predicted %s ms (reference model, profile %s), measured %.3f ms "
		        "(slowest rank, sum of its fwd+bwd)\n",
		        pr, plan->profile, res->measured_ms);
	}
	if (o->report_path) {
		json_t *root = json_pack(
			"{s:s, s:s, s:s, s:i, s:{s:i, s:i, s:i}, s:I, s:i, s:i, s:o, s:f, s:o, s:o}",
			"format", "sluice.run-report/1", "plan", o->plan_path, "backend", o->backend,
			"ranks_count", (int)plan->ranks, "shape", "heads", (int)o->shape.heads,
			"kv_heads", (int)o->shape.kv_heads, "head_dim", (int)o->shape.head_dim, "seed",
			(json_int_t)o->seed, "iters", o->iters, "warmup", o->warmup, "predicted_step_ms",
			isnan(res->predicted_ms) ? json_null() : json_real(res->predicted_ms),
			"measured_step_ms", res->measured_ms, "groups", json_incref(groups), "ranks",
			json_incref(ranks));
		if (root && o->check) {
			json_t *c = json_pack("{s:b, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:I}", "ok",
			                      chk->ok, "tol", chk->tol, "rel_err_o", chk->rel_err[0],
			                      "rel_err_dq", chk->rel_err[1], "rel_err_dk",
			                      chk->rel_err[2], "rel_err_dv", chk->rel_err[3], "lse_err",
			                      chk->lse_err, "bad_padding", (json_int_t)chk->bad_padding,
			                      "bad_coverage", (json_int_t)chk->bad_coverage, "nonfinite",
			                      (json_int_t)chk->nonfinite);
			json_object_set_new(root, "check", c ? c : json_null());
		}
		if (!root) {
			rc = sl_seterr(SL_ENOMEM, "report: out of memory");
			goto out;
		}
		int bad = json_dump_file(root, o->report_path, JSON_INDENT(1) | JSON_SORT_KEYS);
		json_decref(root);
		if (bad) {
			rc = sl_seterr(SL_EIO, "%s: cannot write the report", o->report_path);
			goto out;
		}
	}
out:
	for (int32_t r = 0; rep && r < plan->ranks; r++)
		json_decref(rep[r]);
	free(rep);
	json_decref(groups);
	json_decref(ranks);
	free(rank_ms);
	return rc;
}

sl_err worker_launch(const worker_launch_opts_t *o, worker_launch_result_t *res)
{
	memset(res, 0, sizeof *res);
	res->predicted_ms = NAN;
	const char *backend = o->backend ? o->backend : "cpu";
	worker_launch_opts_t opts = *o;
	opts.backend = backend;
	if (opts.iters == 0)
		opts.iters = 1;
	if (opts.timeout_ms <= 0)
		opts.timeout_ms = 60000;
	SL_CHECK(worker_shape_check(&opts.shape));
	if (opts.iters < 1 || opts.warmup < 0)
		return sl_seterr(SL_ERANGE, "iters %d must be >= 1 and warmup %d >= 0", opts.iters,
		                 opts.warmup);
	sl_plan_t *plan = NULL;
	sl_cost_t cost;
	int have_cost = 0;
	memset(&cost, 0, sizeof cost);
	worker_plan_rules_t rules = {.profile = opts.profile, .structure_only = 0};
	SL_CHECK(worker_plan_load(opts.plan_path, &rules, &plan, &cost, &have_cost));

	sl_err rc = SL_OK;
	char exe[PATH_MAX + 64], dir[PATH_MAX];
	pid_t *pids = calloc((size_t)plan->ranks, sizeof *pids);
	worker_order_t **orders = calloc((size_t)plan->ranks, sizeof *orders);
	worker_dump_t **dumps = calloc((size_t)plan->ranks, sizeof *dumps);
	int made_dir = 0;
	if (!pids || !orders || !dumps) {
		rc = sl_seterr(SL_ENOMEM, "run-plan: out of memory");
		goto out;
	}
	SL_CHECK_GOTO(launch_find_worker(&opts, exe, sizeof exe), rc, out);
	/* Every rank's order now, so a bad shape fails before any process starts. */
	for (int32_t r = 0; r < plan->ranks; r++)
		SL_CHECK_GOTO(worker_order_build(plan, r, &opts.shape, &orders[r]), rc, out);
	if (opts.keep_dir) {
		if (mkdir(opts.keep_dir, 0700) != 0 && errno != EEXIST) {
			rc = sl_seterr(SL_EIO, "%s: cannot create the run directory: %s", opts.keep_dir,
			               strerror(errno));
			goto out;
		}
		snprintf(dir, sizeof dir, "%s", opts.keep_dir);
	} else {
		const char *tmp = getenv("TMPDIR");
		snprintf(dir, sizeof dir, "%s/sluice-run-XXXXXX",
		         tmp && *tmp && strlen(tmp) < 60 ? tmp : "/tmp");
		if (!mkdtemp(dir)) {
			rc = sl_seterr(SL_EIO, "%s: cannot create a run directory: %s", dir,
			               strerror(errno));
			goto out;
		}
	}
	made_dir = 1;
	/* The workplace requires NVLink multicast off in every NCCL process. */
	setenv("NCCL_NVLS_ENABLE", "0", 1);
	double t0 = sl_now_ms();
	for (int32_t r = 0; r < plan->ranks; r++) {
		rc = launch_spawn(exe, &opts, dir, r, plan->ranks, &pids[r]);
		if (rc != SL_OK) {
			for (int32_t i = 0; i < r; i++)
				kill(pids[i], SIGTERM);
			launch_wait(pids, r);
			goto out;
		}
	}
	SL_CHECK_GOTO(launch_wait(pids, plan->ranks), rc, out);
	SL_DEBUG(SL_SUB_CLI, "run-plan: %d workers done in %.1f ms", (int)plan->ranks,
	         sl_now_ms() - t0);
	if (opts.check) {
		double tol = 0;
		for (int32_t r = 0; r < plan->ranks; r++) {
			char p[PATH_MAX + 32];
			snprintf(p, sizeof p, "%s/out-r%d.bin", dir, (int)r);
			SL_CHECK_GOTO(worker_dump_read(p, orders[r], &dumps[r]), rc, out);
			tol = fmax(tol, dumps[r]->tol);
		}
		SL_CHECK_GOTO(worker_check(plan, &opts.shape, opts.seed, orders, dumps, tol, &res->check),
		              rc, out);
	}
	SL_CHECK_GOTO(launch_report(&opts, plan, &cost, have_cost, dir, &res->check, res), rc, out);
	if (opts.check && opts.out) {
		const worker_check_result_t *c = &res->check;
		fprintf(opts.out,
		        "check (%s vs fp64 reference, tolerance %.0e): max relative error O %.3e, dQ "
		        "%.3e, dK %.3e, dV %.3e; LSE %.3e",
		        backend, c->tol, c->rel_err[0], c->rel_err[1], c->rel_err[2], c->rel_err[3],
		        c->lse_err);
		if (c->bad_padding || c->bad_coverage || c->nonfinite)
			fprintf(opts.out, "; %lld non-zero padding rows, %lld coverage errors, %lld NaN/Inf",
			        (long long)c->bad_padding, (long long)c->bad_coverage,
			        (long long)c->nonfinite);
		fprintf(opts.out, ": %s\n", c->ok ? "PASS" : "FAIL");
		if (!c->ok && c->worst_seq >= 0)
			fprintf(opts.out, "worst sequence: id %lld (length %lld)\n",
			        (long long)plan->seqs[c->worst_seq].id,
			        (long long)plan->seqs[c->worst_seq].length);
	}
out:
	if (made_dir)
		launch_cleanup(dir, plan->ranks, opts.keep_dir != NULL);
	for (int32_t r = 0; plan && r < plan->ranks; r++) {
		if (orders)
			worker_order_free(&orders[r]);
		if (dumps)
			worker_dump_free(&dumps[r]);
	}
	free(orders);
	free(dumps);
	free(pids);
	if (have_cost)
		sl_cost_fini(&cost);
	sl_plan_free(&plan);
	return rc;
}
