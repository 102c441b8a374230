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

#include <nccl.h>

#include "prof_gpu.h"
#include "sluice/clock.h"

#define MIB 1048576.0

/* Timing state shared by the measurements. */
typedef struct meas_ctx meas_ctx_t;
typedef sl_err (*meas_fn)(meas_ctx_t *, void *);

struct meas_ctx {
	prof_gpu_t pg; /* stream, events, cuBLASLt */
	int reps;
	double settle_ms;
	meas_fn heat; /* the settling load (NULL: each point itself) */
	void *heat_arg;
	int warm; /* the first settling (heat) has run */
	int verbose;
	double *t; /* [reps] */
};

/* The load before a point: fn(mc, arg) itself, or the context's heat load,
 * back to back, untimed, until settle_ms of wall time have passed (the first
 * heat SL_CALIB_WARM_FACTOR times as long). An H100 under its 700 W power
 * cap comes down from 1,980 MHz to about 1,400-1,650 over seconds of
 * sustained GEMMs or attention and stays there, as a training step (and
 * `run-plan --emulate`) runs; a point timed after an idle gap, or after only
 * its own small load, runs faster than it would inside a step
 * (docs/fidelity.md). Syncs every 8 runs so the queue stays short. */
static sl_err settle(meas_ctx_t *mc, meas_fn fn, void *arg)
{
	if (!(mc->settle_ms > 0))
		return SL_OK;
	double ms = mc->settle_ms;
	if (mc->heat != NULL) {
		fn = mc->heat;
		arg = mc->heat_arg;
		if (!mc->warm)
			ms *= SL_CALIB_WARM_FACTOR;
		mc->warm = 1;
	}
	const double end = sl_now_ms() + ms;
	for (int n = 1;; n++) {
		SL_CHECK(fn(mc, arg));
		if (n % 8 == 0 || sl_now_ms() >= end) {
			KERN_CUDA(cudaStreamSynchronize(mc->pg.st));
			if (sl_now_ms() >= end)
				return SL_OK;
		}
	}
}

/* Times fn(mc, arg) on the context's stream: median ms over reps after the
 * settling runs and 2 warm-ups, CUDA events. */
static sl_err time_region(meas_ctx_t *mc, meas_fn fn, void *arg, double *ms)
{
	SL_CHECK(settle(mc, fn, arg));
	for (int r = -2; r < mc->reps; r++) {
		KERN_CUDA(cudaEventRecord(mc->pg.e0, mc->pg.st));
		SL_CHECK(fn(mc, arg));
		KERN_CUDA(cudaEventRecord(mc->pg.e1, mc->pg.st));
		KERN_CUDA(cudaEventSynchronize(mc->pg.e1));
		float t;
		KERN_CUDA(cudaEventElapsedTime(&t, mc->pg.e0, mc->pg.e1));
		if (r >= 0)
			mc->t[r] = t;
	}
	*ms = sl_median(mc->t, (size_t)mc->reps);
	return SL_OK;
}

typedef struct layer_arg {
	prof_layer_t *L;
	prof_head_t *hd;
	int64_t n;
} layer_arg_t;

/* One layer's work apart from the attention, forward and backward, as the
 * emulated worker runs it (profiler/layer.c). */
static sl_err run_layer_linear(meas_ctx_t *mc, void *arg)
{
	layer_arg_t *la = arg;
	SL_CHECK(prof_layer_fwd_in(&mc->pg, la->L, la->n, NULL, NULL, NULL));
	SL_CHECK(prof_layer_fwd_out(&mc->pg, la->L, la->n));
	SL_CHECK(prof_layer_bwd_out(&mc->pg, la->L, la->n));
	return prof_layer_bwd_in(&mc->pg, la->L, la->n, NULL, NULL, NULL);
}

static sl_err run_head(meas_ctx_t *mc, void *arg)
{
	layer_arg_t *la = arg;
	return prof_head_run(&mc->pg, la->hd, la->L, la->n);
}

static int64_t max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

/* One layer's linear parts (the GEMMs and the element-wise parts around
 * them) and the LM head at each token count. */
static sl_err measure_gemms(meas_ctx_t *mc, const sl_model_shape_t *md, const sl_calib_run_t *run,
                            prof_layer_t *L, sl_calib_meas_t *m)
{
	prof_head_t hd;
	sl_err rc = SL_OK;
	memset(&hd, 0, sizeof(hd));
	SL_CHECK_GOTO(prof_head_alloc(&mc->pg, &hd, md), rc, out);
	m->gemm = calloc(run->ngemm_tokens + 1, sizeof(*m->gemm));
	m->head = calloc(run->ngemm_tokens + 1, sizeof(*m->head));
	if (m->gemm == NULL || m->head == NULL) {
		rc = sl_seterr(SL_ENOMEM, "GEMM points: out of memory");
		goto out;
	}
	for (size_t i = 0; i < run->ngemm_tokens; i++) {
		layer_arg_t la = {L, &hd, run->gemm_tokens[i]};
		double ms = 0;
		SL_CHECK_GOTO(time_region(mc, run_layer_linear, &la, &ms), rc, out);
		m->gemm[m->ngemm++] = (sl_calib_point_t){la.n, ms};
		if (mc->verbose)
			fprintf(stderr, "profile: layer linear %6lld tokens %9.3f ms (GEMMs %.0f TFLOP/s)\n",
			        (long long)la.n, ms, sl_model_layer_gemm_flop(md) * la.n / ms / 1e9);
		/* the head runs in chunks of 8192 tokens: its points stop there */
		if (hd.vocab > 0 && la.n <= 8192) {
			SL_CHECK_GOTO(time_region(mc, run_head, &la, &ms), rc, out);
			m->head[m->nhead++] = (sl_calib_point_t){la.n, ms};
			if (mc->verbose)
				fprintf(stderr, "profile: LM head    %6lld tokens %9.3f ms\n",
				        (long long)la.n, ms);
		}
	}
out:
	prof_head_free(&hd);
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

/* The hop's two passes as time_region functions. */
typedef struct hop_arg {
	const kern_fwd_args_t *fa;
	const kern_bwd_args_t *ba;
} hop_arg_t;

static sl_err run_hop_fwd(meas_ctx_t *mc, void *arg)
{
	return kern_attn_fwd(((hop_arg_t *)arg)->fa, -1, mc->pg.st);
}

static sl_err run_hop_bwd(meas_ctx_t *mc, void *arg)
{
	return kern_attn_bwd(((hop_arg_t *)arg)->ba, -1, mc->pg.st);
}

/* Forward then backward of one hop, each timed separately (median). */
static sl_err time_hop(meas_ctx_t *mc, hop_bufs_t *b, const sl_model_shape_t *md, int32_t d,
                       int32_t qo, int32_t ko, int32_t len, sl_calib_hop_t *out)
{
	const int32_t H = md->heads, KH = md->kv_heads, D = md->head_dim;
	const int64_t kvn = (int64_t)len * KH * D;
	const kern_seg_t seg = {0, len, d == 1 ? len : len / 2, (int64_t)len * d};
	int32_t nqt = 0, nkt = 0;
	KERN_CUDA(cudaMemcpy(b->seg, &seg, sizeof(seg), cudaMemcpyHostToDevice));
	SL_CHECK(upload_tiles(&seg, kern_fwd_block_m(D, -1), 'q', &b->qt, &nqt));
	SL_CHECK(upload_tiles(&seg, kern_bwd_block_n(D, -1), 'k', &b->kt, &nkt));
	kern_fwd_args_t fa = {.q = b->q, .k = b->kv, .v = (uint16_t *)b->kv + kvn, .o = b->o,
	                      .oacc = b->oacc, .lse = b->lse_fin, .segs = b->seg, .tiles = b->qt,
	                      .ntiles = nqt, .heads = H, .kv_heads = KH, .head_dim = D, .d = d,
	                      .q_owner = qo, .k_owner = qo, .causal = 1, .mode = KERN_FWD_OUT,
	                      .scale = 1.0f / sqrtf((float)D), .ntok = len};
	/* the backward's final LSE and delta: the diagonal hop (every query
	 * sees at least itself, so no row is -inf) */
	SL_CHECK(kern_attn_fwd(&fa, -1, mc->pg.st));
	SL_CHECK(kern_attn_delta(b->o, b->dout, b->delta, (int64_t)len * H, D, mc->pg.st));
	/* the forward as the ring runs it: the own shard first (INIT), others
	 * merged (MERGE); a single rank writes O directly */
	fa.lse = b->lse_acc;
	if (d > 1) {
		fa.mode = KERN_FWD_INIT;
		SL_CHECK(kern_attn_fwd(&fa, -1, mc->pg.st));
		fa.mode = ko == qo ? KERN_FWD_INIT : KERN_FWD_MERGE;
	}
	fa.k_owner = ko;
	kern_bwd_args_t ba = {.q = b->q, .k = b->kv, .v = (uint16_t *)b->kv + kvn, .dout = b->dout,
	                      .lse = b->lse_fin, .delta = b->delta, .dq = b->dq, .dk = b->dkv,
	                      .dv = b->dkv + kvn, .segs = b->seg, .tiles = b->kt, .ntiles = nkt,
	                      .heads = H, .kv_heads = KH, .head_dim = D, .d = d, .q_owner = qo,
	                      .k_owner = ko, .causal = 1, .accumulate = 0, .scale = fa.scale,
	                      .ntok = len};
	KERN_CUDA(cudaMemsetAsync(b->dq, 0, (size_t)len * H * D * 4, mc->pg.st));
	hop_arg_t ha = {&fa, &ba};
	double fwd = 0, bwd = 0;
	SL_CHECK(time_region(mc, run_hop_fwd, &ha, &fwd));
	SL_CHECK(time_region(mc, run_hop_bwd, &ha, &bwd));
	*out = (sl_calib_hop_t){d, qo, ko, len, fwd, bwd};
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
	SL_CHECK_GOTO(kern_fill_random_bf16(b.q, (int64_t)qn, 21, 1.0f, mc->pg.st), rc, out);
	SL_CHECK_GOTO(kern_fill_random_bf16(b.kv, (int64_t)kvn * 2, 22, 1.0f, mc->pg.st), rc, out);
	SL_CHECK_GOTO(kern_fill_random_bf16(b.dout, (int64_t)qn, 23, 1.0f, mc->pg.st), rc, out);
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
	m->group_fixed_ms = sl_median(mc->t, (size_t)mc->reps);

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
	SL_CHECK_GOTO(kern_fill_random_bf16(dv, (int64_t)(bytes / 2), 41, 1.0f, mc->pg.st), rc, out);
	for (int dir = 0; dir < 2; dir++) {
		for (int r = -2; r < mc->reps; r++) {
			KERN_CUDA_GOTO(cudaEventRecord(mc->pg.e0, mc->pg.st), rc, out);
			KERN_CUDA_GOTO(cudaMemcpyAsync(dir == 0 ? h : dv, dir == 0 ? dv : h, bytes,
			                               dir == 0 ? cudaMemcpyDeviceToHost
			                                        : cudaMemcpyHostToDevice,
			                               mc->pg.st),
			               rc, out);
			KERN_CUDA_GOTO(cudaEventRecord(mc->pg.e1, mc->pg.st), rc, out);
			KERN_CUDA_GOTO(cudaEventSynchronize(mc->pg.e1), rc, out);
			float t;
			KERN_CUDA_GOTO(cudaEventElapsedTime(&t, mc->pg.e0, mc->pg.e1), rc, out);
			if (r >= 0)
				mc->t[r] = t;
		}
		const double g = bytes / MIB / sl_median(mc->t, (size_t)mc->reps);
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
	if (run->settle_ms > 0)
		snprintf(pv->settle, sizeof(pv->settle), "%s %g ms", run->settle_self ? "self" : "layer",
		         run->settle_ms);
	else
		snprintf(pv->settle, sizeof(pv->settle), "none");
}

sl_err sl_calib_measure(const sl_model_shape_t *model, const sl_calib_run_t *run,
                        sl_calib_meas_t *out)
{
	meas_ctx_t mc;
	sl_calib_meas_t m;
	prof_layer_t L; /* one layer at the largest token count: the GEMM points and the heat */
	sl_err rc = SL_OK;
	size_t fr = 0, tot = 0;
	int64_t nmax = 0;
	memset(&mc, 0, sizeof(mc));
	memset(&m, 0, sizeof(m));
	memset(&L, 0, sizeof(L));
	SL_CHECK(sl_model_shape_check(model));
	if (run->reps < 1 || run->reps > 64 || run->ngemm_tokens < 2 || run->nhop_lens < 1 ||
	    run->nhop_ds < 1)
		return sl_seterr(SL_EINVAL, "profile: need 1..64 reps, 2+ token counts, a hop length "
		                            "and a ring size");
	if (!(run->settle_ms >= 0 && run->settle_ms <= 60000))
		return sl_seterr(SL_EINVAL, "profile: settle time %g ms is outside [0, 60000]",
		                 run->settle_ms);
	for (size_t i = 0; i < run->nhop_lens; i++)
		if (run->hop_lens[i] < 2 || run->hop_lens[i] % 2)
			return sl_seterr(SL_EINVAL, "profile: hop length %d must be even and >= 2",
			                 run->hop_lens[i]);
	m.model = *model;
	measure_p2p(run, &m); /* first: it forks, and this process has not touched CUDA yet */
	mc.reps = run->reps;
	mc.settle_ms = run->settle_ms;
	mc.verbose = run->verbose;
	mc.t = calloc((size_t)run->reps, sizeof(*mc.t));
	if (mc.t == NULL)
		return sl_seterr(SL_ENOMEM, "profile: out of memory");
	KERN_CUDA_GOTO(cudaSetDevice(run->device), rc, out);
	KERN_CUDA_GOTO(cudaMemGetInfo(&fr, &tot), rc, out);
	m.gpu_free_bytes = (double)fr;
	m.gpu_total_bytes = (double)tot;
	provenance(run, run->device, &m);
	SL_CHECK_GOTO(prof_gpu_init(&mc.pg, run->device), rc, out);
	if (run->verbose)
		fprintf(stderr, "profile: %s, %s on %s\n", model->name, m.p2p_note, m.prov.card);
	for (size_t i = 0; i < run->ngemm_tokens; i++)
		nmax = max64(nmax, run->gemm_tokens[i]);
	SL_CHECK_GOTO(prof_layer_reserve(&mc.pg, &L, model, nmax), rc, out);
	layer_arg_t heat = {&L, NULL, nmax};
	if (!run->settle_self) {
		mc.heat = run_layer_linear;
		mc.heat_arg = &heat;
	}
	SL_CHECK_GOTO(measure_gemms(&mc, model, run, &L, &m), rc, out);
	SL_CHECK_GOTO(measure_hops(&mc, model, run, &m), rc, out);
	SL_CHECK_GOTO(measure_group(&mc, model, run->device, &m), rc, out);
	SL_CHECK_GOTO(measure_offload(&mc, &m), rc, out);
	*out = m;
	memset(&m, 0, sizeof(m));
out:
	prof_layer_free(&L);
	prof_gpu_fini(&mc.pg);
	free(mc.t);
	sl_calib_meas_free(&m);
	return rc;
}
