/* sluice worker: include/sluice/ring.h, a framework's entry to one rank's ring
 * attention. The CPU engine drives the worker's own CPU backend
 * (backend_cpu.c) over the worker's ZeroMQ mesh, so a training loop on CPU
 * (sluice.torch in CI) runs exactly the code sluice-worker runs; the CUDA
 * engine (kernels/ring_api.c) runs the kernels library's NCCL ring. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/ring.h"
#include "worker.h"
#ifdef SLUICE_RING_HAVE_CUDA
#include "kern.h"
#endif

struct sl_ring {
	int engine;
	int32_t rank, nranks;
	/* CPU */
	worker_mesh_t *mesh;
	void *cpu; /* worker_cpu_backend_ops' state */
	/* CUDA */
	void *kern; /* kern_ring_api_t */
};

sl_err sl_ring_new_cpu(const char *run_dir, int32_t rank, int32_t nranks, int timeout_ms,
                       sl_ring_t **out)
{
	sl_err rc = SL_OK;
	sl_ring_t *r = NULL;
	*out = NULL;
	if (!run_dir || strlen(run_dir) > WORKER_RUN_DIR_MAX)
		return sl_seterr(SL_EINVAL, "sl_ring_new_cpu: run_dir %s%s (limit %d characters)",
		                 run_dir ? "is too long: " : "is NULL", run_dir ? run_dir : "",
		                 WORKER_RUN_DIR_MAX);
	if (nranks < 1 || rank < 0 || rank >= nranks)
		return sl_seterr(SL_ERANGE, "sl_ring_new_cpu: rank %d is not in [0, nranks=%d)",
		                 (int)rank, (int)nranks);
	if (timeout_ms < 1)
		return sl_seterr(SL_ERANGE, "sl_ring_new_cpu: timeout_ms %d must be >= 1", timeout_ms);
	r = calloc(1, sizeof *r);
	if (!r)
		return sl_seterr(SL_ENOMEM, "sl_ring_new_cpu: out of memory");
	r->engine = SL_RING_CPU;
	r->rank = rank;
	r->nranks = nranks;
	SL_CHECK_GOTO(worker_mesh_new(run_dir, rank, nranks, timeout_ms, &r->mesh), rc, fail);
	/* Every rank is bound before anyone sends: a message to a socket nobody
	 * has bound yet would only wait in ZeroMQ, but a rank that never came
	 * should fail here, by name, not in the middle of a training step. */
	SL_CHECK_GOTO(worker_mesh_barrier(r->mesh), rc, fail);
	worker_backend_cfg_t cfg = {.rank = rank,
	                            .nranks = nranks,
	                            .local_rank = rank,
	                            .local_size = nranks,
	                            .run_dir = run_dir,
	                            .boot = {.ctx = r->mesh,
	                                     .bcast = worker_mesh_bcast,
	                                     .barrier = worker_mesh_barrier}};
	SL_CHECK_GOTO(worker_cpu_backend_ops.init(&cfg, &r->cpu), rc, fail);
	*out = r;
	return SL_OK;
fail:
	sl_ring_free(&r);
	return rc;
}

int sl_ring_have_cuda(void)
{
#ifdef SLUICE_RING_HAVE_CUDA
	return 1;
#else
	return 0;
#endif
}

size_t sl_ring_nccl_id_size(void)
{
#ifdef SLUICE_RING_HAVE_CUDA
	return kern_nccl_id_size();
#else
	return 0;
#endif
}

sl_err sl_ring_nccl_id(void *id)
{
#ifdef SLUICE_RING_HAVE_CUDA
	return kern_nccl_id_make(id);
#else
	(void)id;
	return sl_seterr(SL_ENOTFOUND, "sl_ring_nccl_id: libsluice_ring was built without CUDA");
#endif
}

sl_err sl_ring_new_cuda(int32_t rank, int32_t nranks, int32_t device, const void *nccl_id,
                        sl_ring_t **out)
{
	*out = NULL;
#ifdef SLUICE_RING_HAVE_CUDA
	if (nranks < 1 || rank < 0 || rank >= nranks)
		return sl_seterr(SL_ERANGE, "sl_ring_new_cuda: rank %d is not in [0, nranks=%d)",
		                 (int)rank, (int)nranks);
	sl_ring_t *r = calloc(1, sizeof *r);
	if (!r)
		return sl_seterr(SL_ENOMEM, "sl_ring_new_cuda: out of memory");
	r->engine = SL_RING_CUDA;
	r->rank = rank;
	r->nranks = nranks;
	sl_err rc = kern_ring_api_new(rank, nranks, device, nccl_id, &r->kern);
	if (rc != SL_OK) {
		free(r);
		return rc;
	}
	*out = r;
	return SL_OK;
#else
	(void)rank;
	(void)nranks;
	(void)device;
	(void)nccl_id;
	return sl_seterr(SL_ENOTFOUND, "sl_ring_new_cuda: libsluice_ring was built without CUDA "
	                               "(configure with -DSLUICE_CUDA=ON on a machine with nvcc and NCCL)");
#endif
}

void sl_ring_free(sl_ring_t **pr)
{
	if (!pr || !*pr)
		return;
	sl_ring_t *r = *pr;
	if (r->cpu)
		worker_cpu_backend_ops.fini(&r->cpu);
	worker_mesh_free(&r->mesh);
#ifdef SLUICE_RING_HAVE_CUDA
	kern_ring_api_free(&r->kern);
#endif
	free(r);
	*pr = NULL;
}

int sl_ring_engine(const sl_ring_t *r)
{
	return r->engine;
}

void sl_ring_set_epoch(sl_ring_t *r, int64_t epoch)
{
	if (r->mesh)
		worker_mesh_set_epoch(r->mesh, epoch);
}

/* The work descriptor of g: the shard layout of worker/backend.h (the same
 * rule worker_order_build applies to a plan's group). *seqs is malloc'd and
 * the caller's; w->ring borrows g->ring. */
static sl_err ring_work(const sl_ring_t *r, const sl_ring_group_t *g, worker_group_work_t *w,
                        worker_seq_shard_t **seqs)
{
	*seqs = NULL;
	memset(w, 0, sizeof *w);
	if (!g || !g->ring || g->d < 1 || g->d > r->nranks)
		return sl_seterr(SL_EINVAL, "sl_ring: group of %d ranks (this run has %d) or no ring",
		                 g ? (int)g->d : 0, (int)r->nranks);
	if (g->ring_pos < 0 || g->ring_pos >= g->d || g->ring[g->ring_pos] != r->rank)
		return sl_seterr(SL_EINVAL, "sl_ring: slot %d: ring position %d is not rank %d",
		                 (int)g->slot, (int)g->ring_pos, (int)r->rank);
	for (int32_t i = 0; i < g->d; i++) {
		if (g->ring[i] < 0 || g->ring[i] >= r->nranks)
			return sl_seterr(SL_ERANGE, "sl_ring: slot %d: ring[%d] = %d is not in [0, %d)",
			                 (int)g->slot, (int)i, (int)g->ring[i], (int)r->nranks);
		for (int32_t j = 0; j < i; j++)
			if (g->ring[j] == g->ring[i])
				return sl_seterr(SL_EINVAL, "sl_ring: slot %d: rank %d is twice in the ring",
				                 (int)g->slot, (int)g->ring[i]);
	}
	worker_shape_t shape = {.heads = g->heads, .kv_heads = g->kv_heads, .head_dim = g->head_dim};
	SL_CHECK(worker_shape_check(&shape));
	if (g->nseqs < 0 || (g->nseqs > 0 && !g->lengths))
		return sl_seterr(SL_EINVAL, "sl_ring: slot %d: %d sequences without lengths",
		                 (int)g->slot, (int)g->nseqs);
	if (!(g->scale >= 0) || isinf(g->scale))
		return sl_seterr(SL_ERANGE, "sl_ring: scale %g must be finite and >= 0", g->scale);
	*seqs = calloc(g->nseqs > 0 ? (size_t)g->nseqs : 1, sizeof **seqs);
	if (!*seqs)
		return sl_seterr(SL_ENOMEM, "sl_ring: out of memory");
	int64_t off = 0;
	for (int32_t i = 0; i < g->nseqs; i++) {
		int64_t s = g->lengths[i];
		if (s < 1 || s > SL_MAX_SEQ_LEN) {
			free(*seqs);
			*seqs = NULL;
			return sl_seterr(SL_ERANGE, "sl_ring: slot %d: lengths[%d] = %lld is not in [1, %lld]",
			                 (int)g->slot, (int)i, (long long)s, (long long)SL_MAX_SEQ_LEN);
		}
		worker_seq_shard_t *sh = &(*seqs)[i];
		sh->seq = i;
		sh->id = i;
		sh->len = s;
		sl_shard_t z;
		sl_zigzag_shard(s, g->d, 0, &z); /* padded and chunk: the same at every position */
		sh->padded = z.padded;
		sh->chunk = z.chunk_tokens;
		sh->local_off = off;
		sh->local_len = sh->padded / g->d;
		off += sh->local_len;
	}
	w->slot = g->slot;
	w->group = -1;
	w->d = g->d;
	w->ring_pos = g->ring_pos;
	w->ring = g->ring;
	w->prev_rank = g->ring[(g->ring_pos - 1 + g->d) % g->d];
	w->next_rank = g->ring[(g->ring_pos + 1) % g->d];
	w->nseqs = g->nseqs;
	w->seqs = *seqs;
	w->ntok = off;
	w->heads = g->heads;
	w->kv_heads = g->kv_heads;
	w->head_dim = g->head_dim;
	w->scale = g->scale > 0 ? g->scale : 1.0 / sqrt((double)g->head_dim);
	return SL_OK;
}

sl_err sl_ring_layout(const sl_ring_t *r, const sl_ring_group_t *g, int64_t *ntok)
{
	worker_group_work_t w;
	worker_seq_shard_t *seqs = NULL;
	*ntok = 0;
	SL_CHECK(ring_work(r, g, &w, &seqs));
	*ntok = w.ntok;
	free(seqs);
	return SL_OK;
}

sl_err sl_ring_forward(sl_ring_t *r, const sl_ring_group_t *g, const void *q, const void *k,
                       const void *v, void *o, void *lse, void *stream)
{
	worker_group_work_t w;
	worker_seq_shard_t *seqs = NULL;
	worker_pass_stats_t st;
	sl_err rc = SL_OK;
	SL_CHECK(ring_work(r, g, &w, &seqs));
	if (r->engine == SL_RING_CUDA) {
#ifdef SLUICE_RING_HAVE_CUDA
		rc = kern_ring_api_forward(r->kern, &w, q, k, v, o, lse, stream);
#endif
		goto out;
	}
	(void)stream;
	/* The CPU backend's begin copies a dout too; the forward never reads
	 * it, so q (same shape) stands in. */
	worker_inputs_t in = {.q = q, .k = k, .v = v, .dout = q};
	worker_outputs_t res = {.out = o, .lse = lse};
	SL_CHECK_GOTO(worker_cpu_backend_ops.begin(r->cpu, &w, &in), rc, out);
	SL_CHECK_GOTO(worker_cpu_backend_ops.forward(r->cpu, &w, &st), rc, out);
	rc = worker_cpu_backend_ops.end(r->cpu, &w, &res);
out:
	free(seqs);
	return rc;
}

sl_err sl_ring_backward(sl_ring_t *r, const sl_ring_group_t *g, const void *q, const void *k,
                        const void *v, const void *o, const void *lse, const void *dout,
                        void *dq, void *dk, void *dv, void *stream)
{
	worker_group_work_t w;
	worker_seq_shard_t *seqs = NULL;
	worker_pass_stats_t st;
	sl_err rc = SL_OK;
	SL_CHECK(ring_work(r, g, &w, &seqs));
	if (r->engine == SL_RING_CUDA) {
#ifdef SLUICE_RING_HAVE_CUDA
		rc = kern_ring_api_backward(r->kern, &w, q, k, v, o, lse, dout, dq, dk, dv, stream);
#endif
		goto out;
	}
	(void)o;
	(void)lse;
	(void)stream;
	/* The CPU backend keeps a forward's O and LSE only until its group ends,
	 * and a model runs other layers' forwards in between: recompute them
	 * (fp64, deterministic: the same values the forward returned). */
	worker_inputs_t in = {.q = q, .k = k, .v = v, .dout = dout};
	worker_outputs_t res = {.dq = dq, .dk = dk, .dv = dv};
	SL_CHECK_GOTO(worker_cpu_backend_ops.begin(r->cpu, &w, &in), rc, out);
	SL_CHECK_GOTO(worker_cpu_backend_ops.forward(r->cpu, &w, &st), rc, out);
	SL_CHECK_GOTO(worker_cpu_backend_ops.backward(r->cpu, &w, &st), rc, out);
	rc = worker_cpu_backend_ops.end(r->cpu, &w, &res);
out:
	free(seqs);
	return rc;
}
