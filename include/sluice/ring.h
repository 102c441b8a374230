/* sluice: one rank's part of a plan's ring attention, called from a training
 * framework (library libsluice_ring; sluice.torch wraps it with ctypes).
 *
 * A plan group of d ranks runs its sequences as one packed, variable-length,
 * causal, grouped-query attention, each sequence zigzag-sharded over the
 * ring (worker/backend.h, "layout": padded to ceil(s / 2d) * 2d for d > 1,
 * ring position i holds chunks i and 2d-1-i). Every rank of the group calls
 * sl_ring_forward / sl_ring_backward with its own shard of q, k, v; K/V (and
 * in the backward dK/dV) travel round the ring.
 *
 * Two engines, one interface:
 *  - CPU (sl_ring_new_cpu): fp64 host tensors, the worker's CPU backend
 *    (worker/backend_cpu.c) over the worker's ZeroMQ mesh (ipc:// sockets in
 *    a directory every rank can reach), so CI runs the worker's own code;
 *  - CUDA (sl_ring_new_cuda, only in a CUDA build): bf16 device tensors, the
 *    kernels library's ring over one NCCL communicator, ordered after the
 *    caller's stream.
 *
 * Tensors are contiguous, row-major: Q, O, dO, dQ [ntok][H][D]; K, V, dK, dV
 * [ntok][KH][D]; LSE [ntok][H] (natural log, -inf for padding rows).
 * Thread safety: one thread at a time per sl_ring_t. */
#ifndef SLUICE_RING_H
#define SLUICE_RING_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_ring sl_ring_t;

/* One rank's part of one group execution. Borrowed for the call. Every rank
 * of the ring must make the same sequence of calls for the same slot (the
 * mesh delivers one sender's messages in order and matches the oldest). */
typedef struct sl_ring_group {
	int32_t slot;            /* the plan slot (tags the ring's messages) */
	int32_t d;               /* ranks in the ring */
	int32_t ring_pos;        /* this rank's position, ring[ring_pos] == rank */
	const int32_t *ring;     /* [d] global ranks in ring order */
	int32_t nseqs;           /* sequences, in packing order */
	const int64_t *lengths;  /* [nseqs] real lengths s (tokens) */
	int32_t heads, kv_heads, head_dim;
	double scale;            /* softmax scale; 0 means 1 / sqrt(head_dim) */
} sl_ring_group_t;

/* Engines (sl_ring_engine). */
enum { SL_RING_CPU = 0, SL_RING_CUDA = 1 };

/* Binds rank's mesh socket in run_dir (at most 80 characters; every rank
 * uses the same directory) and waits until all nranks ranks have bound
 * theirs. timeout_ms bounds every wait. *out is the caller's (sl_ring_free). */
sl_err sl_ring_new_cpu(const char *run_dir, int32_t rank, int32_t nranks, int timeout_ms,
                       sl_ring_t **out);
/* CUDA engine on device `device`: NCCL communicator over nranks ranks from
 * nccl_id (sl_ring_nccl_id_size() bytes made by one rank with
 * sl_ring_nccl_id and passed to every rank by the caller). SL_ENOTFOUND in a
 * build without CUDA. */
sl_err sl_ring_new_cuda(int32_t rank, int32_t nranks, int32_t device, const void *nccl_id,
                        sl_ring_t **out);
/* 1 when the library was built with the CUDA engine. */
int sl_ring_have_cuda(void);
/* Size of an NCCL unique id (0 without CUDA), and making one. */
size_t sl_ring_nccl_id_size(void);
sl_err sl_ring_nccl_id(void *id);
/* Frees the engine and nulls *r; safe on NULL. */
void sl_ring_free(sl_ring_t **r);
/* SL_RING_CPU or SL_RING_CUDA. */
int sl_ring_engine(const sl_ring_t *r);
/* Messages from now on belong to epoch (use the training step): a rank a
 * step ahead never meets this step's shards. CPU engine only (NCCL's
 * in-order streams need none); a no-op for CUDA. */
void sl_ring_set_epoch(sl_ring_t *r, int64_t epoch);

/* Checks g (ranks, ring position, shapes, lengths) and returns the rank's
 * local token count (the first dimension of every tensor) in *ntok. */
sl_err sl_ring_layout(const sl_ring_t *r, const sl_ring_group_t *g, int64_t *ntok);

/* Forward: o and lse of the local queries. CPU: double host pointers (o, lse
 * double). CUDA: q, k, v, o bf16 device pointers, lse float, after every
 * prior work on stream (a cudaStream_t; NULL is the legacy default stream)
 * and before any later work on it. Collective over the ring. */
sl_err sl_ring_forward(sl_ring_t *r, const sl_ring_group_t *g, const void *q, const void *k,
                       const void *v, void *o, void *lse, void *stream);
/* Backward: dq, dk, dv of the local tokens from the same q, k, v, the
 * forward's o and lse, and dout. CPU: all double (the forward is recomputed
 * from q, k, v; o and lse may be NULL). CUDA: q, k, v, o, dout bf16; lse,
 * dq, dk, dv float. Collective over the ring. */
sl_err sl_ring_backward(sl_ring_t *r, const sl_ring_group_t *g, const void *q, const void *k,
                        const void *v, const void *o, const void *lse, const void *dout,
                        void *dq, void *dk, void *dv, void *stream);

#ifdef __cplusplus
}
#endif
#endif
