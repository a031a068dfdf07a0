/* tests/unit/eio/compress_test.c — compressed polling bodies (eio/compress.c): which
 * encoding an Accept-Encoding header gets, bodies made of pieces that inflate back to
 * their concatenation (gzip and zlib-wrapped deflate), and a message's compressed form
 * made once and kept with it. Run under ASan so a leaked body shows. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "eio/compress.h"

static eio_encoding_t accepted(const char *value) {
    static http_request_t req;
    memset(&req, 0, sizeof req);
    if (value) {
        req.headers[0].name = slice_make("Accept-Encoding", 15);
        req.headers[0].value = slice_make(value, strlen(value));
        req.num_headers = 1;
    }
    return eio_accepted_encoding(&req);
}

static void test_accept_encoding(void **state) {
    (void)state;
    assert_int_equal(accepted(NULL), EIO_ENC_NONE);
    assert_int_equal(accepted(""), EIO_ENC_NONE);
    assert_int_equal(accepted("identity"), EIO_ENC_NONE);
    assert_int_equal(accepted("br"), EIO_ENC_NONE);
    assert_int_equal(accepted("gzip, deflate, br"), EIO_ENC_GZIP);
    assert_int_equal(accepted("deflate, gzip"), EIO_ENC_GZIP); /* a tie: gzip */
    assert_int_equal(accepted("deflate"), EIO_ENC_DEFLATE);
    assert_int_equal(accepted("GZIP"), EIO_ENC_GZIP);
    assert_int_equal(accepted("gzip;q=0.5, deflate;q=0.8"), EIO_ENC_DEFLATE);
    assert_int_equal(accepted("gzip ; q=0.9 , deflate;q=0.1"), EIO_ENC_GZIP);
    assert_int_equal(accepted("gzip;q=0"), EIO_ENC_NONE);
    assert_int_equal(accepted("gzip;q=0, *"), EIO_ENC_DEFLATE);
    assert_int_equal(accepted("*"), EIO_ENC_GZIP);
    assert_int_equal(accepted("*;q=0"), EIO_ENC_NONE);
    assert_int_equal(accepted("gzip;q=0.000, deflate;q=0.001"), EIO_ENC_DEFLATE);
}

/* Inflates (zlib or gzip wrapper, detected) into out; returns the length. */
static size_t inflate_all(const eio_zbuf_t *zb, uint8_t *out, size_t cap) {
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(inflateInit2(&z, 15 + 32), Z_OK);
    z.next_in = zb->data;
    z.avail_in = (uInt)zb->len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
    assert_int_equal(z.avail_in, 0);
    size_t n = cap - z.avail_out;
    assert_int_equal(inflateEnd(&z), Z_OK);
    return n;
}

static void test_pieces(void **state) {
    (void)state;
    char text[4000];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)('a' + i % 7);
    for (eio_encoding_t e = EIO_ENC_GZIP; e <= EIO_ENC_DEFLATE; e++) {
        eio_deflate_t d;
        eio_deflate_begin(&d, e, sizeof text + 1);
        eio_deflate_add(&d, text, 1000);
        eio_deflate_add(&d, "\x1e", 1);
        eio_deflate_add(&d, text + 1000, sizeof text - 1000);
        eio_zbuf_t *zb = eio_deflate_end(&d);
        assert_non_null(zb);
        assert_true(zb->len < sizeof text / 4);
        /* gzip's magic, or a zlib header (CMF 0x78). */
        if (e == EIO_ENC_GZIP)
            assert_true(zb->data[0] == 0x1f && zb->data[1] == 0x8b);
        else
            assert_int_equal(zb->data[0], 0x78);
        uint8_t out[5000];
        size_t n = inflate_all(zb, out, sizeof out);
        assert_int_equal(n, sizeof text + 1);
        assert_memory_equal(out, text, 1000);
        assert_int_equal(out[1000], 0x1e);
        assert_memory_equal(out + 1001, text + 1000, sizeof text - 1000);
        ref_release(&zb->ref);
    }
    /* An empty body is a valid stream too. */
    eio_deflate_t d;
    eio_deflate_begin(&d, EIO_ENC_GZIP, 0);
    eio_zbuf_t *zb = eio_deflate_end(&d);
    assert_non_null(zb);
    uint8_t out[8];
    assert_int_equal(inflate_all(zb, out, sizeof out), 0);
    ref_release(&zb->ref);
}

static void test_msg_cached(void **state) {
    (void)state;
    uint8_t bytes[3000];
    memset(bytes, 9, sizeof bytes);
    eio_msg_t *m = eio_msg_new(EIO_MESSAGE, true, bytes, sizeof bytes);
    assert_non_null(m);
    eio_zbuf_t *g = eio_msg_compressed(m, EIO_ENC_GZIP);
    assert_non_null(g);
    assert_ptr_equal(eio_msg_compressed(m, EIO_ENC_GZIP), g); /* made once */
    eio_zbuf_t *z = eio_msg_compressed(m, EIO_ENC_DEFLATE);
    assert_non_null(z);
    assert_ptr_not_equal(z, g);
    /* Both inflate to the polling form: "b" + base64. */
    const uint8_t *poll;
    size_t poll_len;
    assert_int_equal(eio_msg_polling(m, &poll, &poll_len), 0);
    uint8_t *out = malloc(poll_len + 16);
    assert_non_null(out);
    assert_int_equal(inflate_all(g, out, poll_len + 16), poll_len);
    assert_memory_equal(out, poll, poll_len);
    assert_int_equal(inflate_all(z, out, poll_len + 16), poll_len);
    assert_memory_equal(out, poll, poll_len);
    free(out);
    /* A write queue's reference outlives the message's. */
    ref_retain(&g->ref);
    eio_msg_release(m);
    assert_int_equal(g->data[0], 0x1f);
    ref_release(&g->ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_encoding),
        cmocka_unit_test(test_pieces),
        cmocka_unit_test(test_msg_cached),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
