/* sluice comm: conversions between wire messages and sluice's C structs.
 * Everything read from the wire is checked here, and a failure names the
 * field ("plan_request.lengths[3]"), the value and the limit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

/* Sets the blamed field (printf-style) and returns code with the message. */
static sl_err blame(char *field, size_t fs, const char *fname, sl_err code, const char *msg)
{
	if (field != NULL && fs > 0)
		snprintf(field, fs, "%s", fname);
	return sl_seterr(code, "%s: %s", fname, msg);
}

/* ---- profiles ---------------------------------------------------------------- */

sl_err comm_profile_to_proto(const sl_profile_t *p, comm_arena_t *a, Sluice__Profile *m)
{
	sluice__profile__init(m);
	m->name = comm_arena_strdup(a, p->name);
	if (m->name == NULL)
		return sl_seterr(SL_ENOMEM, "encoding profile '%s'", p->name);
	m->alpha1 = p->alpha1;
	m->alpha2 = p->alpha2;
	m->beta = p->beta;
	m->act_bytes_per_token = p->act_bytes_per_token;
	m->model_state_bytes = p->model_state_bytes;
	m->params = p->params;
	m->gpu_mem_bytes = p->gpu_mem_bytes;
	m->sp_comm = p->sp_comm == SL_SP_RING ? SLUICE__SP_COMM__SP_COMM_RING
	                                      : SLUICE__SP_COMM__SP_COMM_ULYSSES;
	m->a2a_bytes_per_token = p->a2a_bytes_per_token;
	int nbw = p->n_bw < 0 ? 0 : (p->n_bw > SL_PROFILE_MAX_BW ? SL_PROFILE_MAX_BW : p->n_bw);
	if (nbw > 0) {
		m->sp_bandwidth = comm_arena_alloc(a, sizeof(*m->sp_bandwidth) * (size_t)nbw);
		Sluice__Bandwidth *bw = comm_arena_alloc(a, sizeof(*bw) * (size_t)nbw);
		if (m->sp_bandwidth == NULL || bw == NULL)
			return sl_seterr(SL_ENOMEM, "encoding profile '%s'", p->name);
		for (int i = 0; i < nbw; i++) {
			sluice__bandwidth__init(&bw[i]);
			bw[i].degree = p->bw_degree[i];
			bw[i].gbps = p->bw_gbps[i];
			m->sp_bandwidth[i] = &bw[i];
		}
		m->n_sp_bandwidth = (size_t)nbw;
	}
	m->kv_bytes_per_token = p->kv_bytes_per_token;
	m->p2p_gbps_intra = p->p2p_gbps_intra;
	m->p2p_gbps_inter = p->p2p_gbps_inter;
	m->pcie_gbps = p->pcie_gbps;
	m->grad_sync_ms = p->grad_sync_ms;
	m->max_offload = p->max_offload;
	m->ring_tok_ms = p->ring_tok_ms;
	return SL_OK;
}

sl_err comm_profile_from_proto(const Sluice__Profile *m, sl_profile_t *p, char *field,
                               size_t field_size)
{
	char msg[300];
	memset(p, 0, sizeof(*p));
	if (strlen(m->name) >= SL_PROFILE_NAME_MAX) {
		snprintf(msg, sizeof(msg), "name of %zu bytes (limit %d)", strlen(m->name),
		         SL_PROFILE_NAME_MAX - 1);
		return blame(field, field_size, "profile.name", SL_ERANGE, msg);
	}
	comm_sanitize(p->name, sizeof(p->name), m->name[0] ? m->name : "inline");
	p->alpha1 = m->alpha1;
	p->alpha2 = m->alpha2;
	p->beta = m->beta;
	p->act_bytes_per_token = m->act_bytes_per_token;
	p->model_state_bytes = m->model_state_bytes;
	p->params = m->params;
	p->gpu_mem_bytes = m->gpu_mem_bytes;
	if (m->sp_comm == SLUICE__SP_COMM__SP_COMM_ULYSSES)
		p->sp_comm = SL_SP_ULYSSES;
	else if (m->sp_comm == SLUICE__SP_COMM__SP_COMM_RING)
		p->sp_comm = SL_SP_RING;
	else {
		snprintf(msg, sizeof(msg), "unknown value %d (0 ulysses, 1 ring)", (int)m->sp_comm);
		return blame(field, field_size, "profile.sp_comm", SL_ERANGE, msg);
	}
	p->a2a_bytes_per_token = m->a2a_bytes_per_token;
	if (m->n_sp_bandwidth > SL_PROFILE_MAX_BW) {
		snprintf(msg, sizeof(msg), "%zu entries (limit %d)", m->n_sp_bandwidth,
		         SL_PROFILE_MAX_BW);
		return blame(field, field_size, "profile.sp_bandwidth", SL_ERANGE, msg);
	}
	p->n_bw = (int)m->n_sp_bandwidth;
	for (size_t i = 0; i < m->n_sp_bandwidth; i++) {
		p->bw_degree[i] = m->sp_bandwidth[i]->degree;
		p->bw_gbps[i] = m->sp_bandwidth[i]->gbps;
	}
	p->kv_bytes_per_token = m->kv_bytes_per_token;
	p->p2p_gbps_intra = m->p2p_gbps_intra;
	p->p2p_gbps_inter = m->p2p_gbps_inter;
	p->pcie_gbps = m->pcie_gbps;
	p->grad_sync_ms = m->grad_sync_ms;
	p->max_offload = m->max_offload;
	p->ring_tok_ms = m->ring_tok_ms;
	sl_err rc = sl_profile_check(p);
	if (rc != SL_OK) {
		snprintf(msg, sizeof(msg), "%s", sl_errmsg());
		return blame(field, field_size, "plan_request.profile", rc, msg);
	}
	return SL_OK;
}

/* ---- requests ------------------------------------------------------------------ */

void comm_request_fini(comm_request_t *r)
{
	free(r->seqs);
	r->seqs = NULL;
	r->n = 0;
}

sl_err comm_request_from_proto(const Sluice__PlanRequest *m, const comm_limits_t *lim,
                               comm_request_t *out, char *field, size_t fs)
{
	char msg[400], fname[96], clean[160];
	memset(out, 0, sizeof(*out));
	if (field != NULL && fs > 0)
		field[0] = '\0';

	if (!comm_job_name_ok(m->job)) {
		comm_sanitize(clean, sizeof(clean), m->job);
		snprintf(msg, sizeof(msg),
		         "'%s' (%zu bytes) is not a job name: 1 to %d characters from "
		         "[A-Za-z0-9._:@+/-]",
		         clean, strlen(m->job), COMM_JOB_MAX);
		return blame(field, fs, "plan_request.job", SL_EINVAL, msg);
	}
	snprintf(out->job, sizeof(out->job), "%s", m->job);
	out->step = m->step;

	size_t n = m->n_lengths;
	if (n == 0)
		return blame(field, fs, "plan_request.lengths", SL_EINVAL,
		             "the request has no sequences");
	if (lim != NULL && lim->max_seqs > 0 && (int64_t)n > lim->max_seqs) {
		snprintf(msg, sizeof(msg), "%zu sequences (limit max_seqs=%lld)", n,
		         (long long)lim->max_seqs);
		return blame(field, fs, "plan_request.lengths", SL_ERANGE, msg);
	}
	if (m->n_ids != 0 && m->n_ids != n) {
		snprintf(msg, sizeof(msg), "%zu ids for %zu lengths (give one id per length, or none)",
		         m->n_ids, n);
		return blame(field, fs, "plan_request.ids", SL_EINVAL, msg);
	}
	for (size_t i = 0; i < n; i++) {
		int64_t len = m->lengths[i];
		if (len < 1 || len > SL_MAX_SEQ_LEN) {
			snprintf(fname, sizeof(fname), "plan_request.lengths[%zu]", i);
			snprintf(msg, sizeof(msg), "length %lld (id %lld) is outside [1, %lld]",
			         (long long)len, (long long)(m->n_ids ? m->ids[i] : (int64_t)i),
			         (long long)SL_MAX_SEQ_LEN);
			return blame(field, fs, fname, SL_ERANGE, msg);
		}
	}

	if (m->policy[0] != '\0') {
		if (!comm_simple_name_ok(m->policy) || strlen(m->policy) > COMM_POLICY_MAX) {
			comm_sanitize(clean, sizeof(clean), m->policy);
			snprintf(msg, sizeof(msg),
			         "'%s' is not a policy name (1 to %d characters from [A-Za-z0-9._-])",
			         clean, COMM_POLICY_MAX);
			return blame(field, fs, "plan_request.policy", SL_ENOTFOUND, msg);
		}
		snprintf(out->policy, sizeof(out->policy), "%s", m->policy);
	}

	if (m->profile_source_case == SLUICE__PLAN_REQUEST__PROFILE_SOURCE_PROFILE_NAME) {
		if (!comm_simple_name_ok(m->profile_name)) {
			comm_sanitize(clean, sizeof(clean), m->profile_name);
			snprintf(msg, sizeof(msg),
			         "'%s' is not a profile name (1 to %d characters from [A-Za-z0-9._-])",
			         clean, SL_PROFILE_NAME_MAX - 1);
			return blame(field, fs, "plan_request.profile_name", SL_ENOTFOUND, msg);
		}
		snprintf(out->profile_name, sizeof(out->profile_name), "%s", m->profile_name);
	} else if (m->profile_source_case == SLUICE__PLAN_REQUEST__PROFILE_SOURCE_PROFILE) {
		SL_CHECK(comm_profile_from_proto(m->profile, &out->profile, field, fs));
		out->has_inline_profile = 1;
	}

	if (m->cluster != NULL) {
		if (m->cluster->ranks < 0 || m->cluster->ranks > SL_MAX_RANKS) {
			snprintf(msg, sizeof(msg), "%d is outside [1, %d] (0: the daemon's default)",
			         m->cluster->ranks, SL_MAX_RANKS);
			return blame(field, fs, "plan_request.cluster.ranks", SL_ERANGE, msg);
		}
		if (m->cluster->ranks_per_node < 0 || m->cluster->ranks_per_node > SL_MAX_RANKS) {
			snprintf(msg, sizeof(msg), "%d is outside [1, %d] (0: the daemon's default)",
			         m->cluster->ranks_per_node, SL_MAX_RANKS);
			return blame(field, fs, "plan_request.cluster.ranks_per_node", SL_ERANGE, msg);
		}
		out->ranks = m->cluster->ranks;
		out->ranks_per_node = m->cluster->ranks_per_node;
	}
	out->deadline_ms = m->deadline_ms;

	if (m->options != NULL) {
		const Sluice__PlanOptions *o = m->options;
		if (o->sp < 0 || o->sp > SL_MAX_RANKS) {
			snprintf(msg, sizeof(msg), "%d is outside [0, %d]", o->sp, SL_MAX_RANKS);
			return blame(field, fs, "plan_request.options.sp", SL_ERANGE, msg);
		}
		if (o->trace_max_len < 0 || o->trace_max_len > SL_MAX_SEQ_LEN) {
			snprintf(msg, sizeof(msg), "%lld is outside [0, %lld]",
			         (long long)o->trace_max_len, (long long)SL_MAX_SEQ_LEN);
			return blame(field, fs, "plan_request.options.trace_max_len", SL_ERANGE, msg);
		}
		if (!(isfinite(o->time_limit_ms) && o->time_limit_ms >= 0)) {
			snprintf(msg, sizeof(msg), "%g must be finite and >= 0", o->time_limit_ms);
			return blame(field, fs, "plan_request.options.time_limit_ms", SL_ERANGE, msg);
		}
		if (o->work_limit < 0) {
			snprintf(msg, sizeof(msg), "%lld must be >= 0", (long long)o->work_limit);
			return blame(field, fs, "plan_request.options.work_limit", SL_ERANGE, msg);
		}
		out->opts.sp = o->sp;
		out->opts.trace_max_len = o->trace_max_len;
		out->opts.time_limit_ms = o->time_limit_ms;
		out->opts.work_limit = o->work_limit;
		out->opts.seed = o->seed;
		out->no_dispatch = o->no_dispatch;
		out->debug_delay_ms = o->debug_delay_ms;
	}

	out->seqs = malloc(sizeof(sl_seq_t) * n);
	if (out->seqs == NULL)
		return blame(field, fs, "plan_request.lengths", SL_ENOMEM,
		             "no memory for the sequences");
	for (size_t i = 0; i < n; i++) {
		out->seqs[i].id = m->n_ids ? m->ids[i] : (int64_t)i;
		out->seqs[i].length = m->lengths[i];
	}
	out->n = (int64_t)n;
	return SL_OK;
}

sl_err comm_request_to_proto(const sl_plan_req_t *r, comm_arena_t *a, Sluice__PlanRequest *m)
{
	sluice__plan_request__init(m);
	if (r->job == NULL || !comm_job_name_ok(r->job))
		return sl_seterr(SL_EINVAL,
		                 "job name '%s' is invalid: 1 to %d characters from [A-Za-z0-9._:@+/-]",
		                 r->job ? r->job : "(null)", COMM_JOB_MAX);
	if (r->n < 1 || r->lengths == NULL)
		return sl_seterr(SL_EINVAL, "the request has no sequences");
	m->job = comm_arena_strdup(a, r->job);
	m->step = r->step;
	m->n_lengths = (size_t)r->n;
	m->lengths = (int64_t *)r->lengths; /* borrowed for the send */
	if (r->ids != NULL) {
		m->n_ids = (size_t)r->n;
		m->ids = (int64_t *)r->ids;
	}
	if (r->policy != NULL)
		m->policy = comm_arena_strdup(a, r->policy);
	if (r->inline_profile != NULL) {
		m->profile = comm_arena_alloc(a, sizeof(*m->profile));
		if (m->profile == NULL)
			return sl_seterr(SL_ENOMEM, "encoding the request");
		SL_CHECK(comm_profile_to_proto(r->inline_profile, a, m->profile));
		m->profile_source_case = SLUICE__PLAN_REQUEST__PROFILE_SOURCE_PROFILE;
	} else if (r->profile != NULL && r->profile[0] != '\0') {
		m->profile_name = comm_arena_strdup(a, r->profile);
		m->profile_source_case = SLUICE__PLAN_REQUEST__PROFILE_SOURCE_PROFILE_NAME;
	}
	if (r->ranks != 0 || r->ranks_per_node != 0) {
		m->cluster = comm_arena_alloc(a, sizeof(*m->cluster));
		if (m->cluster == NULL)
			return sl_seterr(SL_ENOMEM, "encoding the request");
		sluice__cluster__init(m->cluster);
		m->cluster->ranks = r->ranks;
		m->cluster->ranks_per_node = r->ranks_per_node;
	}
	m->deadline_ms = r->deadline_ms;
	m->options = comm_arena_alloc(a, sizeof(*m->options));
	if (m->options == NULL || a->failed)
		return sl_seterr(SL_ENOMEM, "encoding the request");
	sluice__plan_options__init(m->options);
	m->options->sp = r->opts.sp;
	m->options->trace_max_len = r->opts.trace_max_len;
	m->options->time_limit_ms = r->opts.time_limit_ms;
	m->options->work_limit = r->opts.work_limit;
	m->options->seed = r->opts.seed;
	m->options->no_dispatch = r->no_dispatch != 0;
	m->options->debug_delay_ms = r->debug_delay_ms;
	return SL_OK;
}

/* ---- plans ---------------------------------------------------------------------- */

sl_err comm_plan_to_proto(const sl_plan_t *p, comm_arena_t *a, Sluice__Plan *m)
{
	sluice__plan__init(m);
	m->format = (char *)SL_PLAN_FORMAT;
	m->policy = comm_arena_strdup(a, p->policy);
	m->profile = comm_arena_strdup(a, p->profile);
	m->ranks = p->ranks;
	m->ranks_per_node = p->ranks_per_node;
	m->cap_tokens = p->cap_tokens;
	size_t n = (size_t)p->nseqs;
	m->ids = comm_arena_alloc(a, sizeof(int64_t) * (n ? n : 1));
	m->lengths = comm_arena_alloc(a, sizeof(int64_t) * (n ? n : 1));
	if (m->ids == NULL || m->lengths == NULL)
		return sl_seterr(SL_ENOMEM, "encoding a plan of %zu sequences", n);
	for (size_t i = 0; i < n; i++) {
		m->ids[i] = p->seqs[i].id;
		m->lengths[i] = p->seqs[i].length;
	}
	m->n_ids = m->n_lengths = n;

	size_t ng = (size_t)p->ngroups, ni = (size_t)p->nitems;
	Sluice__Slot *slots = comm_arena_alloc(a, sizeof(*slots) * (size_t)(p->nslots + 1));
	Sluice__Slot **slotp = comm_arena_alloc(a, sizeof(*slotp) * (size_t)(p->nslots + 1));
	Sluice__Group *groups = comm_arena_alloc(a, sizeof(*groups) * (ng + 1));
	Sluice__Group **groupp = comm_arena_alloc(a, sizeof(*groupp) * (ng + 1));
	Sluice__Item *items = comm_arena_alloc(a, sizeof(*items) * (ni + 1));
	Sluice__Item **itemp = comm_arena_alloc(a, sizeof(*itemp) * (ni + 1));
	if (!slots || !slotp || !groups || !groupp || !items || !itemp)
		return sl_seterr(SL_ENOMEM, "encoding a plan of %zu groups", ng);
	for (size_t i = 0; i < ni; i++) {
		sluice__item__init(&items[i]);
		items[i].seq = p->items[i].seq;
		items[i].offload = p->items[i].offload;
		itemp[i] = &items[i];
	}
	for (size_t g = 0; g < ng; g++) {
		const sl_group_t *pg = &p->groups[g];
		sluice__group__init(&groups[g]);
		groups[g].n_ranks = (size_t)pg->nranks;
		groups[g].ranks = (int32_t *)sl_group_ranks(p, pg);
		groups[g].n_items = (size_t)pg->nitems;
		groups[g].items = itemp + pg->item_off;
		groupp[g] = &groups[g];
	}
	for (int32_t s = 0; s < p->nslots; s++) {
		sluice__slot__init(&slots[s]);
		slots[s].n_groups = (size_t)p->slots[s].ngroups;
		slots[s].groups = groupp + p->slots[s].group_off;
		slotp[s] = &slots[s];
	}
	m->n_slots = (size_t)p->nslots;
	m->slots = slotp;

	m->predicted = comm_arena_alloc(a, sizeof(*m->predicted));
	if (m->predicted == NULL || m->policy == NULL || m->profile == NULL)
		return sl_seterr(SL_ENOMEM, "encoding a plan");
	sluice__predicted__init(m->predicted);
	m->predicted->step_ms = p->step_ms;
	m->predicted->ideal_ms = p->ideal_ms;
	if (p->per_rank_ms != NULL) {
		m->predicted->n_per_rank_ms = (size_t)p->ranks;
		m->predicted->per_rank_ms = p->per_rank_ms;
	}
	m->lp_bound_ms = p->lp_bound_ms;
	m->planner_ms = p->planner_ms;
	m->search_truncated = p->search_truncated != 0;
	m->note = comm_arena_strdup(a, p->note);
	if (m->note == NULL)
		return sl_seterr(SL_ENOMEM, "encoding a plan");
	return SL_OK;
}

sl_err comm_plan_from_proto(const Sluice__Plan *m, sl_plan_t **out)
{
	char policy[32], profile[SL_PROFILE_NAME_MAX];
	sl_plan_t *p = NULL;
	sl_seq_t *seqs = NULL;
	sl_err rc = SL_OK;
	*out = NULL;

	if (m->ranks < 1 || m->ranks > SL_MAX_RANKS)
		return sl_seterr(SL_EPROTO, "plan.ranks = %d is outside [1, %d]", m->ranks,
		                 SL_MAX_RANKS);
	if (m->ranks_per_node < 1 || m->ranks_per_node > m->ranks)
		return sl_seterr(SL_EPROTO, "plan.ranks_per_node = %d is outside [1, ranks=%d]",
		                 m->ranks_per_node, m->ranks);
	if (m->n_ids != m->n_lengths)
		return sl_seterr(SL_EPROTO, "plan has %zu ids but %zu lengths", m->n_ids,
		                 m->n_lengths);
	comm_sanitize(policy, sizeof(policy), m->policy);
	comm_sanitize(profile, sizeof(profile), m->profile);
	seqs = malloc(sizeof(*seqs) * (m->n_ids ? m->n_ids : 1));
	if (seqs == NULL)
		return sl_seterr(SL_ENOMEM, "plan of %zu sequences", m->n_ids);
	for (size_t i = 0; i < m->n_ids; i++) {
		seqs[i].id = m->ids[i];
		seqs[i].length = m->lengths[i];
	}
	p = sl_plan_new(policy, profile, m->ranks, m->ranks_per_node, m->cap_tokens, seqs,
	                (int64_t)m->n_ids);
	free(seqs);
	if (p == NULL)
		return sl_seterr(SL_ENOMEM, "plan of %zu sequences", m->n_ids);

	for (size_t s = 0; s < m->n_slots; s++) {
		SL_CHECK_GOTO(sl_plan_add_slot(p), rc, fail);
		const Sluice__Slot *sl = m->slots[s];
		for (size_t g = 0; g < sl->n_groups; g++) {
			const Sluice__Group *gr = sl->groups[g];
			if (gr->n_ranks < 1 || gr->n_ranks > (size_t)m->ranks) {
				rc = sl_seterr(SL_EPROTO,
				               "plan.slots[%zu].groups[%zu] has %zu ranks (must be 1 to "
				               "%d)",
				               s, g, gr->n_ranks, m->ranks);
				goto fail;
			}
			for (size_t k = 0; k < gr->n_ranks; k++)
				if (gr->ranks[k] < 0 || gr->ranks[k] >= m->ranks) {
					rc = sl_seterr(SL_EPROTO,
					               "plan.slots[%zu].groups[%zu].ranks[%zu] = %d is "
					               "outside [0, %d)",
					               s, g, k, gr->ranks[k], m->ranks);
					goto fail;
				}
			SL_CHECK_GOTO(sl_plan_add_group(p, gr->ranks, (int32_t)gr->n_ranks), rc, fail);
			for (size_t i = 0; i < gr->n_items; i++) {
				const Sluice__Item *it = gr->items[i];
				if (it->seq < 0 || (size_t)it->seq >= m->n_ids) {
					rc = sl_seterr(SL_EPROTO,
					               "plan.slots[%zu].groups[%zu].items[%zu].seq = %d "
					               "is outside [0, %zu)",
					               s, g, i, it->seq, m->n_ids);
					goto fail;
				}
				if (!(it->offload >= 0 && it->offload < 1)) {
					rc = sl_seterr(SL_EPROTO,
					               "plan.slots[%zu].groups[%zu].items[%zu].offload = "
					               "%g is outside [0, 1)",
					               s, g, i, it->offload);
					goto fail;
				}
				SL_CHECK_GOTO(sl_plan_add_item(p, it->seq, it->offload), rc, fail);
			}
		}
	}
	if (m->predicted != NULL) {
		p->step_ms = m->predicted->step_ms;
		p->ideal_ms = m->predicted->ideal_ms;
		if (m->predicted->n_per_rank_ms != 0) {
			if (m->predicted->n_per_rank_ms != (size_t)m->ranks) {
				rc = sl_seterr(SL_EPROTO,
				               "plan.predicted.per_rank_ms has %zu entries for %d ranks",
				               m->predicted->n_per_rank_ms, m->ranks);
				goto fail;
			}
			memcpy(p->per_rank_ms, m->predicted->per_rank_ms,
			       sizeof(double) * (size_t)m->ranks);
		}
	}
	p->lp_bound_ms = m->lp_bound_ms;
	p->planner_ms = m->planner_ms;
	p->search_truncated = m->search_truncated;
	comm_sanitize(p->note, sizeof(p->note), m->note);
	*out = p;
	return SL_OK;
fail:
	sl_plan_free(&p);
	return rc;
}
