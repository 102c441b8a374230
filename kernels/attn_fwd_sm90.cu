/* sluice kernels: forward attention of one ring hop on sm_90a (Hopper), in
 * the FlashAttention-3 design (Shah et al., 2024): a block of 128 query rows
 * of one head runs three warpgroups. Warpgroup 0 is the producer: one thread
 * issues TMA copies of the Q tile and of the K/V tiles into a ring of STAGES
 * shared-memory stages (mbarriers "full" for K and V apart, "empty" per
 * stage) and the warpgroup gives its registers to the others (setmaxnreg).
 * Warpgroups 1 and 2 are consumers of 64 rows each: S = Q K^T by wgmma from
 * shared memory into registers, the online softmax in fp32 (exp2 domain),
 * then O += P V by wgmma with P from registers. Within a consumer the
 * softmax of tile j runs while the wgmma of P_{j-1} V_{j-1} is in flight
 * (FlashAttention-3's intra-warpgroup overlap, section 3.2); the two
 * consumers interleave their GEMMs and softmaxes on their own, or, in the
 * ping-pong variants (PP), take turns through two named barriers: one
 * consumer's GEMMs are issued while the other computes its softmax
 * (FlashAttention-3's inter-warpgroup overlap, section 3.1). A turn is the
 * GEMMs of one step: with OVERLAP, S_j = Q K_j^T and O += P_{j-1} V_{j-1};
 * without, O += P_{j-1} V_{j-1} and S_j. Consumer 0 opens with a signal to
 * itself; each turn starts with bar.sync on the consumer's own barrier and
 * ends with bar.arrive on the other's (the last arrival is left pending when
 * the block exits).
 *
 * Masking, padding and the LSE modes are the mma.sync kernel's
 * (attn_fwd.cu): by global (zigzag) position, a query tile needs the first
 * fwd_keys_needed keys, rows that see nothing get O = 0 and LSE = -inf.
 * TMA boxes are not clipped to a segment: rows past it are other segments'
 * tokens (finite inputs; their scores are masked to -inf, so P is exactly 0
 * there) or past the tensor (zero filled by the TMA unit). */
#include <math.h>

#include <type_traits>

#include "attn_sm90.cuh"
#include "sluice/log.h"

namespace kern {
namespace sm90 {

/* The three tensor maps of a hop, passed by value as one kernel parameter
 * (__grid_constant__: the TMA unit reads them from parameter space). */
struct fwd_maps {
	CUtensorMap q, k, v;
};

constexpr int FWD_BM = 128;      /* query rows per block: 2 consumers x 64 */
constexpr int FWD_THREADS = 384; /* producer + 2 consumer warpgroups */

template <int D, int BN, int STAGES> struct fwd_smem {
	static constexpr uint32_t Q = FWD_BM * D * 2;
	static constexpr uint32_t KV = BN * D * 2; /* one K (or V) stage */
	static constexpr uint32_t K0 = Q;
	static constexpr uint32_t V0 = Q + STAGES * KV;
	static constexpr uint32_t BAR = Q + 2 * STAGES * KV;
	/* barriers: q, kfull[S], vfull[S], empty[S] */
	static constexpr uint32_t BYTES = BAR + 8 * (1 + 3 * STAGES);
	/* + 1024: the dynamic window is re-aligned to 1024 bytes */
	static constexpr size_t ALLOC = BYTES + 1024;
	static_assert(Q % 1024 == 0 && KV % 1024 == 0, "tiles start on 1024-byte boundaries");
	/* a K/V slab (BN rows of 128 bytes) too: 176 x 128 = 22 x 1024 */
	static_assert((BN * 128) % 1024 == 0, "slabs start on 1024-byte boundaries");
	/* the sm_90 opt-in limit of dynamic shared memory per block (227 KB) */
	static_assert(ALLOC <= 227 * 1024, "shared memory");
};

/* named barriers of the ping-pong turns: consumer c syncs on FWD_BAR_TURN + c */
constexpr int FWD_BAR_TURN = 1;

template <int D, int BN, int STAGES, bool OVERLAP, bool PP>
__global__ void __launch_bounds__(FWD_THREADS, 1)
    fwd_sm90_kernel(const kern_fwd_args_t a, const __grid_constant__ fwd_maps maps)
{
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
	__trap(); /* compiled for another target: kern_sm90_fwd_fits never picks it */
#else
	using L = fwd_smem<D, BN, STAGES>;
	constexpr int NSL = D / 64;          /* 64-column slabs of a row */
	constexpr int NKT = BN / 8;          /* n8 column tiles of S */
	constexpr uint32_t QSLAB = FWD_BM * 128; /* bytes of one slab of the Q tile */
	constexpr uint32_t KSLAB = BN * 128;
	static_assert(D == 64 || D == 128, "head dim");
	/* 176: FlashAttention-3's non-causal D = 128 tile (S in 88 registers,
	 * P V in 11 k16 steps; nothing below needs a power of two) */
	static_assert(BN == 64 || BN == 128 || (BN == 176 && D == 128), "key tile");

	extern __shared__ uint8_t smem_raw[];
	const uint32_t base = (smem_u32(smem_raw) + 1023u) & ~1023u;
	const uint32_t sQ = base, sK = base + L::K0, sV = base + L::V0;
	const uint32_t bq = base + L::BAR;
	const uint32_t bk = bq + 8, bv = bk + 8 * STAGES, be = bv + 8 * STAGES;

	/* through a shuffle: the compiler then knows the role is warp-uniform
	 * and keeps the consumers' wgmmas unserialised */
	const int wg = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x >> 7), 0);
	/* causal: the tiles of a segment need more keys the later they are, so
	 * the blocks take them last to first (heaviest first, as FlashAttention
	 * does), leaving light blocks for the last wave */
	const kern_tile_t tile = a.tiles[a.causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x];
	const kern_seg_t seg = a.segs[tile.seg];
	const int h = blockIdx.y;
	const int hk = h / (a.heads / a.kv_heads);
	const int q0 = tile.start;
	int qvalid, kvalid;
	const int kneed = fwd_keys_needed(a, seg, q0, FWD_BM, &qvalid, &kvalid);
	/* shuffled: warp-uniform to the compiler (it serialises wgmmas that it
	 * finds on possibly divergent paths) */
	const int nk = __shfl_sync(0xffffffffu, (kneed + BN - 1) / BN, 0);

	if (threadIdx.x == 0) {
		mbar_init(bq, 1);
		for (int s = 0; s < STAGES; ++s) {
			mbar_init(bk + 8 * s, 1);
			mbar_init(bv + 8 * s, 1);
			mbar_init(be + 8 * s, 2 * 128); /* every consumer thread */
		}
		mbar_fence_init();
	}
	__syncthreads();

	if (wg == 0) {
		/* producer */
		regs_dealloc<24>();
		if (threadIdx.x == 0 && nk > 0) {
			tma_prefetch_desc(&maps.q);
			tma_prefetch_desc(&maps.k);
			tma_prefetch_desc(&maps.v);
			const int32_t row0 = static_cast<int32_t>(seg.off);
			mbar_arrive_expect_tx(bq, L::Q);
#pragma unroll
			for (int sl = 0; sl < NSL; ++sl)
				tma_load_3d(sQ + sl * QSLAB, &maps.q, bq, sl * 64, h, row0 + q0);
			for (int j = 0; j < nk; ++j) {
				const int s = j % STAGES, n = j / STAGES;
				if (n > 0)
					mbar_wait(be + 8 * s, (n - 1) & 1);
				const uint32_t off = static_cast<uint32_t>(s) * L::KV;
				mbar_arrive_expect_tx(bk + 8 * s, L::KV);
#pragma unroll
				for (int sl = 0; sl < NSL; ++sl)
					tma_load_3d(sK + off + sl * KSLAB, &maps.k, bk + 8 * s, sl * 64,
					            hk, row0 + j * BN);
				mbar_arrive_expect_tx(bv + 8 * s, L::KV);
#pragma unroll
				for (int sl = 0; sl < NSL; ++sl)
					tma_load_3d(sV + off + sl * KSLAB, &maps.v, bv + 8 * s, sl * 64,
					            hk, row0 + j * BN);
			}
		}
		return;
	}

	/* consumers */
	regs_alloc<240>();
	const int cw = wg - 1;
	const int wtid = threadIdx.x & 127, warp = wtid >> 5, lane = wtid & 31;
	const int g = lane >> 2, t4 = lane & 3;
	const int len = seg.len, chunk = seg.chunk;
	const float sl2 = a.scale * 1.4426950408889634f;
	const int crow0 = q0 + 64 * cw; /* this consumer's first row */
	int qpos[2];
#pragma unroll
	for (int rr = 0; rr < 2; ++rr) {
		const int r = crow0 + 16 * warp + g + 8 * rr;
		qpos[rr] = r < len ? kern_pos(chunk, a.d, a.q_owner, r) : INT32_MAX;
	}
	const int qmin = kern_pos(chunk, a.d, a.q_owner, min(crow0, len - 1));

	/* descriptors; a k step of 16 columns is 32 bytes inside a slab */
	const uint64_t dq = desc_sw128(sQ + cw * 64 * 128, 16, 1024);
	const uint64_t dk = desc_sw128(sK, 16, 1024);
	const uint64_t dv = desc_sw128(sV, KSLAB, 1024);

	float o[D / 2];
	float sc[BN / 2];
	uint32_t p[BN / 16][4];
	float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};
#pragma unroll
	for (int i = 0; i < D / 2; ++i)
		o[i] = 0.f;

	/* ping-pong turns: wait for ours, then give the other consumer its turn */
	auto turn_begin = [&]() {
		if constexpr (PP)
			named_bar_sync(FWD_BAR_TURN + cw, 256);
	};
	auto turn_end = [&]() {
		if constexpr (PP)
			named_bar_arrive(FWD_BAR_TURN + (1 - cw), 256);
	};
	if (PP && cw == 0)
		named_bar_arrive(FWD_BAR_TURN, 256); /* consumer 0 goes first */

	if (nk > 0)
		mbar_wait(bq, 0);
	/* one key tile; the first (FIRST) has no P V of a previous tile to
	 * overlap. Peeled rather than branched: the compiler serialises wgmmas
	 * it finds on paths it cannot prove warpgroup-uniform. */
	auto step = [&](const int j, auto first) {
		constexpr bool FIRST = decltype(first)::value;
		const int s = j % STAGES;
		const int sp = (j + STAGES - 1) % STAGES; /* stage of tile j - 1 */
		/* both waits before the first wgmma: a (divergent) wait loop between
		 * two wgmmas would make the compiler serialise them */
		mbar_wait(bk + 8 * s, (j / STAGES) & 1);
		if constexpr (!FIRST)
			mbar_wait(bv + 8 * sp, ((j - 1) / STAGES) & 1);
		if constexpr (OVERLAP && !FIRST)
			turn_begin();
		wg_fence();
		{
			const uint64_t dqs = opaque(dq);
			const uint64_t dks = opaque(dk + ((s * L::KV) >> 4));
			wgmma_ss_kmajor<BN, D>(sc, dqs, dks, QSLAB, KSLAB);
		}
		wg_commit();
		if constexpr (!FIRST) {
			/* O += P_{j-1} V_{j-1} runs under this tile's softmax */
			const uint64_t dvs = opaque(dv + ((sp * L::KV) >> 4));
#pragma unroll
			for (int kk = 0; kk < BN / 16; ++kk)
				wgmma_rs_tb<D>(o, p[kk], dvs + ((kk * 16 * 128) >> 4));
			wg_commit();
			if constexpr (OVERLAP)
				turn_end();
			wg_wait<1>();
		} else {
			if constexpr (!OVERLAP)
				turn_end(); /* the turn began before pv(j - 1) (or the loop) */
			wg_wait<0>();
		}
		pin(sc);

		/* mask; the scores stay unscaled: the scale goes into the
		 * exponent's FFMA (a.scale > 0, so the row max commutes with it) */
		const int k0 = j * BN;
		const bool need_mask = __shfl_sync(
		    0xffffffffu,
		    k0 + BN > kvalid ||
		        (a.causal && kern_pos(chunk, a.d, a.k_owner, k0 + BN - 1) > qmin),
		    0);
		if (need_mask) {
#pragma unroll
			for (int nt = 0; nt < NKT; ++nt)
#pragma unroll
				for (int e1 = 0; e1 < 2; ++e1) {
					const int col = k0 + nt * 8 + 2 * t4 + e1;
					const bool kok = col < kvalid;
					const int kp =
					    kok ? kern_pos(chunk, a.d, a.k_owner, col) : INT32_MAX;
#pragma unroll
					for (int rr = 0; rr < 2; ++rr) {
						const bool seen = kok && (!a.causal || kp <= qpos[rr]);
						float &x = sc[4 * nt + 2 * rr + e1];
						x = seen ? x : -INFINITY;
					}
				}
		}

		/* online softmax of rows g and g + 8 (a quad shares a row), in the
		 * log2 domain: p = 2^(x sl2 - m), one FFMA and one EX2 a score */
		float alpha[2], rsum[2];
#pragma unroll
		for (int rr = 0; rr < 2; ++rr) {
			float mx = -INFINITY;
#pragma unroll
			for (int nt = 0; nt < NKT; ++nt)
				mx = fmaxf(mx, fmaxf(sc[4 * nt + 2 * rr], sc[4 * nt + 2 * rr + 1]));
			mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
			mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
			const float mnew = fmaxf(mrow[rr], mx * sl2);
			const float muse = mnew == -INFINITY ? 0.f : mnew;
			alpha[rr] = exp2f(mrow[rr] - muse);
			mrow[rr] = mnew;
			float sum = 0.f;
#pragma unroll
			for (int nt = 0; nt < NKT; ++nt) {
				const float p0 = exp2f(fmaf(sc[4 * nt + 2 * rr], sl2, -muse));
				const float p1 = exp2f(fmaf(sc[4 * nt + 2 * rr + 1], sl2, -muse));
				sc[4 * nt + 2 * rr] = p0;
				sc[4 * nt + 2 * rr + 1] = p1;
				sum += p0 + p1;
			}
			rsum[rr] = sum;
		}
		if constexpr (!FIRST) {
			wg_wait<0>();
			pin(o);
			pin(p);
			mbar_arrive(be + 8 * sp); /* K and V of tile j - 1 are free */
		}
#pragma unroll
		for (int rr = 0; rr < 2; ++rr) {
			lrow[rr] = lrow[rr] * alpha[rr] + rsum[rr];
#pragma unroll
			for (int dt = 0; dt < D / 8; ++dt) {
				o[4 * dt + 2 * rr] *= alpha[rr];
				o[4 * dt + 2 * rr + 1] *= alpha[rr];
			}
		}
		/* P as the A fragment of m64k16: columns 16 kk .. 16 kk + 15 */
#pragma unroll
		for (int kk = 0; kk < BN / 16; ++kk) {
			p[kk][0] = pack_bf16(sc[8 * kk], sc[8 * kk + 1]);
			p[kk][1] = pack_bf16(sc[8 * kk + 2], sc[8 * kk + 3]);
			p[kk][2] = pack_bf16(sc[8 * kk + 4], sc[8 * kk + 5]);
			p[kk][3] = pack_bf16(sc[8 * kk + 6], sc[8 * kk + 7]);
		}
	};
	/* O += P_j V_j, waited for; the stage is released */
	auto pv = [&](const int j) {
		const int s = j % STAGES;
		mbar_wait(bv + 8 * s, (j / STAGES) & 1);
		if constexpr (!OVERLAP)
			turn_begin(); /* this P V and the next tile's S = Q K^T */
		wg_fence();
		const uint64_t dvs = opaque(dv + ((s * L::KV) >> 4));
#pragma unroll
		for (int kk = 0; kk < BN / 16; ++kk)
			wgmma_rs_tb<D>(o, p[kk], dvs + ((kk * 16 * 128) >> 4));
		wg_commit();
		wg_wait<0>();
		pin(o);
		pin(p);
		mbar_arrive(be + 8 * s);
	};
	if constexpr (OVERLAP) {
		if (nk > 0)
			step(0, std::true_type{});
		for (int j = 1; j < nk; ++j)
			step(j, std::false_type{});
	} else {
		/* each tile on its own (fewer live registers: S and P of one tile
		 * only); the two consumers still overlap each other */
		if (nk > 0)
			turn_begin(); /* the first S = Q K^T */
		for (int j = 0; j < nk - 1; ++j) {
			step(j, std::true_type{});
			pv(j);
		}
		if (nk > 0)
			step(nk - 1, std::true_type{});
	}
	if (nk > 0) {
		pv(nk - 1);
		if constexpr (!OVERLAP)
			turn_end();
	}

	/* epilogue */
	fwd_row rows[2];
#pragma unroll
	for (int rr = 0; rr < 2; ++rr) {
		float l = lrow[rr];
		l += __shfl_xor_sync(0xffffffffu, l, 1);
		l += __shfl_xor_sync(0xffffffffu, l, 2);
		rows[rr] = fwd_row_begin(a, seg, h, crow0 + 16 * warp + g + 8 * rr, qvalid, mrow[rr], l);
	}
	__syncwarp();
#pragma unroll
	for (int rr = 0; rr < 2; ++rr)
		fwd_row_store<D>(a, rows[rr], &o[2 * rr], t4);
#endif
}

/* cuTensorMapEncodeTiled through the runtime's driver entry point (the
 * library links only cudart); resolved once. */
typedef CUresult (*encode_tiled_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                                    const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                                    const cuuint32_t *, CUtensorMapInterleave,
                                    CUtensorMapSwizzle, CUtensorMapL2promotion,
                                    CUtensorMapFloatOOBfill);

static sl_err encode_fn(encode_tiled_fn *out)
{
	static encode_tiled_fn fn = nullptr;
	static cudaError_t err = cudaSuccess;
	static cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSuccess;
	static const bool once = [] {
		void *p = nullptr;
		err = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000,
		                                       cudaEnableDefault, &q);
		fn = reinterpret_cast<encode_tiled_fn>(p);
		return true;
	}();
	(void)once;
	if (err != cudaSuccess)
		return kern_cuda_err(static_cast<int>(err), "cudaGetDriverEntryPointByVersion",
		                     __FILE__, __LINE__);
	if (fn == nullptr || q != cudaDriverEntryPointSuccess)
		return sl_seterr(SL_ECUDA, "%s:%d: the driver has no cuTensorMapEncodeTiled (query %d)",
		                 __FILE__, __LINE__, static_cast<int>(q));
	*out = fn;
	return SL_OK;
}

/* A tensor map of a [ntok][heads][D] tensor of esize-byte elements (dtype)
 * whose boxes are `rows` tokens x 128 bytes (one swizzle row) of one head. */
static sl_err make_map_typed(CUtensorMap *m, CUtensorMapDataType dtype, int esize,
                             const void *ptr, int D, int heads, int64_t ntok, int rows)
{
	encode_tiled_fn fn;
	SL_CHECK(encode_fn(&fn));
	const cuuint64_t dims[3] = {static_cast<cuuint64_t>(D), static_cast<cuuint64_t>(heads),
	                            static_cast<cuuint64_t>(ntok)};
	const cuuint64_t strides[2] = {static_cast<cuuint64_t>(D) * esize,
	                               static_cast<cuuint64_t>(D) * esize * heads};
	const cuuint32_t box[3] = {static_cast<cuuint32_t>(128 / esize), 1,
	                           static_cast<cuuint32_t>(rows)};
	const cuuint32_t estr[3] = {1, 1, 1};
	const CUresult r = fn(m, dtype, 3, const_cast<void *>(ptr), dims, strides, box, estr,
	                      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
	                      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
	if (r != CUDA_SUCCESS)
		return sl_seterr(SL_ECUDA,
		                 "%s:%d: cuTensorMapEncodeTiled failed (%d): %d-byte elements, D %d, "
		                 "heads %d, ntok %lld, box rows %d",
		                 __FILE__, __LINE__, static_cast<int>(r), esize, D, heads,
		                 static_cast<long long>(ntok), rows);
	return SL_OK;
}

/* attn_sm90.cuh's make_map and make_map_f32. */
sl_err make_map(CUtensorMap *m, const void *ptr, int D, int heads, int64_t ntok, int rows)
{
	return make_map_typed(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, ptr, D, heads, ntok, rows);
}

sl_err make_map_f32(CUtensorMap *m, const void *ptr, int D, int heads, int64_t ntok, int rows)
{
	return make_map_typed(m, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 4, ptr, D, heads, ntok, rows);
}

template <int D, int BN, int STAGES, bool OVERLAP, bool PP>
static sl_err launch_fwd_sm90(const kern_fwd_args_t *a, cudaStream_t st)
{
	using L = fwd_smem<D, BN, STAGES>;
	fwd_maps maps;
	SL_CHECK(make_map(&maps.q, a->q, D, a->heads, a->ntok, FWD_BM));
	SL_CHECK(make_map(&maps.k, a->k, D, a->kv_heads, a->ntok, BN));
	SL_CHECK(make_map(&maps.v, a->v, D, a->kv_heads, a->ntok, BN));
	auto fn = fwd_sm90_kernel<D, BN, STAGES, OVERLAP, PP>;
	KERN_CUDA(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                               static_cast<int>(L::ALLOC)));
	dim3 grid(static_cast<unsigned>(a->ntiles), static_cast<unsigned>(a->heads));
	fn<<<grid, FWD_THREADS, L::ALLOC, st>>>(*a, maps);
	KERN_LAUNCHED("fwd_sm90_kernel");
	return SL_OK;
}

} // namespace sm90
} // namespace kern

/* The sm_90a forward variants (kern.h): every instantiation a table entry of
 * attn_fwd.cu names; the stage count follows from the tile (3 for 64-key
 * tiles or D = 64, else 2: what fits 227 KB of shared memory). */
sl_err kern_sm90_fwd(const kern_fwd_args_t *a, int bn, int opt, cudaStream_t st)
{
	using namespace kern::sm90;
	const bool ov = (opt & KERN_FWD90_OVERLAP) != 0, pp = (opt & KERN_FWD90_PP) != 0;
#define SL_FWD90(D, BN, S, OV, PP)                                                                 \
	if (a->head_dim == D && bn == BN && ov == OV && pp == PP)                                  \
		return launch_fwd_sm90<D, BN, S, OV, PP>(a, st);
	SL_FWD90(64, 128, 3, true, false)
	SL_FWD90(64, 128, 3, true, true)
	SL_FWD90(128, 64, 3, true, false)
	SL_FWD90(128, 64, 3, true, true)
	SL_FWD90(128, 128, 2, false, false)
	SL_FWD90(128, 128, 2, false, true)
	SL_FWD90(128, 128, 2, true, false)
	SL_FWD90(128, 128, 2, true, true)
	SL_FWD90(128, 176, 2, false, false)
	SL_FWD90(128, 176, 2, false, true)
#undef SL_FWD90
	return sl_seterr(SL_EINVAL, "%s:%d: no sm_90a forward for head_dim %d, %d-key tiles, options %d",
	                 __FILE__, __LINE__, a->head_dim, bn, opt);
}

int kern_sm90_hop_fits(uintptr_t addrs, int64_t ntok, int32_t heads, int32_t kv_heads)
{
#if SLUICE_SM90A
	return ntok > 0 && ntok <= INT32_MAX - 256 && (addrs & 15u) == 0 && heads > 0 &&
	       kv_heads > 0 && !kern_path_mma_only() && kern_device_sm90();
#else
	(void)addrs, (void)ntok, (void)heads, (void)kv_heads; /* the library has no sm_90a code */
	return 0;
#endif
}

int kern_sm90_fwd_fits(const kern_fwd_args_t *a)
{
	return kern_sm90_hop_fits(reinterpret_cast<uintptr_t>(a->q) |
	                              reinterpret_cast<uintptr_t>(a->k) |
	                              reinterpret_cast<uintptr_t>(a->v),
	                          a->ntok, a->heads, a->kv_heads);
}
