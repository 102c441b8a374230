/* Prints, as JSON, the sizes and field offsets of the C structs that the
 * Python client mirrors with ctypes (python/sluice/_lib.py), so
 * test_layout.py can compare the two: a header change not repeated in
 * Python fails a test instead of corrupting memory. */
#include <stddef.h>
#include <stdio.h>

#include "sluice/client.h"

#define FIELD(type, f, last) \
	printf("\"%s\": [%zu, %zu]%s", #f, offsetof(type, f), sizeof(((type *)0)->f), (last) ? "" : ", ")

int main(void)
{
	printf("{\"sl_policy_opts_t\": {\"size\": %zu, \"fields\": {", sizeof(sl_policy_opts_t));
	FIELD(sl_policy_opts_t, sp, 0);
	FIELD(sl_policy_opts_t, trace_max_len, 0);
	FIELD(sl_policy_opts_t, time_limit_ms, 0);
	FIELD(sl_policy_opts_t, work_limit, 0);
	FIELD(sl_policy_opts_t, seed, 0);
	FIELD(sl_policy_opts_t, deadline_ms, 0);
	FIELD(sl_policy_opts_t, cancel, 1);
	printf("}},\n \"sl_plan_req_t\": {\"size\": %zu, \"fields\": {", sizeof(sl_plan_req_t));
	FIELD(sl_plan_req_t, job, 0);
	FIELD(sl_plan_req_t, step, 0);
	FIELD(sl_plan_req_t, lengths, 0);
	FIELD(sl_plan_req_t, ids, 0);
	FIELD(sl_plan_req_t, n, 0);
	FIELD(sl_plan_req_t, policy, 0);
	FIELD(sl_plan_req_t, profile, 0);
	FIELD(sl_plan_req_t, inline_profile, 0);
	FIELD(sl_plan_req_t, ranks, 0);
	FIELD(sl_plan_req_t, ranks_per_node, 0);
	FIELD(sl_plan_req_t, deadline_ms, 0);
	FIELD(sl_plan_req_t, opts, 0);
	FIELD(sl_plan_req_t, no_dispatch, 0);
	FIELD(sl_plan_req_t, debug_delay_ms, 1);
	printf("}},\n \"sl_client_opts_t\": {\"size\": %zu, \"fields\": {", sizeof(sl_client_opts_t));
	FIELD(sl_client_opts_t, identity, 0);
	FIELD(sl_client_opts_t, server_key, 0);
	FIELD(sl_client_opts_t, secret_key_file, 0);
	FIELD(sl_client_opts_t, heartbeat_ms, 1);
	printf("}},\n \"sl_event_t\": {\"size\": %zu, \"fields\": {", sizeof(sl_event_t));
	FIELD(sl_event_t, kind, 0);
	FIELD(sl_event_t, job, 0);
	FIELD(sl_event_t, rank, 0);
	FIELD(sl_event_t, message, 0);
	FIELD(sl_event_t, step, 1);
	printf("}},\n \"sl_profile_t_size\": %zu, \"sl_err_count\": %d}\n", sizeof(sl_profile_t),
	       (int)SL_ERR_COUNT_);
	return 0;
}
