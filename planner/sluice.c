/* sluice planner: the default policy, `sluice`. See sluice_internal.h for
 * the pieces; this file runs them: the LP decides degrees and proves a
 * bound, a few roundings of it are built into plans (dynamic mesh,
 * two-stage assignment, local search), each is scored under the reference
 * model, and the fastest is kept. The baselines' plans are scored as well,
 * so `sluice` is never slower than a registered baseline on any batch (in
 * practice the built plans win; the plan's note says when one did not).
 *
 * Determinism: every choice is a function of the request and options; all
 * loops charge a work counter, and a time limit is turned into a work limit
 * at a fixed rate, so the same request gives the same plan on any machine. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_internal.h"

/* Default search budget in work units (one unit is about one candidate
 * evaluation, a few nanoseconds). */
#define SLUICE_DEFAULT_WORK ((int64_t)60 * 1000 * 1000)
/* Work units per millisecond of opts->time_limit_ms (a fixed rate, measured
 * on a 2-core x86 box; deliberately not measured at run time). */
#define SLUICE_WORK_PER_MS ((int64_t)150 * 1000)
/* Exact micro-batch MILPs per request. */
#define SLUICE_MILP_PER_REQUEST 8

/* Which LP roundings and knobs are built, in order (ties keep the first). */
typedef struct {
	double slack;
	planner_sluice_knobs_t knobs;
} variant_t;

static const variant_t variants[] = {
	{-1.0, {1, 1, 0}},
	{0.10, {1, 1, 0}},
	{0.25, {1, 1, 0}},
	{-1.0, {0, 1, 0}},
};
#define NVARIANTS ((int)(sizeof(variants) / sizeof(variants[0])))

/* Baselines scored as fallbacks, by registry name. */
static const char *const fallbacks[] = {"batch-adaptive", "static", "megatron-hybrid-cp"};

static sl_err ctx_init(planner_sluice_ctx_t *ctx, const sl_cost_t *cost, const sl_seq_t *seqs,
                       int64_t n, const sl_policy_opts_t *opts)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->cost = cost;
	ctx->seqs = seqs;
	ctx->n = (int32_t)n;
	ctx->N = cost->cl.ranks;
	ctx->G = cost->cl.ranks_per_node;
	ctx->nodes = (ctx->N + ctx->G - 1) / ctx->G;
	ctx->cap = (double)cost->cap;
	ctx->beta = cost->prof.beta;
	ctx->c_off = cost->prof.act_bytes_per_token / 1048576.0 / cost->prof.pcie_gbps;
	ctx->fmax = cost->prof.max_offload;
	ctx->t1 = malloc(sizeof(double) * (size_t)n);
	ctx->offcap = malloc(sizeof(int64_t) * (size_t)n);
	if (ctx->t1 == NULL || ctx->offcap == NULL) {
		free(ctx->t1);
		free(ctx->offcap);
		return sl_seterr(SL_ENOMEM, "sluice: out of memory for %lld sequences", (long long)n);
	}
	/* Offloading keeps a margin under max_offload so the 1e-6 grid of
	 * sl_cost_offload_for never rounds past it. */
	double fm = ctx->fmax - 1e-5;
	for (int64_t i = 0; i < n; i++) {
		int64_t s = seqs[i].length;
		ctx->t1[i] = sl_cost_seq_ms(cost, s, 1, 0.0, 1);
		double oc = fm > 0 ? floor((double)s * fm) : 0;
		ctx->offcap[i] = oc > 0 ? (int64_t)oc : 0;
	}
	ctx->work_limit = opts->work_limit > 0 ? opts->work_limit : SLUICE_DEFAULT_WORK;
	if (opts->time_limit_ms > 0) {
		double w = opts->time_limit_ms * (double)SLUICE_WORK_PER_MS;
		if (w < (double)ctx->work_limit)
			ctx->work_limit = w < 1 ? 1 : (int64_t)w;
	}
	ctx->milp_left = SLUICE_MILP_PER_REQUEST;
	return SL_OK;
}

static void ctx_fini(planner_sluice_ctx_t *ctx)
{
	free(ctx->t1);
	free(ctx->offcap);
	ctx->t1 = NULL;
	ctx->offcap = NULL;
}

/* Step time of a plan under the reference model (no ideal). */
static sl_err plan_step(const sl_plan_t *plan, const sl_cost_t *cost, double *per_rank,
                        double *step)
{
	return planner_plan_timing(plan, cost, per_rank, step);
}

sl_err planner_policy_sluice(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                             const sl_policy_opts_t *opts, sl_plan_t **out)
{
	static const sl_policy_opts_t defaults;
	planner_sluice_ctx_t ctx;
	planner_sluice_lp_t lp;
	planner_sluice_state_t st;
	sl_err rc = SL_OK;
	sl_plan_t *best = NULL, *cand = NULL;
	int32_t *deg = NULL, *prev_deg = NULL;
	double *off = NULL, *per_rank = NULL;
	double best_ms = INFINITY;
	const char *winner = NULL;
	int built = 0;

	*out = NULL;
	if (opts == NULL)
		opts = &defaults;
	if (n < 1)
		return sl_seterr(SL_EINVAL, "sluice: the request has no sequences");
	if (n > INT32_MAX)
		return sl_seterr(SL_ERANGE, "sluice: %lld sequences (limit %d)", (long long)n,
		                 INT32_MAX);
	memset(&lp, 0, sizeof(lp));
	memset(&st, 0, sizeof(st));
	SL_CHECK(ctx_init(&ctx, cost, seqs, n, opts));
	deg = malloc(sizeof(int32_t) * (size_t)n);
	prev_deg = malloc(sizeof(int32_t) * (size_t)n * NVARIANTS);
	off = malloc(sizeof(double) * (size_t)n);
	per_rank = malloc(sizeof(double) * (size_t)ctx.N);
	if (deg == NULL || prev_deg == NULL || off == NULL || per_rank == NULL) {
		rc = sl_seterr(SL_ENOMEM, "sluice: out of memory for %lld sequences", (long long)n);
		goto out;
	}
	SL_CHECK_GOTO(planner_sluice_lp_solve(&ctx, &lp), rc, out);
	SL_CHECK_GOTO(planner_sluice_state_init(&st, &ctx), rc, out);

	int64_t share = ctx.work_limit / NVARIANTS;
	for (int v = 0; v < NVARIANTS; v++) {
		const variant_t *va = &variants[v];
		planner_sluice_lp_round(&ctx, &lp, va->slack, deg, off);
		/* Skip a variant that repeats an earlier one exactly. */
		int dup = 0;
		for (int u = 0; u < v && !dup; u++)
			dup = memcmp(&variants[u].knobs, &va->knobs, sizeof(va->knobs)) == 0 &&
			      memcmp(prev_deg + (size_t)u * (size_t)n, deg, sizeof(int32_t) * (size_t)n) ==
			              0;
		memcpy(prev_deg + (size_t)v * (size_t)n, deg, sizeof(int32_t) * (size_t)n);
		if (dup)
			continue;
		/* Each variant gets its share of the work; what an earlier one
		 * left unused carries over. */
		int64_t limit = ctx.work + share;
		if (v == NVARIANTS - 1 || limit > ctx.work_limit)
			limit = ctx.work_limit;
		int64_t saved = ctx.work_limit;
		ctx.work_limit = limit;
		SL_CHECK_GOTO(planner_sluice_build(&st, deg, off, &va->knobs), rc, out);
		SL_CHECK_GOTO(planner_sluice_search(&st, &va->knobs), rc, out);
		ctx.work_limit = saved;
		SL_CHECK_GOTO(planner_sluice_emit(&st, &cand), rc, out);
		double ms;
		SL_CHECK_GOTO(plan_step(cand, cost, per_rank, &ms), rc, out);
		built++;
		if (ms < best_ms - 1e-9) {
			sl_plan_free(&best);
			best = cand;
			cand = NULL;
			best_ms = ms;
		} else {
			sl_plan_free(&cand);
		}
	}
	/* The baselines as a safety net. */
	for (size_t k = 0; k < sizeof(fallbacks) / sizeof(fallbacks[0]); k++) {
		const sl_policy_t *pol = sl_policy_find(fallbacks[k]);
		if (pol == NULL)
			continue;
		if (pol->fn(cost, seqs, n, opts, &cand) != SL_OK) {
			sl_clearerr();
			continue;
		}
		double ms;
		SL_CHECK_GOTO(plan_step(cand, cost, per_rank, &ms), rc, out);
		if (ms < best_ms - 1e-9) {
			sl_plan_free(&best);
			best = cand;
			cand = NULL;
			best_ms = ms;
			winner = pol->name;
		} else {
			sl_plan_free(&cand);
		}
	}
	if (best == NULL) {
		rc = sl_seterr(SL_EINTERNAL, "sluice: no candidate plan was built");
		goto out;
	}
	snprintf(best->policy, sizeof(best->policy), "sluice");
	best->lp_bound_ms = lp.bound_ms;
	best->search_truncated = ctx.truncated;
	best->note[0] = '\0';
	if (ctx.truncated)
		snprintf(best->note, sizeof(best->note),
		         "search cut by the work limit (%lld units)%s%s", (long long)ctx.work_limit,
		         winner ? "; kept the plan of " : "", winner ? winner : "");
	else if (winner)
		snprintf(best->note, sizeof(best->note), "kept the plan of %s (faster on this batch)",
		         winner);
	SL_DEBUG(SL_SUB_PLAN, "sluice: %d plans built, step %.1f ms, LP bound %.1f ms, work %lld",
	         built, best_ms, lp.bound_ms, (long long)ctx.work);
	*out = best;
	best = NULL;
out:
	sl_plan_free(&best);
	sl_plan_free(&cand);
	planner_sluice_state_fini(&st);
	planner_sluice_lp_fini(&lp);
	ctx_fini(&ctx);
	free(deg);
	free(prev_deg);
	free(off);
	free(per_rank);
	return rc;
}
