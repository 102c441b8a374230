/* sluice planner: built-in FlexSP profiles and JSON profile files
 * (docs/cost-model.md, "Reference profiles"). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "planner.h"

#define MIB 1048576.0
#define GIB 1073741824.0

/* a2a volume per token, whole model: 4 * 2 * layers * hidden * 2 bytes. */
#define A2A(layers, hidden) (4.0 * 2.0 * (layers) * (hidden) * 2.0)

/* The FlexSP fitted constants (galvatron/flexsp_solver, branch flexsp of
 * PKU-DAIR/Hetu-Galvatron): Ulysses, 8 GPUs per node, 28 GiB usable,
 * ZeRO-3 model states over the cluster. */
#define FLEXSP_BW                                                                                  \
	.n_bw = 7, .bw_degree = {1, 2, 4, 8, 16, 32, 64},                                          \
	.bw_gbps = {INFINITY, 119.5, 104.1, 96.5, 10.33, 5.94, 4.87}
static const sl_profile_t presets[] = {
	{.name = "gpt-7b-flexsp", .alpha1 = 5.128e-6, .alpha2 = 0.18396, .beta = 629.36,
	 .act_bytes_per_token = 4.48 * MIB, .params = 6.7e9, .gpu_mem_bytes = 28.0 * GIB,
	 .sp_comm = SL_SP_ULYSSES, .a2a_bytes_per_token = A2A(32, 4096), FLEXSP_BW,
	 .pcie_gbps = 20.0, .grad_sync_ms = 0.0, .max_offload = 0.875},
	{.name = "gpt-13b-flexsp", .alpha1 = 9.285e-6, .alpha2 = 0.30602, .beta = 1132.56,
	 .act_bytes_per_token = 4.22 * MIB, .params = 13e9, .gpu_mem_bytes = 28.0 * GIB,
	 .sp_comm = SL_SP_ULYSSES, .a2a_bytes_per_token = A2A(40, 5120), FLEXSP_BW,
	 .pcie_gbps = 20.0, .grad_sync_ms = 0.0, .max_offload = 0.875},
	{.name = "gpt-30b-flexsp", .alpha1 = 1.543e-5, .alpha2 = 0.80357, .beta = 2789.36,
	 .act_bytes_per_token = 3.42 * MIB, .params = 30e9, .gpu_mem_bytes = 28.0 * GIB,
	 .sp_comm = SL_SP_ULYSSES, .a2a_bytes_per_token = A2A(60, 6656), FLEXSP_BW,
	 .pcie_gbps = 20.0, .grad_sync_ms = 0.0, .max_offload = 0.875},
};

size_t sl_profile_preset_count(void)
{
	return sizeof(presets) / sizeof(presets[0]);
}

const sl_profile_t *sl_profile_preset_at(size_t i)
{
	return i < sl_profile_preset_count() ? &presets[i] : NULL;
}

const sl_profile_t *sl_profile_preset(const char *name)
{
	for (size_t i = 0; i < sl_profile_preset_count(); i++)
		if (strcmp(presets[i].name, name) == 0)
			return &presets[i];
	return NULL;
}

static int finite_nonneg(double v)
{
	return isfinite(v) && v >= 0.0;
}

/* The longest padded length SL_MAX_SEQ_LEN can take on any group size
 * (sl_cost_padded rounds up to a multiple of 2d). */
#define LONGEST ((double)SL_MAX_SEQ_LEN + 2.0 * SL_MAX_RANKS)

/* Checks that one term of a sequence's time, `ms` for the longest sequence
 * on any group size, is within SL_PROFILE_MAX_MS; NaN fails too. `field`
 * and `value` name the profile field to blame, `what` the term. */
static sl_err check_term(const char *n, const char *field, double value, const char *what,
                         double ms)
{
	if (ms <= SL_PROFILE_MAX_MS)
		return SL_OK;
	return sl_seterr(SL_ERANGE,
	                 "%s: %s = %g is out of range: %s for one sequence of %lld tokens "
	                 "(SL_MAX_SEQ_LEN) would take %g ms, more than the limit %g ms",
	                 n, field, value, what, (long long)SL_MAX_SEQ_LEN, ms, SL_PROFILE_MAX_MS);
}

/* The bounds that hold for every cluster: each term of sl_cost_seq_ms is at
 * most its value at the longest padded length on one rank (compute and
 * offload shrink with d; communication moves at most p / d * (d - 1) / d
 * <= p tokens' bytes at the slowest bandwidth listed). */
static sl_err check_derived(const sl_profile_t *p, const char *n)
{
	double L = LONGEST;
	SL_CHECK(check_term(n, "alpha1", p->alpha1, "the quadratic compute", p->alpha1 * L * L));
	SL_CHECK(check_term(n, "alpha2", p->alpha2, "the linear compute", p->alpha2 * L));
	SL_CHECK(check_term(n, "beta", p->beta, "one group execution", p->beta));
	SL_CHECK(check_term(n, "grad_sync_ms", p->grad_sync_ms, "the gradient sync",
	                    p->grad_sync_ms));
	SL_CHECK(check_term(n, "ring_tok_ms", p->ring_tok_ms, "the ring's per-token extension",
	                    p->ring_tok_ms * L));
	SL_CHECK(check_term(n, "pcie_gbps", p->pcie_gbps, "offloading the activations",
	                    p->act_bytes_per_token * L / MIB / p->pcie_gbps));
	if (p->sp_comm == SL_SP_ULYSSES) {
		for (int i = 0; i < p->n_bw; i++) {
			char f[48];
			snprintf(f, sizeof(f), "sp_bandwidth_gbps[%d]", p->bw_degree[i]);
			SL_CHECK(check_term(n, f, p->bw_gbps[i], "the all-to-all",
			                    p->a2a_bytes_per_token * L / MIB / p->bw_gbps[i]));
		}
	} else {
		SL_CHECK(check_term(n, "p2p_gbps_intra", p->p2p_gbps_intra, "the ring exchange",
		                    p->kv_bytes_per_token * L / MIB / p->p2p_gbps_intra));
		SL_CHECK(check_term(n, "p2p_gbps_inter", p->p2p_gbps_inter, "the ring exchange",
		                    p->kv_bytes_per_token * L / MIB / p->p2p_gbps_inter));
	}
	/* One token on one rank takes at least alpha1 + alpha2 and every group
	 * beta more, so the ideal is at least their sum: step / ideal is finite. */
	double least = p->alpha1 + p->alpha2 + p->beta;
	if (!(least >= SL_PROFILE_MIN_MS))
		return sl_seterr(SL_ERANGE,
		                 "%s: alpha1 + alpha2 + beta = %g ms is out of range: one token on one "
		                 "rank must take at least %g ms",
		                 n, least, SL_PROFILE_MIN_MS);
	/* The model state only lowers the capacity, so this bounds it on any
	 * number of ranks. */
	double cap = floor(p->gpu_mem_bytes / p->act_bytes_per_token);
	if (!(cap <= (double)SL_PROFILE_MAX_CAP))
		return sl_seterr(SL_ERANGE,
		                 "%s: gpu_mem_bytes = %g with act_bytes_per_token = %g is out of range: "
		                 "%g tokens per rank, more than the limit %lld",
		                 n, p->gpu_mem_bytes, p->act_bytes_per_token, cap,
		                 (long long)SL_PROFILE_MAX_CAP);
	return SL_OK;
}

sl_err sl_profile_check(const sl_profile_t *p)
{
	const char *n = p->name[0] ? p->name : "profile";
	if (!finite_nonneg(p->alpha1) || !finite_nonneg(p->alpha2) || !finite_nonneg(p->beta))
		return sl_seterr(SL_ERANGE,
		                 "%s: alpha1, alpha2 and beta must be finite and >= 0 (got %g, %g, %g)",
		                 n, p->alpha1, p->alpha2, p->beta);
	if (!(p->alpha1 > 0 || p->alpha2 > 0))
		return sl_seterr(SL_ERANGE, "%s: alpha1 and alpha2 are both 0 (no cost at all)", n);
	if (!(isfinite(p->act_bytes_per_token) && p->act_bytes_per_token > 0))
		return sl_seterr(SL_ERANGE, "%s: act_bytes_per_token must be > 0 (got %g)", n,
		                 p->act_bytes_per_token);
	if (!(isfinite(p->gpu_mem_bytes) && p->gpu_mem_bytes > 0))
		return sl_seterr(SL_ERANGE, "%s: gpu_mem_bytes must be > 0 (got %g)", n, p->gpu_mem_bytes);
	if (!finite_nonneg(p->model_state_bytes) || !finite_nonneg(p->params))
		return sl_seterr(SL_ERANGE, "%s: model_state_bytes and params must be >= 0", n);
	if (!finite_nonneg(p->grad_sync_ms))
		return sl_seterr(SL_ERANGE, "%s: grad_sync_ms must be finite and >= 0 (got %g)", n,
		                 p->grad_sync_ms);
	if (!(p->pcie_gbps > 0))
		return sl_seterr(SL_ERANGE, "%s: pcie_gbps must be > 0 (got %g)", n, p->pcie_gbps);
	if (!(p->max_offload >= 0 && p->max_offload < 1))
		return sl_seterr(SL_ERANGE, "%s: max_offload must be in [0, 1) (got %g)", n,
		                 p->max_offload);
	if (!finite_nonneg(p->ring_tok_ms))
		return sl_seterr(SL_ERANGE, "%s: ring_tok_ms must be finite and >= 0 (got %g)", n,
		                 p->ring_tok_ms);
	if (p->ring_tok_ms > 0 && p->sp_comm != SL_SP_RING)
		return sl_seterr(SL_EINVAL, "%s: ring_tok_ms = %g needs sp_comm \"ring\" (ulysses "
		                 "has no hops)", n, p->ring_tok_ms);
	if (p->sp_comm == SL_SP_ULYSSES) {
		if (!finite_nonneg(p->a2a_bytes_per_token))
			return sl_seterr(SL_ERANGE, "%s: a2a_bytes_per_token must be finite and >= 0 (got %g)",
			                 n, p->a2a_bytes_per_token);
		if (p->n_bw < 1 || p->n_bw > SL_PROFILE_MAX_BW)
			return sl_seterr(SL_ERANGE, "%s: sp_bandwidth_gbps needs 1 to %d degrees (got %d)",
			                 n, SL_PROFILE_MAX_BW, p->n_bw);
		for (int i = 0; i < p->n_bw; i++) {
			if (p->bw_degree[i] < 1 || (i > 0 && p->bw_degree[i] <= p->bw_degree[i - 1]))
				return sl_seterr(SL_ERANGE,
				                 "%s: sp_bandwidth_gbps degrees must be distinct and >= 1", n);
			if (!(p->bw_gbps[i] > 0))
				return sl_seterr(SL_ERANGE,
				                 "%s: sp_bandwidth_gbps[%d] must be > 0 (got %g)", n,
				                 p->bw_degree[i], p->bw_gbps[i]);
		}
	} else if (p->sp_comm == SL_SP_RING) {
		if (!finite_nonneg(p->kv_bytes_per_token))
			return sl_seterr(SL_ERANGE, "%s: kv_bytes_per_token must be finite and >= 0 (got %g)",
			                 n, p->kv_bytes_per_token);
		if (!(p->p2p_gbps_intra > 0) || !(p->p2p_gbps_inter > 0))
			return sl_seterr(SL_ERANGE,
			                 "%s: p2p_gbps_intra and p2p_gbps_inter must be > 0 (got %g, %g)", n,
			                 p->p2p_gbps_intra, p->p2p_gbps_inter);
	} else {
		return sl_seterr(SL_ERANGE, "%s: sp_comm must be \"ulysses\" or \"ring\"", n);
	}
	return check_derived(p, n);
}

sl_err sl_cluster_check(const sl_cluster_t *c)
{
	if (c->ranks < 1 || c->ranks > SL_MAX_RANKS)
		return sl_seterr(SL_ERANGE, "ranks must be in [1, %d] (got %d)", SL_MAX_RANKS, c->ranks);
	if (c->ranks_per_node < 1 || c->ranks_per_node > c->ranks)
		return sl_seterr(SL_ERANGE, "ranks-per-node must be in [1, ranks=%d] (got %d)", c->ranks,
		                 c->ranks_per_node);
	return SL_OK;
}

/* Reads a number field into *dst; absent fields keep *dst. */
static sl_err get_num(json_t *obj, const char *key, const char *what, double *dst, int required)
{
	json_t *v = json_object_get(obj, key);
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

static int cmp_bw(const void *a, const void *b)
{
	const int *x = a, *y = b;
	return (*x > *y) - (*x < *y);
}

sl_err sl_profile_parse_json(const char *text, const char *what, sl_profile_t *out)
{
	json_error_t jerr;
	json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	sl_profile_t p;
	sl_err rc = SL_OK;

	if (root == NULL)
		return sl_seterr(SL_EFORMAT, "%s:%d:%d: %s", what, jerr.line, jerr.column, jerr.text);
	if (!json_is_object(root)) {
		rc = sl_seterr(SL_EFORMAT, "%s: a profile must be a JSON object", what);
		goto out;
	}
	memset(&p, 0, sizeof(p));
	p.max_offload = 0.875;
	json_t *name = json_object_get(root, "name");
	if (name != NULL && !json_is_string(name)) {
		rc = sl_seterr(SL_EFORMAT, "%s: field \"name\" must be a string", what);
		goto out;
	}
	snprintf(p.name, sizeof(p.name), "%s", name ? json_string_value(name) : "custom");

	SL_CHECK_GOTO(get_num(root, "alpha1", what, &p.alpha1, 1), rc, out);
	SL_CHECK_GOTO(get_num(root, "alpha2", what, &p.alpha2, 1), rc, out);
	SL_CHECK_GOTO(get_num(root, "beta", what, &p.beta, 1), rc, out);
	SL_CHECK_GOTO(get_num(root, "act_bytes_per_token", what, &p.act_bytes_per_token, 1), rc, out);
	SL_CHECK_GOTO(get_num(root, "gpu_mem_bytes", what, &p.gpu_mem_bytes, 1), rc, out);
	SL_CHECK_GOTO(get_num(root, "params", what, &p.params, 0), rc, out);
	SL_CHECK_GOTO(get_num(root, "model_state_bytes", what, &p.model_state_bytes, p.params == 0),
	              rc, out);
	SL_CHECK_GOTO(get_num(root, "pcie_gbps", what, &p.pcie_gbps, 1), rc, out);
	SL_CHECK_GOTO(get_num(root, "grad_sync_ms", what, &p.grad_sync_ms, 0), rc, out);
	SL_CHECK_GOTO(get_num(root, "max_offload", what, &p.max_offload, 0), rc, out);
	SL_CHECK_GOTO(get_num(root, "ring_tok_ms", what, &p.ring_tok_ms, 0), rc, out);

	json_t *comm = json_object_get(root, "sp_comm");
	if (comm == NULL || !json_is_string(comm)) {
		rc = sl_seterr(SL_EFORMAT, "%s: field \"sp_comm\" must be \"ulysses\" or \"ring\"", what);
		goto out;
	}
	if (strcmp(json_string_value(comm), "ulysses") == 0) {
		p.sp_comm = SL_SP_ULYSSES;
		SL_CHECK_GOTO(get_num(root, "a2a_bytes_per_token", what, &p.a2a_bytes_per_token, 1), rc,
		              out);
		json_t *bw = json_object_get(root, "sp_bandwidth_gbps");
		if (bw == NULL || !json_is_object(bw)) {
			rc = sl_seterr(SL_EFORMAT,
			               "%s: field \"sp_bandwidth_gbps\" must be an object {degree: GB/s}",
			               what);
			goto out;
		}
		const char *key;
		json_t *val;
		struct {
			int deg;
			double gbps;
		} ent[SL_PROFILE_MAX_BW];
		int n = 0;
		json_object_foreach(bw, key, val)
		{
			char *end;
			errno = 0;
			long deg = strtol(key, &end, 10);
			if (errno || *end != '\0' || deg < 1 || deg > SL_MAX_RANKS) {
				rc = sl_seterr(SL_EFORMAT, "%s: sp_bandwidth_gbps key \"%s\" is not a degree",
				               what, key);
				goto out;
			}
			if (n == SL_PROFILE_MAX_BW) {
				rc = sl_seterr(SL_ERANGE, "%s: sp_bandwidth_gbps has more than %d entries",
				               what, SL_PROFILE_MAX_BW);
				goto out;
			}
			double g;
			if (json_is_number(val))
				g = json_number_value(val);
			else if (json_is_null(val) ||
			         (json_is_string(val) && (strcmp(json_string_value(val), "inf") == 0 ||
			                                  strcmp(json_string_value(val), "Infinity") == 0)))
				g = INFINITY;
			else {
				rc = sl_seterr(SL_EFORMAT,
				               "%s: sp_bandwidth_gbps[%s] must be a number or \"inf\"", what,
				               key);
				goto out;
			}
			ent[n].deg = (int)deg;
			ent[n].gbps = g;
			n++;
		}
		qsort(ent, (size_t)n, sizeof(ent[0]), cmp_bw);
		p.n_bw = n;
		for (int i = 0; i < n; i++) {
			p.bw_degree[i] = ent[i].deg;
			p.bw_gbps[i] = ent[i].gbps;
		}
	} else if (strcmp(json_string_value(comm), "ring") == 0) {
		p.sp_comm = SL_SP_RING;
		SL_CHECK_GOTO(get_num(root, "kv_bytes_per_token", what, &p.kv_bytes_per_token, 1), rc,
		              out);
		SL_CHECK_GOTO(get_num(root, "p2p_gbps_intra", what, &p.p2p_gbps_intra, 1), rc, out);
		SL_CHECK_GOTO(get_num(root, "p2p_gbps_inter", what, &p.p2p_gbps_inter, 1), rc, out);
	} else {
		rc = sl_seterr(SL_EFORMAT, "%s: sp_comm \"%s\" is neither \"ulysses\" nor \"ring\"", what,
		               json_string_value(comm));
		goto out;
	}
	SL_CHECK_GOTO(sl_profile_check(&p), rc, out);
	*out = p;
out:
	json_decref(root);
	return rc;
}

sl_err sl_profile_load_json_file(const char *path, sl_profile_t *out)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return sl_seterr(SL_EIO, "%s: cannot open profile: %s", path, strerror(errno));
	char *buf = NULL;
	size_t len = 0, cap = 0;
	sl_err rc = SL_OK;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			if (cap > (16u << 20)) {
				rc = sl_seterr(SL_ERANGE, "%s: profile file larger than 16 MiB", path);
				goto out;
			}
			char *nb = realloc(buf, cap);
			if (nb == NULL) {
				rc = sl_seterr(SL_ENOMEM, "%s: out of memory", path);
				goto out;
			}
			buf = nb;
		}
		size_t got = fread(buf + len, 1, 4096, f);
		len += got;
		if (got < 4096) {
			if (ferror(f)) {
				rc = sl_seterr(SL_EIO, "%s: read error", path);
				goto out;
			}
			break;
		}
	}
	buf[len] = '\0';
	rc = sl_profile_parse_json(buf, path, out);
	if (rc == SL_OK && strcmp(out->name, "custom") == 0) {
		const char *base = strrchr(path, '/');
		base = base ? base + 1 : path;
		snprintf(out->name, sizeof(out->name), "%.*s", (int)strcspn(base, "."), base);
	}
out:
	free(buf);
	fclose(f);
	return rc;
}

sl_err sl_profile_resolve(const char *name_or_path, sl_profile_t *out)
{
	const sl_profile_t *p = sl_profile_preset(name_or_path);
	if (p != NULL) {
		*out = *p;
		return SL_OK;
	}
	FILE *f = fopen(name_or_path, "rb");
	if (f == NULL) {
		char names[256] = "";
		for (size_t i = 0; i < sl_profile_preset_count(); i++) {
			strncat(names, i ? ", " : "", sizeof(names) - strlen(names) - 1);
			strncat(names, presets[i].name, sizeof(names) - strlen(names) - 1);
		}
		return sl_seterr(SL_ENOTFOUND,
		                 "unknown profile '%s': not a built-in (%s) and not a readable file",
		                 name_or_path, names);
	}
	fclose(f);
	return sl_profile_load_json_file(name_or_path, out);
}

static void put_num(json_t *o, const char *k, double v)
{
	json_object_set_new(o, k, json_real(v));
}

char *sl_profile_to_json(const sl_profile_t *p)
{
	json_t *o = json_object();
	if (o == NULL)
		return NULL;
	json_object_set_new(o, "name", json_string(p->name));
	put_num(o, "alpha1", p->alpha1);
	put_num(o, "alpha2", p->alpha2);
	put_num(o, "beta", p->beta);
	put_num(o, "act_bytes_per_token", p->act_bytes_per_token);
	if (p->params > 0)
		put_num(o, "params", p->params);
	else
		put_num(o, "model_state_bytes", p->model_state_bytes);
	put_num(o, "gpu_mem_bytes", p->gpu_mem_bytes);
	json_object_set_new(o, "sp_comm", json_string(p->sp_comm == SL_SP_RING ? "ring" : "ulysses"));
	if (p->sp_comm == SL_SP_ULYSSES) {
		put_num(o, "a2a_bytes_per_token", p->a2a_bytes_per_token);
		json_t *bw = json_object();
		for (int i = 0; i < p->n_bw; i++) {
			char k[16];
			snprintf(k, sizeof(k), "%d", p->bw_degree[i]);
			json_object_set_new(bw, k, isinf(p->bw_gbps[i]) ? json_string("inf")
			                                                 : json_real(p->bw_gbps[i]));
		}
		json_object_set_new(o, "sp_bandwidth_gbps", bw);
	} else {
		put_num(o, "kv_bytes_per_token", p->kv_bytes_per_token);
		put_num(o, "p2p_gbps_intra", p->p2p_gbps_intra);
		put_num(o, "p2p_gbps_inter", p->p2p_gbps_inter);
	}
	put_num(o, "pcie_gbps", p->pcie_gbps);
	put_num(o, "grad_sync_ms", p->grad_sync_ms);
	put_num(o, "max_offload", p->max_offload);
	if (p->ring_tok_ms != 0) /* the extension; reference profiles stay as the spec writes them */
		put_num(o, "ring_tok_ms", p->ring_tok_ms);
	char *s = json_dumps(o, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
	json_decref(o);
	return s;
}
