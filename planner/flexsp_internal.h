/* sluice planner: internals of the `flexsp` policy, our reproduction of
 * FlexSP (Wang et al., "FlexSP: Accelerating Large Language Model Training
 * via Flexible Sequence Parallelism", ASPLOS 2025) as a peer baseline.
 *
 * The method (paper section 4-5): the batch is sorted by length and cut
 * into contiguous micro-batches (the "sequence blaster"); each micro-batch
 * is solved as a MILP that splits the N ranks into power-of-two Ulysses
 * groups and assigns length buckets to them, minimising the slowest group.
 * Here the MILP is solved per group-size configuration (n_d groups of size
 * d, sum d * n_d = N): the group-symmetric MILP aggregated by size is an LP
 * per configuration, rounded into groups by longest-processing-time packing
 * and polished by moves and swaps (see flexsp_mb.c for why). */
#ifndef SLUICE_PLANNER_FLEXSP_INTERNAL_H
#define SLUICE_PLANNER_FLEXSP_INTERNAL_H

#include <stdint.h>

#include "planner.h"

/* Power-of-two group sizes 1 .. 2^(FX_MAXDEG-1) cover SL_MAX_RANKS. */
#define FX_MAXDEG 17
/* Most buckets per micro-batch (the paper uses a handful). */
#define FX_MAX_BUCKETS 16

/* Sorted sequences with their per-size costs, shared by every micro-batch. */
typedef struct fx_ctx {
	const sl_cost_t *cost;
	int32_t N;
	int32_t ndeg; /* sizes deg[0] = 1 < deg[1] = 2 < ... <= N */
	int32_t deg[FX_MAXDEG];
	int64_t n;               /* sequences handled by the MILP (resident on some size) */
	int32_t *idx;            /* [n] index into the request, longest first */
	int64_t *len;            /* [n] their lengths */
	double *t;               /* [n * ndeg] time on deg[j] ranks (f = 0), INFINITY if it
	                            does not fit resident */
	double *res;             /* [n * ndeg] resident tokens per rank p / d */
	int32_t *jmin;           /* [n] smallest size index that holds it */
	int one_node[FX_MAXDEG]; /* whether an aligned group of deg[j] stays on one node */
	/* configurations: cfg[c * ndeg + j] groups of size deg[j] */
	int64_t ncfg;
	int32_t *cfg;
	/* search budget (deterministic) and the optional wall-clock limit */
	int64_t lp_budget, lp_used, lp_iters;
	int64_t mb_lp_cap;   /* LPs of the bound-ordered walk per micro-batch */
	int64_t cfg_cap_hit; /* configurations dropped by the enumeration cap */
	const sl_policy_opts_t *opts; /* deadline_ms, cancel: the wall-clock stops */
	int time_cut;        /* the deadline or cancel flag cut the search (sticky) */
	int budget_cut;      /* the work limit cut the search */
} fx_ctx_t;

/* 1 once the request's deadline or cancel flag stops the search (sticky:
 * sets ctx->time_cut). */
static inline int planner_flexsp_stopped(fx_ctx_t *ctx)
{
	if (!ctx->time_cut && ctx->opts != NULL && sl_policy_stopped(ctx->opts))
		ctx->time_cut = 1;
	return ctx->time_cut;
}

/* One solved micro-batch: sequences [lo, hi) of the sorted order, groups
 * with their sizes and predicted times, and each sequence's group. */
typedef struct fx_mb {
	int64_t lo, hi;
	int32_t ngroups;
	int32_t *gdeg; /* [ngroups] ranks */
	double *gms;   /* [ngroups] beta + sum of sequence times */
	int32_t *grp;  /* [hi - lo] group of sequence lo + k */
	double ms;     /* slowest group */
	int64_t configs_tried;
} fx_mb_t;

/* Splits m lengths sorted in decreasing order into nb contiguous buckets
 * minimising the padding sum over buckets of (first length * count - sum of
 * lengths), by dynamic programming. start[b] is bucket b's first index
 * (start[0] = 0); returns the padding in tokens, or -1 on ENOMEM. */
int64_t planner_flexsp_buckets(const int64_t *len, int64_t m, int32_t nb, int64_t *start);

/* FlexSP's bucket count rule: grows nb from 1 until the padded tokens are
 * within half the gap between the room (tokens the ranks can hold) and the
 * real tokens, or nb reaches max_nb (or m). Fills start[0 .. *nb) and
 * returns the padding, or -1 on ENOMEM. */
int64_t planner_flexsp_bucketize(const int64_t *len, int64_t m, double room, int32_t max_nb,
                                 int64_t *start, int32_t *nb);

/* Enumerates every configuration sum_j deg[j] * n_j = N into ctx->cfg, at
 * most cap of them (counted in ctx->cfg_cap_hit beyond). */
sl_err planner_flexsp_configs(fx_ctx_t *ctx, int64_t cap);

/* Solves the micro-batch [lo, hi) of ctx's sorted order: the best plan over
 * all configurations that the budget allows. On success *mb owns arrays
 * (planner_flexsp_mb_fini). SL_EINFEASIBLE when no configuration holds the
 * micro-batch's tokens. */
sl_err planner_flexsp_solve_mb(fx_ctx_t *ctx, int64_t lo, int64_t hi, fx_mb_t *mb);
void planner_flexsp_mb_fini(fx_mb_t *mb);

#endif
