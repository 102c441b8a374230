/* sluice planner: every rule of plan-format.md and the memory rule of
 * cost-model.md, checked on any plan (ours or someone else's). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "planner.h"

typedef struct {
	sl_violation_fn fn;
	void *arg;
	int64_t count;
} vreport_t;

static void violation(vreport_t *v, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 2, 3)))
#endif
	;

static void violation(vreport_t *v, const char *fmt, ...)
{
	v->count++;
	if (v->fn == NULL)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	v->fn(v->arg, msg);
}

/* Tolerance of the memory rule: offloads printed to 17 digits reproduce
 * exactly, so this only absorbs the last bit of (1 - f) * p / d. */
#define MEM_EPS 1e-9

int64_t sl_plan_validate(const sl_plan_t *plan, const sl_cost_t *cost, sl_violation_fn report,
                         void *arg)
{
	vreport_t v = {report, arg, 0};
	int32_t n = plan->ranks;
	int32_t *seen_slot = NULL;  /* per rank: last slot that used it */
	int32_t *seen_group = NULL; /* per rank: group index within that slot */
	int64_t *uses = NULL;       /* per sequence: how many groups run it */
	int64_t *ids = NULL;        /* sequence ids, sorted to find repeats */
	int32_t *gseen = NULL;

	if (plan->ranks != cost->cl.ranks || plan->ranks_per_node != cost->cl.ranks_per_node)
		violation(&v, "plan is for %d ranks, %d per node, but was scored for %d, %d",
		          plan->ranks, plan->ranks_per_node, cost->cl.ranks, cost->cl.ranks_per_node);
	if (plan->cap_tokens != cost->cap)
		violation(&v, "cap_tokens is %lld but profile %s on %d ranks gives %lld",
		          (long long)plan->cap_tokens, cost->prof.name, cost->cl.ranks,
		          (long long)cost->cap);
	if (plan->nseqs < 1)
		violation(&v, "the request has no sequences");

	seen_slot = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
	seen_group = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
	gseen = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
	uses = calloc((size_t)(plan->nseqs > 0 ? plan->nseqs : 1), sizeof(int64_t));
	ids = malloc(sizeof(int64_t) * (size_t)(plan->nseqs > 0 ? plan->nseqs : 1));
	if (!seen_slot || !seen_group || !uses || !ids || !gseen) {
		violation(&v, "out of memory while validating");
		goto out;
	}
	for (int32_t r = 0; r < n; r++) {
		seen_slot[r] = -1;
		gseen[r] = -1;
	}

	for (int64_t i = 0; i < plan->nseqs; i++) {
		if (plan->seqs[i].length < 1)
			violation(&v, "sequence %lld has length %lld (must be >= 1)",
			          (long long)plan->seqs[i].id, (long long)plan->seqs[i].length);
		ids[i] = plan->seqs[i].id;
	}
	qsort(ids, (size_t)plan->nseqs, sizeof(int64_t), planner_cmp_i64);
	for (int64_t i = 1; i < plan->nseqs; i++)
		if (ids[i] == ids[i - 1] && (i < 2 || ids[i - 2] != ids[i]))
			violation(&v, "sequence id %lld appears more than once in the request",
			          (long long)ids[i]);

	for (int32_t s = 0; s < plan->nslots; s++) {
		const sl_slot_t *sl = &plan->slots[s];
		if (sl->ngroups == 0)
			violation(&v, "slot %d has no groups", s);
		for (int32_t gi = 0; gi < sl->ngroups; gi++) {
			const sl_group_t *g = &plan->groups[sl->group_off + gi];
			const int32_t *rk = sl_group_ranks(plan, g);
			const sl_item_t *it = sl_group_items(plan, g);
			int32_t gid = (int32_t)(sl->group_off + gi);
			if (g->nranks < 1)
				violation(&v, "slot %d group %d has no ranks", s, gi);
			for (int32_t k = 0; k < g->nranks; k++) {
				int32_t r = rk[k];
				if (r < 0 || r >= n) {
					violation(&v, "slot %d group %d: rank %d is outside [0, %d)", s, gi,
					          r, n);
					continue;
				}
				if (gseen[r] == gid) {
					violation(&v, "slot %d group %d: rank %d appears twice in the ring",
					          s, gi, r);
					continue;
				}
				gseen[r] = gid;
				if (seen_slot[r] == s)
					violation(&v,
					          "slot %d: rank %d is in group %d and group %d (groups of a "
					          "slot must be disjoint)",
					          s, r, seen_group[r], gi);
				seen_slot[r] = s;
				seen_group[r] = gi;
			}
			if (g->nitems < 1)
				violation(&v, "slot %d group %d runs no sequences", s, gi);
			double resident = 0;
			int32_t d = g->nranks > 0 ? g->nranks : 1;
			for (int32_t k = 0; k < g->nitems; k++) {
				int32_t q = it[k].seq;
				if (q < 0) {
					int64_t u = -(int64_t)q - 1;
					violation(&v, "slot %d group %d: sequence id %lld is not in the request",
					          s, gi,
					          u < plan->nunknown ? (long long)plan->unknown_ids[u] : -1LL);
					continue;
				}
				if (q >= plan->nseqs) {
					violation(&v, "slot %d group %d: sequence index %d out of range", s,
					          gi, q);
					continue;
				}
				uses[q]++;
				double f = it[k].offload;
				if (!(f >= 0.0 && f < 1.0))
					violation(&v,
					          "slot %d group %d: sequence %lld has offload %.17g (must be "
					          "in [0, 1))",
					          s, gi, (long long)plan->seqs[q].id, f);
				if (plan->seqs[q].length >= 1)
					resident += sl_cost_resident(plan->seqs[q].length, d, f);
			}
			if (resident > (double)cost->cap * (1 + MEM_EPS))
				violation(&v,
				          "slot %d group %d (%d ranks): %.1f resident tokens per rank exceed "
				          "the capacity of %lld",
				          s, gi, g->nranks, resident, (long long)cost->cap);
		}
	}
	for (int64_t i = 0; i < plan->nseqs; i++) {
		if (uses[i] == 0)
			violation(&v, "sequence %lld (length %lld) is in no group",
			          (long long)plan->seqs[i].id, (long long)plan->seqs[i].length);
		else if (uses[i] > 1)
			violation(&v, "sequence %lld is in %lld groups (must be exactly one)",
			          (long long)plan->seqs[i].id, (long long)uses[i]);
	}

	/* The predicted numbers must be the reference model's. */
	if (v.count == 0) {
		double *ready = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
		int64_t *len = malloc(sizeof(int64_t) * (size_t)(plan->nseqs > 0 ? plan->nseqs : 1));
		if (ready == NULL || len == NULL) {
			free(ready);
			free(len);
			violation(&v, "out of memory while validating");
			goto out;
		}
		double step = 0, ideal = 0;
		planner_plan_timing(plan, cost, ready, &step);
		for (int64_t i = 0; i < plan->nseqs; i++)
			len[i] = plan->seqs[i].length;
		sl_cost_ideal(cost, len, (size_t)plan->nseqs, &ideal);
		if (isnan(plan->step_ms))
			violation(&v, "predicted.step_ms is missing (reference: %.3f)", step);
		else if (fabs(plan->step_ms - step) > 1e-3 + 1e-9 * step)
			violation(&v, "predicted.step_ms is %.3f but the reference model gives %.3f",
			          plan->step_ms, step);
		if (isnan(plan->ideal_ms))
			violation(&v, "predicted.ideal_ms is missing (reference: %.3f)", ideal);
		else if (fabs(plan->ideal_ms - ideal) > 1e-3 + 1e-9 * ideal)
			violation(&v, "predicted.ideal_ms is %.3f but the reference model gives %.3f",
			          plan->ideal_ms, ideal);
		free(ready);
		free(len);
	}
out:
	free(seen_slot);
	free(seen_group);
	free(gseen);
	free(uses);
	free(ids);
	return v.count;
}
