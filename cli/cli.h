/* sluice CLI: the internal header shared by the `sluice` command's files.
 * Each subcommand lives in cmd_<name>.c and is listed in main.c's table;
 * options are declared as tables (cli_opt_t) that the parser and --help
 * both read, so a flag's help text and its validation cannot drift apart. */
#ifndef SLUICE_CLI_H
#define SLUICE_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "sluice/sluice.h"

/* Exit statuses shared by every command: the table of sluice/exit.h, which
 * every --help prints (SL_EXIT_HELP). */
enum {
	CLI_EXIT_OK = SL_EXIT_OK,
	CLI_EXIT_FAIL = SL_EXIT_FAIL,   /* runtime error (message from sl_errmsg) or a failed check */
	CLI_EXIT_USAGE = SL_EXIT_USAGE, /* bad flag, bad value, bad argument count, unreadable input */
};

/* A subcommand: argv[0] is the command's name; returns an exit status. */
typedef int (*cli_cmd_fn)(int argc, char **argv);

typedef struct cli_cmd {
	const char *name;
	const char *summary;
	cli_cmd_fn fn;
} cli_cmd_t;

/* The command table (main.c) and its size; `sluice --help` lists it. */
extern const cli_cmd_t cli_commands[];
extern const size_t cli_ncommands;

/* COMMANDS: one prototype per cmd_<name>.c (the table is in main.c). */
int cli_cmd_plan(int argc, char **argv);
int cli_cmd_replay(int argc, char **argv);
int cli_cmd_score(int argc, char **argv);
int cli_cmd_run_plan(int argc, char **argv);
int cli_cmd_profile(int argc, char **argv);
int cli_cmd_profiles(int argc, char **argv);
int cli_cmd_policies(int argc, char **argv);
int cli_cmd_submit(int argc, char **argv);
int cli_cmd_status(int argc, char **argv);
int cli_cmd_keygen(int argc, char **argv);
int cli_cmd_version(int argc, char **argv);
int cli_cmd_help(int argc, char **argv);
/* Prints what `sluice version` prints (cmd_version.c). */
void cli_print_version(FILE *f);
/* Prints the list of commands (cmd_help.c). */
void cli_print_overview(FILE *f);

/* ---- option tables (opts.c) ---------------------------------------------- */

typedef enum cli_opt_type {
	CLI_OPT_END = 0, /* terminates a table */
	CLI_OPT_FLAG,    /* int, set to 1 when present */
	CLI_OPT_INT,     /* int64_t within [min, max] */
	CLI_OPT_U64,     /* uint64_t (seeds) */
	CLI_OPT_DOUBLE,  /* double within [min, max], finite */
	CLI_OPT_STR,     /* const char *, borrowed from argv */
	CLI_OPT_CHOICE,  /* int: index into choices */
} cli_opt_type;

typedef struct cli_opt {
	const char *name;     /* long name without the dashes */
	char short_name;      /* single-letter alias, or 0 */
	cli_opt_type type;
	void *dest;           /* where the parsed value goes (type above) */
	const char *metavar;  /* shown in --help ("N", "FILE") */
	const char *help;     /* one line; the default is appended from def */
	const char *def;      /* default as shown in --help, or NULL */
	double min, max;      /* numeric range (ignored when min > max) */
	const char *const *choices; /* CHOICE: NULL-terminated names */
} cli_opt_t;

/* What a command says about itself in --help. */
typedef struct cli_spec {
	const char *name;        /* "plan" */
	const char *usage;       /* after "sluice plan ": "[options] [LENGTHS|-]" */
	const char *description; /* a paragraph, may hold '\n' */
	const cli_opt_t *opts;   /* table terminated by CLI_OPT_END */
	int min_args, max_args;  /* positional arguments allowed (max < 0: unbounded) */
	const char *epilog;      /* examples, or NULL */
} cli_spec_t;

/* Parses argv[1..] against spec. Positionals are collected in argv order into
 * *args (a pointer array into argv, owned by the caller's argv, which this
 * rearranges in place) and counted in *nargs. Returns CLI_EXIT_OK to go on,
 * -1 when --help or --version was printed (the caller returns 0), or CLI_EXIT_USAGE after
 * printing a one-line error that names the flag and the value. */
int cli_parse(const cli_spec_t *spec, int argc, char **argv, char ***args, int *nargs);
/* Prints the command's --help to f. */
void cli_print_help(const cli_spec_t *spec, FILE *f);
/* Prints "sluice NAME: MESSAGE" on stderr and returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 2, 3)))
#endif
	;
/* Prints "sluice NAME: error: <sl_errmsg()>" on stderr and returns CLI_EXIT_FAIL. */
int cli_fail(const char *cmd);
/* For an input that could not be read (missing, malformed, out of range):
 * prints as cli_fail does and returns CLI_EXIT_USAGE, or CLI_EXIT_FAIL when
 * e is SL_ENOMEM (the input may be fine). */
int cli_input_error(const char *cmd, sl_err e);

/* ---- common arguments (common.c) -------------------------------------------- */

/* Flags every planning command shares (--profile, --ranks, --ranks-per-node,
 * --policy) and the trace reader's flags (--trace-kind, --field, --max-seqs,
 * --max-bytes). */
typedef struct cli_cluster_args {
	const char *profile;
	int64_t ranks;
	int64_t ranks_per_node;
	const char *policy;
} cli_cluster_args_t;

typedef struct cli_trace_args {
	int kind; /* index into cli_trace_kinds = sl_trace_kind */
	const char *field;
	int64_t max_seqs;  /* 0 = SL_TRACE_MAX_SEQS_DEFAULT */
	int64_t max_bytes; /* 0 = SL_TRACE_MAX_BYTES_DEFAULT */
} cli_trace_args_t;

/* Flags that tune the policy (--sp, --time-limit, --work-limit, --seed); all
 * default to 0. */
typedef struct cli_search_args {
	int64_t sp;
	double time_limit_ms;
	int64_t work_limit;
	uint64_t seed;
} cli_search_args_t;

extern const char *const cli_trace_kinds[];
extern const char *const cli_formats_tjc[]; /* table, json, csv */

#define CLI_DEFAULT_PROFILE "gpt-7b-flexsp"
#define CLI_DEFAULT_RANKS 64
#define CLI_DEFAULT_RPN 8

/* Table entries for the shared flags; `a` is a cli_cluster_args_t. */
#define CLI_OPTS_CLUSTER(a)                                                                        \
	{"profile", 0, CLI_OPT_STR, &(a).profile, "NAME|FILE",                                     \
	 "built-in profile name or a JSON profile file", CLI_DEFAULT_PROFILE, 1, 0, NULL},          \
	{"ranks", 0, CLI_OPT_INT, &(a).ranks, "N", "ranks (GPUs) in the cluster", "64", 1,         \
	 SL_MAX_RANKS, NULL},                                                                      \
	{"ranks-per-node", 0, CLI_OPT_INT, &(a).ranks_per_node, "G", "ranks per node", "8", 1,     \
	 SL_MAX_RANKS, NULL}
#define CLI_OPT_POLICY(a)                                                                          \
	{"policy", 0, CLI_OPT_STR, &(a).policy, "NAME",                                            \
	 "planning policy (see `sluice policies`)", sl_policy_default(), 1, 0, NULL}
#define CLI_OPTS_TRACE(t)                                                                          \
	{"trace-kind", 0, CLI_OPT_CHOICE, &(t).kind, "KIND",                                       \
	 "input format: auto|text|jsonl|megatron|npy", "auto", 1, 0, cli_trace_kinds},            \
	{"field", 0, CLI_OPT_STR, &(t).field, "NAME",                                              \
	 "JSONL length field (\"input_ids\" counts an array)", "length", 1, 0, NULL},             \
	{"max-seqs", 0, CLI_OPT_INT, &(t).max_seqs, "N",                                           \
	 "refuse a trace of more than N sequences", "100000000", 1, 1e15, NULL},                  \
	{"max-bytes", 0, CLI_OPT_INT, &(t).max_bytes, "B",                                         \
	 "refuse a trace of more than B (decompressed) bytes", "4294967296", 1, 9e18, NULL}
/* `s` is a cli_search_args_t; `per` is a string literal that follows "search
 * time limit" and "deterministic search budget" in --help ("" or " per step"). */
#define CLI_OPTS_SEARCH(s, per)                                                                    \
	{"sp", 0, CLI_OPT_INT, &(s).sp, "D", "static: fixed SP degree (0 = smallest that holds)",  \
	 "0", 0, SL_MAX_RANKS, NULL},                                                              \
	{"time-limit", 0, CLI_OPT_DOUBLE, &(s).time_limit_ms, "MS",                                \
	 "search time limit" per " (0 = policy default)", "0", 0, 1e9, NULL},                      \
	{"work-limit", 0, CLI_OPT_INT, &(s).work_limit, "N",                                       \
	 "deterministic search budget" per " (0 = policy default)", "0", 0, 9e18, NULL},           \
	{"seed", 0, CLI_OPT_U64, &(s).seed, "SEED", "seed of randomised searches", "0", 1, 0, NULL}

/* Fills the defaults of the shared flags. */
void cli_cluster_defaults(cli_cluster_args_t *a);
/* The policy options the search flags give (trace_max_len left 0). */
sl_policy_opts_t cli_search_opts(const cli_search_args_t *s);
/* Resolves the profile and builds the cost model for the cluster. Returns
 * CLI_EXIT_OK (then *cost needs sl_cost_fini), CLI_EXIT_USAGE after a
 * one-line error when --profile names nothing or the cluster shape is
 * impossible, CLI_EXIT_USAGE after printing sl_errmsg when the profile file
 * does not parse or fails sl_profile_check, or CLI_EXIT_FAIL after printing
 * it (the cluster cannot hold the model state, no memory). */
int cli_cost_setup(const char *cmd, const cli_cluster_args_t *a, sl_cost_t *cost);
/* The --max-seqs in effect (the reader's default when the flag is absent). */
size_t cli_trace_max_seqs(const cli_trace_args_t *t);
/* Reads every length of path ("-" = stdin) with the trace flags and their
 * limits; no length at all is an SL_EFORMAT error. */
sl_err cli_read_lengths(const char *path, const cli_trace_args_t *t, sl_lengths_t *out);

/* Opens path for writing ("-" or NULL = stdout). *must_close says whether
 * the caller closes the stream with cli_close_out. */
sl_err cli_open_out(const char *path, FILE **f, int *must_close);
/* Flushes and (when must_close) closes f; reports a write error on path. */
sl_err cli_close_out(const char *path, FILE *f, int must_close);

/* Writes ranks compactly ("0-7", "8,9,12", "0-3,8-11") into buf (NUL-terminated,
 * truncated with "..." when it does not fit). */
void cli_format_ranks(const int32_t *ranks, int32_t n, char *buf, size_t size);
/* Writes s as a CSV field (quoted when it holds a comma, quote or newline). */
void cli_csv_field(FILE *f, const char *s);

/* ---- plan timing (timeline.c) ------------------------------------------------- */

/* When each group of a plan runs under the spec's timing rule (cost-model.md
 * "A group execution, a slot, a step"): every rank walks the slots in order,
 * a group starts when all its ranks are free. */
typedef struct cli_timeline {
	int64_t ngroups;
	double *start_ms; /* [ngroups] */
	double *dur_ms;   /* [ngroups]: sl_plan_group_ms */
	int32_t ranks;
	double *busy_ms;   /* [ranks]: sum of its groups' times */
	double *finish_ms; /* [ranks]: ready time after its last group */
	int32_t *nmicro;   /* [ranks]: group executions it takes part in */
	double makespan_ms; /* max finish (step time without grad sync) */
} cli_timeline_t;

/* Computes the timeline; free with cli_timeline_free. Fails with SL_ERANGE
 * when a group names a rank outside [0, plan->ranks). */
sl_err cli_timeline_compute(const sl_plan_t *plan, const sl_cost_t *cost, cli_timeline_t *tl);
void cli_timeline_free(cli_timeline_t *tl);

/* Prints a plan to path (NULL or "-": stdout) the way `sluice plan` does:
 * format 0 a table, 1 plan-format JSON, 2 CSV (cli_formats_tjc order). */
sl_err cli_plan_output(const char *path, const sl_plan_t *plan, const sl_cost_t *cost,
                       const cli_timeline_t *tl, int format);

/* ---- SVG (svg.c) -------------------------------------------------------------- */

/* The deterministic palette: colour i as "#rrggbb" (static string). */
const char *cli_svg_color(size_t i);
/* Writes s with XML's five special characters escaped. */
void cli_xml_escape(FILE *f, const char *s);

/* Draws a plan as a timeline: one row per rank, one box per group execution
 * (as long as its predicted time, coloured by group, <title> tooltip), idle
 * time as the row's background, an axis with ms ticks and a title with step
 * and ideal. */
sl_err cli_svg_plan(FILE *f, const sl_plan_t *plan, const cli_timeline_t *tl);

/* One series of a line chart (borrowed arrays of npoints values). */
typedef struct cli_series {
	const char *name;
	const double *y;
	int dashed;
} cli_series_t;

/* Draws step time over the steps of a replay: one line per series, a legend,
 * axes with ticks, and a title. x runs 0..npoints-1 (steps). */
sl_err cli_svg_lines(FILE *f, const char *title, const char *ylabel, const cli_series_t *series,
                     size_t nseries, size_t npoints);

/* ---- small numeric helpers (common.c) ----------------------------------------- */

/* The q-quantile (0..1) of v[0..n) by the nearest-rank rule; sorts a copy.
 * NAN when n == 0 or on ENOMEM. */
double cli_quantile(const double *v, size_t n, double q);

#endif
