/* sluiced: the internal header of the daemon (configuration table, planner
 * pool, job registry, server loop, systemd notification). */
#ifndef SLUICE_DAEMON_H
#define SLUICE_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "comm.h"
#include "sluice/sluice.h"

/* ---- configuration (config.c) ------------------------------------------------ */

#define DAEMON_STR_MAX 512

typedef struct daemon_config {
	char endpoint[DAEMON_STR_MAX];
	int64_t threads;
	int64_t queue_max;
	int64_t max_request_bytes;
	int64_t max_seqs;
	int64_t max_jobs;
	int64_t max_workers;
	int64_t history;
	char policy[COMM_POLICY_MAX + 1];
	char profile[DAEMON_STR_MAX];
	char profile_dir[DAEMON_STR_MAX];
	int64_t ranks;
	int64_t ranks_per_node;
	int64_t deadline_ms;
	int64_t max_deadline_ms;
	int64_t heartbeat_ms;
	int64_t hwm;
	int64_t drain_timeout_ms;
	int64_t debug_plan_delay;
	char curve_secret_key[DAEMON_STR_MAX];
	char authorized_keys[DAEMON_STR_MAX];
	int64_t allow_plain_tcp;
	char socket_group[64];
	char socket_mode[8];
	char record[DAEMON_STR_MAX];
	char metrics[DAEMON_STR_MAX];
	char log_level[16];
	/* derived by daemon_config_finish */
	sl_profile_t default_profile;
} daemon_config_t;

typedef enum daemon_opt_type {
	DCONF_STRING,
	DCONF_INT,   /* integer within [min, max] */
	DCONF_BYTES, /* integer with an optional k/m/g suffix (powers of 1024) */
	DCONF_BOOL,  /* yes|no|true|false|on|off|1|0 */
} daemon_opt_type;

/* One configuration option: the config file, the command line and --help
 * all read this table (after Redis's static_configs[] in config.c). */
typedef struct daemon_opt {
	const char *name;
	daemon_opt_type type;
	size_t off;  /* offsetof(daemon_config_t, field) */
	size_t size; /* DCONF_STRING: buffer size */
	const char *def;
	int64_t min, max;
	/* Extra validation of a value (NULL: none); the message names the option. */
	sl_err (*check)(const char *name, const char *value);
	int reload; /* takes effect on SIGHUP (otherwise needs a restart) */
	const char *help;
} daemon_opt_t;

extern const daemon_opt_t daemon_opts[];
extern const size_t daemon_nopts;

/* Finds an option by name ('-' and '_' are the same); NULL when unknown. */
const daemon_opt_t *daemon_opt_find(const char *name);
/* Fills every option's default. */
void daemon_config_defaults(daemon_config_t *c);
/* Sets one option from text; what names the source ("sluiced.conf:12",
 * "--threads") in the error message. */
sl_err daemon_config_set(daemon_config_t *c, const char *name, const char *value,
                         const char *what);
/* Parses config file text ("name value" or "name = value" per line, '#'
 * comments, values may be "quoted"). Errors name what:line. */
sl_err daemon_config_parse_text(daemon_config_t *c, const char *text, size_t len,
                                const char *what);
sl_err daemon_config_load_file(daemon_config_t *c, const char *path);
/* Cross-option checks and derived values (the default profile). */
sl_err daemon_config_finish(daemon_config_t *c);
/* socket_group as a gid: -1 when empty, -2 when no such group. */
long daemon_group_id(const char *v);
/* socket_mode as a mode (0600 or 0660), 0 when invalid. */
unsigned daemon_socket_mode(const char *v);
/* Formats an option's current value into buf. */
void daemon_config_format(const daemon_config_t *c, const daemon_opt_t *o, char *buf,
                          size_t size);
/* Prints --help (usage and every option with its default) to f. */
void daemon_config_help(FILE *f);

/* Command-line parse result. */
typedef struct daemon_args {
	const char *config_file; /* NULL: none */
	int help, version, check;
	int noverrides;
	const char **override_names; /* [noverrides], borrowed from argv */
	const char **override_values;
} daemon_args_t;

/* Parses argv; returns SL_EINVAL with a message for a bad flag. */
sl_err daemon_args_parse(int argc, char **argv, daemon_args_t *a);
void daemon_args_fini(daemon_args_t *a);
/* Builds a config: defaults, then the file, then the overrides, then
 * daemon_config_finish. */
sl_err daemon_config_build(const daemon_args_t *a, daemon_config_t *c);

/* ---- systemd notification (notify.c) ------------------------------------------- */

/* Sends state ("READY=1", ...) to $NOTIFY_SOCKET (a path or an abstract
 * '@' name) as one datagram, without libsystemd. Does nothing when the
 * variable is unset; SL_EIO when sending fails. */
sl_err daemon_notify(const char *state);

/* ---- planner pool (pool.c) ----------------------------------------------------- */

/* A plan request in flight. The main thread owns it except while a planner
 * thread works on it (between daemon_pool_push and its return through the
 * done list). */
typedef struct daemon_task {
	struct daemon_task *next;     /* queue / done list link */
	struct daemon_task *in_next;  /* main thread's in-flight list */
	uint8_t rid[COMM_ID_MAX + 1]; /* client routing id */
	size_t rid_len;
	uint64_t request_id;
	comm_request_t req;
	int64_t received_ms, deadline_ms; /* monotonic */
	int64_t plan_deadline_ms;         /* planning stops here (before deadline_ms) */
	sl_cancel_t cancelled;            /* answered already, or shutting down: stop */
	int answered;
	/* inputs resolved by the main thread from the config snapshot */
	char policy[COMM_POLICY_MAX + 1];
	char profile_name[SL_PROFILE_NAME_MAX]; /* "": use profile as is */
	char profile_dir[DAEMON_STR_MAX];
	sl_profile_t profile; /* inline or the daemon's default */
	sl_cluster_t cluster;
	/* results, written by the planner thread */
	sl_err rc;
	char msg[1024];
	char field[128];
	sl_plan_t *plan;
	sl_cost_t cost;
	int cost_ok;
	double plan_wall_ms;
} daemon_task_t;

typedef struct daemon_pool daemon_pool_t;

/* Starts n planner threads. The eventfd (*done_fd) becomes readable when
 * finished tasks are waiting in the done list. */
sl_err daemon_pool_start(int n, daemon_pool_t **out, int *done_fd);
/* Queues a task (ownership passes to the pool until it comes back). */
void daemon_pool_push(daemon_pool_t *p, daemon_task_t *t);
/* Takes every finished task (a list linked by next), clearing the eventfd. */
daemon_task_t *daemon_pool_take_done(daemon_pool_t *p);
/* Tasks waiting and tasks being planned right now. */
void daemon_pool_counts(daemon_pool_t *p, uint32_t *queued, uint32_t *planning);
/* Stops the threads after their current task and frees the pool. Tasks
 * still queued or done are left alone: the caller owns them through its
 * in-flight list. */
void daemon_pool_stop(daemon_pool_t **p);
/* Frees a task and everything it holds. */
void daemon_task_free(daemon_task_t **t);

/* ---- Prometheus metrics (metrics.c, docs/metrics.md) ------------------------------- */

typedef enum daemon_msg_kind {
	DAEMON_MSG_PLAN = 0,
	DAEMON_MSG_STATUS,
	DAEMON_MSG_HELLO,
	DAEMON_MSG_ACK,
	DAEMON_MSG_METRICS,
	DAEMON_MSG_STEP_FAILED,
	DAEMON_MSG_PONG,
	DAEMON_MSG_OTHER,
	DAEMON_MSG_COUNT_
} daemon_msg_kind;

typedef enum daemon_reply_kind {
	DAEMON_REPLY_PLAN = 0,
	DAEMON_REPLY_ERROR,
	DAEMON_REPLY_STATUS,
	DAEMON_REPLY_ORDER,
	DAEMON_REPLY_EVENT,
	DAEMON_REPLY_COUNT_
} daemon_reply_kind;

typedef enum daemon_outcome_kind {
	DAEMON_OUTCOME_ACCEPTED = 0,
	DAEMON_OUTCOME_REJECTED,
	DAEMON_OUTCOME_COMPLETED,
	DAEMON_OUTCOME_FAILED,
	DAEMON_OUTCOME_COUNT_
} daemon_outcome_kind;

typedef struct daemon_metrics daemon_metrics_t;

/* Serves GET /metrics on hostport (HOST:PORT, port 0: any free one, written
 * to *port) from libmicrohttpd's own thread; pool (may be NULL) is read for
 * queue depth and busy threads. *out is freed by daemon_metrics_stop. */
sl_err daemon_metrics_start(const char *hostport, daemon_pool_t *pool, int threads,
                            daemon_metrics_t **out, int *port);
/* Stops serving, frees everything and nulls *m. */
void daemon_metrics_stop(daemon_metrics_t **m);
/* The exposition text as a scrape gets it (malloc'd; NULL on ENOMEM). */
char *daemon_metrics_text(daemon_metrics_t *m, size_t *len);
/* Recording, from the server loop; every call accepts m == NULL (metrics
 * off) and does nothing then. */
void daemon_metrics_request(daemon_metrics_t *m, daemon_msg_kind k);
void daemon_metrics_reply(daemon_metrics_t *m, daemon_reply_kind k, sl_err code);
void daemon_metrics_undeliverable(daemon_metrics_t *m);
void daemon_metrics_plan_time(daemon_metrics_t *m, double seconds);
void daemon_metrics_job_step(daemon_metrics_t *m, const char *job, double predicted_ms);
void daemon_metrics_job_workers(daemon_metrics_t *m, const char *job, int64_t connected);
void daemon_metrics_job_outcome(daemon_metrics_t *m, const char *job, daemon_outcome_kind k);
void daemon_metrics_job_forget(daemon_metrics_t *m, const char *job);

/* ---- the server's state (server.c: the loop, replies, dispatch of messages;
 * registry.c: jobs, workers, history; requests.c: plan requests, work orders,
 * deadlines; workers.c: worker registration and reports; status.c: the status
 * JSON; record.c: the request trace). One thread owns all of it. ------------------ */

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
	const char *drain_signal;   /* "SIGTERM"/"SIGINT": what started the drain */
	const char *abandon_signal; /* a second one during the drain: stop at once */
} server_t;

/* (Re)opens cfg.record for appending (closing the old file); a failure is
 * logged and recording stays off. */
void daemon_record_open(server_t *s);

/* Appends a request's lengths as a text trace block that `sluice replay`
 * reads back ('#' lines are comments there). */
void daemon_record_request(server_t *s, const comm_request_t *r);

/* Tells a job's live workers (but rank's own) and its last client about a
 * change; step is set for EVENT_STEP_FAILED. */
void daemon_job_event(server_t *s, d_job_t *j, Sluice__EventKind kind, int32_t rank,
                      uint64_t step, const char *msg);

/* The job of that name, or NULL. */
d_job_t *daemon_job_find(server_t *s, const char *name);

/* The newest history entry of that step, or NULL. */
d_step_t *daemon_job_find_step(d_job_t *j, uint64_t step);

/* Frees a job with its workers and history and nulls *jp. */
void daemon_job_free(d_job_t **jp);

/* Finds or creates a job; beyond max_jobs the least recently active job
 * without live workers is forgotten. NULL (with a message) when none can be. */
d_job_t *daemon_job_get(server_t *s, const char *name);

/* Publishes the job's count of live workers to the metrics. */
void daemon_job_metrics_workers(server_t *s, const d_job_t *j);

/* A fresh history entry (the oldest is overwritten when full). */
d_step_t *daemon_job_push_step(d_job_t *j, uint64_t step);

/* The job's worker entry for rank, or NULL. */
d_worker_t *daemon_job_worker(d_job_t *j, int32_t rank);

/* 1 when w is registered with this routing id. */
int daemon_rid_eq(const d_worker_t *w, const uint8_t *rid, size_t len);

/* Frees what a history entry holds and zeroes it. */
void daemon_step_clear(d_step_t *st);

/* Finds the live worker registered with this routing id. */
d_worker_t *daemon_worker_by_rid(server_t *s, const uint8_t *rid, size_t len, d_job_t **job);

/* Marks w lost (why is logged and told to the job's peers as
 * EVENT_WORKER_LOST). */
void daemon_worker_lost(server_t *s, d_job_t *j, d_worker_t *w, const char *why);

/* Answers every request whose deadline passed; the planner's late result
 * is dropped when it comes back. Returns ms until the next deadline. */
int64_t daemon_check_deadlines(server_t *s, int64_t now);

/* Checks a plan request and queues it for the pool, or answers it at once
 * with an error naming the field. */
void daemon_on_plan_request(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                            const Sluice__PlanRequest *m);

/* Answers a task the pool finished (its plan, dispatched to the job's
 * workers, or its error) unless it was answered already; frees it. */
void daemon_on_task_done(server_t *s, daemon_task_t *t);

/* Sends one error reply (code, blamed field, printf-style message). */
void daemon_reply_error(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t request_id,
                        sl_err code, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

/* Sends env to a peer; a gone peer or a full queue counts as undeliverable
 * (the daemon never blocks on one slow or dead peer). */
sl_err daemon_send(server_t *s, const uint8_t *rid, size_t rid_len, Sluice__Envelope *env,
                   uint64_t request_id);

/* Answers a status request with the status JSON (one job or all). */
void daemon_on_status(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                      const Sluice__StatusRequest *m);

/* Pings every live worker; a ping that cannot be routed means its
 * connection is gone (ROUTER_MANDATORY), so the worker is lost. */
void daemon_heartbeat_workers(server_t *s);

/* A worker's accept/reject of its order of a step (taken once). */
void daemon_on_ack(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                   const Sluice__WorkAck *m);

/* Registers (or re-registers) a worker as rank of a job and replies. */
void daemon_on_hello(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                     const Sluice__WorkerHello *h);

/* A worker's measured times for a step it ran (checked, taken once). */
void daemon_on_metrics(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                       const Sluice__WorkerMetrics *m);

/* An accepted order that failed: recorded in the step's outcomes, logged,
 * and told to the job's client and other workers (EVENT_STEP_FAILED). */
void daemon_on_step_failed(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t id,
                           const Sluice__StepFailed *m);

/* Records that rank was sent its order of st (with the order's group and
 * slot counts), so that its reports on that step are taken. */
void daemon_step_ordered(server_t *s, d_step_t *st, int32_t rank, int32_t ngroups,
                         int32_t nslots);

/* ---- the server (server.c) -------------------------------------------------------- */

/* Runs sluiced until SIGTERM/SIGINT has drained the queue (or the drain cap
 * or a second SIGTERM/SIGINT cut the drain short). args are kept for SIGHUP
 * reloads. Returns the process exit status. */
int daemon_run(const daemon_args_t *args, daemon_config_t *cfg);

#endif
