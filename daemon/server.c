/* sluiced: the server loop. One thread owns the ROUTER socket and all state
 * (jobs, workers, step history); planning runs on the pool. Every request
 * gets exactly one reply: its plan, or an error naming what was wrong (bad
 * bytes, wrong message type, out-of-range values, unknown policy/profile,
 * infeasible batch, a full queue, an expired deadline, shutdown). */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "daemon.h"

/* ---- replies ---------------------------------------------------------------------- */

/* Sends env to a peer; a gone peer or a full queue counts as undeliverable
 * (the daemon never blocks on one slow or dead peer). */
sl_err daemon_send(server_t *s, const uint8_t *rid, size_t rid_len, Sluice__Envelope *env,
                   uint64_t request_id)
{
	env->version = COMM_WIRE_VERSION;
	env->request_id = request_id;
	sl_err rc = comm_send(s->router, rid, rid_len, env);
	switch (env->body_case) {
	case SLUICE__ENVELOPE__BODY_PLAN:
		daemon_metrics_reply(s->metrics, DAEMON_REPLY_PLAN, SL_OK);
		break;
	case SLUICE__ENVELOPE__BODY_ERROR:
		daemon_metrics_reply(s->metrics, DAEMON_REPLY_ERROR, (sl_err)env->error->code);
		break;
	case SLUICE__ENVELOPE__BODY_STATUS_REPLY:
		daemon_metrics_reply(s->metrics, DAEMON_REPLY_STATUS, SL_OK);
		break;
	case SLUICE__ENVELOPE__BODY_WORK_ORDER:
		daemon_metrics_reply(s->metrics, DAEMON_REPLY_ORDER, SL_OK);
		break;
	case SLUICE__ENVELOPE__BODY_EVENT:
		daemon_metrics_reply(s->metrics, DAEMON_REPLY_EVENT, SL_OK);
		break;
	default:
		break;
	}
	if (rc != SL_OK) {
		daemon_metrics_undeliverable(s->metrics);
		char id[COMM_ID_MAX + 1];
		memcpy(id, rid, rid_len);
		id[rid_len] = '\0';
		char clean[COMM_ID_MAX + 1];
		comm_sanitize(clean, sizeof(clean), id);
		s->undeliverable++;
		SL_INFO(SL_SUB_DAEMON, "could not send %s to %s: %s", comm_body_name(env->body_case),
		        clean, sl_errmsg());
	}
	return rc;
}

void daemon_reply_error(server_t *s, const uint8_t *rid, size_t rid_len, uint64_t request_id,
                        sl_err code, const char *field, const char *fmt, ...)
{
	char msg[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	comm_arena_t a = {0};
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__Error err;
	comm_error_fill(&a, &err, code, msg, field);
	env.body_case = SLUICE__ENVELOPE__BODY_ERROR;
	env.error = &err;
	s->errors++;
	SL_DEBUG(SL_SUB_DAEMON, "error reply %s [%s]: %s", sl_errname(code), field ? field : "", msg);
	daemon_send(s, rid, rid_len, &env, request_id);
	comm_arena_free(&a);
}

/* ---- dispatch of incoming messages --------------------------------------------------- */

/* The metrics' name for a received message. */
static daemon_msg_kind msg_kind(Sluice__Envelope__BodyCase c)
{
	switch (c) {
	case SLUICE__ENVELOPE__BODY_PLAN_REQUEST:
		return DAEMON_MSG_PLAN;
	case SLUICE__ENVELOPE__BODY_STATUS_REQUEST:
		return DAEMON_MSG_STATUS;
	case SLUICE__ENVELOPE__BODY_HELLO:
		return DAEMON_MSG_HELLO;
	case SLUICE__ENVELOPE__BODY_HEARTBEAT:
		return DAEMON_MSG_PONG;
	case SLUICE__ENVELOPE__BODY_ACK:
		return DAEMON_MSG_ACK;
	case SLUICE__ENVELOPE__BODY_METRICS:
		return DAEMON_MSG_METRICS;
	case SLUICE__ENVELOPE__BODY_STEP_FAILED:
		return DAEMON_MSG_STEP_FAILED;
	default:
		return DAEMON_MSG_OTHER;
	}
}

static void on_message(server_t *s, const uint8_t *rid, size_t rid_len, const void *data,
                       size_t len)
{
	if ((int64_t)len > s->cfg.max_request_bytes) {
		s->requests++;
		daemon_metrics_request(s->metrics, DAEMON_MSG_OTHER);
		daemon_reply_error(s, rid, rid_len, 0, SL_ERANGE, "envelope",
		                   "message of %zu bytes (limit max_request_bytes=%lld)", len,
		                   (long long)s->cfg.max_request_bytes);
		return;
	}
	Sluice__Envelope *env = NULL;
	if (comm_decode(data, len, &env) != SL_OK) {
		s->requests++;
		daemon_metrics_request(s->metrics, DAEMON_MSG_OTHER);
		daemon_reply_error(s, rid, rid_len, 0, SL_EPROTO, "envelope", "%s", sl_errmsg());
		return;
	}
	uint64_t id = env->request_id;
	daemon_metrics_request(s->metrics, msg_kind(env->body_case));
	switch (env->body_case) {
	case SLUICE__ENVELOPE__BODY_PLAN_REQUEST:
		daemon_on_plan_request(s, rid, rid_len, id, env->plan_request);
		break;
	case SLUICE__ENVELOPE__BODY_STATUS_REQUEST:
		daemon_on_status(s, rid, rid_len, id, env->status_request);
		break;
	case SLUICE__ENVELOPE__BODY_HELLO:
		daemon_on_hello(s, rid, rid_len, id, env->hello);
		break;
	case SLUICE__ENVELOPE__BODY_HEARTBEAT: {
		d_worker_t *w = daemon_worker_by_rid(s, rid, rid_len, NULL);
		if (w != NULL)
			w->last_seen_ms = comm_now_ms();
		else
			daemon_reply_error(s, rid, rid_len, id, SL_ENOTFOUND, "hello",
			                   "heartbeat from a peer that is not a registered worker; send hello "
			                   "first");
		break;
	}
	case SLUICE__ENVELOPE__BODY_ACK:
		daemon_on_ack(s, rid, rid_len, id, env->ack);
		break;
	case SLUICE__ENVELOPE__BODY_METRICS:
		daemon_on_metrics(s, rid, rid_len, id, env->metrics);
		break;
	case SLUICE__ENVELOPE__BODY_STEP_FAILED:
		daemon_on_step_failed(s, rid, rid_len, id, env->step_failed);
		break;
	default:
		s->requests++;
		daemon_reply_error(s, rid, rid_len, id, SL_EPROTO, "envelope.body",
		                   "sluiced does not accept %s messages (it takes plan_request, "
		                   "status_request, hello, heartbeat, ack, metrics and step_failed)",
		                   comm_body_name(env->body_case));
	}
	comm_envelope_free(&env);
}

static void read_router(server_t *s)
{
	for (int k = 0; k < ROUTER_BATCH; k++) {
		uint8_t rid[COMM_ID_MAX + 1];
		size_t rid_len = 0;
		zmq_msg_t msg;
		sl_err rc = comm_recv(s->router, rid, &rid_len, &msg);
		if (rc == SL_EBUSY) {
			zmq_msg_close(&msg);
			return;
		}
		if (rc == SL_EPROTO && rid_len > 0) {
			s->requests++;
			daemon_reply_error(s, rid, rid_len, 0, SL_EPROTO, "envelope", "%s", sl_errmsg());
		} else if (rc != SL_OK) {
			SL_WARN(SL_SUB_DAEMON, "receive failed: %s", sl_errmsg());
		} else {
			on_message(s, rid, rid_len, zmq_msg_data(&msg), zmq_msg_size(&msg));
		}
		zmq_msg_close(&msg);
	}
}

/* ---- reload, signals ----------------------------------------------------------------- */

static void apply_log_level(const daemon_config_t *c)
{
	if (getenv("SLUICE_LOG") == NULL)
		sl_log_set_level((sl_log_level)sl_log_level_parse(c->log_level));
}

static void reload(server_t *s)
{
	char buf[96];
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%llu",
	         (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
	daemon_notify(buf);
	daemon_config_t nc;
	if (daemon_config_build(s->args, &nc) != SL_OK) {
		SL_ERROR(SL_SUB_DAEMON, "SIGHUP: configuration not reloaded: %s", sl_errmsg());
		daemon_notify("READY=1\nSTATUS=reload failed; old configuration kept");
		return;
	}
	/* Options without the reload mark keep their running values. */
	for (size_t i = 0; i < daemon_nopts; i++) {
		const daemon_opt_t *o = &daemon_opts[i];
		if (o->reload)
			continue;
		size_t sz = o->type == DCONF_STRING ? o->size : sizeof(int64_t);
		if (memcmp((char *)&nc + o->off, (char *)&s->cfg + o->off, sz) != 0) {
			char now[DAEMON_STR_MAX];
			daemon_config_format(&s->cfg, o, now, sizeof(now));
			SL_WARN(SL_SUB_DAEMON, "SIGHUP: %s changed; restart sluiced to apply it (keeping %s)",
			        o->name, now);
			memcpy((char *)&nc + o->off, (char *)&s->cfg + o->off, sz);
		}
	}
	if (s->zap != NULL && comm_zap_reload(s->zap, nc.authorized_keys) != SL_OK) {
		SL_ERROR(SL_SUB_DAEMON, "SIGHUP: authorized_keys not reloaded: %s", sl_errmsg());
		snprintf(nc.authorized_keys, sizeof(nc.authorized_keys), "%s", s->cfg.authorized_keys);
	}
	s->cfg = nc;
	apply_log_level(&s->cfg);
	daemon_record_open(s);
	SL_INFO(SL_SUB_DAEMON, "configuration reloaded (policy %s, profile %s, queue_max %lld)",
	        s->cfg.policy, s->cfg.profile, (long long)s->cfg.queue_max);
	daemon_notify("READY=1\nSTATUS=configuration reloaded");
}

/* The name of a signal the loop stops on (for logs and replies). */
static const char *stop_signal_name(uint32_t signo)
{
	return signo == SIGINT ? "SIGINT" : "SIGTERM";
}

/* SIGHUP reloads. The first SIGTERM/SIGINT starts the drain; a second one
 * during it abandons the drain (serve answers what is left and returns), as
 * operators expect of a daemon that is taking too long to stop. Two signals
 * that arrive before the loop reads the first are one (standard signals do
 * not queue), so only a signal after the drain began counts as a second. */
static void read_signals(server_t *s)
{
	struct signalfd_siginfo si;
	while (read(s->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			reload(s);
		} else if (!s->draining) {
			s->draining = 1;
			s->drain_signal = stop_signal_name(si.ssi_signo);
			s->drain_deadline_ms = comm_now_ms() + s->cfg.drain_timeout_ms;
			SL_INFO(SL_SUB_DAEMON, "%s: draining %u in-flight requests, then exiting",
			        s->drain_signal, s->ninflight);
			daemon_notify("STOPPING=1\nSTATUS=draining");
		} else if (s->abandon_signal == NULL) {
			s->abandon_signal = stop_signal_name(si.ssi_signo);
		}
	}
}

/* ---- the loop ----------------------------------------------------------------------- */

static void take_done(server_t *s)
{
	daemon_task_t *t = daemon_pool_take_done(s->pool);
	while (t != NULL) {
		daemon_task_t *next = t->next;
		daemon_on_task_done(s, t);
		t = next;
	}
}

/* Ends a drain early (the drain cap, a second signal): answers every request
 * still unanswered with SL_ECLOSED and why, and cancels every task, so the
 * planner threads stop at their next check and can be joined at once; their
 * late results are never sent (the tasks are freed with the in-flight list).
 * Returns how many requests were cut. */
static uint32_t abandon_inflight(server_t *s, const char *why)
{
	uint32_t cut = 0;
	for (daemon_task_t *t = s->inflight; t != NULL; t = t->in_next) {
		atomic_store(&t->cancelled, 1);
		if (t->answered)
			continue;
		t->answered = 1;
		cut++;
		daemon_reply_error(s, t->rid, t->rid_len, t->request_id, SL_ECLOSED, "", "%s", why);
	}
	return cut;
}

/* The drain's end: 1 when serve should return (every request answered or
 * cut), 0 while it goes on; *wait is lowered to the drain cap. */
static int drain_done(server_t *s, int64_t now, int64_t *wait)
{
	char why[200];
	if (s->abandon_signal != NULL) {
		snprintf(why, sizeof(why),
		         "sluiced is shutting down: drain abandoned by a second signal (%s after %s) "
		         "before this plan was done",
		         s->abandon_signal, s->drain_signal);
		uint32_t cut = abandon_inflight(s, why);
		SL_WARN(SL_SUB_DAEMON, "%s during the drain: drain abandoned, %u requests cut",
		        s->abandon_signal, cut);
		daemon_notify("STATUS=drain abandoned");
		return 1;
	}
	if (s->ninflight == 0)
		return 1;
	if (now >= s->drain_deadline_ms) {
		snprintf(why, sizeof(why),
		         "sluiced stopped before this plan was done (drain_timeout_ms=%lld)",
		         (long long)s->cfg.drain_timeout_ms);
		uint32_t cut = abandon_inflight(s, why);
		SL_WARN(SL_SUB_DAEMON, "drain_timeout_ms=%lld passed: %u requests cut",
		        (long long)s->cfg.drain_timeout_ms, cut);
		return 1;
	}
	if (s->drain_deadline_ms - now < *wait)
		*wait = s->drain_deadline_ms - now;
	return 0;
}

static int serve(server_t *s)
{
	s->next_hb_ms = comm_now_ms() + s->cfg.heartbeat_ms;
	for (;;) {
		int64_t now = comm_now_ms();
		int64_t wait = daemon_check_deadlines(s, now);
		if (now >= s->next_hb_ms) {
			daemon_heartbeat_workers(s);
			s->next_hb_ms = now + s->cfg.heartbeat_ms;
		}
		if (s->next_hb_ms - now < wait)
			wait = s->next_hb_ms - now;
		if (s->draining && drain_done(s, now, &wait))
			return 0;
		if (wait < 0)
			wait = 0;
		zmq_pollitem_t items[3] = {
			{s->router, 0, ZMQ_POLLIN, 0},
			{NULL, s->done_fd, ZMQ_POLLIN, 0},
			{NULL, s->sig_fd, ZMQ_POLLIN, 0},
		};
		int r = zmq_poll(items, 3, (long)(wait + 1));
		if (r < 0) {
			if (zmq_errno() == EINTR)
				continue;
			SL_ERROR(SL_SUB_DAEMON, "zmq_poll: %s", zmq_strerror(zmq_errno()));
			return 1;
		}
		if (items[2].revents & ZMQ_POLLIN)
			read_signals(s);
		if (items[1].revents & ZMQ_POLLIN)
			take_done(s);
		if (items[0].revents & ZMQ_POLLIN)
			read_router(s);
	}
}

int daemon_run(const daemon_args_t *args, daemon_config_t *cfg)
{
	server_t *s = calloc(1, sizeof(*s));
	int status = 1;
	if (s == NULL) {
		fprintf(stderr, "sluiced: out of memory\n");
		return 1;
	}
	s->cfg = *cfg;
	s->args = args;
	s->sig_fd = s->done_fd = -1;
	s->started_ms = comm_now_ms();
	apply_log_level(&s->cfg);

	/* Signals are read from a signalfd by the loop; block them before any
	 * thread (planner or ZeroMQ I/O) exists, so every thread inherits the mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	s->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->sig_fd < 0) {
		sl_seterr(SL_EIO, "signalfd: %s", strerror(errno));
		goto out;
	}

	s->ctx = zmq_ctx_new();
	if (s->ctx == NULL) {
		COMM_ZMQ_ERR("zmq_ctx_new");
		goto out;
	}
	int is_tcp = 0;
	comm_endpoint_parse(s->cfg.endpoint, &is_tcp, NULL, 0);
	if (is_tcp && s->cfg.curve_secret_key[0] != '\0' &&
	    comm_zap_start(s->ctx, s->cfg.authorized_keys, &s->zap) != SL_OK)
		goto out;
	comm_server_opts_t so = {
		.endpoint = s->cfg.endpoint,
		.secret_key_file = s->cfg.curve_secret_key,
		.allow_plain_tcp = (int)s->cfg.allow_plain_tcp,
		.sndhwm = (int)s->cfg.hwm,
		.rcvhwm = (int)s->cfg.hwm,
		/* The transport drops peers past twice the limit; between the
		 * two, the request is read and refused with a reply. */
		.max_msg_bytes = s->cfg.max_request_bytes * 2 + (1 << 20),
		.heartbeat_ms = (int)s->cfg.heartbeat_ms,
		.linger_ms = 1000,
		.ipc_mode = daemon_socket_mode(s->cfg.socket_mode),
		.ipc_gid = daemon_group_id(s->cfg.socket_group),
	};
	if (comm_server_open(s->ctx, &so, &s->router, s->bound, sizeof(s->bound)) != SL_OK)
		goto out;
	daemon_record_open(s);
	if (daemon_pool_start((int)s->cfg.threads, &s->pool, &s->done_fd) != SL_OK)
		goto out;
	if (s->cfg.metrics[0] != '\0') {
		int port = -1;
		if (daemon_metrics_start(s->cfg.metrics, s->pool, (int)s->cfg.threads, &s->metrics,
		                         &port) != SL_OK)
			goto out;
		/* the host as given, the port as bound (0 picks a free one) */
		const char *colon = strrchr(s->cfg.metrics, ':');
		printf("sluiced metrics on http://%.*s:%d/metrics\n", (int)(colon - s->cfg.metrics),
		       s->cfg.metrics, port);
	}

	char ready[400];
	snprintf(ready, sizeof(ready), "READY=1\nMAINPID=%u\nSTATUS=serving on %s", (unsigned)getpid(),
	         s->bound);
	if (daemon_notify(ready) != SL_OK)
		SL_WARN(SL_SUB_DAEMON, "sd_notify: %s", sl_errmsg());
	printf("sluiced %s listening on %s (pid %u, %lld planner threads, policy %s)\n",
	       SLUICE_VERSION, s->bound, (unsigned)getpid(), (long long)s->cfg.threads, s->cfg.policy);
	fflush(stdout);

	status = serve(s);
	SL_INFO(SL_SUB_DAEMON, "exiting: %llu requests, %llu plans, %llu errors",
	        (unsigned long long)s->requests, (unsigned long long)s->plans,
	        (unsigned long long)s->errors);
out:
	if (status != 0 && sl_errmsg()[0] != '\0')
		fprintf(stderr, "sluiced: %s\n", sl_errmsg());
	/* Whatever still plans is cancelled, so joining the threads is quick. */
	for (daemon_task_t *t = s->inflight; t != NULL; t = t->in_next)
		atomic_store(&t->cancelled, 1);
	daemon_metrics_stop(&s->metrics); /* before the pool it reads */
	daemon_pool_stop(&s->pool);
	while (s->inflight != NULL) {
		daemon_task_t *t = s->inflight;
		s->inflight = t->in_next;
		daemon_task_free(&t);
	}
	for (size_t i = 0; i < s->njobs; i++)
		daemon_job_free(&s->jobs[i]);
	free(s->jobs);
	if (s->record != NULL)
		fclose(s->record);
	if (s->router != NULL) {
		zmq_close(s->router);
		/* libzmq leaves the socket file behind; a stale one would only
		 * confuse (clients would connect to nothing), so remove it. */
		char path[256] = "";
		int tcp = 0;
		if (comm_endpoint_parse(s->bound, &tcp, path, sizeof(path)) == SL_OK && !tcp &&
		    path[0] != '\0')
			unlink(path);
	}
	comm_zap_stop(&s->zap);
	if (s->ctx != NULL)
		zmq_ctx_term(s->ctx);
	if (s->sig_fd >= 0)
		close(s->sig_fd);
	free(s);
	return status;
}
