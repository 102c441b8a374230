/* sluice trace: internal umbrella header shared by the trace readers.
 *
 * Every reader pulls bytes from one trace_src_t: a file descriptor read
 * directly, or through zlib's inflate when the data starts with the gzip
 * magic, so plain files, gzip files and stdin all look the same. (Not
 * gzread: it returns a clean end of file for a gzip stream cut inside its
 * trailer whenever the output so far filled the caller's buffer exactly.)
 * Offsets in error messages are offsets in that (decompressed) byte stream. */
#ifndef SLUICE_TRACE_IMPL_H
#define SLUICE_TRACE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/profile.h"
#include "sluice/trace.h"

/* Read buffer of a source; also the window the auto-detection sniffs. */
#define TRACE_BUF_SIZE ((size_t)1 << 16)
/* Longest text/JSONL line accepted: a JSONL line of a few million token ids
 * fits, a binary file misread as text fails with a clear error instead of
 * growing without bound. */
#define TRACE_MAX_LINE ((size_t)1 << 28)

typedef struct trace_src {
	int fd;             /* -1 when closed */
	int own_fd;         /* 0 for stdin, which stays open */
	z_stream z;         /* gzip: the inflate state; plain: next_in/avail_in only */
	int z_live;         /* inflateInit2 succeeded (inflateEnd owed) */
	int member_done;    /* gzip: the current member ended with a good trailer */
	int in_eof;         /* the file has no more (compressed) bytes */
	unsigned char *in;  /* compressed input buffer, TRACE_BUF_SIZE bytes, owned */
	uint64_t in_total;  /* compressed bytes read from the file so far */
	uint64_t max_bytes; /* most decompressed bytes accepted */
	size_t max_seqs;    /* most lengths one read may append */
	size_t n0;          /* out->n when the read started */
	const char *name;   /* path for messages ("<stdin>" for "-"); borrowed */
	unsigned char *buf; /* cap bytes, owned */
	size_t cap;         /* allocated size of buf */
	size_t len, pos;    /* valid bytes in buf; next unread byte */
	uint64_t base;      /* stream offset of buf[0] */
	int eof;            /* the stream has no more bytes */
	int gzip;           /* 1 when the stream is gzip-compressed */
	int64_t file_size;  /* size of a plain regular file, else -1 */
	uint64_t line;      /* number of the last line returned by trace_src_line */
} trace_src_t;

/* Opens path ("-" is stdin, which stays open) with the read limits
 * max_bytes (decompressed bytes) and max_seqs (lengths appended after n0
 * entries of the output), and fills the first buffer. On failure *src holds
 * nothing to close and the error is set. */
sl_err trace_src_open(trace_src_t *src, const char *path, uint64_t max_bytes, size_t max_seqs,
                      size_t n0);

/* Releases the stream (rc is the caller's status, returned unchanged). */
sl_err trace_src_close(trace_src_t *src, sl_err rc);

/* Appends len to out unless that makes more than src->max_seqs lengths in
 * this read (SL_ERANGE naming the limit); every reader pushes through it. */
sl_err trace_push(trace_src_t *src, sl_lengths_t *out, int64_t len);

/* SL_ERANGE when a binary header declares more than the limits allow:
 * count lengths of `what` or `bytes` bytes of data; SL_OK otherwise. */
sl_err trace_check_declared(trace_src_t *src, uint64_t count, const char *what, uint64_t bytes);

/* Offset in the stream of the next unread byte. */
static inline uint64_t trace_src_tell(const trace_src_t *src)
{
	return src->base + src->pos;
}

/* Makes at least want unread bytes available in src->buf[pos..len) unless
 * the stream ends first (then fewer are, and src->eof is set). want must be
 * <= TRACE_MAX_LINE. Truncated or corrupt gzip data is an error. */
sl_err trace_src_need(trace_src_t *src, size_t want);

/* Copies up to n bytes to dst; *got is less than n only at the end of the
 * stream. */
sl_err trace_src_read(trace_src_t *src, void *dst, size_t n, size_t *got);

/* Reads and discards everything left, adding its size to *count. */
sl_err trace_src_drain(trace_src_t *src, uint64_t *count);

/* Sets and returns SL_EFORMAT for binary data whose size is not the
 * header's expected bytes, naming the actual size; a stream (no file size)
 * is drained to count it. */
sl_err trace_src_size_error(trace_src_t *src, uint64_t expected);

/* Returns the next line (without its newline) in *line and *len, valid until the
 * next call; *more is 0 at the end of the stream. Counts src->line. */
sl_err trace_src_line(trace_src_t *src, const char **line, size_t *len, int *more);

/* Writes a printable, quoted, shortened copy of s[0..n) into out (for error
 * messages); returns out. */
const char *trace_quote(const char *s, size_t n, char *out, size_t outsz);

/* The readers: each appends to out and returns SL_OK, or sets an error
 * naming src->name and the line or byte offset. out may hold a partial
 * result on error (sl_trace_read rolls it back). */
sl_err trace_read_text(trace_src_t *src, sl_lengths_t *out);
sl_err trace_read_jsonl(trace_src_t *src, const char *field, sl_lengths_t *out);
sl_err trace_read_megatron(trace_src_t *src, sl_lengths_t *out);
sl_err trace_read_npy(trace_src_t *src, sl_lengths_t *out);

/* Deterministic elementary functions for the synthetic trace: only IEEE-754
 * +, -, *, / and exact scaling, so every machine gets the same bits (the
 * file is compiled with -ffp-contract=off). Relative error ~1e-15. */
double trace_exp(double x);
double trace_log(double x);

/* The generator: xoshiro256** seeded through splitmix64. */
typedef struct trace_rng {
	uint64_t s[4];
	double spare; /* the polar method's second variate */
	int has_spare;
} trace_rng_t;

void trace_rng_seed(trace_rng_t *r, uint64_t seed);
uint64_t trace_rng_next(trace_rng_t *r);
/* Uniform double in [0, 1) with 53 random bits. */
double trace_rng_uniform(trace_rng_t *r);
/* Standard normal variate (Marsaglia's polar form of Box-Muller). */
double trace_rng_normal(trace_rng_t *r);

#endif
