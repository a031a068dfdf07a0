/* cluster/redis_sharded.c — the sharded wire of the Redis adapter (redis_internal.h).
 *
 * Sharded mode (createShardedAdapter's): the same operations in socket.io-adapter's
 * cluster protocol ({uid, nsp, type, data}), over SPUBLISH and SSUBSCRIBE on
 * "<key>#<nsp>#", answers on "<key>#<nsp>#<uid>#" of the asker, nodes counted with
 * PUBSUB SHARDNUMSUB. Everything else is written in the classic form and translated at
 * the edges (redis_to_cluster, from_cluster), so that both modes share one implementation
 * of each operation. In the dynamic subscription mode a room with members here has its
 * own channel "<key>#<nsp>#<room>#", subscribed while it has them (with connection state
 * recovery, for the maximum disconnection duration after: the sessions kept here still
 * log what the room gets). The subscribed connection is redis_sub.h's, as Debian's
 * hiredis cannot take sharded pushes; on a Redis Cluster, one per master
 * (redis_shards.h), each channel subscribed on the master that owns its slot.
 *
 * Owns the rooms that linger (ra->lingering) and, on a Redis Cluster, the SUNSUBSCRIBEs
 * on their way (r->unsubs, r->only_shard): a confirmation that is not ours means Redis
 * moved the channel's slot, and the map is read again. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/redis_internal.h"
#include "util/log.h"
#include "util/map.h"
#include "util/time.h"

/* ---- the cluster protocol ---- */

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
json_t *redis_to_cluster(radapter_t *ra, int type, bool response, json_t *classic) {
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

/* ---- subscriptions ---- */

/* A room without members here whose channel is kept (ra->lingering), until until_ms. */
typedef struct {
    uint64_t until_ms;
    char name[];
} lingering_t;

/* A channel's SUNSUBSCRIBEs sent and not yet confirmed (r->unsubs). */
typedef struct {
    unsigned pending;
    char name[];
} unsub_t;

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

/* verb (SSUBSCRIBE or SUNSUBSCRIBE) for the namespace's channels, and in the dynamic mode
 * for each room's that has members here or lingers. */
static void ssub_all(radapter_t *ra, const char *verb) {
    const char *own[] = {ra->channel, ra->own_channel, ra->parley_channel};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        ssub(ra, verb, own[i], NULL);
    if (!ra->r->dynamic)
        return;
    map_entry_t *e;
    sio_nsp_t *nsp = ra->wrap.base.nsp;
    for (size_t pos = 0; map_next(&nsp->rooms, &pos, &e);)
        ssub(ra, verb, ra->channel, ((sio_room_t *)e->value)->name);
    for (size_t pos = 0; map_next(&ra->lingering, &pos, &e);)
        ssub(ra, verb, ra->channel, e->key);
}

void redis_sharded_subscribe(radapter_t *ra) {
    ssub_all(ra, "SSUBSCRIBE");
}

void redis_sharded_unsubscribe(radapter_t *ra) {
    ssub_all(ra, "SUNSUBSCRIBE");
}

/* A room came or went here (dynamic mode): its channel follows. */
void redis_sharded_on_room(sio_nsp_t *nsp, const char *room, bool exists, void *arg) {
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
void redis_sharded_purge(sio_adapter_t *a, uint64_t now_ms) {
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

/* ---- what comes on them ---- */

/* A message on a sharded channel: a broadcast, a request, or an answer to us. */
static void on_smessage(parley_redis_t *r, const char *channel, const char *body, size_t len) {
    radapter_t *ra = r->adapters;
    r->stats.received++;
    r->stats.received_bytes += len;
    while (ra && strncmp(channel, ra->channel, strlen(ra->channel)) != 0)
        ra = ra->next;
    bool to_us = ra && strcmp(channel, ra->own_channel) == 0;
    if (!ra || (!to_us && !redis_broadcast_wanted(ra, channel))) {
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
            redis_on_broadcast(ra, &m);
        else
            LOG_LIMITED(LOG_LEVEL_WARN, "redis", "malformed broadcast on %s ignored", channel);
        return;
    }
    bool response = false;
    json_t *classic = from_cluster(msg, &response);
    const char *nsp = json_string_value(json_object_get(msg, "nsp"));
    if (classic && nsp && strcmp(nsp, ra->wrap.base.nsp->name) == 0) {
        if (to_us || response)
            redis_on_response(ra, classic, &bins);
        else
            redis_on_request(ra, classic, &bins);
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
        redis_sharded_subscribe(ra);
}

/* On a Redis Cluster: one master's subscriber (again), its channels only. */
static void shard_ready(redis_shards_t *sh, int shard, void *arg) {
    parley_redis_t *r = arg;
    unsubs_forget(r, shard);
    r->only_shard = shard;
    for (radapter_t *ra = r->adapters; ra; ra = ra->next)
        redis_sharded_subscribe(ra);
    r->only_shard = -1;
}

static void shard_push(redis_shards_t *sh, int shard, const redisReply *rep, void *arg) {
    on_push(NULL, rep, arg);
}

const redis_sub_cb_t redis_sharded_sub_cb = {ssub_ready, on_push, NULL};
const redis_shards_cb_t redis_sharded_shards_cb = {shard_ready, shard_push};
