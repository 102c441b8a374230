/* sluice planner: the `static` baseline, one sequence-parallel degree for the
 * whole run on a fixed mesh of data-parallel groups, as DeepSpeed-Ulysses
 * (Jacobs et al., 2023) and Megatron-LM context parallelism run it: the
 * degree is chosen once, for the longest sequence the run will see. */
#include <stdio.h>

#include "pack.h"
#include "planner.h"

/* Chooses the degree (see planner_policy_static) and whether it needs the
 * offload fallback. Returns SL_EINVAL for a bad opts->sp. */
static sl_err static_degree(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                            const sl_policy_opts_t *opts, int32_t *d_out, int64_t *longest_out)
{
	int32_t N = cost->cl.ranks;
	int64_t longest = 0;

	for (int64_t i = 0; i < n; i++)
		if (seqs[i].length > longest)
			longest = seqs[i].length;
	if (opts->trace_max_len < 0)
		return sl_seterr(SL_EINVAL, "static: trace max length %lld must be >= 0 (0 = the batch's)",
		                 (long long)opts->trace_max_len);
	if (opts->trace_max_len > 0) {
		/* A static mesh is sized for the trace; a batch that still outgrows
		 * the declared maximum raises the degree rather than failing. */
		if (longest > opts->trace_max_len)
			SL_WARN(SL_SUB_PLAN,
			        "static: batch holds a sequence of %lld tokens, longer than the "
			        "declared trace maximum %lld; sizing for the batch",
			        (long long)longest, (long long)opts->trace_max_len);
		else
			longest = opts->trace_max_len;
	}
	*longest_out = longest;

	if (opts->sp != 0) {
		if (opts->sp < 1 || opts->sp > N)
			return sl_seterr(SL_EINVAL,
			                 "static: sequence-parallel degree --sp %d outside [1, %d] "
			                 "(the cluster has %d ranks)",
			                 opts->sp, N, N);
		if (N % opts->sp != 0)
			SL_INFO(SL_SUB_PLAN, "static: --sp %d does not divide %d ranks; %d ranks idle",
			        opts->sp, N, N % opts->sp);
		*d_out = opts->sp;
		return SL_OK;
	}
	int32_t d = planner_pow2_holding(cost, longest);
	if (d == 0) {
		/* No power of two <= N holds the longest sequence resident. DeepSpeed
		 * would run out of memory here; we keep the largest power-of-two
		 * mesh and offload the least that fits (sequences that fit stay
		 * resident), or, when even max_offload is not enough there (N not a
		 * power of two), one group of all N ranks. */
		d = planner_offload_degree(cost, longest);
		SL_INFO(SL_SUB_PLAN,
		        "static: no power of two <= %d ranks holds %lld tokens; using %d with offload",
		        N, (long long)longest, d);
	}
	*d_out = d;
	return SL_OK;
}

/* The static policy (sl_policy_fn contract). Degree D: opts->sp when set
 * (any integer in [1, N]; N mod D ranks idle; a sequence too long for D is
 * offloaded by the least fraction that fits, where DeepSpeed would run out
 * of memory; SL_EINFEASIBLE when more than max_offload would be needed),
 * else the smallest power of two whose padded share p / D of the longest
 * sequence (opts->trace_max_len when > 0, else the batch's) fits in cap,
 * else planner_offload_degree (largest power of two <= N, offloading). Sequences are
 * packed into micro-batches best-fit-decreasing and dealt LPT to the
 * floor(N / D) groups of consecutive ranks (planner_fixed_sp_plan). */
sl_err planner_policy_static(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                             const sl_policy_opts_t *opts, sl_plan_t **out)
{
	static const sl_policy_opts_t defaults;
	int32_t d = 0;
	int64_t longest = 0;

	*out = NULL;
	if (opts == NULL)
		opts = &defaults;
	if (n < 1)
		return sl_seterr(SL_EINVAL, "static: the request has no sequences");
	SL_CHECK(static_degree(cost, seqs, n, opts, &d, &longest));
	SL_CHECK(planner_fixed_sp_plan(cost, seqs, n, d, "static", out));
	if (opts->sp > 0)
		snprintf((*out)->note, sizeof((*out)->note), "sp=%d groups=%d (fixed by --sp)", d,
		         cost->cl.ranks / d);
	else
		snprintf((*out)->note, sizeof((*out)->note), "sp=%d groups=%d sized for %lld tokens",
		         d, cost->cl.ranks / d, (long long)longest);
	return SL_OK;
}
