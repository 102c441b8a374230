/* sluice planner: the one binary heap the planner's greedy loops share
 * (sluice's candidate index and rider rings, the local search's targets,
 * LPT dealing, Megatron hybrid CP's group choice). Entries are ordered by key
 * and then by id, so every order is total and every plan deterministic; the
 * sift loops are the textbook ones (CLRS ch. 6), kept as they were in each
 * caller so that the plans did not change when they moved here. */
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

sl_err planner_heap_keep(planner_heap_t *h, int64_t k, double key, int64_t id)
{
	if (h->n < k)
		return planner_heap_push(h, key, id, 0);
	planner_heap_ent_t e = {key, id, 0};
	if (k > 0 && heap_above(h, &h->e[0], &e))
		planner_heap_replace_top(h, key, id, 0);
	return SL_OK;
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
