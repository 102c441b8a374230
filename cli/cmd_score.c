/* sluice score: checks a JSON plan against every rule of plan-format.md and
 * the memory rule of cost-model.md, under the plan's own profile and cluster,
 * and reports its step time, the ideal and every violation. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct violations {
	char **msg;
	size_t n, cap;
	int oom;
} violations_t;

/* sl_violation_fn: keeps a copy of each message. */
static void collect(void *arg, const char *message)
{
	violations_t *v = arg;
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		char **m = realloc(v->msg, cap * sizeof(*m));
		if (m == NULL) {
			v->oom = 1;
			return;
		}
		v->msg = m;
		v->cap = cap;
	}
	char *copy = strdup(message);
	if (copy == NULL) {
		v->oom = 1;
		return;
	}
	v->msg[v->n++] = copy;
}

static void violations_free(violations_t *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(v->msg[i]);
	free(v->msg);
	memset(v, 0, sizeof(*v));
}

/* Writes the JSON report (deterministic key order). */
static sl_err write_json(FILE *f, const char *path, const sl_plan_t *plan, int evaluated,
                         const violations_t *v)
{
	json_t *o = json_object(), *arr = json_array();
	if (o == NULL || arr == NULL) {
		json_decref(o);
		json_decref(arr);
		return sl_seterr(SL_ENOMEM, "out of memory for the JSON report");
	}
	json_object_set_new(o, "file", json_string(path));
	json_object_set_new(o, "policy", json_string(plan->policy));
	json_object_set_new(o, "profile", json_string(plan->profile));
	json_object_set_new(o, "ranks", json_integer(plan->ranks));
	json_object_set_new(o, "ranks_per_node", json_integer(plan->ranks_per_node));
	json_object_set_new(o, "sequences", json_integer(plan->nseqs));
	json_object_set_new(o, "valid", json_boolean(v->n == 0));
	if (evaluated) {
		json_object_set_new(o, "step_ms", json_real(plan->step_ms));
		json_object_set_new(o, "ideal_ms", json_real(plan->ideal_ms));
		json_object_set_new(o, "step_over_ideal", json_real(plan->step_ms / plan->ideal_ms));
	} else {
		json_object_set_new(o, "step_ms", json_null());
		json_object_set_new(o, "ideal_ms", json_null());
		json_object_set_new(o, "step_over_ideal", json_null());
	}
	for (size_t i = 0; i < v->n; i++)
		json_array_append_new(arr, json_string(v->msg[i]));
	json_object_set_new(o, "violations", arr);
	int bad = json_dumpf(o, f, JSON_INDENT(2) | JSON_REAL_PRECISION(12)) != 0;
	json_decref(o);
	fputc('\n', f);
	return bad ? sl_seterr(SL_EIO, "writing the JSON report failed") : SL_OK;
}

/* Reads a whole plan from stdin; *out as sl_plan_parse_json gives it. */
static sl_err read_stdin_plan(sl_plan_t **out)
{
	size_t n = 0, cap = 1 << 16;
	char *text = malloc(cap);
	if (text == NULL)
		return sl_seterr(SL_ENOMEM, "stdin: out of memory");
	for (;;) {
		if (n + 1 >= cap) {
			char *t = realloc(text, cap * 2);
			if (t == NULL) {
				free(text);
				return sl_seterr(SL_ENOMEM, "stdin: out of memory (%zu bytes read)", n);
			}
			text = t;
			cap *= 2;
		}
		size_t got = fread(text + n, 1, cap - n - 1, stdin);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(stdin)) {
		free(text);
		return sl_seterr(SL_EIO, "stdin: read error");
	}
	text[n] = '\0';
	if (strlen(text) != n) {
		free(text);
		return sl_seterr(SL_EFORMAT, "stdin: NUL byte in a JSON plan");
	}
	sl_err e = sl_plan_parse_json(text, "stdin", out);
	free(text);
	return e;
}

int cli_cmd_score(int argc, char **argv)
{
	struct {
		const char *profile;
		int format;
		const char *out;
	} a = {NULL, 0, NULL};
	static const char *const formats[] = {"table", "json", NULL};
	const cli_opt_t opts[] = {
		{"profile", 0, CLI_OPT_STR, &a.profile, "NAME|FILE",
		 "score under this profile instead of the plan's own", "the plan's", 1, 0, NULL},
		{"format", 0, CLI_OPT_CHOICE, &a.format, "FMT", "output: table|json", "table", 1, 0,
		 formats},
		{"output", 'o', CLI_OPT_STR, &a.out, "FILE", "write the report to FILE", "stdout", 1, 0,
		 NULL},
		{0},
	};
	const cli_spec_t spec = {
		.name = "score",
		.usage = "[options] PLAN.json|-",
		.description =
			"Checks a plan (sluice.plan/1 JSON) against every rule of the plan format and the\n"
			"memory rule of the reference cost model, under the plan's own profile, ranks and\n"
			"ranks_per_node, and prints its step time, the ideal, step/ideal and every\n"
			"violation. The times are recomputed, not taken from the file. The plan's profile\n"
			"must be a built-in one unless --profile names a file. Exits 1 when the plan has\n"
			"violations.",
		.opts = opts,
		.min_args = 1,
		.max_args = 1,
		.epilog = "examples:\n"
		          "  sluice plan --format json -o p.json batch.txt && sluice score p.json\n"
		          "  sluice plan --policy static --format json batch.txt | sluice score -",
	};
	char **args;
	int nargs, rc;
	sl_plan_t *plan = NULL;
	sl_profile_t prof;
	sl_cost_t cost;
	int have_cost = 0, evaluated = 0;
	violations_t v = {0};
	FILE *out = NULL;
	int must_close = 0;

	rc = cli_parse(&spec, argc, argv, &args, &nargs);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	const char *path = args[0];

	if ((strcmp(path, "-") == 0 ? read_stdin_plan(&plan) : sl_plan_read_json_file(path, &plan)) !=
	    SL_OK) {
		fprintf(stderr, "sluice score: error: %s\n", sl_errmsg());
		return CLI_EXIT_USAGE;
	}
	rc = CLI_EXIT_FAIL;
	/* A plan's "profile" is only ever a preset name: score never opens a
	 * path named inside its input, only one the user gives with --profile. */
	const sl_profile_t *preset = a.profile ? NULL : sl_profile_preset(plan->profile);
	sl_err e = SL_OK;
	if (a.profile != NULL)
		e = sl_profile_resolve(a.profile, &prof);
	else if (preset != NULL)
		prof = *preset;
	else
		e = sl_seterr(SL_ENOTFOUND,
		              "the plan's profile '%.64s' is not a built-in profile (see 'sluice "
		              "profiles'); give its file with --profile FILE",
		              plan->profile);
	if (e != SL_OK) {
		rc = cli_input_error("score", e);
		goto done;
	}
	sl_cluster_t cl = {.ranks = plan->ranks, .ranks_per_node = plan->ranks_per_node};
	if (sl_cluster_check(&cl) != SL_OK || sl_cost_init(&cost, &prof, &cl) != SL_OK)
		goto fail;
	have_cost = 1;

	sl_plan_validate(plan, &cost, collect, &v);
	if (v.oom) {
		sl_seterr(SL_ENOMEM, "out of memory collecting violations");
		goto fail;
	}
	/* sl_plan_validate also checks cap_tokens and the predicted numbers
	 * against the reference model; the times shown are recomputed. Timing
	 * is defined for any plan whose ranks are in range, valid or not. */
	if (sl_plan_evaluate(plan, &cost) == SL_OK && isfinite(plan->step_ms))
		evaluated = 1;

	if (cli_open_out(a.out, &out, &must_close) != SL_OK)
		goto fail;
	if (a.format == 1) {
		if (write_json(out, path, plan, evaluated, &v) != SL_OK) {
			if (must_close)
				fclose(out);
			goto fail;
		}
	} else {
		fprintf(out, "plan        %s\n", path);
		fprintf(out, "policy      %s\n", plan->policy);
		fprintf(out, "profile     %s%s%s\n", prof.name, a.profile ? " from " : "",
		        a.profile ? a.profile : "");
		fprintf(out, "ranks       %d (%d per node)\n", plan->ranks, plan->ranks_per_node);
		fprintf(out, "sequences   %lld in %d slots, %lld groups\n", (long long)plan->nseqs,
		        plan->nslots, (long long)plan->ngroups);
		if (evaluated) {
			fprintf(out, "step        %.1f ms\n", plan->step_ms);
			fprintf(out, "ideal       %.1f ms\n", plan->ideal_ms);
			fprintf(out, "step/ideal  %.3f\n", plan->step_ms / plan->ideal_ms);
		} else {
			fprintf(out, "step        n/a (%s)\n", sl_errmsg());
		}
		if (v.n == 0) {
			fprintf(out, "valid       yes\n");
		} else {
			fprintf(out, "valid       no, %zu violation%s:\n", v.n, v.n == 1 ? "" : "s");
			for (size_t i = 0; i < v.n; i++)
				fprintf(out, "  %s\n", v.msg[i]);
		}
	}
	if (cli_close_out(a.out, out, must_close) != SL_OK)
		goto fail;
	rc = v.n == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
	goto done;
fail:
	cli_fail("score");
done:
	violations_free(&v);
	if (have_cost)
		sl_cost_fini(&cost);
	sl_plan_free(&plan);
	return rc;
}
