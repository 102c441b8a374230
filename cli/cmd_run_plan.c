/* sluice run-plan: executes a plan's attention on local worker processes
 * (one sluice-worker per rank), optionally checks every output and gradient
 * against a single-process fp64 reference, and prints measured time next to
 * the reference model's prediction. The work is worker_launch (worker/). */
#include <math.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "sluice/calib.h"
#include "worker.h"

typedef struct emul_args {
	const char *model, *measured, *trace, *report, *profile;
	int64_t iters, warmup, device;
	int argc;
	char **argv;
} emul_args_t;

/* Writes one output through cli_open_out (a path or "-"). */
static sl_err write_out(const char *path, const worker_emul_t *e, const worker_emul_meta_t *meta,
                        int trace)
{
	FILE *f = NULL;
	int must_close = 0;
	SL_CHECK(cli_open_out(path, &f, &must_close));
	sl_err rc = trace ? worker_trace_write(f, e->plan, e->have_pred ? e->pred_start : NULL,
	                                       e->pred_ms, e->meas_start, e->meas_ms)
	                  : worker_emul_write_report(e, meta, f);
	sl_err rc2 = cli_close_out(path, f, must_close);
	return rc != SL_OK ? rc : rc2;
}

/* `run-plan --emulate`: every rank's work on this GPU in turn (or times
 * read back with --measured), the timing rule over the measured group
 * times, predicted vs measured as a table, report and trace. */
static int run_emulated(const char *plan_path, const emul_args_t *a)
{
	worker_plan_rules_t rules = {.profile = a->profile};
	sl_plan_t *plan = NULL;
	sl_cost_t cost;
	int have_cost = 0, rc = CLI_EXIT_FAIL;
	worker_emul_t e;
	sl_emul_opts_t eo;
	char command[1024] = "", date[32] = "", card[SL_CALIB_TEXT] = "";
	memset(&e, 0, sizeof(e));
	memset(&eo, 0, sizeof(eo));
	if (worker_plan_load(plan_path, &rules, &plan, &cost, &have_cost) != SL_OK) {
		fprintf(stderr, "sluice run-plan: error: %s\n", sl_errmsg());
		return CLI_EXIT_USAGE;
	}
	if (sl_model_shape_resolve(a->model, &eo.model) != SL_OK) {
		fprintf(stderr, "sluice run-plan: error: --model: %s\n", sl_errmsg());
		rc = CLI_EXIT_USAGE;
		goto done;
	}
	if (worker_emul_init(&e, plan) != SL_OK)
		goto fail;
	for (int i = 0, n = 0; i < a->argc && n < (int)sizeof(command) - 1; i++)
		n += snprintf(command + n, sizeof(command) - (size_t)n, "%s%s", i ? " " : "sluice ",
		              a->argv[i]);
	{
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	if (a->measured != NULL) {
		if (worker_emul_read_measured(a->measured, &e) != SL_OK) {
			fprintf(stderr, "sluice run-plan: error: %s\n", sl_errmsg());
			rc = CLI_EXIT_USAGE;
			goto done;
		}
		snprintf(card, sizeof(card), "times read from %s", a->measured);
	} else {
#ifdef SLUICE_HAVE_PROFILER_GPU
		eo.act_bytes_per_token = have_cost ? cost.prof.act_bytes_per_token : 0;
		eo.iters = (int)a->iters;
		eo.warmup = (int)a->warmup;
		eo.device = (int)a->device;
		eo.verbose = 0;
		if (sl_calib_emulate(plan, &eo, e.rank_ms, e.parts) != SL_OK)
			goto fail;
		snprintf(card, sizeof(card), "%s", eo.card);
#else
		sl_seterr(SL_EINVAL, "GPU support was not built (this sluice has no CUDA): it cannot "
		                     "emulate; --measured FILE reads times from an earlier report");
		goto fail;
#endif
	}
	if (worker_emul_finish(&e, have_cost ? &cost : NULL) != SL_OK)
		goto fail;
	worker_emul_write_table(&e, stdout);
	fflush(stdout);
	worker_emul_meta_t meta = {eo.model.name, card, date, command,
	                           a->measured != NULL ? "measured times read back" : "emulated on one GPU"};
	if (a->report != NULL && write_out(a->report, &e, &meta, 0) != SL_OK)
		goto fail;
	if (a->trace != NULL && write_out(a->trace, &e, &meta, 1) != SL_OK)
		goto fail;
	rc = CLI_EXIT_OK;
	goto done;
fail:
	rc = cli_fail("run-plan");
done:
	worker_emul_free(&e);
	if (have_cost)
		sl_cost_fini(&cost);
	sl_plan_free(&plan);
	return rc;
}

int cli_cmd_run_plan(int argc, char **argv)
{
	struct {
		int backend;
		int check, emulate;
		int64_t device;
		const char *model, *measured, *trace;
		int64_t heads, kv_heads, head_dim, iters, warmup, timeout;
		uint64_t seed;
		const char *report, *worker, *run_dir, *profile;
	} a = {0, 0, 0, 0, "gpt-7b", NULL, NULL, 4, 2, 16, 1, 0, 60, 1, NULL, NULL, NULL, NULL};
	static const char *const backends[] = {"cpu", "cuda", NULL};
	const cli_opt_t opts[] = {
		{"backend", 0, CLI_OPT_CHOICE, &a.backend, "NAME",
		 "cpu (fp64, ZeroMQ) or cuda (bf16, NCCL; needs a CUDA build)", "cpu", 1, 0, backends},
		{"check", 0, CLI_OPT_FLAG, &a.check, NULL,
		 "compare O, dQ, dK, dV with an fp64 full-attention reference", NULL, 1, 0, NULL},
		{"emulate", 0, CLI_OPT_FLAG, &a.emulate, NULL,
		 "run every rank's work of the plan on this one GPU in turn and compare with the "
		 "prediction", NULL, 1, 0, NULL},
		{"model", 0, CLI_OPT_STR, &a.model, "NAME|FILE",
		 "--emulate: the transformer shape (a preset or a JSON file as for sluice profile)",
		 "gpt-7b", 1, 0, NULL},
		{"measured", 0, CLI_OPT_STR, &a.measured, "FILE",
		 "--emulate: take the rank times from an earlier --report instead of a GPU", NULL, 1, 0,
		 NULL},
		{"trace-json", 0, CLI_OPT_STR, &a.trace, "FILE",
		 "--emulate: write a Chrome/Perfetto trace, predicted and measured per rank", NULL, 1,
		 0, NULL},
		{"device", 0, CLI_OPT_INT, &a.device, "N", "--emulate: CUDA device", "0", 0, 1024,
		 NULL},
		{"heads", 0, CLI_OPT_INT, &a.heads, "H", "query heads", "4", 1, WORKER_MAX_HEADS, NULL},
		{"kv-heads", 0, CLI_OPT_INT, &a.kv_heads, "K", "key/value heads (H a multiple of K)",
		 "2", 1, WORKER_MAX_HEADS, NULL},
		{"head-dim", 0, CLI_OPT_INT, &a.head_dim, "D", "head dimension", "16", 1,
		 WORKER_MAX_HEAD_DIM, NULL},
		{"seed", 0, CLI_OPT_U64, &a.seed, "S", "seed of the random inputs", "1", 1, 0, NULL},
		{"iters", 0, CLI_OPT_INT, &a.iters, "N", "timed forward+backward runs (median)", "1", 1,
		 1000000, NULL},
		{"warmup", 0, CLI_OPT_INT, &a.warmup, "N", "untimed runs first (--emulate: of every group execution)", "0", 0, 1000000, NULL},
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
			"or worker exits 1, a plan that cannot be read or checked 2.\n"
			"With --emulate, no workers start: every rank's part of every group execution\n"
			"runs on this one GPU in turn (one transformer layer of --model forward and\n"
			"backward, its attention over the ring's hops against each peer's shard, the\n"
			"plan's offload as pinned-memory copies, the LM head; the layer's time times the\n"
			"layer count); a group takes its slowest rank's time, and the step follows the\n"
			"reference timing rule. Transfers between ranks are modeled, not run. Prints\n"
			"predicted vs measured per group execution, rank and step (--report: JSON,\n"
			"--trace-json: a trace for ui.perfetto.dev); --iters/--warmup repeat each group.",
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
	if (!a.emulate && (a.measured != NULL || a.trace != NULL))
		return cli_usage_error("run-plan", "--measured and --trace-json need --emulate");
	if (a.emulate) {
		if (a.check)
			return cli_usage_error("run-plan", "--check runs the workers: not with --emulate");
		const emul_args_t ea = {a.model, a.measured, a.trace, a.report, a.profile,
		                        a.iters, a.warmup, a.device, argc, argv};
		return run_emulated(args[0], &ea);
	}
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
