/* sluice worker: a rank's work orders derived from a plan, and plan checks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

sl_err worker_shape_check(const worker_shape_t *s)
{
	if (s->heads < 1 || s->heads > WORKER_MAX_HEADS)
		return sl_seterr(SL_ERANGE, "heads %d out of range [1, %d]", (int)s->heads,
		                 WORKER_MAX_HEADS);
	if (s->kv_heads < 1 || s->kv_heads > s->heads)
		return sl_seterr(SL_ERANGE, "kv-heads %d out of range [1, heads=%d]", (int)s->kv_heads,
		                 (int)s->heads);
	if (s->heads % s->kv_heads != 0)
		return sl_seterr(SL_EINVAL, "heads %d is not a multiple of kv-heads %d",
		                 (int)s->heads, (int)s->kv_heads);
	if (s->head_dim < 1 || s->head_dim > WORKER_MAX_HEAD_DIM)
		return sl_seterr(SL_ERANGE, "head-dim %d out of range [1, %d]", (int)s->head_dim,
		                 WORKER_MAX_HEAD_DIM);
	return SL_OK;
}

void worker_order_free(worker_order_t **order)
{
	if (!order || !*order)
		return;
	free((*order)->work);
	free((*order)->shards);
	free((*order)->rings);
	free(*order);
	*order = NULL;
}

/* Checks the structure execution relies on; the same for every rank, so a
 * plan either runs on all ranks or on none. */
static sl_err order_check_structure(const sl_plan_t *plan)
{
	if (plan->ranks < 1 || plan->ranks > SL_MAX_RANKS)
		return sl_seterr(SL_EFORMAT, "plan: ranks %d out of range [1, %d]", (int)plan->ranks,
		                 SL_MAX_RANKS);
	for (int64_t k = 0; k < plan->nseqs; k++)
		if (plan->seqs[k].length < 1 || plan->seqs[k].length > SL_MAX_SEQ_LEN)
			return sl_seterr(SL_EFORMAT, "plan: sequence %lld (id %lld) has length %lld",
			                 (long long)k, (long long)plan->seqs[k].id,
			                 (long long)plan->seqs[k].length);
	int32_t *seen = calloc((size_t)plan->ranks, sizeof *seen);
	int32_t *used = calloc(plan->nseqs > 0 ? (size_t)plan->nseqs : 1, sizeof *used);
	sl_err rc = SL_OK;
	if (!seen || !used) {
		rc = sl_seterr(SL_ENOMEM, "plan check: out of memory");
		goto out;
	}
	for (int32_t t = 0; t < plan->nslots; t++) {
		const sl_slot_t *sl = &plan->slots[t];
		if (sl->ngroups < 0 || sl->group_off < 0 || sl->group_off + sl->ngroups > plan->ngroups) {
			rc = sl_seterr(SL_EFORMAT, "plan: slot %d has a bad group range", (int)t);
			goto out;
		}
		for (int32_t gi = 0; gi < sl->ngroups; gi++) {
			int64_t gidx = sl->group_off + gi;
			const sl_group_t *g = &plan->groups[gidx];
			if (g->nranks < 1 || g->rank_off < 0 || g->rank_off + g->nranks > plan->nranks_used ||
			    g->nitems < 0 || g->item_off < 0 || g->item_off + g->nitems > plan->nitems) {
				rc = sl_seterr(SL_EFORMAT, "plan: slot %d group %d has a bad rank or item range",
				               (int)t, (int)gi);
				goto out;
			}
			const int32_t *ranks = sl_group_ranks(plan, g);
			for (int32_t j = 0; j < g->nranks; j++) {
				int32_t r = ranks[j];
				if (r < 0 || r >= plan->ranks) {
					rc = sl_seterr(SL_EFORMAT,
					               "plan: slot %d group %d: rank %d out of range [0, %d)",
					               (int)t, (int)gi, (int)r, (int)plan->ranks);
					goto out;
				}
				if (seen[r] == t + 1) {
					rc = sl_seterr(SL_EFORMAT,
					               "plan: slot %d: rank %d is in more than one group or twice in one",
					               (int)t, (int)r);
					goto out;
				}
				seen[r] = t + 1;
			}
			const sl_item_t *items = sl_group_items(plan, g);
			for (int32_t j = 0; j < g->nitems; j++) {
				int32_t s = items[j].seq;
				if (s < 0 || s >= plan->nseqs) {
					rc = sl_seterr(SL_EFORMAT,
					               "plan: slot %d group %d: sequence index %d out of range",
					               (int)t, (int)gi, (int)s);
					goto out;
				}
				if (used[s]++) {
					rc = sl_seterr(SL_EFORMAT,
					               "plan: sequence id %lld is run more than once (slot %d group %d)",
					               (long long)plan->seqs[s].id, (int)t, (int)gi);
					goto out;
				}
			}
		}
	}
out:
	free(seen);
	free(used);
	return rc;
}

sl_err worker_order_build(const sl_plan_t *plan, int32_t rank, const worker_shape_t *shape,
                          worker_order_t **out)
{
	*out = NULL;
	SL_CHECK(worker_shape_check(shape));
	SL_CHECK(order_check_structure(plan));
	if (rank < 0 || rank >= plan->ranks)
		return sl_seterr(SL_ERANGE, "rank %d out of range: the plan has %d ranks (0..%d)",
		                 (int)rank, (int)plan->ranks, (int)plan->ranks - 1);

	/* Count this rank's groups, shards and ring slots first. */
	int32_t nwork = 0;
	int64_t nshards = 0, nring = 0;
	for (int64_t gi = 0; gi < plan->ngroups; gi++) {
		const sl_group_t *g = &plan->groups[gi];
		const int32_t *ranks = sl_group_ranks(plan, g);
		for (int32_t j = 0; j < g->nranks; j++)
			if (ranks[j] == rank) {
				nwork++;
				nshards += g->nitems;
				nring += g->nranks;
			}
	}
	worker_order_t *o = calloc(1, sizeof *o);
	if (!o)
		return sl_seterr(SL_ENOMEM, "work order: out of memory");
	o->rank = rank;
	o->nranks = plan->ranks;
	o->shape = *shape;
	o->work = calloc(nwork > 0 ? (size_t)nwork : 1, sizeof *o->work);
	o->shards = calloc(nshards > 0 ? (size_t)nshards : 1, sizeof *o->shards);
	o->rings = calloc(nring > 0 ? (size_t)nring : 1, sizeof *o->rings);
	if (!o->work || !o->shards || !o->rings) {
		worker_order_free(&o);
		return sl_seterr(SL_ENOMEM, "work order: out of memory");
	}

	int64_t sh = 0, rg = 0;
	for (int32_t t = 0; t < plan->nslots; t++) {
		const sl_slot_t *sl = &plan->slots[t];
		for (int32_t gj = 0; gj < sl->ngroups; gj++) {
			int64_t gi = sl->group_off + gj;
			const sl_group_t *g = &plan->groups[gi];
			const int32_t *ranks = sl_group_ranks(plan, g);
			int32_t pos = -1;
			for (int32_t j = 0; j < g->nranks; j++)
				if (ranks[j] == rank)
					pos = j;
			if (pos < 0)
				continue;
			int32_t d = g->nranks;
			worker_group_work_t *w = &o->work[o->nwork++];
			memcpy(o->rings + rg, ranks, (size_t)d * sizeof *ranks);
			w->slot = t;
			w->group = gi;
			w->slot_group = gj;
			w->d = d;
			w->ring_pos = pos;
			w->ring = o->rings + rg;
			w->prev_rank = ranks[(pos - 1 + d) % d];
			w->next_rank = ranks[(pos + 1) % d];
			w->nseqs = g->nitems;
			w->seqs = o->shards + sh;
			w->heads = shape->heads;
			w->kv_heads = shape->kv_heads;
			w->head_dim = shape->head_dim;
			w->scale = 1.0 / sqrt((double)shape->head_dim);
			const sl_item_t *items = sl_group_items(plan, g);
			int64_t off = 0;
			for (int32_t k = 0; k < g->nitems; k++) {
				worker_seq_shard_t *s = &o->shards[sh + k];
				const sl_seq_t *q = &plan->seqs[items[k].seq];
				s->seq = items[k].seq;
				s->id = q->id;
				s->len = q->length;
				sl_shard_t z;
				sl_zigzag_shard(q->length, d, pos, &z);
				s->padded = z.padded;
				s->chunk = z.chunk_tokens;
				s->local_off = off;
				s->local_len = s->padded / d;
				off += s->local_len;
			}
			w->ntok = off;
			sh += g->nitems;
			rg += d;
		}
	}
	*out = o;
	return SL_OK;
}

/* Collects sl_plan_validate's violations into one message. */
typedef struct order_violations {
	char buf[1024];
	size_t len;
	int64_t n;
} order_violations_t;

static void order_collect(void *arg, const char *message)
{
	order_violations_t *v = arg;
	v->n++;
	if (v->n > 5 || v->len + 8 >= sizeof v->buf)
		return;
	int k = snprintf(v->buf + v->len, sizeof v->buf - v->len, "%s%s", v->n > 1 ? "; " : "",
	                 message);
	if (k > 0)
		v->len += (size_t)k < sizeof v->buf - v->len ? (size_t)k : sizeof v->buf - v->len - 1;
}

sl_err worker_plan_check(const sl_plan_t *plan, const char *what, const worker_plan_rules_t *rules,
                         sl_cost_t *cost, int *have_cost)
{
	if (have_cost)
		*have_cost = 0;
	char msg[512];
	sl_err rc = order_check_structure(plan);
	if (rc != SL_OK) {
		/* sl_errmsg's buffer is the one sl_seterr writes: copy it first. */
		snprintf(msg, sizeof msg, "%s", sl_errmsg());
		return sl_seterr(rc, "%s: %s", what, msg);
	}
	if (rules && rules->structure_only)
		return SL_OK;
	/* A plan's "profile" is only ever looked up as a preset: a worker never
	 * opens a path named inside a plan (which may come over the wire), only
	 * one its own command line gives. */
	sl_profile_t prof;
	const sl_profile_t *preset = NULL;
	sl_err prc;
	if (rules && rules->profile) {
		prc = sl_profile_resolve(rules->profile, &prof);
	} else if ((preset = sl_profile_preset(plan->profile)) != NULL) {
		prof = *preset;
		prc = SL_OK;
	} else {
		prc = sl_seterr(SL_ENOTFOUND, "the plan's profile '%.64s' is not a built-in one",
		                plan->profile);
	}
	if (prc != SL_OK) {
		snprintf(msg, sizeof msg, "%s", sl_errmsg());
		if (rules && rules->profile)
			return sl_seterr(SL_ENOTFOUND, "%s: %s", what, msg);
		SL_WARN(SL_SUB_PLAN, "%s: %s; checking the plan's structure only (name one with --profile)",
		        what, msg);
		sl_clearerr();
		return SL_OK;
	}
	sl_cluster_t cl = {.ranks = plan->ranks, .ranks_per_node = plan->ranks_per_node};
	sl_cost_t c;
	memset(&c, 0, sizeof c);
	rc = sl_cost_init(&c, &prof, &cl);
	if (rc != SL_OK) {
		snprintf(msg, sizeof msg, "%s", sl_errmsg());
		return sl_seterr(rc, "%s: profile '%s' with ranks %d, ranks_per_node %d: %s", what,
		                 rules && rules->profile ? rules->profile : plan->profile,
		                 (int)plan->ranks, (int)plan->ranks_per_node, msg);
	}
	order_violations_t v = {.len = 0, .n = 0};
	v.buf[0] = '\0';
	int64_t n = sl_plan_validate(plan, &c, order_collect, &v);
	if (n != 0) {
		sl_cost_fini(&c);
		return sl_seterr(SL_EINVAL, "%s: invalid plan (%lld violation%s): %s%s", what,
		                 (long long)n, n == 1 ? "" : "s", v.buf, n > 5 ? "; ..." : "");
	}
	if (cost) {
		*cost = c;
		if (have_cost)
			*have_cost = 1;
	} else {
		sl_cost_fini(&c);
	}
	return SL_OK;
}

sl_err worker_plan_load(const char *path, const worker_plan_rules_t *rules, sl_plan_t **out,
                        sl_cost_t *cost, int *have_cost)
{
	*out = NULL;
	if (have_cost)
		*have_cost = 0;
	sl_plan_t *plan = NULL;
	sl_err rc = sl_plan_read_json_file(path, &plan);
	if (rc != SL_OK)
		return rc;
	rc = worker_plan_check(plan, path, rules, cost, have_cost);
	if (rc != SL_OK) {
		sl_plan_free(&plan);
		return rc;
	}
	*out = plan;
	return SL_OK;
}
