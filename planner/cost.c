/* sluice planner: the reference cost model sluice.cost/1
 * (docs/cost-model.md). Every number here must match the spec
 * exactly: outside checkers recompute plans with the same formulas. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "planner.h"

#define MIB 1048576.0

/* The ulysses all-to-all bandwidth of degree d: the entry of d, else of the
 * next larger degree listed, else the largest's. */
static double bw_lookup(const sl_profile_t *p, int32_t d)
{
	for (int i = 0; i < p->n_bw; i++)
		if (p->bw_degree[i] >= d)
			return p->bw_gbps[i];
	return p->bw_gbps[p->n_bw - 1];
}

sl_err sl_cost_init(sl_cost_t *c, const sl_profile_t *p, const sl_cluster_t *cl)
{
	memset(c, 0, sizeof(*c));
	SL_CHECK(sl_profile_check(p));
	SL_CHECK(sl_cluster_check(cl));
	c->prof = *p;
	c->cl = *cl;
	c->model_state_bytes = p->params > 0 ? p->params * 16.0 / cl->ranks : p->model_state_bytes;
	double room = floor((p->gpu_mem_bytes - c->model_state_bytes) / p->act_bytes_per_token);
	if (!(room >= 1))
		return sl_seterr(SL_EINFEASIBLE,
		                 "profile %s on %d ranks: model state (%.0f bytes per rank) leaves no "
		                 "room for activations in %.0f bytes",
		                 p->name, cl->ranks, c->model_state_bytes, p->gpu_mem_bytes);
	/* sl_profile_check bounded gpu_mem_bytes / act_bytes_per_token, so room
	 * <= SL_PROFILE_MAX_CAP and the conversion is exact. */
	c->cap = (int64_t)room;
	c->a2a_gbps = malloc(sizeof(double) * ((size_t)cl->ranks + 1));
	if (c->a2a_gbps == NULL)
		return sl_seterr(SL_ENOMEM, "cost model: out of memory");
	c->a2a_gbps[0] = INFINITY;
	c->comm_monotone = p->sp_comm == SL_SP_ULYSSES || p->p2p_gbps_inter <= p->p2p_gbps_intra;
	for (int32_t d = 1; d <= cl->ranks; d++) {
		c->a2a_gbps[d] = p->sp_comm == SL_SP_ULYSSES ? bw_lookup(p, d) : INFINITY;
		if (d > 1 && c->a2a_gbps[d] > c->a2a_gbps[d - 1])
			c->comm_monotone = 0;
	}
	return SL_OK;
}

void sl_cost_fini(sl_cost_t *c)
{
	free(c->a2a_gbps);
	c->a2a_gbps = NULL;
}

int64_t sl_cost_padded(int64_t s, int32_t d)
{
	if (d <= 1)
		return s;
	int64_t k = 2 * (int64_t)d;
	return (s + k - 1) / k * k;
}

double sl_cost_resident(int64_t s, int32_t d, double f)
{
	return (1.0 - f) * (double)sl_cost_padded(s, d) / d;
}

/* The compute part of T(s, d, 0) and, in *comm, its communication: the
 * all-to-all (Ulysses, added to the compute) or the ring's K/V transfer
 * (overlapped: the sequence takes the longer of the two). */
static double seq_parts_ms(const sl_cost_t *c, int64_t s, int32_t d, int one_node, double *comm)
{
	const sl_profile_t *p = &c->prof;
	double pd = (double)sl_cost_padded(s, d);
	double t = (p->alpha1 * pd * pd + p->alpha2 * pd) / d;
	*comm = 0;
	if (d > 1) {
		if (p->sp_comm == SL_SP_ULYSSES) {
			double bw = d <= c->cl.ranks ? c->a2a_gbps[d] : bw_lookup(p, d);
			*comm = (p->a2a_bytes_per_token * pd / d) / MIB / bw;
		} else {
			/* the ring hop extension (ring profiles only; 0 in the reference) */
			t += p->ring_tok_ms * pd * (1.0 - 1.0 / d);
			double bw = one_node ? p->p2p_gbps_intra : p->p2p_gbps_inter;
			*comm = (double)(d - 1) * ((p->kv_bytes_per_token * pd / d) / MIB) / bw;
		}
	}
	return t;
}

double sl_cost_seq_ms(const sl_cost_t *c, int64_t s, int32_t d, double f, int one_node)
{
	const sl_profile_t *p = &c->prof;
	double tm;
	double t = seq_parts_ms(c, s, d, one_node, &tm);
	if (p->sp_comm == SL_SP_ULYSSES)
		t += tm;
	else
		t = t > tm ? t : tm;
	if (f > 0)
		t += (f * p->act_bytes_per_token * (double)sl_cost_padded(s, d) / d) / MIB /
		     p->pcie_gbps;
	return t;
}

double sl_cost_seq_comm_ms(const sl_cost_t *c, int64_t s, int32_t d, int one_node)
{
	double tm;
	double t = seq_parts_ms(c, s, d, one_node, &tm);
	if (c->prof.sp_comm == SL_SP_ULYSSES)
		return tm;
	return tm > t ? tm - t : 0;
}

double sl_cost_min_offload(const sl_cost_t *c, int64_t s, int32_t d)
{
	double f = 1.0 - (double)c->cap * d / (double)sl_cost_padded(s, d);
	return f > 0 ? f : 0.0;
}

double sl_cost_offload_for(const sl_cost_t *c, int64_t s, int32_t d, double budget)
{
	double per = (double)sl_cost_padded(s, d) / d;
	if (per <= budget)
		return 0.0;
	if (budget <= 0)
		return 1.0;
	/* Round up to the 1e-6 grid, then step until the rule holds in floating
	 * point exactly as a checker computes it. */
	double f = ceil((1.0 - budget / per) * 1e6) / 1e6;
	while (f < 1.0 && (1.0 - f) * per > budget)
		f += 1e-6;
	if (f > c->prof.max_offload + 1e-12)
		return 1.0;
	return f;
}

int sl_cost_one_node(const sl_cost_t *c, const int32_t *ranks, int32_t n)
{
	int32_t g = c->cl.ranks_per_node;
	for (int32_t i = 1; i < n; i++)
		if (ranks[i] / g != ranks[0] / g)
			return 0;
	return 1;
}

/* Time and work of s on d ranks as the ideal counts them (cost-model.md,
 * "The ideal"): t with the least offload that fits, w the least over f in
 * {f_d, 1} of d T(s, d, f) + beta (1 - f) p_d / cap. */
static void bound_at(const sl_cost_t *c, int64_t s, int32_t d, double *t_out, double *w_out)
{
	int64_t p = sl_cost_padded(s, d);
	double f = 1.0 - (double)c->cap * d / (double)p;
	if (f < 0)
		f = 0;
	double t = sl_cost_seq_ms(c, s, d, f, d <= c->cl.ranks_per_node);
	double w = d * t + c->prof.beta * (1.0 - f) * (double)p / (double)c->cap;
	/* work is linear in f, so its least over f_d <= f < 1 is at an
	 * end: f = 1 (no fixed-cost share, everything offloaded) is below
	 * f_d where offloading a token costs less than the fixed cost it
	 * frees (docs/cost-model.md, "The ideal"). */
	double w1 = d * sl_cost_seq_ms(c, s, d, 1.0, d <= c->cl.ranks_per_node);
	*t_out = t;
	*w_out = w1 < w ? w1 : w;
}

/* The largest degree worth trying for s: once 2d >= s the padded length is
 * 2d, compute 4 alpha1 d + 2 alpha2 grows with d, nothing is offloaded
 * (cap >= 2), and the communication of 2 tokens per rank cannot shrink when
 * bandwidth never grows with the degree. So no larger degree beats
 * d = ceil(s / 2) on either bound; stopping there gives exactly the spec's
 * minimum over 1..N. */
static int32_t bound_dmax(const sl_cost_t *c, int64_t s)
{
	int32_t dmax = c->cl.ranks;
	if (c->comm_monotone && c->cap >= 2 && (s + 1) / 2 < dmax)
		dmax = (int32_t)((s + 1) / 2 > 1 ? (s + 1) / 2 : 1);
	return dmax;
}

void sl_cost_seq_bounds(const sl_cost_t *c, int64_t s, double *crit, double *work)
{
	double best_crit = INFINITY, best_work = INFINITY;
	int32_t dmax = bound_dmax(c, s);
	for (int32_t d = 1; d <= dmax; d++) {
		double t, w;
		bound_at(c, s, d, &t, &w);
		if (t < best_crit)
			best_crit = t;
		if (w < best_work)
			best_work = w;
	}
	*crit = best_crit;
	*work = best_work;
}

double planner_cost_work_floor(const sl_cost_t *c, int64_t s, int32_t d, double *busy)
{
	const sl_profile_t *p = &c->prof;
	double sd = (double)s, comp = p->alpha1 * sd * sd + p->alpha2 * sd;
	double per_tok = p->act_bytes_per_token / MIB / p->pcie_gbps;
	if (p->beta / (double)c->cap < per_tok)
		per_tok = p->beta / (double)c->cap;
	if (p->sp_comm == SL_SP_ULYSSES) {
		double bw = p->bw_gbps[p->n_bw - 1];
		for (int i = 0; i < p->n_bw; i++)
			if (p->bw_degree[i] >= d && p->bw_gbps[i] > bw)
				bw = p->bw_gbps[i];
		comp += p->a2a_bytes_per_token * sd / MIB / bw;
	} else {
		double bw = p->p2p_gbps_intra > p->p2p_gbps_inter ? p->p2p_gbps_intra
		                                                   : p->p2p_gbps_inter;
		double comm = (double)(d - 1) * p->kv_bytes_per_token * sd / MIB / bw;
		if (comm > comp)
			comp = comm;
	}
	if (busy != NULL)
		*busy = comp;
	return comp + per_tok * sd;
}

/* planner_cost_seq_work tries degrees in order only while
 * planner_cost_work_floor says a larger one could still do better: the
 * floor is a real-arithmetic bound, so a margin far above rounding keeps
 * the result bit-identical to the full loop. On large clusters this is a
 * few dozen degrees per length instead of thousands. */
double planner_cost_seq_work(const sl_cost_t *c, int64_t s, int32_t *tried)
{
	double best = INFINITY;
	int32_t dmax = bound_dmax(c, s), d;
	for (d = 1; d <= dmax; d++) {
		if (d >= 2 && planner_cost_work_floor(c, s, d, NULL) > best * (1.0 + 1e-9))
			break;
		double t, w;
		bound_at(c, s, d, &t, &w);
		if (w < best)
			best = w;
	}
	if (tried != NULL)
		*tried = d - 1;
	return best;
}

sl_err sl_cost_ideal(const sl_cost_t *c, const int64_t *len, size_t n, double *ideal_ms)
{
	/* Lengths repeat a lot in real batches: bound each distinct length once. */
	int64_t *v = malloc(sizeof(int64_t) * (n ? n : 1));
	if (v == NULL)
		return sl_seterr(SL_ENOMEM, "ideal: out of memory");
	for (size_t i = 0; i < n; i++) {
		if (len[i] < 1) {
			free(v);
			return sl_seterr(SL_ERANGE, "ideal: sequence index %zu has length %lld", i,
			                 (long long)len[i]);
		}
		v[i] = len[i];
	}
	qsort(v, n, sizeof(int64_t), planner_cmp_i64);
	double max_crit = 0, sum_work = 0;
	/* A sequence's time on d ranks never falls as it grows (the padded
	 * length, the offload it needs and every term grow with it), so the
	 * largest least time is the longest sequence's. */
	if (n > 0) {
		double work;
		sl_cost_seq_bounds(c, v[n - 1], &max_crit, &work);
	}
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && v[j] == v[i])
			j++;
		sum_work += planner_cost_seq_work(c, v[i], NULL) * (double)(j - i);
		i = j;
	}
	free(v);
	double a = c->prof.beta + max_crit;
	double b = sum_work / c->cl.ranks;
	*ideal_ms = a > b ? a : b;
	return SL_OK;
}

sl_err sl_cost_check_seq(const sl_cost_t *c, int64_t id, int64_t s)
{
	int32_t n = c->cl.ranks;
	double fmax = c->prof.max_offload;
	/* The most one sequence can use: every rank, offloading up to fmax. */
	double per = (double)sl_cost_padded(s, n) / n;
	if ((1.0 - fmax) * per <= (double)c->cap)
		return SL_OK;
	double limit_tokens = (double)c->cap * n / (1.0 - fmax);
	return sl_seterr(SL_EINFEASIBLE,
	                 "sequence %lld has %lld tokens but the cluster holds at most %.0f tokens of "
	                 "one sequence (%d ranks x %lld tokens, offloading up to %.1f%%): %.0f tokens "
	                 "too long",
	                 (long long)id, (long long)s, floor(limit_tokens), n, (long long)c->cap,
	                 fmax * 100.0, (double)s - floor(limit_tokens));
}
