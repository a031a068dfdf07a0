/* tests/unit/sio/recovery_test.c — connection state recovery: a socket whose transport
 * drops is kept with its rooms and data, and a client coming back with its pid and last
 * offset gets the same id and the broadcasts it missed, in order; unknown pids or
 * offsets, expired sessions (the purge) and deliberate disconnects give a fresh session. */
#include <errno.h>

#include "adapter_env.h"
#include "util/time.h"

/* ---- connection state recovery ---- */

typedef struct {
    char sid[64];
    char pid[64];
} ids_t;

static ids_t connect_reply_ids(const eio_msg_t *m) {
    json_t *j = msg_json(m, "40");
    ids_t ids;
    const char *sid = json_string_value(json_object_get(j, "sid"));
    const char *pid = json_string_value(json_object_get(j, "pid"));
    assert_non_null(sid);
    assert_non_null(pid);
    snprintf(ids.sid, sizeof ids.sid, "%s", sid);
    snprintf(ids.pid, sizeof ids.pid, "%s", pid);
    json_decref(j);
    return ids;
}

/* The offset a recovery-enabled event carries as its last argument. */
static void offset_of(const eio_msg_t *m, char *out, size_t size) {
    json_t *j = msg_json(m, "42");
    assert_true(json_is_array(j));
    const char *off = json_string_value(json_array_get(j, json_array_size(j) - 1));
    assert_non_null(off);
    snprintf(out, size, "%s", off);
    json_decref(j);
}

/* A client of "/" whose CONNECT reply gave *ids, its queue emptied. */
static eio_session_t *recovering_client(env_t *e, ids_t *ids) {
    eio_session_t *s = client_new(e);
    inject(s, "0");
    *ids = connect_reply_ids(qmsg(s, 0));
    eio_session_drain(s);
    return s;
}

/* A new client that connects to "/" offering pid and offset for recovery. */
static eio_session_t *reconnect(env_t *e, const char *pid, const char *offset) {
    eio_session_t *s = client_new(e);
    char hello[256];
    snprintf(hello, sizeof hello, "0{\"pid\":\"%s\",\"offset\":\"%s\"}", pid, offset);
    inject(s, hello);
    return s;
}

/* The event name of a text event message. */
static void assert_event(const eio_msg_t *m, const char *name) {
    json_t *j = msg_json(m, "42");
    const char *got = json_string_value(json_array_get(j, 0));
    if (!got || strcmp(got, name) != 0)
        fail_msg("event %s, want %s", got ? got : "?", name);
    json_decref(j);
}

static void test_recovery_restores(void **state) {
    env_t *e = *state;
    eio_session_t *sa = client_new(e);
    inject(sa, "0");
    assert_int_equal(qcount(sa), 1);
    ids_t ids = connect_reply_ids(qmsg(sa, 0));
    sio_socket_t *a = sock_of(sa, "/");
    assert_string_equal(ids.sid, sio_socket_id(a));
    assert_string_not_equal(ids.pid, ids.sid);
    assert_int_equal(strlen(ids.pid), RAND_ID_SIZE - 1); /* held past the socket's id */
    eio_session_drain(sa);
    sio_socket_join(a, "r1");
    sio_socket_join(a, "r2");
    json_object_set_new(sio_socket_data(a), "user", json_string("ann"));
    sio_socket_t *b;
    eio_session_t *sb = client_connect(e, &b);
    sio_socket_join(b, "r1");

    /* Broadcasts carry an offset as their last argument. */
    const char *r1 = "r1", *r2 = "r2", *r3 = "r3";
    sio_target_t to_r1 = {.rooms = &r1, .nrooms = 1};
    assert_int_equal(sio_nsp_emit_json(e->root, &to_r1, "e1", "[1]", 3), 0);
    assert_int_equal(qcount(sa), 1);
    char off1[32];
    offset_of(qmsg(sa, 0), off1, sizeof off1);
    json_t *j = msg_json(qmsg(sa, 0), "42");
    assert_int_equal(json_array_size(j), 3); /* "e1", 1, offset */
    assert_int_equal(json_integer_value(json_array_get(j, 1)), 1);
    json_decref(j);
    assert_ptr_equal(qmsg(sa, 0), qmsg(sb, 0));

    /* The transport drops: the session is kept. */
    eio_session_close_reason(sa, "transport close");
    sio_stats_t st;
    sio_server_stats(e->io, &st);
    assert_int_equal(st.recovery_sessions, 1);
    assert_int_equal(st.sockets, 1);
    assert_int_equal(sio_nsp_room_size(e->root, "r2"), 0);

    /* What happens while it is away. */
    sio_target_t to_r3 = {.rooms = &r3, .nrooms = 1};
    sio_target_t to_r2_except_r1 = {.rooms = &r2, .nrooms = 1, .except = &r1, .nexcept = 1};
    sio_target_t to_r1_volatile = {.rooms = &r1, .nrooms = 1, .flags = SIO_VOLATILE};
    const char *own = ids.sid;
    sio_target_t to_own = {.rooms = &own, .nrooms = 1};
    assert_int_equal(sio_nsp_emit_json(e->root, &to_r1, "e2", "[2]", 3), 0); /* wanted */
    assert_int_equal(sio_nsp_emit_json(e->root, &to_r3, "e3", "[3]", 3), 0); /* not its room */
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "e4", "[4]", 3), 0);   /* everyone */
    assert_int_equal(sio_nsp_emit_json(e->root, &to_r2_except_r1, "e5", "[5]", 3), 0); /* no */
    assert_int_equal(sio_nsp_emit_json(e->root, &to_r1_volatile, "e6", "[6]", 3), 0);  /* no */
    assert_int_equal(sio_nsp_emit_json(e->root, &to_own, "e7", "[7]", 3), 0); /* its own room */
    assert_int_equal(sio_socket_emit_json(b, "e8", "[8]", 3, 0), 0);          /* to b alone: no */
    sio_server_stats(e->io, &st);
    assert_true(st.recovery_packets >= 6);

    /* Back on a new connection with its pid and last offset. */
    eio_session_t *sa2 = reconnect(e, ids.pid, off1);
    sio_socket_t *a2 = sock_of(sa2, "/");
    assert_non_null(a2);
    assert_true(sio_socket_recovered(a2));
    assert_int_equal(qcount(sa2), 4);
    ids_t again = connect_reply_ids(qmsg(sa2, 0));
    assert_string_equal(again.sid, ids.sid);
    assert_string_equal(again.pid, ids.pid);
    assert_string_equal(sio_socket_id(a2), ids.sid);
    assert_event(qmsg(sa2, 1), "e2");
    assert_event(qmsg(sa2, 2), "e4");
    assert_event(qmsg(sa2, 3), "e7");
    /* The offsets go up, in order. */
    char o2[32], o4[32], o7[32];
    offset_of(qmsg(sa2, 1), o2, sizeof o2);
    offset_of(qmsg(sa2, 2), o4, sizeof o4);
    offset_of(qmsg(sa2, 3), o7, sizeof o7);
    assert_true(strtoull(off1, NULL, 10) < strtoull(o2, NULL, 10));
    assert_true(strtoull(o2, NULL, 10) < strtoull(o4, NULL, 10));
    assert_true(strtoull(o4, NULL, 10) < strtoull(o7, NULL, 10));
    /* Its rooms and data are back, and the session is used up. */
    assert_true(sio_socket_in(a2, "r1"));
    assert_true(sio_socket_in(a2, "r2"));
    assert_true(sio_socket_in(a2, ids.sid));
    assert_int_equal(sio_nsp_room_size(e->root, "r1"), 2);
    assert_int_equal(sio_nsp_room_size(e->root, "r2"), 1);
    assert_int_equal(sio_nsp_room_size(e->root, ids.sid), 1);
    assert_string_equal(json_string_value(json_object_get(sio_socket_data(a2), "user")), "ann");
    assert_rooms_consistent(e->root);
    sio_server_stats(e->io, &st);
    assert_int_equal(st.recovery_sessions, 0);
    assert_int_equal(st.sockets, 2);

    /* Live again: broadcasts to r2 reach it. */
    eio_session_drain(sa2);
    sio_target_t to_r2 = {.rooms = &r2, .nrooms = 1};
    assert_int_equal(sio_nsp_emit_json(e->root, &to_r2, "e9", "[]", 2), 0);
    assert_int_equal(qcount(sa2), 1);
    assert_event(qmsg(sa2, 0), "e9");

    /* The pid cannot be used twice. */
    eio_session_t *sa3 = reconnect(e, ids.pid, off1);
    assert_int_equal(qcount(sa3), 1);
    ids_t third = connect_reply_ids(qmsg(sa3, 0));
    assert_string_not_equal(third.sid, ids.sid);
    assert_false(sio_socket_recovered(sock_of(sa3, "/")));
}

static void test_recovery_unknown_offset(void **state) {
    env_t *e = *state;
    ids_t ids;
    eio_session_t *sa = recovering_client(e, &ids);
    sio_socket_join(sock_of(sa, "/"), "r1");
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "e1", "[]", 2), 0);
    char off1[32];
    offset_of(qmsg(sa, 0), off1, sizeof off1);
    eio_session_close_reason(sa, "transport close");
    sio_stats_t st;
    sio_server_stats(e->io, &st);
    assert_int_equal(st.recovery_sessions, 1);

    /* An offset the log never had: a fresh session (and the stored one is gone). */
    eio_session_t *sb = reconnect(e, ids.pid, "999999");
    assert_int_equal(qcount(sb), 1);
    ids_t fresh = connect_reply_ids(qmsg(sb, 0));
    assert_string_not_equal(fresh.sid, ids.sid);
    assert_string_not_equal(fresh.pid, ids.pid);
    sio_socket_t *b = sock_of(sb, "/");
    assert_false(sio_socket_recovered(b));
    assert_false(sio_socket_in(b, "r1"));
    assert_int_equal(sio_nsp_room_size(e->root, "r1"), 0);
    sio_server_stats(e->io, &st);
    assert_int_equal(st.recovery_sessions, 0);

    /* An unknown pid, and an offset that is not a number: fresh too. */
    eio_session_t *sc = client_new(e);
    inject(sc, "0{\"pid\":\"nobody\",\"offset\":\"1\"}");
    assert_int_equal(qcount(sc), 1);
    assert_false(sio_socket_recovered(sock_of(sc, "/")));
    eio_session_close_reason(sb, "transport close");
    eio_session_t *sd = reconnect(e, fresh.pid, "x1");
    assert_int_equal(qcount(sd), 1);
    assert_false(sio_socket_recovered(sock_of(sd, "/")));
}

static void test_recovery_nothing_missed(void **state) {
    env_t *e = *state;
    ids_t ids;
    eio_session_t *sa = recovering_client(e, &ids);
    sio_socket_join(sock_of(sa, "/"), "r1");
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "e1", "[]", 2), 0);
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "e2", "[]", 2), 0);
    char off2[32];
    offset_of(qmsg(sa, 1), off2, sizeof off2);
    eio_session_close_reason(sa, "ping timeout");
    eio_session_t *sb = reconnect(e, ids.pid, off2);
    assert_int_equal(qcount(sb), 1); /* the CONNECT reply only */
    ids_t again = connect_reply_ids(qmsg(sb, 0));
    assert_string_equal(again.sid, ids.sid);
    assert_true(sio_socket_recovered(sock_of(sb, "/")));
    assert_true(sio_socket_in(sock_of(sb, "/"), "r1"));
}

/* Old sessions and log entries are dropped by the purge; a pid after that gets a fresh
 * session. */
static void test_recovery_purge(void **state) {
    env_t *e = *state;
    ids_t ids;
    eio_session_t *sa = recovering_client(e, &ids);
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "e1", "[]", 2), 0);
    char off1[32];
    offset_of(qmsg(sa, 0), off1, sizeof off1);
    eio_session_close_reason(sa, "transport close");
    sio_stats_t st;
    sio_server_stats(e->io, &st);
    assert_int_equal(st.recovery_sessions, 1);
    assert_int_equal(st.recovery_packets, 1);
    /* Not yet expired: nothing goes. */
    e->root->adapter->ops->purge(e->root->adapter, time_mono_ms());
    sio_server_stats(e->io, &st);
    assert_int_equal(st.recovery_sessions, 1);
    assert_int_equal(st.recovery_packets, 1);
    /* Past the maximum disconnection duration. */
    e->root->adapter->ops->purge(e->root->adapter,
                                 time_mono_ms() + e->io->cfg.recovery_max_disconnection + 1000);
    sio_server_stats(e->io, &st);
    assert_int_equal(st.recovery_sessions, 0);
    assert_int_equal(st.recovery_packets, 0);
    eio_session_t *sb = reconnect(e, ids.pid, off1);
    assert_int_equal(qcount(sb), 1);
    ids_t fresh = connect_reply_ids(qmsg(sb, 0));
    assert_string_not_equal(fresh.sid, ids.sid);
    assert_false(sio_socket_recovered(sock_of(sb, "/")));
}

/* An emit that fails to encode (text that is not an array: -EINVAL) does not use up a
 * recovery offset, so the log's offsets stay consecutive, as sio_adapter_restore assumes
 * when it finds an entry by subtraction: the client whose last packet was e2 gets e3. */
static void test_recovery_offsets_survive_failed_emit(void **state) {
    env_t *e = *state;
    ids_t ids;
    eio_session_t *sa = recovering_client(e, &ids);
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "e1", "[]", 2), 0);
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "bad", "{}", 2), -EINVAL);
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "e2", "[]", 2), 0);
    assert_int_equal(qcount(sa), 2);
    char off2[32];
    offset_of(qmsg(sa, 1), off2, sizeof off2);
    eio_session_close_reason(sa, "transport close");
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "e3", "[]", 2), 0);
    eio_session_t *sb = reconnect(e, ids.pid, off2);
    assert_true(sio_socket_recovered(sock_of(sb, "/")));
    assert_int_equal(qcount(sb), 2); /* CONNECT, then e3 */
    assert_event(qmsg(sb, 1), "e3");
}

static void test_recovery_not_after_client_leaves(void **state) {
    env_t *e = *state;
    eio_session_t *sa = client_new(e);
    inject(sa, "0");
    eio_session_drain(sa);
    inject(sa, "1"); /* the client disconnects on purpose: nothing to keep */
    sio_stats_t st;
    sio_server_stats(e->io, &st);
    assert_int_equal(st.recovery_sessions, 0);
    assert_int_equal(st.sockets, 0);
    /* A namespace-level server disconnect is not kept either. */
    sio_socket_t *b;
    client_connect(e, &b);
    sio_socket_disconnect(b, false);
    sio_server_stats(e->io, &st);
    assert_int_equal(st.recovery_sessions, 0);
}

int main(void) {
#define TR(fn) cmocka_unit_test_setup_teardown(fn, setup_recovery, teardown)
    const struct CMUnitTest tests[] = {
        TR(test_recovery_restores),
        TR(test_recovery_unknown_offset),
        TR(test_recovery_not_after_client_leaves),
        TR(test_recovery_nothing_missed),
        TR(test_recovery_purge),
        TR(test_recovery_offsets_survive_failed_emit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
