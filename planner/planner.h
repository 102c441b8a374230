/* sluice planner: internal header shared by the planner's files. */
#ifndef SLUICE_PLANNER_INTERNAL_H
#define SLUICE_PLANNER_INTERNAL_H

#include "sluice/clock.h"
#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/plan.h"
#include "sluice/policy.h"
#include "sluice/profile.h"

/* Policies (one file each). Each follows sl_policy_fn's contract. */
sl_err planner_policy_static(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                             const sl_policy_opts_t *opts, sl_plan_t **out);
sl_err planner_policy_batch_adaptive(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                                     const sl_policy_opts_t *opts, sl_plan_t **out);
sl_err planner_policy_megatron_hcp(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                                   const sl_policy_opts_t *opts, sl_plan_t **out);
sl_err planner_policy_flexsp(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                             const sl_policy_opts_t *opts, sl_plan_t **out);
sl_err planner_policy_sluice(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                             const sl_policy_opts_t *opts, sl_plan_t **out);
sl_err planner_policy_aligned(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                              const sl_policy_opts_t *opts, sl_plan_t **out);

/* Grows *arr (of elem-sized entries, *cap of them) so that need entries fit,
 * doubling; fails with SL_ENOMEM ("plan: out of memory"), *arr unchanged. */
sl_err planner_grow(void **arr, int64_t *cap, int64_t need, size_t elem);

/* The reference timing of a plan without the ideal: per-rank finish times
 * with grad sync (per_rank has plan->ranks entries) and the step time
 * (sl_plan_timeline plus grad sync). Always SL_OK. */
sl_err planner_plan_timing(const sl_plan_t *plan, const sl_cost_t *cost, double *per_rank,
                           double *step);

/* A sequence's length and index, for sorting sequences longest first. */
typedef struct planner_len_key {
	int64_t len;
	int32_t idx;
} planner_len_key_t;

/* qsort comparator of planner_len_key_t: longest first, ties by lower index. */
int planner_len_key_desc(const void *a, const void *b);
/* A key (a time) and the index of what it belongs to (a rank, a node). */
typedef struct planner_key {
	double key;
	int32_t id;
} planner_key_t;

/* qsort comparator of planner_key_t: smallest key first, ties by lower id. */
int planner_key_asc(const void *a, const void *b);
/* qsort comparator of int64_t, ascending. */
int planner_cmp_i64(const void *a, const void *b);
/* Ascending doubles (NaN compares equal to everything: keep them out). */
int planner_cmp_double(const void *a, const void *b);


#endif
