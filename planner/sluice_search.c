/* sluice planner: the final local search of the `sluice` policy. Starting
 * from the two-stage assignment it repeatedly takes the rank that finishes
 * last and tries, with exact incremental costs under the reference model
 * (a micro-batch costs beta + its sequences + the offload of its excess
 * over cap), to
 *  - move one of its sequences into another micro-batch (its own rank's or
 *    another's) or into a new micro-batch of another rank,
 *  - swap one of its sequences with a shorter one elsewhere,
 *  - hand a whole micro-batch to another rank,
 *  - dissolve one of its micro-batches, spreading its sequences over other
 *    ranks' micro-batches (saves a fixed cost),
 *  - move one of its sequences into a wide group (as a rider),
 *  - take a rider out of a wide group it belongs to,
 * keeping the move that lowers the larger of the finish times it touches
 * most. Targets are the ranks that finish first (all ranks on small
 * clusters). It stops when the last rank cannot be helped or the work limit
 * is hit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_internal.h"

#define EPS 1e-6
/* Margin (ms) by which a lower bound on a move's score, summed in another
 * order than the score itself, must miss the best move before the move is
 * skipped unscored: far above the rounding of either sum (ulps of
 * thousands of ms), so the skip is exact. */
#define FLOOR_SLACK 1e-6
/* Ranks looked at as targets on large clusters (all when N <= this). */
#define SEARCH_TARGETS 48
/* Micro-batches with room looked at per sequence when shedding work. */
#define ROOM_SCAN 512

static double bin_ms_of(const planner_sluice_ctx_t *ctx, const planner_sluice_bin_t *b)
{
	return planner_sluice_bin_ms(ctx, b->tokens, b->sum_t, b->count);
}

/* Time of bin b after adding (dl tokens, dt ms, dc sequences, doc
 * offloadable tokens); INFINITY when the excess cannot be offloaded. */
static double bin_ms_delta(const planner_sluice_ctx_t *ctx, const planner_sluice_bin_t *b,
                           int64_t dl, double dt, int32_t dc, int64_t doc)
{
	int64_t tok = b->tokens + dl;
	int32_t cnt = b->count + dc;
	if (cnt == 0)
		return 0.0;
	if ((double)tok - ctx->cap > (double)(b->offcap + doc))
		return INFINITY;
	return planner_sluice_bin_ms(ctx, tok, b->sum_t + dt, cnt);
}

/* fmax without the libm call (it is not inlined): the same value for every
 * pair, NaN included (the other argument), so scores do not change. */
static inline double max_ms(double a, double b)
{
	if (a != a)
		return b;
	if (b != b)
		return a;
	return a > b ? a : b;
}

enum { MV_NONE, MV_BIN, MV_NEWBIN, MV_SWAP, MV_GIVE, MV_DISSOLVE, MV_WIDE };

typedef struct {
	int kind;
	int32_t i, j, b, r;
	double score; /* the largest finish among the ranks the move touches */
} move_t;

static void consider(move_t *best, int kind, int32_t i, int32_t j, int32_t b, int32_t r,
                     double score)
{
	if (score < best->score - EPS) {
		best->kind = kind;
		best->i = i;
		best->j = j;
		best->b = b;
		best->r = r;
		best->score = score;
	}
}

/* Moves a single-rank bin to rank r (appending it to r's list). */
static void move_bin(planner_sluice_state_t *st, int32_t b, int32_t r)
{
	int32_t from = st->bins[b].rank;
	int32_t *pp = &st->rank_head[from];
	while (*pp != b)
		pp = &st->bins[*pp].rnext;
	*pp = st->bins[b].rnext;
	st->bins[b].rnext = -1;
	st->bins[b].rank = r;
	pp = &st->rank_head[r];
	while (*pp >= 0)
		pp = &st->bins[*pp].rnext;
	*pp = b;
}

static double rank_fin(const planner_sluice_state_t *st, int32_t r)
{
	double f = st->ready[r];
	for (int32_t b = st->rank_head[r]; b >= 0; b = st->bins[b].rnext)
		f += bin_ms_of(st->ctx, &st->bins[b]);
	return f;
}

/* Scratch of one search. */
typedef struct {
	planner_key_t *rf; /* [N] (finish time, rank) */
	int32_t *tgt;    /* [N] target ranks */
	char *is_tgt;    /* [N] */
	int32_t *tbins;  /* bins of the targets */
	int32_t ntb, tbins_cap;
	/* dissolve: tentative additions per bin */
	int64_t *add_tok, *add_oc;
	double *add_t;
	int32_t *add_cnt;
	double *dfin;    /* [N] tentative finish change */
	int32_t *plan_to; /* [n] bin chosen for each sequence of the dissolved bin */
	double *wmax;    /* [nwide] latest finish among a wide group's ranks but rs */
	char *has_rs;    /* [nwide] whether rs is one of its ranks */
	/* One descent step's view of tbins[q], read by every sequence of rs
	 * (nothing changes until a move is applied): the bin's time, and the
	 * sequences of other ranks' bins copied out of their lists, in list
	 * order, at seq_of[seq_off[q] .. seq_off[q + 1]), with their least and
	 * largest t1 (a sequence of rs swaps only with a shorter one, and only
	 * within a window of times, below). */
	double *tb_ms, *tb_min_t1, *tb_max_t1;
	int32_t *seq_off;
	int32_t *seq_of;  /* [n] */
	double *seq_t1;   /* [n] */
	int64_t *seq_len; /* [n] */
	int32_t *ord;    /* [N] ranks by (finish, rank), kept across descent steps */
} scratch_t;

/* Tries to empty bin a of rank rs into the target ranks' micro-batches
 * (longest sequence first, each where the rank's finish grows least).
 * Returns the resulting largest finish among touched ranks and rs, or
 * INFINITY when some sequence finds no place below M. */
static double try_dissolve(planner_sluice_state_t *st, scratch_t *sc, int32_t a, int32_t rs,
                           double M, int32_t *seqs, int32_t m)
{
	planner_sluice_ctx_t *ctx = st->ctx;
	double worst = M - bin_ms_of(ctx, &st->bins[a]); /* rs without the bin */
	for (int32_t q = 0; q < sc->ntb; q++) {
		int32_t b = sc->tbins[q];
		sc->add_tok[b] = 0;
		sc->add_oc[b] = 0;
		sc->add_t[b] = 0;
		sc->add_cnt[b] = 0;
		sc->dfin[st->bins[b].rank] = 0;
	}
	for (int32_t z = 0; z < m; z++) {
		int32_t i = seqs[z];
		int64_t s = ctx->seqs[i].length;
		double t = ctx->t1[i], bestf = INFINITY;
		int32_t bestb = -1;
		for (int32_t q = 0; q < sc->ntb; q++) {
			int32_t b = sc->tbins[q];
			const planner_sluice_bin_t *bb = &st->bins[b];
			if (b == a || bb->rank == rs)
				continue;
			double cur = bin_ms_delta(ctx, bb, sc->add_tok[b], sc->add_t[b], sc->add_cnt[b],
			                          sc->add_oc[b]);
			double nxt = bin_ms_delta(ctx, bb, sc->add_tok[b] + s, sc->add_t[b] + t,
			                          sc->add_cnt[b] + 1, sc->add_oc[b] + ctx->offcap[i]);
			if (isinf(nxt))
				continue;
			double f = st->fin[bb->rank] + sc->dfin[bb->rank] + nxt - cur;
			if (f < bestf) {
				bestf = f;
				bestb = b;
			}
		}
		ctx->work += sc->ntb;
		if (bestb < 0 || bestf >= M - EPS)
			return INFINITY;
		const planner_sluice_bin_t *bb = &st->bins[bestb];
		double cur = bin_ms_delta(ctx, bb, sc->add_tok[bestb], sc->add_t[bestb],
		                          sc->add_cnt[bestb], sc->add_oc[bestb]);
		sc->add_tok[bestb] += s;
		sc->add_t[bestb] += t;
		sc->add_cnt[bestb]++;
		sc->add_oc[bestb] += ctx->offcap[i];
		double nxt = bin_ms_delta(ctx, bb, sc->add_tok[bestb], sc->add_t[bestb],
		                          sc->add_cnt[bestb], sc->add_oc[bestb]);
		sc->dfin[bb->rank] += nxt - cur;
		sc->plan_to[z] = bestb;
		if (bestf > worst)
			worst = bestf;
	}
	return worst;
}

/* Takes a rider of a wide group that rank rs belongs to out into the best
 * target micro-batch (exact: applies, retimes, keeps it if the step drops,
 * else undoes). Returns 1 when a rider moved. */
static int try_riders(planner_sluice_state_t *st, scratch_t *sc, int32_t rs, double M)
{
	planner_sluice_ctx_t *ctx = st->ctx;
	for (int32_t w = 0; w < st->nwide; w++) {
		planner_sluice_wide_t *wd = &st->wide[w];
		if (st->whead[w] < 0)
			continue;
		const int32_t *rk = st->wide_ranks + wd->rank_off;
		int in = 0;
		for (int32_t k = 0; k < wd->d && !in; k++)
			in = rk[k] == rs;
		if (!in)
			continue;
		for (int32_t i = st->whead[w]; i >= 0; i = st->next[i]) {
			int64_t s = ctx->seqs[i].length;
			/* the target: the micro-batch (or a new one) where the
			 * rank's finish grows least */
			double bestf = INFINITY;
			int32_t bestb = -1, bestr = -1;
			for (int32_t q = 0; q < sc->ntb; q++) {
				int32_t b = sc->tbins[q];
				const planner_sluice_bin_t *bb = &st->bins[b];
				double nb = bin_ms_delta(ctx, bb, s, ctx->t1[i], 1, ctx->offcap[i]);
				if (isinf(nb))
					continue;
				double f = st->fin[bb->rank] + nb - bin_ms_of(ctx, bb);
				if (f < bestf) {
					bestf = f;
					bestb = b;
					bestr = bb->rank;
				}
			}
			for (int32_t q = 0; q < ctx->N && sc->tgt[q] >= 0; q++) {
				int32_t r = sc->tgt[q];
				double f = st->fin[r] + planner_sluice_bin_ms(ctx, s, ctx->t1[i], 1);
				if ((double)s - ctx->cap <= (double)ctx->offcap[i] && f < bestf) {
					bestf = f;
					bestb = -1;
					bestr = r;
				}
			}
			ctx->work += sc->ntb + 8;
			if (bestr < 0 || bestf >= M - EPS)
				continue;
			/* apply */
			planner_sluice_wide_remove(st, i);
			int32_t b = bestb >= 0 ? bestb : planner_sluice_bin_new(st, bestr);
			if (b < 0)
				return 0;
			planner_sluice_bin_add(st, b, i);
			planner_sluice_retime(st);
			ctx->work += ctx->N + st->nbins;
			return 1;
		}
	}
	return 0;
}

static int cmp_rank_fin(const void *a, const void *b, void *arg)
{
	const double *fin = arg;
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	if (fin[x] != fin[y])
		return fin[x] < fin[y] ? -1 : 1;
	return (x > y) - (x < y);
}

/* Re-sorts the ranks ord[0 .. N) by (fin, rank). A descent step changes a
 * few ranks' finish, so insertion sort restores the order in about N
 * steps; when the order was far off (the first step, a retime), it stops
 * after a few N moves and sorts the rest the usual way: the same order
 * either way (finishes are finite: no move is taken that makes a group's
 * time infinite, so the order is total). */
static void sort_ranks(int32_t *ord, int32_t N, const double *fin)
{
	int64_t moves = 0, budget = 4 * (int64_t)N + 64;
	for (int32_t q = 1; q < N; q++) {
		int32_t x = ord[q], z = q;
		double fx = fin[x];
		for (; z > 0; z--) {
			double fz = fin[ord[z - 1]];
			if (fz < fx || (fz == fx && ord[z - 1] < x))
				break;
			ord[z] = ord[z - 1];
		}
		ord[z] = x;
		moves += q - z;
		if (moves > budget) {
			qsort_r(ord, (size_t)N, sizeof(int32_t), cmp_rank_fin, (void *)fin);
			return;
		}
	}
}

/* Reallocates *p to bytes; 0 (and *p untouched) when memory runs out. */
static int resize(void **p, size_t bytes)
{
	void *q = realloc(*p, bytes);
	if (q != NULL)
		*p = q;
	return q != NULL;
}

/* Grows the per-bin scratch arrays to hold nb bins. */
static sl_err ensure_scratch(scratch_t *sc, int32_t nb)
{
	if (nb <= sc->tbins_cap)
		return SL_OK;
	size_t nc = (size_t)nb * 2 + 16;
	if (!resize((void **)&sc->tbins, sizeof(int32_t) * nc) ||
	    !resize((void **)&sc->add_tok, sizeof(int64_t) * nc) ||
	    !resize((void **)&sc->add_oc, sizeof(int64_t) * nc) ||
	    !resize((void **)&sc->add_t, sizeof(double) * nc) ||
	    !resize((void **)&sc->add_cnt, sizeof(int32_t) * nc) ||
	    !resize((void **)&sc->tb_ms, sizeof(double) * nc) ||
	    !resize((void **)&sc->tb_min_t1, sizeof(double) * nc) ||
	    !resize((void **)&sc->tb_max_t1, sizeof(double) * nc) ||
	    !resize((void **)&sc->seq_off, sizeof(int32_t) * (nc + 1)))
		return sl_seterr(SL_ENOMEM, "sluice: out of memory in the local search");
	sc->tbins_cap = (int32_t)nc;
	return SL_OK;
}

/* Steepest descent on the last rank's finish (see the top of the file);
 * returns when the last rank cannot be helped or the budget is spent. */
static sl_err descend(planner_sluice_state_t *st, scratch_t *sc, int32_t *seqs, int *moved)
{
	planner_sluice_ctx_t *ctx = st->ctx;
	int32_t N = ctx->N;
	int32_t ntgt_max = N <= SEARCH_TARGETS ? N : SEARCH_TARGETS;
	sl_err rc = SL_OK;
	for (;; (*moved)++) {
		if (!planner_sluice_budget_ok(ctx))
			break;
		/* the last rank (ties: the lowest) and the targets: the ntgt_max
		 * ranks that finish first (ties: the lower rank), earliest first,
		 * read off sc->ord, kept sorted by (finish, rank) */
		int32_t rs = 0;
		for (int32_t r = 1; r < N; r++)
			if (st->fin[r] > st->fin[rs])
				rs = r;
		double M = st->fin[rs];
		sort_ranks(sc->ord, N, st->fin);
		int32_t nt = 0;
		for (int32_t q = 0; q < N && nt < ntgt_max; q++)
			if (sc->ord[q] != rs)
				sc->tgt[nt++] = sc->ord[q];
		ctx->work += N;
		sc->tgt[nt] = -1;
		for (int32_t q = 0; q < nt; q++)
			sc->is_tgt[sc->tgt[q]] = 1;
		/* bins of the targets and of rs */
		SL_CHECK(ensure_scratch(sc, st->nbins + 1));
		sc->ntb = 0;
		for (int32_t q = 0; q <= nt; q++) {
			int32_t r = q < nt ? sc->tgt[q] : rs;
			for (int32_t b = st->rank_head[r]; b >= 0; b = st->bins[b].rnext)
				if (st->bins[b].count > 0)
					sc->tbins[sc->ntb++] = b;
		}
		int32_t nseq = 0;
		for (int32_t q = 0; q < sc->ntb; q++) {
			const planner_sluice_bin_t *bb = &st->bins[sc->tbins[q]];
			double lo = INFINITY, hi = -INFINITY;
			sc->tb_ms[q] = bin_ms_of(ctx, bb);
			sc->seq_off[q] = nseq;
			for (int32_t j = bb->rank != rs ? bb->head : -1; j >= 0; j = st->next[j]) {
				sc->seq_of[nseq] = j;
				sc->seq_t1[nseq] = ctx->t1[j];
				sc->seq_len[nseq++] = ctx->seqs[j].length;
				if (ctx->t1[j] < lo)
					lo = ctx->t1[j];
				if (ctx->t1[j] > hi)
					hi = ctx->t1[j];
			}
			sc->tb_min_t1[q] = lo;
			sc->tb_max_t1[q] = hi;
		}
		sc->seq_off[sc->ntb] = nseq;
		move_t best = {MV_NONE, -1, -1, -1, -1, M};
		for (int32_t w = 0; w < st->nwide; w++) {
			const planner_sluice_wide_t *wd = &st->wide[w];
			sc->wmax[w] = 0;
			sc->has_rs[w] = 0;
			if (!wd->open || !wd->final)
				continue;
			for (int32_t k = 0; k < wd->d; k++) {
				int32_t r = st->wide_ranks[wd->rank_off + k];
				if (r == rs)
					sc->has_rs[w] = 1;
				else if (st->fin[r] > sc->wmax[w])
					sc->wmax[w] = st->fin[r];
			}
			ctx->work += wd->d;
		}

		for (int32_t a = st->rank_head[rs]; a >= 0; a = st->bins[a].rnext) {
			const planner_sluice_bin_t *ba = &st->bins[a];
			if (ba->count == 0)
				continue;
			double ta = bin_ms_of(ctx, ba);
			/* whole micro-batch to another rank: targets come earliest
			 * finish first, so the scores never drop along them, and
			 * once one does not win no later one can (only the first
			 * can win at all): exact */
			for (int32_t q = 0; q < nt; q++) {
				int32_t r = sc->tgt[q];
				double score = max_ms(M - ta, st->fin[r] + ta);
				if (!(score < best.score - EPS))
					break;
				consider(&best, MV_GIVE, -1, -1, a, r, score);
			}
			ctx->work += nt;
			for (int32_t i = ba->head; i >= 0; i = st->next[i]) {
				int64_t s = ctx->seqs[i].length;
				double t = ctx->t1[i];
				double ta2 = bin_ms_delta(ctx, ba, -s, -t, -1, -ctx->offcap[i]);
				double fa = M - ta + ta2; /* rs's finish without i */
				if (fa >= M - EPS)
					continue;
				/* rs's finish after swapping i for j, less its offload:
				 * a floor under a swap's score (below) */
				const double swap_a = (M - ta) + ctx->beta + ba->sum_t;
				/* into an existing micro-batch */
				for (int32_t q = 0; q < sc->ntb; q++) {
					int32_t b = sc->tbins[q];
					const planner_sluice_bin_t *bb = &st->bins[b];
					if (b == a)
						continue;
					/* on another rank the score is at least fin + d, d >= 0
					 * (adding never shortens a bin): skip what cannot win */
					if (bb->rank != rs && st->fin[bb->rank] >= best.score - EPS)
						continue;
					/* ... and d >= t (up to rounding): so is the score
					 * at least its rank's finish (rs's without i) + t */
					if ((bb->rank == rs ? fa : st->fin[bb->rank]) + t >=
					    best.score - EPS + FLOOR_SLACK)
						continue;
					double tb2 = bin_ms_delta(ctx, bb, s, t, 1, ctx->offcap[i]);
					if (isinf(tb2))
						continue;
					double d = tb2 - sc->tb_ms[q];
					if (bb->rank == rs)
						consider(&best, MV_BIN, i, -1, b, rs, fa + d);
					else
						consider(&best, MV_BIN, i, -1, b, bb->rank,
						         max_ms(fa, st->fin[bb->rank] + d));
				}
				ctx->work += sc->ntb;
				/* into a new micro-batch of another rank */
				if ((double)s - ctx->cap <= (double)ctx->offcap[i]) {
					double tn = planner_sluice_bin_ms(ctx, s, t, 1);
					/* as for whole micro-batches: only the first
					 * target can win */
					for (int32_t q = 0; q < nt; q++) {
						int32_t r = sc->tgt[q];
						double score = max_ms(fa, st->fin[r] + tn);
						if (!(score < best.score - EPS))
							break;
						consider(&best, MV_NEWBIN, i, -1, -1, r, score);
					}
					ctx->work += nt;
				}
				/* into a final wide group as a rider */
				for (int32_t w = 0; w < st->nwide; w++) {
					planner_sluice_wide_t *wd = &st->wide[w];
					if (!wd->open || !wd->final || sc->wmax[w] >= M - EPS)
						continue;
					double tr, res, oc;
					planner_sluice_rider(ctx, wd, i, &tr, &res, &oc);
					double before = planner_sluice_wide_ms(ctx, wd);
					wd->sum_t += tr;
					wd->res += res;
					wd->offcap += oc;
					double dl = planner_sluice_wide_ms(ctx, wd) - before;
					wd->sum_t -= tr;
					wd->res -= res;
					wd->offcap -= oc;
					double sc2 = max_ms(sc->wmax[w] + dl, sc->has_rs[w] ? fa + dl : fa);
					consider(&best, MV_WIDE, i, -1, w, -1, sc2);
				}
				ctx->work += 4 * st->nwide;
				/* swap with a shorter sequence of a target */
				for (int32_t q = 0; q < sc->ntb; q++) {
					int32_t b = sc->tbins[q];
					const planner_sluice_bin_t *bb = &st->bins[b];
					if (bb->rank == rs)
						continue;
					double tb = sc->tb_ms[q];
					/* A swap gives this bin a longer sequence (t1 grows with
					 * the length, so t1[j] < t means a shorter j: dl > 0,
					 * dt > 0), which cannot shorten it (bin_ms is monotone,
					 * and so is its floating point): every score here is at
					 * least (fin - tb) + tb. Once that cannot beat the best
					 * move, the bin is skipped. Exact: the same moves win. */
					/* ... and a bin with no sequence shorter than i
					 * has no swap at all. */
					const double floor_b = (st->fin[bb->rank] - tb) + tb;
					const double swap_b = (st->fin[bb->rank] - tb) + ctx->beta + bb->sum_t;
					/* Below, a swap with j needs dt = t - t1[j] under
					 * thr - swap_b and over swap_a - thr: a bin whose
					 * times all miss that window (by more than
					 * rounding) has no swap either. */
					int32_t k0 = sc->seq_off[q], k1 = sc->seq_off[q + 1];
					double thr0 = best.score - EPS + FLOOR_SLACK;
					if (!(floor_b < best.score - EPS) || !(sc->tb_min_t1[q] < t) ||
					    !(sc->tb_max_t1[q] > t - (thr0 - swap_b) - FLOOR_SLACK) ||
					    !(sc->tb_min_t1[q] < t - (swap_a - thr0) + FLOOR_SLACK))
						k1 = k0;
					for (int32_t k = k0; k < k1; k++) {
						if (sc->seq_t1[k] >= t)
							continue;
						if (sc->seq_len[k] <= s && floor_b >= best.score - EPS)
							continue;
						/* Each side of a swap finishes at least at its
						 * floor, less or plus dt, the offload being at
						 * least 0: j too short loads b past the best
						 * move, j too long frees too little of a */
						double dt = t - sc->seq_t1[k];
						double thr = best.score - EPS + FLOOR_SLACK;
						if (swap_b + dt >= thr || swap_a - dt >= thr)
							continue;
						int32_t j = sc->seq_of[k];
						int64_t dl = s - sc->seq_len[k];
						int64_t doc = ctx->offcap[i] - ctx->offcap[j];
						double na = bin_ms_delta(ctx, ba, -dl, -dt, 0, -doc);
						double nb = bin_ms_delta(ctx, bb, dl, dt, 0, doc);
						if (isinf(na) || isinf(nb))
							continue;
						consider(&best, MV_SWAP, i, j, b, bb->rank,
						         max_ms(M - ta + na, st->fin[bb->rank] - tb + nb));
					}
					ctx->work += bb->count;
				}
			}
			/* dissolve the whole micro-batch */
			if (ba->count > 1 && best.kind == MV_NONE) {
				int32_t m = 0;
				for (int32_t i = ba->head; i >= 0; i = st->next[i])
					seqs[m++] = i;
				planner_sluice_sort_len(ctx, seqs, m);
				double sc_ = try_dissolve(st, sc, a, rs, M, seqs, m);
				if (sc_ < best.score - EPS) {
					consider(&best, MV_DISSOLVE, -1, -1, a, -1, sc_);
					/* apply right away: plan_to is valid for this bin only */
					for (int32_t z = 0; z < m; z++) {
						planner_sluice_bin_remove(st, seqs[z]);
						planner_sluice_bin_add(st, sc->plan_to[z], seqs[z]);
					}
					for (int32_t z = 0; z < m; z++)
						st->fin[st->bins[sc->plan_to[z]].rank] =
						        rank_fin(st, st->bins[sc->plan_to[z]].rank);
					st->fin[rs] = rank_fin(st, rs);
					break;
				}
			}
		}
		for (int32_t q = 0; q < nt; q++)
			sc->is_tgt[sc->tgt[q]] = 0;
		if (best.kind == MV_DISSOLVE)
			continue;
		if (best.kind == MV_NONE) {
			/* last resort: a rider of rs's wide group */
			if (try_riders(st, sc, rs, M))
				continue;
			break;
		}
		switch (best.kind) {
		case MV_BIN:
			planner_sluice_bin_remove(st, best.i);
			planner_sluice_bin_add(st, best.b, best.i);
			break;
		case MV_NEWBIN: {
			int32_t b = planner_sluice_bin_new(st, best.r);
			if (b < 0) {
				return sl_seterr(SL_ENOMEM, "sluice: out of memory in the local search");
			}
			planner_sluice_bin_remove(st, best.i);
			planner_sluice_bin_add(st, b, best.i);
			break;
		}
		case MV_SWAP: {
			int32_t a = st->where[best.i], b = st->where[best.j];
			planner_sluice_bin_remove(st, best.i);
			planner_sluice_bin_remove(st, best.j);
			planner_sluice_bin_add(st, b, best.i);
			planner_sluice_bin_add(st, a, best.j);
			break;
		}
		case MV_GIVE:
			move_bin(st, best.b, best.r);
			break;
		case MV_WIDE:
			planner_sluice_bin_remove(st, best.i);
			planner_sluice_wide_add(st, best.b, best.i);
			planner_sluice_retime(st);
			ctx->work += N + st->nbins;
			continue;
		}
		/* Only two ranks changed; recompute their finish exactly. */
		st->fin[rs] = rank_fin(st, rs);
		if (best.r >= 0)
			st->fin[best.r] = rank_fin(st, best.r);
	}
	return rc;
}

/* The first micro-batch, among those of ranks other than `not` listed in
 * room[0 .. nroom) (ranks in order of finish), that holds s more tokens
 * without excess and whose rank stays below M - EPS after adding t ms (plus
 * what earlier tentative additions put there); -1 when none. */
static int32_t room_for(const planner_sluice_state_t *st, const scratch_t *sc,
                        const int32_t *room, int32_t nroom, int32_t not_rank, int64_t s,
                        double t, double M, int tentative)
{
	const planner_sluice_ctx_t *ctx = st->ctx;
	/* the ranks that finish first are the likely hosts: look at a bounded
	 * prefix so one call stays O(1) on large clusters */
	if (nroom > ROOM_SCAN)
		nroom = ROOM_SCAN;
	for (int32_t q = 0; q < nroom; q++) {
		int32_t b = room[q];
		const planner_sluice_bin_t *bb = &st->bins[b];
		if (bb->rank == not_rank || bb->count == 0)
			continue;
		int64_t tok = bb->tokens + (tentative ? sc->add_tok[b] : 0);
		double f = st->fin[bb->rank] + (tentative ? sc->dfin[bb->rank] : 0);
		if ((double)(tok + s) <= ctx->cap && f + t < M - EPS)
			return b;
	}
	return -1;
}

/* Trades work for room below the step: sequences whose tokens are
 * offloaded (a micro-batch or a wide group over cap) move to micro-batches
 * of other ranks that still have room, and nearly empty micro-batches are
 * spread the same way (saving their fixed cost), as long as no rank reaches
 * the current step. The step never grows and the total rank time drops,
 * which the next descent can turn into a lower step. Sets *gained when
 * anything moved. */
static sl_err shed_work(planner_sluice_state_t *st, scratch_t *sc, int32_t *seqs, int *gained)
{
	planner_sluice_ctx_t *ctx = st->ctx;
	int32_t N = ctx->N;
	double M = 0;
	SL_CHECK(ensure_scratch(sc, st->nbins + 1));
	for (int32_t r = 0; r < N; r++) {
		sc->rf[r].key = st->fin[r];
		sc->rf[r].id = r;
		if (st->fin[r] > M)
			M = st->fin[r];
	}
	qsort(sc->rf, (size_t)N, sizeof(planner_key_t), planner_key_asc);
	ctx->work += N;
	/* micro-batches with room, ranks in order of finish */
	int32_t nroom = 0;
	for (int32_t q = 0; q < N; q++)
		for (int32_t b = st->rank_head[sc->rf[q].id]; b >= 0; b = st->bins[b].rnext)
			if (st->bins[b].count > 0 &&
			    (double)st->bins[b].tokens < ctx->cap)
				sc->tbins[nroom++] = b;
	int32_t *room = sc->tbins;
	int retime = 0;

	/* (a) single-rank micro-batches over cap */
	for (int32_t a = 0; a < st->nbins && planner_sluice_budget_ok(ctx); a++) {
		planner_sluice_bin_t *ba = &st->bins[a];
		if (ba->count == 0 || (double)ba->tokens <= ctx->cap)
			continue;
		for (int32_t i = ba->head, nx; i >= 0 && (double)ba->tokens > ctx->cap; i = nx) {
			nx = st->next[i];
			int32_t b = room_for(st, sc, room, nroom, ba->rank, ctx->seqs[i].length,
			                     ctx->t1[i], M, 0);
			ctx->work += nroom < ROOM_SCAN ? nroom : ROOM_SCAN;
			if (b < 0)
				continue;
			int32_t ra = ba->rank, rb = st->bins[b].rank;
			planner_sluice_bin_remove(st, i);
			planner_sluice_bin_add(st, b, i);
			st->fin[ra] = rank_fin(st, ra);
			st->fin[rb] = rank_fin(st, rb);
			*gained = 1;
		}
	}
	/* (b) riders of final wide groups over cap */
	for (int32_t w = 0; w < st->nwide && planner_sluice_budget_ok(ctx); w++) {
		planner_sluice_wide_t *wd = &st->wide[w];
		if (!wd->final || wd->res <= ctx->cap + 1e-9)
			continue;
		const int32_t *rk = st->wide_ranks + wd->rank_off;
		for (int32_t i = st->whead[w], nx; i >= 0 && wd->res > ctx->cap + 1e-9; i = nx) {
			nx = st->next[i];
			int32_t b = room_for(st, sc, room, nroom, -1, ctx->seqs[i].length, ctx->t1[i],
			                     M, 0);
			ctx->work += nroom < ROOM_SCAN ? nroom : ROOM_SCAN;
			if (b < 0)
				continue;
			int in = 0;
			for (int32_t k = 0; k < wd->d && !in; k++)
				in = rk[k] == st->bins[b].rank;
			if (in)
				continue;
			double before = planner_sluice_wide_ms(ctx, wd);
			planner_sluice_wide_remove(st, i);
			double dl = planner_sluice_wide_ms(ctx, wd) - before; /* < 0 */
			for (int32_t k = 0; k < wd->d; k++)
				st->fin[rk[k]] += dl;
			planner_sluice_bin_add(st, b, i);
			st->fin[st->bins[b].rank] = rank_fin(st, st->bins[b].rank);
			retime = 1;
			*gained = 1;
		}
	}
	/* (c) nearly empty micro-batches: spread them if every sequence finds
	 * room (tentatively first, then for real) */
	for (int32_t a = 0; a < st->nbins && planner_sluice_budget_ok(ctx); a++) {
		planner_sluice_bin_t *ba = &st->bins[a];
		if (ba->count == 0 || (double)ba->tokens > ctx->cap / 4)
			continue;
		int32_t m = 0;
		for (int32_t i = ba->head; i >= 0; i = st->next[i])
			seqs[m++] = i;
		for (int32_t q = 0; q < nroom; q++) {
			sc->add_tok[room[q]] = 0;
			sc->dfin[st->bins[room[q]].rank] = 0;
		}
		int ok = 1;
		for (int32_t z = 0; z < m && ok; z++) {
			int32_t i = seqs[z];
			int32_t b = room_for(st, sc, room, nroom, ba->rank, ctx->seqs[i].length,
			                     ctx->t1[i], M, 1);
			ctx->work += nroom < ROOM_SCAN ? nroom : ROOM_SCAN;
			if (b < 0 || b == a) {
				ok = 0;
				break;
			}
			sc->plan_to[z] = b;
			sc->add_tok[b] += ctx->seqs[i].length;
			sc->dfin[st->bins[b].rank] += ctx->t1[i];
		}
		if (!ok)
			continue;
		int32_t ra = ba->rank;
		for (int32_t z = 0; z < m; z++) {
			planner_sluice_bin_remove(st, seqs[z]);
			planner_sluice_bin_add(st, sc->plan_to[z], seqs[z]);
			int32_t rb = st->bins[sc->plan_to[z]].rank;
			st->fin[rb] = rank_fin(st, rb);
		}
		st->fin[ra] = rank_fin(st, ra);
		*gained = 1;
	}
	if (retime) {
		planner_sluice_retime(st);
		ctx->work += N + st->nbins;
	}
	return SL_OK;
}

sl_err planner_sluice_search(planner_sluice_state_t *st, const planner_sluice_knobs_t *knobs)
{
	planner_sluice_ctx_t *ctx = st->ctx;
	int32_t N = ctx->N, n = ctx->n;
	sl_err rc = SL_OK;
	scratch_t sc;
	int32_t *seqs = NULL;
	(void)knobs;
	memset(&sc, 0, sizeof(sc));
	size_t nb0 = (size_t)st->bins_cap + (size_t)N + 16;
	sc.rf = malloc(sizeof(planner_key_t) * (size_t)N);
	sc.ord = malloc(sizeof(int32_t) * (size_t)N);
	sc.tgt = malloc(sizeof(int32_t) * ((size_t)N + 1));
	sc.is_tgt = calloc((size_t)N, 1);
	sc.tbins_cap = (int32_t)nb0;
	sc.tbins = malloc(sizeof(int32_t) * nb0);
	sc.add_tok = malloc(sizeof(int64_t) * nb0);
	sc.add_oc = malloc(sizeof(int64_t) * nb0);
	sc.add_t = malloc(sizeof(double) * nb0);
	sc.add_cnt = malloc(sizeof(int32_t) * nb0);
	sc.dfin = calloc((size_t)N, sizeof(double));
	sc.plan_to = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
	sc.wmax = malloc(sizeof(double) * (size_t)(st->nwide + 1));
	sc.has_rs = malloc((size_t)(st->nwide + 1));
	seqs = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
	sc.tb_ms = malloc(sizeof(double) * nb0);
	sc.tb_min_t1 = malloc(sizeof(double) * nb0);
	sc.tb_max_t1 = malloc(sizeof(double) * nb0);
	sc.seq_off = malloc(sizeof(int32_t) * (nb0 + 1));
	sc.seq_of = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
	sc.seq_t1 = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
	sc.seq_len = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
	if (!sc.tb_ms || !sc.tb_min_t1 || !sc.tb_max_t1 || !sc.seq_off || !sc.seq_of || !sc.seq_t1 || !sc.seq_len ||
	    !sc.rf || !sc.tgt || !sc.is_tgt || !sc.tbins || !sc.add_tok || !sc.add_oc ||
	    !sc.add_t || !sc.add_cnt || !sc.dfin || !sc.plan_to || !sc.wmax || !sc.has_rs ||
	    !seqs || !sc.ord) {
		rc = sl_seterr(SL_ENOMEM, "sluice: out of memory in the local search");
		goto out;
	}
	for (int32_t r = 0; r < N; r++)
		sc.ord[r] = r;
	planner_sluice_retime(st);
	/* Descend on the last finish; then trade work (offloaded excess, nearly
	 * empty micro-batches) for room that ranks below the step still have,
	 * which frees time the next descent can use; until neither helps. */
	for (int round = 0; round < 8; round++) {
		int moved = 0;
		SL_CHECK_GOTO(descend(st, &sc, seqs, &moved), rc, out);
		if (!planner_sluice_budget_ok(ctx))
			break;
		int gained = 0;
		SL_CHECK_GOTO(shed_work(st, &sc, seqs, &gained), rc, out);
		if (!gained)
			break;
	}
out:
	free(sc.rf);
	free(sc.ord);
	free(sc.tgt);
	free(sc.is_tgt);
	free(sc.tbins);
	free(sc.add_tok);
	free(sc.add_oc);
	free(sc.add_t);
	free(sc.add_cnt);
	free(sc.dfin);
	free(sc.plan_to);
	free(sc.wmax);
	free(sc.has_rs);
	free(sc.tb_ms);
	free(sc.tb_min_t1);
	free(sc.tb_max_t1);
	free(sc.seq_off);
	free(sc.seq_of);
	free(sc.seq_t1);
	free(sc.seq_len);
	free(seqs);
	return rc;
}
