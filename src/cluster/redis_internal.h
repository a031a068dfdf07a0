/* cluster/redis_internal.h — what the Redis adapter's files share; private to them.
 *
 *   redis.c           the adapter (parley/redis.h): the wrapped namespace adapters,
 *                     publishing (PUBLISH or SPUBLISH), broadcasts from other nodes,
 *                     attach and detach
 *   redis_classic.c   the classic wire's subscribed side: (P)SUBSCRIBE on a hiredis
 *                     connection, and what comes on it
 *   redis_sharded.c   the sharded wire's: SSUBSCRIBE and what comes on it,
 *                     socket.io-adapter's cluster protocol, dynamic room channels, Redis
 *                     Cluster's moved slots
 *   redis_requests.c  requests of ours: counting the nodes, waiting for their answers
 *   redis_answers.c   requests of the other nodes, answered here
 *   redis_recovery.c  connection state recovery across nodes: sessions lent and given back
 *
 * Both wires end in the same functions: a broadcast in redis_on_broadcast, a request in
 * redis_on_request, an answer in redis_on_response, each with the message in the classic
 * form (the sharded wire translates at its edge, redis_to_cluster and back).
 *
 * Who owns what: redis.c makes and frees parley_redis_t and every radapter_t (the
 * adapters list, the connections, the maps' storage); a field marked below with a file's
 * name is that file's, which alone writes it (but for detach, which ends every request).
 * rreq_t belongs to redis_requests.c: made by redis_req_new, ended by redis_req_end, freed
 * once nothing holds it; between those the operation that asks fills in its own
 * callbacks. Loop thread only, like the rest. */
#ifndef PARLEY_CLUSTER_REDIS_INTERNAL_H
#define PARLEY_CLUSTER_REDIS_INTERNAL_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cluster/redis_conn.h"
#include "cluster/redis_msg.h"
#include "cluster/redis_shards.h"
#include "cluster/redis_sub.h"
#include "parley/redis.h"
#include "sio/internal.h"
#include "util/buf.h"
#include "util/map.h"

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
    int only_shard; /* redis_sharded.c: >= 0 while that master's subscriptions are made again */
    /* redis_sharded.c: on a Redis Cluster, the SUNSUBSCRIBEs sent and not yet confirmed,
     * per channel (name → its own record): a confirmation that matches none is Redis
     * ending a subscription itself, because its slot moved. */
    map_t unsubs;
    bool sharded, dynamic;
    int open_conns; /* not yet closed (detaching) */
    radapter_t *adapters;
    rreq_t *reqs;        /* redis_requests.c: those not yet ended */
    size_t server_count; /* redis_requests.c: as last counted */
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
    /* redis_sharded.c: in the sharded dynamic mode with recovery, rooms without members
     * here whose channel is kept until a time (name → its own record, freed with free). */
    map_t lingering;
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

/* ---- redis.c ---- */

/* Six random characters, as the Node adapter's uid2(6). */
void redis_uid_new(char out[UID_SIZE]);
/* The connection to publish or ask on about `channel` (on a Redis Cluster, the master
 * that owns its slot), or NULL while it is down. Borrowed: use it at once. */
redisAsyncContext *redis_pub_ctx(parley_redis_t *r, const char *channel);
/* Logs an error reply to `what`; a MOVED reads the slot map again. */
void redis_reply_error(parley_redis_t *r, const char *what, const redisReply *rep);
/* PUBLISH (SPUBLISH in sharded mode) of msg (copied), counted in the stats; not connected,
 * it is lost with a log line. */
void redis_publish(parley_redis_t *r, const char *channel, const void *msg, size_t len);
/* A sio_fetch_fn that keeps the sockets found here in *(json_t **)arg (a new reference). */
void redis_keep_local(int err, json_t *sockets, void *arg);
/* Whether a broadcast on channel, "<key>#<nsp>#" or "<key>#<nsp>#<room>#", is for this
 * node. */
bool redis_broadcast_wanted(radapter_t *ra, const char *channel);
/* A broadcast from another node, applied here (m is freed). */
void redis_on_broadcast(radapter_t *ra, rmsg_bcast_t *m);

/* ---- redis_classic.c ---- */

/* The subscribed connection's callbacks (attach opens it with these). */
extern const redis_conn_cb_t redis_classic_sub_cb;
/* Subscribes the namespace's channels, when the subscribed connection is up (else its
 * `ready` does it). */
void redis_classic_subscribe(radapter_t *ra);
/* Unsubscribes them (the adapter is going). */
void redis_classic_unsubscribe(radapter_t *ra);

/* ---- redis_sharded.c ---- */

/* The subscriber's callbacks, and the masters' on a Redis Cluster. */
extern const redis_sub_cb_t redis_sharded_sub_cb;
extern const redis_shards_cb_t redis_sharded_shards_cb;
/* A classic message of ours (taken over) in the cluster form {uid, nsp, type, data}: a
 * new reference, or NULL (not an operation of the cluster protocol, or out of memory). */
json_t *redis_to_cluster(radapter_t *ra, int type, bool response, json_t *classic);
/* The namespace's channels, and in the dynamic mode each room's that has members here
 * or lingers. */
void redis_sharded_subscribe(radapter_t *ra);
/* All of them unsubscribed (the adapter is going). */
void redis_sharded_unsubscribe(radapter_t *ra);
/* sio_nsp_on_room's callback in the dynamic mode (arg: the radapter_t). */
void redis_sharded_on_room(sio_nsp_t *nsp, const char *room, bool exists, void *arg);
/* The adapter's purge: also unsubscribes lingering rooms whose time is up. */
void redis_sharded_purge(sio_adapter_t *a, uint64_t now_ms);

/* ---- redis_requests.c ---- */

/* A new request of `type` in r->reqs, held by the list; arg goes to its callbacks. */
rreq_t *redis_req_new(radapter_t *ra, int type, void *arg);
/* Ends q: its callback with err, then it is forgotten (freed once nothing holds it). */
void redis_req_end(rreq_t *q, int err);
/* Sends q (its message in q->msg) once the nodes subscribed to the request channel are
 * counted; timeout_ms 0: the requests timeout. Returns 0 or a negative error (then the
 * caller ends q). */
int redis_req_send(rreq_t *q, uint32_t timeout_ms);
/* The same, the nodes counted on the channel `counted_on`. */
int redis_req_send_counting(rreq_t *q, uint32_t timeout_ms, const char *counted_on);
/* A request (a classic message, taken over) as its bytes for the request channel,
 * appended to out. Returns 0 or -ENOMEM. */
int redis_request_bytes(radapter_t *ra, int type, json_t *req, buf_t *out);
/* A request that awaits no answer (taken over; NULL: out of memory, logged). */
void redis_request_send(radapter_t *ra, int type, json_t *req);
/* An answer to a request of ours (or of another node's: not found, ignored); classic
 * form, resp and bins borrowed. */
void redis_on_response(radapter_t *ra, json_t *resp, const rmsg_bins_t *bins);

/* ---- redis_answers.c ---- */

/* An answer (classic form, taken over) to node `to` for a request of type `type`. */
void redis_respond(radapter_t *ra, const char *to, int type, json_t *msg);
/* A request from another node (classic form; req and bins borrowed). */
void redis_on_request(radapter_t *ra, json_t *req, rmsg_bins_t *bins);

/* ---- redis_recovery.c ---- */

/* The adapter's restore: a session not kept here is asked of the other Parley nodes. */
void redis_recovery_restore(sio_adapter_t *a, sio_socket_t *s, const char *pid, const char *offset,
                            sio_restore_fn done, void *arg);
/* Another node asks for a session (REQ_PARLEY_RESTORE): lent if it is here. */
void redis_recovery_lend(radapter_t *ra, json_t *req);
/* A session lent by this node given back (REQ_PARLEY_RETURN). */
void redis_recovery_take_back(radapter_t *ra, json_t *req);
/* An answer to a recovery request of ours. */
void redis_recovery_on_lent(rreq_t *q, json_t *resp);

#endif
