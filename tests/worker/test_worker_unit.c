/* worker_unit: the worker's pieces in one process — work orders (zigzag
 * shards), deterministic inputs, the reference attention (against finite
 * differences), the log-sum-exp merge and the checker (it must catch wrong
 * outputs). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "worker.h"

static const worker_shape_t shape = {.heads = 4, .kv_heads = 2, .head_dim = 16};

/* A plan of nranks ranks (gpt-7b-flexsp, so any small length fits). */
static sl_plan_t *new_plan(int32_t nranks, const int64_t *len, int64_t n)
{
	sl_seq_t *seqs = calloc((size_t)n, sizeof *seqs);
	assert_non_null(seqs);
	for (int64_t i = 0; i < n; i++) {
		seqs[i].id = 100 + i;
		seqs[i].length = len[i];
	}
	sl_plan_t *p = sl_plan_new("hand", "gpt-7b-flexsp", nranks, nranks, 1000000, seqs, n);
	free(seqs);
	assert_non_null(p);
	return p;
}

/* Every position of [0, p) is held by exactly one ring position, each shard
 * has p/d tokens, and sequences are packed back to back in group order. */
static void test_zigzag_cover(void **state)
{
	(void)state;
	for (int32_t d = 1; d <= 5; d++) {
		int64_t lens[] = {1, 2, 3, 7, 2 * d, 2 * d + 1, 37, 100};
		sl_plan_t *plan = new_plan(d, lens, 8);
		int32_t ring[5];
		for (int32_t i = 0; i < d; i++)
			ring[i] = i;
		assert_int_equal(sl_plan_add_slot(plan), SL_OK);
		assert_int_equal(sl_plan_add_group(plan, ring, d), SL_OK);
		for (int32_t k = 0; k < 8; k++)
			assert_int_equal(sl_plan_add_item(plan, k, 0.0), SL_OK);
		for (int32_t k = 0; k < 8; k++) {
			int64_t s = lens[k], p = sl_cost_padded(s, d);
			int32_t *hits = calloc((size_t)p, sizeof *hits);
			assert_non_null(hits);
			for (int32_t r = 0; r < d; r++) {
				worker_order_t *o = NULL;
				assert_int_equal(worker_order_build(plan, r, &shape, &o), SL_OK);
				assert_int_equal(o->nwork, 1);
				const worker_group_work_t *w = &o->work[0];
				assert_int_equal(w->ring_pos, r);
				assert_int_equal(w->prev_rank, (r - 1 + d) % d);
				assert_int_equal(w->next_rank, (r + 1) % d);
				const worker_seq_shard_t *sh = &w->seqs[k];
				assert_int_equal(sh->len, s);
				assert_int_equal(sh->local_len * d, p);
				int64_t off = 0;
				for (int32_t j = 0; j < k; j++)
					off += w->seqs[j].local_len;
				assert_int_equal(sh->local_off, off);
				for (int64_t j = 0; j < sh->local_len; j++) {
					int64_t pos = worker_shard_pos(sh, d, r, j);
					assert_true(pos >= 0 && pos < p);
					hits[pos]++;
				}
				worker_order_free(&o);
				assert_null(o);
			}
			for (int64_t t = 0; t < p; t++)
				assert_int_equal(hits[t], 1);
			free(hits);
		}
		sl_plan_free(&plan);
	}
}

/* The zigzag layout of the spec: rank i holds chunks i and 2d-1-i. */
static void test_zigzag_chunks(void **state)
{
	(void)state;
	int64_t len[] = {13};
	sl_plan_t *plan = new_plan(3, len, 1);
	int32_t ring[] = {2, 0, 1};
	assert_int_equal(sl_plan_add_slot(plan), SL_OK);
	assert_int_equal(sl_plan_add_group(plan, ring, 3), SL_OK);
	assert_int_equal(sl_plan_add_item(plan, 0, 0.0), SL_OK);
	/* s = 13, d = 3: p = 18, chunks of 3; ring position 1 is rank 0 and holds
	 * chunks 1 and 4: positions 3,4,5,12,13,14 (13 and 14 are padding). */
	worker_order_t *o = NULL;
	assert_int_equal(worker_order_build(plan, 0, &shape, &o), SL_OK);
	const worker_group_work_t *w = &o->work[0];
	assert_int_equal(w->ring_pos, 1);
	assert_int_equal(w->prev_rank, 2);
	assert_int_equal(w->next_rank, 1);
	assert_int_equal(w->seqs[0].padded, 18);
	assert_int_equal(w->seqs[0].chunk, 3);
	int64_t want[] = {3, 4, 5, 12, 13, 14};
	for (int j = 0; j < 6; j++)
		assert_int_equal(worker_shard_pos(&w->seqs[0], 3, 1, j), want[j]);
	worker_order_free(&o);
	sl_plan_free(&plan);
}

static void test_order_errors(void **state)
{
	(void)state;
	int64_t len[] = {10, 20};
	sl_plan_t *plan = new_plan(4, len, 2);
	int32_t g0[] = {0, 1}, g1[] = {1, 2};
	assert_int_equal(sl_plan_add_slot(plan), SL_OK);
	assert_int_equal(sl_plan_add_group(plan, g0, 2), SL_OK);
	assert_int_equal(sl_plan_add_item(plan, 0, 0.0), SL_OK);
	worker_order_t *o = NULL;
	/* rank out of range */
	assert_int_equal(worker_order_build(plan, 4, &shape, &o), SL_ERANGE);
	assert_non_null(strstr(sl_errmsg(), "rank 4 out of range"));
	assert_null(o);
	/* a rank with no group has nothing to do */
	assert_int_equal(worker_order_build(plan, 3, &shape, &o), SL_OK);
	assert_int_equal(o->nwork, 0);
	worker_order_free(&o);
	/* bad shape */
	worker_shape_t bad = {.heads = 6, .kv_heads = 4, .head_dim = 8};
	assert_int_equal(worker_order_build(plan, 0, &bad, &o), SL_EINVAL);
	assert_non_null(strstr(sl_errmsg(), "multiple of kv-heads"));
	/* two groups of one slot sharing rank 1 */
	assert_int_equal(sl_plan_add_group(plan, g1, 2), SL_OK);
	assert_int_equal(sl_plan_add_item(plan, 1, 0.0), SL_OK);
	assert_int_equal(worker_order_build(plan, 0, &shape, &o), SL_EFORMAT);
	assert_non_null(strstr(sl_errmsg(), "rank 1"));
	assert_int_equal(worker_plan_check(plan, "p.json", NULL, NULL, NULL), SL_EFORMAT);
	assert_non_null(strstr(sl_errmsg(), "p.json: "));
	sl_plan_free(&plan);
}

/* A plan's "profile" naming a file is never opened (it may come over the
 * wire): the check falls back to the structure; --profile FILE still works. */
static void test_plan_profile_not_opened(void **state)
{
	(void)state;
	int64_t len[] = {10, 20};
	sl_plan_t *plan = new_plan(4, len, 2);
	int32_t g0[] = {0, 1};
	assert_int_equal(sl_plan_add_slot(plan), SL_OK);
	assert_int_equal(sl_plan_add_group(plan, g0, 2), SL_OK);
	assert_int_equal(sl_plan_add_item(plan, 0, 0.0), SL_OK);
	assert_int_equal(sl_plan_add_item(plan, 1, 0.0), SL_OK);
	/* a profile file under which this plan is refused (no room at all) */
	sl_profile_t p = *sl_profile_preset("gpt-7b-flexsp");
	p.gpu_mem_bytes = 1e6;
	char *text = sl_profile_to_json(&p);
	assert_non_null(text);
	char path[] = "/tmp/sluice-worker-profile-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	free(text);
	snprintf(plan->profile, sizeof(plan->profile), "%s", path);
	assert_int_equal(worker_plan_check(plan, "p.json", NULL, NULL, NULL), SL_OK);
	worker_plan_rules_t rules = {.profile = path};
	assert_int_not_equal(worker_plan_check(plan, "p.json", &rules, NULL, NULL), SL_OK);
	unlink(path);
	sl_plan_free(&plan);
}

static void test_inputs(void **state)
{
	(void)state;
	/* deterministic, in [-1, 1), multiples of 1/128, and not constant */
	double lo = 1, hi = -1;
	for (int i = 0; i < 1000; i++) {
		double x = worker_input_value(7, 3, WORKER_T_K, i, i % 4, i % 16);
		assert_true(x == worker_input_value(7, 3, WORKER_T_K, i, i % 4, i % 16));
		assert_true(x >= -1 && x < 1);
		assert_true(x * 128 == floor(x * 128));
		lo = fmin(lo, x);
		hi = fmax(hi, x);
	}
	assert_true(lo < -0.9 && hi > 0.9);
	assert_true(worker_input_value(7, 3, WORKER_T_K, 5, 0, 0) !=
	                    worker_input_value(8, 3, WORKER_T_K, 5, 0, 0) ||
	            worker_input_value(7, 3, WORKER_T_K, 6, 0, 0) !=
	                    worker_input_value(8, 3, WORKER_T_K, 6, 0, 0));
}

/* L = sum(O * dO); the reference's dQ, dK, dV must be L's gradient. */
static double ref_loss(int64_t s, const worker_shape_t *sh, const double *q, const double *k,
                       const double *v, const double *g)
{
	size_t nq = (size_t)s * (size_t)sh->heads * (size_t)sh->head_dim;
	double *o = malloc(nq * sizeof *o), *l = malloc((size_t)s * (size_t)sh->heads * sizeof *l);
	assert_int_equal(worker_ref_attention(s, sh, q, k, v, NULL, o, l, NULL, NULL, NULL), SL_OK);
	double loss = 0;
	for (size_t i = 0; i < nq; i++)
		loss += o[i] * g[i];
	free(o);
	free(l);
	return loss;
}

static void test_reference_gradients(void **state)
{
	(void)state;
	const worker_shape_t sh = {.heads = 4, .kv_heads = 2, .head_dim = 3};
	const int64_t s = 6;
	size_t nq = (size_t)s * 4 * 3, nk = (size_t)s * 2 * 3;
	double q[72], k[36], v[36], g[72], o[72], l[24], dq[72], dk[36], dv[36];
	for (size_t i = 0; i < nq; i++) {
		q[i] = worker_input_value(1, 0, WORKER_T_Q, (int64_t)i, 0, 0) * 2;
		g[i] = worker_input_value(1, 0, WORKER_T_DO, (int64_t)i, 0, 0);
	}
	for (size_t i = 0; i < nk; i++) {
		k[i] = worker_input_value(1, 0, WORKER_T_K, (int64_t)i, 0, 0) * 2;
		v[i] = worker_input_value(1, 0, WORKER_T_V, (int64_t)i, 0, 0);
	}
	assert_int_equal(worker_ref_attention(s, &sh, q, k, v, g, o, l, dq, dk, dv), SL_OK);
	const double h = 1e-6;
	double *x[3] = {q, k, v}, *dx[3] = {dq, dk, dv};
	size_t n[3] = {nq, nk, nk};
	for (int t = 0; t < 3; t++)
		for (size_t i = 0; i < n[t]; i++) {
			double keep = x[t][i];
			x[t][i] = keep + h;
			double up = ref_loss(s, &sh, q, k, v, g);
			x[t][i] = keep - h;
			double dn = ref_loss(s, &sh, q, k, v, g);
			x[t][i] = keep;
			double fd = (up - dn) / (2 * h);
			assert_true(fabs(fd - dx[t][i]) < 1e-7);
		}
	/* causality: the first query sees only itself, so O[0] = V[0] of its KV head */
	for (int32_t hq = 0; hq < 4; hq++)
		for (int e = 0; e < 3; e++)
			assert_true(fabs(o[hq * 3 + e] - v[(hq / 2) * 3 + e]) < 1e-15);
}

/* Merging block partials in any split equals one softmax over all keys. */
static void test_lse_merge(void **state)
{
	(void)state;
	const int n = 9, D = 4;
	double sc[9], val[9][4];
	for (int j = 0; j < n; j++) {
		sc[j] = 30 * worker_input_value(3, 0, 0, j, 0, 0); /* wide range: stability */
		for (int e = 0; e < D; e++)
			val[j][e] = worker_input_value(3, 0, 1, j, 0, e);
	}
	double m = -INFINITY, sum = 0, want[4] = {0};
	for (int j = 0; j < n; j++)
		m = fmax(m, sc[j]);
	for (int j = 0; j < n; j++) {
		double p = exp(sc[j] - m);
		sum += p;
		for (int e = 0; e < D; e++)
			want[e] += p * val[j][e];
	}
	double want_lse = m + log(sum);
	int cuts[][3] = {{0, 4, 9}, {0, 1, 9}, {0, 8, 9}, {0, 0, 9}};
	for (int c = 0; c < 4; c++) {
		double out[4] = {0}, lse = -INFINITY;
		worker_lse_merge(out, &lse, out, -INFINITY, D); /* a -inf block changes nothing */
		assert_true(lse == -INFINITY);
		for (int b = 0; b < 2; b++) {
			int lo_ = cuts[c][b], hi_ = cuts[c][b + 1];
			if (lo_ == hi_)
				continue;
			double bm = -INFINITY, bs = 0, bo[4] = {0};
			for (int j = lo_; j < hi_; j++)
				bm = fmax(bm, sc[j]);
			for (int j = lo_; j < hi_; j++) {
				double p = exp(sc[j] - bm);
				bs += p;
				for (int e = 0; e < D; e++)
					bo[e] += p * val[j][e];
			}
			for (int e = 0; e < D; e++)
				bo[e] /= bs;
			worker_lse_merge(out, &lse, bo, bm + log(bs), D);
		}
		assert_true(fabs(lse - want_lse) < 1e-12);
		for (int e = 0; e < D; e++)
			assert_true(fabs(out[e] - want[e] / sum) < 1e-12);
	}
}

/* Builds dumps holding the reference itself (what a perfect backend writes). */
static void make_perfect_dumps(const sl_plan_t *plan, uint64_t seed, worker_order_t **orders,
                               worker_dump_t **dumps)
{
	const int32_t H = shape.heads, KH = shape.kv_heads, D = shape.head_dim;
	const size_t rq = (size_t)H * (size_t)D, rk = (size_t)KH * (size_t)D;
	for (int32_t r = 0; r < plan->ranks; r++) {
		assert_int_equal(worker_order_build(plan, r, &shape, &orders[r]), SL_OK);
		worker_order_t *o = orders[r];
		worker_dump_t *d = calloc(1, sizeof *d);
		assert_non_null(d);
		d->rank = r;
		d->shape = shape;
		d->nwork = o->nwork;
		d->work = calloc((size_t)o->nwork + 1, sizeof *d->work);
		for (int32_t i = 0; i < o->nwork; i++) {
			const worker_group_work_t *w = &o->work[i];
			struct worker_dump_work *dw = &d->work[i];
			size_t T = (size_t)w->ntok;
			dw->slot = w->slot;
			dw->slot_group = w->slot_group;
			dw->ntok = w->ntok;
			dw->out = calloc(T * rq + 1, sizeof(double));
			dw->dq = calloc(T * rq + 1, sizeof(double));
			dw->dk = calloc(T * rk + 1, sizeof(double));
			dw->dv = calloc(T * rk + 1, sizeof(double));
			dw->lse = calloc(T * (size_t)H + 1, sizeof(double));
			for (int32_t si = 0; si < w->nseqs; si++) {
				const worker_seq_shard_t *sh = &w->seqs[si];
				size_t S = (size_t)sh->len;
				double *q = malloc(S * rq * 8), *g = malloc(S * rq * 8), *k = malloc(S * rk * 8),
				       *v = malloc(S * rk * 8), *ro = malloc(S * rq * 8),
				       *rdq = malloc(S * rq * 8), *rdk = malloc(S * rk * 8),
				       *rdv = malloc(S * rk * 8), *rl = malloc(S * (size_t)H * 8);
				for (size_t t = 0; t < S; t++) {
					for (int32_t h = 0; h < H; h++)
						for (int32_t e = 0; e < D; e++) {
							q[(t * (size_t)H + (size_t)h) * (size_t)D + (size_t)e] =
								worker_input_value(seed, sh->seq, WORKER_T_Q, (int64_t)t, h, e);
							g[(t * (size_t)H + (size_t)h) * (size_t)D + (size_t)e] =
								worker_input_value(seed, sh->seq, WORKER_T_DO, (int64_t)t, h, e);
						}
					for (int32_t h = 0; h < KH; h++)
						for (int32_t e = 0; e < D; e++) {
							k[(t * (size_t)KH + (size_t)h) * (size_t)D + (size_t)e] =
								worker_input_value(seed, sh->seq, WORKER_T_K, (int64_t)t, h, e);
							v[(t * (size_t)KH + (size_t)h) * (size_t)D + (size_t)e] =
								worker_input_value(seed, sh->seq, WORKER_T_V, (int64_t)t, h, e);
						}
				}
				assert_int_equal(
					worker_ref_attention(sh->len, &shape, q, k, v, g, ro, rl, rdq, rdk, rdv),
					SL_OK);
				for (int64_t j = 0; j < sh->local_len; j++) {
					int64_t pos = worker_shard_pos(sh, w->d, w->ring_pos, j);
					size_t row = (size_t)(sh->local_off + j);
					if (pos >= sh->len) {
						for (int32_t h = 0; h < H; h++)
							dw->lse[row * (size_t)H + (size_t)h] = -INFINITY;
						continue;
					}
					memcpy(dw->out + row * rq, ro + (size_t)pos * rq, rq * 8);
					memcpy(dw->dq + row * rq, rdq + (size_t)pos * rq, rq * 8);
					memcpy(dw->dk + row * rk, rdk + (size_t)pos * rk, rk * 8);
					memcpy(dw->dv + row * rk, rdv + (size_t)pos * rk, rk * 8);
					memcpy(dw->lse + row * (size_t)H, rl + (size_t)pos * (size_t)H,
					       (size_t)H * 8);
				}
				free(q), free(g), free(k), free(v), free(ro), free(rdq), free(rdk), free(rdv),
					free(rl);
			}
		}
		dumps[r] = d;
	}
}

/* The checker passes perfect outputs and catches each kind of wrong one. */
static void test_checker_catches(void **state)
{
	(void)state;
	int64_t len[] = {11, 3, 40};
	sl_plan_t *plan = new_plan(3, len, 3);
	int32_t g0[] = {1, 2, 0}, g1[] = {2};
	assert_int_equal(sl_plan_add_slot(plan), SL_OK);
	assert_int_equal(sl_plan_add_group(plan, g0, 3), SL_OK);
	assert_int_equal(sl_plan_add_item(plan, 0, 0.0), SL_OK);
	assert_int_equal(sl_plan_add_item(plan, 1, 0.0), SL_OK);
	assert_int_equal(sl_plan_add_slot(plan), SL_OK);
	assert_int_equal(sl_plan_add_group(plan, g1, 1), SL_OK);
	assert_int_equal(sl_plan_add_item(plan, 2, 0.0), SL_OK);
	worker_order_t *orders[3] = {0};
	worker_dump_t *dumps[3] = {0};
	make_perfect_dumps(plan, 5, orders, dumps);
	worker_check_result_t res;
	assert_int_equal(worker_check(plan, &shape, 5, orders, dumps, 1e-6, &res), SL_OK);
	assert_true(res.ok);
	for (int k = 0; k < 4; k++)
		assert_true(res.rel_err[k] == 0);

	/* a wrong seed is a different reference */
	assert_int_equal(worker_check(plan, &shape, 6, orders, dumps, 1e-6, &res), SL_OK);
	assert_false(res.ok);
	assert_true(res.rel_err[0] > 0.01);

	/* one dK value off by 1e-4 (rank 0 is ring position 2 of group 0) */
	const size_t rk = (size_t)shape.kv_heads * (size_t)shape.head_dim;
	dumps[0]->work[0].dk[rk + 3] += 1e-4;
	assert_int_equal(worker_check(plan, &shape, 5, orders, dumps, 1e-6, &res), SL_OK);
	assert_false(res.ok);
	assert_true(res.rel_err[2] > 1e-6 && res.rel_err[0] == 0);
	assert_int_equal(res.worst_seq, 0);
	dumps[0]->work[0].dk[rk + 3] -= 1e-4;

	/* a padding row with output: s = 11 on 3 ranks pads to 12, position 11
	 * is ring position 0's (rank 1) chunk 5, its last local token (3) */
	const size_t rq = (size_t)shape.heads * (size_t)shape.head_dim;
	dumps[1]->work[0].out[3 * rq] = 0.5;
	assert_int_equal(worker_check(plan, &shape, 5, orders, dumps, 1e-6, &res), SL_OK);
	assert_false(res.ok);
	assert_int_equal(res.bad_padding, 1);
	dumps[1]->work[0].out[3 * rq] = 0;

	/* NaN */
	dumps[2]->work[1].dv[0] = NAN;
	assert_int_equal(worker_check(plan, &shape, 5, orders, dumps, 1e-6, &res), SL_OK);
	assert_false(res.ok);
	assert_true(res.nonfinite >= 1);

	for (int r = 0; r < 3; r++) {
		worker_order_free(&orders[r]);
		worker_dump_free(&dumps[r]);
	}
	sl_plan_free(&plan);
}

/* Dump files round-trip and are checked against the rank's order. */
static void test_dump_roundtrip(void **state)
{
	(void)state;
	int64_t len[] = {9, 4};
	sl_plan_t *plan = new_plan(2, len, 2);
	int32_t g0[] = {0, 1};
	assert_int_equal(sl_plan_add_slot(plan), SL_OK);
	assert_int_equal(sl_plan_add_group(plan, g0, 2), SL_OK);
	assert_int_equal(sl_plan_add_item(plan, 0, 0.0), SL_OK);
	assert_int_equal(sl_plan_add_item(plan, 1, 0.0), SL_OK);
	worker_order_t *orders[2] = {0};
	worker_dump_t *dumps[2] = {0};
	make_perfect_dumps(plan, 9, orders, dumps);
	char path[] = "/tmp/worker_unit_dumpXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	worker_outputs_t outs = {dumps[1]->work[0].out, dumps[1]->work[0].lse, dumps[1]->work[0].dq,
	                         dumps[1]->work[0].dk, dumps[1]->work[0].dv};
	assert_int_equal(worker_dump_write(path, orders[1], "cpu", 1e-6, &outs), SL_OK);
	worker_dump_t *back = NULL;
	assert_int_equal(worker_dump_read(path, orders[1], &back), SL_OK);
	size_t n = (size_t)orders[1]->work[0].ntok * (size_t)shape.kv_heads * (size_t)shape.head_dim;
	assert_memory_equal(back->work[0].dv, dumps[1]->work[0].dv, n * sizeof(double));
	assert_string_equal(back->backend, "cpu");
	worker_dump_free(&back);
	/* the wrong rank's order is refused */
	assert_int_equal(worker_dump_read(path, orders[0], &back), SL_EFORMAT);
	assert_non_null(strstr(sl_errmsg(), "written for rank 1"));
	assert_null(back);
	/* a truncated file is refused */
	assert_int_equal(truncate(path, 200), 0);
	assert_int_equal(worker_dump_read(path, orders[1], &back), SL_EFORMAT);
	assert_non_null(strstr(sl_errmsg(), "truncated"));
	unlink(path);
	for (int r = 0; r < 2; r++) {
		worker_order_free(&orders[r]);
		worker_dump_free(&dumps[r]);
	}
	sl_plan_free(&plan);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zigzag_cover),      cmocka_unit_test(test_zigzag_chunks),
		cmocka_unit_test(test_order_errors),      cmocka_unit_test(test_inputs),
		cmocka_unit_test(test_plan_profile_not_opened),
		cmocka_unit_test(test_reference_gradients), cmocka_unit_test(test_lse_merge),
		cmocka_unit_test(test_checker_catches),   cmocka_unit_test(test_dump_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
