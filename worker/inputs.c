/* sluice worker: deterministic inputs. Each value is a hash of its
 * coordinates, so a rank generates exactly its shard and the checker the full
 * sequence, without any process holding the whole batch. */

#include "sluice/rng.h"
#include "worker.h"

double worker_input_value(uint64_t seed, int32_t seq, int t, int64_t pos, int32_t h, int32_t e)
{
	uint64_t x = sl_mix64(seed);
	x = sl_mix64(x ^ (uint64_t)(uint32_t)seq);
	x = sl_mix64(x ^ ((uint64_t)(unsigned)t << 32) ^ (uint64_t)pos);
	x = sl_mix64(x ^ ((uint64_t)(uint32_t)h << 32) ^ (uint64_t)(uint32_t)e);
	/* Top 8 bits: k/128 for k in [-128, 127], exact in bf16 and fp32. */
	return (double)((int)(x >> 56) - 128) / 128.0;
}

void worker_inputs_fill(const worker_group_work_t *w, uint64_t seed, double *q, double *k,
                        double *v, double *dout)
{
	const int32_t H = w->heads, KH = w->kv_heads, D = w->head_dim;
	for (int32_t si = 0; si < w->nseqs; si++) {
		const worker_seq_shard_t *s = &w->seqs[si];
		for (int64_t j = 0; j < s->local_len; j++) {
			int64_t pos = worker_shard_pos(s, w->d, w->ring_pos, j);
			int64_t row = s->local_off + j;
			for (int32_t h = 0; h < H; h++)
				for (int32_t e = 0; e < D; e++) {
					size_t i = ((size_t)row * (size_t)H + (size_t)h) * (size_t)D + (size_t)e;
					q[i] = worker_input_value(seed, s->seq, WORKER_T_Q, pos, h, e);
					dout[i] = worker_input_value(seed, s->seq, WORKER_T_DO, pos, h, e);
				}
			for (int32_t h = 0; h < KH; h++)
				for (int32_t e = 0; e < D; e++) {
					size_t i = ((size_t)row * (size_t)KH + (size_t)h) * (size_t)D + (size_t)e;
					k[i] = worker_input_value(seed, s->seq, WORKER_T_K, pos, h, e);
					v[i] = worker_input_value(seed, s->seq, WORKER_T_V, pos, h, e);
				}
		}
	}
}

