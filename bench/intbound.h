/* The integral lower bound of bench/intbound.c (issue 10, part 3). */
#ifndef SLUICE_BENCH_INTBOUND_H
#define SLUICE_BENCH_INTBOUND_H

#include <stdint.h>

#include "sluice/sluice.h"

/* A lower bound on the step (grad sync included) of every valid plan for
 * len[0..n) under c, into *lb: the least T at which intbound.c's pooled
 * MILP is feasible, searched by bisection (to 0.02%) between lo (a known
 * lower bound, e.g. the ideal) and hi (a known plan's step); ring: the
 * longest sequence on a whole number of ranks. Returns SL_ENOMEM, a GLPK
 * failure (SL_ELP), or SL_EINTERNAL when the relaxation is infeasible at
 * hi (which a valid plan's step rules out: a bug). */
sl_err bench_int_bound(const sl_cost_t *c, const int64_t *len, int n, double lo, double hi,
                       int ring, double *lb);

#endif
