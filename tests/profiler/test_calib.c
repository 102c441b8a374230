/* The profiler's CPU part: zigzag pair counts, the non-negative least
 * squares, the fit of synthetic measurements (known constants + noise) back
 * to those constants, the profile file round trip, and bad input refused
 * with messages that name what was wrong. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/calib.h"

/* Known per-layer constants the synthetic measurements are made from. */
static const double GEMM[2] = {1.9e-3, 0.05}, HEAD[2] = {0.35e-3, 0.02};
static const double HOP[3] = {4.0e-8, 2.0e-5, 0.03};

static uint64_t rng = 1;
/* Uniform in [-1, 1) from a fixed LCG: the same noise on every run. */
static double unit(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(rng >> 11) / 4503599627370496.0 - 1.0;
}

/* Fills m with points from the known constants, each time scaled by
 * (1 + noise * u), u uniform in [-1, 1). */
static void synth(sl_calib_meas_t *m, double noise)
{
	static const int64_t tok[] = {1024, 2048, 4096, 8192, 16384};
	static const int32_t ds[] = {1, 2, 4, 8};
	memset(m, 0, sizeof(*m));
	m->model = *sl_model_preset("gpt-7b");
	m->gemm = calloc(5, sizeof(*m->gemm));
	m->head = calloc(5, sizeof(*m->head));
	m->hop = calloc(4 * 5 * 3, sizeof(*m->hop));
	assert_non_null(m->gemm);
	assert_non_null(m->head);
	assert_non_null(m->hop);
	for (int i = 0; i < 5; i++) {
		m->gemm[m->ngemm++] = (sl_calib_point_t){tok[i], (GEMM[0] * tok[i] + GEMM[1]) *
		                                                         (1 + noise * unit())};
		m->head[m->nhead++] = (sl_calib_point_t){tok[i], (HEAD[0] * tok[i] + HEAD[1]) *
		                                                         (1 + noise * unit())};
	}
	for (int di = 0; di < 4; di++)
		for (int li = 0; li < 5; li++)
			for (int k = 0; k < (ds[di] > 1 ? 3 : 1); k++) {
				const int32_t q = k == 2, o = k == 1, len = (int32_t)tok[li];
				const double t = (HOP[0] * sl_calib_hop_pairs(ds[di], q, o, len) +
				                  HOP[1] * len + HOP[2]) *
				                 (1 + noise * unit());
				m->hop[m->nhop++] = (sl_calib_hop_t){ds[di], q, o, len, 0.3 * t, 0.7 * t};
			}
	m->group_fixed_ms = 0.7;
	m->attn_ws_bytes_per_token = 250000;
	m->d2h_gbps = 52;
	m->h2d_gbps = 50;
	m->gpu_total_bytes = 85e9;
	m->gpu_free_bytes = 84e9;
	m->p2p_gbps = 100;
	snprintf(m->prov.card, sizeof(m->prov.card), "synthetic");
	snprintf(m->prov.settle, sizeof(m->prov.settle), "layer 2000 ms");
	snprintf(m->p2p_note, sizeof(m->p2p_note), "not measured: synthetic");
}

static const sl_calib_opts_t OPTS = {.name = "synthetic-fit",
                                     .mem_reserve_bytes = 4.0 * 1073741824.0,
                                     .max_offload = 0.875,
                                     .p2p_gbps_inter = 25};

/* Counts pairs by brute force over the zigzag positions. */
static double brute_pairs(int32_t d, int32_t qo, int32_t ko, int32_t len)
{
	const int32_t c = d == 1 ? len : len / 2;
	int64_t qp[64], kp[64];
	int n = 0;
	for (int half = 0; half < (d == 1 ? 1 : 2); half++)
		for (int32_t j = 0; j < c; j++, n++) {
			const int32_t cq = half ? 2 * d - 1 - qo : qo, ck = half ? 2 * d - 1 - ko : ko;
			qp[n] = (int64_t)cq * c + j;
			kp[n] = (int64_t)ck * c + j;
		}
	double pairs = 0;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			pairs += kp[j] <= qp[i];
	return pairs;
}

static void test_hop_pairs(void **st)
{
	(void)st;
	for (int32_t d = 1; d <= 5; d++)
		for (int32_t len = 2; len <= 16; len += 2)
			for (int32_t q = 0; q < d; q++)
				for (int32_t k = 0; k < d; k++)
					assert_true(sl_calib_hop_pairs(d, q, k, len) ==
					            brute_pairs(d, q, k, len));
	/* zigzag balance: every hop of a ring holds about len^2 / 2 pairs */
	assert_true(fabs(sl_calib_hop_pairs(4, 0, 3, 1000) - 500000) < 1e-9);
}

static void test_nnls(void **st)
{
	(void)st;
	double x[12], y[6], c[2];
	for (int i = 0; i < 6; i++) {
		x[2 * i] = 1000.0 * (i + 1);
		x[2 * i + 1] = 1;
		y[i] = 2e-3 * x[2 * i] + 0.5;
	}
	assert_int_equal(sl_calib_nnls_rel(x, y, 6, 2, c), SL_OK);
	assert_true(fabs(c[0] - 2e-3) < 1e-12 && fabs(c[1] - 0.5) < 1e-9);
	/* a negative true intercept is clamped to 0, the slope stays positive */
	for (int i = 0; i < 6; i++)
		y[i] = 2e-3 * x[2 * i] - 0.5;
	assert_int_equal(sl_calib_nnls_rel(x, y, 6, 2, c), SL_OK);
	assert_true(c[0] > 0 && c[1] == 0);
	/* too few points, a non-positive time, a NaN, one size only */
	assert_int_equal(sl_calib_nnls_rel(x, y, 1, 2, c), SL_EINVAL);
	y[3] = 0;
	assert_int_equal(sl_calib_nnls_rel(x, y, 6, 2, c), SL_EINVAL);
	assert_non_null(strstr(sl_errmsg(), "point 3"));
	y[3] = 1;
	x[4] = NAN;
	assert_int_equal(sl_calib_nnls_rel(x, y, 6, 2, c), SL_EINVAL);
	for (int i = 0; i < 6; i++) {
		x[2 * i] = 1000;
		y[i] = 1 + i;
	}
	/* one distinct size: only one column can be fitted, which is allowed */
	assert_int_equal(sl_calib_nnls_rel(x, y, 6, 2, c), SL_OK);
	assert_true(c[0] == 0 || c[1] == 0);
}

static void check_recovered(const sl_calib_fit_t *f, double tol)
{
	assert_true(fabs(f->gemm[0] / GEMM[0] - 1) < tol);
	assert_true(fabs(f->head[0] / HEAD[0] - 1) < tol);
	assert_true(fabs(f->hop[0] / HOP[0] - 1) < tol);
	assert_true(fabs(f->hop[1] / HOP[1] - 1) < 10 * tol); /* small next to the pairs */
}

static void test_fit_exact_and_noisy(void **st)
{
	(void)st;
	sl_calib_meas_t m;
	sl_calib_fit_t f;
	synth(&m, 0);
	assert_int_equal(sl_calib_fit(&m, &OPTS, &f), SL_OK);
	check_recovered(&f, 1e-9);
	assert_true(fabs(f.gemm[1] - GEMM[1]) < 1e-9 && fabs(f.hop[2] - HOP[2]) < 1e-9);
	assert_true(f.r_gemm.max_rel < 1e-12 && f.r_hop.max_rel < 1e-12);
	/* the profile's constants are the documented composition */
	const double L = m.model.layers;
	assert_true(fabs(f.prof.alpha1 - L * HOP[0] / 2) < 1e-15);
	assert_true(fabs(f.prof.alpha2 - (L * (GEMM[0] + HOP[1] + HOP[0] / 2) + HEAD[0])) < 1e-12);
	assert_true(fabs(f.prof.beta - (0.7 + L * (GEMM[1] + HOP[2]) + HEAD[1])) < 1e-9);
	assert_true(fabs(f.prof.pcie_gbps - 1 / (1 / 52.0 + 1 / 50.0)) < 1e-12);
	assert_true(f.prof.gpu_mem_bytes == 84e9 - 4.0 * 1073741824.0);
	assert_int_equal(f.prof.sp_comm, SL_SP_RING);
	assert_string_equal(f.prof.name, "synthetic-fit");
	assert_int_equal(sl_profile_check(&f.prof), SL_OK);
	/* the reference model has no per-hop terms, so a ring measures above
	 * it; the fitted extension (each hop's per-token term on p/d tokens)
	 * takes most of the gap and lands in the profile */
	assert_true(f.r_ring.n == 15 && f.r_ring.rms_rel > 0.01);
	assert_true(f.ring_tok > 0.5 * HOP[1] && f.ring_tok < 2 * HOP[1]);
	assert_true(f.r_ring_ext.rms_rel < 0.5 * f.r_ring.rms_rel);
	assert_true(fabs(f.prof.ring_tok_ms - L * f.ring_tok) < 1e-15);
	sl_calib_opts_t ref = OPTS;
	ref.reference_form = 1;
	sl_calib_fit_t fr;
	assert_int_equal(sl_calib_fit(&m, &ref, &fr), SL_OK);
	assert_true(fr.prof.ring_tok_ms == 0 && fr.ring_tok == f.ring_tok);
	sl_calib_meas_free(&m);

	/* 2% noise on every time: the constants come back within 5% */
	rng = 7;
	synth(&m, 0.02);
	assert_int_equal(sl_calib_fit(&m, &OPTS, &f), SL_OK);
	check_recovered(&f, 0.05);
	assert_true(f.r_gemm.max_rel > 0 && f.r_gemm.max_rel < 0.05);
	assert_true(f.r_hop.rms_rel > 0 && f.r_hop.rms_rel < 0.05);
	sl_calib_meas_free(&m);
}

/* Each bad measurement is refused with a message naming it. */
static void test_fit_refuses(void **st)
{
	(void)st;
	sl_calib_meas_t m;
	sl_calib_fit_t f;
	struct {
		int what;
		const char *msg;
	} cases[] = {
		{0, "len 1023"},     {1, "k_owner 2"},         {2, "fwd_ms -1"},
		{3, "3 or more"},    {4, "no LM head"},        {5, "2 or more token counts"},
		{6, "h2d_gbps"},     {7, "leaves nothing"},    {8, "kv_heads"},
		{9, "GEMM (linear parts) point 2"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sl_calib_opts_t o = OPTS;
		synth(&m, 0);
		switch (cases[i].what) {
		case 0: m.hop[7].len = 1023; break;
		case 1: m.hop[7].k_owner = 2; break;
		case 2: m.hop[7].fwd_ms = -1; break;
		case 3: m.nhop = 2; break;
		case 4: m.nhead = 0; break;
		case 5:
			for (size_t j = 0; j < m.ngemm; j++)
				m.gemm[j].tokens = 4096;
			break;
		case 6: m.h2d_gbps = 0; break;
		case 7: o.mem_reserve_bytes = 1e12; break;
		case 8: m.model.kv_heads = 5; break;
		case 9: m.gemm[2].ms = NAN; break;
		}
		assert_int_not_equal(sl_calib_fit(&m, &o, &f), SL_OK);
		if (strstr(sl_errmsg(), cases[i].msg) == NULL)
			fail_msg("case %zu: '%s' lacks '%s'", i, sl_errmsg(), cases[i].msg);
		sl_calib_meas_free(&m);
	}
}

static void test_json_round_trip(void **st)
{
	(void)st;
	sl_calib_meas_t m, back;
	sl_calib_fit_t f, f2;
	sl_profile_t p;
	rng = 3;
	synth(&m, 0.01);
	assert_int_equal(sl_calib_fit(&m, &OPTS, &f), SL_OK);
	char *text = sl_calib_to_json(&m, &f);
	assert_non_null(text);
	/* what `--profile FILE` reads */
	assert_int_equal(sl_profile_parse_json(text, "round trip", &p), SL_OK);
	assert_true(fabs(p.alpha1 / f.prof.alpha1 - 1) < 1e-9);
	assert_true(fabs(p.alpha2 / f.prof.alpha2 - 1) < 1e-9);
	assert_true(fabs(p.beta / f.prof.beta - 1) < 1e-9);
	assert_true(fabs(p.act_bytes_per_token / f.prof.act_bytes_per_token - 1) < 1e-9);
	assert_true(f.prof.ring_tok_ms > 0 && fabs(p.ring_tok_ms / f.prof.ring_tok_ms - 1) < 1e-9);
	assert_int_equal(p.sp_comm, SL_SP_RING);
	/* the measurements come back and refit to the same constants */
	assert_int_equal(sl_calib_meas_parse_json(text, "round trip", &back), SL_OK);
	assert_int_equal(back.nhop, m.nhop);
	assert_int_equal(back.ngemm, m.ngemm);
	assert_int_equal(back.model.hidden, 4096);
	assert_string_equal(back.prov.card, "synthetic");
	assert_string_equal(back.prov.settle, "layer 2000 ms");
	assert_int_equal(sl_calib_fit(&back, &OPTS, &f2), SL_OK);
	assert_true(fabs(f2.prof.alpha1 / f.prof.alpha1 - 1) < 1e-6);
	assert_true(fabs(f2.prof.alpha2 / f.prof.alpha2 - 1) < 1e-6);
	assert_true(fabs(f2.prof.beta / f.prof.beta - 1) < 1e-6);
	sl_calib_meas_free(&back);

	/* damaged files are refused, naming the field */
	char *bad = strdup(text);
	char *k = strstr(bad, "\"k_owner\"");
	assert_non_null(k);
	memcpy(k, "\"k_ownex\"", 9);
	assert_int_not_equal(sl_calib_meas_parse_json(bad, "bad.json", &back), SL_OK);
	assert_non_null(strstr(sl_errmsg(), "attn_hops[0]"));
	assert_non_null(strstr(sl_errmsg(), "k_owner"));
	assert_int_equal(sl_calib_meas_parse_json("{\"alpha1\": 1}", "plain.json", &back),
	                 SL_EFORMAT);
	assert_non_null(strstr(sl_errmsg(), "calibration"));
	assert_int_equal(sl_calib_meas_parse_json("{", "cut.json", &back), SL_EFORMAT);
	free(bad);
	free(text);
	sl_calib_meas_free(&m);
}

static void test_shapes(void **st)
{
	(void)st;
	sl_model_shape_t s;
	const sl_model_shape_t *g7 = sl_model_preset("gpt-7b");
	assert_non_null(g7);
	/* the spec's 6.7e9 parameters, within 1% */
	assert_true(fabs(sl_model_params(g7) / 6.7e9 - 1) < 0.01);
	/* the spec's 4.48 MiB per token, within 10% */
	assert_true(fabs(sl_model_act_bytes_per_token(g7) / (4.48 * 1048576) - 1) < 0.1);
	/* 32 layers x (K, V bf16 forward + K, V bf16 and dK, dV fp32 backward) */
	assert_true(sl_model_kv_bytes_per_token(g7) == 32.0 * 4096 * 16);
	assert_int_equal(sl_model_shape_parse_json("{\"hidden\": 2048, \"heads\": 16, \"layers\": 24}",
	                                           "s.json", &s),
	                 SL_OK);
	assert_int_equal(s.kv_heads, 16);
	assert_int_equal(s.head_dim, 128);
	assert_int_equal(s.ffn, 8192);
	assert_int_equal(s.vocab, 0);
	assert_int_equal(sl_model_shape_parse_json(
				 "{\"hidden\": 2048, \"heads\": 16, \"kv_heads\": 3, \"layers\": 2}",
				 "s.json", &s),
	                 SL_ERANGE);
	assert_non_null(strstr(sl_errmsg(), "multiple of kv_heads"));
	assert_int_equal(sl_model_shape_parse_json("{\"hidden\": 2048, \"heads\": 16}", "s.json", &s),
	                 SL_EFORMAT);
	assert_non_null(strstr(sl_errmsg(), "\"layers\""));
	assert_int_equal(sl_model_shape_parse_json(
				 "{\"hidden\": -1, \"heads\": 16, \"layers\": 2}", "s.json", &s),
	                 SL_ERANGE);
	assert_non_null(strstr(sl_errmsg(), "\"hidden\" is -1"));
	assert_int_equal(sl_model_shape_resolve("no-such-model", &s), SL_ENOTFOUND);
	assert_non_null(strstr(sl_errmsg(), "gpt-7b"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hop_pairs),         cmocka_unit_test(test_nnls),
		cmocka_unit_test(test_fit_exact_and_noisy), cmocka_unit_test(test_fit_refuses),
		cmocka_unit_test(test_json_round_trip),   cmocka_unit_test(test_shapes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
