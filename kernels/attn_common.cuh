/* sluice kernels: device helpers shared by the attention kernels (sm_80+
 * instructions: cp.async, ldmatrix, mma.sync m16n8k16 bf16 -> fp32).
 *
 * Fragment layouts are the PTX ISA's for mma.m16n8k16 (.bf16): with
 * g = lane / 4 and t = lane % 4,
 *   A (16x16, row): a0 (g, 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)  a3 (g+8, 2t+8..)
 *   B (16x8, col):  b0 (k 2t..2t+1, n g)  b1 (k 2t+8.., n g)
 *   C (16x8, f32):  c0,c1 (g, 2t..2t+1)   c2,c3 (g+8, 2t..2t+1)
 * so a C tile pair (n 0..7, 8..15) converted to bf16 is directly an A
 * fragment over k = 0..15 (FlashAttention-2 keeps P in registers this way).
 *
 * Shared-memory tiles are rows of CH 16-byte chunks; chunk c of row r is
 * stored at chunk c ^ f(r), so the 8 rows an ldmatrix phase reads at one
 * logical chunk fall in 8 different bank groups (no conflicts). */
#ifndef SLUICE_ATTN_COMMON_CUH
#define SLUICE_ATTN_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kern.h"
#include "kern_math.h"

namespace kern {

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ uint32_t smem_u32(const void *p)
{
	return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/* Byte offset of (row r, chunk c) in a swizzled tile of CH chunks per row. */
template <int CH> __device__ __forceinline__ uint32_t swz(int r, int c)
{
	static_assert(CH == 2 || CH == 4 || CH == 8 || CH == 16, "chunks per row");
	int pc;
	if constexpr (CH >= 8)
		pc = c ^ (r & 7);
	else if constexpr (CH == 4)
		pc = c ^ ((r >> 1) & 3);
	else
		pc = c ^ ((r >> 2) & 1);
	return static_cast<uint32_t>(r * CH + pc) * 16u;
}

/* 16-byte asynchronous copy; with valid == false the destination is zero
 * filled and nothing is read. */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid)
{
	int sz = valid ? 16 : 0;
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
	             "r"(sz)
	             : "memory");
}
/* 4-byte asynchronous copy (.ca), zero fill when !valid. */
__device__ __forceinline__ void cp_async4(uint32_t dst, const void *src, bool valid)
{
	int sz = valid ? 4 : 0;
	asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
	             "r"(sz)
	             : "memory");
}
__device__ __forceinline__ void cp_async_commit()
{
	asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void cp_async_wait()
{
	asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], uint32_t addr)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(addr));
}

/* c += a * b (m16n8k16, bf16 in, fp32 accumulate). */
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
	             "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
	             : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
	             : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats as a bf16 pair, lo in the low half (the lower column). */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
	__nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
	return *reinterpret_cast<uint32_t *>(&v);
}

__device__ __forceinline__ void st_shared_u32(uint32_t addr, uint32_t v)
{
	asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}

__device__ __forceinline__ void st_shared_f32x2(uint32_t addr, float x, float y)
{
	asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(addr), "f"(x), "f"(y) : "memory");
}

/* Loads rows [0, ROWS) x D bf16 of a row-major global matrix (row stride in
 * elements) into a swizzled tile; rows >= rows_valid are zero filled. Each
 * thread keeps one chunk column and steps RS rows at a time (RS a multiple of
 * 8, so its swizzled chunk never changes and the shared addresses are
 * immediates: few registers). */
template <int ROWS, int D, int NT>
__device__ __forceinline__ void load_tile(uint32_t sbase, const bf16 *g, int64_t stride,
                                          int rows_valid, const bf16 *any_valid, int tid)
{
	constexpr int CH = D / 8;
	constexpr int RS = NT / CH;
	static_assert(NT % CH == 0 && RS % 8 == 0 && ROWS % RS == 0, "tile loader shape");
	const int r0 = tid / CH, c = tid % CH;
	const uint32_t s0 = sbase + swz<CH>(r0, c);
	const bf16 *src = g + static_cast<int64_t>(r0) * stride + c * 8;
#pragma unroll
	for (int it = 0; it < ROWS / RS; ++it) {
		const bool ok = r0 + it * RS < rows_valid;
		cp_async16(s0 + it * RS * CH * 16, ok ? src : any_valid, ok);
		src += RS * stride;
	}
}

/* Byte offsets of one lane's ldmatrix row inside a swizzled tile of CH >= 8
 * chunks per row, for logical chunks 2i + hi (i = 0..3); chunk 2ks + hi is
 * at(ks), chunk 8k + ... adds 128k bytes, and rows further down by a multiple
 * of 8 add row * CH * 16 bytes (an immediate). Four registers instead of one
 * per (k step, tile) pair. */
template <int CH> struct frag_off {
	uint32_t o[4];
	__device__ __forceinline__ frag_off(int row, int hi)
	{
		static_assert(CH >= 8, "frag_off needs 8+ chunks per row");
#pragma unroll
		for (int i = 0; i < 4; ++i)
			o[i] = static_cast<uint32_t>(row * CH * 16 + (((2 * i + hi) ^ (row & 7)) * 16));
	}
	__device__ __forceinline__ uint32_t at(int ks) const
	{
		return o[ks & 3] + static_cast<uint32_t>(ks >> 2) * 128u;
	}
};

/* ldmatrix lane roles. A operand (16x16, row-major tile): lane l addresses
 * row (l & 7) + ((l >> 3) & 1) * 8, chunk half l >> 4. B operand from a
 * [n][k] tile (non-transposed): row (l & 7) + (l >> 4) * 8, chunk half
 * (l >> 3) & 1. The transposed B operand from a [k][n] tile uses the A roles. */
__device__ __forceinline__ int lane_row_a(int lane)
{
	return (lane & 7) + ((lane >> 3) & 1) * 8;
}
__device__ __forceinline__ int lane_hi_a(int lane)
{
	return lane >> 4;
}
__device__ __forceinline__ int lane_row_b(int lane)
{
	return (lane & 7) + (lane >> 4) * 8;
}
__device__ __forceinline__ int lane_hi_b(int lane)
{
	return (lane >> 3) & 1;
}

/* What a forward tile of bm query rows starting at local row q0 needs:
 * qvalid / kvalid are the shard's non-padding query / key rows, and the
 * result is the number of leading keys any of the tile's valid queries sees
 * (positions increase along a shard, so these are keys [0, result)). */
__device__ __forceinline__ int fwd_keys_needed(const kern_fwd_args_t &a, const kern_seg_t &seg,
                                               int q0, int bm, int *qvalid, int *kvalid)
{
	const int len = seg.len, chunk = seg.chunk;
	const int s = static_cast<int>(seg.seqlen);
	*qvalid = kern_count_le(chunk, a.d, a.q_owner, len, s - 1);
	*kvalid = kern_count_le(chunk, a.d, a.k_owner, len, s - 1);
	const int qv_tile = min(max(*qvalid - q0, 0), bm);
	if (qv_tile <= 0)
		return 0;
	int kneed = *kvalid;
	if (a.causal)
		kneed = min(kneed, kern_count_le(chunk, a.d, a.k_owner, len,
		                                 kern_pos(chunk, a.d, a.q_owner, q0 + qv_tile - 1)));
	return kneed;
}

/* The backward's counterpart: for a key tile of at most bn keys starting at
 * local key row k0, the shard's non-padding query / key rows (*qvalid,
 * *kvalid), the tile's real keys (*kv_tile) and the query tiles [*i0, *i1)
 * of bm rows that can see one of them (none when the tile has no real key
 * or, causal, every real query precedes its first key). */
__device__ __forceinline__ void bwd_query_tiles(const kern_bwd_args_t &a, const kern_seg_t &seg,
                                                int k0, int bn, int bm, int *qvalid,
                                                int *kvalid, int *kv_tile, int *i0, int *i1)
{
	const int len = seg.len, chunk = seg.chunk;
	const int s = static_cast<int>(seg.seqlen);
	*qvalid = kern_count_le(chunk, a.d, a.q_owner, len, s - 1);
	*kvalid = kern_count_le(chunk, a.d, a.k_owner, len, s - 1);
	*kv_tile = min(max(*kvalid - k0, 0), bn);
	*i0 = *i1 = 0;
	if (*kv_tile <= 0)
		return;
	const int qstart = a.causal ? kern_count_le(chunk, a.d, a.q_owner, len,
	                                            kern_pos(chunk, a.d, a.k_owner, k0) - 1)
	                            : 0;
	if (qstart < *qvalid) {
		*i0 = qstart / bm;
		*i1 = (*qvalid + bm - 1) / bm;
	}
}

/* A backward query row's LSE in the log2 domain (INFINITY for padding rows
 * and rows that saw no key, so their P is 0) and, when want_pos, its global
 * position (INT32_MAX past the shard; 0 otherwise). */
__device__ __forceinline__ void bwd_query_row(const kern_bwd_args_t &a, int chunk, int len,
                                              int qvalid, int row, float lraw, bool want_pos,
                                              float *l2, int *qp)
{
	*l2 = row < qvalid && lraw != -INFINITY ? lraw * 1.4426950408889634f : INFINITY;
	*qp = 0;
	if (want_pos)
		*qp = row < len ? kern_pos(chunk, a.d, a.q_owner, row) : INT32_MAX;
}

/* The forward epilogue of one query row, in two steps so that a quad's
 * lanes all read the old LSE (merge modes) before lane t4 == 0 overwrites
 * it: fwd_row_begin, __syncwarp, fwd_row_store. m is the row's running max
 * (log2 domain), l its quad-reduced sum. */
struct fwd_row {
	float inv, lse_b, lse_a;
	bool inseg;
	int64_t row; /* (token, head) index */
};

__device__ __forceinline__ fwd_row fwd_row_begin(const kern_fwd_args_t &a, const kern_seg_t &seg,
                                                 int h, int qi, int qvalid, float m, float l)
{
	const float LN2 = 0.6931471805599453f;
	fwd_row r;
	const bool ok = qi < qvalid && l > 0.f;
	r.inv = ok ? 1.f / l : 0.f;
	r.lse_b = ok ? (m + __log2f(l)) * LN2 : -INFINITY;
	r.inseg = qi < seg.len;
	r.row = (seg.off + qi) * a.heads + h;
	r.lse_a = -INFINITY;
	if (r.inseg && (a.mode == KERN_FWD_MERGE || a.mode == KERN_FWD_FINAL))
		r.lse_a = a.lse[r.row];
	return r;
}

/* Writes (or merges, worker/backend.h's stable LSE merge: kern_merge_weight)
 * the row's LSE and its D outputs; acc[4 * dt + e] (e = 0, 1) is column
 * 8 * dt + 2 * t4 + e, un-normalised. */
template <int D>
__device__ __forceinline__ void fwd_row_store(const kern_fwd_args_t &a, const fwd_row &r,
                                              const float *acc, int t4)
{
	if (!r.inseg)
		return;
	const bool merge = a.mode == KERN_FWD_MERGE || a.mode == KERN_FWD_FINAL;
	float lnew = r.lse_b, w = 1.f;
	if (merge)
		w = kern_merge_weight(r.lse_a, r.lse_b, &lnew);
	if (t4 == 0)
		a.lse[r.row] = lnew;
	float *oa = a.oacc + r.row * D;
	bf16 *o = static_cast<bf16 *>(a.o) + r.row * D;
	/* merge: every old pair loaded first, so the loads are in flight
	 * together. Interleaved with the stores (which may alias them) each
	 * waited for the previous store: one memory round trip per pair made a
	 * ring's merging hops 6x its first (H100, 2026-12-07, docs/gpu.md). */
	float2 old[D / 8];
	if (merge) {
#pragma unroll
		for (int dt = 0; dt < D / 8; ++dt)
			old[dt] = *reinterpret_cast<const float2 *>(oa + dt * 8 + 2 * t4);
	}
#pragma unroll
	for (int dt = 0; dt < D / 8; ++dt) {
		const int c = dt * 8 + 2 * t4;
		float x0 = acc[4 * dt] * r.inv;
		float x1 = acc[4 * dt + 1] * r.inv;
		if (merge) {
			x0 = old[dt].x - w * (old[dt].x - x0);
			x1 = old[dt].y - w * (old[dt].y - x1);
		}
		if (a.mode == KERN_FWD_INIT || a.mode == KERN_FWD_MERGE)
			*reinterpret_cast<float2 *>(oa + c) = make_float2(x0, x1);
		else
			*reinterpret_cast<__nv_bfloat162 *>(o + c) = __floats2bfloat162_rn(x0, x1);
	}
}

/* A thread's part of one dK and one dV row of a backward hop: the NDT
 * column pairs xk[dt], xv[dt] at pk + 8 dt, pv + 8 dt, stored, or with
 * accumulate added to what is there. The old pairs are all loaded first
 * (in flight together); loaded next to the stores, which may alias them,
 * each load waited for the previous store (as fwd_row_store's merge). */
template <int NDT>
__device__ __forceinline__ void bwd_row_store(float *pk, float *pv, float2 (&xk)[NDT],
                                              float2 (&xv)[NDT], bool accumulate)
{
	if (accumulate) {
		float2 ok[NDT], ov[NDT];
#pragma unroll
		for (int dt = 0; dt < NDT; ++dt) {
			ok[dt] = *reinterpret_cast<const float2 *>(pk + 8 * dt);
			ov[dt] = *reinterpret_cast<const float2 *>(pv + 8 * dt);
		}
#pragma unroll
		for (int dt = 0; dt < NDT; ++dt) {
			xk[dt].x += ok[dt].x;
			xk[dt].y += ok[dt].y;
			xv[dt].x += ov[dt].x;
			xv[dt].y += ov[dt].y;
		}
	}
#pragma unroll
	for (int dt = 0; dt < NDT; ++dt) {
		*reinterpret_cast<float2 *>(pk + 8 * dt) = xk[dt];
		*reinterpret_cast<float2 *>(pv + 8 * dt) = xv[dt];
	}
}

} // namespace kern

#endif
