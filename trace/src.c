/* sluice trace: the buffered byte source under every reader (plain bytes,
 * or gzip through zlib's inflate with the trailer checked). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trace_impl.h"

/* Reads the next chunk of the file into src->in (EINTR retried); sets
 * in_eof at the end of the file. */
static sl_err src_read_in(trace_src_t *src)
{
	ssize_t n;

	do
		n = read(src->fd, src->in, TRACE_BUF_SIZE);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return sl_seterr(SL_EIO, "%s: read error after %llu bytes: %s", src->name,
		                 (unsigned long long)src->in_total, strerror(errno));
	if (n == 0)
		src->in_eof = 1;
	src->z.next_in = src->in;
	src->z.avail_in = (uInt)n;
	src->in_total += (uint64_t)n;
	return SL_OK;
}

/* Offset in the file of the next compressed byte inflate would read. */
static long long src_zoffset(const trace_src_t *src)
{
	return (long long)(src->in_total - src->z.avail_in);
}

/* Decompresses into buf[len..cap) until it is full or the stream ends; a
 * member's end (trailer checked by inflate) followed by more input starts
 * the next member, as gunzip does. */
static sl_err src_inflate(trace_src_t *src)
{
	while (src->len < src->cap && !src->eof) {
		size_t room = src->cap - src->len;
		uInt ask = room > (size_t)UINT_MAX ? UINT_MAX : (uInt)room;
		int zr;

		if (src->z.avail_in == 0 && !src->in_eof)
			SL_CHECK(src_read_in(src));
		if (src->member_done) {
			if (src->z.avail_in == 0) { /* only possible at the end of the file */
				src->eof = 1;
				break;
			}
			if (inflateReset(&src->z) != Z_OK)
				return sl_seterr(SL_EINTERNAL, "%s: zlib cannot start the next member",
				                 src->name);
			src->member_done = 0;
		}
		/* called even without input: inflate may hold output it could not
		 * hand over when the buffer filled */
		src->z.next_out = src->buf + src->len;
		src->z.avail_out = ask;
		zr = inflate(&src->z, Z_NO_FLUSH);
		src->len += ask - src->z.avail_out;
		if (zr == Z_STREAM_END) {
			src->member_done = 1;
		} else if (zr == Z_OK || zr == Z_BUF_ERROR) {
			if (ask == src->z.avail_out && src->z.avail_in == 0 && src->in_eof)
				return sl_seterr(SL_EFORMAT,
				                 "%s: gzip stream is truncated (it ends after %llu "
				                 "decompressed bytes, before the gzip trailer)",
				                 src->name, (unsigned long long)(src->base + src->len));
		} else if (zr == Z_MEM_ERROR) {
			return sl_seterr(SL_ENOMEM, "%s: out of memory while decompressing", src->name);
		} else {
			return sl_seterr(SL_EFORMAT,
			                 "%s: corrupt gzip data near compressed byte %lld: %s%s",
			                 src->name, src_zoffset(src),
			                 src->z.msg ? src->z.msg : "unknown error",
			                 src->base + src->len > 0 && zr == Z_DATA_ERROR &&
			                         src->z.total_out == 0
			                     ? " (data after the end of the gzip stream?)"
			                     : "");
		}
	}
	return SL_OK;
}

/* Reads plain bytes into buf[len..cap) until it is full or the file ends
 * (the bytes sniffed at open come first). */
static sl_err src_read_plain(trace_src_t *src)
{
	while (src->len < src->cap && !src->eof) {
		size_t room = src->cap - src->len;
		ssize_t n;

		if (src->z.avail_in > 0) {
			size_t take = room < src->z.avail_in ? room : src->z.avail_in;

			memcpy(src->buf + src->len, src->z.next_in, take);
			src->z.next_in += take;
			src->z.avail_in -= (uInt)take;
			src->len += take;
			continue;
		}
		do
			n = read(src->fd, src->buf + src->len, room);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return sl_seterr(SL_EIO, "%s: read error after %llu bytes: %s", src->name,
			                 (unsigned long long)(src->base + src->len), strerror(errno));
		if (n == 0)
			src->eof = 1;
		src->len += (size_t)n;
	}
	return SL_OK;
}

/* Moves the unread bytes to the front of the buffer and reads until it is
 * full or the stream ends; more than max_bytes in all is an error. */
static sl_err src_fill(trace_src_t *src)
{
	if (src->pos > 0) {
		memmove(src->buf, src->buf + src->pos, src->len - src->pos);
		src->base += src->pos;
		src->len -= src->pos;
		src->pos = 0;
	}
	SL_CHECK(src->gzip ? src_inflate(src) : src_read_plain(src));
	if (src->base + src->len > src->max_bytes)
		return sl_seterr(SL_ERANGE, "%s: more than %llu %sbytes (limit --max-bytes)",
		                 src->name, (unsigned long long)src->max_bytes,
		                 src->gzip ? "decompressed " : "");
	return SL_OK;
}

sl_err trace_src_open(trace_src_t *src, const char *path, uint64_t max_bytes, size_t max_seqs,
                      size_t n0)
{
	int is_stdin = strcmp(path, "-") == 0;
	struct stat st;
	sl_err rc;

	memset(src, 0, sizeof(*src));
	src->file_size = -1;
	src->max_bytes = max_bytes;
	src->max_seqs = max_seqs;
	src->n0 = n0;
	src->name = is_stdin ? "<stdin>" : path;
	src->own_fd = !is_stdin;
	src->fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	if (src->fd < 0)
		return sl_seterr(errno == ENOENT ? SL_ENOTFOUND : SL_EIO, "%s: cannot open: %s",
		                 src->name, strerror(errno));
	if (fstat(src->fd, &st) != 0) {
		rc = sl_seterr(SL_EIO, "%s: cannot stat: %s", src->name, strerror(errno));
		return trace_src_close(src, rc);
	}
	if (S_ISDIR(st.st_mode))
		return trace_src_close(
		    src, sl_seterr(SL_EINVAL, "%s: is a directory, not a trace file", src->name));
	src->cap = TRACE_BUF_SIZE;
	src->buf = malloc(src->cap);
	src->in = malloc(TRACE_BUF_SIZE);
	if (src->buf == NULL || src->in == NULL)
		return trace_src_close(
		    src, sl_seterr(SL_ENOMEM, "%s: out of memory for the read buffer", src->name));
	/* the gzip magic needs two bytes, which a pipe may deliver apart */
	while (!src->in_eof && src->z.avail_in < 2) {
		ssize_t n;

		do
			n = read(src->fd, src->in + src->z.avail_in, TRACE_BUF_SIZE - src->z.avail_in);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return trace_src_close(src, sl_seterr(SL_EIO, "%s: read error: %s", src->name,
			                                      strerror(errno)));
		if (n == 0)
			src->in_eof = 1;
		src->z.avail_in += (uInt)n;
		src->in_total += (uint64_t)n;
	}
	src->z.next_in = src->in;
	src->gzip = src->z.avail_in >= 2 && src->in[0] == 0x1f && src->in[1] == 0x8b;
	if (src->gzip) {
		/* 16 + 15: gzip wrapper only, the largest window */
		if (inflateInit2(&src->z, 16 + MAX_WBITS) != Z_OK)
			return trace_src_close(
			    src, sl_seterr(SL_ENOMEM, "%s: cannot set up zlib", src->name));
		src->z_live = 1;
	} else if (!is_stdin && S_ISREG(st.st_mode)) {
		src->file_size = (int64_t)st.st_size;
	}
	rc = src_fill(src);
	if (rc != SL_OK)
		return trace_src_close(src, rc);
	return SL_OK;
}

sl_err trace_src_close(trace_src_t *src, sl_err rc)
{
	if (src->z_live)
		inflateEnd(&src->z);
	src->z_live = 0;
	if (src->own_fd && src->fd >= 0)
		close(src->fd);
	src->fd = -1;
	free(src->buf);
	free(src->in);
	src->buf = src->in = NULL;
	src->len = src->pos = src->cap = 0;
	return rc;
}

sl_err trace_push(trace_src_t *src, sl_lengths_t *out, int64_t len)
{
	if (out->n - src->n0 >= src->max_seqs)
		return sl_seterr(SL_ERANGE, "%s: more than %zu sequences (limit --max-seqs)",
		                 src->name, src->max_seqs);
	return sl_lengths_push(out, len);
}

sl_err trace_check_declared(trace_src_t *src, uint64_t count, const char *what, uint64_t bytes)
{
	if (count > src->max_seqs)
		return sl_seterr(SL_ERANGE,
		                 "%s: the header declares %llu %s, more than %zu (limit --max-seqs)",
		                 src->name, (unsigned long long)count, what, src->max_seqs);
	if (bytes > src->max_bytes)
		return sl_seterr(SL_ERANGE,
		                 "%s: the header declares %llu bytes of data, more than %llu (limit "
		                 "--max-bytes)",
		                 src->name, (unsigned long long)bytes,
		                 (unsigned long long)src->max_bytes);
	return SL_OK;
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
