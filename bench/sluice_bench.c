/* sluice-bench: replays a sequence-length trace batch by batch through every
 * registered policy and reports plan quality (step / ideal under the
 * reference cost model), speedup over `static`, planner latency and
 * per-step wins and losses against `sluice`; then times the sluice planner
 * alone on larger clusters (latency and peak memory).
 *
 *   sluice-bench [TRACE] [--profile NAME] [--ranks N] [--per-node G]
 *                [--batch B] [--steps S] [--max-len L] [--no-scaling]
 *                [--scaling-only] [--csv FILE] [--curve [--curve-max N]]
 *                [--limit-check [--limits MS,MS,...]]
 *
 * --curve prints the planner's time / peak RSS / step/ideal curve instead:
 * N = 1K..100K (up to --curve-max) sequences on --ranks ranks for the
 * Wikipedia trace, uniform 1..60000 and a long-dominated log-normal mix.
 *
 * --limit-check plans each length mix (Wikipedia, uniform, long) at several
 * sizes with each time_limit_ms of --limits (default 10,100,1000,5000) and
 * prints the wall time of sl_plan_request (scoring and the ideal included)
 * over the limit: whether the limit's fixed conversion to work units
 * bounds wall time on this machine.
 *
 * TRACE defaults to data/traces/wikipedia-flexsp.txt.gz of the source tree
 * it was built from (data/README.md).
 * Sequences longer than --max-len are dropped, as FlexSP's evaluation does;
 * batches are consecutive runs of --batch sequences. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchopt.h"
#include "sluice/rng.h"
#include "sluice/sluice.h"

#ifndef SLUICE_BENCH_DEFAULT_TRACE
#define SLUICE_BENCH_DEFAULT_TRACE "data/traces/wikipedia-flexsp.txt.gz"
#endif

typedef struct {
	const char *name;
	double *ratio;   /* [steps] step / ideal */
	double *step;    /* [steps] step ms */
	double *lat;     /* [steps] planner ms */
	int invalid;
	int failed;
} pol_stats_t;

/* n lengths of one mix: "uniform" 1..60000; "long" log-normal with median
 * 26,000 and sigma 1, redrawn above max_len (long-dominated, like code
 * repositories or books); "wikipedia" consecutive lengths of the trace. */
static void mix_lengths(const char *mix, const int64_t *trace, size_t ntrace, int64_t max_len,
                        int64_t *out, int n)
{
	uint64_t st = 12345;
	for (int i = 0; i < n; i++) {
		if (strcmp(mix, "uniform") == 0) {
			out[i] = 1 + (int64_t)(sl_splitmix64(&st) % 60000);
		} else if (strcmp(mix, "long") == 0) {
			double v;
			do {
				double u1 = sl_rand_unit(&st), u2 = sl_rand_unit(&st);
				double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
				v = 26000.0 * exp(z);
			} while (v > (double)max_len || v < 1);
			out[i] = (int64_t)v;
		} else {
			out[i] = trace[(size_t)i % ntrace];
		}
	}
}

/* The planning-time curve: N = 1K..100K sequences of each mix on `ranks`
 * ranks, each size planned in a child process so its peak RSS is its own. */
static int curve(const sl_profile_t *prof, const int64_t *trace, size_t ntrace, int32_t ranks,
                 int32_t per_node, int64_t max_len, int max_n)
{
	static const int sizes[] = {1000, 2000, 5000, 10000, 20000, 50000, 100000};
	static const char *const mixes[] = {"wikipedia", "uniform", "long"};
	printf("# curve: sluice planner alone, profile %s, %d ranks (%d per node), default limits\n",
	       prof->name, ranks, per_node);
	printf("%-10s %8s %10s %10s %12s %5s %12s\n", "mix", "n", "plan_ms", "step/ideal",
	       "step/lp", "cut", "peak_rss_mb");
	fflush(stdout);
	for (size_t m = 0; m < sizeof(mixes) / sizeof(mixes[0]); m++) {
		for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
			int n = sizes[z];
			if (n > max_n)
				continue;
			pid_t pid = fork();
			if (pid < 0) {
				perror("fork");
				return 1;
			}
			if (pid == 0) {
				sl_cost_t cost;
				sl_cluster_t cl = {ranks, per_node};
				int64_t *len = malloc(sizeof(int64_t) * (size_t)n);
				sl_seq_t *seqs = malloc(sizeof(sl_seq_t) * (size_t)n);
				if (len == NULL || seqs == NULL || sl_cost_init(&cost, prof, &cl) != SL_OK)
					_exit(1);
				mix_lengths(mixes[m], trace, ntrace, max_len, len, n);
				for (int i = 0; i < n; i++) {
					seqs[i].id = i;
					seqs[i].length = len[i];
				}
				sl_plan_t *plan = NULL;
				double t0 = sl_now_ms();
				if (sl_plan_request("sluice", &cost, seqs, n, NULL, &plan) != SL_OK) {
					fprintf(stderr, "sluice-bench: %s n=%d: %s\n", mixes[m], n, sl_errmsg());
					_exit(1);
				}
				printf("%-10s %8d %10.1f %10.4f %12.4f %5d ", mixes[m], n, sl_now_ms() - t0,
				       plan->step_ms / plan->ideal_ms, plan->step_ms / plan->lp_bound_ms,
				       plan->search_truncated);
				fflush(stdout);
				_exit(0);
			}
			int status;
			struct rusage ru;
			if (wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) ||
			    WEXITSTATUS(status) != 0) {
				printf("%-10s %8d failed\n", mixes[m], n);
				continue;
			}
			printf("%12.1f\n", ru.ru_maxrss / 1024.0);
			fflush(stdout);
		}
	}
	printf("# plan_ms: wall time of sl_plan_request (ideal and scoring included); peak_rss_mb: "
	       "the planning child's peak (getrusage)\n");
	return 0;
}

/* Plans every mix at a few sizes under each time limit and prints wall time
 * over the limit (sl_plan_request's wall time: validation, planning,
 * scoring and the ideal). */
static int limit_check(const sl_profile_t *prof, const int64_t *trace, size_t ntrace,
                       int32_t per_node, int64_t max_len, const double *limits, int nlimits)
{
	static const struct {
		const char *mix;
		int n;
		int32_t ranks;
	} cfg[] = {{"wikipedia", 8192, 1024},    {"wikipedia", 32768, 4096},
	           {"wikipedia", 131072, 16384}, {"uniform", 5000, 256},
	           {"uniform", 20000, 1024},     {"uniform", 100000, 4096},
	           {"long", 5000, 256},          {"long", 20000, 1024},
	           {"long", 100000, 4096}};
	printf("# limit check: sluice planner, profile %s, %d ranks per node; wall = "
	       "sl_plan_request (scoring and ideal included)\n",
	       prof->name, per_node);
	printf("%-10s %7s %6s %9s %10s %11s %11s %6s %4s %10s  %s\n", "mix", "n", "ranks",
	       "limit_ms", "wall_ms", "wall/limit", "work/limit", "built", "cut", "step/ideal",
	       "note");
	fflush(stdout);
	for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
		int n = cfg[c].n;
		sl_cost_t cost;
		sl_cluster_t cl = {cfg[c].ranks, per_node};
		int64_t *len = malloc(sizeof(int64_t) * (size_t)n);
		sl_seq_t *seqs = malloc(sizeof(sl_seq_t) * (size_t)n);
		if (len == NULL || seqs == NULL || sl_cost_init(&cost, prof, &cl) != SL_OK) {
			fprintf(stderr, "sluice-bench: %s\n", len && seqs ? sl_errmsg() : "out of memory");
			free(len);
			free(seqs);
			return 1;
		}
		mix_lengths(cfg[c].mix, trace, ntrace, max_len, len, n);
		for (int i = 0; i < n; i++) {
			seqs[i].id = i;
			seqs[i].length = len[i];
		}
		for (int l = 0; l < nlimits; l++) {
			sl_policy_opts_t opts;
			memset(&opts, 0, sizeof(opts));
			opts.time_limit_ms = limits[l];
			sl_plan_t *plan = NULL;
			double t0 = sl_now_ms();
			if (sl_plan_request("sluice", &cost, seqs, n, &opts, &plan) != SL_OK) {
				fprintf(stderr, "sluice-bench: %s n=%d: %s\n", cfg[c].mix, n, sl_errmsg());
				continue;
			}
			double wall = sl_now_ms() - t0;
			double units = limits[l] * (double)SL_WORK_UNITS_PER_MS;
			printf("%-10s %7d %6d %9.0f %10.1f %11.2f %11.2f %6s %4d %10.4f  %s\n",
			       cfg[c].mix, n, cfg[c].ranks, limits[l], wall, wall / limits[l],
			       (double)plan->work_units / units,
			       strstr(plan->note, "below one build") ? "static" : "yes",
			       plan->search_truncated, plan->step_ms / plan->ideal_ms, plan->note);
			fflush(stdout);
			sl_plan_free(&plan);
		}
		free(len);
		free(seqs);
		sl_cost_fini(&cost);
	}
	printf("# wall/limit: wall time over time_limit_ms; work/limit: work units the planner "
	       "charged over the limit's units (150,000 a ms); built: static = the limit was below "
	       "one build and static's plan came back\n");
	return 0;
}


static long peak_rss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: sluice-bench [TRACE] [--profile NAME] [--ranks N] [--per-node G] "
	           "[--batch B] [--steps S] [--max-len L] [--no-scaling] [--scaling-only] "
	           "[--csv FILE] [--curve [--curve-max N]] [--limit-check [--limits MS,...]] "
	           "[--version]\n\n%s",
	        SL_EXIT_HELP);
}

static void count_violation(void *arg, const char *msg)
{
	int *first = arg;
	if (*first) {
		fprintf(stderr, "  invalid plan: %s\n", msg);
		*first = 0;
	}
}

/* Plans `steps` consecutive batches with every policy. */
static int replay(const sl_profile_t *prof, const int64_t *len, size_t nlen, int32_t ranks,
                  int32_t per_node, int batch, int steps, int64_t max_len, FILE *csv)
{
	sl_cost_t cost;
	sl_cluster_t cl = {ranks, per_node};
	if (sl_cost_init(&cost, prof, &cl) != SL_OK) {
		fprintf(stderr, "sluice-bench: %s\n", sl_errmsg());
		return 1;
	}
	if ((size_t)batch * (size_t)steps > nlen) {
		steps = (int)(nlen / (size_t)batch);
		fprintf(stderr, "sluice-bench: trace holds only %d batches of %d\n", steps, batch);
	}
	size_t npol = sl_policy_count();
	pol_stats_t *ps = calloc(npol, sizeof(pol_stats_t));
	sl_seq_t *seqs = malloc(sizeof(sl_seq_t) * (size_t)batch);
	double *ideal = malloc(sizeof(double) * (size_t)steps);
	double *bound = malloc(sizeof(double) * (size_t)steps);
	if (ps == NULL || seqs == NULL || ideal == NULL || bound == NULL) {
		fprintf(stderr, "sluice-bench: out of memory\n");
		return 1;
	}
	int isluice = -1, istatic = -1, kept = 0, cut = 0;
	for (size_t p = 0; p < npol; p++) {
		ps[p].name = sl_policy_at(p)->name;
		ps[p].ratio = calloc((size_t)steps, sizeof(double));
		ps[p].step = calloc((size_t)steps, sizeof(double));
		ps[p].lat = calloc((size_t)steps, sizeof(double));
		if (!ps[p].ratio || !ps[p].step || !ps[p].lat) {
			fprintf(stderr, "sluice-bench: out of memory\n");
			return 1;
		}
		if (strcmp(ps[p].name, "sluice") == 0)
			isluice = (int)p;
		if (strcmp(ps[p].name, "static") == 0)
			istatic = (int)p;
	}
	sl_policy_opts_t opts;
	memset(&opts, 0, sizeof(opts));
	opts.trace_max_len = max_len; /* static: one degree for the whole run */

	printf("# replay: profile %s, %d ranks (%d per node), cap %lld tokens, %d steps of %d "
	       "sequences, max length %lld\n",
	       prof->name, ranks, per_node, (long long)cost.cap, steps, batch, (long long)max_len);
	if (csv)
		fprintf(csv, "step,policy,step_ms,ideal_ms,ratio,planner_ms,lp_bound_ms\n");
	for (int s = 0; s < steps; s++) {
		for (int i = 0; i < batch; i++) {
			seqs[i].id = (int64_t)s * batch + i;
			seqs[i].length = len[(size_t)s * (size_t)batch + (size_t)i];
		}
		bound[s] = NAN;
		for (size_t p = 0; p < npol; p++) {
			sl_plan_t *plan = NULL;
			double t0 = sl_now_ms();
			sl_err rc = sl_plan_request(ps[p].name, &cost, seqs, batch, &opts, &plan);
			double t1 = sl_now_ms();
			if (rc != SL_OK) {
				fprintf(stderr, "step %d: %s failed: %s\n", s, ps[p].name, sl_errmsg());
				ps[p].failed++;
				ps[p].step[s] = NAN;
				ps[p].ratio[s] = NAN;
				ps[p].lat[s] = t1 - t0;
				continue;
			}
			int first = 1;
			if (sl_plan_validate(plan, &cost, count_violation, &first) > 0)
				ps[p].invalid++;
			ps[p].step[s] = plan->step_ms;
			ps[p].ratio[s] = plan->step_ms / plan->ideal_ms;
			ps[p].lat[s] = plan->planner_ms;
			ideal[s] = plan->ideal_ms;
			if ((int)p == isluice) {
				bound[s] = plan->lp_bound_ms;
				kept += strstr(plan->note, "kept the plan of") != NULL;
				cut += plan->search_truncated;
			}
			if (csv)
				fprintf(csv, "%d,%s,%.3f,%.3f,%.5f,%.3f,%.3f\n", s, ps[p].name,
				        plan->step_ms, plan->ideal_ms, ps[p].ratio[s], plan->planner_ms,
				        plan->lp_bound_ms);
			sl_plan_free(&plan);
		}
	}
	printf("%-20s %10s %10s %8s %8s %9s %9s %9s %6s %6s %6s %7s\n", "policy", "step/ideal",
	       "max", "step_s", "speedup", "x_static", "lat_med", "lat_p99", "wins", "ties",
	       "losses", "invalid");
	for (size_t p = 0; p < npol; p++) {
		double sr = 0, sm = 0, mx = 0, sp = 0;
		int ok = 0, wins = 0, ties = 0, losses = 0;
		for (int s = 0; s < steps; s++) {
			if (isnan(ps[p].step[s]))
				continue;
			ok++;
			sr += ps[p].ratio[s];
			sm += ps[p].step[s];
			if (ps[p].ratio[s] > mx)
				mx = ps[p].ratio[s];
			if (istatic >= 0)
				sp += ps[istatic].step[s] / ps[p].step[s];
			if (isluice >= 0 && (int)p != isluice) {
				/* from sluice's side: a win is a step where sluice is faster */
				double a = ps[isluice].step[s], b = ps[p].step[s];
				if (a < b - 1e-6)
					wins++;
				else if (a > b + 1e-6)
					losses++;
				else
					ties++;
			}
		}
		double tot_static = 0;
		if (istatic >= 0)
			for (int s = 0; s < steps; s++)
				tot_static += ps[istatic].step[s];
		printf("%-20s %10.4f %10.4f %8.3f %8.3f %9.3f %9.2f %9.2f %6d %6d %6d %7d\n",
		       ps[p].name, ok ? sr / ok : NAN, mx, ok ? sm / ok / 1e3 : NAN,
		       ok && istatic >= 0 ? tot_static / sm : NAN, ok ? sp / ok : NAN,
		       sl_quantile(ps[p].lat, (size_t)steps, 0.5),
		       sl_quantile(ps[p].lat, (size_t)steps, 0.99), wins, ties,
		       losses, ps[p].invalid + ps[p].failed);
	}
	if (isluice >= 0) {
		double sb = 0, si = 0;
		int nb = 0;
		for (int s = 0; s < steps; s++)
			if (!isnan(bound[s])) {
				sb += ps[isluice].step[s] / bound[s];
				si += bound[s] / ideal[s];
				nb++;
			}
		printf("# sluice: mean step / LP bound %.4f, mean LP bound / ideal %.4f; a baseline's "
		       "plan was kept on %d of %d steps; the work limit cut %d searches\n",
		       nb ? sb / nb : NAN, nb ? si / nb : NAN, kept, steps, cut);
	}
	printf("# columns: step/ideal mean and max over steps; step_s mean step seconds; speedup = "
	       "total static time / total policy time; x_static = mean per-step ratio; lat in ms "
	       "(median, p99); wins/ties/losses of sluice against the policy per step\n");
	for (size_t p = 0; p < npol; p++) {
		free(ps[p].ratio);
		free(ps[p].step);
		free(ps[p].lat);
	}
	free(ps);
	free(seqs);
	free(ideal);
	free(bound);
	sl_cost_fini(&cost);
	return 0;
}

/* The sluice planner alone on larger clusters. */
static int scaling(const sl_profile_t *prof, const int64_t *len, size_t nlen, int32_t per_node)
{
	static const struct {
		int32_t ranks;
		int batch;
		int steps;
	} cfg[] = {{256, 2048, 10}, {1024, 8192, 5}, {4096, 32768, 3}};
	printf("# scaling: sluice planner alone, profile %s, %d ranks per node\n", prof->name,
	       per_node);
	printf("%8s %8s %6s %10s %10s %10s %10s %5s %12s\n", "ranks", "batch", "steps",
	       "step/ideal", "lat_med", "lat_max", "step/lp", "cut", "peak_rss_mb");
	size_t pos = 0;
	for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
		sl_cost_t cost;
		sl_cluster_t cl = {cfg[c].ranks, per_node};
		if (sl_cost_init(&cost, prof, &cl) != SL_OK) {
			fprintf(stderr, "sluice-bench: %s\n", sl_errmsg());
			return 1;
		}
		int b = cfg[c].batch;
		sl_seq_t *seqs = malloc(sizeof(sl_seq_t) * (size_t)b);
		double lat[16], ratio = 0, bnd = 0;
		int steps = cfg[c].steps, done = 0, cut = 0;
		if (seqs == NULL)
			return 1;
		for (int s = 0; s < steps; s++) {
			if (pos + (size_t)b > nlen)
				pos = 0;
			for (int i = 0; i < b; i++) {
				seqs[i].id = i;
				seqs[i].length = len[pos + (size_t)i];
			}
			pos += (size_t)b;
			sl_plan_t *plan = NULL;
			if (sl_plan_request("sluice", &cost, seqs, b, NULL, &plan) != SL_OK) {
				fprintf(stderr, "sluice-bench: %d ranks: %s\n", cfg[c].ranks, sl_errmsg());
				continue;
			}
			lat[done] = plan->planner_ms;
			ratio += plan->step_ms / plan->ideal_ms;
			bnd += plan->step_ms / plan->lp_bound_ms;
			cut += plan->search_truncated;
			done++;
			sl_plan_free(&plan);
		}
		printf("%8d %8d %6d %10.4f %10.1f %10.1f %10.4f %5d %12.1f\n", cfg[c].ranks, b, done,
		       done ? ratio / done : NAN, sl_quantile(lat, (size_t)done, 0.5),
		       sl_quantile(lat, (size_t)done, 1.0),
		       done ? bnd / done : NAN, cut, peak_rss_kb() / 1024.0);
		free(seqs);
		sl_cost_fini(&cost);
	}
	printf("# lat in ms (wall); step/lp = mean step / LP bound; cut = plans whose search the "
	       "work limit cut; peak_rss_mb is the process's peak so far (getrusage)\n");
	return 0;
}

int main(int argc, char **argv)
{
	const char *trace = SLUICE_BENCH_DEFAULT_TRACE, *profname = "gpt-7b-flexsp", *csvpath = NULL;
	int32_t ranks = 64, per_node = 8;
	int batch = 512, steps = 20, do_scaling = 1, do_replay = 1, do_curve = 0, curve_max = 100000;
	int do_limits = 0, nlimits = 4;
	double limits[16] = {10, 100, 1000, 5000};
	int64_t max_len = 192 * 1024;

	const bench_opts_t bo = {"sluice-bench", usage, &profname, &ranks, &per_node,
	                         &batch, &steps, &max_len};
	for (int i = 1; i < argc; i++) {
		int code, r = bench_opt(&bo, argc, argv, &i, &code);
		if (r == BENCH_OPT_EXIT)
			return code;
		if (r == BENCH_OPT_TAKEN)
			continue;
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--no-scaling") == 0) {
			do_scaling = 0;
		} else if (strcmp(a, "--scaling-only") == 0) {
			do_replay = 0;
		} else if (strcmp(a, "--curve") == 0) {
			do_curve = 1;
			do_replay = 0;
			do_scaling = 0;
		} else if (strcmp(a, "--limit-check") == 0) {
			do_limits = 1;
			do_replay = 0;
			do_scaling = 0;
		} else if (strcmp(a, "--limits") == 0 && v != NULL) {
			char *end = argv[++i];
			nlimits = 0;
			while (*end != '\0' && nlimits < 16) {
				limits[nlimits] = strtod(end, &end);
				if (!(limits[nlimits] > 0) || (*end != ',' && *end != '\0')) {
					fprintf(stderr, "sluice-bench: --limits wants positive ms, "
					                "comma-separated (got %s)\n", v);
					return SL_EXIT_USAGE;
				}
				nlimits++;
				if (*end == ',')
					end++;
			}
		} else if (strcmp(a, "--curve-max") == 0 && v != NULL) {
			curve_max = atoi(argv[++i]);
		} else if (a[0] == '-' && a[1] == '-' && v == NULL) {
			fprintf(stderr, "sluice-bench: %s needs a value\n", a);
			return SL_EXIT_USAGE;
		} else if (strcmp(a, "--csv") == 0) {
			csvpath = argv[++i];
		} else if (a[0] == '-') {
			fprintf(stderr, "sluice-bench: unknown option %s\n", a);
			usage(stderr);
			return SL_EXIT_USAGE;
		} else {
			trace = a;
		}
	}
	if (ranks < 1 || per_node < 1 || batch < 1 || steps < 1 || max_len < 1) {
		fprintf(stderr, "sluice-bench: --ranks, --per-node, --batch, --steps and --max-len "
		                "must be positive\n");
		return SL_EXIT_USAGE;
	}
	sl_log_init_from_env();
	sl_profile_t prof;
	sl_err e = sl_profile_resolve(profname, &prof);
	if (e != SL_OK) {
		fprintf(stderr, "sluice-bench: %s\n", sl_errmsg());
		return e == SL_ENOMEM ? SL_EXIT_FAIL : SL_EXIT_USAGE; /* unreadable input */
	}
	sl_lengths_t all = {0}, kept = {0};
	e = sl_trace_read(trace, NULL, &all);
	if (e != SL_OK) {
		fprintf(stderr, "sluice-bench: %s\n", sl_errmsg());
		return e == SL_ENOMEM ? SL_EXIT_FAIL : SL_EXIT_USAGE;
	}
	size_t dropped = 0;
	for (size_t i = 0; i < all.n; i++) {
		if (all.v[i] > max_len) {
			dropped++;
			continue;
		}
		if (sl_lengths_push(&kept, all.v[i]) != SL_OK) {
			fprintf(stderr, "sluice-bench: %s\n", sl_errmsg());
			return 1;
		}
	}
	printf("# trace %s: %zu sequences, %zu longer than %lld dropped\n", trace, all.n, dropped,
	       (long long)max_len);
	sl_lengths_free(&all);
	int rc = 0;
	FILE *csv = NULL;
	if (csvpath != NULL && (csv = fopen(csvpath, "w")) == NULL) {
		perror(csvpath);
		return 1;
	}
	if (do_replay)
		rc = replay(&prof, kept.v, kept.n, ranks, per_node, batch, steps, max_len, csv);
	if (csv)
		fclose(csv);
	if (rc == 0 && do_scaling)
		rc = scaling(&prof, kept.v, kept.n, per_node);
	if (rc == 0 && do_curve)
		rc = curve(&prof, kept.v, kept.n, ranks, per_node, max_len, curve_max);
	if (rc == 0 && do_limits)
		rc = limit_check(&prof, kept.v, kept.n, per_node, max_len, limits, nlimits);
	sl_lengths_free(&kept);
	return rc;
}
