/* sluice kernels: backward attention of one ring hop (FlashAttention-2's
 * backward, Dao 2023, §3.2: a block owns BN = 16*NW keys of one KV head, each
 * warp 16 of them, and walks every query tile (of every query head of its
 * GQA group) that can see them, keeping dK and dV in registers; dQ is
 * accumulated with fp32 atomics).
 *
 * Per query tile, warp w (keys kw = 16w..16w+15) computes in registers
 *   S^T = K_w Q^T,  P^T = exp(S^T * scale - LSE),  dP^T = V_w dO^T,
 *   dS^T = scale * P^T (dP^T - delta),  dV_w += P^T dO,  dK_w += dS^T Q,
 * stores dS^T (bf16) in shared memory, and after a barrier all warps form
 * dQ = dS K (warp w: columns w*D/NW ..) and add it to global memory.
 * P uses the final LSE of the whole ring (worker/backend.h). */
#include <math.h>
#include <string.h>

#include "attn_common.cuh"

namespace kern {

/* split: the table's key tiles are split * BN keys long (an sm_90a
 * variant's 128-key tiles run on a 64-key kernel as its fallback); block x
 * takes sub-tile x % split of tile x / split. */
template <int D, int NW, int BM, int NSUB>
__global__ void __launch_bounds__(NW * 32) bwd_kernel(const kern_bwd_args_t a, const int split)
{
	constexpr int NT = NW * 32;
	constexpr int BN = 16 * NW;
	constexpr int CH = D / 8;
	constexpr int RB = D * 2;   /* bytes per K/V/Q/dO tile row */
	constexpr int CHS = BM / 8; /* chunks per dS^T row */
	constexpr int RBS = BM * 2; /* bytes per dS^T row */
	constexpr int DW = D / NW;  /* dQ columns per warp */
	constexpr int BMS = BM / NSUB; /* queries per sub-block */
	constexpr int NQS = BMS / 8;   /* n8 tiles of S^T per sub-block */
	static_assert(BMS % 16 == 0, "sub-block of whole m16 tiles");
	constexpr int NDT = D / 8;
	constexpr uint32_t QB = BM * D * 2;
	static_assert(DW % 16 == 0, "each warp takes a multiple of 16 dQ columns");
	static_assert(BM % 16 == 0, "query tile");

	extern __shared__ __align__(128) uint8_t smem[];
	const uint32_t sK = smem_u32(smem);
	const uint32_t sV = sK + BN * D * 2;
	const uint32_t sQ = sV + BN * D * 2;
	const uint32_t sdO = sQ + 2 * QB;
	const uint32_t sdS = sdO + 2 * QB;
	float *sL = reinterpret_cast<float *>(smem + (2 * BN * D * 2 + 4 * QB + BN * BM * 2));
	float *sDl = sL + 2 * BM;

	const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
	const int g = lane >> 2, t4 = lane & 3;
	const frag_off<CH> offA(lane_row_a(lane), lane_hi_a(lane));
	const frag_off<CH> offB(lane_row_b(lane), lane_hi_b(lane));
	const kern_tile_t tile = a.tiles[blockIdx.x / split];
	const kern_seg_t seg = a.segs[tile.seg];
	const int hk = blockIdx.y;
	const int G = a.heads / a.kv_heads;
	const int k0 = tile.start + static_cast<int>(blockIdx.x % split) * BN;
	const int len = seg.len, chunk = seg.chunk;
	int qvalid, kvalid, kv_tile, i0, i1;
	bwd_query_tiles(a, seg, k0, BN, BM, &qvalid, &kvalid, &kv_tile, &i0, &i1);
	const int nq = i1 - i0;
	const int niter = nq * G;
	const int kmax = kv_tile > 0 ? kern_pos(chunk, a.d, a.k_owner, k0 + kv_tile - 1) : 0;
	const float sl2 = a.scale * 1.4426950408889634f;

	const int64_t qstride = static_cast<int64_t>(a.heads) * D;
	const int64_t kstride = static_cast<int64_t>(a.kv_heads) * D;
	const bf16 *qbase = static_cast<const bf16 *>(a.q);
	const bf16 *obase = static_cast<const bf16 *>(a.dout);
	const bf16 *kbase = static_cast<const bf16 *>(a.k);
	const bf16 *vbase = static_cast<const bf16 *>(a.v);

	/* this thread's two keys (rows g and g+8 of the warp's 16) */
	bool kok[2];
	int kp[2];
#pragma unroll
	for (int rr = 0; rr < 2; ++rr) {
		const int kr = k0 + warp * 16 + g + rr * 8;
		kok[rr] = kr < kvalid;
		kp[rr] = kok[rr] ? kern_pos(chunk, a.d, a.k_owner, kr) : INT32_MAX;
	}

	float dk[NDT][4], dv[NDT][4];
#pragma unroll
	for (int i = 0; i < NDT; ++i)
#pragma unroll
		for (int e = 0; e < 4; ++e)
			dk[i][e] = dv[i][e] = 0.f;

	/* issues the loads of iteration it into buffer b */
	auto load_iter = [&](int it, int b) {
		const int hh = it / nq;
		const int qt0 = (i0 + it % nq) * BM;
		const int h = hk * G + hh;
		const int64_t row0 = (seg.off + qt0) * qstride + static_cast<int64_t>(h) * D;
		const int rv = min(BM, len - qt0);
		load_tile<BM, D, NT>(sQ + b * QB, qbase + row0, qstride, rv, qbase, tid);
		load_tile<BM, D, NT>(sdO + b * QB, obase + row0, qstride, rv, obase, tid);
		/* raw LSE and delta, asynchronously (a plain load here would stall
		 * every warp at each iteration's start); rows >= qvalid read 0 */
		for (int r = tid; r < BM; r += NT) {
			const int qi = qt0 + r;
			const bool ok = qi < qvalid;
			const int64_t idx = (seg.off + (ok ? qi : 0)) * a.heads + h;
			cp_async4(smem_u32(sL + b * BM + r), a.lse + idx, ok);
			cp_async4(smem_u32(sDl + b * BM + r), a.delta + idx, ok);
		}
	};

	if (niter > 0) {
		load_tile<BN, D, NT>(sK, kbase + seg.off * kstride + k0 * kstride +
		                             static_cast<int64_t>(hk) * D,
		                     kstride, min(BN, len - k0), kbase, tid);
		load_tile<BN, D, NT>(sV, vbase + seg.off * kstride + k0 * kstride +
		                             static_cast<int64_t>(hk) * D,
		                     kstride, min(BN, len - k0), vbase, tid);
		load_iter(0, 0);
		cp_async_commit();
	}
	for (int it = 0; it < niter; ++it) {
		const int b = it & 1;
		const int hh = it / nq;
		const int qt0 = (i0 + it % nq) * BM;
		const int h = hk * G + hh;
		if (it + 1 < niter) {
			load_iter(it + 1, b ^ 1);
			cp_async_commit();
			cp_async_wait<1>();
		} else {
			cp_async_wait<0>();
		}
		__syncthreads();
		const uint32_t sQb = sQ + b * QB, sdOb = sdO + b * QB;
		const float *lq = sL + b * BM, *dlq = sDl + b * BM;

		/* NSUB column sub-blocks of BMS queries: S^T/dP^T of one sub-block
		 * live at a time (registers), K_w/V_w fragments re-read per block */
#pragma unroll
		for (int sub = 0; sub < NSUB; ++sub) {
			const int c0 = sub * BMS;
			float st[NQS][4], dp[NQS][4];
#pragma unroll
			for (int i = 0; i < NQS; ++i)
#pragma unroll
				for (int e = 0; e < 4; ++e)
					st[i][e] = dp[i][e] = 0.f;
#pragma unroll
			for (int ks = 0; ks < D / 16; ++ks) {
				uint32_t ka[4], va[4];
				const uint32_t off = offA.at(ks) + warp * 16 * RB;
				ldsm_x4(ka, sK + off);
				ldsm_x4(va, sV + off);
#pragma unroll
				for (int np = 0; np < BMS / 16; ++np) {
					uint32_t qb[4], ob[4];
					const uint32_t o2 = offB.at(ks) + (c0 + np * 16) * RB;
					ldsm_x4(qb, sQb + o2);
					ldsm_x4(ob, sdOb + o2);
					mma16816(st[2 * np], ka, qb[0], qb[1]);
					mma16816(st[2 * np + 1], ka, qb[2], qb[3]);
					mma16816(dp[2 * np], va, ob[0], ob[1]);
					mma16816(dp[2 * np + 1], va, ob[2], ob[3]);
				}
			}

			/* P^T and dS^T (scaled); keys are rows, queries columns */
			const bool need_mask =
			    kv_tile < BN ||
			    (a.causal && kmax > kern_pos(chunk, a.d, a.q_owner, min(qt0 + c0, len - 1)));
#pragma unroll
			for (int nt = 0; nt < NQS; ++nt)
#pragma unroll
				for (int e1 = 0; e1 < 2; ++e1) {
					const int qc = c0 + nt * 8 + 2 * t4 + e1;
					const float dl = dlq[qc];
					float l2;
					int qp;
					bwd_query_row(a, chunk, len, qvalid, qt0 + qc, lq[qc],
					              need_mask && a.causal, &l2, &qp);
#pragma unroll
					for (int rr = 0; rr < 2; ++rr) {
						const int e = rr * 2 + e1;
						float p = exp2f(st[nt][e] * sl2 - l2);
						if (need_mask && !(kok[rr] && (!a.causal || kp[rr] <= qp)))
							p = 0.f;
						st[nt][e] = p;
						dp[nt][e] = p * (dp[nt][e] - dl) * a.scale;
					}
				}

			/* dV += P^T dO, dK += dS^T Q; dS^T to shared memory for dQ */
#pragma unroll
			for (int kk = 0; kk < BMS / 16; ++kk) {
				uint32_t pa[4], sa[4];
				pa[0] = pack_bf16(st[2 * kk][0], st[2 * kk][1]);
				pa[1] = pack_bf16(st[2 * kk][2], st[2 * kk][3]);
				pa[2] = pack_bf16(st[2 * kk + 1][0], st[2 * kk + 1][1]);
				pa[3] = pack_bf16(st[2 * kk + 1][2], st[2 * kk + 1][3]);
				sa[0] = pack_bf16(dp[2 * kk][0], dp[2 * kk][1]);
				sa[1] = pack_bf16(dp[2 * kk][2], dp[2 * kk][3]);
				sa[2] = pack_bf16(dp[2 * kk + 1][0], dp[2 * kk + 1][1]);
				sa[3] = pack_bf16(dp[2 * kk + 1][2], dp[2 * kk + 1][3]);
				const int kr = warp * 16 + g;
				const int ck = c0 / 8 + 2 * kk;
				st_shared_u32(sdS + swz<CHS>(kr, ck) + t4 * 4, sa[0]);
				st_shared_u32(sdS + swz<CHS>(kr + 8, ck) + t4 * 4, sa[1]);
				st_shared_u32(sdS + swz<CHS>(kr, ck + 1) + t4 * 4, sa[2]);
				st_shared_u32(sdS + swz<CHS>(kr + 8, ck + 1) + t4 * 4, sa[3]);
#pragma unroll
				for (int dp2 = 0; dp2 < D / 16; ++dp2) {
					uint32_t ob[4], qb[4];
					const uint32_t o2 = offA.at(dp2) + (c0 + kk * 16) * RB;
					ldsm_x4_t(ob, sdOb + o2);
					mma16816(dv[2 * dp2], pa, ob[0], ob[1]);
					mma16816(dv[2 * dp2 + 1], pa, ob[2], ob[3]);
					ldsm_x4_t(qb, sQb + o2);
					mma16816(dk[2 * dp2], sa, qb[0], qb[1]);
					mma16816(dk[2 * dp2 + 1], sa, qb[2], qb[3]);
				}
			}
		}
		__syncthreads();

		/* dQ[BM][w*DW ..] = dS K over the block's BN keys, MQG query m-tiles
		 * at a time (fewer live registers next to dK and dV) */
		constexpr int MQG = BM / 16 >= 2 ? 2 : 1;
#pragma unroll
		for (int mg = 0; mg < BM / 16; mg += MQG) {
			float dq[MQG][DW / 8][4];
#pragma unroll
			for (int mq = 0; mq < MQG; ++mq)
#pragma unroll
				for (int i = 0; i < DW / 8; ++i)
#pragma unroll
					for (int e = 0; e < 4; ++e)
						dq[mq][i][e] = 0.f;
#pragma unroll
			for (int kk = 0; kk < BN / 16; ++kk) {
				uint32_t kb[DW / 16][4];
#pragma unroll
				for (int j = 0; j < DW / 16; ++j)
					ldsm_x4_t(kb[j], sK + kk * 16 * RB +
					                     swz<CH>(lane_row_a(lane),
					                             warp * (DW / 8) + 2 * j +
					                                 lane_hi_a(lane)));
#pragma unroll
				for (int mq = 0; mq < MQG; ++mq) {
					uint32_t aa[4];
					ldsm_x4_t(aa, sdS + kk * 16 * RBS +
					                  swz<CHS>(lane_row_b(lane),
					                           2 * (mg + mq) + lane_hi_b(lane)));
#pragma unroll
					for (int j = 0; j < DW / 16; ++j) {
						mma16816(dq[mq][2 * j], aa, kb[j][0], kb[j][1]);
						mma16816(dq[mq][2 * j + 1], aa, kb[j][2], kb[j][3]);
					}
				}
			}
#pragma unroll
			for (int mq = 0; mq < MQG; ++mq)
#pragma unroll
				for (int rr = 0; rr < 2; ++rr) {
					const int qi = qt0 + (mg + mq) * 16 + g + rr * 8;
					if (qi >= qvalid)
						continue;
					float *dst = a.dq + ((seg.off + qi) * a.heads + h) * D +
					             warp * DW + 2 * t4;
#pragma unroll
					for (int j = 0; j < DW / 8; ++j)
						atomicAdd(reinterpret_cast<float2 *>(dst + j * 8),
						          make_float2(dq[mq][j][rr * 2],
						                      dq[mq][j][rr * 2 + 1]));
				}
		}
		__syncthreads();
	}

	/* every row of the shard's dK/dV gets this hop's contribution */
#pragma unroll
	for (int rr = 0; rr < 2; ++rr) {
		const int kr = k0 + warp * 16 + g + rr * 8;
		if (kr >= len)
			continue;
		const int64_t row = ((seg.off + kr) * a.kv_heads + hk) * D + 2 * t4;
		float2 xk[NDT], xv[NDT];
#pragma unroll
		for (int dt = 0; dt < NDT; ++dt) {
			xk[dt] = make_float2(dk[dt][rr * 2], dk[dt][rr * 2 + 1]);
			xv[dt] = make_float2(dv[dt][rr * 2], dv[dt][rr * 2 + 1]);
		}
		bwd_row_store(a.dk + row, a.dv + row, xk, xv, a.accumulate != 0);
	}
}

template <int D, int NW, int BM> static size_t bwd_smem()
{
	constexpr int BN = 16 * NW;
	return static_cast<size_t>(2 * BN * D * 2 + 4 * BM * D * 2 + BN * BM * 2 + 4 * BM * 4);
}

template <int D, int NW, int BM, int NSUB>
static sl_err launch_bwd(const kern_bwd_args_t *a, int split, cudaStream_t st)
{
	const size_t smem = bwd_smem<D, NW, BM>();
	auto fn = bwd_kernel<D, NW, BM, NSUB>;
	KERN_CUDA(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                               static_cast<int>(smem)));
	dim3 grid(static_cast<unsigned>(a->ntiles) * static_cast<unsigned>(split),
	          static_cast<unsigned>(a->kv_heads));
	fn<<<grid, NW * 32, smem, st>>>(*a, split);
	KERN_LAUNCHED("bwd_kernel");
	return SL_OK;
}

/* A backward variant: mma.sync tiles (bn = 16 nw keys, bm queries; launch)
 * or, with sm90 set, attn_bwd_sm90.cu's kernel (bn = 128 keys) with the
 * options opt (KERN_BWD90_*). */
struct bwd_variant {
	int d, bn, bm;
	int sm90, opt;
	const char *name;
	sl_err (*launch)(const kern_bwd_args_t *, int, cudaStream_t);
};

#define BWD_V(D, NW, BM, NSUB)                                                                     \
	{                                                                                          \
		D, 16 * NW, BM, 0, 0, "d" #D "_n" #NW "x16_m" #BM "s" #NSUB,                      \
		    launch_bwd<D, NW, BM, NSUB>                                                        \
	}
#define BWD_V90(D, BM, S, TAG, OPT)                                                               \
	{                                                                                          \
		D, 128, BM, 1, OPT, "sm90_d" #D "_n128_m" #BM "_s" #S TAG, nullptr                \
	}
/* the sm_90a variants after the first, one per option set (KERN_BWD90_*) */
#define BWD_V90_OPTS(D, BM)                                                                        \
	BWD_V90(D, BM, 2, "_ov", KERN_BWD90_OV), BWD_V90(D, BM, 2, "_v4", KERN_BWD90_V4),         \
	    BWD_V90(D, BM, 2, "_bulk", KERN_BWD90_BULK),                                         \
	    BWD_V90(D, BM, 2, "_ov_v4", KERN_BWD90_OV | KERN_BWD90_V4),                           \
	    BWD_V90(D, BM, 2, "_ov_bulk", KERN_BWD90_OV | KERN_BWD90_BULK),                       \
	    BWD_V90(D, BM, 3, "_ov_v4", KERN_BWD90_S3 | KERN_BWD90_OV | KERN_BWD90_V4),             \
	    BWD_V90(D, BM, 2, "_ov_tmadq", KERN_BWD90_OV | KERN_BWD90_TMADQ),                     \
	    BWD_V90(D, BM, 2, "_ov_tmadq_pre",                                                   \
	            KERN_BWD90_OV | KERN_BWD90_TMADQ | KERN_BWD90_PRE),                           \
	    BWD_V90(D, BM, 2, "_ov_pre", KERN_BWD90_OV | KERN_BWD90_PRE),                         \
	    BWD_V90(D, BM, 2, "_tmadq_pre", KERN_BWD90_TMADQ | KERN_BWD90_PRE)
/* New variants go after a head dim's existing ones: variants are chosen by
 * index (SLUICE_KERN_BWD, kern_bwd_default). */
static const bwd_variant bwd_table[] = {
    BWD_V(64, 4, 64, 1),  BWD_V(64, 4, 128, 2), BWD_V(64, 4, 64, 2),
    BWD_V90(64, 128, 2, "", 0),
    BWD_V90_OPTS(64, 128), /* indices 4-13 */
    BWD_V(128, 4, 32, 1), BWD_V(128, 4, 64, 1), BWD_V(128, 8, 32, 1),
    BWD_V(128, 4, 64, 2), BWD_V(128, 8, 64, 2),
    BWD_V90(128, 64, 2, "", 0),
    BWD_V90_OPTS(128, 64), /* indices 6-15 */
};
#undef BWD_V
#undef BWD_V90
#undef BWD_V90_OPTS
static const int bwd_count = sizeof(bwd_table) / sizeof(bwd_table[0]);

static const bwd_variant *bwd_find(int32_t head_dim, int variant)
{
	int k = 0;
	if (variant < 0)
		variant = kern_bwd_default(head_dim);
	for (int i = 0; i < bwd_count; ++i)
		if (bwd_table[i].d == head_dim && k++ == variant)
			return &bwd_table[i];
	return nullptr;
}

/* The index of the head dim's sm_90a variant with options opt, or -1. */
static int bwd_index_sm90(int32_t head_dim, int opt)
{
	int k = 0;
	for (int i = 0; i < bwd_count; ++i) {
		if (bwd_table[i].d != head_dim)
			continue;
		if (bwd_table[i].sm90 && bwd_table[i].opt == opt)
			return k;
		++k;
	}
	return -1;
}

/* The sm_90a default: dP^T under the exponentials, dQ through shared memory
 * and the producer's tensor reduce-adds, LSE/positions/delta prepared by the
 * producer (H100, 2026-12-07, docs/gpu.md: D = 128 505-585 TFLOP/s against
 * the first sm_90a kernel's 350-363; D = 64 429-462 against 270-285). */
static const int bwd_default_sm90_opt = KERN_BWD90_OV | KERN_BWD90_TMADQ | KERN_BWD90_PRE;

/* The mma.sync default (the fastest measured, docs/gpu.md): d64_n4x16_m64s2,
 * d128_n8x16_m64s2. It also runs the hops an sm_90a variant cannot take, on
 * that variant's 128-key tiles (d64: two 64-key blocks per tile). */
static int bwd_default_mma(int32_t head_dim)
{
	return head_dim == 64 ? 2 : 4;
}

} // namespace kern

extern "C" {

int kern_bwd_variants(int32_t head_dim)
{
	int n = 0;
	for (int i = 0; i < kern::bwd_count; ++i)
		n += kern::bwd_table[i].d == head_dim;
	return n;
}

/* Default: the sm_90a default variant on sm_90 cards (unless
 * SLUICE_KERN_PATH=mma), else the fastest mma.sync variant (H100,
 * 2026-12-07, docs/gpu.md: mma.sync D = 128 231-236 TFLOP/s, D = 64
 * 194-201). */
int kern_bwd_default(int32_t head_dim)
{
	const int mma = kern::bwd_default_mma(head_dim);
	if (!kern_path_mma_only() && kern_device_sm90()) {
		const int v = kern::bwd_index_sm90(head_dim, kern::bwd_default_sm90_opt);
		return v >= 0 ? v : mma;
	}
	return mma;
}

int32_t kern_bwd_block_n(int32_t head_dim, int variant)
{
	const kern::bwd_variant *v = kern::bwd_find(head_dim, variant);
	return v ? v->bn : 0;
}

int kern_bwd_native(int32_t head_dim, int variant)
{
	const kern::bwd_variant *v = kern::bwd_find(head_dim, variant);
	if (v == nullptr)
		return 0;
	/* an sm_90a variant runs where any aligned hop could take it */
	return v->sm90 ? kern_sm90_hop_fits(0, 1, 1, 1) : 1;
}

const char *kern_bwd_name(int32_t head_dim, int variant)
{
	const kern::bwd_variant *v = kern::bwd_find(head_dim, variant);
	return v ? v->name : "none";
}

sl_err kern_attn_bwd(const kern_bwd_args_t *a, int variant, cudaStream_t st)
{
	const kern::bwd_variant *v = kern::bwd_find(a->head_dim, variant);
	if (v == nullptr)
		return sl_seterr(SL_EINVAL, "%s:%d: no backward kernel for head_dim %d variant %d",
		                 __FILE__, __LINE__, a->head_dim, variant);
	if (a->heads <= 0 || a->kv_heads <= 0 || a->heads % a->kv_heads != 0 ||
	    a->kv_heads > 65535)
		return sl_seterr(SL_EINVAL, "%s:%d: heads %d, kv_heads %d (need heads %% kv_heads "
		                 "== 0, kv_heads <= 65535)",
		                 __FILE__, __LINE__, a->heads, a->kv_heads);
	if (a->ntiles == 0)
		return SL_OK;
	if (v->sm90 && kern_sm90_bwd_fits(a))
		return kern_sm90_bwd(a, v->opt, st);
	int split = 1;
	if (v->sm90) {
		/* the mma.sync default on this variant's tiles */
		const kern::bwd_variant *m = kern::bwd_find(a->head_dim,
		                                            kern::bwd_default_mma(a->head_dim));
		if (m == nullptr || v->bn % m->bn != 0)
			return sl_seterr(SL_EINVAL, "%s:%d: no mma.sync fallback for backward variant "
			                 "%s", __FILE__, __LINE__, v->name);
		split = v->bn / m->bn;
		v = m;
	}
	return v->launch(a, split, st);
}

} // extern "C"
