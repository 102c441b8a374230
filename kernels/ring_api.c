/* sluice kernels: the CUDA engine of include/sluice/ring.h (worker/ring_api.c
 * dispatches here). Each call builds a kern_group_t for the work descriptor,
 * copies the caller's tensors into it on the device, runs the NCCL ring
 * (ring.c) and copies the results back, all ordered after the caller's stream
 * (PyTorch's current stream for sluice.torch). The group's own buffers keep
 * ring.c's double-buffered K/V schedule unchanged; the device-to-device
 * copies cost a few percent of the attention they feed. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "sluice/log.h"
#include "kern.h"

typedef struct kern_ring_api {
	kern_ctx_t ctx;
} kern_ring_api_t;

sl_err kern_ring_api_new(int32_t rank, int32_t nranks, int32_t device, const void *nccl_id,
                         void **out)
{
	*out = NULL;
	kern_ring_api_t *a = calloc(1, sizeof *a);
	if (!a)
		return sl_seterr(SL_ENOMEM, "sl_ring_new_cuda: out of memory");
	a->ctx.fwd_variant = -1;
	a->ctx.bwd_variant = -1;
	sl_err rc = kern_ctx_init(&a->ctx, rank, nranks, device, nccl_id);
	if (rc != SL_OK) {
		kern_ctx_fini(&a->ctx);
		free(a);
		return rc;
	}
	*out = a;
	return SL_OK;
}

void kern_ring_api_free(void **api)
{
	if (!api || !*api)
		return;
	kern_ring_api_t *a = *api;
	kern_ctx_fini(&a->ctx);
	free(a);
	*api = NULL;
}

/* Allocates g for w (segments in the kernels' layout). */
static sl_err api_group(kern_ring_api_t *a, const worker_group_work_t *w, kern_group_t *g)
{
	sl_err rc = SL_OK;
	kern_seg_t *segs = calloc(w->nseqs > 0 ? (size_t)w->nseqs : 1, sizeof *segs);
	if (!segs)
		return sl_seterr(SL_ENOMEM, "sl_ring: out of memory");
	for (int32_t i = 0; i < w->nseqs; i++) {
		const worker_seq_shard_t *s = &w->seqs[i];
		segs[i].off = s->local_off;
		segs[i].len = (int32_t)s->local_len;
		segs[i].chunk = (int32_t)s->chunk;
		segs[i].seqlen = s->len;
	}
	memset(g, 0, sizeof *g);
	rc = kern_group_alloc(&a->ctx, g, w->d, w->ring_pos, w->prev_rank, w->next_rank, segs,
	                      w->nseqs, w->heads, w->kv_heads, w->head_dim, 1, (float)w->scale);
	free(segs);
	return rc;
}

/* Makes the ctx's compute stream wait for everything queued on the caller's
 * stream so far. */
static sl_err api_after(kern_ring_api_t *a, cudaStream_t user)
{
	cudaEvent_t ev = NULL;
	sl_err rc = SL_OK;
	KERN_CUDA(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
	KERN_CUDA_GOTO(cudaEventRecord(ev, user), rc, out);
	KERN_CUDA_GOTO(cudaStreamWaitEvent(a->ctx.compute, ev, 0), rc, out);
out:
	cudaEventDestroy(ev);
	return rc;
}

/* Orders g's compute stream after the caller's stream and copies q, k, v
 * (bf16, the group's shapes) into the group: q into g->q, K then V into
 * g->kv[0] (ring.c's own-shard buffer). */
static sl_err api_upload(kern_ring_api_t *a, kern_group_t *g, cudaStream_t us, const void *q,
                         const void *k, const void *v)
{
	const size_t qb = (size_t)kern_group_qsize(g) * 2, kb = (size_t)kern_group_kvsize(g) * 2;
	cudaStream_t cs = a->ctx.compute;
	SL_CHECK(api_after(a, us));
	KERN_CUDA(cudaMemcpyAsync(g->q, q, qb, cudaMemcpyDeviceToDevice, cs));
	KERN_CUDA(cudaMemcpyAsync(g->kv[0], k, kb, cudaMemcpyDeviceToDevice, cs));
	KERN_CUDA(cudaMemcpyAsync((char *)g->kv[0] + kb, v, kb, cudaMemcpyDeviceToDevice, cs));
	return SL_OK;
}

sl_err kern_ring_api_forward(void *api, const struct worker_group_work *w, const void *q,
                             const void *k, const void *v, void *o, void *lse, void *stream)
{
	kern_ring_api_t *a = api;
	kern_group_t g;
	kern_pass_stats_t st;
	cudaStream_t us = (cudaStream_t)stream;
	sl_err rc = SL_OK;
	if (w->ntok == 0)
		return SL_OK;
	SL_CHECK(api_group(a, w, &g));
	const size_t qb = (size_t)kern_group_qsize(&g) * 2;
	const size_t lb = (size_t)g.ntok * (size_t)g.heads * 4;
	SL_CHECK_GOTO(api_upload(a, &g, us, q, k, v), rc, out);
	SL_CHECK_GOTO(kern_ring_forward(&a->ctx, &g, &st), rc, out); /* returns when done */
	KERN_CUDA_GOTO(cudaMemcpyAsync(o, g.o, qb, cudaMemcpyDeviceToDevice, us), rc, out);
	KERN_CUDA_GOTO(cudaMemcpyAsync(lse, g.lse, lb, cudaMemcpyDeviceToDevice, us), rc, out);
	/* g's buffers are freed below; the copies out of them must be done. */
	KERN_CUDA_GOTO(cudaStreamSynchronize(us), rc, out);
out:
	kern_group_free(&g);
	return rc;
}

sl_err kern_ring_api_backward(void *api, const struct worker_group_work *w, const void *q,
                              const void *k, const void *v, const void *o, const void *lse,
                              const void *dout, void *dq, void *dk, void *dv, void *stream)
{
	kern_ring_api_t *a = api;
	kern_group_t g;
	kern_pass_stats_t st;
	cudaStream_t us = (cudaStream_t)stream;
	sl_err rc = SL_OK;
	if (w->ntok == 0)
		return SL_OK;
	SL_CHECK(api_group(a, w, &g));
	const size_t qb = (size_t)kern_group_qsize(&g) * 2, kb = (size_t)kern_group_kvsize(&g) * 2;
	const size_t lb = (size_t)g.ntok * (size_t)g.heads * 4;
	SL_CHECK_GOTO(api_upload(a, &g, us, q, k, v), rc, out);
	cudaStream_t cs = a->ctx.compute;
	KERN_CUDA_GOTO(cudaMemcpyAsync(g.o, o, qb, cudaMemcpyDeviceToDevice, cs), rc, out);
	KERN_CUDA_GOTO(cudaMemcpyAsync(g.dout, dout, qb, cudaMemcpyDeviceToDevice, cs), rc, out);
	KERN_CUDA_GOTO(cudaMemcpyAsync(g.lse, lse, lb, cudaMemcpyDeviceToDevice, cs), rc, out);
	g.have_fwd = 1; /* o and lse are the caller's forward's */
	SL_CHECK_GOTO(kern_ring_backward(&a->ctx, &g, &st), rc, out); /* returns when done */
	KERN_CUDA_GOTO(cudaMemcpyAsync(dq, g.dq, qb * 2, cudaMemcpyDeviceToDevice, us), rc, out);
	KERN_CUDA_GOTO(cudaMemcpyAsync(dk, g.dkv_out, kb * 2, cudaMemcpyDeviceToDevice, us), rc, out);
	KERN_CUDA_GOTO(cudaMemcpyAsync(dv, (char *)g.dkv_out + kb * 2, kb * 2,
	                               cudaMemcpyDeviceToDevice, us), rc, out);
	KERN_CUDA_GOTO(cudaStreamSynchronize(us), rc, out);
out:
	kern_group_free(&g);
	return rc;
}
