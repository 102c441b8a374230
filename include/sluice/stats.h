/* sluice: the order, the medians and the quantiles every part uses for timings and errors
 * (one comparator, so every sort of doubles in the tree agrees). */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* qsort comparator for doubles, ascending: -1, 0 or 1 as *a is below, equal
 * to or above *b (-0.0 equals 0.0). A NaN compares equal to everything, so
 * it gives no total order: callers sort NaN-free arrays only (every caller's
 * values are finite timings, errors and break points). */
int sl_cmp_double(const void *a, const void *b);

/* Median of v[0..n): the middle value for odd n, the mean of the two middle
 * values for even n; NaN when n is 0. Sorts v in place (sl_cmp_double). */
double sl_median(double *v, size_t n);

/* Upper median of v[0..n): v[n / 2] after sorting, always one of the values
 * (for even n the larger middle one, never a mean); NaN when n is 0. Sorts v
 * in place (sl_cmp_double). */
double sl_median_upper(double *v, size_t n);

/* The q-quantile of v[0..n) by nearest rank: the smallest value with at
 * least ceil(q n) values at or below it (q <= 0 gives the minimum, q >= 1
 * the maximum), always one of the values; NaN when n is 0. The one rule for
 * every p50 / p99 the tools print. Sorts v in place (sl_cmp_double). */
double sl_quantile(double *v, size_t n, double q);

#ifdef __cplusplus
}
#endif
#endif
