/* sluice planner: the `megatron-hybrid-cp` baseline, Megatron-LM's hybrid
 * data x context parallel scheduler, reproduced from BalancedCPScheduler in
 * megatron/core/pipeline_parallel/hybrid_cp_schedule.py (NVIDIA/Megatron-LM,
 * 2025). Its algorithm, in its own terms:
 *
 * - each sequence s gets a CP size max(1, 2^ceil(log2(s / cap))) and a
 *   workload s^2 / cp (get_total_workload, gpus_needed);
 * - sequences sorted longest first are split into as many "buckets" as there
 *   are distinct CP sizes, each closed at 1.1x the mean work
 *   (make_buckets_equal);
 * - a "group" (a barrier-delimited phase over all DPxCP ranks) is filled
 *   greedily (next_hdp_group): scan the buckets in order for the first one
 *   whose head can go somewhere (an existing CP group of its size, or enough
 *   free ranks for a new one), put it on a new group of the lowest free
 *   ranks if that is less loaded (it always is: free ranks have no work),
 *   else on the least-loaded existing group of its size; once a smaller CP
 *   size than the first has appeared, stop as soon as all ranks are within
 *   delta = 5% of the most loaded;
 * - trim_overload pops the last sequence of the most loaded group while that
 *   shrinks max - min; fill_empty_gpus doubles the CP size of the first
 *   smallest group (pushing later groups right) until no rank is idle;
 * - the leftovers (remaining buckets in order, then trimmed sequences) form
 *   the next phase, until none is left.
 * Each rank runs its sub-samples one forward/backward at a time, so the k-th
 * sequence of a CP group in a phase is one group execution of its own.
 *
 * Translation to sluice.plan/1 (choices where the format or our inputs
 * differ from Megatron's):
 * - max_seq_len_per_rank is the profile's cap. Megatron's formula ignores the
 *   zigzag padding of cost-model.md; where padded p / cp would exceed cap we
 *   take the next power of two. Where the size exceeds N (Megatron has no such
 *   group and would loop forever) the sequence runs on all N ranks (its
 *   "entire DPxCP group") with the least offload that fits.
 * - Phase j's groups become consecutive slots: a group's k-th sequence goes
 *   to slot base_j + k, base_j = the slots used by earlier phases. Megatron
 *   puts a barrier over all ranks between phases; the format has none, so
 *   the reference model lets a rank start its next phase as soon as the
 *   ranks of its own next group are free (slightly kinder than Megatron).
 * - fill_empty_gpus assumes a power-of-two rank count; when the idle ranks
 *   are fewer than an expansion needs (Megatron would index past its list),
 *   we stop expanding and leave them idle for that phase.
 * - Ties: Python's min() and sort are stable, so ties go to the lower group
 *   id / earlier sequence; we do the same. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack.h"
#include "planner.h"

/* Balance slack of next_hdp_group and trim_overload, and the bucket
 * overshoot of make_buckets_equal. */
#define HCP_DELTA 0.05
#define HCP_BUCKET_SLACK 1.1
#define HCP_NCLS 33 /* powers of two 2^0..2^31, plus "all N ranks" */

int32_t planner_hcp_cp_size(const sl_cost_t *c, int64_t s)
{
	int64_t N = c->cl.ranks, cap = c->cap, d = 1;
	/* smallest power of two d with s / d <= cap, i.e. 2^ceil(log2(s / cap)) */
	while (d <= N && (s + d - 1) / d > cap)
		d *= 2;
	while (d <= N && sl_cost_padded(s, (int32_t)d) / d > cap)
		d *= 2;
	return d > N ? (int32_t)N : (int32_t)d;
}

static int hcp_cls(int32_t d, int32_t N)
{
	if ((d & (d - 1)) != 0 || d > N)
		return HCP_NCLS - 1;
	int c = 0;
	while ((1 << c) < d)
		c++;
	return c;
}

/* One planning run: per-sequence constants and per-phase scratch. */
typedef struct hcp {
	const sl_cost_t *cost;
	const sl_seq_t *seqs;
	int32_t N;
	int32_t *need; /* [n] CP size */
	double *work;  /* [n] s^2 / cp */

	/* the current phase's list (sample_seqlens), and the next one */
	int32_t *list, *next;
	int64_t nlist, nnext;
	/* buckets: [bhead[b], bend[b]) of list */
	int64_t *bhead, *bend;
	int64_t nbuckets;

	/* groups of the phase; ranks [gstart, gstart + gsize) */
	int32_t ngroups;
	int32_t *gstart, *gsize;
	double *gload;
	int64_t *gtail;  /* last node of the group's sequence list, -1 if none */
	int32_t *gcount; /* sequences in the group */
	/* nodes: one per placement, a backward-linked list per group */
	int32_t *nseq;
	int64_t *nprev;
	int64_t nnodes;
	/* per size class, a min-heap of group ids by (load, id) */
	planner_heap_t heap[HCP_NCLS];
	int32_t next_free;

	int64_t *gfirst; /* [N] scratch: a group's first position in walk[] */
	int32_t *ranks;  /* [N] scratch */
	int64_t *walk;  /* [n] scratch */
} hcp_t;

static double hcp_workload(int64_t s, int32_t cp)
{
	double sq = s < 3037000499LL ? (double)(s * s) : (double)s * (double)s;
	return sq / cp;
}

/* make_buckets_equal over the current list, kept faithfully: the close test
 * compares the remaining sequences with remaining_k - len(buckets), where
 * Megatron decrements remaining_k as it appends, so the two count twice. */
static void hcp_make_buckets(hcp_t *h)
{
	uint64_t seen_lo = 0;
	int seen_all = 0;
	int k = 0;
	double total = 0.0;

	for (int64_t i = 0; i < h->nlist; i++) {
		int32_t d = h->need[h->list[i]];
		int c = hcp_cls(d, h->N);
		if (c == HCP_NCLS - 1) {
			if (!seen_all)
				k++;
			seen_all = 1;
		} else if (!(seen_lo & (1ull << c))) {
			seen_lo |= 1ull << c;
			k++;
		}
		total += h->work[h->list[i]];
	}
	double target = total / k;
	int64_t remaining_k = k;
	double cur_work = 0.0;
	int64_t cur_start = 0;
	h->nbuckets = 0;
	for (int64_t i = 0; i < h->nlist; i++) {
		double w = h->work[h->list[i]];
		double projected = cur_work + w;
		if (i > cur_start && (projected > target * HCP_BUCKET_SLACK ||
		                      h->nlist - i <= remaining_k - h->nbuckets)) {
			h->bhead[h->nbuckets] = cur_start;
			h->bend[h->nbuckets] = i;
			h->nbuckets++;
			cur_start = i;
			cur_work = 0.0;
			remaining_k--;
		}
		cur_work += w;
	}
	if (h->nlist > cur_start) {
		h->bhead[h->nbuckets] = cur_start;
		h->bend[h->nbuckets] = h->nlist;
		h->nbuckets++;
	}
}

/* Least group load over all ranks (0 while any rank is free). */
static double hcp_min_load(const hcp_t *h)
{
	if (h->next_free < h->N)
		return 0.0;
	double m = INFINITY;
	for (int c = 0; c < HCP_NCLS; c++) {
		const planner_heap_ent_t *top = planner_heap_top(&h->heap[c]);
		if (top != NULL && h->gload[top->id] < m)
			m = h->gload[top->id];
	}
	return m;
}

/* next_hdp_group's greedy loop; appends leftovers to h->next. SL_ENOMEM when
 * a group heap cannot grow. */
static sl_err hcp_fill_phase(hcp_t *h)
{
	int32_t N = h->N;
	int32_t prev_needed = 0;
	int check_balance = 0;
	double max_load = 0.0;
	int64_t bfirst = 0;

	hcp_make_buckets(h);
	h->ngroups = 0;
	h->nnodes = 0;
	h->next_free = 0;
	for (int c = 0; c < HCP_NCLS; c++)
		planner_heap_clear(&h->heap[c]);

	while (bfirst < h->nbuckets) {
		int64_t bi = -1;
		for (int64_t b = bfirst; b < h->nbuckets; b++) {
			if (h->bhead[b] == h->bend[b])
				continue;
			int32_t d = h->need[h->list[h->bhead[b]]];
			if (planner_heap_size(&h->heap[hcp_cls(d, N)]) > 0 ||
			    N - h->next_free >= d) {
				bi = b;
				break;
			}
		}
		if (bi < 0)
			break; /* nothing placeable: the rest waits for the next phase */
		int32_t seq = h->list[h->bhead[bi]];
		int32_t d = h->need[seq];
		int cls = hcp_cls(d, N);
		if (prev_needed == 0)
			prev_needed = d;

		const planner_heap_ent_t *top = planner_heap_top(&h->heap[cls]);
		int32_t g = top != NULL ? (int32_t)top->id : -1;
		double best_load = g >= 0 ? h->gload[g] : INFINITY;
		int fresh = N - h->next_free >= d && 0.0 < best_load;
		if (fresh) {
			g = h->ngroups++;
			h->gstart[g] = h->next_free;
			h->gsize[g] = d;
			h->gload[g] = 0.0;
			h->gtail[g] = -1;
			h->gcount[g] = 0;
			h->next_free += d;
		}
		h->gload[g] += h->work[seq];
		if (fresh) {
			SL_CHECK(planner_heap_push(&h->heap[cls], h->gload[g], g, 0));
		} else {
			/* g was the top; its load grew */
			planner_heap_replace_top(&h->heap[cls], h->gload[g], g, 0);
		}
		if (h->gload[g] > max_load)
			max_load = h->gload[g];
		h->nseq[h->nnodes] = seq;
		h->nprev[h->nnodes] = h->gtail[g];
		h->gtail[g] = h->nnodes++;
		h->gcount[g]++;

		h->bhead[bi]++;
		while (bfirst < h->nbuckets && h->bhead[bfirst] == h->bend[bfirst])
			bfirst++;
		if (d < prev_needed)
			check_balance = 1;
		if (check_balance && bfirst < h->nbuckets &&
		    max_load - hcp_min_load(h) <= HCP_DELTA * max_load)
			break;
	}

	h->nnext = 0;
	for (int64_t b = bfirst; b < h->nbuckets; b++)
		for (int64_t i = h->bhead[b]; i < h->bend[b]; i++)
			h->next[h->nnext++] = h->list[i];
	return SL_OK;
}

/* trim_overload: heaps are not consulted after the greedy loop, so loads
 * change here without them. */
static void hcp_trim(hcp_t *h)
{
	for (;;) {
		double cur_max = h->next_free < h->N ? 0.0 : -INFINITY;
		double cur_min = h->next_free < h->N ? 0.0 : INFINITY;
		int32_t gmax = -1;
		for (int32_t g = 0; g < h->ngroups; g++) {
			if (h->gload[g] > cur_max) {
				cur_max = h->gload[g];
				gmax = g;
			}
			if (h->gload[g] < cur_min)
				cur_min = h->gload[g];
		}
		double cur_slack = cur_max - cur_min;
		if (cur_slack <= HCP_DELTA * cur_max || cur_min == 0.0 || gmax < 0)
			return;
		if (h->gcount[gmax] <= 1)
			return;
		int32_t seq = h->nseq[h->gtail[gmax]];
		double w = h->work[seq];
		double pmax = -INFINITY, pmin = INFINITY;
		for (int32_t g = 0; g < h->ngroups; g++) {
			double l = g == gmax ? h->gload[g] - w : h->gload[g];
			if (l > pmax)
				pmax = l;
			if (l < pmin)
				pmin = l;
		}
		if (!(pmax - pmin < cur_slack))
			return;
		h->gtail[gmax] = h->nprev[h->gtail[gmax]];
		h->gcount[gmax]--;
		h->gload[gmax] -= w;
		h->next[h->nnext++] = seq;
	}
}

/* fill_empty_gpus: while ranks are idle, double the first smallest group
 * (capped at N) and shift the groups after it right. */
static void hcp_fill_empty(hcp_t *h)
{
	while (h->next_free < h->N && h->ngroups > 0) {
		int32_t m = h->gsize[0];
		for (int32_t g = 1; g < h->ngroups; g++)
			if (h->gsize[g] < m)
				m = h->gsize[g];
		int32_t grow = (m <= h->N / 2 ? 2 * m : h->N) - m;
		if (grow > h->N - h->next_free)
			return; /* Megatron would fail here (non-power-of-two N) */
		int32_t gid = 0;
		while (h->gsize[gid] != m)
			gid++;
		h->gsize[gid] += grow;
		for (int32_t g = gid + 1; g < h->ngroups; g++)
			h->gstart[g] += grow;
		h->next_free += grow;
	}
}

/* Appends the phase's groups to the plan as slots. */
static sl_err hcp_emit(hcp_t *h, sl_plan_t *plan)
{
	int32_t depth = 0;
	int64_t nw = 0;
	int64_t *first = h->gfirst;
	/* Unroll each group's backward list into walk[], forward order. */
	for (int32_t g = 0; g < h->ngroups; g++) {
		first[g] = nw;
		nw += h->gcount[g];
		int64_t pos = nw - 1;
		for (int64_t x = h->gtail[g]; x >= 0; x = h->nprev[x])
			h->walk[pos--] = h->nseq[x];
		if (h->gcount[g] > depth)
			depth = h->gcount[g];
	}
	for (int32_t k = 0; k < depth; k++) {
		SL_CHECK(sl_plan_add_slot(plan));
		for (int32_t g = 0; g < h->ngroups; g++) {
			if (h->gcount[g] <= k)
				continue;
			int32_t seq = (int32_t)h->walk[first[g] + k];
			int32_t d = h->gsize[g];
			for (int32_t i = 0; i < d; i++)
				h->ranks[i] = h->gstart[g] + i;
			SL_CHECK(sl_plan_add_group(plan, h->ranks, d));
			double f = sl_cost_offload_for(h->cost, h->seqs[seq].length, d,
			                               (double)h->cost->cap);
			if (!(f < 1.0))
				return sl_seterr(SL_EINFEASIBLE,
				                 "megatron-hybrid-cp: sequence %lld (length %lld) cannot "
				                 "fit on %d ranks even with offloading",
				                 (long long)h->seqs[seq].id,
				                 (long long)h->seqs[seq].length, d);
			SL_CHECK(sl_plan_add_item(plan, seq, f));
		}
	}
	return SL_OK;
}

/* The megatron-hybrid-cp policy (sl_policy_fn contract); see the file
 * comment for the algorithm and its translation. opts is ignored. */
sl_err planner_policy_megatron_hcp(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                                   const sl_policy_opts_t *opts, sl_plan_t **out)
{
	sl_err rc = SL_OK;
	hcp_t h;
	planner_len_key_t *sorted = NULL;
	sl_plan_t *plan = NULL;
	int32_t N = cost->cl.ranks;
	int phases = 0;

	(void)opts;
	*out = NULL;
	memset(&h, 0, sizeof(h));
	if (n < 1)
		return sl_seterr(SL_EINVAL, "megatron-hybrid-cp: the request has no sequences");
	h.cost = cost;
	h.seqs = seqs;
	h.N = N;
	size_t sn = (size_t)n, sN = (size_t)N;
	h.need = malloc(sn * sizeof(*h.need));
	h.work = malloc(sn * sizeof(*h.work));
	h.list = malloc(sn * sizeof(*h.list));
	h.next = malloc(sn * sizeof(*h.next));
	h.bhead = malloc((sn + 1) * sizeof(*h.bhead));
	h.bend = malloc((sn + 1) * sizeof(*h.bend));
	h.gstart = malloc(sN * sizeof(*h.gstart));
	h.gsize = malloc(sN * sizeof(*h.gsize));
	h.gload = malloc(sN * sizeof(*h.gload));
	h.gfirst = malloc(sN * sizeof(*h.gfirst));
	h.gtail = malloc(sN * sizeof(*h.gtail));
	h.gcount = malloc(sN * sizeof(*h.gcount));
	h.nseq = malloc(sn * sizeof(*h.nseq));
	h.nprev = malloc(sn * sizeof(*h.nprev));
	h.ranks = malloc(sN * sizeof(*h.ranks));
	h.walk = malloc(sn * sizeof(*h.walk));
	sorted = malloc(sn * sizeof(*sorted));
	if (!h.need || !h.work || !h.list || !h.next || !h.bhead || !h.bend || !h.gstart ||
	    !h.gsize || !h.gload || !h.gfirst || !h.gtail || !h.gcount || !h.nseq || !h.nprev ||
	    !h.ranks || !h.walk || !sorted) {
		rc = sl_seterr(SL_ENOMEM, "megatron-hybrid-cp: out of memory for %lld sequences",
		               (long long)n);
		goto out;
	}
	/* Heap capacities, reserved once: at most N / 2^c groups of size 2^c,
	 * one of size N. */
	for (int c = 0; c < HCP_NCLS; c++) {
		int64_t cap = c < HCP_NCLS - 1 ? (c < 31 && (1LL << c) <= N ? N >> c : 0) : 1;
		SL_CHECK_GOTO(planner_heap_reserve(&h.heap[c], cap), rc, out);
	}
	for (int64_t i = 0; i < n; i++) {
		h.need[i] = planner_hcp_cp_size(cost, seqs[i].length);
		h.work[i] = hcp_workload(seqs[i].length, h.need[i]);
		sorted[i].len = seqs[i].length;
		sorted[i].idx = (int32_t)i;
	}
	/* get_groups_and_subsamples sorts once, longest first (stable). */
	qsort(sorted, sn, sizeof(*sorted), planner_len_key_desc);
	for (int64_t i = 0; i < n; i++)
		h.list[i] = sorted[i].idx;
	h.nlist = n;

	plan = sl_plan_new("megatron-hybrid-cp", cost->prof.name, N, cost->cl.ranks_per_node,
	                   cost->cap, seqs, n);
	if (!plan) {
		rc = sl_seterr(SL_ENOMEM, "megatron-hybrid-cp: out of memory for the plan");
		goto out;
	}
	while (h.nlist > 0) {
		SL_CHECK_GOTO(hcp_fill_phase(&h), rc, out);
		hcp_trim(&h);
		hcp_fill_empty(&h);
		SL_CHECK_GOTO(hcp_emit(&h, plan), rc, out);
		phases++;
		int32_t *t = h.list;
		h.list = h.next;
		h.next = t;
		h.nlist = h.nnext;
	}
	snprintf(plan->note, sizeof(plan->note), "phases=%d", phases);
	*out = plan;
	plan = NULL;
out:
	sl_plan_free(&plan);
	free(sorted);
	free(h.need);
	free(h.work);
	free(h.list);
	free(h.next);
	free(h.bhead);
	free(h.bend);
	free(h.gstart);
	free(h.gsize);
	free(h.gload);
	free(h.gfirst);
	free(h.gtail);
	free(h.gcount);
	free(h.nseq);
	free(h.nprev);
	for (int c = 0; c < HCP_NCLS; c++)
		planner_heap_fini(&h.heap[c]);
	free(h.ranks);
	free(h.walk);
	return rc;
}
