/* util/time.h — the clocks in milliseconds.
 *
 * One conversion from struct timespec for the whole tree: monotonic time for deadlines
 * and rate limits (never goes back), wall-clock time for what users see (message
 * timestamps, token expiry). */
#ifndef PARLEY_UTIL_TIME_H
#define PARLEY_UTIL_TIME_H

#include <stdint.h>

/* CLOCK_MONOTONIC in ms: for intervals only. */
uint64_t time_mono_ms(void);
/* CLOCK_REALTIME in ms since the Unix epoch. */
int64_t time_wall_ms(void);

#endif
