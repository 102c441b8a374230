/* Tests of the sluice planner's per-request orders (planner_sluice_orders)
 * and planner_sluice_sort_len: each build filters or sorts subsets of the
 * batch by them instead of sorting again, so they must give exactly what
 * sorting with the comparators they replace gives, ties included (the
 * plans depend on the order of equal lengths and times). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../planner/sluice_internal.h"

/* A fixed-seed generator, so every run checks the same batches. */
static uint64_t rng_next(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return *s >> 33;
}

/* Stage 1's order, as it sorted before: t1, then length, longest first;
 * then the lower index. */
typedef struct {
	double t;
	int64_t len;
	int32_t idx;
} ref_t;

static int ref_cmp(const void *a, const void *b)
{
	const ref_t *x = a, *y = b;
	if (x->t != y->t)
		return x->t > y->t ? -1 : 1;
	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

/* A batch of n sequences with few distinct lengths and times that do not
 * always follow the lengths, so every tie-break is exercised. */
static void fill(planner_sluice_ctx_t *ctx, sl_seq_t *seqs, double *t1, int32_t n, uint64_t *s)
{
	memset(ctx, 0, sizeof(*ctx));
	for (int32_t i = 0; i < n; i++) {
		seqs[i].id = i;
		seqs[i].length = 1 + (int64_t)(rng_next(s) % 12);
		t1[i] = (double)(rng_next(s) % 5) + (double)seqs[i].length * 0.5;
	}
	ctx->n = n;
	ctx->seqs = seqs;
	ctx->t1 = t1;
}

static void free_orders(planner_sluice_ctx_t *ctx)
{
	free(ctx->by_t);
	free(ctx->by_len);
	free(ctx->len_pos);
}

/* by_t and by_len match qsort with the comparators they replace; len_pos
 * is by_len's inverse. */
static void test_orders_match_qsort(void **state)
{
	(void)state;
	enum { N = 600 };
	static sl_seq_t seqs[N];
	static double t1[N];
	static ref_t ref[N];
	static planner_len_key_t lk[N];
	uint64_t s = 5;
	for (int32_t n = 1; n <= N; n = n * 3 + 1) {
		planner_sluice_ctx_t ctx;
		fill(&ctx, seqs, t1, n, &s);
		assert_int_equal(planner_sluice_orders(&ctx), SL_OK);
		for (int32_t i = 0; i < n; i++) {
			ref[i] = (ref_t){t1[i], seqs[i].length, i};
			lk[i] = (planner_len_key_t){seqs[i].length, i};
		}
		qsort(ref, (size_t)n, sizeof(ref[0]), ref_cmp);
		qsort(lk, (size_t)n, sizeof(lk[0]), planner_len_key_desc);
		for (int32_t z = 0; z < n; z++) {
			assert_int_equal(ctx.by_t[z], ref[z].idx);
			assert_int_equal(ctx.by_len[z], lk[z].idx);
			assert_int_equal(ctx.len_pos[lk[z].idx], z);
		}
		free_orders(&ctx);
	}
}

/* Random subsets in random order, small (insertion) and large (qsort),
 * come out of planner_sluice_sort_len as planner_len_key_desc sorts them. */
static void test_sort_len_subsets(void **state)
{
	(void)state;
	enum { N = 300 };
	static sl_seq_t seqs[N];
	static double t1[N];
	static int32_t idx[N];
	static planner_len_key_t lk[N];
	uint64_t s = 9;
	planner_sluice_ctx_t ctx;
	fill(&ctx, seqs, t1, N, &s);
	assert_int_equal(planner_sluice_orders(&ctx), SL_OK);
	for (int round = 0; round < 200; round++) {
		int32_t m = round < 100 ? (int32_t)(rng_next(&s) % 30) : (int32_t)(rng_next(&s) % N);
		/* m distinct indices, shuffled */
		for (int32_t i = 0; i < N; i++)
			idx[i] = i;
		for (int32_t i = N - 1; i > 0; i--) {
			int32_t j = (int32_t)(rng_next(&s) % (uint64_t)(i + 1)), x = idx[i];
			idx[i] = idx[j];
			idx[j] = x;
		}
		for (int32_t q = 0; q < m; q++)
			lk[q] = (planner_len_key_t){seqs[idx[q]].length, idx[q]};
		qsort(lk, (size_t)m, sizeof(lk[0]), planner_len_key_desc);
		planner_sluice_sort_len(&ctx, idx, m);
		for (int32_t q = 0; q < m; q++)
			assert_int_equal(idx[q], lk[q].idx);
	}
	free_orders(&ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_orders_match_qsort),
	    cmocka_unit_test(test_sort_len_subsets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
