/* tests/unit/sio/adapter_env.h — the shared test bench of the Socket.IO unit tests
 * (connect, rooms, broadcast, disconnect, acks, recovery _test.c).
 *
 * Header-only (static inline) because CMake builds every *_test.c as its own program.
 * Each test runs a real server (uv loop, net loop, HTTP server on an ephemeral port,
 * sio_server_t) but no network: clients are eio_session_open_local sessions, what a
 * client "sends" is handed in with eio_session_inject (inject, inject_bin), and what the
 * server sent it is read from the session's queue (qcount, qmsg: eio_msg_t, "4" + the
 * Socket.IO packet text, or the raw bytes of a binary attachment). Being in-process, the
 * tests can also look at the room index from both sides (assert_rooms_consistent) and
 * compare message pointers. Everything is torn down through the public close path
 * (env_close) so ASan/LSan see every leak. */
#ifndef PARLEY_TESTS_UNIT_SIO_ADAPTER_ENV_H
#define PARLEY_TESTS_UNIT_SIO_ADAPTER_ENV_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eio/internal.h"
#include "parley/sio.h"
#include "sio/internal.h"

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

static inline env_t *env_open(bool recovery) {
    env_t *e = calloc(1, sizeof *e);
    assert_non_null(e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    e->nl = net_loop_new(&e->loop);
    assert_non_null(e->nl);
    http_server_config_t hcfg;
    http_server_config_defaults(&hcfg);
    hcfg.port = 0;
    assert_int_equal(http_server_new(e->nl, &hcfg, &e->http), 0);
    sio_config_t cfg;
    sio_config_defaults(&cfg);
    cfg.recovery = recovery;
    assert_int_equal(sio_server_new(e->http, &cfg, &e->io), 0);
    e->root = sio_server_of(e->io, "/");
    assert_non_null(e->root);
    return e;
}

static inline void env_close(env_t *e) {
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

static inline int setup_plain(void **state) {
    *state = env_open(false);
    return 0;
}

static inline int setup_recovery(void **state) {
    *state = env_open(true);
    return 0;
}

static inline int teardown(void **state) {
    env_close(*state);
    return 0;
}

/* Runs the loop until *flag is set (at most 5 s of loop time). */
static inline void run_until(env_t *e, const bool *flag) {
    uv_update_time(&e->loop);
    uint64_t until = uv_now(&e->loop) + 5000;
    while (!*flag && uv_now(&e->loop) < until) {
        uv_run(&e->loop, UV_RUN_ONCE);
        uv_update_time(&e->loop);
    }
    assert_true(*flag);
}

static inline void wait_timer_cb(uv_timer_t *t) {
    *(bool *)t->data = true;
}

/* Lets the loop run for ms milliseconds. */
static inline void run_for(env_t *e, uint64_t ms) {
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

static inline size_t qcount(const eio_session_t *s) {
    return s->qlen - s->qhead;
}

static inline eio_msg_t *qmsg(const eio_session_t *s, size_t i) {
    if (i >= qcount(s))
        fail_msg("message %zu asked, %zu queued", i, qcount(s));
    return s->queue[s->qhead + i];
}

static inline void assert_msg(const eio_session_t *s, size_t i, const char *expect) {
    eio_msg_t *m = qmsg(s, i);
    assert_false(m->binary);
    if (m->len != strlen(expect) || memcmp(m->data, expect, m->len) != 0)
        fail_msg("message %zu: got '%.*s', want '%s'", i, (int)m->len, (const char *)m->data,
                 expect);
}

static inline bool msg_starts(const eio_msg_t *m, const char *prefix) {
    size_t n = strlen(prefix);
    return !m->binary && m->len >= n && memcmp(m->data, prefix, n) == 0;
}

/* The JSON after `prefix` in a text message (new reference); fails if the message
 * does not start with prefix or the rest is not JSON. */
static inline json_t *msg_json(const eio_msg_t *m, const char *prefix) {
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

static inline void assert_json_is(json_t *got, const char *expect) {
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
static inline void inject(eio_session_t *s, const char *text) {
    size_t n = strlen(text);
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, text, n);
    eio_session_inject(s, copy, n, false);
    free(copy);
}

static inline void inject_bin(eio_session_t *s, const void *data, size_t len) {
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);
    eio_session_inject(s, copy, len, true);
    free(copy);
}

static inline eio_session_t *client_new(env_t *e) {
    eio_session_t *s = eio_session_open_local(e->io->eio);
    assert_non_null(s);
    assert_non_null(eio_session_data(s)); /* the Socket.IO client */
    return s;
}

/* The socket of session s in namespace nsp, or NULL. */
static inline sio_socket_t *sock_of(eio_session_t *s, const char *nsp) {
    sio_client_t *c = eio_session_data(s);
    for (uint32_t i = 0; c && i < c->sockets.count; i++)
        if (strcmp(sio_sockets_items(&c->sockets)[i]->nsp->name, nsp) == 0)
            return sio_sockets_items(&c->sockets)[i];
    return NULL;
}

/* A session connected to "/" with its CONNECT reply drained. */
static inline eio_session_t *client_connect(env_t *e, sio_socket_t **out) {
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

static inline void assert_rooms_consistent(sio_nsp_t *nsp) {
    size_t from_rooms = 0, from_sockets = 0;
    map_entry_t *e;
    for (size_t pos = 0; map_next(&nsp->rooms, &pos, &e);) {
        sio_room_t *r = e->value;
        assert_string_equal(e->key, r->name);
        uint32_t count = r->members.count;
        assert_true(count > 0); /* empty rooms are deleted */
        assert_true(count <= r->members.cap);
        /* Its one member inline until a second came (then a heap array). */
        if (r->members.cap == 1)
            assert_ptr_equal(sio_sockets_items(&r->members), &r->members.at.one);
        for (uint32_t j = 0; j < count; j++) {
            sio_socket_t *s = sio_sockets_items(&r->members)[j];
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
        from_rooms += count;
    }
    for (uint32_t i = 0; i < nsp->nsockets; i++) {
        sio_socket_t *s = nsp->sockets[i];
        assert_int_equal(s->nsp_pos, i);
        assert_ptr_equal(map_get(&nsp->by_id, s->id, strlen(s->id)), s);
        for (uint32_t k = 0; k < s->nrooms; k++) {
            sio_room_t *r = s->rooms[k].room;
            assert_ptr_equal(map_get(&nsp->rooms, r->name, strlen(r->name)), r);
            assert_true(s->rooms[k].pos < r->members.count);
            assert_ptr_equal(sio_sockets_items(&r->members)[s->rooms[k].pos], s);
        }
        from_sockets += s->nrooms;
    }
    assert_int_equal(from_rooms, from_sockets);
}

#endif
