/* libFuzzer target: every decoder of sluiced's wire input. Each input is
 * one ZeroMQ frame as a peer would send it: decoded with the bounded
 * decoder, then passed through the conversion its body type gets (plan
 * requests with the daemon's limits, plans, work orders, status replies,
 * errors), and each result is used (JSON written, work orders derived) so
 * that half-initialised output would show. Anything but a crash, a
 * sanitizer report or a leak is fine. Built when SLUICE_FUZZ is ON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void use_plan(const sl_plan_t *p)
{
	char *json = sl_plan_to_json(p);
	free(json);
	for (int32_t r = 0; r < p->ranks && r < 4; r++) {
		sl_work_order_t *o = NULL;
		if (sl_work_order_from_plan(p, NULL, r, "fuzz", 1, &o) == SL_OK)
			sl_work_order_free(&o);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Sluice__Envelope *env = NULL;
	if (comm_decode(data, size, &env) != SL_OK)
		return 0;
	switch (env->body_case) {
	case SLUICE__ENVELOPE__BODY_PLAN_REQUEST: {
		comm_request_t r;
		char field[128];
		comm_limits_t lim = {65536};
		if (comm_request_from_proto(env->plan_request, &lim, &r, field, sizeof(field)) ==
		    SL_OK) {
			if (r.n < 1 || r.seqs == NULL)
				abort(); /* a checked request always has sequences */
			comm_request_fini(&r);
		}
		break;
	}
	case SLUICE__ENVELOPE__BODY_PLAN: {
		sl_plan_t *p = NULL;
		if (comm_plan_from_proto(env->plan, &p) == SL_OK) {
			use_plan(p);
			sl_plan_free(&p);
		}
		break;
	}
	case SLUICE__ENVELOPE__BODY_WORK_ORDER: {
		sl_work_order_t *o = NULL;
		if (comm_order_from_proto(env->work_order, &o) == SL_OK) {
			for (int32_t g = 0; g < o->ngroups; g++)
				for (int32_t k = 0; k < o->groups[g].nshards; k++) {
					const sl_shard_t *s = &o->groups[g].shards[k];
					if (s->end[0] > s->length || s->end[1] > s->length ||
					    s->begin[0] > s->end[0] || s->begin[1] > s->end[1])
						abort(); /* a checked order stays inside its sequence */
				}
			sl_work_order_free(&o);
		}
		break;
	}
	case SLUICE__ENVELOPE__BODY_STATUS_REPLY: {
		char *json = NULL;
		if (comm_status_to_json(env->status_reply, &json) == SL_OK)
			free(json);
		break;
	}
	case SLUICE__ENVELOPE__BODY_ERROR: {
		char field[64];
		comm_error_raise(env->error, field, sizeof(field));
		break;
	}
	case SLUICE__ENVELOPE__BODY_HELLO:
		(void)comm_job_name_ok(env->hello->job);
		break;
	default:
		break;
	}
	comm_envelope_free(&env);
	return 0;
}
