/* Helpers of the daemon tests (see harness.h). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static char tmp_root[256];
static pid_t children[256];
static int nchildren;

/* Kills whatever children a failed test left behind. */
static void kill_children(void)
{
	for (int i = 0; i < nchildren; i++)
		if (children[i] > 0) {
			int st;
			kill(children[i], SIGKILL);
			waitpid(children[i], &st, 0);
		}
	nchildren = 0;
}

static void forget_child(pid_t pid)
{
	for (int i = 0; i < nchildren; i++)
		if (children[i] == pid)
			children[i] = -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_tmp(void)
{
	if (tmp_root[0] != '\0')
		nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *th_tmpdir(void)
{
	if (tmp_root[0] != '\0')
		return tmp_root;
	const char *base = getenv("TMPDIR");
	snprintf(tmp_root, sizeof(tmp_root), "%s/sluice-test-XXXXXX",
	         base != NULL && base[0] == '/' && strlen(base) < 80 ? base : "/tmp");
	if (mkdtemp(tmp_root) == NULL) {
		perror("mkdtemp");
		abort();
	}
	atexit(rm_tmp);
	return tmp_root;
}

pid_t th_spawn(char *const argv[], char *const env[], int *out_fd)
{
	int p[2] = {-1, -1};
	if (out_fd != NULL && pipe(p) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (out_fd != NULL) {
			dup2(p[1], STDOUT_FILENO);
			close(p[0]);
			close(p[1]);
		}
		for (int i = 0; env != NULL && env[i] != NULL; i++)
			putenv(env[i]);
		/* a clean signal state for the child */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (out_fd != NULL) {
		close(p[1]);
		*out_fd = p[0];
	}
	if (nchildren == 0)
		atexit(kill_children);
	if (nchildren < (int)(sizeof(children) / sizeof(children[0])))
		children[nchildren++] = pid;
	return pid;
}

int th_read_line(int fd, char *buf, size_t size, int timeout_ms)
{
	size_t n = 0;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct timespec t1;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		long el = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
		if (el >= timeout_ms)
			return 0;
		struct pollfd pf = {fd, POLLIN, 0};
		int r = poll(&pf, 1, (int)(timeout_ms - el));
		if (r <= 0)
			continue;
		char ch;
		ssize_t got = read(fd, &ch, 1);
		if (got <= 0)
			return 0;
		if (ch == '\n') {
			buf[n] = '\0';
			return 1;
		}
		if (n + 1 < size)
			buf[n++] = ch;
	}
}

int th_wait(pid_t pid, int timeout_ms, int *status)
{
	for (int waited = 0; waited <= timeout_ms; waited += 10) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid) {
			forget_child(pid);
			return 1;
		}
		if (r < 0)
			return 0;
		usleep(10000);
	}
	return 0;
}

void th_kill(pid_t pid)
{
	int st;
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	forget_child(pid);
}

/* th_daemon_start, and with log set its stderr (the log) goes to the same
 * pipe: through sh, whose exec keeps the pid, so signals reach sluiced. */
static int daemon_start(th_daemon_t *d, const char *const args[], char *const env[], int log)
{
	char *argv[64];
	int n = 0;
	if (log) {
		argv[n++] = (char *)"/bin/sh";
		argv[n++] = (char *)"-c";
		argv[n++] = (char *)"exec \"$0\" \"$@\" 2>&1";
	}
	argv[n++] = (char *)SLUICED_BIN;
	for (int i = 0; args != NULL && args[i] != NULL && n < 62; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	memset(d, 0, sizeof(*d));
	d->pid = th_spawn(argv, env, &d->out_fd);
	if (d->pid < 0)
		return 0;
	/* log lines may come first; the guard is per line */
	char line[512];
	const char *p = NULL;
	while (p == NULL) {
		if (!th_read_line(d->out_fd, line, sizeof(line), 10000)) {
			th_kill(d->pid);
			d->pid = -1;
			return 0;
		}
		p = strstr(line, "listening on ");
		if (p == NULL && !log)
			return 0;
	}
	p += strlen("listening on ");
	size_t k = 0;
	while (p[k] != '\0' && p[k] != ' ' && k + 1 < sizeof(d->endpoint)) {
		d->endpoint[k] = p[k];
		k++;
	}
	d->endpoint[k] = '\0';
	return 1;
}

int th_daemon_start(th_daemon_t *d, const char *const args[], char *const env[])
{
	return daemon_start(d, args, env, 0);
}

int th_daemon_stop(th_daemon_t *d)
{
	int st = 0;
	if (d->pid <= 0)
		return -1;
	kill(d->pid, SIGTERM);
	if (!th_wait(d->pid, 10000, &st)) {
		th_kill(d->pid);
		d->pid = -1;
		return -1;
	}
	d->pid = -1;
	if (d->out_fd > 0)
		close(d->out_fd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

pid_t th_worker_start(const char *endpoint, const char *job, int rank, const char *const extra[],
                      int *out_fd)
{
	char rs[16];
	char *argv[32];
	int n = 0;
	snprintf(rs, sizeof(rs), "%d", rank);
	argv[n++] = (char *)TEST_WORKER_BIN;
	argv[n++] = (char *)endpoint;
	argv[n++] = (char *)job;
	argv[n++] = rs;
	for (int i = 0; extra != NULL && extra[i] != NULL && n < 30; i++)
		argv[n++] = (char *)extra[i];
	argv[n] = NULL;
	pid_t pid = th_spawn(argv, NULL, out_fd);
	char line[256];
	if (pid < 0 || !th_read_line(*out_fd, line, sizeof(line), 10000) ||
	    strncmp(line, "ready", 5) != 0) {
		th_kill(pid);
		return -1;
	}
	return pid;
}

int th_stall_daemon_start(th_daemon_t *d, const char *name, int threads, int drain_ms,
                          sl_client_t **c)
{
	return th_stall_daemon_start_logged(d, name, threads, drain_ms, NULL, c);
}

int th_stall_daemon_start_logged(th_daemon_t *d, const char *name, int threads, int drain_ms,
                                 const char *log_level, sl_client_t **c)
{
	char ep[300], nthreads[16], drain[16];
	snprintf(ep, sizeof(ep), "ipc://%s/%s.sock", th_tmpdir(), name);
	snprintf(nthreads, sizeof(nthreads), "%d", threads);
	snprintf(drain, sizeof(drain), "%d", drain_ms);
	const char *args[] = {"--endpoint", ep, "--threads", nthreads, "--log-level",
	                      log_level != NULL ? log_level : "error", "--drain-timeout-ms", drain,
	                      "--debug-plan-delay", NULL};
	*c = NULL;
	if (!daemon_start(d, args, NULL, log_level != NULL))
		return 0;
	return sl_client_new(d->endpoint, NULL, c) == SL_OK;
}

int th_read_until(int fd, const char *want, char *buf, size_t size, int timeout_ms)
{
	while (th_read_line(fd, buf, size, timeout_ms))
		if (strstr(buf, want) != NULL)
			return 1;
	return 0;
}

int64_t th_status_int(const char *json, const char *key)
{
	char want[64];
	/* the top-level counters come before the jobs array, so the first
	 * match is the daemon's own, not a job's of the same name */
	snprintf(want, sizeof(want), "\"%s\": ", key);
	const char *at = strstr(json, want);
	if (at == NULL) {
		fprintf(stderr, "status has no \"%s\": %s\n", key, json);
		return -1;
	}
	return strtoll(at + strlen(want), NULL, 10);
}

int th_write_file(const char *path, const char *text, int mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0)
		return 0;
	size_t n = strlen(text);
	int ok = write(fd, text, n) == (ssize_t)n;
	fchmod(fd, (mode_t)mode);
	close(fd);
	return ok;
}

char *th_read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (n + 1024 > cap)
			buf = realloc(buf, cap *= 2);
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		if (r == 0)
			break;
		n += r;
	}
	fclose(f);
	buf[n] = '\0';
	return buf;
}

sl_plan_req_t th_req(const char *job, uint64_t step, const int64_t *lengths, int64_t n)
{
	sl_plan_req_t r;
	memset(&r, 0, sizeof(r));
	r.job = job;
	r.step = step;
	r.lengths = lengths;
	r.n = n;
	r.policy = "static";
	r.ranks = 8;
	r.ranks_per_node = 8;
	return r;
}

void th_lengths(uint64_t seed, int64_t *out, int64_t n, int64_t max)
{
	uint64_t x = seed * 6364136223846793005ull + 1442695040888963407ull;
	for (int64_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		out[i] = 1 + (int64_t)(x % (uint64_t)max);
	}
}

char *th_local_plan_json(const sl_plan_req_t *r)
{
	sl_profile_t prof;
	sl_cost_t cost;
	sl_plan_t *plan = NULL;
	char *json = NULL;
	if (sl_profile_resolve(r->profile ? r->profile : "gpt-7b-flexsp", &prof) != SL_OK)
		return NULL;
	sl_cluster_t cl = {r->ranks, r->ranks_per_node};
	if (sl_cost_init(&cost, &prof, &cl) != SL_OK)
		return NULL;
	sl_seq_t *seqs = malloc(sizeof(*seqs) * (size_t)r->n);
	for (int64_t i = 0; i < r->n; i++) {
		seqs[i].id = r->ids ? r->ids[i] : i;
		seqs[i].length = r->lengths[i];
	}
	if (sl_plan_request(r->policy, &cost, seqs, r->n, &r->opts, &plan) == SL_OK)
		json = sl_plan_to_json(plan);
	sl_plan_free(&plan);
	free(seqs);
	sl_cost_fini(&cost);
	return json;
}
