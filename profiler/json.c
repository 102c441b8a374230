/* sluice profiler: model shape files and the calibrated profile file (the
 * profile's fields for sl_profile_parse_json, plus a "calibration" object:
 * model, provenance, fit with residuals, measurements). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profiler.h"

/* Reads an integer field into *dst within [lo, hi]; absent keeps *dst unless
 * required. */
static sl_err get_int(json_t *o, const char *key, const char *what, int64_t lo, int64_t hi,
                      int required, int64_t *dst)
{
	json_t *v = json_object_get(o, key);
	if (v == NULL) {
		if (required)
			return sl_seterr(SL_EFORMAT, "%s: missing field \"%s\"", what, key);
		return SL_OK;
	}
	if (!json_is_integer(v))
		return sl_seterr(SL_EFORMAT, "%s: field \"%s\" must be an integer", what, key);
	const json_int_t x = json_integer_value(v);
	if (x < lo || x > hi)
		return sl_seterr(SL_ERANGE, "%s: field \"%s\" is %lld (allowed %lld..%lld)", what, key,
		                 (long long)x, (long long)lo, (long long)hi);
	*dst = x;
	return SL_OK;
}

static sl_err get_dbl(json_t *o, const char *key, const char *what, int required, double *dst)
{
	json_t *v = json_object_get(o, key);
	if (v == NULL) {
		if (required)
			return sl_seterr(SL_EFORMAT, "%s: missing field \"%s\"", what, key);
		return SL_OK;
	}
	if (!json_is_number(v))
		return sl_seterr(SL_EFORMAT, "%s: field \"%s\" must be a number", what, key);
	*dst = json_number_value(v);
	return SL_OK;
}

static void get_str(json_t *o, const char *key, char *dst, size_t size)
{
	json_t *v = json_object_get(o, key);
	if (json_is_string(v))
		snprintf(dst, size, "%s", json_string_value(v));
}

/* The shape from an object (either a shape file or a profile's
 * calibration.model). */
static sl_err shape_from(json_t *o, const char *what, sl_model_shape_t *out)
{
	sl_model_shape_t m;
	int64_t hidden = 0, heads = 0, kv = -1, hd = -1, ffn = -1, layers = 0, vocab = 0;
	memset(&m, 0, sizeof(m));
	if (!json_is_object(o))
		return sl_seterr(SL_EFORMAT, "%s: a model shape must be a JSON object", what);
	json_t *name = json_object_get(o, "name");
	if (name != NULL && !json_is_string(name))
		return sl_seterr(SL_EFORMAT, "%s: field \"name\" must be a string", what);
	snprintf(m.name, sizeof(m.name), "%s", name ? json_string_value(name) : "custom");
	SL_CHECK(get_int(o, "hidden", what, 1, PROFILER_MAX_DIM, 1, &hidden));
	SL_CHECK(get_int(o, "heads", what, 1, 1024, 1, &heads));
	SL_CHECK(get_int(o, "kv_heads", what, 1, 1024, 0, &kv));
	SL_CHECK(get_int(o, "head_dim", what, 1, 1024, 0, &hd));
	SL_CHECK(get_int(o, "ffn", what, 1, PROFILER_MAX_DIM, 0, &ffn));
	SL_CHECK(get_int(o, "layers", what, 1, 100000, 1, &layers));
	SL_CHECK(get_int(o, "vocab", what, 0, 100000000, 0, &vocab));
	if (hd < 0) {
		if (hidden % heads != 0)
			return sl_seterr(SL_EFORMAT,
			                 "%s: hidden %lld is not a multiple of heads %lld: give head_dim",
			                 what, (long long)hidden, (long long)heads);
		hd = hidden / heads;
	}
	m.hidden = (int32_t)hidden;
	m.heads = (int32_t)heads;
	m.kv_heads = (int32_t)(kv < 0 ? heads : kv);
	m.head_dim = (int32_t)hd;
	m.ffn = (int32_t)(ffn < 0 ? 4 * hidden : ffn);
	m.layers = (int32_t)layers;
	m.vocab = vocab;
	SL_CHECK(sl_model_shape_check(&m));
	*out = m;
	return SL_OK;
}

sl_err sl_model_shape_parse_json(const char *text, const char *what, sl_model_shape_t *out)
{
	json_error_t jerr;
	json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return sl_seterr(SL_EFORMAT, "%s:%d:%d: %s", what, jerr.line, jerr.column, jerr.text);
	sl_err rc = shape_from(root, what, out);
	json_decref(root);
	return rc;
}

sl_err sl_model_shape_resolve(const char *name_or_path, sl_model_shape_t *out)
{
	const sl_model_shape_t *p = sl_model_preset(name_or_path);
	if (p != NULL) {
		*out = *p;
		return SL_OK;
	}
	json_error_t jerr;
	FILE *f = fopen(name_or_path, "rb");
	if (f == NULL) {
		char names[256] = "";
		for (size_t i = 0; i < sl_model_preset_count(); i++) {
			strncat(names, i ? ", " : "", sizeof(names) - strlen(names) - 1);
			strncat(names, sl_model_preset_at(i)->name, sizeof(names) - strlen(names) - 1);
		}
		return sl_seterr(SL_ENOTFOUND,
		                 "unknown model '%s': not a built-in shape (%s) and not a readable "
		                 "file (%s)",
		                 name_or_path, names, strerror(errno));
	}
	json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
	fclose(f);
	if (root == NULL)
		return sl_seterr(SL_EFORMAT, "%s:%d:%d: %s", name_or_path, jerr.line, jerr.column,
		                 jerr.text);
	sl_err rc = shape_from(root, name_or_path, out);
	json_decref(root);
	return rc;
}

static json_t *shape_json(const sl_model_shape_t *m)
{
	return json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:I}", "name", m->name, "hidden",
	                 m->hidden, "heads", m->heads, "kv_heads", m->kv_heads, "head_dim",
	                 m->head_dim, "ffn", m->ffn, "layers", m->layers, "vocab",
	                 (json_int_t)m->vocab);
}

static json_t *resid_json(const sl_calib_resid_t *r)
{
	return json_pack("{s:I, s:f, s:f}", "points", (json_int_t)r->n, "rms_rel", r->rms_rel,
	                 "max_rel", r->max_rel);
}

static json_t *points_json(const sl_calib_point_t *p, size_t n, const double c[2])
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, json_pack("{s:I, s:f, s:f}", "tokens",
		                                   (json_int_t)p[i].tokens, "ms", p[i].ms, "fit_ms",
		                                   c[0] * (double)p[i].tokens + c[1]));
	return a;
}

char *sl_calib_to_json(const sl_calib_meas_t *m, const sl_calib_fit_t *f)
{
	char *prof = sl_profile_to_json(&f->prof), *out = NULL;
	json_t *root = prof ? json_loads(prof, 0, NULL) : NULL;
	free(prof);
	if (root == NULL)
		return NULL;
	const sl_calib_prov_t *pv = &m->prov;
	json_t *hops = json_array();
	for (size_t i = 0; hops && i < m->nhop; i++) {
		const sl_calib_hop_t *h = &m->hop[i];
		const double pairs = sl_calib_hop_pairs(h->d, h->q_owner, h->k_owner, h->len);
		json_array_append_new(
			hops, json_pack("{s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f}", "d", h->d, "q_owner",
		                        h->q_owner, "k_owner", h->k_owner, "len", h->len, "pairs",
		                        pairs, "fwd_ms", h->fwd_ms, "bwd_ms", h->bwd_ms, "fit_ms",
		                        f->hop[0] * pairs + f->hop[1] * h->len + f->hop[2]));
	}
	json_t *cal = json_pack(
		"{s:s, s:o, s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i}, "
		"s:{s:[f,f], s:s, s:[f,f], s:[f,f,f], s:s, s:o, s:o, s:o, s:o, s:f, s:s, s:o}, "
		"s:{s:o, s:o, s:o, s:f, s:f, s:f, s:f, s:f, s:f, "
		"s:{s:b, s:f, s:f, s:s}}}",
		"format", "sluice.calibration/1", "model", shape_json(&m->model), "provenance", "card",
		pv->card, "driver", pv->driver, "cuda", pv->cuda, "nccl", pv->nccl, "date", pv->date,
		"command", pv->command, "settle", pv->settle, "gpus", pv->gpus,
		/* fit */
		"fit", "gemm_ms_per_layer", f->gemm[0], f->gemm[1], "gemm_form",
		"ms = c0 tokens + c1 (one layer's linear parts, fwd+bwd)", "lm_head_ms", f->head[0],
		f->head[1], "hop_ms_per_layer", f->hop[0], f->hop[1], f->hop[2], "hop_form",
		"ms = c0 pairs + c1 len + c2 (one layer, one ring hop, fwd+bwd)", "resid_gemm",
		resid_json(&f->r_gemm), "resid_lm_head", resid_json(&f->r_head), "resid_hop",
		resid_json(&f->r_hop), "resid_ring_vs_model", resid_json(&f->r_ring),
		"ring_tok_ms_per_layer", f->ring_tok, "ring_tok_form",
		"a sequence of p tokens on a ring of d > 1 ranks: + ring_tok p (1 - 1/d) per rank",
		"resid_ring_vs_extended", resid_json(&f->r_ring_ext),
		/* measurements */
		"measurements", "gemm_per_layer", points_json(m->gemm, m->ngemm, f->gemm), "lm_head",
		points_json(m->head, m->nhead, f->head), "attn_hops", hops, "group_fixed_ms",
		m->group_fixed_ms, "attn_ws_bytes_per_token", m->attn_ws_bytes_per_token, "d2h_gbps",
		m->d2h_gbps, "h2d_gbps", m->h2d_gbps, "gpu_total_bytes", m->gpu_total_bytes,
		"gpu_free_bytes", m->gpu_free_bytes, "p2p", "measured", m->p2p_measured, "gbps",
		m->p2p_gbps, "latency_ms", m->p2p_latency_ms, "note", m->p2p_note);
	if (cal != NULL && json_object_set_new(root, "calibration", cal) == 0)
		out = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
	json_decref(root);
	return out;
}

/* Reads a points array (tokens, ms) into a fresh array. */
static sl_err points_from(json_t *a, const char *what, const char *key, sl_calib_point_t **out,
                          size_t *n)
{
	*out = NULL;
	*n = 0;
	if (a == NULL)
		return SL_OK;
	if (!json_is_array(a) || json_array_size(a) > PROFILER_MAX_POINTS)
		return sl_seterr(SL_EFORMAT, "%s: \"%s\" must be an array of at most %d points", what,
		                 key, PROFILER_MAX_POINTS);
	const size_t len = json_array_size(a);
	sl_calib_point_t *p = calloc(len + 1, sizeof(*p));
	if (p == NULL)
		return sl_seterr(SL_ENOMEM, "%s: out of memory", what);
	for (size_t i = 0; i < len; i++) {
		json_t *e = json_array_get(a, i);
		char w[256];
		snprintf(w, sizeof(w), "%s: %s[%zu]", what, key, i);
		sl_err rc = get_int(e, "tokens", w, 1, SL_MAX_SEQ_LEN, 1, &p[i].tokens);
		if (rc == SL_OK)
			rc = get_dbl(e, "ms", w, 1, &p[i].ms);
		if (rc != SL_OK) {
			free(p);
			return rc;
		}
	}
	*out = p;
	*n = len;
	return SL_OK;
}

sl_err sl_calib_meas_parse_json(const char *text, const char *what, sl_calib_meas_t *out)
{
	json_error_t jerr;
	json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	sl_calib_meas_t m;
	sl_err rc = SL_OK;
	memset(&m, 0, sizeof(m));
	if (root == NULL)
		return sl_seterr(SL_EFORMAT, "%s:%d:%d: %s", what, jerr.line, jerr.column, jerr.text);
	json_t *cal = json_object_get(root, "calibration");
	json_t *ms = json_object_get(cal, "measurements");
	if (!json_is_object(cal) || !json_is_object(ms)) {
		rc = sl_seterr(SL_EFORMAT,
		               "%s: no \"calibration\".\"measurements\" object (not a file that "
		               "`sluice profile` wrote)",
		               what);
		goto out;
	}
	SL_CHECK_GOTO(shape_from(json_object_get(cal, "model"), what, &m.model), rc, out);
	json_t *pv = json_object_get(cal, "provenance");
	get_str(pv, "card", m.prov.card, sizeof(m.prov.card));
	get_str(pv, "driver", m.prov.driver, sizeof(m.prov.driver));
	get_str(pv, "cuda", m.prov.cuda, sizeof(m.prov.cuda));
	get_str(pv, "nccl", m.prov.nccl, sizeof(m.prov.nccl));
	get_str(pv, "date", m.prov.date, sizeof(m.prov.date));
	get_str(pv, "command", m.prov.command, sizeof(m.prov.command));
	get_str(pv, "settle", m.prov.settle, sizeof(m.prov.settle));
	int64_t gpus = 0;
	if (json_is_object(pv))
		SL_CHECK_GOTO(get_int(pv, "gpus", what, 0, 1 << 20, 0, &gpus), rc, out);
	m.prov.gpus = (int)gpus;

	SL_CHECK_GOTO(points_from(json_object_get(ms, "gemm_per_layer"), what, "gemm_per_layer",
	                          &m.gemm, &m.ngemm),
	              rc, out);
	SL_CHECK_GOTO(points_from(json_object_get(ms, "lm_head"), what, "lm_head", &m.head, &m.nhead),
	              rc, out);
	json_t *hops = json_object_get(ms, "attn_hops");
	if (!json_is_array(hops) || json_array_size(hops) > PROFILER_MAX_POINTS) {
		rc = sl_seterr(SL_EFORMAT, "%s: \"attn_hops\" must be an array of at most %d hops", what,
		               PROFILER_MAX_POINTS);
		goto out;
	}
	m.nhop = json_array_size(hops);
	m.hop = calloc(m.nhop + 1, sizeof(*m.hop));
	if (m.hop == NULL) {
		rc = sl_seterr(SL_ENOMEM, "%s: out of memory", what);
		goto out;
	}
	for (size_t i = 0; i < m.nhop; i++) {
		json_t *e = json_array_get(hops, i);
		char w[256];
		int64_t d = 0, q = 0, k = 0, len = 0;
		snprintf(w, sizeof(w), "%s: attn_hops[%zu]", what, i);
		SL_CHECK_GOTO(get_int(e, "d", w, 1, SL_MAX_RANKS, 1, &d), rc, out);
		SL_CHECK_GOTO(get_int(e, "q_owner", w, 0, d - 1, 1, &q), rc, out);
		SL_CHECK_GOTO(get_int(e, "k_owner", w, 0, d - 1, 1, &k), rc, out);
		SL_CHECK_GOTO(get_int(e, "len", w, 2, INT32_MAX, 1, &len), rc, out);
		SL_CHECK_GOTO(get_dbl(e, "fwd_ms", w, 1, &m.hop[i].fwd_ms), rc, out);
		SL_CHECK_GOTO(get_dbl(e, "bwd_ms", w, 1, &m.hop[i].bwd_ms), rc, out);
		m.hop[i].d = (int32_t)d;
		m.hop[i].q_owner = (int32_t)q;
		m.hop[i].k_owner = (int32_t)k;
		m.hop[i].len = (int32_t)len;
	}
	const struct {
		const char *key;
		double *dst;
	} nums[] = {
		{"group_fixed_ms", &m.group_fixed_ms},
		{"attn_ws_bytes_per_token", &m.attn_ws_bytes_per_token},
		{"d2h_gbps", &m.d2h_gbps},
		{"h2d_gbps", &m.h2d_gbps},
		{"gpu_total_bytes", &m.gpu_total_bytes},
		{"gpu_free_bytes", &m.gpu_free_bytes},
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		SL_CHECK_GOTO(get_dbl(ms, nums[i].key, what, 1, nums[i].dst), rc, out);
	json_t *p2p = json_object_get(ms, "p2p");
	if (!json_is_object(p2p) || !json_is_boolean(json_object_get(p2p, "measured"))) {
		rc = sl_seterr(SL_EFORMAT, "%s: \"p2p\" must be an object with a boolean \"measured\"",
		               what);
		goto out;
	}
	m.p2p_measured = json_is_true(json_object_get(p2p, "measured"));
	SL_CHECK_GOTO(get_dbl(p2p, "gbps", what, 1, &m.p2p_gbps), rc, out);
	SL_CHECK_GOTO(get_dbl(p2p, "latency_ms", what, 0, &m.p2p_latency_ms), rc, out);
	get_str(p2p, "note", m.p2p_note, sizeof(m.p2p_note));
	*out = m;
	memset(&m, 0, sizeof(m));
out:
	sl_calib_meas_free(&m);
	json_decref(root);
	return rc;
}
