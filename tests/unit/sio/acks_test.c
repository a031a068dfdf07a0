/* tests/unit/sio/acks_test.c — acknowledgements: one socket's (ids, answered once,
 * timeouts, the socket closing, binary answers) and a room broadcast's, which collects
 * every recipient's answer under one id and completes when all have answered or gone, or
 * at the timeout with what arrived. */
#include <errno.h>

#include "adapter_env.h"

/* ---- acknowledgements ---- */

typedef struct {
    int calls;
    int err;
    json_t *args; /* a copy */
    sio_socket_t *socket;
    size_t nbins;
    uint8_t bin0[16]; /* the first attachment, copied */
    size_t bin0_len;
} ack_seen_t;

static void on_ack(sio_socket_t *s, int err, const sio_payload_t *p, void *arg) {
    ack_seen_t *a = arg;
    a->calls++;
    a->err = err;
    a->socket = s;
    json_decref(a->args);
    a->args = p ? json_deep_copy(p->args) : NULL;
    a->nbins = p ? p->nbins : 0;
    if (a->nbins && p->bins[0].len <= sizeof a->bin0) {
        memcpy(a->bin0, p->bins[0].data, p->bins[0].len);
        a->bin0_len = p->bins[0].len;
    }
}

/* The ack id of an EVENT the server sent: "42<id>[...". */
static long long ack_id_of(const eio_msg_t *m, const char *prefix) {
    assert_true(msg_starts(m, prefix));
    const char *p = (const char *)m->data + strlen(prefix);
    char *end;
    long long id = strtoll(p, &end, 10);
    assert_true(end > p);
    assert_int_equal(*end, '[');
    return id;
}

static void test_ack_round_trip(void **state) {
    env_t *e = *state;
    sio_socket_t *a;
    eio_session_t *sa = client_connect(e, &a);
    static ack_seen_t seen;
    seen = (ack_seen_t){0};
    json_t *args = json_pack("[i]", 1);
    sio_payload_t p = {args, NULL, 0};
    assert_int_equal(sio_socket_emit_with_ack(a, 0, "q", &p, on_ack, &seen), 0);
    json_decref(args);
    assert_int_equal(qcount(sa), 1);
    long long id = ack_id_of(qmsg(sa, 0), "42");
    char expect[64];
    snprintf(expect, sizeof expect, "42%lld[\"q\",1]", id);
    assert_msg(sa, 0, expect);
    assert_int_equal(seen.calls, 0);

    /* A second one gets another id. */
    static ack_seen_t seen2;
    seen2 = (ack_seen_t){0};
    assert_int_equal(sio_socket_emit_with_ack(a, 0, "q2", NULL, on_ack, &seen2), 0);
    long long id2 = ack_id_of(qmsg(sa, 1), "42");
    assert_true(id2 != id);

    /* An answer to an id nobody asked for is ignored. */
    char ans[64];
    snprintf(ans, sizeof ans, "3%lld[]", id + id2 + 100);
    inject(sa, ans);
    assert_int_equal(seen.calls + seen2.calls, 0);

    snprintf(ans, sizeof ans, "3%lld[\"answer\",2]", id);
    inject(sa, ans);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.err, 0);
    assert_ptr_equal(seen.socket, a);
    assert_json_is(seen.args, "[\"answer\",2]");
    assert_int_equal(seen2.calls, 0);

    /* Only once. */
    inject(sa, ans);
    assert_int_equal(seen.calls, 1);

    snprintf(ans, sizeof ans, "3%lld[]", id2);
    inject(sa, ans);
    assert_int_equal(seen2.calls, 1);
    assert_json_is(seen2.args, "[]");
    assert_null(a->acks);
    json_decref(seen.args);
    json_decref(seen2.args);
}

static void test_ack_answered_before_timeout(void **state) {
    env_t *e = *state;
    sio_socket_t *a;
    eio_session_t *sa = client_connect(e, &a);
    static ack_seen_t seen;
    seen = (ack_seen_t){0};
    assert_int_equal(sio_socket_emit_with_ack(a, 20, "q", NULL, on_ack, &seen), 0);
    char ans[64];
    snprintf(ans, sizeof ans, "3%lld[true]", ack_id_of(qmsg(sa, 0), "42"));
    inject(sa, ans);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.err, 0);
    run_for(e, 60); /* the timer must have been stopped */
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.err, 0);
    json_decref(seen.args);
}

static void test_ack_timeout(void **state) {
    env_t *e = *state;
    sio_socket_t *a;
    eio_session_t *sa = client_connect(e, &a);
    static ack_seen_t seen;
    seen = (ack_seen_t){0};
    assert_int_equal(sio_socket_emit_with_ack(a, 10, "q", NULL, on_ack, &seen), 0);
    long long id = ack_id_of(qmsg(sa, 0), "42");
    for (int i = 0; i < 400 && seen.calls == 0; i++)
        run_for(e, 5);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.err, -ETIMEDOUT);
    assert_int_equal(seen.err, -110);
    assert_null(seen.args);
    /* A late answer is dropped. */
    char ans[64];
    snprintf(ans, sizeof ans, "3%lld[1]", id);
    inject(sa, ans);
    assert_int_equal(seen.calls, 1);
    assert_true(sio_socket_connected(a));
}

static void test_ack_socket_gone(void **state) {
    env_t *e = *state;
    sio_socket_t *a;
    eio_session_t *sa = client_connect(e, &a);
    static ack_seen_t with_timer, without;
    with_timer = without = (ack_seen_t){0};
    assert_int_equal(sio_socket_emit_with_ack(a, 1000, "q", NULL, on_ack, &with_timer), 0);
    assert_int_equal(sio_socket_emit_with_ack(a, 0, "q", NULL, on_ack, &without), 0);
    eio_session_close(sa);
    assert_int_equal(with_timer.calls, 1);
    assert_int_equal(with_timer.err, -EPIPE);
    assert_int_equal(without.calls, 1);
    assert_int_equal(without.err, -EPIPE);
    run_for(e, 20);
    assert_int_equal(with_timer.calls, 1);
}

/* A binary ACK from the client: the placeholder and its buffer reach the callback. */
static void test_ack_binary_answer(void **state) {
    env_t *e = *state;
    sio_socket_t *a;
    eio_session_t *sa = client_connect(e, &a);
    static ack_seen_t seen;
    seen = (ack_seen_t){0};
    assert_int_equal(sio_socket_emit_with_ack(a, 0, "file?", NULL, on_ack, &seen), 0);
    char ans[96];
    snprintf(ans, sizeof ans, "61-%lld[{\"_placeholder\":true,\"num\":0}]",
             ack_id_of(qmsg(sa, 0), "42"));
    inject(sa, ans);
    assert_int_equal(seen.calls, 0); /* waiting for the attachment */
    static const uint8_t blob[] = {9, 0, 8, 0xff};
    inject_bin(sa, blob, sizeof blob);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.err, 0);
    assert_int_equal(seen.nbins, 1);
    assert_int_equal(seen.bin0_len, sizeof blob);
    assert_memory_equal(seen.bin0, blob, sizeof blob);
    assert_json_is(seen.args, "[{\"_placeholder\":true,\"num\":0}]");
    json_decref(seen.args);
}

typedef struct {
    int calls;
    int err;
    json_t *responses; /* a copy */
} bcast_seen_t;

static void on_bcast_ack(int err, json_t *responses, void *arg) {
    bcast_seen_t *b = arg;
    b->calls++;
    b->err = err;
    json_decref(b->responses);
    b->responses = json_deep_copy(responses);
}

static void test_room_ack_partial_timeout(void **state) {
    env_t *e = *state;
    eio_session_t *s[3];
    sio_socket_t *k[3];
    for (int i = 0; i < 3; i++) {
        s[i] = client_connect(e, &k[i]);
        sio_socket_join(k[i], "g");
    }
    client_connect(e, NULL); /* not in the room */
    const char *room = "g";
    sio_target_t to = {.rooms = &room, .nrooms = 1};
    static bcast_seen_t seen;
    seen = (bcast_seen_t){0};
    json_t *args = json_pack("[s]", "ping");
    sio_payload_t p = {args, NULL, 0};
    assert_int_equal(sio_nsp_emit_with_ack(e->root, &to, 10, "poll", &p, on_bcast_ack, &seen), 0);
    json_decref(args);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(qcount(s[i]), 1);
        assert_ptr_equal(qmsg(s[i], 0), qmsg(s[0], 0)); /* one encoding, one id for all */
    }
    long long id = ack_id_of(qmsg(s[0], 0), "42");
    char ans[64];
    snprintf(ans, sizeof ans, "3%lld[\"a\"]", id);
    inject(s[0], ans);
    snprintf(ans, sizeof ans, "3%lld[\"b\",2]", id);
    inject(s[2], ans);
    assert_int_equal(seen.calls, 0);
    for (int i = 0; i < 400 && seen.calls == 0; i++)
        run_for(e, 5);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.err, -110);
    assert_true(json_is_array(seen.responses));
    assert_int_equal(json_array_size(seen.responses), 2);
    assert_json_is(seen.responses, "[[\"a\"],[\"b\",2]]");
    /* The third answering late changes nothing. */
    snprintf(ans, sizeof ans, "3%lld[\"c\"]", id);
    inject(s[1], ans);
    run_for(e, 20);
    assert_int_equal(seen.calls, 1);
    json_decref(seen.responses);
}

static void test_room_ack_all_answer(void **state) {
    env_t *e = *state;
    eio_session_t *s[3];
    sio_socket_t *k[3];
    for (int i = 0; i < 3; i++) {
        s[i] = client_connect(e, &k[i]);
        sio_socket_join(k[i], "g");
    }
    const char *room = "g";
    sio_target_t to = {.rooms = &room, .nrooms = 1};
    static bcast_seen_t seen;
    seen = (bcast_seen_t){0};
    assert_int_equal(sio_nsp_emit_with_ack(e->root, &to, 1000, "poll", NULL, on_bcast_ack, &seen),
                     0);
    long long id = ack_id_of(qmsg(s[0], 0), "42");
    for (int i = 0; i < 3; i++) {
        char ans[64];
        snprintf(ans, sizeof ans, "3%lld[%d]", id, i);
        inject(s[i], ans);
        assert_int_equal(seen.calls, i == 2 ? 1 : 0);
    }
    assert_int_equal(seen.err, 0);
    assert_json_is(seen.responses, "[[0],[1],[2]]");
    run_for(e, 20);
    assert_int_equal(seen.calls, 1);
    json_decref(seen.responses);

    /* Nobody to ask: done at once, with no responses. */
    const char *empty = "nobody";
    sio_target_t none = {.rooms = &empty, .nrooms = 1};
    static bcast_seen_t seen2;
    seen2 = (bcast_seen_t){0};
    assert_int_equal(
        sio_nsp_emit_with_ack(e->root, &none, 1000, "poll", NULL, on_bcast_ack, &seen2), 0);
    assert_int_equal(seen2.calls, 1);
    assert_int_equal(seen2.err, 0);
    assert_json_is(seen2.responses, "[]");
    json_decref(seen2.responses);
}

/* A broadcast ack without a timeout (timeout_ms 0) whose recipient disconnects before
 * answering still completes: once, when the last outstanding recipient has answered or
 * gone, with the responses that did arrive. (Otherwise the collector and its timer would
 * outlive the server: uv_loop_close fails with EBUSY in teardown and LSan sees a leak.) */
static void test_room_ack_recipient_disconnects(void **state) {
    env_t *e = *state;
    sio_socket_t *a, *b;
    eio_session_t *sa = client_connect(e, &a);
    eio_session_t *sb = client_connect(e, &b);
    sio_socket_join(a, "g");
    sio_socket_join(b, "g");
    const char *room = "g";
    sio_target_t to = {.rooms = &room, .nrooms = 1};
    static bcast_seen_t seen;
    seen = (bcast_seen_t){0};
    assert_int_equal(sio_nsp_emit_with_ack(e->root, &to, 0, "poll", NULL, on_bcast_ack, &seen), 0);
    char ans[64];
    snprintf(ans, sizeof ans, "3%lld[1]", ack_id_of(qmsg(sa, 0), "42"));
    inject(sa, ans);
    assert_int_equal(seen.calls, 0);
    eio_session_close(sb); /* b will never answer */
    run_for(e, 20);
    assert_int_equal(seen.calls, 1);
    assert_json_is(seen.responses, "[[1]]");
    json_decref(seen.responses);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_plain, teardown)
    const struct CMUnitTest tests[] = {
        T(test_ack_round_trip),      T(test_ack_answered_before_timeout),
        T(test_ack_timeout),         T(test_ack_socket_gone),
        T(test_ack_binary_answer),   T(test_room_ack_partial_timeout),
        T(test_room_ack_all_answer), T(test_room_ack_recipient_disconnects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
