/* sluice comm: work orders, the slice of a plan one rank executes. The
 * shard boundaries follow the zigzag rule of cost-model.md, derived by
 * sl_zigzag_shard (sluice/plan.h) for every user (the load-balanced
 * causal layout of Megatron-LM's context parallelism and of zigzag ring
 * attention in ring-flash-attention): the padded sequence is cut into 2d
 * equal chunks and ring position i holds chunks i and 2d-1-i, so every rank
 * gets the same share of the causal attention work. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

void sl_work_order_free(sl_work_order_t **o)
{
	if (o == NULL || *o == NULL)
		return;
	sl_work_order_t *w = *o;
	for (int32_t i = 0; i < w->ngroups; i++) {
		free(w->groups[i].ranks);
		free(w->groups[i].shards);
	}
	free(w->groups);
	free(w);
	*o = NULL;
}

sl_err sl_work_order_from_plan(const sl_plan_t *plan, const sl_cost_t *cost, int32_t rank,
                               const char *job, uint64_t step, sl_work_order_t **out)
{
	*out = NULL;
	if (rank < 0 || rank >= plan->ranks)
		return sl_seterr(SL_ERANGE, "rank %d is outside the plan's [0, %d)", rank,
		                 plan->ranks);
	sl_work_order_t *o = calloc(1, sizeof(*o));
	if (o == NULL)
		return sl_seterr(SL_ENOMEM, "work order for rank %d", rank);
	snprintf(o->job, sizeof(o->job), "%s", job ? job : "");
	snprintf(o->policy, sizeof(o->policy), "%s", plan->policy);
	snprintf(o->profile, sizeof(o->profile), "%s", plan->profile);
	o->step = step;
	o->rank = rank;
	o->ranks = plan->ranks;
	o->nslots = plan->nslots;
	o->predicted_step_ms = plan->step_ms;

	int32_t count = 0;
	for (int64_t g = 0; g < plan->ngroups; g++) {
		const int32_t *r = sl_group_ranks(plan, &plan->groups[g]);
		for (int32_t k = 0; k < plan->groups[g].nranks; k++)
			if (r[k] == rank) {
				count++;
				break;
			}
	}
	if (count > 0) {
		o->groups = calloc((size_t)count, sizeof(*o->groups));
		if (o->groups == NULL)
			goto nomem;
	}
	for (int32_t s = 0; s < plan->nslots; s++) {
		const sl_slot_t *sl = &plan->slots[s];
		for (int32_t gi = 0; gi < sl->ngroups; gi++) {
			const sl_group_t *g = &plan->groups[sl->group_off + gi];
			const int32_t *r = sl_group_ranks(plan, g);
			int32_t pos = -1;
			for (int32_t k = 0; k < g->nranks; k++)
				if (r[k] == rank) {
					pos = k;
					break;
				}
			if (pos < 0)
				continue;
			sl_order_group_t *og = &o->groups[o->ngroups++];
			og->slot = s;
			og->group = gi;
			og->nranks = g->nranks;
			og->ranks = malloc(sizeof(int32_t) * (size_t)g->nranks);
			og->shards = calloc((size_t)(g->nitems > 0 ? g->nitems : 1), sizeof(sl_shard_t));
			if (og->ranks == NULL || og->shards == NULL)
				goto nomem;
			memcpy(og->ranks, r, sizeof(int32_t) * (size_t)g->nranks);
			og->position = pos;
			og->prev_rank = r[(pos + g->nranks - 1) % g->nranks];
			og->next_rank = r[(pos + 1) % g->nranks];
			/* (an empty group of a parsed plan may have no items array) */
			const sl_item_t *it = g->nitems > 0 ? sl_group_items(plan, g) : NULL;
			for (int32_t i = 0; i < g->nitems; i++) {
				if (it[i].seq < 0 || it[i].seq >= plan->nseqs) {
					sl_work_order_free(&o);
					return sl_seterr(SL_EINVAL,
					                 "plan slot %d group %d names sequence index %d "
					                 "outside [0, %lld)",
					                 s, gi, it[i].seq, (long long)plan->nseqs);
				}
				sl_shard_t *sh = &og->shards[og->nshards++];
				sh->seq = it[i].seq;
				sh->id = plan->seqs[it[i].seq].id;
				sh->offload = it[i].offload;
				sl_zigzag_shard(plan->seqs[it[i].seq].length, g->nranks, pos, sh);
			}
			og->predicted_ms = cost != NULL ? sl_plan_group_ms(plan, g, cost) : NAN;
		}
	}
	*out = o;
	return SL_OK;
nomem:
	sl_work_order_free(&o);
	return sl_seterr(SL_ENOMEM, "work order for rank %d", rank);
}

sl_err comm_order_to_proto(const sl_work_order_t *o, comm_arena_t *a, Sluice__WorkOrder *m)
{
	sluice__work_order__init(m);
	m->job = comm_arena_strdup(a, o->job);
	m->policy = comm_arena_strdup(a, o->policy);
	m->profile = comm_arena_strdup(a, o->profile);
	m->step = o->step;
	m->rank = o->rank;
	m->ranks = o->ranks;
	m->nslots = o->nslots;
	m->predicted_step_ms = o->predicted_step_ms;
	size_t ng = (size_t)o->ngroups;
	Sluice__OrderGroup *gs = comm_arena_alloc(a, sizeof(*gs) * (ng + 1));
	m->groups = comm_arena_alloc(a, sizeof(*m->groups) * (ng + 1));
	if (gs == NULL || m->groups == NULL || m->job == NULL)
		return sl_seterr(SL_ENOMEM, "encoding a work order");
	for (size_t i = 0; i < ng; i++) {
		const sl_order_group_t *og = &o->groups[i];
		Sluice__OrderGroup *g = &gs[i];
		sluice__order_group__init(g);
		g->slot = og->slot;
		g->group = og->group;
		g->n_ranks = (size_t)og->nranks;
		g->ranks = og->ranks;
		g->position = og->position;
		g->prev_rank = og->prev_rank;
		g->next_rank = og->next_rank;
		g->predicted_ms = og->predicted_ms;
		size_t ns = (size_t)og->nshards;
		Sluice__Shard *sh = comm_arena_alloc(a, sizeof(*sh) * (ns + 1));
		g->shards = comm_arena_alloc(a, sizeof(*g->shards) * (ns + 1));
		if (sh == NULL || g->shards == NULL)
			return sl_seterr(SL_ENOMEM, "encoding a work order");
		for (size_t k = 0; k < ns; k++) {
			const sl_shard_t *s = &og->shards[k];
			sluice__shard__init(&sh[k]);
			sh[k].seq = s->seq;
			sh[k].id = s->id;
			sh[k].length = s->length;
			sh[k].padded = s->padded;
			sh[k].chunk_tokens = s->chunk_tokens;
			sh[k].chunk0 = s->chunk[0];
			sh[k].chunk1 = s->chunk[1];
			sh[k].begin0 = s->begin[0];
			sh[k].end0 = s->end[0];
			sh[k].begin1 = s->begin[1];
			sh[k].end1 = s->end[1];
			sh[k].offload = s->offload;
			g->shards[k] = &sh[k];
		}
		g->n_shards = ns;
		m->groups[i] = g;
	}
	m->n_groups = ng;
	return SL_OK;
}

/* Checks one shard read from the wire against the zigzag rule, so a worker
 * never indexes outside its sequence. */
static sl_err check_shard(const Sluice__Shard *s, int32_t d, int32_t pos, size_t gi, size_t k)
{
	sl_shard_t want;
	if (s->length < 1 || s->length > SL_MAX_SEQ_LEN)
		return sl_seterr(SL_EPROTO,
		                 "work_order.groups[%zu].shards[%zu].length = %lld is outside [1, %lld]",
		                 gi, k, (long long)s->length, (long long)SL_MAX_SEQ_LEN);
	memset(&want, 0, sizeof(want));
	sl_zigzag_shard(s->length, d, pos, &want);
	if (s->padded != want.padded || s->chunk_tokens != want.chunk_tokens ||
	    s->chunk0 != want.chunk[0] || s->chunk1 != want.chunk[1] || s->begin0 != want.begin[0] ||
	    s->end0 != want.end[0] || s->begin1 != want.begin[1] || s->end1 != want.end[1])
		return sl_seterr(SL_EPROTO,
		                 "work_order.groups[%zu].shards[%zu] does not follow the zigzag rule "
		                 "for %lld tokens at position %d of %d",
		                 gi, k, (long long)s->length, pos, d);
	if (!(s->offload >= 0 && s->offload < 1))
		return sl_seterr(SL_EPROTO,
		                 "work_order.groups[%zu].shards[%zu].offload = %g is outside [0, 1)",
		                 gi, k, s->offload);
	return SL_OK;
}

sl_err comm_order_from_proto(const Sluice__WorkOrder *m, sl_work_order_t **out)
{
	sl_err rc = SL_OK;
	*out = NULL;
	if (m->ranks < 1 || m->ranks > SL_MAX_RANKS || m->rank < 0 || m->rank >= m->ranks)
		return sl_seterr(SL_EPROTO, "work_order: rank %d of %d is outside [0, ranks)",
		                 m->rank, m->ranks);
	if (m->n_groups > (size_t)INT32_MAX || m->nslots < 0)
		return sl_seterr(SL_EPROTO, "work_order: %zu groups in %d slots", m->n_groups,
		                 m->nslots);
	sl_work_order_t *o = calloc(1, sizeof(*o));
	if (o == NULL)
		return sl_seterr(SL_ENOMEM, "decoding a work order");
	comm_sanitize(o->job, sizeof(o->job), m->job);
	comm_sanitize(o->policy, sizeof(o->policy), m->policy);
	comm_sanitize(o->profile, sizeof(o->profile), m->profile);
	o->step = m->step;
	o->rank = m->rank;
	o->ranks = m->ranks;
	o->nslots = m->nslots;
	o->predicted_step_ms = m->predicted_step_ms;
	if (m->n_groups > 0) {
		o->groups = calloc(m->n_groups, sizeof(*o->groups));
		if (o->groups == NULL) {
			rc = sl_seterr(SL_ENOMEM, "decoding a work order");
			goto fail;
		}
	}
	int32_t last_slot = -1;
	for (size_t i = 0; i < m->n_groups; i++) {
		const Sluice__OrderGroup *g = m->groups[i];
		sl_order_group_t *og = &o->groups[o->ngroups++];
		if (g->slot < 0 || g->slot >= m->nslots || g->slot <= last_slot) {
			rc = sl_seterr(SL_EPROTO,
			               "work_order.groups[%zu].slot = %d (slots must increase within "
			               "[0, %d))",
			               i, g->slot, m->nslots);
			goto fail;
		}
		last_slot = g->slot;
		if (g->n_ranks < 1 || g->n_ranks > (size_t)m->ranks || g->position < 0 ||
		    (size_t)g->position >= g->n_ranks || g->ranks[g->position] != m->rank) {
			rc = sl_seterr(SL_EPROTO,
			               "work_order.groups[%zu]: position %d in a ring of %zu does not "
			               "hold rank %d",
			               i, g->position, g->n_ranks, m->rank);
			goto fail;
		}
		for (size_t k = 0; k < g->n_ranks; k++)
			if (g->ranks[k] < 0 || g->ranks[k] >= m->ranks) {
				rc = sl_seterr(SL_EPROTO,
				               "work_order.groups[%zu].ranks[%zu] = %d is outside [0, %d)",
				               i, k, g->ranks[k], m->ranks);
				goto fail;
			}
		int32_t d = (int32_t)g->n_ranks, pos = g->position;
		if (g->prev_rank != g->ranks[(pos + d - 1) % d] || g->next_rank != g->ranks[(pos + 1) % d]) {
			rc = sl_seterr(SL_EPROTO, "work_order.groups[%zu]: prev/next rank %d/%d do not "
			                          "match the ring",
			               i, g->prev_rank, g->next_rank);
			goto fail;
		}
		og->slot = g->slot;
		og->group = g->group;
		og->nranks = d;
		og->position = pos;
		og->prev_rank = g->prev_rank;
		og->next_rank = g->next_rank;
		og->predicted_ms = g->predicted_ms;
		og->ranks = malloc(sizeof(int32_t) * g->n_ranks);
		og->shards = calloc(g->n_shards ? g->n_shards : 1, sizeof(sl_shard_t));
		if (og->ranks == NULL || og->shards == NULL) {
			rc = sl_seterr(SL_ENOMEM, "decoding a work order");
			goto fail;
		}
		memcpy(og->ranks, g->ranks, sizeof(int32_t) * g->n_ranks);
		for (size_t k = 0; k < g->n_shards; k++) {
			const Sluice__Shard *s = g->shards[k];
			SL_CHECK_GOTO(check_shard(s, d, pos, i, k), rc, fail);
			sl_shard_t *sh = &og->shards[og->nshards++];
			sh->seq = s->seq;
			sh->id = s->id;
			sh->offload = s->offload;
			sl_zigzag_shard(s->length, d, pos, sh);
		}
	}
	*out = o;
	return SL_OK;
fail:
	sl_work_order_free(&o);
	return rc;
}
