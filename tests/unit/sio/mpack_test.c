/* tests/unit/sio/mpack_test.c — the nesting bound of sio/mpack.c against msgpack-c itself.
 *
 * msgpack-c's unpacker keeps one stack entry per open container, an empty one included,
 * and has 32: whatever sio_mp_check accepts it must unpack, and whatever sio_mp_pack
 * writes sio_mp_check must accept (a broadcast packed by one node is read by the others).
 * Found by redis_msg_fuzz: an empty map inside 32 containers passed the check and failed
 * to unpack. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <msgpack.h>
#include <string.h>

#include "sio/mpack.h"
#include "util/buf.h"

/* k arrays of one element around `inner` (a MessagePack value of `len` bytes). */
static size_t nest(uint8_t *out, int k, const uint8_t *inner, size_t len) {
    size_t n = 0;
    for (int i = 0; i < k; i++)
        out[n++] = 0x91;
    memcpy(out + n, inner, len);
    return n + len;
}

static bool unpacks(const uint8_t *d, size_t n) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    bool ok = msgpack_unpack_next(&u, (const char *)d, n, &off) == MSGPACK_UNPACK_SUCCESS;
    msgpack_unpacked_destroy(&u);
    return ok;
}

static void test_check_agrees_with_msgpack_c(void **state) {
    const uint8_t inners[][2] = {{0x01, 0}, {0x90, 0}, {0x80, 0}, {0x91, 0x01}};
    const size_t lens[] = {1, 1, 1, 2};
    for (size_t i = 0; i < 4; i++) {
        for (int k = 28; k <= 34; k++) {
            uint8_t d[64];
            size_t n = nest(d, k, inners[i], lens[i]);
            bool checked = sio_mp_check(d, n, SIO_MP_DEPTH_MAX);
            assert_int_equal(checked, unpacks(d, n));
        }
    }
    /* The boundary itself: a scalar inside 32 containers, but no container. */
    uint8_t d[64];
    assert_true(sio_mp_check(d, nest(d, 32, (const uint8_t *)"\x01", 1), SIO_MP_DEPTH_MAX));
    assert_false(sio_mp_check(d, nest(d, 32, (const uint8_t *)"\x80", 1), SIO_MP_DEPTH_MAX));
}

/* [[[ ... inner ... ]]] with k arrays around inner. */
static json_t *json_nest(int k, json_t *inner) {
    json_t *v = inner;
    for (int i = 0; i < k; i++)
        v = json_pack("[o]", v);
    return v;
}

static void test_pack_writes_only_what_check_reads(void **state) {
    for (int k = 30; k <= 33; k++) {
        json_t *inners[] = {json_integer(1), json_array(), json_object()};
        for (size_t i = 0; i < 3; i++) {
            json_t *v = json_nest(k, inners[i]);
            assert_non_null(v);
            buf_t out = {0};
            msgpack_packer pk;
            sio_mp_packer_init(&pk, &out);
            int rc = sio_mp_pack(&pk, v, NULL, 0, SIO_MP_DEPTH_MAX);
            if (rc == 0) {
                assert_true(sio_mp_check(out.data, out.len, SIO_MP_DEPTH_MAX));
                assert_true(unpacks(out.data, out.len));
            } else {
                assert_int_equal(rc, -EINVAL);
                bool container = i > 0;
                assert_true(k >= (container ? 32 : 33));
            }
            buf_free(&out);
            json_decref(v);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_agrees_with_msgpack_c),
        cmocka_unit_test(test_pack_writes_only_what_check_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
