/* sluice planner: the `sluice-aligned` policy, plans that frameworks keeping
 * their own context-parallel attention can run (issue 13). Megatron-LM's
 * hybrid DPxCP schedule (parallel_state.create_hybrid_dp_cp_groups,
 * hybrid_cp_schedule.py) and TransformerEngine form CP groups only
 * - of a power-of-two size k, as the aligned block k*j .. k*j+k-1 of
 *   consecutive ranks (ranks in ascending order), and
 * - with no rank idle in a micro-batch group: the schedule indexes every
 *   rank's sample list and barriers each group, so every slot's groups must
 *   cover all ranks (python/sluice/megatron.py, megatron_check, checks the
 *   same rules).
 *
 * Method (a buddy allocator per slot, Knuth TAOCP vol. 1, 2.5):
 * 1. Each sequence gets a power-of-two degree: the least that holds it
 *    (offloading only where no power of two <= N holds it resident), raised
 *    while its time alone exceeds the batch's ideal step, so that no single
 *    sequence is the critical path when a wider ring would shorten it
 *    (the same reason `sluice` widens long sequences).
 * 2. Slots are built one at a time. Sequences, widest degree first and
 *    longest first, each take a free aligned block of their degree (the one
 *    whose ranks are free earliest under the reference timing rule); sizes
 *    never grow within a pass, so free space stays a union of aligned blocks
 *    and nothing fragments. What is left is packed into the slot's groups
 *    (no offload, a group at least as wide as the degree) choosing the group
 *    that ends earliest, Graham's LPT rule.
 * 3. Ranks still idle in the slot (free blocks, smallest first) get work: an
 *    item of a group running several moves there when that ends sooner; else
 *    a waiting sequence runs there when it does not lengthen the slot; else
 *    the free block merges with its buddy's groups into one group on the
 *    parent block (the merged items' resident tokens per rank halve at
 *    most, so the memory rule still holds); else the same moves without the
 *    timing condition. Only a top-level block of a rank count that is not a
 *    power of two has no buddy: if nothing can run there, the request is
 *    infeasible for this policy and the error says why.
 * The search is one greedy pass (no work budget); deadline and cancel are
 * checked once per slot. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack.h"
#include "planner.h"

/* Relative slack of the memory rule when merging groups (validate.c's
 * tolerance is 1e-9 of cap; stay inside it). */
#define AL_MEM_EPS 1e-12

/* One group of the slot being built: ranks [start, start + size). */
typedef struct al_group {
	int32_t start, size; /* size 0: merged away */
	int32_t nitems;
	double resident; /* tokens per rank */
	double ms;       /* beta + its items' times */
	double begin;    /* when its ranks are all free */
} al_group_t;

typedef struct al {
	const sl_cost_t *cost;
	const sl_seq_t *seqs;
	int32_t n, N;
	int32_t *deg;    /* [n] power-of-two degree */
	int32_t *order;  /* [n] widest degree first, then longest, then index */
	char *placed;    /* [n] */
	int32_t left;    /* sequences not placed yet */
	double *ready;   /* [N] when each rank is free after the committed slots */
	int32_t *owner;  /* [N] group of the current slot, -1 free */
	int32_t *ranks;  /* [N] scratch */
	char *one;       /* [2 N] whether group g is node-local (al_slot's scratch) */
	al_group_t *grp; /* [N] groups of the current slot */
	int32_t ngrp;
	/* items of the current slot: sequence, group, offload */
	int32_t *it_seq, *it_grp;
	double *it_off;
	int32_t nit;
	int retime; /* an earlier slot changed: recompute ready after this one */
} al_t;

static int al_one_node(al_t *a, int32_t start, int32_t size)
{
	for (int32_t i = 0; i < size; i++)
		a->ranks[i] = start + i;
	return sl_cost_one_node(a->cost, a->ranks, size);
}

static double al_seq_ms(al_t *a, int32_t seq, int32_t start, int32_t size, double f)
{
	return sl_cost_seq_ms(a->cost, a->seqs[seq].length, size, f, al_one_node(a, start, size));
}

static int al_free(const al_t *a, int32_t start, int32_t size)
{
	for (int32_t r = start; r < start + size; r++)
		if (a->owner[r] >= 0)
			return 0;
	return 1;
}

static double al_begin(const al_t *a, int32_t start, int32_t size)
{
	double b = 0;
	for (int32_t r = start; r < start + size; r++)
		if (a->ready[r] > b)
			b = a->ready[r];
	return b;
}

static int32_t al_new_group(al_t *a, int32_t start, int32_t size)
{
	int32_t g = a->ngrp++;
	a->grp[g] = (al_group_t){start, size, 0, 0.0, a->cost->prof.beta, al_begin(a, start, size)};
	for (int32_t r = start; r < start + size; r++)
		a->owner[r] = g;
	return g;
}

/* Puts item k (of the slot's item list) into group g with offload f. */
static void al_assign(al_t *a, int32_t k, int32_t g, double f)
{
	al_group_t *G = &a->grp[g];
	int32_t seq = a->it_seq[k];
	a->it_grp[k] = g;
	a->it_off[k] = f;
	G->nitems++;
	G->resident += sl_cost_resident(a->seqs[seq].length, G->size, f);
	G->ms += al_seq_ms(a, seq, G->start, G->size, f);
}

/* Places waiting sequence seq in group g with offload f. */
static void al_add(al_t *a, int32_t g, int32_t seq, double f)
{
	a->it_seq[a->nit] = seq;
	al_assign(a, a->nit++, g, f);
	a->placed[seq] = 1;
	a->left--;
}

/* Moves item k to a new group on [start, start + size) with offload f. */
static void al_move(al_t *a, int32_t k, int32_t start, int32_t size, double f)
{
	al_group_t *src = &a->grp[a->it_grp[k]];
	int32_t seq = a->it_seq[k];
	src->nitems--;
	src->resident -= sl_cost_resident(a->seqs[seq].length, src->size, a->it_off[k]);
	src->ms -= al_seq_ms(a, seq, src->start, src->size, a->it_off[k]);
	al_assign(a, k, al_new_group(a, start, size), f);
}

/* The free aligned block of this size whose ranks are free earliest (ties:
 * the lowest start), or -1. */
static int32_t al_find_block(const al_t *a, int32_t size)
{
	int32_t best = -1;
	double bt = INFINITY;
	for (int32_t s = 0; s + size <= a->N; s += size)
		if (al_free(a, s, size)) {
			double b = al_begin(a, s, size);
			if (b < bt) {
				bt = b;
				best = s;
			}
		}
	return best;
}

/* The smallest maximal free aligned block (ties: lowest start): its start,
 * size in *size; -1 when every rank has a group. */
static int32_t al_smallest_free(const al_t *a, int32_t *size)
{
	for (int32_t k = 1; k <= a->N; k *= 2) {
		for (int32_t s = 0; s + k <= a->N; s += k) {
			if (!al_free(a, s, k))
				continue;
			int32_t p = s & ~(2 * k - 1);
			if (k <= a->N / 2 && p + 2 * k <= a->N && al_free(a, p, 2 * k))
				continue; /* not maximal: its parent is free too */
			*size = k;
			return s;
		}
		if (k > a->N / 2)
			break;
	}
	return -1;
}

/* Step 3 move 1 (and 4 with force): the item of a group running several
 * that fits [start, start + size) alone, from the group that ends last
 * (ties: the shortest item, then the earliest). Without force it moves only
 * when it ends there before its group would. Returns 1 when moved. */
static int al_steal(al_t *a, int32_t start, int32_t size, int force)
{
	double begin = al_begin(a, start, size);
	int32_t bk = -1;
	double bend = -INFINITY, bf = 0;
	for (int32_t k = 0; k < a->nit; k++) {
		int32_t g = a->it_grp[k];
		if (a->grp[g].nitems < 2)
			continue;
		int32_t seq = a->it_seq[k];
		double f = sl_cost_offload_for(a->cost, a->seqs[seq].length, size, (double)a->cost->cap);
		if (!(f < 1.0))
			continue;
		double end = a->grp[g].begin + a->grp[g].ms;
		if (!force && !(begin + a->cost->prof.beta + al_seq_ms(a, seq, start, size, f) < end))
			continue;
		if (end > bend ||
		    (end == bend && a->seqs[seq].length < a->seqs[a->it_seq[bk]].length)) {
			bend = end;
			bk = k;
			bf = f;
		}
	}
	if (bk < 0)
		return 0;
	al_move(a, bk, start, size, bf);
	return 1;
}

/* Step 3 move 2: the shortest waiting sequence that fits [start, start +
 * size) (ties: its order), without force only when it ends there by the end
 * of the slot's last group. Returns 1 when placed. */
static int al_pull(al_t *a, int32_t start, int32_t size, int force)
{
	double begin = al_begin(a, start, size), slot_end = 0;
	for (int32_t g = 0; g < a->ngrp; g++)
		if (a->grp[g].size > 0 && a->grp[g].begin + a->grp[g].ms > slot_end)
			slot_end = a->grp[g].begin + a->grp[g].ms;
	int32_t best = -1;
	double bf = 0;
	for (int32_t i = 0; i < a->n; i++) {
		int32_t q = a->order[i];
		if (a->placed[q] || (best >= 0 && a->seqs[q].length >= a->seqs[best].length))
			continue;
		double f = sl_cost_offload_for(a->cost, a->seqs[q].length, size, (double)a->cost->cap);
		if (!(f < 1.0))
			continue;
		if (!force && begin + a->cost->prof.beta + al_seq_ms(a, q, start, size, f) > slot_end)
			continue;
		best = q;
		bf = f;
	}
	if (best < 0)
		return 0;
	al_add(a, al_new_group(a, start, size), best, bf);
	return 1;
}

/* Step 3 move 3: merges the free block [start, start + size) and every group
 * of its buddy into one group on their parent block. Returns 0 when the
 * block has no buddy inside [0, N) (a top-level block), 1 when merged, -1
 * with the error set when the merged items break the memory rule. */
static int al_merge(al_t *a, int32_t start, int32_t size)
{
	int32_t p = start & ~(2 * size - 1);
	if (size > a->N / 2 || p + 2 * size > a->N)
		return 0;
	int32_t b = start ^ size;
	for (int32_t r = b; r < b + size; r++)
		if (a->owner[r] >= 0)
			a->grp[a->owner[r]].size = 0; /* merged away */
	int32_t g = al_new_group(a, p, 2 * size);
	for (int32_t k = 0; k < a->nit; k++)
		if (a->grp[a->it_grp[k]].size == 0)
			al_assign(a, k, g, a->it_off[k]);
	if (a->grp[g].resident > (double)a->cost->cap * (1 + AL_MEM_EPS)) {
		sl_seterr(SL_EINFEASIBLE,
		          "sluice-aligned: merging ranks %d..%d into one group holds %.1f tokens per "
		          "rank (capacity %lld)",
		          p, p + 2 * size - 1, a->grp[g].resident, (long long)a->cost->cap);
		return -1;
	}
	return 1;
}

/* The top-level block holding rank r: N splits into aligned power-of-two
 * blocks by its binary digits, largest first. Its start; size in *size. */
static int32_t al_root(int32_t N, int32_t r, int32_t *size)
{
	int32_t base = 0;
	for (int32_t b = planner_pow2_floor(N); b > 0; b /= 2)
		if (N & b) {
			if (r < base + b) {
				*size = b;
				return base;
			}
			base += b;
		}
	*size = 0;
	return -1;
}

/* Step 3's last move, for an empty top-level block: the item of a group
 * running one sequence alone, in another top-level block that keeps a group
 * without it (its vacated block then merges with its buddy), moves there
 * (the shortest that fits; ties: the earliest item). Returns 1 when moved. */
static int al_relocate(al_t *a, int32_t start, int32_t size)
{
	int32_t bk = -1;
	double bf = 0;
	for (int32_t k = 0; k < a->nit; k++) {
		al_group_t *G = &a->grp[a->it_grp[k]];
		int32_t rsize, rs = al_root(a->N, G->start, &rsize), others = 0;
		if (G->nitems != 1 || G->size >= rsize)
			continue;
		for (int32_t r = rs; r < rs + rsize; r++)
			others += a->owner[r] >= 0 && a->owner[r] != a->it_grp[k];
		int32_t seq = a->it_seq[k];
		double f = sl_cost_offload_for(a->cost, a->seqs[seq].length, size, (double)a->cost->cap);
		if (others == 0 || !(f < 1.0) ||
		    (bk >= 0 && a->seqs[seq].length >= a->seqs[a->it_seq[bk]].length))
			continue;
		bk = k;
		bf = f;
	}
	if (bk < 0)
		return 0;
	al_group_t *src = &a->grp[a->it_grp[bk]];
	for (int32_t r = src->start; r < src->start + src->size; r++)
		a->owner[r] = -1;
	src->size = 0;
	src->nitems = 0;
	al_assign(a, bk, al_new_group(a, start, size), bf);
	return 1;
}

/* Step 3's last resort, for an empty top-level block when nothing of this
 * slot can move there (typically the last slot, one wide group): an item of
 * an earlier slot's group running several moves into this slot (the latest
 * such group; its shortest item that fits; ties: the earliest). The plan's
 * item arrays close the gap, and the ranks' ready times are recomputed once
 * the slot is emitted. Returns 1 when moved. */
static int al_lookback(al_t *a, sl_plan_t *plan, int32_t start, int32_t size)
{
	int64_t bg = -1;
	int32_t bk = -1;
	double bf = 0;
	for (int64_t gi = plan->ngroups - 1; gi >= 0 && bg < 0; gi--) {
		const sl_group_t *g = &plan->groups[gi];
		if (g->nitems < 2)
			continue;
		for (int32_t k = 0; k < g->nitems; k++) {
			int32_t seq = plan->items[g->item_off + k].seq;
			double f = sl_cost_offload_for(a->cost, a->seqs[seq].length, size,
			                               (double)a->cost->cap);
			if (!(f < 1.0) || (bk >= 0 && a->seqs[seq].length >=
			                                  a->seqs[plan->items[g->item_off + bk].seq].length))
				continue;
			bk = k;
			bf = f;
		}
		if (bk >= 0)
			bg = gi;
	}
	if (bg < 0)
		return 0;
	sl_group_t *g = &plan->groups[bg];
	int64_t at = g->item_off + bk;
	int32_t seq = plan->items[at].seq;
	memmove(plan->items + at, plan->items + at + 1,
	        sizeof(*plan->items) * (size_t)(plan->nitems - at - 1));
	plan->nitems--;
	g->nitems--;
	for (int64_t gi = bg + 1; gi < plan->ngroups; gi++)
		plan->groups[gi].item_off--;
	a->it_seq[a->nit] = seq;
	al_assign(a, a->nit++, al_new_group(a, start, size), bf);
	a->retime = 1;
	return 1;
}

/* Gives every idle rank of the slot work (step 3). */
static sl_err al_fill(al_t *a, sl_plan_t *plan)
{
	int32_t size, start;
	while ((start = al_smallest_free(a, &size)) >= 0) {
		if (al_steal(a, start, size, 0) || al_pull(a, start, size, 0))
			continue;
		int m = al_merge(a, start, size);
		if (m < 0)
			return SL_EINFEASIBLE;
		if (m > 0 || al_steal(a, start, size, 1) || al_pull(a, start, size, 1) ||
		    al_relocate(a, start, size) || al_lookback(a, plan, start, size))
			continue;
		return sl_seterr(SL_EINFEASIBLE,
		                 "sluice-aligned: slot %d would leave ranks %d..%d idle and no sequence "
		                 "can run there (every slot's groups must cover all %d ranks: "
		                 "Megatron's hybrid schedule has no empty micro-batch; %d is not a power "
		                 "of two, so this top-level block cannot merge with another)",
		                 plan->nslots, start, start + size - 1, a->N, a->N);
	}
	return SL_OK;
}

/* Kinds of group (size, node-local) whose costs al_slot keeps per sequence:
 * more than the power-of-two sizes up to 2^31, twice. */
#define AL_KINDS 64

/* A sequence's resident tokens per rank and time (NAN: not computed yet)
 * in a group of one kind. */
typedef struct al_kind {
	int32_t size;
	char one;
	double res, ms;
} al_kind_t;

/* Builds the current slot (steps 2 and 3) and appends it to the plan. */
static sl_err al_slot(al_t *a, sl_plan_t *plan)
{
	const sl_cost_t *c = a->cost;
	a->ngrp = 0;
	a->nit = 0;
	for (int32_t r = 0; r < a->N; r++)
		a->owner[r] = -1;
	for (int32_t i = 0; i < a->n; i++) {
		int32_t q = a->order[i];
		if (a->placed[q])
			continue;
		int32_t s = al_find_block(a, a->deg[q]);
		if (s >= 0)
			al_add(a, al_new_group(a, s, a->deg[q]), q,
			       sl_cost_offload_for(c, a->seqs[q].length, a->deg[q], (double)c->cap));
	}
	/* A sequence's resident tokens and time in a group depend only on the
	 * group's size and whether it is node-local: per sequence, each is
	 * computed once per such kind of group (the same values as per
	 * group). */
	for (int32_t g = 0; g < a->ngrp; g++)
		a->one[g] = (char)al_one_node(a, a->grp[g].start, a->grp[g].size);
	for (int32_t i = 0; i < a->n && a->left > 0; i++) {
		int32_t q = a->order[i];
		if (a->placed[q])
			continue;
		int32_t best = -1, nk = 0;
		double bend = INFINITY;
		al_kind_t kind[AL_KINDS];
		for (int32_t g = 0; g < a->ngrp; g++) {
			al_group_t *G = &a->grp[g];
			if (G->size < a->deg[q])
				continue;
			int32_t z = 0;
			while (z < nk && (kind[z].size != G->size || kind[z].one != a->one[g]))
				z++;
			if (z == nk) {
				if (nk == AL_KINDS)
					nk = z = 0; /* more kinds than sizes of groups: start over */
				kind[z] = (al_kind_t){G->size, a->one[g],
				                      sl_cost_resident(a->seqs[q].length, G->size, 0.0), NAN};
				nk++;
			}
			if (G->resident + kind[z].res > (double)c->cap)
				continue;
			if (isnan(kind[z].ms))
				kind[z].ms = sl_cost_seq_ms(c, a->seqs[q].length, G->size, 0.0, a->one[g]);
			double end = G->begin + G->ms + kind[z].ms;
			if (end < bend) {
				bend = end;
				best = g;
			}
		}
		if (best >= 0)
			al_add(a, best, q, 0.0);
	}
	SL_CHECK(al_fill(a, plan));

	/* Emit the groups by first rank; commit the ranks' ready times. */
	SL_CHECK(sl_plan_add_slot(plan));
	for (int32_t r = 0; r < a->N;) {
		int32_t g = a->owner[r];
		al_group_t *G = &a->grp[g];
		for (int32_t i = 0; i < G->size; i++)
			a->ranks[i] = G->start + i;
		SL_CHECK(sl_plan_add_group(plan, a->ranks, G->size));
		for (int32_t k = 0; k < a->nit; k++)
			if (a->it_grp[k] == g)
				SL_CHECK(sl_plan_add_item(plan, a->it_seq[k], a->it_off[k]));
		double end = G->begin + sl_plan_group_ms(plan, &plan->groups[plan->ngroups - 1], c);
		for (int32_t i = 0; i < G->size; i++)
			a->ready[G->start + i] = end;
		r += G->size;
	}
	if (a->retime) {
		/* an earlier group lost an item: its ranks are free sooner */
		sl_plan_timeline(plan, c, NULL, NULL, a->ready);
		a->retime = 0;
	}
	return SL_OK;
}

static int al_order_cmp(const void *x, const void *y, void *arg)
{
	int32_t i = *(const int32_t *)x, j = *(const int32_t *)y;
	const al_t *a = arg;
	if (a->deg[i] != a->deg[j])
		return a->deg[i] > a->deg[j] ? -1 : 1;
	if (a->seqs[i].length != a->seqs[j].length)
		return a->seqs[i].length > a->seqs[j].length ? -1 : 1;
	return (i > j) - (i < j);
}

/* Step 1: the power-of-two degree of every sequence. */
static sl_err al_degrees(al_t *a)
{
	const sl_cost_t *c = a->cost;
	int32_t top = planner_pow2_floor(a->N);
	int64_t *len = malloc(sizeof(int64_t) * (size_t)a->n);
	double ideal = 0;
	if (len == NULL)
		return sl_seterr(SL_ENOMEM, "sluice-aligned: out of memory for %d sequences", a->n);
	for (int32_t i = 0; i < a->n; i++)
		len[i] = a->seqs[i].length;
	sl_err rc = sl_cost_ideal(c, len, (size_t)a->n, &ideal);
	free(len);
	SL_CHECK(rc);
	for (int32_t i = 0; i < a->n; i++) {
		int64_t s = a->seqs[i].length;
		int32_t d = planner_pow2_holding(c, s);
		if (d == 0 || d > top)
			d = top;
		double f = sl_cost_offload_for(c, s, d, (double)c->cap);
		if (!(f < 1.0))
			return sl_seterr(SL_EINFEASIBLE,
			                 "sluice-aligned: sequence %lld (length %lld) does not fit on %d "
			                 "ranks, the largest power-of-two group of %d ranks, even "
			                 "offloading %.3f (use policy sluice)",
			                 (long long)a->seqs[i].id, (long long)s, top, a->N,
			                 c->prof.max_offload);
		while (d < top && al_seq_ms(a, i, 0, d, f) > ideal) {
			d *= 2;
			f = sl_cost_offload_for(c, s, d, (double)c->cap);
		}
		a->deg[i] = d;
	}
	for (int32_t i = 0; i < a->n; i++)
		a->order[i] = i;
	qsort_r(a->order, (size_t)a->n, sizeof(int32_t), al_order_cmp, a);
	return SL_OK;
}

/* The sluice-aligned policy (sl_policy_fn contract); see the file comment.
 * opts: deadline_ms and cancel stop it between slots (SL_ETIMEOUT). */
sl_err planner_policy_aligned(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                              const sl_policy_opts_t *opts, sl_plan_t **out)
{
	sl_err rc = SL_OK;
	al_t a;
	sl_plan_t *plan = NULL;
	int32_t N = cost->cl.ranks, blocks = 0;

	*out = NULL;
	memset(&a, 0, sizeof(a));
	for (int32_t x = N; x > 0; x &= x - 1)
		blocks++;
	if (n < blocks)
		return sl_seterr(SL_EINFEASIBLE,
		                 "sluice-aligned: %lld sequences cannot keep all %d ranks busy: a slot "
		                 "of %d ranks splits into at least %d aligned power-of-two groups and "
		                 "no rank may idle in a slot (use policy sluice)",
		                 (long long)n, N, N, blocks);
	a.cost = cost;
	a.seqs = seqs;
	a.n = (int32_t)n;
	a.N = N;
	a.left = a.n;
	size_t sn = (size_t)n, sN = (size_t)N;
	a.deg = malloc(sn * sizeof(*a.deg));
	a.order = malloc(sn * sizeof(*a.order));
	a.placed = calloc(sn, 1);
	a.it_seq = malloc(sn * sizeof(*a.it_seq));
	a.it_grp = malloc(sn * sizeof(*a.it_grp));
	a.it_off = malloc(sn * sizeof(*a.it_off));
	a.ready = calloc(sN, sizeof(*a.ready));
	a.owner = malloc(sN * sizeof(*a.owner));
	a.ranks = malloc(sN * sizeof(*a.ranks));
	a.one = malloc(2 * sN);
	/* merges add a group per merge: at most N groups plus N merges */
	a.grp = malloc(2 * sN * sizeof(*a.grp));
	if (!a.deg || !a.order || !a.placed || !a.it_seq || !a.it_grp || !a.it_off || !a.ready ||
	    !a.owner || !a.ranks || !a.one || !a.grp) {
		rc = sl_seterr(SL_ENOMEM, "sluice-aligned: out of memory for %lld sequences",
		               (long long)n);
		goto out;
	}
	SL_CHECK_GOTO(al_degrees(&a), rc, out);
	plan = sl_plan_new("sluice-aligned", cost->prof.name, N, cost->cl.ranks_per_node, cost->cap,
	                   seqs, n);
	if (plan == NULL) {
		rc = sl_seterr(SL_ENOMEM, "sluice-aligned: out of memory for the plan");
		goto out;
	}
	while (a.left > 0) {
		if (sl_policy_stopped(opts)) {
			rc = sl_seterr(SL_ETIMEOUT, "sluice-aligned: stopped (deadline or cancel) after "
			               "%d slots", plan->nslots);
			goto out;
		}
		SL_CHECK_GOTO(al_slot(&a, plan), rc, out);
	}
	snprintf(plan->note, sizeof(plan->note), "slots=%d", plan->nslots);
	*out = plan;
	plan = NULL;
out:
	sl_plan_free(&plan);
	free(a.deg);
	free(a.order);
	free(a.placed);
	free(a.it_seq);
	free(a.it_grp);
	free(a.it_off);
	free(a.ready);
	free(a.owner);
	free(a.ranks);
	free(a.one);
	free(a.grp);
	return rc;
}
