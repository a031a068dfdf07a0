/* chat/store_redis.c — the chat's history in Redis, shared by every node (store.h).
 *
 * Layout (so that other chat servers can share it): per room, "chat:room:<id>:seq" (the
 * INCR counter), "chat:room:<id>:history" (a sorted set: score seq, member the message's
 * JSON {id, seq, roomId, userId, username, text, timestamp}), "chat:room:<id>:ids" (a hash
 * message id → seq, for receipts) and "chat:room:<id>:reads" (a hash user → its read
 * mark). Messages are announced on the channel "chat:messages".
 *
 * One order per room across nodes: an append is one Lua script — INCR, ZADD, HSET,
 * trimming to the retention, PUBLISH — which Redis runs atomically, so seqs are
 * gap-free, each message is stored before it is published, and publications come in
 * seq order. The script gets the message's JSON in two parts (before and after the seq,
 * made by Parley's own encoder) and only puts the seq between them.
 *
 * Announcing: every node announces every message of every room to its own clients
 * (chat_store_on_stored), in seq order per room: its own from the script's reply, the
 * others' from the channel. A message that arrives ahead of its turn waits; a gap that
 * does not fill within GAP_MS (a publication lost while the subscriber was reconnecting)
 * is read from the sorted set. An append's callback runs once its message was announced
 * here, so a sender sees its message before its ack, as with one process.
 *
 * Durability: an ack means Redis ran the script; how durable that is, is Redis's
 * persistence (appendonly with appendfsync always or everysec; docs/CLUSTER.md). An
 * append whose connection drops before the reply fails with -EIO although Redis may have
 * run it: the message then shows up, announced, without an ack (never the reverse). */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/store_internal.h"
#include "cluster/redis_conn.h"
#include "util/log.h"
#include "util/map.h"
#include "util/rand.h"
#include "util/time.h"

#define CHANNEL "chat:messages"
#define GAP_MS 200
#define KEY_MAX 512
/* Room ids kept in fixed buffers; the service allows 128 bytes. */
#define ROOM_ID_MAX 256

/* KEYS: seq, history, ids, the user's post bucket. ARGV: json before the seq, json after
 * it, message id, retention (0: all), channel, burst (0: no limit), per second, now (ms).
 * Returns the message's JSON and its seq, or -1 when the user's bucket is empty. */
static const char append_lua[] =
    "local burst = tonumber(ARGV[6])\n"
    "if burst > 0 then\n"
    "  local rate, now = tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "  local b = redis.call('HMGET', KEYS[4], 't', 'at')\n"
    "  local t, at = tonumber(b[1] or burst), tonumber(b[2] or now)\n"
    "  t = math.min(burst, t + math.max(0, now - at) * rate / 1000)\n"
    "  if t < 1 then return -1 end\n"
    "  redis.call('HSET', KEYS[4], 't', tostring(t - 1), 'at', tostring(now))\n"
    "  redis.call('PEXPIRE', KEYS[4], math.ceil(burst * 1000 / rate) + 1000)\n"
    "end\n"
    "local seq = redis.call('INCR', KEYS[1])\n"
    "local m = ARGV[1] .. seq .. ARGV[2]\n"
    "redis.call('ZADD', KEYS[2], seq, m)\n"
    "redis.call('HSET', KEYS[3], ARGV[3], seq)\n"
    "local keep = tonumber(ARGV[4])\n"
    "if keep > 0 and seq > keep then\n"
    "  for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', seq - keep)) do\n"
    "    redis.call('HDEL', KEYS[3], cjson.decode(old).id)\n"
    "  end\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', seq - keep)\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[5], m)\n"
    "return {m, seq}\n";

/* KEYS: ids, reads. ARGV: user, read time, ids... Moves the user's mark to the highest
 * seq named, never back. Returns how many ids name a message of the room. */
static const char mark_lua[] =
    "local best, best_id, known = 0, nil, 0\n"
    "for i = 3, #ARGV do\n"
    "  local s = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')\n"
    "  if s > 0 then known = known + 1 end\n"
    "  if s > best then best, best_id = s, ARGV[i] end\n"
    "end\n"
    "if best > 0 then\n"
    "  local cur = redis.call('HGET', KEYS[2], ARGV[1])\n"
    "  if not cur or cjson.decode(cur).seq < best then\n"
    "    redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({seq = best, id = best_id, at = "
    "tonumber(ARGV[2])}))\n"
    "  end\n"
    "end\n"
    "return known\n";

/* KEYS: seq, history. ARGV: after, limit. {last seq, messages after `after`}. */
static const char after_lua[] =
    "local last = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "return {last, redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'LIMIT', 0, "
    "tonumber(ARGV[2]))}\n";

typedef struct pending pending_t;

/* A room as this node announces it. */
typedef struct {
    uint64_t announced; /* last seq announced here (0: none yet) */
    bool started;       /* announced is known */
    chat_msg_t **held;  /* arrived ahead of their turn, sorted by seq */
    size_t nheld, capheld;
    bool gap_asked;
    uint64_t gap_since; /* when the oldest held message arrived (ms) */
    char id[];          /* the map key */
} rroom_t;

/* An append of this node waiting for its message to be announced here. */
struct pending {
    pending_t *next;
    chat_msg_t *msg; /* one reference */
    uint64_t since;  /* when the reply came (ms) */
    chat_store_append_cb cb;
    void *arg;
};

/* The scripts, loaded into Redis when the connection is made and run by their SHA1
 * (EVALSHA: an append sends its arguments, not its script). */
enum { SCRIPT_APPEND, SCRIPT_MARK, SCRIPT_AFTER, SCRIPTS };
static const char *const scripts[SCRIPTS] = {append_lua, mark_lua, after_lua};

typedef struct {
    store_head_t head; /* first: see store_internal.h */
    uv_loop_t *loop;
    char sha[SCRIPTS][41];
    chat_store_config_t cfg;
    redis_endpoint_t ep;
    redis_conn_t *cmd, *sub;
    map_t rooms; /* room id → rroom_t */
    pending_t *pending;
    char id_prefix[17];
    uint64_t id_counter;
    size_t in_flight;     /* commands whose callbacks are due */
    size_t rooms_waiting; /* rooms holding messages ahead of a gap */
    uv_timer_t gap_timer; /* every GAP_MS: reads the gaps that did not fill */
    bool closing;
    int open; /* connections and the timer still to close */
    void (*close_done)(void *arg);
    void *close_arg;
    char why[128];
} rstore_t;

typedef struct {
    rstore_t *rs;
    char room_id[ROOM_ID_MAX];
    chat_store_append_cb append_cb;
    chat_store_history_cb read_cb;
    chat_store_mark_cb mark_cb;
    void *arg;
    bool reverse;   /* history: newest first from Redis */
    uint64_t after; /* after */
    size_t asked;   /* mark_read: ids given */
} call_t;

static const chat_store_ops_t redis_ops;

static rstore_t *rstore_of(chat_store_t *st) {
    return (rstore_t *)st;
}

static void key(char out[KEY_MAX], const char *room, const char *what) {
    snprintf(out, KEY_MAX, "chat:room:%s:%s", room, what);
}

/* ---- messages from their JSON ---- */

static int msg_from_json(const char *json, size_t len, chat_msg_t **out) {
    json_t *o = json_loadb(json, len, 0, NULL);
    json_t *id = json_object_get(o, "id"), *room = json_object_get(o, "roomId");
    json_t *user = json_object_get(o, "userId"), *name = json_object_get(o, "username");
    json_t *text = json_object_get(o, "text");
    json_t *seq = json_object_get(o, "seq"), *ts = json_object_get(o, "timestamp");
    int rc = -EINVAL;
    if (json_is_string(id) && json_is_string(room) && json_is_string(user) &&
        json_is_string(name) && json_is_string(text) && json_is_integer(seq) &&
        json_integer_value(seq) > 0 && json_is_integer(ts)) {
        store_msg_fields_t f = {
            json_string_value(id),    json_string_value(room),           json_string_value(user),
            json_string_value(name),  json_string_value(text),           json_string_length(id),
            json_string_length(room), json_string_length(user),          json_string_length(name),
            json_string_length(text), (uint64_t)json_integer_value(seq), json_integer_value(ts)};
        rc = store_msg_new(&f, true, out);
    }
    json_decref(o);
    return rc;
}

/* ---- announcing in seq order ---- */

static rroom_t *room_get(rstore_t *rs, const char *id) {
    size_t len = strlen(id);
    rroom_t *r = map_get(&rs->rooms, id, len);
    if (r)
        return r;
    r = calloc(1, sizeof *r + len + 1);
    if (!r)
        return NULL;
    memcpy(r->id, id, len + 1);
    if (map_put(&rs->rooms, r->id, len, r)) {
        free(r);
        return NULL;
    }
    return r;
}

/* Its own appends' callbacks, once their message was announced (or passed over). */
static void settle_pending(rstore_t *rs, const rroom_t *r) {
    for (pending_t **p = &rs->pending; *p;) {
        pending_t *q = *p;
        if (q->msg->seq <= r->announced && strcmp(q->msg->room_id, r->id) == 0) {
            *p = q->next;
            if (q->cb)
                q->cb(0, q->msg, q->arg);
            chat_msg_unref(q->msg);
            free(q);
        } else {
            p = &q->next;
        }
    }
}

static void announce(rstore_t *rs, rroom_t *r, chat_msg_t *m) {
    r->announced = m->seq;
    if (rs->head.on_stored && !rs->closing)
        rs->head.on_stored(m, rs->head.on_stored_arg);
}

/* Holds m (a reference) until its turn; false when out of memory. */
static bool hold(rstore_t *rs, rroom_t *r, chat_msg_t *m) {
    for (size_t i = 0; i < r->nheld; i++)
        if (r->held[i]->seq == m->seq)
            return true;
    if (r->nheld == r->capheld) {
        size_t cap = r->capheld ? r->capheld * 2 : 8;
        chat_msg_t **grown = realloc(r->held, cap * sizeof *grown);
        if (!grown)
            return false;
        r->held = grown;
        r->capheld = cap;
    }
    size_t at = r->nheld;
    while (at > 0 && r->held[at - 1]->seq > m->seq) {
        r->held[at] = r->held[at - 1];
        at--;
    }
    chat_msg_ref(m);
    r->held[at] = m;
    if (r->nheld++ == 0) {
        r->gap_since = time_mono_ms();
        rs->rooms_waiting++;
    }
    return true;
}

/* A message of room r, from the channel (published: every node sees them in seq order
 * per room) or from its own append's reply: announced now if it is next, held if it is
 * ahead, dropped if it was announced already. The first publication of a room this node
 * sees starts it; a reply never does (the publications before it may still be on their
 * way). */
static void arrive(rstore_t *rs, chat_msg_t *m, bool published) {
    rroom_t *r = room_get(rs, m->room_id);
    if (!r) {
        LOG_LIMITED(LOG_LEVEL_ERROR, "chat", "out of memory: message %s not announced", m->id);
        return;
    }
    if (!r->started) {
        if (!published)
            return; /* its publication starts the room */
        r->started = true;
        r->announced = m->seq - 1;
    }
    if (m->seq > r->announced + 1) {
        if (!hold(rs, r, m))
            LOG_LIMITED(LOG_LEVEL_ERROR, "chat", "out of memory: message %s waits for a read",
                        m->id);
        return;
    }
    if (m->seq == r->announced + 1)
        announce(rs, r, m);
    while (r->nheld && r->held[0]->seq <= r->announced + 1) {
        chat_msg_t *next = r->held[0];
        memmove(r->held, r->held + 1, (r->nheld - 1) * sizeof *r->held);
        r->nheld--;
        if (next->seq == r->announced + 1)
            announce(rs, r, next);
        chat_msg_unref(next);
    }
    if (r->nheld == 0 && r->gap_since) {
        r->gap_since = 0;
        rs->rooms_waiting--;
    }
    settle_pending(rs, r);
}

/* ---- gaps ---- */

static void command_done(rstore_t *rs);

typedef struct {
    rstore_t *rs;
    char room_id[ROOM_ID_MAX];
    uint64_t upto; /* the first held seq: the gap is below it */
} gap_t;

static void gap_read(redisAsyncContext *ac, void *reply, void *priv) {
    gap_t *g = priv;
    rstore_t *rs = g->rs;
    redisReply *rep = reply;
    rroom_t *r = map_get(&rs->rooms, g->room_id, strlen(g->room_id));
    if (r)
        r->gap_asked = false;
    if (r && rep && rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < rep->elements; i++) {
            chat_msg_t *m;
            if (rep->element[i]->type == REDIS_REPLY_STRING &&
                msg_from_json(rep->element[i]->str, rep->element[i]->len, &m) == 0) {
                arrive(rs, m, true);
                chat_msg_unref(m);
            }
        }
        /* What Redis no longer has (trimmed by the retention) is passed over. */
        if (r->nheld && r->held[0]->seq == g->upto && r->announced + 1 < g->upto) {
            LOG_LIMITED(LOG_LEVEL_WARN, "chat",
                        "room %s: seqs %" PRIu64 "..%" PRIu64 " are gone from Redis; passed over",
                        r->id, r->announced + 1, g->upto - 1);
            r->announced = g->upto - 1;
            chat_msg_t *m = r->held[0];
            chat_msg_ref(m);
            arrive(rs, m, true);
            chat_msg_unref(m);
        }
    }
    free(g);
    command_done(rs);
}

/* Reads room r's messages from after its last announced one up to before `upto`
 * (UINT64_MAX: all); they arrive as if published. Returns 0 or -1 (not asked). */
static int ask_gap(rstore_t *rs, redisAsyncContext *ac, rroom_t *r, uint64_t upto) {
    gap_t *g = calloc(1, sizeof *g);
    if (!g)
        return -1;
    g->rs = rs;
    snprintf(g->room_id, sizeof g->room_id, "%s", r->id);
    g->upto = upto;
    char k[KEY_MAX], max[32];
    key(k, r->id, "history");
    if (upto == UINT64_MAX)
        snprintf(max, sizeof max, "+inf");
    else
        snprintf(max, sizeof max, "%" PRIu64, upto - 1);
    if (redisAsyncCommand(ac, gap_read, g, "ZRANGEBYSCORE %s (%" PRIu64 " %s", k, r->announced,
                          max) != REDIS_OK) {
        free(g);
        return -1;
    }
    r->gap_asked = true;
    rs->in_flight++;
    return 0;
}

/* An own message whose publication did not come (the subscriber was reconnecting):
 * it waits like one that came ahead of its turn, so that the gap below it is read. */
static void unblock_pending(rstore_t *rs, uint64_t now) {
    for (pending_t *q = rs->pending; q; q = q->next) {
        if (now - q->since < GAP_MS)
            continue;
        rroom_t *r = room_get(rs, q->msg->room_id);
        if (!r)
            continue;
        if (!r->started) {
            r->started = true;
            r->announced = q->msg->seq - 1;
        }
        q->since = now; /* once per GAP_MS at most */
        if (q->msg->seq == r->announced + 1) {
            /* Nothing missing below it: its turn. Announcing settles pending acks, this
             * one included, so the walk starts again. */
            chat_msg_t *m = q->msg;
            chat_msg_ref(m);
            arrive(rs, m, true);
            chat_msg_unref(m);
            unblock_pending(rs, now);
            return;
        }
        if (q->msg->seq > r->announced && !hold(rs, r, q->msg))
            LOG_LIMITED(LOG_LEVEL_ERROR, "chat", "out of memory: an ack waits");
    }
}

static void gap_tick(uv_timer_t *t) {
    rstore_t *rs = t->data;
    redisAsyncContext *ac = redis_conn_ctx(rs->cmd);
    uint64_t now = time_mono_ms();
    if (rs->pending && ac)
        unblock_pending(rs, now);
    if (!rs->rooms_waiting || !ac)
        return;
    map_entry_t *e;
    for (size_t pos = 0; map_next(&rs->rooms, &pos, &e);) {
        rroom_t *r = e->value;
        if (!r->nheld || r->gap_asked || now - r->gap_since < GAP_MS)
            continue;
        if (ask_gap(rs, ac, r, r->held[0]->seq))
            return;
    }
}

/* ---- calls ---- */

static void command_done(rstore_t *rs);

static call_t *call_new(rstore_t *rs, const char *room_id, void *arg) {
    if (strlen(room_id) >= ROOM_ID_MAX)
        return NULL;
    call_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->rs = rs;
    snprintf(c->room_id, sizeof c->room_id, "%s", room_id);
    c->arg = arg;
    return c;
}

/* Sends a command for call c; on failure c is freed and -EIO returned. */
static int send_call(rstore_t *rs, call_t *c, redisCallbackFn *fn, int argc, const char **argv,
                     const size_t *lens) {
    redisAsyncContext *ac = redis_conn_ctx(rs->cmd);
    if (!ac || redisAsyncCommandArgv(ac, fn, c, argc, argv, lens) != REDIS_OK) {
        free(c);
        return -EIO;
    }
    rs->in_flight++;
    return 0;
}

static void appended(redisAsyncContext *ac, void *reply, void *priv) {
    call_t *c = priv;
    rstore_t *rs = c->rs;
    redisReply *rep = reply;
    chat_msg_t *m = NULL;
    int rc = -EIO;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_STRING)
        rc = msg_from_json(rep->element[0]->str, rep->element[0]->len, &m);
    else if (rep && rep->type == REDIS_REPLY_INTEGER)
        rc = -EDQUOT; /* the user's bucket is empty: nothing stored */
    else if (rep && rep->type == REDIS_REPLY_ERROR)
        LOG_LIMITED(LOG_LEVEL_ERROR, "chat", "Redis refused an append: %s", rep->str);
    if (rc) {
        if (c->append_cb)
            c->append_cb(rc, NULL, c->arg);
    } else {
        /* Acked once announced here, in seq order with the other nodes' messages. */
        pending_t *q = calloc(1, sizeof *q);
        if (q) {
            chat_msg_ref(m);
            q->msg = m;
            q->since = time_mono_ms();
            q->cb = c->append_cb;
            q->arg = c->arg;
            q->next = rs->pending;
            rs->pending = q;
        } else {
            LOG_LIMITED(LOG_LEVEL_ERROR, "chat", "out of memory: an ack goes before its turn");
            if (c->append_cb)
                c->append_cb(0, m, c->arg);
        }
        arrive(rs, m, false);
        chat_msg_unref(m);
    }
    free(c);
    command_done(rs);
}

static int append(rstore_t *rs, const char *room_id, const char *user_id, const char *username,
                  const char *text, size_t text_len, uint32_t burst, uint32_t per_sec,
                  chat_store_append_cb cb, void *arg) {
    if (rs->closing)
        return -ECANCELED;
    if (!redis_conn_ctx(rs->cmd))
        return -EIO;
    char id[STORE_ID_MAX];
    snprintf(id, sizeof id, "%s-%" PRIx64, rs->id_prefix, ++rs->id_counter);
    /* The message's JSON, made by the same encoder as every other store's, with a seq of
     * 0 to cut it at: Redis puts the real one between the two parts. */
    store_msg_fields_t f = {
        id,         room_id,         user_id,         username,         text,
        strlen(id), strlen(room_id), strlen(user_id), strlen(username), text_len,
        0,          time_wall_ms()};
    chat_msg_t *tmpl;
    int rc = store_msg_new(&f, true, &tmpl);
    if (rc)
        return rc;
    const char *cut = strstr(tmpl->json, ",\"seq\":0,");
    call_t *c = cut ? call_new(rs, room_id, arg) : NULL;
    if (!c) {
        chat_msg_unref(tmpl);
        return cut ? -ENOMEM : -EINVAL;
    }
    c->append_cb = cb;
    char kseq[KEY_MAX], khist[KEY_MAX], kids[KEY_MAX], kbucket[KEY_MAX], keep[32], b[16], r[16],
        now[32];
    key(kseq, room_id, "seq");
    key(khist, room_id, "history");
    key(kids, room_id, "ids");
    snprintf(kbucket, sizeof kbucket, "chat:user:%s:posts", user_id);
    snprintf(keep, sizeof keep, "%zu", rs->cfg.memory_keep);
    snprintf(b, sizeof b, "%" PRIu32, burst);
    snprintf(r, sizeof r, "%" PRIu32, per_sec ? per_sec : 1);
    snprintf(now, sizeof now, "%" PRId64, time_wall_ms());
    size_t before = (size_t)(cut - tmpl->json) + 7; /* through ,"seq": */
    const char *argv[] = {"EVALSHA", rs->sha[SCRIPT_APPEND],
                          "4",       kseq,
                          khist,     kids,
                          kbucket,   tmpl->json,
                          cut + 8,   id,
                          keep,      CHANNEL,
                          b,         r,
                          now};
    size_t lens[15];
    for (size_t i = 0; i < 15; i++)
        lens[i] = strlen(argv[i]);
    lens[7] = before;
    lens[8] = tmpl->json_len - before - 1;
    rc = send_call(rs, c, appended, 15, argv, lens);
    chat_msg_unref(tmpl);
    return rc;
}

static int rs_append(chat_store_t *st, const char *room_id, const char *user_id,
                     const char *username, const char *text, size_t text_len,
                     chat_store_append_cb cb, void *arg, chat_msg_t **out) {
    if (out)
        *out = NULL; /* the seq is Redis's to assign: known with the answer */
    return append(rstore_of(st), room_id, user_id, username, text, text_len, 0, 0, cb, arg);
}

static int rs_append_limited(chat_store_t *st, const char *room_id, const char *user_id,
                             const char *username, const char *text, size_t text_len,
                             uint32_t burst, uint32_t per_sec, chat_store_append_cb cb, void *arg) {
    return append(rstore_of(st), room_id, user_id, username, text, text_len, burst, per_sec, cb,
                  arg);
}

/* ---- reads ---- */

static void deliver_list(call_t *c, redisReply *list, int err) {
    size_t n = list ? list->elements : 0;
    chat_msg_t **msgs = n ? calloc(n, sizeof *msgs) : NULL;
    size_t got = 0;
    for (size_t i = 0; list && msgs && i < n; i++) {
        size_t at = c->reverse ? n - 1 - i : i;
        redisReply *e = list->element[at];
        if (e->type == REDIS_REPLY_STRING && msg_from_json(e->str, e->len, &msgs[got]) == 0)
            got++;
    }
    if (n && !msgs)
        err = -ENOMEM;
    c->read_cb(err, msgs, err ? 0 : got, c->arg);
    for (size_t i = 0; i < got; i++)
        chat_msg_unref(msgs[i]);
    free(msgs);
}

static void history_read(redisAsyncContext *ac, void *reply, void *priv) {
    call_t *c = priv;
    rstore_t *rs = c->rs;
    redisReply *rep = reply;
    deliver_list(c, rep && rep->type == REDIS_REPLY_ARRAY ? rep : NULL,
                 rep && rep->type == REDIS_REPLY_ARRAY ? 0 : -EIO);
    free(c);
    command_done(rs);
}

static size_t capped(const rstore_t *rs, size_t limit) {
    return rs->cfg.max_read && limit > rs->cfg.max_read ? rs->cfg.max_read : limit;
}

/* A read's call, or NULL with *rc the reason. */
static call_t *read_call(rstore_t *rs, const char *room_id, chat_store_history_cb cb, void *arg,
                         int *rc) {
    call_t *c = rs->closing ? NULL : call_new(rs, room_id, arg);
    *rc = rs->closing ? -ECANCELED : c ? 0 : -EINVAL;
    if (c)
        c->read_cb = cb;
    return c;
}

static int rs_history(chat_store_t *st, const char *room_id, uint64_t before_seq, size_t limit,
                      chat_store_history_cb cb, void *arg) {
    rstore_t *rs = rstore_of(st);
    int rc;
    call_t *c = read_call(rs, room_id, cb, arg, &rc);
    if (!c)
        return rc;
    c->reverse = true;
    char k[KEY_MAX], max[32], count[32];
    key(k, room_id, "history");
    if (before_seq)
        snprintf(max, sizeof max, "(%" PRIu64, before_seq);
    else
        snprintf(max, sizeof max, "+inf");
    snprintf(count, sizeof count, "%zu", capped(rs, limit));
    const char *argv[] = {"ZREVRANGEBYSCORE", k, max, "-inf", "LIMIT", "0", count};
    size_t lens[] = {16, strlen(k), strlen(max), 4, 5, 1, strlen(count)};
    return send_call(rs, c, history_read, 7, argv, lens);
}

static void after_read(redisAsyncContext *ac, void *reply, void *priv) {
    call_t *c = priv;
    rstore_t *rs = c->rs;
    redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER &&
        rep->element[1]->type == REDIS_REPLY_ARRAY) {
        /* A position past the room's last seq is from another history. */
        uint64_t last = (uint64_t)rep->element[0]->integer;
        deliver_list(c, rep->element[1], c->after > last ? -ERANGE : 0);
    } else {
        deliver_list(c, NULL, -EIO);
    }
    free(c);
    command_done(rs);
}

static int rs_after(chat_store_t *st, const char *room_id, uint64_t after_seq, size_t limit,
                    chat_store_history_cb cb, void *arg) {
    rstore_t *rs = rstore_of(st);
    int rc;
    call_t *c = read_call(rs, room_id, cb, arg, &rc);
    if (!c)
        return rc;
    c->after = after_seq;
    char kseq[KEY_MAX], khist[KEY_MAX], after[32], count[32];
    key(kseq, room_id, "seq");
    key(khist, room_id, "history");
    snprintf(after, sizeof after, "%" PRIu64, after_seq);
    snprintf(count, sizeof count, "%zu", capped(rs, limit));
    const char *argv[] = {"EVALSHA", rs->sha[SCRIPT_AFTER], "2", kseq, khist, after, count};
    size_t lens[7];
    for (size_t i = 0; i < 7; i++)
        lens[i] = strlen(argv[i]);
    return send_call(rs, c, after_read, 7, argv, lens);
}

static uint64_t rs_last_seq(chat_store_t *st, const char *room_id) {
    rroom_t *r = map_get(&rstore_of(st)->rooms, room_id, strlen(room_id));
    return r ? r->announced : 0;
}

/* ---- receipts ---- */

static void marked(redisAsyncContext *ac, void *reply, void *priv) {
    call_t *c = priv;
    rstore_t *rs = c->rs;
    redisReply *rep = reply;
    int rc = -EIO;
    if (rep && rep->type == REDIS_REPLY_INTEGER)
        rc = rep->integer > 0 || c->asked == 0 ? 0 : -ENOENT;
    if (c->mark_cb)
        c->mark_cb(rc, 0, c->arg);
    free(c);
    command_done(rs);
}

static int rs_mark_read(chat_store_t *st, const char *room_id, const char *user_id,
                        const char *const *message_ids, size_t n, uint64_t upto_seq,
                        chat_store_mark_cb cb, void *arg) {
    rstore_t *rs = rstore_of(st);
    if (rs->closing)
        return -ECANCELED;
    if (n > 1000 || upto_seq)
        return -EINVAL;
    call_t *c = call_new(rs, room_id, arg);
    const char **argv = calloc(n + 7, sizeof *argv);
    size_t *lens = calloc(n + 7, sizeof *lens);
    if (!c || !argv || !lens) {
        free(c);
        free(argv);
        free(lens);
        return -ENOMEM;
    }
    c->mark_cb = cb;
    c->asked = n;
    char kids[KEY_MAX], kreads[KEY_MAX], at[32];
    key(kids, room_id, "ids");
    key(kreads, room_id, "reads");
    snprintf(at, sizeof at, "%" PRId64, time_wall_ms());
    const char *head[] = {"EVALSHA", rs->sha[SCRIPT_MARK], "2", kids, kreads, user_id, at};
    for (size_t i = 0; i < 7; i++)
        argv[i] = head[i];
    for (size_t i = 0; i < n; i++)
        argv[7 + i] = message_ids[i];
    for (size_t i = 0; i < n + 7; i++)
        lens[i] = strlen(argv[i]);
    int rc = send_call(rs, c, marked, (int)(n + 7), argv, lens);
    free(argv);
    free(lens);
    return rc;
}

/* ---- health and closing ---- */

static int rs_health(chat_store_t *st, const char **why) {
    rstore_t *rs = rstore_of(st);
    bool up = redis_conn_ctx(rs->cmd) != NULL;
    if (why)
        *why = up ? "ok" : "Redis unreachable: retrying";
    return up ? 0 : -EIO;
}

static void closed_one(void *arg) {
    rstore_t *rs = arg;
    if (--rs->open > 0)
        return;
    map_entry_t *e;
    for (size_t pos = 0; map_next(&rs->rooms, &pos, &e);) {
        rroom_t *r = e->value;
        for (size_t i = 0; i < r->nheld; i++)
            chat_msg_unref(r->held[i]);
        free(r->held);
        free(r);
    }
    map_free(&rs->rooms);
    redis_endpoint_free(&rs->ep);
    void (*done)(void *) = rs->close_done;
    void *done_arg = rs->close_arg;
    free(rs);
    if (done)
        done(done_arg);
}

static void timer_closed(uv_handle_t *h) {
    closed_one(h->data);
}

/* Once the commands due have answered: their callbacks run before close's done. */
static void finish_close(rstore_t *rs) {
    while (rs->pending) {
        pending_t *q = rs->pending;
        rs->pending = q->next;
        if (q->cb)
            q->cb(0, q->msg, q->arg); /* stored; its turn here will not come */
        chat_msg_unref(q->msg);
        free(q);
    }
    rs->open = 1 + (rs->cmd != NULL) + (rs->sub != NULL);
    uv_close((uv_handle_t *)&rs->gap_timer, timer_closed);
    if (rs->cmd)
        redis_conn_close(rs->cmd, closed_one, rs);
    if (rs->sub)
        redis_conn_close(rs->sub, closed_one, rs);
}

static void command_done(rstore_t *rs) {
    rs->in_flight--;
    if (rs->closing && rs->in_flight == 0 && !rs->open)
        finish_close(rs);
}

static void rs_close(chat_store_t *st, void (*done)(void *arg), void *arg) {
    rstore_t *rs = rstore_of(st);
    rs->closing = true;
    rs->close_done = done;
    rs->close_arg = arg;
    uv_timer_stop(&rs->gap_timer);
    if (rs->in_flight == 0)
        finish_close(rs);
}

static const chat_store_ops_t redis_ops = {
    .append = rs_append,
    .append_limited = rs_append_limited,
    .history = rs_history,
    .after = rs_after,
    .last_seq = rs_last_seq,
    .mark_read = rs_mark_read,
    .health = rs_health,
    .close = rs_close,
};

/* ---- announcements and opening ---- */

static void on_published(redisAsyncContext *ac, void *reply, void *priv) {
    rstore_t *rs = priv;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 || rs->closing ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(rep->element[0]->str, "message") != 0 || rep->element[2]->type != REDIS_REPLY_STRING)
        return;
    chat_msg_t *m;
    if (msg_from_json(rep->element[2]->str, rep->element[2]->len, &m)) {
        LOG_LIMITED(LOG_LEVEL_WARN, "chat", "malformed message on %s ignored", CHANNEL);
        return;
    }
    arrive(rs, m, true);
    chat_msg_unref(m);
}

/* Subscribed (again): what was published while the subscriber was away is read back,
 * for every room this node announces. */
static void sub_ready(redis_conn_t *c, void *arg) {
    rstore_t *rs = arg;
    if (redisAsyncCommand(redis_conn_ctx(c), on_published, rs, "SUBSCRIBE %s", CHANNEL) != REDIS_OK)
        LOG_ERROR("chat", "cannot subscribe to %s", CHANNEL);
    redisAsyncContext *ac = redis_conn_ctx(rs->cmd);
    map_entry_t *e;
    for (size_t pos = 0; ac && map_next(&rs->rooms, &pos, &e);) {
        rroom_t *r = e->value;
        if (r->started && !r->gap_asked && ask_gap(rs, ac, r, UINT64_MAX))
            LOG_LIMITED(LOG_LEVEL_WARN, "chat", "room %s: not read back after a reconnection",
                        r->id);
    }
}

static void script_loaded(redisAsyncContext *ac, void *reply, void *priv) {
    redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        LOG_ERROR("chat", "Redis did not load a script: %s", rep->str);
}

/* Before anything else on the connection: the commands after it find their scripts. A
 * SCRIPT FLUSH meanwhile fails them (NOSCRIPT, logged) until the next reconnection. */
static void cmd_ready(redis_conn_t *c, void *arg) {
    for (int i = 0; i < SCRIPTS; i++)
        if (redisAsyncCommand(redis_conn_ctx(c), script_loaded, NULL, "SCRIPT LOAD %s",
                              scripts[i]) != REDIS_OK)
            LOG_ERROR("chat", "cannot load a script into Redis");
}

int chat_store_open_redis(uv_loop_t *loop, const char *url, const chat_store_config_t *cfg,
                          chat_store_t **out) {
    rstore_t *rs = calloc(1, sizeof *rs);
    if (!rs)
        return -ENOMEM;
    rs->head.ops = &redis_ops;
    rs->loop = loop;
    if (cfg)
        rs->cfg = *cfg;
    else
        chat_store_config_defaults(&rs->cfg);
    if (!rs->cfg.memory_keep)
        rs->cfg.memory_keep = CHAT_REDIS_KEEP;
    for (int i = 0; i < SCRIPTS; i++) {
        unsigned char md[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)scripts[i], strlen(scripts[i]), md);
        for (int j = 0; j < SHA_DIGEST_LENGTH; j++)
            snprintf(rs->sha[i] + 2 * j, 3, "%02x", md[j]);
    }
    uint8_t prefix[8];
    int rc = rand_bytes(prefix, sizeof prefix) ? -EIO : 0;
    for (size_t i = 0; rc == 0 && i < sizeof prefix; i++)
        snprintf(rs->id_prefix + 2 * i, 3, "%02x", prefix[i]);
    if (rc == 0 && (rc = redis_endpoint_parse(url, &rs->ep)))
        LOG_ERROR("chat", "--redis-url %s: not a Redis URL", url);
    if (rc == 0)
        rc = map_init(&rs->rooms) ? -ENOMEM : 0;
    static const redis_conn_cb_t cmd_cb = {cmd_ready, NULL}, sub_cb = {sub_ready, NULL};
    if (rc == 0)
        rc = uv_timer_init(loop, &rs->gap_timer);
    if (rc) {
        map_free(&rs->rooms);
        redis_endpoint_free(&rs->ep);
        free(rs);
        return rc;
    }
    rs->gap_timer.data = rs;
    rc = uv_timer_start(&rs->gap_timer, gap_tick, GAP_MS, GAP_MS);
    if (rc == 0)
        rc = redis_conn_open(loop, &rs->ep, "chat store", &cmd_cb, rs, &rs->cmd);
    if (rc == 0)
        rc = redis_conn_open(loop, &rs->ep, "chat feed", &sub_cb, rs, &rs->sub);
    if (rc == 0) {
        *out = (chat_store_t *)rs;
        return 0;
    }
    /* Undone the way a close is: the timer and what opened close on the loop. */
    rs->closing = true;
    finish_close(rs);
    LOG_ERROR("chat", "cannot open the Redis store: %d", rc);
    return rc;
}
