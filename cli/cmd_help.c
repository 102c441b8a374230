/* sluice help: the overview of every command, or one command's --help. */
#include <string.h>

#include "cli.h"

void cli_print_overview(FILE *f)
{
	fprintf(f, "usage: sluice COMMAND [options] [arguments]\n\n"
	           "sluice plans how each training step's sequences are spread over GPUs.\n\n"
	           "commands:\n");
	for (size_t i = 0; i < cli_ncommands; i++)
		fprintf(f, "  %-12s %s\n", cli_commands[i].name, cli_commands[i].summary);
	fprintf(f, "\nRun 'sluice COMMAND --help' or 'sluice help COMMAND' for a command's options.\n"
	           "SLUICE_LOG=error|warn|info|debug|trace sets the log level.\n\n%s",
	        SL_EXIT_HELP);
}

int cli_cmd_help(int argc, char **argv)
{
	const cli_opt_t opts[] = {{0}};
	const cli_spec_t spec = {
		.name = "help",
		.usage = "[COMMAND]",
		.description = "Without COMMAND, lists the commands; with one, shows its options.",
		.opts = opts,
		.min_args = 0,
		.max_args = 1,
	};
	char **args;
	int nargs;
	int rc = cli_parse(&spec, argc, argv, &args, &nargs);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (nargs == 0) {
		cli_print_overview(stdout);
		return CLI_EXIT_OK;
	}
	for (size_t i = 0; i < cli_ncommands; i++)
		if (strcmp(cli_commands[i].name, args[0]) == 0) {
			char *sub[] = {(char *)cli_commands[i].name, "--help", NULL};
			return cli_commands[i].fn(2, sub);
		}
	return cli_usage_error("help", "unknown command '%s'", args[0]);
}
