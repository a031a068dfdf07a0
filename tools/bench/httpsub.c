/* tools/bench/httpsub.c — SSE and long-poll subscribers (see httpsub.h). */
#include "httpsub.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "jwt.h"
#include "worker.h"
#include "wsio.h"

#define HTTPSUB_MAX_HEAD 8192

enum { CHUNK_SIZE, CHUNK_EXT, CHUNK_DATA, CHUNK_DATA_END, CHUNK_LAST, CHUNK_NONE };

static const char *const MARKERS[2] = {WSIO_STAMP_MARKER, "\"seq\":"};

static int send_request(worker_t *w, client_t *c, uint32_t wait_s) {
    char tok[JWT_MAX], req[1024];
    if (jwt_sign_user(w->cfg->jwt_secret, c->id, tok) < 0)
        return -1;
    int n = snprintf(req, sizeof req, "GET /api/rooms/%s-%u/", w->cfg->run_id, c->room);
    if (c->proto == PROTO_SSE)
        n += snprintf(req + n, sizeof req - (size_t)n, "events");
    else
        n += snprintf(req + n, sizeof req - (size_t)n, "messages?after=%llu&wait=%u",
                      (unsigned long long)c->after_seq, wait_s);
    n += snprintf(req + n, sizeof req - (size_t)n,
                  " HTTP/1.1\r\nHost: %s:%u\r\nAuthorization: Bearer %s\r\n%s\r\n", w->cfg->host,
                  w->cfg->port, tok, c->proto == PROTO_SSE ? "Accept: text/event-stream\r\n" : "");
    if (c->state == CONN_IDLE)
        return conn_open(w, c, req, (size_t)n);
    c->state = CONN_HEAD;
    return conn_send(w, c, req, (size_t)n);
}

int httpsub_open(worker_t *w, client_t *c) {
    return send_request(w, c, 0);
}

/* The value of header `name` (with its colon) in head[0..len), or NULL. */
static const char *header(const char *head, size_t len, const char *name, size_t *vlen) {
    size_t nlen = strlen(name);
    const char *p = memchr(head, '\n', len), *end = head + len;
    while (p && (size_t)(end - p) > nlen + 1) {
        p++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            return NULL;
        if (strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        p = eol;
    }
    return NULL;
}

static ssize_t parse_head(worker_t *w, client_t *c, const uint8_t *data, size_t len) {
    const uint8_t *end = memmem(data, len, "\r\n\r\n", 4);
    if (!end) {
        if (len > HTTPSUB_MAX_HEAD) {
            conn_close(w, c, "response head too long");
            return -1;
        }
        return 0;
    }
    size_t hlen = (size_t)(end + 4 - data), vlen;
    if (len < 12 || memcmp(data + 8, " 200", 4) != 0) {
        conn_close(w, c, "HTTP status not 200");
        return -1;
    }
    const char *v, *head = (const char *)data;
    c->body_left = -1;
    c->chunk_state = CHUNK_NONE;
    if ((v = header(head, hlen, "transfer-encoding:", &vlen)) && vlen >= 7 &&
        strncasecmp(v + vlen - 7, "chunked", 7) == 0) {
        c->chunk_state = CHUNK_SIZE;
        c->chunk_left = 0;
    } else if ((v = header(head, hlen, "content-length:", &vlen))) {
        c->body_left = 0;
        for (size_t i = 0; i < vlen && v[i] >= '0' && v[i] <= '9'; i++)
            c->body_left = c->body_left * 10 + (v[i] - '0');
    }
    c->state = CONN_READY; /* in the body */
    if (c->proto == PROTO_SSE && !c->ready)
        worker_client_connected(w, c);
    return (ssize_t)hlen;
}

/* Scans body bytes for the stamp and seq markers, across calls. */
static void scan(worker_t *w, client_t *c, const uint8_t *p, size_t n, uint64_t *now) {
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i];
        if (c->scan_num) {
            if (b >= '0' && b <= '9') {
                c->scan_val = c->scan_val * 10 + (uint64_t)(b - '0');
                continue;
            }
            if (c->scan_num == 1) {
                if (!*now)
                    *now = bench_now();
                worker_client_delivery(w, c, c->scan_val, *now);
            } else if (c->scan_val > c->after_seq) {
                c->after_seq = c->scan_val;
            }
            c->scan_num = 0;
        }
        for (int m = 0; m < 2; m++) {
            uint8_t pos = c->scan_pos[m];
            if (b == (uint8_t)MARKERS[m][pos])
                pos++;
            else
                pos = b == (uint8_t)MARKERS[m][0];
            if (MARKERS[m][pos] == '\0') {
                c->scan_num = (uint8_t)(m + 1);
                c->scan_val = 0;
                pos = 0;
            }
            c->scan_pos[m] = pos;
        }
    }
}

/* A long-poll response is complete: the first makes the client ready, each asks again. */
static int poll_done(worker_t *w, client_t *c) {
    if (c->proto == PROTO_SSE) {
        conn_close(w, c, "event stream ended");
        return -1;
    }
    if (!c->ready)
        worker_client_connected(w, c);
    if (c->state == CONN_CLOSED)
        return -1;
    return send_request(w, c, w->cfg->wait_s);
}

/* Body bytes; returns how many were consumed (less than n when a long-poll response
 * ended and the rest belongs to the next one), or -1. */
static ssize_t body(worker_t *w, client_t *c, const uint8_t *p, size_t n, uint64_t *now) {
    size_t i = 0;
    while (i < n) {
        if (c->chunk_state == CHUNK_NONE) {
            size_t take = n - i;
            if (c->body_left >= 0 && (size_t)c->body_left < take)
                take = (size_t)c->body_left;
            scan(w, c, p + i, take, now);
            i += take;
            if (c->body_left >= 0 && (c->body_left -= (int64_t)take) == 0)
                return poll_done(w, c) < 0 ? -1 : (ssize_t)i;
            continue;
        }
        uint8_t b = p[i];
        switch (c->chunk_state) {
        case CHUNK_SIZE:
        case CHUNK_EXT:
            i++;
            if (b == '\n') {
                c->chunk_state = c->chunk_left ? CHUNK_DATA : CHUNK_LAST;
            } else if (c->chunk_state == CHUNK_SIZE && b != '\r' && b != ';') {
                int d = b >= '0' && b <= '9'   ? b - '0'
                        : b >= 'a' && b <= 'f' ? b - 'a' + 10
                        : b >= 'A' && b <= 'F' ? b - 'A' + 10
                                               : -1;
                if (d < 0 || c->chunk_left > (1u << 26))
                    return -1;
                c->chunk_left = c->chunk_left * 16 + (uint32_t)d;
            } else {
                c->chunk_state = CHUNK_EXT;
            }
            break;
        case CHUNK_DATA: {
            size_t take = n - i < c->chunk_left ? n - i : c->chunk_left;
            scan(w, c, p + i, take, now);
            i += take;
            c->chunk_left -= (uint32_t)take;
            if (c->chunk_left == 0)
                c->chunk_state = CHUNK_DATA_END;
            break;
        }
        case CHUNK_DATA_END:
            i++;
            if (b == '\n')
                c->chunk_state = CHUNK_SIZE;
            break;
        case CHUNK_LAST: /* no trailers: the line after the last chunk is empty */
            i++;
            if (b == '\n')
                return poll_done(w, c) < 0 ? -1 : (ssize_t)i;
            break;
        }
    }
    return (ssize_t)i;
}

ssize_t httpsub_parse(worker_t *w, client_t *c, uint8_t *data, size_t len) {
    size_t off = 0;
    uint64_t now = 0;
    while (off < len) {
        if (c->state == CONN_HEAD) {
            ssize_t h = parse_head(w, c, data + off, len - off);
            if (h <= 0)
                return h < 0 ? -1 : (ssize_t)off;
            off += (size_t)h;
            if (c->body_left == 0 && poll_done(w, c) < 0)
                return -1;
            continue;
        }
        ssize_t used = body(w, c, data + off, len - off, &now);
        if (used < 0 || c->state == CONN_CLOSED)
            return -1;
        off += (size_t)used;
    }
    return (ssize_t)off;
}
