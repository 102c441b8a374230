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
/* Clusters larger than this collapse a sequence's fast degrees into one
 * column while costing them (see candidates). */
#define SLUICE_LP_COLLAPSE_RANKS 256

/* Costs s on d ranks into r: least offload, time, bound work, decision
 * work, and whether our plans can use it. */
static void cost_degree(const planner_sluice_ctx_t *ctx, const rideinfo_t *ri, int64_t s,
                        int32_t d, rawcand_t *r)
{
	const sl_cost_t *c = ctx->cost;
	memset(&r->c, 0, sizeof(r->c));
	r->c.d = d;
	r->c.f = sl_cost_min_offload(c, s, d);
	r->c.w = work_lb(c, s, d, r->c.f, d <= ctx->G, &r->c.t);
	/* usable when the offload, on sl_cost_offload_for's grid, stays
	 * within max_offload (checked exactly only near the limit) */
	r->feasible = r->c.f <= ctx->fmax - 1e-4 ||
	              (r->c.f <= ctx->fmax + 1e-6 && sl_cost_offload_for(c, s, d, ctx->cap) < 1.0);
	double p = (double)sl_cost_padded(s, d);
	double frac = (1.0 - r->c.f) * p / ((double)d * ctx->cap); /* memory it fills */
	if (d == 1)
		r->c.wd = r->c.t + ctx->beta * frac;
	else if (ri->ride[d])
		r->c.wd = d * (r->c.t + ctx->beta * frac) + d * ctx->cap * (1 - frac) * ri->ovh[d];
	else
		r->c.wd = d * (r->c.t + ctx->beta);
}

/* The cheap columns of s once the LP's share of the work limit is spent
 * (out: room for 2). A decision column: the usable degree of least decision
 * work among those that just hold s (from the least offload max_offload
 * allows to none). A bound column of time 0 and the least work of any
 * degree: a relaxation, so the bound stays valid, only looser. Costs
 * O(s / cap) degrees and the few the work floor leaves, instead of O(N).
 * Returns 2. */
static int32_t candidates_coarse(planner_sluice_ctx_t *ctx, const rideinfo_t *ri, int64_t s,
                                 planner_sluice_cand_t *out)
{
	const sl_cost_t *c = ctx->cost;
	int32_t N = ctx->N;
	double need = (double)s / ctx->cap;
	int32_t lo = (int32_t)floor(need * (1.0 - ctx->fmax)), hi = (int32_t)ceil(need) + 1;
	if (lo < 1)
		lo = 1;
	if (hi > N)
		hi = N;
	if (lo > hi)
		lo = hi;
	rawcand_t r, best;
	int have = 0;
	memset(&best, 0, sizeof(best));
	for (int32_t d = lo; d <= hi + 1; d++) {
		/* N last: the cluster holds every request's sequences */
		cost_degree(ctx, ri, s, d <= hi ? d : N, &r);
		if (r.feasible && (!have || r.c.wd < best.c.wd)) {
			best = r;
			have = 1;
		}
		if (d == hi && have)
			break;
	}
	ctx->work += 4 * (int64_t)(hi - lo + 2);
	/* bound column first, as candidates() orders them (the LP's compaction
	 * relies on it) */
	out[0] = best.c;
	out[0].bound = 1;
	out[0].t = 0;
	/* the least work over every degree, the ideal's (the bound columns'
	 * work is the ideal's per degree), so the bound stays at or above the
	 * spec's ideal: the longest lengths, which set its critical time, are
	 * costed in full first */
	int32_t tried;
	out[0].w = planner_cost_seq_work(c, s, &tried);
	ctx->work += 4 * (int64_t)tried;
	out[0].w0_ = out[0].w;
	out[0].w_usable_ = out[0].w;
	out[1] = best.c;
	out[1].dec = 1;
	return 2;
}

static int32_t candidates(planner_sluice_ctx_t *ctx, const rideinfo_t *ri, int64_t s,
                          double tau0, rawcand_t *raw, planner_sluice_cand_t *out)
{
	const sl_cost_t *c = ctx->cost;
	int32_t N = ctx->N, ns = 0;
	/* Degrees fast enough that beta + t <= a lower bound on the LP's T
	 * (tau0 = that bound - beta) collapse into one bound column (their
	 * least time and least work: a relaxation, so the bound stays valid)
	 * and one decision column (the usable degree of least decision work);
	 * only the slower degrees are sorted into the Pareto frontier. On large
	 * batches that is few of them, and each length costs O(N). */
	rawcand_t fb, fd;
	int have_fb = 0, have_fd = 0;
	double fb_wu = INFINITY;
	int32_t d_end = N; /* degrees past it were not costed one by one */
	memset(&fb, 0, sizeof(fb));
	memset(&fd, 0, sizeof(fd));
	for (int32_t d = 1; d <= N; d++) {
		/* Once every degree from here on surely works more than the
		 * collapsed columns' least work (bound, usable bound, decision:
		 * d ranks each pay a fixed cost past a node), none of them can
		 * change those columns or join a frontier, which keeps only
		 * points of less work than every faster one: stop costing them
		 * (the least time, all they could still change, is found
		 * below). Floors are real-arithmetic bounds, so a margin far
		 * above rounding keeps the columns bit-identical. */
		if (have_fd && fb_wu < INFINITY && d > ctx->G) {
			double busy, floor = planner_cost_work_floor(c, s, d, &busy);
			if (floor > fb_wu * (1 + 1e-9) && busy + d * ctx->beta > fd.c.wd * (1 + 1e-9)) {
				d_end = d - 1;
				break;
			}
		}
		rawcand_t *r = &raw[ns];
		cost_degree(ctx, ri, s, d, r);
		if (!(r->c.t <= tau0)) {
			ns++;
			continue;
		}
		if (!have_fb) {
			fb = *r;
			fb.c.d = r->feasible ? d : -d;
			fb_wu = r->feasible ? r->c.w : INFINITY;
			have_fb = 1;
		} else {
			if (r->c.t < fb.c.t)
				fb.c.t = r->c.t;
			if (r->c.w < fb.c.w) {
				fb.c.w = r->c.w;
				if (fb.c.d <= 0)
					fb.c.d = -d;
			}
			if (r->feasible && r->c.w < fb_wu) {
				fb_wu = r->c.w;
				fb.c.d = d;
				fb.c.f = r->c.f;
			}
		}
		if (r->feasible && (!have_fd || r->c.wd < fd.c.wd)) {
			fd = *r;
			have_fd = 1;
		}
	}
	/* about four units per degree: three cost-model evaluations */
	ctx->work += 4 * (int64_t)d_end;
	if (d_end < N && have_fb) {
		/* The collapsed column's time is the least over every degree (all
		 * of the fastest are collapsed). Past ceil(s / 2) no degree is
		 * faster when bandwidth never grows with the degree (see
		 * sl_cost_seq_bounds); below, a degree d' no larger than d takes
		 * at least busy / d, busy the floor on d' T of degrees past
		 * d_end: scan down from the top while that floor is below the
		 * least time found. */
		int32_t top = N;
		if (c->comm_monotone && c->cap >= 2 && (s + 1) / 2 < top)
			top = (int32_t)((s + 1) / 2);
		double busy;
		(void)planner_cost_work_floor(c, s, d_end + 1, &busy);
		int64_t scanned = 0;
		for (int32_t d = top; d > d_end && busy / d <= fb.c.t * (1 + 1e-9); d--) {
			double t = sl_cost_seq_ms(c, s, d, sl_cost_min_offload(c, s, d), d <= ctx->G);
			if (t < fb.c.t)
				fb.c.t = t;
			scanned++;
		}
		ctx->work += 2 * scanned;
	}
	qsort(raw, (size_t)ns, sizeof(rawcand_t), cmp_raw);
	ctx->work += (int64_t)ns * 8;
	int32_t k = 0;
	/* bound columns */
	double best = INFINITY;
	if (have_fb) {
		out[k] = fb.c;
		out[k].bound = 1;
		out[k].w0_ = fb.c.w;
		out[k].w_usable_ = fb_wu;
		best = fb.c.w;
		k++;
	}
	for (int32_t i = 0; i < ns; i++) {
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
	if (have_fd) {
		out[k] = fd.c;
		out[k].dec = 1;
		out[k].w0_ = fd.c.wd;
		best = fd.c.wd;
		k++;
	}
	for (int32_t i = 0; i < ns; i++) {
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

/* Solves one of the two LPs exactly, without a general LP solver. For a
 * fixed T the LP falls apart per sequence: j takes the convex combination of
 * its columns of least work whose time fits T - beta, i.e. the lower convex
 * hull h_j of its (t, w) points evaluated at T - beta (columns are sorted by
 * time with work falling, the Pareto frontier). The work row then reads
 *   g(T) = N T - W_short - sum_j h_j(T - beta) >= 0,
 * g increasing, piecewise linear with breakpoints at beta + t of hull
 * vertices; the optimum is the least T >= the time rows' floor with
 * g(T) >= 0, found by bisection over the sorted breakpoints and one linear
 * solve: O(C log C) for C columns, where GLPK's simplex grew quadratically
 * with the number of long sequences. The values x written (cand[].x for the
 * decision LP, cand[].xb for the bound LP) are that optimal point: each
 * sequence on the two hull vertices around T - beta. */
typedef struct {
	int64_t *hull;   /* [C] column indices of hull vertices, per sequence */
	int64_t *hoff;   /* [nlong + 1] into hull */
	double *bp;      /* [C] breakpoints */
} hull_t;

static int is_col(const planner_sluice_cand_t *cd, int dec)
{
	return dec ? cd->dec : cd->bound;
}

static double col_w(const planner_sluice_cand_t *cd, int dec)
{
	return dec ? cd->wd : cd->w;
}

/* h_j(tau): least work of sequence j within time tau (its hull). */
static double hull_w(const planner_sluice_lp_t *lp, const hull_t *h, int32_t j, double tau,
                     int dec)
{
	int64_t a = h->hoff[j], b = h->hoff[j + 1];
	const planner_sluice_cand_t *last = &lp->cand[h->hull[b - 1]];
	if (tau >= last->t)
		return col_w(last, dec);
	/* the segment around tau: hull times ascend */
	int64_t lo = a, hi = b - 1;
	while (hi - lo > 1) {
		int64_t mid = lo + (hi - lo) / 2;
		if (lp->cand[h->hull[mid]].t <= tau)
			lo = mid;
		else
			hi = mid;
	}
	const planner_sluice_cand_t *p = &lp->cand[h->hull[lo]], *q = &lp->cand[h->hull[hi]];
	if (tau <= p->t)
		return col_w(p, dec);
	double u = (tau - p->t) / (q->t - p->t);
	return col_w(p, dec) + u * (col_w(q, dec) - col_w(p, dec));
}

static double g_of(const planner_sluice_ctx_t *ctx, const planner_sluice_lp_t *lp,
                   const hull_t *h, double w_short, double T, int dec)
{
	double s = w_short;
	for (int32_t j = 0; j < lp->nlong; j++)
		s += hull_w(lp, h, j, T - ctx->beta, dec);
	return (double)ctx->N * T - s;
}

static sl_err solve_exact(planner_sluice_ctx_t *ctx, planner_sluice_lp_t *lp, double w_short,
                          double t_lo, int dec, double *t_out)
{
	sl_err rc = SL_OK;
	int64_t ncand = lp->cand_off[lp->nlong];
	hull_t h = {NULL, NULL, NULL};
	h.hull = malloc(sizeof(int64_t) * (size_t)(ncand + 1));
	h.hoff = malloc(sizeof(int64_t) * ((size_t)lp->nlong + 1));
	h.bp = malloc(sizeof(double) * (size_t)(ncand + 1));
	if (h.hull == NULL || h.hoff == NULL || h.bp == NULL) {
		rc = sl_seterr(SL_ENOMEM, "sluice LP: out of memory for %lld candidates",
		               (long long)ncand);
		goto out;
	}
	/* Lower convex hulls (monotone chain over points sorted by time) and
	 * the time rows' floor: T >= beta + the least time of every sequence. */
	double T0 = t_lo;
	int64_t nh = 0, nbp = 0;
	for (int32_t j = 0; j < lp->nlong; j++) {
		h.hoff[j] = nh;
		for (int64_t k = lp->cand_off[j]; k < lp->cand_off[j + 1]; k++) {
			const planner_sluice_cand_t *cd = &lp->cand[k];
			if (!is_col(cd, dec))
				continue;
			if (nh > h.hoff[j]) {
				const planner_sluice_cand_t *b = &lp->cand[h.hull[nh - 1]];
				/* same time: keep the one of less work */
				if (cd->t <= b->t) {
					if (col_w(cd, dec) < col_w(b, dec))
						h.hull[nh - 1] = k;
					continue;
				}
				/* a point of no less work than the last is dominated */
				if (col_w(cd, dec) >= col_w(b, dec))
					continue;
			}
			while (nh - h.hoff[j] >= 2) {
				const planner_sluice_cand_t *a = &lp->cand[h.hull[nh - 2]];
				const planner_sluice_cand_t *b = &lp->cand[h.hull[nh - 1]];
				/* b above the chord a-cd: not on the lower hull */
				double cross = (b->t - a->t) * (col_w(cd, dec) - col_w(a, dec)) -
				               (col_w(b, dec) - col_w(a, dec)) * (cd->t - a->t);
				if (cross > 0)
					break;
				nh--;
			}
			h.hull[nh++] = k;
		}
		if (nh == h.hoff[j]) {
			rc = sl_seterr(SL_EINTERNAL, "sluice LP: sequence %d has no %s column",
			               lp->seq[j], dec ? "decision" : "bound");
			goto out;
		}
		double tmin = lp->cand[h.hull[h.hoff[j]]].t;
		if (ctx->beta + tmin > T0)
			T0 = ctx->beta + tmin;
	}
	h.hoff[lp->nlong] = nh;
	ctx->work += ncand + nh;
	double T = T0;
	if (g_of(ctx, lp, &h, w_short, T0, dec) < 0) {
		for (int64_t k = 0; k < nh; k++) {
			double b = ctx->beta + lp->cand[h.hull[k]].t;
			if (b > T0)
				h.bp[nbp++] = b;
		}
		qsort(h.bp, (size_t)nbp, sizeof(double), sl_cmp_double);
		/* the first breakpoint where g >= 0 (none: past the last one g is
		 * linear with slope N) */
		int64_t lo = 0, hi = nbp;
		while (lo < hi) {
			int64_t mid = lo + (hi - lo) / 2;
			if (g_of(ctx, lp, &h, w_short, h.bp[mid], dec) >= 0)
				hi = mid;
			else
				lo = mid + 1;
		}
		int steps = 2;
		for (int64_t z = nbp; z > 1; z /= 2)
			steps++;
		ctx->work += (int64_t)steps * (ncand + 1) + nbp * 8;
		double a = lo > 0 ? h.bp[lo - 1] : T0;
		double ga = g_of(ctx, lp, &h, w_short, a, dec);
		if (lo == nbp) {
			T = a - ga / ctx->N;
		} else {
			double b = h.bp[lo], gb = g_of(ctx, lp, &h, w_short, b, dec);
			T = gb - ga > 0 ? a - ga * (b - a) / (gb - ga) : b;
			if (T > b)
				T = b;
		}
		if (T < a)
			T = a;
	}
	*t_out = T;
	/* the optimal point: each sequence on the hull vertices around T - beta */
	double tau = T - ctx->beta;
	for (int64_t k = 0; k < ncand; k++) {
		if (dec)
			lp->cand[k].x = 0;
		else
			lp->cand[k].xb = 0;
	}
	for (int32_t j = 0; j < lp->nlong; j++) {
		int64_t a = h.hoff[j], b = h.hoff[j + 1], lo = a;
		while (lo + 1 < b && lp->cand[h.hull[lo + 1]].t <= tau)
			lo++;
		double xs[2] = {1.0, 0.0};
		int64_t ks[2] = {h.hull[lo], -1};
		if (lo + 1 < b && tau > lp->cand[h.hull[lo]].t) {
			const planner_sluice_cand_t *p = &lp->cand[h.hull[lo]];
			const planner_sluice_cand_t *q = &lp->cand[h.hull[lo + 1]];
			ks[1] = h.hull[lo + 1];
			xs[1] = (tau - p->t) / (q->t - p->t);
			xs[0] = 1.0 - xs[1];
		}
		for (int z = 0; z < 2; z++) {
			if (ks[z] < 0)
				continue;
			if (dec)
				lp->cand[ks[z]].x = xs[z];
			else
				lp->cand[ks[z]].xb = xs[z];
		}
	}
	ctx->work += ncand;
out:
	free(h.hull);
	free(h.hoff);
	free(h.bp);
	return rc;
}

/* Appends sequence i's candidates to the LP; returns its least work. A
 * sequence as long as the one appended last copies its columns (callers
 * append in length order, so each distinct length is costed once). */
static sl_err add_long(planner_sluice_ctx_t *ctx, const rideinfo_t *ri, planner_sluice_lp_t *lp,
                       int32_t i, double tau0, int coarse, rawcand_t *raw,
                       planner_sluice_cand_t *tmp, int64_t *cand_cap, double *wmin)
{
	int64_t s = ctx->seqs[i].length;
	int64_t ncand = lp->cand_off[lp->nlong];
	const planner_sluice_cand_t *src = tmp;
	int32_t k;
	if (lp->nlong > 0 && ctx->seqs[lp->seq[lp->nlong - 1]].length == s) {
		k = (int32_t)(ncand - lp->cand_off[lp->nlong - 1]);
		src = NULL; /* lp->cand[ncand - k ..), read after a realloc */
	} else if (coarse) {
		k = candidates_coarse(ctx, ri, s, tmp);
	} else {
		k = candidates(ctx, ri, s, tau0, raw, tmp);
	}
	ctx->work += k;
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
	if (src == NULL)
		src = lp->cand + ncand - k;
	*wmin = INFINITY;
	for (int32_t q = 0; q < k; q++) {
		lp->cand[ncand + q] = src[q];
		if (src[q].w < *wmin)
			*wmin = src[q].w;
	}
	lp->seq[lp->nlong++] = i;
	lp->cand_off[lp->nlong] = ncand + k;
	return SL_OK;
}

sl_err planner_sluice_lp_solve(planner_sluice_ctx_t *ctx, planner_sluice_lp_t *lp)
{
	const sl_cost_t *c = ctx->cost;
	sl_err rc = SL_OK;
	rawcand_t *raw = NULL;
	planner_sluice_cand_t *tmp = NULL;
	double *short_w = NULL;
	char *in_lp = NULL;
	planner_len_key_t *keys = NULL;
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
	keys = malloc(sizeof(planner_len_key_t) * (size_t)n);
	if (keys == NULL || lp->seq == NULL || lp->cand_off == NULL || raw == NULL || tmp == NULL ||
	    short_w == NULL || in_lp == NULL) {
		rc = sl_seterr(SL_ENOMEM, "sluice LP: out of memory for %d sequences", n);
		goto out;
	}
	SL_CHECK_GOTO(rideinfo_init(ctx, &ri), rc, out);
	lp->cand_off[0] = 0;

	/* A sequence that fits one rank costs least there (no padding, no
	 * communication): its work is a constant of the LP. Longer ones are
	 * the LP's to place, longest first so equal lengths are costed once.
	 * A lower bound on the LP's T first: every sequence's exact work on
	 * one rank, or for a long one its compute plus the cheaper of a fixed
	 * cost share and offloading per token (no degree does better). */
	double w_lb0 = 0, per_tok = ctx->beta / ctx->cap < ctx->c_off ? ctx->beta / ctx->cap
	                                                                : ctx->c_off;
	int32_t nl = 0;
	for (int32_t i = 0; i < n; i++) {
		double s = (double)ctx->seqs[i].length, t;
		if (s > ctx->cap) {
			keys[nl].len = ctx->seqs[i].length;
			keys[nl++].idx = i;
			w_lb0 += (c->prof.alpha1 * s * s + c->prof.alpha2 * s + per_tok * s) * (1 - 1e-9);
		} else {
			short_w[i] = work_lb(c, ctx->seqs[i].length, 1, 0.0, 1, &t);
			w_lb0 += short_w[i];
			w_lb += short_w[i];
		}
	}
	ctx->work += n;
	qsort(keys, (size_t)nl, sizeof(planner_len_key_t), planner_len_key_desc);
	/* The collapse below tau0 loosens the bound LP a little (a collapsed
	 * column takes its degrees' least time); on small clusters the whole
	 * frontier is cheap, so only large ones collapse. */
	double tau0 = N > SLUICE_LP_COLLAPSE_RANKS ? w_lb0 / N - ctx->beta : -INFINITY;
	/* Costing candidates may spend a share of the work limit; past it the
	 * remaining (shorter) lengths get the cheap columns, and the search
	 * counts as cut. */
	int64_t lp_end = ctx->work + ctx->work_limit / SLUICE_LP_SHARE;
	int coarse = 0;
	for (int32_t q = 0; q < nl; q++) {
		int32_t i = keys[q].idx;
		in_lp[i] = 1;
		if (!coarse && ctx->work >= lp_end) {
			coarse = 1;
			ctx->truncated = 1;
		}
		SL_CHECK_GOTO(add_long(ctx, &ri, lp, i, tau0, coarse, raw, tmp, &cand_cap, &wmin), rc,
		              out);
		w_lb += wmin;
	}
	/* ... unless its time on one rank could be what limits the step (tiny
	 * batches): beta + T_1 above the work bound w_lb / N. Those join the
	 * LP too; the others' critical time is implied by the work row. */
	for (int32_t i = 0; i < n; i++) {
		if (in_lp[i])
			continue;
		if (ctx->beta + ctx->t1[i] > w_lb / N) {
			in_lp[i] = 1;
			SL_CHECK_GOTO(
			    add_long(ctx, &ri, lp, i, tau0, coarse, raw, tmp, &cand_cap, &wmin), rc, out);
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
		SL_CHECK_GOTO(solve_exact(ctx, lp, w_short, t_lo, 0, &t_bound), rc, out);
		SL_CHECK_GOTO(solve_exact(ctx, lp, w_short, t_lo, 1, &t_dec), rc, out);
	}
	lp->t_star = t_dec;
	lp->bound_ms = t_bound + c->prof.grad_sync_ms;
out:
	rideinfo_fini(&ri);
	free(raw);
	free(tmp);
	free(short_w);
	free(in_lp);
	free(keys);
	if (rc != SL_OK)
		planner_sluice_lp_fini(lp);
	return rc;
}

/* How far above the LP's optimum a rounded column's time may be (a
 * fraction): 10% keeps the Wikipedia replay's degrees (its rounded rings
 * finish within a few percent of T) and cuts the slow ones. */
#define SLUICE_ROUND_SLACK 0.10

void planner_sluice_lp_round(const planner_sluice_ctx_t *ctx, const planner_sluice_lp_t *lp,
                             int which, int32_t *deg, double *off)
{
	for (int32_t i = 0; i < ctx->n; i++) {
		deg[i] = 1;
		off[i] = 0;
	}
	/* The LP may mix a slow degree with a fast one to meet its T on
	 * average; rounding to the slow one alone makes that sequence's ring
	 * the step (on a usr-include batch, 96,444 tokens on 8 ranks at 50%
	 * offload: 10.4 s against an LP optimum of 8.6 s). Only columns that
	 * finish within SLUICE_ROUND_SLACK of the LP's T compete. */
	double tlim = (which ? lp->bound_ms - ctx->cost->prof.grad_sync_ms : lp->t_star) *
	              (1 + SLUICE_ROUND_SLACK);
	for (int32_t j = 0; j < lp->nlong; j++) {
		const planner_sluice_cand_t *best = NULL;
		for (int64_t k = lp->cand_off[j]; k < lp->cand_off[j + 1]; k++) {
			const planner_sluice_cand_t *cd = &lp->cand[k];
			if (which ? !cd->bound : !cd->dec)
				continue;
			if (ctx->beta + cd->t > tlim)
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
