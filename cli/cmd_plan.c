/* sluice plan: one batch of sequence lengths -> one plan, printed as a
 * table, JSON (plan-format.md) or CSV, and optionally drawn as SVG. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "worker.h"

typedef struct plan_args {
	cli_cluster_args_t cl;
	cli_trace_args_t tr;
	int format;
	const char *out;
	const char *svg;
	const char *trace;
	cli_search_args_t search;
} plan_args_t;

/* Resident tokens per rank of group g: sum of (1 - f) p / d (the memory rule). */
static double group_resident(const sl_plan_t *p, const sl_group_t *g, int64_t *tokens)
{
	const sl_item_t *it = sl_group_items(p, g);
	double res = 0;
	*tokens = 0;
	for (int32_t i = 0; i < g->nitems; i++) {
		if (it[i].seq < 0 || it[i].seq >= p->nseqs)
			continue; /* parsed plans may name unknown ids */
		int64_t len = p->seqs[it[i].seq].length;
		*tokens += len;
		res += sl_cost_resident(len, g->nranks, it[i].offload);
	}
	return res;
}

/* The readable form: a header, one line per group execution, one per rank. */
static void write_table(FILE *f, const sl_plan_t *p, const sl_cost_t *cost,
                        const cli_timeline_t *tl)
{
	char rl[64];
	fprintf(f, "policy      %s\n", p->policy);
	fprintf(f, "profile     %s\n", p->profile);
	fprintf(f, "ranks       %d (%d per node)\n", p->ranks, p->ranks_per_node);
	fprintf(f, "cap         %lld tokens per rank\n", (long long)p->cap_tokens);
	fprintf(f, "sequences   %lld\n", (long long)p->nseqs);
	fprintf(f, "step        %.1f ms\n", p->step_ms);
	fprintf(f, "ideal       %.1f ms\n", p->ideal_ms);
	fprintf(f, "step/ideal  %.3f\n", p->step_ms / p->ideal_ms);
	if (isfinite(p->lp_bound_ms) && p->lp_bound_ms > 0)
		fprintf(f, "lp bound    %.1f ms\n", p->lp_bound_ms);
	if (p->search_truncated)
		fprintf(f, "search      cut short by a limit\n");
	if (p->note[0] != '\0')
		fprintf(f, "note        %s\n", p->note);

	fprintf(f, "\n%4s  %-20s %6s %12s %10s %10s\n", "slot", "ranks", "seqs", "tokens/rank",
	        "start ms", "ms");
	for (int32_t s = 0; s < p->nslots; s++) {
		const sl_slot_t *slot = &p->slots[s];
		for (int32_t k = 0; k < slot->ngroups; k++) {
			int64_t gi = slot->group_off + k;
			const sl_group_t *g = &p->groups[gi];
			int64_t tokens;
			double res = group_resident(p, g, &tokens);
			cli_format_ranks(sl_group_ranks(p, g), g->nranks, rl, sizeof(rl));
			fprintf(f, "%4d  %-20s %6d %12.0f %10.1f %10.1f\n", s, rl, g->nitems, res,
			        tl->start_ms[gi], tl->dur_ms[gi]);
		}
	}
	fprintf(f, "\n%4s %10s %10s %13s\n", "rank", "busy ms", "idle ms", "micro-batches");
	for (int32_t r = 0; r < p->ranks; r++) {
		double idle = tl->makespan_ms - tl->busy_ms[r];
		fprintf(f, "%4d %10.1f %10.1f %13d\n", r, tl->busy_ms[r], idle < 0 ? 0 : idle,
		        tl->nmicro[r]);
	}
	(void)cost;
}

/* One CSV row per group execution. */
static void write_csv(FILE *f, const sl_plan_t *p, const cli_timeline_t *tl)
{
	char rl[4096];
	fprintf(f, "slot,group,ranks,nranks,nseqs,tokens,tokens_per_rank,start_ms,ms,seq_ids\n");
	for (int32_t s = 0; s < p->nslots; s++) {
		const sl_slot_t *slot = &p->slots[s];
		for (int32_t k = 0; k < slot->ngroups; k++) {
			int64_t gi = slot->group_off + k;
			const sl_group_t *g = &p->groups[gi];
			const sl_item_t *it = sl_group_items(p, g);
			int64_t tokens;
			double res = group_resident(p, g, &tokens);
			cli_format_ranks(sl_group_ranks(p, g), g->nranks, rl, sizeof(rl));
			fprintf(f, "%d,%d,", s, k);
			cli_csv_field(f, rl);
			fprintf(f, ",%d,%d,%lld,%.3f,%.6f,%.6f,", g->nranks, g->nitems, (long long)tokens,
			        res, tl->start_ms[gi], tl->dur_ms[gi]);
			for (int32_t i = 0; i < g->nitems; i++)
				if (it[i].seq >= 0 && it[i].seq < p->nseqs)
					fprintf(f, "%s%lld", i ? " " : "", (long long)p->seqs[it[i].seq].id);
			fputc('\n', f);
		}
	}
}

sl_err cli_plan_output(const char *path, const sl_plan_t *plan, const sl_cost_t *cost,
                       const cli_timeline_t *tl, int format)
{
	FILE *out = NULL;
	int must_close = 0;
	sl_err e = SL_OK;

	SL_CHECK(cli_open_out(path, &out, &must_close));
	switch (format) {
	case 0: write_table(out, plan, cost, tl); break;
	case 1: e = sl_plan_write_json(plan, out); break;
	default: write_csv(out, plan, tl); break;
	}
	if (e != SL_OK) {
		if (must_close)
			fclose(out);
		return e;
	}
	return cli_close_out(path, out, must_close);
}

int cli_cmd_plan(int argc, char **argv)
{
	plan_args_t a = {0};
	char **args;
	int nargs, rc;
	sl_lengths_t lens = {0};
	sl_seq_t *seqs = NULL;
	sl_cost_t cost;
	int have_cost = 0;
	sl_plan_t *plan = NULL;
	cli_timeline_t tl = {0};
	FILE *out = NULL;
	int must_close = 0;

	cli_cluster_defaults(&a.cl);
	const cli_opt_t opts[] = {
		CLI_OPTS_CLUSTER(a.cl),
		CLI_OPT_POLICY(a.cl),
		CLI_OPTS_TRACE(a.tr),
		{"format", 0, CLI_OPT_CHOICE, &a.format, "FMT", "output: table|json|csv", "table", 1, 0,
		 cli_formats_tjc},
		{"output", 'o', CLI_OPT_STR, &a.out, "FILE", "write the output to FILE", "stdout", 1, 0,
		 NULL},
		{"svg", 0, CLI_OPT_STR, &a.svg, "FILE", "also draw the plan as an SVG timeline", NULL, 1,
		 0, NULL},
		{"trace-json", 0, CLI_OPT_STR, &a.trace, "FILE",
		 "also write the predicted timeline as a Chrome/Perfetto trace (ui.perfetto.dev)", NULL,
		 1, 0, NULL},
		CLI_OPTS_SEARCH(a.search, ""),
		{0},
	};
	const cli_spec_t spec = {
		.name = "plan",
		.usage = "[options] [LENGTHS|-]",
		.description =
			"Plans one batch: reads sequence lengths (one per line, JSON Lines, Megatron .idx\n"
			"or .npy; gzip allowed; '-' or nothing reads stdin), runs the policy and prints the\n"
			"plan with its predicted step time under the reference cost model. Sequence ids are\n"
			"the lengths' 0-based positions. tokens/rank is the resident activation tokens per\n"
			"rank of a group (sum of (1 - offload) * padded / d), to compare with cap.",
		.opts = opts,
		.min_args = 0,
		.max_args = 1,
		.epilog = "examples:\n"
		          "  sluice plan batch.txt\n"
		          "  sluice plan --policy static --sp 8 --format json -o plan.json batch.txt\n"
		          "  shuf -n 512 lengths.txt | sluice plan --svg plan.svg -",
	};
	rc = cli_parse(&spec, argc, argv, &args, &nargs);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	const char *path = nargs > 0 ? args[0] : "-";
	if (sl_policy_find(a.cl.policy) == NULL)
		return cli_usage_error("plan", "invalid value '%s' for --policy (see 'sluice policies')",
		                       a.cl.policy);

	rc = cli_cost_setup("plan", &a.cl, &cost);
	if (rc != CLI_EXIT_OK)
		goto done;
	have_cost = 1;
	rc = CLI_EXIT_FAIL;
	if (strcmp(path, "-") == 0 && isatty(STDIN_FILENO))
		fprintf(stderr, "sluice plan: reading lengths from stdin (end with Ctrl-D)\n");
	sl_err re = cli_read_lengths(path, &a.tr, &lens);
	if (re != SL_OK) {
		rc = cli_input_error("plan", re);
		goto done;
	}
	seqs = malloc(lens.n * sizeof(*seqs));
	if (seqs == NULL) {
		sl_seterr(SL_ENOMEM, "out of memory for %zu sequences", lens.n);
		goto fail;
	}
	for (size_t i = 0; i < lens.n; i++)
		seqs[i] = (sl_seq_t){.id = (int64_t)i, .length = lens.v[i]};

	sl_policy_opts_t po = cli_search_opts(&a.search);
	if (sl_plan_request(a.cl.policy, &cost, seqs, (int64_t)lens.n, &po, &plan) != SL_OK)
		goto fail;
	if (cli_timeline_compute(plan, &cost, &tl) != SL_OK)
		goto fail;
	if (cli_plan_output(a.out, plan, &cost, &tl, a.format) != SL_OK)
		goto fail;

	if (a.svg != NULL) {
		if (cli_open_out(a.svg, &out, &must_close) != SL_OK)
			goto fail;
		sl_err e = cli_svg_plan(out, plan, &tl);
		if (cli_close_out(a.svg, out, must_close) != SL_OK || e != SL_OK)
			goto fail;
	}
	if (a.trace != NULL) {
		if (cli_open_out(a.trace, &out, &must_close) != SL_OK)
			goto fail;
		sl_err e = worker_trace_write(out, plan, tl.start_ms, tl.dur_ms, NULL, NULL);
		if (cli_close_out(a.trace, out, must_close) != SL_OK || e != SL_OK)
			goto fail;
	}
	rc = CLI_EXIT_OK;
	goto done;
fail:
	cli_fail("plan");
done:
	cli_timeline_free(&tl);
	sl_plan_free(&plan);
	if (have_cost)
		sl_cost_fini(&cost);
	free(seqs);
	sl_lengths_free(&lens);
	return rc;
}
