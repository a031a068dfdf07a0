/* chat/service.c — chat events, presence and rate limits (see service.h and
 * docs/CHAT-API.md, which is the contract this file implements).
 *
 * Presence: room → {user id → number of that user's sockets in the room}. A user
 * "joins" a room with their first socket and "leaves" with their last; only those
 * transitions are announced, and not at all above presence_limit members.
 *
 * Asynchronous work (history reads, durable appends) holds a reference on the socket
 * and checks it is still connected before answering it. */
#include "chat/service.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/log.h"
#include "util/map.h"
#include "util/time.h"
#include "util/utf8.h"

#define HISTORY_MAX 100
#define MEMBERS_MAX 100
#define SLOT_CONN 0
/* Every socket of a user is in the room "user:<id>" (direct messages go there). */
#define USER_ROOM_PREFIX "user:"
#define USER_ROOM_SIZE (sizeof USER_ROOM_PREFIX + CHAT_USER_ID_MAX)

typedef struct {
    size_t users; /* distinct users present */
    map_t counts; /* user id → presence_user_t */
    char name[];  /* map key */
} presence_t;

typedef struct {
    size_t sockets;
    char user_id[]; /* map key */
} presence_user_t;

/* A token bucket (rate limits). */
typedef struct {
    double tokens;
    uint64_t refilled_ms;
} bucket_t;

/* The bucket of a user posting from outside Socket.IO. */
typedef struct {
    bucket_t bucket;
    char user_id[]; /* map key */
} user_bucket_t;

/* Buckets kept before full ones (idle users) are dropped. */
#define USER_BUCKETS_SWEEP 10000

struct chat_service {
    sio_server_t *io;
    sio_nsp_t *nsp;
    chat_store_t *store;
    const chat_auth_t *auth;
    chat_config_t cfg;
    map_t rooms;   /* room id → presence_t */
    map_t buckets; /* user id → user_bucket_t, for chat_service_post */
    chat_observer_fn observer;
    void *observer_arg;
    bool stopping;
};

/* Per connection, made by the auth middleware (which runs again when a connection is
 * recovered: the token is checked each time) and kept in a socket slot. One allocation:
 * the user's id and name follow the struct. */
typedef struct {
    chat_service_t *svc;
    const char *username; /* points into user_id's buffer */
    json_t *rooms;        /* the token's room claim (chat_auth_verify), or NULL */
    bucket_t bucket;
    char user_id[];
} chat_conn_t;

void chat_config_defaults(chat_config_t *cfg) {
    *cfg = (chat_config_t){
        .max_text = 4000,
        .rate_burst = 5,
        .rate_per_sec = 5,
        .presence_limit = 1000,
        .history_size = 50,
    };
}

static chat_conn_t *conn_of(sio_socket_t *s) {
    return sio_socket_get(s, SLOT_CONN);
}

/* ---- presence ---- */

static presence_t *presence_get(chat_service_t *svc, const char *room, bool create) {
    presence_t *p = map_get(&svc->rooms, room, strlen(room));
    if (p || !create)
        return p;
    size_t len = strlen(room);
    p = calloc(1, sizeof *p + len + 1);
    if (!p || map_init(&p->counts)) {
        free(p);
        return NULL;
    }
    memcpy(p->name, room, len + 1);
    if (map_put(&svc->rooms, p->name, len, p)) {
        map_free(&p->counts);
        free(p);
        return NULL;
    }
    return p;
}

/* Counts one more socket of user in room; returns 1 when the user was not present, 0
 * when they were, -ENOMEM. */
static int presence_add(chat_service_t *svc, const char *room, const char *user) {
    presence_t *p = presence_get(svc, room, true);
    if (!p)
        return -ENOMEM;
    presence_user_t *u = map_get(&p->counts, user, strlen(user));
    if (u) {
        u->sockets++;
        return 0;
    }
    size_t len = strlen(user);
    u = malloc(sizeof *u + len + 1);
    if (!u)
        return -ENOMEM;
    u->sockets = 1;
    memcpy(u->user_id, user, len + 1);
    if (map_put(&p->counts, u->user_id, len, u)) {
        free(u);
        return -ENOMEM;
    }
    p->users++;
    return 1;
}

/* One socket of user left room; returns true when it was the user's last there. */
static bool presence_remove(chat_service_t *svc, const char *room, const char *user) {
    presence_t *p = presence_get(svc, room, false);
    presence_user_t *u = p ? map_get(&p->counts, user, strlen(user)) : NULL;
    if (!u || --u->sockets > 0)
        return false;
    map_del(&p->counts, user, strlen(user));
    free(u);
    if (--p->users == 0) {
        map_del(&svc->rooms, p->name, strlen(p->name));
        map_free(&p->counts);
        free(p);
    }
    return true;
}

size_t chat_service_room_users(const chat_service_t *svc, const char *room_id) {
    presence_t *p = map_get(&svc->rooms, room_id, strlen(room_id));
    return p ? p->users : 0;
}

json_t *chat_service_members(chat_service_t *svc, const char *room) {
    json_t *a = json_array();
    presence_t *p = presence_get(svc, room, false);
    map_entry_t *e;
    for (size_t pos = 0;
         a && p && json_array_size(a) < MEMBERS_MAX && map_next(&p->counts, &pos, &e);) {
        if (json_array_append_new(a, json_string(((presence_user_t *)e->value)->user_id))) {
            json_decref(a); /* a short list would be a wrong answer */
            return NULL;
        }
    }
    return a;
}

/* ---- small helpers ---- */

/* Answers the ack (when asked for) with obj, which it takes (NULL: out of memory). */
static void ack_obj(sio_socket_t *s, int64_t ack, json_t *obj) {
    if (ack >= 0 && sio_socket_connected(s)) {
        json_t *args = obj ? json_pack("[O]", obj) : NULL;
        sio_payload_t p = {args, NULL, 0};
        if (!args || sio_socket_ack(s, ack, &p))
            LOG_DEBUG("chat", "ack to %s failed", sio_socket_id(s));
        json_decref(args);
    }
    json_decref(obj);
}

static void ack_ok(sio_socket_t *s, int64_t ack) {
    ack_obj(s, ack, json_pack("{s:b}", "ok", 1));
}

static void ack_error(sio_socket_t *s, int64_t ack, const char *error) {
    ack_obj(s, ack, json_pack("{s:b,s:s}", "ok", 0, "error", error));
}

/* A chat room id from the payload, or NULL when missing or malformed. */
static const char *room_arg(json_t *obj) {
    json_t *v = json_object_get(obj, "roomId");
    const char *room = json_string_value(v);
    return chat_id_valid(room, room ? json_string_length(v) : 0, CHAT_ROOM_ID_MAX) ? room : NULL;
}

static void user_room(char out[USER_ROOM_SIZE], const char *user_id) {
    snprintf(out, USER_ROOM_SIZE, USER_ROOM_PREFIX "%s", user_id);
}

static bool is_chat_room(chat_service_t *svc, const char *room) {
    return strncmp(room, USER_ROOM_PREFIX, sizeof USER_ROOM_PREFIX - 1) != 0 &&
           !sio_nsp_find_socket(svc->nsp, room);
}

int chat_service_check_room(chat_service_t *svc, const char *room, size_t len) {
    if (!chat_id_valid(room, len, CHAT_ROOM_ID_MAX))
        return -EINVAL;
    return is_chat_room(svc, room) ? 0 : -ENOENT;
}

void chat_service_observe(chat_service_t *svc, chat_observer_fn fn, void *arg) {
    svc->observer = fn;
    svc->observer_arg = arg;
}

/* Hands a non-message room event to the observer as compact JSON. */
static void observe_json(chat_service_t *svc, const char *room, const char *event, json_t *obj) {
    if (!svc->observer)
        return;
    char *text = json_dumps(obj, JSON_COMPACT);
    if (!text) {
        LOG_WARN("chat", "%s in %s not passed on: out of memory", event, room);
        return;
    }
    chat_event_t ev = {.room = room, .name = event, .json = text, .json_len = strlen(text)};
    svc->observer(&ev, svc->observer_arg);
    free(text);
}

/* Whether s is in the chat room `room` (its own rooms — its id, user:… — are not chat
 * rooms, so nothing can be sent "into" them). */
static bool in_chat_room(chat_service_t *svc, sio_socket_t *s, const char *room) {
    return sio_socket_in(s, room) && is_chat_room(svc, room);
}

/* The roomId of an event that needs its socket in that chat room, or NULL when it was
 * answered: invalid_payload (malformed or missing), not_in_room. */
static const char *joined_room_arg(chat_service_t *svc, sio_socket_t *s, json_t *obj, int64_t ack) {
    const char *room = room_arg(obj);
    if (!room || !in_chat_room(svc, s, room)) {
        ack_error(s, ack, room ? "not_in_room" : "invalid_payload");
        return NULL;
    }
    return room;
}

/* Emits event {userId, username, ...extra} to the room's other sockets, and to the
 * observer unless it is typing (not a room event the other front ends carry). */
static void to_others(sio_socket_t *s, const char *room, const char *event, json_t *obj) {
    const char *rooms[1] = {room};
    sio_target_t to = {.rooms = rooms, .nrooms = 1};
    json_t *args = obj ? json_pack("[o]", obj) : NULL;
    sio_payload_t p = {args, NULL, 0};
    if (!args || sio_socket_broadcast(s, &to, event, &p))
        LOG_DEBUG("chat", "%s to %s failed", event, room);
    if (args && strcmp(event, "userTyping") != 0)
        observe_json(conn_of(s)->svc, room, event, obj);
    json_decref(args);
}

/* users: the room's size at the time of the event (the leaver still counted for a
 * leave), compared with the presence limit. */
static void announce(sio_socket_t *s, const char *room, const char *event, size_t users) {
    chat_conn_t *c = conn_of(s);
    if (c->svc->stopping || users > c->svc->cfg.presence_limit)
        return;
    to_others(
        s, room, event,
        json_pack("{s:s,s:s,s:s}", "userId", c->user_id, "username", c->username, "roomId", room));
}

/* Text rules shared by sendMessage and sendDirect; returns an error code or NULL. */
static const char *check_text(const chat_service_t *svc, json_t *v) {
    const char *text = json_string_value(v);
    size_t n = text ? json_string_length(v) : 0;
    if (!text || n == 0)
        return "invalid_payload";
    if (utf8_count((const uint8_t *)text, n) > svc->cfg.max_text)
        return "too_long";
    return NULL;
}

static void bucket_refill(const chat_service_t *svc, bucket_t *b) {
    uint64_t now = time_mono_ms();
    b->tokens += (double)(now - b->refilled_ms) / 1000.0 * svc->cfg.rate_per_sec;
    if (b->tokens > svc->cfg.rate_burst)
        b->tokens = svc->cfg.rate_burst;
    b->refilled_ms = now;
}

static bool take_token(const chat_service_t *svc, bucket_t *b) {
    bucket_refill(svc, b);
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

/* The text rules, then the rate limit: a rejected text takes no token. Returns the
 * error code, or NULL when the message may go (one token taken). */
static const char *admit_text(chat_conn_t *c, json_t *text) {
    const char *err = check_text(c->svc, text);
    if (err)
        return err;
    return take_token(c->svc, &c->bucket) ? NULL : "rate_limited";
}

/* Work waiting for the store: the socket (referenced), the ack id and the room. */
typedef struct {
    chat_service_t *svc;
    sio_socket_t *s;
    int64_t ack;
    char room[CHAT_ROOM_ID_MAX + 1];
} pending_t;

static pending_t *pending_new(chat_service_t *svc, sio_socket_t *s, int64_t ack, const char *room) {
    pending_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->svc = svc;
    p->s = s;
    p->ack = ack;
    snprintf(p->room, sizeof p->room, "%s", room ? room : "");
    sio_socket_ref(s);
    return p;
}

static void pending_free(pending_t *p) {
    sio_socket_unref(p->s);
    free(p);
}

/* The store refused the work (rc; -ENOMEM with p NULL when there was no memory for it):
 * the client learns internal_error. */
static void pending_refused(sio_socket_t *s, int64_t ack, pending_t *p, int rc) {
    LOG_DEBUG("chat", "socket %s: store refused: %s", sio_socket_id(s), strerror(-rc));
    if (p)
        pending_free(p);
    ack_error(s, ack, "internal_error");
}

/* ---- events ---- */

static void join_history_done(int err, chat_msg_t *const *msgs, size_t n, void *arg) {
    pending_t *p = arg;
    sio_socket_t *s = p->s;
    if (sio_socket_connected(s)) {
        buf_t b = {0};
        if (err)
            LOG_WARN("chat", "history of %s not read: %s", p->room, strerror(-err));
        else if (chat_msg_join(&b, "[[", msgs, n, "]]") ||
                 sio_socket_emit_json(s, "messageHistory", (const char *)b.data, b.len,
                                      SIO_NO_RECOVERY))
            LOG_DEBUG("chat", "messageHistory to %s not sent", sio_socket_id(s));
        buf_free(&b);
        ack_obj(s, p->ack,
                json_pack("{s:b,s:s,s:o}", "ok", 1, "roomId", p->room, "members",
                          chat_service_members(p->svc, p->room)));
    }
    pending_free(p);
}

static void on_join(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                    void *arg) {
    chat_service_t *svc = arg;
    chat_conn_t *c = conn_of(s);
    const char *room = room_arg(json_array_get(pl->args, 0));
    if (!room) {
        ack_error(s, ack, "invalid_payload");
        return;
    }
    if (!is_chat_room(svc, room) || !chat_auth_room_allowed(svc->auth, conn_of(s)->rooms, room)) {
        ack_error(s, ack, "forbidden");
        return;
    }
    if (!sio_socket_in(s, room)) {
        if (sio_socket_join(s, room)) {
            ack_error(s, ack, "internal_error");
            return;
        }
        int added = presence_add(svc, room, c->user_id);
        if (added < 0) {
            /* Uncounted, the user would never be announced as leaving: undo the join. */
            if (sio_socket_leave(s, room))
                LOG_WARN("chat", "socket %s: cannot leave %s", sio_socket_id(s), room);
            ack_error(s, ack, "internal_error");
            return;
        }
        if (added == 1)
            announce(s, room, "userJoined", chat_service_room_users(svc, room));
    }
    pending_t *p = pending_new(svc, s, ack, room);
    int rc =
        p ? chat_store_history(svc->store, room, 0, svc->cfg.history_size, join_history_done, p)
          : -ENOMEM;
    if (rc)
        pending_refused(s, ack, p, rc);
}

/* A durable message goes to the room's sockets (its sender's included) and to the
 * observer, in seq order since store callbacks run in seq order. */
static void publish(chat_service_t *svc, chat_msg_t *msg) {
    buf_t b = {0};
    const char *rooms[1] = {msg->room_id};
    sio_target_t to = {.rooms = rooms, .nrooms = 1};
    if (chat_msg_join(&b, "[", &msg, 1, "]") ||
        sio_nsp_emit_json(svc->nsp, &to, "newMessage", (const char *)b.data, b.len))
        LOG_WARN("chat", "newMessage %s not sent", msg->id);
    buf_free(&b);
    if (svc->observer) {
        chat_event_t ev = {.room = msg->room_id, .name = "newMessage", .msg = msg};
        svc->observer(&ev, svc->observer_arg);
    }
}

static void append_done(int err, chat_msg_t *msg, void *arg) {
    pending_t *p = arg;
    if (p->svc->stopping) {
        pending_free(p);
        return;
    }
    if (err) {
        LOG_WARN("chat", "message to %s not stored: %s", p->room, strerror(-err));
        ack_error(p->s, p->ack, "internal_error");
        pending_free(p);
        return;
    }
    /* Durable: announce to the room (sender included), then answer the sender. */
    publish(p->svc, msg);
    ack_obj(p->s, p->ack,
            json_pack("{s:b,s:s,s:I,s:I}", "ok", 1, "id", msg->id, "seq", (json_int_t)msg->seq,
                      "timestamp", (json_int_t)msg->timestamp));
    pending_free(p);
}

static void on_send(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                    void *arg) {
    chat_service_t *svc = arg;
    chat_conn_t *c = conn_of(s);
    json_t *o = json_array_get(pl->args, 0);
    const char *room = joined_room_arg(svc, s, o, ack);
    if (!room)
        return;
    json_t *tv = json_object_get(o, "text");
    const char *err = admit_text(c, tv);
    if (err) {
        ack_error(s, ack, err);
        return;
    }
    pending_t *p = pending_new(svc, s, ack, room);
    int rc = p ? chat_store_append(svc->store, room, c->user_id, c->username, json_string_value(tv),
                                   json_string_length(tv), append_done, p, NULL)
               : -ENOMEM;
    if (rc)
        pending_refused(s, ack, p, rc);
}

static void on_typing(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                      void *arg) {
    chat_conn_t *c = conn_of(s);
    json_t *o = json_array_get(pl->args, 0);
    const char *room = joined_room_arg(arg, s, o, ack);
    if (!room)
        return;
    to_others(s, room, "userTyping",
              json_pack("{s:s,s:s,s:b,s:s}", "userId", c->user_id, "username", c->username,
                        "isTyping", json_is_true(json_object_get(o, "isTyping")), "roomId", room));
    ack_ok(s, ack);
}

static void on_mark_read(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                         void *arg) {
    chat_service_t *svc = arg;
    chat_conn_t *c = conn_of(s);
    json_t *o = json_array_get(pl->args, 0);
    const char *room = joined_room_arg(svc, s, o, ack);
    if (!room)
        return;
    json_t *ids = json_object_get(o, "messageIds");
    size_t n = json_array_size(ids);
    if (!json_is_array(ids) || n > 1000) {
        ack_error(s, ack, "invalid_payload");
        return;
    }
    const char **list = calloc(n + 1, sizeof *list);
    if (!list) {
        ack_error(s, ack, "internal_error");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(list[i] = json_string_value(json_array_get(ids, i)))) {
            free(list);
            ack_error(s, ack, "invalid_payload");
            return;
        }
    }
    int rc = n ? chat_store_mark_read(svc->store, room, c->user_id, list, n, NULL, NULL) : 0;
    if (rc)
        LOG_WARN("chat", "read receipts for %s not stored: %s", room, strerror(-rc));
    free(list);
    to_others(s, room, "messagesRead",
              json_pack("{s:s,s:O,s:s}", "userId", c->user_id, "messageIds", ids, "roomId", room));
    ack_ok(s, ack);
}

static void leave_room(sio_socket_t *s, const char *room) {
    chat_conn_t *c = conn_of(s);
    size_t users = chat_service_room_users(c->svc, room);
    if (presence_remove(c->svc, room, c->user_id))
        announce(s, room, "userLeft", users);
}

static void on_leave(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                     void *arg) {
    const char *room = room_arg(json_array_get(pl->args, 0));
    if (!room) {
        ack_error(s, ack, "invalid_payload");
        return;
    }
    if (sio_socket_in(s, room) && is_chat_room(arg, room)) {
        leave_room(s, room); /* announced while still in the room, so "others" excludes it */
        if (sio_socket_leave(s, room)) {
            ack_error(s, ack, "internal_error");
            return;
        }
    }
    ack_ok(s, ack);
}

static void on_direct(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                      void *arg) {
    chat_conn_t *c = conn_of(s);
    json_t *o = json_array_get(pl->args, 0);
    const char *to_user = json_string_value(json_object_get(o, "toUserId"));
    size_t to_len = to_user ? strlen(to_user) : 0;
    if (!to_user || to_len == 0 || to_len > CHAT_USER_ID_MAX) {
        ack_error(s, ack, "invalid_payload");
        return;
    }
    json_t *tv = json_object_get(o, "text");
    const char *err = admit_text(c, tv);
    if (err) {
        ack_error(s, ack, err);
        return;
    }
    char to_room[USER_ROOM_SIZE], self_room[USER_ROOM_SIZE];
    user_room(to_room, to_user);
    user_room(self_room, c->user_id);
    const char *rooms[2] = {to_room, self_room};
    sio_target_t to = {.rooms = rooms, .nrooms = 2};
    json_t *args = json_pack("[{s:s,s:s,s:s,s:O,s:I}]", "from", c->user_id, "fromName", c->username,
                             "to", to_user, "text", tv, "timestamp", (json_int_t)time_wall_ms());
    sio_payload_t p = {args, NULL, 0};
    if (!args || sio_socket_broadcast(s, &to, "directMessage", &p))
        LOG_WARN("chat", "direct message not sent");
    json_decref(args);
    ack_ok(s, ack);
}

static void history_done(int err, chat_msg_t *const *msgs, size_t n, void *arg) {
    pending_t *p = arg;
    buf_t b = {0};
    if (err) {
        LOG_WARN("chat", "history of %s not read: %s", p->room, strerror(-err));
        ack_error(p->s, p->ack, "internal_error");
    } else if (sio_socket_connected(p->s) && p->ack >= 0 &&
               (chat_msg_join(&b, "[{\"ok\":true,\"messages\":[", msgs, n, "]}]") ||
                sio_socket_ack_json(p->s, p->ack, (const char *)b.data, b.len))) {
        LOG_DEBUG("chat", "history ack to %s failed", sio_socket_id(p->s));
    }
    buf_free(&b);
    pending_free(p);
}

static void on_history(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                       void *arg) {
    chat_service_t *svc = arg;
    json_t *o = json_array_get(pl->args, 0);
    const char *room = joined_room_arg(svc, s, o, ack);
    if (!room)
        return;
    json_t *before = json_object_get(o, "beforeSeq");
    json_t *limit = json_object_get(o, "limit");
    if ((before && !json_is_null(before) && !json_is_integer(before)) ||
        (limit && !json_is_null(limit) && !json_is_integer(limit))) {
        ack_error(s, ack, "invalid_payload");
        return;
    }
    json_int_t b = json_is_integer(before) ? json_integer_value(before) : 0;
    json_int_t l = json_is_integer(limit) ? json_integer_value(limit) : 50;
    if (b < 0 || l < 1) {
        ack_error(s, ack, "invalid_payload");
        return;
    }
    pending_t *p = pending_new(svc, s, ack, room);
    int rc = p ? chat_store_history(svc->store, room, (uint64_t)b,
                                    (size_t)(l > HISTORY_MAX ? HISTORY_MAX : l), history_done, p)
               : -ENOMEM;
    if (rc)
        pending_refused(s, ack, p, rc);
}

static void on_unknown(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                       void *arg) {
    LOG_DEBUG("chat", "socket %s: unknown event '%s' ignored", sio_socket_id(s), ev);
}

/* ---- lifecycle ---- */

static void conn_free(void *value) {
    chat_conn_t *c = value;
    json_decref(c->rooms);
    free(c);
}

static void auth_middleware(sio_socket_t *s, sio_next_ctx_t *ctx, void *arg) {
    chat_service_t *svc = arg;
    const sio_handshake_t *hs = sio_socket_handshake(s);
    const char *token = json_string_value(json_object_get(hs->auth, "token"));
    chat_user_t user;
    json_t *rooms = NULL;
    if (!token ||
        chat_auth_verify(svc->auth, token, (long)(time_wall_ms() / 1000), &user, &rooms)) {
        json_t *err = sio_error_new("Authentication failed", NULL);
        sio_next(ctx, err);
        json_decref(err);
        return;
    }
    size_t id_len = strlen(user.user_id), name_len = strlen(user.username);
    chat_conn_t *c = malloc(sizeof *c + id_len + name_len + 2);
    if (!c) {
        json_decref(rooms);
        json_t *err = sio_error_new("Server error", NULL);
        sio_next(ctx, err);
        json_decref(err);
        return;
    }
    memcpy(c->user_id, user.user_id, id_len + 1);
    c->username = memcpy(c->user_id + id_len + 1, user.username, name_len + 1);
    c->svc = svc;
    c->rooms = rooms;
    c->bucket = (bucket_t){svc->cfg.rate_burst, time_mono_ms()};
    sio_socket_set(s, SLOT_CONN, c);
    sio_next(ctx, NULL);
}

typedef struct {
    sio_socket_t *s;
    chat_service_t *svc;
} rooms_ctx_t;

static void rejoin_presence(const char *room, void *arg) {
    rooms_ctx_t *rc = arg;
    if (strcmp(room, sio_socket_id(rc->s)) == 0 || !is_chat_room(rc->svc, room))
        return;
    int added = presence_add(rc->svc, room, conn_of(rc->s)->user_id);
    if (added < 0)
        LOG_WARN("chat", "socket %s: presence in %s not restored: out of memory",
                 sio_socket_id(rc->s), room);
    else if (added == 1)
        announce(rc->s, room, "userJoined", chat_service_room_users(rc->svc, room));
}

static void on_connection(sio_socket_t *s, void *arg) {
    chat_service_t *svc = arg;
    chat_conn_t *c = conn_of(s);
    if (!c) {
        sio_socket_disconnect(s, true);
        return;
    }
    if (sio_socket_recovered(s)) {
        /* Its rooms came back with it; count it present again. */
        rooms_ctx_t rc = {s, svc};
        sio_socket_rooms(s, rejoin_presence, &rc);
        return;
    }
    char room[USER_ROOM_SIZE];
    user_room(room, c->user_id);
    int rc = sio_socket_join(s, room);
    if (rc) {
        LOG_WARN("chat", "socket %s: cannot join %s: %s", sio_socket_id(s), room, strerror(-rc));
        sio_socket_disconnect(s, true);
    }
}

static void collect_room(const char *room, void *arg) {
    json_t **rooms = arg;
    if (*rooms && json_array_append_new(*rooms, json_string(room))) {
        json_decref(*rooms);
        *rooms = NULL;
    }
}

static void on_disconnect(sio_socket_t *s, const char *reason, void *arg) {
    chat_service_t *svc = arg;
    chat_conn_t *c = conn_of(s);
    if (!c)
        return;
    json_t *rooms = json_array();
    sio_socket_rooms(s, collect_room, &rooms);
    if (!rooms)
        LOG_WARN("chat", "socket %s left: out of memory, its presence stays counted",
                 sio_socket_id(s));
    size_t i;
    json_t *r;
    json_array_foreach(rooms, i, r) {
        const char *room = json_string_value(r);
        if (strcmp(room, sio_socket_id(s)) != 0 && is_chat_room(svc, room))
            leave_room(s, room);
    }
    json_decref(rooms);
    sio_socket_set(s, SLOT_CONN, NULL);
    conn_free(c);
}

int chat_service_new(sio_server_t *io, chat_store_t *store, const chat_auth_t *auth,
                     const chat_config_t *cfg, chat_service_t **out) {
    chat_service_t *svc = calloc(1, sizeof *svc);
    if (!svc || map_init(&svc->rooms)) {
        free(svc);
        return -ENOMEM;
    }
    if (map_init(&svc->buckets)) {
        map_free(&svc->rooms);
        free(svc);
        return -ENOMEM;
    }
    svc->io = io;
    svc->nsp = sio_server_of(io, "/");
    svc->store = store;
    svc->auth = auth;
    svc->cfg = *cfg;
    static const struct {
        const char *name;
        sio_event_fn fn;
    } events[] = {
        {"joinRoom", on_join},      {"sendMessage", on_send}, {"typing", on_typing},
        {"markRead", on_mark_read}, {"leaveRoom", on_leave},  {"sendDirect", on_direct},
        {"history", on_history},
    };
    int rc = svc->nsp ? 0 : -ENOMEM;
    if (rc == 0)
        rc = sio_nsp_use(svc->nsp, auth_middleware, svc);
    if (rc == 0)
        rc = sio_nsp_slot_free(svc->nsp, SLOT_CONN, conn_free);
    if (rc == 0)
        rc = sio_nsp_on_connection(svc->nsp, on_connection, svc);
    if (rc == 0)
        rc = sio_nsp_on_disconnect(svc->nsp, on_disconnect, svc);
    for (size_t i = 0; rc == 0 && i < sizeof events / sizeof events[0]; i++)
        rc = sio_nsp_on(svc->nsp, events[i].name, events[i].fn, svc);
    if (rc == 0)
        rc = sio_nsp_on_any(svc->nsp, on_unknown, svc);
    if (rc) {
        chat_service_free(svc);
        return rc;
    }
    *out = svc;
    return 0;
}

void chat_service_stop(chat_service_t *svc) {
    svc->stopping = true;
}

void chat_service_free(chat_service_t *svc) {
    map_entry_t *e;
    for (size_t pos = 0; map_next(&svc->rooms, &pos, &e);) {
        presence_t *p = e->value;
        map_entry_t *u;
        for (size_t upos = 0; map_next(&p->counts, &upos, &u);)
            free(u->value);
        map_free(&p->counts);
        free(p);
    }
    map_free(&svc->rooms);
    for (size_t pos = 0; map_next(&svc->buckets, &pos, &e);)
        free(e->value);
    map_free(&svc->buckets);
    free(svc);
}

/* ---- posts from outside Socket.IO ---- */

/* Drops the buckets that are full again: their users are idle, and a new bucket starts
 * full anyway. */
static void buckets_sweep(chat_service_t *svc) {
    user_bucket_t **full = malloc(svc->buckets.count * sizeof *full);
    if (!full) {
        LOG_WARN("chat", "rate buckets not swept: out of memory");
        return;
    }
    size_t n = 0;
    map_entry_t *e;
    for (size_t pos = 0; map_next(&svc->buckets, &pos, &e);) {
        user_bucket_t *u = e->value;
        bucket_refill(svc, &u->bucket);
        if (u->bucket.tokens >= svc->cfg.rate_burst)
            full[n++] = u;
    }
    for (size_t i = 0; i < n; i++) {
        map_del(&svc->buckets, full[i]->user_id, strlen(full[i]->user_id));
        free(full[i]);
    }
    free(full);
}

static bucket_t *user_bucket(chat_service_t *svc, const char *user_id) {
    size_t len = strlen(user_id);
    user_bucket_t *u = map_get(&svc->buckets, user_id, len);
    if (u)
        return &u->bucket;
    if (svc->buckets.count >= USER_BUCKETS_SWEEP)
        buckets_sweep(svc);
    u = malloc(sizeof *u + len + 1);
    if (!u)
        return NULL;
    u->bucket = (bucket_t){svc->cfg.rate_burst, time_mono_ms()};
    memcpy(u->user_id, user_id, len + 1);
    if (map_put(&svc->buckets, u->user_id, len, u)) {
        free(u);
        return NULL;
    }
    return &u->bucket;
}

typedef struct {
    chat_service_t *svc;
    chat_post_cb cb;
    void *arg;
} post_t;

static void post_done(int err, chat_msg_t *msg, void *arg) {
    post_t *p = arg;
    if (err)
        LOG_WARN("chat", "posted message not stored: %s", strerror(-err));
    else if (!p->svc->stopping)
        publish(p->svc, msg);
    p->cb(err ? "internal_error" : NULL, err ? NULL : msg, p->arg);
    free(p);
}

const char *chat_service_post(chat_service_t *svc, const char *room_id, const chat_user_t *user,
                              json_t *text, bool rate_limit, unsigned *retry_after_s,
                              chat_post_cb cb, void *arg) {
    const char *err = check_text(svc, text);
    if (err)
        return err;
    if (rate_limit) {
        bucket_t *b = user_bucket(svc, user->user_id);
        if (!b)
            return "internal_error";
        if (!take_token(svc, b)) {
            double wait =
                svc->cfg.rate_per_sec > 0 ? (1.0 - b->tokens) / svc->cfg.rate_per_sec : 3600;
            *retry_after_s = wait < 1 ? 1 : (unsigned)(wait + 0.999);
            return "rate_limited";
        }
    }
    post_t *p = malloc(sizeof *p);
    if (!p)
        return "internal_error";
    *p = (post_t){svc, cb, arg};
    int rc =
        chat_store_append(svc->store, room_id, user->user_id, user->username,
                          json_string_value(text), json_string_length(text), post_done, p, NULL);
    if (rc) {
        LOG_DEBUG("chat", "post to %s refused by the store: %s", room_id, strerror(-rc));
        free(p);
        return "internal_error";
    }
    return NULL;
}
