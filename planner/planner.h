/* sluice planner: internal header shared by the planner's files. */
#ifndef SLUICE_PLANNER_INTERNAL_H
#define SLUICE_PLANNER_INTERNAL_H

#include "sluice/clock.h"
#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/plan.h"
#include "sluice/policy.h"
#include "sluice/profile.h"
#include "sluice/stats.h"

/* Policies (one file each). Each follows sl_policy_fn's contract. */
sl_err planner_policy_static(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                             const sl_policy_opts_t *opts, sl_plan_t **out);
sl_err planner_policy_batch_adaptive(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                                     const sl_policy_opts_t *opts, sl_plan_t **out);
sl_err planner_policy_megatron_hcp(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                                   const sl_policy_opts_t *opts, sl_plan_t **out);
sl_err planner_policy_flexsp(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                             const sl_policy_opts_t *opts, sl_plan_t **out);
sl_err planner_policy_sluice(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                             const sl_policy_opts_t *opts, sl_plan_t **out);
sl_err planner_policy_aligned(const sl_cost_t *cost, const sl_seq_t *seqs, int64_t n,
                              const sl_policy_opts_t *opts, sl_plan_t **out);

/* Grows *arr (of elem-sized entries, *cap of them) so that need entries fit,
 * doubling; fails with SL_ENOMEM ("plan: out of memory"), *arr unchanged. */
sl_err planner_grow(void **arr, int64_t *cap, int64_t need, size_t elem);

/* The reference timing of a plan without the ideal: per-rank finish times
 * with grad sync (per_rank has plan->ranks entries) and the step time
 * (sl_plan_timeline plus grad sync). Always SL_OK. */
sl_err planner_plan_timing(const sl_plan_t *plan, const sl_cost_t *cost, double *per_rank,
                           double *step);

/* A sequence's length and index, for sorting sequences longest first. */
typedef struct planner_len_key {
	int64_t len;
	int32_t idx;
} planner_len_key_t;

/* qsort comparator of planner_len_key_t: longest first, ties by lower index. */
int planner_len_key_desc(const void *a, const void *b);
/* A key (a time) and the index of what it belongs to (a rank, a node). */
typedef struct planner_key {
	double key;
	int32_t id;
} planner_key_t;

/* A lower bound on the rank-ms of s on any d' >= d ranks (d >= 2), in real
 * arithmetic and nondecreasing in d, on the terms of the ideal's work
 * (cost.c): compute alpha1 s^2 + alpha2 s (padding only adds), the least
 * communication any such d' pays (ulysses: its volume at the fastest
 * bandwidth listed for degrees >= d; ring: d - 1 transfers at the faster of
 * the two links, overlapped with compute), and every token resident or
 * offloaded at the cheaper of a fixed-cost share and PCIe. *busy (NULL: not
 * wanted) gets the compute and communication part alone, a floor on d' T. */
double planner_cost_work_floor(const sl_cost_t *c, int64_t s, int32_t d, double *busy);
/* The ideal's work bound of s, bit-identical to sl_cost_seq_bounds' (the
 * least over degrees of d T + beta (1 - f) p / cap, f in {f_d, 1}), trying
 * degrees only while planner_cost_work_floor allows a better one; *tried
 * (NULL: not wanted) gets how many it costed. */
double planner_cost_seq_work(const sl_cost_t *c, int64_t s, int32_t *tried);

/* qsort comparator of planner_key_t: smallest key first, ties by lower id. */
int planner_key_asc(const void *a, const void *b);
/* qsort comparator of int64_t, ascending. */
int planner_cmp_i64(const void *a, const void *b);


/* A binary heap of (key, id, stamp) entries (heap.c): a min-heap keeps the
 * smallest key on top, ties by the lower id; a max-heap the largest key, ties
 * by the higher id. A zeroed planner_heap_t is an empty min-heap. The stamp is
 * the caller's, for lazy deletion: an entry is live while its stamp equals
 * stamp[id] of the caller's array (planner_heap_top_live). */
typedef struct planner_heap_ent {
	double key;
	int64_t id;
	int32_t stamp;
} planner_heap_ent_t;

typedef struct planner_heap {
	planner_heap_ent_t *e; /* [cap], e[0] the top */
	int64_t n, cap;
	int max; /* 1: max-heap, 0: min-heap */
} planner_heap_t;

/* Makes *h an empty heap (max: a max-heap) that owns no storage. */
void planner_heap_init(planner_heap_t *h, int max);
/* Frees h's storage; h is an empty heap of the same kind afterwards. */
void planner_heap_fini(planner_heap_t *h);
/* Grows h's storage to hold cap entries, so that pushes up to cap cannot
 * fail; SL_ENOMEM (h unchanged) when memory runs out. */
sl_err planner_heap_reserve(planner_heap_t *h, int64_t cap);
/* Adds an entry, growing the storage (doubling); SL_ENOMEM, h unchanged,
 * when memory runs out. */
sl_err planner_heap_push(planner_heap_t *h, double key, int64_t id, int32_t stamp);
/* The top entry, or NULL when h is empty; valid until h next changes. */
const planner_heap_ent_t *planner_heap_top(const planner_heap_t *h);
/* Removes the top entry (nothing when h is empty). */
void planner_heap_pop(planner_heap_t *h);
/* Overwrites the top entry (h must not be empty) and restores the order:
 * a re-keyed top, cheaper than a pop and a push. */
void planner_heap_replace_top(planner_heap_t *h, double key, int64_t id, int32_t stamp);
/* The top live entry, or NULL: pops stale entries (stamp != stamp[id]) off
 * the top first. stamp must have an entry for every id in h. */
const planner_heap_ent_t *planner_heap_top_live(planner_heap_t *h, const int32_t *stamp);
/* Entries in h. */
int64_t planner_heap_size(const planner_heap_t *h);
/* Empties h, keeping its storage. */
void planner_heap_clear(planner_heap_t *h);

/* An indexed min-heap (heap.c) in the order of a min planner_heap_t
 * (smaller key on top, ties by the lower id) where each id has at most one
 * entry, at e[pos[id]] (-1: absent): re-keying an id moves that entry
 * instead of leaving a stale one behind, so the heap never outgrows its ids
 * and its first entries can be read without popping them. pos is the
 * caller's, one slot per id, all -1 at first; heaps that never hold the
 * same id at once may share it. */
typedef struct planner_iheap {
	planner_heap_ent_t *e; /* [cap], e[0] the top; stamps unused */
	int64_t n, cap;
	int32_t *pos;
} planner_iheap_t;

/* Makes *h an empty indexed heap over the caller's pos array. */
void planner_iheap_init(planner_iheap_t *h, int32_t *pos);
/* Frees h's storage (not pos); h is empty afterwards. */
void planner_iheap_fini(planner_iheap_t *h);
/* Gives id the key, adding it when absent; SL_ENOMEM, h unchanged, when
 * the storage cannot grow. */
sl_err planner_iheap_set(planner_iheap_t *h, int64_t id, double key);
/* Takes id out (nothing when it is absent). */
void planner_iheap_remove(planner_iheap_t *h, int64_t id);
/* The top entry, or NULL when h is empty; valid until h next changes. */
const planner_heap_ent_t *planner_iheap_top(const planner_iheap_t *h);
/* Writes the first min(k, size) entries in heap order (out[0] the top) to
 * out, without changing h; returns how many. k <= PLANNER_IHEAP_FIRST_MAX. */
#define PLANNER_IHEAP_FIRST_MAX 64
int32_t planner_iheap_first(const planner_iheap_t *h, int32_t k, planner_heap_ent_t *out);

#endif
