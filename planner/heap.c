/* sluice planner: the one binary heap the planner's greedy loops share
 * (sluice's candidate index and rider rings, LPT dealing, Megatron hybrid
 * CP's group choice). Entries are ordered by key and then by id, so every
 * order is total and every plan deterministic; the sift loops are the
 * textbook ones (CLRS ch. 6), kept as they were in each caller so that the
 * plans did not change when they moved here. */
#include <stdlib.h>

#include "planner.h"

/* Whether a belongs above b: a min-heap puts the smaller key on top (ties:
 * the lower id), a max-heap the larger (ties: the higher id). With a NaN key
 * neither belongs above the other. */
static int heap_above(const planner_heap_t *h, const planner_heap_ent_t *a,
                      const planner_heap_ent_t *b)
{
	if (a->key != b->key)
		return h->max ? a->key > b->key : a->key < b->key;
	return h->max ? a->id > b->id : a->id < b->id;
}

static void heap_swap(planner_heap_ent_t *e, int64_t i, int64_t j)
{
	planner_heap_ent_t t = e[i];
	e[i] = e[j];
	e[j] = t;
}

static void heap_sift_up(planner_heap_t *h, int64_t i)
{
	while (i > 0) {
		int64_t p = (i - 1) / 2;
		if (!heap_above(h, &h->e[i], &h->e[p]))
			return;
		heap_swap(h->e, i, p);
		i = p;
	}
}

static void heap_sift_down(planner_heap_t *h, int64_t i)
{
	for (;;) {
		int64_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < h->n && heap_above(h, &h->e[l], &h->e[m]))
			m = l;
		if (r < h->n && heap_above(h, &h->e[r], &h->e[m]))
			m = r;
		if (m == i)
			return;
		heap_swap(h->e, i, m);
		i = m;
	}
}

void planner_heap_init(planner_heap_t *h, int max)
{
	h->e = NULL;
	h->n = 0;
	h->cap = 0;
	h->max = max ? 1 : 0;
}

void planner_heap_fini(planner_heap_t *h)
{
	free(h->e);
	h->e = NULL;
	h->n = 0;
	h->cap = 0;
}

sl_err planner_heap_reserve(planner_heap_t *h, int64_t cap)
{
	return planner_grow((void **)&h->e, &h->cap, cap, sizeof(planner_heap_ent_t));
}

sl_err planner_heap_push(planner_heap_t *h, double key, int64_t id, int32_t stamp)
{
	SL_CHECK(planner_heap_reserve(h, h->n + 1));
	h->e[h->n].key = key;
	h->e[h->n].id = id;
	h->e[h->n].stamp = stamp;
	heap_sift_up(h, h->n++);
	return SL_OK;
}

const planner_heap_ent_t *planner_heap_top(const planner_heap_t *h)
{
	return h->n > 0 ? &h->e[0] : NULL;
}

void planner_heap_pop(planner_heap_t *h)
{
	if (h->n == 0)
		return;
	h->e[0] = h->e[--h->n];
	heap_sift_down(h, 0);
}

void planner_heap_replace_top(planner_heap_t *h, double key, int64_t id, int32_t stamp)
{
	h->e[0].key = key;
	h->e[0].id = id;
	h->e[0].stamp = stamp;
	heap_sift_down(h, 0);
}

const planner_heap_ent_t *planner_heap_top_live(planner_heap_t *h, const int32_t *stamp)
{
	while (h->n > 0 && h->e[0].stamp != stamp[h->e[0].id])
		planner_heap_pop(h);
	return planner_heap_top(h);
}

int64_t planner_heap_size(const planner_heap_t *h)
{
	return h->n;
}

void planner_heap_clear(planner_heap_t *h)
{
	h->n = 0;
}

/* --- indexed heap -------------------------------------------------------- */

static void iheap_place(planner_iheap_t *h, int64_t i, const planner_heap_ent_t *x)
{
	h->e[i] = *x;
	h->pos[x->id] = (int32_t)i;
}

/* Moves the entry at i up or down to its place (one of the two is a no-op). */
static void iheap_fix(planner_iheap_t *h, int64_t i)
{
	static const planner_heap_t order = {NULL, 0, 0, 0}; /* a min-heap */
	planner_heap_ent_t x = h->e[i];
	while (i > 0) {
		int64_t p = (i - 1) / 2;
		if (!heap_above(&order, &x, &h->e[p]))
			break;
		iheap_place(h, i, &h->e[p]);
		i = p;
	}
	for (;;) {
		int64_t l = 2 * i + 1, r = l + 1, m = -1;
		if (l < h->n && heap_above(&order, &h->e[l], &x))
			m = l;
		if (r < h->n && heap_above(&order, &h->e[r], m < 0 ? &x : &h->e[l]))
			m = r;
		if (m < 0)
			break;
		iheap_place(h, i, &h->e[m]);
		i = m;
	}
	iheap_place(h, i, &x);
}

void planner_iheap_init(planner_iheap_t *h, int32_t *pos)
{
	h->e = NULL;
	h->n = 0;
	h->cap = 0;
	h->pos = pos;
}

void planner_iheap_fini(planner_iheap_t *h)
{
	for (int64_t i = 0; i < h->n; i++)
		h->pos[h->e[i].id] = -1;
	free(h->e);
	h->e = NULL;
	h->n = 0;
	h->cap = 0;
}

sl_err planner_iheap_set(planner_iheap_t *h, int64_t id, double key)
{
	int64_t i = h->pos[id];
	if (i < 0) {
		SL_CHECK(planner_grow((void **)&h->e, &h->cap, h->n + 1, sizeof(planner_heap_ent_t)));
		i = h->n++;
	}
	h->e[i].key = key;
	h->e[i].id = id;
	h->e[i].stamp = 0;
	iheap_fix(h, i);
	return SL_OK;
}

void planner_iheap_remove(planner_iheap_t *h, int64_t id)
{
	int64_t i = h->pos[id];
	if (i < 0)
		return;
	h->pos[id] = -1;
	if (i == --h->n)
		return;
	h->e[i] = h->e[h->n];
	iheap_fix(h, i);
}

const planner_heap_ent_t *planner_iheap_top(const planner_iheap_t *h)
{
	return h->n > 0 ? &h->e[0] : NULL;
}

int32_t planner_iheap_first(const planner_iheap_t *h, int32_t k, planner_heap_ent_t *out)
{
	/* Best-first walk from the top: the next entry in order is the least
	 * of the frontier (children of those taken), so k entries cost
	 * O(k^2) comparisons on a frontier of at most k + 1, and h is only
	 * read. */
	static const planner_heap_t order = {NULL, 0, 0, 0};
	int64_t fr[PLANNER_IHEAP_FIRST_MAX + 1];
	int32_t nf = 0, got = 0;
	if (k > PLANNER_IHEAP_FIRST_MAX)
		k = PLANNER_IHEAP_FIRST_MAX;
	if (h->n > 0)
		fr[nf++] = 0;
	while (got < k && nf > 0) {
		int32_t b = 0;
		for (int32_t j = 1; j < nf; j++)
			if (heap_above(&order, &h->e[fr[j]], &h->e[fr[b]]))
				b = j;
		int64_t i = fr[b];
		fr[b] = fr[--nf];
		out[got++] = h->e[i];
		for (int64_t c = 2 * i + 1; c <= 2 * i + 2 && c < h->n && nf <= PLANNER_IHEAP_FIRST_MAX;
		     c++)
			fr[nf++] = c;
	}
	return got;
}
