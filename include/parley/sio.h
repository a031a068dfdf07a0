/* parley/sio.h — a Socket.IO v5 server as an embeddable C library.
 *
 * The server runs on a libuv loop, attached to Parley's HTTP server (parley/http.h),
 * which it shares with anything else the application serves. Official Socket.IO clients (4.x)
 * connect to it unchanged, over long-polling or WebSocket.
 *
 *   sio_server_t *io;  sio_server_new(http, &cfg, &io);
 *   sio_nsp_t *chat = sio_server_of(io, "/");
 *   sio_nsp_on_connection(chat, on_connect, app);
 *   sio_nsp_on(chat, "message", on_message, app);
 *
 * Payloads are jansson values: an event's arguments arrive as a JSON array (the event
 * name removed); binary arguments arrive as {"_placeholder":true,"num":N} objects with the
 * buffers beside them (sio_bin_t), and are sent the same way. Emitting can also start
 * from pre-encoded JSON text, so an application that already holds the JSON of a
 * message does not pay for a parse and a re-serialisation.
 *
 * Ownership, in one place:
 * - json_t arguments passed TO the library are borrowed: the library takes its own
 *   reference or copies what it keeps. json_t values passed BY the library to a callback
 *   are borrowed for the duration of the call (json_incref to keep them).
 * - sio_bin_t buffers are borrowed both ways, for the duration of the call.
 * - Sockets are owned by the library. A socket pointer is valid until its disconnect
 *   callback returns, unless the application holds a reference (sio_socket_ref), in
 *   which case the memory stays valid (operations on a disconnected socket return
 *   -EPIPE) until the last sio_socket_unref.
 * - Strings returned by the library (ids, names) live as long as their object.
 *
 * Errors: functions return 0 or a negative errno value. */
#ifndef PARLEY_SIO_H
#define PARLEY_SIO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parley/eio.h"
#include "parley/http.h"

#pragma GCC visibility push(default)

typedef struct sio_server sio_server_t;
typedef struct sio_nsp sio_nsp_t;
typedef struct sio_socket sio_socket_t;

/* A binary argument. Borrowed (see above). */
typedef struct {
    const uint8_t *data;
    size_t len;
} sio_bin_t;

/* An event's payload: args is a JSON array; placeholder objects in it refer to bins. */
typedef struct {
    json_t *args;
    const sio_bin_t *bins;
    size_t nbins;
} sio_payload_t;

/* ---- server ---- */

/* The Socket.IO parsers: the default one (a text packet with JSON, binary attachments
 * after it) and socket.io-msgpack-parser's (the whole packet one MessagePack map in one
 * binary message, binary values inside it). */
typedef enum {
    SIO_PARSER_JSON = 0,
    SIO_PARSER_MSGPACK = 1,
} sio_parser_kind_t;

typedef struct {
    const char *path;                /* "/socket.io/" */
    size_t max_payload;              /* bytes (1000000) */
    size_t max_attachments;          /* binary attachments per packet (10) */
    const char *const *cors_origins; /* see eio_config_t; NULL: none */
    size_t cors_origin_count;
    const char *sid_suffix; /* see eio_config_t */
    eio_limits_t limits;    /* Origin check and per-address limits (parley/eio.h) */
    /* Bytes of packets the recovery log of a namespace keeps at most (oldest dropped
     * first; a client whose missed packets are gone gets a fresh session). (64 MiB) */
    size_t recovery_max_bytes;
    /* Asked before a session is restored, once the middlewares ran (or, with
     * recovery_skip_middlewares, before anything): `s` is the new socket (its slots as
     * the middlewares left them), `saved_data` the socket.data kept with the session.
     * false: the client gets a fresh session and the kept one stays for its owner. NULL
     * allows every restore (socket.io's behaviour: the pid alone is the credential). */
    bool (*recovery_allow)(sio_socket_t *s, json_t *saved_data, void *arg);
    void *recovery_arg;
    /* Slow consumers: a connection with more than 16 times this many bytes waiting to
     * be written is closed ("transport error"). (262144) Volatile packets are dropped
     * earlier, whenever the transport cannot take them at once (no poll held, or 64 KiB
     * already waiting on the WebSocket). */
    size_t backpressure_bytes;
    size_t ws_deflate_threshold;         /* bytes (1024): see ws_deflate */
    size_t http_compression_threshold;   /* see eio_config_t (1024; 0: never) */
    uint32_t ping_interval;              /* ms (25000) */
    uint32_t ping_timeout;               /* ms (20000) */
    uint32_t connect_timeout;            /* ms a connection may stay without a namespace (45000) */
    uint32_t recovery_max_disconnection; /* ms (120000) */
    /* How packets are written on the wire, for every connection of the server (a client
     * must use the same: socket.io-msgpack-parser for SIO_PARSER_MSGPACK). */
    sio_parser_kind_t parser;
    bool cookie;
    /* Connection state recovery (socket.io 4.6+). */
    bool recovery;
    bool recovery_skip_middlewares; /* true, as socket.io */
    /* Memory per connection: when set, handshake headers, query, url and address are not
     * kept (every handshake shows empty objects and "") and a socket's auth object is released once
     * its connection handlers ran (middleware and handlers see it; later it is empty). socket.io
     * keeps them all, hence off by default; saves ~2 KB per connection. */
    bool lean_handshake;
    /* permessage-deflate on WebSockets, off by default: see eio_config_t (parley/eio.h). */
    bool ws_deflate;
    bool ws_deflate_client_context;
    /* Accept socket.io 2 clients (Engine.IO v3; socket.io's allowEIO3). They join "/" as
     * soon as they connect, without a CONNECT packet and so without an auth payload (their
     * credentials come in the handshake query, kept for them even with lean_handshake); a
     * CONNECT to another namespace carries its query as the auth object. Their CONNECT
     * reply has no payload and a CONNECT_ERROR carries the error's data, else its message,
     * as the reference does. Socket ids stay Parley's own (socket.io gives such clients
     * their Engine.IO id), and connection state recovery is not offered to them. */
    bool allow_eio3;
} sio_config_t;

void sio_config_defaults(sio_config_t *cfg);

/* Creates the server on http's loop and registers its path. The config is copied. */
int sio_server_new(http_server_t *http, const sio_config_t *cfg, sio_server_t **out);
/* Disconnects every socket ("server shutting down"), closes every connection, and frees
 * the server once the loop has run its close callbacks. */
void sio_server_close(sio_server_t *io);
/* The start of a drain (before sio_server_close): every client's transport is closed so
 * that the official clients reconnect (eio_server_drain: WebSocket close 1001, the
 * Engine.IO close packet to a poll, after the packets queued for it). No DISCONNECT
 * packet is sent: socket.io-client does not reconnect after one. Sockets disconnect here
 * with "server shutting down". No new connections are taken. */
void sio_server_drain(sio_server_t *io);
/* Whether every Engine.IO session is gone (a drained polling session is gone once its
 * client fetched what was queued for it). */
bool sio_server_drained(const sio_server_t *io);
/* The namespace `name`, created on first use ("/" always exists). NULL when out of
 * memory or when the name is not a valid namespace. */
sio_nsp_t *sio_server_of(sio_server_t *io, const char *name);
/* The namespace `name` if it exists (never creates one), else NULL. */
sio_nsp_t *sio_server_find(sio_server_t *io, const char *name);

/* Dynamic namespaces: when a client asks for a namespace that does not exist, each
 * matcher is asked in order; the first that returns true creates it (and `setup` is
 * called on the new namespace so handlers can be attached). */
typedef bool (*sio_nsp_match_fn)(const char *name, json_t *auth, void *arg);
typedef void (*sio_nsp_setup_fn)(sio_nsp_t *nsp, void *arg);
int sio_server_of_match(sio_server_t *io, sio_nsp_match_fn match, sio_nsp_setup_fn setup,
                        void *arg);

/* Counters for metrics and tests: the state now, and totals since the start. */
typedef struct {
    size_t clients;                          /* Engine.IO connections */
    size_t sockets;                          /* connected sockets, all namespaces */
    size_t recovery_sessions;                /* disconnected sessions kept for recovery */
    size_t recovery_packets;                 /* packets kept for recovery */
    uint64_t packets_received, packets_sent; /* Socket.IO packets, any kind */
    uint64_t deliveries;       /* packets queued to a socket by an emit or broadcast */
    uint64_t volatile_dropped; /* volatile packets a socket could not take at once */
    uint64_t slow_clients_cut; /* clients closed for what they left unread */
} sio_stats_t;
void sio_server_stats(const sio_server_t *io, sio_stats_t *out);

/* Every namespace that exists now: fn for each ("/" first is not promised). fn must not
 * create or close namespaces. */
void sio_server_each_nsp(sio_server_t *io, void (*fn)(sio_nsp_t *nsp, void *arg), void *arg);

/* A monitor sees every socket of the server, in every namespace, as socket.io's
 * admin instrumentation does through its listeners: for dashboards and audits. Each
 * callback may be NULL. The callbacks run in the middle of the operation they report:
 * they must not emit, join, leave or disconnect anything (copy what they need and act
 * later, from the loop). Everything passed is borrowed for the call.
 * - connect: the socket is connected and in its own room, before the namespace's
 *   connection handlers run (so their joins are reported after it);
 * - disconnect: before the namespace's disconnect handlers, while the socket is still in
 *   its rooms; leaves for each of its rooms (its own not included) follow;
 * - join, leave: a socket of this node entered or left a room (its own room is never
 *   reported; a join of a room it is in already is not either);
 * - event_in: an EVENT from a client, before its handler: `packet` is the array as
 *   received, the event's name first (binary arguments as placeholders);
 * - event_out: an event emitted to that socket alone (sio_socket_emit*, with or without
 *   an ack), as socket.io's onAnyOutgoing: broadcasts and acks are not reported;
 * - transport: the client of these sockets moved to another transport (an upgrade).
 * One monitor per server; NULL stops it. While none is set, the sites that report
 * cost a pointer test. */
typedef struct {
    void (*connect)(sio_socket_t *s, void *arg);
    void (*disconnect)(sio_socket_t *s, const char *reason, void *arg);
    void (*join)(sio_socket_t *s, const char *room, void *arg);
    void (*leave)(sio_socket_t *s, const char *room, void *arg);
    void (*event_in)(sio_socket_t *s, json_t *packet, void *arg);
    void (*event_out)(sio_socket_t *s, const char *event, const char *args_json, size_t len,
                      void *arg);
    void (*transport)(sio_socket_t *s, const char *transport, void *arg);
} sio_monitor_t;
/* Sets (the table is copied) or, with NULL, removes the server's monitor. */
void sio_server_monitor(sio_server_t *io, const sio_monitor_t *m, void *arg);

/* ---- namespaces ---- */

const char *sio_nsp_name(const sio_nsp_t *nsp);
sio_server_t *sio_nsp_server(const sio_nsp_t *nsp);

/* Middleware, run in registration order when a client connects to the namespace. Call
 * sio_next(ctx, NULL) to go on or sio_next(ctx, err) to refuse: err is
 * {"message": ..., "data": ...} (borrowed) and becomes the client's connect_error.
 * sio_next may be called later (asynchronous middleware); the socket must not be used
 * for anything else before it is. */
typedef struct sio_next_ctx sio_next_ctx_t;
typedef void (*sio_middleware_fn)(sio_socket_t *s, sio_next_ctx_t *ctx, void *arg);
int sio_nsp_use(sio_nsp_t *nsp, sio_middleware_fn fn, void *arg);
void sio_next(sio_next_ctx_t *ctx, json_t *err);
/* Convenience: an error object {"message": message, "data": data (borrowed, may be NULL)}
 * to pass to sio_next; the caller owns it (json_decref after sio_next). */
json_t *sio_error_new(const char *message, json_t *data);

/* Lifecycle. */
typedef void (*sio_connection_fn)(sio_socket_t *s, void *arg);
typedef void (*sio_disconnect_fn)(sio_socket_t *s, const char *reason, void *arg);
int sio_nsp_on_connection(sio_nsp_t *nsp, sio_connection_fn fn, void *arg);
/* Called while the socket is still in its rooms ("disconnecting"), then it leaves them. */
int sio_nsp_on_disconnect(sio_nsp_t *nsp, sio_disconnect_fn fn, void *arg);

/* Events from clients. ack_id >= 0 when the client wants an acknowledgement: answer
 * with sio_socket_ack (now or later). `event` is the event name (a number-named event
 * arrives as its decimal text). The socket stays valid for the whole call, even when
 * the handler disconnects it. */
typedef void (*sio_event_fn)(sio_socket_t *s, const char *event, const sio_payload_t *p,
                             int64_t ack_id, void *arg);
int sio_nsp_on(sio_nsp_t *nsp, const char *event, sio_event_fn fn, void *arg);
/* Every event that has no handler of its own. */
int sio_nsp_on_any(sio_nsp_t *nsp, sio_event_fn fn, void *arg);

/* ---- broadcasting ---- */

enum {
    SIO_VOLATILE = 1 << 0, /* drop for sockets whose connection cannot take it now */
    SIO_LOCAL = 1 << 1,    /* only this node (matters once adapters span nodes) */
    /* Not kept for connection state recovery: a reply that the client asks for again
     * after it recovers (a history page), so one chatty socket cannot fill the log. */
    SIO_NO_RECOVERY = 1 << 2,
};

/* Who gets a broadcast: the sockets in any of `rooms` (all of the namespace when
 * nrooms == 0), minus those in any of `except`. Room names are borrowed. */
typedef struct {
    const char *const *rooms;
    size_t nrooms;
    const char *const *except;
    size_t nexcept;
    unsigned flags;
} sio_target_t;

int sio_nsp_emit(sio_nsp_t *nsp, const sio_target_t *to, const char *event, const sio_payload_t *p);
/* Pre-encoded: `args_json` is the JSON text of the argument array, e.g. "[1,{\"a\":2}]"
 * (not validated; it must be valid JSON). */
int sio_nsp_emit_json(sio_nsp_t *nsp, const sio_target_t *to, const char *event,
                      const char *args_json, size_t len);
/* Every namespace. */
int sio_server_emit(sio_server_t *io, const char *event, const sio_payload_t *p);

/* Broadcast with acknowledgements (socket.io's timeout(ms).emitWithAck on a room):
 * done(err, responses) is called once: err 0 when every recipient answered, -EPIPE as
 * soon as every recipient answered or disconnected and at least one disconnected,
 * -ETIMEDOUT when timeout_ms (0: none) passed first. responses is a JSON array with one
 * entry per answering socket: the array of its ack arguments. Borrowed during the call. */
typedef void (*sio_bcast_ack_fn)(int err, json_t *responses, void *arg);
int sio_nsp_emit_with_ack(sio_nsp_t *nsp, const sio_target_t *to, uint32_t timeout_ms,
                          const char *event, const sio_payload_t *p, sio_bcast_ack_fn done,
                          void *arg);

/* Room operations for many sockets at once (socketsJoin / socketsLeave /
 * disconnectSockets of socket.io). */
int sio_nsp_sockets_join(sio_nsp_t *nsp, const sio_target_t *which, const char *room);
int sio_nsp_sockets_leave(sio_nsp_t *nsp, const sio_target_t *which, const char *room);
int sio_nsp_disconnect_sockets(sio_nsp_t *nsp, const sio_target_t *which, bool close);
/* fetchSockets of this node: calls fn for each matching socket. */
int sio_nsp_fetch_sockets(sio_nsp_t *nsp, const sio_target_t *which,
                          void (*fn)(sio_socket_t *s, void *arg), void *arg);
/* fetchSockets of every server the namespace spans (socket.io's RemoteSocket):
 * done(err, sockets) once, maybe before this returns; sockets is a JSON array of
 * sio_socket_describe objects, borrowed during the call. err -ETIMEDOUT when a server
 * did not answer within timeout_ms (0: no timeout; the array has those that did). */
typedef void (*sio_fetch_fn)(int err, json_t *sockets, void *arg);
int sio_nsp_fetch_all(sio_nsp_t *nsp, const sio_target_t *which, uint32_t timeout_ms,
                      sio_fetch_fn done, void *arg);

/* serverSideEmit: the event goes to the server-event handler of this namespace on every
 * other server (not this one, as socket.io). With done, each handler's answer is
 * collected: done(err, responses) as sio_nsp_emit_with_ack's, one entry per server that
 * answered. Binary attachments do not travel between servers (-EINVAL). */
int sio_nsp_server_emit(sio_nsp_t *nsp, const char *event, const sio_payload_t *p,
                        uint32_t timeout_ms, sio_bcast_ack_fn done, void *arg);
/* The handler of events from other servers: args is the JSON array of arguments
 * (borrowed); returns the answer sent back when the emitter asked for one (a new
 * reference; NULL: no answer from this server). */
typedef json_t *(*sio_server_event_fn)(sio_nsp_t *nsp, const char *event, json_t *args, void *arg);
int sio_nsp_on_server_event(sio_nsp_t *nsp, sio_server_event_fn fn, void *arg);
/* Observers of every broadcast delivered on this node (from this server or, with an
 * adapter that spans servers, from another): the event, the JSON text of its arguments
 * (binary attachments not shown) and who it is for. For transports outside Socket.IO
 * that follow the same rooms. Called after the sockets were served; everything is
 * borrowed for the call. */
typedef void (*sio_broadcast_fn)(sio_nsp_t *nsp, const char *event, const char *args_json,
                                 size_t len, const sio_target_t *to, void *arg);
int sio_nsp_on_broadcast(sio_nsp_t *nsp, sio_broadcast_fn fn, void *arg);
/* Servers this namespace spans, this one included (1 without a cluster adapter). */
size_t sio_nsp_server_count(sio_nsp_t *nsp);

/* Number of sockets in a room of this node (0 when the room does not exist). */
size_t sio_nsp_room_size(sio_nsp_t *nsp, const char *room);
size_t sio_nsp_socket_count(const sio_nsp_t *nsp);
/* The connected socket with this id on this node, or NULL. */
sio_socket_t *sio_nsp_find_socket(sio_nsp_t *nsp, const char *id);

/* ---- sockets ---- */

/* A socket id is SIO_SOCKET_ID_LEN base64url characters (120 random bits), as socket.io's:
 * peers that tell a socket's own room by its length (the Redis adapter's sharded mode)
 * see one. */
#define SIO_SOCKET_ID_LEN 20
const char *sio_socket_id(const sio_socket_t *s);
sio_nsp_t *sio_socket_nsp(const sio_socket_t *s);
bool sio_socket_connected(const sio_socket_t *s);
/* Its Engine.IO session id (shared by the client's sockets of every namespace) and
 * current transport ("polling" or "websocket"). Valid while the socket is connected;
 * "" after. */
const char *sio_socket_client_id(const sio_socket_t *s);
const char *sio_socket_transport(const sio_socket_t *s);
/* True when this socket was restored by connection state recovery. */
bool sio_socket_recovered(const sio_socket_t *s);
/* The socket as fetchSockets shows it on any server (socket.io's RemoteSocket): {id,
 * handshake: {headers, time, address, xdomain, secure, issued, url, query, auth}, rooms,
 * data}. A new reference, or NULL when out of memory. */
json_t *sio_socket_describe(const sio_socket_t *s);
void sio_socket_ref(sio_socket_t *s);
void sio_socket_unref(sio_socket_t *s);

/* Handshake data: the CONNECT packet's auth object (empty object when none) and the
 * Engine.IO handshake request, returned by value (a socket keeps only its auth; the rest
 * is its connection's, shared by its sockets of every namespace). What the fields point
 * at is borrowed; valid while the socket is. */
typedef struct {
    json_t *auth;
    json_t *headers; /* lower-case names → string values */
    json_t *query;   /* raw (not percent-decoded) query parameters → strings */
    const char *address;
    const char *url;
    int64_t time_ms; /* when the Engine.IO connection opened (Unix ms) */
    bool secure;
    uint8_t protocol; /* the client's Engine.IO revision: 4, or 3 (allow_eio3) */
} sio_handshake_t;
sio_handshake_t sio_socket_handshake(const sio_socket_t *s);

/* Application data slots: SIO_DATA_SLOTS pointers per socket, numbered from 0, for the
 * application's own use (never touched by the library). One, as every connection pays
 * for each: an application with more to keep points the slot at its own struct. A slot
 * number out of range reads NULL and is not set (sio_nsp_slot_free: -EINVAL). */
#define SIO_DATA_SLOTS 1
void *sio_socket_get(const sio_socket_t *s, unsigned slot);
void sio_socket_set(sio_socket_t *s, unsigned slot, void *value);
/* fn(value) runs for a slot of this namespace's sockets that is still set when the
 * socket leaves: after the disconnect handlers, or when it never got connected (a later
 * middleware refused it, its client left during the middleware, out of memory). So a
 * middleware may set a slot and rely on it being released. */
int sio_nsp_slot_free(sio_nsp_t *nsp, unsigned slot, void (*fn)(void *value));
/* socket.data: a JSON object kept with the socket and restored with it by connection
 * state recovery; made on first use (NULL only when out of memory). Borrowed. */
json_t *sio_socket_data(sio_socket_t *s);

int sio_socket_join(sio_socket_t *s, const char *room);
int sio_socket_leave(sio_socket_t *s, const char *room);
bool sio_socket_in(const sio_socket_t *s, const char *room);
/* Rooms joined, its own room not counted. */
size_t sio_socket_room_count(const sio_socket_t *s);
/* Its rooms (its own id first). Calls fn for each. */
void sio_socket_rooms(const sio_socket_t *s, void (*fn)(const char *room, void *arg), void *arg);

/* Emit to this socket only. flags: SIO_VOLATILE, SIO_NO_RECOVERY. */
int sio_socket_emit(sio_socket_t *s, const char *event, const sio_payload_t *p, unsigned flags);
int sio_socket_emit_json(sio_socket_t *s, const char *event, const char *args_json, size_t len,
                         unsigned flags);
/* With an acknowledgement: cb(s, err, payload, arg) once: err 0 with the client's
 * answer, -ETIMEDOUT after timeout_ms (0: no timeout), or -EPIPE if the socket
 * disconnected first (payload NULL then). */
typedef void (*sio_ack_fn)(sio_socket_t *s, int err, const sio_payload_t *p, void *arg);
int sio_socket_emit_with_ack(sio_socket_t *s, uint32_t timeout_ms, const char *event,
                             const sio_payload_t *p, sio_ack_fn cb, void *arg);
/* socket.broadcast.emit: everyone in `to` (the namespace when NULL) except this socket. */
int sio_socket_broadcast(sio_socket_t *s, const sio_target_t *to, const char *event,
                         const sio_payload_t *p);

/* Answers the client's ack request `ack_id` (from an event callback). At most once per
 * id; -EPIPE when the socket is gone. */
int sio_socket_ack(sio_socket_t *s, int64_t ack_id, const sio_payload_t *p);
int sio_socket_ack_json(sio_socket_t *s, int64_t ack_id, const char *args_json, size_t len);

/* Disconnects the socket ("server namespace disconnect"); close also closes the
 * underlying connection (all its namespaces). */
void sio_socket_disconnect(sio_socket_t *s, bool close);

/* Builds a placeholder object for binary argument `num` (new reference). */
json_t *sio_placeholder(size_t num);

#pragma GCC visibility pop

#endif
