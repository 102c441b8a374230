/* sluice planner: the policy registry and the checked entry point. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "lp.h"
#include "planner.h"

/* The policy table: the first entry is the default. A policy is listed here
 * once its implementation exists. */
static const sl_policy_t policies[] = {
	/* POLICY TABLE: add one line per policy, keep `sluice` first once it exists. */
	{"sluice", "LP-chosen ring sizes, dynamic mesh, two-stage balance, local search (default)",
	 planner_policy_sluice, NULL},
	{"sluice-aligned", "sluice for frameworks' own CP attention: power-of-two aligned rings, no "
	                   "idle rank in a slot (Megatron-LM, TransformerEngine)", planner_policy_aligned,
	 "sluice-aligned"},
	{"static", "one SP degree for the whole run (DeepSpeed-Ulysses, Megatron-LM CP)",
	 planner_policy_static, NULL},
	{"batch-adaptive", "best single SP degree per batch (FlexSP's BatchAda baseline)",
	 planner_policy_batch_adaptive, NULL},
	{"megatron-hybrid-cp", "Megatron-LM hybrid DPxCP BalancedCPScheduler",
	 planner_policy_megatron_hcp, NULL},
	{"flexsp", "FlexSP (ASPLOS'25): power-of-two Ulysses groups per micro-batch, MILP by "
	           "configuration", planner_policy_flexsp, NULL},
	{NULL, NULL, NULL, NULL}, /* end */
};

size_t sl_policy_count(void)
{
	size_t n = 0;
	while (policies[n].name != NULL)
		n++;
	return n;
}

const sl_policy_t *sl_policy_at(size_t i)
{
	return i < sl_policy_count() ? &policies[i] : NULL;
}

const sl_policy_t *sl_policy_find(const char *name)
{
	for (size_t i = 0; i < sl_policy_count(); i++)
		if (strcmp(policies[i].name, name) == 0)
			return &policies[i];
	return NULL;
}

const char *sl_policy_default(void)
{
	return sl_policy_count() > 0 ? policies[0].name : "static";
}

int sl_policy_stopped(const sl_policy_opts_t *opts)
{
	if (opts == NULL)
		return 0;
	if (opts->cancel != NULL && atomic_load_explicit(opts->cancel, memory_order_relaxed))
		return 1;
	return opts->deadline_ms > 0 && sl_now_ms() >= opts->deadline_ms;
}

/* Plans name sequences by the caller's id, so ids must be unique. */
sl_err sl_seqs_check_unique_ids(const sl_seq_t *seqs, int64_t n)
{
	int64_t *ids = malloc(sizeof(int64_t) * (size_t)n);
	if (ids == NULL)
		return sl_seterr(SL_ENOMEM, "out of memory checking %lld ids", (long long)n);
	for (int64_t i = 0; i < n; i++)
		ids[i] = seqs[i].id;
	qsort(ids, (size_t)n, sizeof(int64_t), planner_cmp_i64);
	for (int64_t i = 1; i < n; i++)
		if (ids[i] == ids[i - 1]) {
			int64_t dup = ids[i];
			free(ids);
			return sl_seterr(SL_EINVAL, "sequence id %lld appears more than once in the request",
			                 (long long)dup);
		}
	free(ids);
	return SL_OK;
}

sl_err sl_plan_request(const char *policy, const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                       const sl_policy_opts_t *opts, sl_plan_t **out)
{
	static const sl_policy_opts_t defaults;
	const sl_policy_t *pol;
	sl_plan_t *plan = NULL;
	sl_err rc;

	*out = NULL;
	if (opts == NULL)
		opts = &defaults;
	if (policy == NULL)
		policy = sl_policy_default();
	pol = sl_policy_find(policy);
	if (pol == NULL) {
		char names[256] = "";
		for (size_t i = 0; i < sl_policy_count(); i++) {
			strncat(names, i ? ", " : "", sizeof(names) - strlen(names) - 1);
			strncat(names, policies[i].name, sizeof(names) - strlen(names) - 1);
		}
		return sl_seterr(SL_ENOTFOUND, "unknown policy '%s' (known: %s)", policy, names);
	}
	if (n < 1)
		return sl_seterr(SL_EINVAL, "the request has no sequences");
	if (n > (int64_t)INT32_MAX)
		return sl_seterr(SL_ERANGE, "the request has %lld sequences (limit %d)", (long long)n,
		                 INT32_MAX);
	for (int64_t i = 0; i < n; i++) {
		if (seqs[i].length < 1)
			return sl_seterr(SL_ERANGE,
			                 "sequence %lld (index %lld) has length %lld; lengths must be >= 1",
			                 (long long)seqs[i].id, (long long)i, (long long)seqs[i].length);
		if (seqs[i].length > SL_MAX_SEQ_LEN)
			return sl_seterr(SL_ERANGE, "sequence %lld (index %lld) has length %lld (limit %lld)",
			                 (long long)seqs[i].id, (long long)i, (long long)seqs[i].length,
			                 (long long)SL_MAX_SEQ_LEN);
		rc = sl_cost_check_seq(cost, seqs[i].id, seqs[i].length);
		if (rc != SL_OK)
			return rc;
	}

	SL_CHECK(sl_seqs_check_unique_ids(seqs, n));

	double t0 = sl_now_ms();
	/* GLPK solves of this thread honour the same stop. */
	lp_set_thread_stop(opts->deadline_ms, opts->cancel);
	rc = sl_policy_stopped(opts) ? sl_seterr(SL_ETIMEOUT, "%s: the deadline passed before "
	                                         "planning began", pol->name)
	                             : pol->fn(cost, seqs, n, opts, &plan);
	lp_set_thread_stop(0, NULL);
	if (opts->cancel != NULL && atomic_load(opts->cancel)) {
		/* The caller gave up on this request: no fallback, no plan. */
		sl_plan_free(&plan);
		return sl_seterr(SL_ETIMEOUT, "%s: planning cancelled (the request was abandoned)",
		                 pol->name);
	}
	const char *used = pol->name;
	if (rc != SL_OK && sl_policy_stopped(opts)) {
		/* The deadline came before the policy had any plan: the fallback
		 * has no search to cut, so it answers in time. */
		const sl_policy_t *fbp = sl_policy_find(pol->fallback ? pol->fallback : "static");
		sl_policy_opts_t fb = *opts;
		fb.deadline_ms = 0;
		sl_clearerr();
		rc = fbp->fn(cost, seqs, n, &fb, &plan);
		if (rc != SL_OK)
			return rc;
		used = fbp->name;
		plan->search_truncated = 1;
		snprintf(plan->note, sizeof(plan->note),
		         "deadline reached before %s had a plan; fallback %s%s", pol->name, fbp->name,
		         fbp == pol ? " without the deadline" : "");
	}
	if (rc != SL_OK)
		return rc;
	if (opts->cancel != NULL && atomic_load(opts->cancel)) {
		/* evaluating a huge plan takes a while: not for nobody */
		sl_plan_free(&plan);
		return sl_seterr(SL_ETIMEOUT, "%s: planning cancelled (the request was abandoned)",
		                 pol->name);
	}
	double t1 = sl_now_ms();
	snprintf(plan->policy, sizeof(plan->policy), "%s", used);
	snprintf(plan->profile, sizeof(plan->profile), "%s", cost->prof.name);
	rc = sl_plan_evaluate(plan, cost);
	if (rc != SL_OK) {
		sl_plan_free(&plan);
		return rc;
	}
	plan->planner_ms = t1 - t0;
	*out = plan;
	return SL_OK;
}

void sl_planner_thread_end(void)
{
	lp_thread_end();
}
