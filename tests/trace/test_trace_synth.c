/* Tests of the synthetic trace: the deterministic elementary functions
 * against libm, the generator's statistics, truncation and golden values
 * (which must come out bit-identical on every machine). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "sluice/profile.h"
#include "sluice/trace.h"
#include "trace_impl.h"

static void test_exp_log(void **state)
{
	trace_rng_t r;
	int i;

	(void)state;
	assert_true(trace_exp(0.0) == 1.0);
	assert_true(trace_log(1.0) == 0.0);
	assert_true(isinf(trace_exp(800.0)) && trace_exp(800.0) > 0);
	assert_true(trace_exp(-800.0) == 0.0);
	assert_true(isinf(trace_log(0.0)) && trace_log(0.0) < 0);
	assert_true(isnan(trace_log(-1.0)));
	assert_true(isnan(trace_exp(NAN)));
	trace_rng_seed(&r, 1);
	for (i = 0; i < 200000; i++) {
		/* exp over its whole finite range, log over 1e-300 .. 1e300 */
		double x = -700.0 + 1400.0 * trace_rng_uniform(&r);
		double y = exp(-690.0 + 1380.0 * trace_rng_uniform(&r));
		double e = trace_exp(x), l = trace_log(y);

		if (fabs(e - exp(x)) > 4e-16 * exp(x))
			fail_msg("trace_exp(%.17g) = %.17g, libm %.17g", x, e, exp(x));
		if (fabs(l - log(y)) > 4e-16 * fabs(log(y)) + 1e-300)
			fail_msg("trace_log(%.17g) = %.17g, libm %.17g", y, l, log(y));
	}
	/* near 1, where log is small */
	for (i = -1000; i <= 1000; i++) {
		double y = 1.0 + i * 1e-7;

		if (fabs(trace_log(y) - log(y)) > 4e-16 * fabs(log(y)) + 1e-300)
			fail_msg("trace_log(%.17g) = %.17g, libm %.17g", y, trace_log(y), log(y));
	}
}

static void test_rng(void **state)
{
	trace_rng_t r;
	double su = 0, sn = 0, sn2 = 0;
	const int n = 1000000;
	int i;

	(void)state;
	trace_rng_seed(&r, 12345);
	for (i = 0; i < n; i++) {
		double u = trace_rng_uniform(&r);

		assert_true(u >= 0.0 && u < 1.0);
		su += u;
	}
	for (i = 0; i < n; i++) {
		double z = trace_rng_normal(&r);

		sn += z;
		sn2 += z * z;
	}
	assert_true(fabs(su / n - 0.5) < 0.002);
	assert_true(fabs(sn / n) < 0.005);
	assert_true(fabs(sn2 / n - 1.0) < 0.01);
	/* xoshiro256** reference: the state after seeding and the first output
	 * depend only on integer arithmetic */
	trace_rng_seed(&r, 0);
	assert_true(r.s[0] == 0xe220a8397b1dcdafull);
	assert_true(r.s[1] == 0x6e789e6aa1b965f4ull);
}

/* These numbers are what every machine must produce; a change here is a
 * change of the default workload. */
static void test_golden(void **state)
{
	static const int64_t first[10] = {659, 192, 657, 410, 1147, 929, 50, 228, 1923, 109};
	sl_lengths_t l = {0};
	int64_t sum = 0;
	size_t i;

	(void)state;
	assert_int_equal(sl_trace_synthetic(SL_SYNTH_SEED, 100000, SL_SYNTH_MU, SL_SYNTH_SIGMA,
	                                    SL_SYNTH_MAX_LEN, &l),
	                 SL_OK);
	assert_int_equal(l.n, 100000);
	for (i = 0; i < 10; i++)
		if (l.v[i] != first[i])
			fail_msg("length %zu is %lld, golden %lld", i, (long long)l.v[i],
			         (long long)first[i]);
	for (i = 0; i < l.n; i++)
		sum += l.v[i];
	assert_int_equal(sum, 84316506);
	sl_lengths_free(&l);
}

static void test_determinism(void **state)
{
	sl_lengths_t a = {0}, b = {0}, c = {0};
	size_t i, same = 0;

	(void)state;
	assert_int_equal(sl_trace_synthetic(7, 5000, 6.0, 1.0, 100000, &a), SL_OK);
	assert_int_equal(sl_lengths_push(&b, 99), SL_OK);
	assert_int_equal(sl_trace_synthetic(7, 5000, 6.0, 1.0, 100000, &b), SL_OK);
	assert_int_equal(sl_trace_synthetic(8, 5000, 6.0, 1.0, 100000, &c), SL_OK);
	assert_int_equal(b.n, 5001); /* appended */
	assert_int_equal(b.v[0], 99);
	assert_memory_equal(a.v, b.v + 1, 5000 * sizeof(int64_t));
	for (i = 0; i < 5000; i++)
		same += a.v[i] == c.v[i];
	assert_true(same < 100); /* another seed, another trace */
	/* n = 0 appends nothing */
	assert_int_equal(sl_trace_synthetic(7, 0, 6.0, 1.0, 100000, &c), SL_OK);
	assert_int_equal(c.n, 5000);
	sl_lengths_free(&a);
	sl_lengths_free(&b);
	sl_lengths_free(&c);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static double mean_of(const sl_lengths_t *l)
{
	double s = 0;
	size_t i;

	for (i = 0; i < l->n; i++)
		s += (double)l->v[i];
	return s / (double)l->n;
}

static void test_statistics(void **state)
{
	sl_lengths_t l = {0};
	const size_t n = 200000;
	double m, want;
	size_t i, at_max = 0;

	(void)state;
	/* the default shape: mean and median of the log-normal */
	assert_int_equal(
	    sl_trace_synthetic(1, n, SL_SYNTH_MU, SL_SYNTH_SIGMA, SL_SYNTH_MAX_LEN, &l), SL_OK);
	m = mean_of(&l);
	want = sl_trace_synthetic_mean(SL_SYNTH_MU, SL_SYNTH_SIGMA, SL_SYNTH_MAX_LEN);
	if (fabs(m - want) > 0.02 * want)
		fail_msg("mean %.2f, expected %.2f", m, want);
	qsort(l.v, l.n, sizeof(int64_t), cmp_i64);
	if (fabs((double)l.v[n / 2] - exp(SL_SYNTH_MU)) > 0.03 * exp(SL_SYNTH_MU))
		fail_msg("median %lld, expected %.1f", (long long)l.v[n / 2], exp(SL_SYNTH_MU));
	assert_true(l.v[0] >= 1 && l.v[n - 1] <= SL_SYNTH_MAX_LEN);
	l.n = 0;
	/* hard truncation: ~10% of the mass lies above 2000, redrawn */
	assert_int_equal(sl_trace_synthetic(2, n, 6.0, 1.2, 2000, &l), SL_OK);
	for (i = 0; i < n; i++) {
		assert_true(l.v[i] >= 1 && l.v[i] <= 2000);
		at_max += l.v[i] == 2000;
	}
	assert_true(at_max < n / 1000); /* not piled up at max_len */
	m = mean_of(&l);
	want = sl_trace_synthetic_mean(6.0, 1.2, 2000);
	if (fabs(m - want) > 0.01 * want)
		fail_msg("truncated mean %.2f, expected %.2f", m, want);
	/* untruncated the mean would be exp(6.72) = 829: truncation matters */
	assert_true(want < 0.8 * exp(6.0 + 0.72));
	l.n = 0;
	/* sigma 0 is a constant trace */
	assert_int_equal(sl_trace_synthetic(3, 10, log(500.0), 0.0, 1000, &l), SL_OK);
	for (i = 0; i < 10; i++)
		assert_int_equal(l.v[i], 500);
	assert_true(sl_trace_synthetic_mean(log(500.0), 0.0, 1000) == 500.0);
	sl_lengths_free(&l);
}

static void test_errors(void **state)
{
	sl_lengths_t l = {0};

	(void)state;
	assert_int_equal(sl_trace_synthetic(1, 10, 6.0, -1.0, 1000, &l), SL_EINVAL);
	assert_int_equal(sl_trace_synthetic(1, 10, NAN, 1.0, 1000, &l), SL_EINVAL);
	assert_int_equal(sl_trace_synthetic(1, 10, 6.0, INFINITY, 1000, &l), SL_EINVAL);
	assert_int_equal(sl_trace_synthetic(1, 10, 6.0, 1.0, 0, &l), SL_ERANGE);
	assert_int_equal(sl_trace_synthetic(1, 10, 6.0, 1.0, SL_MAX_SEQ_LEN + 1, &l), SL_ERANGE);
	assert_int_equal(sl_trace_synthetic(1, 10, 6.0, 1.0, 1000, NULL), SL_EINVAL);
	/* median e^20: almost nothing fits under 5000 */
	assert_int_equal(sl_trace_synthetic(1, 10, 20.0, 1.0, 5000, &l), SL_ERANGE);
	assert_non_null(strstr(sl_errmsg(), "max_len 5000 is far below the distribution"));
	assert_int_equal(sl_trace_synthetic(1, 10, log(5000.0), 0.0, 100, &l), SL_ERANGE);
	assert_int_equal(l.n, 0);
	/* max_len 1 with a distribution around 1 is fine */
	assert_int_equal(sl_trace_synthetic(1, 100, 0.0, 0.5, 1, &l), SL_OK);
	assert_int_equal(l.n, 100);
	assert_int_equal(l.v[99], 1);
	sl_lengths_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_exp_log),    cmocka_unit_test(test_rng),
	    cmocka_unit_test(test_golden),     cmocka_unit_test(test_determinism),
	    cmocka_unit_test(test_statistics), cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
