/* chat/presence_redis.c — presence across nodes that share a Redis (presence_redis.h).
 *
 * Per room, the hash "chat:presence:<room>": user id → {"n": {node: 1, ...}, "u":
 * username}, the nodes where the user has a connection in the room. A node reports its
 * own first and last connection of a user in a room; a Lua script adds or removes the
 * node and, when the user's set of nodes goes from empty to one or back, publishes the
 * news on "chat:presence" — so userJoined / userLeft happen once per user, cluster-wide,
 * in one order. Every node hears the news, keeps the member lists of its rooms from it
 * (filled from the hash when its first member of a room joins), and announces to its own
 * sockets.
 *
 * A node that dies leaves no ghosts beyond NODE_TTL_MS: each node refreshes
 * "chat:node:<id>" (expiring after NODE_TTL_MS) every HEARTBEAT_MS and lists its rooms
 * in "chat:node:<id>:rooms"; every node looks every REAP_MS for members of "chat:nodes"
 * whose key expired and removes them with a script, which publishes userLeft for those
 * they were the last node of. */
#include "chat/presence_redis.h"

#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/redis_conn.h"
#include "util/log.h"
#include "util/rand.h"

#define CHANNEL "chat:presence"
#define HEARTBEAT_MS 3000
#define NODE_TTL_MS 10000
#define REAP_MS 5000

/* KEYS: the room's presence, this node's rooms. ARGV: user, node, 1 (joined) or 0,
 * username, room, the socket id that caused it. */
static const char change_lua[] =
    "local v = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "local e = v and cjson.decode(v) or {n = {}, u = ARGV[4]}\n"
    "local was = next(e.n) ~= nil\n"
    "if ARGV[3] == '1' then e.n[ARGV[2]] = 1; e.u = ARGV[4] else e.n[ARGV[2]] = nil end\n"
    "local is = next(e.n) ~= nil\n"
    "if is then redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(e))\n"
    "else redis.call('HDEL', KEYS[1], ARGV[1]) end\n"
    "if ARGV[3] == '1' then redis.call('SADD', KEYS[2], ARGV[5]) end\n"
    "if was ~= is then\n"
    "  redis.call('PUBLISH', 'chat:presence', cjson.encode({j = is and 1 or 0, r = ARGV[5], "
    "u = ARGV[1], n = e.u, s = ARGV[6]}))\n"
    "end\n"
    "return 0\n";

/* ARGV: the dead node. Takes it out of every room it was in. */
static const char reap_lua[] =
    "local node = ARGV[1]\n"
    "local rk = 'chat:node:' .. node .. ':rooms'\n"
    "for _, room in ipairs(redis.call('SMEMBERS', rk)) do\n"
    "  local key = 'chat:presence:' .. room\n"
    "  local all = redis.call('HGETALL', key)\n"
    "  for i = 1, #all, 2 do\n"
    "    local e = cjson.decode(all[i + 1])\n"
    "    if e.n[node] then\n"
    "      e.n[node] = nil\n"
    "      if next(e.n) == nil then\n"
    "        redis.call('HDEL', key, all[i])\n"
    "        redis.call('PUBLISH', 'chat:presence', cjson.encode({j = 0, r = room, u = all[i], "
    "n = e.u, s = ''}))\n"
    "      else redis.call('HSET', key, all[i], cjson.encode(e)) end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "redis.call('DEL', rk)\n"
    "redis.call('SREM', 'chat:nodes', node)\n"
    "return 0\n";

struct presence_redis {
    uv_loop_t *loop;
    redis_endpoint_t ep;
    redis_conn_t *cmd, *sub;
    char node[17];
    presence_redis_event_fn on_event;
    void *arg;
    uv_timer_t heartbeat, reaper;
    int open;     /* handles and connections still to close */
    bool closing; /* on_event no longer called */
};

static void ignore(redisAsyncContext *ac, void *reply, void *priv) {
    redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        LOG_LIMITED(LOG_LEVEL_WARN, "chat", "presence: Redis says %s", rep->str);
}

int presence_redis_change(presence_redis_t *pr, const char *room, const char *user,
                          const char *username, bool joined, const char *sid) {
    redisAsyncContext *ac = redis_conn_ctx(pr->cmd);
    char key[512], rooms[64];
    snprintf(key, sizeof key, "chat:presence:%s", room);
    snprintf(rooms, sizeof rooms, "chat:node:%s:rooms", pr->node);
    if (!ac || redisAsyncCommand(ac, ignore, NULL, "EVAL %s 2 %s %s %s %s %s %s %s %s", change_lua,
                                 key, rooms, user, pr->node, joined ? "1" : "0", username, room,
                                 sid ? sid : "") != REDIS_OK)
        return -EIO;
    return 0;
}

/* ---- members already there ---- */

typedef struct {
    presence_redis_t *pr;
    char room[];
} load_t;

static void loaded(redisAsyncContext *ac, void *reply, void *priv) {
    load_t *l = priv;
    redisReply *rep = reply;
    presence_redis_t *pr = l->pr;
    for (size_t i = 0; rep && rep->type == REDIS_REPLY_ARRAY && i < rep->elements && !pr->closing;
         i++) {
        if (rep->element[i]->type == REDIS_REPLY_STRING)
            pr->on_event(l->room, rep->element[i]->str, NULL, true, NULL, true, pr->arg);
    }
    free(l);
}

int presence_redis_load(presence_redis_t *pr, const char *room) {
    redisAsyncContext *ac = redis_conn_ctx(pr->cmd);
    size_t len = strlen(room);
    load_t *l = ac ? malloc(sizeof *l + len + 1) : NULL;
    if (!l)
        return -EIO;
    l->pr = pr;
    memcpy(l->room, room, len + 1);
    if (redisAsyncCommand(ac, loaded, l, "HKEYS chat:presence:%s", room) != REDIS_OK) {
        free(l);
        return -EIO;
    }
    return 0;
}

/* ---- the news ---- */

static void on_news(redisAsyncContext *ac, void *reply, void *priv) {
    presence_redis_t *pr = priv;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 || pr->closing ||
        rep->element[2]->type != REDIS_REPLY_STRING)
        return;
    json_t *ev = json_loadb(rep->element[2]->str, rep->element[2]->len, 0, NULL);
    const char *room = json_string_value(json_object_get(ev, "r"));
    const char *user = json_string_value(json_object_get(ev, "u"));
    const char *name = json_string_value(json_object_get(ev, "n"));
    const char *sid = json_string_value(json_object_get(ev, "s"));
    if (room && user && name)
        pr->on_event(room, user, name, json_integer_value(json_object_get(ev, "j")) == 1,
                     sid && *sid ? sid : NULL, false, pr->arg);
    else
        LOG_LIMITED(LOG_LEVEL_WARN, "chat", "malformed presence news ignored");
    json_decref(ev);
}

static void sub_ready(redis_conn_t *c, void *arg) {
    if (redisAsyncCommand(redis_conn_ctx(c), on_news, arg, "SUBSCRIBE %s", CHANNEL) != REDIS_OK)
        LOG_ERROR("chat", "cannot subscribe to %s", CHANNEL);
}

/* ---- liveness ---- */

static void beat(presence_redis_t *pr) {
    redisAsyncContext *ac = redis_conn_ctx(pr->cmd);
    if (!ac)
        return;
    if (redisAsyncCommand(ac, ignore, NULL, "SET chat:node:%s 1 PX %d", pr->node, NODE_TTL_MS) !=
            REDIS_OK ||
        redisAsyncCommand(ac, ignore, NULL, "SADD chat:nodes %s", pr->node) != REDIS_OK)
        LOG_LIMITED(LOG_LEVEL_WARN, "chat", "presence heartbeat not sent");
}

static void heartbeat_due(uv_timer_t *t) {
    beat(t->data);
}

static void cmd_ready(redis_conn_t *c, void *arg) {
    beat(arg);
}

typedef struct {
    presence_redis_t *pr;
    char node[64];
} reap_t;

static void reaped_if_dead(redisAsyncContext *ac, void *reply, void *priv) {
    reap_t *rp = priv;
    redisReply *rep = reply;
    redisAsyncContext *cmd = redis_conn_ctx(rp->pr->cmd);
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0 && cmd) {
        LOG_INFO("chat", "presence: node %s is gone; its users leave", rp->node);
        if (redisAsyncCommand(cmd, ignore, NULL, "EVAL %s 0 %s", reap_lua, rp->node) != REDIS_OK)
            LOG_LIMITED(LOG_LEVEL_WARN, "chat", "presence: node %s not reaped", rp->node);
    }
    free(rp);
}

static void nodes_listed(redisAsyncContext *ac, void *reply, void *priv) {
    presence_redis_t *pr = priv;
    redisReply *rep = reply;
    for (size_t i = 0; rep && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        redisReply *n = rep->element[i];
        if (n->type != REDIS_REPLY_STRING || strcmp(n->str, pr->node) == 0 ||
            n->len >= sizeof((reap_t *)0)->node)
            continue;
        reap_t *rp = calloc(1, sizeof *rp);
        if (!rp)
            return;
        rp->pr = pr;
        memcpy(rp->node, n->str, n->len);
        if (redisAsyncCommand(ac, reaped_if_dead, rp, "EXISTS chat:node:%s", rp->node) != REDIS_OK)
            free(rp);
    }
}

static void reaper_due(uv_timer_t *t) {
    presence_redis_t *pr = t->data;
    redisAsyncContext *ac = redis_conn_ctx(pr->cmd);
    if (ac && redisAsyncCommand(ac, nodes_listed, pr, "SMEMBERS chat:nodes") != REDIS_OK)
        LOG_LIMITED(LOG_LEVEL_WARN, "chat", "presence: nodes not listed");
}

/* ---- opening and closing ---- */

int presence_redis_open(uv_loop_t *loop, const char *url, presence_redis_event_fn fn, void *arg,
                        presence_redis_t **out) {
    presence_redis_t *pr = calloc(1, sizeof *pr);
    if (!pr)
        return -ENOMEM;
    pr->loop = loop;
    pr->on_event = fn;
    pr->arg = arg;
    uint8_t id[8];
    int rc = rand_bytes(id, sizeof id) ? -EIO : redis_endpoint_parse(url, &pr->ep);
    for (size_t i = 0; rc == 0 && i < sizeof id; i++)
        snprintf(pr->node + 2 * i, 3, "%02x", id[i]);
    if (rc == 0)
        rc = uv_timer_init(loop, &pr->heartbeat);
    if (rc == 0)
        rc = uv_timer_init(loop, &pr->reaper);
    if (rc) {
        redis_endpoint_free(&pr->ep);
        free(pr);
        return rc;
    }
    pr->open = 2;
    pr->heartbeat.data = pr->reaper.data = pr;
    static const redis_conn_cb_t cmd_cb = {cmd_ready, NULL}, sub_cb = {sub_ready, NULL};
    if ((rc = uv_timer_start(&pr->heartbeat, heartbeat_due, HEARTBEAT_MS, HEARTBEAT_MS)) ||
        (rc = uv_timer_start(&pr->reaper, reaper_due, REAP_MS, REAP_MS)) ||
        (rc = redis_conn_open(loop, &pr->ep, "presence", &cmd_cb, pr, &pr->cmd)) ||
        (rc = redis_conn_open(loop, &pr->ep, "presence news", &sub_cb, pr, &pr->sub))) {
        presence_redis_close(pr);
        return rc;
    }
    *out = pr;
    return 0;
}

static void closed_one(void *arg) {
    presence_redis_t *pr = arg;
    if (--pr->open > 0)
        return;
    redis_endpoint_free(&pr->ep);
    free(pr);
}

static void handle_closed(uv_handle_t *h) {
    closed_one(h->data);
}

void presence_redis_close(presence_redis_t *pr) {
    pr->closing = true;
    /* Its users leave at once, rather than when its heartbeat expires. */
    redisAsyncContext *ac = redis_conn_ctx(pr->cmd);
    if (ac && redisAsyncCommand(ac, ignore, NULL, "EVAL %s 0 %s", reap_lua, pr->node) != REDIS_OK)
        LOG_WARN("chat", "presence: this node's users not removed (they expire)");
    pr->open += (pr->cmd != NULL) + (pr->sub != NULL);
    uv_close((uv_handle_t *)&pr->heartbeat, handle_closed);
    uv_close((uv_handle_t *)&pr->reaper, handle_closed);
    if (pr->cmd)
        redis_conn_close(pr->cmd, closed_one, pr);
    if (pr->sub)
        redis_conn_close(pr->sub, closed_one, pr);
}
