/* Tests of the planner's binary heap (planner/heap.c): pop order against a
 * sorted reference, ties by id in both directions, growth from a zeroed
 * struct, re-keying the top (LPT dealing against a linear scan), and lazy
 * deletion by stamp; the indexed heap against a brute force reference under
 * random re-keys and removals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../planner/planner.h"

/* A fixed-seed generator, so every run checks the same entries. */
static uint64_t rng_next(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return *s >> 33;
}

/* Pops every entry of h into key[] and id[] (n of them). */
static void drain(planner_heap_t *h, double *key, int64_t *id, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		const planner_heap_ent_t *e = planner_heap_top(h);
		assert_non_null(e);
		key[i] = e->key;
		id[i] = e->id;
		planner_heap_pop(h);
	}
	assert_int_equal(planner_heap_size(h), 0);
	assert_null(planner_heap_top(h));
}

/* Random keys with many repeats pop as qsort sorts them (key, then id):
 * ascending from a min-heap, descending from a max-heap. */
static void test_order_matches_sort(void **state)
{
	(void)state;
	enum { N = 1000 };
	static planner_key_t ref[N];
	static double key[N];
	static int64_t id[N];
	for (int max = 0; max <= 1; max++) {
		planner_heap_t h;
		planner_heap_init(&h, max);
		uint64_t s = 7;
		for (int32_t i = 0; i < N; i++) {
			/* 50 distinct keys, so ties are common */
			double k = (double)(rng_next(&s) % 50) * 0.25 - 3.0;
			int32_t who = (int32_t)((i * 389) % N); /* ids out of order */
			ref[i].key = k;
			ref[i].id = who;
			assert_int_equal(planner_heap_push(&h, k, who, 0), SL_OK);
		}
		assert_int_equal(planner_heap_size(&h), N);
		qsort(ref, N, sizeof(ref[0]), planner_key_asc);
		drain(&h, key, id, N);
		for (int32_t i = 0; i < N; i++) {
			int32_t r = max ? N - 1 - i : i;
			assert_true(key[i] == ref[r].key);
			assert_int_equal(id[i], ref[r].id);
		}
		planner_heap_fini(&h);
	}
}

/* Equal keys (0.0 and -0.0 are equal) come out by id: lowest first from a
 * min-heap, highest first from a max-heap, whatever the push order. */
static void test_ties_by_id(void **state)
{
	(void)state;
	const int64_t ids[] = {5, 2, 9, 0, 7, 3, 8, 1, 6, 4};
	double key[10];
	int64_t id[10];
	for (int max = 0; max <= 1; max++) {
		planner_heap_t h;
		planner_heap_init(&h, max);
		for (int i = 0; i < 10; i++)
			assert_int_equal(planner_heap_push(&h, i % 2 ? -0.0 : 0.0, ids[i], 0),
			                 SL_OK);
		drain(&h, key, id, 10);
		for (int i = 0; i < 10; i++)
			assert_int_equal(id[i], max ? 9 - i : i);
		planner_heap_fini(&h);
	}
	/* a smaller key beats a lower id */
	planner_heap_t h;
	planner_heap_init(&h, 0);
	assert_int_equal(planner_heap_push(&h, 2.0, 0, 0), SL_OK);
	assert_int_equal(planner_heap_push(&h, 1.0, 9, 0), SL_OK);
	assert_int_equal(planner_heap_top(&h)->id, 9);
	planner_heap_fini(&h);
}

/* A zeroed heap is an empty min-heap that grows on push; clear keeps the
 * storage; fini leaves an empty heap that can be used again. */
static void test_growth_and_clear(void **state)
{
	(void)state;
	planner_heap_t h;
	memset(&h, 0, sizeof(h));
	assert_null(planner_heap_top(&h));
	planner_heap_pop(&h); /* empty: nothing happens */
	assert_int_equal(planner_heap_size(&h), 0);
	for (int64_t i = 4999; i >= 0; i--)
		assert_int_equal(planner_heap_push(&h, (double)(i / 3), i, 0), SL_OK);
	assert_int_equal(planner_heap_size(&h), 5000);
	assert_true(h.cap >= 5000);
	for (int64_t i = 0; i < 5000; i++) {
		assert_int_equal(planner_heap_top(&h)->id, i);
		planner_heap_pop(&h);
	}
	int64_t cap = h.cap;
	assert_int_equal(planner_heap_push(&h, 1.0, 1, 0), SL_OK);
	planner_heap_clear(&h);
	assert_int_equal(planner_heap_size(&h), 0);
	assert_null(planner_heap_top(&h));
	assert_int_equal(h.cap, cap);
	planner_heap_fini(&h);
	assert_null(h.e);
	assert_int_equal(planner_heap_reserve(&h, 40), SL_OK);
	assert_true(h.cap >= 40);
	assert_int_equal(planner_heap_push(&h, 3.0, 3, 0), SL_OK);
	assert_int_equal(planner_heap_top(&h)->id, 3);
	planner_heap_fini(&h);
}

/* LPT dealing through replace_top gives each job to the machine a linear
 * scan picks: least load, ties the lowest index. Job times repeat so that
 * loads tie often. */
static void test_replace_top_lpt(void **state)
{
	(void)state;
	enum { M = 13, J = 400 };
	double load_h[M] = {0}, load_s[M] = {0};
	planner_heap_t h;
	planner_heap_init(&h, 0);
	for (int32_t m = M - 1; m >= 0; m--)
		assert_int_equal(planner_heap_push(&h, 0.0, m, 0), SL_OK);
	uint64_t s = 11;
	for (int j = 0; j < J; j++) {
		double ms = (double)(1 + rng_next(&s) % 4);
		int32_t mh = (int32_t)planner_heap_top(&h)->id;
		int32_t ms_ = 0;
		for (int32_t m = 1; m < M; m++)
			if (load_s[m] < load_s[ms_])
				ms_ = m;
		assert_int_equal(mh, ms_);
		load_h[mh] += ms;
		load_s[ms_] += ms;
		planner_heap_replace_top(&h, load_h[mh], mh, 0);
	}
	assert_int_equal(planner_heap_size(&h), M);
	planner_heap_fini(&h);
}

/* Lazy deletion: re-keying an id bumps its stamp and pushes it again; the
 * stale entries never surface through top_live, live ones come out in
 * order, and a heap of stale entries only reads as empty. */
static void test_lazy_stamps(void **state)
{
	(void)state;
	int32_t stamp[6] = {0};
	planner_heap_t h;
	memset(&h, 0, sizeof(h));
	for (int64_t i = 0; i < 6; i++)
		assert_int_equal(planner_heap_push(&h, (double)i, i, ++stamp[i]), SL_OK);
	/* id 0 and id 2 move behind everyone; id 5 moves to the front, tying
	 * with nothing; id 4 is re-keyed twice (only the last counts) */
	assert_int_equal(planner_heap_push(&h, 10.0, 0, ++stamp[0]), SL_OK);
	assert_int_equal(planner_heap_push(&h, 10.0, 2, ++stamp[2]), SL_OK);
	assert_int_equal(planner_heap_push(&h, -1.0, 5, ++stamp[5]), SL_OK);
	assert_int_equal(planner_heap_push(&h, 0.5, 4, ++stamp[4]), SL_OK);
	assert_int_equal(planner_heap_push(&h, 7.0, 4, ++stamp[4]), SL_OK);
	const int64_t want[6] = {5, 1, 3, 4, 0, 2};
	const double wkey[6] = {-1.0, 1.0, 3.0, 7.0, 10.0, 10.0};
	for (int i = 0; i < 6; i++) {
		const planner_heap_ent_t *e = planner_heap_top_live(&h, stamp);
		assert_non_null(e);
		assert_int_equal(e->id, want[i]);
		assert_true(e->key == wkey[i]);
		assert_int_equal(e->stamp, stamp[e->id]);
		planner_heap_pop(&h);
	}
	assert_null(planner_heap_top_live(&h, stamp));
	assert_int_equal(planner_heap_size(&h), 0);
	/* only stale entries left: empty */
	assert_int_equal(planner_heap_push(&h, 1.0, 3, stamp[3]), SL_OK);
	stamp[3]++;
	assert_null(planner_heap_top_live(&h, stamp));
	assert_int_equal(planner_heap_size(&h), 0);
	planner_heap_fini(&h);
}

/* Whether (ka, a) comes before (kb, b) in a min-heap's order. */
static int before(double ka, int64_t a, double kb, int64_t b)
{
	return ka < kb || (ka == kb && a < b);
}

/* The indexed heap under random sets (new ids and re-keys up and down,
 * keys with many ties) and removals, two heaps sharing one pos array: after
 * every step its top and its first k entries are the k least (key, id) of
 * a brute-force reference, in order, and pos points at every id's entry. */
static void test_indexed(void **state)
{
	(void)state;
	enum { IDS = 40 };
	int32_t pos[2 * IDS];
	double key[2][IDS];
	int in[2][IDS];
	planner_iheap_t h[2];
	for (int i = 0; i < 2 * IDS; i++)
		pos[i] = -1;
	memset(in, 0, sizeof(in));
	planner_iheap_init(&h[0], pos);
	planner_iheap_init(&h[1], pos); /* h[1] holds ids IDS .. 2 IDS - 1 */
	uint64_t s = 7;
	for (int step = 0; step < 4000; step++) {
		int w = (int)(rng_next(&s) % 2);
		int64_t id = (int64_t)(rng_next(&s) % IDS);
		if (rng_next(&s) % 4 == 0) {
			planner_iheap_remove(&h[w], id + w * IDS);
			in[w][id] = 0;
		} else {
			double k = (double)(rng_next(&s) % 12);
			assert_int_equal(planner_iheap_set(&h[w], id + w * IDS, k), SL_OK);
			key[w][id] = k;
			in[w][id] = 1;
		}
		for (int v = 0; v < 2; v++) {
			/* the reference: selection of the k least */
			int64_t order[IDS];
			int m = 0;
			for (int64_t i = 0; i < IDS; i++)
				if (in[v][i])
					order[m++] = i;
			for (int a = 0; a < m; a++)
				for (int b = a + 1; b < m; b++)
					if (before(key[v][order[b]], order[b], key[v][order[a]], order[a])) {
						int64_t t = order[a];
						order[a] = order[b];
						order[b] = t;
					}
			assert_int_equal(h[v].n, m);
			for (int64_t i = 0; i < IDS; i++) {
				int32_t p = pos[v * IDS + i];
				assert_true((p >= 0) == (in[v][i] != 0));
				if (p >= 0)
					assert_int_equal(h[v].e[p].id, i + v * IDS);
			}
			const planner_heap_ent_t *top = planner_iheap_top(&h[v]);
			if (m == 0) {
				assert_null(top);
				continue;
			}
			assert_int_equal(top->id, order[0] + v * IDS);
			planner_heap_ent_t first[PLANNER_IHEAP_FIRST_MAX];
			int32_t k = (int32_t)(1 + rng_next(&s) % 12);
			int32_t got = planner_iheap_first(&h[v], k, first);
			assert_int_equal(got, k < m ? k : m);
			for (int32_t j = 0; j < got; j++) {
				assert_int_equal(first[j].id, order[j] + v * IDS);
				assert_true(first[j].key == key[v][order[j]]);
			}
		}
	}
	planner_iheap_fini(&h[0]);
	planner_iheap_fini(&h[1]);
	for (int i = 0; i < 2 * IDS; i++)
		assert_int_equal(pos[i], -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_order_matches_sort), cmocka_unit_test(test_ties_by_id),
	    cmocka_unit_test(test_growth_and_clear),   cmocka_unit_test(test_replace_top_lpt),
	    cmocka_unit_test(test_lazy_stamps),        cmocka_unit_test(test_indexed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
