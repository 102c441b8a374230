/* sluice: readers of sequence-length traces (text, gzip, JSON Lines,
 * Megatron .idx, NumPy .npy) and the built-in synthetic trace. */
#ifndef SLUICE_TRACE_H
#define SLUICE_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sl_trace_kind {
	SL_TRACE_AUTO = 0, /* sniff magic bytes, then the file name */
	SL_TRACE_TEXT,     /* one length per line, '#' comments; gzip or plain */
	SL_TRACE_JSONL,    /* one JSON object per line; gzip or plain */
	SL_TRACE_MEGATRON, /* Megatron indexed dataset .idx (document lengths) */
	SL_TRACE_NPY       /* NumPy .npy, 1-D integer array */
} sl_trace_kind;

/* Default input limits of sl_trace_read. A real trace is far below both
 * (FlexSP's Wikipedia sample: 1,000,000 lengths, ~7 MB of text); they stop a
 * gzip bomb or a lying binary header before it takes the machine's memory:
 * 100M lengths are at most 800 MB of int64, and 4 GiB of decompressed input
 * holds ~400M short text lines. */
#define SL_TRACE_MAX_SEQS_DEFAULT ((size_t)100 * 1000 * 1000)
#define SL_TRACE_MAX_BYTES_DEFAULT ((uint64_t)4 << 30)

typedef struct sl_trace_opts {
	sl_trace_kind kind;
	const char *field; /* JSONL: length field (NULL = "length"; "input_ids" counts an array) */
	/* Most lengths one read may yield (0 = SL_TRACE_MAX_SEQS_DEFAULT); for
	 * Megatron also the most sequences the header may declare. */
	size_t max_seqs;
	/* Most (decompressed) input bytes read (0 = SL_TRACE_MAX_BYTES_DEFAULT). */
	uint64_t max_bytes;
} sl_trace_opts_t;

/* A growable array of lengths. Zero-initialise; free with sl_lengths_free. */
typedef struct sl_lengths {
	int64_t *v;
	size_t n, cap;
} sl_lengths_t;

/* Appends len, growing the array geometrically; SL_ENOMEM leaves l as it was. */
sl_err sl_lengths_push(sl_lengths_t *l, int64_t len);
/* Frees the array and zeroes *l (safe on a zeroed or NULL l). */
void sl_lengths_free(sl_lengths_t *l);

/* Reads every length of a trace into *out (appending). path "-" is stdin
 * (text or JSONL, gzip allowed). Errors name the file and the line or byte
 * offset and what was wrong; a truncated or corrupt file is an error, never a
 * partial read. Lengths must be >= 1. opts may be NULL.
 *
 * Any kind may be gzip-compressed (and stdin may hold any kind). Megatron
 * traces yield document lengths (the sum of each document's sequences).
 * SL_TRACE_AUTO picks the kind from the (decompressed) first bytes: the
 * "MMIDIDX" or "\x93NUMPY" magic, else a .idx/.npy name, else the first
 * character that is neither blank nor in a '#' comment ('{' is JSONL, a digit
 * text), else a .jsonl/.json/.txt name, else text. On error *out is left
 * exactly as it was and sl_errmsg() says what was wrong; a trace with no
 * lengths at all is SL_EFORMAT.
 *
 * Limits: more than opts->max_seqs lengths, or more than opts->max_bytes
 * bytes of (decompressed) input, is SL_ERANGE naming the limit and the CLI
 * flag that sets it (--max-seqs, --max-bytes); a binary header that declares
 * more is refused before anything is allocated. A gzip stream must end with
 * its trailer (CRC-32 and size, checked); one cut anywhere, or followed by
 * data that is not another gzip member, is SL_EFORMAT. */
sl_err sl_trace_read(const char *path, const sl_trace_opts_t *opts, sl_lengths_t *out);

/* Parses a kind name (auto|text|jsonl|megatron|npy); -1 when unknown. */
int sl_trace_kind_parse(const char *name);

/* The name of a kind ("text", ...); "unknown" outside the enum. Static. */
const char *sl_trace_kind_name(sl_trace_kind kind);

/* The built-in default trace: n lengths from a log-normal(mu, sigma) shaped
 * like web text, truncated to [1, max_len], from a fixed-seed generator
 * (identical on every machine). Appends to *out. Truncation: a draw that
 * rounds above max_len is redrawn (so the tail is not piled up at max_len);
 * one that rounds to 0 becomes 1. SL_ERANGE when max_len is so far below the
 * distribution that fewer than 1 in ~30000 draws would fit. */
sl_err sl_trace_synthetic(uint64_t seed, size_t n, double mu, double sigma, int64_t max_len,
                          sl_lengths_t *out);

/* The mean length sl_trace_synthetic draws, analytically: the log-normal
 * truncated at M = max_len + 1/2 has mean exp(mu + sigma^2/2)
 * Phi((ln M - mu - sigma^2) / sigma) / Phi((ln M - mu) / sigma); integer
 * rounding and the floor at 1 are ignored (negligible for web-text shapes). */
double sl_trace_synthetic_mean(double mu, double sigma, int64_t max_len);

/* The Wikipedia sample's fitted parameters (FlexSP), used by the default. */
#define SL_SYNTH_MU 5.95
#define SL_SYNTH_SIGMA 1.258
#define SL_SYNTH_MAX_LEN (192 * 1024)
#define SL_SYNTH_SEED 20250330u

#ifdef __cplusplus
}
#endif
#endif
