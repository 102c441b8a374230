/* sluice planner: the two-stage assignment of the `sluice` policy
 * (Hydraulis, Li et al. 2024, sec. 5: first sequences to groups balancing
 * predicted time under memory limits, then each group's sequences into
 * micro-batches).
 *
 * Stage 1 deals sequences longest-time-first (Graham's LPT) to the rank
 * whose predicted finish grows least. A rank's predicted time counts its
 * micro-batches' fixed costs as the reference model does: L tokens need k
 * micro-batches of cap tokens, or k - 1 when offloading the excess to host
 * memory is cheaper than one more fixed cost (ByteScale's selective
 * offloading applied to the micro-batch count), so ranks end up running
 * different numbers of micro-batches (ByteScale's balance scheduler).
 *
 * Stage 2 packs each rank's sequences into that many micro-batches:
 * best-fit decreasing that sends what does not fit to the emptiest
 * micro-batch, moves and swaps that shrink the offloaded excess, and for
 * small ranks whose excess might vanish an exact MILP on GLPK (lp.h),
 * bounded by a node limit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lp.h"
#include "sluice_internal.h"

/* Fixed-cost and offload time of L tokens on one rank under the best
 * micro-batch count (cap tokens each, excess offloaded when allowed).
 * Never drops as L grows over whole tokens (stage 1 relies on it): each of
 * the three costs grows with L where it is allowed, an allowed one only
 * becomes disallowed as L grows within [k cap, (k + 1) cap) (the excess
 * grows faster than 0.95 fmax L), and the one that appears at k cap (k
 * micro-batches, nothing offloaded) costs k beta, what ceil(L / cap)
 * micro-batches cost just below it. */
static double rank_overhead(const planner_sluice_ctx_t *ctx, double L, int offload)
{
	if (L <= 0)
		return 0;
	double cap = ctx->cap;
	double khi = ceil(L / cap);
	double best = khi * ctx->beta;
	if (offload) {
		double klo = floor(L / cap);
		if (klo >= 1) {
			double t = klo * ctx->beta + ctx->c_off * (L - klo * cap);
			if (t < best && L - klo * cap <= ctx->fmax * 0.95 * L)
				best = t;
		}
		double t1 = ctx->beta + ctx->c_off * (L - cap);
		if (L > cap && t1 < best && L - cap <= ctx->fmax * 0.95 * L)
			best = t1;
	}
	return best;
}

typedef struct {
	double t;
	int64_t len;
	int32_t idx;
} tkey_t;

static int cmp_len_pos(const void *a, const void *b, void *arg)
{
	const int32_t *pos = arg;
	int32_t x = pos[*(const int32_t *)a], y = pos[*(const int32_t *)b];
	return (x > y) - (x < y);
}

/* Stable LSD radix sort of idx[0 .. n) by key[idx[z]] ascending (a byte a
 * pass; passes whose byte is the same for every key are skipped). tmp is
 * scratch of n. */
static void radix_sort(int32_t *idx, int32_t *tmp, const uint64_t *key, int32_t n)
{
	for (int shift = 0; shift < 64; shift += 8) {
		int32_t count[257] = {0};
		for (int32_t z = 0; z < n; z++)
			count[((key[idx[z]] >> shift) & 0xff) + 1]++;
		int same = 0;
		for (int b = 1; b <= 256; b++)
			same |= count[b] == n;
		if (same)
			continue;
		for (int b = 0; b < 256; b++)
			count[b + 1] += count[b];
		for (int32_t z = 0; z < n; z++)
			tmp[count[(key[idx[z]] >> shift) & 0xff]++] = idx[z];
		memcpy(idx, tmp, sizeof(int32_t) * (size_t)n);
	}
}

sl_err planner_sluice_orders(planner_sluice_ctx_t *ctx)
{
	int32_t n = ctx->n;
	size_t cnt = (size_t)(n > 0 ? n : 1);
	sl_err rc = SL_OK;
	uint64_t *key = calloc(cnt, sizeof(uint64_t));
	int32_t *tmp = malloc(sizeof(int32_t) * cnt);
	ctx->by_t = malloc(sizeof(int32_t) * cnt);
	ctx->by_len = malloc(sizeof(int32_t) * cnt);
	ctx->len_pos = malloc(sizeof(int32_t) * cnt);
	if (!key || !tmp || !ctx->by_t || !ctx->by_len || !ctx->len_pos) {
		rc = sl_seterr(SL_ENOMEM, "sluice: out of memory for %d sequences", n);
		goto out;
	}
	/* Longest first, ties by the lower index: a stable sort of the indices
	 * by ~length (sl_plan_request refuses lengths below 1). Stage 1's order
	 * sorts that stably by t1, largest first: t1 >= 0 and never NaN
	 * (sl_profile_check keeps the model's constants >= 0), and the bits of
	 * non-negative doubles order as their values do (-0 becomes +0). */
	for (int32_t i = 0; i < n; i++) {
		ctx->by_len[i] = i;
		key[i] = ~(uint64_t)ctx->seqs[i].length;
	}
	radix_sort(ctx->by_len, tmp, key, n);
	for (int32_t i = 0; i < n; i++) {
		double t = ctx->t1[i] == 0 ? 0.0 : ctx->t1[i];
		uint64_t bits;
		memcpy(&bits, &t, sizeof(bits));
		key[i] = ~bits;
	}
	memcpy(ctx->by_t, ctx->by_len, sizeof(int32_t) * (size_t)n);
	radix_sort(ctx->by_t, tmp, key, n);
	for (int32_t z = 0; z < n; z++)
		ctx->len_pos[ctx->by_len[z]] = z;
out:
	free(key);
	free(tmp);
	return rc;
}

/* Below this many, planner_sluice_sort_len sorts by insertion (the lists
 * it gets are mostly a rank's or a micro-batch's few sequences). */
#define SORT_LEN_SMALL 24

void planner_sluice_sort_len(const planner_sluice_ctx_t *ctx, int32_t *idx, int32_t m)
{
	const int32_t *pos = ctx->len_pos;
	if (m > SORT_LEN_SMALL) {
		qsort_r(idx, (size_t)m, sizeof(int32_t), cmp_len_pos, (void *)pos);
		return;
	}
	for (int32_t q = 1; q < m; q++) {
		int32_t x = idx[q], z = q;
		for (; z > 0 && pos[idx[z - 1]] > pos[x]; z--)
			idx[z] = idx[z - 1];
		idx[z] = x;
	}
}

/* Candidate index of stage 1 on large clusters: every rank in a min-heap
 * (planner_iheap_t, ties by the lower rank; indexed, so a re-keyed rank
 * leaves no stale entry to sift past) by predicted finish F, and the ranks
 * with room left in their last micro-batch in heaps by F per room bucket
 * (NBUCKET equal slices of cap).
 * A sequence of s tokens then looks at the K ranks that finish first (a
 * new micro-batch or offloading its excess is cheapest there) and, per
 * bucket that surely holds s, the rank that finishes first (adding it costs
 * only its time there). */
#define NBUCKET 64
#define KFIRST 8

typedef struct {
	planner_iheap_t all;
	planner_iheap_t room[NBUCKET];
	int32_t *pos;    /* [2 N]: positions in all, then in the rank's bucket */
	int32_t *bucket; /* [N] the rank's room bucket, -1 when none */
	double width;
} rindex_t;

/* Sets up an empty index of N ranks (rindex_fini releases it, also after
 * a failure); SL_ENOMEM when memory runs out. */
static sl_err rindex_init(rindex_t *ix, int32_t N, double cap)
{
	ix->pos = malloc(sizeof(int32_t) * 2 * (size_t)N);
	ix->bucket = malloc(sizeof(int32_t) * (size_t)N);
	planner_iheap_init(&ix->all, ix->pos);
	for (int b = 0; b < NBUCKET; b++)
		planner_iheap_init(&ix->room[b], ix->pos + N);
	ix->width = cap / NBUCKET;
	if (ix->pos == NULL || ix->bucket == NULL)
		return sl_seterr(SL_ENOMEM, "sluice: out of memory for %d ranks", N);
	for (int32_t r = 0; r < N; r++) {
		ix->pos[r] = ix->pos[N + r] = -1;
		ix->bucket[r] = -1;
	}
	return SL_OK;
}

/* Re-keys rank r at finish F with room tokens left; SL_ENOMEM when a heap
 * cannot grow. */
static sl_err rindex_put(rindex_t *ix, int32_t r, double F, double room)
{
	SL_CHECK(planner_iheap_set(&ix->all, r, F));
	int32_t b = -1;
	if (room >= 1.0) {
		b = (int32_t)(room / ix->width);
		if (b >= NBUCKET)
			b = NBUCKET - 1;
	}
	if (ix->bucket[r] >= 0 && ix->bucket[r] != b)
		planner_iheap_remove(&ix->room[ix->bucket[r]], r);
	ix->bucket[r] = -1;
	if (b >= 0) {
		SL_CHECK(planner_iheap_set(&ix->room[b], r, F));
		ix->bucket[r] = b;
	}
	return SL_OK;
}

static void rindex_fini(rindex_t *ix)
{
	if (ix->pos != NULL) {
		planner_iheap_fini(&ix->all);
		for (int b = 0; b < NBUCKET; b++)
			planner_iheap_fini(&ix->room[b]);
	}
	free(ix->pos);
	free(ix->bucket);
}

/* Stage 1's finish of a rank (ready at `ready`, holding L tokens of S ms)
 * that takes a sequence of s tokens and t ms; an empty rank's is its floor
 * fl, which stage 1 computes as this would. */
static double rank_finish(const planner_sluice_ctx_t *ctx, double ready, double S, double L,
                          double t, double s, double fl, int offload)
{
	return L > 0 ? ready + S + t + rank_overhead(ctx, L + s, offload) : fl;
}

/* Whether rank r finishing at f beats the best so far (rank best at best_f;
 * best < 0 when none yet). The first candidate always wins: with inf or NaN
 * finish times no comparison holds, and best must still name a rank rather
 * than stay -1 and index L[-1]. */
static int better_rank(double f, int32_t r, double best_f, int32_t best)
{
	return best < 0 || f < best_f - 1e-9 || (f < best_f + 1e-9 && r < best);
}

/* Tokens a rank can still take without a new micro-batch or offloading. */
static double rank_room(const planner_sluice_ctx_t *ctx, double L)
{
	if (L <= 0)
		return 0;
	return ceil(L / ctx->cap) * ctx->cap - L;
}

/* Margin (ms) by which a rank's floor in stage 1 must miss a finish before
 * the rank is skipped unexamined: far above rounding and above N times the
 * 1e-9 tolerance of better_rank on the clusters that scan every rank (N <=
 * 256), far below any difference the choice of rank rests on. */
#define STAGE1_SLACK 1e-6

/* Rings of one shape looked at per rider on large clusters. */
#define RIDER_PEEK 8

/* Re-keys ring w in its shape's heap at latest finish wmax; SL_ENOMEM when
 * the heap cannot grow. */
static sl_err wheap_put(planner_iheap_t *kheap, const int32_t *dk, int32_t w, double wmax)
{
	return planner_iheap_set(&kheap[dk[w]], w, wmax);
}

/* Wide group wd's time without and with sequence i riding on it: its cost
 * triple c3 (time, resident tokens, offload room; computed once, -1 until
 * then) is added, the group's time measured, and taken back. */
static void rider_try(planner_sluice_ctx_t *ctx, planner_sluice_wide_t *wd, int32_t i,
                      double *c3, double *before, double *after)
{
	if (c3[0] < 0)
		planner_sluice_rider(ctx, wd, i, &c3[0], &c3[1], &c3[2]);
	*before = planner_sluice_wide_ms(ctx, wd);
	wd->sum_t += c3[0];
	wd->res += c3[1];
	wd->offcap += c3[2];
	*after = planner_sluice_wide_ms(ctx, wd);
	wd->sum_t -= c3[0];
	wd->res -= c3[1];
	wd->offcap -= c3[2];
	ctx->work += 2;
}

sl_err planner_sluice_assign(planner_sluice_state_t *st, const planner_sluice_knobs_t *knobs)
{
	planner_sluice_ctx_t *ctx = st->ctx;
	int32_t n = ctx->n, N = ctx->N, m = 0;
	sl_err rc = SL_OK;
	rindex_t ix;
	memset(&ix, 0, sizeof(ix));
	tkey_t *items = malloc(sizeof(tkey_t) * (size_t)(n > 0 ? n : 1));
	double *L = calloc((size_t)N, sizeof(double));
	double *S = calloc((size_t)N, sizeof(double));
	double *F = malloc(sizeof(double) * (size_t)N);
	/* rank_overhead of L[r], a floor under what adding to r costs */
	double *O = calloc((size_t)N, sizeof(double));
	double *R = calloc((size_t)N, sizeof(double)); /* rank_room of L[r] */
	double *fl = malloc(sizeof(double) * (size_t)N); /* [N] floors of one sequence */
	int32_t *bin = malloc(sizeof(int32_t) * (size_t)N);
	int32_t *cand = malloc(sizeof(int32_t) * (size_t)(KFIRST + NBUCKET + 1));
	planner_heap_ent_t first[KFIRST > RIDER_PEEK ? KFIRST : RIDER_PEEK];
	/* final wide groups that take riders, and the latest finish of each */
	int32_t *rw = malloc(sizeof(int32_t) * (size_t)(st->nwide + 1));
	double *wmax = malloc(sizeof(double) * (size_t)(st->nwide + 1));
	int32_t *lastw = malloc(sizeof(int32_t) * (size_t)N);
	/* a rider's cost depends only on the ring's degree and node locality:
	 * per sequence it is computed once per distinct pair */
	int32_t *dk = malloc(sizeof(int32_t) * (size_t)(st->nwide + 1));
	int32_t *dval = malloc(sizeof(int32_t) * (size_t)(st->nwide + 1));
	double *dtr = malloc(sizeof(double) * (size_t)(st->nwide + 1) * 3);
	int32_t nrw = 0, nd = 0;
	int big = N > 256;
	planner_iheap_t *kheap = NULL; /* [nd] open final rings by latest finish, per shape */
	int32_t *wpos = NULL, peek[RIDER_PEEK];
	if (!items || !L || !S || !F || !O || !R || !fl || !bin || !cand || !rw || !wmax || !lastw || !dk || !dval ||
	    !dtr) {
		rc = sl_seterr(SL_ENOMEM, "sluice: out of memory assigning %d sequences", n);
		goto out;
	}
	/* the sequences not yet placed, in stage 1's order */
	for (int32_t z = 0; z < n; z++) {
		int32_t i = ctx->by_t[z];
		if (st->where[i] == INT32_MIN) {
			items[m].t = ctx->t1[i];
			items[m].len = ctx->seqs[i].length;
			items[m++].idx = i;
		}
	}
	if (big)
		SL_CHECK_GOTO(rindex_init(&ix, N, ctx->cap), rc, out);
	for (int32_t r = 0; r < N; r++) {
		F[r] = st->ready[r];
		bin[r] = -1;
		lastw[r] = -1;
		if (big)
			SL_CHECK_GOTO(rindex_put(&ix, r, F[r], 0.0), rc, out);
	}
	for (int32_t w = 0; w < st->nwide; w++) {
		const planner_sluice_wide_t *wd = &st->wide[w];
		if (!wd->open || !wd->final)
			continue;
		wmax[w] = 0;
		for (int32_t k = 0; k < wd->d; k++) {
			int32_t r = st->wide_ranks[wd->rank_off + k];
			lastw[r] = w;
			if (F[r] > wmax[w])
				wmax[w] = F[r];
		}
		/* key: degree and node locality (ring bandwidth depends on it) */
		int32_t key = 2 * wd->d + (wd->one_node ? 1 : 0), z = 0;
		while (z < nd && dval[z] != key)
			z++;
		if (z == nd)
			dval[nd++] = key;
		dk[w] = z;
		rw[nrw++] = w;
	}
	if (big) {
		kheap = calloc((size_t)(nd > 0 ? nd : 1), sizeof(planner_iheap_t));
		wpos = malloc(sizeof(int32_t) * (size_t)(st->nwide + 1));
		if (kheap == NULL || wpos == NULL) {
			rc = sl_seterr(SL_ENOMEM, "sluice: out of memory");
			goto out;
		}
		for (int32_t w = 0; w <= st->nwide; w++)
			wpos[w] = -1;
		for (int32_t z = 0; z < nd; z++)
			planner_iheap_init(&kheap[z], wpos);
		for (int32_t z = 0; z < nrw; z++)
			SL_CHECK_GOTO(wheap_put(kheap, dk, rw[z], wmax[rw[z]]), rc, out);
	}
	for (int32_t q = 0; q < m; q++) {
		int32_t i = items[q].idx;
		double s = (double)items[q].len, t = items[q].t;
		int32_t nc = 0, best = -1;
		double best_f = INFINITY;
		if (big) {
			/* the K ranks that finish first */
			const planner_heap_ent_t *e;
			int32_t nf = planner_iheap_first(&ix.all, KFIRST, first);
			for (int32_t k = 0; k < nf; k++)
				cand[nc++] = (int32_t)first[k].id;
			/* per bucket that holds s, the rank that finishes first */
			int32_t b0 = (int32_t)ceil(s / ix.width);
			for (int32_t b = b0 < NBUCKET ? b0 : NBUCKET - 1; b < NBUCKET; b++) {
				e = planner_iheap_top(&ix.room[b]);
				if (e != NULL && rank_room(ctx, L[e->id]) >= s)
					cand[nc++] = (int32_t)e->id;
			}
			for (int32_t k = 0; k < nc; k++) {
				int32_t r = cand[k];
				double f = st->ready[r] + S[r] + t +
				           rank_overhead(ctx, L[r] + s, knobs->offload);
				if (better_rank(f, r, best_f, best)) {
					best_f = f;
					best = r;
				}
			}
			ctx->work += nc + NBUCKET;
		} else {
			/* Every rank's floor: its finish with the sequence, its
			 * overhead as before (the overhead never drops as L grows,
			 * rank_overhead, nor does the sum in floating point); on
			 * an empty rank the floor is its finish (every empty
			 * rank's overhead is the sequence's own). The rank of the
			 * least floor, and the one of the least floor among those
			 * with room for the sequence, are costed first: a rank
			 * whose floor is STAGE1_SLACK past the lower of their
			 * finishes can neither end up chosen nor, as the loop
			 * below goes through the ranks in order, change which one
			 * is (only ranks within 1e-9 of each other could, and the
			 * slack is over N of those); nor can a rank whose floor
			 * cannot beat the best so far by 1e-9 (better_rank). Both
			 * are skipped: the same rank wins as when every rank is
			 * costed. */
			double ov0 = rank_overhead(ctx, s, knobs->offload);
			int32_t c = -1, c2 = -1;
			double fl_c = 0, fl_c2 = 0;
			for (int32_t r = 0; r < N; r++) {
				double x = st->ready[r] + S[r] + t + (L[r] > 0 ? O[r] : ov0);
				fl[r] = x;
				if (c < 0 || x < fl_c) {
					c = r;
					fl_c = x;
				}
				if (R[r] >= s && (c2 < 0 || x < fl_c2)) {
					c2 = r;
					fl_c2 = x;
				}
			}
			double f_c = rank_finish(ctx, st->ready[c], S[c], L[c], t, s, fl[c], knobs->offload);
			if (c2 >= 0 && c2 != c) {
				double f2 = rank_finish(ctx, st->ready[c2], S[c2], L[c2], t, s, fl[c2],
				                        knobs->offload);
				if (f2 < f_c) {
					f_c = f2;
					c = c2;
				}
			}
			double cut = isfinite(f_c) ? f_c + STAGE1_SLACK : NAN; /* NAN: no cut */
			for (int32_t r = 0; r < N; r++) {
				if (r != c && fl[r] >= cut)
					continue;
				if (best >= 0 && fl[r] >= best_f - 1e-9 + STAGE1_SLACK)
					continue;
				double f = r == c ? f_c
				                  : rank_finish(ctx, st->ready[r], S[r], L[r], t, s,
				                                fl[r], knobs->offload);
				if (better_rank(f, r, best_f, best)) {
					best_f = f;
					best = r;
				}
			}
			ctx->work += N;
		}
		/* Or ride in a final wide group: all its ranks take the delay. */
		int32_t bestw = -1;
		for (int32_t z = 0; z < nd; z++)
			dtr[3 * z] = -1; /* not computed yet */
		if (big) {
			/* per ring shape, the rings whose ranks finish first (a
			 * rider costs the same time in each unless it overflows
			 * one), at most RIDER_PEEK of them */
			for (int32_t z = 0; z < nd; z++) {
				int32_t got = 0;
				const planner_heap_ent_t *top = planner_iheap_top(&kheap[z]);
				if (top == NULL || wmax[top->id] >= best_f)
					continue; /* none of this shape finishes before best_f */
				int32_t nf = planner_iheap_first(&kheap[z], RIDER_PEEK, first);
				for (int32_t k = 0; k < nf; k++) {
					int32_t w = (int32_t)first[k].id;
					if (wmax[w] >= best_f)
						break;
					peek[got++] = w;
				}
				for (int32_t y = 0; y < got; y++) {
					int32_t w = peek[y];
					planner_sluice_wide_t *wd = &st->wide[w];
					double before, after;
					rider_try(ctx, wd, i, dtr + 3 * dk[w], &before, &after);
					double f = wmax[w] + after - before;
					if (f < best_f - 1e-9) {
						best_f = f;
						bestw = w;
					}
				}
			}
		} else {
			for (int32_t z = 0; z < nrw; z++) {
				int32_t w = rw[z];
				if (wmax[w] >= best_f)
					continue;
				planner_sluice_wide_t *wd = &st->wide[w];
				double before, after;
				rider_try(ctx, wd, i, dtr + 3 * dk[w], &before, &after);
				double f = wmax[w] + after - before;
				if (f < best_f - 1e-9) {
					best_f = f;
					bestw = w;
				}
			}
		}
		if (bestw >= 0) {
			planner_sluice_wide_t *wd = &st->wide[bestw];
			double before = planner_sluice_wide_ms(ctx, wd);
			planner_sluice_wide_add(st, bestw, i);
			double dl = planner_sluice_wide_ms(ctx, wd) - before;
			for (int32_t k = 0; k < wd->d; k++) {
				int32_t r = st->wide_ranks[wd->rank_off + k];
				st->ready[r] += dl;
				F[r] += dl;
				if (big)
					SL_CHECK_GOTO(
					    rindex_put(&ix, r, F[r], rank_room(ctx, L[r])), rc,
					    out);
			}
			wmax[bestw] += dl;
			if (big)
				SL_CHECK_GOTO(wheap_put(kheap, dk, bestw, wmax[bestw]), rc, out);
			continue;
		}
		L[best] += s;
		S[best] += t;
		F[best] = best_f;
		O[best] = rank_overhead(ctx, L[best], knobs->offload);
		R[best] = rank_room(ctx, L[best]);
		if (big)
			SL_CHECK_GOTO(rindex_put(&ix, best, F[best], rank_room(ctx, L[best])), rc,
			              out);
		if (lastw[best] >= 0 && F[best] > wmax[lastw[best]]) {
			wmax[lastw[best]] = F[best];
			if (big)
				SL_CHECK_GOTO(wheap_put(kheap, dk, lastw[best], F[best]), rc, out);
		}
		if (bin[best] < 0) {
			bin[best] = planner_sluice_bin_new(st, best);
			if (bin[best] < 0) {
				rc = sl_seterr(SL_ENOMEM, "sluice: out of memory for micro-batches");
				goto out;
			}
		}
		planner_sluice_bin_add(st, bin[best], i);
	}
	for (int32_t r = 0; r < N; r++)
		if (bin[r] >= 0)
			SL_CHECK_GOTO(planner_sluice_pack_rank(st, r, knobs), rc, out);
out:
	rindex_fini(&ix);
	for (int32_t z = 0; kheap != NULL && z < nd; z++)
		planner_iheap_fini(&kheap[z]);
	free(kheap);
	free(wpos);
	free(rw);
	free(wmax);
	free(lastw);
	free(dk);
	free(dval);
	free(dtr);
	free(items);
	free(L);
	free(S);
	free(F);
	free(O);
	free(R);
	free(fl);
	free(bin);
	free(cand);
	return rc;
}

/* --- stage 2 ------------------------------------------------------------- */

typedef struct {
	int64_t len;
	int64_t offcap;
	int32_t idx;
} pitem_t;

/* Excess over cap of a micro-batch holding `load` tokens. */
static int64_t excess(const planner_sluice_ctx_t *ctx, int64_t load)
{
	int64_t cap = (int64_t)ctx->cap;
	return load > cap ? load - cap : 0;
}

/* Packs items (sorted longest first) into k micro-batches: best fit among
 * those it fits, else the emptiest (least excess). Then moves and swaps
 * between a micro-batch over cap and one under it while the total excess
 * drops. Writes bin-of-item to as[] and loads to load[]; returns the total
 * excess, or -1 when some micro-batch exceeds what offloading can free. */
static int64_t pack_k(planner_sluice_ctx_t *ctx, const pitem_t *it, int32_t m, int32_t k,
                      int32_t *as, int64_t *load, int64_t *ocap)
{
	int64_t cap = (int64_t)ctx->cap;
	for (int32_t b = 0; b < k; b++) {
		load[b] = 0;
		ocap[b] = 0;
	}
	for (int32_t q = 0; q < m; q++) {
		int32_t fit = -1, emp = 0;
		for (int32_t b = 0; b < k; b++) {
			if (load[b] + it[q].len <= cap && (fit < 0 || load[b] > load[fit]))
				fit = b;
			if (load[b] < load[emp])
				emp = b;
		}
		int32_t b = fit >= 0 ? fit : emp;
		as[q] = b;
		load[b] += it[q].len;
		ocap[b] += it[q].offcap;
	}
	ctx->work += (int64_t)m * k;
	/* Improvement passes (bounded): move or swap between an over and an
	 * under micro-batch. */
	for (int pass = 0; pass < 4 && k > 1; pass++) {
		int improved = 0;
		for (int32_t q = 0; q < m; q++) {
			int32_t a = as[q];
			if (load[a] <= cap)
				continue;
			for (int32_t b = 0; b < k; b++) {
				if (b == a || load[b] >= cap)
					continue;
				int64_t before = excess(ctx, load[a]) + excess(ctx, load[b]);
				int64_t after = excess(ctx, load[a] - it[q].len) +
				                excess(ctx, load[b] + it[q].len);
				if (after < before) {
					load[a] -= it[q].len;
					ocap[a] -= it[q].offcap;
					load[b] += it[q].len;
					ocap[b] += it[q].offcap;
					as[q] = b;
					improved = 1;
					break;
				}
				/* swap with a shorter item of b */
				for (int32_t z = 0; z < m; z++) {
					if (as[z] != b || it[z].len >= it[q].len)
						continue;
					int64_t dl = it[q].len - it[z].len;
					after = excess(ctx, load[a] - dl) + excess(ctx, load[b] + dl);
					if (after < before) {
						load[a] -= dl;
						load[b] += dl;
						ocap[a] += it[z].offcap - it[q].offcap;
						ocap[b] += it[q].offcap - it[z].offcap;
						as[q] = b;
						as[z] = a;
						improved = 1;
						break;
					}
				}
				if (as[q] != a)
					break;
			}
		}
		ctx->work += (int64_t)m * k * 2;
		if (!improved)
			break;
	}
	int64_t tot = 0;
	for (int32_t b = 0; b < k; b++) {
		int64_t e = excess(ctx, load[b]);
		if (e > ocap[b])
			return -1;
		tot += e;
	}
	return tot;
}

/* Classic best-fit decreasing without offload (new micro-batches as
 * needed); an item over cap alone offloads its excess. Returns k. */
static int32_t pack_bfd(planner_sluice_ctx_t *ctx, const pitem_t *it, int32_t m, int32_t *as,
                        int64_t *load)
{
	int64_t cap = (int64_t)ctx->cap;
	int32_t k = 0;
	for (int32_t q = 0; q < m; q++) {
		int32_t fit = -1;
		for (int32_t b = 0; b < k; b++)
			if (load[b] + it[q].len <= cap && (fit < 0 || load[b] > load[fit]))
				fit = b;
		if (fit < 0) {
			fit = k++;
			load[fit] = 0;
		}
		as[q] = fit;
		load[fit] += it[q].len;
	}
	ctx->work += (int64_t)m * (k > 0 ? k : 1);
	return k;
}

/* Exact packing of m items into k micro-batches minimising the offloaded
 * excess (a MILP on GLPK, node-limited, warm-started from as[]). On a better
 * solution rewrites as[] and returns its excess; otherwise returns -1. */
static int64_t pack_milp(planner_sluice_ctx_t *ctx, const pitem_t *it, int32_t m, int32_t k,
                         int32_t *as, int64_t cur)
{
	lp_t *lp = NULL;
	int64_t ret = -1;
	int ncol = m * k + k;
	int *cols = malloc(sizeof(int) * (size_t)(m + 1) * 2);
	double *vals = malloc(sizeof(double) * (size_t)(m + 1) * 2);
	double *warm = calloc((size_t)ncol, sizeof(double));
	double *x = malloc(sizeof(double) * (size_t)ncol);
	lp_result_t res;
	if (cols == NULL || vals == NULL || warm == NULL || x == NULL)
		goto out;
	if (lp_new("sluice-microbatches", 1, &lp) != SL_OK)
		goto out;
	/* y[q][b] at column q k + b, excess e[b] at m k + b */
	for (int32_t q = 0; q < m; q++)
		for (int32_t b = 0; b < k; b++)
			if (lp_add_col(lp, NULL, LP_BINARY, 0, 1, 0.0, NULL) != SL_OK)
				goto out;
	for (int32_t b = 0; b < k; b++)
		if (lp_add_col(lp, NULL, LP_CONTINUOUS, 0, INFINITY, 1.0, NULL) != SL_OK)
			goto out;
	for (int32_t q = 0; q < m; q++) {
		for (int32_t b = 0; b < k; b++) {
			cols[b] = q * k + b;
			vals[b] = 1.0;
		}
		if (lp_add_row(lp, NULL, k, cols, vals, 1.0, 1.0, NULL) != SL_OK)
			goto out;
	}
	for (int32_t b = 0; b < k; b++) {
		/* load - e <= cap, and the excess must be offloadable */
		for (int32_t q = 0; q < m; q++) {
			cols[q] = q * k + b;
			vals[q] = (double)it[q].len;
		}
		cols[m] = m * k + b;
		vals[m] = -1.0;
		if (lp_add_row(lp, NULL, m + 1, cols, vals, -INFINITY, ctx->cap, NULL) != SL_OK)
			goto out;
		for (int32_t q = 0; q < m; q++)
			vals[q] = (double)it[q].offcap;
		if (lp_add_row(lp, NULL, m + 1, cols, vals, 0.0, INFINITY, NULL) != SL_OK)
			goto out;
	}
	/* symmetry: the longest item sits in micro-batch 0 */
	if (lp_set_col_bounds(lp, 0, 1.0, 1.0) != SL_OK)
		goto out;
	/* warm start: the heuristic packing, relabelled so item 0 is in bin 0 */
	{
		int32_t swap = as[0];
		int64_t *ld = calloc((size_t)k, sizeof(int64_t));
		if (ld == NULL)
			goto out;
		for (int32_t q = 0; q < m; q++) {
			int32_t b = as[q] == swap ? 0 : (as[q] == 0 ? swap : as[q]);
			warm[q * k + b] = 1.0;
			ld[b] += it[q].len;
		}
		for (int32_t b = 0; b < k; b++)
			warm[m * k + b] = (double)excess(ctx, ld[b]);
		free(ld);
	}
	lp_opts_t o;
	memset(&o, 0, sizeof(o));
	o.node_lim = 64;
	o.it_lim = 20000;
	o.warm = warm;
	o.cuts = 1;
	sl_err rc = lp_solve_mip(lp, &o, &res);
	ctx->work += 2000 + res.iterations + 100 * res.nodes;
	if (rc != SL_OK || lp_values(lp, x) != SL_OK)
		goto out;
	int64_t *ld = calloc((size_t)k, sizeof(int64_t));
	int32_t *nas = malloc(sizeof(int32_t) * (size_t)m);
	if (ld == NULL || nas == NULL) {
		free(ld);
		free(nas);
		goto out;
	}
	int ok = 1;
	for (int32_t q = 0; q < m && ok; q++) {
		nas[q] = -1;
		for (int32_t b = 0; b < k; b++)
			if (x[q * k + b] > 0.5)
				nas[q] = b;
		if (nas[q] < 0)
			ok = 0;
		else
			ld[nas[q]] += it[q].len;
	}
	int64_t tot = 0;
	for (int32_t b = 0; b < k && ok; b++)
		tot += excess(ctx, ld[b]);
	if (ok && tot < cur) {
		memcpy(as, nas, sizeof(int32_t) * (size_t)m);
		ret = tot;
	}
	free(ld);
	free(nas);
out:
	lp_free(&lp);
	free(cols);
	free(vals);
	free(warm);
	free(x);
	return ret;
}

sl_err planner_sluice_pack_rank(planner_sluice_state_t *st, int32_t r,
                                const planner_sluice_knobs_t *knobs)
{
	planner_sluice_ctx_t *ctx = st->ctx;
	sl_err rc = SL_OK;
	int32_t m = 0;
	int64_t L = 0;
	/* Gather the rank's sequences and empty its micro-batches. */
	for (int32_t b = st->rank_head[r]; b >= 0; b = st->bins[b].rnext)
		m += st->bins[b].count;
	if (m == 0)
		return SL_OK;
	pitem_t *it = malloc(sizeof(pitem_t) * (size_t)m);
	int32_t *as = malloc(sizeof(int32_t) * (size_t)m * 2);
	int32_t *seq = as; /* the rank's sequences, gathered before as is used */
	int64_t *load = malloc(sizeof(int64_t) * (size_t)(m + 2) * 2);
	int32_t *bins = malloc(sizeof(int32_t) * (size_t)(m + 2));
	if (!it || !as || !load || !bins) {
		rc = sl_seterr(SL_ENOMEM, "sluice: out of memory packing rank %d", r);
		goto out;
	}
	int32_t nb = 0;
	m = 0;
	for (int32_t b = st->rank_head[r]; b >= 0; b = st->bins[b].rnext) {
		while (st->bins[b].head >= 0) {
			int32_t i = st->bins[b].head;
			seq[m++] = i;
			L += ctx->seqs[i].length;
			planner_sluice_bin_remove(st, i);
		}
		bins[nb++] = b;
	}
	/* longest first */
	planner_sluice_sort_len(ctx, seq, m);
	for (int32_t q = 0; q < m; q++) {
		int32_t i = seq[q];
		it[q].len = ctx->seqs[i].length;
		it[q].offcap = ctx->offcap[i];
		it[q].idx = i;
	}
	int32_t *best_as = as + m;
	int64_t *ocap = load + (m + 2);
	int32_t best_k = 0;
	double best_cost = INFINITY;

	/* Without offloading: best-fit decreasing, as many as needed. */
	{
		int32_t k = pack_bfd(ctx, it, m, as, load);
		double cost = k * ctx->beta;
		for (int32_t b = 0; b < k; b++)
			cost += ctx->c_off * (double)excess(ctx, load[b]);
		best_cost = cost;
		best_k = k;
		memcpy(best_as, as, sizeof(int32_t) * (size_t)m);
	}
	if (knobs->offload) {
		int64_t cap = (int64_t)ctx->cap;
		int32_t khi = (int32_t)((L + cap - 1) / cap), klo = (int32_t)(L / cap);
		int32_t ks[3] = {1, klo, khi};
		for (int z = 0; z < 3; z++) {
			int32_t k = ks[z];
			int dup = 0;
			for (int y = 0; y < z; y++)
				dup |= ks[y] == k;
			if (k < 1 || k > m || dup)
				continue;
			int64_t ex = pack_k(ctx, it, m, k, as, load, ocap);
			if (ex < 0)
				continue;
			if (ex > 0 && (int64_t)k * cap >= L && m <= 16 && k <= 4 && ctx->milp_left > 0 &&
			    planner_sluice_budget_ok(ctx)) {
				/* An exact packing may hide the excess entirely. */
				ctx->milp_left--;
				ctx->milp_used++;
				int64_t e2 = pack_milp(ctx, it, m, k, as, ex);
				if (e2 >= 0)
					ex = e2;
			}
			double cost = k * ctx->beta + ctx->c_off * (double)ex;
			if (cost < best_cost - 1e-9) {
				best_cost = cost;
				best_k = k;
				memcpy(best_as, as, sizeof(int32_t) * (size_t)m);
			}
		}
	}
	/* Write back: reuse the rank's micro-batches, add more as needed. */
	while (nb < best_k) {
		int32_t b = planner_sluice_bin_new(st, r);
		if (b < 0) {
			rc = sl_seterr(SL_ENOMEM, "sluice: out of memory for micro-batches");
			goto out;
		}
		bins[nb++] = b;
	}
	for (int32_t q = 0; q < m; q++)
		planner_sluice_bin_add(st, bins[best_as[q]], it[q].idx);
out:
	free(it);
	free(as);
	free(load);
	free(bins);
	return rc;
}
