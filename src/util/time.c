/* util/time.c — clock readings behind util/time.h. */
#include "util/time.h"

#include <time.h>

static int64_t timespec_ms(clockid_t clock) {
    struct timespec ts;
    /* Both clocks always exist on Linux; clock_gettime fails only for a bad clock id. */
    if (clock_gettime(clock, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t time_mono_ms(void) {
    return (uint64_t)timespec_ms(CLOCK_MONOTONIC);
}

int64_t time_wall_ms(void) {
    return timespec_ms(CLOCK_REALTIME);
}
