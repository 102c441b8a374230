/* sluice: the exit statuses of every sluice binary (sluice and each of its
 * commands, sluiced, sluice-worker, sluice-bench) and the one text that
 * states them in every --help, so the table cannot drift between binaries. */
#ifndef SLUICE_EXIT_H
#define SLUICE_EXIT_H

enum {
	SL_EXIT_OK = 0,
	SL_EXIT_FAIL = 1,  /* the input was read but the work failed */
	SL_EXIT_USAGE = 2, /* bad option or argument, or input that cannot be read */
};

/* Printed at the end of every --help. */
#define SL_EXIT_HELP                                                                               \
	"exit status: 0 success; 1 failure (the input was read but the work failed: an\n"          \
	"infeasible request, a failed check, a runtime error); 2 usage error or unreadable\n"      \
	"input (a bad option or argument, a missing file, or one that does not parse or\n"         \
	"holds a value out of range).\n"

#endif
