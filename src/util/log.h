/* util/log.h — one logging macro family for every module.
 *
 * LOG_INFO("eio", "session %s closed: %s", sid, reason). Lines go to stderr with a
 * timestamp, level and the module's tag, as text or as one JSON object per line
 * ({"time", "level", "module", "role" when set, "msg"}: for log collectors). The level
 * and format are process-wide and set once at start-up (read-only afterwards, so worker
 * threads may log freely). Nothing on a per-message path logs above debug. */
#ifndef PARLEY_UTIL_LOG_H
#define PARLEY_UTIL_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR } log_level_t;

extern log_level_t log_threshold;

/* A short name of this process in a group (a worker's "w2", the supervisor's "sup"),
 * written on every line; NULL or "" for none. Set once at start-up. */
void log_set_role(const char *role);
/* Parses "debug", "info", "warn" or "error"; returns -1 for anything else. */
int log_level_parse(const char *name, log_level_t *out);
/* "text" (the default) or "json"; returns -1 for anything else. */
int log_set_format(const char *name);
/* The time now as every line shows it: UTC with milliseconds, 2026-01-31T12:00:00.000Z. */
#define LOG_TIMESTAMP_SIZE 64
void log_timestamp(char out[LOG_TIMESTAMP_SIZE]);
void log_write(log_level_t level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG_AT(level, tag, ...)                                                                    \
    do {                                                                                           \
        if ((level) >= log_threshold)                                                              \
            log_write((level), (tag), __VA_ARGS__);                                                \
    } while (0)
#define LOG_DEBUG(tag, ...) LOG_AT(LOG_LEVEL_DEBUG, tag, __VA_ARGS__)
#define LOG_INFO(tag, ...) LOG_AT(LOG_LEVEL_INFO, tag, __VA_ARGS__)
#define LOG_WARN(tag, ...) LOG_AT(LOG_LEVEL_WARN, tag, __VA_ARGS__)
#define LOG_ERROR(tag, ...) LOG_AT(LOG_LEVEL_ERROR, tag, __VA_ARGS__)

/* Lines that clients can provoke (a malformed packet, a refused handshake) are limited
 * per call site to LOG_LIMIT_PER_SEC a second; the next line that passes says how many
 * were dropped. Each call site has its own static state: loop thread only. */
#define LOG_LIMIT_PER_SEC 10
typedef struct {
    uint64_t second; /* the wall-clock second being counted */
    uint32_t lines, dropped;
} log_limit_t;
/* Whether a line may be written now; *dropped_out receives (and resets) the count of
 * lines refused since the last one that passed. */
bool log_limit_pass(log_limit_t *l, uint32_t *dropped_out);
#define LOG_LIMITED(level, tag, ...)                                                               \
    do {                                                                                           \
        static log_limit_t log_limit_;                                                             \
        uint32_t log_dropped_;                                                                     \
        if ((level) >= log_threshold && log_limit_pass(&log_limit_, &log_dropped_)) {              \
            if (log_dropped_)                                                                      \
                log_write((level), (tag), "(%u similar lines dropped)", log_dropped_);             \
            log_write((level), (tag), __VA_ARGS__);                                                \
        }                                                                                          \
    } while (0)

#endif
