/* sluice: the order and the medians every part uses for timings and errors
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

#ifdef __cplusplus
}
#endif
#endif
