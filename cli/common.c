/* sluice CLI: helpers the commands share (cluster flags, trace input,
 * output files, compact rank lists, CSV fields, quantiles). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Indexed by sl_trace_kind, so the parsed index is the kind itself. */
const char *const cli_trace_kinds[] = {"auto", "text", "jsonl", "megatron", "npy", NULL};
const char *const cli_formats_tjc[] = {"table", "json", "csv", NULL};

_Static_assert(SL_TRACE_AUTO == 0 && SL_TRACE_TEXT == 1 && SL_TRACE_JSONL == 2 &&
                       SL_TRACE_MEGATRON == 3 && SL_TRACE_NPY == 4,
               "cli_trace_kinds must follow sl_trace_kind");

void cli_cluster_defaults(cli_cluster_args_t *a)
{
	a->profile = CLI_DEFAULT_PROFILE;
	a->ranks = CLI_DEFAULT_RANKS;
	a->ranks_per_node = CLI_DEFAULT_RPN;
	a->policy = sl_policy_default();
}

sl_policy_opts_t cli_search_opts(const cli_search_args_t *s)
{
	return (sl_policy_opts_t){.sp = (int32_t)s->sp,
	                          .time_limit_ms = s->time_limit_ms,
	                          .work_limit = s->work_limit,
	                          .seed = s->seed};
}

int cli_cost_setup(const char *cmd, const cli_cluster_args_t *a, sl_cost_t *cost)
{
	sl_profile_t prof;
	sl_cluster_t cl = {.ranks = (int32_t)a->ranks, .ranks_per_node = (int32_t)a->ranks_per_node};
	sl_err e = sl_profile_resolve(a->profile, &prof);
	if (e == SL_ENOTFOUND)
		return cli_usage_error(cmd, "invalid value '%s' for --profile: %s", a->profile,
		                       sl_errmsg());
	if (e != SL_OK)
		return cli_input_error(cmd, e);
	if (sl_cluster_check(&cl) != SL_OK)
		return cli_usage_error(cmd, "invalid values --ranks %d --ranks-per-node %d: %s",
		                       cl.ranks, cl.ranks_per_node, sl_errmsg());
	if (sl_cost_init(cost, &prof, &cl) != SL_OK)
		return cli_fail(cmd);
	return CLI_EXIT_OK;
}

size_t cli_trace_max_seqs(const cli_trace_args_t *t)
{
	return t->max_seqs > 0 ? (size_t)t->max_seqs : SL_TRACE_MAX_SEQS_DEFAULT;
}

sl_err cli_read_lengths(const char *path, const cli_trace_args_t *t, sl_lengths_t *out)
{
	sl_trace_opts_t o = {.kind = (sl_trace_kind)t->kind,
	                     .field = t->field,
	                     .max_seqs = (size_t)t->max_seqs,
	                     .max_bytes = (uint64_t)t->max_bytes};
	SL_CHECK(sl_trace_read(path, &o, out));
	if (out->n == 0)
		return sl_seterr(SL_EFORMAT, "%s: no sequence lengths found",
		                 strcmp(path, "-") == 0 ? "stdin" : path);
	return SL_OK;
}

sl_err cli_open_out(const char *path, FILE **f, int *must_close)
{
	if (path == NULL || strcmp(path, "-") == 0) {
		*f = stdout;
		*must_close = 0;
		return SL_OK;
	}
	*f = fopen(path, "w");
	if (*f == NULL)
		return sl_seterr(SL_EIO, "%s: cannot open for writing: %s", path, strerror(errno));
	*must_close = 1;
	return SL_OK;
}

sl_err cli_close_out(const char *path, FILE *f, int must_close)
{
	int bad = fflush(f) != 0 || ferror(f);
	int saved = errno;
	if (must_close && fclose(f) != 0 && !bad) {
		bad = 1;
		saved = errno;
	}
	if (bad)
		return sl_seterr(SL_EIO, "%s: write failed: %s", path ? path : "stdout",
		                 strerror(saved));
	return SL_OK;
}

void cli_format_ranks(const int32_t *ranks, int32_t n, char *buf, size_t size)
{
	size_t at = 0;
	if (size == 0)
		return;
	buf[0] = '\0';
	for (int32_t i = 0; i < n;) {
		/* A run of consecutive ascending ranks prints as "a-b" when 3+ long;
		 * ring order is kept, so a wrapped ring prints as it runs. */
		int32_t j = i;
		while (j + 1 < n && ranks[j + 1] == ranks[j] + 1)
			j++;
		char piece[32];
		if (j - i >= 2)
			snprintf(piece, sizeof(piece), "%s%d-%d", i ? "," : "", ranks[i], ranks[j]);
		else if (j == i + 1)
			snprintf(piece, sizeof(piece), "%s%d,%d", i ? "," : "", ranks[i], ranks[j]);
		else
			snprintf(piece, sizeof(piece), "%s%d", i ? "," : "", ranks[i]);
		size_t len = strlen(piece);
		if (at + len + 4 > size) {
			snprintf(buf + at, size - at, "%s", size - at > 3 ? "..." : "");
			return;
		}
		memcpy(buf + at, piece, len + 1);
		at += len;
		i = j + 1;
	}
}

void cli_csv_field(FILE *f, const char *s)
{
	if (strpbrk(s, ",\"\n\r") == NULL) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

double cli_quantile(const double *v, size_t n, double q)
{
	if (n == 0)
		return NAN;
	double *s = malloc(n * sizeof(*s));
	if (s == NULL)
		return NAN;
	memcpy(s, v, n * sizeof(*s));
	double out = sl_quantile(s, n, q);
	free(s);
	return out;
}
