/* sluice trace: the line-oriented readers (plain lengths, JSON Lines). */
#include <string.h>

#include <jansson.h>

#include "trace_impl.h"

static int text_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Drops a UTF-8 byte order mark from the first line (editors on Windows
 * write one; it is not part of the data). */
static void text_skip_bom(const trace_src_t *src, const char **p, size_t *n)
{
	if (src->line == 1 && *n >= 3 && memcmp(*p, "\xef\xbb\xbf", 3) == 0) {
		*p += 3;
		*n -= 3;
	}
}

/* Trims blanks at both ends of [*p, *p + *n). */
static void text_trim(const char **p, size_t *n)
{
	const char *s = *p, *e = *p + *n;

	while (s < e && text_is_space(*s))
		s++;
	while (e > s && text_is_space(e[-1]))
		e--;
	*p = s;
	*n = (size_t)(e - s);
}

/* Parses one trimmed, non-empty token as a length and appends it; on a bad
 * token the error names the line and shows the token. */
static sl_err text_parse_line(trace_src_t *src, const char *p, size_t n, sl_lengths_t *out)
{
	const char *s = p, *e = p + n, *q;
	unsigned long long line = (unsigned long long)src->line;
	uint64_t v = 0;
	int neg = 0, big = 0;
	char quoted[96];

	if (*s == '+' || *s == '-') {
		neg = *s == '-';
		s++;
	}
	for (q = s; q < e; q++) {
		unsigned d = (unsigned)(unsigned char)*q - '0';

		if (d > 9)
			break;
		if (v > (uint64_t)SL_MAX_SEQ_LEN)
			big = 1; /* stop multiplying: no overflow, value is too big anyway */
		else
			v = v * 10 + d;
	}
	if (q == s || q < e) {
		/* "12 13" or "12,13": a number followed by a separator and more */
		if (q > s && (text_is_space(*q) || *q == ',' || *q == ';'))
			return sl_seterr(SL_EFORMAT,
			                 "%s:%llu: %s holds more than one value (expected one "
			                 "length per line)",
			                 src->name, line,
			                 trace_quote(p, n, quoted, sizeof(quoted)));
		return sl_seterr(SL_EFORMAT,
		                 "%s:%llu: %s is not a length (expected a positive integer)",
		                 src->name, line, trace_quote(p, n, quoted, sizeof(quoted)));
	}
	if (v > (uint64_t)SL_MAX_SEQ_LEN)
		big = 1;
	if (v == 0)
		return sl_seterr(SL_ERANGE,
		                 "%s:%llu: length %s is not positive (lengths must be >= 1)",
		                 src->name, line, trace_quote(p, n, quoted, sizeof(quoted)));
	if (neg)
		return sl_seterr(SL_ERANGE, "%s:%llu: length %s is negative (lengths must be >= 1)",
		                 src->name, line, trace_quote(p, n, quoted, sizeof(quoted)));
	if (big)
		return sl_seterr(SL_ERANGE,
		                 "%s:%llu: length %s exceeds the maximum %lld (SL_MAX_SEQ_LEN)",
		                 src->name, line, trace_quote(p, n, quoted, sizeof(quoted)),
		                 (long long)SL_MAX_SEQ_LEN);
	return trace_push(src, out, (int64_t)v);
}

/* Text: one length per line; '#' starts a comment (whole-line or trailing);
 * blank lines and surrounding blanks are ignored. */
sl_err trace_read_text(trace_src_t *src, sl_lengths_t *out)
{
	for (;;) {
		const char *p, *hash;
		size_t n;
		int more;

		SL_CHECK(trace_src_line(src, &p, &n, &more));
		if (!more)
			return SL_OK;
		text_skip_bom(src, &p, &n);
		hash = memchr(p, '#', n);
		if (hash != NULL)
			n = (size_t)(hash - p);
		text_trim(&p, &n);
		if (n == 0)
			continue;
		SL_CHECK(text_parse_line(src, p, n, out));
	}
}

static const char *jsonl_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a real number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "an unknown value";
}

/* Takes the length out of one parsed line (root is an object). */
static sl_err jsonl_length(trace_src_t *src, json_t *root, const char *field, sl_lengths_t *out)
{
	unsigned long long line = (unsigned long long)src->line;
	int counts_ids = strcmp(field, "input_ids") == 0;
	json_t *v = json_object_get(root, field);
	long long len;

	if (v == NULL)
		return sl_seterr(SL_EFORMAT, "%s:%llu: the object has no field '%s'", src->name,
		                 line, field);
	if (json_is_array(v)) {
		len = (long long)json_array_size(v);
		if (len == 0)
			return sl_seterr(
			    SL_ERANGE,
			    "%s:%llu: field '%s' is an empty array (lengths must be >= 1)",
			    src->name, line, field);
	} else if (counts_ids) {
		return sl_seterr(SL_EFORMAT,
		                 "%s:%llu: field '%s' is %s (expected an array of token ids)",
		                 src->name, line, field, jsonl_type_name(v));
	} else if (json_is_integer(v)) {
		len = (long long)json_integer_value(v);
		if (len < 1)
			return sl_seterr(SL_ERANGE,
			                 "%s:%llu: field '%s' is %lld (lengths must be >= 1)",
			                 src->name, line, field, len);
	} else if (json_is_real(v)) {
		return sl_seterr(SL_EFORMAT,
		                 "%s:%llu: field '%s' is the real number %g (expected an integer)",
		                 src->name, line, field, json_real_value(v));
	} else {
		return sl_seterr(SL_EFORMAT,
		                 "%s:%llu: field '%s' is %s (expected an integer or an array)",
		                 src->name, line, field, jsonl_type_name(v));
	}
	if (len > SL_MAX_SEQ_LEN)
		return sl_seterr(
		    SL_ERANGE,
		    "%s:%llu: field '%s' is %lld, above the maximum %lld (SL_MAX_SEQ_LEN)",
		    src->name, line, field, len, (long long)SL_MAX_SEQ_LEN);
	return trace_push(src, out, (int64_t)len);
}

/* JSON Lines: one object per line; blank lines and lines starting with '#'
 * are skipped (neither can be JSON). */
sl_err trace_read_jsonl(trace_src_t *src, const char *field, sl_lengths_t *out)
{
	for (;;) {
		const char *p;
		size_t n;
		int more;
		json_error_t jerr;
		json_t *root;
		sl_err rc;

		SL_CHECK(trace_src_line(src, &p, &n, &more));
		if (!more)
			return SL_OK;
		text_skip_bom(src, &p, &n);
		text_trim(&p, &n);
		if (n == 0 || p[0] == '#')
			continue;
		root = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr);
		if (root == NULL)
			return sl_seterr(SL_EFORMAT, "%s:%llu: invalid JSON at column %d: %s",
			                 src->name, (unsigned long long)src->line, jerr.column,
			                 jerr.text);
		if (!json_is_object(root)) {
			rc = sl_seterr(SL_EFORMAT, "%s:%llu: the line is %s, not a JSON object",
			               src->name, (unsigned long long)src->line,
			               jsonl_type_name(root));
		} else {
			rc = jsonl_length(src, root, field, out);
		}
		json_decref(root);
		if (rc != SL_OK)
			return rc;
	}
}
