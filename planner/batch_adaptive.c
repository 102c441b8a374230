/* sluice planner: the `batch-adaptive` baseline, FlexSP's "BatchAda" (Wang
 * et al., FlexSP, ASPLOS 2025, section 7: the best single SP degree chosen
 * per batch): every power-of-two degree that holds the batch's longest
 * sequence is planned like `static` and the fastest under the reference
 * model is kept. */
#include <stdio.h>
#include <stdlib.h>

#include "pack.h"
#include "planner.h"

/* The batch-adaptive policy (sl_policy_fn contract). Tries D = d0, 2 d0, ...
 * up to N, where d0 is the smallest power of two holding the batch's longest
 * sequence; when none <= N holds it, the only candidate is
 * planner_offload_degree's (as `static` does). Keeps the plan with the
 * least predicted step time, ties to the smaller D. opts->sp and
 * opts->trace_max_len are ignored: the degree is per batch by design. The
 * returned plan is not evaluated (sl_plan_request does that). */
sl_err planner_policy_batch_adaptive(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                                     const sl_policy_opts_t *opts, sl_plan_t **out)
{
	sl_err rc = SL_OK;
	int32_t N = cost->cl.ranks;
	int64_t longest = 0;
	sl_plan_t *best = NULL, *cand = NULL;
	int32_t best_d = 0, tried = 0;
	double best_ms = 0.0, step_ms;
	double *per_rank = NULL;

	(void)opts;
	*out = NULL;
	if (n < 1)
		return sl_seterr(SL_EINVAL, "batch-adaptive: the request has no sequences");
	for (int64_t i = 0; i < n; i++)
		if (seqs[i].length > longest)
			longest = seqs[i].length;
	per_rank = malloc((size_t)N * sizeof(*per_rank));
	if (per_rank == NULL)
		return sl_seterr(SL_ENOMEM, "batch-adaptive: out of memory for %d ranks", N);
	int32_t d0 = planner_pow2_holding(cost, longest);
	int32_t dmax = planner_pow2_floor(N);
	if (d0 == 0)
		d0 = dmax = planner_offload_degree(cost, longest);
	for (int64_t d = d0; d <= dmax; d *= 2) {
		SL_CHECK_GOTO(planner_fixed_sp_plan(cost, seqs, n, (int32_t)d, "batch-adaptive", &cand),
		              rc, out);
		/* The reference step time, as sl_plan_evaluate computes it, without
		 * the ideal (the same for every candidate; the caller computes it). */
		SL_CHECK_GOTO(planner_plan_timing(cand, cost, per_rank, &step_ms), rc, out);
		tried++;
		if (best == NULL || step_ms < best_ms) {
			sl_plan_free(&best);
			best = cand;
			best_ms = step_ms;
			best_d = (int32_t)d;
			cand = NULL;
		} else {
			sl_plan_free(&cand);
		}
	}
	snprintf(best->note, sizeof(best->note), "sp=%d groups=%d best of %d degrees from %d", best_d,
	         N / best_d, tried, d0);
	*out = best;
	best = NULL;
out:
	free(per_rank);
	sl_plan_free(&cand);
	sl_plan_free(&best);
	return rc;
}
