/* sluice trace tests: scratch directory and file writers shared by the
 * trace test programs (header-only; each test includes it once). */
#ifndef SLUICE_TRACE_TEST_UTIL_H
#define SLUICE_TRACE_TEST_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>
#include <zlib.h>

#include "sluice/err.h"
#include "sluice/trace.h"

/* The scratch directory of this test program (made by tt_setup). */
static char tt_dir[512];
/* Paths handed out by tt_path, removed by tt_teardown. */
static char *tt_paths[256];
static int tt_npaths;

static inline int tt_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");

	(void)state;
	/* $TMPDIR, else /dev/shm: the tests write thousands of small files and
	 * a busy disk makes each create cost milliseconds */
	if (tmp == NULL || tmp[0] == '\0')
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(tt_dir, sizeof(tt_dir), "%s/sluice-trace-test-XXXXXX", tmp);
	return mkdtemp(tt_dir) ? 0 : -1;
}

static inline int tt_teardown(void **state)
{
	int i;

	(void)state;
	for (i = 0; i < tt_npaths; i++) {
		unlink(tt_paths[i]);
		free(tt_paths[i]);
	}
	tt_npaths = 0;
	return rmdir(tt_dir);
}

/* Returns "<dir>/<name>" (owned by the harness, valid until teardown). */
static inline const char *tt_path(const char *name)
{
	char buf[1024];
	int i;

	snprintf(buf, sizeof(buf), "%s/%s", tt_dir, name);
	for (i = 0; i < tt_npaths; i++)
		if (strcmp(tt_paths[i], buf) == 0)
			return tt_paths[i];
	assert_true(tt_npaths < (int)(sizeof(tt_paths) / sizeof(tt_paths[0])));
	tt_paths[tt_npaths] = strdup(buf);
	assert_non_null(tt_paths[tt_npaths]);
	return tt_paths[tt_npaths++];
}

/* Writes n bytes to name in the scratch dir; returns the path. */
static inline const char *tt_write(const char *name, const void *data, size_t n)
{
	const char *path = tt_path(name);
	FILE *f;

	/* unlink first: truncating a file in place makes ext4 flush it on
	 * close (auto_da_alloc) */
	unlink(path);
	f = fopen(path, "wb");

	assert_non_null(f);
	if (n > 0)
		assert_int_equal(fwrite(data, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
	return path;
}

static inline const char *tt_write_str(const char *name, const char *text)
{
	return tt_write(name, text, strlen(text));
}

/* Writes data gzip-compressed with zlib's gzopen "wb". */
static inline const char *tt_write_gz(const char *name, const void *data, size_t n)
{
	const char *path = tt_path(name);
	gzFile gz;

	unlink(path);
	gz = gzopen(path, "wb");

	assert_non_null(gz);
	if (n > 0)
		assert_int_equal(gzwrite(gz, data, (unsigned)n), (int)n);
	assert_int_equal(gzclose(gz), Z_OK);
	return path;
}

/* Reads a whole file into a malloc'd buffer. */
static inline unsigned char *tt_slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	unsigned char *b;
	long sz;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	sz = ftell(f);
	assert_true(sz >= 0);
	rewind(f);
	b = malloc((size_t)sz + 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
	fclose(f);
	*n = (size_t)sz;
	return b;
}

/* Reads path and checks it gives exactly the n lengths in want. */
static inline void tt_expect_lengths(const char *path, const sl_trace_opts_t *opts,
                                     const int64_t *want, size_t n)
{
	sl_lengths_t l = {0};
	sl_err rc = sl_trace_read(path, opts, &l);
	size_t i;

	if (rc != SL_OK)
		fail_msg("%s: unexpected error %s: %s", path, sl_errname(rc), sl_errmsg());
	assert_int_equal(l.n, n);
	for (i = 0; i < n; i++)
		if (l.v[i] != want[i])
			fail_msg("%s: length %zu is %lld, want %lld", path, i, (long long)l.v[i],
			         (long long)want[i]);
	sl_lengths_free(&l);
	assert_null(l.v);
	assert_int_equal(l.n, 0);
}

/* Reads path, expects error code rc (or any error when rc is SL_OK) with a
 * message containing every given fragment (NULL-terminated list), and
 * checks that the output array was left as it was. */
static inline void tt_expect_error(const char *path, const sl_trace_opts_t *opts, sl_err want, ...)
{
	sl_lengths_t l = {0};
	sl_err rc;
	const char *frag;
	va_list ap;

	assert_int_equal(sl_lengths_push(&l, 42), SL_OK);
	rc = sl_trace_read(path, opts, &l);
	if (rc == SL_OK)
		fail_msg("%s: expected an error, got %zu lengths", path, l.n - 1);
	if (want != SL_OK && rc != want)
		fail_msg("%s: expected %s, got %s: %s", path, sl_errname(want), sl_errname(rc),
		         sl_errmsg());
	assert_int_equal(l.n, 1); /* never a partial read */
	assert_int_equal(l.v[0], 42);
	va_start(ap, want);
	while ((frag = va_arg(ap, const char *)) != NULL)
		if (strstr(sl_errmsg(), frag) == NULL)
			fail_msg("%s: message \"%s\" lacks \"%s\"", path, sl_errmsg(), frag);
	va_end(ap);
	sl_lengths_free(&l);
}

#endif
