/* tools/bench/wsio.c — Socket.IO over WebSocket, client side (see wsio.h). */
#include "wsio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define ZLIB_CONST /* next_in is const: no casts from our const input */
#include <zlib.h>

#include "jwt.h"
#include "worker.h"

#define WSIO_MAX_FRAME (64u << 20) /* a frame above this is an error */
#define WSIO_MAX_HEAD 8192         /* bytes of the HTTP 101 response head */

int wsio_open(worker_t *w, client_t *c) {
    char req[512];
    int n = snprintf(
        req, sizeof req,
        "GET %s?EIO=4&transport=websocket HTTP/1.1\r\n"
        "Host: %s:%u\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: cGFybGV5LWJlbmNoLWtleQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n%s\r\n",
        w->cfg->path, w->cfg->host, w->cfg->port,
        w->cfg->deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                        : "");
    return conn_open(w, c, req, (size_t)n);
}

/* Queues one masked text frame carrying data. */
static int send_text(worker_t *w, client_t *c, const char *data, size_t len, uint8_t opcode) {
    uint8_t head[14];
    size_t h = 0;
    head[h++] = 0x80 | opcode;
    if (len < 126) {
        head[h++] = 0x80 | (uint8_t)len;
    } else if (len < 65536) {
        head[h++] = 0x80 | 126;
        head[h++] = (uint8_t)(len >> 8);
        head[h++] = (uint8_t)len;
    } else {
        head[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            head[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    /* xorshift32: masking keys need not be strong against a server we trust */
    uint32_t x = w->mask_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    w->mask_state = x;
    uint8_t key[4];
    memcpy(key, &x, 4);
    memcpy(head + h, key, 4);
    h += 4;
    if (buf_reserve(&c->out, h + len) || conn_send(w, c, head, h))
        return -1;
    uint8_t *dst = c->out.data + c->out.len;
    for (size_t i = 0; i < len; i++)
        dst[i] = (uint8_t)data[i] ^ key[i & 3];
    c->out.len += len;
    return 0;
}

int wsio_join(worker_t *w, client_t *c, uint32_t ack) {
    char pkt[128];
    int n = snprintf(pkt, sizeof pkt, "42%u[\"joinRoom\",{\"roomId\":\"%s-%u\"}]", ack,
                     w->cfg->run_id, c->room);
    return send_text(w, c, pkt, (size_t)n, 0x1);
}

int wsio_send_message(worker_t *w, client_t *c, uint32_t ack, uint64_t stamp) {
    char pkt[4096 + 128];
    int n = snprintf(pkt, sizeof pkt, "42%u[\"sendMessage\",{\"roomId\":\"%s-%u\",\"text\":\"", ack,
                     w->cfg->run_id, c->room);
    size_t want = (size_t)n + w->cfg->text_bytes;
    n += snprintf(pkt + n, sizeof pkt - (size_t)n, "T%llu ", (unsigned long long)stamp);
    if (w->cfg->text_words) {
        /* Words of 2 to 9 lowercase letters from an LCG seeded by the stamp: text that
         * deflate shrinks about as much as chat prose, unlike a run of one letter. */
        uint32_t x = (uint32_t)stamp | 1;
        while ((size_t)n < want && (size_t)n < sizeof pkt - 4) {
            x = x * 1664525u + 1013904223u;
            unsigned len = 2 + (x >> 28) % 8;
            for (unsigned i = 0; i < len && (size_t)n < want; i++) {
                x = x * 1664525u + 1013904223u;
                pkt[n++] = "etaoinshrdlucmfwypvbgkjqxz"[(x >> 24) % 26 / (1 + (x >> 31))];
            }
            if ((size_t)n < want)
                pkt[n++] = ' ';
        }
    }
    while ((size_t)n < want && (size_t)n < sizeof pkt - 4)
        pkt[n++] = 'x';
    static const char tail[3] = {'"', '}', ']'};
    memcpy(pkt + n, tail, sizeof tail);
    n += (int)sizeof tail;
    return send_text(w, c, pkt, (size_t)n, 0x1);
}

static uint64_t parse_u64(const uint8_t *p, const uint8_t *end, const uint8_t **stop) {
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    *stop = p;
    return v;
}

/* A Socket.IO packet (the Engine.IO message after its '4'). */
static int on_sio(worker_t *w, client_t *c, const uint8_t *p, size_t n, uint64_t *now) {
    const uint8_t *end = p + n, *q;
    static const char NEW_MESSAGE[] = "[\"newMessage\",";
    switch (n ? p[0] : 0) {
    case '0':
        if (c->state == CONN_AUTHING)
            worker_client_connected(w, c);
        return 0;
    case '1':
        conn_close(w, c, "disconnected by server");
        return -1;
    case '4':
        conn_close(w, c, "connect_error");
        return -1;
    case '2':
        parse_u64(p + 1, end, &q); /* an ack id, if the server asked for one */
        if ((size_t)(end - q) > sizeof NEW_MESSAGE &&
            memcmp(q, NEW_MESSAGE, sizeof NEW_MESSAGE - 1) == 0) {
            const uint8_t *m =
                memmem(q, (size_t)(end - q), WSIO_STAMP_MARKER, strlen(WSIO_STAMP_MARKER));
            w->rep.msg_frames++;
            w->rep.msg_wire_bytes += w->frame_wire;
            w->rep.msg_compressed += w->frame_compressed;
            if (m) {
                uint64_t stamp = parse_u64(m + strlen(WSIO_STAMP_MARKER), end, &q);
                if (!*now)
                    *now = bench_now();
                worker_client_delivery(w, c, stamp, *now);
            }
        }
        return 0;
    case '3': {
        uint64_t id = parse_u64(p + 1, end, &q);
        bool ok = memmem(q, (size_t)(end - q), "\"ok\":true", 9) != NULL;
        if (!*now)
            *now = bench_now();
        worker_client_ack(w, c, (uint32_t)id, ok);
        return 0;
    }
    default:
        return 0;
    }
}

/* An Engine.IO message in a text frame. */
static int on_eio(worker_t *w, client_t *c, const uint8_t *p, size_t n, uint64_t *now) {
    if (n == 0)
        return 0;
    switch (p[0]) {
    case '0': /* open */
        if (c->state == CONN_OPENING) {
            char pkt[32 + JWT_MAX];
            char tok[JWT_MAX];
            if (jwt_sign_user(w->cfg->jwt_secret, w->cfg->user_base + c->id, tok) < 0)
                return -1;
            int len = snprintf(pkt, sizeof pkt, "40{\"token\":\"%s\"}", tok);
            c->state = CONN_AUTHING;
            return send_text(w, c, pkt, (size_t)len, 0x1);
        }
        return 0;
    case '1':
        conn_close(w, c, "engine.io close");
        return -1;
    case '2':
        return send_text(w, c, "3", 1, 0x1);
    case '4':
        return on_sio(w, c, p + 1, n - 1, now);
    default:
        return 0;
    }
}

static ssize_t parse_head(worker_t *w, client_t *c, const uint8_t *data, size_t len) {
    const uint8_t *end = memmem(data, len, "\r\n\r\n", 4);
    if (!end) {
        if (len > WSIO_MAX_HEAD)
            conn_close(w, c, "response head too long");
        return len > WSIO_MAX_HEAD ? -1 : 0;
    }
    if (len < 12 || memcmp(data, "HTTP/1.1 101", 12) != 0) {
        conn_close(w, c, "upgrade refused");
        return -1;
    }
    if (w->cfg->deflate && memmem(data, (size_t)(end - data), "permessage-deflate", 18)) {
        c->deflate = true;
        if (!memmem(data, (size_t)(end - data), "server_no_context_takeover", 26)) {
            z_stream *z = calloc(1, sizeof *z);
            if (!z || inflateInit2(z, -15) != Z_OK) {
                free(z);
                conn_close(w, c, "out of memory");
                return -1;
            }
            c->inflater = z;
        }
    }
    c->state = CONN_OPENING;
    return end + 4 - data;
}

void wsio_closed(client_t *c) {
    if (c->inflater) {
        inflateEnd(c->inflater);
        free(c->inflater);
        c->inflater = NULL;
    }
}

/* Inflates a compressed message (RFC 7692 §7.2.2) into w->zout; false on an error. */
static bool inflate_message(worker_t *w, client_t *c, const uint8_t *p, size_t n) {
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    z_stream *z = c->inflater;
    if (!z) {
        if (!w->inflater) {
            z_stream *s = calloc(1, sizeof *s);
            if (!s || inflateInit2(s, -15) != Z_OK) {
                free(s);
                return false;
            }
            w->inflater = s;
        } else if (inflateReset(w->inflater) != Z_OK) {
            return false;
        }
        z = w->inflater;
    }
    w->zout.len = 0;
    const uint8_t *in[2] = {p, tail};
    size_t in_len[2] = {n, sizeof tail};
    for (int i = 0; i < 2; i++) {
        z->next_in = in[i];
        z->avail_in = (uInt)in_len[i];
        do {
            if (buf_reserve(&w->zout, 4096))
                return false;
            z->next_out = w->zout.data + w->zout.len;
            z->avail_out = (uInt)(w->zout.cap - w->zout.len);
            size_t room = z->avail_out;
            int rc = inflate(z, Z_SYNC_FLUSH);
            w->zout.len += room - z->avail_out;
            if (rc == Z_STREAM_END)
                return true;
            if (rc != Z_OK && rc != Z_BUF_ERROR)
                return false;
        } while (z->avail_in > 0 || z->avail_out == 0);
    }
    return true;
}

ssize_t wsio_parse(worker_t *w, client_t *c, uint8_t *data, size_t len) {
    size_t off = 0;
    uint64_t now = 0;
    if (c->state == CONN_HEAD) {
        ssize_t h = parse_head(w, c, data, len);
        if (h <= 0)
            return h;
        off = (size_t)h;
    }
    while (len - off >= 2) {
        uint8_t *p = data + off;
        size_t avail = len - off, h = 2;
        uint64_t plen = p[1] & 0x7f;
        if (p[1] & 0x80) {
            conn_close(w, c, "masked server frame");
            return -1;
        }
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = (uint64_t)p[2] << 8 | p[3];
            h = 4;
        } else if (plen == 127) {
            if (avail < 10)
                break;
            plen = 0;
            for (int i = 2; i < 10; i++)
                plen = plen << 8 | p[i];
            h = 10;
        }
        if (plen > WSIO_MAX_FRAME) {
            conn_close(w, c, "frame too large");
            return -1;
        }
        if (avail < h + plen)
            break;
        uint8_t op = p[0] & 0x0f;
        const uint8_t *payload = p + h;
        off += h + (size_t)plen;
        if (!(p[0] & 0x80) || op == 0x0) {
            conn_close(w, c, "fragmented message");
            return -1;
        }
        w->frame_wire = h + (size_t)plen;
        w->frame_compressed = (p[0] & 0x40) != 0;
        if (w->frame_compressed) {
            if (!c->deflate || !inflate_message(w, c, payload, (size_t)plen)) {
                conn_close(w, c, "bad compressed frame");
                return -1;
            }
            payload = w->zout.data;
            plen = w->zout.len;
        }
        int rc = 0;
        if (op == 0x1)
            rc = on_eio(w, c, payload, (size_t)plen, &now);
        else if (op == 0x8)
            rc = (conn_close(w, c, "websocket close"), -1);
        else if (op == 0x9)
            rc = send_text(w, c, (const char *)payload, (size_t)plen, 0xA);
        if (rc < 0 || c->state == CONN_CLOSED)
            return -1;
    }
    return (ssize_t)off;
}
