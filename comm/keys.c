/* sluice comm: CURVE key files and the authorised-keys set. Keys are Z85
 * text (ZeroMQ RFC 32): a secret key file holds one 40-character key and
 * must be private to its owner; a public key file holds "<key> <name>" so
 * it can be appended to an authorised-keys file as is. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "comm.h"

#define KEY_FILE_MAX (1 << 20)

/* Whether the 40 bytes at s are Z85 that decode to a 32-byte key. */
static int z85_key_ok(const char *s, uint8_t out[32])
{
	char buf[SL_KEY_Z85_LEN + 1];
	memcpy(buf, s, SL_KEY_Z85_LEN);
	buf[SL_KEY_Z85_LEN] = '\0';
	return zmq_z85_decode(out, buf) != NULL;
}

/* Finds the next meaningful line: skips blanks and '#' comments. Returns the
 * start of its first token and its length (up to whitespace), or NULL at the
 * end. *pos advances past the line, *lineno counts lines. */
static const char *next_token(const char *text, size_t len, size_t *pos, int *lineno,
                              size_t *toklen)
{
	while (*pos < len) {
		size_t start = *pos, end = start;
		while (end < len && text[end] != '\n')
			end++;
		*pos = end < len ? end + 1 : end;
		(*lineno)++;
		size_t i = start;
		while (i < end && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r'))
			i++;
		if (i == end || text[i] == '#')
			continue;
		size_t j = i;
		while (j < end && text[j] != ' ' && text[j] != '\t' && text[j] != '\r')
			j++;
		*toklen = j - i;
		return text + i;
	}
	return NULL;
}

sl_err comm_key_parse(const char *text, size_t len, const char *what,
                      char out[SL_KEY_Z85_LEN + 1])
{
	size_t pos = 0, tl = 0;
	int line = 0;
	uint8_t bin[32];
	const char *tok = next_token(text, len, &pos, &line, &tl);
	if (tok == NULL)
		return sl_seterr(SL_EFORMAT, "%s: no key found (expected a 40-character Z85 key)",
		                 what);
	if (tl != SL_KEY_Z85_LEN || memchr(tok, '\0', tl) != NULL || !z85_key_ok(tok, bin))
		return sl_seterr(SL_EFORMAT,
		                 "%s:%d: not a CURVE key (expected 40 Z85 characters, got %zu bytes)",
		                 what, line, tl);
	memcpy(out, tok, SL_KEY_Z85_LEN);
	out[SL_KEY_Z85_LEN] = '\0';
	return SL_OK;
}

/* Reads a small text file whole (NUL-terminated); caller frees *text. */
static sl_err read_small_file(const char *path, int secret, char **text, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sl_seterr(errno == ENOENT ? SL_ENOTFOUND : SL_EIO, "%s: %s", path,
		                 strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return sl_seterr(SL_EIO, "%s: not a regular file", path);
	}
	if (secret && (st.st_mode & 077) != 0) {
		close(fd);
		return sl_seterr(SL_EDENIED,
		                 "%s: secret key file is accessible by others (mode %03o); run "
		                 "chmod 600 %s",
		                 path, (unsigned)(st.st_mode & 0777), path);
	}
	if (st.st_size > KEY_FILE_MAX) {
		close(fd);
		return sl_seterr(SL_ERANGE, "%s: %lld bytes (limit %d)", path, (long long)st.st_size,
		                 KEY_FILE_MAX);
	}
	char *buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		close(fd);
		return sl_seterr(SL_ENOMEM, "%s: reading", path);
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	*text = buf;
	*len = got;
	return SL_OK;
}

sl_err sl_key_read(const char *path, int secret, char out[SL_KEY_Z85_LEN + 1])
{
	char *text = NULL;
	size_t len = 0;
	SL_CHECK(read_small_file(path, secret, &text, &len));
	sl_err rc = comm_key_parse(text, len, path, out);
	if (text != NULL) {
		memset(text, 0, len); /* do not leave a secret behind on the heap */
		free(text);
	}
	return rc;
}

/* Writes data to path created with mode (O_EXCL: never overwrite a key). */
static sl_err write_new_file(const char *path, mode_t mode, const char *data)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return sl_seterr(errno == EEXIST ? SL_EINVAL : SL_EIO, "%s: %s%s", path,
		                 strerror(errno), errno == EEXIST ? " (refusing to overwrite a key)" : "");
	/* The umask may have widened nothing, but an existing ACL default could;
	 * set the mode explicitly. */
	if (fchmod(fd, mode) != 0) {
		int e = errno;
		close(fd);
		unlink(path);
		return sl_seterr(SL_EIO, "%s: chmod: %s", path, strerror(e));
	}
	size_t n = strlen(data), off = 0;
	while (off < n) {
		ssize_t w = write(fd, data + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = errno;
			close(fd);
			unlink(path);
			return sl_seterr(SL_EIO, "%s: write: %s", path, strerror(e));
		}
		off += (size_t)w;
	}
	if (close(fd) != 0) {
		int e = errno;
		unlink(path);
		return sl_seterr(SL_EIO, "%s: close: %s", path, strerror(e));
	}
	return SL_OK;
}

sl_err sl_keygen(const char *base)
{
	char pub[SL_KEY_Z85_LEN + 1], sec[SL_KEY_Z85_LEN + 1];
	char path_key[4096], path_pub[4096], text[512];
	if (base == NULL || base[0] == '\0')
		return sl_seterr(SL_EINVAL, "keygen: empty key name");
	if (zmq_curve_keypair(pub, sec) != 0)
		return COMM_ZMQ_ERR("zmq_curve_keypair (is libzmq built with CURVE?)");
	if ((size_t)snprintf(path_key, sizeof(path_key), "%s.key", base) >= sizeof(path_key) ||
	    (size_t)snprintf(path_pub, sizeof(path_pub), "%s.pub", base) >= sizeof(path_pub))
		return sl_seterr(SL_ERANGE, "keygen: key name of %zu bytes is too long", strlen(base));
	const char *name = strrchr(base, '/');
	name = name ? name + 1 : base;
	snprintf(text, sizeof(text),
	         "# sluice CURVE secret key '%s' (keep private: mode 0600)\n%s\n", name, sec);
	sl_err rc = write_new_file(path_key, 0600, text);
	memset(text, 0, sizeof(text));
	memset(sec, 0, sizeof(sec));
	if (rc != SL_OK)
		return rc;
	snprintf(text, sizeof(text), "%s %s\n", pub, name);
	rc = write_new_file(path_pub, 0644, text);
	if (rc != SL_OK)
		unlink(path_key);
	return rc;
}

/* ---- authorised keys ------------------------------------------------------- */

sl_err comm_keyset_parse(const char *text, size_t len, const char *what, comm_keyset_t *out)
{
	size_t pos = 0, tl = 0, cap = 0;
	int line = 0;
	const char *tok;
	out->keys = NULL;
	out->n = 0;
	while ((tok = next_token(text, len, &pos, &line, &tl)) != NULL) {
		uint8_t bin[32];
		if (tl != SL_KEY_Z85_LEN || memchr(tok, '\0', tl) != NULL || !z85_key_ok(tok, bin)) {
			comm_keyset_fini(out);
			return sl_seterr(SL_EFORMAT,
			                 "%s:%d: not a CURVE public key (expected 40 Z85 characters, "
			                 "got %zu bytes)",
			                 what, line, tl);
		}
		if (out->n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			void *nk = realloc(out->keys, nc * sizeof(*out->keys));
			if (nk == NULL) {
				comm_keyset_fini(out);
				return sl_seterr(SL_ENOMEM, "%s: %zu keys", what, out->n);
			}
			out->keys = nk;
			cap = nc;
		}
		memcpy(out->keys[out->n++], bin, 32);
	}
	return SL_OK;
}

sl_err comm_keyset_load(const char *path, comm_keyset_t *out)
{
	char *text = NULL;
	size_t len = 0;
	out->keys = NULL;
	out->n = 0;
	SL_CHECK(read_small_file(path, 0, &text, &len));
	sl_err rc = comm_keyset_parse(text, len, path, out);
	free(text);
	return rc;
}

int comm_keyset_has(const comm_keyset_t *s, const uint8_t key[32])
{
	for (size_t i = 0; i < s->n; i++)
		if (memcmp(s->keys[i], key, 32) == 0)
			return 1;
	return 0;
}

void comm_keyset_fini(comm_keyset_t *s)
{
	free(s->keys);
	s->keys = NULL;
	s->n = 0;
}
