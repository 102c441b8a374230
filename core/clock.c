/* sluice: the one monotonic clock used for timing and time limits. */
#include <time.h>

#include "sluice/clock.h"

double sl_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
