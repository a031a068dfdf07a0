/* tests/unit/sio/adapter_test.c — the Socket.IO layer's rooms, broadcasts,
 * acknowledgements and connection state recovery, on in-process sessions.
 *
 * Each test runs a real server (uv loop, net loop, HTTP server on an ephemeral port,
 * sio_server_t) but no network: clients are eio_session_open_local sessions, what a
 * client "sends" is handed in with eio_session_inject, and what the server sent it is
 * read from the session's queue (eio_msg_t, "4" + the Socket.IO packet text, or the raw
 * bytes of a binary attachment). Being in-process, the tests can also look at the
 * room index from both sides and compare message pointers, to check that a broadcast
 * is encoded once and queued by reference. Everything is torn down through the public
 * close path so ASan/LSan see every leak. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eio/internal.h"
#include "parley/sio.h"
#include "sio/internal.h"
#include "ws/conn.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the environment ---- */

typedef struct {
    uv_loop_t loop;
    net_loop_t *nl;
    http_server_t *http;
    sio_server_t *io;
    sio_nsp_t *root;
    uv_timer_t wait_timer; /* for "nothing else happens for a while" checks */
    bool wait_timer_used;
} env_t;

static env_t *env_open(bool recovery) {
    env_t *e = calloc(1, sizeof *e);
    assert_non_null(e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    e->nl = net_loop_new(&e->loop);
    assert_non_null(e->nl);
    http_server_config_t hcfg;
    http_server_config_defaults(&hcfg);
    hcfg.port = 0;
    hcfg.ext_size = WS_CONN_EXT_SIZE;
    assert_int_equal(http_server_new(e->nl, &hcfg, &e->http), 0);
    sio_config_t cfg;
    sio_config_defaults(&cfg);
    cfg.recovery = recovery;
    assert_int_equal(sio_server_new(e->http, &cfg, &e->io), 0);
    e->root = sio_server_of(e->io, "/");
    assert_non_null(e->root);
    return e;
}

static void env_close(env_t *e) {
    sio_server_close(e->io);
    http_server_close(e->http);
    net_loop_close(e->nl);
    if (e->wait_timer_used)
        uv_close((uv_handle_t *)&e->wait_timer, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    net_loop_free(e->nl);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    free(e);
}

static int setup_plain(void **state) {
    *state = env_open(false);
    return 0;
}

static int setup_recovery(void **state) {
    *state = env_open(true);
    return 0;
}

static int teardown(void **state) {
    env_close(*state);
    return 0;
}

/* Runs the loop until *flag is set (at most 5 s of loop time). */
static void run_until(env_t *e, const bool *flag) {
    uv_update_time(&e->loop);
    uint64_t until = uv_now(&e->loop) + 5000;
    while (!*flag && uv_now(&e->loop) < until) {
        uv_run(&e->loop, UV_RUN_ONCE);
        uv_update_time(&e->loop);
    }
    assert_true(*flag);
}

static void wait_timer_cb(uv_timer_t *t) {
    *(bool *)t->data = true;
}

/* Lets the loop run for ms milliseconds. */
static void run_for(env_t *e, uint64_t ms) {
    bool fired = false;
    if (!e->wait_timer_used) {
        assert_int_equal(uv_timer_init(&e->loop, &e->wait_timer), 0);
        e->wait_timer_used = true;
    }
    e->wait_timer.data = &fired;
    assert_int_equal(uv_timer_start(&e->wait_timer, wait_timer_cb, ms, 0), 0);
    run_until(e, &fired);
}

/* ---- clients ---- */

static size_t qcount(const eio_session_t *s) {
    return s->qlen - s->qhead;
}

static eio_msg_t *qmsg(const eio_session_t *s, size_t i) {
    if (i >= qcount(s))
        fail_msg("message %zu asked, %zu queued", i, qcount(s));
    return s->queue[s->qhead + i];
}

static void assert_msg(const eio_session_t *s, size_t i, const char *expect) {
    eio_msg_t *m = qmsg(s, i);
    assert_false(m->binary);
    if (m->len != strlen(expect) || memcmp(m->data, expect, m->len) != 0)
        fail_msg("message %zu: got '%.*s', want '%s'", i, (int)m->len, (const char *)m->data,
                 expect);
}

static bool msg_starts(const eio_msg_t *m, const char *prefix) {
    size_t n = strlen(prefix);
    return !m->binary && m->len >= n && memcmp(m->data, prefix, n) == 0;
}

/* The JSON after `prefix` in a text message (new reference); fails if the message
 * does not start with prefix or the rest is not JSON. */
static json_t *msg_json(const eio_msg_t *m, const char *prefix) {
    if (!msg_starts(m, prefix))
        fail_msg("message '%.*s' does not start with '%s'", (int)m->len, (const char *)m->data,
                 prefix);
    size_t n = strlen(prefix);
    json_error_t err;
    json_t *j = json_loadb((const char *)m->data + n, m->len - n, JSON_DECODE_ANY, &err);
    if (!j)
        fail_msg("not JSON after '%s': %s", prefix, err.text);
    return j;
}

static void assert_json_is(json_t *got, const char *expect) {
    json_t *want = json_loads(expect, JSON_DECODE_ANY, NULL);
    assert_non_null(want);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
        fail_msg("got %s, want %s", g ? g : "?", expect);
    }
    json_decref(want);
}

/* Hands text to the server as a message from the client (from a writable copy of
 * exactly its length, so ASan sees any read past it). */
static void inject(eio_session_t *s, const char *text) {
    size_t n = strlen(text);
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, text, n);
    eio_session_inject(s, copy, n, false);
    free(copy);
}

static void inject_bin(eio_session_t *s, const void *data, size_t len) {
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);
    eio_session_inject(s, copy, len, true);
    free(copy);
}

static eio_session_t *client_new(env_t *e) {
    eio_session_t *s = eio_session_open_local(e->io->eio);
    assert_non_null(s);
    assert_non_null(eio_session_data(s)); /* the Socket.IO client */
    return s;
}

/* The socket of session s in namespace nsp, or NULL. */
static sio_socket_t *sock_of(eio_session_t *s, const char *nsp) {
    sio_client_t *c = eio_session_data(s);
    for (uint32_t i = 0; c && i < c->nsockets; i++)
        if (strcmp(c->sockets[i]->nsp->name, nsp) == 0)
            return c->sockets[i];
    return NULL;
}

/* A session connected to "/" with its CONNECT reply drained. */
static eio_session_t *client_connect(env_t *e, sio_socket_t **out) {
    eio_session_t *s = client_new(e);
    inject(s, "0");
    assert_int_equal(qcount(s), 1);
    assert_true(msg_starts(qmsg(s, 0), "40{"));
    eio_session_drain(s);
    sio_socket_t *sock = sock_of(s, "/");
    assert_non_null(sock);
    assert_true(sio_socket_connected(sock));
    if (out)
        *out = sock;
    return s;
}

/* ---- the room index, checked from both sides ---- */

static void assert_rooms_consistent(sio_nsp_t *nsp) {
    size_t from_rooms = 0, from_sockets = 0;
    map_entry_t *e;
    for (size_t pos = 0; map_next(&nsp->rooms, &pos, &e);) {
        sio_room_t *r = e->value;
        assert_string_equal(e->key, r->name);
        assert_true(r->count > 0); /* empty rooms are deleted */
        assert_true(r->count <= r->cap);
        for (uint32_t j = 0; j < r->count; j++) {
            sio_socket_t *s = r->members[j];
            bool found = false;
            for (uint32_t k = 0; k < s->nrooms; k++) {
                if (s->rooms[k].room == r) {
                    assert_false(found); /* at most once */
                    assert_int_equal(s->rooms[k].pos, j);
                    found = true;
                }
            }
            if (!found)
                fail_msg("room %s lists a socket that does not list it", r->name);
        }
        from_rooms += r->count;
    }
    for (uint32_t i = 0; i < nsp->nsockets; i++) {
        sio_socket_t *s = nsp->sockets[i];
        assert_int_equal(s->nsp_pos, i);
        assert_ptr_equal(map_get(&nsp->by_id, s->id, strlen(s->id)), s);
        for (uint32_t k = 0; k < s->nrooms; k++) {
            sio_room_t *r = s->rooms[k].room;
            assert_ptr_equal(map_get(&nsp->rooms, r->name, strlen(r->name)), r);
            assert_true(s->rooms[k].pos < r->count);
            assert_ptr_equal(r->members[s->rooms[k].pos], s);
        }
        from_sockets += s->nrooms;
    }
    assert_int_equal(from_rooms, from_sockets);
}

typedef struct {
    char names[16][64];
    size_t n;
} room_list_t;

static void collect_room(const char *room, void *arg) {
    room_list_t *l = arg;
    assert_true(l->n < ARRAY_LEN(l->names));
    snprintf(l->names[l->n++], sizeof l->names[0], "%s", room);
}

static bool list_has(const room_list_t *l, const char *name) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0)
            return true;
    return false;
}

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
    assert_true(strlen(sio_socket_id(sock)) > 0);
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

    /* The same client in "/" too: another socket, another id. */
    inject(s, "0");
    sio_socket_t *rs = sock_of(s, "/");
    assert_non_null(rs);
    assert_string_not_equal(sio_socket_id(rs), sio_socket_id(as));
    assert_int_equal(qcount(s), 2);

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
}

/* ---- rooms ---- */

static void test_rooms_join_leave(void **state) {
    env_t *e = *state;
    sio_socket_t *a, *b, *c;
    client_connect(e, &a);
    client_connect(e, &b);
    client_connect(e, &c);
    const char *rooms[] = {"r1", "r2", "r3"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(sio_socket_join(a, rooms[i]), 0);
        assert_int_equal(sio_socket_join(b, rooms[i]), 0);
    }
    assert_int_equal(sio_socket_join(c, "r2"), 0);
    assert_int_equal(sio_socket_join(c, "r2"), 0); /* again: no second membership */
    assert_int_equal(sio_nsp_room_size(e->root, "r1"), 2);
    assert_int_equal(sio_nsp_room_size(e->root, "r2"), 3);
    assert_int_equal(sio_nsp_room_size(e->root, "r3"), 2);
    assert_int_equal(sio_nsp_room_size(e->root, "r4"), 0);
    assert_rooms_consistent(e->root);

    /* Leave the middle room: a is first in r2, so the last member moves into its place
     * and that member's recorded position must follow. */
    assert_int_equal(sio_socket_leave(a, "r2"), 0);
    assert_int_equal(sio_nsp_room_size(e->root, "r2"), 2);
    assert_false(sio_socket_in(a, "r2"));
    assert_true(sio_socket_in(a, "r1"));
    assert_true(sio_socket_in(a, "r3"));
    assert_true(sio_socket_in(b, "r2"));
    assert_true(sio_socket_in(c, "r2"));
    assert_rooms_consistent(e->root);

    room_list_t l = {0};
    sio_socket_rooms(a, collect_room, &l);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.names[0], sio_socket_id(a)); /* its own id first */
    assert_true(list_has(&l, "r1"));
    assert_true(list_has(&l, "r3"));
    assert_false(list_has(&l, "r2"));

    /* Leaving a room one is not in changes nothing. */
    assert_int_equal(sio_socket_leave(a, "r2"), 0);
    assert_int_equal(sio_socket_leave(a, "never"), 0);
    assert_int_equal(sio_nsp_room_size(e->root, "r2"), 2);

    /* The last member leaving deletes the room. */
    assert_int_equal(sio_socket_leave(a, "r1"), 0);
    assert_int_equal(sio_socket_leave(b, "r1"), 0);
    assert_int_equal(sio_nsp_room_size(e->root, "r1"), 0);
    assert_null(map_get(&e->root->rooms, "r1", 2));
    assert_rooms_consistent(e->root);

    /* Rejoining recreates it. */
    assert_int_equal(sio_socket_join(c, "r1"), 0);
    assert_int_equal(sio_nsp_room_size(e->root, "r1"), 1);
    assert_rooms_consistent(e->root);
}

/* Random joins and leaves of 12 sockets over 8 rooms against a reference matrix. */
static void test_rooms_random_against_reference(void **state) {
    env_t *e = *state;
    enum { NS = 12, NR = 8 };
    sio_socket_t *socks[NS];
    bool in[NS][NR] = {{false}};
    char names[NR][8];
    for (int i = 0; i < NS; i++)
        client_connect(e, &socks[i]);
    for (int r = 0; r < NR; r++)
        snprintf(names[r], sizeof names[r], "room%d", r);
    uint32_t seed = 12345;
    for (int step = 0; step < 3000; step++) {
        seed = seed * 1103515245 + 12345;
        int si = (int)((seed >> 8) % NS);
        int ri = (int)((seed >> 16) % NR);
        bool join = (seed >> 28) & 1;
        if (join) {
            assert_int_equal(sio_socket_join(socks[si], names[ri]), 0);
            in[si][ri] = true;
        } else {
            assert_int_equal(sio_socket_leave(socks[si], names[ri]), 0);
            in[si][ri] = false;
        }
        if (step % 50 == 0 || step > 2950) {
            assert_rooms_consistent(e->root);
            for (int r = 0; r < NR; r++) {
                size_t n = 0;
                for (int s = 0; s < NS; s++) {
                    assert_int_equal(sio_socket_in(socks[s], names[r]), in[s][r]);
                    n += in[s][r];
                }
                assert_int_equal(sio_nsp_room_size(e->root, names[r]), n);
            }
        }
    }
}

static void join_x(sio_socket_t *s, void *arg) {
    (*(int *)arg)++;
}

static void test_sockets_join_leave_many(void **state) {
    env_t *e = *state;
    sio_socket_t *a, *b, *c;
    client_connect(e, &a);
    client_connect(e, &b);
    client_connect(e, &c);
    sio_socket_join(a, "src");
    sio_socket_join(b, "src");
    const char *src = "src";
    sio_target_t which = {.rooms = &src, .nrooms = 1};
    assert_int_equal(sio_nsp_sockets_join(e->root, &which, "dst"), 0);
    assert_true(sio_socket_in(a, "dst"));
    assert_true(sio_socket_in(b, "dst"));
    assert_false(sio_socket_in(c, "dst"));
    int count = 0;
    const char *dst = "dst";
    sio_target_t in_dst = {.rooms = &dst, .nrooms = 1};
    assert_int_equal(sio_nsp_fetch_sockets(e->root, &in_dst, join_x, &count), 0);
    assert_int_equal(count, 2);
    assert_int_equal(sio_nsp_sockets_leave(e->root, NULL, "dst"), 0);
    assert_int_equal(sio_nsp_room_size(e->root, "dst"), 0);
    assert_rooms_consistent(e->root);
}

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

/* BUG (src/sio/nsp.c, collector_ack): a broadcast ack without a timeout (timeout_ms 0)
 * whose recipient disconnects before answering never completes. collector_ack ignores
 * err != 0 (the -EPIPE each pending ack gets when its socket closes), so `received` never
 * reaches `expected`: done is never called, and the collector with its initialised
 * uv_timer_t is never closed, so uv_loop_close then fails with EBUSY in teardown and the
 * collector and its responses leak (LSan). Expected: done once, when the last outstanding
 * recipient has answered or gone, with the responses that did arrive. A fix: in
 * collector_ack, count a failed recipient as finished too
 *     if (!col->finished) { if (err == 0) json_array_append(...);
 *                           if (++col->received == col->expected) collector_finish(col, 0); }
 * (this also stops sio_server_close from waiting for a pending broadcast ack's timeout).
 * This test fails until then. */
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
    sio_socket_set(s, 1, value);
    if (arg)
        held_ctx = ctx;
    else
        sio_next(ctx, NULL);
}

static void test_slot_free(void **state) {
    env_t *e = *state;
    slot_freed = 0;
    assert_int_equal(sio_nsp_slot_free(e->root, SIO_DATA_SLOTS, slot_free_fn), -EINVAL);
    assert_int_equal(sio_nsp_slot_free(e->root, 1, slot_free_fn), 0);
    assert_int_equal(sio_nsp_use(e->root, mw_set_slot, NULL), 0);
    /* Connected, then disconnected by the client. */
    eio_session_t *a = client_new(e);
    inject(a, "0");
    assert_non_null(sock_of(a, "/"));
    assert_int_equal(slot_freed, 0);
    inject(a, "1");
    assert_int_equal(slot_freed, 1);
    /* Refused by a later middleware. */
    sio_nsp_t *strict = sio_server_of(e->io, "/strict");
    static int refused;
    assert_int_equal(sio_nsp_slot_free(strict, 1, slot_free_fn), 0);
    assert_int_equal(sio_nsp_use(strict, mw_set_slot, NULL), 0);
    assert_int_equal(sio_nsp_use(strict, mw_refuse, &refused), 0);
    eio_session_t *b = client_new(e);
    inject(b, "0/strict,");
    assert_int_equal(slot_freed, 2);
    /* Its client leaves while the middleware holds it. */
    sio_nsp_t *slow = sio_server_of(e->io, "/slowslot");
    assert_int_equal(sio_nsp_slot_free(slow, 1, slot_free_fn), 0);
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
    free(sio_socket_get(sock_of(d, "/"), 1));
    sio_socket_set(sock_of(d, "/"), 1, NULL);
    inject(d, "1");
    assert_int_equal(slot_freed, 3);
}

/* lean_handshake: the middleware sees auth; afterwards nothing of the handshake is kept. */
static void mw_see_auth(sio_socket_t *s, sio_next_ctx_t *ctx, void *arg) {
    const char *token = json_string_value(json_object_get(sio_socket_handshake(s)->auth, "token"));
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
    const sio_handshake_t *hs = sio_socket_handshake(sock_of(a, "/"));
    assert_int_equal(json_object_size(hs->auth), 0);
    assert_int_equal(json_object_size(hs->headers), 0);
    assert_int_equal(json_object_size(hs->query), 0);
    assert_true(hs->headers == hs->query); /* one shared empty object */
    assert_string_equal(hs->url, "");
    assert_string_equal(hs->address, "");
}

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
    assert_int_equal(sio_socket_emit_json(b, "e8", "[8]", 3), 0);             /* to b alone: no */
    sio_server_stats(e->io, &st);
    assert_true(st.recovery_packets >= 6);

    /* Back on a new connection with its pid and last offset. */
    eio_session_t *sa2 = client_new(e);
    char hello[256];
    snprintf(hello, sizeof hello, "0{\"pid\":\"%s\",\"offset\":\"%s\"}", ids.pid, off1);
    inject(sa2, hello);
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
    eio_session_t *sa3 = client_new(e);
    inject(sa3, hello);
    assert_int_equal(qcount(sa3), 1);
    ids_t third = connect_reply_ids(qmsg(sa3, 0));
    assert_string_not_equal(third.sid, ids.sid);
    assert_false(sio_socket_recovered(sock_of(sa3, "/")));
}

static void test_recovery_unknown_offset(void **state) {
    env_t *e = *state;
    eio_session_t *sa = client_new(e);
    inject(sa, "0");
    ids_t ids = connect_reply_ids(qmsg(sa, 0));
    eio_session_drain(sa);
    sio_socket_join(sock_of(sa, "/"), "r1");
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "e1", "[]", 2), 0);
    char off1[32];
    offset_of(qmsg(sa, 0), off1, sizeof off1);
    eio_session_close_reason(sa, "transport close");
    sio_stats_t st;
    sio_server_stats(e->io, &st);
    assert_int_equal(st.recovery_sessions, 1);

    /* An offset the log never had: a fresh session (and the stored one is gone). */
    eio_session_t *sb = client_new(e);
    char hello[256];
    snprintf(hello, sizeof hello, "0{\"pid\":\"%s\",\"offset\":\"999999\"}", ids.pid);
    inject(sb, hello);
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
    eio_session_t *sd = client_new(e);
    snprintf(hello, sizeof hello, "0{\"pid\":\"%s\",\"offset\":\"x1\"}", fresh.pid);
    inject(sd, hello);
    assert_int_equal(qcount(sd), 1);
    assert_false(sio_socket_recovered(sock_of(sd, "/")));
}

static void test_recovery_nothing_missed(void **state) {
    env_t *e = *state;
    eio_session_t *sa = client_new(e);
    inject(sa, "0");
    ids_t ids = connect_reply_ids(qmsg(sa, 0));
    eio_session_drain(sa);
    sio_socket_join(sock_of(sa, "/"), "r1");
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "e1", "[]", 2), 0);
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "e2", "[]", 2), 0);
    char off2[32];
    offset_of(qmsg(sa, 1), off2, sizeof off2);
    eio_session_close_reason(sa, "ping timeout");
    eio_session_t *sb = client_new(e);
    char hello[256];
    snprintf(hello, sizeof hello, "0{\"pid\":\"%s\",\"offset\":\"%s\"}", ids.pid, off2);
    inject(sb, hello);
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
    eio_session_t *sa = client_new(e);
    inject(sa, "0");
    ids_t ids = connect_reply_ids(qmsg(sa, 0));
    eio_session_drain(sa);
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "e1", "[]", 2), 0);
    char off1[32];
    offset_of(qmsg(sa, 0), off1, sizeof off1);
    eio_session_close_reason(sa, "transport close");
    sio_stats_t st;
    sio_server_stats(e->io, &st);
    assert_int_equal(st.recovery_sessions, 1);
    assert_int_equal(st.recovery_packets, 1);
    /* Not yet expired: nothing goes. */
    sio_adapter_purge(e->root, sio_now_ms());
    sio_server_stats(e->io, &st);
    assert_int_equal(st.recovery_sessions, 1);
    assert_int_equal(st.recovery_packets, 1);
    /* Past the maximum disconnection duration. */
    sio_adapter_purge(e->root, sio_now_ms() + e->io->cfg.recovery_max_disconnection + 1000);
    sio_server_stats(e->io, &st);
    assert_int_equal(st.recovery_sessions, 0);
    assert_int_equal(st.recovery_packets, 0);
    eio_session_t *sb = client_new(e);
    char hello[256];
    snprintf(hello, sizeof hello, "0{\"pid\":\"%s\",\"offset\":\"%s\"}", ids.pid, off1);
    inject(sb, hello);
    assert_int_equal(qcount(sb), 1);
    ids_t fresh = connect_reply_ids(qmsg(sb, 0));
    assert_string_not_equal(fresh.sid, ids.sid);
    assert_false(sio_socket_recovered(sock_of(sb, "/")));
}

/* BUG (src/sio/nsp.c and src/sio/socket.c, emit_encoded): the recovery offset is taken
 * (++nsp->next_offset) before the packet is encoded and not given back when encoding
 * fails (sio_nsp_emit_json / sio_socket_emit_json with text that is not an array return
 * -EINVAL; -ENOMEM likewise). The log then has a gap in its offsets, but
 * sio_adapter_restore finds an offset's entry by subtraction, assuming consecutive
 * offsets. Here the log holds offsets 1 (e1), 3 (e2), 4 (e3); the client's last packet
 * was e2, so it should get e3, but 3 - 1 + 1 = 3 = log_len: it is told it missed
 * nothing and e3 is silently lost. (With two failed emits before e2 the log holds 1, 4,
 * 5 and offset 4 counts as out of range: recovery is refused.) A fix: `if (n < 0) { if
 * (logged) nsp->next_offset--; return n; }` in both emit_encoded functions (nothing can
 * take an offset in between), or search the log by offset in sio_adapter_restore. This
 * test fails until then. */
static void test_recovery_offsets_survive_failed_emit(void **state) {
    env_t *e = *state;
    eio_session_t *sa = client_new(e);
    inject(sa, "0");
    ids_t ids = connect_reply_ids(qmsg(sa, 0));
    eio_session_drain(sa);
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "e1", "[]", 2), 0);
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "bad", "{}", 2), -EINVAL);
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "e2", "[]", 2), 0);
    assert_int_equal(qcount(sa), 2);
    char off2[32];
    offset_of(qmsg(sa, 1), off2, sizeof off2);
    eio_session_close_reason(sa, "transport close");
    assert_int_equal(sio_nsp_emit_json(e->root, NULL, "e3", "[]", 2), 0);
    eio_session_t *sb = client_new(e);
    char hello[256];
    snprintf(hello, sizeof hello, "0{\"pid\":\"%s\",\"offset\":\"%s\"}", ids.pid, off2);
    inject(sb, hello);
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
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_plain, teardown)
#define TR(fn) cmocka_unit_test_setup_teardown(fn, setup_recovery, teardown)
    const struct CMUnitTest tests[] = {
        T(test_connect_reply),
        T(test_connect_other_namespaces),
        T(test_rooms_join_leave),
        T(test_rooms_random_against_reference),
        T(test_sockets_join_leave_many),
        T(test_broadcast_dedupes),
        T(test_broadcast_except),
        T(test_broadcast_namespace_wide),
        T(test_broadcast_encoded_once),
        T(test_broadcast_binary_shared),
        T(test_disconnect_leaves_all_rooms),
        T(test_disconnect_sockets_in_room),
        T(test_slow_consumer_closed),
        T(test_server_disconnect),
        T(test_ack_round_trip),
        T(test_ack_answered_before_timeout),
        T(test_ack_timeout),
        T(test_ack_socket_gone),
        T(test_ack_binary_answer),
        T(test_room_ack_partial_timeout),
        T(test_room_ack_all_answer),
        T(test_room_ack_recipient_disconnects), /* BUG: fails, see the test */
        T(test_middleware_rejects),
        T(test_middleware_async),
        T(test_slot_free),
        T(test_lean_handshake),
        TR(test_recovery_restores),
        TR(test_recovery_unknown_offset),
        TR(test_recovery_not_after_client_leaves),
        TR(test_recovery_nothing_missed),
        TR(test_recovery_purge),
        TR(test_recovery_offsets_survive_failed_emit), /* BUG: fails, see the test */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
