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
 * path that cannot work frees everything. The servers are killed in the teardown, which
 * runs after a failed test too, and die with this process (PR_SET_PDEATHSIG) otherwise. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cluster/redis_sub.h"

#define MAX_SERVERS 4
#define MAX_SUBS 4
#define MAX_FAKE_CONNS 4
#define MAX_PUSH 16
#define MAX_ELEMENTS 4
#define STR_MAX 64
/* How long a server may take to accept, and the bound of every wait on the loop. */
#define SERVER_START_MS 3000
#define WAIT_MS 3000

/* A reply copied out of `push` (it is borrowed there). */
typedef struct {
    int type;
    long long integer;
    size_t len;
    char str[STR_MAX];
} value_t;

typedef struct {
    value_t top;
    size_t elements;
    value_t el[MAX_ELEMENTS];
} push_t;

typedef struct {
    redis_sub_t *s;
    int ready, lost, npush;
    bool closed; /* redis_sub_close called */
    bool done;   /* its done ran */
    bool ready_in_lost;
    const char *resubscribe; /* SSUBSCRIBEd from `ready` when set */
    int resubscribe_rc;
    bool close_in_ready, close_in_push, close_in_lost; /* redis_sub_close from there */
    push_t push[MAX_PUSH];
} sub_rec_t;

typedef struct {
    uv_loop_t loop;
    uv_timer_t deadline;
    bool expired;
    pid_t servers[MAX_SERVERS];
    int nservers;
    sub_rec_t subs[MAX_SUBS];
    int nsubs;
    char sock_path[64];
    /* A fake Redis on the loop, for what a real one does not send. */
    uv_tcp_t fake;
    bool fake_open;
    int fake_port;
    uv_tcp_t fake_conns[MAX_FAKE_CONNS];
    int fake_nconns;
    int fake_err; /* a failure inside its callbacks, asserted by the test */
} ctx_t;

/* ---- redis-server ---- */

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    assert_int_equal(close(fd), 0);
    return ntohs(sa.sin_port);
}

static bool accepts(int port, const char *path) {
    int fd = socket(path ? AF_UNIX : AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int rc;
    if (path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    } else {
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    }
    assert_int_equal(close(fd), 0);
    return rc == 0;
}

/* Starts redis-server on 127.0.0.1:port, or on the Unix socket `path` alone, with
 * `password` required when not NULL; returns once it accepts connections. */
static pid_t server_start(ctx_t *c, int port, const char *path, const char *password) {
    assert_true(c->nservers < MAX_SERVERS);
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", path ? 0 : port);
    const char *argv[16] = {"redis-server", "--port", port_s,         "--bind", "127.0.0.1",
                            "--save",       "",       "--appendonly", "no"};
    int argc = 9;
    if (path) {
        argv[argc++] = "--unixsocket";
        argv[argc++] = path;
    }
    if (password) {
        argv[argc++] = "--requirepass";
        argv[argc++] = password;
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) || null < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
            _exit(126);
        execvp("redis-server", (char **)argv);
        _exit(127);
    }
    c->servers[c->nservers++] = pid;
    for (int i = 0; i < SERVER_START_MS / 10; i++) {
        if (accepts(port, path))
            return pid;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            fail_msg("redis-server exited (status %d)", status);
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    }
    fail_msg("redis-server did not accept connections within %d ms", SERVER_START_MS);
    return -1;
}

static void server_kill(ctx_t *c, pid_t pid) {
    for (int i = 0; i < c->nservers; i++) {
        if (c->servers[i] != pid)
            continue;
        assert_int_equal(kill(pid, SIGKILL), 0);
        assert_int_equal(waitpid(pid, NULL, 0), pid);
        c->servers[i] = c->servers[--c->nservers];
        return;
    }
    fail_msg("no server %d", (int)pid);
}

/* SPUBLISH from a plain synchronous connection; returns the receivers Redis counted. */
static long long spublish(int port, const char *path, const char *ch, const void *msg, size_t len) {
    const struct timeval tv = {.tv_sec = 2};
    redisContext *rc = path ? redisConnectUnixWithTimeout(path, tv)
                            : redisConnectWithTimeout("127.0.0.1", port, tv);
    assert_non_null(rc);
    assert_int_equal(rc->err, 0);
    assert_int_equal(redisSetTimeout(rc, tv), REDIS_OK);
    redisReply *r = redisCommand(rc, "SPUBLISH %s %b", ch, msg, len);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    redisFree(rc);
    return n;
}

/* ---- the loop ---- */

static void on_deadline(uv_timer_t *t) {
    ctx_t *c = t->data;
    c->expired = true;
}

static void wait_begin(ctx_t *c, uint64_t ms) {
    c->expired = false;
    assert_int_equal(uv_timer_start(&c->deadline, on_deadline, ms, 0), 0);
}

static void wait_end(ctx_t *c) {
    assert_int_equal(uv_timer_stop(&c->deadline), 0);
}

/* Runs the loop until cond holds; fails the test after ms. */
#define WAIT_FOR(c, cond, ms)                                                                      \
    do {                                                                                           \
        wait_begin((c), (ms));                                                                     \
        while (!(cond) && !(c)->expired)                                                           \
            uv_run(&(c)->loop, UV_RUN_ONCE);                                                       \
        wait_end(c);                                                                               \
        if (!(cond))                                                                               \
            fail_msg("timed out after %d ms waiting for %s", (int)(ms), #cond);                    \
    } while (0)

/* Runs the loop for ms, whatever happens. */
static void run_for(ctx_t *c, uint64_t ms) {
    wait_begin(c, ms);
    while (!c->expired)
        uv_run(&c->loop, UV_RUN_ONCE);
    wait_end(c);
}

/* ---- the subscriber's callbacks: they only record; the tests assert ---- */

static void copy_value(value_t *v, const redisReply *r) {
    v->type = r->type;
    v->integer = r->integer;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
        r->type == REDIS_REPLY_ERROR) {
        v->len = r->len;
        memcpy(v->str, r->str, r->len < STR_MAX ? r->len : STR_MAX - 1);
    }
}

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
    if (r->npush < MAX_PUSH) {
        push_t *p = &r->push[r->npush];
        copy_value(&p->top, reply);
        if (reply->type == REDIS_REPLY_ARRAY) {
            p->elements = reply->elements;
            for (size_t i = 0; i < reply->elements && i < MAX_ELEMENTS; i++)
                copy_value(&p->el[i], reply->element[i]);
        }
    }
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
    assert_int_equal(redis_sub_open(&c->loop, &ep, "test", &sub_cb, r, &r->s), 0);
    redis_endpoint_free(&ep); /* the connection keeps a copy */
    return r;
}

static void sub_close(ctx_t *c, sub_rec_t *r) {
    r->closed = true;
    redis_sub_close(r->s, on_done, r);
    WAIT_FOR(c, r->done, WAIT_MS);
}

static void send2(sub_rec_t *r, const char *cmd, const char *arg) {
    const char *argv[] = {cmd, arg};
    assert_int_equal(redis_sub_send(r->s, 2, argv, NULL), 0);
}

static void assert_confirm(const push_t *p, const char *kind, const char *ch, long long count) {
    assert_int_equal(p->top.type, REDIS_REPLY_ARRAY);
    assert_int_equal(p->elements, 3);
    assert_int_equal(p->el[0].type, REDIS_REPLY_STRING);
    assert_string_equal(p->el[0].str, kind);
    assert_string_equal(p->el[1].str, ch);
    assert_int_equal(p->el[2].type, REDIS_REPLY_INTEGER);
    assert_int_equal(p->el[2].integer, count);
}

static void assert_message(const push_t *p, const char *ch, const void *msg, size_t len) {
    assert_int_equal(p->top.type, REDIS_REPLY_ARRAY);
    assert_int_equal(p->elements, 3);
    assert_string_equal(p->el[0].str, "smessage");
    assert_string_equal(p->el[1].str, ch);
    assert_int_equal(p->el[2].type, REDIS_REPLY_STRING);
    assert_int_equal(p->el[2].len, len);
    assert_memory_equal(p->el[2].str, msg, len);
}

/* ---- a fake Redis: answers the PING, sends a push, then bytes that are not RESP ---- */

static void fake_on_conn(uv_stream_t *l, int status) {
    ctx_t *c = l->data;
    if (status < 0 || c->fake_nconns == MAX_FAKE_CONNS) {
        c->fake_err = status < 0 ? status : -ENOSPC;
        return;
    }
    uv_tcp_t *t = &c->fake_conns[c->fake_nconns];
    int rc = uv_tcp_init(&c->loop, t);
    if (rc) {
        c->fake_err = rc;
        return;
    }
    c->fake_nconns++;
    static const char out[] = "+PONG\r\n"
                              "*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"
                              "@oops\r\n";
    uv_buf_t b = uv_buf_init((char *)out, sizeof out - 1);
    if ((rc = uv_accept(l, (uv_stream_t *)t)) || (rc = uv_try_write((uv_stream_t *)t, &b, 1)) < 0)
        c->fake_err = rc;
    else if (rc != (int)b.len)
        c->fake_err = -EAGAIN;
}

static void fake_start(ctx_t *c) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int len = sizeof sa;
    assert_int_equal(uv_tcp_init(&c->loop, &c->fake), 0);
    c->fake_open = true;
    c->fake.data = c;
    assert_int_equal(uv_tcp_bind(&c->fake, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&c->fake, 8, fake_on_conn), 0);
    assert_int_equal(uv_tcp_getsockname(&c->fake, (struct sockaddr *)&sa, &len), 0);
    c->fake_port = ntohs(sa.sin_port);
}

/* ---- set-up and teardown ---- */

static int setup(void **state) {
    ctx_t *c = calloc(1, sizeof *c);
    if (!c || uv_loop_init(&c->loop) || uv_timer_init(&c->loop, &c->deadline))
        return -1;
    c->deadline.data = c;
    snprintf(c->sock_path, sizeof c->sock_path, "/tmp/parley-redis-sub-%d.sock", (int)getpid());
    *state = c;
    return 0;
}

/* Also after a failed test: closes what is open, kills the servers. */
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
    bool all_done;
    wait_begin(c, WAIT_MS);
    for (;;) {
        all_done = true;
        for (int i = 0; i < c->nsubs; i++)
            all_done = all_done && c->subs[i].done;
        if (all_done || c->expired)
            break;
        uv_run(&c->loop, UV_RUN_ONCE);
    }
    wait_end(c);
    for (int i = 0; i < c->nservers; i++) {
        if (kill(c->servers[i], SIGKILL) || waitpid(c->servers[i], NULL, 0) != c->servers[i])
            rc = -1;
    }
    unlink(c->sock_path);
    if (c->fake_open)
        uv_close((uv_handle_t *)&c->fake, NULL);
    for (int i = 0; i < c->fake_nconns; i++)
        uv_close((uv_handle_t *)&c->fake_conns[i], NULL);
    uv_close((uv_handle_t *)&c->deadline, NULL);
    if (uv_run(&c->loop, UV_RUN_DEFAULT) || uv_loop_close(&c->loop) || !all_done)
        rc = -1;
    free(c);
    return rc;
}

/* ---- the tests ---- */

static void test_sharded(void **state) {
    ctx_t *c = *state;
    int port = free_port();
    pid_t pid = server_start(c, port, NULL, NULL);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/3", port); /* the database is ignored */
    sub_rec_t *r = sub_open(c, url);
    sub_rec_t *quitter = sub_open(c, url); /* closes itself from lost */
    quitter->close_in_lost = true;
    const char *argv[] = {"SSUBSCRIBE", "ch"};
    assert_false(redis_sub_ready(r->s));
    assert_false(redis_sub_ready(NULL));
    assert_int_equal(redis_sub_send(r->s, 2, argv, NULL), -EPIPE);

    WAIT_FOR(c, r->ready == 1 && quitter->ready == 1, WAIT_MS);
    assert_true(redis_sub_ready(r->s));
    send2(r, "SSUBSCRIBE", "ch");
    WAIT_FOR(c, r->npush == 1, WAIT_MS);
    assert_confirm(&r->push[0], "ssubscribe", "ch", 1);

    static const char payload[] = {'a', '\0', 'b', '\r', '\n', (char)0xff};
    assert_int_equal(spublish(port, NULL, "ch", payload, sizeof payload), 1);
    WAIT_FOR(c, r->npush == 2, WAIT_MS);
    assert_message(&r->push[1], "ch", payload, sizeof payload);

    /* Explicit lengths (the command name is cut from a longer buffer). */
    const char *unsub[] = {"SUNSUBSCRIBE-and-more", "ch"};
    const size_t unsub_len[] = {12, 2};
    assert_int_equal(redis_sub_send(r->s, 2, unsub, unsub_len), 0);
    WAIT_FOR(c, r->npush == 3, WAIT_MS);
    assert_confirm(&r->push[2], "sunsubscribe", "ch", 0);

    /* An error reply is a push too, and the connection stays. */
    const char *bad[] = {"SSUBSCRIBE"};
    assert_int_equal(redis_sub_send(r->s, 1, bad, NULL), 0);
    WAIT_FOR(c, r->npush == 4, WAIT_MS);
    assert_int_equal(r->push[3].top.type, REDIS_REPLY_ERROR);
    assert_true(redis_sub_ready(r->s));

    /* The server dies: lost; it comes back on the same port: ready again, and the
     * subscription sent from inside ready holds. */
    r->resubscribe = "ch";
    server_kill(c, pid);
    WAIT_FOR(c, r->lost == 1 && quitter->done, WAIT_MS);
    assert_int_equal(quitter->lost, 1);
    assert_false(r->ready_in_lost);
    assert_false(redis_sub_ready(r->s));
    assert_int_equal(redis_sub_send(r->s, 2, argv, NULL), -EPIPE);
    server_start(c, port, NULL, NULL);
    WAIT_FOR(c, r->ready == 2 && r->npush == 5, WAIT_MS);
    assert_int_equal(r->resubscribe_rc, 0);
    assert_confirm(&r->push[4], "ssubscribe", "ch", 1);
    assert_int_equal(spublish(port, NULL, "ch", "again", 5), 1);
    WAIT_FOR(c, r->npush == 6, WAIT_MS);
    assert_message(&r->push[5], "ch", "again", 5);
    assert_int_equal(r->lost, 1);

    /* Closing from inside push: nothing is delivered after it, even a message that came
     * in the same read. */
    r->close_in_push = true;
    redisContext *pub = redisConnect("127.0.0.1", port);
    assert_non_null(pub);
    assert_int_equal(pub->err, 0);
    assert_int_equal(redisAppendCommand(pub, "SPUBLISH ch one"), REDIS_OK);
    assert_int_equal(redisAppendCommand(pub, "SPUBLISH ch two"), REDIS_OK);
    for (int i = 0; i < 2; i++) {
        void *reply;
        assert_int_equal(redisGetReply(pub, &reply), REDIS_OK);
        freeReplyObject(reply);
    }
    redisFree(pub);
    WAIT_FOR(c, r->done, WAIT_MS);
    assert_int_equal(r->npush, 7);
    assert_message(&r->push[6], "ch", "one", 3);
    assert_int_equal(r->lost, 1);
}

static void test_password(void **state) {
    ctx_t *c = *state;
    int port = free_port();
    server_start(c, port, NULL, "s3cret");
    char url[96];
    snprintf(url, sizeof url, "redis://:s3cret@localhost:%d", port);
    sub_rec_t *good = sub_open(c, url);
    snprintf(url, sizeof url, "redis://default:s3cret@127.0.0.1:%d", port);
    sub_rec_t *user = sub_open(c, url);
    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", port);
    sub_rec_t *wrong = sub_open(c, url);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    sub_rec_t *none = sub_open(c, url);

    WAIT_FOR(c, good->ready == 1 && user->ready == 1, WAIT_MS);
    send2(good, "SSUBSCRIBE", "ch");
    WAIT_FOR(c, good->npush == 1, WAIT_MS);
    assert_confirm(&good->push[0], "ssubscribe", "ch", 1);

    run_for(c, 500); /* a few refused attempts */
    assert_int_equal(wrong->ready, 0);
    assert_int_equal(none->ready, 0);
    assert_int_equal(wrong->npush + none->npush, 0);
    assert_false(redis_sub_ready(wrong->s));
}

static void test_unix_socket(void **state) {
    ctx_t *c = *state;
    server_start(c, 0, c->sock_path, NULL);
    char url[96];
    snprintf(url, sizeof url, "unix://%s", c->sock_path);
    sub_rec_t *r = sub_open(c, url);
    WAIT_FOR(c, r->ready == 1, WAIT_MS);
    send2(r, "SSUBSCRIBE", "ch");
    WAIT_FOR(c, r->npush == 1, WAIT_MS);
    assert_confirm(&r->push[0], "ssubscribe", "ch", 1);
    assert_int_equal(spublish(0, c->sock_path, "ch", "x\0y", 3), 1);
    WAIT_FOR(c, r->npush == 2, WAIT_MS);
    assert_message(&r->push[1], "ch", "x\0y", 3);
    sub_close(c, r);
    assert_int_equal(r->lost, 0);

    r = sub_open(c, url); /* closes itself from ready */
    r->close_in_ready = true;
    WAIT_FOR(c, r->done, WAIT_MS);
    assert_int_equal(r->ready, 1);
    assert_int_equal(r->npush + r->lost, 0);
}

/* What the reader cannot parse drops the connection like EOF does; what came before it
 * in the same read is delivered first. */
static void test_protocol_error(void **state) {
    ctx_t *c = *state;
    fake_start(c);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", c->fake_port);
    sub_rec_t *r = sub_open(c, url);
    WAIT_FOR(c, r->lost == 1, WAIT_MS);
    assert_int_equal(r->ready, 1);
    assert_int_equal(r->npush, 1);
    assert_message(&r->push[0], "ch", "x", 1);
    WAIT_FOR(c, r->lost == 2, WAIT_MS); /* and again after the backoff */
    assert_int_equal(r->ready, 2);
    assert_int_equal(c->fake_err, 0);
}

static void test_close_early(void **state) {
    ctx_t *c = *state;
    char url[300];
    snprintf(url, sizeof url, "redis://localhost:%d", free_port()); /* nobody there */
    sub_rec_t *r = sub_open(c, url);
    sub_close(c, r); /* while resolving */

    r = sub_open(c, url);
    run_for(c, 350); /* refused, retried after 100 ms, then 200 ms */
    sub_close(c, r);
    assert_int_equal(r->ready + r->lost + r->npush, 0);

    snprintf(url, sizeof url, "%s.absent", c->sock_path);
    r = sub_open(c, url);
    run_for(c, 150);
    sub_close(c, r);

    memset(url, 'x', sizeof url - 1); /* longer than any socket path */
    url[0] = '/';
    url[sizeof url - 1] = '\0';
    r = sub_open(c, url);
    run_for(c, 50);
    sub_close(c, r);
    assert_int_equal(r->ready + r->lost + r->npush, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sharded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_early, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
