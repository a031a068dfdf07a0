/* chat/service.h — the chat service on the Socket.IO layer (docs/CHAT-API.md).
 *
 * Registers the auth middleware and the chat events on the root namespace, keeps
 * presence (which users are in which room, counting their connections), enforces the
 * payload rules and the limits (an event bucket per connection for every event, the
 * message bucket for sendMessage/sendDirect, rooms per socket, disconnection of
 * flooding connections), binds connection state recovery to the user, and stores
 * messages through chat/store.h before they are announced: a newMessage and the sender's
 * ack go out only once the message is durable, in seq order. */
#ifndef PARLEY_CHAT_SERVICE_H
#define PARLEY_CHAT_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/auth.h"
#include "chat/notify.h"
#include "chat/store.h"
#include "parley/cluster.h"
#include "parley/sio.h"
#include "util/prom.h"

/* Room ids: 1 to this many bytes of UTF-8 without control or format characters
 * (chat_id_valid). */
#define CHAT_ROOM_ID_MAX 128
/* history: messages per page at most, and when no limit is given. */
#define CHAT_HISTORY_MAX 100
#define CHAT_HISTORY_DEFAULT 50
/* markRead: message ids per event at most. */
#define CHAT_READ_IDS_MAX 1000
/* joinRooms: room ids per event at most (the rooms per socket are bounded too). */
#define CHAT_JOIN_ROOMS_MAX 1000
/* The window in which a connection's refused events are counted (flood_limit). */
#define CHAT_FLOOD_WINDOW_MS 10000

typedef struct {
    size_t max_text;     /* code points per message (4000) */
    double rate_burst;   /* messages (sendMessage, sendDirect) per connection in a burst (5) */
    double rate_per_sec; /* messages per connection per second, sustained (5) */
    /* Every event a connection sends (chat events, unknown ones too) takes a token from
     * its event bucket; without one it is refused (rate_limited) and has no effect. The
     * bucket is never smaller nor slower than the message bucket, since every message is
     * an event. (100 events; 20 per second) */
    double event_burst;
    double event_rate;
    /* A connection with more than this many refused events (by either bucket) within
     * CHAT_FLOOD_WINDOW_MS is disconnected, with one log line; 0: never. (1000) */
    size_t flood_limit;
    size_t max_rooms;      /* chat rooms one socket may be in; too_many_rooms above (128) */
    size_t presence_limit; /* above this many members no userJoined/userLeft (1000) */
    size_t history_size;   /* messages sent on joinRoom (50) */
    /* Connection state recovery is on: each socket keeps its user id and room claim in
     * socket.data, for chat_service_recovery_allow. (false) */
    bool recovery;
} chat_config_t;

void chat_config_defaults(chat_config_t *cfg);

typedef struct chat_service chat_service_t;

/* Attaches the service to io's root namespace. Every message the store reports stored
 * (chat_store_on_stored: its own appends, or with workers every worker's) is announced
 * to the room's sockets here and to the observer; other room events reach the observer
 * through the Socket.IO broadcasts of this process (sio_nsp_on_broadcast), whichever
 * process sent them. store and auth are borrowed; the store calls into the service until
 * it is closed (see the shutdown order below). */
int chat_service_new(sio_server_t *io, chat_store_t *store, const chat_auth_t *auth,
                     const chat_config_t *cfg, chat_service_t **out);
/* Drain (SIGTERM), before chat_service_stop: from now on client events are dropped
 * unanswered (the client sends them again after it reconnected elsewhere) and
 * chat_service_post refuses with "unavailable"; drained(arg) runs once every piece of store
 * work asked for before (appends, receipts, reads) has been answered and its ack queued to
 * the client — at once, from inside this call, when none is pending. Announcements go on
 * meanwhile. Call once. */
void chat_service_drain(chat_service_t *svc, void (*drained)(void *arg), void *arg);
/* Shutdown, first step: from now on nothing is announced (stores still finishing their
 * work call back into the service, which then only releases what it holds). Then close
 * the Socket.IO server, then the store, then chat_service_free. */
void chat_service_stop(chat_service_t *svc);
void chat_service_free(chat_service_t *svc);

/* In a worker (parley/cluster.h): presence is counted across every worker by the store
 * owner (chat/store_remote.h); member lists and counts are the whole group's. Call once,
 * after chat_service_new and before serving. */
int chat_service_use_workers(chat_service_t *svc, parley_worker_t *worker);
/* With nodes over Redis (--redis-url): presence counted across nodes
 * (chat_presence_use_redis). Call once, before serving. */
int chat_service_use_redis(chat_service_t *svc, uv_loop_t *loop, const char *url);

/* With --notify-url: every message this process stores is owed to the room's members who
 * are not present in it anywhere (but its sender), and direct messages to users with no
 * connection at all (urgent, as are mentions: "@username"); n batches and delivers them
 * and asks the service, before each attempt, whether the user came back. Messages are
 * batched per room over the notifier's window first (chat/owed.h). n is borrowed: it
 * must stay open until chat_service_stop. Call once, before serving, on loop. Returns 0
 * or -ENOMEM. */
int chat_service_use_notify(chat_service_t *svc, uv_loop_t *loop, chat_notify_t *n);

/* Distinct users present in a room (for the HTTP API). */
size_t chat_service_room_users(chat_service_t *svc, const char *room_id);
/* The ids of the users present in a room (at most 100), as a new JSON array. */
json_t *chat_service_members(chat_service_t *svc, const char *room_id);

/* Whether user is present in room (a connection in it, on any worker or node). */
bool chat_service_online(chat_service_t *svc, const char *room_id, const char *user_id);

/* Answers of the membership reads below: a new JSON value the callback takes, or NULL when
 * the store could not answer. Called once, maybe before the call returns. */
typedef void (*chat_json_cb)(json_t *result, void *arg);
/* The rooms user_id is a member of, as the myRooms event lists them
 * ([{roomId, lastSeq, lastReadSeq, unread}]), those claim grants (--room-claim; NULL:
 * every room when no claim is configured). Returns 0 or a negative errno (cb not called). */
int chat_service_user_rooms(chat_service_t *svc, const char *user_id, const json_t *claim,
                            chat_json_cb cb, void *arg);
/* The members of room_id, present or away: {lastSeq, members: [{userId, username, online,
 * lastReadSeq, joinedAt}]}. Returns 0 or a negative errno (cb not called). */
int chat_service_memberships(chat_service_t *svc, const char *room_id, chat_json_cb cb, void *arg);

/* Whether room_id (len bytes, NUL-terminated) names a chat room: 0; -EINVAL when it is
 * malformed (not a valid id of 1 to CHAT_ROOM_ID_MAX bytes: chat_id_valid); -ENOENT when it is a
 * socket's own room (its id or user:<id>), which no chat client may read or post into. */
int chat_service_check_room(chat_service_t *svc, const char *room_id, size_t len);

/* sio_config_t.recovery_allow for the chat (arg unused: the socket's chat state, made by
 * the auth middleware, leads to the service). A kept session is restored only when the
 * new token's user is the session's user, and when the new token grants every room the
 * session's token granted (with --room-claim); otherwise the client gets a fresh
 * session. Needs chat_config_t.recovery, which keeps what is compared in socket.data. */
bool chat_service_recovery_allow(sio_socket_t *s, json_t *saved_data, void *arg);

/* ---- payload rules (pure: no service state; the fuzzer drives them) ---- */

/* A client event's payload, parsed. Strings and values are borrowed from the payload. */
typedef struct {
    const char *room;    /* roomId (every event but sendDirect); NULL when missing or bad */
    json_t *text;        /* sendMessage, sendDirect: a string of 1 to max_text code points */
    const char *to_user; /* sendDirect: a valid user id */
    bool is_typing;      /* typing */
    json_t *message_ids; /* markRead: an array of at most CHAT_READ_IDS_MAX strings, or
                            NULL when absent (then seq is not 0) */
    uint64_t seq;        /* markRead: read up to and including this seq (0: not given) */
    bool forget;         /* leaveRoom: end the membership too */
    json_t *room_ids;    /* joinRooms: an array of at most CHAT_JOIN_ROOMS_MAX valid room
                            ids, or NULL when absent (every membership) */
    uint64_t before_seq; /* history: messages before this seq; 0 for the latest */
    size_t limit;        /* history: 1 to CHAT_HISTORY_MAX */
} chat_payload_t;

/* Checks payload (the event's first argument, any JSON value or NULL) of `event`
 * (joinRoom, joinRooms, leaveRoom, sendMessage, typing, markRead, sendDirect or history) against
 * the payload rules of docs/CHAT-API.md and fills *out. Returns NULL when it is
 * well-formed, else the error the event answers: invalid_payload or too_long. The room
 * is checked first: out->room is NULL exactly when the roomId is at fault, so a handler
 * can answer not_in_room before a fault in the other fields, as the contract orders
 * them. An unknown event is invalid_payload. */
const char *chat_payload_parse(const char *event, json_t *payload, size_t max_text,
                               chat_payload_t *out);

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
 * (the sizes of the per-connection one; with workers, across all of them). Returns NULL
 * when the message was queued — then cb(NULL, msg, arg) runs once it is durable and
 * announced, or cb("internal_error" or "rate_limited", NULL, arg) — or an error code without
 * calling cb: invalid_payload, too_long, rate_limited (*retry_after_s: whole seconds until a token
 * is back), internal_error, unavailable (draining: chat_service_drain). text is borrowed for
 * the call. */
typedef void (*chat_post_cb)(const char *error, chat_msg_t *msg, void *arg);

/* What the service counted since it started, for /metrics: events received by name (the
 * chat's own; every other name is "other"), events and messages refused for a rate limit,
 * and three latencies: the store's appends (from the call to its answer: committed, or
 * Redis replied), acknowledgements (sendMessage received → its ack queued), and delivery
 * (a message made in this process — appended here, or come from another node — → queued to
 * every local member of its room, the Socket.IO ones and the observers). */
#define CHAT_EVENT_KINDS 9
typedef struct {
    uint64_t events[CHAT_EVENT_KINDS];
    uint64_t rate_limited;
    prom_histogram_t store_append, ack, delivery;
} chat_service_stats_t;
/* The name of events[i] ("joinRoom", …, "other"). */
const char *chat_service_event_name(size_t i);
void chat_service_stats(const chat_service_t *svc, chat_service_stats_t *out);
/* With workers the bucket is the store owner's and a refused post learns it later:
 * cb("rate_limited", NULL, arg); this is the wait to suggest then (whole seconds until a
 * token comes back to an empty bucket). */
unsigned chat_service_retry_after(const chat_service_t *svc);
const char *chat_service_post(chat_service_t *svc, const char *room_id, const chat_user_t *user,
                              json_t *text, bool rate_limit, unsigned *retry_after_s,
                              chat_post_cb cb, void *arg);

#endif
