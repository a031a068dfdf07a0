/* tests/unit/eio/packet3_test.c — Engine.IO v3 framing (eio/packet3.c): the text payload
 * with UTF-16 lengths (multi-byte UTF-8 where the JavaScript length differs from the
 * bytes), base64 binary packets, the binary payload, v3 WebSocket binary messages, and
 * the frames the server writes — checked against bytes engine.io-parser 2.x produces. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "eio/packet3.h"

static uint8_t *dup_bytes(const void *s, size_t len) {
    uint8_t *p = malloc(len ? len : 1);
    assert_non_null(p);
    if (len)
        memcpy(p, s, len);
    return p;
}

static void assert_packet(const eio_packet_t *p, eio_packet_type_t type, bool binary,
                          const void *data, size_t len) {
    assert_int_equal(p->type, type);
    assert_int_equal(p->binary, binary);
    assert_int_equal(p->len, len);
    if (len)
        assert_memory_equal(p->data, data, len);
}

/* Decodes a whole payload; returns the packet count, or -1 when it is rejected. */
static int decode_all(const void *in, size_t len, bool binary, eio_packet_t *out, int max) {
    uint8_t *buf = dup_bytes(in, len);
    size_t pos = 0;
    int n = 0, r;
    eio_packet_t p;
    while ((r = eio3_payload_next(buf, len, binary, &pos, &p)) == 1) {
        assert_true(n < max);
        /* Copy out: the buffer goes at the end. */
        uint8_t *d = dup_bytes(p.data, p.len);
        out[n] = p;
        out[n++].data = d;
    }
    free(buf);
    if (r < 0) {
        for (int i = 0; i < n; i++)
            free(out[i].data);
        return -1;
    }
    return n;
}

static void free_all(eio_packet_t *p, int n) {
    for (int i = 0; i < n; i++)
        free(p[i].data);
}

static void test_utf16_len(void **state) {
    (void)state;
    assert_int_equal(eio3_utf16_len((const uint8_t *)"abc", 3), 3);
    assert_int_equal(eio3_utf16_len((const uint8_t *)"h\xc3\xa9", 3), 2);        /* é */
    assert_int_equal(eio3_utf16_len((const uint8_t *)"\xe4\xb8\xad", 3), 1);     /* 中 */
    assert_int_equal(eio3_utf16_len((const uint8_t *)"\xf0\x9f\x98\x80", 4), 2); /* 😀 */
    assert_int_equal(eio3_utf16_len((const uint8_t *)"", 0), 0);
}

static void test_text_payload(void **state) {
    (void)state;
    eio_packet_t p[8];
    /* engine.io-parser 2: encodePayload([{type:'message',data:'hello'},{type:'ping'}]). */
    const char *in = "6:4hello1:2";
    assert_int_equal(decode_all(in, strlen(in), false, p, 8), 2);
    assert_packet(&p[0], EIO_MESSAGE, false, "hello", 5);
    assert_packet(&p[1], EIO_PING, false, NULL, 0);
    free_all(p, 2);

    /* "4é😀中" is 5 units and 10 bytes; the next packet follows at once. */
    const char *mb = "5:4\xc3\xa9\xf0\x9f\x98\x80\xe4\xb8\xad"
                     "1:6";
    assert_int_equal(decode_all(mb, strlen(mb), false, p, 8), 2);
    assert_packet(&p[0], EIO_MESSAGE, false, "\xc3\xa9\xf0\x9f\x98\x80\xe4\xb8\xad", 9);
    assert_packet(&p[1], EIO_NOOP, false, NULL, 0);
    free_all(p, 2);

    /* Empty packets are skipped, as the reference skips them. */
    assert_int_equal(decode_all("0:2:4a0:", 8, false, p, 8), 1);
    assert_packet(&p[0], EIO_MESSAGE, false, "a", 1);
    free_all(p, 1);
}

static void test_text_payload_base64(void **state) {
    (void)state;
    eio_packet_t p[4];
    /* encodePayload([{type:'message',data:Buffer.from([1,2,3])}], false) = "6:b4AQID". */
    assert_int_equal(decode_all("6:b4AQID", 8, false, p, 4), 1);
    assert_packet(&p[0], EIO_MESSAGE, true, "\x01\x02\x03", 3);
    free_all(p, 1);
    assert_int_equal(decode_all("2:b4", 4, false, p, 4), 1); /* empty binary */
    assert_packet(&p[0], EIO_MESSAGE, true, NULL, 0);
    free_all(p, 1);
}

static void test_text_payload_malformed(void **state) {
    (void)state;
    eio_packet_t p[4];
    static const char *const bad[] = {
        "",            /* empty payload */
        "6:4hell",     /* runs past the end */
        "4hello",      /* no length */
        ":4",          /* empty length */
        "1x:4",        /* not digits */
        "1:4abc",      /* trailing bytes that are no length */
        "1:9",         /* unknown type */
        "2:4",         /* runs past the end */
        "6:b4AQI*",    /* bad base64 */
        "6:b2AQID",    /* binary other than a message */
        "1234567890:4" /* too many digits */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(decode_all(bad[i], strlen(bad[i]), false, p, 4), -1);
    /* A length ending between the two halves of 😀 (2 units). */
    const char *split = "2:4\xf0\x9f\x98\x80";
    assert_int_equal(decode_all(split, strlen(split), false, p, 4), -1);
    /* The byte count as the length (9 bytes, 4 units) runs past the end. */
    const char *bytes = "9:4\xf0\x9f\x98\x80\xc3\xa9";
    assert_int_equal(decode_all(bytes, strlen(bytes), false, p, 4), -1);
    /* Not UTF-8: a lone continuation byte, an overlong sequence. */
    assert_int_equal(decode_all("2:4\x80", 4, false, p, 4), -1);
    assert_int_equal(decode_all("2:4\xc0\x80", 5, false, p, 4), -1);
}

static void test_binary_payload(void **state) {
    (void)state;
    eio_packet_t p[4];
    /* encodePayloadAsBinary([{message 'é'}, {message Buffer [1,2,3]}]): the string is
     * UTF-8 ("4é", 3 bytes), the buffer gets its type byte (4 bytes). */
    const uint8_t in[] = {0, 3, 0xFF, '4', 0xC3, 0xA9, 1, 4, 0xFF, 4, 1, 2, 3};
    assert_int_equal(decode_all(in, sizeof in, true, p, 4), 2);
    assert_packet(&p[0], EIO_MESSAGE, false, "\xc3\xa9", 2);
    assert_packet(&p[1], EIO_MESSAGE, true, "\x01\x02\x03", 3);
    free_all(p, 2);
    /* Two digits: 11 bytes. */
    uint8_t big[4 + 11] = {0, 1, 1, 0xFF, '4'};
    memset(big + 5, 'x', 10);
    assert_int_equal(decode_all(big, sizeof big, true, p, 4), 1);
    assert_int_equal(p[0].len, 10);
    free_all(p, 1);
}

static void test_binary_payload_malformed(void **state) {
    (void)state;
    eio_packet_t p[4];
    static const struct {
        uint8_t b[8];
        size_t len;
    } bad[] = {
        {{2, 1, 0xFF, '4'}, 4},       /* kind neither 0 nor 1 */
        {{0, 1, 0xFF}, 3},            /* runs past the end */
        {{0, 1}, 2},                  /* no 0xFF */
        {{0, 0xFF, '4'}, 3},          /* no digits */
        {{0, 0, 0xFF}, 3},            /* empty packet */
        {{0, 10, 0xFF, '4'}, 4},      /* a digit above 9 */
        {{1, 2, 0xFF, 2, 1}, 5},      /* binary that is not a message */
        {{0, 2, 0xFF, '4', 0x80}, 5}, /* not UTF-8 */
        {{0}, 0},                     /* empty payload */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(decode_all(bad[i].b, bad[i].len, true, p, 4), -1);
}

static void test_ws(void **state) {
    (void)state;
    eio_packet_t p;
    uint8_t bin[] = {4, 1, 2};
    assert_int_equal(eio3_packet_decode_ws(bin, 3, true, &p), 0);
    assert_packet(&p, EIO_MESSAGE, true, "\x01\x02", 2);
    uint8_t only[] = {4};
    assert_int_equal(eio3_packet_decode_ws(only, 1, true, &p), 0);
    assert_packet(&p, EIO_MESSAGE, true, NULL, 0);
    uint8_t ping[] = {2, 1};
    assert_int_equal(eio3_packet_decode_ws(ping, 2, true, &p), -1);
    assert_int_equal(eio3_packet_decode_ws(bin, 0, true, &p), -1);
    uint8_t text[] = "2probe";
    assert_int_equal(eio3_packet_decode_ws(text, 6, false, &p), 0);
    assert_packet(&p, EIO_PING, false, "probe", 5);

    /* The server's binary frame: header for len + 1, then the type byte. */
    eio_msg_t *m = eio_msg_new(EIO_MESSAGE, true, "\x07\x08", 2);
    assert_non_null(m);
    assert_int_equal(m->ws3_header_len, 3);
    const uint8_t want[] = {0x82, 3, 4};
    assert_memory_equal(m->ws3_header, want, 3);
    eio_msg_release(m);
}

/* Frames a message and returns prefix + body as one malloc'd buffer. */
static uint8_t *framed(eio_msg_t *m, bool binary, size_t *len) {
    uint8_t prefix[EIO3_PREFIX_MAX];
    size_t pl, bl;
    const uint8_t *body;
    assert_int_equal(eio3_frame(m, binary, prefix, &pl, &body, &bl), 0);
    uint8_t *out = malloc(pl + bl + 1);
    assert_non_null(out);
    memcpy(out, prefix, pl);
    memcpy(out + pl, body, bl);
    *len = pl + bl;
    return out;
}

static void test_frame(void **state) {
    (void)state;
    size_t len;
    /* Text, multi-byte: the JavaScript length (5), not the bytes (10). */
    eio_msg_t *t = eio_msg_new(EIO_MESSAGE, false, "\xc3\xa9\xf0\x9f\x98\x80\xe4\xb8\xad", 9);
    assert_non_null(t);
    uint8_t *f = framed(t, false, &len);
    const char *want_t = "5:4\xc3\xa9\xf0\x9f\x98\x80\xe4\xb8\xad";
    assert_int_equal(len, strlen(want_t));
    assert_memory_equal(f, want_t, len);
    free(f);
    assert_int_equal(t->utf16_len, 5); /* cached */
    /* The same in a binary payload: the byte count after kind 0. */
    f = framed(t, true, &len);
    const uint8_t want_tb[] = {0,    1,    0,    0xFF, '4',  0xc3, 0xa9,
                               0xf0, 0x9f, 0x98, 0x80, 0xe4, 0xb8, 0xad};
    assert_int_equal(len, sizeof want_tb);
    assert_memory_equal(f, want_tb, len);
    free(f);
    eio_msg_release(t);

    /* Binary: "6:b4AQID" in text, kind 1 and the type byte in binary. */
    eio_msg_t *b = eio_msg_new(EIO_MESSAGE, true, "\x01\x02\x03", 3);
    assert_non_null(b);
    f = framed(b, false, &len);
    assert_int_equal(len, 8);
    assert_memory_equal(f, "6:b4AQID", 8);
    free(f);
    f = framed(b, true, &len);
    const uint8_t want_bb[] = {1, 4, 0xFF, 4, 1, 2, 3};
    assert_int_equal(len, sizeof want_bb);
    assert_memory_equal(f, want_bb, len);
    free(f);
    eio_msg_release(b);

    /* Control packets: "1:6", and frames decode back. */
    eio_msg_t *n = eio_msg_new(EIO_NOOP, false, NULL, 0);
    assert_non_null(n);
    f = framed(n, false, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(f, "1:6", 3);
    eio_packet_t p;
    size_t pos = 0;
    assert_int_equal(eio3_payload_next(f, len, false, &pos, &p), 1);
    assert_packet(&p, EIO_NOOP, false, NULL, 0);
    assert_int_equal(eio3_payload_next(f, len, false, &pos, &p), 0);
    free(f);
    eio_msg_release(n);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf16_len),
        cmocka_unit_test(test_text_payload),
        cmocka_unit_test(test_text_payload_base64),
        cmocka_unit_test(test_text_payload_malformed),
        cmocka_unit_test(test_binary_payload),
        cmocka_unit_test(test_binary_payload_malformed),
        cmocka_unit_test(test_ws),
        cmocka_unit_test(test_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
