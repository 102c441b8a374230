/* sluice-worker serving sluiced: registers one rank of a job, then takes
 * work orders step by step. Each order is checked and converted into the
 * worker's descriptors (wire.c), acknowledged (or rejected with the reason),
 * executed through the same session code as a `--plan` run (run.c), and its
 * per-slot times and bytes go back with sl_worker_metrics (or, when an
 * accepted order fails, the reason with sl_worker_step_failed). Job events
 * (a worker of the job lost or joined) decide which orders can run at all.
 *
 * One line per step and event goes to stdout (for operators and tests):
 *   registered job J rank R at ENDPOINT (run dir D, backend B)
 *   step S: done, G groups, T tokens, X ms
 *   step S: rejected: WHY          step S: failed: WHY
 *   event lost|joined R: MESSAGE    event failed R step S: MESSAGE
 *   stopped (signal N) after K orders       done after K orders        */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/client.h"
#include "worker.h"

/* Set by SIGTERM/SIGINT; every wait (daemon or mesh) checks it. */
static volatile sig_atomic_t serve_stop;

static void serve_on_signal(int sig)
{
	serve_stop = sig;
}

typedef struct serve {
	const worker_serve_opts_t *o;
	const worker_backend_ops_t *ops;
	char endpoint[512];
	char run_dir[PATH_MAX];
	sl_client_opts_t copts;
	sl_worker_t *w;
	uint8_t *lost;       /* [SL_MAX_RANKS]: sluiced said this rank's worker is lost */
	int32_t nlost;
	worker_session_t *session;
	int last_failed; /* the last step failed: queued messages may never leave */
	int64_t orders;
} serve_t;

/* FNV-1a, 32 bits: a short stable name for (endpoint, job). */
static uint32_t serve_hash(const char *a, const char *b)
{
	uint32_t h = 2166136261u;
	for (const char *p = a; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	h = (h ^ '\n') * 16777619u;
	for (const char *p = b; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return h;
}

/* Creates dir (mode 0700) unless it exists; an existing one must be a
 * directory of ours (not a link someone else planted in /tmp). */
static sl_err serve_own_dir(const char *dir)
{
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return sl_seterr(SL_EIO, "cannot create %s: %s", dir, strerror(errno));
	struct stat st;
	if (lstat(dir, &st) != 0)
		return sl_seterr(SL_EIO, "%s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode) || st.st_uid != getuid())
		return sl_seterr(SL_EDENIED, "%s is not a directory owned by uid %u", dir,
		                 (unsigned)getuid());
	return SL_OK;
}

sl_err worker_serve_run_dir(const char *endpoint, const char *job, char *buf, size_t size)
{
	char base[64], name[40];
	snprintf(base, sizeof base, "/tmp/sluice-run-%u", (unsigned)getuid());
	size_t k = 0;
	for (const char *p = job; *p && k < 24; p++)
		name[k++] = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		                    (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_'
		                ? *p
		                : '_';
	name[k] = '\0';
	SL_CHECK(serve_own_dir(base));
	int n =
	    snprintf(buf, size, "%s/job-%s-%08x", base, name, (unsigned)serve_hash(endpoint, job));
	if (n < 0 || (size_t)n >= size)
		return sl_seterr(SL_ERANGE, "run directory name too long");
	return serve_own_dir(buf);
}

/* Prints one progress line (stdout is line-buffered by main). */
static void serve_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void serve_say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* Takes every queued job event: lost ranks are remembered until they join
 * again, so orders that need them are refused at once instead of waiting
 * the mesh timeout for a peer that is gone. */
static void serve_events(serve_t *s)
{
	sl_event_t ev;
	while (sl_worker_next_event(s->w, &ev)) {
		int known = ev.rank >= 0 && ev.rank < SL_MAX_RANKS;
		if (ev.kind == SL_EVENT_WORKER_LOST) {
			if (known && !s->lost[ev.rank]) {
				s->lost[ev.rank] = 1;
				s->nlost++;
			}
			serve_say("event lost %d: %s", (int)ev.rank, ev.message);
		} else if (ev.kind == SL_EVENT_WORKER_JOINED) {
			if (known && s->lost[ev.rank]) {
				s->lost[ev.rank] = 0;
				s->nlost--;
			}
			serve_say("event joined %d: %s", (int)ev.rank, ev.message);
		} else if (ev.kind == SL_EVENT_STEP_FAILED) {
			serve_say("event failed %d step %llu: %s", (int)ev.rank,
			          (unsigned long long)ev.step, ev.message);
		}
	}
}

/* The first peer of the order sluiced reported lost, or -1. */
static int32_t serve_lost_peer(const serve_t *s, const worker_order_t *ord, int32_t *slot)
{
	for (int32_t i = 0; i < ord->nwork; i++)
		for (int32_t k = 0; k < ord->work[i].d; k++) {
			int32_t r = ord->work[i].ring[k];
			if (r != ord->rank && s->lost[r]) {
				*slot = ord->work[i].slot;
				return r;
			}
		}
	return -1;
}

/* Decides whether this worker can run the order. SL_OK with *out set, or an
 * error whose message says why (the ack carries it to sluiced). */
static sl_err serve_accept(serve_t *s, const sl_work_order_t *wo, worker_order_t **out)
{
	const worker_serve_opts_t *o = s->o;
	*out = NULL;
	if (wo->rank != o->rank)
		return sl_seterr(SL_EINVAL, "order for rank %d reached the worker of rank %d",
		                 (int)wo->rank, (int)o->rank);
	if (o->ranks > 0 && wo->ranks != o->ranks)
		return sl_seterr(
		    SL_EINVAL, "the plan has %d ranks but this worker was started with --ranks %d",
		    (int)wo->ranks, (int)o->ranks);
	worker_order_t *ord = NULL;
	SL_CHECK(worker_order_from_wire(wo, &o->run.shape, &ord));
	const int64_t row = (int64_t)o->run.shape.heads * o->run.shape.head_dim;
	for (int32_t i = 0; i < ord->nwork; i++) {
		const worker_group_work_t *w = &ord->work[i];
		sl_err rc = SL_OK;
		if (o->max_tokens > 0 && w->ntok > o->max_tokens)
			rc = sl_seterr(
			    SL_ERANGE,
			    "slot %d: %lld local tokens exceed this worker's --max-tokens %lld",
			    (int)w->slot, (long long)w->ntok, (long long)o->max_tokens);
		else if (w->ntok > INT64_MAX / 64 / row)
			rc = sl_seterr(
			    SL_ERANGE,
			    "slot %d: %lld local tokens x heads %d x head-dim %d are too many "
			    "to address",
			    (int)w->slot, (long long)w->ntok, (int)o->run.shape.heads,
			    (int)o->run.shape.head_dim);
		if (rc != SL_OK) {
			worker_order_free(&ord);
			return rc;
		}
	}
	/* sluiced sends WORKER_JOINED before any order that follows the
	 * registration, on the same connection, so serve_events has already
	 * cleared the mark of a rank that came back */
	int32_t slot = -1, peer = s->nlost > 0 ? serve_lost_peer(s, ord, &slot) : -1;
	if (peer >= 0) {
		worker_order_free(&ord);
		return sl_seterr(
		    SL_ECLOSED,
		    "slot %d needs rank %d, whose worker sluiced reported lost (and it "
		    "has not registered again)",
		    (int)slot, (int)peer);
	}
	if (s->session && worker_session_nranks(s->session) != wo->ranks) {
		SL_INFO(SL_SUB_KERN, "rank %d: the job now has %d ranks (was %d): new session",
		        (int)o->rank, (int)wo->ranks, (int)worker_session_nranks(s->session));
		worker_session_linger(s->session, 1000);
		worker_session_close(&s->session, s->last_failed);
	}
	if (!s->session) {
		worker_run_opts_t ro = o->run;
		ro.rank = o->rank;
		ro.run_dir = s->run_dir;
		sl_err rc =
		    worker_session_open(s->ops, &ro, wo->ranks, &serve_stop, 0, &s->session);
		if (rc != SL_OK) {
			char msg[512];
			snprintf(msg, sizeof msg, "%s", sl_errmsg());
			worker_order_free(&ord);
			return sl_seterr(rc, "cannot start the %s backend: %s", s->ops->name, msg);
		}
	}
	*out = ord;
	return SL_OK;
}

/* Writes DIR/step<S>.rank<R>.out through a temporary name, so a reader
 * never sees half a file. */
static sl_err serve_dump(serve_t *s, uint64_t step, const worker_order_t *ord,
                         const worker_exec_t *ex)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	worker_dump_step_path(s->o->dump_dir, step, s->o->rank, path, sizeof path);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	SL_CHECK(worker_dump_write(tmp, ord, s->ops->name, s->ops->check_tol, ex->outs));
	if (rename(tmp, path) != 0)
		return sl_seterr(SL_EIO, "rename %s: %s", tmp, strerror(errno));
	return SL_OK;
}

/* The mesh epoch of an order: the step in the high bits (so a later step
 * is a later epoch) and, in the low 16, a hash of what every rank's order
 * of one plan shares (ranks, slots, policy, profile, predicted step), so a
 * different plan sent again for the same step never meets messages left
 * over from the first. */
static int64_t serve_epoch(const sl_work_order_t *wo)
{
	char key[256];
	uint64_t bits;
	memcpy(&bits, &wo->predicted_step_ms, sizeof bits);
	snprintf(key, sizeof key, "%d/%d/%s/%s/%llx", (int)wo->ranks, (int)wo->nslots, wo->policy,
	         wo->profile, (unsigned long long)bits);
	uint32_t h = serve_hash(key, "");
	return (int64_t)(((wo->step & ((UINT64_C(1) << 46) - 1)) << 16) |
	                 ((h ^ (h >> 16)) & 0xffff));
}

/* One work order: accept or reject, execute, dump, report. */
static void serve_order(serve_t *s, const sl_work_order_t *wo)
{
	worker_order_t *ord = NULL;
	char msg[600];
	sl_err rc = serve_accept(s, wo, &ord);
	if (rc != SL_OK) {
		snprintf(msg, sizeof msg, "%s", sl_errmsg());
		serve_say("step %llu: rejected: %s", (unsigned long long)wo->step, msg);
		if (sl_worker_ack(s->w, wo, rc, msg) != SL_OK)
			SL_WARN(SL_SUB_KERN, "ack not sent: %s", sl_errmsg());
		return;
	}
	if (sl_worker_ack(s->w, wo, SL_OK, NULL) != SL_OK)
		SL_WARN(SL_SUB_KERN, "ack not sent: %s", sl_errmsg());
	worker_exec_t ex;
	sl_slot_metrics_t *sm = NULL;
	rc = worker_session_exec(s->session, ord, serve_epoch(wo), s->o->dump_dir != NULL, &ex);
	if (rc == SL_OK && s->o->dump_dir)
		rc = serve_dump(s, wo->step, ord, &ex);
	if (rc == SL_OK) {
		sm = calloc(ord->nwork > 0 ? (size_t)ord->nwork : 1, sizeof *sm);
		if (!sm)
			rc = sl_seterr(SL_ENOMEM, "metrics: out of memory");
	}
	s->last_failed = rc != SL_OK;
	if (rc != SL_OK) {
		char why[512];
		snprintf(why, sizeof why, "%s", sl_errmsg());
		snprintf(msg, sizeof msg, "execution failed: %s", why);
		serve_say("step %llu: failed: %s", (unsigned long long)wo->step, why);
		/* instead of metrics: sluiced records the step as failed for this
		 * rank and tells the job's client and other workers */
		if (!serve_stop && sl_worker_step_failed(s->w, wo->step, rc, msg) != SL_OK)
			SL_WARN(SL_SUB_KERN, "step failure not sent: %s", sl_errmsg());
		worker_order_free(&ord);
		return;
	}
	int64_t tokens = 0;
	for (int32_t i = 0; i < ord->nwork; i++) {
		const worker_slot_report_t *r = &ex.rep[i];
		sm[i].slot = r->slot;
		sm[i].compute_ms = r->fwd.compute_ms + r->bwd.compute_ms;
		sm[i].comm_ms = r->fwd.comm_ms + r->bwd.comm_ms;
		sm[i].bytes_sent = (uint64_t)(r->fwd.bytes_sent + r->bwd.bytes_sent);
		sm[i].bytes_recv = (uint64_t)(r->fwd.bytes_recv + r->bwd.bytes_recv);
		tokens += r->ntok;
	}
	if (sl_worker_metrics(s->w, wo->step, ex.wall_ms, sm, ord->nwork) != SL_OK)
		SL_WARN(SL_SUB_KERN, "metrics not sent: %s", sl_errmsg());
	serve_say("step %llu: done, %d groups, %lld tokens, %.3f ms", (unsigned long long)wo->step,
	          (int)ord->nwork, (long long)tokens, ex.wall_ms);
	free(sm);
	worker_exec_fini(&ex);
	worker_order_free(&ord);
}

int worker_serve(const worker_backend_ops_t *ops, const worker_serve_opts_t *o)
{
	serve_t s;
	memset(&s, 0, sizeof s);
	s.o = o;
	s.ops = ops;
	s.copts.server_key = o->server_key;
	s.copts.secret_key_file = o->secret_key_file;
	const char *prefix = "sluice-worker";
	if (o->endpoint)
		snprintf(s.endpoint, sizeof s.endpoint, "%s", o->endpoint);
	else
		sl_default_endpoint(s.endpoint, sizeof s.endpoint);
	sl_err rc = SL_OK;
	if (o->run_dir)
		snprintf(s.run_dir, sizeof s.run_dir, "%s", o->run_dir);
	else
		rc = worker_serve_run_dir(s.endpoint, o->job, s.run_dir, sizeof s.run_dir);
	if (rc == SL_OK && o->dump_dir && mkdir(o->dump_dir, 0700) != 0 && errno != EEXIST)
		rc = sl_seterr(SL_EIO, "--dump %s: %s", o->dump_dir, strerror(errno));
	if (rc == SL_OK && !(s.lost = calloc(SL_MAX_RANKS, 1)))
		rc = sl_seterr(SL_ENOMEM, "out of memory");
	if (rc != SL_OK) {
		fprintf(stderr, "%s[job %s rank %d]: error: %s\n", prefix, o->job, (int)o->rank,
		        sl_errmsg());
		free(s.lost);
		return 1;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = serve_on_signal; /* no SA_RESTART: waits return EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	/* Short tries, so SIGTERM is heard and a daemon that starts late is found. */
	double give_up = sl_now_ms() + o->register_timeout_ms;
	do {
		double left = give_up - sl_now_ms();
		rc = sl_worker_new(s.endpoint, &s.copts, o->job, o->rank,
		                   left > 1000 ? 1000
		                   : left > 1  ? (int)left
		                               : 1,
		                   &s.w);
	} while (rc == SL_ETIMEOUT && !serve_stop && sl_now_ms() < give_up);
	if (rc != SL_OK && serve_stop) {
		serve_say("stopped (signal %d) before registering", (int)serve_stop);
		free(s.lost);
		return 0;
	}
	if (rc != SL_OK) {
		if (rc == SL_ETIMEOUT)
			sl_seterr(
			    rc,
			    "no answer within %d ms (--register-timeout-ms): is sluiced running?",
			    o->register_timeout_ms);
		fprintf(stderr, "%s[job %s rank %d]: error: registering with %s: %s (%s)\n", prefix,
		        o->job, (int)o->rank, s.endpoint, sl_errmsg(), sl_errname(rc));
		free(s.lost);
		return 1;
	}
	serve_say("registered job %s rank %d at %s (run dir %s, backend %s)", o->job, (int)o->rank,
	          s.endpoint, s.run_dir, ops->name);
	while (!serve_stop && (o->max_steps <= 0 || s.orders < o->max_steps)) {
		sl_work_order_t *wo = NULL;
		rc = sl_worker_recv(s.w, 200, &wo);
		serve_events(&s);
		if (rc == SL_ETIMEOUT)
			continue;
		if (rc != SL_OK) {
			if (!serve_stop) {
				fprintf(stderr, "%s[job %s rank %d]: %s (%s)\n", prefix, o->job,
				        (int)o->rank, sl_errmsg(), sl_errname(rc));
				usleep(100000); /* a daemon error is no reason to spin */
			}
			continue;
		}
		s.orders++;
		serve_order(&s, wo);
		sl_work_order_free(&wo);
	}
	if (serve_stop)
		serve_say("stopped (signal %d) after %lld orders", (int)serve_stop,
		          (long long)s.orders);
	else
		serve_say("done after %lld orders", (long long)s.orders);
	if (s.session)
		worker_session_linger(s.session, serve_stop || s.last_failed ? 0 : 1000);
	worker_session_close(&s.session, 0);
	sl_worker_free(&s.w);
	free(s.lost);
	return 0;
}
