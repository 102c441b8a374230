/* sluice planner: the sort orders several policies share, each a total
 * order so that qsort's result (and so every plan) is deterministic. */
#include "planner.h"

int planner_len_key_desc(const void *a, const void *b)
{
	const planner_len_key_t *x = a, *y = b;
	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

int planner_key_asc(const void *a, const void *b)
{
	const planner_key_t *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

int planner_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}
