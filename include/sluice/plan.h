/* sluice: a plan (sluice.plan/1): ordered slots of disjoint groups, each
 * group running some sequences on a ring of ranks. Flat arrays so a plan is
 * cheap to build, copy and serialise. */
#ifndef SLUICE_PLAN_H
#define SLUICE_PLAN_H

#include <stdint.h>
#include <stdio.h>

#include "sluice/err.h"
#include "sluice/profile.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_PLAN_FORMAT "sluice.plan/1"

/* A request sequence: the caller's id and its length in tokens. */
typedef struct sl_seq {
	int64_t id;
	int64_t length;
} sl_seq_t;

/* One sequence run by a group: index into plan->seqs, offload fraction. */
typedef struct sl_item {
	int32_t seq;
	double offload;
} sl_item_t;

/* A group of one slot: ranks[rank_off .. rank_off + nranks) of plan->ranks
 * in ring order, items[item_off .. item_off + nitems) of plan->items. */
typedef struct sl_group {
	int32_t slot;
	int32_t nranks;
	int64_t rank_off;
	int32_t nitems;
	int64_t item_off;
} sl_group_t;

/* A slot: groups[group_off .. group_off + ngroups). */
typedef struct sl_slot {
	int64_t group_off;
	int32_t ngroups;
} sl_slot_t;

/* One sequence's piece on one rank (zigzag: ring position i of d holds
 * chunks i and 2d-1-i of the padded sequence; begin/end are token offsets
 * clipped to the real length; with d == 1 chunk 0 is the whole sequence). */
typedef struct sl_shard {
	int32_t seq; /* index into the plan's sequences */
	int64_t id, length, padded, chunk_tokens;
	int32_t chunk[2];
	int64_t begin[2], end[2];
	double offload;
} sl_shard_t;

/* The zigzag layout, derived here and only here (work orders, workers,
 * kernels and their checks all call it): the sequence of s tokens is padded
 * to sl_cost_padded(s, d), cut into 2d chunks of chunk_tokens, and ring
 * position pos of d holds chunks pos and 2d-1-pos (d == 1: chunk 0 is the
 * whole sequence, chunk[1] = -1, begin[1] = end[1] = s). Fills every field
 * but seq, id and offload. */
void sl_zigzag_shard(int64_t s, int32_t d, int32_t pos, sl_shard_t *out);

typedef struct sl_plan {
	char policy[32];
	char profile[SL_PROFILE_NAME_MAX];
	int32_t ranks;
	int32_t ranks_per_node;
	int64_t cap_tokens;

	int64_t nseqs;
	sl_seq_t *seqs;

	int32_t nslots, slots_cap;
	sl_slot_t *slots;
	int64_t ngroups, groups_cap;
	sl_group_t *groups;
	int64_t nranks_used, ranks_cap;
	int32_t *rank_pool;
	int64_t nitems, items_cap;
	sl_item_t *items;

	/* predicted (reference cost model), filled by sl_plan_evaluate */
	double step_ms;
	double ideal_ms;
	double *per_rank_ms; /* [ranks] */
	/* extras a policy may set (NAN when unknown) */
	double lp_bound_ms;   /* lower bound proven by the planner's LP */
	double planner_ms;    /* wall time spent planning (not part of JSON, varies) */
	int search_truncated; /* 1 when a limit cut the search short */
	int64_t work_units;   /* work the policy charged to its work limit (deterministic;
	                         0 for policies without one; not part of JSON) */
	char note[128];       /* free text written to the plan's "note", or "" */
	/* ids that a parsed plan's groups named but its request lacks: an item
	 * with seq <= -1 refers to unknown_ids[-seq - 1] (sl_plan_validate
	 * reports them). Empty for plans built by policies. */
	int64_t nunknown, nunknown_cap;
	int64_t *unknown_ids;
} sl_plan_t;

/* Allocates an empty plan for this request (copies seqs). Caller frees with
 * sl_plan_free. Returns NULL on ENOMEM. */
sl_plan_t *sl_plan_new(const char *policy, const char *profile, int32_t ranks,
                       int32_t ranks_per_node, int64_t cap_tokens, const sl_seq_t *seqs,
                       int64_t nseqs);
/* Frees a plan and nulls the caller's pointer. */
void sl_plan_free(sl_plan_t **plan);
/* Deep copy; NULL on ENOMEM. */
sl_plan_t *sl_plan_dup(const sl_plan_t *plan);
/* Drops every slot, group and item (keeps the request). */
void sl_plan_clear(sl_plan_t *plan);

/* Builder: appends a slot; later groups go into it. */
sl_err sl_plan_add_slot(sl_plan_t *plan);
/* Appends a group with these ranks (copied, ring order) to the last slot. */
sl_err sl_plan_add_group(sl_plan_t *plan, const int32_t *ranks, int32_t nranks);
/* Appends sequence index seq (into plan->seqs) to the last group. */
sl_err sl_plan_add_item(sl_plan_t *plan, int32_t seq, double offload);

/* A group's ranks and items; NULL when the plan holds none at all (adding
 * an offset to a NULL pointer is undefined, even a zero one). */
static inline const int32_t *sl_group_ranks(const sl_plan_t *p, const sl_group_t *g)
{
	return p->rank_pool != NULL ? p->rank_pool + g->rank_off : NULL;
}
static inline const sl_item_t *sl_group_items(const sl_plan_t *p, const sl_group_t *g)
{
	return p->items != NULL ? p->items + g->item_off : NULL;
}

/* Recomputes predicted.step_ms, per_rank_ms and ideal_ms under the
 * reference model. Does not check validity (see sl_plan_validate). */
sl_err sl_plan_evaluate(sl_plan_t *plan, const sl_cost_t *cost);

/* Time of one group execution under the reference model. */
double sl_plan_group_ms(const sl_plan_t *plan, const sl_group_t *g, const sl_cost_t *cost);
/* The part of sl_plan_group_ms that is communication not hidden behind
 * compute (sl_cost_seq_comm_ms summed over the group's sequences). */
double sl_plan_group_comm_ms(const sl_plan_t *plan, const sl_group_t *g, const sl_cost_t *cost);

/* The reference timing rule (cost-model.md, "A group execution, a slot, a
 * step"), the one every step time comes from: every rank walks the slots in
 * order, a group starts when all its ranks are free. Writes each group's
 * start and time (start_ms, group_ms: plan->ngroups entries, either may be
 * NULL) and each rank's ready time after its last group, before grad sync
 * (ready_ms: plan->ranks entries). Ranks outside [0, ranks) are skipped
 * (sl_plan_validate reports them). */
void sl_plan_timeline(const sl_plan_t *plan, const sl_cost_t *cost, double *start_ms,
                      double *group_ms, double *ready_ms);

/* Checks every rule of plan-format.md and the memory rule of cost-model.md.
 * Calls report(arg, message) once per violation (when report is non-NULL)
 * and returns the number of violations. */
typedef void (*sl_violation_fn)(void *arg, const char *message);
int64_t sl_plan_validate(const sl_plan_t *plan, const sl_cost_t *cost, sl_violation_fn report,
                         void *arg);

/* JSON (plan-format.md). The writer is deterministic: the same plan gives
 * the same bytes. sl_plan_to_json returns a malloc'd string. */
sl_err sl_plan_write_json(const sl_plan_t *plan, FILE *f);
char *sl_plan_to_json(const sl_plan_t *plan);
/* Parses a plan; structural errors (bad JSON, missing fields, wrong types)
 * fail with SL_EFORMAT naming the field; rule violations do not fail here. */
sl_err sl_plan_parse_json(const char *text, const char *what, sl_plan_t **out);
sl_err sl_plan_read_json_file(const char *path, sl_plan_t **out);

#ifdef __cplusplus
}
#endif
#endif
