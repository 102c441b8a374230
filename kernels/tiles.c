/* sluice kernels: tile tables and segment checks (host side, no CUDA calls). */
#include <stdlib.h>

#include "kern.h"
#include "kern_math.h"

typedef struct tile_key {
	int64_t work; /* larger first */
	kern_tile_t t;
} tile_key_t;

static int tile_key_cmp(const void *a, const void *b)
{
	const tile_key_t *x = a, *y = b;
	if (x->work != y->work)
		return x->work > y->work ? -1 : 1;
	if (x->t.seg != y->t.seg)
		return x->t.seg < y->t.seg ? -1 : 1;
	return x->t.start < y->t.start ? -1 : (x->t.start > y->t.start);
}

/* Heaviest tiles first so the last wave of blocks is made of short ones
 * (the longest-processing-time rule); ties break by (seg, start), so the
 * table is deterministic. */
sl_err kern_tiles_build(const kern_seg_t *segs, int32_t nseg, int32_t block, char kind,
                        kern_tile_t **out, int32_t *ntiles)
{
	int64_t n = 0, k = 0;
	tile_key_t *keys;
	*out = NULL;
	*ntiles = 0;
	if (block <= 0 || (kind != 'q' && kind != 'k'))
		return sl_seterr(SL_EINVAL, "%s:%d: bad tile request (block %d, kind '%c')",
		                 __FILE__, __LINE__, (int)block, kind);
	for (int32_t i = 0; i < nseg; i++)
		n += (segs[i].len + block - 1) / block;
	if (n > INT32_MAX)
		return sl_seterr(SL_ERANGE, "%s:%d: %lld tiles exceed the grid limit", __FILE__,
		                 __LINE__, (long long)n);
	if (n == 0)
		return SL_OK;
	keys = malloc((size_t)n * sizeof(*keys));
	*out = malloc((size_t)n * sizeof(**out));
	if (keys == NULL || *out == NULL) {
		free(keys);
		free(*out);
		*out = NULL;
		return sl_seterr(SL_ENOMEM, "%s:%d: tile table of %lld tiles", __FILE__, __LINE__,
		                 (long long)n);
	}
	for (int32_t i = 0; i < nseg; i++) {
		for (int32_t s = 0; s < segs[i].len; s += block) {
			int32_t rows = segs[i].len - s < block ? segs[i].len - s : block;
			keys[k].t.seg = i;
			keys[k].t.start = s;
			/* causal work of a query tile ~ keys before its end; of a key
			 * tile ~ queries after its start */
			keys[k].work = kind == 'q' ? (int64_t)(s + rows) * rows
			                           : (int64_t)(segs[i].len - s) * rows;
			k++;
		}
	}
	qsort(keys, (size_t)n, sizeof(*keys), tile_key_cmp);
	for (int64_t i = 0; i < n; i++)
		(*out)[i] = keys[i].t;
	free(keys);
	*ntiles = (int32_t)n;
	return SL_OK;
}

sl_err kern_segs_check(const kern_seg_t *segs, int32_t nseg, int32_t d, int64_t ntok)
{
	int64_t off = 0;
	if (d < 1)
		return sl_seterr(SL_EINVAL, "%s:%d: ring of %d ranks", __FILE__, __LINE__, (int)d);
	for (int32_t i = 0; i < nseg; i++) {
		const kern_seg_t *s = &segs[i];
		int64_t padded = d == 1 ? s->seqlen : (int64_t)s->chunk * 2 * d;
		if (s->off != off)
			return sl_seterr(SL_EINVAL,
			                 "%s:%d: segment %d starts at %lld, expected %lld (packed)",
			                 __FILE__, __LINE__, (int)i, (long long)s->off,
			                 (long long)off);
		if (s->seqlen <= 0 || s->seqlen > INT32_MAX / 2)
			return sl_seterr(SL_ERANGE,
			                 "%s:%d: segment %d: sequence length %lld outside [1, %d]",
			                 __FILE__, __LINE__, (int)i, (long long)s->seqlen,
			                 INT32_MAX / 2);
		if (d == 1 && (s->len != s->seqlen || s->chunk != s->len))
			return sl_seterr(SL_EINVAL,
			                 "%s:%d: segment %d: one rank must hold the whole sequence "
			                 "(len %d, chunk %d, s %lld)",
			                 __FILE__, __LINE__, (int)i, (int)s->len, (int)s->chunk,
			                 (long long)s->seqlen);
		if (d > 1 && (s->chunk <= 0 || s->len != 2 * s->chunk || padded < s->seqlen ||
		              padded - s->seqlen >= 2 * d))
			return sl_seterr(SL_EINVAL,
			                 "%s:%d: segment %d: zigzag shard of %lld tokens on %d ranks "
			                 "needs chunk ceil(s/2d) and len 2*chunk (len %d, chunk %d)",
			                 __FILE__, __LINE__, (int)i, (long long)s->seqlen, (int)d,
			                 (int)s->len, (int)s->chunk);
		off += s->len;
	}
	if (off != ntok)
		return sl_seterr(SL_EINVAL, "%s:%d: segments hold %lld tokens, buffers %lld",
		                 __FILE__, __LINE__, (long long)off, (long long)ntok);
	return SL_OK;
}
