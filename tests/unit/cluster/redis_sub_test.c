/* tests/unit/cluster/redis_sub_test.c — sharded pub/sub against a real redis-server
 * (redis_sub.c).
 *
 * Each test starts its own redis-server (a free loopback port or a Unix socket, no
 * persistence) and drives the connection on a uv loop; every wait is bounded by a timer.
 * Checked: `ready` comes, sending before it gives -EPIPE; SSUBSCRIBE's confirmation, an
 * SPUBLISHed message with NUL and CR LF bytes in it (published from a plain synchronous
 * hiredis connection), SUNSUBSCRIBE with explicit lengths, and an error reply all arrive
 * through `push`; after SIGKILL `lost` comes, and once the server is back on the same
 * port `ready` comes again and the subscription made from inside it works; closing from
 * inside `push` stops delivery at once. A password server accepts redis://:pass@ and
 * redis://user:pass@ (through "localhost") and never reports a wrong or missing password
 * ready; the unix:// form works; closing while resolving, between attempts and with a
 * path that cannot work frees everything. A fake Redis checks that what the reader cannot
 * parse drops the connection. The servers are killed in the teardown, which runs after a
 * failed test too, and die with this process (PR_SET_PDEATHSIG) otherwise: the servers,
 * the waits, the synchronous connections and the fake are redis_harness.c's. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/redis_sub.h"
#include "redis_harness.h"

#define MAX_SUBS 4
#define MAX_PUSH 16
/* The bound of every wait on the loop. */
#define WAIT_MS 3000

typedef struct {
    redis_sub_t *s;
    int ready, lost, npush;
    bool closed; /* redis_sub_close called */
    bool done;   /* its done ran */
    bool ready_in_lost;
    const char *resubscribe; /* SSUBSCRIBEd from `ready` when set */
    int resubscribe_rc;
    bool close_in_ready, close_in_push, close_in_lost; /* redis_sub_close from there */
    rh_reply_t push[MAX_PUSH];                         /* copied out of `push` */
} sub_rec_t;

typedef struct {
    rh_env_t env; /* the loop, the servers, the fake */
    sub_rec_t subs[MAX_SUBS];
    int nsubs;
} ctx_t;

/* SPUBLISH from a plain synchronous connection; returns the receivers Redis counted. */
static long long spublish(int port, const char *path, const char *ch, const void *msg, size_t len) {
    redisReply *r = rh_command(port, path, "SPUBLISH %s %b", ch, msg, len);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

/* ---- the subscriber's callbacks: they only record; the tests assert ---- */

static void on_done(void *arg) {
    sub_rec_t *r = arg;
    r->done = true;
}

static void close_from_callback(redis_sub_t *s, sub_rec_t *r) {
    if (!r->closed) {
        r->closed = true;
        redis_sub_close(s, on_done, r);
    }
}

static void on_ready(redis_sub_t *s, void *arg) {
    sub_rec_t *r = arg;
    r->ready++;
    if (r->resubscribe) {
        const char *argv[] = {"SSUBSCRIBE", r->resubscribe};
        r->resubscribe_rc = redis_sub_send(s, 2, argv, NULL);
    }
    if (r->close_in_ready)
        close_from_callback(s, r);
}

static void on_push(redis_sub_t *s, const redisReply *reply, void *arg) {
    sub_rec_t *r = arg;
    if (r->npush < MAX_PUSH)
        rh_reply_copy(&r->push[r->npush], reply);
    r->npush++;
    if (r->close_in_push)
        close_from_callback(s, r);
}

static void on_lost(redis_sub_t *s, void *arg) {
    sub_rec_t *r = arg;
    r->lost++;
    r->ready_in_lost = redis_sub_ready(s);
    if (r->close_in_lost)
        close_from_callback(s, r);
}

static const redis_sub_cb_t sub_cb = {.ready = on_ready, .push = on_push, .lost = on_lost};

static sub_rec_t *sub_open(ctx_t *c, const char *url) {
    assert_true(c->nsubs < MAX_SUBS);
    sub_rec_t *r = &c->subs[c->nsubs++];
    redis_endpoint_t ep;
    assert_int_equal(redis_endpoint_parse(url, &ep), 0);
    assert_int_equal(redis_sub_open(&c->env.loop, &ep, "test", &sub_cb, r, &r->s), 0);
    redis_endpoint_free(&ep); /* the connection keeps a copy */
    return r;
}

static void sub_close(ctx_t *c, sub_rec_t *r) {
    r->closed = true;
    redis_sub_close(r->s, on_done, r);
    RH_WAIT_FOR(&c->env, r->done, WAIT_MS);
}

static void send2(sub_rec_t *r, const char *cmd, const char *arg) {
    const char *argv[] = {cmd, arg};
    assert_int_equal(redis_sub_send(r->s, 2, argv, NULL), 0);
}

static void assert_confirm(const rh_reply_t *p, const char *kind, const char *ch, long long count) {
    rh_assert_push(p, kind, ch);
    assert_int_equal(p->el[2].type, REDIS_REPLY_INTEGER);
    assert_int_equal(p->el[2].integer, count);
}

static void assert_message(const rh_reply_t *p, const char *ch, const void *msg, size_t len) {
    rh_assert_push(p, "smessage", ch);
    assert_int_equal(p->el[2].type, REDIS_REPLY_STRING);
    assert_int_equal(p->el[2].len, len);
    assert_memory_equal(p->el[2].str, msg, len);
}

/* ---- set-up and teardown ---- */

static int setup(void **state) {
    ctx_t *c = calloc(1, sizeof *c);
    if (!c || rh_env_init(&c->env)) {
        free(c);
        return -1;
    }
    *state = c;
    return 0;
}

static bool all_done(const ctx_t *c) {
    for (int i = 0; i < c->nsubs; i++) {
        if (!c->subs[i].done)
            return false;
    }
    return true;
}

/* Also after a failed test: closes what is open, kills the servers, removes their files. */
static int teardown(void **state) {
    ctx_t *c = *state;
    int rc = 0;
    for (int i = 0; i < c->nsubs; i++) {
        sub_rec_t *r = &c->subs[i];
        if (!r->closed) {
            r->closed = true;
            redis_sub_close(r->s, on_done, r);
        }
    }
    RH_RUN_UNTIL(&c->env, all_done(c), WAIT_MS);
    if (!all_done(c))
        rc = -1;
    if (rh_env_close(&c->env))
        rc = -1;
    free(c);
    return rc;
}

/* ---- the tests ---- */

static void test_sharded(void **state) {
    ctx_t *c = *state;
    int port = rh_server_start(&c->env.srv, NULL);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/3", port); /* the database is ignored */
    sub_rec_t *r = sub_open(c, url);
    sub_rec_t *quitter = sub_open(c, url); /* closes itself from lost */
    quitter->close_in_lost = true;
    const char *argv[] = {"SSUBSCRIBE", "ch"};
    assert_false(redis_sub_ready(r->s));
    assert_false(redis_sub_ready(NULL));
    assert_int_equal(redis_sub_send(r->s, 2, argv, NULL), -EPIPE);

    RH_WAIT_FOR(&c->env, r->ready == 1 && quitter->ready == 1, WAIT_MS);
    assert_true(redis_sub_ready(r->s));
    send2(r, "SSUBSCRIBE", "ch");
    RH_WAIT_FOR(&c->env, r->npush == 1, WAIT_MS);
    assert_confirm(&r->push[0], "ssubscribe", "ch", 1);

    static const char payload[] = {'a', '\0', 'b', '\r', '\n', (char)0xff};
    assert_int_equal(spublish(port, NULL, "ch", payload, sizeof payload), 1);
    RH_WAIT_FOR(&c->env, r->npush == 2, WAIT_MS);
    assert_message(&r->push[1], "ch", payload, sizeof payload);

    /* Explicit lengths (the command name is cut from a longer buffer). */
    const char *unsub[] = {"SUNSUBSCRIBE-and-more", "ch"};
    const size_t unsub_len[] = {12, 2};
    assert_int_equal(redis_sub_send(r->s, 2, unsub, unsub_len), 0);
    RH_WAIT_FOR(&c->env, r->npush == 3, WAIT_MS);
    assert_confirm(&r->push[2], "sunsubscribe", "ch", 0);

    /* An error reply is a push too, and the connection stays. */
    const char *bad[] = {"SSUBSCRIBE"};
    assert_int_equal(redis_sub_send(r->s, 1, bad, NULL), 0);
    RH_WAIT_FOR(&c->env, r->npush == 4, WAIT_MS);
    assert_int_equal(r->push[3].top.type, REDIS_REPLY_ERROR);
    assert_true(redis_sub_ready(r->s));

    /* The server dies: lost; it comes back on the same port: ready again, and the
     * subscription sent from inside ready holds. */
    r->resubscribe = "ch";
    rh_server_kill(&c->env.srv, port);
    RH_WAIT_FOR(&c->env, r->lost == 1 && quitter->done, WAIT_MS);
    assert_int_equal(quitter->lost, 1);
    assert_false(r->ready_in_lost);
    assert_false(redis_sub_ready(r->s));
    assert_int_equal(redis_sub_send(r->s, 2, argv, NULL), -EPIPE);
    rh_server_start(&c->env.srv, &(rh_server_opts_t){.port = port});
    RH_WAIT_FOR(&c->env, r->ready == 2 && r->npush == 5, WAIT_MS);
    assert_int_equal(r->resubscribe_rc, 0);
    assert_confirm(&r->push[4], "ssubscribe", "ch", 1);
    assert_int_equal(spublish(port, NULL, "ch", "again", 5), 1);
    RH_WAIT_FOR(&c->env, r->npush == 6, WAIT_MS);
    assert_message(&r->push[5], "ch", "again", 5);
    assert_int_equal(r->lost, 1);

    /* Closing from inside push: nothing is delivered after it, even a message that came
     * in the same read. */
    r->close_in_push = true;
    redisContext *pub = rh_connect(port, NULL);
    assert_int_equal(redisAppendCommand(pub, "SPUBLISH ch one"), REDIS_OK);
    assert_int_equal(redisAppendCommand(pub, "SPUBLISH ch two"), REDIS_OK);
    for (int i = 0; i < 2; i++) {
        void *reply;
        assert_int_equal(redisGetReply(pub, &reply), REDIS_OK);
        freeReplyObject(reply);
    }
    redisFree(pub);
    RH_WAIT_FOR(&c->env, r->done, WAIT_MS);
    assert_int_equal(r->npush, 7);
    assert_message(&r->push[6], "ch", "one", 3);
    assert_int_equal(r->lost, 1);
}

static void test_password(void **state) {
    ctx_t *c = *state;
    int port = rh_server_start(&c->env.srv, &(rh_server_opts_t){.password = "s3cret"});
    char url[96];
    snprintf(url, sizeof url, "redis://:s3cret@localhost:%d", port);
    sub_rec_t *good = sub_open(c, url);
    snprintf(url, sizeof url, "redis://default:s3cret@127.0.0.1:%d", port);
    sub_rec_t *user = sub_open(c, url);
    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", port);
    sub_rec_t *wrong = sub_open(c, url);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    sub_rec_t *none = sub_open(c, url);

    RH_WAIT_FOR(&c->env, good->ready == 1 && user->ready == 1, WAIT_MS);
    send2(good, "SSUBSCRIBE", "ch");
    RH_WAIT_FOR(&c->env, good->npush == 1, WAIT_MS);
    assert_confirm(&good->push[0], "ssubscribe", "ch", 1);

    rh_run_for(&c->env, 500); /* a few refused attempts */
    assert_int_equal(wrong->ready, 0);
    assert_int_equal(none->ready, 0);
    assert_int_equal(wrong->npush + none->npush, 0);
    assert_false(redis_sub_ready(wrong->s));
}

static void test_unix_socket(void **state) {
    ctx_t *c = *state;
    char path[96], url[128];
    rh_servers_file(&c->env.srv, "redis.sock", path, sizeof path);
    rh_server_start(&c->env.srv, &(rh_server_opts_t){.unix_path = path});
    snprintf(url, sizeof url, "unix://%s", path);
    sub_rec_t *r = sub_open(c, url);
    RH_WAIT_FOR(&c->env, r->ready == 1, WAIT_MS);
    send2(r, "SSUBSCRIBE", "ch");
    RH_WAIT_FOR(&c->env, r->npush == 1, WAIT_MS);
    assert_confirm(&r->push[0], "ssubscribe", "ch", 1);
    assert_int_equal(spublish(0, path, "ch", "x\0y", 3), 1);
    RH_WAIT_FOR(&c->env, r->npush == 2, WAIT_MS);
    assert_message(&r->push[1], "ch", "x\0y", 3);
    sub_close(c, r);
    assert_int_equal(r->lost, 0);

    r = sub_open(c, url); /* closes itself from ready */
    r->close_in_ready = true;
    RH_WAIT_FOR(&c->env, r->done, WAIT_MS);
    assert_int_equal(r->ready, 1);
    assert_int_equal(r->npush + r->lost, 0);
}

/* What the reader cannot parse drops the connection like EOF does; what came before it
 * in the same read is delivered first. */
static void test_protocol_error(void **state) {
    ctx_t *c = *state;
    /* Answers the PING, sends a push, then bytes that are not RESP. */
    rh_fake_start(&c->env.fake, &c->env.loop,
                  "+PONG\r\n"
                  "*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"
                  "@oops\r\n",
                  NULL, NULL);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", c->env.fake.port);
    sub_rec_t *r = sub_open(c, url);
    RH_WAIT_FOR(&c->env, r->lost == 1, WAIT_MS);
    assert_int_equal(r->ready, 1);
    assert_int_equal(r->npush, 1);
    assert_message(&r->push[0], "ch", "x", 1);
    RH_WAIT_FOR(&c->env, r->lost == 2, WAIT_MS); /* and again after the backoff */
    assert_int_equal(r->ready, 2);
    assert_int_equal(c->env.fake.err, 0);
}

/* A Redis that answers the setup, then nothing (a host gone silent): the PINGs go
 * unanswered and the connection is dropped within two periods (5 s each), then made
 * again; the PINGs' own answers never reach `push`. */
static void test_silent_server(void **state) {
    ctx_t *c = *state;
    rh_fake_start(&c->env.fake, &c->env.loop, "+PONG\r\n", NULL, NULL);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", c->env.fake.port);
    sub_rec_t *r = sub_open(c, url);
    RH_WAIT_FOR(&c->env, r->ready == 1, WAIT_MS);
    rh_run_for(&c->env, 4000);
    assert_int_equal(r->lost, 0); /* one period: the PING is not late yet */
    RH_WAIT_FOR(&c->env, r->lost == 1, 8000);
    assert_int_equal(r->npush, 0);
    RH_WAIT_FOR(&c->env, r->ready == 2, WAIT_MS);
    assert_int_equal(c->env.fake.err, 0);
}

static void test_close_early(void **state) {
    ctx_t *c = *state;
    char url[300];
    snprintf(url, sizeof url, "redis://localhost:%d", rh_free_port()); /* nobody there */
    sub_rec_t *r = sub_open(c, url);
    sub_close(c, r); /* while resolving */

    r = sub_open(c, url);
    rh_run_for(&c->env, 350); /* refused, retried after 100 ms, then 200 ms */
    sub_close(c, r);
    assert_int_equal(r->ready + r->lost + r->npush, 0);

    rh_servers_file(&c->env.srv, "absent.sock", url, sizeof url);
    r = sub_open(c, url);
    rh_run_for(&c->env, 150);
    sub_close(c, r);

    memset(url, 'x', sizeof url - 1); /* longer than any socket path */
    url[0] = '/';
    url[sizeof url - 1] = '\0';
    r = sub_open(c, url);
    rh_run_for(&c->env, 50);
    sub_close(c, r);
    assert_int_equal(r->ready + r->lost + r->npush, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sharded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_early, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
