/* sluice: the one monotonic clock used for timing and time limits. */
#ifndef SLUICE_CLOCK_H
#define SLUICE_CLOCK_H

#ifdef __cplusplus
extern "C" {
#endif

/* Milliseconds on CLOCK_MONOTONIC (an arbitrary origin): for measuring
 * durations only, never for results that must be reproducible. */
double sl_now_ms(void);

#ifdef __cplusplus
}
#endif
#endif
