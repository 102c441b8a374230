/* sluice planner: the `flexsp` policy, FlexSP (Wang et al., ASPLOS 2025)
 * reproduced as a peer (flexsp_internal.h has the method, flexsp_mb.c the
 * per-micro-batch solver). This file holds the sequence blaster (section
 * 4.3: sort, cut into contiguous micro-batches by dynamic programming that
 * minimises the largest, try a few micro-batch counts), the placement of
 * each micro-batch's groups on ranks, and the guarantee that the answer is
 * never worse than the homogeneous best-fit-decreasing plans it starts
 * from. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexsp_internal.h"
#include "pack.h"

/* Default LP budget of one plan: enough to visit every configuration that
 * its bound does not rule out for 64 ranks; cut deterministically beyond. */
#define FX_DEFAULT_LP_BUDGET 20000
/* Configuration LPs per millisecond of opts->time_limit_ms: time_limit_ms is
 * a deterministic budget, turned into LPs at this fixed rate (measured on a
 * 2-core x86 box: about 10 LPs/ms on 64-4096 ranks; deliberately not
 * measured at run time, so the same limits give the same plan anywhere). */
#define FX_LPS_PER_MS 10
/* LPs of the bound-ordered walk per micro-batch before hill-climbing. */
#define FX_WALK_LPS 400
/* Configurations enumerated at most (all of them up to 128 ranks). */
#define FX_CFG_CAP 32768
/* Micro-batch counts tried above the least that holds the tokens. */
#define FX_EXTRA_K 3

/* Micro-batches solved for some count, kept (each in its own block, so
 * pointers stay valid while the cache grows) for other counts to reuse. */
typedef struct fx_cache {
	int64_t n, cap;
	fx_mb_t **mb;
	int *failed;
} fx_cache_t;

static void fx_cache_fini(fx_cache_t *c)
{
	for (int64_t i = 0; i < c->n; i++) {
		planner_flexsp_mb_fini(c->mb[i]);
		free(c->mb[i]);
	}
	free(c->mb);
	free(c->failed);
	memset(c, 0, sizeof(*c));
}

/* Returns the solved micro-batch [lo, hi), solving it on first use; NULL
 * with *rc = SL_OK when it cannot be placed, NULL with an error otherwise. */
static const fx_mb_t *fx_cache_get(fx_cache_t *c, fx_ctx_t *ctx, int64_t lo, int64_t hi, sl_err *rc)
{
	*rc = SL_OK;
	for (int64_t i = 0; i < c->n; i++)
		if (c->mb[i]->lo == lo && c->mb[i]->hi == hi)
			return c->failed[i] ? NULL : c->mb[i];
	if (c->n == c->cap) {
		int64_t na = c->cap ? 2 * c->cap : 16;
		fx_mb_t **mb = realloc(c->mb, sizeof(*mb) * (size_t)na);
		if (mb == NULL) {
			*rc = sl_seterr(SL_ENOMEM, "flexsp: out of memory");
			return NULL;
		}
		c->mb = mb;
		int *f = realloc(c->failed, sizeof(*f) * (size_t)na);
		if (f == NULL) {
			*rc = sl_seterr(SL_ENOMEM, "flexsp: out of memory");
			return NULL;
		}
		c->failed = f;
		c->cap = na;
	}
	fx_mb_t *mb = calloc(1, sizeof(*mb));
	if (mb == NULL) {
		*rc = sl_seterr(SL_ENOMEM, "flexsp: out of memory");
		return NULL;
	}
	sl_err r = planner_flexsp_solve_mb(ctx, lo, hi, mb);
	mb->lo = lo;
	mb->hi = hi;
	c->mb[c->n] = mb;
	c->failed[c->n] = r != SL_OK;
	c->n++;
	if (r == SL_EINFEASIBLE) {
		sl_clearerr();
		return NULL;
	}
	if (r != SL_OK) {
		*rc = r;
		return NULL;
	}
	return mb;
}

static void fx_ctx_fini(fx_ctx_t *ctx)
{
	free(ctx->idx);
	free(ctx->len);
	free(ctx->t);
	free(ctx->res);
	free(ctx->jmin);
	free(ctx->cfg);
	memset(ctx, 0, sizeof(*ctx));
}

/* Sorts the sequences that some power-of-two group holds resident and
 * tabulates their costs; the others go to over[0 .. *nover). */
static sl_err fx_ctx_init(fx_ctx_t *ctx, const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                          int32_t *over, int64_t *nover)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->cost = cost;
	ctx->N = cost->cl.ranks;
	for (int32_t d = 1; d <= ctx->N && ctx->ndeg < FX_MAXDEG; d *= 2) {
		int32_t G = cost->cl.ranks_per_node;
		ctx->one_node[ctx->ndeg] = d <= G && G % d == 0;
		ctx->deg[ctx->ndeg++] = d;
		if (d > ctx->N / 2)
			break;
	}
	ctx->idx = malloc(sizeof(*ctx->idx) * (size_t)n);
	ctx->len = malloc(sizeof(*ctx->len) * (size_t)n);
	ctx->t = malloc(sizeof(*ctx->t) * (size_t)n * ctx->ndeg);
	ctx->res = malloc(sizeof(*ctx->res) * (size_t)n * ctx->ndeg);
	ctx->jmin = malloc(sizeof(*ctx->jmin) * (size_t)n);
	if (ctx->idx == NULL || ctx->len == NULL || ctx->t == NULL || ctx->res == NULL ||
	    ctx->jmin == NULL)
		return sl_seterr(SL_ENOMEM, "flexsp: out of memory (%lld sequences)", (long long)n);
	*nover = 0;
	for (int64_t i = 0; i < n; i++) {
		if (planner_pow2_holding(cost, seqs[i].length) == 0)
			over[(*nover)++] = (int32_t)i;
		else
			ctx->idx[ctx->n++] = (int32_t)i;
	}
	planner_len_key_t *keys = malloc(sizeof(*keys) * (size_t)(ctx->n > 0 ? ctx->n : 1));
	if (keys == NULL)
		return sl_seterr(SL_ENOMEM, "flexsp: out of memory (%lld sequences)", (long long)n);
	for (int64_t k = 0; k < ctx->n; k++) {
		keys[k].len = seqs[ctx->idx[k]].length;
		keys[k].idx = ctx->idx[k];
	}
	qsort(keys, (size_t)ctx->n, sizeof(*keys), planner_len_key_desc);
	for (int64_t k = 0; k < ctx->n; k++)
		ctx->idx[k] = keys[k].idx;
	free(keys);
	for (int64_t k = 0; k < ctx->n; k++) {
		int64_t s = seqs[ctx->idx[k]].length;
		ctx->len[k] = s;
		ctx->jmin[k] = -1;
		for (int32_t j = 0; j < ctx->ndeg; j++) {
			int32_t d = ctx->deg[j];
			double r = (double)sl_cost_padded(s, d) / d;
			size_t at = (size_t)k * ctx->ndeg + j;
			ctx->res[at] = r;
			if (r <= (double)cost->cap) {
				ctx->t[at] = sl_cost_seq_ms(cost, s, d, 0.0, ctx->one_node[j]);
				if (ctx->jmin[k] < 0)
					ctx->jmin[k] = j;
			} else {
				ctx->t[at] = INFINITY;
			}
		}
	}
	return SL_OK;
}

/* The sequence blaster's split for k micro-batches: contiguous pieces of
 * the sorted order, each holding at most the cluster's tokens, minimising
 * the largest piece's estimated time beta + max(longest's least time,
 * least rank-time / N). Fills cut[0 .. k] (cut[0] = 0, cut[k] = n);
 * returns 0 when no split fits or the deadline stopped it. */
static int fx_blast(fx_ctx_t *ctx, int32_t k, int sum_obj, const double *crit,
                    const double *wpre, const double *tpre, int64_t *cut)
{
	int64_t n = ctx->n;
	double room = (double)ctx->N * (double)ctx->cost->cap;
	double beta = ctx->cost->prof.beta;
	double *f = malloc(sizeof(*f) * (size_t)(k + 1) * (size_t)(n + 1));
	int64_t *arg = malloc(sizeof(*arg) * (size_t)(k + 1) * (size_t)(n + 1));
	int64_t *below = malloc(sizeof(*below) * (size_t)(n + 1));
	double *pmin = malloc(sizeof(*pmin) * (size_t)(n + 1));
	int ok = 0;

	if (f == NULL || arg == NULL || below == NULL || pmin == NULL)
		goto out;
	for (int64_t j = 0; j <= n; j++)
		f[j] = j == 0 ? 0 : INFINITY;
	for (int32_t q = 1; q <= k; q++) {
		/* a row is O(n * piece) work: the deadline is checked per row */
		if (planner_flexsp_stopped(ctx))
			goto out;
		double *fq = f + (size_t)q * (n + 1), *fp = f + (size_t)(q - 1) * (n + 1);
		int64_t *aq = arg + (size_t)q * (n + 1);
		/* below[i]: the largest i' <= i where fp is finite (-1: none);
		 * only those can start a piece, and the room test passed over
		 * the others holds at the next one down as well (tpre grows) */
		for (int64_t i = 0; i <= n; i++) {
			below[i] = isfinite(fp[i]) ? i : (i > 0 ? below[i - 1] : -1);
			pmin[i] = i > 0 && pmin[i - 1] < fp[i] ? pmin[i - 1] : fp[i];
		}
		for (int64_t j = 0; j <= n; j++) {
			fq[j] = INFINITY;
			aq[j] = -1;
			/* the piece [i, j): nonempty, within the room */
			for (int64_t i = j > 0 ? below[j - 1] : -1; i >= q - 1;
			     i = i > 0 ? below[i - 1] : -1) {
				if (tpre[j] - tpre[i] > room)
					break;
				double w = (wpre[j] - wpre[i]) / ctx->N;
				/* Every piece [i', j) with i' <= i costs c >= beta +
				 * w (w only grows as the piece does) on top of, or
				 * besides, fp[i'] >= pmin[i] (times are never
				 * negative, sl_profile_check, so neither is f): once
				 * that floor misses fq[j], none of them can win (the
				 * same argmin) */
				double lo = sum_obj ? pmin[i] + (beta + w)
				                    : (pmin[i] > beta + w ? pmin[i] : beta + w);
				if (!(lo < fq[j]))
					break;
				double c = beta + (crit[i] > w ? crit[i] : w);
				double v = sum_obj ? fp[i] + c : (fp[i] > c ? fp[i] : c);
				if (v < fq[j]) {
					fq[j] = v;
					aq[j] = i;
				}
			}
		}
	}
	if (!isfinite(f[(size_t)k * (n + 1) + n]))
		goto out;
	cut[k] = n;
	for (int32_t q = k; q >= 1; q--)
		cut[q - 1] = arg[(size_t)q * (n + 1) + cut[q]];
	ok = 1;
out:
	free(f);
	free(arg);
	free(below);
	free(pmin);
	return ok;
}

/* Picks ranks for a group of d: the aligned free block whose ranks are
 * ready soonest (ties: lowest offset), else the first free run. Returns the
 * offset or -1. */
static int32_t fx_pick_block(int32_t N, int32_t d, const double *ready, const char *used)
{
	int32_t best = -1;
	double bv = INFINITY;
	for (int32_t off = 0; off + d <= N; off += d) {
		double mx = 0;
		int freeb = 1;
		for (int32_t r = off; r < off + d; r++) {
			if (used[r]) {
				freeb = 0;
				break;
			}
			mx = ready[r] > mx ? ready[r] : mx;
		}
		if (freeb && mx < bv) {
			bv = mx;
			best = off;
		}
	}
	if (best >= 0)
		return best;
	for (int32_t off = 0; off + d <= N; off++) {
		int freeb = 1;
		for (int32_t r = off; r < off + d && freeb; r++)
			freeb = !used[r];
		if (freeb)
			return off;
	}
	return -1;
}

/* Appends one group of d ranks at offset off to the plan's last slot. */
static sl_err fx_add_group(sl_plan_t *plan, int32_t off, int32_t d, int32_t *ranks)
{
	for (int32_t r = 0; r < d; r++)
		ranks[r] = off + r;
	return sl_plan_add_group(plan, ranks, d);
}

/* Builds the plan: the over-long sequences first (one slot each, offloading
 * on the largest power-of-two group, or all ranks), then one slot per
 * micro-batch with its groups placed, largest and slowest first, on the
 * aligned ranks that free up soonest. */
static sl_err fx_build(const fx_ctx_t *ctx, const sl_seq_t *seqs, int64_t n, const int32_t *over,
                       int64_t nover, const fx_mb_t *const *mbs, int32_t nmb, sl_plan_t **out)
{
	const sl_cost_t *cost = ctx->cost;
	int32_t N = ctx->N;
	sl_plan_t *plan =
	    sl_plan_new("flexsp", cost->prof.name, N, cost->cl.ranks_per_node, cost->cap, seqs, n);
	double *ready = calloc((size_t)N, sizeof(*ready));
	char *used = malloc((size_t)N);
	int32_t *ranks = malloc(sizeof(*ranks) * (size_t)N);
	int32_t *gord = malloc(sizeof(*gord) * (size_t)N);
	sl_err rc = SL_OK;

	*out = NULL;
	if (plan == NULL || ready == NULL || used == NULL || ranks == NULL || gord == NULL) {
		rc = sl_seterr(SL_ENOMEM, "flexsp: out of memory (plan)");
		goto out;
	}
	for (int64_t i = 0; i < nover; i++) {
		int64_t s = seqs[over[i]].length;
		int32_t d = planner_offload_degree(cost, s);
		double f = sl_cost_offload_for(cost, s, d, (double)cost->cap);
		if (!(f < 1.0)) {
			rc = sl_seterr(
			    SL_EINFEASIBLE,
			    "flexsp: sequence %lld (%lld tokens) does not fit on %d ranks even "
			    "offloading %.3f",
			    (long long)seqs[over[i]].id, (long long)s, d, cost->prof.max_offload);
			goto out;
		}
		memset(used, 0, (size_t)N);
		int32_t off = fx_pick_block(N, d, ready, used);
		SL_CHECK_GOTO(sl_plan_add_slot(plan), rc, out);
		SL_CHECK_GOTO(fx_add_group(plan, off, d, ranks), rc, out);
		SL_CHECK_GOTO(sl_plan_add_item(plan, over[i], f), rc, out);
		double mx = 0;
		for (int32_t r = off; r < off + d; r++)
			mx = ready[r] > mx ? ready[r] : mx;
		double t = cost->prof.beta +
		           sl_cost_seq_ms(cost, s, d, f, sl_cost_one_node(cost, ranks, d));
		for (int32_t r = off; r < off + d; r++)
			ready[r] = mx + t;
	}
	for (int32_t q = 0; q < nmb; q++) {
		const fx_mb_t *mb = mbs[q];
		/* groups: largest first, then slowest, then index */
		for (int32_t g = 0; g < mb->ngroups; g++)
			gord[g] = g;
		for (int32_t a = 1; a < mb->ngroups; a++) {
			int32_t v = gord[a], b = a - 1;
			while (b >= 0) {
				int32_t u = gord[b];
				int before =
				    mb->gdeg[v] > mb->gdeg[u] ||
				    (mb->gdeg[v] == mb->gdeg[u] && mb->gms[v] > mb->gms[u]);
				if (!before)
					break;
				gord[b + 1] = u;
				b--;
			}
			gord[b + 1] = v;
		}
		SL_CHECK_GOTO(sl_plan_add_slot(plan), rc, out);
		memset(used, 0, (size_t)N);
		for (int32_t a = 0; a < mb->ngroups; a++) {
			int32_t g = gord[a], d = mb->gdeg[g];
			int32_t off = fx_pick_block(N, d, ready, used);
			if (off < 0) {
				rc = sl_seterr(SL_EINTERNAL,
				               "flexsp: no free ranks for a group of %d", d);
				goto out;
			}
			SL_CHECK_GOTO(fx_add_group(plan, off, d, ranks), rc, out);
			for (int64_t k = mb->lo; k < mb->hi; k++)
				if (mb->grp[k - mb->lo] == g)
					SL_CHECK_GOTO(sl_plan_add_item(plan, ctx->idx[k], 0.0), rc,
					              out);
			double mx = 0;
			for (int32_t r = off; r < off + d; r++) {
				used[r] = 1;
				mx = ready[r] > mx ? ready[r] : mx;
			}
			for (int32_t r = off; r < off + d; r++)
				ready[r] = mx + mb->gms[g];
		}
	}
	*out = plan;
	plan = NULL;
out:
	sl_plan_free(&plan);
	free(ready);
	free(used);
	free(ranks);
	free(gord);
	return rc;
}

/* The flexsp policy (sl_policy_fn contract). opts->work_limit is the LP
 * budget (default FX_DEFAULT_LP_BUDGET); opts->time_limit_ms, when set,
 * lowers it to time_limit_ms * FX_LPS_PER_MS LPs (deterministic). Only
 * opts->deadline_ms and opts->cancel stop on the clock: the walk, the
 * micro-batch counts and the warm start stop there, and the best plan so
 * far is returned marked truncated ("cut by the deadline"); SL_ETIMEOUT
 * when there was none yet. */
sl_err planner_policy_flexsp(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                             const sl_policy_opts_t *opts, sl_plan_t **out)
{
	static const sl_policy_opts_t defaults;
	fx_ctx_t ctx;
	fx_cache_t cache = {0};
	int32_t *over = NULL;
	int64_t nover = 0;
	double *crit = NULL, *wpre = NULL, *tpre = NULL;
	int64_t *cut = NULL;
	const fx_mb_t **mbs = NULL;
	sl_plan_t *best = NULL, *cand = NULL;
	int32_t best_k = 0, best_sp = 0;
	sl_err rc = SL_OK;

	*out = NULL;
	memset(&ctx, 0, sizeof(ctx));
	if (opts == NULL)
		opts = &defaults;
	if (n < 1)
		return sl_seterr(SL_EINVAL, "flexsp: the request has no sequences");
	if (opts->work_limit < 0)
		return sl_seterr(SL_EINVAL, "flexsp: work limit %lld must be >= 0 (0 = default)",
		                 (long long)opts->work_limit);
	if (!(opts->time_limit_ms >= 0))
		return sl_seterr(SL_EINVAL, "flexsp: time limit %g ms must be >= 0 (0 = none)",
		                 opts->time_limit_ms);
	over = malloc(sizeof(*over) * (size_t)n);
	if (over == NULL)
		return sl_seterr(SL_ENOMEM, "flexsp: out of memory");
	SL_CHECK_GOTO(fx_ctx_init(&ctx, cost, seqs, n, over, &nover), rc, out);
	ctx.lp_budget = opts->work_limit > 0 ? opts->work_limit : FX_DEFAULT_LP_BUDGET;
	ctx.mb_lp_cap = FX_WALK_LPS;
	if (opts->time_limit_ms > 0) {
		double lps = opts->time_limit_ms * FX_LPS_PER_MS;
		if (lps < (double)ctx.lp_budget)
			ctx.lp_budget = lps < 1 ? 1 : (int64_t)lps;
	}
	ctx.opts = opts;
	SL_CHECK_GOTO(planner_flexsp_configs(&ctx, FX_CFG_CAP), rc, out);

	/* Warm start and floor: the homogeneous best-fit-decreasing plans. */
	for (int32_t d = 1; d <= ctx.N && !planner_flexsp_stopped(&ctx); d *= 2) {
		rc = planner_fixed_sp_plan(cost, seqs, n, d, "flexsp", &cand);
		/* the step alone (the caller evaluates the plan kept): the ideal
		 * costs far more than the comparison needs on thousands of ranks */
		if (rc == SL_OK)
			rc = planner_plan_timing(cand, cost, cand->per_rank_ms, &cand->step_ms);
		if (rc == SL_EINFEASIBLE || rc == SL_EINVAL) {
			sl_clearerr();
			rc = SL_OK;
		} else if (rc != SL_OK) {
			goto out;
		} else if (best == NULL || cand->step_ms < best->step_ms) {
			sl_plan_free(&best);
			best = cand;
			cand = NULL;
			best_sp = d;
		}
		sl_plan_free(&cand);
		if (d > ctx.N / 2)
			break;
	}

	if (ctx.n > 0) {
		crit = malloc(sizeof(*crit) * (size_t)ctx.n);
		wpre = malloc(sizeof(*wpre) * ((size_t)ctx.n + 1));
		tpre = malloc(sizeof(*tpre) * ((size_t)ctx.n + 1));
		cut = malloc(sizeof(*cut) * ((size_t)ctx.n + 1));
		mbs = malloc(sizeof(*mbs) * (size_t)ctx.n);
		if (crit == NULL || wpre == NULL || tpre == NULL || cut == NULL || mbs == NULL) {
			rc = sl_seterr(SL_ENOMEM, "flexsp: out of memory");
			goto out;
		}
		wpre[0] = tpre[0] = 0;
		for (int64_t k = 0; k < ctx.n; k++) {
			double bw = INFINITY, bt = INFINITY, br = INFINITY;
			for (int32_t j = ctx.jmin[k]; j < ctx.ndeg; j++) {
				double t = ctx.t[(size_t)k * ctx.ndeg + j];
				if (!isfinite(t))
					continue;
				bw = fmin(bw, ctx.deg[j] * t);
				bt = fmin(bt, t);
				br = fmin(br, ctx.deg[j] * ctx.res[(size_t)k * ctx.ndeg + j]);
			}
			crit[k] = bt;
			wpre[k + 1] = wpre[k] + bw;
			tpre[k + 1] = tpre[k] + br;
		}
		double room = (double)ctx.N * (double)cost->cap;
		int32_t kmin = (int32_t)ceil(tpre[ctx.n] / room - 1e-12);
		if (kmin < 1)
			kmin = 1;
		for (int32_t k = kmin; k <= kmin + FX_EXTRA_K && k <= ctx.n; k++)
			for (int sum_obj = 0; sum_obj < 2 && !planner_flexsp_stopped(&ctx); sum_obj++) {
				if (!fx_blast(&ctx, k, sum_obj, crit, wpre, tpre, cut))
					continue;
				int ok = 1;
				for (int32_t q = 0; q < k && ok && !planner_flexsp_stopped(&ctx); q++) {
					mbs[q] =
					    fx_cache_get(&cache, &ctx, cut[q], cut[q + 1], &rc);
					if (rc != SL_OK)
						goto out;
					ok = mbs[q] != NULL;
				}
				if (!ok || planner_flexsp_stopped(&ctx))
					continue;
				for (int rev = 0; rev < 2; rev++) {
					if (rev)
						for (int32_t q = 0; q < k / 2; q++) {
							const fx_mb_t *t = mbs[q];
							mbs[q] = mbs[k - 1 - q];
							mbs[k - 1 - q] = t;
						}
					SL_CHECK_GOTO(
					    fx_build(&ctx, seqs, n, over, nover, mbs, k, &cand), rc,
					    out);
					SL_CHECK_GOTO(planner_plan_timing(cand, cost, cand->per_rank_ms,
					                                  &cand->step_ms),
					              rc, out);
					SL_DEBUG(SL_SUB_PLAN, "flexsp: k=%d %s%s step %.1f ms", k,
					         sum_obj ? "sum" : "max", rev ? " reversed" : "",
					         cand->step_ms);
					/* the flexible plan wins ties against the homogeneous one
					 */
					if (best == NULL || cand->step_ms < best->step_ms ||
					    (best_k == 0 && cand->step_ms <= best->step_ms)) {
						sl_plan_free(&best);
						best = cand;
						cand = NULL;
						best_k = k;
					}
					sl_plan_free(&cand);
				}
			}
	}
	if (best == NULL && ctx.time_cut) {
		rc = sl_seterr(SL_ETIMEOUT, "flexsp: stopped by the deadline before any plan was built");
		goto out;
	}
	if (best == NULL) {
		rc = sl_seterr(
		    SL_EINFEASIBLE,
		    "flexsp: no plan found for %lld sequences on %d ranks (no micro-batch "
		    "split and no homogeneous degree holds them)",
		    (long long)n, ctx.N);
		goto out;
	}
	int64_t tried = 0;
	for (int64_t i = 0; i < cache.n; i++)
		tried += cache.mb[i]->configs_tried;
	best->lp_bound_ms = NAN;
	best->search_truncated = ctx.time_cut || ctx.budget_cut || ctx.cfg_cap_hit > 0;
	if (best_k > 0)
		snprintf(best->note, sizeof(best->note),
		         "%d micro-batches; %lld configurations, %lld LPs%s%s%s", best_k,
		         (long long)tried, (long long)ctx.lp_used,
		         ctx.time_cut ? "; cut by the deadline" : "",
		         ctx.budget_cut ? "; cut by the work limit" : "",
		         ctx.cfg_cap_hit ? "; configurations capped" : "");
	else
		snprintf(best->note, sizeof(best->note),
		         "homogeneous sp=%d best; %lld configurations, %lld LPs%s%s%s", best_sp,
		         (long long)tried, (long long)ctx.lp_used,
		         ctx.time_cut ? "; cut by the deadline" : "",
		         ctx.budget_cut ? "; cut by the work limit" : "",
		         ctx.cfg_cap_hit ? "; configurations capped" : "");
	SL_DEBUG(SL_SUB_PLAN, "flexsp: %s (step %.1f ms)", best->note, best->step_ms);
	*out = best;
	best = NULL;
out:
	sl_plan_free(&best);
	sl_plan_free(&cand);
	fx_cache_fini(&cache);
	fx_ctx_fini(&ctx);
	free(over);
	free(crit);
	free(wpre);
	free(tpre);
	free(cut);
	free(mbs);
	return rc;
}
