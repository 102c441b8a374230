/* sluice kernels: backward attention of one ring hop on sm_90a (Hopper), in
 * the FlashAttention-3 design (Shah et al., 2024, section 3 and appendix
 * B.1; FlashAttention-2's backward, Dao 2023, section 3.2, on wgmma/TMA).
 *
 * A block owns BN = 128 keys of one KV head (attn_bwd.cu's parallelisation:
 * the grid is key tiles x KV heads) and walks every (query head of the GQA
 * group, query tile of BM rows) that can see its keys. Three warpgroups:
 *  - warpgroup 0, the producer: thread 0 issues TMA copies of K and V once
 *    and of the Q and dO tiles of each iteration into a ring of STAGES
 *    shared-memory stages ("full" mbarrier per stage, transaction bytes);
 *    warp 1 loads the tile's LSE and delta rows (fp32, strided by heads, so
 *    not a TMA box) into the same stage and arrives on "full" too (with
 *    PRE it also does each row's masking arithmetic: the LSE in the log2
 *    domain, INFINITY where P is 0, and the row's global position); with
 *    TMADQ warp 2 adds the consumers' dQ to global memory (below); the
 *    warpgroup gives its registers to the consumers (setmaxnreg);
 *  - warpgroups 1 and 2, the consumers: consumer c owns keys 64c .. 64c+63
 *    of the tile, and per iteration computes, with wgmma (M = its 64 keys):
 *      S^T  = K_c Q^T          (A = K, B = Q: both K-major in shared memory)
 *      dP^T = V_c dO^T         (A = V, B = dO: both K-major)
 *      P^T  = exp(S^T * scale - LSE), dS^T = scale * P^T (dP^T - delta)
 *      dV_c += P^T dO          (A = P^T from registers, B = dO MN-major)
 *      dK_c += dS^T Q          (A = dS^T from registers, B = Q MN-major)
 *    dK_c and dV_c (fp32, 64 x D each) stay in registers for the whole
 *    loop. dS^T also goes to shared memory (bf16, 128B-swizzled, double
 *    buffered); after a named barrier of the two consumers, each computes
 *    its 64 x 64 part of dQ = dS K (A = dS^T read transposed, B = K read
 *    MN-major) and adds it to global memory: with fp32 atomics, or (TMADQ,
 *    the default) by storing it to a staging buffer in shared memory that
 *    the producer's warp 2 adds with two tensor reduce-adds (the TMA unit,
 *    FlashAttention-3's dQaccum route on the dq tensor itself), the two
 *    sides handing the buffer over through two named barriers.
 * The swapped S^T (keys as rows) is what lets P^T and dS^T feed the dV and
 * dK wgmmas straight from the accumulator registers (FlashAttention-3's
 * SdP_swapAB): a wgmma accumulator's 16-column block, rounded to bf16, is
 * the A fragment of m64k16 (attn_sm90.cuh).
 *
 * Options (template OPT, KERN_BWD90_* in kern.h; each a table variant, so
 * they are measured side by side): OV issues dP^T right behind S^T (it runs
 * under the exponentials), dV's product before dS^T's arithmetic, and
 * waits for dV and dK only after dQ's product is issued (wgmma.wait_group 1),
 * so the tensor cores are not idle at the barrier; V4 adds dQ with 16-byte
 * atomics (a lane pair trades halves so each lane holds 4 columns of one
 * row), halving the atomic instructions; BULK stages each warp's 16 dQ rows
 * in shared memory and adds each row with one cp.reduce.async.bulk (the
 * TMA unit's reduce-add, FlashAttention-3's dQaccum route) instead of 16
 * atomics per thread; STAGES 3 (S3) deepens the Q/dO ring; TMADQ is the
 * staged route above; PRE loads the producer's prepared LSE pairs into
 * registers before S^T's product and the delta pairs before dP^T's is
 * waited for, and runs the exponentials as one branch-free loop per case
 * (masked or not). Nsight Compute on the OV kernel (16K causal, D = 128):
 * 22% of the consumers' stall samples were the dQ atomics (lg throttle, and
 * the next iteration's writes waiting for their operands), 8% the LSE and
 * delta reads right before their use; OV|TMADQ|PRE runs 1.5x faster.
 *
 * Tile shapes: D = 128: BM = 64 (dQ: consumer c takes D columns 64c..);
 * D = 64: BM = 128 (dQ: consumer c takes query rows 64c..). Either way each
 * consumer's dQ part is one whole 64 x 64 swizzle atom column, so every
 * descriptor starts on a slab boundary.
 *
 * Masking, padding and LSE handling are attn_bwd.cu's: by global (zigzag)
 * position; a key tile needs the query tiles from the first query that sees
 * its first key; queries >= qvalid (padding) and rows whose LSE is -inf get
 * P = 0; keys >= kvalid get P = 0; dQ rows >= qvalid are never written and
 * every row < len of dK/dV is. TMA boxes are not clipped to a segment: rows
 * past it are other segments' tokens (finite inputs, multiplied by exact
 * zeros: P and dS are 0 there) or past the tensor (zero filled). */
#include <math.h>
#include <string.h>

#include <type_traits>

#include "attn_sm90.cuh"
#include "sluice/log.h"

namespace kern {
namespace sm90 {

/* The tensor maps of a hop (__grid_constant__ kernel parameter); dq (fp32,
 * 32-column boxes) only with KERN_BWD90_TMADQ. */
struct bwd_maps {
	CUtensorMap q, dout, k, v, dq;
};

constexpr int BWD_BN = 128;      /* keys per block: 2 consumers x 64 */
constexpr int BWD_THREADS = 384; /* producer + 2 consumer warpgroups */
/* KERN_BWD90_BULK's dQ staging: a warp's 16 rows of 64 fp32, each row
 * padded by 32 bytes so that the float2 stores of a half warp (rows g,
 * columns 2 t4) fall on 16 different bank pairs (row stride = 8 banks mod
 * 32); the bulk copy needs a row's 256 bytes contiguous, so no swizzle. */
constexpr uint32_t BWD_DQROW = 256 + 32;
constexpr uint32_t BWD_DQW = 16 * BWD_DQROW;
/* KERN_BWD90_TMADQ's dQ staging: per consumer its 64 x 64 fp32 part as two
 * 64-row x 32-column boxes of the dq tensor map, 128B-swizzled. */
constexpr uint32_t BWD_DQBOX = 64 * 128;
constexpr uint32_t BWD_DQPART = 2 * BWD_DQBOX;
/* Named barriers (0 is __syncthreads'): the consumers' dS^T exchange, and
 * with TMADQ per consumer "staging full" / "staging empty" between it and
 * the producer's dQ warp (128 + 32 threads). */
constexpr int BWD_BAR_DS = 1;
constexpr int BWD_BAR_DQFULL = 2;  /* + consumer */
constexpr int BWD_BAR_DQEMPTY = 4; /* + consumer */
constexpr int BWD_DQ_THREADS = 128 + 32;

/* Shared memory, every tile on a 1024-byte boundary (the 128B swizzle's
 * phase is the address's own bits; descriptors' base offset 0):
 *   K, V       [D/64 slabs][BN rows][64 cols] bf16, loaded once
 *   Q, dO      [STAGES][D/64 slabs][BM rows][64 cols]
 *   dS^T       [2 buffers][BM/64 slabs][BN key rows][64 query cols]
 *   dQ boxes   (KERN_BWD90_TMADQ only) [2 consumers][2 boxes][64 rows][32]
 *              fp32, each consumer's 64 x 64 dQ part
 *   LSE, delta [STAGES][BM] fp32 (with KERN_BWD90_PRE the LSE in the log2
 *              domain, INFINITY for rows whose P is 0)
 *   positions  (KERN_BWD90_PRE only) [STAGES][BM] int32, each row's global
 *              position (INT32_MAX past the shard)
 *   dQ         (KERN_BWD90_BULK only) [8 warps][16 rows][BWD_DQROW bytes]
 *              fp32, each warp's rows of its consumer's 64 x 64 dQ part
 *   barriers   kv, full[STAGES], empty[STAGES] */
template <int D, int BM, int STAGES, int OPT> struct bwd_smem {
	static constexpr bool BULK = (OPT & KERN_BWD90_BULK) != 0;
	static constexpr bool TMADQ = (OPT & KERN_BWD90_TMADQ) != 0;
	static constexpr bool PRE = (OPT & KERN_BWD90_PRE) != 0;
	static constexpr uint32_t KV = BWD_BN * D * 2; /* one K (or V) tile */
	static constexpr uint32_t QB = BM * D * 2;     /* one Q (or dO) stage */
	static constexpr uint32_t DSB = BWD_BN * BM * 2; /* one dS^T buffer */
	static constexpr uint32_t K0 = 0;
	static constexpr uint32_t V0 = KV;
	static constexpr uint32_t Q0 = 2 * KV;
	static constexpr uint32_t DO0 = Q0 + STAGES * QB;
	static constexpr uint32_t DS0 = DO0 + STAGES * QB;
	static constexpr uint32_t DQT0 = DS0 + 2 * DSB;
	static constexpr uint32_t L0 = DQT0 + (TMADQ ? 2 * BWD_DQPART : 0);
	static constexpr uint32_t DL0 = L0 + STAGES * BM * 4;
	static constexpr uint32_t QP0 = DL0 + STAGES * BM * 4;
	static constexpr uint32_t DQ0 = QP0 + (PRE ? STAGES * BM * 4 : 0);
	static constexpr uint32_t BAR = DQ0 + (BULK ? 8 * BWD_DQW : 0);
	static constexpr uint32_t BYTES = BAR + 8 * (1 + 2 * STAGES);
	static constexpr size_t ALLOC = BYTES + 1024; /* re-aligned to 1024 */
	static_assert(KV % 1024 == 0 && QB % 1024 == 0 && DSB % 1024 == 0 && DQT0 % 1024 == 0,
	              "tile alignment");
	static_assert(!(BULK && TMADQ), "one dQ route");
	static_assert(BAR % 8 == 0, "mbarrier alignment");
	static_assert(ALLOC <= 227 * 1024, "shared memory of one block");
};

template <int D, int BM, int STAGES, int OPT>
__global__ void __launch_bounds__(BWD_THREADS, 1)
    bwd_sm90_kernel(const kern_bwd_args_t a, const __grid_constant__ bwd_maps maps)
{
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
	__trap(); /* compiled for another target: kern_sm90_bwd_fits never picks it */
#else
	constexpr bool OV = (OPT & KERN_BWD90_OV) != 0;
	constexpr bool V4 = (OPT & KERN_BWD90_V4) != 0;
	constexpr bool BULK = (OPT & KERN_BWD90_BULK) != 0;
	constexpr bool TMADQ = (OPT & KERN_BWD90_TMADQ) != 0;
	constexpr bool PRE = (OPT & KERN_BWD90_PRE) != 0;
	using L = bwd_smem<D, BM, STAGES, OPT>;
	constexpr int BN = BWD_BN;
	constexpr uint32_t KSLAB = BN * 128; /* bytes of one 64-column slab of K/V */
	constexpr uint32_t QSLAB = BM * 128; /* ... of a Q/dO stage */
	constexpr uint32_t DSLAB = BN * 128; /* ... of a dS^T buffer (64 queries) */
	constexpr int NSL = D / 64;
	/* dQ split between the consumers: MS query slabs x NS column slabs */
	constexpr int MS = BM / 64, NS = D / 64;
	static_assert(D == 64 || D == 128, "head dim");
	static_assert(BM == 64 || BM == 128, "query tile");
	static_assert(MS * NS == 2, "each consumer's dQ part is one 64 x 64 block");

	extern __shared__ uint8_t smem_raw[];
	const uint32_t raw = smem_u32(smem_raw);
	const uint32_t base = (raw + 1023u) & ~1023u;
	const uint32_t sK = base + L::K0, sV = base + L::V0, sQ = base + L::Q0;
	const uint32_t sdO = base + L::DO0, sdS = base + L::DS0;
	float *const sL = reinterpret_cast<float *>(smem_raw + (base - raw) + L::L0);
	float *const sDl = reinterpret_cast<float *>(smem_raw + (base - raw) + L::DL0);
	int *const sQp = reinterpret_cast<int *>(smem_raw + (base - raw) + L::QP0);
	const uint32_t bkv = base + L::BAR;
	const uint32_t bfull = bkv + 8, bempty = bfull + 8 * STAGES;

	/* shuffled: warp-uniform to the compiler (which serialises wgmmas it
	 * finds on possibly divergent paths) */
	const int wg = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x >> 7), 0);
	const kern_tile_t tile = a.tiles[blockIdx.x];
	const kern_seg_t seg = a.segs[tile.seg];
	const int hk = blockIdx.y;
	const int G = a.heads / a.kv_heads;
	const int k0 = tile.start;
	const int len = seg.len, chunk = seg.chunk;
	/* the query tiles [i0, i1) that can see a key of the tile */
	int qvalid, kvalid, kv_tile, i0, i1;
	bwd_query_tiles(a, seg, k0, BN, BM, &qvalid, &kvalid, &kv_tile, &i0, &i1);
	const int nq = i1 - i0;
	const int niter = __shfl_sync(0xffffffffu, nq * G, 0);

	if (threadIdx.x == 0) {
		mbar_init(bkv, 1);
		for (int st = 0; st < STAGES; ++st) {
			mbar_init(bfull + 8 * st, 1 + 32);  /* TMA thread + the LSE warp */
			mbar_init(bempty + 8 * st, 2 * 128); /* every consumer thread */
		}
		mbar_fence_init();
	}
	__syncthreads();

	if (wg == 0) {
		/* producer */
		regs_dealloc<40>();
		const int32_t row0 = static_cast<int32_t>(seg.off);
		/* iteration it's stage, query head and first query row, once the
		 * consumers have freed the stage (both producer roles fill it) */
		auto stage_free = [&](int it, int *st, int *h, int *qt0) {
			const int n = it / STAGES;
			*st = it % STAGES;
			*h = hk * G + it / nq;
			*qt0 = (i0 + it % nq) * BM;
			if (n > 0)
				mbar_wait(bempty + 8 * *st, (n - 1) & 1);
		};
		if (threadIdx.x == 0 && niter > 0) {
			tma_prefetch_desc(&maps.q);
			tma_prefetch_desc(&maps.dout);
			tma_prefetch_desc(&maps.k);
			tma_prefetch_desc(&maps.v);
			mbar_arrive_expect_tx(bkv, 2 * L::KV);
#pragma unroll
			for (int sl = 0; sl < NSL; ++sl) {
				tma_load_3d(sK + sl * KSLAB, &maps.k, bkv, sl * 64, hk, row0 + k0);
				tma_load_3d(sV + sl * KSLAB, &maps.v, bkv, sl * 64, hk, row0 + k0);
			}
			for (int it = 0; it < niter; ++it) {
				int st, h, qt0;
				stage_free(it, &st, &h, &qt0);
				const uint32_t off = static_cast<uint32_t>(st) * L::QB;
				mbar_arrive_expect_tx(bfull + 8 * st, 2 * L::QB);
#pragma unroll
				for (int sl = 0; sl < NSL; ++sl) {
					tma_load_3d(sQ + off + sl * QSLAB, &maps.q, bfull + 8 * st,
					            sl * 64, h, row0 + qt0);
					tma_load_3d(sdO + off + sl * QSLAB, &maps.dout, bfull + 8 * st,
					            sl * 64, h, row0 + qt0);
				}
			}
		} else if (threadIdx.x >= 32 && threadIdx.x < 64 && niter > 0) {
			/* LSE and delta of the tile's rows; rows >= qvalid read 0 (their
			 * P is forced to 0 by the consumers) */
			const int lane = threadIdx.x - 32;
			for (int it = 0; it < niter; ++it) {
				int st, h, qt0;
				stage_free(it, &st, &h, &qt0);
#pragma unroll
				for (int r = lane; r < BM; r += 32) {
					const int qi = qt0 + r;
					float l = PRE ? -INFINITY : 0.f, dl = 0.f;
					if (qi < qvalid) {
						const int64_t idx = (seg.off + qi) * a.heads + h;
						l = a.lse[idx];
						dl = a.delta[idx];
					}
					if constexpr (PRE) {
						int qp;
						bwd_query_row(a, chunk, len, qvalid, qi, l, true, &l, &qp);
						sQp[st * BM + r] = qp;
					}
					sL[st * BM + r] = l;
					sDl[st * BM + r] = dl;
				}
				/* release: the stores above are visible to whoever
				 * observes the phase complete */
				mbar_arrive(bfull + 8 * st);
			}
		} else if (TMADQ && threadIdx.x >= 64 && threadIdx.x < 96 && niter > 0) {
			/* dQ: each consumer's staged 64 x 64 part, added to global
			 * memory by two tensor reduce-adds (rows past qvalid add
			 * exact zeros: their dS is 0; rows past the tensor are
			 * skipped); the staging is free again once the TMA unit has
			 * read it */
			const int lane = threadIdx.x & 31;
#pragma unroll
			for (int c = 0; c < 2; ++c)
				named_bar_arrive(BWD_BAR_DQEMPTY + c, BWD_DQ_THREADS);
			for (int it = 0; it < niter; ++it) {
				const int h = hk * G + it / nq;
				const int qt0 = (i0 + it % nq) * BM;
#pragma unroll
				for (int c = 0; c < 2; ++c) {
					named_bar_sync(BWD_BAR_DQFULL + c, BWD_DQ_THREADS);
					if (lane == 0) {
						const int m = MS == 2 ? c : 0, nn = NS == 2 ? c : 0;
						const uint32_t src = base + L::DQT0 + c * BWD_DQPART;
#pragma unroll
						for (int bx = 0; bx < 2; ++bx)
							tma_reduce_add_3d(&maps.dq, src + bx * BWD_DQBOX,
							                  64 * nn + 32 * bx, h,
							                  row0 + qt0 + 64 * m);
						bulk_commit();
						bulk_wait_read();
					}
					__syncwarp();
					if (it + 1 < niter)
						named_bar_arrive(BWD_BAR_DQEMPTY + c, BWD_DQ_THREADS);
				}
			}
			if (lane == 0)
				bulk_wait_all(); /* the sums land before the launch is done */
		}
		return;
	}

	/* consumers */
	regs_alloc<232>();
	const int cw = wg - 1;
	const int wtid = threadIdx.x & 127, warp = wtid >> 5, lane = wtid & 31;
	const int g = lane >> 2, t4 = lane & 3;
	const float sl2 = a.scale * 1.4426950408889634f;
	const int mw = MS == 2 ? cw : 0; /* this consumer's dQ query slab */
	const int nw = NS == 2 ? cw : 0; /* ... and column slab */

	/* Accumulator layout (wgmma m64nN, fp32; attn_sm90.cuh): element i of a
	 * thread is row 16 * warp + g + 8 * ((i >> 1) & 1), column
	 * 8 * (i >> 2) + 2 * t4 + (i & 1). For S^T/dP^T rows are this consumer's
	 * keys and columns the tile's queries; for dK/dV rows are keys and
	 * columns head dims; for dQ rows are queries (+ 64 mw) and columns head
	 * dims (+ 64 nw). This thread's keys: rows g and g + 8 (rr = 0, 1). */
	bool kok[2];
	int kp[2];
#pragma unroll
	for (int rr = 0; rr < 2; ++rr) {
		const int kr = k0 + 64 * cw + 16 * warp + g + 8 * rr;
		kok[rr] = kr < kvalid;
		kp[rr] = kok[rr] ? kern_pos(chunk, a.d, a.k_owner, kr) : INT32_MAX;
	}
	const int kmax = kv_tile > 0 ? kern_pos(chunk, a.d, a.k_owner, k0 + kv_tile - 1) : 0;

	float dk[D / 2], dv[D / 2];
#pragma unroll
	for (int i = 0; i < D / 2; ++i)
		dk[i] = dv[i] = 0.f;

	if (niter > 0)
		mbar_wait(bkv, 0);
	for (int it = 0; it < niter; ++it) {
		const int st = it % STAGES, n = it / STAGES, b = it & 1;
		const int h = hk * G + it / nq;
		const int qt0 = (i0 + it % nq) * BM;
		/* this stage's tiles; opaque: the descriptors below are rebuilt
		 * from it every iteration rather than held in 16 registers */
		const uint32_t sb = static_cast<uint32_t>(opaque(base));
		const uint32_t sQs = sb + L::Q0 + st * L::QB, sdOs = sb + L::DO0 + st * L::QB;
		const float *lq = sL + st * BM, *dlq = sDl + st * BM;

		mbar_wait(bfull + 8 * st, n & 1);
		/* PRE: the tile's LSE pairs this thread's columns need (8 j + 2 t4,
		 * + 1), read now so their latency hides under S^T's product */
		float2 lv[PRE ? BM / 8 : 1];
		if constexpr (PRE) {
#pragma unroll
			for (int j = 0; j < BM / 8; ++j)
				lv[j] = *reinterpret_cast<const float2 *>(lq + 8 * j + 2 * t4);
		}

		/* acc = A B^T, A = 64 rows of K or V at sa, B = the stage's Q or dO
		 * at sq (both K-major), as one commit group */
		auto issue_kmajor = [&](float (&acc)[BM / 2], uint32_t sa, uint32_t sq) {
			wg_fence();
			wgmma_ss_kmajor<BM, D>(acc, desc_sw128(sa, 16, 1024), desc_sw128(sq, 16, 1024),
			                       KSLAB, QSLAB);
			wg_commit();
		};

		/* Descriptors (desc_sw128(addr, lbo, sbo)), as the forward builds
		 * its: K-major operands (contraction along the 128-byte row) step 32
		 * bytes per k16 inside a slab and a whole slab every 4 steps, lbo
		 * unused; MN-major operands (contraction down the rows) step 16 rows
		 * = 2048 bytes per k16, lbo = the distance between 64-column slabs
		 * along M/N. sbo = 1024: 8 rows of 128 bytes. */

		/* S^T = K_c Q^T: A = K rows 64c.. (K-major), B = Q [BM][D] (K-major);
		 * with OV dP^T = V_c dO^T (A = V rows 64c.., B = dO, both K-major)
		 * is issued right behind it and runs under the exponentials */
		float sc[BM / 2], dp[BM / 2];
		const uint32_t sVc = sb + L::V0 + cw * 64 * 128;
		issue_kmajor(sc, sb + L::K0 + cw * 64 * 128, sQs);
		if constexpr (OV) {
			issue_kmajor(dp, sVc, sdOs);
			wg_wait<1>();
		} else {
			wg_wait<0>();
		}
		pin(sc);

		/* P^T: keys are rows, queries columns (attn_bwd.cu's rule) */
		const bool need_mask = __shfl_sync(
		    0xffffffffu,
		    kv_tile < BN ||
		        (a.causal && kmax > kern_pos(chunk, a.d, a.q_owner, min(qt0, len - 1))),
		    0);
		if constexpr (PRE) {
			/* the producer's LSE and positions; a branch-free loop per
			 * case, so nothing waits inside it */
			const int *qpq = sQp + st * BM;
			auto probs = [&](auto masked) {
#pragma unroll
				for (int j = 0; j < BM / 8; ++j)
#pragma unroll
					for (int e = 0; e < 2; ++e) {
						const float l2 = e ? lv[j].y : lv[j].x;
						int qp = 0;
						if constexpr (decltype(masked)::value)
							qp = a.causal ? qpq[8 * j + 2 * t4 + e] : INT32_MAX;
#pragma unroll
						for (int rr = 0; rr < 2; ++rr) {
							float &x = sc[4 * j + 2 * rr + e];
							float p = exp2f(x * sl2 - l2);
							if constexpr (decltype(masked)::value)
								if (!(kok[rr] && kp[rr] <= qp))
									p = 0.f;
							x = p;
						}
					}
			};
			if (need_mask)
				probs(std::true_type{});
			else
				probs(std::false_type{});
		} else {
#pragma unroll
			for (int j = 0; j < BM / 8; ++j)
#pragma unroll
				for (int e = 0; e < 2; ++e) {
					const int qc = 8 * j + 2 * t4 + e;
					const float lraw = lq[qc];
					float l2;
					int qp;
					bwd_query_row(a, chunk, len, qvalid, qt0 + qc, lraw,
					              need_mask && a.causal, &l2, &qp);
#pragma unroll
					for (int rr = 0; rr < 2; ++rr) {
						float &x = sc[4 * j + 2 * rr + e];
						float p = exp2f(x * sl2 - l2);
						if (need_mask && !(kok[rr] && (!a.causal || kp[rr] <= qp)))
							p = 0.f;
						x = p;
					}
				}
		}

		/* P^T as m64k16 A fragments (columns 16 kk .. 16 kk + 15): a0 (row
		 * g, cols 2t4..), a1 (g + 8, 2t4..), a2 (g, 2t4 + 8..), a3 (g + 8,
		 * 2t4 + 8..) = accumulator elements 8kk + {0,1}, {2,3}, {4,5},
		 * {6,7}. S^T's fp32 registers die here: dS uses the bf16 P (what
		 * dV's product uses too), so without OV S^T and dP^T are never live
		 * together next to dK and dV. */
		uint32_t pf[BM / 16][4];
#pragma unroll
		for (int kk = 0; kk < BM / 16; ++kk)
#pragma unroll
			for (int q4 = 0; q4 < 4; ++q4)
				pf[kk][q4] = pack_bf16(sc[8 * kk + 2 * q4], sc[8 * kk + 2 * q4 + 1]);
		/* PRE: delta pairs likewise, under dP^T's product */
		float2 dlv[PRE ? BM / 8 : 1];
		if constexpr (PRE) {
#pragma unroll
			for (int j = 0; j < BM / 8; ++j)
				dlv[j] = *reinterpret_cast<const float2 *>(dlq + 8 * j + 2 * t4);
		}

		/* B of dV += P^T dO and dK += dS^T Q: dO, Q [q = k][D = n], MN-major */
		const uint64_t ot = desc_sw128(sdOs, QSLAB, 1024);
		const uint64_t qt = desc_sw128(sQs, QSLAB, 1024);
		if constexpr (OV) {
			/* dV's product needs only P^T: it runs under dS^T's arithmetic */
			wg_fence();
#pragma unroll
			for (int kk = 0; kk < BM / 16; ++kk)
				wgmma_rs_tb<D>(dv, pf[kk], ot + ((kk * 16 * 128) >> 4));
			wg_commit();
			wg_wait<1>(); /* dP^T done, dV may still run */
		} else {
			issue_kmajor(dp, sVc, sdOs);
			wg_wait<0>();
		}
		pin(dp);

		/* dS^T = scale * P^T (dP^T - delta), packed like P^T and also
		 * stored to shared memory: element (key r, query c) at slab c / 64,
		 * row r, 16-byte chunk (c % 64) / 8 stored at chunk
		 * ((c % 64) / 8) ^ (r % 8) (128B swizzle; r % 8 == g). */
		uint32_t sf[BM / 16][4];
		const uint32_t sdSb = sb + L::DS0 + b * L::DSB;
#pragma unroll
		for (int kk = 0; kk < BM / 16; ++kk)
#pragma unroll
			for (int q4 = 0; q4 < 4; ++q4) {
				const int j = 2 * kk + (q4 >> 1); /* n8 tile: 8 queries */
				const int qc = 8 * j + 2 * t4;
				const int i = 8 * kk + 2 * q4;
				const __nv_bfloat162 pp = *reinterpret_cast<const __nv_bfloat162 *>(&pf[kk][q4]);
				const float dl0 = PRE ? dlv[PRE ? j : 0].x : dlq[qc];
				const float dl1 = PRE ? dlv[PRE ? j : 0].y : dlq[qc + 1];
				const float d0 = __low2float(pp) * (dp[i] - dl0) * a.scale;
				const float d1 = __high2float(pp) * (dp[i + 1] - dl1) * a.scale;
				sf[kk][q4] = pack_bf16(d0, d1);
				const int r = 64 * cw + 16 * warp + g + 8 * (q4 & 1);
				const uint32_t addr = sdSb + (j >> 3) * DSLAB + r * 128 +
				                      (((j & 7) ^ g) << 4) + 4 * t4;
				st_shared_u32(addr, sf[kk][q4]);
			}
		fence_proxy_async();

		wg_fence();
		{
			if constexpr (!OV) {
#pragma unroll
				for (int kk = 0; kk < BM / 16; ++kk)
					wgmma_rs_tb<D>(dv, pf[kk], ot + ((kk * 16 * 128) >> 4));
			}
#pragma unroll
			for (int kk = 0; kk < BM / 16; ++kk)
				wgmma_rs_tb<D>(dk, sf[kk], qt + ((kk * 16 * 128) >> 4));
			wg_commit();
		}
		/* Q, dO, LSE, delta of the stage are free once dV and dK are done */
		auto release = [&]() {
			pin(dv);
			pin(dk);
			pin(pf);
			pin(sf);
			mbar_arrive(bempty + 8 * st);
		};
		if constexpr (!OV) {
			wg_wait<0>();
			release();
		}

		/* both consumers' dS^T are in shared memory; dS^T buffer b is next
		 * written at iteration it + 2, after the barrier of it + 1, which
		 * neither consumer passes before the other has finished this
		 * iteration's dQ (waited for below). With OV dV and dK still run
		 * here, under the barrier and dQ's product. */
		named_bar_sync(BWD_BAR_DS, 256);

		/* dQ (64 x 64 of this consumer) = dS K: A = dS^T [keys = k][queries
		 * = m] (MN-major, query slab mw), B = K [keys = k][D = n] (MN-major,
		 * column slab nw) */
		float dq[32];
		wg_fence();
		{
			const uint64_t da = desc_sw128(sdSb + mw * DSLAB, DSLAB, 1024);
			const uint64_t db = desc_sw128(sb + L::K0 + nw * KSLAB, KSLAB, 1024);
#pragma unroll
			for (int kk = 0; kk < BN / 16; ++kk)
				wgmma_ss_n64<1, 1>(dq, da + ((kk * 16 * 128) >> 4),
				                   db + ((kk * 16 * 128) >> 4), kk > 0);
			wg_commit();
		}
		if constexpr (OV) {
			wg_wait<1>();
			release();
		}
		wg_wait<0>();
		pin(dq);

		/* dQ rows 64 mw + 16 warp + g (+8), columns 64 nw + 8 jj + 2 t4,
		 * added to global memory (never stored: hops accumulate into it) */
		const int qw = qt0 + 64 * mw + 16 * warp; /* this warp's first row */
		float *const dqw = a.dq + ((seg.off + qw) * a.heads + h) * D + 64 * nw;
		const int64_t rs = static_cast<int64_t>(a.heads) * D; /* row stride */
		if constexpr (TMADQ) {
			/* into this consumer's staging boxes (row r, column c at box
			 * c / 32, 16-byte chunk (c % 32) / 4 ^ r % 8; r % 8 == g), once
			 * the dQ warp has finished with them; the dQ warp adds them */
			named_bar_sync(BWD_BAR_DQEMPTY + cw, BWD_DQ_THREADS);
			const uint32_t sq = sb + L::DQT0 + cw * BWD_DQPART;
#pragma unroll
			for (int rr = 0; rr < 2; ++rr)
#pragma unroll
				for (int jj = 0; jj < 8; ++jj) {
					const int r = 16 * warp + g + 8 * rr;
					const int ch = (2 * (jj & 3) + (t4 >> 1)) ^ g;
					st_shared_f32x2(sq + (jj >> 2) * BWD_DQBOX + r * 128 + (ch << 4) +
					                    (t4 & 1) * 8,
					                dq[4 * jj + 2 * rr], dq[4 * jj + 2 * rr + 1]);
				}
			fence_proxy_async();
			named_bar_arrive(BWD_BAR_DQFULL + cw, BWD_DQ_THREADS);
		} else if constexpr (BULK) {
			/* each row's 64 floats to shared memory, then one bulk
			 * reduce-add per row (lanes 0-15 each issue one) */
			const uint32_t wq = sb + L::DQ0 + (4 * cw + warp) * BWD_DQW;
			if (lane < 16)
				bulk_wait_read(); /* the previous iteration's rows are read */
			__syncwarp();
#pragma unroll
			for (int rr = 0; rr < 2; ++rr)
#pragma unroll
				for (int jj = 0; jj < 8; ++jj)
					st_shared_f32x2(wq + (g + 8 * rr) * BWD_DQROW + (8 * jj + 2 * t4) * 4,
					                dq[4 * jj + 2 * rr], dq[4 * jj + 2 * rr + 1]);
			fence_proxy_async();
			__syncwarp();
			if (lane < 16) {
				if (qw + lane < qvalid)
					bulk_reduce_add_f32(dqw + lane * rs, wq + lane * BWD_DQROW, 256);
				bulk_commit();
			}
		} else if constexpr (V4) {
			/* lane pairs (t4, t4 ^ 1) trade halves: the even lane adds row
			 * g, columns 8 jj + 2 t4 .. + 3, the odd one row g + 8 */
			const int odd = t4 & 1;
			float *dst = dqw + (g + 8 * odd) * rs + 4 * (t4 >> 1);
			const bool ok = qw + g + 8 * odd < qvalid;
#pragma unroll
			for (int jj = 0; jj < 8; ++jj) {
				const float *x = dq + 4 * jj;
				const float r0 = __shfl_xor_sync(0xffffffffu, odd ? x[0] : x[2], 1);
				const float r1 = __shfl_xor_sync(0xffffffffu, odd ? x[1] : x[3], 1);
				const float4 v = odd ? make_float4(r0, r1, x[2], x[3])
				                     : make_float4(x[0], x[1], r0, r1);
				if (ok)
					atomicAdd(reinterpret_cast<float4 *>(dst + 8 * jj), v);
			}
		} else {
#pragma unroll
			for (int rr = 0; rr < 2; ++rr) {
				if (qw + g + 8 * rr >= qvalid)
					continue;
				float *dst = dqw + (g + 8 * rr) * rs + 2 * t4;
#pragma unroll
				for (int jj = 0; jj < 8; ++jj)
					atomicAdd(reinterpret_cast<float2 *>(dst + 8 * jj),
					          make_float2(dq[4 * jj + 2 * rr], dq[4 * jj + 2 * rr + 1]));
			}
		}
	}
	if constexpr (BULK) {
		/* the shared rows must outlive their reads, and the sums must land
		 * before the launch counts as done */
		if (lane < 16)
			bulk_wait_all();
	}

	/* every row < len of the shard's dK/dV gets this hop's contribution */
#pragma unroll
	for (int rr = 0; rr < 2; ++rr) {
		const int kr = k0 + 64 * cw + 16 * warp + g + 8 * rr;
		if (kr >= len)
			continue;
		const int64_t row = ((seg.off + kr) * a.kv_heads + hk) * D + 2 * t4;
		float2 xk[D / 8], xv[D / 8];
#pragma unroll
		for (int dt = 0; dt < D / 8; ++dt) {
			xk[dt] = make_float2(dk[4 * dt + 2 * rr], dk[4 * dt + 2 * rr + 1]);
			xv[dt] = make_float2(dv[4 * dt + 2 * rr], dv[4 * dt + 2 * rr + 1]);
		}
		bwd_row_store(a.dk + row, a.dv + row, xk, xv, a.accumulate != 0);
	}
#endif
}

template <int D, int BM, int STAGES, int OPT>
static sl_err launch_bwd_sm90(const kern_bwd_args_t *a, cudaStream_t st)
{
	using L = bwd_smem<D, BM, STAGES, OPT>;
	bwd_maps maps;
	memset(&maps, 0, sizeof(maps));
	SL_CHECK(make_map(&maps.q, a->q, D, a->heads, a->ntok, BM));
	SL_CHECK(make_map(&maps.dout, a->dout, D, a->heads, a->ntok, BM));
	SL_CHECK(make_map(&maps.k, a->k, D, a->kv_heads, a->ntok, BWD_BN));
	SL_CHECK(make_map(&maps.v, a->v, D, a->kv_heads, a->ntok, BWD_BN));
	if constexpr ((OPT & KERN_BWD90_TMADQ) != 0)
		SL_CHECK(make_map_f32(&maps.dq, a->dq, D, a->heads, a->ntok, 64));
	auto fn = bwd_sm90_kernel<D, BM, STAGES, OPT>;
	KERN_CUDA(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                               static_cast<int>(L::ALLOC)));
	dim3 grid(static_cast<unsigned>(a->ntiles), static_cast<unsigned>(a->kv_heads));
	fn<<<grid, BWD_THREADS, L::ALLOC, st>>>(*a, maps);
	KERN_LAUNCHED("bwd_sm90_kernel");
	return SL_OK;
}

/* The option sets the variant table uses (kern.h), per head dim's tile. */
template <int D, int BM>
static sl_err launch_bwd_opt(const kern_bwd_args_t *a, int opt, cudaStream_t st)
{
	constexpr int OV = KERN_BWD90_OV, V4 = KERN_BWD90_V4, BULK = KERN_BWD90_BULK;
	constexpr int S3 = KERN_BWD90_S3, TMADQ = KERN_BWD90_TMADQ, PRE = KERN_BWD90_PRE;
	switch (opt) {
	case 0:
		return launch_bwd_sm90<D, BM, 2, 0>(a, st);
	case OV:
		return launch_bwd_sm90<D, BM, 2, OV>(a, st);
	case V4:
		return launch_bwd_sm90<D, BM, 2, V4>(a, st);
	case BULK:
		return launch_bwd_sm90<D, BM, 2, BULK>(a, st);
	case OV | V4:
		return launch_bwd_sm90<D, BM, 2, OV | V4>(a, st);
	case OV | BULK:
		return launch_bwd_sm90<D, BM, 2, OV | BULK>(a, st);
	case S3 | OV | V4:
		return launch_bwd_sm90<D, BM, 3, OV | V4>(a, st);
	case OV | TMADQ:
		return launch_bwd_sm90<D, BM, 2, OV | TMADQ>(a, st);
	case OV | TMADQ | PRE:
		return launch_bwd_sm90<D, BM, 2, OV | TMADQ | PRE>(a, st);
	case OV | PRE:
		return launch_bwd_sm90<D, BM, 2, OV | PRE>(a, st);
	case TMADQ | PRE:
		return launch_bwd_sm90<D, BM, 2, TMADQ | PRE>(a, st);
	default:
		return sl_seterr(SL_EINVAL, "%s:%d: no sm_90a backward with options %#x", __FILE__,
		                 __LINE__, static_cast<unsigned>(opt));
	}
}

} // namespace sm90
} // namespace kern

/* The sm_90a backward variants (kern.h): 128 keys per block. */
sl_err kern_sm90_bwd(const kern_bwd_args_t *a, int opt, cudaStream_t st)
{
	if (a->head_dim == 64)
		return kern::sm90::launch_bwd_opt<64, 128>(a, opt, st);
	if (a->head_dim == 128)
		return kern::sm90::launch_bwd_opt<128, 64>(a, opt, st);
	return sl_seterr(SL_EINVAL, "%s:%d: no sm_90a backward for head_dim %d", __FILE__,
	                 __LINE__, a->head_dim);
}

int kern_sm90_bwd_fits(const kern_bwd_args_t *a)
{
	return kern_sm90_hop_fits(reinterpret_cast<uintptr_t>(a->q) |
	                              reinterpret_cast<uintptr_t>(a->k) |
	                              reinterpret_cast<uintptr_t>(a->v) |
	                              reinterpret_cast<uintptr_t>(a->dout) |
	                              reinterpret_cast<uintptr_t>(a->dq), /* v4 / bulk adds */
	                          a->ntok, a->heads, a->kv_heads);
}
