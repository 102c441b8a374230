/* sluice profiler: the emulated worker behind `sluice run-plan --emulate`.
 *
 * Every rank of an N-rank plan runs on the one GPU in turn. Per group
 * execution, first every rank's forward up to the attention (LN1, the QKV
 * projection), which leaves each rank's K/V shard in its slot of a group-wide
 * buffer; then per rank the rest of the layer: the ring forward (hop h
 * against the shard of ring position i - h, exactly the shard the ring would
 * deliver), the output projection and MLP, the offload copies, the backward
 * through MLP and projection, the ring backward (the travelling dK/dV added
 * per hop as the ring adds it), the QKV backward, and the LM head. One layer
 * is run and multiplied by the model's layer count (every layer is the
 * same; the head runs once). CUDA events time each part of each rank. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prof_gpu.h"

/* Event slots of one rank: A0, A1 around its QKV part, then B0..B7. */
enum { EV_A0, EV_A1, EV_B0, EV_ATTF, EV_FOUT, EV_OFF, EV_BOUT, EV_ATTB, EV_BIN, EV_HEAD, EV_N };

/* Buffers that outlive a group execution, grown on demand. */
typedef struct emul_bufs {
	int64_t tok_cap;  /* local tokens per rank the per-rank buffers hold */
	int64_t all_cap;  /* ranks x tokens qall/kvall hold */
	void *qall, *kvall; /* [d][ntok][qd], [d][2][ntok][kd] bf16 */
	float *oacc, *lse, *delta, *dq, *dkv_own, *dkv_tmp, *dkv_trav;
	size_t off_cap;
	void *off_dev, *off_host; /* offload copy source and pinned destination */
	cudaEvent_t *ev;
	int nev;
} emul_bufs_t;

static void bufs_free(emul_bufs_t *b)
{
	void *p[] = {b->qall, b->kvall, b->oacc, b->lse, b->delta, b->dq, b->dkv_own, b->dkv_tmp,
	             b->dkv_trav, b->off_dev};
	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
		cudaFree(p[i]);
	cudaFreeHost(b->off_host);
	for (int i = 0; i < b->nev; i++)
		cudaEventDestroy(b->ev[i]);
	free(b->ev);
	memset(b, 0, sizeof(*b));
}

static sl_err grow(void **p, size_t bytes)
{
	cudaFree(*p);
	*p = NULL;
	KERN_CUDA(cudaMalloc(p, bytes > 0 ? bytes : 16));
	return SL_OK;
}

/* Makes the buffers hold a group of d ranks x ntok tokens, off bytes of
 * offload per layer, and EV_N events per rank. */
static sl_err bufs_reserve(emul_bufs_t *b, const prof_layer_t *L, int32_t d, int64_t ntok,
                           size_t off, cudaStream_t st)
{
	const int64_t H = L->md.heads, qd = L->qd, kd = L->kd;
	if (ntok > b->tok_cap) {
		const size_t n = (size_t)ntok;
		SL_CHECK(grow((void **)&b->oacc, n * (size_t)qd * 4));
		SL_CHECK(grow((void **)&b->dq, n * (size_t)qd * 4));
		SL_CHECK(grow((void **)&b->lse, n * (size_t)H * 4));
		SL_CHECK(grow((void **)&b->delta, n * (size_t)H * 4));
		SL_CHECK(grow((void **)&b->dkv_own, n * (size_t)kd * 2 * 4));
		SL_CHECK(grow((void **)&b->dkv_tmp, n * (size_t)kd * 2 * 4));
		SL_CHECK(grow((void **)&b->dkv_trav, n * (size_t)kd * 2 * 4));
		b->tok_cap = ntok;
	}
	if ((int64_t)d * ntok > b->all_cap) {
		const size_t n = (size_t)d * (size_t)ntok;
		SL_CHECK(grow(&b->qall, n * (size_t)qd * 2));
		SL_CHECK(grow(&b->kvall, n * (size_t)kd * 2 * 2));
		b->all_cap = (int64_t)d * ntok;
	}
	if (off > b->off_cap) {
		SL_CHECK(grow(&b->off_dev, off));
		SL_CHECK(kern_fill_random_bf16(b->off_dev, (int64_t)(off / 2), 131, 1.0f, st));
		cudaFreeHost(b->off_host);
		b->off_host = NULL;
		KERN_CUDA(cudaHostAlloc(&b->off_host, off, cudaHostAllocDefault));
		b->off_cap = off;
	}
	if (d * EV_N > b->nev) {
		cudaEvent_t *ev = realloc(b->ev, (size_t)(d * EV_N) * sizeof(*ev));
		if (ev == NULL)
			return sl_seterr(SL_ENOMEM, "emulate: events for %d ranks", (int)d);
		b->ev = ev;
		for (; b->nev < d * EV_N; b->nev++)
			KERN_CUDA(cudaEventCreate(&b->ev[b->nev]));
	}
	return SL_OK;
}

/* One group execution's layout (the same on every rank of the group). */
typedef struct emul_group {
	int32_t d;
	int32_t nseg;
	kern_seg_t *segs;
	kern_seg_t *segs_d;
	kern_tile_t *qt, *kt;
	int32_t nqt, nkt;
	int64_t ntok;
	size_t off_bytes; /* offload copied per layer */
} emul_group_t;

static void group_free(emul_group_t *g)
{
	free(g->segs);
	cudaFree(g->segs_d);
	cudaFree(g->qt);
	cudaFree(g->kt);
	memset(g, 0, sizeof(*g));
}

/* The packed zigzag layout of plan group gi (backend.h, "layout"). */
static sl_err group_layout(const sl_plan_t *plan, int64_t gi, const sl_emul_opts_t *o,
                           emul_group_t *eg)
{
	const sl_group_t *g = &plan->groups[gi];
	const sl_item_t *it = sl_group_items(plan, g);
	const int32_t d = g->nranks, D = o->model.head_dim;
	double off = 0;
	sl_err rc = SL_OK;
	memset(eg, 0, sizeof(*eg));
	eg->d = d;
	eg->segs = calloc((size_t)(g->nitems > 0 ? g->nitems : 1), sizeof(*eg->segs));
	if (eg->segs == NULL)
		return sl_seterr(SL_ENOMEM, "emulate: %d sequences", (int)g->nitems);
	for (int32_t k = 0; k < g->nitems; k++) {
		if (it[k].seq < 0 || it[k].seq >= plan->nseqs) {
			rc = sl_seterr(SL_EINVAL, "emulate: group %lld names an unknown sequence",
			               (long long)gi);
			goto fail;
		}
		const int64_t s = plan->seqs[it[k].seq].length;
		sl_shard_t z; /* padded length and chunk do not depend on the position */
		sl_zigzag_shard(s, d, 0, &z);
		const int64_t len = z.padded / d;
		if (len > INT32_MAX) {
			rc = sl_seterr(SL_ERANGE, "emulate: sequence of %lld tokens", (long long)s);
			goto fail;
		}
		eg->segs[eg->nseg++] = (kern_seg_t){eg->ntok, (int32_t)len, (int32_t)z.chunk_tokens, s};
		eg->ntok += len;
		off += it[k].offload * o->act_bytes_per_token * (double)len;
	}
	/* the layer's share of the offload (every layer offloads its own) */
	eg->off_bytes = (size_t)(off / o->model.layers) / 16 * 16;
	if (eg->nseg == 0)
		return SL_OK;
	SL_CHECK_GOTO(kern_segs_check(eg->segs, eg->nseg, d, eg->ntok), rc, fail);
	KERN_CUDA_GOTO(cudaMalloc((void **)&eg->segs_d, (size_t)eg->nseg * sizeof(kern_seg_t)), rc,
	               fail);
	KERN_CUDA_GOTO(cudaMemcpy(eg->segs_d, eg->segs, (size_t)eg->nseg * sizeof(kern_seg_t),
	                          cudaMemcpyHostToDevice),
	               rc, fail);
	SL_CHECK_GOTO(kern_tiles_upload(eg->segs, eg->nseg, kern_fwd_block_m(D, -1), 'q', &eg->qt,
	                                &eg->nqt),
	              rc, fail);
	SL_CHECK_GOTO(kern_tiles_upload(eg->segs, eg->nseg, kern_bwd_block_n(D, -1), 'k', &eg->kt,
	                                &eg->nkt),
	              rc, fail);
	return SL_OK;
fail:
	group_free(eg);
	return rc;
}

typedef struct emul {
	prof_gpu_t pg;
	prof_layer_t L;
	prof_head_t hd;
	emul_bufs_t b;
	const sl_emul_opts_t *o;
} emul_t;

static void *kv_of(const emul_t *e, const emul_group_t *eg, int32_t pos)
{
	return (uint16_t *)e->b.kvall + (size_t)pos * 2 * (size_t)eg->ntok * (size_t)e->L.kd;
}

static void *q_of(const emul_t *e, const emul_group_t *eg, int32_t pos)
{
	return (uint16_t *)e->b.qall + (size_t)pos * (size_t)eg->ntok * (size_t)e->L.qd;
}

/* The ring forward of ring position me (ring.c's hop order and modes). */
static sl_err attn_forward(emul_t *e, const emul_group_t *eg, int32_t me)
{
	const int32_t d = eg->d;
	const int64_t kvn = eg->ntok * e->L.kd;
	for (int32_t h = 0; h < d; h++) {
		const int32_t ko = (me - h + d) % d;
		const uint16_t *kv = kv_of(e, eg, ko);
		kern_fwd_args_t a = {
			.q = q_of(e, eg, me), .k = kv, .v = kv + kvn, .o = e->L.o, .oacc = e->b.oacc,
			.lse = e->b.lse, .segs = eg->segs_d, .tiles = eg->qt, .ntiles = eg->nqt,
			.heads = e->L.md.heads, .kv_heads = e->L.md.kv_heads,
			.head_dim = e->L.md.head_dim, .d = d, .q_owner = me, .k_owner = ko,
			.causal = 1,
			.mode = d == 1   ? KERN_FWD_OUT
			        : h == 0 ? KERN_FWD_INIT
			                 : (h == d - 1 ? KERN_FWD_FINAL : KERN_FWD_MERGE),
			.scale = 1.0f / sqrtf((float)e->L.md.head_dim), .ntok = eg->ntok};
		SL_CHECK(kern_attn_fwd(&a, -1, e->pg.st));
	}
	return SL_OK;
}

/* The ring backward of ring position me: the own shard's dK/dV first, each
 * later hop's into a temporary added to the travelling buffer. */
static sl_err attn_backward(emul_t *e, const emul_group_t *eg, int32_t me)
{
	const int32_t d = eg->d;
	const int64_t kvn = eg->ntok * e->L.kd;
	KERN_CUDA(cudaMemsetAsync(e->b.dq, 0, (size_t)(eg->ntok * e->L.qd) * 4, e->pg.st));
	SL_CHECK(kern_attn_delta(e->L.o, e->L.dout, e->b.delta, eg->ntok * e->L.md.heads,
	                         e->L.md.head_dim, e->pg.st));
	for (int32_t h = 0; h < d; h++) {
		const int32_t ko = (me - h + d) % d;
		const uint16_t *kv = kv_of(e, eg, ko);
		float *dkv = h == 0 ? e->b.dkv_own : e->b.dkv_tmp;
		kern_bwd_args_t a = {
			.q = q_of(e, eg, me), .k = kv, .v = kv + kvn, .dout = e->L.dout,
			.lse = e->b.lse, .delta = e->b.delta, .dq = e->b.dq, .dk = dkv,
			.dv = dkv + kvn, .segs = eg->segs_d, .tiles = eg->kt, .ntiles = eg->nkt,
			.heads = e->L.md.heads, .kv_heads = e->L.md.kv_heads,
			.head_dim = e->L.md.head_dim, .d = d, .q_owner = me, .k_owner = ko,
			.causal = 1, .accumulate = 0, .scale = 1.0f / sqrtf((float)e->L.md.head_dim),
			.ntok = eg->ntok};
		SL_CHECK(kern_attn_bwd(&a, -1, e->pg.st));
		if (h >= 1)
			SL_CHECK(kern_add_f32(e->b.dkv_trav, e->b.dkv_tmp, kvn * 2, e->pg.st));
	}
	return SL_OK;
}

static double ev_ms(cudaEvent_t a, cudaEvent_t b)
{
	float ms = 0;
	if (cudaEventElapsedTime(&ms, a, b) != cudaSuccess)
		return NAN;
	return (double)ms;
}

/* One timed run of every rank of the group; t[pos * SL_EMUL_NPARTS + part]
 * in ms per layer (linear, attention, offload) or once (head). */
static sl_err group_run(emul_t *e, const emul_group_t *eg, double *t)
{
	const int32_t d = eg->d;
	const int64_t n = eg->ntok;
	cudaStream_t st = e->pg.st;
	cudaEvent_t *ev = e->b.ev;
	/* every rank's forward up to the attention: its Q and its K/V shard */
	for (int32_t i = 0; i < d; i++) {
		void *kv = kv_of(e, eg, i);
		KERN_CUDA(cudaEventRecord(ev[i * EV_N + EV_A0], st));
		SL_CHECK(prof_layer_fwd_in(&e->pg, &e->L, n, q_of(e, eg, i), kv,
		                           (uint16_t *)kv + n * e->L.kd));
		KERN_CUDA(cudaEventRecord(ev[i * EV_N + EV_A1], st));
	}
	for (int32_t i = 0; i < d; i++) {
		cudaEvent_t *E = ev + i * EV_N;
		KERN_CUDA(cudaEventRecord(E[EV_B0], st));
		SL_CHECK(attn_forward(e, eg, i));
		KERN_CUDA(cudaEventRecord(E[EV_ATTF], st));
		SL_CHECK(prof_layer_fwd_out(&e->pg, &e->L, n));
		KERN_CUDA(cudaEventRecord(E[EV_FOUT], st));
		if (eg->off_bytes > 0) {
			/* the model charges both directions, not overlapped */
			KERN_CUDA(cudaMemcpyAsync(e->b.off_host, e->b.off_dev, eg->off_bytes,
			                          cudaMemcpyDeviceToHost, st));
			KERN_CUDA(cudaMemcpyAsync(e->b.off_dev, e->b.off_host, eg->off_bytes,
			                          cudaMemcpyHostToDevice, st));
		}
		KERN_CUDA(cudaEventRecord(E[EV_OFF], st));
		SL_CHECK(prof_layer_bwd_out(&e->pg, &e->L, n));
		KERN_CUDA(cudaEventRecord(E[EV_BOUT], st));
		SL_CHECK(attn_backward(e, eg, i));
		KERN_CUDA(cudaEventRecord(E[EV_ATTB], st));
		SL_CHECK(prof_layer_bwd_in(&e->pg, &e->L, n, e->b.dq, e->b.dkv_own,
		                           e->b.dkv_own + n * e->L.kd));
		KERN_CUDA(cudaEventRecord(E[EV_BIN], st));
		SL_CHECK(prof_head_run(&e->pg, &e->hd, &e->L, n));
		KERN_CUDA(cudaEventRecord(E[EV_HEAD], st));
	}
	KERN_CUDA(cudaEventSynchronize(ev[(d - 1) * EV_N + EV_HEAD]));
	for (int32_t i = 0; i < d; i++) {
		const cudaEvent_t *E = ev + i * EV_N;
		double *ti = t + (size_t)i * SL_EMUL_NPARTS;
		ti[SL_EMUL_LINEAR] = ev_ms(E[EV_A0], E[EV_A1]) + ev_ms(E[EV_ATTF], E[EV_FOUT]) +
		                     ev_ms(E[EV_OFF], E[EV_BOUT]) + ev_ms(E[EV_ATTB], E[EV_BIN]);
		ti[SL_EMUL_ATTN] = ev_ms(E[EV_B0], E[EV_ATTF]) + ev_ms(E[EV_BOUT], E[EV_ATTB]);
		ti[SL_EMUL_OFFLOAD] = ev_ms(E[EV_FOUT], E[EV_OFF]);
		ti[SL_EMUL_HEAD] = ev_ms(E[EV_BIN], E[EV_HEAD]);
	}
	return SL_OK;
}

/* Runs group gi warm + iters times and writes its ranks' medians. */
static sl_err emulate_group(emul_t *e, const sl_plan_t *plan, int64_t gi, int warm, double *rank_ms,
                            double *parts)
{
	const sl_group_t *g = &plan->groups[gi];
	const int iters = e->o->iters;
	emul_group_t eg;
	double *t = NULL, *v = NULL;
	sl_err rc = SL_OK;
	SL_CHECK(group_layout(plan, gi, e->o, &eg));
	if (eg.nseg == 0) {
		for (int32_t i = 0; i < g->nranks; i++) {
			rank_ms[g->rank_off + i] = 0;
			if (parts != NULL)
				memset(parts + (size_t)(g->rank_off + i) * SL_EMUL_NPARTS, 0,
				       SL_EMUL_NPARTS * sizeof(double));
		}
		goto out;
	}
	SL_CHECK_GOTO(prof_layer_reserve(&e->pg, &e->L, &e->o->model, eg.ntok), rc, out);
	SL_CHECK_GOTO(bufs_reserve(&e->b, &e->L, eg.d, eg.ntok, eg.off_bytes, e->pg.st), rc, out);
	t = malloc((size_t)iters * (size_t)eg.d * SL_EMUL_NPARTS * sizeof(*t));
	v = malloc((size_t)iters * sizeof(*v));
	if (t == NULL || v == NULL) {
		rc = sl_seterr(SL_ENOMEM, "emulate: timings of %d ranks", (int)eg.d);
		goto out;
	}
	/* plan this size's GEMMs outside the timed runs (host work that
	 * would otherwise show up as idle GPU time inside the first rank's) */
	e->pg.dry = 1;
	rc = prof_layer_fwd_in(&e->pg, &e->L, eg.ntok, NULL, NULL, NULL);
	if (rc == SL_OK)
		rc = prof_layer_fwd_out(&e->pg, &e->L, eg.ntok);
	if (rc == SL_OK)
		rc = prof_layer_bwd_out(&e->pg, &e->L, eg.ntok);
	if (rc == SL_OK)
		rc = prof_layer_bwd_in(&e->pg, &e->L, eg.ntok, NULL, NULL, NULL);
	if (rc == SL_OK)
		rc = prof_head_run(&e->pg, &e->hd, &e->L, eg.ntok);
	e->pg.dry = 0;
	if (rc != SL_OK)
		goto out;
	for (int r = 0; r < warm; r++)
		SL_CHECK_GOTO(group_run(e, &eg, t), rc, out);
	for (int r = 0; r < iters; r++)
		SL_CHECK_GOTO(group_run(e, &eg, t + (size_t)r * eg.d * SL_EMUL_NPARTS), rc, out);
	const double layers = e->o->model.layers;
	for (int32_t i = 0; i < eg.d; i++) {
		double med[SL_EMUL_NPARTS];
		for (int p = 0; p < SL_EMUL_NPARTS; p++) {
			for (int r = 0; r < iters; r++)
				v[r] = t[((size_t)r * eg.d + i) * SL_EMUL_NPARTS + p];
			med[p] = sl_median(v, (size_t)iters) * (p == SL_EMUL_HEAD ? 1.0 : layers);
		}
		rank_ms[g->rank_off + i] = med[0] + med[1] + med[2] + med[3];
		if (parts != NULL)
			memcpy(parts + (size_t)(g->rank_off + i) * SL_EMUL_NPARTS, med, sizeof(med));
	}
	if (e->o->verbose)
		fprintf(stderr, "emulate: slot %d group %lld: %d ranks, %lld tokens per rank, rank 0 "
		        "%.2f ms\n", (int)g->slot, (long long)gi, (int)eg.d, (long long)eg.ntok,
		        rank_ms[g->rank_off]);
out:
	if (rc != SL_OK)
		sl_seterr(rc, "emulate: slot %d group %lld (%d ranks, %lld tokens per rank): %s",
		          (int)g->slot, (long long)gi, (int)eg.d, (long long)eg.ntok, sl_errmsg());
	free(t);
	free(v);
	group_free(&eg);
	return rc;
}

sl_err sl_calib_emulate(const sl_plan_t *plan, sl_emul_opts_t *o, double *rank_ms,
                        double *parts)
{
	emul_t e;
	sl_err rc = SL_OK;
	memset(&e, 0, sizeof(e));
	e.o = o;
	SL_CHECK(sl_model_shape_check(&o->model));
	if (!kern_head_dim_supported(o->model.head_dim))
		return sl_seterr(SL_EINVAL, "emulate: head_dim %d: our attention kernels support 64 "
		                 "and 128", (int)o->model.head_dim);
	if (o->iters < 1 || o->warmup < 0)
		return sl_seterr(SL_EINVAL, "emulate: iters %d must be >= 1, warmup %d >= 0",
		                 o->iters, o->warmup);
	SL_CHECK(prof_gpu_init(&e.pg, o->device));
	{
		struct cudaDeviceProp dp;
		if (cudaGetDeviceProperties(&dp, o->device) == cudaSuccess)
			snprintf(o->card, sizeof(o->card), "%.*s", (int)sizeof(o->card) - 1, dp.name);
	}
	SL_CHECK_GOTO(prof_head_alloc(&e.pg, &e.hd, &o->model), rc, out);
	for (int64_t gi = 0; gi < plan->ngroups; gi++)
		/* every group warms up, not only the first: on an H100 a tiny
		 * group's first run took 3-30x its steady time (new GEMM shapes,
		 * allocations), and those runs landed on the critical rank
		 * (docs/fidelity.md) */
		SL_CHECK_GOTO(emulate_group(&e, plan, gi, o->warmup, rank_ms, parts),
		              rc, out);
out:
	bufs_free(&e.b);
	prof_head_free(&e.hd);
	prof_layer_free(&e.L);
	prof_gpu_fini(&e.pg);
	return rc;
}
