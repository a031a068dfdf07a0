/* tests/unit/cluster/redis_shards_test.c — the masters of a Redis Cluster (redis_shards.c).
 *
 * redis_slot against Redis's own numbers (the spec's examples and hash tags; in the
 * cluster test also against CLUSTER KEYSLOT). A real three-master cluster (redis-server
 * --cluster-enabled, made with redis-cli --cluster create): every shard comes up, the
 * owner of a channel is the master CLUSTER SLOTS names for its slot, SSUBSCRIBE through
 * the owner is confirmed (through another master: MOVED), SPUBLISH through the owner's
 * context reaches the subscriber with that shard's index, SHARDNUMSUB counts it; a
 * refresh calls `ready` again for every shard with the same indexes; a master killed
 * makes redis_shards_ready false while the others still publish and deliver, and a
 * refresh then goes through a publisher (the seed was the one killed). A fake control
 * node scripts CLUSTER SLOTS replies around two plain redis-servers with a password: the
 * seed's password reaches every master and its database is never SELECTed, a malformed
 * reply and an error are retried after REDIS_SHARDS_RETRY_MS, an empty ip means the
 * seed's host, a replica is ignored, a master that leaves is closed (its index answers NULL and
 * -EPIPE) while the other keeps its index, uncovered slots have no owner and keep
 * redis_shards_ready false, and closing from inside `ready` is safe. Against a Redis that
 * is not a cluster nothing is ever ready; closing at once or while nothing answers frees
 * everything. Every wait is bounded by a timer; the servers are killed in the teardown
 * (also after a failure) and die with this process otherwise (PR_SET_PDEATHSIG). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cluster/redis_shards.h"

#define MAX_SERVERS 4
#define MAX_SHARDS 8
#define MAX_PUSH 32
#define MAX_ELEMENTS 4
#define MAX_FAKE_CONNS 4
#define MAX_SCRIPT 8
#define STR_MAX 64
/* How long a server may take to accept, the cluster to form, and every other wait. */
#define SERVER_START_MS 3000
#define CLUSTER_FORM_MS 20000
#define WAIT_MS 3000

typedef struct {
    int type;
    long long integer;
    size_t len;
    char str[STR_MAX];
} value_t;

/* A reply copied out of a callback (they are borrowed there). */
typedef struct {
    int shard; /* for a push: the shard it came on */
    bool got;
    value_t top;
    size_t elements;
    value_t el[MAX_ELEMENTS];
} reply_t;

typedef struct ctx ctx_t;

/* A connection to the fake control node. */
typedef struct {
    uv_tcp_t tcp;
    redisReader *reader;
    ctx_t *c;
} fake_conn_t;

struct ctx {
    uv_loop_t loop;
    uv_timer_t deadline;
    bool expired;
    pid_t servers[MAX_SERVERS];
    int ports[MAX_SERVERS];
    int nservers;
    char dir[64]; /* the cluster's files, when made */
    redis_shards_t *sh;
    bool closed, done;
    int ready[MAX_SHARDS];
    bool close_in_ready;
    reply_t push[MAX_PUSH];
    int npush;
    /* The fake control node: answers PING, and CLUSTER SLOTS from the script (the last
     * entry again once the script is spent). */
    uv_tcp_t fake;
    bool fake_open;
    int fake_port;
    fake_conn_t fake_conns[MAX_FAKE_CONNS];
    int fake_nconns;
    int fake_err;
    char script[MAX_SCRIPT][512];
    int nscript;
    int slots_asked;
};

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

static bool accepts(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    assert_int_equal(close(fd), 0);
    return rc == 0;
}

static void sleep_ms(long ms) {
    nanosleep(&(struct timespec){.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000}, NULL);
}

/* Runs argv in a child that dies with us, its output to `out` (or /dev/null). */
static pid_t spawn(const char **argv, const char *out) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) || fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        execvp(argv[0], (char **)argv);
        _exit(127);
    }
    return pid;
}

/* redis-server on 127.0.0.1:<a free port>, a cluster node when c->dir is set, requiring
 * `password` when not NULL; returns once it accepts connections. */
static int server_start(ctx_t *c, const char *password) {
    assert_true(c->nservers < MAX_SERVERS);
    int port = free_port();
    char port_s[16], bus_s[16], conf[128];
    snprintf(port_s, sizeof port_s, "%d", port);
    /* The bus port would be port + 10000, past 65535 for a high ephemeral port. */
    snprintf(bus_s, sizeof bus_s, "%d", free_port());
    snprintf(conf, sizeof conf, "%s/nodes-%d.conf", c->dir, port);
    const char *argv[20] = {"redis-server", "--port", port_s,         "--bind", "127.0.0.1",
                            "--save",       "",       "--appendonly", "no"};
    if (c->dir[0]) {
        const char *more[] = {"--cluster-enabled",     "yes", "--cluster-port", bus_s,
                              "--cluster-config-file", conf,  "--dir",          c->dir};
        memcpy(&argv[9], more, sizeof more); /* argv stays NULL-terminated */
    } else if (password) {
        argv[9] = "--requirepass";
        argv[10] = password;
    }
    pid_t pid = spawn(argv, NULL);
    c->servers[c->nservers] = pid;
    c->ports[c->nservers++] = port;
    for (int i = 0; i < SERVER_START_MS / 10; i++) {
        if (accepts(port))
            return port;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            c->nservers--; /* reaped: not for the teardown to kill */
            fail_msg("redis-server exited (status %d)", status);
        }
        sleep_ms(10);
    }
    fail_msg("redis-server did not accept connections within %d ms", SERVER_START_MS);
    return -1;
}

static void server_kill(ctx_t *c, int port) {
    for (int i = 0; i < c->nservers; i++) {
        if (c->ports[i] != port)
            continue;
        assert_int_equal(kill(c->servers[i], SIGKILL), 0);
        assert_int_equal(waitpid(c->servers[i], NULL, 0), c->servers[i]);
        c->nservers--;
        c->servers[i] = c->servers[c->nservers];
        c->ports[i] = c->ports[c->nservers];
        return;
    }
    fail_msg("no server on %d", port);
}

/* A command on a plain synchronous connection; the caller frees the reply. */
static redisReply *sync_command(int port, const char *fmt, ...) {
    const struct timeval tv = {.tv_sec = 2};
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", port, tv);
    assert_non_null(rc);
    assert_int_equal(rc->err, 0);
    assert_int_equal(redisSetTimeout(rc, tv), REDIS_OK);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    redisFree(rc);
    return r;
}

/* Makes the three nodes one cluster and waits until every node says it is ok. */
static void cluster_create(ctx_t *c) {
    char addr[3][32], log[128];
    for (int i = 0; i < 3; i++)
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%d", c->ports[i]);
    snprintf(log, sizeof log, "%s/create.log", c->dir);
    const char *argv[] = {"redis-cli", "--cluster",          "create", addr[0],         addr[1],
                          addr[2],     "--cluster-replicas", "0",      "--cluster-yes", NULL};
    pid_t pid = spawn(argv, log);
    int status = -1;
    for (int i = 0; i < CLUSTER_FORM_MS / 10 && waitpid(pid, &status, WNOHANG) != pid; i++)
        sleep_ms(10);
    if (status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("redis-cli --cluster create took more than %d ms", CLUSTER_FORM_MS);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("redis-cli --cluster create failed (status %d): see %s", status, log);
    for (int i = 0; i < 3; i++) {
        for (int t = 0;; t += 20) {
            redisReply *r = sync_command(c->ports[i], "CLUSTER INFO");
            bool ok = r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
            freeReplyObject(r);
            if (ok)
                break;
            if (t >= CLUSTER_FORM_MS)
                fail_msg("node %d not ok after %d ms", c->ports[i], CLUSTER_FORM_MS);
            sleep_ms(20);
        }
    }
}

/* The port of the master that CLUSTER SLOTS (asked of `port`) names for slot. */
static int slot_port(int port, int slot) {
    redisReply *r = sync_command(port, "CLUSTER SLOTS");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    int found = -1;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *range = r->element[i];
        if (range->element[0]->integer <= slot && slot <= range->element[1]->integer)
            found = (int)range->element[2]->element[1]->integer;
    }
    freeReplyObject(r);
    return found;
}

/* ---- the loop ---- */

static void on_deadline(uv_timer_t *t) {
    ctx_t *c = t->data;
    c->expired = true;
}

static void wait_begin(ctx_t *c, uint64_t ms) {
    c->expired = false;
    /* The loop's clock stood still while the cluster was made without it. */
    uv_update_time(&c->loop);
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

static void run_for(ctx_t *c, uint64_t ms) {
    wait_begin(c, ms);
    while (!c->expired)
        uv_run(&c->loop, UV_RUN_ONCE);
    wait_end(c);
}

/* ---- callbacks: they only record; the tests assert ---- */

static void copy_value(value_t *v, const redisReply *r) {
    v->type = r->type;
    v->integer = r->integer;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
        r->type == REDIS_REPLY_ERROR) {
        v->len = r->len;
        memcpy(v->str, r->str, r->len < STR_MAX ? r->len : STR_MAX - 1);
    }
}

static void copy_reply(reply_t *out, const redisReply *r) {
    out->got = true;
    copy_value(&out->top, r);
    if (r->type == REDIS_REPLY_ARRAY) {
        out->elements = r->elements;
        for (size_t i = 0; i < r->elements && i < MAX_ELEMENTS; i++)
            copy_value(&out->el[i], r->element[i]);
    }
}

static void on_done(void *arg) {
    ctx_t *c = arg;
    c->done = true;
}

static void on_ready(redis_shards_t *sh, int shard, void *arg) {
    ctx_t *c = arg;
    assert_true(shard >= 0 && shard < MAX_SHARDS);
    c->ready[shard]++;
    if (c->close_in_ready && !c->closed) {
        c->closed = true;
        redis_shards_close(sh, on_done, c);
    }
}

static void on_push(redis_shards_t *sh, int shard, const redisReply *reply, void *arg) {
    ctx_t *c = arg;
    assert_true(c->npush < MAX_PUSH);
    reply_t *p = &c->push[c->npush++];
    p->shard = shard;
    copy_reply(p, reply);
}

static const redis_shards_cb_t shards_cb = {on_ready, on_push};

static void on_command(redisAsyncContext *ac, void *r, void *priv) {
    reply_t *out = priv;
    assert_non_null(r);
    copy_reply(out, r);
}

/* With the password in the URL when not NULL; the database is ignored (SELECT would be
 * refused by a cluster, and by the fake control node). */
static void shards_open(ctx_t *c, int port, const char *password) {
    char url[96];
    snprintf(url, sizeof url, "redis://%s%s%s127.0.0.1:%d/2", password ? ":" : "",
             password ? password : "", password ? "@" : "", port);
    redis_endpoint_t ep;
    assert_int_equal(redis_endpoint_parse(url, &ep), 0);
    c->closed = c->done = false;
    assert_int_equal(redis_shards_open(&c->loop, &ep, &shards_cb, c, &c->sh), 0);
    redis_endpoint_free(&ep); /* copied */
}

static void shards_close(ctx_t *c) {
    c->closed = true;
    redis_shards_close(c->sh, on_done, c);
    assert_false(c->done); /* never before it returns */
    WAIT_FOR(c, c->done, WAIT_MS);
}

static int total_ready(const ctx_t *c) {
    int n = 0;
    for (int i = 0; i < MAX_SHARDS; i++)
        n += c->ready[i];
    return n;
}

static int owner_of(const ctx_t *c, const char *ch) {
    return redis_shards_owner(c->sh, ch, strlen(ch));
}

/* The port a shard's publisher is connected to. */
static int shard_port(const ctx_t *c, int shard) {
    redisAsyncContext *ac = redis_shards_ctx(c->sh, shard);
    assert_non_null(ac);
    return ac->c.tcp.port;
}

/* SSUBSCRIBE (or another command on the channel) on shard's subscriber; returns the push. */
static const reply_t *sub_command(ctx_t *c, int shard, const char *cmd, const char *ch) {
    const char *argv[] = {cmd, ch};
    int before = c->npush;
    assert_int_equal(redis_shards_sub_send(c->sh, shard, 2, argv, NULL), 0);
    WAIT_FOR(c, c->npush == before + 1, WAIT_MS);
    assert_int_equal(c->push[before].shard, shard);
    return &c->push[before];
}

static void assert_array3(const reply_t *p, const char *kind, const char *ch) {
    assert_int_equal(p->top.type, REDIS_REPLY_ARRAY);
    assert_int_equal(p->elements, 3);
    assert_string_equal(p->el[0].str, kind);
    assert_string_equal(p->el[1].str, ch);
}

/* SPUBLISH through the owner's context: one receiver, and the smessage comes on the
 * owner's subscriber. */
static void publish_through_owner(ctx_t *c, const char *ch, const char *msg) {
    int shard = owner_of(c, ch);
    reply_t rep = {0};
    int before = c->npush;
    assert_int_equal(redisAsyncCommand(redis_shards_ctx(c->sh, shard), on_command, &rep,
                                       "SPUBLISH %s %s", ch, msg),
                     REDIS_OK);
    WAIT_FOR(c, rep.got && c->npush == before + 1, WAIT_MS);
    assert_int_equal(rep.top.type, REDIS_REPLY_INTEGER);
    assert_int_equal(rep.top.integer, 1);
    assert_int_equal(c->push[before].shard, shard);
    assert_array3(&c->push[before], "smessage", ch);
    assert_string_equal(c->push[before].el[2].str, msg);
}

/* ---- the fake control node ---- */

static void fake_conn_closed(uv_handle_t *h) {
    fake_conn_t *f = h->data;
    redisReaderFree(f->reader);
    f->reader = NULL;
}

static void fake_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    static char mem[4096];
    *buf = uv_buf_init(mem, sizeof mem);
}

static void fake_reply(fake_conn_t *f, const char *out) {
    uv_buf_t b = uv_buf_init((char *)out, (unsigned)strlen(out));
    int rc = uv_try_write((uv_stream_t *)&f->tcp, &b, 1);
    if (rc != (int)b.len)
        f->c->fake_err = rc < 0 ? rc : -EAGAIN;
}

static void fake_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    fake_conn_t *f = st->data;
    ctx_t *c = f->c;
    if (nread < 0) {
        if (!uv_is_closing((uv_handle_t *)st))
            uv_close((uv_handle_t *)st, fake_conn_closed);
        return;
    }
    if (redisReaderFeed(f->reader, buf->base, (size_t)nread) != REDIS_OK) {
        c->fake_err = -EPROTO;
        return;
    }
    void *r;
    while (redisReaderGetReply(f->reader, &r) == REDIS_OK && r) {
        const redisReply *cmd = r;
        const char *name =
            cmd->type == REDIS_REPLY_ARRAY && cmd->elements ? cmd->element[0]->str : "";
        if (strcasecmp(name, "PING") == 0) {
            fake_reply(f, "+PONG\r\n");
        } else if (strcasecmp(name, "AUTH") == 0) {
            fake_reply(f, "+OK\r\n");
        } else if (strcasecmp(name, "CLUSTER") == 0) {
            int i = c->slots_asked < c->nscript ? c->slots_asked : c->nscript - 1;
            c->slots_asked++;
            fake_reply(f, c->script[i]);
        } else {
            fake_reply(f, "-ERR unknown command\r\n");
        }
        freeReplyObject(r);
    }
}

static void fake_on_conn(uv_stream_t *l, int status) {
    ctx_t *c = l->data;
    if (status < 0 || c->fake_nconns == MAX_FAKE_CONNS) {
        c->fake_err = status < 0 ? status : -ENOSPC;
        return;
    }
    fake_conn_t *f = &c->fake_conns[c->fake_nconns];
    int rc = uv_tcp_init(&c->loop, &f->tcp);
    if (rc) {
        c->fake_err = rc;
        return;
    }
    c->fake_nconns++;
    f->c = c;
    f->tcp.data = f;
    f->reader = redisReaderCreate();
    if (!f->reader || (rc = uv_accept(l, (uv_stream_t *)&f->tcp)) ||
        (rc = uv_read_start((uv_stream_t *)&f->tcp, fake_alloc, fake_read)))
        c->fake_err = rc ? rc : -ENOMEM;
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

/* A CLUSTER SLOTS reply entry: [start, end, [ip, port, id]], in RESP. */
static void resp_range(char *out, size_t size, int start, int end, const char *ip, int port) {
    size_t used = strlen(out);
    snprintf(out + used, size - used, "*3\r\n:%d\r\n:%d\r\n*3\r\n$%zu\r\n%s\r\n:%d\r\n$2\r\nid\r\n",
             start, end, strlen(ip), ip, port);
}

/* ---- set-up and teardown ---- */

static int setup(void **state) {
    ctx_t *c = calloc(1, sizeof *c);
    if (!c || uv_loop_init(&c->loop) || uv_timer_init(&c->loop, &c->deadline))
        return -1;
    c->deadline.data = c;
    *state = c;
    return 0;
}

static int remove_dir(const char *path) {
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int rc = 0;
    const struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char file[512];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        rc |= unlink(file);
    }
    closedir(d);
    return rc | rmdir(path);
}

/* Also after a failed test: closes what is open, kills the servers, removes the files. */
static int teardown(void **state) {
    ctx_t *c = *state;
    int rc = 0;
    c->close_in_ready = false;
    if (c->sh && !c->closed) {
        c->closed = true;
        redis_shards_close(c->sh, on_done, c);
    }
    wait_begin(c, WAIT_MS);
    while (c->sh && !c->done && !c->expired)
        uv_run(&c->loop, UV_RUN_ONCE);
    wait_end(c);
    if (c->sh && !c->done)
        rc = -1;
    for (int i = 0; i < c->nservers; i++) {
        if (kill(c->servers[i], SIGKILL) || waitpid(c->servers[i], NULL, 0) != c->servers[i])
            rc = -1;
    }
    if (c->dir[0] && remove_dir(c->dir))
        rc = -1;
    if (c->fake_open)
        uv_close((uv_handle_t *)&c->fake, NULL);
    for (int i = 0; i < c->fake_nconns; i++) {
        if (!uv_is_closing((uv_handle_t *)&c->fake_conns[i].tcp))
            uv_close((uv_handle_t *)&c->fake_conns[i].tcp, fake_conn_closed);
    }
    uv_close((uv_handle_t *)&c->deadline, NULL);
    if (uv_run(&c->loop, UV_RUN_DEFAULT) || uv_loop_close(&c->loop))
        rc = -1;
    free(c);
    return rc;
}

/* ---- the tests ---- */

static void test_slot(void **state) {
#define SLOT(s) redis_slot((s), strlen(s))
    assert_int_equal(SLOT("123456789"), 0x31C3 % REDIS_SLOTS); /* the spec's CRC16 check */
    assert_int_equal(SLOT("foo"), 12182);
    assert_int_equal(SLOT("bar"), 5061);
    assert_int_equal(SLOT("{user1000}.following"), 3443);
    assert_int_equal(SLOT("{user1000}.followers"), 3443);
    assert_int_equal(SLOT("user1000"), 3443);
    assert_int_equal(SLOT("foo{}{bar}"), 8363); /* an empty tag: the whole key */
    assert_int_equal(SLOT("foo{{bar}}zap"), SLOT("{bar"));
    assert_int_equal(SLOT("{bar"), 4015);
    assert_int_equal(SLOT("{}"), 15257);
    assert_int_equal(SLOT("a{b}c{d}"), SLOT("b")); /* the first tag only */
    assert_int_equal(SLOT("x{}y"), 16116);
    assert_int_equal(SLOT("{"), 4092); /* no closing brace: the whole key */
    assert_int_equal(SLOT("}{x}"), SLOT("x"));
    assert_int_equal(SLOT(""), 0);
    assert_int_equal(redis_slot("{a\0b}", 5), redis_slot("a\0b", 3)); /* bytes, not C strings */
#undef SLOT
}

static void test_cluster(void **state) {
    ctx_t *c = *state;
    snprintf(c->dir, sizeof c->dir, "/tmp/parley-shards-XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    for (int i = 0; i < 3; i++)
        server_start(c, NULL);
    cluster_create(c);
    int seed = c->ports[0];

    /* redis_slot is Redis's: CLUSTER KEYSLOT agrees, tags and bytes included. */
    static const char *keys[] = {
        "foo",       "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap",
        "parley#/#", "parley#/#room-1#",     "",           "\xff\x01{\x02}"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        redisReply *r = sync_command(seed, "CLUSTER KEYSLOT %b", keys[i], strlen(keys[i]));
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        assert_int_equal(r->integer, redis_slot(keys[i], strlen(keys[i])));
        freeReplyObject(r);
    }

    shards_open(c, seed, NULL);
    const char *sub[] = {"SSUBSCRIBE", "ch"};
    assert_int_equal(owner_of(c, "ch"), -1);
    assert_null(redis_shards_ctx(c->sh, -1));
    assert_null(redis_shards_ctx(c->sh, 0));
    assert_int_equal(redis_shards_sub_send(c->sh, -1, 2, sub, NULL), -EPIPE);
    assert_int_equal(redis_shards_sub_send(c->sh, 0, 2, sub, NULL), -EPIPE);
    assert_false(redis_shards_ready(c->sh));
    WAIT_FOR(c, redis_shards_ready(c->sh) && total_ready(c) == 3, WAIT_MS);

    /* A channel on each master; each shard is the master CLUSTER SLOTS names. */
    char ch[3][32];
    int shard[3] = {-1, -1, -1}, found = 0;
    for (int i = 0; found < 3 && i < 1000; i++) {
        char name[32];
        snprintf(name, sizeof name, "parley#/#room-%d#", i);
        int owner = owner_of(c, name);
        assert_true(owner >= 0 && owner < MAX_SHARDS);
        bool seen = false;
        for (int k = 0; k < found; k++)
            seen = seen || shard[k] == owner;
        if (!seen) {
            snprintf(ch[found], sizeof ch[found], "%s", name);
            shard[found++] = owner;
        }
    }
    assert_int_equal(found, 3);
    int killed = -1; /* the seed's shard */
    for (int k = 0; k < 3; k++) {
        assert_int_equal(c->ready[shard[k]], 1);
        int port = shard_port(c, shard[k]);
        assert_int_equal(port, slot_port(seed, redis_slot(ch[k], strlen(ch[k]))));
        if (port == seed)
            killed = k;
    }
    assert_true(killed >= 0);

    /* Subscribed through the owner: confirmed; through another master: MOVED. */
    for (int k = 0; k < 3; k++) {
        const reply_t *p = sub_command(c, shard[k], "SSUBSCRIBE", ch[k]);
        assert_array3(p, "ssubscribe", ch[k]);
        assert_int_equal(p->el[2].integer, 1);
    }
    const reply_t *moved = sub_command(c, shard[1], "SSUBSCRIBE", ch[0]);
    assert_int_equal(moved->top.type, REDIS_REPLY_ERROR);
    assert_memory_equal(moved->top.str, "MOVED ", 6);

    /* Published through the owner: delivered on its shard, counted there. */
    for (int k = 0; k < 3; k++) {
        publish_through_owner(c, ch[k], "hello");
        reply_t rep = {0};
        assert_int_equal(redisAsyncCommand(redis_shards_ctx(c->sh, shard[k]), on_command, &rep,
                                           "PUBSUB SHARDNUMSUB %s", ch[k]),
                         REDIS_OK);
        WAIT_FOR(c, rep.got, WAIT_MS);
        assert_int_equal(rep.top.type, REDIS_REPLY_ARRAY);
        assert_int_equal(rep.elements, 2);
        assert_string_equal(rep.el[0].str, ch[k]);
        assert_int_equal(rep.el[1].integer, 1);
    }

    /* A refresh (two asked at once: the second waits for the first): `ready` again for
     * every shard, with the same indexes. */
    memset(c->ready, 0, sizeof c->ready);
    redis_shards_refresh(c->sh);
    redis_shards_refresh(c->sh);
    WAIT_FOR(c, c->ready[shard[0]] && c->ready[shard[1]] && c->ready[shard[2]], WAIT_MS);
    for (int k = 0; k < 3; k++)
        assert_int_equal(owner_of(c, ch[k]), shard[k]);
    assert_true(redis_shards_ready(c->sh));

    /* The seed's master dies: its slots are lost (no replica to fail over to). The others
     * still publish and deliver; a refresh goes through one of their publishers. */
    server_kill(c, seed);
    WAIT_FOR(c, !redis_shards_ready(c->sh) && !redis_shards_ctx(c->sh, shard[killed]), WAIT_MS);
    memset(c->ready, 0, sizeof c->ready);
    redis_shards_refresh(c->sh);
    for (int k = 0; k < 3; k++) {
        if (k == killed)
            continue;
        WAIT_FOR(c, c->ready[shard[k]] >= 1, WAIT_MS);
        publish_through_owner(c, ch[k], "still");
    }
    assert_int_equal(c->ready[shard[killed]], 0);
    assert_false(redis_shards_ready(c->sh));
    shards_close(c);
}

/* A scripted control node in front of two plain redis-servers (SSUBSCRIBE and SPUBLISH
 * work on them without cluster mode) that require the seed's password. */
static void test_map_changes(void **state) {
    ctx_t *c = *state;
    int pa = server_start(c, "s3cret"), pb = server_start(c, "s3cret");
    fake_start(c);
    /* 0: a master that is not an array; 1: A (by an empty ip: the seed's host) and B with
     * a replica; 2: all on B; 3: an error; 4: slot 0 uncovered; 5: as 1 again. */
    snprintf(c->script[0], sizeof c->script[0], "*1\r\n*3\r\n:0\r\n:16383\r\n:%d\r\n", pa);
    snprintf(c->script[1], sizeof c->script[1], "*2\r\n");
    resp_range(c->script[1], sizeof c->script[1], 0, 8191, "", pa);
    size_t len = strlen(c->script[1]);
    snprintf(c->script[1] + len, sizeof c->script[1] - len,
             "*4\r\n:8192\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:%d\r\n$2\r\nid\r\n"
             "*3\r\n$9\r\n127.0.0.1\r\n:1\r\n$2\r\nr1\r\n",
             pb);
    snprintf(c->script[2], sizeof c->script[2], "*1\r\n");
    resp_range(c->script[2], sizeof c->script[2], 0, 16383, "127.0.0.1", pb);
    snprintf(c->script[3], sizeof c->script[3],
             "-ERR This instance has cluster support disabled\r\n");
    snprintf(c->script[4], sizeof c->script[4], "*1\r\n");
    resp_range(c->script[4], sizeof c->script[4], 1, 16383, "127.0.0.1", pb);
    memcpy(c->script[5], c->script[1], sizeof c->script[1]);
    c->nscript = 6;

    shards_open(c, c->fake_port, "s3cret"); /* every master needs it */
    WAIT_FOR(c, c->slots_asked == 1, WAIT_MS);
    run_for(c, 100);
    assert_int_equal(owner_of(c, "foo"), -1); /* malformed: nothing used */
    assert_int_equal(total_ready(c), 0);
    WAIT_FOR(c, redis_shards_ready(c->sh) && total_ready(c) == 2, REDIS_SHARDS_RETRY_MS + WAIT_MS);
    assert_int_equal(c->slots_asked, 2);
    int a = owner_of(c, "bar"), b = owner_of(c, "foo"); /* slots 5061 and 12182 */
    assert_true(a >= 0 && b >= 0 && a != b);
    assert_int_equal(shard_port(c, a), pa);
    assert_int_equal(shard_port(c, b), pb);
    assert_array3(sub_command(c, a, "SSUBSCRIBE", "bar"), "ssubscribe", "bar");
    assert_array3(sub_command(c, b, "SSUBSCRIBE", "foo"), "ssubscribe", "foo");
    publish_through_owner(c, "bar", "to A");
    publish_through_owner(c, "foo", "to B");

    /* A leaves: closed; B keeps its index and is told to subscribe again. */
    memset(c->ready, 0, sizeof c->ready);
    redis_shards_refresh(c->sh);
    WAIT_FOR(c, c->slots_asked == 3 && c->ready[b] == 1, WAIT_MS);
    assert_int_equal(owner_of(c, "bar"), b);
    assert_int_equal(owner_of(c, "foo"), b);
    assert_null(redis_shards_ctx(c->sh, a));
    const char *sub[] = {"SSUBSCRIBE", "bar"};
    assert_int_equal(redis_shards_sub_send(c->sh, a, 2, sub, NULL), -EPIPE);
    assert_int_equal(c->ready[a], 0);
    assert_true(redis_shards_ready(c->sh));
    publish_through_owner(c, "foo", "still B");

    /* An error keeps the map (its retry is test_not_a_cluster's); a refresh then reads
     * one with slot 0 uncovered: no owner there, not ready, and read again until it is
     * covered (A back, as a new shard). */
    memset(c->ready, 0, sizeof c->ready);
    redis_shards_refresh(c->sh);
    WAIT_FOR(c, c->slots_asked == 4, WAIT_MS);
    run_for(c, 100);
    assert_int_equal(owner_of(c, "foo"), b);
    assert_true(redis_shards_ready(c->sh));
    assert_int_equal(total_ready(c), 0);
    redis_shards_refresh(c->sh);
    WAIT_FOR(c, c->slots_asked == 5 && c->ready[b] == 1, WAIT_MS);
    assert_int_equal(owner_of(c, ""), -1);
    assert_int_equal(owner_of(c, "foo"), b);
    assert_false(redis_shards_ready(c->sh));
    WAIT_FOR(c, c->slots_asked == 6 && redis_shards_ready(c->sh), REDIS_SHARDS_RETRY_MS + WAIT_MS);
    int a2 = owner_of(c, "bar");
    assert_true(a2 >= 0 && a2 != b);
    assert_int_equal(owner_of(c, "foo"), b);
    assert_int_equal(shard_port(c, a2), pa);
    WAIT_FOR(c, c->ready[a2] == 1, WAIT_MS);
    publish_through_owner(c, "foo", "B again");

    /* Closing from inside `ready` while the others are still being told. */
    c->close_in_ready = true;
    redis_shards_refresh(c->sh);
    WAIT_FOR(c, c->done, WAIT_MS);
    assert_int_equal(c->fake_err, 0);
}

static void test_not_a_cluster(void **state) {
    ctx_t *c = *state;
    int port = server_start(c, NULL);
    shards_open(c, port, NULL);
    run_for(c, REDIS_SHARDS_RETRY_MS + 300); /* the error, then one retry */
    assert_false(redis_shards_ready(c->sh));
    assert_int_equal(owner_of(c, "foo"), -1);
    assert_null(redis_shards_ctx(c->sh, 0));
    assert_int_equal(total_ready(c) + c->npush, 0);
    shards_close(c);

    /* Closed at once, and while nobody answers. */
    shards_open(c, port, NULL);
    shards_close(c);
    shards_open(c, free_port(), NULL);
    run_for(c, 250);
    shards_close(c);
    assert_int_equal(total_ready(c) + c->npush, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slot),
        cmocka_unit_test_setup_teardown(test_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_cluster, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
