/* sluice: the client library (libsluice). A training job asks sluiced for
 * plans over ZeroMQ; GPU workers register with it, receive work orders (the
 * slice of a plan one rank executes), acknowledge them and report metrics.
 * Endpoints are ipc:// (default) or tcp:// (CURVE-encrypted, keys from
 * `sluice keygen`). Every call returns an sl_err; failures leave a message
 * for the calling thread in sl_errmsg(), and an error reply from the daemon
 * carries the daemon's message and the request field it blames. */
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/err.h"
#include "sluice/plan.h"
#include "sluice/policy.h"
#include "sluice/profile.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The endpoint used when none is given: $SLUICE_ENDPOINT, else the user's
 * own daemon's socket (ipc://$XDG_RUNTIME_DIR/sluiced.sock, else
 * ipc:///tmp/sluiced-<uid>.sock) when that file exists, else the system
 * daemon's ipc:///run/sluice/sluiced.sock when that exists, else the user's
 * path. Writes into buf (NUL-terminated) and returns buf. */
char *sl_default_endpoint(char *buf, size_t size);

/* ---- CURVE keys ---------------------------------------------------------- */

#define SL_KEY_Z85_LEN 40

/* Writes a new CURVE keypair: <base>.key (secret, mode 0600, refuses to
 * overwrite) and <base>.pub ("<public-z85> <name>", one line, suitable for
 * an authorised-keys file). */
sl_err sl_keygen(const char *base);

/* Reads a key file: the first token of the first line that is neither empty
 * nor a '#' comment must be a 40-character Z85 key. When secret is set the
 * file must not be readable by group or others. out gets 41 bytes. */
sl_err sl_key_read(const char *path, int secret, char out[SL_KEY_Z85_LEN + 1]);

/* ---- client -------------------------------------------------------------- */

typedef struct sl_client sl_client_t;

typedef struct sl_client_opts {
	const char *identity;        /* ZeroMQ routing id (NULL: random "c-<pid>-<hex>") */
	const char *server_key;      /* tcp: the daemon's public key, Z85 text or a .pub file */
	const char *secret_key_file; /* tcp: this peer's secret key file (public key derived) */
	int heartbeat_ms;            /* ZMTP heartbeat interval (0: 1000) */
} sl_client_opts_t;

/* One plan request. Borrowed pointers only need to live for the call that
 * takes the request. Zero fields take the daemon's defaults. */
typedef struct sl_plan_req {
	const char *job;              /* required: [A-Za-z0-9._:@+/-]{1,128} */
	uint64_t step;
	const int64_t *lengths;       /* [n] tokens per sequence */
	const int64_t *ids;           /* [n] caller ids, or NULL for 0..n-1 */
	int64_t n;
	const char *policy;           /* NULL: the daemon's default */
	const char *profile;          /* preset name (NULL: the daemon's default) */
	const sl_profile_t *inline_profile; /* overrides profile when set */
	int32_t ranks, ranks_per_node;
	uint32_t deadline_ms;         /* planning deadline (0: the daemon's default) */
	sl_policy_opts_t opts;        /* its deadline_ms and cancel stay here: the
	                                 request's deadline is deadline_ms above */
	int no_dispatch;              /* do not push work orders to the job's workers */
	uint32_t debug_delay_ms;      /* tests only: the planner thread stalls this long first
	                                 (sluiced must run with debug_plan_delay yes) */
} sl_plan_req_t;

/* Connects (lazily, as ZeroMQ does) to endpoint (NULL: the default). opts
 * may be NULL. *out is owned by the caller; free with sl_client_free. A
 * client is used by one thread at a time. */
sl_err sl_client_new(const char *endpoint, const sl_client_opts_t *opts, sl_client_t **out);
/* Closes the connection (pending requests are dropped) and nulls *c. */
void sl_client_free(sl_client_t **c);

/* Sends a request without waiting; *request_id (may be NULL) gets the id the
 * reply will carry. Waits at most 1 s for a connection to queue on, then
 * fails with SL_EBUSY (queue full or no connection). */
sl_err sl_client_send(sl_client_t *c, const sl_plan_req_t *req, uint64_t *request_id);
/* Waits up to timeout_ms (-1: forever, 0: just check) for a reply; SL_OK
 * when one is ready, SL_ETIMEOUT otherwise. */
sl_err sl_client_poll(sl_client_t *c, int timeout_ms);
/* Receives the next reply (waiting as sl_client_poll). On a plan, *out is a
 * new plan owned by the caller; on an error reply, returns the daemon's code
 * with its message in sl_errmsg() and sl_client_error_field(). *request_id
 * (may be NULL) gets the reply's id either way. */
sl_err sl_client_recv(sl_client_t *c, int timeout_ms, uint64_t *request_id, sl_plan_t **out);
/* Sends a request and waits for its own reply (replies to earlier requests
 * are kept for sl_client_recv). SL_ETIMEOUT when none came in time. */
sl_err sl_client_plan(sl_client_t *c, const sl_plan_req_t *req, int timeout_ms, sl_plan_t **out);
/* As sl_client_plan, but the plan comes back as plan-format JSON text
 * (malloc'd, caller frees with sl_free). For bindings such as Python. */
sl_err sl_client_plan_json(sl_client_t *c, const sl_plan_req_t *req, int timeout_ms, char **json);

/* The request field the daemon blamed in the last error reply ("" if none).
 * Valid until the next call on c. */
const char *sl_client_error_field(const sl_client_t *c);
/* The step of the last plan received (0 before any). */
uint64_t sl_client_last_step(const sl_client_t *c);
/* For the last plan received: how many work orders the daemon handed to
 * the job's workers, and the registered ranks that got none (a dead
 * worker); *n gets their count. Valid until the next call on c. */
int32_t sl_client_last_dispatched(const sl_client_t *c);
const int32_t *sl_client_last_lost(const sl_client_t *c, int32_t *n);

/* Asks for the daemon's status (job "" or NULL: all jobs; max_steps 0: all
 * kept) and returns it as JSON text (malloc'd, free with sl_free). */
sl_err sl_client_status_json(sl_client_t *c, const char *job, uint32_t max_steps, int timeout_ms,
                             char **json);

/* An unsolicited event the daemon sent about a job: a worker lost, a rank
 * registered (again), or a rank failed executing a step it had accepted. */
typedef enum sl_event_kind {
	SL_EVENT_NONE = 0,
	SL_EVENT_WORKER_LOST = 1,
	SL_EVENT_WORKER_JOINED = 2,
	SL_EVENT_STEP_FAILED = 3
} sl_event_kind;
typedef struct sl_event {
	sl_event_kind kind;
	char job[129];
	int32_t rank;
	char message[256];
	uint64_t step; /* SL_EVENT_STEP_FAILED: the step that failed */
} sl_event_t;

/* Pops the oldest event received so far (events arrive while waiting for
 * replies); returns 1 with *ev filled, 0 when none is queued. Does not wait;
 * call sl_client_poll(c, 0) first to read what has arrived. */
int sl_client_next_event(sl_client_t *c, sl_event_t *ev);

/* Frees memory this library returned (JSON text). */
void sl_free(void *p);

/* ---- work orders ---------------------------------------------------------- */

/* sl_shard_t, one sequence's piece on one rank: sluice/plan.h. */

/* One group execution of the rank, in slot order. */
typedef struct sl_order_group {
	int32_t slot, group; /* slot index, group index within the slot */
	int32_t nranks;
	int32_t *ranks; /* [nranks] ring order */
	int32_t position, prev_rank, next_rank;
	int32_t nshards;
	sl_shard_t *shards;
	double predicted_ms;
} sl_order_group_t;

typedef struct sl_work_order {
	char job[129];
	uint64_t step;
	int32_t rank, ranks, nslots;
	int32_t ngroups;
	sl_order_group_t *groups;
	double predicted_step_ms;
	char policy[32];
	char profile[SL_PROFILE_NAME_MAX];
} sl_work_order_t;

/* The slice of plan that rank executes (ranks outside every group get an
 * order with no groups). cost (may be NULL) fills predicted times. */
sl_err sl_work_order_from_plan(const sl_plan_t *plan, const sl_cost_t *cost, int32_t rank,
                               const char *job, uint64_t step, sl_work_order_t **out);
void sl_work_order_free(sl_work_order_t **o);

/* ---- worker -------------------------------------------------------------- */

typedef struct sl_worker sl_worker_t;

/* Per-slot measurements a worker reports after a step. */
typedef struct sl_slot_metrics {
	int32_t slot;
	double compute_ms, comm_ms;
	uint64_t bytes_sent, bytes_recv;
} sl_slot_metrics_t;

/* Registers rank of job with the daemon and waits up to timeout_ms for its
 * welcome (SL_ETIMEOUT when none, the daemon's error when refused). */
sl_err sl_worker_new(const char *endpoint, const sl_client_opts_t *opts, const char *job,
                     int32_t rank, int timeout_ms, sl_worker_t **out);
void sl_worker_free(sl_worker_t **w);
/* Waits up to timeout_ms (-1: forever) for the next work order; answers the
 * daemon's heartbeats and re-registers after a daemon restart meanwhile.
 * *out is owned by the caller. SL_ETIMEOUT when none came. */
sl_err sl_worker_recv(sl_worker_t *w, int timeout_ms, sl_work_order_t **out);
/* Acknowledges an order: status SL_OK accepts it, anything else rejects it
 * with message (may be NULL). */
sl_err sl_worker_ack(sl_worker_t *w, const sl_work_order_t *o, sl_err status, const char *message);
/* Reports that an order acknowledged with SL_OK could not be executed
 * (status != SL_OK, message may be NULL): sent instead of the step's
 * metrics; sluiced records the rank's step as failed and tells the job's
 * client and other workers (SL_EVENT_STEP_FAILED). */
sl_err sl_worker_step_failed(sl_worker_t *w, uint64_t step, sl_err status, const char *message);
/* Reports a step's measurements (slots[0..n)) and its wall time. Times
 * must be finite and >= 0 (else SL_ERANGE naming the field, nothing sent).
 * sluiced takes one report (metrics or step_failed) per order it sent this
 * rank; a refused report is logged by the worker, not returned by a later
 * sl_worker_recv. */
sl_err sl_worker_metrics(sl_worker_t *w, uint64_t step, double step_ms,
                         const sl_slot_metrics_t *slots, int32_t n);
/* Pops the oldest job event (as sl_client_next_event). */
int sl_worker_next_event(sl_worker_t *w, sl_event_t *ev);

#ifdef __cplusplus
}
#endif
#endif
