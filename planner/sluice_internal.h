/* sluice planner: internals of the default `sluice` policy, shared by
 * planner/sluice*.c. The policy combines
 *  - an LP over (sequence, group size) pairs that picks each long sequence's
 *    degree and offload and proves a lower bound on the step (sluice_lp.c);
 *  - ByteScale's dynamic mesh (Ge et al., "ByteScale", 2025, sec. 4-5): a
 *    sequence runs on the fewest ranks that hold it (any count), short ones
 *    stay whole and are packed per rank, rings keep to one node where they
 *    can, selective offloading trades PCIe time for ranks or micro-batches,
 *    and ranks run different numbers of micro-batches (sluice_mesh.c);
 *  - Hydraulis' two-stage assignment (Li et al., "Hydraulis", 2024, sec. 5):
 *    sequences to ranks balancing predicted time, then each rank's sequences
 *    into micro-batches (sluice_pack.c);
 *  - a local search with exact incremental costs (sluice_search.c).
 * Every candidate plan is scored under the reference timing rule
 * (planner_plan_timing) before one is kept. */
#ifndef SLUICE_PLANNER_SLUICE_INTERNAL_H
#define SLUICE_PLANNER_SLUICE_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "planner.h"

/* The request and the model constants every stage reads. Built once per
 * request by planner_sluice_ctx_init; read-only afterwards except the work
 * counter, which all stages charge so that one deterministic budget bounds
 * the whole search. */
typedef struct planner_sluice_ctx {
	const sl_cost_t *cost;
	const sl_seq_t *seqs;
	int32_t n;      /* sequences */
	int32_t N, G;   /* ranks, ranks per node */
	int32_t nodes;  /* ceil(N / G) */
	double cap;     /* tokens per rank */
	double beta;    /* ms per group execution */
	double c_off;   /* ms per token offloaded on one rank (act / 2^20 / pcie) */
	double fmax;    /* largest offload fraction the profile allows */
	double *t1;     /* [n] time alone on one rank without offload */
	int64_t *offcap; /* [n] tokens of it that may be offloaded on one rank */
	/* The request's sequences in the orders every build sorts subsets of,
	 * sorted once (planner_sluice_orders): a subset filtered from one of
	 * them comes out exactly as sorting it would (the orders are total). */
	int32_t *by_t;    /* [n] stage 1's: t1, then length, longest first; then index */
	int32_t *by_len;  /* [n] longest first, ties by the lower index */
	int32_t *len_pos; /* [n] each sequence's place in by_len */
	int64_t work;   /* work units spent so far (deterministic) */
	int64_t work_limit;
	int truncated;  /* 1 once the work limit (or a stop) cut a stage short */
	const sl_policy_opts_t *opts; /* the request's limits: deadline_ms, cancel */
	int stopped;        /* 1 once opts' deadline or cancel stopped the search */
	int64_t next_check; /* work count at which the clock is read next */
	int milp_left;  /* exact micro-batch MILPs still allowed for this request */
	int milp_used;  /* how many were solved */
} planner_sluice_ctx_t;

/* Work units between two reads of the clock for the deadline (well under a
 * millisecond of search at SLUICE_WORK_PER_MS). */
#define SLUICE_STOP_CHECK_WORK ((int64_t)50 * 1000)

/* 1 once the request's deadline or cancel flag stops the search (sticky).
 * The cancel flag is read every call, the clock every SLUICE_STOP_CHECK_WORK
 * units of work, so the check stays cheap in inner loops. */
static inline int planner_sluice_stopped(planner_sluice_ctx_t *ctx)
{
	if (ctx->stopped)
		return 1;
	if (ctx->opts == NULL)
		return 0;
	if (ctx->opts->cancel != NULL &&
	    atomic_load_explicit(ctx->opts->cancel, memory_order_relaxed))
		ctx->stopped = 1;
	else if (ctx->opts->deadline_ms > 0 && ctx->work >= ctx->next_check) {
		ctx->next_check = ctx->work + SLUICE_STOP_CHECK_WORK;
		ctx->stopped = sl_policy_stopped(ctx->opts);
	}
	return ctx->stopped;
}

/* Whether a stage may still spend work units: 0 once the work limit is
 * spent or the request's deadline/cancel stopped the search (either marks
 * it truncated). Every loop that can run long charges ctx->work. */
static inline int planner_sluice_budget_ok(planner_sluice_ctx_t *ctx)
{
	if (ctx->work < ctx->work_limit && !planner_sluice_stopped(ctx))
		return 1;
	ctx->truncated = 1;
	return 0;
}

/* One way to run a long sequence, a column of one of the two LPs. A
 * column of the bound LP may stand for several degrees of nearly equal
 * work (t and w the least of them: a relaxation, so the bound stays
 * valid); d and f then name the usable one of least work, or d <= 0 when
 * none of them is usable. Columns of the decision LP are real degrees. */
typedef struct planner_sluice_cand {
	int32_t d;
	double f;    /* least offload that fits on d ranks */
	double t;    /* time of the sequence on d ranks (offload included) */
	double w;    /* least rank-ms it costs: d t + beta (1 - f) p / cap (the bound) */
	double wd;   /* rank-ms our plans pay for it: as w when short sequences can ride
	                in the group's spare memory (plus their overhead), else d (t + beta) */
	double x;    /* value in the decision LP */
	double xb;   /* value in the bound LP */
	int bound;   /* a column of the bound LP */
	int dec;     /* a column of the decision LP */
	double w0_, w_usable_; /* scratch of candidate generation */
} planner_sluice_cand_t;

/* The LP's view of a batch: the sequences it decides (the rest run on one
 * rank), their candidate degrees, the optimum and the bound. */
typedef struct planner_sluice_lp {
	int32_t nlong;
	int32_t *seq;        /* [nlong] sequence index */
	int64_t *cand_off;   /* [nlong + 1] into cand */
	planner_sluice_cand_t *cand;
	double t_star;       /* decision LP optimum (ms, without grad sync) */
	double bound_ms;     /* lower bound on the step: bound LP optimum + grad_sync */
	int solved;          /* 0 when the LP failed and only the closed-form bound is known */
} planner_sluice_lp_t;

/* The LP may spend 1 / SLUICE_LP_SHARE of the work limit costing every
 * degree of each long length; the rest get two cheap columns. */
#define SLUICE_LP_SHARE 4

/* Builds and solves the LP; fills *lp (release with planner_sluice_lp_fini).
 * Fails only on ENOMEM; an LP failure falls back to the per-sequence
 * bounds (lp->solved = 0). */
sl_err planner_sluice_lp_solve(planner_sluice_ctx_t *ctx, planner_sluice_lp_t *lp);
void planner_sluice_lp_fini(planner_sluice_lp_t *lp);

/* Rounds an LP to degrees: every sequence gets deg[i] and off[i]; each
 * long sequence takes the usable candidate of largest value in the decision
 * LP (which == 0) or the bound LP (which == 1) among those that finish
 * within 10% of that LP's T (the fastest usable one when none does). */
void planner_sluice_lp_round(const planner_sluice_ctx_t *ctx, const planner_sluice_lp_t *lp,
                             int which, int32_t *deg, double *off);
/* Degrees for a step target: each long sequence takes the candidate our
 * plans pay least for (wd) among those that finish within target_ms
 * (beta + t <= target), the fastest when none does. */
void planner_sluice_lp_target(const planner_sluice_ctx_t *ctx, const planner_sluice_lp_t *lp,
                              double target_ms, int32_t *deg, double *off);

/* A multi-rank ("wide") group: a long sequence (lead) on d ranks plus short
 * sequences riding in its spare memory. Riders may overfill it like a
 * single-rank micro-batch: their excess per rank is offloaded. */
typedef struct planner_sluice_wide {
	int32_t lead;
	int32_t d;
	double off;       /* lead's offload */
	int one_node;
	int ride;         /* filled with riders up front (cheap node-local ring) */
	int open;         /* may take riders at all (lead not offloaded): a ring
	                     that would idle till the step takes them even when
	                     its communication makes them dear */
	int final;        /* the last wide group of each of its ranks */
	int64_t rank_off; /* ranks in ring order: st->wide_ranks[rank_off .. + d) */
	double res;       /* tokens per rank of its sequences before offload */
	double offcap;    /* tokens per rank its riders may offload */
	double sum_t;     /* sum of its sequences' times (lead's offload included) */
	double start, end;
} planner_sluice_wide_t;

/* A single-rank micro-batch. Sequences over cap tokens in total are made to
 * fit by offloading the excess (cost c_off per token). */
typedef struct planner_sluice_bin {
	int32_t rank;
	int32_t count;
	int64_t tokens;
	int64_t offcap;   /* tokens its sequences may offload in total */
	double sum_t;     /* sum of t1 */
	int32_t head;     /* first sequence (linked by st->next) */
	int32_t rnext;    /* next bin of the same rank, -1 at the end */
} planner_sluice_bin_t;

/* A plan under construction: wide groups in list-scheduling order (run
 * first), then each rank's own micro-batches. */
typedef struct planner_sluice_state {
	planner_sluice_ctx_t *ctx;
	int32_t nwide;
	planner_sluice_wide_t *wide;
	int32_t *wide_ranks;
	int32_t nbins, bins_cap;
	planner_sluice_bin_t *bins;
	int32_t *rank_head; /* [N] first bin of the rank, -1 when none */
	double *ready;      /* [N] when the rank leaves its last wide group */
	double *fin;        /* [N] finish time of the rank */
	int32_t *where;     /* [n] bin index, or -(w + 1) for wide group w */
	int32_t *next, *prev; /* [n] lists of sequences per bin or wide group */
	int32_t *whead;     /* [nwide] first rider (the lead is not listed) */
} planner_sluice_state_t;

/* Tunables of one build (several are tried per request). */
typedef struct planner_sluice_knobs {
	int riders;     /* let short sequences ride in intra-node wide groups */
	int offload;    /* allow offloading in single-rank micro-batches */
	double level;   /* riders keep a wide group's end at or below this (ms) */
	int merge;      /* long sequences may share a ring (sluice_mesh.c merge_rings) */
	int widen;      /* rings of fewer ranks than a node take the whole node */
} planner_sluice_knobs_t;

/* Sorts the request's sequences into ctx's by_t, by_len and len_pos
 * (allocated here; the caller frees them with the rest of ctx). */
sl_err planner_sluice_orders(planner_sluice_ctx_t *ctx);
/* Sorts m sequence indices longest first, ties by the lower index (as
 * planner_len_key_desc orders them), by their places in ctx->by_len. */
void planner_sluice_sort_len(const planner_sluice_ctx_t *ctx, int32_t *idx, int32_t m);

/* Allocates an empty state for ctx; planner_sluice_state_fini releases it. */
sl_err planner_sluice_state_init(planner_sluice_state_t *st, planner_sluice_ctx_t *ctx);
void planner_sluice_state_fini(planner_sluice_state_t *st);

/* Bin time: beta + sum of t1 + offload of the excess over cap (inline: the
 * local search prices several million candidate bins per request). */
static inline double planner_sluice_bin_ms(const planner_sluice_ctx_t *ctx, int64_t tokens,
                                           double sum_t, int32_t count)
{
	if (count == 0)
		return 0.0;
	double t = ctx->beta + sum_t;
	if ((double)tokens > ctx->cap)
		t += ctx->c_off * ((double)tokens - ctx->cap);
	return t;
}

/* The dynamic mesh: places the wide groups of deg[] (node-local rings, list
 * scheduling), lets short sequences ride, then assigns the rest to ranks
 * (stage 1) and packs them into micro-batches (stage 2). */
sl_err planner_sluice_build(planner_sluice_state_t *st, const int32_t *deg, const double *off,
                            const planner_sluice_knobs_t *knobs);

/* The polish of small requests (sluice_polish.c): a local search over
 * plan's groups (degrees, members, order) with list-scheduled placement,
 * charging ctx's work until it reaches limit (marking ctx truncated only
 * when ctx's own work limit or a stop ended it). *out is the plan it ends at
 * (a new plan, never slower by its own placement than where it started;
 * the caller compares its reference timing with plan's), or NULL when plan
 * does not run each sequence in one group. */
sl_err planner_sluice_polish(planner_sluice_ctx_t *ctx, const sl_plan_t *plan, int64_t limit,
                             sl_plan_t **out);

/* Stage 1 (every sequence not yet placed goes to one rank, balancing
 * predicted finish times, LPT order) and stage 2 (each rank's sequences
 * into micro-batches). */
sl_err planner_sluice_assign(planner_sluice_state_t *st, const planner_sluice_knobs_t *knobs);

/* Stage 2 of one rank: repacks its sequences into the number of
 * micro-batches that costs least (sluice_pack.c). */
sl_err planner_sluice_pack_rank(planner_sluice_state_t *st, int32_t r,
                                const planner_sluice_knobs_t *knobs);

/* Recomputes wide group times, ready and fin from scratch. */
void planner_sluice_retime(planner_sluice_state_t *st);

/* Moves and swaps between micro-batches, ranks and wide groups while the
 * step time drops (sluice_search.c). */
sl_err planner_sluice_search(planner_sluice_state_t *st, const planner_sluice_knobs_t *knobs);

/* Predicted step (max fin + grad sync) of the state. */
double planner_sluice_state_step(const planner_sluice_state_t *st);

/* Writes the state as a plan (slots, groups, offloads). */
sl_err planner_sluice_emit(const planner_sluice_state_t *st, sl_plan_t **out);

/* Time of wide group w: beta + its sequences + offload of the riders'
 * excess over cap; INFINITY when the excess cannot be offloaded. */
double planner_sluice_wide_ms(const planner_sluice_ctx_t *ctx, const planner_sluice_wide_t *w);
/* What rider i would add to wide group w: time, tokens per rank and
 * offloadable tokens per rank. */
void planner_sluice_rider(const planner_sluice_ctx_t *ctx, const planner_sluice_wide_t *w,
                          int32_t i, double *t, double *res, double *offcap);
/* Adds sequence i as a rider of wide group w / takes rider i out. Neither
 * retimes. */
void planner_sluice_wide_add(planner_sluice_state_t *st, int32_t w, int32_t i);
void planner_sluice_wide_remove(planner_sluice_state_t *st, int32_t i);

/* Sequence list helpers over st->next / st->prev. */
void planner_sluice_bin_add(planner_sluice_state_t *st, int32_t b, int32_t i);
void planner_sluice_bin_remove(planner_sluice_state_t *st, int32_t i);
/* Appends an empty bin on rank r; returns its index or -1 on ENOMEM. */
int32_t planner_sluice_bin_new(planner_sluice_state_t *st, int32_t r);

#endif
