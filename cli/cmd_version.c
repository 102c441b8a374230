/* sluice version: the program, plan format and cost model versions. */
#include "cli.h"

void cli_print_version(FILE *f)
{
	fprintf(f, "sluice %s\nplan format %s\ncost model sluice.cost/1\n", SLUICE_VERSION,
	        SL_PLAN_FORMAT);
}

int cli_cmd_version(int argc, char **argv)
{
	const cli_opt_t opts[] = {{0}};
	const cli_spec_t spec = {
		.name = "version",
		.usage = "",
		.description = "Prints the version of sluice, of the plan format and of the cost model.",
		.opts = opts,
		.min_args = 0,
		.max_args = 0,
	};
	char **args;
	int nargs;
	int rc = cli_parse(&spec, argc, argv, &args, &nargs);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	cli_print_version(stdout);
	return CLI_EXIT_OK;
}
