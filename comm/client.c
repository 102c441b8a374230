/* sluice comm: the client side of libsluice (sl_client_*): plan and status
 * requests to sluiced, blocking or pipelined. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

struct sl_client {
	comm_peer_t peer;
	uint64_t last_step;
	int32_t last_dispatched;
	int32_t nlost;
	int32_t *lost;
};

sl_err sl_client_new(const char *endpoint, const sl_client_opts_t *opts, sl_client_t **out)
{
	*out = NULL;
	sl_client_t *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return sl_seterr(SL_ENOMEM, "sl_client_new");
	sl_err rc = comm_peer_open(&c->peer, endpoint, opts, "c");
	if (rc != SL_OK) {
		free(c);
		return rc;
	}
	*out = c;
	return SL_OK;
}

void sl_client_free(sl_client_t **c)
{
	if (c == NULL || *c == NULL)
		return;
	comm_peer_close(&(*c)->peer);
	free((*c)->lost);
	free(*c);
	*c = NULL;
}

void sl_free(void *p)
{
	free(p);
}

sl_err sl_client_send(sl_client_t *c, const sl_plan_req_t *req, uint64_t *request_id)
{
	comm_arena_t a = {0};
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__PlanRequest m;
	sl_err rc = comm_request_to_proto(req, &a, &m);
	if (rc == SL_OK && a.failed)
		rc = sl_seterr(SL_ENOMEM, "encoding the request");
	if (rc == SL_OK) {
		env.body_case = SLUICE__ENVELOPE__BODY_PLAN_REQUEST;
		env.plan_request = &m;
		rc = comm_peer_send(&c->peer, &env, request_id);
	}
	comm_arena_free(&a);
	return rc;
}

sl_err sl_client_poll(sl_client_t *c, int timeout_ms)
{
	return comm_peer_wait(&c->peer, timeout_ms, 0, NULL, NULL);
}

/* Turns a reply into a plan or the daemon's error; consumes env. */
static sl_err take_plan(sl_client_t *c, Sluice__Envelope *env, sl_plan_t **out)
{
	sl_err rc;
	c->peer.error_field[0] = '\0';
	switch (env->body_case) {
	case SLUICE__ENVELOPE__BODY_PLAN:
		rc = comm_plan_from_proto(env->plan, out);
		if (rc == SL_OK) {
			c->last_step = env->plan->step;
			c->last_dispatched = env->plan->dispatched;
			free(c->lost);
			c->lost = NULL;
			c->nlost = 0;
			size_t n = env->plan->n_lost_ranks;
			if (n > 0 && (c->lost = malloc(sizeof(int32_t) * n)) != NULL) {
				memcpy(c->lost, env->plan->lost_ranks, sizeof(int32_t) * n);
				c->nlost = (int32_t)n;
			}
		}
		break;
	case SLUICE__ENVELOPE__BODY_ERROR:
		rc = comm_error_raise(env->error, c->peer.error_field, sizeof(c->peer.error_field));
		break;
	default:
		rc = sl_seterr(SL_EPROTO, "expected a plan or an error from %s, got %s",
		               c->peer.endpoint, comm_body_name(env->body_case));
	}
	comm_envelope_free(&env);
	return rc;
}

sl_err sl_client_recv(sl_client_t *c, int timeout_ms, uint64_t *request_id, sl_plan_t **out)
{
	*out = NULL;
	SL_CHECK(comm_peer_wait(&c->peer, timeout_ms, 0, NULL, NULL));
	Sluice__Envelope *env = comm_peer_take(&c->peer, 0);
	if (request_id != NULL)
		*request_id = env->request_id;
	return take_plan(c, env, out);
}

sl_err sl_client_plan(sl_client_t *c, const sl_plan_req_t *req, int timeout_ms, sl_plan_t **out)
{
	uint64_t id;
	*out = NULL;
	SL_CHECK(sl_client_send(c, req, &id));
	SL_CHECK(comm_peer_wait(&c->peer, timeout_ms, id, NULL, NULL));
	return take_plan(c, comm_peer_take(&c->peer, id), out);
}

sl_err sl_client_plan_json(sl_client_t *c, const sl_plan_req_t *req, int timeout_ms, char **json)
{
	sl_plan_t *plan = NULL;
	*json = NULL;
	SL_CHECK(sl_client_plan(c, req, timeout_ms, &plan));
	*json = sl_plan_to_json(plan);
	sl_plan_free(&plan);
	if (*json == NULL)
		return sl_seterr(SL_ENOMEM, "writing the plan as JSON");
	return SL_OK;
}

const char *sl_client_error_field(const sl_client_t *c)
{
	return c->peer.error_field;
}

uint64_t sl_client_last_step(const sl_client_t *c)
{
	return c->last_step;
}

int32_t sl_client_last_dispatched(const sl_client_t *c)
{
	return c->last_dispatched;
}

const int32_t *sl_client_last_lost(const sl_client_t *c, int32_t *n)
{
	*n = c->nlost;
	return c->lost;
}

int sl_client_next_event(sl_client_t *c, sl_event_t *ev)
{
	return comm_peer_next_event(&c->peer, ev);
}

sl_err sl_client_status_json(sl_client_t *c, const char *job, uint32_t max_steps, int timeout_ms,
                             char **json)
{
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__StatusRequest m = SLUICE__STATUS_REQUEST__INIT;
	uint64_t id;
	*json = NULL;
	if (job != NULL && job[0] != '\0') {
		if (!comm_job_name_ok(job))
			return sl_seterr(SL_EINVAL, "'%s' is not a job name", job);
		m.job = (char *)job;
	}
	m.max_steps = max_steps;
	env.body_case = SLUICE__ENVELOPE__BODY_STATUS_REQUEST;
	env.status_request = &m;
	SL_CHECK(comm_peer_send(&c->peer, &env, &id));
	SL_CHECK(comm_peer_wait(&c->peer, timeout_ms, id, NULL, NULL));
	Sluice__Envelope *r = comm_peer_take(&c->peer, id);
	sl_err rc;
	c->peer.error_field[0] = '\0';
	if (r->body_case == SLUICE__ENVELOPE__BODY_STATUS_REPLY)
		rc = comm_status_to_json(r->status_reply, json);
	else if (r->body_case == SLUICE__ENVELOPE__BODY_ERROR)
		rc = comm_error_raise(r->error, c->peer.error_field, sizeof(c->peer.error_field));
	else
		rc = sl_seterr(SL_EPROTO, "expected a status reply from %s, got %s", c->peer.endpoint,
		               comm_body_name(r->body_case));
	comm_envelope_free(&r);
	return rc;
}
