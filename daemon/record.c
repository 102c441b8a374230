/* sluiced: recording requests' lengths to a trace `sluice replay` reads back
 * (`# job step` comment lines between requests); reopened on SIGHUP. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"

void daemon_record_open(server_t *s)
{
	if (s->record != NULL) {
		fclose(s->record);
		s->record = NULL;
	}
	if (s->cfg.record[0] == '\0')
		return;
	s->record = fopen(s->cfg.record, "a");
	if (s->record == NULL)
		SL_ERROR(SL_SUB_DAEMON, "record %s: %s (not recording)", s->cfg.record, strerror(errno));
}

/* Appends a request's lengths as a text trace block that `sluice replay`
 * reads back ('#' lines are comments there). */
void daemon_record_request(server_t *s, const comm_request_t *r)
{
	if (s->record == NULL)
		return;
	fprintf(s->record, "# %s %" PRIu64 "\n", r->job, r->step);
	for (int64_t i = 0; i < r->n; i++)
		fprintf(s->record, "%" PRId64 "\n", r->seqs[i].length);
	if (fflush(s->record) != 0 || ferror(s->record)) {
		SL_ERROR(SL_SUB_DAEMON, "record %s: write failed: %s (not recording)", s->cfg.record,
		         strerror(errno));
		fclose(s->record);
		s->record = NULL;
	}
}
