/* sluice GPU benchmark (bench/gpu/run.sh drives it; not a test).
 *
 *   gpu_bench kernel D TOKENS CAUSAL [HEADS [KV_HEADS [REPS]]]
 *     every forward and backward kernel variant on one sequence of TOKENS
 *     tokens (random bf16 inputs), CUDA-event medians; prints
 *     "KERNEL fwd|bwd D tokens causal heads kv variant ms TFLOP/s" lines.
 *     FLOPs: forward 4 * tokens^2 * heads * D (half when causal), backward
 *     2.5 times that (FlashAttention's convention). GPU_BENCH_ONLY, a
 *     comma-separated list of variant names, runs just those (for ncu runs).
 *   gpu_bench packed D CAUSAL HEADS KV_HEADS REPS LEN...
 *     the same on one packed buffer of several sequences (a d = 1 group of a
 *     plan: one launch over all of them); prints "PACKED fwd|bwd D tokens
 *     segs causal heads kv variant ms TFLOP/s", FLOPs summed per sequence.
 *   gpu_bench ring NRANKS D TOKENS HEADS KV_HEADS REPS GROUP_SIZE...
 *     forks NRANKS processes (one per GPU, one NCCL communicator); for each
 *     group size g, ranks 0..g-1 run the same causal sequence as a zigzag ring
 *     (forward + backward, REPS times) and each prints
 *     "RING g rank pass wall_ms compute_ms comm_ms bytes p2p_ms" with medians;
 *     p2p_ms is a bare send/recv of one hop's K/V bytes (link bandwidth). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "gpu_check.h"
#include "kern.h"
#include "mp.h"

/* Whether variant `name` is to run: GPU_BENCH_ONLY unset, or naming it. */
static int variant_selected(const char *name)
{
	const char *only = getenv("GPU_BENCH_ONLY");
	const size_t n = strlen(name);
	if (only == NULL || *only == '\0')
		return 1;
	for (const char *p = only; p != NULL; p = strchr(p, ',')) {
		if (*p == ',')
			p++;
		if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return 1;
	}
	return 0;
}

/* Every selected variant over nseg sequences of lens[] tokens packed one
 * after another (one launch covers them all); packed: print PACKED lines. */
static int bench_kernel(int D, const int64_t *lens, int nseg, int causal, int H, int KH, int reps,
                        int packed)
{
	const float scale = 1.0f / sqrtf((float)D);
	kern_seg_t *segs = calloc((size_t)nseg, sizeof(*segs));
	int64_t tokens = 0;
	double pairs = 0;
	for (int i = 0; i < nseg; i++) {
		segs[i] = (kern_seg_t){tokens, (int32_t)lens[i], (int32_t)lens[i], lens[i]};
		tokens += lens[i];
		pairs += (double)lens[i] * (double)lens[i];
	}
	const int64_t qn = tokens * H * D, kvn = tokens * KH * D;
	void *q, *kv, *dout, *o;
	float *lse, *delta, *dq, *dkv;
	kern_seg_t *dseg;
	cudaStream_t st;
	cudaEvent_t e0, e1;
	double *t = malloc((size_t)reps * sizeof(double));
	const double flop = 4.0 * pairs * H * D * (causal ? 0.5 : 1.0);
	CK(cudaStreamCreate(&st));
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	CK(cudaMalloc(&q, (size_t)qn * 2));
	CK(cudaMalloc(&dout, (size_t)qn * 2));
	CK(cudaMalloc(&o, (size_t)qn * 2));
	CK(cudaMalloc(&kv, (size_t)kvn * 4));
	CK(cudaMalloc((void **)&lse, (size_t)(tokens * H) * 4));
	CK(cudaMalloc((void **)&delta, (size_t)(tokens * H) * 4));
	CK(cudaMalloc((void **)&dq, (size_t)qn * 4));
	CK(cudaMalloc((void **)&dkv, (size_t)kvn * 8));
	CK(cudaMalloc((void **)&dseg, (size_t)nseg * sizeof(*segs)));
	CK(cudaMemcpy(dseg, segs, (size_t)nseg * sizeof(*segs), cudaMemcpyHostToDevice));
	SK(kern_fill_random_bf16(q, qn, 1, 1.0f, st));
	SK(kern_fill_random_bf16(kv, 2 * kvn, 2, 1.0f, st));
	SK(kern_fill_random_bf16(dout, qn, 3, 1.0f, st));
	for (int pass = 0; pass < 2; pass++) {
		const int nv = pass == 0 ? kern_fwd_variants(D) : kern_bwd_variants(D);
		for (int v = 0; v < nv; v++) {
			kern_tile_t *tl = NULL, *dt;
			if (pass == 0 ? !kern_fwd_native(D, v) : !kern_bwd_native(D, v))
				continue; /* an sm_90a variant on another card */
			if (!variant_selected(pass == 0 ? kern_fwd_name(D, v) : kern_bwd_name(D, v)))
				continue;
			int32_t nt = 0;
			const int32_t blk = pass == 0 ? kern_fwd_block_m(D, v) : kern_bwd_block_n(D, v);
			SK(kern_tiles_build(segs, nseg, blk, pass == 0 ? 'q' : 'k', &tl, &nt));
			CK(cudaMalloc((void **)&dt, (size_t)nt * sizeof(*tl)));
			CK(cudaMemcpy(dt, tl, (size_t)nt * sizeof(*tl), cudaMemcpyHostToDevice));
			kern_fwd_args_t fa = {.q = q, .k = kv, .v = (uint16_t *)kv + kvn, .o = o,
			                      .lse = lse, .segs = dseg, .tiles = dt, .ntiles = nt,
			                      .heads = H, .kv_heads = KH, .head_dim = D, .d = 1,
			                      .causal = causal, .mode = KERN_FWD_OUT, .scale = scale,
			                      .ntok = tokens};
			if (pass == 1) { /* O and LSE from the default forward */
				kern_tile_t *ft = NULL, *dft;
				int32_t nft = 0;
				SK(kern_tiles_build(segs, nseg, kern_fwd_block_m(D, -1), 'q', &ft,
				                    &nft));
				CK(cudaMalloc((void **)&dft, (size_t)nft * sizeof(*ft)));
				CK(cudaMemcpy(dft, ft, (size_t)nft * sizeof(*ft),
				              cudaMemcpyHostToDevice));
				fa.tiles = dft;
				fa.ntiles = nft;
				SK(kern_attn_fwd(&fa, -1, st));
				SK(kern_attn_delta(o, dout, delta, tokens * H, D, st));
				CK(cudaStreamSynchronize(st));
				CK(cudaFree(dft));
				free(ft);
			}
			kern_bwd_args_t ba = {.q = q, .k = kv, .v = (uint16_t *)kv + kvn,
			                      .dout = dout, .lse = lse, .delta = delta, .dq = dq,
			                      .dk = dkv, .dv = dkv + kvn, .segs = dseg, .tiles = dt,
			                      .ntiles = nt, .heads = H, .kv_heads = KH,
			                      .head_dim = D, .d = 1, .causal = causal,
			                      .accumulate = 0, .scale = scale, .ntok = tokens};
			for (int r = -2; r < reps; r++) {
				if (pass == 1)
					CK(cudaMemsetAsync(dq, 0, (size_t)qn * 4, st));
				CK(cudaEventRecord(e0, st));
				if (pass == 0)
					SK(kern_attn_fwd(&fa, v, st));
				else
					SK(kern_attn_bwd(&ba, v, st));
				CK(cudaEventRecord(e1, st));
				CK(cudaEventSynchronize(e1));
				float ms;
				CK(cudaEventElapsedTime(&ms, e0, e1));
				if (r >= 0)
					t[r] = ms;
			}
			const double ms = sl_median_upper(t, (size_t)reps);
			const double f = pass == 0 ? flop : 2.5 * flop;
			printf("%s %s D=%d tokens=%lld", packed ? "PACKED" : "KERNEL",
			       pass == 0 ? "fwd" : "bwd", D, (long long)tokens);
			if (packed)
				printf(" segs=%d", nseg);
			printf(" causal=%d heads=%d kv=%d %-20s ms=%.3f TFLOPs=%.1f\n", causal, H, KH,
			       pass == 0 ? kern_fwd_name(D, v) : kern_bwd_name(D, v), ms,
			       f / (ms * 1e-3) / 1e12);
			fflush(stdout);
			CK(cudaFree(dt));
			free(tl);
		}
	}
	CK(cudaFree(q));
	CK(cudaFree(dout));
	CK(cudaFree(o));
	CK(cudaFree(kv));
	CK(cudaFree(lse));
	CK(cudaFree(delta));
	CK(cudaFree(dq));
	CK(cudaFree(dkv));
	CK(cudaFree(dseg));
	CK(cudaStreamDestroy(st));
	free(t);
	free(segs);
	return 0;
}

typedef struct ring_arg {
	int D, H, KH, reps;
	int64_t tokens;
	int ngs;
	int gs[8];
} ring_arg_t;

static int ring_rank(int rank, int nranks, const worker_boot_t *boot, void *arg)
{
	const ring_arg_t *ra = arg;
	kern_ctx_t c;
	unsigned char id[512];
	int ndev = 0;
	memset(id, 0, sizeof(id));
	SK(kern_device_count(&ndev));
	if (rank == 0)
		SK(kern_nccl_id_make(id));
	SK(boot->bcast(boot->ctx, 0, id, kern_nccl_id_size()));
	SK(kern_ctx_init(&c, rank, nranks, rank % ndev, id));
	for (int gi = 0; gi < ra->ngs; gi++) {
		const int d = ra->gs[gi];
		const int reps = ra->reps > 64 ? 64 : ra->reps;
		SK(boot->barrier(boot->ctx));
		if (rank >= d) { /* idle: join the device barriers only */
			for (int r = -1; r < reps; r++) {
				SK(kern_ctx_barrier(&c));
				SK(kern_ctx_barrier(&c));
			}
			CK(cudaStreamSynchronize(c.compute));
			continue;
		}
		const int64_t s = ra->tokens;
		const int64_t p = d == 1 ? s : (s + 2 * d - 1) / (2 * d) * (2 * d);
		kern_seg_t seg = {0, (int32_t)(d == 1 ? s : p / d), (int32_t)(d == 1 ? s : p / (2 * d)),
		                  s};
		kern_group_t g;
		SK(kern_group_alloc(&c, &g, d, rank, (rank - 1 + d) % d, (rank + 1) % d, &seg, 1,
		                    ra->H, ra->KH, ra->D, 1, 1.0f / sqrtf((float)ra->D)));
		SK(kern_fill_random_bf16(g.q, kern_group_qsize(&g), 11 + (uint64_t)rank, 1.0f,
		                         c.compute));
		SK(kern_fill_random_bf16(g.kv[0], 2 * kern_group_kvsize(&g), 21 + (uint64_t)rank,
		                         1.0f, c.compute));
		SK(kern_fill_random_bf16(g.dout, kern_group_qsize(&g), 31 + (uint64_t)rank, 1.0f,
		                         c.compute));
		CK(cudaStreamSynchronize(c.compute));
		double fw[64], fc[64], fm[64], bw[64], bc[64], bm[64];
		kern_pass_stats_t fs, bs;
		for (int r = -1; r < reps; r++) {
			/* every rank starts each pass at the same moment (device barrier):
			 * per-rank wall times then include no wait for late peers */
			SK(kern_ctx_barrier(&c));
			SK(kern_ring_forward(&c, &g, &fs));
			SK(kern_ctx_barrier(&c));
			SK(kern_ring_backward(&c, &g, &bs));
			if (r < 0)
				continue;
			fw[r] = fs.wall_ms, fc[r] = fs.compute_ms, fm[r] = fs.comm_ms;
			bw[r] = bs.wall_ms, bc[r] = bs.compute_ms, bm[r] = bs.comm_ms;
		}
		double p2p = 0;
		const size_t hop = (size_t)kern_group_kvsize(&g) * 2 * 2;
		if (d > 1)
			SK(kern_ring_p2p_ms(&c, &g, hop, 5, &p2p));
		printf("RING g=%d rank=%d pass=fwd tokens=%lld wall_ms=%.3f compute_ms=%.3f "
		       "comm_ms=%.3f hop_bytes=%zu hops=%d bytes=%lld p2p_ms=%.3f\n",
		       d, rank, (long long)s, sl_median_upper(fw, (size_t)reps),
		       sl_median_upper(fc, (size_t)reps), sl_median_upper(fm, (size_t)reps), hop,
		       fs.hops, (long long)fs.bytes_sent, p2p);
		printf("RING g=%d rank=%d pass=bwd tokens=%lld wall_ms=%.3f compute_ms=%.3f "
		       "comm_ms=%.3f hop_bytes=%zu hops=%d bytes=%lld\n",
		       d, rank, (long long)s, sl_median_upper(bw, (size_t)reps),
		       sl_median_upper(bc, (size_t)reps), sl_median_upper(bm, (size_t)reps),
		       hop * 3, bs.hops, (long long)bs.bytes_sent);
		fflush(stdout);
		kern_group_free(&g);
	}
	SK(boot->barrier(boot->ctx));
	kern_ctx_fini(&c);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && strcmp(argv[1], "kernel") == 0) {
		const int D = atoi(argv[2]);
		const int H = argc > 5 ? atoi(argv[5]) : 2048 / D;
		const int KH = argc > 6 ? atoi(argv[6]) : H;
		const int reps = argc > 7 ? atoi(argv[7]) : 10;
		int n = 0;
		if (kern_device_count(&n) != SL_OK || n == 0) {
			printf("no CUDA device\n");
			return 77;
		}
		const int64_t tokens = atoll(argv[3]);
		if (tokens < 1 || tokens > INT32_MAX) {
			fprintf(stderr, "gpu_bench: TOKENS %s is not in 1..2^31-1\n", argv[3]);
			return 2;
		}
		return bench_kernel(D, &tokens, 1, atoi(argv[4]), H, KH, reps < 1 ? 1 : reps, 0);
	}
	if (argc >= 8 && strcmp(argv[1], "packed") == 0) {
		const int nseg = argc - 7;
		int64_t *lens = calloc((size_t)nseg, sizeof(*lens)), total = 0;
		for (int i = 0; i < nseg; i++) {
			lens[i] = atoll(argv[7 + i]);
			total += lens[i];
			if (lens[i] < 1 || total > INT32_MAX) {
				fprintf(stderr, "gpu_bench: LEN %s (sequence %d) is not in 1..2^31-1 "
				                "tokens in all\n",
				        argv[7 + i], i);
				free(lens);
				return 2;
			}
		}
		int n = 0;
		if (kern_device_count(&n) != SL_OK || n == 0) {
			printf("no CUDA device\n");
			free(lens);
			return 77;
		}
		const int reps = atoi(argv[6]);
		const int rc = bench_kernel(atoi(argv[2]), lens, nseg, atoi(argv[3]), atoi(argv[4]),
		                            atoi(argv[5]), reps < 1 ? 1 : reps, 1);
		free(lens);
		return rc;
	}
	if (argc >= 9 && strcmp(argv[1], "ring") == 0) {
		ring_arg_t ra;
		const int n = atoi(argv[2]);
		memset(&ra, 0, sizeof(ra));
		ra.D = atoi(argv[3]);
		ra.tokens = atoll(argv[4]);
		ra.H = atoi(argv[5]);
		ra.KH = atoi(argv[6]);
		ra.reps = atoi(argv[7]) < 1 ? 1 : atoi(argv[7]);
		for (int i = 8; i < argc && ra.ngs < 8; i++)
			if (atoi(argv[i]) >= 1 && atoi(argv[i]) <= n)
				ra.gs[ra.ngs++] = atoi(argv[i]);
		if (mp_gpu_count() < n) {
			printf("fewer than %d GPUs\n", n);
			return 77;
		}
		return mp_run(n, ring_rank, &ra, 580);
	}
	fprintf(stderr, "usage: gpu_bench kernel D TOKENS CAUSAL [HEADS [KV_HEADS [REPS]]]\n"
	                "       gpu_bench packed D CAUSAL HEADS KV_HEADS REPS LEN...\n"
	                "       gpu_bench ring NRANKS D TOKENS HEADS KV_HEADS REPS G...\n");
	return 2;
}
