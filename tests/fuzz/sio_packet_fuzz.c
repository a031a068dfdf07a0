/* tests/fuzz/sio_packet_fuzz.c — libFuzzer target for sio/packet.c.
 *
 * The input is a sequence of Engine.IO messages as one connection would deliver them,
 * each a 2-byte big-endian header (top bit: binary; low 15 bits: length, cut to what
 * is left) and that many bytes, each handed over in an exact-size heap copy so ASan
 * sees any read past it. They go to one decoder (max_attachments 10), errors and all,
 * as the decoder must stay usable after one. Every packet it yields is checked for
 * shape, encoded with sio_encode_packet and decoded again on a fresh decoder, feeding
 * its buffers as binary messages: the result must be the same packet, and encoding
 * that must give the same text (encoding is a fixed point). Any mismatch aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sio/packet.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define MAX_ATTACHMENTS 10

static bool is_binary_type(sio_packet_type_t t) {
    return t == SIO_BINARY_EVENT || t == SIO_BINARY_ACK;
}

static void check_shape(const sio_packet_t *p) {
    CHECK(p->type >= SIO_CONNECT && p->type <= SIO_BINARY_ACK);
    CHECK(p->nsp[0] == '/' && strlen(p->nsp) <= SIO_NSP_MAX && !strchr(p->nsp, ','));
    CHECK(p->id >= -1 && p->id <= INT64_C(999999999999999));
    if (is_binary_type(p->type))
        CHECK(p->nbins >= 1 && p->nbins <= MAX_ATTACHMENTS && p->bins);
    else
        CHECK(p->nbins == 0 && !p->bins);
    for (size_t i = 0; i < p->nbins; i++)
        CHECK(p->bins[i] && p->bins[i]->ref.count == 1);
    CHECK(sio_packet_validate(p));
}

static bool same_packet(const sio_packet_t *a, const sio_packet_t *b) {
    if (a->type != b->type || strcmp(a->nsp, b->nsp) != 0 || a->id != b->id)
        return false;
    if (!a->data != !b->data || (a->data && !json_equal(a->data, b->data)))
        return false;
    if (a->nbins != b->nbins)
        return false;
    for (size_t i = 0; i < a->nbins; i++) {
        const rcbuf_t *x = a->bins[i], *y = b->bins[i];
        if (x->len != y->len || (x->len && memcmp(x->data, y->data, x->len) != 0))
            return false;
    }
    return true;
}

/* Feeds an encoded packet's text and buffers to a fresh decoder, each from an exact
 * copy. The last message must complete the packet and no earlier one may. */
static void decode_encoded(const buf_t *text, const sio_packet_t *p, sio_packet_t *out) {
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    char *copy = malloc(text->len ? text->len : 1);
    CHECK(copy);
    memcpy(copy, text->data, text->len);
    sio_decode_result_t r = sio_decode_text(&d, copy, text->len, out);
    free(copy);
    for (size_t i = 0; i < p->nbins; i++) {
        CHECK(r == SIO_DECODE_MORE);
        const rcbuf_t *b = p->bins[i];
        uint8_t *bin = malloc(b->len ? b->len : 1);
        CHECK(bin);
        memcpy(bin, b->data, b->len);
        r = sio_decode_binary(&d, bin, b->len, out);
        free(bin);
    }
    CHECK(r == SIO_DECODE_PACKET);
    CHECK(d.expected == 0);
    sio_decoder_clear(&d);
}

static void round_trip(const sio_packet_t *p) {
    buf_t text = {0};
    CHECK(sio_encode_packet(&text, p) == 0);
    sio_packet_t again;
    decode_encoded(&text, p, &again);
    CHECK(same_packet(p, &again));

    buf_t text2 = {0};
    CHECK(sio_encode_packet(&text2, &again) == 0);
    CHECK(text2.len == text.len && memcmp(text2.data, text.data, text.len) == 0);
    sio_packet_clear(&again);
    buf_free(&text);
    buf_free(&text2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    size_t pos = 0;
    while (size - pos >= 2) {
        bool binary = data[pos] & 0x80;
        size_t len = (size_t)(data[pos] & 0x7f) << 8 | data[pos + 1];
        pos += 2;
        if (len > size - pos)
            len = size - pos;
        uint8_t *msg = malloc(len ? len : 1);
        CHECK(msg);
        memcpy(msg, data + pos, len);
        pos += len;

        size_t expected = d.expected;
        sio_packet_t p;
        sio_decode_result_t r = binary ? sio_decode_binary(&d, msg, len, &p)
                                       : sio_decode_text(&d, (const char *)msg, len, &p);
        free(msg);
        /* Whatever happens, the decoder is left consistent: a binary message takes
         * one awaited buffer, anything else leaves none awaited unless it starts a new
         * binary packet. */
        if (binary && expected)
            CHECK(d.expected == expected - 1 &&
                  r == (expected == 1 ? SIO_DECODE_PACKET : SIO_DECODE_MORE));
        else if (binary)
            CHECK(r == SIO_DECODE_ERROR && d.expected == 0);
        else if (expected)
            CHECK(r == SIO_DECODE_ERROR && d.expected == 0);
        else
            CHECK((r == SIO_DECODE_MORE) == (d.expected > 0) && d.expected <= MAX_ATTACHMENTS);
        if (r != SIO_DECODE_PACKET)
            continue;

        check_shape(&p);
        round_trip(&p);
        sio_packet_clear(&p);
    }
    sio_decoder_clear(&d);
    return 0;
}
