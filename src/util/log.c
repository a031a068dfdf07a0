/* util/log.c — stderr logger behind util/log.h. */
#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "parley/parley.h"

log_level_t log_threshold = LOG_LEVEL_INFO;
static char log_role[16];

void log_set_role(const char *role) {
    snprintf(log_role, sizeof log_role, "%s%s", role && *role ? role : "",
             role && *role ? " " : "");
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *name, log_level_t *out) {
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    return -1;
}

bool log_limit_pass(log_limit_t *l, uint32_t *dropped_out) {
    struct timespec ts;
    *dropped_out = 0;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0)
        return true;
    uint64_t now = (uint64_t)ts.tv_sec;
    if (now != l->second) {
        l->second = now;
        l->lines = 0;
    }
    if (l->lines >= LOG_LIMIT_PER_SEC) {
        l->dropped++;
        return false;
    }
    l->lines++;
    *dropped_out = l->dropped;
    l->dropped = 0;
    return true;
}

int parley_log_set_level(const char *level) {
    return log_level_parse(level, &log_threshold) ? -EINVAL : 0;
}

void log_write(log_level_t level, const char *tag, const char *fmt, ...) {
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s%-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], log_role, tag);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line - 1)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
}
