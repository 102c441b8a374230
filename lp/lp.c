/* sluice lp: the GLPK layer (see lp.h for the contract).
 *
 * Every entry point that reaches GLPK runs through lp_guard(): it makes sure
 * the thread's GLPK environment has our terminal and error hooks, sets a
 * setjmp recovery point, and runs the body. GLPK's glp_error_hook calls
 * lp_error_hook, which longjmps back to that point; as GLPK's reference
 * manual prescribes for this recovery, the environment is then freed with
 * glp_free_env (it is in an undefined state) and every problem of the thread
 * is marked dead through a per-thread generation counter. */
#include <glpk.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/clock.h"
#include "sluice/log.h"
#include "lp.h"

/* GLPK's indices and sizes are int; we refuse problems that do not fit. */
#define LP_MAX_DIM (1 << 28)

struct lp {
	glp_prob *P;  /* NULL once dead or freed */
	unsigned gen; /* the thread's environment generation at creation */
	pthread_t owner;
	char name[64];
	int ncols, nrows, nint;
	/* values of the last solve (have_sol), duals after an optimal LP */
	double *x, *rowv, *dual;
	int xcap, rcap;
	double obj;
	int have_sol, have_dual;
	/* 1-based scratch arrays for GLPK calls */
	int *ind;
	double *val;
	int scap;
};

/* Per-thread state: GLPK's environment is per thread, so are its hooks. */
static _Thread_local struct {
	unsigned gen;   /* bumped whenever this thread's environment is freed */
	int hooked;     /* hooks installed in the current environment */
	int mem_mb;     /* memory cap to re-apply to a fresh environment */
	jmp_buf *jmp;   /* active recovery point, NULL outside lp_guard */
	int verbose;    /* current call wants GLPK's messages at debug level */
	char line[512]; /* partial terminal line */
	size_t len;
	char tail[512]; /* last lines written (what GLPK said before failing) */
	double stop_deadline_ms;        /* lp_set_thread_stop: 0 = none */
	const sl_cancel_t *stop_cancel; /* NULL = none */
} tls;

void lp_set_thread_stop(double deadline_ms, const sl_cancel_t *cancel)
{
	tls.stop_deadline_ms = deadline_ms;
	tls.stop_cancel = cancel;
}

/* Wall-clock ms a solve that started at t0 may still run: the least of the
 * caller's tm_lim_ms and the thread's stop; INFINITY when neither is set,
 * <= 0 when the time is up or the thread's cancel flag is set. */
static double lp_time_left(const lp_opts_t *o, double t0)
{
	double now = sl_now_ms(), left = INFINITY;
	if (tls.stop_cancel != NULL && atomic_load_explicit(tls.stop_cancel, memory_order_relaxed))
		return 0;
	if (o->tm_lim_ms > 0)
		left = o->tm_lim_ms - (now - t0);
	if (tls.stop_deadline_ms > 0 && tls.stop_deadline_ms - now < left)
		left = tls.stop_deadline_ms - now;
	return left;
}

/* Collects GLPK's terminal output line by line into our log and keeps the
 * last lines so an error can quote them. Returns 1: GLPK must not print. */
static int lp_term_hook(void *info, const char *s)
{
	(void)info;
	for (; *s != '\0'; s++) {
		if (*s != '\n' && tls.len + 1 < sizeof(tls.line)) {
			tls.line[tls.len++] = *s;
			continue;
		}
		if (*s != '\n')
			continue; /* overlong line: drop the rest until its end */
		tls.line[tls.len] = '\0';
		if (tls.len > 0) {
			if (tls.verbose)
				SL_DEBUG(SL_SUB_LP, "glpk: %s", tls.line);
			else
				SL_TRACE(SL_SUB_LP, "glpk: %s", tls.line);
			size_t tl = strlen(tls.tail);
			if (tl + tls.len + 4 > sizeof(tls.tail))
				tl = 0; /* keep only recent lines */
			if (tl > 0) {
				memcpy(tls.tail + tl, " | ", 3);
				tl += 3;
			}
			memcpy(tls.tail + tl, tls.line, tls.len + 1);
		}
		tls.len = 0;
	}
	return 1;
}

/* GLPK calls this on a fatal error; returning would let GLPK abort(), so we
 * jump back to the recovery point of the running lp_guard. */
static void lp_error_hook(void *info)
{
	(void)info;
	if (tls.jmp != NULL)
		longjmp(*tls.jmp, 1);
	/* No recovery point: a GLPK call outside lp_guard, a bug in this file. */
	SL_ERROR(SL_SUB_LP, "GLPK fatal error outside a guarded call: %s", tls.tail);
}

/* Installs the hooks in the thread's (possibly fresh) environment. */
static void lp_env_ready(void)
{
	if (tls.hooked)
		return;
	glp_term_hook(lp_term_hook, NULL);
	glp_error_hook(lp_error_hook, NULL);
	if (tls.mem_mb > 0)
		glp_mem_limit(tls.mem_mb);
	tls.hooked = 1;
}

/* Drops the thread's environment (and with it every problem of the thread). */
static void lp_env_drop(void)
{
	glp_free_env();
	tls.gen++;
	tls.hooked = 0;
	tls.len = 0;
}

typedef sl_err (*lp_body_fn)(lp_t *lp, void *arg);

/* Runs body(lp, arg) with GLPK errors turned into sl_err. */
/* SL_EINVAL unless the calling thread created lp (GLPK environments, and so
 * problems, are per thread). Checked before anything of lp is touched. */
static sl_err lp_check_owner(const lp_t *lp)
{
	if (!pthread_equal(lp->owner, pthread_self()))
		return sl_seterr(SL_EINVAL,
		                 "lp '%s' used from a thread other than its creator (GLPK "
		                 "environments are per thread)",
		                 lp->name);
	return SL_OK;
}

static sl_err lp_guard(lp_t *lp, lp_body_fn body, void *arg)
{
	jmp_buf jb;
	jmp_buf *const prev = tls.jmp;

	if (lp != NULL) {
		SL_CHECK(lp_check_owner(lp));
		if (lp->P == NULL || lp->gen != tls.gen)
			return sl_seterr(SL_ELP,
			                 "lp '%s' is dead: the thread's GLPK environment was reset "
			                 "after an earlier GLPK error",
			                 lp->name);
	}
	tls.tail[0] = '\0';
	tls.len = 0;
	if (setjmp(jb) != 0) {
		char what[sizeof(tls.tail)];
		tls.jmp = prev;
		snprintf(what, sizeof(what), "%s", tls.tail[0] ? tls.tail : "(no message)");
		if (lp != NULL)
			lp->P = NULL; /* freed with the environment */
		lp_env_drop();
		SL_WARN(SL_SUB_LP, "GLPK error, environment reset: %s", what);
		return sl_seterr(strstr(what, "memory") != NULL ? SL_ENOMEM : SL_ELP,
		                 "lp '%s': GLPK error: %s", lp != NULL ? lp->name : "-", what);
	}
	tls.jmp = &jb;
	lp_env_ready();
	sl_err rc = body(lp, arg);
	tls.jmp = prev;
	return rc;
}

static int lp_bad_bound(double lo, double hi)
{
	return isnan(lo) || isnan(hi) || lo > hi || lo == INFINITY || hi == -INFINITY;
}

/* GLPK's bound type for [lo, hi]. */
static int lp_bound_type(double lo, double hi)
{
	if (isinf(lo) && isinf(hi))
		return GLP_FR;
	if (isinf(hi))
		return GLP_LO;
	if (isinf(lo))
		return GLP_UP;
	return lo == hi ? GLP_FX : GLP_DB;
}

static double lp_fin(double v)
{
	return isinf(v) ? 0.0 : v;
}

static sl_err lp_scratch(lp_t *lp, int n)
{
	if (n + 1 <= lp->scap)
		return SL_OK;
	int cap = lp->scap ? lp->scap : 16;
	while (cap < n + 1)
		cap *= 2;
	int *ind = realloc(lp->ind, (size_t)cap * sizeof(*ind));
	if (ind == NULL)
		return sl_seterr(SL_ENOMEM, "lp '%s': out of memory (%d entries)", lp->name, n);
	lp->ind = ind;
	double *val = realloc(lp->val, (size_t)cap * sizeof(*val));
	if (val == NULL)
		return sl_seterr(SL_ENOMEM, "lp '%s': out of memory (%d entries)", lp->name, n);
	lp->val = val;
	lp->scap = cap;
	return SL_OK;
}

/* ---- construction -------------------------------------------------- */

struct lp_new_arg {
	lp_t *lp;
	int minimise;
};

/* Body of lp_new: the new lp_t's P is still NULL, so it runs under a guard
 * without the liveness check and gets the lp through arg. */
static sl_err lp_new_body(lp_t *unused, void *arg)
{
	const struct lp_new_arg *a = arg;
	(void)unused;
	a->lp->P = glp_create_prob();
	a->lp->gen = tls.gen;
	glp_set_prob_name(a->lp->P, a->lp->name);
	glp_set_obj_dir(a->lp->P, a->minimise ? GLP_MIN : GLP_MAX);
	return SL_OK;
}

sl_err lp_new(const char *name, int minimise, lp_t **out)
{
	*out = NULL;
	lp_t *lp = calloc(1, sizeof(*lp));
	if (lp == NULL)
		return sl_seterr(SL_ENOMEM, "lp_new: out of memory");
	snprintf(lp->name, sizeof(lp->name), "%s", name != NULL && *name ? name : "lp");
	lp->owner = pthread_self();
	lp->obj = NAN;
	struct lp_new_arg a = {lp, minimise};
	sl_err rc = lp_guard(NULL, lp_new_body, &a);
	if (rc != SL_OK) {
		free(lp);
		return rc;
	}
	*out = lp;
	return SL_OK;
}

static sl_err lp_free_body(lp_t *lp, void *arg)
{
	(void)arg;
	glp_delete_prob(lp->P);
	lp->P = NULL;
	return SL_OK;
}

void lp_free(lp_t **lpp)
{
	if (lpp == NULL || *lpp == NULL)
		return;
	lp_t *lp = *lpp;
	if (lp->P != NULL && lp->gen == tls.gen && pthread_equal(lp->owner, pthread_self()))
		(void)lp_guard(lp, lp_free_body, NULL);
	free(lp->x);
	free(lp->rowv);
	free(lp->dual);
	free(lp->ind);
	free(lp->val);
	free(lp);
	*lpp = NULL;
}

/* Forgets the last solution (the problem changed). */
static void lp_forget(lp_t *lp)
{
	lp->have_sol = 0;
	lp->have_dual = 0;
	lp->obj = NAN;
}

struct lp_col_arg {
	const char *name;
	lp_kind kind;
	double lo, hi, obj;
};

static sl_err lp_add_col_body(lp_t *lp, void *arg)
{
	const struct lp_col_arg *a = arg;
	int j = glp_add_cols(lp->P, 1);
	if (a->name != NULL)
		glp_set_col_name(lp->P, j, a->name);
	if (a->kind == LP_BINARY) {
		glp_set_col_kind(lp->P, j, GLP_BV);
	} else {
		glp_set_col_kind(lp->P, j, a->kind == LP_INTEGER ? GLP_IV : GLP_CV);
		glp_set_col_bnds(lp->P, j, lp_bound_type(a->lo, a->hi), lp_fin(a->lo),
		                 lp_fin(a->hi));
	}
	glp_set_obj_coef(lp->P, j, a->obj);
	lp->ncols = j;
	if (a->kind != LP_CONTINUOUS)
		lp->nint++;
	return SL_OK;
}

sl_err lp_add_col(lp_t *lp, const char *name, lp_kind kind, double lo, double hi, double obj,
                  int *col)
{
	if (kind != LP_CONTINUOUS && kind != LP_INTEGER && kind != LP_BINARY)
		return sl_seterr(SL_EINVAL, "lp '%s': column %d: unknown kind %d", lp->name,
		                 lp->ncols, (int)kind);
	if (kind != LP_BINARY && lp_bad_bound(lo, hi))
		return sl_seterr(SL_EINVAL, "lp '%s': column %d (%s): bad bounds [%g, %g]",
		                 lp->name, lp->ncols, name ? name : "-", lo, hi);
	if (!isfinite(obj))
		return sl_seterr(SL_EINVAL, "lp '%s': column %d (%s): objective %g is not finite",
		                 lp->name, lp->ncols, name ? name : "-", obj);
	if (lp->ncols >= LP_MAX_DIM)
		return sl_seterr(SL_ERANGE, "lp '%s': too many columns (limit %d)", lp->name,
		                 LP_MAX_DIM);
	struct lp_col_arg a = {name, kind, lo, hi, obj};
	SL_CHECK(lp_guard(lp, lp_add_col_body, &a));
	lp_forget(lp);
	if (col != NULL)
		*col = lp->ncols - 1;
	return SL_OK;
}

struct lp_row_arg {
	const char *name;
	int nnz;
	double lo, hi;
};

static sl_err lp_add_row_body(lp_t *lp, void *arg)
{
	const struct lp_row_arg *a = arg;
	int i = glp_add_rows(lp->P, 1);
	if (a->name != NULL)
		glp_set_row_name(lp->P, i, a->name);
	glp_set_row_bnds(lp->P, i, lp_bound_type(a->lo, a->hi), lp_fin(a->lo), lp_fin(a->hi));
	glp_set_mat_row(lp->P, i, a->nnz, lp->ind, lp->val);
	lp->nrows = i;
	return SL_OK;
}

/* Validates a sparse row and copies its nonzeros 1-based into lp->ind/val;
 * *k gets their count. row is the row's index for messages. */
static sl_err lp_pack_row(lp_t *lp, int row, const char *name, int nnz, const int *cols,
                          const double *vals, int *k)
{
	if (nnz < 0 || (nnz > 0 && (cols == NULL || vals == NULL)))
		return sl_seterr(SL_EINVAL, "lp '%s': row %d (%s): %d entries without arrays",
		                 lp->name, row, name ? name : "-", nnz);
	SL_CHECK(lp_scratch(lp, lp->ncols > nnz ? lp->ncols : nnz));
	/* Reject duplicate columns before GLPK does (it would be a fatal error). */
	unsigned char *seen = calloc((size_t)lp->ncols + 1, 1);
	if (seen == NULL)
		return sl_seterr(SL_ENOMEM, "lp '%s': out of memory", lp->name);
	*k = 0;
	for (int e = 0; e < nnz; e++) {
		if (cols[e] < 0 || cols[e] >= lp->ncols) {
			free(seen);
			return sl_seterr(
			    SL_EINVAL,
			    "lp '%s': row %d (%s) entry %d: column %d out of range [0, %d)",
			    lp->name, row, name ? name : "-", e, cols[e], lp->ncols);
		}
		if (!isfinite(vals[e])) {
			free(seen);
			return sl_seterr(SL_EINVAL,
			                 "lp '%s': row %d (%s) entry %d: value %g not finite",
			                 lp->name, row, name ? name : "-", e, vals[e]);
		}
		if (seen[cols[e]]) {
			free(seen);
			return sl_seterr(SL_EINVAL, "lp '%s': row %d (%s): column %d appears twice",
			                 lp->name, row, name ? name : "-", cols[e]);
		}
		seen[cols[e]] = 1;
		if (vals[e] == 0.0)
			continue;
		(*k)++;
		lp->ind[*k] = cols[e] + 1;
		lp->val[*k] = vals[e];
	}
	free(seen);
	return SL_OK;
}

sl_err lp_add_row(lp_t *lp, const char *name, int nnz, const int *cols, const double *vals,
                  double lo, double hi, int *row)
{
	int k = 0;
	if (lp_bad_bound(lo, hi))
		return sl_seterr(SL_EINVAL, "lp '%s': row %d (%s): bad bounds [%g, %g]", lp->name,
		                 lp->nrows, name ? name : "-", lo, hi);
	if (lp->nrows >= LP_MAX_DIM)
		return sl_seterr(SL_ERANGE, "lp '%s': too many rows (limit %d)", lp->name,
		                 LP_MAX_DIM);
	SL_CHECK(lp_pack_row(lp, lp->nrows, name, nnz, cols, vals, &k));
	struct lp_row_arg a = {name, k, lo, hi};
	SL_CHECK(lp_guard(lp, lp_add_row_body, &a));
	lp_forget(lp);
	if (row != NULL)
		*row = lp->nrows - 1;
	return SL_OK;
}

struct lp_setrow_arg {
	int row, nnz;
};

static sl_err lp_set_row_body(lp_t *lp, void *arg)
{
	const struct lp_setrow_arg *a = arg;
	glp_set_mat_row(lp->P, a->row + 1, a->nnz, lp->ind, lp->val);
	return SL_OK;
}

sl_err lp_set_row(lp_t *lp, int row, int nnz, const int *cols, const double *vals)
{
	int k = 0;
	if (row < 0 || row >= lp->nrows)
		return sl_seterr(SL_EINVAL, "lp '%s': row %d out of range [0, %d)", lp->name, row,
		                 lp->nrows);
	SL_CHECK(lp_pack_row(lp, row, NULL, nnz, cols, vals, &k));
	struct lp_setrow_arg a = {row, k};
	SL_CHECK(lp_guard(lp, lp_set_row_body, &a));
	lp_forget(lp);
	return SL_OK;
}

struct lp_set_arg {
	int what; /* 0 col bounds, 1 row bounds, 2 obj coef, 3 obj const */
	int idx;
	double a, b;
};

static sl_err lp_set_body(lp_t *lp, void *arg)
{
	const struct lp_set_arg *s = arg;
	switch (s->what) {
	case 0:
		if (glp_get_col_kind(lp->P, s->idx) == GLP_BV)
			glp_set_col_kind(lp->P, s->idx, GLP_IV); /* keep it integer, new bounds */
		glp_set_col_bnds(lp->P, s->idx, lp_bound_type(s->a, s->b), lp_fin(s->a),
		                 lp_fin(s->b));
		break;
	case 1:
		glp_set_row_bnds(lp->P, s->idx, lp_bound_type(s->a, s->b), lp_fin(s->a),
		                 lp_fin(s->b));
		break;
	case 2:
		glp_set_obj_coef(lp->P, s->idx, s->a);
		break;
	default:
		glp_set_obj_coef(lp->P, 0, s->a);
		break;
	}
	return SL_OK;
}

sl_err lp_set_col_bounds(lp_t *lp, int col, double lo, double hi)
{
	if (col < 0 || col >= lp->ncols)
		return sl_seterr(SL_EINVAL, "lp '%s': column %d out of range [0, %d)", lp->name,
		                 col, lp->ncols);
	if (lp_bad_bound(lo, hi))
		return sl_seterr(SL_EINVAL, "lp '%s': column %d: bad bounds [%g, %g]", lp->name,
		                 col, lo, hi);
	struct lp_set_arg s = {0, col + 1, lo, hi};
	SL_CHECK(lp_guard(lp, lp_set_body, &s));
	lp_forget(lp);
	return SL_OK;
}

sl_err lp_set_row_bounds(lp_t *lp, int row, double lo, double hi)
{
	if (row < 0 || row >= lp->nrows)
		return sl_seterr(SL_EINVAL, "lp '%s': row %d out of range [0, %d)", lp->name, row,
		                 lp->nrows);
	if (lp_bad_bound(lo, hi))
		return sl_seterr(SL_EINVAL, "lp '%s': row %d: bad bounds [%g, %g]", lp->name, row,
		                 lo, hi);
	struct lp_set_arg s = {1, row + 1, lo, hi};
	SL_CHECK(lp_guard(lp, lp_set_body, &s));
	lp_forget(lp);
	return SL_OK;
}

sl_err lp_set_obj(lp_t *lp, int col, double coef)
{
	if (col < 0 || col >= lp->ncols)
		return sl_seterr(SL_EINVAL, "lp '%s': column %d out of range [0, %d)", lp->name,
		                 col, lp->ncols);
	if (!isfinite(coef))
		return sl_seterr(SL_EINVAL, "lp '%s': column %d: objective %g not finite", lp->name,
		                 col, coef);
	struct lp_set_arg s = {2, col + 1, coef, 0};
	SL_CHECK(lp_guard(lp, lp_set_body, &s));
	lp_forget(lp);
	return SL_OK;
}

sl_err lp_set_obj_const(lp_t *lp, double c0)
{
	if (!isfinite(c0))
		return sl_seterr(SL_EINVAL, "lp '%s': objective constant %g not finite", lp->name,
		                 c0);
	struct lp_set_arg s = {3, 0, c0, 0};
	SL_CHECK(lp_guard(lp, lp_set_body, &s));
	lp_forget(lp);
	return SL_OK;
}

int lp_ncols(const lp_t *lp)
{
	return lp->ncols;
}

int lp_nrows(const lp_t *lp)
{
	return lp->nrows;
}

/* ---- checking a point ---------------------------------------------- */

struct lp_check_arg {
	const double *x;
	double tol;
};

static const char *lp_nm(const char *name)
{
	return name != NULL ? name : "-";
}

static int lp_outside(double v, double lo, double hi, double tol)
{
	return (v < lo - tol * (1.0 + fabs(lo))) || (v > hi + tol * (1.0 + fabs(hi)));
}

static void lp_bounds_of(int type, double lb, double ub, double *lo, double *hi)
{
	*lo = (type == GLP_FR || type == GLP_UP) ? -INFINITY : lb;
	*hi = (type == GLP_FR || type == GLP_LO) ? INFINITY : ub;
}

static sl_err lp_check_body(lp_t *lp, void *arg)
{
	const struct lp_check_arg *a = arg;
	double lo, hi;
	for (int j = 1; j <= lp->ncols; j++) {
		double v = a->x[j - 1];
		if (!isfinite(v))
			return sl_seterr(SL_EINVAL, "lp '%s': point: column %d is %g", lp->name,
			                 j - 1, v);
		lp_bounds_of(glp_get_col_type(lp->P, j), glp_get_col_lb(lp->P, j),
		             glp_get_col_ub(lp->P, j), &lo, &hi);
		if (lp_outside(v, lo, hi, a->tol))
			return sl_seterr(
			    SL_EINVAL, "lp '%s': point: column %d (%s) = %g outside [%g, %g]",
			    lp->name, j - 1, lp_nm(glp_get_col_name(lp->P, j)), v, lo, hi);
		if (glp_get_col_kind(lp->P, j) != GLP_CV && fabs(v - round(v)) > a->tol)
			return sl_seterr(SL_EINVAL, "lp '%s': point: integer column %d (%s) = %g",
			                 lp->name, j - 1, lp_nm(glp_get_col_name(lp->P, j)), v);
	}
	for (int i = 1; i <= lp->nrows; i++) {
		int len = glp_get_mat_row(lp->P, i, lp->ind, lp->val);
		double act = 0.0;
		for (int k = 1; k <= len; k++)
			act += lp->val[k] * a->x[lp->ind[k] - 1];
		lp_bounds_of(glp_get_row_type(lp->P, i), glp_get_row_lb(lp->P, i),
		             glp_get_row_ub(lp->P, i), &lo, &hi);
		if (lp_outside(act, lo, hi, a->tol))
			return sl_seterr(
			    SL_EINVAL, "lp '%s': point: row %d (%s) = %g outside [%g, %g]",
			    lp->name, i - 1, lp_nm(glp_get_row_name(lp->P, i)), act, lo, hi);
	}
	return SL_OK;
}

sl_err lp_check_point(const lp_t *clp, const double *x, double tol)
{
	lp_t *lp = (lp_t *)clp; /* only the scratch arrays change */
	if (x == NULL)
		return sl_seterr(SL_EINVAL, "lp '%s': no point given", lp->name);
	SL_CHECK(lp_scratch(lp, lp->ncols));
	struct lp_check_arg a = {x, tol > 0 ? tol : 1e-9};
	return lp_guard(lp, lp_check_body, &a);
}

/* ---- solving ------------------------------------------------------- */

/* Clamps a limit to GLPK's int; 0 or negative means none. */
static int lp_int_lim(double v)
{
	if (v <= 0)
		return INT32_MAX;
	return v >= (double)INT32_MAX ? INT32_MAX : (int)ceil(v);
}

static sl_err lp_cache_alloc(lp_t *lp)
{
	if (lp->xcap < lp->ncols) {
		double *x = realloc(lp->x, (size_t)lp->ncols * sizeof(*x));
		if (x == NULL)
			return sl_seterr(SL_ENOMEM, "lp '%s': out of memory", lp->name);
		lp->x = x;
		lp->xcap = lp->ncols;
	}
	if (lp->rcap < lp->nrows) {
		double *r = realloc(lp->rowv, (size_t)lp->nrows * sizeof(*r));
		if (r == NULL)
			return sl_seterr(SL_ENOMEM, "lp '%s': out of memory", lp->name);
		lp->rowv = r;
		double *d = realloc(lp->dual, (size_t)lp->nrows * sizeof(*d));
		if (d == NULL)
			return sl_seterr(SL_ENOMEM, "lp '%s': out of memory", lp->name);
		lp->dual = d;
		lp->rcap = lp->nrows;
	}
	return SL_OK;
}

/* Why our MIP callback terminated branch-and-cut (0: it did not). */
enum { LP_STOP_NODES = 1, LP_STOP_TIME = 2 };

struct lp_solve_arg {
	const lp_opts_t *o;
	lp_result_t *res;
	double t0;    /* when the whole solve started */
	int from_mip; /* run as the relaxation of lp_solve_mip */
	/* MIP callback state */
	const double *warm1; /* 1-based copy of the incumbent */
	int warm_done;
	int warm_used;
	int64_t nodes;
	double bound;
	int stopped; /* we terminated it: LP_STOP_NODES (node_lim) or LP_STOP_TIME */
};

static sl_err lp_simplex_body(lp_t *lp, void *arg)
{
	struct lp_solve_arg *a = arg;
	const lp_opts_t *o = a->o;
	glp_smcp parm;
	glp_init_smcp(&parm);
	parm.msg_lev = o->verbose ? GLP_MSG_ON : GLP_MSG_ERR;
	parm.it_lim = lp_int_lim((double)o->it_lim);
	double left = lp_time_left(o, a->t0);
	if (left <= 0) {
		a->res->status = LP_NO_SOLUTION;
		a->res->truncated = 1;
		return sl_seterr(SL_ETIMEOUT, "lp '%s': not solved: the planning deadline has passed",
		                 lp->name);
	}
	if (isfinite(left))
		parm.tm_lim = left < 1 ? 1 : lp_int_lim(left);
	parm.presolve = o->presolve && !a->from_mip ? GLP_ON : GLP_OFF;
	if (o->dual)
		parm.meth = GLP_DUALP;
	int it0 = glp_get_it_cnt(lp->P);
	int ret = glp_simplex(lp->P, &parm);
	if (ret == GLP_EBADB || ret == GLP_ESING || ret == GLP_ECOND) {
		/* The basis kept from an earlier solve went bad after our edits. */
		SL_DEBUG(SL_SUB_LP,
		         "lp '%s': basis unusable (%d), restarting from the standard one", lp->name,
		         ret);
		glp_std_basis(lp->P);
		ret = glp_simplex(lp->P, &parm);
	}
	a->res->iterations = glp_get_it_cnt(lp->P) - it0;
	switch (ret) {
	case 0:
		break;
	case GLP_ENOPFS:
		a->res->status = LP_INFEASIBLE;
		return sl_seterr(SL_EINFEASIBLE,
		                 "lp '%s': infeasible (presolver found no primal "
		                 "feasible solution)",
		                 lp->name);
	case GLP_ENODFS:
		a->res->status = LP_UNBOUNDED;
		return sl_seterr(SL_ELP,
		                 "lp '%s': unbounded (presolver found no dual feasible "
		                 "solution)",
		                 lp->name);
	case GLP_EITLIM:
	case GLP_ETMLIM:
		a->res->status = LP_NO_SOLUTION;
		a->res->truncated = 1;
		return sl_seterr(SL_ETIMEOUT,
		                 "lp '%s': simplex stopped by its %s limit after %lld "
		                 "iterations before optimality",
		                 lp->name, ret == GLP_EITLIM ? "iteration" : "time",
		                 (long long)a->res->iterations);
	default:
		a->res->status = LP_UNSOLVED;
		return sl_seterr(SL_ELP, "lp '%s': simplex failed (GLPK code %d)%s%s", lp->name,
		                 ret, tls.tail[0] ? ": " : "", tls.tail);
	}
	switch (glp_get_status(lp->P)) {
	case GLP_OPT:
		break;
	case GLP_NOFEAS:
		a->res->status = LP_INFEASIBLE;
		return sl_seterr(SL_EINFEASIBLE,
		                 "lp '%s': infeasible (no primal feasible solution)", lp->name);
	case GLP_UNBND:
		a->res->status = LP_UNBOUNDED;
		return sl_seterr(SL_ELP, "lp '%s': unbounded objective", lp->name);
	default:
		a->res->status = LP_UNSOLVED;
		return sl_seterr(SL_ELP,
		                 "lp '%s': simplex ended without an optimum (GLPK status %d)",
		                 lp->name, glp_get_status(lp->P));
	}
	a->res->status = LP_OPTIMAL;
	a->res->obj = glp_get_obj_val(lp->P);
	a->res->bound = a->res->obj;
	if (!a->from_mip) {
		for (int j = 1; j <= lp->ncols; j++)
			lp->x[j - 1] = glp_get_col_prim(lp->P, j);
		for (int i = 1; i <= lp->nrows; i++) {
			lp->rowv[i - 1] = glp_get_row_prim(lp->P, i);
			lp->dual[i - 1] = glp_get_row_dual(lp->P, i);
		}
		lp->obj = a->res->obj;
		lp->have_sol = 1;
		lp->have_dual = 1;
	}
	return SL_OK;
}

static void lp_result_init(lp_result_t *res)
{
	memset(res, 0, sizeof(*res));
	res->status = LP_UNSOLVED;
	res->obj = NAN;
	res->bound = NAN;
}

sl_err lp_solve(lp_t *lp, const lp_opts_t *opts, lp_result_t *res)
{
	static const lp_opts_t defaults;
	lp_result_t local;
	if (res == NULL)
		res = &local;
	lp_result_init(res);
	if (opts == NULL)
		opts = &defaults;
	SL_CHECK(lp_check_owner(lp)); /* before the caches below are touched */
	lp_forget(lp);
	SL_CHECK(lp_cache_alloc(lp));
	struct lp_solve_arg a = {.o = opts, .res = res, .t0 = sl_now_ms()};
	tls.verbose = opts->verbose;
	sl_err rc = lp_guard(lp, lp_simplex_body, &a);
	tls.verbose = 0;
	return rc;
}

/* glp_intopt's callback: hands over the incumbent at the first GLP_IHEUR,
 * enforces the deterministic node limit and records the best bound. */
static void lp_mip_callback(glp_tree *T, void *info)
{
	struct lp_solve_arg *a = info;
	int a_cnt, n_cnt, t_cnt;
	glp_ios_tree_size(T, &a_cnt, &n_cnt, &t_cnt);
	a->nodes = t_cnt;
	int best = glp_ios_best_node(T);
	if (best != 0)
		a->bound = glp_ios_node_bound(T, best);
	if (glp_ios_reason(T) == GLP_IHEUR && a->warm1 != NULL && !a->warm_done) {
		a->warm_done = 1;
		a->warm_used = glp_ios_heur_sol(T, a->warm1) == 0;
		SL_DEBUG(SL_SUB_LP, "incumbent from the caller %s",
		         a->warm_used ? "accepted" : "rejected");
	}
	if (a->o->node_lim > 0 && t_cnt >= a->o->node_lim && !a->stopped) {
		a->stopped = LP_STOP_NODES;
		glp_ios_terminate(T);
	}
	/* The thread's stop (cancel or deadline): GLPK's tm_lim only sees the
	 * clock, so the cancel flag is checked here. */
	if (!a->stopped && lp_time_left(a->o, a->t0) <= 0) {
		a->stopped = LP_STOP_TIME;
		glp_ios_terminate(T);
	}
}

/* Objective value of the point x (0-based, lp_ncols values). */
static double lp_obj_of(lp_t *lp, const double *x)
{
	double v = glp_get_obj_coef(lp->P, 0);
	for (int j = 1; j <= lp->ncols; j++)
		v += glp_get_obj_coef(lp->P, j) * x[j - 1];
	return v;
}

/* Fills lp->rowv with the row activities of the point x. */
static void lp_rows_of(lp_t *lp, const double *x)
{
	for (int i = 1; i <= lp->nrows; i++) {
		int len = glp_get_mat_row(lp->P, i, lp->ind, lp->val);
		double act = 0.0;
		for (int k = 1; k <= len; k++)
			act += lp->val[k] * x[lp->ind[k] - 1];
		lp->rowv[i - 1] = act;
	}
}

static sl_err lp_intopt_body(lp_t *lp, void *arg)
{
	struct lp_solve_arg *a = arg;
	const lp_opts_t *o = a->o;
	lp_result_t *res = a->res;
	int minimise = glp_get_obj_dir(lp->P) == GLP_MIN;
	int presolve = o->presolve && o->warm == NULL;

	if (!presolve) {
		/* glp_intopt without its presolver needs an optimal relaxation. */
		sl_err rc = lp_simplex_body(lp, a);
		if (rc == SL_ETIMEOUT && o->warm != NULL) {
			/* A limit cut the relaxation: the caller's incumbent is the answer. */
			memcpy(lp->x, o->warm, (size_t)lp->ncols * sizeof(*lp->x));
			lp_rows_of(lp, o->warm);
			lp->obj = lp_obj_of(lp, o->warm);
			lp->have_sol = 1;
			res->status = LP_FEASIBLE;
			res->obj = lp->obj;
			res->bound = minimise ? -INFINITY : INFINITY;
			return SL_OK;
		}
		if (rc != SL_OK)
			return rc;
		res->obj = NAN; /* the relaxation's optimum stays as the bound */
	}
	glp_iocp parm;
	glp_init_iocp(&parm);
	parm.msg_lev = o->verbose ? GLP_MSG_ON : GLP_MSG_ERR;
	parm.presolve = presolve ? GLP_ON : GLP_OFF;
	parm.mip_gap = o->mip_gap > 0 ? o->mip_gap : 0.0;
	if (o->cuts) {
		parm.mir_cuts = GLP_ON;
		parm.gmi_cuts = GLP_ON;
		parm.cov_cuts = GLP_ON;
		parm.clq_cuts = GLP_ON;
	}
	double left = lp_time_left(o, a->t0);
	if (isfinite(left))
		parm.tm_lim = left < 1 ? 1 : lp_int_lim(left);
	parm.cb_func = lp_mip_callback;
	parm.cb_info = a;
	if (isnan(res->bound))
		res->bound = minimise ? -INFINITY : INFINITY;
	a->bound = res->bound;
	int ret = glp_intopt(lp->P, &parm);
	res->nodes = a->nodes;
	res->warm_used = a->warm_used;
	switch (ret) {
	case 0:
	case GLP_EMIPGAP:
	case GLP_ETMLIM:
	case GLP_ESTOP:
		break;
	case GLP_ENOPFS:
		res->status = LP_INFEASIBLE;
		return sl_seterr(SL_EINFEASIBLE,
		                 "lp '%s': infeasible (presolver found no primal "
		                 "feasible solution)",
		                 lp->name);
	case GLP_ENODFS:
		res->status = LP_UNBOUNDED;
		return sl_seterr(SL_ELP,
		                 "lp '%s': unbounded relaxation (presolver found no dual "
		                 "feasible solution)",
		                 lp->name);
	default:
		res->status = LP_UNSOLVED;
		return sl_seterr(SL_ELP, "lp '%s': branch-and-cut failed (GLPK code %d)%s%s",
		                 lp->name, ret, tls.tail[0] ? ": " : "", tls.tail);
	}
	int st = glp_mip_status(lp->P);
	int have = st == GLP_OPT || st == GLP_FEAS;
	double gobj = have ? glp_mip_obj_val(lp->P) : NAN;
	/* The caller's incumbent, evaluated by us, wins when GLPK never used it
	 * (no GLP_IHEUR came before a limit) and found nothing better. */
	double wobj = o->warm != NULL ? lp_obj_of(lp, o->warm) : NAN;
	int use_warm =
	    o->warm != NULL && (!have || (minimise ? wobj < gobj - 1e-9 * (1 + fabs(gobj))
	                                           : wobj > gobj + 1e-9 * (1 + fabs(gobj))));
	if (ret == 0 && st == GLP_OPT && !use_warm) {
		res->status = LP_OPTIMAL;
	} else if (ret == 0 && st == GLP_NOFEAS && o->warm == NULL) {
		res->status = LP_INFEASIBLE;
		return sl_seterr(SL_EINFEASIBLE,
		                 "lp '%s': infeasible (no integer feasible solution)", lp->name);
	} else if (ret == GLP_EMIPGAP && !use_warm) {
		res->status = LP_OPTIMAL;
		res->truncated = 1;
	} else if (have || o->warm != NULL) {
		res->status = LP_FEASIBLE;
		res->truncated = ret != 0;
	} else {
		res->status = LP_NO_SOLUTION;
		res->truncated = 1;
		res->bound = a->bound;
		return sl_seterr(SL_ETIMEOUT,
		                 "lp '%s': branch-and-cut stopped by its %s limit "
		                 "before finding a feasible solution (%lld nodes)",
		                 lp->name, a->stopped == LP_STOP_NODES ? "node" : "time",
		                 (long long)a->nodes);
	}
	if (use_warm) {
		memcpy(lp->x, o->warm, (size_t)lp->ncols * sizeof(*lp->x));
		lp_rows_of(lp, o->warm);
		lp->obj = wobj;
	} else {
		for (int j = 1; j <= lp->ncols; j++)
			lp->x[j - 1] = glp_mip_col_val(lp->P, j);
		for (int i = 1; i <= lp->nrows; i++)
			lp->rowv[i - 1] = glp_mip_row_val(lp->P, i);
		lp->obj = gobj;
	}
	lp->have_sol = 1;
	res->obj = lp->obj;
	if (res->status == LP_OPTIMAL && ret == 0) {
		res->bound = res->obj;
	} else {
		/* The best active node's bound; it can never be beyond the incumbent. */
		double b = a->bound;
		if (minimise)
			b = isnan(b) ? -INFINITY : fmin(b, res->obj);
		else
			b = isnan(b) ? INFINITY : fmax(b, res->obj);
		res->bound = b;
	}
	return SL_OK;
}

sl_err lp_solve_mip(lp_t *lp, const lp_opts_t *opts, lp_result_t *res)
{
	static const lp_opts_t defaults;
	lp_result_t local;
	double *warm1 = NULL;
	if (res == NULL)
		res = &local;
	lp_result_init(res);
	if (opts == NULL)
		opts = &defaults;
	SL_CHECK(lp_check_owner(lp)); /* before the caches below are touched */
	lp_forget(lp);
	SL_CHECK(lp_cache_alloc(lp));
	SL_CHECK(lp_scratch(lp, lp->ncols));
	if (opts->warm != NULL) {
		sl_err rc = lp_check_point(lp, opts->warm, 1e-7);
		if (rc != SL_OK)
			return sl_seterr(rc, "incumbent rejected: %s", sl_errmsg());
		warm1 = malloc(((size_t)lp->ncols + 1) * sizeof(*warm1));
		if (warm1 == NULL)
			return sl_seterr(SL_ENOMEM, "lp '%s': out of memory", lp->name);
		warm1[0] = 0.0;
		for (int j = 0; j < lp->ncols; j++)
			warm1[j + 1] = opts->warm[j];
	}
	struct lp_solve_arg a = {
	    .o = opts, .res = res, .t0 = sl_now_ms(), .from_mip = 1, .warm1 = warm1};
	tls.verbose = opts->verbose;
	sl_err rc = lp_guard(lp, lp_intopt_body, &a);
	tls.verbose = 0;
	free(warm1);
	return rc;
}

/* ---- reading the solution ------------------------------------------ */

double lp_value(const lp_t *lp, int col)
{
	if (!lp->have_sol || col < 0 || col >= lp->ncols)
		return NAN;
	return lp->x[col];
}

double lp_row_value(const lp_t *lp, int row)
{
	if (!lp->have_sol || row < 0 || row >= lp->nrows)
		return NAN;
	return lp->rowv[row];
}

double lp_row_dual(const lp_t *lp, int row)
{
	if (!lp->have_dual || row < 0 || row >= lp->nrows)
		return NAN;
	return lp->dual[row];
}

double lp_obj(const lp_t *lp)
{
	return lp->have_sol ? lp->obj : NAN;
}

sl_err lp_values(const lp_t *lp, double *x)
{
	if (!lp->have_sol)
		return sl_seterr(SL_EINVAL, "lp '%s': no solution to read", lp->name);
	memcpy(x, lp->x, (size_t)lp->ncols * sizeof(*x));
	return SL_OK;
}

const char *lp_status_name(lp_status st)
{
	switch (st) {
	case LP_UNSOLVED:
		return "unsolved";
	case LP_OPTIMAL:
		return "optimal";
	case LP_FEASIBLE:
		return "feasible";
	case LP_INFEASIBLE:
		return "infeasible";
	case LP_UNBOUNDED:
		return "unbounded";
	case LP_NO_SOLUTION:
		return "no solution";
	}
	return "unknown";
}

/* ---- environment --------------------------------------------------- */

static sl_err lp_mem_body(lp_t *lp, void *arg)
{
	(void)lp;
	glp_mem_limit(*(const int *)arg > 0 ? *(const int *)arg : 0x7fffffff);
	return SL_OK;
}

sl_err lp_set_mem_limit_mb(int mb)
{
	if (mb < 0)
		return sl_seterr(SL_EINVAL, "GLPK memory limit %d MB is negative", mb);
	tls.mem_mb = mb;
	return lp_guard(NULL, lp_mem_body, &mb);
}

void lp_thread_end(void)
{
	lp_env_drop();
	tls.mem_mb = 0;
}

const char *lp_glpk_version(void)
{
	return glp_version();
}
