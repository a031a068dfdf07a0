/* tests/fuzz/sio_msgpack_fuzz.c — libFuzzer target for the msgpack parser
 * (sio/parser_msgpack.c, and the MessagePack → JSON conversion of sio/mpack.c under it).
 *
 * The input is one binary Engine.IO message as a socket.io-msgpack-parser client would
 * send it, handed over in an exact-size heap copy so ASan sees any read past it (the
 * decoder peeks before extension values). As a text message it must be refused. A packet
 * the decoder yields is checked for shape, encoded again and decoded again: the result
 * must be the same packet, and encoding that must give the same bytes (encoding is a
 * fixed point). The same packet must travel the json parser unchanged too, whenever the
 * json encoder takes it (it refuses a namespace holding ','): both parsers hand handlers
 * the same packets. Any mismatch aborts. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sio/parser.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define MAX_ATTACHMENTS 10

static void check_shape(const sio_packet_t *p) {
    bool binary = p->type == SIO_BINARY_EVENT || p->type == SIO_BINARY_ACK;
    CHECK(p->type >= SIO_CONNECT && p->type <= SIO_BINARY_ACK);
    CHECK(p->nsp[0] == '/' && strlen(p->nsp) <= SIO_NSP_MAX);
    CHECK(p->id >= -1 && p->id <= SIO_ID_MAX);
    if (binary)
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

/* Decodes bytes as one binary message, from an exact-size copy. */
static sio_decode_result_t decode_copy(const uint8_t *data, size_t len, bool binary,
                                       sio_packet_t *out) {
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    uint8_t *copy = malloc(len ? len : 1);
    CHECK(copy);
    if (len)
        memcpy(copy, data, len);
    sio_decode_result_t r = sio_msgpack_decode(&d, copy, len, binary, out);
    free(copy);
    CHECK(r != SIO_DECODE_MORE);
    sio_decoder_clear(&d);
    return r;
}

static void msgpack_round_trip(const sio_packet_t *p) {
    buf_t out = {0};
    CHECK(sio_msgpack_encode_packet(&out, p) == 0);
    sio_packet_t again;
    CHECK(decode_copy(out.data, out.len, true, &again) == SIO_DECODE_PACKET);
    CHECK(same_packet(p, &again));
    buf_t out2 = {0};
    CHECK(sio_msgpack_encode_packet(&out2, &again) == 0);
    CHECK(out2.len == out.len && memcmp(out2.data, out.data, out.len) == 0);
    sio_packet_clear(&again);
    buf_free(&out);
    buf_free(&out2);
}

/* The packet through the json parser: its text, then its buffers. */
static void json_round_trip(const sio_packet_t *p) {
    buf_t text = {0};
    int rc = sio_encode_packet(&text, p);
    if (rc == -EINVAL) {
        CHECK(strchr(p->nsp, ','));
        return;
    }
    CHECK(rc == 0);
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    sio_packet_t again;
    sio_decode_result_t r = sio_decode_text(&d, (const char *)text.data, text.len, &again);
    for (size_t i = 0; i < p->nbins; i++) {
        CHECK(r == SIO_DECODE_MORE);
        r = sio_decode_binary(&d, p->bins[i]->data, p->bins[i]->len, &again);
    }
    CHECK(r == SIO_DECODE_PACKET);
    CHECK(same_packet(p, &again));
    sio_packet_clear(&again);
    sio_decoder_clear(&d);
    buf_free(&text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sio_packet_t p;
    CHECK(decode_copy(data, size, false, &p) == SIO_DECODE_ERROR);
    if (decode_copy(data, size, true, &p) != SIO_DECODE_PACKET)
        return 0;
    check_shape(&p);
    msgpack_round_trip(&p);
    json_round_trip(&p);
    sio_packet_clear(&p);
    return 0;
}
