/* sluice run-plan: executes a plan's attention on local worker processes
 * (one sluice-worker per rank), optionally checks every output and gradient
 * against a single-process fp64 reference, and prints measured time next to
 * the reference model's prediction. The work is worker_launch (worker/). */
#include <math.h>
#include <string.h>

#include "cli.h"
#include "worker.h"

int cli_cmd_run_plan(int argc, char **argv)
{
	struct {
		int backend;
		int check;
		int64_t heads, kv_heads, head_dim, iters, warmup, timeout;
		uint64_t seed;
		const char *report, *worker, *run_dir, *profile;
	} a = {0, 0, 4, 2, 16, 1, 0, 60, 1, NULL, NULL, NULL, NULL};
	static const char *const backends[] = {"cpu", "cuda", NULL};
	const cli_opt_t opts[] = {
		{"backend", 0, CLI_OPT_CHOICE, &a.backend, "NAME",
		 "cpu (fp64, ZeroMQ) or cuda (bf16, NCCL; needs a CUDA build)", "cpu", 1, 0, backends},
		{"check", 0, CLI_OPT_FLAG, &a.check, NULL,
		 "compare O, dQ, dK, dV with an fp64 full-attention reference", NULL, 1, 0, NULL},
		{"heads", 0, CLI_OPT_INT, &a.heads, "H", "query heads", "4", 1, WORKER_MAX_HEADS, NULL},
		{"kv-heads", 0, CLI_OPT_INT, &a.kv_heads, "K", "key/value heads (H a multiple of K)",
		 "2", 1, WORKER_MAX_HEADS, NULL},
		{"head-dim", 0, CLI_OPT_INT, &a.head_dim, "D", "head dimension", "16", 1,
		 WORKER_MAX_HEAD_DIM, NULL},
		{"seed", 0, CLI_OPT_U64, &a.seed, "S", "seed of the random inputs", "1", 1, 0, NULL},
		{"iters", 0, CLI_OPT_INT, &a.iters, "N", "timed forward+backward runs (median)", "1", 1,
		 1000000, NULL},
		{"warmup", 0, CLI_OPT_INT, &a.warmup, "N", "untimed runs first", "0", 0, 1000000, NULL},
		{"timeout", 0, CLI_OPT_INT, &a.timeout, "S", "seconds a worker waits for a peer", "60",
		 1, 86400, NULL},
		{"profile", 0, CLI_OPT_STR, &a.profile, "NAME|FILE",
		 "check the plan and predict times under this profile", "the plan's own", 1, 0, NULL},
		{"report", 0, CLI_OPT_STR, &a.report, "FILE",
		 "write per-group and per-rank times and bytes as JSON", NULL, 1, 0, NULL},
		{"worker", 0, CLI_OPT_STR, &a.worker, "PATH",
		 "sluice-worker executable", "$SLUICE_WORKER, then next to sluice, then PATH", 1, 0,
		 NULL},
		{"run-dir", 0, CLI_OPT_STR, &a.run_dir, "DIR",
		 "run directory to use and keep (sockets, outputs, reports)", "a temporary one", 1, 0,
		 NULL},
		{0},
	};
	const cli_spec_t spec = {
		.name = "run-plan",
		.usage = "[options] PLAN.json",
		.description =
			"Starts one sluice-worker process per rank of the plan on this host. Each runs\n"
			"its part of every slot: ring attention (forward and backward) over the zigzag\n"
			"shards of the packed sequences of its group, causal, grouped-query, on random\n"
			"inputs of the plan's lengths drawn from --seed. Prints per group the reference\n"
			"model's predicted time next to the measured one (slowest rank).\n"
			"With --check, every output and gradient is compared with a single-process fp64\n"
			"reference; the tolerance is 1e-6 (cpu) or 1e-2 (cuda, bf16); a failed check\n"
			"or worker exits 1, a plan that cannot be read or checked 2.",
		.opts = opts,
		.min_args = 1,
		.max_args = 1,
		.epilog = "example:\n  sluice plan --ranks 4 --format json -o p.json batch.txt\n"
		          "  sluice run-plan --check --report run.json p.json",
	};
	char **args;
	int nargs;
	int rc = cli_parse(&spec, argc, argv, &args, &nargs);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (strcmp(args[0], "-") == 0)
		return cli_usage_error("run-plan", "the plan must be a file (every worker reads it)");
	if (a.heads % a.kv_heads != 0)
		return cli_usage_error("run-plan", "--heads %lld is not a multiple of --kv-heads %lld",
		                       (long long)a.heads, (long long)a.kv_heads);
	worker_launch_opts_t lo = {
		.plan_path = args[0],
		.profile = a.profile,
		.backend = backends[a.backend],
		.worker_exe = a.worker,
		.shape = {.heads = (int32_t)a.heads, .kv_heads = (int32_t)a.kv_heads,
		          .head_dim = (int32_t)a.head_dim},
		.seed = a.seed,
		.check = a.check,
		.iters = (int)a.iters,
		.warmup = (int)a.warmup,
		.timeout_ms = (int)(a.timeout * 1000),
		.report_path = a.report,
		.keep_dir = a.run_dir,
		.out = stdout,
	};
	worker_launch_result_t res;
	sl_err e = worker_launch(&lo, &res);
	fflush(stdout);
	/* Errors about the plan file itself (unreadable, malformed, invalid)
	 * are bad input; the plan reader and checker prefix them with its path. */
	size_t pl = strlen(args[0]);
	if (e != SL_OK && strncmp(sl_errmsg(), args[0], pl) == 0 && sl_errmsg()[pl] == ':') {
		fprintf(stderr, "sluice run-plan: error: %s\n", sl_errmsg());
		return CLI_EXIT_USAGE;
	}
	if (e != SL_OK)
		return cli_fail("run-plan");
	if (a.check && !res.check.ok) {
		fprintf(stderr, "sluice run-plan: check failed (see above)\n");
		return CLI_EXIT_FAIL;
	}
	return CLI_EXIT_OK;
}
