/* sluice worker: the ZeroMQ mesh between the ranks of one run.
 *
 * One PULL inbox per rank (ipc://RUN_DIR/w<rank>.ipc) and a PUSH socket per
 * peer this rank sends to, connected on first use. ZeroMQ keeps the order of
 * messages of one PUSH->PULL pipe; across senders it does not, and a fast
 * rank may already be a slot ahead, so every message carries a tag and a
 * receive keeps messages it was not waiting for until they are asked for.
 *
 * A worker serving sluiced keeps its mesh from step to step, so a tag's slot
 * and hop repeat. Every message also carries the sender's epoch (the step):
 * a receive matches only messages of the current epoch, keeps newer ones (a
 * rank already on the next step) and drops older ones (left over from a step
 * that failed somewhere), so one step's shards never meet another's. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "worker.h"

/* First frame of every message. */
typedef struct mesh_hdr {
	int32_t src;
	worker_tag_t tag;
	int32_t pad_;
	int64_t epoch;
} mesh_hdr_t;
_Static_assert(sizeof(mesh_hdr_t) == 32, "mesh header is 6 int32 and an int64 on the wire");
_Static_assert(offsetof(mesh_hdr_t, epoch) == 24, "mesh header layout");

typedef struct mesh_pending {
	mesh_hdr_t hdr;
	zmq_msg_t body;
} mesh_pending_t;

struct worker_mesh {
	void *ctx;
	void *pull;
	void **push; /* [nranks], NULL until first send */
	int32_t rank, nranks;
	int timeout_ms;
	char run_dir[WORKER_RUN_DIR_MAX + 1];
	mesh_pending_t **pend; /* heap cells: a zmq_msg_t is not moved by copying */
	size_t npend, cap;
	int32_t boot_seq;
	int64_t epoch;
	const volatile sig_atomic_t *stop; /* set: waits give up (SL_ECLOSED) */
};

/* Longest single wait in zmq_poll, so a stop flag set by a signal that
 * another (ZeroMQ) thread received is still seen promptly. */
#define MESH_POLL_SLICE_MS 100

static sl_err mesh_zerr(const char *what, int32_t rank)
{
	return sl_seterr(SL_ECOMM, "rank %d: %s: %s", (int)rank, what, zmq_strerror(zmq_errno()));
}

static void mesh_endpoint(const worker_mesh_t *m, int32_t r, char *buf, size_t n)
{
	snprintf(buf, n, "ipc://%s/w%d.ipc", m->run_dir, (int)r);
}

sl_err worker_mesh_new(const char *run_dir, int32_t rank, int32_t nranks, int timeout_ms,
                       worker_mesh_t **out)
{
	*out = NULL;
	if (strlen(run_dir) > WORKER_RUN_DIR_MAX)
		return sl_seterr(SL_EINVAL,
		                 "run directory '%s' is too long for an ipc socket (%zu > %d chars)",
		                 run_dir, strlen(run_dir), WORKER_RUN_DIR_MAX);
	if (rank < 0 || rank >= nranks)
		return sl_seterr(SL_ERANGE, "mesh: rank %d out of range [0, %d)", (int)rank,
		                 (int)nranks);
	worker_mesh_t *m = calloc(1, sizeof *m);
	if (!m)
		return sl_seterr(SL_ENOMEM, "mesh: out of memory");
	m->rank = rank;
	m->nranks = nranks;
	m->timeout_ms = timeout_ms > 0 ? timeout_ms : 60000;
	snprintf(m->run_dir, sizeof m->run_dir, "%s", run_dir);
	m->push = calloc((size_t)nranks, sizeof *m->push);
	m->ctx = zmq_ctx_new();
	sl_err rc = SL_OK;
	char ep[WORKER_RUN_DIR_MAX + 32];
	int zero = 0;
	if (!m->push || !m->ctx) {
		rc = sl_seterr(SL_ENOMEM, "mesh: out of memory");
		goto fail;
	}
	m->pull = zmq_socket(m->ctx, ZMQ_PULL);
	if (!m->pull) {
		rc = mesh_zerr("zmq_socket(PULL)", rank);
		goto fail;
	}
	/* Unbounded queues: a receiver always drains its inbox into the
	 * pending list, so memory, not back-pressure, bounds what is queued. */
	zmq_setsockopt(m->pull, ZMQ_RCVHWM, &zero, sizeof zero);
	zmq_setsockopt(m->pull, ZMQ_LINGER, &zero, sizeof zero);
	mesh_endpoint(m, rank, ep, sizeof ep);
	if (zmq_bind(m->pull, ep) != 0) {
		rc = sl_seterr(SL_ECOMM, "rank %d: cannot bind %s: %s", (int)rank, ep,
		               zmq_strerror(zmq_errno()));
		goto fail;
	}
	*out = m;
	return SL_OK;
fail:
	worker_mesh_free(&m);
	return rc;
}

void worker_mesh_free(worker_mesh_t **mesh)
{
	if (!mesh || !*mesh)
		return;
	worker_mesh_t *m = *mesh;
	for (size_t i = 0; i < m->npend; i++) {
		zmq_msg_close(&m->pend[i]->body);
		free(m->pend[i]);
	}
	free(m->pend);
	if (m->push)
		for (int32_t r = 0; r < m->nranks; r++)
			if (m->push[r])
				zmq_close(m->push[r]);
	if (m->pull) {
		char ep[WORKER_RUN_DIR_MAX + 32];
		mesh_endpoint(m, m->rank, ep, sizeof ep);
		zmq_close(m->pull);
		/* The socket file outlives the socket; remove ours. */
		unlink(ep + strlen("ipc://"));
	}
	free(m->push);
	if (m->ctx)
		zmq_ctx_term(m->ctx);
	free(m);
	*mesh = NULL;
}

void worker_mesh_set_linger(worker_mesh_t *m, int linger_ms)
{
	if (!m)
		return;
	for (int32_t r = 0; r < m->nranks; r++)
		if (m->push[r])
			zmq_setsockopt(m->push[r], ZMQ_LINGER, &linger_ms, sizeof linger_ms);
}

void worker_mesh_abandon(worker_mesh_t *m)
{
	worker_mesh_set_linger(m, 0);
}

void worker_mesh_set_stop(worker_mesh_t *m, const volatile sig_atomic_t *stop)
{
	m->stop = stop;
}

void worker_mesh_set_epoch(worker_mesh_t *m, int64_t epoch)
{
	if (epoch == m->epoch)
		return;
	m->epoch = epoch;
	/* Collectives count from one again, so ranks that skipped a step agree. */
	m->boot_seq = 0;
	size_t k = 0;
	for (size_t i = 0; i < m->npend; i++) {
		if (m->pend[i]->hdr.epoch < epoch) {
			zmq_msg_close(&m->pend[i]->body);
			free(m->pend[i]);
		} else {
			m->pend[k++] = m->pend[i];
		}
	}
	m->npend = k;
}

static sl_err mesh_push(worker_mesh_t *m, int32_t dst, void **out)
{
	if (dst < 0 || dst >= m->nranks)
		return sl_seterr(SL_EINTERNAL, "mesh: destination rank %d out of range", (int)dst);
	if (!m->push[dst]) {
		void *s = zmq_socket(m->ctx, ZMQ_PUSH);
		if (!s)
			return mesh_zerr("zmq_socket(PUSH)", m->rank);
		int zero = 0, linger = m->timeout_ms;
		zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero);
		/* Messages still queued at close get this long to leave. */
		zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
		char ep[WORKER_RUN_DIR_MAX + 32];
		mesh_endpoint(m, dst, ep, sizeof ep);
		if (zmq_connect(s, ep) != 0) {
			sl_err rc = sl_seterr(SL_ECOMM, "rank %d: cannot connect to %s: %s", (int)m->rank,
			                      ep, zmq_strerror(zmq_errno()));
			zmq_close(s);
			return rc;
		}
		m->push[dst] = s;
	}
	*out = m->push[dst];
	return SL_OK;
}

sl_err worker_mesh_send(worker_mesh_t *m, int32_t dst, const worker_tag_t *tag, const void *buf,
                        size_t len)
{
	void *s = NULL;
	SL_CHECK(mesh_push(m, dst, &s));
	mesh_hdr_t h = {.src = m->rank, .tag = *tag, .pad_ = 0, .epoch = m->epoch};
	while (zmq_send(s, &h, sizeof h, ZMQ_SNDMORE) < 0)
		if (zmq_errno() != EINTR)
			return mesh_zerr("send header", m->rank);
	while (zmq_send(s, buf, len, 0) < 0)
		if (zmq_errno() != EINTR)
			return mesh_zerr("send payload", m->rank);
	return SL_OK;
}

static int mesh_match(const worker_mesh_t *m, const mesh_hdr_t *h, int32_t src,
                      const worker_tag_t *t)
{
	return h->epoch == m->epoch && h->src == src && h->tag.kind == t->kind &&
	       h->tag.slot == t->slot && h->tag.hop == t->hop && h->tag.seq == t->seq;
}

static sl_err mesh_deliver(worker_mesh_t *m, const mesh_hdr_t *h, zmq_msg_t *body, void *buf,
                           size_t len)
{
	size_t got = zmq_msg_size(body);
	sl_err rc = SL_OK;
	if (got != len)
		rc = sl_seterr(SL_EPROTO,
		               "rank %d: message from rank %d (kind %d, slot %d, hop %d) has %zu bytes, "
		               "expected %zu",
		               (int)m->rank, (int)h->src, (int)h->tag.kind, (int)h->tag.slot,
		               (int)h->tag.hop, got, len);
	else if (len)
		memcpy(buf, zmq_msg_data(body), len);
	zmq_msg_close(body);
	return rc;
}

sl_err worker_mesh_recv(worker_mesh_t *m, int32_t src, const worker_tag_t *tag, void *buf,
                        size_t len)
{
	for (size_t i = 0; i < m->npend; i++)
		if (mesh_match(m, &m->pend[i]->hdr, src, tag)) {
			mesh_pending_t *p = m->pend[i];
			memmove(&m->pend[i], &m->pend[i + 1], (m->npend - i - 1) * sizeof *m->pend);
			m->npend--;
			sl_err rc = mesh_deliver(m, &p->hdr, &p->body, buf, len);
			free(p);
			return rc;
		}
	double deadline = sl_now_ms() + m->timeout_ms;
	for (;;) {
		double left = deadline - sl_now_ms();
		if (left <= 0)
			return sl_seterr(SL_ETIMEOUT,
			                 "rank %d: no message from rank %d (kind %d, slot %d, hop %d) "
			                 "within %d ms: did that worker fail?",
			                 (int)m->rank, (int)src, (int)tag->kind, (int)tag->slot,
			                 (int)tag->hop, m->timeout_ms);
		if (m->stop && *m->stop)
			return sl_seterr(SL_ECLOSED, "rank %d: stopped while waiting for rank %d (slot %d)",
			                 (int)m->rank, (int)src, (int)tag->slot);
		zmq_pollitem_t it = {.socket = m->pull, .events = ZMQ_POLLIN};
		long wait = (long)left + 1;
		if (m->stop && wait > MESH_POLL_SLICE_MS)
			wait = MESH_POLL_SLICE_MS;
		int n = zmq_poll(&it, 1, wait);
		if (n < 0) {
			if (zmq_errno() == EINTR)
				continue;
			return mesh_zerr("poll", m->rank);
		}
		if (n == 0)
			continue;
		zmq_msg_t hm, body;
		zmq_msg_init(&hm);
		if (zmq_msg_recv(&hm, m->pull, 0) < 0) {
			zmq_msg_close(&hm);
			if (zmq_errno() == EINTR)
				continue;
			return mesh_zerr("receive", m->rank);
		}
		mesh_hdr_t h;
		int more = zmq_msg_more(&hm);
		size_t hs = zmq_msg_size(&hm);
		if (hs == sizeof h)
			memcpy(&h, zmq_msg_data(&hm), sizeof h);
		zmq_msg_close(&hm);
		if (hs != sizeof h || !more)
			return sl_seterr(SL_EPROTO, "rank %d: malformed mesh message (%zu-byte header)",
			                 (int)m->rank, hs);
		zmq_msg_init(&body);
		while (zmq_msg_recv(&body, m->pull, 0) < 0)
			if (zmq_errno() != EINTR) {
				zmq_msg_close(&body);
				return mesh_zerr("receive payload", m->rank);
			}
		if (mesh_match(m, &h, src, tag))
			return mesh_deliver(m, &h, &body, buf, len);
		if (h.epoch < m->epoch) {
			SL_DEBUG(SL_SUB_KERN, "rank %d: dropped a message of step %lld from rank %d (now %lld)",
			         (int)m->rank, (long long)h.epoch, (int)h.src, (long long)m->epoch);
			zmq_msg_close(&body);
			continue;
		}
		mesh_pending_t *cell = malloc(sizeof *cell);
		if (cell && m->npend == m->cap) {
			size_t cap = m->cap ? 2 * m->cap : 8;
			mesh_pending_t **p = realloc(m->pend, cap * sizeof *p);
			if (!p) {
				free(cell);
				cell = NULL;
			} else {
				m->pend = p;
				m->cap = cap;
			}
		}
		if (!cell) {
			zmq_msg_close(&body);
			return sl_seterr(SL_ENOMEM, "mesh: out of memory");
		}
		cell->hdr = h;
		zmq_msg_init(&cell->body);
		zmq_msg_move(&cell->body, &body);
		zmq_msg_close(&body);
		m->pend[m->npend++] = cell;
	}
}

sl_err worker_mesh_bcast(void *ctx, int32_t root, void *buf, size_t len)
{
	worker_mesh_t *m = ctx;
	worker_tag_t t = {.kind = WORKER_MSG_BOOT_BCAST, .slot = -1, .hop = root,
	                  .seq = ++m->boot_seq};
	if (root < 0 || root >= m->nranks)
		return sl_seterr(SL_ERANGE, "bcast: root %d out of range", (int)root);
	if (m->rank != root)
		return worker_mesh_recv(m, root, &t, buf, len);
	for (int32_t r = 0; r < m->nranks; r++)
		if (r != root)
			SL_CHECK(worker_mesh_send(m, r, &t, buf, len));
	return SL_OK;
}

sl_err worker_mesh_barrier(void *ctx)
{
	worker_mesh_t *m = ctx;
	worker_tag_t t = {.kind = WORKER_MSG_BOOT_GATHER, .slot = -1, .hop = 0,
	                  .seq = ++m->boot_seq};
	char dummy = 0;
	if (m->rank != 0) {
		SL_CHECK(worker_mesh_send(m, 0, &t, &dummy, 1));
		t.kind = WORKER_MSG_BOOT_BCAST;
		return worker_mesh_recv(m, 0, &t, &dummy, 1);
	}
	for (int32_t r = 1; r < m->nranks; r++)
		SL_CHECK(worker_mesh_recv(m, r, &t, &dummy, 1));
	t.kind = WORKER_MSG_BOOT_BCAST;
	for (int32_t r = 1; r < m->nranks; r++)
		SL_CHECK(worker_mesh_send(m, r, &t, &dummy, 1));
	return SL_OK;
}
