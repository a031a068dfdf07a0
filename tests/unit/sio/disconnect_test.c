/* tests/unit/sio/disconnect_test.c — a socket going away: the disconnect handler runs
 * while it is still in its rooms, then it leaves all of them (client close, client
 * namespace disconnect, server disconnect, disconnecting every socket of a room), and a
 * client that never reads is closed once too much waits for it. */
#include "adapter_env.h"

/* ---- disconnecting ---- */

typedef struct {
    int calls;
    bool was_in_r1;
    size_t r1_size;
    char reason[64];
} disc_seen_t;

static void on_disc(sio_socket_t *s, const char *reason, void *arg) {
    disc_seen_t *d = arg;
    d->calls++;
    d->was_in_r1 = sio_socket_in(s, "r1");
    d->r1_size = sio_nsp_room_size(sio_socket_nsp(s), "r1");
    snprintf(d->reason, sizeof d->reason, "%s", reason);
}

static void test_disconnect_leaves_all_rooms(void **state) {
    env_t *e = *state;
    static disc_seen_t seen;
    seen = (disc_seen_t){0};
    assert_int_equal(sio_nsp_on_disconnect(e->root, on_disc, &seen), 0);
    sio_socket_t *a, *b, *c;
    eio_session_t *sa = client_connect(e, &a);
    eio_session_t *sb = client_connect(e, &b);
    client_connect(e, &c);
    char a_id[RAND_ID_SIZE];
    snprintf(a_id, sizeof a_id, "%s", sio_socket_id(a));
    sio_socket_join(a, "r1");
    sio_socket_join(a, "r2");
    sio_socket_join(a, "r3");
    sio_socket_join(b, "r3"); /* b after a in r3: b moves into a's place */
    sio_socket_join(c, "r2");
    sio_socket_join(b, "r2");
    assert_int_equal(sio_nsp_socket_count(e->root), 3);

    eio_session_close(sa);
    assert_int_equal(seen.calls, 1);
    assert_string_equal(seen.reason, "forced close");
    assert_true(seen.was_in_r1); /* handlers run while still in the rooms */
    assert_int_equal(seen.r1_size, 1);

    assert_int_equal(sio_nsp_socket_count(e->root), 2);
    assert_int_equal(sio_nsp_room_size(e->root, "r1"), 0);
    assert_null(map_get(&e->root->rooms, "r1", 2));
    assert_int_equal(sio_nsp_room_size(e->root, a_id), 0);
    assert_null(map_get(&e->root->rooms, a_id, strlen(a_id)));
    assert_null(map_get(&e->root->by_id, a_id, strlen(a_id)));
    assert_int_equal(sio_nsp_room_size(e->root, "r2"), 2);
    assert_int_equal(sio_nsp_room_size(e->root, "r3"), 1);
    assert_rooms_consistent(e->root);
    sio_stats_t st;
    sio_server_stats(e->io, &st);
    assert_int_equal(st.sockets, 2);
    assert_int_equal(st.clients, 2);
    assert_int_equal(st.recovery_sessions, 0); /* recovery is off */

    /* Broadcasts still reach the others, once. */
    const char *rooms[] = {"r2", "r3"};
    sio_target_t to = {.rooms = rooms, .nrooms = 2};
    assert_int_equal(sio_nsp_emit_json(e->root, &to, "after", "[]", 2), 0);
    assert_int_equal(qcount(sb), 1);

    /* The client leaving the namespace only ("1"): same clean-up, the session stays. */
    inject(sb, "1");
    assert_int_equal(seen.calls, 2);
    assert_string_equal(seen.reason, "client namespace disconnect");
    assert_null(sock_of(sb, "/"));
    assert_int_equal(sio_nsp_room_size(e->root, "r3"), 0);
    assert_int_equal(sio_nsp_room_size(e->root, "r2"), 1);
    assert_rooms_consistent(e->root);
    sio_server_stats(e->io, &st);
    assert_int_equal(st.clients, 2);
    assert_int_equal(st.sockets, 1);
}

static void test_disconnect_sockets_in_room(void **state) {
    env_t *e = *state;
    static disc_seen_t seen;
    seen = (disc_seen_t){0};
    assert_int_equal(sio_nsp_on_disconnect(e->root, on_disc, &seen), 0);
    sio_socket_t *a, *b, *c;
    eio_session_t *sa = client_connect(e, &a);
    eio_session_t *sb = client_connect(e, &b);
    eio_session_t *sc = client_connect(e, &c);
    sio_socket_join(a, "kick");
    sio_socket_join(b, "kick");
    sio_socket_join(a, "r1");
    sio_socket_join(c, "r1");
    const char *kick = "kick";
    sio_target_t which = {.rooms = &kick, .nrooms = 1};
    /* The room is emptied while it is being walked. */
    assert_int_equal(sio_nsp_disconnect_sockets(e->root, &which, false), 0);
    assert_int_equal(seen.calls, 2);
    assert_string_equal(seen.reason, "server namespace disconnect");
    assert_msg(sa, 0, "41");
    assert_msg(sb, 0, "41");
    assert_int_equal(qcount(sc), 0);
    assert_int_equal(sio_nsp_socket_count(e->root), 1);
    assert_int_equal(sio_nsp_room_size(e->root, "kick"), 0);
    assert_int_equal(sio_nsp_room_size(e->root, "r1"), 1);
    assert_rooms_consistent(e->root);
    sio_stats_t st;
    sio_server_stats(e->io, &st);
    assert_int_equal(st.clients, 3); /* the connections stay */

    /* close = true ends the connections too. */
    const char *r1 = "r1";
    sio_target_t in_r1 = {.rooms = &r1, .nrooms = 1};
    assert_int_equal(sio_nsp_disconnect_sockets(e->root, &in_r1, true), 0);
    assert_int_equal(seen.calls, 3);
    assert_int_equal(sio_nsp_socket_count(e->root), 0);
    sio_server_stats(e->io, &st);
    assert_int_equal(st.clients, 2);
    assert_int_equal(st.sockets, 0);
    assert_int_equal(e->root->rooms.count, 0);
}

/* A client that never reads is closed once SIO_SLOW_CLIENT_FACTOR x backpressure_bytes
 * are waiting for it; the others keep receiving. */
static void test_slow_consumer_closed(void **state) {
    env_t *e = *state;
    static disc_seen_t seen;
    seen = (disc_seen_t){0};
    assert_int_equal(sio_nsp_on_disconnect(e->root, on_disc, &seen), 0);
    sio_socket_t *slow, *fast;
    client_connect(e, &slow);
    eio_session_t *sf = client_connect(e, &fast);
    enum { CHUNK = 200000 };
    char *args = malloc(CHUNK + 5);
    assert_non_null(args);
    args[0] = '[';
    args[1] = '"';
    memset(args + 2, 'z', CHUNK);
    memcpy(args + 2 + CHUNK, "\"]", 3);
    size_t limit = SIO_SLOW_CLIENT_FACTOR * e->io->cfg.backpressure_bytes;
    size_t sent = 0;
    int rounds = 0;
    while (sio_nsp_socket_count(e->root) == 2 && rounds < 100) {
        assert_int_equal(sio_nsp_emit_json(e->root, NULL, "big", args, CHUNK + 4), 0);
        sent += CHUNK;
        rounds++;
        assert_int_equal(qcount(sf), 1);
        eio_session_drain(sf);
    }
    free(args);
    assert_int_equal(sio_nsp_socket_count(e->root), 1);
    assert_int_equal(seen.calls, 1);
    assert_string_equal(seen.reason, "transport error");
    assert_true(sent > limit);
    assert_true(sent - CHUNK <= limit + CHUNK); /* not long after the limit */
    sio_stats_t st;
    sio_server_stats(e->io, &st);
    assert_int_equal(st.clients, 1);
    assert_true(sio_socket_connected(fast));
}

static void test_server_disconnect(void **state) {
    env_t *e = *state;
    sio_socket_t *a;
    eio_session_t *sa = client_connect(e, &a);
    sio_socket_join(a, "r");
    sio_socket_disconnect(a, false);
    assert_int_equal(qcount(sa), 1);
    assert_msg(sa, 0, "41");
    assert_null(sock_of(sa, "/"));
    assert_int_equal(sio_nsp_room_size(e->root, "r"), 0);
    assert_int_equal(sio_nsp_socket_count(e->root), 0);
    assert_rooms_consistent(e->root);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_plain, teardown)
    const struct CMUnitTest tests[] = {
        T(test_disconnect_leaves_all_rooms),
        T(test_disconnect_sockets_in_room),
        T(test_slow_consumer_closed),
        T(test_server_disconnect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
