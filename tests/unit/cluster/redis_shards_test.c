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
 * (also after a failure) and die with this process otherwise (PR_SET_PDEATHSIG): the
 * servers, the waits, the synchronous connections and the fake are redis_harness.c's. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>

#include "cluster/redis_shards.h"
#include "redis_harness.h"

#define MAX_SHARDS 8
#define MAX_PUSH 32
#define MAX_SCRIPT 8
/* How long the cluster may take to form, and every other wait. */
#define CLUSTER_FORM_MS 20000
#define WAIT_MS 3000

/* A push, copied out of its callback, and the shard it came on. */
typedef struct {
    int shard;
    rh_reply_t r;
} push_t;

typedef struct {
    rh_env_t env; /* the loop, the servers, the fake */
    redis_shards_t *sh;
    bool closed, done;
    int ready[MAX_SHARDS];
    bool close_in_ready;
    push_t push[MAX_PUSH];
    int npush;
    /* For env.fake, the control node: it answers PING and AUTH, and CLUSTER SLOTS from the
     * script (the last entry again once the script is spent). */
    char script[MAX_SCRIPT][512];
    int nscript;
    int slots_asked;
} ctx_t;

/* ---- the cluster ---- */

/* Makes the three nodes one cluster and waits until every node says it is ok. */
static void cluster_create(ctx_t *c) {
    char addr[3][32], log[128];
    for (int i = 0; i < 3; i++)
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%d", c->env.srv.ports[i]);
    rh_servers_file(&c->env.srv, "create.log", log, sizeof log);
    const char *argv[] = {"redis-cli", "--cluster",          "create", addr[0],         addr[1],
                          addr[2],     "--cluster-replicas", "0",      "--cluster-yes", NULL};
    pid_t pid = rh_spawn(argv, log);
    int status = -1;
    for (int i = 0; i < CLUSTER_FORM_MS / 10 && waitpid(pid, &status, WNOHANG) != pid; i++)
        rh_sleep_ms(10);
    if (status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("redis-cli --cluster create took more than %d ms", CLUSTER_FORM_MS);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("redis-cli --cluster create failed (status %d): see %s", status, log);
    for (int i = 0; i < 3; i++) {
        for (int t = 0;; t += 20) {
            redisReply *r = rh_command(c->env.srv.ports[i], NULL, "CLUSTER INFO");
            bool ok = r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
            freeReplyObject(r);
            if (ok)
                break;
            if (t >= CLUSTER_FORM_MS)
                fail_msg("node %d not ok after %d ms", c->env.srv.ports[i], CLUSTER_FORM_MS);
            rh_sleep_ms(20);
        }
    }
}

/* The port of the master that CLUSTER SLOTS (asked of `port`) names for slot. */
static int slot_port(int port, int slot) {
    redisReply *r = rh_command(port, NULL, "CLUSTER SLOTS");
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

/* ---- callbacks: they only record; the tests assert ---- */

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
    push_t *p = &c->push[c->npush++];
    p->shard = shard;
    rh_reply_copy(&p->r, reply);
}

static const redis_shards_cb_t shards_cb = {on_ready, on_push};

static void on_command(redisAsyncContext *ac, void *r, void *priv) {
    rh_reply_t *out = priv;
    assert_non_null(r);
    rh_reply_copy(out, r);
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
    assert_int_equal(redis_shards_open(&c->env.loop, &ep, &shards_cb, c, &c->sh), 0);
    redis_endpoint_free(&ep); /* copied */
}

static void shards_close(ctx_t *c) {
    c->closed = true;
    redis_shards_close(c->sh, on_done, c);
    assert_false(c->done); /* never before it returns */
    RH_WAIT_FOR(&c->env, c->done, WAIT_MS);
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
static const rh_reply_t *sub_command(ctx_t *c, int shard, const char *cmd, const char *ch) {
    const char *argv[] = {cmd, ch};
    int before = c->npush;
    assert_int_equal(redis_shards_sub_send(c->sh, shard, 2, argv, NULL), 0);
    RH_WAIT_FOR(&c->env, c->npush == before + 1, WAIT_MS);
    assert_int_equal(c->push[before].shard, shard);
    return &c->push[before].r;
}

/* SPUBLISH through the owner's context: one receiver, and the smessage comes on the
 * owner's subscriber. */
static void publish_through_owner(ctx_t *c, const char *ch, const char *msg) {
    int shard = owner_of(c, ch);
    rh_reply_t rep = {0};
    int before = c->npush;
    assert_int_equal(redisAsyncCommand(redis_shards_ctx(c->sh, shard), on_command, &rep,
                                       "SPUBLISH %s %s", ch, msg),
                     REDIS_OK);
    RH_WAIT_FOR(&c->env, rep.got && c->npush == before + 1, WAIT_MS);
    assert_int_equal(rep.top.type, REDIS_REPLY_INTEGER);
    assert_int_equal(rep.top.integer, 1);
    assert_int_equal(c->push[before].shard, shard);
    rh_assert_push(&c->push[before].r, "smessage", ch);
    assert_string_equal(c->push[before].r.el[2].str, msg);
}

/* ---- the fake control node ---- */

static void fake_command(rh_fake_conn_t *conn, const redisReply *cmd) {
    ctx_t *c = conn->fake->data;
    const char *name = cmd->type == REDIS_REPLY_ARRAY && cmd->elements ? cmd->element[0]->str : "";
    if (strcasecmp(name, "PING") == 0) {
        rh_fake_reply(conn, "+PONG\r\n");
    } else if (strcasecmp(name, "AUTH") == 0) {
        rh_fake_reply(conn, "+OK\r\n");
    } else if (strcasecmp(name, "CLUSTER") == 0) {
        int i = c->slots_asked < c->nscript ? c->slots_asked : c->nscript - 1;
        c->slots_asked++;
        rh_fake_reply(conn, c->script[i]);
    } else {
        rh_fake_reply(conn, "-ERR unknown command\r\n");
    }
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
    if (!c || rh_env_init(&c->env)) {
        free(c);
        return -1;
    }
    *state = c;
    return 0;
}

/* Also after a failed test: closes what is open, kills the servers, removes their files. */
static int teardown(void **state) {
    ctx_t *c = *state;
    int rc = 0;
    c->close_in_ready = false;
    if (c->sh && !c->closed) {
        c->closed = true;
        redis_shards_close(c->sh, on_done, c);
    }
    RH_RUN_UNTIL(&c->env, !c->sh || c->done, WAIT_MS);
    if (c->sh && !c->done)
        rc = -1;
    if (rh_env_close(&c->env))
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
    for (int i = 0; i < 3; i++)
        rh_server_start(&c->env.srv, &(rh_server_opts_t){.cluster = true});
    cluster_create(c);
    int seed = c->env.srv.ports[0];

    /* redis_slot is Redis's: CLUSTER KEYSLOT agrees, tags and bytes included. */
    static const char *keys[] = {
        "foo",       "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap",
        "parley#/#", "parley#/#room-1#",     "",           "\xff\x01{\x02}"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        redisReply *r = rh_command(seed, NULL, "CLUSTER KEYSLOT %b", keys[i], strlen(keys[i]));
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
    RH_WAIT_FOR(&c->env, redis_shards_ready(c->sh) && total_ready(c) == 3, WAIT_MS);

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
        const rh_reply_t *p = sub_command(c, shard[k], "SSUBSCRIBE", ch[k]);
        rh_assert_push(p, "ssubscribe", ch[k]);
        assert_int_equal(p->el[2].integer, 1);
    }
    const rh_reply_t *moved = sub_command(c, shard[1], "SSUBSCRIBE", ch[0]);
    assert_int_equal(moved->top.type, REDIS_REPLY_ERROR);
    assert_memory_equal(moved->top.str, "MOVED ", 6);

    /* Published through the owner: delivered on its shard, counted there. */
    for (int k = 0; k < 3; k++) {
        publish_through_owner(c, ch[k], "hello");
        rh_reply_t rep = {0};
        assert_int_equal(redisAsyncCommand(redis_shards_ctx(c->sh, shard[k]), on_command, &rep,
                                           "PUBSUB SHARDNUMSUB %s", ch[k]),
                         REDIS_OK);
        RH_WAIT_FOR(&c->env, rep.got, WAIT_MS);
        assert_int_equal(rep.top.type, REDIS_REPLY_ARRAY);
        assert_int_equal(rep.elements, 2);
        assert_string_equal(rep.el[0].str, ch[k]);
        assert_int_equal(rep.el[1].integer, 1);
    }

    /* A refresh (two asked at once: the second waits for the first) of a map that did
     * not change: the same indexes, and no `ready` (nothing to subscribe again). */
    memset(c->ready, 0, sizeof c->ready);
    redis_shards_refresh(c->sh);
    redis_shards_refresh(c->sh);
    rh_run_for(&c->env, 300);
    assert_int_equal(total_ready(c), 0);
    for (int k = 0; k < 3; k++)
        assert_int_equal(owner_of(c, ch[k]), shard[k]);
    assert_true(redis_shards_ready(c->sh));

    /* The seed's master dies: its slots are lost (no replica to fail over to). The others
     * still publish and deliver; a refresh goes through one of their publishers. */
    rh_server_kill(&c->env.srv, seed);
    RH_WAIT_FOR(&c->env, !redis_shards_ready(c->sh) && !redis_shards_ctx(c->sh, shard[killed]),
                WAIT_MS);
    /* Its connections' loss makes the map be read again (a replica may have taken over
     * elsewhere): here the map still names it, so nothing changes. */
    memset(c->ready, 0, sizeof c->ready);
    rh_run_for(&c->env, REDIS_SHARDS_RETRY_MS + 300);
    for (int k = 0; k < 3; k++) {
        if (k == killed)
            continue;
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
    const rh_server_opts_t with_password = {.password = "s3cret"};
    int pa = rh_server_start(&c->env.srv, &with_password);
    int pb = rh_server_start(&c->env.srv, &with_password);
    rh_fake_start(&c->env.fake, &c->env.loop, NULL, fake_command, c);
    /* 0: a master that is not an array; 1: A (by an empty ip: the seed's host) and B with
     * a replica; 2: all on B; 3: an error; 4: slot 0 uncovered; 5: as 1 again; 6: all
     * on A (a change, so `ready` follows). */
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
    snprintf(c->script[6], sizeof c->script[6], "*1\r\n");
    resp_range(c->script[6], sizeof c->script[6], 0, 16383, "127.0.0.1", pa);
    c->nscript = 7;

    shards_open(c, c->env.fake.port, "s3cret"); /* every master needs it */
    RH_WAIT_FOR(&c->env, c->slots_asked == 1, WAIT_MS);
    rh_run_for(&c->env, 100);
    assert_int_equal(owner_of(c, "foo"), -1); /* malformed: nothing used */
    assert_int_equal(total_ready(c), 0);
    RH_WAIT_FOR(&c->env, redis_shards_ready(c->sh) && total_ready(c) == 2,
                REDIS_SHARDS_RETRY_MS + WAIT_MS);
    assert_int_equal(c->slots_asked, 2);
    int a = owner_of(c, "bar"), b = owner_of(c, "foo"); /* slots 5061 and 12182 */
    assert_true(a >= 0 && b >= 0 && a != b);
    assert_int_equal(shard_port(c, a), pa);
    assert_int_equal(shard_port(c, b), pb);
    rh_assert_push(sub_command(c, a, "SSUBSCRIBE", "bar"), "ssubscribe", "bar");
    rh_assert_push(sub_command(c, b, "SSUBSCRIBE", "foo"), "ssubscribe", "foo");
    publish_through_owner(c, "bar", "to A");
    publish_through_owner(c, "foo", "to B");

    /* A leaves: closed; B keeps its index and is told to subscribe again. */
    memset(c->ready, 0, sizeof c->ready);
    redis_shards_refresh(c->sh);
    RH_WAIT_FOR(&c->env, c->slots_asked == 3 && c->ready[b] == 1, WAIT_MS);
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
    RH_WAIT_FOR(&c->env, c->slots_asked == 4, WAIT_MS);
    rh_run_for(&c->env, 100);
    assert_int_equal(owner_of(c, "foo"), b);
    assert_true(redis_shards_ready(c->sh));
    assert_int_equal(total_ready(c), 0);
    redis_shards_refresh(c->sh);
    RH_WAIT_FOR(&c->env, c->slots_asked == 5 && c->ready[b] == 1, WAIT_MS);
    assert_int_equal(owner_of(c, ""), -1);
    assert_int_equal(owner_of(c, "foo"), b);
    assert_false(redis_shards_ready(c->sh));
    RH_WAIT_FOR(&c->env, c->slots_asked == 6 && redis_shards_ready(c->sh),
                REDIS_SHARDS_RETRY_MS + WAIT_MS);
    int a2 = owner_of(c, "bar");
    assert_true(a2 >= 0 && a2 != b);
    assert_int_equal(owner_of(c, "foo"), b);
    assert_int_equal(shard_port(c, a2), pa);
    RH_WAIT_FOR(&c->env, c->ready[a2] == 1, WAIT_MS);
    publish_through_owner(c, "foo", "B again");

    /* Closing from inside `ready` (after a map that changed) while the others are still
     * being told. */
    c->close_in_ready = true;
    redis_shards_refresh(c->sh);
    RH_WAIT_FOR(&c->env, c->done, WAIT_MS);
    assert_int_equal(c->env.fake.err, 0);
}

static void test_not_a_cluster(void **state) {
    ctx_t *c = *state;
    int port = rh_server_start(&c->env.srv, NULL);
    shards_open(c, port, NULL);
    rh_run_for(&c->env, REDIS_SHARDS_RETRY_MS + 300); /* the error, then one retry */
    assert_false(redis_shards_ready(c->sh));
    assert_int_equal(owner_of(c, "foo"), -1);
    assert_null(redis_shards_ctx(c->sh, 0));
    assert_int_equal(total_ready(c) + c->npush, 0);
    shards_close(c);

    /* Closed at once, and while nobody answers. */
    shards_open(c, port, NULL);
    shards_close(c);
    shards_open(c, rh_free_port(), NULL);
    rh_run_for(&c->env, 250);
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
