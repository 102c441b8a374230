/* A small real worker for the daemon tests (the real sluice-worker is in
 * worker/): registers rank R of job J with sluiced, receives work orders,
 * checks each shard's zigzag bounds, "runs" it (a checksum over its token
 * ranges, timed), acknowledges and reports per-slot metrics. It prints one
 * line per event on stdout for the test to read:
 *   ready JOB RANK
 *   order STEP groups G shards K tokens T
 *   event lost|joined|failed RANK STEP MESSAGE
 * --fail accepts each order and then reports it failed (sl_worker_step_failed)
 * instead of sending metrics.
 * usage: daemon_test_worker ENDPOINT JOB RANK [--server-key K --secret-key F]
 *        [--reject] [--fail] [--no-metrics] [--orders N] [--timeout MS]                 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/client.h"
#include "sluice/log.h"

static volatile uint64_t sink; /* keeps the checksum loop */

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	sl_client_opts_t opts = {0};
	int reject = 0, fail = 0, metrics = 1;
	long max_orders = -1;
	int timeout_ms = 5000;
	if (argc < 4) {
		fprintf(stderr, "usage: %s ENDPOINT JOB RANK [options]\n", argv[0]);
		return 2;
	}
	for (int i = 4; i < argc; i++) {
		if (strcmp(argv[i], "--server-key") == 0 && i + 1 < argc)
			opts.server_key = argv[++i];
		else if (strcmp(argv[i], "--secret-key") == 0 && i + 1 < argc)
			opts.secret_key_file = argv[++i];
		else if (strcmp(argv[i], "--reject") == 0)
			reject = 1;
		else if (strcmp(argv[i], "--fail") == 0)
			fail = 1;
		else if (strcmp(argv[i], "--no-metrics") == 0)
			metrics = 0;
		else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
			timeout_ms = atoi(argv[++i]);
		else if (strcmp(argv[i], "--orders") == 0 && i + 1 < argc)
			max_orders = atol(argv[++i]);
		else {
			fprintf(stderr, "unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	sl_log_init_from_env();
	opts.heartbeat_ms = 200;
	sl_worker_t *w = NULL;
	if (sl_worker_new(argv[1], &opts, argv[2], atoi(argv[3]), timeout_ms, &w) != SL_OK) {
		fprintf(stderr, "test worker: %s\n", sl_errmsg());
		return 1;
	}
	printf("ready %s %s\n", argv[2], argv[3]);
	fflush(stdout);
	for (long got = 0; max_orders < 0 || got < max_orders;) {
		sl_work_order_t *o = NULL;
		sl_err rc = sl_worker_recv(w, 100, &o);
		sl_event_t ev;
		while (sl_worker_next_event(w, &ev)) {
			printf("event %s %d %llu %s\n",
			       ev.kind == SL_EVENT_WORKER_LOST     ? "lost"
			       : ev.kind == SL_EVENT_WORKER_JOINED ? "joined"
			       : ev.kind == SL_EVENT_STEP_FAILED   ? "failed"
			                                           : "none",
			       ev.rank, (unsigned long long)ev.step, ev.message);
			fflush(stdout);
		}
		if (rc == SL_ETIMEOUT)
			continue;
		if (rc != SL_OK) {
			fprintf(stderr, "test worker: %s\n", sl_errmsg());
			continue;
		}
		got++;
		long shards = 0, tokens = 0;
		sl_slot_metrics_t *sm = calloc((size_t)(o->ngroups + 1), sizeof(*sm));
		int bad = 0;
		for (int32_t g = 0; g < o->ngroups; g++) {
			const sl_order_group_t *og = &o->groups[g];
			double t0 = now_ms();
			uint64_t sum = 0;
			for (int32_t k = 0; k < og->nshards; k++) {
				const sl_shard_t *s = &og->shards[k];
				for (int c = 0; c < 2; c++) {
					if (s->begin[c] > s->end[c] || s->end[c] > s->length)
						bad = 1;
					for (int64_t t = s->begin[c]; t < s->end[c]; t++)
						sum += (uint64_t)t * 2654435761u;
					tokens += s->end[c] - s->begin[c];
				}
				shards++;
			}
			sm[g].slot = og->slot;
			sink += sum;
			sm[g].compute_ms = now_ms() - t0;
			sm[g].comm_ms = 0;
			sm[g].bytes_sent = (uint64_t)tokens * 4;
			sm[g].bytes_recv = (uint64_t)tokens * 4;
		}
		if (reject || bad)
			sl_worker_ack(w, o, SL_ECHECK, bad ? "shard outside its sequence" : "told to reject");
		else
			sl_worker_ack(w, o, SL_OK, NULL);
		if (fail && !reject && !bad)
			sl_worker_step_failed(w, o->step, SL_EIO, "told to fail");
		else if (metrics)
			sl_worker_metrics(w, o->step, 1.0, sm, o->ngroups);
		printf("order %llu groups %d shards %ld tokens %ld\n", (unsigned long long)o->step,
		       o->ngroups, shards, tokens);
		fflush(stdout);
		free(sm);
		sl_work_order_free(&o);
	}
	sl_worker_free(&w);
	return 0;
}
