/* ws/deflate.c — permessage-deflate (RFC 7692) with zlib (see deflate.h).
 *
 * Raw DEFLATE (negative windowBits: no zlib header), each message ended with a sync
 * flush whose trailing 00 00 ff ff is cut off (§7.2.1) and put back before inflating
 * (§7.2.2). zlib's memory goes through a counting allocator, so the stats say what the
 * streams hold: the shared deflate stream is ~268 KiB (window 2^15, memLevel 8), an
 * inflate stream ~40 KiB; both shared ones are made on first use.
 *
 * The inflated message lands in one buffer of the server's, reused: it is handed to the
 * connection's handler and is dead once that returns, and nothing inflates again before
 * (reading is callback-driven). After a large message the buffer is given back so that
 * one big message does not pin its size for the process's life. */
#include "ws/deflate.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define ZLIB_CONST /* next_in is const: no casts from our const input */
#include <zlib.h>

#include "util/buf.h"
#include "util/log.h"
#include "ws/frame.h"

#define WINDOW_BITS 15
#define MEM_LEVEL 8
#define WINDOW_BITS_MIN 8
#define RSV1 0x40
#define SCRATCH_KEEP 65536 /* bytes of inflate buffer kept between messages */
#define SCRATCH_FIRST 4096

static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};

struct ws_deflate {
    ref_t ref;
    ws_deflate_config_t cfg;
    z_stream def, inf;
    bool def_ready, inf_ready;
    buf_t scratch; /* the last inflated message */
    buf_t zbuf;    /* deflate output, before it is framed */
    ws_deflate_stats_t st;
};

struct ws_inflater {
    z_stream z;
};

/* ---- negotiation ---- */

/* RFC 9110 §5.6.2 tchar. */
static bool is_tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

typedef struct {
    const char *p, *end;
} scan_t;

static void skip_ows(scan_t *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t'))
        s->p++;
}

static slice_t read_token(scan_t *s) {
    const char *start = s->p;
    while (s->p < s->end && is_tchar((unsigned char)*s->p))
        s->p++;
    return slice_make(start, (size_t)(s->p - start));
}

/* A parameter value: a token or a quoted-string, unescaped into val (NUL-terminated; a
 * longer value is cut and flagged too long, since no valid value here is long). Returns
 * false when the text is malformed. */
static bool read_value(scan_t *s, char *val, size_t size, bool *too_long) {
    size_t n = 0;
    *too_long = false;
    if (s->p < s->end && *s->p == '"') {
        s->p++;
        for (;;) {
            if (s->p >= s->end)
                return false;
            char c = *s->p++;
            if (c == '"')
                break;
            if (c == '\\') {
                if (s->p >= s->end)
                    return false;
                c = *s->p++;
            }
            if (n + 1 < size)
                val[n++] = c;
            else
                *too_long = true;
        }
    } else {
        slice_t t = read_token(s);
        if (t.len == 0)
            return false;
        if (t.len >= size)
            *too_long = true;
        n = t.len < size ? t.len : size - 1;
        memcpy(val, t.base, n);
    }
    val[n] = '\0';
    return true;
}

/* §7.1.2.1: 1*DIGIT without a leading 0, 8..15. 0 when invalid. */
static uint8_t window_bits(const char *v) {
    if (v[0] < '1' || v[0] > '9' || strlen(v) > 2)
        return 0;
    int n = atoi(v);
    return n >= WINDOW_BITS_MIN && n <= WINDOW_BITS ? (uint8_t)n : 0;
}

enum { P_SERVER_NCT = 1, P_CLIENT_NCT = 2, P_SERVER_BITS = 4, P_CLIENT_BITS = 8 };

/* Applies one parameter of a permessage-deflate offer; false declines the offer. */
static bool offer_param(slice_t name, bool has_value, const char *value, bool too_long,
                        unsigned *seen, ws_deflate_params_t *p) {
    unsigned bit;
    if (slice_case_eq(name, "server_no_context_takeover") ||
        slice_case_eq(name, "client_no_context_takeover")) {
        if (has_value)
            return false;
        bit = slice_case_eq(name, "server_no_context_takeover") ? P_SERVER_NCT : P_CLIENT_NCT;
        if (bit == P_CLIENT_NCT)
            p->client_no_context = true;
    } else if (slice_case_eq(name, "server_max_window_bits")) {
        bit = P_SERVER_BITS;
        if (!has_value || too_long || !(p->server_window_bits = window_bits(value)))
            return false;
    } else if (slice_case_eq(name, "client_max_window_bits")) {
        /* Without a value it only says the client could honour a limit; we set none
         * (every inflate stream here takes the largest window). */
        bit = P_CLIENT_BITS;
        if (has_value && (too_long || !window_bits(value)))
            return false;
    } else {
        return false;
    }
    if (*seen & bit)
        return false;
    *seen |= bit;
    return true;
}

bool ws_deflate_accept_offer(slice_t value, bool client_context, ws_deflate_params_t *out) {
    scan_t s = {value.base, value.base + value.len};
    for (;;) {
        skip_ows(&s);
        slice_t ext = read_token(&s);
        if (ext.len == 0)
            return false;
        /* Other extensions are parsed past; an offer of ours stays acceptable until one
         * of its parameters declines it. */
        bool ok = slice_case_eq(ext, "permessage-deflate");
        unsigned seen = 0;
        ws_deflate_params_t p = {.on = true};
        skip_ows(&s);
        while (s.p < s.end && *s.p == ';') {
            s.p++;
            skip_ows(&s);
            slice_t name = read_token(&s);
            if (name.len == 0)
                return false;
            skip_ows(&s);
            char val[8] = "";
            bool has_value = false, too_long = false;
            if (s.p < s.end && *s.p == '=') {
                s.p++;
                skip_ows(&s);
                if (!read_value(&s, val, sizeof val, &too_long))
                    return false;
                has_value = true;
                skip_ows(&s);
            }
            if (ok)
                ok = offer_param(name, has_value, val, too_long, &seen, &p);
        }
        if (s.p < s.end && *s.p != ',')
            return false;
        if (ok) {
            /* Unless clients may keep their context, ask every one not to (§7.1.1.2). */
            if (!client_context)
                p.client_no_context = true;
            *out = p;
            return true;
        }
        if (s.p >= s.end)
            return false;
        s.p++;
    }
}

bool ws_deflate_negotiate(const http_request_t *req, bool client_context,
                          ws_deflate_params_t *out) {
    for (size_t i = 0; i < req->num_headers; i++) {
        const http_header_t *h = &req->headers[i];
        if (slice_case_eq(h->name, "sec-websocket-extensions") &&
            ws_deflate_accept_offer(h->value, client_context, out))
            return true;
    }
    return false;
}

size_t ws_deflate_response(const ws_deflate_params_t *p, char *out) {
    int n = snprintf(out, WS_DEFLATE_RESPONSE_MAX,
                     "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover%s",
                     p->client_no_context ? "; client_no_context_takeover" : "");
    if (p->server_window_bits)
        n += snprintf(out + n, WS_DEFLATE_RESPONSE_MAX - (size_t)n, "; server_max_window_bits=%u",
                      p->server_window_bits);
    n += snprintf(out + n, WS_DEFLATE_RESPONSE_MAX - (size_t)n, "\r\n");
    return (size_t)n;
}

/* ---- zlib memory, counted ---- */

static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
    ws_deflate_t *d = opaque;
    size_t n = (size_t)items * size;
    size_t *m = malloc(sizeof(size_t) + n);
    if (!m)
        return NULL;
    *m = n;
    d->st.zlib_bytes += n;
    return m + 1;
}

static void z_free(voidpf opaque, voidpf ptr) {
    ws_deflate_t *d = opaque;
    size_t *m = (size_t *)ptr - 1;
    d->st.zlib_bytes -= *m;
    free(m);
}

static void z_setup(ws_deflate_t *d, z_stream *z) {
    memset(z, 0, sizeof *z);
    z->zalloc = z_alloc;
    z->zfree = z_free;
    z->opaque = d;
}

static void deflate_destroy(ref_t *ref) {
    ws_deflate_t *d = (ws_deflate_t *)ref;
    if (d->def_ready)
        deflateEnd(&d->def);
    if (d->inf_ready)
        inflateEnd(&d->inf);
    buf_free(&d->scratch);
    buf_free(&d->zbuf);
    free(d);
}

int ws_deflate_new(const ws_deflate_config_t *cfg, ws_deflate_t **out) {
    ws_deflate_t *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    ref_init(&d->ref, deflate_destroy);
    d->cfg = *cfg;
    *out = d;
    return 0;
}

ws_deflate_t *ws_deflate_retain(ws_deflate_t *d) {
    ref_retain(&d->ref);
    return d;
}

void ws_deflate_release(ws_deflate_t *d) {
    if (d)
        ref_release(&d->ref);
}

const ws_deflate_config_t *ws_deflate_config(const ws_deflate_t *d) {
    return &d->cfg;
}

void ws_deflate_stats(const ws_deflate_t *d, ws_deflate_stats_t *out) {
    *out = d->st;
}

/* ---- outgoing ---- */

void ws_deflated_free(ws_deflated_t *z) {
    free(z->frame);
    *z = (ws_deflated_t){0};
}

bool ws_deflate_fits(const ws_deflate_t *d, const ws_deflate_params_t *p, size_t len) {
    if (!p->on || len < d->cfg.threshold || len == 0)
        return false;
    return p->server_window_bits == 0 || len <= ((size_t)1 << p->server_window_bits);
}

int ws_deflate_make(ws_deflate_t *d, uint8_t opcode, const uint8_t *payload, size_t len,
                    ws_deflated_t *z) {
    if (!d->def_ready) {
        z_setup(d, &d->def);
        int rc = deflateInit2(&d->def, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -WINDOW_BITS, MEM_LEVEL,
                              Z_DEFAULT_STRATEGY);
        if (rc != Z_OK)
            return -ENOMEM;
        d->def_ready = true;
    } else if (deflateReset(&d->def) != Z_OK) {
        return -ENOMEM;
    }
    if (len > UINT_MAX) {
        /* zlib counts in uInt; no Engine.IO message comes near it. */
        z->state = WS_DEFLATED_SKIP;
        return 0;
    }
    /* Only a result shorter than the input is kept, so the input's length (and the
     * sync flush's trailer) is all the room deflate gets: running out of it means "not
     * worth it". The scratch buffer is the server's, reused; the frame is then made at
     * its exact size, header and body in one block (one write per recipient). */
    buf_t *b = &d->zbuf;
    b->len = 0;
    if (buf_reserve(b, len + sizeof tail))
        return -ENOMEM;
    d->def.next_in = payload;
    d->def.avail_in = (uInt)len;
    d->def.next_out = b->data;
    d->def.avail_out = (uInt)(len + sizeof tail);
    int rc = deflate(&d->def, Z_SYNC_FLUSH);
    size_t n = len + sizeof tail - d->def.avail_out;
    d->st.messages_deflated++;
    z->state = WS_DEFLATED_SKIP;
    if (rc == Z_OK && d->def.avail_out > 0 && d->def.avail_in == 0 && n >= sizeof tail &&
        memcmp(b->data + n - sizeof tail, tail, sizeof tail) == 0 && n - sizeof tail < len) {
        n -= sizeof tail;
        uint8_t *f = malloc(WS_FRAME_HEADER_MAX + n);
        if (!f) {
            z->state = WS_DEFLATED_UNTRIED;
            rc = -ENOMEM;
        } else {
            size_t hl = ws_frame_header(f, opcode, n);
            f[0] |= RSV1;
            memcpy(f + hl, b->data, n);
            z->frame = f;
            z->len = hl + n;
            z->state = WS_DEFLATED_MADE;
            d->st.bytes_before += len;
            d->st.bytes_after += n;
            rc = 0;
        }
    } else {
        rc = 0; /* as long as the input, or longer: the message goes plain */
    }
    if (b->cap > SCRATCH_KEEP)
        buf_free(b);
    return rc;
}

void ws_deflate_count_sent(ws_deflate_t *d, size_t n) {
    d->st.frames_sent += n;
}

/* ---- incoming ---- */

static int inflate_init(ws_deflate_t *d, z_stream *z) {
    z_setup(d, z);
    return inflateInit2(z, -WINDOW_BITS) == Z_OK ? 0 : -ENOMEM;
}

ws_inflater_t *ws_inflater_new(ws_deflate_t *d) {
    ws_inflater_t *z = malloc(sizeof *z);
    if (!z)
        return NULL;
    if (inflate_init(d, &z->z)) {
        free(z);
        return NULL;
    }
    d->st.inflaters++;
    d->st.zlib_bytes += sizeof *z;
    return z;
}

void ws_inflater_free(ws_deflate_t *d, ws_inflater_t *z) {
    if (!z)
        return;
    inflateEnd(&z->z);
    d->st.inflaters--;
    d->st.zlib_bytes -= sizeof *z;
    free(z);
}

enum { RUN_MORE = 0, RUN_END = 1 };

/* Feeds in[0..len) to z, growing out up to max + 1 bytes. Returns RUN_MORE when all input
 * was used, RUN_END at the end of a stream (BFINAL), or a negative close code. */
static int run(z_stream *z, const uint8_t *in, size_t len, size_t max, buf_t *out) {
    z->next_in = in;
    z->avail_in = (uInt)len;
    size_t limit = max < SIZE_MAX ? max + 1 : max;
    for (;;) {
        if (out->len == out->cap) {
            if (out->cap >= limit)
                return -WS_CLOSE_TOO_BIG;
            size_t want = out->cap ? out->cap * 2 : SCRATCH_FIRST;
            if (want > limit || want < out->cap)
                want = limit;
            if (want - out->len > UINT_MAX)
                want = out->len + UINT_MAX;
            if (buf_reserve(out, want - out->len))
                return -WS_CLOSE_INTERNAL;
        }
        z->next_out = out->data + out->len;
        size_t room = out->cap - out->len;
        if (room > UINT_MAX)
            room = UINT_MAX;
        z->avail_out = (uInt)room;
        int rc = inflate(z, Z_SYNC_FLUSH);
        out->len += room - z->avail_out;
        if (out->len > max)
            return -WS_CLOSE_TOO_BIG;
        if (rc == Z_STREAM_END)
            return RUN_END;
        if (rc == Z_MEM_ERROR)
            return -WS_CLOSE_INTERNAL;
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return -WS_CLOSE_INVALID_DATA;
        /* With room left over, everything that could be produced was. */
        if (z->avail_out > 0 && (z->avail_in == 0 || rc == Z_BUF_ERROR))
            return z->avail_in == 0 ? RUN_MORE : -WS_CLOSE_INVALID_DATA;
    }
}

int ws_deflate_inflate(ws_deflate_t *d, ws_inflater_t *own, const uint8_t *in, size_t len,
                       size_t max, uint8_t **out, size_t *out_len) {
    z_stream *z;
    if (own) {
        z = &own->z;
    } else {
        if (!d->inf_ready) {
            if (inflate_init(d, &d->inf))
                return -WS_CLOSE_INTERNAL;
            d->inf_ready = true;
        } else if (inflateReset(&d->inf) != Z_OK) {
            return -WS_CLOSE_INTERNAL;
        }
        z = &d->inf;
    }
    /* A compressed message is at most max bytes on the wire too (the frame limit), and
     * Engine.IO's limit is far below 4 GiB; anything else is refused as too big. */
    if (len > UINT_MAX)
        return -WS_CLOSE_TOO_BIG;
    buf_t *b = &d->scratch;
    b->len = 0;
    d->st.messages_inflated++;
    int rc = run(z, in, len, max, b);
    if (rc == RUN_MORE)
        rc = run(z, tail, sizeof tail, max, b);
    if (rc == RUN_END && own) {
        /* The client ended its stream (BFINAL): its next message starts a new one. */
        if (inflateReset(z) != Z_OK)
            rc = -WS_CLOSE_INTERNAL;
    }
    if (rc < 0) {
        if (own && inflateReset(z) != Z_OK)
            LOG_WARN("ws", "inflateReset failed");
        return rc;
    }
    *out = b->data; /* run() always reserved some */
    *out_len = b->len;
    return 0;
}

void ws_deflate_inflate_done(ws_deflate_t *d) {
    if (d->scratch.cap > SCRATCH_KEEP)
        buf_free(&d->scratch);
}
