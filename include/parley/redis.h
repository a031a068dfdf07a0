/* parley/redis.h — many machines: Socket.IO servers joined over Redis pub/sub.
 *
 * A Socket.IO server attached to Redis is one node of a cluster that also takes Node.js
 * socket.io servers using @socket.io/redis-adapter 8.x (classic mode: PUBLISH and
 * PSUBSCRIBE), byte for byte: broadcasts go out on "<key>#<nsp>#" (or
 * "<key>#<nsp>#<room>#" for one room) in MessagePack, requests on
 * "<key>-request#<nsp>#" and answers on "<key>-response#<nsp>#". Every kind of request
 * a Node node sends is answered (fetchSockets, socketsJoin/Leave, disconnectSockets,
 * serverSideEmit with acks, broadcasts with acks, the rooms and sockets queries), so a
 * Parley node is counted (PUBSUB NUMSUB) and never leaves a Node peer waiting for its
 * timeout. Messages published by @socket.io/redis-emitter reach Parley's sockets too.
 *
 * Sharded mode (mode PARLEY_REDIS_SHARDED*) joins nodes using the adapter's
 * createShardedAdapter instead: socket.io-adapter's cluster protocol over SPUBLISH and
 * SSUBSCRIBE ("<key>#<nsp>#", "<key>#<nsp>#<room>#" per room in the dynamic mode), so
 * that a node hears only the rooms it serves. (@socket.io/redis-emitter publishes with
 * PUBLISH: it reaches classic nodes only, Node's as Parley's.)
 *
 *   parley_redis_config_t rc;
 *   parley_redis_config_defaults(&rc);
 *   rc.url = "redis://127.0.0.1:6379";
 *   parley_redis_t *r;
 *   parley_redis_attach(loop, io, &rc, &r);   after sio_server_new, before the loop runs
 *   ...
 *   parley_redis_detach(r);                   shutdown, before sio_server_close
 *
 * While Redis is unreachable the node serves its own clients; what would cross nodes is
 * dropped (logged) and the connections are retried with backoff (100 ms doubling to
 * 5 s). Broadcasts reach the other nodes at most once: pub/sub keeps nothing for a node
 * that was not listening. */
#ifndef PARLEY_REDIS_H
#define PARLEY_REDIS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "parley/sio.h"

#pragma GCC visibility push(default)

typedef struct parley_redis parley_redis_t;

typedef enum {
    /* createAdapter's: PUBLISH and PSUBSCRIBE, every node hears every broadcast. */
    PARLEY_REDIS_CLASSIC,
    /* createShardedAdapter's (Redis 7: SPUBLISH and SSUBSCRIBE), subscriptionMode
     * "dynamic": a channel per room, subscribed by the nodes where it has members. */
    PARLEY_REDIS_SHARDED,
    /* The same with subscriptionMode "static": one channel per namespace. */
    PARLEY_REDIS_SHARDED_STATIC,
} parley_redis_mode_t;

typedef struct {
    /* redis://[[user]:password@]host[:port][/db] or unix:///path/to/socket (or a path
     * starting with '/'). Default "redis://127.0.0.1:6379". */
    const char *url;
    /* The channels' prefix (the adapter's `key` option): "socket.io". */
    const char *key;
    /* How long a request to the other nodes waits for their answers (5000 ms, as the
     * Node adapter's requestsTimeout). */
    uint32_t requests_timeout_ms;
    /* Which of the Node adapter's protocols (PARLEY_REDIS_CLASSIC). Every node of a
     * cluster must use the same. */
    parley_redis_mode_t mode;
    /* url is one master of a Redis Cluster (sharded modes only: attach refuses classic
     * mode, whose PUBLISH every master would relay to every other): each channel is
     * published and subscribed on the master that owns its slot, the masters found with
     * CLUSTER SLOTS and again when a MOVED reply or a moved subscription says the map
     * changed. */
    bool cluster;
} parley_redis_config_t;

void parley_redis_config_defaults(parley_redis_config_t *cfg);
/* A mode by its name: "classic", "sharded" (dynamic) or "sharded-static". Returns 0 or
 * -EINVAL. */
int parley_redis_mode_parse(const char *name, parley_redis_mode_t *out);

/* Makes io a node of the cluster on `url`: every namespace's adapter (those that exist
 * and those made later) goes through Redis. Returns 0, -EINVAL for a URL it cannot read
 * (or cluster with classic mode), or -ENOMEM; Redis itself need not be up yet (it is retried). cfg
 * is copied. */
int parley_redis_attach(uv_loop_t *loop, sio_server_t *io, const parley_redis_config_t *cfg,
                        parley_redis_t **out);

/* What crossed this node's link to Redis since it was attached: messages published
 * (and their bytes), messages received on its subscriptions (and their bytes), and of
 * those the ones it dropped unread or as its own (a broadcast on a room's channel with
 * no member here, its own broadcasts; not those on the namespace's channel that match
 * no socket here, which are only known to be useless once applied). */
typedef struct {
    uint64_t published, published_bytes;
    uint64_t received, received_bytes, unused;
} parley_redis_stats_t;

void parley_redis_stats(const parley_redis_t *r, parley_redis_stats_t *out);

/* Whether both connections (publishing and subscribed) are up. */
bool parley_redis_connected(const parley_redis_t *r);

/* Leaves the cluster: pending requests end (as timed out), the connections close, and r
 * is freed once they have (on the loop). Call before sio_server_close. */
void parley_redis_detach(parley_redis_t *r);

#pragma GCC visibility pop

#endif
