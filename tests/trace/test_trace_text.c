/* Tests of the text and JSON Lines trace readers, plain and gzip, including
 * truncated/corrupt gzip streams, error messages and auto-detection. */
#include <fcntl.h>

#include "trace_test_util.h"

static const char text_ok[] = "# a trace\n"
                              "\n"
                              "368\n"
                              "  99  \n"
                              "\t1330\t# trailing comment\n"
                              "945\r\n"
                              "   # indented comment\n"
                              "+7\n"
                              "0001099511627776\n" /* 2^40 = SL_MAX_SEQ_LEN, leading zeros */
                              "12";                /* no final newline */
static const int64_t text_ok_want[] = {368, 99, 1330, 945, 7, 1099511627776LL, 12};
#define TEXT_OK_N (sizeof(text_ok_want) / sizeof(text_ok_want[0]))

static void test_text_plain(void **state)
{
	const char *p = tt_write("ok.txt", text_ok, strlen(text_ok));

	(void)state;
	tt_expect_lengths(p, NULL, text_ok_want, TEXT_OK_N);
	/* with a UTF-8 byte order mark */
	{
		static const int64_t want[] = {4, 5};
		p = tt_write_str("bom_noext.txt", "\xef\xbb\xbf"
		                                  "4\n5\n");
		tt_expect_lengths(p, NULL, want, 2);
		p = tt_write_str("bom2_noext", "\xef\xbb\xbf"
		                               "4\n5\n");
		tt_expect_lengths(p, NULL, want, 2);
		/* only at the very start */
		p = tt_write_str("bom3.txt", "4\n\xef\xbb\xbf"
		                             "5\n");
		tt_expect_error(p, NULL, SL_EFORMAT,
		                "bom3.txt:2: '\\xef\\xbb\\xbf5' is not a length", NULL);
	}
	/* the same without an extension, and forced */
	p = tt_write("ok_noext", text_ok, strlen(text_ok));
	tt_expect_lengths(p, NULL, text_ok_want, TEXT_OK_N);
	{
		sl_trace_opts_t o = {.kind = SL_TRACE_TEXT};
		tt_expect_lengths(p, &o, text_ok_want, TEXT_OK_N);
	}
}

static void test_text_gzip(void **state)
{
	const char *p = tt_write_gz("ok.txt.gz", text_ok, strlen(text_ok));
	const char *q;
	unsigned char *a, *b, *cat;
	size_t na, nb;

	(void)state;
	tt_expect_lengths(p, NULL, text_ok_want, TEXT_OK_N);
	/* gzip content under a misleading name is still sniffed as gzip */
	q = tt_write_gz("ok.dat", text_ok, strlen(text_ok));
	tt_expect_lengths(q, NULL, text_ok_want, TEXT_OK_N);
	/* two concatenated gzip members read as one stream (as gunzip does) */
	p = tt_write_gz("m1.gz", "5\n6\n", 4);
	q = tt_write_gz("m2.gz", "7\n", 2);
	a = tt_slurp(p, &na);
	b = tt_slurp(q, &nb);
	cat = malloc(na + nb);
	assert_non_null(cat);
	memcpy(cat, a, na);
	memcpy(cat + na, b, nb);
	p = tt_write("multi.txt.gz", cat, na + nb);
	{
		static const int64_t want[] = {5, 6, 7};
		tt_expect_lengths(p, NULL, want, 3);
	}
	free(a);
	free(b);
	free(cat);
}

/* Cutting a gzip file anywhere must give an error, never a short read. */
static void test_gzip_truncated(void **state)
{
	char text[4096];
	size_t n = 0, cut, full;
	unsigned char *gz;
	const char *p;
	int i;

	(void)state;
	for (i = 1; i <= 500; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%d\n", i * 7 % 1000 + 1);
	p = tt_write_gz("full.txt.gz", text, n);
	gz = tt_slurp(p, &full);
	/* every prefix is a truncation: shorten one file step by step */
	p = tt_write("cut.txt.gz", gz, full);
	for (cut = full - 1; cut >= 1; cut--) {
		assert_int_equal(truncate(p, (off_t)cut), 0);
		tt_expect_error(p, NULL, SL_OK, "cut.txt.gz", NULL);
	}
	/* losing only the trailer (CRC32 + size) is reported as truncation */
	p = tt_write("trailer.txt.gz", gz, full - 8);
	tt_expect_error(p, NULL, SL_EFORMAT, "trailer.txt.gz: gzip stream is truncated", NULL);
	p = tt_write("half.txt.gz", gz, full / 2);
	tt_expect_error(p, NULL, SL_EFORMAT, "half.txt.gz: gzip stream is truncated", NULL);
	free(gz);
}

/* Flipping bytes of the compressed data or trailer must give an error. */
static void test_gzip_corrupt(void **state)
{
	char text[4096];
	size_t n = 0, at, full;
	unsigned char *gz;
	const char *p;
	int i, fd;

	(void)state;
	for (i = 1; i <= 500; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%d\n", i * 13 % 997 + 1);
	p = tt_write_gz("full.txt.gz", text, n);
	gz = tt_slurp(p, &full);
	/* bytes 0..9 are the gzip header (mtime, flags, OS); from 10 on every
	 * byte is deflate data, CRC32 or length */
	p = tt_write("flip.txt.gz", gz, full);
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	for (at = 10; at < full; at++) {
		unsigned char c = gz[at] ^ 0x5a;

		assert_int_equal(pwrite(fd, &c, 1, (off_t)at), 1);
		tt_expect_error(p, NULL, SL_OK, "flip.txt.gz", NULL);
		assert_int_equal(pwrite(fd, &gz[at], 1, (off_t)at), 1);
	}
	close(fd);
	/* a flipped CRC32 byte is a data check error */
	gz[full - 6] ^= 1;
	p = tt_write("crc.txt.gz", gz, full);
	tt_expect_error(p, NULL, SL_EFORMAT, "crc.txt.gz: corrupt gzip data", "check", NULL);
	free(gz);
}

static void test_text_errors(void **state)
{
	char big[256];
	const char *p;
	int i;
	size_t n = 0;

	(void)state;
	/* "trace.txt:17: 'abc' ..." */
	for (i = 1; i <= 16; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "%d\n", i);
	snprintf(big + n, sizeof(big) - n, "abc\n18\n");
	p = tt_write_str("trace.txt", big);
	tt_expect_error(p, NULL, SL_EFORMAT,
	                "trace.txt:17: 'abc' is not a length (expected a positive integer)", NULL);

	p = tt_write_str("zero.txt", "5\n# c\n0\n");
	tt_expect_error(p, NULL, SL_ERANGE, "zero.txt:3: length '0' is not positive", NULL);
	p = tt_write_str("neg.txt", "5\n-12\n");
	tt_expect_error(p, NULL, SL_ERANGE, "neg.txt:2: length '-12' is negative", NULL);
	p = tt_write_str("over.txt", "5\n1099511627777\n");
	tt_expect_error(p, NULL, SL_ERANGE,
	                "over.txt:2: length '1099511627777' exceeds the maximum 1099511627776",
	                NULL);
	p = tt_write_str("huge.txt", "99999999999999999999999999999999\n");
	tt_expect_error(p, NULL, SL_ERANGE, "huge.txt:1: length", "exceeds the maximum", NULL);
	p = tt_write_str("two.txt", "1\n2\n12 13\n");
	tt_expect_error(p, NULL, SL_EFORMAT, "two.txt:3: '12 13' holds more than one value", NULL);
	p = tt_write_str("real.txt", "1.5\n");
	tt_expect_error(p, NULL, SL_EFORMAT, "real.txt:1: '1.5' is not a length", NULL);
	p = tt_write_str("sign.txt", "3\n+\n");
	tt_expect_error(p, NULL, SL_EFORMAT, "sign.txt:2: '+' is not a length", NULL);
	/* a NUL byte is shown escaped */
	p = tt_write("nul.txt", "7\n1\0002\n", 6);
	tt_expect_error(p, NULL, SL_EFORMAT, "nul.txt:2: '1\\x002' is not a length", NULL);
	/* gzip errors carry the line too */
	p = tt_write_gz("bad.txt.gz", "1\n2\nx\n", 6);
	tt_expect_error(p, NULL, SL_EFORMAT, "bad.txt.gz:3: 'x' is not a length", NULL);
	/* empty and comment-only traces hold no lengths */
	p = tt_write("empty.txt", "", 0);
	tt_expect_error(p, NULL, SL_EFORMAT, "empty.txt: no lengths", NULL);
	p = tt_write_str("comments.txt", "# nothing\n\n   \n# here\n");
	tt_expect_error(p, NULL, SL_EFORMAT, "comments.txt: no lengths", NULL);
	p = tt_write_gz("empty.txt.gz", "", 0);
	tt_expect_error(p, NULL, SL_EFORMAT, "empty.txt.gz: no lengths", NULL);
}

static void test_open_errors(void **state)
{
	sl_lengths_t l = {0};
	sl_trace_opts_t bad_kind = {.kind = (sl_trace_kind)99};
	sl_trace_opts_t empty_field = {.kind = SL_TRACE_JSONL, .field = ""};
	const char *p = tt_write_str("x.txt", "1\n");

	(void)state;
	tt_expect_error(tt_path("missing.txt"), NULL, SL_ENOTFOUND, "missing.txt: cannot open",
	                NULL);
	tt_expect_error(tt_dir, NULL, SL_EINVAL, "is a directory", NULL);
	assert_int_equal(sl_trace_read(NULL, NULL, &l), SL_EINVAL);
	assert_int_equal(sl_trace_read(p, NULL, NULL), SL_EINVAL);
	tt_expect_error(p, &bad_kind, SL_EINVAL, "unknown trace kind", NULL);
	tt_expect_error(p, &empty_field, SL_EINVAL, "field name is empty", NULL);
}

static void test_append(void **state)
{
	sl_lengths_t l = {0};
	const char *p = tt_write_str("a.txt", "3\n4\n");
	int i;

	(void)state;
	for (i = 0; i < 5000; i++) /* through several reallocations */
		assert_int_equal(sl_lengths_push(&l, i + 1), SL_OK);
	assert_int_equal(sl_trace_read(p, NULL, &l), SL_OK);
	assert_int_equal(l.n, 5002);
	assert_int_equal(l.v[4999], 5000);
	assert_int_equal(l.v[5000], 3);
	assert_int_equal(l.v[5001], 4);
	sl_lengths_free(&l);
	sl_lengths_free(&l); /* idempotent */
	sl_lengths_free(NULL);
}

static void test_kind_names(void **state)
{
	(void)state;
	assert_int_equal(sl_trace_kind_parse("auto"), SL_TRACE_AUTO);
	assert_int_equal(sl_trace_kind_parse("text"), SL_TRACE_TEXT);
	assert_int_equal(sl_trace_kind_parse("jsonl"), SL_TRACE_JSONL);
	assert_int_equal(sl_trace_kind_parse("megatron"), SL_TRACE_MEGATRON);
	assert_int_equal(sl_trace_kind_parse("npy"), SL_TRACE_NPY);
	assert_int_equal(sl_trace_kind_parse("csv"), -1);
	assert_int_equal(sl_trace_kind_parse(""), -1);
	assert_int_equal(sl_trace_kind_parse(NULL), -1);
	assert_string_equal(sl_trace_kind_name(SL_TRACE_MEGATRON), "megatron");
	assert_string_equal(sl_trace_kind_name((sl_trace_kind)42), "unknown");
}

static const char jsonl_ok[] = "{\"length\": 10, \"text\": \"a\"}\n"
                               "\n"
                               "# a comment line\n"
                               "  {\"length\": 20}  \r\n"
                               "{\"text\": \"b\", \"length\": 30, \"input_ids\": [1, 2]}\n";

static void test_jsonl(void **state)
{
	static const int64_t want[] = {10, 20, 30};
	static const int64_t want_ids[] = {3, 1, 4};
	static const int64_t want_tok[] = {2, 5};
	sl_trace_opts_t ids = {.field = "input_ids"};
	sl_trace_opts_t tok = {.field = "tokens"};
	const char *p;

	(void)state;
	p = tt_write_str("ok.jsonl", jsonl_ok);
	tt_expect_lengths(p, NULL, want, 3);
	p = tt_write_gz("ok.jsonl.gz", jsonl_ok, strlen(jsonl_ok));
	tt_expect_lengths(p, NULL, want, 3);
	/* sniffed from '{' without an extension, even under a comment */
	p = tt_write_str("ok_noext", jsonl_ok);
	tt_expect_lengths(p, NULL, want, 3);
	p = tt_write_gz("ok_noext.gz", jsonl_ok, strlen(jsonl_ok));
	tt_expect_lengths(p, NULL, want, 3);
	/* input_ids counts the array's elements */
	p = tt_write_str("ids.jsonl", "{\"input_ids\": [5, 6, 7]}\n{\"input_ids\": [9]}\n"
	                              "{\"input_ids\": [1,2,3,4], \"length\": 99}\n");
	tt_expect_lengths(p, &ids, want_ids, 3);
	/* a UTF-8 byte order mark before the first line is ignored */
	p = tt_write_str("bom_noext",
	                 "\xef\xbb\xbf{\"length\": 10}\n{\"length\": 20}\n{\"length\": 30}\n");
	tt_expect_lengths(p, NULL, want, 3);
	/* any field holding an array counts its elements */
	p = tt_write_str("tok.jsonl", "{\"tokens\": [\"a\", \"b\"]}\n{\"tokens\": 5}\n");
	tt_expect_lengths(p, &tok, want_tok, 2);
}

static void test_jsonl_errors(void **state)
{
	sl_trace_opts_t ids = {.field = "input_ids"};
	sl_trace_opts_t forced = {.kind = SL_TRACE_TEXT};
	const char *p;

	(void)state;
	p = tt_write_str("nofield.jsonl", "{\"length\": 1}\n{\"len\": 2}\n");
	tt_expect_error(p, NULL, SL_EFORMAT, "nofield.jsonl:2: the object has no field 'length'",
	                NULL);
	p = tt_write_str("bad.jsonl", "{\"length\": 1}\n\n{\"length\": 2,}\n");
	tt_expect_error(p, NULL, SL_EFORMAT, "bad.jsonl:3: invalid JSON", NULL);
	p = tt_write_str("trunc.jsonl", "{\"length\": 1}\n{\"length\": 2");
	tt_expect_error(p, NULL, SL_EFORMAT, "trunc.jsonl:2: invalid JSON", NULL);
	p = tt_write_str("arr.jsonl", "{\"length\": 1}\n[1, 2]\n");
	tt_expect_error(p, NULL, SL_EFORMAT, "arr.jsonl:2: the line is an array, not a JSON object",
	                NULL);
	p = tt_write_str("real.jsonl", "{\"length\": 12.5}\n");
	tt_expect_error(p, NULL, SL_EFORMAT, "real.jsonl:1: field 'length' is the real number 12.5",
	                NULL);
	p = tt_write_str("str.jsonl", "{\"length\": \"12\"}\n");
	tt_expect_error(p, NULL, SL_EFORMAT, "str.jsonl:1: field 'length' is a string", NULL);
	p = tt_write_str("zero.jsonl", "{\"length\": 3}\n{\"length\": 0}\n");
	tt_expect_error(p, NULL, SL_ERANGE, "zero.jsonl:2: field 'length' is 0", NULL);
	p = tt_write_str("neg.jsonl", "{\"length\": -4}\n");
	tt_expect_error(p, NULL, SL_ERANGE, "neg.jsonl:1: field 'length' is -4", NULL);
	p = tt_write_str("over.jsonl", "{\"length\": 1099511627777}\n");
	tt_expect_error(p, NULL, SL_ERANGE, "over.jsonl:1: field 'length' is 1099511627777, above",
	                NULL);
	p = tt_write_str("emptyids.jsonl", "{\"input_ids\": [1]}\n{\"input_ids\": []}\n");
	tt_expect_error(p, &ids, SL_ERANGE, "emptyids.jsonl:2: field 'input_ids' is an empty array",
	                NULL);
	p = tt_write_str("intids.jsonl", "{\"input_ids\": 5}\n");
	tt_expect_error(p, &ids, SL_EFORMAT,
	                "intids.jsonl:1: field 'input_ids' is an integer (expected an array", NULL);
	p = tt_write_str("dup.jsonl", "{\"length\": 5, \"length\": 6}\n");
	tt_expect_error(p, NULL, SL_EFORMAT, "dup.jsonl:1: invalid JSON", NULL);
	{
		static const char bad[] = "{\"length\": 1}\n{\"length\": 2}\n{oops}\n";
		p = tt_write_gz("bad.jsonl.gz", bad, strlen(bad));
	}
	tt_expect_error(p, NULL, SL_EFORMAT, "bad.jsonl.gz:3: invalid JSON", NULL);
	/* the kind option overrides the sniffing */
	p = tt_write_str("forced.jsonl", "{\"length\": 1}\n");
	tt_expect_error(p, &forced, SL_EFORMAT, "forced.jsonl:1: '{\"length\": 1}' is not a length",
	                NULL);
}

/* One line (2 MB) far longer than the 64 KiB read buffer. */
static void test_jsonl_long_line(void **state)
{
	const size_t n_ids = 300000;
	size_t cap = n_ids * 8 + 64, o = 0, i;
	char *buf = malloc(cap);
	int64_t want[3] = {2, (int64_t)n_ids, 1};
	sl_trace_opts_t ids = {.field = "input_ids"};
	const char *p;

	(void)state;
	assert_non_null(buf);
	o += (size_t)snprintf(buf + o, cap - o, "{\"input_ids\": [7, 8]}\n{\"input_ids\": [");
	for (i = 0; i < n_ids; i++)
		o += (size_t)snprintf(buf + o, cap - o, i ? ",%zu" : "%zu", i % 50000);
	o += (size_t)snprintf(buf + o, cap - o, "]}\n{\"input_ids\": [3]}\n");
	assert_true(o > ((size_t)1 << 20));
	p = tt_write("long.jsonl", buf, o);
	tt_expect_lengths(p, &ids, want, 3);
	p = tt_write_gz("long.jsonl.gz", buf, o);
	tt_expect_lengths(p, &ids, want, 3);
	free(buf);
}

/* Reads "-" with the given file on fd 0. */
static sl_err read_stdin_from(const char *path, const sl_trace_opts_t *opts, sl_lengths_t *l)
{
	int saved = dup(STDIN_FILENO), fd = open(path, O_RDONLY);
	sl_err rc;

	assert_true(saved >= 0 && fd >= 0);
	assert_int_equal(dup2(fd, STDIN_FILENO), STDIN_FILENO);
	close(fd);
	rc = sl_trace_read("-", opts, l);
	assert_int_equal(dup2(saved, STDIN_FILENO), STDIN_FILENO);
	close(saved);
	return rc;
}

static void test_stdin(void **state)
{
	sl_lengths_t l = {0};
	const char *p;

	(void)state;
	p = tt_write_gz("in.txt.gz", text_ok, strlen(text_ok));
	assert_int_equal(read_stdin_from(p, NULL, &l), SL_OK);
	assert_int_equal(l.n, TEXT_OK_N);
	assert_int_equal(l.v[2], 1330);
	l.n = 0;
	p = tt_write_str("in.jsonl", jsonl_ok);
	assert_int_equal(read_stdin_from(p, NULL, &l), SL_OK);
	assert_int_equal(l.n, 3);
	assert_int_equal(l.v[2], 30);
	l.n = 0;
	p = tt_write_str("in_bad.txt", "1\n2\nthree\n");
	assert_int_equal(read_stdin_from(p, NULL, &l), SL_EFORMAT);
	assert_non_null(strstr(sl_errmsg(), "<stdin>:3: 'three' is not a length"));
	assert_int_equal(l.n, 0);
	/* stdin is still usable afterwards (the reader closed only its dup) */
	assert_true(fcntl(STDIN_FILENO, F_GETFD) != -1);
	sl_lengths_free(&l);
}

/* Writes n bytes of "7\n" repeated, gzip-compressed at level 9, streamed in
 * 64 KiB pieces (a 10 MB bomb compresses to ~10 KB). */
static const char *write_sevens_gz(const char *name, size_t n)
{
	const char *path = tt_path(name);
	char chunk[65536];
	size_t i, done = 0;
	gzFile gz;

	for (i = 0; i < sizeof(chunk); i++)
		chunk[i] = (i & 1) ? '\n' : '7';
	unlink(path);
	gz = gzopen(path, "wb9");
	assert_non_null(gz);
	while (done < n) {
		size_t k = n - done < sizeof(chunk) ? n - done : sizeof(chunk);

		assert_int_equal(gzwrite(gz, chunk, (unsigned)k), (int)k);
		done += k;
	}
	assert_int_equal(gzclose(gz), Z_OK);
	return path;
}

/* A gzip bomb (10 MB of "7\n" in ~10 KB) stops at the byte or sequence
 * limit with an error naming the limit, never a partial read. */
static void test_gzip_bomb_limits(void **state)
{
	const size_t big = (size_t)10 << 20;
	const char *p = write_sevens_gz("bomb.txt.gz", big);
	sl_trace_opts_t bytes = {.max_bytes = (uint64_t)1 << 20};
	sl_trace_opts_t seqs = {.max_seqs = 1000};
	sl_trace_opts_t jl = {.kind = SL_TRACE_JSONL, .max_seqs = 2};
	int64_t want[3] = {7, 7, 7};
	const char *q;

	(void)state;
	tt_expect_error(p, &bytes, SL_ERANGE,
	                "bomb.txt.gz: more than 1048576 decompressed bytes (limit --max-bytes)",
	                NULL);
	tt_expect_error(p, &seqs, SL_ERANGE,
	                "bomb.txt.gz: more than 1000 sequences (limit --max-seqs)", NULL);
	/* a plain file: the same byte limit, without "decompressed" */
	q = tt_write_str("plain.txt", "7\n7\n7\n");
	bytes.max_bytes = 5;
	tt_expect_error(q, &bytes, SL_ERANGE, "plain.txt: more than 5 bytes (limit --max-bytes)",
	                NULL);
	/* the limits are inclusive: exactly max_bytes and max_seqs read fine */
	bytes.max_bytes = 6;
	tt_expect_lengths(q, &bytes, want, 3);
	seqs.max_seqs = 3;
	tt_expect_lengths(q, &seqs, want, 3);
	seqs.max_seqs = 2;
	tt_expect_error(q, &seqs, SL_ERANGE, "more than 2 sequences (limit --max-seqs)", NULL);
	/* JSON Lines counts through the same limit */
	q = tt_write_str("three.jsonl", "{\"length\": 7}\n{\"length\": 7}\n{\"length\": 7}\n");
	tt_expect_error(q, &jl, SL_ERANGE, "three.jsonl: more than 2 sequences (limit --max-seqs)",
	                NULL);
	/* the default limits take a 10 MB trace of 5M lengths as it is */
	{
		sl_lengths_t l = {0};

		assert_int_equal(sl_trace_read(p, NULL, &l), SL_OK);
		assert_int_equal(l.n, big / 2);
		sl_lengths_free(&l);
	}
}

/* zlib's gzread reports a clean end of file for a stream cut inside its
 * trailer when the data before filled the read buffer exactly (here 2 x 64
 * KiB); the reader must still see the truncation. Data after the end of a
 * gzip stream that is not another member is refused too. */
static void test_gzip_truncated_at_buffer_boundary(void **state)
{
	const char *p = write_sevens_gz("exact.txt.gz", (size_t)2 << 16);
	unsigned char *gz;
	size_t full, cut;
	const char *q;

	(void)state;
	gz = tt_slurp(p, &full);
	for (cut = 1; cut <= 8; cut++) {
		char name[32];

		snprintf(name, sizeof(name), "exact-%zu.txt.gz", cut);
		q = tt_write(name, gz, full - cut);
		tt_expect_error(q, NULL, SL_EFORMAT, name, "gzip stream is truncated", NULL);
	}
	gz = realloc(gz, full + 8);
	assert_non_null(gz);
	memcpy(gz + full, "garbage", 7);
	q = tt_write("garbage.txt.gz", gz, full + 7);
	tt_expect_error(q, NULL, SL_EFORMAT, "garbage.txt.gz: corrupt gzip data",
	                "after the end of the gzip stream", NULL);
	free(gz);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_text_plain),      cmocka_unit_test(test_text_gzip),
	    cmocka_unit_test(test_gzip_truncated),  cmocka_unit_test(test_gzip_corrupt),
	    cmocka_unit_test(test_gzip_bomb_limits),
	    cmocka_unit_test(test_gzip_truncated_at_buffer_boundary),
	    cmocka_unit_test(test_text_errors),     cmocka_unit_test(test_open_errors),
	    cmocka_unit_test(test_append),          cmocka_unit_test(test_kind_names),
	    cmocka_unit_test(test_jsonl),           cmocka_unit_test(test_jsonl_errors),
	    cmocka_unit_test(test_jsonl_long_line), cmocka_unit_test(test_stdin),
	};
	return cmocka_run_group_tests(tests, tt_setup, tt_teardown);
}
