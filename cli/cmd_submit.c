/* sluice submit: one batch of sequence lengths -> a plan from sluiced (the
 * same request `sluice plan` computes locally, answered by the daemon),
 * printed exactly as `sluice plan` prints it (table, JSON or CSV). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sluice/client.h"

int cli_cmd_submit(int argc, char **argv)
{
	cli_cluster_args_t cl;
	cli_trace_args_t tr = {0};
	cli_search_args_t se = {0};
	const char *endpoint = NULL, *server_key = NULL, *secret_key = NULL, *job = "cli",
	           *out_path = NULL;
	int64_t deadline_ms = 0, timeout_ms = 60000;
	uint64_t step = 0;
	int format = 0, no_dispatch = 0, have_cost = 0;
	sl_cost_t cost;
	cli_timeline_t tl = {0};
	char **args;
	int nargs, rc;
	sl_lengths_t lens = {0};
	sl_profile_t prof;
	sl_client_t *c = NULL;
	sl_plan_t *plan = NULL;

	cli_cluster_defaults(&cl);
	const cli_opt_t opts[] = {
		{"endpoint", 'e', CLI_OPT_STR, &endpoint, "E", "sluiced's endpoint (ipc://PATH, tcp://HOST:PORT)",
		 "$SLUICE_ENDPOINT or the local socket", 1, 0, NULL},
		{"server-key", 0, CLI_OPT_STR, &server_key, "KEY|FILE",
		 "tcp: the daemon's public key (Z85 or a .pub file)", NULL, 1, 0, NULL},
		{"secret-key", 0, CLI_OPT_STR, &secret_key, "FILE",
		 "tcp: this client's secret key file (from `sluice keygen`)", NULL, 1, 0, NULL},
		CLI_OPTS_CLUSTER(cl),
		CLI_OPT_POLICY(cl),
		CLI_OPTS_TRACE(tr),
		CLI_OPTS_SEARCH(se, ""),
		{"job", 0, CLI_OPT_STR, &job, "NAME", "job name ([A-Za-z0-9._:@+/-], up to 128)", "cli", 1,
		 0, NULL},
		{"step", 0, CLI_OPT_U64, &step, "N", "training step this batch belongs to", "0", 1, 0,
		 NULL},
		{"deadline", 0, CLI_OPT_INT, &deadline_ms, "MS",
		 "planning deadline (0 = the daemon's default)", "0", 0, 86400000, NULL},
		{"timeout", 0, CLI_OPT_INT, &timeout_ms, "MS", "how long to wait for the reply", "60000", 1,
		 86400000, NULL},
		{"no-dispatch", 0, CLI_OPT_FLAG, &no_dispatch, NULL,
		 "do not push work orders to the job's workers", NULL, 1, 0, NULL},
		{"format", 0, CLI_OPT_CHOICE, &format, "FMT", "output: table|json|csv", "table", 1, 0,
		 cli_formats_tjc},
		{"output", 'o', CLI_OPT_STR, &out_path, "FILE", "write the plan to FILE", "stdout", 1, 0,
		 NULL},
		{0},
	};
	const cli_spec_t spec = {
		.name = "submit",
		.usage = "[options] [LENGTHS|-]",
		.description =
			"Sends one batch of sequence lengths to sluiced and prints the plan it returns.\n"
			"Lengths are read as `sluice plan` reads them (ids are their 0-based positions);\n"
			"the flags mean the same, so both commands give the same plan. A profile given\n"
			"as a file is sent inline. Errors print the daemon's message and the field it\n"
			"blames.",
		.opts = opts,
		.min_args = 0,
		.max_args = 1,
		.epilog = "examples:\n"
		          "  sluice submit --endpoint ipc:///run/sluice/sluiced.sock batch.txt\n"
		          "  sluice submit -e tcp://10.0.0.5:7300 --server-key sluiced.pub \\\n"
		          "      --secret-key me.key --job run-7 --step 12 batch.txt",
	};
	rc = cli_parse(&spec, argc, argv, &args, &nargs);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	const char *path = nargs > 0 ? args[0] : "-";

	sl_plan_req_t req;
	memset(&req, 0, sizeof(req));
	if (sl_profile_preset(cl.profile) != NULL) {
		req.profile = cl.profile;
	} else {
		if (sl_profile_resolve(cl.profile, &prof) != SL_OK)
			return cli_usage_error("submit", "invalid value '%s' for --profile: %s", cl.profile,
			                       sl_errmsg());
		req.inline_profile = &prof;
	}
	/* The local cost model prints the table and CSV as `sluice plan` does. */
	rc = cli_cost_setup("submit", &cl, &cost);
	if (rc != CLI_EXIT_OK)
		goto done;
	have_cost = 1;
	rc = CLI_EXIT_FAIL;
	if (strcmp(path, "-") == 0 && isatty(STDIN_FILENO))
		fprintf(stderr, "sluice submit: reading lengths from stdin (end with Ctrl-D)\n");
	sl_err re = cli_read_lengths(path, &tr, &lens);
	if (re != SL_OK) {
		rc = cli_input_error("submit", re);
		goto done;
	}
	req.job = job;
	req.step = step;
	req.lengths = lens.v;
	req.n = (int64_t)lens.n;
	req.policy = cl.policy;
	req.ranks = (int32_t)cl.ranks;
	req.ranks_per_node = (int32_t)cl.ranks_per_node;
	req.deadline_ms = (uint32_t)deadline_ms;
	req.opts = cli_search_opts(&se);
	req.no_dispatch = no_dispatch;
	sl_client_opts_t co = {.server_key = server_key, .secret_key_file = secret_key};
	if (sl_client_new(endpoint, &co, &c) != SL_OK)
		goto fail;
	if (sl_client_plan(c, &req, (int)timeout_ms, &plan) != SL_OK) {
		const char *field = sl_client_error_field(c);
		if (field[0] != '\0') {
			char msg[1024];
			snprintf(msg, sizeof(msg), "%s", sl_errmsg());
			sl_seterr(SL_EINVAL, "%s [field %s]", msg, field);
		}
		goto fail;
	}
	if (cli_timeline_compute(plan, &cost, &tl) != SL_OK)
		goto fail;
	if (cli_plan_output(out_path, plan, &cost, &tl, format) != SL_OK)
		goto fail;
	rc = CLI_EXIT_OK;
	goto done;
fail:
	cli_fail("submit");
done:
	cli_timeline_free(&tl);
	if (have_cost)
		sl_cost_fini(&cost);
	sl_plan_free(&plan);
	sl_client_free(&c);
	sl_lengths_free(&lens);
	return rc;
}
