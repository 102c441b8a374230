/* sluiced: the status reply (counters, jobs, workers, recent steps and what
 * became of each rank's order), as JSON for `sluice status`. */
#include <string.h>
#include <unistd.h>

#include "daemon.h"

void daemon_on_status(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                      const Sluice__StatusRequest *m)
{
	int64_t now = comm_now_ms();
	if (m->job[0] != '\0' && (!comm_job_name_ok(m->job) || daemon_job_find(s, m->job) == NULL)) {
		char clean[COMM_JOB_MAX + 8];
		comm_sanitize(clean, sizeof(clean), m->job);
		daemon_reply_error(s, rid, rid_len, id, SL_ENOTFOUND, "status_request.job",
		                   "no job named '%s'", clean);
		return;
	}
	comm_arena_t a = {0};
	Sluice__StatusReply r = SLUICE__STATUS_REPLY__INIT;
	r.version = (char *)SLUICE_VERSION;
	r.pid = (uint32_t)getpid();
	r.uptime_ms = (uint64_t)(now - s->started_ms);
	r.endpoint = s->bound;
	r.requests = s->requests;
	r.plans = s->plans;
	r.errors = s->errors;
	r.timeouts = s->timeouts;
	r.undeliverable = s->undeliverable;
	daemon_pool_counts(s->pool, &r.queued, &r.planning);
	r.threads = (uint32_t)s->cfg.threads;
	r.draining = s->draining != 0;
	r.jobs = comm_arena_alloc(&a, sizeof(*r.jobs) * (s->njobs + 1));
	for (size_t i = 0; r.jobs != NULL && i < s->njobs; i++) {
		d_job_t *j = s->jobs[i];
		if (m->job[0] != '\0' && strcmp(m->job, j->name) != 0)
			continue;
		Sluice__JobStatus *js = comm_arena_alloc(&a, sizeof(*js));
		if (js == NULL)
			break;
		sluice__job_status__init(js);
		js->job = j->name;
		js->plans = j->plans;
		js->errors = j->errors;
		js->workers = comm_arena_alloc(&a, sizeof(*js->workers) * (size_t)(j->nworkers + 1));
		for (int32_t k = 0; js->workers != NULL && k < j->nworkers; k++) {
			d_worker_t *w = &j->workers[k];
			Sluice__WorkerStatus *ws = comm_arena_alloc(&a, sizeof(*ws));
			if (ws == NULL)
				break;
			sluice__worker_status__init(ws);
			ws->rank = w->rank;
			ws->host = w->host;
			ws->pid = w->pid;
			ws->alive = w->alive != 0;
			ws->last_seen_ms = (uint64_t)(now - w->last_seen_ms);
			ws->orders = w->orders;
			ws->acks = w->acks;
			js->workers[js->n_workers++] = ws;
		}
		int32_t nst = j->hist_count;
		if (m->max_steps > 0 && (int32_t)m->max_steps < nst)
			nst = (int32_t)m->max_steps;
		js->steps = comm_arena_alloc(&a, sizeof(*js->steps) * (size_t)(nst + 1));
		for (int32_t k = j->hist_count - nst; js->steps != NULL && k < j->hist_count; k++) {
			d_step_t *st = &j->hist[(j->hist_head + k) % j->hist_cap];
			Sluice__StepStatus *ss = comm_arena_alloc(&a, sizeof(*ss));
			if (ss == NULL)
				break;
			sluice__step_status__init(ss);
			ss->step = st->step;
			ss->policy = st->policy;
			ss->nseqs = st->nseqs;
			ss->tokens = st->tokens;
			ss->predicted_step_ms = st->predicted_ms;
			ss->ideal_ms = st->ideal_ms;
			ss->planner_ms = st->planner_ms;
			ss->dispatched = st->dispatched;
			ss->acked = st->acked;
			ss->nacked = st->nacked;
			ss->completed = st->completed;
			ss->failed = st->failed;
			ss->outcomes =
			    comm_arena_alloc(&a, sizeof(*ss->outcomes) * (size_t)(st->noutcomes + 1));
			Sluice__RankOutcome *oc =
			    comm_arena_alloc(&a, sizeof(*oc) * (size_t)(st->noutcomes + 1));
			for (int32_t q = 0; ss->outcomes != NULL && oc != NULL && q < st->noutcomes; q++) {
				/* by rank: insertion into the sorted prefix (max_workers entries) */
				const d_outcome_t *src = &st->outcomes[q];
				sluice__rank_outcome__init(&oc[q]);
				oc[q].rank = src->rank;
				oc[q].state = (Sluice__RankState)src->state;
				oc[q].error = (char *)src->error;
				size_t at = ss->n_outcomes;
				while (at > 0 && ss->outcomes[at - 1]->rank > src->rank) {
					ss->outcomes[at] = ss->outcomes[at - 1];
					at--;
				}
				ss->outcomes[at] = &oc[q];
				ss->n_outcomes++;
			}
			ss->n_lost_ranks = (size_t)st->nlost;
			ss->lost_ranks = st->lost;
			ss->error = st->error;
			ss->metrics = comm_arena_alloc(&a, sizeof(*ss->metrics) * (size_t)(st->nmetrics + 1));
			for (int32_t q = 0; ss->metrics != NULL && q < st->nmetrics; q++) {
				d_rank_metrics_t *rm = &st->metrics[q];
				Sluice__RankMetrics *pm = comm_arena_alloc(&a, sizeof(*pm));
				Sluice__SlotMetrics *sm =
					comm_arena_alloc(&a, sizeof(*sm) * (size_t)(rm->nslots + 1));
				Sluice__SlotMetrics **smp =
					comm_arena_alloc(&a, sizeof(*smp) * (size_t)(rm->nslots + 1));
				if (pm == NULL || sm == NULL || smp == NULL)
					break;
				sluice__rank_metrics__init(pm);
				pm->rank = rm->rank;
				pm->step_ms = rm->step_ms;
				pm->compute_ms = rm->compute_ms;
				pm->comm_ms = rm->comm_ms;
				pm->bytes_sent = rm->bytes_sent;
				pm->bytes_recv = rm->bytes_recv;
				for (int32_t z = 0; z < rm->nslots; z++) {
					sluice__slot_metrics__init(&sm[z]);
					sm[z].slot = rm->slots[z].slot;
					sm[z].compute_ms = rm->slots[z].compute_ms;
					sm[z].comm_ms = rm->slots[z].comm_ms;
					sm[z].bytes_sent = rm->slots[z].bytes_sent;
					sm[z].bytes_recv = rm->slots[z].bytes_recv;
					smp[z] = &sm[z];
				}
				pm->n_slots = (size_t)rm->nslots;
				pm->slots = smp;
				ss->metrics[ss->n_metrics++] = pm;
			}
			js->steps[js->n_steps++] = ss;
		}
		r.jobs[r.n_jobs++] = js;
	}
	if (a.failed) {
		daemon_reply_error(s, rid, rid_len, id, SL_ENOMEM, "", "no memory for the status reply");
	} else {
		Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
		env.body_case = SLUICE__ENVELOPE__BODY_STATUS_REPLY;
		env.status_reply = &r;
		daemon_send(s, rid, rid_len, &env, id);
	}
	comm_arena_free(&a);
}
