/* sluice GPU tests: fp64 CPU reference attention with position masks. */
#ifndef SLUICE_TEST_GPU_REF_H
#define SLUICE_TEST_GPU_REF_H

#include <stdint.h>

/* One sequence's problem: nq queries and nk keys with global positions. A
 * key is seen iff kpos < seqlen and (!causal or kpos <= qpos); a query with
 * qpos >= seqlen (padding) or no key seen gets O = 0, LSE = -inf, dQ = 0. */
typedef struct ref_attn {
	int H, KH, D;
	int causal;
	double scale;
	int64_t nq, nk, seqlen;
	const double *q;           /* [nq][H][D] */
	const double *k, *v;       /* [nk][KH][D] */
	const int64_t *qpos, *kpos;
	const double *dout;        /* [nq][H][D], or NULL: forward only */
	double *o, *lse;           /* [nq][H][D], [nq][H] */
	double *dq, *dk, *dv;      /* when dout: [nq][H][D], [nk][KH][D] x2 */
	double *delta_;            /* internal */
} ref_attn_t;

/* Computes every problem with `threads` threads (0: online CPUs). Returns 0,
 * or -1 when out of memory. */
int ref_attn_run(ref_attn_t *p, int n, int threads);

/* ||a - b||_2 / ||b||_2 over n values; NaN when any a is not finite where b
 * is (an unwritten or poisoned output), with -inf == -inf counted as equal. */
double ref_rel_err(const double *a, const double *b, int64_t n);

#endif
