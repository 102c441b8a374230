/* libFuzzer target: the plan JSON reader (sluice score, run-plan) and the
 * profile JSON reader (--profile FILE, inline profiles). The first byte
 * picks the decoder. A plan that parses is validated under its own shape
 * and must survive a write/read round trip byte for byte; a profile that
 * parses must pass its own check and round-trip too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "planner.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_plan(const char *text)
{
	sl_plan_t *p = NULL, *q = NULL;
	if (sl_plan_parse_json(text, "fuzz.json", &p) != SL_OK) {
		if (sl_errmsg()[0] == '\0')
			abort(); /* every failure names what was wrong */
		return;
	}
	const sl_profile_t *prof = sl_profile_preset(p->profile);
	sl_cluster_t cl = {p->ranks, p->ranks_per_node};
	sl_cost_t cost;
	if (prof == NULL)
		prof = sl_profile_preset("gpt-7b-flexsp");
	if (p->ranks <= 512 && sl_cost_init(&cost, prof, &cl) == SL_OK) {
		(void)sl_plan_validate(p, &cost, NULL, NULL);
		sl_cost_fini(&cost);
	}
	char *a = sl_plan_to_json(p);
	if (a == NULL)
		abort();
	if (sl_plan_parse_json(a, "round-trip", &q) != SL_OK)
		abort();
	char *b = sl_plan_to_json(q);
	if (b == NULL || strcmp(a, b) != 0)
		abort();
	free(a);
	free(b);
	sl_plan_free(&q);
	sl_plan_free(&p);
}

static void fuzz_profile(const char *text)
{
	sl_profile_t p, q;
	if (sl_profile_parse_json(text, "fuzz-profile.json", &p) != SL_OK)
		return;
	if (sl_profile_check(&p) != SL_OK)
		abort(); /* the parser checks what it accepts */
	char *s = sl_profile_to_json(&p);
	if (s == NULL || sl_profile_parse_json(s, "round-trip", &q) != SL_OK)
		abort();
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (1u << 20))
		return 0;
	char *text = malloc(size);
	if (text == NULL)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	sl_clearerr();
	if (data[0] & 1)
		fuzz_profile(text);
	else
		fuzz_plan(text);
	free(text);
	return 0;
}
