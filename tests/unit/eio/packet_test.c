/* tests/unit/eio/packet_test.c — Engine.IO packet decoding (WebSocket and long-polling)
 * and the shared outgoing message: its WebSocket header, its polling form and its
 * reference count. Run under ASan so a leaked polling string shows. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "eio/packet.h"
#include "util/base64.h"

/* A mutable copy of a literal (without its NUL), since decoding works in place. */
static uint8_t *dup_bytes(const void *s, size_t len) {
    uint8_t *p = malloc(len ? len : 1);
    assert_non_null(p);
    if (len)
        memcpy(p, s, len);
    return p;
}

/* The record separator, spelled so that a digit after it is not read as more hex. */
#define RS "\x1e"

static void assert_packet(const eio_packet_t *p, eio_packet_type_t type, bool binary,
                          const void *data, size_t len) {
    assert_int_equal(p->type, type);
    assert_int_equal(p->binary, binary);
    assert_int_equal(p->len, len);
    if (len)
        assert_memory_equal(p->data, data, len);
}

/* ---- WebSocket ---------------------------------------------------------------- */

static void test_ws_every_type(void **state) {
    (void)state;
    for (int t = EIO_OPEN; t <= EIO_NOOP; t++) {
        uint8_t buf[] = {(uint8_t)('0' + t), 'x', 'y'};
        eio_packet_t p;
        assert_int_equal(eio_packet_decode_ws(buf, sizeof buf, false, &p), 0);
        assert_packet(&p, (eio_packet_type_t)t, false, "xy", 2);
        assert_ptr_equal(p.data, buf + 1);

        /* The type alone is a packet with an empty payload ("2", "3", "6"). */
        assert_int_equal(eio_packet_decode_ws(buf, 1, false, &p), 0);
        assert_packet(&p, (eio_packet_type_t)t, false, NULL, 0);
    }
}

static void test_ws_examples(void **state) {
    (void)state;
    eio_packet_t p;
    uint8_t msg[] = "4hello";
    assert_int_equal(eio_packet_decode_ws(msg, 6, false, &p), 0);
    assert_packet(&p, EIO_MESSAGE, false, "hello", 5);

    uint8_t probe[] = "2probe";
    assert_int_equal(eio_packet_decode_ws(probe, 6, false, &p), 0);
    assert_packet(&p, EIO_PING, false, "probe", 5);

    uint8_t upgrade[] = "5";
    assert_int_equal(eio_packet_decode_ws(upgrade, 1, false, &p), 0);
    assert_packet(&p, EIO_UPGRADE, false, NULL, 0);

    uint8_t open[] = "0{\"sid\":\"abc\"}";
    assert_int_equal(eio_packet_decode_ws(open, sizeof open - 1, false, &p), 0);
    assert_packet(&p, EIO_OPEN, false, "{\"sid\":\"abc\"}", 13);
}

static void test_ws_binary(void **state) {
    (void)state;
    eio_packet_t p;
    /* A binary frame is a message as is, even if it starts with a digit or 'b'. */
    uint8_t bin[] = {'2', 0x00, 0xff, 0x1e};
    assert_int_equal(eio_packet_decode_ws(bin, sizeof bin, true, &p), 0);
    assert_packet(&p, EIO_MESSAGE, true, bin, sizeof bin);
    assert_ptr_equal(p.data, bin);

    assert_int_equal(eio_packet_decode_ws(bin, 0, true, &p), 0);
    assert_packet(&p, EIO_MESSAGE, true, NULL, 0);
}

static void test_ws_malformed(void **state) {
    (void)state;
    eio_packet_t p;
    uint8_t empty[1] = {0};
    assert_int_equal(eio_packet_decode_ws(empty, 0, false, &p), -1);

    /* '7', '/' and ':' bracket the digit range; 'b' is polling-only. */
    const char *bad[] = {"7", "9hello", "/", ":", "bAQID", "x", RS "4", " 4"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint8_t *buf = dup_bytes(bad[i], strlen(bad[i]));
        assert_int_equal(eio_packet_decode_ws(buf, strlen(bad[i]), false, &p), -1);
        free(buf);
    }
}

/* ---- Long-polling payloads ------------------------------------------------------ */

static void test_payload_spec_text(void **state) {
    (void)state;
    static const char in[] = "4hello" RS "2" RS "4world";
    size_t len = sizeof in - 1, pos = 0;
    uint8_t *buf = dup_bytes(in, len);
    eio_packet_t p;
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 1);
    assert_packet(&p, EIO_MESSAGE, false, "hello", 5);
    assert_ptr_equal(p.data, buf + 1);
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 1);
    assert_packet(&p, EIO_PING, false, NULL, 0);
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 1);
    assert_packet(&p, EIO_MESSAGE, false, "world", 5);
    assert_ptr_equal(p.data, buf + 10);
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 0);
    /* Exhausted stays exhausted. */
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 0);
    free(buf);
}

static void test_payload_spec_binary(void **state) {
    (void)state;
    static const char in[] = "4hello" RS "bAQIDBA==";
    size_t len = sizeof in - 1, pos = 0;
    uint8_t *buf = dup_bytes(in, len);
    eio_packet_t p;
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 1);
    assert_packet(&p, EIO_MESSAGE, false, "hello", 5);
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 1);
    assert_packet(&p, EIO_MESSAGE, true, "\x01\x02\x03\x04", 4);
    /* Decoded in place, right after the 'b'. */
    assert_ptr_equal(p.data, buf + 8);
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 0);
    free(buf);
}

static void test_payload_every_type(void **state) {
    (void)state;
    static const char in[] = "0a" RS "1" RS "2probe" RS "3" RS "4" RS "5" RS "6";
    size_t len = sizeof in - 1, pos = 0;
    uint8_t *buf = dup_bytes(in, len);
    eio_packet_t p;
    for (int t = EIO_OPEN; t <= EIO_NOOP; t++) {
        assert_int_equal(eio_payload_next(buf, len, &pos, &p), 1);
        assert_int_equal(p.type, t);
        assert_false(p.binary);
    }
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 0);
    free(buf);
}

static void test_payload_single(void **state) {
    (void)state;
    uint8_t buf[] = "4hello";
    size_t pos = 0;
    eio_packet_t p;
    assert_int_equal(eio_payload_next(buf, 6, &pos, &p), 1);
    assert_packet(&p, EIO_MESSAGE, false, "hello", 5);
    assert_int_equal(eio_payload_next(buf, 6, &pos, &p), 0);

    uint8_t one[] = "6";
    pos = 0;
    assert_int_equal(eio_payload_next(one, 1, &pos, &p), 1);
    assert_packet(&p, EIO_NOOP, false, NULL, 0);
    assert_int_equal(eio_payload_next(one, 1, &pos, &p), 0);
}

static void test_payload_binary_sizes(void **state) {
    (void)state;
    /* One, two and three bytes: two, one and no padding characters. */
    static const char in[] = "bAQ==" RS "bAQI=" RS "bAQID" RS "b";
    size_t len = sizeof in - 1, pos = 0;
    uint8_t *buf = dup_bytes(in, len);
    eio_packet_t p;
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 1);
    assert_packet(&p, EIO_MESSAGE, true, "\x01", 1);
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 1);
    assert_packet(&p, EIO_MESSAGE, true, "\x01\x02", 2);
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 1);
    assert_packet(&p, EIO_MESSAGE, true, "\x01\x02\x03", 3);
    /* 'b' with nothing after it is an empty binary message. */
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 1);
    assert_packet(&p, EIO_MESSAGE, true, NULL, 0);
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 0);
    free(buf);
}

static void test_payload_binary_leaves_rest(void **state) {
    (void)state;
    /* Decoding a binary packet in place must not disturb the separator or the packet
     * after it. */
    static const char in[] = "b/w==" RS "4next" RS "bAA==";
    size_t len = sizeof in - 1, pos = 0;
    uint8_t *buf = dup_bytes(in, len);
    eio_packet_t p;
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 1);
    assert_packet(&p, EIO_MESSAGE, true, "\xff", 1);
    assert_int_equal(buf[5], 0x1e);
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 1);
    assert_packet(&p, EIO_MESSAGE, false, "next", 4);
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 1);
    assert_packet(&p, EIO_MESSAGE, true, "\x00", 1);
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 0);
    free(buf);
}

/* Big enough to cross base64.c's 3 MiB encode and 4 Mi-character decode chunks, so the
 * in-place decode is checked where one EVP call hands over to the next. */
static void test_payload_binary_in_place_large(void **state) {
    (void)state;
    size_t n = 3 * (1u << 20) + 7;
    uint8_t *raw = malloc(n);
    assert_non_null(raw);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        raw[i] = (uint8_t)(x >> 16);
    }
    size_t enc = BASE64_ENCODED_LEN(n);
    assert_true(enc > (1u << 22));
    uint8_t *buf = malloc(1 + enc + 1);
    assert_non_null(buf);
    buf[0] = 'b';
    assert_int_equal(base64_encode(raw, n, (char *)buf + 1), enc);

    size_t pos = 0;
    eio_packet_t p;
    assert_int_equal(eio_payload_next(buf, 1 + enc, &pos, &p), 1);
    assert_packet(&p, EIO_MESSAGE, true, raw, n);
    assert_ptr_equal(p.data, buf + 1);
    assert_int_equal(eio_payload_next(buf, 1 + enc, &pos, &p), 0);
    free(buf);
    free(raw);
}

/* Runs a payload to its first error and returns how many packets came before it, or -1
 * when it ended without error. */
static int packets_before_error(const char *s, size_t len) {
    uint8_t *buf = dup_bytes(s, len);
    size_t pos = 0;
    eio_packet_t p;
    int n = 0, r;
    while ((r = eio_payload_next(buf, len, &pos, &p)) == 1)
        n++;
    free(buf);
    return r < 0 ? n : -1;
}

#define ERRS_AFTER(lit, n) assert_int_equal(packets_before_error((lit), sizeof(lit) - 1), (n))

static void test_payload_malformed(void **state) {
    (void)state;
    /* Empty packets: the body, a lone, leading or trailing separator, two in a row. */
    ERRS_AFTER("", 0);
    ERRS_AFTER(RS, 0);
    ERRS_AFTER(RS "4a", 0);
    ERRS_AFTER("4a" RS, 1);
    ERRS_AFTER("4a" RS RS "4b", 1);
    ERRS_AFTER("4ok" RS "bAQID" RS, 2);

    /* Unknown types, first or later. */
    ERRS_AFTER("7", 0);
    ERRS_AFTER("x" RS "4a", 0);
    ERRS_AFTER("4a" RS "9", 1);
    ERRS_AFTER("4a" RS "2" RS "/", 2);

    /* Base64 that Node's Buffer.from() would skip over or truncate. */
    ERRS_AFTER("bAQI", 0); /* length not a multiple of four */
    ERRS_AFTER("bAQ=", 0);
    ERRS_AFTER("bA", 0);
    ERRS_AFTER("bA===", 0); /* three padding characters */
    ERRS_AFTER("b====", 0);
    ERRS_AFTER("bA=AA", 0); /* padding in the middle */
    ERRS_AFTER("bAQ=A", 0);
    ERRS_AFTER("bAQ==AQ==", 0);
    ERRS_AFTER("bAQ!D", 0); /* outside the alphabet */
    ERRS_AFTER("bAQ D", 0);
    ERRS_AFTER("bAQ-_", 0); /* the URL-safe alphabet */
    ERRS_AFTER("bAQID\n", 0);
    ERRS_AFTER("4ok" RS "bAQ\0D", 1);
}

static void test_payload_text_keeps_bytes(void **state) {
    (void)state;
    /* Text payloads are not interpreted: NUL, 'b' and high bytes pass through. */
    static const char in[] = "4\0b\xc3\xa9" RS "4b";
    size_t len = sizeof in - 1, pos = 0;
    uint8_t *buf = dup_bytes(in, len);
    eio_packet_t p;
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 1);
    assert_packet(&p, EIO_MESSAGE, false, "\0b\xc3\xa9", 4);
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 1);
    assert_packet(&p, EIO_MESSAGE, false, "b", 1);
    assert_int_equal(eio_payload_next(buf, len, &pos, &p), 0);
    free(buf);
}

/* ---- Outgoing messages ---------------------------------------------------------- */

static void test_msg_text(void **state) {
    (void)state;
    eio_msg_t *m = eio_msg_new(EIO_MESSAGE, false, "hello", 5);
    assert_non_null(m);
    assert_int_equal(m->type, EIO_MESSAGE);
    assert_false(m->binary);
    assert_int_equal(m->len, 6);
    assert_memory_equal(m->data, "4hello", 6);
    assert_ptr_equal(eio_msg_payload(m), m->data + 1);
    assert_int_equal(m->ws_header_len, 2);
    assert_int_equal(eio_msg_ws_header(m)[0], 0x81);
    assert_int_equal(eio_msg_ws_header(m)[1], 6);
    eio_msg_release(m);
}

static void test_msg_every_type(void **state) {
    (void)state;
    for (int t = EIO_OPEN; t <= EIO_NOOP; t++) {
        eio_msg_t *m = eio_msg_new((eio_packet_type_t)t, false, NULL, 0);
        assert_non_null(m);
        assert_int_equal(m->len, 1);
        assert_int_equal(m->data[0], '0' + t);
        assert_int_equal(eio_msg_ws_header(m)[0], 0x81);
        assert_int_equal(eio_msg_ws_header(m)[1], 1);

        /* What the server sends, a client could send back: it decodes to itself. */
        eio_packet_t p;
        assert_int_equal(eio_packet_decode_ws(m->data, m->len, false, &p), 0);
        assert_packet(&p, (eio_packet_type_t)t, false, NULL, 0);
        eio_msg_release(m);
    }
}

static void test_msg_binary(void **state) {
    (void)state;
    const uint8_t raw[] = {1, 2, 3, 4};
    eio_msg_t *m = eio_msg_new(EIO_MESSAGE, true, raw, sizeof raw);
    assert_non_null(m);
    assert_true(m->binary);
    assert_int_equal(m->len, 4);
    assert_memory_equal(m->data, raw, 4);
    assert_ptr_equal(eio_msg_payload(m), m->data);
    assert_int_equal(m->ws_header_len, 2);
    assert_int_equal(eio_msg_ws_header(m)[0], 0x82);
    assert_int_equal(eio_msg_ws_header(m)[1], 4);
    assert_null(m->polling); /* not made until a polling session asks */
    eio_msg_release(m);
}

static void test_msg_invalid(void **state) {
    (void)state;
    assert_null(eio_msg_alloc(EIO_PING, true, 3));
    assert_null(eio_msg_alloc(EIO_OPEN, true, 0));
    assert_null(eio_msg_alloc((eio_packet_type_t)7, false, 0));
    assert_null(eio_msg_alloc((eio_packet_type_t)-1, false, 0));
    assert_null(eio_msg_alloc(EIO_MESSAGE, false, SIZE_MAX));
    assert_null(eio_msg_alloc(EIO_MESSAGE, true, SIZE_MAX - 8));
}

static void check_header(eio_msg_t *m, uint8_t opcode, size_t len) {
    assert_int_equal(m->len, len);
    assert_int_equal(eio_msg_ws_header(m)[0], 0x80 | opcode);
    if (len < 126) {
        assert_int_equal(m->ws_header_len, 2);
        assert_int_equal(eio_msg_ws_header(m)[1], len);
    } else if (len <= 65535) {
        assert_int_equal(m->ws_header_len, 4);
        assert_int_equal(eio_msg_ws_header(m)[1], 126);
        assert_int_equal(eio_msg_ws_header(m)[2], len >> 8);
        assert_int_equal(eio_msg_ws_header(m)[3], len & 0xff);
    } else {
        assert_int_equal(m->ws_header_len, 10);
        assert_int_equal(eio_msg_ws_header(m)[1], 127);
        for (int i = 0; i < 8; i++)
            assert_int_equal(eio_msg_ws_header(m)[2 + i], ((uint64_t)len >> (56 - 8 * i)) & 0xff);
    }
}

static void test_msg_ws_header_lengths(void **state) {
    (void)state;
    static const uint8_t exact[][10] = {
        {0x82, 0},
        {0x82, 125},
        {0x82, 126, 0x00, 0x7e},
        {0x82, 126, 0xff, 0xff},
        {0x82, 127, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00},
    };
    static const size_t lens[] = {0, 125, 126, 65535, 65536};
    static const uint8_t hlen[] = {2, 2, 4, 4, 10};
    for (size_t i = 0; i < 5; i++) {
        /* Binary: the frame carries exactly the payload. */
        eio_msg_t *m = eio_msg_alloc(EIO_MESSAGE, true, lens[i]);
        assert_non_null(m);
        assert_int_equal(m->ws_header_len, hlen[i]);
        assert_memory_equal(eio_msg_ws_header(m), exact[i], hlen[i]);
        eio_msg_release(m);

        /* Text: the frame carries the type digit too, so the frame length is one more
         * than the payload; pick the payload so the frame hits the same boundary. */
        if (lens[i] == 0)
            continue;
        m = eio_msg_alloc(EIO_MESSAGE, false, lens[i] - 1);
        assert_non_null(m);
        check_header(m, WS_OP_TEXT, lens[i]);
        eio_msg_release(m);
    }
    /* And one past each text boundary. */
    eio_msg_t *m = eio_msg_alloc(EIO_MESSAGE, false, 125);
    assert_non_null(m);
    check_header(m, WS_OP_TEXT, 126);
    eio_msg_release(m);
    m = eio_msg_alloc(EIO_MESSAGE, false, 65535);
    assert_non_null(m);
    check_header(m, WS_OP_TEXT, 65536);
    eio_msg_release(m);
}

static void test_msg_alloc_then_fill(void **state) {
    (void)state;
    eio_msg_t *m = eio_msg_alloc(EIO_MESSAGE, false, 3);
    assert_non_null(m);
    assert_int_equal(m->data[0], '4');
    memcpy(eio_msg_payload(m), "abc", 3);
    const uint8_t *out;
    size_t out_len;
    assert_int_equal(eio_msg_polling(m, &out, &out_len), 0);
    assert_int_equal(out_len, 4);
    assert_memory_equal(out, "4abc", 4);
    eio_msg_release(m);
}

static void test_msg_polling_text(void **state) {
    (void)state;
    eio_msg_t *m = eio_msg_new(EIO_PING, false, "probe", 5);
    assert_non_null(m);
    const uint8_t *out;
    size_t out_len;
    assert_int_equal(eio_msg_polling(m, &out, &out_len), 0);
    /* Text is sent on polling as it is: no copy. */
    assert_ptr_equal(out, m->data);
    assert_int_equal(out_len, 6);
    assert_memory_equal(out, "2probe", 6);
    assert_null(m->polling);
    eio_msg_release(m);
}

static void test_msg_polling_binary_cached(void **state) {
    (void)state;
    const uint8_t raw[] = {1, 2, 3, 4};
    eio_msg_t *m = eio_msg_new(EIO_MESSAGE, true, raw, sizeof raw);
    assert_non_null(m);
    const uint8_t *out, *again;
    size_t out_len, again_len;
    assert_int_equal(eio_msg_polling(m, &out, &out_len), 0);
    assert_int_equal(out_len, 9);
    assert_memory_equal(out, "bAQIDBA==", 9);
    assert_int_equal(eio_msg_polling(m, &again, &again_len), 0);
    assert_ptr_equal(again, out);
    assert_int_equal(again_len, out_len);
    /* The WebSocket form is untouched by making the polling one. */
    assert_memory_equal(m->data, raw, 4);
    assert_int_equal(eio_msg_ws_header(m)[1], 4);
    eio_msg_release(m);
}

static void test_msg_polling_binary_empty(void **state) {
    (void)state;
    eio_msg_t *m = eio_msg_new(EIO_MESSAGE, true, NULL, 0);
    assert_non_null(m);
    assert_int_equal(m->len, 0);
    assert_int_equal(m->ws_header_len, 2);
    assert_int_equal(eio_msg_ws_header(m)[1], 0);
    const uint8_t *out;
    size_t out_len;
    assert_int_equal(eio_msg_polling(m, &out, &out_len), 0);
    assert_int_equal(out_len, 1);
    assert_int_equal(out[0], 'b');
    eio_msg_release(m);
}

static void test_msg_polling_round_trip(void **state) {
    (void)state;
    /* Every length modulo 3, including ones whose encoding spans many groups. */
    for (size_t n = 0; n < 70; n++) {
        uint8_t raw[70];
        for (size_t i = 0; i < n; i++)
            raw[i] = (uint8_t)(i * 37 + n);
        eio_msg_t *m = eio_msg_new(EIO_MESSAGE, true, raw, n);
        assert_non_null(m);
        const uint8_t *out;
        size_t out_len;
        assert_int_equal(eio_msg_polling(m, &out, &out_len), 0);
        assert_int_equal(out_len, 1 + BASE64_ENCODED_LEN(n));

        uint8_t *buf = dup_bytes(out, out_len);
        size_t pos = 0;
        eio_packet_t p;
        assert_int_equal(eio_payload_next(buf, out_len, &pos, &p), 1);
        assert_packet(&p, EIO_MESSAGE, true, raw, n);
        assert_int_equal(eio_payload_next(buf, out_len, &pos, &p), 0);
        free(buf);
        eio_msg_release(m);
    }
}

static void test_msg_refcount(void **state) {
    (void)state;
    const uint8_t raw[] = {0xde, 0xad, 0xbe, 0xef, 0x00};
    eio_msg_t *m = eio_msg_new(EIO_MESSAGE, true, raw, sizeof raw);
    assert_non_null(m);
    assert_int_equal(m->ref.count, 1);
    /* Two more queues take it; the polling string is made while it is shared. */
    ref_retain(&m->ref);
    ref_retain(&m->ref);
    assert_int_equal(m->ref.count, 3);
    const uint8_t *out;
    size_t out_len;
    assert_int_equal(eio_msg_polling(m, &out, &out_len), 0);
    eio_msg_release(m);
    eio_msg_release(m);
    assert_int_equal(m->ref.count, 1);
    assert_memory_equal(out, "b3q2+7wA=", 9); /* still valid while referenced */
    /* The last release frees the message and its polling string; LeakSanitizer
     * reports either one if it does not. */
    eio_msg_release(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_every_type),
        cmocka_unit_test(test_ws_examples),
        cmocka_unit_test(test_ws_binary),
        cmocka_unit_test(test_ws_malformed),
        cmocka_unit_test(test_payload_spec_text),
        cmocka_unit_test(test_payload_spec_binary),
        cmocka_unit_test(test_payload_every_type),
        cmocka_unit_test(test_payload_single),
        cmocka_unit_test(test_payload_binary_sizes),
        cmocka_unit_test(test_payload_binary_leaves_rest),
        cmocka_unit_test(test_payload_binary_in_place_large),
        cmocka_unit_test(test_payload_malformed),
        cmocka_unit_test(test_payload_text_keeps_bytes),
        cmocka_unit_test(test_msg_text),
        cmocka_unit_test(test_msg_every_type),
        cmocka_unit_test(test_msg_binary),
        cmocka_unit_test(test_msg_invalid),
        cmocka_unit_test(test_msg_ws_header_lengths),
        cmocka_unit_test(test_msg_alloc_then_fill),
        cmocka_unit_test(test_msg_polling_text),
        cmocka_unit_test(test_msg_polling_binary_cached),
        cmocka_unit_test(test_msg_polling_binary_empty),
        cmocka_unit_test(test_msg_polling_round_trip),
        cmocka_unit_test(test_msg_refcount),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
