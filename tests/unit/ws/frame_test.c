/* tests/unit/ws/frame_test.c — client frame parsing, server frame headers, close
 * payloads. Frames come from RFC 6455 §5.7 where it has examples and from
 * client_frame() below, which masks like a client, otherwise. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ws/frame.h"

#define BIG (SIZE_MAX)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const uint8_t key_a[4] = {0x37, 0xfa, 0x21, 0x3d};

enum { LEN_MINIMAL, LEN_FORCE_16, LEN_FORCE_64 };

/* Writes a masked client frame with first byte b0 and returns its size; `form` forces
 * an extended length encoding (for the non-minimal tests). `declared` is the length
 * written in the header; the payload bytes appended are `len`. */
static size_t client_frame_raw(uint8_t *out, uint8_t b0, const void *payload, size_t len,
                               uint64_t declared, const uint8_t key[4], int form) {
    size_t n = 0;
    out[n++] = b0;
    if (form == LEN_MINIMAL && declared <= 125) {
        out[n++] = 0x80 | (uint8_t)declared;
    } else if (form != LEN_FORCE_64 && declared <= 0xffff) {
        out[n++] = 0x80 | 126;
        out[n++] = (uint8_t)(declared >> 8);
        out[n++] = (uint8_t)declared;
    } else {
        out[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)(declared >> (8 * i));
    }
    memcpy(out + n, key, 4);
    n += 4;
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        out[n + i] = p[i] ^ key[i % 4];
    return n + len;
}

static size_t client_frame(uint8_t *out, uint8_t b0, const void *payload, size_t len) {
    return client_frame_raw(out, b0, payload, len, len, key_a, LEN_MINIMAL);
}

static ssize_t parse(uint8_t *in, size_t len, ws_frame_t *f) {
    return ws_frame_parse(in, len, BIG, f);
}

/* RFC 6455 §5.7: "A single-frame masked text message". */
static void test_rfc_masked_hello(void **unused) {
    (void)unused;
    uint8_t in[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    ws_frame_t f;
    assert_int_equal(parse(in, sizeof(in), &f), 11);
    assert_true(f.fin);
    assert_int_equal(f.opcode, WS_OP_TEXT);
    assert_int_equal(f.len, 5);
    assert_ptr_equal(f.payload, in + 6);
    assert_memory_equal(f.payload, "Hello", 5);
}

/* §5.7: "Unmasked Ping response" is a pong with the same masked "Hello" body. */
static void test_rfc_masked_pong(void **unused) {
    (void)unused;
    uint8_t in[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    ws_frame_t f;
    assert_int_equal(parse(in, sizeof(in), &f), 11);
    assert_true(f.fin);
    assert_int_equal(f.opcode, WS_OP_PONG);
    assert_memory_equal(f.payload, "Hello", 5);
}

/* §5.7's unmasked examples are what a server sends; from a client they are errors. */
static void test_rfc_unmasked_examples_rejected(void **unused) {
    (void)unused;
    uint8_t text[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    uint8_t frag1[] = {0x01, 0x03, 0x48, 0x65, 0x6c};
    uint8_t frag2[] = {0x80, 0x02, 0x6c, 0x6f};
    uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    ws_frame_t f;
    assert_int_equal(parse(text, sizeof(text), &f), -WS_CLOSE_PROTOCOL_ERROR);
    assert_int_equal(parse(frag1, sizeof(frag1), &f), -WS_CLOSE_PROTOCOL_ERROR);
    assert_int_equal(parse(frag2, sizeof(frag2), &f), -WS_CLOSE_PROTOCOL_ERROR);
    assert_int_equal(parse(ping, sizeof(ping), &f), -WS_CLOSE_PROTOCOL_ERROR);
}

/* The same fragmented "Hel" + "lo" message, masked, back to back in one buffer. */
static void test_fragments_back_to_back(void **unused) {
    (void)unused;
    uint8_t in[64];
    size_t n1 = client_frame(in, WS_OP_TEXT, "Hel", 3);
    size_t n2 = client_frame(in + n1, 0x80 | WS_OP_CONT, "lo", 2);
    ws_frame_t f;
    assert_int_equal(parse(in, n1 + n2, &f), n1);
    assert_false(f.fin);
    assert_int_equal(f.opcode, WS_OP_TEXT);
    assert_memory_equal(f.payload, "Hel", 3);
    assert_int_equal(parse(in + n1, n2, &f), n2);
    assert_true(f.fin);
    assert_int_equal(f.opcode, WS_OP_CONT);
    assert_memory_equal(f.payload, "lo", 2);
}

/* Every proper prefix needs more bytes and leaves the buffer as it was. */
static void check_incremental(size_t payload_len, int form) {
    uint8_t *payload = malloc(payload_len + 1);
    uint8_t *in = malloc(payload_len + 14);
    uint8_t *copy = malloc(payload_len + 14);
    assert_non_null(payload);
    assert_non_null(in);
    assert_non_null(copy);
    for (size_t i = 0; i < payload_len; i++)
        payload[i] = (uint8_t)(i * 7 + 1);
    size_t total =
        client_frame_raw(in, 0x80 | WS_OP_BINARY, payload, payload_len, payload_len, key_a, form);
    memcpy(copy, in, total);
    ws_frame_t f;
    for (size_t cut = 0; cut < total; cut++) {
        assert_int_equal(parse(in, cut, &f), 0);
        /* Comparing the whole buffer each time would be quadratic; spot-check. */
        if (cut < 16 || cut + 16 > total || cut % 4093 == 0)
            assert_memory_equal(in, copy, total);
    }
    assert_memory_equal(in, copy, total);
    assert_int_equal(parse(in, total, &f), total);
    assert_int_equal(f.len, payload_len);
    assert_int_equal(f.opcode, WS_OP_BINARY);
    assert_ptr_equal(f.payload, in + total - payload_len);
    assert_memory_equal(f.payload, payload, payload_len);
    free(payload);
    free(in);
    free(copy);
}

static void test_incremental(void **unused) {
    (void)unused;
    check_incremental(0, LEN_MINIMAL);
    check_incremental(5, LEN_MINIMAL);
    check_incremental(125, LEN_MINIMAL);
    check_incremental(126, LEN_MINIMAL);
    check_incremental(65535, LEN_MINIMAL);
    check_incremental(65536, LEN_MINIMAL);
    check_incremental(70000, LEN_MINIMAL);
}

static void test_length_forms(void **unused) {
    (void)unused;
    static uint8_t in[65536 + 14];
    static uint8_t payload[65536];
    ws_frame_t f;
    size_t cases[] = {0, 1, 125, 126, 127, 256, 65535, 65536};
    size_t header[] = {6, 6, 6, 8, 8, 8, 8, 14};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        size_t n = client_frame(in, 0x80 | WS_OP_BINARY, payload, cases[i]);
        assert_int_equal(n, header[i] + cases[i]);
        assert_int_equal(parse(in, n, &f), n);
        assert_int_equal(f.len, cases[i]);
    }
    /* The 2-byte and 8-byte lengths are big-endian: 0x0100 is 256, not 1. */
    size_t n = client_frame(in, 0x82, payload, 256);
    assert_int_equal(in[1], 0x80 | 126);
    assert_int_equal(in[2], 0x01);
    assert_int_equal(in[3], 0x00);
    assert_int_equal(parse(in, n, &f), 8 + 256);
}

static void test_zero_length_frames(void **unused) {
    (void)unused;
    uint8_t ops[] = {WS_OP_TEXT, WS_OP_BINARY, WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
    for (size_t i = 0; i < ARRAY_LEN(ops); i++) {
        uint8_t in[8];
        size_t n = client_frame(in, 0x80 | ops[i], "", 0);
        ws_frame_t f;
        assert_int_equal(n, 6);
        assert_int_equal(parse(in, n, &f), 6);
        assert_int_equal(f.opcode, ops[i]);
        assert_int_equal(f.len, 0);
        assert_ptr_equal(f.payload, in + 6);
    }
}

/* Unmasking works eight bytes at a time: check every length around those words, every
 * alignment of the buffer, and several keys. */
static void test_unmask_lengths_and_alignments(void **unused) {
    (void)unused;
    static const uint8_t keys[][4] = {
        {0x00, 0x00, 0x00, 0x00}, {0x37, 0xfa, 0x21, 0x3d}, {0xff, 0xff, 0xff, 0xff}, {1, 2, 3, 4}};
    uint8_t payload[80];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(0xa5 ^ i);
    uint8_t storage[128];
    for (size_t k = 0; k < ARRAY_LEN(keys); k++) {
        for (size_t align = 0; align < 8; align++) {
            for (size_t len = 0; len <= 70; len++) {
                uint8_t *in = storage + align;
                size_t n = client_frame_raw(in, 0x82, payload, len, len, keys[k], LEN_MINIMAL);
                ws_frame_t f;
                assert_int_equal(parse(in, n, &f), n);
                assert_int_equal(f.len, len);
                if (len > 0)
                    assert_memory_equal(f.payload, payload, len);
            }
        }
    }
}

static void test_all_known_opcodes_accepted(void **unused) {
    (void)unused;
    uint8_t ops[] = {WS_OP_CONT, WS_OP_TEXT, WS_OP_BINARY, WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
    for (size_t i = 0; i < ARRAY_LEN(ops); i++) {
        uint8_t in[16];
        size_t n = client_frame(in, 0x80 | ops[i], "ab", 2);
        ws_frame_t f;
        assert_int_equal(parse(in, n, &f), n);
        assert_int_equal(f.opcode, ops[i]);
    }
    /* Data frames may be unfinished. */
    uint8_t in[16];
    size_t n = client_frame(in, WS_OP_BINARY, "ab", 2);
    ws_frame_t f;
    assert_int_equal(parse(in, n, &f), n);
    assert_false(f.fin);
}

/* These are decided from the first two bytes, before anything else arrives. */
static void check_rejected_early(uint8_t b0, uint8_t b1) {
    uint8_t in[2] = {b0, b1};
    ws_frame_t f;
    assert_int_equal(parse(in, 2, &f), -WS_CLOSE_PROTOCOL_ERROR);
}

static void test_reserved_bits_rejected(void **unused) {
    (void)unused;
    check_rejected_early(0x80 | 0x40 | WS_OP_TEXT, 0x80); /* RSV1 */
    check_rejected_early(0x80 | 0x20 | WS_OP_TEXT, 0x80); /* RSV2 */
    check_rejected_early(0x80 | 0x10 | WS_OP_TEXT, 0x80); /* RSV3 */
    check_rejected_early(0x80 | 0x70 | WS_OP_PING, 0x80);
    /* RSV1 is rejected even on a complete, otherwise valid frame. */
    uint8_t in[16];
    size_t n = client_frame(in, 0xc1, "hi", 2);
    ws_frame_t f;
    assert_int_equal(parse(in, n, &f), -WS_CLOSE_PROTOCOL_ERROR);
}

/* With permessage-deflate (RFC 7692 §6): RSV1 marks a compressed message's first frame;
 * on a continuation or a control frame it is still an error, as RSV2 and RSV3 are. */
static void test_rsv1_with_deflate(void **unused) {
    (void)unused;
    uint8_t in[16];
    ws_frame_t f;
    size_t n = client_frame(in, 0xc1, "hi", 2);
    assert_int_equal(ws_frame_parse_rsv1(in, n, BIG, &f), (ssize_t)n);
    assert_true(f.rsv1 && f.fin && f.opcode == WS_OP_TEXT);
    n = client_frame(in, 0x40 | WS_OP_BINARY, "hi", 2);
    assert_int_equal(ws_frame_parse_rsv1(in, n, BIG, &f), (ssize_t)n);
    assert_true(f.rsv1 && !f.fin && f.opcode == WS_OP_BINARY);
    n = client_frame(in, 0x81, "hi", 2);
    assert_int_equal(ws_frame_parse_rsv1(in, n, BIG, &f), (ssize_t)n);
    assert_false(f.rsv1);
    const uint8_t bad[] = {0x80 | 0x40 | WS_OP_CONT,  0x40 | WS_OP_CONT,
                           0x80 | 0x40 | WS_OP_PING,  0x80 | 0x40 | WS_OP_PONG,
                           0x80 | 0x40 | WS_OP_CLOSE, 0x80 | 0x60 | WS_OP_TEXT,
                           0x80 | 0x50 | WS_OP_TEXT,  0x80 | 0x20 | WS_OP_TEXT};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        n = client_frame(in, bad[i], "hi", 2);
        assert_int_equal(ws_frame_parse_rsv1(in, n, BIG, &f), -WS_CLOSE_PROTOCOL_ERROR);
    }
}

static void test_unknown_opcodes_rejected(void **unused) {
    (void)unused;
    uint8_t bad[] = {0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        check_rejected_early(0x80 | bad[i], 0x80);
        check_rejected_early(bad[i], 0x85);
    }
}

static void test_unmasked_rejected(void **unused) {
    (void)unused;
    check_rejected_early(0x81, 0x00);
    check_rejected_early(0x81, 0x05);
    check_rejected_early(0x82, 126);
    check_rejected_early(0x82, 127);
    check_rejected_early(0x89, 0x00);
}

static void test_control_frame_rules(void **unused) {
    (void)unused;
    /* Fragmented control frames. */
    check_rejected_early(WS_OP_CLOSE, 0x80);
    check_rejected_early(WS_OP_PING, 0x80);
    check_rejected_early(WS_OP_PONG, 0x85);
    /* Longer than 125, in either extended form. */
    check_rejected_early(0x80 | WS_OP_PING, 0x80 | 126);
    check_rejected_early(0x80 | WS_OP_PONG, 0x80 | 127);
    check_rejected_early(0x80 | WS_OP_CLOSE, 0x80 | 126);
    /* 125 is the most a control frame may carry. */
    uint8_t payload[125];
    memset(payload, 'p', sizeof(payload));
    uint8_t in[140];
    size_t n = client_frame(in, 0x80 | WS_OP_PING, payload, 125);
    ws_frame_t f;
    assert_int_equal(parse(in, n, &f), n);
    assert_int_equal(f.len, 125);
    /* A control frame's 125 bytes in the 16-bit form is non-minimal *and* a control
     * length over 7 bits: a protocol error either way. */
    n = client_frame_raw(in, 0x80 | WS_OP_PING, payload, 125, 125, key_a, LEN_FORCE_16);
    assert_int_equal(parse(in, n, &f), -WS_CLOSE_PROTOCOL_ERROR);
}

static void test_non_minimal_lengths_rejected(void **unused) {
    (void)unused;
    uint8_t in[16];
    ws_frame_t f;
    uint64_t short16[] = {0, 1, 125};
    for (size_t i = 0; i < ARRAY_LEN(short16); i++) {
        client_frame_raw(in, 0x82, "", 0, short16[i], key_a, LEN_FORCE_16);
        /* Decided once the 2-byte length is in: the mask key need not have arrived. */
        assert_int_equal(parse(in, 4, &f), -WS_CLOSE_PROTOCOL_ERROR);
    }
    uint64_t short64[] = {0, 125, 126, 65535};
    for (size_t i = 0; i < ARRAY_LEN(short64); i++) {
        client_frame_raw(in, 0x82, "", 0, short64[i], key_a, LEN_FORCE_64);
        assert_int_equal(parse(in, 10, &f), -WS_CLOSE_PROTOCOL_ERROR);
    }
    /* The smallest lengths each form may carry are fine (checked with their header). */
    client_frame_raw(in, 0x82, "", 0, 126, key_a, LEN_FORCE_16);
    assert_int_equal(parse(in, 8, &f), 0);
    client_frame_raw(in, 0x82, "", 0, 65536, key_a, LEN_FORCE_64);
    assert_int_equal(parse(in, 14, &f), 0);
}

static void test_top_bit_length_rejected(void **unused) {
    (void)unused;
    uint8_t in[16];
    ws_frame_t f;
    client_frame_raw(in, 0x82, "", 0, UINT64_C(1) << 63, key_a, LEN_FORCE_64);
    assert_int_equal(parse(in, 10, &f), -WS_CLOSE_PROTOCOL_ERROR);
    client_frame_raw(in, 0x82, "", 0, UINT64_MAX, key_a, LEN_FORCE_64);
    assert_int_equal(parse(in, 10, &f), -WS_CLOSE_PROTOCOL_ERROR);
}

static void test_too_big_from_header_alone(void **unused) {
    (void)unused;
    uint8_t in[32];
    ws_frame_t f;
    /* 7-bit length over the limit: known from two bytes. */
    client_frame_raw(in, 0x82, "", 0, 11, key_a, LEN_MINIMAL);
    assert_int_equal(ws_frame_parse(in, 2, 10, &f), -WS_CLOSE_TOO_BIG);
    /* At the limit it waits for the payload, then succeeds. */
    uint8_t ten[10] = {0};
    size_t n = client_frame(in, 0x82, ten, 10);
    assert_int_equal(ws_frame_parse(in, 2, 10, &f), 0);
    assert_int_equal(ws_frame_parse(in, n, 10, &f), n);
    /* 16-bit length. */
    client_frame_raw(in, 0x82, "", 0, 1000, key_a, LEN_MINIMAL);
    assert_int_equal(ws_frame_parse(in, 3, 999, &f), 0);
    assert_int_equal(ws_frame_parse(in, 4, 999, &f), -WS_CLOSE_TOO_BIG);
    assert_int_equal(ws_frame_parse(in, 4, 1000, &f), 0);
    /* 64-bit length. */
    client_frame_raw(in, 0x82, "", 0, UINT64_C(1) << 40, key_a, LEN_MINIMAL);
    assert_int_equal(ws_frame_parse(in, 9, 1 << 20, &f), 0);
    assert_int_equal(ws_frame_parse(in, 10, 1 << 20, &f), -WS_CLOSE_TOO_BIG);
    /* Even with no limit, a length that cannot be returned as ssize_t is too big. */
    client_frame_raw(in, 0x82, "", 0, INT64_MAX, key_a, LEN_MINIMAL);
    assert_int_equal(ws_frame_parse(in, 10, SIZE_MAX, &f), -WS_CLOSE_TOO_BIG);
    /* A control frame over a small limit is too big, not a protocol error. */
    uint8_t five[5] = {0};
    client_frame(in, 0x89, five, 5);
    assert_int_equal(ws_frame_parse(in, 2, 4, &f), -WS_CLOSE_TOO_BIG);
    /* A zero limit admits only empty frames. */
    n = client_frame(in, 0x81, "", 0);
    assert_int_equal(ws_frame_parse(in, n, 0, &f), n);
}

static void test_short_input_needs_more(void **unused) {
    (void)unused;
    uint8_t in[16] = {0x81};
    ws_frame_t f;
    assert_int_equal(parse(in, 0, &f), 0);
    assert_int_equal(parse(in, 1, &f), 0);
}

static void test_header_encoding(void **unused) {
    (void)unused;
    uint8_t h[WS_FRAME_HEADER_MAX];

    assert_int_equal(ws_frame_header(h, WS_OP_TEXT, 0), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 0x00);

    assert_int_equal(ws_frame_header(h, WS_OP_TEXT, 5), 2);
    assert_memory_equal(h, "\x81\x05", 2); /* §5.7's unmasked "Hello" header */

    assert_int_equal(ws_frame_header(h, WS_OP_BINARY, 125), 2);
    assert_memory_equal(h, "\x82\x7d", 2);

    assert_int_equal(ws_frame_header(h, WS_OP_BINARY, 126), 4);
    assert_memory_equal(h, "\x82\x7e\x00\x7e", 4);

    /* §5.7: "256 bytes binary message in a single unmasked frame". */
    assert_int_equal(ws_frame_header(h, WS_OP_BINARY, 256), 4);
    assert_memory_equal(h, "\x82\x7e\x01\x00", 4);

    assert_int_equal(ws_frame_header(h, WS_OP_BINARY, 65535), 4);
    assert_memory_equal(h, "\x82\x7e\xff\xff", 4);

    /* §5.7: "64KiB binary message in a single unmasked frame". */
    assert_int_equal(ws_frame_header(h, WS_OP_BINARY, 65536), 10);
    assert_memory_equal(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);

    assert_int_equal(ws_frame_header(h, WS_OP_TEXT, UINT64_C(0x0102030405060708)), 10);
    assert_memory_equal(h, "\x81\x7f\x01\x02\x03\x04\x05\x06\x07\x08", 10);

    assert_int_equal(ws_frame_header(h, WS_OP_CLOSE, 2), 2);
    assert_memory_equal(h, "\x88\x02", 2);
    assert_int_equal(ws_frame_header(h, WS_OP_PING, 0), 2);
    assert_int_equal(h[0], 0x89);
    assert_int_equal(ws_frame_header(h, WS_OP_PONG, 3), 2);
    assert_int_equal(h[0], 0x8a);
}

/* What we write, a client-side parser would read back: mask it like a client and
 * parse it with ours. */
static void test_header_round_trip(void **unused) {
    (void)unused;
    static uint8_t in[70000 + 14];
    size_t lens[] = {0, 7, 125, 126, 1000, 65535, 65536, 70000};
    for (size_t i = 0; i < ARRAY_LEN(lens); i++) {
        uint8_t h[WS_FRAME_HEADER_MAX];
        size_t hl = ws_frame_header(h, WS_OP_BINARY, lens[i]);
        memcpy(in, h, hl);
        in[1] |= 0x80;
        memset(in + hl, 0, 4 + lens[i]); /* zero key: payload unchanged */
        ws_frame_t f;
        assert_int_equal(parse(in, hl + 4 + lens[i], &f), hl + 4 + lens[i]);
        assert_int_equal(f.len, lens[i]);
        assert_true(f.fin);
        assert_int_equal(f.opcode, WS_OP_BINARY);
    }
}

static void check_close(const char *payload, size_t len, int expect, uint16_t expect_code) {
    uint16_t code = 0xbeef;
    assert_int_equal(ws_close_payload_check((const uint8_t *)payload, len, &code), expect);
    assert_int_equal(code, expect_code);
}

static void test_close_payload_empty_and_short(void **unused) {
    (void)unused;
    check_close("", 0, 0, WS_CLOSE_NO_STATUS);
    check_close("\x03", 1, -WS_CLOSE_PROTOCOL_ERROR, WS_CLOSE_NO_STATUS);
}

static void test_close_payload_valid_codes(void **unused) {
    (void)unused;
    uint16_t ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999};
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        char p[2] = {(char)(ok[i] >> 8), (char)(ok[i] & 0xff)};
        check_close(p, 2, 0, ok[i]);
    }
}

static void test_close_payload_invalid_codes(void **unused) {
    (void)unused;
    uint16_t bad[] = {0,    1,    999,  1004, 1005, 1006, 1012, 1013,
                      1014, 1015, 1016, 1100, 2000, 2999, 5000, 0xffff};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char p[2] = {(char)(bad[i] >> 8), (char)(bad[i] & 0xff)};
        check_close(p, 2, -WS_CLOSE_PROTOCOL_ERROR, bad[i]);
    }
}

/* A close payload of `code` and `reason`, checked. */
static void check_close_reason(uint16_t code, const char *reason, int expect) {
    char p[128];
    size_t n = strlen(reason);
    p[0] = (char)(code >> 8);
    p[1] = (char)(code & 0xff);
    memcpy(p + 2, reason, n);
    check_close(p, 2 + n, expect, code);
}

static void test_close_payload_reason(void **unused) {
    (void)unused;
    check_close_reason(1000, "bye", 0);
    check_close_reason(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 0);
    check_close_reason(4000, "custom", 0);
    /* Autobahn 7.5.1: a surrogate hidden in the reason. */
    check_close_reason(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80 edited",
                       -WS_CLOSE_INVALID_DATA);
    check_close_reason(1000, "\xc3", -WS_CLOSE_INVALID_DATA); /* truncated */
    check_close_reason(1000, "\xc0\x80", -WS_CLOSE_INVALID_DATA);
    check_close_reason(1000, "ok\x80", -WS_CLOSE_INVALID_DATA);
    /* The code is judged before the reason. */
    check_close_reason(1004, "\xff", -WS_CLOSE_PROTOCOL_ERROR);
    /* The largest reason a control frame can carry. */
    char reason[124];
    memset(reason, 'r', 123);
    reason[123] = '\0';
    check_close_reason(1001, reason, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_masked_hello),
        cmocka_unit_test(test_rfc_masked_pong),
        cmocka_unit_test(test_rfc_unmasked_examples_rejected),
        cmocka_unit_test(test_fragments_back_to_back),
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_length_forms),
        cmocka_unit_test(test_zero_length_frames),
        cmocka_unit_test(test_unmask_lengths_and_alignments),
        cmocka_unit_test(test_all_known_opcodes_accepted),
        cmocka_unit_test(test_reserved_bits_rejected),
        cmocka_unit_test(test_rsv1_with_deflate),
        cmocka_unit_test(test_unknown_opcodes_rejected),
        cmocka_unit_test(test_unmasked_rejected),
        cmocka_unit_test(test_control_frame_rules),
        cmocka_unit_test(test_non_minimal_lengths_rejected),
        cmocka_unit_test(test_top_bit_length_rejected),
        cmocka_unit_test(test_too_big_from_header_alone),
        cmocka_unit_test(test_short_input_needs_more),
        cmocka_unit_test(test_header_encoding),
        cmocka_unit_test(test_header_round_trip),
        cmocka_unit_test(test_close_payload_empty_and_short),
        cmocka_unit_test(test_close_payload_valid_codes),
        cmocka_unit_test(test_close_payload_invalid_codes),
        cmocka_unit_test(test_close_payload_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
