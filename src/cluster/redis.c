/* cluster/redis.c — the Redis adapter: a node of a socket.io cluster (parley/redis.h).
 *
 * Two connections, as the Node adapter has: one publishes and asks (PUBLISH, PUBSUB
 * NUMSUB), the other is subscribed. Each namespace's in-process adapter is wrapped: what
 * reaches sockets by room is done locally and published; what comes from another node
 * is applied locally with SIO_LOCAL. The bytes are the Node adapter's (redis_msg.h).
 *
 * Requests (cluster/redis.h lists them) are answered on the common response channel,
 * which every Node node listens to whether or not it also listens to its own. A request
 * of ours counts the nodes first (PUBSUB NUMSUB on the request channel, ourselves
 * included), then waits for that many answers less one, or its timeout.
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
#include "parley/redis.h"
#include "sio/internal.h"
#include "util/log.h"
#include "util/base64.h"
#include "util/rand.h"
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
    redis_conn_t *pub, *sub; /* publishing and asking; subscribed */
    int open_conns;          /* not yet closed (detaching) */
    radapter_t *adapters;
    rreq_t *reqs;
    size_t server_count; /* as last counted */
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
};

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

/* Six random characters, as the Node adapter's uid2(6). */
static void new_uid(char out[UID_SIZE]) {
    char id[RAND_ID_SIZE];
    if (rand_id(id))
        memset(id, 'x', sizeof id); /* ids only tell requests apart; never a secret */
    memcpy(out, id, UID_SIZE - 1);
    out[UID_SIZE - 1] = '\0';
}

/* ---- publishing ---- */

static void published(redisAsyncContext *ac, void *reply, void *priv) {
    redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "PUBLISH: %s", rep->str);
}

static void publish(parley_redis_t *r, const char *channel, const void *msg, size_t len) {
    redisAsyncContext *ac = redis_conn_ctx(r->pub);
    if (!ac ||
        redisAsyncCommand(ac, published, NULL, "PUBLISH %s %b", channel, msg, len) != REDIS_OK)
        LOG_LIMITED(LOG_LEVEL_WARN, "redis",
                    "not connected: a message for the other nodes is lost");
}

static void publish_json(parley_redis_t *r, const char *channel, json_t *msg) {
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    if (text)
        publish(r, channel, text, strlen(text));
    else
        LOG_LIMITED(LOG_LEVEL_WARN, "redis",
                    "out of memory: a message for the other nodes is lost");
    free(text);
    json_decref(msg);
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
        publish(r, q->ra->req_channel, q->msg.data, q->msg.len);
    buf_free(&q->msg);
    req_unref(q);
}

/* Sends q once the nodes are counted (its message is in q->msg). */
static int req_send_counting(rreq_t *q, uint32_t timeout_ms, const char *counted_on) {
    parley_redis_t *r = q->r;
    int rc = req_arm(q, timeout_ms ? timeout_ms : r->requests_timeout_ms);
    redisAsyncContext *ac = redis_conn_ctx(r->pub);
    if (rc == 0 &&
        (!ac || redisAsyncCommand(ac, counted, q, "PUBSUB NUMSUB %s", counted_on) != REDIS_OK))
        rc = -EPIPE;
    if (rc == 0)
        q->refs++;
    return rc;
}

/* Sends q once the nodes subscribed to the request channel are counted. */
static int req_send(rreq_t *q, uint32_t timeout_ms) {
    return req_send_counting(q, timeout_ms, q->ra->req_channel);
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
    int prc = rmsg_pack_bcast(&m, ra->r->uid, a->nsp->name, b, NULL);
    if (prc == 0) {
        if (b->to.nrooms == 1) {
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
        rc = rmsg_pack_bcast(&q->msg, ra->r->uid, a->nsp->name, b, q->id);
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
    publish_json(ra->r, ra->req_channel, req);
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
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    rc = text ? buf_append_str(&q->msg, text) : -ENOMEM;
    free(text);
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
        publish_json(ra->r, ra->req_channel, req);
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
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    int rc = text ? buf_append_str(&q->msg, text) : -ENOMEM;
    free(text);
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
    if (!map_get(&a->nsp->sessions, pid, strlen(pid)) && redis_conn_ctx(ra->r->pub) &&
        (q = req_new(ra, REQ_PARLEY_RESTORE, arg))) {
        q->s = s;
        q->restore_done = done;
        json_t *req = json_pack("{s:s,s:s,s:i,s:s,s:s?}", "uid", ra->r->uid, "requestId", q->id,
                                "type", REQ_PARLEY_RESTORE, "pid", pid, "offset", offset);
        char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
        json_decref(req);
        int rc = text ? buf_append_str(&q->msg, text) : -ENOMEM;
        free(text);
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
    .purge = sio_wrapped_purge,
    .server_count = ra_server_count,
    .free = ra_free,
};

/* ---- what other nodes send ---- */

static void on_channel_message(redisAsyncContext *ac, void *reply, void *priv);

static void subscribe(parley_redis_t *r, radapter_t *ra) {
    redisAsyncContext *sub = redis_conn_ctx(r->sub);
    if (!sub)
        return; /* done on (re)connection */
    if (redisAsyncCommand(sub, on_channel_message, r, "PSUBSCRIBE %s*", ra->channel) != REDIS_OK ||
        redisAsyncCommand(sub, on_channel_message, r, "SUBSCRIBE %s %s %s %s", ra->req_channel,
                          ra->resp_channel, ra->own_channel, ra->parley_channel) != REDIS_OK)
        LOG_WARN("redis", "cannot subscribe for namespace %s", ra->wrap.base.nsp->name);
}

/* A broadcast from another node, on "<key>#<nsp>#" or "<key>#<nsp>#<room>#". */
static void on_broadcast(radapter_t *ra, const char *channel, const char *msg, size_t len) {
    size_t prefix = strlen(ra->channel), clen = strlen(channel);
    if (clen > prefix + 1 && !ra->wrap.base.nsp->io->cfg.recovery) {
        /* One room: nothing to do unless some socket here is in it (with recovery, the
         * log keeps it for the sessions of sockets that were). */
        char *room = strndup(channel + prefix, clen - prefix - 1);
        size_t here = room ? ra->wrap.local->ops->room_size(ra->wrap.local, room) : 0;
        free(room);
        if (!here)
            return;
    }
    rmsg_bcast_t m;
    int rc = rmsg_bcast_decode(msg, len, &m);
    if (rc) {
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "malformed broadcast on %s ignored", channel);
        return;
    }
    if (strcmp(m.uid, ra->r->uid) != 0 && strcmp(m.nsp, ra->wrap.base.nsp->name) == 0) {
        m.b.to.flags |= SIO_LOCAL;
        if ((rc = ra->wrap.local->ops->broadcast(ra->wrap.local, &m.b)))
            LOG_LIMITED(LOG_LEVEL_WARN, "redis", "broadcast from another node failed: %d", rc);
    }
    rmsg_bcast_free(&m);
}

static void respond(radapter_t *ra, json_t *msg) {
    publish_json(ra->r, ra->resp_channel, msg);
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
    respond(ra, json_pack("{s:O?}", "requestId", json_object_get(req, "requestId")));
}

/* What a broadcast with acks from another node owes it: the count, then each answer. */
typedef struct {
    radapter_t *ra;
    char id[64];
    size_t expected, received;
    bool counted;
} remote_acks_t;

static void remote_count(size_t n, bool last, void *arg) {
    remote_acks_t *ra_ = arg;
    ra_->expected += n;
    if (!last)
        return;
    ra_->counted = true;
    respond(ra_->ra, json_pack("{s:i,s:s,s:I}", "type", REQ_BROADCAST_CLIENT_COUNT, "requestId",
                               ra_->id, "clientCount", (json_int_t)ra_->expected));
    if (ra_->received == ra_->expected)
        free(ra_);
}

static void remote_ack(sio_socket_t *s, int err, const sio_payload_t *p, void *arg) {
    remote_acks_t *st = arg;
    st->received++;
    /* socket.io passes on an answer's first argument; a recipient that left says nothing. */
    if (err == 0 && p) {
        json_t *first = json_array_get(p->args, 0);
        json_t *msg = json_pack("{s:i,s:s,s:O?}", "type", REQ_BROADCAST_ACK, "requestId", st->id,
                                "packet", first);
        buf_t b = {0};
        if (msg && rmsg_pack(&b, msg, p->bins, p->nbins) == 0)
            publish(st->ra->r, st->ra->resp_channel, b.data, b.len);
        buf_free(&b);
        json_decref(msg);
    }
    if (st->counted && st->received == st->expected)
        free(st);
}

static void on_broadcast_request(radapter_t *ra, const char *msg, size_t len) {
    rmsg_bcast_t m;
    if (rmsg_bcast_decode(msg, len, &m)) {
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "malformed broadcast request ignored");
        return;
    }
    remote_acks_t *st = NULL;
    if (strcmp(m.uid, ra->r->uid) != 0 && strcmp(m.nsp, ra->wrap.base.nsp->name) == 0 &&
        strlen(m.request_id) < sizeof st->id && (st = calloc(1, sizeof *st))) {
        st->ra = ra;
        snprintf(st->id, sizeof st->id, "%s", m.request_id);
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
    respond(ra, json_pack("{s:i,s:O?,s:s,s:s?}", "type", REQ_PARLEY_RESTORE, "requestId",
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
        publish_json(ra->r, ra->req_channel,
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

static void on_request(radapter_t *ra, const char *msg, size_t len) {
    json_t *req;
    rmsg_bins_t bins = {0};
    if (len && msg[0] == '{')
        req = json_loadb(msg, len, 0, NULL);
    else
        req = rmsg_unpack(msg, len, &bins);
    json_t *type_j = json_object_get(req, "type");
    const char *uid = json_string_value(json_object_get(req, "uid"));
    if (!json_is_integer(type_j)) {
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "malformed request ignored");
        json_decref(req);
        rmsg_bins_free(&bins);
        return;
    }
    int type = (int)json_integer_value(type_j);
    json_t *rid = json_object_get(req, "requestId");
    bool mine = uid && strcmp(uid, ra->r->uid) == 0;
    sio_nsp_t *nsp = ra->wrap.base.nsp;
    if (mine) {
        /* Our own requests come back to us too. */
    } else if (type == REQ_SOCKETS) {
        respond(ra, json_pack("{s:O?,s:o}", "requestId", rid, "sockets",
                              local_ids(ra, json_object_get(req, "rooms"))));
    } else if (type == REQ_ALL_ROOMS) {
        respond(ra, json_pack("{s:O?,s:o}", "requestId", rid, "rooms", local_rooms(ra)));
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
        respond(ra, json_pack("{s:O?,s:o}", "requestId", rid, "sockets",
                              sockets ? sockets : json_array()));
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
            respond(ra, json_pack("{s:i,s:O,s:o}", "type", REQ_SERVER_SIDE_EMIT, "requestId", rid,
                                  "data", answer ? answer : json_null()));
        else
            json_decref(answer);
    } else if (type == REQ_BROADCAST) {
        on_broadcast_request(ra, msg, len);
    } else if (type == REQ_PARLEY_RESTORE) {
        lend_session(ra, req);
    } else if (type == REQ_PARLEY_RETURN) {
        take_back_session(ra, req);
    }
    json_decref(req);
    rmsg_bins_free(&bins);
}

/* An answer to a request of ours (or of another node's: not found, ignored). */
static void on_response(radapter_t *ra, const char *msg, size_t len) {
    rmsg_bins_t bins = {0};
    json_t *resp =
        len && msg[0] == '{' ? json_loadb(msg, len, 0, NULL) : rmsg_unpack(msg, len, &bins);
    rreq_t *q = req_find(ra->r, json_string_value(json_object_get(resp, "requestId")));
    if (!q || q->ra != ra) {
        json_decref(resp);
        rmsg_bins_free(&bins);
        return;
    }
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
            sio_payload_t p = {args, bins.v, bins.n};
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
    json_decref(resp);
    rmsg_bins_free(&bins);
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
    int kind;
    radapter_t *ra = adapter_for(r, ch->str, &kind);
    if (!ra)
        return;
    if (kind == 0)
        on_broadcast(ra, ch->str, body->str, body->len);
    else if (kind == 1)
        on_request(ra, body->str, body->len);
    else
        on_response(ra, body->str, body->len);
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
    snprintf(ra->own_channel, n, "%s-response#%s#%s#", r->key, nsp->name, r->uid);
    snprintf(ra->parley_channel, n, "%s-parley#%s#", r->key, nsp->name);
    ra->wrap.base.ops = &redis_ops;
    ra->wrap.base.nsp = nsp;
    ra->wrap.local = local;
    ra->r = r;
    ra->next = r->adapters;
    r->adapters = ra;
    subscribe(r, ra);
    return &ra->wrap.base;
}

static void free_config(parley_redis_t *r) {
    free(r->key);
    redis_endpoint_free(&r->ep);
}

int parley_redis_attach(uv_loop_t *loop, sio_server_t *io, const parley_redis_config_t *cfg,
                        parley_redis_t **out) {
    parley_redis_t *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->loop = loop;
    r->io = io;
    r->requests_timeout_ms = cfg->requests_timeout_ms ? cfg->requests_timeout_ms : 5000;
    r->server_count = 1;
    new_uid(r->uid);
    int rc = (r->key = strdup(cfg->key ? cfg->key : "socket.io")) ? 0 : -ENOMEM;
    if (rc == 0)
        rc = redis_endpoint_parse(cfg->url ? cfg->url : "redis://127.0.0.1:6379", &r->ep);
    if (rc) {
        free_config(r);
        free(r);
        return rc;
    }
    static const redis_conn_cb_t pub_cb = {pub_ready, NULL}, sub_cb = {sub_ready, NULL};
    /* Offsets name this node: one node's offset is never looked up in another's log. */
    char tag[UID_SIZE + 1];
    snprintf(tag, sizeof tag, "%s-", r->uid);
    sio_server_set_offset_tag(io, tag);
    if ((rc = sio_server_wrap_adapters(io, wrap, r)) ||
        (rc = redis_conn_open(loop, &r->ep, "publisher", &pub_cb, r, &r->pub)) ||
        (rc = redis_conn_open(loop, &r->ep, "subscriber", &sub_cb, r, &r->sub))) {
        parley_redis_detach(r);
        return rc;
    }
    *out = r;
    return 0;
}

bool parley_redis_connected(const parley_redis_t *r) {
    return redis_conn_ctx(r->pub) && redis_conn_ctx(r->sub);
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
    conn_closed(r);
}
