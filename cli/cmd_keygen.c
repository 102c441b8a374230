/* sluice keygen: a CURVE keypair for sluiced, a client or a worker. */
#include <stdio.h>

#include "cli.h"
#include "sluice/client.h"

int cli_cmd_keygen(int argc, char **argv)
{
	char **args;
	int nargs;
	const cli_opt_t opts[] = {{0}};
	const cli_spec_t spec = {
		.name = "keygen",
		.usage = "NAME",
		.description =
			"Writes a new CURVE keypair for tcp:// endpoints: NAME.key (the secret key,\n"
			"mode 0600) and NAME.pub (\"<public key> NAME\", one line). sluiced reads its\n"
			"own .key (curve_secret_key) and admits the peers whose .pub lines are in its\n"
			"authorized_keys file; clients and workers pass their .key and the daemon's\n"
			".pub. Existing files are never overwritten.",
		.opts = opts,
		.min_args = 1,
		.max_args = 1,
		.epilog = "example:\n"
		          "  sluice keygen sluiced && sluice keygen trainer\n"
		          "  cat trainer.pub >> /etc/sluice/authorized_keys",
	};
	int rc = cli_parse(&spec, argc, argv, &args, &nargs);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (sl_keygen(args[0]) != SL_OK)
		return cli_fail("keygen");
	printf("wrote %s.key (secret, mode 0600) and %s.pub (public)\n", args[0], args[0]);
	return CLI_EXIT_OK;
}
