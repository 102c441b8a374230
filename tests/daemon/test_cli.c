/* The daemon's CLI commands as a user runs them (the real `sluice`
 * binary against a real sluiced): `submit` prints exactly what `plan
 * --format json` prints for the same flags, errors name the daemon's field
 * and exit 1, `status` shows jobs (table and JSON), `keygen` writes a
 * usable keypair and never overwrites one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static th_daemon_t daemon_;
static char endpoint[300], dir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "%s", th_tmpdir());
	snprintf(endpoint, sizeof(endpoint), "ipc://%s/cli.sock", dir);
	const char *args[] = {"--endpoint", endpoint, "--log-level", "error", NULL};
	return th_daemon_start(&daemon_, args, NULL) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return th_daemon_stop(&daemon_) == 0 ? 0 : -1;
}

/* Runs `sluice ARGS` with stdout to out_path and stderr to err_path;
 * returns its exit status. */
static int run_cli(const char *const args[], const char *out_path, const char *err_path)
{
	pid_t pid = fork();
	if (pid == 0) {
		char *argv[40];
		int n = 0;
		argv[n++] = (char *)SLUICE_CLI_BIN;
		for (int i = 0; args[i] != NULL && n < 38; i++)
			argv[n++] = (char *)args[i];
		argv[n] = NULL;
		if (freopen(out_path, "w", stdout) == NULL || freopen(err_path, "w", stderr) == NULL)
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_submit_matches_plan(void **state)
{
	(void)state;
	char lens[300], out1[300], out2[300], err[300];
	snprintf(lens, sizeof(lens), "%s/batch.txt", dir);
	snprintf(out1, sizeof(out1), "%s/submit.json", dir);
	snprintf(out2, sizeof(out2), "%s/plan.json", dir);
	snprintf(err, sizeof(err), "%s/err.txt", dir);
	int64_t len[200];
	th_lengths(31, len, 200, 90000);
	char *text = malloc(200 * 24), *p = text;
	for (int i = 0; i < 200; i++)
		p += sprintf(p, "%lld\n", (long long)len[i]);
	assert_true(th_write_file(lens, text, 0644));
	free(text);
	const char *policies[] = {"static", "batch-adaptive", NULL};
	const char *formats[] = {"json", "table", "csv"};
	for (int k = 0; policies[k] != NULL; k++) {
		for (int f = 0; f < 3; f++) {
			const char *sub[] = {"submit",  "-e",       endpoint,   "--policy", policies[k],
			                     "--ranks", "32",       "--job",    "cli-job",  "--step",
			                     "4",       "--format", formats[f], lens,       NULL};
			assert_int_equal(run_cli(sub, out1, err), 0);
			const char *pl[] = {"plan",  "--format", formats[f], "--policy", policies[k],
			                    "--ranks", "32",     lens,       NULL};
			assert_int_equal(run_cli(pl, out2, err), 0);
			char *a = th_read_file(out1), *b = th_read_file(out2);
			if (f == 0)
				assert_non_null(strstr(a, "\"format\": \"sluice.plan/1\""));
			assert_string_equal(a, b); /* printed exactly as `sluice plan` prints it */
			free(a);
			free(b);
		}
	}
	/* two policies x three formats = 6 plans for test_status */
	/* a bad request: exit 1 and the daemon's message with its field */
	const char *bad[] = {"submit", "-e", endpoint, "--policy", "no-such", lens, NULL};
	assert_int_equal(run_cli(bad, out1, err), 1);
	char *e = th_read_file(err);
	assert_non_null(strstr(e, "unknown policy 'no-such'"));
	assert_non_null(strstr(e, "[field plan_request.policy]"));
	free(e);
	/* no daemon there: a timeout, exit 1 */
	char nowhere[300];
	snprintf(nowhere, sizeof(nowhere), "ipc://%s/nobody.sock", dir);
	const char *none[] = {"submit", "-e", nowhere, "--timeout", "300", lens, NULL};
	assert_int_equal(run_cli(none, out1, err), 1);
	e = th_read_file(err);
	assert_non_null(strstr(e, "no reply"));
	free(e);
}

static void test_status(void **state)
{
	(void)state;
	char out[300], err[300];
	snprintf(out, sizeof(out), "%s/status.txt", dir);
	snprintf(err, sizeof(err), "%s/err.txt", dir);
	const char *st[] = {"status", "-e", endpoint, NULL};
	assert_int_equal(run_cli(st, out, err), 0);
	char *t = th_read_file(out);
	assert_non_null(strstr(t, "job cli-job: 6 plans"));
	assert_non_null(strstr(t, "batch-adaptive"));
	free(t);
	const char *js[] = {"status", "-e", endpoint, "--format", "json", "--job", "cli-job", NULL};
	assert_int_equal(run_cli(js, out, err), 0);
	t = th_read_file(out);
	assert_non_null(strstr(t, "\"format\": \"sluice.status/1\""));
	assert_non_null(strstr(t, "\"step\": 4"));
	free(t);
	const char *nojob[] = {"status", "-e", endpoint, "--job", "nope", NULL};
	assert_int_equal(run_cli(nojob, out, err), 1);
}

static void test_keygen(void **state)
{
	(void)state;
	char base[300], out[300], err[300], path[320];
	snprintf(base, sizeof(base), "%s/cli-key", dir);
	snprintf(out, sizeof(out), "%s/kg.txt", dir);
	snprintf(err, sizeof(err), "%s/err.txt", dir);
	const char *kg[] = {"keygen", base, NULL};
	assert_int_equal(run_cli(kg, out, err), 0);
	struct stat st;
	snprintf(path, sizeof(path), "%s.key", base);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	char key[SL_KEY_Z85_LEN + 1];
	assert_int_equal(sl_key_read(path, 1, key), SL_OK);
	snprintf(path, sizeof(path), "%s.pub", base);
	assert_int_equal(sl_key_read(path, 0, key), SL_OK);
	assert_int_equal(run_cli(kg, out, err), 1); /* never overwrites */
	const char *none[] = {"keygen", NULL};
	assert_int_equal(run_cli(none, out, err), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_submit_matches_plan),
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_keygen),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
