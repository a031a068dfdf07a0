/* tests/fuzz/cluster_proto_fuzz.c — libFuzzer target for cluster/wire.c and proto.c.
 *
 * The input, measured with wire_frame_size as a channel would, is decoded as a BCAST or
 * ROOMS frame from an exact-size heap copy (ASan sees any read past it). When it
 * decodes, it is encoded again and that is decoded and encoded once more: the two
 * encodings must be byte for byte the same (encoding is a fixed point) and the decoded
 * fields the same. Any mismatch aborts.
 *
 * A frame of any other type is read as a recovery session (what a RESTORE request is
 * answered with): when it decodes, its encoding decodes again, and encoding that gives
 * the same bytes. */
#include <stdlib.h>
#include <string.h>

#include "cluster/proto.h"
#include "sio/internal.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static int encode(const proto_msg_t *m, uint8_t type, buf_t *out) {
    if (type == PROTO_BCAST)
        return proto_bcast_encode(out, m->nsp, &m->b);
    return proto_rooms_encode(out, m->nsp, m->op, &m->b.to, m->room, m->close);
}

static void same_target(const sio_target_t *a, const sio_target_t *b) {
    CHECK(a->nrooms == b->nrooms && a->nexcept == b->nexcept && a->flags == b->flags);
    for (size_t i = 0; i < a->nrooms; i++)
        CHECK(strcmp(a->rooms[i], b->rooms[i]) == 0);
    for (size_t i = 0; i < a->nexcept; i++)
        CHECK(strcmp(a->except[i], b->except[i]) == 0);
}

static void session_round_trip(const uint8_t *frame, size_t size) {
    wire_reader_t r;
    wire_reader_init(&r, frame, size);
    sio_session_t *ss;
    sio_logged_t **missed;
    size_t n;
    if (proto_session_decode(&r, 1000000, &ss, &missed, &n) || !ss)
        return;
    buf_t once = {0}, twice = {0};
    CHECK(proto_session_encode(&once, ss, 1000000, missed, n) == 0);
    sio_session_t *again;
    sio_logged_t **missed_again;
    size_t n_again;
    wire_reader_t r2 = {once.data, once.data + once.len, 0, false};
    CHECK(proto_session_decode(&r2, 1000000, &again, &missed_again, &n_again) == 0 && again);
    CHECK(n_again == n && strcmp(again->pid, ss->pid) == 0 && again->nrooms == ss->nrooms);
    CHECK(proto_session_encode(&twice, again, 1000000, missed_again, n_again) == 0);
    CHECK(once.len == twice.len && memcmp(once.data, twice.data, once.len) == 0);
    proto_missed_free(missed, n);
    proto_missed_free(missed_again, n_again);
    sio_session_free(ss);
    sio_session_free(again);
    buf_free(&once);
    buf_free(&twice);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long n = wire_frame_size(data, size);
    if (n <= 0)
        return 0;
    uint8_t *frame = malloc((size_t)n);
    if (!frame)
        return 0;
    memcpy(frame, data, (size_t)n);
    if (frame[4] != PROTO_BCAST && frame[4] != PROTO_ROOMS)
        session_round_trip(frame, (size_t)n);
    proto_msg_t m;
    if (proto_msg_decode(frame, (size_t)n, &m) == 0) {
        uint8_t type = frame[4];
        buf_t once = {0}, twice = {0};
        proto_msg_t again;
        CHECK(encode(&m, type, &once) == 0);
        CHECK(wire_frame_size(once.data, once.len) == (long)once.len);
        CHECK(proto_msg_decode(once.data, once.len, &again) == 0);
        CHECK(strcmp(m.nsp, again.nsp) == 0);
        same_target(&m.b.to, &again.b.to);
        if (type == PROTO_BCAST) {
            CHECK(strcmp(m.b.event, again.b.event) == 0 && m.b.args_len == again.b.args_len &&
                  m.b.nbins == again.b.nbins);
            CHECK(m.b.args_len == 0 || memcmp(m.b.args_json, again.b.args_json, m.b.args_len) == 0);
        } else {
            CHECK(m.op == again.op && strcmp(m.room, again.room) == 0 && m.close == again.close);
        }
        CHECK(encode(&again, type, &twice) == 0);
        CHECK(once.len == twice.len && memcmp(once.data, twice.data, once.len) == 0);
        proto_msg_free(&again);
        proto_msg_free(&m);
        buf_free(&once);
        buf_free(&twice);
    }
    free(frame);
    return 0;
}
