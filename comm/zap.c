/* sluice comm: the ZAP handler (ZeroMQ RFC 27). libzmq asks it, over
 * inproc://zeromq.zap.01 in the daemon's context, whether each connecting
 * peer may talk to a socket with a ZAP domain; we admit only CURVE peers
 * whose long-term public key is in the authorised-keys file. A refused peer
 * never completes the handshake, so it receives nothing at all. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

struct comm_zap {
	void *sock; /* REP, used only by the thread after start */
	pthread_t thread;
	atomic_int stop;
	pthread_mutex_t lock; /* guards keys */
	comm_keyset_t keys;
	atomic_uint_least64_t allowed, denied;
};

#define ZAP_FRAMES_MAX 8

/* Answers one ZAP request; frames are the request's frames. */
static void zap_answer(comm_zap_t *z, zmq_msg_t *fr, int n)
{
	const char *status = "400", *text = "not authorised";
	char mech[16] = "";
	if (n >= 6 && zmq_msg_size(&fr[0]) == 3 && memcmp(zmq_msg_data(&fr[0]), "1.0", 3) == 0) {
		size_t ml = zmq_msg_size(&fr[5]);
		if (ml < sizeof(mech)) {
			memcpy(mech, zmq_msg_data(&fr[5]), ml);
			mech[ml] = '\0';
		}
		if (strcmp(mech, "CURVE") == 0 && n >= 7 && zmq_msg_size(&fr[6]) == 32) {
			pthread_mutex_lock(&z->lock);
			int ok = comm_keyset_has(&z->keys, zmq_msg_data(&fr[6]));
			pthread_mutex_unlock(&z->lock);
			if (ok) {
				status = "200";
				text = "OK";
			} else {
				text = "public key not in the authorised keys";
			}
		} else {
			text = "only CURVE peers are admitted";
		}
	}
	if (strcmp(status, "200") == 0) {
		atomic_fetch_add(&z->allowed, 1);
	} else {
		atomic_fetch_add(&z->denied, 1);
		char addr[64] = "";
		if (n >= 4) {
			size_t al = zmq_msg_size(&fr[3]);
			char raw[64];
			al = al < sizeof(raw) - 1 ? al : sizeof(raw) - 1;
			memcpy(raw, zmq_msg_data(&fr[3]), al);
			raw[al] = '\0';
			comm_sanitize(addr, sizeof(addr), raw);
		}
		SL_WARN(SL_SUB_COMM, "refused a %s peer from %s: %s", mech[0] ? mech : "malformed",
		        addr[0] ? addr : "?", text);
	}
	/* Reply: version, request id, status code, status text, user id, metadata. */
	zmq_send(z->sock, "1.0", 3, ZMQ_SNDMORE);
	if (n >= 2)
		zmq_send(z->sock, zmq_msg_data(&fr[1]), zmq_msg_size(&fr[1]), ZMQ_SNDMORE);
	else
		zmq_send(z->sock, "", 0, ZMQ_SNDMORE);
	zmq_send(z->sock, status, 3, ZMQ_SNDMORE);
	zmq_send(z->sock, text, strlen(text), ZMQ_SNDMORE);
	zmq_send(z->sock, "", 0, ZMQ_SNDMORE);
	zmq_send(z->sock, "", 0, 0);
}

static void *zap_main(void *arg)
{
	comm_zap_t *z = arg;
	while (!atomic_load(&z->stop)) {
		zmq_pollitem_t it = {z->sock, 0, ZMQ_POLLIN, 0};
		int r = zmq_poll(&it, 1, 100);
		if (r < 0) {
			if (zmq_errno() == ETERM)
				break;
			continue;
		}
		if (r == 0)
			continue;
		zmq_msg_t fr[ZAP_FRAMES_MAX];
		int n = 0, more = 1;
		while (more) {
			zmq_msg_t m;
			zmq_msg_init(&m);
			if (zmq_msg_recv(&m, z->sock, 0) < 0) {
				zmq_msg_close(&m);
				break;
			}
			more = zmq_msg_more(&m);
			if (n < ZAP_FRAMES_MAX)
				fr[n++] = m;
			else
				zmq_msg_close(&m);
		}
		zap_answer(z, fr, n);
		for (int i = 0; i < n; i++)
			zmq_msg_close(&fr[i]);
	}
	return NULL;
}

sl_err comm_zap_start(void *ctx, const char *path, comm_zap_t **out)
{
	sl_err rc = SL_OK;
	*out = NULL;
	comm_zap_t *z = calloc(1, sizeof(*z));
	if (z == NULL)
		return sl_seterr(SL_ENOMEM, "ZAP handler");
	pthread_mutex_init(&z->lock, NULL);
	if (path != NULL && path[0] != '\0')
		SL_CHECK_GOTO(comm_keyset_load(path, &z->keys), rc, fail);
	if (z->keys.n == 0)
		SL_WARN(SL_SUB_COMM, "no authorised keys (%s): every tcp peer will be refused",
		        path && path[0] ? path : "authorized_keys not set");
	z->sock = zmq_socket(ctx, ZMQ_REP);
	if (z->sock == NULL) {
		rc = COMM_ZMQ_ERR("zmq_socket(ZAP)");
		goto fail;
	}
	int linger = 0;
	zmq_setsockopt(z->sock, ZMQ_LINGER, &linger, sizeof(linger));
	COMM_ZCHECK_GOTO(zmq_bind(z->sock, COMM_ZAP_ENDPOINT), rc, fail);
	if (pthread_create(&z->thread, NULL, zap_main, z) != 0) {
		rc = sl_seterr(SL_EIO, "ZAP handler: pthread_create failed");
		goto fail;
	}
	*out = z;
	return SL_OK;
fail:
	if (z->sock != NULL)
		zmq_close(z->sock);
	comm_keyset_fini(&z->keys);
	pthread_mutex_destroy(&z->lock);
	free(z);
	return rc;
}

sl_err comm_zap_reload(comm_zap_t *z, const char *path)
{
	comm_keyset_t fresh = {NULL, 0};
	if (path != NULL && path[0] != '\0')
		SL_CHECK(comm_keyset_load(path, &fresh));
	pthread_mutex_lock(&z->lock);
	comm_keyset_t old = z->keys;
	z->keys = fresh;
	pthread_mutex_unlock(&z->lock);
	comm_keyset_fini(&old);
	SL_INFO(SL_SUB_COMM, "authorised keys reloaded: %zu keys", fresh.n);
	return SL_OK;
}

uint64_t comm_zap_denied(const comm_zap_t *z)
{
	return z ? atomic_load(&((comm_zap_t *)z)->denied) : 0;
}

uint64_t comm_zap_allowed(const comm_zap_t *z)
{
	return z ? atomic_load(&((comm_zap_t *)z)->allowed) : 0;
}

void comm_zap_stop(comm_zap_t **zp)
{
	if (zp == NULL || *zp == NULL)
		return;
	comm_zap_t *z = *zp;
	atomic_store(&z->stop, 1);
	pthread_join(z->thread, NULL);
	zmq_close(z->sock);
	comm_keyset_fini(&z->keys);
	pthread_mutex_destroy(&z->lock);
	free(z);
	*zp = NULL;
}
