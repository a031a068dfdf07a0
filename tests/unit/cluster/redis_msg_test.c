/* tests/unit/cluster/redis_msg_test.c — socket.io Redis adapter messages (redis_msg.c).
 *
 * The golden bytes are what notepack.io (the Node adapter's MessagePack) writes for the
 * same values: a broadcast Parley publishes must be those bytes exactly, and those bytes
 * must read back as the broadcast. A Date (timestamp extension) reads as its JSON text.
 * Malformed input is refused before msgpack-c allocates for it: a count larger than the
 * bytes left, nesting past the bound, bytes after the value, a map shaped like a
 * placeholder. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/redis_msg.h"

static size_t unhex(const char *hex, uint8_t *out) {
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

/* notepack.encode(["abcdef", {type: 2, data: ["hello", 1, Buffer.from([7])], nsp: "/"},
 *                 {rooms: ["r1"], except: [], flags: {}}]) */
static const char golden_bcast[] =
    "93a661626364656683a47479706502a46461746193a568656c6c6f01c40107a36e7370a12f83a5726f6f6d739"
    "1a27231a665786365707490a5666c61677380";

static void test_broadcast_both_ways(void **state) {
    uint8_t bytes[256];
    size_t n = unhex(golden_bcast, bytes);
    rmsg_bcast_t m;
    assert_int_equal(rmsg_bcast_decode(bytes, n, &m), 0);
    assert_string_equal(m.uid, "abcdef");
    assert_string_equal(m.nsp, "/");
    assert_null(m.request_id);
    assert_string_equal(m.b.event, "hello");
    assert_string_equal(m.b.args_json, "[1,{\"_placeholder\":true,\"num\":0}]");
    assert_int_equal(m.b.nbins, 1);
    assert_int_equal(m.b.bins[0].len, 1);
    assert_int_equal(m.b.bins[0].data[0], 7);
    assert_int_equal(m.b.to.nrooms, 1);
    assert_string_equal(m.b.to.rooms[0], "r1");
    assert_int_equal(m.b.to.nexcept, 0);
    /* Published by Parley: the same bytes. */
    buf_t out = {0};
    assert_int_equal(rmsg_pack_bcast(&out, "abcdef", "/", &m.b, NULL), 0);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, bytes, n);
    buf_free(&out);
    rmsg_bcast_free(&m);
}

/* The cluster protocol (sharded mode): notepack.encode({uid: "abcdef", nsp: "/", type: 3,
 * data: {packet: <as above>, opts: <as above>}}) when there is binary, JSON text when not. */
static const char golden_cluster_bcast[] =
    "84a3756964a6616263646566a36e7370a12fa47479706503a46461746182a67061636b657483a47479706502a4"
    "6461746193a568656c6c6f01c40107a36e7370a12fa46f70747383a5726f6f6d7391a27231a6657863657074"
    "90a5666c61677380";

static void test_cluster_broadcast(void **state) {
    uint8_t bytes[256];
    size_t n = unhex(golden_cluster_bcast, bytes);
    rmsg_bcast_t m;
    assert_int_equal(rmsg_bcast_decode(bytes, n, &m), 0);
    assert_string_equal(m.uid, "abcdef");
    assert_null(m.request_id);
    assert_string_equal(m.b.event, "hello");
    assert_string_equal(m.b.args_json, "[1,{\"_placeholder\":true,\"num\":0}]");
    assert_int_equal(m.b.nbins, 1);
    assert_string_equal(m.b.to.rooms[0], "r1");
    buf_t out = {0};
    assert_int_equal(rmsg_pack_cluster_bcast(&out, "abcdef", "/", &m.b, NULL), 0);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, bytes, n);
    buf_free(&out);
    /* Without binary, with acks: JSON, as JSON.stringify writes it. */
    m.b.args_json = "[1]";
    m.b.args_len = 3;
    m.b.nbins = 0;
    assert_int_equal(rmsg_pack_cluster_bcast(&out, "abcdef", "/", &m.b, "q1"), 0);
    const char *json =
        "{\"uid\":\"abcdef\",\"nsp\":\"/\",\"type\":3,\"data\":{\"packet\":{\"type\":2,"
        "\"data\":[\"hello\",1],\"nsp\":\"/\"},\"opts\":{\"rooms\":[\"r1\"],\"except\":[],"
        "\"flags\":{}},\"requestId\":\"q1\"}}";
    assert_int_equal(out.len, strlen(json));
    assert_memory_equal(out.data, json, out.len);
    rmsg_bcast_t again;
    assert_int_equal(rmsg_bcast_decode(out.data, out.len, &again), 0);
    assert_string_equal(again.request_id, "q1");
    assert_string_equal(again.b.args_json, "[1]");
    rmsg_bcast_free(&again);
    buf_free(&out);
    rmsg_bcast_free(&m);
    /* Another cluster message type is not a broadcast. */
    const char *fetch = "{\"uid\":\"a\",\"nsp\":\"/\",\"type\":7,\"data\":{\"packet\":{\"type\":2,"
                        "\"data\":[\"x\"]},\"opts\":{}}}";
    assert_int_equal(rmsg_bcast_decode(fetch, strlen(fetch), &m), -EINVAL);
}

static void test_request_and_date(void **state) {
    const uint8_t bin[] = {1, 2};
    const char *except[] = {"x"};
    sio_bcast_t b = {.event = "ask",
                     .args_json = "[{\"_placeholder\":true,\"num\":0},\"s\"]",
                     .args_len = 35,
                     .bins = (sio_bin_t[]){{bin, 2}},
                     .nbins = 1,
                     .to = {.except = except, .nexcept = 1, .flags = SIO_VOLATILE},
                     .ack_timeout_ms = 1500};
    buf_t out = {0};
    assert_int_equal(rmsg_pack_bcast(&out, "uidxyz", "/chat", &b, "req123"), 0);
    rmsg_bins_t bins = {0};
    json_t *v = rmsg_unpack(out.data, out.len, &bins);
    assert_non_null(v);
    assert_int_equal(json_integer_value(json_object_get(v, "type")), 7);
    assert_string_equal(json_string_value(json_object_get(v, "requestId")), "req123");
    json_t *flags = json_object_get(json_object_get(v, "opts"), "flags");
    assert_true(json_is_true(json_object_get(flags, "volatile")));
    assert_int_equal(json_integer_value(json_object_get(flags, "timeout")), 1500);
    assert_int_equal(bins.n, 1);
    json_decref(v);
    rmsg_bins_free(&bins);
    rmsg_bcast_t m;
    assert_int_equal(rmsg_bcast_decode(out.data, out.len, &m), 0);
    assert_string_equal(m.request_id, "req123");
    assert_string_equal(m.nsp, "/chat");
    assert_true(m.b.to.flags & SIO_VOLATILE);
    assert_string_equal(m.b.to.except[0], "x");
    rmsg_bcast_free(&m);
    buf_free(&out);
    /* notepack.encode({when: new Date(Date.UTC(2026, 11, 3, 12, 0, 0, 123))}) */
    uint8_t date[32];
    size_t n = unhex("81a47768656ed7ff1d5353006b1159c0", date);
    v = rmsg_unpack(date, n, &bins);
    assert_string_equal(json_string_value(json_object_get(v, "when")), "2026-12-03T12:00:00.123Z");
    json_decref(v);
}

static void test_malformed(void **state) {
    rmsg_bins_t bins = {0};
    json_t *v;
    /* An array of 16 M elements in five bytes; a map of 4 G entries. */
    const uint8_t big_array[] = {0xdd, 0x00, 0xff, 0xff, 0xff};
    const uint8_t big_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    assert_null(rmsg_unpack(big_array, sizeof big_array, &bins));
    assert_null(rmsg_unpack(big_map, sizeof big_map, &bins));
    /* A string longer than what follows, bytes after the value, the unused 0xc1. */
    const uint8_t long_str[] = {0xd9, 0x10, 'a'};
    const uint8_t trailing[] = {0x01, 0x02};
    const uint8_t unused[] = {0xc1};
    assert_null(rmsg_unpack(long_str, sizeof long_str, &bins));
    assert_null(rmsg_unpack(trailing, sizeof trailing, &bins));
    assert_null(rmsg_unpack(unused, sizeof unused, &bins));
    /* A string that is not UTF-8 (it would reach clients in a text frame); NUL is UTF-8. */
    const uint8_t latin1[] = {0xa3, 'g', 0xe9, 'l'};
    const uint8_t with_nul[] = {0xa3, 'a', 0x00, 'b'};
    assert_null(rmsg_unpack(latin1, sizeof latin1, &bins));
    v = rmsg_unpack(with_nul, sizeof with_nul, &bins);
    assert_non_null(v);
    assert_int_equal(json_string_length(v), 3);
    json_decref(v);
    /* Nesting: at the bound it reads, one past it does not. */
    uint8_t deep[RMSG_DEPTH_MAX + 2];
    memset(deep, 0x91, sizeof deep);
    deep[RMSG_DEPTH_MAX] = 0x01;
    v = rmsg_unpack(deep, RMSG_DEPTH_MAX + 1, &bins);
    assert_non_null(v);
    json_decref(v);
    deep[RMSG_DEPTH_MAX] = 0x91;
    deep[RMSG_DEPTH_MAX + 1] = 0x01;
    assert_null(rmsg_unpack(deep, RMSG_DEPTH_MAX + 2, &bins));
    /* {"_placeholder": true, "num": 0} sent as a map would take an attachment's place. */
    uint8_t fake[64];
    size_t n = unhex("82ac5f706c616365686f6c646572c3a36e756d00", fake);
    assert_null(rmsg_unpack(fake, n, &bins));
    /* A broadcast whose packet has no data, or whose rooms are not names. */
    n = unhex("93a16183a474797065020000a36e7370a12f80", fake);
    rmsg_bcast_t m;
    assert_int_equal(rmsg_bcast_decode(fake, n, &m), -EINVAL);
    assert_int_equal(bins.n, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broadcast_both_ways),
        cmocka_unit_test(test_cluster_broadcast),
        cmocka_unit_test(test_request_and_date),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
