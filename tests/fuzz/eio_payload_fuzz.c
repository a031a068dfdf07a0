/* tests/fuzz/eio_payload_fuzz.c — libFuzzer target for Engine.IO packet decoding.
 *
 * Each input is tried three ways: as a long-polling payload (iterated to the end on an
 * exact-size heap copy, so ASan sees any read past it), as a WebSocket text message and
 * as a WebSocket binary message. Every packet that decodes is then re-encoded through
 * eio_msg_t and decoded again from both its WebSocket and its polling form; the two must
 * give back the same packet. Any mismatch aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eio/packet.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static bool same_packet(const eio_packet_t *a, const eio_packet_t *b) {
    return a->type == b->type && a->binary == b->binary && a->len == b->len &&
           (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* The payload length a server frame header announces, checked for shape on the way. */
static uint64_t ws_header_len(const eio_msg_t *m) {
    CHECK(eio_msg_ws_header(m)[0] == (0x80 | (m->binary ? WS_OP_BINARY : WS_OP_TEXT)));
    uint8_t l7 = eio_msg_ws_header(m)[1];
    if (l7 < 126) {
        CHECK(m->ws_header_len == 2);
        return l7;
    }
    if (l7 == 126) {
        CHECK(m->ws_header_len == 4);
        return (uint64_t)eio_msg_ws_header(m)[2] << 8 | eio_msg_ws_header(m)[3];
    }
    CHECK(l7 == 127 && m->ws_header_len == 10);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++)
        n = n << 8 | eio_msg_ws_header(m)[2 + i];
    return n;
}

static void round_trip(const eio_packet_t *p) {
    eio_msg_t *m = eio_msg_new(p->type, p->binary, p->data, p->len);
    if (!m)
        return;
    CHECK(m->len == p->len + (p->binary ? 0 : 1));
    CHECK(ws_header_len(m) == m->len);

    eio_packet_t again;
    CHECK(eio_packet_decode_ws(m->data, m->len, m->binary, &again) == 0);
    CHECK(same_packet(p, &again));

    const uint8_t *poll, *poll2;
    size_t poll_len, poll2_len;
    CHECK(eio_msg_polling(m, &poll, &poll_len) == 0);
    CHECK(eio_msg_polling(m, &poll2, &poll2_len) == 0);
    CHECK(poll == poll2 && poll_len == poll2_len);

    /* Text holding a separator (only a WebSocket message can) would become several
     * polling packets; Engine.IO assumes the separator never appears in data. */
    if (p->binary || !memchr(p->data, EIO_RECORD_SEPARATOR, p->len)) {
        uint8_t *copy = malloc(poll_len);
        CHECK(copy);
        memcpy(copy, poll, poll_len);
        size_t pos = 0;
        CHECK(eio_payload_next(copy, poll_len, &pos, &again) == 1);
        CHECK(same_packet(p, &again));
        CHECK(eio_payload_next(copy, poll_len, &pos, &again) == 0);
        free(copy);
    }
    eio_msg_release(m);
}

static void check_within(const eio_packet_t *p, const uint8_t *buf, size_t len) {
    CHECK(p->type <= EIO_NOOP);
    CHECK(!p->binary || p->type == EIO_MESSAGE);
    CHECK(p->data >= buf && p->len <= len && (size_t)(p->data - buf) <= len - p->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Exactly size bytes, so ASan flags any read past the end (an empty input still
     * gets one byte, which nothing may read). */
    uint8_t *buf = malloc(size ? size : 1);
    CHECK(buf);

    memcpy(buf, data, size);
    size_t pos = 0, count = 0;
    eio_packet_t p;
    int r;
    while ((r = eio_payload_next(buf, size, &pos, &p)) == 1) {
        check_within(&p, buf, size);
        CHECK(p.binary || !memchr(p.data, EIO_RECORD_SEPARATOR, p.len));
        round_trip(&p);
        CHECK(++count <= size);
    }
    CHECK(size > 0 || r == -1);

    memcpy(buf, data, size);
    if (eio_packet_decode_ws(buf, size, false, &p) == 0) {
        check_within(&p, buf, size);
        CHECK(!p.binary && p.data == buf + 1 && p.len == size - 1);
        round_trip(&p);
    } else {
        CHECK(size == 0 || buf[0] < '0' || buf[0] > '6');
    }

    CHECK(eio_packet_decode_ws(buf, size, true, &p) == 0);
    CHECK(p.binary && p.type == EIO_MESSAGE && p.data == buf && p.len == size);
    round_trip(&p);

    free(buf);
    return 0;
}
