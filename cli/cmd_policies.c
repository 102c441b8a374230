/* sluice policies: the registered planning policies, default first. */
#include <string.h>

#include "cli.h"

int cli_cmd_policies(int argc, char **argv)
{
	const cli_opt_t opts[] = {{0}};
	const cli_spec_t spec = {
		.name = "policies",
		.usage = "",
		.description = "Lists the planning policies `--policy` and `--policies` accept; the\n"
		               "default is marked with '*'.",
		.opts = opts,
		.min_args = 0,
		.max_args = 0,
	};
	char **args;
	int nargs;
	int rc = cli_parse(&spec, argc, argv, &args, &nargs);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	const char *def = sl_policy_default();
	for (size_t i = 0; i < sl_policy_count(); i++) {
		const sl_policy_t *p = sl_policy_at(i);
		printf("%c %-20s %s\n", strcmp(p->name, def) == 0 ? '*' : ' ', p->name,
		       p->summary ? p->summary : "");
	}
	if (sl_policy_count() == 0)
		printf("(no policies are registered)\n");
	return CLI_EXIT_OK;
}
