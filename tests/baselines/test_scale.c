/* The baseline policies at the sizes the brief names for planner time,
 * 512 sequences on 64 ranks and 32768 on 4096, plan valid plans; their
 * planner times are printed, not asserted (a test asserts behaviour, never
 * how fast the machine is; planner latency is what bench/sluice_bench
 * measures, docs/perf.md). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "sluice/rng.h"
#include "sluice/sluice.h"

/* Wikipedia-shaped lengths (FlexSP's log-normal fit), capped at 192K. */
static sl_seq_t *wiki_like(uint64_t seed, int64_t n)
{
	sl_seq_t *s = malloc((size_t)n * sizeof(*s));
	assert_non_null(s);
	for (int64_t i = 0; i < n; i++) {
		double u = sl_rand_unit(&seed), v = sl_rand_unit(&seed);
		double l = exp(SL_SYNTH_MU + SL_SYNTH_SIGMA * sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v));
		s[i].id = i;
		s[i].length = l < 1 ? 1 : (l > SL_SYNTH_MAX_LEN ? SL_SYNTH_MAX_LEN : (int64_t)l);
	}
	return s;
}

static void time_policies(int32_t ranks, int64_t nseq, int reps)
{
	sl_cost_t c;
	sl_cluster_t cl = {ranks, 8};
	assert_int_equal(sl_cost_init(&c, sl_profile_preset("gpt-7b-flexsp"), &cl), SL_OK);
	sl_seq_t *s = wiki_like(42, nseq);
	const char *names[] = {"static", "batch-adaptive", "megatron-hybrid-cp"};
	for (int k = 0; k < 3; k++) {
		double best = INFINITY, step = 0, ideal = 0;
		for (int r = 0; r < reps; r++) {
			sl_plan_t *p = NULL;
			if (sl_plan_request(names[k], &c, s, nseq, NULL, &p) != SL_OK)
				fail_msg("%s: %s", names[k], sl_errmsg());
			assert_int_equal(sl_plan_validate(p, &c, NULL, NULL), 0);
			if (p->planner_ms < best)
				best = p->planner_ms;
			step = p->step_ms;
			ideal = p->ideal_ms;
			sl_plan_free(&p);
		}
		print_message("%-20s %6lld seqs %5d ranks: planner %8.3f ms, step %9.1f ms "
		              "(ideal %9.1f, x%.3f)\n",
		              names[k], (long long)nseq, ranks, best, step, ideal, step / ideal);
	}
	free(s);
	sl_cost_fini(&c);
}

static void test_512_on_64(void **state)
{
	(void)state;
	time_policies(64, 512, 5);
}

static void test_32768_on_4096(void **state)
{
	(void)state;
	time_policies(4096, 32768, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_512_on_64),
		cmocka_unit_test(test_32768_on_4096),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
