/* sluice worker: the fp64 CPU backend. Straightforward blockwise attention
 * with K/V (and in the backward dK/dV) travelling round the group's ring over
 * the worker's ZeroMQ mesh (backend.h describes the algorithm and layout). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

typedef struct cpu_state {
	worker_mesh_t *mesh;
	int32_t rank;
	/* the current group's buffers */
	double *q, *dout;    /* [ntok][H][D] */
	double *kv[2];       /* [2][ntok][KH][D]: K then V, double-buffered */
	double *dkv[2];      /* [2][ntok][KH][D]: dK then dV, double-buffered */
	double *out, *lse;   /* [ntok][H][D], [ntok][H] */
	double *dq, *delta;  /* [ntok][H][D], [ntok][H] */
	double *mine;        /* [2][ntok][KH][D]: this rank's own K|V, kept for reruns */
	double *dmine;       /* [2][ntok][KH][D]: this rank's dK|dV after backward */
	double *row, *p;     /* scratch: [D], [local tokens of the longest shard] */
	int have_out;
} cpu_state_t;

static void cpu_free_group(cpu_state_t *s)
{
	double **bufs[] = {&s->q,   &s->dout,  &s->kv[0], &s->kv[1], &s->dkv[0], &s->dkv[1],
	                   &s->out, &s->lse,   &s->dq,    &s->delta, &s->mine,   &s->dmine,
	                   &s->row, &s->p};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
		free(*bufs[i]);
		*bufs[i] = NULL;
	}
	s->have_out = 0;
}

static sl_err cpu_init(const worker_backend_cfg_t *cfg, void **state)
{
	*state = NULL;
	if (!cfg->boot.ctx)
		return sl_seterr(SL_EINVAL, "cpu backend: needs the worker's mesh");
	cpu_state_t *s = calloc(1, sizeof *s);
	if (!s)
		return sl_seterr(SL_ENOMEM, "cpu backend: out of memory");
	s->mesh = cfg->boot.ctx;
	s->rank = cfg->rank;
	*state = s;
	return SL_OK;
}

static void cpu_fini(void **state)
{
	if (!state || !*state)
		return;
	cpu_free_group(*state);
	free(*state);
	*state = NULL;
}

static sl_err cpu_begin(void *state, const worker_group_work_t *w, const worker_inputs_t *in)
{
	cpu_state_t *s = state;
	cpu_free_group(s);
	size_t nq = (size_t)w->ntok * (size_t)w->heads * (size_t)w->head_dim;
	size_t nk = (size_t)w->ntok * (size_t)w->kv_heads * (size_t)w->head_dim;
	size_t nh = (size_t)w->ntok * (size_t)w->heads;
	int64_t longest = 1;
	for (int32_t i = 0; i < w->nseqs; i++)
		if (w->seqs[i].local_len > longest)
			longest = w->seqs[i].local_len;
	/* +1 keeps every size non-zero for a group whose order has no tokens. */
	s->q = malloc((nq + 1) * sizeof(double));
	s->dout = malloc((nq + 1) * sizeof(double));
	s->out = malloc((nq + 1) * sizeof(double));
	s->dq = malloc((nq + 1) * sizeof(double));
	s->lse = malloc((nh + 1) * sizeof(double));
	s->delta = malloc((nh + 1) * sizeof(double));
	for (int b = 0; b < 2; b++) {
		s->kv[b] = malloc((2 * nk + 1) * sizeof(double));
		s->dkv[b] = malloc((2 * nk + 1) * sizeof(double));
	}
	s->mine = malloc((2 * nk + 1) * sizeof(double));
	s->dmine = malloc((2 * nk + 1) * sizeof(double));
	s->row = malloc(((size_t)w->head_dim + 1) * sizeof(double));
	s->p = malloc((size_t)longest * sizeof(double));
	if (!s->q || !s->dout || !s->out || !s->dq || !s->lse || !s->delta || !s->kv[0] ||
	    !s->kv[1] || !s->dkv[0] || !s->dkv[1] || !s->mine || !s->dmine || !s->row || !s->p) {
		cpu_free_group(s);
		return sl_seterr(SL_ENOMEM, "rank %d slot %d: cpu backend: out of memory (%lld tokens)",
		                 (int)s->rank, (int)w->slot, (long long)w->ntok);
	}
	memcpy(s->q, in->q, nq * sizeof(double));
	memcpy(s->dout, in->dout, nq * sizeof(double));
	memcpy(s->mine, in->k, nk * sizeof(double));
	memcpy(s->mine + nk, in->v, nk * sizeof(double));
	memset(s->dmine, 0, 2 * nk * sizeof(double));
	return SL_OK;
}

/* Attention of this rank's queries against the K/V shard kv of ring position
 * owner: forward (merge into out/lse) or backward (accumulate dq here and
 * dK|dV of that shard into dkv, using the final lse). */
static void cpu_block(cpu_state_t *s, const worker_group_work_t *w, int32_t owner,
                      const double *kv, double *dkv, int backward)
{
	const int32_t H = w->heads, KH = w->kv_heads, D = w->head_dim, grp = H / KH;
	const size_t nk = (size_t)w->ntok * (size_t)KH * (size_t)D;
	const double *K = kv, *V = kv + nk;
	double *dK = dkv, *dV = dkv ? dkv + nk : NULL;
	for (int32_t si = 0; si < w->nseqs; si++) {
		const worker_seq_shard_t *sh = &w->seqs[si];
		for (int64_t j = 0; j < sh->local_len; j++) {
			int64_t qp = worker_shard_pos(sh, w->d, w->ring_pos, j);
			if (qp >= sh->len)
				continue; /* padding query: no output, no gradient */
			int64_t qrow = sh->local_off + j;
			for (int32_t h = 0; h < H; h++) {
				const int32_t hk = h / grp;
				const double *qv = s->q + ((size_t)qrow * (size_t)H + (size_t)h) * (size_t)D;
				const size_t lrow = (size_t)qrow * (size_t)H + (size_t)h;
				double m = -INFINITY;
				for (int64_t jj = 0; jj < sh->local_len; jj++) {
					int64_t kp = worker_shard_pos(sh, w->d, owner, jj);
					if (kp > qp || kp >= sh->len) {
						s->p[jj] = -INFINITY;
						continue;
					}
					const double *kk =
						K + ((size_t)(sh->local_off + jj) * (size_t)KH + (size_t)hk) * (size_t)D;
					double dot = 0;
					for (int32_t e = 0; e < D; e++)
						dot += qv[e] * kk[e];
					s->p[jj] = dot * w->scale;
					if (s->p[jj] > m)
						m = s->p[jj];
				}
				if (m == -INFINITY)
					continue; /* this query sees no key of this shard */
				if (!backward) {
					double sum = 0;
					memset(s->row, 0, (size_t)D * sizeof(double));
					for (int64_t jj = 0; jj < sh->local_len; jj++) {
						if (s->p[jj] == -INFINITY)
							continue;
						double e_ = exp(s->p[jj] - m);
						sum += e_;
						const double *vv = V + ((size_t)(sh->local_off + jj) * (size_t)KH +
						                        (size_t)hk) * (size_t)D;
						for (int32_t e = 0; e < D; e++)
							s->row[e] += e_ * vv[e];
					}
					for (int32_t e = 0; e < D; e++)
						s->row[e] /= sum;
					worker_lse_merge(s->out + lrow * (size_t)D, &s->lse[lrow], s->row,
					                 m + log(sum), D);
					continue;
				}
				/* Backward with the final LSE: P = exp(S - lse), dS = P (dP - delta). */
				const double *g = s->dout + lrow * (size_t)D;
				double *dqv = s->dq + lrow * (size_t)D;
				for (int64_t jj = 0; jj < sh->local_len; jj++) {
					if (s->p[jj] == -INFINITY)
						continue;
					size_t krow = ((size_t)(sh->local_off + jj) * (size_t)KH + (size_t)hk) *
					              (size_t)D;
					double pr = exp(s->p[jj] - s->lse[lrow]);
					double dp = 0;
					for (int32_t e = 0; e < D; e++)
						dp += g[e] * V[krow + (size_t)e];
					double ds = pr * (dp - s->delta[lrow]) * w->scale;
					for (int32_t e = 0; e < D; e++) {
						dqv[e] += ds * K[krow + (size_t)e];
						dK[krow + (size_t)e] += ds * qv[e];
						dV[krow + (size_t)e] += pr * g[e];
					}
				}
			}
		}
	}
}

static sl_err cpu_forward(void *state, const worker_group_work_t *w, worker_pass_stats_t *st)
{
	cpu_state_t *s = state;
	const size_t nq = (size_t)w->ntok * (size_t)w->heads * (size_t)w->head_dim;
	const size_t nh = (size_t)w->ntok * (size_t)w->heads;
	const size_t kvbytes = 2 * (size_t)w->ntok * (size_t)w->kv_heads * (size_t)w->head_dim *
	                       sizeof(double);
	memset(st, 0, sizeof *st);
	double t_start = sl_now_ms();
	memset(s->out, 0, nq * sizeof(double));
	for (size_t i = 0; i < nh; i++)
		s->lse[i] = -INFINITY;
	memcpy(s->kv[0], s->mine, kvbytes);
	int cur = 0;
	for (int32_t h = 0; h < w->d; h++) {
		int32_t owner = (w->ring_pos - h + w->d) % w->d;
		worker_tag_t tag = {.kind = WORKER_MSG_KV_FWD, .slot = w->slot, .hop = h, .seq = 0};
		int more = h < w->d - 1;
		double t0 = sl_now_ms();
		if (more) {
			/* Queued before computing, so the transfer overlaps the block. */
			SL_CHECK(worker_mesh_send(s->mesh, w->next_rank, &tag, s->kv[cur], kvbytes));
			st->bytes_sent += (int64_t)kvbytes;
		}
		double t1 = sl_now_ms();
		cpu_block(s, w, owner, s->kv[cur], NULL, 0);
		double t2 = sl_now_ms();
		if (more) {
			SL_CHECK(worker_mesh_recv(s->mesh, w->prev_rank, &tag, s->kv[1 - cur], kvbytes));
			st->bytes_recv += (int64_t)kvbytes;
			st->hops++;
			cur = 1 - cur;
		}
		double t3 = sl_now_ms();
		st->compute_ms += t2 - t1;
		st->comm_ms += (t1 - t0) + (t3 - t2);
	}
	st->wall_ms = sl_now_ms() - t_start;
	s->have_out = 1;
	return SL_OK;
}

static sl_err cpu_backward(void *state, const worker_group_work_t *w, worker_pass_stats_t *st)
{
	cpu_state_t *s = state;
	if (!s->have_out)
		return sl_seterr(SL_EINTERNAL, "rank %d slot %d: backward before forward",
		                 (int)s->rank, (int)w->slot);
	const int32_t H = w->heads, D = w->head_dim;
	const size_t nq = (size_t)w->ntok * (size_t)H * (size_t)D;
	const size_t nh = (size_t)w->ntok * (size_t)H;
	const size_t kvbytes = 2 * (size_t)w->ntok * (size_t)w->kv_heads * (size_t)D *
	                       sizeof(double);
	memset(st, 0, sizeof *st);
	double t_start = sl_now_ms();
	for (size_t i = 0; i < nh; i++) {
		double acc = 0;
		for (int32_t e = 0; e < D; e++)
			acc += s->dout[i * (size_t)D + (size_t)e] * s->out[i * (size_t)D + (size_t)e];
		s->delta[i] = acc;
	}
	memset(s->dq, 0, nq * sizeof(double));
	memcpy(s->kv[0], s->mine, kvbytes);
	memset(s->dkv[0], 0, kvbytes);
	int cur = 0, dcur = 0;
	for (int32_t h = 0; h < w->d; h++) {
		int32_t owner = (w->ring_pos - h + w->d) % w->d;
		worker_tag_t kt = {.kind = WORKER_MSG_KV_BWD, .slot = w->slot, .hop = h, .seq = 0};
		worker_tag_t dt = {.kind = WORKER_MSG_DKV_BWD, .slot = w->slot, .hop = h, .seq = 0};
		int more_kv = h < w->d - 1, ring = w->d > 1;
		double t0 = sl_now_ms();
		if (more_kv) {
			SL_CHECK(worker_mesh_send(s->mesh, w->next_rank, &kt, s->kv[cur], kvbytes));
			st->bytes_sent += (int64_t)kvbytes;
		}
		double t1 = sl_now_ms();
		cpu_block(s, w, owner, s->kv[cur], s->dkv[dcur], 1);
		double t2 = sl_now_ms();
		if (ring) {
			/* dK|dV of owner's shard go on with it; after d hops they are home. */
			SL_CHECK(worker_mesh_send(s->mesh, w->next_rank, &dt, s->dkv[dcur], kvbytes));
			st->bytes_sent += (int64_t)kvbytes;
		}
		if (more_kv) {
			SL_CHECK(worker_mesh_recv(s->mesh, w->prev_rank, &kt, s->kv[1 - cur], kvbytes));
			st->bytes_recv += (int64_t)kvbytes;
			cur = 1 - cur;
		}
		if (ring) {
			SL_CHECK(worker_mesh_recv(s->mesh, w->prev_rank, &dt, s->dkv[1 - dcur], kvbytes));
			st->bytes_recv += (int64_t)kvbytes;
			st->hops++;
			dcur = 1 - dcur;
		}
		double t3 = sl_now_ms();
		st->compute_ms += t2 - t1;
		st->comm_ms += (t1 - t0) + (t3 - t2);
	}
	memcpy(s->dmine, s->dkv[dcur], kvbytes);
	st->wall_ms = sl_now_ms() - t_start;
	return SL_OK;
}

static sl_err cpu_end(void *state, const worker_group_work_t *w, worker_outputs_t *out)
{
	cpu_state_t *s = state;
	const size_t nq = (size_t)w->ntok * (size_t)w->heads * (size_t)w->head_dim;
	const size_t nk = (size_t)w->ntok * (size_t)w->kv_heads * (size_t)w->head_dim;
	const size_t nh = (size_t)w->ntok * (size_t)w->heads;
	if (out->out)
		memcpy(out->out, s->out, nq * sizeof(double));
	if (out->lse)
		memcpy(out->lse, s->lse, nh * sizeof(double));
	if (out->dq)
		memcpy(out->dq, s->dq, nq * sizeof(double));
	if (out->dk)
		memcpy(out->dk, s->dmine, nk * sizeof(double));
	if (out->dv)
		memcpy(out->dv, s->dmine + nk, nk * sizeof(double));
	cpu_free_group(s);
	return SL_OK;
}

const worker_backend_ops_t worker_cpu_backend_ops = {
	.name = "cpu",
	.check_tol = 1e-6,
	.init = cpu_init,
	.begin = cpu_begin,
	.forward = cpu_forward,
	.backward = cpu_backward,
	.end = cpu_end,
	.fini = cpu_fini,
};
