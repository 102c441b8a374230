/* sluice comm: the peer core shared by sl_client and sl_worker: one ZeroMQ
 * context and DEALER, request ids, a queue of replies that arrived before
 * anyone asked for them, and a queue of job events. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

struct comm_pending {
	comm_pending_t *next;
	Sluice__Envelope *env;
};

sl_err comm_peer_open(comm_peer_t *p, const char *endpoint, const sl_client_opts_t *opts,
                      const char *prefix)
{
	char def[256];
	memset(p, 0, sizeof(*p));
	if (endpoint == NULL || endpoint[0] == '\0')
		endpoint = sl_default_endpoint(def, sizeof(def));
	p->ctx = zmq_ctx_new();
	if (p->ctx == NULL)
		return COMM_ZMQ_ERR("zmq_ctx_new");
	/* Peers are small: one I/O thread is plenty. */
	zmq_ctx_set(p->ctx, ZMQ_IO_THREADS, 1);
	sl_err rc = comm_dealer_open(p->ctx, endpoint, opts, prefix, &p->sock);
	if (rc != SL_OK) {
		zmq_ctx_term(p->ctx);
		p->ctx = NULL;
		return rc;
	}
	snprintf(p->endpoint, sizeof(p->endpoint), "%s", endpoint);
	p->next_id = 1;
	return SL_OK;
}

void comm_peer_close(comm_peer_t *p)
{
	comm_pending_t *n = p->pending_head;
	while (n != NULL) {
		comm_pending_t *next = n->next;
		comm_envelope_free(&n->env);
		free(n);
		n = next;
	}
	p->pending_head = p->pending_tail = NULL;
	p->npending = 0;
	if (p->sock != NULL)
		zmq_close(p->sock);
	if (p->ctx != NULL)
		zmq_ctx_term(p->ctx);
	p->sock = p->ctx = NULL;
}

sl_err comm_peer_send(comm_peer_t *p, Sluice__Envelope *env, uint64_t *id)
{
	env->version = COMM_WIRE_VERSION;
	env->request_id = p->next_id++;
	if (id != NULL)
		*id = env->request_id;
	sl_err rc = comm_send(p->sock, NULL, 0, env);
	if (rc == SL_EBUSY)
		return sl_seterr(SL_EBUSY, "send queue to %s is full (is sluiced running?)",
		                 p->endpoint);
	return rc;
}

/* Queues an event, dropping the oldest when the queue is full. */
static void push_event(comm_peer_t *p, const Sluice__JobEvent *e)
{
	if (p->ev_count == COMM_EVENTS_MAX) {
		p->ev_head = (p->ev_head + 1) % COMM_EVENTS_MAX;
		p->ev_count--;
	}
	sl_event_t *ev = &p->events[(p->ev_head + p->ev_count) % COMM_EVENTS_MAX];
	memset(ev, 0, sizeof(*ev));
	ev->kind = (e->kind == SLUICE__EVENT_KIND__EVENT_WORKER_LOST)     ? SL_EVENT_WORKER_LOST
	           : (e->kind == SLUICE__EVENT_KIND__EVENT_WORKER_JOINED) ? SL_EVENT_WORKER_JOINED
	           : (e->kind == SLUICE__EVENT_KIND__EVENT_STEP_FAILED)   ? SL_EVENT_STEP_FAILED
	                                                                  : SL_EVENT_NONE;
	ev->step = e->step;
	comm_sanitize(ev->job, sizeof(ev->job), e->job);
	ev->rank = e->rank;
	comm_sanitize(ev->message, sizeof(ev->message), e->message);
	p->ev_count++;
}

int comm_peer_next_event(comm_peer_t *p, sl_event_t *ev)
{
	if (p->ev_count == 0)
		return 0;
	*ev = p->events[p->ev_head];
	p->ev_head = (p->ev_head + 1) % COMM_EVENTS_MAX;
	p->ev_count--;
	return 1;
}

static int has_pending(const comm_peer_t *p, uint64_t want)
{
	for (const comm_pending_t *n = p->pending_head; n != NULL; n = n->next)
		if (want == 0 || n->env->request_id == want)
			return 1;
	return 0;
}

/* Reads every message that has arrived, without waiting. */
static void drain(comm_peer_t *p, comm_peer_hook_fn hook, void *arg)
{
	for (;;) {
		zmq_msg_t msg;
		sl_err rc = comm_recv(p->sock, NULL, NULL, &msg);
		if (rc == SL_EBUSY) {
			zmq_msg_close(&msg);
			return;
		}
		if (rc != SL_OK) {
			zmq_msg_close(&msg);
			if (rc == SL_ECOMM || rc == SL_ECLOSED)
				return;
			SL_WARN(SL_SUB_COMM, "dropped a message from %s: %s", p->endpoint, sl_errmsg());
			continue;
		}
		Sluice__Envelope *env = NULL;
		rc = comm_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &env);
		zmq_msg_close(&msg);
		if (rc != SL_OK) {
			SL_WARN(SL_SUB_COMM, "dropped a message from %s: %s", p->endpoint, sl_errmsg());
			continue;
		}
		if (env->body_case == SLUICE__ENVELOPE__BODY_EVENT) {
			push_event(p, env->event);
			comm_envelope_free(&env);
			continue;
		}
		if (hook != NULL && hook(p, env, arg))
			continue; /* the hook took it */
		comm_pending_t *n = malloc(sizeof(*n));
		if (n == NULL) {
			comm_envelope_free(&env);
			continue;
		}
		if (p->npending >= COMM_PENDING_MAX) {
			comm_pending_t *old = p->pending_head;
			SL_WARN(SL_SUB_COMM, "%zu replies nobody asked for: dropping the oldest (id %llu)",
			        p->npending, (unsigned long long)old->env->request_id);
			p->pending_head = old->next;
			if (p->pending_head == NULL)
				p->pending_tail = NULL;
			comm_envelope_free(&old->env);
			free(old);
			p->npending--;
		}
		n->env = env;
		n->next = NULL;
		if (p->pending_tail != NULL)
			p->pending_tail->next = n;
		else
			p->pending_head = n;
		p->pending_tail = n;
		p->npending++;
	}
}

sl_err comm_peer_wait(comm_peer_t *p, int timeout_ms, uint64_t want, comm_peer_hook_fn hook,
                      void *arg)
{
	int64_t deadline = timeout_ms < 0 ? -1 : comm_now_ms() + timeout_ms;
	for (;;) {
		if (has_pending(p, want))
			return SL_OK;
		long wait = -1;
		if (deadline >= 0) {
			int64_t left = deadline - comm_now_ms();
			wait = left > 0 ? (long)left : 0;
		}
		zmq_pollitem_t it = {p->sock, 0, ZMQ_POLLIN, 0};
		int r = zmq_poll(&it, 1, wait);
		if (r < 0) {
			if (zmq_errno() == EINTR)
				continue;
			return COMM_ZMQ_ERR("zmq_poll");
		}
		if (r > 0) {
			drain(p, hook, arg);
			continue;
		}
		if (has_pending(p, want))
			return SL_OK;
		return sl_seterr(SL_ETIMEOUT, "no reply from %s within %d ms", p->endpoint,
		                 timeout_ms);
	}
}

Sluice__Envelope *comm_peer_take(comm_peer_t *p, uint64_t want)
{
	comm_pending_t *prev = NULL;
	for (comm_pending_t *n = p->pending_head; n != NULL; prev = n, n = n->next) {
		if (want != 0 && n->env->request_id != want)
			continue;
		if (prev != NULL)
			prev->next = n->next;
		else
			p->pending_head = n->next;
		if (p->pending_tail == n)
			p->pending_tail = prev;
		p->npending--;
		Sluice__Envelope *env = n->env;
		free(n);
		return env;
	}
	return NULL;
}
