/* sluice kernels: device helpers of the sm_90a (Hopper) attention kernels.
 *
 * The FlashAttention-3 design (Shah et al., 2024, sections 3.1-3.2): the
 * tensor memory accelerator (TMA) copies Q/K/V tiles into shared memory and
 * signals an mbarrier with the bytes it wrote; warpgroup MMAs (wgmma) read
 * their B operand (and the A operand of S = Q K^T) straight from shared
 * memory through 64-bit matrix descriptors and keep the accumulators in
 * registers; a producer warpgroup issues the copies while consumer
 * warpgroups compute.
 *
 * Shared-memory tiles are the TMA's 128-byte swizzle (CU_TENSOR_MAP_SWIZZLE_
 * 128B): a tile of R rows x 64 bf16 columns is R rows of 128 bytes in which
 * 16-byte chunk c of row r sits at chunk c ^ (r % 8); wider rows are split
 * into such 64-column slabs, one after the other. Every tile starts on a
 * 1024-byte boundary, so the swizzle phase is the address's own bits and the
 * descriptors' base offset is 0. This is wgmma's canonical "128B swizzle"
 * layout (PTX ISA, "Shared Memory Matrix Layout"): K-major for Q and K (the
 * contraction runs along the row), MN-major for V in O += P V (the
 * contraction runs down the rows).
 *
 * Every mbarrier wait is bounded: a wait that has not completed after
 * KERN_SM90_WAIT_NS of the GPU's global timer traps, so a broken pipeline
 * ends the launch with an error instead of hanging the device. */
#ifndef SLUICE_ATTN_SM90_CUH
#define SLUICE_ATTN_SM90_CUH

#include <cuda.h> /* CUtensorMap (types only: libcuda is not linked) */
#include <stdint.h>

#include "attn_common.cuh"

/* 20 s: far beyond any legitimate wait (a tile's copy takes microseconds). */
#define KERN_SM90_WAIT_NS 20000000000ull

namespace kern {
namespace sm90 {

/* ------------------------------------------------------------ mbarrier --- */

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count)
{
	asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count)
	             : "memory");
}

/* Makes the initialised barriers visible to the async (TMA) proxy. */
__device__ __forceinline__ void mbar_fence_init()
{
	asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

/* One arrival that also announces `bytes` more of transaction (the TMA
 * copies that will complete them). */
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes)
{
	asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar),
	             "r"(bytes)
	             : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint32_t bar)
{
	asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

__device__ __forceinline__ bool mbar_try_wait(uint32_t bar, uint32_t parity)
{
	uint32_t done;
	asm volatile("{\n.reg .pred p;\n"
	             "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
	             "selp.u32 %0, 1, 0, p;\n}\n"
	             : "=r"(done)
	             : "r"(bar), "r"(parity)
	             : "memory");
	return done != 0;
}

__device__ __forceinline__ uint64_t global_ns()
{
	uint64_t t;
	asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
	return t;
}

/* Ends the launch with an error (trap). A call, never inlined: a trap
 * instruction anywhere in the kernel's own code after setmaxnreg.inc makes
 * ptxas (CUDA 13.0) ignore the raised budget there and allocate the
 * consumers at the launch's 65536 / threads registers (168 for 384 threads:
 * the backward spilled 856 bytes and serialised its wgmmas, C7512); a trap
 * in a called function does not. */
[[noreturn]] static __device__ __noinline__ void wait_timed_out()
{
	__trap();
}

/* Waits for the phase of parity `parity` of the barrier to complete; traps
 * (the launch fails with an error) after KERN_SM90_WAIT_NS. */
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity)
{
	if (mbar_try_wait(bar, parity))
		return;
	const uint64_t t0 = global_ns();
	while (!mbar_try_wait(bar, parity))
		if (global_ns() - t0 > KERN_SM90_WAIT_NS)
			wait_timed_out();
}

/* ----------------------------------------------------------------- TMA --- */

/* Copies the box at coordinates (c0, c1, c2) of a 3-d tensor map into
 * shared memory at dst; completion is signalled on bar as transaction bytes. */
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap *map, uint32_t bar,
                                            int32_t c0, int32_t c1, int32_t c2)
{
	asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
	             " [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
	             "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
	             : "memory");
}

__device__ __forceinline__ void tma_prefetch_desc(const CUtensorMap *map)
{
	asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map))
	             : "memory");
}

/* Bulk reduce-add (PTX cp.reduce.async.bulk, sm_90): adds `bytes` (a
 * multiple of 16) of fp32 at shared address src element-wise into global
 * memory at dst (16-byte aligned), asynchronously; atomic per element, like
 * red.global.add. Tracked in the issuing thread's bulk groups: commit, then
 * wait before the source is overwritten (read) or the sums are needed (all).
 * Write the source with st.shared, then fence_proxy_async() and a barrier
 * of the writers before the issuing thread's call. */
__device__ __forceinline__ void bulk_reduce_add_f32(float *dst, uint32_t src, uint32_t bytes)
{
	asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n"
	             :: "l"(dst), "r"(src), "r"(bytes)
	             : "memory");
}
/* Tensor reduce-add (PTX cp.reduce.async.bulk.tensor, sm_90): adds the box
 * at coordinates (c0, c1, c2) of a 3-d fp32 tensor map, laid out in shared
 * memory at src as the map's swizzle places it (1024-byte aligned for
 * 128B), element-wise into global memory; atomic per element; elements
 * outside the tensor are skipped. Tracked like bulk_reduce_add_f32. */
__device__ __forceinline__ void tma_reduce_add_3d(const CUtensorMap *map, uint32_t src,
                                                  int32_t c0, int32_t c1, int32_t c2)
{
	asm volatile("cp.reduce.async.bulk.tensor.3d.global.shared::cta.add.tile.bulk_group"
	             " [%0, {%2, %3, %4}], [%1];\n" ::"l"(reinterpret_cast<uint64_t>(map)),
	             "r"(src), "r"(c0), "r"(c1), "r"(c2)
	             : "memory");
}
__device__ __forceinline__ void bulk_commit()
{
	asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}
/* Waits until this thread's committed bulk operations have read their
 * shared-memory sources. */
__device__ __forceinline__ void bulk_wait_read()
{
	asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}
/* Waits until this thread's committed bulk operations are complete. */
__device__ __forceinline__ void bulk_wait_all()
{
	asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
}

/* ------------------------------------------------ warpgroup registers --- */

/* setmaxnreg (FlashAttention-3, section 3.1): the producer warpgroup gives
 * registers back so the consumers can hold S, P and O. */
template <int N> __device__ __forceinline__ void regs_dealloc()
{
	asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N> __device__ __forceinline__ void regs_alloc()
{
	asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

/* --------------------------------------------------------------- wgmma --- */

/* Descriptor of a 128B-swizzled operand at shared address addr: lbo is the
 * byte distance between 64-column slabs along M/N of an MN-major operand
 * (unused for K-major), sbo the distance between 8-row groups (1024). */
__device__ __forceinline__ uint64_t desc_sw128(uint32_t addr, uint32_t lbo, uint32_t sbo)
{
	return static_cast<uint64_t>((addr & 0x3ffffu) >> 4) |
	       (static_cast<uint64_t>((lbo >> 4) & 0x3fffu) << 16) |
	       (static_cast<uint64_t>((sbo >> 4) & 0x3fffu) << 32) | (1ull << 62);
}

/* x, opaque to the optimiser: a per-tile descriptor made from it is not
 * hoisted out of the tile loop as one 64-bit register per (stage, k step),
 * which would crowd out the accumulators. */
__device__ __forceinline__ uint64_t opaque(uint64_t x)
{
	asm volatile("" : "+l"(x));
	return x;
}

/* Orders register writes before the wgmmas that read them (and the
 * accumulators' earlier reads before the wgmmas that write them). */
__device__ __forceinline__ void wg_fence()
{
	asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wg_commit()
{
	asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
/* Waits until at most N committed groups are still running. */
template <int N> __device__ __forceinline__ void wg_wait()
{
	asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

/* Makes this thread's generic-proxy writes to shared memory (st.shared)
 * visible to the async proxy (wgmma operands read through descriptors);
 * follow it with a barrier before the wgmma of another thread reads them. */
__device__ __forceinline__ void fence_proxy_async()
{
	asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/* Named barrier `id` (1..15; 0 is __syncthreads') over `count` threads, a
 * multiple of 32: the consumer warpgroups' own barrier (the producer does
 * not take part). */
__device__ __forceinline__ void named_bar_sync(int id, int count)
{
	asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

/* Arrives on named barrier id without waiting (the other side syncs). */
__device__ __forceinline__ void named_bar_arrive(int id, int count)
{
	asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

/* Pins registers an asynchronous wgmma reads or writes across the code
 * between its issue and its wait: the compiler may neither move the values
 * nor reuse the registers before this point. */
template <int N> __device__ __forceinline__ void pin(float (&r)[N])
{
#pragma unroll
	for (int i = 0; i < N; ++i)
		asm volatile("" : "+f"(r[i])::"memory");
}
template <int N> __device__ __forceinline__ void pin(uint32_t (&r)[N][4])
{
#pragma unroll
	for (int i = 0; i < N; ++i)
#pragma unroll
		for (int e = 0; e < 4; ++e)
			asm volatile("" : "+r"(r[i][e])::"memory");
}

/* The wrappers below are generated (one per shape; all operands bf16, fp32
 * accumulators): wgmma_ss_nN for S = Q K^T with both operands in shared
 * memory, wgmma_rs_nN_tb for O += P V with P in registers and V MN-major.
 * Accumulator d[i] of a thread is (row 16 * warp + g + 8 * ((i >> 1) & 1),
 * column 8 * (i >> 2) + 2 * t + (i & 1)) with g = lane / 4, t = lane % 4 --
 * mma.sync's m16n8 C layout repeated along N; the A fragment is mma.sync's
 * m16k16 one (attn_common.cuh). */

/* d (64 x 64, fp32) = A (smem) * B (smem) + (accumulate ? d : 0); both
 * operands K-major, or with TA / TB = 1 that operand MN-major (PTX
 * imm-trans-a / imm-trans-b, allowed for .bf16): the backward's dQ = dS K
 * takes both transposed, dS stored as dS^T [keys][queries] and K as
 * [keys][D]. */
template <int TA = 0, int TB = 0>
__device__ __forceinline__ void wgmma_ss_n64(float (&d)[32], uint64_t da, uint64_t db,
                                             int accumulate)
{
	static_assert((TA == 0 || TA == 1) && (TB == 0 || TB == 1), "transpose flags");
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
	             "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
	             "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15"
	             ",%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p, 1, 1, %35, %36;\n}\n"
	             : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
	             "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
	             "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
	             "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),
	             "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]),
	             "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
	             : "l"(da), "l"(db), "r"(accumulate), "n"(TA), "n"(TB));
}

/* d (64 x 64, fp32) += A (registers: the m64k16 fragment) * B (smem, MN-major). */
__device__ __forceinline__ void wgmma_rs_n64_tb(float (&d)[32], const uint32_t (&a)[4],
                                                 uint64_t db)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
	             "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
	             "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15"
	             ",%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n}\n"
	             : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
	             "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
	             "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
	             "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),
	             "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]),
	             "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
	             : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

/* d (64 x 128, fp32) = A (smem, K-major) * B (smem, K-major) + (accumulate ? d : 0). */
__device__ __forceinline__ void wgmma_ss_n128(float (&d)[64], uint64_t da, uint64_t db,
                                              int accumulate)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
	             "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
	             "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15"
	             ",%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
	             ",%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47"
	             ",%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
	             : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
	             "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
	             "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
	             "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),
	             "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]),
	             "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
	             "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]),
	             "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
	             "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]),
	             "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]),
	             "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
	             "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]),
	             "+f"(d[62]), "+f"(d[63])
	             : "l"(da), "l"(db), "r"(accumulate));
}

/* d (64 x 128, fp32) += A (registers: the m64k16 fragment) * B (smem, MN-major). */
__device__ __forceinline__ void wgmma_rs_n128_tb(float (&d)[64], const uint32_t (&a)[4],
                                                 uint64_t db)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
	             "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
	             "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15"
	             ",%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
	             ",%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47"
	             ",%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, {%64,%65,%66,%67}, %68, p, 1, 1, 1;\n}\n"
	             : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
	             "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
	             "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
	             "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),
	             "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]),
	             "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
	             "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]),
	             "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
	             "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]),
	             "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]),
	             "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
	             "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]),
	             "+f"(d[62]), "+f"(d[63])
	             : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

/* The 8 accumulator operands d[b .. b + 7] of an asm statement: wgmma_ss_n176's
 * list, written as 11 of these rather than 88 constraints by hand. */
#define SL_WG_D8(b)                                                                                \
	"+f"(d[(b)]), "+f"(d[(b) + 1]), "+f"(d[(b) + 2]), "+f"(d[(b) + 3]), "+f"(d[(b) + 4]),      \
	    "+f"(d[(b) + 5]), "+f"(d[(b) + 6]), "+f"(d[(b) + 7])

/* d (64 x 176, fp32) = A (smem, K-major) * B (smem, K-major) + (accumulate ? d : 0):
 * FlashAttention-3's 176-key tile of S = Q K^T at D = 128. */
__device__ __forceinline__ void wgmma_ss_n176(float (&d)[88], uint64_t da, uint64_t db,
                                              int accumulate)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %90, 0;\n"
	             "wgmma.mma_async.sync.aligned.m64n176k16.f32.bf16.bf16 "
	             "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15"
	             ",%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
	             ",%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47"
	             ",%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63"
	             ",%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79"
	             ",%80,%81,%82,%83,%84,%85,%86,%87}, %88, %89, p, 1, 1, 0, 0;\n}\n"
	             : SL_WG_D8(0), SL_WG_D8(8), SL_WG_D8(16), SL_WG_D8(24), SL_WG_D8(32),
	               SL_WG_D8(40), SL_WG_D8(48), SL_WG_D8(56), SL_WG_D8(64), SL_WG_D8(72),
	               SL_WG_D8(80)
	             : "l"(da), "l"(db), "r"(accumulate));
}
#undef SL_WG_D8

/* Shape dispatch of the wrappers above. */
template <int N> __device__ __forceinline__ void wgmma_ss(float (&d)[N / 2], uint64_t da,
                                                          uint64_t db, int accumulate)
{
	static_assert(N == 64 || N == 128 || N == 176, "wgmma_ss shape");
	if constexpr (N == 64)
		wgmma_ss_n64(d, da, db, accumulate);
	else if constexpr (N == 128)
		wgmma_ss_n128(d, da, db, accumulate);
	else
		wgmma_ss_n176(d, da, db, accumulate);
}

/* acc = A B^T contracted over D columns, A and B K-major 128B-swizzled
 * tiles at descriptors da / db whose 64-column slabs lie a_slab / b_slab
 * bytes apart: D / 16 wgmmas of k16 (a k step is 32 bytes inside a slab),
 * the first overwriting acc. Issued, not committed. */
template <int N, int D>
__device__ __forceinline__ void wgmma_ss_kmajor(float (&acc)[N / 2], uint64_t da, uint64_t db,
                                                uint32_t a_slab, uint32_t b_slab)
{
#pragma unroll
	for (int ks = 0; ks < D / 16; ++ks) {
		const uint32_t ao = (ks >> 2) * a_slab + (ks & 3) * 32;
		const uint32_t bo = (ks >> 2) * b_slab + (ks & 3) * 32;
		wgmma_ss<N>(acc, da + (ao >> 4), db + (bo >> 4), ks > 0);
	}
}
template <int N> __device__ __forceinline__ void wgmma_rs_tb(float (&d)[N / 2],
                                                             const uint32_t (&a)[4], uint64_t db)
{
	static_assert(N == 64 || N == 128, "wgmma_rs_tb shape");
	if constexpr (N == 64)
		wgmma_rs_n64_tb(d, a, db);
	else
		wgmma_rs_n128_tb(d, a, db);
}

/* A tensor map of a bf16 [ntok][heads][D] tensor whose boxes are `rows`
 * tokens x 64 columns of one head, 128B-swizzled in shared memory
 * (attn_fwd_sm90.cu; host code); make_map_f32: of an fp32 one, boxes of
 * `rows` tokens x 32 columns (128 bytes), for tma_reduce_add_3d. */
sl_err make_map(CUtensorMap *m, const void *ptr, int D, int heads, int64_t ntok, int rows);
sl_err make_map_f32(CUtensorMap *m, const void *ptr, int D, int heads, int64_t ntok, int rows);

} // namespace sm90
} // namespace kern

#endif
