/* sluice planner: the polish of small requests (issue 10, part 3).
 *
 * The builds (sluice_mesh.c, sluice_pack.c) choose each long sequence's
 * ring from the LP and place short sequences per rank; on small requests
 * that structure misses plans that sluice-optimum's search finds 6% faster:
 * a long sequence's ring one rank narrower than a node, so that the freed
 * rank runs the short sequences from the start instead of after the ring
 * (usr-include, 16 ranks, 16 sequences: 53,930 tokens on 7 ranks, 5,275 ->
 * 4,950 ms), or a very long sequence on the whole cluster first and the rest
 * after it (long-lognormal, 16 x 16: 131,072 tokens on 16 ranks, 17,551 ->
 * 17,227 ms). The polish takes the best plan built and improves it as a
 * list of groups (a degree and its sequences; the list order is the
 * placement order):
 *
 *  - placement is list scheduling under the reference timing: each group,
 *    in its own slot, goes on the d ranks that become free first, or, with
 *    d <= G, on the d that become free first within one node when that ends
 *    sooner (ring bandwidth); it starts when the last of them is free, which
 *    is exactly where the reference rule starts it;
 *  - a group's offload is one fraction for all its sequences, the least
 *    that fits (offload time is linear in the offloaded tokens per rank, so
 *    no split of the same total is faster);
 *  - moves, in a fixed order: a group to another degree; a sequence to
 *    another group or to a new group of its group's degree; a group to the
 *    front of the list. A move that lowers (step, sum of the ranks' finish
 *    times) is taken at once and the scan starts over, until a whole round
 *    of moves brings none or the budget is spent.
 *
 * The result is kept only when its exact reference timing beats the plan in
 * hand. Deterministic: the moves are tried in a fixed order and the budget
 * is counted in work units. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_internal.h"

typedef struct {
	planner_sluice_ctx_t *ctx;
	int32_t n, N, G, ng; /* sequences, ranks, per node, groups (some may be empty) */
	int32_t *grp;        /* [n] group of each sequence */
	int32_t *deg;        /* [n] degree of each group (at most n groups) */
	int32_t *ord;        /* [n] placement order: group indices, ng of them */
	double *t0;          /* [n * N * 2] T(s, d, 0), one node or not */
	double *tok;         /* [n * N] p_d / d */
	/* scratch of one placement */
	double *gtok, *gt1, *gtn; /* [n] per group: tokens per rank, time on one node, not */
	int32_t *gcnt;            /* [n] sequences per group */
	double *ready;            /* [N] */
	int32_t *rord, *pick, *best; /* [N] */
} polish_t;

static size_t t0_at(const polish_t *p, int32_t j, int32_t d, int one)
{
	return ((size_t)j * (size_t)p->N + (size_t)(d - 1)) * 2 + (size_t)(one != 0);
}

/* Places the groups in p->ord as above: *step and *sum of the ranks'
 * finish times (before grad sync); INFINITY when a group cannot fit. With
 * plan non-NULL, also appends the slots and groups to it. Charges the work
 * to ctx. */
static sl_err place(polish_t *p, double *step, double *sum, sl_plan_t *plan)
{
	planner_sluice_ctx_t *ctx = p->ctx;
	int32_t N = p->N, G = p->G;
	for (int32_t g = 0; g < p->ng; g++) {
		p->gtok[g] = p->gt1[g] = p->gtn[g] = 0;
		p->gcnt[g] = 0;
	}
	for (int32_t j = 0; j < p->n; j++) {
		int32_t g = p->grp[j], d = p->deg[g];
		p->gtok[g] += p->tok[(size_t)j * (size_t)N + (size_t)(d - 1)];
		p->gt1[g] += p->t0[t0_at(p, j, d, 1)];
		p->gtn[g] += p->t0[t0_at(p, j, d, 0)];
		p->gcnt[g]++;
	}
	for (int32_t r = 0; r < N; r++)
		p->ready[r] = 0;
	*step = *sum = INFINITY;
	int64_t units = p->n;
	for (int32_t k = 0; k < p->ng; k++) {
		int32_t g = p->ord[k], d = p->deg[g];
		if (p->gcnt[g] == 0)
			continue;
		double f = 0;
		if (p->gtok[g] > ctx->cap) {
			f = ceil((1 - ctx->cap / p->gtok[g]) * 1e6) / 1e6;
			if (f > ctx->fmax || f >= 1)
				return SL_OK;
		}
		double extra = ctx->beta + f * ctx->c_off * p->gtok[g];
		/* ranks by ready time, ties by index */
		for (int32_t r = 0; r < N; r++) {
			int32_t i = r;
			while (i > 0 && p->ready[p->rord[i - 1]] > p->ready[r]) {
				p->rord[i] = p->rord[i - 1];
				i--;
			}
			p->rord[i] = r;
		}
		units += (int64_t)N * 4;
		double bend = INFINITY;
		int32_t bn = 0;
		for (int32_t node = -1; node < (d <= G ? (N + G - 1) / G : 0); node++) {
			int32_t m = 0;
			for (int32_t z = 0; z < N && m < d; z++)
				if (node < 0 || p->rord[z] / G == node)
					p->pick[m++] = p->rord[z];
			if (m < d)
				continue;
			double st = 0;
			for (int32_t z = 0; z < m; z++)
				st = fmax(st, p->ready[p->pick[z]]);
			int one = sl_cost_one_node(ctx->cost, p->pick, m);
			double end = st + extra + (one ? p->gt1[g] : p->gtn[g]);
			if (end < bend - 1e-9) {
				bend = end;
				bn = m;
				memcpy(p->best, p->pick, sizeof(int32_t) * (size_t)m);
			}
		}
		for (int32_t z = 0; z < bn; z++)
			p->ready[p->best[z]] = bend;
		if (plan != NULL) {
			/* ring order: ascending ranks */
			for (int32_t a = 1; a < bn; a++)
				for (int32_t b = a; b > 0 && p->best[b - 1] > p->best[b]; b--) {
					int32_t t = p->best[b];
					p->best[b] = p->best[b - 1];
					p->best[b - 1] = t;
				}
			SL_CHECK(sl_plan_add_slot(plan));
			SL_CHECK(sl_plan_add_group(plan, p->best, bn));
			for (int32_t j = 0; j < p->n; j++)
				if (p->grp[j] == g)
					SL_CHECK(sl_plan_add_item(plan, j, f));
		}
	}
	p->ctx->work += units;
	*step = *sum = 0;
	for (int32_t r = 0; r < N; r++) {
		*step = fmax(*step, p->ready[r]);
		*sum += p->ready[r];
	}
	return SL_OK;
}

/* Drops empty groups, renumbering the rest (their order kept). */
static void compact(polish_t *p)
{
	int32_t m = 0;
	for (int32_t g = 0; g < p->ng; g++)
		p->gcnt[g] = 0;
	for (int32_t j = 0; j < p->n; j++)
		p->gcnt[p->grp[j]]++;
	/* gcnt becomes the new index + 1 of each kept group (0: dropped) */
	for (int32_t g = 0; g < p->ng; g++)
		if (p->gcnt[g] > 0) {
			p->deg[m] = p->deg[g];
			p->gcnt[g] = ++m;
		}
	for (int32_t j = 0; j < p->n; j++)
		p->grp[j] = p->gcnt[p->grp[j]] - 1;
	int32_t k = 0;
	for (int32_t z = 0; z < p->ng; z++)
		if (p->gcnt[p->ord[z]] > 0)
			p->ord[k++] = p->gcnt[p->ord[z]] - 1;
	p->ng = m;
}

/* How to take one move back. */
typedef struct {
	int kind;     /* 0 degree, 1 sequence, 2 to the front */
	int32_t a, b; /* degree: group, old degree; sequence: j, old group; front: position */
	int32_t ng;   /* groups before the move */
} undo_t;

static void undo(polish_t *p, const undo_t *u)
{
	if (u->kind == 0) {
		p->deg[u->a] = u->b;
	} else if (u->kind == 1) {
		p->grp[u->a] = u->b;
		p->ng = u->ng;
	} else {
		int32_t g = p->ord[0];
		memmove(&p->ord[0], &p->ord[1], sizeof(int32_t) * (size_t)u->a);
		p->ord[u->a] = g;
	}
}

/* Applies move mv when it is a real move: 1 (applied, *u says how to undo
 * it), 0 (no such move: skip), -1 (past the last move). gcnt holds the
 * sequences per group of the current solution. */
static int apply(polish_t *p, const int32_t *cnt, int64_t mv, undo_t *u)
{
	int64_t ndeg = (int64_t)p->ng * p->N, nseq = (int64_t)p->n * (p->ng + 1);
	u->ng = p->ng;
	if (mv < ndeg) {
		int32_t g = (int32_t)(mv / p->N), d = (int32_t)(mv % p->N) + 1;
		if (d == p->deg[g])
			return 0;
		u->kind = 0;
		u->a = g;
		u->b = p->deg[g];
		p->deg[g] = d;
		return 1;
	}
	mv -= ndeg;
	if (mv < nseq) {
		int32_t j = (int32_t)(mv / (p->ng + 1)), h = (int32_t)(mv % (p->ng + 1)), g = p->grp[j];
		if (h == g || (h == p->ng && cnt[g] == 1))
			return 0;
		u->kind = 1;
		u->a = j;
		u->b = g;
		if (h == p->ng) { /* a new group of g's degree, placed last */
			p->deg[h] = p->deg[g];
			p->ord[p->ng++] = h;
		}
		p->grp[j] = h;
		return 1;
	}
	mv -= nseq;
	if (mv < p->ng) {
		if (mv == 0)
			return 0;
		u->kind = 2;
		u->a = (int32_t)mv;
		int32_t g = p->ord[mv];
		memmove(&p->ord[1], &p->ord[0], sizeof(int32_t) * (size_t)mv);
		p->ord[0] = g;
		return 1;
	}
	return -1;
}

sl_err planner_sluice_polish(planner_sluice_ctx_t *ctx, const sl_plan_t *plan, int64_t limit,
                             sl_plan_t **out)
{
	polish_t p = {0};
	sl_err rc = SL_OK;
	int32_t n = ctx->n, N = ctx->N;
	sl_plan_t *q = NULL;
	*out = NULL;
	if (plan->ngroups > n)
		return SL_OK; /* a sequence split over groups: not this search's shape */
	p.ctx = ctx;
	p.n = n;
	p.N = N;
	p.G = ctx->G;
	p.grp = malloc(sizeof(int32_t) * (size_t)n);
	p.deg = malloc(sizeof(int32_t) * (size_t)(n + 1));
	p.ord = malloc(sizeof(int32_t) * (size_t)(n + 1));
	p.gcnt = malloc(sizeof(int32_t) * (size_t)(n + 1));
	int32_t *cnt = malloc(sizeof(int32_t) * (size_t)(n + 1));
	p.t0 = malloc(sizeof(double) * (size_t)n * (size_t)N * 2);
	p.tok = malloc(sizeof(double) * (size_t)n * (size_t)N);
	p.gtok = malloc(sizeof(double) * (size_t)(n + 1));
	p.gt1 = malloc(sizeof(double) * (size_t)(n + 1));
	p.gtn = malloc(sizeof(double) * (size_t)(n + 1));
	p.ready = malloc(sizeof(double) * (size_t)N);
	p.rord = malloc(sizeof(int32_t) * (size_t)N);
	p.pick = malloc(sizeof(int32_t) * (size_t)N);
	p.best = malloc(sizeof(int32_t) * (size_t)N);
	if (!p.grp || !p.deg || !p.ord || !p.gcnt || !cnt || !p.t0 || !p.tok || !p.gtok || !p.gt1 ||
	    !p.gtn || !p.ready || !p.rord || !p.pick || !p.best) {
		rc = sl_seterr(SL_ENOMEM, "sluice: out of memory polishing %d sequences", n);
		goto out;
	}
	for (int32_t j = 0; j < n; j++) {
		p.grp[j] = -1;
		for (int32_t d = 1; d <= N; d++) {
			int64_t s = ctx->seqs[j].length;
			p.tok[(size_t)j * (size_t)N + (size_t)(d - 1)] = (double)sl_cost_padded(s, d) / d;
			p.t0[t0_at(&p, j, d, 1)] = sl_cost_seq_ms(ctx->cost, s, d, 0, 1);
			p.t0[t0_at(&p, j, d, 0)] = sl_cost_seq_ms(ctx->cost, s, d, 0, 0);
		}
	}
	ctx->work += (int64_t)n * N * 2;
	for (int64_t g = 0; g < plan->ngroups; g++) {
		const sl_group_t *gr = &plan->groups[g];
		const sl_item_t *it = sl_group_items(plan, gr);
		for (int32_t i = 0; i < gr->nitems; i++) {
			if (it[i].seq < 0 || it[i].seq >= n || p.grp[it[i].seq] >= 0)
				goto out; /* not one group per sequence: leave it */
			p.grp[it[i].seq] = (int32_t)g;
		}
		p.deg[g] = gr->nranks;
		p.ord[g] = (int32_t)g;
	}
	for (int32_t j = 0; j < n; j++)
		if (p.grp[j] < 0)
			goto out;
	p.ng = (int32_t)plan->ngroups;
	compact(&p);
	double bs, bsum;
	SL_CHECK_GOTO(place(&p, &bs, &bsum, NULL), rc, out);
	/* First improvement: after a move is taken the scan starts over, so
	 * the degree moves (first in the order: they reshape the plan most) are
	 * tried again before any other (a scan that went on from the next move
	 * kept long-lognormal's 131,072 tokens on 8 ranks: 17,551 ms against
	 * 17,227); it ends after a whole round of moves without one (a local
	 * optimum), or at the budget. */
	int64_t mv = 0, since = 0;
	int cut = 0;
	for (int32_t g = 0; g < p.ng; g++)
		cnt[g] = 0;
	for (int32_t j = 0; j < n; j++)
		cnt[p.grp[j]]++;
	for (;;) {
		int64_t nmoves = (int64_t)p.ng * N + (int64_t)n * (p.ng + 1) + p.ng;
		if (since >= nmoves)
			break;
		if (ctx->work >= limit || planner_sluice_stopped(ctx)) {
			/* its own cap is the method's; the caller's limit or a stop is a cut */
			cut = ctx->work >= ctx->work_limit || planner_sluice_stopped(ctx);
			break;
		}
		if (mv >= nmoves)
			mv = 0;
		undo_t u;
		int r = apply(&p, cnt, mv++, &u);
		since++;
		if (r <= 0)
			continue;
		double st, sm;
		SL_CHECK_GOTO(place(&p, &st, &sm, NULL), rc, out);
		if (st < bs - 1e-6 || (st < bs + 1e-6 && sm < bsum - 1e-6)) {
			bs = st;
			bsum = sm;
			compact(&p);
			for (int32_t g = 0; g < p.ng; g++)
				cnt[g] = 0;
			for (int32_t j = 0; j < n; j++)
				cnt[p.grp[j]]++;
			since = 0;
			mv = 0;
		} else {
			undo(&p, &u);
		}
	}
	if (cut)
		ctx->truncated = 1; /* the caller's limit or a stop cut it before a local optimum */
	q = sl_plan_new(plan->policy, plan->profile, plan->ranks, plan->ranks_per_node,
	                plan->cap_tokens, plan->seqs, plan->nseqs);
	if (q == NULL) {
		rc = sl_seterr(SL_ENOMEM, "sluice: out of memory polishing %d sequences", n);
		goto out;
	}
	double st, sm;
	SL_CHECK_GOTO(place(&p, &st, &sm, q), rc, out);
	if (isfinite(st)) {
		*out = q;
		q = NULL;
	}
out:
	sl_plan_free(&q);
	free(p.grp);
	free(p.deg);
	free(p.ord);
	free(p.gcnt);
	free(cnt);
	free(p.t0);
	free(p.tok);
	free(p.gtok);
	free(p.gt1);
	free(p.gtn);
	free(p.ready);
	free(p.rord);
	free(p.pick);
	free(p.best);
	return rc;
}
