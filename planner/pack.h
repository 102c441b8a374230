/* sluice planner: packing helpers shared by the policies. Best-fit-decreasing
 * packing of sequences into micro-batches under the memory rule of
 * cost-model.md, longest-processing-time-first dealing of jobs to machines,
 * and the fixed-degree plan builder that the static and batch-adaptive
 * baselines share. */
#ifndef SLUICE_PLANNER_PACK_H
#define SLUICE_PLANNER_PACK_H

#include <stdint.h>

#include "sluice/err.h"
#include "sluice/plan.h"
#include "sluice/profile.h"

/* Micro-batches of one group size d: bin b holds
 * seq[bin_off[b] .. bin_off[b + 1]) (indices into the caller's sequence
 * array) with offload fractions off[] in the same positions. */
typedef struct planner_bins {
	int64_t nbins;
	int64_t *bin_off; /* [nbins + 1] */
	int32_t *seq;     /* [n] */
	double *off;      /* [n] */
} planner_bins_t;

/* Packs sequences idx[0 .. n) (indices into seqs) into micro-batches for
 * groups of d ranks, best-fit-decreasing: items in decreasing order of
 * per-rank size p/d (ties: longer, then lower index), each into the open bin
 * whose remaining capacity is the least that still holds it (ties: the
 * older bin), else a new bin; capacity cost->cap tokens per rank. A sequence
 * that does not fit alone (p/d > cap) gets the least offload and a bin of
 * its own (sl_cost_offload_for with budget cap). Deterministic. On success
 * *out owns arrays the caller releases with planner_bins_fini. Fails with
 * SL_EINFEASIBLE (naming the sequence) when a sequence cannot fit on d ranks
 * even offloading the profile's max_offload. */
sl_err planner_pack_bfd(const sl_cost_t *cost, const sl_seq_t *seqs, const int32_t *idx, int64_t n,
                        int32_t d, planner_bins_t *out);

/* Frees the arrays of *b and zeroes it; safe on a zeroed struct. */
void planner_bins_fini(planner_bins_t *b);

/* Longest-processing-time-first dealing (Graham 1969): jobs in decreasing
 * order of job_ms (ties: lower index), each to the machine with the least
 * total so far (ties: lower index). Fills order[0 .. njobs) with the job
 * indices in dealing order and owner[j] with job j's machine; load[m] (may
 * be NULL) receives each machine's total. Returns SL_ENOMEM or SL_OK. */
sl_err planner_lpt_deal(const double *job_ms, int64_t njobs, int32_t nmach, int64_t *order,
                        int32_t *owner, double *load);

/* Builds the plan of a fixed SP degree d (static baseline, cost-model
 * terms): floor(N / d) data-parallel groups of d consecutive ranks
 * [g d, g d + d), sequences packed by planner_pack_bfd, micro-batches dealt
 * to groups by planner_lpt_deal on their predicted time, group g's k-th
 * micro-batch in slot k. Leftover ranks (N mod d) idle. The plan carries
 * `policy` as its name and is not evaluated. On success *out is a new plan
 * owned by the caller. Errors: SL_EINVAL for d outside [1, N]. */
sl_err planner_fixed_sp_plan(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n, int32_t d,
                             const char *policy, sl_plan_t **out);

/* Smallest power of two d <= N on which s tokens fit without offloading
 * (padded p / d <= cap), or 0 when none does. */
int32_t planner_pow2_holding(const sl_cost_t *cost, int64_t s);

/* The degree a fixed-degree baseline falls back to when no power of two
 * <= N holds s tokens resident: the largest power of two <= N when s fits
 * there offloading at most the profile's max_offload, else N itself (every
 * request sequence fits on N ranks; sl_cost_check_seq). */
int32_t planner_offload_degree(const sl_cost_t *cost, int64_t s);

/* Megatron-LM hybrid CP's gpus_needed (megatron_hcp.c): the least power of
 * two d with s / d <= cap, raised to the next power of two where the zigzag
 * padding makes p / d exceed cap, and capped at N (where offload applies). */
int32_t planner_hcp_cp_size(const sl_cost_t *cost, int64_t s);

/* Largest power of two <= n (n >= 1). */
int32_t planner_pow2_floor(int32_t n);

#endif
