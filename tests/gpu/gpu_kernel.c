/* sluice GPU test: the per-hop attention kernels on one GPU against the
 * fp64 CPU reference, on fresh random inputs. A ring of d ranks is emulated
 * on the one device: every virtual rank's shards live in device memory, and
 * rank i runs its d hops (K/V of ring position (i - h) mod d) through the
 * INIT / MERGE / FINAL modes, as ring.c does with NCCL between them; dK/dV of
 * a shard are summed over every rank's hop that used it. Every kernel variant
 * (tile shape) is checked. Exits 77 (skip) without a GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>

#include "gpu_check.h"
#include "kern.h"
#include "kern_math.h"
#include "ref.h"

#define SKIP 77
#define TOL 1e-2

static uint64_t rng = 0;
static double urand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}
/* k / scale for an integer k in [-128, 128]: exact in bf16 */
static double bfrand(double scale)
{
	return (double)((int)(urand() * 257.0) - 128) / scale;
}

typedef struct cfg {
	int D, H, KH, d, causal;
	int nseq;
	int64_t lens[6];
} cfg_t;

typedef struct seqdata {
	int64_t s;
	double *q, *k, *v, *dout;         /* global, [s][H][D] / [s][KH][D] */
	double *o, *lse, *dq, *dk, *dv;   /* reference */
	double *go, *glse, *gdq, *gdk, *gdv; /* GPU results gathered by position */
	int64_t *pos;
} seqdata_t;

static double *dalloc(int64_t n)
{
	double *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
	if (p == NULL) {
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	return p;
}

static void *upload(const double *x, int64_t n)
{
	uint16_t *h = malloc((size_t)n * 2);
	void *dptr;
	for (int64_t i = 0; i < n; i++)
		h[i] = kern_f32_to_bf16((float)x[i]);
	CK(cudaMalloc(&dptr, (size_t)n * 2 + 16));
	CK(cudaMemcpy(dptr, h, (size_t)n * 2, cudaMemcpyHostToDevice));
	free(h);
	return dptr;
}

static void down_bf16(double *dst, const void *src, int64_t n)
{
	uint16_t *h = malloc((size_t)n * 2);
	CK(cudaMemcpy(h, src, (size_t)n * 2, cudaMemcpyDeviceToHost));
	for (int64_t i = 0; i < n; i++)
		dst[i] = kern_bf16_to_f32(h[i]);
	free(h);
}

static void down_f32(double *dst, const float *src, int64_t n)
{
	float *h = malloc((size_t)n * 4);
	CK(cudaMemcpy(h, src, (size_t)n * 4, cudaMemcpyDeviceToHost));
	for (int64_t i = 0; i < n; i++)
		dst[i] = h[i];
	free(h);
}

typedef struct err_acc {
	double num[5], den[5];
	int64_t bad; /* non-finite values or padding rows not exactly 0 / -inf */
} err_acc_t;

static void acc_err(err_acc_t *e, int which, const double *a, const double *b, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		if (isinf(b[i]) && a[i] == b[i])
			continue;
		if (!isfinite(a[i]) || !isfinite(b[i])) {
			e->bad++;
			continue;
		}
		e->num[which] += (a[i] - b[i]) * (a[i] - b[i]);
		e->den[which] += b[i] * b[i];
	}
}

static double rel(const err_acc_t *e, int which)
{
	return e->den[which] > 0 ? sqrt(e->num[which] / e->den[which]) : sqrt(e->num[which]);
}

static int run_cfg(const cfg_t *c)
{
	const int D = c->D, H = c->H, KH = c->KH, d = c->d;
	const float scale = 1.0f / sqrtf((float)D);
	seqdata_t sq[6];
	ref_attn_t prob[6];
	kern_seg_t segs[6];
	int64_t ntok = 0;
	int failed = 0;
	cudaStream_t st;
	clock_t t0 = clock();

	/* global data and the reference */
	for (int k = 0; k < c->nseq; k++) {
		seqdata_t *x = &sq[k];
		const int64_t s = c->lens[k];
		x->s = s;
		x->q = dalloc(s * H * D);
		x->dout = dalloc(s * H * D);
		x->k = dalloc(s * KH * D);
		x->v = dalloc(s * KH * D);
		x->o = dalloc(s * H * D);
		x->dq = dalloc(s * H * D);
		x->lse = dalloc(s * H);
		x->dk = dalloc(s * KH * D);
		x->dv = dalloc(s * KH * D);
		x->go = dalloc(s * H * D);
		x->gdq = dalloc(s * H * D);
		x->glse = dalloc(s * H);
		x->gdk = dalloc(s * KH * D);
		x->gdv = dalloc(s * KH * D);
		x->pos = malloc((size_t)s * sizeof(int64_t));
		for (int64_t i = 0; i < s * H * D; i++) {
			x->q[i] = bfrand(32.0); /* |q| <= 4: peaked softmax rows */
			x->dout[i] = bfrand(128.0);
		}
		for (int64_t i = 0; i < s * KH * D; i++) {
			x->k[i] = bfrand(128.0);
			x->v[i] = bfrand(128.0);
		}
		for (int64_t i = 0; i < s; i++)
			x->pos[i] = i;
		prob[k] = (ref_attn_t){.H = H, .KH = KH, .D = D, .causal = c->causal,
		                       .scale = (double)scale, .nq = s, .nk = s, .seqlen = s,
		                       .q = x->q, .k = x->k, .v = x->v, .qpos = x->pos,
		                       .kpos = x->pos, .dout = x->dout, .o = x->o, .lse = x->lse,
		                       .dq = x->dq, .dk = x->dk, .dv = x->dv};
		const int64_t p = d == 1 ? s : (s + 2 * d - 1) / (2 * d) * (2 * d);
		segs[k].off = ntok;
		segs[k].len = (int32_t)(d == 1 ? s : p / d);
		segs[k].chunk = (int32_t)(d == 1 ? s : p / (2 * d));
		segs[k].seqlen = s;
		ntok += segs[k].len;
	}
	if (ref_attn_run(prob, c->nseq, 0) != 0) {
		fprintf(stderr, "reference: out of memory\n");
		exit(2);
	}
	SK(kern_segs_check(segs, c->nseq, d, ntok));
	const double ref_s = (double)(clock() - t0) / CLOCKS_PER_SEC;

	/* shards of every virtual rank; padding tokens get arbitrary finite values */
	const int64_t qn = ntok * H * D, kvn = ntok * KH * D;
	void *dq_in[8], *dkv_in[8], *ddo[8], *dout_o[8];
	float *dlse[8], *doacc[8], *ddelta[8], *ddq[8], *ddkv[8];
	int32_t *dsegs_unused = NULL;
	kern_seg_t *dsegs;
	(void)dsegs_unused;
	CK(cudaStreamCreate(&st));
	CK(cudaMalloc((void **)&dsegs, sizeof(segs)));
	CK(cudaMemcpy(dsegs, segs, (size_t)c->nseq * sizeof(*segs), cudaMemcpyHostToDevice));
	for (int i = 0; i < d; i++) {
		double *hq = dalloc(qn), *hdo = dalloc(qn), *hkv = dalloc(2 * kvn);
		for (int k = 0; k < c->nseq; k++)
			for (int32_t j = 0; j < segs[k].len; j++) {
				const int64_t pos = kern_pos(segs[k].chunk, d, i, j);
				const int64_t lt = segs[k].off + j;
				for (int e = 0; e < H * D; e++) {
					hq[lt * H * D + e] = pos < sq[k].s ? sq[k].q[pos * H * D + e]
					                                   : bfrand(16.0);
					hdo[lt * H * D + e] = pos < sq[k].s ? sq[k].dout[pos * H * D + e]
					                                    : bfrand(16.0);
				}
				for (int e = 0; e < KH * D; e++) {
					hkv[lt * KH * D + e] = pos < sq[k].s ? sq[k].k[pos * KH * D + e]
					                                     : bfrand(1.0);
					hkv[kvn + lt * KH * D + e] =
					    pos < sq[k].s ? sq[k].v[pos * KH * D + e] : bfrand(1.0);
				}
			}
		dq_in[i] = upload(hq, qn);
		ddo[i] = upload(hdo, qn);
		dkv_in[i] = upload(hkv, 2 * kvn);
		free(hq);
		free(hdo);
		free(hkv);
		CK(cudaMalloc(&dout_o[i], (size_t)qn * 2 + 16));
		CK(cudaMalloc((void **)&dlse[i], (size_t)(ntok * H) * 4 + 16));
		CK(cudaMalloc((void **)&doacc[i], (size_t)qn * 4 + 16));
		CK(cudaMalloc((void **)&ddelta[i], (size_t)(ntok * H) * 4 + 16));
		CK(cudaMalloc((void **)&ddq[i], (size_t)qn * 4 + 16));
		CK(cudaMalloc((void **)&ddkv[i], (size_t)kvn * 2 * 4 + 16));
	}

	/* passes: every forward variant, every backward variant, then each
	 * sm_90a backward variant once more with ntok = 0, which runs its
	 * mma.sync fallback on its own 128-key tiles (d64: split in two) */
	const int nfv = kern_fwd_variants(D), nbv = kern_bwd_variants(D);
	for (int pass = 0; pass < nfv + 2 * nbv; pass++) {
		const int fwd_only = pass < nfv;
		const int fallback = pass >= nfv + nbv;
		const int fv = fwd_only ? pass : -1;
		const int bv = fwd_only ? -1 : (pass - nfv) % nbv;
		if (fallback && strncmp(kern_bwd_name(D, bv), "sm90", 4) != 0)
			continue;
		if (fwd_only ? !kern_fwd_native(D, fv) : (!fallback && !kern_bwd_native(D, bv))) {
			/* an sm_90a variant on another card would run its fallback */
			printf("skip D=%d H=%d KH=%d d=%d causal=%d %-22s (not for this device)\n", D,
			       H, KH, d, c->causal,
			       fwd_only ? kern_fwd_name(D, fv) : kern_bwd_name(D, bv));
			continue;
		}
		kern_tile_t *qt = NULL, *kt = NULL, *dqt, *dkt;
		int32_t nqt = 0, nkt = 0;
		err_acc_t e;
		memset(&e, 0, sizeof(e));
		SK(kern_tiles_build(segs, c->nseq, kern_fwd_block_m(D, fv), 'q', &qt, &nqt));
		SK(kern_tiles_build(segs, c->nseq, kern_bwd_block_n(D, bv), 'k', &kt, &nkt));
		CK(cudaMalloc((void **)&dqt, (size_t)nqt * sizeof(*qt) + 16));
		CK(cudaMalloc((void **)&dkt, (size_t)nkt * sizeof(*kt) + 16));
		CK(cudaMemcpy(dqt, qt, (size_t)nqt * sizeof(*qt), cudaMemcpyHostToDevice));
		CK(cudaMemcpy(dkt, kt, (size_t)nkt * sizeof(*kt), cudaMemcpyHostToDevice));

		/* forward of every virtual rank, outputs poisoned first */
		for (int i = 0; i < d; i++) {
			CK(cudaMemsetAsync(dout_o[i], 0xff, (size_t)qn * 2, st));
			CK(cudaMemsetAsync(dlse[i], 0xff, (size_t)(ntok * H) * 4, st));
			CK(cudaMemsetAsync(doacc[i], 0xff, (size_t)qn * 4, st));
			for (int h = 0; h < d; h++) {
				const int owner = (i - h + d) % d;
				kern_fwd_args_t a = {
				    .q = dq_in[i], .k = dkv_in[owner],
				    .v = (const uint16_t *)dkv_in[owner] + kvn, .o = dout_o[i],
				    .oacc = doacc[i], .lse = dlse[i], .segs = dsegs, .tiles = dqt,
				    .ntiles = nqt, .heads = H, .kv_heads = KH, .head_dim = D, .d = d,
				    .q_owner = i, .k_owner = owner, .causal = c->causal,
				    .mode = d == 1 ? KERN_FWD_OUT
				                   : (h == 0 ? KERN_FWD_INIT
				                             : (h == d - 1 ? KERN_FWD_FINAL
				                                           : KERN_FWD_MERGE)),
				    .scale = scale, .ntok = ntok};
				SK(kern_attn_fwd(&a, fv, st));
			}
		}
		/* backward: dQ local, dK/dV of each shard summed over the ranks */
		int touched[8] = {0};
		if (!fwd_only) {
			for (int i = 0; i < d; i++) {
				CK(cudaMemsetAsync(ddq[i], 0, (size_t)qn * 4, st));
				CK(cudaMemsetAsync(ddkv[i], 0xff, (size_t)kvn * 2 * 4, st));
				SK(kern_attn_delta(dout_o[i], ddo[i], ddelta[i], ntok * H, D, st));
			}
			for (int i = 0; i < d; i++)
				for (int h = 0; h < d; h++) {
					const int owner = (i - h + d) % d;
					kern_bwd_args_t a = {
					    .q = dq_in[i], .k = dkv_in[owner],
					    .v = (const uint16_t *)dkv_in[owner] + kvn, .dout = ddo[i],
					    .lse = dlse[i], .delta = ddelta[i], .dq = ddq[i],
					    .dk = ddkv[owner], .dv = ddkv[owner] + kvn, .segs = dsegs,
					    .tiles = dkt, .ntiles = nkt, .heads = H, .kv_heads = KH,
					    .head_dim = D, .d = d, .q_owner = i, .k_owner = owner,
					    .causal = c->causal, .accumulate = touched[owner],
					    .scale = scale, .ntok = fallback ? 0 : ntok};
					SK(kern_attn_bwd(&a, bv, st));
					touched[owner] = 1;
				}
		}
		CK(cudaStreamSynchronize(st));
		CK(cudaGetLastError());

		/* gather by position and compare */
		for (int k = 0; k < c->nseq; k++) {
			for (int64_t x = 0; x < sq[k].s * H * D; x++)
				sq[k].go[x] = sq[k].gdq[x] = NAN;
			for (int64_t x = 0; x < sq[k].s * H; x++)
				sq[k].glse[x] = NAN;
			for (int64_t x = 0; x < sq[k].s * KH * D; x++)
				sq[k].gdk[x] = sq[k].gdv[x] = NAN;
		}
		double *ho = dalloc(qn), *hl = dalloc(ntok * H), *hdq = dalloc(qn),
		       *hdk = dalloc(2 * kvn);
		for (int i = 0; i < d; i++) {
			down_bf16(ho, dout_o[i], qn);
			down_f32(hl, dlse[i], ntok * H);
			if (!fwd_only) {
				down_f32(hdq, ddq[i], qn);
				down_f32(hdk, ddkv[i], 2 * kvn);
			}
			for (int k = 0; k < c->nseq; k++)
				for (int32_t j = 0; j < segs[k].len; j++) {
					const int64_t pos = kern_pos(segs[k].chunk, d, i, j);
					const int64_t lt = segs[k].off + j;
					if (pos >= sq[k].s) { /* padding: exact zeros and -inf */
						for (int hh = 0; hh < H; hh++)
							e.bad += hl[lt * H + hh] != -INFINITY;
						for (int x = 0; x < H * D; x++)
							e.bad += ho[lt * H * D + x] != 0.0 ||
							         (!fwd_only && hdq[lt * H * D + x] != 0.0);
						for (int x = 0; x < KH * D && !fwd_only; x++)
							e.bad += hdk[lt * KH * D + x] != 0.0 ||
							         hdk[kvn + lt * KH * D + x] != 0.0;
						continue;
					}
					memcpy(sq[k].go + pos * H * D, ho + lt * H * D,
					       (size_t)(H * D) * 8);
					memcpy(sq[k].glse + pos * H, hl + lt * H, (size_t)H * 8);
					if (!fwd_only) {
						memcpy(sq[k].gdq + pos * H * D, hdq + lt * H * D,
						       (size_t)(H * D) * 8);
						memcpy(sq[k].gdk + pos * KH * D, hdk + lt * KH * D,
						       (size_t)(KH * D) * 8);
						memcpy(sq[k].gdv + pos * KH * D,
						       hdk + kvn + lt * KH * D, (size_t)(KH * D) * 8);
					}
				}
		}
		free(ho);
		free(hl);
		free(hdq);
		free(hdk);
		for (int k = 0; k < c->nseq; k++) {
			const int64_t s = sq[k].s;
			acc_err(&e, 0, sq[k].go, sq[k].o, s * H * D);
			acc_err(&e, 1, sq[k].glse, sq[k].lse, s * H);
			if (!fwd_only) {
				acc_err(&e, 2, sq[k].gdq, sq[k].dq, s * H * D);
				acc_err(&e, 3, sq[k].gdk, sq[k].dk, s * KH * D);
				acc_err(&e, 4, sq[k].gdv, sq[k].dv, s * KH * D);
			}
		}
		int ok = e.bad == 0;
		for (int w = 0; w < (fwd_only ? 2 : 5); w++)
			ok = ok && rel(&e, w) < TOL;
		printf("%s D=%d H=%d KH=%d d=%d causal=%d %-22s%s O %.2e LSE %.2e",
		       ok ? "ok  " : "FAIL", D, H, KH, d, c->causal,
		       fwd_only ? kern_fwd_name(D, fv) : kern_bwd_name(D, bv),
		       fallback ? " (mma fallback)" : "", rel(&e, 0), rel(&e, 1));
		if (!fwd_only)
			printf(" dQ %.2e dK %.2e dV %.2e", rel(&e, 2), rel(&e, 3), rel(&e, 4));
		printf(" bad %lld\n", (long long)e.bad);
		fflush(stdout);
		failed += !ok;
		free(qt);
		free(kt);
		CK(cudaFree(dqt));
		CK(cudaFree(dkt));
	}
	printf("     (reference %.1f s CPU)\n", ref_s);
	for (int i = 0; i < d; i++) {
		CK(cudaFree(dq_in[i]));
		CK(cudaFree(ddo[i]));
		CK(cudaFree(dkv_in[i]));
		CK(cudaFree(dout_o[i]));
		CK(cudaFree(dlse[i]));
		CK(cudaFree(doacc[i]));
		CK(cudaFree(ddelta[i]));
		CK(cudaFree(ddq[i]));
		CK(cudaFree(ddkv[i]));
	}
	CK(cudaFree(dsegs));
	CK(cudaStreamDestroy(st));
	for (int k = 0; k < c->nseq; k++) {
		seqdata_t *x = &sq[k];
		free(x->q), free(x->k), free(x->v), free(x->dout), free(x->o), free(x->lse);
		free(x->dq), free(x->dk), free(x->dv), free(x->go), free(x->glse), free(x->gdq);
		free(x->gdk), free(x->gdv), free(x->pos);
	}
	return failed;
}

int main(int argc, char **argv)
{
	int n = 0, failed = 0, quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
	if (kern_device_count(&n) != SL_OK || n == 0) {
		printf("no CUDA device: skipped\n");
		return SKIP;
	}
	rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)time(NULL); /* fresh inputs every run */
	printf("seed %llu\n", (unsigned long long)rng);
	const cfg_t cfgs[] = {
	    {128, 4, 4, 1, 1, 5, {1, 37, 300, 1111, 2048}},
	    {128, 4, 2, 1, 0, 3, {5, 700, 1500}},
	    {128, 4, 2, 2, 1, 4, {5, 129, 1000, 2500}},
	    {128, 4, 1, 4, 1, 4, {3, 64, 777, 3001}},
	    {128, 4, 4, 3, 1, 2, {50, 1234}},
	    {128, 4, 4, 2, 0, 2, {9, 1999}},
	    {64, 4, 4, 1, 1, 4, {1, 100, 1111, 2048}},
	    {64, 4, 1, 2, 1, 3, {17, 640, 2047}},
	    {64, 4, 2, 4, 1, 3, {7, 999, 3000}},
	    {64, 4, 2, 1, 0, 2, {33, 1500}},
	    /* many (tile, head) blocks per launch (256-384, more than an H100
	     * or H200 has SMs): several waves, causal tiles heaviest first */
	    {128, 32, 8, 2, 1, 6, {64, 128, 192, 256, 320, 384}},
	    {128, 32, 16, 1, 0, 6, {64, 128, 192, 256, 320, 384}},
	    {64, 32, 32, 1, 1, 6, {64, 128, 192, 256, 320, 384}},
	};
	const int ncfg = (int)(sizeof(cfgs) / sizeof(cfgs[0]));
	for (int i = 0; i < ncfg; i++) {
		if (quick && i % 3 != 0)
			continue;
		failed += run_cfg(&cfgs[i]);
	}
	printf("%s: %d failing checks\n", failed ? "FAILED" : "passed", failed);
	return failed ? 1 : 0;
}
