/* chat/service_internal.h — what the chat service's files share; private to
 * src/chat/service.c (events, limits, lifecycle, posts) and src/chat/members.c
 * (membership: myRooms, joinRoom/joinRooms, leaveRoom's forget, the membership reads).
 *
 * Ownership: the service owns its chat_conn_t per socket (a socket slot) and each
 * pending_t from service_pending_new until service_pending_free; every piece of store
 * work holds one, which counts it for the drain. Loop thread only. */
#ifndef PARLEY_CHAT_SERVICE_INTERNAL_H
#define PARLEY_CHAT_SERVICE_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "chat/owed.h"
#include "chat/presence.h"
#include "chat/service.h"
#include "util/map.h"

#define SLOT_CONN 0
#define USER_ROOM_PREFIX CHAT_USER_ROOM_PREFIX
#define USER_ROOM_SIZE (sizeof USER_ROOM_PREFIX + CHAT_USER_ID_MAX)

/* A token bucket (rate limits). */
typedef struct {
    double tokens;
    uint64_t refilled_ms;
} bucket_t;

/* An event handler behind the gate (gate_event). */
typedef struct {
    chat_service_t *svc;
    sio_event_fn fn;
} gate_t;

enum {
    GATE_JOIN,
    GATE_SEND,
    GATE_TYPING,
    GATE_READ,
    GATE_LEAVE,
    GATE_DIRECT,
    GATE_HISTORY,
    GATE_JOIN_ROOMS,
    GATE_UNKNOWN,
    GATES
};
_Static_assert(GATES == CHAT_EVENT_KINDS, "one counter per gate");

struct chat_service {
    sio_server_t *io;
    sio_nsp_t *nsp;
    chat_store_t *store;
    const chat_auth_t *auth;
    chat_config_t cfg;
    chat_presence_t *presence;
    parley_worker_t *worker; /* with workers: this one (NULL alone) */
    chat_notify_t *notify;   /* --notify-url: offline members are owed messages (borrowed) */
    chat_owed_t *owed;       /* with the notifier: the rooms' notification windows */
    map_t buckets;           /* user id → user_bucket_t, for chat_service_post */
    chat_observer_fn observer;
    void *observer_arg;
    gate_t gates[GATES];
    chat_service_stats_t stats;
    /* chat_service_drain: no new work; drained(drained_arg) once inflight is 0. */
    size_t inflight; /* store work asked for and not answered (pending_t, post_t) */
    void (*drained)(void *arg);
    void *drained_arg;
    bool draining;
    bool stopping;
};

/* Per connection, made by the auth middleware (which runs again when a connection is
 * recovered: the token is checked each time) and kept in a socket slot. One allocation:
 * the user's id and name follow the struct. */
typedef struct {
    chat_service_t *svc;
    const char *username;    /* points into user_id's buffer */
    json_t *rooms;           /* the token's room claim (chat_auth_verify), or NULL */
    bucket_t bucket;         /* messages */
    bucket_t events;         /* every event */
    uint64_t flood_since_ms; /* start of the window refusals are counted in */
    size_t refused;          /* events refused in that window */
    char user_id[];
} chat_conn_t;

typedef struct join_batch join_batch_t;

/* Work waiting for the store: the socket (referenced), the ack id and the room. */
typedef struct {
    chat_service_t *svc;
    sio_socket_t *s;
    int64_t ack;
    uint64_t since_ns;   /* uv_hrtime() when the work was asked for */
    json_t *ids;         /* markRead: the messageIds as sent (a reference), for messagesRead */
    json_t *claim;       /* myRooms: the room claim to list by (a reference), or NULL */
    join_batch_t *batch; /* a join of joinRooms: the batch it answers into */
    size_t index;        /* ... at this index */
    bool to_user;        /* myRooms: to every connection of the user, not just s */
    char room[CHAT_ROOM_ID_MAX + 1];
} pending_t;

/* The socket's chat state (set by the auth middleware; NULL after its disconnect). */
chat_conn_t *service_conn(sio_socket_t *s);
/* Answers the ack (when asked for: ack >= 0) with obj, which it takes (NULL: out of
 * memory); ok: {ok:true}; error: {ok:false, error}. */
void service_ack_obj(sio_socket_t *s, int64_t ack, json_t *obj);
void service_ack_ok(sio_socket_t *s, int64_t ack);
void service_ack_error(sio_socket_t *s, int64_t ack, const char *error);
/* "user:<id>", every connection of the user's room. */
void service_user_room(char out[USER_ROOM_SIZE], const char *user_id);
/* Whether room is a chat room (not a socket's own id nor a user:<id> room). */
bool service_is_chat_room(chat_service_t *svc, const char *room);
/* Store work for socket s (referenced) answering ack about room; NULL out of memory. */
pending_t *service_pending_new(chat_service_t *svc, sio_socket_t *s, int64_t ack, const char *room);
void service_pending_free(pending_t *p);
/* The store refused the work (rc; p may be NULL): freed, and the client told. */
void service_pending_refused(sio_socket_t *s, int64_t ack, pending_t *p, int rc);
/* Socket s of its user leaves room's presence (announced when it was the user's last). */
void service_leave_room(sio_socket_t *s, const char *room);

/* members.c: myRooms to s, or (to_user) to every connection of s's user. */
void service_send_my_rooms(chat_service_t *svc, sio_socket_t *s, const chat_conn_t *c,
                           bool to_user);
/* members.c: the events joinRoom, joinRooms and leaveRoom (sio_event_fn, arg the service). */
void service_on_join(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                     void *arg);
void service_on_join_rooms(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                           void *arg);
void service_on_leave(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                      void *arg);

#endif
