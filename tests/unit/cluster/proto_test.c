/* tests/unit/cluster/proto_test.c — the frames workers exchange (cluster/wire.c, proto.c).
 *
 * A broadcast (rooms, except rooms, flags, binary attachments) and each room operation
 * come back from their frame as they went in; a frame is measured as whole only once all
 * its bytes are there; and malformed frames are refused without reading past them: cut
 * short, trailing bytes, a count over the limit, a NUL inside a room name, an unknown
 * type. A recovery session lent to another worker comes back with its rooms, data, age
 * and missed packets (text and binary messages), and a packet count past the frame is
 * refused before anything is allocated for it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/proto.h"
#include "eio/packet.h"
#include "sio/internal.h"

static void test_bcast_round_trip(void **state) {
    const char *rooms[] = {"a", "b b"};
    const char *except[] = {"x"};
    const uint8_t bin1[] = {0, 1, 2};
    const sio_bin_t bins[] = {{bin1, sizeof bin1}, {(const uint8_t *)"", 0}};
    sio_bcast_t b = {
        "news",
        "[1,{\"_placeholder\":true,\"num\":0}]",
        33,
        bins,
        2,
        {.rooms = rooms, .nrooms = 2, .except = except, .nexcept = 1, .flags = SIO_VOLATILE},
        false,
        0};
    buf_t f = {0};
    assert_int_equal(proto_bcast_encode(&f, "/chat", &b), 0);
    assert_int_equal(wire_frame_size(f.data, f.len), (long)f.len);
    assert_int_equal(wire_frame_size(f.data, f.len - 1), 0);
    proto_msg_t m;
    assert_int_equal(proto_msg_decode(f.data, f.len, &m), 0);
    assert_string_equal(m.nsp, "/chat");
    assert_string_equal(m.b.event, "news");
    assert_int_equal(m.b.args_len, 33);
    assert_memory_equal(m.b.args_json, b.args_json, 33);
    assert_int_equal(m.b.nbins, 2);
    assert_int_equal(m.b.bins[0].len, 3);
    assert_memory_equal(m.b.bins[0].data, bin1, 3);
    assert_int_equal(m.b.bins[1].len, 0);
    assert_int_equal(m.b.to.nrooms, 2);
    assert_string_equal(m.b.to.rooms[1], "b b");
    assert_int_equal(m.b.to.nexcept, 1);
    assert_string_equal(m.b.to.except[0], "x");
    assert_int_equal(m.b.to.flags, SIO_VOLATILE);
    proto_msg_free(&m);
    buf_free(&f);
}

static void test_rooms_round_trip(void **state) {
    const char *rooms[] = {"r"};
    sio_target_t which = {.rooms = rooms, .nrooms = 1};
    buf_t f = {0};
    assert_int_equal(proto_rooms_encode(&f, "/", PROTO_ROOMS_DISCONNECT, &which, NULL, true), 0);
    proto_msg_t m;
    assert_int_equal(proto_msg_decode(f.data, f.len, &m), 0);
    assert_int_equal(m.op, PROTO_ROOMS_DISCONNECT);
    assert_true(m.close);
    assert_string_equal(m.room, "");
    assert_string_equal(m.b.to.rooms[0], "r");
    proto_msg_free(&m);
    buf_free(&f);
    assert_int_equal(proto_rooms_encode(&f, "/", PROTO_ROOMS_JOIN, NULL, "room 2", false), 0);
    assert_int_equal(proto_msg_decode(f.data, f.len, &m), 0);
    assert_int_equal(m.op, PROTO_ROOMS_JOIN);
    assert_string_equal(m.room, "room 2");
    assert_int_equal(m.b.to.nrooms, 0);
    proto_msg_free(&m);
    buf_free(&f);
}

static void test_malformed_frames(void **state) {
    sio_bcast_t b = {"e", "[]", 2, NULL, 0, {0}, false, 0};
    buf_t f = {0};
    assert_int_equal(proto_bcast_encode(&f, "/", &b), 0);
    proto_msg_t m;
    /* Every cut: measured as incomplete, and refused when decoded as if whole. */
    for (size_t cut = 0; cut < f.len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, f.data, cut);
        assert_int_equal(wire_frame_size(copy, cut), 0);
        assert_int_equal(proto_msg_decode(copy, cut, &m), -EINVAL);
        free(copy);
    }
    /* A trailing byte (the length says it belongs to the frame). */
    buf_t g = {0};
    assert_int_equal(buf_append(&g, f.data, f.len), 0);
    assert_int_equal(buf_append(&g, "!", 1), 0);
    g.data[3]++;
    assert_int_equal(proto_msg_decode(g.data, g.len, &m), -EINVAL);
    buf_free(&g);
    /* An unknown type. */
    f.data[4] = 99;
    assert_int_equal(proto_msg_decode(f.data, f.len, &m), -EINVAL);
    buf_free(&f);
    /* A room count over the limit. */
    size_t start;
    assert_int_equal(wire_begin(&f, PROTO_ROOMS, &start), 0);
    wire_str(&f, "/");
    wire_u8(&f, PROTO_ROOMS_JOIN);
    wire_u32(&f, PROTO_ROOMS_MAX + 1);
    wire_end(&f, start);
    assert_int_equal(proto_msg_decode(f.data, f.len, &m), -EINVAL);
    buf_free(&f);
    /* A NUL inside a room name. */
    const char *rooms[] = {"ab"};
    sio_target_t which = {.rooms = rooms, .nrooms = 1};
    assert_int_equal(proto_rooms_encode(&f, "/", PROTO_ROOMS_LEAVE, &which, "r", false), 0);
    uint8_t *p = memmem(f.data, f.len, "ab", 2);
    p[1] = '\0';
    assert_int_equal(proto_msg_decode(f.data, f.len, &m), -EINVAL);
    buf_free(&f);
    /* A length over the frame limit. */
    const uint8_t huge[5] = {0xff, 0xff, 0xff, 0xff, PROTO_BCAST};
    assert_int_equal(wire_frame_size(huge, sizeof huge), -1);
}

static void test_session_round_trip(void **state) {
    char *rooms[] = {"own-id", "room 1"};
    sio_session_t ss = {.pid = "Bpid", .sid = "Bsid", .rooms = rooms, .nrooms = 2};
    ss.data = json_pack("{s:s}", "user", "u1");
    ss.disconnected_ms = 9000;
    eio_msg_t *text = eio_msg_new(EIO_MESSAGE, false, "2[\"m\",1]", 9);
    eio_msg_t *bin = eio_msg_new(EIO_MESSAGE, true, "\x01\x02", 2);
    eio_msg_t *msgs[] = {text, bin};
    sio_logged_t e = {.msgs = msgs, .nmsgs = 2};
    sio_logged_t *missed[] = {&e};
    buf_t f = {0};
    assert_int_equal(proto_session_encode(&f, &ss, 10000, missed, 1), 0);
    wire_reader_t r = {f.data, f.data + f.len, 0, false};
    sio_session_t *got;
    sio_logged_t **got_missed;
    size_t n;
    /* Read on a clock 5 s later: the age (1 s) is kept, not the other process's clock. */
    assert_int_equal(proto_session_decode(&r, 15000, &got, &got_missed, &n), 0);
    assert_non_null(got);
    assert_string_equal(got->pid, "Bpid");
    assert_string_equal(got->sid, "Bsid");
    assert_int_equal(got->nrooms, 2);
    assert_string_equal(got->rooms[1], "room 1");
    assert_true(json_equal(got->data, ss.data));
    assert_int_equal(got->disconnected_ms, 14000);
    assert_int_equal(n, 1);
    assert_int_equal(got_missed[0]->nmsgs, 2);
    assert_int_equal(got_missed[0]->msgs[0]->len, text->len);
    assert_memory_equal(got_missed[0]->msgs[0]->data, text->data, text->len);
    assert_true(got_missed[0]->msgs[1]->binary);
    assert_memory_equal(got_missed[0]->msgs[1]->data, "\x01\x02", 2);
    proto_missed_free(got_missed, n);
    sio_session_free(got);
    /* Cut anywhere, it is refused. */
    for (size_t cut = 0; cut < f.len; cut++) {
        wire_reader_t rc = {f.data, f.data + cut, 0, false};
        assert_int_equal(proto_session_decode(&rc, 15000, &got, &got_missed, &n), -EINVAL);
        assert_null(got);
    }
    buf_free(&f);
    /* "None", and a packet count no frame could hold. */
    assert_int_equal(proto_session_encode(&f, NULL, 0, NULL, 0), 0);
    wire_reader_t none = {f.data, f.data + f.len, 0, false};
    assert_int_equal(proto_session_decode(&none, 0, &got, &got_missed, &n), 0);
    assert_null(got);
    buf_free(&f);
    ss.nrooms = 0;
    assert_int_equal(proto_session_encode(&f, &ss, 0, NULL, 0), 0);
    f.len -= 4;
    wire_u32(&f, 0x7fffffff);
    wire_reader_t lie = {f.data, f.data + f.len, 0, false};
    assert_int_equal(proto_session_decode(&lie, 0, &got, &got_missed, &n), -EINVAL);
    buf_free(&f);
    eio_msg_release(text);
    eio_msg_release(bin);
    json_decref(ss.data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bcast_round_trip),
        cmocka_unit_test(test_rooms_round_trip),
        cmocka_unit_test(test_malformed_frames),
        cmocka_unit_test(test_session_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
