/* sluice GPU tests: forked ranks and a file-based bootstrap channel. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kern.h"
#include "mp.h"

typedef struct boot_ctx {
	char dir[256];
	int rank, n;
	unsigned seq;
} boot_ctx_t;

static void nap_ms(int ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&t, NULL);
}

static sl_err boot_bcast(void *ctx, int32_t root, void *buf, size_t len)
{
	boot_ctx_t *b = ctx;
	char path[320], tmp[340];
	unsigned seq = b->seq++;
	snprintf(path, sizeof(path), "%s/bcast.%u", b->dir, seq);
	if (b->rank == root) {
		FILE *f;
		snprintf(tmp, sizeof(tmp), "%s.tmp", path);
		f = fopen(tmp, "wb");
		if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0 ||
		    rename(tmp, path) != 0)
			return sl_seterr(SL_EIO, "boot bcast: writing %s: %s", path, strerror(errno));
		return SL_OK;
	}
	for (int waited = 0; waited < 120000; waited += 2) {
		FILE *f = fopen(path, "rb");
		if (f != NULL) {
			size_t got = fread(buf, 1, len, f);
			fclose(f);
			if (got != len)
				return sl_seterr(SL_EIO, "boot bcast: %s has %zu bytes, want %zu",
				                 path, got, len);
			return SL_OK;
		}
		nap_ms(2);
	}
	return sl_seterr(SL_ETIMEOUT, "boot bcast: no %s after 120 s", path);
}

static sl_err boot_barrier(void *ctx)
{
	boot_ctx_t *b = ctx;
	char path[320];
	unsigned seq = b->seq++;
	FILE *f;
	snprintf(path, sizeof(path), "%s/bar.%u.%d", b->dir, seq, b->rank);
	f = fopen(path, "wb");
	if (f == NULL || fclose(f) != 0)
		return sl_seterr(SL_EIO, "boot barrier: %s: %s", path, strerror(errno));
	for (int waited = 0; waited < 120000; waited += 2) {
		int all = 1;
		for (int r = 0; r < b->n && all; r++) {
			struct stat stt;
			snprintf(path, sizeof(path), "%s/bar.%u.%d", b->dir, seq, r);
			all = stat(path, &stt) == 0;
		}
		if (all)
			return SL_OK;
		nap_ms(2);
	}
	return sl_seterr(SL_ETIMEOUT, "boot barrier %u: not all %d ranks after 120 s", seq, b->n);
}

int mp_run(int n, mp_fn fn, void *arg, int timeout_s)
{
	char tmpl[] = "/tmp/sluice-mp-XXXXXX";
	pid_t *pid = calloc((size_t)n, sizeof(pid_t));
	int rc = 0, left = n;
	time_t t0 = time(NULL);
	if (pid == NULL || mkdtemp(tmpl) == NULL) {
		free(pid);
		return 1;
	}
	fflush(NULL);
	for (int r = 0; r < n; r++) {
		pid[r] = fork();
		if (pid[r] == 0) {
			boot_ctx_t b;
			worker_boot_t boot;
			memset(&b, 0, sizeof(b));
			snprintf(b.dir, sizeof(b.dir), "%s", tmpl);
			b.rank = r;
			b.n = n;
			boot.ctx = &b;
			boot.bcast = boot_bcast;
			boot.barrier = boot_barrier;
			int code = fn(r, n, &boot, arg);
			fflush(NULL);
			_exit(code);
		}
		if (pid[r] < 0) {
			rc = 1;
			n = r;
			left = r;
			break;
		}
	}
	while (left > 0) {
		int status;
		pid_t w = waitpid(-1, &status, WNOHANG);
		if (w > 0) {
			int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
			left--;
			if (code != 0 && rc == 0)
				rc = code;
			if (code != 0) /* a dead rank leaves its peers blocked in NCCL */
				for (int r = 0; r < n; r++)
					if (pid[r] > 0 && pid[r] != w)
						kill(pid[r], SIGTERM);
			for (int r = 0; r < n; r++)
				if (pid[r] == w)
					pid[r] = 0;
			continue;
		}
		if (time(NULL) - t0 > timeout_s) {
			fprintf(stderr, "mp_run: ranks still running after %d s, killing them\n",
			        timeout_s);
			for (int r = 0; r < n; r++)
				if (pid[r] > 0)
					kill(pid[r], SIGKILL);
			if (rc == 0)
				rc = 1;
			timeout_s = 1 << 30;
		}
		nap_ms(5);
	}
	{
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
		if (system(cmd) != 0)
			fprintf(stderr, "mp_run: could not remove %s\n", tmpl);
	}
	free(pid);
	return rc;
}

int mp_gpu_count(void)
{
	pid_t p;
	int status;
	fflush(NULL);
	p = fork();
	if (p == 0) {
		int n = 0;
		if (kern_device_count(&n) != SL_OK)
			n = 0;
		_exit(n > 100 ? 100 : n);
	}
	if (p < 0 || waitpid(p, &status, 0) != p || !WIFEXITED(status))
		return 0;
	return WEXITSTATUS(status);
}
