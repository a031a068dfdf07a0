/* cluster/redis_shards.c — the masters of a Redis Cluster (cluster/redis_shards.h).
 *
 * A read of the map: start_read asks CLUSTER SLOTS → on_slots → parse (validates the
 * whole reply into a slot → master table before anything changes) → apply (keeps the
 * shards of masters still there, closes those that left, opens the new ones, installs the
 * owner table) → `ready` for every shard whose subscriber is up.
 *
 * Lifetime: every connection and the retry timer count in `pending` until their close
 * callback has run; a shard's index is reused only once both its connections are
 * released, and sh is freed only when pending reaches zero after redis_shards_close. The
 * timer's close callback always runs on a later loop iteration, so sh outlives every
 * callback that is running when the owner closes it.
 *
 * Not done: following MOVED / ASK per command (the owner refreshes and sends again, which
 * suits pub/sub, where a message lost in a resharding is lost anyway), reading from
 * replicas, and a timeout on CLUSTER SLOTS (a read that never answers ends when its
 * connection drops, and the next one is asked then). */
#include "cluster/redis_shards.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/redis_sub.h"
#include "util/assert.h"
#include "util/log.h"

/* One master: its connections, while in the map or being closed. */
typedef struct {
    redis_shards_t *sh;
    int index;
    char *host; /* as CLUSTER SLOTS gave it (or the host asked, for an empty one) */
    int port;
    redis_conn_t *pub; /* NULL once closed */
    redis_sub_t *sub;  /* NULL once closed */
    int open_conns;    /* of pub and sub, not yet released */
    bool used;         /* not free for another master */
    bool leaving;      /* left the map (or everything is closing): its connections close */
    bool in_map;       /* scratch of apply */
} shard_t;

/* A master of a reply being parsed: slices into the reply. */
typedef struct {
    const char *host;
    size_t host_len;
    int port;
    int shard; /* its shard once applied, or -1 */
} master_t;

struct redis_shards {
    uv_loop_t *loop;
    redis_endpoint_t seed;
    redis_shards_cb_t cb;
    void *arg;
    redis_conn_t *control;
    shard_t **shards; /* each allocated once, so the connections' arg stays put */
    int nshards;
    int16_t owner[REDIS_SLOTS];   /* slot → shard, -1 when not covered */
    int16_t scratch[REDIS_SLOTS]; /* slot → master of the reply being parsed */
    int covered;                  /* slots with an owner */
    bool want;                    /* a read is asked for and not yet sent */
    bool reading;                 /* CLUSTER SLOTS sent, reply not yet in */
    int asked;                    /* where: -1 the control, else that shard's publisher */
    bool failing;                 /* the last read failed (later failures log at debug) */
    uv_timer_t retry;
    int pending; /* connections and the timer not yet released */
    bool closing;
    void (*done)(void *arg);
    void *done_arg;
};

static void start_read(redis_shards_t *sh);

/* ---- slots ---- */

/* CRC16/XMODEM (polynomial 0x1021, initial 0) a bit at a time: a channel name is a few
 * dozen bytes hashed once per publish, next to which a 512-byte table buys nothing. */
static uint16_t crc16(const char *p, size_t len) {
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint8_t)p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

uint16_t redis_slot(const char *key, size_t len) {
    const char *open = len ? memchr(key, '{', len) : NULL;
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = rest ? memchr(open + 1, '}', rest) : NULL;
        if (close && close > open + 1)
            return crc16(open + 1, (size_t)(close - open - 1)) % REDIS_SLOTS;
    }
    return crc16(key, len) % REDIS_SLOTS;
}

/* ---- the end of everything ---- */

static void maybe_done(redis_shards_t *sh) {
    if (!sh->closing || sh->pending)
        return;
    void (*done)(void *) = sh->done;
    void *arg = sh->done_arg;
    for (int i = 0; i < sh->nshards; i++) {
        PARLEY_ASSERT(!sh->shards[i]->used);
        free(sh->shards[i]);
    }
    free(sh->shards);
    redis_endpoint_free(&sh->seed);
    free(sh);
    if (done)
        done(arg);
}

static void released(redis_shards_t *sh) {
    PARLEY_ASSERT(sh->pending > 0);
    sh->pending--;
    maybe_done(sh);
}

static void control_closed(void *arg) {
    released(arg);
}

static void retry_closed(uv_handle_t *h) {
    released(h->data);
}

/* ---- shards ---- */

static void shard_conn_closed(void *arg) {
    shard_t *s = arg;
    PARLEY_ASSERT(s->open_conns > 0 && s->leaving);
    if (--s->open_conns == 0) {
        free(s->host);
        s->host = NULL;
        s->used = false;
    }
    released(s->sh);
}

/* Closes both connections; the index is free once both are released. */
static void shard_leave(shard_t *s) {
    PARLEY_ASSERT(s->used && !s->leaving);
    s->leaving = true;
    redis_conn_t *pub = s->pub;
    redis_sub_t *sub = s->sub;
    s->pub = NULL;
    s->sub = NULL;
    if (pub)
        redis_conn_close(pub, shard_conn_closed, s);
    if (sub)
        redis_sub_close(sub, shard_conn_closed, s);
}

/* A publisher that comes up lets a read wait for no connection (the control down). */
static void pub_ready(redis_conn_t *c, void *arg) {
    shard_t *s = arg;
    start_read(s->sh);
}

static void sub_ready(redis_sub_t *sub, void *arg) {
    shard_t *s = arg;
    s->sh->cb.ready(s->sh, s->index, s->sh->arg);
}

static void sub_push(redis_sub_t *sub, const redisReply *reply, void *arg) {
    shard_t *s = arg;
    s->sh->cb.push(s->sh, s->index, reply, s->sh->arg);
}

static void schedule_retry(redis_shards_t *sh);

/* A master's connection dropped: it may have failed over to a replica elsewhere, which
 * only a new map says (nothing is sent to the dead one, so no MOVED would come). */
static void pub_lost(redis_conn_t *c, void *arg) {
    schedule_retry(((shard_t *)arg)->sh);
}

static void sub_lost(redis_sub_t *sub, void *arg) {
    schedule_retry(((shard_t *)arg)->sh);
}

/* Whether every master of the map has both its connections up. */
static bool all_up(const redis_shards_t *sh) {
    for (int i = 0; i < sh->nshards; i++) {
        const shard_t *s = sh->shards[i];
        if (s->used && !s->leaving && (!redis_conn_ctx(s->pub) || !redis_sub_ready(s->sub)))
            return false;
    }
    return true;
}

/* A free index (one whose connections are released), or a new one. NULL when out of
 * memory or when owner[] could not hold the index. */
static shard_t *shard_alloc(redis_shards_t *sh) {
    for (int i = 0; i < sh->nshards; i++) {
        if (!sh->shards[i]->used)
            return sh->shards[i];
    }
    if (sh->nshards == INT16_MAX)
        return NULL;
    shard_t **grown = realloc(sh->shards, (size_t)(sh->nshards + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    sh->shards = grown;
    shard_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->sh = sh;
    s->index = sh->nshards;
    sh->shards[sh->nshards++] = s;
    return s;
}

/* Opens the connections of master m. Returns its index, or -ENOMEM (then nothing of it
 * stays but connections already closing). */
static int shard_open(redis_shards_t *sh, const master_t *m) {
    static const redis_conn_cb_t pub_cb = {pub_ready, pub_lost};
    static const redis_sub_cb_t sub_cb = {sub_ready, sub_push, sub_lost};
    shard_t *s = shard_alloc(sh);
    if (!s)
        return -ENOMEM;
    if (!(s->host = strndup(m->host, m->host_len)))
        return -ENOMEM;
    s->port = m->port;
    s->used = true;
    s->leaving = false;
    const redis_endpoint_t ep = {
        .host = s->host, .port = m->port, .user = sh->seed.user, .password = sh->seed.password};
    char name[32];
    snprintf(name, sizeof name, "publisher %s:%d", s->host, s->port);
    if (redis_conn_open(sh->loop, &ep, name, &pub_cb, s, &s->pub) == 0) {
        s->open_conns++;
        sh->pending++;
        snprintf(name, sizeof name, "subscriber %s:%d", s->host, s->port);
        if (redis_sub_open(sh->loop, &ep, name, &sub_cb, s, &s->sub) == 0) {
            s->open_conns++;
            sh->pending++;
            return s->index;
        }
    }
    /* pub alone may be open: it closes and releases the index */
    if (s->open_conns) {
        shard_leave(s);
    } else {
        free(s->host);
        s->host = NULL;
        s->used = false;
    }
    return -ENOMEM;
}

/* ---- reading the map ---- */

static void retry_due(uv_timer_t *t) {
    redis_shards_refresh(t->data);
}

/* One pending retry at most: a later reason to retry does not postpone it. */
static void schedule_retry(redis_shards_t *sh) {
    if (uv_is_active((uv_handle_t *)&sh->retry))
        return;
    int rc = uv_timer_start(&sh->retry, retry_due, REDIS_SHARDS_RETRY_MS, 0);
    if (rc)
        LOG_ERROR("redis", "cannot schedule a read of the cluster map: %s", uv_strerror(rc));
}

/* A read that did not give a usable map: logged once per streak (the rest at debug: a
 * cluster that stays broken must not fill the log), and tried again later. */
static void read_failed(redis_shards_t *sh, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void read_failed(redis_shards_t *sh, const char *fmt, ...) {
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (sh->failing) {
        LOG_DEBUG("redis", "cannot read the cluster map (%s); retrying", why);
    } else if (strstr(why, "cluster support disabled")) {
        LOG_ERROR("redis",
                  "%s:%d is not a Redis Cluster (%s), which the cluster mode (--redis-cluster, "
                  "parley_redis_config_t.cluster) needs; retrying every %d ms",
                  sh->seed.host ? sh->seed.host : sh->seed.path, sh->seed.port, why,
                  REDIS_SHARDS_RETRY_MS);
    } else {
        LOG_WARN("redis", "cannot read the cluster map (%s); retrying every %d ms", why,
                 REDIS_SHARDS_RETRY_MS);
    }
    sh->failing = true;
    schedule_retry(sh);
}

/* One [start, end, [ip, port, ...], replica...] entry into sh->scratch; the master is
 * found in or added to ms. Returns NULL or why it is malformed. */
static const char *parse_range(redis_shards_t *sh, const redisReply *r, const char *asked_host,
                               master_t *ms, int *nms) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return "a range is not [start, end, master, ...]";
    const redisReply *start = r->element[0], *end = r->element[1], *node = r->element[2];
    if (start->type != REDIS_REPLY_INTEGER || end->type != REDIS_REPLY_INTEGER ||
        start->integer < 0 || start->integer > end->integer || end->integer >= REDIS_SLOTS)
        return "a range's bounds are not slots";
    if (node->type != REDIS_REPLY_ARRAY || node->elements < 2)
        return "a master is not [ip, port, ...]";
    const redisReply *ip = node->element[0], *port = node->element[1];
    if ((ip->type != REDIS_REPLY_STRING && ip->type != REDIS_REPLY_NIL) ||
        port->type != REDIS_REPLY_INTEGER || port->integer < 1 || port->integer > 65535)
        return "a master's address is not [ip, port]";
    master_t m = {.host = ip->str, .host_len = ip->len, .port = (int)port->integer, .shard = -1};
    /* Empty (or NULL, cluster-preferred-endpoint-type unknown-endpoint): "the address you
     * reached me on". "?": a hostname is preferred but that node has none. */
    if (ip->type == REDIS_REPLY_NIL || ip->len == 0) {
        if (!asked_host)
            return "a master without an address, asked over a Unix socket";
        m.host = asked_host;
        m.host_len = strlen(asked_host);
    } else if (ip->len == 1 && ip->str[0] == '?') {
        return "a master without a hostname (cluster-preferred-endpoint-type hostname)";
    }
    int k = 0;
    while (k < *nms && !(ms[k].port == m.port && ms[k].host_len == m.host_len &&
                         memcmp(ms[k].host, m.host, m.host_len) == 0))
        k++;
    if (k == *nms)
        ms[(*nms)++] = m;
    for (long long slot = start->integer; slot <= end->integer; slot++)
        sh->scratch[slot] = (int16_t)k;
    return NULL;
}

/* The whole reply (an array) into sh->scratch and ms (room for reply->elements). */
static const char *parse(redis_shards_t *sh, const redisReply *reply, master_t *ms, int *nms) {
    /* The shard asked cannot have left: maps change only here, one read at a time. */
    PARLEY_ASSERT(sh->asked < sh->nshards && (sh->asked < 0 || sh->shards[sh->asked]->used));
    const char *asked_host = sh->asked < 0 ? sh->seed.host : sh->shards[sh->asked]->host;
    for (int i = 0; i < REDIS_SLOTS; i++)
        sh->scratch[i] = -1;
    *nms = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const char *why = parse_range(sh, reply->element[i], asked_host, ms, nms);
        if (why)
            return why;
    }
    return NULL;
}

/* Makes the shards those of ms and installs the map. Returns whether it changed. */
static bool apply(redis_shards_t *sh, master_t *ms, int nms) {
    for (int i = 0; i < sh->nshards; i++)
        sh->shards[i]->in_map = false;
    for (int k = 0; k < nms; k++) {
        for (int i = 0; i < sh->nshards && ms[k].shard < 0; i++) {
            shard_t *s = sh->shards[i];
            if (s->used && !s->leaving && s->port == ms[k].port &&
                strlen(s->host) == ms[k].host_len &&
                memcmp(s->host, ms[k].host, ms[k].host_len) == 0) {
                ms[k].shard = i;
                s->in_map = true;
            }
        }
    }
    bool changed = false;
    for (int i = 0; i < sh->nshards; i++) {
        shard_t *s = sh->shards[i];
        if (s->used && !s->leaving && !s->in_map) {
            LOG_INFO("redis", "cluster: %s:%d is no longer a master with slots", s->host, s->port);
            shard_leave(s);
            changed = true;
        }
    }
    for (int k = 0; k < nms; k++) {
        if (ms[k].shard >= 0)
            continue;
        int rc = shard_open(sh, &ms[k]);
        if (rc < 0) {
            /* Its slots stay uncovered, which makes the map incomplete: read again. */
            LOG_ERROR("redis", "cluster: cannot open the connections of %.*s:%d: %s",
                      (int)ms[k].host_len, ms[k].host, ms[k].port, strerror(-rc));
            continue;
        }
        ms[k].shard = rc;
        changed = true;
    }
    int covered = 0;
    for (int slot = 0; slot < REDIS_SLOTS; slot++) {
        int k = sh->scratch[slot];
        int16_t owner = k < 0 ? -1 : (int16_t)ms[k].shard;
        changed = changed || owner != sh->owner[slot];
        sh->owner[slot] = owner;
        covered += owner >= 0;
    }
    sh->covered = covered;
    return changed;
}

/* Parses and applies a reply that is not an error. Returns whether the map changed. */
static bool use_map(redis_shards_t *sh, const redisReply *reply) {
    /* Ranges are disjoint: more than one per slot is not a map (and scratch's master
     * numbers must fit an int16_t). */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements > REDIS_SLOTS) {
        read_failed(sh, "CLUSTER SLOTS: not an array of at most %d ranges", REDIS_SLOTS);
        return false;
    }
    master_t *ms = malloc((reply->elements ? reply->elements : 1) * sizeof *ms);
    if (!ms) {
        read_failed(sh, "out of memory");
        return false;
    }
    int nms;
    const char *why = parse(sh, reply, ms, &nms);
    if (why) {
        read_failed(sh, "CLUSTER SLOTS: %s", why);
        free(ms);
        return false;
    }
    if (sh->failing)
        LOG_INFO("redis", "cluster map read");
    sh->failing = false;
    bool changed = apply(sh, ms, nms);
    if (changed)
        LOG_AT(sh->covered == REDIS_SLOTS ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, "redis",
               "cluster map: %d masters, %d of %d slots covered", nms, sh->covered, REDIS_SLOTS);
    free(ms);
    /* Until every slot has a master that answers, nothing else would tell us that the
     * map changed (a failover to a replica at another address, say). */
    if (sh->covered < REDIS_SLOTS || !all_up(sh))
        schedule_retry(sh);
    return changed;
}

static void on_slots(redisAsyncContext *ac, void *r, void *priv) {
    redis_shards_t *sh = priv;
    const redisReply *reply = r;
    sh->reading = false;
    if (sh->closing)
        return;
    bool changed = false;
    if (!reply) {
        /* Its connection dropped, which that connection logs; the retry asks whichever
         * connection is up then. */
        LOG_DEBUG("redis", "the connection of a CLUSTER SLOTS dropped; retrying");
        schedule_retry(sh);
    } else if (reply->type == REDIS_REPLY_ERROR) {
        read_failed(sh, "%s", reply->str);
    } else {
        changed = use_map(sh, reply);
    }
    start_read(sh); /* asked for during this one */
    /* The owner may close everything from a callback: sh stays allocated until the
     * timer's close callback, on a later iteration. */
    for (int i = 0; changed && i < sh->nshards && !sh->closing; i++) {
        const shard_t *s = sh->shards[i];
        if (s->used && !s->leaving && redis_sub_ready(s->sub))
            sh->cb.ready(sh, i, sh->arg);
    }
}

/* Sends the read asked for, if none is in flight and a connection is up; otherwise a
 * connection's `ready` or the end of the read in flight comes back here. */
static void start_read(redis_shards_t *sh) {
    if (sh->closing || sh->reading || !sh->want)
        return;
    int asked = -1;
    redisAsyncContext *ac = redis_conn_ctx(sh->control);
    for (int i = 0; !ac && i < sh->nshards; i++) {
        if (sh->shards[i]->used && !sh->shards[i]->leaving &&
            (ac = redis_conn_ctx(sh->shards[i]->pub)))
            asked = i;
    }
    if (!ac)
        return;
    sh->want = false;
    if (redisAsyncCommand(ac, on_slots, sh, "CLUSTER SLOTS") != REDIS_OK) {
        read_failed(sh, "cannot send CLUSTER SLOTS");
        return;
    }
    sh->reading = true;
    sh->asked = asked;
    uv_timer_stop(&sh->retry);
}

void redis_shards_refresh(redis_shards_t *sh) {
    sh->want = true;
    start_read(sh);
}

/* The control connection (again): the map may have changed while it was down. */
static void control_ready(redis_conn_t *c, void *arg) {
    redis_shards_refresh(arg);
}

/* ---- the interface ---- */

int redis_shards_open(uv_loop_t *loop, const redis_endpoint_t *seed, const redis_shards_cb_t *cb,
                      void *arg, redis_shards_t **out) {
    static const redis_conn_cb_t control_cb = {control_ready, NULL};
    PARLEY_ASSERT(cb->ready && cb->push);
    redis_shards_t *sh = calloc(1, sizeof *sh);
    if (!sh)
        return -ENOMEM;
    if (redis_endpoint_copy(seed, &sh->seed)) {
        free(sh);
        return -ENOMEM;
    }
    /* A cluster has database 0 only (SELECT is refused there). */
    sh->seed.db = 0;
    sh->loop = loop;
    sh->cb = *cb;
    sh->arg = arg;
    for (int i = 0; i < REDIS_SLOTS; i++)
        sh->owner[i] = -1;
    int rc = uv_timer_init(loop, &sh->retry);
    if (rc) {
        redis_endpoint_free(&sh->seed);
        free(sh);
        return -ENOMEM;
    }
    sh->retry.data = sh;
    sh->pending = 1;
    char name[32];
    snprintf(name, sizeof name, "cluster %s:%d", sh->seed.host ? sh->seed.host : sh->seed.path,
             sh->seed.port);
    if (redis_conn_open(loop, &sh->seed, name, &control_cb, sh, &sh->control)) {
        /* The timer is released on the loop: sh goes with it, nobody told. */
        redis_shards_close(sh, NULL, NULL);
        return -ENOMEM;
    }
    sh->pending++;
    *out = sh;
    return 0;
}

int redis_shards_owner(const redis_shards_t *sh, const char *key, size_t len) {
    return sh->owner[redis_slot(key, len)];
}

/* The shard at that index while it is in use and not closing, else NULL. */
static shard_t *live_shard(const redis_shards_t *sh, int shard) {
    if (shard < 0 || shard >= sh->nshards)
        return NULL;
    shard_t *s = sh->shards[shard];
    return s->used && !s->leaving ? s : NULL;
}

redisAsyncContext *redis_shards_ctx(const redis_shards_t *sh, int shard) {
    const shard_t *s = live_shard(sh, shard);
    return s ? redis_conn_ctx(s->pub) : NULL;
}

int redis_shards_sub_send(redis_shards_t *sh, int shard, int argc, const char **argv,
                          const size_t *argvlen) {
    shard_t *s = live_shard(sh, shard);
    return s ? redis_sub_send(s->sub, argc, argv, argvlen) : -EPIPE;
}

bool redis_shards_ready(const redis_shards_t *sh) {
    if (sh->covered < REDIS_SLOTS)
        return false;
    for (int i = 0; i < sh->nshards; i++) {
        const shard_t *s = sh->shards[i];
        if (s->used && !s->leaving && (!redis_conn_ctx(s->pub) || !redis_sub_ready(s->sub)))
            return false;
    }
    return true;
}

void redis_shards_close(redis_shards_t *sh, void (*done)(void *arg), void *arg) {
    PARLEY_ASSERT(!sh->closing);
    sh->closing = true;
    sh->done = done;
    sh->done_arg = arg;
    uv_close((uv_handle_t *)&sh->retry, retry_closed); /* stops it too */
    if (sh->control)
        redis_conn_close(sh->control, control_closed, sh);
    sh->control = NULL;
    for (int i = 0; i < sh->nshards; i++) {
        if (sh->shards[i]->used && !sh->shards[i]->leaving)
            shard_leave(sh->shards[i]);
    }
}
