/* sluice planner: the plan structure, its builder and its evaluation under
 * the reference timing rule (cost-model.md, "A group execution, a slot, a
 * step"). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "planner.h"

sl_err planner_grow(void **arr, int64_t *cap, int64_t need, size_t elem)
{
	if (need <= *cap)
		return SL_OK;
	int64_t nc = *cap ? *cap : 16;
	while (nc < need)
		nc *= 2;
	void *na = realloc(*arr, (size_t)nc * elem);
	if (na == NULL)
		return sl_seterr(SL_ENOMEM, "plan: out of memory");
	*arr = na;
	*cap = nc;
	return SL_OK;
}

sl_plan_t *sl_plan_new(const char *policy, const char *profile, int32_t ranks,
                       int32_t ranks_per_node, int64_t cap_tokens, const sl_seq_t *seqs,
                       int64_t nseqs)
{
	sl_plan_t *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	snprintf(p->policy, sizeof(p->policy), "%s", policy ? policy : "");
	snprintf(p->profile, sizeof(p->profile), "%s", profile ? profile : "");
	p->ranks = ranks;
	p->ranks_per_node = ranks_per_node;
	p->cap_tokens = cap_tokens;
	p->nseqs = nseqs;
	p->seqs = malloc(sizeof(sl_seq_t) * (size_t)(nseqs > 0 ? nseqs : 1));
	p->per_rank_ms = calloc((size_t)(ranks > 0 ? ranks : 1), sizeof(double));
	if (p->seqs == NULL || p->per_rank_ms == NULL) {
		sl_plan_free(&p);
		return NULL;
	}
	if (nseqs > 0)
		memcpy(p->seqs, seqs, sizeof(sl_seq_t) * (size_t)nseqs);
	p->step_ms = NAN;
	p->ideal_ms = NAN;
	p->lp_bound_ms = NAN;
	p->planner_ms = NAN;
	return p;
}

void sl_plan_free(sl_plan_t **plan)
{
	if (plan == NULL || *plan == NULL)
		return;
	sl_plan_t *p = *plan;
	free(p->seqs);
	free(p->slots);
	free(p->groups);
	free(p->rank_pool);
	free(p->items);
	free(p->per_rank_ms);
	free(p->unknown_ids);
	free(p);
	*plan = NULL;
}

static void *dup_mem(const void *src, size_t n)
{
	void *d = malloc(n ? n : 1);
	if (d != NULL && n)
		memcpy(d, src, n);
	return d;
}

sl_plan_t *sl_plan_dup(const sl_plan_t *src)
{
	sl_plan_t *p = malloc(sizeof(*p));
	if (p == NULL)
		return NULL;
	*p = *src;
	p->seqs = dup_mem(src->seqs, sizeof(sl_seq_t) * (size_t)src->nseqs);
	p->slots = dup_mem(src->slots, sizeof(sl_slot_t) * (size_t)src->nslots);
	p->groups = dup_mem(src->groups, sizeof(sl_group_t) * (size_t)src->ngroups);
	p->rank_pool = dup_mem(src->rank_pool, sizeof(int32_t) * (size_t)src->nranks_used);
	p->items = dup_mem(src->items, sizeof(sl_item_t) * (size_t)src->nitems);
	p->per_rank_ms = dup_mem(src->per_rank_ms, sizeof(double) * (size_t)src->ranks);
	p->unknown_ids = dup_mem(src->unknown_ids, sizeof(int64_t) * (size_t)src->nunknown);
	p->slots_cap = src->nslots;
	p->groups_cap = src->ngroups;
	p->ranks_cap = src->nranks_used;
	p->items_cap = src->nitems;
	p->nunknown_cap = src->nunknown;
	if (!p->seqs || !p->slots || !p->groups || !p->rank_pool || !p->items || !p->per_rank_ms ||
	    !p->unknown_ids) {
		sl_plan_free(&p);
		return NULL;
	}
	return p;
}

void sl_plan_clear(sl_plan_t *plan)
{
	plan->nslots = 0;
	plan->ngroups = 0;
	plan->nranks_used = 0;
	plan->nitems = 0;
}

sl_err sl_plan_add_slot(sl_plan_t *plan)
{
	int64_t cap = plan->slots_cap;
	SL_CHECK(planner_grow((void **)&plan->slots, &cap, (int64_t)plan->nslots + 1,
	                      sizeof(sl_slot_t)));
	plan->slots_cap = (int32_t)(cap > INT32_MAX ? INT32_MAX : cap);
	plan->slots[plan->nslots].group_off = plan->ngroups;
	plan->slots[plan->nslots].ngroups = 0;
	plan->nslots++;
	return SL_OK;
}

sl_err sl_plan_add_group(sl_plan_t *plan, const int32_t *ranks, int32_t nranks)
{
	if (plan->nslots == 0)
		return sl_seterr(SL_EINTERNAL, "plan builder: group added before any slot");
	SL_CHECK(planner_grow((void **)&plan->groups, &plan->groups_cap, plan->ngroups + 1,
	                      sizeof(sl_group_t)));
	SL_CHECK(planner_grow((void **)&plan->rank_pool, &plan->ranks_cap,
	                      plan->nranks_used + nranks, sizeof(int32_t)));
	sl_group_t *g = &plan->groups[plan->ngroups++];
	g->slot = plan->nslots - 1;
	g->nranks = nranks;
	g->rank_off = plan->nranks_used;
	g->nitems = 0;
	g->item_off = plan->nitems;
	if (nranks > 0)
		memcpy(plan->rank_pool + plan->nranks_used, ranks, sizeof(int32_t) * (size_t)nranks);
	plan->nranks_used += nranks;
	plan->slots[plan->nslots - 1].ngroups++;
	return SL_OK;
}

sl_err sl_plan_add_item(sl_plan_t *plan, int32_t seq, double offload)
{
	if (plan->ngroups == 0)
		return sl_seterr(SL_EINTERNAL, "plan builder: item added before any group");
	SL_CHECK(planner_grow((void **)&plan->items, &plan->items_cap, plan->nitems + 1,
	                      sizeof(sl_item_t)));
	plan->items[plan->nitems].seq = seq;
	plan->items[plan->nitems].offload = offload;
	plan->nitems++;
	plan->groups[plan->ngroups - 1].nitems++;
	return SL_OK;
}

double sl_plan_group_ms(const sl_plan_t *plan, const sl_group_t *g, const sl_cost_t *cost)
{
	const int32_t *r = sl_group_ranks(plan, g);
	const sl_item_t *it = sl_group_items(plan, g);
	int one = sl_cost_one_node(cost, r, g->nranks);
	double t = cost->prof.beta;
	for (int32_t i = 0; i < g->nitems; i++) {
		if (it[i].seq < 0 || it[i].seq >= plan->nseqs)
			continue;
		t += sl_cost_seq_ms(cost, plan->seqs[it[i].seq].length, g->nranks, it[i].offload, one);
	}
	return t;
}

double sl_plan_group_comm_ms(const sl_plan_t *plan, const sl_group_t *g, const sl_cost_t *cost)
{
	const sl_item_t *it = sl_group_items(plan, g);
	int one = sl_cost_one_node(cost, sl_group_ranks(plan, g), g->nranks);
	double t = 0;
	for (int32_t i = 0; i < g->nitems; i++)
		if (it[i].seq >= 0 && it[i].seq < plan->nseqs)
			t += sl_cost_seq_comm_ms(cost, plan->seqs[it[i].seq].length, g->nranks, one);
	return t;
}

void sl_plan_timeline(const sl_plan_t *plan, const sl_cost_t *cost, double *start_ms,
                      double *group_ms, double *ready_ms)
{
	int32_t n = plan->ranks;
	for (int32_t r = 0; r < n; r++)
		ready_ms[r] = 0;
	/* The builder appends every group to the last slot, so the groups'
	 * array order is the slots' order. */
	for (int64_t gi = 0; gi < plan->ngroups; gi++) {
		const sl_group_t *g = &plan->groups[gi];
		const int32_t *rk = sl_group_ranks(plan, g);
		double start = 0;
		for (int32_t i = 0; i < g->nranks; i++)
			if (rk[i] >= 0 && rk[i] < n && ready_ms[rk[i]] > start)
				start = ready_ms[rk[i]];
		double dur = sl_plan_group_ms(plan, g, cost);
		if (start_ms != NULL)
			start_ms[gi] = start;
		if (group_ms != NULL)
			group_ms[gi] = dur;
		for (int32_t i = 0; i < g->nranks; i++)
			if (rk[i] >= 0 && rk[i] < n)
				ready_ms[rk[i]] = start + dur;
	}
}

sl_err planner_plan_timing(const sl_plan_t *plan, const sl_cost_t *cost, double *per_rank,
                           double *step)
{
	int32_t n = plan->ranks;
	sl_plan_timeline(plan, cost, NULL, NULL, per_rank);
	double m = 0;
	for (int32_t r = 0; r < n; r++) {
		per_rank[r] += cost->prof.grad_sync_ms;
		if (per_rank[r] > m)
			m = per_rank[r];
	}
	if (n == 0)
		m = cost->prof.grad_sync_ms;
	*step = m;
	return SL_OK;
}

sl_err sl_plan_evaluate(sl_plan_t *plan, const sl_cost_t *cost)
{
	if (plan->ranks != cost->cl.ranks)
		return sl_seterr(SL_EINVAL, "plan has %d ranks but the cost model %d", plan->ranks,
		                 cost->cl.ranks);
	int64_t *len = malloc(sizeof(int64_t) * (size_t)(plan->nseqs ? plan->nseqs : 1));
	if (len == NULL)
		return sl_seterr(SL_ENOMEM, "plan: out of memory");
	for (int64_t i = 0; i < plan->nseqs; i++)
		len[i] = plan->seqs[i].length < 1 ? 1 : plan->seqs[i].length;
	sl_err rc = sl_cost_ideal(cost, len, (size_t)plan->nseqs, &plan->ideal_ms);
	free(len);
	if (rc != SL_OK)
		return rc;
	return planner_plan_timing(plan, cost, plan->per_rank_ms, &plan->step_ms);
}

void sl_zigzag_shard(int64_t s, int32_t d, int32_t pos, sl_shard_t *sh)
{
	sh->length = s;
	if (d <= 1) {
		sh->padded = s;
		sh->chunk_tokens = s;
		sh->chunk[0] = 0;
		sh->chunk[1] = -1;
		sh->begin[0] = 0;
		sh->end[0] = s;
		sh->begin[1] = sh->end[1] = s;
		return;
	}
	int64_t p = sl_cost_padded(s, d);
	int64_t c = p / (2 * (int64_t)d);
	sh->padded = p;
	sh->chunk_tokens = c;
	sh->chunk[0] = pos;
	sh->chunk[1] = 2 * d - 1 - pos;
	for (int k = 0; k < 2; k++) {
		int64_t b = (int64_t)sh->chunk[k] * c;
		sh->begin[k] = b < s ? b : s;
		sh->end[k] = b + c < s ? b + c : s;
	}
}
