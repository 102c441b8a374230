/* Unit tests of the sidecar's pieces without processes: the option table
 * (config file, command line, --help), the zigzag shard rule of work
 * orders, plan and work-order round trips through the wire, the bounded
 * decoder, key and authorised-keys parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "comm.h"
#include "daemon.h"
#include "harness.h"

static void test_config_text(void **state)
{
	(void)state;
	daemon_config_t c;
	daemon_config_defaults(&c);
	assert_int_equal(c.threads, 2);
	assert_int_equal(c.max_request_bytes, 16 << 20);
	const char *text = "# comment\n\n  threads 4\nqueue_max = 10\nqueue-max=11\n"
	                   "policy \"static\"\nallow_plain_tcp yes\nmax_request_bytes 2m\r\n"
	                   "record /tmp/x y\n";
	assert_int_equal(daemon_config_parse_text(&c, text, strlen(text), "t.conf"), SL_OK);
	assert_int_equal(c.threads, 4);
	assert_int_equal(c.queue_max, 11);
	assert_string_equal(c.policy, "static");
	assert_int_equal(c.allow_plain_tcp, 1);
	assert_int_equal(c.max_request_bytes, 2 << 20);
	assert_string_equal(c.record, "/tmp/x y");

	const struct {
		const char *text, *msg;
		sl_err code;
	} bad[] = {
		{"threads 4\nbogus 1\n", "t.conf:2: unknown option 'bogus'", SL_EINVAL},
		{"threads four\n", "t.conf:1: threads: 'four' is not an integer", SL_EINVAL},
		{"threads 65\n", "t.conf:1: threads: 65 is outside [1, 64]", SL_ERANGE},
		{"\n\nallow_plain_tcp maybe\n", "t.conf:3: allow_plain_tcp: 'maybe' is not yes or no",
		 SL_EINVAL},
		{"policy nope\n", "t.conf:1: policy: unknown policy 'nope'", SL_ENOTFOUND},
		{"endpoint udp://x\n", "t.conf:1: endpoint: endpoint 'udp://x'", SL_EINVAL},
		{"endpoint ipc://@abstract\n", "abstract ipc sockets have no permissions", SL_EINVAL},
		{"log_level loud\n", "'loud' is not a level", SL_EINVAL},
		{"max_request_bytes 5q\n", "suffix k, m or g allowed", SL_EINVAL},
		{"record \"unterminated\n", "unterminated quoted value", SL_EFORMAT},
		{"threads 99999999999999999999\n", "is not an integer", SL_EINVAL},
		{"profile_dir /no/such/dir\n", "is not a directory", SL_ENOTFOUND},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		daemon_config_defaults(&c);
		sl_err rc = daemon_config_parse_text(&c, bad[i].text, strlen(bad[i].text), "t.conf");
		if (rc != bad[i].code || strstr(sl_errmsg(), bad[i].msg) == NULL)
			fail_msg("case %zu: got %s '%s', want %s '%s'", i, sl_errname(rc), sl_errmsg(),
			         sl_errname(bad[i].code), bad[i].msg);
	}
}

static void test_config_args_and_help(void **state)
{
	(void)state;
	char path[300];
	snprintf(path, sizeof(path), "%s/a.conf", th_tmpdir());
	assert_true(th_write_file(path, "threads 3\npolicy static\nqueue_max 7\n", 0644));
	char *argv[] = {"sluiced",       "--config",       path, "--threads=5", "--allow-plain-tcp",
	                "--record",      "/tmp/r.trace",   "--endpoint", "ipc:///tmp/q.sock", NULL};
	daemon_args_t a;
	assert_int_equal(daemon_args_parse(9, argv, &a), SL_OK);
	daemon_config_t c;
	assert_int_equal(daemon_config_build(&a, &c), SL_OK);
	assert_int_equal(c.threads, 5);    /* the command line wins */
	assert_int_equal(c.queue_max, 7);  /* from the file */
	assert_int_equal(c.allow_plain_tcp, 1);
	assert_string_equal(c.record, "/tmp/r.trace");
	assert_string_equal(c.default_profile.name, "gpt-7b-flexsp");
	daemon_args_fini(&a);

	char *bad1[] = {"sluiced", "--no-such-flag", "1", NULL};
	assert_int_equal(daemon_args_parse(3, bad1, &a), SL_EINVAL);
	assert_non_null(strstr(sl_errmsg(), "unknown option '--no-such-flag'"));
	daemon_args_fini(&a);
	char *bad2[] = {"sluiced", "--threads", NULL};
	assert_int_equal(daemon_args_parse(2, bad2, &a), SL_EINVAL);
	daemon_args_fini(&a);
	char *bad3[] = {"sluiced", "--threads", "0", NULL};
	assert_int_equal(daemon_args_parse(3, bad3, &a), SL_OK);
	assert_int_equal(daemon_config_build(&a, &c), SL_ERANGE);
	assert_non_null(strstr(sl_errmsg(), "--threads: threads: 0 is outside [1, 64]"));
	daemon_args_fini(&a);
	/* tcp needs CURVE or an explicit opt-out */
	char *bad4[] = {"sluiced", "--endpoint", "tcp://127.0.0.1:5555", NULL};
	assert_int_equal(daemon_args_parse(3, bad4, &a), SL_OK);
	assert_int_equal(daemon_config_build(&a, &c), SL_EDENIED);
	daemon_args_fini(&a);

	/* --help lists every option of the table with its default */
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	daemon_config_help(f);
	fclose(f);
	for (size_t i = 0; i < daemon_nopts; i++) {
		char flag[64];
		snprintf(flag, sizeof(flag), "--%s ", daemon_opts[i].name);
		for (char *p = flag + 2; *p; p++)
			if (*p == '_')
				*p = '-';
		assert_non_null(strstr(buf, flag));
	}
	assert_non_null(strstr(buf, "(default: 16m)"));
	free(buf);
}

/* Every token of a sequence is held by exactly one ring position, and
 * position i holds chunks i and 2d-1-i. */
static void test_zigzag_cover(void **state)
{
	(void)state;
	for (int32_t d = 1; d <= 9; d++) {
		int32_t ranks[9];
		for (int32_t i = 0; i < d; i++)
			ranks[i] = 8 - i; /* any ring order */
		for (int64_t s = 1; s <= 70; s += 3) {
			sl_seq_t seq = {1000 + s, s};
			sl_plan_t *p = sl_plan_new("t", "t", 9, 9, 1 << 20, &seq, 1);
			assert_int_equal(sl_plan_add_slot(p), SL_OK);
			assert_int_equal(sl_plan_add_group(p, ranks, d), SL_OK);
			assert_int_equal(sl_plan_add_item(p, 0, 0.25), SL_OK);
			int *hit = calloc((size_t)s, sizeof(int));
			for (int32_t pos = 0; pos < d; pos++) {
				sl_work_order_t *o = NULL;
				assert_int_equal(sl_work_order_from_plan(p, NULL, ranks[pos], "j", 3, &o),
				                 SL_OK);
				assert_int_equal(o->ngroups, 1);
				const sl_order_group_t *g = &o->groups[0];
				assert_int_equal(g->position, pos);
				assert_int_equal(g->next_rank, ranks[(pos + 1) % d]);
				assert_int_equal(g->prev_rank, ranks[(pos + d - 1) % d]);
				const sl_shard_t *sh = &g->shards[0];
				assert_int_equal(sh->id, 1000 + s);
				assert_int_equal(sh->padded, sl_cost_padded(s, d));
				assert_true(sh->offload == 0.25);
				if (d > 1) {
					assert_int_equal(sh->chunk[0], pos);
					assert_int_equal(sh->chunk[1], 2 * d - 1 - pos);
					assert_int_equal(sh->chunk_tokens * 2 * d, sh->padded);
				}
				for (int c = 0; c < 2; c++)
					for (int64_t t = sh->begin[c]; t < sh->end[c]; t++)
						hit[t]++;
				sl_work_order_free(&o);
				assert_null(o);
			}
			for (int64_t t = 0; t < s; t++)
				assert_int_equal(hit[t], 1);
			free(hit);
			/* a rank outside every group gets an empty order */
			sl_work_order_t *o = NULL;
			if (d < 9) {
				assert_int_equal(sl_work_order_from_plan(p, NULL, 0, "j", 3, &o), SL_OK);
				assert_int_equal(o->ngroups, 0);
				sl_work_order_free(&o);
			}
			assert_int_equal(sl_work_order_from_plan(p, NULL, 9, "j", 3, &o), SL_ERANGE);
			sl_plan_free(&p);
		}
	}
}

/* Encodes a message in an envelope and decodes it again. */
static Sluice__Envelope *wire_roundtrip(Sluice__Envelope *env)
{
	void *buf;
	size_t len;
	env->version = 1;
	assert_int_equal(comm_encode(env, &buf, &len), SL_OK);
	Sluice__Envelope *back = NULL;
	assert_int_equal(comm_decode(buf, len, &back), SL_OK);
	free(buf);
	return back;
}

static void test_plan_and_order_roundtrip(void **state)
{
	(void)state;
	int64_t len[30];
	th_lengths(2, len, 30, 40000);
	sl_plan_req_t r = th_req("rt", 1, len, 30);
	char *want = th_local_plan_json(&r);
	sl_plan_t *p = NULL;
	assert_int_equal(sl_plan_parse_json(want, "local", &p), SL_OK);
	comm_arena_t a = {0};
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	Sluice__Plan m;
	assert_int_equal(comm_plan_to_proto(p, &a, &m), SL_OK);
	env.body_case = SLUICE__ENVELOPE__BODY_PLAN;
	env.plan = &m;
	Sluice__Envelope *back = wire_roundtrip(&env);
	sl_plan_t *q = NULL;
	assert_int_equal(comm_plan_from_proto(back->plan, &q), SL_OK);
	char *got = sl_plan_to_json(q);
	assert_string_equal(got, want);
	free(got);
	/* a tampered plan is refused, naming the place */
	back->plan->slots[0]->groups[0]->ranks[0] = 99;
	sl_plan_free(&q);
	assert_int_equal(comm_plan_from_proto(back->plan, &q), SL_EPROTO);
	assert_non_null(strstr(sl_errmsg(), "plan.slots[0].groups[0].ranks[0] = 99"));
	comm_envelope_free(&back);

	/* a work order survives the wire; a shard moved off the zigzag rule
	 * does not */
	sl_work_order_t *o = NULL, *o2 = NULL;
	int32_t rank = sl_group_ranks(p, &p->groups[0])[0];
	assert_int_equal(sl_work_order_from_plan(p, NULL, rank, "rt", 5, &o), SL_OK);
	Sluice__WorkOrder wm;
	assert_int_equal(comm_order_to_proto(o, &a, &wm), SL_OK);
	Sluice__Envelope e2 = SLUICE__ENVELOPE__INIT;
	e2.body_case = SLUICE__ENVELOPE__BODY_WORK_ORDER;
	e2.work_order = &wm;
	back = wire_roundtrip(&e2);
	assert_int_equal(comm_order_from_proto(back->work_order, &o2), SL_OK);
	assert_int_equal(o2->ngroups, o->ngroups);
	assert_int_equal(o2->step, 5);
	assert_string_equal(o2->job, "rt");
	for (int32_t g = 0; g < o->ngroups; g++) {
		assert_int_equal(o2->groups[g].nshards, o->groups[g].nshards);
		for (int32_t k = 0; k < o->groups[g].nshards; k++)
			assert_memory_equal(&o2->groups[g].shards[k], &o->groups[g].shards[k],
			                    sizeof(sl_shard_t));
	}
	sl_work_order_free(&o2);
	back->work_order->groups[0]->shards[0]->end0 += 1;
	assert_int_equal(comm_order_from_proto(back->work_order, &o2), SL_EPROTO);
	assert_non_null(strstr(sl_errmsg(), "zigzag"));
	comm_envelope_free(&back);
	sl_work_order_free(&o);
	comm_arena_free(&a);
	sl_plan_free(&p);
	sl_plan_free(&q);
	free(want);
}

/* Many empty nested messages cost far more memory than wire bytes; the
 * decoder's budget refuses them. */
static void test_decode_budget(void **state)
{
	(void)state;
	size_t n = 200000;
	Sluice__StatusReply r = SLUICE__STATUS_REPLY__INIT;
	Sluice__JobStatus js = SLUICE__JOB_STATUS__INIT;
	Sluice__JobStatus **jobs = malloc(sizeof(*jobs) * n);
	for (size_t i = 0; i < n; i++)
		jobs[i] = &js;
	r.jobs = jobs;
	r.n_jobs = n;
	Sluice__Envelope env = SLUICE__ENVELOPE__INIT;
	env.version = 1;
	env.body_case = SLUICE__ENVELOPE__BODY_STATUS_REPLY;
	env.status_reply = &r;
	void *buf;
	size_t len;
	assert_int_equal(comm_encode(&env, &buf, &len), SL_OK);
	Sluice__Envelope *back = NULL;
	assert_int_equal(comm_decode(buf, len, &back), SL_EPROTO);
	assert_non_null(strstr(sl_errmsg(), "too many nested messages"));
	assert_null(back);
	free(buf);
	free(jobs);
}

static void test_key_parsing(void **state)
{
	(void)state;
	char pub[41], sec[41], out[41];
	assert_int_equal(zmq_curve_keypair(pub, sec), 0);
	char text[256];
	snprintf(text, sizeof(text), "# c\n\n   %s trailing words\n", pub);
	assert_int_equal(comm_key_parse(text, strlen(text), "k", out), SL_OK);
	assert_string_equal(out, pub);
	assert_int_equal(comm_key_parse("# only comments\n", 16, "k", out), SL_EFORMAT);
	assert_int_equal(comm_key_parse("short\n", 6, "k", out), SL_EFORMAT);
	assert_non_null(strstr(sl_errmsg(), "k:1: not a CURVE key"));
	char bad[64];
	snprintf(bad, sizeof(bad), "%s", pub);
	bad[5] = '~'; /* not Z85 */
	assert_int_equal(comm_key_parse(bad, strlen(bad), "k", out), SL_EFORMAT);

	comm_keyset_t ks;
	snprintf(text, sizeof(text), "# keys\n%s alice\n\n%s\n", pub, sec);
	assert_int_equal(comm_keyset_parse(text, strlen(text), "ak", &ks), SL_OK);
	assert_int_equal(ks.n, 2);
	uint8_t bin[32];
	zmq_z85_decode(bin, pub);
	assert_true(comm_keyset_has(&ks, bin));
	bin[0] ^= 1;
	assert_false(comm_keyset_has(&ks, bin));
	comm_keyset_fini(&ks);
	snprintf(text, sizeof(text), "%s\nnot-a-key\n", pub);
	assert_int_equal(comm_keyset_parse(text, strlen(text), "ak", &ks), SL_EFORMAT);
	assert_non_null(strstr(sl_errmsg(), "ak:2:"));
	assert_null(ks.keys);
}

static void test_names(void **state)
{
	(void)state;
	assert_true(comm_job_name_ok("team/run-7:a@b+c_d.e"));
	assert_false(comm_job_name_ok(""));
	assert_false(comm_job_name_ok("with space"));
	char longname[200];
	memset(longname, 'a', sizeof(longname));
	longname[128] = '\0';
	assert_true(comm_job_name_ok(longname));
	longname[128] = 'a';
	longname[129] = '\0';
	assert_false(comm_job_name_ok(longname));
	assert_true(comm_simple_name_ok("gpt-7b-flexsp"));
	assert_false(comm_simple_name_ok("../x"));
	assert_false(comm_simple_name_ok(".hidden"));
	assert_false(comm_simple_name_ok("a/b"));
	int tcp;
	char path[64];
	assert_int_equal(comm_endpoint_parse("ipc:///run/s.sock", &tcp, path, sizeof(path)), SL_OK);
	assert_string_equal(path, "/run/s.sock");
	assert_int_equal(comm_endpoint_parse("tcp://h:1", &tcp, NULL, 0), SL_OK);
	assert_int_equal(tcp, 1);
	assert_int_equal(comm_endpoint_parse("tcp://h", &tcp, NULL, 0), SL_EINVAL);
	assert_int_equal(comm_endpoint_parse("inproc://x", &tcp, NULL, 0), SL_EINVAL);
	char ep[256];
	setenv("SLUICE_ENDPOINT", "ipc:///x/y.sock", 1);
	assert_string_equal(sl_default_endpoint(ep, sizeof(ep)), "ipc:///x/y.sock");
	unsetenv("SLUICE_ENDPOINT");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_text),
		cmocka_unit_test(test_config_args_and_help),
		cmocka_unit_test(test_zigzag_cover),
		cmocka_unit_test(test_plan_and_order_roundtrip),
		cmocka_unit_test(test_decode_budget),
		cmocka_unit_test(test_key_parsing),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
