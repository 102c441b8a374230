/* sluice comm: the daemon's status reply as JSON (what `sluice status
 * --format json` prints and what bindings read). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "comm.h"

/* Adds a number; NaN and infinities (which JSON lacks) become null. */
static void put_real(json_t *o, const char *k, double v)
{
	json_object_set_new(o, k, isfinite(v) ? json_real(v) : json_null());
}

static void put_int(json_t *o, const char *k, long long v)
{
	json_object_set_new(o, k, json_integer(v));
}

/* Adds a string from the wire, made printable. */
static void put_str(json_t *o, const char *k, const char *s)
{
	char clean[512];
	comm_sanitize(clean, sizeof(clean), s ? s : "");
	json_object_set_new(o, k, json_string(clean));
}

static json_t *slot_json(const Sluice__SlotMetrics *s)
{
	json_t *o = json_object();
	put_int(o, "slot", s->slot);
	put_real(o, "compute_ms", s->compute_ms);
	put_real(o, "comm_ms", s->comm_ms);
	put_int(o, "bytes_sent", (long long)s->bytes_sent);
	put_int(o, "bytes_recv", (long long)s->bytes_recv);
	return o;
}

static json_t *step_json(const Sluice__StepStatus *s)
{
	json_t *o = json_object();
	put_int(o, "step", (long long)s->step);
	put_str(o, "policy", s->policy);
	put_int(o, "nseqs", s->nseqs);
	put_int(o, "tokens", s->tokens);
	put_real(o, "predicted_step_ms", s->predicted_step_ms);
	put_real(o, "ideal_ms", s->ideal_ms);
	put_real(o, "planner_ms", s->planner_ms);
	put_int(o, "dispatched", s->dispatched);
	put_int(o, "acked", s->acked);
	put_int(o, "nacked", s->nacked);
	put_int(o, "completed", s->completed);
	put_int(o, "failed", s->failed);
	static const char *const states[] = {"pending", "accepted", "rejected", "completed",
	                                     "failed"};
	json_t *oc = json_array();
	for (size_t i = 0; i < s->n_outcomes; i++) {
		const Sluice__RankOutcome *r = s->outcomes[i];
		json_t *x = json_object();
		put_int(x, "rank", r->rank);
		put_str(x, "state",
		        r->state >= 0 && (size_t)r->state < sizeof(states) / sizeof(states[0])
		            ? states[r->state]
		            : "unknown");
		put_str(x, "error", r->error);
		json_array_append_new(oc, x);
	}
	json_object_set_new(o, "outcomes", oc);
	json_t *lost = json_array();
	for (size_t i = 0; i < s->n_lost_ranks; i++)
		json_array_append_new(lost, json_integer(s->lost_ranks[i]));
	json_object_set_new(o, "lost_ranks", lost);
	put_str(o, "error", s->error);
	json_t *ms = json_array();
	for (size_t i = 0; i < s->n_metrics; i++) {
		const Sluice__RankMetrics *r = s->metrics[i];
		json_t *m = json_object();
		put_int(m, "rank", r->rank);
		put_real(m, "step_ms", r->step_ms);
		put_real(m, "compute_ms", r->compute_ms);
		put_real(m, "comm_ms", r->comm_ms);
		put_int(m, "bytes_sent", (long long)r->bytes_sent);
		put_int(m, "bytes_recv", (long long)r->bytes_recv);
		json_t *sl = json_array();
		for (size_t k = 0; k < r->n_slots; k++)
			json_array_append_new(sl, slot_json(r->slots[k]));
		json_object_set_new(m, "slots", sl);
		json_array_append_new(ms, m);
	}
	json_object_set_new(o, "metrics", ms);
	return o;
}

sl_err comm_status_to_json(const Sluice__StatusReply *m, char **json)
{
	*json = NULL;
	json_t *root = json_object();
	if (root == NULL)
		return sl_seterr(SL_ENOMEM, "status JSON");
	json_object_set_new(root, "format", json_string("sluice.status/1"));
	put_str(root, "version", m->version);
	put_int(root, "pid", m->pid);
	put_int(root, "uptime_ms", (long long)m->uptime_ms);
	put_str(root, "endpoint", m->endpoint);
	put_int(root, "requests", (long long)m->requests);
	put_int(root, "plans", (long long)m->plans);
	put_int(root, "errors", (long long)m->errors);
	put_int(root, "timeouts", (long long)m->timeouts);
	put_int(root, "undeliverable", (long long)m->undeliverable);
	put_int(root, "queued", m->queued);
	put_int(root, "planning", m->planning);
	put_int(root, "threads", m->threads);
	json_object_set_new(root, "draining", json_boolean(m->draining));
	json_t *jobs = json_array();
	for (size_t j = 0; j < m->n_jobs; j++) {
		const Sluice__JobStatus *js = m->jobs[j];
		json_t *o = json_object();
		put_str(o, "job", js->job);
		put_int(o, "plans", (long long)js->plans);
		put_int(o, "errors", (long long)js->errors);
		json_t *ws = json_array();
		for (size_t i = 0; i < js->n_workers; i++) {
			const Sluice__WorkerStatus *w = js->workers[i];
			json_t *wo = json_object();
			put_int(wo, "rank", w->rank);
			put_str(wo, "host", w->host);
			put_int(wo, "pid", w->pid);
			json_object_set_new(wo, "alive", json_boolean(w->alive));
			put_int(wo, "last_seen_ms", (long long)w->last_seen_ms);
			put_int(wo, "orders", (long long)w->orders);
			put_int(wo, "acks", (long long)w->acks);
			json_array_append_new(ws, wo);
		}
		json_object_set_new(o, "workers", ws);
		json_t *st = json_array();
		for (size_t i = 0; i < js->n_steps; i++)
			json_array_append_new(st, step_json(js->steps[i]));
		json_object_set_new(o, "steps", st);
		json_array_append_new(jobs, o);
	}
	json_object_set_new(root, "jobs", jobs);
	*json = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (*json == NULL)
		return sl_seterr(SL_ENOMEM, "status JSON");
	return SL_OK;
}
