/* sluiced: Prometheus metrics. The server loop (and only it) records events
 * through the daemon_metrics_* calls below; libmicrohttpd's own thread
 * serves GET /metrics in the text exposition format (version 0.0.4) from the
 * same numbers, under one mutex. Job labels are bounded by max_jobs: a job
 * the registry forgets is dropped here too. Metric names: docs/metrics.md. */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "daemon.h"

/* Planning latency histogram bounds, seconds. */
static const double plan_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                      0.25,  0.5,    1,     2.5,  5,     10,   30, 60};
#define NBUCKETS (sizeof(plan_buckets) / sizeof(plan_buckets[0]))

typedef struct m_job {
	char name[COMM_JOB_MAX + 1];
	uint64_t steps;
	double predicted_ms; /* of the last plan */
	int64_t workers;
	uint64_t outcomes[DAEMON_OUTCOME_COUNT_];
	struct m_job *next;
} m_job_t;

struct daemon_metrics {
	pthread_mutex_t lock;
	struct MHD_Daemon *httpd;
	daemon_pool_t *pool;
	int threads;
	uint64_t requests[DAEMON_MSG_COUNT_];
	uint64_t replies[DAEMON_REPLY_COUNT_];
	uint64_t errors[SL_ERR_COUNT_];
	uint64_t undeliverable;
	uint64_t plan_count, plan_bucket[NBUCKETS];
	double plan_sum;
	uint64_t scrapes;
	m_job_t *jobs;
};

static const char *const msg_names[DAEMON_MSG_COUNT_] = {
	[DAEMON_MSG_PLAN] = "plan",       [DAEMON_MSG_STATUS] = "status",
	[DAEMON_MSG_HELLO] = "hello",     [DAEMON_MSG_ACK] = "ack",
	[DAEMON_MSG_METRICS] = "metrics", [DAEMON_MSG_STEP_FAILED] = "step_failed",
	[DAEMON_MSG_PONG] = "pong",       [DAEMON_MSG_OTHER] = "other",
};
static const char *const reply_names[DAEMON_REPLY_COUNT_] = {
	[DAEMON_REPLY_PLAN] = "plan",
	[DAEMON_REPLY_ERROR] = "error",
	[DAEMON_REPLY_STATUS] = "status",
	[DAEMON_REPLY_ORDER] = "work_order",
	[DAEMON_REPLY_EVENT] = "event",
};
static const char *const outcome_names[DAEMON_OUTCOME_COUNT_] = {
	[DAEMON_OUTCOME_ACCEPTED] = "accepted",
	[DAEMON_OUTCOME_REJECTED] = "rejected",
	[DAEMON_OUTCOME_COMPLETED] = "completed",
	[DAEMON_OUTCOME_FAILED] = "failed",
};

/* ---- text rendering ---------------------------------------------------------- */

typedef struct m_buf {
	char *p;
	size_t len, cap;
	int oom;
} m_buf_t;

static void put(m_buf_t *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = 1;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = (b->cap + (size_t)n + 1) * 2;
		char *q = realloc(b->p, cap);
		if (q == NULL) {
			b->oom = 1;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
}

static void head(m_buf_t *b, const char *name, const char *type, const char *help)
{
	put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Prometheus floats: +Inf/-Inf/NaN spelled its way, else %.17g. */
static void put_double(m_buf_t *b, double v)
{
	if (isnan(v))
		put(b, "NaN");
	else if (isinf(v))
		put(b, v > 0 ? "+Inf" : "-Inf");
	else
		put(b, "%.17g", v);
}

/* Job names are [A-Za-z0-9._:@+/-] (comm_job_name_ok), so they need no
 * escaping in a label value. */
static char *render(daemon_metrics_t *m, size_t *len)
{
	m_buf_t b = {0};
	b.cap = 4096;
	b.p = malloc(b.cap);
	if (b.p == NULL)
		return NULL;
	b.p[0] = '\0';
	uint32_t queued = 0, planning = 0;
	if (m->pool != NULL)
		daemon_pool_counts(m->pool, &queued, &planning);

	pthread_mutex_lock(&m->lock);
	m->scrapes++;
	head(&b, "sluice_build_info", "gauge", "sluiced version (label), always 1.");
	put(&b, "sluice_build_info{version=\"%s\"} 1\n", SLUICE_VERSION);
	head(&b, "sluice_requests_total", "counter", "Messages received, by kind.");
	for (int k = 0; k < DAEMON_MSG_COUNT_; k++)
		put(&b, "sluice_requests_total{kind=\"%s\"} %llu\n", msg_names[k],
		    (unsigned long long)m->requests[k]);
	head(&b, "sluice_replies_total", "counter", "Messages sent, by kind.");
	for (int k = 0; k < DAEMON_REPLY_COUNT_; k++)
		put(&b, "sluice_replies_total{kind=\"%s\"} %llu\n", reply_names[k],
		    (unsigned long long)m->replies[k]);
	head(&b, "sluice_errors_total", "counter", "Error replies, by error code.");
	for (int k = 1; k < SL_ERR_COUNT_; k++)
		put(&b, "sluice_errors_total{code=\"%s\"} %llu\n", sl_errname((sl_err)k),
		    (unsigned long long)m->errors[k]);
	head(&b, "sluice_undeliverable_total", "counter",
	     "Replies, orders and events whose peer was gone or whose queue was full.");
	put(&b, "sluice_undeliverable_total %llu\n", (unsigned long long)m->undeliverable);
	head(&b, "sluice_plan_duration_seconds", "histogram",
	     "Wall time of planner runs that produced a plan.");
	for (size_t i = 0; i < NBUCKETS; i++) {
		put(&b, "sluice_plan_duration_seconds_bucket{le=\"");
		put_double(&b, plan_buckets[i]);
		put(&b, "\"} %llu\n", (unsigned long long)m->plan_bucket[i]);
	}
	put(&b, "sluice_plan_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
	    (unsigned long long)m->plan_count);
	put(&b, "sluice_plan_duration_seconds_sum ");
	put_double(&b, m->plan_sum);
	put(&b, "\nsluice_plan_duration_seconds_count %llu\n", (unsigned long long)m->plan_count);
	head(&b, "sluice_queue_depth", "gauge", "Plan requests waiting for a planner thread.");
	put(&b, "sluice_queue_depth %u\n", queued);
	head(&b, "sluice_planner_threads_busy", "gauge", "Planner threads planning now.");
	put(&b, "sluice_planner_threads_busy %u\n", planning);
	head(&b, "sluice_planner_threads", "gauge", "Planner threads.");
	put(&b, "sluice_planner_threads %d\n", m->threads);
	head(&b, "sluice_job_steps_total", "counter", "Plans sent to a job.");
	for (m_job_t *j = m->jobs; j != NULL; j = j->next)
		put(&b, "sluice_job_steps_total{job=\"%s\"} %llu\n", j->name,
		    (unsigned long long)j->steps);
	head(&b, "sluice_job_predicted_step_seconds", "gauge",
	     "Predicted step time of the job's last plan (reference cost model).");
	for (m_job_t *j = m->jobs; j != NULL; j = j->next) {
		put(&b, "sluice_job_predicted_step_seconds{job=\"%s\"} ", j->name);
		put_double(&b, j->predicted_ms / 1e3);
		put(&b, "\n");
	}
	head(&b, "sluice_job_workers_connected", "gauge", "Workers registered and alive, per job.");
	for (m_job_t *j = m->jobs; j != NULL; j = j->next)
		put(&b, "sluice_job_workers_connected{job=\"%s\"} %lld\n", j->name,
		    (long long)j->workers);
	head(&b, "sluice_job_worker_outcomes_total", "counter",
	     "Work-order outcomes workers reported, per job.");
	for (m_job_t *j = m->jobs; j != NULL; j = j->next)
		for (int k = 0; k < DAEMON_OUTCOME_COUNT_; k++)
			put(&b, "sluice_job_worker_outcomes_total{job=\"%s\",outcome=\"%s\"} %llu\n",
			    j->name, outcome_names[k], (unsigned long long)j->outcomes[k]);
	head(&b, "sluice_metrics_scrapes_total", "counter", "Scrapes of this endpoint.");
	put(&b, "sluice_metrics_scrapes_total %llu\n", (unsigned long long)m->scrapes);
	pthread_mutex_unlock(&m->lock);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

char *daemon_metrics_text(daemon_metrics_t *m, size_t *len)
{
	return render(m, len);
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *data_size, void **con_cls)
{
	daemon_metrics_t *m = cls;
	(void)version;
	(void)data;
	(void)data_size;
	(void)con_cls;
	struct MHD_Response *r;
	unsigned status;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		static const char msg[] = "only GET /metrics\n";
		r = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg,
		                                    MHD_RESPMEM_PERSISTENT);
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
		if (r != NULL)
			MHD_add_response_header(r, "Allow", "GET, HEAD");
	} else if (strcmp(url, "/metrics") != 0) {
		static const char msg[] = "not found: metrics are at /metrics\n";
		r = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg,
		                                    MHD_RESPMEM_PERSISTENT);
		status = MHD_HTTP_NOT_FOUND;
	} else {
		size_t len = 0;
		char *text = render(m, &len);
		if (text == NULL)
			return MHD_NO;
		r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
		if (r == NULL)
			free(text);
		status = MHD_HTTP_OK;
		if (r != NULL)
			MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	}
	if (r == NULL)
		return MHD_NO;
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Splits HOST:PORT ([v6]:PORT too) and resolves HOST numerically or by name. */
static sl_err resolve(const char *hostport, struct sockaddr_storage *ss)
{
	char host[256];
	const char *colon = strrchr(hostport, ':');
	if (colon == NULL || colon == hostport || colon[1] == '\0')
		return sl_seterr(SL_EINVAL, "metrics: '%s' is not HOST:PORT", hostport);
	size_t hl = (size_t)(colon - hostport);
	const char *h = hostport;
	if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return sl_seterr(SL_EINVAL, "metrics: host of '%s' is too long", hostport);
	memcpy(host, h, hl);
	host[hl] = '\0';
	char *end = NULL;
	long port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 0 || port > 65535)
		return sl_seterr(SL_EINVAL, "metrics: port of '%s' is not 0..65535", hostport);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE};
	struct addrinfo *ai = NULL;
	int e = getaddrinfo(host, colon + 1, &hints, &ai);
	if (e != 0)
		return sl_seterr(SL_EINVAL, "metrics: cannot resolve '%s': %s", host, gai_strerror(e));
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	return SL_OK;
}

sl_err daemon_metrics_start(const char *hostport, daemon_pool_t *pool, int threads,
                            daemon_metrics_t **out, int *port)
{
	*out = NULL;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	SL_CHECK(resolve(hostport, &ss));
	daemon_metrics_t *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return sl_seterr(SL_ENOMEM, "metrics");
	pthread_mutex_init(&m->lock, NULL);
	m->pool = pool;
	m->threads = threads;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* Few, short-lived scrapers: a small connection limit and timeout keep a
	 * misbehaving one from holding resources. */
	m->httpd = MHD_start_daemon(flags, 0, NULL, NULL, answer, m, MHD_OPTION_SOCK_ADDR,
	                            (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, 32u,
	                            MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
	if (m->httpd == NULL) {
		int e = errno;
		pthread_mutex_destroy(&m->lock);
		free(m);
		return sl_seterr(SL_EIO, "metrics: cannot serve HTTP on %s: %s", hostport,
		                 e ? strerror(e) : "libmicrohttpd refused");
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->httpd, MHD_DAEMON_INFO_BIND_PORT);
	*port = info != NULL ? (int)info->port : -1;
	*out = m;
	return SL_OK;
}

void daemon_metrics_stop(daemon_metrics_t **mp)
{
	if (mp == NULL || *mp == NULL)
		return;
	daemon_metrics_t *m = *mp;
	MHD_stop_daemon(m->httpd);
	while (m->jobs != NULL) {
		m_job_t *n = m->jobs->next;
		free(m->jobs);
		m->jobs = n;
	}
	pthread_mutex_destroy(&m->lock);
	free(m);
	*mp = NULL;
}

/* ---- recording (server loop) ------------------------------------------------- */

void daemon_metrics_request(daemon_metrics_t *m, daemon_msg_kind k)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	m->requests[k]++;
	pthread_mutex_unlock(&m->lock);
}

void daemon_metrics_reply(daemon_metrics_t *m, daemon_reply_kind k, sl_err code)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	m->replies[k]++;
	if (k == DAEMON_REPLY_ERROR && code > 0 && code < SL_ERR_COUNT_)
		m->errors[code]++;
	pthread_mutex_unlock(&m->lock);
}

void daemon_metrics_undeliverable(daemon_metrics_t *m)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	m->undeliverable++;
	pthread_mutex_unlock(&m->lock);
}

void daemon_metrics_plan_time(daemon_metrics_t *m, double seconds)
{
	if (m == NULL || !(seconds >= 0))
		return;
	pthread_mutex_lock(&m->lock);
	m->plan_count++;
	m->plan_sum += seconds;
	for (size_t i = 0; i < NBUCKETS; i++)
		if (seconds <= plan_buckets[i])
			m->plan_bucket[i]++;
	pthread_mutex_unlock(&m->lock);
}

/* The job's entry, created when missing (lock held); NULL on ENOMEM. */
static m_job_t *job_entry(daemon_metrics_t *m, const char *job)
{
	m_job_t **pp = &m->jobs;
	for (; *pp != NULL; pp = &(*pp)->next) {
		int c = strcmp((*pp)->name, job);
		if (c == 0)
			return *pp;
		if (c > 0)
			break; /* sorted by name: the exposition is stable */
	}
	m_job_t *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return NULL;
	snprintf(j->name, sizeof(j->name), "%s", job);
	j->next = *pp;
	*pp = j;
	return j;
}

void daemon_metrics_job_step(daemon_metrics_t *m, const char *job, double predicted_ms)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	m_job_t *j = job_entry(m, job);
	if (j != NULL) {
		j->steps++;
		j->predicted_ms = predicted_ms;
	}
	pthread_mutex_unlock(&m->lock);
}

void daemon_metrics_job_workers(daemon_metrics_t *m, const char *job, int64_t connected)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	m_job_t *j = job_entry(m, job);
	if (j != NULL)
		j->workers = connected;
	pthread_mutex_unlock(&m->lock);
}

void daemon_metrics_job_outcome(daemon_metrics_t *m, const char *job, daemon_outcome_kind k)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	m_job_t *j = job_entry(m, job);
	if (j != NULL)
		j->outcomes[k]++;
	pthread_mutex_unlock(&m->lock);
}

void daemon_metrics_job_forget(daemon_metrics_t *m, const char *job)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	for (m_job_t **pp = &m->jobs; *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->name, job) == 0) {
			m_job_t *dead = *pp;
			*pp = dead->next;
			free(dead);
			break;
		}
	pthread_mutex_unlock(&m->lock);
}
