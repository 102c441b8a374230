/* sluice planner: the final local search of the `sluice` policy. Starting
 * from the two-stage assignment it repeatedly takes the rank that finishes
 * last and tries, with exact incremental costs under the reference model
 * (a micro-batch costs beta + its sequences + the offload of its excess
 * over cap), to
 *  - move one of its sequences into another micro-batch (any rank, its own
 *    included) or into a new micro-batch of another rank,
 *  - swap one of its sequences with a shorter one elsewhere,
 *  - hand a whole micro-batch to another rank,
 * keeping the move that lowers the larger of the two finish times most.
 * It stops when the last rank cannot be helped or the work limit is hit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_internal.h"

#define EPS 1e-6

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

typedef struct {
	int kind; /* 1 move to bin, 2 move to new bin, 3 swap, 4 bin to rank */
	int32_t i, j, b, r;
	double score; /* the larger finish after the move */
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

sl_err planner_sluice_search(planner_sluice_state_t *st, const planner_sluice_knobs_t *knobs)
{
	planner_sluice_ctx_t *ctx = st->ctx;
	int32_t N = ctx->N, n = ctx->n;
	(void)knobs;
	planner_sluice_retime(st);
	for (;;) {
		if (!planner_sluice_budget_ok(ctx))
			break;
		int32_t rs = 0;
		for (int32_t r = 1; r < N; r++)
			if (st->fin[r] > st->fin[rs])
				rs = r;
		double M = st->fin[rs];
		ctx->work += N;
		move_t best = {0, -1, -1, -1, -1, M};

		for (int32_t a = st->rank_head[rs]; a >= 0; a = st->bins[a].rnext) {
			const planner_sluice_bin_t *ba = &st->bins[a];
			if (ba->pre || ba->count == 0)
				continue;
			double ta = bin_ms_of(ctx, ba);
			/* whole micro-batch to another rank */
			for (int32_t r = 0; r < N; r++)
				if (r != rs && st->fin[r] + ta < M - EPS)
					consider(&best, 4, -1, -1, a, r,
					         fmax(M - ta, st->fin[r] + ta));
			ctx->work += N;
			for (int32_t i = ba->head; i >= 0; i = st->next[i]) {
				int64_t s = ctx->seqs[i].length;
				double t = ctx->t1[i];
				double ta2 = bin_ms_delta(ctx, ba, -s, -t, -1, -ctx->offcap[i]);
				double fa = M - ta + ta2; /* rs's finish without i */
				if (fa >= M - EPS)
					continue;
				/* into an existing micro-batch */
				for (int32_t b = 0; b < st->nbins; b++) {
					const planner_sluice_bin_t *bb = &st->bins[b];
					if (b == a || bb->pre || bb->count == 0)
						continue;
					double tb2 = bin_ms_delta(ctx, bb, s, t, 1, ctx->offcap[i]);
					if (isinf(tb2))
						continue;
					double d = tb2 - bin_ms_of(ctx, bb);
					if (bb->rank == rs) {
						consider(&best, 1, i, -1, b, rs, fa + d);
					} else {
						double fb = st->fin[bb->rank] + d;
						consider(&best, 1, i, -1, b, bb->rank, fmax(fa, fb));
					}
				}
				ctx->work += st->nbins;
				/* into a new micro-batch of another rank */
				if ((double)s - ctx->cap <= (double)ctx->offcap[i]) {
					double tn = planner_sluice_bin_ms(ctx, s, t, 1);
					for (int32_t r = 0; r < N; r++)
						if (r != rs && st->fin[r] + tn < M - EPS)
							consider(&best, 2, i, -1, -1, r, fmax(fa, st->fin[r] + tn));
					ctx->work += N;
				}
				/* swap with a shorter sequence of another rank */
				for (int32_t j = 0; j < n; j++) {
					int32_t b = st->where[j];
					if (b < 0 || b == a)
						continue;
					const planner_sluice_bin_t *bb = &st->bins[b];
					if (bb->pre || bb->rank == rs || ctx->t1[j] >= t)
						continue;
					int64_t dl = s - ctx->seqs[j].length;
					double dt = t - ctx->t1[j];
					int64_t doc = ctx->offcap[i] - ctx->offcap[j];
					double na = bin_ms_delta(ctx, ba, -dl, -dt, 0, -doc);
					double nb = bin_ms_delta(ctx, bb, dl, dt, 0, doc);
					if (isinf(na) || isinf(nb))
						continue;
					double f1 = M - ta + na;
					double f2 = st->fin[bb->rank] - bin_ms_of(ctx, bb) + nb;
					consider(&best, 3, i, j, b, bb->rank, fmax(f1, f2));
				}
				ctx->work += n;
			}
		}
		if (best.kind == 0)
			break;
		/* apply */
		switch (best.kind) {
		case 1:
			planner_sluice_bin_remove(st, best.i);
			planner_sluice_bin_add(st, best.b, best.i);
			break;
		case 2: {
			int32_t b = planner_sluice_bin_new(st, best.r);
			if (b < 0)
				return sl_seterr(SL_ENOMEM, "sluice: out of memory in the local search");
			planner_sluice_bin_remove(st, best.i);
			planner_sluice_bin_add(st, b, best.i);
			break;
		}
		case 3: {
			int32_t a = st->where[best.i], b = st->where[best.j];
			planner_sluice_bin_remove(st, best.i);
			planner_sluice_bin_remove(st, best.j);
			planner_sluice_bin_add(st, b, best.i);
			planner_sluice_bin_add(st, a, best.j);
			break;
		}
		case 4:
			move_bin(st, best.b, best.r);
			break;
		}
		/* Only two ranks changed; recompute their finish exactly. */
		int32_t touched[2] = {rs, best.r};
		for (int z = 0; z < 2; z++) {
			int32_t r = touched[z];
			if (r < 0)
				continue;
			double f = st->ready[r];
			for (int32_t b = st->rank_head[r]; b >= 0; b = st->bins[b].rnext)
				if (!st->bins[b].pre)
					f += bin_ms_of(ctx, &st->bins[b]);
			st->fin[r] = f;
		}
	}
	return SL_OK;
}
