/* Tests of the shared double comparator and medians (core/stats.c): the
 * order qsort gets from sl_cmp_double, ties, and which median each of
 * sl_median and sl_median_upper returns for odd and even lengths. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "sluice/stats.h"

static int cmp(double a, double b)
{
	return sl_cmp_double(&a, &b);
}

static void test_cmp_sign(void **state)
{
	(void)state;
	assert_int_equal(cmp(1.0, 2.0), -1);
	assert_int_equal(cmp(2.0, 1.0), 1);
	assert_int_equal(cmp(3.5, 3.5), 0);
	assert_int_equal(cmp(-1e300, 1e-300), -1);
	assert_int_equal(cmp(-INFINITY, -1e308), -1);
	assert_int_equal(cmp(INFINITY, 1e308), 1);
	/* -0.0 and 0.0 are equal (a tie, not an order) */
	assert_int_equal(cmp(-0.0, 0.0), 0);
	assert_int_equal(cmp(0.0, -0.0), 0);
}

static void test_sort_order_and_ties(void **state)
{
	double v[] = {3.0, -1.5, 7.25, 3.0, -INFINITY, 0.0, 1e-9, 7.25, -1.5, 2.0, INFINITY, 3.0};
	const double want[] = {-INFINITY, -1.5, -1.5, 0.0,  1e-9, 2.0,
	                       3.0,       3.0,  3.0,  7.25, 7.25, INFINITY};
	const size_t n = sizeof(v) / sizeof(v[0]);

	(void)state;
	qsort(v, n, sizeof(v[0]), sl_cmp_double);
	for (size_t i = 0; i < n; i++)
		if (v[i] != want[i])
			fail_msg("sorted[%zu] = %g, expected %g", i, v[i], want[i]);
}

/* One median case: v[0..n) unsorted, and what each median must return. */
typedef struct median_case {
	double v[6];
	size_t n;
	double mid;   /* sl_median */
	double upper; /* sl_median_upper */
} median_case_t;

static void test_median_odd_even(void **state)
{
	static const median_case_t cases[] = {
		{{9.0, 1.0, 5.0, 3.0, 7.0}, 5, 5.0, 5.0},
		{{4.5}, 1, 4.5, 4.5},
		{{2.0, 8.0, 2.0}, 3, 2.0, 2.0},
		/* even: the mean of the two middle values (3 and 4) against the
		 * larger of them, never a mean */
		{{10.0, 1.0, 4.0, 3.0}, 4, 3.5, 4.0},
		{{6.0, 1.0}, 2, 3.5, 6.0},
		{{5.0, 1.0, 5.0, 9.0}, 4, 5.0, 5.0},
		{{-2.0, 8.0, 0.5, -7.0, 3.0, 1.0}, 6, 0.75, 1.0},
	};

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const median_case_t *k = &cases[c];
		double a[6], b[6];
		memcpy(a, k->v, sizeof(a));
		memcpy(b, k->v, sizeof(b));
		const double m = sl_median(a, k->n), u = sl_median_upper(b, k->n);
		if (m != k->mid || u != k->upper)
			fail_msg("case %zu: median %g upper %g, expected %g and %g", c, m, u,
			         k->mid, k->upper);
		/* both sort in place */
		for (size_t i = 1; i < k->n; i++)
			if (a[i - 1] > a[i] || b[i - 1] > b[i])
				fail_msg("case %zu: not sorted at %zu", c, i);
	}
}

static void test_median_empty(void **state)
{
	double v[1] = {1.0};

	(void)state;
	assert_true(isnan(sl_median(v, 0)));
	assert_true(isnan(sl_median_upper(v, 0)));
	assert_true(v[0] == 1.0);
}

/* Nearest rank: the smallest value with at least ceil(q n) values at or
 * below it, whatever the input order; the ends clamp; NaN when empty. */
static void test_quantile_nearest_rank(void **state)
{
	(void)state;
	/* 1..100 shuffled: p50 is 50 (not 50.5), p99 99, p100 100, p1 1 */
	double v[100];
	for (int i = 0; i < 100; i++)
		v[i] = (double)((i * 37) % 100 + 1);
	assert_true(sl_quantile(v, 100, 0.5) == 50.0);
	assert_true(sl_quantile(v, 100, 0.99) == 99.0);
	assert_true(sl_quantile(v, 100, 0.991) == 100.0);
	assert_true(sl_quantile(v, 100, 1.0) == 100.0);
	assert_true(sl_quantile(v, 100, 0.01) == 1.0);
	assert_true(sl_quantile(v, 100, 0.0) == 1.0);
	assert_true(sl_quantile(v, 100, -1.0) == 1.0);
	assert_true(sl_quantile(v, 100, 2.0) == 100.0);
	for (int i = 1; i < 100; i++)
		assert_true(v[i - 1] <= v[i]); /* sorted in place */
	/* three values: p50 is the middle, p99 the largest, ties kept */
	double w[3] = {7.0, 3.0, 3.0};
	assert_true(sl_quantile(w, 3, 0.5) == 3.0);
	assert_true(sl_quantile(w, 3, 0.67) == 7.0);
	assert_true(sl_quantile(w, 3, 0.66) == 3.0);
	double one[1] = {4.0};
	assert_true(sl_quantile(one, 1, 0.99) == 4.0);
	assert_true(isnan(sl_quantile(one, 0, 0.5)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cmp_sign),
		cmocka_unit_test(test_sort_order_and_ties),
		cmocka_unit_test(test_median_odd_even),
		cmocka_unit_test(test_median_empty),
		cmocka_unit_test(test_quantile_nearest_rank),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
