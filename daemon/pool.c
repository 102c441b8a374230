/* sluiced: the planner pool. A few pthreads take plan requests from a
 * bounded FIFO and run the policy; finished tasks go to a done list and an
 * eventfd wakes the server loop, which alone touches the sockets. A task
 * plans under its planning deadline and its cancel flag (set by the server
 * at the request's deadline and at the drain cap), so a slow plan holds a
 * thread at most until its own deadline and never past it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

struct daemon_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	daemon_task_t *head, *tail; /* waiting */
	daemon_task_t *done;        /* finished, newest first */
	uint32_t queued, planning;
	int stop;
	int efd;
	int nthreads;
	pthread_t *threads;
};

void daemon_task_free(daemon_task_t **t)
{
	if (t == NULL || *t == NULL)
		return;
	comm_request_fini(&(*t)->req);
	sl_plan_free(&(*t)->plan);
	if ((*t)->cost_ok)
		sl_cost_fini(&(*t)->cost);
	free(*t);
	*t = NULL;
}

/* Resolves a profile a request named: a preset, or NAME.json in the
 * daemon's profile_dir (names were checked to be plain file names). */
static sl_err resolve_profile(daemon_task_t *t)
{
	const sl_profile_t *p = sl_profile_preset(t->profile_name);
	if (p != NULL) {
		t->profile = *p;
		return SL_OK;
	}
	if (t->profile_dir[0] != '\0') {
		char path[DAEMON_STR_MAX + SL_PROFILE_NAME_MAX + 8];
		snprintf(path, sizeof(path), "%s/%s.json", t->profile_dir, t->profile_name);
		if (access(path, R_OK) == 0)
			return sl_profile_load_json_file(path, &t->profile);
	}
	char names[256] = "";
	for (size_t i = 0; i < sl_profile_preset_count(); i++) {
		strncat(names, i ? ", " : "", sizeof(names) - strlen(names) - 1);
		strncat(names, sl_profile_preset_at(i)->name, sizeof(names) - strlen(names) - 1);
	}
	return sl_seterr(SL_ENOTFOUND, "unknown profile '%s' (presets: %s%s%s)", t->profile_name,
	                 names, t->profile_dir[0] ? "; or NAME.json in " : "",
	                 t->profile_dir[0] ? t->profile_dir : "");
}

/* 1 when the task must stop: the main thread answered it (deadline, drain
 * cap) or its planning deadline has passed. */
static int task_stopped(daemon_task_t *t)
{
	return atomic_load(&t->cancelled) || comm_now_ms() >= t->plan_deadline_ms;
}

/* The test-only stall (PlanOptions.debug_delay_ms): sleeps in short steps
 * so that the task's cancel flag and planning deadline cut it exactly as
 * they cut a policy's search. Returns 0 when it ran to its end, 1 when cut
 * (t->rc/msg/field then say SL_ETIMEOUT). */
static int debug_stall(daemon_task_t *t)
{
	int64_t end = comm_now_ms() + (int64_t)t->req.debug_delay_ms;
	while (comm_now_ms() < end) {
		if (task_stopped(t)) {
			t->rc = SL_ETIMEOUT;
			snprintf(t->msg, sizeof(t->msg),
			         "deadline of %lld ms passed while planning (debug_delay_ms %u stall "
			         "cut%s)",
			         (long long)(t->deadline_ms - t->received_ms), t->req.debug_delay_ms,
			         atomic_load(&t->cancelled) ? " by cancel" : "");
			snprintf(t->field, sizeof(t->field), "plan_request.deadline_ms");
			return 1;
		}
		int64_t left = end - comm_now_ms();
		struct timespec ts = {0, (left < 5 ? (left > 0 ? left : 0) : 5) * 1000000L};
		nanosleep(&ts, NULL);
	}
	return 0;
}

/* The request field to blame for a planner error (the planner's errors do
 * not name wire fields; its messages name the values). */
static const char *planner_field(sl_err rc)
{
	switch (rc) {
	case SL_ENOTFOUND:
		return "plan_request.policy";
	case SL_EINFEASIBLE:
	case SL_ERANGE:
	case SL_EINVAL:
		return "plan_request.lengths";
	case SL_ETIMEOUT:
		return "plan_request.deadline_ms";
	default:
		return "";
	}
}

/* Plans one task; fills rc, msg, field, plan and cost. The policy gets the
 * task's planning deadline and cancel flag, so a request whose deadline
 * passed never keeps this thread. */
static void plan_task(daemon_task_t *t)
{
	sl_clearerr();
	if (atomic_load(&t->cancelled) || comm_now_ms() > t->deadline_ms) {
		t->rc = SL_ETIMEOUT;
		snprintf(t->msg, sizeof(t->msg),
		         "deadline of %lld ms passed while the request waited for a planner thread",
		         (long long)(t->deadline_ms - t->received_ms));
		snprintf(t->field, sizeof(t->field), "plan_request.deadline_ms");
		return;
	}
	if (t->profile_name[0] != '\0' && (t->rc = resolve_profile(t)) != SL_OK) {
		snprintf(t->msg, sizeof(t->msg), "%s", sl_errmsg());
		snprintf(t->field, sizeof(t->field), "plan_request.profile_name");
		return;
	}
	t->rc = sl_cost_init(&t->cost, &t->profile, &t->cluster);
	if (t->rc != SL_OK) {
		snprintf(t->msg, sizeof(t->msg), "%s", sl_errmsg());
		snprintf(t->field, sizeof(t->field),
		         t->rc == SL_EINFEASIBLE ? "plan_request.profile" : "plan_request.cluster");
		sl_cost_fini(&t->cost);
		return;
	}
	t->cost_ok = 1;
	/* Errors of options and ids name their own fields, not the lengths. */
	if (t->req.opts.sp > t->cluster.ranks) {
		t->rc = SL_ERANGE;
		snprintf(t->msg, sizeof(t->msg),
		         "sequence-parallel degree %d is larger than the cluster's %d ranks",
		         t->req.opts.sp, t->cluster.ranks);
		snprintf(t->field, sizeof(t->field), "plan_request.options.sp");
		return;
	}
	if ((t->rc = sl_seqs_check_unique_ids(t->req.seqs, t->req.n)) != SL_OK) {
		snprintf(t->msg, sizeof(t->msg), "%s", sl_errmsg());
		snprintf(t->field, sizeof(t->field), "plan_request.ids");
		return;
	}
	int64_t t0 = comm_now_ms();
	if (t->req.debug_delay_ms > 0 && debug_stall(t))
		return;
	sl_policy_opts_t opts = t->req.opts;
	opts.deadline_ms = (double)t->plan_deadline_ms; /* comm_now_ms is sl_now_ms's clock */
	opts.cancel = &t->cancelled;
	t->rc = sl_plan_request(t->policy, &t->cost, t->req.seqs, t->req.n, &opts, &t->plan);
	t->plan_wall_ms = (double)(comm_now_ms() - t0);
	if (t->rc != SL_OK) {
		snprintf(t->msg, sizeof(t->msg), "%s", sl_errmsg());
		snprintf(t->field, sizeof(t->field), "%s", planner_field(t->rc));
	}
}

static void *pool_main(void *arg)
{
	daemon_pool_t *p = arg;
	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (!p->stop && p->head == NULL)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stop) {
			pthread_mutex_unlock(&p->lock);
			sl_planner_thread_end(); /* GLPK's per-thread environment */
			return NULL;
		}
		daemon_task_t *t = p->head;
		p->head = t->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->queued--;
		p->planning++;
		pthread_mutex_unlock(&p->lock);

		plan_task(t);

		pthread_mutex_lock(&p->lock);
		p->planning--;
		t->next = p->done;
		p->done = t;
		pthread_mutex_unlock(&p->lock);
		uint64_t one = 1;
		while (write(p->efd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
	}
}

sl_err daemon_pool_start(int n, daemon_pool_t **out, int *done_fd)
{
	*out = NULL;
	daemon_pool_t *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return sl_seterr(SL_ENOMEM, "planner pool");
	p->threads = calloc((size_t)n, sizeof(pthread_t));
	p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->threads == NULL || p->efd < 0) {
		if (p->efd >= 0)
			close(p->efd);
		free(p->threads);
		free(p);
		return sl_seterr(SL_EIO, "planner pool: %s", strerror(errno));
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	for (int i = 0; i < n; i++) {
		if (pthread_create(&p->threads[i], NULL, pool_main, p) != 0) {
			p->nthreads = i;
			daemon_pool_stop(&p);
			return sl_seterr(SL_EIO, "planner pool: pthread_create failed for thread %d", i);
		}
		p->nthreads = i + 1;
	}
	*done_fd = p->efd;
	*out = p;
	return SL_OK;
}

void daemon_pool_push(daemon_pool_t *p, daemon_task_t *t)
{
	t->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->tail != NULL)
		p->tail->next = t;
	else
		p->head = t;
	p->tail = t;
	p->queued++;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

daemon_task_t *daemon_pool_take_done(daemon_pool_t *p)
{
	uint64_t v;
	while (read(p->efd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&p->lock);
	daemon_task_t *d = p->done;
	p->done = NULL;
	pthread_mutex_unlock(&p->lock);
	/* The list is newest first; reverse it so replies keep their order. */
	daemon_task_t *rev = NULL;
	while (d != NULL) {
		daemon_task_t *next = d->next;
		d->next = rev;
		rev = d;
		d = next;
	}
	return rev;
}

void daemon_pool_counts(daemon_pool_t *p, uint32_t *queued, uint32_t *planning)
{
	pthread_mutex_lock(&p->lock);
	*queued = p->queued;
	*planning = p->planning;
	pthread_mutex_unlock(&p->lock);
}

void daemon_pool_stop(daemon_pool_t **pp)
{
	if (pp == NULL || *pp == NULL)
		return;
	daemon_pool_t *p = *pp;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	/* Tasks still queued or done are not freed: the server owns every task
	 * through its in-flight list and frees them itself. */
	close(p->efd);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p);
	*pp = NULL;
}
