/* sluice trace: the built-in synthetic trace, a truncated log-normal.
 *
 * The shape follows FlexSP (Wang et al., "FlexSP: Accelerating Large Language
 * Model Training via Flexible Sequence Parallelism", ASPLOS 2025), whose
 * Wikipedia/CommonCrawl length distributions are long-tailed; SL_SYNTH_MU and
 * SL_SYNTH_SIGMA are fitted to the Wikipedia sample. Output must be identical
 * on every machine, so nothing here calls libm's transcendental functions
 * (whose last bits differ between libms): exp and log are evaluated below
 * with IEEE-754 +, -, *, / and sqrt only, which are correctly rounded
 * everywhere, and CMake compiles this file with -ffp-contract=off so no
 * compiler fuses a multiply-add. */
#include <math.h>

#include "sluice/rng.h"
#include "trace_impl.h"

/* ln 2 split so that k * LN2_HI is exact for |k| < 2^11 (fdlibm's split). */
static const double LN2_HI = 6.93147180369123816490e-01;
static const double LN2_LO = 1.90821492927058770002e-10;
static const double LOG2_E = 1.44269504088896338700e+00;
static const double SQRT_HALF = 0.70710678118654752440;

/* Draws whose z-score bound is below this are rejected up front: fewer than
 * 1 in 30000 draws would fit under max_len. */
#define SYNTH_MIN_Z (-4.0)
/* Rejections allowed for one length before giving up (never reached when
 * the z-score check passes, but keeps the loop provably finite). */
#define SYNTH_MAX_TRIES (1u << 24)

double trace_exp(double x)
{
	double k, r, p;
	int j;

	if (x != x)
		return x;
	if (x > 709.782712893384)
		return HUGE_VAL;
	if (x < -745.2)
		return 0.0;
	/* x = k ln2 + r with |r| <= ln2 / 2 (Cody-Waite reduction) */
	k = floor(x * LOG2_E + 0.5);
	r = (x - k * LN2_HI) - k * LN2_LO;
	/* e^r = 1 + r(1 + r/2(1 + r/3(...(1 + r/13)))): Taylor to r^13, whose
	 * remainder is below 1e-17 for |r| <= 0.35. */
	p = 1.0;
	for (j = 13; j >= 1; j--)
		p = 1.0 + p * r / (double)j;
	/* scaling by 2^k is exact */
	return ldexp(p, (int)k);
}

double trace_log(double x)
{
	double m, f, hfsq, s, z, t, r;
	int e, j;

	if (x != x || x < 0)
		return NAN;
	if (x == 0)
		return -HUGE_VAL;
	if (isinf(x))
		return x;
	/* x = m 2^e with m in [sqrt(1/2), sqrt(2)); frexp is exact */
	m = frexp(x, &e);
	if (m < SQRT_HALF) {
		m *= 2.0;
		e--;
	}
	/* log(1 + f) = 2 atanh(s) with s = f / (2 + f), |s| <= 0.1716:
	 * 2 atanh(s) = 2s + s R, R = 2(z/3 + z^2/5 + ...), z = s^2, and
	 * 2s = f - hfsq + s hfsq with hfsq = f^2 / 2, which keeps the leading
	 * term exact (fdlibm's e_log.c arrangement). Terms to z^11 leave a
	 * remainder below 1e-19. */
	f = m - 1.0;
	hfsq = 0.5 * f * f;
	s = f / (2.0 + f);
	z = s * s;
	t = 2.0 / 23.0;
	for (j = 21; j >= 3; j -= 2)
		t = 2.0 / (double)j + z * t;
	r = z * t;
	return (double)e * LN2_HI + (((double)e * LN2_LO + s * (hfsq + r)) - hfsq + f);
}

void trace_rng_seed(trace_rng_t *r, uint64_t seed)
{
	int i;

	for (i = 0; i < 4; i++)
		r->s[i] = sl_splitmix64(&seed); /* expands the seed into the xoshiro state */
	r->has_spare = 0;
	r->spare = 0.0;
}

static uint64_t synth_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna, "Scrambled linear pseudorandom number
 * generators", ACM TOMS 2021). */
uint64_t trace_rng_next(trace_rng_t *r)
{
	uint64_t *s = r->s;
	uint64_t out = synth_rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = synth_rotl(s[3], 45);
	return out;
}

double trace_rng_uniform(trace_rng_t *r)
{
	return (double)(trace_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Marsaglia and Bray's polar form of the Box-Muller transform (SIAM Review
 * 1964): needs only log and sqrt, both deterministic here. */
double trace_rng_normal(trace_rng_t *r)
{
	double u, v, s, f;

	if (r->has_spare) {
		r->has_spare = 0;
		return r->spare;
	}
	do {
		u = 2.0 * trace_rng_uniform(r) - 1.0;
		v = 2.0 * trace_rng_uniform(r) - 1.0;
		s = u * u + v * v;
	} while (s >= 1.0 || s == 0.0);
	f = sqrt(-2.0 * trace_log(s) / s);
	r->spare = v * f;
	r->has_spare = 1;
	return u * f;
}

/* Lengths above max_len are redrawn (a truncated distribution, so the tail
 * is not piled up at max_len); a draw that rounds to 0 becomes 1. */
sl_err sl_trace_synthetic(uint64_t seed, size_t n, double mu, double sigma, int64_t max_len,
                          sl_lengths_t *out)
{
	trace_rng_t rng;
	size_t i, n0;
	double top;

	if (out == NULL)
		return sl_seterr(SL_EINVAL, "synthetic trace: no output array");
	if (!isfinite(mu) || !isfinite(sigma) || sigma < 0)
		return sl_seterr(SL_EINVAL,
		                 "synthetic trace: mu %g and sigma %g must be finite, sigma >= 0",
		                 mu, sigma);
	if (max_len < 1 || max_len > SL_MAX_SEQ_LEN)
		return sl_seterr(SL_ERANGE, "synthetic trace: max_len %lld is outside 1..%lld",
		                 (long long)max_len, (long long)SL_MAX_SEQ_LEN);
	top = (double)max_len;
	/* Refuse a max_len so far below the distribution that redrawing would
	 * take forever. */
	if ((sigma == 0 && floor(trace_exp(mu) + 0.5) > top) ||
	    (sigma > 0 && (trace_log(top + 0.5) - mu) / sigma < SYNTH_MIN_Z))
		return sl_seterr(SL_ERANGE,
		                 "synthetic trace: max_len %lld is far below the distribution "
		                 "(median exp(mu) = %.4g, sigma %g): almost every draw would be "
		                 "rejected",
		                 (long long)max_len, trace_exp(mu), sigma);
	n0 = out->n;
	trace_rng_seed(&rng, seed);
	for (i = 0; i < n; i++) {
		double v = 0;
		unsigned tries;
		sl_err rc;

		for (tries = 0; tries < SYNTH_MAX_TRIES; tries++) {
			v = floor(trace_exp(mu + sigma * trace_rng_normal(&rng)) + 0.5);
			if (v <= top) /* also false for NaN */
				break;
		}
		if (tries == SYNTH_MAX_TRIES) {
			out->n = n0;
			return sl_seterr(SL_ERANGE,
			                 "synthetic trace: no draw fit under max_len %lld after %u "
			                 "tries",
			                 (long long)max_len, SYNTH_MAX_TRIES);
		}
		rc = sl_lengths_push(out, v < 1.0 ? 1 : (int64_t)v);
		if (rc != SL_OK) {
			out->n = n0;
			return rc;
		}
	}
	return SL_OK;
}

/* Standard normal CDF (libm is fine here: this number is only compared
 * against with a tolerance, never part of a plan). */
static double synth_phi(double z)
{
	return 0.5 * erfc(-z / sqrt(2.0));
}

double sl_trace_synthetic_mean(double mu, double sigma, int64_t max_len)
{
	double lm = log((double)max_len + 0.5), den;

	if (sigma <= 0) {
		double v = floor(exp(mu) + 0.5);
		return v < 1 ? 1 : v;
	}
	den = synth_phi((lm - mu) / sigma);
	if (den <= 0)
		return NAN;
	return exp(mu + sigma * sigma / 2) * synth_phi((lm - mu - sigma * sigma) / sigma) / den;
}
