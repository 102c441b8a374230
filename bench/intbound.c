/* A lower bound on the step of any plan that, unlike the spec's ideal,
 * charges whole micro-batch fixed costs (issue 10, part 3); used by
 * sluice-bound and sluice-optimum.
 *
 * The bound ("integral bound"). Every rank r of a valid plan runs k_r >= 1
 * group executions (when it holds anything) and holds L_r tokens over them
 * (its per-rank share p / d of each sequence of each of its groups); at most
 * k_r * cap of them are resident, the rest are offloaded at c_off ms per
 * token (c_off = MiB(act_bytes_per_token) / pcie_gbps); its busy time is at
 * least C_r + k_r * beta + c_off * max(0, L_r - k_r * cap), C_r the
 * per-rank times T(s, d, 0) of its sequences, and the step is at least every
 * rank's busy time. Relax: sequences are fluid (any fraction of a sequence
 * may go to any rank), and ranks with the same k are pooled (the constraint
 * of a pool is the sum of its ranks', which their average satisfies: the
 * constraint is convex for a fixed k). A sequence run on d ranks brings
 * d * T(s, d, 0) ms and p_d tokens in total; it may use degree d only if
 * beta + T(s, d, f_d) <= T (f_d the least offload that fits, ring bandwidth
 * the best the degree allows, as in the ideal). Since d = 1 brings the least
 * of both, a sequence that may run on one rank is offered only d = 1; others
 * are offered every allowed degree (a convex combination of them).
 *
 * For a candidate step T this is the MILP: integer n_k >= 0 (ranks running
 * k executions, k = 1..floor(T / beta)), sum n_k <= N; y_{i,d,k} >= 0 the
 * part of sequence i at degree d on pool k, sum_{d,k} y = 1; e_k >= 0;
 *   sum y * d T(s, d, 0) + c_off e_k + n_k (k beta - T) <= 0
 *   sum y * p_d - e_k - n_k k cap <= 0.
 * Any valid plan with step <= T gives a point of it, so the least T for
 * which it is feasible (bisection, to 0.01%) is a lower bound on every
 * plan's step; the reported bound is the larger of it and the ideal. It
 * drops: which sequences share a rank (bin packing), the placement of rings
 * on concrete ranks over time, padding of short sequences' partners.
 *
 * With ring set ("--ring"), the longest sequence runs on a whole number
 * of ranks d: for each d, its d ranks form pools of their own whose ranks
 * each carry its T(s, d, 0) and p_d / d tokens (tighter when one long
 * sequence shapes the step; 10-60 MILPs per bisection step). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "intbound.h"
#include "lp.h"

/* Branch-and-bound nodes per feasibility MILP; a search cut by it counts as
 * feasible (deterministic, and the bound stays valid). */
#define INTBOUND_NODES 2000
/* MILPs per feasibility check with the ring (degrees whose LP relaxation is
 * feasible); past it the check answers feasible, which keeps the bound
 * valid and its time bounded. */
#define INTBOUND_RING_MILPS 8

/* Whether the pooled MILP above is feasible at step T (*ok). With fix >= 0,
 * one sequence of length len[fix] (not counted in cnt) runs on exactly fd
 * ranks: those form pools of their own (ring pools, k executions each,
 * fd ranks in all), each of whose ranks carries T(s, fd, 0) ms and
 * p_fd / fd tokens of it; relaxing lp to an LP when relax is set. */
static sl_err feasible(const sl_cost_t *c, const int64_t *len, const int *cnt, int m, double T,
                       int fix, int32_t fd, int relax, int *ok)
{
	const sl_profile_t *pf = &c->prof;
	int32_t N = c->cl.ranks, G = c->cl.ranks_per_node;
	double beta = pf->beta, coff = pf->act_bytes_per_token / 1048576.0 / pf->pcie_gbps;
	double cap = (double)c->cap;
	int K = (int)floor(T / beta);
	sl_err rc = SL_OK;
	lp_t *lp = NULL;
	*ok = 0;
	if (K < 1)
		return SL_OK;
	double ft = 0, fk = 0; /* the fixed sequence's per-rank time and tokens */
	if (fix >= 0) {
		int64_t p = sl_cost_padded(len[fix], fd);
		double f = fmax(0, 1 - cap * fd / (double)p);
		if (!(f < 1) || beta + sl_cost_seq_ms(c, len[fix], fd, f, fd <= G) > T)
			return SL_OK;
		ft = sl_cost_seq_ms(c, len[fix], fd, 0, fd <= G);
		fk = (double)p / fd;
	}
	int P = fix >= 0 ? 2 : 1; /* pool classes: other ranks, ring ranks */
	int maxd = N, nz;
	int *ncol = calloc((size_t)m, sizeof(int));
	double *tw = malloc(sizeof(double) * (size_t)m * (size_t)maxd);
	double *tk = malloc(sizeof(double) * (size_t)m * (size_t)maxd);
	int *ycol = malloc(sizeof(int) * (size_t)m * (size_t)maxd * (size_t)(K * P));
	int ncap = m * maxd * K * P + 4 * K * P + 8;
	int *cols = malloc(sizeof(int) * (size_t)ncap);
	double *vals = malloc(sizeof(double) * (size_t)ncap);
	int *nk = malloc(sizeof(int) * (size_t)(K * P)), *ek = malloc(sizeof(int) * (size_t)(K * P));
	if (!ncol || !tw || !tk || !ycol || !cols || !vals || !nk || !ek) {
		rc = sl_seterr(SL_ENOMEM, "sluice-bound: out of memory");
		goto out;
	}
	for (int i = 0; i < m; i++) {
		if (cnt[i] == 0)
			continue;
		for (int32_t d = 1; d <= maxd; d++) {
			int64_t p = sl_cost_padded(len[i], d);
			double f = fmax(0, 1 - cap * d / (double)p);
			if (!(f < 1))
				continue;
			double t = sl_cost_seq_ms(c, len[i], d, f, d <= G);
			if (beta + t > T)
				continue;
			tw[i * maxd + ncol[i]] = d * sl_cost_seq_ms(c, len[i], d, 0, d <= G);
			tk[i * maxd + ncol[i]] = (double)p;
			ncol[i]++;
			if (d == 1)
				break; /* d = 1 brings the least time and tokens */
		}
		if (ncol[i] == 0)
			goto out; /* no degree finishes within T: infeasible */
	}
	SL_CHECK_GOTO(lp_new("int-bound", 1, &lp), rc, out);
	/* pool q = cls * K + (k - 1) */
	for (int q = 0; q < K * P; q++) {
		int k = q % K + 1;
		double hi = q < K ? N : fd;
		/* a ring rank runs the fixed sequence in one of its k executions */
		if (q >= K && ft + k * beta > T)
			hi = 0;
		/* objective 0: any feasible point answers, so branch-and-bound
		 * stops at the first */
		SL_CHECK_GOTO(lp_add_col(lp, NULL, relax ? LP_CONTINUOUS : LP_INTEGER, 0, hi, 0, &nk[q]),
		              rc, out);
		SL_CHECK_GOTO(lp_add_col(lp, NULL, LP_CONTINUOUS, 0, INFINITY, 0, &ek[q]), rc, out);
	}
	for (int i = 0; i < m; i++) {
		if (cnt[i] == 0)
			continue;
		nz = 0;
		for (int j = 0; j < ncol[i]; j++)
			for (int q = 0; q < K * P; q++) {
				int *y = &ycol[((size_t)i * (size_t)maxd + (size_t)j) * (size_t)(K * P) +
				               (size_t)q];
				SL_CHECK_GOTO(lp_add_col(lp, NULL, LP_CONTINUOUS, 0, INFINITY, 0, y), rc, out);
				cols[nz] = *y;
				vals[nz++] = 1;
			}
		SL_CHECK_GOTO(lp_add_row(lp, NULL, nz, cols, vals, cnt[i], cnt[i], NULL), rc, out);
	}
	for (int q = 0; q < K * P; q++) {
		int k = q % K + 1;
		for (int which = 0; which < 2; which++) {
			nz = 0;
			for (int i = 0; i < m; i++)
				for (int j = 0; j < ncol[i]; j++) {
					cols[nz] = ycol[((size_t)i * (size_t)maxd + (size_t)j) *
					                        (size_t)(K * P) +
					                (size_t)q];
					vals[nz++] = which == 0 ? tw[i * maxd + j] : tk[i * maxd + j];
				}
			cols[nz] = ek[q];
			vals[nz++] = which == 0 ? coff : -1;
			cols[nz] = nk[q];
			if (which == 0)
				vals[nz++] = k * beta - T + (q >= K ? ft : 0);
			else
				vals[nz++] = -(double)k * cap + (q >= K ? fk : 0);
			SL_CHECK_GOTO(lp_add_row(lp, NULL, nz, cols, vals, -INFINITY, 0, NULL), rc, out);
		}
	}
	for (int q = 0; q < K; q++) {
		cols[q] = nk[q];
		vals[q] = 1;
	}
	SL_CHECK_GOTO(lp_add_row(lp, "ranks", K, cols, vals, -INFINITY, N - (fix >= 0 ? fd : 0),
	                         NULL),
	              rc, out);
	if (fix >= 0) {
		for (int q = 0; q < K; q++)
			cols[q] = nk[K + q];
		SL_CHECK_GOTO(lp_add_row(lp, "ring", K, cols, vals, fd, fd, NULL), rc, out);
	}
	lp_opts_t o = {0};
	o.presolve = 1;
	o.node_lim = INTBOUND_NODES;
	lp_result_t res;
	rc = relax ? lp_solve(lp, &o, &res) : lp_solve_mip(lp, &o, &res);
	if (rc == SL_EINFEASIBLE) { /* the answer, not a failure */
		sl_clearerr();
		rc = SL_OK;
	} else if (rc == SL_ETIMEOUT) {
		/* node limit before an answer: counted as feasible, so the bound
		 * stays a bound (only weaker) */
		sl_clearerr();
		*ok = 1;
		rc = SL_OK;
		goto out;
	}
	*ok = rc == SL_OK && (res.status == LP_OPTIMAL || res.status == LP_FEASIBLE);
out:
	lp_free(&lp);
	free(ncol);
	free(tw);
	free(tk);
	free(ycol);
	free(cols);
	free(vals);
	free(nk);
	free(ek);
	return rc;
}

/* Feasibility at T of the bound with the longest sequence (index fix of
 * len, one count of it taken out of cnt) on a whole number of ranks: some
 * degree d must be feasible (the LP relaxation screens each d first). */
static sl_err feasible_any(const sl_cost_t *c, const int64_t *len, int *cnt, int m, double T,
                           int fix, int *ok)
{
	if (fix < 0)
		return feasible(c, len, cnt, m, T, -1, 0, 0, ok);
	cnt[fix]--;
	sl_err rc = SL_OK;
	int milps = 0;
	*ok = 0;
	for (int32_t d = 1; d <= c->cl.ranks && !*ok && rc == SL_OK; d++) {
		int lpok = 0;
		rc = feasible(c, len, cnt, m, T, fix, d, 1, &lpok);
		if (rc != SL_OK || !lpok)
			continue;
		if (milps++ == INTBOUND_RING_MILPS)
			*ok = 1; /* more degrees left than MILPs allowed: counted feasible */
		else
			rc = feasible(c, len, cnt, m, T, fix, d, 0, ok);
	}
	cnt[fix]++;
	return rc;
}

sl_err bench_int_bound(const sl_cost_t *c, const int64_t *len, int n, double lo, double hi,
                       int ring, double *lb)
{
	sl_err rc = SL_OK;
	double g = c->prof.grad_sync_ms;
	/* distinct lengths with their counts */
	int64_t *v = malloc(sizeof(int64_t) * (size_t)n);
	int *cnt = malloc(sizeof(int) * (size_t)n);
	int m = 0, fix = -1;
	if (!v || !cnt) {
		rc = sl_seterr(SL_ENOMEM, "sluice-bound: out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		int j = 0;
		while (j < m && v[j] != len[i])
			j++;
		if (j == m) {
			v[m] = len[i];
			cnt[m++] = 0;
		}
		cnt[j]++;
		if (ring && (fix < 0 || v[j] > v[fix]))
			fix = j;
	}
	lo -= g;
	hi -= g;
	int ok = 0;
	/* hi is a valid plan's step, so the relaxation must hold there: a
	 * check of the relaxation itself */
	SL_CHECK_GOTO(feasible_any(c, v, cnt, m, hi, fix, &ok), rc, out);
	if (!ok) {
		rc = sl_seterr(SL_EINTERNAL, "sluice-bound: the relaxation is infeasible at %.3f ms, "
		               "the step of a valid plan (a bug in the bound)", hi + g);
		goto out;
	}
	SL_CHECK_GOTO(feasible_any(c, v, cnt, m, lo, fix, &ok), rc, out);
	if (!ok) {
		while (hi - lo > 2e-4 * hi) {
			double mid = 0.5 * (lo + hi);
			SL_CHECK_GOTO(feasible_any(c, v, cnt, m, mid, fix, &ok), rc, out);
			if (ok)
				hi = mid;
			else
				lo = mid;
		}
	}
	*lb = lo + g; /* infeasible at lo (or lo is the given bound): a lower bound */
out:
	free(v);
	free(cnt);
	return rc;
}

