/* sluice: the one deterministic mixer every host part draws from: splitmix64
 * (Steele, Lea, Flood, "Fast splittable pseudorandom number generators",
 * OOPSLA 2014). The same seed gives the same stream on every machine and libc,
 * which plans, synthetic traces and test inputs depend on. (The device-side
 * fill in kernels/attn_misc.cu keeps its own copy: it runs per element.) */
#ifndef SLUICE_RNG_H
#define SLUICE_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Advances *state by the golden-ratio increment and returns its mix. */
static inline uint64_t sl_splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The mix of x alone (a stateless hash: sl_splitmix64 of a copy). */
static inline uint64_t sl_mix64(uint64_t x)
{
	return sl_splitmix64(&x);
}

/* Uniform double in (0, 1): the top 53 bits of the next draw, centred. */
static inline double sl_rand_unit(uint64_t *state)
{
	return ((double)(sl_splitmix64(state) >> 11) + 0.5) / 9007199254740992.0;
}

#ifdef __cplusplus
}
#endif
#endif
