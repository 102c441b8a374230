/* sluice: the double comparator, the medians and the quantiles (include/sluice/stats.h). */
#include <math.h>
#include <stdlib.h>

#include "sluice/stats.h"

int sl_cmp_double(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double sl_median(double *v, size_t n)
{
	if (n == 0)
		return NAN;
	qsort(v, n, sizeof(*v), sl_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double sl_median_upper(double *v, size_t n)
{
	if (n == 0)
		return NAN;
	qsort(v, n, sizeof(*v), sl_cmp_double);
	return v[n / 2];
}

double sl_quantile(double *v, size_t n, double q)
{
	if (n == 0)
		return NAN;
	qsort(v, n, sizeof(*v), sl_cmp_double);
	const double r = ceil(q * (double)n);
	size_t k = r < 1 ? 0 : (size_t)r - 1;
	return v[k < n ? k : n - 1];
}
