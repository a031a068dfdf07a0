/* chat/members.c — the chat's membership events (see service_internal.h, and
 * docs/CHAT-API.md "Membership"; docs/MEMBERSHIP.md says why it is built so).
 *
 * joinRoom and joinRooms write the membership before the socket enters the room, so an
 * ok means it is durable; a join that changes nothing writes nothing (the store answers
 * at once). myRooms goes to a new connection and, after a join or a forget, to every
 * connection of the user. leaveRoom's forget ends the membership. The membership reads
 * for other front ends (chat_service_user_rooms, chat_service_memberships) are here
 * too. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/service_internal.h"
#include "util/buf.h"
#include "util/log.h"

/* The rooms of a user as `myRooms` lists them: [{roomId, lastSeq, lastReadSeq, unread}],
 * only those the claim grants (--room-claim). NULL when out of memory. */
static json_t *my_rooms_json(const chat_service_t *svc, const json_t *claim,
                             const chat_user_room_t *rooms, size_t n) {
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) {
        const chat_user_room_t *r = &rooms[i];
        if (!chat_auth_room_allowed(svc->auth, claim, r->room_id))
            continue;
        uint64_t unread = r->last_seq > r->last_read_seq ? r->last_seq - r->last_read_seq : 0;
        if (json_array_append_new(list, json_pack("{s:s,s:I,s:I,s:I}", "roomId", r->room_id,
                                                  "lastSeq", (json_int_t)r->last_seq, "lastReadSeq",
                                                  (json_int_t)r->last_read_seq, "unread",
                                                  (json_int_t)unread))) {
            json_decref(list);
            list = NULL;
        }
    }
    return list;
}

static void my_rooms_read(int err, const chat_user_room_t *rooms, size_t n, void *arg) {
    pending_t *p = arg;
    chat_service_t *svc = p->svc;
    json_t *list = err ? NULL : my_rooms_json(svc, p->claim, rooms, n);
    json_t *args = list ? json_pack("[o]", list) : NULL;
    char *text = args ? json_dumps(args, JSON_COMPACT) : NULL;
    int rc = -ENOMEM;
    if (!text) {
        if (err)
            LOG_WARN("chat", "rooms of %s not read: %s", p->room, strerror(-err));
    } else if (p->to_user) {
        char mine[USER_ROOM_SIZE];
        service_user_room(mine, p->room);
        const char *targets[1] = {mine};
        sio_target_t to = {.rooms = targets, .nrooms = 1};
        rc = svc->stopping ? 0 : sio_nsp_emit_json(svc->nsp, &to, "myRooms", text, strlen(text));
    } else if (sio_socket_connected(p->s)) {
        rc = sio_socket_emit_json(p->s, "myRooms", text, strlen(text), SIO_NO_RECOVERY);
    } else {
        rc = 0;
    }
    if (text && rc)
        LOG_DEBUG("chat", "myRooms of %s not sent", p->room);
    free(text);
    json_decref(args);
    service_pending_free(p);
}

/* Sends myRooms to s, or (to_user) to every connection of s's user, whichever process
 * holds it. */
void service_send_my_rooms(chat_service_t *svc, sio_socket_t *s, const chat_conn_t *c,
                           bool to_user) {
    pending_t *pd = service_pending_new(svc, s, -1, c->user_id);
    if (pd) {
        pd->claim = json_incref(c->rooms);
        pd->to_user = to_user;
    }
    int rc = pd ? chat_store_user_rooms(svc->store, c->user_id, my_rooms_read, pd) : -ENOMEM;
    if (rc) {
        LOG_WARN("chat", "rooms of %s not read: %s", c->user_id, strerror(-rc));
        if (pd)
            service_pending_free(pd);
    }
}

bool chat_service_online(chat_service_t *svc, const char *room_id, const char *user_id) {
    return chat_presence_has(svc->presence, room_id, user_id);
}

/* A membership read for another front end (chat_service_user_rooms, _memberships). */
typedef struct {
    chat_service_t *svc;
    json_t *claim;
    chat_json_cb cb;
    void *arg;
    char room[CHAT_ROOM_ID_MAX + 1];
} json_read_t;

static json_read_t *json_read_new(chat_service_t *svc, const json_t *claim, const char *room,
                                  chat_json_cb cb, void *arg) {
    json_read_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    *r = (json_read_t){.svc = svc, .claim = json_incref((json_t *)claim), .cb = cb, .arg = arg};
    snprintf(r->room, sizeof r->room, "%s", room ? room : "");
    return r;
}

static void json_read_free(json_read_t *r) {
    json_decref(r->claim);
    free(r);
}

static void user_rooms_read(int err, const chat_user_room_t *rooms, size_t n, void *arg) {
    json_read_t *r = arg;
    r->cb(err ? NULL : my_rooms_json(r->svc, r->claim, rooms, n), r->arg);
    json_read_free(r);
}

int chat_service_user_rooms(chat_service_t *svc, const char *user_id, const json_t *claim,
                            chat_json_cb cb, void *arg) {
    json_read_t *r = json_read_new(svc, claim, NULL, cb, arg);
    int rc = r ? chat_store_user_rooms(svc->store, user_id, user_rooms_read, r) : -ENOMEM;
    if (rc && r)
        json_read_free(r);
    return rc;
}

static void members_read(int err, const chat_member_t *members, size_t n, uint64_t last_seq,
                         void *arg) {
    json_read_t *r = arg;
    json_t *list = err ? NULL : json_array();
    for (size_t i = 0; list && i < n; i++) {
        const chat_member_t *m = &members[i];
        if (json_array_append_new(
                list,
                json_pack("{s:s,s:s,s:b,s:I,s:I}", "userId", m->user_id, "username", m->username,
                          "online", chat_presence_has(r->svc->presence, r->room, m->user_id),
                          "lastReadSeq", (json_int_t)m->last_read_seq, "joinedAt",
                          (json_int_t)m->joined_at))) {
            json_decref(list);
            list = NULL;
        }
    }
    r->cb(list ? json_pack("{s:I,s:o}", "lastSeq", (json_int_t)last_seq, "members", list) : NULL,
          r->arg);
    json_read_free(r);
}

int chat_service_memberships(chat_service_t *svc, const char *room_id, chat_json_cb cb, void *arg) {
    json_read_t *r = json_read_new(svc, NULL, room_id, cb, arg);
    int rc = r ? chat_store_members(svc->store, room_id, members_read, r) : -ENOMEM;
    if (rc && r)
        json_read_free(r);
    return rc;
}

/* joinRooms: the joins of one event, answered together once the last one is. */
struct join_batch {
    pending_t *p;    /* the event's ack */
    json_t *results; /* one ack object per room, in order */
    size_t waiting;
    bool news;     /* rooms were named: the user's connections get a new myRooms */
    bool starting; /* its joins are being started: it cannot finish yet */
};

/* One join of the batch is answered with obj (taken; NULL: nothing to say, the socket is
 * gone), or index SIZE_MAX: the batch's own count. The last one answers the event. */
static void batch_settle(join_batch_t *b, size_t index, json_t *obj) {
    if (index != SIZE_MAX && obj && json_array_set_new(b->results, index, obj))
        LOG_DEBUG("chat", "a joinRooms result was lost (out of memory)");
    if (--b->waiting || b->starting)
        return;
    chat_conn_t *c = sio_socket_connected(b->p->s) ? service_conn(b->p->s) : NULL;
    if (b->news && c && !b->p->svc->stopping)
        service_send_my_rooms(b->p->svc, b->p->s, c, true);
    service_ack_obj(b->p->s, b->p->ack, json_pack("{s:b,s:O}", "ok", 1, "rooms", b->results));
    json_decref(b->results);
    service_pending_free(b->p);
    free(b);
}

/* The answer of one join: to its own ack (joinRoom), or into its batch (joinRooms). obj is
 * taken. */
static void join_answer(pending_t *p, json_t *obj) {
    if (p->batch)
        batch_settle(p->batch, p->index, obj);
    else
        service_ack_obj(p->s, p->ack, obj);
}

/* A joinRooms result names its room; a joinRoom answer is the plain error. */
static void join_failed(pending_t *p, const char *error) {
    join_answer(p, p->batch ? json_pack("{s:b,s:s,s:s}", "ok", 0, "roomId", p->room, "error", error)
                            : json_pack("{s:b,s:s}", "ok", 0, "error", error));
    service_pending_free(p);
}

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
        join_answer(p, json_pack("{s:b,s:s,s:o}", "ok", 1, "roomId", p->room, "members",
                                 chat_service_members(p->svc, p->room)));
    } else if (p->batch) {
        join_answer(p, NULL);
    }
    service_pending_free(p);
}

/* The number of chat rooms s is in: its rooms but its own id's and user:<id>. */
static size_t chat_room_count(sio_socket_t *s, const chat_conn_t *c) {
    char mine[USER_ROOM_SIZE];
    service_user_room(mine, c->user_id);
    size_t n = sio_socket_room_count(s);
    return n - (n > 0 && sio_socket_in(s, mine));
}

/* The room's rules for s: NULL when s may be in it (or is), else the error. */
static const char *join_check(chat_service_t *svc, sio_socket_t *s, const chat_conn_t *c,
                              const char *room) {
    if (!service_is_chat_room(svc, room) || !chat_auth_room_allowed(svc->auth, c->rooms, room))
        return "forbidden";
    if (!sio_socket_in(s, room) && chat_room_count(s, c) >= svc->cfg.max_rooms)
        return "too_many_rooms";
    return NULL;
}

/* The membership is durable: s enters the room (live) and gets its history. */
static void join_stored(int err, void *arg) {
    pending_t *p = arg;
    chat_service_t *svc = p->svc;
    sio_socket_t *s = p->s;
    chat_conn_t *c = service_conn(s);
    if (svc->stopping || !sio_socket_connected(s) || !c) {
        if (p->batch)
            join_answer(p, NULL);
        service_pending_free(p);
        return;
    }
    if (err) {
        LOG_WARN("chat", "membership of %s in %s not stored: %s", c->user_id, p->room,
                 strerror(-err));
        join_failed(p, "internal_error");
        return;
    }
    const char *refused = join_check(svc, s, c, p->room);
    if (refused) {
        join_failed(p, refused);
        return;
    }
    if (!sio_socket_in(s, p->room)) {
        if (sio_socket_join(s, p->room)) {
            join_failed(p, "internal_error");
            return;
        }
        if (chat_presence_join(svc->presence, s, p->room, c->user_id, c->username)) {
            /* Uncounted, the user would never be announced as leaving: undo the join. */
            if (sio_socket_leave(s, p->room))
                LOG_WARN("chat", "socket %s: cannot leave %s", sio_socket_id(s), p->room);
            join_failed(p, "internal_error");
            return;
        }
    }
    if (!p->batch)
        service_send_my_rooms(svc, s, c, true);
    int rc =
        chat_store_history(svc->store, p->room, 0, svc->cfg.history_size, join_history_done, p);
    if (rc) {
        LOG_WARN("chat", "history of %s not read: %s", p->room, strerror(-rc));
        join_failed(p, "internal_error");
    }
}

/* Joins s to room: checks, the membership written (when new), then the live room and its
 * history; answered to ack, or into batch at index. */
static void join_one(chat_service_t *svc, sio_socket_t *s, const char *room, int64_t ack,
                     join_batch_t *batch, size_t index) {
    chat_conn_t *c = service_conn(s);
    pending_t *pd = service_pending_new(svc, s, ack, room);
    if (!pd) {
        if (batch)
            batch_settle(batch, index, NULL);
        else
            service_ack_error(s, ack, "internal_error");
        return;
    }
    pd->batch = batch;
    pd->index = index;
    const char *refused = join_check(svc, s, c, room);
    if (refused) {
        join_failed(pd, refused);
        return;
    }
    int rc = chat_store_join(svc->store, room, c->user_id, c->username, join_stored, pd);
    if (rc) {
        LOG_DEBUG("chat", "socket %s: store refused a join: %s", sio_socket_id(s), strerror(-rc));
        join_failed(pd, "internal_error");
    }
}

void service_on_join(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                     void *arg) {
    chat_service_t *svc = arg;
    chat_payload_t p;
    chat_payload_parse(ev, json_array_get(pl->args, 0), svc->cfg.max_text, &p);
    if (!p.room) {
        service_ack_error(s, ack, "invalid_payload");
        return;
    }
    join_one(svc, s, p.room, ack, NULL, 0);
}

/* Starts the joins of a joinRooms; rooms is an array of valid room ids (news: named by
 * the client, so new memberships may follow). The batch holds one extra count while the
 * joins start, so that answers given at once cannot finish it before the last one
 * started. The rooms the socket may still enter are counted out here, before any
 * membership is written: the joins of one batch enter their rooms only later. */
static void join_rooms_start(pending_t *p, json_t *rooms, bool news) {
    join_batch_t *b = calloc(1, sizeof *b);
    size_t n = json_array_size(rooms);
    if (b)
        b->results = json_array();
    for (size_t i = 0; b && b->results && i < n; i++) {
        if (json_array_append_new(b->results, json_null()))
            break;
    }
    if (!b || !b->results || json_array_size(b->results) != n) {
        if (b)
            json_decref(b->results);
        free(b);
        service_ack_error(p->s, p->ack, "internal_error");
        service_pending_free(p);
        return;
    }
    b->p = p;
    b->waiting = n + 1;
    b->news = news;
    b->starting = true;
    chat_conn_t *c = service_conn(p->s);
    size_t in = chat_room_count(p->s, c);
    size_t room_left = p->svc->cfg.max_rooms > in ? p->svc->cfg.max_rooms - in : 0;
    size_t i = 0;
    /* The analyzer cannot see that b->starting keeps the joins from finishing b before
     * the last line: its count holds one more than the joins. */
    /* NOLINTBEGIN(clang-analyzer-unix.Malloc) */
    for (; i < n && sio_socket_connected(p->s); i++) {
        const char *room = json_string_value(json_array_get(rooms, i));
        if (!sio_socket_in(p->s, room) && room_left-- == 0) {
            /* Answered here: the batch's own count keeps it open until the end. */
            room_left = 0;
            b->waiting--;
            if (json_array_set_new(
                    b->results, i,
                    json_pack("{s:b,s:s,s:s}", "ok", 0, "roomId", room, "error", "too_many_rooms")))
                LOG_DEBUG("chat", "a joinRooms result was lost (out of memory)");
            continue;
        }
        join_one(p->svc, p->s, room, -1, b, i);
    }
    b->waiting -= n - i; /* not started: the socket went away */
    b->starting = false;
    batch_settle(b, SIZE_MAX, NULL);
} /* NOLINTEND(clang-analyzer-unix.Malloc) */

/* joinRooms without roomIds: every membership the token grants. */
static void join_rooms_listed(int err, const chat_user_room_t *rooms, size_t n, void *arg) {
    pending_t *p = arg;
    json_t *ids = err ? NULL : json_array();
    for (size_t i = 0; ids && i < n; i++) {
        if (chat_auth_room_allowed(p->svc->auth, p->claim, rooms[i].room_id) &&
            json_array_append_new(ids, json_string(rooms[i].room_id))) {
            json_decref(ids);
            ids = NULL;
        }
    }
    if (!ids || p->svc->stopping || !sio_socket_connected(p->s)) {
        if (err)
            LOG_WARN("chat", "rooms of %s not read: %s", p->room, strerror(-err));
        service_ack_error(p->s, p->ack, "internal_error");
        service_pending_free(p);
    } else {
        join_rooms_start(p, ids, false);
    }
    json_decref(ids);
}

void service_on_join_rooms(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                           void *arg) {
    chat_service_t *svc = arg;
    chat_payload_t p;
    if (chat_payload_parse(ev, json_array_get(pl->args, 0), svc->cfg.max_text, &p)) {
        service_ack_error(s, ack, "invalid_payload");
        return;
    }
    pending_t *pd = service_pending_new(svc, s, ack, service_conn(s)->user_id);
    if (!pd) {
        service_ack_error(s, ack, "internal_error");
        return;
    }
    pd->claim = json_incref(service_conn(s)->rooms);
    if (p.room_ids) {
        join_rooms_start(pd, p.room_ids, true);
        return;
    }
    int rc = chat_store_user_rooms(svc->store, service_conn(s)->user_id, join_rooms_listed, pd);
    if (rc)
        service_pending_refused(s, ack, pd, rc);
}

/* leaveRoom {forget: true}: the membership is gone; every connection of the user hears
 * it through a new myRooms. */
static void forget_done(int err, void *arg) {
    pending_t *p = arg;
    chat_conn_t *c = sio_socket_connected(p->s) ? service_conn(p->s) : NULL;
    if (err)
        LOG_WARN("chat", "membership in %s not ended: %s", p->room, strerror(-err));
    if (!p->svc->stopping && c) {
        if (err)
            service_ack_error(p->s, p->ack, "internal_error");
        else
            service_ack_ok(p->s, p->ack);
        if (!err)
            service_send_my_rooms(p->svc, p->s, c, true);
    }
    service_pending_free(p);
}

void service_on_leave(sio_socket_t *s, const char *ev, const sio_payload_t *pl, int64_t ack,
                      void *arg) {
    chat_service_t *svc = arg;
    chat_payload_t p;
    const char *err = chat_payload_parse(ev, json_array_get(pl->args, 0), svc->cfg.max_text, &p);
    if (!p.room || err) {
        service_ack_error(s, ack, "invalid_payload");
        return;
    }
    if (sio_socket_in(s, p.room) && service_is_chat_room(svc, p.room)) {
        service_leave_room(s,
                           p.room); /* announced while still in the room, so "others" excludes it */
        if (sio_socket_leave(s, p.room)) {
            service_ack_error(s, ack, "internal_error");
            return;
        }
    }
    if (!p.forget) {
        service_ack_ok(s, ack);
        return;
    }
    if (!service_is_chat_room(svc, p.room)) {
        service_ack_error(s, ack, "forbidden");
        return;
    }
    pending_t *pd = service_pending_new(svc, s, ack, p.room);
    int rc = pd ? chat_store_forget(svc->store, p.room, service_conn(s)->user_id, forget_done, pd)
                : -ENOMEM;
    if (rc)
        service_pending_refused(s, ack, pd, rc);
}
