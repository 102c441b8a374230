/* sluice replay: cuts a trace into training steps of --batch sequences and
 * plans every step with several policies, then compares their predicted step
 * times (reference cost model) with each other and with the ideal. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sluice/rng.h"

#define REPLAY_DEFAULT_STEPS 50 /* synthetic trace: batch * this many sequences */
#define REPLAY_MAX_POLICIES 64

typedef struct replay_args {
	cli_cluster_args_t cl;
	cli_trace_args_t tr;
	const char *policies;
	int64_t batch;
	const char *shuffle;
	int64_t max_len;
	int64_t steps;
	int format;
	const char *out;
	const char *svg;
	const char *per_step;
	cli_search_args_t search;
} replay_args_t;

/* Results of one policy over all steps. */
typedef struct replay_pol {
	const sl_policy_t *pol;
	double *step_ms;    /* [nsteps] */
	double *planner_ms; /* [nsteps] */
	unsigned char *bad; /* [nsteps]: 1 when that step's plan broke a rule */
	int64_t invalid;    /* plans with violations */
	char first_violation[256];
	/* summary */
	double mean, p50, p99, ratio_mean, plan_mean, plan_p50, speedup;
	int64_t lost;
} replay_pol_t;

typedef struct replay {
	const char *trace_name;
	size_t nread, ndropped, nkept, nunused;
	int64_t longest;
	int shuffled;
	uint64_t shuffle_seed;
	int64_t batch;
	size_t nsteps;
	double *ideal_ms; /* [nsteps] */
	size_t npol;
	replay_pol_t pol[REPLAY_MAX_POLICIES];
	int static_idx; /* index of `static` in pol, or -1 */
} replay_t;

/* Uniform integer in [0, bound) without modulo bias (rejection sampling). */
static uint64_t uniform_below(uint64_t *state, uint64_t bound)
{
	uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
	uint64_t x;
	do
		x = sl_splitmix64(state);
	while (x >= limit);
	return x % bound;
}

/* Fisher-Yates (Knuth, TAOCP vol. 2, Algorithm P). */
static void shuffle_lengths(int64_t *v, size_t n, uint64_t seed)
{
	uint64_t st = seed;
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)uniform_below(&st, (uint64_t)i);
		int64_t t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

/* Parses the --policies list into r->pol; returns a usage error status or 0. */
static int parse_policies(const char *list, replay_t *r)
{
	if (list == NULL) {
		for (size_t i = 0; i < sl_policy_count() && r->npol < REPLAY_MAX_POLICIES; i++)
			r->pol[r->npol++].pol = sl_policy_at(i);
		if (r->npol == 0)
			return cli_usage_error("replay", "no policies are registered");
		return 0;
	}
	const char *p = list;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char name[64];
		if (len == 0 || len >= sizeof(name))
			return cli_usage_error("replay", "invalid value '%s' for --policies (empty or "
			                                 "overlong name)", list);
		memcpy(name, p, len);
		name[len] = '\0';
		const sl_policy_t *pol = sl_policy_find(name);
		if (pol == NULL)
			return cli_usage_error("replay",
			                       "invalid value '%s' for --policies: unknown policy '%s' (see "
			                       "'sluice policies')", list, name);
		for (size_t i = 0; i < r->npol; i++)
			if (r->pol[i].pol == pol)
				return cli_usage_error("replay",
				                       "invalid value '%s' for --policies: '%s' given twice",
				                       list, name);
		if (r->npol == REPLAY_MAX_POLICIES)
			return cli_usage_error("replay", "invalid value '%s' for --policies (more than %d)",
			                       list, REPLAY_MAX_POLICIES);
		r->pol[r->npol++].pol = pol;
		p += len;
		if (*p == ',') {
			p++;
			if (*p == '\0')
				return cli_usage_error("replay", "invalid value '%s' for --policies "
				                                 "(trailing comma)", list);
		}
	}
	return 0;
}

/* sl_violation_fn: remembers the first message. */
static void first_violation(void *arg, const char *message)
{
	char *buf = arg;
	if (buf[0] == '\0')
		snprintf(buf, 256, "%s", message);
}

static void progress(size_t done, size_t total, const char *what)
{
	const int width = 30;
	int fill = total ? (int)((double)done / (double)total * width) : width;
	fprintf(stderr, "\r[%.*s%*s] %zu/%zu steps %-24.24s", fill,
	        "##############################", width - fill, "", done, total, what);
	fflush(stderr);
}

static void summarise(replay_t *r)
{
	size_t n = r->nsteps;
	for (size_t k = 0; k < r->npol; k++) {
		replay_pol_t *p = &r->pol[k];
		double sum = 0, rsum = 0, psum = 0;
		p->lost = 0;
		for (size_t s = 0; s < n; s++) {
			sum += p->step_ms[s];
			rsum += p->step_ms[s] / r->ideal_ms[s];
			psum += p->planner_ms[s];
			for (size_t o = 0; o < r->npol; o++) {
				double other = r->pol[o].step_ms[s];
				if (o != k && other < p->step_ms[s] - 1e-9 * fmax(1.0, p->step_ms[s])) {
					p->lost++;
					break;
				}
			}
		}
		p->mean = sum / (double)n;
		p->ratio_mean = rsum / (double)n;
		p->plan_mean = psum / (double)n;
		p->p50 = cli_quantile(p->step_ms, n, 0.5);
		p->p99 = cli_quantile(p->step_ms, n, 0.99);
		p->plan_p50 = cli_quantile(p->planner_ms, n, 0.5);
	}
	for (size_t k = 0; k < r->npol; k++)
		r->pol[k].speedup =
			r->static_idx >= 0 ? r->pol[r->static_idx].mean / r->pol[k].mean : NAN;
}

static double mean_of(const double *v, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += v[i];
	return n ? s / (double)n : NAN;
}

static void write_table(FILE *f, const replay_t *r, const sl_cost_t *cost)
{
	fprintf(f, "trace       %s: %zu sequences, %zu longer than max-len dropped, longest kept %lld\n",
	        r->trace_name, r->nread, r->ndropped, (long long)r->longest);
	fprintf(f, "steps       %zu of %lld sequences", r->nsteps, (long long)r->batch);
	if (r->nunused >= (size_t)r->batch)
		fprintf(f, " (stopped by --steps; %zu later sequences not replayed)", r->nunused);
	else if (r->nunused > 0)
		fprintf(f, " (%zu sequences of an incomplete last step not replayed)", r->nunused);
	fputc('\n', f);
	if (r->shuffled)
		fprintf(f, "shuffle     seed %llu\n", (unsigned long long)r->shuffle_seed);
	fprintf(f, "cluster     %s, %d ranks (%d per node), cap %lld tokens per rank\n", cost->prof.name,
	        cost->cl.ranks, cost->cl.ranks_per_node, (long long)cost->cap);
	fprintf(f, "ideal       mean %.1f ms per step\n\n", mean_of(r->ideal_ms, r->nsteps));
	fprintf(f, "%-20s %10s %10s %10s %8s %10s %12s %10s %6s\n", "policy", "mean ms", "p50 ms",
	        "p99 ms", "speedup", "step/ideal", "plan ms mean", "plan p50", "lost");
	for (size_t k = 0; k < r->npol; k++) {
		const replay_pol_t *p = &r->pol[k];
		char sp[16];
		if (isfinite(p->speedup))
			snprintf(sp, sizeof(sp), "%.3fx", p->speedup);
		else
			snprintf(sp, sizeof(sp), "-");
		fprintf(f, "%-20s %10.1f %10.1f %10.1f %8s %10.3f %12.2f %10.2f %6lld\n", p->pol->name,
		        p->mean, p->p50, p->p99, sp, p->ratio_mean, p->plan_mean, p->plan_p50,
		        (long long)p->lost);
	}
	if (r->static_idx < 0)
		fprintf(f, "\n(speedup needs `static` among --policies)\n");
	fprintf(f, "\nspeedup: static's mean step / the policy's; lost: steps where another policy "
	           "was faster\n");
}

static void write_csv(FILE *f, const replay_t *r)
{
	fprintf(f, "policy,steps,batch,mean_ms,p50_ms,p99_ms,speedup_vs_static,mean_step_over_ideal,"
	           "planner_mean_ms,planner_p50_ms,lost,invalid\n");
	for (size_t k = 0; k < r->npol; k++) {
		const replay_pol_t *p = &r->pol[k];
		cli_csv_field(f, p->pol->name);
		fprintf(f, ",%zu,%lld,%.6f,%.6f,%.6f,", r->nsteps, (long long)r->batch, p->mean, p->p50,
		        p->p99);
		if (isfinite(p->speedup))
			fprintf(f, "%.6f", p->speedup);
		fprintf(f, ",%.6f,%.6f,%.6f,%lld,%lld\n", p->ratio_mean, p->plan_mean, p->plan_p50,
		        (long long)p->lost, (long long)p->invalid);
	}
}

static sl_err write_json(FILE *f, const replay_t *r, const sl_cost_t *cost)
{
	json_t *o = json_object(), *tr = json_object(), *arr = json_array();
	if (o == NULL || tr == NULL || arr == NULL) {
		json_decref(o);
		json_decref(tr);
		json_decref(arr);
		return sl_seterr(SL_ENOMEM, "out of memory for the JSON report");
	}
	json_object_set_new(tr, "name", json_string(r->trace_name));
	json_object_set_new(tr, "sequences", json_integer((json_int_t)r->nread));
	json_object_set_new(tr, "dropped", json_integer((json_int_t)r->ndropped));
	json_object_set_new(tr, "kept", json_integer((json_int_t)r->nkept));
	json_object_set_new(tr, "longest_kept", json_integer(r->longest));
	json_object_set_new(tr, "unused", json_integer((json_int_t)r->nunused));
	json_object_set_new(tr, "shuffle_seed",
	                    r->shuffled ? json_integer((json_int_t)r->shuffle_seed) : json_null());
	json_object_set_new(o, "trace", tr);
	json_object_set_new(o, "profile", json_string(cost->prof.name));
	json_object_set_new(o, "ranks", json_integer(cost->cl.ranks));
	json_object_set_new(o, "ranks_per_node", json_integer(cost->cl.ranks_per_node));
	json_object_set_new(o, "cap_tokens", json_integer(cost->cap));
	json_object_set_new(o, "batch", json_integer(r->batch));
	json_object_set_new(o, "steps", json_integer((json_int_t)r->nsteps));
	json_object_set_new(o, "ideal_mean_ms", json_real(mean_of(r->ideal_ms, r->nsteps)));
	for (size_t k = 0; k < r->npol; k++) {
		const replay_pol_t *p = &r->pol[k];
		json_t *e = json_object();
		if (e == NULL)
			break;
		json_object_set_new(e, "policy", json_string(p->pol->name));
		json_object_set_new(e, "mean_ms", json_real(p->mean));
		json_object_set_new(e, "p50_ms", json_real(p->p50));
		json_object_set_new(e, "p99_ms", json_real(p->p99));
		json_object_set_new(e, "speedup_vs_static",
		                    isfinite(p->speedup) ? json_real(p->speedup) : json_null());
		json_object_set_new(e, "mean_step_over_ideal", json_real(p->ratio_mean));
		json_object_set_new(e, "planner_mean_ms", json_real(p->plan_mean));
		json_object_set_new(e, "planner_p50_ms", json_real(p->plan_p50));
		json_object_set_new(e, "lost", json_integer(p->lost));
		json_object_set_new(e, "invalid", json_integer(p->invalid));
		json_array_append_new(arr, e);
	}
	json_object_set_new(o, "policies", arr);
	int bad = json_dumpf(o, f, JSON_INDENT(2) | JSON_REAL_PRECISION(12)) != 0;
	fputc('\n', f);
	json_decref(o);
	return bad ? sl_seterr(SL_EIO, "writing the JSON report failed") : SL_OK;
}

static sl_err write_per_step(const char *path, const replay_t *r, const sl_lengths_t *kept)
{
	FILE *f;
	int must_close;
	SL_CHECK(cli_open_out(path, &f, &must_close));
	fprintf(f, "step,policy,step_ms,ideal_ms,step_over_ideal,planner_ms,sequences,tokens,"
	           "max_length,valid\n");
	for (size_t s = 0; s < r->nsteps; s++) {
		int64_t tokens = 0, longest = 0;
		for (int64_t i = 0; i < r->batch; i++) {
			int64_t len = kept->v[s * (size_t)r->batch + (size_t)i];
			tokens += len;
			if (len > longest)
				longest = len;
		}
		for (size_t k = 0; k < r->npol; k++) {
			const replay_pol_t *p = &r->pol[k];
			fprintf(f, "%zu,", s);
			cli_csv_field(f, p->pol->name);
			fprintf(f, ",%.6f,%.6f,%.6f,%.3f,%lld,%lld,%lld,%d\n", p->step_ms[s], r->ideal_ms[s],
			        p->step_ms[s] / r->ideal_ms[s], p->planner_ms[s], (long long)r->batch,
			        (long long)tokens, (long long)longest, p->bad[s] ? 0 : 1);
		}
	}
	return cli_close_out(path, f, must_close);
}

static void replay_free(replay_t *r)
{
	for (size_t k = 0; k < r->npol; k++) {
		free(r->pol[k].step_ms);
		free(r->pol[k].planner_ms);
		free(r->pol[k].bad);
	}
	free(r->ideal_ms);
}

int cli_cmd_replay(int argc, char **argv)
{
	replay_args_t a = {.batch = 512, .max_len = SL_SYNTH_MAX_LEN};
	cli_cluster_defaults(&a.cl);
	const cli_opt_t opts[] = {
		CLI_OPTS_CLUSTER(a.cl),
		CLI_OPTS_TRACE(a.tr),
		{"policies", 0, CLI_OPT_STR, &a.policies, "A,B,..", "policies to compare",
		 "all registered", 1, 0, NULL},
		{"batch", 'b', CLI_OPT_INT, &a.batch, "B", "sequences per step (global batch)", "512", 1,
		 INT32_MAX, NULL},
		{"shuffle", 0, CLI_OPT_STR, &a.shuffle, "SEED",
		 "shuffle the trace first (deterministic Fisher-Yates)", "trace order", 1, 0, NULL},
		{"max-len", 0, CLI_OPT_INT, &a.max_len, "L", "drop (and count) sequences longer than L",
		 "196608", 1, (double)SL_MAX_SEQ_LEN, NULL},
		{"steps", 0, CLI_OPT_INT, &a.steps, "K", "replay at most K steps (0 = all)", "0", 0,
		 INT32_MAX, NULL},
		{"format", 0, CLI_OPT_CHOICE, &a.format, "FMT", "output: table|json|csv", "table", 1, 0,
		 cli_formats_tjc},
		{"output", 'o', CLI_OPT_STR, &a.out, "FILE", "write the summary to FILE", "stdout", 1, 0,
		 NULL},
		{"svg", 0, CLI_OPT_STR, &a.svg, "FILE", "plot step time per policy over the steps", NULL,
		 1, 0, NULL},
		{"per-step", 0, CLI_OPT_STR, &a.per_step, "FILE.csv", "write one row per step and policy",
		 NULL, 1, 0, NULL},
		CLI_OPTS_SEARCH(a.search, " per step"),
		{0},
	};
	const cli_spec_t spec = {
		.name = "replay",
		.usage = "[options] [TRACE]",
		.description =
			"Replays a trace of sequence lengths as training steps: cuts it into steps of\n"
			"--batch sequences (a last incomplete step is not replayed), plans every step with\n"
			"each policy and prints, per policy, the mean, p50 and p99 predicted step time,\n"
			"the speedup over `static` (ratio of mean step times), the mean step/ideal, the\n"
			"planner's time per step and the steps it lost to another policy. Every plan is\n"
			"checked with the plan rules; invalid plans make the exit status 1.\n"
			"Without TRACE, the built-in synthetic trace (log-normal fitted to the Wikipedia\n"
			"sample) of batch * (--steps or 50) sequences is used. `static` is given the\n"
			"longest kept length of the whole trace, as a fixed SP degree must hold it.",
		.opts = opts,
		.min_args = 0,
		.max_args = 1,
		.epilog = "examples:\n"
		          "  sluice replay --steps 10\n"
		          "  sluice replay wikipedia.txt.gz --policies static,sluice --svg steps.svg\n"
		          "  sluice replay trace.jsonl --field input_ids --shuffle 7 --per-step steps.csv",
	};
	char **args;
	int nargs, rc;
	replay_t r = {.static_idx = -1};
	sl_lengths_t lens = {0};
	sl_seq_t *seqs = NULL;
	sl_cost_t cost;
	int have_cost = 0, tty = isatty(STDERR_FILENO);
	FILE *out = NULL;
	int must_close = 0;

	rc = cli_parse(&spec, argc, argv, &args, &nargs);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (a.shuffle != NULL) {
		char *end;
		errno = 0;
		r.shuffle_seed = strtoull(a.shuffle, &end, 0);
		if (a.shuffle[0] == '-' || *end != '\0' || errno == ERANGE)
			return cli_usage_error("replay",
			                       "invalid value '%s' for --shuffle (expected an unsigned "
			                       "integer)", a.shuffle);
		r.shuffled = 1;
	}
	rc = parse_policies(a.policies, &r);
	if (rc != 0)
		return rc;
	for (size_t k = 0; k < r.npol; k++)
		if (strcmp(r.pol[k].pol->name, "static") == 0)
			r.static_idx = (int)k;
	r.batch = a.batch;
	/* --steps is refused up front when it asks for more sequences than any
	 * trace may hold (--max-seqs): the synthetic trace would otherwise be
	 * generated that large before anything is planned. batch and steps are
	 * both below 2^31, so the product fits. */
	if (a.steps > 0 && (uint64_t)a.steps * (uint64_t)a.batch > cli_trace_max_seqs(&a.tr))
		return cli_usage_error("replay",
		                       "invalid value '%lld' for --steps: %lld steps of --batch %lld "
		                       "are %llu sequences, more than the trace limit of %zu "
		                       "(limit --max-seqs)",
		                       (long long)a.steps, (long long)a.steps, (long long)a.batch,
		                       (unsigned long long)a.steps * (unsigned long long)a.batch,
		                       cli_trace_max_seqs(&a.tr));
	if (nargs == 0 && a.steps == 0 &&
	    (uint64_t)REPLAY_DEFAULT_STEPS * (uint64_t)a.batch > cli_trace_max_seqs(&a.tr))
		return cli_usage_error("replay",
		                       "invalid value '%lld' for --batch: the synthetic trace of %d "
		                       "steps would be %llu sequences, more than the limit of %zu "
		                       "(limit --max-seqs)",
		                       (long long)a.batch, REPLAY_DEFAULT_STEPS,
		                       (unsigned long long)REPLAY_DEFAULT_STEPS *
		                           (unsigned long long)a.batch,
		                       cli_trace_max_seqs(&a.tr));

	rc = cli_cost_setup("replay", &a.cl, &cost);
	if (rc != CLI_EXIT_OK)
		goto done;
	have_cost = 1;
	rc = CLI_EXIT_FAIL;
	if (nargs > 0) {
		r.trace_name = args[0];
		sl_err re = cli_read_lengths(args[0], &a.tr, &lens);
		if (re != SL_OK) {
			rc = cli_input_error("replay", re);
			goto done;
		}
	} else {
		r.trace_name = "synthetic";
		size_t n = (size_t)a.batch * (size_t)(a.steps > 0 ? a.steps : REPLAY_DEFAULT_STEPS);
		if (sl_trace_synthetic(SL_SYNTH_SEED, n, SL_SYNTH_MU, SL_SYNTH_SIGMA, a.max_len, &lens) !=
		    SL_OK)
			goto fail;
	}
	r.nread = lens.n;
	if (r.shuffled)
		shuffle_lengths(lens.v, lens.n, r.shuffle_seed);
	/* Drop over-long sequences in place, keeping the order. */
	for (size_t i = 0; i < lens.n; i++) {
		if (lens.v[i] > a.max_len) {
			r.ndropped++;
			continue;
		}
		if (lens.v[i] > r.longest)
			r.longest = lens.v[i];
		lens.v[r.nkept++] = lens.v[i];
	}
	lens.n = r.nkept;
	r.nsteps = r.nkept / (size_t)a.batch;
	if (a.steps > 0 && r.nsteps > (size_t)a.steps)
		r.nsteps = (size_t)a.steps;
	if (r.nsteps == 0) {
		sl_seterr(SL_EINVAL,
		          "%s: %zu sequences left after dropping %zu longer than %lld; one step needs "
		          "--batch %lld",
		          r.trace_name, r.nkept, r.ndropped, (long long)a.max_len, (long long)a.batch);
		goto fail;
	}
	r.nunused = r.nkept - r.nsteps * (size_t)a.batch;

	r.ideal_ms = calloc(r.nsteps, sizeof(double));
	seqs = malloc((size_t)a.batch * sizeof(*seqs));
	int oom = r.ideal_ms == NULL || seqs == NULL;
	for (size_t k = 0; k < r.npol && !oom; k++) {
		r.pol[k].step_ms = calloc(r.nsteps, sizeof(double));
		r.pol[k].planner_ms = calloc(r.nsteps, sizeof(double));
		r.pol[k].bad = calloc(r.nsteps, 1);
		oom = !r.pol[k].step_ms || !r.pol[k].planner_ms || !r.pol[k].bad;
	}
	if (oom) {
		sl_seterr(SL_ENOMEM, "out of memory for %zu steps", r.nsteps);
		goto fail;
	}

	/* Static sizes its one SP degree for the longest sequence it will ever
	 * see, so it gets the whole trace's; the others ignore the field. */
	sl_policy_opts_t po = cli_search_opts(&a.search);
	po.trace_max_len = r.longest;
	for (size_t s = 0; s < r.nsteps; s++) {
		for (int64_t i = 0; i < a.batch; i++) {
			size_t at = s * (size_t)a.batch + (size_t)i;
			seqs[i] = (sl_seq_t){.id = (int64_t)at, .length = lens.v[at]};
		}
		for (size_t k = 0; k < r.npol; k++) {
			replay_pol_t *p = &r.pol[k];
			sl_plan_t *plan = NULL;
			if (tty)
				progress(s, r.nsteps, p->pol->name);
			sl_err e = sl_plan_request(p->pol->name, &cost, seqs, a.batch, &po, &plan);
			if (e != SL_OK) {
				char msg[1024];
				snprintf(msg, sizeof(msg), "%s", sl_errmsg());
				sl_seterr(e, "step %zu (sequences %zu..%zu), policy %s: %s", s,
				          s * (size_t)a.batch, (s + 1) * (size_t)a.batch - 1, p->pol->name,
				          msg);
				if (tty)
					fputc('\n', stderr);
				goto fail;
			}
			char vmsg[256] = "";
			if (sl_plan_validate(plan, &cost, first_violation, vmsg) > 0) {
				p->bad[s] = 1;
				if (p->invalid++ == 0)
					snprintf(p->first_violation, sizeof(p->first_violation), "step %zu: %.200s",
					         s, vmsg);
			}
			p->step_ms[s] = plan->step_ms;
			p->planner_ms[s] = plan->planner_ms;
			r.ideal_ms[s] = plan->ideal_ms;
			sl_plan_free(&plan);
		}
	}
	if (tty)
		fprintf(stderr, "\r%*s\r", 80, "");
	summarise(&r);

	if (cli_open_out(a.out, &out, &must_close) != SL_OK)
		goto fail;
	if (a.format == 0) {
		write_table(out, &r, &cost);
	} else if (a.format == 2) {
		write_csv(out, &r);
	} else if (write_json(out, &r, &cost) != SL_OK) {
		if (must_close)
			fclose(out);
		goto fail;
	}
	if (cli_close_out(a.out, out, must_close) != SL_OK)
		goto fail;
	if (a.per_step != NULL && write_per_step(a.per_step, &r, &lens) != SL_OK)
		goto fail;
	if (a.svg != NULL) {
		cli_series_t series[REPLAY_MAX_POLICIES + 1];
		char title[256];
		for (size_t k = 0; k < r.npol; k++)
			series[k] = (cli_series_t){.name = r.pol[k].pol->name, .y = r.pol[k].step_ms};
		series[r.npol] = (cli_series_t){.name = "ideal", .y = r.ideal_ms, .dashed = 1};
		const char *base = strrchr(r.trace_name, '/');
		snprintf(title, sizeof(title), "%s: %s, %d ranks, %lld sequences per step",
		         base ? base + 1 : r.trace_name, cost.prof.name, cost.cl.ranks, (long long)a.batch);
		if (cli_open_out(a.svg, &out, &must_close) != SL_OK)
			goto fail;
		sl_err e = cli_svg_lines(out, title, "predicted step time (ms)", series, r.npol + 1,
		                         r.nsteps);
		if (cli_close_out(a.svg, out, must_close) != SL_OK || e != SL_OK)
			goto fail;
	}
	rc = CLI_EXIT_OK;
	for (size_t k = 0; k < r.npol; k++)
		if (r.pol[k].invalid > 0) {
			fprintf(stderr, "sluice replay: policy %s made %lld invalid plans; first: %s\n",
			        r.pol[k].pol->name, (long long)r.pol[k].invalid, r.pol[k].first_violation);
			rc = CLI_EXIT_FAIL;
		}
	goto done;
fail:
	cli_fail("replay");
done:
	replay_free(&r);
	free(seqs);
	if (have_cost)
		sl_cost_fini(&cost);
	sl_lengths_free(&lens);
	return rc;
}
