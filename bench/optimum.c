/* sluice-optimum: how far sluice's plans are from the best possible plan on
 * small instances (issue 10, part 3).
 *
 *   sluice-optimum [--profile NAME] [--per-node G] [--time-limit S]
 *                  [--instances K] [--ranks N] [--batch n] [--search]
 *                  [--work-limit W] [--show] TRACE...
 *
 * --ranks / --batch keep only instances of that rank count / batch size;
 * --work-limit plans `sluice` with that work limit; --search also plans
 * with every registered policy and keeps the fastest valid plan as the
 * upper side (its policy printed last); --show prints each plan's groups
 * (slot, degree, ranks, start, time, lengths; * = offloaded).
 *
 * For each trace, each rank count N in {8, 16} and each batch size n in
 * {16, 32, 64}, K batches of n consecutive lengths (at spread, fixed
 * offsets; lengths that no plan can hold on N ranks are skipped) are planned
 * by the `sluice` policy and compared with a GLPK MILP over the space below.
 *
 * The MILP (its search space, exactly): choose groups, each a degree d in
 * 1..N; put every sequence in exactly one group; a group's time is
 * beta + sum T(s, d, 0) + c * e, with e >= 0 the tokens per rank it offloads
 * (c = MiB(act_bytes_per_token) / pcie_gbps) and sum p_d / d - e <= cap; the
 * ring bandwidth is the best the degree allows (one node when d <= G), as in
 * the ideal. Minimise T subject to every group time <= T and the groups'
 * rank-milliseconds sum d * time <= N * T. Every valid plan of the reference
 * model (docs/cost-model.md) is a point of this space with T <= its step
 * (each group runs within [0, step] on its own d ranks; a sequence's offload
 * time is additive, so spreading a group's offload over its sequences costs
 * c * e whatever the split). So the MILP optimum is a lower bound on the
 * exact optimum that is tighter than the ideal (whole fixed costs per
 * micro-batch, each sequence at one real degree, padding and offload per
 * group), and sluice's step is an upper bound: the exact optimum lies in
 * [MILP, sluice]. The relaxation drops only the placement of groups on
 * concrete ranks over time (ranks waiting for a group's other ranks, and a
 * rank's groups not splitting evenly); when the MILP equals sluice's step the
 * plan is proven optimal. Groups of degree d number at most
 * floor(N * step / (d * beta)) (no better plan has more), sequences whose
 * time at d plus beta exceeds sluice's step are not offered d, and groups of
 * one degree are labelled by their smallest member (symmetry), all without
 * excluding any plan at least as fast as sluice's. A solve cut by
 * --time-limit reports GLPK's best proven bound instead (marked "bound").
 *
 * Prints one line per instance and, per trace, the mean and worst of
 * sluice / MILP - 1 (an upper bound on sluice's gap to the exact optimum)
 * and of sluice / ideal - 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchopt.h"
#include "intbound.h"
#include "lp.h"
#include "sluice/sluice.h"

typedef struct {
	double gap_sum, gap_max, ideal_sum, ideal_max;
	int n, proven, optimal;
} tally_t;

/* Lower bound on the step of any plan for len[0..n) (contract above), into
 * *lb; *proven = 1 when GLPK closed the search. ub is a known plan's step
 * (sluice's). Returns SL_OK or the error of the first failing call. */
static sl_err milp_bound(const sl_cost_t *c, const int64_t *len, int n, double ub, double tm_ms,
                         double *lb, int *proven)
{
	const sl_profile_t *pf = &c->prof;
	int32_t N = c->cl.ranks, G = c->cl.ranks_per_node;
	double beta = pf->beta, coff = pf->act_bytes_per_token / 1048576.0 / pf->pcie_gbps;
	double cap = (double)c->cap, tub = ub - pf->grad_sync_ms;
	sl_err rc = SL_OK;
	lp_t *lp = NULL;
	int nmax = n * N * n + 4 * N * n + 8;
	int *xcol = NULL, *cols = NULL, *rank = NULL;
	double *vals = NULL, *tm = NULL, *tok = NULL;
	/* per (d, k): y, e columns; per (j, d, k): x column or -1 */
	int *ycol = NULL, *ecol = NULL;
	xcol = malloc(sizeof(int) * (size_t)n * (size_t)N * (size_t)n);
	ycol = malloc(sizeof(int) * (size_t)N * (size_t)n);
	ecol = malloc(sizeof(int) * (size_t)N * (size_t)n);
	rank = malloc(sizeof(int) * (size_t)n * (size_t)N);
	tm = malloc(sizeof(double) * (size_t)n * (size_t)N);
	tok = malloc(sizeof(double) * (size_t)n * (size_t)N);
	cols = malloc(sizeof(int) * (size_t)nmax);
	vals = malloc(sizeof(double) * (size_t)nmax);
	if (!xcol || !ycol || !ecol || !rank || !tm || !tok || !cols || !vals) {
		rc = sl_seterr(SL_ENOMEM, "sluice-optimum: out of memory");
		goto out;
	}
	int tcol;
	SL_CHECK_GOTO(lp_new("optimum", 1, &lp), rc, out);
	SL_CHECK_GOTO(lp_add_col(lp, "T", LP_CONTINUOUS, 0, tub, 1, &tcol), rc, out);
	for (int32_t d = 1; d <= N; d++) {
		int cnt = 0; /* sequences offered degree d, in index order */
		for (int j = 0; j < n; j++) {
			size_t q = (size_t)j * (size_t)N + (size_t)(d - 1);
			tm[q] = sl_cost_seq_ms(c, len[j], d, 0, d <= G);
			tok[q] = (double)sl_cost_padded(len[j], d) / d;
			rank[q] = tm[q] + beta <= tub ? cnt++ : -1;
		}
		int kmax = (int)fmin(cnt, floor(N * tub / (d * beta)));
		for (int k = 0; k < n; k++) {
			size_t g = (size_t)(d - 1) * (size_t)n + (size_t)k;
			ycol[g] = ecol[g] = -1;
			if (k < kmax) {
				SL_CHECK_GOTO(lp_add_col(lp, NULL, LP_BINARY, 0, 1, 0, &ycol[g]), rc, out);
				SL_CHECK_GOTO(lp_add_col(lp, NULL, LP_CONTINUOUS, 0, INFINITY, 0, &ecol[g]), rc, out);
			}
			for (int j = 0; j < n; j++) {
				size_t q = (size_t)j * (size_t)N + (size_t)(d - 1);
				int *x = &xcol[((size_t)j * (size_t)N + (size_t)(d - 1)) * (size_t)n + (size_t)k];
				*x = -1;
				/* symmetry: group k of degree d holds sequences of offered rank >= k */
				if (k < kmax && rank[q] >= k)
					SL_CHECK_GOTO(lp_add_col(lp, NULL, LP_BINARY, 0, 1, 0, x), rc, out);
			}
		}
	}
	/* every sequence in one group */
	for (int j = 0; j < n; j++) {
		int nz = 0;
		for (size_t z = 0; z < (size_t)N * (size_t)n; z++) {
			int x = xcol[(size_t)j * (size_t)N * (size_t)n + z];
			if (x >= 0) {
				cols[nz] = x;
				vals[nz++] = 1;
			}
		}
		if (nz == 0) { /* cannot happen: sluice's own plan runs it within ub */
			rc = sl_seterr(SL_EINVAL, "sluice-optimum: sequence %d (%lld tokens) has no degree",
			               j, (long long)len[j]);
			goto out;
		}
		SL_CHECK_GOTO(lp_add_row(lp, NULL, nz, cols, vals, 1, 1, NULL), rc, out);
	}
	int na = 0; /* area row, built along */
	double *avals = malloc(sizeof(double) * (size_t)nmax);
	int *acols = malloc(sizeof(int) * (size_t)nmax);
	if (!avals || !acols) {
		free(avals);
		free(acols);
		rc = sl_seterr(SL_ENOMEM, "sluice-optimum: out of memory");
		goto out;
	}
	for (int32_t d = 1; d <= N && rc == SL_OK; d++) {
		for (int k = 0; k < n && rc == SL_OK; k++) {
			size_t g = (size_t)(d - 1) * (size_t)n + (size_t)k;
			if (ycol[g] < 0)
				continue;
			int nt = 0, nm = 0;
			int *mcols = cols + nmax / 2;
			double *mvals = vals + nmax / 2;
			cols[nt] = ycol[g];
			vals[nt++] = beta;
			cols[nt] = ecol[g];
			vals[nt++] = coff;
			mcols[nm] = ycol[g];
			mvals[nm++] = -cap;
			mcols[nm] = ecol[g];
			mvals[nm++] = -1;
			for (int j = 0; j < n; j++) {
				size_t q = (size_t)j * (size_t)N + (size_t)(d - 1);
				int x = xcol[q * (size_t)n + (size_t)k];
				if (x < 0)
					continue;
				cols[nt] = x;
				vals[nt++] = tm[q];
				mcols[nm] = x;
				mvals[nm++] = tok[q];
				int link[2] = {x, ycol[g]};
				double lv[2] = {1, -1};
				if ((rc = lp_add_row(lp, NULL, 2, link, lv, -INFINITY, 0, NULL)) != SL_OK)
					break;
			}
			for (int z = 0; z < nt && rc == SL_OK; z++) {
				acols[na] = cols[z];
				avals[na++] = d * vals[z];
			}
			if (rc == SL_OK)
				rc = lp_add_row(lp, NULL, nm, mcols, mvals, -INFINITY, 0, NULL);
			cols[nt] = tcol;
			vals[nt++] = -1;
			if (rc == SL_OK)
				rc = lp_add_row(lp, NULL, nt, cols, vals, -INFINITY, 0, NULL);
			if (rc == SL_OK && k > 0) { /* open groups first */
				int sym[2] = {ycol[g], ycol[g - 1]};
				double sv[2] = {1, -1};
				rc = lp_add_row(lp, NULL, 2, sym, sv, -INFINITY, 0, NULL);
			}
		}
	}
	if (rc == SL_OK) {
		acols[na] = tcol;
		avals[na++] = -(double)N;
		rc = lp_add_row(lp, "area", na, acols, avals, -INFINITY, 0, NULL);
	}
	free(avals);
	free(acols);
	if (rc != SL_OK)
		goto out;
	lp_opts_t o = {0};
	o.tm_lim_ms = tm_ms;
	o.cuts = 1;
	o.presolve = 1;
	lp_result_t res;
	rc = lp_solve_mip(lp, &o, &res);
	if (res.status == LP_OPTIMAL) {
		*lb = res.obj;
		*proven = 1;
		rc = SL_OK;
	} else if (res.status == LP_INFEASIBLE) {
		/* no point with T <= sluice's step below it: the bound is the step */
		*lb = tub;
		*proven = 1;
		rc = SL_OK;
	} else {
		*lb = isfinite(res.bound) ? res.bound : 0;
		*proven = 0;
		rc = SL_OK;
	}
	*lb += pf->grad_sync_ms;
out:
	lp_free(&lp);
	free(xcol);
	free(ycol);
	free(ecol);
	free(rank);
	free(tm);
	free(tok);
	free(cols);
	free(vals);
	return rc;
}

/* Prints plan's groups, one a line: slot, ranks, start and time under the
 * reference timing, and the lengths they run (what --show asks for). */
static void show_plan(const sl_plan_t *plan, const sl_cost_t *c)
{
	double *st = malloc(sizeof(double) * (size_t)(plan->ngroups + 1));
	double *gm = malloc(sizeof(double) * (size_t)(plan->ngroups + 1));
	double *rd = malloc(sizeof(double) * (size_t)plan->ranks);
	if (st && gm && rd) {
		sl_plan_timeline(plan, c, st, gm, rd);
		for (int64_t g = 0; g < plan->ngroups; g++) {
			const sl_group_t *gr = &plan->groups[g];
			const int32_t *rk = sl_group_ranks(plan, gr);
			const sl_item_t *it = sl_group_items(plan, gr);
			printf("#   slot %d d=%d ranks %d..%d start %.1f time %.1f end %.1f:", gr->slot,
			       gr->nranks, rk[0], rk[gr->nranks - 1], st[g], gm[g], st[g] + gm[g]);
			for (int32_t i = 0; i < gr->nitems; i++)
				printf(" %lld%s", (long long)plan->seqs[it[i].seq].length,
				       it[i].offload > 0 ? "*" : "");
			printf("\n");
		}
	}
	free(st);
	free(gm);
	free(rd);
}

/* The best valid plan this tool knows for seqs[0..n) into *out (caller
 * frees), its policy's name into name: `sluice` at work_limit (0: its
 * default) and, with search, every registered policy (ties keep the
 * earlier). */
static sl_err best_plan(const sl_cost_t *c, const sl_seq_t *seqs, int n, int64_t work_limit,
                        int search, sl_plan_t **out, char *name, size_t name_len)
{
	sl_policy_opts_t o = {0};
	o.work_limit = work_limit;
	sl_err rc = sl_plan_request("sluice", c, seqs, n, &o, out);
	if (rc != SL_OK)
		return rc;
	snprintf(name, name_len, "sluice");
	for (size_t p = 0; search && p < sl_policy_count(); p++) {
		sl_plan_t *q = NULL;
		if (sl_plan_request(sl_policy_at(p)->name, c, seqs, n, NULL, &q) != SL_OK)
			continue; /* that policy has no plan here (e.g. static cannot hold it) */
		if (sl_plan_validate(q, c, NULL, NULL) == 0 && q->step_ms < (*out)->step_ms - 1e-9) {
			sl_plan_free(out);
			*out = q;
			snprintf(name, name_len, "%s", sl_policy_at(p)->name);
		} else {
			sl_plan_free(&q);
		}
	}
	return SL_OK;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: sluice-optimum [--profile NAME] [--per-node G] [--time-limit S]\n"
	           "                      [--instances K] [--ranks N] [--batch n] [--search]\n"
	           "                      [--work-limit W] [--show] [--version] TRACE...\n\n%s",
	        SL_EXIT_HELP);
}

int main(int argc, char **argv)
{
	const char *profname = "gpt-7b-flexsp";
	int32_t per_node = 8;
	int inst = 3;
	double tlim_s = 20;
	int32_t only_ranks = 0;
	int only_n = 0, show = 0, search = 0;
	int64_t work_limit = 0;
	int first_trace = argc;
	const bench_opts_t bo = {"sluice-optimum", usage, &profname, &only_ranks, &per_node,
	                         &only_n, NULL, NULL};
	for (int i = 1; i < argc; i++) {
		int code, r = bench_opt(&bo, argc, argv, &i, &code);
		if (r == BENCH_OPT_EXIT)
			return code;
		if (r == BENCH_OPT_TAKEN)
			continue;
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--show") == 0) {
			show = 1;
		} else if (strcmp(a, "--search") == 0) {
			search = 1;
		} else if (a[0] == '-' && v == NULL) {
			fprintf(stderr, "sluice-optimum: %s needs a value\n", a);
			return SL_EXIT_USAGE;
		} else if (strcmp(a, "--time-limit") == 0) {
			tlim_s = atof(argv[++i]);
		} else if (strcmp(a, "--instances") == 0) {
			inst = atoi(argv[++i]);
		} else if (strcmp(a, "--work-limit") == 0) {
			work_limit = atoll(argv[++i]);
		} else if (a[0] == '-') {
			fprintf(stderr, "sluice-optimum: unknown option %s\n", a);
			usage(stderr);
			return SL_EXIT_USAGE;
		} else {
			first_trace = i;
			break;
		}
	}
	if (first_trace >= argc || per_node < 1 || inst < 1 || !(tlim_s > 0)) {
		usage(stderr);
		return SL_EXIT_USAGE;
	}
	sl_log_init_from_env();
	sl_profile_t prof;
	if (sl_profile_resolve(profname, &prof) != SL_OK) {
		fprintf(stderr, "sluice-optimum: %s\n", sl_errmsg());
		return SL_EXIT_USAGE;
	}
	static const int32_t ranks[] = {8, 16};
	static const int sizes[] = {16, 32, 64};
	printf("%-28s %5s %4s %6s %12s %12s %12s %8s %9s %9s\n", "trace", "ranks", "n", "offset",
	       "sluice_ms", "milp_ms", "ideal_ms", "status", "gap_milp", "gap_ideal");
	int rc = SL_EXIT_OK;
	for (int t = first_trace; t < argc && rc == SL_EXIT_OK; t++) {
		sl_lengths_t tr = {0};
		if (sl_trace_read(argv[t], NULL, &tr) != SL_OK) {
			fprintf(stderr, "sluice-optimum: %s\n", sl_errmsg());
			return SL_EXIT_USAGE;
		}
		const char *base = strrchr(argv[t], '/') ? strrchr(argv[t], '/') + 1 : argv[t];
		tally_t all = {0};
		for (size_t r = 0; r < sizeof(ranks) / sizeof(ranks[0]) && rc == SL_EXIT_OK; r++) {
			if (only_ranks > 0 && ranks[r] != only_ranks)
				continue;
			sl_cost_t cost;
			sl_cluster_t cl = {ranks[r], per_node < ranks[r] ? per_node : ranks[r]};
			if (sl_cost_init(&cost, &prof, &cl) != SL_OK) {
				fprintf(stderr, "sluice-optimum: %s\n", sl_errmsg());
				rc = SL_EXIT_FAIL;
				break;
			}
			for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]) && rc == SL_EXIT_OK; z++) {
				int n = sizes[z];
				if (only_n > 0 && n != only_n)
					continue;
				for (int k = 0; k < inst && rc == SL_EXIT_OK; k++) {
					/* spread, fixed offsets; wraps on short traces */
					size_t off = tr.n > 0 ? ((size_t)k * 104729u) % tr.n : 0;
					sl_seq_t seqs[64];
					int64_t len[64];
					int m = 0;
					for (size_t i = 0; m < n && i < tr.n; i++) {
						int64_t s = tr.v[(off + i) % tr.n];
						if (sl_cost_check_seq(&cost, m, s) != SL_OK)
							continue; /* no plan holds it on these ranks */
						seqs[m].id = m;
						seqs[m].length = s;
						len[m++] = s;
					}
					sl_plan_t *plan = NULL;
					char pname[32];
					if (m < n || best_plan(&cost, seqs, m, work_limit, search, &plan, pname,
					                       sizeof(pname)) != SL_OK) {
						fprintf(stderr, "sluice-optimum: %s N=%d n=%d: %s\n", base, ranks[r],
						        n, m < n ? "too few lengths fit" : sl_errmsg());
						rc = SL_EXIT_FAIL;
						break;
					}
					double lb = 0;
					int proven = 0;
					if (milp_bound(&cost, len, m, plan->step_ms, tlim_s * 1000, &lb, &proven) !=
					    SL_OK) {
						fprintf(stderr, "sluice-optimum: %s\n", sl_errmsg());
						sl_plan_free(&plan);
						rc = SL_EXIT_FAIL;
						break;
					}
					lb = fmax(lb, plan->ideal_ms); /* both are lower bounds */
					double ib = lb; /* and the pooled bound, whole fixed costs per rank */
					if (bench_int_bound(&cost, len, m, lb, plan->step_ms, 1, &ib) != SL_OK) {
						fprintf(stderr, "sluice-optimum: %s\n", sl_errmsg());
						sl_plan_free(&plan);
						rc = SL_EXIT_FAIL;
						break;
					}
					if (!proven && ib > lb)
						lb = ib;
					double gm = plan->step_ms / lb - 1, gi = plan->step_ms / plan->ideal_ms - 1;
					printf("%-28s %5d %4d %6zu %12.1f %12.1f %12.1f %8s %8.2f%% %8.2f%%%s%s\n",
					       base, ranks[r], n, off, plan->step_ms, lb, plan->ideal_ms,
					       !proven ? "bound" : gm < 1e-9 ? "optimal" : "proven", 100 * gm,
					       100 * gi, search ? " " : "", search ? pname : "");
					if (show)
						show_plan(plan, &cost);
					fflush(stdout);
					all.gap_sum += gm;
					all.gap_max = fmax(all.gap_max, gm);
					all.ideal_sum += gi;
					all.ideal_max = fmax(all.ideal_max, gi);
					all.proven += proven;
					all.optimal += proven && gm < 1e-9;
					all.n++;
					sl_plan_free(&plan);
				}
			}
			sl_cost_fini(&cost);
		}
		if (all.n > 0)
			printf("# %s: %d instances, MILP closed on %d (sluice proven optimal on %d); "
			       "sluice / MILP - 1: mean %.2f%% worst %.2f%%; sluice / ideal - 1: mean "
			       "%.2f%% worst %.2f%%\n",
			       base, all.n, all.proven, all.optimal, 100 * all.gap_sum / all.n,
			       100 * all.gap_max, 100 * all.ideal_sum / all.n, 100 * all.ideal_max);
		sl_lengths_free(&tr);
	}
	lp_thread_end();
	return rc;
}
