/* sluiced: the sluice planning daemon. Runs in the foreground; see
 * `sluiced --help` and docs/sidecar.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

int main(int argc, char **argv)
{
	daemon_args_t args;
	daemon_config_t cfg;
	sl_log_set_level(SL_LOG_INFO);
	sl_log_init_from_env();
	if (daemon_args_parse(argc, argv, &args) != SL_OK) {
		fprintf(stderr, "sluiced: %s\n", sl_errmsg());
		daemon_args_fini(&args);
		return SL_EXIT_USAGE;
	}
	if (args.help) {
		daemon_config_help(stdout);
		printf("\n%s", SL_EXIT_HELP);
		daemon_args_fini(&args);
		return SL_EXIT_OK;
	}
	if (args.version) {
		printf("sluiced %s\n", SLUICE_VERSION);
		daemon_args_fini(&args);
		return SL_EXIT_OK;
	}
	if (daemon_config_build(&args, &cfg) != SL_OK) {
		fprintf(stderr, "sluiced: %s\n", sl_errmsg());
		daemon_args_fini(&args);
		return SL_EXIT_USAGE;
	}
	if (args.check) {
		for (size_t i = 0; i < daemon_nopts; i++) {
			char v[DAEMON_STR_MAX];
			daemon_config_format(&cfg, &daemon_opts[i], v, sizeof(v));
			printf("%s \"%s\"\n", daemon_opts[i].name, v);
		}
		daemon_args_fini(&args);
		return SL_EXIT_OK;
	}
	int status = daemon_run(&args, &cfg);
	daemon_args_fini(&args);
	return status;
}
