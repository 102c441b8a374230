/* sluice comm: the daemon's ROUTER and the peers' DEALERs, with every
 * option that keeps them safe and bounded: ROUTER_MANDATORY (a reply to a
 * gone peer is an error, not a silent drop), bounded high-water marks,
 * finite linger, ZMTP heartbeats (dead peers are dropped by libzmq), a
 * maximum message size, owner-only ipc socket files and CURVE on tcp. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "comm.h"

char *comm_own_endpoint(char *buf, size_t size)
{
	const char *e = getenv("SLUICE_ENDPOINT");
	const char *rt = getenv("XDG_RUNTIME_DIR");
	if (e != NULL && e[0] != '\0')
		snprintf(buf, size, "%s", e);
	else if (rt != NULL && rt[0] == '/')
		snprintf(buf, size, "ipc://%s/sluiced.sock", rt);
	else
		snprintf(buf, size, "ipc:///tmp/sluiced-%u.sock", (unsigned)getuid());
	return buf;
}

char *sl_default_endpoint(char *buf, size_t size)
{
	comm_own_endpoint(buf, size);
	const char *e = getenv("SLUICE_ENDPOINT");
	if (e != NULL && e[0] != '\0')
		return buf;
	/* No daemon of the user's own: the system one (the systemd unit's). */
	struct stat st;
	if (stat(buf + strlen("ipc://"), &st) != 0 && stat(COMM_SYSTEM_SOCKET, &st) == 0 &&
	    S_ISSOCK(st.st_mode))
		snprintf(buf, size, "ipc://%s", COMM_SYSTEM_SOCKET);
	return buf;
}

sl_err comm_endpoint_parse(const char *ep, int *is_tcp, char *ipc_path, size_t size)
{
	*is_tcp = 0;
	if (strncmp(ep, "tcp://", 6) == 0) {
		if (strchr(ep + 6, ':') == NULL)
			return sl_seterr(SL_EINVAL, "endpoint '%s': tcp needs HOST:PORT", ep);
		*is_tcp = 1;
		return SL_OK;
	}
	if (strncmp(ep, "ipc://", 6) == 0) {
		const char *p = ep + 6;
		if (p[0] == '@')
			return sl_seterr(SL_EINVAL,
			                 "endpoint '%s': abstract ipc sockets have no permissions; give "
			                 "a path",
			                 ep);
		if (p[0] == '\0')
			return sl_seterr(SL_EINVAL, "endpoint '%s': ipc needs a path", ep);
		if (strlen(p) >= 100)
			return sl_seterr(SL_ERANGE, "endpoint '%s': ipc path of %zu bytes (limit 99)",
			                 ep, strlen(p));
		if (ipc_path != NULL)
			snprintf(ipc_path, size, "%s", p);
		return SL_OK;
	}
	return sl_seterr(SL_EINVAL, "endpoint '%s': use ipc://PATH or tcp://HOST:PORT", ep);
}

static int set_int(void *s, int opt, int v)
{
	return zmq_setsockopt(s, opt, &v, sizeof(v));
}

/* Options every sluice socket gets. */
static sl_err common_opts(void *s, int sndhwm, int rcvhwm, int linger, int hb_ms,
                          int64_t maxmsg)
{
	sl_err rc = SL_OK;
	COMM_ZCHECK_GOTO(set_int(s, ZMQ_SNDHWM, sndhwm), rc, out);
	COMM_ZCHECK_GOTO(set_int(s, ZMQ_RCVHWM, rcvhwm), rc, out);
	COMM_ZCHECK_GOTO(set_int(s, ZMQ_LINGER, linger), rc, out);
	if (hb_ms > 0) {
		COMM_ZCHECK_GOTO(set_int(s, ZMQ_HEARTBEAT_IVL, hb_ms), rc, out);
		COMM_ZCHECK_GOTO(set_int(s, ZMQ_HEARTBEAT_TIMEOUT, hb_ms * 3), rc, out);
		COMM_ZCHECK_GOTO(set_int(s, ZMQ_HEARTBEAT_TTL, hb_ms * 3), rc, out);
	}
	if (maxmsg > 0)
		COMM_ZCHECK_GOTO(zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)), rc, out);
out:
	return rc;
}

sl_err comm_server_open(void *ctx, const comm_server_opts_t *o, void **sockp, char *bound,
                        size_t size)
{
	char ipc_path[128] = "", secret[SL_KEY_Z85_LEN + 1];
	int is_tcp = 0;
	sl_err rc = SL_OK;
	void *s = NULL;
	*sockp = NULL;
	SL_CHECK(comm_endpoint_parse(o->endpoint, &is_tcp, ipc_path, sizeof(ipc_path)));
	int curve = is_tcp && o->secret_key_file != NULL && o->secret_key_file[0] != '\0';
	if (is_tcp && !curve && !o->allow_plain_tcp)
		return sl_seterr(SL_EDENIED,
		                 "endpoint %s: tcp without CURVE would let anyone on the network "
		                 "plan and read jobs; set curve_secret_key and authorized_keys (or "
		                 "allow_plain_tcp yes)",
		                 o->endpoint);
	if (curve)
		SL_CHECK(sl_key_read(o->secret_key_file, 1, secret));

	s = zmq_socket(ctx, ZMQ_ROUTER);
	if (s == NULL)
		return COMM_ZMQ_ERR("zmq_socket(ROUTER)");
	SL_CHECK_GOTO(common_opts(s, o->sndhwm, o->rcvhwm, o->linger_ms, o->heartbeat_ms,
	                          o->max_msg_bytes),
	              rc, fail);
	COMM_ZCHECK_GOTO(set_int(s, ZMQ_ROUTER_MANDATORY, 1), rc, fail);
	if (curve) {
		COMM_ZCHECK_GOTO(set_int(s, ZMQ_CURVE_SERVER, 1), rc, fail);
		COMM_ZCHECK_GOTO(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, secret, SL_KEY_Z85_LEN + 1), rc,
		                 fail);
		COMM_ZCHECK_GOTO(zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, COMM_ZAP_DOMAIN,
		                                strlen(COMM_ZAP_DOMAIN)),
		                 rc, fail);
		/* Without a ZAP handler libzmq admits any CURVE client, so the
		 * caller must have started comm_zap_start on ctx (sluiced does). */
	}
	memset(secret, 0, sizeof(secret));

	if (ipc_path[0] != '\0') {
		/* Create the socket file owner-only from the start (no window in
		 * which another user could connect), then check what we got. */
		mode_t old = umask(077);
		int br = zmq_bind(s, o->endpoint);
		umask(old);
		if (br != 0) {
			rc = COMM_ZMQ_ERR("zmq_bind");
			sl_seterr(rc, "cannot bind %s: %s", o->endpoint, zmq_strerror(zmq_errno()));
			goto fail;
		}
		mode_t mode = o->ipc_mode ? (mode_t)o->ipc_mode : 0600;
		if ((mode & ~(mode_t)0660) != 0 || (mode & 0600) != 0600) {
			rc = sl_seterr(SL_EINVAL, "%s: socket mode %03o not allowed (0600 or 0660)",
			               ipc_path, (unsigned)mode);
			goto fail;
		}
		struct stat st;
		if ((o->ipc_gid >= 0 && chown(ipc_path, (uid_t)-1, (gid_t)o->ipc_gid) != 0) ||
		    chmod(ipc_path, mode) != 0 || stat(ipc_path, &st) != 0) {
			rc = sl_seterr(SL_EIO, "%s: %s", ipc_path, strerror(errno));
			goto fail;
		}
		if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0777) != mode ||
		    (o->ipc_gid >= 0 && st.st_gid != (gid_t)o->ipc_gid)) {
			rc = sl_seterr(SL_EDENIED,
			               "%s: socket file is not what was asked (mode %03o, uid %u, gid "
			               "%u; wanted mode %03o); refusing to serve on it",
			               ipc_path, (unsigned)(st.st_mode & 0777), (unsigned)st.st_uid,
			               (unsigned)st.st_gid, (unsigned)mode);
			goto fail;
		}
	} else if (zmq_bind(s, o->endpoint) != 0) {
		rc = COMM_ZMQ_ERR("zmq_bind");
		sl_seterr(rc, "cannot bind %s: %s", o->endpoint, zmq_strerror(zmq_errno()));
		goto fail;
	}
	if (bound != NULL && size > 0) {
		size_t bl = size;
		if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, bound, &bl) != 0)
			snprintf(bound, size, "%s", o->endpoint);
	}
	*sockp = s;
	return SL_OK;
fail:
	memset(secret, 0, sizeof(secret));
	zmq_close(s);
	return rc;
}

/* Resolves a server key given as Z85 text or as a file holding it. */
static sl_err server_key(const char *spec, char out[SL_KEY_Z85_LEN + 1])
{
	uint8_t bin[32];
	if (strlen(spec) == SL_KEY_Z85_LEN && zmq_z85_decode(bin, spec) != NULL) {
		memcpy(out, spec, SL_KEY_Z85_LEN + 1);
		return SL_OK;
	}
	return sl_key_read(spec, 0, out);
}

sl_err comm_dealer_open(void *ctx, const char *endpoint, const sl_client_opts_t *opts,
                        const char *prefix, void **sockp)
{
	static const sl_client_opts_t none;
	char id[COMM_ID_MAX + 1];
	char spub[SL_KEY_Z85_LEN + 1], cpub[SL_KEY_Z85_LEN + 1], csec[SL_KEY_Z85_LEN + 1];
	int is_tcp = 0;
	sl_err rc = SL_OK;
	*sockp = NULL;
	if (opts == NULL)
		opts = &none;
	SL_CHECK(comm_endpoint_parse(endpoint, &is_tcp, NULL, 0));
	void *s = zmq_socket(ctx, ZMQ_DEALER);
	if (s == NULL)
		return COMM_ZMQ_ERR("zmq_socket(DEALER)");
	int hb = opts->heartbeat_ms > 0 ? opts->heartbeat_ms : 1000;
	SL_CHECK_GOTO(common_opts(s, 1000, 1000, 200, hb, 0), rc, fail);
	/* A send waits at most this long for a connection to queue on. */
	COMM_ZCHECK_GOTO(set_int(s, ZMQ_SNDTIMEO, 1000), rc, fail);

	if (opts->identity != NULL) {
		size_t n = strlen(opts->identity);
		if (n < 1 || n > COMM_ID_MAX || opts->identity[0] == '\0') {
			rc = sl_seterr(SL_EINVAL, "identity of %zu bytes (must be 1 to %d)", n,
			               COMM_ID_MAX);
			goto fail;
		}
		snprintf(id, sizeof(id), "%s", opts->identity);
	} else {
		uint8_t r[6] = {0};
		if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
			rc = sl_seterr(SL_EIO, "getrandom: %s", strerror(errno));
			goto fail;
		}
		snprintf(id, sizeof(id), "%s-%u-%02x%02x%02x%02x%02x%02x", prefix, (unsigned)getpid(),
		         r[0], r[1], r[2], r[3], r[4], r[5]);
	}
	COMM_ZCHECK_GOTO(zmq_setsockopt(s, ZMQ_ROUTING_ID, id, strlen(id)), rc, fail);

	if (is_tcp && opts->server_key != NULL && opts->server_key[0] != '\0') {
		SL_CHECK_GOTO(server_key(opts->server_key, spub), rc, fail);
		if (opts->secret_key_file != NULL && opts->secret_key_file[0] != '\0') {
			SL_CHECK_GOTO(sl_key_read(opts->secret_key_file, 1, csec), rc, fail);
			COMM_ZCHECK_GOTO(zmq_curve_public(cpub, csec), rc, fail);
		} else {
			/* An ephemeral key: encrypted, but the daemon admits it only if
			 * it is listed, which it cannot be. */
			SL_WARN(SL_SUB_COMM, "no secret key file: using a throwaway CURVE key "
			                     "(sluiced will refuse it)");
			COMM_ZCHECK_GOTO(zmq_curve_keypair(cpub, csec), rc, fail);
		}
		COMM_ZCHECK_GOTO(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, spub, SL_KEY_Z85_LEN + 1), rc,
		                 fail);
		COMM_ZCHECK_GOTO(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, cpub, SL_KEY_Z85_LEN + 1), rc,
		                 fail);
		COMM_ZCHECK_GOTO(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, csec, SL_KEY_Z85_LEN + 1), rc,
		                 fail);
		memset(csec, 0, sizeof(csec));
	} else if (!is_tcp && opts->server_key != NULL && opts->server_key[0] != '\0') {
		rc = sl_seterr(SL_EINVAL, "endpoint %s: CURVE keys apply to tcp:// only", endpoint);
		goto fail;
	}
	if (zmq_connect(s, endpoint) != 0) {
		rc = COMM_ZMQ_ERR("zmq_connect");
		sl_seterr(rc, "cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
		goto fail;
	}
	*sockp = s;
	return SL_OK;
fail:
	memset(csec, 0, sizeof(csec));
	zmq_close(s);
	return rc;
}
