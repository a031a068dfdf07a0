/* tests/fuzz/ws_inflate_fuzz.c — libFuzzer target for ws/deflate.c.
 *
 * The input is two things at once:
 * - a compressed message as a client would send it (the frames' payloads joined, without
 *   the 00 00 ff ff), inflated through the shared stream and through a per-connection
 *   stream under a few limits. Beyond "no crash": the result is one of the documented
 *   outcomes, never longer than the limit, and a looser limit never turns a success into
 *   a failure or changes the bytes;
 * - a message to compress: what ws_deflate_make frames inflates back to the input, and is
 *   shorter when it is kept;
 * - the first bytes, also read as a Sec-WebSocket-Extensions value: an accepted offer has
 *   window bits in range and its response line parses as accepted again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws/deflate.h"
#include "ws/frame.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static ws_deflate_t *shared_ctx(void) {
    static ws_deflate_t *d;
    if (!d) {
        ws_deflate_config_t cfg = {0, true};
        CHECK(ws_deflate_new(&cfg, &d) == 0);
    }
    return d;
}

/* Under growing limits: a success stays a success with the same bytes, a corrupt stream
 * stays corrupt (it broke before the output reached the smaller limit), and "too big"
 * under a limit means "too big" under every smaller one. */
static void inflate_checks(ws_deflate_t *d, const uint8_t *data, size_t size) {
    static const size_t limits[] = {0, 100, 65536, 1 << 20};
    enum { N = sizeof limits / sizeof limits[0] };
    int rc[N];
    uint8_t *first = NULL;
    size_t first_len = 0;
    for (size_t i = 0; i < N; i++) {
        uint8_t *out;
        size_t len;
        rc[i] = ws_deflate_inflate(d, NULL, data, size, limits[i], &out, &len);
        CHECK(rc[i] == 0 || rc[i] == -WS_CLOSE_TOO_BIG || rc[i] == -WS_CLOSE_INVALID_DATA);
        if (i > 0 && rc[i - 1] != -WS_CLOSE_TOO_BIG)
            CHECK(rc[i] == rc[i - 1]);
        if (rc[i] == 0) {
            CHECK(len <= limits[i]);
            if (first) {
                CHECK(len == first_len && memcmp(out, first, len) == 0);
            } else {
                first = malloc(len + 1);
                CHECK(first != NULL);
                memcpy(first, out, len);
                first_len = len;
            }
        }
        ws_deflate_inflate_done(d);
    }
    /* A connection's own stream gives the same result for one message. */
    ws_inflater_t *own = ws_inflater_new(d);
    CHECK(own != NULL);
    uint8_t *out;
    size_t len;
    CHECK(ws_deflate_inflate(d, own, data, size, limits[N - 1], &out, &len) == rc[N - 1]);
    if (rc[N - 1] == 0)
        CHECK(len == first_len && memcmp(out, first, len) == 0);
    ws_deflate_inflate_done(d);
    ws_inflater_free(d, own);
    free(first);
}

static void deflate_checks(ws_deflate_t *d, const uint8_t *data, size_t size) {
    ws_deflated_t z = {0};
    CHECK(ws_deflate_make(d, WS_OP_BINARY, data, size, &z) == 0);
    CHECK(z.state == WS_DEFLATED_MADE || z.state == WS_DEFLATED_SKIP);
    if (z.state == WS_DEFLATED_MADE) {
        CHECK(z.frame[0] == (0x80 | 0x40 | WS_OP_BINARY));
        size_t hl = z.frame[1] == 126 ? 4 : z.frame[1] == 127 ? 10 : 2;
        CHECK(z.len > hl && z.len - hl < size);
        uint8_t *out;
        size_t len;
        CHECK(ws_deflate_inflate(d, NULL, z.frame + hl, z.len - hl, size, &out, &len) == 0);
        CHECK(len == size && memcmp(out, data, size) == 0);
        ws_deflate_inflate_done(d);
    }
    ws_deflated_free(&z);
}

static void offer_checks(const uint8_t *data, size_t size) {
    size_t n = size < 256 ? size : 256;
    ws_deflate_params_t p;
    if (!ws_deflate_accept_offer(slice_make(data, n), false, &p))
        return;
    CHECK(p.on && p.client_no_context);
    CHECK(p.server_window_bits == 0 || (p.server_window_bits >= 8 && p.server_window_bits <= 15));
    char line[WS_DEFLATE_RESPONSE_MAX];
    size_t len = ws_deflate_response(&p, line);
    CHECK(len < sizeof line && line[len - 1] == '\n');
    const char *value = line + strlen("Sec-WebSocket-Extensions: ");
    ws_deflate_params_t again;
    CHECK(ws_deflate_accept_offer(slice_make(value, strlen(value) - 2), false, &again));
    CHECK(again.server_window_bits == p.server_window_bits);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ws_deflate_t *d = shared_ctx();
    inflate_checks(d, data, size);
    deflate_checks(d, data, size);
    offer_checks(data, size);
    return 0;
}
