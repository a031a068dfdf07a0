/* util/log.c — stderr logger behind util/log.h. */
#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "parley/parley.h"
#include "util/utf8.h"

log_level_t log_threshold = LOG_LEVEL_INFO;
static char log_role[16];
static bool log_json;

void log_set_role(const char *role) {
    snprintf(log_role, sizeof log_role, "%s", role ? role : "");
}

int log_set_format(const char *name) {
    if (strcmp(name, "text") != 0 && strcmp(name, "json") != 0)
        return -1;
    log_json = strcmp(name, "json") == 0;
    return 0;
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

/* Appends s to out (of size cap, from *n) as the inside of a JSON string: quotes,
 * backslashes and control characters escaped, bytes that are not UTF-8 (a client's
 * text quoted in a message) replaced by U+FFFD. Stops, whole characters only, when out
 * is full. */
static void json_escape(char *out, size_t cap, size_t *n, const char *s) {
    const uint8_t *p = (const uint8_t *)s;
    while (*p) {
        char esc[8];
        size_t len = 1;
        const char *piece = esc;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            len = 2;
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            len = 6;
        } else if (*p < 0x80) {
            piece = (const char *)p;
        } else {
            size_t seq = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : 2;
            if (strnlen((const char *)p, seq) == seq && utf8_is_valid(p, seq)) {
                piece = (const char *)p;
                len = seq;
            } else {
                piece = "\xef\xbf\xbd";
                len = 3;
                seq = 1;
            }
            if (*n + len >= cap)
                return;
            memcpy(out + *n, piece, len);
            *n += len;
            p += seq;
            continue;
        }
        if (*n + len >= cap)
            return;
        memcpy(out + *n, piece, len);
        *n += len;
        p++;
    }
}

/* Appends s to out when it fits whole. */
static void put(char *out, size_t cap, size_t *n, const char *s) {
    size_t len = strlen(s);
    if (*n + len < cap) {
        memcpy(out + *n, s, len + 1); /* its NUL is overwritten by what follows */
        *n += len;
    }
}

void log_timestamp(char out[LOG_TIMESTAMP_SIZE]) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, LOG_TIMESTAMP_SIZE, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

void log_write(log_level_t level, const char *tag, const char *fmt, ...) {
    char line[1024], msg[1024], stamp[LOG_TIMESTAMP_SIZE];
    log_timestamp(stamp);
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof msg, fmt, ap) < 0)
        msg[0] = '\0';
    va_end(ap);
    size_t n = 0;
    if (log_json) {
        /* The fixed parts always fit; the message is cut, at a character, to leave room
         * for the closing quote, brace and newline. */
        const size_t cap = sizeof line - 3;
        put(line, cap, &n, "{\"time\":\"");
        put(line, cap, &n, stamp);
        put(line, cap, &n, "\",\"level\":\"");
        put(line, cap, &n, level_names[level]);
        put(line, cap, &n, "\",\"module\":\"");
        json_escape(line, cap, &n, tag);
        if (log_role[0]) {
            put(line, cap, &n, "\",\"role\":\"");
            json_escape(line, cap, &n, log_role);
        }
        put(line, cap, &n, "\",\"msg\":\"");
        json_escape(line, cap, &n, msg);
        line[n++] = '"';
        line[n++] = '}';
    } else {
        int w = snprintf(line, sizeof line, "%s %-5s %s%s%-5s %s", stamp, level_names[level],
                         log_role, log_role[0] ? " " : "", tag, msg);
        n = w < 0 ? 0 : (size_t)w >= sizeof line - 1 ? sizeof line - 2 : (size_t)w;
    }
    line[n++] = '\n';
    fwrite(line, 1, n, stderr);
}
