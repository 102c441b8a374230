/* sluice status: what sluiced is doing — counters, and per job its
 * workers and recent steps with acks and per-rank metrics. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "sluice/client.h"

static const char *const status_formats[] = {"table", "json", NULL};

static long long jint(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static double jnum(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_number(v) ? json_number_value(v) : 0.0 / 0.0;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static void print_job(FILE *f, json_t *job)
{
	json_t *workers = json_object_get(job, "workers"), *steps = json_object_get(job, "steps");
	size_t i, alive = 0;
	json_t *w, *st;
	json_array_foreach(workers, i, w) alive += json_is_true(json_object_get(w, "alive"));
	fprintf(f, "\njob %s: %lld plans, %lld errors, %zu workers (%zu alive)\n", jstr(job, "job"),
	        jint(job, "plans"), jint(job, "errors"), json_array_size(workers), alive);
	if (json_array_size(workers) > 0) {
		fprintf(f, "  %5s %5s %8s %-20s %10s %7s %7s\n", "rank", "alive", "pid", "host",
		        "seen ms", "orders", "acks");
		json_array_foreach(workers, i, w)
			fprintf(f, "  %5lld %5s %8lld %-20.20s %10lld %7lld %7lld\n", jint(w, "rank"),
			        json_is_true(json_object_get(w, "alive")) ? "yes" : "no", jint(w, "pid"),
			        jstr(w, "host"), jint(w, "last_seen_ms"), jint(w, "orders"), jint(w, "acks"));
	}
	if (json_array_size(steps) == 0)
		return;
	fprintf(f, "  %8s %-18s %7s %10s %10s %10s %8s %5s %5s %5s %5s %5s %5s\n", "step", "policy",
	        "seqs", "tokens", "pred ms", "ideal ms", "plan ms", "sent", "ack", "nack", "done",
	        "fail", "lost");
	json_array_foreach(steps, i, st) {
		const char *err = jstr(st, "error");
		if (err[0] != '\0') {
			fprintf(f, "  %8lld %-18.18s %7lld  error: %s\n", jint(st, "step"),
			        jstr(st, "policy"), jint(st, "nseqs"), err);
			continue;
		}
		fprintf(f,
		        "  %8lld %-18.18s %7lld %10lld %10.1f %10.1f %8.1f %5lld %5lld %5lld %5lld %5lld "
		        "%5zu\n",
		        jint(st, "step"), jstr(st, "policy"), jint(st, "nseqs"), jint(st, "tokens"),
		        jnum(st, "predicted_step_ms"), jnum(st, "ideal_ms"), jnum(st, "planner_ms"),
		        jint(st, "dispatched"), jint(st, "acked"), jint(st, "nacked"),
		        jint(st, "completed"), jint(st, "failed"),
		        json_array_size(json_object_get(st, "lost_ranks")));
		/* why a rank rejected or failed its work order */
		size_t k;
		json_t *o;
		json_array_foreach(json_object_get(st, "outcomes"), k, o) {
			const char *state = jstr(o, "state");
			if (strcmp(state, "rejected") == 0 || strcmp(state, "failed") == 0)
				fprintf(f, "  %8s rank %lld %s: %s\n", "", jint(o, "rank"), state,
				        jstr(o, "error"));
		}
	}
	/* the newest step's measurements, one line per reporting rank */
	st = json_array_get(steps, json_array_size(steps) - 1);
	json_t *ms = json_object_get(st, "metrics");
	if (json_array_size(ms) == 0)
		return;
	fprintf(f, "  step %lld measured: %5s %10s %10s %10s %12s %12s %5s\n", jint(st, "step"),
	        "rank", "step ms", "compute ms", "comm ms", "bytes sent", "bytes recv", "slots");
	json_t *m;
	json_array_foreach(ms, i, m)
		fprintf(f, "  %*s %5lld %10.2f %10.2f %10.2f %12lld %12lld %5zu\n", 18, "",
		        jint(m, "rank"), jnum(m, "step_ms"), jnum(m, "compute_ms"), jnum(m, "comm_ms"),
		        jint(m, "bytes_sent"), jint(m, "bytes_recv"),
		        json_array_size(json_object_get(m, "slots")));
}

int cli_cmd_status(int argc, char **argv)
{
	const char *endpoint = NULL, *server_key = NULL, *secret_key = NULL, *job = NULL;
	int64_t steps = 5, timeout_ms = 5000;
	int format = 0;
	char **args;
	int nargs;
	const cli_opt_t opts[] = {
		{"endpoint", 'e', CLI_OPT_STR, &endpoint, "E", "sluiced's endpoint (ipc://PATH, tcp://HOST:PORT)",
		 "$SLUICE_ENDPOINT or the local socket", 1, 0, NULL},
		{"server-key", 0, CLI_OPT_STR, &server_key, "KEY|FILE",
		 "tcp: the daemon's public key (Z85 or a .pub file)", NULL, 1, 0, NULL},
		{"secret-key", 0, CLI_OPT_STR, &secret_key, "FILE",
		 "tcp: this client's secret key file (from `sluice keygen`)", NULL, 1, 0, NULL},
		{"job", 0, CLI_OPT_STR, &job, "NAME", "show only this job", "every job", 1, 0, NULL},
		{"steps", 0, CLI_OPT_INT, &steps, "N", "recent steps per job (0 = all kept)", "5", 0,
		 1 << 20, NULL},
		{"timeout", 0, CLI_OPT_INT, &timeout_ms, "MS", "how long to wait for the reply", "5000",
		 1, 86400000, NULL},
		{"format", 0, CLI_OPT_CHOICE, &format, "FMT", "output: table|json", "table", 1, 0,
		 status_formats},
		{0},
	};
	const cli_spec_t spec = {
		.name = "status",
		.usage = "[options]",
		.description =
			"Asks sluiced what it is doing: request counters, and for each job its\n"
			"registered workers (alive, last seen, orders, acks) and its recent steps\n"
			"(predicted and ideal step time, planner time, work orders sent, acked,\n"
			"rejected, lost ranks, errors) with the newest step's per-rank measurements.",
		.opts = opts,
		.min_args = 0,
		.max_args = 0,
		.epilog = "example:\n  sluice status --endpoint ipc:///run/sluice/sluiced.sock --job run-7",
	};
	int rc = cli_parse(&spec, argc, argv, &args, &nargs);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	sl_client_t *c = NULL;
	char *text = NULL;
	sl_client_opts_t co = {.server_key = server_key, .secret_key_file = secret_key};
	if (sl_client_new(endpoint, &co, &c) != SL_OK ||
	    sl_client_status_json(c, job, (uint32_t)steps, (int)timeout_ms, &text) != SL_OK) {
		sl_client_free(&c);
		return cli_fail("status");
	}
	sl_client_free(&c);
	if (format == 1) {
		printf("%s\n", text);
		sl_free(text);
		return CLI_EXIT_OK;
	}
	json_error_t jerr;
	json_t *root = json_loads(text, 0, &jerr);
	sl_free(text);
	if (root == NULL) {
		sl_seterr(SL_EFORMAT, "status reply: %s", jerr.text);
		return cli_fail("status");
	}
	printf("sluiced %s (pid %lld) on %s, up %.1f s%s\n", jstr(root, "version"), jint(root, "pid"),
	       jstr(root, "endpoint"), (double)jint(root, "uptime_ms") / 1e3,
	       json_is_true(json_object_get(root, "draining")) ? ", draining" : "");
	printf("requests %lld  plans %lld  errors %lld  timeouts %lld  undeliverable %lld  "
	       "queued %lld  planning %lld  threads %lld\n",
	       jint(root, "requests"), jint(root, "plans"), jint(root, "errors"),
	       jint(root, "timeouts"), jint(root, "undeliverable"), jint(root, "queued"),
	       jint(root, "planning"), jint(root, "threads"));
	size_t i;
	json_t *jb;
	json_array_foreach(json_object_get(root, "jobs"), i, jb) print_job(stdout, jb);
	json_decref(root);
	return CLI_EXIT_OK;
}
