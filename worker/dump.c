/* sluice worker: a rank's outputs written for the checker. Binary, native
 * endianness: the file never leaves the host that wrote it (the run
 * directory of `sluice run-plan`). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

typedef struct dump_head {
	char magic[8];
	int32_t rank;
	int32_t nwork;
	double tol;
	char backend[16];
	int32_t heads, kv_heads, head_dim, pad_;
} dump_head_t;
_Static_assert(sizeof(dump_head_t) == 56, "dump header layout");

/* A group is named by its slot and its index within the slot: the only
 * numbering both a plan file and a work order from sluiced carry. */
typedef struct dump_work_head {
	int32_t slot, slot_group;
	int64_t ntok;
} dump_work_head_t;
_Static_assert(sizeof(dump_work_head_t) == 16, "dump work header layout");

/* Element counts of the five output tensors of work w. */
static void dump_sizes(const worker_group_work_t *w, size_t n[5])
{
	size_t nq = (size_t)w->ntok * (size_t)w->heads * (size_t)w->head_dim;
	size_t nk = (size_t)w->ntok * (size_t)w->kv_heads * (size_t)w->head_dim;
	n[0] = nq;
	n[1] = (size_t)w->ntok * (size_t)w->heads;
	n[2] = nq;
	n[3] = nk;
	n[4] = nk;
}

sl_err worker_dump_write(const char *path, const worker_order_t *order, const char *backend,
                         double tol, const worker_outputs_t *outs)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return sl_seterr(SL_EIO, "%s: cannot create: %s", path, strerror(errno));
	dump_head_t h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, WORKER_DUMP_MAGIC, 8);
	h.rank = order->rank;
	h.nwork = order->nwork;
	h.tol = tol;
	snprintf(h.backend, sizeof h.backend, "%s", backend);
	h.heads = order->shape.heads;
	h.kv_heads = order->shape.kv_heads;
	h.head_dim = order->shape.head_dim;
	int ok = fwrite(&h, sizeof h, 1, f) == 1;
	for (int32_t i = 0; ok && i < order->nwork; i++) {
		const worker_group_work_t *w = &order->work[i];
		dump_work_head_t wh = {.slot = w->slot, .slot_group = w->slot_group, .ntok = w->ntok};
		size_t n[5];
		dump_sizes(w, n);
		const double *t[5] = {outs[i].out, outs[i].lse, outs[i].dq, outs[i].dk, outs[i].dv};
		ok = fwrite(&wh, sizeof wh, 1, f) == 1;
		for (int k = 0; ok && k < 5; k++)
			ok = n[k] == 0 || fwrite(t[k], sizeof(double), n[k], f) == n[k];
	}
	if (fclose(f) != 0)
		ok = 0;
	if (!ok)
		return sl_seterr(SL_EIO, "%s: write failed: %s", path, strerror(errno));
	return SL_OK;
}

void worker_dump_free(worker_dump_t **dump)
{
	if (!dump || !*dump)
		return;
	worker_dump_t *d = *dump;
	if (d->work)
		for (int32_t i = 0; i < d->nwork; i++) {
			free(d->work[i].out);
			free(d->work[i].lse);
			free(d->work[i].dq);
			free(d->work[i].dk);
			free(d->work[i].dv);
		}
	free(d->work);
	free(d);
	*dump = NULL;
}

sl_err worker_dump_read(const char *path, const worker_order_t *order, worker_dump_t **out)
{
	*out = NULL;
	FILE *f = fopen(path, "rb");
	if (!f)
		return sl_seterr(SL_EIO, "%s: cannot open: %s", path, strerror(errno));
	sl_err rc = SL_OK;
	worker_dump_t *d = NULL;
	dump_head_t h;
	if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, WORKER_DUMP_MAGIC, 8) != 0) {
		rc = sl_seterr(SL_EFORMAT, "%s: not a worker output file", path);
		goto out;
	}
	if (h.rank != order->rank || h.nwork != order->nwork || h.heads != order->shape.heads ||
	    h.kv_heads != order->shape.kv_heads || h.head_dim != order->shape.head_dim) {
		rc = sl_seterr(SL_EFORMAT,
		               "%s: written for rank %d (%d groups, shape %d/%d/%d), expected rank %d "
		               "(%d groups, shape %d/%d/%d)",
		               path, (int)h.rank, (int)h.nwork, (int)h.heads, (int)h.kv_heads,
		               (int)h.head_dim, (int)order->rank, (int)order->nwork,
		               (int)order->shape.heads, (int)order->shape.kv_heads,
		               (int)order->shape.head_dim);
		goto out;
	}
	d = calloc(1, sizeof *d);
	if (d)
		d->work = calloc(order->nwork > 0 ? (size_t)order->nwork : 1, sizeof *d->work);
	if (!d || !d->work) {
		rc = sl_seterr(SL_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	d->rank = h.rank;
	d->tol = h.tol;
	memcpy(d->backend, h.backend, sizeof d->backend);
	d->backend[sizeof d->backend - 1] = '\0';
	d->shape = order->shape;
	d->nwork = order->nwork;
	for (int32_t i = 0; i < order->nwork; i++) {
		const worker_group_work_t *w = &order->work[i];
		dump_work_head_t wh;
		if (fread(&wh, sizeof wh, 1, f) != 1) {
			rc = sl_seterr(SL_EFORMAT, "%s: truncated at group %d", path, (int)i);
			goto out;
		}
		if (wh.slot != w->slot || wh.slot_group != w->slot_group || wh.ntok != w->ntok) {
			rc = sl_seterr(SL_EFORMAT,
			               "%s: entry %d is slot %d group %d with %lld tokens, expected slot %d "
			               "group %d with %lld",
			               path, (int)i, (int)wh.slot, (int)wh.slot_group, (long long)wh.ntok,
			               (int)w->slot, (int)w->slot_group, (long long)w->ntok);
			goto out;
		}
		struct worker_dump_work *dw = &d->work[i];
		dw->slot = wh.slot;
		dw->slot_group = wh.slot_group;
		dw->ntok = wh.ntok;
		size_t n[5];
		dump_sizes(w, n);
		double **t[5] = {&dw->out, &dw->lse, &dw->dq, &dw->dk, &dw->dv};
		for (int k = 0; k < 5; k++) {
			*t[k] = malloc((n[k] + 1) * sizeof(double));
			if (!*t[k]) {
				rc = sl_seterr(SL_ENOMEM, "%s: out of memory", path);
				goto out;
			}
			if (n[k] && fread(*t[k], sizeof(double), n[k], f) != n[k]) {
				rc = sl_seterr(SL_EFORMAT, "%s: truncated in group %d", path, (int)i);
				goto out;
			}
		}
	}
	if (fgetc(f) != EOF)
		rc = sl_seterr(SL_EFORMAT, "%s: trailing bytes after the last group", path);
out:
	fclose(f);
	if (rc != SL_OK)
		worker_dump_free(&d);
	*out = d;
	return rc;
}

void worker_dump_step_path(const char *dir, uint64_t step, int32_t rank, char *buf, size_t size)
{
	snprintf(buf, size, "%s/step%llu.rank%d.out", dir, (unsigned long long)step, (int)rank);
}
