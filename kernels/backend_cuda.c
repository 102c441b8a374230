/* sluice kernels: the worker's "cuda" backend (worker/backend.h): bf16
 * tensors on the GPU, fp32 accumulation, K/V and dK/dV passed round the
 * group's ring with NCCL send/recv on one global communicator (ring.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern_backend.h"
#include "kern.h"
#include "kern_math.h"
#include "sluice/log.h"

typedef struct cuda_state {
	kern_ctx_t ctx;
	kern_group_t grp;
	int have_group;
	int have_dout;
	int32_t slot;
	void *stage; /* host staging for conversions */
	size_t stage_cap;
} cuda_state_t;

/* Re-records the calling thread's error with the rank and slot in front. */
static sl_err with_where(sl_err rc, const cuda_state_t *s, const char *what)
{
	char msg[768];
	if (rc == SL_OK)
		return rc;
	snprintf(msg, sizeof(msg), "%s", sl_errmsg());
	if (s->slot < 0)
		return sl_seterr(rc, "cuda backend, rank %d, %s: %s", (int)s->ctx.rank, what, msg);
	return sl_seterr(rc, "cuda backend, rank %d, slot %d, %s: %s", (int)s->ctx.rank,
	                 (int)s->slot, what, msg);
}

static sl_err stage_reserve(cuda_state_t *s, size_t bytes)
{
	void *p;
	if (bytes <= s->stage_cap)
		return SL_OK;
	p = realloc(s->stage, bytes);
	if (p == NULL)
		return sl_seterr(SL_ENOMEM, "%s:%d: %zu bytes of host staging", __FILE__, __LINE__,
		                 bytes);
	s->stage = p;
	s->stage_cap = bytes;
	return SL_OK;
}

/* Uploads n doubles as bf16 (the core's inputs are exact in bf16). */
static sl_err upload_bf16(cuda_state_t *s, void *dst, const double *src, int64_t n)
{
	uint16_t *h;
	SL_CHECK(stage_reserve(s, (size_t)n * 2));
	h = s->stage;
	for (int64_t i = 0; i < n; i++)
		h[i] = kern_f32_to_bf16((float)src[i]);
	KERN_CUDA(cudaMemcpy(dst, h, (size_t)n * 2, cudaMemcpyHostToDevice));
	return SL_OK;
}

static sl_err download_bf16(cuda_state_t *s, double *dst, const void *src, int64_t n)
{
	uint16_t *h;
	SL_CHECK(stage_reserve(s, (size_t)n * 2));
	h = s->stage;
	KERN_CUDA(cudaMemcpy(h, src, (size_t)n * 2, cudaMemcpyDeviceToHost));
	for (int64_t i = 0; i < n; i++)
		dst[i] = (double)kern_bf16_to_f32(h[i]);
	return SL_OK;
}

static sl_err download_f32(cuda_state_t *s, double *dst, const float *src, int64_t n)
{
	float *h;
	SL_CHECK(stage_reserve(s, (size_t)n * 4));
	h = s->stage;
	KERN_CUDA(cudaMemcpy(h, src, (size_t)n * 4, cudaMemcpyDeviceToHost));
	for (int64_t i = 0; i < n; i++)
		dst[i] = (double)h[i];
	return SL_OK;
}

static void cuda_fini(void **state)
{
	cuda_state_t *s;
	if (state == NULL || *state == NULL)
		return;
	s = *state;
	if (s->have_group)
		kern_group_free(&s->grp);
	kern_ctx_fini(&s->ctx);
	free(s->stage);
	free(s);
	*state = NULL;
}

static sl_err cuda_init(const worker_backend_cfg_t *cfg, void **state)
{
	cuda_state_t *s;
	int ndev = 0;
	unsigned char id[512];
	sl_err rc;
	*state = NULL;
	if (!kern_head_dim_supported(cfg->head_dim))
		return sl_seterr(SL_EINVAL, "cuda backend: head_dim %d not supported (64 or 128)",
		                 (int)cfg->head_dim);
	if (cfg->heads <= 0 || cfg->kv_heads <= 0 || cfg->heads % cfg->kv_heads != 0)
		return sl_seterr(SL_EINVAL,
		                 "cuda backend: heads %d must be a positive multiple of kv_heads %d",
		                 (int)cfg->heads, (int)cfg->kv_heads);
	if (kern_nccl_id_size() > sizeof(id))
		return sl_seterr(SL_EINTERNAL, "%s:%d: ncclUniqueId of %zu bytes", __FILE__,
		                 __LINE__, kern_nccl_id_size());
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return sl_seterr(SL_ENOMEM, "cuda backend: state");
	s->slot = -1;
	s->ctx.rank = cfg->rank;
	rc = kern_device_count(&ndev);
	if (rc == SL_OK && ndev == 0)
		rc = sl_seterr(SL_ECUDA, "no CUDA device visible (CUDA_VISIBLE_DEVICES=%s)",
		               getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES")
		                                              : "unset");
	if (rc != SL_OK)
		goto fail;
	memset(id, 0, sizeof(id));
	if (cfg->nranks > 1) {
		if (cfg->rank == 0) {
			rc = kern_nccl_id_make(id);
			if (rc != SL_OK)
				goto fail;
		}
		rc = cfg->boot.bcast(cfg->boot.ctx, 0, id, kern_nccl_id_size());
		if (rc != SL_OK)
			goto fail;
	}
	rc = kern_ctx_init(&s->ctx, cfg->rank, cfg->nranks, cfg->local_rank % ndev, id);
	if (rc != SL_OK)
		goto fail;
	SL_INFO(SL_SUB_KERN, "cuda backend: rank %d on device %d of %d (fwd %s, bwd %s)",
	        (int)cfg->rank, (int)s->ctx.device, ndev,
	        kern_fwd_name(cfg->head_dim, s->ctx.fwd_variant),
	        kern_bwd_name(cfg->head_dim, s->ctx.bwd_variant));
	*state = s;
	return SL_OK;
fail:
	rc = with_where(rc, s, "init");
	cuda_fini((void **)&s);
	return rc;
}

static sl_err cuda_begin(void *state, const worker_group_work_t *w, const worker_inputs_t *in)
{
	cuda_state_t *s = state;
	kern_seg_t *segs;
	sl_err rc;
	s->slot = w->slot;
	if (s->have_group)
		return with_where(sl_seterr(SL_EINVAL, "begin without end"), s, "begin");
	if (w->nseqs < 1 || in == NULL || in->q == NULL || in->k == NULL || in->v == NULL)
		return with_where(sl_seterr(SL_EINVAL, "no sequences or inputs"), s, "begin");
	segs = calloc((size_t)w->nseqs, sizeof(*segs));
	if (segs == NULL)
		return with_where(sl_seterr(SL_ENOMEM, "%d segments", (int)w->nseqs), s, "begin");
	for (int32_t i = 0; i < w->nseqs; i++) {
		const worker_seq_shard_t *q = &w->seqs[i];
		if (q->local_len > INT32_MAX / 2 || q->chunk > INT32_MAX / 2) {
			free(segs);
			return with_where(sl_seterr(SL_ERANGE, "sequence %lld: shard of %lld tokens",
			                            (long long)q->id, (long long)q->local_len),
			                  s, "begin");
		}
		segs[i].off = q->local_off;
		segs[i].len = (int32_t)q->local_len;
		segs[i].chunk = (int32_t)q->chunk; /* sl_zigzag_shard's (d == 1: the whole) */
		segs[i].seqlen = q->len;
	}
	rc = kern_group_alloc(&s->ctx, &s->grp, w->d, w->ring_pos, w->prev_rank, w->next_rank,
	                      segs, w->nseqs, w->heads, w->kv_heads, w->head_dim, 1,
	                      (float)w->scale);
	free(segs);
	if (rc != SL_OK)
		return with_where(rc, s, "begin");
	s->have_group = 1;
	if (s->grp.ntok != w->ntok)
		return with_where(sl_seterr(SL_EINVAL, "work order has %lld tokens, shards %lld",
		                            (long long)w->ntok, (long long)s->grp.ntok),
		                  s, "begin");
	{
		const int64_t qn = kern_group_qsize(&s->grp), kvn = kern_group_kvsize(&s->grp);
		rc = upload_bf16(s, s->grp.q, in->q, qn);
		if (rc == SL_OK)
			rc = upload_bf16(s, s->grp.kv[0], in->k, kvn);
		if (rc == SL_OK)
			rc = upload_bf16(s, (uint16_t *)s->grp.kv[0] + kvn, in->v, kvn);
		s->have_dout = in->dout != NULL;
		if (rc == SL_OK && in->dout != NULL)
			rc = upload_bf16(s, s->grp.dout, in->dout, qn);
	}
	return with_where(rc, s, "upload");
}

static void copy_stats(worker_pass_stats_t *st, const kern_pass_stats_t *k)
{
	if (st == NULL)
		return;
	st->wall_ms = k->wall_ms;
	st->compute_ms = k->compute_ms;
	st->comm_ms = k->comm_ms;
	st->bytes_sent = k->bytes_sent;
	st->bytes_recv = k->bytes_recv;
	st->hops = k->hops;
}

static sl_err cuda_forward(void *state, const worker_group_work_t *w, worker_pass_stats_t *st)
{
	cuda_state_t *s = state;
	kern_pass_stats_t k;
	sl_err rc;
	s->slot = w->slot;
	if (!s->have_group)
		return with_where(sl_seterr(SL_EINVAL, "forward without begin"), s, "forward");
	rc = kern_ring_forward(&s->ctx, &s->grp, &k);
	if (rc != SL_OK)
		return with_where(rc, s, "forward");
	copy_stats(st, &k);
	SL_DEBUG(SL_SUB_KERN, "rank %d slot %d fwd: %.3f ms wall, %.3f compute, %.3f comm",
	         (int)s->ctx.rank, (int)w->slot, k.wall_ms, k.compute_ms, k.comm_ms);
	return SL_OK;
}

static sl_err cuda_backward(void *state, const worker_group_work_t *w, worker_pass_stats_t *st)
{
	cuda_state_t *s = state;
	kern_pass_stats_t k;
	sl_err rc;
	s->slot = w->slot;
	if (!s->have_group || !s->have_dout)
		return with_where(sl_seterr(SL_EINVAL, "backward needs begin with dout"), s,
		                  "backward");
	rc = kern_ring_backward(&s->ctx, &s->grp, &k);
	if (rc != SL_OK)
		return with_where(rc, s, "backward");
	copy_stats(st, &k);
	SL_DEBUG(SL_SUB_KERN, "rank %d slot %d bwd: %.3f ms wall, %.3f compute, %.3f comm",
	         (int)s->ctx.rank, (int)w->slot, k.wall_ms, k.compute_ms, k.comm_ms);
	return SL_OK;
}

static sl_err cuda_end(void *state, const worker_group_work_t *w, worker_outputs_t *out)
{
	cuda_state_t *s = state;
	sl_err rc = SL_OK;
	s->slot = w->slot;
	if (!s->have_group)
		return with_where(sl_seterr(SL_EINVAL, "end without begin"), s, "end");
	if (out != NULL) {
		const kern_group_t *g = &s->grp;
		const int64_t qn = kern_group_qsize(g), kvn = kern_group_kvsize(g);
		if (rc == SL_OK && out->out != NULL)
			rc = download_bf16(s, out->out, g->o, qn);
		if (rc == SL_OK && out->lse != NULL)
			rc = download_f32(s, out->lse, g->lse, g->ntok * g->heads);
		if (rc == SL_OK && out->dq != NULL)
			rc = download_f32(s, out->dq, g->dq, qn);
		if (rc == SL_OK && out->dk != NULL)
			rc = download_f32(s, out->dk, g->dkv_out, kvn);
		if (rc == SL_OK && out->dv != NULL)
			rc = download_f32(s, out->dv, g->dkv_out + kvn, kvn);
	}
	kern_group_free(&s->grp);
	s->have_group = 0;
	return with_where(rc, s, "download");
}

const worker_backend_ops_t kern_cuda_backend_ops = {
    .name = "cuda",
    .check_tol = 1e-2,
    .init = cuda_init,
    .begin = cuda_begin,
    .forward = cuda_forward,
    .backward = cuda_backward,
    .end = cuda_end,
    .fini = cuda_fini,
};
