/* chat/service.h — the chat service on the Socket.IO layer (docs/CHAT-API.md).
 *
 * Registers the auth middleware and the chat events on the root namespace, keeps
 * presence (which users are in which room, counting their connections), enforces the
 * payload rules and rate limits, and stores messages through chat/store.h before they
 * are announced: a newMessage and the sender's ack go out only once the message is
 * durable, in seq order. */
#ifndef PARLEY_CHAT_SERVICE_H
#define PARLEY_CHAT_SERVICE_H

#include <stddef.h>

#include "chat/auth.h"
#include "chat/store.h"
#include "parley/sio.h"

/* Room ids: 1 to this many bytes of printable UTF-8 (chat_id_valid). */
#define CHAT_ROOM_ID_MAX 128

typedef struct {
    size_t max_text;       /* code points per message (4000) */
    double rate_burst;     /* token bucket size per connection (5) */
    double rate_per_sec;   /* refill per second (5) */
    size_t presence_limit; /* above this many members no userJoined/userLeft (1000) */
    size_t history_size;   /* messages sent on joinRoom (50) */
} chat_config_t;

void chat_config_defaults(chat_config_t *cfg);

typedef struct chat_service chat_service_t;

/* Attaches the service to io's root namespace. store and auth are borrowed and must
 * outlive the service. */
int chat_service_new(sio_server_t *io, chat_store_t *store, const chat_auth_t *auth,
                     const chat_config_t *cfg, chat_service_t **out);
/* Shutdown, first step: from now on nothing is announced (stores still finishing their
 * work call back into the service, which then only releases what it holds). Then close
 * the Socket.IO server, then the store, then chat_service_free. */
void chat_service_stop(chat_service_t *svc);
void chat_service_free(chat_service_t *svc);

/* Distinct users present in a room (for the HTTP API). */
size_t chat_service_room_users(const chat_service_t *svc, const char *room_id);
/* The ids of the users present in a room (at most 100), as a new JSON array. */
json_t *chat_service_members(chat_service_t *svc, const char *room_id);

/* Whether room_id (len bytes, NUL-terminated) names a chat room: 0; -EINVAL when it is
 * malformed (not 1 to CHAT_ROOM_ID_MAX bytes of printable UTF-8); -ENOENT when it is a socket's own
 * room (its id or user:<id>), which no chat client may read or post into. */
int chat_service_check_room(chat_service_t *svc, const char *room_id, size_t len);

/* ---- other front ends (the HTTP API) ---- */

/* A room event as the service announces it. */
typedef struct {
    const char *room;
    const char *name; /* newMessage, userJoined, userLeft or messagesRead */
    chat_msg_t *msg;  /* newMessage: the message, durable (borrowed) */
    const char *json; /* other events: the event object as compact JSON */
    size_t json_len;
} chat_event_t;

/* One observer sees every room event after the Socket.IO room got it, in the same order
 * (newMessage in seq order). fn NULL removes it. */
typedef void (*chat_observer_fn)(const chat_event_t *ev, void *arg);
void chat_service_observe(chat_service_t *svc, chat_observer_fn fn, void *arg);

/* Posts a message into a chat room for `user` as sendMessage does: the same text rules,
 * stored, then newMessage to the room (Socket.IO and the observer) in seq order. When
 * rate_limit is set, the user's token bucket for posts from outside Socket.IO applies
 * (the sizes of the per-connection one). Returns NULL when the message was queued —
 * then cb(NULL, msg, arg) runs once it is durable and announced, or cb("internal_error",
 * NULL, arg) — or an error code without calling cb: invalid_payload, too_long,
 * rate_limited (*retry_after_s: whole seconds until a token is back), internal_error.
 * text is borrowed for the call. */
typedef void (*chat_post_cb)(const char *error, chat_msg_t *msg, void *arg);
const char *chat_service_post(chat_service_t *svc, const char *room_id, const chat_user_t *user,
                              json_t *text, bool rate_limit, unsigned *retry_after_s,
                              chat_post_cb cb, void *arg);

#endif
