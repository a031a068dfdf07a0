/* cluster/redis_sub.h — a Redis connection for sharded pub/sub that comes back when it drops.
 *
 * For SSUBSCRIBE / SUNSUBSCRIBE and the `smessage` pushes they bring. Debian 12's hiredis
 * (0.14) routes subscription pushes in its async API by the names "message" and "pmessage"
 * only, and asserts on an `smessage`; so this does not use redisAsyncContext: it does its
 * own I/O on a libuv stream (TCP after uv_getaddrinfo, trying each address in turn, or a
 * Unix socket) and uses hiredis only to encode commands and to parse replies.
 *
 * Each connection is set up with AUTH [user] password (when the endpoint has a password)
 * and PING; `ready` follows the last setup reply. A refused setup, a protocol error, EOF
 * or a read or write error drops the connection, which is tried again after
 * REDIS_BACKOFF_MIN_MS doubling to REDIS_BACKOFF_MAX_MS (cluster/redis_conn.h), back to the
 * minimum once set up. Subscriptions do not survive a drop: the owner subscribes again in
 * `ready`. The database number of the endpoint is ignored (pub/sub spans databases).
 *
 * Ownership: the owner keeps the connection until redis_sub_close's done has run; the
 * connection never frees itself inside a call or callback, so callbacks may send and close.
 * Loop thread only. */
#ifndef PARLEY_CLUSTER_REDIS_SUB_H
#define PARLEY_CLUSTER_REDIS_SUB_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "cluster/redis_conn.h"

typedef struct redis_sub redis_sub_t;

typedef struct {
    /* Connected (again) and set up: (re)subscribe here. Required. */
    void (*ready)(redis_sub_t *s, void *arg);
    /* Each reply after the setup, in order: subscription confirmations, `smessage`
     * pushes, error replies. Borrowed: valid during the call only. Required. */
    void (*push)(redis_sub_t *s, const redisReply *reply, void *arg);
    /* Dropped after having been ready; it is being tried again. May be NULL. */
    void (*lost)(redis_sub_t *s, void *arg);
} redis_sub_cb_t;

/* A connection to ep (copied) named `name` in log lines (copied, truncated to 31 bytes);
 * cb is copied, arg is passed to every callback. It starts connecting at once; no
 * callback runs before this returns. Returns 0 or -ENOMEM (then *out is untouched). */
int redis_sub_open(uv_loop_t *loop, const redis_endpoint_t *ep, const char *name,
                   const redis_sub_cb_t *cb, void *arg, redis_sub_t **out);
/* Whether s is connected and set up (false for NULL too). */
bool redis_sub_ready(const redis_sub_t *s);
/* Sends one command: argc arguments of argvlen[i] bytes each (argvlen NULL: C strings).
 * argv is borrowed for the call (the command is encoded into a buffer of its own, freed
 * once written). Returns 0, -EPIPE when not ready (then nothing is sent; a write that
 * libuv refuses also drops the connection and gives -EPIPE) or -ENOMEM. */
int redis_sub_send(redis_sub_t *s, int argc, const char **argv, const size_t *argvlen);
/* Closes: no callback runs after this (except done); commands not yet written are
 * dropped. done(arg) (may be NULL) runs on the loop once every handle is closed and s is
 * freed, never before this returns. */
void redis_sub_close(redis_sub_t *s, void (*done)(void *arg), void *arg);

#endif
