/* sluice planner: the LP of the `sluice` policy. It decides which group size
 * each long sequence runs on (FlexSP's sequence-to-group assignment, Wang et
 * al., ASPLOS 2025, sec. 4, relaxed to an LP over Pareto-optimal degrees)
 * and proves a lower bound on the step:
 *
 *   minimise T
 *   s.t.  sum_d x[j][d] = 1                          for each long sequence j
 *         T >= sum_d (beta + T[j][d]) x[j][d]        its group must finish
 *         N T >= W_short + sum_{j,d} w[j][d] x[j][d] rank-ms of the whole batch
 *
 * T[j][d] is the sequence's time on d ranks with the least offload that
 * fits, w[j][d] = d T[j][d] + beta (1 - f) p / cap its rank-milliseconds
 * counting its share of fixed costs (cost-model.md, "The ideal"). Any valid
 * plan gives a 0/1 point of this LP, so its optimum is a lower bound; it is
 * never below the spec's ideal because it couples each sequence's time and
 * work through one degree.
 *
 * The same LP is solved a second time with the rank-ms our plans actually
 * pay (wd): a ring that leaves its node cannot profitably carry short
 * sequences in its spare memory, so every one of its d ranks pays the full
 * fixed cost; that LP's solution picks the degrees. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lp.h"
#include "sluice_internal.h"

/* Rank-ms lower bound of running s on d ranks with offload at least f (cost
 * model: the offload may grow up to 1, which only helps when offloading is
 * cheaper than the fixed-cost share it frees). */
static double work_lb(const sl_cost_t *c, int64_t s, int32_t d, double f, int one, double *t_out)
{
	double p = (double)sl_cost_padded(s, d);
	double t = sl_cost_seq_ms(c, s, d, f, one);
	double w = d * t + c->prof.beta * (1.0 - f) * p / (double)c->cap;
	double t1 = sl_cost_seq_ms(c, s, d, 1.0, one);
	if (d * t1 < w)
		w = d * t1;
	*t_out = t;
	return w;
}

typedef struct {
	planner_sluice_cand_t c;
	int feasible;
} rawcand_t;

static int cmp_raw(const void *a, const void *b)
{
	const rawcand_t *x = a, *y = b;
	if (x->c.t != y->c.t)
		return x->c.t < y->c.t ? -1 : 1;
	if (x->c.w != y->c.w)
		return x->c.w < y->c.w ? -1 : 1;
	return (x->c.d > y->c.d) - (x->c.d < y->c.d);
}

/* Per-degree facts the decision work needs: whether short sequences can
 * ride in a ring of d ranks (their padding and communication cost less than
 * the fixed-cost share they save) and what riding costs per token. */
typedef struct {
	char *ride;
	double *ovh; /* extra rank-ms per riding token */
} rideinfo_t;

static sl_err rideinfo_init(const planner_sluice_ctx_t *ctx, rideinfo_t *ri)
{
	const sl_cost_t *c = ctx->cost;
	int32_t N = ctx->N;
	ri->ride = calloc((size_t)N + 1, 1);
	ri->ovh = calloc((size_t)N + 1, sizeof(double));
	if (ri->ride == NULL || ri->ovh == NULL)
		return sl_seterr(SL_ENOMEM, "sluice LP: out of memory");
	/* a typical short sequence: a sixth of a rank's capacity */
	int64_t sr = (int64_t)(ctx->cap / 6) > 0 ? (int64_t)(ctx->cap / 6) : 1;
	double t1 = sl_cost_seq_ms(c, sr, 1, 0.0, 1);
	for (int32_t d = 2; d <= N; d++) {
		double td = sl_cost_seq_ms(c, sr, d, 0.0, d <= ctx->G);
		ri->ovh[d] = (d * td - t1) / (double)sr;
		ri->ride[d] = d <= ctx->G && ri->ovh[d] < ctx->beta / ctx->cap;
	}
	return SL_OK;
}

static void rideinfo_fini(rideinfo_t *ri)
{
	free(ri->ride);
	free(ri->ovh);
}

/* Candidates of sequence s, written to out (room for 2 N) sorted by time
 * within each kind; returns how many.
 *  - bound columns: the Pareto frontier in (time, bound work) over every
 *    degree, runs of nearly equal work (within SLUICE_LP_MERGE) merged into
 *    one relaxed column;
 *  - decision columns: the frontier in (time, decision work) over the
 *    degrees our plans can use (offload <= max_offload), thinned the same
 *    way keeping the real degree of least decision work. */
#define SLUICE_LP_MERGE 0.003

static int32_t candidates(planner_sluice_ctx_t *ctx, const rideinfo_t *ri, int64_t s,
                          rawcand_t *raw, planner_sluice_cand_t *out)
{
	const sl_cost_t *c = ctx->cost;
	int32_t N = ctx->N;
	for (int32_t d = 1; d <= N; d++) {
		rawcand_t *r = &raw[d - 1];
		memset(&r->c, 0, sizeof(r->c));
		r->c.d = d;
		r->c.f = sl_cost_min_offload(c, s, d);
		r->c.w = work_lb(c, s, d, r->c.f, d <= ctx->G, &r->c.t);
		/* usable when the offload, on sl_cost_offload_for's grid, stays
		 * within max_offload (checked exactly only near the limit) */
		r->feasible = r->c.f <= ctx->fmax - 1e-4 ||
		              (r->c.f <= ctx->fmax + 1e-6 &&
		               sl_cost_offload_for(c, s, d, ctx->cap) < 1.0);
		double p = (double)sl_cost_padded(s, d);
		double frac = (1.0 - r->c.f) * p / ((double)d * ctx->cap); /* memory it fills */
		if (d == 1)
			r->c.wd = r->c.t + ctx->beta * frac;
		else if (ri->ride[d])
			r->c.wd = d * (r->c.t + ctx->beta * frac) + d * ctx->cap * (1 - frac) * ri->ovh[d];
		else
			r->c.wd = d * (r->c.t + ctx->beta);
	}
	ctx->work += N;
	qsort(raw, (size_t)N, sizeof(rawcand_t), cmp_raw);
	int32_t k = 0;
	/* bound columns */
	double best = INFINITY;
	for (int32_t i = 0; i < N; i++) {
		const planner_sluice_cand_t *rc = &raw[i].c;
		if (!(rc->w < best))
			continue;
		best = rc->w;
		planner_sluice_cand_t *prev = k > 0 ? &out[k - 1] : NULL;
		/* merge into the previous column when the work is nearly equal:
		 * the column keeps the least time (the first) and least work */
		if (prev != NULL && prev->w0_ - rc->w <= SLUICE_LP_MERGE * prev->w0_) {
			prev->w = rc->w;
			if (raw[i].feasible && (prev->d <= 0 || rc->w <= prev->w_usable_)) {
				prev->d = rc->d;
				prev->f = rc->f;
				prev->w_usable_ = rc->w;
			}
			continue;
		}
		out[k] = *rc;
		out[k].bound = 1;
		out[k].w0_ = rc->w;
		out[k].w_usable_ = raw[i].feasible ? rc->w : INFINITY;
		if (!raw[i].feasible)
			out[k].d = -rc->d;
		k++;
	}
	/* decision columns */
	int32_t k0 = k;
	best = INFINITY;
	for (int32_t i = 0; i < N; i++) {
		const planner_sluice_cand_t *rc = &raw[i].c;
		if (!raw[i].feasible || !(rc->wd < best))
			continue;
		best = rc->wd;
		planner_sluice_cand_t *prev = k > k0 ? &out[k - 1] : NULL;
		if (prev != NULL && prev->w0_ - rc->wd <= SLUICE_LP_MERGE * prev->w0_) {
			/* a real degree: keep the one of least decision work */
			double w0 = prev->w0_;
			*prev = *rc;
			prev->dec = 1;
			prev->w0_ = w0;
			continue;
		}
		out[k] = *rc;
		out[k].dec = 1;
		out[k].w0_ = rc->wd;
		k++;
	}
	return k;
}

void planner_sluice_lp_fini(planner_sluice_lp_t *lp)
{
	free(lp->seq);
	free(lp->cand_off);
	free(lp->cand);
	memset(lp, 0, sizeof(*lp));
}

/* Fills the LP's columns and rows and solves it: with dec == 0 the bound LP
 * (work w, every degree), else the decision LP (work wd, only degrees our
 * plans can use; its values go to cand[].x). On any LP failure returns the
 * error and leaves the caller to use the closed-form bound. */
static sl_err solve_glpk(planner_sluice_ctx_t *ctx, planner_sluice_lp_t *lp, double w_short,
                         double t_lo, int dec, double *t_out)
{
	sl_err rc = SL_OK;
	lp_t *m = NULL;
	int64_t ncand = lp->cand_off[lp->nlong];
	int *cols = NULL, *col_of = NULL;
	double *vals = NULL;
	int tcol;
	lp_result_t res;

	cols = malloc(sizeof(int) * (size_t)(ncand + 2));
	vals = malloc(sizeof(double) * (size_t)(ncand + 2));
	col_of = malloc(sizeof(int) * (size_t)(ncand + 1));
	if (cols == NULL || vals == NULL || col_of == NULL) {
		rc = sl_seterr(SL_ENOMEM, "sluice LP: out of memory for %lld candidates",
		               (long long)ncand);
		goto out;
	}
	SL_CHECK_GOTO(lp_new(dec ? "sluice-degrees" : "sluice-bound", 1, &m), rc, out);
	/* Times in seconds so the coefficients stay near 1. */
	SL_CHECK_GOTO(lp_add_col(m, "T", LP_CONTINUOUS, t_lo / 1e3, INFINITY, 1.0, &tcol), rc, out);
	for (int64_t k = 0; k < ncand; k++) {
		col_of[k] = -1;
		if (dec ? lp->cand[k].dec : lp->cand[k].bound)
			SL_CHECK_GOTO(lp_add_col(m, NULL, LP_CONTINUOUS, 0.0, 1.0, 0.0, &col_of[k]), rc,
			              out);
	}
	for (int32_t j = 0; j < lp->nlong; j++) {
		int nnz = 0;
		for (int64_t k = lp->cand_off[j]; k < lp->cand_off[j + 1]; k++)
			if (col_of[k] >= 0) {
				cols[nnz] = col_of[k];
				vals[nnz++] = 1.0;
			}
		SL_CHECK_GOTO(lp_add_row(m, NULL, nnz, cols, vals, 1.0, 1.0, NULL), rc, out);
		nnz = 0;
		cols[nnz] = tcol;
		vals[nnz++] = 1.0;
		for (int64_t k = lp->cand_off[j]; k < lp->cand_off[j + 1]; k++)
			if (col_of[k] >= 0) {
				cols[nnz] = col_of[k];
				vals[nnz++] = -(ctx->beta + lp->cand[k].t) / 1e3;
			}
		SL_CHECK_GOTO(lp_add_row(m, NULL, nnz, cols, vals, 0.0, INFINITY, NULL), rc, out);
	}
	{
		int nnz = 0;
		cols[nnz] = tcol;
		vals[nnz++] = (double)ctx->N;
		for (int64_t k = 0; k < ncand; k++)
			if (col_of[k] >= 0) {
				cols[nnz] = col_of[k];
				vals[nnz++] = -(dec ? lp->cand[k].wd : lp->cand[k].w) / 1e3;
			}
		SL_CHECK_GOTO(lp_add_row(m, "work", nnz, cols, vals, w_short / 1e3, INFINITY, NULL), rc,
		              out);
	}
	lp_opts_t o;
	memset(&o, 0, sizeof(o));
	/* Deterministic cap; the LP has 2 nlong + 1 rows, so simplex needs a
	 * few times that many pivots. */
	o.it_lim = 50 * (int64_t)(2 * lp->nlong + 1) + 1000;
	o.presolve = 0;
	SL_CHECK_GOTO(lp_solve(m, &o, &res), rc, out);
	ctx->work += res.iterations * (int64_t)(2 * lp->nlong + 1);
	*t_out = lp_value(m, tcol) * 1e3;
	for (int64_t k = 0; k < ncand; k++) {
		if (col_of[k] < 0)
			continue;
		if (dec)
			lp->cand[k].x = lp_value(m, col_of[k]);
		else
			lp->cand[k].xb = lp_value(m, col_of[k]);
	}
out:
	lp_free(&m);
	free(cols);
	free(vals);
	free(col_of);
	return rc;
}

/* Appends sequence i's candidates to the LP; returns its least work. */
static sl_err add_long(planner_sluice_ctx_t *ctx, const rideinfo_t *ri, planner_sluice_lp_t *lp,
                       int32_t i, rawcand_t *raw, planner_sluice_cand_t *tmp, int64_t *cand_cap,
                       double *wmin)
{
	int32_t k = candidates(ctx, ri, ctx->seqs[i].length, raw, tmp);
	int64_t ncand = lp->cand_off[lp->nlong];
	if (ncand + k > *cand_cap) {
		int64_t nc = *cand_cap ? *cand_cap * 2 : 64;
		while (nc < ncand + k)
			nc *= 2;
		planner_sluice_cand_t *q = realloc(lp->cand, sizeof(*q) * (size_t)nc);
		if (q == NULL)
			return sl_seterr(SL_ENOMEM, "sluice LP: out of memory for %lld candidates",
			                 (long long)nc);
		lp->cand = q;
		*cand_cap = nc;
	}
	*wmin = INFINITY;
	for (int32_t q = 0; q < k; q++) {
		lp->cand[ncand + q] = tmp[q];
		if (tmp[q].w < *wmin)
			*wmin = tmp[q].w;
	}
	lp->seq[lp->nlong++] = i;
	lp->cand_off[lp->nlong] = ncand + k;
	return SL_OK;
}

/* The bound when the LP cannot be solved: every sequence at its least
 * work and least time separately (the spec's ideal), using w or wd. */
static double closed_form(const planner_sluice_ctx_t *ctx, const planner_sluice_lp_t *lp,
                          double w_short, double t_lo, int dec)
{
	double wsum = w_short;
	for (int32_t j = 0; j < lp->nlong; j++) {
		double wmin = INFINITY;
		for (int64_t k = lp->cand_off[j]; k < lp->cand_off[j + 1]; k++) {
			const planner_sluice_cand_t *cd = &lp->cand[k];
			if (dec ? !cd->dec : !cd->bound)
				continue;
			double w = dec ? cd->wd : cd->w;
			if (w < wmin)
				wmin = w;
		}
		wsum += wmin;
	}
	return t_lo > wsum / ctx->N ? t_lo : wsum / ctx->N;
}

sl_err planner_sluice_lp_solve(planner_sluice_ctx_t *ctx, planner_sluice_lp_t *lp)
{
	const sl_cost_t *c = ctx->cost;
	sl_err rc = SL_OK;
	rawcand_t *raw = NULL;
	planner_sluice_cand_t *tmp = NULL;
	double *short_w = NULL;
	char *in_lp = NULL;
	rideinfo_t ri = {NULL, NULL};
	int32_t n = ctx->n, N = ctx->N;
	double w_short = 0, w_lb = 0, t_lo = 0, wmin;
	int64_t cand_cap = 0;

	memset(lp, 0, sizeof(*lp));
	lp->seq = malloc(sizeof(int32_t) * (size_t)n);
	lp->cand_off = malloc(sizeof(int64_t) * ((size_t)n + 1));
	raw = malloc(sizeof(rawcand_t) * (size_t)N);
	tmp = malloc(sizeof(planner_sluice_cand_t) * (size_t)N * 2);
	short_w = malloc(sizeof(double) * (size_t)n);
	in_lp = calloc((size_t)n, 1);
	if (lp->seq == NULL || lp->cand_off == NULL || raw == NULL || tmp == NULL ||
	    short_w == NULL || in_lp == NULL) {
		rc = sl_seterr(SL_ENOMEM, "sluice LP: out of memory for %d sequences", n);
		goto out;
	}
	SL_CHECK_GOTO(rideinfo_init(ctx, &ri), rc, out);
	lp->cand_off[0] = 0;

	/* A sequence that fits one rank costs least there (no padding, no
	 * communication): its work is a constant of the LP. Longer ones are
	 * the LP's to place. */
	for (int32_t i = 0; i < n; i++) {
		int64_t s = ctx->seqs[i].length;
		double t;
		if ((double)s > ctx->cap) {
			in_lp[i] = 1;
			SL_CHECK_GOTO(add_long(ctx, &ri, lp, i, raw, tmp, &cand_cap, &wmin), rc, out);
			w_lb += wmin;
		} else {
			short_w[i] = work_lb(c, s, 1, 0.0, 1, &t);
			w_lb += short_w[i];
		}
	}
	/* ... unless its time on one rank could be what limits the step (tiny
	 * batches): beta + T_1 above the work bound w_lb / N. Those join the
	 * LP too; the others' critical time is implied by the work row. */
	for (int32_t i = 0; i < n; i++) {
		if (in_lp[i])
			continue;
		if (ctx->beta + ctx->t1[i] > w_lb / N) {
			in_lp[i] = 1;
			SL_CHECK_GOTO(add_long(ctx, &ri, lp, i, raw, tmp, &cand_cap, &wmin), rc, out);
		} else {
			w_short += short_w[i];
		}
	}
	for (int32_t j = 0; j < lp->nlong; j++) {
		double tmin = INFINITY;
		for (int64_t k = lp->cand_off[j]; k < lp->cand_off[j + 1]; k++)
			if (lp->cand[k].t < tmin)
				tmin = lp->cand[k].t;
		if (ctx->beta + tmin > t_lo)
			t_lo = ctx->beta + tmin;
	}
	if (w_short / N > t_lo)
		t_lo = w_short / N;
	if (w_lb / N > t_lo)
		t_lo = w_lb / N;

	/* Every LP point has T >= t_lo, so a sequence's columns fast enough for
	 * t_lo (beta + t <= t_lo) hardly shape the optimum: they are replaced by
	 * one column of their least time and least work (for the bound LP a
	 * relaxation, so the bound stays valid; for the decision LP the real
	 * degree of least work among them). */
	{
		int64_t o = 0;
		for (int32_t j = 0; j < lp->nlong; j++) {
			int64_t a = lp->cand_off[j], b = lp->cand_off[j + 1];
			lp->cand_off[j] = o;
			for (int kind = 0; kind < 2; kind++) {
				int64_t first_fast = -1, last_fast = -1;
				for (int64_t k = a; k < b; k++) {
					const planner_sluice_cand_t *cd = &lp->cand[k];
					if ((kind ? cd->dec : cd->bound) && ctx->beta + cd->t <= t_lo) {
						if (first_fast < 0)
							first_fast = k;
						last_fast = k;
					}
				}
				for (int64_t k = a; k < b; k++) {
					const planner_sluice_cand_t *cd = &lp->cand[k];
					if (!(kind ? cd->dec : cd->bound))
						continue;
					if (ctx->beta + cd->t <= t_lo && k != last_fast)
						continue;
					lp->cand[o] = *cd;
					if (k == last_fast && kind == 0)
						lp->cand[o].t = lp->cand[first_fast].t;
					o++;
				}
			}
		}
		lp->cand_off[lp->nlong] = o;
	}

	double t_bound = t_lo, t_dec = t_lo;
	lp->solved = 1;
	if (lp->nlong > 0) {
		for (int dec = 0; dec < 2; dec++) {
			double *t_out = dec ? &t_dec : &t_bound;
			sl_err lrc = solve_glpk(ctx, lp, w_short, t_lo, dec, t_out);
			if (lrc == SL_ENOMEM) {
				rc = lrc;
				goto out;
			}
			if (lrc != SL_OK) {
				SL_WARN(SL_SUB_PLAN, "sluice: %s LP failed (%s); using per-sequence bounds",
				        dec ? "decision" : "bound", sl_errmsg());
				*t_out = closed_form(ctx, lp, w_short, t_lo, dec);
				lp->solved = 0;
			}
		}
	}
	lp->t_star = t_dec;
	lp->bound_ms = t_bound + c->prof.grad_sync_ms;
out:
	rideinfo_fini(&ri);
	free(raw);
	free(tmp);
	free(short_w);
	free(in_lp);
	if (rc != SL_OK)
		planner_sluice_lp_fini(lp);
	return rc;
}

void planner_sluice_lp_round(const planner_sluice_ctx_t *ctx, const planner_sluice_lp_t *lp,
                             int which, int32_t *deg, double *off)
{
	for (int32_t i = 0; i < ctx->n; i++) {
		deg[i] = 1;
		off[i] = 0;
	}
	for (int32_t j = 0; j < lp->nlong; j++) {
		const planner_sluice_cand_t *best = NULL;
		for (int64_t k = lp->cand_off[j]; k < lp->cand_off[j + 1]; k++) {
			const planner_sluice_cand_t *cd = &lp->cand[k];
			if (which ? !cd->bound : !cd->dec)
				continue;
			double x = which ? cd->xb : cd->x;
			if (cd->d > 0 && (best == NULL || x > (which ? best->xb : best->x) + 1e-9))
				best = cd;
		}
		if (best == NULL) {
			/* no usable column carries LP weight: the fastest usable one */
			for (int64_t k = lp->cand_off[j]; k < lp->cand_off[j + 1]; k++) {
				const planner_sluice_cand_t *cd = &lp->cand[k];
				if (cd->dec && (best == NULL || cd->t < best->t))
					best = cd;
			}
		}
		if (best != NULL) {
			deg[lp->seq[j]] = best->d;
			off[lp->seq[j]] = best->f;
		}
	}
}

void planner_sluice_lp_target(const planner_sluice_ctx_t *ctx, const planner_sluice_lp_t *lp,
                              double target_ms, int32_t *deg, double *off)
{
	for (int32_t i = 0; i < ctx->n; i++) {
		deg[i] = 1;
		off[i] = 0;
	}
	for (int32_t j = 0; j < lp->nlong; j++) {
		const planner_sluice_cand_t *best = NULL, *fast = NULL;
		for (int64_t k = lp->cand_off[j]; k < lp->cand_off[j + 1]; k++) {
			const planner_sluice_cand_t *cd = &lp->cand[k];
			if (!cd->dec)
				continue; /* decision columns are the usable degrees */
			if (fast == NULL || cd->t < fast->t)
				fast = cd;
			if (ctx->beta + cd->t <= target_ms && (best == NULL || cd->wd < best->wd))
				best = cd;
		}
		if (best == NULL)
			best = fast;
		if (best != NULL) {
			deg[lp->seq[j]] = best->d;
			off[lp->seq[j]] = best->f;
		}
	}
}
