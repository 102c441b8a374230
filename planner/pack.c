/* sluice planner: best-fit-decreasing packing, LPT dealing and the
 * fixed-degree plan builder (see pack.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pack.h"
#include "planner.h"
#include "sluice/rng.h"

int32_t planner_pow2_floor(int32_t n)
{
	int32_t d = 1;
	while (d <= n / 2)
		d *= 2;
	return d;
}

int32_t planner_pow2_holding(const sl_cost_t *cost, int64_t s)
{
	for (int64_t d = 1; d <= cost->cl.ranks; d *= 2)
		if (sl_cost_padded(s, (int32_t)d) / d <= cost->cap)
			return (int32_t)d;
	return 0;
}

int32_t planner_offload_degree(const sl_cost_t *cost, int64_t s)
{
	int32_t d = planner_pow2_floor(cost->cl.ranks);
	if (sl_cost_offload_for(cost, s, d, (double)cost->cap) < 1.0)
		return d;
	return cost->cl.ranks;
}

/* ---- best fit: a treap of open bins keyed by (remaining, bin index) ---- */

typedef struct pack_node {
	int64_t rem;
	uint64_t pri;
	int32_t l, r;
} pack_node_t;

static int pack_key_less(const pack_node_t *t, int32_t a, int64_t rem, int32_t id)
{
	return t[a].rem < rem || (t[a].rem == rem && a < id);
}

/* Splits tree x into nodes with key < (rem, id) and the rest. */
static void pack_split(pack_node_t *t, int32_t x, int64_t rem, int32_t id, int32_t *lo, int32_t *hi)
{
	if (x < 0) {
		*lo = *hi = -1;
		return;
	}
	if (pack_key_less(t, x, rem, id)) {
		pack_split(t, t[x].r, rem, id, &t[x].r, hi);
		*lo = x;
	} else {
		pack_split(t, t[x].l, rem, id, lo, &t[x].l);
		*hi = x;
	}
}

static int32_t pack_merge(pack_node_t *t, int32_t a, int32_t b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	if (t[a].pri > t[b].pri) {
		t[a].r = pack_merge(t, t[a].r, b);
		return a;
	}
	t[b].l = pack_merge(t, a, t[b].l);
	return b;
}

static int32_t pack_insert(pack_node_t *t, int32_t root, int32_t x)
{
	int32_t lo, hi;
	t[x].l = t[x].r = -1;
	pack_split(t, root, t[x].rem, x, &lo, &hi);
	return pack_merge(t, pack_merge(t, lo, x), hi);
}

static int32_t pack_erase(pack_node_t *t, int32_t root, int32_t x)
{
	int32_t lo, mid, hi;
	pack_split(t, root, t[x].rem, x, &lo, &mid);
	pack_split(t, mid, t[x].rem, x + 1, &mid, &hi);
	return pack_merge(t, lo, hi);
}

/* The node with the least key whose remaining capacity is >= need, or -1. */
static int32_t pack_lower_bound(const pack_node_t *t, int32_t x, int64_t need)
{
	int32_t best = -1;
	while (x >= 0) {
		if (t[x].rem >= need) {
			best = x;
			x = t[x].l;
		} else {
			x = t[x].r;
		}
	}
	return best;
}

typedef struct pack_item {
	int64_t size; /* p / d, resident tokens per rank without offload */
	int64_t len;
	int32_t seq;
} pack_item_t;

static int pack_item_cmp(const void *a, const void *b)
{
	const pack_item_t *x = a, *y = b;
	if (x->size != y->size)
		return x->size > y->size ? -1 : 1;
	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

void planner_bins_fini(planner_bins_t *b)
{
	free(b->bin_off);
	free(b->seq);
	free(b->off);
	memset(b, 0, sizeof(*b));
}

sl_err planner_pack_bfd(const sl_cost_t *cost, const sl_seq_t *seqs, const int32_t *idx, int64_t n,
                        int32_t d, planner_bins_t *out)
{
	sl_err rc = SL_OK;
	pack_item_t *items = NULL;
	pack_node_t *tree = NULL;
	int32_t *bin_of = NULL;  /* item (sorted position) -> bin */
	int64_t *count = NULL;   /* items per bin */
	int64_t nbins = 0;
	int32_t root = -1;
	int64_t cap = cost->cap;

	memset(out, 0, sizeof(*out));
	if (d < 1 || d > cost->cl.ranks)
		return sl_seterr(SL_EINVAL, "pack: group size %d outside [1, %d]", d, cost->cl.ranks);
	items = malloc((size_t)(n ? n : 1) * sizeof(*items));
	tree = malloc((size_t)(n ? n : 1) * sizeof(*tree));
	bin_of = malloc((size_t)(n ? n : 1) * sizeof(*bin_of));
	out->seq = malloc((size_t)(n ? n : 1) * sizeof(*out->seq));
	out->off = malloc((size_t)(n ? n : 1) * sizeof(*out->off));
	if (!items || !tree || !bin_of || !out->seq || !out->off) {
		rc = sl_seterr(SL_ENOMEM, "pack: out of memory for %lld sequences", (long long)n);
		goto out;
	}
	for (int64_t i = 0; i < n; i++) {
		int64_t s = seqs[idx[i]].length;
		items[i].size = sl_cost_padded(s, d) / d;
		items[i].len = s;
		items[i].seq = idx[i];
	}
	qsort(items, (size_t)n, sizeof(*items), pack_item_cmp);

	for (int64_t i = 0; i < n; i++) {
		int64_t size = items[i].size;
		int32_t b;
		if (size > cap) {
			/* Too long for d ranks: offloaded, alone in a full bin. */
			double f = sl_cost_offload_for(cost, items[i].len, d, (double)cap);
			if (!(f < 1.0)) {
				rc = sl_seterr(SL_EINFEASIBLE,
				               "sequence %lld (length %lld) cannot fit on %d ranks: %lld "
				               "tokens per rank against a cap of %lld even offloading "
				               "the profile's max_offload %.3f",
				               (long long)seqs[items[i].seq].id, (long long)items[i].len,
				               d, (long long)items[i].size, (long long)cap,
				               cost->prof.max_offload);
				goto out;
			}
			b = (int32_t)nbins++;
			tree[b].rem = 0;
			bin_of[i] = b;
			continue;
		}
		b = pack_lower_bound(tree, root, size);
		if (b < 0) {
			b = (int32_t)nbins++;
			tree[b].rem = cap;
			/* a hash of the bin index: the tree's shape, and with it the
			 * run time, never depends on anything but the input */
			tree[b].pri = sl_mix64((uint64_t)b);
		} else {
			root = pack_erase(tree, root, b);
		}
		tree[b].rem -= size;
		if (tree[b].rem > 0)
			root = pack_insert(tree, root, b);
		bin_of[i] = b;
	}

	/* Lay the bins out contiguously, items in the order they were packed. */
	out->bin_off = calloc((size_t)nbins + 1, sizeof(*out->bin_off));
	count = calloc((size_t)nbins + 1, sizeof(*count));
	if (!out->bin_off || !count) {
		rc = sl_seterr(SL_ENOMEM, "pack: out of memory for %lld bins", (long long)nbins);
		goto out;
	}
	for (int64_t i = 0; i < n; i++)
		out->bin_off[bin_of[i] + 1]++;
	for (int64_t b = 0; b < nbins; b++)
		out->bin_off[b + 1] += out->bin_off[b];
	for (int64_t i = 0; i < n; i++) {
		int32_t b = bin_of[i];
		int64_t pos = out->bin_off[b] + count[b]++;
		out->seq[pos] = items[i].seq;
		out->off[pos] =
			items[i].size > cap ? sl_cost_offload_for(cost, items[i].len, d, (double)cap)
			                    : 0.0;
	}
	out->nbins = nbins;
out:
	free(items);
	free(tree);
	free(bin_of);
	free(count);
	if (rc != SL_OK)
		planner_bins_fini(out);
	return rc;
}

/* ---- LPT dealing ---- */

typedef struct lpt_job {
	double ms;
	int64_t j;
} lpt_job_t;

static int lpt_job_cmp(const void *a, const void *b)
{
	const lpt_job_t *x = a, *y = b;
	if (x->ms != y->ms)
		return x->ms > y->ms ? -1 : 1;
	return (x->j > y->j) - (x->j < y->j);
}

sl_err planner_lpt_deal(const double *job_ms, int64_t njobs, int32_t nmach, int64_t *order,
                        int32_t *owner, double *load)
{
	lpt_job_t *jobs = malloc((size_t)(njobs ? njobs : 1) * sizeof(*jobs));
	double *ld = calloc((size_t)nmach, sizeof(*ld));
	planner_heap_t heap; /* machines by load, ties by the lower index */
	planner_heap_init(&heap, 0);
	if (!jobs || !ld || planner_heap_reserve(&heap, nmach) != SL_OK) {
		free(jobs);
		free(ld);
		planner_heap_fini(&heap);
		return sl_seterr(SL_ENOMEM, "lpt: out of memory for %lld jobs", (long long)njobs);
	}
	for (int64_t j = 0; j < njobs; j++) {
		jobs[j].ms = job_ms[j];
		jobs[j].j = j;
	}
	qsort(jobs, (size_t)njobs, sizeof(*jobs), lpt_job_cmp);
	/* reserved above: these pushes cannot fail */
	for (int32_t m = 0; m < nmach; m++)
		(void)planner_heap_push(&heap, 0.0, m, 0);
	for (int64_t k = 0; k < njobs; k++) {
		int32_t m = (int32_t)planner_heap_top(&heap)->id;
		order[k] = jobs[k].j;
		owner[jobs[k].j] = m;
		ld[m] += jobs[k].ms;
		planner_heap_replace_top(&heap, ld[m], m, 0);
	}
	if (load)
		memcpy(load, ld, (size_t)nmach * sizeof(*ld));
	free(jobs);
	planner_heap_fini(&heap);
	free(ld);
	return SL_OK;
}

/* ---- the fixed-degree plan ---- */

sl_err planner_fixed_sp_plan(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n, int32_t d,
                             const char *policy, sl_plan_t **out)
{
	sl_err rc = SL_OK;
	int32_t N = cost->cl.ranks;
	planner_bins_t bins = {0};
	int32_t *idx = NULL, *owner = NULL, *ranks = NULL;
	int64_t *order = NULL, *first = NULL, *next = NULL;
	double *ms = NULL;
	sl_plan_t *plan = NULL;

	*out = NULL;
	if (d < 1 || d > N)
		return sl_seterr(SL_EINVAL, "sequence-parallel degree %d outside [1, %d ranks]", d, N);
	int32_t ngroups = N / d;

	idx = malloc((size_t)n * sizeof(*idx));
	ranks = malloc((size_t)d * sizeof(*ranks));
	if (!idx || !ranks) {
		rc = sl_seterr(SL_ENOMEM, "static: out of memory for %lld sequences", (long long)n);
		goto out;
	}
	for (int64_t i = 0; i < n; i++)
		idx[i] = (int32_t)i;
	SL_CHECK_GOTO(planner_pack_bfd(cost, seqs, idx, n, d, &bins), rc, out);

	/* Dealing ranks micro-batches by their time on group 0; with ulysses, or
	 * ring groups that never straddle a node, every group times them alike
	 * (the evaluation uses each group's own placement either way). */
	for (int32_t i = 0; i < d; i++)
		ranks[i] = i;
	int one_node = sl_cost_one_node(cost, ranks, d);
	int64_t nb = bins.nbins;
	ms = malloc((size_t)(nb ? nb : 1) * sizeof(*ms));
	order = malloc((size_t)(nb ? nb : 1) * sizeof(*order));
	owner = malloc((size_t)(nb ? nb : 1) * sizeof(*owner));
	next = malloc((size_t)(nb ? nb : 1) * sizeof(*next));
	first = malloc((size_t)ngroups * sizeof(*first));
	if (!ms || !order || !owner || !next || !first) {
		rc = sl_seterr(SL_ENOMEM, "static: out of memory for %lld micro-batches", (long long)nb);
		goto out;
	}
	for (int64_t b = 0; b < nb; b++) {
		double t = cost->prof.beta;
		for (int64_t k = bins.bin_off[b]; k < bins.bin_off[b + 1]; k++)
			t += sl_cost_seq_ms(cost, seqs[bins.seq[k]].length, d, bins.off[k], one_node);
		ms[b] = t;
	}
	SL_CHECK_GOTO(planner_lpt_deal(ms, nb, ngroups, order, owner, NULL), rc, out);

	/* Per group, its micro-batches in dealing order (a linked list through
	 * next[], appended at the tail), then slot k takes every group's k-th. */
	int64_t *tail = malloc((size_t)ngroups * sizeof(*tail));
	if (!tail) {
		rc = sl_seterr(SL_ENOMEM, "static: out of memory for %d groups", ngroups);
		goto out;
	}
	for (int32_t g = 0; g < ngroups; g++)
		first[g] = tail[g] = -1;
	for (int64_t k = 0; k < nb; k++) {
		int64_t b = order[k];
		int32_t g = owner[b];
		next[b] = -1;
		if (tail[g] < 0)
			first[g] = b;
		else
			next[tail[g]] = b;
		tail[g] = b;
	}
	free(tail);

	plan = sl_plan_new(policy, cost->prof.name, N, cost->cl.ranks_per_node, cost->cap, seqs, n);
	if (!plan) {
		rc = sl_seterr(SL_ENOMEM, "static: out of memory for the plan");
		goto out;
	}
	for (;;) {
		int any = 0;
		for (int32_t g = 0; g < ngroups; g++) {
			int64_t b = first[g];
			if (b < 0)
				continue;
			if (!any)
				SL_CHECK_GOTO(sl_plan_add_slot(plan), rc, out);
			any = 1;
			for (int32_t i = 0; i < d; i++)
				ranks[i] = g * d + i;
			SL_CHECK_GOTO(sl_plan_add_group(plan, ranks, d), rc, out);
			for (int64_t k = bins.bin_off[b]; k < bins.bin_off[b + 1]; k++)
				SL_CHECK_GOTO(sl_plan_add_item(plan, bins.seq[k], bins.off[k]), rc, out);
			first[g] = next[b];
		}
		if (!any)
			break;
	}
	*out = plan;
	plan = NULL;
out:
	sl_plan_free(&plan);
	planner_bins_fini(&bins);
	free(idx);
	free(ranks);
	free(ms);
	free(order);
	free(owner);
	free(next);
	free(first);
	return rc;
}
