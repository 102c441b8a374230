/* sluice comm: framing (one Envelope per ZeroMQ frame), bounded decoding,
 * the arena used to build outgoing messages, and error messages on the wire. */
#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm.h"

int64_t comm_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

sl_err comm_zmq_err_(const char *file, int line, const char *what)
{
	int e = zmq_errno();
	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	sl_err code = SL_ECOMM;
	if (e == EHOSTUNREACH)
		code = SL_ECLOSED;
	else if (e == EAGAIN)
		code = SL_EBUSY;
	else if (e == ETERM)
		code = SL_ECLOSED;
	SL_DEBUG(SL_SUB_COMM, "%s:%d: %s: %s", base, line, what, zmq_strerror(e));
	return sl_seterr(code, "%s:%d: %s: %s", base, line, what, zmq_strerror(e));
}

/* ---- arena ---------------------------------------------------------------- */

struct comm_arena_blk {
	comm_arena_blk_t *next;
	size_t size, used;
	alignas(max_align_t) unsigned char data[];
};

void *comm_arena_alloc(comm_arena_t *a, size_t size)
{
	const size_t align = alignof(max_align_t);
	size = (size + align - 1) & ~(align - 1);
	if (size == 0)
		size = align;
	comm_arena_blk_t *b = a->head;
	if (b == NULL || b->size - b->used < size) {
		size_t cap = size > 16384 ? size : 16384;
		b = malloc(sizeof(*b) + cap);
		if (b == NULL) {
			a->failed = 1;
			return NULL;
		}
		b->size = cap;
		b->used = 0;
		b->next = a->head;
		a->head = b;
	}
	void *p = b->data + b->used;
	b->used += size;
	a->used += size;
	memset(p, 0, size);
	return p;
}

char *comm_arena_strdup(comm_arena_t *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = comm_arena_alloc(a, n);
	if (d != NULL)
		memcpy(d, s, n);
	return d;
}

void comm_arena_free(comm_arena_t *a)
{
	comm_arena_blk_t *b = a->head;
	while (b != NULL) {
		comm_arena_blk_t *next = b->next;
		free(b);
		b = next;
	}
	a->head = NULL;
	a->used = 0;
	a->failed = 0;
}

/* ---- bounded decoding ---------------------------------------------------- */

/* protobuf-c allocates through this allocator while unpacking; each block
 * carries its size so the budget can refuse the allocation that would pass
 * the limit, which bounds what a hostile frame can cost us. */
typedef struct decode_budget {
	size_t used, limit;
	int refused; /* an allocation passed the limit */
} decode_budget_t;

typedef union budget_hdr {
	size_t size;
	max_align_t align_;
} budget_hdr_t;

static void *budget_alloc(void *data, size_t size)
{
	decode_budget_t *b = data;
	if (b != NULL) {
		if (size > b->limit || b->used > b->limit - size) {
			b->refused = 1;
			return NULL;
		}
		b->used += size;
	}
	budget_hdr_t *h = malloc(sizeof(*h) + size);
	if (h == NULL)
		return NULL;
	h->size = size;
	return h + 1;
}

static void budget_free(void *data, void *p)
{
	(void)data;
	if (p != NULL)
		free((budget_hdr_t *)p - 1);
}

/* Used to free decoded envelopes: same block layout, no budget. */
static ProtobufCAllocator free_allocator = {budget_alloc, budget_free, NULL};

static const char *const body_names[] = {
	[SLUICE__ENVELOPE__BODY_PLAN_REQUEST] = "plan_request",
	[SLUICE__ENVELOPE__BODY_PLAN] = "plan",
	[SLUICE__ENVELOPE__BODY_STATUS_REQUEST] = "status_request",
	[SLUICE__ENVELOPE__BODY_STATUS_REPLY] = "status_reply",
	[SLUICE__ENVELOPE__BODY_ERROR] = "error",
	[SLUICE__ENVELOPE__BODY_HELLO] = "hello",
	[SLUICE__ENVELOPE__BODY_HELLO_REPLY] = "hello_reply",
	[SLUICE__ENVELOPE__BODY_HEARTBEAT] = "heartbeat",
	[SLUICE__ENVELOPE__BODY_WORK_ORDER] = "work_order",
	[SLUICE__ENVELOPE__BODY_ACK] = "ack",
	[SLUICE__ENVELOPE__BODY_METRICS] = "metrics",
	[SLUICE__ENVELOPE__BODY_EVENT] = "event",
	[SLUICE__ENVELOPE__BODY_STEP_FAILED] = "step_failed",
};

const char *comm_body_name(int body_case)
{
	if (body_case > 0 && (size_t)body_case < sizeof(body_names) / sizeof(body_names[0]) &&
	    body_names[body_case] != NULL)
		return body_names[body_case];
	return "none";
}

sl_err comm_decode(const void *data, size_t len, Sluice__Envelope **out)
{
	*out = NULL;
	if (len == 0)
		return sl_seterr(SL_EPROTO, "empty message (expected a sluice.Envelope)");
	decode_budget_t budget = {0, len * COMM_DECODE_FACTOR + COMM_DECODE_SLACK, 0};
	ProtobufCAllocator alloc = {budget_alloc, budget_free, &budget};
	Sluice__Envelope *env = sluice__envelope__unpack(&alloc, len, data);
	if (env == NULL) {
		if (budget.refused)
			return sl_seterr(SL_EPROTO,
			                 "message of %zu bytes needs more than %zu bytes to decode "
			                 "(too many nested messages)",
			                 len, budget.limit);
		return sl_seterr(SL_EPROTO,
		                 "undecodable message of %zu bytes (not a sluice.Envelope, or "
		                 "truncated)",
		                 len);
	}
	if (env->version != COMM_WIRE_VERSION) {
		unsigned v = env->version;
		comm_envelope_free(&env);
		return sl_seterr(SL_EPROTO, "envelope.version is %u (this side speaks %d)", v,
		                 COMM_WIRE_VERSION);
	}
	if (env->body_case == SLUICE__ENVELOPE__BODY__NOT_SET) {
		comm_envelope_free(&env);
		return sl_seterr(SL_EPROTO, "envelope has no body");
	}
	*out = env;
	return SL_OK;
}

void comm_envelope_free(Sluice__Envelope **env)
{
	if (*env != NULL)
		sluice__envelope__free_unpacked(*env, &free_allocator);
	*env = NULL;
}

sl_err comm_encode(const Sluice__Envelope *env, void **buf, size_t *len)
{
	size_t n = sluice__envelope__get_packed_size(env);
	void *b = malloc(n > 0 ? n : 1);
	if (b == NULL)
		return sl_seterr(SL_ENOMEM, "encoding a %s message of %zu bytes",
		                 comm_body_name(env->body_case), n);
	size_t w = sluice__envelope__pack(env, b);
	if (w != n) {
		free(b);
		return sl_seterr(SL_EINTERNAL, "protobuf-c packed %zu bytes, expected %zu", w, n);
	}
	*buf = b;
	*len = n;
	return SL_OK;
}

/* Frees a packed buffer once ZeroMQ is done with it (zero-copy send). */
static void free_packed(void *data, void *hint)
{
	(void)hint;
	free(data);
}

sl_err comm_send(void *sock, const void *rid, size_t rid_len, const Sluice__Envelope *env)
{
	void *buf;
	size_t len;
	sl_err rc = comm_encode(env, &buf, &len);
	if (rc != SL_OK)
		return rc;
	if (rid != NULL) {
		if (zmq_send(sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
			free(buf);
			return COMM_ZMQ_ERR("zmq_send(routing id)");
		}
	}
	zmq_msg_t msg;
	if (zmq_msg_init_data(&msg, buf, len, free_packed, NULL) != 0) {
		free(buf);
		return COMM_ZMQ_ERR("zmq_msg_init_data");
	}
	/* The ROUTER never waits for one peer; a DEALER waits up to its
	 * ZMQ_SNDTIMEO while (re)connecting. */
	if (zmq_msg_send(&msg, sock, rid != NULL ? ZMQ_DONTWAIT : 0) < 0) {
		/* A routing id already went out: ZeroMQ discards the partial
		 * message when the send of its last frame fails. */
		sl_err e = COMM_ZMQ_ERR("zmq_msg_send");
		zmq_msg_close(&msg);
		return e;
	}
	return SL_OK;
}

/* Reads and drops the rest of a multipart message. */
static int drain_more(void *sock)
{
	int more = 0, n = 0;
	size_t sz = sizeof(more);
	while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&m);
			break;
		}
		zmq_msg_close(&m);
		n++;
	}
	return n;
}

sl_err comm_recv(void *sock, uint8_t *rid, size_t *rid_len, zmq_msg_t *payload)
{
	zmq_msg_init(payload);
	if (rid != NULL) {
		int n = zmq_recv(sock, rid, COMM_ID_MAX + 1, ZMQ_DONTWAIT);
		if (n < 0)
			return COMM_ZMQ_ERR("zmq_recv(routing id)");
		*rid_len = (size_t)n > COMM_ID_MAX ? COMM_ID_MAX : (size_t)n;
		int more = 0;
		size_t sz = sizeof(more);
		zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);
		if (!more)
			return sl_seterr(SL_EPROTO, "message without a payload frame");
	}
	if (zmq_msg_recv(payload, sock, ZMQ_DONTWAIT) < 0)
		return COMM_ZMQ_ERR("zmq_msg_recv");
	int extra = drain_more(sock);
	if (extra > 0)
		return sl_seterr(SL_EPROTO,
		                 "message of %d frames (a sluice message is one frame holding a "
		                 "sluice.Envelope)",
		                 extra + 1);
	return SL_OK;
}

/* ---- errors on the wire ---------------------------------------------------- */

void comm_error_fill(comm_arena_t *a, Sluice__Error *e, sl_err code, const char *msg,
                     const char *field)
{
	sluice__error__init(e);
	e->code = (int32_t)code;
	char *s;
	if ((s = comm_arena_strdup(a, sl_errname(code))) != NULL)
		e->code_name = s;
	if (msg != NULL && (s = comm_arena_strdup(a, msg)) != NULL)
		e->message = s;
	if (field != NULL && (s = comm_arena_strdup(a, field)) != NULL)
		e->field = s;
}

sl_err comm_error_raise(const Sluice__Error *e, char *field, size_t field_size)
{
	sl_err code = (e->code > 0 && e->code < SL_ERR_COUNT_) ? (sl_err)e->code : SL_EPROTO;
	char msg[900];
	comm_sanitize(msg, sizeof(msg), e->message ? e->message : "");
	if (field != NULL && field_size > 0)
		comm_sanitize(field, field_size, e->field ? e->field : "");
	if (msg[0] == '\0')
		return sl_seterr(code, "sluiced: %s", sl_strerror(code));
	return sl_seterr(code, "sluiced: %s", msg);
}

/* ---- names ------------------------------------------------------------------ */

int comm_job_name_ok(const char *s)
{
	size_t n = 0;
	for (; s[n] != '\0'; n++) {
		char ch = s[n];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      strchr("._:@+/-", ch) != NULL))
			return 0;
		if (n >= COMM_JOB_MAX)
			return 0;
	}
	return n >= 1;
}

int comm_simple_name_ok(const char *s)
{
	size_t n = 0;
	if (s[0] == '.')
		return 0;
	for (; s[n] != '\0'; n++) {
		char ch = s[n];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '.' || ch == '_' || ch == '-'))
			return 0;
		if (n >= SL_PROFILE_NAME_MAX - 1)
			return 0;
	}
	return n >= 1 && strstr(s, "..") == NULL;
}

void comm_sanitize(char *dst, size_t size, const char *s)
{
	size_t i = 0;
	if (size == 0)
		return;
	for (; s[i] != '\0' && i + 1 < size; i++) {
		unsigned char ch = (unsigned char)s[i];
		dst[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	dst[i] = '\0';
}
