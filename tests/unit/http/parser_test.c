/* tests/unit/http/parser_test.c — request heads, chunked bodies, percent-decoding.
 *
 * Inputs are copied into heap buffers of exactly their length so that ASan flags any
 * read past the bytes the parser was given. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

static const http_limits_t default_limits = {.max_head_size = 8192, .max_headers = 64};

/* Parses the first n bytes of s from an exact-size heap copy. The copy is kept alive
 * in *keep so slices in req stay valid; the caller frees it. */
static ssize_t parse_n_keep(const char *s, size_t n, const http_limits_t *limits,
                            http_request_t *req, char **keep) {
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, s, n);
    ssize_t rc = http_parse_request(copy, n, limits, req);
    *keep = copy;
    return rc;
}

static ssize_t parse_n(const char *s, size_t n, const http_limits_t *limits) {
    http_request_t req;
    char *copy;
    ssize_t rc = parse_n_keep(s, n, limits, &req, &copy);
    free(copy);
    return rc;
}

static ssize_t parse_str(const char *s) {
    return parse_n(s, strlen(s), &default_limits);
}

static void assert_slice(slice_t s, const char *want) {
    assert_int_equal(s.len, strlen(want));
    if (s.len > 0)
        assert_memory_equal(s.base, want, s.len);
}

/* Parses a request that must succeed and consume exactly all of s. */
typedef struct {
    http_request_t req;
    char *buf;
} parsed_t;

static void parse_ok(const char *s, parsed_t *p) {
    size_t n = strlen(s);
    ssize_t rc = parse_n_keep(s, n, &default_limits, &p->req, &p->buf);
    assert_int_equal(rc, (ssize_t)n);
}

/* ---- request line ---------------------------------------------------------------- */

static void test_simple_get(void **state) {
    (void)state;
    parsed_t p;
    parse_ok("GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: example.com\r\n\r\n", &p);
    assert_slice(p.req.method, "GET");
    assert_slice(p.req.target, "/engine.io/?EIO=4&transport=polling");
    assert_slice(p.req.path, "/engine.io/");
    assert_slice(p.req.query, "EIO=4&transport=polling");
    assert_int_equal(p.req.minor_version, 1);
    assert_int_equal(p.req.num_headers, 1);
    assert_slice(p.req.headers[0].name, "Host");
    assert_slice(p.req.headers[0].value, "example.com");
    assert_int_equal(p.req.content_length, -1);
    assert_false(p.req.chunked);
    assert_true(p.req.keep_alive);
    assert_false(p.req.upgrade);
    /* Slices borrow the caller's buffer rather than copying. */
    assert_ptr_equal(p.req.method.base, p.buf);
    assert_ptr_equal(p.req.path.base, p.buf + 4);
    free(p.buf);
}

static void test_path_without_query(void **state) {
    (void)state;
    parsed_t p;
    parse_ok("GET /index.html HTTP/1.1\r\n\r\n", &p);
    assert_slice(p.req.path, "/index.html");
    assert_slice(p.req.query, "");
    assert_non_null(p.req.query.base);
    assert_int_equal(p.req.num_headers, 0);
    free(p.buf);

    parse_ok("GET /a?b?c HTTP/1.1\r\n\r\n", &p);
    assert_slice(p.req.path, "/a");
    assert_slice(p.req.query, "b?c");
    free(p.buf);

    parse_ok("GET /? HTTP/1.1\r\n\r\n", &p);
    assert_slice(p.req.path, "/");
    assert_slice(p.req.query, "");
    free(p.buf);
}

static void test_asterisk_target(void **state) {
    (void)state;
    parsed_t p;
    parse_ok("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &p);
    assert_slice(p.req.method, "OPTIONS");
    assert_slice(p.req.path, "*");
    assert_slice(p.req.query, "");
    free(p.buf);
    assert_int_equal(parse_str("OPTIONS ** HTTP/1.1\r\n\r\n"), -400);
}

static void test_bad_targets(void **state) {
    (void)state;
    assert_int_equal(parse_str("GET foo HTTP/1.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET http://example.com/ HTTP/1.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("CONNECT example.com:443 HTTP/1.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET /a\x7f HTTP/1.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET /\x01 HTTP/1.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET /a\rb HTTP/1.1\r\n\r\n"), -400);
    static const char nul[] = "GET /a\0b HTTP/1.1\r\n\r\n";
    assert_int_equal(parse_n(nul, sizeof nul - 1, &default_limits), -400);
}

static void test_bad_request_lines(void **state) {
    (void)state;
    assert_int_equal(parse_str("GET  / HTTP/1.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET /  HTTP/1.1\r\n\r\n"), -400);
    assert_int_equal(parse_str(" GET / HTTP/1.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET\t/ HTTP/1.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("G@T / HTTP/1.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("G(T / HTTP/1.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET /\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET\r\n\r\n"), -400);
    assert_int_equal(parse_str("\x16\x03\x01\x02\x05\n\n"), -400);
    /* Methods are tokens, not a fixed list. */
    parsed_t p;
    parse_ok("M-SEARCH /x HTTP/1.1\r\n\r\n", &p);
    assert_slice(p.req.method, "M-SEARCH");
    free(p.buf);
}

static void test_versions(void **state) {
    (void)state;
    parsed_t p;
    parse_ok("GET / HTTP/1.0\r\n\r\n", &p);
    assert_int_equal(p.req.minor_version, 0);
    assert_false(p.req.keep_alive);
    free(p.buf);

    parse_ok("GET / HTTP/1.2\r\n\r\n", &p);
    assert_int_equal(p.req.minor_version, 1);
    free(p.buf);

    assert_int_equal(parse_str("GET / HTTP/2.0\r\n\r\n"), -505);
    assert_int_equal(parse_str("GET / HTTP/0.9\r\n\r\n"), -505);
    assert_int_equal(parse_str("GET / HTTP/3.0\r\n\r\n"), -505);
    assert_int_equal(parse_str("GET / HTTX/1.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / http/1.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/11.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.10\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1,1\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1 \r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.x\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/a.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/!.1\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.!\r\n\r\n"), -400);
}

/* A bad request line is refused as soon as it is complete, not after the head. */
static void test_early_rejection(void **state) {
    (void)state;
    assert_int_equal(parse_str("GET / HTTP/2.0\r\n"), -505);
    assert_int_equal(parse_str("GET foo HTTP/1.1\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nBad Header: x\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nHost: a\r\nX-Partial"), HTTP_PARSE_INCOMPLETE);
}

/* ---- header fields --------------------------------------------------------------- */

static void test_header_ows(void **state) {
    (void)state;
    parsed_t p;
    parse_ok("GET / HTTP/1.1\r\n"
             "X-A:  spaced value \t\r\n"
             "X-B:\ttabbed\r\n"
             "X-C:\r\n"
             "X-D:   \r\n"
             "X-E:nospace\r\n"
             "\r\n",
             &p);
    assert_int_equal(p.req.num_headers, 5);
    assert_slice(p.req.headers[0].name, "X-A");
    assert_slice(p.req.headers[0].value, "spaced value");
    assert_slice(p.req.headers[1].value, "tabbed");
    assert_slice(p.req.headers[2].value, "");
    assert_slice(p.req.headers[3].value, "");
    assert_slice(p.req.headers[4].value, "nospace");
    free(p.buf);
}

static void test_header_obs_text_allowed(void **state) {
    (void)state;
    parsed_t p;
    parse_ok("GET / HTTP/1.1\r\nX-Name: caf\xc3\xa9 \"q\" (c)\r\n\r\n", &p);
    assert_slice(p.req.headers[0].value, "caf\xc3\xa9 \"q\" (c)");
    free(p.buf);
}

static void test_header_lookup(void **state) {
    (void)state;
    parsed_t p;
    parse_ok("GET / HTTP/1.1\r\nHost: a\r\nX-Dup: first\r\nx-dup: second\r\n"
             "Sec-WebSocket-Key: k==\r\n\r\n",
             &p);
    const slice_t *v = http_request_header(&p.req, "HOST");
    assert_non_null(v);
    assert_slice(*v, "a");
    v = http_request_header(&p.req, "X-DUP");
    assert_non_null(v);
    assert_slice(*v, "first");
    v = http_request_header(&p.req, "sec-websocket-key");
    assert_non_null(v);
    assert_slice(*v, "k==");
    assert_null(http_request_header(&p.req, "Sec-WebSocket-Version"));
    assert_null(http_request_header(&p.req, "Hos"));
    assert_null(http_request_header(&p.req, "Hostx"));
    free(p.buf);
}

static void test_bad_headers(void **state) {
    (void)state;
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\n: a\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nX(y): a\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nX-A: a\r\n folded\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nX-A: a\r\n\tfolded\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nX-A: a\x01"
                               "b\r\n\r\n"),
                     -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nX-A: a\x7f\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nX-A: a\r\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\n\r\r\n\r\n"), -400);
    static const char nul[] = "GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n";
    assert_int_equal(parse_n(nul, sizeof nul - 1, &default_limits), -400);
    static const char nul_name[] = "GET / HTTP/1.1\r\nX\0A: a\r\n\r\n";
    assert_int_equal(parse_n(nul_name, sizeof nul_name - 1, &default_limits), -400);
}

static void test_duplicate_host(void **state) {
    (void)state;
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), -400);
}

/* ---- incremental and pipelined input --------------------------------------------- */

static void test_incremental_byte_by_byte(void **state) {
    (void)state;
    static const char req[] = "POST /engine.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\n"
                              "Host: localhost:3000\r\n"
                              "Content-Type: text/plain;charset=UTF-8\r\n"
                              "Content-Length: 7\r\n"
                              "\r\n";
    size_t n = sizeof req - 1;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(parse_n(req, i, &default_limits), HTTP_PARSE_INCOMPLETE);
    assert_int_equal(parse_n(req, n, &default_limits), (ssize_t)n);
}

static void test_pipelined(void **state) {
    (void)state;
    static const char first[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char both[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                               "GET /b HTTP/1.1\r\nHost: y\r\nConnection: close\r\n\r\n";
    http_request_t req;
    ssize_t n1 = http_parse_request(both, sizeof both - 1, &default_limits, &req);
    assert_int_equal(n1, (ssize_t)(sizeof first - 1));
    assert_slice(req.path, "/a");
    assert_true(req.keep_alive);
    ssize_t n2 = http_parse_request(both + n1, sizeof both - 1 - (size_t)n1, &default_limits, &req);
    assert_int_equal(n1 + n2, (ssize_t)(sizeof both - 1));
    assert_slice(req.path, "/b");
    assert_false(req.keep_alive);
}

static void test_head_length_excludes_body(void **state) {
    (void)state;
    static const char req[] = "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    http_request_t r;
    assert_int_equal(http_parse_request(req, sizeof req - 1, &default_limits, &r),
                     (ssize_t)(sizeof req - 1 - 5));
    assert_int_equal(r.content_length, 5);
    /* A body that looks like a broken head is not the parser's business. */
    static const char junk[] = "GET / HTTP/1.1\r\n\r\n\x01\x02 garbage\r\n";
    assert_int_equal(http_parse_request(junk, sizeof junk - 1, &default_limits, &r), 18);
}

static void test_bare_lf(void **state) {
    (void)state;
    parsed_t p;
    parse_ok("GET /x HTTP/1.1\nHost: a\nX-B: b\n\n", &p);
    assert_int_equal(p.req.num_headers, 2);
    assert_slice(p.req.headers[0].value, "a");
    assert_slice(p.req.headers[1].value, "b");
    free(p.buf);
    parse_ok("GET /x HTTP/1.1\r\nHost: a\n\r\n", &p);
    free(p.buf);
    parse_ok("GET /x HTTP/1.1\nHost: a\r\n\n", &p);
    free(p.buf);
}

static void test_leading_empty_lines(void **state) {
    (void)state;
    parsed_t p;
    parse_ok("\r\n\nGET / HTTP/1.1\r\n\r\n", &p);
    assert_slice(p.req.method, "GET");
    free(p.buf);
    assert_int_equal(parse_str("\r\n\r\n"), HTTP_PARSE_INCOMPLETE);
    assert_int_equal(parse_str("\r\n\r"), HTTP_PARSE_INCOMPLETE);
}

/* ---- framing: Content-Length and Transfer-Encoding ------------------------------- */

static int64_t content_length_of(const char *head) {
    parsed_t p;
    parse_ok(head, &p);
    free(p.buf);
    return p.req.content_length;
}

static void test_content_length(void **state) {
    (void)state;
    assert_int_equal(content_length_of("POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n"), 42);
    assert_int_equal(content_length_of("POST / HTTP/1.1\r\ncontent-length:0\r\n\r\n"), 0);
    assert_int_equal(content_length_of("POST / HTTP/1.1\r\nContent-Length: 007\r\n\r\n"), 7);
    assert_int_equal(
        content_length_of("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"), 5);
    assert_true(content_length_of(
                    "POST / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\n") == INT64_MAX);
    assert_int_equal(content_length_of("GET / HTTP/1.1\r\n\r\n"), -1);
}

static void test_bad_content_length(void **state) {
    (void)state;
    static const char *const bad[] = {
        "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 0\r\ncontent-length: 00\r\nContent-Length: 1\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 5a\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length:   \r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        print_message("case %zu\n", i);
        assert_int_equal(parse_str(bad[i]), -400);
    }
}

static void test_transfer_encoding(void **state) {
    (void)state;
    parsed_t p;
    parse_ok("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &p);
    assert_true(p.req.chunked);
    assert_int_equal(p.req.content_length, -1);
    free(p.buf);
    parse_ok("POST / HTTP/1.1\r\ntransfer-encoding:  ChUnKeD \r\n\r\n", &p);
    assert_true(p.req.chunked);
    free(p.buf);
    parse_ok("POST / HTTP/1.1\r\nTransfer-Encoding: , chunked \t,\r\n\r\n", &p);
    assert_true(p.req.chunked);
    free(p.buf);
}

static void test_bad_transfer_encoding(void **state) {
    (void)state;
    assert_int_equal(parse_str("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), -501);
    assert_int_equal(parse_str("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
                     -501);
    assert_int_equal(parse_str("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
                     -501);
    assert_int_equal(parse_str("POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n"), -501);
    assert_int_equal(parse_str("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                               "Transfer-Encoding: gzip\r\n\r\n"),
                     -501);
    assert_int_equal(parse_str("POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n"), -501);
    assert_int_equal(parse_str("POST / HTTP/1.1\r\nTransfer-Encoding: chunked;a=b\r\n\r\n"), -501);
    assert_int_equal(parse_str("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
                     -400);
    assert_int_equal(parse_str("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n"),
                     -400);
    assert_int_equal(parse_str("POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n"), -400);
    assert_int_equal(parse_str("POST / HTTP/1.1\r\nTransfer-Encoding: ,\r\n\r\n"), -400);
}

static void test_chunked_with_content_length(void **state) {
    (void)state;
    assert_int_equal(parse_str("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                               "Content-Length: 5\r\n\r\n"),
                     -400);
    assert_int_equal(parse_str("POST / HTTP/1.1\r\nContent-Length: 5\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n"),
                     -400);
    assert_int_equal(parse_str("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), -400);
}

/* ---- Connection and Upgrade ------------------------------------------------------ */

static void connection_of(const char *head, bool *keep_alive, bool *upgrade) {
    parsed_t p;
    parse_ok(head, &p);
    free(p.buf);
    *keep_alive = p.req.keep_alive;
    *upgrade = p.req.upgrade;
}

static void test_keep_alive(void **state) {
    (void)state;
    bool ka, up;
    connection_of("GET / HTTP/1.1\r\n\r\n", &ka, &up);
    assert_true(ka);
    connection_of("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &ka, &up);
    assert_false(ka);
    connection_of("GET / HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", &ka, &up);
    assert_false(ka);
    connection_of("GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", &ka,
                  &up);
    assert_false(ka);
    connection_of("GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", &ka, &up);
    assert_true(ka);
    connection_of("GET / HTTP/1.0\r\n\r\n", &ka, &up);
    assert_false(ka);
    connection_of("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &ka, &up);
    assert_true(ka);
    connection_of("GET / HTTP/1.0\r\nconnection: TE, Keep-Alive\r\n\r\n", &ka, &up);
    assert_true(ka);
}

static void test_upgrade(void **state) {
    (void)state;
    bool ka, up;
    parsed_t p;
    parse_ok("GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
             "Host: localhost:3000\r\n"
             "Connection: Upgrade\r\n"
             "Upgrade: websocket\r\n"
             "Sec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "\r\n",
             &p);
    assert_true(p.req.upgrade);
    assert_true(p.req.keep_alive);
    assert_slice(*http_request_header(&p.req, "upgrade"), "websocket");
    free(p.buf);

    connection_of("GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
                  &ka, &up);
    assert_true(up);
    connection_of("GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n", &ka, &up);
    assert_false(up);
    connection_of("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", &ka, &up);
    assert_false(up);
    connection_of("GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade:\r\n\r\n", &ka, &up);
    assert_false(up);
    connection_of("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", &ka, &up);
    assert_false(up);
}

/* ---- limits ---------------------------------------------------------------------- */

static void test_max_headers(void **state) {
    (void)state;
    const http_limits_t limits = {.max_head_size = 8192, .max_headers = 2};
    static const char two[] = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
    static const char three[] = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_int_equal(parse_n(two, sizeof two - 1, &limits), (ssize_t)(sizeof two - 1));
    assert_int_equal(parse_n(three, sizeof three - 1, &limits), -431);
    /* Refused as soon as the extra field line is complete. */
    assert_int_equal(parse_n(three, sizeof three - 3, &limits), -431);
}

static void test_max_headers_capped(void **state) {
    (void)state;
    const http_limits_t limits = {.max_head_size = 1 << 16, .max_headers = 1000};
    char buf[4096];
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < HTTP_MAX_HEADERS_CAP; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "X-%d: v\r\n", i);
    memcpy(buf + n, "\r\n", 2);
    assert_int_equal(parse_n(buf, n + 2, &limits), (ssize_t)(n + 2));
    n += (size_t)snprintf(buf + n, sizeof buf - n, "X-last: v\r\n\r\n");
    assert_int_equal(parse_n(buf, n, &limits), -431);
}

static void test_max_head_size(void **state) {
    (void)state;
    static const char req[] = "GET /abc HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t n = sizeof req - 1;
    http_limits_t limits = {.max_head_size = n, .max_headers = 8};
    assert_int_equal(parse_n(req, n, &limits), (ssize_t)n);
    limits.max_head_size = n - 1;
    assert_int_equal(parse_n(req, n, &limits), -431);
    assert_int_equal(parse_n(req, n - 1, &limits), -431);
    assert_int_equal(parse_n(req, n - 2, &limits), HTTP_PARSE_INCOMPLETE);
}

/* A client trickling one endless header line is cut off at the limit, not later. */
static void test_slowloris_head(void **state) {
    (void)state;
    const http_limits_t limits = {.max_head_size = 256, .max_headers = 8};
    char buf[1024];
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nX-Slow: ");
    memset(buf + n, 'a', sizeof buf - n);
    for (size_t len = n; len < 256; len++)
        assert_int_equal(parse_n(buf, len, &limits), HTTP_PARSE_INCOMPLETE);
    assert_int_equal(parse_n(buf, 256, &limits), -431);
    assert_int_equal(parse_n(buf, sizeof buf, &limits), -431);
    /* Endless empty lines before a request line are bounded the same way. */
    memset(buf, '\n', sizeof buf);
    assert_int_equal(parse_n(buf, 255, &limits), HTTP_PARSE_INCOMPLETE);
    assert_int_equal(parse_n(buf, sizeof buf, &limits), -431);
}

/* ---- chunked decoding ------------------------------------------------------------ */

typedef struct {
    int rc;
    size_t consumed;
    size_t out_len;
    char out[8192];
} chunked_result_t;

/* Decodes s in one call from an exact-size heap copy. */
static void decode_once(const char *s, size_t n, chunked_result_t *res) {
    http_chunked_t dec = {0};
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, s, n);
    size_t len = n;
    res->rc = http_chunked_decode(&dec, copy, &len, &res->consumed);
    assert_true(len <= res->consumed && res->consumed <= n);
    assert_true(len <= sizeof res->out);
    memcpy(res->out, copy, len);
    res->out_len = len;
    free(copy);
}

static int decode_str(const char *s, chunked_result_t *res) {
    decode_once(s, strlen(s), res);
    return res->rc;
}

static void assert_decoded(const chunked_result_t *res, const char *want) {
    assert_int_equal(res->out_len, strlen(want));
    assert_memory_equal(res->out, want, res->out_len);
}

static void test_chunked_single_call(void **state) {
    (void)state;
    static const char body[] = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    chunked_result_t res;
    assert_int_equal(decode_str(body, &res), 1);
    assert_int_equal(res.consumed, sizeof body - 1);
    assert_decoded(&res, "hello world");
}

static void test_chunked_hex_sizes(void **state) {
    (void)state;
    char body[128];
    chunked_result_t res;
    /* 0x1a = 26 bytes, uppercase and lowercase hex and leading zeros. */
    snprintf(body, sizeof body,
             "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n00A\r\n0123456789\r\n000\r\n\r\n");
    assert_int_equal(decode_str(body, &res), 1);
    assert_decoded(&res, "abcdefghijklmnopqrstuvwxyz0123456789");
}

/* Payload bytes are opaque: CRLFs and NULs inside a chunk are data. */
static void test_chunked_binary_payload(void **state) {
    (void)state;
    static const char body[] = "6\r\n\r\n0\r\n\0\r\n0\r\n\r\n";
    chunked_result_t res;
    decode_once(body, sizeof body - 1, &res);
    assert_int_equal(res.rc, 1);
    assert_int_equal(res.out_len, 6);
    assert_memory_equal(res.out, "\r\n0\r\n\0", 6);
}

static void test_chunked_byte_at_a_time(void **state) {
    (void)state;
    static const char body[] = "3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n";
    size_t n = sizeof body - 1;
    http_chunked_t dec = {0};
    char out[64];
    size_t out_len = 0;
    for (size_t i = 0; i < n; i++) {
        char *b = malloc(1);
        assert_non_null(b);
        *b = body[i];
        size_t len = 1, consumed;
        int rc = http_chunked_decode(&dec, b, &len, &consumed);
        assert_int_equal(rc, i + 1 == n ? 1 : 0);
        assert_int_equal(consumed, 1);
        if (len == 1)
            out[out_len++] = *b;
        free(b);
    }
    assert_int_equal(out_len, 19);
    assert_memory_equal(out, "abc0123456789abcdef", 19);
}

/* Every split point gives the same payload as a single call. */
static void test_chunked_every_split(void **state) {
    (void)state;
    static const char body[] =
        "4\r\nWiki\r\n5;ext\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
    size_t n = sizeof body - 1;
    for (size_t split = 0; split <= n; split++) {
        http_chunked_t dec = {0};
        char buf[sizeof body];
        memcpy(buf, body, n);
        size_t len1 = split, c1;
        assert_int_equal(http_chunked_decode(&dec, buf, &len1, &c1), split == n ? 1 : 0);
        assert_int_equal(c1, split);
        char out[64];
        memcpy(out, buf, len1);
        size_t len2 = n - split, c2;
        memmove(buf, body + split, len2);
        assert_int_equal(http_chunked_decode(&dec, buf, &len2, &c2), 1);
        assert_int_equal(c2, n - split);
        memcpy(out + len1, buf, len2);
        assert_int_equal(len1 + len2, 23);
        assert_memory_equal(out, "Wikipedia in\r\n\r\nchunks.", 23);
    }
}

static void test_chunked_incomplete(void **state) {
    (void)state;
    http_chunked_t dec = {0};
    char a[] = "5\r\nhel";
    size_t len = sizeof a - 1, consumed;
    assert_int_equal(http_chunked_decode(&dec, a, &len, &consumed), 0);
    assert_int_equal(consumed, 6);
    assert_int_equal(len, 3);
    assert_memory_equal(a, "hel", 3);
    assert_int_equal(dec.chunk_left, 2);
    char b[] = "lo\r\n0\r\n\r\n";
    len = sizeof b - 1;
    assert_int_equal(http_chunked_decode(&dec, b, &len, &consumed), 1);
    assert_int_equal(len, 2);
    assert_memory_equal(b, "lo", 2);
}

static void test_chunked_extensions(void **state) {
    (void)state;
    chunked_result_t res;
    assert_int_equal(decode_str("5;name=value;q=\"x y\"\r\nhello\r\n0;last\r\n\r\n", &res), 1);
    assert_decoded(&res, "hello");
    assert_int_equal(decode_str("5 ;a\r\nhello\r\n0\t; b = c\r\n\r\n", &res), 1);
    assert_decoded(&res, "hello");
    assert_int_equal(decode_str("2;\xff\r\nhi\r\n0\r\n\r\n", &res), 1);
    assert_decoded(&res, "hi");
}

static void test_chunked_trailers(void **state) {
    (void)state;
    chunked_result_t res;
    static const char body[] = "2\r\nok\r\n0\r\nExpires: never\r\nX-Sum:\tabc \r\nX-E:\r\n\r\n";
    assert_int_equal(decode_str(body, &res), 1);
    assert_int_equal(res.consumed, sizeof body - 1);
    assert_decoded(&res, "ok");
}

static void test_chunked_bad_trailers(void **state) {
    (void)state;
    chunked_result_t res;
    assert_int_equal(decode_str("0\r\nNoColon\r\n\r\n", &res), -400);
    assert_int_equal(decode_str("0\r\n: v\r\n\r\n", &res), -400);
    assert_int_equal(decode_str("0\r\nA : v\r\n\r\n", &res), -400);
    assert_int_equal(decode_str("0\r\nA: b\r\n folded\r\n\r\n", &res), -400);
    assert_int_equal(decode_str("0\r\nA: b\x01\r\n\r\n", &res), -400);
    assert_int_equal(decode_str("0\r\nA: b\n\r\n", &res), -400);
    assert_int_equal(decode_str("0\r\nA: b\r\n\n", &res), -400);
    assert_int_equal(decode_str("0\r\n\n", &res), -400);
    assert_int_equal(decode_str("0\r\n\rX", &res), -400);
}

static void test_chunked_malformed_sizes(void **state) {
    (void)state;
    static const char *const bad[] = {
        "\r\n",
        "g\r\n",
        "-5\r\n",
        "+5\r\n",
        "0x5\r\nhello\r\n",
        " 5\r\nhello\r\n",
        "5 \r\nhello\r\n",
        "5\t\r\n",
        ";x\r\n",
        "5\nhello\r\n",
        "5\rhello\r\n",
        "5;a\x01\r\n",
        "5;a\nb\r\n",
        "5;a\x7f\r\n",
        "5 5\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        chunked_result_t res;
        print_message("case %zu\n", i);
        assert_int_equal(decode_str(bad[i], &res), -400);
    }
}

static void test_chunked_size_limits(void **state) {
    (void)state;
    chunked_result_t res;
    /* 2^62 is the largest size accepted; the decoder then waits for the payload. */
    assert_int_equal(decode_str("4000000000000000\r\n", &res), 0);
    assert_int_equal(decode_str("04000000000000000\r\n", &res), 0);
    assert_int_equal(decode_str("4000000000000001\r\n", &res), -400);
    assert_int_equal(decode_str("8000000000000000\r\n", &res), -400);
    assert_int_equal(decode_str("FFFFFFFFFFFFFFFF\r\n", &res), -400);
    /* 2^64 + 1 would wrap to 1 in a naive accumulator. */
    assert_int_equal(decode_str("10000000000000001\r\nx\r\n0\r\n\r\n", &res), -400);
}

/* Builds "2\r\nab\r\n" then a chunk-size line of exactly line_len bytes (size 1 and an
 * extension, CRLF included), then "X\r\n0\r\n\r\n"; returns the total length. The first
 * chunk makes sure the count restarts with every size line. */
static size_t long_extension_body(char *body, size_t line_len) {
    memcpy(body, "2\r\nab\r\n", 7);
    memcpy(body + 7, "1;", 2);
    memset(body + 9, 'a', line_len - 4);
    memcpy(body + 7 + line_len - 2, "\r\nX\r\n0\r\n\r\n", 10);
    return 7 + line_len + 8;
}

/* A chunk-size line is bounded at 4096 bytes including its CRLF. */
static void test_chunked_line_limit(void **state) {
    (void)state;
    char body[8192];
    chunked_result_t res;
    size_t len_4096 = long_extension_body(body, 4096);
    decode_once(body, len_4096, &res);
    assert_int_equal(res.rc, 1);
    assert_decoded(&res, "abX");
    size_t len_4097 = long_extension_body(body, 4097);
    decode_once(body, len_4097, &res);
    assert_int_equal(res.rc, -400);

    /* Leading zeros count too, so they cannot be sent forever. */
    memset(body, '0', sizeof body);
    decode_once(body, sizeof body, &res);
    assert_int_equal(res.rc, -400);
}

/* The trailer section is bounded as a whole, so many small lines cannot add up. */
static void test_chunked_trailer_limit(void **state) {
    (void)state;
    char body[8192];
    size_t n = (size_t)snprintf(body, sizeof body, "0\r\n");
    while (n < 4000)
        n += (size_t)snprintf(body + n, sizeof body - n, "T: v\r\n");
    chunked_result_t res;
    memcpy(body + n, "\r\n", 2);
    decode_once(body, n + 2, &res);
    assert_int_equal(res.rc, 1);
    while (n < 4200)
        n += (size_t)snprintf(body + n, sizeof body - n, "T: v\r\n");
    memcpy(body + n, "\r\n", 2);
    decode_once(body, n + 2, &res);
    assert_int_equal(res.rc, -400);
}

static void test_chunked_missing_crlf_after_data(void **state) {
    (void)state;
    chunked_result_t res;
    assert_int_equal(decode_str("5\r\nhelloX\r\n0\r\n\r\n", &res), -400);
    assert_int_equal(decode_str("5\r\nhello\rX0\r\n\r\n", &res), -400);
    assert_int_equal(decode_str("5\r\nhello\n0\r\n\r\n", &res), -400);
    assert_int_equal(decode_str("5\r\nhello0\r\n\r\n", &res), -400);
    /* Too little data before the next size line reads the size line as data. */
    assert_int_equal(decode_str("5\r\nhell\r\n0\r\n\r\n", &res), -400);
}

static void test_chunked_stops_after_final_chunk(void **state) {
    (void)state;
    static const char body[] = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    http_chunked_t dec = {0};
    char buf[sizeof body];
    memcpy(buf, body, sizeof body);
    size_t len = sizeof body - 1, consumed;
    assert_int_equal(http_chunked_decode(&dec, buf, &len, &consumed), 1);
    assert_int_equal(consumed, 13);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "abc", 3);
    /* The next request is left in place, untouched. */
    assert_memory_equal(buf + consumed, "GET / HTTP/1.1\r\n\r\n", 18);
    /* Once done, further calls consume nothing. */
    len = sizeof body - 1 - consumed;
    assert_int_equal(http_chunked_decode(&dec, buf + consumed, &len, &consumed), 1);
    assert_int_equal(consumed, 0);
    assert_int_equal(len, 0);
}

static void test_chunked_error_is_sticky(void **state) {
    (void)state;
    http_chunked_t dec = {0};
    char bad[] = "z";
    size_t len = 1, consumed;
    assert_int_equal(http_chunked_decode(&dec, bad, &len, &consumed), -400);
    char good[] = "0\r\n\r\n";
    len = sizeof good - 1;
    assert_int_equal(http_chunked_decode(&dec, good, &len, &consumed), -400);
}

static void test_chunked_empty_input(void **state) {
    (void)state;
    http_chunked_t dec = {0};
    char buf[1] = {'x'};
    size_t len = 0, consumed = 99;
    assert_int_equal(http_chunked_decode(&dec, buf, &len, &consumed), 0);
    assert_int_equal(consumed, 0);
    assert_int_equal(len, 0);
}

/* ---- percent-decoding ------------------------------------------------------------ */

static ssize_t pct(const char *s, char *out) {
    size_t n = strlen(s);
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, s, n);
    ssize_t rc = http_percent_decode(slice_make(copy, n), out);
    free(copy);
    return rc;
}

static void test_percent_decode(void **state) {
    (void)state;
    char out[64];
    assert_int_equal(pct("a%20b", out), 3);
    assert_memory_equal(out, "a b", 3);
    assert_int_equal(pct("%2F%2f%41", out), 3);
    assert_memory_equal(out, "//A", 3);
    assert_int_equal(pct("a+b", out), 3);
    assert_memory_equal(out, "a+b", 3);
    assert_int_equal(pct("%C3%A9", out), 2);
    assert_memory_equal(out, "\xc3\xa9", 2);
    assert_int_equal(pct("%00", out), 1);
    assert_int_equal(out[0], '\0');
    assert_int_equal(pct("%ff", out), 1);
    assert_int_equal((unsigned char)out[0], 0xff);
    assert_int_equal(pct("", out), 0);
    assert_int_equal(pct("plain", out), 5);
    assert_memory_equal(out, "plain", 5);
}

static void test_percent_decode_malformed(void **state) {
    (void)state;
    char out[64];
    assert_int_equal(pct("%", out), -1);
    assert_int_equal(pct("abc%", out), -1);
    assert_int_equal(pct("%2", out), -1);
    assert_int_equal(pct("%zz", out), -1);
    assert_int_equal(pct("%2g", out), -1);
    assert_int_equal(pct("%g2", out), -1);
    assert_int_equal(pct("%%41", out), -1);
    assert_int_equal(pct("% 41", out), -1);
}

static void test_percent_decode_in_place(void **state) {
    (void)state;
    char buf[] = "%41b%43%20d";
    ssize_t n = http_percent_decode(slice_make(buf, sizeof buf - 1), buf);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "AbC d", 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_path_without_query),
        cmocka_unit_test(test_asterisk_target),
        cmocka_unit_test(test_bad_targets),
        cmocka_unit_test(test_bad_request_lines),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_early_rejection),
        cmocka_unit_test(test_header_ows),
        cmocka_unit_test(test_header_obs_text_allowed),
        cmocka_unit_test(test_header_lookup),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_duplicate_host),
        cmocka_unit_test(test_incremental_byte_by_byte),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_head_length_excludes_body),
        cmocka_unit_test(test_bare_lf),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_bad_content_length),
        cmocka_unit_test(test_transfer_encoding),
        cmocka_unit_test(test_bad_transfer_encoding),
        cmocka_unit_test(test_chunked_with_content_length),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_upgrade),
        cmocka_unit_test(test_max_headers),
        cmocka_unit_test(test_max_headers_capped),
        cmocka_unit_test(test_max_head_size),
        cmocka_unit_test(test_slowloris_head),
        cmocka_unit_test(test_chunked_single_call),
        cmocka_unit_test(test_chunked_hex_sizes),
        cmocka_unit_test(test_chunked_binary_payload),
        cmocka_unit_test(test_chunked_byte_at_a_time),
        cmocka_unit_test(test_chunked_every_split),
        cmocka_unit_test(test_chunked_incomplete),
        cmocka_unit_test(test_chunked_extensions),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_chunked_bad_trailers),
        cmocka_unit_test(test_chunked_malformed_sizes),
        cmocka_unit_test(test_chunked_size_limits),
        cmocka_unit_test(test_chunked_line_limit),
        cmocka_unit_test(test_chunked_trailer_limit),
        cmocka_unit_test(test_chunked_missing_crlf_after_data),
        cmocka_unit_test(test_chunked_stops_after_final_chunk),
        cmocka_unit_test(test_chunked_error_is_sticky),
        cmocka_unit_test(test_chunked_empty_input),
        cmocka_unit_test(test_percent_decode),
        cmocka_unit_test(test_percent_decode_malformed),
        cmocka_unit_test(test_percent_decode_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
