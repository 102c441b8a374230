/* sluice planner: the dynamic mesh of the `sluice` policy (ByteScale, Ge et
 * al. 2025, sec. 4: data-aware sharding on a dynamic communication mesh).
 * A long sequence gets a ring of exactly the degree the LP chose (any count,
 * not only powers of two); rings that fit a node stay inside one, larger
 * ones take as few nodes as possible with neighbours on one node; rings are
 * list-scheduled first (Graham's rule with the spec's "a group starts when
 * all its ranks are free"), short sequences ride in a ring's spare memory
 * when that is cheaper than a micro-batch of their own, and every other
 * sequence is dealt to one rank (sluice_pack.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_internal.h"

sl_err planner_sluice_state_init(planner_sluice_state_t *st, planner_sluice_ctx_t *ctx)
{
	int32_t n = ctx->n, N = ctx->N;
	memset(st, 0, sizeof(*st));
	st->ctx = ctx;
	st->wide = malloc(sizeof(planner_sluice_wide_t) * (size_t)(n > 0 ? n : 1));
	st->wide_ranks = malloc(sizeof(int32_t) * (size_t)N * (size_t)(n < 8 ? n : 8) + 1);
	st->rank_head = malloc(sizeof(int32_t) * (size_t)N);
	st->ready = malloc(sizeof(double) * (size_t)N);
	st->fin = malloc(sizeof(double) * (size_t)N);
	st->where = malloc(sizeof(int32_t) * (size_t)n);
	st->next = malloc(sizeof(int32_t) * (size_t)n);
	st->prev = malloc(sizeof(int32_t) * (size_t)n);
	st->whead = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
	st->bins_cap = N + 16;
	st->bins = malloc(sizeof(planner_sluice_bin_t) * (size_t)st->bins_cap);
	if (!st->wide || !st->wide_ranks || !st->rank_head || !st->ready || !st->fin ||
	    !st->where || !st->next || !st->prev || !st->whead || !st->bins) {
		planner_sluice_state_fini(st);
		return sl_seterr(SL_ENOMEM, "sluice: out of memory for %d sequences on %d ranks", n, N);
	}
	return SL_OK;
}

void planner_sluice_state_fini(planner_sluice_state_t *st)
{
	free(st->wide);
	free(st->wide_ranks);
	free(st->rank_head);
	free(st->ready);
	free(st->fin);
	free(st->where);
	free(st->next);
	free(st->prev);
	free(st->whead);
	free(st->bins);
	memset(st, 0, sizeof(*st));
}

int32_t planner_sluice_bin_new(planner_sluice_state_t *st, int32_t r)
{
	if (st->nbins == st->bins_cap) {
		int32_t nc = st->bins_cap * 2;
		planner_sluice_bin_t *q = realloc(st->bins, sizeof(*q) * (size_t)nc);
		if (q == NULL)
			return -1;
		st->bins = q;
		st->bins_cap = nc;
	}
	int32_t b = st->nbins++;
	planner_sluice_bin_t *bn = &st->bins[b];
	memset(bn, 0, sizeof(*bn));
	bn->rank = r;
	bn->head = -1;
	/* Append at the end of the rank's list so bins keep creation order. */
	bn->rnext = -1;
	if (st->rank_head[r] < 0) {
		st->rank_head[r] = b;
	} else {
		int32_t q = st->rank_head[r];
		while (st->bins[q].rnext >= 0)
			q = st->bins[q].rnext;
		st->bins[q].rnext = b;
	}
	return b;
}

void planner_sluice_bin_add(planner_sluice_state_t *st, int32_t b, int32_t i)
{
	const planner_sluice_ctx_t *ctx = st->ctx;
	planner_sluice_bin_t *bn = &st->bins[b];
	st->where[i] = b;
	st->prev[i] = -1;
	st->next[i] = bn->head;
	if (bn->head >= 0)
		st->prev[bn->head] = i;
	bn->head = i;
	bn->count++;
	bn->tokens += ctx->seqs[i].length;
	bn->offcap += ctx->offcap[i];
	bn->sum_t += ctx->t1[i];
}

void planner_sluice_bin_remove(planner_sluice_state_t *st, int32_t i)
{
	const planner_sluice_ctx_t *ctx = st->ctx;
	int32_t b = st->where[i];
	planner_sluice_bin_t *bn = &st->bins[b];
	if (st->prev[i] >= 0)
		st->next[st->prev[i]] = st->next[i];
	else
		bn->head = st->next[i];
	if (st->next[i] >= 0)
		st->prev[st->next[i]] = st->prev[i];
	bn->count--;
	bn->tokens -= ctx->seqs[i].length;
	bn->offcap -= ctx->offcap[i];
	bn->sum_t -= ctx->t1[i];
	if (bn->count == 0)
		bn->sum_t = 0; /* no drift in empty bins */
	st->where[i] = INT32_MIN;
}

double planner_sluice_wide_ms(const planner_sluice_ctx_t *ctx, const planner_sluice_wide_t *w)
{
	double t = ctx->beta + w->sum_t;
	double ex = w->res - ctx->cap;
	if (ex > 1e-9) {
		if (ex > w->offcap)
			return INFINITY;
		t += ctx->c_off * ex;
	}
	return t;
}

void planner_sluice_rider(const planner_sluice_ctx_t *ctx, const planner_sluice_wide_t *w,
                          int32_t i, double *t, double *res, double *offcap)
{
	int64_t s = ctx->seqs[i].length;
	double per = (double)sl_cost_padded(s, w->d) / w->d;
	*t = sl_cost_seq_ms(ctx->cost, s, w->d, 0.0, w->one_node);
	*res = sl_cost_resident(s, w->d, 0.0);
	*offcap = ctx->fmax > 1e-5 ? floor(per * (ctx->fmax - 1e-5)) : 0;
}

void planner_sluice_wide_add(planner_sluice_state_t *st, int32_t w, int32_t i)
{
	planner_sluice_wide_t *wd = &st->wide[w];
	double t, res, oc;
	planner_sluice_rider(st->ctx, wd, i, &t, &res, &oc);
	wd->sum_t += t;
	wd->res += res;
	wd->offcap += oc;
	st->where[i] = -(w + 1);
	st->prev[i] = -1;
	st->next[i] = st->whead[w];
	if (st->whead[w] >= 0)
		st->prev[st->whead[w]] = i;
	st->whead[w] = i;
}

void planner_sluice_wide_remove(planner_sluice_state_t *st, int32_t i)
{
	int32_t w = -st->where[i] - 1;
	planner_sluice_wide_t *wd = &st->wide[w];
	double t, res, oc;
	planner_sluice_rider(st->ctx, wd, i, &t, &res, &oc);
	wd->sum_t -= t;
	wd->res -= res;
	wd->offcap -= oc;
	if (st->prev[i] >= 0)
		st->next[st->prev[i]] = st->next[i];
	else
		st->whead[w] = st->next[i];
	if (st->next[i] >= 0)
		st->prev[st->next[i]] = st->prev[i];
	st->where[i] = INT32_MIN;
}

void planner_sluice_retime(planner_sluice_state_t *st)
{
	const planner_sluice_ctx_t *ctx = st->ctx;
	int32_t N = ctx->N;
	for (int32_t r = 0; r < N; r++)
		st->ready[r] = 0;
	for (int32_t w = 0; w < st->nwide; w++) {
		planner_sluice_wide_t *wd = &st->wide[w];
		const int32_t *rk = st->wide_ranks + wd->rank_off;
		double start = 0;
		for (int32_t k = 0; k < wd->d; k++)
			if (st->ready[rk[k]] > start)
				start = st->ready[rk[k]];
		wd->start = start;
		wd->end = start + planner_sluice_wide_ms(ctx, wd);
		for (int32_t k = 0; k < wd->d; k++)
			st->ready[rk[k]] = wd->end;
	}
	for (int32_t r = 0; r < N; r++)
		st->fin[r] = st->ready[r];
	for (int32_t b = 0; b < st->nbins; b++) {
		const planner_sluice_bin_t *bn = &st->bins[b];
		st->fin[bn->rank] += planner_sluice_bin_ms(ctx, bn->tokens, bn->sum_t, bn->count);
	}
}

double planner_sluice_state_step(const planner_sluice_state_t *st)
{
	double m = 0;
	for (int32_t r = 0; r < st->ctx->N; r++)
		if (st->fin[r] > m)
			m = st->fin[r];
	return m + st->ctx->cost->prof.grad_sync_ms;
}

/* --- wide group placement ------------------------------------------------ */

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

/* Ranks of node k: [k G, min(N, k G + G)). */
static int32_t node_size(const planner_sluice_ctx_t *ctx, int32_t k)
{
	int32_t lo = k * ctx->G, hi = lo + ctx->G;
	return (hi > ctx->N ? ctx->N : hi) - lo;
}

/* Re-sorts node k's entry of ns (its ranks by ready time, then index:
 * planner_key_asc order) after some of its ranks' ready times changed.
 * Insertion sort: G entries, mostly in order. */
static void node_sort(const planner_sluice_ctx_t *ctx, const double *ready, planner_key_t *ns,
                      int32_t k)
{
	int32_t G = ctx->G, sz = node_size(ctx, k);
	planner_key_t *e = ns + (int64_t)k * G;
	for (int32_t q = 0; q < sz; q++)
		e[q].key = ready[e[q].id];
	for (int32_t q = 1; q < sz; q++) {
		planner_key_t x = e[q];
		int32_t z = q;
		while (z > 0 && planner_key_asc(&e[z - 1], &x) > 0) {
			e[z] = e[z - 1];
			z--;
		}
		e[z] = x;
	}
}

/* Chooses d ranks for a ring given the ranks' ready times, writing them in
 * ring order to out: inside one node when d <= G (the node where the d
 * earliest ranks start soonest, least idle time on ties), else whole nodes
 * that free up first plus the remainder from one more node, so the ring
 * crosses as few node boundaries as possible. ns holds every node's ranks
 * sorted by ready time (node_sort), so a node is read, not sorted;
 * keyed has room for N. */
static void pick_ranks(const planner_sluice_ctx_t *ctx, const double *ready,
                       const planner_key_t *ns, int32_t d, int32_t *out, planner_key_t *keyed)
{
	int32_t G = ctx->G, nodes = ctx->nodes;
	if (d <= G) {
		double best_start = INFINITY, best_idle = INFINITY;
		int32_t best_node = -1;
		for (int32_t k = 0; k < nodes; k++) {
			if (node_size(ctx, k) < d)
				continue;
			const planner_key_t *e = ns + (int64_t)k * G;
			double start = e[d - 1].key;
			if (!(start < best_start + 1e-9))
				continue;
			double idle = 0;
			for (int32_t q = 0; q < d; q++)
				idle += start - e[q].key;
			if (start < best_start - 1e-9 || idle < best_idle - 1e-9) {
				best_start = start;
				best_idle = idle;
				best_node = k;
			}
		}
		if (best_node >= 0) {
			const planner_key_t *e = ns + (int64_t)best_node * G;
			for (int32_t q = 0; q < d; q++)
				out[q] = e[q].id;
			qsort(out, (size_t)d, sizeof(int32_t), cmp_i32);
			return;
		}
	}
	/* Several nodes: order nodes by when they are wholly free; take whole
	 * nodes, then the remainder from the node whose needed ranks free up
	 * first. Partial last nodes and odd shapes fall back to the globally
	 * earliest ranks, grouped by node. */
	planner_key_t *nk = keyed; /* first `nodes` entries reused below */
	int32_t full = d / G, rem = d - full * G;
	int ok = 1;
	for (int32_t k = 0; k < nodes; k++) {
		int32_t sz = node_size(ctx, k);
		double m = ns[(int64_t)k * G + sz - 1].key;
		nk[k].key = sz == G ? (m > 0 ? m : 0) : INFINITY;
		nk[k].id = k;
	}
	qsort(nk, (size_t)nodes, sizeof(planner_key_t), planner_key_asc);
	int32_t cnt = 0;
	for (int32_t q = 0; q < full; q++) {
		if (q >= nodes || isinf(nk[q].key)) {
			ok = 0;
			break;
		}
	}
	if (ok) {
		/* remainder: the node (not among the full ones) whose rem earliest
		 * ranks are free soonest */
		int32_t remnode = -1;
		double remstart = INFINITY;
		for (int32_t q = full; rem > 0 && q < nodes; q++) {
			int32_t k = nk[q].id, sz = node_size(ctx, k);
			if (sz < rem)
				continue;
			double st = ns[(int64_t)k * G + rem - 1].key;
			if (st < remstart) {
				remstart = st;
				remnode = k;
			}
		}
		if (rem > 0 && remnode < 0)
			ok = 0;
		if (ok) {
			/* nodes in increasing index order, so the ring walks nodes
			 * in order and neighbours share a node */
			char *used = (char *)(keyed + nodes);
			memset(used, 0, (size_t)nodes);
			for (int32_t q = 0; q < full; q++)
				used[nk[q].id] = 1;
			for (int32_t k = 0; k < nodes; k++) {
				if (k == remnode) {
					const planner_key_t *e = ns + (int64_t)k * G;
					int32_t *o = out + cnt;
					for (int32_t z = 0; z < rem; z++)
						o[z] = e[z].id;
					qsort(o, (size_t)rem, sizeof(int32_t), cmp_i32);
					cnt += rem;
				} else if (used[k]) {
					for (int32_t z = 0; z < G; z++)
						out[cnt++] = k * G + z;
				}
			}
		}
	}
	if (ok && cnt == d)
		return;
	/* Fallback: the d earliest ranks, in node-major order. */
	for (int32_t r = 0; r < ctx->N; r++) {
		keyed[r].key = ready[r];
		keyed[r].id = r;
	}
	qsort(keyed, (size_t)ctx->N, sizeof(planner_key_t), planner_key_asc);
	for (int32_t q = 0; q < d; q++)
		out[q] = keyed[q].id;
	qsort(out, (size_t)d, sizeof(int32_t), cmp_i32);
}

typedef struct {
	int32_t d;
	double t;
	int32_t lead;
	int32_t join;  /* first long sequence sharing its ring, -1 when none */
	double res;    /* tokens per rank its ring holds so far (merge pass) */
} wkey_t;

/* Wide groups go largest first (more ranks, then longer), as in LPT. */
static int cmp_wkey(const void *a, const void *b)
{
	const wkey_t *x = a, *y = b;
	if (x->d != y->d)
		return x->d > y->d ? -1 : 1;
	if (x->t != y->t)
		return x->t > y->t ? -1 : 1;
	return (x->lead > y->lead) - (x->lead < y->lead);
}

/* Candidates in a row a wide group may turn down before it stops taking
 * riders (bounds the rider pass to O(groups x this + sequences)). */
#define RIDER_MISSES 16

/* The first index at or after q whose skip entry points to itself (path
 * halving). */
static int32_t skip_find(int32_t *skip, int32_t q)
{
	while (skip[q] != q) {
		skip[q] = skip[skip[q]];
		q = skip[q];
	}
	return q;
}

/* Lets short sequences ride in the spare memory of wide groups whose
 * lead is not offloaded, when the extra padding and communication cost less
 * than the share of a micro-batch's fixed cost the sequence would otherwise
 * pay (beta s / cap): each wide group takes, largest first, the sequences
 * that still fit and keep its end at or below `level` (a ring that ends
 * after everyone else would set the step). */
static sl_err add_riders(planner_sluice_state_t *st, const int32_t *deg, double level)
{
	planner_sluice_ctx_t *ctx = st->ctx;
	int32_t n = ctx->n, m = 0;
	planner_len_key_t *ks = malloc(sizeof(planner_len_key_t) * (size_t)n);
	int32_t *skip = malloc(sizeof(int32_t) * ((size_t)n + 1));
	if (ks == NULL || skip == NULL) {
		free(ks);
		free(skip);
		return sl_seterr(SL_ENOMEM, "sluice: out of memory");
	}
	/* longest first */
	for (int32_t z = 0; z < n; z++) {
		int32_t i = ctx->by_len[z];
		if (deg[i] == 1 && (double)ctx->seqs[i].length <= ctx->cap) {
			ks[m].len = ctx->seqs[i].length;
			ks[m++].idx = i;
		}
	}
	/* skip[q]: the first list entry at or after q not yet riding anywhere
	 * (path-halving union-find), so placed sequences are never rescanned */
	for (int32_t q = 0; q <= m; q++)
		skip[q] = q;
	for (int32_t w = 0; w < st->nwide; w++) {
		planner_sluice_wide_t *wd = &st->wide[w];
		if (!wd->ride)
			continue;
		/* Longest first among those that fit the spare memory and whose
		 * compute alone stays within the level (lengths and one-rank
		 * times both fall along the list, so both cuts are binary
		 * searches); then the exact cost decides. Each group gives up
		 * after RIDER_MISSES candidates in a row that the exact cost
		 * turned down, so the pass stays linear. One spare token per rank
		 * holds nothing. */
		int32_t q = 0, misses = 0;
		for (;;) {
			double spare = ctx->cap - wd->res;
			if (spare < 1.0 || misses >= RIDER_MISSES)
				break;
			int32_t lo = q, hi = m;
			while (lo < hi) {
				int32_t mid = lo + (hi - lo) / 2;
				if ((double)ks[mid].len > spare * wd->d ||
				    wd->end + ctx->t1[ks[mid].idx] / wd->d > level)
					lo = mid + 1;
				else
					hi = mid;
			}
			ctx->work += 32;
			q = skip_find(skip, lo);
			if (q >= m)
				break;
			int32_t i = ks[q].idx;
			double t, res, oc;
			planner_sluice_rider(ctx, wd, i, &t, &res, &oc);
			ctx->work++;
			if (wd->res + res > ctx->cap || wd->end + t > level ||
			    wd->d * t - ctx->t1[i] >= ctx->beta * (double)ks[q].len / ctx->cap) {
				misses++;
				q++;
				continue;
			}
			misses = 0;
			wd->end += t;
			planner_sluice_wide_add(st, w, i);
			skip[q] = q + 1;
			q++;
		}
	}
	free(ks);
	free(skip);
	return SL_OK;
}

/* Open rings a long sequence looks at before it takes a ring of its own
 * (bounds the merge pass to O(long sequences x this)). */
#define MERGE_SCAN 48

/* Lets long sequences share rings, as FlexSP packs several sequences into
 * one sequence-parallel group: a ring of D ranks sized for its lead often
 * has room left that no short sequence fills (a long-dominated batch has
 * few), and a long sequence of degree d <= D that fits there pays no fixed
 * cost of its own. wk is in placement order (largest first); each entry
 * either keeps its own ring or joins, best fit, an earlier ring of at most
 * twice its degree whose lead is not offloaded, when that costs fewer
 * rank-ms than its own ring and keeps the ring's time within `level`
 * (0: no limit). Joiners are chained by jnext (indexed by sequence) from
 * their ring's wk entry and marked with d = 0. Returns the work spent. */
static int64_t merge_rings(const planner_sluice_ctx_t *ctx, wkey_t *wk, int32_t nw, double level,
                           int32_t *jnext, double *ringt, int32_t *open)
{
	const sl_cost_t *c = ctx->cost;
	int64_t work = 0;
	int32_t nopen = 0, nclosed = 0;
	for (int32_t q = 0; q < nw; q++) {
		int32_t i = wk[q].lead, d = wk[q].d;
		int64_t s = ctx->seqs[i].length;
		double own = d * (ctx->beta + wk[q].t);
		int32_t best = -1;
		double best_spare = INFINITY, best_t = 0;
		int32_t seen = 0;
		for (int32_t z = nopen - 1; z >= 0 && seen < MERGE_SCAN; z--) {
			int32_t p = open[z];
			if (p < 0)
				continue; /* closed */
			int32_t D = wk[p].d;
			if (D > 2 * d && D > ctx->G)
				break; /* earlier entries are wider still */
			seen++;
			double res = sl_cost_resident(s, D, 0.0);
			if (wk[p].res + res > ctx->cap)
				continue;
			double t = sl_cost_seq_ms(c, s, D, 0.0, D <= ctx->G);
			if (D * t >= own - 1e-9 || (level > 0 && ringt[p] + t > level))
				continue;
			double spare = ctx->cap - wk[p].res - res;
			if (spare < best_spare) {
				best_spare = spare;
				best = p;
				best_t = t;
			}
		}
		work += 4 * seen + 1;
		if (best >= 0) {
			wk[best].res += sl_cost_resident(s, wk[best].d, 0.0);
			ringt[best] += best_t;
			/* a ring with less room than any long sequence needs (over
			 * cap tokens, so over cap / D per rank) leaves the list */
			if ((ctx->cap - wk[best].res) * wk[best].d < ctx->cap) {
				for (int32_t z = nopen - 1; z >= 0; z--)
					if (open[z] == best) {
						open[z] = -1;
						break;
					}
				if (++nclosed > nopen / 2) {
					int32_t m = 0;
					for (int32_t z = 0; z < nopen; z++)
						if (open[z] >= 0)
							open[m++] = open[z];
					work += nopen;
					nopen = m;
					nclosed = 0;
				}
			}
			jnext[i] = wk[best].join;
			wk[best].join = i;
			wk[q].d = 0;
			continue;
		}
		double f = sl_cost_offload_for(c, s, d, ctx->cap);
		wk[q].res = sl_cost_resident(s, d, f);
		ringt[q] = ctx->beta + wk[q].t;
		/* a ring whose lead is offloaded is full */
		if (f == 0 && d > 1 && ctx->cap - wk[q].res >= 1.0)
			open[nopen++] = q;
	}
	return work;
}

sl_err planner_sluice_build(planner_sluice_state_t *st, const int32_t *deg, const double *off,
                            const planner_sluice_knobs_t *knobs)
{
	planner_sluice_ctx_t *ctx = st->ctx;
	const sl_cost_t *c = ctx->cost;
	int32_t n = ctx->n, N = ctx->N;
	sl_err rc = SL_OK;
	wkey_t *wk = NULL;
	int32_t *jnext = NULL;
	planner_key_t *keyed = NULL, *nsort = NULL;
	int64_t total = 0;
	int32_t nw = 0;

	st->nwide = 0;
	st->nbins = 0;
	for (int32_t r = 0; r < N; r++) {
		st->rank_head[r] = -1;
		st->ready[r] = 0;
	}
	for (int32_t i = 0; i < n; i++) {
		st->where[i] = INT32_MIN;
		if (deg[i] > 1 || (double)ctx->seqs[i].length - ctx->cap > (double)ctx->offcap[i]) {
			total += deg[i] > 1 ? deg[i] : N;
			nw++;
		}
	}
	wk = malloc(sizeof(wkey_t) * (size_t)(nw > 0 ? nw : 1));
	keyed =
	    malloc(sizeof(planner_key_t) * ((size_t)N + (size_t)ctx->nodes + (size_t)ctx->G + 1));
	nsort = malloc(sizeof(planner_key_t) * (size_t)ctx->nodes * (size_t)ctx->G);
	int32_t *pool = realloc(st->wide_ranks, sizeof(int32_t) * (size_t)(total > 0 ? total : 1));
	if (wk == NULL || keyed == NULL || nsort == NULL || pool == NULL) {
		if (pool != NULL)
			st->wide_ranks = pool;
		rc = sl_seterr(SL_ENOMEM, "sluice: out of memory for %d wide groups", nw);
		goto out;
	}
	st->wide_ranks = pool;
	for (int32_t r = 0; r < N; r++) {
		nsort[r].key = 0;
		nsort[r].id = r;
	}

	/* Wide groups, list-scheduled in LPT order on node-aware rings. */
	nw = 0;
	for (int32_t i = 0; i < n; i++) {
		int32_t d = deg[i];
		if (d <= 1 && (double)ctx->seqs[i].length - ctx->cap > (double)ctx->offcap[i])
			d = 2; /* cannot sit on one rank: the loop below finds the least d */
		if (knobs->widen && d > 1 && d < ctx->G && ctx->G <= N)
			d = ctx->G; /* a whole node: merge_rings fills it */
		if (d > 1) {
			wk[nw].d = d;
			wk[nw].t = sl_cost_seq_ms(c, ctx->seqs[i].length, d, d == deg[i] ? off[i] : 0.0,
			                          d <= ctx->G);
			wk[nw].join = -1;
			wk[nw].res = 0;
			wk[nw++].lead = i;
		}
	}
	qsort(wk, (size_t)nw, sizeof(wkey_t), cmp_wkey);
	if (knobs->merge && nw > 1) {
		double *ringt = malloc(sizeof(double) * (size_t)nw);
		int32_t *open = malloc(sizeof(int32_t) * (size_t)nw);
		jnext = malloc(sizeof(int32_t) * (size_t)n);
		if (ringt == NULL || open == NULL || jnext == NULL) {
			free(ringt);
			free(open);
			rc = sl_seterr(SL_ENOMEM, "sluice: out of memory for %d wide groups", nw);
			goto out;
		}
		ctx->work += merge_rings(ctx, wk, nw, knobs->level, jnext, ringt, open);
		/* rings in LPT order again, by their merged times */
		int32_t m = 0;
		for (int32_t q = 0; q < nw; q++)
			if (wk[q].d > 0) {
				wk[q].t = ringt[q] - ctx->beta;
				wk[m++] = wk[q];
			}
		nw = m;
		qsort(wk, (size_t)nw, sizeof(wkey_t), cmp_wkey);
		free(ringt);
		free(open);
	}
	int64_t used = 0;
	for (int32_t q = 0; q < nw; q++) {
		int32_t i = wk[q].lead, d = wk[q].d;
		int64_t s = ctx->seqs[i].length;
		double f = sl_cost_offload_for(c, s, d, ctx->cap);
		/* The 1e-6 grid can push an offload at the profile's limit over
		 * it: one more rank then holds the rest. */
		while (f >= 1.0 && d < N) {
			d++;
			f = sl_cost_offload_for(c, s, d, ctx->cap);
		}
		if (f >= 1.0) {
			rc = sl_seterr(SL_EINFEASIBLE,
			               "sluice: sequence %lld (%lld tokens) does not fit on all %d ranks "
			               "offloading at most %.6f",
			               (long long)ctx->seqs[i].id, (long long)s, N, ctx->fmax);
			goto out;
		}
		if (used + d > total) {
			pool = realloc(st->wide_ranks, sizeof(int32_t) * (size_t)(used + d));
			if (pool == NULL) {
				rc = sl_seterr(SL_ENOMEM, "sluice: out of memory");
				goto out;
			}
			st->wide_ranks = pool;
			total = used + d;
		}
		planner_sluice_wide_t *wd = &st->wide[st->nwide];
		int32_t *rk = st->wide_ranks + used;
		pick_ranks(ctx, st->ready, nsort, d, rk, keyed);
		ctx->work += d <= ctx->G ? ctx->nodes + d : ctx->nodes * 8 + d;
		wd->lead = i;
		wd->d = d;
		wd->off = f;
		wd->one_node = sl_cost_one_node(c, rk, d);
		wd->rank_off = used;
		wd->res = sl_cost_resident(s, d, f);
		wd->offcap = 0;
		wd->sum_t = sl_cost_seq_ms(c, s, d, f, wd->one_node);
		wd->ride = 0;
		st->whead[st->nwide] = -1;
		for (int32_t j = wk[q].join; j >= 0; j = jnext[j])
			planner_sluice_wide_add(st, st->nwide, j);
		wd->open = knobs->riders && f == 0;
		if (knobs->riders && f == 0 && wd->one_node) {
			/* riders pay padding and communication; worth it while that
			 * is below the fixed-cost share they save */
			int64_t sr = (int64_t)(ctx->cap / 6) > 0 ? (int64_t)(ctx->cap / 6) : 1;
			double tr = sl_cost_seq_ms(c, sr, d, 0.0, 1);
			wd->ride = d * tr - sl_cost_seq_ms(c, sr, 1, 0.0, 1) <
			           ctx->beta * (double)sr / ctx->cap;
		}
		double start = 0;
		for (int32_t k = 0; k < d; k++)
			if (st->ready[rk[k]] > start)
				start = st->ready[rk[k]];
		wd->start = start;
		wd->end = start + planner_sluice_wide_ms(ctx, wd);
		for (int32_t k = 0; k < d; k++)
			st->ready[rk[k]] = wd->end;
		for (int32_t k = 0; k < d; k++)
			if (k == 0 || rk[k] / ctx->G != rk[k - 1] / ctx->G)
				node_sort(ctx, st->ready, nsort, rk[k] / ctx->G);
		st->where[i] = -(st->nwide + 1);
		st->nwide++;
		used += d;
	}
	/* A wide group is final when it is the last of each of its ranks: a
	 * rider added to it then delays exactly its ranks. */
	for (int32_t r = 0; r < N; r++)
		keyed[r].id = -1;
	for (int32_t w = 0; w < st->nwide; w++)
		for (int32_t k = 0; k < st->wide[w].d; k++)
			keyed[st->wide_ranks[st->wide[w].rank_off + k]].id = w;
	for (int32_t w = 0; w < st->nwide; w++) {
		st->wide[w].final = 1;
		for (int32_t k = 0; k < st->wide[w].d; k++)
			if (keyed[st->wide_ranks[st->wide[w].rank_off + k]].id != w)
				st->wide[w].final = 0;
	}
	if (st->nwide > 0)
		SL_CHECK_GOTO(add_riders(st, deg, knobs->level), rc, out);
	planner_sluice_retime(st);
	SL_CHECK_GOTO(planner_sluice_assign(st, knobs), rc, out);
	planner_sluice_retime(st);
out:
	free(wk);
	free(jnext);
	free(keyed);
	free(nsort);
	return rc;
}

/* --- emission ------------------------------------------------------------ */

/* Adds bin b's sequences as one single-rank group, offloading the tokens
 * over cap from the longest sequences first. */
static sl_err emit_bin(const planner_sluice_state_t *st, int32_t b, sl_plan_t *plan,
                       int32_t *tmp)
{
	const planner_sluice_ctx_t *ctx = st->ctx;
	const planner_sluice_bin_t *bn = &st->bins[b];
	int32_t m = 0;
	for (int32_t i = bn->head; i >= 0; i = st->next[i]) {
		tmp[m++] = i;
	}
	planner_sluice_sort_len(ctx, tmp, m);
	int32_t r = bn->rank;
	SL_CHECK(sl_plan_add_group(plan, &r, 1));
	int64_t over = bn->tokens - (int64_t)ctx->cap;
	for (int32_t q = 0; q < m; q++) {
		int32_t i = tmp[q];
		int64_t len = ctx->seqs[i].length;
		double f = 0;
		if (over > 0) {
			int64_t v = over < ctx->offcap[i] ? over : ctx->offcap[i];
			if (v > 0) {
				f = sl_cost_offload_for(ctx->cost, len, 1, (double)(len - v));
				over -= v;
			}
		}
		SL_CHECK(sl_plan_add_item(plan, i, f));
	}
	if (over > 0)
		return sl_seterr(SL_EINTERNAL,
		                 "sluice: micro-batch on rank %d holds %lld tokens, %lld over what "
		                 "offloading can free",
		                 r, (long long)bn->tokens, (long long)over);
	return SL_OK;
}

sl_err planner_sluice_emit(const planner_sluice_state_t *st, sl_plan_t **out)
{
	const planner_sluice_ctx_t *ctx = st->ctx;
	const sl_cost_t *c = ctx->cost;
	int32_t N = ctx->N, n = ctx->n;
	sl_err rc = SL_OK;
	sl_plan_t *plan = NULL;
	int32_t *last = NULL, *wslot = NULL, *order = NULL, *off = NULL;
	int32_t *tmp = NULL;

	*out = NULL;
	plan = sl_plan_new("sluice", c->prof.name, N, ctx->G, c->cap, ctx->seqs, n);
	last = malloc(sizeof(int32_t) * (size_t)N);
	off = malloc(sizeof(int32_t) * ((size_t)N + 1));
	wslot = malloc(sizeof(int32_t) * (size_t)(st->nwide > 0 ? st->nwide : 1));
	order = malloc(sizeof(int32_t) * (size_t)(st->nbins + 1));
	tmp = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
	if (plan == NULL || last == NULL || off == NULL || wslot == NULL || order == NULL ||
	    tmp == NULL) {
		rc = sl_seterr(SL_ENOMEM, "sluice: out of memory writing the plan");
		goto out;
	}
	/* Each rank's non-empty micro-batches: order[off[r] .. off[r + 1]). */
	int32_t m = 0, maxk = 0;
	for (int32_t r = 0; r < N; r++) {
		off[r] = m;
		for (int32_t b = st->rank_head[r]; b >= 0; b = st->bins[b].rnext)
			if (st->bins[b].count > 0)
				order[m++] = b;
		if (m - off[r] > maxk)
			maxk = m - off[r];
		last[r] = -1;
	}
	off[N] = m;
	/* Wide groups first, in list-scheduling order. A group's slot is one
	 * past the last slot of any of its ranks: every rank keeps its order
	 * and the groups of a slot are disjoint. Then each rank's j-th
	 * micro-batch in slot nslots + j. */
	int32_t nslots = 0;
	for (int32_t w = 0; w < st->nwide; w++) {
		const int32_t *rk = st->wide_ranks + st->wide[w].rank_off;
		int32_t s = -1;
		for (int32_t k = 0; k < st->wide[w].d; k++)
			if (last[rk[k]] > s)
				s = last[rk[k]];
		wslot[w] = s + 1;
		for (int32_t k = 0; k < st->wide[w].d; k++)
			last[rk[k]] = s + 1;
		if (s + 2 > nslots)
			nslots = s + 2;
	}
	for (int32_t s = 0; s < nslots + maxk; s++) {
		SL_CHECK_GOTO(sl_plan_add_slot(plan), rc, out);
		for (int32_t w = 0; s < nslots && w < st->nwide; w++) {
			if (wslot[w] != s)
				continue;
			const planner_sluice_wide_t *wd = &st->wide[w];
			SL_CHECK_GOTO(sl_plan_add_group(plan, st->wide_ranks + wd->rank_off, wd->d), rc,
			              out);
			SL_CHECK_GOTO(sl_plan_add_item(plan, wd->lead, wd->off), rc, out);
			int32_t k = 0;
			for (int32_t i = st->whead[w]; i >= 0; i = st->next[i]) {
				tmp[k++] = i;
			}
			/* riders longest first; their excess over cap is offloaded
			 * from the longest */
			planner_sluice_sort_len(ctx, tmp, k);
			double over = wd->res - ctx->cap;
			for (int32_t q = 0; q < k; q++) {
				double f = 0, res, t, oc;
				planner_sluice_rider(ctx, wd, tmp[q], &t, &res, &oc);
				if (over > 1e-9 && oc > 0) {
					double v = over < oc ? over : oc;
					f = sl_cost_offload_for(c, ctx->seqs[tmp[q]].length, wd->d,
					                        res - v);
					over -= v;
				}
				SL_CHECK_GOTO(sl_plan_add_item(plan, tmp[q], f), rc, out);
			}
			if (over > 1e-9) {
				rc = sl_seterr(SL_EINTERNAL,
				               "sluice: wide group of %d ranks is %.1f tokens per rank over "
				               "what offloading can free",
				               wd->d, over);
				goto out;
			}
		}
		for (int32_t r = 0; s >= nslots && r < N; r++) {
			int32_t j = s - nslots;
			if (j < off[r + 1] - off[r])
				SL_CHECK_GOTO(emit_bin(st, order[off[r] + j], plan, tmp), rc, out);
		}
		if (plan->slots[plan->nslots - 1].ngroups == 0) {
			rc = sl_seterr(SL_EINTERNAL, "sluice: slot %d of the plan came out empty", s);
			goto out;
		}
	}
	*out = plan;
	plan = NULL;
out:
	sl_plan_free(&plan);
	free(last);
	free(off);
	free(wslot);
	free(order);
	free(tmp);
	return rc;
}
