/* sluice worker: the attention backend interface.
 *
 * A backend executes ring attention (Liu, Zaharia, Abbeel, "Ring Attention
 * with Blockwise Transformers", 2023; zigzag sharding as in the
 * ring-flash-attn project and Llama 3's context parallelism) for one group of
 * one plan slot, on one rank. The worker core (worker/) reads the plan,
 * derives the rank's work orders (one worker_group_work_t per slot in which the
 * rank has a group), generates the inputs, and calls the backend slot by slot:
 *
 *   init -> for each of the rank's slots, in plan order:
 *             begin(w, inputs) -> forward -> backward [-> forward -> backward ...]
 *             -> end(w, outputs)
 *        -> fini
 *
 * Every rank of a group calls begin/forward/backward/end for the same slot;
 * ranks with no group in a slot skip it. Two backends exist:
 *   "cpu"  (worker/backend_cpu.c): fp64, shards exchanged over the worker's
 *          ZeroMQ mesh (ipc:// sockets in the run directory);
 *   "cuda" (kernels/, written against this header): bf16 tensors on the GPU,
 *          fp32 accumulation, K/V exchanged with NCCL send/recv.
 * The CUDA backend is the object `kern_cuda_backend_ops` defined by the CMake
 * library target `sl_kernels`; worker/CMakeLists.txt links that target and
 * compiles with WORKER_HAVE_CUDA when the target exists. This header is plain
 * C (no sluice internals beyond err.h) so a .cu file can include it.
 *
 * ---------------------------------------------------------------- layout ---
 * Sharding. A sequence of s tokens run by a group of d ranks is padded to
 *   p = s                   when d == 1,
 *   p = ceil(s / 2d) * 2d   when d > 1,
 * and cut into 2d chunks of c = p / 2d tokens. The rank at ring position i
 * (0 <= i < d) holds chunks i and 2d-1-i, in that order: local token j of the
 * shard has global position (within its sequence)
 *   j                       when d == 1,
 *   i*c + j                 when d > 1 and j < c,
 *   (2d-1-i)*c + (j - c)    when d > 1 and j >= c
 * (worker_shard_pos below). Each shard has p/d tokens on every rank of the
 * group, so every rank of a group has the same packed layout; only the
 * global positions differ with the owner's ring position.
 *
 * Packing. The group's sequences are packed one after another in the order of
 * the plan's group ("sequences" list): sequence k's shard occupies local
 * tokens [seqs[k].local_off, seqs[k].local_off + seqs[k].local_len), and
 * ntok = sum of local_len. Tokens of different sequences never attend to each
 * other (varlen attention).
 *
 * Tensors (row-major, contiguous; H = heads, KH = kv_heads, D = head_dim):
 *   Q, O, dO, dQ : [ntok][H][D]
 *   K, V, dK, dV : [ntok][KH][D]
 *   LSE          : [ntok][H], natural log of the softmax denominator of the
 *                  scaled scores (log sum_k exp(scale * q.k)), -INFINITY for a
 *                  row that attended to no key (only padding rows do).
 * Host tensors are double; the inputs the core generates are exactly
 * representable in bf16 (|x| <= 1, 8 significant bits), so a bf16 backend
 * sees the same inputs as the fp64 reference. A backend converts on upload
 * and download; device precision is its own business (bf16 for "cuda").
 *
 * Attention. Grouped-query: query head h reads KV head h / (H / KH) (H is a
 * multiple of KH). scale = 1 / sqrt(D). Causal by global position: query at
 * global position qp (of sequence k) attends key at kp (same sequence) iff
 * kp <= qp and kp < s. Padding tokens (position >= s) carry arbitrary finite
 * input values that must not matter: as keys they are masked out; as queries
 * they produce O = 0, LSE = -INFINITY, dQ = 0; padding keys get dK = dV = 0.
 *
 * Ring, forward (d > 1). K/V shards travel from each rank to its ring
 * successor, one hop per step, d-1 hops; at step h the rank at ring position i
 * holds the K/V shard of position (i - h) mod d. Each step's partial
 * (out_b, lse_b) is merged in the stable form
 *   out -= sigmoid(lse_b - lse) * (out - out_b)
 *   lse -= logsigmoid(lse - lse_b)
 * with -inf handled (a -inf block changes nothing; onto a -inf row it is
 * copied). O is written once, at the end.
 * Ring, backward. dQ accumulates locally; dK/dV accumulate in a buffer that
 * travels with its K/V round the ring (the CPU backend keeps it in fp64) and
 * reaches its owner after d hops; every step uses the final LSE (and
 * delta = rowsum(dO * O)).
 * ---------------------------------------------------------------------------
 */
#ifndef SLUICE_WORKER_BACKEND_H
#define SLUICE_WORKER_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bootstrap channel the core gives a backend at init (the worker's ZeroMQ
 * mesh between the ranks of the run): e.g. the CUDA backend broadcasts its
 * ncclUniqueId from rank 0. Collective: every rank calls each function in the
 * same order. Each returns SL_OK or an error with sl_seterr's message. */
typedef struct worker_boot {
	void *ctx; /* opaque; pass back as the first argument */
	/* Copies len bytes from root's buf into every rank's buf. */
	sl_err (*bcast)(void *ctx, int32_t root, void *buf, size_t len);
	/* Returns when every rank has entered it. */
	sl_err (*barrier)(void *ctx);
} worker_boot_t;

/* What a backend learns once, at init. Borrowed for the call only (copy what
 * you keep). */
typedef struct worker_backend_cfg {
	int32_t rank;       /* this process's global rank, 0 <= rank < nranks */
	int32_t nranks;     /* ranks of the plan (= processes of the run) */
	int32_t local_rank; /* rank among the processes on this host */
	int32_t local_size; /* processes on this host; GPU = local_rank % devices */
	const char *run_dir; /* directory shared by the run's processes (sockets, files) */
	worker_boot_t boot;
	int32_t heads, kv_heads, head_dim; /* fixed for the whole run */
} worker_backend_cfg_t;

/* One sequence's shard in a group execution. */
typedef struct worker_seq_shard {
	int32_t seq;       /* index into the plan's sequences */
	int64_t id;        /* the caller's sequence id */
	int64_t len;       /* s: real tokens */
	int64_t padded;    /* p: padded length (see layout) */
	int64_t chunk;     /* c = p / 2d when d > 1; p when d == 1 */
	int64_t local_off; /* first local token of this shard in the packed buffers */
	int64_t local_len; /* p / d */
} worker_seq_shard_t;

/* One rank's part of one group execution (a "work order"). The arrays are
 * owned by the order and stay valid from begin to end. */
typedef struct worker_group_work {
	int32_t slot;        /* index of the slot in the plan */
	int64_t group;       /* index of the group in the plan's groups[]; -1 when the
	                        order came from sluiced, which numbers groups per slot */
	int32_t slot_group;  /* index of the group within its slot (sluiced's numbering) */
	int32_t d;           /* ranks in the group's ring */
	int32_t ring_pos;    /* this rank's position i in the ring */
	const int32_t *ring; /* [d] global ranks in ring order; ring[ring_pos] == rank */
	int32_t prev_rank;   /* ring[(i - 1 + d) % d]: K/V arrive from it */
	int32_t next_rank;   /* ring[(i + 1) % d]: K/V go to it */
	int32_t nseqs;
	const worker_seq_shard_t *seqs; /* [nseqs] in packing order */
	int64_t ntok;                   /* local tokens (sum of local_len) */
	int32_t heads, kv_heads, head_dim;
	double scale; /* 1 / sqrt(head_dim) */
} worker_group_work_t;

/* Host inputs of one group execution (layout above), borrowed for begin. */
typedef struct worker_inputs {
	const double *q, *k, *v, *dout;
} worker_inputs_t;

/* Host outputs of one group execution, filled by end. A NULL pointer means
 * the core does not want that tensor. */
typedef struct worker_outputs {
	double *out, *lse, *dq, *dk, *dv;
} worker_outputs_t;

/* What one forward or backward pass cost on this rank. Times in ms of wall
 * clock (GPU: CUDA events). compute_ms sums the attention compute of the
 * steps; comm_ms is the time communication was in flight or waited on (CPU:
 * time blocked in send/receive; GPU: NCCL work measured on its stream).
 * With overlap, wall_ms < compute_ms + comm_ms. */
typedef struct worker_pass_stats {
	double wall_ms;
	double compute_ms;
	double comm_ms;
	int64_t bytes_sent; /* payload bytes this rank sent */
	int64_t bytes_recv; /* payload bytes this rank received */
	int32_t hops;       /* ring steps that moved data */
} worker_pass_stats_t;

/* Backend operations. Every function returns SL_OK or an error code with a
 * message set by sl_seterr (naming rank, slot and what failed). After an
 * error the core calls only fini. */
typedef struct worker_backend_ops {
	const char *name;   /* "cpu", "cuda" */
	double check_tol;   /* relative error a correct run stays under (1e-6 fp64, 1e-2 bf16) */
	/* Sets up the backend (device, communicators). *state is the backend's. */
	sl_err (*init)(const worker_backend_cfg_t *cfg, void **state);
	/* Allocates the group's buffers and uploads the inputs (in is borrowed). */
	sl_err (*begin)(void *state, const worker_group_work_t *w, const worker_inputs_t *in);
	/* Ring forward: O and LSE of the local queries, from the inputs of begin. */
	sl_err (*forward)(void *state, const worker_group_work_t *w, worker_pass_stats_t *st);
	/* Ring backward: dQ, dK, dV of the local tokens, from the inputs and the
	 * O/LSE of the latest forward. May be called once after each forward. */
	sl_err (*backward)(void *state, const worker_group_work_t *w, worker_pass_stats_t *st);
	/* Downloads the wanted outputs (see worker_outputs_t) and frees the
	 * group's buffers. */
	sl_err (*end)(void *state, const worker_group_work_t *w, worker_outputs_t *out);
	/* Releases everything; nulls *state. Safe on NULL and after errors. */
	void (*fini)(void **state);
} worker_backend_ops_t;

/* Global position (within its sequence) of local token j of the shard held by
 * ring position owner of a d-rank group (see layout). */
static inline int64_t worker_shard_pos(const worker_seq_shard_t *s, int32_t d, int32_t owner,
                                       int64_t j)
{
	if (d == 1)
		return j;
	return j < s->chunk ? (int64_t)owner * s->chunk + j
	                    : (int64_t)(2 * d - 1 - owner) * s->chunk + (j - s->chunk);
}

#ifdef __cplusplus
}
#endif
#endif
