/* sluice comm: the internal header of the transport layer (ZeroMQ sockets,
 * CURVE keys, the ZAP handler, protobuf framing and the conversions between
 * wire messages and sluice's C structs). Used by libsluice, sluiced, the
 * tests and the fuzz targets. */
#ifndef SLUICE_COMM_H
#define SLUICE_COMM_H

#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

#include "sluice/client.h"
#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/plan.h"
#include "sluice/policy.h"
#include "sluice/profile.h"
#include "sluice/sluice.pb-c.h"

#define COMM_WIRE_VERSION 1
#define COMM_JOB_MAX 128
#define COMM_POLICY_MAX 31
#define COMM_ID_MAX 255 /* ZeroMQ routing ids are 1..255 bytes */
#define COMM_ZAP_DOMAIN "sluice"
#define COMM_ZAP_ENDPOINT "inproc://zeromq.zap.01"
/* Memory the decoder may use per wire byte (plus a fixed slack): a bound on
 * what a hostile message can make us allocate (see comm_decode). */
#define COMM_DECODE_FACTOR 10
#define COMM_DECODE_SLACK ((size_t)1 << 20)

/* Translates a failed ZeroMQ call at the boundary: records file:line, the
 * call and zmq_strerror, and yields SL_ECOMM (or SL_ECLOSED / SL_EBUSY for
 * EHOSTUNREACH / EAGAIN, which callers handle). */
sl_err comm_zmq_err_(const char *file, int line, const char *what);
#define COMM_ZMQ_ERR(what) comm_zmq_err_(__FILE__, __LINE__, (what))
#define COMM_ZCHECK_GOTO(call, rcvar, label)                                                       \
	do {                                                                                       \
		if ((call) != 0) {                                                                 \
			(rcvar) = COMM_ZMQ_ERR(#call);                                             \
			goto label;                                                                \
		}                                                                                  \
	} while (0)

/* Milliseconds on the monotonic clock. */
int64_t comm_now_ms(void);

/* ---- arena: one malloc'd block list for building outgoing messages ------ */

typedef struct comm_arena_blk comm_arena_blk_t;
typedef struct comm_arena {
	comm_arena_blk_t *head;
	size_t used; /* bytes handed out */
	int failed;  /* an allocation failed */
} comm_arena_t;

/* Zeroed memory from the arena, aligned for any type; NULL on ENOMEM (and
 * the arena remembers the failure). Lives until comm_arena_free. */
void *comm_arena_alloc(comm_arena_t *a, size_t size);
char *comm_arena_strdup(comm_arena_t *a, const char *s);
void comm_arena_free(comm_arena_t *a);

/* ---- framing -------------------------------------------------------------- */

/* Decodes one frame into a new envelope. Allocation is bounded by
 * COMM_DECODE_FACTOR * len + COMM_DECODE_SLACK; garbage, truncation, a wrong
 * version or no body fail with SL_EPROTO naming what was wrong. Free with
 * comm_envelope_free. */
sl_err comm_decode(const void *data, size_t len, Sluice__Envelope **out);
void comm_envelope_free(Sluice__Envelope **env);
/* The oneof body's name ("plan_request"), for messages. */
const char *comm_body_name(int body_case);

/* Packs env into a new malloc'd buffer (*buf, *len); caller frees. */
sl_err comm_encode(const Sluice__Envelope *env, void **buf, size_t *len);

/* Sends env as one frame on a DEALER (rid == NULL) or, prefixed by the
 * routing id, on a ROUTER. On a ROUTER it never blocks: a full queue gives
 * SL_EBUSY, an unknown or gone peer (ROUTER_MANDATORY) SL_ECLOSED. On a
 * DEALER it waits up to the socket's ZMQ_SNDTIMEO (SL_EBUSY after). */
sl_err comm_send(void *sock, const void *rid, size_t rid_len, const Sluice__Envelope *env);

/* Receives one message (does not wait: call after zmq_poll said POLLIN).
 * On a ROUTER the routing id goes into rid and *rid_len (rid holds
 * COMM_ID_MAX + 1 bytes); on a DEALER pass rid NULL. The payload frame is
 * returned in *payload (initialised here; close it with zmq_msg_close).
 * Extra frames are drained and reported as SL_EPROTO. SL_EBUSY: nothing
 * to read. */
sl_err comm_recv(void *sock, uint8_t *rid, size_t *rid_len, zmq_msg_t *payload);

/* Fills an Error message (strings copied into the arena). */
void comm_error_fill(comm_arena_t *a, Sluice__Error *e, sl_err code, const char *msg,
                     const char *field);
/* Records an Error message as this thread's error and returns its code
 * (SL_EPROTO when the code is not a valid sl_err). field (may be NULL) gets
 * a copy of the blamed field. */
sl_err comm_error_raise(const Sluice__Error *e, char *field, size_t field_size);

/* ---- names and checks ------------------------------------------------------ */

/* Whether s is a valid job name ([A-Za-z0-9._:@+/-]{1,128}). */
int comm_job_name_ok(const char *s);
/* Whether s is a safe profile or policy name ([A-Za-z0-9._-]{1,63}, no "..",
 * not starting with '.'), so it can name a file in a directory. */
int comm_simple_name_ok(const char *s);
/* Copies s into dst (size bytes) replacing bytes outside printable ASCII by
 * '?', for log lines and messages about untrusted input. */
void comm_sanitize(char *dst, size_t size, const char *s);

/* ---- conversions ----------------------------------------------------------- */

/* A plan request as the daemon works on it (owns seqs). */
typedef struct comm_request {
	char job[COMM_JOB_MAX + 1];
	uint64_t step;
	sl_seq_t *seqs;
	int64_t n;
	char policy[COMM_POLICY_MAX + 1]; /* "" : daemon default */
	char profile_name[SL_PROFILE_NAME_MAX]; /* "" : daemon default or inline */
	int has_inline_profile;
	sl_profile_t profile; /* when has_inline_profile */
	int32_t ranks, ranks_per_node; /* 0: daemon default */
	uint32_t deadline_ms;          /* 0: daemon default */
	sl_policy_opts_t opts;
	int no_dispatch;
	uint32_t debug_delay_ms; /* PlanOptions.debug_delay_ms (tests only) */
} comm_request_t;

typedef struct comm_limits {
	int64_t max_seqs;
} comm_limits_t;

/* Checks and copies a decoded request. On failure returns the error (message
 * names the value and the limit) and writes the blamed field into field. */
sl_err comm_request_from_proto(const Sluice__PlanRequest *m, const comm_limits_t *lim,
                               comm_request_t *out, char *field, size_t field_size);
void comm_request_fini(comm_request_t *r);
/* Builds the wire form of a client's request (memory from the arena). */
sl_err comm_request_to_proto(const sl_plan_req_t *r, comm_arena_t *a, Sluice__PlanRequest *m);

/* Profile <-> wire. from_proto also runs sl_profile_check. */
sl_err comm_profile_to_proto(const sl_profile_t *p, comm_arena_t *a, Sluice__Profile *m);
sl_err comm_profile_from_proto(const Sluice__Profile *m, sl_profile_t *p, char *field,
                               size_t field_size);

/* Plan <-> wire. to_proto borrows the plan's arrays where it can (the plan
 * must outlive m) and takes the rest from the arena. from_proto checks the
 * structure (indexes, ranks, counts) and returns a new plan. */
sl_err comm_plan_to_proto(const sl_plan_t *p, comm_arena_t *a, Sluice__Plan *m);
sl_err comm_plan_from_proto(const Sluice__Plan *m, sl_plan_t **out);

/* Work order <-> wire (same ownership rules as the plan). */
sl_err comm_order_to_proto(const sl_work_order_t *o, comm_arena_t *a, Sluice__WorkOrder *m);
sl_err comm_order_from_proto(const Sluice__WorkOrder *m, sl_work_order_t **out);

/* Status reply -> JSON text (malloc'd). */
sl_err comm_status_to_json(const Sluice__StatusReply *m, char **json);

/* ---- keys and the ZAP handler ---------------------------------------------- */

/* Parses key file text (see sl_key_read); what names the source. */
sl_err comm_key_parse(const char *text, size_t len, const char *what,
                      char out[SL_KEY_Z85_LEN + 1]);

/* A set of authorised CURVE public keys (32 bytes each). */
typedef struct comm_keyset {
	uint8_t (*keys)[32];
	size_t n;
} comm_keyset_t;

/* Parses an authorised-keys text: one key per line ("<z85> [comment]"),
 * '#' comments and blank lines skipped. Errors name what:line. */
sl_err comm_keyset_parse(const char *text, size_t len, const char *what, comm_keyset_t *out);
sl_err comm_keyset_load(const char *path, comm_keyset_t *out);
int comm_keyset_has(const comm_keyset_t *s, const uint8_t key[32]);
void comm_keyset_fini(comm_keyset_t *s);

/* The ZAP handler: a thread answering inproc://zeromq.zap.01 in ctx that
 * admits CURVE clients whose key is in the set and refuses everything else.
 * Must be started before the server socket binds. */
typedef struct comm_zap comm_zap_t;
sl_err comm_zap_start(void *ctx, const char *authorized_keys_path, comm_zap_t **out);
/* Re-reads the keys file; on error keeps the old set. */
sl_err comm_zap_reload(comm_zap_t *z, const char *authorized_keys_path);
uint64_t comm_zap_denied(const comm_zap_t *z);
uint64_t comm_zap_allowed(const comm_zap_t *z);
void comm_zap_stop(comm_zap_t **z);

/* ---- sockets --------------------------------------------------------------- */

typedef struct comm_server_opts {
	const char *endpoint;
	const char *secret_key_file; /* tcp: CURVE server secret key (NULL: plain) */
	int allow_plain_tcp;         /* permit tcp without CURVE */
	int sndhwm, rcvhwm;
	int64_t max_msg_bytes; /* hard transport limit (ZMQ_MAXMSGSIZE) */
	int heartbeat_ms;
	int linger_ms;
	unsigned ipc_mode; /* ipc socket file mode: 0600 (0: 0600) or 0660; never "other" bits */
	long ipc_gid;      /* ipc socket file group (-1 or 0 with ipc_mode 0600: unchanged) */
} comm_server_opts_t;

/* The system daemon's socket (deploy/systemd/sluiced.service.in). */
#define COMM_SYSTEM_SOCKET "/run/sluice/sluiced.sock"

/* Where a daemon listens when told nothing: $SLUICE_ENDPOINT, else
 * ipc://$XDG_RUNTIME_DIR/sluiced.sock, else ipc:///tmp/sluiced-<uid>.sock
 * (sl_default_endpoint is the clients' view: it falls back to the system
 * socket when the user runs no daemon of their own). Returns buf. */
char *comm_own_endpoint(char *buf, size_t size);

/* Parses an endpoint: *is_tcp set for tcp://, the ipc path copied to
 * ipc_path (may be NULL) for ipc://. Other transports: SL_EINVAL. */
sl_err comm_endpoint_parse(const char *endpoint, int *is_tcp, char *ipc_path, size_t size);

/* Opens the daemon's ROUTER: ROUTER_MANDATORY, bounded HWMs, finite linger,
 * ZMTP heartbeats, CURVE server + ZAP domain on tcp; an ipc socket file is
 * created owner-only, then given o->ipc_gid and o->ipc_mode (so members of
 * one group may connect) and checked. *bound gets the endpoint actually
 * bound (tcp port 0 -> the ephemeral port), size bytes. */
sl_err comm_server_open(void *ctx, const comm_server_opts_t *o, void **sock, char *bound,
                        size_t size);

/* Opens a DEALER connected to endpoint with a routing id (prefix "c" or "w"
 * plus pid and random bytes when opts->identity is NULL). On tcp, CURVE
 * keys are required unless none are given at all. */
sl_err comm_dealer_open(void *ctx, const char *endpoint, const sl_client_opts_t *opts,
                        const char *prefix, void **sock);

/* ---- the peer core shared by sl_client and sl_worker ------------------------ */

#define COMM_EVENTS_MAX 64
#define COMM_PENDING_MAX 4096

typedef struct comm_pending comm_pending_t;

typedef struct comm_peer {
	void *ctx;
	void *sock;
	uint64_t next_id;
	sl_event_t events[COMM_EVENTS_MAX];
	int ev_head, ev_count;
	comm_pending_t *pending_head, *pending_tail; /* replies not yet taken */
	size_t npending;
	char error_field[256];
	char endpoint[256];
} comm_peer_t;

sl_err comm_peer_open(comm_peer_t *p, const char *endpoint, const sl_client_opts_t *opts,
                      const char *prefix);
void comm_peer_close(comm_peer_t *p);
/* Sends env with a fresh request id (stored into env and *id). */
sl_err comm_peer_send(comm_peer_t *p, Sluice__Envelope *env, uint64_t *id);
/* Reads what has arrived, waiting up to timeout_ms (-1 forever) until a
 * non-event message with request id want (0: any) is pending; SL_ETIMEOUT
 * otherwise. Events are queued on the side. hook (may be NULL) sees every
 * non-event envelope first and returns 1 when it took ownership of it (the
 * worker answers heartbeats this way). */
typedef int (*comm_peer_hook_fn)(comm_peer_t *p, Sluice__Envelope *env, void *arg);
sl_err comm_peer_wait(comm_peer_t *p, int timeout_ms, uint64_t want, comm_peer_hook_fn hook,
                      void *arg);
/* Takes the oldest pending envelope (any id when id == 0, else that id);
 * NULL when none. Caller frees it with comm_envelope_free. */
Sluice__Envelope *comm_peer_take(comm_peer_t *p, uint64_t id);
int comm_peer_next_event(comm_peer_t *p, sl_event_t *ev);

#endif
