/* sluice benchmarks: the command-line options the bench tools share
 * (sluice-bench, sluice-bound, sluice-optimum), parsed in one place so that
 * -h/--help, --version and the cluster/trace options read and fail alike. */
#ifndef SLUICE_BENCH_BENCHOPT_H
#define SLUICE_BENCH_BENCHOPT_H

#include <stdint.h>
#include <stdio.h>

/* Where the shared options go; a NULL pointer means the tool does not take
 * that option (it is then left to the tool, which calls it unknown). */
typedef struct bench_opts {
	const char *prog;          /* "sluice-bound": messages and --version */
	void (*usage)(FILE *f);    /* the tool's usage text (with SL_EXIT_HELP) */
	const char **profile;      /* --profile NAME */
	int32_t *ranks, *per_node; /* --ranks N, --per-node G */
	int *batch, *steps;        /* --batch B, --steps K */
	int64_t *max_len;          /* --max-len L */
} bench_opts_t;

enum { BENCH_OPT_NO, BENCH_OPT_TAKEN, BENCH_OPT_EXIT };

/* Looks at argv[*i]: BENCH_OPT_NO when it is none of o's options;
 * BENCH_OPT_TAKEN after storing it (*i then points at its value, if any);
 * BENCH_OPT_EXIT with *code the exit status after -h/--help or --version
 * (SL_EXIT_OK) or a valued option given last (SL_EXIT_USAGE, said on
 * stderr). */
int bench_opt(const bench_opts_t *o, int argc, char **argv, int *i, int *code);

#endif
