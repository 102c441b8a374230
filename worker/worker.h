/* sluice worker: internal header shared by the worker's files (lib sl_worker,
 * the sluice-worker executable, `sluice run-plan`).
 *
 * Pieces: work orders (a rank's part of a plan), deterministic inputs, the
 * ZeroMQ mesh between the ranks of a run, the fp64 reference attention, the
 * CPU backend, the per-rank driver, and the launcher/checker behind
 * `sluice run-plan`. */
#ifndef SLUICE_WORKER_INTERNAL_H
#define SLUICE_WORKER_INTERNAL_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "backend.h"
#include "sluice/clock.h"
#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/plan.h"
#include "sluice/profile.h"
#include "sluice/stats.h"

/* Attention shape of a run (same for every group). */
typedef struct worker_shape {
	int32_t heads;
	int32_t kv_heads;
	int32_t head_dim;
} worker_shape_t;

/* Largest accepted attention shape values; beyond these the options are typos. */
#define WORKER_MAX_HEADS 1024
#define WORKER_MAX_HEAD_DIM 1024

/* Checks a shape: heads, kv_heads, head_dim in range and heads a multiple of
 * kv_heads. Errors name the option and value. */
sl_err worker_shape_check(const worker_shape_t *shape);

/* ------------------------------------------------------------ orders --- */

/* A rank's work orders for one plan: one group execution per slot in which
 * the rank has a group, in slot order. Owns all its arrays. */
typedef struct worker_order {
	int32_t rank;
	int32_t nranks;
	worker_shape_t shape;
	int32_t nwork;
	worker_group_work_t *work;  /* [nwork] */
	worker_seq_shard_t *shards; /* storage behind work[].seqs */
	int32_t *rings;             /* storage behind work[].ring */
} worker_order_t;

/* Derives rank's work orders from a plan (the daemon path calls this with a
 * plan it received). Checks what execution relies on (rank in range, group
 * ranks distinct and in range, a rank in at most one group per slot, sequence
 * indices and lengths valid) and fails with SL_EINVAL/SL_EFORMAT naming the
 * slot, group or sequence otherwise. On success *out is the caller's (free
 * with worker_order_free). A rank with no group gets nwork == 0. */
sl_err worker_order_build(const sl_plan_t *plan, int32_t rank, const worker_shape_t *shape,
                          worker_order_t **out);
void worker_order_free(worker_order_t **order);

/* How a plan is checked before it runs. */
typedef struct worker_plan_rules {
	const char *profile; /* profile (name or JSON file) to check under; NULL: the plan's own */
	int structure_only;  /* only what execution relies on (a launcher checked the rest) */
} worker_plan_rules_t;

/* Converts a work order received from sluiced (client.h) into rank's
 * work descriptors, exactly as worker_order_build derives them from the
 * plan (group is -1: the order numbers groups only within their slot).
 * Checks what execution relies on (rank and ranks, slots increasing, ring
 * ranks distinct and in range with this rank at its position, shard
 * lengths and zigzag sizes, no sequence twice) and fails with SL_EINVAL
 * naming the group and value otherwise. *out is the caller's. */
struct sl_work_order;
sl_err worker_order_from_wire(const struct sl_work_order *wo, const worker_shape_t *shape,
                              worker_order_t **out);

/* Reads a plan file and checks it: structure (worker_order_build's rules for
 * every rank) and, unless rules->structure_only, every rule of
 * sl_plan_validate under the profile (rules->profile, else the plan's own;
 * when the plan's own does not resolve, a warning says only the structure
 * was checked). Violations are listed in the error message, which starts
 * with the path. When cost is non-NULL and a profile resolved, *cost is
 * initialised (caller calls sl_cost_fini) and *have_cost set to 1. rules
 * may be NULL. *out is the caller's. */
sl_err worker_plan_load(const char *path, const worker_plan_rules_t *rules, sl_plan_t **out,
                        sl_cost_t *cost, int *have_cost);
/* The same checks on a plan in memory; `what` names it in messages. */
sl_err worker_plan_check(const sl_plan_t *plan, const char *what, const worker_plan_rules_t *rules,
                         sl_cost_t *cost, int *have_cost);

/* ------------------------------------------------------------ inputs --- */

enum { WORKER_T_Q = 0, WORKER_T_K, WORKER_T_V, WORKER_T_DO };

/* The input value of tensor t (WORKER_T_*) of sequence seq at global position
 * pos, head h, dim e: a hash of (seed, seq, t, pos, h, e) mapped to a multiple
 * of 1/128 in [-1, 1), exact in bf16. Every process computes the same value. */
double worker_input_value(uint64_t seed, int32_t seq, int t, int64_t pos, int32_t h, int32_t e);

/* Fills a group execution's local inputs (layout of backend.h; padding
 * positions get values too). Arrays sized by w->ntok and the shape. */
void worker_inputs_fill(const worker_group_work_t *w, uint64_t seed, double *q, double *k,
                        double *v, double *dout);

/* --------------------------------------------------------- reference --- */

/* Full causal attention of one sequence of s real tokens, fp64, forward and
 * backward: q, dout, out, dq [s][H][D]; k, v, dk, dv [s][KH][D]; lse [s][H].
 * dq, dk, dv may be NULL together (forward only; dout unused). SL_ENOMEM only. */
sl_err worker_ref_attention(int64_t s, const worker_shape_t *shape, const double *q, const double *k,
                          const double *v, const double *dout, double *out, double *lse, double *dq,
                          double *dk, double *dv);

/* Stable merge of a block partial into a running (out, lse) row of D values
 * (backend.h, "Ring, forward"). */
void worker_lse_merge(double *out, double *lse, const double *out_b, double lse_b, int32_t dim);

/* -------------------------------------------------------------- mesh --- */

/* The ZeroMQ mesh of one run: every rank binds a PULL socket at
 * ipc://RUN_DIR/w<rank>.ipc and connects PUSH sockets to the peers it sends
 * to. Messages carry a tag; a receive waits for one (src, tag) and keeps
 * others for later, so ranks in different slots never confuse messages. */
typedef struct worker_mesh worker_mesh_t;

typedef struct worker_tag {
	int32_t kind; /* WORKER_MSG_* */
	int32_t slot;
	int32_t hop;
	int32_t seq; /* bootstrap call counter */
} worker_tag_t;

enum {
	WORKER_MSG_BOOT_GATHER = 1,
	WORKER_MSG_BOOT_BCAST,
	WORKER_MSG_KV_FWD,
	WORKER_MSG_KV_BWD,
	WORKER_MSG_DKV_BWD
};

/* Binds this rank's socket. timeout_ms bounds every wait for a message. On
 * success *out is the caller's (worker_mesh_free). */
sl_err worker_mesh_new(const char *run_dir, int32_t rank, int32_t nranks, int timeout_ms,
                       worker_mesh_t **out);
/* Closes the sockets, waiting up to the timeout for sent messages to leave. */
void worker_mesh_free(worker_mesh_t **mesh);
/* After a failure: queued messages are dropped at close instead of waiting
 * for peers that may be gone. */
void worker_mesh_abandon(worker_mesh_t *m);
/* Queues len bytes for dst (copied; returns before delivery). */
sl_err worker_mesh_send(worker_mesh_t *m, int32_t dst, const worker_tag_t *tag, const void *buf,
                        size_t len);
/* Waits for the message (src, tag) and copies it into buf, which must be
 * exactly len bytes long (else SL_EPROTO). SL_ETIMEOUT after the timeout. */
sl_err worker_mesh_recv(worker_mesh_t *m, int32_t src, const worker_tag_t *tag, void *buf,
                        size_t len);
/* Messages from now on belong to epoch (a worker serving sluiced uses the
 * step): receives match only this epoch's messages, drop older ones (also
 * those already kept) and keep newer ones; collective counters restart.
 * A new mesh is at epoch 0. */
void worker_mesh_set_epoch(worker_mesh_t *m, int64_t epoch);
/* While *stop is non-zero every wait returns SL_ECLOSED within 100 ms
 * (a signal handler sets it). stop may be NULL (the default: never). */
void worker_mesh_set_stop(worker_mesh_t *m, const volatile sig_atomic_t *stop);
/* How long closing waits for queued messages to leave (default: the
 * timeout; worker_mesh_abandon sets 0). */
void worker_mesh_set_linger(worker_mesh_t *m, int linger_ms);
/* worker_boot_t's functions over the mesh (ctx is the worker_mesh_t). */
sl_err worker_mesh_bcast(void *ctx, int32_t root, void *buf, size_t len);
sl_err worker_mesh_barrier(void *ctx);
/* Longest run directory path an ipc endpoint allows. */
#define WORKER_RUN_DIR_MAX 80

/* ------------------------------------------------------------ backend --- */

/* The fp64 CPU backend. cfg->boot.ctx must be the run's worker_mesh_t. */
extern const worker_backend_ops_t worker_cpu_backend_ops;

/* ------------------------------------------------------------- driver --- */

/* Statistics of one group execution on one rank (medians over iterations). */
typedef struct worker_slot_report {
	int32_t slot;
	int64_t group;
	int32_t d;
	int64_t ntok;
	worker_pass_stats_t fwd, bwd;
} worker_slot_report_t;

typedef struct worker_run_opts {
	int32_t rank;
	int32_t local_rank, local_size; /* -1: rank and nranks */
	const char *run_dir;
	worker_shape_t shape;
	uint64_t seed;
	int iters;            /* timed forward+backward repetitions (>= 1) */
	int warmup;           /* untimed repetitions before them */
	int timeout_ms;       /* bound on each wait for a peer */
	const char *dump_path;   /* write outputs here for the checker (NULL: don't) */
	const char *report_path; /* write the per-slot stats JSON here (NULL: don't) */
} worker_run_opts_t;

/* Runs one rank of a plan with a backend: a session (mesh, barrier, init),
 * every work order (worker_session_exec), dump and report, final barrier.
 * Returns the first error (message names rank and slot). */
sl_err worker_run(const sl_plan_t *plan, const char *plan_name, const worker_backend_ops_t *ops,
                  const worker_run_opts_t *opts);

/* What a rank holds while it executes orders: its mesh socket and the
 * initialised backend. `--plan` runs use one for their plan; a worker
 * serving sluiced keeps one from step to step. */
typedef struct worker_session worker_session_t;

/* Binds the mesh for rank opts->rank of nranks, waits for every rank when
 * barrier is set, and initialises the backend (collective for backends that
 * bootstrap over the mesh, e.g. cuda). stop (may be NULL) makes waits give
 * up (see worker_mesh_set_stop). opts is copied; its strings are borrowed
 * for the session's life. *out is the caller's (worker_session_close). */
sl_err worker_session_open(const worker_backend_ops_t *ops, const worker_run_opts_t *opts,
                           int32_t nranks, const volatile sig_atomic_t *stop, int barrier,
                           worker_session_t **out);
int32_t worker_session_nranks(const worker_session_t *s);
/* Sets how long closing waits for messages still queued to peers. */
void worker_session_linger(worker_session_t *s, int linger_ms);
/* Releases the backend and the mesh; abandon drops queued messages at once
 * (after a failure: peers may be gone). Nulls *s. */
void worker_session_close(worker_session_t **s, int abandon);

/* What worker_session_exec measured and produced, per work of the order. */
typedef struct worker_exec {
	int32_t nwork;
	worker_outputs_t *outs;    /* [nwork] when outputs were kept, else NULL */
	worker_slot_report_t *rep; /* [nwork] */
	double wall_ms;            /* the whole order, first begin to last end */
} worker_exec_t;
void worker_exec_fini(worker_exec_t *ex);

/* Runs every work of order (the session's rank and nranks) in slot order:
 * inputs from opts.seed, begin, warmup + iters x (forward, backward), end.
 * Messages are tagged with epoch (worker_mesh_set_epoch). With keep_outputs
 * the outputs are downloaded into ex->outs (for worker_dump_write). On
 * success *ex is the caller's (worker_exec_fini); on error it is empty and
 * the message names rank and slot. */
sl_err worker_session_exec(worker_session_t *s, const worker_order_t *order, int64_t epoch,
                           int keep_outputs, worker_exec_t *ex);

/* ------------------------------------------------------- dump files --- */

#define WORKER_DUMP_MAGIC "SLWOUT02"

/* One rank's outputs, as read back from its dump file. */
typedef struct worker_dump {
	int32_t rank;
	double tol; /* the backend's check_tol */
	char backend[16];
	worker_shape_t shape;
	int32_t nwork;
	struct worker_dump_work {
		int32_t slot;
		int32_t slot_group; /* index of the group within its slot */
		int64_t ntok;
		double *out, *lse, *dq, *dk, *dv; /* layout of backend.h */
	} *work;
} worker_dump_t;

/* Writes a rank's outputs (order and one outputs per work order). */
sl_err worker_dump_write(const char *path, const worker_order_t *order, const char *backend,
                         double tol, const worker_outputs_t *outs);
/* Reads a dump and checks it against the rank's order. *out is the caller's. */
sl_err worker_dump_read(const char *path, const worker_order_t *order, worker_dump_t **out);
void worker_dump_free(worker_dump_t **dump);
/* Where a worker serving sluiced with --dump DIR writes rank's outputs of
 * a step: DIR/step<STEP>.rank<RANK>.out. */
void worker_dump_step_path(const char *dir, uint64_t step, int32_t rank, char *buf, size_t size);

/* ------------------------------------------------------------ checker --- */

/* Largest errors found by worker_check: relative error per tensor (max abs
 * difference over max abs reference value, over real tokens), padding rows
 * that were not zero, positions not produced or produced twice, NaN/Inf. */
typedef struct worker_check_result {
	double rel_err[4]; /* O, dQ, dK, dV */
	double lse_err;    /* max abs difference of LSE */
	int64_t bad_padding;
	int64_t bad_coverage;
	int64_t nonfinite;
	int32_t worst_seq; /* index of the sequence with the largest error */
	double tol;
	int ok;
} worker_check_result_t;

/* Compares the ranks' outputs (dumps[r] with orders[r], r < plan->ranks) with
 * the fp64 reference on every sequence. Fills *res; returns SL_OK even when
 * the check fails (res->ok == 0), an error only when it could not check. */
sl_err worker_check(const sl_plan_t *plan, const worker_shape_t *shape, uint64_t seed,
                    worker_order_t *const *orders, worker_dump_t *const *dumps, double tol,
                    worker_check_result_t *res);

/* The whole check from files: builds every rank's order from the plan,
 * reads paths[r] (r < plan->ranks; each rank's dump, written by a
 * `--plan` run or by a worker serving sluiced) and runs worker_check with
 * the largest tolerance the dumps name. Errors: a dump missing, unreadable
 * or written for another order. */
sl_err worker_check_dumps(const sl_plan_t *plan, const worker_shape_t *shape, uint64_t seed,
                          const char *const *paths, worker_check_result_t *res);

/* ----------------------------------------------------------- launcher --- */

typedef struct worker_launch_opts {
	const char *plan_path;
	const char *profile;    /* check and predict under this profile (NULL: the plan's own) */
	const char *backend;    /* "cpu" (default) or "cuda" */
	const char *worker_exe; /* NULL: $SLUICE_WORKER, next to this executable, ../worker/, PATH */
	worker_shape_t shape;
	uint64_t seed;
	int check;
	int iters, warmup;
	int timeout_ms;
	const char *report_path; /* combined JSON report (NULL: none) */
	const char *keep_dir;    /* run directory to use and keep (NULL: temporary, removed) */
	FILE *out;               /* table and check summary (NULL: quiet) */
} worker_launch_opts_t;

typedef struct worker_launch_result {
	worker_check_result_t check; /* valid when opts.check */
	double measured_ms;          /* sum over groups of slowest rank's fwd+bwd wall */
	double predicted_ms;         /* plan's predicted step (NAN when the profile is unknown) */
} worker_launch_result_t;

/* `sluice run-plan`: checks the plan, fork+execs one sluice-worker per rank
 * (exec, so CUDA is first touched in the workers), waits (a failing worker
 * stops the others), then checks outputs and collects reports. Returns SL_OK
 * when the workers ran (and, with check, res->check.ok says whether the
 * outputs matched), else an error naming the failing rank. */
sl_err worker_launch(const worker_launch_opts_t *opts, worker_launch_result_t *res);

/* ------------------------------------------------- serving sluiced --- */

/* `sluice-worker --job J --rank R`: what the worker serving sluiced needs. */
typedef struct worker_serve_opts {
	const char *endpoint;        /* NULL: sl_default_endpoint */
	const char *job;
	int32_t rank;
	int32_t ranks;               /* > 0: refuse plans of another size; 0: any */
	const char *server_key;      /* tcp + CURVE (client.h's sl_client_opts_t) */
	const char *secret_key_file;
	const char *run_dir;         /* NULL: worker_serve_run_dir */
	const char *dump_dir;        /* NULL: no dumps; else worker_dump_step_path files */
	int64_t max_tokens;          /* > 0: refuse a group with more local tokens */
	int64_t max_steps;           /* > 0: exit after this many orders */
	int register_timeout_ms;     /* wait for sluiced's welcome */
	worker_run_opts_t run;       /* shape, seed, iters, warmup, timeout, placement */
} worker_serve_opts_t;

/* Registers with sluiced and serves work orders until SIGTERM/SIGINT (or
 * max_steps orders). Returns the process exit status: 0 after a clean stop,
 * 1 when it could not register or set up. Per-step lines go to stdout. */
int worker_serve(const worker_backend_ops_t *ops, const worker_serve_opts_t *opts);

/* The run directory the workers of one job share when none is given:
 * /tmp/sluice-run-<uid>/job-<job, sanitised, 24 chars>-<hash of endpoint
 * and job>, created 0700 (an existing one must be a directory of ours). */
sl_err worker_serve_run_dir(const char *endpoint, const char *job, char *buf, size_t size);


/* ---------------------------------------------------------- emulation --- */

/* Predicted vs measured times of one plan whose group executions were timed
 * one rank at a time (`sluice run-plan --emulate`, worker/emul.c). Arrays
 * are owned; rank_ms and parts (SL_EMUL_NPARTS per entry, sluice/calib.h)
 * are indexed like plan->rank_pool, the rest per group or per rank. */
typedef struct worker_emul {
	const sl_plan_t *plan; /* borrowed */
	double *rank_ms, *parts;
	double *pred_ms, *pred_start, *meas_ms, *meas_start; /* [ngroups] */
	/* [ngroups]: the slowest rank's measured compute, and the transfer the
	 * model leaves exposed (not run on one GPU); meas_ms is their sum */
	double *comp_ms, *xfer_ms;
	double *pred_rank, *meas_rank;                       /* [ranks], grad sync included */
	double pred_step, meas_step, grad_sync_ms;
	int have_pred;
} worker_emul_t;

/* Who and what measured, for the report. Strings borrowed; any may be NULL. */
typedef struct worker_emul_meta {
	const char *model, *card, *date, *command, *source;
} worker_emul_meta_t;

/* The reference timing rule (cost-model.md, "Timing") over given group
 * times: each group starts when the last of its ranks is free. Writes
 * start_ms [ngroups] and ready_ms [ranks] (before gradient sync). */
void worker_emul_timeline(const sl_plan_t *plan, const double *group_ms, double *start_ms,
                          double *ready_ms);
/* Allocates *e for plan (borrowed until worker_emul_free); times zero. */
sl_err worker_emul_init(worker_emul_t *e, const sl_plan_t *plan);
void worker_emul_free(worker_emul_t *e);
/* From e->rank_ms: each group's measured time is its slowest rank's (the
 * ring keeps a group's ranks in step); measured starts and step by the
 * timing rule; predicted ones under cost (NULL: none). SL_EINVAL naming the
 * group when a time is negative or not finite. */
sl_err worker_emul_finish(worker_emul_t *e, const sl_cost_t *cost);
/* Median over group executions of |predicted - measured| / measured (NAN
 * without a prediction). */
double worker_emul_median_group_err(const worker_emul_t *e);
/* The report: "sluice.emulation/1" JSON with per group (predicted and
 * measured start and time, relative error, every rank's time, the slowest
 * rank's parts), per rank and per step. */
sl_err worker_emul_write_report(const worker_emul_t *e, const worker_emul_meta_t *meta, FILE *f);
/* The same as a table. */
void worker_emul_write_table(const worker_emul_t *e, FILE *f);
/* Reads rank_ms (and parts) back from such a report written for the same
 * plan; SL_EFORMAT naming the path and field otherwise. */
sl_err worker_emul_read_measured(const char *path, worker_emul_t *e);
/* A Chrome trace event file (ui.perfetto.dev, chrome://tracing) of a plan:
 * a process per rank, a "predicted" thread (pred_*) and, when meas_start is
 * non-NULL, a "measured" one; one "X" event per group execution per rank. */
sl_err worker_trace_write(FILE *f, const sl_plan_t *plan, const double *pred_start,
                          const double *pred_ms, const double *meas_start, const double *meas_ms);


#endif
