/* sluice trace: NumPy .npy reader for 1-D integer arrays.
 *
 * Format (numpy/lib/format.py, NEP 1): magic "\x93NUMPY", u8 major, u8 minor,
 * header length (u16 LE for 1.0, u32 LE for 2.0 and 3.0), then the header: a
 * Python dict literal {'descr': '<i8', 'fortran_order': False, 'shape': (n,)}
 * padded with blanks and a '\n', then the raw elements. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace_impl.h"

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
/* numpy itself refuses headers above 10000 bytes unless told otherwise. */
#define NPY_MAX_HEADER ((uint32_t)1 << 20)
#define NPY_MAX_DIMS 64
#define NPY_CHUNK 65536

typedef struct npy_parse {
	trace_src_t *src;
	const char *p, *s, *e; /* cursor, start, end of the header text */
	uint64_t base;         /* stream offset of the header text */
	char descr[32];
	int have_descr, have_fortran, have_shape;
	int fortran;
	int ndim;
	uint64_t shape[NPY_MAX_DIMS];
} npy_parse_t;

static sl_err npy_bad(npy_parse_t *ps, const char *what)
{
	char quoted[96];
	size_t left = (size_t)(ps->e - ps->p);

	return sl_seterr(SL_EFORMAT, "%s: byte %llu: bad .npy header: %s, at %s", ps->src->name,
	                 (unsigned long long)(ps->base + (uint64_t)(ps->p - ps->s)), what,
	                 left ? trace_quote(ps->p, left < 16 ? left : 16, quoted, sizeof(quoted))
	                      : "the end");
}

static void npy_ws(npy_parse_t *ps)
{
	while (ps->p < ps->e &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

/* Parses a quoted Python string (no escapes) into out. */
static sl_err npy_string(npy_parse_t *ps, char *out, size_t outsz)
{
	char q;
	size_t n = 0;

	if (ps->p >= ps->e || (*ps->p != '\'' && *ps->p != '"'))
		return npy_bad(ps, "expected a quoted string");
	q = *ps->p++;
	while (ps->p < ps->e && *ps->p != q) {
		if (*ps->p == '\\' || n + 1 >= outsz)
			return npy_bad(ps, "unsupported or overlong string");
		out[n++] = *ps->p++;
	}
	if (ps->p >= ps->e)
		return npy_bad(ps, "unterminated string");
	ps->p++;
	out[n] = '\0';
	return SL_OK;
}

static int npy_word(npy_parse_t *ps, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(ps->e - ps->p) >= n && memcmp(ps->p, w, n) == 0) {
		ps->p += n;
		return 1;
	}
	return 0;
}

/* Parses a tuple of non-negative integers: (), (n,), (n, m), (n, m,) ...
 * As in Python, a 1-tuple needs its trailing comma: "(5)" is just 5. */
static sl_err npy_shape(npy_parse_t *ps)
{
	int comma = 0; /* the last item was followed by ',' */

	if (ps->p >= ps->e || *ps->p != '(')
		return npy_bad(ps, "expected a shape tuple");
	ps->p++;
	ps->ndim = 0;
	for (;;) {
		uint64_t v = 0;
		const char *d;

		npy_ws(ps);
		if (ps->p < ps->e && *ps->p == ')')
			break;
		d = ps->p;
		while (ps->p < ps->e && *ps->p >= '0' && *ps->p <= '9') {
			if (v > ((uint64_t)1 << 62) / 10)
				return npy_bad(ps, "dimension too large");
			v = v * 10 + (uint64_t)(*ps->p++ - '0');
		}
		if (ps->p == d)
			return npy_bad(ps, "expected a dimension");
		if (ps->p < ps->e && *ps->p == 'L') /* Python 2 long suffix */
			ps->p++;
		if (ps->ndim >= NPY_MAX_DIMS)
			return npy_bad(ps, "too many dimensions");
		ps->shape[ps->ndim++] = v;
		comma = 0;
		npy_ws(ps);
		if (ps->p < ps->e && *ps->p == ',') {
			ps->p++;
			comma = 1;
			continue;
		}
		if (ps->p < ps->e && *ps->p == ')')
			break;
		return npy_bad(ps, "expected ',' or ')' in the shape");
	}
	if (ps->ndim == 1 && !comma)
		return npy_bad(ps, "a 1-D shape needs a trailing comma, as in (n,)");
	ps->p++;
	return SL_OK;
}

/* Parses the header dict into ps. */
static sl_err npy_dict(npy_parse_t *ps)
{
	npy_ws(ps);
	if (ps->p >= ps->e || *ps->p != '{')
		return npy_bad(ps, "expected '{'");
	ps->p++;
	for (;;) {
		char key[32];

		npy_ws(ps);
		if (ps->p < ps->e && *ps->p == '}')
			break;
		SL_CHECK(npy_string(ps, key, sizeof(key)));
		npy_ws(ps);
		if (ps->p >= ps->e || *ps->p != ':')
			return npy_bad(ps, "expected ':' after a key");
		ps->p++;
		npy_ws(ps);
		if (strcmp(key, "descr") == 0 && !ps->have_descr) {
			if (ps->p < ps->e && *ps->p == '[')
				return npy_bad(ps, "structured dtypes are not supported "
				                   "(expected a 1-D integer array)");
			SL_CHECK(npy_string(ps, ps->descr, sizeof(ps->descr)));
			ps->have_descr = 1;
		} else if (strcmp(key, "fortran_order") == 0 && !ps->have_fortran) {
			if (npy_word(ps, "True"))
				ps->fortran = 1;
			else if (npy_word(ps, "False"))
				ps->fortran = 0;
			else
				return npy_bad(ps, "fortran_order must be True or False");
			ps->have_fortran = 1;
		} else if (strcmp(key, "shape") == 0 && !ps->have_shape) {
			SL_CHECK(npy_shape(ps));
			ps->have_shape = 1;
		} else {
			char msg[96];

			snprintf(msg, sizeof(msg), "unexpected or repeated key '%s'", key);
			return npy_bad(ps, msg);
		}
		npy_ws(ps);
		if (ps->p < ps->e && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->e && *ps->p == '}')
			break;
		return npy_bad(ps, "expected ',' or '}'");
	}
	ps->p++;
	npy_ws(ps);
	if (ps->p != ps->e)
		return npy_bad(ps, "unexpected text after the dict");
	if (!ps->have_descr || !ps->have_fortran || !ps->have_shape)
		return npy_bad(ps, "the dict lacks one of 'descr', 'fortran_order', 'shape'");
	return SL_OK;
}

sl_err trace_read_npy(trace_src_t *src, sl_lengths_t *out)
{
	unsigned char pre[12], *chunk = NULL;
	char *text = NULL, quoted[96];
	npy_parse_t ps;
	uint64_t hlen, data_off, n, expected, i, rest = 0;
	size_t got, pre_len, size;
	int major, minor, big, sgn;
	sl_err rc = SL_OK;

	SL_CHECK(trace_src_read(src, pre, 10, &got));
	if (got < NPY_MAGIC_LEN || memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
		return sl_seterr(
		    SL_EFORMAT,
		    "%s: byte 0: bad magic %s (expected \"\\x93NUMPY\", a NumPy .npy file)",
		    src->name,
		    trace_quote((const char *)pre, got < NPY_MAGIC_LEN ? got : NPY_MAGIC_LEN,
		                quoted, sizeof(quoted)));
	if (got < 10)
		return sl_seterr(SL_EFORMAT,
		                 "%s: file is %zu bytes, shorter than the .npy preamble "
		                 "(truncated?)",
		                 src->name, got);
	major = pre[6];
	minor = pre[7];
	if (major < 1 || major > 3 || minor != 0)
		return sl_seterr(
		    SL_EFORMAT,
		    "%s: byte 6: .npy version %d.%d is not supported (expected 1.0, 2.0 "
		    "or 3.0)",
		    src->name, major, minor);
	if (major == 1) {
		hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
		pre_len = 10;
	} else {
		SL_CHECK(trace_src_read(src, pre + 10, 2, &got));
		if (got < 2)
			return sl_seterr(SL_EFORMAT,
			                 "%s: file is %zu bytes, shorter than the .npy preamble "
			                 "(truncated?)",
			                 src->name, (size_t)10 + got);
		hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 |
		       (uint64_t)pre[11] << 24;
		pre_len = 12;
	}
	if (hlen > NPY_MAX_HEADER)
		return sl_seterr(SL_EFORMAT, "%s: byte 8: header length %llu is above the limit %u",
		                 src->name, (unsigned long long)hlen, (unsigned)NPY_MAX_HEADER);
	text = malloc(hlen + 1);
	if (text == NULL)
		return sl_seterr(SL_ENOMEM, "%s: out of memory", src->name);
	rc = trace_src_read(src, text, (size_t)hlen, &got);
	if (rc != SL_OK)
		goto out;
	if (got < hlen) {
		rc = sl_seterr(
		    SL_EFORMAT,
		    "%s: file is %llu bytes, header says its text alone ends at byte %llu "
		    "(truncated?)",
		    src->name, (unsigned long long)(pre_len + got),
		    (unsigned long long)(pre_len + hlen));
		goto out;
	}
	memset(&ps, 0, sizeof(ps));
	ps.src = src;
	ps.s = ps.p = text;
	ps.e = text + hlen;
	ps.base = pre_len;
	rc = npy_dict(&ps);
	if (rc != SL_OK)
		goto out;

	/* dtype: byte order, kind, item size */
	{
		const char *d = ps.descr;
		char order = d[0], kind = d[0] ? d[1] : '\0';

		size = 0;
		if ((order == '<' || order == '>' || order == '|') &&
		    (kind == 'i' || kind == 'u') && d[2] >= '1' && d[2] <= '8' && d[3] == '\0')
			size = (size_t)(d[2] - '0');
		if (size != 1 && size != 2 && size != 4 && size != 8) {
			rc = sl_seterr(
			    SL_EFORMAT,
			    "%s: dtype '%s' is not supported (expected an integer dtype: "
			    "<i1 <i2 <i4 <i8 <u1 <u2 <u4 <u8, |i1 |u1, or big-endian >i2 ... "
			    ">u8)%s",
			    src->name, d,
			    (kind == 'f' || kind == 'c' || kind == 'b')
			        ? "; convert with arr.astype('<i8')"
			        : "");
			goto out;
		}
		if (order == '|' && size != 1) {
			rc = sl_seterr(SL_EFORMAT,
			               "%s: dtype '%s' has no byte order but %zu-byte items",
			               src->name, d, size);
			goto out;
		}
		big = order == '>' && size > 1;
		sgn = kind == 'i';
	}
	/* fortran_order is accepted either way: a 1-D array is laid out the
	 * same in C and Fortran order. */
	if (ps.ndim != 1) {
		char dims[128];
		size_t o = 0;
		int k;

		dims[o++] = '(';
		for (k = 0; k < ps.ndim && o < sizeof(dims) - 32; k++)
			o += (size_t)snprintf(dims + o, sizeof(dims) - o, "%s%llu", k ? ", " : "",
			                      (unsigned long long)ps.shape[k]);
		snprintf(dims + o, sizeof(dims) - o, ")");
		rc = sl_seterr(SL_EFORMAT, "%s: shape %s has %d dimensions (expected a 1-D array)",
		               src->name, dims, ps.ndim);
		goto out;
	}
	n = ps.shape[0];
	data_off = pre_len + hlen;
	if (n > (((uint64_t)1 << 62) / size)) {
		rc = sl_seterr(SL_EFORMAT, "%s: shape (%llu,) is implausible", src->name,
		               (unsigned long long)n);
		goto out;
	}
	expected = data_off + n * size;
	if (src->file_size >= 0 && (uint64_t)src->file_size != expected) {
		rc = trace_src_size_error(src, expected);
		goto out;
	}
	rc = trace_check_declared(src, n, "elements", expected);
	if (rc != SL_OK)
		goto out;
	chunk = malloc((size_t)NPY_CHUNK * 8);
	if (chunk == NULL) {
		rc = sl_seterr(SL_ENOMEM, "%s: out of memory", src->name);
		goto out;
	}
	for (i = 0; i < n;) {
		size_t k, m = n - i < NPY_CHUNK ? (size_t)(n - i) : NPY_CHUNK;

		rc = trace_src_read(src, chunk, m * size, &got);
		if (rc != SL_OK)
			goto out;
		if (got < m * size) {
			rc = trace_src_size_error(src, expected);
			goto out;
		}
		for (k = 0; k < m; k++) {
			const unsigned char *b = chunk + k * size;
			uint64_t u = 0;
			int64_t v;
			size_t j;

			for (j = 0; j < size; j++)
				u |= (uint64_t)b[big ? size - 1 - j : j] << (8 * j);
			if (sgn && size < 8 && (u >> (8 * size - 1)) != 0)
				u |= ~(uint64_t)0 << (8 * size); /* sign-extend */
			if (!sgn && u > (uint64_t)SL_MAX_SEQ_LEN) {
				rc = sl_seterr(
				    SL_ERANGE,
				    "%s: byte %llu: element %llu is %llu, above the maximum "
				    "%lld (SL_MAX_SEQ_LEN)",
				    src->name, (unsigned long long)(data_off + (i + k) * size),
				    (unsigned long long)(i + k), (unsigned long long)u,
				    (long long)SL_MAX_SEQ_LEN);
				goto out;
			}
			v = (int64_t)u;
			if (v < 1 || v > SL_MAX_SEQ_LEN) {
				rc = sl_seterr(
				    SL_ERANGE,
				    "%s: byte %llu: element %llu is %lld (lengths must be "
				    "in 1..%lld)",
				    src->name, (unsigned long long)(data_off + (i + k) * size),
				    (unsigned long long)(i + k), (long long)v,
				    (long long)SL_MAX_SEQ_LEN);
				goto out;
			}
			rc = trace_push(src, out, v);
			if (rc != SL_OK)
				goto out;
		}
		i += m;
	}
	rc = trace_src_drain(src, &rest);
	if (rc != SL_OK)
		goto out;
	if (rest != 0)
		rc =
		    sl_seterr(SL_EFORMAT, "%s: %s is %llu bytes, header says %llu (trailing data?)",
		              src->name, src->gzip ? "decompressed data" : "file",
		              (unsigned long long)(expected + rest), (unsigned long long)expected);
out:
	free(text);
	free(chunk);
	return rc;
}
