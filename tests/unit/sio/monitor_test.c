/* tests/unit/sio/monitor_test.c — sio_server_monitor: what a monitor is told (connect,
 * joins, events in and out, disconnect, then the leaves of every room) and in which
 * order; nothing once it is removed. */
#include "adapter_env.h"

typedef struct {
    char log[32][96];
    size_t n;
} seen_t;

static void note(seen_t *m, const char *fmt, const char *a, const char *b) {
    assert_true(m->n < 32);
    snprintf(m->log[m->n++], sizeof m->log[0], fmt, a, b);
}

static void m_connect(sio_socket_t *s, void *arg) {
    note(arg, "connect %s%s", sio_nsp_name(sio_socket_nsp(s)), "");
}
static void m_disconnect(sio_socket_t *s, const char *reason, void *arg) {
    note(arg, "disconnect %s in:%s", reason, sio_socket_in(s, "r1") ? "r1" : "-");
}
static void m_join(sio_socket_t *s, const char *room, void *arg) {
    note(arg, "join %s%s", room, "");
}
static void m_leave(sio_socket_t *s, const char *room, void *arg) {
    note(arg, "leave %s%s", room, "");
}
static void m_in(sio_socket_t *s, json_t *packet, void *arg) {
    char *t = json_dumps(packet, JSON_COMPACT);
    note(arg, "in %s%s", t, "");
    free(t);
}
static void m_out(sio_socket_t *s, const char *event, const char *args, size_t len, void *arg) {
    char a[64];
    snprintf(a, sizeof a, "%.*s", (int)len, args);
    note(arg, "out %s %s", event, a);
}

static const sio_monitor_t mon = {.connect = m_connect,
                                  .disconnect = m_disconnect,
                                  .join = m_join,
                                  .leave = m_leave,
                                  .event_in = m_in,
                                  .event_out = m_out};

static void test_monitor_sees_a_socket_life(void **state) {
    env_t *e = *state;
    seen_t m = {0};
    sio_server_monitor(e->io, &mon, &m);
    sio_socket_t *s;
    eio_session_t *c = client_connect(e, &s);
    assert_int_equal(sio_socket_join(s, "r1"), 0);
    assert_int_equal(sio_socket_join(s, "r1"), 0);             /* already in: not reported */
    assert_int_equal(sio_socket_join(s, sio_socket_id(s)), 0); /* its own: not reported */
    assert_int_equal(sio_socket_join(s, "r2"), 0);
    assert_int_equal(sio_socket_leave(s, "r2"), 0);
    inject(c, "2[\"hello\",1]");
    assert_int_equal(sio_socket_emit_json(s, "reply", "[2]", 3, 0), 0);
    const char *r1 = "r1";
    sio_target_t to = {.rooms = &r1, .nrooms = 1};
    assert_int_equal(sio_nsp_emit_json(e->root, &to, "bcast", "[]", 2), 0); /* not reported */
    assert_string_equal(sio_socket_client_id(s), eio_session_id(c));
    assert_string_equal(sio_socket_transport(s), "polling");
    sio_socket_disconnect(s, false);
    const char *want[] = {"connect /",
                          "join r1",
                          "join r2",
                          "leave r2",
                          "in [\"hello\",1]",
                          "out reply [2]",
                          "disconnect server namespace disconnect in:r1",
                          "leave r1"};
    assert_int_equal(m.n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < m.n; i++)
        assert_string_equal(m.log[i], want[i]);

    /* Removed: nothing more. */
    sio_server_monitor(e->io, NULL, NULL);
    sio_socket_t *s2;
    client_connect(e, &s2);
    assert_int_equal(sio_socket_join(s2, "r3"), 0);
    assert_int_equal(m.n, sizeof want / sizeof want[0]);
}

static void count_nsp(sio_nsp_t *nsp, void *arg) {
    (*(int *)arg)++;
}

static void test_each_nsp(void **state) {
    env_t *e = *state;
    int n = 0;
    sio_server_each_nsp(e->io, count_nsp, &n);
    assert_int_equal(n, 1);
    assert_non_null(sio_server_of(e->io, "/other"));
    n = 0;
    sio_server_each_nsp(e->io, count_nsp, &n);
    assert_int_equal(n, 2);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_plain, teardown)
    const struct CMUnitTest tests[] = {
        T(test_monitor_sees_a_socket_life),
        T(test_each_nsp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
