/* sluice GPU tests: fp64 CPU reference attention (three passes: O/LSE,
 * dQ by query rows, dK/dV by key rows, so each pass parallelises without
 * write conflicts). */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ref.h"

#define REF_BLOCK 32

typedef struct task {
	int prob, head, pass;
	int64_t lo, hi;
} task_t;

typedef struct pool {
	ref_attn_t *p;
	task_t *tasks;
	int64_t ntasks;
	atomic_llong next;
} pool_t;

static int seen(const ref_attn_t *p, int64_t i, int64_t j)
{
	return p->qpos[i] < p->seqlen && p->kpos[j] < p->seqlen &&
	       (!p->causal || p->kpos[j] <= p->qpos[i]);
}

static double dot(const double *a, const double *b, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

static void pass_fwd(ref_attn_t *p, int h, int64_t lo, int64_t hi, double *sc)
{
	const int D = p->D, kh = h / (p->H / p->KH);
	for (int64_t i = lo; i < hi; i++) {
		const double *q = p->q + (i * p->H + h) * D;
		double *o = p->o + (i * p->H + h) * D;
		double m = -INFINITY, sum = 0, lse;
		memset(o, 0, (size_t)D * sizeof(*o));
		for (int64_t j = 0; j < p->nk; j++) {
			sc[j] = seen(p, i, j) ? p->scale * dot(q, p->k + (j * p->KH + kh) * D, D)
			                      : -INFINITY;
			if (sc[j] > m)
				m = sc[j];
		}
		if (m == -INFINITY) {
			p->lse[i * p->H + h] = -INFINITY;
			if (p->dout != NULL)
				p->delta_[i * p->H + h] = 0;
			continue;
		}
		for (int64_t j = 0; j < p->nk; j++)
			sum += sc[j] == -INFINITY ? 0 : exp(sc[j] - m);
		lse = m + log(sum);
		p->lse[i * p->H + h] = lse;
		for (int64_t j = 0; j < p->nk; j++) {
			if (sc[j] == -INFINITY)
				continue;
			const double w = exp(sc[j] - lse);
			const double *v = p->v + (j * p->KH + kh) * D;
			for (int d = 0; d < D; d++)
				o[d] += w * v[d];
		}
		if (p->dout != NULL)
			p->delta_[i * p->H + h] = dot(o, p->dout + (i * p->H + h) * D, D);
	}
}

static void pass_dq(ref_attn_t *p, int h, int64_t lo, int64_t hi)
{
	const int D = p->D, kh = h / (p->H / p->KH);
	for (int64_t i = lo; i < hi; i++) {
		const double *q = p->q + (i * p->H + h) * D;
		const double *dO = p->dout + (i * p->H + h) * D;
		const double lse = p->lse[i * p->H + h], dl = p->delta_[i * p->H + h];
		double *dq = p->dq + (i * p->H + h) * D;
		memset(dq, 0, (size_t)D * sizeof(*dq));
		if (lse == -INFINITY)
			continue;
		for (int64_t j = 0; j < p->nk; j++) {
			if (!seen(p, i, j))
				continue;
			const double *k = p->k + (j * p->KH + kh) * D;
			const double pr = exp(p->scale * dot(q, k, D) - lse);
			const double ds = pr * (dot(dO, p->v + (j * p->KH + kh) * D, D) - dl);
			for (int d = 0; d < D; d++)
				dq[d] += p->scale * ds * k[d];
		}
	}
}

static void pass_dkv(ref_attn_t *p, int kh, int64_t lo, int64_t hi)
{
	const int D = p->D, G = p->H / p->KH;
	for (int64_t j = lo; j < hi; j++) {
		const double *k = p->k + (j * p->KH + kh) * D;
		const double *v = p->v + (j * p->KH + kh) * D;
		double *dk = p->dk + (j * p->KH + kh) * D;
		double *dv = p->dv + (j * p->KH + kh) * D;
		memset(dk, 0, (size_t)D * sizeof(*dk));
		memset(dv, 0, (size_t)D * sizeof(*dv));
		for (int h = kh * G; h < (kh + 1) * G; h++)
			for (int64_t i = 0; i < p->nq; i++) {
				const double lse = p->lse[i * p->H + h];
				if (lse == -INFINITY || !seen(p, i, j))
					continue;
				const double *q = p->q + (i * p->H + h) * D;
				const double *dO = p->dout + (i * p->H + h) * D;
				const double pr = exp(p->scale * dot(q, k, D) - lse);
				const double ds = pr * (dot(dO, v, D) - p->delta_[i * p->H + h]);
				for (int d = 0; d < D; d++) {
					dv[d] += pr * dO[d];
					dk[d] += p->scale * ds * q[d];
				}
			}
	}
}

static void *worker(void *arg)
{
	pool_t *pl = arg;
	double *sc = NULL;
	int64_t cap = 0;
	for (;;) {
		const long long t = atomic_fetch_add(&pl->next, 1);
		if (t >= pl->ntasks)
			break;
		const task_t *tk = &pl->tasks[t];
		ref_attn_t *p = &pl->p[tk->prob];
		if (tk->pass == 0) {
			if (p->nk > cap) {
				double *n = realloc(sc, (size_t)p->nk * sizeof(*sc));
				if (n == NULL)
					abort();
				sc = n;
				cap = p->nk;
			}
			pass_fwd(p, tk->head, tk->lo, tk->hi, sc);
		} else if (tk->pass == 1) {
			pass_dq(p, tk->head, tk->lo, tk->hi);
		} else {
			pass_dkv(p, tk->head, tk->lo, tk->hi);
		}
	}
	free(sc);
	return NULL;
}

static int run_pass(ref_attn_t *p, int n, int pass, int threads)
{
	pool_t pl = {.p = p};
	int64_t nt = 0;
	pthread_t *th;
	for (int i = 0; i < n; i++) {
		if (pass > 0 && p[i].dout == NULL)
			continue;
		const int64_t rows = pass == 2 ? p[i].nk : p[i].nq;
		const int heads = pass == 2 ? p[i].KH : p[i].H;
		nt += heads * ((rows + REF_BLOCK - 1) / REF_BLOCK);
	}
	pl.tasks = malloc((size_t)(nt > 0 ? nt : 1) * sizeof(task_t));
	th = malloc((size_t)threads * sizeof(*th));
	if (pl.tasks == NULL || th == NULL) {
		free(pl.tasks);
		free(th);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (pass > 0 && p[i].dout == NULL)
			continue;
		const int64_t rows = pass == 2 ? p[i].nk : p[i].nq;
		const int heads = pass == 2 ? p[i].KH : p[i].H;
		for (int h = 0; h < heads; h++)
			for (int64_t r = 0; r < rows; r += REF_BLOCK)
				pl.tasks[pl.ntasks++] = (task_t){i, h, pass, r,
				                                 r + REF_BLOCK < rows ? r + REF_BLOCK
				                                                      : rows};
	}
	atomic_init(&pl.next, 0);
	for (int t = 0; t < threads; t++)
		pthread_create(&th[t], NULL, worker, &pl);
	for (int t = 0; t < threads; t++)
		pthread_join(th[t], NULL);
	free(pl.tasks);
	free(th);
	return 0;
}

int ref_attn_run(ref_attn_t *p, int n, int threads)
{
	int rc = 0;
	if (threads <= 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		threads = c > 0 ? (int)(c > 64 ? 64 : c) : 1;
	}
	for (int i = 0; i < n; i++) {
		p[i].delta_ = NULL;
		if (p[i].dout != NULL) {
			p[i].delta_ = malloc((size_t)(p[i].nq * p[i].H + 1) * sizeof(double));
			if (p[i].delta_ == NULL)
				rc = -1;
		}
	}
	for (int pass = 0; pass < 3 && rc == 0; pass++)
		rc = run_pass(p, n, pass, threads);
	for (int i = 0; i < n; i++) {
		free(p[i].delta_);
		p[i].delta_ = NULL;
	}
	return rc;
}

double ref_rel_err(const double *a, const double *b, int64_t n)
{
	double num = 0, den = 0;
	for (int64_t i = 0; i < n; i++) {
		if (isinf(b[i]) && a[i] == b[i])
			continue;
		if (!isfinite(a[i]) || !isfinite(b[i]))
			return NAN;
		num += (a[i] - b[i]) * (a[i] - b[i]);
		den += b[i] * b[i];
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}
