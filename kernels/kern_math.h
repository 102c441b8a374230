/* sluice kernels: index and merge arithmetic shared by the CUDA kernels, the
 * host code and the CPU unit tests (plain C, usable from .cu files).
 *
 * Zigzag sharding (worker/backend.h, "layout"): a sequence of s tokens on a
 * ring of d ranks is padded to p and cut into 2d chunks of c = p / 2d tokens;
 * ring position i holds chunks i and 2d-1-i. With d == 1 the only "chunk" is
 * the whole shard (c = p = s). Inside a shard the global positions therefore
 * increase strictly with the local index, which the kernels rely on: the
 * position range of a tile is (position of its first row, of its last row),
 * and "how many local tokens have position <= x" is a closed form. */
#ifndef SLUICE_KERN_MATH_H
#define SLUICE_KERN_MATH_H

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define KERN_HD __host__ __device__ __forceinline__
#else
#define KERN_HD static inline
#endif

/* Global position of local token j of the shard held by ring position owner
 * (chunk c, ring of d ranks). Valid for 0 <= j < 2c (d > 1) or j < c (d == 1). */
KERN_HD int32_t kern_pos(int32_t chunk, int32_t d, int32_t owner, int32_t j)
{
	if (j < chunk)
		return owner * chunk + j;
	return (2 * d - 1 - owner) * chunk + (j - chunk);
}

/* Number of local tokens j in [0, len) of that shard whose position is <= x.
 * Positions increase with j, so these are the tokens [0, result). */
KERN_HD int32_t kern_count_le(int32_t chunk, int32_t d, int32_t owner, int32_t len, int32_t x)
{
	int32_t first = len < chunk ? len : chunk;
	int32_t n1, n2;
	if (x < 0)
		return 0;
	n1 = x - owner * chunk + 1;
	n1 = n1 < 0 ? 0 : (n1 > first ? first : n1);
	if (len <= chunk)
		return n1;
	n2 = x - (2 * d - 1 - owner) * chunk + 1;
	n2 = n2 < 0 ? 0 : (n2 > len - chunk ? len - chunk : n2);
	return n1 + n2;
}

/* Merges a block's normalised partial attention (out_b, lse_b) into the
 * running one (out, lse) in the stable form of the ring-flash-attn project:
 *   out -= sigmoid(lse_b - lse) * (out - out_b),  lse -= logsigmoid(lse - lse_b).
 * Returns the weight w of the block (out' = out - w (out - out_b)) and stores
 * the new lse. A -inf block changes nothing (w = 0); onto a -inf row the
 * block is copied (w = 1). */
KERN_HD float kern_merge_weight(float lse, float lse_b, float *lse_new)
{
	float diff;
	if (lse_b == -INFINITY) {
		*lse_new = lse;
		return 0.0f;
	}
	if (lse == -INFINITY) {
		*lse_new = lse_b;
		return 1.0f;
	}
	diff = lse - lse_b;
	/* lse - logsigmoid(diff) = max(lse, lse_b) + log1p(exp(-|diff|)) */
	*lse_new = (diff > 0.0f ? lse : lse_b) + log1pf(expf(-fabsf(diff)));
	return 1.0f / (1.0f + expf(diff));
}

/* Round-to-nearest-even float -> bf16 bits (NaN stays NaN). */
KERN_HD uint16_t kern_f32_to_bf16(float f)
{
	union {
		float f;
		uint32_t u;
	} v;
	v.f = f;
	if ((v.u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((v.u >> 16) | 0x40u);
	v.u += 0x7fffu + ((v.u >> 16) & 1u);
	return (uint16_t)(v.u >> 16);
}

KERN_HD float kern_bf16_to_f32(uint16_t b)
{
	union {
		float f;
		uint32_t u;
	} v;
	v.u = (uint32_t)b << 16;
	return v.f;
}

#endif
