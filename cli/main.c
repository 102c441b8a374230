/* sluice: the command-line front end. Dispatches `sluice CMD ...` through
 * the command table below; each command lives in cmd_<name>.c. */
#include <string.h>

#include "cli.h"

/* COMMAND TABLE: one line per command, in the order `sluice --help` lists
 * them (a shared edit point: add a line here and a prototype in cli.h). */
const cli_cmd_t cli_commands[] = {
	{"plan", "plan one batch of sequence lengths and print or draw the plan", cli_cmd_plan},
	{"replay", "replay a trace step by step and compare policies", cli_cmd_replay},
	{"score", "check a JSON plan against every rule and report its step time", cli_cmd_score},
	{"run-plan", "run a plan's attention on local worker processes, check it", cli_cmd_run_plan},
	{"profile", "measure the cost model's constants on this GPU, write a profile", cli_cmd_profile},
	{"profiles", "list the built-in profiles and their derived capacity", cli_cmd_profiles},
	{"policies", "list the planning policies", cli_cmd_policies},
	{"submit", "send a batch to sluiced and print the plan it returns", cli_cmd_submit},
	{"status", "show sluiced's jobs, workers, recent steps and metrics", cli_cmd_status},
	{"keygen", "write a CURVE keypair (NAME.key, NAME.pub) for tcp endpoints", cli_cmd_keygen},
	{"version", "print the version", cli_cmd_version},
	{"help", "show help for sluice or one command", cli_cmd_help},
};
const size_t cli_ncommands = sizeof(cli_commands) / sizeof(cli_commands[0]);

int main(int argc, char **argv)
{
	sl_log_init_from_env();
	if (argc < 2) {
		cli_print_overview(stderr);
		return CLI_EXIT_USAGE;
	}
	const char *name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
		cli_print_overview(stdout);
		return CLI_EXIT_OK;
	}
	if (strcmp(name, "--version") == 0)
		name = "version";
	for (size_t i = 0; i < cli_ncommands; i++)
		if (strcmp(cli_commands[i].name, name) == 0) {
			argv[1] = (char *)cli_commands[i].name;
			return cli_commands[i].fn(argc - 1, argv + 1);
		}
	return cli_usage_error(NULL, "unknown command '%s'", name);
}
