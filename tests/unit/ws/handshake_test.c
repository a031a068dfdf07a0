/* tests/unit/ws/handshake_test.c — upgrade request checks and Sec-WebSocket-Accept.
 *
 * Requests are assembled field by field so that each test changes exactly one thing
 * in an otherwise valid upgrade; one test goes through the real HTTP parser with the
 * RFC's sample request. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "ws/handshake.h"

static http_request_t req;

static void add(const char *name, const char *value) {
    assert_true(req.num_headers < HTTP_MAX_HEADERS_CAP);
    req.headers[req.num_headers].name = slice_make(name, strlen(name));
    req.headers[req.num_headers].value = slice_make(value, strlen(value));
    req.num_headers++;
}

/* Replaces the value of the first field called `name` (which must exist). */
static void set(const char *name, const char *value) {
    for (size_t i = 0; i < req.num_headers; i++) {
        if (slice_case_eq(req.headers[i].name, name)) {
            req.headers[i].value = slice_make(value, strlen(value));
            return;
        }
    }
    fail_msg("no header %s", name);
}

static void drop(const char *name) {
    size_t out = 0;
    for (size_t i = 0; i < req.num_headers; i++)
        if (!slice_case_eq(req.headers[i].name, name))
            req.headers[out++] = req.headers[i];
    assert_int_not_equal(out, req.num_headers);
    req.num_headers = out;
}

/* RFC 6455 §1.3's client handshake, as a parsed request. */
static int setup_valid(void **unused) {
    (void)unused;
    memset(&req, 0, sizeof(req));
    req.method = SLICE_LIT("GET");
    req.target = SLICE_LIT("/chat");
    req.path = SLICE_LIT("/chat");
    req.minor_version = 1;
    req.content_length = -1;
    req.keep_alive = true;
    req.upgrade = true;
    add("Host", "server.example.com");
    add("Upgrade", "websocket");
    add("Connection", "Upgrade");
    add("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    add("Origin", "http://example.com");
    add("Sec-WebSocket-Protocol", "chat, superchat");
    add("Sec-WebSocket-Version", "13");
    return 0;
}

static void test_rfc_accept(void **unused) {
    (void)unused;
    char accept[WS_ACCEPT_LEN + 1];
    memset(accept, 'x', sizeof(accept));
    ws_handshake_accept(SLICE_LIT("dGhlIHNhbXBsZSBub25jZQ=="), accept);
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(strlen(accept), WS_ACCEPT_LEN);
}

static void test_other_accepts(void **unused) {
    (void)unused;
    char accept[WS_ACCEPT_LEN + 1];
    ws_handshake_accept(SLICE_LIT("x3JJHMbDL1EzLkh9GBhXDw=="), accept);
    assert_string_equal(accept, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    ws_handshake_accept(SLICE_LIT("AQIDBAUGBwgJCgsMDQ4PEA=="), accept);
    assert_string_equal(accept, "C/0nmHhBztSRGR1CwL6Tf4ZjwpY=");
    /* The key is hashed as sent, not decoded; only its bytes matter, not a NUL. */
    const char buf[] = "dGhlIHNhbXBsZSBub25jZQ==trailing";
    ws_handshake_accept(slice_make(buf, 24), accept);
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_valid(void **unused) {
    (void)unused;
    assert_int_equal(ws_handshake_check(&req), 0);
}

static void test_case_insensitive_names_and_tokens(void **unused) {
    (void)unused;
    memset(&req, 0, sizeof(req));
    req.method = SLICE_LIT("GET");
    req.minor_version = 1;
    add("host", "a");
    add("UPGRADE", "WebSocket");
    add("connection", "upgrade");
    add("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    add("SEC-WEBSOCKET-VERSION", "13");
    assert_int_equal(ws_handshake_check(&req), 0);
}

static void test_token_lists(void **unused) {
    (void)unused;
    /* Firefox sends "keep-alive, Upgrade". */
    set("Connection", "keep-alive, Upgrade");
    assert_int_equal(ws_handshake_check(&req), 0);
    set("Connection", "keep-alive,upgrade ,  close");
    assert_int_equal(ws_handshake_check(&req), 0);
    set("Upgrade", "h2c, websocket");
    assert_int_equal(ws_handshake_check(&req), 0);
}

static void test_lists_split_over_fields(void **unused) {
    (void)unused;
    set("Connection", "keep-alive");
    add("Connection", "Upgrade");
    set("Upgrade", "h2c");
    add("Upgrade", "websocket");
    assert_int_equal(ws_handshake_check(&req), 0);
}

static void test_bad_method(void **unused) {
    (void)unused;
    const char *methods[] = {"POST", "HEAD", "PUT", "get", "GETS", ""};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        req.method = slice_make(methods[i], strlen(methods[i]));
        assert_int_equal(ws_handshake_check(&req), -400);
    }
}

static void test_http_1_0(void **unused) {
    (void)unused;
    req.minor_version = 0;
    assert_int_equal(ws_handshake_check(&req), -400);
}

static void test_host(void **unused) {
    (void)unused;
    add("Host", "other.example.com");
    assert_int_equal(ws_handshake_check(&req), -400);
    drop("Host");
    assert_int_equal(ws_handshake_check(&req), -400);
}

static void test_connection(void **unused) {
    (void)unused;
    const char *bad[] = {"keep-alive", "close", "upgraded", "up grade", "", "Upgrade2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set("Connection", bad[i]);
        assert_int_equal(ws_handshake_check(&req), -400);
    }
    drop("Connection");
    assert_int_equal(ws_handshake_check(&req), -400);
}

static void test_upgrade(void **unused) {
    (void)unused;
    const char *bad[] = {"h2c", "websocket2", "web socket", "", "websocket/13"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set("Upgrade", bad[i]);
        assert_int_equal(ws_handshake_check(&req), -400);
    }
    drop("Upgrade");
    assert_int_equal(ws_handshake_check(&req), -400);
}

static void test_key(void **unused) {
    (void)unused;
    const char *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ",    /* padding missing */
        "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 characters */
        "dGhlIHNhbXBsZSBub25jZQ===", /* 25 */
        "AAAAAAAAAAAAAAAAAAAA",      /* base64 of 15 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAA=",  /* 24 characters, but 17 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAAA",  /* 24 characters, 18 bytes */
        "dGhlIHNhbXBsZSBub25jZQ!=",  /* not the alphabet */
        "dGhlIHNhbXBsZSBub25j ZQ=",
        "dGhlIHNhbXBs=SBub25jZQ==", /* padding in the middle */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set("Sec-WebSocket-Key", bad[i]);
        if (ws_handshake_check(&req) != -400)
            fail_msg("key \"%s\" accepted", bad[i]);
    }
    /* Any 16 bytes will do, not only the RFC's. */
    set("Sec-WebSocket-Key", "AQIDBAUGBwgJCgsMDQ4PEA==");
    assert_int_equal(ws_handshake_check(&req), 0);
    /* §11.3.1: the key must not appear more than once. */
    add("Sec-WebSocket-Key", "AQIDBAUGBwgJCgsMDQ4PEA==");
    assert_int_equal(ws_handshake_check(&req), -400);
    drop("Sec-WebSocket-Key");
    assert_int_equal(ws_handshake_check(&req), -400);
}

static void test_version(void **unused) {
    (void)unused;
    const char *bad[] = {"8", "12", "14", "", "13, 8", "013", "13.0", "thirteen"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set("Sec-WebSocket-Version", bad[i]);
        if (ws_handshake_check(&req) != -426)
            fail_msg("version \"%s\" not answered with 426", bad[i]);
    }
    drop("Sec-WebSocket-Version");
    assert_int_equal(ws_handshake_check(&req), -426);
}

static void test_version_repeated_is_malformed(void **unused) {
    (void)unused;
    add("Sec-WebSocket-Version", "13");
    assert_int_equal(ws_handshake_check(&req), -400);
}

/* 426 tells the client to retry with version 13; that is only true when nothing else
 * is wrong, so any other fault wins. */
static void test_400_wins_over_426(void **unused) {
    (void)unused;
    set("Sec-WebSocket-Version", "8");
    set("Sec-WebSocket-Key", "short");
    assert_int_equal(ws_handshake_check(&req), -400);
    set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    drop("Upgrade");
    assert_int_equal(ws_handshake_check(&req), -400);
}

static void test_through_http_parser(void **unused) {
    (void)unused;
    static const char head[] = "GET /chat HTTP/1.1\r\n"
                               "Host: server.example.com\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               "Origin: http://example.com\r\n"
                               "Sec-WebSocket-Protocol: chat, superchat\r\n"
                               "Sec-WebSocket-Version: 13\r\n"
                               "\r\n";
    http_limits_t limits = {.max_head_size = 8192, .max_headers = 32};
    http_request_t parsed;
    assert_int_equal(http_parse_request(head, sizeof(head) - 1, &limits, &parsed),
                     sizeof(head) - 1);
    assert_int_equal(ws_handshake_check(&parsed), 0);
    const slice_t *key = http_request_header(&parsed, "sec-websocket-key");
    assert_non_null(key);
    char accept[WS_ACCEPT_LEN + 1];
    ws_handshake_accept(*key, accept);
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

int main(void) {
#define T(f) cmocka_unit_test_setup(f, setup_valid)
    const struct CMUnitTest tests[] = {
        T(test_rfc_accept),
        T(test_other_accepts),
        T(test_valid),
        T(test_case_insensitive_names_and_tokens),
        T(test_token_lists),
        T(test_lists_split_over_fields),
        T(test_bad_method),
        T(test_http_1_0),
        T(test_host),
        T(test_connection),
        T(test_upgrade),
        T(test_key),
        T(test_version),
        T(test_version_repeated_is_malformed),
        T(test_400_wins_over_426),
        T(test_through_http_parser),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
