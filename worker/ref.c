/* sluice worker: fp64 reference attention of whole sequences (the checker's
 * ground truth) and the log-sum-exp merge the ring uses. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

/* log(sigmoid(x)) without overflow for either sign. */
static double ref_logsigmoid(double x)
{
	return (x < 0 ? x : 0.0) - log1p(exp(-fabs(x)));
}

static double ref_sigmoid(double x)
{
	if (x >= 0)
		return 1.0 / (1.0 + exp(-x));
	double e = exp(x);
	return e / (1.0 + e);
}

void worker_lse_merge(double *out, double *lse, const double *out_b, double lse_b, int32_t dim)
{
	if (lse_b == -INFINITY)
		return;
	if (*lse == -INFINITY) {
		memcpy(out, out_b, (size_t)dim * sizeof *out);
		*lse = lse_b;
		return;
	}
	/* The stable form of ring-flash-attn's _update_out_and_lse: never
	 * exponentiates a large positive number. */
	double w = ref_sigmoid(lse_b - *lse);
	for (int32_t e = 0; e < dim; e++)
		out[e] -= w * (out[e] - out_b[e]);
	*lse -= ref_logsigmoid(*lse - lse_b);
}

sl_err worker_ref_attention(int64_t s, const worker_shape_t *shape, const double *q, const double *k,
                          const double *v, const double *dout, double *out, double *lse, double *dq,
                          double *dk, double *dv)
{
	const int32_t H = shape->heads, KH = shape->kv_heads, D = shape->head_dim;
	const int32_t grp = H / KH;
	const double scale = 1.0 / sqrt((double)D);
	double *p = malloc((size_t)(s > 0 ? s : 1) * sizeof *p);
	if (!p)
		return sl_seterr(SL_ENOMEM, "reference attention: out of memory (%lld tokens)",
		                 (long long)s);
	if (dq) {
		memset(dq, 0, (size_t)s * (size_t)H * (size_t)D * sizeof *dq);
		memset(dk, 0, (size_t)s * (size_t)KH * (size_t)D * sizeof *dk);
		memset(dv, 0, (size_t)s * (size_t)KH * (size_t)D * sizeof *dv);
	}
#define RQ(t, h) ((size_t)((t) * (int64_t)H + (h)) * (size_t)D)
#define RK(t, h) ((size_t)((t) * (int64_t)KH + (h)) * (size_t)D)
	for (int32_t h = 0; h < H; h++) {
		int32_t hk = h / grp;
		for (int64_t i = 0; i < s; i++) {
			const double *qi = q + RQ(i, h);
			double m = -INFINITY;
			for (int64_t j = 0; j <= i; j++) {
				const double *kj = k + RK(j, hk);
				double dot = 0;
				for (int32_t e = 0; e < D; e++)
					dot += qi[e] * kj[e];
				p[j] = dot * scale;
				if (p[j] > m)
					m = p[j];
			}
			double sum = 0;
			for (int64_t j = 0; j <= i; j++) {
				p[j] = exp(p[j] - m);
				sum += p[j];
			}
			double *oi = out + RQ(i, h);
			memset(oi, 0, (size_t)D * sizeof *oi);
			for (int64_t j = 0; j <= i; j++) {
				p[j] /= sum;
				const double *vj = v + RK(j, hk);
				for (int32_t e = 0; e < D; e++)
					oi[e] += p[j] * vj[e];
			}
			lse[(size_t)i * (size_t)H + (size_t)h] = m + log(sum);
			if (!dq)
				continue;
			/* dS = P * (dP - delta), delta = rowsum(dO * O) (FlashAttention-2's
			 * backward, Dao 2023, Algorithm 2). */
			const double *gi = dout + RQ(i, h);
			double delta = 0;
			for (int32_t e = 0; e < D; e++)
				delta += gi[e] * oi[e];
			double *dqi = dq + RQ(i, h);
			for (int64_t j = 0; j <= i; j++) {
				const double *kj = k + RK(j, hk), *vj = v + RK(j, hk);
				double dp = 0;
				for (int32_t e = 0; e < D; e++)
					dp += gi[e] * vj[e];
				double ds = p[j] * (dp - delta) * scale;
				double *dkj = dk + RK(j, hk), *dvj = dv + RK(j, hk);
				for (int32_t e = 0; e < D; e++) {
					dqi[e] += ds * kj[e];
					dkj[e] += ds * qi[e];
					dvj[e] += p[j] * gi[e];
				}
			}
		}
	}
#undef RQ
#undef RK
	free(p);
	return SL_OK;
}
