/* sluice CLI: start times of a plan's group executions under the reference
 * model's timing rule (cost-model.md, "A group execution, a slot, a step",
 * computed by sl_plan_timeline) and the per-rank totals the CLI shows. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_timeline_free(cli_timeline_t *tl)
{
	free(tl->start_ms);
	free(tl->dur_ms);
	free(tl->busy_ms);
	free(tl->finish_ms);
	free(tl->nmicro);
	memset(tl, 0, sizeof(*tl));
}

sl_err cli_timeline_compute(const sl_plan_t *plan, const sl_cost_t *cost, cli_timeline_t *tl)
{
	memset(tl, 0, sizeof(*tl));
	if (plan->ranks < 1)
		return sl_seterr(SL_ERANGE, "plan has %d ranks", plan->ranks);
	tl->ngroups = plan->ngroups;
	tl->ranks = plan->ranks;
	size_t ng = plan->ngroups > 0 ? (size_t)plan->ngroups : 1;
	size_t nr = (size_t)plan->ranks;
	tl->start_ms = calloc(ng, sizeof(double));
	tl->dur_ms = calloc(ng, sizeof(double));
	tl->busy_ms = calloc(nr, sizeof(double));
	tl->finish_ms = calloc(nr, sizeof(double));
	tl->nmicro = calloc(nr, sizeof(int32_t));
	if (!tl->start_ms || !tl->dur_ms || !tl->busy_ms || !tl->finish_ms || !tl->nmicro) {
		cli_timeline_free(tl);
		return sl_seterr(SL_ENOMEM, "out of memory for the timeline of %lld groups",
		                 (long long)plan->ngroups);
	}
	/* sl_plan_timeline skips ranks it cannot index; here they are an error. */
	for (int32_t s = 0; s < plan->nslots; s++) {
		const sl_slot_t *slot = &plan->slots[s];
		for (int32_t k = 0; k < slot->ngroups; k++) {
			const sl_group_t *g = &plan->groups[slot->group_off + k];
			const int32_t *r = sl_group_ranks(plan, g);
			for (int32_t i = 0; i < g->nranks; i++)
				if (r[i] < 0 || r[i] >= plan->ranks) {
					cli_timeline_free(tl);
					return sl_seterr(SL_ERANGE,
					                 "slot %d group %d names rank %d (plan has %d ranks)", s,
					                 k, r[i], plan->ranks);
				}
		}
	}
	sl_plan_timeline(plan, cost, tl->start_ms, tl->dur_ms, tl->finish_ms);
	for (int64_t gi = 0; gi < plan->ngroups; gi++) {
		const sl_group_t *g = &plan->groups[gi];
		const int32_t *r = sl_group_ranks(plan, g);
		for (int32_t i = 0; i < g->nranks; i++) {
			tl->busy_ms[r[i]] += tl->dur_ms[gi];
			tl->nmicro[r[i]]++;
		}
	}
	for (int32_t r = 0; r < plan->ranks; r++)
		if (tl->finish_ms[r] > tl->makespan_ms)
			tl->makespan_ms = tl->finish_ms[r];
	return SL_OK;
}
