/* tests/fuzz/eio3_payload_fuzz.c — libFuzzer target for the Engine.IO v3 payload decoder
 * (eio/packet3.c).
 *
 * Each input is decoded as a text payload and as a binary payload (iterated to the end on
 * an exact-size heap copy, so ASan sees any read past it) and as a v3 WebSocket binary
 * message. Every packet that decodes is framed again as the server frames it, in both
 * framings, and decoded from that; it must give back the same packet. Any mismatch aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eio/packet3.h"
#include "util/utf8.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static bool same_packet(const eio_packet_t *a, const eio_packet_t *b) {
    return a->type == b->type && a->binary == b->binary && a->len == b->len &&
           (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static void round_trip(const eio_packet_t *p, bool binary_payload) {
    eio_msg_t *m = eio_msg_new(p->type, p->binary, p->data, p->len);
    if (!m)
        return;
    uint8_t prefix[EIO3_PREFIX_MAX];
    size_t pl, bl;
    const uint8_t *body;
    if (eio3_frame(m, binary_payload, prefix, &pl, &body, &bl) == 0) {
        uint8_t *f = malloc(pl + bl);
        CHECK(f);
        memcpy(f, prefix, pl);
        if (bl)
            memcpy(f + pl, body, bl);
        size_t pos = 0;
        eio_packet_t again;
        /* An empty text packet ("0:") is skipped on the way in: only "6"-like packets
         * carry at least their type, so every frame here holds one packet. */
        CHECK(eio3_payload_next(f, pl + bl, binary_payload, &pos, &again) == 1);
        CHECK(same_packet(p, &again));
        CHECK(eio3_payload_next(f, pl + bl, binary_payload, &pos, &again) == 0);
        free(f);
    }
    eio_msg_release(m);
}

static void check_within(const eio_packet_t *p, const uint8_t *buf, size_t len) {
    CHECK(p->type <= EIO_NOOP);
    CHECK(!p->binary || p->type == EIO_MESSAGE);
    CHECK(p->data >= buf && p->len <= len && (size_t)(p->data - buf) <= len - p->len);
    CHECK(p->binary || utf8_is_valid(p->data, p->len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    CHECK(buf);
    for (int binary = 0; binary < 2; binary++) {
        memcpy(buf, data, size);
        size_t pos = 0, count = 0;
        eio_packet_t p;
        int r;
        while ((r = eio3_payload_next(buf, size, binary, &pos, &p)) == 1) {
            check_within(&p, buf, size);
            round_trip(&p, false);
            round_trip(&p, true);
            CHECK(++count <= size);
        }
        CHECK(size > 0 || r == -1);
    }
    memcpy(buf, data, size);
    eio_packet_t p;
    if (eio3_packet_decode_ws(buf, size, true, &p) == 0) {
        CHECK(size > 0 && buf[0] == EIO_MESSAGE && p.data == buf + 1 && p.len == size - 1);
        round_trip(&p, true);
    }
    free(buf);
    return 0;
}
