/* chat/service.c — chat events and rate limits (see service.h and docs/CHAT-API.md,
 * which is the contract this file implements); who is in which room is chat/presence.c;
 * membership (myRooms, joinRoom, joinRooms, leaveRoom's forget) is chat/members.c, the
 * notifications' room windows chat/owed.c.
 *
 * Limits: every event goes through one gate (gate_event), which takes a token from the
 * connection's event bucket before the handler runs; the message bucket is taken on top
 * by sendMessage and sendDirect. Refusals are counted per connection in a fixed window,
 * and a connection far over its limits is disconnected: answering refusals costs little,
 * but a client that ignores them would otherwise keep the server parsing forever.
 *
 * Recovery: socket.data holds the user id and room claim the socket was made for, so a
 * kept session is restored only to the same user with no new rooms (recovery_allow), and
 * a restored socket leaves the rooms its new token does not grant.
 *
 * Asynchronous work (history reads, durable appends) holds a reference on the socket
 * and checks it is still connected before answering it. */
#include "chat/service_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/notify.h"
#include "chat/owed.h"
#include "chat/presence.h"
#include "chat/store_remote.h"
#include "http/parser.h"
#include "util/assert.h"
#include "util/buf.h"
#include "util/jsonw.h"
#include "util/log.h"
#include "util/map.h"
#include "util/rand.h"
#include "util/time.h"
#include "util/utf8.h"

/* The bucket of a user posting from outside Socket.IO. */
typedef struct {
    bucket_t bucket;
    char user_id[]; /* map key */
} user_bucket_t;

/* newMessage arguments up to this size are put together on the stack. */
#define PUBLISH_STACK 2048
/* sendMessage's acks up to this size are written on the stack (a local store's ids are 33
 * characters at most: ~110 bytes). */
#define SEND_ACK_STACK 256

/* Buckets kept before full ones (idle users) are dropped. */
#define USER_BUCKETS_SWEEP 10000

/* socket.data members (recovery). */
#define DATA_USER "userId"
#define DATA_ROOMS "rooms"

void chat_config_defaults(chat_config_t *cfg) {
    *cfg = (chat_config_t){
        .max_text = 4000,
        .rate_burst = 5,
        .rate_per_sec = 5,
        .event_burst = 100,
        .event_rate = 20,
        .flood_limit = 1000,
        .max_rooms = 128,
        .presence_limit = 1000,
        .history_size = 50,
    };
}

chat_conn_t *service_conn(sio_socket_t *s) {
    return sio_socket_get(s, SLOT_CONN);
}

size_t chat_service_room_users(chat_service_t *svc, const char *room_id) {
    return chat_presence_users(svc->presence, room_id);
}

json_t *chat_service_members(chat_service_t *svc, const char *room) {
    return chat_presence_members(svc->presence, room);
}

unsigned chat_service_retry_after(const chat_service_t *svc) {
    double wait = svc->cfg.rate_per_sec > 0 ? 1.0 / svc->cfg.rate_per_sec : 3600;
    return wait < 1 ? 1 : (unsigned)(wait + 0.999);
}

int chat_service_use_workers(chat_service_t *svc, parley_worker_t *worker) {
    svc->worker = worker;
    return chat_presence_use_workers(svc->presence, worker);
}

int chat_service_use_redis(chat_service_t *svc, uv_loop_t *loop, const char *url) {
    return chat_presence_use_redis(svc->presence, loop, url);
}

/* ---- small helpers ---- */

/* Answers the ack (when asked for) with obj, which it takes (NULL: out of memory). */
void service_ack_obj(sio_socket_t *s, int64_t ack, json_t *obj) {
    if (ack >= 0 && sio_socket_connected(s)) {
        json_t *args = obj ? json_pack("[O]", obj) : NULL;
        sio_payload_t p = {args, NULL, 0};
        if (!args || sio_socket_ack(s, ack, &p))
            LOG_DEBUG("chat", "ack to %s failed", sio_socket_id(s));
        json_decref(args);
    }
    json_decref(obj);
}

/* Answers the ack (when asked for) with the argument array's JSON text. */
static void ack_json(sio_socket_t *s, int64_t ack, const char *json, size_t len) {
    if (ack >= 0 && sio_socket_connected(s) && sio_socket_ack_json(s, ack, json, len))
        LOG_DEBUG("chat", "ack to %s failed", sio_socket_id(s));
}

#define LIT(s) (s), (sizeof(s) - 1)

void service_ack_ok(sio_socket_t *s, int64_t ack) {
    ack_json(s, ack, LIT("[{\"ok\":true}]"));
}

/* Error codes are short ASCII words ("not_in_room"): the answer fits on the stack. */
#define ACK_ERROR_MAX 64

void service_ack_error(sio_socket_t *s, int64_t ack, const char *error) {
    static const char head[] = "[{\"ok\":false,\"error\":";
    char json[sizeof head + 6 * ACK_ERROR_MAX + 4]; /* quotes, "}]" */
    size_t len = strnlen(error, ACK_ERROR_MAX);
    PARLEY_ASSERT(len < ACK_ERROR_MAX);
    char *end = jsonw_raw(json, LIT(head));
    end = jsonw_string(end, error, len);
    end = jsonw_raw(end, LIT("}]"));
    ack_json(s, ack, json, (size_t)(end - json));
}

void service_user_room(char out[USER_ROOM_SIZE], const char *user_id) {
    snprintf(out, USER_ROOM_SIZE, USER_ROOM_PREFIX "%s", user_id);
}

/* Whether room could be a socket's id: SIO_SOCKET_ID_LEN base64url characters (every id,
 * restored ones included, has that shape). Room names of another shape, which chat rooms
 * mostly are, then cost no look-up in the namespace's sockets. */
static bool id_shaped(const char *room) {
    size_t n = strspn(room, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
    return n == SIO_SOCKET_ID_LEN && room[n] == '\0';
}

bool service_is_chat_room(chat_service_t *svc, const char *room) {
    if (strncmp(room, USER_ROOM_PREFIX, sizeof USER_ROOM_PREFIX - 1) == 0)
        return false;
    if (!id_shaped(room))
        return true;
    /* With workers, an id starting with a worker's letter (cluster/hub.h) may be a socket
     * of another process, where this one cannot look it up. */
    unsigned w = svc->worker ? cluster_tag_worker(room[0]) : 0;
    if (w >= 1 && w <= parley_worker_count(svc->worker))
        return false;
    return !sio_nsp_find_socket(svc->nsp, room);
}

int chat_service_check_room(chat_service_t *svc, const char *room, size_t len) {
    if (!chat_id_valid(room, len, CHAT_ROOM_ID_MAX))
        return -EINVAL;
    return service_is_chat_room(svc, room) ? 0 : -ENOENT;
}

void chat_service_observe(chat_service_t *svc, chat_observer_fn fn, void *arg) {
    svc->observer = fn;
    svc->observer_arg = arg;
}

/* Room events other than messages reach the observer through the fan-out seam: every
 * broadcast delivered in this process, whichever process (or node) sent it. The argument
 * array of these events is one object: the observer gets that object's JSON. */
static void on_room_broadcast(sio_nsp_t *nsp, const char *event, const char *args_json, size_t len,
                              const sio_target_t *to, void *arg) {
    chat_service_t *svc = arg;
    if (!svc->observer || to->nrooms != 1 || len < 2 || args_json[0] != '[' ||
        args_json[len - 1] != ']')
        return;
    if ((strcmp(event, "userJoined") != 0 && strcmp(event, "userLeft") != 0 &&
         strcmp(event, "messagesRead") != 0) ||
        !service_is_chat_room(svc, to->rooms[0]))
        return;
    chat_event_t ev = {
        .room = to->rooms[0], .name = event, .json = args_json + 1, .json_len = len - 2};
    svc->observer(&ev, svc->observer_arg);
}

/* Whether s is in the chat room `room` (its own rooms — its id, user:… — are not chat
 * rooms, so nothing can be sent "into" them). */
static bool in_chat_room(chat_service_t *svc, sio_socket_t *s, const char *room) {
    return sio_socket_in(s, room) && service_is_chat_room(svc, room);
}

/* Parses the payload of an event that needs its socket in the payload's chat room.
 * Returns false when it was answered, in the contract's order: invalid_payload (roomId
 * malformed or missing), not_in_room, then the other fields' error. */
static bool parse_in_room(chat_service_t *svc, sio_socket_t *s, const char *ev,
                          const sio_payload_t *pl, int64_t ack, chat_payload_t *p) {
    const char *err = chat_payload_parse(ev, json_array_get(pl->args, 0), svc->cfg.max_text, p);
    if (!p->room)
        err = "invalid_payload";
    else if (!in_chat_room(svc, s, p->room))
        err = "not_in_room";
    if (err) {
        service_ack_error(s, ack, err);
        return false;
    }
    return true;
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
    json_decref(args);
}

/* Text rules shared by sendMessage, sendDirect and posts; returns an error code or NULL. */
static const char *check_text(json_t *v, size_t max_text) {
    const char *text = json_string_value(v);
    size_t n = text ? json_string_length(v) : 0;
    if (!text || n == 0)
        return "invalid_payload";
    if (utf8_count((const uint8_t *)text, n) > max_text)
        return "too_long";
    return NULL;
}

static void bucket_refill(bucket_t *b, double burst, double per_sec) {
    uint64_t now = time_mono_ms();
    b->tokens += (double)(now - b->refilled_ms) / 1000.0 * per_sec;
    if (b->tokens > burst)
        b->tokens = burst;
    b->refilled_ms = now;
}

static bool take_token(bucket_t *b, double burst, double per_sec) {
    bucket_refill(b, burst, per_sec);
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

/* A message token (sendMessage, sendDirect, posts). */
static bool take_message_token(const chat_service_t *svc, bucket_t *b) {
    return take_token(b, svc->cfg.rate_burst, svc->cfg.rate_per_sec);
}

/* Counts a refused event of s; past flood_limit refusals within CHAT_FLOOD_WINDOW_MS the
 * connection is closed (its client is told: "io server disconnect"). Call it last: c may
 * be freed when it returns (s stays valid until the event handler returns). */
static void note_refused(sio_socket_t *s, chat_conn_t *c) {
    const chat_config_t *cfg = &c->svc->cfg;
    uint64_t now = time_mono_ms();
    if (now - c->flood_since_ms >= CHAT_FLOOD_WINDOW_MS) {
        c->flood_since_ms = now;
        c->refused = 0;
    }
    if (cfg->flood_limit == 0 || ++c->refused <= cfg->flood_limit)
        return;
    LOG_WARN("chat", "socket %s of user %s disconnected: flooding (%zu events refused within %d s)",
             sio_socket_id(s), c->user_id, c->refused, CHAT_FLOOD_WINDOW_MS / 1000);
    sio_socket_disconnect(s, true);
}

/* Answers ack with err (a text or message refusal); a rate_limited one counts towards
 * the flood limit, so it may disconnect s (c is gone then). */
static void refuse_message(sio_socket_t *s, chat_conn_t *c, int64_t ack, const char *err) {
    service_ack_error(s, ack, err);
    if (strcmp(err, "rate_limited") == 0) {
        c->svc->stats.rate_limited++;
        note_refused(s, c);
    }
}

/* The text rules (checked by chat_payload_parse), then the message bucket: a rejected
 * text takes no token. Returns NULL when the message may go (one token taken). */
static const char *admit_message(chat_conn_t *c, const char *parse_err) {
    if (parse_err)
        return parse_err;
    return take_message_token(c->svc, &c->bucket) ? NULL : "rate_limited";
}

/* ---- payload rules ---- */

/* An optional integer member: absent or null gives def; else it must be an integer in
 * [min, max]. */
static bool int_member(json_t *obj, const char *name, json_int_t min, json_int_t max,
                       json_int_t def, json_int_t *out) {
    json_t *v = json_object_get(obj, name);
    *out = def;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return false;
    *out = json_integer_value(v);
    return true;
}

/* joinRooms {roomIds?}: absent or null (every membership), or an array of valid ids. */
static const char *parse_room_ids(json_t *payload, chat_payload_t *out) {
    json_t *ids = json_object_get(payload, "roomIds");
    if (!ids || json_is_null(ids))
        return payload == NULL || json_is_object(payload) ? NULL : "invalid_payload";
    size_t i;
    json_t *v;
    if (!json_is_array(ids) || json_array_size(ids) > CHAT_JOIN_ROOMS_MAX)
        return "invalid_payload";
    json_array_foreach(ids, i, v) {
        const char *id = json_string_value(v);
        if (!chat_id_valid(id, id ? json_string_length(v) : 0, CHAT_ROOM_ID_MAX))
            return "invalid_payload";
    }
    out->room_ids = ids;
    return NULL;
}

/* markRead {roomId, messageIds?, seq?}: at least one of the two. */
static const char *parse_read(json_t *payload, chat_payload_t *out) {
    json_t *ids = json_object_get(payload, "messageIds");
    json_int_t seq;
    if (!int_member(payload, "seq", 0, INT64_MAX, 0, &seq))
        return "invalid_payload";
    out->seq = (uint64_t)seq;
    if (!ids || json_is_null(ids))
        return seq > 0 ? NULL : "invalid_payload";
    size_t i;
    json_t *v;
    if (!json_is_array(ids) || json_array_size(ids) > CHAT_READ_IDS_MAX)
        return "invalid_payload";
    json_array_foreach(ids, i, v) {
        if (!json_is_string(v))
            return "invalid_payload";
    }
    out->message_ids = ids;
    return NULL;
}

const char *chat_payload_parse(const char *event, json_t *payload, size_t max_text,
                               chat_payload_t *out) {
    *out = (chat_payload_t){0};
    if (strcmp(event, "joinRooms") == 0)
        return parse_room_ids(payload, out);
    bool direct = strcmp(event, "sendDirect") == 0;
    if (direct) {
        json_t *to = json_object_get(payload, "toUserId");
        const char *id = json_string_value(to);
        if (!chat_id_valid(id, id ? json_string_length(to) : 0, CHAT_USER_ID_MAX))
            return "invalid_payload";
        out->to_user = id;
    } else {
        json_t *r = json_object_get(payload, "roomId");
        const char *room = json_string_value(r);
        if (!chat_id_valid(room, room ? json_string_length(r) : 0, CHAT_ROOM_ID_MAX))
            return "invalid_payload";
        out->room = room;
    }
    if (direct || strcmp(event, "sendMessage") == 0) {
        out->text = json_object_get(payload, "text");
        return check_text(out->text, max_text);
    }
    if (strcmp(event, "joinRoom") == 0)
        return NULL;
    if (strcmp(event, "leaveRoom") == 0) {
        json_t *forget = json_object_get(payload, "forget");
        if (forget && !json_is_boolean(forget) && !json_is_null(forget))
            return "invalid_payload";
        out->forget = json_is_true(forget);
        return NULL;
    }
    if (strcmp(event, "typing") == 0) {
        out->is_typing = json_is_true(json_object_get(payload, "isTyping"));
        return NULL;
    }
    if (strcmp(event, "markRead") == 0)
        return parse_read(payload, out);
    if (strcmp(event, "history") == 0) {
        json_int_t before, limit;
        if (!int_member(payload, "beforeSeq", 0, INT64_MAX, 0, &before) ||
            !int_member(payload, "limit", 1, INT64_MAX, CHAT_HISTORY_DEFAULT, &limit))
            return "invalid_payload";
        out->before_seq = (uint64_t)before;
        out->limit = limit > CHAT_HISTORY_MAX ? CHAT_HISTORY_MAX : (size_t)limit;
        return NULL;
    }
    return "invalid_payload";
}

/* One piece of store work answered: the drain may be over. */
static void work_done(chat_service_t *svc) {
    PARLEY_ASSERT(svc->inflight > 0);
    svc->inflight--;
    if (svc->draining && svc->inflight == 0 && svc->drained) {
        void (*fn)(void *) = svc->drained;
        svc->drained = NULL;
        fn(svc->drained_arg);
    }
}

pending_t *service_pending_new(chat_service_t *svc, sio_socket_t *s, int64_t ack,
                               const char *room) {
    pending_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->svc = svc;
    p->s = s;
    p->ack = ack;
    p->since_ns = uv_hrtime();
    size_t n = room ? strnlen(room, sizeof p->room - 1) : 0; /* room ids fit (chat_id_valid) */
    memcpy(p->room, room ? room : "", n);
    p->room[n] = '\0';
    sio_socket_ref(s);
    svc->inflight++;
    return p;
}

void service_pending_free(pending_t *p) {
    chat_service_t *svc = p->svc;
    sio_socket_unref(p->s);
    json_decref(p->ids);
    json_decref(p->claim);
    free(p);
    work_done(svc);
}

/* The store refused the work (rc; -ENOMEM with p NULL when there was no memory for it):
 * the client learns internal_error. */
void service_pending_refused(sio_socket_t *s, int64_t ack, pending_t *p, int rc) {
    LOG_DEBUG("chat", "socket %s: store refused: %s", sio_socket_id(s), strerror(-rc));
    if (p)
        service_pending_free(p);
    service_ack_error(s, ack, "internal_error");
}

/* ---- events ---- */

/* Every stored message (chat_store_on_stored: in seq order per room, before its sender's
 * ack) goes to the room's sockets in this process (its sender's included) and to the
 * observer. Local: with workers, each worker's store announces every message to its own
 * sockets, so it must go no further. */
static void publish(chat_msg_t *msg, void *arg) {
    chat_service_t *svc = arg;
    if (svc->stopping)
        return;
    const char *rooms[1] = {msg->room_id};
    sio_target_t to = {.rooms = rooms, .nrooms = 1, .flags = SIO_LOCAL};
    /* The argument array: the message's JSON in brackets, on the stack when it fits (the
     * emit encodes it into its own frames). */
    char stack[PUBLISH_STACK];
    buf_t b = {0};
    const char *args = stack;
    size_t len = msg->json_len + 2;
    if (len <= sizeof stack) {
        stack[0] = '[';
        memcpy(stack + 1, msg->json, msg->json_len);
        stack[len - 1] = ']';
    } else if (chat_msg_join(&b, "[", &msg, 1, "]")) {
        args = NULL;
    } else {
        args = (const char *)b.data;
    }
    if (!args || sio_nsp_emit_json(svc->nsp, &to, "newMessage", args, len))
        LOG_WARN("chat", "newMessage %s not sent", msg->id);
    buf_free(&b);
    if (svc->observer) {
        chat_event_t ev = {.room = msg->room_id, .name = "newMessage", .msg = msg};
        svc->observer(&ev, svc->observer_arg);
    }
    prom_histogram_observe(&svc->stats.delivery, (double)(uv_hrtime() - msg->made_ns) / 1e9);
}

/* ---- notifications for offline members (chat_service_use_notify) ----
 *
 * The process that stored a message (its append's callback runs here, whichever worker or
 * node announces it) hands it to the rooms' windows (chat/owed.h), which owe it to the
 * room's members not present in it when the window closes. */

static bool notify_online(const char *user_id, const char *room_id, void *arg) {
    chat_service_t *svc = arg;
    char mine[USER_ROOM_SIZE];
    if (room_id)
        return chat_presence_has(svc->presence, room_id, user_id);
    service_user_room(mine, user_id);
    return chat_presence_has(svc->presence, mine, user_id);
}

int chat_service_use_notify(chat_service_t *svc, uv_loop_t *loop, chat_notify_t *n) {
    int rc = chat_owed_new(loop, svc->store, svc->presence, n, &svc->owed);
    if (rc)
        return rc;
    svc->notify = n;
    chat_notify_set_online(n, notify_online, svc);
    return 0;
}

/* A direct message (the object as sent) to a user with no connection anywhere: urgent.
 * Direct messages are not stored, so there is no unread count (0). */
static void owe_direct(chat_service_t *svc, const char *to_user, const json_t *dm) {
    char *text = json_dumps(dm, JSON_COMPACT);
    int rc =
        text ? chat_notify_owe(svc->notify, to_user, NULL, text, strlen(text), 0, true) : -ENOMEM;
    if (rc)
        LOG_LIMITED(LOG_LEVEL_WARN, "chat", "direct message not owed to %s: %s", to_user,
                    strerror(-rc));
    free(text);
}

/* msg was stored by this process: owed to its room's offline members, later. */
static void notify_members(chat_service_t *svc, chat_msg_t *msg) {
    if (svc->owed)
        chat_owed_add(svc->owed, msg);
}

/* sendMessage's ack, [{"ok":true,"id":…,"seq":…,"timestamp":…}], written directly (a
 * jansson object would be built only to be dumped once); on the stack, as a store's
 * ids are short. */
static void ack_sent(sio_socket_t *s, int64_t ack, const chat_msg_t *msg) {
    static const char head[] = "[{\"ok\":true,\"id\":", seq[] = ",\"seq\":",
                      ts[] = ",\"timestamp\":";
    if (ack < 0 || !sio_socket_connected(s))
        return;
    size_t id_len = strlen(msg->id);
    size_t need = sizeof head + sizeof seq + sizeof ts + jsonw_string_len(msg->id, id_len) +
                  2 * JSONW_INT_MAX + 2; /* "}]" (the sizeofs' NULs are spare) */
    char stack[SEND_ACK_STACK];
    char *json = need <= sizeof stack ? stack : malloc(need);
    if (!json) {
        LOG_DEBUG("chat", "ack to %s failed: out of memory", sio_socket_id(s));
        return;
    }
    char *end = jsonw_raw(json, LIT(head));
    end = jsonw_string(end, msg->id, id_len);
    end = jsonw_raw(end, LIT(seq));
    end = jsonw_int(end, (int64_t)msg->seq);
    end = jsonw_raw(end, LIT(ts));
    end = jsonw_int(end, msg->timestamp);
    end = jsonw_raw(end, LIT("}]"));
    ack_json(s, ack, json, (size_t)(end - json));
    if (json != stack)
        free(json);
}

static void append_done(int err, chat_msg_t *msg, void *arg) {
    pending_t *p = arg;
    prom_histogram_observe(&p->svc->stats.store_append, (double)(uv_hrtime() - p->since_ns) / 1e9);
    if (p->svc->stopping) {
        service_pending_free(p);
        return;
    }
    if (err) {
        LOG_WARN("chat", "message to %s not stored: %s", p->room, strerror(-err));
        service_ack_error(p->s, p->ack, "internal_error");
        service_pending_free(p);
        return;
    }
    notify_members(p->svc, msg);
    /* Durable, and announced to the room already (publish): answer the sender. */
    ack_sent(p->s, p->ack, msg);
    prom_histogram_observe(&p->svc->stats.ack, (double)(uv_hrtime() - p->since_ns) / 1e9);
    service_pending_free(p);
}

static void on_send(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                    void *arg) {
    chat_service_t *svc = arg;
    chat_conn_t *c = service_conn(s);
    chat_payload_t p;
    const char *err = chat_payload_parse(ev, json_array_get(pl->args, 0), svc->cfg.max_text, &p);
    if (!p.room || !in_chat_room(svc, s, p.room)) {
        service_ack_error(s, ack, p.room ? "not_in_room" : "invalid_payload");
        return;
    }
    if ((err = admit_message(c, err))) {
        refuse_message(s, c, ack, err);
        return;
    }
    pending_t *pd = service_pending_new(svc, s, ack, p.room);
    int rc = pd ? chat_store_append(svc->store, p.room, c->user_id, c->username,
                                    json_string_value(p.text), json_string_length(p.text),
                                    append_done, pd, NULL)
                : -ENOMEM;
    if (rc)
        service_pending_refused(s, ack, pd, rc);
}

static void on_typing(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                      void *arg) {
    chat_conn_t *c = service_conn(s);
    chat_payload_t p;
    if (!parse_in_room(arg, s, ev, pl, ack, &p))
        return;
    to_others(s, p.room, "userTyping",
              json_pack("{s:s,s:s,s:b,s:s}", "userId", c->user_id, "username", c->username,
                        "isTyping", p.is_typing, "roomId", p.room));
    service_ack_ok(s, ack);
}

/* The store's answer to markRead: ok only once the read mark is stored, and only then do
 * the others hear of it: the room (messagesRead) and every connection of the user
 * (roomRead, so that unread counts agree on every device). */
static void mark_read_done(int err, uint64_t mark, void *arg) {
    pending_t *p = arg;
    chat_service_t *svc = p->svc;
    chat_conn_t *c = sio_socket_connected(p->s) ? service_conn(p->s) : NULL;
    if (!svc->stopping && c) {
        if (err == 0) {
            to_others(p->s, p->room, "messagesRead",
                      json_pack("{s:s,s:O,s:s,s:I}", "userId", c->user_id, "messageIds", p->ids,
                                "roomId", p->room, "lastReadSeq", (json_int_t)mark));
            uint64_t last = chat_store_last_seq(svc->store, p->room);
            char mine[USER_ROOM_SIZE];
            service_user_room(mine, c->user_id);
            const char *rooms[1] = {mine};
            sio_target_t to = {.rooms = rooms, .nrooms = 1};
            json_t *args = json_pack("[{s:s,s:I,s:I,s:I}]", "roomId", p->room, "lastReadSeq",
                                     (json_int_t)mark, "lastSeq", (json_int_t)last, "unread",
                                     (json_int_t)(last > mark ? last - mark : 0));
            sio_payload_t out = {args, NULL, 0};
            if (!args || sio_nsp_emit(svc->nsp, &to, "roomRead", &out))
                LOG_DEBUG("chat", "roomRead to %s not sent", c->user_id);
            json_decref(args);
            service_ack_obj(p->s, p->ack,
                            json_pack("{s:b,s:I}", "ok", 1, "lastReadSeq", (json_int_t)mark));
        } else {
            if (err != -ENOENT)
                LOG_WARN("chat", "read receipts for %s not stored: %s", p->room, strerror(-err));
            service_ack_error(p->s, p->ack, err == -ENOENT ? "not_found" : "internal_error");
        }
    }
    service_pending_free(p);
}

static void on_mark_read(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                         void *arg) {
    chat_service_t *svc = arg;
    chat_conn_t *c = service_conn(s);
    chat_payload_t p;
    if (!parse_in_room(svc, s, ev, pl, ack, &p))
        return;
    size_t n = json_array_size(p.message_ids);
    const char **list = calloc(n + 1, sizeof *list);
    if (!list) {
        service_ack_error(s, ack, "internal_error");
        return;
    }
    for (size_t i = 0; i < n; i++)
        list[i] = json_string_value(json_array_get(p.message_ids, i));
    pending_t *pd = service_pending_new(svc, s, ack, p.room);
    if (pd)
        pd->ids = p.message_ids ? json_incref(p.message_ids) : json_array();
    int rc = pd ? chat_store_mark_read(svc->store, p.room, c->user_id, list, n, p.seq,
                                       mark_read_done, pd)
                : -ENOMEM;
    free(list); /* the store copied the strings */
    if (rc)
        service_pending_refused(s, ack, pd, rc);
}

void service_leave_room(sio_socket_t *s, const char *room) {
    chat_conn_t *c = service_conn(s);
    chat_presence_leave(c->svc->presence, s, room, c->user_id, c->username);
}

static void on_direct(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                      void *arg) {
    chat_service_t *svc = arg;
    chat_conn_t *c = service_conn(s);
    chat_payload_t p;
    const char *err = chat_payload_parse(ev, json_array_get(pl->args, 0), svc->cfg.max_text, &p);
    if ((err = admit_message(c, err))) {
        refuse_message(s, c, ack, err);
        return;
    }
    char to_room[USER_ROOM_SIZE], self_room[USER_ROOM_SIZE];
    service_user_room(to_room, p.to_user);
    service_user_room(self_room, c->user_id);
    const char *rooms[2] = {to_room, self_room};
    sio_target_t to = {.rooms = rooms, .nrooms = 2};
    json_t *args =
        json_pack("[{s:s,s:s,s:s,s:O,s:I}]", "from", c->user_id, "fromName", c->username, "to",
                  p.to_user, "text", p.text, "timestamp", (json_int_t)time_wall_ms());
    sio_payload_t out = {args, NULL, 0};
    if (!args || sio_socket_broadcast(s, &to, "directMessage", &out))
        LOG_WARN("chat", "direct message not sent");
    else if (svc->notify && !notify_online(p.to_user, NULL, svc))
        owe_direct(svc, p.to_user, json_array_get(args, 0));
    json_decref(args);
    service_ack_ok(s, ack);
}

static void history_done(int err, chat_msg_t *const *msgs, size_t n, void *arg) {
    pending_t *p = arg;
    buf_t b = {0};
    if (err) {
        LOG_WARN("chat", "history of %s not read: %s", p->room, strerror(-err));
        service_ack_error(p->s, p->ack, "internal_error");
    } else if (sio_socket_connected(p->s) && p->ack >= 0 &&
               (chat_msg_join(&b, "[{\"ok\":true,\"messages\":[", msgs, n, "]}]") ||
                sio_socket_ack_json(p->s, p->ack, (const char *)b.data, b.len))) {
        LOG_DEBUG("chat", "history ack to %s failed", sio_socket_id(p->s));
    }
    buf_free(&b);
    service_pending_free(p);
}

static void on_history(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                       void *arg) {
    chat_service_t *svc = arg;
    chat_payload_t p;
    if (!parse_in_room(svc, s, ev, pl, ack, &p))
        return;
    pending_t *pd = service_pending_new(svc, s, ack, p.room);
    int rc = pd ? chat_store_history(svc->store, p.room, p.before_seq, p.limit, history_done, pd)
                : -ENOMEM;
    if (rc)
        service_pending_refused(s, ack, pd, rc);
}

static void on_unknown(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                       void *arg) {
    LOG_DEBUG("chat", "socket %s: unknown event '%s' ignored", sio_socket_id(s), ev);
}

/* Every event passes here first: one token from the connection's event bucket, or the
 * event is refused (rate_limited; unknown events, which are never answered, just
 * dropped) and counted towards the flood limit. */
static void gate_event(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                       void *arg) {
    const gate_t *g = arg;
    chat_conn_t *c = service_conn(s);
    PARLEY_ASSERT(c != NULL); /* set by the middleware, cleared only on disconnect */
    if (!c)
        return;
    g->svc->stats.events[g - g->svc->gates]++;
    if (g->svc->draining) {
        /* Not answered: the connection is closed soon (chat_service_drain) and the client
         * sends again once it reconnected, to a process that serves. */
        LOG_DEBUG("chat", "socket %s: '%s' while draining, dropped", sio_socket_id(s), ev);
        return;
    }
    if (!take_token(&c->events, g->svc->cfg.event_burst, g->svc->cfg.event_rate)) {
        g->svc->stats.rate_limited++;
        if (g->fn != on_unknown)
            service_ack_error(s, ack, "rate_limited");
        note_refused(s, c);
        return;
    }
    g->fn(s, ev, pl, ack, g->svc);
}

/* ---- lifecycle ---- */

static void conn_free(void *value) {
    chat_conn_t *c = value;
    json_decref(c->rooms);
    free(c);
}

/* A socket.io 2 client (Engine.IO v3) sends no auth payload: its token is the `token`
 * parameter of the handshake query, percent-decoded into a copy the caller frees. NULL
 * when absent or malformed. The token is a credential: it is never logged, and it leaves
 * the handshake once read (this client's own query object, kept only for v3 clients), so
 * that fetchSockets, other nodes and the admin UI never see it. */
static char *query_token(const sio_handshake_t *hs) {
    const char *raw = json_string_value(json_object_get(hs->query, "token"));
    if (hs->protocol != 3 || !raw)
        return NULL;
    size_t len = strlen(raw);
    char *out = malloc(len + 1);
    ssize_t n = out ? http_percent_decode(slice_make(raw, len), out) : -1;
    if (n >= 0 && !memchr(out, '\0', (size_t)n))
        out[n] = '\0';
    else {
        free(out);
        out = NULL;
    }
    if (json_object_del(hs->query, "token"))
        LOG_WARN("chat", "cannot drop the token from a handshake");
    return out;
}

static void auth_middleware(sio_socket_t *s, sio_next_ctx_t *ctx, void *arg) {
    chat_service_t *svc = arg;
    const sio_handshake_t hs = sio_socket_handshake(s);
    const char *token = json_string_value(json_object_get(hs.auth, "token"));
    char *from_query = token ? NULL : query_token(&hs);
    if (from_query)
        token = from_query;
    chat_user_t user;
    json_t *rooms = NULL;
    int verify =
        token ? chat_auth_verify(svc->auth, token, (long)(time_wall_ms() / 1000), &user, &rooms)
              : -1;
    free(from_query);
    if (verify) {
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
    uint64_t now = time_mono_ms();
    c->bucket = (bucket_t){svc->cfg.rate_burst, now};
    c->events = (bucket_t){svc->cfg.event_burst, now};
    c->flood_since_ms = now;
    c->refused = 0;
    sio_socket_set(s, SLOT_CONN, c);
    sio_next(ctx, NULL);
}

bool chat_service_recovery_allow(sio_socket_t *s, json_t *saved, void *arg) {
    (void)arg;
    chat_conn_t *c = service_conn(s);
    const char *owner = json_string_value(json_object_get(saved, DATA_USER));
    if (!c || !owner || strcmp(owner, c->user_id) != 0) {
        LOG_DEBUG("chat", "recovery refused: the session is another user's");
        return false;
    }
    /* Every room the session's token granted must still be granted: the session's rooms
     * (and what they logged while it was away) come back before on_connection could
     * drop them. Without a room claim configured the session holds none. */
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(saved, DATA_ROOMS), i, r) {
        const char *room = json_string_value(r);
        if (room && !chat_auth_room_allowed(c->svc->auth, c->rooms, room)) {
            LOG_DEBUG("chat", "recovery refused: the token no longer grants %s", room);
            return false;
        }
    }
    return true;
}

/* What recovery_allow compares, in socket.data (kept with the session): the user and
 * the token's room claim (shared, not copied). A restored socket brings its session's
 * data: same user (recovery_allow checked it), the room claim of the new token. Out of
 * memory, the socket cannot be recovered later (recovery_allow finds no owner). */
static void remember_owner(sio_socket_t *s, const chat_conn_t *c) {
    json_t *data = sio_socket_data(s);
    if (!data)
        return;
    const char *owner = json_string_value(json_object_get(data, DATA_USER));
    int rc = 0;
    if (!owner || strcmp(owner, c->user_id) != 0)
        rc = json_object_set_new(data, DATA_USER, json_string(c->user_id));
    if (rc == 0 && c->rooms)
        rc = json_object_set(data, DATA_ROOMS, c->rooms);
    else if (rc == 0)
        json_object_del(data, DATA_ROOMS); /* -1 when absent: nothing to do */
    if (rc) {
        json_object_del(data, DATA_USER);
        LOG_DEBUG("chat", "socket %s: owner not kept (out of memory)", sio_socket_id(s));
    }
}

static void collect_room(const char *room, void *arg) {
    json_t **rooms = arg;
    if (*rooms && json_array_append_new(*rooms, json_string(room))) {
        json_decref(*rooms);
        *rooms = NULL;
    }
}

/* A restored socket: it is back in its rooms. It leaves those its token does not grant
 * (recovery_allow already refused a session whose token granted more, so this holds
 * the invariant rather than doing the work) and counts present in the others. */
static void restore_rooms(sio_socket_t *s, chat_conn_t *c) {
    chat_service_t *svc = c->svc;
    json_t *rooms = json_array();
    sio_socket_rooms(s, collect_room, &rooms);
    if (!rooms) {
        LOG_WARN("chat", "socket %s recovered: out of memory, disconnected", sio_socket_id(s));
        sio_socket_disconnect(s, true);
        return;
    }
    size_t i;
    json_t *r;
    json_array_foreach(rooms, i, r) {
        const char *room = json_string_value(r);
        if (strcmp(room, sio_socket_id(s)) == 0 || !service_is_chat_room(svc, room))
            continue;
        if (!chat_auth_room_allowed(svc->auth, c->rooms, room)) {
            if (sio_socket_leave(s, room))
                LOG_WARN("chat", "socket %s: cannot leave %s", sio_socket_id(s), room);
            continue;
        }
        if (chat_presence_join(svc->presence, s, room, c->user_id, c->username))
            LOG_WARN("chat", "socket %s: presence in %s not restored: out of memory",
                     sio_socket_id(s), room);
    }
    json_decref(rooms);
}

static void on_connection(sio_socket_t *s, void *arg) {
    chat_service_t *svc = arg;
    chat_conn_t *c = service_conn(s);
    if (!c) {
        sio_socket_disconnect(s, true);
        return;
    }
    if (svc->cfg.recovery)
        remember_owner(s, c);
    char room[USER_ROOM_SIZE];
    service_user_room(room, c->user_id);
    if (sio_socket_recovered(s)) {
        restore_rooms(s, c);
    } else {
        int rc = sio_socket_join(s, room);
        if (rc) {
            LOG_WARN("chat", "socket %s: cannot join %s: %s", sio_socket_id(s), room,
                     strerror(-rc));
            sio_socket_disconnect(s, true);
            return;
        }
    }
    /* With the notifier, counted so that it knows the user is online (never announced).
     * Only then: it costs about 500 bytes per connection (docs/BENCHMARKS.md). */
    if (svc->notify && chat_presence_join(svc->presence, s, room, c->user_id, c->username))
        LOG_WARN("chat", "socket %s: not counted online: out of memory", sio_socket_id(s));
    service_send_my_rooms(svc, s, c, false);
}

static void on_disconnect(sio_socket_t *s, const char *reason, void *arg) {
    chat_service_t *svc = arg;
    chat_conn_t *c = service_conn(s);
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
        if (strcmp(room, sio_socket_id(s)) != 0 && service_is_chat_room(svc, room))
            service_leave_room(s, room);
    }
    json_decref(rooms);
    char mine[USER_ROOM_SIZE];
    service_user_room(mine, c->user_id);
    if (svc->notify)
        service_leave_room(s, mine);
    sio_socket_set(s, SLOT_CONN, NULL);
    conn_free(c);
}

/* The events the service answers, each through its gate (gate_event). */
static const struct {
    const char *name; /* NULL: every event without a handler of its own */
    sio_event_fn fn;
} gate_events[GATES] = {
    [GATE_JOIN] = {"joinRoom", service_on_join},
    [GATE_SEND] = {"sendMessage", on_send},
    [GATE_TYPING] = {"typing", on_typing},
    [GATE_READ] = {"markRead", on_mark_read},
    [GATE_LEAVE] = {"leaveRoom", service_on_leave},
    [GATE_DIRECT] = {"sendDirect", on_direct},
    [GATE_HISTORY] = {"history", on_history},
    [GATE_JOIN_ROOMS] = {"joinRooms", service_on_join_rooms},
    [GATE_UNKNOWN] = {NULL, on_unknown},
};

int chat_service_new(sio_server_t *io, chat_store_t *store, const chat_auth_t *auth,
                     const chat_config_t *cfg, chat_service_t **out) {
    chat_service_t *svc = calloc(1, sizeof *svc);
    if (!svc || map_init(&svc->buckets)) {
        free(svc);
        return -ENOMEM;
    }

    svc->io = io;
    svc->nsp = sio_server_of(io, "/");
    if (!svc->nsp || chat_presence_new(svc->nsp, cfg->presence_limit, &svc->presence)) {
        map_free(&svc->buckets);
        free(svc);
        return -ENOMEM;
    }
    svc->store = store;
    svc->auth = auth;
    svc->cfg = *cfg;
    /* Every message is an event: the event bucket is never the tighter one for them. */
    if (svc->cfg.event_burst < svc->cfg.rate_burst)
        svc->cfg.event_burst = svc->cfg.rate_burst;
    if (svc->cfg.event_rate < svc->cfg.rate_per_sec)
        svc->cfg.event_rate = svc->cfg.rate_per_sec;
    int rc = svc->nsp ? 0 : -ENOMEM;
    if (rc == 0)
        rc = sio_nsp_use(svc->nsp, auth_middleware, svc);
    if (rc == 0)
        rc = sio_nsp_slot_free(svc->nsp, SLOT_CONN, conn_free);
    if (rc == 0)
        rc = sio_nsp_on_connection(svc->nsp, on_connection, svc);
    if (rc == 0)
        rc = sio_nsp_on_disconnect(svc->nsp, on_disconnect, svc);
    if (rc == 0)
        rc = sio_nsp_on_broadcast(svc->nsp, on_room_broadcast, svc);
    if (rc == 0)
        chat_store_on_stored(store, publish, svc);
    for (size_t i = 0; rc == 0 && i < GATES; i++) {
        svc->gates[i] = (gate_t){svc, gate_events[i].fn};
        rc = gate_events[i].name
                 ? sio_nsp_on(svc->nsp, gate_events[i].name, gate_event, &svc->gates[i])
                 : sio_nsp_on_any(svc->nsp, gate_event, &svc->gates[i]);
    }
    if (rc) {
        chat_service_free(svc);
        return rc;
    }
    *out = svc;
    return 0;
}

void chat_service_drain(chat_service_t *svc, void (*drained)(void *arg), void *arg) {
    PARLEY_ASSERT(!svc->draining);
    svc->draining = true;
    svc->drained = drained;
    svc->drained_arg = arg;
    if (svc->inflight == 0) {
        svc->drained = NULL;
        drained(arg);
    }
}

void chat_service_stop(chat_service_t *svc) {
    svc->stopping = true;
    svc->notify = NULL; /* closed after this: nothing more is owed */
    chat_owed_close(svc->owed);
    svc->owed = NULL;
    chat_presence_stop(svc->presence);
}

void chat_service_free(chat_service_t *svc) {
    map_entry_t *e;
    chat_presence_free(svc->presence);
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
        bucket_refill(&u->bucket, svc->cfg.rate_burst, svc->cfg.rate_per_sec);
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
    chat_service_t *svc = p->svc;
    if (err == -EDQUOT) {
        p->cb("rate_limited", NULL, p->arg); /* the shared bucket (workers, Redis) */
    } else {
        if (err)
            LOG_WARN("chat", "posted message not stored: %s", strerror(-err));
        else if (!svc->stopping)
            notify_members(svc, msg);
        p->cb(err ? "internal_error" : NULL, err ? NULL : msg, p->arg);
    }
    free(p);
    work_done(svc);
}

const char *chat_service_post(chat_service_t *svc, const char *room_id, const chat_user_t *user,
                              json_t *text, bool rate_limit, unsigned *retry_after_s,
                              chat_post_cb cb, void *arg) {
    if (svc->draining)
        return "unavailable"; /* the HTTP API answers 503: post to a process that serves */
    const char *err = check_text(text, svc->cfg.max_text);
    if (err)
        return err;
    if (rate_limit) {
        /* The user's posts may land on any worker or node: a store shared by them keeps
         * the bucket (-ENOTSUP: this process counts its own, below). */
        post_t *p = malloc(sizeof *p);
        if (!p)
            return "internal_error";
        *p = (post_t){svc, cb, arg};
        int rc = chat_store_append_limited(
            svc->store, room_id, user->user_id, user->username, json_string_value(text),
            json_string_length(text), (uint32_t)svc->cfg.rate_burst,
            svc->cfg.rate_per_sec < 1 ? 1 : (uint32_t)svc->cfg.rate_per_sec, post_done, p);
        if (rc != -ENOTSUP) {
            if (rc == 0) {
                svc->inflight++;
                return NULL;
            }
            free(p);
            return "internal_error";
        }
        free(p);
    }
    if (rate_limit) {
        bucket_t *b = user_bucket(svc, user->user_id);
        if (!b)
            return "internal_error";
        if (!take_message_token(svc, b)) {
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
    svc->inflight++;
    return NULL;
}

const char *chat_service_event_name(size_t i) {
    return i < GATES && gate_events[i].name ? gate_events[i].name : "other";
}

void chat_service_stats(const chat_service_t *svc, chat_service_stats_t *out) {
    *out = svc->stats;
}
