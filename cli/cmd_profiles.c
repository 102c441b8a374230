/* sluice profiles: the built-in hardware/model profiles and the capacity
 * (tokens per rank) each derives for a cluster shape. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "cli.h"

int cli_cmd_profiles(int argc, char **argv)
{
	struct {
		int64_t ranks, rpn;
		int format;
	} a = {CLI_DEFAULT_RANKS, CLI_DEFAULT_RPN, 0};
	static const char *const formats[] = {"table", "json", NULL};
	const cli_opt_t opts[] = {
		{"ranks", 0, CLI_OPT_INT, &a.ranks, "N", "ranks the cap is derived for", "64", 1,
		 SL_MAX_RANKS, NULL},
		{"ranks-per-node", 0, CLI_OPT_INT, &a.rpn, "G", "ranks per node", "8", 1, SL_MAX_RANKS,
		 NULL},
		{"format", 0, CLI_OPT_CHOICE, &a.format, "FMT", "output: table|json", "table", 1, 0,
		 formats},
		{0},
	};
	const cli_spec_t spec = {
		.name = "profiles",
		.usage = "[options]",
		.description =
			"Lists the built-in profiles (reference cost model constants) and the derived cap,\n"
			"the activation tokens one rank holds, for --ranks ranks. --format json prints\n"
			"every field, in the form `--profile FILE` reads.",
		.opts = opts,
		.min_args = 0,
		.max_args = 0,
	};
	char **args;
	int nargs;
	int rc = cli_parse(&spec, argc, argv, &args, &nargs);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;

	sl_cluster_t cl = {.ranks = (int32_t)a.ranks, .ranks_per_node = (int32_t)a.rpn};
	if (sl_cluster_check(&cl) != SL_OK)
		return cli_usage_error("profiles", "invalid values --ranks %d --ranks-per-node %d: %s",
		                       cl.ranks, cl.ranks_per_node, sl_errmsg());
	json_t *arr = a.format == 1 ? json_array() : NULL;
	if (a.format == 0)
		printf("%-18s %-8s %10s %8s %9s %9s %8s %10s\n", "profile", "sp comm", "alpha1",
		       "alpha2", "beta ms", "act MiB", "params", "cap");
	for (size_t i = 0; i < sl_profile_preset_count(); i++) {
		const sl_profile_t *p = sl_profile_preset_at(i);
		sl_cost_t cost;
		/* A model too big for this many ranks is listed without a cap. */
		int fits = sl_cost_init(&cost, p, &cl) == SL_OK;
		char cap[32];
		if (fits)
			snprintf(cap, sizeof(cap), "%lld", (long long)cost.cap);
		else
			snprintf(cap, sizeof(cap), "none");
		if (a.format == 0) {
			char params[32];
			if (p->params > 0)
				snprintf(params, sizeof(params), "%.3gB", p->params / 1e9);
			else
				snprintf(params, sizeof(params), "-");
			printf("%-18s %-8s %10.4g %8.5g %9.2f %9.2f %8s %10s\n", p->name,
			       p->sp_comm == SL_SP_RING ? "ring" : "ulysses", p->alpha1, p->alpha2, p->beta,
			       p->act_bytes_per_token / 1048576.0, params, cap);
		} else {
			char *text = sl_profile_to_json(p);
			json_t *prof = text ? json_loads(text, 0, NULL) : NULL;
			json_t *e = json_object();
			free(text);
			if (prof == NULL || e == NULL) {
				json_decref(prof);
				json_decref(e);
				json_decref(arr);
				if (fits)
					sl_cost_fini(&cost);
				sl_seterr(SL_ENOMEM, "cannot render profile %s as JSON", p->name);
				return cli_fail("profiles");
			}
			json_object_set_new(e, "name", json_string(p->name));
			json_object_set_new(e, "ranks", json_integer(cl.ranks));
			json_object_set_new(e, "ranks_per_node", json_integer(cl.ranks_per_node));
			json_object_set_new(e, "cap_tokens", fits ? json_integer(cost.cap) : json_null());
			json_object_set_new(e, "profile", prof);
			json_array_append_new(arr, e);
		}
		if (fits)
			sl_cost_fini(&cost);
	}
	if (a.format == 0)
		printf("\ncap: tokens per rank for %d ranks, %d per node (none: the model state "
		       "alone fills a rank)\n",
		       cl.ranks, cl.ranks_per_node);
	else {
		json_dumpf(arr, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
		putchar('\n');
		json_decref(arr);
	}
	if (fflush(stdout) != 0) {
		sl_seterr(SL_EIO, "writing to stdout failed");
		return cli_fail("profiles");
	}
	return CLI_EXIT_OK;
}
