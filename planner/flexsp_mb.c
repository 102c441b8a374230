/* sluice planner: FlexSP's per-micro-batch solver (flexsp_internal.h).
 *
 * FlexSP (ASPLOS 2025, section 4.2) states one MILP per micro-batch: a pool
 * of candidate power-of-two Ulysses groups, an integer count of each length
 * bucket's sequences per group, a binary "in use" per group, the memory of
 * each group, every used group's time <= M, the used groups covering the N
 * ranks, minimise M. Candidate groups of one size are interchangeable, so
 * branch-and-cut on that MILP spends its nodes on symmetric copies: run
 * through GLPK it stalled at a 58-72% gap and lost to plain best-fit at a
 * 10 s limit. We solve the same model exactly by its symmetry instead:
 *
 *   for every configuration (n_d groups of size d, sum d * n_d = N, d a
 *   power of two), the MILP aggregated over the n_d identical groups is a
 *   small LP (bucket counts per size, memory and average time per size);
 *   its solution is rounded to counts and dealt to the n_d groups by
 *   longest-processing-time packing under the memory rule, then polished by
 *   single moves and pairwise swaps that lower the slowest group.
 *
 * Configurations are visited in the order of a lower bound that needs no LP
 * (critical path and rank-time of the sequences that only fit on the larger
 * groups, against the ranks those groups have), seeded with the homogeneous
 * plans (one size for all), and the walk stops once the bound reaches the
 * best plan found or the deterministic LP budget runs out. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "flexsp_internal.h"
#include "lp.h"

/* Bucket boundaries considered by the dynamic programme (kept cheap). */
#define FX_BUCKET_CANDIDATES 256
/* fx_bound tabulates its per-mask part up to this many sizes (N <= 1024). */
#define FX_BOUND_CACHE_DEG 11
/* Configurations kept for polishing. */
#define FX_TOPK 4

/* ---- bucketing (FlexSP section 4.2, "sequence bucketing") ------------ */

/* DP over candidate boundaries: pos[0] = 0 < pos[1] < ... < pos[np] = m;
 * buckets start only at candidate positions. Fills best[b][k] for 1..maxb
 * and the argmin table. */
static int64_t fx_pad_cost(const int64_t *len, const int64_t *pre, int64_t i, int64_t j)
{
	return len[i] * (j - i) - (pre[j] - pre[i]);
}

/* Solves the bucketing DP for every count 1..maxb at once; pad[b - 1] gets
 * the least padding with b buckets and starts (maxb x maxb) the starts. */
static int fx_bucket_dp(const int64_t *len, int64_t m, int32_t maxb, int64_t *pad, int64_t *starts)
{
	int64_t np = 0;
	int64_t *pos = malloc(sizeof(*pos) * (FX_BUCKET_CANDIDATES + 2));
	int64_t *pre = malloc(sizeof(*pre) * ((size_t)m + 1));
	int64_t *f = NULL;
	int32_t *arg = NULL;
	int ok = 0;

	if (pos == NULL || pre == NULL)
		goto out;
	pre[0] = 0;
	for (int64_t i = 0; i < m; i++)
		pre[i + 1] = pre[i] + len[i];
	/* Candidate starts: where the length changes; evenly thinned when
	 * there are too many (deterministic). */
	int64_t ndist = 0;
	for (int64_t i = 1; i < m; i++)
		ndist += len[i] != len[i - 1];
	pos[np++] = 0;
	{
		int64_t seen = 0, step = ndist / FX_BUCKET_CANDIDATES + 1;
		for (int64_t i = 1; i < m; i++) {
			if (len[i] == len[i - 1])
				continue;
			if (seen++ % step == 0)
				pos[np++] = i;
		}
	}
	pos[np] = m; /* sentinel end */
	int32_t B = maxb < np ? maxb : (int32_t)np;
	f = malloc(sizeof(*f) * (size_t)B * ((size_t)np + 1));
	arg = malloc(sizeof(*arg) * (size_t)B * ((size_t)np + 1));
	if (f == NULL || arg == NULL)
		goto out;
	/* f[b][k]: least padding covering [0, pos[k]) with b + 1 buckets. */
	for (int64_t k = 1; k <= np; k++) {
		f[k] = fx_pad_cost(len, pre, 0, pos[k]);
		arg[k] = 0;
	}
	for (int32_t b = 1; b < B; b++) {
		int64_t *fb = f + (size_t)b * (np + 1), *fp = f + (size_t)(b - 1) * (np + 1);
		int32_t *ab = arg + (size_t)b * (np + 1);
		for (int64_t k = 0; k <= np; k++) {
			fb[k] = INT64_MAX;
			ab[k] = -1;
		}
		for (int64_t k = b + 1; k <= np; k++)
			for (int64_t i = b; i < k; i++) {
				int64_t c = fp[i] + fx_pad_cost(len, pre, pos[i], pos[k]);
				if (c < fb[k]) {
					fb[k] = c;
					ab[k] = (int32_t)i;
				}
			}
	}
	for (int32_t b = 0; b < maxb; b++) {
		int32_t bb = b < B ? b : B - 1;
		pad[b] = f[(size_t)bb * (np + 1) + np];
		int64_t *st = starts + (size_t)b * maxb;
		int64_t k = np;
		for (int32_t q = bb; q >= 0; q--) {
			int32_t i = arg[(size_t)q * (np + 1) + k];
			st[q] = q == 0 ? 0 : pos[i];
			k = i;
		}
		for (int32_t q = bb + 1; q < maxb; q++)
			st[q] = -1;
	}
	ok = 1;
out:
	free(pos);
	free(pre);
	free(f);
	free(arg);
	return ok;
}

int64_t planner_flexsp_buckets(const int64_t *len, int64_t m, int32_t nb, int64_t *start)
{
	if (m < 1 || nb < 1)
		return -1;
	int64_t *pad = malloc(sizeof(*pad) * (size_t)nb);
	int64_t *starts = malloc(sizeof(*starts) * (size_t)nb * nb);
	int64_t r = -1;
	if (pad != NULL && starts != NULL && fx_bucket_dp(len, m, nb, pad, starts)) {
		for (int32_t q = 0; q < nb; q++)
			start[q] = starts[(size_t)(nb - 1) * nb + q];
		r = pad[nb - 1];
	}
	free(pad);
	free(starts);
	return r;
}

int64_t planner_flexsp_bucketize(const int64_t *len, int64_t m, double room, int32_t max_nb,
                                 int64_t *start, int32_t *nb)
{
	if (m < 1 || max_nb < 1)
		return -1;
	int64_t *pad = malloc(sizeof(*pad) * (size_t)max_nb);
	int64_t *starts = malloc(sizeof(*starts) * (size_t)max_nb * max_nb);
	int64_t r = -1;
	if (pad != NULL && starts != NULL && fx_bucket_dp(len, m, max_nb, pad, starts)) {
		double real = 0;
		for (int64_t i = 0; i < m; i++)
			real += (double)len[i];
		double allow = (room - real) / 2;
		int32_t b = 0;
		/* Grow the count until the padding is within half the gap to the
		 * ranks' room (FlexSP's rule), or buckets stop helping. */
		while (b + 1 < max_nb && (double)pad[b] > allow && pad[b] > 0 &&
		       starts[(size_t)(b + 1) * max_nb + b + 1] >= 0)
			b++;
		int32_t cnt = 0;
		for (int32_t q = 0; q <= b; q++)
			if (starts[(size_t)b * max_nb + q] >= 0)
				start[cnt++] = starts[(size_t)b * max_nb + q];
		*nb = cnt;
		r = pad[b];
	}
	free(pad);
	free(starts);
	return r;
}

/* ---- configurations ---------------------------------------------------- */

struct fx_enum {
	fx_ctx_t *ctx;
	int64_t cap, cnt;
	int32_t cur[FX_MAXDEG];
	sl_err rc;
	int64_t alloc;
};

static void fx_enum_rec(struct fx_enum *e, int32_t j, int32_t left)
{
	fx_ctx_t *ctx = e->ctx;
	if (e->rc != SL_OK)
		return;
	if (j == 0) {
		e->cur[0] = left; /* size 1 takes the rest */
		if (e->cnt >= e->cap) {
			ctx->cfg_cap_hit++;
			return;
		}
		if (e->cnt == e->alloc) {
			int64_t na = e->alloc ? e->alloc * 2 : 256;
			int32_t *c = realloc(ctx->cfg, sizeof(*c) * (size_t)na * ctx->ndeg);
			if (c == NULL) {
				e->rc =
				    sl_seterr(SL_ENOMEM, "flexsp: out of memory (configurations)");
				return;
			}
			ctx->cfg = c;
			e->alloc = na;
		}
		memcpy(ctx->cfg + (size_t)e->cnt * ctx->ndeg, e->cur, sizeof(int32_t) * ctx->ndeg);
		e->cnt++;
		return;
	}
	for (int32_t k = left / ctx->deg[j]; k >= 0; k--) {
		e->cur[j] = k;
		fx_enum_rec(e, j - 1, left - k * ctx->deg[j]);
		if (e->cnt >= e->cap && ctx->cfg_cap_hit > 0)
			return;
	}
}

sl_err planner_flexsp_configs(fx_ctx_t *ctx, int64_t cap)
{
	struct fx_enum e = {.ctx = ctx, .cap = cap};
	free(ctx->cfg);
	ctx->cfg = NULL;
	ctx->ncfg = 0;
	ctx->cfg_cap_hit = 0;
	fx_enum_rec(&e, ctx->ndeg - 1, ctx->N);
	ctx->ncfg = e.cnt;
	return e.rc;
}

/* ---- one micro-batch --------------------------------------------------- */

/* Work space of one micro-batch solve. */
typedef struct fx_ws {
	fx_ctx_t *ctx;
	int64_t lo, m;
	double beta, cap;
	int32_t nb;
	int64_t bstart[FX_MAX_BUCKETS + 1];
	double bt[FX_MAX_BUCKETS][FX_MAXDEG];   /* bucket's longest on deg[j] */
	double bres[FX_MAX_BUCKETS][FX_MAXDEG]; /* its resident tokens per rank */
	/* an assignment being built */
	int32_t ng;
	int32_t gfirst[FX_MAXDEG], gend[FX_MAXDEG]; /* groups of size j (fx_make_groups) */
	int32_t *gdeg, *gj;
	double *gms, *gmem;
	int32_t *gcnt;
	int32_t *grp;
	/* LP values x[b][j] */
	double x[FX_MAX_BUCKETS][FX_MAXDEG];
	/* the micro-batch's LP (built on first use) */
	lp_t *lp;
	int mcol;
	int col[FX_MAX_BUCKETS][FX_MAXDEG];
	int memrow[FX_MAXDEG], timerow[FX_MAXDEG];
	int32_t lpcnt[FX_MAXDEG]; /* the configuration the LP holds now */
	/* fx_bound's per-mask part: [1 << ndeg][2 + 2 * FX_MAXDEG] (state, crit,
	 * work, tokens), when ndeg is small enough to tabulate */
	double *bcache;
} fx_ws_t;

/* A kept candidate: its configuration and assignment. */
typedef struct fx_cand {
	double ms;
	int64_t cfg;            /* -1 - j for the homogeneous warm start of size j */
	int32_t cnt[FX_MAXDEG]; /* its configuration (groups per size) */
	int32_t ng;
	int32_t *gdeg, *grp;
	double *gms;
} fx_cand_t;

static double fx_t(const fx_ws_t *w, int64_t k, int32_t j)
{
	return w->ctx->t[(size_t)(w->lo + k) * w->ctx->ndeg + j];
}

static double fx_res(const fx_ws_t *w, int64_t k, int32_t j)
{
	return w->ctx->res[(size_t)(w->lo + k) * w->ctx->ndeg + j];
}

/* Creates the groups of a configuration (largest first). */
static void fx_make_groups(fx_ws_t *w, const int32_t *cnt)
{
	fx_ctx_t *ctx = w->ctx;
	w->ng = 0;
	for (int32_t j = ctx->ndeg - 1; j >= 0; j--) {
		w->gfirst[j] = w->ng;
		for (int32_t q = 0; q < cnt[j]; q++) {
			w->gdeg[w->ng] = ctx->deg[j];
			w->gj[w->ng] = j;
			w->gms[w->ng] = 0;
			w->gmem[w->ng] = 0;
			w->gcnt[w->ng] = 0;
			w->ng++;
		}
		w->gend[j] = w->ng;
	}
}

static void fx_place(fx_ws_t *w, int64_t k, int32_t g)
{
	int32_t j = w->gj[g];
	if (w->gcnt[g]++ == 0)
		w->gms[g] += w->beta;
	w->gms[g] += fx_t(w, k, j);
	w->gmem[g] += fx_res(w, k, j);
	w->grp[k] = g;
}

static void fx_unplace(fx_ws_t *w, int64_t k)
{
	int32_t g = w->grp[k], j = w->gj[g];
	w->gms[g] -= fx_t(w, k, j);
	w->gmem[g] -= fx_res(w, k, j);
	if (--w->gcnt[g] == 0) {
		w->gms[g] = 0;
		w->gmem[g] = 0;
	}
	w->grp[k] = -1;
}

/* Whether sequence k fits in group g's remaining memory. */
static int fx_fits(const fx_ws_t *w, int64_t k, int32_t g)
{
	double r = fx_res(w, k, w->gj[g]);
	return isfinite(fx_t(w, k, w->gj[g])) && w->gmem[g] + r <= w->cap + 1e-9;
}

/* Time group g would have with sequence k added. */
static double fx_with(const fx_ws_t *w, int64_t k, int32_t g)
{
	return w->gms[g] + fx_t(w, k, w->gj[g]) + (w->gcnt[g] == 0 ? w->beta : 0);
}

static double fx_max_ms(const fx_ws_t *w)
{
	double mx = 0;
	for (int32_t g = 0; g < w->ng; g++)
		if (w->gms[g] > mx)
			mx = w->gms[g];
	return mx;
}

/* Rounds the LP's per-size bucket counts and deals the sequences: within a
 * size, longest first to the least loaded group with room (LPT under the
 * memory rule); what finds no room goes to the group of any size where it
 * ends soonest. Returns the slowest group's time, or INFINITY. */
static double fx_round(fx_ws_t *w, const int32_t *cnt)
{
	fx_ctx_t *ctx = w->ctx;
	int32_t target[FX_MAXDEG];
	int64_t overflow = 0;

	fx_make_groups(w, cnt);
	for (int64_t k = 0; k < w->m; k++)
		w->grp[k] = -1;
	/* size of each sequence: per bucket, integer counts by largest
	 * remainder, the longest sequences to the largest groups */
	int32_t *dest = w->gcnt + w->ng; /* scratch after the group counters */
	for (int32_t b = 0; b < w->nb; b++) {
		int64_t c = w->bstart[b + 1] - w->bstart[b], got = 0;
		double frac[FX_MAXDEG];
		for (int32_t j = 0; j < ctx->ndeg; j++) {
			double v = w->x[b][j] > 0 ? w->x[b][j] : 0;
			target[j] = (int32_t)floor(v + 1e-7);
			frac[j] = v - target[j];
			got += target[j];
		}
		while (got > c) { /* numerical excess: drop from the smallest size */
			for (int32_t j = 0; j < ctx->ndeg && got > c; j++)
				if (target[j] > 0) {
					target[j]--;
					got--;
				}
		}
		while (got < c) {
			int32_t bj = -1;
			for (int32_t j = ctx->ndeg - 1; j >= 0; j--)
				if (cnt[j] > 0 && isfinite(w->bt[b][j]) &&
				    (bj < 0 || frac[j] > frac[bj]))
					bj = j;
			if (bj < 0)
				return INFINITY;
			target[bj]++;
			frac[bj] -= 1.0;
			got++;
		}
		int64_t k = w->bstart[b];
		for (int32_t j = ctx->ndeg - 1; j >= 0; j--)
			for (int32_t q = 0; q < target[j]; q++)
				dest[k++] = j;
	}
	/* LPT within each size; sequences come longest first. */
	for (int64_t k = 0; k < w->m; k++) {
		int32_t j = dest[k], best = -1;
		double r = fx_res(w, k, j), room = w->cap + 1e-9 - r;
		for (int32_t g = w->gfirst[j]; g < w->gend[j]; g++) {
			if (w->gmem[g] > room)
				continue;
			if (best < 0 || w->gms[g] < w->gms[best])
				best = g;
		}
		if (best >= 0)
			fx_place(w, k, best);
		else
			overflow++;
	}
	if (overflow > 0) {
		for (int64_t k = 0; k < w->m; k++) {
			if (w->grp[k] >= 0)
				continue;
			int32_t best = -1;
			double bms = INFINITY;
			for (int32_t g = 0; g < w->ng; g++) {
				if (!fx_fits(w, k, g))
					continue;
				double v = fx_with(w, k, g);
				if (v < bms) {
					bms = v;
					best = g;
				}
			}
			if (best < 0)
				return INFINITY;
			fx_place(w, k, best);
		}
	}
	return fx_max_ms(w);
}

/* Polishes an assignment: while some single move or pairwise swap out of
 * the slowest group makes both groups involved end before it, apply the best
 * one. Bounded by iters steps. Returns the slowest group's time. */
static double fx_polish(fx_ws_t *w, int64_t iters)
{
	const double eps = 1e-9;
	for (int64_t it = 0; it < iters; it++) {
		int32_t gs = 0;
		for (int32_t g = 1; g < w->ng; g++)
			if (w->gms[g] > w->gms[gs])
				gs = g;
		double top = w->gms[gs];
		double best = top - eps;
		int64_t bk = -1, bk2 = -1;
		int32_t bh = -1;
		int32_t js = w->gj[gs];
		for (int64_t k = 0; k < w->m; k++) {
			if (w->grp[k] != gs)
				continue;
			double left = w->gcnt[gs] == 1 ? 0 : top - fx_t(w, k, js);
			for (int32_t h = 0; h < w->ng; h++) {
				if (h == gs || !fx_fits(w, k, h))
					continue;
				double v = fx_with(w, k, h);
				v = v > left ? v : left;
				if (v < best) {
					best = v;
					bk = k;
					bh = h;
					bk2 = -1;
				}
			}
		}
		if (bk < 0) {
			/* swaps: k out of gs, k2 from h into gs */
			for (int64_t k = 0; k < w->m; k++) {
				if (w->grp[k] != gs)
					continue;
				double tk = fx_t(w, k, js), rk = fx_res(w, k, js);
				for (int64_t k2 = 0; k2 < w->m; k2++) {
					int32_t h = w->grp[k2];
					if (h == gs || h < 0)
						continue;
					int32_t jh = w->gj[h];
					double t2s = fx_t(w, k2, js);
					if (!(t2s < tk))
						continue; /* gs must get faster */
					double tkh = fx_t(w, k, jh);
					if (!isfinite(tkh))
						continue;
					double ngs = top - tk + t2s;
					double nh = w->gms[h] - fx_t(w, k2, jh) + tkh;
					double v = ngs > nh ? ngs : nh;
					if (!(v < best))
						continue;
					if (w->gmem[gs] - rk + fx_res(w, k2, js) > w->cap + 1e-9)
						continue;
					if (w->gmem[h] - fx_res(w, k2, jh) + fx_res(w, k, jh) >
					    w->cap + 1e-9)
						continue;
					best = v;
					bk = k;
					bk2 = k2;
					bh = h;
				}
			}
		}
		if (bk < 0)
			break;
		if (bk2 >= 0) {
			fx_unplace(w, bk);
			fx_unplace(w, bk2);
			fx_place(w, bk, bh);
			fx_place(w, bk2, gs);
		} else {
			fx_unplace(w, bk);
			fx_place(w, bk, bh);
		}
	}
	return fx_max_ms(w);
}

/* The LP of one configuration (FlexSP's MILP aggregated over identical
 * groups, relaxed): x[b][j] sequences of bucket b on size j, for each size
 * memory sum_b res x <= n_j cap and time sum_b t x + beta n_j <= n_j M;
 * minimise M. One LP per micro-batch holds every size; a configuration
 * fixes the x of absent sizes to 0 and rewrites the size rows, and GLPK
 * starts from the basis of the configuration before. Fills w->x;
 * SL_EINFEASIBLE when no split holds the tokens. */
static sl_err fx_lp_build(fx_ws_t *w)
{
	fx_ctx_t *ctx = w->ctx;
	int cols[FX_MAX_BUCKETS + 1];
	double vals[FX_MAX_BUCKETS + 1];
	sl_err rc;

	SL_CHECK(lp_new("flexsp-config", 1, &w->lp));
	SL_CHECK(lp_add_col(w->lp, "M", LP_CONTINUOUS, 0, INFINITY, 1, &w->mcol));
	for (int32_t b = 0; b < w->nb; b++)
		for (int32_t j = 0; j < ctx->ndeg; j++) {
			w->col[b][j] = -1;
			if (isfinite(w->bt[b][j]))
				SL_CHECK(
				    lp_add_col(w->lp, NULL, LP_CONTINUOUS, 0, 0, 0, &w->col[b][j]));
		}
	for (int32_t b = 0; b < w->nb; b++) {
		int nz = 0;
		for (int32_t j = 0; j < ctx->ndeg; j++)
			if (w->col[b][j] >= 0) {
				cols[nz] = w->col[b][j];
				vals[nz++] = 1.0;
			}
		double c = (double)(w->bstart[b + 1] - w->bstart[b]);
		SL_CHECK(lp_add_row(w->lp, NULL, nz, cols, vals, c, c, NULL));
	}
	for (int32_t j = 0; j < ctx->ndeg; j++) {
		int nz = 0;
		for (int32_t b = 0; b < w->nb; b++)
			if (w->col[b][j] >= 0) {
				cols[nz] = w->col[b][j];
				vals[nz++] = w->bres[b][j];
			}
		rc = lp_add_row(w->lp, NULL, nz, cols, vals, -INFINITY, 0, &w->memrow[j]);
		if (rc != SL_OK)
			return rc;
		nz = 0;
		for (int32_t b = 0; b < w->nb; b++)
			if (w->col[b][j] >= 0) {
				cols[nz] = w->col[b][j];
				vals[nz++] = w->bt[b][j];
			}
		SL_CHECK(lp_add_row(w->lp, NULL, nz, cols, vals, -INFINITY, 0, &w->timerow[j]));
		w->lpcnt[j] = 0;
	}
	return SL_OK;
}

static sl_err fx_config_lp(fx_ws_t *w, const int32_t *cnt)
{
	fx_ctx_t *ctx = w->ctx;
	int cols[FX_MAX_BUCKETS + 1];
	double vals[FX_MAX_BUCKETS + 1];
	sl_err rc;

	if (w->lp == NULL)
		SL_CHECK(fx_lp_build(w));
	for (int32_t j = 0; j < ctx->ndeg; j++) {
		if (cnt[j] == w->lpcnt[j])
			continue;
		if ((cnt[j] > 0) != (w->lpcnt[j] > 0))
			for (int32_t b = 0; b < w->nb; b++)
				if (w->col[b][j] >= 0)
					SL_CHECK(lp_set_col_bounds(w->lp, w->col[b][j], 0,
					                           cnt[j] > 0 ? INFINITY : 0));
		SL_CHECK(lp_set_row_bounds(w->lp, w->memrow[j], -INFINITY, cnt[j] * w->cap));
		int nz = 0;
		for (int32_t b = 0; b < w->nb; b++)
			if (w->col[b][j] >= 0) {
				cols[nz] = w->col[b][j];
				vals[nz++] = w->bt[b][j];
			}
		cols[nz] = w->mcol;
		vals[nz++] = -(double)cnt[j];
		SL_CHECK(lp_set_row(w->lp, w->timerow[j], nz, cols, vals));
		SL_CHECK(lp_set_row_bounds(w->lp, w->timerow[j], -INFINITY, -w->beta * cnt[j]));
		w->lpcnt[j] = cnt[j];
	}
	/* A tiny LP: the iteration limit only guards against cycling. */
	lp_opts_t o = {.it_lim = 10000};
	lp_result_t res;
	rc = lp_solve(w->lp, &o, &res);
	ctx->lp_used++;
	ctx->lp_iters += res.iterations;
	if (rc != SL_OK)
		return rc;
	for (int32_t b = 0; b < w->nb; b++)
		for (int32_t j = 0; j < ctx->ndeg; j++)
			w->x[b][j] = w->col[b][j] >= 0 ? lp_value(w->lp, w->col[b][j]) : 0.0;
	return SL_OK;
}

/* LP-free lower bound on the slowest group of configuration cnt for this
 * micro-batch, or INFINITY when it cannot hold the tokens: every sequence
 * must run on a size that holds it, so for each size q the sequences that
 * fit on no smaller configured size need, on the ranks of sizes >= q, at
 * least their least rank-time (and least resident tokens); and the longest
 * needs its least time on one group. */
/* The per-sequence part of fx_bound, which depends only on which sizes are
 * present (mask): rank-time and tokens by the smallest present size that
 * holds each sequence, and the critical path. Returns 0 when some sequence
 * fits no present size. */
static int fx_bound_mask(const fx_ws_t *w, uint32_t mask, double *work, double *tok,
                         double *crit_out)
{
	fx_ctx_t *ctx = w->ctx;
	int32_t up[FX_MAXDEG]; /* smallest present size >= j, or -1 */
	int32_t nxt = -1;
	double crit = 0;
	for (int32_t j = ctx->ndeg - 1; j >= 0; j--) {
		if (mask & (1u << j))
			nxt = j;
		up[j] = nxt;
		work[j] = tok[j] = 0;
	}
	for (int64_t k = 0; k < w->m; k++) {
		int32_t q = up[ctx->jmin[w->lo + k]];
		if (q < 0)
			return 0;
		const double *t = ctx->t + (size_t)(w->lo + k) * ctx->ndeg;
		const double *r = ctx->res + (size_t)(w->lo + k) * ctx->ndeg;
		double bw = INFINITY, bt = INFINITY, br = INFINITY;
		for (int32_t j = q; j < ctx->ndeg; j++) {
			if (!(mask & (1u << j)) || !isfinite(t[j]))
				continue;
			double d = ctx->deg[j];
			bw = d * t[j] < bw ? d * t[j] : bw;
			bt = t[j] < bt ? t[j] : bt;
			br = d * r[j] < br ? d * r[j] : br;
		}
		if (!isfinite(bw))
			return 0;
		work[q] += bw;
		tok[q] += br;
		crit = bt > crit ? bt : crit;
	}
	*crit_out = crit;
	return 1;
}

/* LP-free lower bound on the slowest group of configuration cnt for this
 * micro-batch, or INFINITY when it cannot hold the tokens: every sequence
 * must run on a size that holds it, so for each size q the sequences that
 * fit on no smaller configured size need, on the ranks of sizes >= q, at
 * least their least rank-time (and least resident tokens); and the longest
 * needs its least time on one group. The per-mask part is cached. */
static double fx_bound(fx_ws_t *w, const int32_t *cnt)
{
	fx_ctx_t *ctx = w->ctx;
	double work[FX_MAXDEG], tok[FX_MAXDEG], crit = 0;
	uint32_t mask = 0;
	for (int32_t j = 0; j < ctx->ndeg; j++)
		if (cnt[j] > 0)
			mask |= 1u << j;
	if (w->bcache != NULL) {
		double *e = w->bcache + (size_t)mask * (2 * FX_MAXDEG + 2);
		if (e[0] == 0) {
			e[0] = fx_bound_mask(w, mask, e + 2, e + 2 + FX_MAXDEG, &e[1]) ? 1 : -1;
		}
		if (e[0] < 0)
			return INFINITY;
		crit = e[1];
		memcpy(work, e + 2, sizeof(work));
		memcpy(tok, e + 2 + FX_MAXDEG, sizeof(tok));
	} else if (!fx_bound_mask(w, mask, work, tok, &crit)) {
		return INFINITY;
	}
	double lb = crit, sw = 0, st = 0, ranks = 0;
	for (int32_t j = ctx->ndeg - 1; j >= 0; j--) {
		sw += work[j];
		st += tok[j];
		ranks += (double)cnt[j] * ctx->deg[j];
		if (cnt[j] == 0)
			continue;
		if (st > ranks * w->cap + 1e-6)
			return INFINITY;
		if (sw / ranks > lb)
			lb = sw / ranks;
	}
	return w->beta + lb;
}

static void fx_cand_free(fx_cand_t *c)
{
	free(c->gdeg);
	free(c->grp);
	free(c->gms);
	memset(c, 0, sizeof(*c));
	c->ms = INFINITY;
}

/* Keeps the current assignment among the best FX_TOPK candidates. */
static sl_err fx_keep(fx_cand_t *top, const fx_ws_t *w, double ms, int64_t cfg, const int32_t *cnt)
{
	int32_t worst = 0;
	for (int32_t i = 1; i < FX_TOPK; i++)
		if (top[i].ms > top[worst].ms)
			worst = i;
	if (!(ms < top[worst].ms))
		return SL_OK;
	fx_cand_t *c = &top[worst];
	fx_cand_free(c);
	c->gdeg = malloc(sizeof(*c->gdeg) * (size_t)w->ng);
	c->gms = malloc(sizeof(*c->gms) * (size_t)w->ng);
	c->grp = malloc(sizeof(*c->grp) * (size_t)w->m);
	if (c->gdeg == NULL || c->gms == NULL || c->grp == NULL) {
		fx_cand_free(c);
		return sl_seterr(SL_ENOMEM, "flexsp: out of memory");
	}
	memcpy(c->gdeg, w->gdeg, sizeof(*c->gdeg) * (size_t)w->ng);
	memcpy(c->gms, w->gms, sizeof(*c->gms) * (size_t)w->ng);
	memcpy(c->grp, w->grp, sizeof(*c->grp) * (size_t)w->m);
	c->ng = w->ng;
	c->ms = ms;
	c->cfg = cfg;
	memcpy(c->cnt, cnt, sizeof(c->cnt));
	return SL_OK;
}

/* Reloads a candidate into the work space (group sizes, loads, members). */
static void fx_load(fx_ws_t *w, const fx_cand_t *c)
{
	fx_ctx_t *ctx = w->ctx;
	w->ng = c->ng;
	for (int32_t g = 0; g < c->ng; g++) {
		w->gdeg[g] = c->gdeg[g];
		int32_t j = 0;
		while (ctx->deg[j] != c->gdeg[g])
			j++;
		w->gj[g] = j;
		w->gms[g] = 0;
		w->gmem[g] = 0;
		w->gcnt[g] = 0;
	}
	for (int64_t k = 0; k < w->m; k++)
		fx_place(w, k, c->grp[k]);
}

typedef struct fx_order {
	double lb;
	int64_t cfg;
} fx_order_t;

static int fx_order_cmp(const void *a, const void *b)
{
	const fx_order_t *x = a, *y = b;
	if (x->lb != y->lb)
		return x->lb < y->lb ? -1 : 1;
	return (x->cfg > y->cfg) - (x->cfg < y->cfg);
}

/* Configurations already tried for one micro-batch. */
typedef struct fx_visited {
	int64_t n, cap;
	int32_t *cnt; /* [n * FX_MAXDEG] */
} fx_visited_t;

static int fx_seen(fx_visited_t *v, const int32_t *cnt, sl_err *rc)
{
	*rc = SL_OK;
	for (int64_t i = 0; i < v->n; i++)
		if (memcmp(v->cnt + (size_t)i * FX_MAXDEG, cnt, sizeof(int32_t) * FX_MAXDEG) == 0)
			return 1;
	if (v->n == v->cap) {
		int64_t na = v->cap ? 2 * v->cap : 64;
		int32_t *c = realloc(v->cnt, sizeof(*c) * (size_t)na * FX_MAXDEG);
		if (c == NULL) {
			*rc = sl_seterr(SL_ENOMEM, "flexsp: out of memory");
			return 1;
		}
		v->cnt = c;
		v->cap = na;
	}
	memcpy(v->cnt + (size_t)v->n * FX_MAXDEG, cnt, sizeof(int32_t) * FX_MAXDEG);
	v->n++;
	return 0;
}

/* The index of the best kept candidate (ties: lower id), or -1. */
static int32_t fx_best(const fx_cand_t *top)
{
	int32_t win = -1;
	for (int32_t q = 0; q < FX_TOPK; q++)
		if (isfinite(top[q].ms) &&
		    (win < 0 || top[q].ms < top[win].ms ||
		     (top[q].ms == top[win].ms && top[q].cfg < top[win].cfg)))
			win = q;
	return win;
}

enum { FX_TRY_SKIPPED, FX_TRY_SOLVED, FX_TRY_PRUNED, FX_TRY_STOP };

/* Tries configuration cnt (bound lb) unless seen before: prunes it when lb
 * cannot beat the best kept, stops when a limit is reached, else solves its
 * LP, rounds it and keeps the result. *st says which happened. */
static sl_err fx_try(fx_ws_t *w, fx_cand_t *top, const int32_t *cnt, double lb, int64_t id,
                     fx_visited_t *vis, fx_mb_t *mb, int *st)
{
	fx_ctx_t *ctx = w->ctx;
	int32_t full[FX_MAXDEG] = {0};
	sl_err rc;

	memcpy(full, cnt, sizeof(int32_t) * (size_t)ctx->ndeg);
	*st = FX_TRY_SKIPPED;
	int32_t bq = fx_best(top);
	if (bq >= 0 && lb >= top[bq].ms * (1 - 1e-9)) {
		*st = FX_TRY_PRUNED;
		return SL_OK;
	}
	if (fx_seen(vis, full, &rc))
		return rc;
	if (ctx->lp_used >= ctx->lp_budget) {
		ctx->budget_cut = 1;
		*st = FX_TRY_STOP;
		return SL_OK;
	}
	if (planner_flexsp_stopped(ctx)) {
		*st = FX_TRY_STOP;
		return SL_OK;
	}
	mb->configs_tried++;
	*st = FX_TRY_SOLVED;
	rc = fx_config_lp(w, full);
	if (rc == SL_EINFEASIBLE || rc == SL_ELP || rc == SL_ETIMEOUT) {
		sl_clearerr();
		return SL_OK;
	}
	if (rc != SL_OK)
		return rc;
	double ms = fx_round(w, full);
	if (isfinite(ms))
		return fx_keep(top, w, ms, id >= 0 ? id : ctx->ncfg + vis->n, full);
	return SL_OK;
}

void planner_flexsp_mb_fini(fx_mb_t *mb)
{
	free(mb->gdeg);
	free(mb->gms);
	free(mb->grp);
	memset(mb, 0, sizeof(*mb));
}

sl_err planner_flexsp_solve_mb(fx_ctx_t *ctx, int64_t lo, int64_t hi, fx_mb_t *mb)
{
	fx_ws_t *w = calloc(1, sizeof(*w));
	fx_cand_t top[FX_TOPK];
	fx_order_t *ord = NULL;
	fx_visited_t vis = {0};
	sl_err rc = SL_OK;
	int64_t m = hi - lo;
	int32_t N = ctx->N;

	memset(mb, 0, sizeof(*mb));
	for (int32_t i = 0; i < FX_TOPK; i++) {
		memset(&top[i], 0, sizeof(top[i]));
		top[i].ms = INFINITY;
	}
	if (w == NULL)
		return sl_seterr(SL_ENOMEM, "flexsp: out of memory");
	w->ctx = ctx;
	w->lo = lo;
	w->m = m;
	w->beta = ctx->cost->prof.beta;
	w->cap = (double)ctx->cost->cap;
	w->gdeg = malloc(sizeof(int32_t) * (size_t)N);
	w->gj = malloc(sizeof(int32_t) * (size_t)N);
	w->gms = malloc(sizeof(double) * (size_t)N);
	w->gmem = malloc(sizeof(double) * (size_t)N);
	w->gcnt = malloc(sizeof(int32_t) * ((size_t)N + (size_t)m));
	w->grp = malloc(sizeof(int32_t) * (size_t)m);
	ord = malloc(sizeof(*ord) * (size_t)(ctx->ncfg > 0 ? ctx->ncfg : 1));
	if (ctx->ndeg <= FX_BOUND_CACHE_DEG)
		w->bcache = calloc((size_t)1 << ctx->ndeg, sizeof(double) * (2 * FX_MAXDEG + 2));
	if (w->gdeg == NULL || w->gj == NULL || w->gms == NULL || w->gmem == NULL ||
	    w->gcnt == NULL || w->grp == NULL || ord == NULL) {
		rc = sl_seterr(SL_ENOMEM, "flexsp: out of memory");
		goto out;
	}

	/* Buckets (FlexSP: grow until padding is within half the free room). */
	int64_t starts[FX_MAX_BUCKETS];
	if (planner_flexsp_bucketize(ctx->len + lo, m, (double)N * w->cap, FX_MAX_BUCKETS, starts,
	                             &w->nb) < 0) {
		rc = sl_seterr(SL_ENOMEM, "flexsp: out of memory (buckets)");
		goto out;
	}
	for (int32_t b = 0; b < w->nb; b++)
		w->bstart[b] = starts[b];
	w->bstart[w->nb] = m;
	for (int32_t b = 0; b < w->nb; b++)
		for (int32_t j = 0; j < ctx->ndeg; j++) {
			/* the bucket's longest sequence stands for all of it */
			w->bt[b][j] = fx_t(w, w->bstart[b], j);
			w->bres[b][j] = fx_res(w, w->bstart[b], j);
		}

	/* Warm start: the homogeneous plans (every group of one size j,
	 * floor(N / d) of them), dealt best-fit/LPT like the static baseline. */
	for (int32_t j = ctx->jmin[lo]; j < ctx->ndeg; j++) {
		int32_t cnt[FX_MAXDEG] = {0};
		cnt[j] = N / ctx->deg[j];
		if (fx_seen(&vis, cnt, &rc))
			goto out;
		for (int32_t b = 0; b < w->nb; b++)
			for (int32_t q = 0; q < ctx->ndeg; q++)
				w->x[b][q] =
				    q == j ? (double)(w->bstart[b + 1] - w->bstart[b]) : 0.0;
		double ms = fx_round(w, cnt);
		if (isfinite(ms))
			SL_CHECK_GOTO(fx_keep(top, w, ms, -1 - j, cnt), rc, out);
	}

	/* Configurations in order of their bound, at most mb_lp_cap LPs... */
	int64_t nord = 0;
	for (int64_t c = 0; c < ctx->ncfg; c++) {
		double lb = fx_bound(w, ctx->cfg + (size_t)c * ctx->ndeg);
		if (isfinite(lb)) {
			ord[nord].lb = lb;
			ord[nord].cfg = c;
			nord++;
		}
	}
	qsort(ord, (size_t)nord, sizeof(*ord), fx_order_cmp);
	int64_t walk_lps = 0;
	for (int64_t i = 0; i < nord && walk_lps < ctx->mb_lp_cap; i++) {
		const int32_t *cnt = ctx->cfg + (size_t)ord[i].cfg * ctx->ndeg;
		int st = 0;
		SL_CHECK_GOTO(fx_try(w, top, cnt, ord[i].lb, ord[i].cfg, &vis, mb, &st), rc, out);
		if (st == FX_TRY_PRUNED || st == FX_TRY_STOP)
			break; /* bounds only grow from here, or the budget is gone */
		walk_lps += st == FX_TRY_SOLVED;
	}
	/* ... then hill-climbing from the best one by splitting a group into
	 * two of half the size or merging two into one of twice the size. */
	for (;;) {
		int32_t bq = fx_best(top);
		if (bq < 0)
			break;
		int32_t cur[FX_MAXDEG], nbr[FX_MAXDEG];
		memcpy(cur, top[bq].cnt, sizeof(cur));
		double before = top[bq].ms;
		int stop = 0;
		for (int32_t j = 0; j < ctx->ndeg && !stop; j++)
			for (int dir = 0; dir < 2 && !stop; dir++) {
				memcpy(nbr, cur, sizeof(nbr));
				if (dir == 0) { /* split one group of deg[j] */
					if (j == 0 || nbr[j] == 0)
						continue;
					nbr[j]--;
					nbr[j - 1] += 2;
				} else { /* merge two groups of deg[j] */
					if (j + 1 >= ctx->ndeg || nbr[j] < 2)
						continue;
					nbr[j] -= 2;
					nbr[j + 1]++;
				}
				double lb = fx_bound(w, nbr);
				if (!isfinite(lb))
					continue;
				int st = 0;
				SL_CHECK_GOTO(fx_try(w, top, nbr, lb, -1, &vis, mb, &st), rc, out);
				stop = st == FX_TRY_STOP;
			}
		bq = fx_best(top);
		if (stop || !(top[bq].ms < before))
			break;
	}

	/* Polish the best few in place and keep the best. */
	int32_t win = -1;
	for (int32_t q = 0; q < FX_TOPK; q++) {
		if (!isfinite(top[q].ms))
			continue;
		fx_load(w, &top[q]);
		top[q].ms = fx_polish(w, 4 * m + 16);
		memcpy(top[q].gms, w->gms, sizeof(*w->gms) * (size_t)w->ng);
		memcpy(top[q].grp, w->grp, sizeof(*w->grp) * (size_t)m);
	}
	win = fx_best(top);
	if (win < 0) {
		rc = sl_seterr(SL_EINFEASIBLE,
		               "flexsp: micro-batch of %lld sequences (longest %lld) fits no group "
		               "configuration of %d ranks",
		               (long long)m, (long long)ctx->len[lo], N);
		goto out;
	}
	/* Hand over the winner without its empty groups. */
	{
		fx_cand_t *c = &top[win];
		int32_t *map = w->gcnt; /* scratch */
		int32_t ng = 0;
		for (int32_t g = 0; g < c->ng; g++)
			map[g] = -1;
		for (int64_t k = 0; k < m; k++)
			map[c->grp[k]] = 0;
		for (int32_t g = 0; g < c->ng; g++)
			if (map[g] == 0)
				map[g] = ng++;
		mb->gdeg = malloc(sizeof(*mb->gdeg) * (size_t)ng);
		mb->gms = malloc(sizeof(*mb->gms) * (size_t)ng);
		mb->grp = malloc(sizeof(*mb->grp) * (size_t)m);
		if (mb->gdeg == NULL || mb->gms == NULL || mb->grp == NULL) {
			rc = sl_seterr(SL_ENOMEM, "flexsp: out of memory");
			goto out;
		}
		for (int32_t g = 0; g < c->ng; g++)
			if (map[g] >= 0) {
				mb->gdeg[map[g]] = c->gdeg[g];
				mb->gms[map[g]] = c->gms[g];
			}
		for (int64_t k = 0; k < m; k++)
			mb->grp[k] = map[c->grp[k]];
		mb->ngroups = ng;
		mb->ms = c->ms;
		if (SL_LOG_DEBUG <= sl_log_level_get()) {
			char desc[256] = "";
			size_t at = 0;
			for (int32_t j = ctx->ndeg - 1; j >= 0; j--) {
				int32_t q = 0;
				for (int32_t g = 0; g < ng; g++)
					q += mb->gdeg[g] == ctx->deg[j];
				if (q > 0 && at < sizeof(desc))
					at += (size_t)snprintf(desc + at, sizeof(desc) - at,
					                       " %dx%d", q, ctx->deg[j]);
			}
			int64_t at_rank = -1;
			for (int64_t i = 0; i < nord; i++)
				if (ord[i].cfg == c->cfg)
					at_rank = i;
			SL_DEBUG(SL_SUB_PLAN,
			         "flexsp: micro-batch [%lld, %lld) longest %lld: %d buckets, %lld "
			         "configurations (winner at %lld of %lld), %.1f ms on%s",
			         (long long)lo, (long long)hi, (long long)ctx->len[lo], w->nb,
			         (long long)mb->configs_tried, (long long)at_rank, (long long)nord,
			         mb->ms, desc);
		}
		mb->lo = lo;
		mb->hi = hi;
	}
out:
	if (rc != SL_OK) {
		int64_t tried = mb->configs_tried;
		planner_flexsp_mb_fini(mb);
		mb->configs_tried = tried;
	}
	for (int32_t q = 0; q < FX_TOPK; q++)
		fx_cand_free(&top[q]);
	free(ord);
	free(vis.cnt);
	if (w != NULL) {
		lp_free(&w->lp);
		free(w->bcache);
		free(w->gdeg);
		free(w->gj);
		free(w->gms);
		free(w->gmem);
		free(w->gcnt);
		free(w->grp);
		free(w);
	}
	return rc;
}
