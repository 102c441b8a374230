/* load_sidecar: a load benchmark of sluiced (not a test). It starts a real
 * sluiced per transport (ipc in a temp dir; tcp on 127.0.0.1 with CURVE
 * keys made here), then runs many concurrent clients, each keeping a window
 * of plan requests in flight, for a bounded number of requests and time. It
 * reports requests/s, p50/p99/max latency, lost and duplicated replies
 * (every request id must come back exactly once, with its own step), and the
 * daemon's resident memory before and after.
 *
 *   load_sidecar --sluiced build/daemon/sluiced [--transport ipc|tcp|both]
 *                [--clients 16] [--requests 500] [--window 4] [--seqs 512]
 *                [--policy static] [--seconds 60] [--threads 2]
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice/client.h"
#include "sluice/sluice.h"

typedef struct bench_opts {
	const char *sluiced, *transport, *policy;
	int clients, requests, window, seqs, threads;
	double seconds;
} bench_opts_t;

typedef struct client_res {
	int idx;
	const char *endpoint;
	const bench_opts_t *o;
	sl_client_opts_t copts;
	const int64_t *lengths; /* a pool of batches: [nbatches][seqs] */
	int nbatches;
	double *lat_ms; /* [requests] */
	long ok, errors, lost, dups, wrong;
	long nlat;
} client_res_t;

static long rss_kb(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kb = -1;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* One client: keeps `window` requests in flight until it has sent
 * `requests` or the time is up, then collects what is outstanding. */
static void *client_main(void *arg)
{
	client_res_t *r = arg;
	const bench_opts_t *o = r->o;
	sl_client_t *c = NULL;
	char job[32];
	snprintf(job, sizeof(job), "load-%d", r->idx);
	if (sl_client_new(r->endpoint, &r->copts, &c) != SL_OK) {
		fprintf(stderr, "client %d: %s\n", r->idx, sl_errmsg());
		r->errors = o->requests;
		return NULL;
	}
	uint64_t *ids = calloc((size_t)o->requests, sizeof(uint64_t));
	double *sent_at = calloc((size_t)o->requests, sizeof(double));
	char *got = calloc((size_t)o->requests, 1);
	double end = sl_now_ms() + o->seconds * 1e3;
	int sent = 0, inflight = 0;
	while ((sent < o->requests && sl_now_ms() < end) || inflight > 0) {
		while (inflight < o->window && sent < o->requests && sl_now_ms() < end) {
			sl_plan_req_t q;
			memset(&q, 0, sizeof(q));
			q.job = job;
			q.step = (uint64_t)sent;
			q.lengths = r->lengths + (size_t)((r->idx + sent) % r->nbatches) * (size_t)o->seqs;
			q.n = o->seqs;
			q.policy = o->policy;
			q.ranks = 64;
			q.ranks_per_node = 8;
			q.no_dispatch = 1;
			sent_at[sent] = sl_now_ms();
			if (sl_client_send(c, &q, &ids[sent]) != SL_OK) {
				r->errors++;
				sent++;
				continue;
			}
			sent++;
			inflight++;
		}
		if (inflight == 0)
			break;
		uint64_t id = 0;
		sl_plan_t *p = NULL;
		sl_err rc = sl_client_recv(c, 30000, &id, &p);
		if (rc == SL_ETIMEOUT) {
			r->lost += inflight; /* nothing came back in 30 s */
			break;
		}
		inflight--;
		/* ids are handed out in order: index = id - first id */
		int k = (int)(id - ids[0]);
		if (ids[0] == 0 || k < 0 || k >= sent || ids[k] != id) {
			r->wrong++;
		} else if (got[k]) {
			r->dups++;
		} else {
			got[k] = 1;
			r->lat_ms[r->nlat++] = sl_now_ms() - sent_at[k];
			if (rc == SL_OK && sl_client_last_step(c) == (uint64_t)k &&
			    p->nseqs == o->seqs)
				r->ok++;
			else if (rc == SL_OK)
				r->wrong++;
			else
				r->errors++;
		}
		sl_plan_free(&p);
	}
	/* a late extra reply would be a duplicate */
	uint64_t id;
	sl_plan_t *p = NULL;
	while (sl_client_recv(c, 100, &id, &p) != SL_ETIMEOUT) {
		r->dups++;
		sl_plan_free(&p);
	}
	sl_client_free(&c);
	free(ids);
	free(sent_at);
	free(got);
	return NULL;
}

/* Starts sluiced; returns its pid and the bound endpoint. */
static pid_t start_daemon(const bench_opts_t *o, char *const args[], char *endpoint, size_t size)
{
	int fds[2];
	if (pipe(fds) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		execv(o->sluiced, args);
		fprintf(stderr, "exec %s: %s\n", o->sluiced, strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	FILE *f = fdopen(fds[0], "r");
	char line[512];
	if (f == NULL || fgets(line, sizeof(line), f) == NULL) {
		kill(pid, SIGKILL);
		return -1;
	}
	const char *p = strstr(line, "listening on ");
	if (p == NULL)
		return -1;
	sscanf(p + strlen("listening on "), "%255s", endpoint);
	(void)size;
	return pid;
}

static int run_transport(const bench_opts_t *o, const char *transport, const char *dir,
                         const int64_t *lengths, int nbatches)
{
	char endpoint[256], ep_arg[300], key[300], ak[300], base[300], threads[16];
	sl_client_opts_t copts = {0};
	snprintf(threads, sizeof(threads), "%d", o->threads);
	char *args[24];
	int n = 0;
	args[n++] = (char *)o->sluiced;
	args[n++] = "--threads";
	args[n++] = threads;
	args[n++] = "--log-level";
	args[n++] = "error";
	args[n++] = "--queue-max";
	args[n++] = "100000";
	if (strcmp(transport, "ipc") == 0) {
		snprintf(ep_arg, sizeof(ep_arg), "ipc://%s/load.sock", dir);
		args[n++] = "--endpoint";
		args[n++] = ep_arg;
	} else {
		/* CURVE: a server key and one client key, listed as authorised */
		snprintf(base, sizeof(base), "%s/server", dir);
		if (access(base, F_OK) != 0 && sl_keygen(base) != SL_OK)
			return fprintf(stderr, "keygen: %s\n", sl_errmsg()), 1;
		snprintf(base, sizeof(base), "%s/client", dir);
		if (access(base, F_OK) != 0 && sl_keygen(base) != SL_OK)
			return fprintf(stderr, "keygen: %s\n", sl_errmsg()), 1;
		snprintf(key, sizeof(key), "%s/server.key", dir);
		snprintf(ak, sizeof(ak), "%s/client.pub", dir);
		args[n++] = "--endpoint";
		args[n++] = "tcp://127.0.0.1:*";
		args[n++] = "--curve-secret-key";
		args[n++] = key;
		args[n++] = "--authorized-keys";
		args[n++] = ak;
		static char spub[300], csec[300];
		snprintf(spub, sizeof(spub), "%s/server.pub", dir);
		snprintf(csec, sizeof(csec), "%s/client.key", dir);
		copts.server_key = spub;
		copts.secret_key_file = csec;
	}
	args[n] = NULL;
	pid_t pid = start_daemon(o, args, endpoint, sizeof(endpoint));
	if (pid < 0)
		return fprintf(stderr, "could not start %s\n", o->sluiced), 1;

	/* one warm-up request so the "before" memory is a running daemon's */
	sl_client_t *w = NULL;
	sl_plan_t *p = NULL;
	sl_plan_req_t q;
	memset(&q, 0, sizeof(q));
	q.job = "warmup";
	q.lengths = lengths;
	q.n = o->seqs;
	q.policy = o->policy;
	q.ranks = 64;
	q.ranks_per_node = 8;
	if (sl_client_new(endpoint, &copts, &w) != SL_OK || sl_client_plan(w, &q, 10000, &p) != SL_OK) {
		fprintf(stderr, "warm-up failed: %s\n", sl_errmsg());
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return 1;
	}
	sl_plan_free(&p);
	sl_client_free(&w);
	long rss0 = rss_kb(pid);

	client_res_t *res = calloc((size_t)o->clients, sizeof(*res));
	pthread_t *th = calloc((size_t)o->clients, sizeof(*th));
	double t0 = sl_now_ms();
	for (int i = 0; i < o->clients; i++) {
		res[i] = (client_res_t){.idx = i, .endpoint = endpoint, .o = o, .copts = copts,
		                        .lengths = lengths, .nbatches = nbatches};
		res[i].lat_ms = calloc((size_t)o->requests, sizeof(double));
		pthread_create(&th[i], NULL, client_main, &res[i]);
	}
	long ok = 0, errors = 0, lost = 0, dups = 0, wrong = 0;
	for (int i = 0; i < o->clients; i++) {
		pthread_join(th[i], NULL);
		ok += res[i].ok;
		errors += res[i].errors;
		lost += res[i].lost;
		dups += res[i].dups;
		wrong += res[i].wrong;
	}
	double wall = (sl_now_ms() - t0) / 1e3;
	long rss1 = rss_kb(pid);
	long nlat = 0;
	for (int i = 0; i < o->clients; i++)
		nlat += res[i].nlat;
	double *all = malloc(sizeof(double) * (size_t)(nlat + 1));
	long m = 0;
	for (int i = 0; i < o->clients; i++) {
		for (long k = 0; k < res[i].nlat; k++)
			all[m++] = res[i].lat_ms[k];
		free(res[i].lat_ms);
	}
	double p50 = m ? sl_quantile(all, (size_t)m, 0.5) : 0;
	double p99 = m ? sl_quantile(all, (size_t)m, 0.99) : 0;
	double mx = m ? all[m - 1] : 0; /* sorted by sl_quantile */
	kill(pid, SIGTERM);
	int st = 0;
	waitpid(pid, &st, 0);
	printf("%-4s clients %3d window %d seqs %d policy %-7s | %6ld ok %3ld err %ld lost %ld dup "
	       "%ld wrong | %7.0f req/s | p50 %6.2f ms p99 %6.2f ms max %6.2f ms | RSS %ld -> %ld "
	       "KiB | exit %d\n",
	       transport, o->clients, o->window, o->seqs, o->policy, ok, errors, lost, dups, wrong,
	       (double)(ok + errors) / wall, p50, p99, mx, rss0, rss1,
	       WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	fflush(stdout);
	free(all);
	free(res);
	free(th);
	return (lost || dups || wrong || errors) ? 1 : 0;
}

int main(int argc, char **argv)
{
	bench_opts_t o = {"daemon/sluiced", "both", "static", 16, 500, 4, 512, 2, 60};
	for (int i = 1; i < argc; i += 2) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (v == NULL)
			return fprintf(stderr, "%s needs a value\n", a), 2;
		if (strcmp(a, "--sluiced") == 0)
			o.sluiced = v;
		else if (strcmp(a, "--transport") == 0)
			o.transport = v;
		else if (strcmp(a, "--policy") == 0)
			o.policy = v;
		else if (strcmp(a, "--clients") == 0)
			o.clients = atoi(v);
		else if (strcmp(a, "--requests") == 0)
			o.requests = atoi(v);
		else if (strcmp(a, "--window") == 0)
			o.window = atoi(v);
		else if (strcmp(a, "--seqs") == 0)
			o.seqs = atoi(v);
		else if (strcmp(a, "--threads") == 0)
			o.threads = atoi(v);
		else if (strcmp(a, "--seconds") == 0)
			o.seconds = atof(v);
		else
			return fprintf(stderr, "unknown option %s (see the comment atop load_sidecar.c)\n",
			               a), 2;
	}
	if (o.clients < 1 || o.clients > 1024 || o.requests < 1 || o.window < 1 || o.seqs < 1 ||
	    o.threads < 1 || o.seconds <= 0)
		return fprintf(stderr, "load_sidecar: values must be positive (clients <= 1024)\n"), 2;
	if (access(o.sluiced, X_OK) != 0)
		return fprintf(stderr, "load_sidecar: %s is not executable (--sluiced)\n", o.sluiced), 2;

	/* batches from the built-in synthetic trace (web-text-shaped lengths) */
	int nbatches = 16;
	sl_lengths_t l = {0};
	if (sl_trace_synthetic(SL_SYNTH_SEED, (size_t)nbatches * (size_t)o.seqs, SL_SYNTH_MU,
	                       SL_SYNTH_SIGMA, SL_SYNTH_MAX_LEN, &l) != SL_OK)
		return fprintf(stderr, "load_sidecar: %s\n", sl_errmsg()), 1;

	char dir[] = "/tmp/sluice-load-XXXXXX";
	if (mkdtemp(dir) == NULL)
		return perror("mkdtemp"), 1;
	int rc = 0;
	if (strcmp(o.transport, "tcp") != 0)
		rc |= run_transport(&o, "ipc", dir, l.v, nbatches);
	if (strcmp(o.transport, "ipc") != 0)
		rc |= run_transport(&o, "tcp", dir, l.v, nbatches);
	sl_lengths_free(&l);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "load_sidecar: could not remove %s\n", dir);
	return rc;
}
