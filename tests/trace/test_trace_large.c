/* A 1M-line gzip text trace (the size of the FlexSP Wikipedia sample) is
 * written from the synthetic generator and read back exactly; the read time
 * is printed (not asserted: CI machines vary). */
#include <time.h>

#include "trace_test_util.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_million_lines(void **state)
{
	const size_t n = 1000000;
	sl_lengths_t gen = {0}, got = {0};
	char *text;
	size_t cap = n * 12 + 128, o = 0, i;
	const char *p;
	double t0, t1;

	(void)state;
	assert_int_equal(sl_trace_synthetic(SL_SYNTH_SEED, n, SL_SYNTH_MU, SL_SYNTH_SIGMA,
	                                    SL_SYNTH_MAX_LEN, &gen),
	                 SL_OK);
	text = malloc(cap);
	assert_non_null(text);
	o += (size_t)snprintf(text, cap, "# synthetic, %zu lengths\n", n);
	for (i = 0; i < n; i++)
		o += (size_t)snprintf(text + o, cap - o, "%lld\n", (long long)gen.v[i]);
	p = tt_write_gz("million.txt.gz", text, o);
	free(text);

	t0 = now_s();
	assert_int_equal(sl_trace_read(p, NULL, &got), SL_OK);
	t1 = now_s();
	print_message("read %zu lengths from a %zu-line gzip trace in %.3f s\n", got.n, n + 1,
	              t1 - t0);
	assert_int_equal(got.n, n);
	assert_memory_equal(got.v, gen.v, n * sizeof(int64_t));
	sl_lengths_free(&gen);
	sl_lengths_free(&got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_million_lines),
	};
	return cmocka_run_group_tests(tests, tt_setup, tt_teardown);
}
