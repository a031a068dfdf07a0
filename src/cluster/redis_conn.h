/* cluster/redis_conn.h — one Redis connection that comes back when it drops.
 *
 * hiredis (async, on libuv through its adapter) does the protocol; this keeps the
 * connection up: it connects, authenticates and selects the database (from a redis://
 * URL), reports readiness, and after a drop connects again after 100 ms, doubling to
 * 5 s. Its owner learns of each (re)connection through `ready` (a subscriber subscribes
 * again there) and of each drop through `lost`. Used by the Redis adapter (redis.c) and
 * the chat's Redis store.
 *
 * Ownership: the owner keeps the connection until redis_conn_close's done has run; the
 * hiredis context is borrowed, valid while redis_conn_ctx returns it. */
#ifndef PARLEY_CLUSTER_REDIS_CONN_H
#define PARLEY_CLUSTER_REDIS_CONN_H

#include <hiredis/async.h>
#include <stdbool.h>
#include <uv.h>

/* Where Redis is: redis://[[user]:password@]host[:port][/db], unix:///path or /path. */
typedef struct {
    char *host, *path, *user, *password;
    int port, db;
} redis_endpoint_t;

/* Returns 0, -EINVAL (not such a URL) or -ENOMEM. */
int redis_endpoint_parse(const char *url, redis_endpoint_t *out);
void redis_endpoint_free(redis_endpoint_t *ep);
/* A copy of from in to (free with redis_endpoint_free). Returns 0 or -ENOMEM. */
int redis_endpoint_copy(const redis_endpoint_t *from, redis_endpoint_t *to);

/* Reconnection backoff of the Redis connections (this one and cluster/redis_sub.h): the
 * first retry after REDIS_BACKOFF_MIN_MS, doubling up to REDIS_BACKOFF_MAX_MS, back to the
 * minimum once a connection is set up. Milliseconds. */
#define REDIS_BACKOFF_MIN_MS 100
#define REDIS_BACKOFF_MAX_MS 5000

typedef struct redis_conn redis_conn_t;

typedef struct {
    void (*ready)(redis_conn_t *c, void *arg); /* connected (again) and set up */
    void (*lost)(redis_conn_t *c, void *arg);  /* dropped; may be NULL */
} redis_conn_cb_t;

/* A connection to ep (copied) named `name` in log lines; it starts connecting at once.
 * Returns 0 or -ENOMEM. */
int redis_conn_open(uv_loop_t *loop, const redis_endpoint_t *ep, const char *name,
                    const redis_conn_cb_t *cb, void *arg, redis_conn_t **out);
/* The hiredis context while connected and set up, else NULL (also for c NULL). */
redisAsyncContext *redis_conn_ctx(const redis_conn_t *c);
/* Closes: pending commands get their callbacks with a NULL reply; done(arg) runs once
 * everything is released (on the loop, maybe before this returns). */
void redis_conn_close(redis_conn_t *c, void (*done)(void *arg), void *arg);

#endif
