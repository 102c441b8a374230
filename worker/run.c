/* sluice worker: the per-rank driver. Runs every work order of one rank with
 * a backend, slot by slot, and records what each cost. One code path for
 * both ways a worker gets its orders: a plan file (worker_run) and work
 * orders from sluiced (worker/serve.c), through a session that holds the
 * mesh and the backend. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

/* Field-wise median of n pass statistics (scratch has n doubles). */
static worker_pass_stats_t run_median_stats(const worker_pass_stats_t *s, int n, double *scratch)
{
	worker_pass_stats_t m = s[n - 1];
	for (int i = 0; i < n; i++)
		scratch[i] = s[i].wall_ms;
	m.wall_ms = sl_median(scratch, (size_t)n);
	for (int i = 0; i < n; i++)
		scratch[i] = s[i].compute_ms;
	m.compute_ms = sl_median(scratch, (size_t)n);
	for (int i = 0; i < n; i++)
		scratch[i] = s[i].comm_ms;
	m.comm_ms = sl_median(scratch, (size_t)n);
	return m;
}

static json_t *run_stats_json(const worker_pass_stats_t *s)
{
	return json_pack("{s:f, s:f, s:f, s:I, s:I, s:i}", "wall_ms", s->wall_ms, "compute_ms",
	                 s->compute_ms, "comm_ms", s->comm_ms, "bytes_sent", (json_int_t)s->bytes_sent,
	                 "bytes_recv", (json_int_t)s->bytes_recv, "hops", (int)s->hops);
}

static sl_err run_write_report(const char *path, const char *plan_name, const char *backend,
                               const worker_run_opts_t *o, const worker_order_t *order,
                               const worker_slot_report_t *rep)
{
	json_t *slots = json_array();
	for (int32_t i = 0; slots && i < order->nwork; i++) {
		const worker_slot_report_t *r = &rep[i];
		json_t *e = json_pack("{s:i, s:I, s:i, s:i, s:i, s:I, s:o, s:o}", "slot", (int)r->slot,
		                      "group", (json_int_t)r->group, "slot_group",
		                      (int)order->work[i].slot_group, "d", (int)r->d, "ring_pos",
		                      (int)order->work[i].ring_pos, "tokens", (json_int_t)r->ntok, "fwd",
		                      run_stats_json(&r->fwd), "bwd", run_stats_json(&r->bwd));
		if (!e || json_array_append_new(slots, e) != 0) {
			json_decref(slots);
			slots = NULL;
		}
	}
	json_t *root = slots ? json_pack("{s:s, s:i, s:i, s:s, s:{s:i, s:i, s:i}, s:I, s:i, s:i, s:o}",
	                                 "plan", plan_name, "rank", (int)order->rank, "ranks",
	                                 (int)order->nranks, "backend", backend, "shape", "heads",
	                                 (int)o->shape.heads, "kv_heads", (int)o->shape.kv_heads,
	                                 "head_dim", (int)o->shape.head_dim, "seed",
	                                 (json_int_t)o->seed, "iters", o->iters, "warmup", o->warmup,
	                                 "slots", slots)
	                     : NULL;
	if (!root)
		return sl_seterr(SL_ENOMEM, "report: out of memory");
	int bad = json_dump_file(root, path, JSON_INDENT(1) | JSON_SORT_KEYS);
	json_decref(root);
	if (bad)
		return sl_seterr(SL_EIO, "%s: cannot write the report", path);
	return SL_OK;
}

/* Runs one work order: inputs, begin, warmup + iters passes, end. */
static sl_err run_one(const worker_backend_ops_t *ops, void *be, const worker_group_work_t *w,
                      const worker_run_opts_t *o, worker_outputs_t *outs,
                      worker_slot_report_t *rep)
{
	const size_t nq = (size_t)w->ntok * (size_t)w->heads * (size_t)w->head_dim;
	const size_t nk = (size_t)w->ntok * (size_t)w->kv_heads * (size_t)w->head_dim;
	sl_err rc = SL_OK;
	double *q = malloc((nq + 1) * sizeof *q), *dout = malloc((nq + 1) * sizeof *dout);
	double *k = malloc((nk + 1) * sizeof *k), *v = malloc((nk + 1) * sizeof *v);
	int n = o->iters;
	worker_pass_stats_t *fs = calloc((size_t)n, sizeof *fs), *bs = calloc((size_t)n, sizeof *bs);
	double *scratch = calloc((size_t)n, sizeof *scratch);
	if (!q || !dout || !k || !v || !fs || !bs || !scratch) {
		rc = sl_seterr(SL_ENOMEM, "rank %d slot %d: out of memory for %lld tokens",
		               (int)o->rank, (int)w->slot, (long long)w->ntok);
		goto out;
	}
	worker_inputs_fill(w, o->seed, q, k, v, dout);
	worker_inputs_t in = {.q = q, .k = k, .v = v, .dout = dout};
	SL_CHECK_GOTO(ops->begin(be, w, &in), rc, out);
	for (int it = 0; it < o->warmup + n; it++) {
		worker_pass_stats_t f, b;
		SL_CHECK_GOTO(ops->forward(be, w, &f), rc, out);
		SL_CHECK_GOTO(ops->backward(be, w, &b), rc, out);
		if (it >= o->warmup) {
			fs[it - o->warmup] = f;
			bs[it - o->warmup] = b;
		}
	}
	SL_CHECK_GOTO(ops->end(be, w, outs), rc, out);
	rep->slot = w->slot;
	rep->group = w->group;
	rep->d = w->d;
	rep->ntok = w->ntok;
	rep->fwd = run_median_stats(fs, n, scratch);
	rep->bwd = run_median_stats(bs, n, scratch);
out:
	free(q);
	free(dout);
	free(k);
	free(v);
	free(fs);
	free(bs);
	free(scratch);
	return rc;
}

struct worker_session {
	const worker_backend_ops_t *ops;
	worker_run_opts_t opts; /* pointers borrowed from the opener */
	int32_t nranks;
	worker_mesh_t *mesh;
	void *be;
};

sl_err worker_session_open(const worker_backend_ops_t *ops, const worker_run_opts_t *o,
                           int32_t nranks, const volatile sig_atomic_t *stop, int barrier,
                           worker_session_t **out)
{
	*out = NULL;
	if (o->iters < 1 || o->warmup < 0)
		return sl_seterr(SL_ERANGE, "iters %d must be >= 1 and warmup %d >= 0", o->iters,
		                 o->warmup);
	worker_session_t *s = calloc(1, sizeof *s);
	if (!s)
		return sl_seterr(SL_ENOMEM, "rank %d: out of memory", (int)o->rank);
	s->ops = ops;
	s->opts = *o;
	s->nranks = nranks;
	sl_err rc = SL_OK;
	SL_CHECK_GOTO(worker_mesh_new(o->run_dir, o->rank, nranks, o->timeout_ms, &s->mesh), rc,
	              fail);
	worker_mesh_set_stop(s->mesh, stop);
	/* Every rank is listening before anyone sends shards. */
	if (barrier)
		SL_CHECK_GOTO(worker_mesh_barrier(s->mesh), rc, fail);
	worker_backend_cfg_t cfg = {
		.rank = o->rank,
		.nranks = nranks,
		.local_rank = o->local_rank >= 0 ? o->local_rank : o->rank,
		.local_size = o->local_size > 0 ? o->local_size : nranks,
		.run_dir = o->run_dir,
		.boot = {.ctx = s->mesh, .bcast = worker_mesh_bcast, .barrier = worker_mesh_barrier},
		.heads = o->shape.heads,
		.kv_heads = o->shape.kv_heads,
		.head_dim = o->shape.head_dim,
	};
	SL_CHECK_GOTO(ops->init(&cfg, &s->be), rc, fail);
	*out = s;
	return SL_OK;
fail:
	worker_session_close(&s, 1);
	return rc;
}

int32_t worker_session_nranks(const worker_session_t *s)
{
	return s->nranks;
}

void worker_session_close(worker_session_t **sp, int abandon)
{
	if (!sp || !*sp)
		return;
	worker_session_t *s = *sp;
	if (abandon)
		worker_mesh_abandon(s->mesh);
	if (s->be)
		s->ops->fini(&s->be);
	worker_mesh_free(&s->mesh);
	free(s);
	*sp = NULL;
}

void worker_session_linger(worker_session_t *s, int linger_ms)
{
	worker_mesh_set_linger(s->mesh, linger_ms);
}

void worker_exec_fini(worker_exec_t *e)
{
	for (int32_t i = 0; e->outs && i < e->nwork; i++) {
		free(e->outs[i].out);
		free(e->outs[i].lse);
		free(e->outs[i].dq);
		free(e->outs[i].dk);
		free(e->outs[i].dv);
	}
	free(e->outs);
	free(e->rep);
	memset(e, 0, sizeof *e);
}

sl_err worker_session_exec(worker_session_t *s, const worker_order_t *order, int64_t epoch,
                           int keep_outputs, worker_exec_t *ex)
{
	const worker_run_opts_t *o = &s->opts;
	memset(ex, 0, sizeof *ex);
	if (order->rank != o->rank || order->nranks != s->nranks)
		return sl_seterr(SL_EINVAL,
		                 "order for rank %d of %d given to a session of rank %d of %d",
		                 (int)order->rank, (int)order->nranks, (int)o->rank, (int)s->nranks);
	int32_t nw = order->nwork;
	ex->nwork = nw;
	ex->rep = calloc(nw > 0 ? (size_t)nw : 1, sizeof *ex->rep);
	if (keep_outputs)
		ex->outs = calloc(nw > 0 ? (size_t)nw : 1, sizeof *ex->outs);
	if (!ex->rep || (keep_outputs && !ex->outs)) {
		worker_exec_fini(ex);
		return sl_seterr(SL_ENOMEM, "rank %d: out of memory", (int)o->rank);
	}
	worker_mesh_set_epoch(s->mesh, epoch);
	double t0 = sl_now_ms();
	worker_outputs_t none = {0};
	sl_err rc = SL_OK;
	for (int32_t i = 0; i < nw; i++) {
		const worker_group_work_t *w = &order->work[i];
		worker_outputs_t *outs = keep_outputs ? &ex->outs[i] : &none;
		if (keep_outputs) {
			size_t nq = (size_t)w->ntok * (size_t)w->heads * (size_t)w->head_dim;
			size_t nk = (size_t)w->ntok * (size_t)w->kv_heads * (size_t)w->head_dim;
			outs->out = malloc((nq + 1) * sizeof(double));
			outs->dq = malloc((nq + 1) * sizeof(double));
			outs->lse = malloc(((size_t)w->ntok * (size_t)w->heads + 1) * sizeof(double));
			outs->dk = malloc((nk + 1) * sizeof(double));
			outs->dv = malloc((nk + 1) * sizeof(double));
			if (!outs->out || !outs->dq || !outs->lse || !outs->dk || !outs->dv) {
				rc = sl_seterr(SL_ENOMEM, "rank %d: out of memory for outputs", (int)o->rank);
				break;
			}
		}
		rc = run_one(s->ops, s->be, w, o, outs, &ex->rep[i]);
		if (rc != SL_OK) {
			char msg[512]; /* sl_errmsg's buffer is the one sl_seterr writes */
			snprintf(msg, sizeof msg, "%s", sl_errmsg());
			if (w->group >= 0)
				rc = sl_seterr(rc, "rank %d, slot %d (group %lld of %d ranks): %s",
				               (int)o->rank, (int)w->slot, (long long)w->group, (int)w->d, msg);
			else
				rc = sl_seterr(rc, "rank %d, slot %d (its group %d, of %d ranks): %s",
				               (int)o->rank, (int)w->slot, (int)w->slot_group, (int)w->d, msg);
			break;
		}
		SL_DEBUG(SL_SUB_KERN, "rank %d slot %d: fwd %.3f ms, bwd %.3f ms", (int)o->rank,
		         (int)w->slot, ex->rep[i].fwd.wall_ms, ex->rep[i].bwd.wall_ms);
	}
	ex->wall_ms = sl_now_ms() - t0;
	if (rc != SL_OK)
		worker_exec_fini(ex);
	return rc;
}

sl_err worker_run(const sl_plan_t *plan, const char *plan_name, const worker_backend_ops_t *ops,
                  const worker_run_opts_t *o)
{
	worker_order_t *order = NULL;
	worker_session_t *s = NULL;
	worker_exec_t ex;
	memset(&ex, 0, sizeof ex);
	sl_err rc = worker_order_build(plan, o->rank, &o->shape, &order);
	if (rc != SL_OK)
		return rc;
	SL_CHECK_GOTO(worker_session_open(ops, o, plan->ranks, NULL, 1, &s), rc, out);
	SL_CHECK_GOTO(worker_session_exec(s, order, 0, o->dump_path != NULL, &ex), rc, out);
	if (o->dump_path)
		SL_CHECK_GOTO(worker_dump_write(o->dump_path, order, ops->name, ops->check_tol, ex.outs),
		              rc, out);
	if (o->report_path)
		SL_CHECK_GOTO(run_write_report(o->report_path, plan_name, ops->name, o, order, ex.rep),
		              rc, out);
	/* Nobody tears down its sockets while a peer may still wait on it. */
	SL_CHECK_GOTO(worker_mesh_barrier(s->mesh), rc, out);
out:
	worker_session_close(&s, rc != SL_OK);
	worker_exec_fini(&ex);
	worker_order_free(&order);
	return rc;
}
