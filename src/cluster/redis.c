/* cluster/redis.c — the Redis adapter: a node of a socket.io cluster (parley/redis.h).
 *
 * Two connections, as the Node adapter has: one publishes and asks (PUBLISH, PUBSUB
 * NUMSUB), the other is subscribed. Each namespace's in-process adapter is wrapped: what
 * reaches sockets by room is done locally and published; what comes from another node
 * is applied locally with SIO_LOCAL. The bytes are the Node adapter's (redis_msg.h).
 *
 * Requests (the REQ_ types below) are answered on the common response channel, which
 * every Node node listens to whether or not it also listens to its own. A request of
 * ours counts the nodes first (PUBSUB NUMSUB on the request channel, ourselves
 * included), then waits for that many answers less one, or its timeout.
 *
 * Sharded mode (createShardedAdapter's): the same operations in socket.io-adapter's
 * cluster protocol ({uid, nsp, type, data}), over SPUBLISH and SSUBSCRIBE on
 * "<key>#<nsp>#", answers on "<key>#<nsp>#<uid>#" of the asker, nodes counted with
 * PUBSUB SHARDNUMSUB. Everything here is written in the classic form and translated at
 * the edges (to_cluster, from_cluster), so that both modes share one implementation of
 * each operation. In the dynamic subscription mode a room with members here has its own
 * channel "<key>#<nsp>#<room>#", subscribed while it has them (with connection state
 * recovery, for the maximum disconnection duration after: the sessions kept here still
 * log what the room gets). The subscribed connection is redis_sub.h's, as Debian's
 * hiredis cannot take sharded pushes.
 *
 * Reconnection: a connection that drops is made again after 100 ms, doubling to 5 s;
 * the subscribed one subscribes again to every namespace's channels. */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/proto.h"
#include "cluster/redis_conn.h"
#include "cluster/redis_msg.h"
#include "cluster/redis_shards.h"
#include "cluster/redis_sub.h"
#include "parley/redis.h"
#include "sio/internal.h"
#include "util/log.h"
#include "util/base64.h"
#include "util/rand.h"
#include "util/map.h"
#include "util/time.h"

#define UID_SIZE 7 /* six characters, as uid2(6) */

/* What socket.io's adapter numbers its requests. */
enum {
    REQ_SOCKETS = 0,
    REQ_ALL_ROOMS = 1,
    REQ_REMOTE_JOIN = 2,
    REQ_REMOTE_LEAVE = 3,
    REQ_REMOTE_DISCONNECT = 4,
    REQ_REMOTE_FETCH = 5,
    REQ_SERVER_SIDE_EMIT = 6,
    REQ_BROADCAST = 7,
    REQ_BROADCAST_CLIENT_COUNT = 8,
    REQ_BROADCAST_ACK = 9,
    /* Parley's own, which Node nodes ignore: a recovery session asked of the others, and
     * one given back. Only Parley nodes are counted for them (PARLEY_CHANNEL). */
    REQ_PARLEY_RESTORE = 1000,
    REQ_PARLEY_RETURN = 1001,
};

typedef struct radapter radapter_t;
typedef struct rreq rreq_t;

struct parley_redis {
    uv_loop_t *loop;
    sio_server_t *io;
    char *key;
    char uid[UID_SIZE];
    uint32_t requests_timeout_ms;
    redis_endpoint_t ep;
    redis_conn_t *pub, *sub; /* publishing and asking; subscribed (classic mode) */
    redis_sub_t *ssub;       /* subscribed (sharded mode) */
    redis_shards_t *shards;  /* sharded mode on a Redis Cluster: both, per master */
    int only_shard;          /* >= 0 while that master's subscriptions are made again */
    /* On a Redis Cluster, the SUNSUBSCRIBEs sent and not yet confirmed, per channel
     * (name → unsub_t): a confirmation that matches none is Redis ending a subscription
     * itself, because its slot moved. */
    map_t unsubs;
    bool sharded, dynamic;
    int open_conns; /* not yet closed (detaching) */
    radapter_t *adapters;
    rreq_t *reqs;
    size_t server_count; /* as last counted */
    parley_redis_stats_t stats;
    bool detaching;
};

struct radapter {
    sio_wrapper_t wrap; /* wrap.local: this node's in-process adapter */
    parley_redis_t *r;
    radapter_t *next;
    char *channel;        /* "<key>#<nsp>#" */
    char *req_channel;    /* "<key>-request#<nsp>#" */
    char *resp_channel;   /* "<key>-response#<nsp>#" */
    char *own_channel;    /* "<key>-response#<nsp>#<uid>#" */
    char *parley_channel; /* "<key>-parley#<nsp>#": subscribed only to count Parley nodes */
    /* Sharded dynamic mode with recovery: rooms without members here whose channel is
     * kept until a time (name → lingering_t). */
    map_t lingering;
};

typedef struct {
    uint64_t until_ms;
    char name[];
} lingering_t;

typedef struct {
    unsigned pending;
    char name[];
} unsub_t;

/* A request of ours waiting for the other nodes. */
struct rreq {
    rreq_t *next;
    parley_redis_t *r;
    radapter_t *ra;
    size_t expected, got; /* answers: expected once counted (numsub - 1) */
    json_t *collected;    /* sockets, or serverSideEmit answers */
    sio_fetch_fn fetch_done;
    sio_bcast_ack_fn emit_done;
    /* recovery */
    sio_socket_t *s; /* held by the caller until restore_done */
    sio_restore_fn restore_done;
    /* broadcast with acks */
    sio_bcast_count_fn count;
    sio_ack_fn ack;
    void *arg;
    buf_t msg; /* what to publish once counted */
    uv_timer_t timer;
    /* Held by: the list until it ends, its timer until closed, a NUMSUB until answered. */
    int refs;
    int type;
    char id[UID_SIZE];
    bool counted;
    bool lent; /* a node lent the session */
    bool last_told;
    bool ended;
    bool has_timer;
};

static void maybe_free(parley_redis_t *r);
static void ssub(radapter_t *ra, const char *verb, const char *channel, const char *room);
static void ra_purge(sio_adapter_t *a, uint64_t now_ms);

/* Six random characters, as the Node adapter's uid2(6). */
static void new_uid(char out[UID_SIZE]) {
    char id[RAND_ID_SIZE];
    if (rand_id(id))
        memset(id, 'x', sizeof id); /* ids only tell requests apart; never a secret */
    memcpy(out, id, UID_SIZE - 1);
    out[UID_SIZE - 1] = '\0';
}

/* ---- publishing ---- */

/* The connection to publish or ask on about `channel`: on a Redis Cluster, the
 * connection to the master that owns the channel's slot. */
static redisAsyncContext *pub_ctx(parley_redis_t *r, const char *channel) {
    if (r->shards)
        return redis_shards_ctx(r->shards, redis_shards_owner(r->shards, channel, strlen(channel)));
    return redis_conn_ctx(r->pub);
}

/* An error reply: on a Redis Cluster, MOVED means the slot map changed (ASK is a slot in
 * migration: the map changes once it is done, with MOVED). */
static void reply_error(parley_redis_t *r, const char *what, const redisReply *rep) {
    LOG_LIMITED(LOG_LEVEL_WARN, "redis", "%s: %s", what, rep->str);
    if (r->shards && strncmp(rep->str, "MOVED ", 6) == 0)
        redis_shards_refresh(r->shards);
}

static void published(redisAsyncContext *ac, void *reply, void *priv) {
    redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        reply_error(priv, "PUBLISH", rep);
}

static void publish(parley_redis_t *r, const char *channel, const void *msg, size_t len) {
    redisAsyncContext *ac = pub_ctx(r, channel);
    if (!ac || redisAsyncCommand(ac, published, r, r->sharded ? "SPUBLISH %s %b" : "PUBLISH %s %b",
                                 channel, msg, len) != REDIS_OK) {
        LOG_LIMITED(LOG_LEVEL_WARN, "redis",
                    "not connected: a message for the other nodes is lost");
        return;
    }
    r->stats.published++;
    r->stats.published_bytes += len;
}

/* ---- the cluster protocol (sharded mode) ---- */

/* Each classic type with its cluster types as a request and as an answer (0: none). */
static const struct {
    int classic, request, response;
} cluster_types[] = {
    {REQ_REMOTE_JOIN, RMSG_CLUSTER_SOCKETS_JOIN, 0},
    {REQ_REMOTE_LEAVE, RMSG_CLUSTER_SOCKETS_LEAVE, 0},
    {REQ_REMOTE_DISCONNECT, RMSG_CLUSTER_DISCONNECT_SOCKETS, 0},
    {REQ_REMOTE_FETCH, RMSG_CLUSTER_FETCH_SOCKETS, RMSG_CLUSTER_FETCH_SOCKETS_RESPONSE},
    {REQ_SERVER_SIDE_EMIT, RMSG_CLUSTER_SERVER_SIDE_EMIT, RMSG_CLUSTER_SERVER_SIDE_EMIT_RESPONSE},
    {REQ_BROADCAST, RMSG_CLUSTER_BROADCAST, 0},
    {REQ_BROADCAST_CLIENT_COUNT, 0, RMSG_CLUSTER_BROADCAST_CLIENT_COUNT},
    {REQ_BROADCAST_ACK, 0, RMSG_CLUSTER_BROADCAST_ACK},
    {REQ_PARLEY_RESTORE, REQ_PARLEY_RESTORE, REQ_PARLEY_RESTORE},
    {REQ_PARLEY_RETURN, REQ_PARLEY_RETURN, 0},
};

/* Moves field `from` of o to `to` (serverSideEmit's arguments are "data" in one
 * protocol and "packet" in the other). */
static void rename_field(json_t *o, const char *from, const char *to) {
    json_t *v = json_object_get(o, from);
    if (v && json_object_set(o, to, v) == 0)
        json_object_del(o, from);
}

/* A classic message of ours (taken over) in the cluster form {uid, nsp, type, data}. */
static json_t *to_cluster(radapter_t *ra, int type, bool response, json_t *classic) {
    int ctype = 0;
    for (size_t i = 0; i < sizeof cluster_types / sizeof cluster_types[0]; i++)
        if (cluster_types[i].classic == type)
            ctype = response ? cluster_types[i].response : cluster_types[i].request;
    if (!ctype || !json_is_object(classic)) {
        json_decref(classic);
        return NULL;
    }
    json_object_del(classic, "uid");
    json_object_del(classic, "type");
    if (type == REQ_SERVER_SIDE_EMIT)
        rename_field(classic, "data", "packet");
    return json_pack("{s:s,s:s,s:i,s:o}", "uid", ra->r->uid, "nsp", ra->wrap.base.nsp->name, "type",
                     ctype, "data", classic);
}

/* A cluster message (borrowed) in the classic form (new), or NULL when it is not one of
 * the operations (heartbeats: Parley counts nodes with SHARDNUMSUB). */
static json_t *from_cluster(json_t *msg, bool *response) {
    json_int_t ctype = json_integer_value(json_object_get(msg, "type"));
    json_t *data = json_object_get(msg, "data");
    json_t *uid = json_object_get(msg, "uid");
    int type = -1;
    for (size_t i = 0; i < sizeof cluster_types / sizeof cluster_types[0]; i++) {
        if (ctype && cluster_types[i].request == ctype) {
            type = cluster_types[i].classic;
            *response = false;
        } else if (ctype && cluster_types[i].response == ctype) {
            type = cluster_types[i].classic;
            *response = true;
        }
    }
    if (type < 0 || !json_is_object(data) || !json_is_string(uid))
        return NULL;
    json_t *classic = json_deep_copy(data);
    if (!classic || json_object_set(classic, "uid", uid) ||
        json_object_set_new(classic, "type", json_integer(type))) {
        json_decref(classic);
        return NULL;
    }
    if (type == REQ_SERVER_SIDE_EMIT)
        rename_field(classic, "packet", "data");
    return classic;
}

/* Where requests and broadcasts with acks go: the request channel, or in sharded mode
 * the namespace's channel (whose subscribers are also the nodes counted). */
static const char *request_channel(radapter_t *ra) {
    return ra->r->sharded ? ra->channel : ra->req_channel;
}

/* A request (a classic message, taken over) as its bytes for request_channel. */
static int request_bytes(radapter_t *ra, int type, json_t *req, buf_t *out) {
    if (ra->r->sharded)
        req = to_cluster(ra, type, false, req);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    int rc = text ? buf_append_str(out, text) : -ENOMEM;
    free(text);
    return rc;
}

/* A request that awaits no answer. */
static void send_request(radapter_t *ra, int type, json_t *req) {
    buf_t b = {0};
    if (req && request_bytes(ra, type, req, &b) == 0)
        publish(ra->r, request_channel(ra), b.data, b.len);
    else
        LOG_LIMITED(LOG_LEVEL_WARN, "redis",
                    "out of memory: a message for the other nodes is lost");
    buf_free(&b);
}

/* An answer (classic form, taken over) to node `to` for a request of type `type`: on the
 * common response channel, or in sharded mode in the cluster form on the asker's
 * channel; binary attachments make it MessagePack. */
static void respond_with(radapter_t *ra, const char *to, int type, json_t *msg,
                         const sio_bin_t *bins, size_t nbins) {
    buf_t b = {0};
    int rc;
    if (!ra->r->sharded) {
        /* The Node adapter sends acknowledgements in MessagePack, the rest in JSON. */
        rc = !msg                                 ? -ENOMEM
             : nbins || type == REQ_BROADCAST_ACK ? rmsg_pack(&b, msg, bins, nbins)
                                                  : rmsg_encode(&b, msg, NULL, 0);
        json_decref(msg);
        if (rc == 0)
            publish(ra->r, ra->resp_channel, b.data, b.len);
    } else {
        json_t *c = msg ? to_cluster(ra, type, true, msg) : NULL;
        rc = c && to ? rmsg_encode(&b, c, bins, nbins) : -ENOMEM;
        json_decref(c);
        size_t n = strlen(ra->channel) + (to ? strlen(to) : 0) + 2;
        char *ch = rc == 0 ? malloc(n) : NULL;
        if (ch) {
            snprintf(ch, n, "%s%s#", ra->channel, to);
            publish(ra->r, ch, b.data, b.len);
        }
        rc = rc ? rc : ch ? 0 : -ENOMEM;
        free(ch);
    }
    if (rc)
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "an answer to node %s is lost: %d", to ? to : "?", rc);
    buf_free(&b);
}

static void respond(radapter_t *ra, const char *to, int type, json_t *msg) {
    respond_with(ra, to, type, msg, NULL, 0);
}

/* ---- requests of ours ---- */

static void req_unref(rreq_t *q) {
    if (--q->refs > 0)
        return;
    json_decref(q->collected);
    buf_free(&q->msg);
    free(q);
}

static void req_timer_closed(uv_handle_t *h) {
    req_unref(h->data);
}

/* Ends q: its callback with err, then it is forgotten (freed once nothing holds it). */
static void req_end(rreq_t *q, int err) {
    if (q->ended)
        return;
    q->ended = true;
    for (rreq_t **p = &q->r->reqs; *p; p = &(*p)->next) {
        if (*p == q) {
            *p = q->next;
            break;
        }
    }
    if (q->fetch_done)
        q->fetch_done(err, q->collected, q->arg);
    if (q->emit_done)
        q->emit_done(err, q->collected, q->arg);
    if (q->restore_done && !q->lent)
        q->restore_done(q->s, NULL, NULL, 0, q->arg);
    q->restore_done = NULL;
    if (q->count && !q->last_told) {
        q->last_told = true;
        q->count(0, true, q->arg);
    }
    if (q->has_timer)
        uv_close((uv_handle_t *)&q->timer, req_timer_closed);
    req_unref(q);
}

static void req_timeout(uv_timer_t *t) {
    rreq_t *q = t->data;
    if (q->count && q->last_told) {
        req_end(q, 0); /* a broadcast's answers: no longer awaited */
        return;
    }
    LOG_LIMITED(LOG_LEVEL_INFO, "redis", "request %s: %zu of %zu nodes answered in time", q->id,
                q->got, q->expected);
    req_end(q, -ETIMEDOUT);
}

static rreq_t *req_new(radapter_t *ra, int type, void *arg) {
    rreq_t *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->r = ra->r;
    q->ra = ra;
    q->type = type;
    q->arg = arg;
    q->refs = 1;
    new_uid(q->id);
    q->next = ra->r->reqs;
    ra->r->reqs = q;
    return q;
}

static int req_arm(rreq_t *q, uint32_t ms) {
    if (uv_timer_init(q->r->loop, &q->timer))
        return -ENOMEM;
    q->timer.data = q;
    q->has_timer = true;
    q->refs++;
    return uv_timer_start(&q->timer, req_timeout, ms, 0) ? -ENOMEM : 0;
}

static rreq_t *req_find(parley_redis_t *r, const char *id) {
    for (rreq_t *q = r->reqs; q && id; q = q->next)
        if (strcmp(q->id, id) == 0)
            return q;
    return NULL;
}

/* Counted: the request goes out, or ends at once when no other node is there. */
static void counted(redisAsyncContext *ac, void *reply, void *priv) {
    rreq_t *q = priv;
    redisReply *rep = reply;
    parley_redis_t *r = q->r;
    if (q->ended) {
        req_unref(q);
        return;
    }
    size_t numsub = 0;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        reply_error(r, "PUBSUB", rep);
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[1]->type == REDIS_REPLY_INTEGER && rep->element[1]->integer > 0)
        numsub = (size_t)rep->element[1]->integer;
    if (numsub)
        r->server_count = numsub;
    q->counted = true;
    q->expected = numsub > 1 ? numsub - 1 : 0;
    if (q->expected == 0)
        req_end(q, rep ? 0 : -EPIPE);
    else
        publish(r, request_channel(q->ra), q->msg.data, q->msg.len);
    buf_free(&q->msg);
    req_unref(q);
}

/* Sends q once the nodes are counted (its message is in q->msg). */
static int req_send_counting(rreq_t *q, uint32_t timeout_ms, const char *counted_on) {
    parley_redis_t *r = q->r;
    int rc = req_arm(q, timeout_ms ? timeout_ms : r->requests_timeout_ms);
    redisAsyncContext *ac = pub_ctx(r, counted_on);
    if (rc == 0 &&
        (!ac || redisAsyncCommand(ac, counted, q,
                                  r->sharded ? "PUBSUB SHARDNUMSUB %s" : "PUBSUB NUMSUB %s",
                                  counted_on) != REDIS_OK))
        rc = -EPIPE;
    if (rc == 0)
        q->refs++;
    return rc;
}

/* Sends q once the nodes subscribed to the request channel are counted. */
static int req_send(rreq_t *q, uint32_t timeout_ms) {
    return req_send_counting(q, timeout_ms, request_channel(q->ra));
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
                publish(ra->r, ch, m.data, m.len);
                free(ch);
            }
        } else {
            publish(ra->r, ra->channel, m.data, m.len);
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
    rreq_t *q = req_new(ra, REQ_BROADCAST, arg);
    if (q) {
        q->count = count;
        q->ack = ack;
        rc = ra->r->sharded ? rmsg_pack_cluster_bcast(&q->msg, ra->r->uid, a->nsp->name, b, q->id)
                            : rmsg_pack_bcast(&q->msg, ra->r->uid, a->nsp->name, b, q->id);
        /* Counting waits for the requests timeout at most; the answers, for the emitter's. */
        if (rc == 0)
            rc = req_send(q, ra->r->requests_timeout_ms);
        if (rc)
            req_end(q, rc);
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
    send_request(ra, type, req);
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

static void keep_local(int err, json_t *sockets, void *arg) {
    *(json_t **)arg = json_incref(sockets);
}

static int ra_fetch_all(sio_adapter_t *a, const sio_target_t *which, uint32_t timeout_ms,
                        sio_fetch_fn done, void *arg) {
    radapter_t *ra = (radapter_t *)a;
    if (which && (which->flags & SIO_LOCAL))
        return ra->wrap.local->ops->fetch_all(ra->wrap.local, which, timeout_ms, done, arg);
    json_t *mine = NULL;
    int rc = ra->wrap.local->ops->fetch_all(ra->wrap.local, which, timeout_ms, keep_local, &mine);
    rreq_t *q = rc == 0 ? req_new(ra, REQ_REMOTE_FETCH, arg) : NULL;
    if (!q) {
        json_decref(mine);
        return rc ? rc : -ENOMEM;
    }
    q->collected = mine;
    q->fetch_done = done;
    json_t *req = json_pack("{s:s,s:s,s:i,s:o}", "uid", ra->r->uid, "requestId", q->id, "type",
                            REQ_REMOTE_FETCH, "opts", opts_json(which));
    rc = req ? request_bytes(ra, REQ_REMOTE_FETCH, req, &q->msg) : -ENOMEM;
    if (rc == 0)
        rc = req_send(q, timeout_ms);
    if (rc) {
        /* Not asked: this node's sockets are the answer there is. */
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "fetchSockets not asked of the other nodes: %d", rc);
        req_end(q, rc);
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
        send_request(ra, REQ_SERVER_SIDE_EMIT, req);
        return 0;
    }
    rreq_t *q = req_new(ra, REQ_SERVER_SIDE_EMIT, arg);
    if (!q || !(q->collected = json_array())) {
        json_decref(req);
        if (q)
            req_end(q, 0);
        return -ENOMEM;
    }
    q->emit_done = done;
    json_object_set_new(req, "requestId", json_string(q->id));
    int rc = request_bytes(ra, REQ_SERVER_SIDE_EMIT, req, &q->msg);
    if (rc == 0)
        rc = req_send(q, timeout_ms);
    if (rc)
        req_end(q, rc);
    return 0;
}

/* Connection state recovery across nodes: a session that is not here is asked of every
 * Parley node (Node nodes keep none to lend); the one that kept it lends it with the
 * packets of its log the client missed, and gets it back if this node's application
 * refuses it or the client left meanwhile. */
static void ra_restore(sio_adapter_t *a, sio_socket_t *s, const char *pid, const char *offset,
                       sio_restore_fn done, void *arg) {
    radapter_t *ra = (radapter_t *)a;
    rreq_t *q = NULL;
    if (!map_get(&a->nsp->sessions, pid, strlen(pid)) && pub_ctx(ra->r, ra->parley_channel) &&
        (q = req_new(ra, REQ_PARLEY_RESTORE, arg))) {
        q->s = s;
        q->restore_done = done;
        json_t *req = json_pack("{s:s,s:s,s:i,s:s,s:s?}", "uid", ra->r->uid, "requestId", q->id,
                                "type", REQ_PARLEY_RESTORE, "pid", pid, "offset", offset);
        int rc = req ? request_bytes(ra, REQ_PARLEY_RESTORE, req, &q->msg) : -ENOMEM;
        if (rc == 0)
            rc = req_send_counting(q, 0, ra->parley_channel);
        if (rc)
            req_end(q, rc); /* its restore_done: no session */
        return;
    }
    sio_wrapped_restore(a, s, pid, offset, done, arg);
}

static size_t ra_server_count(sio_adapter_t *a) {
    return ((radapter_t *)a)->r->server_count;
}

static void unsubscribed(redisAsyncContext *ac, void *reply, void *priv) {}

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
            req_end(q, -ETIMEDOUT);
    }
    redisAsyncContext *sub = redis_conn_ctx(r->sub);
    if (sub && !r->detaching) {
        redisAsyncCommand(sub, unsubscribed, NULL, "PUNSUBSCRIBE %s*", ra->channel);
        redisAsyncCommand(sub, unsubscribed, NULL, "UNSUBSCRIBE %s %s %s %s", ra->req_channel,
                          ra->resp_channel, ra->own_channel, ra->parley_channel);
    }
    sio_nsp_t *nsp = a->nsp;
    if (r->sharded && !r->detaching) {
        const char *own[] = {ra->channel, ra->own_channel, ra->parley_channel};
        for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
            ssub(ra, "SUNSUBSCRIBE", own[i], NULL);
        map_entry_t *e;
        for (size_t pos = 0; r->dynamic && map_next(&nsp->rooms, &pos, &e);)
            ssub(ra, "SUNSUBSCRIBE", ra->channel, ((sio_room_t *)e->value)->name);
        for (size_t pos = 0; map_next(&ra->lingering, &pos, &e);)
            ssub(ra, "SUNSUBSCRIBE", ra->channel, e->key);
    }
    sio_nsp_on_room(nsp, NULL, NULL);
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
    .restore = ra_restore,
    .purge = ra_purge,
    .server_count = ra_server_count,
    .free = ra_free,
};

/* ---- what other nodes send ---- */

static void on_channel_message(redisAsyncContext *ac, void *reply, void *priv);
static void sharded_subscribe(radapter_t *ra);

static void subscribe(parley_redis_t *r, radapter_t *ra) {
    if (r->sharded) {
        sharded_subscribe(ra);
        return;
    }
    redisAsyncContext *sub = redis_conn_ctx(r->sub);
    if (!sub)
        return; /* done on (re)connection */
    if (redisAsyncCommand(sub, on_channel_message, r, "PSUBSCRIBE %s*", ra->channel) != REDIS_OK ||
        redisAsyncCommand(sub, on_channel_message, r, "SUBSCRIBE %s %s %s %s", ra->req_channel,
                          ra->resp_channel, ra->own_channel, ra->parley_channel) != REDIS_OK)
        LOG_WARN("redis", "cannot subscribe for namespace %s", ra->wrap.base.nsp->name);
}

/* Whether a broadcast on channel, "<key>#<nsp>#" or "<key>#<nsp>#<room>#", is for this
 * node: one room's is not unless some socket here is in it (with recovery, the log
 * keeps it for the sessions of sockets that were). */
static bool wanted(radapter_t *ra, const char *channel) {
    size_t prefix = strlen(ra->channel), clen = strlen(channel);
    if (clen <= prefix + 1 || ra->wrap.base.nsp->io->cfg.recovery)
        return true;
    char *room = strndup(channel + prefix, clen - prefix - 1);
    size_t here = room ? ra->wrap.local->ops->room_size(ra->wrap.local, room) : 0;
    free(room);
    return here > 0;
}

/* A broadcast from another node, applied here (m is freed). */
static void on_broadcast(radapter_t *ra, rmsg_bcast_t *m) {
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

static void add_id(sio_socket_t *s, void *arg) {
    json_array_append_new(arg, json_string(s->id));
}

/* The sockets' ids in `rooms` (all when empty): request SOCKETS. */
static json_t *local_ids(radapter_t *ra, json_t *rooms_json) {
    const char **rooms;
    size_t n;
    json_t *ids = json_array();
    if (!ids || rmsg_rooms(rooms_json, &rooms, &n)) {
        json_decref(ids);
        return NULL;
    }
    sio_target_t t = {.rooms = rooms, .nrooms = n};
    ra->wrap.local->ops->fetch_sockets(ra->wrap.local, &t, add_id, ids);
    free(rooms);
    return ids;
}

/* Every room with a member here, each socket's own included (socket.io's rooms map). */
static json_t *local_rooms(radapter_t *ra) {
    sio_nsp_t *nsp = ra->wrap.base.nsp;
    json_t *all = json_array();
    map_entry_t *e;
    for (size_t pos = 0; all && map_next(&nsp->rooms, &pos, &e);)
        json_array_append_new(all, json_string(((sio_room_t *)e->value)->name));
    for (uint32_t i = 0; all && i < nsp->nsockets; i++)
        if (nsp->sockets[i]->connected)
            json_array_append_new(all, json_string(nsp->sockets[i]->id));
    return all;
}

static int target_of(json_t *opts, sio_target_t *t) {
    memset(t, 0, sizeof *t);
    const char **rooms, **except;
    size_t nrooms, nexcept;
    if (rmsg_rooms(json_object_get(opts, "rooms"), &rooms, &nrooms))
        return -EINVAL;
    if (rmsg_rooms(json_object_get(opts, "except"), &except, &nexcept)) {
        free(rooms);
        return -EINVAL;
    }
    *t = (sio_target_t){rooms, nrooms, except, nexcept, SIO_LOCAL};
    return 0;
}

static void target_free(sio_target_t *t) {
    free((void *)t->rooms);
    free((void *)t->except);
}

/* socketsJoin / socketsLeave / disconnectSockets from another node (with opts), or the
 * same for one socket of this node (with sid), answered then. */
static void on_remote_op(radapter_t *ra, int type, json_t *req) {
    json_t *opts = json_object_get(req, "opts");
    bool close = json_is_true(json_object_get(req, "close"));
    const char **rooms = NULL;
    size_t nrooms = 0;
    if (opts && rmsg_rooms(json_object_get(req, "rooms"), &rooms, &nrooms))
        return;
    if (opts) {
        sio_target_t t;
        if (target_of(opts, &t) == 0) {
            for (size_t i = 0; i < nrooms; i++) {
                if (type == REQ_REMOTE_JOIN)
                    ra->wrap.local->ops->sockets_join(ra->wrap.local, &t, rooms[i]);
                else
                    ra->wrap.local->ops->sockets_leave(ra->wrap.local, &t, rooms[i]);
            }
            if (type == REQ_REMOTE_DISCONNECT)
                ra->wrap.local->ops->disconnect_sockets(ra->wrap.local, &t, close);
            target_free(&t);
        }
        free(rooms);
        return;
    }
    free(rooms);
    const char *sid = json_string_value(json_object_get(req, "sid"));
    const char *room = json_string_value(json_object_get(req, "room"));
    sio_socket_t *s = sid ? sio_nsp_find_socket(ra->wrap.base.nsp, sid) : NULL;
    if (!s)
        return;
    if (type == REQ_REMOTE_JOIN && room)
        sio_socket_join(s, room);
    else if (type == REQ_REMOTE_LEAVE && room)
        sio_socket_leave(s, room);
    else if (type == REQ_REMOTE_DISCONNECT)
        sio_socket_disconnect(s, close);
    respond(ra, json_string_value(json_object_get(req, "uid")), type,
            json_pack("{s:O?}", "requestId", json_object_get(req, "requestId")));
}

/* What a broadcast with acks from another node owes it: the count, then each answer. */
typedef struct {
    radapter_t *ra;
    char id[64];
    char to[64]; /* the asking node's uid */
    size_t expected, received;
    bool counted;
} remote_acks_t;

static void remote_count(size_t n, bool last, void *arg) {
    remote_acks_t *ra_ = arg;
    ra_->expected += n;
    if (!last)
        return;
    ra_->counted = true;
    respond(ra_->ra, ra_->to, REQ_BROADCAST_CLIENT_COUNT,
            json_pack("{s:i,s:s,s:I}", "type", REQ_BROADCAST_CLIENT_COUNT, "requestId", ra_->id,
                      "clientCount", (json_int_t)ra_->expected));
    if (ra_->received == ra_->expected)
        free(ra_);
}

static void remote_ack(sio_socket_t *s, int err, const sio_payload_t *p, void *arg) {
    remote_acks_t *st = arg;
    st->received++;
    /* socket.io passes on an answer's first argument; a recipient that left says nothing. */
    if (err == 0 && p) {
        json_t *first = json_array_get(p->args, 0);
        respond_with(st->ra, st->to, REQ_BROADCAST_ACK,
                     json_pack("{s:i,s:s,s:O?}", "type", REQ_BROADCAST_ACK, "requestId", st->id,
                               "packet", first),
                     p->bins, p->nbins);
    }
    if (st->counted && st->received == st->expected)
        free(st);
}

/* A broadcast with acks from another node (m: read from the request, freed here). */
static void on_broadcast_request(radapter_t *ra, const rmsg_bcast_t *m_) {
    rmsg_bcast_t m = *m_;
    remote_acks_t *st = NULL;
    if (strcmp(m.uid, ra->r->uid) != 0 && strcmp(m.nsp, ra->wrap.base.nsp->name) == 0 &&
        strlen(m.request_id) < sizeof st->id && strlen(m.uid) < sizeof st->to &&
        (st = calloc(1, sizeof *st))) {
        st->ra = ra;
        snprintf(st->id, sizeof st->id, "%s", m.request_id);
        snprintf(st->to, sizeof st->to, "%s", m.uid);
        m.b.to.flags |= SIO_LOCAL;
        sio_nsp_t *nsp = ra->wrap.base.nsp;
        int rc = ra->wrap.local->ops->broadcast_with_ack(ra->wrap.local, &m.b, nsp->next_ack_id++,
                                                         remote_count, remote_ack, st);
        if (rc) {
            free(st);
            LOG_LIMITED(LOG_LEVEL_WARN, "redis", "broadcast with acks from another node: %d", rc);
        }
    }
    rmsg_bcast_free(&m);
}

/* A session's wire form (cluster/proto.h) as base64 text, or NULL. */
static char *session_text(const sio_session_t *ss, sio_logged_t *const *missed, size_t n) {
    buf_t b = {0};
    char *text = NULL;
    if (proto_session_encode(&b, ss, time_mono_ms(), missed, n) == 0 &&
        (text = malloc(BASE64_ENCODED_LEN(b.len) + 1)))
        text[base64_encode(b.data, b.len, text)] = '\0';
    buf_free(&b);
    return text;
}

static int session_read(const char *text, sio_session_t **ss, sio_logged_t ***missed, size_t *n) {
    size_t len = strlen(text);
    uint8_t *raw = malloc(BASE64_DECODED_MAX(len) + 1);
    long got = raw ? base64_decode(text, len, raw) : -1;
    int rc = -EINVAL;
    if (got >= 0) {
        wire_reader_t r = {raw, raw + got, 0, false};
        rc = proto_session_decode(&r, time_mono_ms(), ss, missed, n);
    }
    free(raw);
    return rc;
}

/* Another node asks for a session: lent if it is here (taken out of this node). */
static void lend_session(radapter_t *ra, json_t *req) {
    const char *pid = json_string_value(json_object_get(req, "pid"));
    const char *offset = json_string_value(json_object_get(req, "offset"));
    sio_logged_t **missed = NULL;
    size_t n = 0;
    sio_session_t *ss = pid ? sio_adapter_take(ra->wrap.base.nsp, pid, offset, &missed, &n) : NULL;
    char *text = ss ? session_text(ss, missed, n) : NULL;
    free(missed);
    if (ss && !text) {
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "a recovery session could not be lent");
        sio_adapter_give_back(ra->wrap.base.nsp, ss);
        ss = NULL;
    } else if (ss) {
        sio_session_free(ss);
    }
    respond(ra, json_string_value(json_object_get(req, "uid")), REQ_PARLEY_RESTORE,
            json_pack("{s:i,s:O?,s:s,s:s?}", "type", REQ_PARLEY_RESTORE, "requestId",
                      json_object_get(req, "requestId"), "uid", ra->r->uid, "session", text));
    free(text);
}

static void take_back_session(radapter_t *ra, json_t *req) {
    const char *to = json_string_value(json_object_get(req, "to"));
    const char *text = json_string_value(json_object_get(req, "session"));
    sio_session_t *ss = NULL;
    sio_logged_t **missed = NULL;
    size_t n = 0;
    if (!to || strcmp(to, ra->r->uid) != 0 || !text)
        return;
    if (session_read(text, &ss, &missed, &n) == 0 && ss)
        sio_adapter_give_back(ra->wrap.base.nsp, ss);
    proto_missed_free(missed, n);
}

/* A lent session goes back to its node (the application refused it, or its client left). */
static void give_back(radapter_t *ra, const char *lender, sio_session_t *ss) {
    char *text = session_text(ss, NULL, 0);
    if (text)
        send_request(ra, REQ_PARLEY_RETURN,
                     json_pack("{s:s,s:i,s:s,s:s}", "uid", ra->r->uid, "type", REQ_PARLEY_RETURN,
                               "to", lender, "session", text));
    else
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "a recovery session could not be given back");
    free(text);
    sio_session_free(ss);
}

/* An answer to a recovery request of ours. */
static void on_lent(rreq_t *q, json_t *resp) {
    const char *text = json_string_value(json_object_get(resp, "session"));
    const char *lender = json_string_value(json_object_get(resp, "uid"));
    sio_session_t *ss = NULL;
    sio_logged_t **missed = NULL;
    size_t n = 0;
    if (text && lender && session_read(text, &ss, &missed, &n))
        LOG_LIMITED(LOG_LEVEL_ERROR, "redis", "recovery session from node %s not decoded", lender);
    if (ss && (q->lent || !q->s->connecting || !sio_recovery_allowed(q->s, ss))) {
        give_back(q->ra, lender, ss);
        ss = NULL;
    }
    if (ss) {
        q->lent = true;
        LOG_DEBUG("redis", "session of node %s recovered here (%zu missed packets)", lender, n);
        q->restore_done(q->s, ss, missed, n, q->arg);
    }
    proto_missed_free(missed, n);
}

/* A request from another node (classic form; req and bins borrowed). */
static void on_request(radapter_t *ra, json_t *req, rmsg_bins_t *bins) {
    json_t *type_j = json_object_get(req, "type");
    const char *uid = json_string_value(json_object_get(req, "uid"));
    if (!json_is_integer(type_j)) {
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "malformed request ignored");
        return;
    }
    int type = (int)json_integer_value(type_j);
    json_t *rid = json_object_get(req, "requestId");
    bool mine = uid && strcmp(uid, ra->r->uid) == 0;
    sio_nsp_t *nsp = ra->wrap.base.nsp;
    if (mine) {
        /* Our own requests come back to us too. */
    } else if (type == REQ_SOCKETS) {
        respond(ra, uid, type,
                json_pack("{s:O?,s:o}", "requestId", rid, "sockets",
                          local_ids(ra, json_object_get(req, "rooms"))));
    } else if (type == REQ_ALL_ROOMS) {
        respond(ra, uid, type, json_pack("{s:O?,s:o}", "requestId", rid, "rooms", local_rooms(ra)));
    } else if (type == REQ_REMOTE_JOIN || type == REQ_REMOTE_LEAVE ||
               type == REQ_REMOTE_DISCONNECT) {
        on_remote_op(ra, type, req);
    } else if (type == REQ_REMOTE_FETCH) {
        sio_target_t t;
        json_t *sockets = NULL;
        if (target_of(json_object_get(req, "opts"), &t) == 0) {
            ra->wrap.local->ops->fetch_all(ra->wrap.local, &t, 0, keep_local, &sockets);
            target_free(&t);
        }
        respond(
            ra, uid, type,
            json_pack("{s:O?,s:o}", "requestId", rid, "sockets", sockets ? sockets : json_array()));
    } else if (type == REQ_SERVER_SIDE_EMIT) {
        json_t *data = json_object_get(req, "data");
        const char *event = json_string_value(json_array_get(data, 0));
        json_t *args = json_array();
        json_t *answer = NULL;
        if (event && args && json_array_extend(args, data) == 0 && json_array_remove(args, 0) == 0)
            answer = sio_nsp_server_event(nsp, event, args);
        json_decref(args);
        /* Asked for an answer: one, even without a handler (null), or the asker waits. */
        if (rid)
            respond(ra, uid, type,
                    json_pack("{s:i,s:O,s:o}", "type", REQ_SERVER_SIDE_EMIT, "requestId", rid,
                              "data", answer ? answer : json_null()));
        else
            json_decref(answer);
    } else if (type == REQ_BROADCAST) {
        rmsg_bcast_t m;
        if (rmsg_bcast_from(json_incref(req), bins, &m) == 0)
            on_broadcast_request(ra, &m);
        else
            LOG_LIMITED(LOG_LEVEL_WARN, "redis", "malformed broadcast request ignored");
    } else if (type == REQ_PARLEY_RESTORE) {
        lend_session(ra, req);
    } else if (type == REQ_PARLEY_RETURN) {
        take_back_session(ra, req);
    }
}

/* An answer to a request of ours (or of another node's: not found, ignored); classic
 * form, resp and bins borrowed. */
static void on_response(radapter_t *ra, json_t *resp, const rmsg_bins_t *bins) {
    rreq_t *q = req_find(ra->r, json_string_value(json_object_get(resp, "requestId")));
    if (!q || q->ra != ra)
        return;
    int type = (int)json_integer_value(json_object_get(resp, "type"));
    if (q->type == REQ_BROADCAST && q->count) {
        if (type == REQ_BROADCAST_CLIENT_COUNT) {
            json_int_t n = json_integer_value(json_object_get(resp, "clientCount"));
            q->count(n > 0 ? (size_t)n : 0, false, q->arg);
            if (++q->got == q->expected && !q->last_told) {
                q->last_told = true;
                q->count(0, true, q->arg);
            }
        } else if (type == REQ_BROADCAST_ACK) {
            /* Parley's answers are argument lists: socket.io's one value becomes [value]. */
            json_t *args = json_pack("[O?]", json_object_get(resp, "packet"));
            sio_payload_t p = {args, bins->v, bins->n};
            q->ack(NULL, 0, &p, q->arg);
            json_decref(args);
        }
    } else if (q->type == REQ_REMOTE_FETCH) {
        json_t *sockets = json_object_get(resp, "sockets");
        if (json_is_array(sockets))
            json_array_extend(q->collected, sockets);
        if (++q->got == q->expected)
            req_end(q, 0);
    } else if (q->type == REQ_PARLEY_RESTORE && type == REQ_PARLEY_RESTORE) {
        on_lent(q, resp);
        if (++q->got == q->expected || q->lent)
            req_end(q, 0);
    } else if (q->type == REQ_SERVER_SIDE_EMIT) {
        json_array_append(q->collected, json_object_get(resp, "data"));
        if (++q->got == q->expected)
            req_end(q, 0);
    }
}

static radapter_t *adapter_for(parley_redis_t *r, const char *channel, int *kind) {
    for (radapter_t *ra = r->adapters; ra; ra = ra->next) {
        if (strncmp(channel, ra->channel, strlen(ra->channel)) == 0) {
            *kind = 0;
            return ra;
        }
        if (strcmp(channel, ra->req_channel) == 0) {
            *kind = 1;
            return ra;
        }
        if (strcmp(channel, ra->resp_channel) == 0 || strcmp(channel, ra->own_channel) == 0) {
            *kind = 2;
            return ra;
        }
    }
    return NULL;
}

static void on_channel_message(redisAsyncContext *ac, void *reply, void *priv) {
    parley_redis_t *r = priv;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 || r->detaching)
        return;
    const char *what = rep->element[0]->str;
    redisReply *ch, *body;
    if (what && strcmp(what, "pmessage") == 0 && rep->elements == 4) {
        ch = rep->element[2];
        body = rep->element[3];
    } else if (what && strcmp(what, "message") == 0) {
        ch = rep->element[1];
        body = rep->element[2];
    } else {
        return; /* (p)subscribe confirmations */
    }
    if (ch->type != REDIS_REPLY_STRING || body->type != REDIS_REPLY_STRING)
        return;
    r->stats.received++;
    r->stats.received_bytes += body->len;
    int kind;
    radapter_t *ra = adapter_for(r, ch->str, &kind);
    if (!ra || (kind == 0 && !wanted(ra, ch->str))) {
        r->stats.unused++;
        return;
    }
    if (kind == 0) {
        rmsg_bcast_t m;
        if (rmsg_bcast_decode(body->str, body->len, &m) == 0)
            on_broadcast(ra, &m);
        else
            LOG_LIMITED(LOG_LEVEL_WARN, "redis", "malformed broadcast on %s ignored", ch->str);
        return;
    }
    rmsg_bins_t bins;
    json_t *msg = rmsg_decode(body->str, body->len, &bins);
    if (kind == 1)
        on_request(ra, msg, &bins);
    else
        on_response(ra, msg, &bins);
    json_decref(msg);
    rmsg_bins_free(&bins);
}

/* ---- sharded mode: subscriptions and what comes on them ---- */

/* A SUNSUBSCRIBE on its way (Redis Cluster). Out of memory, it is not counted: its
 * confirmation then reads as a moved slot, which costs one read of the map. */
static void unsub_sent(parley_redis_t *r, const char *name, size_t len) {
    unsub_t *u = map_get(&r->unsubs, name, len);
    if (!u && (u = calloc(1, sizeof *u + len + 1))) {
        memcpy(u->name, name, len);
        if (map_put(&r->unsubs, u->name, len, u)) {
            free(u);
            u = NULL;
        }
    }
    if (u)
        u->pending++;
}

/* A sunsubscribe confirmation: whether it answers one of ours. */
static bool unsub_confirmed(parley_redis_t *r, const char *name) {
    size_t len = strlen(name);
    unsub_t *u = map_get(&r->unsubs, name, len);
    if (!u)
        return false;
    if (--u->pending == 0)
        free(map_del(&r->unsubs, name, len));
    return true;
}

/* A master's subscriber (again): what it had on its way is gone with the connection. */
static void unsubs_forget(parley_redis_t *r, int shard) {
    unsub_t **gone = malloc((r->unsubs.count + 1) * sizeof *gone);
    size_t n = 0;
    map_entry_t *e;
    for (size_t pos = 0; gone && map_next(&r->unsubs, &pos, &e);)
        if (redis_shards_owner(r->shards, e->key, e->klen) == shard)
            gone[n++] = e->value;
    for (size_t i = 0; i < n; i++)
        free(map_del(&r->unsubs, gone[i]->name, strlen(gone[i]->name)));
    free(gone);
}

/* SSUBSCRIBE or SUNSUBSCRIBE of channel, or of "<channel><room>#" when room is given. */
static void ssub(radapter_t *ra, const char *verb, const char *channel, const char *room) {
    parley_redis_t *r = ra->r;
    if (!r->shards && !redis_sub_ready(r->ssub))
        return; /* all subscribed again on (re)connection */
    char *name = NULL;
    if (room) {
        size_t n = strlen(channel) + strlen(room) + 2;
        if ((name = malloc(n)))
            snprintf(name, n, "%s%s#", channel, room);
    }
    const char *argv[] = {verb, room ? name : channel};
    size_t lens[] = {strlen(verb), argv[1] ? strlen(argv[1]) : 0};
    int rc = -ENOMEM;
    if (argv[1] && r->shards) {
        /* On a Redis Cluster, on the master that owns the channel (when its
         * subscriber is down, it subscribes everything again once back). */
        int owner = redis_shards_owner(r->shards, argv[1], lens[1]);
        rc = r->only_shard >= 0 && owner != r->only_shard
                 ? 0
                 : redis_shards_sub_send(r->shards, owner, 2, argv, lens);
        rc = rc == -EPIPE ? 0 : rc;
    } else if (argv[1]) {
        rc = redis_sub_send(r->ssub, 2, argv, lens);
    }
    if (rc == 0 && argv[1] && r->shards && strcmp(verb, "SUNSUBSCRIBE") == 0)
        unsub_sent(r, argv[1], lens[1]);
    if (rc)
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "%s %s%s: %d", verb, channel, room ? room : "", rc);
    free(name);
}

/* The namespace's channels, and in the dynamic mode each room's that has members here
 * or lingers. */
static void sharded_subscribe(radapter_t *ra) {
    const char *own[] = {ra->channel, ra->own_channel, ra->parley_channel};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        ssub(ra, "SSUBSCRIBE", own[i], NULL);
    if (!ra->r->dynamic)
        return;
    map_entry_t *e;
    sio_nsp_t *nsp = ra->wrap.base.nsp;
    for (size_t pos = 0; map_next(&nsp->rooms, &pos, &e);)
        ssub(ra, "SSUBSCRIBE", ra->channel, ((sio_room_t *)e->value)->name);
    for (size_t pos = 0; map_next(&ra->lingering, &pos, &e);)
        ssub(ra, "SSUBSCRIBE", ra->channel, e->key);
}

/* A room came or went here (dynamic mode): its channel follows. */
static void on_room(sio_nsp_t *nsp, const char *room, bool exists, void *arg) {
    radapter_t *ra = arg;
    size_t len = strlen(room);
    lingering_t *l = map_get(&ra->lingering, room, len);
    if (exists) {
        if (l) /* still subscribed */
            free(map_del(&ra->lingering, room, len));
        else
            ssub(ra, "SSUBSCRIBE", ra->channel, room);
        return;
    }
    if (!nsp->io->cfg.recovery) {
        ssub(ra, "SUNSUBSCRIBE", ra->channel, room);
        return;
    }
    if (!l && (l = malloc(sizeof *l + len + 1))) {
        memcpy(l->name, room, len + 1);
        if (map_put(&ra->lingering, l->name, len, l)) {
            free(l);
            l = NULL;
        }
    }
    if (l)
        l->until_ms = time_mono_ms() + nsp->io->cfg.recovery_max_disconnection;
    else
        ssub(ra, "SUNSUBSCRIBE", ra->channel, room);
}

/* Lingering rooms whose time is up are unsubscribed. */
static void ra_purge(sio_adapter_t *a, uint64_t now_ms) {
    radapter_t *ra = (radapter_t *)a;
    sio_wrapped_purge(a, now_ms);
    size_t n = 0;
    lingering_t **due = malloc((ra->lingering.count + 1) * sizeof *due);
    map_entry_t *e;
    for (size_t pos = 0; due && map_next(&ra->lingering, &pos, &e);)
        if (((lingering_t *)e->value)->until_ms <= now_ms)
            due[n++] = e->value;
    for (size_t i = 0; i < n; i++) {
        map_del(&ra->lingering, due[i]->name, strlen(due[i]->name));
        ssub(ra, "SUNSUBSCRIBE", ra->channel, due[i]->name);
        free(due[i]);
    }
    free(due);
}

/* A message on a sharded channel: a broadcast, a request, or an answer to us. */
static void on_smessage(parley_redis_t *r, const char *channel, const char *body, size_t len) {
    radapter_t *ra = r->adapters;
    r->stats.received++;
    r->stats.received_bytes += len;
    while (ra && strncmp(channel, ra->channel, strlen(ra->channel)) != 0)
        ra = ra->next;
    bool to_us = ra && strcmp(channel, ra->own_channel) == 0;
    if (!ra || (!to_us && !wanted(ra, channel))) {
        r->stats.unused++;
        return;
    }
    rmsg_bins_t bins;
    json_t *msg = rmsg_decode(body, len, &bins);
    json_t *data = json_object_get(msg, "data");
    if (!json_is_object(data) || !json_is_string(json_object_get(msg, "uid"))) {
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "malformed message on %s ignored", channel);
        json_decref(msg);
        rmsg_bins_free(&bins);
        return;
    }
    if (!to_us && json_integer_value(json_object_get(msg, "type")) == RMSG_CLUSTER_BROADCAST &&
        !json_object_get(data, "requestId")) {
        rmsg_bcast_t m;
        if (rmsg_bcast_from(msg, &bins, &m) == 0)
            on_broadcast(ra, &m);
        else
            LOG_LIMITED(LOG_LEVEL_WARN, "redis", "malformed broadcast on %s ignored", channel);
        return;
    }
    bool response = false;
    json_t *classic = from_cluster(msg, &response);
    const char *nsp = json_string_value(json_object_get(msg, "nsp"));
    if (classic && nsp && strcmp(nsp, ra->wrap.base.nsp->name) == 0) {
        if (to_us || response)
            on_response(ra, classic, &bins);
        else
            on_request(ra, classic, &bins);
    }
    json_decref(classic);
    json_decref(msg);
    rmsg_bins_free(&bins);
}

/* Whether this node wants to hear `channel`: a namespace's own channels, or a room's
 * that has members here or lingers. */
static bool channel_wanted(parley_redis_t *r, const char *channel) {
    for (radapter_t *ra = r->adapters; ra; ra = ra->next) {
        size_t prefix = strlen(ra->channel), len = strlen(channel);
        if (strcmp(channel, ra->channel) == 0 || strcmp(channel, ra->own_channel) == 0 ||
            strcmp(channel, ra->parley_channel) == 0)
            return true;
        if (len > prefix + 1 && strncmp(channel, ra->channel, prefix) == 0 && r->dynamic) {
            const char *room = channel + prefix;
            size_t rlen = len - prefix - 1;
            char *name = strndup(room, rlen);
            bool here = name && (map_get(&ra->wrap.base.nsp->rooms, name, rlen) ||
                                 map_get(&ra->lingering, name, rlen));
            free(name);
            if (here)
                return true;
        }
    }
    return false;
}

static void on_push(redis_sub_t *sub, const redisReply *rep, void *arg) {
    parley_redis_t *r = arg;
    if (r->detaching)
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "subscriber: %s", rep->str);
        if (r->shards && strncmp(rep->str, "MOVED ", 6) == 0)
            redis_shards_refresh(r->shards);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *what = rep->element[0]->str, *channel = rep->element[1]->str;
    if (strcmp(what, "smessage") == 0 && rep->element[2]->type == REDIS_REPLY_STRING) {
        on_smessage(r, channel, rep->element[2]->str, rep->element[2]->len);
    } else if (strcmp(what, "sunsubscribe") == 0 && r->shards && !unsub_confirmed(r, channel) &&
               channel_wanted(r, channel)) {
        /* Not asked for: Redis took the subscription away because its slot moved to
         * another master. */
        LOG_INFO("redis", "%s moved to another master", channel);
        redis_shards_refresh(r->shards);
    }
}

static void ssub_ready(redis_sub_t *sub, void *arg) {
    parley_redis_t *r = arg;
    for (radapter_t *ra = r->adapters; ra; ra = ra->next)
        sharded_subscribe(ra);
}

/* On a Redis Cluster: one master's subscriber (again), its channels only. */
static void shard_ready(redis_shards_t *sh, int shard, void *arg) {
    parley_redis_t *r = arg;
    unsubs_forget(r, shard);
    r->only_shard = shard;
    for (radapter_t *ra = r->adapters; ra; ra = ra->next)
        sharded_subscribe(ra);
    r->only_shard = -1;
}

static void shard_push(redis_shards_t *sh, int shard, const redisReply *rep, void *arg) {
    on_push(NULL, rep, arg);
}

/* ---- connections ---- */

/* The subscribed connection (again): every namespace's channels. */
static void sub_ready(redis_conn_t *c, void *arg) {
    parley_redis_t *r = arg;
    for (radapter_t *ra = r->adapters; ra; ra = ra->next)
        subscribe(r, ra);
}

static void pub_ready(redis_conn_t *c, void *arg) {}

/* ---- the public side ---- */

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
        sio_nsp_on_room(nsp, on_room, ra);
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
    new_uid(r->uid);
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
    static const redis_conn_cb_t pub_cb = {pub_ready, NULL}, sub_cb = {sub_ready, NULL};
    static const redis_sub_cb_t ssub_cb = {ssub_ready, on_push, NULL};
    static const redis_shards_cb_t shards_cb = {shard_ready, shard_push};
    /* Offsets name this node: one node's offset is never looked up in another's log. */
    char tag[UID_SIZE + 1];
    snprintf(tag, sizeof tag, "%s-", r->uid);
    sio_server_set_offset_tag(io, tag);
    rc = sio_server_wrap_adapters(io, wrap, r);
    if (rc == 0 && cfg->cluster)
        rc = redis_shards_open(loop, &r->ep, &shards_cb, r, &r->shards);
    else if (rc == 0 && (rc = redis_conn_open(loop, &r->ep, "publisher", &pub_cb, r, &r->pub)) == 0)
        rc = r->sharded ? redis_sub_open(loop, &r->ep, "subscriber", &ssub_cb, r, &r->ssub)
                        : redis_conn_open(loop, &r->ep, "subscriber", &sub_cb, r, &r->sub);
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
        req_end(q, -ETIMEDOUT);
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
