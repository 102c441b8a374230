/* sluice trace: the buffered byte source under every reader (zlib gzFile,
 * which reads plain and gzip data alike). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trace_impl.h"

/* Turns the state zlib records after a gzread into an sl_err. A gzip stream
 * that stops early leaves Z_BUF_ERROR ("unexpected end of file") while gzread
 * still returns the bytes it had, so the state is checked after every call,
 * not only when gzread returns -1. */
static sl_err src_check_gz(trace_src_t *src)
{
	int errnum = Z_OK;
	const char *msg = gzerror(src->gz, &errnum);

	if (errnum == Z_OK)
		return SL_OK;
	if (errnum == Z_BUF_ERROR)
		return sl_seterr(SL_EFORMAT,
		                 "%s: gzip stream is truncated (it ends after %llu decompressed "
		                 "bytes, before the gzip trailer)",
		                 src->name, (unsigned long long)(src->base + src->len));
	if (errnum == Z_ERRNO)
		return sl_seterr(SL_EIO, "%s: read error: %s", src->name, strerror(errno));
	if (errnum == Z_MEM_ERROR)
		return sl_seterr(SL_ENOMEM, "%s: out of memory while decompressing", src->name);
	return sl_seterr(SL_EFORMAT, "%s: corrupt gzip data near compressed byte %lld: %s",
	                 src->name, (long long)gzoffset(src->gz), msg ? msg : "unknown error");
}

/* Moves the unread bytes to the front of the buffer and reads until it is
 * full or the stream ends. */
static sl_err src_fill(trace_src_t *src)
{
	if (src->pos > 0) {
		memmove(src->buf, src->buf + src->pos, src->len - src->pos);
		src->base += src->pos;
		src->len -= src->pos;
		src->pos = 0;
	}
	while (src->len < src->cap && !src->eof) {
		size_t room = src->cap - src->len;
		unsigned ask = room > (size_t)INT_MAX ? (unsigned)INT_MAX : (unsigned)room;
		int n = gzread(src->gz, src->buf + src->len, ask);
		sl_err rc;

		if (n > 0)
			src->len += (size_t)n;
		rc = src_check_gz(src);
		if (rc != SL_OK)
			return rc;
		if (n < 0) /* zlib failed without saying why */
			return sl_seterr(SL_EIO, "%s: read failed after %llu bytes", src->name,
			                 (unsigned long long)(src->base + src->len));
		if (n == 0)
			src->eof = 1;
	}
	return SL_OK;
}

sl_err trace_src_open(trace_src_t *src, const char *path)
{
	int is_stdin = strcmp(path, "-") == 0;
	struct stat st;
	int fd;
	sl_err rc;

	memset(src, 0, sizeof(*src));
	src->file_size = -1;
	src->name = is_stdin ? "<stdin>" : path;
	/* stdin is dup'd so that gzclose leaves the process's stdin open. */
	fd = is_stdin ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sl_seterr(errno == ENOENT ? SL_ENOTFOUND : SL_EIO, "%s: cannot open: %s",
		                 src->name, strerror(errno));
	if (fstat(fd, &st) != 0) {
		rc = sl_seterr(SL_EIO, "%s: cannot stat: %s", src->name, strerror(errno));
		close(fd);
		return rc;
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		return sl_seterr(SL_EINVAL, "%s: is a directory, not a trace file", src->name);
	}
	src->cap = TRACE_BUF_SIZE;
	src->buf = malloc(src->cap);
	if (src->buf == NULL) {
		close(fd);
		return sl_seterr(SL_ENOMEM, "%s: out of memory for the read buffer", src->name);
	}
	src->gz = gzdopen(fd, "rb");
	if (src->gz == NULL) {
		close(fd);
		free(src->buf);
		src->buf = NULL;
		return sl_seterr(SL_ENOMEM, "%s: cannot set up zlib", src->name);
	}
	gzbuffer(src->gz, 64u * 1024u);
	rc = src_fill(src);
	if (rc != SL_OK)
		return trace_src_close(src, rc);
	/* gzdirect is only meaningful after the first read. */
	src->gzip = !gzdirect(src->gz);
	if (!src->gzip && !is_stdin && S_ISREG(st.st_mode))
		src->file_size = (int64_t)st.st_size;
	return SL_OK;
}

sl_err trace_src_close(trace_src_t *src, sl_err rc)
{
	if (src->gz != NULL) {
		int zr = gzclose(src->gz);

		src->gz = NULL;
		if (rc == SL_OK && zr == Z_BUF_ERROR)
			rc = sl_seterr(SL_EFORMAT, "%s: gzip stream is truncated", src->name);
		else if (rc == SL_OK && zr != Z_OK)
			rc = sl_seterr(SL_EIO, "%s: closing the file failed (zlib error %d)",
			               src->name, zr);
	}
	free(src->buf);
	src->buf = NULL;
	src->len = src->pos = src->cap = 0;
	return rc;
}

sl_err trace_src_need(trace_src_t *src, size_t want)
{
	if (src->len - src->pos >= want || src->eof)
		return SL_OK;
	if (want > src->cap) {
		size_t cap = src->cap * 2 > want ? src->cap * 2 : want;
		unsigned char *nb;

		if (want > TRACE_MAX_LINE + 1)
			return sl_seterr(SL_EINTERNAL, "%s: read window of %zu bytes is too large",
			                 src->name, want);
		nb = realloc(src->buf, cap);
		if (nb == NULL)
			return sl_seterr(SL_ENOMEM, "%s: out of memory for a %zu-byte buffer",
			                 src->name, cap);
		src->buf = nb;
		src->cap = cap;
	}
	return src_fill(src);
}

sl_err trace_src_read(trace_src_t *src, void *dst, size_t n, size_t *got)
{
	unsigned char *d = dst;

	*got = 0;
	while (*got < n) {
		size_t avail = src->len - src->pos;
		size_t take = n - *got < avail ? n - *got : avail;

		if (take > 0) {
			memcpy(d + *got, src->buf + src->pos, take);
			src->pos += take;
			*got += take;
			continue;
		}
		if (src->eof)
			break;
		SL_CHECK(src_fill(src));
	}
	return SL_OK;
}

sl_err trace_src_drain(trace_src_t *src, uint64_t *count)
{
	for (;;) {
		*count += src->len - src->pos;
		src->pos = src->len;
		if (src->eof)
			return SL_OK;
		SL_CHECK(src_fill(src));
	}
}

sl_err trace_src_size_error(trace_src_t *src, uint64_t expected)
{
	uint64_t actual;

	if (src->file_size >= 0) {
		actual = (uint64_t)src->file_size;
	} else {
		actual = trace_src_tell(src);
		SL_CHECK(trace_src_drain(src, &actual));
	}
	return sl_seterr(SL_EFORMAT, "%s: %s is %llu bytes, header says %llu (%s)", src->name,
	                 src->gzip ? "decompressed data" : "file", (unsigned long long)actual,
	                 (unsigned long long)expected,
	                 actual < expected ? "truncated?" : "trailing data?");
}

sl_err trace_src_line(trace_src_t *src, const char **line, size_t *len, int *more)
{
	size_t scanned = 0; /* bytes after pos already known to hold no '\n' */

	for (;;) {
		size_t have = src->len - src->pos;
		unsigned char *start = src->buf + src->pos;
		unsigned char *nl = memchr(start + scanned, '\n', have - scanned);

		if (nl != NULL) {
			*line = (const char *)start;
			*len = (size_t)(nl - start);
			src->pos += *len + 1;
			src->line++;
			*more = 1;
			return SL_OK;
		}
		if (src->eof) {
			if (have == 0) {
				*more = 0;
				return SL_OK;
			}
			/* last line without a final newline */
			*line = (const char *)start;
			*len = have;
			src->pos = src->len;
			src->line++;
			*more = 1;
			return SL_OK;
		}
		if (have >= TRACE_MAX_LINE)
			return sl_seterr(
			    SL_EFORMAT,
			    "%s:%llu: line is longer than %zu bytes (not a text trace?)", src->name,
			    (unsigned long long)src->line + 1, TRACE_MAX_LINE);
		scanned = have;
		SL_CHECK(trace_src_need(src, have + 1));
	}
}

const char *trace_quote(const char *s, size_t n, char *out, size_t outsz)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;
	const size_t keep = 40; /* characters shown before "..." */

	if (outsz < 8) {
		if (outsz > 0)
			out[0] = '\0';
		return out;
	}
	out[o++] = '\'';
	for (i = 0; i < n && i < keep; i++) {
		unsigned char c = (unsigned char)s[i];

		if (o + 8 >= outsz)
			break;
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o++] = '\'';
	if (i < n && o + 4 < outsz) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}
