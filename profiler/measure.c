/* sluice profiler: the measurements behind `sluice profile` (CUDA builds).
 *
 * Everything is timed per layer with CUDA events after warm-up, median of
 * `reps`, on pseudo-random bf16 data (never zeros): the linear parts of one
 * layer through cuBLASLt, the LM head, our attention kernels per ring hop
 * (zigzag shards, self and remote), one tiny group execution the way the
 * worker runs it (alloc, forward, backward, free), pinned host copies, and,
 * with 2 or more GPUs, NCCL send/recv between two of them. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "kern.h"
#include "profiler.h"
#include "sluice/clock.h"

#define MIB 1048576.0
#define WS_BYTES ((size_t)64 << 20) /* cuBLASLt workspace */

static sl_err lt_err(cublasStatus_t s, const char *what, int line)
{
	return sl_seterr(SL_ECUDA, "%s:%d: %s: cuBLASLt status %d", __FILE__, line, what, (int)s);
}

#define LT(call)                                                                                   \
	do {                                                                                       \
		cublasStatus_t prof_s_ = (call);                                                   \
		if (prof_s_ != CUBLAS_STATUS_SUCCESS)                                              \
			return lt_err(prof_s_, #call, __LINE__);                                   \
	} while (0)

static int cmpd(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmpd);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Timing state shared by the measurements. */
typedef struct meas_ctx {
	cudaStream_t st;
	cudaEvent_t e0, e1;
	cublasLtHandle_t lt;
	void *ws;
	int reps;
	int verbose;
	double *t; /* [reps] */
} meas_ctx_t;

/* One bf16 GEMM in cuBLASLt's column-major terms: C (m x n) = op(A) op(B),
 * fp32 accumulation; gemm_plan picks the algorithm once, outside the timing. */
typedef struct gemm {
	cublasOperation_t ta, tb;
	int64_t m, n, k;
	const void *a, *b;
	void *c;
	cublasLtMatmulDesc_t op;
	cublasLtMatrixLayout_t la, lb, lc;
	cublasLtMatmulAlgo_t algo;
} gemm_t;

static void gemm_unplan(gemm_t *g)
{
	cublasLtMatrixLayoutDestroy(g->lc);
	cublasLtMatrixLayoutDestroy(g->lb);
	cublasLtMatrixLayoutDestroy(g->la);
	cublasLtMatmulDescDestroy(g->op);
	g->lc = g->lb = g->la = NULL;
	g->op = NULL;
}

static sl_err gemm_plan(meas_ctx_t *mc, gemm_t *g)
{
	cublasLtMatmulPreference_t pref = NULL;
	cublasLtMatmulHeuristicResult_t hr;
	int nres = 0;
	const size_t ws = WS_BYTES;
	sl_err rc = SL_OK;
	cublasStatus_t s;
#define LT_GOTO(call)                                                                              \
	do {                                                                                       \
		s = (call);                                                                        \
		if (s != CUBLAS_STATUS_SUCCESS) {                                                  \
			rc = lt_err(s, #call, __LINE__);                                           \
			goto out;                                                                  \
		}                                                                                  \
	} while (0)
	LT_GOTO(cublasLtMatmulDescCreate(&g->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
	LT_GOTO(cublasLtMatmulDescSetAttribute(g->op, CUBLASLT_MATMUL_DESC_TRANSA, &g->ta,
	                                       sizeof(g->ta)));
	LT_GOTO(cublasLtMatmulDescSetAttribute(g->op, CUBLASLT_MATMUL_DESC_TRANSB, &g->tb,
	                                       sizeof(g->tb)));
	/* stored shapes: A is m x k (k x m when transposed), B k x n (n x k) */
	LT_GOTO(cublasLtMatrixLayoutCreate(&g->la, CUDA_R_16BF, g->ta == CUBLAS_OP_N ? g->m : g->k,
	                                   g->ta == CUBLAS_OP_N ? g->k : g->m,
	                                   g->ta == CUBLAS_OP_N ? g->m : g->k));
	LT_GOTO(cublasLtMatrixLayoutCreate(&g->lb, CUDA_R_16BF, g->tb == CUBLAS_OP_N ? g->k : g->n,
	                                   g->tb == CUBLAS_OP_N ? g->n : g->k,
	                                   g->tb == CUBLAS_OP_N ? g->k : g->n));
	LT_GOTO(cublasLtMatrixLayoutCreate(&g->lc, CUDA_R_16BF, g->m, g->n, g->m));
	LT_GOTO(cublasLtMatmulPreferenceCreate(&pref));
	LT_GOTO(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
	                                             &ws, sizeof(ws)));
	LT_GOTO(cublasLtMatmulAlgoGetHeuristic(mc->lt, g->op, g->la, g->lb, g->lc, g->lc, pref, 1,
	                                       &hr, &nres));
#undef LT_GOTO
	if (nres < 1) {
		rc = sl_seterr(SL_ECUDA, "cuBLASLt has no algorithm for %lld x %lld x %lld",
		               (long long)g->m, (long long)g->n, (long long)g->k);
		goto out;
	}
	g->algo = hr.algo;
out:
	cublasLtMatmulPreferenceDestroy(pref);
	if (rc != SL_OK)
		gemm_unplan(g);
	return rc;
}

static sl_err gemm_run(meas_ctx_t *mc, const gemm_t *g)
{
	const float alpha = 1.0f, beta = 0.0f;
	LT(cublasLtMatmul(mc->lt, g->op, &alpha, g->a, g->la, g->b, g->lb, &beta, g->c, g->lc, g->c,
	                  g->lc, &g->algo, mc->ws, WS_BYTES, mc->st));
	return SL_OK;
}

/* The three GEMMs of a linear layer in -> out over n tokens (PyTorch's
 * layout: weight [out][in], activations [n][in], row-major): forward
 * Y = X W^T, input gradient dX = dY W, weight gradient dW = dY^T X. */
static int linear_gemms(int64_t in, int64_t out, int64_t n, const void *w, const void *x,
                        const void *dy, void *c, gemm_t g[3])
{
	g[0] = (gemm_t){.ta = CUBLAS_OP_T, .tb = CUBLAS_OP_N, out, n, in, w, x, c};
	g[1] = (gemm_t){.ta = CUBLAS_OP_N, .tb = CUBLAS_OP_N, in, n, out, w, dy, c};
	g[2] = (gemm_t){.ta = CUBLAS_OP_N, .tb = CUBLAS_OP_T, in, out, n, x, dy, c};
	return 3;
}

/* Times the GEMM list: median ms over reps after 2 warm-ups. */
static sl_err time_gemms(meas_ctx_t *mc, gemm_t *g, int ng, double *ms)
{
	sl_err rc = SL_OK;
	int planned = 0;
	for (; planned < ng; planned++)
		SL_CHECK_GOTO(gemm_plan(mc, &g[planned]), rc, out);
	for (int r = -2; r < mc->reps; r++) {
		KERN_CUDA_GOTO(cudaEventRecord(mc->e0, mc->st), rc, out);
		for (int i = 0; i < ng; i++)
			SL_CHECK_GOTO(gemm_run(mc, &g[i]), rc, out);
		KERN_CUDA_GOTO(cudaEventRecord(mc->e1, mc->st), rc, out);
		KERN_CUDA_GOTO(cudaEventSynchronize(mc->e1), rc, out);
		float t;
		KERN_CUDA_GOTO(cudaEventElapsedTime(&t, mc->e0, mc->e1), rc, out);
		if (r >= 0)
			mc->t[r] = t;
	}
	*ms = median(mc->t, mc->reps);
out:
	for (int i = 0; i < planned; i++)
		gemm_unplan(&g[i]);
	return rc;
}

static int64_t max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

/* One layer's linear parts and the LM head at each token count. */
static sl_err measure_gemms(meas_ctx_t *mc, const sl_model_shape_t *md, const sl_calib_run_t *run,
                            sl_calib_meas_t *m)
{
	const int64_t h = md->hidden, qkv = (int64_t)(md->heads + 2 * md->kv_heads) * md->head_dim;
	/* the vocabulary padded to a multiple of 128 as Megatron-LM does: an odd
	 * leading dimension (GPT-2's 50257) would time cuBLASLt's unaligned
	 * kernels, 5x slower, which no trainer runs */
	const int64_t ao = (int64_t)md->heads * md->head_dim, f = md->ffn,
		      V = (md->vocab + 127) / 128 * 128;
	const int64_t lin[4][2] = {{h, qkv}, {ao, h}, {h, f}, {f, h}};
	int64_t nmax = 0, wmax = h * V, dmax = max64(max64(h, qkv), max64(ao, f));
	for (size_t i = 0; i < run->ngemm_tokens; i++)
		nmax = max64(nmax, run->gemm_tokens[i]);
	for (int i = 0; i < 4; i++)
		wmax = max64(wmax, lin[i][0] * lin[i][1]);
	/* the head's [n][vocab] logits get big: its points stop at 8192 tokens */
	const int64_t nhead_max = nmax < 8192 ? nmax : 8192;
	const int64_t xn = nmax * dmax, yn = max64(nmax * dmax, nhead_max * V);
	void *w = NULL, *x = NULL, *dy = NULL, *c = NULL;
	sl_err rc = SL_OK;
	KERN_CUDA_GOTO(cudaMalloc(&w, (size_t)wmax * 2), rc, out);
	KERN_CUDA_GOTO(cudaMalloc(&x, (size_t)xn * 2), rc, out);
	KERN_CUDA_GOTO(cudaMalloc(&dy, (size_t)yn * 2), rc, out);
	KERN_CUDA_GOTO(cudaMalloc(&c, (size_t)max64(max64(xn, yn), wmax) * 2), rc, out);
	SL_CHECK_GOTO(kern_fill_random_bf16(w, wmax, 11, 0.05f, mc->st), rc, out);
	SL_CHECK_GOTO(kern_fill_random_bf16(x, xn, 12, 1.0f, mc->st), rc, out);
	SL_CHECK_GOTO(kern_fill_random_bf16(dy, yn, 13, 1.0f, mc->st), rc, out);
	m->gemm = calloc(run->ngemm_tokens + 1, sizeof(*m->gemm));
	m->head = calloc(run->ngemm_tokens + 1, sizeof(*m->head));
	if (m->gemm == NULL || m->head == NULL) {
		rc = sl_seterr(SL_ENOMEM, "GEMM points: out of memory");
		goto out;
	}
	for (size_t i = 0; i < run->ngemm_tokens; i++) {
		const int64_t n = run->gemm_tokens[i];
		gemm_t g[12];
		int ng = 0;
		double ms;
		for (int l = 0; l < 4; l++)
			ng += linear_gemms(lin[l][0], lin[l][1], n, w, x, dy, c, g + ng);
		SL_CHECK_GOTO(time_gemms(mc, g, ng, &ms), rc, out);
		m->gemm[m->ngemm++] = (sl_calib_point_t){n, ms};
		if (mc->verbose)
			fprintf(stderr, "profile: layer GEMMs %6lld tokens %9.3f ms (%.0f TFLOP/s)\n",
			        (long long)n, ms, sl_model_layer_gemm_flop(md) * n / ms / 1e9);
		if (V > 0 && n <= nhead_max) {
			ng = linear_gemms(h, V, n, w, x, dy, c, g);
			SL_CHECK_GOTO(time_gemms(mc, g, ng, &ms), rc, out);
			m->head[m->nhead++] = (sl_calib_point_t){n, ms};
			if (mc->verbose)
				fprintf(stderr, "profile: LM head    %6lld tokens %9.3f ms\n", (long long)n,
				        ms);
		}
	}
out:
	cudaFree(w);
	cudaFree(x);
	cudaFree(dy);
	cudaFree(c);
	return rc;
}

/* Device buffers of the attention hops, sized for the longest shard. */
typedef struct hop_bufs {
	void *q, *kv, *dout, *o;
	float *oacc, *lse_fin, *lse_acc, *delta, *dq, *dkv;
	kern_seg_t *seg;
	kern_tile_t *qt, *kt;
} hop_bufs_t;

static void hop_bufs_free(hop_bufs_t *b)
{
	void *p[] = {b->q,     b->kv,      b->dout,  b->o,   b->oacc, b->lse_fin, b->lse_acc,
	             b->delta, b->dq,      b->dkv,   b->seg, b->qt,   b->kt};
	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
		cudaFree(p[i]);
	memset(b, 0, sizeof(*b));
}

/* Builds and uploads the tile table of one segment into *dst (device). */
static sl_err upload_tiles(const kern_seg_t *seg, int32_t block, char kind, kern_tile_t **dst,
                           int32_t *nt)
{
	kern_tile_t *t = NULL;
	sl_err rc = kern_tiles_build(seg, 1, block, kind, &t, nt);
	if (rc != SL_OK)
		return rc;
	cudaFree(*dst);
	*dst = NULL;
	KERN_CUDA_GOTO(cudaMalloc((void **)dst, (size_t)*nt * sizeof(*t)), rc, out);
	KERN_CUDA_GOTO(cudaMemcpy(*dst, t, (size_t)*nt * sizeof(*t), cudaMemcpyHostToDevice), rc, out);
out:
	free(t);
	return rc;
}

/* Forward then backward of one hop, each timed separately (median). */
static sl_err time_hop(meas_ctx_t *mc, hop_bufs_t *b, const sl_model_shape_t *md, int32_t d,
                       int32_t qo, int32_t ko, int32_t len, sl_calib_hop_t *out)
{
	const int32_t H = md->heads, KH = md->kv_heads, D = md->head_dim;
	const int64_t kvn = (int64_t)len * KH * D;
	const kern_seg_t seg = {0, len, d == 1 ? len : len / 2, (int64_t)len * d};
	int32_t nqt = 0, nkt = 0;
	double fwd[64], bwd[64];
	KERN_CUDA(cudaMemcpy(b->seg, &seg, sizeof(seg), cudaMemcpyHostToDevice));
	SL_CHECK(upload_tiles(&seg, kern_fwd_block_m(D, -1), 'q', &b->qt, &nqt));
	SL_CHECK(upload_tiles(&seg, kern_bwd_block_n(D, -1), 'k', &b->kt, &nkt));
	kern_fwd_args_t fa = {.q = b->q, .k = b->kv, .v = (uint16_t *)b->kv + kvn, .o = b->o,
	                      .oacc = b->oacc, .lse = b->lse_fin, .segs = b->seg, .tiles = b->qt,
	                      .ntiles = nqt, .heads = H, .kv_heads = KH, .head_dim = D, .d = d,
	                      .q_owner = qo, .k_owner = qo, .causal = 1, .mode = KERN_FWD_OUT,
	                      .scale = 1.0f / sqrtf((float)D)};
	/* the backward's final LSE and delta: the diagonal hop (every query
	 * sees at least itself, so no row is -inf) */
	SL_CHECK(kern_attn_fwd(&fa, -1, mc->st));
	SL_CHECK(kern_attn_delta(b->o, b->dout, b->delta, (int64_t)len * H, D, mc->st));
	/* the forward as the ring runs it: the own shard first (INIT), others
	 * merged (MERGE); a single rank writes O directly */
	fa.lse = b->lse_acc;
	if (d > 1) {
		fa.mode = KERN_FWD_INIT;
		SL_CHECK(kern_attn_fwd(&fa, -1, mc->st));
		fa.mode = ko == qo ? KERN_FWD_INIT : KERN_FWD_MERGE;
	}
	fa.k_owner = ko;
	kern_bwd_args_t ba = {.q = b->q, .k = b->kv, .v = (uint16_t *)b->kv + kvn, .dout = b->dout,
	                      .lse = b->lse_fin, .delta = b->delta, .dq = b->dq, .dk = b->dkv,
	                      .dv = b->dkv + kvn, .segs = b->seg, .tiles = b->kt, .ntiles = nkt,
	                      .heads = H, .kv_heads = KH, .head_dim = D, .d = d, .q_owner = qo,
	                      .k_owner = ko, .causal = 1, .accumulate = 0, .scale = fa.scale};
	KERN_CUDA(cudaMemsetAsync(b->dq, 0, (size_t)len * H * D * 4, mc->st));
	for (int pass = 0; pass < 2; pass++)
		for (int r = -2; r < mc->reps; r++) {
			KERN_CUDA(cudaEventRecord(mc->e0, mc->st));
			SL_CHECK(pass == 0 ? kern_attn_fwd(&fa, -1, mc->st)
			                   : kern_attn_bwd(&ba, -1, mc->st));
			KERN_CUDA(cudaEventRecord(mc->e1, mc->st));
			KERN_CUDA(cudaEventSynchronize(mc->e1));
			float t;
			KERN_CUDA(cudaEventElapsedTime(&t, mc->e0, mc->e1));
			if (r >= 0)
				(pass == 0 ? fwd : bwd)[r] = t;
		}
	*out = (sl_calib_hop_t){d, qo, ko, len, median(fwd, mc->reps), median(bwd, mc->reps)};
	return SL_OK;
}

static sl_err measure_hops(meas_ctx_t *mc, const sl_model_shape_t *md, const sl_calib_run_t *run,
                           sl_calib_meas_t *m)
{
	const int32_t H = md->heads, KH = md->kv_heads, D = md->head_dim;
	int64_t L = 0;
	hop_bufs_t b;
	sl_err rc = SL_OK;
	memset(&b, 0, sizeof(b));
	if (!kern_head_dim_supported(D))
		return sl_seterr(SL_EINVAL, "head_dim %d: our attention kernels support 64 and 128", D);
	for (size_t i = 0; i < run->nhop_lens; i++)
		L = max64(L, run->hop_lens[i]);
	const size_t qn = (size_t)L * H * D, kvn = (size_t)L * KH * D, rows = (size_t)L * H;
	KERN_CUDA_GOTO(cudaMalloc(&b.q, qn * 2), rc, out);
	KERN_CUDA_GOTO(cudaMalloc(&b.dout, qn * 2), rc, out);
	KERN_CUDA_GOTO(cudaMalloc(&b.o, qn * 2), rc, out);
	KERN_CUDA_GOTO(cudaMalloc(&b.kv, kvn * 2 * 2), rc, out);
	KERN_CUDA_GOTO(cudaMalloc((void **)&b.oacc, qn * 4), rc, out);
	KERN_CUDA_GOTO(cudaMalloc((void **)&b.dq, qn * 4), rc, out);
	KERN_CUDA_GOTO(cudaMalloc((void **)&b.dkv, kvn * 2 * 4), rc, out);
	KERN_CUDA_GOTO(cudaMalloc((void **)&b.lse_fin, rows * 4), rc, out);
	KERN_CUDA_GOTO(cudaMalloc((void **)&b.lse_acc, rows * 4), rc, out);
	KERN_CUDA_GOTO(cudaMalloc((void **)&b.delta, rows * 4), rc, out);
	KERN_CUDA_GOTO(cudaMalloc((void **)&b.seg, sizeof(kern_seg_t)), rc, out);
	SL_CHECK_GOTO(kern_fill_random_bf16(b.q, (int64_t)qn, 21, 1.0f, mc->st), rc, out);
	SL_CHECK_GOTO(kern_fill_random_bf16(b.kv, (int64_t)kvn * 2, 22, 1.0f, mc->st), rc, out);
	SL_CHECK_GOTO(kern_fill_random_bf16(b.dout, (int64_t)qn, 23, 1.0f, mc->st), rc, out);
	m->hop = calloc(run->nhop_lens * run->nhop_ds * 3 + 1, sizeof(*m->hop));
	if (m->hop == NULL) {
		rc = sl_seterr(SL_ENOMEM, "hop points: out of memory");
		goto out;
	}
	for (size_t di = 0; di < run->nhop_ds; di++)
		for (size_t li = 0; li < run->nhop_lens; li++) {
			const int32_t d = run->hop_ds[di], len = run->hop_lens[li];
			/* the own shard, then a later and an earlier ring position
			 * (different causal shapes, the same number of pairs) */
			const int32_t kinds[3][2] = {{0, 0}, {0, 1}, {1, 0}};
			for (int k = 0; k < (d > 1 ? 3 : 1); k++) {
				sl_calib_hop_t *h = &m->hop[m->nhop];
				SL_CHECK_GOTO(time_hop(mc, &b, md, d, kinds[k][0], kinds[k][1], len, h), rc,
				              out);
				m->nhop++;
				if (mc->verbose)
					fprintf(stderr,
					        "profile: hop d=%d q=%d k=%d len=%6d fwd %8.3f bwd %8.3f ms\n",
					        d, h->q_owner, h->k_owner, len, h->fwd_ms, h->bwd_ms);
			}
		}
out:
	hop_bufs_free(&b);
	return rc;
}

/* One group execution of a tiny micro-batch through the worker's calls
 * (kern_group_alloc, inputs, ring forward and backward, free), host wall
 * time; and the bytes per token a group's attention allocates. */
static sl_err measure_group(meas_ctx_t *mc, const sl_model_shape_t *md, int device,
                            sl_calib_meas_t *m)
{
	kern_ctx_t ctx;
	kern_group_t g;
	kern_pass_stats_t ps;
	const int32_t H = md->heads, KH = md->kv_heads, D = md->head_dim;
	const float scale = 1.0f / sqrtf((float)D);
	sl_err rc = SL_OK;
	memset(&g, 0, sizeof(g));
	SL_CHECK(kern_ctx_init(&ctx, 0, 1, device, NULL));
	for (int r = -2; r < mc->reps; r++) {
		const kern_seg_t seg = {0, 128, 128, 128};
		const double t0 = sl_now_ms();
		SL_CHECK_GOTO(kern_group_alloc(&ctx, &g, 1, 0, 0, 0, &seg, 1, H, KH, D, 1, scale), rc,
		              out);
		SL_CHECK_GOTO(kern_fill_random_bf16(g.q, kern_group_qsize(&g), 31, 1.0f, ctx.compute),
		              rc, out);
		SL_CHECK_GOTO(kern_fill_random_bf16(g.kv[0], 2 * kern_group_kvsize(&g), 32, 1.0f,
		                                    ctx.compute),
		              rc, out);
		SL_CHECK_GOTO(kern_fill_random_bf16(g.dout, kern_group_qsize(&g), 33, 1.0f,
		                                    ctx.compute),
		              rc, out);
		SL_CHECK_GOTO(kern_ring_forward(&ctx, &g, &ps), rc, out);
		SL_CHECK_GOTO(kern_ring_backward(&ctx, &g, &ps), rc, out);
		kern_group_free(&g);
		if (r >= 0)
			mc->t[r] = sl_now_ms() - t0;
	}
	m->group_fixed_ms = median(mc->t, mc->reps);

	/* workspace: the device memory one group of 16384 tokens takes (d = 1),
	 * plus what a ring adds (kern_group_alloc: 3 receive buffers of K/V in
	 * bf16, the fp32 output accumulator, travelling and temporary dK/dV) */
	{
		const int32_t n = 16384;
		const kern_seg_t seg = {0, n, n, n};
		size_t f0, f1, tot;
		KERN_CUDA_GOTO(cudaDeviceSynchronize(), rc, out);
		KERN_CUDA_GOTO(cudaMemGetInfo(&f0, &tot), rc, out);
		SL_CHECK_GOTO(kern_group_alloc(&ctx, &g, 1, 0, 0, 0, &seg, 1, H, KH, D, 1, scale), rc,
		              out);
		KERN_CUDA_GOTO(cudaMemGetInfo(&f1, &tot), rc, out);
		kern_group_free(&g);
		const double kv = (double)KH * D, q = (double)H * D;
		m->attn_ws_bytes_per_token =
			(double)(f0 - f1) / n + 3 * kv * 2 * 2 + q * 4 + 3 * kv * 2 * 4;
	}
out:
	kern_group_free(&g);
	kern_ctx_fini(&ctx);
	return rc;
}

/* Pinned host <-> device bandwidth, MiB per ms, 256 MiB copies. */
static sl_err measure_offload(meas_ctx_t *mc, sl_calib_meas_t *m)
{
	const size_t bytes = (size_t)256 << 20;
	void *h = NULL, *dv = NULL;
	sl_err rc = SL_OK;
	KERN_CUDA_GOTO(cudaHostAlloc(&h, bytes, cudaHostAllocDefault), rc, out);
	KERN_CUDA_GOTO(cudaMalloc(&dv, bytes), rc, out);
	SL_CHECK_GOTO(kern_fill_random_bf16(dv, (int64_t)(bytes / 2), 41, 1.0f, mc->st), rc, out);
	for (int dir = 0; dir < 2; dir++) {
		for (int r = -2; r < mc->reps; r++) {
			KERN_CUDA_GOTO(cudaEventRecord(mc->e0, mc->st), rc, out);
			KERN_CUDA_GOTO(cudaMemcpyAsync(dir == 0 ? h : dv, dir == 0 ? dv : h, bytes,
			                               dir == 0 ? cudaMemcpyDeviceToHost
			                                        : cudaMemcpyHostToDevice,
			                               mc->st),
			               rc, out);
			KERN_CUDA_GOTO(cudaEventRecord(mc->e1, mc->st), rc, out);
			KERN_CUDA_GOTO(cudaEventSynchronize(mc->e1), rc, out);
			float t;
			KERN_CUDA_GOTO(cudaEventElapsedTime(&t, mc->e0, mc->e1), rc, out);
			if (r >= 0)
				mc->t[r] = t;
		}
		const double g = bytes / MIB / median(mc->t, mc->reps);
		if (dir == 0)
			m->d2h_gbps = g;
		else
			m->h2d_gbps = g;
	}
	if (mc->verbose)
		fprintf(stderr, "profile: pinned D2H %.1f, H2D %.1f MiB/ms\n", m->d2h_gbps, m->h2d_gbps);
out:
	cudaFreeHost(h);
	cudaFree(dv);
	return rc;
}

/* GPUs the driver lists, read without touching CUDA (a process that touched
 * CUDA cannot fork workers that use it). */
static int count_gpus_nocuda(void)
{
	DIR *dir = opendir("/proc/driver/nvidia/gpus");
	int n = 0;
	if (dir == NULL)
		return 0;
	for (struct dirent *e; (e = readdir(dir)) != NULL;)
		n += e->d_name[0] != '.';
	closedir(dir);
	return n;
}

/* Child `rank` of the p2p measurement: a 2-rank communicator over GPUs 0
 * and 1, rank 0 makes the id and passes it through id_pipe; rank 0 writes
 * {latency ms, ms of 256 MiB} to res_pipe. Returns the exit status. */
static int p2p_child(int rank, int id_pipe[2], int res_pipe[2], int reps)
{
	char id[512];
	kern_ctx_t ctx;
	kern_group_t g;
	double lat = 0, big = 0;
	const size_t idn = kern_nccl_id_size();
	if (idn > sizeof(id))
		return 1;
	if (rank == 0) {
		if (kern_nccl_id_make(id) != SL_OK || write(id_pipe[1], id, idn) != (ssize_t)idn)
			return 1;
	} else if (read(id_pipe[0], id, idn) != (ssize_t)idn)
		return 1;
	if (kern_ctx_init(&ctx, rank, 2, rank, id) != SL_OK) {
		fprintf(stderr, "profile: p2p rank %d: %s\n", rank, sl_errmsg());
		return 1;
	}
	memset(&g, 0, sizeof(g));
	g.d = 2;
	g.ring_pos = rank;
	g.prev_rank = g.next_rank = 1 - rank;
	int ok = kern_ring_p2p_ms(&ctx, &g, 8, reps, &lat) == SL_OK &&
	         kern_ring_p2p_ms(&ctx, &g, (size_t)256 << 20, reps, &big) == SL_OK;
	kern_ctx_fini(&ctx);
	if (!ok)
		return 1;
	const double res[2] = {lat, big};
	if (rank == 0 && write(res_pipe[1], res, sizeof(res)) != (ssize_t)sizeof(res))
		return 1;
	return 0;
}

/* With 2+ GPUs: NCCL send/recv between GPUs 0 and 1 in two forked processes
 * (before this process touches CUDA). Otherwise records why not. */
static void measure_p2p(const sl_calib_run_t *run, sl_calib_meas_t *m)
{
	int idp[2], resp[2], st;
	pid_t pid[2] = {-1, -1};
	double res[2];
	m->p2p_measured = 0;
	m->p2p_gbps = run->p2p_gbps;
	m->p2p_latency_ms = 0;
	const int n = count_gpus_nocuda();
	if (n < 2) {
		snprintf(m->p2p_note, sizeof(m->p2p_note),
		         "not measured: %d GPU visible; p2p_gbps_intra from --p2p-gbps", n);
		return;
	}
	if (pipe(idp) != 0 || pipe(resp) != 0) {
		snprintf(m->p2p_note, sizeof(m->p2p_note), "not measured: pipe failed");
		return;
	}
	fflush(NULL);
	for (int r = 0; r < 2; r++) {
		pid[r] = fork();
		if (pid[r] == 0)
			_exit(p2p_child(r, idp, resp, run->reps));
	}
	close(idp[0]);
	close(idp[1]);
	close(resp[1]);
	const ssize_t got = pid[0] > 0 && pid[1] > 0 ? read(resp[0], res, sizeof(res)) : -1;
	close(resp[0]);
	int fail = got != (ssize_t)sizeof(res);
	for (int r = 0; r < 2; r++)
		if (pid[r] > 0 && (waitpid(pid[r], &st, 0) != pid[r] || !WIFEXITED(st) ||
		                   WEXITSTATUS(st) != 0))
			fail = 1;
	if (fail || !(res[1] > 0)) {
		snprintf(m->p2p_note, sizeof(m->p2p_note),
		         "not measured: the 2-process NCCL run failed; p2p_gbps_intra from "
		         "--p2p-gbps");
		return;
	}
	m->p2p_measured = 1;
	m->p2p_latency_ms = res[0];
	m->p2p_gbps = 256.0 / (res[1] - res[0]);
	snprintf(m->p2p_note, sizeof(m->p2p_note),
	         "NCCL send+recv between GPUs 0 and 1 (8 B and 256 MiB, median of %d)", run->reps);
}

static void provenance(const sl_calib_run_t *run, int device, sl_calib_meas_t *m)
{
	struct cudaDeviceProp p;
	int v = 0, n = 0;
	sl_calib_prov_t *pv = &m->prov;
	if (cudaGetDeviceProperties(&p, device) == cudaSuccess)
		snprintf(pv->card, sizeof(pv->card), "%.*s", (int)sizeof(pv->card) - 1, p.name);
	cudaGetDeviceCount(&n);
	pv->gpus = n;
	FILE *f = fopen("/proc/driver/nvidia/version", "r");
	char line[256];
	if (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		/* "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04 ...":
		 * the first word shaped like N.N */
		char *save = NULL;
		for (char *w = strtok_r(line, " \t\n", &save); w != NULL;
		     w = strtok_r(NULL, " \t\n", &save)) {
			unsigned a, b;
			if (sscanf(w, "%u.%u", &a, &b) == 2) {
				snprintf(pv->driver, sizeof(pv->driver), "%.31s", w);
				break;
			}
		}
	}
	if (f != NULL)
		fclose(f);
	if (pv->driver[0] == '\0' && cudaDriverGetVersion(&v) == cudaSuccess)
		snprintf(pv->driver, sizeof(pv->driver), "CUDA driver API %d.%d", v / 1000,
		         v % 1000 / 10);
	if (cudaRuntimeGetVersion(&v) == cudaSuccess)
		snprintf(pv->cuda, sizeof(pv->cuda), "%d.%d", v / 1000, v % 1000 / 10);
	if (ncclGetVersion(&v) == ncclSuccess)
		snprintf(pv->nccl, sizeof(pv->nccl), "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(pv->date, sizeof(pv->date), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(pv->command, sizeof(pv->command), "%s", run->command ? run->command : "");
}

sl_err sl_calib_measure(const sl_model_shape_t *model, const sl_calib_run_t *run,
                        sl_calib_meas_t *out)
{
	meas_ctx_t mc;
	sl_calib_meas_t m;
	sl_err rc = SL_OK;
	size_t fr = 0, tot = 0;
	memset(&mc, 0, sizeof(mc));
	memset(&m, 0, sizeof(m));
	SL_CHECK(sl_model_shape_check(model));
	if (run->reps < 1 || run->reps > 64 || run->ngemm_tokens < 2 || run->nhop_lens < 1 ||
	    run->nhop_ds < 1)
		return sl_seterr(SL_EINVAL, "profile: need 1..64 reps, 2+ token counts, a hop length "
		                            "and a ring size");
	for (size_t i = 0; i < run->nhop_lens; i++)
		if (run->hop_lens[i] < 2 || run->hop_lens[i] % 2)
			return sl_seterr(SL_EINVAL, "profile: hop length %d must be even and >= 2",
			                 run->hop_lens[i]);
	m.model = *model;
	measure_p2p(run, &m); /* first: it forks, and this process has not touched CUDA yet */
	mc.reps = run->reps;
	mc.verbose = run->verbose;
	mc.t = calloc((size_t)run->reps, sizeof(*mc.t));
	if (mc.t == NULL)
		return sl_seterr(SL_ENOMEM, "profile: out of memory");
	KERN_CUDA_GOTO(cudaSetDevice(run->device), rc, out);
	KERN_CUDA_GOTO(cudaMemGetInfo(&fr, &tot), rc, out);
	m.gpu_free_bytes = (double)fr;
	m.gpu_total_bytes = (double)tot;
	provenance(run, run->device, &m);
	KERN_CUDA_GOTO(cudaStreamCreateWithFlags(&mc.st, cudaStreamNonBlocking), rc, out);
	KERN_CUDA_GOTO(cudaEventCreate(&mc.e0), rc, out);
	KERN_CUDA_GOTO(cudaEventCreate(&mc.e1), rc, out);
	KERN_CUDA_GOTO(cudaMalloc(&mc.ws, WS_BYTES), rc, out);
	{
		cublasStatus_t s = cublasLtCreate(&mc.lt);
		if (s != CUBLAS_STATUS_SUCCESS) {
			rc = lt_err(s, "cublasLtCreate", __LINE__);
			goto out;
		}
	}
	if (run->verbose)
		fprintf(stderr, "profile: %s, %s on %s\n", model->name, m.p2p_note, m.prov.card);
	SL_CHECK_GOTO(measure_gemms(&mc, model, run, &m), rc, out);
	SL_CHECK_GOTO(measure_hops(&mc, model, run, &m), rc, out);
	SL_CHECK_GOTO(measure_group(&mc, model, run->device, &m), rc, out);
	SL_CHECK_GOTO(measure_offload(&mc, &m), rc, out);
	*out = m;
	memset(&m, 0, sizeof(m));
out:
	if (mc.lt != NULL)
		cublasLtDestroy(mc.lt);
	cudaFree(mc.ws);
	if (mc.e0 != NULL)
		cudaEventDestroy(mc.e0);
	if (mc.e1 != NULL)
		cudaEventDestroy(mc.e1);
	if (mc.st != NULL)
		cudaStreamDestroy(mc.st);
	free(mc.t);
	sl_calib_meas_free(&m);
	return rc;
}
