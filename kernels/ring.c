/* sluice kernels: ring attention over NCCL point-to-point (Liu, Zaharia,
 * Abbeel, "Ring Attention with Blockwise Transformers", 2023), zigzag
 * sharded (worker/backend.h). Two streams: compute runs the per-hop kernels,
 * comm_stream (higher priority, so its NCCL kernels get SMs while a hop's
 * blocks are resident) runs one ncclGroupStart/Send/Recv/GroupEnd per hop.
 * K/V are double-buffered: the receive of hop h+1's shard runs under hop h's
 * compute; events order the two streams. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nccl.h>

#include "kern.h"
#include "kern_math.h"
#include "sluice/log.h"

#define KERN_NCCL(call)                                                                            \
	do {                                                                                       \
		ncclResult_t kern_n_ = (call);                                                     \
		if (kern_n_ != ncclSuccess)                                                        \
			return kern_nccl_err((int)kern_n_, #call, __FILE__, __LINE__);             \
	} while (0)

size_t kern_nccl_id_size(void)
{
	return sizeof(ncclUniqueId);
}

sl_err kern_nccl_id_make(void *id)
{
	KERN_NCCL(ncclGetUniqueId((ncclUniqueId *)id));
	return SL_OK;
}

sl_err kern_device_count(int *n)
{
	cudaError_t e = cudaGetDeviceCount(n);
	if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
		*n = 0;
		(void)cudaGetLastError();
		return SL_OK;
	}
	KERN_CUDA(e);
	return SL_OK;
}

static int env_int(const char *name, int def)
{
	const char *v = getenv(name);
	char *end;
	long x;
	if (v == NULL || *v == '\0')
		return def;
	x = strtol(v, &end, 10);
	return *end == '\0' ? (int)x : def;
}

sl_err kern_ctx_init(kern_ctx_t *c, int32_t rank, int32_t nranks, int32_t device,
                     const void *nccl_id)
{
	int lo, hi;
	const char *t;
	memset(c, 0, sizeof(*c));
	c->rank = rank;
	c->nranks = nranks;
	c->device = device;
	/* NVLink multicast (NVLS) can take shared GPUs down: never use it. */
	if (setenv("NCCL_NVLS_ENABLE", "0", 1) != 0)
		return sl_seterr(SL_EIO, "%s:%d: setenv NCCL_NVLS_ENABLE", __FILE__, __LINE__);
	c->fwd_variant = env_int("SLUICE_KERN_FWD", -1);
	c->bwd_variant = env_int("SLUICE_KERN_BWD", -1);
	t = getenv("SLUICE_KERN_TIMEOUT_S");
	c->timeout_s = t != NULL && atof(t) > 0 ? atof(t) : 300.0;
	KERN_CUDA(cudaSetDevice(device));
	KERN_CUDA(cudaDeviceGetStreamPriorityRange(&lo, &hi));
	KERN_CUDA(cudaStreamCreateWithPriority(&c->compute, cudaStreamNonBlocking, lo));
	KERN_CUDA(cudaStreamCreateWithPriority(&c->comm_stream, cudaStreamNonBlocking, hi));
	if (nranks > 1) {
		ncclUniqueId id;
		ncclComm_t comm;
		if (nccl_id == NULL)
			return sl_seterr(SL_EINVAL, "%s:%d: rank %d of %d: no NCCL id", __FILE__,
			                 __LINE__, (int)rank, (int)nranks);
		memcpy(&id, nccl_id, sizeof(id));
		KERN_NCCL(ncclCommInitRank(&comm, nranks, id, rank));
		c->comm = comm;
	}
	SL_INFO(SL_SUB_KERN, "rank %d/%d on device %d%s", (int)rank, (int)nranks, (int)device,
	        nranks > 1 ? ", NCCL communicator ready" : "");
	return SL_OK;
}

void kern_ctx_fini(kern_ctx_t *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < c->nev; i++)
		cudaEventDestroy(c->ev[i]);
	free(c->ev);
	c->ev = NULL;
	c->nev = 0;
	if (c->comm != NULL) {
		ncclCommDestroy((ncclComm_t)c->comm);
		c->comm = NULL;
	}
	if (c->scratch != NULL)
		cudaFree(c->scratch);
	c->scratch = NULL;
	if (c->compute != NULL)
		cudaStreamDestroy(c->compute);
	if (c->comm_stream != NULL)
		cudaStreamDestroy(c->comm_stream);
	c->compute = c->comm_stream = NULL;
}

/* Makes sure the pool holds n events (timing enabled). */
static sl_err ev_reserve(kern_ctx_t *c, int n)
{
	cudaEvent_t *p;
	if (n <= c->nev)
		return SL_OK;
	p = realloc(c->ev, (size_t)n * sizeof(*p));
	if (p == NULL)
		return sl_seterr(SL_ENOMEM, "%s:%d: %d events", __FILE__, __LINE__, n);
	c->ev = p;
	while (c->nev < n) {
		KERN_CUDA(cudaEventCreate(&c->ev[c->nev]));
		c->nev++;
	}
	return SL_OK;
}

static void *dev_free(void *p)
{
	if (p != NULL)
		cudaFree(p);
	return NULL;
}

void kern_group_free(kern_group_t *g)
{
	if (g == NULL)
		return;
	free(g->segs_h);
	g->segs_d = dev_free(g->segs_d);
	g->qtiles_d = dev_free(g->qtiles_d);
	g->ktiles_d = dev_free(g->ktiles_d);
	g->q = dev_free(g->q);
	g->dout = dev_free(g->dout);
	g->o = dev_free(g->o);
	for (int i = 0; i < 4; i++)
		g->kv[i] = dev_free(g->kv[i]);
	g->lse = dev_free(g->lse);
	g->oacc = dev_free(g->oacc);
	g->delta = dev_free(g->delta);
	g->dq = dev_free(g->dq);
	g->dkv[0] = dev_free(g->dkv[0]);
	g->dkv[1] = dev_free(g->dkv[1]);
	g->dkv_tmp = dev_free(g->dkv_tmp);
	g->dkv_out = dev_free(g->dkv_out);
	memset(g, 0, sizeof(*g));
}

/* Shards in flight: hop h >= 1 reads kv[1 + (h - 1) % nrot], so the receive
 * for hop h+1 may start nrot - 1 hops before hop h ends (deeper prefetch
 * absorbs ranks running at slightly different speeds). */
static int kv_nrot(int32_t d)
{
	return d - 1 < 3 ? (int)d - 1 : 3;
}

int kern_ring_kv_slot(int32_t d, int32_t h)
{
	return h == 0 ? 0 : 1 + (h - 1) % kv_nrot(d);
}

int kern_ring_kv_reuse(int32_t d, int32_t h)
{
	return h + 1 - kv_nrot(d);
}

static void *kv_buf(const kern_group_t *g, int32_t h)
{
	return g->kv[kern_ring_kv_slot(g->d, h)];
}

static sl_err dmalloc(void **p, size_t bytes)
{
	KERN_CUDA(cudaMalloc(p, bytes > 0 ? bytes : 16));
	return SL_OK;
}

sl_err kern_tiles_upload(const kern_seg_t *segs, int32_t nseg, int32_t block, char kind,
                         kern_tile_t **dev, int32_t *n)
{
	kern_tile_t *h = NULL;
	sl_err rc = kern_tiles_build(segs, nseg, block, kind, &h, n);
	if (rc != SL_OK)
		return rc;
	rc = dmalloc((void **)dev, (size_t)*n * sizeof(*h));
	if (rc == SL_OK && *n > 0) {
		cudaError_t e = cudaMemcpy(*dev, h, (size_t)*n * sizeof(*h), cudaMemcpyHostToDevice);
		if (e != cudaSuccess)
			rc = kern_cuda_err((int)e, "cudaMemcpy(tiles)", __FILE__, __LINE__);
	}
	free(h);
	return rc;
}

sl_err kern_group_alloc(kern_ctx_t *c, kern_group_t *g, int32_t d, int32_t ring_pos,
                        int32_t prev_rank, int32_t next_rank, const kern_seg_t *segs,
                        int32_t nseg, int32_t heads, int32_t kv_heads, int32_t head_dim,
                        int32_t causal, float scale)
{
	sl_err rc = SL_OK;
	int64_t ntok = 0;
	size_t qb, kvb, rows;
	memset(g, 0, sizeof(*g));
	if (!kern_head_dim_supported(head_dim))
		return sl_seterr(SL_EINVAL, "%s:%d: head_dim %d not supported (64 or 128)",
		                 __FILE__, __LINE__, (int)head_dim);
	if (heads <= 0 || kv_heads <= 0 || heads % kv_heads != 0)
		return sl_seterr(SL_EINVAL, "%s:%d: heads %d must be a positive multiple of "
		                 "kv_heads %d", __FILE__, __LINE__, (int)heads, (int)kv_heads);
	if (d < 1 || ring_pos < 0 || ring_pos >= d || nseg < 1)
		return sl_seterr(SL_EINVAL, "%s:%d: ring position %d of %d, %d sequences",
		                 __FILE__, __LINE__, (int)ring_pos, (int)d, (int)nseg);
	if (d > 1 && c->comm == NULL)
		return sl_seterr(SL_EINVAL, "%s:%d: a ring of %d ranks needs a communicator",
		                 __FILE__, __LINE__, (int)d);
	for (int32_t i = 0; i < nseg; i++)
		ntok += segs[i].len;
	SL_CHECK(kern_segs_check(segs, nseg, d, ntok));
	g->d = d;
	g->ring_pos = ring_pos;
	g->prev_rank = prev_rank;
	g->next_rank = next_rank;
	g->heads = heads;
	g->kv_heads = kv_heads;
	g->head_dim = head_dim;
	g->causal = causal;
	g->scale = scale;
	g->nseg = nseg;
	g->ntok = ntok;
	g->segs_h = malloc((size_t)nseg * sizeof(*segs));
	if (g->segs_h == NULL)
		return sl_seterr(SL_ENOMEM, "%s:%d: %d segments", __FILE__, __LINE__, (int)nseg);
	memcpy(g->segs_h, segs, (size_t)nseg * sizeof(*segs));
	KERN_CUDA_GOTO(cudaSetDevice(c->device), rc, fail);
	SL_CHECK_GOTO(dmalloc((void **)&g->segs_d, (size_t)nseg * sizeof(*segs)), rc, fail);
	KERN_CUDA_GOTO(cudaMemcpy(g->segs_d, segs, (size_t)nseg * sizeof(*segs),
	                          cudaMemcpyHostToDevice),
	               rc, fail);
	SL_CHECK_GOTO(kern_tiles_upload(segs, nseg, kern_fwd_block_m(head_dim, c->fwd_variant), 'q',
	                           &g->qtiles_d, &g->nqt),
	              rc, fail);
	SL_CHECK_GOTO(kern_tiles_upload(segs, nseg, kern_bwd_block_n(head_dim, c->bwd_variant), 'k',
	                           &g->ktiles_d, &g->nkt),
	              rc, fail);
	qb = (size_t)kern_group_qsize(g);
	kvb = (size_t)kern_group_kvsize(g);
	rows = (size_t)ntok * (size_t)heads;
	SL_CHECK_GOTO(dmalloc(&g->q, qb * 2), rc, fail);
	SL_CHECK_GOTO(dmalloc(&g->dout, qb * 2), rc, fail);
	SL_CHECK_GOTO(dmalloc(&g->o, qb * 2), rc, fail);
	SL_CHECK_GOTO(dmalloc(&g->kv[0], kvb * 2 * 2), rc, fail);
	SL_CHECK_GOTO(dmalloc((void **)&g->lse, rows * 4), rc, fail);
	SL_CHECK_GOTO(dmalloc((void **)&g->delta, rows * 4), rc, fail);
	SL_CHECK_GOTO(dmalloc((void **)&g->dq, qb * 4), rc, fail);
	SL_CHECK_GOTO(dmalloc((void **)&g->dkv_out, kvb * 2 * 4), rc, fail);
	if (d > 1) {
		for (int i = 1; i <= kv_nrot(d); i++)
			SL_CHECK_GOTO(dmalloc(&g->kv[i], kvb * 2 * 2), rc, fail);
		SL_CHECK_GOTO(dmalloc((void **)&g->oacc, qb * 4), rc, fail);
		SL_CHECK_GOTO(dmalloc((void **)&g->dkv[0], kvb * 2 * 4), rc, fail);
		SL_CHECK_GOTO(dmalloc((void **)&g->dkv[1], kvb * 2 * 4), rc, fail);
		SL_CHECK_GOTO(dmalloc((void **)&g->dkv_tmp, kvb * 2 * 4), rc, fail);
	}
	return SL_OK;
fail:
	kern_group_free(g);
	return rc;
}

/* Waits for ev on the host, giving up after the context's timeout (a peer
 * that died leaves NCCL spinning forever); NCCL's asynchronous errors are
 * polled meanwhile. On timeout or error the communicator is aborted. */
static sl_err wait_event(kern_ctx_t *c, cudaEvent_t ev, const char *what)
{
	struct timespec t0, now, nap = {0, 50 * 1000};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		cudaError_t e = cudaEventQuery(ev);
		if (e == cudaSuccess)
			return SL_OK;
		if (e != cudaErrorNotReady)
			return kern_cuda_err((int)e, what, __FILE__, __LINE__);
		if (c->comm != NULL) {
			ncclResult_t ar;
			ncclResult_t r = ncclCommGetAsyncError((ncclComm_t)c->comm, &ar);
			if (r != ncclSuccess || (ar != ncclSuccess && ar != ncclInProgress)) {
				sl_err rc = kern_nccl_err((int)(r != ncclSuccess ? r : ar), what,
				                          __FILE__, __LINE__);
				ncclCommAbort((ncclComm_t)c->comm);
				c->comm = NULL;
				return rc;
			}
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((double)(now.tv_sec - t0.tv_sec) + 1e-9 * (double)(now.tv_nsec - t0.tv_nsec) >
		    c->timeout_s) {
			if (c->comm != NULL) {
				ncclCommAbort((ncclComm_t)c->comm);
				c->comm = NULL;
			}
			return sl_seterr(SL_ETIMEOUT,
			                 "%s:%d: rank %d: %s not done after %.0f s (peer gone?); "
			                 "communicator aborted",
			                 __FILE__, __LINE__, (int)c->rank, what, c->timeout_s);
		}
		nanosleep(&nap, NULL);
	}
}

static double ev_ms(cudaEvent_t a, cudaEvent_t b)
{
	float ms = 0.f;
	if (cudaEventElapsedTime(&ms, a, b) != cudaSuccess) {
		(void)cudaGetLastError();
		return 0.0;
	}
	return (double)ms;
}

static void fwd_args(const kern_ctx_t *c, const kern_group_t *g, kern_fwd_args_t *a,
                     const void *kv, int32_t k_owner, int32_t mode)
{
	const int64_t kvn = kern_group_kvsize(g);
	(void)c;
	memset(a, 0, sizeof(*a));
	a->q = g->q;
	a->k = kv;
	a->v = (const uint16_t *)kv + kvn;
	a->o = g->o;
	a->oacc = g->oacc;
	a->lse = g->lse;
	a->segs = g->segs_d;
	a->tiles = g->qtiles_d;
	a->ntiles = g->nqt;
	a->heads = g->heads;
	a->kv_heads = g->kv_heads;
	a->head_dim = g->head_dim;
	a->d = g->d;
	a->q_owner = g->ring_pos;
	a->k_owner = k_owner;
	a->causal = g->causal;
	a->mode = mode;
	a->scale = g->scale;
	a->ntok = g->ntok;
}

static void bwd_args(const kern_group_t *g, kern_bwd_args_t *a, const void *kv, float *dkv,
                     int32_t k_owner, int32_t accumulate)
{
	const int64_t kvn = kern_group_kvsize(g);
	memset(a, 0, sizeof(*a));
	a->q = g->q;
	a->k = kv;
	a->v = (const uint16_t *)kv + kvn;
	a->dout = g->dout;
	a->lse = g->lse;
	a->delta = g->delta;
	a->dq = g->dq;
	a->dk = dkv;
	a->dv = dkv + kvn;
	a->segs = g->segs_d;
	a->tiles = g->ktiles_d;
	a->ntiles = g->nkt;
	a->heads = g->heads;
	a->kv_heads = g->kv_heads;
	a->head_dim = g->head_dim;
	a->d = g->d;
	a->q_owner = g->ring_pos;
	a->k_owner = k_owner;
	a->causal = g->causal;
	a->accumulate = accumulate;
	a->scale = g->scale;
	a->ntok = g->ntok;
}

/* Event slots of a pass with d hops. */
enum { EV_START, EV_END, EV_FIXED };
#define EV_K0(h) (EV_FIXED + 5 * (h))
#define EV_KDONE(h) (EV_FIXED + 5 * (h) + 1)
#define EV_CSTART(h) (EV_FIXED + 5 * (h) + 2)
#define EV_CEND(h) (EV_FIXED + 5 * (h) + 3)
#define EV_DREADY(h) (EV_FIXED + 5 * (h) + 4)

sl_err kern_ring_forward(kern_ctx_t *c, kern_group_t *g, kern_pass_stats_t *st)
{
	const int32_t d = g->d, me = g->ring_pos;
	const size_t kvbytes = (size_t)kern_group_kvsize(g) * 2 * 2;
	const size_t qn = (size_t)kern_group_qsize(g);
	ncclComm_t comm = (ncclComm_t)c->comm;
	cudaStream_t cs = c->compute, ms = c->comm_stream;
	kern_fwd_args_t a;
	sl_err rc;
	memset(st, 0, sizeof(*st));
	SL_CHECK(ev_reserve(c, EV_FIXED + 5 * (d + 1)));
	cudaEvent_t *ev = c->ev;
	KERN_CUDA(cudaSetDevice(c->device));
	/* poison: every output element must be written by this pass */
	KERN_CUDA(cudaMemsetAsync(g->o, 0xff, qn * 2, cs));
	KERN_CUDA(cudaMemsetAsync(g->lse, 0xff, (size_t)g->ntok * (size_t)g->heads * 4, cs));
	if (g->oacc != NULL)
		KERN_CUDA(cudaMemsetAsync(g->oacc, 0xff, qn * 4, cs));
	g->have_fwd = 0;
	KERN_CUDA(cudaEventRecord(ev[EV_START], cs));
	if (d == 1) {
		KERN_CUDA(cudaEventRecord(ev[EV_K0(0)], cs));
		fwd_args(c, g, &a, g->kv[0], 0, KERN_FWD_OUT);
		SL_CHECK(kern_attn_fwd(&a, c->fwd_variant, cs));
		KERN_CUDA(cudaEventRecord(ev[EV_KDONE(0)], cs));
	} else {
		KERN_CUDA(cudaStreamWaitEvent(ms, ev[EV_START], 0));
		for (int32_t h = 0; h < d; h++) {
			if (h + 1 < d) {
				/* hop h+1's shard goes into the buffer hop h+1-nrot read */
				const int32_t last = kern_ring_kv_reuse(d, h);
				if (last >= 1)
					KERN_CUDA(cudaStreamWaitEvent(ms, ev[EV_KDONE(last)], 0));
				KERN_CUDA(cudaEventRecord(ev[EV_CSTART(h)], ms));
				KERN_NCCL(ncclGroupStart());
				KERN_NCCL(ncclSend(kv_buf(g, h), kvbytes, ncclUint8, g->next_rank,
				                   comm, ms));
				KERN_NCCL(ncclRecv(kv_buf(g, h + 1), kvbytes, ncclUint8,
				                   g->prev_rank, comm, ms));
				KERN_NCCL(ncclGroupEnd());
				KERN_CUDA(cudaEventRecord(ev[EV_CEND(h)], ms));
			}
			if (h >= 1)
				KERN_CUDA(cudaStreamWaitEvent(cs, ev[EV_CEND(h - 1)], 0));
			KERN_CUDA(cudaEventRecord(ev[EV_K0(h)], cs));
			fwd_args(c, g, &a, kv_buf(g, h), (me - h + d) % d,
			         h == 0 ? KERN_FWD_INIT : (h == d - 1 ? KERN_FWD_FINAL : KERN_FWD_MERGE));
			SL_CHECK(kern_attn_fwd(&a, c->fwd_variant, cs));
			KERN_CUDA(cudaEventRecord(ev[EV_KDONE(h)], cs));
		}
	}
	KERN_CUDA(cudaEventRecord(ev[EV_END], cs));
	rc = wait_event(c, ev[EV_END], "ring forward");
	if (rc != SL_OK)
		return rc;
	KERN_CUDA(cudaStreamSynchronize(ms));
	st->wall_ms = ev_ms(ev[EV_START], ev[EV_END]);
	for (int32_t h = 0; h < d; h++) {
		st->compute_ms += ev_ms(ev[EV_K0(h)], ev[EV_KDONE(h)]);
		if (h + 1 < d)
			st->comm_ms += ev_ms(ev[EV_CSTART(h)], ev[EV_CEND(h)]);
	}
	st->hops = d - 1;
	st->bytes_sent = st->bytes_recv = (int64_t)(d - 1) * (int64_t)kvbytes;
	g->have_fwd = 1;
	return SL_OK;
}

sl_err kern_ring_backward(kern_ctx_t *c, kern_group_t *g, kern_pass_stats_t *st)
{
	const int32_t d = g->d, me = g->ring_pos;
	const int64_t kvn = kern_group_kvsize(g);
	const size_t kvbytes = (size_t)kvn * 2 * 2, dkvbytes = (size_t)kvn * 2 * 4;
	const size_t qn = (size_t)kern_group_qsize(g);
	ncclComm_t comm = (ncclComm_t)c->comm;
	cudaStream_t cs = c->compute, ms = c->comm_stream;
	kern_bwd_args_t a;
	sl_err rc;
	memset(st, 0, sizeof(*st));
	if (!g->have_fwd)
		return sl_seterr(SL_EINVAL, "%s:%d: rank %d: backward before a forward", __FILE__,
		                 __LINE__, (int)c->rank);
	SL_CHECK(ev_reserve(c, EV_FIXED + 5 * (d + 1)));
	cudaEvent_t *ev = c->ev;
	KERN_CUDA(cudaSetDevice(c->device));
	KERN_CUDA(cudaMemsetAsync(g->dq, 0, qn * 4, cs)); /* an accumulator */
	KERN_CUDA(cudaMemsetAsync(g->dkv_out, 0xff, (size_t)kvn * 2 * 4, cs));
	if (d > 1) {
		KERN_CUDA(cudaMemsetAsync(g->dkv[0], 0xff, dkvbytes, cs));
		KERN_CUDA(cudaMemsetAsync(g->dkv[1], 0xff, dkvbytes, cs));
		KERN_CUDA(cudaMemsetAsync(g->dkv_tmp, 0xff, dkvbytes, cs));
	}
	KERN_CUDA(cudaEventRecord(ev[EV_START], cs));
	SL_CHECK(kern_attn_delta(g->o, g->dout, g->delta, g->ntok * g->heads, g->head_dim, cs));
	if (d == 1) {
		KERN_CUDA(cudaEventRecord(ev[EV_K0(0)], cs));
		bwd_args(g, &a, g->kv[0], g->dkv_out, 0, 0);
		SL_CHECK(kern_attn_bwd(&a, c->bwd_variant, cs));
		KERN_CUDA(cudaEventRecord(ev[EV_KDONE(0)], cs));
	} else {
		KERN_CUDA(cudaStreamWaitEvent(ms, ev[EV_START], 0));
		for (int32_t h = 0; h < d; h++) {
			/* hop h's exchange: K/V for hop h+1 (prefetch) and the dK/dV
			 * that hop h-1 finished, both under hop h's compute (waiting
			 * for hop h-1 also frees the K/V buffer hop h+1-nrot read) */
			if (h >= 1)
				KERN_CUDA(cudaStreamWaitEvent(ms, ev[EV_DREADY(h - 1)], 0));
			KERN_CUDA(cudaEventRecord(ev[EV_CSTART(h)], ms));
			KERN_NCCL(ncclGroupStart());
			if (h + 1 < d) {
				KERN_NCCL(ncclSend(kv_buf(g, h), kvbytes, ncclUint8, g->next_rank,
				                   comm, ms));
				KERN_NCCL(ncclRecv(kv_buf(g, h + 1), kvbytes, ncclUint8,
				                   g->prev_rank, comm, ms));
			}
			if (h >= 1) {
				KERN_NCCL(ncclSend(g->dkv[(h - 1) & 1], dkvbytes, ncclUint8,
				                   g->next_rank, comm, ms));
				KERN_NCCL(ncclRecv(g->dkv[h & 1], dkvbytes, ncclUint8, g->prev_rank,
				                   comm, ms));
			}
			KERN_NCCL(ncclGroupEnd());
			KERN_CUDA(cudaEventRecord(ev[EV_CEND(h)], ms));

			if (h >= 1)
				KERN_CUDA(cudaStreamWaitEvent(cs, ev[EV_CEND(h - 1)], 0));
			KERN_CUDA(cudaEventRecord(ev[EV_K0(h)], cs));
			bwd_args(g, &a, kv_buf(g, h), h == 0 ? g->dkv[0] : g->dkv_tmp,
			         (me - h + d) % d, 0);
			SL_CHECK(kern_attn_bwd(&a, c->bwd_variant, cs));
			KERN_CUDA(cudaEventRecord(ev[EV_KDONE(h)], cs));
			if (h >= 1) {
				/* the shard's dK/dV from the ranks before us has arrived */
				KERN_CUDA(cudaStreamWaitEvent(cs, ev[EV_CEND(h)], 0));
				SL_CHECK(kern_add_f32(g->dkv[h & 1], g->dkv_tmp, kvn * 2, cs));
			}
			KERN_CUDA(cudaEventRecord(ev[EV_DREADY(h)], cs));
		}
		/* the last hop's dK/dV belongs to the next rank: send it home */
		KERN_CUDA(cudaStreamWaitEvent(ms, ev[EV_DREADY(d - 1)], 0));
		KERN_CUDA(cudaEventRecord(ev[EV_CSTART(d)], ms));
		KERN_NCCL(ncclGroupStart());
		KERN_NCCL(ncclSend(g->dkv[(d - 1) & 1], dkvbytes, ncclUint8, g->next_rank, comm,
		                   ms));
		KERN_NCCL(ncclRecv(g->dkv_out, dkvbytes, ncclUint8, g->prev_rank, comm, ms));
		KERN_NCCL(ncclGroupEnd());
		KERN_CUDA(cudaEventRecord(ev[EV_CEND(d)], ms));
		KERN_CUDA(cudaStreamWaitEvent(cs, ev[EV_CEND(d)], 0));
	}
	KERN_CUDA(cudaEventRecord(ev[EV_END], cs));
	rc = wait_event(c, ev[EV_END], "ring backward");
	if (rc != SL_OK)
		return rc;
	KERN_CUDA(cudaStreamSynchronize(ms));
	st->wall_ms = ev_ms(ev[EV_START], ev[EV_END]);
	for (int32_t h = 0; h < d; h++)
		st->compute_ms += ev_ms(ev[EV_K0(h)], ev[EV_KDONE(h)]);
	if (d > 1)
		for (int32_t h = 0; h <= d; h++)
			st->comm_ms += ev_ms(ev[EV_CSTART(h)], ev[EV_CEND(h)]);
	st->hops = d > 1 ? d : 0;
	st->bytes_sent = st->bytes_recv =
	    d > 1 ? (int64_t)(d - 1) * (int64_t)kvbytes + (int64_t)d * (int64_t)dkvbytes : 0;
	return SL_OK;
}

sl_err kern_ctx_barrier(kern_ctx_t *c)
{
	if (c->comm == NULL)
		return SL_OK;
	if (c->scratch == NULL) {
		KERN_CUDA(cudaMalloc((void **)&c->scratch, sizeof(float)));
		KERN_CUDA(cudaMemset(c->scratch, 0, sizeof(float)));
	}
	KERN_NCCL(ncclAllReduce(c->scratch, c->scratch, 1, ncclFloat, ncclSum, (ncclComm_t)c->comm,
	                        c->compute));
	return SL_OK;
}

sl_err kern_ring_p2p_ms(kern_ctx_t *c, kern_group_t *g, size_t bytes, int reps, double *ms)
{
	void *sb = NULL, *rb = NULL;
	double *t = NULL;
	sl_err rc = SL_OK;
	*ms = 0.0;
	if (g->d < 2 || reps < 1)
		return SL_OK;
	SL_CHECK(ev_reserve(c, 2));
	t = malloc((size_t)reps * sizeof(*t));
	if (t == NULL)
		return sl_seterr(SL_ENOMEM, "%s:%d", __FILE__, __LINE__);
	KERN_CUDA_GOTO(cudaMalloc(&sb, bytes), rc, out);
	KERN_CUDA_GOTO(cudaMalloc(&rb, bytes), rc, out);
	KERN_CUDA_GOTO(cudaMemset(sb, 1, bytes), rc, out);
	for (int i = -2; i < reps; i++) {
		ncclResult_t r;
		KERN_CUDA_GOTO(cudaEventRecord(c->ev[0], c->comm_stream), rc, out);
		r = ncclGroupStart();
		if (r == ncclSuccess)
			r = ncclSend(sb, bytes, ncclUint8, g->next_rank, (ncclComm_t)c->comm,
			             c->comm_stream);
		if (r == ncclSuccess)
			r = ncclRecv(rb, bytes, ncclUint8, g->prev_rank, (ncclComm_t)c->comm,
			             c->comm_stream);
		if (r == ncclSuccess)
			r = ncclGroupEnd();
		if (r != ncclSuccess) {
			rc = kern_nccl_err((int)r, "p2p send/recv", __FILE__, __LINE__);
			goto out;
		}
		KERN_CUDA_GOTO(cudaEventRecord(c->ev[1], c->comm_stream), rc, out);
		rc = wait_event(c, c->ev[1], "p2p timing");
		if (rc != SL_OK)
			goto out;
		if (i >= 0)
			t[i] = ev_ms(c->ev[0], c->ev[1]);
	}
	*ms = sl_median_upper(t, (size_t)reps);
out:
	if (sb != NULL)
		cudaFree(sb);
	if (rb != NULL)
		cudaFree(rb);
	free(t);
	return rc;
}
