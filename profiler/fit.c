/* sluice profiler: model shapes, the sizes they imply, and the least-squares
 * fit of measured per-layer times to the reference cost model's constants
 * (docs/fidelity.md "From measurements to constants"). CPU only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profiler.h"

#define MIB 1048576.0

/* GPT shapes of the spec's reference profiles: hidden and layers from its
 * table, head dim 128 (32 / 40 / 52 heads), MLP 4 x hidden, GPT-2 vocab. */
static const sl_model_shape_t presets[] = {
	{.name = "gpt-7b", .hidden = 4096, .heads = 32, .kv_heads = 32, .head_dim = 128,
	 .ffn = 16384, .layers = 32, .vocab = 50257},
	{.name = "gpt-13b", .hidden = 5120, .heads = 40, .kv_heads = 40, .head_dim = 128,
	 .ffn = 20480, .layers = 40, .vocab = 50257},
	{.name = "gpt-30b", .hidden = 6656, .heads = 52, .kv_heads = 52, .head_dim = 128,
	 .ffn = 26624, .layers = 60, .vocab = 50257},
};

size_t sl_model_preset_count(void)
{
	return sizeof(presets) / sizeof(presets[0]);
}

const sl_model_shape_t *sl_model_preset_at(size_t i)
{
	return i < sl_model_preset_count() ? &presets[i] : NULL;
}

const sl_model_shape_t *sl_model_preset(const char *name)
{
	for (size_t i = 0; i < sl_model_preset_count(); i++)
		if (strcmp(presets[i].name, name) == 0)
			return &presets[i];
	return NULL;
}

sl_err sl_model_shape_check(const sl_model_shape_t *m)
{
	const char *n = m->name[0] ? m->name : "model";
	const struct {
		const char *field;
		int64_t v, max;
	} f[] = {
		{"hidden", m->hidden, PROFILER_MAX_DIM},  {"heads", m->heads, 1024},
		{"kv_heads", m->kv_heads, 1024},          {"head_dim", m->head_dim, 1024},
		{"ffn", m->ffn, PROFILER_MAX_DIM},        {"layers", m->layers, 100000},
		{"vocab", m->vocab, 100000000},
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		const int64_t lo = strcmp(f[i].field, "vocab") == 0 ? 0 : 1;
		if (f[i].v < lo || f[i].v > f[i].max)
			return sl_seterr(SL_ERANGE, "%s: %s must be in [%lld, %lld] (got %lld)", n,
			                 f[i].field, (long long)lo, (long long)f[i].max,
			                 (long long)f[i].v);
	}
	if (m->heads % m->kv_heads != 0)
		return sl_seterr(SL_ERANGE, "%s: heads (%d) must be a multiple of kv_heads (%d)", n,
		                 m->heads, m->kv_heads);
	return SL_OK;
}

double sl_model_params(const sl_model_shape_t *m)
{
	const double h = m->hidden, qkv = (double)(m->heads + 2 * m->kv_heads) * m->head_dim;
	const double attn_out = (double)m->heads * m->head_dim;
	const double layer = h * qkv + attn_out * h + 2.0 * h * m->ffn;
	return m->layers * layer + (double)m->vocab * h;
}

/* Per layer and token, bf16 (2 bytes) unless noted: LN1 input, QKV input,
 * Q, K, V, attention output, LSE (fp32), LN2 input, fc1 input, fc1 output
 * and GeLU output (Korthikanti et al., "Reducing Activation Recomputation",
 * 2022, section 4, without dropout masks and with FlashAttention's
 * O(s) softmax state instead of the s^2 scores). */
double sl_model_act_bytes_per_token(const sl_model_shape_t *m)
{
	const double h = m->hidden, hd = m->head_dim;
	const double layer = 2.0 * (4.0 * h) + 2.0 * (m->heads + 2.0 * m->kv_heads) * hd +
	                     2.0 * m->heads * hd + 4.0 * m->heads + 2.0 * (2.0 * m->ffn);
	return m->layers * layer + 4.0 * (double)m->vocab;
}

double sl_model_kv_bytes_per_token(const sl_model_shape_t *m)
{
	const double kv = (double)m->kv_heads * m->head_dim;
	/* forward: K, V bf16; backward: K, V bf16 again and dK, dV fp32 */
	return m->layers * (2.0 * kv * 2.0 + 2.0 * kv * 2.0 + 2.0 * kv * 4.0);
}

double sl_model_layer_gemm_flop(const sl_model_shape_t *m)
{
	const double h = m->hidden, qkv = (double)(m->heads + 2 * m->kv_heads) * m->head_dim;
	const double weights = h * qkv + (double)m->heads * m->head_dim * h + 2.0 * h * m->ffn;
	return 6.0 * weights; /* 2 forward + 4 backward (dX, dW) per weight */
}

void sl_calib_meas_free(sl_calib_meas_t *m)
{
	free(m->gemm);
	free(m->head);
	free(m->hop);
	m->gemm = m->head = NULL;
	m->hop = NULL;
	m->ngemm = m->nhead = m->nhop = 0;
}

/* Pairs (q, k) with pos(k) <= pos(q) between query chunk a and key chunk b of
 * c tokens each. */
static double chunk_pairs(int64_t a, int64_t b, double c)
{
	if (b < a)
		return c * c;
	if (b == a)
		return c * (c + 1.0) / 2.0;
	return 0.0;
}

double sl_calib_hop_pairs(int32_t d, int32_t q_owner, int32_t k_owner, int32_t len)
{
	if (d <= 1)
		return (double)len * (len + 1.0) / 2.0;
	const double c = len / 2;
	sl_shard_t q, k; /* the chunks each position holds (only len's count matters) */
	sl_zigzag_shard(2 * (int64_t)d, d, q_owner, &q);
	sl_zigzag_shard(2 * (int64_t)d, d, k_owner, &k);
	const int64_t qa = q.chunk[0], qb = q.chunk[1], ka = k.chunk[0], kb = k.chunk[1];
	return chunk_pairs(qa, ka, c) + chunk_pairs(qa, kb, c) + chunk_pairs(qb, ka, c) +
	       chunk_pairs(qb, kb, c);
}

/* Solves the k x k system a x = b in place by Gaussian elimination with
 * partial pivoting; 0 when singular (a pivot under tol). */
static int solve(double a[PROFILER_MAX_COLS][PROFILER_MAX_COLS], double *b, int k, double tol)
{
	for (int i = 0; i < k; i++) {
		int p = i;
		for (int r = i + 1; r < k; r++)
			if (fabs(a[r][i]) > fabs(a[p][i]))
				p = r;
		if (!(fabs(a[p][i]) > tol))
			return 0;
		if (p != i) {
			for (int j = 0; j < k; j++) {
				double t = a[i][j];
				a[i][j] = a[p][j];
				a[p][j] = t;
			}
			double t = b[i];
			b[i] = b[p];
			b[p] = t;
		}
		for (int r = i + 1; r < k; r++) {
			const double f = a[r][i] / a[i][i];
			for (int j = i; j < k; j++)
				a[r][j] -= f * a[i][j];
			b[r] -= f * b[i];
		}
	}
	for (int i = k - 1; i >= 0; i--) {
		double s = b[i];
		for (int j = i + 1; j < k; j++)
			s -= a[i][j] * b[j];
		b[i] = s / a[i][i];
	}
	return 1;
}

/* Least squares of rows (x_i / y_i) c ~ 1 over the columns in mask; the
 * columns are scaled to unit maximum first, because pairs (~1e8), tokens
 * (~1e4) and a constant share one system. Returns the sum of squared
 * relative residuals, or -1 when the system is singular. */
static double ls_subset(const double *x, const double *y, size_t n, int k, unsigned mask,
                        double *c)
{
	int cols[PROFILER_MAX_COLS], m = 0;
	double scale[PROFILER_MAX_COLS];
	for (int j = 0; j < k; j++)
		if (mask & (1u << j))
			cols[m++] = j;
	for (int j = 0; j < m; j++) {
		scale[j] = 0;
		for (size_t i = 0; i < n; i++)
			scale[j] = fmax(scale[j], fabs(x[i * (size_t)k + (size_t)cols[j]] / y[i]));
		if (!(scale[j] > 0))
			return -1;
	}
	double a[PROFILER_MAX_COLS][PROFILER_MAX_COLS] = {{0}}, b[PROFILER_MAX_COLS] = {0};
	for (size_t i = 0; i < n; i++) {
		double r[PROFILER_MAX_COLS];
		for (int j = 0; j < m; j++)
			r[j] = x[i * (size_t)k + (size_t)cols[j]] / y[i] / scale[j];
		for (int j = 0; j < m; j++) {
			for (int l = 0; l < m; l++)
				a[j][l] += r[j] * r[l];
			b[j] += r[j];
		}
	}
	if (!solve(a, b, m, 1e-12 * (double)n))
		return -1;
	for (int j = 0; j < k; j++)
		c[j] = 0;
	for (int j = 0; j < m; j++)
		c[cols[j]] = b[j] / scale[j];
	double ss = 0;
	for (size_t i = 0; i < n; i++) {
		double p = 0;
		for (int j = 0; j < k; j++)
			p += x[i * (size_t)k + (size_t)j] * c[j];
		ss += (p / y[i] - 1.0) * (p / y[i] - 1.0);
	}
	return ss;
}

sl_err sl_calib_nnls_rel(const double *x, const double *y, size_t n, int k, double *c)
{
	if (k < 1 || k > PROFILER_MAX_COLS)
		return sl_seterr(SL_EINVAL, "least squares: %d columns (1..%d allowed)", k,
		                 PROFILER_MAX_COLS);
	if (n < (size_t)k)
		return sl_seterr(SL_EINVAL, "least squares: %zu points for %d unknowns", n, k);
	for (size_t i = 0; i < n; i++) {
		if (!(isfinite(y[i]) && y[i] > 0))
			return sl_seterr(SL_EINVAL, "least squares: point %zu has time %g (must be > 0)",
			                 i, y[i]);
		for (int j = 0; j < k; j++)
			if (!isfinite(x[i * (size_t)k + (size_t)j]))
				return sl_seterr(SL_EINVAL, "least squares: point %zu is not finite", i);
	}
	/* The NNLS optimum is the unconstrained optimum of its support (the
	 * columns left positive), so the best feasible subset is it; with at most
	 * PROFILER_MAX_COLS columns, trying every subset is cheap and exact. */
	double best = -1, cur[PROFILER_MAX_COLS];
	for (unsigned mask = 1; mask < (1u << k); mask++) {
		const double ss = ls_subset(x, y, n, k, mask, cur);
		if (ss < 0)
			continue;
		int ok = 1;
		for (int j = 0; j < k; j++)
			ok &= cur[j] >= 0;
		if (ok && (best < 0 || ss < best * (1 - 1e-12))) {
			best = ss;
			memcpy(c, cur, (size_t)k * sizeof(*c));
		}
	}
	if (best < 0)
		return sl_seterr(SL_EINVAL,
		                 "least squares: no solvable non-negative fit (%zu points, %d unknowns: "
		                 "too few distinct sizes?)",
		                 n, k);
	return SL_OK;
}

/* Residuals of measured y against predicted p. */
static sl_calib_resid_t resid(const double *y, const double *p, size_t n)
{
	sl_calib_resid_t r = {.n = n};
	double ss = 0;
	for (size_t i = 0; i < n; i++) {
		const double e = (p[i] - y[i]) / y[i];
		ss += e * e;
		r.max_rel = fmax(r.max_rel, fabs(e));
	}
	r.rms_rel = n ? sqrt(ss / (double)n) : 0;
	return r;
}

/* Fits ms ~ c0 tokens + c1 over the points; `what` names them in errors. */
static sl_err fit_points(const sl_calib_point_t *pt, size_t n, const char *what, double c[2],
                         sl_calib_resid_t *r)
{
	double *x = malloc(2 * n * sizeof(*x) + 2 * n * sizeof(*x) + 1);
	sl_err rc = SL_OK;
	if (x == NULL)
		return sl_seterr(SL_ENOMEM, "%s: out of memory", what);
	double *y = x + 2 * n, *p = y + n;
	int64_t tmin = INT64_MAX, tmax = 0;
	for (size_t i = 0; i < n; i++) {
		if (pt[i].tokens < 1 || !(isfinite(pt[i].ms) && pt[i].ms > 0)) {
			rc = sl_seterr(SL_EINVAL, "%s point %zu: tokens %lld, ms %g (need tokens >= 1, "
			                         "ms > 0)",
			               what, i, (long long)pt[i].tokens, pt[i].ms);
			goto out;
		}
		x[2 * i] = (double)pt[i].tokens;
		x[2 * i + 1] = 1.0;
		y[i] = pt[i].ms;
		tmin = pt[i].tokens < tmin ? pt[i].tokens : tmin;
		tmax = pt[i].tokens > tmax ? pt[i].tokens : tmax;
	}
	if (n < 2 || tmin == tmax) {
		rc = sl_seterr(SL_EINVAL, "%s: need points at 2 or more token counts (got %zu)", what,
		               n);
		goto out;
	}
	SL_CHECK_GOTO(sl_calib_nnls_rel(x, y, n, 2, c), rc, out);
	for (size_t i = 0; i < n; i++)
		p[i] = c[0] * x[2 * i] + c[1];
	*r = resid(y, p, n);
out:
	free(x);
	return rc;
}

static sl_err check_meas(const sl_calib_meas_t *m)
{
	SL_CHECK(sl_model_shape_check(&m->model));
	for (size_t i = 0; i < m->nhop; i++) {
		const sl_calib_hop_t *h = &m->hop[i];
		if (h->d < 1 || h->d > SL_MAX_RANKS || h->q_owner < 0 || h->q_owner >= h->d ||
		    h->k_owner < 0 || h->k_owner >= h->d)
			return sl_seterr(SL_EINVAL,
			                 "attention hop %zu: d %d, q_owner %d, k_owner %d (owners must "
			                 "be in [0, d))",
			                 i, h->d, h->q_owner, h->k_owner);
		if (h->len < 2 || (h->d > 1 && h->len % 2 != 0))
			return sl_seterr(SL_EINVAL,
			                 "attention hop %zu: len %d (>= 2, even when d > 1: 2 zigzag "
			                 "chunks)",
			                 i, h->len);
		if (!(isfinite(h->fwd_ms) && h->fwd_ms > 0 && isfinite(h->bwd_ms) && h->bwd_ms > 0))
			return sl_seterr(SL_EINVAL, "attention hop %zu: fwd_ms %g, bwd_ms %g (must be > 0)",
			                 i, h->fwd_ms, h->bwd_ms);
	}
	if (m->nhop < 3)
		return sl_seterr(SL_EINVAL, "attention: %zu hops measured, need 3 or more", m->nhop);
	if (m->model.vocab > 0 && m->nhead == 0)
		return sl_seterr(SL_EINVAL, "model has vocab %lld but no LM head times were measured",
		                 (long long)m->model.vocab);
	const struct {
		const char *what;
		double v;
		int zero_ok;
	} v[] = {
		{"group_fixed_ms", m->group_fixed_ms, 1},
		{"attn_ws_bytes_per_token", m->attn_ws_bytes_per_token, 1},
		{"d2h_gbps", m->d2h_gbps, 0},
		{"h2d_gbps", m->h2d_gbps, 0},
		{"gpu_free_bytes", m->gpu_free_bytes, 0},
		{"p2p_gbps", m->p2p_gbps, 0},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (!isfinite(v[i].v) || v[i].v < 0 || (!v[i].zero_ok && v[i].v == 0))
			return sl_seterr(SL_EINVAL, "measurement %s is %g (must be %s)", v[i].what,
			                 v[i].v, v[i].zero_ok ? ">= 0" : "> 0");
	return SL_OK;
}

/* The ring check (sl_calib_fit_t.r_ring): per (d, len) with d > 1, d times
 * the mean measured hop against the model's attention share; then the
 * extension ring_tok (>= 0) that best closes the gap on relative error,
 * y ~ model + ring_tok p (1 - 1/d) (docs/cost-model.md, "Extensions"), and
 * the residuals with it (r_ring_ext). */
static sl_err ring_resid(const sl_calib_meas_t *m, sl_calib_fit_t *f)
{
	double *y = calloc(3 * m->nhop + 1, sizeof(*y)), *p = y ? y + m->nhop : NULL;
	double *q = y ? p + m->nhop : NULL;
	size_t n = 0;
	if (y == NULL)
		return sl_seterr(SL_ENOMEM, "ring residuals: out of memory");
	for (size_t i = 0; i < m->nhop; i++) {
		const sl_calib_hop_t *h = &m->hop[i];
		int first = h->d > 1;
		for (size_t j = 0; j < i && first; j++)
			first = !(m->hop[j].d == h->d && m->hop[j].len == h->len);
		if (!first)
			continue;
		double sum = 0;
		int cnt = 0;
		for (size_t j = i; j < m->nhop; j++)
			if (m->hop[j].d == h->d && m->hop[j].len == h->len) {
				sum += m->hop[j].fwd_ms + m->hop[j].bwd_ms;
				cnt++;
			}
		const double pl = (double)h->d * h->len;
		y[n] = h->d * sum / cnt;
		/* the model: (alpha1 p^2 + alpha2' p) / d + the hop's share of beta */
		p[n] = (f->hop[0] / 2 * pl * pl + (f->hop[1] + f->hop[0] / 2) * pl) / h->d + f->hop[2];
		q[n] = pl * (1.0 - 1.0 / h->d);
		n++;
	}
	f->r_ring = resid(y, p, n);
	/* one coefficient: minimise sum ((y - p - x q) / y)^2 over x >= 0 */
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++)
		if (y[i] > 0) {
			num += (y[i] - p[i]) * q[i] / (y[i] * y[i]);
			den += q[i] * q[i] / (y[i] * y[i]);
		}
	f->ring_tok = den > 0 && num > 0 ? num / den : 0.0;
	for (size_t i = 0; i < n; i++)
		p[i] += f->ring_tok * q[i];
	f->r_ring_ext = resid(y, p, n);
	free(y);
	return SL_OK;
}

sl_err sl_calib_fit(const sl_calib_meas_t *m, const sl_calib_opts_t *o, sl_calib_fit_t *fit)
{
	sl_calib_fit_t f;
	double *x = NULL;
	sl_err rc = SL_OK;
	memset(&f, 0, sizeof(f));
	SL_CHECK(check_meas(m));
	if (!(o->max_offload >= 0 && o->max_offload < 1))
		return sl_seterr(SL_ERANGE, "max_offload must be in [0, 1) (got %g)", o->max_offload);
	if (!(isfinite(o->p2p_gbps_inter) && o->p2p_gbps_inter > 0))
		return sl_seterr(SL_ERANGE, "p2p_gbps_inter must be > 0 (got %g)", o->p2p_gbps_inter);
	if (!(isfinite(o->mem_reserve_bytes) && o->mem_reserve_bytes >= 0))
		return sl_seterr(SL_ERANGE, "memory reserve must be >= 0 (got %g)",
		                 o->mem_reserve_bytes);

	SL_CHECK(fit_points(m->gemm, m->ngemm, "GEMM (linear parts)", f.gemm, &f.r_gemm));
	if (m->model.vocab > 0)
		SL_CHECK(fit_points(m->head, m->nhead, "LM head", f.head, &f.r_head));

	const size_t n = m->nhop;
	x = malloc(5 * n * sizeof(*x));
	if (x == NULL)
		return sl_seterr(SL_ENOMEM, "attention fit: out of memory");
	double *y = x + 3 * n, *p = y + n;
	for (size_t i = 0; i < n; i++) {
		const sl_calib_hop_t *h = &m->hop[i];
		x[3 * i] = sl_calib_hop_pairs(h->d, h->q_owner, h->k_owner, h->len);
		x[3 * i + 1] = h->len;
		x[3 * i + 2] = 1.0;
		y[i] = h->fwd_ms + h->bwd_ms;
	}
	SL_CHECK_GOTO(sl_calib_nnls_rel(x, y, n, 3, f.hop), rc, out);
	if (!(f.hop[0] > 0)) {
		rc = sl_seterr(SL_EINVAL,
		               "attention fit: no quadratic term (time does not grow with the pairs: "
		               "measure more lengths)");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		p[i] = f.hop[0] * x[3 * i] + f.hop[1] * x[3 * i + 1] + f.hop[2];
	f.r_hop = resid(y, p, n);
	SL_CHECK_GOTO(ring_resid(m, &f), rc, out);

	sl_profile_t *pr = &f.prof;
	const double L = m->model.layers;
	if (o->name[0])
		snprintf(pr->name, sizeof(pr->name), "%s", o->name);
	else
		snprintf(pr->name, sizeof(pr->name), "calibrated-%.52s",
		         m->model.name[0] ? m->model.name : "model");
	pr->alpha1 = L * f.hop[0] / 2;
	pr->alpha2 = L * (f.gemm[0] + f.hop[1] + f.hop[0] / 2) + f.head[0];
	pr->beta = m->group_fixed_ms + L * (f.gemm[1] + f.hop[2]) + f.head[1];
	pr->act_bytes_per_token = sl_model_act_bytes_per_token(&m->model) + m->attn_ws_bytes_per_token;
	pr->params = sl_model_params(&m->model);
	pr->gpu_mem_bytes = m->gpu_free_bytes - o->mem_reserve_bytes;
	if (!(pr->gpu_mem_bytes > 0)) {
		rc = sl_seterr(SL_ERANGE, "memory reserve %.3g GiB leaves nothing of %.3g GiB free",
		               o->mem_reserve_bytes / (MIB * 1024), m->gpu_free_bytes / (MIB * 1024));
		goto out;
	}
	pr->sp_comm = SL_SP_RING;
	pr->kv_bytes_per_token = sl_model_kv_bytes_per_token(&m->model);
	pr->p2p_gbps_intra = m->p2p_gbps;
	pr->p2p_gbps_inter = o->p2p_gbps_inter;
	/* an offloaded byte goes out in the forward and back in the backward */
	pr->pcie_gbps = 1.0 / (1.0 / m->d2h_gbps + 1.0 / m->h2d_gbps);
	pr->grad_sync_ms = 0;
	pr->max_offload = o->max_offload;
	pr->ring_tok_ms = o->reference_form ? 0.0 : L * f.ring_tok;
	SL_CHECK_GOTO(sl_profile_check(pr), rc, out);
	*fit = f;
out:
	free(x);
	return rc;
}
