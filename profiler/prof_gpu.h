/* sluice profiler: internal header of the CUDA part (sl_profiler_gpu): the
 * cuBLASLt GEMMs and the transformer layer that both `sluice profile`
 * (measure.c) and the emulated worker of `sluice run-plan --emulate`
 * (emulate.c) run, so what the profile measures is what the emulation
 * executes. */
#ifndef SLUICE_PROF_GPU_H
#define SLUICE_PROF_GPU_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "kern.h"
#include "profiler.h"
#include "sluice/stats.h"

#define PROF_WS_BYTES ((size_t)64 << 20) /* cuBLASLt workspace */
#define PROF_GEMM_CACHE 256              /* planned GEMM shapes kept */

/* One bf16 GEMM in cuBLASLt's column-major terms: C (m x n) = op(A) op(B),
 * fp32 accumulation. */
typedef struct prof_gemm {
	cublasOperation_t ta, tb;
	int64_t m, n, k;
	const void *a, *b;
	void *c;
} prof_gemm_t;

/* A planned shape: descriptors and the heuristic's algorithm. */
typedef struct prof_gemm_plan {
	cublasOperation_t ta, tb;
	int64_t m, n, k;
	cublasLtMatmulDesc_t op;
	cublasLtMatrixLayout_t la, lb, lc;
	cublasLtMatmulAlgo_t algo;
} prof_gemm_plan_t;

/* A stream, two timing events, the cuBLASLt handle and workspace, and the
 * cache of planned shapes (planning is host work that must stay out of the
 * timed region and off the critical path of small GEMMs). */
typedef struct prof_gpu {
	int device;
	cudaStream_t st;
	cudaEvent_t e0, e1;
	cublasLtHandle_t lt;
	void *ws;
	prof_gemm_plan_t plans[PROF_GEMM_CACHE];
	int nplans, next_evict;
	int dry; /* set: prof_gemm_run plans the shape and launches nothing */
} prof_gpu_t;

/* Selects the device and creates the stream, events, handle, workspace.
 * On failure everything is released. */
sl_err prof_gpu_init(prof_gpu_t *pg, int device);
/* Releases everything; safe on a zeroed or failed context. */
void prof_gpu_fini(prof_gpu_t *pg);

/* Enqueues one GEMM on pg->st, planning its shape on first use (only
 * plans it while pg->dry is set). */
sl_err prof_gemm_run(prof_gpu_t *pg, const prof_gemm_t *g);
/* The three GEMMs of a linear layer in -> out over n tokens (PyTorch's
 * layout: weight [out][in], activations [n][in], row-major): forward
 * y = x w^T, input gradient dx = dy w, weight gradient dw = dy^T x.
 * Writes g[0..2] and returns 3. */
int prof_linear_gemms(int64_t in, int64_t out, int64_t n, const void *w, const void *x,
                      const void *dy, void *y, void *dx, void *dw, prof_gemm_t g[3]);

/* One pre-LN GPT layer's tensors for up to `cap` tokens (bf16 unless noted),
 * pseudo-random weights. The attention itself is the caller's: the layer
 * produces Q, K, V (fwd_in), consumes O (fwd_out), produces dO (bwd_out) and
 * consumes dQ, dK, dV (bwd_in). */
typedef struct prof_layer {
	sl_model_shape_t md;
	int64_t cap;
	int64_t qd, kd, qkv; /* H D, KH D, qd + 2 kd */
	/* weights and their gradients; LayerNorm parameters fp32 */
	void *wqkv, *wo, *w1, *w2, *dwqkv, *dwo, *dw1, *dw2;
	float *ln_g, *ln_b, *dln_g, *dln_b; /* [2][h] each */
	/* activations and gradients, [cap][width] */
	void *x0, *ln1, *qkvb, *q, *k, *v, *o, *y, *x1, *ln2, *f1, *g, *x2;
	void *dx2, *dg, *df1, *dln2, *dx1, *dout, *dqkv, *dln1, *dx0;
	float *mean, *rstd; /* [2][cap] */
} prof_layer_t;

/* Allocates the weights for md and activations for cap tokens; grows the
 * activations when called again with a larger cap. Inputs (x0, dx2) and
 * weights get pseudo-random values, never zeros. */
sl_err prof_layer_reserve(prof_gpu_t *pg, prof_layer_t *L, const sl_model_shape_t *md,
                          int64_t cap);
void prof_layer_free(prof_layer_t *L);
/* Forward up to the attention: LN1, QKV GEMM, split into q [n][qd], k, v
 * [n][kd] (the caller's buffers, or the layer's own where NULL). */
sl_err prof_layer_fwd_in(prof_gpu_t *pg, prof_layer_t *L, int64_t n, void *q, void *k, void *v);
/* Forward after the attention output L->o: output projection, residual,
 * LN2, MLP (fc1, GeLU, fc2), residual. */
sl_err prof_layer_fwd_out(prof_gpu_t *pg, prof_layer_t *L, int64_t n);
/* Backward down to the attention: MLP, LN2 (with the residual's gradient),
 * the output projection; leaves dO in L->dout. */
sl_err prof_layer_bwd_out(prof_gpu_t *pg, prof_layer_t *L, int64_t n);
/* Backward from the attention's fp32 dq [n][qd], dk, dv [n][kd] (merged
 * into one bf16 gradient row), or from L->dqkv as it is when dq is NULL:
 * QKV GEMMs (dX, dW), LN1 with the residual's gradient. */
sl_err prof_layer_bwd_in(prof_gpu_t *pg, prof_layer_t *L, int64_t n, const float *dq,
                         const float *dk, const float *dv);
/* The LM head's forward and backward GEMMs over n tokens of the layer's
 * output (logits [chunk][vocab padded to 128], pseudo-random logit
 * gradients), in chunks of at most 8192 tokens. head_w, logits, dlogits
 * are the caller's, from prof_head_alloc. */
typedef struct prof_head {
	int64_t vocab; /* padded */
	void *w, *dw, *logits, *dlogits;
} prof_head_t;
sl_err prof_head_alloc(prof_gpu_t *pg, prof_head_t *hd, const sl_model_shape_t *md);
void prof_head_free(prof_head_t *hd);
sl_err prof_head_run(prof_gpu_t *pg, prof_head_t *hd, const prof_layer_t *L, int64_t n);

#endif
