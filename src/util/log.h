/* util/log.h — one logging macro family for every module.
 *
 * LOG_INFO("eio", "session %s closed: %s", sid, reason). Lines go to stderr with a
 * timestamp, level and the module's tag. The level is process-wide and set once at
 * start-up (it is read-only afterwards, so worker threads may log freely). Nothing on
 * a per-message path logs above debug. */
#ifndef PARLEY_UTIL_LOG_H
#define PARLEY_UTIL_LOG_H

typedef enum { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR } log_level_t;

extern log_level_t log_threshold;

/* Parses "debug", "info", "warn" or "error"; returns -1 for anything else. */
int log_level_parse(const char *name, log_level_t *out);
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

#endif
