/* libFuzzer target: sluiced's config file parser (the option table's
 * reader) and the CURVE key and authorised-keys parsers. The first byte
 * picks the parser. Built when SLUICE_FUZZ is ON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "daemon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *text = (const char *)data + 1;
	size_t len = size - 1;
	switch (data[0] % 3) {
	case 0: {
		static daemon_config_t c; /* large: keep it off the stack */
		daemon_config_defaults(&c);
		if (daemon_config_parse_text(&c, text, len, "fuzz.conf") == SL_OK) {
			for (size_t i = 0; i < daemon_nopts; i++) {
				char v[DAEMON_STR_MAX];
				daemon_config_format(&c, &daemon_opts[i], v, sizeof(v));
			}
		}
		break;
	}
	case 1: {
		char key[SL_KEY_Z85_LEN + 1];
		if (comm_key_parse(text, len, "fuzz.key", key) == SL_OK && strlen(key) != SL_KEY_Z85_LEN)
			abort();
		break;
	}
	default: {
		comm_keyset_t ks;
		if (comm_keyset_parse(text, len, "fuzz.keys", &ks) == SL_OK) {
			uint8_t probe[32] = {0};
			(void)comm_keyset_has(&ks, probe);
			comm_keyset_fini(&ks);
		}
		break;
	}
	}
	return 0;
}
