/* Tests of the binary trace readers: Megatron .idx and NumPy .npy, built
 * byte by byte here (valid, truncated, padded, damaged headers and values). */
#include "trace_test_util.h"

typedef struct bbuf {
	unsigned char *b;
	size_t n, cap;
} bbuf_t;

static void bb_put(bbuf_t *bb, const void *p, size_t n)
{
	if (bb->n + n > bb->cap) {
		bb->cap = (bb->n + n) * 2 + 64;
		bb->b = realloc(bb->b, bb->cap);
		assert_non_null(bb->b);
	}
	memcpy(bb->b + bb->n, p, n);
	bb->n += n;
}

/* Appends v as a size-byte integer, little- or big-endian. */
static void bb_int(bbuf_t *bb, uint64_t v, size_t size, int big)
{
	unsigned char t[8];
	size_t i;

	for (i = 0; i < size; i++)
		t[big ? size - 1 - i : i] = (unsigned char)(v >> (8 * i));
	bb_put(bb, t, size);
}

static void bb_free(bbuf_t *bb)
{
	free(bb->b);
	memset(bb, 0, sizeof(*bb));
}

/* ---- Megatron .idx ---- */

/* An index as Megatron's _IndexWriter writes it: pointers are the running
 * byte offsets of the sequences for a dtype of size 4 (code 4, int32). */
static bbuf_t make_idx(const int32_t *len, size_t nseq, const int64_t *doc, size_t ndoc,
                       uint64_t version, int code)
{
	bbuf_t bb = {0};
	uint64_t ptr = 0;
	size_t i;

	bb_put(&bb, "MMIDIDX\0\0", 9);
	bb_int(&bb, version, 8, 0);
	bb_int(&bb, (uint64_t)code, 1, 0);
	bb_int(&bb, nseq, 8, 0);
	bb_int(&bb, ndoc, 8, 0);
	for (i = 0; i < nseq; i++)
		bb_int(&bb, (uint32_t)len[i], 4, 0);
	for (i = 0; i < nseq; i++) {
		bb_int(&bb, ptr, 8, 0);
		ptr += (uint64_t)(len[i] > 0 ? len[i] : 0) * 4;
	}
	for (i = 0; i < ndoc; i++)
		bb_int(&bb, (uint64_t)doc[i], 8, 0);
	return bb;
}

static const int32_t idx_len[] = {3, 4, 5, 6, 7};
static const int64_t idx_doc[] = {0, 2, 3, 5};
static const int64_t idx_want[] = {7, 5, 13};
/* 34 + 5 * 12 + 4 * 8 */
#define IDX_SIZE 126

static void test_idx_valid(void **state)
{
	sl_trace_opts_t forced = {.kind = SL_TRACE_MEGATRON};
	bbuf_t bb = make_idx(idx_len, 5, idx_doc, 4, 1, 4);
	const char *p;

	(void)state;
	assert_int_equal(bb.n, IDX_SIZE);
	tt_expect_lengths(tt_write("ok.idx", bb.b, bb.n), NULL, idx_want, 3);
	tt_expect_lengths(tt_write("ok_noext", bb.b, bb.n), NULL, idx_want, 3);
	tt_expect_lengths(tt_write("ok.bin", bb.b, bb.n), &forced, idx_want, 3);
	tt_expect_lengths(tt_write_gz("ok.idx.gz", bb.b, bb.n), NULL, idx_want, 3);
	/* multimodal indexes end with one mode byte per sequence */
	bb_put(&bb, "\0\1\0\1\0", 5);
	tt_expect_lengths(tt_write("mm.idx", bb.b, bb.n), NULL, idx_want, 3);
	tt_expect_lengths(tt_write_gz("mm.idx.gz", bb.b, bb.n), NULL, idx_want, 3);
	bb_free(&bb);
	/* zero-length sequences are fine inside a non-empty document */
	{
		static const int32_t len[] = {0, 4, 0};
		static const int64_t doc[] = {0, 2, 3};

		bb = make_idx(len, 3, doc, 3, 1, 8);
		p = tt_write("zero_seq.idx", bb.b, bb.n);
		bb_free(&bb);
		/* document 1 (only sequence 2) is empty: rejected, lengths must be >= 1 */
		tt_expect_error(p, NULL, SL_ERANGE, "document 1 (sequences 2..3) has no tokens",
		                NULL);
	}
	{
		static const int32_t len[] = {0, 4, 2};
		static const int64_t doc[] = {0, 2, 3};
		static const int64_t want[] = {4, 2};

		bb = make_idx(len, 3, doc, 3, 1, 8);
		tt_expect_lengths(tt_write("zero_seq2.idx", bb.b, bb.n), NULL, want, 2);
		bb_free(&bb);
	}
}

static void test_idx_size(void **state)
{
	bbuf_t bb = make_idx(idx_len, 5, idx_doc, 4, 1, 4);
	const char *p;

	(void)state;
	p = tt_write("trunc.idx", bb.b, bb.n - 4);
	tt_expect_error(p, NULL, SL_EFORMAT,
	                "trunc.idx: file is 122 bytes, header says 126 (truncated?)", NULL);
	p = tt_write("head.idx", bb.b, 20);
	tt_expect_error(p, NULL, SL_EFORMAT,
	                "head.idx: file is 20 bytes, shorter than the 34-byte .idx header", NULL);
	p = tt_write_gz("trunc.idx.gz", bb.b, bb.n - 4);
	tt_expect_error(
	    p, NULL, SL_EFORMAT,
	    "trunc.idx.gz: decompressed data is 122 bytes, header says 126 (truncated?)", NULL);
	bb_put(&bb, "xyz", 3);
	p = tt_write("trail.idx", bb.b, bb.n);
	tt_expect_error(p, NULL, SL_EFORMAT,
	                "trail.idx: file is 129 bytes, header says 126 (trailing data?)", NULL);
	p = tt_write_gz("trail.idx.gz", bb.b, bb.n);
	tt_expect_error(p, NULL, SL_EFORMAT, "trail.idx.gz: decompressed data is 129 bytes",
	                "header says 126 (or 131 with sequence modes)", NULL);
	/* a header claiming 2^40 sequences: reported, not allocated */
	bb.b[18 + 5] = 1;
	p = tt_write("huge.idx", bb.b, bb.n);
	tt_expect_error(p, NULL, SL_EFORMAT,
	                "huge.idx: file is 129 bytes, header says 13194139533438", NULL);
	/* in a stream of unknown size the default --max-seqs refuses it first */
	p = tt_write_gz("huge.idx.gz", bb.b, bb.n);
	tt_expect_error(p, NULL, SL_ERANGE,
	                "huge.idx.gz: the header declares 1099511627781 sequences, more than "
	                "100000000 (limit --max-seqs)",
	                NULL);
	bb_free(&bb);
}

static void test_idx_header(void **state)
{
	bbuf_t bb;
	const char *p;

	(void)state;
	bb = make_idx(idx_len, 5, idx_doc, 4, 1, 4);
	bb.b[0] = 'X';
	p = tt_write("badmagic.idx", bb.b, bb.n);
	tt_expect_error(p, NULL, SL_EFORMAT, "badmagic.idx: byte 0: bad magic 'XMIDIDX\\x00\\x00'",
	                NULL);
	bb_free(&bb);
	bb = make_idx(idx_len, 5, idx_doc, 4, 2, 4);
	p = tt_write("v2.idx", bb.b, bb.n);
	tt_expect_error(p, NULL, SL_EFORMAT,
	                "v2.idx: byte 9: version 2 is not supported (expected 1)", NULL);
	bb_free(&bb);
	bb = make_idx(idx_len, 5, idx_doc, 4, 1, 9);
	p = tt_write("dtype.idx", bb.b, bb.n);
	tt_expect_error(p, NULL, SL_EFORMAT, "dtype.idx: byte 17: unknown token dtype code 9",
	                NULL);
	bb_free(&bb);
	bb = make_idx(idx_len, 5, idx_doc, 0, 1, 4);
	p = tt_write("nodoc.idx", bb.b, bb.n);
	tt_expect_error(p, NULL, SL_EFORMAT, "nodoc.idx: byte 26: document index count is 0", NULL);
	bb_free(&bb);
	{
		static const int64_t doc[] = {0};

		bb = make_idx(NULL, 0, doc, 1, 1, 4);
		p = tt_write("empty.idx", bb.b, bb.n);
		tt_expect_error(p, NULL, SL_EFORMAT, "empty.idx: no lengths", NULL);
		bb_free(&bb);
	}
	/* a text file forced to megatron */
	{
		sl_trace_opts_t forced = {.kind = SL_TRACE_MEGATRON};
		p = tt_write_str("text.idx", "12\n13\n");
		tt_expect_error(p, &forced, SL_EFORMAT, "text.idx: byte 0: bad magic", NULL);
	}
}

static void test_idx_indices(void **state)
{
	bbuf_t bb;
	const char *p;

	(void)state;
	{
		static const int64_t doc[] = {0, 3, 2, 5};
		bb = make_idx(idx_len, 5, doc, 4, 1, 4);
		p = tt_write("mono.idx", bb.b, bb.n);
		/* 34 + 60 + 2 * 8 = byte 110 */
		tt_expect_error(
		    p, NULL, SL_EFORMAT,
		    "mono.idx: byte 110: document index 2 is 2, below the previous 3 (not "
		    "monotone)",
		    NULL);
		bb_free(&bb);
	}
	{
		static const int64_t doc[] = {1, 2, 3, 5};
		bb = make_idx(idx_len, 5, doc, 4, 1, 4);
		p = tt_write("first.idx", bb.b, bb.n);
		tt_expect_error(p, NULL, SL_EFORMAT,
		                "first.idx: byte 94: document index 0 is 1 (expected 0)", NULL);
		bb_free(&bb);
	}
	{
		static const int64_t doc[] = {0, 2, 9, 5};
		bb = make_idx(idx_len, 5, doc, 4, 1, 4);
		p = tt_write("beyond.idx", bb.b, bb.n);
		tt_expect_error(
		    p, NULL, SL_EFORMAT,
		    "beyond.idx: byte 110: document index 2 is 9, beyond the sequence count 5",
		    NULL);
		bb_free(&bb);
	}
	{
		static const int64_t doc[] = {0, 2, 3, 4};
		bb = make_idx(idx_len, 5, doc, 4, 1, 4);
		p = tt_write("last.idx", bb.b, bb.n);
		tt_expect_error(
		    p, NULL, SL_EFORMAT,
		    "last.idx: byte 118: the last document index is 4 but there are 5 sequences",
		    NULL);
		bb_free(&bb);
	}
	{
		static const int64_t doc[] = {0, 2, 2, 5};
		bb = make_idx(idx_len, 5, doc, 4, 1, 4);
		p = tt_write("emptydoc.idx", bb.b, bb.n);
		tt_expect_error(p, NULL, SL_ERANGE,
		                "emptydoc.idx: byte 110: document 1 (sequences 2..2) has no tokens",
		                NULL);
		bb_free(&bb);
	}
	{
		static const int32_t len[] = {3, -4, 5, 6, 7};
		bb = make_idx(len, 5, idx_doc, 4, 1, 4);
		p = tt_write("neglen.idx", bb.b, bb.n);
		tt_expect_error(p, NULL, SL_EFORMAT,
		                "neglen.idx: byte 38: sequence 1 has length -4 (must be >= 0)",
		                NULL);
		bb_free(&bb);
	}
	/* pointers must not go backwards: pointer 3 at byte 34 + 20 + 24 = 78 */
	bb = make_idx(idx_len, 5, idx_doc, 4, 1, 4);
	bb.b[78] = 0;
	p = tt_write("ptr.idx", bb.b, bb.n);
	tt_expect_error(p, NULL, SL_EFORMAT,
	                "ptr.idx: byte 78: sequence pointer 3 is 0, below the previous", NULL);
	bb_free(&bb);
	/* a document longer than SL_MAX_SEQ_LEN (513 sequences of 2^31 - 1) */
	{
		int32_t len[513];
		int64_t doc[2] = {0, 513};
		size_t i;

		for (i = 0; i < 513; i++)
			len[i] = INT32_MAX;
		bb = make_idx(len, 513, doc, 2, 1, 4);
		p = tt_write("long.idx", bb.b, bb.n);
		tt_expect_error(p, NULL, SL_ERANGE, "long.idx: byte",
		                "document 0 is longer than the maximum", NULL);
		bb_free(&bb);
		/* 512 of them fit */
		doc[1] = 512;
		bb = make_idx(len, 512, doc, 2, 1, 4);
		{
			int64_t want = 512 * (int64_t)INT32_MAX;
			tt_expect_lengths(tt_write("long2.idx", bb.b, bb.n), NULL, &want, 1);
		}
		bb_free(&bb);
	}
}

/* ---- NumPy .npy ---- */

/* A .npy file as numpy.save writes it: magic, version, header length, the
 * dict padded with blanks to a 64-byte boundary and ended by '\n'. */
static bbuf_t make_npy(int major, const char *dict, const void *data, size_t nbytes)
{
	bbuf_t bb = {0};
	size_t pre = major == 1 ? 10 : 12, hl = strlen(dict) + 1;
	unsigned char v[2] = {(unsigned char)major, 0};

	while ((pre + hl) % 64 != 0)
		hl++;
	bb_put(&bb, "\x93NUMPY", 6);
	bb_put(&bb, v, 2);
	bb_int(&bb, hl, major == 1 ? 2 : 4, 0);
	bb_put(&bb, dict, strlen(dict));
	while (bb.n < pre + hl - 1)
		bb_put(&bb, " ", 1);
	bb_put(&bb, "\n", 1);
	if (nbytes)
		bb_put(&bb, data, nbytes);
	return bb;
}

/* Encodes n values as size-byte integers. */
static bbuf_t npy_data(const int64_t *v, size_t n, size_t size, int big)
{
	bbuf_t bb = {0};
	size_t i;

	for (i = 0; i < n; i++)
		bb_int(&bb, (uint64_t)v[i], size, big);
	return bb;
}

static void test_npy_dtypes(void **state)
{
	static const struct {
		const char *descr;
		size_t size;
		int big;
	} dt[] = {
	    {"<i1", 1, 0}, {"<i2", 2, 0}, {"<i4", 4, 0}, {"<i8", 8, 0}, {"<u1", 1, 0},
	    {"<u2", 2, 0}, {"<u4", 4, 0}, {"<u8", 8, 0}, {"|i1", 1, 0}, {"|u1", 1, 0},
	    {">i2", 2, 1}, {">i4", 4, 1}, {">i8", 8, 1}, {">u2", 2, 1}, {">u4", 4, 1},
	    {">u8", 8, 1}, {">u1", 1, 0},
	};
	static const int64_t all[] = {
	    1, 2, 100, 127, 300, 32767, 70000, 2147483647, 1099511627776LL};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(dt) / sizeof(dt[0]); i++) {
		/* as many values as fit the signed range of the item size */
		size_t n = dt[i].size == 1 ? 4 : dt[i].size == 2 ? 6 : dt[i].size == 4 ? 8 : 9;
		bbuf_t d = npy_data(all, n, dt[i].size, dt[i].big), f;
		char dict[128], name[64];

		snprintf(dict, sizeof(dict),
		         "{'descr': '%s', 'fortran_order': False, 'shape': (%zu,), }", dt[i].descr,
		         n);
		f = make_npy(1, dict, d.b, d.n);
		snprintf(name, sizeof(name), "dt%zu.npy", i);
		tt_expect_lengths(tt_write(name, f.b, f.n), NULL, all, n);
		snprintf(name, sizeof(name), "dt%zu_noext", i);
		tt_expect_lengths(tt_write(name, f.b, f.n), NULL, all, n);
		snprintf(name, sizeof(name), "dt%zu.npy.gz", i);
		tt_expect_lengths(tt_write_gz(name, f.b, f.n), NULL, all, n);
		bb_free(&d);
		bb_free(&f);
	}
}

static void test_npy_headers(void **state)
{
	static const int64_t v[] = {5, 6, 7};
	static const char *const dicts[] = {
	    "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
	    "{\"shape\": (3,), \"descr\": \"<i8\", \"fortran_order\": False}",
	    "{'descr':'<i8','fortran_order':False,'shape':(3L,)}",
	    /* the same memory layout for a 1-D array */
	    "{'descr': '<i8', 'fortran_order': True, 'shape': (3 , ) }",
	};
	bbuf_t d = npy_data(v, 3, 8, 0);
	size_t i;
	int major;

	(void)state;
	for (major = 1; major <= 3; major++) {
		for (i = 0; i < sizeof(dicts) / sizeof(dicts[0]); i++) {
			bbuf_t f = make_npy(major, dicts[i], d.b, d.n);
			char name[64];

			snprintf(name, sizeof(name), "h%d_%zu.npy", major, i);
			tt_expect_lengths(tt_write(name, f.b, f.n), NULL, v, 3);
			bb_free(&f);
		}
	}
	bb_free(&d);
}

/* Writes a v1 .npy of n int64 values with the given dict; returns the path. */
static const char *npy_file(const char *name, const char *dict, const int64_t *v, size_t n)
{
	bbuf_t d = npy_data(v, n, 8, 0), f = make_npy(1, dict, d.b, d.n);
	const char *p = tt_write(name, f.b, f.n);

	bb_free(&d);
	bb_free(&f);
	return p;
}

static void test_npy_errors(void **state)
{
	static const int64_t v[] = {5, 6, 7, 8, 9, 10};
	static const char ok[] = "{'descr': '<i8', 'fortran_order': False, 'shape': (6,), }";
	bbuf_t d = npy_data(v, 6, 8, 0), f = make_npy(1, ok, d.b, d.n);
	const char *p;

	(void)state;
	/* 128-byte header (numpy pads to 64-byte multiples) + 48 data bytes */
	assert_int_equal(f.n, 176);
	p = tt_write("trunc.npy", f.b, f.n - 3);
	tt_expect_error(p, NULL, SL_EFORMAT,
	                "trunc.npy: file is 173 bytes, header says 176 (truncated?)", NULL);
	p = tt_write_gz("trunc.npy.gz", f.b, f.n - 3);
	tt_expect_error(
	    p, NULL, SL_EFORMAT,
	    "trunc.npy.gz: decompressed data is 173 bytes, header says 176 (truncated?)", NULL);
	p = tt_write("hdr.npy", f.b, 40);
	tt_expect_error(p, NULL, SL_EFORMAT,
	                "hdr.npy: file is 40 bytes, header says its text alone ends at byte 128",
	                NULL);
	p = tt_write("pre.npy", f.b, 7);
	tt_expect_error(p, NULL, SL_EFORMAT,
	                "pre.npy: file is 7 bytes, shorter than the .npy preamble", NULL);
	bb_put(&f, "\0\0", 2);
	p = tt_write("trail.npy", f.b, f.n);
	tt_expect_error(p, NULL, SL_EFORMAT,
	                "trail.npy: file is 178 bytes, header says 176 (trailing data?)", NULL);
	p = tt_write_gz("trail.npy.gz", f.b, f.n);
	tt_expect_error(
	    p, NULL, SL_EFORMAT,
	    "trail.npy.gz: decompressed data is 178 bytes, header says 176 (trailing data?)", NULL);
	f.b[1] = 'X';
	p = tt_write("magic.npy", f.b, f.n);
	tt_expect_error(p, NULL, SL_EFORMAT, "magic.npy: byte 0: bad magic '\\x93XUMPY'", NULL);
	f.b[1] = 'N';
	f.b[6] = 4;
	p = tt_write("v4.npy", f.b, f.n);
	tt_expect_error(p, NULL, SL_EFORMAT, "v4.npy: byte 6: .npy version 4.0 is not supported",
	                NULL);
	bb_free(&f);
	bb_free(&d);

	p = npy_file("2d.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3), }", v, 6);
	tt_expect_error(p, NULL, SL_EFORMAT,
	                "2d.npy: shape (2, 3) has 2 dimensions (expected a 1-D array)", NULL);
	p = npy_file("0d.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (), }", v, 1);
	tt_expect_error(p, NULL, SL_EFORMAT, "0d.npy: shape () has 0 dimensions", NULL);
	p = npy_file("f8.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }", v, 6);
	tt_expect_error(p, NULL, SL_EFORMAT, "f8.npy: dtype '<f8' is not supported",
	                "astype('<i8')", NULL);
	p = npy_file("pipe.npy", "{'descr': '|i8', 'fortran_order': False, 'shape': (6,), }", v, 6);
	tt_expect_error(p, NULL, SL_EFORMAT, "pipe.npy: dtype '|i8' has no byte order", NULL);
	p = npy_file("i3.npy", "{'descr': '<i3', 'fortran_order': False, 'shape': (6,), }", v, 6);
	tt_expect_error(p, NULL, SL_EFORMAT, "i3.npy: dtype '<i3' is not supported", NULL);
	p = npy_file("key.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (6,), 'foo': 1}",
	             v, 6);
	tt_expect_error(p, NULL, SL_EFORMAT, "key.npy: byte", "unexpected or repeated key 'foo'",
	                NULL);
	p = npy_file("rep.npy",
	             "{'descr': '<i8', 'descr': '<i8', 'fortran_order': False, "
	             "'shape': (6,)}",
	             v, 6);
	tt_expect_error(p, NULL, SL_EFORMAT, "unexpected or repeated key 'descr'", NULL);
	p = npy_file("miss.npy", "{'descr': '<i8', 'fortran_order': False}", v, 6);
	tt_expect_error(p, NULL, SL_EFORMAT, "miss.npy: byte", "lacks one of", NULL);
	p = npy_file("comma.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (6)}", v, 6);
	tt_expect_error(p, NULL, SL_EFORMAT, "needs a trailing comma", NULL);
	p = npy_file("struct.npy",
	             "{'descr': [('a', '<i8')], 'fortran_order': False, 'shape': (6,)}", v, 6);
	tt_expect_error(p, NULL, SL_EFORMAT, "structured dtypes are not supported", NULL);
	p = npy_file("fo.npy", "{'descr': '<i8', 'fortran_order': 0, 'shape': (6,)}", v, 6);
	tt_expect_error(p, NULL, SL_EFORMAT, "fortran_order must be True or False", NULL);
	/* byte offset of the bad token: 10 + strlen("{'descr': '<i8', 'fortran_order': False,
	 * 'shape': (6,)") */
	p = npy_file("junk.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (6,)} x", v, 6);
	tt_expect_error(p, NULL, SL_EFORMAT, "junk.npy: byte 66: bad .npy header: unexpected text",
	                NULL);
	p = npy_file("zero.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (0,), }", v, 0);
	tt_expect_error(p, NULL, SL_EFORMAT, "zero.npy: no lengths", NULL);
}

static void test_npy_values(void **state)
{
	const char *p;

	(void)state;
	{
		static const int64_t v[] = {5, 6, 0, 8};
		p = npy_file("zero.npy",
		             "{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }", v, 4);
		/* data starts at byte 128: element 2 at 144 */
		tt_expect_error(p, NULL, SL_ERANGE, "zero.npy: byte 144: element 2 is 0", NULL);
	}
	{
		static const int64_t v[] = {5, -5};
		bbuf_t d = npy_data(v, 2, 2, 0);
		bbuf_t f = make_npy(1, "{'descr': '<i2', 'fortran_order': False, 'shape': (2,), }",
		                    d.b, d.n);

		p = tt_write("neg.npy", f.b, f.n);
		tt_expect_error(p, NULL, SL_ERANGE, "neg.npy: byte 130: element 1 is -5", NULL);
		bb_free(&d);
		bb_free(&f);
	}
	{
		static const int64_t v[] = {1099511627777LL};
		bbuf_t d = npy_data(v, 1, 8, 0);
		bbuf_t f = make_npy(1, "{'descr': '<u8', 'fortran_order': False, 'shape': (1,), }",
		                    d.b, d.n);

		p = tt_write("big.npy", f.b, f.n);
		tt_expect_error(p, NULL, SL_ERANGE,
		                "big.npy: byte 128: element 0 is 1099511627777, above the maximum",
		                NULL);
		bb_free(&d);
		bb_free(&f);
	}
	{
		/* u8 with the top bit set must not be read as negative */
		static const int64_t v[] = {-1};
		bbuf_t d = npy_data(v, 1, 8, 0);
		bbuf_t f = make_npy(1, "{'descr': '<u8', 'fortran_order': False, 'shape': (1,), }",
		                    d.b, d.n);

		p = tt_write("top.npy", f.b, f.n);
		tt_expect_error(p, NULL, SL_ERANGE,
		                "top.npy: byte 128: element 0 is 18446744073709551615", NULL);
		bb_free(&d);
		bb_free(&f);
	}
	{
		/* big-endian 0x0100 is 256, not 1 */
		static const int64_t want[] = {256};
		bbuf_t f = make_npy(1, "{'descr': '>u2', 'fortran_order': False, 'shape': (1,), }",
		                    "\x01\x00", 2);

		tt_expect_lengths(tt_write("be.npy", f.b, f.n), NULL, want, 1);
		bb_free(&f);
	}
}

/* Headers that declare more than the limits are refused before anything
 * is allocated or read, with the default limits too. */
static void test_declared_limits(void **state)
{
	sl_trace_opts_t two = {.max_seqs = 2};
	sl_trace_opts_t small = {.max_bytes = 100};
	bbuf_t bb;
	const char *p;

	(void)state;
	/* 4 documents of 5 sequences: 5 sequences are over a limit of 2 */
	bb = make_idx(idx_len, 5, idx_doc, 4, 1, 4);
	p = tt_write("lim.idx", bb.b, bb.n);
	tt_expect_error(p, &two, SL_ERANGE,
	                "lim.idx: the header declares 5 sequences, more than 2 (limit --max-seqs)",
	                NULL);
	tt_expect_error(p, &small, SL_ERANGE, "lim.idx: more than 100 bytes (limit --max-bytes)",
	                NULL);
	/* a stream whose header claims 1000 sequences (12 KB) fits in 100 bytes
	 * of real data, but not in a limit of 1000 bytes */
	bb.b[18] = 0xe8;
	bb.b[19] = 0x03;
	p = tt_write_gz("lim.idx.gz", bb.b, bb.n);
	small.max_bytes = 1000;
	tt_expect_error(p, &small, SL_ERANGE,
	                "lim.idx.gz: the header declares 12066 bytes of data, more than 1000 "
	                "(limit --max-bytes)",
	                NULL);
	bb_free(&bb);
	{
		static const int32_t v[3] = {1, 2, 3};

		bb = make_npy(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", v,
		              sizeof(v));
		p = tt_write("lim.npy", bb.b, bb.n);
		tt_expect_error(p, &two, SL_ERANGE,
		                "lim.npy: the header declares 3 elements, more than 2 (limit "
		                "--max-seqs)",
		                NULL);
		bb_free(&bb);
		bb = make_npy(1,
		              "{'descr': '<i8', 'fortran_order': False, 'shape': (200000000,), }",
		              NULL, 0);
		p = tt_write_gz("huge.npy.gz", bb.b, bb.n);
		tt_expect_error(p, NULL, SL_ERANGE,
		                "huge.npy.gz: the header declares 200000000 elements, more than "
		                "100000000 (limit --max-seqs)",
		                NULL);
		bb_free(&bb);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_idx_valid),  cmocka_unit_test(test_idx_size),
	    cmocka_unit_test(test_idx_header), cmocka_unit_test(test_idx_indices),
	    cmocka_unit_test(test_npy_dtypes), cmocka_unit_test(test_npy_headers),
	    cmocka_unit_test(test_npy_errors), cmocka_unit_test(test_npy_values),
	    cmocka_unit_test(test_declared_limits),
	};
	return cmocka_run_group_tests(tests, tt_setup, tt_teardown);
}
