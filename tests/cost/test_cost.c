/* The reference cost model against hand-computed cases from
 * docs/cost-model.md. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/sluice.h"

#define NEAR(a, b) assert_true(fabs((a) - (b)) <= 1e-9 * fmax(1.0, fabs(b)))

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static sl_cost_t cost_for(const char *profile, int32_t n, int32_t g)
{
	sl_cost_t c;
	sl_cluster_t cl = {n, g};
	assert_int_equal(sl_cost_init(&c, sl_profile_preset(profile), &cl), SL_OK);
	return c;
}

static void test_cap(void **state)
{
	(void)state;
	sl_cost_t c = cost_for("gpt-7b-flexsp", 64, 8);
	assert_int_equal(c.cap, 6043); /* the spec's worked example */
	NEAR(c.model_state_bytes, 1675000000.0);
	sl_cost_fini(&c);
	c = cost_for("gpt-13b-flexsp", 64, 8);
	assert_int_equal(c.cap, 6059);
	sl_cost_fini(&c);
	c = cost_for("gpt-7b-flexsp", 8, 8);
	assert_int_equal(c.cap, 3547); /* ZeRO-3 over fewer ranks holds more state */
	sl_cost_fini(&c);
}

static void test_padding(void **state)
{
	(void)state;
	assert_int_equal(sl_cost_padded(1000, 1), 1000);
	assert_int_equal(sl_cost_padded(10000, 4), 10000);
	assert_int_equal(sl_cost_padded(10000, 3), 10002);
	assert_int_equal(sl_cost_padded(1, 8), 16);
	assert_int_equal(sl_cost_padded(17, 8), 32);
}

static void test_seq_time(void **state)
{
	(void)state;
	sl_cost_t c = cost_for("gpt-7b-flexsp", 64, 8);
	/* d = 1: alpha1 s^2 + alpha2 s, no communication. */
	NEAR(sl_cost_seq_ms(&c, 1000, 1, 0, 1), 189.088);
	/* d = 4: (alpha1 p^2 + alpha2 p)/4 + MiB(2 MiB * p / 4) / 104.1 */
	NEAR(sl_cost_seq_ms(&c, 10000, 4, 0, 1), 636.130739673391);
	/* d = 3 takes the next larger degree's bandwidth (104.1) and pads to 10002. */
	NEAR(sl_cost_seq_ms(&c, 10000, 3, 0, 1), 848.3781479324343);
	/* d = 16 leaves the node (10.33 GB/s) and offloads a quarter over PCIe. */
	NEAR(sl_cost_seq_ms(&c, 100000, 16, 0.25, 0), 5914.817763794772);
	/* d = 9 takes degree 16's entry. */
	assert_true(c.a2a_gbps[9] == 10.33);
	assert_true(c.a2a_gbps[64] == 4.87);
	assert_true(isinf(c.a2a_gbps[1]));
	sl_cost_fini(&c);
}

static const char *toy_profile =
	"{\"name\": \"toy\", \"alpha1\": 0, \"alpha2\": 1, \"beta\": 10, \"act_bytes_per_token\": 1,"
	" \"model_state_bytes\": 0, \"gpu_mem_bytes\": 100, \"sp_comm\": \"ulysses\","
	" \"a2a_bytes_per_token\": 0, \"sp_bandwidth_gbps\": {\"1\": \"inf\", \"2\": 1},"
	" \"pcie_gbps\": 1}";

static void test_ideal_by_hand(void **state)
{
	(void)state;
	sl_profile_t p;
	sl_cost_t c;
	sl_cluster_t cl = {2, 2};
	assert_int_equal(sl_profile_parse_json(toy_profile, "toy", &p), SL_OK);
	assert_int_equal(sl_cost_init(&c, &p, &cl), SL_OK);
	assert_int_equal(c.cap, 100);
	double crit, work;
	/* Offloading a token (1 byte over 1 GB/s: 1/2^20 ms) costs far less
	 * than the fixed cost it frees (beta / cap = 0.1 ms), so work(s) takes
	 * f = 1: s ms of compute plus s/2^20 ms of offload, no fixed-cost share
	 * (the rule before 2026-12, f = f_d only, gave 55 and 210 + to here). */
	double mib = 1048576.0;
	sl_cost_seq_bounds(&c, 50, &crit, &work);
	NEAR(crit, 26.0); /* d = 2 pads to 52: 52 / 2 */
	NEAR(work, 50.0 + 50.0 / mib); /* d = 1, f = 1 */
	sl_cost_seq_bounds(&c, 200, &crit, &work);
	NEAR(crit, 100.0);
	NEAR(work, 200.0 + 200.0 / mib); /* d = 1 or 2, f = 1 */
	int64_t len[] = {50, 50, 200};
	double ideal;
	assert_int_equal(sl_cost_ideal(&c, len, 3, &ideal), SL_OK);
	NEAR(ideal, (2 * (50.0 + 50.0 / mib) + 200.0 + 200.0 / mib) / 2.0);
	/* Where offloading costs more than the share it frees, f_d stays the
	 * least: 1 byte/token over 1e-6 GB/s is 0.95 ms a token > 0.1 ms. */
	sl_cost_fini(&c);
	p.pcie_gbps = 1e-6;
	assert_int_equal(sl_cost_init(&c, &p, &cl), SL_OK);
	sl_cost_seq_bounds(&c, 50, &crit, &work);
	NEAR(work, 55.0); /* d = 1: 50 + 10 * 50 / 100 */
	sl_cost_seq_bounds(&c, 200, &crit, &work);
	NEAR(work, 220.0); /* d = 2 holds it unoffloaded: 2 x 100 + 10 x 200 / 100 */
	sl_cost_fini(&c);
}

static void test_offload(void **state)
{
	(void)state;
	sl_cost_t c = cost_for("gpt-7b-flexsp", 64, 8);
	NEAR(sl_cost_min_offload(&c, 196608, 8), 1.0 - 6043.0 * 8 / 196608.0);
	double f = sl_cost_offload_for(&c, 196608, 8, (double)c.cap);
	assert_true(f >= sl_cost_min_offload(&c, 196608, 8));
	assert_true(sl_cost_resident(196608, 8, f) <= (double)c.cap);
	assert_true(fabs(f * 1e6 - round(f * 1e6)) < 1e-6);
	assert_true(sl_cost_offload_for(&c, 1000, 1, (double)c.cap) == 0.0);
	/* 192K on one rank would need 97% offload, above max_offload. */
	assert_true(sl_cost_offload_for(&c, 196608, 1, (double)c.cap) >= 1.0);
	sl_cost_fini(&c);
}

static void test_infeasible(void **state)
{
	(void)state;
	sl_cost_t c = cost_for("gpt-7b-flexsp", 64, 8);
	assert_int_equal(sl_cost_check_seq(&c, 7, 196608), SL_OK);
	assert_int_equal(sl_cost_check_seq(&c, 7, 5000000), SL_EINFEASIBLE);
	assert_non_null(strstr(sl_errmsg(), "sequence 7"));
	assert_non_null(strstr(sl_errmsg(), "too long"));
	sl_cost_fini(&c);
}

/* The ideal's bounds stop early for short sequences; they must equal the
 * spec's minimum over every degree 1..N. */
static void test_bounds_brute_force(void **state)
{
	(void)state;
	sl_cost_t c = cost_for("gpt-7b-flexsp", 1024, 8);
	int64_t lens[] = {1, 2, 3, 7, 100, 777, 2047, 2048, 2049, 6000, 40000, 196608, 1000000};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		double crit = INFINITY, work = INFINITY, fc, fw;
		for (int32_t d = 1; d <= c.cl.ranks; d++) {
			double f = sl_cost_min_offload(&c, lens[i], d);
			double t = sl_cost_seq_ms(&c, lens[i], d, f, d <= c.cl.ranks_per_node);
			double w = d * t + c.prof.beta * (1 - f) * (double)sl_cost_padded(lens[i], d) /
			                           (double)c.cap;
			crit = fmin(crit, t);
			work = fmin(work, w);
		}
		sl_cost_seq_bounds(&c, lens[i], &fc, &fw);
		assert_true(fc == crit);
		assert_true(fw == work);
	}
	sl_cost_fini(&c);
}

/* sl_cost_ideal stops trying degrees once a lower bound says no larger one
 * can do better: its result must stay bit-identical to the spec's minimum
 * over every degree (sl_cost_seq_bounds per length, summed in length order)
 * for every kind of profile, bandwidths that fall or grow with the degree,
 * ulysses and ring. */
static void test_ideal_pruned_exact(void **state)
{
	(void)state;
	const char *ring = "{\"name\": \"r\", \"alpha1\": 2e-6, \"alpha2\": 0.1, \"beta\": 300, "
	                   "\"act_bytes_per_token\": 4e6, \"model_state_bytes\": 0, "
	                   "\"gpu_mem_bytes\": 2.4e10, \"sp_comm\": \"ring\", "
	                   "\"kv_bytes_per_token\": 2e5, \"p2p_gbps_intra\": 100, "
	                   "\"p2p_gbps_inter\": %s, \"pcie_gbps\": %s, \"max_offload\": 0.8, "
	                   "\"ring_tok_ms\": %s}";
	const char *uly = "{\"name\": \"u\", \"alpha1\": 5e-6, \"alpha2\": 0.2, \"beta\": 600, "
	                  "\"act_bytes_per_token\": 4e6, \"model_state_bytes\": 0, "
	                  "\"gpu_mem_bytes\": 2.4e10, \"sp_comm\": \"ulysses\", "
	                  "\"a2a_bytes_per_token\": 2e6, \"sp_bandwidth_gbps\": {\"1\": \"inf\", "
	                  "\"2\": %s, \"8\": 90, \"64\": %s}, \"pcie_gbps\": %s, "
	                  "\"max_offload\": 0.8}";
	char js[8][1024];
	snprintf(js[0], sizeof(js[0]), ring, "10", "20", "0");   /* inter slower */
	snprintf(js[1], sizeof(js[1]), ring, "300", "20", "0");  /* inter faster: not monotone */
	snprintf(js[2], sizeof(js[2]), ring, "10", "1e4", "0");  /* offloading cheaper than beta */
	snprintf(js[6], sizeof(js[6]), ring, "10", "20", "0.02"); /* the ring extension */
	snprintf(js[3], sizeof(js[3]), uly, "100", "5", "20");
	snprintf(js[4], sizeof(js[4]), uly, "10", "400", "20"); /* bandwidth grows */
	snprintf(js[5], sizeof(js[5]), uly, "100", "5", "1e4");
	sl_profile_t prof[10];
	int np = 0;
	for (int k = 0; k < 7; k++)
		assert_int_equal(sl_profile_parse_json(js[k], "t.json", &prof[np++]), SL_OK);
	prof[np++] = *sl_profile_preset("gpt-7b-flexsp");
	prof[np++] = *sl_profile_preset("gpt-13b-flexsp");
	prof[np++] = *sl_profile_preset("gpt-30b-flexsp");
	const int32_t ranks[] = {8, 64, 1000, 4096};
	uint64_t x = 88172645463325252ull;
	int64_t len[48];
	int checked = 0;
	for (int k = 0; k < np; k++)
		for (size_t z = 0; z < sizeof(ranks) / sizeof(ranks[0]); z++) {
			sl_cluster_t cl = {ranks[z], 8};
			sl_cost_t c;
			if (sl_cost_init(&c, &prof[k], &cl) != SL_OK) {
				sl_clearerr();
				continue;
			}
			/* lengths from 1 to 40 x cap, a few repeated, in random order */
			for (int i = 0; i < 48; i++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				len[i] = i % 7 == 6 ? len[i - 1] : 1 + (int64_t)(x % (uint64_t)(40 * c.cap));
			}
			len[0] = 1;
			int64_t sorted[48];
			memcpy(sorted, len, sizeof(len));
			qsort(sorted, 48, sizeof(int64_t), cmp_i64);
			double crit_max = 0, sum = 0, crit, work;
			for (int i = 0; i < 48;) {
				int j = i;
				while (j < 48 && sorted[j] == sorted[i])
					j++;
				sl_cost_seq_bounds(&c, sorted[i], &crit, &work);
				crit_max = fmax(crit_max, crit);
				sum += work * (double)(j - i);
				i = j;
			}
			double want = fmax(c.prof.beta + crit_max, sum / c.cl.ranks), got;
			assert_int_equal(sl_cost_ideal(&c, len, 48, &got), SL_OK);
			if (got != want)
				fail_msg("profile %d, %d ranks: ideal %.17g, full loop %.17g", k, ranks[z],
				         got, want);
			checked++;
			sl_cost_fini(&c);
		}
	assert_true(checked >= 30);
}

/* The ring extension ring_tok_ms (docs/cost-model.md, "Extensions"): a
 * sequence on a ring of d > 1 pays ring_tok_ms p (1 - 1/d) more, d = 1 and
 * profiles without the field are the reference exactly; only ring profiles
 * take it; it survives JSON and is written only when set. */
static void test_ring_extension(void **state)
{
	(void)state;
	const char *fmt = "{\"name\": \"r\", \"alpha1\": 2e-6, \"alpha2\": 0.1, \"beta\": 300, "
	                  "\"act_bytes_per_token\": 4e6, \"model_state_bytes\": 0, "
	                  "\"gpu_mem_bytes\": 2.4e10, \"sp_comm\": \"%s\", "
	                  "\"kv_bytes_per_token\": 1, \"p2p_gbps_intra\": 100, "
	                  "\"p2p_gbps_inter\": 10, \"a2a_bytes_per_token\": 1, "
	                  "\"sp_bandwidth_gbps\": {\"1\": \"inf\", \"8\": 90}, "
	                  "\"pcie_gbps\": 20%s}";
	char js[1024];
	sl_profile_t ref, ext;
	snprintf(js, sizeof(js), fmt, "ring", "");
	assert_int_equal(sl_profile_parse_json(js, "ref.json", &ref), SL_OK);
	snprintf(js, sizeof(js), fmt, "ring", ", \"ring_tok_ms\": 0.02");
	assert_int_equal(sl_profile_parse_json(js, "ext.json", &ext), SL_OK);
	assert_true(ref.ring_tok_ms == 0 && ext.ring_tok_ms == 0.02);
	sl_cluster_t cl = {16, 8};
	sl_cost_t a, b;
	assert_int_equal(sl_cost_init(&a, &ref, &cl), SL_OK);
	assert_int_equal(sl_cost_init(&b, &ext, &cl), SL_OK);
	assert_true(sl_cost_seq_ms(&a, 5000, 1, 0, 1) == sl_cost_seq_ms(&b, 5000, 1, 0, 1));
	/* 10000 tokens on 4 ranks: p = 10000, + 0.02 x 10000 x 3/4 = 150 ms */
	NEAR(sl_cost_seq_ms(&b, 10000, 4, 0, 1) - sl_cost_seq_ms(&a, 10000, 4, 0, 1), 150.0);
	/* 3 ranks pad to 10002 */
	NEAR(sl_cost_seq_ms(&b, 10000, 3, 0.5, 0) - sl_cost_seq_ms(&a, 10000, 3, 0.5, 0),
	     0.02 * 10002 * 2.0 / 3.0);
	sl_cost_fini(&a);
	sl_cost_fini(&b);
	char *s = sl_profile_to_json(&ext);
	assert_non_null(s);
	sl_profile_t back;
	assert_int_equal(sl_profile_parse_json(s, "rt", &back), SL_OK);
	assert_true(back.ring_tok_ms == 0.02);
	free(s);
	s = sl_profile_to_json(&ref);
	assert_null(strstr(s, "ring_tok_ms"));
	free(s);
	/* ulysses has no hops; negative and absurd values are refused by name */
	snprintf(js, sizeof(js), fmt, "ulysses", ", \"ring_tok_ms\": 0.02");
	assert_int_equal(sl_profile_parse_json(js, "u.json", &back), SL_EINVAL);
	assert_non_null(strstr(sl_errmsg(), "ring_tok_ms"));
	snprintf(js, sizeof(js), fmt, "ring", ", \"ring_tok_ms\": -1");
	assert_int_equal(sl_profile_parse_json(js, "n.json", &back), SL_ERANGE);
	assert_non_null(strstr(sl_errmsg(), "ring_tok_ms"));
	snprintf(js, sizeof(js), fmt, "ring", ", \"ring_tok_ms\": 1e300");
	assert_int_equal(sl_profile_parse_json(js, "h.json", &back), SL_ERANGE);
	assert_non_null(strstr(sl_errmsg(), "ring_tok_ms"));
}

static void test_profile_json(void **state)
{
	(void)state;
	sl_profile_t p;
	assert_int_equal(sl_profile_parse_json("{", "x.json", &p), SL_EFORMAT);
	assert_non_null(strstr(sl_errmsg(), "x.json:"));
	assert_int_equal(sl_profile_parse_json("{\"alpha1\": 1}", "x.json", &p), SL_EFORMAT);
	assert_non_null(strstr(sl_errmsg(), "alpha2"));
	char bad[1024];
	snprintf(bad, sizeof(bad), "%s", toy_profile);
	char *b = strstr(bad, "\"beta\": 10");
	memcpy(b, "\"beta\": -1", 10);
	assert_int_equal(sl_profile_parse_json(bad, "x.json", &p), SL_ERANGE);
	/* A preset survives the trip through JSON unchanged. */
	char *s = sl_profile_to_json(sl_profile_preset("gpt-30b-flexsp"));
	assert_non_null(s);
	assert_int_equal(sl_profile_parse_json(s, "rt", &p), SL_OK);
	const sl_profile_t *q = sl_profile_preset("gpt-30b-flexsp");
	assert_true(p.alpha1 == q->alpha1 && p.beta == q->beta && p.params == q->params);
	assert_int_equal(p.n_bw, 7);
	assert_true(isinf(p.bw_gbps[0]) && p.bw_gbps[6] == 4.87);
	free(s);
	assert_int_equal(sl_profile_resolve("no-such-profile", &p), SL_ENOTFOUND);
	assert_non_null(strstr(sl_errmsg(), "gpt-7b-flexsp"));
}

/* Parses the 7B preset's JSON with one field's text replaced: `field` is a
 * JSON member ("\"alpha1\": ...") put in place of the member named `key`.
 * Returns what sl_profile_parse_json returns. */
static sl_err parse_with(const char *key, const char *member, sl_profile_t *p)
{
	char *s = sl_profile_to_json(sl_profile_preset("gpt-7b-flexsp"));
	assert_non_null(s);
	char text[4096], pat[64];
	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	char *at = strstr(s, pat);
	assert_non_null(at);
	char *end = at + strcspn(at, ",}");
	/* a bandwidth object ends at its own '}' */
	if (strcmp(key, "sp_bandwidth_gbps") == 0)
		end = strchr(at, '}') + 1;
	snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - s), s, member, end);
	free(s);
	return sl_profile_parse_json(text, "p.json", p);
}

/* Expects parse_with to fail with SL_ERANGE and a message naming every
 * needle (the field, its value, the limit). */
static void expect_range(const char *key, const char *member, const char *n1, const char *n2,
                         const char *n3)
{
	sl_profile_t p;
	sl_err rc = parse_with(key, member, &p);
	if (rc != SL_ERANGE)
		fail_msg("%s: got %s (%s), expected SL_ERANGE", member, sl_errname(rc), sl_errmsg());
	const char *need[] = {n1, n2, n3};
	for (int i = 0; i < 3; i++)
		if (need[i] && strstr(sl_errmsg(), need[i]) == NULL)
			fail_msg("%s: message '%s' lacks '%s'", member, sl_errmsg(), need[i]);
}

/* Attack inputs: values that pass "finite and positive" but make a derived
 * quantity inf, NaN or overflow int64 are refused, naming field, value and
 * limit. */
static void test_profile_limits(void **state)
{
	(void)state;
	expect_range("alpha1", "\"alpha1\": 1e308", "alpha1", "1e+308", "1e+60 ms");
	expect_range("alpha2", "\"alpha2\": 1e300", "alpha2", "1e+300", "1e+60 ms");
	expect_range("beta", "\"beta\": 1e200", "beta", "1e+200", "1e+60 ms");
	expect_range("grad_sync_ms", "\"grad_sync_ms\": 1e100", "grad_sync_ms", "1e+100", "1e+60");
	expect_range("pcie_gbps", "\"pcie_gbps\": 5e-324", "pcie_gbps", "4.94066e-324", "1e+60");
	expect_range("gpu_mem_bytes", "\"gpu_mem_bytes\": 1e21", "gpu_mem_bytes", "1e+21",
	             "70368744177664");
	expect_range("act_bytes_per_token", "\"act_bytes_per_token\": 1e-300",
	             "act_bytes_per_token", "1e-300", "70368744177664");
	expect_range("sp_bandwidth_gbps", "\"sp_bandwidth_gbps\": {\"1\": \"inf\", \"8\": 1e-310}",
	             "sp_bandwidth_gbps[8]", "1e-310", "1e+60");
	/* ring bandwidths */
	sl_profile_t p;
	const char *ring = "{\"alpha1\": 1e-6, \"alpha2\": 0.1, \"beta\": 1, \"act_bytes_per_token\": "
	                   "1e6, \"model_state_bytes\": 0, \"gpu_mem_bytes\": 1e10, \"sp_comm\": "
	                   "\"ring\", \"kv_bytes_per_token\": 1e5, \"p2p_gbps_intra\": 100, "
	                   "\"p2p_gbps_inter\": 1e-320, \"pcie_gbps\": 10}";
	assert_int_equal(sl_profile_parse_json(ring, "r.json", &p), SL_ERANGE);
	assert_non_null(strstr(sl_errmsg(), "p2p_gbps_inter"));
	/* the least time: step / ideal must stay finite */
	p = *sl_profile_preset("gpt-7b-flexsp");
	p.alpha1 = 0;
	p.alpha2 = 1e-320;
	p.beta = 0;
	assert_int_equal(sl_profile_check(&p), SL_ERANGE);
	assert_non_null(strstr(sl_errmsg(), "alpha1 + alpha2 + beta = 9.99989e-321 ms"));
	assert_non_null(strstr(sl_errmsg(), "1e-30 ms"));
	/* The presets and a profile just inside every limit are accepted. */
	for (size_t i = 0; i < sl_profile_preset_count(); i++)
		assert_int_equal(sl_profile_check(sl_profile_preset_at(i)), SL_OK);
	assert_int_equal(parse_with("gpu_mem_bytes", "\"gpu_mem_bytes\": 3.3e20", &p), SL_OK);
}

/* sl_cost_init refuses capacities beyond int64's comfort: it once converted
 * 1e310 tokens to int64 (clang's -fsanitize=float-cast-overflow reports it). */
static void test_cost_init_limits(void **state)
{
	(void)state;
	sl_cluster_t cl = {64, 8};
	sl_cost_t c;
	sl_profile_t p = *sl_profile_preset("gpt-7b-flexsp");
	p.act_bytes_per_token = 1e-300;
	assert_int_equal(sl_cost_init(&c, &p, &cl), SL_ERANGE);
	assert_non_null(strstr(sl_errmsg(), "act_bytes_per_token = 1e-300"));
	p = *sl_profile_preset("gpt-7b-flexsp");
	p.params = 0;
	p.act_bytes_per_token = 1;
	p.gpu_mem_bytes = 9.3e18;
	assert_int_equal(sl_cost_init(&c, &p, &cl), SL_ERANGE);
	assert_non_null(strstr(sl_errmsg(), "gpu_mem_bytes = 9.3e+18"));
}

/* A profile at the limits keeps every derived number finite and in range on
 * the largest cluster, for the longest sequence: the capacity converts to
 * int64 exactly, sequence times and bounds are finite, and the message of an
 * infeasible sequence prints sane numbers. Built once with clang's
 * -fsanitize=float-cast-overflow this shows no conversion overflows. */
static void test_profile_extremes_finite(void **state)
{
	(void)state;
	sl_profile_t p = *sl_profile_preset("gpt-7b-flexsp");
	double L = (double)SL_MAX_SEQ_LEN + 2.0 * SL_MAX_RANKS;
	p.params = 0;
	p.model_state_bytes = 0;
	p.act_bytes_per_token = 1;
	p.gpu_mem_bytes = (double)SL_PROFILE_MAX_CAP; /* the largest capacity */
	p.alpha1 = SL_PROFILE_MAX_MS / (L * L);
	p.alpha2 = SL_PROFILE_MAX_MS / L;
	p.beta = SL_PROFILE_MAX_MS;
	p.grad_sync_ms = SL_PROFILE_MAX_MS;
	assert_int_equal(sl_profile_check(&p), SL_OK);
	sl_cluster_t cl = {SL_MAX_RANKS, 8};
	sl_cost_t c;
	assert_int_equal(sl_cost_init(&c, &p, &cl), SL_OK);
	assert_true(c.cap == SL_PROFILE_MAX_CAP);
	int32_t ds[] = {1, 2, 3, 8, 9, 64, 1000, SL_MAX_RANKS};
	for (size_t i = 0; i < sizeof(ds) / sizeof(ds[0]); i++) {
		double t = sl_cost_seq_ms(&c, SL_MAX_SEQ_LEN, ds[i], 0.875, 0);
		assert_true(isfinite(t) && t > 0);
	}
	double crit, work;
	sl_cost_seq_bounds(&c, SL_MAX_SEQ_LEN, &crit, &work);
	assert_true(isfinite(crit) && isfinite(work));
	int64_t len[] = {1, SL_MAX_SEQ_LEN};
	double ideal;
	assert_int_equal(sl_cost_ideal(&c, len, 2, &ideal), SL_OK);
	assert_true(isfinite(ideal));
	sl_cost_fini(&c);

	/* the smallest capacity on one rank: an infeasible sequence's message */
	p = *sl_profile_preset("gpt-7b-flexsp");
	p.params = 0;
	p.model_state_bytes = 0;
	p.gpu_mem_bytes = p.act_bytes_per_token * 1.5;
	cl = (sl_cluster_t){1, 1};
	assert_int_equal(sl_cost_init(&c, &p, &cl), SL_OK);
	assert_true(c.cap == 1);
	assert_int_equal(sl_cost_check_seq(&c, 7, SL_MAX_SEQ_LEN), SL_EINFEASIBLE);
	assert_non_null(strstr(sl_errmsg(), "at most 8 tokens")); /* 1 / (1 - 0.875) */
	assert_null(strstr(sl_errmsg(), "-"));
	sl_cost_fini(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cap),          cmocka_unit_test(test_padding),
		cmocka_unit_test(test_seq_time),     cmocka_unit_test(test_ideal_by_hand),
		cmocka_unit_test(test_offload),      cmocka_unit_test(test_infeasible),
		cmocka_unit_test(test_profile_json), cmocka_unit_test(test_bounds_brute_force),
		cmocka_unit_test(test_ideal_pruned_exact), cmocka_unit_test(test_ring_extension),
		cmocka_unit_test(test_cost_init_limits), cmocka_unit_test(test_profile_limits), cmocka_unit_test(test_profile_extremes_finite),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
