/* sluice-worker: one rank of a plan. Two ways to get the work:
 *   --job J --rank r [--endpoint E]: register with sluiced and execute the
 *     work orders it pushes, step after step (worker/serve.c);
 *   --plan PLAN.json --rank r: one plan file (`sluice run-plan` starts one
 *     per rank; by hand, give every rank the same --run-dir).
 * Both execute through the same session code (worker/run.c).
 * Exit status: SL_EXIT_HELP's table; done or stopped by SIGTERM/SIGINT is 0,
 * a plan file that cannot be read or checked is 2. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/sluice.h"
#include "worker.h"

#ifdef WORKER_HAVE_CUDA
extern const worker_backend_ops_t kern_cuda_backend_ops;
#endif

static const worker_backend_ops_t *const worker_backends[] = {
	&worker_cpu_backend_ops,
#ifdef WORKER_HAVE_CUDA
	&kern_cuda_backend_ops,
#endif
};

static const worker_backend_ops_t *main_find_backend(const char *name)
{
	for (size_t i = 0; i < sizeof worker_backends / sizeof worker_backends[0]; i++)
		if (strcmp(worker_backends[i]->name, name) == 0)
			return worker_backends[i];
	return NULL;
}

static void main_usage(FILE *f)
{
	fprintf(f,
	        "usage: sluice-worker --job JOB --rank R [--endpoint E] [options]\n"
	        "       sluice-worker --plan PLAN.json --rank R [options]\n"
	        "Runs rank R's attention work (ring attention, forward and backward) of every\n"
	        "slot in which it has a group: of each work order sluiced pushes to rank R of\n"
	        "JOB (until SIGTERM/SIGINT), or of one plan file.\n"
	        "  --job JOB           serve sluiced: register as rank R of JOB\n"
	        "  --endpoint E        sluiced's endpoint [$SLUICE_ENDPOINT, else the default ipc]\n"
	        "  --ranks N           refuse plans that do not have N ranks [any]\n"
	        "  --server-key K      tcp: the daemon's public key (Z85 or .pub file)\n"
	        "  --secret-key FILE   tcp: this worker's secret key file (sluice keygen)\n"
	        "  --max-steps K       exit after K work orders [until stopped]\n"
	        "  --max-tokens T      refuse a group with more than T local tokens [no limit]\n"
	        "  --register-timeout-ms MS  wait for sluiced's welcome [10000]\n"
	        "  --plan FILE         run one plan (sluice.plan/1 JSON) instead\n"
	        "  --rank R            this process's rank, 0 <= R < plan ranks\n"
	        "  --backend NAME      cpu (fp64) or cuda (bf16; when built with CUDA) [cpu]\n"
	        "  --run-dir DIR       directory shared by the ranks (sockets) [--plan:\n"
	        "                      /tmp/sluice-run-UID; --job: /tmp/sluice-run-UID/job-JOB-HASH]\n"
	        "  --heads H           query heads [4]\n"
	        "  --kv-heads K        key/value heads (H multiple of K) [2]\n"
	        "  --head-dim D        head dimension [16]\n"
	        "  --seed S            input seed, the same for every rank [1]\n"
	        "  --iters N           timed forward+backward repetitions (median reported) [1]\n"
	        "  --warmup N          untimed repetitions first [0]\n"
	        "  --timeout-ms MS     longest wait for a peer [60000]\n"
	        "  --local-rank R, --local-size N  placement on this host [rank, plan ranks]\n"
	        "  --dump FILE|DIR     write outputs (O, LSE, dQ, dK, dV) for checking: --plan to\n"
	        "                      FILE; --job to DIR/step<S>.rank<R>.out for every step\n"
	        "  --report FILE       --plan: write per-slot times and bytes as JSON\n"
	        "  --profile NAME|FILE --plan: check it under this profile [the plan's own]\n"
	        "  --structure-only    --plan: check only what execution needs (a launcher checked\n"
	        "                      the rest)\n"
	        "  --help, --version\n"
	        "backends:");
	for (size_t i = 0; i < sizeof worker_backends / sizeof worker_backends[0]; i++)
		fprintf(f, " %s", worker_backends[i]->name);
	fprintf(f, "\n\n%s", SL_EXIT_HELP);
}

/* Parses a whole decimal integer in [lo, hi]; 0 on success. */
static int main_int(const char *opt, const char *s, long long lo, long long hi, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "sluice-worker: %s '%s' is not an integer in [%lld, %lld]\n", opt, s, lo,
		        hi);
		return -1;
	}
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	sl_log_init_from_env();
	setvbuf(stderr, NULL, _IONBF, 0);
	const char *plan_path = NULL, *backend = "cpu";
	worker_plan_rules_t rules = {.profile = NULL, .structure_only = 0};
	char run_dir[PATH_MAX];
	snprintf(run_dir, sizeof run_dir, "/tmp/sluice-run-%u", (unsigned)getuid());
	int have_dir = 0;
	long long rank = -1;
	worker_serve_opts_t so = {.register_timeout_ms = 10000};
	const char *serve_only = NULL, *plan_only = NULL; /* an option of the other mode */
	worker_run_opts_t o = {.local_rank = -1, .local_size = -1,
	                       .shape = {.heads = 4, .kv_heads = 2, .head_dim = 16},
	                       .seed = 1, .iters = 1, .warmup = 0, .timeout_ms = 60000};
	enum { O_PLAN = 1, O_RANK, O_BACKEND, O_RUNDIR, O_HEADS, O_KV, O_DIM, O_SEED, O_ITERS,
	       O_WARM, O_TO, O_LRANK, O_LSIZE, O_DUMP, O_REPORT, O_PROFILE, O_STRUCT, O_HELP, O_VERSION,
	       O_JOB, O_ENDPOINT, O_RANKS, O_SKEY, O_SECRET, O_MAXSTEPS, O_MAXTOK, O_REGTO };
	static const struct option lopts[] = {
		{"plan", required_argument, 0, O_PLAN},       {"rank", required_argument, 0, O_RANK},
		{"backend", required_argument, 0, O_BACKEND}, {"run-dir", required_argument, 0, O_RUNDIR},
		{"heads", required_argument, 0, O_HEADS},     {"kv-heads", required_argument, 0, O_KV},
		{"head-dim", required_argument, 0, O_DIM},    {"seed", required_argument, 0, O_SEED},
		{"iters", required_argument, 0, O_ITERS},     {"warmup", required_argument, 0, O_WARM},
		{"timeout-ms", required_argument, 0, O_TO},   {"local-rank", required_argument, 0, O_LRANK},
		{"local-size", required_argument, 0, O_LSIZE}, {"dump", required_argument, 0, O_DUMP},
		{"report", required_argument, 0, O_REPORT},   {"help", no_argument, 0, O_HELP},
		{"version", no_argument, 0, O_VERSION},
		{"profile", required_argument, 0, O_PROFILE}, {"structure-only", no_argument, 0, O_STRUCT},
		{"job", required_argument, 0, O_JOB},         {"endpoint", required_argument, 0, O_ENDPOINT},
		{"ranks", required_argument, 0, O_RANKS},     {"server-key", required_argument, 0, O_SKEY},
		{"secret-key", required_argument, 0, O_SECRET},
		{"max-steps", required_argument, 0, O_MAXSTEPS},
		{"max-tokens", required_argument, 0, O_MAXTOK},
		{"register-timeout-ms", required_argument, 0, O_REGTO},
		{0, 0, 0, 0}};
	int c;
	long long v;
	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case O_PLAN: plan_path = optarg; break;
		case O_RANK:
			if (main_int("--rank", optarg, 0, SL_MAX_RANKS - 1, &rank))
				return SL_EXIT_USAGE;
			break;
		case O_BACKEND: backend = optarg; break;
		case O_RUNDIR:
			snprintf(run_dir, sizeof run_dir, "%s", optarg);
			have_dir = 1;
			break;
		case O_HEADS:
			if (main_int("--heads", optarg, 1, WORKER_MAX_HEADS, &v))
				return SL_EXIT_USAGE;
			o.shape.heads = (int32_t)v;
			break;
		case O_KV:
			if (main_int("--kv-heads", optarg, 1, WORKER_MAX_HEADS, &v))
				return SL_EXIT_USAGE;
			o.shape.kv_heads = (int32_t)v;
			break;
		case O_DIM:
			if (main_int("--head-dim", optarg, 1, WORKER_MAX_HEAD_DIM, &v))
				return SL_EXIT_USAGE;
			o.shape.head_dim = (int32_t)v;
			break;
		case O_SEED:
			if (main_int("--seed", optarg, 0, LLONG_MAX, &v))
				return SL_EXIT_USAGE;
			o.seed = (uint64_t)v;
			break;
		case O_ITERS:
			if (main_int("--iters", optarg, 1, 1000000, &v))
				return SL_EXIT_USAGE;
			o.iters = (int)v;
			break;
		case O_WARM:
			if (main_int("--warmup", optarg, 0, 1000000, &v))
				return SL_EXIT_USAGE;
			o.warmup = (int)v;
			break;
		case O_TO:
			if (main_int("--timeout-ms", optarg, 1, 86400000, &v))
				return SL_EXIT_USAGE;
			o.timeout_ms = (int)v;
			break;
		case O_LRANK:
			if (main_int("--local-rank", optarg, 0, SL_MAX_RANKS - 1, &v))
				return SL_EXIT_USAGE;
			o.local_rank = (int32_t)v;
			break;
		case O_LSIZE:
			if (main_int("--local-size", optarg, 1, SL_MAX_RANKS, &v))
				return SL_EXIT_USAGE;
			o.local_size = (int32_t)v;
			break;
		case O_DUMP: o.dump_path = optarg; break;
		case O_REPORT: o.report_path = optarg; plan_only = "--report"; break;
		case O_PROFILE: rules.profile = optarg; plan_only = "--profile"; break;
		case O_STRUCT: rules.structure_only = 1; plan_only = "--structure-only"; break;
		case O_JOB: so.job = optarg; break;
		case O_ENDPOINT: so.endpoint = optarg; serve_only = "--endpoint"; break;
		case O_RANKS:
			if (main_int("--ranks", optarg, 1, SL_MAX_RANKS, &v))
				return SL_EXIT_USAGE;
			so.ranks = (int32_t)v;
			serve_only = "--ranks";
			break;
		case O_SKEY: so.server_key = optarg; serve_only = "--server-key"; break;
		case O_SECRET: so.secret_key_file = optarg; serve_only = "--secret-key"; break;
		case O_MAXSTEPS:
			if (main_int("--max-steps", optarg, 1, LLONG_MAX, &v))
				return SL_EXIT_USAGE;
			so.max_steps = v;
			serve_only = "--max-steps";
			break;
		case O_MAXTOK:
			if (main_int("--max-tokens", optarg, 1, LLONG_MAX, &v))
				return SL_EXIT_USAGE;
			so.max_tokens = v;
			serve_only = "--max-tokens";
			break;
		case O_REGTO:
			if (main_int("--register-timeout-ms", optarg, 1, 86400000, &v))
				return SL_EXIT_USAGE;
			so.register_timeout_ms = (int)v;
			serve_only = "--register-timeout-ms";
			break;
		case O_HELP: main_usage(stdout); return SL_EXIT_OK;
		case O_VERSION: printf("sluice-worker %s\n", SLUICE_VERSION); return SL_EXIT_OK;
		default: main_usage(stderr); return SL_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "sluice-worker: unexpected argument '%s'\n", argv[optind]);
		return SL_EXIT_USAGE;
	}
	if (plan_path && so.job) {
		fprintf(stderr, "sluice-worker: --plan and --job exclude each other (see --help)\n");
		return SL_EXIT_USAGE;
	}
	if (!plan_path && !so.job) {
		fprintf(stderr, "sluice-worker: --plan is required (or --job, to serve sluiced; "
		                "see --help)\n");
		return SL_EXIT_USAGE;
	}
	if (rank < 0) {
		fprintf(stderr, "sluice-worker: --rank is required (see --help)\n");
		return SL_EXIT_USAGE;
	}
	if (so.job && plan_only) {
		fprintf(stderr, "sluice-worker: %s is for --plan runs, not with --job\n", plan_only);
		return SL_EXIT_USAGE;
	}
	if (plan_path && serve_only) {
		fprintf(stderr, "sluice-worker: %s is for serving sluiced (--job), not with --plan\n",
		        serve_only);
		return SL_EXIT_USAGE;
	}
	const worker_backend_ops_t *ops = main_find_backend(backend);
	if (!ops) {
		fprintf(stderr, "sluice-worker: unknown backend '%s' (this build has:", backend);
		for (size_t i = 0; i < sizeof worker_backends / sizeof worker_backends[0]; i++)
			fprintf(stderr, " %s", worker_backends[i]->name);
		fprintf(stderr, ")\n");
		return SL_EXIT_USAGE;
	}
	if (worker_shape_check(&o.shape) != SL_OK) {
		fprintf(stderr, "sluice-worker: %s\n", sl_errmsg());
		return SL_EXIT_USAGE;
	}
	if (so.job) {
		/* Progress lines reach a pipe or file as they happen. */
		setvbuf(stdout, NULL, _IOLBF, 0);
		so.rank = (int32_t)rank;
		so.run_dir = have_dir ? run_dir : NULL;
		so.dump_dir = o.dump_path;
		o.dump_path = NULL;
		so.run = o;
		return worker_serve(ops, &so);
	}
	if (!have_dir && mkdir(run_dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "sluice-worker: cannot create run directory %s: %s\n", run_dir,
		        strerror(errno));
		return SL_EXIT_FAIL;
	}
	o.rank = (int32_t)rank;
	o.run_dir = run_dir;
	sl_plan_t *plan = NULL;
	sl_err rc = worker_plan_load(plan_path, &rules, &plan, NULL, NULL);
	/* a plan that cannot be read or checked is bad input */
	int status = rc == SL_OK || rc == SL_ENOMEM ? SL_EXIT_FAIL : SL_EXIT_USAGE;
	if (rc == SL_OK)
		rc = worker_run(plan, plan_path, ops, &o);
	sl_plan_free(&plan);
	if (rc != SL_OK) {
		fprintf(stderr, "sluice-worker[rank %lld]: error: %s (%s)\n", rank, sl_errmsg(),
		        sl_errname(rc));
		return status;
	}
	return SL_EXIT_OK;
}
