/* cluster/redis.c — the Redis adapter: a node of a socket.io cluster (parley/redis.h).
 *
 * Two connections, as the Node adapter has: one publishes and asks (PUBLISH, PUBSUB
 * NUMSUB), the other is subscribed. Each namespace's in-process adapter is wrapped: what
 * reaches sockets by room is done locally and published; what comes from another node
 * is applied locally with SIO_LOCAL. The bytes are the Node adapter's (redis_msg.h).
 *
 * This file is that wrapper and its lifetime: the adapter's operations, publishing, the
 * broadcasts other nodes send, attach and detach. How messages travel (the classic and
 * the sharded wire), the requests between nodes and recovery across them are the other
 * redis_*.c files; redis_internal.h says which, and what each owns.
 *
 * Reconnection: a connection that drops is made again after 100 ms, doubling to 5 s;
 * the subscribed one subscribes again to every namespace's channels. */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/redis_internal.h"
#include "util/log.h"
#include "util/map.h"
#include "util/rand.h"

static void maybe_free(parley_redis_t *r);

/* Six random characters, as the Node adapter's uid2(6). */
void redis_uid_new(char out[UID_SIZE]) {
    char id[RAND_ID_SIZE];
    if (rand_id(id))
        memset(id, 'x', sizeof id); /* ids only tell requests apart; never a secret */
    memcpy(out, id, UID_SIZE - 1);
    out[UID_SIZE - 1] = '\0';
}

/* ---- publishing ---- */

/* The connection to publish or ask on about `channel`: on a Redis Cluster, the
 * connection to the master that owns the channel's slot. */
redisAsyncContext *redis_pub_ctx(parley_redis_t *r, const char *channel) {
    if (r->shards)
        return redis_shards_ctx(r->shards, redis_shards_owner(r->shards, channel, strlen(channel)));
    return redis_conn_ctx(r->pub);
}

/* An error reply: on a Redis Cluster, MOVED means the slot map changed (ASK is a slot in
 * migration: the map changes once it is done, with MOVED). */
void redis_reply_error(parley_redis_t *r, const char *what, const redisReply *rep) {
    LOG_LIMITED(LOG_LEVEL_WARN, "redis", "%s: %s", what, rep->str);
    if (r->shards && strncmp(rep->str, "MOVED ", 6) == 0)
        redis_shards_refresh(r->shards);
}

static void published(redisAsyncContext *ac, void *reply, void *priv) {
    redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        redis_reply_error(priv, "PUBLISH", rep);
}

void redis_publish(parley_redis_t *r, const char *channel, const void *msg, size_t len) {
    redisAsyncContext *ac = redis_pub_ctx(r, channel);
    if (!ac || redisAsyncCommand(ac, published, r, r->sharded ? "SPUBLISH %s %b" : "PUBLISH %s %b",
                                 channel, msg, len) != REDIS_OK) {
        LOG_LIMITED(LOG_LEVEL_WARN, "redis",
                    "not connected: a message for the other nodes is lost");
        return;
    }
    r->stats.published++;
    r->stats.published_bytes += len;
}

/* ---- the adapter ---- */

static json_t *names(const char *const *list, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(list[i]));
    return a;
}

static json_t *opts_json(const sio_target_t *t) {
    return json_pack("{s:o,s:o}", "rooms", names(t ? t->rooms : NULL, t ? t->nrooms : 0), "except",
                     names(t ? t->except : NULL, t ? t->nexcept : 0));
}

static int ra_broadcast(sio_adapter_t *a, const sio_bcast_t *b) {
    radapter_t *ra = (radapter_t *)a;
    int rc = ra->wrap.local->ops->broadcast(ra->wrap.local, b);
    if (rc || (b->to.flags & SIO_LOCAL))
        return rc;
    buf_t m = {0};
    int prc = ra->r->sharded ? rmsg_pack_cluster_bcast(&m, ra->r->uid, a->nsp->name, b, NULL)
                             : rmsg_pack_bcast(&m, ra->r->uid, a->nsp->name, b, NULL);
    if (prc == 0) {
        /* One room: its own channel, but in sharded mode only where its subscribers are
         * (the dynamic mode's, and not a socket's own room, which has none). */
        if (b->to.nrooms == 1 &&
            (!ra->r->sharded || (ra->r->dynamic && strlen(b->to.rooms[0]) != SIO_SOCKET_ID_LEN))) {
            size_t len = strlen(ra->channel) + strlen(b->to.rooms[0]) + 2;
            char *ch = malloc(len);
            if (ch) {
                snprintf(ch, len, "%s%s#", ra->channel, b->to.rooms[0]);
                redis_publish(ra->r, ch, m.data, m.len);
                free(ch);
            }
        } else {
            redis_publish(ra->r, ra->channel, m.data, m.len);
        }
    } else {
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "broadcast not published: %d", prc);
    }
    buf_free(&m);
    return 0;
}

static int ra_broadcast_with_ack(sio_adapter_t *a, const sio_bcast_t *b, uint64_t ack_id,
                                 sio_bcast_count_fn count, sio_ack_fn ack, void *arg) {
    radapter_t *ra = (radapter_t *)a;
    if (b->to.flags & SIO_LOCAL)
        return ra->wrap.local->ops->broadcast_with_ack(ra->wrap.local, b, ack_id, count, ack, arg);
    sio_bcast_t mine = *b;
    mine.more = true;
    int rc =
        ra->wrap.local->ops->broadcast_with_ack(ra->wrap.local, &mine, ack_id, count, ack, arg);
    if (rc)
        return rc;
    rreq_t *q = redis_req_new(ra, REQ_BROADCAST, arg);
    if (q) {
        q->count = count;
        q->ack = ack;
        rc = ra->r->sharded ? rmsg_pack_cluster_bcast(&q->msg, ra->r->uid, a->nsp->name, b, q->id)
                            : rmsg_pack_bcast(&q->msg, ra->r->uid, a->nsp->name, b, q->id);
        /* Counting waits for the requests timeout at most; the answers, for the emitter's. */
        if (rc == 0)
            rc = redis_req_send(q, ra->r->requests_timeout_ms);
        if (rc)
            redis_req_end(q, rc);
    } else {
        count(0, true, arg);
    }
    if (rc)
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "broadcast with acks not sent to the other nodes: %d",
                    rc);
    return 0;
}

/* socketsJoin / socketsLeave / disconnectSockets for the others: no answer awaited. */
static void remote_op(radapter_t *ra, int type, const sio_target_t *which, const char *room,
                      bool close) {
    if (which && (which->flags & SIO_LOCAL))
        return;
    json_t *req =
        json_pack("{s:s,s:i,s:o}", "uid", ra->r->uid, "type", type, "opts", opts_json(which));
    if (req && room)
        json_object_set_new(req, "rooms", json_pack("[s]", room));
    if (req && type == REQ_REMOTE_DISCONNECT)
        json_object_set_new(req, "close", json_boolean(close));
    redis_request_send(ra, type, req);
}

static int ra_sockets_join(sio_adapter_t *a, const sio_target_t *which, const char *room) {
    radapter_t *ra = (radapter_t *)a;
    int rc = ra->wrap.local->ops->sockets_join(ra->wrap.local, which, room);
    remote_op(ra, REQ_REMOTE_JOIN, which, room, false);
    return rc;
}

static int ra_sockets_leave(sio_adapter_t *a, const sio_target_t *which, const char *room) {
    radapter_t *ra = (radapter_t *)a;
    int rc = ra->wrap.local->ops->sockets_leave(ra->wrap.local, which, room);
    remote_op(ra, REQ_REMOTE_LEAVE, which, room, false);
    return rc;
}

static int ra_disconnect_sockets(sio_adapter_t *a, const sio_target_t *which, bool close) {
    radapter_t *ra = (radapter_t *)a;
    remote_op(ra, REQ_REMOTE_DISCONNECT, which, NULL, close);
    return ra->wrap.local->ops->disconnect_sockets(ra->wrap.local, which, close);
}

void redis_keep_local(int err, json_t *sockets, void *arg) {
    *(json_t **)arg = json_incref(sockets);
}

static int ra_fetch_all(sio_adapter_t *a, const sio_target_t *which, uint32_t timeout_ms,
                        sio_fetch_fn done, void *arg) {
    radapter_t *ra = (radapter_t *)a;
    if (which && (which->flags & SIO_LOCAL))
        return ra->wrap.local->ops->fetch_all(ra->wrap.local, which, timeout_ms, done, arg);
    json_t *mine = NULL;
    int rc =
        ra->wrap.local->ops->fetch_all(ra->wrap.local, which, timeout_ms, redis_keep_local, &mine);
    rreq_t *q = rc == 0 ? redis_req_new(ra, REQ_REMOTE_FETCH, arg) : NULL;
    if (!q) {
        json_decref(mine);
        return rc ? rc : -ENOMEM;
    }
    q->collected = mine;
    q->fetch_done = done;
    json_t *req = json_pack("{s:s,s:s,s:i,s:o}", "uid", ra->r->uid, "requestId", q->id, "type",
                            REQ_REMOTE_FETCH, "opts", opts_json(which));
    rc = req ? redis_request_bytes(ra, REQ_REMOTE_FETCH, req, &q->msg) : -ENOMEM;
    if (rc == 0)
        rc = redis_req_send(q, timeout_ms);
    if (rc) {
        /* Not asked: this node's sockets are the answer there is. */
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "fetchSockets not asked of the other nodes: %d", rc);
        redis_req_end(q, rc);
    }
    return 0;
}

static int ra_server_emit(sio_adapter_t *a, const char *event, const char *args_json, size_t len,
                          uint32_t timeout_ms, sio_bcast_ack_fn done, void *arg) {
    radapter_t *ra = (radapter_t *)a;
    json_t *data = json_pack("[s]", event);
    json_t *args = json_loadb(args_json, len, 0, NULL);
    if (!data || !json_is_array(args) || json_array_extend(data, args)) {
        json_decref(data);
        json_decref(args);
        return -EINVAL;
    }
    json_decref(args);
    json_t *req =
        json_pack("{s:s,s:i,s:o}", "uid", ra->r->uid, "type", REQ_SERVER_SIDE_EMIT, "data", data);
    if (!req)
        return -ENOMEM;
    if (!done) {
        redis_request_send(ra, REQ_SERVER_SIDE_EMIT, req);
        return 0;
    }
    rreq_t *q = redis_req_new(ra, REQ_SERVER_SIDE_EMIT, arg);
    if (!q || !(q->collected = json_array())) {
        json_decref(req);
        if (q)
            redis_req_end(q, 0);
        return -ENOMEM;
    }
    q->emit_done = done;
    json_object_set_new(req, "requestId", json_string(q->id));
    int rc = redis_request_bytes(ra, REQ_SERVER_SIDE_EMIT, req, &q->msg);
    if (rc == 0)
        rc = redis_req_send(q, timeout_ms);
    if (rc)
        redis_req_end(q, rc);
    return 0;
}

static size_t ra_server_count(sio_adapter_t *a) {
    return ((radapter_t *)a)->r->server_count;
}

static void ra_free(sio_adapter_t *a) {
    radapter_t *ra = (radapter_t *)a;
    parley_redis_t *r = ra->r;
    for (radapter_t **p = &r->adapters; *p; p = &(*p)->next) {
        if (*p == ra) {
            *p = ra->next;
            break;
        }
    }
    /* Requests of this namespace end now: their callbacks still see it. */
    for (rreq_t *q = r->reqs, *next; q; q = next) {
        next = q->next;
        if (q->ra == ra)
            redis_req_end(q, -ETIMEDOUT);
    }
    if (!r->detaching) {
        if (r->sharded)
            redis_sharded_unsubscribe(ra);
        else
            redis_classic_unsubscribe(ra);
    }
    sio_nsp_on_room(a->nsp, NULL, NULL);
    map_entry_t *e;
    for (size_t pos = 0; map_next(&ra->lingering, &pos, &e);)
        free(e->value);
    map_free(&ra->lingering);
    ra->wrap.local->ops->free(ra->wrap.local);
    free(ra->channel);
    free(ra->req_channel);
    free(ra->resp_channel);
    free(ra->own_channel);
    free(ra->parley_channel);
    free(ra);
    if (r->detaching)
        maybe_free(r);
}

static const sio_adapter_ops_t redis_ops = {
    .broadcast = ra_broadcast,
    .broadcast_with_ack = ra_broadcast_with_ack,
    .join = sio_wrapped_join,
    .leave = sio_wrapped_leave,
    .leave_all = sio_wrapped_leave_all,
    .sockets_join = ra_sockets_join,
    .sockets_leave = ra_sockets_leave,
    .disconnect_sockets = ra_disconnect_sockets,
    .fetch_sockets = sio_wrapped_fetch_sockets,
    .fetch_all = ra_fetch_all,
    .server_emit = ra_server_emit,
    .room_size = sio_wrapped_room_size,
    .persist = sio_wrapped_persist,
    .restore = redis_recovery_restore,
    .purge = redis_sharded_purge,
    .server_count = ra_server_count,
    .free = ra_free,
};

/* ---- what other nodes send: broadcasts (requests are redis_answers.c's) ---- */

/* The namespace's channels, on the wire of the mode. */
static void subscribe(parley_redis_t *r, radapter_t *ra) {
    if (r->sharded)
        redis_sharded_subscribe(ra);
    else
        redis_classic_subscribe(ra);
}

/* Whether a broadcast on channel, "<key>#<nsp>#" or "<key>#<nsp>#<room>#", is for this
 * node: one room's is not unless some socket here is in it (with recovery, the log
 * keeps it for the sessions of sockets that were). */
bool redis_broadcast_wanted(radapter_t *ra, const char *channel) {
    size_t prefix = strlen(ra->channel), clen = strlen(channel);
    if (clen <= prefix + 1 || ra->wrap.base.nsp->io->cfg.recovery)
        return true;
    char *room = strndup(channel + prefix, clen - prefix - 1);
    size_t here = room ? ra->wrap.local->ops->room_size(ra->wrap.local, room) : 0;
    free(room);
    return here > 0;
}

/* A broadcast from another node, applied here (m is freed). */
void redis_on_broadcast(radapter_t *ra, rmsg_bcast_t *m) {
    if (strcmp(m->uid, ra->r->uid) == 0) {
        ra->r->stats.unused++;
    } else if (strcmp(m->nsp, ra->wrap.base.nsp->name) == 0) {
        m->b.to.flags |= SIO_LOCAL;
        int rc = ra->wrap.local->ops->broadcast(ra->wrap.local, &m->b);
        if (rc)
            LOG_LIMITED(LOG_LEVEL_WARN, "redis", "broadcast from another node failed: %d", rc);
    }
    rmsg_bcast_free(m);
}

/* ---- the public side ---- */

static void pub_ready(redis_conn_t *c, void *arg) {}

void parley_redis_config_defaults(parley_redis_config_t *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->url = "redis://127.0.0.1:6379";
    cfg->key = "socket.io";
    cfg->requests_timeout_ms = 5000;
    cfg->mode = PARLEY_REDIS_CLASSIC;
}

int parley_redis_mode_parse(const char *name, parley_redis_mode_t *out) {
    static const char *const mode_names[] = {"classic", "sharded", "sharded-static"};
    static const parley_redis_mode_t modes[] = {PARLEY_REDIS_CLASSIC, PARLEY_REDIS_SHARDED,
                                                PARLEY_REDIS_SHARDED_STATIC};
    for (size_t i = 0; name && i < sizeof mode_names / sizeof mode_names[0]; i++) {
        if (strcmp(name, mode_names[i]) == 0) {
            *out = modes[i];
            return 0;
        }
    }
    return -EINVAL;
}

static sio_adapter_t *wrap(sio_nsp_t *nsp, sio_adapter_t *local, void *arg) {
    parley_redis_t *r = arg;
    radapter_t *ra = calloc(1, sizeof *ra);
    if (!ra)
        return NULL;
    size_t n = strlen(r->key) + strlen(nsp->name) + 32;
    char **names[] = {&ra->channel, &ra->req_channel, &ra->resp_channel, &ra->own_channel,
                      &ra->parley_channel};
    bool ok = true;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        ok = (*names[i] = malloc(n)) && ok;
    if (!ok) {
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            free(*names[i]);
        free(ra);
        return NULL;
    }
    snprintf(ra->channel, n, "%s#%s#", r->key, nsp->name);
    snprintf(ra->req_channel, n, "%s-request#%s#", r->key, nsp->name);
    snprintf(ra->resp_channel, n, "%s-response#%s#", r->key, nsp->name);
    if (r->sharded)
        snprintf(ra->own_channel, n, "%s#%s#%s#", r->key, nsp->name, r->uid);
    else
        snprintf(ra->own_channel, n, "%s-response#%s#%s#", r->key, nsp->name, r->uid);
    snprintf(ra->parley_channel, n, "%s-parley#%s#", r->key, nsp->name);
    if (map_init(&ra->lingering)) {
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            free(*names[i]);
        free(ra);
        return NULL;
    }
    if (r->sharded && r->dynamic)
        sio_nsp_on_room(nsp, redis_sharded_on_room, ra);
    ra->wrap.base.ops = &redis_ops;
    ra->wrap.base.nsp = nsp;
    ra->wrap.local = local;
    ra->r = r;
    ra->next = r->adapters;
    r->adapters = ra;
    subscribe(r, ra);
    return &ra->wrap.base;
}

/* What attach made besides connections and adapters. */
static void free_config(parley_redis_t *r) {
    free(r->key);
    redis_endpoint_free(&r->ep);
    map_entry_t *e;
    for (size_t pos = 0; map_next(&r->unsubs, &pos, &e);)
        free(e->value);
    map_free(&r->unsubs);
}

int parley_redis_attach(uv_loop_t *loop, sio_server_t *io, const parley_redis_config_t *cfg,
                        parley_redis_t **out) {
    parley_redis_t *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->loop = loop;
    r->io = io;
    r->requests_timeout_ms = cfg->requests_timeout_ms ? cfg->requests_timeout_ms : 5000;
    r->sharded = cfg->mode != PARLEY_REDIS_CLASSIC;
    r->dynamic = cfg->mode == PARLEY_REDIS_SHARDED;
    r->only_shard = -1;
    if (cfg->cluster && !r->sharded) {
        free(r);
        return -EINVAL; /* classic mode on a Redis Cluster: not supported (redis.h) */
    }
    r->server_count = 1;
    redis_uid_new(r->uid);
    int rc = map_init(&r->unsubs) ? -ENOMEM : 0;
    if (rc == 0 && !(r->key = strdup(cfg->key ? cfg->key : "socket.io")))
        rc = -ENOMEM;
    if (rc == 0)
        rc = redis_endpoint_parse(cfg->url ? cfg->url : "redis://127.0.0.1:6379", &r->ep);
    if (rc) {
        free_config(r);
        free(r);
        return rc;
    }
    static const redis_conn_cb_t pub_cb = {pub_ready, NULL};
    /* Offsets name this node: one node's offset is never looked up in another's log. */
    char tag[UID_SIZE + 1];
    snprintf(tag, sizeof tag, "%s-", r->uid);
    sio_server_set_offset_tag(io, tag);
    rc = sio_server_wrap_adapters(io, wrap, r);
    if (rc == 0 && cfg->cluster)
        rc = redis_shards_open(loop, &r->ep, &redis_sharded_shards_cb, r, &r->shards);
    else if (rc == 0 && (rc = redis_conn_open(loop, &r->ep, "publisher", &pub_cb, r, &r->pub)) == 0)
        rc = r->sharded
                 ? redis_sub_open(loop, &r->ep, "subscriber", &redis_sharded_sub_cb, r, &r->ssub)
                 : redis_conn_open(loop, &r->ep, "subscriber", &redis_classic_sub_cb, r, &r->sub);
    if (rc) {
        parley_redis_detach(r);
        return rc;
    }
    *out = r;
    return 0;
}

void parley_redis_stats(const parley_redis_t *r, parley_redis_stats_t *out) {
    *out = r->stats;
}

bool parley_redis_connected(const parley_redis_t *r) {
    if (r->shards)
        return redis_shards_ready(r->shards);
    return redis_conn_ctx(r->pub) &&
           (r->sharded ? redis_sub_ready(r->ssub) : redis_conn_ctx(r->sub) != NULL);
}

/* Freed when nothing refers to it any more: connections and adapters. */
static void maybe_free(parley_redis_t *r) {
    if (r->open_conns == 0 && !r->adapters) {
        free_config(r);
        free(r);
    }
}

static void conn_closed(void *arg) {
    parley_redis_t *r = arg;
    r->open_conns--;
    maybe_free(r);
}

void parley_redis_detach(parley_redis_t *r) {
    r->detaching = true;
    rreq_t *all = r->reqs;
    r->reqs = NULL;
    while (all) {
        rreq_t *q = all;
        all = q->next;
        redis_req_end(q, -ETIMEDOUT);
    }
    redis_conn_t *conns[] = {r->pub, r->sub};
    r->pub = r->sub = NULL;
    r->open_conns++; /* held while closing, so that a synchronous close frees nothing yet */
    for (int i = 0; i < 2; i++) {
        if (conns[i]) {
            r->open_conns++;
            redis_conn_close(conns[i], conn_closed, r);
        }
    }
    if (r->ssub) {
        r->open_conns++;
        redis_sub_close(r->ssub, conn_closed, r);
        r->ssub = NULL;
    }
    if (r->shards) {
        r->open_conns++;
        redis_shards_close(r->shards, conn_closed, r);
        r->shards = NULL;
    }
    conn_closed(r);
}
