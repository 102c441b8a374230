/* sluice benchmarks: the shared options (benchopt.h). */
#include "benchopt.h"

#include <stdlib.h>
#include <string.h>

#include "sluice/sluice.h"

int bench_opt(const bench_opts_t *o, int argc, char **argv, int *i, int *code)
{
	const char *a = argv[*i];
	if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
		o->usage(stdout);
		*code = SL_EXIT_OK;
		return BENCH_OPT_EXIT;
	}
	if (strcmp(a, "--version") == 0) {
		printf("%s %s\n", o->prog, SLUICE_VERSION);
		*code = SL_EXIT_OK;
		return BENCH_OPT_EXIT;
	}
	int valued = (o->profile && strcmp(a, "--profile") == 0) ||
	             (o->ranks && strcmp(a, "--ranks") == 0) ||
	             (o->per_node && strcmp(a, "--per-node") == 0) ||
	             (o->batch && strcmp(a, "--batch") == 0) ||
	             (o->steps && strcmp(a, "--steps") == 0) ||
	             (o->max_len && strcmp(a, "--max-len") == 0);
	if (!valued)
		return BENCH_OPT_NO;
	if (*i + 1 >= argc) {
		fprintf(stderr, "%s: %s needs a value\n", o->prog, a);
		*code = SL_EXIT_USAGE;
		return BENCH_OPT_EXIT;
	}
	const char *v = argv[++*i];
	if (strcmp(a, "--profile") == 0)
		*o->profile = v;
	else if (strcmp(a, "--ranks") == 0)
		*o->ranks = atoi(v);
	else if (strcmp(a, "--per-node") == 0)
		*o->per_node = atoi(v);
	else if (strcmp(a, "--batch") == 0)
		*o->batch = atoi(v);
	else if (strcmp(a, "--steps") == 0)
		*o->steps = atoi(v);
	else
		*o->max_len = atoll(v);
	return BENCH_OPT_TAKEN;
}
