/* sluice GPU part, host side (runs without a GPU): zigzag position
 * arithmetic, tile tables, segment checks, the LSE merge and bf16 rounding
 * that the kernels share, and the fp64 reference itself (against finite
 * differences), which the GPU tests trust. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kern.h"
#include "kern_math.h"
#include "ref.h"

static uint64_t rng_state = 0x1234567887654321ull;
static double urand(void) /* [0, 1) */
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

static void test_positions_brute(void **st)
{
	(void)st;
	for (int32_t s = 1; s <= 70; s++)
		for (int32_t d = 1; d <= 8; d++) {
			const int32_t p = d == 1 ? s : (s + 2 * d - 1) / (2 * d) * 2 * d;
			const int32_t c = d == 1 ? s : p / (2 * d);
			const int32_t len = d == 1 ? s : p / d;
			int *hit = calloc((size_t)p, sizeof(int));
			assert_non_null(hit);
			for (int32_t o = 0; o < d; o++) {
				int32_t prev = -1;
				for (int32_t j = 0; j < len; j++) {
					const int32_t x = kern_pos(c, d, o, j);
					assert_true(x > prev); /* strictly increasing */
					assert_true(x >= 0 && x < p);
					hit[x]++;
					prev = x;
				}
				for (int32_t x = -2; x <= p + 2; x++) {
					int32_t n = 0;
					for (int32_t j = 0; j < len; j++)
						n += kern_pos(c, d, o, j) <= x;
					assert_int_equal(kern_count_le(c, d, o, len, x), n);
				}
			}
			for (int32_t x = 0; x < p; x++)
				assert_int_equal(hit[x], 1); /* every position exactly once */
			free(hit);
		}
}

static void test_tiles(void **st)
{
	kern_seg_t segs[3] = {{0, 100, 100, 100}, {100, 7, 7, 7}, {107, 300, 300, 300}};
	kern_tile_t *t = NULL, *t2 = NULL;
	int32_t n = 0, n2 = 0;
	(void)st;
	for (int kind = 0; kind < 2; kind++) {
		const char k = kind ? 'k' : 'q';
		int *cover = calloc(407, sizeof(int));
		assert_int_equal(kern_tiles_build(segs, 3, 64, k, &t, &n), SL_OK);
		assert_int_equal(n, 2 + 1 + 5);
		for (int32_t i = 0; i < n; i++) {
			const kern_seg_t *sg = &segs[t[i].seg];
			assert_true(t[i].start % 64 == 0 && t[i].start < sg->len);
			for (int32_t r = t[i].start; r < t[i].start + 64 && r < sg->len; r++)
				cover[sg->off + r]++;
		}
		for (int i = 0; i < 407; i++)
			assert_int_equal(cover[i], 1);
		/* heaviest first: the last full query tile (rows x keys before its
		 * end: 64 x 256 beats the partial 44 x 300) / the first key tile of
		 * the longest sequence */
		assert_int_equal(t[0].seg, 2);
		assert_int_equal(t[0].start, k == 'q' ? 192 : 0);
		assert_int_equal(kern_tiles_build(segs, 3, 64, k, &t2, &n2), SL_OK);
		assert_int_equal(n, n2);
		assert_memory_equal(t, t2, (size_t)n * sizeof(*t)); /* deterministic */
		free(t);
		free(t2);
		free(cover);
	}
	assert_int_equal(kern_tiles_build(segs, 3, 0, 'q', &t, &n), SL_EINVAL);
}

static void test_segs_check(void **st)
{
	/* s = 10 on d = 2: p = 12, c = 3, len = 6 */
	kern_seg_t ok[2] = {{0, 6, 3, 10}, {6, 8, 4, 16}};
	kern_seg_t bad_off[2] = {{0, 6, 3, 10}, {5, 8, 4, 16}};
	kern_seg_t bad_chunk[1] = {{0, 8, 4, 10}}; /* chunk 4 > ceil(10/4) */
	kern_seg_t one[1] = {{0, 10, 10, 10}};
	kern_seg_t one_bad[1] = {{0, 9, 9, 10}};
	(void)st;
	assert_int_equal(kern_segs_check(ok, 2, 2, 14), SL_OK);
	assert_int_equal(kern_segs_check(ok, 2, 2, 15), SL_EINVAL);
	assert_int_equal(kern_segs_check(bad_off, 2, 2, 14), SL_EINVAL);
	assert_int_equal(kern_segs_check(bad_chunk, 1, 2, 8), SL_EINVAL);
	assert_int_equal(kern_segs_check(one, 1, 1, 10), SL_OK);
	assert_int_equal(kern_segs_check(one_bad, 1, 1, 9), SL_EINVAL);
}

static void test_bf16(void **st)
{
	(void)st;
	for (int k = -128; k <= 128; k++) { /* the inputs the worker generates */
		const float x = (float)k / 128.0f;
		assert_true(kern_bf16_to_f32(kern_f32_to_bf16(x)) == x);
	}
	/* ties to even: 1 + 2^-8 lies half way between 1 and 1 + 2^-7 */
	assert_true(kern_bf16_to_f32(kern_f32_to_bf16(1.0f + 0x1p-8f)) == 1.0f);
	assert_true(kern_bf16_to_f32(kern_f32_to_bf16(1.0f + 3 * 0x1p-8f)) == 1.0f + 0x1p-6f);
	assert_true(isnan(kern_bf16_to_f32(kern_f32_to_bf16(NAN))));
	assert_true(kern_bf16_to_f32(kern_f32_to_bf16(-INFINITY)) == -INFINITY);
}

/* A small problem with random inputs over positions 0..n-1 (one shard). */
typedef struct small {
	int H, KH, D;
	int64_t n;
	double *q, *k, *v, *dout, *o, *lse, *dq, *dk, *dv;
	int64_t *pos;
} small_t;

static void small_init(small_t *s, int H, int KH, int D, int64_t n)
{
	const int64_t qn = n * H * D, kn = n * KH * D;
	s->H = H;
	s->KH = KH;
	s->D = D;
	s->n = n;
	s->q = malloc((size_t)qn * 8);
	s->dout = malloc((size_t)qn * 8);
	s->o = malloc((size_t)qn * 8);
	s->dq = malloc((size_t)qn * 8);
	s->k = malloc((size_t)kn * 8);
	s->v = malloc((size_t)kn * 8);
	s->dk = malloc((size_t)kn * 8);
	s->dv = malloc((size_t)kn * 8);
	s->lse = malloc((size_t)(n * H) * 8);
	s->pos = malloc((size_t)n * 8);
	for (int64_t i = 0; i < qn; i++) {
		s->q[i] = 2 * urand() - 1;
		s->dout[i] = 2 * urand() - 1;
	}
	for (int64_t i = 0; i < kn; i++) {
		s->k[i] = 2 * urand() - 1;
		s->v[i] = 2 * urand() - 1;
	}
	for (int64_t i = 0; i < n; i++)
		s->pos[i] = i;
}

static void small_free(small_t *s)
{
	free(s->q);
	free(s->k);
	free(s->v);
	free(s->dout);
	free(s->o);
	free(s->lse);
	free(s->dq);
	free(s->dk);
	free(s->dv);
	free(s->pos);
}

static ref_attn_t small_prob(small_t *s, int causal, int64_t seqlen, int grads)
{
	ref_attn_t p = {.H = s->H, .KH = s->KH, .D = s->D, .causal = causal,
	                .scale = 1.0 / sqrt((double)s->D), .nq = s->n, .nk = s->n,
	                .seqlen = seqlen, .q = s->q, .k = s->k, .v = s->v, .qpos = s->pos,
	                .kpos = s->pos, .dout = grads ? s->dout : NULL, .o = s->o, .lse = s->lse,
	                .dq = s->dq, .dk = s->dk, .dv = s->dv};
	return p;
}

static double loss(small_t *s, int causal, int64_t seqlen)
{
	ref_attn_t p = small_prob(s, causal, seqlen, 0);
	double l = 0;
	assert_int_equal(ref_attn_run(&p, 1, 2), 0);
	for (int64_t i = 0; i < s->n * s->H * s->D; i++)
		l += s->o[i] * s->dout[i];
	return l;
}

/* The reference's gradients against central differences of sum(dO * O). */
static void test_ref_gradients(void **st)
{
	small_t s;
	(void)st;
	small_init(&s, 4, 2, 8, 13);
	for (int causal = 0; causal < 2; causal++) {
		const int64_t seqlen = causal ? 11 : 13; /* two padding rows when causal */
		ref_attn_t p = small_prob(&s, causal, seqlen, 1);
		const int64_t qn = s.n * s.H * s.D, kn = s.n * s.KH * s.D;
		double *g = malloc((size_t)(qn + 2 * kn) * 8);
		assert_int_equal(ref_attn_run(&p, 1, 2), 0);
		memcpy(g, s.dq, (size_t)qn * 8);
		memcpy(g + qn, s.dk, (size_t)kn * 8);
		memcpy(g + qn + kn, s.dv, (size_t)kn * 8);
		for (int which = 0; which < 3; which++) {
			double *x = which == 0 ? s.q : (which == 1 ? s.k : s.v);
			const int64_t n = which == 0 ? qn : kn;
			const double *gx = g + (which == 0 ? 0 : (which == 1 ? qn : qn + kn));
			for (int64_t i = 0; i < n; i += 7) {
				const double h = 1e-5, x0 = x[i];
				x[i] = x0 + h;
				const double lp = loss(&s, causal, seqlen);
				x[i] = x0 - h;
				const double lm = loss(&s, causal, seqlen);
				x[i] = x0;
				assert_true(fabs((lp - lm) / (2 * h) - gx[i]) < 1e-7);
			}
		}
		if (causal) /* padding queries: O = 0, LSE = -inf, dQ = 0 */
			for (int h = 0; h < s.H; h++) {
				assert_true(s.lse[12 * s.H + h] == -INFINITY);
				assert_true(g[(12 * s.H + h) * s.D] == 0.0);
			}
		free(g);
	}
	small_free(&s);
}

/* Splitting the keys into blocks and merging the blocks' (out, lse) with
 * kern_merge_weight in any order gives the full attention (float math, so a
 * float tolerance), including blocks that a row cannot see (-inf). */
static void test_merge(void **st)
{
	small_t s;
	(void)st;
	small_init(&s, 2, 1, 16, 40);
	ref_attn_t full = small_prob(&s, 1, 40, 0);
	double *o_full = malloc((size_t)(40 * 2 * 16) * 8), *l_full = malloc(80 * 8);
	assert_int_equal(ref_attn_run(&full, 1, 2), 0);
	memcpy(o_full, s.o, (size_t)(40 * 2 * 16) * 8);
	memcpy(l_full, s.lse, 80 * 8);
	const int64_t cut[5] = {0, 9, 10, 27, 40};
	const int order[4] = {2, 0, 3, 1};
	float *acc = malloc((size_t)(40 * 2 * 16) * 4), *lacc = malloc(80 * 4);
	for (int i = 0; i < 80; i++)
		lacc[i] = -INFINITY;
	for (int i = 0; i < 40 * 2 * 16; i++)
		acc[i] = 0;
	for (int b = 0; b < 4; b++) {
		const int blk = order[b];
		const int64_t lo = cut[blk], hi = cut[blk + 1];
		ref_attn_t p = small_prob(&s, 1, 40, 0);
		p.nk = hi - lo;
		p.k = s.k + lo * 16;
		p.v = s.v + lo * 16;
		p.kpos = s.pos + lo;
		assert_int_equal(ref_attn_run(&p, 1, 2), 0);
		for (int64_t r = 0; r < 80; r++) {
			float lnew;
			const float w = kern_merge_weight(lacc[r], (float)s.lse[r], &lnew);
			for (int d = 0; d < 16; d++) {
				float *x = &acc[r * 16 + d];
				*x = *x - w * (*x - (float)s.o[r * 16 + d]);
			}
			lacc[r] = lnew;
		}
	}
	for (int64_t r = 0; r < 80; r++) {
		assert_true(fabs(lacc[r] - l_full[r]) < 1e-5);
		for (int d = 0; d < 16; d++)
			assert_true(fabs(acc[r * 16 + d] - o_full[r * 16 + d]) < 1e-5);
	}
	free(acc);
	free(lacc);
	free(o_full);
	free(l_full);
	small_free(&s);
}

/* The ring's K/V buffer schedule, simulated: every rank's hop h reads the
 * shard of ring position (i - h) mod d; a receive never lands in the own
 * shard's buffer nor in one a hop that may still run is reading (hops after
 * kern_ring_kv_reuse); and a second pass finds the own shard intact. */
static void test_ring_schedule(void **st)
{
	(void)st;
	for (int32_t d = 1; d <= 9; d++) {
		int held[9][4]; /* [rank][slot] = owner of the shard in the buffer */
		for (int r = 0; r < d; r++)
			for (int k = 0; k < 4; k++)
				held[r][k] = k == 0 ? r : -1;
		for (int pass = 0; pass < 2; pass++)
			for (int32_t h = 0; h < d; h++) {
				for (int r = 0; r < d; r++) /* hop h computes */
					assert_int_equal(held[r][kern_ring_kv_slot(d, h)],
					                 (r - h + d) % d);
				if (h + 1 == d)
					break;
				const int dst = kern_ring_kv_slot(d, h + 1);
				assert_true(dst >= 1 && dst <= 3);
				/* hops reuse+1 .. h may still run while the receive lands */
				for (int32_t k = kern_ring_kv_reuse(d, h) + 1; k <= h; k++)
					if (k >= 0)
						assert_int_not_equal(kern_ring_kv_slot(d, k), dst);
				int moved[9];
				for (int r = 0; r < d; r++)
					moved[r] = held[r][kern_ring_kv_slot(d, h)];
				for (int r = 0; r < d; r++) /* from prev = r - 1 */
					held[r][dst] = moved[(r - 1 + d) % d];
			}
	}
}

/* The forward dispatch's invariants: tile tables are built from
 * kern_fwd_block_m before a launch decides between the sm_90a kernel and its
 * mma.sync fallback, so every sm_90a variant has the block_m of the mma.sync
 * default; SLUICE_KERN_PATH=mma turns the sm_90a variants off and keeps the
 * default's block_m. (Needs no device: without one nothing is sm_90.) */
static void test_fwd_dispatch(void **st)
{
	(void)st;
	for (int32_t D = 64; D <= 128; D += 64) {
		const int n = kern_fwd_variants(D);
		int nsm90 = 0;
		assert_int_equal(setenv("SLUICE_KERN_PATH", "mma", 1), 0);
		const int32_t bm = kern_fwd_block_m(D, -1);
		assert_int_equal(bm, 128);
		assert_true(strncmp(kern_fwd_name(D, -1), "sm90_", 5) != 0);
		for (int v = 0; v < n; v++) {
			if (strncmp(kern_fwd_name(D, v), "sm90_", 5) != 0) {
				assert_true(kern_fwd_native(D, v));
				continue;
			}
			nsm90++;
			assert_int_equal(kern_fwd_block_m(D, v), bm);
			assert_false(kern_fwd_native(D, v));
		}
		assert_true(nsm90 >= 1);
		assert_int_equal(unsetenv("SLUICE_KERN_PATH"), 0);
		assert_int_equal(kern_fwd_block_m(D, -1), bm);
		if (!kern_device_sm90())
			assert_true(strncmp(kern_fwd_name(D, -1), "sm90_", 5) != 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_positions_brute), cmocka_unit_test(test_tiles),
	    cmocka_unit_test(test_segs_check),      cmocka_unit_test(test_bf16),
	    cmocka_unit_test(test_ref_gradients),   cmocka_unit_test(test_merge),
	    cmocka_unit_test(test_ring_schedule),   cmocka_unit_test(test_fwd_dispatch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
