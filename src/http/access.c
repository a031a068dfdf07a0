/* http/access.c — the access log (http/access.h).
 *
 * Text lines read as the common log formats do, with the fields Parley knows:
 *   2026-01-31T12:00:00.000Z 127.0.0.1 "GET /healthz" 200 83 0ms "curl/7.88.1"
 * (length "-" for a stream or no body). Quotes, backslashes and bytes outside printable
 * ASCII in the strings are written as \xHH, so a line is always one line and parsable.
 * JSON lines: {"time","remote","method","path","status","length","ms","ua"}. */
#include "http/access.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

#define FLUSH_MS 1000

struct http_access_log {
    uv_timer_t timer;
    FILE *f;
    bool json, own_file;
};

static void on_timer(uv_timer_t *t) {
    http_access_log_t *al = t->data;
    if (fflush(al->f))
        LOG_LIMITED(LOG_LEVEL_WARN, "http", "access log: %s", strerror(errno));
}

int http_access_log_open(uv_loop_t *loop, const char *path, bool json, http_access_log_t **out) {
    http_access_log_t *al = calloc(1, sizeof *al);
    if (!al)
        return -ENOMEM;
    al->json = json;
    if (strcmp(path, "-") == 0) {
        al->f = stdout;
    } else {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0 || !(al->f = fdopen(fd, "a"))) {
            int rc = -errno;
            if (fd >= 0)
                close(fd);
            free(al);
            return rc;
        }
        al->own_file = true;
    }
    int rc = uv_timer_init(loop, &al->timer);
    if (rc == 0) {
        al->timer.data = al;
        rc = uv_timer_start(&al->timer, on_timer, FLUSH_MS, FLUSH_MS);
    }
    if (rc) {
        if (al->own_file)
            fclose(al->f); /* nothing written yet */
        free(al);
        return rc;
    }
    uv_unref((uv_handle_t *)&al->timer); /* a log does not keep the process up */
    *out = al;
    return 0;
}

/* s, with what would break the line escaped. */
static void put_text(FILE *f, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\')
            fprintf(f, "\\x%02X", *p);
        else
            fputc(*p, f);
    }
}

static void write_json(http_access_log_t *al, const char *stamp, const http_access_t *e) {
    json_t *o =
        json_pack("{s:s,s:s,s:s%,s:s%,s:i,s:I,s:I,s:s%}", "time", stamp, "remote", e->remote,
                  "method", e->method, strlen(e->method), "path", e->path, strlen(e->path),
                  "status", e->status, "length", (json_int_t)e->length, "ms",
                  (json_int_t)e->duration_ms, "ua", e->user_agent, strlen(e->user_agent));
    /* Bytes that are not UTF-8 make json_pack refuse: the line is written without them. */
    if (!o)
        o = json_pack("{s:s,s:s,s:i,s:I,s:I}", "time", stamp, "remote", e->remote, "status",
                      e->status, "length", (json_int_t)e->length, "ms", (json_int_t)e->duration_ms);
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!line) {
        LOG_LIMITED(LOG_LEVEL_WARN, "http", "access log: out of memory");
        return;
    }
    fputs(line, al->f);
    fputc('\n', al->f);
    free(line);
}

void http_access_log_write(const http_access_t *e, void *arg) {
    http_access_log_t *al = arg;
    char stamp[LOG_TIMESTAMP_SIZE];
    log_timestamp(stamp);
    if (al->json) {
        write_json(al, stamp, e);
    } else {
        fprintf(al->f, "%s %s \"", stamp, e->remote[0] ? e->remote : "-");
        put_text(al->f, e->method);
        fputc(' ', al->f);
        put_text(al->f, e->path);
        fprintf(al->f, "\" %d ", e->status);
        if (e->length >= 0)
            fprintf(al->f, "%" PRId64, e->length);
        else
            fputc('-', al->f);
        fprintf(al->f, " %" PRIu64 "ms \"", e->duration_ms);
        put_text(al->f, e->user_agent);
        fputs("\"\n", al->f);
    }
    if (ferror(al->f)) {
        LOG_LIMITED(LOG_LEVEL_WARN, "http", "access log: write error");
        clearerr(al->f);
    }
}

static void on_closed(uv_handle_t *h) {
    free(h->data);
}

void http_access_log_close(http_access_log_t *al) {
    if (!al)
        return;
    int rc;
    if (al->own_file)
        rc = fclose(al->f);
    else
        rc = fflush(al->f); /* stdout stays open */
    if (rc)
        LOG_WARN("http", "access log: closing: %s", strerror(errno));
    uv_close((uv_handle_t *)&al->timer, on_closed);
}
