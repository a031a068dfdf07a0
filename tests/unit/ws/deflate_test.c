/* tests/unit/ws/deflate_test.c — permessage-deflate: offers accepted and declined (RFC
 * 7692 §7), the response line, compression round trips through the shared streams and a
 * per-connection one, fragmented input, the size limit after inflating (zip bombs),
 * corrupt streams, and the memory counts. Compressed data for the inbound tests is made
 * with zlib directly, as a client would make it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define ZLIB_CONST /* next_in is const: no casts from our const input */
#include <zlib.h>

#include "ws/deflate.h"
#include "ws/frame.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static bool offer(const char *v, bool client_context, ws_deflate_params_t *p) {
    *p = (ws_deflate_params_t){0};
    return ws_deflate_accept_offer(slice_make(v, strlen(v)), client_context, p);
}

static void test_offers_accepted(void **unused) {
    (void)unused;
    ws_deflate_params_t p;
    /* What Chrome and Node's ws send. */
    assert_true(offer("permessage-deflate; client_max_window_bits", false, &p));
    assert_true(p.on && p.client_no_context && p.server_window_bits == 0);
    assert_true(offer("permessage-deflate", true, &p));
    assert_false(p.client_no_context);
    assert_true(offer("permessage-deflate; client_no_context_takeover", true, &p));
    assert_true(p.client_no_context);
    assert_true(offer("PerMessage-Deflate;server_no_context_takeover ; server_max_window_bits=10",
                      false, &p));
    assert_int_equal(p.server_window_bits, 10);
    assert_true(offer("permessage-deflate; server_max_window_bits=\"9\"; "
                      "client_max_window_bits=15",
                      false, &p));
    assert_int_equal(p.server_window_bits, 9);
    /* A list: other extensions are skipped, the first valid offer of ours wins. */
    assert_true(offer("x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8, "
                      "permessage-deflate",
                      false, &p));
    assert_int_equal(p.server_window_bits, 8);
    assert_true(offer("foo; bar=\"a,b\", permessage-deflate; server_max_window_bits=7, "
                      "permessage-deflate; server_max_window_bits=12",
                      false, &p));
    assert_int_equal(p.server_window_bits, 12);
}

static void test_offers_declined(void **unused) {
    (void)unused;
    ws_deflate_params_t p;
    const char *bad[] = {
        "",
        "x-webkit-deflate-frame",
        "permessage-deflate; unknown_param",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=yes",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=1000000000000000000000",
        "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; client_max_window_bits=abc",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=\"10",
        "permessage-deflate;",
        "permessage-deflate; =10",
        "permessage-deflate garbage",
        ", permessage-deflate",
        "permessage-deflate; server_max_window_bits=\"1\\\"0\"",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        if (offer(bad[i], false, &p))
            fail_msg("accepted: %s", bad[i]);
    }
}

static void test_response_line(void **unused) {
    (void)unused;
    char line[WS_DEFLATE_RESPONSE_MAX];
    ws_deflate_params_t p = {.on = true, .client_no_context = true};
    size_t n = ws_deflate_response(&p, line);
    assert_string_equal(line, "Sec-WebSocket-Extensions: permessage-deflate; "
                              "server_no_context_takeover; client_no_context_takeover\r\n");
    assert_int_equal(n, strlen(line));
    p = (ws_deflate_params_t){.on = true, .server_window_bits = 10};
    ws_deflate_response(&p, line);
    assert_string_equal(line, "Sec-WebSocket-Extensions: permessage-deflate; "
                              "server_no_context_takeover; server_max_window_bits=10\r\n");
    /* The longest answer fits whole. */
    p.client_no_context = true;
    n = ws_deflate_response(&p, line);
    assert_string_equal(line, "Sec-WebSocket-Extensions: permessage-deflate; "
                              "server_no_context_takeover; client_no_context_takeover; "
                              "server_max_window_bits=10\r\n");
    assert_int_equal(n, strlen(line));
}

/* The request's fields, in order; offers are never joined across fields. */
static void test_negotiate_fields(void **unused) {
    (void)unused;
    http_request_t req = {0};
    req.headers[0] = (http_header_t){SLICE_LIT("Sec-WebSocket-Extensions"), SLICE_LIT("foo")};
    req.headers[1] = (http_header_t){SLICE_LIT("Host"), SLICE_LIT("x")};
    req.num_headers = 2;
    ws_deflate_params_t p;
    assert_false(ws_deflate_negotiate(&req, false, &p));
    req.headers[2] = (http_header_t){SLICE_LIT("sec-websocket-extensions"),
                                     SLICE_LIT("permessage-deflate; server_max_window_bits=11")};
    req.num_headers = 3;
    assert_true(ws_deflate_negotiate(&req, false, &p));
    assert_int_equal(p.server_window_bits, 11);
}

static ws_deflate_t *ctx(size_t threshold, bool client_context) {
    ws_deflate_config_t cfg = {threshold, client_context};
    ws_deflate_t *d = NULL;
    assert_int_equal(ws_deflate_new(&cfg, &d), 0);
    return d;
}

/* Compressible text of n bytes. */
static uint8_t *sample(size_t n) {
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)("the quick brown fox jumps over the lazy dog "[i % 44] + (i / 1000) % 3);
    return p;
}

/* A client's compression of in: raw deflate, sync flush, the 00 00 ff ff cut off. */
static size_t client_deflate(z_stream *z, const uint8_t *in, size_t len, uint8_t *out,
                             size_t size) {
    z->next_in = in;
    z->avail_in = (uInt)len;
    z->next_out = out;
    z->avail_out = (uInt)size;
    assert_int_equal(deflate(z, Z_SYNC_FLUSH), Z_OK);
    size_t n = size - z->avail_out;
    assert_true(n >= 4 && memcmp(out + n - 4, "\0\0\xff\xff", 4) == 0);
    return n - 4;
}

static void test_round_trip_shared(void **unused) {
    (void)unused;
    ws_deflate_t *d = ctx(16, false);
    ws_deflate_params_t p = {.on = true, .client_no_context = true};
    size_t sizes[] = {16, 100, 1024, 4096, 70000, 300000};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        uint8_t *msg = sample(sizes[i]);
        assert_true(ws_deflate_fits(d, &p, sizes[i]));
        ws_deflated_t z = {0};
        assert_int_equal(ws_deflate_make(d, WS_OP_TEXT, msg, sizes[i], &z), 0);
        if (sizes[i] == 16) {
            /* Too short to gain anything: kept plain. */
            assert_int_equal(z.state, WS_DEFLATED_SKIP);
            free(msg);
            continue;
        }
        assert_int_equal(z.state, WS_DEFLATED_MADE);
        /* A final text frame with RSV1, of the length its header says. */
        assert_int_equal(z.frame[0], 0x80 | 0x40 | WS_OP_TEXT);
        uint8_t h[WS_FRAME_HEADER_MAX];
        size_t body = z.len - (z.frame[1] == 126 ? 4 : z.frame[1] == 127 ? 10 : 2);
        size_t hl = ws_frame_header(h, WS_OP_TEXT, body);
        assert_memory_equal(h + 1, z.frame + 1, hl - 1);
        assert_true(body < sizes[i]);
        uint8_t *out;
        size_t out_len;
        assert_int_equal(ws_deflate_inflate(d, NULL, z.frame + hl, body, SIZE_MAX, &out, &out_len),
                         0);
        assert_int_equal(out_len, sizes[i]);
        assert_memory_equal(out, msg, sizes[i]);
        ws_deflate_inflate_done(d);
        ws_deflated_free(&z);
        free(msg);
    }
    ws_deflate_stats_t st;
    ws_deflate_stats(d, &st);
    assert_int_equal(st.messages_deflated, ARRAY_LEN(sizes));
    assert_int_equal(st.messages_inflated, ARRAY_LEN(sizes) - 1);
    assert_true(st.bytes_after < st.bytes_before);
    /* The shared streams: a deflate state of ~256 KiB and an inflate one with its window. */
    assert_true(st.zlib_bytes > 256 * 1024 && st.zlib_bytes < 400 * 1024);
    assert_int_equal(st.inflaters, 0);
    ws_deflate_release(d);
}

static void test_threshold_and_window(void **unused) {
    (void)unused;
    ws_deflate_t *d = ctx(1024, false);
    ws_deflate_params_t p = {.on = true};
    assert_false(ws_deflate_fits(d, &p, 1023));
    assert_true(ws_deflate_fits(d, &p, 1024));
    assert_true(ws_deflate_fits(d, &p, 1 << 20));
    /* server_max_window_bits=10: what fits in 1 KiB can be sent compressed on its own. */
    p.server_window_bits = 10;
    assert_true(ws_deflate_fits(d, &p, 1024));
    assert_false(ws_deflate_fits(d, &p, 1025));
    p.on = false;
    assert_false(ws_deflate_fits(d, &p, 4096));
    ws_deflate_release(d);
}

/* What a client with a small window would do: inflate with that window. A message no
 * longer than the window decompresses with it. */
static void test_small_window_client(void **unused) {
    (void)unused;
    ws_deflate_t *d = ctx(0, false);
    uint8_t *msg = sample(512);
    ws_deflated_t z = {0};
    assert_int_equal(ws_deflate_make(d, WS_OP_BINARY, msg, 512, &z), 0);
    assert_int_equal(z.state, WS_DEFLATED_MADE);
    assert_int_equal(z.frame[0], 0x80 | 0x40 | WS_OP_BINARY);
    size_t hl = z.frame[1] == 126 ? 4 : 2;
    z_stream in = {0};
    assert_int_equal(inflateInit2(&in, -9), Z_OK);
    uint8_t buf[1024];
    uint8_t *all = malloc(z.len - hl + 4);
    assert_non_null(all);
    memcpy(all, z.frame + hl, z.len - hl);
    memcpy(all + z.len - hl, "\0\0\xff\xff", 4);
    in.next_in = all;
    in.avail_in = (uInt)(z.len - hl + 4);
    in.next_out = buf;
    in.avail_out = sizeof buf;
    assert_int_equal(inflate(&in, Z_SYNC_FLUSH), Z_OK);
    assert_int_equal(sizeof buf - in.avail_out, 512);
    assert_memory_equal(buf, msg, 512);
    inflateEnd(&in);
    free(all);
    free(msg);
    ws_deflated_free(&z);
    ws_deflate_release(d);
}

/* A client that keeps its context: each message refers back into the previous ones, so
 * only a kept stream inflates them; its memory is counted while it exists. */
static void test_client_context_takeover(void **unused) {
    (void)unused;
    ws_deflate_t *d = ctx(0, true);
    ws_deflate_stats_t before;
    ws_deflate_stats(d, &before);
    ws_inflater_t *own = ws_inflater_new(d);
    assert_non_null(own);
    ws_deflate_stats_t st;
    ws_deflate_stats(d, &st);
    assert_int_equal(st.inflaters, 1);
    assert_true(st.zlib_bytes > before.zlib_bytes);

    z_stream c = {0};
    assert_int_equal(deflateInit2(&c, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    uint8_t *msg = sample(2000);
    uint8_t wire[4096];
    for (int round = 0; round < 3; round++) {
        size_t n = client_deflate(&c, msg, 2000, wire, sizeof wire);
        if (round > 0)
            assert_true(n < 40); /* all back-references into the last message */
        uint8_t *out;
        size_t out_len;
        assert_int_equal(ws_deflate_inflate(d, own, wire, n, 1 << 20, &out, &out_len), 0);
        assert_int_equal(out_len, 2000);
        assert_memory_equal(out, msg, 2000);
        ws_deflate_inflate_done(d);
        if (round == 0) {
            /* zlib makes the 32 KiB window on first use; it is counted from then on. */
            ws_deflate_stats(d, &st);
            assert_true(st.zlib_bytes - before.zlib_bytes > 32768 + 4096);
        }
        if (round == 1) {
            /* The shared stream starts from nothing and cannot make sense of it. */
            int rc = ws_deflate_inflate(d, NULL, wire, n, 1 << 20, &out, &out_len);
            assert_int_equal(rc, -WS_CLOSE_INVALID_DATA);
        }
    }
    deflateEnd(&c);
    free(msg);
    ws_inflater_free(d, own);
    ws_deflate_stats(d, &st);
    assert_int_equal(st.inflaters, 0);
    ws_deflate_release(d);
}

/* A fragmented message is inflated from its frames' payloads joined, whatever the cuts. */
static void test_fragments_joined(void **unused) {
    (void)unused;
    ws_deflate_t *d = ctx(0, false);
    z_stream c = {0};
    assert_int_equal(deflateInit2(&c, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    uint8_t *msg = sample(10000);
    /* Compressed in three pieces with flushes between, as a streaming client does. */
    uint8_t wire[20000];
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        c.next_in = msg + i * 3333;
        c.avail_in = i < 2 ? 3333 : 10000 - 6666;
        c.next_out = wire + n;
        c.avail_out = (uInt)(sizeof wire - n);
        assert_int_equal(deflate(&c, i < 2 ? Z_NO_FLUSH : Z_SYNC_FLUSH), Z_OK);
        n = sizeof wire - c.avail_out;
    }
    n -= 4;
    uint8_t *out;
    size_t out_len;
    assert_int_equal(ws_deflate_inflate(d, NULL, wire, n, 10000, &out, &out_len), 0);
    assert_int_equal(out_len, 10000);
    assert_memory_equal(out, msg, 10000);
    /* Exactly at the limit passes; one byte less fails. */
    assert_int_equal(ws_deflate_inflate(d, NULL, wire, n, 9999, &out, &out_len), -WS_CLOSE_TOO_BIG);
    /* A stream that ends with a final block (BFINAL) is accepted too. */
    assert_int_equal(deflateReset(&c), Z_OK);
    c.next_in = msg;
    c.avail_in = 100;
    c.next_out = wire;
    c.avail_out = sizeof wire;
    assert_int_equal(deflate(&c, Z_FINISH), Z_STREAM_END);
    assert_int_equal(
        ws_deflate_inflate(d, NULL, wire, sizeof wire - c.avail_out, 100, &out, &out_len), 0);
    assert_int_equal(out_len, 100);
    deflateEnd(&c);
    free(msg);
    ws_deflate_release(d);
}

/* 64 MiB of zeros compress to ~64 KiB; with a 1 MB limit the inflation stops at the limit
 * and never holds much more than it. */
static void test_zip_bomb(void **unused) {
    (void)unused;
    ws_deflate_t *d = ctx(0, false);
    size_t big = 64u << 20;
    uint8_t *zeros = calloc(1, 1 << 20);
    assert_non_null(zeros);
    z_stream c = {0};
    assert_int_equal(deflateInit2(&c, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = 256 * 1024, n = 0;
    uint8_t *wire = malloc(cap);
    assert_non_null(wire);
    for (size_t done = 0; done < big; done += 1 << 20) {
        c.next_in = zeros;
        c.avail_in = 1 << 20;
        c.next_out = wire + n;
        c.avail_out = (uInt)(cap - n);
        assert_int_equal(deflate(&c, done + (1 << 20) == big ? Z_SYNC_FLUSH : Z_NO_FLUSH), Z_OK);
        n = cap - c.avail_out;
    }
    deflateEnd(&c);
    assert_true(n < 128 * 1024);
    uint8_t *out;
    size_t out_len;
    assert_int_equal(ws_deflate_inflate(d, NULL, wire, n - 4, 1000000, &out, &out_len),
                     -WS_CLOSE_TOO_BIG);
    ws_deflate_stats_t st;
    ws_deflate_stats(d, &st);
    ws_deflate_inflate_done(d);
    /* The context still works afterwards. */
    z_stream c2 = {0};
    assert_int_equal(deflateInit2(&c2, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    uint8_t small[64];
    size_t sn = client_deflate(&c2, (const uint8_t *)"hello", 5, small, sizeof small);
    deflateEnd(&c2);
    assert_int_equal(ws_deflate_inflate(d, NULL, small, sn, 5, &out, &out_len), 0);
    assert_int_equal(out_len, 5);
    assert_memory_equal(out, "hello", 5);
    free(wire);
    free(zeros);
    ws_deflate_release(d);
}

static void test_corrupt_streams(void **unused) {
    (void)unused;
    ws_deflate_t *d = ctx(0, false);
    uint8_t *out;
    size_t out_len;
    /* Block type 3 is reserved. */
    const uint8_t reserved[] = {0x07, 0x00};
    assert_int_equal(ws_deflate_inflate(d, NULL, reserved, sizeof reserved, 1000, &out, &out_len),
                     -WS_CLOSE_INVALID_DATA);
    /* A stored block whose length and its complement disagree. */
    const uint8_t stored[] = {0x00, 0x05, 0x00, 0x00, 0x00, 'h', 'e', 'l', 'l', 'o'};
    assert_int_equal(ws_deflate_inflate(d, NULL, stored, sizeof stored, 1000, &out, &out_len),
                     -WS_CLOSE_INVALID_DATA);
    /* An empty message compresses to nothing but the trailer: an empty result. */
    assert_int_equal(ws_deflate_inflate(d, NULL, (const uint8_t *)"", 0, 1000, &out, &out_len), 0);
    assert_int_equal(out_len, 0);
    ws_deflate_release(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offers_accepted),     cmocka_unit_test(test_offers_declined),
        cmocka_unit_test(test_response_line),       cmocka_unit_test(test_negotiate_fields),
        cmocka_unit_test(test_round_trip_shared),   cmocka_unit_test(test_threshold_and_window),
        cmocka_unit_test(test_small_window_client), cmocka_unit_test(test_client_context_takeover),
        cmocka_unit_test(test_fragments_joined),    cmocka_unit_test(test_zip_bomb),
        cmocka_unit_test(test_corrupt_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
