/* cluster/redis_shards.h — the masters of a Redis Cluster, for sharded pub/sub.
 *
 * On Redis Cluster every SPUBLISH, PUBSUB SHARDNUMSUB and SSUBSCRIBE / SUNSUBSCRIBE of a
 * channel must go to the master that owns the channel's hash slot, and Debian 12's
 * hiredis is not cluster-aware. This keeps the slot map (read with CLUSTER SLOTS on a
 * control connection to the seed) and, per master, one publishing connection
 * (cluster/redis_conn.h, "publisher <host:port>") and one subscriber
 * (cluster/redis_sub.h, "subscriber <host:port>"). Replicas are ignored: reads and
 * failovers are Redis's business; a failover is noticed by the loss of the old master's
 * connections, after which the map is read again until every master answers.
 *
 * A master is a shard, numbered by a small index that stays the same while the master
 * stays in the map; an index is reused for another master only once the connections of
 * the one before are released. The map is read when the control connection is (again)
 * set up and on redis_shards_refresh; a read that fails (an error reply, a malformed
 * reply, a lost connection) is tried again after REDIS_SHARDS_RETRY_MS, and so is one
 * that leaves slots uncovered (a cluster being created gets its slots in steps) or a
 * master unreachable.
 * Nothing here follows MOVED or ASK itself: the owner refreshes and sends again.
 *
 * Ownership: the owner keeps sh until redis_shards_close's done has run. The hiredis
 * context of redis_shards_ctx is borrowed: use it at once, never keep it (a drop, a later
 * map or redis_shards_close frees it; commands pending then get their callbacks with a
 * NULL reply, as redis_conn's). Callbacks may call anything here, including
 * redis_shards_refresh and redis_shards_close; nothing is freed under them. Loop thread
 * only. */
#ifndef PARLEY_CLUSTER_REDIS_SHARDS_H
#define PARLEY_CLUSTER_REDIS_SHARDS_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cluster/redis_conn.h"

/* Redis Cluster's slots; every key and channel hashes to one. */
#define REDIS_SLOTS 16384
/* Milliseconds before reading the map again after a failed or incomplete read. */
#define REDIS_SHARDS_RETRY_MS 1000

typedef struct redis_shards redis_shards_t;

typedef struct {
    /* Shard `shard`'s subscriber connected (again), or a new map was read (then called
     * for every shard whose subscriber is up, whether or not its publisher is):
     * the owner (re)subscribes there every channel that shard owns (re-subscribing a
     * channel already subscribed is harmless in Redis). redis_shards_ready may still be
     * false then (another master, or this one's publisher, not up yet). Required. */
    void (*ready)(redis_shards_t *sh, int shard, void *arg);
    /* Every reply on any shard's subscriber after its setup (as redis_sub's push):
     * confirmations, `smessage` pushes, error replies such as MOVED, and the
     * `sunsubscribe` Redis sends when a subscribed channel's slot moved away. Borrowed:
     * valid during the call only. Required. */
    void (*push)(redis_shards_t *sh, int shard, const redisReply *reply, void *arg);
} redis_shards_cb_t;

/* Starts from `seed` (copied; its user and password are used for every master, its
 * database is ignored; it must be a TCP endpoint unless every node announces its
 * address): a control connection to the seed asks CLUSTER SLOTS, then one redis_conn
 * and one redis_sub are opened per master. cb is copied; arg goes to every callback. No
 * callback runs before this returns. Returns 0 or -ENOMEM (then *out is untouched). */
int redis_shards_open(uv_loop_t *loop, const redis_endpoint_t *seed, const redis_shards_cb_t *cb,
                      void *arg, redis_shards_t **out);
/* Redis Cluster's slot of a key: CRC16 (XMODEM) of the key, or of the part between the
 * first '{' and the next '}' when that part is non-empty, mod REDIS_SLOTS. */
uint16_t redis_slot(const char *key, size_t len);
/* The shard owning key's slot, or -1 while the map is not known or does not cover that
 * slot (then nothing can be sent for that key yet). */
int redis_shards_owner(const redis_shards_t *sh, const char *key, size_t len);
/* That shard's publishing context while connected and set up, else NULL (also for shard
 * -1 or an index not in use). Borrowed: see above. */
redisAsyncContext *redis_shards_ctx(const redis_shards_t *sh, int shard);
/* A command on that shard's subscriber, as redis_sub_send (argv borrowed for the call).
 * Returns 0, -EPIPE when that subscriber is not ready or shard is -1 or not in use, or
 * -ENOMEM. */
int redis_shards_sub_send(redis_shards_t *sh, int shard, int argc, const char **argv,
                          const size_t *argvlen);
/* The map is known and covers every slot, and every master's two connections are up. */
bool redis_shards_ready(const redis_shards_t *sh);
/* The map may be stale (the owner saw a MOVED or ASK error, or Redis took a sharded
 * subscription away because its slot moved): read CLUSTER SLOTS again, on the control
 * connection, or on any connected publisher while the control is down. One read at a
 * time: calls during a read ask for one more read after it. When the reply is a usable
 * map that differs, masters that left are closed, new ones opened, and `ready` is called
 * for every shard whose subscriber is up; otherwise the map stays as it was. The map is
 * also read again, every REDIS_SHARDS_RETRY_MS, while a slot has no master or a
 * master's connection is down (a failover to a replica elsewhere sends no MOVED). */
void redis_shards_refresh(redis_shards_t *sh);
/* Closes everything: no callback runs after this (except done). done(arg) (may be NULL)
 * runs on the loop once every connection is released and sh is freed, never before this
 * returns. */
void redis_shards_close(redis_shards_t *sh, void (*done)(void *arg), void *arg);

#endif
