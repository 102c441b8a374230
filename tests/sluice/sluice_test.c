/* Tests of the `sluice` policy: valid plans on random batches and cluster
 * shapes, determinism, edge cases, never slower than the baselines, the LP
 * bound, node-local rings, the exact micro-batch MILP, work limits, and
 * plan quality on a fixed synthetic batch (a property of the method, not of
 * the fallbacks). */
#include <math.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/sluice.h"

/* --- helpers ------------------------------------------------------------- */

static void report(void *arg, const char *msg)
{
	const char *what = arg;
	print_error("%s: %s\n", what, msg);
}

/* The preset on this cluster; on clusters too small to hold its ZeRO-3
 * model state, the same profile with the model state it has on 64 ranks. */
static void cost_for(const char *profile, int32_t ranks, int32_t per_node, sl_cost_t *c)
{
	sl_profile_t p;
	assert_int_equal(sl_profile_resolve(profile, &p), SL_OK);
	sl_cluster_t cl = {ranks, per_node < ranks ? per_node : ranks};
	if (sl_cost_init(c, &p, &cl) == SL_OK)
		return;
	sl_clearerr();
	p.model_state_bytes = p.params * 16.0 / 64;
	p.params = 0;
	assert_int_equal(sl_cost_init(c, &p, &cl), SL_OK);
}

/* A fixed-seed log-normal batch of these parameters, lengths clipped so
 * that every sequence fits the cluster. */
static sl_seq_t *lognormal_batch_of(uint64_t seed, int64_t n, double mu, double sigma,
                                    int64_t max_len)
{
	sl_lengths_t l = {0};
	assert_int_equal(sl_trace_synthetic(seed, (size_t)n, mu, sigma, max_len, &l), SL_OK);
	sl_seq_t *s = malloc(sizeof(sl_seq_t) * (size_t)n);
	assert_non_null(s);
	for (int64_t i = 0; i < n; i++) {
		s[i].id = 1000 + i;
		s[i].length = l.v[i];
	}
	sl_lengths_free(&l);
	return s;
}

/* FlexSP's Wikipedia fit. */
static sl_seq_t *lognormal_batch(uint64_t seed, int64_t n, int64_t max_len)
{
	return lognormal_batch_of(seed, n, SL_SYNTH_MU, SL_SYNTH_SIGMA, max_len);
}

/* The longest sequence the cluster accepts (largest s with
 * sl_cost_check_seq OK), by bisection. */
static int64_t longest_placeable(const sl_cost_t *c)
{
	int64_t lo = 1, hi = (int64_t)1 << 40;
	while (lo < hi) {
		int64_t mid = lo + (hi - lo + 1) / 2;
		if (sl_cost_check_seq(c, 0, mid) == SL_OK)
			lo = mid;
		else
			hi = mid - 1;
	}
	sl_clearerr();
	return lo;
}

/* Plans with sluice and checks everything a plan must satisfy. Returns the
 * plan (caller frees). */
static sl_plan_t *plan_checked(const sl_cost_t *c, const sl_seq_t *s, int64_t n,
                               const sl_policy_opts_t *opts, const char *what)
{
	sl_plan_t *p = NULL;
	sl_err rc = sl_plan_request("sluice", c, s, n, opts, &p);
	if (rc != SL_OK)
		fail_msg("%s: sluice failed: %s", what, sl_errmsg());
	assert_non_null(p);
	assert_string_equal(p->policy, "sluice");
	assert_int_equal(sl_plan_validate(p, c, report, (void *)what), 0);
	assert_true(isfinite(p->step_ms) && p->step_ms > 0);
	/* the LP bound is a lower bound on the step and not far below the
	 * spec's ideal (its columns merge degrees within 0.3% of work); none
	 * when the work limit was below one build and `static` answered */
	int floor_only = strstr(p->note, "below one build") != NULL;
	assert_true(isfinite(p->lp_bound_ms) || floor_only);
	if (floor_only)
		assert_int_equal(p->search_truncated, 1);
	else if (!(p->lp_bound_ms <= p->step_ms * (1 + 1e-9) + 1e-6))
		fail_msg("%s: LP bound %.3f above the step %.3f", what, p->lp_bound_ms, p->step_ms);
	if (!floor_only && !(p->lp_bound_ms >= p->ideal_ms * 0.99 - 1e-6))
		fail_msg("%s: LP bound %.3f far below the ideal %.3f", what, p->lp_bound_ms,
		         p->ideal_ms);
	if (!(p->step_ms >= p->ideal_ms * (1 - 1e-9)))
		fail_msg("%s: step %.3f below the ideal %.3f", what, p->step_ms, p->ideal_ms);
	/* every offload within the profile's limit */
	for (int64_t k = 0; k < p->nitems; k++)
		assert_true(p->items[k].offload >= 0 &&
		            p->items[k].offload <= c->prof.max_offload + 1e-12);
	return p;
}

static double step_of(const char *policy, const sl_cost_t *c, const sl_seq_t *s, int64_t n,
                      const sl_policy_opts_t *opts)
{
	sl_plan_t *p = NULL;
	if (sl_plan_request(policy, c, s, n, opts, &p) != SL_OK)
		fail_msg("%s failed: %s", policy, sl_errmsg());
	double ms = p->step_ms;
	sl_plan_free(&p);
	return ms;
}

/* Fails unless plans a and b are byte-identical as JSON (planner_ms is not
 * in the JSON, so equal bytes mean the same plan). */
static void assert_same_plan_json(const sl_plan_t *a, const sl_plan_t *b)
{
	char *ja = sl_plan_to_json(a), *jb = sl_plan_to_json(b);
	assert_non_null(ja);
	assert_non_null(jb);
	assert_string_equal(ja, jb);
	free(ja);
	free(jb);
}

/* Fails (naming what) when a registered policy plans this batch faster than
 * sluice's plan p. */
static void assert_not_beaten(const sl_plan_t *p, const sl_cost_t *c, const sl_seq_t *s, int64_t n,
                              const sl_policy_opts_t *opts, const char *what)
{
	for (size_t k = 0; k < sl_policy_count(); k++) {
		const char *name = sl_policy_at(k)->name;
		if (strcmp(name, "sluice") == 0)
			continue;
		double b = step_of(name, c, s, n, opts);
		if (!(p->step_ms <= b * (1 + 1e-12)))
			fail_msg("%s: sluice %.3f ms slower than %s %.3f ms", what, p->step_ms, name, b);
	}
}

/* --- tests --------------------------------------------------------------- */

/* Valid plans on random batches over cluster shapes and profiles, including
 * clusters whose size is not a multiple of the node size. */
static void sluice_valid_random(void **state)
{
	(void)state;
	static const struct {
		const char *profile;
		int32_t ranks, per_node;
		int64_t n;
	} shapes[] = {
		{"gpt-7b-flexsp", 1, 1, 16},     {"gpt-7b-flexsp", 2, 8, 40},
		{"gpt-7b-flexsp", 3, 8, 50},     {"gpt-7b-flexsp", 8, 8, 64},
		{"gpt-7b-flexsp", 13, 8, 100},   {"gpt-7b-flexsp", 64, 8, 512},
		{"gpt-7b-flexsp", 100, 8, 700},  {"gpt-7b-flexsp", 24, 4, 200},
		{"gpt-7b-flexsp", 32, 1, 256},   {"gpt-13b-flexsp", 64, 8, 512},
		{"gpt-30b-flexsp", 64, 8, 512},  {"gpt-7b-flexsp", 256, 8, 2048},
	};
	for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
		for (uint64_t seed = 1; seed <= 3; seed++) {
			sl_cost_t c;
			cost_for(shapes[k].profile, shapes[k].ranks, shapes[k].per_node, &c);
			int64_t maxl = longest_placeable(&c);
			if (maxl > SL_SYNTH_MAX_LEN)
				maxl = SL_SYNTH_MAX_LEN;
			sl_seq_t *s = lognormal_batch(seed * 7919 + k, shapes[k].n, maxl);
			char what[96];
			snprintf(what, sizeof(what), "%s N=%d G=%d n=%lld seed=%llu", shapes[k].profile,
			         shapes[k].ranks, shapes[k].per_node, (long long)shapes[k].n,
			         (unsigned long long)seed);
			sl_plan_t *p = plan_checked(&c, s, shapes[k].n, NULL, what);
			sl_plan_free(&p);
			free(s);
			sl_cost_fini(&c);
		}
	}
}

/* A ring-attention profile (T = max(compute, communication), bandwidth
 * depends on node locality) gives valid plans too. */
static void sluice_valid_ring(void **state)
{
	(void)state;
	sl_profile_t p;
	assert_int_equal(sl_profile_resolve("gpt-7b-flexsp", &p), SL_OK);
	snprintf(p.name, sizeof(p.name), "ring-test");
	p.sp_comm = SL_SP_RING;
	p.kv_bytes_per_token = 2.0 * 1048576.0;
	p.p2p_gbps_intra = 150;
	p.p2p_gbps_inter = 12;
	sl_cluster_t cl = {64, 8};
	sl_cost_t c;
	assert_int_equal(sl_cost_init(&c, &p, &cl), SL_OK);
	sl_seq_t *s = lognormal_batch(42, 512, SL_SYNTH_MAX_LEN);
	sl_plan_t *pl = plan_checked(&c, s, 512, NULL, "ring profile");
	sl_plan_free(&pl);
	free(s);
	sl_cost_fini(&c);
}

/* Same request and options give byte-identical plans, also when a work
 * limit cuts the search (which the plan then says), or is below one build
 * (`static` answers). */
static void sluice_deterministic(void **state)
{
	(void)state;
	sl_cost_t c;
	cost_for("gpt-7b-flexsp", 64, 8, &c);
	sl_seq_t *s = lognormal_batch(5, 512, SL_SYNTH_MAX_LEN);
	sl_policy_opts_t opts[5];
	memset(opts, 0, sizeof(opts));
	opts[1].work_limit = 20000; /* below one build */
	opts[2].time_limit_ms = 0.05; /* turned into a work limit at a fixed rate */
	opts[3].work_limit = 400000; /* a build or two, the search cut */
	opts[4].time_limit_ms = 3;
	for (int k = 0; k < 5; k++) {
		sl_plan_t *a = plan_checked(&c, s, 512, &opts[k], "determinism a");
		sl_plan_t *b = plan_checked(&c, s, 512, &opts[k], "determinism b");
		assert_same_plan_json(a, b);
		if (k > 0) {
			assert_int_equal(a->search_truncated, 1);
			assert_non_null(strstr(a->note, "work limit"));
			assert_true((strstr(a->note, "below one build") != NULL) == (k <= 2));
		} else {
			assert_int_equal(a->search_truncated, 0);
		}
		sl_plan_free(&a);
		sl_plan_free(&b);
	}
	free(s);
	sl_cost_fini(&c);
}

/* Edge cases: one rank, one sequence, all tiny, one giant, exactly cap and
 * one past it, fewer sequences than ranks, a cluster that is not a whole
 * number of nodes. */
static void sluice_edges(void **state)
{
	(void)state;
	static const struct {
		int32_t ranks, per_node;
	} shapes[] = {{1, 1}, {1, 8}, {5, 8}, {13, 8}, {64, 8}};
	for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
		sl_cost_t c;
		cost_for("gpt-7b-flexsp", shapes[k].ranks, shapes[k].per_node, &c);
		int64_t big = longest_placeable(&c);
		char what[96];
		/* one sequence, short and giant */
		int64_t lens1[] = {1, 1000, c.cap, c.cap + 1, big};
		for (size_t q = 0; q < sizeof(lens1) / sizeof(lens1[0]); q++) {
			sl_seq_t one = {7, lens1[q]};
			snprintf(what, sizeof(what), "N=%d one sequence of %lld", shapes[k].ranks,
			         (long long)lens1[q]);
			sl_plan_t *p = plan_checked(&c, &one, 1, NULL, what);
			sl_plan_free(&p);
		}
		/* all tiny */
		sl_seq_t tiny[300];
		for (int i = 0; i < 300; i++) {
			tiny[i].id = i;
			tiny[i].length = 1 + i % 3;
		}
		snprintf(what, sizeof(what), "N=%d tiny", shapes[k].ranks);
		sl_plan_t *p = plan_checked(&c, tiny, 300, NULL, what);
		sl_plan_free(&p);
		/* one giant among shorts, and two giants */
		sl_seq_t mix[40];
		for (int i = 0; i < 40; i++) {
			mix[i].id = 100 + i;
			mix[i].length = 200 + 37 * i;
		}
		mix[3].length = big;
		snprintf(what, sizeof(what), "N=%d giant among shorts", shapes[k].ranks);
		p = plan_checked(&c, mix, 40, NULL, what);
		sl_plan_free(&p);
		mix[17].length = big - 1;
		snprintf(what, sizeof(what), "N=%d two giants", shapes[k].ranks);
		p = plan_checked(&c, mix, 40, NULL, what);
		sl_plan_free(&p);
		/* every length the same, exactly cap */
		sl_seq_t same[20];
		for (int i = 0; i < 20; i++) {
			same[i].id = i;
			same[i].length = c.cap;
		}
		snprintf(what, sizeof(what), "N=%d all cap", shapes[k].ranks);
		p = plan_checked(&c, same, 20, NULL, what);
		sl_plan_free(&p);
		/* a sequence too long for the cluster is refused before planning */
		sl_seq_t over = {9, big + 1};
		sl_plan_t *q = NULL;
		assert_int_equal(sl_plan_request("sluice", &c, &over, 1, NULL, &q), SL_EINFEASIBLE);
		assert_null(q);
		sl_cost_fini(&c);
	}
}

/* Never slower than static or batch-adaptive on random log-normal batches
 * (holds by construction: their plans are candidates too). */
static void sluice_not_slower(void **state)
{
	(void)state;
	sl_cost_t c;
	cost_for("gpt-7b-flexsp", 64, 8, &c);
	sl_policy_opts_t o;
	memset(&o, 0, sizeof(o));
	o.trace_max_len = SL_SYNTH_MAX_LEN;
	for (uint64_t seed = 11; seed < 17; seed++) {
		sl_seq_t *s = lognormal_batch(seed, 512, SL_SYNTH_MAX_LEN);
		double a = step_of("sluice", &c, s, 512, &o);
		double b = step_of("static", &c, s, 512, &o);
		double d = step_of("batch-adaptive", &c, s, 512, &o);
		assert_true(a <= b * (1 + 1e-12));
		assert_true(a <= d * (1 + 1e-12));
		free(s);
	}
	sl_cost_fini(&c);
}

/* Long-dominated batches (issue 10): log-normal lengths with median 26,000
 * and sigma 1, truncated at 192K, 512 per batch on 64 ranks. Every
 * registered policy's plan is at least as slow as sluice's, and sluice's own
 * plans (whole-node rings shared by several long sequences) are within 1%
 * of the ideal; with a ring per sequence they were 4-5% above it, 1.6-2.2%
 * behind flexsp. */
static void sluice_long_dominated(void **state)
{
	(void)state;
	sl_policy_opts_t o = {.trace_max_len = SL_SYNTH_MAX_LEN};
	sl_cost_t c;
	cost_for("gpt-7b-flexsp", 64, 8, &c);
	for (uint64_t seed = 1; seed <= 3; seed++) {
		sl_seq_t *s = lognormal_batch_of(seed, 512, log(26000.0), 1.0, SL_SYNTH_MAX_LEN);
		sl_plan_t *p = plan_checked(&c, s, 512, &o, "long-dominated");
		double r = p->step_ms / p->ideal_ms;
		print_message("seed %llu: step/ideal %.4f (%s)\n", (unsigned long long)seed, r,
		              p->note);
		if (!(r <= 1.01))
			fail_msg("seed %llu: step/ideal %.4f above 1.01", (unsigned long long)seed, r);
		char what[32];
		snprintf(what, sizeof(what), "seed %llu", (unsigned long long)seed);
		assert_not_beaten(p, &c, s, 512, &o, what);
		sl_plan_free(&p);
		free(s);
	}
	sl_cost_fini(&c);
}

/* Small long-dominated batches (1-16 sequences of median 26K tokens on 16
 * and 64 ranks): the default limit pays for everything here, so the plan is
 * not marked cut, and no registered policy is faster. flexsp's fallback
 * used to be charged a flat 12M units, over a quarter of a small batch's
 * limit: it was never scored and every such plan said "search cut". */
static void sluice_small_long_batches(void **state)
{
	(void)state;
	sl_policy_opts_t o = {.trace_max_len = SL_SYNTH_MAX_LEN};
	const int32_t ranks[] = {16, 64};
	for (size_t ri = 0; ri < sizeof(ranks) / sizeof(ranks[0]); ri++) {
		sl_cost_t c;
		cost_for("gpt-7b-flexsp", ranks[ri], 8, &c);
		for (int64_t n = 1; n <= 16; n *= 2) {
			sl_seq_t *s = lognormal_batch_of((uint64_t)(7 + n), n, log(26000.0), 1.0,
			                                 SL_SYNTH_MAX_LEN);
			sl_plan_t *p = plan_checked(&c, s, n, &o, "small long batch");
			char what[48];
			snprintf(what, sizeof(what), "%d ranks, %lld sequences", (int)ranks[ri],
			         (long long)n);
			if (p->search_truncated)
				fail_msg("%s: marked cut (%s)", what, p->note);
			assert_not_beaten(p, &c, s, n, &o, what);
			sl_plan_free(&p);
			free(s);
		}
		sl_cost_fini(&c);
	}
}

/* Code-file-like batches (issue 10, part 3): log-normal lengths with median
 * 500 and sigma 2 (a third of the sequences hold 60-70% of the tokens, as
 * the files under /usr/include do), 512 per batch on 64 ranks. Every
 * registered policy is at least as slow as sluice, and sluice's mean
 * step/ideal over four seeds is at most 1.06: such batches count as
 * long-dominated by their tokens (whole-node rings, builds without riders)
 * and the LP's rounding keeps to degrees that finish near its T. Before
 * those changes the mean was 1.067 (1.0859, 1.0577, 1.0445, 1.0800); after,
 * 1.049. */
static void sluice_code_files(void **state)
{
	(void)state;
	sl_policy_opts_t o = {.trace_max_len = SL_SYNTH_MAX_LEN};
	sl_cost_t c;
	cost_for("gpt-7b-flexsp", 64, 8, &c);
	double sum = 0;
	int nb = 0;
	for (uint64_t seed = 1; seed <= 4; seed++) {
		sl_seq_t *s = lognormal_batch_of(seed, 512, log(500.0), 2.0, SL_SYNTH_MAX_LEN);
		sl_plan_t *p = plan_checked(&c, s, 512, &o, "code files");
		double r = p->step_ms / p->ideal_ms;
		print_message("seed %llu: step/ideal %.4f (%s)\n", (unsigned long long)seed, r,
		              p->note);
		char what[32];
		snprintf(what, sizeof(what), "seed %llu", (unsigned long long)seed);
		assert_not_beaten(p, &c, s, 512, &o, what);
		sum += r;
		nb++;
		sl_plan_free(&p);
		free(s);
	}
	if (!(sum / nb <= 1.06))
		fail_msg("mean step/ideal %.4f above 1.06", sum / nb);
	sl_cost_fini(&c);
}

/* Few sequences per rank (16 ranks, the first 32 lengths of the Wikipedia
 * trace, cap 4,973): the LP's fractional fixed costs put its T near 825 ms
 * and its roundings put the two longest sequences on 8 ranks each, which
 * costs every rank a second micro-batch (1,690 ms); the ladder of step
 * targets finds degrees for one micro-batch per rank (about 1,056 ms).
 * No plan can beat 1,044 ms (bench/intbound.c's bound); before the ladder
 * sluice kept sluice-aligned's 1,402 ms. */
static void sluice_few_per_rank(void **state)
{
	(void)state;
	static const int64_t len[32] = {368, 99,   1330, 945, 188, 236, 74,   1028,
	                                4053, 34,  1385, 132, 466, 2705, 532, 310,
	                                563, 1747, 91,   234, 466, 756,  40,  180,
	                                6592, 147, 63,   5801, 118, 92,  48,  210};
	sl_seq_t s[32];
	for (int i = 0; i < 32; i++) {
		s[i].id = i;
		s[i].length = len[i];
	}
	sl_cost_t c;
	cost_for("gpt-7b-flexsp", 16, 8, &c);
	sl_plan_t *p = plan_checked(&c, s, 32, NULL, "few per rank");
	print_message("step %.1f ms, ideal %.1f ms (%s)\n", p->step_ms, p->ideal_ms, p->note);
	if (!(p->step_ms <= 1100))
		fail_msg("step %.1f ms above 1100 ms", p->step_ms);
	sl_plan_free(&p);
	sl_cost_fini(&c);
}

/* The polish of small requests (planner/sluice_polish.c): 16 sequences of
 * usr-include (sizes / 4 of the files under /usr/include) on 16 ranks. The
 * builds put the 53,930-token sequence on a whole node (8 ranks, offloading)
 * and the short ones after it on that node's ranks: 5,275 ms. Its ring one
 * rank narrower (7 ranks, 4,950 ms) leaves a rank that runs the short
 * sequences from the start, while the other node runs the rest in two
 * micro-batches: about 4,950 ms, which the polish finds. No plan beats
 * 4,767 ms (sluice-optimum's bound). Plans stay deterministic. */
static void sluice_polish_small(void **state)
{
	(void)state;
	static const int64_t len[16] = {53930, 29208, 8475, 17931, 12345, 9430, 6148, 5478,
	                                3715,  3089,  1318, 602,   810,   626,  340,  1937};
	sl_seq_t s[16];
	for (int i = 0; i < 16; i++) {
		s[i].id = 100 + i;
		s[i].length = len[i];
	}
	sl_cost_t c;
	cost_for("gpt-7b-flexsp", 16, 8, &c);
	sl_plan_t *p = plan_checked(&c, s, 16, NULL, "polish small");
	sl_plan_t *q = plan_checked(&c, s, 16, NULL, "polish small again");
	print_message("step %.1f ms, ideal %.1f ms (%s)\n", p->step_ms, p->ideal_ms, p->note);
	if (!(p->step_ms <= 5000))
		fail_msg("step %.1f ms above 5000 ms (5,275 before the polish)", p->step_ms);
	assert_same_plan_json(p, q);
	sl_plan_free(&p);
	sl_plan_free(&q);
	sl_cost_fini(&c);
}

/* The method itself: on fixed synthetic batches (64 ranks, 512 sequences)
 * the built plan, not a baseline's, is kept; it is within 20% of the ideal
 * and at least 1.25x faster than the best single SP degree per batch. */
static void sluice_quality(void **state)
{
	(void)state;
	sl_cost_t c;
	cost_for("gpt-7b-flexsp", 64, 8, &c);
	double sum = 0;
	int nb = 0;
	for (uint64_t seed = 100; seed < 104; seed++) {
		sl_seq_t *s = lognormal_batch(seed, 512, SL_SYNTH_MAX_LEN);
		sl_plan_t *p = plan_checked(&c, s, 512, NULL, "quality");
		double ba = step_of("batch-adaptive", &c, s, 512, NULL);
		double r = p->step_ms / p->ideal_ms;
		print_message("seed %llu: step/ideal %.4f, batch-adaptive / sluice %.3f\n",
		              (unsigned long long)seed, r, ba / p->step_ms);
		assert_null(strstr(p->note, "kept the plan of"));
		assert_true(r <= 1.20);
		assert_true(ba >= 1.25 * p->step_ms);
		sum += r;
		nb++;
		sl_plan_free(&p);
		free(s);
	}
	assert_true(sum / nb <= 1.15);
	sl_cost_fini(&c);
}

/* Rings stay inside a node when they fit one, else span as few nodes as
 * possible; multi-rank groups use any degree, not only powers of two. */
static void sluice_node_local(void **state)
{
	(void)state;
	sl_cost_t c;
	cost_for("gpt-7b-flexsp", 64, 8, &c);
	int any_odd = 0, wide = 0;
	for (uint64_t seed = 200; seed < 204; seed++) {
		sl_seq_t *s = lognormal_batch(seed, 512, SL_SYNTH_MAX_LEN);
		sl_plan_t *p = plan_checked(&c, s, 512, NULL, "node local");
		for (int64_t g = 0; g < p->ngroups; g++) {
			const sl_group_t *gr = &p->groups[g];
			const int32_t *rk = sl_group_ranks(p, gr);
			if (gr->nranks <= 1)
				continue;
			wide++;
			if (gr->nranks & (gr->nranks - 1))
				any_odd = 1;
			char seen[8] = {0};
			int nodes = 0;
			for (int32_t k = 0; k < gr->nranks; k++)
				if (!seen[rk[k] / 8]++)
					nodes++;
			assert_int_equal(nodes, (gr->nranks + 7) / 8);
			/* ring order: node boundaries crossed at most once per node */
			int changes = 0;
			for (int32_t k = 1; k < gr->nranks; k++)
				changes += rk[k] / 8 != rk[k - 1] / 8;
			assert_true(changes <= nodes - 1);
		}
		sl_plan_free(&p);
		free(s);
	}
	assert_true(wide > 0);
	assert_true(any_odd);
	sl_cost_fini(&c);
}

/* Stage 2's exact MILP: on one rank with cap 100 tokens the sequences
 * 50 40 35 25 21 18 11 fill two micro-batches exactly (50+21+18+11,
 * 40+35+25), which best-fit decreasing and its moves miss by one token;
 * the plan must use two micro-batches and offload nothing. */
static void sluice_exact_microbatches(void **state)
{
	(void)state;
	sl_profile_t p;
	assert_int_equal(sl_profile_resolve("gpt-7b-flexsp", &p), SL_OK);
	snprintf(p.name, sizeof(p.name), "cap100");
	p.params = 0;
	p.model_state_bytes = 0;
	p.act_bytes_per_token = 1e6;
	p.gpu_mem_bytes = 100e6;
	p.alpha1 = 0;
	p.alpha2 = 1.0;
	p.beta = 10.0;
	p.pcie_gbps = 1.0; /* offloading a token costs ~0.95 ms: 100 of them > beta */
	sl_cluster_t cl = {1, 1};
	sl_cost_t c;
	assert_int_equal(sl_cost_init(&c, &p, &cl), SL_OK);
	assert_int_equal(c.cap, 100);
	static const int64_t len[] = {50, 40, 35, 25, 21, 18, 11};
	sl_seq_t s[7];
	for (int i = 0; i < 7; i++) {
		s[i].id = i;
		s[i].length = len[i];
	}
	sl_plan_t *pl = plan_checked(&c, s, 7, NULL, "exact micro-batches");
	assert_int_equal(pl->ngroups, 2);
	for (int64_t k = 0; k < pl->nitems; k++)
		assert_true(pl->items[k].offload == 0.0);
	assert_true(fabs(pl->step_ms - (200.0 + 2 * 10.0)) < 1e-9);
	sl_plan_free(&pl);
	sl_cost_fini(&c);
}

/* Selective offloading: when a micro-batch's fixed cost dwarfs the PCIe
 * time, one rank holds 1.5 x cap tokens in one micro-batch, offloading the
 * excess, rather than running two. Offloading is then cheaper than the fixed
 * cost it frees: the ideal's work(s) takes f = 1 too (since 2026-12), so it
 * stays a lower bound here (under the old f = f_d rule this plan beat it). */
static void sluice_offload_saves_microbatch(void **state)
{
	(void)state;
	sl_profile_t p;
	assert_int_equal(sl_profile_resolve("gpt-7b-flexsp", &p), SL_OK);
	snprintf(p.name, sizeof(p.name), "cheap-offload");
	p.params = 0;
	p.model_state_bytes = 0;
	p.act_bytes_per_token = 1e6;
	p.gpu_mem_bytes = 100e6; /* cap 100 */
	p.alpha1 = 0;
	p.alpha2 = 1.0;
	p.beta = 1000.0;
	p.pcie_gbps = 100.0; /* 50 tokens offloaded: ~0.48 ms << beta */
	sl_cluster_t cl = {1, 1};
	sl_cost_t c;
	assert_int_equal(sl_cost_init(&c, &p, &cl), SL_OK);
	sl_seq_t s[6];
	for (int i = 0; i < 6; i++) {
		s[i].id = i;
		s[i].length = 25;
	}
	double c_off = c.prof.act_bytes_per_token / 1048576.0 / c.prof.pcie_gbps;
	assert_true(c_off * (double)c.cap < c.prof.beta); /* offloading is the cheaper */
	sl_plan_t *pl = plan_checked(&c, s, 6, NULL, "offload saves a micro-batch");
	assert_true(pl->step_ms >= pl->ideal_ms); /* plan_checked asserts it too */
	assert_int_equal(pl->ngroups, 1);
	double off = 0;
	for (int64_t k = 0; k < pl->nitems; k++)
		off += pl->items[k].offload * 25;
	assert_true(off >= 50 - 1e-6);
	assert_true(pl->step_ms < 1000 + 150 + 1);
	sl_plan_free(&pl);
	sl_cost_fini(&c);
}

/* Plans n sequences with `policy` under a deadline that has already passed:
 * the answer must be `fallback`'s valid plan, marked truncated, its note
 * containing `note`. Returns the plan (the caller frees it). */
static sl_plan_t *plan_past_deadline(const sl_cost_t *c, const sl_seq_t *s, int64_t n,
                                     const char *policy, const char *fallback, const char *note)
{
	sl_policy_opts_t d = {.deadline_ms = sl_now_ms() - 1};
	sl_plan_t *p = NULL;
	assert_int_equal(sl_plan_request(policy, c, s, n, &d, &p), SL_OK);
	assert_int_equal(sl_plan_validate(p, c, report, "passed deadline"), 0);
	assert_int_equal(p->search_truncated, 1);
	assert_string_equal(p->policy, fallback);
	assert_non_null(strstr(p->note, note));
	return p;
}

/* The wall-clock stops: a cancelled request gets SL_ETIMEOUT and no plan; a
 * deadline already passed gives the fallback's valid plan, marked truncated
 * with a note naming both policies; a big batch with a 100 ms deadline
 * returns a valid plan marked truncated, its note saying the deadline (not
 * the end of the search or the work limit) stopped it. No bound on the time
 * it took: the test asserts what the planner did, never how fast the
 * machine is. */
static void sluice_deadline(void **state)
{
	(void)state;
	sl_cost_t c;
	cost_for("gpt-7b-flexsp", 64, 8, &c);
	sl_seq_t *s = lognormal_batch(31, 512, longest_placeable(&c));
	sl_plan_t *p = NULL;
	sl_cancel_t cancel;
	atomic_init(&cancel, 1);
	sl_policy_opts_t o = {.cancel = &cancel};
	assert_int_equal(sl_plan_request("sluice", &c, s, 512, &o, &p), SL_ETIMEOUT);
	assert_null(p);
	p = plan_past_deadline(&c, s, 512, "sluice", "static",
	                       "deadline reached before sluice had a plan");
	sl_plan_free(&p);
	free(s);
	sl_cost_fini(&c);

	cost_for("gpt-7b-flexsp", 1024, 8, &c);
	int64_t n = 50000;
	s = lognormal_batch(32, n, longest_placeable(&c));
	sl_policy_opts_t h = {.deadline_ms = sl_now_ms() + 100};
	assert_int_equal(sl_plan_request("sluice", &c, s, n, &h, &p), SL_OK);
	assert_int_equal(sl_plan_validate(p, &c, report, "100 ms deadline"), 0);
	assert_int_equal(p->search_truncated, 1);
	/* the deadline, not the work limit (which also marks a plan truncated) */
	if (strstr(p->note, "deadline") == NULL)
		fail_msg("not cut by the deadline: %s", p->note);
	sl_plan_free(&p);
	free(s);
	sl_cost_fini(&c);
}

/* A small work limit bounds the work of every phase on a large batch of
 * long sequences (20,000, median 26K tokens, on 1,024 ranks): the LP's
 * candidate costing, the builds (which cannot stop halfway) and the
 * fallbacks scored. The planner's own count of the work it charged
 * (deterministic, no clock involved) stays within twice the limit, and a
 * valid plan comes back marked truncated: sluice's own when the limit pays
 * for a build, else `static`'s. The default limit on the same batch spends
 * more, so the small ones did cut something. */
static void sluice_work_limit_bounds(void **state)
{
	(void)state;
	sl_cost_t c;
	cost_for("gpt-7b-flexsp", 1024, 8, &c);
	int64_t n = 20000;
	sl_seq_t *s = lognormal_batch_of(41, n, log(26000.0), 1.0, 196608);
	sl_policy_opts_t none;
	memset(&none, 0, sizeof(none));
	sl_plan_t *p = plan_checked(&c, s, n, &none, "default limit");
	int64_t full = p->work_units;
	sl_plan_free(&p);
	static const struct {
		int64_t work_limit;
		double time_limit_ms;
		int own; /* sluice's own build expected (else static's plan) */
	} lim[] = {{1000000, 0, 0}, {20000000, 0, 1}, {0, 100, 1}, {0, 300, 1}};
	for (size_t k = 0; k < sizeof(lim) / sizeof(lim[0]); k++) {
		sl_policy_opts_t o;
		memset(&o, 0, sizeof(o));
		o.work_limit = lim[k].work_limit;
		o.time_limit_ms = lim[k].time_limit_ms;
		int64_t units = o.work_limit > 0 ? o.work_limit
		                                 : (int64_t)(o.time_limit_ms * SL_WORK_UNITS_PER_MS);
		char what[64];
		snprintf(what, sizeof(what), "limit of %lld units", (long long)units);
		p = plan_checked(&c, s, n, &o, what);
		print_message("%s: charged %lld units (default limit: %lld), note: %s\n", what,
		              (long long)p->work_units, (long long)full, p->note);
		assert_int_equal(p->search_truncated, 1);
		assert_non_null(strstr(p->note, "work limit"));
		assert_true((strstr(p->note, "below one build") == NULL) == lim[k].own);
		if (!(p->work_units > 0 && p->work_units <= 2 * units))
			fail_msg("%s: the planner charged %lld units", what, (long long)p->work_units);
		assert_true(p->work_units < full);
		sl_plan_free(&p);
	}
	/* On 4,096 ranks costing every degree of every length alone is three
	 * times what 100 ms allows: the LP is what must be cut. */
	sl_cost_fini(&c);
	cost_for("gpt-7b-flexsp", 4096, 8, &c);
	sl_policy_opts_t o = {.time_limit_ms = 100};
	p = plan_checked(&c, s, n, &o, "4096 ranks, 100 ms");
	print_message("4096 ranks, 100 ms: charged %lld units, note: %s\n",
	              (long long)p->work_units, p->note);
	assert_int_equal(p->search_truncated, 1);
	assert_null(strstr(p->note, "below one build"));
	if (!(p->work_units <= 2 * 100 * (int64_t)SL_WORK_UNITS_PER_MS))
		fail_msg("4096 ranks, 100 ms: the planner charged %lld units",
		         (long long)p->work_units);
	sl_plan_free(&p);
	free(s);
	sl_cost_fini(&c);
}

/* --- sluice-aligned (issue 13) -------------------------------------------- */

/* Every rule frameworks with their own CP attention need (megatron.py's
 * megatron_check): each group a power-of-two aligned block of consecutive
 * ranks in ascending order, each slot's groups covering every rank. */
static void aligned_rules(const sl_plan_t *p, const char *what)
{
	char *busy = calloc((size_t)p->ranks, 1);
	assert_non_null(busy);
	for (int32_t s = 0; s < p->nslots; s++) {
		memset(busy, 0, (size_t)p->ranks);
		for (int32_t k = 0; k < p->slots[s].ngroups; k++) {
			const sl_group_t *g = &p->groups[p->slots[s].group_off + k];
			const int32_t *r = sl_group_ranks(p, g);
			int32_t d = g->nranks;
			if (d < 1 || (d & (d - 1)) != 0 || r[0] % d != 0)
				fail_msg("%s: slot %d group %d: %d ranks from %d is not an aligned power of two",
				         what, s, k, d, r[0]);
			for (int32_t i = 0; i < d; i++) {
				if (r[i] != r[0] + i)
					fail_msg("%s: slot %d group %d: ranks not consecutive ascending", what, s,
					         k);
				busy[r[i]] = 1;
			}
		}
		for (int32_t r = 0; r < p->ranks; r++)
			if (!busy[r])
				fail_msg("%s: slot %d leaves rank %d idle", what, s, r);
	}
	free(busy);
}

/* Plans with sluice-aligned: valid under the reference rules, aligned,
 * deterministic (two runs, byte-identical JSON). Returns the plan. */
static sl_plan_t *aligned_checked(const sl_cost_t *c, const sl_seq_t *s, int64_t n,
                                  const sl_policy_opts_t *o, const char *what)
{
	sl_plan_t *p = NULL, *q = NULL;
	if (sl_plan_request("sluice-aligned", c, s, n, o, &p) != SL_OK)
		fail_msg("%s: sluice-aligned failed: %s", what, sl_errmsg());
	assert_string_equal(p->policy, "sluice-aligned");
	assert_int_equal(sl_plan_validate(p, c, report, (void *)what), 0);
	aligned_rules(p, what);
	assert_int_equal(sl_plan_request("sluice-aligned", c, s, n, o, &q), SL_OK);
	assert_same_plan_json(p, q);
	sl_plan_free(&q);
	return p;
}

/* Wikipedia-like and long-dominated batches on 8, 16 and 64 ranks: every
 * plan keeps the rules, and its step stays within 3x of sluice's (the
 * ratio is printed; the restriction costs something, not a multiple). */
static void aligned_batches(void **state)
{
	(void)state;
	static const int32_t ranks[] = {8, 16, 64};
	sl_policy_opts_t o = {.trace_max_len = SL_SYNTH_MAX_LEN};
	for (size_t k = 0; k < sizeof(ranks) / sizeof(ranks[0]); k++) {
		sl_cost_t c;
		cost_for("gpt-7b-flexsp", ranks[k], 8, &c);
		int64_t longest = longest_placeable(&c);
		int64_t max_len = longest < SL_SYNTH_MAX_LEN ? longest : SL_SYNTH_MAX_LEN;
		for (int kind = 0; kind < 2; kind++) {
			int64_t n = 8 * ranks[k];
			sl_seq_t *s = kind == 0 ? lognormal_batch(7 + k, n, max_len)
			                        : lognormal_batch_of(7 + k, n, log(26000.0), 1.0, max_len);
			char what[64];
			snprintf(what, sizeof(what), "%s, %d ranks", kind ? "long-dominated" : "wikipedia",
			         ranks[k]);
			sl_plan_t *p = aligned_checked(&c, s, n, &o, what);
			double base = step_of("sluice", &c, s, n, &o);
			double r = p->step_ms / base;
			print_message("%s: sluice-aligned %.1f ms, sluice %.1f ms (%.3fx), ideal %.1f ms, "
			              "%s\n", what, p->step_ms, base, r, p->ideal_ms, p->note);
			if (!(r <= 3.0))
				fail_msg("%s: sluice-aligned %.3fx sluice's step", what, r);
			/* the default policy is never slower than a registered one */
			if (!(base <= p->step_ms * (1 + 1e-12)))
				fail_msg("%s: sluice %.3f ms slower than sluice-aligned %.3f ms", what, base,
				         p->step_ms);
			sl_plan_free(&p);
			free(s);
		}
		sl_cost_fini(&c);
	}
}

/* A deadline that passes before sluice-aligned has a plan falls back to
 * sluice-aligned itself without the deadline (a bounded greedy pass), never
 * to static, whose plans leave ranks idle in a slot: the rules the user
 * asked for still hold, and the plan says it was cut. */
static void aligned_deadline(void **state)
{
	(void)state;
	sl_cost_t c;
	cost_for("gpt-7b-flexsp", 64, 8, &c);
	sl_seq_t *s = lognormal_batch(41, 512, longest_placeable(&c));
	sl_plan_t *p = plan_past_deadline(&c, s, 512, "sluice-aligned", "sluice-aligned",
	                                  "before sluice-aligned had a plan; fallback "
	                                  "sluice-aligned without the deadline");
	aligned_rules(p, "aligned, passed deadline");
	sl_plan_free(&p);
	free(s);
	sl_cost_fini(&c);
}

/* Edges: a rank count that is not a power of two (12 = 8 + 4 blocks), one
 * sequence on 8 ranks (a slot of all 8), the longest placeable sequence,
 * and too few sequences for 12 ranks' two blocks (refused, naming the
 * rule). */
static void aligned_edges(void **state)
{
	(void)state;
	sl_policy_opts_t o = {0};
	sl_cost_t c;
	cost_for("gpt-7b-flexsp", 12, 4, &c);
	sl_seq_t *s = lognormal_batch(3, 200, SL_SYNTH_MAX_LEN);
	sl_plan_free((sl_plan_t *[]){aligned_checked(&c, s, 200, &o, "12 ranks")});
	sl_plan_t *p = NULL;
	assert_int_equal(sl_plan_request("sluice-aligned", &c, s, 1, &o, &p), SL_EINFEASIBLE);
	assert_null(p);
	assert_non_null(strstr(sl_errmsg(), "cannot keep all 12 ranks busy"));
	sl_plan_free((sl_plan_t *[]){aligned_checked(&c, s, 2, &o, "12 ranks, 2 sequences")});
	free(s);
	sl_cost_fini(&c);

	cost_for("gpt-7b-flexsp", 8, 8, &c);
	sl_seq_t one = {42, 1000};
	p = aligned_checked(&c, &one, 1, &o, "one sequence");
	assert_int_equal(p->nslots, 1);
	assert_int_equal(p->groups[0].nranks, 8);
	sl_plan_free(&p);
	sl_seq_t big[3] = {{1, longest_placeable(&c)}, {2, 5}, {3, 7}};
	sl_plan_free((sl_plan_t *[]){aligned_checked(&c, big, 3, &o, "longest")});
	sl_cost_fini(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sluice_valid_random),
		cmocka_unit_test(sluice_valid_ring),
		cmocka_unit_test(sluice_deterministic),
		cmocka_unit_test(sluice_edges),
		cmocka_unit_test(sluice_not_slower),
		cmocka_unit_test(sluice_long_dominated),
		cmocka_unit_test(sluice_code_files),
		cmocka_unit_test(sluice_small_long_batches),
		cmocka_unit_test(sluice_few_per_rank),
		cmocka_unit_test(sluice_polish_small),
		cmocka_unit_test(sluice_quality),
		cmocka_unit_test(sluice_node_local),
		cmocka_unit_test(sluice_exact_microbatches),
		cmocka_unit_test(sluice_offload_saves_microbatch),
		cmocka_unit_test(sluice_deadline),
		cmocka_unit_test(sluice_work_limit_bounds),
		cmocka_unit_test(aligned_batches),
		cmocka_unit_test(aligned_edges),
		cmocka_unit_test(aligned_deadline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
