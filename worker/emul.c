/* sluice worker: the bookkeeping of `sluice run-plan --emulate` (CPU code):
 * the reference timing rule (cost-model.md, "Timing") applied to measured
 * group times, predicted vs measured per group execution, rank and step,
 * the JSON report and table, reading measured times back from a report, and
 * the Chrome / Perfetto trace of a plan (predicted, or predicted and
 * measured side by side). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/calib.h"
#include "worker.h"

static const char *const part_names[SL_EMUL_NPARTS] = {"linear", "attention", "offload", "head"};

void worker_emul_timeline(const sl_plan_t *plan, const double *group_ms, double *start_ms,
                          double *ready_ms)
{
	for (int32_t r = 0; r < plan->ranks; r++)
		ready_ms[r] = 0;
	/* groups are stored in slot order, slot by slot (sl_plan_timeline) */
	for (int64_t gi = 0; gi < plan->ngroups; gi++) {
		const sl_group_t *g = &plan->groups[gi];
		const int32_t *rk = sl_group_ranks(plan, g);
		double start = 0;
		for (int32_t i = 0; i < g->nranks; i++)
			if (rk[i] >= 0 && rk[i] < plan->ranks && ready_ms[rk[i]] > start)
				start = ready_ms[rk[i]];
		start_ms[gi] = start;
		for (int32_t i = 0; i < g->nranks; i++)
			if (rk[i] >= 0 && rk[i] < plan->ranks)
				ready_ms[rk[i]] = start + group_ms[gi];
	}
}

void worker_emul_free(worker_emul_t *e)
{
	double *p[] = {e->rank_ms,    e->parts,     e->pred_ms,   e->pred_start,
	               e->meas_ms,    e->meas_start, e->pred_rank, e->meas_rank,
	               e->comp_ms,    e->xfer_ms};
	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
		free(p[i]);
	memset(e, 0, sizeof(*e));
}

sl_err worker_emul_init(worker_emul_t *e, const sl_plan_t *plan)
{
	const size_t ng = (size_t)(plan->ngroups > 0 ? plan->ngroups : 1);
	const size_t nk = (size_t)(plan->nranks_used > 0 ? plan->nranks_used : 1);
	const size_t nr = (size_t)(plan->ranks > 0 ? plan->ranks : 1);
	memset(e, 0, sizeof(*e));
	e->plan = plan;
	e->rank_ms = calloc(nk, sizeof(double));
	e->parts = calloc(nk * SL_EMUL_NPARTS, sizeof(double));
	e->pred_ms = calloc(ng, sizeof(double));
	e->pred_start = calloc(ng, sizeof(double));
	e->meas_ms = calloc(ng, sizeof(double));
	e->meas_start = calloc(ng, sizeof(double));
	e->pred_rank = calloc(nr, sizeof(double));
	e->meas_rank = calloc(nr, sizeof(double));
	e->comp_ms = calloc(ng, sizeof(double));
	e->xfer_ms = calloc(ng, sizeof(double));
	if (!e->rank_ms || !e->parts || !e->pred_ms || !e->pred_start || !e->meas_ms ||
	    !e->meas_start || !e->pred_rank || !e->meas_rank || !e->comp_ms || !e->xfer_ms) {
		worker_emul_free(e);
		return sl_seterr(SL_ENOMEM, "emulation: out of memory for %lld groups",
		                 (long long)plan->ngroups);
	}
	return SL_OK;
}

/* The step of per-rank ready times: max over ranks of ready + sync. */
static double step_of(const double *ready, int32_t n, double sync, double *per_rank)
{
	double m = n > 0 ? 0 : sync;
	for (int32_t r = 0; r < n; r++) {
		per_rank[r] = ready[r] + sync;
		if (per_rank[r] > m)
			m = per_rank[r];
	}
	return m;
}

sl_err worker_emul_finish(worker_emul_t *e, const sl_cost_t *cost)
{
	const sl_plan_t *p = e->plan;
	for (int64_t gi = 0; gi < p->ngroups; gi++) {
		const sl_group_t *g = &p->groups[gi];
		double m = 0;
		/* a ring's hops keep its ranks in step: the slowest sets the end */
		for (int32_t i = 0; i < g->nranks; i++) {
			const double t = e->rank_ms[g->rank_off + i];
			if (!(t >= 0) || !isfinite(t))
				return sl_seterr(SL_EINVAL, "emulation: slot %d group %lld rank %d: "
				                 "measured time %g is not a finite time",
				                 (int)g->slot, (long long)gi, (int)i, t);
			if (t > m)
				m = t;
		}
		/* one GPU runs no transfer: add what the model leaves exposed, so
		 * that measured and predicted describe the same step */
		e->comp_ms[gi] = m;
		e->xfer_ms[gi] = cost != NULL ? sl_plan_group_comm_ms(p, g, cost) : 0;
		e->meas_ms[gi] = m + e->xfer_ms[gi];
	}
	e->grad_sync_ms = cost != NULL ? cost->prof.grad_sync_ms : 0;
	worker_emul_timeline(p, e->meas_ms, e->meas_start, e->meas_rank);
	e->meas_step = step_of(e->meas_rank, p->ranks, e->grad_sync_ms, e->meas_rank);
	if (cost != NULL) {
		sl_plan_timeline(p, cost, e->pred_start, e->pred_ms, e->pred_rank);
		e->pred_step = step_of(e->pred_rank, p->ranks, e->grad_sync_ms, e->pred_rank);
		e->have_pred = 1;
	}
	return SL_OK;
}

static double rel_err(double pred, double meas)
{
	return meas > 0 ? fabs(pred - meas) / meas : NAN;
}

double worker_emul_median_group_err(const worker_emul_t *e)
{
	const sl_plan_t *p = e->plan;
	double *v = malloc(sizeof(double) * (size_t)(p->ngroups > 0 ? p->ngroups : 1));
	int64_t n = 0;
	double med;
	if (v == NULL || !e->have_pred) {
		free(v);
		return NAN;
	}
	for (int64_t gi = 0; gi < p->ngroups; gi++)
		if (e->meas_ms[gi] > 0)
			v[n++] = rel_err(e->pred_ms[gi], e->meas_ms[gi]);
	med = sl_median(v, (size_t)n); /* NaN when no group was measured */
	free(v);
	return med;
}

/* A real, or null when not finite (JSON has no NaN). */
static json_t *jnum(double x)
{
	return isfinite(x) ? json_real(x) : json_null();
}

/* Index of the slowest rank of group gi (its parts explain the group). */
static int32_t slowest(const worker_emul_t *e, const sl_group_t *g)
{
	int32_t best = 0;
	for (int32_t i = 1; i < g->nranks; i++)
		if (e->rank_ms[g->rank_off + i] > e->rank_ms[g->rank_off + best])
			best = i;
	return best;
}

static int64_t group_tokens(const sl_plan_t *p, const sl_group_t *g)
{
	const sl_item_t *it = sl_group_items(p, g);
	int64_t t = 0;
	for (int32_t k = 0; k < g->nitems; k++)
		if (it[k].seq >= 0 && it[k].seq < p->nseqs)
			t += sl_cost_padded(p->seqs[it[k].seq].length, g->nranks) / g->nranks;
	return t;
}

sl_err worker_emul_write_report(const worker_emul_t *e, const worker_emul_meta_t *meta, FILE *f)
{
	const sl_plan_t *p = e->plan;
	json_t *root = json_object(), *groups = json_array(), *ranks = json_array();
	sl_err rc = SL_OK;
	if (root == NULL || groups == NULL || ranks == NULL) {
		rc = sl_seterr(SL_ENOMEM, "emulation report: out of memory");
		goto out;
	}
	json_object_set_new(root, "format", json_string("sluice.emulation/1"));
	json_object_set_new(root, "policy", json_string(p->policy));
	json_object_set_new(root, "profile", json_string(p->profile));
	json_object_set_new(root, "ranks", json_integer(p->ranks));
	json_object_set_new(root, "model", json_string(meta && meta->model ? meta->model : ""));
	json_object_set_new(root, "card", json_string(meta && meta->card ? meta->card : ""));
	json_object_set_new(root, "date", json_string(meta && meta->date ? meta->date : ""));
	json_object_set_new(root, "command", json_string(meta && meta->command ? meta->command : ""));
	json_object_set_new(root, "source", json_string(meta && meta->source ? meta->source : ""));
	json_object_set_new(root, "transfers",
	                    json_string("modeled (not run): groups are timed on one GPU; each "
	                                "group's measured_ms is its measured compute plus the "
	                                "transfer the profile's model leaves exposed"));
	json_object_set_new(root, "predicted_step_ms", jnum(e->have_pred ? e->pred_step : NAN));
	json_object_set_new(root, "measured_step_ms", jnum(e->meas_step));
	json_object_set_new(root, "step_rel_err",
	                    jnum(e->have_pred ? rel_err(e->pred_step, e->meas_step) : NAN));
	json_object_set_new(root, "median_group_rel_err", jnum(worker_emul_median_group_err(e)));
	for (int64_t gi = 0; gi < p->ngroups; gi++) {
		const sl_group_t *g = &p->groups[gi];
		const int32_t *rk = sl_group_ranks(p, g);
		const sl_slot_t *sl = &p->slots[g->slot];
		json_t *jg = json_object(), *jr = json_array(), *jm = json_array(), *jp = json_object();
		for (int32_t i = 0; i < g->nranks; i++) {
			json_array_append_new(jr, json_integer(rk[i]));
			json_array_append_new(jm, jnum(e->rank_ms[g->rank_off + i]));
		}
		const double *sp = e->parts + (size_t)(g->rank_off + slowest(e, g)) * SL_EMUL_NPARTS;
		for (int k = 0; k < SL_EMUL_NPARTS; k++)
			json_object_set_new(jp, part_names[k], jnum(sp[k]));
		json_object_set_new(jg, "slot", json_integer(g->slot));
		json_object_set_new(jg, "group", json_integer(gi - sl->group_off));
		json_object_set_new(jg, "ranks", jr);
		json_object_set_new(jg, "sequences", json_integer(g->nitems));
		json_object_set_new(jg, "tokens_per_rank", json_integer(group_tokens(p, g)));
		json_object_set_new(jg, "predicted_start_ms", jnum(e->have_pred ? e->pred_start[gi] : NAN));
		json_object_set_new(jg, "predicted_ms", jnum(e->have_pred ? e->pred_ms[gi] : NAN));
		json_object_set_new(jg, "measured_start_ms", jnum(e->meas_start[gi]));
		json_object_set_new(jg, "measured_ms", jnum(e->meas_ms[gi]));
		json_object_set_new(jg, "measured_compute_ms", jnum(e->comp_ms[gi]));
		json_object_set_new(jg, "modeled_transfer_ms", jnum(e->xfer_ms[gi]));
		json_object_set_new(jg, "rel_err",
		                    jnum(e->have_pred ? rel_err(e->pred_ms[gi], e->meas_ms[gi]) : NAN));
		json_object_set_new(jg, "rank_ms", jm);
		json_object_set_new(jg, "slowest_rank_parts_ms", jp);
		json_array_append_new(groups, jg);
	}
	for (int32_t r = 0; r < p->ranks; r++) {
		json_t *jr = json_object();
		json_object_set_new(jr, "rank", json_integer(r));
		json_object_set_new(jr, "predicted_ms", jnum(e->have_pred ? e->pred_rank[r] : NAN));
		json_object_set_new(jr, "measured_ms", jnum(e->meas_rank[r]));
		json_array_append_new(ranks, jr);
	}
	json_object_set(root, "groups", groups);
	json_object_set(root, "per_rank", ranks);
	if (json_dumpf(root, f, JSON_INDENT(1) | JSON_PRESERVE_ORDER) != 0 ||
	    fputc('\n', f) == EOF)
		rc = sl_seterr(SL_EIO, "emulation report: write failed");
out:
	json_decref(groups);
	json_decref(ranks);
	json_decref(root);
	return rc;
}

void worker_emul_write_table(const worker_emul_t *e, FILE *f)
{
	const sl_plan_t *p = e->plan;
	char rl[48];
	fprintf(f, "%4s %5s %5s %6s %11s %12s %12s %9s %8s   %s\n", "slot", "group", "d", "seqs",
	        "tokens/rank", "predicted ms", "measured ms", "xfer ms", "err",
	        "slowest rank: linear attn offload head ms");
	for (int64_t gi = 0; gi < p->ngroups; gi++) {
		const sl_group_t *g = &p->groups[gi];
		const double *sp = e->parts + (size_t)(g->rank_off + slowest(e, g)) * SL_EMUL_NPARTS;
		fprintf(f, "%4d %5lld %5d %6d %11lld %12.1f %12.1f %9.1f %7.1f%%   %.1f %.1f %.1f %.1f\n",
		        (int)g->slot, (long long)(gi - p->slots[g->slot].group_off), (int)g->nranks,
		        (int)g->nitems, (long long)group_tokens(p, g), e->have_pred ? e->pred_ms[gi] : NAN,
		        e->meas_ms[gi], e->xfer_ms[gi],
		        100 * (e->have_pred ? (e->pred_ms[gi] - e->meas_ms[gi]) / e->meas_ms[gi] : NAN),
		        sp[0], sp[1], sp[2], sp[3]);
	}
	fprintf(f, "\n%4s %12s %12s %8s\n", "rank", "predicted ms", "measured ms", "err");
	for (int32_t r = 0; r < p->ranks; r++)
		fprintf(f, "%4d %12.1f %12.1f %7.1f%%\n", (int)r, e->have_pred ? e->pred_rank[r] : NAN,
		        e->meas_rank[r],
		        100 * (e->have_pred ? (e->pred_rank[r] - e->meas_rank[r]) / e->meas_rank[r] : NAN));
	fprintf(f, "\nmeasured = the compute timed on this GPU + xfer, the transfer the model "
	        "leaves exposed (not run)\n");
	snprintf(rl, sizeof(rl), "%.1f%%", 100 * worker_emul_median_group_err(e));
	fprintf(f, "\nstep: predicted %.1f ms, measured %.1f ms (%+.1f%%); median |error| per group "
	        "execution %s\n", e->have_pred ? e->pred_step : NAN, e->meas_step,
	        100 * (e->have_pred ? (e->pred_step - e->meas_step) / e->meas_step : NAN), rl);
}

sl_err worker_emul_read_measured(const char *path, worker_emul_t *e)
{
	const sl_plan_t *p = e->plan;
	json_error_t je;
	json_t *root = json_load_file(path, 0, &je), *groups;
	sl_err rc = SL_OK;
	if (root == NULL)
		return sl_seterr(SL_EFORMAT, "%s:%d: %s", path, je.line, je.text);
	groups = json_object_get(root, "groups");
	if (!json_is_array(groups) || (int64_t)json_array_size(groups) != p->ngroups) {
		rc = sl_seterr(SL_EFORMAT, "%s: \"groups\" must be an array of the plan's %lld group "
		               "executions", path, (long long)p->ngroups);
		goto out;
	}
	for (int64_t gi = 0; gi < p->ngroups; gi++) {
		const sl_group_t *g = &p->groups[gi];
		json_t *jg = json_array_get(groups, (size_t)gi);
		json_t *jm = json_object_get(jg, "rank_ms"), *jp = json_object_get(jg,
		                                                                     "slowest_rank_parts_ms");
		if (!json_is_array(jm) || (int32_t)json_array_size(jm) != g->nranks) {
			rc = sl_seterr(SL_EFORMAT, "%s: groups[%lld].rank_ms must list the group's %d "
			               "ranks", path, (long long)gi, (int)g->nranks);
			goto out;
		}
		for (int32_t i = 0; i < g->nranks; i++) {
			json_t *v = json_array_get(jm, (size_t)i);
			if (!json_is_number(v) || !(json_number_value(v) >= 0)) {
				rc = sl_seterr(SL_EFORMAT, "%s: groups[%lld].rank_ms[%d] must be a "
				               "number >= 0", path, (long long)gi, (int)i);
				goto out;
			}
			e->rank_ms[g->rank_off + i] = json_number_value(v);
			/* a report keeps the slowest rank's parts: give them to every rank */
			for (int k = 0; k < SL_EMUL_NPARTS; k++) {
				json_t *pv = json_is_object(jp) ? json_object_get(jp, part_names[k]) : NULL;
				e->parts[(size_t)(g->rank_off + i) * SL_EMUL_NPARTS + k] =
					json_is_number(pv) ? json_number_value(pv) : NAN;
			}
		}
	}
out:
	json_decref(root);
	return rc;
}

/* One "X" (complete) event: ts and dur in microseconds. */
static json_t *trace_event(const char *name, const char *cat, int32_t pid, int tid, double start_ms,
                           double dur_ms, json_t *args)
{
	json_t *ev = json_object();
	json_object_set_new(ev, "name", json_string(name));
	json_object_set_new(ev, "cat", json_string(cat));
	json_object_set_new(ev, "ph", json_string("X"));
	json_object_set_new(ev, "ts", json_real(start_ms * 1000.0));
	json_object_set_new(ev, "dur", json_real(dur_ms * 1000.0));
	json_object_set_new(ev, "pid", json_integer(pid));
	json_object_set_new(ev, "tid", json_integer(tid));
	json_object_set_new(ev, "args", args);
	return ev;
}

static json_t *meta_event(const char *what, int32_t pid, int tid, const char *name)
{
	json_t *ev = json_object(), *args = json_object();
	json_object_set_new(args, "name", json_string(name));
	json_object_set_new(ev, "name", json_string(what));
	json_object_set_new(ev, "ph", json_string("M"));
	json_object_set_new(ev, "pid", json_integer(pid));
	json_object_set_new(ev, "tid", json_integer(tid));
	json_object_set_new(ev, "args", args);
	return ev;
}

sl_err worker_trace_write(FILE *f, const sl_plan_t *p, const double *pred_start,
                          const double *pred_ms, const double *meas_start, const double *meas_ms)
{
	json_t *root = json_object(), *evs = json_array();
	const char *lanes[2] = {"predicted", "measured"};
	const double *st[2] = {pred_start, meas_start}, *du[2] = {pred_ms, meas_ms};
	char buf[128];
	sl_err rc = SL_OK;
	if (root == NULL || evs == NULL) {
		rc = sl_seterr(SL_ENOMEM, "trace: out of memory");
		goto out;
	}
	/* one process per rank, a thread per lane: Perfetto shows each rank's
	 * predicted and measured timelines one above the other */
	for (int32_t r = 0; r < p->ranks; r++) {
		snprintf(buf, sizeof(buf), "rank %d", (int)r);
		json_array_append_new(evs, meta_event("process_name", r, 0, buf));
		for (int l = 0; l < 2; l++)
			if (st[l] != NULL)
				json_array_append_new(evs, meta_event("thread_name", r, l, lanes[l]));
	}
	for (int l = 0; l < 2; l++) {
		if (st[l] == NULL)
			continue;
		for (int64_t gi = 0; gi < p->ngroups; gi++) {
			const sl_group_t *g = &p->groups[gi];
			const int32_t *rk = sl_group_ranks(p, g);
			const int64_t k = gi - p->slots[g->slot].group_off;
			snprintf(buf, sizeof(buf), "slot %d group %lld (d=%d, %d seqs)", (int)g->slot,
			         (long long)k, (int)g->nranks, (int)g->nitems);
			for (int32_t i = 0; i < g->nranks; i++) {
				json_t *args = json_object();
				json_object_set_new(args, "slot", json_integer(g->slot));
				json_object_set_new(args, "group", json_integer(k));
				json_object_set_new(args, "ring_pos", json_integer(i));
				json_object_set_new(args, "tokens_per_rank",
				                    json_integer(group_tokens(p, g)));
				json_object_set_new(args, "ms", jnum(du[l][gi]));
				if (l == 1 && pred_ms != NULL)
					json_object_set_new(args, "predicted_ms", jnum(pred_ms[gi]));
				json_array_append_new(evs, trace_event(buf, lanes[l], rk[i], l, st[l][gi],
				                                       du[l][gi], args));
			}
		}
	}
	json_object_set(root, "traceEvents", evs);
	json_object_set_new(root, "displayTimeUnit", json_string("ms"));
	if (json_dumpf(root, f, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12)) != 0 ||
	    fputc('\n', f) == EOF)
		rc = sl_seterr(SL_EIO, "trace: write failed");
out:
	json_decref(evs);
	json_decref(root);
	return rc;
}
