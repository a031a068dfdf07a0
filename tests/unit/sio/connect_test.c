/* tests/unit/sio/connect_test.c — joining a namespace: the CONNECT reply and socket id,
 * several namespaces on one client and an unknown one refused, namespace middleware
 * (refusing, answering later, the client leaving meanwhile), socket slot destructors, and
 * what lean_handshake keeps. On in-process sessions (adapter_env.h). */
#include <errno.h>

#include "adapter_env.h"

/* ---- connecting ---- */

static void test_connect_reply(void **state) {
    env_t *e = *state;
    eio_session_t *s = client_new(e);
    sio_stats_t st;
    sio_server_stats(e->io, &st);
    assert_int_equal(st.clients, 1);
    assert_int_equal(st.sockets, 0);
    inject(s, "0");
    sio_socket_t *sock = sock_of(s, "/");
    assert_non_null(sock);
    char expect[128];
    snprintf(expect, sizeof expect, "40{\"sid\":\"%s\"}", sio_socket_id(sock));
    assert_int_equal(qcount(s), 1);
    assert_msg(s, 0, expect);
    assert_int_equal(strlen(sio_socket_id(sock)), SIO_SOCKET_ID_LEN);
    /* The socket id is not the Engine.IO session id. */
    assert_string_not_equal(sio_socket_id(sock), eio_session_id(s));
    assert_int_equal(sio_nsp_socket_count(e->root), 1);
    assert_int_equal(sio_nsp_room_size(e->root, sio_socket_id(sock)), 1); /* its own room */
    assert_true(sio_socket_in(sock, sio_socket_id(sock)));
    assert_false(sio_socket_recovered(sock));
    sio_server_stats(e->io, &st);
    assert_int_equal(st.sockets, 1);
    assert_int_equal(st.recovery_sessions, 0);

    /* A second CONNECT to the same namespace is ignored. */
    eio_session_drain(s);
    inject(s, "0");
    assert_int_equal(qcount(s), 0);
    assert_int_equal(sio_nsp_socket_count(e->root), 1);
}

static void test_connect_other_namespaces(void **state) {
    env_t *e = *state;
    sio_nsp_t *admin = sio_server_of(e->io, "/admin");
    assert_non_null(admin);
    eio_session_t *s = client_new(e);
    inject(s, "0/admin,");
    sio_socket_t *as = sock_of(s, "/admin");
    assert_non_null(as);
    char expect[128];
    snprintf(expect, sizeof expect, "40/admin,{\"sid\":\"%s\"}", sio_socket_id(as));
    assert_int_equal(qcount(s), 1);
    assert_msg(s, 0, expect);
    assert_int_equal(sio_nsp_socket_count(admin), 1);
    assert_int_equal(sio_nsp_socket_count(e->root), 0);
    sio_client_t *c = eio_session_data(s);
    assert_int_equal(c->sockets.cap, 1); /* one namespace: held inline */

    /* The same client in "/" too: another socket, another id. */
    inject(s, "0");
    sio_socket_t *rs = sock_of(s, "/");
    assert_non_null(rs);
    assert_string_not_equal(sio_socket_id(rs), sio_socket_id(as));
    assert_int_equal(qcount(s), 2);
    assert_int_equal(c->sockets.count, 2);
    assert_ptr_equal(sock_of(s, "/admin"), as);

    /* An unknown namespace is refused and creates nothing. */
    inject(s, "0/nope,");
    assert_int_equal(qcount(s), 3);
    json_t *err = msg_json(qmsg(s, 2), "44/nope,");
    assert_json_is(err, "{\"message\":\"Invalid namespace\"}");
    json_decref(err);
    assert_null(sock_of(s, "/nope"));
    sio_stats_t st;
    sio_server_stats(e->io, &st);
    assert_int_equal(st.sockets, 2);

    /* Leaving one namespace keeps the other. */
    inject(s, "1/admin,");
    assert_null(sock_of(s, "/admin"));
    assert_ptr_equal(sock_of(s, "/"), rs);
    assert_int_equal(c->sockets.count, 1);
    assert_int_equal(sio_nsp_socket_count(admin), 0);
}

/* ---- middleware ---- */

static void mw_refuse(sio_socket_t *s, sio_next_ctx_t *ctx, void *arg) {
    (*(int *)arg)++;
    json_t *data = json_pack("{s:i}", "code", 7);
    json_t *err = sio_error_new("not allowed", data);
    sio_next(ctx, err);
    json_decref(err);
    json_decref(data);
}

static void mw_pass(sio_socket_t *s, sio_next_ctx_t *ctx, void *arg) {
    (*(int *)arg)++;
    sio_next(ctx, NULL);
}

static void test_middleware_rejects(void **state) {
    env_t *e = *state;
    static int passed, refused;
    passed = refused = 0;
    assert_int_equal(sio_nsp_use(e->root, mw_pass, &passed), 0);
    assert_int_equal(sio_nsp_use(e->root, mw_refuse, &refused), 0);
    eio_session_t *s = client_new(e);
    inject(s, "0");
    assert_int_equal(passed, 1);
    assert_int_equal(refused, 1);
    assert_int_equal(qcount(s), 1);
    json_t *err = msg_json(qmsg(s, 0), "44");
    assert_json_is(err, "{\"message\":\"not allowed\",\"data\":{\"code\":7}}");
    json_decref(err);
    assert_int_equal(sio_nsp_socket_count(e->root), 0);
    assert_null(sock_of(s, "/"));
    sio_stats_t st;
    sio_server_stats(e->io, &st);
    assert_int_equal(st.sockets, 0);
    assert_int_equal(st.clients, 1); /* the connection itself stays */
    /* Nothing was left in the room index. */
    assert_int_equal(e->root->rooms.count, 0);
}

static sio_next_ctx_t *held_ctx;
static void mw_hold(sio_socket_t *s, sio_next_ctx_t *ctx, void *arg) {
    held_ctx = ctx;
}

static void test_middleware_async(void **state) {
    env_t *e = *state;
    sio_nsp_t *slow = sio_server_of(e->io, "/slow");
    assert_int_equal(sio_nsp_use(slow, mw_hold, NULL), 0);
    eio_session_t *s = client_new(e);
    held_ctx = NULL;
    inject(s, "0/slow,");
    assert_non_null(held_ctx);
    assert_int_equal(qcount(s), 0); /* nothing until the middleware answers */
    assert_int_equal(sio_nsp_socket_count(slow), 0);
    sio_next(held_ctx, NULL);
    assert_int_equal(qcount(s), 1);
    assert_true(msg_starts(qmsg(s, 0), "40/slow,{\"sid\":\""));
    assert_int_equal(sio_nsp_socket_count(slow), 1);

    /* The client leaves while the middleware runs: the late sio_next only cleans up. */
    eio_session_t *s2 = client_new(e);
    held_ctx = NULL;
    inject(s2, "0/slow,");
    assert_non_null(held_ctx);
    eio_session_close(s2);
    sio_next(held_ctx, NULL);
    assert_int_equal(sio_nsp_socket_count(slow), 1);
}

/* Slot destructors: a middleware's slot is released on every way out. */
static int slot_freed;
static void slot_free_fn(void *v) {
    slot_freed++;
    free(v);
}
static void mw_set_slot(sio_socket_t *s, sio_next_ctx_t *ctx, void *arg) {
    int *value = malloc(sizeof *value);
    assert_non_null(value);
    sio_socket_set(s, 0, value);
    if (arg)
        held_ctx = ctx;
    else
        sio_next(ctx, NULL);
}

static void test_slot_free(void **state) {
    env_t *e = *state;
    slot_freed = 0;
    assert_int_equal(sio_nsp_slot_free(e->root, SIO_DATA_SLOTS, slot_free_fn), -EINVAL);
    assert_int_equal(sio_nsp_slot_free(e->root, 0, slot_free_fn), 0);
    assert_int_equal(sio_nsp_use(e->root, mw_set_slot, NULL), 0);
    /* Connected, then disconnected by the client. */
    eio_session_t *a = client_new(e);
    inject(a, "0");
    sio_socket_t *sa = sock_of(a, "/");
    assert_non_null(sa);
    void *mine = sio_socket_get(sa, 0);
    assert_non_null(mine);
    /* Out of range: nothing is read or written. */
    sio_socket_set(sa, SIO_DATA_SLOTS, &slot_freed);
    assert_null(sio_socket_get(sa, SIO_DATA_SLOTS));
    assert_ptr_equal(sio_socket_get(sa, 0), mine);
    assert_int_equal(slot_freed, 0);
    inject(a, "1");
    assert_int_equal(slot_freed, 1);
    /* Refused by a later middleware. */
    sio_nsp_t *strict = sio_server_of(e->io, "/strict");
    static int refused;
    assert_int_equal(sio_nsp_slot_free(strict, 0, slot_free_fn), 0);
    assert_int_equal(sio_nsp_use(strict, mw_set_slot, NULL), 0);
    assert_int_equal(sio_nsp_use(strict, mw_refuse, &refused), 0);
    eio_session_t *b = client_new(e);
    inject(b, "0/strict,");
    assert_int_equal(slot_freed, 2);
    /* Its client leaves while the middleware holds it. */
    sio_nsp_t *slow = sio_server_of(e->io, "/slowslot");
    assert_int_equal(sio_nsp_slot_free(slow, 0, slot_free_fn), 0);
    assert_int_equal(sio_nsp_use(slow, mw_set_slot, &refused), 0);
    held_ctx = NULL;
    eio_session_t *c = client_new(e);
    inject(c, "0/slowslot,");
    assert_non_null(held_ctx);
    eio_session_close(c);
    assert_int_equal(slot_freed, 3);
    sio_next(held_ctx, NULL);
    assert_int_equal(slot_freed, 3);
    /* A slot the application cleared itself is not freed again. */
    eio_session_t *d = client_new(e);
    inject(d, "0");
    free(sio_socket_get(sock_of(d, "/"), 0));
    sio_socket_set(sock_of(d, "/"), 0, NULL);
    inject(d, "1");
    assert_int_equal(slot_freed, 3);
}

/* The handshake is the connection's, shared by its sockets (auth aside), and it stays
 * readable through a socket the application holds after the connection closed. */
static void test_handshake_outlives_client(void **state) {
    env_t *e = *state;
    assert_non_null(sio_server_of(e->io, "/admin"));
    eio_session_t *a = client_new(e);
    inject(a, "0{\"token\":\"t0k\"}");
    inject(a, "0/admin,{\"token\":\"other\"}");
    sio_socket_t *root = sock_of(a, "/"), *admin = sock_of(a, "/admin");
    assert_non_null(root);
    assert_non_null(admin);
    sio_handshake_t hr = sio_socket_handshake(root), ha = sio_socket_handshake(admin);
    assert_ptr_equal(hr.headers, ha.headers);
    assert_ptr_equal(hr.query, ha.query);
    assert_string_equal(json_string_value(json_object_get(ha.auth, "token")), "other");
    sio_socket_ref(root);
    eio_session_close(a);
    assert_false(sio_socket_connected(root));
    sio_handshake_t hs = sio_socket_handshake(root);
    assert_string_equal(json_string_value(json_object_get(hs.auth, "token")), "t0k");
    assert_string_equal(hs.url, "/");
    assert_string_equal(hs.address, "local");
    assert_true(json_is_object(hs.headers));
    assert_true(json_is_object(hs.query));
    assert_int_equal(hs.protocol, 4);
    json_t *d = sio_socket_describe(root);
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(json_object_get(d, "handshake"), "url")),
                        "/");
    json_decref(d);
    sio_socket_unref(root);
}

/* lean_handshake: the middleware sees auth; afterwards nothing of the handshake is kept. */
static void mw_see_auth(sio_socket_t *s, sio_next_ctx_t *ctx, void *arg) {
    const char *token = json_string_value(json_object_get(sio_socket_handshake(s).auth, "token"));
    *(bool *)arg = token && strcmp(token, "t0k") == 0;
    sio_next(ctx, NULL);
}

static void test_lean_handshake(void **state) {
    env_t *e = *state;
    e->io->cfg.lean_handshake = true;
    static bool saw;
    saw = false;
    assert_int_equal(sio_nsp_use(e->root, mw_see_auth, &saw), 0);
    eio_session_t *a = client_new(e);
    inject(a, "0{\"token\":\"t0k\"}");
    assert_true(saw);
    sio_handshake_t hs = sio_socket_handshake(sock_of(a, "/"));
    assert_int_equal(json_object_size(hs.auth), 0);
    assert_int_equal(json_object_size(hs.headers), 0);
    assert_int_equal(json_object_size(hs.query), 0);
    assert_true(hs.headers == hs.query); /* one shared empty object */
    assert_string_equal(hs.url, "");
    assert_string_equal(hs.address, "");
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_plain, teardown)
    const struct CMUnitTest tests[] = {
        T(test_connect_reply),
        T(test_connect_other_namespaces),
        T(test_middleware_rejects),
        T(test_middleware_async),
        T(test_slot_free),
        T(test_lean_handshake),
        T(test_handshake_outlives_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
