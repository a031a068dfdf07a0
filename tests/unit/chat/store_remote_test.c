/* tests/unit/chat/store_remote_test.c — a worker's store through the supervisor's owner
 * (src/chat/store_remote.c, store_owner.c): membership and read marks over the pipe.
 *
 * The program runs as the real thing does: main starts a supervisor (cluster_start) with
 * the chat's owner service on a memory store and two workers, which are this program
 * again (PARLEY_WORKER in the environment). Worker 2 joins a user to a room and waits;
 * worker 1 runs the tests, writes how many failed to a file the supervisor named, and
 * stops the supervisor (SIGTERM), which stops both workers and returns; main then answers
 * with that count. An alarm bounds the whole run.
 *
 * Checked from worker 1: join, forget, a second join (the name changes, the first join's
 * time stays), a user's rooms and a room's members with their fields, sorted; worker 2's
 * join seen here; mark_read up to a seq with the mark it reports (clamped, never back,
 * with ids, -ENOENT, nothing asked); bad arguments refused at once; and frames the owner
 * cannot read (fields missing or left over, a count far beyond the frame, a NUL in a
 * string, an unknown type) leave it serving: the next calls are answered as before. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../cluster/redis_harness.h"
#include "chat/store_remote.h"
#include "cluster/wire.h"
#include "util/time.h"

#define RESULT_ENV "PARLEY_STORE_REMOTE_TEST_RESULT"
#define WORKER_ENV "PARLEY_WORKER" /* cluster/internal.h: set in the workers only */
#define RUN_LIMIT_S 60
#define WAIT_MS 3000
#define MAX_ITEMS 8

static parley_worker_t *worker;
static rh_env_t env; /* the worker's loop and bounded waits (no Redis here) */
static chat_store_t *st;

typedef struct {
    char id[64];
    char name[64];
    uint64_t last_seq, read_seq;
    int64_t joined_at;
} item_t;

typedef struct {
    bool done;
    int err;
    size_t n;
    uint64_t last_seq;
    item_t items[MAX_ITEMS];
} list_t;

typedef struct {
    bool done;
    int err;
    uint64_t value; /* a mark or a seq */
    char id[64];
} result_t;

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
    r->value = mark;
}

static void on_appended(int err, chat_msg_t *m, void *arg) {
    result_t *r = arg;
    r->done = true;
    r->err = err;
    if (m) {
        r->value = m->seq;
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
    *(bool *)arg = true;
}

/* ---- calls, each waited for ---- */

static void join(const char *room, const char *user, const char *name) {
    result_t r = {0};
    assert_int_equal(chat_store_join(st, room, user, name, on_done, &r), 0);
    RH_WAIT_FOR(&env, r.done, WAIT_MS);
    assert_int_equal(r.err, 0);
}

static void forget(const char *room, const char *user) {
    result_t r = {0};
    assert_int_equal(chat_store_forget(st, room, user, on_done, &r), 0);
    RH_WAIT_FOR(&env, r.done, WAIT_MS);
    assert_int_equal(r.err, 0);
}

static list_t user_rooms(const char *user) {
    list_t l = {0};
    assert_int_equal(chat_store_user_rooms(st, user, on_rooms, &l), 0);
    RH_WAIT_FOR(&env, l.done, WAIT_MS);
    assert_int_equal(l.err, 0);
    return l;
}

static list_t members(const char *room) {
    list_t l = {0};
    assert_int_equal(chat_store_members(st, room, on_members, &l), 0);
    RH_WAIT_FOR(&env, l.done, WAIT_MS);
    assert_int_equal(l.err, 0);
    return l;
}

static result_t mark(const char *room, const char *user, const char *const *ids, size_t n,
                     uint64_t upto) {
    result_t r = {0};
    assert_int_equal(chat_store_mark_read(st, room, user, ids, n, upto, on_mark, &r), 0);
    RH_WAIT_FOR(&env, r.done, WAIT_MS);
    return r;
}

static result_t append(const char *room) {
    result_t r = {0};
    assert_int_equal(
        chat_store_append(st, room, "poster", "Poster", "hi", 2, on_appended, &r, NULL), 0);
    RH_WAIT_FOR(&env, r.done, WAIT_MS);
    assert_int_equal(r.err, 0);
    return r;
}

/* ---- fixture: a remote store per test, on the worker's one loop ---- */

static int setup(void **state) {
    return chat_store_open_remote(&env.loop, worker, &st) ? -1 : 0;
}

static int teardown(void **state) {
    bool closed = false;
    chat_store_close(st, on_closed, &closed);
    RH_RUN_UNTIL(&env, closed, WAIT_MS);
    st = NULL;
    return closed ? 0 : -1;
}

/* ---- tests ---- */

static void test_membership(void **state) {
    int64_t before = time_wall_ms();
    join("r1", "alice", "Alice");
    join("r1", "bob", "Bob");
    join("r2", "alice", "Alice");
    int64_t after = time_wall_ms();

    list_t r = user_rooms("alice");
    assert_int_equal(r.n, 2);
    assert_string_equal(r.items[0].id, "r1");
    assert_string_equal(r.items[1].id, "r2");
    assert_true(r.items[0].joined_at >= before && r.items[0].joined_at <= after);
    assert_int_equal(r.items[0].last_seq, 0);
    assert_int_equal(r.items[0].read_seq, 0);
    list_t m = members("r1");
    assert_int_equal(m.n, 2);
    assert_int_equal(m.last_seq, 0);
    assert_string_equal(m.items[0].id, "alice");
    assert_string_equal(m.items[0].name, "Alice");
    assert_string_equal(m.items[1].id, "bob");
    assert_string_equal(m.items[1].name, "Bob");
    int64_t joined = m.items[0].joined_at;
    assert_int_equal(joined, r.items[0].joined_at);

    rh_run_for(&env, 5);
    join("r1", "alice", "Alice Again");
    m = members("r1");
    assert_string_equal(m.items[0].name, "Alice Again");
    assert_int_equal(m.items[0].joined_at, joined);

    forget("r1", "alice");
    forget("r1", "alice"); /* not a member any more: no error */
    r = user_rooms("alice");
    assert_int_equal(r.n, 1);
    assert_string_equal(r.items[0].id, "r2");
    m = members("r1");
    assert_int_equal(m.n, 1);
    assert_string_equal(m.items[0].id, "bob");
    assert_int_equal(user_rooms("nobody").n, 0);
    assert_int_equal(members("empty").n, 0);
}

/* Worker 2 joined "w2" to "shared" when it started: the owner's store is everyone's. */
static void test_other_worker(void **state) {
    list_t r = {0};
    for (int tries = 0; tries < 150 && r.n == 0; tries++) {
        if (tries)
            rh_run_for(&env, 20);
        r = user_rooms("w2");
    }
    assert_int_equal(r.n, 1);
    assert_string_equal(r.items[0].id, "shared");
    list_t m = members("shared");
    assert_int_equal(m.n, 1);
    assert_string_equal(m.items[0].name, "Two");
}

static void test_mark_read_upto(void **state) {
    result_t msg[3];
    for (int i = 0; i < 3; i++) {
        msg[i] = append("m");
        assert_int_equal(msg[i].value, (uint64_t)i + 1);
    }
    result_t r = mark("m", "alice", NULL, 0, 2);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.value, 2);
    r = mark("m", "alice", NULL, 0, 1);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.value, 2);
    r = mark("m", "alice", NULL, 0, 99);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.value, 3);
    r = mark("m", "alice", NULL, 0, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.value, 3);

    const char *first[] = {msg[0].id};
    r = mark("m", "bob", first, 1, 2);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.value, 2);
    const char *unknown[] = {"ffffffffffffffff-1"};
    r = mark("m", "carol", unknown, 1, 0);
    assert_int_equal(r.err, -ENOENT);
    r = mark("no-messages", "carol", NULL, 0, 4);
    assert_int_equal(r.err, -ENOENT);

    join("m", "alice", "Alice");
    list_t rooms = user_rooms("alice");
    size_t at = 0;
    while (at < rooms.n && strcmp(rooms.items[at].id, "m") != 0)
        at++;
    assert_true(at < rooms.n);
    assert_int_equal(rooms.items[at].last_seq, 3);
    assert_int_equal(rooms.items[at].read_seq, 3);
    list_t m = members("m");
    assert_int_equal(m.n, 1);
    assert_int_equal(m.last_seq, 3);
    assert_int_equal(m.items[0].read_seq, 3);
}

static void test_refused(void **state) {
    result_t r = {0};
    list_t l = {0};
    assert_int_equal(chat_store_join(st, "r", "u", NULL, on_done, &r), -EINVAL);
    assert_int_equal(chat_store_join(st, NULL, "u", "U", on_done, &r), -EINVAL);
    assert_int_equal(chat_store_forget(st, "r", NULL, on_done, &r), -EINVAL);
    assert_int_equal(chat_store_user_rooms(st, NULL, on_rooms, &l), -EINVAL);
    assert_int_equal(chat_store_user_rooms(st, "u", NULL, &l), -EINVAL);
    assert_int_equal(chat_store_members(st, "r", NULL, &l), -EINVAL);
    assert_int_equal(chat_store_mark_read(st, "r", "u", NULL, 1, 0, on_mark, &r), -EINVAL);
    /* The owner's store refuses what is not UTF-8: the error comes back. */
    assert_int_equal(chat_store_join(st, "r", "u", "\xff", on_done, &r), 0);
    RH_WAIT_FOR(&env, r.done, WAIT_MS);
    assert_int_equal(r.err, -EINVAL);
}

/* Sends a frame of `type` whose fields were written to body (freed here). */
static void send_raw(uint8_t type, void (*fields)(buf_t *b)) {
    buf_t b = {0};
    size_t start;
    assert_int_equal(wire_begin(&b, type, &start), 0);
    if (fields)
        fields(&b);
    wire_end(&b, start);
    assert_int_equal(cluster_worker_send(worker, b.data, b.len), 0);
    buf_free(&b);
}

#define BAD_REQ 0x7fff0000u /* no request of the store has this number */

static void join_without_name(buf_t *b) {
    assert_int_equal(wire_u32(b, BAD_REQ), 0);
    assert_int_equal(wire_str(b, "r"), 0);
    assert_int_equal(wire_str(b, "u"), 0);
}

static void rooms_left_over(buf_t *b) {
    assert_int_equal(wire_u32(b, BAD_REQ + 1), 0);
    assert_int_equal(wire_str(b, "u"), 0);
    assert_int_equal(wire_u8(b, 1), 0);
}

static void mark_huge_count(buf_t *b) {
    assert_int_equal(wire_u32(b, BAD_REQ + 2), 0);
    assert_int_equal(wire_str(b, "m"), 0);
    assert_int_equal(wire_str(b, "u"), 0);
    assert_int_equal(wire_u64(b, 1), 0);
    assert_int_equal(wire_u32(b, UINT32_MAX), 0);
}

static void forget_with_nul(buf_t *b) {
    assert_int_equal(wire_u32(b, BAD_REQ + 3), 0);
    assert_int_equal(wire_bytes(b, "r\0x", 3), 0);
    assert_int_equal(wire_str(b, "u"), 0);
}

static void members_cut_short(buf_t *b) {
    assert_int_equal(wire_u8(b, 1), 0);
}

static void test_malformed_requests(void **state) {
    join("sturdy", "u", "U");
    send_raw(CHAT_F_JOIN, join_without_name);
    send_raw(CHAT_F_USER_ROOMS, rooms_left_over);
    send_raw(CHAT_F_MARK, mark_huge_count);
    send_raw(CHAT_F_FORGET, forget_with_nul);
    send_raw(CHAT_F_MEMBERS, members_cut_short);
    send_raw(CHAT_F_MEMBERS, NULL);
    send_raw(100, NULL); /* an application type nobody uses */
    /* Answered in order after them: the owner is still there, and none of them wrote. */
    list_t m = members("sturdy");
    assert_int_equal(m.n, 1);
    assert_string_equal(m.items[0].name, "U");
    assert_int_equal(user_rooms("u").n, 1);
    assert_int_equal(members("r").n, 0);
    join("sturdy", "v", "V");
    assert_int_equal(members("sturdy").n, 2);
}

/* ---- the processes ---- */

static void on_sigterm(int sig) {
    _exit(0); /* stopped by the supervisor: the result is written already */
}

/* Worker 2: one join for worker 1 to see, then serve until stopped. */
static int run_second(void) {
    if (chat_store_open_remote(&env.loop, worker, &st))
        return 1;
    result_t r = {0};
    if (chat_store_join(st, "shared", "w2", "Two", on_done, &r))
        return 1;
    uv_run(&env.loop, UV_RUN_DEFAULT);
    return 1; /* the channel keeps the loop alive: not reached unless something broke */
}

static _Noreturn void run_first(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_membership, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_worker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mark_read_upto, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_requests, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    FILE *f = fopen(getenv(RESULT_ENV), "w");
    if (!f || fprintf(f, "%d\n", failed) < 0 || fclose(f))
        fprintf(stderr, "store_remote_test: result not written\n");
    if (kill(getppid(), SIGTERM))
        fprintf(stderr, "store_remote_test: supervisor not stopped\n");
    for (;;)
        pause();
}

int main(int argc, char **argv) {
    bool supervisor = getenv(WORKER_ENV) == NULL;
    char result[] = "/tmp/parley-remote-test-XXXXXX";
    if (supervisor) {
        int fd = mkstemp(result);
        if (fd < 0 || close(fd) || setenv(RESULT_ENV, result, 1))
            return 1;
        alarm(RUN_LIMIT_S);
    }
    chat_owner_config_t cfg = {.kind = "memory"};
    chat_store_config_defaults(&cfg.store);
    int port = 0;
    int rc = cluster_start(argc, argv, 2, "127.0.0.1", &port, &chat_owner_service, &cfg, &worker);
    if (!worker) {
        int failed = -1;
        FILE *f = supervisor ? fopen(result, "r") : NULL;
        if (!f || fscanf(f, "%d", &failed) != 1)
            fprintf(stderr, "store_remote_test: no result from the worker\n");
        if (f)
            fclose(f);
        unlink(result);
        return rc == 0 && failed == 0 ? 0 : 1;
    }
    if (signal(SIGTERM, on_sigterm) == SIG_ERR || rh_env_init(&env))
        return 1;
    if (parley_worker_id(worker) == 2)
        return run_second();
    run_first();
}
