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

#include "pack.h"
#include "sluice_internal.h"

/* Default search budget in work units (one unit is about one candidate
 * evaluation, a few nanoseconds): a base plus a share per sequence, enough
 * for the search to converge on the batches we benchmark (it then stops
 * by itself), while bounding it on anything larger. */
#define SLUICE_DEFAULT_WORK_BASE ((int64_t)40 * 1000 * 1000)
#define SLUICE_DEFAULT_WORK_PER_SEQ ((int64_t)25 * 1000)
/* Past this many sequences each further one adds only a tenth of the
 * share: the search's gains flatten on large batches while its cost grows,
 * and the default must keep 100K sequences within seconds. */
#define SLUICE_DEFAULT_WORK_FULL_SEQS ((int64_t)8192)
/* Work units per millisecond of opts->time_limit_ms (policy.h). */
#define SLUICE_WORK_PER_MS ((int64_t)SL_WORK_UNITS_PER_MS)
/* Exact micro-batch MILPs per request. */
#define SLUICE_MILP_PER_REQUEST 8

/* Re-roundings of the LP at the best plan's level and step (each round
 * builds at most two plans). */
#define SLUICE_REFINE 2
/* Step targets tried last, between the decision LP's optimum and the best
 * plan's step so far (lp_target at each): the LP's fractional fixed costs
 * put its T below any plan with whole micro-batches, so its own roundings
 * can take degrees too wide for the step a plan reaches (16 ranks, 32
 * Wikipedia sequences: 1,402 ms -> 1,056 ms against a bound of 1,045; on
 * the Wikipedia replay 1.113 -> 1.111, from its steps with one very long
 * sequence). */
#define SLUICE_LADDER 4
/* The extra builds (ladder; no-rider variants on long-dominated batches)
 * only up to this many sequences: each build costs about a second at 100K,
 * where the work limit must keep planning within seconds. */
#define SLUICE_EXTRA_MAX_SEQS 4096
/* Batches up to this many sequences build each ladder rung with and
 * without riders. */
#define SLUICE_LADDER_BOTH_MAX_SEQS 256
/* Plans built per request at most: the two LPs' roundings (each also
 * widened and without riders on long-dominated batches: 8), the
 * re-roundings, the best degrees without riders, and the ladder (twice on
 * small batches). */
#define SLUICE_MAX_BUILDS (2 * SLUICE_REFINE + 9 + 2 * SLUICE_LADDER)
/* Each build's share of the work limit: as for the 2 SLUICE_REFINE + 5
 * builds every batch gets (the extra ones share what those leave). */
#define SLUICE_BUILD_SHARES (2 * SLUICE_REFINE + 5)

/* The polish (sluice_polish.c) runs on requests of at most this many
 * sequences on at most this many ranks, within this much work (set aside
 * on top of the default limit, like the fallbacks'; about 10 ms on 64
 * sequences, which it often uses up; n = 16 on 16 ranks converges in about
 * 0.6M): its moves number about groups x ranks + sequences x groups and
 * each is priced by placing every group, which at the Wikipedia replay's
 * 512 sequences on 64 ranks would cost seconds. Like the ladder's fixed
 * number of rungs, this cap is part of the method: only the caller's limit
 * or deadline stopping it marks the plan cut. */
#define SLUICE_POLISH_MAX_SEQS 64
#define SLUICE_POLISH_MAX_RANKS 64
#define SLUICE_POLISH_UNITS ((int64_t)4 * 1000 * 1000)

/* Baselines scored as fallbacks, by registry name. The last, `flexsp`,
 * costs tens of milliseconds on short-dominated batches, where our plans
 * beat it by 10-20%; it is scored only on long-dominated batches (at least
 * half the sequences need several ranks) whose best plan built packs long
 * sequences into whole-node rings (knobs.widen): FlexSP's own structure,
 * where the two come within a fraction of a percent. */
static const char *const fallbacks[] = {"batch-adaptive", "static", "megatron-hybrid-cp",
                                        "sluice-aligned", "flexsp"};
#define SLUICE_FALLBACK_ALIGNED 3
#define SLUICE_FALLBACK_FLEXSP 4
/* sluice-aligned (framework-formable rings, no idle rank) is one pass, but
 * its placement scans ranks per group: scored up to this many ranks, where
 * it costs well under a millisecond per hundred sequences. */
#define SLUICE_ALIGNED_MAX_RANKS 4096
/* Work units charged for scoring each fallback: its cost predicted from the
 * batch's size at SLUICE_WORK_PER_MS (they have no work counter of their
 * own and cannot be cut halfway), fitted on this 2-core box from 512 to
 * 131,072 sequences on 64 to 16,384 ranks (docs/perf.md, "Work limit"):
 * `static` deals every sequence and packs each rank (about 0.3 us a
 * sequence), `batch-adaptive` is `static` once per power-of-two degree,
 * `megatron-hybrid-cp` about 0.5 us a sequence, `sluice-aligned` scans the
 * batch once per slot (about 3 ns per pair of sequences), `flexsp` with
 * SLUICE_FLEXSP_LPS configuration LPs about 1 ms plus 26 ns per pair of
 * sequences (log-normal long batches on 64 ranks: 1-256 sequences 1-3 ms,
 * 1,024 29 ms, 4,096 437 ms; it was charged a flat 80 ms, which kept it
 * from ever being scored on small batches and undercharged large ones). */
#define SLUICE_STATIC_UNITS_PER_SEQ 64
#define SLUICE_STATIC_UNITS_PER_RANK 8
#define SLUICE_MEGATRON_UNITS_PER_SEQ 96
#define SLUICE_FLEXSP_MS_BASE 1.0
#define SLUICE_FLEXSP_MS_PER_PAIR 2.6e-5
/* A fallback whose predicted cost is over this share of the work limit is
 * not scored at all (it would crowd out the search); the others' cost is
 * set aside from the start, so the search leaves them room. */
#define SLUICE_FALLBACK_SHARE 4
/* Units charged per sequence and per rank for writing a built plan and
 * timing it under the reference rule. */
#define SLUICE_EMIT_UNITS_PER_SEQ 16
#define SLUICE_EMIT_UNITS_PER_RANK 8
/* A work limit below this many units per sequence and per rank cannot pay
 * for one build of our own (placement and stages 1 and 2 took 1-6 us a
 * sequence here, more per sequence on more ranks): the request gets
 * `static`'s plan, marked truncated. */
#define SLUICE_BUILD_UNITS_PER_SEQ 300
#define SLUICE_BUILD_UNITS_PER_RANK 2000

/* The configuration LPs flexsp may solve as a fallback (its default is
 * 20,000): its homogeneous plans, where it starts, are what wins on the
 * batches it is scored on; its search there costs 10-80 ms. */
#define SLUICE_FLEXSP_LPS 64
/* ... and on batches of at most this many sequences: its blaster and
 * placement grow faster than linearly (seconds at 20K sequences). */
#define SLUICE_FLEXSP_MAX_SEQS 4096

/* Fills ctx for the request (ctx_fini releases it): per-sequence times and
 * offload room, and the work limit; *default_limit tells whether that is
 * the policy's default rather than the caller's work or time limit. */
static sl_err ctx_init(planner_sluice_ctx_t *ctx, const sl_cost_t *cost, const sl_seq_t *seqs,
                       int64_t n, const sl_policy_opts_t *opts, int *default_limit)
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
	/* The most tokens of a sequence one rank may offload: the largest v
	 * whose offload fraction, as sl_cost_offload_for rounds it to its 1e-6
	 * grid, stays within max_offload. */
	for (int64_t i = 0; i < n; i++) {
		int64_t s = seqs[i].length;
		ctx->t1[i] = sl_cost_seq_ms(cost, s, 1, 0.0, 1);
		double oc = floor((double)s * ctx->fmax);
		int64_t v = oc > 0 ? (int64_t)oc : 0;
		if (v >= s)
			v = s - 1;
		while (v > 0 && sl_cost_offload_for(cost, s, 1, (double)(s - v)) >= 1.0)
			v--;
		ctx->offcap[i] = v;
	}
	int64_t nfull = n < SLUICE_DEFAULT_WORK_FULL_SEQS ? n : SLUICE_DEFAULT_WORK_FULL_SEQS;
	ctx->work_limit = opts->work_limit > 0
	                          ? opts->work_limit
	                          : SLUICE_DEFAULT_WORK_BASE + SLUICE_DEFAULT_WORK_PER_SEQ * nfull +
	                                    SLUICE_DEFAULT_WORK_PER_SEQ / 10 * (n - nfull);
	*default_limit = opts->work_limit <= 0;
	if (opts->time_limit_ms > 0) {
		double w = opts->time_limit_ms * (double)SLUICE_WORK_PER_MS;
		if (w < (double)ctx->work_limit) {
			ctx->work_limit = w < 1 ? 1 : (int64_t)w;
			*default_limit = 0;
		}
	}
	ctx->milp_left = SLUICE_MILP_PER_REQUEST;
	ctx->opts = opts;
	return SL_OK;
}

/* Releases what ctx_init and planner_sluice_orders allocated. */
static void ctx_fini(planner_sluice_ctx_t *ctx)
{
	free(ctx->t1);
	free(ctx->offcap);
	free(ctx->by_t);
	free(ctx->by_len);
	free(ctx->len_pos);
	ctx->t1 = NULL;
	ctx->offcap = NULL;
	ctx->by_t = ctx->by_len = ctx->len_pos = NULL;
}

/* The search state of one request: the best plan so far and the degree
 * vectors already built (so a rounding that repeats one is skipped). */
typedef struct {
	planner_sluice_ctx_t *ctx;
	planner_sluice_state_t *st;
	const sl_cost_t *cost;
	double *per_rank;
	int32_t *seen;   /* [SLUICE_MAX_BUILDS][n] */
	int seen_riders[SLUICE_MAX_BUILDS]; /* riders + 2 widen */
	int nseen;
	int32_t *best_deg;
	double *best_off;
	sl_plan_t *best;
	double best_ms;
	double best_mean; /* mean rank finish of the best plan */
	int best_widen;   /* the best plan's rings were widened to whole nodes */
	int best_riders;  /* the best plan was built with riders */
	int64_t share;
	int64_t limit;      /* work the builds may reach: the limit less the fallbacks' */
	int64_t build_cost; /* most units one build (placement and packing) charged */
} search_t;

/* Work units fallback k (fallbacks[]) is charged for scoring this batch. */
static int64_t fallback_units(size_t k, const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n)
{
	int64_t one = SLUICE_STATIC_UNITS_PER_SEQ * n +
	              SLUICE_STATIC_UNITS_PER_RANK * (int64_t)cost->cl.ranks;
	if (strcmp(fallbacks[k], "static") == 0)
		return one;
	if (strcmp(fallbacks[k], "batch-adaptive") == 0) {
		int64_t longest = 0;
		for (int64_t i = 0; i < n; i++)
			if (seqs[i].length > longest)
				longest = seqs[i].length;
		int32_t d0 = planner_pow2_holding(cost, longest), dmax = planner_pow2_floor(cost->cl.ranks);
		int64_t degrees = 1;
		for (int64_t d = d0; d0 > 0 && d * 2 <= dmax; d *= 2)
			degrees++;
		return degrees * one;
	}
	if (strcmp(fallbacks[k], "megatron-hybrid-cp") == 0)
		return SLUICE_MEGATRON_UNITS_PER_SEQ * n +
		       SLUICE_STATIC_UNITS_PER_RANK * (int64_t)cost->cl.ranks;
	if (k == SLUICE_FALLBACK_ALIGNED)
		return n * n / 2 + one;
	return (int64_t)((SLUICE_FLEXSP_MS_BASE + SLUICE_FLEXSP_MS_PER_PAIR * (double)n * (double)n) *
	                 (double)SLUICE_WORK_PER_MS);
}

/* Builds, polishes and scores the plan of these degrees (unless built
 * before); keeps it when it is the fastest so far. */
static sl_err try_degrees(search_t *se, const int32_t *deg, const double *off,
                          const planner_sluice_knobs_t *knobs)
{
	planner_sluice_ctx_t *ctx = se->ctx;
	size_t n = (size_t)ctx->n;
	sl_plan_t *cand = NULL;
	for (int u = 0; u < se->nseen; u++)
		if (se->seen_riders[u] == knobs->riders + 2 * knobs->widen &&
		    memcmp(se->seen + (size_t)u * n, deg, sizeof(int32_t) * n) == 0)
			return SL_OK;
	if (se->nseen == SLUICE_MAX_BUILDS || planner_sluice_stopped(ctx))
		return SL_OK;
	/* A build cannot stop halfway (every sequence must be placed): once
	 * there is a plan, one that would take the work past the builds' limit
	 * (as the dearest build so far did) is not started. */
	int64_t emit_units = SLUICE_EMIT_UNITS_PER_SEQ * (int64_t)n +
	                     SLUICE_EMIT_UNITS_PER_RANK * (int64_t)ctx->N;
	if (se->best != NULL && ctx->work + se->build_cost + emit_units > se->limit) {
		ctx->truncated = 1;
		return SL_OK;
	}
	memcpy(se->seen + (size_t)se->nseen * n, deg, sizeof(int32_t) * n);
	se->seen_riders[se->nseen++] = knobs->riders + 2 * knobs->widen;
	/* Each build gets its share of the work; what an earlier one left
	 * unused carries over. */
	int64_t saved = ctx->work_limit;
	int64_t limit = ctx->work + se->share;
	ctx->work_limit = limit < se->limit ? limit : se->limit;
	double t0 = sl_now_ms();
	int64_t w0 = ctx->work;
	sl_err rc = planner_sluice_build(se->st, deg, off, knobs);
	double t1 = sl_now_ms();
	int64_t w1 = ctx->work;
	if (rc == SL_OK)
		rc = planner_sluice_search(se->st, knobs);
	SL_DEBUG(SL_SUB_PLAN, "sluice: build %.2f ms (%lld work), search %.2f ms (%lld work)",
	         t1 - t0, (long long)(w1 - w0), sl_now_ms() - t1, (long long)(ctx->work - w1));
	ctx->work_limit = saved;
	if (w1 - w0 > se->build_cost)
		se->build_cost = w1 - w0;
	if (rc != SL_OK)
		return rc;
	SL_CHECK(planner_sluice_emit(se->st, &cand));
	double ms;
	ctx->work += emit_units;
	rc = planner_plan_timing(cand, se->cost, se->per_rank, &ms);
	if (rc != SL_OK) {
		sl_plan_free(&cand);
		return rc;
	}
	SL_DEBUG(SL_SUB_PLAN, "sluice: build %d (riders %d): %.1f ms, %d wide groups, work %lld",
	         se->nseen, knobs->riders, ms, se->st->nwide, (long long)ctx->work);
	if (ms < se->best_ms - 1e-9) {
		double sum = 0;
		for (int32_t r = 0; r < ctx->N; r++)
			sum += se->per_rank[r];
		se->best_mean = sum / ctx->N - se->cost->prof.grad_sync_ms;
		sl_plan_free(&se->best);
		se->best = cand;
		se->best_ms = ms;
		se->best_widen = knobs->widen;
		se->best_riders = knobs->riders;
		memcpy(se->best_deg, deg, sizeof(int32_t) * n);
		memcpy(se->best_off, off, sizeof(double) * n);
	} else {
		sl_plan_free(&cand);
	}
	return SL_OK;
}

/* Long-dominated: at least half the sequences, or half the tokens, in
 * sequences the LP decides (that need several ranks). By tokens too:
 * code-file-like batches (median 500 tokens, a heavy tail) hold 55-70% of
 * their tokens in a third of their sequences, and there the whole-node
 * rings win by 5% (usr-include, docs/perf.md); Wikipedia batches hold
 * 18-54% and are not affected. */
static int is_long_dominated(const planner_sluice_ctx_t *ctx, const planner_sluice_lp_t *lp)
{
	double long_tok = 0, all_tok = 0;
	for (int32_t j = 0; j < lp->nlong; j++)
		long_tok += (double)ctx->seqs[lp->seq[j]].length;
	for (int64_t i = 0; i < ctx->n; i++)
		all_tok += (double)ctx->seqs[i].length;
	return 2 * (int64_t)lp->nlong >= ctx->n || 2 * long_tok >= all_tok;
}

/* Builds the plans of the LP's roundings (try_degrees keeps the fastest in
 * se->best): deg and off are scratch of n entries. */
static sl_err build_all(search_t *se, const planner_sluice_lp_t *lp, int long_dominated,
                        int32_t *deg, double *off)
{
	planner_sluice_ctx_t *ctx = se->ctx;
	int64_t n = ctx->n;
	int extra = n <= SLUICE_EXTRA_MAX_SEQS;
	planner_sluice_knobs_t with_riders = {.riders = 1, .offload = 1, .merge = 1},
	                       no_riders = {.riders = 0, .offload = 1, .merge = 1};
	/* The LP's degrees first (riders may fill a ring up to the decision
	 * LP's step). Its optimum is below what a plan reaches, so a long
	 * sequence may then take fewer ranks for the same step, or, when its
	 * ring is what sets the step, more: re-round for the best plan's mean
	 * rank finish (the level a balanced plan reaches) and for its step,
	 * until the degrees stop changing. */
	with_riders.level = lp->t_star * 1.05;
	for (int which = 0; which < 2; which++) {
		planner_sluice_lp_round(ctx, lp, which, deg, off);
		SL_CHECK(try_degrees(se, deg, off, &with_riders));
		/* Long-dominated batches: few short sequences are left to fill a
		 * ring's spare memory, and rings of mixed widths leave ranks
		 * idle, so also build the plan whose rings take whole nodes,
		 * shared by several long sequences (merge_rings). */
		if (long_dominated) {
			planner_sluice_knobs_t wide = with_riders;
			wide.widen = 1;
			SL_CHECK(try_degrees(se, deg, off, &wide));
		}
		/* ... and both without riders: on long-dominated batches the
		 * riders' greedy fill (before stage 1) costs 3-7% where rings
		 * are many (usr-include), the search does better with the short
		 * sequences free. */
		if (long_dominated && extra) {
			planner_sluice_knobs_t nr = no_riders;
			nr.level = with_riders.level;
			SL_CHECK(try_degrees(se, deg, off, &nr));
			nr.widen = 1;
			SL_CHECK(try_degrees(se, deg, off, &nr));
		}
	}
	for (int it = 0; it < SLUICE_REFINE && se->best != NULL; it++) {
		int before = se->nseen;
		double g = se->cost->prof.grad_sync_ms;
		double targets[2] = {se->best_mean, se->best_ms - g};
		for (int z = 0; z < 2; z++) {
			planner_sluice_lp_target(ctx, lp, targets[z], deg, off);
			/* the best plan's knobs, at the new degrees */
			planner_sluice_knobs_t k = se->best_riders ? with_riders : no_riders;
			k.level = targets[z];
			k.widen = se->best_widen;
			SL_CHECK(try_degrees(se, deg, off, &k));
		}
		if (se->nseen == before)
			break;
	}
	if (se->best != NULL) {
		memcpy(deg, se->best_deg, sizeof(int32_t) * (size_t)n);
		memcpy(off, se->best_off, sizeof(double) * (size_t)n);
		no_riders.level = se->best_ms;
		no_riders.widen = se->best_widen;
		SL_CHECK(try_degrees(se, deg, off, &no_riders));
	}
	for (int z = 0; z < SLUICE_LADDER && extra && se->best != NULL; z++) {
		double lad_lo = lp->t_star, lad_hi = se->best_ms - se->cost->prof.grad_sync_ms;
		double tg = lad_lo + (lad_hi - lad_lo) * (z + 0.5) / SLUICE_LADDER;
		planner_sluice_lp_target(ctx, lp, tg, deg, off);
		planner_sluice_knobs_t k = se->best_riders ? with_riders : no_riders;
		k.level = tg;
		k.widen = se->best_widen;
		SL_CHECK(try_degrees(se, deg, off, &k));
		/* small batches: each rung without riders too (riders filled
		 * first can spoil the rung's degrees: 8 ranks, 64 Wikipedia
		 * sequences 3,312 -> 3,218 ms; cheap at this size, while at 512
		 * sequences it would add half to the planning time) */
		if (k.riders && n <= SLUICE_LADDER_BOTH_MAX_SEQS) {
			k.riders = 0;
			SL_CHECK(try_degrees(se, deg, off, &k));
		}
	}
	return SL_OK;
}

sl_err planner_policy_sluice(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                             const sl_policy_opts_t *opts, sl_plan_t **out)
{
	static const sl_policy_opts_t defaults;
	planner_sluice_ctx_t ctx;
	planner_sluice_lp_t lp;
	planner_sluice_state_t st;
	search_t se;
	sl_err rc = SL_OK;
	sl_plan_t *cand = NULL;
	int32_t *deg = NULL;
	double *off = NULL;
	const char *winner = NULL;

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
	memset(&se, 0, sizeof(se));
	int default_limit = 0;
	SL_CHECK(ctx_init(&ctx, cost, seqs, n, opts, &default_limit));
	se.ctx = &ctx;
	se.st = &st;
	se.cost = cost;
	se.best_ms = INFINITY;
	deg = malloc(sizeof(int32_t) * (size_t)n);
	off = malloc(sizeof(double) * (size_t)n);
	se.per_rank = malloc(sizeof(double) * (size_t)ctx.N);
	se.seen = malloc(sizeof(int32_t) * (size_t)n * SLUICE_MAX_BUILDS);
	se.best_deg = malloc(sizeof(int32_t) * (size_t)n);
	se.best_off = malloc(sizeof(double) * (size_t)n);
	if (deg == NULL || off == NULL || se.per_rank == NULL || se.seen == NULL ||
	    se.best_deg == NULL || se.best_off == NULL) {
		rc = sl_seterr(SL_ENOMEM, "sluice: out of memory for %lld sequences", (long long)n);
		goto out;
	}
	/* Below this much work a request gets `static`'s plan: one build of
	 * our own would overrun the limit by more than twice. */
	int64_t build_floor = SLUICE_BUILD_UNITS_PER_SEQ * (int64_t)n +
	                      SLUICE_BUILD_UNITS_PER_RANK * (int64_t)ctx.N;
	int floor_only = ctx.work_limit < build_floor;
	/* The fallbacks' predicted cost, set aside from the start (those over
	 * a share of the limit are not scored). flexsp's is set aside on
	 * every batch where it may be scored. */
	int64_t fb_units[sizeof(fallbacks) / sizeof(fallbacks[0])], reserve = 0;
	/* fb_dear: not scored because the limit cannot pay for it (the search
	 * counts as cut only where it would have been scored) */
	int fb_on[sizeof(fallbacks) / sizeof(fallbacks[0])];
	int fb_dear[sizeof(fallbacks) / sizeof(fallbacks[0])];
	int long_dominated = 0;
	for (size_t k = 0; k < sizeof(fallbacks) / sizeof(fallbacks[0]); k++) {
		fb_units[k] = fallback_units(k, cost, seqs, n);
		fb_on[k] = sl_policy_find(fallbacks[k]) != NULL &&
		           !(k == SLUICE_FALLBACK_FLEXSP && n > SLUICE_FLEXSP_MAX_SEQS) &&
		           !(k == SLUICE_FALLBACK_ALIGNED && cost->cl.ranks > SLUICE_ALIGNED_MAX_RANKS);
		fb_dear[k] = fb_on[k] && fb_units[k] > ctx.work_limit / SLUICE_FALLBACK_SHARE;
		if (fb_dear[k])
			fb_on[k] = 0;
		if (fb_on[k])
			reserve += fb_units[k];
	}
	/* The polish's budget is set aside too (the builds may not spend it). */
	int polish = n <= SLUICE_POLISH_MAX_SEQS && ctx.N <= SLUICE_POLISH_MAX_RANKS;
	if (polish)
		reserve += SLUICE_POLISH_UNITS;
	/* The default budget is the search's; the fallbacks' and the polish's
	 * come on top. A caller's limit bounds everything. */
	if (default_limit)
		ctx.work_limit += reserve;
	se.limit = ctx.work_limit - reserve;
	if (!floor_only) {
		double tl0 = sl_now_ms();
		int64_t wl0 = ctx.work;
		SL_CHECK_GOTO(planner_sluice_lp_solve(&ctx, &lp), rc, out);
		SL_DEBUG(SL_SUB_PLAN,
		         "sluice: LP %.2f ms (%lld work; %d long sequences, %lld candidates)",
		         sl_now_ms() - tl0, (long long)(ctx.work - wl0), lp.nlong,
		         (long long)lp.cand_off[lp.nlong]);
		SL_CHECK_GOTO(planner_sluice_orders(&ctx), rc, out);
		SL_CHECK_GOTO(planner_sluice_state_init(&st, &ctx), rc, out);
		se.share = se.limit / SLUICE_BUILD_SHARES;
		long_dominated = is_long_dominated(&ctx, &lp);
		SL_CHECK_GOTO(build_all(&se, &lp, long_dominated, deg, off), rc, out);
	} else {
		ctx.truncated = 1;
	}
	int built = se.nseen;

	/* The baselines as a safety net. */
	for (size_t k = 0; k < sizeof(fallbacks) / sizeof(fallbacks[0]); k++) {
		const sl_policy_t *pol = sl_policy_find(fallbacks[k]);
		/* once stopped, the plan in hand is the answer (none: the caller's
		 * fallback answers); with no plan at all `static` answers whatever
		 * its cost */
		int forced = se.best == NULL && strcmp(fallbacks[k], "static") == 0;
		if (pol == NULL || planner_sluice_stopped(&ctx) ||
		    (k == SLUICE_FALLBACK_FLEXSP && !(se.best_widen && long_dominated)))
			continue;
		if (!fb_on[k] && !forced) {
			if (fb_dear[k])
				ctx.truncated = 1;
			continue;
		}
		if (!forced && ctx.work + fb_units[k] > ctx.work_limit) {
			ctx.truncated = 1; /* the builds overran their share */
			continue;
		}
		ctx.work += fb_units[k];
		double tf0 = sl_now_ms();
		sl_policy_opts_t fo = *opts;
		if (k == SLUICE_FALLBACK_FLEXSP) {
			fo.work_limit = SLUICE_FLEXSP_LPS;
			fo.time_limit_ms = 0;
		}
		if (pol->fn(cost, seqs, n, &fo, &cand) != SL_OK) {
			sl_clearerr();
			continue;
		}
		double ms;
		SL_CHECK_GOTO(planner_plan_timing(cand, cost, se.per_rank, &ms), rc, out);
		SL_DEBUG(SL_SUB_PLAN, "sluice: fallback %s: %.1f ms (planned in %.2f ms, %lld units)",
		         pol->name, ms, sl_now_ms() - tf0, (long long)fb_units[k]);
		if (ms < se.best_ms - 1e-9) {
			sl_plan_free(&se.best);
			se.best = cand;
			cand = NULL;
			se.best_ms = ms;
			winner = pol->name;
		} else {
			sl_plan_free(&cand);
		}
	}
	if (se.best == NULL && ctx.stopped) {
		rc = sl_seterr(SL_ETIMEOUT, "sluice: stopped by the deadline before any plan was built");
		goto out;
	}
	if (se.best == NULL) {
		rc = sl_seterr(SL_EINTERNAL, "sluice: no candidate plan was built");
		goto out;
	}
	/* Small requests: the polish (sluice_polish.c), from the best plan so
	 * far, whoever built it. */
	if (polish && !floor_only && !planner_sluice_stopped(&ctx)) {
		int64_t lim = ctx.work + SLUICE_POLISH_UNITS;
		SL_CHECK_GOTO(planner_sluice_polish(&ctx, se.best,
		                                    lim < ctx.work_limit ? lim : ctx.work_limit, &cand),
		              rc, out);
		double ms = INFINITY;
		if (cand != NULL)
			SL_CHECK_GOTO(planner_plan_timing(cand, cost, se.per_rank, &ms), rc, out);
		SL_DEBUG(SL_SUB_PLAN, "sluice: polish %.1f -> %.1f ms, work %lld", se.best_ms, ms,
		         (long long)ctx.work);
		if (ms < se.best_ms - 1e-9) {
			sl_plan_free(&se.best);
			se.best = cand;
			cand = NULL;
			se.best_ms = ms;
			winner = NULL; /* ours now, whichever plan it started from */
		} else {
			sl_plan_free(&cand);
		}
	}
	sl_plan_t *best = se.best;
	snprintf(best->policy, sizeof(best->policy), "sluice");
	best->lp_bound_ms = floor_only ? NAN : lp.bound_ms;
	best->search_truncated = ctx.truncated || ctx.stopped;
	best->work_units = ctx.work;
	best->note[0] = '\0';
	if (ctx.stopped)
		snprintf(best->note, sizeof(best->note), "search cut by the deadline (%lld units)%s%s",
		         (long long)ctx.work, winner ? "; kept the plan of " : "",
		         winner ? winner : "");
	else if (floor_only)
		snprintf(best->note, sizeof(best->note),
		         "work limit (%lld units) below one build (%lld); kept the plan of static",
		         (long long)ctx.work_limit, (long long)build_floor);
	else if (ctx.truncated)
		snprintf(best->note, sizeof(best->note),
		         "search cut by the work limit (%lld units)%s%s", (long long)ctx.work_limit,
		         winner ? "; kept the plan of " : "", winner ? winner : "");
	else if (winner)
		snprintf(best->note, sizeof(best->note), "kept the plan of %s (faster on this batch)",
		         winner);
	SL_DEBUG(SL_SUB_PLAN,
	         "sluice: %d plans built, step %.1f ms, LP bound %.1f ms (decision %.1f), work %lld",
	         built, se.best_ms, lp.bound_ms, lp.t_star, (long long)ctx.work);
	*out = best;
	se.best = NULL;
out:
	sl_plan_free(&se.best);
	sl_plan_free(&cand);
	planner_sluice_state_fini(&st);
	planner_sluice_lp_fini(&lp);
	ctx_fini(&ctx);
	free(deg);
	free(off);
	free(se.per_rank);
	free(se.seen);
	free(se.best_deg);
	free(se.best_off);
	return rc;
}
