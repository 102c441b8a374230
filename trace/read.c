/* sluice trace: the public entry points (length arrays, kind names,
 * auto-detection and sl_trace_read). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "trace_impl.h"

sl_err sl_lengths_push(sl_lengths_t *l, int64_t len)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 1024;
		int64_t *nv;

		if (cap > SIZE_MAX / sizeof(*nv))
			return sl_seterr(SL_ENOMEM, "length array of %zu entries is too large",
			                 l->n);
		nv = realloc(l->v, cap * sizeof(*nv));
		if (nv == NULL)
			return sl_seterr(SL_ENOMEM, "out of memory for %zu lengths", cap);
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = len;
	return SL_OK;
}

void sl_lengths_free(sl_lengths_t *l)
{
	if (l == NULL)
		return;
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

static const char *const trace_kind_names[] = {
    [SL_TRACE_AUTO] = "auto",         [SL_TRACE_TEXT] = "text", [SL_TRACE_JSONL] = "jsonl",
    [SL_TRACE_MEGATRON] = "megatron", [SL_TRACE_NPY] = "npy",
};
#define TRACE_KIND_COUNT ((int)(sizeof(trace_kind_names) / sizeof(trace_kind_names[0])))

int sl_trace_kind_parse(const char *name)
{
	int k;

	if (name == NULL)
		return -1;
	for (k = 0; k < TRACE_KIND_COUNT; k++)
		if (strcmp(name, trace_kind_names[k]) == 0)
			return k;
	return -1;
}

const char *sl_trace_kind_name(sl_trace_kind kind)
{
	if ((int)kind < 0 || (int)kind >= TRACE_KIND_COUNT)
		return "unknown";
	return trace_kind_names[kind];
}

/* The kind a file name suggests (".gz" stripped), or SL_TRACE_AUTO. */
static sl_trace_kind trace_kind_from_name(const char *name, int binary)
{
	size_t n = strlen(name);
	const char *dot;
	char base[64];

	if (n > 3 && strcasecmp(name + n - 3, ".gz") == 0)
		n -= 3;
	/* the extension of name[0..n) */
	for (dot = name + n; dot > name && dot[-1] != '.' && dot[-1] != '/'; dot--)
		;
	if (dot == name || dot[-1] != '.' || (size_t)(name + n - dot) >= sizeof(base))
		return SL_TRACE_AUTO;
	memcpy(base, dot, (size_t)(name + n - dot));
	base[name + n - dot] = '\0';
	if (binary) {
		if (strcasecmp(base, "idx") == 0)
			return SL_TRACE_MEGATRON;
		if (strcasecmp(base, "npy") == 0)
			return SL_TRACE_NPY;
		return SL_TRACE_AUTO;
	}
	if (strcasecmp(base, "jsonl") == 0 || strcasecmp(base, "json") == 0 ||
	    strcasecmp(base, "ndjson") == 0)
		return SL_TRACE_JSONL;
	if (strcasecmp(base, "txt") == 0)
		return SL_TRACE_TEXT;
	return SL_TRACE_AUTO;
}

/* Auto-detection over the first (decompressed) buffer: magic bytes, then a
 * binary extension (so a damaged .idx/.npy reports its bad magic rather than
 * a text error), then the first character that is not blank or a '#'
 * comment ('{' is JSON Lines, a digit or sign is text), then a text
 * extension; text is the default. */
static sl_trace_kind trace_detect(const trace_src_t *src, const char *path)
{
	const unsigned char *b = src->buf + src->pos;
	size_t n = src->len - src->pos, i = 0;
	sl_trace_kind k;

	if (n >= 7 && memcmp(b, "MMIDIDX", 7) == 0)
		return SL_TRACE_MEGATRON;
	if (n >= 6 && memcmp(b, "\x93NUMPY", 6) == 0)
		return SL_TRACE_NPY;
	k = trace_kind_from_name(path, 1);
	if (k != SL_TRACE_AUTO)
		return k;
	if (n >= 3 && memcmp(b, "\xef\xbb\xbf", 3) == 0) /* UTF-8 byte order mark */
		i = 3;
	while (i < n) {
		unsigned char c = b[i];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f') {
			i++;
		} else if (c == '#') {
			const unsigned char *nl = memchr(b + i, '\n', n - i);
			i = nl ? (size_t)(nl - b) + 1 : n;
		} else if (c == '{') {
			return SL_TRACE_JSONL;
		} else if ((c >= '0' && c <= '9') || c == '+' || c == '-') {
			return SL_TRACE_TEXT;
		} else {
			break;
		}
	}
	k = trace_kind_from_name(path, 0);
	return k != SL_TRACE_AUTO ? k : SL_TRACE_TEXT;
}

sl_err sl_trace_read(const char *path, const sl_trace_opts_t *opts, sl_lengths_t *out)
{
	sl_trace_kind kind = opts ? opts->kind : SL_TRACE_AUTO;
	const char *field = opts && opts->field ? opts->field : "length";
	size_t max_seqs = opts && opts->max_seqs ? opts->max_seqs : SL_TRACE_MAX_SEQS_DEFAULT;
	uint64_t max_bytes = opts && opts->max_bytes ? opts->max_bytes : SL_TRACE_MAX_BYTES_DEFAULT;
	trace_src_t src;
	size_t n0;
	sl_err rc;

	if (path == NULL || out == NULL)
		return sl_seterr(SL_EINVAL, "sl_trace_read: path and out are required");
	if ((int)kind < 0 || (int)kind >= TRACE_KIND_COUNT)
		return sl_seterr(SL_EINVAL, "%s: unknown trace kind %d", path, (int)kind);
	if (field[0] == '\0')
		return sl_seterr(SL_EINVAL, "%s: the JSONL length field name is empty", path);
	n0 = out->n;
	SL_CHECK(trace_src_open(&src, path, max_bytes, max_seqs, n0));
	if (kind == SL_TRACE_AUTO)
		kind = trace_detect(&src, strcmp(path, "-") == 0 ? "" : path);
	switch (kind) {
	case SL_TRACE_TEXT:
		rc = trace_read_text(&src, out);
		break;
	case SL_TRACE_JSONL:
		rc = trace_read_jsonl(&src, field, out);
		break;
	case SL_TRACE_MEGATRON:
		rc = trace_read_megatron(&src, out);
		break;
	case SL_TRACE_NPY:
		rc = trace_read_npy(&src, out);
		break;
	default:
		rc = sl_seterr(SL_EINTERNAL, "%s: no reader for kind %d", src.name, (int)kind);
		break;
	}
	rc = trace_src_close(&src, rc);
	if (rc == SL_OK && out->n == n0)
		rc = sl_seterr(SL_EFORMAT, "%s: no lengths in the %s trace (empty file?)",
		               strcmp(path, "-") == 0 ? "<stdin>" : path, sl_trace_kind_name(kind));
	if (rc != SL_OK) {
		out->n = n0; /* never a partial read */
		return rc;
	}
	SL_DEBUG(SL_SUB_TRACE, "%s: read %zu lengths (%s%s)", path, out->n - n0,
	         sl_trace_kind_name(kind), src.gzip ? ", gzip" : "");
	return SL_OK;
}
