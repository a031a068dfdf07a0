/* cluster/redis_requests.c — requests of ours to the other nodes (redis_internal.h).
 *
 * fetchSockets, serverSideEmit with acknowledgements, a broadcast with acknowledgements
 * and a recovery session need the other nodes' answers (socket.io's requests, the REQ_
 * types). Requests are answered on the common response channel, which every Node node
 * listens to whether or not it also listens to its own (in sharded mode, on the asker's
 * own channel). A request of ours counts the nodes first (PUBSUB NUMSUB on the request
 * channel, ourselves included; SHARDNUMSUB on the namespace's channel in sharded mode),
 * then waits for that many answers less one, or its timeout: counting first is what lets
 * it end as soon as the last answer is in rather than always at its timeout.
 *
 * Owns every rreq_t (r->reqs) and r->server_count, the nodes as last counted. An
 * operation that asks (redis.c, redis_recovery.c) makes a request, fills in its callbacks
 * and its message, and sends it; answers come through redis_on_response from either wire.
 * Requests that await no answer (socketsJoin and the like) are sent from here too. */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/redis_internal.h"
#include "util/log.h"

/* ---- what goes out ---- */

/* Where requests and broadcasts with acks go: the request channel, or in sharded mode
 * the namespace's channel (whose subscribers are also the nodes counted). */
static const char *request_channel(radapter_t *ra) {
    return ra->r->sharded ? ra->channel : ra->req_channel;
}

/* A request (a classic message, taken over) as its bytes for request_channel. */
int redis_request_bytes(radapter_t *ra, int type, json_t *req, buf_t *out) {
    if (ra->r->sharded)
        req = redis_to_cluster(ra, type, false, req);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    int rc = text ? buf_append_str(out, text) : -ENOMEM;
    free(text);
    return rc;
}

/* A request that awaits no answer. */
void redis_request_send(radapter_t *ra, int type, json_t *req) {
    buf_t b = {0};
    if (req && redis_request_bytes(ra, type, req, &b) == 0)
        redis_publish(ra->r, request_channel(ra), b.data, b.len);
    else
        LOG_LIMITED(LOG_LEVEL_WARN, "redis",
                    "out of memory: a message for the other nodes is lost");
    buf_free(&b);
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
void redis_req_end(rreq_t *q, int err) {
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
        redis_req_end(q, 0); /* a broadcast's answers: no longer awaited */
        return;
    }
    LOG_LIMITED(LOG_LEVEL_INFO, "redis", "request %s: %zu of %zu nodes answered in time", q->id,
                q->got, q->expected);
    redis_req_end(q, -ETIMEDOUT);
}

rreq_t *redis_req_new(radapter_t *ra, int type, void *arg) {
    rreq_t *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->r = ra->r;
    q->ra = ra;
    q->type = type;
    q->arg = arg;
    q->refs = 1;
    redis_uid_new(q->id);
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
        redis_reply_error(r, "PUBSUB", rep);
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[1]->type == REDIS_REPLY_INTEGER && rep->element[1]->integer > 0)
        numsub = (size_t)rep->element[1]->integer;
    if (numsub)
        r->server_count = numsub;
    q->counted = true;
    q->expected = numsub > 1 ? numsub - 1 : 0;
    if (q->expected == 0)
        redis_req_end(q, rep ? 0 : -EPIPE);
    else
        redis_publish(r, request_channel(q->ra), q->msg.data, q->msg.len);
    buf_free(&q->msg);
    req_unref(q);
}

/* Sends q once the nodes are counted (its message is in q->msg). */
int redis_req_send_counting(rreq_t *q, uint32_t timeout_ms, const char *counted_on) {
    parley_redis_t *r = q->r;
    int rc = req_arm(q, timeout_ms ? timeout_ms : r->requests_timeout_ms);
    redisAsyncContext *ac = redis_pub_ctx(r, counted_on);
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
int redis_req_send(rreq_t *q, uint32_t timeout_ms) {
    return redis_req_send_counting(q, timeout_ms, request_channel(q->ra));
}

/* ---- their answers ---- */

/* An answer to a request of ours (or of another node's: not found, ignored); classic
 * form, resp and bins borrowed. */
void redis_on_response(radapter_t *ra, json_t *resp, const rmsg_bins_t *bins) {
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
            redis_req_end(q, 0);
    } else if (q->type == REQ_PARLEY_RESTORE && type == REQ_PARLEY_RESTORE) {
        redis_recovery_on_lent(q, resp);
        if (++q->got == q->expected || q->lent)
            redis_req_end(q, 0);
    } else if (q->type == REQ_SERVER_SIDE_EMIT) {
        json_array_append(q->collected, json_object_get(resp, "data"));
        if (++q->got == q->expected)
            redis_req_end(q, 0);
    }
}
