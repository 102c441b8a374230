/* sluiced: plan requests: checked and queued for the planner pool, answered
 * when planned (plan or error, exactly once), their work orders dispatched to
 * the job's workers, and deadlines enforced. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

void daemon_on_plan_request(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                            const Sluice__PlanRequest *m)
{
	char field[128];
	comm_limits_t lim = {s->cfg.max_seqs};
	s->requests++;
	if (s->draining) {
		daemon_reply_error(s, rid, rid_len, id, SL_ECLOSED, "",
		                   "sluiced is shutting down (%s) and takes no new requests",
		                   s->drain_signal);
		return;
	}
	daemon_task_t *t = calloc(1, sizeof(*t));
	if (t == NULL) {
		daemon_reply_error(s, rid, rid_len, id, SL_ENOMEM, "", "no memory for the request");
		return;
	}
	sl_err rc = comm_request_from_proto(m, &lim, &t->req, field, sizeof(field));
	if (rc != SL_OK) {
		daemon_reply_error(s, rid, rid_len, id, rc, field, "%s", sl_errmsg());
		daemon_task_free(&t);
		return;
	}
	if (t->req.debug_delay_ms > 0 && !s->cfg.debug_plan_delay) {
		daemon_reply_error(s, rid, rid_len, id, SL_EINVAL, "plan_request.options.debug_delay_ms",
		                   "debug_delay_ms %u is for tests: sluiced must run with debug_plan_delay yes",
		                   t->req.debug_delay_ms);
		daemon_task_free(&t);
		return;
	}
	if ((int64_t)s->ninflight >= s->cfg.queue_max) {
		daemon_reply_error(s, rid, rid_len, id, SL_EBUSY, "",
		                   "%u plan requests are queued or planning (queue_max=%lld); retry later",
		                   s->ninflight, (long long)s->cfg.queue_max);
		daemon_task_free(&t);
		return;
	}
	d_job_t *j = daemon_job_get(s, t->req.job);
	if (j == NULL) {
		daemon_reply_error(s, rid, rid_len, id, SL_EBUSY, "plan_request.job", "%s", sl_errmsg());
		daemon_task_free(&t);
		return;
	}
	daemon_record_request(s, &t->req);
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
			rc = daemon_send(s, w->rid, w->rid_len, &env, 0);
		}
		int32_t ngroups = o != NULL ? o->ngroups : 0, nslots = o != NULL ? o->nslots : 0;
		comm_arena_free(&a);
		sl_work_order_free(&o);
		if (rc == SL_OK) {
			w->orders++;
			st->dispatched++;
			daemon_step_ordered(s, st, w->rank, ngroups, nslots);
		} else {
			lost[(*nlost)++] = w->rank;
			if (rc == SL_ECLOSED)
				daemon_worker_lost(s, j, w, "its connection is gone (work order undeliverable)");
		}
	}
}

void daemon_on_task_done(server_t *s, daemon_task_t *t)
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
	d_job_t *j = daemon_job_find(s, t->req.job);
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
			d_step_t *st = daemon_job_push_step(j, t->req.step);
			st->nseqs = t->req.n;
			snprintf(st->policy, sizeof(st->policy), "%s", t->policy);
			snprintf(st->error, sizeof(st->error), "%s: %.200s", sl_errname(t->rc), t->msg);
		}
		daemon_reply_error(s, t->rid, t->rid_len, t->request_id, t->rc, t->field, "%s", t->msg);
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
		st = daemon_job_push_step(j, t->req.step);
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
		daemon_reply_error(s, t->rid, t->rid_len, t->request_id, SL_ENOMEM, "", "%s", sl_errmsg());
	} else {
		m.job = t->req.job;
		m.step = t->req.step;
		m.dispatched = st->dispatched;
		m.n_lost_ranks = (size_t)nlost;
		m.lost_ranks = lost;
		env.body_case = SLUICE__ENVELOPE__BODY_PLAN;
		env.plan = &m;
		daemon_send(s, t->rid, t->rid_len, &env, t->request_id);
	}
	comm_arena_free(&a);
	free(lost);
	if (st == &dummy)
		daemon_step_clear(&dummy);
	daemon_task_free(&t);
}

/* Answers every request whose deadline passed; the planner's late result
 * is dropped when it comes back. Returns ms until the next deadline. */
int64_t daemon_check_deadlines(server_t *s, int64_t now)
{
	int64_t next = INT64_MAX;
	for (daemon_task_t *t = s->inflight; t != NULL; t = t->in_next) {
		if (t->answered)
			continue;
		if (now > t->deadline_ms) {
			t->answered = 1;
			atomic_store(&t->cancelled, 1);
			s->timeouts++;
			d_job_t *j = daemon_job_find(s, t->req.job);
			if (j != NULL) {
				j->errors++;
				d_step_t *st = daemon_job_push_step(j, t->req.step);
				st->nseqs = t->req.n;
				snprintf(st->policy, sizeof(st->policy), "%s", t->policy);
				snprintf(st->error, sizeof(st->error), "SL_ETIMEOUT: deadline of %lld ms",
				         (long long)(t->deadline_ms - t->received_ms));
			}
			daemon_reply_error(s, t->rid, t->rid_len, t->request_id, SL_ETIMEOUT,
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
