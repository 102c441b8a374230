/* Helpers of the daemon tests: temp dirs, real child processes (sluiced,
 * the test worker), line reading with timeouts, requests. */
#ifndef SLUICE_TESTS_DAEMON_HARNESS_H
#define SLUICE_TESTS_DAEMON_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sluice/client.h"
#include "sluice/sluice.h"

/* A fresh directory under $TMPDIR (or /tmp), removed at exit. */
const char *th_tmpdir(void);

/* Starts argv[0] with argv; env (may be NULL) holds extra "K=V" strings.
 * When out_fd is non-NULL the child's stdout is a pipe read through it. */
pid_t th_spawn(char *const argv[], char *const env[], int *out_fd);
/* Reads one line (without the newline) within timeout_ms; 1 on success. */
int th_read_line(int fd, char *buf, size_t size, int timeout_ms);
/* Waits up to timeout_ms for pid; 1 with *status when it exited. */
int th_wait(pid_t pid, int timeout_ms, int *status);
/* SIGKILLs pid and reaps it. */
void th_kill(pid_t pid);

typedef struct th_daemon {
	pid_t pid;
	int out_fd;
	char endpoint[256]; /* as bound (tcp port resolved) */
} th_daemon_t;

/* Starts sluiced with these arguments (NULL-terminated, after the binary)
 * and extra environment; waits for its "listening on" line. 1 on success. */
int th_daemon_start(th_daemon_t *d, const char *const args[], char *const env[]);
/* SIGTERM, wait (5 s), SIGKILL if needed; returns the exit status or -1. */
int th_daemon_stop(th_daemon_t *d);

/* Starts the test worker for job/rank; waits for its "ready" line.
 * extra: more arguments (NULL-terminated, may be NULL). */
pid_t th_worker_start(const char *endpoint, const char *job, int rank, const char *const extra[],
                      int *out_fd);

/* Starts a sluiced of the test's own on ipc NAME.sock in the temp dir, with
 * `threads` planner threads, --drain-timeout-ms drain_ms and the test-only
 * plan stall (PlanOptions.debug_delay_ms) allowed, and connects a new
 * client *c to it (the caller frees both). 1 on success. */
int th_stall_daemon_start(th_daemon_t *d, const char *name, int threads, int drain_ms,
                          sl_client_t **c);

/* th_stall_daemon_start with sluiced's log at log_level ("info", "warn";
 * NULL: "error", not on the pipe) on d->out_fd as well, for a test that
 * reads what sluiced logs. */
int th_stall_daemon_start_logged(th_daemon_t *d, const char *name, int threads, int drain_ms,
                                 const char *log_level, sl_client_t **c);

/* Reads lines from fd until one holds want (left in buf); 0 at end of file
 * or when no line came within timeout_ms (a guard per line). */
int th_read_until(int fd, const char *want, char *buf, size_t size, int timeout_ms);

/* A top-level counter ("queued", "planning", "timeouts", ...) of the
 * daemon's status JSON (sl_client_status_json); -1, said on stderr, when
 * there is none. */
int64_t th_status_int(const char *json, const char *key);

/* A plan request's PlanOptions.debug_delay_ms that no test run outlives
 * (ctest kills a test long before): only its deadline, a cancel or the
 * drain cap ends the stall, so the test, not the clock, decides when. */
#define TH_STALL_FOREVER_MS 3600000u

/* Writes text to path with mode; 1 on success. */
int th_write_file(const char *path, const char *text, int mode);
/* Reads a whole file (malloc'd, NUL-terminated) or NULL. */
char *th_read_file(const char *path);

/* A request for n lengths (policy "static", 8 ranks, 8 per node). */
sl_plan_req_t th_req(const char *job, uint64_t step, const int64_t *lengths, int64_t n);
/* Deterministic pseudo-random lengths in [1, max]. */
void th_lengths(uint64_t seed, int64_t *out, int64_t n, int64_t max);

/* The JSON of a plan computed locally for the same request (for
 * comparing with the daemon's). Caller frees. */
char *th_local_plan_json(const sl_plan_req_t *r);

#endif
