/* cluster/redis_classic.c — the classic wire of the Redis adapter (redis_internal.h).
 *
 * @socket.io/redis-adapter's createAdapter: broadcasts go on "<key>#<nsp>#" (or
 * "<key>#<nsp>#<room>#" when one room is targeted), heard with PSUBSCRIBE "<key>#<nsp>#*";
 * requests go on "<key>-request#<nsp>#" and answers on "<key>-response#<nsp>#" (this
 * node also listens to its own "<key>-response#<nsp>#<uid>#"), heard with SUBSCRIBE. This
 * file is the subscribed side of it, on a hiredis connection of its own (redis_conn.h):
 * what it subscribes, again on each reconnection, and which namespace and which handler
 * a message goes to. Publishing is redis.c's, the bytes redis_msg.c's.
 *
 * Kept apart from the sharded wire (redis_sharded.c) because the two do not share a kind
 * of connection: hiredis's async API routes these pushes ("message", "pmessage") and
 * cannot take sharded ones (redis_sub.h). */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <string.h>

#include "cluster/redis_internal.h"
#include "util/log.h"

static void on_channel_message(redisAsyncContext *ac, void *reply, void *priv);

void redis_classic_subscribe(radapter_t *ra) {
    parley_redis_t *r = ra->r;
    redisAsyncContext *sub = redis_conn_ctx(r->sub);
    if (!sub)
        return; /* done on (re)connection */
    if (redisAsyncCommand(sub, on_channel_message, r, "PSUBSCRIBE %s*", ra->channel) != REDIS_OK ||
        redisAsyncCommand(sub, on_channel_message, r, "SUBSCRIBE %s %s %s %s", ra->req_channel,
                          ra->resp_channel, ra->own_channel, ra->parley_channel) != REDIS_OK)
        LOG_WARN("redis", "cannot subscribe for namespace %s", ra->wrap.base.nsp->name);
}

static void unsubscribed(redisAsyncContext *ac, void *reply, void *priv) {}

void redis_classic_unsubscribe(radapter_t *ra) {
    redisAsyncContext *sub = redis_conn_ctx(ra->r->sub);
    if (!sub)
        return;
    /* A refused command (the connection is going away) leaves nothing subscribed to undo. */
    if (redisAsyncCommand(sub, unsubscribed, NULL, "PUNSUBSCRIBE %s*", ra->channel) != REDIS_OK ||
        redisAsyncCommand(sub, unsubscribed, NULL, "UNSUBSCRIBE %s %s %s %s", ra->req_channel,
                          ra->resp_channel, ra->own_channel, ra->parley_channel) != REDIS_OK)
        LOG_DEBUG("redis", "unsubscribe of %s not sent: the connection is closing", ra->channel);
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
    if (!ra || (kind == 0 && !redis_broadcast_wanted(ra, ch->str))) {
        r->stats.unused++;
        return;
    }
    if (kind == 0) {
        rmsg_bcast_t m;
        if (rmsg_bcast_decode(body->str, body->len, &m) == 0)
            redis_on_broadcast(ra, &m);
        else
            LOG_LIMITED(LOG_LEVEL_WARN, "redis", "malformed broadcast on %s ignored", ch->str);
        return;
    }
    rmsg_bins_t bins;
    json_t *msg = rmsg_decode(body->str, body->len, &bins);
    if (kind == 1)
        redis_on_request(ra, msg, &bins);
    else
        redis_on_response(ra, msg, &bins);
    json_decref(msg);
    rmsg_bins_free(&bins);
}

/* The subscribed connection (again): every namespace's channels. */
static void sub_ready(redis_conn_t *c, void *arg) {
    parley_redis_t *r = arg;
    for (radapter_t *ra = r->adapters; ra; ra = ra->next)
        redis_classic_subscribe(ra);
}

const redis_conn_cb_t redis_classic_sub_cb = {sub_ready, NULL};
