/* sluice profile: measure the cost model's constants on this GPU (or refit
 * earlier measurements) and write a profile file for `--profile FILE`
 * (include/sluice/calib.h; docs/fidelity.md). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sluice/calib.h"

#define PROFILE_MAX_LIST 32

/* Parses "a,b,c" into v (at most PROFILE_MAX_LIST values in [lo, hi]);
 * CLI_EXIT_USAGE after a message naming the flag. */
static int parse_list(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *v,
                      size_t *n)
{
	*n = 0;
	while (*s) {
		char *end;
		errno = 0;
		const long long x = strtoll(s, &end, 10);
		if (end == s || errno || x < lo || x > hi || (*end != ',' && *end != '\0'))
			return cli_usage_error("profile", "--%s: '%s' is not a list of integers in "
			                                  "[%lld, %lld]",
			                       flag, s, (long long)lo, (long long)hi);
		if (*n == PROFILE_MAX_LIST)
			return cli_usage_error("profile", "--%s: more than %d values", flag,
			                       PROFILE_MAX_LIST);
		v[(*n)++] = x;
		s = *end ? end + 1 : end;
	}
	if (*n == 0)
		return cli_usage_error("profile", "--%s: empty list", flag);
	return CLI_EXIT_OK;
}

/* Reads a whole file (at most 16 MiB) into a malloc'd string. */
static sl_err read_text(const char *path, char **out)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0;
	sl_err rc = SL_OK;
	if (f == NULL)
		return sl_seterr(SL_EIO, "%s: cannot open: %s", path, strerror(errno));
	buf = malloc((16u << 20) + 1);
	if (buf == NULL) {
		rc = sl_seterr(SL_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	len = fread(buf, 1, 16u << 20, f);
	if (ferror(f) || !feof(f)) {
		rc = sl_seterr(ferror(f) ? SL_EIO : SL_ERANGE, "%s: %s", path,
		               ferror(f) ? "read error" : "larger than 16 MiB");
		goto out;
	}
	buf[len] = '\0';
	*out = buf;
	buf = NULL;
out:
	free(buf);
	fclose(f);
	return rc;
}

/* The summary on stderr: constants and how well each part fits. */
static void print_summary(const sl_calib_meas_t *m, const sl_calib_fit_t *f)
{
	const sl_profile_t *p = &f->prof;
	fprintf(stderr,
	        "profile %s: %s (%d layers) on %s%s%s\n"
	        "  alpha1 %.6g ms/token^2  alpha2 %.6g ms/token  beta %.6g ms\n"
	        "  act %.4g MiB/token  kv %.4g KiB/token  pcie %.4g  p2p %.4g (%s)\n"
	        "  fit residuals, relative rms / max: gemm %.3f / %.3f (%zu), lm head %.3f / %.3f "
	        "(%zu), hop %.3f / %.3f (%zu); ring vs model %.3f / %.3f (%zu)\n"
	        "  ring extension ring_tok_ms %.6g ms/token%s: ring vs extended model %.3f / %.3f\n",
	        p->name, m->model.name, m->model.layers, m->prov.card[0] ? m->prov.card : "?",
	        m->prov.settle[0] ? ", settled: " : "", m->prov.settle, p->alpha1, p->alpha2,
	        p->beta, p->act_bytes_per_token / 1048576.0,
	        p->kv_bytes_per_token / 1024.0, p->pcie_gbps, p->p2p_gbps_intra,
	        m->p2p_measured ? "measured" : "not measured", f->r_gemm.rms_rel, f->r_gemm.max_rel,
	        f->r_gemm.n, f->r_head.rms_rel, f->r_head.max_rel, f->r_head.n, f->r_hop.rms_rel,
	        f->r_hop.max_rel, f->r_hop.n, f->r_ring.rms_rel, f->r_ring.max_rel, f->r_ring.n,
	        f->ring_tok * m->model.layers,
	        p->ring_tok_ms == 0 && f->ring_tok > 0 ? " (left out: --reference-form)" : "",
	        f->r_ring_ext.rms_rel, f->r_ring_ext.max_rel);
}

static const char *const settle_loads[] = {"layer", "self", NULL};

int cli_cmd_profile(int argc, char **argv)
{
	struct {
		const char *model, *from, *output, *name, *tokens, *lens, *ds;
		int64_t hidden, heads, kv_heads, head_dim, ffn, layers, vocab, reps, device;
		double p2p, p2p_inter, reserve_gib, max_offload, settle_ms;
		int quiet, reference_form, settle_load;
	} a = {"gpt-7b", NULL, "-", NULL, "64,256,1024,2048,4096,8192,16384", "1024,2048,4096,8192,16384",
	       "1,2,4,8", -1, -1, -1, -1, -1, -1, -1, 5, 0, 100.0, 25.0, 4.0, 0.875, 2000.0, 0, 0, 0};
	const cli_opt_t opts[] = {
		{"model", 'm', CLI_OPT_STR, &a.model, "NAME|FILE",
		 "model shape: gpt-7b, gpt-13b, gpt-30b or a JSON file {hidden, heads, ...}", "gpt-7b",
		 1, 0, NULL},
		{"hidden", 0, CLI_OPT_INT, &a.hidden, "N", "override the shape's hidden size", NULL, 1,
		 1048576, NULL},
		{"heads", 0, CLI_OPT_INT, &a.heads, "N", "override the query heads", NULL, 1, 1024, NULL},
		{"kv-heads", 0, CLI_OPT_INT, &a.kv_heads, "N", "override the K/V heads", NULL, 1, 1024,
		 NULL},
		{"head-dim", 0, CLI_OPT_INT, &a.head_dim, "N", "override the head dimension", NULL, 1,
		 1024, NULL},
		{"ffn", 0, CLI_OPT_INT, &a.ffn, "N", "override the MLP size", NULL, 1, 1048576, NULL},
		{"layers", 0, CLI_OPT_INT, &a.layers, "N", "override the layers", NULL, 1, 100000, NULL},
		{"vocab", 0, CLI_OPT_INT, &a.vocab, "N", "override the vocabulary (0: no LM head)", NULL,
		 0, 100000000, NULL},
		{"tokens", 0, CLI_OPT_STR, &a.tokens, "LIST",
		 "token counts of the GEMM points (small ones fit the fixed cost of small groups)",
		 "64,256,1024,2048,4096,8192,16384", 1, 0, NULL},
		{"hop-lens", 0, CLI_OPT_STR, &a.lens, "LIST",
		 "tokens per rank of the attention hop points (even)", "1024,2048,4096,8192,16384", 1,
		 0, NULL},
		{"ring-sizes", 0, CLI_OPT_STR, &a.ds, "LIST", "ring sizes d of the hop points", "1,2,4,8",
		 1, 0, NULL},
		{"reps", 0, CLI_OPT_INT, &a.reps, "N", "timed repetitions per point (median)", "5", 1,
		 64, NULL},
		{"settle-ms", 0, CLI_OPT_DOUBLE, &a.settle_ms, "MS",
		 "load the card untimed this long before each point (the first 10x), so it is timed "
		 "at the clock a sustained step gets (a power-capped card clocks down under load); "
		 "0: no settling",
		 "2000", 0, 60000, NULL},
		{"settle-load", 0, CLI_OPT_CHOICE, &a.settle_load, "LOAD",
		 "what settles: layer (one layer's GEMMs at the largest token count) or self (the "
		 "point itself, not 10x first)",
		 "layer", 1, 0, settle_loads},
		{"device", 0, CLI_OPT_INT, &a.device, "N", "CUDA device", "0", 0, 1024, NULL},
		{"p2p-gbps", 0, CLI_OPT_DOUBLE, &a.p2p, "GBPS",
		 "ring bandwidth inside a node when it cannot be measured (one GPU)", "100", 1e-6, 1e9,
		 NULL},
		{"p2p-gbps-inter", 0, CLI_OPT_DOUBLE, &a.p2p_inter, "GBPS",
		 "ring bandwidth across nodes (not measured)", "25", 1e-6, 1e9, NULL},
		{"mem-reserve", 0, CLI_OPT_DOUBLE, &a.reserve_gib, "GIB",
		 "device memory kept free: gpu_mem_bytes = free - reserve", "4", 0, 1e6, NULL},
		{"max-offload", 0, CLI_OPT_DOUBLE, &a.max_offload, "F",
		 "largest offload fraction plans may use", "0.875", 0, 0.999999, NULL},
		{"name", 0, CLI_OPT_STR, &a.name, "NAME", "profile name", "calibrated-MODEL", 1, 0,
		 NULL},
		{"from", 0, CLI_OPT_STR, &a.from, "FILE",
		 "refit the measurements of a profile this command wrote (no GPU needed)", NULL, 1, 0,
		 NULL},
		{"output", 'o', CLI_OPT_STR, &a.output, "FILE", "where the profile goes", "-", 1, 0,
		 NULL},
		{"quiet", 'q', CLI_OPT_FLAG, &a.quiet, NULL, "no progress or summary on stderr", NULL, 1,
		 0, NULL},
		{"reference-form", 0, CLI_OPT_FLAG, &a.reference_form, NULL,
		 "leave out the ring extension ring_tok_ms (the spec's model exactly)", NULL, 1, 0,
		 NULL},
		{0},
	};
	const cli_spec_t spec = {
		.name = "profile",
		.usage = "[options]",
		.description =
			"Measures the cost model's constants on this GPU for a model shape and writes a\n"
			"profile file (`sluice plan --profile FILE`, sluiced): one layer's GEMMs (QKV,\n"
			"output projection, MLP) and the LM head through cuBLASLt at several token\n"
			"counts, our attention kernels per ring hop (zigzag shards, own and remote), one\n"
			"group execution as the worker runs it, pinned host copies and, with 2+ GPUs,\n"
			"NCCL send/recv; then fits alpha1, alpha2, beta by least squares on relative\n"
			"error, and ring_tok_ms, what rings pay beyond that model (an extension of the\n"
			"spec; --reference-form leaves it out). The file keeps the measurements, fit residuals and provenance (card,\n"
			"driver, CUDA, NCCL, date, command). With --from it refits an earlier file's\n"
			"measurements on the CPU."
#ifndef SLUICE_HAVE_PROFILER_GPU
			"\nThis build has no GPU support (built without CUDA): only --from works."
#endif
			,
		.opts = opts,
		.min_args = 0,
		.max_args = 0,
		.epilog = "examples:\n"
		          "  sluice profile --model gpt-7b -o profiles/h100-gpt-7b.json\n"
		          "  sluice profile --from profiles/h100-gpt-7b.json --mem-reserve 8 -o p.json",
	};
	char **args;
	int nargs;
	int rc = cli_parse(&spec, argc, argv, &args, &nargs);
	if (rc != CLI_EXIT_OK)
		return rc < 0 ? CLI_EXIT_OK : rc;

	sl_calib_meas_t m;
	sl_calib_fit_t fit;
	sl_calib_opts_t o = {.mem_reserve_bytes = a.reserve_gib * 1073741824.0,
	                     .max_offload = a.max_offload,
	                     .p2p_gbps_inter = a.p2p_inter,
	                     .reference_form = a.reference_form};
	char *text = NULL;
	memset(&m, 0, sizeof(m));
	if (a.name != NULL && strlen(a.name) >= sizeof(o.name))
		return cli_usage_error("profile", "--name: longer than %zu characters",
		                       sizeof(o.name) - 1);
	if (a.name != NULL)
		snprintf(o.name, sizeof(o.name), "%s", a.name);

	if (a.from != NULL) {
		if (read_text(a.from, &text) != SL_OK) {
			fprintf(stderr, "sluice profile: %s\n", sl_errmsg());
			return CLI_EXIT_USAGE;
		}
		sl_err e = sl_calib_meas_parse_json(text, a.from, &m);
		free(text);
		text = NULL;
		if (e != SL_OK) {
			fprintf(stderr, "sluice profile: %s\n", sl_errmsg());
			return CLI_EXIT_USAGE;
		}
	} else {
		sl_model_shape_t shape;
		if (sl_model_shape_resolve(a.model, &shape) != SL_OK) {
			fprintf(stderr, "sluice profile: --model: %s\n", sl_errmsg());
			return CLI_EXIT_USAGE;
		}
		const struct {
			int64_t v;
			int32_t *dst;
		} ov[] = {{a.hidden, &shape.hidden}, {a.heads, &shape.heads},
		          {a.kv_heads, &shape.kv_heads}, {a.head_dim, &shape.head_dim},
		          {a.ffn, &shape.ffn}, {a.layers, &shape.layers}};
		for (size_t i = 0; i < sizeof(ov) / sizeof(ov[0]); i++)
			if (ov[i].v >= 0)
				*ov[i].dst = (int32_t)ov[i].v;
		if (a.vocab >= 0)
			shape.vocab = a.vocab;
		if (sl_model_shape_check(&shape) != SL_OK) {
			fprintf(stderr, "sluice profile: %s\n", sl_errmsg());
			return CLI_EXIT_USAGE;
		}
		int64_t tok[PROFILE_MAX_LIST], lens[PROFILE_MAX_LIST], ds[PROFILE_MAX_LIST];
		size_t ntok, nlens, nds;
		if ((rc = parse_list("tokens", a.tokens, 1, 1 << 20, tok, &ntok)) != CLI_EXIT_OK ||
		    (rc = parse_list("hop-lens", a.lens, 2, 1 << 20, lens, &nlens)) != CLI_EXIT_OK ||
		    (rc = parse_list("ring-sizes", a.ds, 1, 1024, ds, &nds)) != CLI_EXIT_OK)
			return rc;
		for (size_t i = 0; i < nlens; i++)
			if (lens[i] % 2)
				return cli_usage_error("profile", "--hop-lens: %lld is odd (a zigzag shard "
				                                  "holds 2 equal chunks)",
				                       (long long)lens[i]);
		if (ntok < 2)
			return cli_usage_error("profile", "--tokens: need 2 or more token counts");
#ifdef SLUICE_HAVE_PROFILER_GPU
		int32_t lens32[PROFILE_MAX_LIST], ds32[PROFILE_MAX_LIST];
		char cmd[1024] = "sluice";
		for (size_t i = 0; i < nlens; i++)
			lens32[i] = (int32_t)lens[i];
		for (size_t i = 0; i < nds; i++)
			ds32[i] = (int32_t)ds[i];
		for (int i = 0; i < argc; i++) {
			strncat(cmd, " ", sizeof(cmd) - strlen(cmd) - 1);
			strncat(cmd, argv[i], sizeof(cmd) - strlen(cmd) - 1);
		}
		const sl_calib_run_t run = {.gemm_tokens = tok, .ngemm_tokens = ntok,
		                            .hop_lens = lens32, .nhop_lens = nlens, .hop_ds = ds32,
		                            .nhop_ds = nds, .reps = (int)a.reps,
		                            .settle_ms = a.settle_ms,
		                            .settle_self = a.settle_load == 1,
		                            .device = (int)a.device, .p2p_gbps = a.p2p,
		                            .command = cmd, .verbose = !a.quiet};
		if (sl_calib_measure(&shape, &run, &m) != SL_OK)
			return cli_fail("profile");
#else
		sl_seterr(SL_EINVAL,
		          "GPU support was not built (this sluice has no CUDA): it cannot measure; "
		          "--from FILE refits earlier measurements");
		return cli_fail("profile");
#endif
	}

	if (sl_calib_fit(&m, &o, &fit) != SL_OK) {
		sl_calib_meas_free(&m);
		return cli_fail("profile");
	}
	text = sl_calib_to_json(&m, &fit);
	if (text == NULL) {
		sl_calib_meas_free(&m);
		sl_seterr(SL_ENOMEM, "cannot render the profile as JSON");
		return cli_fail("profile");
	}
	FILE *f;
	int must_close;
	sl_err e = cli_open_out(a.output, &f, &must_close);
	if (e == SL_OK) {
		fputs(text, f);
		fputc('\n', f);
		e = cli_close_out(a.output, f, must_close);
	}
	if (e == SL_OK && !a.quiet)
		print_summary(&m, &fit);
	free(text);
	sl_calib_meas_free(&m);
	return e == SL_OK ? CLI_EXIT_OK : cli_fail("profile");
}
