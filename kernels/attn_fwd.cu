/* sluice kernels: forward attention of one ring hop (FlashAttention-2
 * tiling, Dao 2023: each block owns BM query rows of one head and streams
 * the K/V shard in tiles of BN keys through shared memory, cp.async double
 * buffered; each warp owns 16*MT rows; online softmax in fp32 in the exp2
 * domain; P stays in registers as the A operand of P*V).
 *
 * Masking is by global position: a key is seen iff it belongs to the same
 * sequence, kpos < s and (non-causal or kpos <= qpos). Because positions
 * increase inside a shard, a query tile needs the first kern_count_le(...,
 * qpos(last valid row)) keys only, and a key tile needs no per-element mask
 * when all its keys are valid and precede the tile's first query. Rows that
 * see no key (and padding rows, qpos >= s) get O = 0 and LSE = -inf. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>

#include "attn_common.cuh"

namespace kern {

template <int D, int MT, int NW, int BN>
__global__ void __launch_bounds__(NW * 32) fwd_kernel(const kern_fwd_args_t a)
{
	constexpr int NT = NW * 32;
	constexpr int BM = 16 * MT * NW;
	constexpr int CH = D / 8;
	constexpr int RB = D * 2;   /* bytes per tile row */
	constexpr int NKT = BN / 8; /* n8 tiles of S */
	constexpr int NDT = D / 8;  /* n8 tiles of O */
	constexpr uint32_t KV_BYTES = BN * D * 2;
	static_assert(D % 16 == 0 && BN % 16 == 0, "tile shape");

	extern __shared__ __align__(128) uint8_t smem[];
	const uint32_t sQ = smem_u32(smem);
	const uint32_t sK = sQ + BM * D * 2;
	const uint32_t sV = sK + 2 * KV_BYTES;

	const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
	const int g = lane >> 2, t4 = lane & 3;
	const frag_off<CH> offA(lane_row_a(lane), lane_hi_a(lane));
	const frag_off<CH> offB(lane_row_b(lane), lane_hi_b(lane));
	const uint32_t sQw = sQ + warp * 16 * MT * RB;
	const kern_tile_t tile = a.tiles[blockIdx.x];
	const kern_seg_t seg = a.segs[tile.seg];
	const int h = blockIdx.y;
	const int hk = h / (a.heads / a.kv_heads);
	const int q0 = tile.start;
	const int len = seg.len, chunk = seg.chunk;
	int qvalid, kvalid;
	const int kneed = fwd_keys_needed(a, seg, q0, BM, &qvalid, &kvalid);
	const int nk = (kneed + BN - 1) / BN;
	const int qmin = kern_pos(chunk, a.d, a.q_owner, q0);
	const float sl2 = a.scale * 1.4426950408889634f;

	const int64_t qstride = static_cast<int64_t>(a.heads) * D;
	const int64_t kstride = static_cast<int64_t>(a.kv_heads) * D;
	const bf16 *qbase = static_cast<const bf16 *>(a.q);
	const bf16 *kbase = static_cast<const bf16 *>(a.k);
	const bf16 *vbase = static_cast<const bf16 *>(a.v);
	const bf16 *gq = qbase + (seg.off + q0) * qstride + static_cast<int64_t>(h) * D;
	const bf16 *gk = kbase + seg.off * kstride + static_cast<int64_t>(hk) * D;
	const bf16 *gv = vbase + seg.off * kstride + static_cast<int64_t>(hk) * D;

	int qpos[MT][2];
#pragma unroll
	for (int mt = 0; mt < MT; ++mt)
#pragma unroll
		for (int rr = 0; rr < 2; ++rr) {
			const int r = q0 + warp * 16 * MT + mt * 16 + g + rr * 8;
			qpos[mt][rr] = r < len ? kern_pos(chunk, a.d, a.q_owner, r) : INT32_MAX;
		}

	float acc[MT][NDT][4];
	float mrow[MT][2], lrow[MT][2];
#pragma unroll
	for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
		for (int i = 0; i < NDT; ++i)
#pragma unroll
			for (int e = 0; e < 4; ++e)
				acc[mt][i][e] = 0.f;
		mrow[mt][0] = mrow[mt][1] = -INFINITY;
		lrow[mt][0] = lrow[mt][1] = 0.f;
	}

	if (nk > 0) {
		load_tile<BM, D, NT>(sQ, gq, qstride, min(BM, len - q0), qbase, tid);
		load_tile<BN, D, NT>(sK, gk, kstride, min(BN, len), kbase, tid);
		load_tile<BN, D, NT>(sV, gv, kstride, min(BN, len), vbase, tid);
		cp_async_commit();
	}
	for (int j = 0; j < nk; ++j) {
		const int buf = j & 1;
		const int k0 = j * BN;
		if (j + 1 < nk) {
			const int kn = k0 + BN;
			const uint32_t nb = static_cast<uint32_t>(buf ^ 1) * KV_BYTES;
			load_tile<BN, D, NT>(sK + nb, gk + kn * kstride, kstride, min(BN, len - kn),
			                     kbase, tid);
			load_tile<BN, D, NT>(sV + nb, gv + kn * kstride, kstride, min(BN, len - kn),
			                     vbase, tid);
			cp_async_commit();
			cp_async_wait<1>();
		} else {
			cp_async_wait<0>();
		}
		__syncthreads();
		const uint32_t sKb = sK + static_cast<uint32_t>(buf) * KV_BYTES;
		const uint32_t sVb = sV + static_cast<uint32_t>(buf) * KV_BYTES;

		/* S = Q K^T */
		float sc[MT][NKT][4];
#pragma unroll
		for (int mt = 0; mt < MT; ++mt)
#pragma unroll
			for (int i = 0; i < NKT; ++i)
#pragma unroll
				for (int e = 0; e < 4; ++e)
					sc[mt][i][e] = 0.f;
#pragma unroll
		for (int ks = 0; ks < D / 16; ++ks) {
			uint32_t qa[MT][4];
#pragma unroll
			for (int mt = 0; mt < MT; ++mt)
				ldsm_x4(qa[mt], sQw + offA.at(ks) + mt * 16 * RB);
#pragma unroll
			for (int np = 0; np < BN / 16; ++np) {
				uint32_t kb[4];
				ldsm_x4(kb, sKb + offB.at(ks) + np * 16 * RB);
#pragma unroll
				for (int mt = 0; mt < MT; ++mt) {
					mma16816(sc[mt][2 * np], qa[mt], kb[0], kb[1]);
					mma16816(sc[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
				}
			}
		}

		/* scale into the log2 domain and mask */
		const bool need_mask =
		    k0 + BN > kvalid ||
		    (a.causal && kern_pos(chunk, a.d, a.k_owner, k0 + BN - 1) > qmin);
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
					for (int mt = 0; mt < MT; ++mt)
#pragma unroll
						for (int rr = 0; rr < 2; ++rr) {
							const bool seen =
							    kok && (!a.causal || kp <= qpos[mt][rr]);
							float &x = sc[mt][nt][rr * 2 + e1];
							x = seen ? x * sl2 : -INFINITY;
						}
				}
		} else {
#pragma unroll
			for (int mt = 0; mt < MT; ++mt)
#pragma unroll
				for (int nt = 0; nt < NKT; ++nt)
#pragma unroll
					for (int e = 0; e < 4; ++e)
						sc[mt][nt][e] *= sl2;
		}

		/* online softmax: rows g and g+8 of each m tile; a quad shares a row */
#pragma unroll
		for (int mt = 0; mt < MT; ++mt)
#pragma unroll
			for (int rr = 0; rr < 2; ++rr) {
				float mx = -INFINITY;
#pragma unroll
				for (int nt = 0; nt < NKT; ++nt)
					mx = fmaxf(mx, fmaxf(sc[mt][nt][rr * 2],
					                     sc[mt][nt][rr * 2 + 1]));
				mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
				mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
				const float mnew = fmaxf(mrow[mt][rr], mx);
				const float muse = mnew == -INFINITY ? 0.f : mnew;
				const float alpha = exp2f(mrow[mt][rr] - muse);
				mrow[mt][rr] = mnew;
				float sum = 0.f;
#pragma unroll
				for (int nt = 0; nt < NKT; ++nt) {
					const float p0 = exp2f(sc[mt][nt][rr * 2] - muse);
					const float p1 = exp2f(sc[mt][nt][rr * 2 + 1] - muse);
					sc[mt][nt][rr * 2] = p0;
					sc[mt][nt][rr * 2 + 1] = p1;
					sum += p0 + p1;
				}
				lrow[mt][rr] = lrow[mt][rr] * alpha + sum;
#pragma unroll
				for (int dt = 0; dt < NDT; ++dt) {
					acc[mt][dt][rr * 2] *= alpha;
					acc[mt][dt][rr * 2 + 1] *= alpha;
				}
			}

		/* O += P V */
#pragma unroll
		for (int kk = 0; kk < BN / 16; ++kk) {
			uint32_t pa[MT][4];
#pragma unroll
			for (int mt = 0; mt < MT; ++mt) {
				pa[mt][0] = pack_bf16(sc[mt][2 * kk][0], sc[mt][2 * kk][1]);
				pa[mt][1] = pack_bf16(sc[mt][2 * kk][2], sc[mt][2 * kk][3]);
				pa[mt][2] = pack_bf16(sc[mt][2 * kk + 1][0], sc[mt][2 * kk + 1][1]);
				pa[mt][3] = pack_bf16(sc[mt][2 * kk + 1][2], sc[mt][2 * kk + 1][3]);
			}
#pragma unroll
			for (int dp = 0; dp < D / 16; ++dp) {
				uint32_t vb[4];
				ldsm_x4_t(vb, sVb + offA.at(dp) + kk * 16 * RB);
#pragma unroll
				for (int mt = 0; mt < MT; ++mt) {
					mma16816(acc[mt][2 * dp], pa[mt], vb[0], vb[1]);
					mma16816(acc[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
				}
			}
		}
		__syncthreads();
	}

	/* epilogue: normalise, then write or merge */
	fwd_row rows[MT][2];
#pragma unroll
	for (int mt = 0; mt < MT; ++mt)
#pragma unroll
		for (int rr = 0; rr < 2; ++rr) {
			float l = lrow[mt][rr];
			l += __shfl_xor_sync(0xffffffffu, l, 1);
			l += __shfl_xor_sync(0xffffffffu, l, 2);
			const int qi = q0 + warp * 16 * MT + mt * 16 + g + rr * 8;
			rows[mt][rr] = fwd_row_begin(a, seg, h, qi, qvalid, mrow[mt][rr], l);
		}
	__syncwarp();
#pragma unroll
	for (int mt = 0; mt < MT; ++mt)
#pragma unroll
		for (int rr = 0; rr < 2; ++rr)
			fwd_row_store<D>(a, rows[mt][rr], &acc[mt][0][rr * 2], t4);
}

template <int D, int MT, int NW, int BN>
static sl_err launch_fwd(const kern_fwd_args_t *a, cudaStream_t st)
{
	constexpr int BM = 16 * MT * NW;
	const size_t smem = static_cast<size_t>(BM + 4 * BN) * D * 2;
	auto fn = fwd_kernel<D, MT, NW, BN>;
	KERN_CUDA(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                               static_cast<int>(smem)));
	dim3 grid(static_cast<unsigned>(a->ntiles), static_cast<unsigned>(a->heads));
	fn<<<grid, NW * 32, smem, st>>>(*a);
	KERN_LAUNCHED("fwd_kernel");
	return SL_OK;
}

/* A forward variant: mma.sync tiles (mt, nw, bn) or, with sm90 set, one of
 * attn_fwd_sm90.cu's (128 query rows: mt * nw * 16 as well). */
struct fwd_variant {
	int d, mt, nw, bn;
	int sm90;
	const char *name;
	sl_err (*launch)(const kern_fwd_args_t *, cudaStream_t); /* mma.sync only */
	int opt; /* sm90: KERN_FWD90_* */
};

#define FWD_V(D, MT, NW, BN)                                                                       \
	{                                                                                          \
		D, MT, NW, BN, 0, "d" #D "_m" #MT "x" #NW "_n" #BN, launch_fwd<D, MT, NW, BN>, 0   \
	}
/* an sm_90a variant: 128 query rows (2 x 4 warps of 16 for the fallback's
 * tile table), BN-key tiles, KERN_FWD90_* options */
#define FWD_V90(D, BN, TAG, OPT)                                                                   \
	{                                                                                          \
		D, 2, 4, BN, 1, "sm90_d" #D "_m128_n" #BN TAG, nullptr, OPT                        \
	}
static const fwd_variant fwd_table[] = {
    FWD_V(64, 1, 4, 64),  FWD_V(64, 2, 4, 64),  FWD_V(64, 1, 8, 64),  FWD_V(64, 2, 4, 128),
    FWD_V90(64, 128, "_s3", KERN_FWD90_OVERLAP),
    FWD_V90(64, 128, "_s3_pp", KERN_FWD90_OVERLAP | KERN_FWD90_PP),
    FWD_V(128, 1, 4, 64), FWD_V(128, 2, 4, 32), FWD_V(128, 1, 8, 64), FWD_V(128, 2, 4, 64),
    FWD_V90(128, 64, "_s3", KERN_FWD90_OVERLAP),
    FWD_V90(128, 128, "_s2_seq", 0),
    FWD_V90(128, 64, "_s3_pp", KERN_FWD90_OVERLAP | KERN_FWD90_PP),
    FWD_V90(128, 128, "_s2_seq_pp", KERN_FWD90_PP),
    FWD_V90(128, 128, "_s2", KERN_FWD90_OVERLAP),
    FWD_V90(128, 128, "_s2_pp", KERN_FWD90_OVERLAP | KERN_FWD90_PP),
    FWD_V90(128, 176, "_s2_seq_pp", KERN_FWD90_PP),
    FWD_V90(128, 176, "_s2_seq", 0),
};
#undef FWD_V
#undef FWD_V90
static const int fwd_count = sizeof(fwd_table) / sizeof(fwd_table[0]);

/* The index of the mma.sync variant of these tiles among its head dim's,
 * or -1. */
static int fwd_index(int32_t head_dim, int mt, int nw, int bn)
{
	int k = 0;
	for (int i = 0; i < fwd_count; ++i) {
		const fwd_variant &v = fwd_table[i];
		if (v.d != head_dim)
			continue;
		if (!v.sm90 && v.mt == mt && v.nw == nw && v.bn == bn)
			return k;
		++k;
	}
	return -1;
}

static const fwd_variant *fwd_find(int32_t head_dim, int variant)
{
	int k = 0;
	if (variant < 0)
		variant = kern_fwd_default(head_dim);
	for (int i = 0; i < fwd_count; ++i)
		if (fwd_table[i].d == head_dim && k++ == variant)
			return &fwd_table[i];
	return nullptr;
}

/* The mma.sync default (the fastest measured on H100 and H200, docs/gpu.md):
 * also what a hop the sm_90a variant cannot take runs on (same 128 rows). */
static int fwd_default_mma(int32_t head_dim)
{
	return head_dim == 64 ? fwd_index(64, 2, 4, 64) : fwd_index(128, 2, 4, 64);
}

} // namespace kern

extern "C" {

int kern_head_dim_supported(int32_t head_dim)
{
	return head_dim == 64 || head_dim == 128;
}

/* Asked for every hop (the dispatchers' defaults): the answer per device
 * ordinal is kept after the first query (0 unknown, 1 no, 2 yes). */
int kern_device_sm90(void)
{
	static std::atomic<unsigned char> known[64];
	int dev = 0, major = 0;
	if (cudaGetDevice(&dev) != cudaSuccess) {
		(void)cudaGetLastError();
		return 0;
	}
	const bool cache = dev >= 0 && dev < 64;
	const unsigned char k = cache ? known[dev].load(std::memory_order_relaxed) : 0;
	if (k != 0)
		return k == 2;
	if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
		(void)cudaGetLastError();
		return 0;
	}
	if (cache)
		known[dev].store(major == 9 ? 2 : 1, std::memory_order_relaxed);
	return major == 9;
}

int kern_fwd_variants(int32_t head_dim)
{
	int n = 0;
	for (int i = 0; i < kern::fwd_count; ++i)
		n += kern::fwd_table[i].d == head_dim;
	return n;
}

int kern_path_mma_only(void)
{
	const char *path = getenv("SLUICE_KERN_PATH");
	return path != nullptr && strcmp(path, "mma") == 0;
}

/* The index of the named variant among its head dim's, or -1. */
static int fwd_index_named(int32_t head_dim, const char *name)
{
	int k = 0;
	for (int i = 0; i < kern::fwd_count; ++i) {
		if (kern::fwd_table[i].d != head_dim)
			continue;
		if (strcmp(kern::fwd_table[i].name, name) == 0)
			return k;
		++k;
	}
	return -1;
}

/* Default: the fastest sm_90a kernel on sm_90 cards (unless
 * SLUICE_KERN_PATH=mma), else the fastest mma.sync variant. H100,
 * 2026-12-07 (docs/gpu.md, third stop: with the scale in the exponent's FFMA
 * and causal tiles heaviest first), 16K-64K tokens: D = 128 the 176-key
 * ping-pong tiles with the causal mask and without (causal 1.00-1.17x cuDNN,
 * against 0.99-1.10x with 128-key tiles; without the mask the two are within
 * run-to-run spread, 0.97-1.03x); D = 64 the 128-key tiles with the
 * intra-warpgroup overlap and no turns (0.92-0.94x). Every sm_90a variant
 * has 128 query rows, so the choice per hop keeps the tiles callers built;
 * the hop's mask is an argument so a card where the two differ can choose. */
int kern_fwd_default_hop(int32_t head_dim, int causal)
{
	const int mma = kern::fwd_default_mma(head_dim);
	(void)causal; /* the same tile either way on H100 */
	if (!kern_path_mma_only() && kern_device_sm90()) {
		const char *name =
		    head_dim != 128 ? "sm90_d64_m128_n128_s3" : "sm90_d128_m128_n176_s2_seq_pp";
		const int v = fwd_index_named(head_dim, name);
		return v >= 0 ? v : mma;
	}
	return mma;
}

int kern_fwd_default(int32_t head_dim)
{
	return kern_fwd_default_hop(head_dim, 1);
}

int32_t kern_fwd_block_m(int32_t head_dim, int variant)
{
	const kern::fwd_variant *v = kern::fwd_find(head_dim, variant);
	return v ? 16 * v->mt * v->nw : 0;
}

const char *kern_fwd_name(int32_t head_dim, int variant)
{
	const kern::fwd_variant *v = kern::fwd_find(head_dim, variant);
	return v ? v->name : "none";
}

int kern_fwd_native(int32_t head_dim, int variant)
{
	const kern::fwd_variant *v = kern::fwd_find(head_dim, variant);
	if (v == nullptr)
		return 0;
	/* an sm_90a variant runs where any aligned hop could take it */
	return v->sm90 ? kern_sm90_hop_fits(0, 1, 1, 1) : 1;
}

sl_err kern_attn_fwd(const kern_fwd_args_t *a, int variant, cudaStream_t st)
{
	if (variant < 0)
		variant = kern_fwd_default_hop(a->head_dim, a->causal);
	const kern::fwd_variant *v = kern::fwd_find(a->head_dim, variant);
	if (v == nullptr)
		return sl_seterr(SL_EINVAL, "%s:%d: no forward kernel for head_dim %d variant %d",
		                 __FILE__, __LINE__, a->head_dim, variant);
	if (a->heads <= 0 || a->kv_heads <= 0 || a->heads % a->kv_heads != 0 ||
	    a->heads > 65535)
		return sl_seterr(SL_EINVAL, "%s:%d: heads %d, kv_heads %d (need heads %% kv_heads "
		                 "== 0, heads <= 65535)",
		                 __FILE__, __LINE__, a->heads, a->kv_heads);
	if (a->mode < KERN_FWD_OUT || a->mode > KERN_FWD_FINAL)
		return sl_seterr(SL_EINVAL, "%s:%d: forward mode %d", __FILE__, __LINE__, a->mode);
	if (a->ntiles == 0)
		return SL_OK;
	if (v->sm90 && !kern_sm90_fwd_fits(a))
		v = kern::fwd_find(a->head_dim, kern::fwd_default_mma(a->head_dim));
	return v->sm90 ? kern_sm90_fwd(a, v->bn, v->opt, st) : v->launch(a, st);
}

} // extern "C"
