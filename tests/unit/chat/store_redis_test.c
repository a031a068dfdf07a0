/* tests/unit/chat/store_redis_test.c — the Redis store's membership and read marks
 * (src/chat/store_redis.c) against a real redis-server.
 *
 * Each test starts its own redis-server on a free loopback port (tests/unit/cluster/
 * redis_harness.c: no persistence, killed in the teardown) and opens two stores on it:
 * two nodes sharing one Redis. Checked: a join on one node is seen from the other, in
 * both directions of the membership (a room's members, a user's rooms), sorted; a second
 * join keeps the first join's time and takes the new username; a forget removes both
 * sides (the room's hash and the user's set, looked at in Redis itself) and keeps the
 * read mark, which a rejoin finds again; forgetting a non-member is no error. mark_read
 * up to a seq: the mark it reports, clamped to the room's last seq, never moving back,
 * combined with message ids, -ENOENT when nothing names a message (an unknown id, a room
 * without messages), 0 and the mark when nothing was asked; the mark stored in Redis
 * names the message at its seq. The reads carry the room's last seq and the user's mark.
 * A value another server wrote badly is passed over, not fatal to the read; bad
 * arguments are refused at once; with Redis unreachable every call returns -EIO and no
 * callback runs. */
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

#include "../cluster/redis_harness.h"
#include "chat/store.h"
#include "util/time.h"

#define WAIT_MS 3000
#define MAX_ITEMS 8

typedef struct {
    char id[64];   /* room (user_rooms) or user (members) */
    char name[64]; /* members: username */
    uint64_t last_seq, read_seq;
    int64_t joined_at;
} item_t;

/* What one read answered, copied out of its callback. */
typedef struct {
    bool done;
    int err;
    size_t n;
    uint64_t last_seq; /* members */
    item_t items[MAX_ITEMS];
} list_t;

typedef struct {
    bool done;
    int err;
    uint64_t mark;
} result_t;

typedef struct {
    rh_env_t env;
    int port;
    chat_store_t *a, *b; /* two nodes */
    int closing;         /* stores whose close has not finished */
} ctx_t;

/* ---- callbacks: they record ---- */

static void on_done(int err, void *arg) {
    result_t *r = arg;
    r->done = true;
    r->err = err;
}

static void on_mark(int err, uint64_t mark, void *arg) {
    result_t *r = arg;
    r->done = true;
    r->err = err;
    r->mark = mark;
}

typedef struct {
    bool done;
    int err;
    uint64_t seq;
    char id[64];
} appended_t;

static void on_appended(int err, chat_msg_t *m, void *arg) {
    appended_t *r = arg;
    r->done = true;
    r->err = err;
    if (m) {
        r->seq = m->seq;
        snprintf(r->id, sizeof r->id, "%s", m->id);
    }
}

static void copy_str(char out[64], const char *s) {
    assert_non_null(s);
    assert_true(strlen(s) < 64);
    snprintf(out, 64, "%s", s);
}

static void on_rooms(int err, const chat_user_room_t *rooms, size_t n, void *arg) {
    list_t *l = arg;
    assert_false(l->done);
    l->done = true;
    l->err = err;
    l->n = n;
    assert_true(n <= MAX_ITEMS);
    for (size_t i = 0; i < n; i++) {
        copy_str(l->items[i].id, rooms[i].room_id);
        l->items[i].last_seq = rooms[i].last_seq;
        l->items[i].read_seq = rooms[i].last_read_seq;
        l->items[i].joined_at = rooms[i].joined_at;
    }
}

static void on_members(int err, const chat_member_t *members, size_t n, uint64_t last_seq,
                       void *arg) {
    list_t *l = arg;
    assert_false(l->done);
    l->done = true;
    l->err = err;
    l->n = n;
    l->last_seq = last_seq;
    assert_true(n <= MAX_ITEMS);
    for (size_t i = 0; i < n; i++) {
        copy_str(l->items[i].id, members[i].user_id);
        copy_str(l->items[i].name, members[i].username);
        l->items[i].read_seq = members[i].last_read_seq;
        l->items[i].joined_at = members[i].joined_at;
    }
}

static void on_closed(void *arg) {
    ctx_t *c = arg;
    c->closing--;
}

/* ---- the calls, each waited for ---- */

static void join(ctx_t *c, chat_store_t *st, const char *room, const char *user, const char *name) {
    result_t r = {0};
    assert_int_equal(chat_store_join(st, room, user, name, on_done, &r), 0);
    RH_WAIT_FOR(&c->env, r.done, WAIT_MS);
    assert_int_equal(r.err, 0);
}

static void forget(ctx_t *c, chat_store_t *st, const char *room, const char *user) {
    result_t r = {0};
    assert_int_equal(chat_store_forget(st, room, user, on_done, &r), 0);
    RH_WAIT_FOR(&c->env, r.done, WAIT_MS);
    assert_int_equal(r.err, 0);
}

static list_t user_rooms(ctx_t *c, chat_store_t *st, const char *user) {
    list_t l = {0};
    assert_int_equal(chat_store_user_rooms(st, user, on_rooms, &l), 0);
    RH_WAIT_FOR(&c->env, l.done, WAIT_MS);
    assert_int_equal(l.err, 0);
    return l;
}

static list_t members(ctx_t *c, chat_store_t *st, const char *room) {
    list_t l = {0};
    assert_int_equal(chat_store_members(st, room, on_members, &l), 0);
    RH_WAIT_FOR(&c->env, l.done, WAIT_MS);
    assert_int_equal(l.err, 0);
    return l;
}

/* mark_read's result: err and the mark it reported. */
static result_t mark(ctx_t *c, chat_store_t *st, const char *room, const char *user,
                     const char *const *ids, size_t n, uint64_t upto) {
    result_t r = {0};
    assert_int_equal(chat_store_mark_read(st, room, user, ids, n, upto, on_mark, &r), 0);
    RH_WAIT_FOR(&c->env, r.done, WAIT_MS);
    return r;
}

/* Appends a message; returns its seq and its id (in out) once it is acknowledged. */
static uint64_t append(ctx_t *c, chat_store_t *st, const char *room, char out[64]) {
    appended_t r = {0};
    assert_int_equal(
        chat_store_append(st, room, "poster", "Poster", "hi", 2, on_appended, &r, NULL), 0);
    RH_WAIT_FOR(&c->env, r.done, WAIT_MS);
    assert_int_equal(r.err, 0);
    snprintf(out, 64, "%s", r.id);
    return r.seq;
}

/* A string reply of a command on Redis itself ("" for nil). */
static void redis_get(ctx_t *c, char out[256], const char *fmt, const char *a, const char *b) {
    redisReply *r = rh_command(c->port, NULL, fmt, a, b);
    assert_non_null(r);
    assert_true(r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL ||
                r->type == REDIS_REPLY_INTEGER);
    if (r->type == REDIS_REPLY_STRING)
        snprintf(out, 256, "%s", r->str);
    else if (r->type == REDIS_REPLY_INTEGER)
        snprintf(out, 256, "%lld", r->integer);
    else
        out[0] = '\0';
    freeReplyObject(r);
}

/* ---- fixture ---- */

static chat_store_t *open_node(ctx_t *c, int port) {
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    chat_store_t *st = NULL;
    assert_int_equal(chat_store_open_redis(&c->env.loop, url, NULL, &st), 0);
    return st;
}

static int setup(void **state) {
    ctx_t *c = calloc(1, sizeof *c);
    if (!c || rh_env_init(&c->env)) {
        free(c);
        return -1;
    }
    *state = c;
    c->port = rh_server_start(&c->env.srv, NULL);
    c->a = open_node(c, c->port);
    c->b = open_node(c, c->port);
    RH_WAIT_FOR(&c->env, chat_store_health(c->a, NULL) == 0 && chat_store_health(c->b, NULL) == 0,
                WAIT_MS);
    return 0;
}

/* One answered call on each node: every command a node sent on connecting (its scripts)
 * has been answered too. A server killed with commands unread resets the connections
 * (RST), which the hiredis 0.14 libuv adapter never reports (it drops poll errors): the
 * nodes would wait on them for ever. */
static void settle(ctx_t *c) {
    chat_store_t *nodes[] = {c->a, c->b};
    for (size_t i = 0; i < 2; i++) {
        list_t l = {0};
        assert_int_equal(chat_store_members(nodes[i], "settle", on_members, &l), 0);
        RH_WAIT_FOR(&c->env, l.done, WAIT_MS);
    }
}

static int teardown(void **state) {
    ctx_t *c = *state;
    int rc = 0;
    chat_store_t *stores[] = {c->a, c->b};
    for (size_t i = 0; i < 2; i++) {
        if (stores[i]) {
            c->closing++;
            chat_store_close(stores[i], on_closed, c);
        }
    }
    RH_RUN_UNTIL(&c->env, c->closing == 0, WAIT_MS);
    if (c->closing || rh_env_close(&c->env))
        rc = -1;
    free(c);
    return rc;
}

/* ---- tests ---- */

static void test_membership_across_nodes(void **state) {
    ctx_t *c = *state;
    int64_t before = time_wall_ms();
    join(c, c->a, "r1", "alice", "Alice");
    join(c, c->b, "r1", "bob", "Bob");
    join(c, c->a, "r2", "alice", "Alice");
    int64_t after = time_wall_ms();

    /* Node b sees node a's joins, and the reverse; both sorted. */
    list_t m = members(c, c->b, "r1");
    assert_int_equal(m.n, 2);
    assert_string_equal(m.items[0].id, "alice");
    assert_string_equal(m.items[0].name, "Alice");
    assert_string_equal(m.items[1].id, "bob");
    assert_string_equal(m.items[1].name, "Bob");
    assert_int_equal(m.last_seq, 0);
    for (size_t i = 0; i < 2; i++) {
        assert_true(m.items[i].joined_at >= before && m.items[i].joined_at <= after);
        assert_int_equal(m.items[i].read_seq, 0);
    }
    int64_t alice_joined = m.items[0].joined_at;
    m = members(c, c->a, "r1");
    assert_int_equal(m.n, 2);
    assert_string_equal(m.items[1].id, "bob");

    list_t r = user_rooms(c, c->b, "alice");
    assert_int_equal(r.n, 2);
    assert_string_equal(r.items[0].id, "r1");
    assert_string_equal(r.items[1].id, "r2");
    assert_int_equal(r.items[0].joined_at, alice_joined);
    assert_int_equal(r.items[0].last_seq, 0);
    assert_int_equal(r.items[0].read_seq, 0);
    r = user_rooms(c, c->a, "bob");
    assert_int_equal(r.n, 1);
    assert_string_equal(r.items[0].id, "r1");
    assert_int_equal(user_rooms(c, c->a, "nobody").n, 0);
    assert_int_equal(members(c, c->a, "empty").n, 0);

    /* A second join, from the other node, later: the name changes, the time stays. */
    rh_run_for(&c->env, 5);
    join(c, c->b, "r1", "alice", "Alice Again");
    m = members(c, c->a, "r1");
    assert_int_equal(m.n, 2);
    assert_string_equal(m.items[0].name, "Alice Again");
    assert_int_equal(m.items[0].joined_at, alice_joined);

    /* A forget on node b removes both sides, as Redis itself shows. */
    forget(c, c->b, "r1", "alice");
    char v[256];
    redis_get(c, v, "HEXISTS chat:room:%s:members %s", "r1", "alice");
    assert_string_equal(v, "0");
    redis_get(c, v, "SISMEMBER chat:user:%s:rooms %s", "alice", "r1");
    assert_string_equal(v, "0");
    redis_get(c, v, "SISMEMBER chat:user:%s:rooms %s", "alice", "r2");
    assert_string_equal(v, "1");
    r = user_rooms(c, c->a, "alice");
    assert_int_equal(r.n, 1);
    assert_string_equal(r.items[0].id, "r2");
    m = members(c, c->a, "r1");
    assert_int_equal(m.n, 1);
    assert_string_equal(m.items[0].id, "bob");
    forget(c, c->a, "r1", "alice"); /* not a member: no error */
    forget(c, c->a, "nowhere", "nobody");

    /* Rejoining starts a new membership: a new first join. */
    rh_run_for(&c->env, 5);
    join(c, c->a, "r1", "alice", "Alice");
    m = members(c, c->b, "r1");
    assert_int_equal(m.n, 2);
    assert_true(m.items[0].joined_at > alice_joined);
}

static void test_mark_read_upto(void **state) {
    ctx_t *c = *state;
    char id[3][64];
    for (int i = 0; i < 3; i++)
        assert_int_equal(append(c, i % 2 ? c->b : c->a, "m", id[i]), (uint64_t)i + 1);

    /* Up to a seq, from either node; reported as it stands after the call. */
    result_t r = mark(c, c->a, "m", "alice", NULL, 0, 2);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.mark, 2);
    r = mark(c, c->b, "m", "alice", NULL, 0, 1); /* never back */
    assert_int_equal(r.err, 0);
    assert_int_equal(r.mark, 2);
    r = mark(c, c->b, "m", "alice", NULL, 0, 99); /* clamped to the last seq */
    assert_int_equal(r.err, 0);
    assert_int_equal(r.mark, 3);
    r = mark(c, c->a, "m", "alice", NULL, 0, 0); /* nothing asked: the mark */
    assert_int_equal(r.err, 0);
    assert_int_equal(r.mark, 3);

    /* The stored mark names the message at its seq. */
    char v[256], want[128];
    redis_get(c, v, "HGET chat:room:%s:reads %s", "m", "alice");
    snprintf(want, sizeof want, "\"id\":\"%s\"", id[2]);
    assert_non_null(strstr(v, want));
    assert_non_null(strstr(v, "\"seq\":3"));

    /* Ids and a seq together: the highest wins. */
    const char *first[] = {id[0]};
    r = mark(c, c->a, "m", "bob", first, 1, 2);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.mark, 2);
    const char *last[] = {"not-an-id", id[2]};
    r = mark(c, c->b, "m", "bob", last, 2, 1);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.mark, 3);

    /* Nothing that names a message: -ENOENT, nothing stored. */
    const char *unknown[] = {"ffffffffffffffff-1"};
    r = mark(c, c->a, "m", "carol", unknown, 1, 0);
    assert_int_equal(r.err, -ENOENT);
    r = mark(c, c->a, "no-messages", "carol", NULL, 0, 5);
    assert_int_equal(r.err, -ENOENT);
    redis_get(c, v, "HEXISTS chat:room:%s:reads %s", "no-messages", "carol");
    assert_string_equal(v, "0");
    redis_get(c, v, "HEXISTS chat:room:%s:reads %s", "m", "carol");
    assert_string_equal(v, "0");
    r = mark(c, c->a, "m", "carol", NULL, 0, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.mark, 0);

    /* The reads carry the marks and the last seq; a forget keeps the mark. */
    join(c, c->a, "m", "alice", "Alice");
    join(c, c->b, "m", "carol", "Carol");
    list_t m = members(c, c->b, "m");
    assert_int_equal(m.n, 2);
    assert_int_equal(m.last_seq, 3);
    assert_string_equal(m.items[0].id, "alice");
    assert_int_equal(m.items[0].read_seq, 3);
    assert_string_equal(m.items[1].id, "carol");
    assert_int_equal(m.items[1].read_seq, 0);
    list_t rooms = user_rooms(c, c->a, "alice");
    assert_int_equal(rooms.n, 1);
    assert_int_equal(rooms.items[0].last_seq, 3);
    assert_int_equal(rooms.items[0].read_seq, 3);

    forget(c, c->b, "m", "alice");
    redis_get(c, v, "HEXISTS chat:room:%s:reads %s", "m", "alice");
    assert_string_equal(v, "1");
    assert_int_equal(append(c, c->a, "m", id[0]), 4);
    join(c, c->b, "m", "alice", "Alice");
    rooms = user_rooms(c, c->b, "alice");
    assert_int_equal(rooms.n, 1);
    assert_int_equal(rooms.items[0].last_seq, 4);
    assert_int_equal(rooms.items[0].read_seq, 3); /* one unread */
}

/* What another server (or a hand) wrote badly is passed over: a member whose value is not
 * our JSON is listed with what can be read of it; a room in a user's set without the
 * user among its members is not listed; a read mark that is not JSON counts as none. */
static void test_foreign_values(void **state) {
    ctx_t *c = *state;
    freeReplyObject(rh_command(c->port, NULL, "HSET chat:room:odd:members mallory %s", "nope"));
    freeReplyObject(rh_command(c->port, NULL, "HSET chat:room:odd:reads mallory %s", "[1"));
    freeReplyObject(rh_command(c->port, NULL, "SADD chat:user:mallory:rooms %s", "ghost"));
    freeReplyObject(rh_command(c->port, NULL, "SADD chat:user:mallory:rooms %s", "odd"));
    join(c, c->a, "odd", "zed", "Zed");
    list_t m = members(c, c->a, "odd");
    assert_int_equal(m.n, 2);
    assert_string_equal(m.items[0].id, "mallory");
    assert_string_equal(m.items[0].name, "");
    assert_int_equal(m.items[0].joined_at, 0);
    assert_int_equal(m.items[0].read_seq, 0);
    assert_string_equal(m.items[1].name, "Zed");
    list_t r = user_rooms(c, c->b, "mallory");
    assert_int_equal(r.n, 1);
    assert_string_equal(r.items[0].id, "odd");
    /* A join over the bad value writes a good one. */
    join(c, c->b, "odd", "mallory", "Mallory");
    m = members(c, c->a, "odd");
    assert_string_equal(m.items[0].name, "Mallory");
    assert_true(m.items[0].joined_at > 0);
}

static void test_refused(void **state) {
    ctx_t *c = *state;
    list_t l = {0};
    result_t r = {0};
    assert_int_equal(chat_store_join(c->a, "r", "u", NULL, on_done, &r), -EINVAL);
    assert_int_equal(chat_store_join(c->a, "r", NULL, "U", on_done, &r), -EINVAL);
    assert_int_equal(chat_store_join(c->a, "r", "u", "\xff", on_done, &r), -EINVAL);
    assert_int_equal(chat_store_forget(c->a, NULL, "u", on_done, &r), -EINVAL);
    assert_int_equal(chat_store_user_rooms(c->a, "u", NULL, &l), -EINVAL);
    assert_int_equal(chat_store_user_rooms(c->a, NULL, on_rooms, &l), -EINVAL);
    assert_int_equal(chat_store_members(c->a, NULL, on_members, &l), -EINVAL);
    assert_int_equal(chat_store_mark_read(c->a, "r", "u", NULL, 1, 0, on_mark, &r), -EINVAL);
    char long_id[300];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    assert_int_equal(chat_store_join(c->a, long_id, "u", "U", on_done, &r), -EINVAL);
    assert_int_equal(chat_store_user_rooms(c->a, long_id, on_rooms, &l), -EINVAL);

    /* Redis gone: -EIO at once, no callback. */
    settle(c);
    rh_server_kill(&c->env.srv, c->port);
    RH_WAIT_FOR(&c->env,
                chat_store_health(c->a, NULL) == -EIO && chat_store_health(c->b, NULL) == -EIO,
                WAIT_MS);
    assert_int_equal(chat_store_join(c->a, "r", "u", "U", on_done, &r), -EIO);
    assert_int_equal(chat_store_forget(c->a, "r", "u", on_done, &r), -EIO);
    assert_int_equal(chat_store_user_rooms(c->a, "u", on_rooms, &l), -EIO);
    assert_int_equal(chat_store_members(c->a, "r", on_members, &l), -EIO);
    assert_int_equal(chat_store_mark_read(c->a, "r", "u", NULL, 0, 3, on_mark, &r), -EIO);
    rh_run_for(&c->env, 20);
    assert_false(r.done);
    assert_false(l.done);
}

/* Calls in flight when the store closes are answered before close's done. */
static void test_close_answers(void **state) {
    ctx_t *c = *state;
    result_t j = {0}, mk = {0};
    list_t l = {0}, m = {0};
    assert_int_equal(chat_store_join(c->a, "c", "u", "U", on_done, &j), 0);
    assert_int_equal(chat_store_mark_read(c->a, "c", "u", NULL, 0, 0, on_mark, &mk), 0);
    assert_int_equal(chat_store_user_rooms(c->a, "u", on_rooms, &l), 0);
    assert_int_equal(chat_store_members(c->a, "c", on_members, &m), 0);
    c->closing++;
    chat_store_close(c->a, on_closed, c);
    c->a = NULL;
    RH_WAIT_FOR(&c->env, c->closing == 0, WAIT_MS);
    assert_true(j.done && mk.done && l.done && m.done);
    assert_int_equal(j.err, 0);
    assert_int_equal(l.n, 1); /* in order on one connection: the join went first */
    assert_int_equal(m.n, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_membership_across_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mark_read_upto, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_answers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
