/* sluice GPU test: the worker's "cuda" backend (ring attention over NCCL)
 * in N processes, one per GPU, against the fp64 CPU reference on fresh
 * random inputs. Usage: gpu_ring NRANKS [HEAD_DIM]. Slots exercise one ring
 * over all ranks in a shuffled order, then disjoint groups running at once
 * on the same global communicator. Exits 77 when fewer than NRANKS GPUs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kern.h"
#include "kern_backend.h"
#include "kern_math.h"
#include "mp.h"
#include "ref.h"
#include "sluice/rng.h"

#define SKIP 77
#define TOL 1e-2

typedef struct group_def {
	int nranks;
	int ranks[8];
	int nseq;
	int64_t lens[4];
} group_def_t;

typedef struct slot_def {
	int ngroups;
	group_def_t g[4];
} slot_def_t;

typedef struct test_arg {
	int head_dim, heads, kv_heads;
	uint64_t seed;
	int nslots;
	slot_def_t slots[3];
} test_arg_t;

static double bfrand(uint64_t *st, double scale)
{
	const uint64_t z = sl_splitmix64(st);
	return (double)((int)((z >> 11) % 257) - 128) / scale;
}

static double *dalloc(int64_t n)
{
	double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
	if (p == NULL) {
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	return p;
}

/* One group execution on this rank: build the work order and inputs, run
 * forward + backward through the backend, compare with the reference. */
static int run_group(const worker_backend_ops_t *ops, void *state, const test_arg_t *ta,
                     int slot, const group_def_t *gd, int rank, uint64_t seed)
{
	const int H = ta->heads, KH = ta->kv_heads, D = ta->head_dim, d = gd->nranks;
	int me = -1, bad = 0;
	for (int i = 0; i < d; i++)
		if (gd->ranks[i] == rank)
			me = i;
	if (me < 0)
		return 0;
	worker_seq_shard_t sh[4];
	ref_attn_t prob[4];
	double *gq[4], *gk[4], *gv[4], *gdo[4], *ro[4], *rl[4], *rdq[4], *rdk[4], *rdv[4];
	int64_t *pos[4];
	int64_t ntok = 0;
	for (int k = 0; k < gd->nseq; k++) {
		const int64_t s = gd->lens[k];
		const int64_t p = d == 1 ? s : (s + 2 * d - 1) / (2 * d) * (2 * d);
		uint64_t st = seed + 1000003ull * (uint64_t)k; /* same on every rank */
		sh[k] = (worker_seq_shard_t){.seq = k, .id = 100 + k, .len = s, .padded = p,
		                             .chunk = d == 1 ? p : p / (2 * d), .local_off = ntok,
		                             .local_len = d == 1 ? p : p / d};
		ntok += sh[k].local_len;
		gq[k] = dalloc(s * H * D);
		gdo[k] = dalloc(s * H * D);
		gk[k] = dalloc(s * KH * D);
		gv[k] = dalloc(s * KH * D);
		for (int64_t i = 0; i < s * H * D; i++) {
			gq[k][i] = bfrand(&st, 32.0);
			gdo[k][i] = bfrand(&st, 128.0);
		}
		for (int64_t i = 0; i < s * KH * D; i++) {
			gk[k][i] = bfrand(&st, 128.0);
			gv[k][i] = bfrand(&st, 128.0);
		}
		ro[k] = dalloc(s * H * D);
		rdq[k] = dalloc(s * H * D);
		rl[k] = dalloc(s * H);
		rdk[k] = dalloc(s * KH * D);
		rdv[k] = dalloc(s * KH * D);
		pos[k] = malloc((size_t)s * sizeof(int64_t));
		for (int64_t i = 0; i < s; i++)
			pos[k][i] = i;
		prob[k] = (ref_attn_t){.H = H, .KH = KH, .D = D, .causal = 1,
		                       .scale = 1.0 / sqrt((double)D), .nq = s, .nk = s,
		                       .seqlen = s, .q = gq[k], .k = gk[k], .v = gv[k],
		                       .qpos = pos[k], .kpos = pos[k], .dout = gdo[k], .o = ro[k],
		                       .lse = rl[k], .dq = rdq[k], .dk = rdk[k], .dv = rdv[k]};
	}
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int threads = (int)(cpus > 0 ? cpus : 1) / 8;
	if (ref_attn_run(prob, gd->nseq, threads < 1 ? 1 : threads) != 0) {
		fprintf(stderr, "reference: out of memory\n");
		exit(2);
	}

	/* this rank's shard (padding tokens: arbitrary finite values) */
	const int64_t qn = ntok * H * D, kvn = ntok * KH * D;
	double *q = dalloc(qn), *k = dalloc(kvn), *v = dalloc(kvn), *dout = dalloc(qn);
	double *o = dalloc(qn), *lse = dalloc(ntok * H), *dq = dalloc(qn), *dk = dalloc(kvn),
	       *dv = dalloc(kvn);
	uint64_t pst = seed ^ (uint64_t)(rank + 1);
	for (int s = 0; s < gd->nseq; s++)
		for (int64_t j = 0; j < sh[s].local_len; j++) {
			const int64_t p = worker_shard_pos(&sh[s], d, me, j);
			const int64_t lt = sh[s].local_off + j;
			for (int e = 0; e < H * D; e++) {
				q[lt * H * D + e] = p < sh[s].len ? gq[s][p * H * D + e] : bfrand(&pst, 8);
				dout[lt * H * D + e] =
				    p < sh[s].len ? gdo[s][p * H * D + e] : bfrand(&pst, 8);
			}
			for (int e = 0; e < KH * D; e++) {
				k[lt * KH * D + e] = p < sh[s].len ? gk[s][p * KH * D + e] : bfrand(&pst, 1);
				v[lt * KH * D + e] = p < sh[s].len ? gv[s][p * KH * D + e] : bfrand(&pst, 1);
			}
		}
	worker_group_work_t w = {.slot = slot, .group = 0, .d = d, .ring_pos = me,
	                         .ring = gd->ranks, .prev_rank = gd->ranks[(me - 1 + d) % d],
	                         .next_rank = gd->ranks[(me + 1) % d], .nseqs = gd->nseq,
	                         .seqs = sh, .ntok = ntok, .heads = H, .kv_heads = KH,
	                         .head_dim = D, .scale = 1.0 / sqrt((double)D)};
	worker_inputs_t in = {.q = q, .k = k, .v = v, .dout = dout};
	worker_outputs_t out = {.out = o, .lse = lse, .dq = dq, .dk = dk, .dv = dv};
	worker_pass_stats_t fst, bst;
	/* two forward+backward rounds: the second must not depend on state the
	 * first left behind (e.g. travelling K/V buffers) */
	if (ops->begin(state, &w, &in) != SL_OK || ops->forward(state, &w, &fst) != SL_OK ||
	    ops->backward(state, &w, &bst) != SL_OK || ops->forward(state, &w, &fst) != SL_OK ||
	    ops->backward(state, &w, &bst) != SL_OK || ops->end(state, &w, &out) != SL_OK) {
		fprintf(stderr, "rank %d slot %d: %s\n", rank, slot, sl_errmsg());
		return 1;
	}

	/* compare this rank's rows */
	double num[5] = {0}, den[5] = {0};
	for (int s = 0; s < gd->nseq; s++)
		for (int64_t j = 0; j < sh[s].local_len; j++) {
			const int64_t p = worker_shard_pos(&sh[s], d, me, j);
			const int64_t lt = sh[s].local_off + j;
			const int pad = p >= sh[s].len;
			for (int h = 0; h < H; h++) {
				const double a = lse[lt * H + h];
				if (pad) {
					bad += a != -INFINITY;
					continue;
				}
				const double b = rl[s][p * H + h];
				if (!isfinite(a)) {
					bad++;
					continue;
				}
				num[1] += (a - b) * (a - b);
				den[1] += b * b;
			}
			for (int e = 0; e < H * D; e++) {
				const double a0 = o[lt * H * D + e], a2 = dq[lt * H * D + e];
				if (pad) {
					bad += a0 != 0.0 || a2 != 0.0;
					continue;
				}
				const double b0 = ro[s][p * H * D + e], b2 = rdq[s][p * H * D + e];
				bad += !isfinite(a0) || !isfinite(a2);
				num[0] += (a0 - b0) * (a0 - b0);
				den[0] += b0 * b0;
				num[2] += (a2 - b2) * (a2 - b2);
				den[2] += b2 * b2;
			}
			for (int e = 0; e < KH * D; e++) {
				const double a3 = dk[lt * KH * D + e], a4 = dv[lt * KH * D + e];
				if (pad) {
					bad += a3 != 0.0 || a4 != 0.0;
					continue;
				}
				const double b3 = rdk[s][p * KH * D + e], b4 = rdv[s][p * KH * D + e];
				bad += !isfinite(a3) || !isfinite(a4);
				num[3] += (a3 - b3) * (a3 - b3);
				den[3] += b3 * b3;
				num[4] += (a4 - b4) * (a4 - b4);
				den[4] += b4 * b4;
			}
		}
	double err[5];
	int ok = bad == 0;
	for (int i = 0; i < 5; i++) {
		err[i] = den[i] > 0 ? sqrt(num[i] / den[i]) : sqrt(num[i]);
		ok = ok && err[i] < TOL;
	}
	printf("%s rank %d slot %d ring %d/%d D=%d ntok %lld: O %.2e LSE %.2e dQ %.2e dK %.2e "
	       "dV %.2e bad %d | fwd %.2f ms (compute %.2f, comm %.2f), bwd %.2f ms, "
	       "sent %lld B\n",
	       ok ? "ok  " : "FAIL", rank, slot, me, d, D, (long long)ntok, err[0], err[1], err[2],
	       err[3], err[4], bad, fst.wall_ms, fst.compute_ms, fst.comm_ms, bst.wall_ms,
	       (long long)(fst.bytes_sent + bst.bytes_sent));
	fflush(stdout);
	for (int s = 0; s < gd->nseq; s++) {
		free(gq[s]), free(gk[s]), free(gv[s]), free(gdo[s]), free(ro[s]), free(rl[s]);
		free(rdq[s]), free(rdk[s]), free(rdv[s]), free(pos[s]);
	}
	free(q), free(k), free(v), free(dout), free(o), free(lse), free(dq), free(dk), free(dv);
	return ok ? 0 : 1;
}

static int rank_main(int rank, int nranks, const worker_boot_t *boot, void *arg)
{
	const test_arg_t *ta = arg;
	const worker_backend_ops_t *ops = &kern_cuda_backend_ops;
	worker_backend_cfg_t cfg = {.rank = rank, .nranks = nranks, .local_rank = rank,
	                            .local_size = nranks, .run_dir = "/tmp", .boot = *boot,
	                            .heads = ta->heads, .kv_heads = ta->kv_heads,
	                            .head_dim = ta->head_dim};
	void *state = NULL;
	int failed = 0;
	if (ops->init(&cfg, &state) != SL_OK) {
		fprintf(stderr, "rank %d: init: %s\n", rank, sl_errmsg());
		return 1;
	}
	for (int s = 0; s < ta->nslots && !failed; s++)
		for (int g = 0; g < ta->slots[s].ngroups && !failed; g++)
			failed = run_group(ops, state, ta, s, &ta->slots[s].g[g], rank,
			                   ta->seed + 7919ull * (uint64_t)(s * 8 + g));
	ops->fini(&state);
	return failed;
}

int main(int argc, char **argv)
{
	const int n = argc > 1 ? atoi(argv[1]) : 2;
	test_arg_t ta;
	int have;
	if (n < 1 || n > 8) {
		fprintf(stderr, "usage: gpu_ring NRANKS(1..8) [HEAD_DIM]\n");
		return 2;
	}
	have = mp_gpu_count();
	if (have < n) {
		printf("%d GPU(s), %d needed: skipped\n", have, n);
		return SKIP;
	}
	memset(&ta, 0, sizeof(ta));
	ta.head_dim = argc > 2 ? atoi(argv[2]) : 128;
	ta.heads = 4;
	ta.kv_heads = 2;
	ta.seed = 0x5eed0000ull ^ (uint64_t)time(NULL);
	printf("seed %llu\n", (unsigned long long)ta.seed);
	/* slot 0: every rank on one ring, in a shuffled order */
	ta.slots[0].ngroups = 1;
	ta.slots[0].g[0] = (group_def_t){.nranks = n, .nseq = 3, .lens = {1500, 333, 2501}};
	for (int i = 0; i < n; i++)
		ta.slots[0].g[0].ranks[i] = (i * 3 + 1) % n;
	if (n % 3 == 0) /* (3i + 1) mod n is a permutation only when 3 does not divide n */
		for (int i = 0; i < n; i++)
			ta.slots[0].g[0].ranks[i] = n - 1 - i;
	/* slot 1: disjoint groups at once (two rings, or single ranks) */
	ta.slots[1].ngroups = n >= 4 ? 2 : n;
	if (n >= 4) {
		ta.slots[1].g[0] = (group_def_t){.nranks = 2, .ranks = {2, 0}, .nseq = 2,
		                                 .lens = {2048, 77}};
		ta.slots[1].g[1] = (group_def_t){.nranks = n - 2, .ranks = {1, 3, 4, 5, 6, 7},
		                                 .nseq = 1, .lens = {3333}};
	} else {
		for (int i = 0; i < n; i++)
			ta.slots[1].g[i] = (group_def_t){.nranks = 1, .ranks = {n - 1 - i}, .nseq = 2,
			                                 .lens = {1024 + 100 * i, 5}};
	}
	ta.nslots = 2;
	int rc = mp_run(n, rank_main, &ta, 200);
	printf("%s\n", rc == 0 ? "passed" : "FAILED");
	return rc == 0 ? 0 : 1;
}
