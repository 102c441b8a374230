/* sluice: hardware/model profiles, the cluster shape and the reference cost
 * model (sluice.cost/1, docs/cost-model.md). */
#ifndef SLUICE_PROFILE_H
#define SLUICE_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sl_sp_comm { SL_SP_ULYSSES = 0, SL_SP_RING = 1 } sl_sp_comm;

#define SL_PROFILE_NAME_MAX 64
#define SL_PROFILE_MAX_BW 32

/* A profile exactly as the spec's table lists it. When params > 0 the model
 * state per rank is ZeRO-3's params * 16 / ranks and model_state_bytes is
 * ignored (the FlexSP presets); otherwise model_state_bytes is used. */
typedef struct sl_profile {
	char name[SL_PROFILE_NAME_MAX];
	double alpha1;              /* ms / token^2 */
	double alpha2;              /* ms / token */
	double beta;                /* ms per group execution */
	double act_bytes_per_token; /* bytes */
	double model_state_bytes;   /* bytes per rank (when params == 0) */
	double params;              /* parameter count for ZeRO-3 model state, or 0 */
	double gpu_mem_bytes;       /* usable bytes per rank */
	sl_sp_comm sp_comm;
	double a2a_bytes_per_token; /* ulysses */
	int n_bw;                   /* entries in bw_degree/bw_gbps, sorted by degree */
	int bw_degree[SL_PROFILE_MAX_BW];
	double bw_gbps[SL_PROFILE_MAX_BW]; /* may be INFINITY */
	double kv_bytes_per_token;         /* ring */
	double p2p_gbps_intra, p2p_gbps_inter;
	double pcie_gbps;
	double grad_sync_ms;
	/* Extension (not in the reference model): the largest offload fraction a
	 * plan may use, bounded by host memory. Only feasibility checks and our
	 * planners read it; the ideal and scoring follow the spec (any f < 1).
	 * Default 0.875: host holds up to 7x a rank's activation budget. */
	double max_offload;
	/* Extension (not in the reference model; 0 = the reference exactly): a
	 * ring's per-token cost beyond (alpha1 p^2 + alpha2 p) / d, measured by
	 * `sluice profile`: each of a ring's d hops pays its kernels' per-token
	 * term on p/d tokens and small shards run below the full-length rate,
	 * so a sequence of padded length p on a ring of d > 1 ranks takes
	 * ring_tok_ms * p * (1 - 1/d) more compute per rank
	 * (docs/cost-model.md, "Extensions"). Ring profiles only. */
	double ring_tok_ms;
} sl_profile_t;

typedef struct sl_cluster {
	int32_t ranks;          /* N */
	int32_t ranks_per_node; /* G */
} sl_cluster_t;

/* Largest cluster and sequence we accept; beyond these a request is absurd. */
#define SL_MAX_RANKS 65536
#define SL_MAX_SEQ_LEN ((int64_t)1 << 40)

/* Limits on what a profile may imply (sl_profile_check), so that every
 * derived quantity stays finite and in range: the activation capacity of one
 * rank (cap * SL_MAX_RANKS still fits in int64), the most any one term of a
 * sequence's time may reach for SL_MAX_SEQ_LEN tokens on any group size (sums
 * over a batch stay far from inf), and the least time one token on one rank
 * may take (step / ideal stays finite). */
#define SL_PROFILE_MAX_CAP ((int64_t)1 << 46)
#define SL_PROFILE_MAX_MS 1e60
#define SL_PROFILE_MIN_MS 1e-30

/* Built-in presets (gpt-7b-flexsp, gpt-13b-flexsp, gpt-30b-flexsp). */
size_t sl_profile_preset_count(void);
const sl_profile_t *sl_profile_preset_at(size_t i);
/* Returns the preset of that name, or NULL. */
const sl_profile_t *sl_profile_preset(const char *name);

/* Fills *out from a preset name or, failing that, a JSON profile file with
 * the spec's field names (plus optional "name" and "params"). */
sl_err sl_profile_resolve(const char *name_or_path, sl_profile_t *out);
sl_err sl_profile_load_json_file(const char *path, sl_profile_t *out);
/* Parses a JSON object text; `what` names the source in error messages. */
sl_err sl_profile_parse_json(const char *text, const char *what, sl_profile_t *out);
/* Writes the profile as a JSON object (no trailing newline); returns a
 * malloc'd string the caller frees, or NULL on ENOMEM. */
char *sl_profile_to_json(const sl_profile_t *p);

/* Checks a profile's values (positive, finite, ...) and what they imply for
 * any cluster: capacity <= SL_PROFILE_MAX_CAP tokens, every term of a
 * sequence's time <= SL_PROFILE_MAX_MS for SL_MAX_SEQ_LEN tokens on any group
 * size, alpha1 + alpha2 + beta >= SL_PROFILE_MIN_MS. The SL_ERANGE message
 * names the field, its value and the limit. Also checks a cluster's shape. */
sl_err sl_profile_check(const sl_profile_t *p);
sl_err sl_cluster_check(const sl_cluster_t *c);

/* The reference cost model bound to one profile and cluster, with derived
 * constants precomputed. Initialise with sl_cost_init, release with
 * sl_cost_fini. Read-only after init, so it may be shared across threads. */
typedef struct sl_cost {
	sl_profile_t prof;
	sl_cluster_t cl;
	double model_state_bytes; /* per rank, resolved */
	int64_t cap;              /* tokens one rank holds */
	double *a2a_gbps;         /* [ranks + 1]: ulysses bandwidth for degree d */
	int comm_monotone;        /* bandwidth never grows with the degree (see sl_cost_seq_bounds) */
} sl_cost_t;

sl_err sl_cost_init(sl_cost_t *c, const sl_profile_t *p, const sl_cluster_t *cl);
void sl_cost_fini(sl_cost_t *c);

/* Zigzag padded length of s tokens on d ranks: s when d == 1, else
 * ceil(s / 2d) * 2d. */
int64_t sl_cost_padded(int64_t s, int32_t d);

/* Time in ms of one sequence of s tokens on d ranks with offload fraction f;
 * one_node says whether all ranks of the group share a node (ring bandwidth). */
double sl_cost_seq_ms(const sl_cost_t *c, int64_t s, int32_t d, double f, int one_node);

/* The communication in sl_cost_seq_ms(c, s, d, f, one_node) that the model
 * does not hide behind compute: Ulysses' all-to-all, or the part of a ring's
 * K/V transfer longer than the ring's compute; 0 when d == 1. */
double sl_cost_seq_comm_ms(const sl_cost_t *c, int64_t s, int32_t d, int one_node);

/* Resident tokens per rank of s on d ranks with offload f: (1 - f) * p / d. */
double sl_cost_resident(int64_t s, int32_t d, double f);

/* Least offload fraction that lets s fit on d ranks alone:
 * max(0, 1 - cap * d / p). */
double sl_cost_min_offload(const sl_cost_t *c, int64_t s, int32_t d);

/* Least offload fraction, rounded up to a multiple of 1e-6 so that it
 * prints exactly, that keeps (1 - f) * p / d <= budget tokens; 0 when it
 * fits without offloading; >= 1 when even max_offload cannot make it fit. */
double sl_cost_offload_for(const sl_cost_t *c, int64_t s, int32_t d, double budget);

/* Whether the ranks all live on one node (floor(r / G) equal). */
int sl_cost_one_node(const sl_cost_t *c, const int32_t *ranks, int32_t n);

/* Per-sequence lower bounds of the ideal (docs/cost-model.md): crit = min_d
 * T_d and work = min over d and f in {f_d, 1} of (d T(s, d, f) + beta (1 -
 * f) p_d / cap), over 1 <= d <= ranks. */
void sl_cost_seq_bounds(const sl_cost_t *c, int64_t s, double *crit, double *work);

/* The ideal step time for a batch (docs/cost-model.md). Returns SL_ERANGE
 * naming the position of a length below 1, SL_ENOMEM when out of memory. */
sl_err sl_cost_ideal(const sl_cost_t *c, const int64_t *len, size_t n, double *ideal_ms);

/* Checks that a sequence can be placed at all (on <= ranks ranks with an
 * offload < 1). On failure the message says which id and by how much. */
sl_err sl_cost_check_seq(const sl_cost_t *c, int64_t id, int64_t s);

#ifdef __cplusplus
}
#endif
#endif
