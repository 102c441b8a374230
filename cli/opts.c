/* sluice CLI: the option-table parser and --help printer. One table per
 * command drives both, so every flag's validation and its help agree. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "sluice%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'sluice %s%s--help')\n", cmd ? cmd : "", cmd ? " " : "");
	return CLI_EXIT_USAGE;
}

int cli_fail(const char *cmd)
{
	fprintf(stderr, "sluice %s: error: %s\n", cmd, sl_errmsg());
	return CLI_EXIT_FAIL;
}

int cli_input_error(const char *cmd, sl_err e)
{
	fprintf(stderr, "sluice %s: error: %s\n", cmd, sl_errmsg());
	return e == SL_ENOMEM ? CLI_EXIT_FAIL : CLI_EXIT_USAGE;
}

/* Finds a long option by name (len bytes of name, not NUL-terminated). */
static const cli_opt_t *find_long(const cli_opt_t *opts, const char *name, size_t len)
{
	for (const cli_opt_t *o = opts; o->type != CLI_OPT_END; o++)
		if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
			return o;
	return NULL;
}

static const cli_opt_t *find_short(const cli_opt_t *opts, char c)
{
	for (const cli_opt_t *o = opts; o->type != CLI_OPT_END; o++)
		if (o->short_name != 0 && o->short_name == c)
			return o;
	return NULL;
}

/* Describes an option's accepted values for error messages into buf. */
static void describe_range(const cli_opt_t *o, char *buf, size_t size)
{
	switch (o->type) {
	case CLI_OPT_INT:
		if (o->min <= o->max)
			snprintf(buf, size, "an integer in %.0f..%.0f", o->min, o->max);
		else
			snprintf(buf, size, "an integer");
		break;
	case CLI_OPT_U64:
		snprintf(buf, size, "an unsigned integer");
		break;
	case CLI_OPT_DOUBLE:
		if (o->min <= o->max)
			snprintf(buf, size, "a number in %g..%g", o->min, o->max);
		else
			snprintf(buf, size, "a number");
		break;
	case CLI_OPT_CHOICE: {
		size_t at = (size_t)snprintf(buf, size, "one of ");
		for (size_t i = 0; o->choices[i] != NULL && at < size; i++)
			at += (size_t)snprintf(buf + at, size - at, "%s%s", i ? ", " : "",
			                       o->choices[i]);
		break;
	}
	default:
		snprintf(buf, size, "a value");
	}
}

/* Stores value into o->dest; returns 0 or -1 when the value is not valid. */
static int store_value(const cli_opt_t *o, const char *value)
{
	char *end = NULL;
	errno = 0;
	switch (o->type) {
	case CLI_OPT_INT: {
		long long v = strtoll(value, &end, 10);
		if (end == value || *end != '\0' || errno == ERANGE)
			return -1;
		if (o->min <= o->max && ((double)v < o->min || (double)v > o->max))
			return -1;
		*(int64_t *)o->dest = v;
		return 0;
	}
	case CLI_OPT_U64: {
		if (value[0] == '-')
			return -1;
		unsigned long long v = strtoull(value, &end, 0);
		if (end == value || *end != '\0' || errno == ERANGE)
			return -1;
		*(uint64_t *)o->dest = v;
		return 0;
	}
	case CLI_OPT_DOUBLE: {
		double v = strtod(value, &end);
		if (end == value || *end != '\0' || errno == ERANGE || !isfinite(v))
			return -1;
		if (o->min <= o->max && (v < o->min || v > o->max))
			return -1;
		*(double *)o->dest = v;
		return 0;
	}
	case CLI_OPT_STR:
		if (value[0] == '\0')
			return -1;
		*(const char **)o->dest = value;
		return 0;
	case CLI_OPT_CHOICE:
		for (int i = 0; o->choices[i] != NULL; i++)
			if (strcmp(o->choices[i], value) == 0) {
				*(int *)o->dest = i;
				return 0;
			}
		return -1;
	default:
		return -1;
	}
}

int cli_parse(const cli_spec_t *spec, int argc, char **argv, char ***args, int *nargs)
{
	int npos = 0, only_pos = 0;

	/* Positionals are compacted to the front of argv + 1, in order. */
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (only_pos || a[0] != '-' || a[1] == '\0') {
			argv[1 + npos++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_pos = 1;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			cli_print_help(spec, stdout);
			return -1;
		}
		if (strcmp(a, "--version") == 0) {
			cli_print_version(stdout);
			return -1;
		}
		const cli_opt_t *o;
		const char *value = NULL;
		char shown[80];
		if (a[1] == '-') {
			const char *name = a + 2;
			const char *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			o = find_long(spec->opts, name, len);
			snprintf(shown, sizeof(shown), "--%.*s", (int)len, name);
			if (o == NULL)
				return cli_usage_error(spec->name, "unknown option '%s'", shown);
			if (eq != NULL) {
				if (o->type == CLI_OPT_FLAG)
					return cli_usage_error(spec->name, "option '%s' takes no value (got '%s')",
					                       shown, eq + 1);
				value = eq + 1;
			}
		} else {
			o = find_short(spec->opts, a[1]);
			snprintf(shown, sizeof(shown), "-%c", a[1]);
			if (o == NULL)
				return cli_usage_error(spec->name, "unknown option '%s'", a);
			if (a[2] != '\0') {
				if (o->type == CLI_OPT_FLAG)
					return cli_usage_error(spec->name, "unknown option '%s'", a);
				value = a + 2;
			}
		}
		if (o->type == CLI_OPT_FLAG) {
			*(int *)o->dest = 1;
			continue;
		}
		if (value == NULL) {
			if (i + 1 >= argc)
				return cli_usage_error(spec->name, "option '%s' needs a value (%s)", shown,
				                       o->metavar ? o->metavar : "VALUE");
			value = argv[++i];
		}
		if (store_value(o, value) != 0) {
			char range[256];
			describe_range(o, range, sizeof(range));
			return cli_usage_error(spec->name, "invalid value '%s' for %s (expected %s)", value,
			                       shown, range);
		}
	}
	if (npos < spec->min_args)
		return cli_usage_error(spec->name, "expected %s%d argument%s, got %d",
		                       spec->max_args == spec->min_args ? "" : "at least ",
		                       spec->min_args, spec->min_args == 1 ? "" : "s", npos);
	if (spec->max_args >= 0 && npos > spec->max_args)
		return cli_usage_error(spec->name, "unexpected argument '%s' (at most %d expected)",
		                       argv[1 + spec->max_args], spec->max_args);
	*args = argv + 1;
	*nargs = npos;
	return CLI_EXIT_OK;
}

void cli_print_help(const cli_spec_t *spec, FILE *f)
{
	fprintf(f, "usage: sluice %s %s\n\n", spec->name, spec->usage);
	if (spec->description != NULL)
		fprintf(f, "%s\n", spec->description);
	fprintf(f, "\noptions:\n");
	for (const cli_opt_t *o = spec->opts; o != NULL && o->type != CLI_OPT_END; o++) {
		char head[96];
		if (o->short_name != 0)
			snprintf(head, sizeof(head), "-%c, --%s%s%s", o->short_name, o->name,
			         o->metavar ? " " : "", o->metavar ? o->metavar : "");
		else
			snprintf(head, sizeof(head), "    --%s%s%s", o->name, o->metavar ? " " : "",
			         o->metavar ? o->metavar : "");
		if (strlen(head) <= 26)
			fprintf(f, "  %-26s %s", head, o->help);
		else
			fprintf(f, "  %s\n  %-26s %s", head, "", o->help);
		if (o->def != NULL)
			fprintf(f, " (default: %s)", o->def);
		fputc('\n', f);
	}
	fprintf(f, "  %-26s %s\n", "-h, --help", "show this help");
	fprintf(f, "  %-26s %s\n", "    --version", "print the version (as `sluice version`)");
	if (spec->epilog != NULL)
		fprintf(f, "\n%s\n", spec->epilog);
	fprintf(f, "\n%s", SL_EXIT_HELP);
}
