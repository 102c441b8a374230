/* sluice worker: checks the ranks' outputs against a single-process fp64
 * reference of every whole sequence. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

/* Finds the work of orders[rank] that executes group slot_group of slot,
 * or NULL. Works are matched by (slot, index within the slot) because an
 * order from sluiced does not know the plan-wide group index. */
static const worker_group_work_t *check_find_work(const worker_order_t *o,
                                                  const worker_dump_t *dump, int32_t slot,
                                                  int32_t slot_group, int32_t *index)
{
	for (int32_t i = 0; i < o->nwork && i < dump->nwork; i++)
		if (o->work[i].slot == slot && o->work[i].slot_group == slot_group) {
			*index = i;
			return &o->work[i];
		}
	return NULL;
}

/* The slot that holds plan group gi, or -1 when none does. */
static int32_t check_slot_of(const sl_plan_t *plan, int64_t gi)
{
	for (int32_t t = 0; t < plan->nslots; t++)
		if (gi >= plan->slots[t].group_off &&
		    gi < plan->slots[t].group_off + plan->slots[t].ngroups)
			return t;
	return -1;
}

/* max |a - b| / max |b| over n values (max |a - b| when b is all zero). */
static double check_rel(const double *a, const double *b, size_t n, int64_t *nonfinite)
{
	double diff = 0, ref = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(a[i])) {
			(*nonfinite)++;
			continue;
		}
		double e = fabs(a[i] - b[i]);
		if (e > diff)
			diff = e;
		if (fabs(b[i]) > ref)
			ref = fabs(b[i]);
	}
	return ref > 0 ? diff / ref : diff;
}

sl_err worker_check(const sl_plan_t *plan, const worker_shape_t *shape, uint64_t seed,
                    worker_order_t *const *orders, worker_dump_t *const *dumps, double tol,
                    worker_check_result_t *res)
{
	memset(res, 0, sizeof *res);
	res->worst_seq = -1;
	res->tol = tol;
	const int32_t H = shape->heads, KH = shape->kv_heads, D = shape->head_dim;
	const size_t rq = (size_t)H * (size_t)D, rk = (size_t)KH * (size_t)D;
	double worst = -1;
	sl_err rc = SL_OK;
	for (int64_t gi = 0; gi < plan->ngroups; gi++) {
		const sl_group_t *g = &plan->groups[gi];
		int32_t slot = check_slot_of(plan, gi);
		int32_t slot_group = slot >= 0 ? (int32_t)(gi - plan->slots[slot].group_off) : -1;
		const int32_t *ring = sl_group_ranks(plan, g);
		const sl_item_t *items = sl_group_items(plan, g);
		for (int32_t it = 0; it < g->nitems; it++) {
			int32_t sq = items[it].seq;
			int64_t s = plan->seqs[sq].length, p = sl_cost_padded(s, g->nranks);
			size_t P = (size_t)p, S = (size_t)s;
			/* got: assembled outputs [p rows]; ref: inputs and reference [s rows] */
			double *o = calloc(P * rq, sizeof *o), *dq = calloc(P * rq, sizeof *dq);
			double *dk = calloc(P * rk, sizeof *dk), *dv = calloc(P * rk, sizeof *dv);
			double *lse = calloc(P * (size_t)H, sizeof *lse);
			int32_t *cover = calloc(P, sizeof *cover);
			double *iq = malloc(S * rq * sizeof *iq), *ido = malloc(S * rq * sizeof *ido);
			double *ik = malloc(S * rk * sizeof *ik), *iv = malloc(S * rk * sizeof *iv);
			double *ro = malloc(S * rq * sizeof *ro), *rdq = malloc(S * rq * sizeof *rdq);
			double *rdk = malloc(S * rk * sizeof *rdk), *rdv = malloc(S * rk * sizeof *rdv);
			double *rl = malloc(S * (size_t)H * sizeof *rl);
			if (!o || !dq || !dk || !dv || !lse || !cover || !iq || !ido || !ik || !iv || !ro ||
			    !rdq || !rdk || !rdv || !rl) {
				rc = sl_seterr(SL_ENOMEM, "check: out of memory for sequence %lld (%lld tokens)",
				               (long long)plan->seqs[sq].id, (long long)s);
				goto next;
			}
			/* Scatter each ring position's shard rows to their global positions. */
			for (int32_t pos = 0; pos < g->nranks; pos++) {
				int32_t r = ring[pos], wi = -1;
				const worker_group_work_t *w =
					check_find_work(orders[r], dumps[r], slot, slot_group, &wi);
				if (!w) {
					rc = sl_seterr(SL_EINTERNAL, "check: rank %d has no output for group %lld",
					               (int)r, (long long)gi);
					goto next;
				}
				const struct worker_dump_work *dw = &dumps[r]->work[wi];
				for (int32_t si = 0; si < w->nseqs; si++) {
					const worker_seq_shard_t *sh = &w->seqs[si];
					if (sh->seq != sq)
						continue;
					for (int64_t j = 0; j < sh->local_len; j++) {
						int64_t gp = worker_shard_pos(sh, w->d, w->ring_pos, j);
						size_t lr = (size_t)(sh->local_off + j);
						if (gp < 0 || gp >= p) {
							res->bad_coverage++;
							continue;
						}
						cover[gp]++;
						memcpy(o + (size_t)gp * rq, dw->out + lr * rq, rq * sizeof(double));
						memcpy(dq + (size_t)gp * rq, dw->dq + lr * rq, rq * sizeof(double));
						memcpy(dk + (size_t)gp * rk, dw->dk + lr * rk, rk * sizeof(double));
						memcpy(dv + (size_t)gp * rk, dw->dv + lr * rk, rk * sizeof(double));
						memcpy(lse + (size_t)gp * (size_t)H, dw->lse + lr * (size_t)H,
						       (size_t)H * sizeof(double));
					}
				}
			}
			for (int64_t t = 0; t < p; t++)
				if (cover[t] != 1)
					res->bad_coverage++;
			/* Padding rows: nothing in, nothing out. */
			for (int64_t t = s; t < p; t++) {
				int bad = 0;
				for (size_t e = 0; e < rq; e++)
					bad |= o[(size_t)t * rq + e] != 0 || dq[(size_t)t * rq + e] != 0;
				for (size_t e = 0; e < rk; e++)
					bad |= dk[(size_t)t * rk + e] != 0 || dv[(size_t)t * rk + e] != 0;
				for (int32_t h = 0; h < H; h++)
					bad |= lse[(size_t)t * (size_t)H + (size_t)h] != -INFINITY;
				res->bad_padding += bad;
			}
			for (int64_t t = 0; t < s; t++) {
				for (int32_t h = 0; h < H; h++)
					for (int32_t e = 0; e < D; e++) {
						size_t i = ((size_t)t * (size_t)H + (size_t)h) * (size_t)D + (size_t)e;
						iq[i] = worker_input_value(seed, sq, WORKER_T_Q, t, h, e);
						ido[i] = worker_input_value(seed, sq, WORKER_T_DO, t, h, e);
					}
				for (int32_t h = 0; h < KH; h++)
					for (int32_t e = 0; e < D; e++) {
						size_t i = ((size_t)t * (size_t)KH + (size_t)h) * (size_t)D + (size_t)e;
						ik[i] = worker_input_value(seed, sq, WORKER_T_K, t, h, e);
						iv[i] = worker_input_value(seed, sq, WORKER_T_V, t, h, e);
					}
			}
			SL_CHECK_GOTO(worker_ref_attention(s, shape, iq, ik, iv, ido, ro, rl, rdq, rdk, rdv),
			              rc, next);
			double e4[4] = {check_rel(o, ro, S * rq, &res->nonfinite),
			                check_rel(dq, rdq, S * rq, &res->nonfinite),
			                check_rel(dk, rdk, S * rk, &res->nonfinite),
			                check_rel(dv, rdv, S * rk, &res->nonfinite)};
			double seq_worst = 0;
			for (int k = 0; k < 4; k++) {
				if (e4[k] > res->rel_err[k])
					res->rel_err[k] = e4[k];
				if (e4[k] > seq_worst)
					seq_worst = e4[k];
			}
			for (size_t i = 0; i < S * (size_t)H; i++) {
				if (!isfinite(lse[i])) {
					res->nonfinite++;
					continue;
				}
				double e = fabs(lse[i] - rl[i]) / fmax(1.0, fabs(rl[i]));
				if (e > res->lse_err)
					res->lse_err = e;
			}
			if (seq_worst > worst) {
				worst = seq_worst;
				res->worst_seq = sq;
			}
		next:
			free(o);
			free(dq);
			free(dk);
			free(dv);
			free(lse);
			free(cover);
			free(iq);
			free(ido);
			free(ik);
			free(iv);
			free(ro);
			free(rdq);
			free(rdk);
			free(rdv);
			free(rl);
			if (rc != SL_OK)
				return rc;
		}
	}
	res->ok = res->bad_coverage == 0 && res->bad_padding == 0 && res->nonfinite == 0 &&
	          res->lse_err <= tol;
	for (int k = 0; k < 4; k++)
		res->ok = res->ok && res->rel_err[k] <= tol;
	return SL_OK;
}

sl_err worker_check_dumps(const sl_plan_t *plan, const worker_shape_t *shape, uint64_t seed,
                          const char *const *paths, worker_check_result_t *res)
{
	memset(res, 0, sizeof *res);
	size_t n = plan->ranks > 0 ? (size_t)plan->ranks : 1;
	worker_order_t **orders = calloc(n, sizeof *orders);
	worker_dump_t **dumps = calloc(n, sizeof *dumps);
	sl_err rc = SL_OK;
	double tol = 0;
	if (!orders || !dumps) {
		rc = sl_seterr(SL_ENOMEM, "check: out of memory");
		goto out;
	}
	for (int32_t r = 0; r < plan->ranks; r++) {
		SL_CHECK_GOTO(worker_order_build(plan, r, shape, &orders[r]), rc, out);
		SL_CHECK_GOTO(worker_dump_read(paths[r], orders[r], &dumps[r]), rc, out);
		tol = fmax(tol, dumps[r]->tol);
	}
	rc = worker_check(plan, shape, seed, orders, dumps, tol, res);
out:
	for (int32_t r = 0; r < plan->ranks; r++) {
		if (orders)
			worker_order_free(&orders[r]);
		if (dumps)
			worker_dump_free(&dumps[r]);
	}
	free(orders);
	free(dumps);
	return rc;
}
