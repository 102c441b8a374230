/* sluice kernels: internal header of the CUDA + NCCL part (library sl_kernels).
 *
 * Three layers:
 *  - per-hop attention kernels (attn_fwd.cu, attn_bwd.cu, attn_misc.cu; the
 *    sm_90a ones in attn_fwd_sm90.cu, attn_bwd_sm90.cu): one
 *    block of local queries against one K/V shard of the same group, packed
 *    variable-length sequences, causal by global (zigzag) position, GQA, bf16
 *    in, fp32 accumulation, LSE out (FlashAttention-2 tiling: Dao, 2023);
 *  - the ring (ring.c): K/V shards passed round a ring of ranks with NCCL
 *    send/recv on a communication stream, double-buffered so the transfer of
 *    hop h+1 runs under the compute of hop h (Liu et al., Ring Attention, 2023);
 *  - the worker backend (backend_cuda.c): worker/backend.h's operations.
 * Tensor layouts are worker/backend.h's: Q/O [ntok][H][D], K/V [ntok][KH][D],
 * LSE [ntok][H]. Every CUDA and NCCL call goes through the CHECK macros below,
 * which set an sl_err (SL_ECUDA / SL_ENCCL) naming file:line. */
#ifndef SLUICE_KERN_H
#define SLUICE_KERN_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "sluice/err.h"
#include "sluice/stats.h"

#ifdef __cplusplus
#define KERN_STATIC_ASSERT static_assert
extern "C" {
#else
#define KERN_STATIC_ASSERT _Static_assert
#endif

/* One sequence's shard inside the packed local buffers (kernel layout; the
 * same on every rank of a group). Positions: kern_pos(chunk, d, owner, j). */
typedef struct kern_seg {
	int64_t off;    /* first local token of the shard */
	int32_t len;    /* local tokens, p / d */
	int32_t chunk;  /* c = p / 2d (d > 1); len when d == 1 */
	int64_t seqlen; /* s: positions >= s are padding */
} kern_seg_t;
KERN_STATIC_ASSERT(sizeof(kern_seg_t) == 24, "kern_seg_t is copied to the device as is");
KERN_STATIC_ASSERT(offsetof(kern_seg_t, seqlen) == 16, "kern_seg_t layout");

/* One tile of a kernel's grid: rows [start, start + block) of segment seg. */
typedef struct kern_tile {
	int32_t seg;
	int32_t start;
} kern_tile_t;
KERN_STATIC_ASSERT(sizeof(kern_tile_t) == 8, "kern_tile_t is copied to the device as is");

/* Where a forward hop puts its result. */
typedef enum kern_fwd_mode {
	KERN_FWD_OUT = 0,   /* O (bf16) and LSE written directly (a single hop) */
	KERN_FWD_INIT = 1,  /* first ring hop: oacc (fp32) and LSE written */
	KERN_FWD_MERGE = 2, /* middle hop: merged into oacc and LSE */
	KERN_FWD_FINAL = 3  /* last hop: merged, O (bf16) and the final LSE written */
} kern_fwd_mode;

/* Arguments of one forward hop: queries of ring position q_owner against
 * the K/V shard of ring position k_owner. Device pointers. */
typedef struct kern_fwd_args {
	const void *q, *k, *v; /* bf16 */
	void *o;               /* bf16 [ntok][H][D]: modes OUT, FINAL */
	float *oacc;           /* fp32 [ntok][H][D]: modes INIT, MERGE, FINAL */
	float *lse;            /* fp32 [ntok][H] */
	const kern_seg_t *segs;
	const kern_tile_t *tiles; /* query tiles of kern_fwd_block_m rows */
	int32_t ntiles;
	int32_t heads, kv_heads, head_dim;
	int32_t d, q_owner, k_owner;
	int32_t causal;
	int32_t mode; /* kern_fwd_mode */
	float scale;
	int64_t ntok; /* rows of q, k, v (local tokens); 0: unknown, which keeps
	               * the hop on the mma.sync kernels (the sm_90 ones describe
	               * the tensors to the TMA unit and need their extent) */
} kern_fwd_args_t;

/* Arguments of one backward hop. dq is accumulated atomically (zero it once
 * before the first hop); dk/dv are the contribution of this hop's queries
 * (accumulate = 0: overwritten, 1: added). Every row of dk/dv of the shard is
 * written. The scale is folded into dS, so dq/dk are final gradients.
 * Inputs must be finite everywhere in [0, ntok) rows, padding included: the
 * sm_90a kernel's boxes cover other segments' rows, multiplied by exact 0. */
typedef struct kern_bwd_args {
	const void *q, *k, *v, *dout; /* bf16 */
	const float *lse;             /* [ntok][H], final (after every hop) */
	const float *delta;           /* [ntok][H], rowsum(dO * O) */
	float *dq;                    /* fp32 [ntok][H][D] */
	float *dk, *dv;               /* fp32 [ntok][KH][D] */
	const kern_seg_t *segs;
	const kern_tile_t *tiles; /* key tiles of kern_bwd_block_n rows */
	int32_t ntiles;
	int32_t heads, kv_heads, head_dim;
	int32_t d, q_owner, k_owner;
	int32_t causal;
	int32_t accumulate;
	float scale;
	int64_t ntok; /* rows of q, k, v, dout; 0: unknown, which keeps the hop
	               * on the mma.sync kernels (as kern_fwd_args_t's) */
} kern_bwd_args_t;

/* Kernel variants (tile shapes) per head dimension; variant -1 picks the
 * default (the fastest measured, docs/gpu.md). Supported head dims: 64, 128.
 * The forward and the backward have mma.sync variants (sm_80+) and sm_90a
 * variants (wgmma, TMA, warp specialised: attn_fwd_sm90.cu,
 * attn_bwd_sm90.cu). On an sm_90 card the default is the fastest sm_90a
 * variant measured (kern_fwd_default, kern_bwd_default).
 * SLUICE_KERN_PATH=mma turns the sm_90a kernels off: the defaults are the
 * mma.sync ones and an sm_90a variant asked for by number runs as its
 * fallback. A hop given to an sm_90a variant that cannot run it (another
 * card, ntok unknown, misaligned tensors, the switch above) runs on the
 * default mma.sync variant instead, on the same tiles: the forward's of the
 * same block_m, the backward's 128-key tiles split into blocks of the
 * mma.sync default's block_n (d64: 2 x 64 keys). Callers build their tiles
 * with kern_fwd_block_m / kern_bwd_block_n of the variant they pass. */
int kern_head_dim_supported(int32_t head_dim);
int kern_fwd_variants(int32_t head_dim);
int kern_bwd_variants(int32_t head_dim);
int kern_fwd_default(int32_t head_dim);
/* The default for one hop (variant -1 in kern_attn_fwd): on sm_90 cards the
 * D = 128 default depends on the causal mask; kern_fwd_default is the
 * causal one. Every default of a head dim has the same block_m. */
int kern_fwd_default_hop(int32_t head_dim, int causal);
int kern_bwd_default(int32_t head_dim);
/* Query rows per forward tile / keys per backward tile of a variant. */
int32_t kern_fwd_block_m(int32_t head_dim, int variant);
int32_t kern_bwd_block_n(int32_t head_dim, int variant);
/* A short name of the variant's shape ("d128_m128_n64_w4"), static storage. */
const char *kern_fwd_name(int32_t head_dim, int variant);
const char *kern_bwd_name(int32_t head_dim, int variant);
/* 1 when the forward variant runs as itself on the current device (the
 * sm_90a ones need an sm_90 card), 0 when kern_attn_fwd would fall back. */
int kern_fwd_native(int32_t head_dim, int variant);
/* The same for a backward variant and kern_attn_bwd. */
int kern_bwd_native(int32_t head_dim, int variant);
/* 1 when the current device is an sm_90 (Hopper) card. */
int kern_device_sm90(void);
/* 1 when SLUICE_KERN_PATH=mma (the sm_90a kernels are off). */
int kern_path_mma_only(void);

/* The sm_90a forward launcher (attn_fwd_sm90.cu) behind kern_attn_fwd's
 * table: 128 query rows, bn-key tiles (D = 64: 128; D = 128: 64, 128 or
 * 176) and a set of the options below (the table names the combinations that
 * exist; others are SL_EINVAL); and whether a hop fits the sm_90a kernels on
 * the current device (an sm_90 card, a library built for sm_90a, ntok known
 * and < 2^31, 16-byte aligned tensors: the TMA unit's needs). */
enum {
	KERN_FWD90_OVERLAP = 1, /* tile j's softmax under the wgmma of P_{j-1} V_{j-1} */
	KERN_FWD90_PP = 2       /* the two consumers' GEMMs take turns (ping-pong) */
};
sl_err kern_sm90_fwd(const kern_fwd_args_t *a, int bn, int opt, cudaStream_t st);
int kern_sm90_fwd_fits(const kern_fwd_args_t *a);
/* The test both of them apply: addrs, the tensors' addresses or-ed together,
 * 16-byte aligned; ntok known and < 2^31 - 256; heads given; the sm_90a
 * kernels built, on, and an sm_90 card present. */
int kern_sm90_hop_fits(uintptr_t addrs, int64_t ntok, int32_t heads, int32_t kv_heads);
/* The sm_90a backward launcher (attn_bwd_sm90.cu; 128-key tiles; head_dim
 * 64 or 128) with a set of the options below (0: the first kernel; the
 * variant table in attn_bwd.cu names the sets it uses, others are
 * SL_EINVAL), and the test for a backward hop (q, k, v, dout and dq
 * 16-byte aligned). */
enum {
	KERN_BWD90_OV = 1,  /* dP^T under the exponentials, dV/dK under dQ's GEMM */
	KERN_BWD90_V4 = 2,  /* dQ by 16-byte atomics (lane pairs trade halves) */
	KERN_BWD90_BULK = 4, /* dQ via shared memory and bulk reduce-adds per row */
	KERN_BWD90_S3 = 8,   /* three Q/dO stages instead of two */
	KERN_BWD90_TMADQ = 16, /* dQ via shared memory; a producer warp adds each
	                        * consumer's 64 x 64 part with tensor reduce-adds */
	KERN_BWD90_PRE = 32  /* LSE (log2, masked), positions and delta prepared by
	                      * the producer and loaded ahead of their use */
};
sl_err kern_sm90_bwd(const kern_bwd_args_t *a, int opt, cudaStream_t st);
int kern_sm90_bwd_fits(const kern_bwd_args_t *a);

/* Launch one hop on stream st (asynchronous; launch errors checked). */
sl_err kern_attn_fwd(const kern_fwd_args_t *a, int variant, cudaStream_t st);
sl_err kern_attn_bwd(const kern_bwd_args_t *a, int variant, cudaStream_t st);
/* delta[r] = sum_d dout[r][d] * o[r][d] (fp32) for rows r < rows (bf16 in). */
sl_err kern_attn_delta(const void *o, const void *dout, float *delta, int64_t rows,
                       int32_t head_dim, cudaStream_t st);
/* dst[i] += src[i] for i < n. */
sl_err kern_add_f32(float *dst, const float *src, int64_t n, cudaStream_t st);
/* Fills n bf16 values with a deterministic pseudo-random pattern in
 * [-amp, amp] (benchmarks: never time on zeros). */
sl_err kern_fill_random_bf16(void *dst, int64_t n, uint64_t seed, float amp, cudaStream_t st);

/* Tile tables (tiles.c, plain C). Builds the tiles of `block` rows covering
 * every segment, heaviest first for the given kind ('q': query tiles, whose
 * causal work grows with the tile's start; 'k': key tiles, whose work grows
 * with the rows after them). *out is malloc'd (caller frees). */
sl_err kern_tiles_build(const kern_seg_t *segs, int32_t nseg, int32_t block, char kind,
                        kern_tile_t **out, int32_t *ntiles);

/* kern_tiles_build, then the table copied into a new device array *dev
 * (the caller's cudaFree). */
sl_err kern_tiles_upload(const kern_seg_t *segs, int32_t nseg, int32_t block, char kind,
                         kern_tile_t **dev, int32_t *n);

/* Checks that segments describe a valid packed layout for a ring of d ranks
 * (lengths, chunks, offsets, int32 ranges); SL_EINVAL naming the segment. */
sl_err kern_segs_check(const kern_seg_t *segs, int32_t nseg, int32_t d, int64_t ntok);

/* ------------------------------------------------------------------ ring --- */

/* Per-process state: one device, a compute and a (higher priority)
 * communication stream, and one global NCCL communicator over all ranks of
 * the run, created once (rings change every step; p2p needs no new comm). */
typedef struct kern_ctx {
	int32_t rank, nranks, device;
	void *comm; /* ncclComm_t; NULL when nranks == 1 */
	cudaStream_t compute, comm_stream;
	int fwd_variant, bwd_variant; /* -1: defaults */
	double timeout_s;             /* a pass waiting longer aborts (SL_ETIMEOUT) */
	cudaEvent_t *ev;              /* event pool, grown on demand */
	int nev;
	float *scratch; /* one float for kern_ctx_barrier */
} kern_ctx_t;

/* Sets NCCL_NVLS_ENABLE=0, selects the device, creates the streams and, when
 * nranks > 1, the communicator from nccl_id (an ncclUniqueId of
 * kern_nccl_id_size() bytes made by one rank with kern_nccl_id_make). Call
 * only in a process that has not forked since touching CUDA. */
sl_err kern_ctx_init(kern_ctx_t *c, int32_t rank, int32_t nranks, int32_t device,
                     const void *nccl_id);
/* Releases streams, events and the communicator; safe on a zeroed ctx. */
void kern_ctx_fini(kern_ctx_t *c);
size_t kern_nccl_id_size(void);
sl_err kern_nccl_id_make(void *id);
/* Number of CUDA devices (0 with SL_OK when there are none). */
sl_err kern_device_count(int *n);

/* One rank's part of one group execution: layout and device buffers. */
typedef struct kern_group {
	int32_t d, ring_pos, prev_rank, next_rank;
	int32_t heads, kv_heads, head_dim;
	int32_t causal;
	float scale;
	int32_t nseg;
	kern_seg_t *segs_h; /* host copy */
	kern_seg_t *segs_d;
	int64_t ntok;
	kern_tile_t *qtiles_d, *ktiles_d;
	int32_t nqt, nkt;
	/* bf16 tensors */
	void *q, *dout, *o;
	void *kv[4]; /* [2][ntok][KH][D]: K then V; kv[0] is the own shard (never
	              * overwritten), kv[1..3] receive the travelling shards */
	/* fp32 tensors */
	float *lse, *oacc, *delta, *dq;
	float *dkv[2], *dkv_tmp; /* travelling dK/dV: [2][ntok][KH][D] */
	float *dkv_out;          /* this rank's final dK then dV */
	int have_fwd;
} kern_group_t;

/* Sizes of the group's tensors in elements. */
static inline int64_t kern_group_qsize(const kern_group_t *g)
{
	return g->ntok * g->heads * g->head_dim;
}
static inline int64_t kern_group_kvsize(const kern_group_t *g)
{
	return g->ntok * g->kv_heads * g->head_dim;
}

/* Allocates the buffers of a group (segments are copied; ring ranks are
 * global ranks). On failure everything is released. */
sl_err kern_group_alloc(kern_ctx_t *c, kern_group_t *g, int32_t d, int32_t ring_pos,
                        int32_t prev_rank, int32_t next_rank, const kern_seg_t *segs,
                        int32_t nseg, int32_t heads, int32_t kv_heads, int32_t head_dim,
                        int32_t causal, float scale);
void kern_group_free(kern_group_t *g);

/* What a pass cost (worker_pass_stats_t's fields; see worker/backend.h). */
typedef struct kern_pass_stats {
	double wall_ms, compute_ms, comm_ms;
	int64_t bytes_sent, bytes_recv;
	int32_t hops;
} kern_pass_stats_t;

/* Ring forward: O (bf16) and LSE (fp32) of the local queries from q and
 * kv[0]. Poisons its outputs first; blocks until done. */
sl_err kern_ring_forward(kern_ctx_t *c, kern_group_t *g, kern_pass_stats_t *st);
/* Ring backward from dout and the latest forward: dq (fp32, local) and
 * dkv_out (fp32 dK then dV of the own shard, after d hops round the ring). */
sl_err kern_ring_backward(kern_ctx_t *c, kern_group_t *g, kern_pass_stats_t *st);
/* The ring's K/V buffer schedule (exposed for tests): hop h reads
 * g->kv[kern_ring_kv_slot(d, h)] (slot 0: the own shard, never received
 * into); the receive of hop h+1's shard, issued at hop h, waits for hop
 * kern_ring_kv_reuse(d, h) to finish when that is >= 1. */
int kern_ring_kv_slot(int32_t d, int32_t h);
int kern_ring_kv_reuse(int32_t d, int32_t h);

/* Device-side barrier over every rank of the run: an ncclAllReduce of one
 * float on the compute stream (lines up the ranks' timelines before a timed
 * pass). Collective: every rank calls it. */
sl_err kern_ctx_barrier(kern_ctx_t *c);
/* Times a send of `bytes` to next with a receive from prev (the ring's hop
 * without compute): median ms over reps. Collective over the ring. */
sl_err kern_ring_p2p_ms(kern_ctx_t *c, kern_group_t *g, size_t bytes, int reps, double *ms);

/* ------------------------------------------- layer element-wise parts --- */
/* The element-wise parts of a pre-LN GPT layer (layer_ew.cu), bf16 tensors
 * [n][width], fp32 LayerNorm parameters and statistics. Asynchronous on st. */

/* y = LayerNorm(x) * gamma + beta over rows of h; mean, rstd [n] kept. */
sl_err kern_ln_fwd(const void *x, const float *gamma, const float *beta, void *y, float *mean,
                   float *rstd, int64_t n, int32_t h, cudaStream_t st);
/* dx = dres + LayerNorm backward of dy; dgamma, dbeta [h] accumulated (fp32
 * atomics: zero them first). h <= 8192. */
sl_err kern_ln_bwd(const void *dy, const void *x, const float *gamma, const float *mean,
                   const float *rstd, const void *dres, void *dx, float *dgamma, float *dbeta,
                   int64_t n, int32_t h, cudaStream_t st);
typedef enum kern_ew_op {
	KERN_EW_GELU = 0,      /* y = gelu(a) (tanh form) */
	KERN_EW_GELU_BWD = 1,  /* y = b * gelu'(a) */
	KERN_EW_ADD = 2        /* y = a + b */
} kern_ew_op;
/* One element-wise op over n (even) values. */
sl_err kern_ew(kern_ew_op op, const void *a, const void *b, void *y, int64_t n, cudaStream_t st);
/* qkv [n][qd + 2 kd] -> q [n][qd], k [n][kd], v [n][kd]. */
sl_err kern_qkv_split(const void *qkv, void *q, void *k, void *v, int64_t n, int32_t qd, int32_t kd,
                      cudaStream_t st);
/* fp32 dq [n][qd], dk, dv [n][kd] -> one bf16 gradient row [n][qd + 2 kd]. */
sl_err kern_qkv_merge_grad(const float *dq, const float *dk, const float *dv, void *dqkv, int64_t n,
                           int32_t qd, int32_t kd, cudaStream_t st);

/* Error translation. */
/* Translates a failed CUDA call's code to SL_ECUDA with file:line and what;
 * also takes the error off CUDA's last-error slot (cudaGetLastError), so a
 * later KERN_LAUNCHED does not blame an innocent kernel for it. */
sl_err kern_cuda_err(int code, const char *what, const char *file, int line);
sl_err kern_nccl_err(int code, const char *what, const char *file, int line);

#define KERN_CUDA(call)                                                                            \
	do {                                                                                       \
		cudaError_t kern_e_ = (call);                                                      \
		if (kern_e_ != cudaSuccess)                                                        \
			return kern_cuda_err((int)kern_e_, #call, __FILE__, __LINE__);             \
	} while (0)

#define KERN_CUDA_GOTO(call, rcvar, label)                                                         \
	do {                                                                                       \
		cudaError_t kern_e_ = (call);                                                      \
		if (kern_e_ != cudaSuccess) {                                                      \
			(rcvar) = kern_cuda_err((int)kern_e_, #call, __FILE__, __LINE__);          \
			goto label;                                                                \
		}                                                                                  \
	} while (0)

/* After a kernel launch: the launch's own error (bad configuration, ...),
 * reported as "launching WHAT"; `what` must be a string literal. */
#define KERN_LAUNCHED(what)                                                                        \
	do {                                                                                       \
		cudaError_t kern_e_ = cudaGetLastError();                                          \
		if (kern_e_ != cudaSuccess)                                                        \
			return kern_cuda_err((int)kern_e_, "launching " what, __FILE__, __LINE__);  \
	} while (0)

/* ---------------------------------------------------- framework API --- */

/* include/sluice/ring.h's CUDA engine (kernels/ring_api.c): a kern_ctx_t
 * and, per call, a group whose inputs are copied device to device from the
 * caller's tensors, ordered after the caller's stream. */
struct worker_group_work;
sl_err kern_ring_api_new(int32_t rank, int32_t nranks, int32_t device, const void *nccl_id,
                         void **out);
void kern_ring_api_free(void **api);
/* q, k, v, o bf16; lse float; stream a cudaStream_t (may be NULL). */
sl_err kern_ring_api_forward(void *api, const struct worker_group_work *w, const void *q,
                             const void *k, const void *v, void *o, void *lse, void *stream);
/* q, k, v, o, dout bf16; lse, dq, dk, dv float. */
sl_err kern_ring_api_backward(void *api, const struct worker_group_work *w, const void *q,
                              const void *k, const void *v, const void *o, const void *lse,
                              const void *dout, void *dq, void *dk, void *dv, void *stream);

#ifdef __cplusplus
}
#endif
#endif
