/* A program outside sluice's tree: asks an installed sluiced for a plan
 * through the installed libsluice (built by pkg-config and by CMake's
 * find_package in tests/install/run.sh). Prints "plan <ranks> <groups> <step
 * ms>" and exits 0, or the error and 1. */
#include <stdio.h>

#include <sluice/client.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s ENDPOINT\n", argv[0]);
		return 2;
	}
	int64_t len[6] = {120000, 4000, 300, 9000, 64, 50000};
	sl_plan_req_t req = {.job = "installed-client", .step = 1, .lengths = len, .n = 6,
	                     .policy = "sluice", .ranks = 8, .ranks_per_node = 8};
	sl_client_t *c = NULL;
	sl_plan_t *plan = NULL;
	sl_err rc = sl_client_new(argv[1], NULL, &c);
	if (rc == SL_OK)
		rc = sl_client_plan(c, &req, 30000, &plan);
	if (rc != SL_OK) {
		fprintf(stderr, "client: %s: %s\n", sl_errname(rc), sl_errmsg());
		sl_client_free(&c);
		return 1;
	}
	printf("plan %d %lld %.3f\n", plan->ranks, (long long)plan->ngroups, plan->step_ms);
	sl_plan_free(&plan);
	sl_client_free(&c);
	return 0;
}
