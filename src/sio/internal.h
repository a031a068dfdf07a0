/* sio/internal.h — the structures the Socket.IO files share.
 *
 *   server.c   the server, its configuration and namespaces, the recovery purge
 *   client.c   clients (one per Engine.IO session): decoding, dispatch, connect timeout
 *   nsp.c      namespaces: handlers, middleware and the connect sequence
 *   socket.c   sockets: rooms, emit, acknowledgements, disconnect
 *   emit.c     encoding an event once into Engine.IO messages (the json parser's
 *              side of parser.h; parser_msgpack.c the msgpack one)
 *   adapter.c  the in-process adapter: rooms, broadcast, recovery log
 *
 * Rooms are indexed both ways: a room holds an array of its sockets (its first member
 * inline, sio_sockets_t), and each socket an array of {room, position in that room};
 * leaving swaps the last member into the hole and fixes that member's position, so join,
 * leave and disconnect cost O(rooms of the socket). */
#ifndef PARLEY_SIO_INTERNAL_H
#define PARLEY_SIO_INTERNAL_H

#include <errno.h>
#include <stdlib.h>
#include <uv.h>

#include "eio/server.h"
#include "parley/sio.h"
#include "sio/adapter.h"
#include "sio/packet.h"
#include "sio/parser.h"
#include "util/map.h"
#include "util/rand.h"

typedef struct sio_client sio_client_t;
typedef struct sio_room sio_room_t;

typedef struct {
    sio_event_fn fn;
    void *arg;
    char name[]; /* the map key */
} sio_handler_t;

typedef struct {
    sio_connection_fn fn;
    void *arg;
} sio_conn_cb_t;

typedef struct {
    sio_disconnect_fn fn;
    void *arg;
} sio_disc_cb_t;

typedef struct {
    sio_middleware_fn fn;
    void *arg;
} sio_mw_t;

/* An array of sockets that holds its first one inline: most rooms (a user's own) and
 * most clients (one namespace) have exactly one, and a heap block for a single pointer
 * takes 32 bytes of glibc's heap. Inline while cap <= 1; a heap array, once made, stays
 * until sio_sockets_free (a list that shrinks back to one keeps it). */
typedef struct {
    union {
        sio_socket_t *one;   /* cap <= 1 */
        sio_socket_t **many; /* cap > 1 */
    } at;
    uint32_t count, cap;
} sio_sockets_t;

static inline sio_socket_t **sio_sockets_items(sio_sockets_t *l) {
    return l->cap > 1 ? l->at.many : &l->at.one;
}

/* Appends s. 0, or -ENOMEM with l unchanged. */
static inline int sio_sockets_push(sio_sockets_t *l, sio_socket_t *s) {
    if (l->count == l->cap && l->cap > 0) {
        uint32_t cap = l->cap * 2;
        sio_socket_t **m =
            l->cap > 1 ? realloc(l->at.many, cap * sizeof *m) : malloc(cap * sizeof *m);
        if (!m)
            return -ENOMEM;
        if (l->cap == 1)
            m[0] = l->at.one;
        l->at.many = m;
        l->cap = cap;
    }
    if (l->cap == 0)
        l->cap = 1;
    sio_sockets_items(l)[l->count++] = s;
    return 0;
}

static inline void sio_sockets_free(sio_sockets_t *l) {
    if (l->cap > 1)
        free(l->at.many);
    *l = (sio_sockets_t){0};
}

struct sio_room {
    sio_sockets_t members; /* cap > 0 once it has had a member */
    char name[];           /* the map key */
};

typedef struct {
    sio_room_t *room;
    uint32_t pos; /* index in room->members */
} sio_membership_t;

/* A packet kept for connection state recovery. */
struct sio_logged {
    uint64_t offset;
    uint64_t time_ms;
    eio_msg_t **msgs; /* the text packet, then its binary attachments */
    size_t nmsgs;
    char **rooms, **except;
    size_t nrooms, nexcept;
    size_t bytes; /* what it holds, counted against recovery_max_bytes */
};

/* A disconnected socket kept for recovery. */
struct sio_session {
    char pid[RAND_ID_SIZE]; /* map key */
    char sid[RAND_ID_SIZE];
    char **rooms;
    size_t nrooms;
    json_t *data;
    uint64_t disconnected_ms;
};

typedef struct {
    sio_broadcast_fn fn;
    void *arg;
} sio_observer_t;

struct sio_nsp {
    sio_server_t *io;
    char *name;
    map_t handlers; /* event name → sio_handler_t */
    sio_handler_t *any;
    sio_mw_t *mws;
    size_t nmws;
    sio_conn_cb_t *on_conn;
    size_t non_conn;
    sio_disc_cb_t *on_disc;
    size_t non_disc;
    void (*slot_free[SIO_DATA_SLOTS])(void *value);
    sio_adapter_t *adapter; /* the fan-out seam (adapter.h) */
    sio_observer_t *observers;
    size_t nobservers;
    sio_server_event_fn server_event; /* serverSideEmit from other servers */
    void *server_event_arg;
    /* Sockets: an array with each socket's index, for O(1) removal. */
    sio_socket_t **sockets;
    uint32_t nsockets, capsockets;
    map_t by_id; /* socket id → socket */
    /* The in-process adapter's state. */
    map_t rooms;         /* name → sio_room_t */
    sio_room_fn room_fn; /* told of rooms made and dropped (adapter.h) */
    void *room_arg;
    uint64_t next_ack_id;
    /* Recovery. */
    map_t sessions; /* pid → sio_session_t */
    sio_logged_t *log;
    size_t log_head, log_len, log_cap; /* ring of log_len entries from log_head */
    size_t log_bytes;                  /* what the entries hold (recovery_max_bytes) */
    uint64_t next_offset;
};

typedef struct sio_pending_ack {
    struct sio_pending_ack *next;
    sio_socket_t *socket;
    uint64_t id;
    sio_ack_fn cb;
    void *arg;
    bool has_timer;
    uv_timer_t timer;
} sio_pending_ack_t;

/* Ordered so that an idle socket is 104 bytes: no holes, and the recovery id only when
 * recovery is on (the server's cfg.recovery, fixed for its life). What a broadcast reads
 * of each recipient (client, epoch, connected) is together, in one cache line mostly. */
struct sio_socket {
    uint32_t refs;
    uint32_t nsp_pos; /* index in nsp->sockets */
    uint32_t nrooms, caprooms;
    sio_nsp_t *nsp;
    sio_membership_t *rooms;
    sio_pending_ack_t *acks;
    void *slots[SIO_DATA_SLOTS];
    json_t *data;
    json_t *auth; /* the CONNECT's; the rest of the handshake is its client's */
    sio_client_t *client;
    uint64_t epoch; /* broadcast de-duplication */
    bool connected;
    bool recovered;
    bool connecting; /* middleware still running */
    char id[SIO_SOCKET_ID_LEN + 1];
    char pid[]; /* RAND_ID_SIZE bytes with recovery on, else none (sio_socket_new) */
};

/* Its memory (and the handshake data in it) lives while the Engine.IO session is open or
 * a socket of it exists: refs counts the session's and one per socket. Ordered without
 * holes (120 bytes). */
struct sio_client {
    sio_server_t *io;
    eio_session_t *eio; /* NULL once the session has closed */
    sio_decoder_t dec;
    sio_sockets_t sockets; /* one per namespace joined (or joining) */
    json_t *headers, *query;
    char *url;
    char *address; /* NULL when unknown (lean_handshake) */
    int64_t time_ms;
    uint64_t connect_deadline;
    sio_client_t *wait_prev, *wait_next; /* waiting for a first namespace */
    uint32_t refs;
    uint8_t protocol; /* Engine.IO revision (eio_session_protocol) */
    bool waiting;
    bool closing;
};

typedef struct {
    sio_nsp_match_fn match;
    sio_nsp_setup_fn setup;
    void *arg;
} sio_matcher_t;

struct sio_server {
    sio_config_t cfg;
    const sio_parser_t *parser; /* cfg.parser's table: every packet in and out */
    char *path;
    http_server_t *http;
    uv_loop_t *loop;
    eio_server_t *eio;
    map_t nsps;
    json_t *empty; /* shared empty object (lean_handshake) */
    sio_matcher_t *matchers;
    size_t nmatchers;
    sio_adapter_wrap_fn wrap;                /* applied to each namespace's in-process adapter */
    char id_tag;                             /* first character of socket ids and pids, or '\0' */
    char offset_tag[SIO_OFFSET_TAG_MAX + 1]; /* before every recovery offset, or "" */
    sio_stats_t totals;                      /* the counters of sio_stats_t */
    sio_monitor_t monitor;                   /* all NULL while none is set */
    void *monitor_arg;
    void *wrap_arg;
    sio_client_t *wait_head, *wait_tail;
    uv_timer_t connect_timer;
    uv_timer_t purge_timer;
    uint64_t epoch;
    size_t nclients, nsockets;
    bool closing;
};

/* A client with more than this many times backpressure_bytes waiting is closed. */
#define SIO_SLOW_CLIENT_FACTOR 16

/* client.c */
/* The Engine.IO callbacks through which sessions become clients. */
void sio_client_callbacks(eio_callbacks_t *cb);
void sio_client_send(sio_client_t *c, eio_msg_t *const *msgs, size_t n);
/* sio_client_send in two steps, for a fan-out: queueing never calls back (nothing is
 * closed, eio_session_send), so every recipient can be queued on before any of them
 * goes; false means that c is to be closed with sio_client_queue_failed afterwards (its
 * send failed, or it is a slow consumer). */
bool sio_client_queue(sio_client_t *c, eio_msg_t *const *msgs, size_t n);
void sio_client_queue_failed(sio_client_t *c);
void sio_client_close(sio_client_t *c, const char *reason);
int sio_client_add_socket(sio_client_t *c, sio_socket_t *s);
void sio_client_remove_socket(sio_client_t *c, sio_socket_t *s);
void sio_client_stop_waiting(sio_client_t *c);
void sio_client_ref(sio_client_t *c);
void sio_client_unref(sio_client_t *c);

/* nsp.c */
sio_nsp_t *sio_nsp_find_or_match(sio_server_t *io, const char *name, json_t *auth);
void sio_nsp_connect(sio_nsp_t *nsp, sio_client_t *c, json_t *auth);
void sio_nsp_dispatch(sio_socket_t *s, sio_packet_t *p);
void sio_nsp_free(sio_nsp_t *nsp);

/* socket.c */
sio_socket_t *sio_socket_new(sio_nsp_t *nsp, sio_client_t *c, json_t *auth);
/* Finishes a connect: joins its own room, sends CONNECT (and missed packets). */
int sio_socket_establish(sio_socket_t *s, const sio_session_t *restored);
/* Whether the application lets s take over session ss (sio_config_t.recovery_allow). */
bool sio_recovery_allowed(sio_socket_t *s, const sio_session_t *ss);
/* Drops a socket that never connected (middleware refused, client gone). */
void sio_socket_discard(sio_socket_t *s);
/* Tells handlers, leaves rooms, persists for recovery when the reason allows it. */
void sio_socket_onclose(sio_socket_t *s, const char *reason);
void sio_socket_on_ack(sio_socket_t *s, sio_packet_t *p);
/* Registers a pending acknowledgement `id` (timeout_ms 0: none). */
int sio_socket_expect_ack(sio_socket_t *s, uint64_t id, uint32_t timeout_ms, sio_ack_fn cb,
                          void *arg);
/* Sends already-encoded messages to this socket (volatile: may drop). */
void sio_socket_send(sio_socket_t *s, eio_msg_t *const *msgs, size_t n, bool is_volatile);

/* emit.c */
/* Encodes an EVENT (id < 0: no ack) or ACK packet for nsp with the server's parser
 * (sio_event_out_t says what each argument is): with the json parser the text Engine.IO
 * message, then one binary message per attachment; with msgpack one binary message.
 * Returns the number of messages (>= 1) in msgs (release with sio_msgs_release),
 * -EINVAL or -ENOMEM. */
int sio_encode_event(const sio_nsp_t *nsp, sio_packet_type_t type, int64_t id, const char *event,
                     const char *args_json, size_t args_len, const sio_bin_t *bins, size_t nbins,
                     const char *offset, eio_msg_t ***msgs);
/* Encodes a CONNECT, DISCONNECT or CONNECT_ERROR (data borrowed, NULL for none) with
 * io's parser into one new message *msg. 0, -EINVAL or -ENOMEM. */
int sio_encode_control(const sio_server_t *io, sio_packet_type_t type, const char *nsp,
                       const json_t *data, eio_msg_t **msg);
/* Compact JSON text of a value (any type) appended to out. */
int sio_json_dump(json_t *value, buf_t *out);
/* The same for an argument array; -EINVAL when args is not an array. */
int sio_args_dump(json_t *args, buf_t *out);
void sio_msgs_release(eio_msg_t **msgs, size_t n);

/* adapter.c: what the rest of the Socket.IO files use of the in-process adapter beside
 * its operations table. */
sio_room_t *sio_room_get(sio_nsp_t *nsp, const char *name, bool create);
/* Whether s is in r (NULL: no): one hash lookup found r, then pointers are compared. */
bool sio_adapter_member(const sio_socket_t *s, const sio_room_t *r);
void sio_session_free(sio_session_t *session);

#endif
