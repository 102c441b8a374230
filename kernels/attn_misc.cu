/* sluice kernels: small element-wise kernels around the attention hops. */
#include "attn_common.cuh"

namespace kern {

/* One warp per row: delta = sum_d dO * O in fp32. */
__global__ void delta_kernel(const bf16 *__restrict__ o, const bf16 *__restrict__ dout,
                             float *__restrict__ delta, int64_t rows, int d)
{
	const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
	const int lane = threadIdx.x & 31;
	if (row >= rows)
		return;
	const __nv_bfloat162 *po = reinterpret_cast<const __nv_bfloat162 *>(o + row * d);
	const __nv_bfloat162 *pd = reinterpret_cast<const __nv_bfloat162 *>(dout + row * d);
	float sum = 0.f;
	for (int i = lane; i < d / 2; i += 32) {
		const float2 a = __bfloat1622float2(po[i]);
		const float2 b = __bfloat1622float2(pd[i]);
		sum += a.x * b.x + a.y * b.y;
	}
#pragma unroll
	for (int m = 16; m > 0; m >>= 1)
		sum += __shfl_xor_sync(0xffffffffu, sum, m);
	if (lane == 0)
		delta[row] = sum;
}

__global__ void add_kernel(float *__restrict__ dst, const float *__restrict__ src, int64_t n)
{
	const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
	int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
	if ((n & 3) == 0) {
		float4 *d4 = reinterpret_cast<float4 *>(dst);
		const float4 *s4 = reinterpret_cast<const float4 *>(src);
		for (; i < n / 4; i += stride) {
			float4 a = d4[i];
			const float4 b = s4[i];
			a.x += b.x;
			a.y += b.y;
			a.z += b.z;
			a.w += b.w;
			d4[i] = a;
		}
	} else {
		for (; i < n; i += stride)
			dst[i] += src[i];
	}
}

/* splitmix64 of (seed, index): independent of the launch shape. */
__global__ void fill_kernel(bf16 *dst, int64_t n, uint64_t seed, float amp)
{
	const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
	for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
	     i += stride) {
		uint64_t z = seed + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(i + 1);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
		dst[i] = __float2bfloat16((2.f * u - 1.f) * amp);
	}
}

static unsigned grid_for(int64_t n, int threads)
{
	int64_t b = (n + threads - 1) / threads;
	if (b > 65536)
		b = 65536;
	return static_cast<unsigned>(b < 1 ? 1 : b);
}

} // namespace kern

extern "C" {

sl_err kern_attn_delta(const void *o, const void *dout, float *delta, int64_t rows,
                       int32_t head_dim, cudaStream_t st)
{
	if (rows <= 0)
		return SL_OK;
	if (head_dim <= 0 || head_dim % 2 != 0)
		return sl_seterr(SL_EINVAL, "%s:%d: head_dim %d", __FILE__, __LINE__, head_dim);
	const int64_t blocks = (rows * 32 + 255) / 256;
	if (blocks > 0x7fffffff)
		return sl_seterr(SL_ERANGE, "%s:%d: %lld rows", __FILE__, __LINE__,
		                 static_cast<long long>(rows));
	kern::delta_kernel<<<static_cast<unsigned>(blocks), 256, 0, st>>>(
	    static_cast<const kern::bf16 *>(o), static_cast<const kern::bf16 *>(dout), delta, rows,
	    head_dim);
	KERN_LAUNCHED("delta_kernel");
	return SL_OK;
}

sl_err kern_add_f32(float *dst, const float *src, int64_t n, cudaStream_t st)
{
	if (n <= 0)
		return SL_OK;
	kern::add_kernel<<<kern::grid_for((n + 3) / 4, 256), 256, 0, st>>>(dst, src, n);
	KERN_LAUNCHED("add_kernel");
	return SL_OK;
}

sl_err kern_fill_random_bf16(void *dst, int64_t n, uint64_t seed, float amp, cudaStream_t st)
{
	if (n <= 0)
		return SL_OK;
	kern::fill_kernel<<<kern::grid_for(n, 256), 256, 0, st>>>(static_cast<kern::bf16 *>(dst),
	                                                           n, seed, amp);
	KERN_LAUNCHED("fill_kernel");
	return SL_OK;
}

} // extern "C"
