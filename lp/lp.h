/* sluice lp: the only part of sluice that talks to GLPK. A thin layer that
 * builds LPs/MILPs from sparse rows, solves them with GLPK's simplex
 * (glp_simplex) or branch-and-cut (glp_intopt), and turns GLPK's status codes,
 * terminal output and fatal errors into sl_err values and sluice logging
 * (SL_SUB_LP).
 *
 * Indices are 0-based everywhere in this API (GLPK's are 1-based; the
 * translation stays inside lp.c). A bound of -INFINITY / INFINITY means "no
 * bound"; lo == hi fixes a column or makes a row an equality.
 *
 * Threads: GLPK keeps one environment per thread (thread-local storage), so an
 * lp_t belongs to the thread that created it and must be used and freed there
 * (calls from another thread fail with SL_EINVAL). Different threads may solve
 * different problems at the same time. A thread that used this API should call
 * lp_thread_end() before it exits, or GLPK's per-thread memory leaks.
 *
 * Fatal GLPK errors (an invalid argument GLPK itself rejects, its memory limit)
 * do not abort the process: every GLPK call runs under glp_error_hook with the
 * setjmp/longjmp recovery GLPK documents. Recovery must free the thread's whole
 * GLPK environment (glp_free_env), so after such an error every lp_t of that
 * thread is dead: calls on it return SL_ELP ("GLPK environment was reset"),
 * and lp_free still releases our side of it. */
#ifndef SLUICE_LP_H
#define SLUICE_LP_H

#include <stdint.h>

#include "sluice/err.h"
#include "sluice/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lp lp_t;

typedef enum lp_kind {
	LP_CONTINUOUS = 0,
	LP_INTEGER,
	LP_BINARY /* integer in [0, 1]; lo/hi passed to lp_add_col are ignored */
} lp_kind;

typedef enum lp_status {
	LP_UNSOLVED = 0, /* not solved yet, or the last solve failed */
	LP_OPTIMAL,      /* proven optimal (within mip_gap for a MIP) */
	LP_FEASIBLE,     /* a limit stopped the search; the solution is feasible */
	LP_INFEASIBLE,   /* proven: no feasible solution exists */
	LP_UNBOUNDED,    /* the objective is unbounded */
	LP_NO_SOLUTION   /* a limit stopped the search before any feasible solution */
} lp_status;

/* Solver options; zero-initialised means: no limits, prove optimality, no
 * presolve, no cuts, no incumbent, quiet. */
typedef struct lp_opts {
	int64_t it_lim;     /* simplex iterations per glp_simplex call (0 = none); deterministic */
	int64_t node_lim;   /* branch-and-cut subproblems created (0 = none); deterministic */
	double tm_lim_ms;   /* wall-clock limit (0 = none); a solve cut by it is not reproducible */
	double mip_gap;     /* stop when the relative gap is below this (0 = GLPK's default 0) */
	int presolve;       /* use GLPK's presolver (for a MIP: off whenever warm is given) */
	int cuts;           /* MIP: enable GLPK's MIR, Gomory, cover and clique cuts */
	const double *warm; /* MIP: an incumbent, lp_ncols values (checked, then handed to
	                       glp_intopt from its GLP_IHEUR callback via glp_ios_heur_sol) */
	int verbose;        /* 1: GLPK's progress messages (logged at SL_LOG_DEBUG) */
	int dual;           /* simplex: dual first, then primal (GLP_DUALP); often faster when
	                       re-solving after bound or right-hand side changes */
} lp_opts_t;

/* What a solve found. */
typedef struct lp_result {
	lp_status status;
	double obj;         /* objective of the solution held (when OPTIMAL or FEASIBLE) */
	double bound;       /* best proven bound on the optimum (minimise: lower bound);
	                       equals obj when OPTIMAL; -/+INFINITY when unknown */
	int64_t iterations; /* simplex iterations (lp_solve), as GLPK counts them */
	int64_t nodes;      /* branch-and-cut subproblems created (lp_solve_mip) */
	int truncated;      /* 1 when it_lim, node_lim, tm_lim or mip_gap ended the search */
	int warm_used;      /* 1 when the incumbent was accepted (it is then the answer unless
	                       the search found better) */
} lp_result_t;

/* Creates an empty problem named name (may be NULL) that minimises (minimise
 * != 0) or maximises its objective. *out is owned by the caller (lp_free).
 * Returns SL_ENOMEM or SL_ELP (GLPK error). */
sl_err lp_new(const char *name, int minimise, lp_t **out);
/* Frees the problem and nulls *lp; safe on NULL and on a dead problem. */
void lp_free(lp_t **lp);

/* Appends a column (variable) of this kind with bounds [lo, hi] (infinite
 * for none) and objective coefficient obj. Stores its 0-based index in *col
 * when col is non-NULL. name may be NULL. Errors: SL_EINVAL (lo > hi, NaN). */
sl_err lp_add_col(lp_t *lp, const char *name, lp_kind kind, double lo, double hi, double obj,
                  int *col);
/* Appends a row lo <= sum_k vals[k] * x[cols[k]] <= hi given sparsely (nnz
 * entries, distinct columns that already exist, finite values; zeros are
 * dropped). Stores its 0-based index in *row when non-NULL. Errors: SL_EINVAL
 * naming the entry that is wrong. */
sl_err lp_add_row(lp_t *lp, const char *name, int nnz, const int *cols, const double *vals,
                  double lo, double hi, int *row);
/* Replaces row's coefficients by the sparse (cols, vals) given (same rules
 * as lp_add_row); its bounds stay. The next lp_solve starts from the basis
 * the last one ended with (GLPK refactorises it). */
sl_err lp_set_row(lp_t *lp, int row, int nnz, const int *cols, const double *vals);
/* Changes a column's bounds, a row's bounds, an objective coefficient or the
 * objective constant; the problem can then be solved again. */
sl_err lp_set_col_bounds(lp_t *lp, int col, double lo, double hi);
sl_err lp_set_row_bounds(lp_t *lp, int row, double lo, double hi);
sl_err lp_set_obj(lp_t *lp, int col, double coef);
sl_err lp_set_obj_const(lp_t *lp, double c0);

int lp_ncols(const lp_t *lp);
int lp_nrows(const lp_t *lp);

/* Checks that x (lp_ncols values) satisfies every bound, row and
 * integrality within tol (absolute, scaled by 1 + |bound|). Returns SL_OK or
 * SL_EINVAL with a message naming the first violated column or row. */
sl_err lp_check_point(const lp_t *lp, const double *x, double tol);

/* Solves the continuous relaxation (integer kinds are ignored) with the
 * primal simplex. opts may be NULL. Returns SL_OK when status is OPTIMAL;
 * SL_EINFEASIBLE (no feasible point), SL_ELP (unbounded, numerical failure,
 * GLPK error) or SL_ETIMEOUT (it_lim or tm_lim reached) otherwise, each with
 * a message naming the problem. *res (may be NULL) is filled in every case. */
sl_err lp_solve(lp_t *lp, const lp_opts_t *opts, lp_result_t *res);

/* Solves the MILP by branch-and-cut. Without presolve the LP relaxation is
 * solved first by lp_solve (its it_lim applies). Returns SL_OK when a
 * feasible solution is held (status OPTIMAL, or FEASIBLE when a limit cut
 * the search: truncated = 1); SL_EINFEASIBLE when proven infeasible;
 * SL_ETIMEOUT when a limit came before any solution; SL_ELP when unbounded
 * or GLPK failed; SL_EINVAL when opts->warm violates the problem. */
sl_err lp_solve_mip(lp_t *lp, const lp_opts_t *opts, lp_result_t *res);

/* The last solve's values: a column's, a row's activity, the objective.
 * NaN when there is none or the index is out of range. lp_row_dual is the
 * row's dual value after an OPTIMAL lp_solve (NaN otherwise). */
double lp_value(const lp_t *lp, int col);
double lp_row_value(const lp_t *lp, int row);
double lp_row_dual(const lp_t *lp, int row);
double lp_obj(const lp_t *lp);
/* Copies all column values of the last solve into x (lp_ncols entries);
 * SL_EINVAL when there is no solution. */
sl_err lp_values(const lp_t *lp, double *x);

/* Human-readable names. */
const char *lp_status_name(lp_status st);

/* Caps the calling thread's GLPK memory at mb megabytes (0 = no cap).
 * Exceeding it fails the running call with SL_ENOMEM (and kills the thread's
 * problems, see the top of this file). */
sl_err lp_set_mem_limit_mb(int mb);

/* Sets a stop for every solve of the calling thread from now on: none runs
 * past deadline_ms (absolute, sl_now_ms() clock; 0 = none; simplex and
 * branch-and-cut get the time left as their tm_lim), and branch-and-cut ends
 * at its next callback once *cancel is nonzero (NULL = none); a solve
 * started after either returns SL_ETIMEOUT at once. The planner sets it
 * around a policy run and clears it (0, NULL) afterwards. A solve cut this
 * way is reported as truncated, like one cut by tm_lim_ms. */
void lp_set_thread_stop(double deadline_ms, const sl_cancel_t *cancel);

/* Frees the calling thread's GLPK environment. Call at thread end; an lp_t
 * of this thread still alive becomes dead (calls fail, lp_free works). */
void lp_thread_end(void);

/* GLPK's version string, e.g. "5.0". */
const char *lp_glpk_version(void);

#ifdef __cplusplus
}
#endif
#endif
