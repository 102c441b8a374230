/* sluice kernels: the element-wise parts of a transformer layer (pre-LN GPT:
 * LayerNorm, GeLU, residual adds, the QKV split and the gradient merge),
 * forward and backward, bf16 tensors with fp32 arithmetic. They are what the
 * emulated worker and the profiler run between the GEMMs and the attention
 * (profiler/layer.c), so a measured layer costs what a trainer's layer costs;
 * plain memory-bound kernels, one pass over each tensor. */
#include "attn_common.cuh"

namespace kern {

static constexpr int EW_THREADS = 256;

__device__ __forceinline__ float block_sum(float v, float *sh)
{
#pragma unroll
	for (int m = 16; m > 0; m >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, m);
	const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	__syncthreads(); /* sh may still be read by a previous call */
	if (lane == 0)
		sh[w] = v;
	__syncthreads();
	float t = 0.f;
	for (int i = 0; i < static_cast<int>(blockDim.x >> 5); i++)
		t += sh[i];
	return t;
}

/* One block per row: y = (x - mean) * rstd * gamma + beta; keeps mean, rstd. */
__global__ void ln_fwd_kernel(const bf16 *__restrict__ x, const float *__restrict__ gamma,
                              const float *__restrict__ beta, bf16 *__restrict__ y,
                              float *__restrict__ mean, float *__restrict__ rstd, int h)
{
	__shared__ float sh[32];
	const int64_t row = blockIdx.x;
	const bf16 *xr = x + row * h;
	float s = 0.f, s2 = 0.f;
	for (int i = threadIdx.x; i < h; i += blockDim.x) {
		const float v = __bfloat162float(xr[i]);
		s += v;
		s2 += v * v;
	}
	s = block_sum(s, sh);
	s2 = block_sum(s2, sh);
	const float mu = s / h, var = fmaxf(s2 / h - mu * mu, 0.f), rs = rsqrtf(var + 1e-5f);
	for (int i = threadIdx.x; i < h; i += blockDim.x)
		y[row * h + i] =
			__float2bfloat16((__bfloat162float(xr[i]) - mu) * rs * gamma[i] + beta[i]);
	if (threadIdx.x == 0) {
		mean[row] = mu;
		rstd[row] = rs;
	}
}

/* LayerNorm backward of ROWS rows per block: dx = dres + rstd (g dy -
 * mean(g dy) - xhat mean(g dy xhat)); dgamma, dbeta summed per column in
 * registers over the block's rows, then one atomic per column per block. */
static constexpr int LN_ROWS = 32, LN_MAXC = 32;
__global__ void ln_bwd_kernel(const bf16 *__restrict__ dy, const bf16 *__restrict__ x,
                              const float *__restrict__ gamma, const float *__restrict__ mean,
                              const float *__restrict__ rstd, const bf16 *__restrict__ dres,
                              bf16 *__restrict__ dx, float *__restrict__ dgamma,
                              float *__restrict__ dbeta, int64_t n, int h)
{
	__shared__ float sh[32];
	constexpr int MAXC = LN_MAXC; /* columns per thread */
	float dg[MAXC], db[MAXC];
	const int nc = (h + blockDim.x - 1) / blockDim.x;
#pragma unroll
	for (int c = 0; c < MAXC; c++)
		dg[c] = db[c] = 0.f;
	for (int64_t row = static_cast<int64_t>(blockIdx.x) * LN_ROWS;
	     row < n && row < static_cast<int64_t>(blockIdx.x + 1) * LN_ROWS; row++) {
		const float mu = mean[row], rs = rstd[row];
		float a = 0.f, b = 0.f;
#pragma unroll
		for (int c = 0; c < MAXC; c++) {
			const int i = threadIdx.x + c * blockDim.x;
			if (c < nc && i < h) {
				const float xh = (__bfloat162float(x[row * h + i]) - mu) * rs;
				const float g = __bfloat162float(dy[row * h + i]);
				a += g * gamma[i];
				b += g * gamma[i] * xh;
				dg[c] += g * xh;
				db[c] += g;
			}
		}
		a = block_sum(a, sh) / h;
		b = block_sum(b, sh) / h;
		for (int c = 0; c < nc; c++) {
			const int i = threadIdx.x + c * blockDim.x;
			if (i < h) {
				const float xh = (__bfloat162float(x[row * h + i]) - mu) * rs;
				const float g = __bfloat162float(dy[row * h + i]) * gamma[i];
				dx[row * h + i] = __float2bfloat16(__bfloat162float(dres[row * h + i]) +
				                                   rs * (g - a - xh * b));
			}
		}
	}
	for (int c = 0; c < nc; c++) {
		const int i = threadIdx.x + c * blockDim.x;
		if (i < h) {
			atomicAdd(&dgamma[i], dg[c]);
			atomicAdd(&dbeta[i], db[c]);
		}
	}
}

__device__ __forceinline__ float gelu_f(float v)
{
	const float k = 0.7978845608f; /* sqrt(2 / pi) */
	return 0.5f * v * (1.f + tanhf(k * (v + 0.044715f * v * v * v)));
}

__device__ __forceinline__ float gelu_df(float v)
{
	const float k = 0.7978845608f;
	const float t = tanhf(k * (v + 0.044715f * v * v * v));
	return 0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * k * (1.f + 3.f * 0.044715f * v * v);
}

/* op 0: y = gelu(a); 1: y = dy(=b) * gelu'(a); 2: y = a + b. Two bf16 per step. */
__global__ void ew_kernel(const bf16 *__restrict__ a, const bf16 *__restrict__ b,
                          bf16 *__restrict__ y, int64_t n2, int op)
{
	const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
	const __nv_bfloat162 *a2 = reinterpret_cast<const __nv_bfloat162 *>(a);
	const __nv_bfloat162 *b2 = reinterpret_cast<const __nv_bfloat162 *>(b);
	__nv_bfloat162 *y2 = reinterpret_cast<__nv_bfloat162 *>(y);
	for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n2;
	     i += stride) {
		const float2 u = __bfloat1622float2(a2[i]);
		float2 r;
		if (op == 0) {
			r = make_float2(gelu_f(u.x), gelu_f(u.y));
		} else {
			const float2 v = __bfloat1622float2(b2[i]);
			r = op == 1 ? make_float2(v.x * gelu_df(u.x), v.y * gelu_df(u.y))
			            : make_float2(u.x + v.x, u.y + v.y);
		}
		y2[i] = __floats2bfloat162_rn(r.x, r.y);
	}
}

/* Row t of qkv [n][(H + 2 KH) D] -> q [n][H D], k [n][KH D], v [n][KH D]
 * (dir 0), or the fp32 gradients dq, dk, dv back into one bf16 row (dir 1). */
__global__ void qkv_kernel(bf16 *__restrict__ qkv, bf16 *__restrict__ q, bf16 *__restrict__ k,
                           bf16 *__restrict__ v, const float *__restrict__ dq,
                           const float *__restrict__ dk, const float *__restrict__ dv, int64_t n,
                           int qd, int kd, int dir)
{
	const int w = qd + 2 * kd;
	const int64_t total = n * w, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
	for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
	     i += stride) {
		const int64_t t = i / w;
		const int c = static_cast<int>(i - t * w);
		if (dir == 0) {
			const bf16 val = qkv[i];
			if (c < qd)
				q[t * qd + c] = val;
			else if (c < qd + kd)
				k[t * kd + c - qd] = val;
			else
				v[t * kd + c - qd - kd] = val;
		} else {
			const float val = c < qd        ? dq[t * qd + c]
			                  : c < qd + kd ? dk[t * kd + c - qd]
			                                : dv[t * kd + c - qd - kd];
			qkv[i] = __float2bfloat16(val);
		}
	}
}

static unsigned ew_grid(int64_t n)
{
	int64_t b = (n + EW_THREADS - 1) / EW_THREADS;
	if (b > 8192)
		b = 8192;
	return static_cast<unsigned>(b < 1 ? 1 : b);
}

} // namespace kern

extern "C" {

sl_err kern_ln_fwd(const void *x, const float *gamma, const float *beta, void *y, float *mean,
                   float *rstd, int64_t n, int32_t h, cudaStream_t st)
{
	if (n <= 0)
		return SL_OK;
	kern::ln_fwd_kernel<<<static_cast<unsigned>(n), kern::EW_THREADS, 0, st>>>(
		static_cast<const kern::bf16 *>(x), gamma, beta, static_cast<kern::bf16 *>(y), mean,
		rstd, h);
	KERN_LAUNCHED("ln_fwd");
	return SL_OK;
}

sl_err kern_ln_bwd(const void *dy, const void *x, const float *gamma, const float *mean,
                   const float *rstd, const void *dres, void *dx, float *dgamma, float *dbeta,
                   int64_t n, int32_t h, cudaStream_t st)
{
	if (h > kern::LN_MAXC * kern::EW_THREADS)
		return sl_seterr(SL_EINVAL, "%s:%d: LayerNorm width %d over %d", __FILE__, __LINE__,
		                 (int)h, kern::LN_MAXC * kern::EW_THREADS);
	if (n <= 0)
		return SL_OK;
	const unsigned blocks = static_cast<unsigned>((n + kern::LN_ROWS - 1) / kern::LN_ROWS);
	kern::ln_bwd_kernel<<<blocks, kern::EW_THREADS, 0, st>>>(
		static_cast<const kern::bf16 *>(dy), static_cast<const kern::bf16 *>(x), gamma, mean,
		rstd, static_cast<const kern::bf16 *>(dres), static_cast<kern::bf16 *>(dx), dgamma,
		dbeta, n, h);
	KERN_LAUNCHED("ln_bwd");
	return SL_OK;
}

sl_err kern_ew(kern_ew_op op, const void *a, const void *b, void *y, int64_t n, cudaStream_t st)
{
	if (n % 2 != 0)
		return sl_seterr(SL_EINVAL, "%s:%d: element-wise length %lld is odd", __FILE__,
		                 __LINE__, (long long)n);
	if (n <= 0)
		return SL_OK;
	kern::ew_kernel<<<kern::ew_grid(n / 2), kern::EW_THREADS, 0, st>>>(
		static_cast<const kern::bf16 *>(a), static_cast<const kern::bf16 *>(b),
		static_cast<kern::bf16 *>(y), n / 2, static_cast<int>(op));
	KERN_LAUNCHED("ew");
	return SL_OK;
}

sl_err kern_qkv_split(const void *qkv, void *q, void *k, void *v, int64_t n, int32_t qd, int32_t kd,
                      cudaStream_t st)
{
	kern::qkv_kernel<<<kern::ew_grid(n * (qd + 2 * kd)), kern::EW_THREADS, 0, st>>>(
		const_cast<kern::bf16 *>(static_cast<const kern::bf16 *>(qkv)),
		static_cast<kern::bf16 *>(q), static_cast<kern::bf16 *>(k),
		static_cast<kern::bf16 *>(v), nullptr, nullptr, nullptr, n, qd, kd, 0);
	KERN_LAUNCHED("qkv_split");
	return SL_OK;
}

sl_err kern_qkv_merge_grad(const float *dq, const float *dk, const float *dv, void *dqkv, int64_t n,
                           int32_t qd, int32_t kd, cudaStream_t st)
{
	kern::qkv_kernel<<<kern::ew_grid(n * (qd + 2 * kd)), kern::EW_THREADS, 0, st>>>(
		static_cast<kern::bf16 *>(dqkv), nullptr, nullptr, nullptr, dq, dk, dv, n, qd, kd, 1);
	KERN_LAUNCHED("qkv_merge_grad");
	return SL_OK;
}

} /* extern "C" */
