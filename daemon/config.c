/* sluiced: configuration. One table of options (name, type, default,
 * range/validator, reloadable, help) is read by the config file parser, the
 * command line and --help, so they cannot drift apart (after Redis's
 * static_configs[] in src/config.c). */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "daemon.h"

#define CONFIG_FILE_MAX (1 << 20)

/* Prefixes the calling thread's error message (copied first: sl_seterr
 * writes into the buffer sl_errmsg returns). */
static sl_err rewrap(sl_err code, const char *prefix)
{
	char inner[900];
	snprintf(inner, sizeof(inner), "%s", sl_errmsg());
	return sl_seterr(code, "%s: %s", prefix, inner);
}

static sl_err check_endpoint(const char *name, const char *v)
{
	int tcp;
	if (v[0] == '\0')
		return SL_OK; /* the default endpoint */
	if (comm_endpoint_parse(v, &tcp, NULL, 0) != SL_OK)
		return rewrap(SL_EINVAL, name);
	return SL_OK;
}

static sl_err check_policy(const char *name, const char *v)
{
	if (v[0] == '\0' || sl_policy_find(v) != NULL)
		return SL_OK;
	char known[256] = "";
	for (size_t i = 0; i < sl_policy_count(); i++) {
		strncat(known, i ? ", " : "", sizeof(known) - strlen(known) - 1);
		strncat(known, sl_policy_at(i)->name, sizeof(known) - strlen(known) - 1);
	}
	return sl_seterr(SL_ENOTFOUND, "%s: unknown policy '%s' (known: %s)", name, v, known);
}

static sl_err check_log_level(const char *name, const char *v)
{
	if (sl_log_level_parse(v) < 0)
		return sl_seterr(SL_EINVAL,
		                 "%s: '%s' is not a level (none, error, warn, info, debug, trace)", name,
		                 v);
	return SL_OK;
}

static sl_err check_dir(const char *name, const char *v)
{
	struct stat st;
	if (v[0] == '\0')
		return SL_OK;
	if (stat(v, &st) != 0 || !S_ISDIR(st.st_mode))
		return sl_seterr(SL_ENOTFOUND, "%s: '%s' is not a directory", name, v);
	return SL_OK;
}

/* A group name or numeric id; -1 when v is empty; -2 when unknown. */
long daemon_group_id(const char *v)
{
	if (v[0] == '\0')
		return -1;
	char *end = NULL;
	errno = 0;
	long id = strtol(v, &end, 10);
	if (errno == 0 && end != v && *end == '\0' && id >= 0)
		return id;
	struct group *g = getgrnam(v);
	return g != NULL ? (long)g->gr_gid : -2;
}

static sl_err check_group(const char *name, const char *v)
{
	if (daemon_group_id(v) == -2)
		return sl_seterr(SL_ENOTFOUND, "%s: no group named '%s'", name, v);
	return SL_OK;
}

/* Octal socket file mode: 0600 or 0660 (never world access). */
unsigned daemon_socket_mode(const char *v)
{
	char *end = NULL;
	unsigned long m = strtoul(v, &end, 8);
	return (end != v && *end == '\0' && (m == 0600 || m == 0660)) ? (unsigned)m : 0;
}

static sl_err check_mode(const char *name, const char *v)
{
	if (daemon_socket_mode(v) == 0)
		return sl_seterr(SL_EINVAL, "%s: '%s' is not 0600 or 0660", name, v);
	return SL_OK;
}

#define OFF(f) offsetof(daemon_config_t, f)
#define SZ(f) sizeof(((daemon_config_t *)0)->f)

/* The table. Keep it sorted by topic; --help prints it in this order. */
const daemon_opt_t daemon_opts[] = {
	{"endpoint", DCONF_STRING, OFF(endpoint), SZ(endpoint), "", 0, 0, check_endpoint, 0,
	 "where to listen: ipc://PATH (owner-only socket file) or tcp://HOST:PORT (CURVE); "
	 "empty: $SLUICE_ENDPOINT or ipc://$XDG_RUNTIME_DIR/sluiced.sock"},
	{"curve_secret_key", DCONF_STRING, OFF(curve_secret_key), SZ(curve_secret_key), "", 0, 0,
	 NULL, 0, "tcp: the daemon's CURVE secret key file (from `sluice keygen`, mode 0600)"},
	{"authorized_keys", DCONF_STRING, OFF(authorized_keys), SZ(authorized_keys), "", 0, 0, NULL,
	 1, "tcp: file of client/worker public keys allowed in (one per line)"},
	{"allow_plain_tcp", DCONF_BOOL, OFF(allow_plain_tcp), 0, "no", 0, 1, NULL, 0,
	 "serve tcp without CURVE (anyone who can connect may use the daemon)"},
	{"socket_group", DCONF_STRING, OFF(socket_group), SZ(socket_group), "", 0, 0, check_group, 0,
	 "ipc: group (name or id) that owns the socket file (empty: the daemon's own)"},
	{"socket_mode", DCONF_STRING, OFF(socket_mode), SZ(socket_mode), "0600", 0, 0, check_mode, 0,
	 "ipc: socket file mode, 0600 (owner only) or 0660 (members of socket_group too)"},
	{"threads", DCONF_INT, OFF(threads), 0, "2", 1, 64, NULL, 0,
	 "planner threads (one slow plan never blocks the others)"},
	{"queue_max", DCONF_INT, OFF(queue_max), 0, "256", 1, 1 << 20, NULL, 1,
	 "plan requests queued or planning at once; more are refused with SL_EBUSY"},
	{"max_request_bytes", DCONF_BYTES, OFF(max_request_bytes), 0, "16m", 1024,
	 (int64_t)1 << 30, NULL, 1, "largest request message accepted"},
	{"max_seqs", DCONF_INT, OFF(max_seqs), 0, "65536", 1, 1 << 24, NULL, 1,
	 "most sequences in one request"},
	{"max_jobs", DCONF_INT, OFF(max_jobs), 0, "256", 1, 1 << 20, NULL, 1,
	 "jobs tracked at once (idle jobs without live workers are forgotten first)"},
	{"max_workers", DCONF_INT, OFF(max_workers), 0, "4096", 1, SL_MAX_RANKS, NULL, 1,
	 "workers registered per job"},
	{"history", DCONF_INT, OFF(history), 0, "32", 1, 4096, NULL, 1,
	 "recent steps kept per job (plans, acks, metrics) for `sluice status`"},
	{"policy", DCONF_STRING, OFF(policy), SZ(policy), "", 0, 0, check_policy, 1,
	 "policy for requests that name none (empty: the first registered)"},
	{"profile", DCONF_STRING, OFF(profile), SZ(profile), "gpt-7b-flexsp", 0, 0, NULL, 1,
	 "profile for requests that name none: a preset or a JSON file"},
	{"profile_dir", DCONF_STRING, OFF(profile_dir), SZ(profile_dir), "", 0, 0, check_dir, 1,
	 "directory of NAME.json profiles that requests may name (empty: presets only)"},
	{"ranks", DCONF_INT, OFF(ranks), 0, "64", 1, SL_MAX_RANKS, NULL, 1,
	 "cluster ranks for requests that give none"},
	{"ranks_per_node", DCONF_INT, OFF(ranks_per_node), 0, "8", 1, SL_MAX_RANKS, NULL, 1,
	 "ranks per node for requests that give none"},
	{"deadline_ms", DCONF_INT, OFF(deadline_ms), 0, "10000", 1, 86400000, NULL, 1,
	 "planning deadline of requests that give none; planning stops min(20%, 100 ms) "
	 "before it with the best plan so far (none: fallback static), past it SL_ETIMEOUT"},
	{"max_deadline_ms", DCONF_INT, OFF(max_deadline_ms), 0, "600000", 1, 86400000, NULL, 1,
	 "longest deadline a request may ask for"},
	{"heartbeat_ms", DCONF_INT, OFF(heartbeat_ms), 0, "1000", 10, 600000, NULL, 0,
	 "ping interval for workers and ZMTP heartbeats (dead peers found within ~3x)"},
	{"hwm", DCONF_INT, OFF(hwm), 0, "4096", 16, 1 << 20, NULL, 0,
	 "ZeroMQ high-water mark (messages queued per peer)"},
	{"drain_timeout_ms", DCONF_INT, OFF(drain_timeout_ms), 0, "30000", 0, 86400000, NULL, 1,
	 "on SIGTERM, how long to let in-flight plans finish; then they are cancelled and "
	 "answered SL_ECLOSED, and sluiced exits (a hard cap; a second SIGTERM ends it sooner)"},
	{"debug_plan_delay", DCONF_BOOL, OFF(debug_plan_delay), 0, "no", 0, 1, NULL, 0,
	 "for tests only: let a request stall its planner thread before planning "
	 "(PlanOptions.debug_delay_ms; the stall ends at the deadline or shutdown)"},
	{"record", DCONF_STRING, OFF(record), SZ(record), "", 0, 0, NULL, 1,
	 "append every request's lengths to this trace file (`# job step` headers; read by "
	 "`sluice replay`); reopened on SIGHUP"},
	{"metrics", DCONF_STRING, OFF(metrics), SZ(metrics), "", 0, 0, NULL, 0,
	 "serve Prometheus metrics at http://HOST:PORT/metrics (empty: off; keep it on loopback "
	 "or a monitoring network: it has no authentication)"},
	{"log_level", DCONF_STRING, OFF(log_level), SZ(log_level), "info", 0, 0, check_log_level, 1,
	 "none, error, warn, info, debug or trace"},
};
const size_t daemon_nopts = sizeof(daemon_opts) / sizeof(daemon_opts[0]);

/* Compares option names treating '-' and '_' alike. */
static int name_eq(const char *a, const char *b)
{
	for (; *a && *b; a++, b++) {
		char x = *a == '-' ? '_' : *a, y = *b == '-' ? '_' : *b;
		if (x != y)
			return 0;
	}
	return *a == '\0' && *b == '\0';
}

const daemon_opt_t *daemon_opt_find(const char *name)
{
	for (size_t i = 0; i < daemon_nopts; i++)
		if (name_eq(daemon_opts[i].name, name))
			return &daemon_opts[i];
	return NULL;
}

static int parse_bool(const char *v, int64_t *out)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return 1;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return 1;
		}
	}
	return 0;
}

/* Parses a decimal integer with an optional k/m/g suffix (bytes only). */
static int parse_int(const char *v, int bytes, int64_t *out)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)v[0]) && v[0] != '-')
		return 0;
	long long x = strtoll(v, &end, 10);
	if (errno != 0 || end == v)
		return 0;
	int64_t mul = 1;
	if (bytes && *end != '\0') {
		switch (tolower((unsigned char)*end)) {
		case 'k': mul = 1024; break;
		case 'm': mul = 1024 * 1024; break;
		case 'g': mul = 1024 * 1024 * 1024; break;
		default: return 0;
		}
		end++;
		if (tolower((unsigned char)*end) == 'b' || tolower((unsigned char)*end) == 'i')
			end++;
	}
	if (*end != '\0')
		return 0;
	if (x > INT64_MAX / mul || x < INT64_MIN / mul)
		return 0;
	*out = (int64_t)x * mul;
	return 1;
}

sl_err daemon_config_set(daemon_config_t *c, const char *name, const char *value,
                         const char *what)
{
	const daemon_opt_t *o = daemon_opt_find(name);
	if (o == NULL)
		return sl_seterr(SL_EINVAL, "%s: unknown option '%s' (see sluiced --help)", what, name);
	char *base = (char *)c;
	int64_t iv = 0;
	switch (o->type) {
	case DCONF_STRING:
		if (strlen(value) >= o->size)
			return sl_seterr(SL_ERANGE, "%s: %s: value of %zu bytes (limit %zu)", what,
			                 o->name, strlen(value), o->size - 1);
		break;
	case DCONF_BOOL:
		if (!parse_bool(value, &iv))
			return sl_seterr(SL_EINVAL, "%s: %s: '%s' is not yes or no", what, o->name, value);
		break;
	case DCONF_INT:
	case DCONF_BYTES:
		if (!parse_int(value, o->type == DCONF_BYTES, &iv))
			return sl_seterr(SL_EINVAL, "%s: %s: '%s' is not an integer%s", what, o->name,
			                 value, o->type == DCONF_BYTES ? " (suffix k, m or g allowed)" : "");
		if (iv < o->min || iv > o->max)
			return sl_seterr(SL_ERANGE, "%s: %s: %lld is outside [%lld, %lld]", what, o->name,
			                 (long long)iv, (long long)o->min, (long long)o->max);
		break;
	}
	sl_err rc;
	if (o->check != NULL && (rc = o->check(o->name, value)) != SL_OK)
		return rewrap(rc, what);
	if (o->type == DCONF_STRING)
		memcpy(base + o->off, value, strlen(value) + 1);
	else
		memcpy(base + o->off, &iv, sizeof(iv));
	return SL_OK;
}

void daemon_config_defaults(daemon_config_t *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < daemon_nopts; i++) {
		sl_err rc = daemon_config_set(c, daemon_opts[i].name, daemon_opts[i].def, "default");
		if (rc != SL_OK)
			SL_ERROR(SL_SUB_DAEMON, "bad default: %s", sl_errmsg());
	}
}

void daemon_config_format(const daemon_config_t *c, const daemon_opt_t *o, char *buf,
                          size_t size)
{
	const char *base = (const char *)c;
	int64_t iv;
	if (o->type == DCONF_STRING) {
		snprintf(buf, size, "%s", base + o->off);
		return;
	}
	memcpy(&iv, base + o->off, sizeof(iv));
	if (o->type == DCONF_BOOL)
		snprintf(buf, size, "%s", iv ? "yes" : "no");
	else
		snprintf(buf, size, "%lld", (long long)iv);
}

sl_err daemon_config_parse_text(daemon_config_t *c, const char *text, size_t len,
                                const char *what)
{
	size_t pos = 0;
	int line = 0;
	char buf[2048], where[600];
	while (pos < len) {
		size_t start = pos, end = pos;
		while (end < len && text[end] != '\n')
			end++;
		pos = end < len ? end + 1 : end;
		line++;
		snprintf(where, sizeof(where), "%s:%d", what, line);
		if (end - start >= sizeof(buf))
			return sl_seterr(SL_ERANGE, "%s: line of %zu bytes (limit %zu)", where,
			                 end - start, sizeof(buf) - 1);
		memcpy(buf, text + start, end - start);
		buf[end - start] = '\0';
		if (memchr(buf, '\0', end - start) != NULL)
			return sl_seterr(SL_EFORMAT, "%s: NUL byte in the line", where);
		char *s = buf;
		while (*s == ' ' || *s == '\t')
			s++;
		char *e = s + strlen(s);
		while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
			*--e = '\0';
		if (*s == '\0' || *s == '#')
			continue;
		char *name = s;
		while (*s && *s != ' ' && *s != '\t' && *s != '=')
			s++;
		/* "name value", "name = value" or "name=value" */
		int had_eq = *s == '=';
		if (*s)
			*s++ = '\0';
		while (*s == ' ' || *s == '\t')
			s++;
		if (!had_eq && *s == '=') {
			s++;
			while (*s == ' ' || *s == '\t')
				s++;
		}
		char *value = s;
		size_t vl = strlen(value);
		if (vl >= 2 && value[0] == '"') {
			if (value[vl - 1] != '"')
				return sl_seterr(SL_EFORMAT, "%s: %s: unterminated quoted value", where,
				                 name);
			value[vl - 1] = '\0';
			value++;
		} else if (vl == 1 && value[0] == '"') {
			return sl_seterr(SL_EFORMAT, "%s: %s: unterminated quoted value", where, name);
		}
		if (daemon_opt_find(name) == NULL) {
			char clean[64];
			comm_sanitize(clean, sizeof(clean), name);
			return sl_seterr(SL_EINVAL, "%s: unknown option '%s' (see sluiced --help)", where,
			                 clean);
		}
		SL_CHECK(daemon_config_set(c, name, value, where));
	}
	return SL_OK;
}

sl_err daemon_config_load_file(daemon_config_t *c, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return sl_seterr(errno == ENOENT ? SL_ENOTFOUND : SL_EIO, "%s: %s", path,
		                 strerror(errno));
	char *text = malloc(CONFIG_FILE_MAX + 1);
	if (text == NULL) {
		fclose(f);
		return sl_seterr(SL_ENOMEM, "%s: reading", path);
	}
	size_t n = fread(text, 1, CONFIG_FILE_MAX + 1, f);
	int err = ferror(f);
	fclose(f);
	sl_err rc;
	if (err)
		rc = sl_seterr(SL_EIO, "%s: read error", path);
	else if (n > CONFIG_FILE_MAX)
		rc = sl_seterr(SL_ERANGE, "%s: larger than %d bytes", path, CONFIG_FILE_MAX);
	else
		rc = daemon_config_parse_text(c, text, n, path);
	free(text);
	return rc;
}

sl_err daemon_config_finish(daemon_config_t *c)
{
	if (c->ranks_per_node > c->ranks)
		return sl_seterr(SL_ERANGE, "ranks_per_node %lld is larger than ranks %lld",
		                 (long long)c->ranks_per_node, (long long)c->ranks);
	if (c->deadline_ms > c->max_deadline_ms)
		return sl_seterr(SL_ERANGE, "deadline_ms %lld is larger than max_deadline_ms %lld",
		                 (long long)c->deadline_ms, (long long)c->max_deadline_ms);
	if (sl_profile_resolve(c->profile, &c->default_profile) != SL_OK)
		return rewrap(SL_ENOTFOUND, "profile");
	if (c->policy[0] == '\0')
		snprintf(c->policy, sizeof(c->policy), "%s", sl_policy_default());
	if (c->endpoint[0] == '\0')
		comm_own_endpoint(c->endpoint, sizeof(c->endpoint));
	int tcp = 0;
	SL_CHECK(comm_endpoint_parse(c->endpoint, &tcp, NULL, 0));
	if (tcp && c->curve_secret_key[0] == '\0' && !c->allow_plain_tcp)
		return sl_seterr(SL_EDENIED,
		                 "endpoint %s is tcp: set curve_secret_key and authorized_keys "
		                 "(keys from `sluice keygen`), or allow_plain_tcp yes",
		                 c->endpoint);
	if (!tcp && c->curve_secret_key[0] != '\0')
		SL_WARN(SL_SUB_DAEMON, "curve_secret_key is ignored on %s (CURVE is for tcp)",
		        c->endpoint);
	return SL_OK;
}

/* Prints "  FLAG  text" with text wrapped at 100 columns under itself. */
static void help_wrapped(FILE *f, const char *flag, const char *text)
{
	const int col = 32, width = 100 - col;
	fprintf(f, "  %-*s", col - 2, flag);
	if ((int)strlen(flag) > col - 3)
		fprintf(f, "\n%*s", col, "");
	while (*text != '\0') {
		int n = (int)strlen(text);
		if (n > width) {
			n = width;
			while (n > 0 && text[n] != ' ')
				n--;
			if (n == 0)
				n = width;
		}
		fprintf(f, "%.*s\n", n, text);
		text += n;
		while (*text == ' ')
			text++;
		if (*text != '\0')
			fprintf(f, "%*s", col, "");
	}
}

void daemon_config_help(FILE *f)
{
	fprintf(f,
	        "usage: sluiced [--config FILE] [--OPTION VALUE]... [--check-config] [--help] "
	        "[--version]\n\n"
	        "sluiced serves sluice plans over ZeroMQ: training jobs ask for a step's plan,\n"
	        "registered workers get their work orders. It runs in the foreground (systemd\n"
	        "Type=notify), reloads its config on SIGHUP and drains in-flight requests on\n"
	        "SIGTERM/SIGINT; a second SIGTERM/SIGINT during the drain abandons it (what is\n"
	        "still in flight is answered SL_ECLOSED) and sluiced exits 0 at once. Every\n"
	        "option below may appear in the config file as `name value` or on the\n"
	        "command line as --name VALUE (command line wins).\n\n"
	        "  --config FILE        read options from FILE first\n"
	        "  --check-config       check the configuration and exit\n"
	        "  --help, --version\n\n"
	        "options (* = applied on SIGHUP):\n");
	for (size_t i = 0; i < daemon_nopts; i++) {
		const daemon_opt_t *o = &daemon_opts[i];
		char flag[64];
		const char *meta = o->type == DCONF_BOOL    ? "yes|no"
		                   : o->type == DCONF_STRING ? "TEXT"
		                                              : "N";
		snprintf(flag, sizeof(flag), "--%s %s", o->name, meta);
		for (char *p = flag + 2; *p && *p != ' '; p++)
			if (*p == '_')
				*p = '-';
		char text[600], extra[96] = "";
		if (o->type == DCONF_INT || o->type == DCONF_BYTES)
			snprintf(extra, sizeof(extra), " [%lld..%lld]", (long long)o->min,
			         (long long)o->max);
		snprintf(text, sizeof(text), "%s%s%s (default: %s)", o->reload ? "* " : "", o->help,
		         extra, o->def[0] ? o->def : "\"\"");
		help_wrapped(f, flag, text);
	}
}

sl_err daemon_args_parse(int argc, char **argv, daemon_args_t *a)
{
	memset(a, 0, sizeof(*a));
	a->override_names = calloc((size_t)argc + 1, sizeof(char *));
	a->override_values = calloc((size_t)argc + 1, sizeof(char *));
	if (a->override_names == NULL || a->override_values == NULL)
		return sl_seterr(SL_ENOMEM, "parsing the command line");
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (strncmp(arg, "--", 2) != 0 && strcmp(arg, "-c") != 0 && strcmp(arg, "-h") != 0)
			return sl_seterr(SL_EINVAL, "unexpected argument '%s' (options are --name value)",
			                 arg);
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			a->help = 1;
			continue;
		}
		if (strcmp(arg, "--version") == 0) {
			a->version = 1;
			continue;
		}
		if (strcmp(arg, "--check-config") == 0) {
			a->check = 1;
			continue;
		}
		const char *name = arg[0] == '-' && arg[1] == '-' ? arg + 2 : arg + 1;
		const char *eq = strchr(name, '=');
		char nbuf[64];
		const char *value = NULL;
		if (eq != NULL) {
			size_t nl = (size_t)(eq - name);
			if (nl >= sizeof(nbuf))
				return sl_seterr(SL_EINVAL, "unknown option '%s'", arg);
			memcpy(nbuf, name, nl);
			nbuf[nl] = '\0';
			value = eq + 1;
		} else {
			snprintf(nbuf, sizeof(nbuf), "%s", name);
		}
		int is_config = strcmp(nbuf, "config") == 0 || strcmp(nbuf, "c") == 0;
		const daemon_opt_t *o = is_config ? NULL : daemon_opt_find(nbuf);
		if (!is_config && o == NULL)
			return sl_seterr(SL_EINVAL, "unknown option '%s' (see sluiced --help)", arg);
		if (value == NULL) {
			int64_t b;
			if (o != NULL && o->type == DCONF_BOOL &&
			    (i + 1 >= argc || !parse_bool(argv[i + 1], &b))) {
				value = "yes";
			} else {
				if (i + 1 >= argc)
					return sl_seterr(SL_EINVAL, "%s needs a value", arg);
				value = argv[++i];
			}
		}
		if (is_config) {
			a->config_file = value;
			continue;
		}
		a->override_names[a->noverrides] = o->name;
		a->override_values[a->noverrides] = value;
		a->noverrides++;
	}
	return SL_OK;
}

void daemon_args_fini(daemon_args_t *a)
{
	free(a->override_names);
	free(a->override_values);
	a->override_names = a->override_values = NULL;
}

sl_err daemon_config_build(const daemon_args_t *a, daemon_config_t *c)
{
	daemon_config_defaults(c);
	if (a->config_file != NULL)
		SL_CHECK(daemon_config_load_file(c, a->config_file));
	for (int i = 0; i < a->noverrides; i++) {
		char what[80];
		snprintf(what, sizeof(what), "--%s", a->override_names[i]);
		for (char *p = what + 2; *p; p++)
			if (*p == '_')
				*p = '-';
		SL_CHECK(daemon_config_set(c, a->override_names[i], a->override_values[i], what));
	}
	return daemon_config_finish(c);
}
