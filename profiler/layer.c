/* sluice profiler: cuBLASLt GEMMs and one pre-LN GPT layer on the GPU,
 * shared by `sluice profile` (measure.c) and the emulated worker
 * (emulate.c). The layer is what a trainer runs per layer apart from the
 * attention: LayerNorm, the QKV, output, fc1 and fc2 projections, GeLU,
 * residual adds, forward and backward (dX and dW for every weight). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prof_gpu.h"

static sl_err lt_err(cublasStatus_t s, const char *what, int line)
{
	return sl_seterr(SL_ECUDA, "%s:%d: %s: cuBLASLt status %d", __FILE__, line, what, (int)s);
}

#define LT_GOTO(call, rcvar, label)                                                                \
	do {                                                                                       \
		cublasStatus_t prof_s_ = (call);                                                   \
		if (prof_s_ != CUBLAS_STATUS_SUCCESS) {                                            \
			(rcvar) = lt_err(prof_s_, #call, __LINE__);                                \
			goto label;                                                                \
		}                                                                                  \
	} while (0)

sl_err prof_gpu_init(prof_gpu_t *pg, int device)
{
	sl_err rc = SL_OK;
	memset(pg, 0, sizeof(*pg));
	pg->device = device;
	KERN_CUDA_GOTO(cudaSetDevice(device), rc, fail);
	KERN_CUDA_GOTO(cudaStreamCreateWithFlags(&pg->st, cudaStreamNonBlocking), rc, fail);
	KERN_CUDA_GOTO(cudaEventCreate(&pg->e0), rc, fail);
	KERN_CUDA_GOTO(cudaEventCreate(&pg->e1), rc, fail);
	KERN_CUDA_GOTO(cudaMalloc(&pg->ws, PROF_WS_BYTES), rc, fail);
	LT_GOTO(cublasLtCreate(&pg->lt), rc, fail);
	return SL_OK;
fail:
	prof_gpu_fini(pg);
	return rc;
}

static void plan_destroy(prof_gemm_plan_t *p)
{
	cublasLtMatrixLayoutDestroy(p->lc);
	cublasLtMatrixLayoutDestroy(p->lb);
	cublasLtMatrixLayoutDestroy(p->la);
	cublasLtMatmulDescDestroy(p->op);
	memset(p, 0, sizeof(*p));
}

void prof_gpu_fini(prof_gpu_t *pg)
{
	for (int i = 0; i < pg->nplans; i++)
		plan_destroy(&pg->plans[i]);
	if (pg->lt != NULL)
		cublasLtDestroy(pg->lt);
	cudaFree(pg->ws);
	if (pg->e0 != NULL)
		cudaEventDestroy(pg->e0);
	if (pg->e1 != NULL)
		cudaEventDestroy(pg->e1);
	if (pg->st != NULL)
		cudaStreamDestroy(pg->st);
	memset(pg, 0, sizeof(*pg));
}

/* Descriptors and the heuristic's first algorithm for g's shape into *p. */
static sl_err plan_make(prof_gpu_t *pg, const prof_gemm_t *g, prof_gemm_plan_t *p)
{
	cublasLtMatmulPreference_t pref = NULL;
	cublasLtMatmulHeuristicResult_t hr;
	int nres = 0;
	const size_t ws = PROF_WS_BYTES;
	sl_err rc = SL_OK;
	memset(p, 0, sizeof(*p));
	p->ta = g->ta;
	p->tb = g->tb;
	p->m = g->m;
	p->n = g->n;
	p->k = g->k;
	LT_GOTO(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), rc, out);
	LT_GOTO(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &p->ta,
	                                       sizeof(p->ta)),
	        rc, out);
	LT_GOTO(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &p->tb,
	                                       sizeof(p->tb)),
	        rc, out);
	/* stored shapes: A is m x k (k x m when transposed), B k x n (n x k) */
	LT_GOTO(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, p->ta == CUBLAS_OP_N ? p->m : p->k,
	                                   p->ta == CUBLAS_OP_N ? p->k : p->m,
	                                   p->ta == CUBLAS_OP_N ? p->m : p->k),
	        rc, out);
	LT_GOTO(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, p->tb == CUBLAS_OP_N ? p->k : p->n,
	                                   p->tb == CUBLAS_OP_N ? p->n : p->k,
	                                   p->tb == CUBLAS_OP_N ? p->k : p->n),
	        rc, out);
	LT_GOTO(cublasLtMatrixLayoutCreate(&p->lc, CUDA_R_16BF, p->m, p->n, p->m), rc, out);
	LT_GOTO(cublasLtMatmulPreferenceCreate(&pref), rc, out);
	LT_GOTO(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
	                                             &ws, sizeof(ws)),
	        rc, out);
	LT_GOTO(cublasLtMatmulAlgoGetHeuristic(pg->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1,
	                                       &hr, &nres),
	        rc, out);
	if (nres < 1) {
		rc = sl_seterr(SL_ECUDA, "cuBLASLt has no algorithm for %lld x %lld x %lld",
		               (long long)p->m, (long long)p->n, (long long)p->k);
		goto out;
	}
	p->algo = hr.algo;
out:
	cublasLtMatmulPreferenceDestroy(pref);
	if (rc != SL_OK)
		plan_destroy(p);
	return rc;
}

/* The cached plan of g's shape, made (evicting round robin) when missing. */
static sl_err plan_get(prof_gpu_t *pg, const prof_gemm_t *g, const prof_gemm_plan_t **out)
{
	for (int i = 0; i < pg->nplans; i++) {
		const prof_gemm_plan_t *p = &pg->plans[i];
		if (p->ta == g->ta && p->tb == g->tb && p->m == g->m && p->n == g->n && p->k == g->k) {
			*out = p;
			return SL_OK;
		}
	}
	int slot = pg->nplans;
	if (slot == PROF_GEMM_CACHE) {
		slot = pg->next_evict;
		pg->next_evict = (pg->next_evict + 1) % PROF_GEMM_CACHE;
		plan_destroy(&pg->plans[slot]);
	}
	SL_CHECK(plan_make(pg, g, &pg->plans[slot]));
	if (slot == pg->nplans)
		pg->nplans++;
	*out = &pg->plans[slot];
	return SL_OK;
}

sl_err prof_gemm_run(prof_gpu_t *pg, const prof_gemm_t *g)
{
	const float alpha = 1.0f, beta = 0.0f;
	const prof_gemm_plan_t *p;
	sl_err rc = SL_OK;
	if (g->m <= 0 || g->n <= 0 || g->k <= 0)
		return SL_OK;
	SL_CHECK(plan_get(pg, g, &p));
	if (pg->dry)
		return SL_OK;
	LT_GOTO(cublasLtMatmul(pg->lt, p->op, &alpha, g->a, p->la, g->b, p->lb, &beta, g->c, p->lc,
	                       g->c, p->lc, &p->algo, pg->ws, PROF_WS_BYTES, pg->st),
	        rc, out);
out:
	return rc;
}

int prof_linear_gemms(int64_t in, int64_t out, int64_t n, const void *w, const void *x,
                      const void *dy, void *y, void *dx, void *dw, prof_gemm_t g[3])
{
	g[0] = (prof_gemm_t){CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, w, x, y};
	g[1] = (prof_gemm_t){CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, w, dy, dx};
	g[2] = (prof_gemm_t){CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, x, dy, dw};
	return 3;
}

/* Runs the GEMMs of g selected by mask (bit i: g[i]). */
static sl_err run_gemms(prof_gpu_t *pg, const prof_gemm_t *g, int mask)
{
	for (int i = 0; i < 3; i++)
		if (mask & (1 << i))
			SL_CHECK(prof_gemm_run(pg, &g[i]));
	return SL_OK;
}

static sl_err dalloc(void **p, size_t bytes)
{
	KERN_CUDA(cudaMalloc(p, bytes > 0 ? bytes : 16));
	return SL_OK;
}

static sl_err dalloc_rand(prof_gpu_t *pg, void **p, int64_t elems, uint64_t seed, float amp)
{
	SL_CHECK(dalloc(p, (size_t)elems * 2));
	return kern_fill_random_bf16(*p, elems, seed, amp, pg->st);
}

/* Frees the activations (not the weights). */
static void acts_free(prof_layer_t *L)
{
	void **a[] = {&L->x0,  &L->ln1, &L->qkvb, &L->q,   &L->k,    &L->v,    &L->o,
	              &L->y,   &L->x1,  &L->ln2,  &L->f1,  &L->g,    &L->x2,   &L->dx2,
	              &L->dg,  &L->df1, &L->dln2, &L->dx1, &L->dout, &L->dqkv, &L->dln1,
	              &L->dx0, (void **)&L->mean, (void **)&L->rstd};
	for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++) {
		cudaFree(*a[i]);
		*a[i] = NULL;
	}
	L->cap = 0;
}

void prof_layer_free(prof_layer_t *L)
{
	acts_free(L);
	void *w[] = {L->wqkv, L->wo, L->w1, L->w2, L->dwqkv, L->dwo, L->dw1, L->dw2,
	             L->ln_g, L->ln_b, L->dln_g, L->dln_b};
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
		cudaFree(w[i]);
	memset(L, 0, sizeof(*L));
}

sl_err prof_layer_reserve(prof_gpu_t *pg, prof_layer_t *L, const sl_model_shape_t *md,
                          int64_t cap)
{
	sl_err rc = SL_OK;
	if (L->wqkv == NULL) {
		const int64_t h = md->hidden, f = md->ffn;
		memset(L, 0, sizeof(*L));
		L->md = *md;
		L->qd = (int64_t)md->heads * md->head_dim;
		L->kd = (int64_t)md->kv_heads * md->head_dim;
		L->qkv = L->qd + 2 * L->kd;
		if (h % 2 || f % 2 || L->kd % 8 || h > 8192)
			return sl_seterr(SL_EINVAL, "layer: hidden %lld (even, <= 8192), ffn %lld "
			                 "(even), kv_heads x head_dim %lld (a multiple of 8)",
			                 (long long)h, (long long)f, (long long)L->kd);
		SL_CHECK_GOTO(dalloc_rand(pg, &L->wqkv, L->qkv * h, 101, 0.02f), rc, fail);
		SL_CHECK_GOTO(dalloc_rand(pg, &L->wo, h * L->qd, 102, 0.02f), rc, fail);
		SL_CHECK_GOTO(dalloc_rand(pg, &L->w1, f * h, 103, 0.02f), rc, fail);
		SL_CHECK_GOTO(dalloc_rand(pg, &L->w2, h * f, 104, 0.02f), rc, fail);
		SL_CHECK_GOTO(dalloc(&L->dwqkv, (size_t)(L->qkv * h) * 2), rc, fail);
		SL_CHECK_GOTO(dalloc(&L->dwo, (size_t)(h * L->qd) * 2), rc, fail);
		SL_CHECK_GOTO(dalloc(&L->dw1, (size_t)(f * h) * 2), rc, fail);
		SL_CHECK_GOTO(dalloc(&L->dw2, (size_t)(h * f) * 2), rc, fail);
		SL_CHECK_GOTO(dalloc((void **)&L->ln_g, (size_t)(2 * h) * 4), rc, fail);
		SL_CHECK_GOTO(dalloc((void **)&L->ln_b, (size_t)(2 * h) * 4), rc, fail);
		SL_CHECK_GOTO(dalloc((void **)&L->dln_g, (size_t)(2 * h) * 4), rc, fail);
		SL_CHECK_GOTO(dalloc((void **)&L->dln_b, (size_t)(2 * h) * 4), rc, fail);
		/* gamma = 1, beta = 0 as at initialisation: the fp32 pattern of
		 * 1.0f is 0x3f800000, which a byte memset cannot write, so gamma
		 * comes from bf16 noise reinterpreted (finite, nonzero) */
		SL_CHECK_GOTO(kern_fill_random_bf16(L->ln_g, 4 * h, 105, 1.0f, pg->st), rc, fail);
		KERN_CUDA_GOTO(cudaMemsetAsync(L->ln_b, 0, (size_t)(2 * h) * 4, pg->st), rc, fail);
	}
	if (cap <= L->cap)
		return SL_OK;
	acts_free(L);
	{
		const int64_t h = L->md.hidden, f = L->md.ffn, n = cap;
		struct {
			void **p;
			int64_t w;
		} b[] = {{&L->x0, h},    {&L->ln1, h},  {&L->qkvb, L->qkv}, {&L->q, L->qd},
		         {&L->k, L->kd}, {&L->v, L->kd}, {&L->o, L->qd},     {&L->y, h},
		         {&L->x1, h},    {&L->ln2, h},  {&L->f1, f},        {&L->g, f},
		         {&L->x2, h},    {&L->dx2, h},  {&L->dg, f},        {&L->df1, f},
		         {&L->dln2, h},  {&L->dx1, h},  {&L->dout, L->qd},  {&L->dqkv, L->qkv},
		         {&L->dln1, h},  {&L->dx0, h}};
		for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++)
			SL_CHECK_GOTO(dalloc(b[i].p, (size_t)(n * b[i].w) * 2), rc, fail);
		SL_CHECK_GOTO(dalloc((void **)&L->mean, (size_t)(2 * n) * 4), rc, fail);
		SL_CHECK_GOTO(dalloc((void **)&L->rstd, (size_t)(2 * n) * 4), rc, fail);
		/* the inputs (residual stream, upstream gradient) and the
		 * attention's side (O, dQKV) get values; everything else is
		 * written before it is read */
		SL_CHECK_GOTO(kern_fill_random_bf16(L->x0, n * h, 111, 1.0f, pg->st), rc, fail);
		SL_CHECK_GOTO(kern_fill_random_bf16(L->dx2, n * h, 112, 1.0f, pg->st), rc, fail);
		SL_CHECK_GOTO(kern_fill_random_bf16(L->o, n * L->qd, 113, 1.0f, pg->st), rc, fail);
		SL_CHECK_GOTO(kern_fill_random_bf16(L->dqkv, n * L->qkv, 114, 1.0f, pg->st), rc,
		              fail);
		L->cap = cap;
	}
	return SL_OK;
fail:
	return rc; /* the caller's prof_layer_free releases what was allocated */
}

sl_err prof_layer_fwd_in(prof_gpu_t *pg, prof_layer_t *L, int64_t n, void *q, void *k, void *v)
{
	const int64_t h = L->md.hidden;
	prof_gemm_t g[3];
	if (n > L->cap)
		return sl_seterr(SL_EINVAL, "layer: %lld tokens over the reserved %lld", (long long)n,
		                 (long long)L->cap);
	SL_CHECK(kern_ln_fwd(L->x0, L->ln_g, L->ln_b, L->ln1, L->mean, L->rstd, n, (int32_t)h,
	                     pg->st));
	prof_linear_gemms(h, L->qkv, n, L->wqkv, L->ln1, NULL, L->qkvb, NULL, NULL, g);
	SL_CHECK(run_gemms(pg, g, 1));
	return kern_qkv_split(L->qkvb, q != NULL ? q : L->q, k != NULL ? k : L->k, v != NULL ? v : L->v, n,
	                      (int32_t)L->qd, (int32_t)L->kd, pg->st);
}

sl_err prof_layer_fwd_out(prof_gpu_t *pg, prof_layer_t *L, int64_t n)
{
	const int64_t h = L->md.hidden, f = L->md.ffn;
	prof_gemm_t g[3];
	prof_linear_gemms(L->qd, h, n, L->wo, L->o, NULL, L->y, NULL, NULL, g);
	SL_CHECK(run_gemms(pg, g, 1));
	SL_CHECK(kern_ew(KERN_EW_ADD, L->x0, L->y, L->x1, n * h, pg->st));
	SL_CHECK(kern_ln_fwd(L->x1, L->ln_g + h, L->ln_b + h, L->ln2, L->mean + L->cap,
	                     L->rstd + L->cap, n, (int32_t)h, pg->st));
	prof_linear_gemms(h, f, n, L->w1, L->ln2, NULL, L->f1, NULL, NULL, g);
	SL_CHECK(run_gemms(pg, g, 1));
	SL_CHECK(kern_ew(KERN_EW_GELU, L->f1, NULL, L->g, n * f, pg->st));
	prof_linear_gemms(f, h, n, L->w2, L->g, NULL, L->y, NULL, NULL, g);
	SL_CHECK(run_gemms(pg, g, 1));
	return kern_ew(KERN_EW_ADD, L->x1, L->y, L->x2, n * h, pg->st);
}

sl_err prof_layer_bwd_out(prof_gpu_t *pg, prof_layer_t *L, int64_t n)
{
	const int64_t h = L->md.hidden, f = L->md.ffn;
	prof_gemm_t g[3];
	KERN_CUDA(cudaMemsetAsync(L->dln_g, 0, (size_t)(2 * h) * 4, pg->st));
	KERN_CUDA(cudaMemsetAsync(L->dln_b, 0, (size_t)(2 * h) * 4, pg->st));
	/* fc2: dg = dx2 w2, dw2 = dx2^T g */
	prof_linear_gemms(f, h, n, L->w2, L->g, L->dx2, NULL, L->dg, L->dw2, g);
	SL_CHECK(run_gemms(pg, g, 6));
	SL_CHECK(kern_ew(KERN_EW_GELU_BWD, L->f1, L->dg, L->df1, n * f, pg->st));
	prof_linear_gemms(h, f, n, L->w1, L->ln2, L->df1, NULL, L->dln2, L->dw1, g);
	SL_CHECK(run_gemms(pg, g, 6));
	SL_CHECK(kern_ln_bwd(L->dln2, L->x1, L->ln_g + h, L->mean + L->cap, L->rstd + L->cap, L->dx2,
	                     L->dx1, L->dln_g + h, L->dln_b + h, n, (int32_t)h, pg->st));
	prof_linear_gemms(L->qd, h, n, L->wo, L->o, L->dx1, NULL, L->dout, L->dwo, g);
	return run_gemms(pg, g, 6);
}

sl_err prof_layer_bwd_in(prof_gpu_t *pg, prof_layer_t *L, int64_t n, const float *dq,
                         const float *dk, const float *dv)
{
	const int64_t h = L->md.hidden;
	prof_gemm_t g[3];
	if (dq != NULL)
		SL_CHECK(kern_qkv_merge_grad(dq, dk, dv, L->dqkv, n, (int32_t)L->qd, (int32_t)L->kd,
		                             pg->st));
	prof_linear_gemms(h, L->qkv, n, L->wqkv, L->ln1, L->dqkv, NULL, L->dln1, L->dwqkv, g);
	SL_CHECK(run_gemms(pg, g, 6));
	return kern_ln_bwd(L->dln1, L->x0, L->ln_g, L->mean, L->rstd, L->dx1, L->dx0, L->dln_g,
	                   L->dln_b, n, (int32_t)h, pg->st);
}

#define HEAD_CHUNK 8192

sl_err prof_head_alloc(prof_gpu_t *pg, prof_head_t *hd, const sl_model_shape_t *md)
{
	const int64_t h = md->hidden;
	sl_err rc = SL_OK;
	memset(hd, 0, sizeof(*hd));
	/* the vocabulary padded to a multiple of 128 as Megatron-LM does: an odd
	 * leading dimension (GPT-2's 50257) would time cuBLASLt's unaligned
	 * kernels, 5x slower, which no trainer runs */
	hd->vocab = (md->vocab + 127) / 128 * 128;
	if (hd->vocab == 0)
		return SL_OK;
	SL_CHECK_GOTO(dalloc_rand(pg, &hd->w, hd->vocab * h, 121, 0.02f), rc, fail);
	SL_CHECK_GOTO(dalloc(&hd->dw, (size_t)(hd->vocab * h) * 2), rc, fail);
	SL_CHECK_GOTO(dalloc(&hd->logits, (size_t)(HEAD_CHUNK * hd->vocab) * 2), rc, fail);
	SL_CHECK_GOTO(dalloc_rand(pg, &hd->dlogits, HEAD_CHUNK * hd->vocab, 122, 1.0f), rc, fail);
	return SL_OK;
fail:
	prof_head_free(hd);
	return rc;
}

void prof_head_free(prof_head_t *hd)
{
	cudaFree(hd->w);
	cudaFree(hd->dw);
	cudaFree(hd->logits);
	cudaFree(hd->dlogits);
	memset(hd, 0, sizeof(*hd));
}

sl_err prof_head_run(prof_gpu_t *pg, prof_head_t *hd, const prof_layer_t *L, int64_t n)
{
	const int64_t h = L->md.hidden;
	prof_gemm_t g[3];
	if (hd->vocab == 0)
		return SL_OK;
	for (int64_t t0 = 0; t0 < n; t0 += HEAD_CHUNK) {
		const int64_t c = n - t0 < HEAD_CHUNK ? n - t0 : HEAD_CHUNK;
		const uint16_t *x = (const uint16_t *)L->x2 + t0 * h;
		uint16_t *dx = (uint16_t *)L->dx2 + t0 * h;
		prof_linear_gemms(h, hd->vocab, c, hd->w, x, hd->dlogits, hd->logits, dx, hd->dw, g);
		SL_CHECK(run_gemms(pg, g, 7));
	}
	return SL_OK;
}
