/* sio/adapter.h — the fan-out seam: a namespace's adapter.
 *
 * Everything that reaches sockets by room, or asks which sockets are where, goes through
 * the namespace's adapter: a table of operations (sio_adapter_ops_t) over the adapter's
 * state, as socket.io's Adapter class is for its Redis and cluster adapters. The
 * in-process adapter (adapter.c) is the first implementation: rooms indexed both ways,
 * encode-once delivery to local sockets, and the recovery log. An adapter that spans
 * processes or machines wraps one: it does the local part through it and carries the
 * operation to its peers, which apply it to their own in-process adapter with SIO_LOCAL
 * set, so that it travels no further.
 *
 * What crosses the seam is described, not encoded: a broadcast is the event name, the
 * JSON text of its arguments and its binary attachments (sio_bcast_t), so a remote
 * adapter can put it on its own wire while the local one encodes it once for all local
 * recipients. Every broadcast delivered on this node, whoever sent it, is also shown to
 * the namespace's broadcast observers (sio_nsp_on_broadcast): that is how transports
 * outside Socket.IO (the chat's Server-Sent Events and long-polls) get the same fan-out.
 *
 * Ownership: everything a sio_bcast_t points to is borrowed for the call. */
#ifndef PARLEY_SIO_ADAPTER_H
#define PARLEY_SIO_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parley/sio.h"

typedef struct sio_adapter sio_adapter_t;
typedef struct sio_session sio_session_t;
typedef struct sio_logged sio_logged_t;

/* One emit: an EVENT packet and who gets it. */
typedef struct {
    const char *event;
    const char *args_json; /* the JSON text of the argument array ("[]" at least) */
    size_t args_len;
    const sio_bin_t *bins;
    size_t nbins;
    sio_target_t to; /* rooms, except, flags (SIO_LOCAL, SIO_VOLATILE, SIO_NO_RECOVERY) */
    /* broadcast_with_ack only: set by an adapter that wraps this one and counts other
     * servers too, so that this one's count is not the last; and how long the emitter
     * waits for the answers (0: no limit), for adapters that must forget them. */
    bool more;
    uint32_t ack_timeout_ms;
} sio_bcast_t;

/* Broadcast with acknowledgements: `count` is told how many more sockets were sent the
 * packet (any number of times, before their answers), with last set once no more counts
 * will come; `ack` gets each answer (err 0; s NULL for a socket of another server) or
 * each recipient that left first (err -EPIPE, payload NULL). */
typedef void (*sio_bcast_count_fn)(size_t n, bool last, void *arg);

/* A restore's outcome, once: the session (owned by the callee; NULL when there is none
 * to restore) and the packets it missed (borrowed for the call). */
typedef void (*sio_restore_fn)(sio_socket_t *s, sio_session_t *session, sio_logged_t *const *missed,
                               size_t nmissed, void *arg);

typedef struct {
    /* Delivers b to every matching socket. Returns 0 or -ENOMEM. */
    int (*broadcast)(sio_adapter_t *a, const sio_bcast_t *b);
    /* The same with an acknowledgement id, answers reported through count/ack. */
    int (*broadcast_with_ack)(sio_adapter_t *a, const sio_bcast_t *b, uint64_t ack_id,
                              sio_bcast_count_fn count, sio_ack_fn ack, void *arg);
    int (*join)(sio_adapter_t *a, sio_socket_t *s, const char *room);
    int (*leave)(sio_adapter_t *a, sio_socket_t *s, const char *room);
    /* Every room but its own; the socket is leaving. */
    void (*leave_all)(sio_adapter_t *a, sio_socket_t *s);
    /* socketsJoin, socketsLeave, disconnectSockets of the sockets `which` matches. */
    int (*sockets_join)(sio_adapter_t *a, const sio_target_t *which, const char *room);
    int (*sockets_leave)(sio_adapter_t *a, const sio_target_t *which, const char *room);
    int (*disconnect_sockets)(sio_adapter_t *a, const sio_target_t *which, bool close);
    /* This node's matching sockets: fn for each. */
    int (*fetch_sockets)(sio_adapter_t *a, const sio_target_t *which,
                         void (*fn)(sio_socket_t *s, void *arg), void *arg);
    /* fetchSockets on every server: as sio_nsp_fetch_all. */
    int (*fetch_all)(sio_adapter_t *a, const sio_target_t *which, uint32_t timeout_ms,
                     sio_fetch_fn done, void *arg);
    /* serverSideEmit to the other servers: as sio_nsp_server_emit. */
    int (*server_emit)(sio_adapter_t *a, const char *event, const char *args_json, size_t len,
                       uint32_t timeout_ms, sio_bcast_ack_fn done, void *arg);
    /* Sockets in `room` on this node (a socket's own room included). */
    size_t (*room_size)(sio_adapter_t *a, const char *room);
    /* Connection state recovery: keep a disconnecting socket's session; find one again
     * for the new socket s, which the caller holds a reference on until done (called
     * once, maybe before this returns; see sio_adapter_take for the rules). */
    void (*persist)(sio_adapter_t *a, sio_socket_t *s);
    void (*restore)(sio_adapter_t *a, sio_socket_t *s, const char *pid, const char *offset,
                    sio_restore_fn done, void *arg);
    /* Drops what recovery no longer needs (older than now_ms - the maximum
     * disconnection). */
    void (*purge)(sio_adapter_t *a, uint64_t now_ms);
    /* Servers the namespace spans, this one included. */
    size_t (*server_count)(sio_adapter_t *a);
    void (*free)(sio_adapter_t *a);
} sio_adapter_ops_t;

struct sio_adapter {
    const sio_adapter_ops_t *ops;
    sio_nsp_t *nsp;
};

/* The in-process adapter of nsp (its state lives in the namespace: rooms, sessions, the
 * recovery log). NULL when out of memory. */
sio_adapter_t *sio_adapter_local_new(sio_nsp_t *nsp);

/* What adapters that span servers do on this node for a peer (nsp is a namespace of
 * this node):
 * - sio_adapter_take: the session of pid and the packets of this node's recovery log
 *   after offset that it missed, taken out for good (NULL when expired, unknown, or
 *   its offset is no longer in the log). No application check: the asker makes it.
 *   *missed (an array, free it) points into the log: use it before going back to the
 *   loop.
 * - sio_adapter_give_back: a taken session returned (its asker refused it); taken over.
 * - sio_nsp_server_event: a serverSideEmit from another server, to this namespace's
 *   handler; returns its answer (a new reference) or NULL. */
sio_session_t *sio_adapter_take(sio_nsp_t *nsp, const char *pid, const char *offset,
                                sio_logged_t ***missed, size_t *nmissed);
void sio_adapter_give_back(sio_nsp_t *nsp, sio_session_t *session);
json_t *sio_nsp_server_event(sio_nsp_t *nsp, const char *event, json_t *args);

/* Rooms as they come and go on this node: `exists` true when `room` got its first
 * member here, false when its last left (a socket's own room is not one of them). An
 * adapter that subscribes per room (Redis's sharded mode) follows them. One per
 * namespace; fn NULL stops it. The room name is borrowed for the call; fn must not make
 * sockets join or leave. */
typedef void (*sio_room_fn)(sio_nsp_t *nsp, const char *room, bool exists, void *arg);
void sio_nsp_on_room(sio_nsp_t *nsp, sio_room_fn fn, void *arg);

/* An adapter that wraps another starts with this. The sio_wrapped_* operations pass the
 * call on to the wrapped one: a wrapper uses them for what it leaves to it. */
typedef struct {
    sio_adapter_t base;
    sio_adapter_t *local;
} sio_wrapper_t;

int sio_wrapped_join(sio_adapter_t *a, sio_socket_t *s, const char *room);
int sio_wrapped_leave(sio_adapter_t *a, sio_socket_t *s, const char *room);
void sio_wrapped_leave_all(sio_adapter_t *a, sio_socket_t *s);
int sio_wrapped_fetch_sockets(sio_adapter_t *a, const sio_target_t *which,
                              void (*fn)(sio_socket_t *s, void *arg), void *arg);
size_t sio_wrapped_room_size(sio_adapter_t *a, const char *room);
void sio_wrapped_persist(sio_adapter_t *a, sio_socket_t *s);
void sio_wrapped_restore(sio_adapter_t *a, sio_socket_t *s, const char *pid, const char *offset,
                         sio_restore_fn done, void *arg);
void sio_wrapped_purge(sio_adapter_t *a, uint64_t now_ms);

/* An adapter that wraps `local` (taking it over: its free frees both), or NULL when out
 * of memory (then local is left as it is). */
typedef sio_adapter_t *(*sio_adapter_wrap_fn)(sio_nsp_t *nsp, sio_adapter_t *local, void *arg);
/* Every namespace of io, those that exist and those made later, gets its in-process
 * adapter wrapped by wrap. Returns 0 or -ENOMEM (some namespaces may be wrapped). */
int sio_server_wrap_adapters(sio_server_t *io, sio_adapter_wrap_fn wrap, void *arg);
/* One of a group of servers: socket ids and recovery pids start with `tag` (a base64url
 * character), so that a socket's server can be told from its id. */
void sio_server_set_id_tag(sio_server_t *io, char tag);
/* One of a group of servers whose recovery logs differ: offsets start with `tag` (at most
 * SIO_OFFSET_TAG_MAX base64url characters; set_id_tag makes it its tag), so that an
 * offset is only ever looked up in the log it came from. */
#define SIO_OFFSET_TAG_MAX 15
void sio_server_set_offset_tag(sio_server_t *io, const char *tag);
/* What an adapter that spans processes needs of the server below it. */
http_server_t *sio_server_http(sio_server_t *io);
struct eio_server *sio_server_eio(sio_server_t *io);

#endif
