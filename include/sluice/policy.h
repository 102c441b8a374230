/* sluice: planning policies (the planner's entry point). */
#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H

#include <stdint.h>

#include "sluice/err.h"
#include "sluice/plan.h"
#include "sluice/profile.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_policy_opts {
	int32_t sp;            /* static: fixed SP degree (0 = smallest power of two that holds) */
	int64_t trace_max_len; /* static: longest sequence of the whole trace (0 = this batch's) */
	double time_limit_ms;  /* search time limit (0 = policy default); cuts are reported */
	int64_t work_limit;    /* deterministic search budget (0 = policy default) */
	uint64_t seed;         /* for randomised search; plans stay deterministic per seed */
} sl_policy_opts_t;

/* A policy builds a plan for n sequences; the caller evaluates it. On
 * success *out is a new plan owned by the caller. */
typedef sl_err (*sl_policy_fn)(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                               const sl_policy_opts_t *opts, sl_plan_t **out);

typedef struct sl_policy {
	const char *name;
	const char *summary;
	sl_policy_fn fn;
} sl_policy_t;

size_t sl_policy_count(void);
const sl_policy_t *sl_policy_at(size_t i);
/* NULL when unknown. */
const sl_policy_t *sl_policy_find(const char *name);
/* The default policy's name. */
const char *sl_policy_default(void);

/* Checks the request (1 <= length <= SL_MAX_SEQ_LEN, every sequence
 * placeable, n >= 1), runs the named policy, evaluates the plan under the
 * reference model and fills policy/profile names and planner_ms. Errors
 * name the sequence (id, length) or the policy. opts may be NULL. */
sl_err sl_plan_request(const char *policy, const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                       const sl_policy_opts_t *opts, sl_plan_t **out);

/* Releases the calling thread's solver state (GLPK keeps an environment per
 * thread). Every thread that planned must call it before it exits. */
void sl_planner_thread_end(void);

#ifdef __cplusplus
}
#endif
#endif
