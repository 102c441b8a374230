/* sluice worker: work orders from sluiced (include/sluice/client.h) turned
 * into the worker's per-group descriptors, so a worker serving the daemon
 * executes exactly what a `--plan` run derives from the same plan. Only the
 * public struct is read here; the libsluice calls live in serve.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/client.h"
#include "worker.h"

static int wire_cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

/* Checks one group of the order; gi names it in messages. */
static sl_err wire_check_group(const sl_work_order_t *wo, int32_t gi, int32_t last_slot,
                               int32_t *scratch)
{
	const sl_order_group_t *g = &wo->groups[gi];
	if (g->slot < 0 || g->slot <= last_slot || (wo->nslots > 0 && g->slot >= wo->nslots))
		return sl_seterr(
		    SL_EINVAL,
		    "work order step %llu: group %d is in slot %d (slots must increase "
		    "within [0, %d))",
		    (unsigned long long)wo->step, (int)gi, (int)g->slot, (int)wo->nslots);
	if (g->nranks < 1 || g->nranks > wo->ranks || !g->ranks)
		return sl_seterr(
		    SL_EINVAL, "work order step %llu slot %d: a ring of %d ranks (job has %d)",
		    (unsigned long long)wo->step, (int)g->slot, (int)g->nranks, (int)wo->ranks);
	int32_t d = g->nranks;
	if (g->position < 0 || g->position >= d || g->ranks[g->position] != wo->rank)
		return sl_seterr(
		    SL_EINVAL,
		    "work order step %llu slot %d: ring position %d does not hold rank %d",
		    (unsigned long long)wo->step, (int)g->slot, (int)g->position, (int)wo->rank);
	memcpy(scratch, g->ranks, (size_t)d * sizeof *scratch);
	qsort(scratch, (size_t)d, sizeof *scratch, wire_cmp_i32);
	for (int32_t k = 0; k < d; k++) {
		if (scratch[k] < 0 || scratch[k] >= wo->ranks)
			return sl_seterr(
			    SL_EINVAL, "work order step %llu slot %d: ring rank %d outside [0, %d)",
			    (unsigned long long)wo->step, (int)g->slot, (int)scratch[k],
			    (int)wo->ranks);
		if (k > 0 && scratch[k] == scratch[k - 1])
			return sl_seterr(
			    SL_EINVAL, "work order step %llu slot %d: rank %d twice in the ring",
			    (unsigned long long)wo->step, (int)g->slot, (int)scratch[k]);
	}
	if (g->prev_rank != g->ranks[(g->position + d - 1) % d] ||
	    g->next_rank != g->ranks[(g->position + 1) % d])
		return sl_seterr(
		    SL_EINVAL,
		    "work order step %llu slot %d: prev/next rank %d/%d do not match the ring",
		    (unsigned long long)wo->step, (int)g->slot, (int)g->prev_rank,
		    (int)g->next_rank);
	if (g->nshards < 0 || (g->nshards > 0 && !g->shards))
		return sl_seterr(SL_EINVAL, "work order step %llu slot %d: %d shards",
		                 (unsigned long long)wo->step, (int)g->slot, (int)g->nshards);
	for (int32_t k = 0; k < g->nshards; k++) {
		const sl_shard_t *sh = &g->shards[k];
		if (sh->seq < 0)
			return sl_seterr(SL_EINVAL,
			                 "work order step %llu slot %d: sequence index %d",
			                 (unsigned long long)wo->step, (int)g->slot, (int)sh->seq);
		if (sh->length < 1 || sh->length > SL_MAX_SEQ_LEN)
			return sl_seterr(
			    SL_EINVAL,
			    "work order step %llu slot %d: sequence %lld has length %lld "
			    "(allowed 1..%lld)",
			    (unsigned long long)wo->step, (int)g->slot, (long long)sh->id,
			    (long long)sh->length, (long long)SL_MAX_SEQ_LEN);
		sl_shard_t z;
		sl_zigzag_shard(sh->length, d, g->position, &z);
		if (sh->padded != z.padded || sh->chunk_tokens != z.chunk_tokens)
			return sl_seterr(
			    SL_EINVAL,
			    "work order step %llu slot %d: sequence %lld of %lld tokens on %d "
			    "ranks has padded %lld / chunk %lld, expected %lld / %lld",
			    (unsigned long long)wo->step, (int)g->slot, (long long)sh->id,
			    (long long)sh->length, (int)d, (long long)sh->padded,
			    (long long)sh->chunk_tokens, (long long)z.padded, (long long)z.chunk_tokens);
	}
	return SL_OK;
}

sl_err worker_order_from_wire(const sl_work_order_t *wo, const worker_shape_t *shape,
                              worker_order_t **out)
{
	*out = NULL;
	SL_CHECK(worker_shape_check(shape));
	if (wo->ranks < 1 || wo->ranks > SL_MAX_RANKS || wo->rank < 0 || wo->rank >= wo->ranks)
		return sl_seterr(SL_EINVAL, "work order step %llu: rank %d of %d ranks",
		                 (unsigned long long)wo->step, (int)wo->rank, (int)wo->ranks);
	if (wo->ngroups < 0 || (wo->ngroups > 0 && !wo->groups))
		return sl_seterr(SL_EINVAL, "work order step %llu: %d groups",
		                 (unsigned long long)wo->step, (int)wo->ngroups);
	int64_t nshards = 0, nring = 0;
	int32_t maxd = 1;
	for (int32_t i = 0; i < wo->ngroups; i++) {
		nshards += wo->groups[i].nshards > 0 ? wo->groups[i].nshards : 0;
		nring += wo->groups[i].nranks > 0 ? wo->groups[i].nranks : 0;
		if (wo->groups[i].nranks > maxd)
			maxd = wo->groups[i].nranks;
	}
	worker_order_t *o = calloc(1, sizeof *o);
	int32_t *scratch = malloc((size_t)(nshards > maxd ? nshards : maxd) * sizeof *scratch);
	sl_err rc = SL_OK;
	if (o) {
		o->work = calloc(wo->ngroups > 0 ? (size_t)wo->ngroups : 1, sizeof *o->work);
		o->shards = calloc(nshards > 0 ? (size_t)nshards : 1, sizeof *o->shards);
		o->rings = calloc(nring > 0 ? (size_t)nring : 1, sizeof *o->rings);
	}
	if (!o || !scratch || !o->work || !o->shards || !o->rings) {
		rc = sl_seterr(SL_ENOMEM, "work order step %llu: out of memory",
		               (unsigned long long)wo->step);
		goto fail;
	}
	o->rank = wo->rank;
	o->nranks = wo->ranks;
	o->shape = *shape;
	int32_t last_slot = -1;
	int64_t sh = 0, rg = 0;
	for (int32_t i = 0; i < wo->ngroups; i++) {
		const sl_order_group_t *g = &wo->groups[i];
		SL_CHECK_GOTO(wire_check_group(wo, i, last_slot, scratch), rc, fail);
		last_slot = g->slot;
		int32_t d = g->nranks;
		worker_group_work_t *w = &o->work[o->nwork++];
		memcpy(o->rings + rg, g->ranks, (size_t)d * sizeof *o->rings);
		w->slot = g->slot;
		w->group = -1;
		w->slot_group = g->group;
		w->d = d;
		w->ring_pos = g->position;
		w->ring = o->rings + rg;
		w->prev_rank = g->prev_rank;
		w->next_rank = g->next_rank;
		w->nseqs = g->nshards;
		w->seqs = o->shards + sh;
		w->heads = shape->heads;
		w->kv_heads = shape->kv_heads;
		w->head_dim = shape->head_dim;
		w->scale = 1.0 / sqrt((double)shape->head_dim);
		int64_t off = 0;
		for (int32_t k = 0; k < g->nshards; k++) {
			const sl_shard_t *in = &g->shards[k];
			worker_seq_shard_t *s = &o->shards[sh + k];
			s->seq = in->seq;
			s->id = in->id;
			s->len = in->length;
			s->padded = in->padded;
			s->chunk = in->chunk_tokens;
			s->local_off = off;
			s->local_len = in->padded / d;
			off += s->local_len;
		}
		w->ntok = off;
		sh += g->nshards;
		rg += d;
	}
	/* A sequence runs once per plan: its inputs are keyed by its index. */
	for (int64_t k = 0; k < sh; k++)
		scratch[k] = o->shards[k].seq;
	qsort(scratch, (size_t)sh, sizeof *scratch, wire_cmp_i32);
	for (int64_t k = 1; k < sh; k++)
		if (scratch[k] == scratch[k - 1]) {
			rc = sl_seterr(SL_EINVAL,
			               "work order step %llu: sequence index %d appears twice",
			               (unsigned long long)wo->step, (int)scratch[k]);
			goto fail;
		}
	free(scratch);
	*out = o;
	return SL_OK;
fail:
	free(scratch);
	worker_order_free(&o);
	return rc;
}
