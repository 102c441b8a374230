/* sluiced: the registry of jobs, their workers and their step history
 * (bounded: max_jobs, max_workers, history), owned by the server thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

void daemon_step_clear(d_step_t *st)
{
	free(st->lost);
	for (int32_t i = 0; i < st->nmetrics; i++)
		free(st->metrics[i].slots);
	free(st->metrics);
	free(st->outcomes);
	memset(st, 0, sizeof(*st));
}

void daemon_job_free(d_job_t **jp)
{
	d_job_t *j = *jp;
	if (j == NULL)
		return;
	for (int32_t i = 0; i < j->hist_cap; i++)
		daemon_step_clear(&j->hist[i]);
	free(j->hist);
	free(j->workers);
	free(j);
	*jp = NULL;
}

d_job_t *daemon_job_find(server_t *s, const char *name)
{
	for (size_t i = 0; i < s->njobs; i++)
		if (strcmp(s->jobs[i]->name, name) == 0)
			return s->jobs[i];
	return NULL;
}

static int job_has_live_workers(const d_job_t *j)
{
	for (int32_t i = 0; i < j->nworkers; i++)
		if (j->workers[i].alive)
			return 1;
	return 0;
}

/* Publishes the job's count of live workers to the metrics. */
void daemon_job_metrics_workers(server_t *s, const d_job_t *j)
{
	int64_t n = 0;
	for (int32_t i = 0; i < j->nworkers; i++)
		n += j->workers[i].alive != 0;
	daemon_metrics_job_workers(s->metrics, j->name, n);
}

/* Finds or creates a job; beyond max_jobs the least recently active job
 * without live workers is forgotten. NULL (with a message) when none can be. */
d_job_t *daemon_job_get(server_t *s, const char *name)
{
	d_job_t *j = daemon_job_find(s, name);
	if (j != NULL)
		return j;
	if ((int64_t)s->njobs >= s->cfg.max_jobs) {
		size_t victim = SIZE_MAX;
		for (size_t i = 0; i < s->njobs; i++)
			if (!job_has_live_workers(s->jobs[i]) &&
			    (victim == SIZE_MAX ||
			     s->jobs[i]->last_active_ms < s->jobs[victim]->last_active_ms))
				victim = i;
		if (victim == SIZE_MAX) {
			sl_seterr(SL_EBUSY, "sluiced tracks %zu jobs, all with live workers (max_jobs=%lld)",
			          s->njobs, (long long)s->cfg.max_jobs);
			return NULL;
		}
		SL_INFO(SL_SUB_DAEMON, "forgetting idle job %s (max_jobs=%lld)", s->jobs[victim]->name,
		        (long long)s->cfg.max_jobs);
		daemon_metrics_job_forget(s->metrics, s->jobs[victim]->name);
		daemon_job_free(&s->jobs[victim]);
		s->jobs[victim] = s->jobs[--s->njobs];
	}
	if (s->njobs == s->jobs_cap) {
		size_t nc = s->jobs_cap ? s->jobs_cap * 2 : 16;
		d_job_t **nj = realloc(s->jobs, nc * sizeof(*nj));
		if (nj == NULL) {
			sl_seterr(SL_ENOMEM, "no memory for job %s", name);
			return NULL;
		}
		s->jobs = nj;
		s->jobs_cap = nc;
	}
	j = calloc(1, sizeof(*j));
	if (j != NULL)
		j->hist = calloc((size_t)s->cfg.history, sizeof(d_step_t));
	if (j == NULL || j->hist == NULL) {
		free(j);
		sl_seterr(SL_ENOMEM, "no memory for job %s", name);
		return NULL;
	}
	j->hist_cap = (int32_t)s->cfg.history;
	snprintf(j->name, sizeof(j->name), "%s", name);
	j->last_active_ms = comm_now_ms();
	s->jobs[s->njobs++] = j;
	return j;
}

/* A fresh history entry (the oldest is overwritten when full). */
d_step_t *daemon_job_push_step(d_job_t *j, uint64_t step)
{
	int32_t idx;
	if (j->hist_count < j->hist_cap) {
		idx = (j->hist_head + j->hist_count) % j->hist_cap;
		j->hist_count++;
	} else {
		idx = j->hist_head;
		j->hist_head = (j->hist_head + 1) % j->hist_cap;
	}
	d_step_t *st = &j->hist[idx];
	daemon_step_clear(st);
	st->step = step;
	st->job = j->name;
	return st;
}

/* The newest history entry of that step, or NULL. */
d_step_t *daemon_job_find_step(d_job_t *j, uint64_t step)
{
	for (int32_t k = j->hist_count - 1; k >= 0; k--) {
		d_step_t *st = &j->hist[(j->hist_head + k) % j->hist_cap];
		if (st->step == step && st->error[0] == '\0')
			return st;
	}
	return NULL;
}

d_worker_t *daemon_job_worker(d_job_t *j, int32_t rank)
{
	for (int32_t i = 0; i < j->nworkers; i++)
		if (j->workers[i].rank == rank)
			return &j->workers[i];
	return NULL;
}

int daemon_rid_eq(const d_worker_t *w, const uint8_t *rid, size_t len)
{
	return w->rid_len == len && memcmp(w->rid, rid, len) == 0;
}

/* Finds the live worker registered with this routing id. */
d_worker_t *daemon_worker_by_rid(server_t *s, const uint8_t *rid, size_t len, d_job_t **job)
{
	for (size_t i = 0; i < s->njobs; i++)
		for (int32_t k = 0; k < s->jobs[i]->nworkers; k++) {
			d_worker_t *w = &s->jobs[i]->workers[k];
			if (w->alive && daemon_rid_eq(w, rid, len)) {
				if (job != NULL)
					*job = s->jobs[i];
				return w;
			}
		}
	return NULL;
}

/* Tells a job's live workers (but rank's own) and its last client about a
 * change; step is set for EVENT_STEP_FAILED. */
void daemon_job_event(server_t *s, d_job_t *j, Sluice__EventKind kind, int32_t rank,
                      uint64_t step, const char *msg)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__JobEvent ev = SLUICE__JOB_EVENT__INIT;
	ev.kind = kind;
	ev.job = j->name;
	ev.rank = rank;
	ev.step = step;
	ev.message = (char *)msg;
	env.body_case = SLUICE__ENVELOPE__BODY_EVENT;
	env.event = &ev;
	for (int32_t i = 0; i < j->nworkers; i++)
		if (j->workers[i].alive && j->workers[i].rank != rank)
			daemon_send(s, j->workers[i].rid, j->workers[i].rid_len, &env, 0);
	if (j->client_rid_len > 0)
		daemon_send(s, j->client_rid, j->client_rid_len, &env, 0);
}

void daemon_worker_lost(server_t *s, d_job_t *j, d_worker_t *w, const char *why)
{
	char msg[256];
	w->alive = 0;
	snprintf(msg, sizeof(msg), "worker rank %d (pid %u on %s) of job %s lost: %s", w->rank,
	         w->pid, w->host, j->name, why);
	SL_WARN(SL_SUB_DAEMON, "%s", msg);
	daemon_job_metrics_workers(s, j);
	daemon_job_event(s, j, SLUICE__EVENT_KIND__EVENT_WORKER_LOST, w->rank, 0, msg);
}
