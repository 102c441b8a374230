/* sluice: planning policies (the planner's entry point). */
#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H

#include <stdint.h>
#ifdef __cplusplus
#include <atomic>
typedef std::atomic<int> sl_cancel_t;
#else
#include <stdatomic.h>
typedef atomic_int sl_cancel_t; /* a cancel flag: nonzero = stop now */
#endif

#include "sluice/err.h"
#include "sluice/plan.h"
#include "sluice/profile.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Work units per millisecond of time_limit_ms for policies that count work
 * (`sluice`): a fixed rate, measured on a 2-core x86 box and deliberately
 * not measured at run time, so plans stay deterministic. */
#define SL_WORK_UNITS_PER_MS 150000

/* Limits on planning. time_limit_ms and work_limit are deterministic
 * budgets: every policy counts its own work units (time_limit_ms converts at
 * a fixed, documented rate per policy, never by reading a clock), so the
 * same request with the same limits gives a byte-identical plan on any
 * machine. deadline_ms and cancel are the only wall-clock stops: a policy
 * checks them where it charges work (and GLPK gets the time left), stops,
 * and returns the best valid plan found so far with search_truncated set and
 * a note saying the deadline cut it; only such a plan can depend on the
 * machine. See sl_plan_request for what happens when no plan exists yet. */
typedef struct sl_policy_opts {
	int32_t sp;            /* static: fixed SP degree (0 = smallest power of two that holds) */
	int64_t trace_max_len; /* static: longest sequence of the whole trace (0 = this batch's) */
	double time_limit_ms;  /* deterministic work budget in ms at the policy's fixed rate
	                          (0 = policy default); cuts are reported */
	int64_t work_limit;    /* deterministic search budget in work units (0 = policy default) */
	uint64_t seed;         /* for randomised search; plans stay deterministic per seed */
	double deadline_ms;    /* absolute, on the sl_now_ms() clock: stop planning then
	                          (0 = none); not sent over the wire */
	const sl_cancel_t *cancel; /* stop as soon as *cancel is nonzero (NULL = never); the
	                              request was abandoned: not sent over the wire */
} sl_policy_opts_t;

/* 1 when opts asks planning to stop now: *opts->cancel is set, or
 * opts->deadline_ms is set and has passed. Cheap enough for inner loops that
 * call it every few thousand work units (one atomic load and one clock read). */
int sl_policy_stopped(const sl_policy_opts_t *opts);

/* A policy builds a plan for n sequences; the caller evaluates it. On
 * success *out is a new plan owned by the caller. */
typedef sl_err (*sl_policy_fn)(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                               const sl_policy_opts_t *opts, sl_plan_t **out);

typedef struct sl_policy {
	const char *name;
	const char *summary;
	sl_policy_fn fn;
	/* The registered policy that answers when the deadline comes before fn
	 * has any plan (its deadline lifted: it must be a bounded pass); NULL
	 * means "static". sluice-aligned names itself: a static plan would
	 * break the framework rules its user asked for. */
	const char *fallback;
} sl_policy_t;

size_t sl_policy_count(void);
const sl_policy_t *sl_policy_at(size_t i);
/* NULL when unknown. */
const sl_policy_t *sl_policy_find(const char *name);
/* The default policy's name. */
const char *sl_policy_default(void);

/* Checks the request (1 <= length <= SL_MAX_SEQ_LEN, every sequence
 * placeable, n >= 1, unique ids), runs the named policy, evaluates the plan
 * under the reference model and fills policy/profile names and planner_ms.
 * Errors name the sequence (id, length) or the policy. opts may be NULL.
 * Stops (opts->deadline_ms, opts->cancel): a policy stopped after it had a
 * plan returns it marked search_truncated. One stopped before it had any
 * plan is replaced by the fallback policy `static` (fast, no search), whose
 * plan is returned marked truncated with a note naming both policies. When
 * opts->cancel is set (the caller gave up on the request) the result is
 * SL_ETIMEOUT and no plan, whatever the policy had: nobody wants it. */
sl_err sl_plan_request(const char *policy, const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                       const sl_policy_opts_t *opts, sl_plan_t **out);

/* SL_OK when every sequence id of seqs[0..n) is unique, else SL_EINVAL
 * naming the first repeated id (plans name sequences by id). */
sl_err sl_seqs_check_unique_ids(const sl_seq_t *seqs, int64_t n);

/* Releases the calling thread's solver state (GLPK keeps an environment per
 * thread). Every thread that planned must call it before it exits. */
void sl_planner_thread_end(void);

#ifdef __cplusplus
}
#endif
#endif
