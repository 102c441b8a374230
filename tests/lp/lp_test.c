/* Tests of the GLPK layer (lp/): known optima, status translation, warm
 * starts, limits, the error-hook recovery and per-thread environments. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lp.h"
#include "sluice/log.h"

/* max 3x + 2y  s.t.  x + y <= 4, x + 3y <= 7, x <= 3  ->  (3, 1), 11. */
static lp_t *small_lp(void)
{
	lp_t *lp = NULL;
	assert_int_equal(lp_new("small", 0, &lp), SL_OK);
	int x, y, r;
	assert_int_equal(lp_add_col(lp, "x", LP_CONTINUOUS, 0, 3, 3, &x), SL_OK);
	assert_int_equal(lp_add_col(lp, "y", LP_CONTINUOUS, 0, INFINITY, 2, &y), SL_OK);
	assert_int_equal(x, 0);
	assert_int_equal(y, 1);
	int c[2] = {0, 1};
	double v1[2] = {1, 1}, v2[2] = {1, 3};
	assert_int_equal(lp_add_row(lp, "r0", 2, c, v1, -INFINITY, 4, &r), SL_OK);
	assert_int_equal(r, 0);
	assert_int_equal(lp_add_row(lp, "r1", 2, c, v2, -INFINITY, 7, &r), SL_OK);
	assert_int_equal(r, 1);
	assert_int_equal(lp_ncols(lp), 2);
	assert_int_equal(lp_nrows(lp), 2);
	return lp;
}

static void lp_small_optimum(void **state)
{
	(void)state;
	lp_t *lp = small_lp();
	lp_result_t res;
	assert_int_equal(lp_solve(lp, NULL, &res), SL_OK);
	assert_int_equal(res.status, LP_OPTIMAL);
	assert_float_equal(res.obj, 11.0, 1e-9);
	assert_float_equal(res.bound, 11.0, 1e-9);
	assert_float_equal(lp_value(lp, 0), 3.0, 1e-9);
	assert_float_equal(lp_value(lp, 1), 1.0, 1e-9);
	assert_float_equal(lp_row_value(lp, 0), 4.0, 1e-9);
	assert_float_equal(lp_obj(lp), 11.0, 1e-9);
	/* r0 is tight with dual 2 (y's price); r1 is slack. */
	assert_float_equal(lp_row_dual(lp, 0), 2.0, 1e-9);
	assert_float_equal(lp_row_dual(lp, 1), 0.0, 1e-9);
	assert_true(isnan(lp_value(lp, 2)));
	double x[2];
	assert_int_equal(lp_values(lp, x), SL_OK);
	assert_float_equal(x[0], 3.0, 1e-9);
	/* Rewriting a row: r0 becomes x + 2y <= 4, so y = 0.5 at x = 3, obj 10. */
	int c01[2] = {0, 1};
	double v12[2] = {1, 2};
	assert_int_equal(lp_set_row(lp, 0, 2, c01, v12), SL_OK);
	lp_opts_t dual = {.dual = 1};
	assert_int_equal(lp_solve(lp, &dual, &res), SL_OK);
	assert_float_equal(res.obj, 10.0, 1e-9);
	assert_float_equal(lp_row_value(lp, 0), 4.0, 1e-9);
	int bad[2] = {0, 0};
	assert_int_equal(lp_set_row(lp, 0, 2, bad, v12), SL_EINVAL);
	assert_int_equal(lp_set_row(lp, 2, 2, c01, v12), SL_EINVAL);
	double ones[2] = {1, 1};
	assert_int_equal(lp_set_row(lp, 0, 2, c01, ones), SL_OK); /* back to x + y <= 4 */
	/* Re-solving after an edit starts again from the kept basis. */
	assert_int_equal(lp_set_col_bounds(lp, 0, 0, 1), SL_OK);
	assert_true(isnan(lp_obj(lp))); /* the edit forgets the old solution */
	lp_opts_t o = {.presolve = 1};
	assert_int_equal(lp_solve(lp, &o, &res), SL_OK);
	/* x <= 1: y = min(3, 6/3) = 2, obj 3 + 4 */
	assert_float_equal(res.obj, 7.0, 1e-9);
	lp_free(&lp);
	assert_null(lp);
	lp_free(&lp); /* safe on NULL */
}

/* max 8a + 11b + 6c + 4d  s.t.  5a + 7b + 4c + 3d <= 14, binary: optimum 21
 * (b, c, d), LP relaxation 22. */
static lp_t *knapsack(void)
{
	lp_t *lp = NULL;
	assert_int_equal(lp_new("knap", 0, &lp), SL_OK);
	double p[4] = {8, 11, 6, 4}, w[4] = {5, 7, 4, 3};
	int c[4];
	for (int j = 0; j < 4; j++) {
		assert_int_equal(lp_add_col(lp, NULL, LP_BINARY, 0, 0, p[j], &c[j]), SL_OK);
		assert_int_equal(c[j], j);
	}
	assert_int_equal(lp_add_row(lp, "cap", 4, c, w, -INFINITY, 14, NULL), SL_OK);
	return lp;
}

static void lp_mip_optimum(void **state)
{
	(void)state;
	lp_t *lp = knapsack();
	lp_result_t res;
	assert_int_equal(lp_solve(lp, NULL, &res), SL_OK);
	assert_float_equal(res.obj, 22.0, 1e-9);
	assert_int_equal(lp_solve_mip(lp, NULL, &res), SL_OK);
	assert_int_equal(res.status, LP_OPTIMAL);
	assert_int_equal(res.truncated, 0);
	assert_float_equal(res.obj, 21.0, 1e-9);
	assert_float_equal(res.bound, 21.0, 1e-9);
	assert_float_equal(lp_value(lp, 0), 0.0, 1e-9);
	assert_float_equal(lp_value(lp, 1), 1.0, 1e-9);
	assert_float_equal(lp_value(lp, 2), 1.0, 1e-9);
	assert_float_equal(lp_value(lp, 3), 1.0, 1e-9);
	assert_float_equal(lp_row_value(lp, 0), 14.0, 1e-9);
	/* The same with GLPK's presolver and cuts. */
	lp_opts_t o = {.presolve = 1, .cuts = 1};
	assert_int_equal(lp_solve_mip(lp, &o, &res), SL_OK);
	assert_float_equal(res.obj, 21.0, 1e-9);
	lp_free(&lp);

	/* General integers: min -x - y  s.t.  -2x + 2y >= 1, -8x + 10y <= 13;
	 * relaxation (4, 4.5) = -8.5, integer optimum (1, 2) = -3. */
	assert_int_equal(lp_new("int2", 1, &lp), SL_OK);
	assert_int_equal(lp_add_col(lp, "x", LP_INTEGER, 0, INFINITY, -1, NULL), SL_OK);
	assert_int_equal(lp_add_col(lp, "y", LP_INTEGER, 0, INFINITY, -1, NULL), SL_OK);
	int c[2] = {0, 1};
	double a1[2] = {-2, 2}, a2[2] = {-8, 10};
	assert_int_equal(lp_add_row(lp, NULL, 2, c, a1, 1, INFINITY, NULL), SL_OK);
	assert_int_equal(lp_add_row(lp, NULL, 2, c, a2, -INFINITY, 13, NULL), SL_OK);
	assert_int_equal(lp_solve(lp, NULL, &res), SL_OK);
	assert_float_equal(res.obj, -8.5, 1e-9);
	assert_int_equal(lp_solve_mip(lp, NULL, &res), SL_OK);
	assert_int_equal(res.status, LP_OPTIMAL);
	assert_float_equal(res.obj, -3.0, 1e-9);
	assert_float_equal(lp_value(lp, 0), 1.0, 1e-9);
	assert_float_equal(lp_value(lp, 1), 2.0, 1e-9);
	assert_true(res.nodes >= 1);
	/* Objective constant shifts the optimum. */
	assert_int_equal(lp_set_obj_const(lp, 10), SL_OK);
	assert_int_equal(lp_solve_mip(lp, NULL, &res), SL_OK);
	assert_float_equal(res.obj, 7.0, 1e-9);
	lp_free(&lp);
}

static void lp_infeasible(void **state)
{
	(void)state;
	lp_t *lp = NULL;
	lp_result_t res;
	/* x + y <= 1 and x + y >= 2 */
	assert_int_equal(lp_new("infeas", 1, &lp), SL_OK);
	assert_int_equal(lp_add_col(lp, "x", LP_CONTINUOUS, 0, INFINITY, 1, NULL), SL_OK);
	assert_int_equal(lp_add_col(lp, "y", LP_CONTINUOUS, 0, INFINITY, 1, NULL), SL_OK);
	int c[2] = {0, 1};
	double one[2] = {1, 1};
	assert_int_equal(lp_add_row(lp, NULL, 2, c, one, -INFINITY, 1, NULL), SL_OK);
	assert_int_equal(lp_add_row(lp, NULL, 2, c, one, 2, INFINITY, NULL), SL_OK);
	assert_int_equal(lp_solve(lp, NULL, &res), SL_EINFEASIBLE);
	assert_int_equal(res.status, LP_INFEASIBLE);
	assert_non_null(strstr(sl_errmsg(), "infeas"));
	assert_true(isnan(lp_obj(lp)));
	lp_opts_t o = {.presolve = 1};
	assert_int_equal(lp_solve(lp, &o, &res), SL_EINFEASIBLE);
	assert_int_equal(lp_solve_mip(lp, NULL, &res), SL_EINFEASIBLE);
	assert_int_equal(lp_solve_mip(lp, &o, &res), SL_EINFEASIBLE);
	assert_int_equal(res.status, LP_INFEASIBLE);
	lp_free(&lp);

	/* Feasible relaxation, no integer point: 2x = 1. */
	assert_int_equal(lp_new("intinfeas", 1, &lp), SL_OK);
	assert_int_equal(lp_add_col(lp, "x", LP_INTEGER, 0, 10, 1, NULL), SL_OK);
	double two = 2;
	int c0 = 0;
	assert_int_equal(lp_add_row(lp, NULL, 1, &c0, &two, 1, 1, NULL), SL_OK);
	assert_int_equal(lp_solve(lp, NULL, &res), SL_OK);
	assert_int_equal(lp_solve_mip(lp, NULL, &res), SL_EINFEASIBLE);
	assert_int_equal(res.status, LP_INFEASIBLE);
	lp_free(&lp);
}

static void lp_unbounded(void **state)
{
	(void)state;
	lp_t *lp = NULL;
	lp_result_t res;
	/* max x + y  s.t.  x - y <= 1 */
	assert_int_equal(lp_new("unb", 0, &lp), SL_OK);
	assert_int_equal(lp_add_col(lp, "x", LP_INTEGER, 0, INFINITY, 1, NULL), SL_OK);
	assert_int_equal(lp_add_col(lp, "y", LP_CONTINUOUS, 0, INFINITY, 1, NULL), SL_OK);
	int c[2] = {0, 1};
	double v[2] = {1, -1};
	assert_int_equal(lp_add_row(lp, NULL, 2, c, v, -INFINITY, 1, NULL), SL_OK);
	assert_int_equal(lp_solve(lp, NULL, &res), SL_ELP);
	assert_int_equal(res.status, LP_UNBOUNDED);
	assert_non_null(strstr(sl_errmsg(), "unbounded"));
	assert_int_equal(lp_solve_mip(lp, NULL, &res), SL_ELP);
	assert_int_equal(res.status, LP_UNBOUNDED);
	lp_opts_t o = {.presolve = 1};
	assert_int_equal(lp_solve_mip(lp, &o, &res), SL_ELP);
	assert_int_equal(res.status, LP_UNBOUNDED);
	lp_free(&lp);
}

static void lp_bad_input(void **state)
{
	(void)state;
	lp_t *lp = small_lp();
	int c[2] = {0, 5};
	double v[2] = {1, 1};
	assert_int_equal(lp_add_row(lp, "bad", 2, c, v, 0, 1, NULL), SL_EINVAL);
	assert_non_null(strstr(sl_errmsg(), "column 5 out of range"));
	int d[2] = {1, 1};
	assert_int_equal(lp_add_row(lp, "dup", 2, d, v, 0, 1, NULL), SL_EINVAL);
	assert_non_null(strstr(sl_errmsg(), "twice"));
	double nanv[2] = {1, NAN};
	int ok[2] = {0, 1};
	assert_int_equal(lp_add_row(lp, "nan", 2, ok, nanv, 0, 1, NULL), SL_EINVAL);
	assert_int_equal(lp_add_col(lp, "z", LP_CONTINUOUS, 2, 1, 0, NULL), SL_EINVAL);
	assert_int_equal(lp_add_col(lp, "z", LP_CONTINUOUS, 0, 1, INFINITY, NULL), SL_EINVAL);
	assert_int_equal(lp_set_col_bounds(lp, 7, 0, 1), SL_EINVAL);
	assert_int_equal(lp_set_row_bounds(lp, -1, 0, 1), SL_EINVAL);
	assert_int_equal(lp_nrows(lp), 2); /* nothing was added */
	assert_int_equal(lp_ncols(lp), 2);
	/* Point checking names the violated row. */
	double pt[2] = {3, 2};
	assert_int_equal(lp_check_point(lp, pt, 1e-9), SL_EINVAL);
	assert_non_null(strstr(sl_errmsg(), "r0"));
	double good[2] = {3, 1};
	assert_int_equal(lp_check_point(lp, good, 1e-9), SL_OK);
	/* Still solvable after the rejected calls. */
	assert_int_equal(lp_solve(lp, NULL, NULL), SL_OK);
	assert_float_equal(lp_obj(lp), 11.0, 1e-9);
	lp_free(&lp);
}

/* Jeroslow's problem: 2 * sum x_i = n (n odd), x binary. It is infeasible
 * but plain branch-and-bound needs exponentially many nodes. With slack, the
 * row becomes 2 * sum x_i + s = n with s in [0, 1] and the objective max
 * 1.25 x_0 + sum_{i>0} x_i (not integral, so GLPK cannot round its bound):
 * for n = 31 the optimum 15.25 (s = 1) is easy to find, the relaxation's
 * 15.75 hard to disprove. */
static lp_t *jeroslow(int n, int slack)
{
	lp_t *lp = NULL;
	int c[64];
	double two[64];
	assert_true(n <= 63);
	assert_int_equal(lp_new("jeroslow", 0, &lp), SL_OK);
	for (int j = 0; j < n; j++) {
		assert_int_equal(lp_add_col(lp, NULL, LP_BINARY, 0, 1,
		                            j == 0 ? (slack ? 1.25 : 1) : (slack ? 1 : 0), &c[j]),
		                 SL_OK);
		two[j] = 2;
	}
	if (slack) {
		assert_int_equal(lp_add_col(lp, "s", LP_CONTINUOUS, 0, 1, 0, &c[n]), SL_OK);
		two[n] = 1;
	}
	assert_int_equal(lp_add_row(lp, "eq", n + !!slack, c, two, n, n, NULL), SL_OK);
	return lp;
}

static void lp_limits(void **state)
{
	(void)state;
	lp_result_t res;
	/* Iteration limit on the LP. */
	lp_t *lp = knapsack();
	lp_opts_t o = {.it_lim = 1};
	assert_int_equal(lp_solve(lp, &o, &res), SL_ETIMEOUT);
	assert_int_equal(res.status, LP_NO_SOLUTION);
	assert_int_equal(res.truncated, 1);
	assert_non_null(strstr(sl_errmsg(), "iteration"));
	lp_free(&lp);

	/* Deterministic node limit: no solution yet -> SL_ETIMEOUT; the node
	 * count where it stops is the same every run. */
	lp = jeroslow(31, 0);
	lp_opts_t n = {.node_lim = 40};
	assert_int_equal(lp_solve_mip(lp, &n, &res), SL_ETIMEOUT);
	assert_int_equal(res.status, LP_NO_SOLUTION);
	assert_int_equal(res.truncated, 1);
	int64_t nodes = res.nodes;
	assert_true(nodes >= 40 && nodes < 45);
	assert_int_equal(lp_solve_mip(lp, &n, &res), SL_ETIMEOUT);
	assert_int_equal(res.nodes, nodes);
	/* Wall-clock limit. */
	lp_opts_t t = {.tm_lim_ms = 20};
	assert_int_equal(lp_solve_mip(lp, &t, &res), SL_ETIMEOUT);
	assert_int_equal(res.truncated, 1);
	assert_non_null(strstr(sl_errmsg(), "time"));
	lp_free(&lp);

	/* With a feasible point found, a node limit returns it as FEASIBLE with
	 * the best bound of the open nodes. */
	lp = jeroslow(31, 1);
	lp_opts_t n3 = {.node_lim = 120};
	assert_int_equal(lp_solve_mip(lp, &n3, &res), SL_OK);
	assert_int_equal(res.status, LP_FEASIBLE);
	assert_int_equal(res.truncated, 1);
	assert_true(res.obj >= 15.0 - 1e-9 && res.obj <= 15.25 + 1e-9);
	assert_float_equal(res.bound, 15.75, 1e-6);
	assert_float_equal(lp_row_value(lp, 0), 31.0, 1e-9);
	/* Without a solution the result holds no objective but keeps the
	 * relaxation's bound. */
	assert_int_equal(lp_solve_mip(lp, &n, &res), SL_ETIMEOUT);
	assert_true(isnan(res.obj));
	assert_float_equal(res.bound, 15.75, 1e-6);
	lp_free(&lp);
}

static void lp_warm_start(void **state)
{
	(void)state;
	lp_result_t res;
	lp_t *lp = knapsack();
	/* The optimum handed over at the first GLP_IHEUR is accepted. */
	double best[4] = {0, 1, 1, 1};
	lp_opts_t o = {.warm = best};
	assert_int_equal(lp_solve_mip(lp, &o, &res), SL_OK);
	assert_int_equal(res.warm_used, 1);
	assert_int_equal(res.status, LP_OPTIMAL);
	assert_float_equal(res.obj, 21.0, 1e-9);
	/* A poorer incumbent is accepted too and then improved on. */
	double poor[4] = {1, 0, 0, 1};
	o.warm = poor;
	assert_int_equal(lp_solve_mip(lp, &o, &res), SL_OK);
	assert_int_equal(res.warm_used, 1);
	assert_float_equal(res.obj, 21.0, 1e-9);
	/* An infeasible incumbent is refused with a message naming the row. */
	double bad[4] = {1, 1, 1, 0};
	o.warm = bad;
	assert_int_equal(lp_solve_mip(lp, &o, &res), SL_EINVAL);
	assert_non_null(strstr(sl_errmsg(), "cap"));
	double frac[4] = {0.5, 0, 0, 0};
	o.warm = frac;
	assert_int_equal(lp_solve_mip(lp, &o, &res), SL_EINVAL);
	lp_free(&lp);

	/* On a problem too hard for the budget the incumbent is the answer. */
	lp = jeroslow(31, 1);
	double w[32] = {0};
	for (int j = 0; j < 14; j++)
		w[j] = 1; /* 2 * 14 + s = 31 needs s = 3: infeasible */
	w[31] = 3;
	lp_opts_t lim = {.node_lim = 5, .warm = w};
	assert_int_equal(lp_solve_mip(lp, &lim, &res), SL_EINVAL);
	w[14] = 1; /* 2 * 15 + 1 = 31, objective 15.25 (optimal) */
	w[31] = 1;
	assert_int_equal(lp_solve_mip(lp, &lim, &res), SL_OK);
	assert_int_equal(res.status, LP_FEASIBLE);
	assert_float_equal(res.obj, 15.25, 1e-9);
	assert_true(res.bound >= 15.25 - 1e-9 && res.bound <= 15.75 + 1e-9);
	/* The iteration limit on the relaxation still leaves the incumbent. */
	lp_opts_t it = {.it_lim = 1, .node_lim = 100, .warm = w};
	assert_int_equal(lp_solve_mip(lp, &it, &res), SL_OK);
	assert_int_equal(res.status, LP_FEASIBLE);
	assert_int_equal(res.truncated, 1);
	assert_float_equal(res.obj, 15.25, 1e-9);
	assert_float_equal(lp_value(lp, 31), 1.0, 1e-12);
	lp_free(&lp);
}

/* The memory cap makes GLPK raise a fatal error inside an allocation; the
 * error hook must turn it into SL_ENOMEM, kill this thread's problems and
 * leave the library usable. */
static void lp_error_hook_path(void **state)
{
	(void)state;
	lp_t *victim = small_lp();
	lp_t *lp = NULL;
	assert_int_equal(lp_new("big", 1, &lp), SL_OK);
	assert_int_equal(lp_set_mem_limit_mb(1), SL_OK);
	sl_err rc = SL_OK;
	int cols[256];
	double vals[256];
	for (int j = 0; j < 256; j++)
		vals[j] = 1.0 + j;
	for (int k = 0; k < 200000 && rc == SL_OK; k++) {
		rc = lp_add_col(lp, "a-column-with-a-long-name", LP_CONTINUOUS, 0, 1, 1,
		                &cols[k % 256]);
		if (rc == SL_OK && k >= 255 && k % 16 == 0) {
			int c[256];
			for (int j = 0; j < 256; j++)
				c[j] = k - j;
			rc = lp_add_row(lp, "row", 256, c, vals, 0, 1, NULL);
		}
	}
	assert_int_equal(rc, SL_ENOMEM);
	assert_non_null(strstr(sl_errmsg(), "GLPK error"));
	/* Both problems of this thread are dead now. */
	assert_int_equal(lp_add_col(lp, "x", LP_CONTINUOUS, 0, 1, 1, NULL), SL_ELP);
	assert_non_null(strstr(sl_errmsg(), "reset"));
	assert_int_equal(lp_solve(victim, NULL, NULL), SL_ELP);
	lp_free(&lp);
	lp_free(&victim);
	/* A fresh environment works (and has no cap until set again). */
	assert_int_equal(lp_set_mem_limit_mb(0), SL_OK);
	lp = knapsack();
	assert_int_equal(lp_solve_mip(lp, NULL, NULL), SL_OK);
	assert_float_equal(lp_obj(lp), 21.0, 1e-9);
	lp_free(&lp);
}

struct thread_arg {
	lp_t *foreign;
	sl_err foreign_rc;
	double obj;
	sl_err rc;
};

static void *thread_main(void *p)
{
	struct thread_arg *a = p;
	a->foreign_rc = lp_solve(a->foreign, NULL, NULL);
	lp_t *lp = NULL;
	a->rc = lp_new("thread", 1, &lp);
	if (a->rc == SL_OK) {
		/* min -x - y over the same integer problem as lp_mip_optimum */
		int c[2] = {0, 1};
		double a1[2] = {-2, 2}, a2[2] = {-8, 10};
		lp_add_col(lp, "x", LP_INTEGER, 0, INFINITY, -1, NULL);
		lp_add_col(lp, "y", LP_INTEGER, 0, INFINITY, -1, NULL);
		lp_add_row(lp, NULL, 2, c, a1, 1, INFINITY, NULL);
		lp_add_row(lp, NULL, 2, c, a2, -INFINITY, 13, NULL);
		for (int k = 0; k < 50 && a->rc == SL_OK; k++)
			a->rc = lp_solve_mip(lp, NULL, NULL);
		a->obj = lp_obj(lp);
		lp_free(&lp);
	}
	lp_thread_end();
	return NULL;
}

static void lp_threads(void **state)
{
	(void)state;
	lp_t *mine = knapsack();
	struct thread_arg args[4];
	pthread_t th[4];
	for (int t = 0; t < 4; t++) {
		memset(&args[t], 0, sizeof(args[t]));
		args[t].foreign = mine;
		assert_int_equal(pthread_create(&th[t], NULL, thread_main, &args[t]), 0);
	}
	for (int k = 0; k < 50; k++)
		assert_int_equal(lp_solve_mip(mine, NULL, NULL), SL_OK);
	for (int t = 0; t < 4; t++) {
		pthread_join(th[t], NULL);
		assert_int_equal(args[t].foreign_rc, SL_EINVAL);
		assert_int_equal(args[t].rc, SL_OK);
		assert_float_equal(args[t].obj, -3.0, 1e-9);
	}
	assert_float_equal(lp_obj(mine), 21.0, 1e-9);
	lp_free(&mine);
}

static int captured;
static void capture_sink(sl_log_level level, unsigned sub, const char *file, int line,
                         const char *msg, void *arg)
{
	(void)file;
	(void)line;
	(void)arg;
	if (sub == SL_SUB_LP && level == SL_LOG_DEBUG && strncmp(msg, "glpk: ", 6) == 0)
		captured++;
}

/* GLPK's terminal output goes through our logging, never to stdout. */
static void lp_term_output(void **state)
{
	(void)state;
	sl_log_set_sink(capture_sink, NULL);
	sl_log_set_level(SL_LOG_DEBUG);
	lp_t *lp = knapsack();
	lp_opts_t o = {.verbose = 1};
	captured = 0;
	assert_int_equal(lp_solve_mip(lp, &o, NULL), SL_OK);
	assert_true(captured > 0);
	int loud = captured;
	captured = 0;
	assert_int_equal(lp_solve_mip(lp, NULL, NULL), SL_OK);
	assert_true(captured < loud);
	lp_free(&lp);
	sl_log_set_level(SL_LOG_WARN);
	sl_log_set_sink(NULL, NULL);
	assert_non_null(lp_glpk_version());
	assert_string_equal(lp_status_name(LP_INFEASIBLE), "infeasible");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(lp_small_optimum), cmocka_unit_test(lp_mip_optimum),
	    cmocka_unit_test(lp_infeasible),    cmocka_unit_test(lp_unbounded),
	    cmocka_unit_test(lp_bad_input),     cmocka_unit_test(lp_limits),
	    cmocka_unit_test(lp_warm_start),    cmocka_unit_test(lp_error_hook_path),
	    cmocka_unit_test(lp_threads),       cmocka_unit_test(lp_term_output),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	lp_thread_end();
	return rc;
}
