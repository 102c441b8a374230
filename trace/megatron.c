/* sluice trace: Megatron-LM indexed dataset index (.idx) reader.
 *
 * Layout as written by Megatron-LM's _IndexWriter
 * (megatron/core/datasets/indexed_dataset.py), all little-endian:
 *   offset  0: magic "MMIDIDX\0\0" (9 bytes)
 *   offset  9: u64 version, always 1
 *   offset 17: u8 dtype code of the tokens in the .bin (1..8)
 *   offset 18: u64 sequence count S
 *   offset 26: u64 document index count D
 *   offset 34: i32[S] sequence lengths (tokens)
 *              i64[S] sequence pointers (byte offsets into the .bin)
 *              i64[D] document indices
 *              optionally i8[S] sequence modes (multimodal datasets)
 * The builder starts the document indices with 0 and appends the running
 * sequence count at the end of each document, so there are D - 1 documents
 * and document k is sequences [idx[k], idx[k+1]); IndexedDataset asserts
 * idx[D-1] == S. A trace wants document lengths: the sum of each document's
 * sequence lengths. */
#include <stdlib.h>
#include <string.h>

#include "trace_impl.h"

#define MEGA_MAGIC "MMIDIDX\0\0"
#define MEGA_MAGIC_LEN 9
#define MEGA_HEADER 34
/* Counts above this cannot be real (and would overflow the size sums). */
#define MEGA_MAX_COUNT ((uint64_t)1 << 56)
/* Array elements decoded per read. */
#define MEGA_CHUNK 8192

static uint64_t mega_u64(const unsigned char *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static int32_t mega_i32(const unsigned char *p)
{
	uint32_t v =
	    (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	return (int32_t)v;
}

/* Reads n bytes or fails with the size error (the stream ended early). */
static sl_err mega_read(trace_src_t *src, void *dst, size_t n, uint64_t expected)
{
	size_t got;

	SL_CHECK(trace_src_read(src, dst, n, &got));
	if (got < n)
		return trace_src_size_error(src, expected);
	return SL_OK;
}

sl_err trace_read_megatron(trace_src_t *src, sl_lengths_t *out)
{
	unsigned char hdr[MEGA_HEADER];
	unsigned char *chunk = NULL;
	int32_t *seqlen = NULL;
	size_t cap = 0;
	uint64_t version, nseq, nidx, expected, i, prev_ptr = 0, prev_idx = 0, rest = 0;
	char quoted[96];
	size_t got;
	int code;
	sl_err rc = SL_OK;

	SL_CHECK(trace_src_read(src, hdr, MEGA_HEADER, &got));
	if (memcmp(hdr, MEGA_MAGIC, got < MEGA_MAGIC_LEN ? got : MEGA_MAGIC_LEN) != 0 || got == 0)
		return sl_seterr(SL_EFORMAT,
		                 "%s: byte 0: bad magic %s (expected \"MMIDIDX\\0\\0\", a Megatron "
		                 "indexed dataset .idx)",
		                 src->name,
		                 trace_quote((const char *)hdr,
		                             got < MEGA_MAGIC_LEN ? got : MEGA_MAGIC_LEN, quoted,
		                             sizeof(quoted)));
	if (got < MEGA_HEADER)
		return sl_seterr(SL_EFORMAT,
		                 "%s: file is %zu bytes, shorter than the %d-byte .idx header "
		                 "(truncated?)",
		                 src->name, got, MEGA_HEADER);
	version = mega_u64(hdr + 9);
	if (version != 1)
		return sl_seterr(SL_EFORMAT,
		                 "%s: byte 9: version %llu is not supported (expected 1)",
		                 src->name, (unsigned long long)version);
	code = hdr[17];
	if (code < 1 || code > 8)
		return sl_seterr(SL_EFORMAT,
		                 "%s: byte 17: unknown token dtype code %d (expected 1..8)",
		                 src->name, code);
	nseq = mega_u64(hdr + 18);
	nidx = mega_u64(hdr + 26);
	if (nseq > MEGA_MAX_COUNT)
		return sl_seterr(SL_EFORMAT, "%s: byte 18: sequence count %llu is implausible",
		                 src->name, (unsigned long long)nseq);
	if (nidx > MEGA_MAX_COUNT)
		return sl_seterr(SL_EFORMAT,
		                 "%s: byte 26: document index count %llu is implausible", src->name,
		                 (unsigned long long)nidx);
	if (nidx == 0)
		return sl_seterr(SL_EFORMAT,
		                 "%s: byte 26: document index count is 0 (Megatron always writes "
		                 "a leading 0)",
		                 src->name);
	expected = MEGA_HEADER + 12 * nseq + 8 * nidx;
	/* A plain file's size is known: check it before allocating anything the
	 * header asks for. Multimodal indexes carry one mode byte per sequence. */
	if (src->file_size >= 0 && (uint64_t)src->file_size != expected &&
	    (uint64_t)src->file_size != expected + nseq)
		return trace_src_size_error(src, expected);
	/* A stream's size is not known: its header must at least be within the
	 * limits. nidx - 1 documents become lengths; nseq sequence lengths are
	 * held while they are summed. */
	SL_CHECK(trace_check_declared(src, nseq > nidx - 1 ? nseq : nidx - 1, "sequences",
	                              expected));

	chunk = malloc((size_t)MEGA_CHUNK * 8);
	if (chunk == NULL)
		return sl_seterr(SL_ENOMEM, "%s: out of memory", src->name);
	/* The lengths are stored as they arrive so that a lying header in a
	 * stream of unknown size cannot make us allocate more than is read. */
	for (i = 0; i < nseq;) {
		size_t k, m = nseq - i < MEGA_CHUNK ? (size_t)(nseq - i) : MEGA_CHUNK;
		int32_t *ns;

		if (i + m > cap) {
			/* grow geometrically to hold i + m */
			cap = i + m > 2 * cap ? (size_t)(i + m) : 2 * cap;
			ns = realloc(seqlen, cap * sizeof(*seqlen));
			if (ns == NULL) {
				rc = sl_seterr(SL_ENOMEM,
				               "%s: out of memory for %llu sequence lengths",
				               src->name, (unsigned long long)nseq);
				goto out;
			}
			seqlen = ns;
		}
		rc = mega_read(src, chunk, m * 4, expected);
		if (rc != SL_OK)
			goto out;
		for (k = 0; k < m; k++) {
			int32_t v = mega_i32(chunk + 4 * k);

			if (v < 0) {
				rc = sl_seterr(
				    SL_EFORMAT,
				    "%s: byte %llu: sequence %llu has length %d (must be >= 0)",
				    src->name, (unsigned long long)(MEGA_HEADER + 4 * (i + k)),
				    (unsigned long long)(i + k), (int)v);
				goto out;
			}
			seqlen[i + k] = v;
		}
		i += m;
	}
	/* Pointers locate sequences in the .bin, which we do not read; they
	 * must still be sane (non-negative, non-decreasing). */
	for (i = 0; i < nseq;) {
		size_t k, m = nseq - i < MEGA_CHUNK ? (size_t)(nseq - i) : MEGA_CHUNK;

		rc = mega_read(src, chunk, m * 8, expected);
		if (rc != SL_OK)
			goto out;
		for (k = 0; k < m; k++) {
			uint64_t p = mega_u64(chunk + 8 * k);
			uint64_t off = MEGA_HEADER + 4 * nseq + 8 * (i + k);

			if (p > (uint64_t)INT64_MAX || p < prev_ptr) {
				rc = sl_seterr(
				    SL_EFORMAT,
				    "%s: byte %llu: sequence pointer %llu is %lld, below the "
				    "previous %llu (pointers must be non-negative and "
				    "non-decreasing)",
				    src->name, (unsigned long long)off, (unsigned long long)(i + k),
				    (long long)(int64_t)p, (unsigned long long)prev_ptr);
				goto out;
			}
			prev_ptr = p;
		}
		i += m;
	}
	for (i = 0; i < nidx;) {
		size_t k, m = nidx - i < MEGA_CHUNK ? (size_t)(nidx - i) : MEGA_CHUNK;

		rc = mega_read(src, chunk, m * 8, expected);
		if (rc != SL_OK)
			goto out;
		for (k = 0; k < m; k++) {
			uint64_t j = i + k, d = mega_u64(chunk + 8 * k), s;
			uint64_t off = MEGA_HEADER + 12 * nseq + 8 * j;
			int64_t sum = 0;

			if (j == 0) {
				if (d != 0) {
					rc = sl_seterr(
					    SL_EFORMAT,
					    "%s: byte %llu: document index 0 is %lld (expected 0)",
					    src->name, (unsigned long long)off,
					    (long long)(int64_t)d);
					goto out;
				}
				continue;
			}
			if (d > nseq) {
				rc = sl_seterr(
				    SL_EFORMAT,
				    "%s: byte %llu: document index %llu is %lld, beyond the "
				    "sequence count %llu",
				    src->name, (unsigned long long)off, (unsigned long long)j,
				    (long long)(int64_t)d, (unsigned long long)nseq);
				goto out;
			}
			if (d < prev_idx) {
				rc = sl_seterr(
				    SL_EFORMAT,
				    "%s: byte %llu: document index %llu is %llu, below the "
				    "previous %llu (not monotone)",
				    src->name, (unsigned long long)off, (unsigned long long)j,
				    (unsigned long long)d, (unsigned long long)prev_idx);
				goto out;
			}
			for (s = prev_idx; s < d && sum <= SL_MAX_SEQ_LEN; s++)
				sum += seqlen[s];
			if (sum < 1) {
				rc = sl_seterr(
				    SL_ERANGE,
				    "%s: byte %llu: document %llu (sequences %llu..%llu) has "
				    "no tokens (lengths must be >= 1)",
				    src->name, (unsigned long long)off, (unsigned long long)(j - 1),
				    (unsigned long long)prev_idx, (unsigned long long)d);
				goto out;
			}
			if (sum > SL_MAX_SEQ_LEN) {
				rc = sl_seterr(
				    SL_ERANGE,
				    "%s: byte %llu: document %llu is longer than the maximum "
				    "%lld (SL_MAX_SEQ_LEN)",
				    src->name, (unsigned long long)off, (unsigned long long)(j - 1),
				    (long long)SL_MAX_SEQ_LEN);
				goto out;
			}
			rc = trace_push(src, out, sum);
			if (rc != SL_OK)
				goto out;
			prev_idx = d;
		}
		i += m;
	}
	if (prev_idx != nseq) {
		rc = sl_seterr(SL_EFORMAT,
		               "%s: byte %llu: the last document index is %llu but there are %llu "
		               "sequences (sequences %llu.. belong to no document)",
		               src->name, (unsigned long long)(expected - 8),
		               (unsigned long long)prev_idx, (unsigned long long)nseq,
		               (unsigned long long)prev_idx);
		goto out;
	}
	/* Nothing may follow but the optional per-sequence modes. */
	rc = trace_src_drain(src, &rest);
	if (rc != SL_OK)
		goto out;
	if (rest != 0 && rest != nseq) {
		uint64_t actual = expected + rest;

		rc = sl_seterr(
		    SL_EFORMAT,
		    "%s: %s is %llu bytes, header says %llu (or %llu with sequence modes) "
		    "(trailing data?)",
		    src->name, src->gzip ? "decompressed data" : "file", (unsigned long long)actual,
		    (unsigned long long)expected, (unsigned long long)(expected + nseq));
	}
out:
	free(chunk);
	free(seqlen);
	return rc;
}
