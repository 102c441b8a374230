/* sluice planner: the JSON plan format sluice.plan/1 (plan-format.md).
 * Writing is ours (one line per sequence and per group, fixed number
 * formats, so the same plan always gives the same bytes); reading uses
 * jansson. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "planner.h"

typedef struct {
	char *buf;
	size_t len, cap;
	int oom;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 2, 3)))
#endif
	;

static void sb_reserve(sbuf_t *b, size_t more)
{
	if (b->oom || b->len + more + 1 <= b->cap)
		return;
	size_t nc = b->cap ? b->cap : 4096;
	while (nc < b->len + more + 1)
		nc *= 2;
	char *nb = realloc(b->buf, nc);
	if (nb == NULL) {
		b->oom = 1;
		return;
	}
	b->buf = nb;
	b->cap = nc;
}

static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int need = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (need < 0)
		return;
	sb_reserve(b, (size_t)need);
	if (b->oom)
		return;
	va_start(ap, fmt);
	vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)need;
}

static void sb_str(sbuf_t *b, const char *s)
{
	sb_printf(b, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			sb_printf(b, "\\%c", c);
		else if (c < 0x20)
			sb_printf(b, "\\u%04x", c);
		else
			sb_printf(b, "%c", c);
	}
	sb_printf(b, "\"");
}

/* A number in ms: three decimals, "null" when unknown. */
static void sb_ms(sbuf_t *b, double v)
{
	if (isfinite(v))
		sb_printf(b, "%.3f", v);
	else
		sb_printf(b, "null");
}

char *sl_plan_to_json(const sl_plan_t *plan)
{
	sbuf_t b = {0};
	sb_printf(&b, "{\n  \"format\": \"%s\",\n  \"policy\": ", SL_PLAN_FORMAT);
	sb_str(&b, plan->policy);
	sb_printf(&b, ",\n  \"profile\": ");
	sb_str(&b, plan->profile);
	sb_printf(&b, ",\n  \"ranks\": %d,\n  \"ranks_per_node\": %d,\n  \"cap_tokens\": %lld,\n",
	          plan->ranks, plan->ranks_per_node, (long long)plan->cap_tokens);
	sb_printf(&b, "  \"sequences\": [");
	for (int64_t i = 0; i < plan->nseqs; i++)
		sb_printf(&b, "%s\n    {\"id\": %lld, \"length\": %lld}", i ? "," : "",
		          (long long)plan->seqs[i].id, (long long)plan->seqs[i].length);
	sb_printf(&b, "\n  ],\n  \"slots\": [");
	for (int32_t s = 0; s < plan->nslots; s++) {
		const sl_slot_t *sl = &plan->slots[s];
		sb_printf(&b, "%s\n    {\"groups\": [", s ? "," : "");
		for (int32_t gi = 0; gi < sl->ngroups; gi++) {
			const sl_group_t *g = &plan->groups[sl->group_off + gi];
			const int32_t *rk = sl_group_ranks(plan, g);
			const sl_item_t *it = sl_group_items(plan, g);
			sb_printf(&b, "%s\n      {\"ranks\": [", gi ? "," : "");
			for (int32_t k = 0; k < g->nranks; k++)
				sb_printf(&b, "%s%d", k ? ", " : "", rk[k]);
			sb_printf(&b, "], \"sequences\": [");
			for (int32_t k = 0; k < g->nitems; k++) {
				int64_t id = it[k].seq >= 0 && it[k].seq < plan->nseqs
				                     ? plan->seqs[it[k].seq].id
				                     : (-(int64_t)it[k].seq - 1 < plan->nunknown
				                                ? plan->unknown_ids[-(int64_t)it[k].seq - 1]
				                                : -1);
				if (it[k].offload != 0.0)
					sb_printf(&b, "%s{\"id\": %lld, \"offload\": %.17g}", k ? ", " : "",
					          (long long)id, it[k].offload);
				else
					sb_printf(&b, "%s{\"id\": %lld}", k ? ", " : "", (long long)id);
			}
			sb_printf(&b, "]}");
		}
		sb_printf(&b, "\n    ]}");
	}
	sb_printf(&b, "\n  ],\n  \"predicted\": {\"step_ms\": ");
	sb_ms(&b, plan->step_ms);
	sb_printf(&b, ", \"ideal_ms\": ");
	sb_ms(&b, plan->ideal_ms);
	if (isfinite(plan->lp_bound_ms)) {
		sb_printf(&b, ", \"lp_bound_ms\": ");
		sb_ms(&b, plan->lp_bound_ms);
	}
	sb_printf(&b, ", \"per_rank_ms\": [");
	for (int32_t r = 0; r < plan->ranks; r++) {
		if (r)
			sb_printf(&b, ", ");
		sb_ms(&b, plan->per_rank_ms ? plan->per_rank_ms[r] : NAN);
	}
	sb_printf(&b, "]}");
	if (plan->search_truncated)
		sb_printf(&b, ",\n  \"search_truncated\": true");
	if (plan->note[0] != '\0') {
		sb_printf(&b, ",\n  \"note\": ");
		sb_str(&b, plan->note);
	}
	sb_printf(&b, "\n}\n");
	if (b.oom) {
		free(b.buf);
		sl_seterr(SL_ENOMEM, "plan JSON: out of memory");
		return NULL;
	}
	return b.buf;
}

sl_err sl_plan_write_json(const sl_plan_t *plan, FILE *f)
{
	char *s = sl_plan_to_json(plan);
	if (s == NULL)
		return SL_ENOMEM;
	size_t len = strlen(s);
	size_t w = fwrite(s, 1, len, f);
	free(s);
	if (w != len)
		return sl_seterr(SL_EIO, "writing the plan: %s", strerror(errno));
	return SL_OK;
}

/* --- reading --- */

static sl_err get_int(json_t *o, const char *key, const char *what, const char *where,
                      int64_t lo, int64_t hi, int64_t *dst)
{
	json_t *v = json_object_get(o, key);
	if (v == NULL)
		return sl_seterr(SL_EFORMAT, "%s: %s: missing field \"%s\"", what, where, key);
	if (!json_is_integer(v))
		return sl_seterr(SL_EFORMAT, "%s: %s: field \"%s\" must be an integer", what, where,
		                 key);
	json_int_t x = json_integer_value(v);
	if (x < lo || x > hi)
		return sl_seterr(SL_ERANGE, "%s: %s: field \"%s\" is %lld, outside [%lld, %lld]", what,
		                 where, key, (long long)x, (long long)lo, (long long)hi);
	*dst = (int64_t)x;
	return SL_OK;
}

typedef struct {
	int64_t id;
	int32_t idx;
} idmap_t;

static int cmp_idmap(const void *a, const void *b)
{
	const idmap_t *x = a, *y = b;
	if (x->id != y->id)
		return (x->id > y->id) - (x->id < y->id);
	return (x->idx > y->idx) - (x->idx < y->idx);
}

static int32_t lookup_id(const idmap_t *m, int64_t n, int64_t id)
{
	int64_t lo = 0, hi = n;
	while (lo < hi) {
		int64_t mid = lo + (hi - lo) / 2;
		if (m[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && m[lo].id == id ? m[lo].idx : -1;
}

static sl_err add_unknown(sl_plan_t *p, int64_t id, int32_t *seq)
{
	SL_CHECK(planner_grow((void **)&p->unknown_ids, &p->nunknown_cap, p->nunknown + 1,
	                      sizeof(int64_t)));
	p->unknown_ids[p->nunknown] = id;
	*seq = (int32_t)(-(p->nunknown + 1));
	p->nunknown++;
	return SL_OK;
}

static double opt_num(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return v != NULL && json_is_number(v) ? json_number_value(v) : NAN;
}

sl_err sl_plan_parse_json(const char *text, const char *what, sl_plan_t **out)
{
	json_error_t jerr;
	json_t *root = json_loads(text, 0, &jerr);
	sl_plan_t *p = NULL;
	idmap_t *map = NULL;
	sl_err rc = SL_OK;
	int64_t ranks, rpn, cap;
	char where[96];

	*out = NULL;
	if (root == NULL)
		return sl_seterr(SL_EFORMAT, "%s:%d:%d: %s", what, jerr.line, jerr.column, jerr.text);
	if (!json_is_object(root)) {
		rc = sl_seterr(SL_EFORMAT, "%s: a plan must be a JSON object", what);
		goto out;
	}
	json_t *fmt = json_object_get(root, "format");
	if (fmt == NULL || !json_is_string(fmt)) {
		rc = sl_seterr(SL_EFORMAT, "%s: missing string field \"format\"", what);
		goto out;
	}
	if (strcmp(json_string_value(fmt), SL_PLAN_FORMAT) != 0) {
		rc = sl_seterr(SL_EFORMAT, "%s: format is \"%s\", expected \"%s\"", what,
		               json_string_value(fmt), SL_PLAN_FORMAT);
		goto out;
	}
	SL_CHECK_GOTO(get_int(root, "ranks", what, "plan", 1, SL_MAX_RANKS, &ranks), rc, out);
	SL_CHECK_GOTO(get_int(root, "ranks_per_node", what, "plan", 1, SL_MAX_RANKS, &rpn), rc, out);
	SL_CHECK_GOTO(get_int(root, "cap_tokens", what, "plan", 0, INT64_MAX, &cap), rc, out);
	json_t *pol = json_object_get(root, "policy");
	json_t *prof = json_object_get(root, "profile");
	if (pol == NULL || !json_is_string(pol) || prof == NULL || !json_is_string(prof)) {
		rc = sl_seterr(SL_EFORMAT, "%s: fields \"policy\" and \"profile\" must be strings", what);
		goto out;
	}
	json_t *seqs = json_object_get(root, "sequences");
	if (seqs == NULL || !json_is_array(seqs)) {
		rc = sl_seterr(SL_EFORMAT, "%s: missing array field \"sequences\"", what);
		goto out;
	}
	size_t ns = json_array_size(seqs);
	if (ns > (size_t)INT32_MAX) {
		rc = sl_seterr(SL_ERANGE, "%s: too many sequences (%zu)", what, ns);
		goto out;
	}
	p = sl_plan_new(json_string_value(pol), json_string_value(prof), (int32_t)ranks, (int32_t)rpn,
	                cap, NULL, 0);
	if (p == NULL) {
		rc = sl_seterr(SL_ENOMEM, "%s: out of memory", what);
		goto out;
	}
	free(p->seqs);
	p->seqs = malloc(sizeof(sl_seq_t) * (ns ? ns : 1));
	map = malloc(sizeof(idmap_t) * (ns ? ns : 1));
	if (p->seqs == NULL || map == NULL) {
		rc = sl_seterr(SL_ENOMEM, "%s: out of memory", what);
		goto out;
	}
	p->nseqs = (int64_t)ns;
	for (size_t i = 0; i < ns; i++) {
		json_t *e = json_array_get(seqs, i);
		snprintf(where, sizeof(where), "sequences[%zu]", i);
		if (!json_is_object(e)) {
			rc = sl_seterr(SL_EFORMAT, "%s: %s must be an object", what, where);
			goto out;
		}
		SL_CHECK_GOTO(get_int(e, "id", what, where, INT64_MIN, INT64_MAX, &p->seqs[i].id), rc,
		              out);
		/* Lengths below 1 parse (sl_plan_validate reports them); above
		 * SL_MAX_SEQ_LEN they would overflow the cost model's arithmetic. */
		SL_CHECK_GOTO(
			get_int(e, "length", what, where, INT64_MIN, SL_MAX_SEQ_LEN, &p->seqs[i].length),
			rc, out);
		map[i].id = p->seqs[i].id;
		map[i].idx = (int32_t)i;
	}
	qsort(map, ns, sizeof(idmap_t), cmp_idmap);

	json_t *slots = json_object_get(root, "slots");
	if (slots == NULL || !json_is_array(slots)) {
		rc = sl_seterr(SL_EFORMAT, "%s: missing array field \"slots\"", what);
		goto out;
	}
	for (size_t s = 0; s < json_array_size(slots); s++) {
		json_t *so = json_array_get(slots, s);
		json_t *groups = json_is_object(so) ? json_object_get(so, "groups") : NULL;
		if (groups == NULL || !json_is_array(groups)) {
			rc = sl_seterr(SL_EFORMAT, "%s: slots[%zu] must be an object with array \"groups\"",
			               what, s);
			goto out;
		}
		SL_CHECK_GOTO(sl_plan_add_slot(p), rc, out);
		for (size_t g = 0; g < json_array_size(groups); g++) {
			json_t *go = json_array_get(groups, g);
			json_t *gr = json_is_object(go) ? json_object_get(go, "ranks") : NULL;
			json_t *gs = json_is_object(go) ? json_object_get(go, "sequences") : NULL;
			if (gr == NULL || !json_is_array(gr) || gs == NULL || !json_is_array(gs)) {
				rc = sl_seterr(SL_EFORMAT,
				               "%s: slots[%zu].groups[%zu] needs arrays \"ranks\" and "
				               "\"sequences\"",
				               what, s, g);
				goto out;
			}
			size_t nr = json_array_size(gr);
			if (nr > (size_t)SL_MAX_RANKS) {
				rc = sl_seterr(SL_ERANGE, "%s: slots[%zu].groups[%zu] has %zu ranks", what,
				               s, g, nr);
				goto out;
			}
			int32_t *rk = malloc(sizeof(int32_t) * (nr ? nr : 1));
			if (rk == NULL) {
				rc = sl_seterr(SL_ENOMEM, "%s: out of memory", what);
				goto out;
			}
			for (size_t k = 0; k < nr; k++) {
				json_t *rv = json_array_get(gr, k);
				if (!json_is_integer(rv) || json_integer_value(rv) < INT32_MIN ||
				    json_integer_value(rv) > INT32_MAX) {
					free(rk);
					rc = sl_seterr(SL_EFORMAT,
					               "%s: slots[%zu].groups[%zu].ranks[%zu] must be an "
					               "integer",
					               what, s, g, k);
					goto out;
				}
				rk[k] = (int32_t)json_integer_value(rv);
			}
			rc = sl_plan_add_group(p, rk, (int32_t)nr);
			free(rk);
			if (rc != SL_OK)
				goto out;
			for (size_t k = 0; k < json_array_size(gs); k++) {
				json_t *it = json_array_get(gs, k);
				int64_t id;
				snprintf(where, sizeof(where), "slots[%zu].groups[%zu].sequences[%zu]", s,
				         g, k);
				if (!json_is_object(it)) {
					rc = sl_seterr(SL_EFORMAT, "%s: %s must be an object", what, where);
					goto out;
				}
				SL_CHECK_GOTO(get_int(it, "id", what, where, INT64_MIN, INT64_MAX, &id),
				              rc, out);
				double f = 0.0;
				json_t *fo = json_object_get(it, "offload");
				if (fo != NULL) {
					if (!json_is_number(fo)) {
						rc = sl_seterr(SL_EFORMAT,
						               "%s: %s: \"offload\" must be a number", what,
						               where);
						goto out;
					}
					f = json_number_value(fo);
				}
				int32_t q = lookup_id(map, (int64_t)ns, id);
				if (q < 0)
					SL_CHECK_GOTO(add_unknown(p, id, &q), rc, out);
				SL_CHECK_GOTO(sl_plan_add_item(p, q, f), rc, out);
			}
		}
	}
	json_t *pred = json_object_get(root, "predicted");
	if (pred != NULL && json_is_object(pred)) {
		p->step_ms = opt_num(pred, "step_ms");
		p->ideal_ms = opt_num(pred, "ideal_ms");
		p->lp_bound_ms = opt_num(pred, "lp_bound_ms");
		json_t *pr = json_object_get(pred, "per_rank_ms");
		if (pr != NULL && json_is_array(pr))
			for (int32_t r = 0; r < p->ranks && (size_t)r < json_array_size(pr); r++)
				p->per_rank_ms[r] = json_is_number(json_array_get(pr, (size_t)r))
				                            ? json_number_value(json_array_get(pr, (size_t)r))
				                            : NAN;
	}
	json_t *tr = json_object_get(root, "search_truncated");
	p->search_truncated = tr != NULL && json_is_true(tr);
	json_t *note = json_object_get(root, "note");
	if (note != NULL && json_is_string(note))
		snprintf(p->note, sizeof(p->note), "%s", json_string_value(note));
	*out = p;
	p = NULL;
out:
	free(map);
	sl_plan_free(&p);
	json_decref(root);
	return rc;
}

sl_err sl_plan_read_json_file(const char *path, sl_plan_t **out)
{
	*out = NULL;
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (f == NULL)
		return sl_seterr(SL_EIO, "%s: cannot open plan: %s", path, strerror(errno));
	sbuf_t b = {0};
	char chunk[65536];
	size_t got;
	while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		sb_reserve(&b, got);
		if (b.oom)
			break;
		memcpy(b.buf + b.len, chunk, got);
		b.len += got;
	}
	int bad = ferror(f);
	if (f != stdin)
		fclose(f);
	if (b.oom || bad) {
		free(b.buf);
		return b.oom ? sl_seterr(SL_ENOMEM, "%s: out of memory", path)
		             : sl_seterr(SL_EIO, "%s: read error", path);
	}
	sb_reserve(&b, 0);
	if (b.buf == NULL || b.oom) {
		free(b.buf);
		return sl_seterr(SL_EFORMAT, "%s: empty file", path);
	}
	b.buf[b.len] = '\0';
	if (strlen(b.buf) != b.len) {
		free(b.buf);
		return sl_seterr(SL_EFORMAT, "%s: NUL byte in a JSON file", path);
	}
	sl_err rc = sl_plan_parse_json(b.buf, path, out);
	free(b.buf);
	return rc;
}
