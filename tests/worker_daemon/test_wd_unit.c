/* wd_unit: the pieces of serving sluiced in one process. A work order as
 * sluiced builds it (sl_work_order_from_plan) becomes exactly the work
 * descriptors a `--plan` run derives from the same plan; malformed orders
 * are refused with a message naming the problem; the mesh keeps steps apart
 * (epochs) and gives up when told to stop; the run directory derived from a
 * job is stable, private and short enough for ipc sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sluice/client.h"
#include "sluice/policy.h"
#include "worker.h"

static const worker_shape_t shape = {.heads = 4, .kv_heads = 2, .head_dim = 8};

/* A profile whose ranks hold 64 tokens each, so groups of several ranks form. */
static sl_profile_t tiny_profile(void)
{
	sl_profile_t p = *sl_profile_preset("gpt-7b-flexsp");
	snprintf(p.name, sizeof p.name, "wd-tiny");
	p.params = 0;
	p.model_state_bytes = 0;
	p.act_bytes_per_token = 1e6;
	p.gpu_mem_bytes = 64e6;
	p.max_offload = 0; /* no offloading either: long sequences must use rings */
	return p;
}

static sl_plan_t *make_plan(const char *policy, int32_t sp, int32_t ranks)
{
	sl_profile_t prof = tiny_profile();
	sl_cluster_t cl = {.ranks = ranks, .ranks_per_node = ranks};
	sl_cost_t cost;
	assert_int_equal(sl_cost_init(&cost, &prof, &cl), SL_OK);
	const int64_t len[] = {120, 90, 61, 33, 20, 12, 7, 5, 1, 64};
	sl_seq_t seqs[10];
	for (int i = 0; i < 10; i++) {
		seqs[i].id = 1000 + i;
		seqs[i].length = len[i];
	}
	sl_policy_opts_t opts = {.sp = sp};
	sl_plan_t *plan = NULL;
	if (sl_plan_request(policy, &cost, seqs, 10, &opts, &plan) != SL_OK)
		fail_msg("plan %s: %s", policy, sl_errmsg());
	sl_cost_fini(&cost);
	return plan;
}

/* Both derivations agree field by field for every rank. */
static void check_same_orders(const sl_plan_t *plan)
{
	int multi = 0;
	for (int32_t r = 0; r < plan->ranks; r++) {
		worker_order_t *a = NULL, *b = NULL;
		sl_work_order_t *wo = NULL;
		assert_int_equal(worker_order_build(plan, r, &shape, &a), SL_OK);
		assert_int_equal(sl_work_order_from_plan(plan, NULL, r, "j", 7, &wo), SL_OK);
		if (worker_order_from_wire(wo, &shape, &b) != SL_OK)
			fail_msg("rank %d: %s", (int)r, sl_errmsg());
		assert_int_equal(a->rank, b->rank);
		assert_int_equal(a->nranks, b->nranks);
		assert_int_equal(a->nwork, b->nwork);
		for (int32_t i = 0; i < a->nwork; i++) {
			const worker_group_work_t *x = &a->work[i], *y = &b->work[i];
			assert_int_equal(x->slot, y->slot);
			assert_int_equal(y->group, -1);
			assert_int_equal(x->slot_group, y->slot_group);
			assert_int_equal(x->group - plan->slots[x->slot].group_off, x->slot_group);
			assert_int_equal(x->d, y->d);
			assert_int_equal(x->ring_pos, y->ring_pos);
			assert_memory_equal(x->ring, y->ring, (size_t)x->d * sizeof(int32_t));
			assert_int_equal(x->prev_rank, y->prev_rank);
			assert_int_equal(x->next_rank, y->next_rank);
			assert_int_equal(x->nseqs, y->nseqs);
			assert_int_equal(x->ntok, y->ntok);
			assert_int_equal(x->heads, y->heads);
			assert_int_equal(x->kv_heads, y->kv_heads);
			assert_int_equal(x->head_dim, y->head_dim);
			assert_true(x->scale == y->scale);
			for (int32_t k = 0; k < x->nseqs; k++) {
				const worker_seq_shard_t *p = &x->seqs[k], *q = &y->seqs[k];
				assert_int_equal(p->seq, q->seq);
				assert_int_equal(p->id, q->id);
				assert_int_equal(p->len, q->len);
				assert_int_equal(p->padded, q->padded);
				assert_int_equal(p->chunk, q->chunk);
				assert_int_equal(p->local_off, q->local_off);
				assert_int_equal(p->local_len, q->local_len);
			}
			multi |= x->d > 1;
		}
		worker_order_free(&a);
		worker_order_free(&b);
		sl_work_order_free(&wo);
	}
	assert_true(multi); /* the comparison covered rings, not only d == 1 */
}

static void test_wire_matches_plan(void **state)
{
	(void)state;
	sl_plan_t *p = make_plan("static", 2, 4);
	check_same_orders(p);
	sl_plan_free(&p);
	p = make_plan("sluice", 0, 4);
	check_same_orders(p);
	sl_plan_free(&p);
}

/* Takes rank 0's order of a static --sp 2 plan, breaks it with `how`, and
 * expects SL_EINVAL with `want` in the message. */
static void expect_refused(void (*how)(sl_work_order_t *), const char *want)
{
	sl_plan_t *p = make_plan("static", 2, 4);
	sl_work_order_t *wo = NULL;
	worker_order_t *o = NULL;
	assert_int_equal(sl_work_order_from_plan(p, NULL, 0, "j", 3, &wo), SL_OK);
	assert_true(wo->ngroups >= 2);
	how(wo);
	assert_int_equal(worker_order_from_wire(wo, &shape, &o), SL_EINVAL);
	assert_null(o);
	if (!strstr(sl_errmsg(), want))
		fail_msg("message '%s' lacks '%s'", sl_errmsg(), want);
	sl_work_order_free(&wo);
	sl_plan_free(&p);
}

static void twice_in_ring(sl_work_order_t *o)
{
	o->groups[0].ranks[1] = o->groups[0].ranks[0];
	o->groups[0].next_rank = o->groups[0].prev_rank = o->groups[0].ranks[0];
}
static void wrong_position(sl_work_order_t *o)
{
	o->groups[0].position = 1;
}
static void wrong_padding(sl_work_order_t *o)
{
	o->groups[0].shards[0].padded += 4;
}
static void rank_outside(sl_work_order_t *o)
{
	o->groups[0].ranks[1] = 9;
	o->groups[0].next_rank = o->groups[0].prev_rank = 9;
}
static void slots_backwards(sl_work_order_t *o)
{
	o->groups[1].slot = o->groups[0].slot;
}
static void sequence_twice(sl_work_order_t *o)
{
	o->groups[1].shards[0].seq = o->groups[0].shards[0].seq;
}
static void bad_length(sl_work_order_t *o)
{
	o->groups[0].shards[0].length = 0;
}

static void test_wire_refuses_malformed(void **state)
{
	(void)state;
	expect_refused(twice_in_ring, "twice in the ring");
	expect_refused(wrong_position, "does not hold rank 0");
	expect_refused(wrong_padding, "has padded");
	expect_refused(rank_outside, "ring rank 9 outside [0, 4)");
	expect_refused(slots_backwards, "slots must increase");
	expect_refused(sequence_twice, "appears twice");
	expect_refused(bad_length, "has length 0");
}

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/wd_unit_XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Messages of an older step are dropped, of a newer one kept until the
 * receiver gets there; a stop flag ends a wait early. */
static void test_mesh_epochs(void **state)
{
	(void)state;
	worker_mesh_t *a = NULL, *b = NULL;
	assert_int_equal(worker_mesh_new(tmpdir, 0, 2, 300, &a), SL_OK);
	assert_int_equal(worker_mesh_new(tmpdir, 1, 2, 300, &b), SL_OK);
	worker_tag_t t = {.kind = WORKER_MSG_KV_FWD, .slot = 0, .hop = 0, .seq = 0};
	double x = 1.5, y = 0;
	/* a on step 5 sends; b already on step 6 never takes it */
	worker_mesh_set_epoch(a, 5);
	worker_mesh_set_epoch(b, 6);
	assert_int_equal(worker_mesh_send(a, 1, &t, &x, sizeof x), SL_OK);
	assert_int_equal(worker_mesh_recv(b, 0, &t, &y, sizeof y), SL_ETIMEOUT);
	/* a on step 7 sends before b gets there: kept, then delivered */
	worker_mesh_set_epoch(a, 7);
	x = 2.5;
	assert_int_equal(worker_mesh_send(a, 1, &t, &x, sizeof x), SL_OK);
	assert_int_equal(worker_mesh_recv(b, 0, &t, &y, sizeof y), SL_ETIMEOUT);
	worker_mesh_set_epoch(b, 7);
	assert_int_equal(worker_mesh_recv(b, 0, &t, &y, sizeof y), SL_OK);
	assert_true(y == 2.5);
	/* the same step twice in a row (a retried plan) still matches */
	assert_int_equal(worker_mesh_send(a, 1, &t, &x, sizeof x), SL_OK);
	assert_int_equal(worker_mesh_recv(b, 0, &t, &y, sizeof y), SL_OK);
	worker_mesh_free(&a);
	worker_mesh_free(&b);

	/* stop: a wait of 60 s ends on the flag, not at its timeout. The code
	 * tells which: the timeout says SL_ETIMEOUT ("within 60000 ms"), the
	 * flag SL_ECLOSED ("stopped"); no clock needed. */
	assert_int_equal(worker_mesh_new(tmpdir, 1, 2, 60000, &b), SL_OK);
	volatile sig_atomic_t stop = 1;
	worker_mesh_set_stop(b, &stop);
	assert_int_equal(worker_mesh_recv(b, 0, &t, &y, sizeof y), SL_ECLOSED);
	assert_non_null(strstr(sl_errmsg(), "stopped"));
	worker_mesh_abandon(b);
	worker_mesh_free(&b);
}

static void test_run_dir(void **state)
{
	(void)state;
	char a[256], b[256], c[256], job[140];
	memset(job, 'x', 128);
	job[128] = '\0';
	job[3] = '/';
	assert_int_equal(worker_serve_run_dir("ipc:///tmp/d.sock", job, a, sizeof a), SL_OK);
	assert_int_equal(worker_serve_run_dir("ipc:///tmp/d.sock", job, b, sizeof b), SL_OK);
	assert_string_equal(a, b);
	assert_true(strlen(a) <= WORKER_RUN_DIR_MAX);
	assert_null(strchr(a + strlen("/tmp/"), ':'));
	struct stat st;
	assert_int_equal(stat(a, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 077, 0);
	/* another daemon's job of the same name gets another directory */
	assert_int_equal(worker_serve_run_dir("ipc:///tmp/e.sock", job, c, sizeof c), SL_OK);
	assert_string_not_equal(a, c);
	rmdir(a);
	rmdir(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wire_matches_plan),
	    cmocka_unit_test(test_wire_refuses_malformed),
	    cmocka_unit_test(test_mesh_epochs),
	    cmocka_unit_test(test_run_dir),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
