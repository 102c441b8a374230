/* sluice-bound: how far sluice's plans are from a lower bound that, unlike
 * the spec's ideal, charges whole micro-batch fixed costs (bench/intbound.c
 * says which; issue 10, part 3).
 *
 *   sluice-bound [--profile NAME] [--ranks N] [--per-node G] [--batch B]
 *                [--steps K] [--first F] [--max-len L] [--per-step] [--ring] TRACE
 *
 * Replays TRACE in consecutive batches of B sequences (lengths over L
 * dropped, as sluice-bench does), plans each with `sluice` and prints the
 * mean of step / ideal, step / bound and bound / ideal (bound: the larger
 * of the pooled bound and the ideal; with --ring, also of the bound with
 * the longest sequence on a whole number of ranks). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchopt.h"
#include "intbound.h"
#include "lp.h"
#include "sluice/sluice.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: sluice-bound [--profile NAME] [--ranks N] [--per-node G] [--batch B]\n"
	           "                    [--steps K] [--first F] [--max-len L] [--per-step] [--ring]\n"
	           "                    TRACE\n"
	           "                    [--version]\n"
	           "(--first F: skip the first F batches, e.g. to resume a long run)\n\n%s",
	        SL_EXIT_HELP);
}

int main(int argc, char **argv)
{
	const char *profname = "gpt-7b-flexsp", *trace = NULL;
	int32_t ranks = 64, per_node = 8;
	int batch = 512, steps = 100, per_step = 0, ring = 0, first = 0;
	int64_t max_len = 196608;
	const bench_opts_t bo = {"sluice-bound", usage, &profname, &ranks, &per_node,
	                         &batch, &steps, &max_len};
	for (int i = 1; i < argc; i++) {
		int code, r = bench_opt(&bo, argc, argv, &i, &code);
		if (r == BENCH_OPT_EXIT)
			return code;
		if (r == BENCH_OPT_TAKEN)
			continue;
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--per-step") == 0) {
			per_step = 1;
		} else if (strcmp(a, "--ring") == 0) {
			ring = 1;
		} else if (a[0] == '-' && v == NULL) {
			fprintf(stderr, "sluice-bound: %s needs a value\n", a);
			return SL_EXIT_USAGE;
		} else if (strcmp(a, "--first") == 0) {
			first = atoi(argv[++i]);
		} else if (a[0] == '-') {
			fprintf(stderr, "sluice-bound: unknown option %s\n", a);
			usage(stderr);
			return SL_EXIT_USAGE;
		} else {
			trace = a;
		}
	}
	if (trace == NULL || ranks < 1 || per_node < 1 || batch < 1 || steps < 1 || first < 0) {
		usage(stderr);
		return SL_EXIT_USAGE;
	}
	sl_log_init_from_env();
	sl_profile_t prof;
	sl_cost_t cost;
	sl_cluster_t cl = {ranks, per_node < ranks ? per_node : ranks};
	if (sl_profile_resolve(profname, &prof) != SL_OK) {
		fprintf(stderr, "sluice-bound: %s\n", sl_errmsg());
		return SL_EXIT_USAGE;
	}
	sl_lengths_t tr = {0};
	if (sl_trace_read(trace, NULL, &tr) != SL_OK) {
		fprintf(stderr, "sluice-bound: %s\n", sl_errmsg());
		return SL_EXIT_USAGE;
	}
	if (sl_cost_init(&cost, &prof, &cl) != SL_OK) { /* read, but infeasible */
		fprintf(stderr, "sluice-bound: %s\n", sl_errmsg());
		sl_lengths_free(&tr);
		return SL_EXIT_FAIL;
	}
	int rc = SL_EXIT_OK;
	sl_seq_t *seqs = malloc(sizeof(sl_seq_t) * (size_t)batch);
	int64_t *len = malloc(sizeof(int64_t) * (size_t)batch);
	if (!seqs || !len) {
		fprintf(stderr, "sluice-bound: out of memory\n");
		rc = SL_EXIT_FAIL;
		goto done;
	}
	if (per_step)
		printf("%5s %12s %12s %12s %9s %9s %9s\n", "step", "sluice_ms", "ideal_ms", "bound_ms",
		       "s/ideal", "s/bound", "b/ideal");
	double sum_si = 0, sum_sb = 0, sum_bi = 0, worst_sb = 0;
	int done_steps = 0;
	size_t pos = 0;
	for (int st = 0; st < steps; st++) {
		int m = 0;
		while (m < batch && pos < tr.n) {
			int64_t s = tr.v[pos++];
			if (s > max_len)
				continue;
			seqs[m].id = m;
			seqs[m].length = s;
			len[m++] = s;
		}
		if (m < batch)
			break;
		if (st < first)
			continue;
		sl_plan_t *plan = NULL;
		double lb = 0;
		if (sl_plan_request("sluice", &cost, seqs, m, NULL, &plan) != SL_OK ||
		    bench_int_bound(&cost, len, m, plan->ideal_ms, plan->step_ms, 0, &lb) != SL_OK ||
		    (ring && bench_int_bound(&cost, len, m, lb, plan->step_ms, 1, &lb) != SL_OK)) {
			fprintf(stderr, "sluice-bound: step %d: %s\n", st, sl_errmsg());
			sl_plan_free(&plan);
			rc = SL_EXIT_FAIL;
			break;
		}
		double si = plan->step_ms / plan->ideal_ms, sb = plan->step_ms / lb,
		       bi = lb / plan->ideal_ms;
		if (per_step)
			printf("%5d %12.1f %12.1f %12.1f %9.4f %9.4f %9.4f\n", st, plan->step_ms,
			       plan->ideal_ms, lb, si, sb, bi);
		fflush(stdout);
		sum_si += si;
		sum_sb += sb;
		sum_bi += bi;
		worst_sb = fmax(worst_sb, sb);
		done_steps++;
		sl_plan_free(&plan);
	}
	if (done_steps > 0)
		printf("# %s: %d steps of %d on %d ranks (%d per node), %s: mean step/ideal %.4f, "
		       "step/bound %.4f (worst %.4f), bound/ideal %.4f\n",
		       trace, done_steps, batch, ranks, cl.ranks_per_node, profname,
		       sum_si / done_steps, sum_sb / done_steps, worst_sb, sum_bi / done_steps);
done:
	free(seqs);
	free(len);
	sl_lengths_free(&tr);
	sl_cost_fini(&cost);
	lp_thread_end();
	return rc;
}
