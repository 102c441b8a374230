/* sluice trace: libFuzzer target for every trace reader.
 *
 * Each input is written to a file and read with every kind (auto, text,
 * JSONL, Megatron, NumPy); any outcome but a crash, a sanitizer report or a
 * leak is fine, but an error must come with a message and a success must
 * leave only valid lengths. Built when SLUICE_FUZZ is ON (clang). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/profile.h"
#include "sluice/trace.h"

static char fuzz_path[4096];

/* Creates the scratch file once per process: in $TMPDIR, else in /dev/shm
 * (memory, so thousands of rewrites per second cost no disk), else /tmp. */
static int fuzz_setup(void)
{
	const char *tmp = getenv("TMPDIR");
	int fd;

	if (fuzz_path[0] != '\0')
		return 0;
	if (tmp == NULL || tmp[0] == '\0')
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(fuzz_path, sizeof(fuzz_path), "%s/sluice-fuzz-trace-XXXXXX", tmp);
	fd = mkstemp(fuzz_path);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static void fuzz_cleanup(void)
{
	if (fuzz_path[0] != '\0')
		unlink(fuzz_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const sl_trace_kind kinds[] = {SL_TRACE_AUTO, SL_TRACE_TEXT, SL_TRACE_JSONL,
	                                      SL_TRACE_MEGATRON, SL_TRACE_NPY};
	static int registered;
	FILE *f;
	size_t k;

	if (fuzz_setup() != 0)
		abort();
	if (!registered) {
		atexit(fuzz_cleanup);
		registered = 1;
	}
	f = fopen(fuzz_path, "wb");
	if (f == NULL)
		abort();
	if (size > 0 && fwrite(data, 1, size, f) != size)
		abort();
	if (fclose(f) != 0)
		abort();
	for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		/* the first byte also picks the JSONL field */
		sl_trace_opts_t opts = {.kind = kinds[k],
		                        .field = size > 0 && (data[0] & 1) ? "input_ids" : NULL};
		sl_lengths_t l = {0};
		sl_err rc = sl_trace_read(fuzz_path, &opts, &l);
		size_t i;

		if (rc != SL_OK) {
			if (l.n != 0 || sl_errmsg()[0] == '\0')
				abort(); /* partial read or an error without a message */
		} else {
			if (l.n == 0)
				abort();
			for (i = 0; i < l.n; i++)
				if (l.v[i] < 1 || l.v[i] > SL_MAX_SEQ_LEN)
					abort();
		}
		sl_lengths_free(&l);
	}
	return 0;
}
