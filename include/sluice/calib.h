/* sluice: calibration of the cost model on a GPU (`sluice profile`).
 *
 * A model shape (sl_model_shape_t) says what one transformer layer computes;
 * measurements (sl_calib_meas_t) are per-layer times taken on one card (the
 * GEMMs of the linear parts through cuBLASLt, our attention kernels per ring
 * hop, the fixed cost of one group execution, host offload bandwidth, ...);
 * sl_calib_fit turns them into the reference cost model's constants
 * (sl_profile_t, docs/cost-model.md) by non-negative least squares
 * on relative error, and sl_calib_to_json writes a profile file that
 * `sluice plan --profile FILE` reads, with the measurements, the fit's
 * coefficients and residuals, and provenance. docs/fidelity.md says how each
 * constant is derived. Fitting and JSON are CPU code (library sl_profiler);
 * measuring needs CUDA (sl_profiler_gpu, only in CUDA builds). */
#ifndef SLUICE_CALIB_H
#define SLUICE_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/err.h"
#include "sluice/plan.h"
#include "sluice/profile.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A dense decoder-only transformer (GPT): per layer a QKV projection
 * hidden -> (heads + 2 kv_heads) * head_dim, an output projection back to
 * hidden, and an MLP hidden -> ffn -> hidden (two GEMMs); an LM head
 * hidden -> vocab when vocab > 0 (tied with the embedding). */
typedef struct sl_model_shape {
	char name[SL_PROFILE_NAME_MAX];
	int32_t hidden, heads, kv_heads, head_dim, ffn, layers;
	int64_t vocab; /* 0: no LM head */
} sl_model_shape_t;

/* Built-in shapes of the reference profiles' models: gpt-7b, gpt-13b,
 * gpt-30b (hidden and layers from the spec's table; heads of head dim 128,
 * ffn 4 x hidden, GPT-2's vocabulary). */
size_t sl_model_preset_count(void);
const sl_model_shape_t *sl_model_preset_at(size_t i);
/* The preset of that name, or NULL. */
const sl_model_shape_t *sl_model_preset(const char *name);
/* Checks ranges (positive, heads divisible by kv_heads, limits); the error
 * names the field and the value. */
sl_err sl_model_shape_check(const sl_model_shape_t *m);
/* Parses {"name"?, "hidden", "heads", "kv_heads"?, "head_dim"?, "ffn"?,
 * "layers", "vocab"?} (kv_heads defaults to heads, head_dim to
 * hidden / heads, ffn to 4 x hidden); `what` names the source in errors. */
sl_err sl_model_shape_parse_json(const char *text, const char *what, sl_model_shape_t *out);
/* A preset name or a JSON file as above. */
sl_err sl_model_shape_resolve(const char *name_or_path, sl_model_shape_t *out);

/* Derived sizes (docs/fidelity.md). Parameters: the layers' weights plus
 * the (tied) embedding. */
double sl_model_params(const sl_model_shape_t *m);
/* Activation bytes one token keeps for the backward pass, whole model, bf16,
 * FlashAttention (no s^2 terms), no recomputation, no dropout; plus the
 * fp32 logits of the LM head. */
double sl_model_act_bytes_per_token(const sl_model_shape_t *m);
/* The ring's volume per token, whole model: K and V (bf16) forward, K, V
 * (bf16) and dK, dV (fp32) backward. */
double sl_model_kv_bytes_per_token(const sl_model_shape_t *m);
/* FLOPs of the linear parts of one layer, forward + backward, per token. */
double sl_model_layer_gemm_flop(const sl_model_shape_t *m);

/* One timed point: `tokens` tokens took `ms` (median). */
typedef struct sl_calib_point {
	int64_t tokens;
	double ms;
} sl_calib_point_t;

/* One attention hop of one layer (forward + backward): the local queries of
 * ring position q_owner against the K/V shard of k_owner, in a zigzag ring
 * of d ranks holding len tokens per rank (one sequence of d * len tokens). */
typedef struct sl_calib_hop {
	int32_t d, q_owner, k_owner, len;
	double fwd_ms, bwd_ms;
} sl_calib_hop_t;

#define SL_CALIB_TEXT 160

typedef struct sl_calib_prov {
	char card[SL_CALIB_TEXT], driver[32], cuda[32], nccl[32], date[32];
	char command[1024];
	char settle[48]; /* the load before each point: "layer 2000 ms", "self 500 ms",
	                  * "none"; "" in files measured before it was recorded */
	int gpus;        /* CUDA devices visible */
} sl_calib_prov_t;

/* Everything measured on a card. Arrays are owned (sl_calib_meas_free). */
typedef struct sl_calib_meas {
	sl_model_shape_t model;
	sl_calib_prov_t prov;
	sl_calib_point_t *gemm; /* one layer's linear parts, fwd+bwd */
	size_t ngemm;
	sl_calib_point_t *head; /* the LM head, fwd+bwd (empty when vocab == 0) */
	size_t nhead;
	sl_calib_hop_t *hop;
	size_t nhop;
	double group_fixed_ms;   /* one group execution of a tiny micro-batch, as the worker runs it */
	double attn_ws_bytes_per_token; /* what the worker allocates per token for one layer's attention */
	double d2h_gbps, h2d_gbps;      /* pinned host copies, MiB per ms (the spec's GB/s) */
	double gpu_total_bytes, gpu_free_bytes;
	int p2p_measured;               /* 0: p2p_* came from an option */
	double p2p_gbps, p2p_latency_ms;
	char p2p_note[SL_CALIB_TEXT];
} sl_calib_meas_t;

void sl_calib_meas_free(sl_calib_meas_t *m);

/* Causal (query, key) pairs of a zigzag hop: q_owner's 2 chunks of `chunk`
 * tokens against k_owner's, chunks i and 2d-1-i at ring position i; for
 * d == 1 the triangle len (len + 1) / 2. */
double sl_calib_hop_pairs(int32_t d, int32_t q_owner, int32_t k_owner, int32_t len);

/* Non-negative least squares of y ~ X c (n rows, k <= 4 columns, row-major
 * X) minimising the sum of ((y - X c) / y)^2: every subset of columns is
 * solved and the best one with c >= 0 wins. SL_EINVAL when n < k, a y is
 * not finite and > 0, or no subset is solvable. */
sl_err sl_calib_nnls_rel(const double *x, const double *y, size_t n, int k, double *c);

/* Relative residuals of one fitted component. */
typedef struct sl_calib_resid {
	size_t n;
	double rms_rel, max_rel; /* of (predicted - measured) / measured */
} sl_calib_resid_t;

typedef struct sl_calib_opts {
	char name[SL_PROFILE_NAME_MAX]; /* profile name; "" = "<card>-<model>" */
	double mem_reserve_bytes;       /* kept free: gpu_mem_bytes = free - reserve */
	double max_offload;             /* copied into the profile */
	double p2p_gbps_inter;          /* across nodes (never measured on one host) */
	int reference_form;             /* 1: leave ring_tok_ms 0 (the spec's model exactly) */
} sl_calib_opts_t;

typedef struct sl_calib_fit {
	/* per layer: gemm_ms(n) = gemm[0] n + gemm[1] */
	double gemm[2];
	double head[2]; /* LM head, the same form; 0 when not measured */
	/* per layer and hop: hop_ms = hop[0] pairs + hop[1] len + hop[2] */
	double hop[3];
	sl_calib_resid_t r_gemm, r_head, r_hop;
	/* the fitted profile's prediction of one sequence of d * len tokens on
	 * d ranks (attention part, per rank, one layer) against d times the
	 * mean measured hop of that (d, len): the terms the model lacks */
	sl_calib_resid_t r_ring;
	/* the ring's per-token extension fitted to those points (ms per token
	 * per layer: the profile's ring_tok_ms / layers, before
	 * reference_form) and the same residuals with it */
	double ring_tok;
	sl_calib_resid_t r_ring_ext;
	sl_profile_t prof;
} sl_calib_fit_t;

/* Fits the constants (docs/fidelity.md "From measurements to constants"):
 * alpha1 = layers hop[0] / 2; alpha2 = layers (gemm[0] + hop[1] +
 * hop[0] / 2) + head[0]; beta = group_fixed + layers (gemm[1] + hop[2]) +
 * head[1]; ring_tok_ms = layers ring_tok (0 with reference_form), the least
 * squares fit on relative error of what rings pay beyond that model; the
 * rest from the shape and the measured bandwidths. Errors name
 * the bad measurement (SL_EINVAL / SL_ERANGE). */
sl_err sl_calib_fit(const sl_calib_meas_t *m, const sl_calib_opts_t *o, sl_calib_fit_t *fit);

/* The profile file: the profile's fields at the top level (what
 * sl_profile_parse_json reads) and a "calibration" object with the model,
 * provenance, fit and measurements. Returns a malloc'd string, or NULL on
 * ENOMEM. */
char *sl_calib_to_json(const sl_calib_meas_t *m, const sl_calib_fit_t *fit);
/* Reads the measurements back from such a file's text (to refit them). */
sl_err sl_calib_meas_parse_json(const char *text, const char *what, sl_calib_meas_t *out);

/* ---- measuring (sl_profiler_gpu: CUDA builds only) ------------------------ */

/* How much longer than settle_ms the first point's load runs with the layer
 * load (settle_self 0): an idle H100 at its 700 W cap takes about 5 s of
 * sustained GEMMs to come down from 1,980 MHz to its steady 1,400-1,650. */
#define SL_CALIB_WARM_FACTOR 10

typedef struct sl_calib_run {
	const int64_t *gemm_tokens; /* token counts of the GEMM points */
	size_t ngemm_tokens;
	const int32_t *hop_lens; /* local lengths of the hop points (even) */
	size_t nhop_lens;
	const int32_t *hop_ds; /* ring sizes of the hop points */
	size_t nhop_ds;
	int reps;                /* timed repetitions per point (median) */
	double settle_ms;        /* untimed back-to-back load before each point, for
	                          * this long (0: none), so it is timed at the clock a
	                          * sustained step runs at (a power-capped card clocks
	                          * down over seconds of it) */
	int settle_self;         /* the load is the point itself (1) or the layer's
	                          * GEMMs at the largest token count (0; the first
	                          * point's SL_CALIB_WARM_FACTOR times as long) */
	int device;
	double p2p_gbps;         /* used, and marked not measured, on one GPU */
	const char *command;     /* recorded in the provenance */
	int verbose;             /* progress lines on stderr */
} sl_calib_run_t;

/* Measures everything on the device. Fails (SL_ECUDA naming the call) when
 * no device is usable; *out is freed on failure. */
sl_err sl_calib_measure(const sl_model_shape_t *model, const sl_calib_run_t *run,
                        sl_calib_meas_t *out);

/* ---- emulating a plan's workers on one GPU (sl_profiler_gpu) -------------- */

/* Parts of one rank's measured time in a group execution (whole model). */
enum {
	SL_EMUL_LINEAR = 0, /* GEMMs and element-wise parts of the layers */
	SL_EMUL_ATTN,       /* our attention over the ring's hops, forward + backward */
	SL_EMUL_OFFLOAD,    /* the plan's offload: pinned D2H after the forward, H2D before
	                       the backward */
	SL_EMUL_HEAD,       /* the LM head, forward + backward */
	SL_EMUL_NPARTS
};

typedef struct sl_emul_opts {
	sl_model_shape_t model;
	double act_bytes_per_token; /* offload volume per token (the plan's profile) */
	int iters;                  /* timed repetitions of each group execution (median) */
	int warmup;                 /* untimed repetitions of the first group execution */
	int device;
	int verbose; /* a line per group execution on stderr */
	char card[SL_CALIB_TEXT]; /* out: the device's name */
} sl_emul_opts_t;

/* Runs every rank's part of every group execution of the plan on one GPU,
 * in slot order, rank after rank: per rank one transformer layer (the
 * model's shape, pseudo-random weights) forward and backward on the group's
 * packed micro-batch, its attention over the ring's hops against each
 * peer's K/V shard as the ring delivers it, the plan's offload as real
 * copies to pinned host memory and back, and the LM head; the layer's time
 * is multiplied by model.layers (every layer is the same). Transfers
 * between ranks are not run. Writes rank_ms[k] (k indexing plan->rank_pool
 * like a group's rank_off) and, when parts is non-NULL,
 * parts[k * SL_EMUL_NPARTS + SL_EMUL_*]. Errors name the slot and group. */
sl_err sl_calib_emulate(const sl_plan_t *plan, sl_emul_opts_t *o, double *rank_ms,
                        double *parts);

#ifdef __cplusplus
}
#endif
#endif
