/* sluiced: the server loop. One thread owns the ROUTER socket and all state
 * (jobs, workers, step history); planning runs on the pool. Every request
 * gets exactly one reply: its plan, or an error naming what was wrong (bad
 * bytes, wrong message type, out-of-range values, unknown policy/profile,
 * infeasible batch, a full queue, an expired deadline, shutdown). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

#define SLOT_METRICS_MAX 256 /* per rank and step kept for status */
#define ROUTER_BATCH 512     /* messages handled per loop turn */

typedef struct d_worker {
	int32_t rank;
	uint8_t rid[COMM_ID_MAX + 1];
	size_t rid_len;
	char host[64];
	uint32_t pid;
	int alive;
	int64_t last_seen_ms;
	uint64_t orders, acks;
} d_worker_t;

typedef struct d_rank_metrics {
	int32_t rank;
	double step_ms, compute_ms, comm_ms;
	uint64_t bytes_sent, bytes_recv;
	int32_t nslots;
	sl_slot_metrics_t *slots;
} d_rank_metrics_t;

/* What became of one rank's order of a step (Sluice__RankState values).
 * Entries are made when the order is dispatched, and only then: a worker's
 * reports are taken for its own dispatched orders, each kind once. */
typedef struct d_outcome {
	int32_t rank;
	int32_t state;
	int32_t ngroups, nslots; /* of the order sent: bound the metrics reported */
	uint8_t acked;           /* an ack (or nack) was taken */
	uint8_t reported;        /* metrics or step_failed was taken (one of them, once) */
	char error[200];
} d_outcome_t;

typedef struct d_step {
	uint64_t step;
	const char *job; /* the owning job's name (metrics labels) */
	char policy[COMM_POLICY_MAX + 1];
	int64_t nseqs, tokens;
	double predicted_ms, ideal_ms, planner_ms;
	int32_t dispatched, acked, nacked, completed, failed;
	int32_t ranks; /* the plan's cluster size (0 until dispatched) */
	int32_t noutcomes, outcomes_cap;
	d_outcome_t *outcomes; /* at most max_workers, unordered */
	int32_t nlost;
	int32_t *lost;
	int32_t nmetrics, metrics_cap;
	d_rank_metrics_t *metrics;
	char error[256];
} d_step_t;

typedef struct d_job {
	char name[COMM_JOB_MAX + 1];
	uint64_t plans, errors;
	d_worker_t *workers;
	int32_t nworkers, workers_cap;
	d_step_t *hist; /* ring of hist_cap */
	int32_t hist_cap, hist_head, hist_count;
	uint8_t client_rid[COMM_ID_MAX + 1];
	size_t client_rid_len;
	int64_t last_active_ms;
} d_job_t;

typedef struct server {
	daemon_config_t cfg;
	const daemon_args_t *args;
	void *ctx, *router;
	comm_zap_t *zap;
	daemon_pool_t *pool;
	daemon_metrics_t *metrics; /* NULL unless --metrics */
	int done_fd, sig_fd;
	char bound[256];
	daemon_task_t *inflight;
	uint32_t ninflight;
	d_job_t **jobs;
	size_t njobs, jobs_cap;
	FILE *record;
	uint64_t requests, plans, errors, timeouts, undeliverable, late;
	int64_t started_ms, next_hb_ms;
	uint64_t hb_seq;
	int draining;
	int64_t drain_deadline_ms;
} server_t;

/* ---- replies ---------------------------------------------------------------------- */

/* Sends env to a peer; a gone peer or a full queue counts as undeliverable
 * (the daemon never blocks on one slow or dead peer). */
static sl_err send_to(server_t *s, const uint8_t *rid, size_t rid_len, Sluice__Envelope *env,
                      uint64_t request_id)
{
	env->version = COMM_WIRE_VERSION;
	env->request_id = request_id;
	sl_err rc = comm_send(s->router, rid, rid_len, env);
	switch (env->body_case) {
	case SLUICE__ENVELOPE__BODY_PLAN:
		daemon_metrics_reply(s->metrics, DAEMON_REPLY_PLAN, SL_OK);
		break;
	case SLUICE__ENVELOPE__BODY_ERROR:
		daemon_metrics_reply(s->metrics, DAEMON_REPLY_ERROR, (sl_err)env->error->code);
		break;
	case SLUICE__ENVELOPE__BODY_STATUS_REPLY:
		daemon_metrics_reply(s->metrics, DAEMON_REPLY_STATUS, SL_OK);
		break;
	case SLUICE__ENVELOPE__BODY_WORK_ORDER:
		daemon_metrics_reply(s->metrics, DAEMON_REPLY_ORDER, SL_OK);
		break;
	case SLUICE__ENVELOPE__BODY_EVENT:
		daemon_metrics_reply(s->metrics, DAEMON_REPLY_EVENT, SL_OK);
		break;
	default:
		break;
	}
	if (rc != SL_OK) {
		daemon_metrics_undeliverable(s->metrics);
		char id[COMM_ID_MAX + 1];
		memcpy(id, rid, rid_len);
		id[rid_len] = '\0';
		char clean[COMM_ID_MAX + 1];
		comm_sanitize(clean, sizeof(clean), id);
		s->undeliverable++;
		SL_INFO(SL_SUB_DAEMON, "could not send %s to %s: %s", comm_body_name(env->body_case),
		        clean, sl_errmsg());
	}
	return rc;
}

static void reply_error(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t request_id,
                        sl_err code, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

static void reply_error(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t request_id,
                        sl_err code, const char *field, const char *fmt, ...)
{
	char msg[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	comm_arena_t a = {0};
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__Error err;
	comm_error_fill(&a, &err, code, msg, field);
	env.body_case = SLUICE__ENVELOPE__BODY_ERROR;
	env.error = &err;
	s->errors++;
	SL_DEBUG(SL_SUB_DAEMON, "error reply %s [%s]: %s", sl_errname(code), field ? field : "", msg);
	send_to(s, rid, rid_len, &env, request_id);
	comm_arena_free(&a);
}

/* ---- jobs -------------------------------------------------------------------------- */

static void step_clear(d_step_t *st)
{
	free(st->lost);
	for (int32_t i = 0; i < st->nmetrics; i++)
		free(st->metrics[i].slots);
	free(st->metrics);
	free(st->outcomes);
	memset(st, 0, sizeof(*st));
}

static void job_free(d_job_t **jp)
{
	d_job_t *j = *jp;
	if (j == NULL)
		return;
	for (int32_t i = 0; i < j->hist_cap; i++)
		step_clear(&j->hist[i]);
	free(j->hist);
	free(j->workers);
	free(j);
	*jp = NULL;
}

static d_job_t *job_find(server_t *s, const char *name)
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
static void job_metrics_workers(server_t *s, const d_job_t *j)
{
	int64_t n = 0;
	for (int32_t i = 0; i < j->nworkers; i++)
		n += j->workers[i].alive != 0;
	daemon_metrics_job_workers(s->metrics, j->name, n);
}

/* Finds or creates a job; beyond max_jobs the least recently active job
 * without live workers is forgotten. NULL (with a message) when none can be. */
static d_job_t *job_get(server_t *s, const char *name)
{
	d_job_t *j = job_find(s, name);
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
		job_free(&s->jobs[victim]);
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
static d_step_t *job_push_step(d_job_t *j, uint64_t step)
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
	step_clear(st);
	st->step = step;
	st->job = j->name;
	return st;
}

/* The newest history entry of that step, or NULL. */
static d_step_t *job_find_step(d_job_t *j, uint64_t step)
{
	for (int32_t k = j->hist_count - 1; k >= 0; k--) {
		d_step_t *st = &j->hist[(j->hist_head + k) % j->hist_cap];
		if (st->step == step && st->error[0] == '\0')
			return st;
	}
	return NULL;
}

static d_worker_t *job_worker(d_job_t *j, int32_t rank)
{
	for (int32_t i = 0; i < j->nworkers; i++)
		if (j->workers[i].rank == rank)
			return &j->workers[i];
	return NULL;
}

static int rid_eq(const d_worker_t *w, const uint8_t *rid, size_t len)
{
	return w->rid_len == len && memcmp(w->rid, rid, len) == 0;
}

/* Finds the live worker registered with this routing id. */
static d_worker_t *worker_by_rid(server_t *s, const uint8_t *rid, size_t len, d_job_t **job)
{
	for (size_t i = 0; i < s->njobs; i++)
		for (int32_t k = 0; k < s->jobs[i]->nworkers; k++) {
			d_worker_t *w = &s->jobs[i]->workers[k];
			if (w->alive && rid_eq(w, rid, len)) {
				if (job != NULL)
					*job = s->jobs[i];
				return w;
			}
		}
	return NULL;
}

/* Tells a job's live workers (but rank's own) and its last client about a
 * change; step is set for EVENT_STEP_FAILED. */
static void job_event(server_t *s, d_job_t *j, Sluice__EventKind kind, int32_t rank,
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
			send_to(s, j->workers[i].rid, j->workers[i].rid_len, &env, 0);
	if (j->client_rid_len > 0)
		send_to(s, j->client_rid, j->client_rid_len, &env, 0);
}

static void worker_lost(server_t *s, d_job_t *j, d_worker_t *w, const char *why)
{
	char msg[256];
	w->alive = 0;
	snprintf(msg, sizeof(msg), "worker rank %d (pid %u on %s) of job %s lost: %s", w->rank,
	         w->pid, w->host, j->name, why);
	SL_WARN(SL_SUB_DAEMON, "%s", msg);
	job_metrics_workers(s, j);
	job_event(s, j, SLUICE__EVENT_KIND__EVENT_WORKER_LOST, w->rank, 0, msg);
}

/* ---- recording ---------------------------------------------------------------------- */

static void record_open(server_t *s)
{
	if (s->record != NULL) {
		fclose(s->record);
		s->record = NULL;
	}
	if (s->cfg.record[0] == '\0')
		return;
	s->record = fopen(s->cfg.record, "a");
	if (s->record == NULL)
		SL_ERROR(SL_SUB_DAEMON, "record %s: %s (not recording)", s->cfg.record, strerror(errno));
}

/* Appends a request's lengths as a text trace block that `sluice replay`
 * reads back ('#' lines are comments there). */
static void record_request(server_t *s, const comm_request_t *r)
{
	if (s->record == NULL)
		return;
	fprintf(s->record, "# %s %" PRIu64 "\n", r->job, r->step);
	for (int64_t i = 0; i < r->n; i++)
		fprintf(s->record, "%" PRId64 "\n", r->seqs[i].length);
	if (fflush(s->record) != 0 || ferror(s->record)) {
		SL_ERROR(SL_SUB_DAEMON, "record %s: write failed: %s (not recording)", s->cfg.record,
		         strerror(errno));
		fclose(s->record);
		s->record = NULL;
	}
}

/* ---- requests --------------------------------------------------------------------- */

static void on_plan_request(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                            const Sluice__PlanRequest *m)
{
	char field[128];
	comm_limits_t lim = {s->cfg.max_seqs};
	s->requests++;
	if (s->draining) {
		reply_error(s, rid, rid_len, id, SL_ECLOSED, "",
		            "sluiced is shutting down (SIGTERM) and takes no new requests");
		return;
	}
	daemon_task_t *t = calloc(1, sizeof(*t));
	if (t == NULL) {
		reply_error(s, rid, rid_len, id, SL_ENOMEM, "", "no memory for the request");
		return;
	}
	sl_err rc = comm_request_from_proto(m, &lim, &t->req, field, sizeof(field));
	if (rc != SL_OK) {
		reply_error(s, rid, rid_len, id, rc, field, "%s", sl_errmsg());
		daemon_task_free(&t);
		return;
	}
	if (t->req.debug_delay_ms > 0 && !s->cfg.debug_plan_delay) {
		reply_error(s, rid, rid_len, id, SL_EINVAL, "plan_request.options.debug_delay_ms",
		            "debug_delay_ms %u is for tests: sluiced must run with debug_plan_delay yes",
		            t->req.debug_delay_ms);
		daemon_task_free(&t);
		return;
	}
	if ((int64_t)s->ninflight >= s->cfg.queue_max) {
		reply_error(s, rid, rid_len, id, SL_EBUSY, "",
		            "%u plan requests are queued or planning (queue_max=%lld); retry later",
		            s->ninflight, (long long)s->cfg.queue_max);
		daemon_task_free(&t);
		return;
	}
	d_job_t *j = job_get(s, t->req.job);
	if (j == NULL) {
		reply_error(s, rid, rid_len, id, SL_EBUSY, "plan_request.job", "%s", sl_errmsg());
		daemon_task_free(&t);
		return;
	}
	record_request(s, &t->req);
	j->last_active_ms = comm_now_ms();
	memcpy(j->client_rid, rid, rid_len);
	j->client_rid_len = rid_len;

	memcpy(t->rid, rid, rid_len);
	t->rid_len = rid_len;
	t->request_id = id;
	t->received_ms = comm_now_ms();
	int64_t dl = t->req.deadline_ms ? (int64_t)t->req.deadline_ms : s->cfg.deadline_ms;
	if (dl > s->cfg.max_deadline_ms)
		dl = s->cfg.max_deadline_ms;
	t->deadline_ms = t->received_ms + dl;
	/* Planning stops a reserve before the deadline (min(20%, 100 ms)), so
	 * that a truncated plan can still be evaluated and sent in time. */
	t->plan_deadline_ms = t->deadline_ms - (dl / 5 < 100 ? dl / 5 : 100);
	snprintf(t->policy, sizeof(t->policy), "%s", t->req.policy[0] ? t->req.policy : s->cfg.policy);
	if (t->req.has_inline_profile) {
		t->profile = t->req.profile;
	} else if (t->req.profile_name[0] != '\0') {
		snprintf(t->profile_name, sizeof(t->profile_name), "%s", t->req.profile_name);
		snprintf(t->profile_dir, sizeof(t->profile_dir), "%s", s->cfg.profile_dir);
	} else {
		t->profile = s->cfg.default_profile;
	}
	t->cluster.ranks = t->req.ranks ? t->req.ranks : (int32_t)s->cfg.ranks;
	t->cluster.ranks_per_node = t->req.ranks_per_node ? t->req.ranks_per_node
	                                                  : (int32_t)s->cfg.ranks_per_node;
	if (t->req.ranks_per_node == 0 && t->cluster.ranks_per_node > t->cluster.ranks)
		t->cluster.ranks_per_node = t->cluster.ranks;
	t->in_next = s->inflight;
	s->inflight = t;
	s->ninflight++;
	daemon_pool_push(s->pool, t);
}

static void step_ordered(server_t *s, d_step_t *st, int32_t rank, int32_t ngroups,
                         int32_t nslots);

/* Pushes the plan's work orders to the job's registered workers; fills the
 * reply's dispatched / lost_ranks and the history entry. */
static void dispatch(server_t *s, d_job_t *j, daemon_task_t *t, d_step_t *st, int32_t *lost,
                     int32_t *nlost)
{
	*nlost = 0;
	if (j == NULL)
		return;
	st->ranks = t->plan->ranks;
	for (int32_t i = 0; i < j->nworkers; i++) {
		d_worker_t *w = &j->workers[i];
		if (w->rank >= t->plan->ranks)
			continue;
		if (!w->alive) {
			lost[(*nlost)++] = w->rank;
			continue;
		}
		sl_work_order_t *o = NULL;
		comm_arena_t a = {0};
		Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
		Sluice__WorkOrder m;
		sl_err rc = sl_work_order_from_plan(t->plan, &t->cost, w->rank, j->name, t->req.step, &o);
		if (rc == SL_OK)
			rc = comm_order_to_proto(o, &a, &m);
		if (rc == SL_OK) {
			env.body_case = SLUICE__ENVELOPE__BODY_WORK_ORDER;
			env.work_order = &m;
			rc = send_to(s, w->rid, w->rid_len, &env, 0);
		}
		int32_t ngroups = o != NULL ? o->ngroups : 0, nslots = o != NULL ? o->nslots : 0;
		comm_arena_free(&a);
		sl_work_order_free(&o);
		if (rc == SL_OK) {
			w->orders++;
			st->dispatched++;
			step_ordered(s, st, w->rank, ngroups, nslots);
		} else {
			lost[(*nlost)++] = w->rank;
			if (rc == SL_ECLOSED)
				worker_lost(s, j, w, "its connection is gone (work order undeliverable)");
		}
	}
}

static void on_task_done(server_t *s, daemon_task_t *t)
{
	/* unlink from the in-flight list */
	for (daemon_task_t **pp = &s->inflight; *pp != NULL; pp = &(*pp)->in_next)
		if (*pp == t) {
			*pp = t->in_next;
			s->ninflight--;
			break;
		}
	if (t->answered) {
		s->late++;
		daemon_task_free(&t);
		return;
	}
	t->answered = 1;
	d_job_t *j = job_find(s, t->req.job);
	if (t->rc == SL_OK && comm_now_ms() > t->deadline_ms) {
		t->rc = SL_ETIMEOUT;
		snprintf(t->msg, sizeof(t->msg), "planning took %.0f ms, past the deadline of %lld ms",
		         t->plan_wall_ms, (long long)(t->deadline_ms - t->received_ms));
		snprintf(t->field, sizeof(t->field), "plan_request.deadline_ms");
		s->timeouts++;
	}
	if (t->rc != SL_OK) {
		if (j != NULL) {
			j->errors++;
			d_step_t *st = job_push_step(j, t->req.step);
			st->nseqs = t->req.n;
			snprintf(st->policy, sizeof(st->policy), "%s", t->policy);
			snprintf(st->error, sizeof(st->error), "%s: %.200s", sl_errname(t->rc), t->msg);
		}
		reply_error(s, t->rid, t->rid_len, t->request_id, t->rc, t->field, "%s", t->msg);
		daemon_task_free(&t);
		return;
	}
	s->plans++;
	daemon_metrics_plan_time(s->metrics, t->plan_wall_ms / 1e3);
	daemon_metrics_job_step(s->metrics, t->req.job, t->plan->step_ms);
	d_step_t dummy;
	memset(&dummy, 0, sizeof(dummy));
	d_step_t *st = &dummy;
	if (j != NULL) {
		j->plans++;
		st = job_push_step(j, t->req.step);
	}
	st->nseqs = t->req.n;
	for (int64_t i = 0; i < t->req.n; i++)
		st->tokens += t->req.seqs[i].length;
	snprintf(st->policy, sizeof(st->policy), "%s", t->plan->policy);
	st->predicted_ms = t->plan->step_ms;
	st->ideal_ms = t->plan->ideal_ms;
	st->planner_ms = t->plan->planner_ms;

	int32_t nlost = 0;
	int32_t *lost = NULL;
	if (j != NULL && !t->req.no_dispatch && j->nworkers > 0) {
		lost = malloc(sizeof(int32_t) * (size_t)j->nworkers);
		if (lost != NULL)
			dispatch(s, j, t, st, lost, &nlost);
	}
	if (nlost > 0 && st != &dummy) {
		st->lost = malloc(sizeof(int32_t) * (size_t)nlost);
		if (st->lost != NULL) {
			memcpy(st->lost, lost, sizeof(int32_t) * (size_t)nlost);
			st->nlost = nlost;
		}
	}

	comm_arena_t a = {0};
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__Plan m;
	if (comm_plan_to_proto(t->plan, &a, &m) != SL_OK) {
		reply_error(s, t->rid, t->rid_len, t->request_id, SL_ENOMEM, "", "%s", sl_errmsg());
	} else {
		m.job = t->req.job;
		m.step = t->req.step;
		m.dispatched = st->dispatched;
		m.n_lost_ranks = (size_t)nlost;
		m.lost_ranks = lost;
		env.body_case = SLUICE__ENVELOPE__BODY_PLAN;
		env.plan = &m;
		send_to(s, t->rid, t->rid_len, &env, t->request_id);
	}
	comm_arena_free(&a);
	free(lost);
	if (st == &dummy)
		step_clear(&dummy);
	daemon_task_free(&t);
}

/* Answers every request whose deadline passed; the planner's late result
 * is dropped when it comes back. Returns ms until the next deadline. */
static int64_t check_deadlines(server_t *s, int64_t now)
{
	int64_t next = INT64_MAX;
	for (daemon_task_t *t = s->inflight; t != NULL; t = t->in_next) {
		if (t->answered)
			continue;
		if (now > t->deadline_ms) {
			t->answered = 1;
			atomic_store(&t->cancelled, 1);
			s->timeouts++;
			d_job_t *j = job_find(s, t->req.job);
			if (j != NULL) {
				j->errors++;
				d_step_t *st = job_push_step(j, t->req.step);
				st->nseqs = t->req.n;
				snprintf(st->policy, sizeof(st->policy), "%s", t->policy);
				snprintf(st->error, sizeof(st->error), "SL_ETIMEOUT: deadline of %lld ms",
				         (long long)(t->deadline_ms - t->received_ms));
			}
			reply_error(s, t->rid, t->rid_len, t->request_id, SL_ETIMEOUT,
			            "plan_request.deadline_ms",
			            "no plan within the deadline of %lld ms (policy %s, %lld sequences)",
			            (long long)(t->deadline_ms - t->received_ms), t->policy,
			            (long long)t->req.n);
		} else if (t->deadline_ms - now < next) {
			next = t->deadline_ms - now;
		}
	}
	return next;
}

/* ---- workers ------------------------------------------------------------------------ */

static void on_hello(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                     const Sluice__WorkerHello *h)
{
	char clean[COMM_JOB_MAX + 8];
	if (!comm_job_name_ok(h->job)) {
		comm_sanitize(clean, sizeof(clean), h->job);
		reply_error(s, rid, rid_len, id, SL_EINVAL, "hello.job",
		            "'%s' is not a job name (1 to %d of [A-Za-z0-9._:@+/-])", clean, COMM_JOB_MAX);
		return;
	}
	if (h->rank < 0 || h->rank >= SL_MAX_RANKS) {
		reply_error(s, rid, rid_len, id, SL_ERANGE, "hello.rank", "rank %d is outside [0, %d)",
		            h->rank, SL_MAX_RANKS);
		return;
	}
	d_job_t *j = job_get(s, h->job);
	if (j == NULL) {
		reply_error(s, rid, rid_len, id, SL_EBUSY, "hello.job", "%s", sl_errmsg());
		return;
	}
	/* one rank per connection: a peer posing as many ranks would multiply
	 * the orders (and the reports) one process can make the daemon hold */
	for (int32_t i = 0; i < j->nworkers; i++) {
		const d_worker_t *o = &j->workers[i];
		if (o->alive && o->rank != h->rank && rid_eq(o, rid, rid_len)) {
			reply_error(s, rid, rid_len, id, SL_EINVAL, "hello.rank",
			            "this connection is registered as rank %d of job %s already (one "
			            "rank per connection)",
			            o->rank, j->name);
			return;
		}
	}
	d_worker_t *w = job_worker(j, h->rank);
	if (w == NULL) {
		if (j->nworkers >= s->cfg.max_workers) {
			reply_error(s, rid, rid_len, id, SL_EBUSY, "hello.rank",
			            "job %s has %d workers (max_workers=%lld)", j->name, j->nworkers,
			            (long long)s->cfg.max_workers);
			return;
		}
		if (j->nworkers == j->workers_cap) {
			int32_t nc = j->workers_cap ? j->workers_cap * 2 : 8;
			d_worker_t *nw = realloc(j->workers, sizeof(*nw) * (size_t)nc);
			if (nw == NULL) {
				reply_error(s, rid, rid_len, id, SL_ENOMEM, "", "no memory for a worker");
				return;
			}
			j->workers = nw;
			j->workers_cap = nc;
		}
		w = &j->workers[j->nworkers++];
		memset(w, 0, sizeof(*w));
		w->rank = h->rank;
	} else if (w->alive && !rid_eq(w, rid, rid_len)) {
		SL_WARN(SL_SUB_DAEMON, "job %s rank %d registered again by a new peer (pid %u)", j->name,
		        h->rank, h->pid);
	}
	/* a hello repeated on the same connection is no news; anything else
	 * (first registration, a lost rank back, a new process) is */
	const char *joined = w->rid_len == 0      ? "joined"
	                     : !w->alive            ? "registered again after being lost"
	                     : !rid_eq(w, rid, rid_len) ? "registered again from a new connection"
	                                            : NULL;
	memcpy(w->rid, rid, rid_len);
	w->rid_len = rid_len;
	comm_sanitize(w->host, sizeof(w->host), h->host);
	w->pid = h->pid;
	w->alive = 1;
	job_metrics_workers(s, j);
	w->last_seen_ms = comm_now_ms();
	j->last_active_ms = w->last_seen_ms;
	SL_INFO(SL_SUB_DAEMON, "job %s: worker rank %d registered (pid %u on %s)", j->name, w->rank,
	        w->pid, w->host);

	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__HelloReply r = SLUICE__HELLO_REPLY__INIT;
	r.job = j->name;
	r.rank = w->rank;
	r.heartbeat_ms = (uint32_t)s->cfg.heartbeat_ms;
	env.body_case = SLUICE__ENVELOPE__BODY_HELLO_REPLY;
	env.hello_reply = &r;
	send_to(s, rid, rid_len, &env, id);
	if (joined != NULL) {
		char msg[256];
		snprintf(msg, sizeof(msg), "worker rank %d (pid %u on %s) of job %s %s", w->rank, w->pid,
		         w->host, j->name, joined);
		job_event(s, j, SLUICE__EVENT_KIND__EVENT_WORKER_JOINED, w->rank, 0, msg);
	}
}

/* The registered worker that sent a message about job/rank, or NULL after
 * telling the sender to register (field "hello"). */
static d_worker_t *sender_worker(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                                 const char *job, int32_t rank, d_job_t **jp)
{
	d_job_t *j = comm_job_name_ok(job) ? job_find(s, job) : NULL;
	d_worker_t *w = j != NULL ? job_worker(j, rank) : NULL;
	if (w == NULL || !w->alive || !rid_eq(w, rid, rid_len)) {
		char clean[COMM_JOB_MAX + 8];
		comm_sanitize(clean, sizeof(clean), job);
		reply_error(s, rid, rid_len, id, SL_ENOTFOUND, "hello",
		            "job '%s' rank %d is not registered from this connection; send hello first",
		            clean, rank);
		return NULL;
	}
	w->last_seen_ms = comm_now_ms();
	*jp = j;
	return w;
}

/* The outcome entry of rank in st (created PENDING), or NULL when the step
 * already tracks max_workers ranks or memory is short. */
static d_outcome_t *step_outcome(server_t *s, d_step_t *st, int32_t rank)
{
	for (int32_t i = 0; i < st->noutcomes; i++)
		if (st->outcomes[i].rank == rank)
			return &st->outcomes[i];
	if (st->noutcomes >= s->cfg.max_workers)
		return NULL;
	if (st->noutcomes == st->outcomes_cap) {
		int32_t nc = st->outcomes_cap ? st->outcomes_cap * 2 : 8;
		d_outcome_t *no = realloc(st->outcomes, sizeof(*no) * (size_t)nc);
		if (no == NULL)
			return NULL;
		st->outcomes = no;
		st->outcomes_cap = nc;
	}
	d_outcome_t *o = &st->outcomes[st->noutcomes++];
	memset(o, 0, sizeof(*o));
	o->rank = rank;
	return o;
}

/* Moves rank's outcome of st to state (with the sanitised error text),
 * keeping the completed/failed counters in step with it. */
static void step_set_outcome(server_t *s, d_step_t *st, int32_t rank, int32_t state,
                             const char *error)
{
	d_outcome_t *o = step_outcome(s, st, rank);
	if (o == NULL)
		return;
	if (o->state == SLUICE__RANK_STATE__RANK_COMPLETED)
		st->completed--;
	if (o->state == SLUICE__RANK_STATE__RANK_FAILED)
		st->failed--;
	if (o->state != state) {
		static const daemon_outcome_kind kinds[] = {
			[SLUICE__RANK_STATE__RANK_ACCEPTED] = DAEMON_OUTCOME_ACCEPTED,
			[SLUICE__RANK_STATE__RANK_REJECTED] = DAEMON_OUTCOME_REJECTED,
			[SLUICE__RANK_STATE__RANK_COMPLETED] = DAEMON_OUTCOME_COMPLETED,
			[SLUICE__RANK_STATE__RANK_FAILED] = DAEMON_OUTCOME_FAILED,
		};
		if (st->job != NULL && (state == SLUICE__RANK_STATE__RANK_ACCEPTED ||
		    state == SLUICE__RANK_STATE__RANK_REJECTED ||
		    state == SLUICE__RANK_STATE__RANK_COMPLETED ||
		    state == SLUICE__RANK_STATE__RANK_FAILED))
			daemon_metrics_job_outcome(s->metrics, st->job, kinds[state]);
	}
	o->state = state;
	if (state == SLUICE__RANK_STATE__RANK_COMPLETED)
		st->completed++;
	if (state == SLUICE__RANK_STATE__RANK_FAILED)
		st->failed++;
	comm_sanitize(o->error, sizeof(o->error), error ? error : "");
}

/* Records that rank was sent its order of st (with the order's group and
 * slot counts), so that its reports on that step are taken. */
static void step_ordered(server_t *s, d_step_t *st, int32_t rank, int32_t ngroups,
                         int32_t nslots)
{
	d_outcome_t *o = step_outcome(s, st, rank);
	if (o == NULL)
		return;
	o->ngroups = ngroups;
	o->nslots = nslots;
}

/* The outcome of rank's order of job j's step, with the step in *stp; or
 * NULL after an error reply naming kind's field ("ack.step", ...) when the
 * step is not in the history, rank is outside its cluster, or rank got no
 * order of it. (sender_worker has checked that the sender is rank.) */
static d_outcome_t *report_outcome(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                                   d_job_t *j, const char *kind, uint64_t step, int32_t rank,
                                   d_step_t **stp)
{
	char field[32];
	d_step_t *st = job_find_step(j, step);
	if (st == NULL) {
		snprintf(field, sizeof(field), "%s.step", kind);
		reply_error(s, rid, rid_len, id, SL_ENOTFOUND, field,
		            "job %s has no step %" PRIu64 " in its history (the last %d planned "
		            "steps are kept)",
		            j->name, step, j->hist_cap);
		return NULL;
	}
	snprintf(field, sizeof(field), "%s.rank", kind);
	if (st->ranks > 0 && rank >= st->ranks) {
		reply_error(s, rid, rid_len, id, SL_ERANGE, field,
		            "rank %d is outside the %d-rank cluster of job %s step %" PRIu64, rank,
		            st->ranks, j->name, step);
		return NULL;
	}
	for (int32_t i = 0; i < st->noutcomes; i++)
		if (st->outcomes[i].rank == rank) {
			*stp = st;
			return &st->outcomes[i];
		}
	reply_error(s, rid, rid_len, id, SL_ENOTFOUND, field,
	            "rank %d was sent no order of job %s step %" PRIu64, rank, j->name, step);
	return NULL;
}

/* Refuses a second final report (metrics or step_failed) of one order;
 * 1 when this one may be taken. */
static int report_first(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                        const d_job_t *j, const char *field, uint64_t step, const d_outcome_t *o)
{
	if (!o->reported)
		return 1;
	reply_error(s, rid, rid_len, id, SL_EINVAL, field,
	            "rank %d already reported the outcome of job %s step %" PRIu64 " (%s)", o->rank,
	            j->name, step,
	            o->state == SLUICE__RANK_STATE__RANK_FAILED ? "step_failed" : "metrics");
	return 0;
}

static void on_ack(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                   const Sluice__WorkAck *m)
{
	d_job_t *j;
	d_worker_t *w = sender_worker(s, rid, rid_len, id, m->job, m->rank, &j);
	if (w == NULL)
		return;
	d_step_t *st = NULL;
	d_outcome_t *o = report_outcome(s, rid, rid_len, id, j, "ack", m->step, m->rank, &st);
	if (o == NULL)
		return;
	if (o->acked) {
		reply_error(s, rid, rid_len, id, SL_EINVAL, "ack.step",
		            "rank %d already acknowledged job %s step %" PRIu64, m->rank, j->name,
		            m->step);
		return;
	}
	o->acked = 1;
	w->acks++;
	if (m->error != NULL && m->error->code != 0) {
		char msg[200];
		comm_sanitize(msg, sizeof(msg), m->error->message);
		st->nacked++;
		step_set_outcome(s, st, m->rank, SLUICE__RANK_STATE__RANK_REJECTED, msg);
		SL_WARN(SL_SUB_DAEMON, "job %s step %" PRIu64 ": rank %d rejected its order: %s",
		        j->name, m->step, m->rank, msg);
	} else {
		st->acked++;
		/* an ack that comes after the step's outcome must not undo it */
		if (o->state == SLUICE__RANK_STATE__RANK_PENDING)
			step_set_outcome(s, st, m->rank, SLUICE__RANK_STATE__RANK_ACCEPTED, NULL);
	}
}

/* An accepted order that failed: recorded in the step's outcomes, logged,
 * and told to the job's client and other workers (EVENT_STEP_FAILED). */
static void on_step_failed(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                           const Sluice__StepFailed *m)
{
	d_job_t *j;
	d_worker_t *w = sender_worker(s, rid, rid_len, id, m->job, m->rank, &j);
	if (w == NULL)
		return;
	d_step_t *st = NULL;
	d_outcome_t *o =
	    report_outcome(s, rid, rid_len, id, j, "step_failed", m->step, m->rank, &st);
	if (o == NULL || !report_first(s, rid, rid_len, id, j, "step_failed.step", m->step, o))
		return;
	o->reported = 1;
	char why[200], msg[512];
	comm_sanitize(why, sizeof(why),
	              m->error != NULL && m->error->message[0] != '\0' ? m->error->message
	                                                              : "(no reason given)");
	snprintf(msg, sizeof(msg), "rank %d of job %s failed step %" PRIu64 ": %s", m->rank,
	         j->name, m->step, why);
	SL_WARN(SL_SUB_DAEMON, "%s", msg);
	step_set_outcome(s, st, m->rank, SLUICE__RANK_STATE__RANK_FAILED, why);
	job_event(s, j, SLUICE__EVENT_KIND__EVENT_STEP_FAILED, m->rank, m->step, msg);
}

/* 1 when a time is a finite number >= 0; else an error reply naming the
 * field (index >= 0: "metrics.slots[index].name") and 0. */
static int metric_ms_ok(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                        const char *name, long index, double v)
{
	if (isfinite(v) && v >= 0)
		return 1;
	char field[64];
	if (index >= 0)
		snprintf(field, sizeof(field), "metrics.slots[%ld].%s", index, name);
	else
		snprintf(field, sizeof(field), "metrics.%s", name);
	reply_error(s, rid, rid_len, id, SL_ERANGE, field,
	            "%s is %g (expected a finite number of milliseconds >= 0)", field, v);
	return 0;
}

/* Checks a metrics report against the order it reports on: finite,
 * non-negative times, no more slots than the order had groups, slot ids of
 * the plan, byte counts whose sums stay below 2^63. 1 when it may be taken;
 * else an error reply naming the field and 0. */
static int metrics_ok(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                      const Sluice__WorkerMetrics *m, const d_outcome_t *o)
{
	if (!metric_ms_ok(s, rid, rid_len, id, "step_ms", -1, m->step_ms))
		return 0;
	if (m->n_slots > (size_t)o->ngroups) {
		reply_error(s, rid, rid_len, id, SL_ERANGE, "metrics.slots",
		            "%zu slot metrics for an order of %d groups (job %s step %" PRIu64
		            " rank %d)",
		            m->n_slots, o->ngroups, m->job, m->step, m->rank);
		return 0;
	}
	uint64_t sent = 0, recv = 0;
	for (size_t i = 0; i < m->n_slots; i++) {
		const Sluice__SlotMetrics *sm = m->slots[i];
		char field[64];
		if (sm->slot < 0 || sm->slot >= o->nslots) {
			snprintf(field, sizeof(field), "metrics.slots[%zu].slot", i);
			reply_error(s, rid, rid_len, id, SL_ERANGE, field,
			            "slot %d is outside the plan's %d slots", sm->slot, o->nslots);
			return 0;
		}
		if (!metric_ms_ok(s, rid, rid_len, id, "compute_ms", (long)i, sm->compute_ms) ||
		    !metric_ms_ok(s, rid, rid_len, id, "comm_ms", (long)i, sm->comm_ms))
			return 0;
		const char *big = NULL;
		uint64_t v = 0;
		if (sm->bytes_sent > (uint64_t)INT64_MAX - sent) {
			big = "bytes_sent";
			v = sm->bytes_sent;
		} else if (sm->bytes_recv > (uint64_t)INT64_MAX - recv) {
			big = "bytes_recv";
			v = sm->bytes_recv;
		}
		if (big != NULL) {
			snprintf(field, sizeof(field), "metrics.slots[%zu].%s", i, big);
			reply_error(s, rid, rid_len, id, SL_ERANGE, field,
			            "%s of %" PRIu64 " bytes takes the rank's total past 2^63-1", field,
			            v);
			return 0;
		}
		sent += sm->bytes_sent;
		recv += sm->bytes_recv;
	}
	return 1;
}

static void on_metrics(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                       const Sluice__WorkerMetrics *m)
{
	d_job_t *j;
	d_worker_t *w = sender_worker(s, rid, rid_len, id, m->job, m->rank, &j);
	if (w == NULL)
		return;
	d_step_t *st = NULL;
	d_outcome_t *o = report_outcome(s, rid, rid_len, id, j, "metrics", m->step, m->rank, &st);
	if (o == NULL || !report_first(s, rid, rid_len, id, j, "metrics.step", m->step, o) ||
	    !metrics_ok(s, rid, rid_len, id, m, o))
		return;
	o->reported = 1;
	d_rank_metrics_t *rm = NULL;
	if (st->nmetrics >= s->cfg.max_workers)
		return;
	if (st->nmetrics == st->metrics_cap) {
		int32_t nc = st->metrics_cap ? st->metrics_cap * 2 : 8;
		d_rank_metrics_t *nm = realloc(st->metrics, sizeof(*nm) * (size_t)nc);
		if (nm == NULL)
			return;
		st->metrics = nm;
		st->metrics_cap = nc;
	}
	rm = &st->metrics[st->nmetrics++];
	memset(rm, 0, sizeof(*rm));
	rm->rank = m->rank;
	rm->step_ms = m->step_ms;
	size_t n = m->n_slots < SLOT_METRICS_MAX ? m->n_slots : SLOT_METRICS_MAX;
	rm->slots = calloc(n ? n : 1, sizeof(*rm->slots));
	if (rm->slots == NULL)
		return;
	for (size_t i = 0; i < m->n_slots; i++) {
		const Sluice__SlotMetrics *sm = m->slots[i];
		rm->compute_ms += sm->compute_ms;
		rm->comm_ms += sm->comm_ms;
		rm->bytes_sent += sm->bytes_sent;
		rm->bytes_recv += sm->bytes_recv;
		if (i < n) {
			rm->slots[i].slot = sm->slot;
			rm->slots[i].compute_ms = sm->compute_ms;
			rm->slots[i].comm_ms = sm->comm_ms;
			rm->slots[i].bytes_sent = sm->bytes_sent;
			rm->slots[i].bytes_recv = sm->bytes_recv;
		}
	}
	rm->nslots = (int32_t)n;
	step_set_outcome(s, st, m->rank, SLUICE__RANK_STATE__RANK_COMPLETED, NULL);
}

/* Pings every live worker; a ping that cannot be routed means its
 * connection is gone (ROUTER_MANDATORY), so the worker is lost. */
static void heartbeat_workers(server_t *s)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__Heartbeat hb = SLUICE__HEARTBEAT__INIT;
	hb.seq = ++s->hb_seq;
	env.body_case = SLUICE__ENVELOPE__BODY_HEARTBEAT;
	env.heartbeat = &hb;
	for (size_t i = 0; i < s->njobs; i++) {
		d_job_t *j = s->jobs[i];
		for (int32_t k = 0; k < j->nworkers; k++) {
			d_worker_t *w = &j->workers[k];
			if (!w->alive)
				continue;
			env.version = COMM_WIRE_VERSION;
			sl_err rc = comm_send(s->router, w->rid, w->rid_len, &env);
			if (rc == SL_ECLOSED)
				worker_lost(s, j, w, "its connection closed");
		}
	}
}

/* ---- status ------------------------------------------------------------------------- */

static void on_status(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                      const Sluice__StatusRequest *m)
{
	int64_t now = comm_now_ms();
	if (m->job[0] != '\0' && (!comm_job_name_ok(m->job) || job_find(s, m->job) == NULL)) {
		char clean[COMM_JOB_MAX + 8];
		comm_sanitize(clean, sizeof(clean), m->job);
		reply_error(s, rid, rid_len, id, SL_ENOTFOUND, "status_request.job",
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
		reply_error(s, rid, rid_len, id, SL_ENOMEM, "", "no memory for the status reply");
	} else {
		Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
		env.body_case = SLUICE__ENVELOPE__BODY_STATUS_REPLY;
		env.status_reply = &r;
		send_to(s, rid, rid_len, &env, id);
	}
	comm_arena_free(&a);
}

/* ---- dispatch of incoming messages --------------------------------------------------- */

/* The metrics' name for a received message. */
static daemon_msg_kind msg_kind(Sluice__Envelope__BodyCase c)
{
	switch (c) {
	case SLUICE__ENVELOPE__BODY_PLAN_REQUEST:
		return DAEMON_MSG_PLAN;
	case SLUICE__ENVELOPE__BODY_STATUS_REQUEST:
		return DAEMON_MSG_STATUS;
	case SLUICE__ENVELOPE__BODY_HELLO:
		return DAEMON_MSG_HELLO;
	case SLUICE__ENVELOPE__BODY_HEARTBEAT:
		return DAEMON_MSG_PONG;
	case SLUICE__ENVELOPE__BODY_ACK:
		return DAEMON_MSG_ACK;
	case SLUICE__ENVELOPE__BODY_METRICS:
		return DAEMON_MSG_METRICS;
	case SLUICE__ENVELOPE__BODY_STEP_FAILED:
		return DAEMON_MSG_STEP_FAILED;
	default:
		return DAEMON_MSG_OTHER;
	}
}

static void on_message(server_t *s, const uint8_t *rid, size_t rid_len, const void *data,
                       size_t len)
{
	if ((int64_t)len > s->cfg.max_request_bytes) {
		s->requests++;
		daemon_metrics_request(s->metrics, DAEMON_MSG_OTHER);
		reply_error(s, rid, rid_len, 0, SL_ERANGE, "envelope",
		            "message of %zu bytes (limit max_request_bytes=%lld)", len,
		            (long long)s->cfg.max_request_bytes);
		return;
	}
	Sluice__Envelope *env = NULL;
	if (comm_decode(data, len, &env) != SL_OK) {
		s->requests++;
		daemon_metrics_request(s->metrics, DAEMON_MSG_OTHER);
		reply_error(s, rid, rid_len, 0, SL_EPROTO, "envelope", "%s", sl_errmsg());
		return;
	}
	uint64_t id = env->request_id;
	daemon_metrics_request(s->metrics, msg_kind(env->body_case));
	switch (env->body_case) {
	case SLUICE__ENVELOPE__BODY_PLAN_REQUEST:
		on_plan_request(s, rid, rid_len, id, env->plan_request);
		break;
	case SLUICE__ENVELOPE__BODY_STATUS_REQUEST:
		on_status(s, rid, rid_len, id, env->status_request);
		break;
	case SLUICE__ENVELOPE__BODY_HELLO:
		on_hello(s, rid, rid_len, id, env->hello);
		break;
	case SLUICE__ENVELOPE__BODY_HEARTBEAT: {
		d_worker_t *w = worker_by_rid(s, rid, rid_len, NULL);
		if (w != NULL)
			w->last_seen_ms = comm_now_ms();
		else
			reply_error(s, rid, rid_len, id, SL_ENOTFOUND, "hello",
			            "heartbeat from a peer that is not a registered worker; send hello "
			            "first");
		break;
	}
	case SLUICE__ENVELOPE__BODY_ACK:
		on_ack(s, rid, rid_len, id, env->ack);
		break;
	case SLUICE__ENVELOPE__BODY_METRICS:
		on_metrics(s, rid, rid_len, id, env->metrics);
		break;
	case SLUICE__ENVELOPE__BODY_STEP_FAILED:
		on_step_failed(s, rid, rid_len, id, env->step_failed);
		break;
	default:
		s->requests++;
		reply_error(s, rid, rid_len, id, SL_EPROTO, "envelope.body",
		            "sluiced does not accept %s messages (it takes plan_request, "
		            "status_request, hello, heartbeat, ack, metrics and step_failed)",
		            comm_body_name(env->body_case));
	}
	comm_envelope_free(&env);
}

static void read_router(server_t *s)
{
	for (int k = 0; k < ROUTER_BATCH; k++) {
		uint8_t rid[COMM_ID_MAX + 1];
		size_t rid_len = 0;
		zmq_msg_t msg;
		sl_err rc = comm_recv(s->router, rid, &rid_len, &msg);
		if (rc == SL_EBUSY) {
			zmq_msg_close(&msg);
			return;
		}
		if (rc == SL_EPROTO && rid_len > 0) {
			s->requests++;
			reply_error(s, rid, rid_len, 0, SL_EPROTO, "envelope", "%s", sl_errmsg());
		} else if (rc != SL_OK) {
			SL_WARN(SL_SUB_DAEMON, "receive failed: %s", sl_errmsg());
		} else {
			on_message(s, rid, rid_len, zmq_msg_data(&msg), zmq_msg_size(&msg));
		}
		zmq_msg_close(&msg);
	}
}

/* ---- reload, signals ----------------------------------------------------------------- */

static void apply_log_level(const daemon_config_t *c)
{
	if (getenv("SLUICE_LOG") == NULL)
		sl_log_set_level((sl_log_level)sl_log_level_parse(c->log_level));
}

static void reload(server_t *s)
{
	char buf[96];
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%llu",
	         (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
	daemon_notify(buf);
	daemon_config_t nc;
	if (daemon_config_build(s->args, &nc) != SL_OK) {
		SL_ERROR(SL_SUB_DAEMON, "SIGHUP: configuration not reloaded: %s", sl_errmsg());
		daemon_notify("READY=1\nSTATUS=reload failed; old configuration kept");
		return;
	}
	/* Options without the reload mark keep their running values. */
	for (size_t i = 0; i < daemon_nopts; i++) {
		const daemon_opt_t *o = &daemon_opts[i];
		if (o->reload)
			continue;
		size_t sz = o->type == DCONF_STRING ? o->size : sizeof(int64_t);
		if (memcmp((char *)&nc + o->off, (char *)&s->cfg + o->off, sz) != 0) {
			char now[DAEMON_STR_MAX];
			daemon_config_format(&s->cfg, o, now, sizeof(now));
			SL_WARN(SL_SUB_DAEMON, "SIGHUP: %s changed; restart sluiced to apply it (keeping %s)",
			        o->name, now);
			memcpy((char *)&nc + o->off, (char *)&s->cfg + o->off, sz);
		}
	}
	if (s->zap != NULL && comm_zap_reload(s->zap, nc.authorized_keys) != SL_OK) {
		SL_ERROR(SL_SUB_DAEMON, "SIGHUP: authorized_keys not reloaded: %s", sl_errmsg());
		snprintf(nc.authorized_keys, sizeof(nc.authorized_keys), "%s", s->cfg.authorized_keys);
	}
	s->cfg = nc;
	apply_log_level(&s->cfg);
	record_open(s);
	SL_INFO(SL_SUB_DAEMON, "configuration reloaded (policy %s, profile %s, queue_max %lld)",
	        s->cfg.policy, s->cfg.profile, (long long)s->cfg.queue_max);
	daemon_notify("READY=1\nSTATUS=configuration reloaded");
}

static void read_signals(server_t *s)
{
	struct signalfd_siginfo si;
	while (read(s->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			reload(s);
		} else if (!s->draining) {
			s->draining = 1;
			s->drain_deadline_ms = comm_now_ms() + s->cfg.drain_timeout_ms;
			SL_INFO(SL_SUB_DAEMON, "%s: draining %u in-flight requests, then exiting",
			        strsignal((int)si.ssi_signo), s->ninflight);
			daemon_notify("STOPPING=1\nSTATUS=draining");
		}
	}
}

/* ---- the loop ----------------------------------------------------------------------- */

static void take_done(server_t *s)
{
	daemon_task_t *t = daemon_pool_take_done(s->pool);
	while (t != NULL) {
		daemon_task_t *next = t->next;
		on_task_done(s, t);
		t = next;
	}
}

/* Answers whatever is still unanswered at the end of a drain (the drain cap)
 * and cancels it, so the planner threads stop and can be joined at once. */
static void abandon_inflight(server_t *s)
{
	for (daemon_task_t *t = s->inflight; t != NULL; t = t->in_next)
		if (!t->answered) {
			t->answered = 1;
			atomic_store(&t->cancelled, 1);
			reply_error(s, t->rid, t->rid_len, t->request_id, SL_ECLOSED, "",
			            "sluiced stopped before this plan was done (drain_timeout_ms=%lld)",
			            (long long)s->cfg.drain_timeout_ms);
		}
}

static int serve(server_t *s)
{
	s->next_hb_ms = comm_now_ms() + s->cfg.heartbeat_ms;
	for (;;) {
		int64_t now = comm_now_ms();
		int64_t wait = check_deadlines(s, now);
		if (now >= s->next_hb_ms) {
			heartbeat_workers(s);
			s->next_hb_ms = now + s->cfg.heartbeat_ms;
		}
		if (s->next_hb_ms - now < wait)
			wait = s->next_hb_ms - now;
		if (s->draining) {
			if (s->ninflight == 0)
				return 0;
			if (now >= s->drain_deadline_ms) {
				abandon_inflight(s);
				return 0;
			}
			if (s->drain_deadline_ms - now < wait)
				wait = s->drain_deadline_ms - now;
		}
		if (wait < 0)
			wait = 0;
		zmq_pollitem_t items[3] = {
			{s->router, 0, ZMQ_POLLIN, 0},
			{NULL, s->done_fd, ZMQ_POLLIN, 0},
			{NULL, s->sig_fd, ZMQ_POLLIN, 0},
		};
		int r = zmq_poll(items, 3, (long)(wait + 1));
		if (r < 0) {
			if (zmq_errno() == EINTR)
				continue;
			SL_ERROR(SL_SUB_DAEMON, "zmq_poll: %s", zmq_strerror(zmq_errno()));
			return 1;
		}
		if (items[2].revents & ZMQ_POLLIN)
			read_signals(s);
		if (items[1].revents & ZMQ_POLLIN)
			take_done(s);
		if (items[0].revents & ZMQ_POLLIN)
			read_router(s);
	}
}

int daemon_run(const daemon_args_t *args, daemon_config_t *cfg)
{
	server_t *s = calloc(1, sizeof(*s));
	int status = 1;
	if (s == NULL) {
		fprintf(stderr, "sluiced: out of memory\n");
		return 1;
	}
	s->cfg = *cfg;
	s->args = args;
	s->sig_fd = s->done_fd = -1;
	s->started_ms = comm_now_ms();
	apply_log_level(&s->cfg);

	/* Signals are read from a signalfd by the loop; block them before any
	 * thread (planner or ZeroMQ I/O) exists, so every thread inherits the mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	s->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->sig_fd < 0) {
		sl_seterr(SL_EIO, "signalfd: %s", strerror(errno));
		goto out;
	}

	s->ctx = zmq_ctx_new();
	if (s->ctx == NULL) {
		COMM_ZMQ_ERR("zmq_ctx_new");
		goto out;
	}
	int is_tcp = 0;
	comm_endpoint_parse(s->cfg.endpoint, &is_tcp, NULL, 0);
	if (is_tcp && s->cfg.curve_secret_key[0] != '\0' &&
	    comm_zap_start(s->ctx, s->cfg.authorized_keys, &s->zap) != SL_OK)
		goto out;
	comm_server_opts_t so = {
		.endpoint = s->cfg.endpoint,
		.secret_key_file = s->cfg.curve_secret_key,
		.allow_plain_tcp = (int)s->cfg.allow_plain_tcp,
		.sndhwm = (int)s->cfg.hwm,
		.rcvhwm = (int)s->cfg.hwm,
		/* The transport drops peers past twice the limit; between the
		 * two, the request is read and refused with a reply. */
		.max_msg_bytes = s->cfg.max_request_bytes * 2 + (1 << 20),
		.heartbeat_ms = (int)s->cfg.heartbeat_ms,
		.linger_ms = 1000,
		.ipc_mode = daemon_socket_mode(s->cfg.socket_mode),
		.ipc_gid = daemon_group_id(s->cfg.socket_group),
	};
	if (comm_server_open(s->ctx, &so, &s->router, s->bound, sizeof(s->bound)) != SL_OK)
		goto out;
	record_open(s);
	if (daemon_pool_start((int)s->cfg.threads, &s->pool, &s->done_fd) != SL_OK)
		goto out;
	if (s->cfg.metrics[0] != '\0') {
		int port = -1;
		if (daemon_metrics_start(s->cfg.metrics, s->pool, (int)s->cfg.threads, &s->metrics,
		                         &port) != SL_OK)
			goto out;
		/* the host as given, the port as bound (0 picks a free one) */
		const char *colon = strrchr(s->cfg.metrics, ':');
		printf("sluiced metrics on http://%.*s:%d/metrics\n", (int)(colon - s->cfg.metrics),
		       s->cfg.metrics, port);
	}

	char ready[400];
	snprintf(ready, sizeof(ready), "READY=1\nMAINPID=%u\nSTATUS=serving on %s", (unsigned)getpid(),
	         s->bound);
	if (daemon_notify(ready) != SL_OK)
		SL_WARN(SL_SUB_DAEMON, "sd_notify: %s", sl_errmsg());
	printf("sluiced %s listening on %s (pid %u, %lld planner threads, policy %s)\n",
	       SLUICE_VERSION, s->bound, (unsigned)getpid(), (long long)s->cfg.threads, s->cfg.policy);
	fflush(stdout);

	status = serve(s);
	SL_INFO(SL_SUB_DAEMON, "exiting: %llu requests, %llu plans, %llu errors",
	        (unsigned long long)s->requests, (unsigned long long)s->plans,
	        (unsigned long long)s->errors);
out:
	if (status != 0 && sl_errmsg()[0] != '\0')
		fprintf(stderr, "sluiced: %s\n", sl_errmsg());
	/* Whatever still plans is cancelled, so joining the threads is quick. */
	for (daemon_task_t *t = s->inflight; t != NULL; t = t->in_next)
		atomic_store(&t->cancelled, 1);
	daemon_metrics_stop(&s->metrics); /* before the pool it reads */
	daemon_pool_stop(&s->pool);
	while (s->inflight != NULL) {
		daemon_task_t *t = s->inflight;
		s->inflight = t->in_next;
		daemon_task_free(&t);
	}
	for (size_t i = 0; i < s->njobs; i++)
		job_free(&s->jobs[i]);
	free(s->jobs);
	if (s->record != NULL)
		fclose(s->record);
	if (s->router != NULL) {
		zmq_close(s->router);
		/* libzmq leaves the socket file behind; a stale one would only
		 * confuse (clients would connect to nothing), so remove it. */
		char path[256] = "";
		int tcp = 0;
		if (comm_endpoint_parse(s->bound, &tcp, path, sizeof(path)) == SL_OK && !tcp &&
		    path[0] != '\0')
			unlink(path);
	}
	comm_zap_stop(&s->zap);
	if (s->ctx != NULL)
		zmq_ctx_term(s->ctx);
	if (s->sig_fd >= 0)
		close(s->sig_fd);
	free(s);
	return status;
}
