/* Tests of the `flexsp` policy (planner/flexsp.c, flexsp_mb.c): the
 * bucketing dynamic programme against hand and brute-force answers, plan
 * validity over random batches and cluster shapes, byte-identical
 * determinism (also across threads), never worse than the homogeneous
 * best-fit-decreasing plans it starts from, limits, and over-long
 * sequences. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/sluice.h"
#include "../../planner/flexsp_internal.h"
#include "../../planner/pack.h"

/* ---- helpers ---- */

static void cost_for(sl_cost_t *c, const char *profile, int32_t n, int32_t g)
{
	sl_cluster_t cl = {n, g};
	sl_err rc = sl_cost_init(c, sl_profile_preset(profile), &cl);
	if (rc != SL_OK)
		fail_msg("sl_cost_init(%s, %d, %d): %s", profile, n, g, sl_errmsg());
}

/* A batch shaped like the Wikipedia sample (the built-in synthetic trace)
 * from a seed, lengths capped at max_len. */
static sl_seq_t *batch(uint64_t seed, int64_t n, int64_t max_len)
{
	sl_lengths_t l = {0};
	assert_int_equal(
	    sl_trace_synthetic(seed, (size_t)n, SL_SYNTH_MU, SL_SYNTH_SIGMA, max_len, &l), SL_OK);
	sl_seq_t *s = malloc((size_t)n * sizeof(*s));
	assert_non_null(s);
	for (int64_t i = 0; i < n; i++) {
		s[i].id = 1000 + i;
		s[i].length = l.v[i];
	}
	sl_lengths_free(&l);
	return s;
}

static void report(void *arg, const char *msg)
{
	(void)arg;
	print_error("violation: %s\n", msg);
}

static sl_plan_t *plan_of(const char *policy, const sl_cost_t *c, const sl_seq_t *s, int64_t n,
                          const sl_policy_opts_t *o)
{
	sl_plan_t *p = NULL;
	sl_err rc = sl_plan_request(policy, c, s, n, o, &p);
	if (rc != SL_OK)
		fail_msg("%s on %d ranks, %lld sequences: %s", policy, c->cl.ranks, (long long)n,
		         sl_errmsg());
	return p;
}

static void assert_valid(const sl_plan_t *p, const sl_cost_t *c)
{
	int64_t bad = sl_plan_validate(p, c, report, NULL);
	if (bad != 0)
		fail_msg("%s plan on %d ranks breaks %lld rules", p->policy, c->cl.ranks,
		         (long long)bad);
	assert_string_equal(p->policy, "flexsp");
	assert_true(p->step_ms >= p->ideal_ms * (1 - 1e-9));
}

/* ---- bucketing ---- */

/* Brute force: least padding of m sorted lengths in nb contiguous buckets. */
static int64_t brute_pad(const int64_t *len, int64_t m, int32_t nb, int64_t from)
{
	if (nb == 1) {
		int64_t pad = 0;
		for (int64_t i = from; i < m; i++)
			pad += len[from] - len[i];
		return pad;
	}
	int64_t best = INT64_MAX;
	for (int64_t cut = from + 1; cut <= m - (nb - 1); cut++) {
		int64_t pad = 0;
		for (int64_t i = from; i < cut; i++)
			pad += len[from] - len[i];
		int64_t rest = brute_pad(len, m, nb - 1, cut);
		if (rest != INT64_MAX && pad + rest < best)
			best = pad + rest;
	}
	return best;
}

static void flexsp_buckets_hand(void **state)
{
	(void)state;
	/* Three clusters: {100, 98, 97} pads 2 + 3, {50, 49} pads 1, {10, 9, 8}
	 * pads 1 + 2: 9 tokens with 3 buckets, starting at 0, 3, 5. */
	const int64_t len[8] = {100, 98, 97, 50, 49, 10, 9, 8};
	int64_t start[8];
	assert_int_equal(planner_flexsp_buckets(len, 8, 3, start), 9);
	assert_int_equal(start[0], 0);
	assert_int_equal(start[1], 3);
	assert_int_equal(start[2], 5);
	/* One bucket pads everything to 100. */
	assert_int_equal(planner_flexsp_buckets(len, 8, 1, start), 100 * 8 - 421);
	/* Two: {100 .. 49} pads 0 + 2 + 3 + 50 + 51, {10, 9, 8} pads 3 (better
	 * than {100, 98, 97} and the rest padded to 50: 5 + 124). */
	assert_int_equal(planner_flexsp_buckets(len, 8, 2, start), 109);
	assert_int_equal(start[1], 5);

	/* FlexSP's count rule: real tokens 421. With room 421 + 2 * 9 = 439 the
	 * allowance is 9 tokens: 3 buckets (padding 9) are the first within it. */
	int32_t nb = 0;
	assert_int_equal(planner_flexsp_bucketize(len, 8, 439.0, 16, start, &nb), 9);
	assert_int_equal(nb, 3);
	/* Lots of room: one bucket already fits the rule. */
	assert_int_equal(planner_flexsp_bucketize(len, 8, 1e9, 16, start, &nb), 379);
	assert_int_equal(nb, 1);
	/* No room at all: grows until padding is gone (one bucket per length). */
	assert_int_equal(planner_flexsp_bucketize(len, 8, 0.0, 16, start, &nb), 0);
	assert_int_equal(nb, 8);
	/* ... or until the cap. */
	assert_int_equal(planner_flexsp_bucketize(len, 8, 0.0, 4, start, &nb),
	                 planner_flexsp_buckets(len, 8, 4, start));
	assert_int_equal(nb, 4);
}

static void flexsp_buckets_brute(void **state)
{
	(void)state;
	uint64_t x = 12345;
	for (int trial = 0; trial < 200; trial++) {
		int64_t m = 1 + (int64_t)(trial % 11);
		int64_t len[16];
		for (int64_t i = 0; i < m; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			len[i] = 1 + (int64_t)((x >> 33) % 50);
		}
		/* sort decreasing */
		for (int64_t i = 1; i < m; i++)
			for (int64_t j = i; j > 0 && len[j] > len[j - 1]; j--) {
				int64_t t = len[j];
				len[j] = len[j - 1];
				len[j - 1] = t;
			}
		for (int32_t nb = 1; nb <= m; nb++) {
			int64_t start[16];
			int64_t got = planner_flexsp_buckets(len, m, nb, start);
			int64_t want = brute_pad(len, m, nb, 0);
			if (got != want)
				fail_msg("trial %d m %lld nb %d: dp %lld, brute force %lld", trial,
				         (long long)m, nb, (long long)got, (long long)want);
			/* the starts it reports give that padding */
			int64_t pad = 0, q = 0;
			for (int64_t i = 0; i < m; i++) {
				while (q + 1 < nb && start[q + 1] >= 0 && start[q + 1] <= i)
					q++;
				pad += len[start[q]] - len[i];
			}
			assert_int_equal(pad, got);
		}
	}
}

/* ---- plans ---- */

static void flexsp_valid_shapes(void **state)
{
	(void)state;
	static const struct {
		const char *profile;
		int32_t n, g;
		int64_t batch, max_len;
	} cases[] = {
	    {"gpt-7b-flexsp", 64, 8, 512, 196608}, {"gpt-7b-flexsp", 32, 8, 256, 131072},
	    {"gpt-7b-flexsp", 48, 8, 300, 196608}, {"gpt-7b-flexsp", 16, 4, 128, 65536},
	    {"gpt-7b-flexsp", 8, 8, 64, 32768},    {"gpt-13b-flexsp", 64, 8, 256, 196608},
	    {"gpt-7b-flexsp", 24, 8, 100, 98304},  {"gpt-30b-flexsp", 128, 8, 256, 196608},
	    {"gpt-7b-flexsp", 12, 4, 40, 40000},   {"gpt-7b-flexsp", 64, 8, 7, 196608},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sl_cost_t c;
		cost_for(&c, cases[i].profile, cases[i].n, cases[i].g);
		for (uint64_t seed = 1; seed <= 2; seed++) {
			sl_seq_t *s = batch(seed * 7919 + i, cases[i].batch, cases[i].max_len);
			sl_plan_t *p = plan_of("flexsp", &c, s, cases[i].batch, NULL);
			assert_valid(p, &c);
			assert_int_equal(p->nseqs, cases[i].batch);
			sl_plan_free(&p);
			free(s);
		}
		sl_cost_fini(&c);
	}
}

struct det_arg {
	const sl_cost_t *c;
	const sl_seq_t *s;
	int64_t n;
	char *json;
};

static void *det_thread(void *p)
{
	struct det_arg *a = p;
	sl_plan_t *plan = NULL;
	if (sl_plan_request("flexsp", a->c, a->s, a->n, NULL, &plan) == SL_OK) {
		a->json = sl_plan_to_json(plan);
		sl_plan_free(&plan);
	}
	sl_planner_thread_end();
	return NULL;
}

static void flexsp_determinism(void **state)
{
	(void)state;
	sl_cost_t c;
	cost_for(&c, "gpt-7b-flexsp", 64, 8);
	sl_seq_t *s = batch(424242, 512, 196608);
	sl_plan_t *a = plan_of("flexsp", &c, s, 512, NULL);
	sl_plan_t *b = plan_of("flexsp", &c, s, 512, NULL);
	char *ja = sl_plan_to_json(a), *jb = sl_plan_to_json(b);
	assert_non_null(ja);
	assert_string_equal(ja, jb);
	/* the same bytes from two other threads planning at once */
	struct det_arg args[2] = {{&c, s, 512, NULL}, {&c, s, 512, NULL}};
	pthread_t th[2];
	for (int t = 0; t < 2; t++)
		assert_int_equal(pthread_create(&th[t], NULL, det_thread, &args[t]), 0);
	for (int t = 0; t < 2; t++) {
		pthread_join(th[t], NULL);
		assert_non_null(args[t].json);
		assert_string_equal(ja, args[t].json);
		free(args[t].json);
	}
	/* a different order of the same sequences gives the same groups and
	 * times (ties are broken by index, so only the step is compared) */
	sl_seq_t *r = malloc(512 * sizeof(*r));
	assert_non_null(r);
	for (int i = 0; i < 512; i++)
		r[i] = s[511 - i];
	sl_plan_t *d = plan_of("flexsp", &c, r, 512, NULL);
	assert_valid(d, &c);
	sl_plan_free(&d);
	free(r);
	free(ja);
	free(jb);
	sl_plan_free(&a);
	sl_plan_free(&b);
	free(s);
	sl_cost_fini(&c);
}

/* flexsp starts from (and keeps, when nothing beats them) the homogeneous
 * best-fit-decreasing plans of every power-of-two size, so it is never
 * worse than any of them, nor than the static policy's. */
static void flexsp_never_worse(void **state)
{
	(void)state;
	static const int32_t shapes[][2] = {{64, 8}, {32, 8}, {16, 8}, {48, 8}};
	int strictly = 0;
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		sl_cost_t c;
		cost_for(&c, "gpt-7b-flexsp", shapes[i][0], shapes[i][1]);
		for (uint64_t seed = 0; seed < 3; seed++) {
			int64_t n = shapes[i][0] * 4;
			sl_seq_t *s = batch(99 + seed * 31 + i, n, 196608);
			sl_plan_t *f = plan_of("flexsp", &c, s, n, NULL);
			assert_valid(f, &c);
			sl_plan_t *st = plan_of("static", &c, s, n, NULL);
			assert_true(f->step_ms <= st->step_ms * (1 + 1e-12));
			strictly += f->step_ms < st->step_ms * 0.99;
			for (int32_t d = 1; d <= c.cl.ranks; d *= 2) {
				sl_plan_t *h = NULL;
				if (planner_fixed_sp_plan(&c, s, n, d, "h", &h) != SL_OK) {
					sl_clearerr();
					continue;
				}
				assert_int_equal(sl_plan_evaluate(h, &c), SL_OK);
				if (!(f->step_ms <= h->step_ms * (1 + 1e-12)))
					fail_msg("%d ranks seed %llu: flexsp %.3f ms > homogeneous "
					         "sp=%d %.3f",
					         c.cl.ranks, (unsigned long long)seed, f->step_ms,
					         d, h->step_ms);
				sl_plan_free(&h);
			}
			sl_plan_free(&f);
			sl_plan_free(&st);
			free(s);
		}
		sl_cost_fini(&c);
	}
	/* On Wikipedia-like batches the flexible plan is much better than static. */
	assert_true(strictly >= 6);
}

static void flexsp_limits(void **state)
{
	(void)state;
	sl_cost_t c;
	cost_for(&c, "gpt-7b-flexsp", 64, 8);
	sl_seq_t *s = batch(777, 512, 196608);
	/* a tiny deterministic budget: valid, flagged, reproducible */
	sl_policy_opts_t o = {.work_limit = 3};
	sl_plan_t *a = plan_of("flexsp", &c, s, 512, &o);
	assert_valid(a, &c);
	assert_int_equal(a->search_truncated, 1);
	assert_non_null(strstr(a->note, "work limit"));
	sl_plan_t *b = plan_of("flexsp", &c, s, 512, &o);
	char *ja = sl_plan_to_json(a), *jb = sl_plan_to_json(b);
	assert_string_equal(ja, jb);
	free(ja);
	free(jb);
	/* the default search is not cut and does at least as well */
	sl_plan_t *d = plan_of("flexsp", &c, s, 512, NULL);
	assert_int_equal(d->search_truncated, 0);
	assert_non_null(strstr(d->note, "micro-batches"));
	assert_true(d->step_ms <= a->step_ms * (1 + 1e-12));
	/* time_limit_ms is a deterministic budget too: a tiny one gives a
	 * valid, flagged and reproducible plan */
	sl_policy_opts_t t = {.time_limit_ms = 1e-6};
	sl_plan_t *e = plan_of("flexsp", &c, s, 512, &t);
	assert_valid(e, &c);
	assert_int_equal(e->search_truncated, 1);
	assert_non_null(strstr(e->note, "work limit"));
	sl_plan_t *e2 = plan_of("flexsp", &c, s, 512, &t);
	ja = sl_plan_to_json(e);
	jb = sl_plan_to_json(e2);
	assert_string_equal(ja, jb);
	free(ja);
	free(jb);
	sl_plan_free(&e2);
	/* and so is a generous one: same plan on every run */
	sl_policy_opts_t t2 = {.time_limit_ms = 50};
	e2 = plan_of("flexsp", &c, s, 512, &t2);
	sl_plan_t *e3 = plan_of("flexsp", &c, s, 512, &t2);
	ja = sl_plan_to_json(e2);
	jb = sl_plan_to_json(e3);
	assert_string_equal(ja, jb);
	free(ja);
	free(jb);
	sl_plan_free(&e2);
	sl_plan_free(&e3);
	/* bad options */
	sl_plan_t *x = NULL;
	sl_policy_opts_t neg = {.work_limit = -1};
	assert_int_equal(sl_plan_request("flexsp", &c, s, 512, &neg, &x), SL_EINVAL);
	assert_null(x);
	sl_policy_opts_t nan_t = {.time_limit_ms = NAN};
	assert_int_equal(sl_plan_request("flexsp", &c, s, 512, &nan_t, &x), SL_EINVAL);
	sl_plan_free(&a);
	sl_plan_free(&b);
	sl_plan_free(&d);
	sl_plan_free(&e);
	free(s);
	sl_cost_fini(&c);
}

/* The wall-clock stops: a cancelled request gets SL_ETIMEOUT and no plan; a
 * deadline already passed gives the fallback's valid plan, marked truncated;
 * a huge batch (65,536 sequences on 4,096 ranks, which used to plan for
 * minutes) with a 200 ms deadline returns a valid plan whose note says the
 * deadline cut it (or SL_ETIMEOUT naming the deadline). No bound on the time
 * it took: an ignored deadline shows in the note, and a hang is ctest's
 * TIMEOUT. */
static void flexsp_deadline(void **state)
{
	(void)state;
	sl_cost_t c;
	cost_for(&c, "gpt-7b-flexsp", 64, 8);
	sl_seq_t *s = batch(778, 512, 196608);
	sl_plan_t *p = NULL;
	sl_cancel_t cancel;
	atomic_init(&cancel, 1);
	sl_policy_opts_t o = {.cancel = &cancel};
	assert_int_equal(sl_plan_request("flexsp", &c, s, 512, &o, &p), SL_ETIMEOUT);
	assert_null(p);
	assert_non_null(strstr(sl_errmsg(), "cancelled"));

	sl_policy_opts_t d = {.deadline_ms = sl_now_ms() - 1};
	assert_int_equal(sl_plan_request("flexsp", &c, s, 512, &d, &p), SL_OK);
	assert_int_equal(sl_plan_validate(p, &c, report, NULL), 0);
	assert_int_equal(p->search_truncated, 1);
	assert_non_null(strstr(p->note, "deadline"));
	sl_plan_free(&p);
	free(s);
	sl_cost_fini(&c);

	cost_for(&c, "gpt-7b-flexsp", 4096, 8);
	int64_t n = 65536;
	s = batch(779, n, 60000);
	sl_policy_opts_t h = {.deadline_ms = sl_now_ms() + 200};
	sl_err rc = sl_plan_request("flexsp", &c, s, n, &h, &p);
	if (rc == SL_OK) {
		assert_int_equal(sl_plan_validate(p, &c, report, NULL), 0);
		assert_int_equal(p->search_truncated, 1);
		/* the deadline cut it, not the work limit or the configuration cap
		 * (which also mark a plan truncated) */
		if (strstr(p->note, "deadline") == NULL)
			fail_msg("not cut by the deadline: %s", p->note);
	} else {
		assert_int_equal(rc, SL_ETIMEOUT);
		assert_non_null(strstr(sl_errmsg(), "deadline"));
	}
	sl_plan_free(&p);
	free(s);
	sl_cost_fini(&c);
}

/* Sequences no power-of-two group holds resident (48 ranks: the largest
 * power of two is 32) run alone with the least offload; one sequence, and
 * batches of only tiny sequences, work too. */
static void flexsp_edges(void **state)
{
	(void)state;
	sl_cost_t c;
	cost_for(&c, "gpt-7b-flexsp", 48, 8);
	int64_t big = 32 * c.cap + 1000;
	sl_seq_t s[6] = {{1, big}, {2, 5000}, {3, 100}, {4, big - 7}, {5, 1}, {6, 60000}};
	sl_plan_t *p = plan_of("flexsp", &c, s, 6, NULL);
	assert_valid(p, &c);
	int offloaded = 0;
	for (int64_t i = 0; i < p->nitems; i++)
		offloaded += p->items[i].offload > 0;
	assert_true(offloaded >= 2);
	sl_plan_free(&p);

	sl_seq_t one = {9, 12345};
	p = plan_of("flexsp", &c, &one, 1, NULL);
	assert_valid(p, &c);
	assert_int_equal(p->nitems, 1);
	sl_plan_free(&p);

	sl_seq_t tiny[100];
	for (int i = 0; i < 100; i++) {
		tiny[i].id = i;
		tiny[i].length = 1 + i % 3;
	}
	p = plan_of("flexsp", &c, tiny, 100, NULL);
	assert_valid(p, &c);
	sl_plan_free(&p);
	sl_cost_fini(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(flexsp_buckets_hand), cmocka_unit_test(flexsp_buckets_brute),
	    cmocka_unit_test(flexsp_valid_shapes), cmocka_unit_test(flexsp_determinism),
	    cmocka_unit_test(flexsp_never_worse),  cmocka_unit_test(flexsp_limits),
	    cmocka_unit_test(flexsp_edges),        cmocka_unit_test(flexsp_deadline),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	sl_planner_thread_end();
	return rc;
}
