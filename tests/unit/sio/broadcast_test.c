/* tests/unit/sio/broadcast_test.c — broadcasting: to rooms (each recipient once, however
 * many of the rooms it is in), with exceptions and socket.broadcast, namespace- and
 * server-wide, and the encode-once promise: every recipient queues the same
 * reference-counted eio_msg_t, binary attachments included; a recipient that must be
 * closed is closed after every recipient has its copy. */
#include "adapter_env.h"

/* ---- broadcasting ---- */

static void test_broadcast_dedupes(void **state) {
    env_t *e = *state;
    sio_socket_t *a, *b, *c, *d;
    eio_session_t *sa = client_connect(e, &a);
    eio_session_t *sb = client_connect(e, &b);
    eio_session_t *sc = client_connect(e, &c);
    eio_session_t *sd = client_connect(e, &d);
    sio_socket_join(a, "r1");
    sio_socket_join(a, "r2");
    sio_socket_join(a, "r3");
    sio_socket_join(b, "r2");
    sio_socket_join(b, "r3");
    sio_socket_join(c, "r4");
    const char *to_rooms[] = {"r1", "r2", "r3", "r2"}; /* r2 named twice, too */
    sio_target_t to = {.rooms = to_rooms, .nrooms = 4};
    assert_int_equal(sio_nsp_emit_json(e->root, &to, "ev", "[1,\"two\"]", 9), 0);
    assert_int_equal(qcount(sa), 1);
    assert_int_equal(qcount(sb), 1);
    assert_int_equal(qcount(sc), 0);
    assert_int_equal(qcount(sd), 0);
    assert_msg(sa, 0, "42[\"ev\",1,\"two\"]");
    assert_ptr_equal(qmsg(sa, 0), qmsg(sb, 0));

    /* A room that does not exist reaches nobody and creates nothing. */
    const char *ghost = "ghost";
    sio_target_t to_ghost = {.rooms = &ghost, .nrooms = 1};
    assert_int_equal(sio_nsp_emit_json(e->root, &to_ghost, "ev", "[]", 2), 0);
    assert_int_equal(qcount(sa) + qcount(sb) + qcount(sc) + qcount(sd), 2);
    assert_int_equal(sio_nsp_room_size(e->root, "ghost"), 0);
    assert_null(map_get(&e->root->rooms, "ghost", 5));
}

static void test_broadcast_except(void **state) {
    env_t *e = *state;
    sio_socket_t *a, *b, *c, *d;
    eio_session_t *sa = client_connect(e, &a);
    eio_session_t *sb = client_connect(e, &b);
    eio_session_t *sc = client_connect(e, &c);
    eio_session_t *sd = client_connect(e, &d);
    sio_socket_join(a, "r1");
    sio_socket_join(a, "r2");
    sio_socket_join(b, "r2");
    sio_socket_join(c, "r3");
    /* In r2, except r1: b only (a is in both). */
    const char *r2 = "r2", *r1 = "r1";
    sio_target_t to = {.rooms = &r2, .nrooms = 1, .except = &r1, .nexcept = 1};
    assert_int_equal(sio_nsp_emit_json(e->root, &to, "x", "[]", 2), 0);
    assert_int_equal(qcount(sa), 0);
    assert_int_equal(qcount(sb), 1);
    assert_msg(sb, 0, "42[\"x\"]");
    eio_session_drain(sb);

    /* Everyone except r3 and a missing room: a, b, d. */
    const char *except[] = {"r3", "missing"};
    sio_target_t all_but = {.except = except, .nexcept = 2};
    assert_int_equal(sio_nsp_emit_json(e->root, &all_but, "y", "[true]", 6), 0);
    assert_int_equal(qcount(sa), 1);
    assert_int_equal(qcount(sb), 1);
    assert_int_equal(qcount(sc), 0);
    assert_int_equal(qcount(sd), 1);
    assert_msg(sd, 0, "42[\"y\",true]");
    eio_session_drain(sa);
    eio_session_drain(sb);
    eio_session_drain(sd);

    /* socket.broadcast: all but the sender. */
    json_t *args = json_pack("[i]", 5);
    sio_payload_t p = {args, NULL, 0};
    assert_int_equal(sio_socket_broadcast(b, NULL, "z", &p), 0);
    json_decref(args);
    assert_int_equal(qcount(sa), 1);
    assert_int_equal(qcount(sb), 0);
    assert_int_equal(qcount(sc), 1);
    assert_int_equal(qcount(sd), 1);
    assert_msg(sc, 0, "42[\"z\",5]");
}

static void test_broadcast_namespace_wide(void **state) {
    env_t *e = *state;
    sio_nsp_t *admin = sio_server_of(e->io, "/admin");
    eio_session_t *s1 = client_connect(e, NULL);
    eio_session_t *s2 = client_connect(e, NULL);
    eio_session_t *s3 = client_new(e); /* only /admin */
    inject(s3, "0/admin,");
    eio_session_drain(s3);
    inject(s2, "0/admin,"); /* s2 in both */
    eio_session_drain(s2);

    assert_int_equal(sio_nsp_emit(e->root, NULL, "hello", NULL), 0);
    assert_int_equal(qcount(s1), 1);
    assert_int_equal(qcount(s2), 1);
    assert_int_equal(qcount(s3), 0);
    assert_msg(s1, 0, "42[\"hello\"]");
    assert_ptr_equal(qmsg(s1, 0), qmsg(s2, 0));

    assert_int_equal(sio_nsp_emit_json(admin, NULL, "adm", "[{\"k\":1}]", 9), 0);
    assert_int_equal(qcount(s1), 1);
    assert_int_equal(qcount(s2), 2);
    assert_int_equal(qcount(s3), 1);
    assert_msg(s3, 0, "42/admin,[\"adm\",{\"k\":1}]");

    /* Every namespace. */
    eio_session_drain(s1);
    eio_session_drain(s2);
    eio_session_drain(s3);
    assert_int_equal(sio_server_emit(e->io, "all", NULL), 0);
    assert_int_equal(qcount(s1), 1);
    assert_int_equal(qcount(s2), 2);
    assert_int_equal(qcount(s3), 1);
}

/* One encoding, queued by reference: every recipient holds the same eio_msg_t, and
 * after the emit returns the only references left are the queues'. */
static void test_broadcast_encoded_once(void **state) {
    env_t *e = *state;
    enum { N = 6 };
    eio_session_t *s[N];
    sio_socket_t *k[N];
    for (int i = 0; i < N; i++) {
        s[i] = client_connect(e, &k[i]);
        assert_int_equal(sio_socket_join(k[i], "all"), 0);
    }
    json_t *args = json_pack("[s,i]", "text", 1);
    sio_payload_t p = {args, NULL, 0};
    const char *room = "all";
    sio_target_t to = {.rooms = &room, .nrooms = 1};
    assert_int_equal(sio_nsp_emit(e->root, &to, "m", &p), 0);
    json_decref(args);
    eio_msg_t *m = qmsg(s[0], 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(qcount(s[i]), 1);
        assert_ptr_equal(qmsg(s[i], 0), m);
    }
    assert_int_equal(m->ref.count, N);
    assert_msg(s[0], 0, "42[\"m\",\"text\",1]");
    for (int i = 0; i < N; i++)
        eio_session_drain(s[i]); /* the last drain frees it (ASan would see a leak) */
}

static void test_broadcast_binary_shared(void **state) {
    env_t *e = *state;
    enum { N = 3 };
    eio_session_t *s[N];
    sio_socket_t *k[N];
    for (int i = 0; i < N; i++) {
        s[i] = client_connect(e, &k[i]);
        sio_socket_join(k[i], "bin");
    }
    static const uint8_t b0[] = {0, 1, 2, 255};
    static const uint8_t b1[] = {'h', 'i', 0};
    sio_bin_t bins[2] = {{b0, sizeof b0}, {b1, sizeof b1}};
    json_t *args = json_pack("[s,o,{s:o}]", "x", sio_placeholder(0), "nested", sio_placeholder(1));
    sio_payload_t p = {args, bins, 2};
    const char *room = "bin";
    sio_target_t to = {.rooms = &room, .nrooms = 1};
    assert_int_equal(sio_nsp_emit(e->root, &to, "file", &p), 0);
    json_decref(args);
    for (int i = 0; i < N; i++) {
        assert_int_equal(qcount(s[i]), 3);
        for (size_t j = 0; j < 3; j++)
            assert_ptr_equal(qmsg(s[i], j), qmsg(s[0], j));
    }
    json_t *j = msg_json(qmsg(s[0], 0), "452-");
    assert_json_is(j, "[\"file\",\"x\",{\"_placeholder\":true,\"num\":0},"
                      "{\"nested\":{\"_placeholder\":true,\"num\":1}}]");
    json_decref(j);
    eio_msg_t *m1 = qmsg(s[0], 1), *m2 = qmsg(s[0], 2);
    assert_true(m1->binary);
    assert_int_equal(m1->len, sizeof b0);
    assert_memory_equal(m1->data, b0, sizeof b0);
    assert_true(m2->binary);
    assert_int_equal(m2->len, sizeof b1);
    assert_memory_equal(m2->data, b1, sizeof b1);
    assert_int_equal(m1->ref.count, N);
    assert_int_equal(m2->ref.count, N);
}

typedef struct {
    sio_socket_t *slow, *victim; /* the slow consumer's handler disconnects the victim */
    int slow_reason_ok;
} close_after_t;

static void disconnect_victim(sio_socket_t *s, const char *reason, void *arg) {
    close_after_t *ca = arg;
    if (s != ca->slow)
        return;
    ca->slow_reason_ok = strcmp(reason, "transport error") == 0;
    sio_socket_disconnect(ca->victim, false);
}

/* "[\"<n times x>\"]" (malloc'd). */
static char *x_args(size_t n, size_t *len) {
    char *j = malloc(n + 5);
    assert_non_null(j);
    memcpy(j, "[\"", 2);
    memset(j + 2, 'x', n);
    memcpy(j + 2 + n, "\"]", 3);
    *len = n + 4;
    return j;
}

/* A recipient that must be closed (a slow consumer, here the room's first member) is
 * closed only once every recipient has its copy: its disconnect handler disconnects
 * another member, which still got the broadcast first; nothing freed is touched (the
 * ASan run of this test). */
static void test_broadcast_closes_after_delivering(void **state) {
    env_t *e = *state;
    e->io->cfg.backpressure_bytes = 100; /* a slow consumer: over 1,600 bytes waiting */
    enum { N = 4 };
    eio_session_t *s[N];
    sio_socket_t *k[N];
    for (int i = 0; i < N; i++) {
        s[i] = client_connect(e, &k[i]);
        assert_int_equal(sio_socket_join(k[i], "room"), 0);
    }
    /* Static: the handler runs for the others at teardown too (slow NULL by then). */
    static close_after_t ca;
    ca = (close_after_t){k[0], k[2], 0};
    assert_int_equal(sio_nsp_on_disconnect(e->root, disconnect_victim, &ca), 0);
    size_t len;
    char *fill = x_args(1000, &len);
    assert_int_equal(sio_socket_emit_json(k[0], "fill", fill, len, 0), 0); /* k[0] never reads */
    free(fill);
    assert_int_equal(qcount(s[0]), 1);
    char *big = x_args(500, &len);
    const char *room = "room";
    sio_target_t to = {.rooms = &room, .nrooms = 1};
    assert_int_equal(sio_nsp_emit_json(e->root, &to, "big", big, len), 0);
    free(big);
    assert_true(ca.slow_reason_ok);
    assert_int_equal(e->io->totals.slow_clients_cut, 1);
    for (int i = 1; i < N; i++)
        assert_true(msg_starts(qmsg(s[i], 0), "42[\"big\",\"xxx"));
    assert_int_equal(qcount(s[1]), 1);
    assert_int_equal(qcount(s[3]), 1);
    assert_int_equal(qcount(s[2]), 2); /* its copy, then the DISCONNECT */
    assert_msg(s[2], 1, "41");
    assert_int_equal(sio_nsp_socket_count(e->root), N - 2);
    ca.slow = NULL;
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_plain, teardown)
    const struct CMUnitTest tests[] = {
        T(test_broadcast_dedupes),        T(test_broadcast_except),
        T(test_broadcast_namespace_wide), T(test_broadcast_encoded_once),
        T(test_broadcast_binary_shared),  T(test_broadcast_closes_after_delivering),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
