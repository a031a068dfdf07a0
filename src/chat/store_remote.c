/* chat/store_remote.c — a worker's store: requests to the store owner (store_remote.h).
 *
 * Every call becomes a frame with a request number; the answer finds the caller's
 * callback by that number. Callbacks never run from inside the call (as the local store's
 * appends), and history may answer later than appends sent after it (the owner reads old
 * pages on a worker thread): nothing here depends on the order of answers. STORED frames
 * are handed to the on_stored observer as they come, which is the owner's store order.
 * Writes go to the owner even while its store is failing (it refuses them with the
 * failure, and is the one to know when it recovers). Closing waits for the answers due (the owner
 * outlives its workers); when the channel is gone they fail with -EPIPE. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chat/store_internal.h"
#include "chat/store_remote.h"
#include "cluster/wire.h"
#include "util/log.h"

/* What a request waits for: its kind says which answer frame and which callback. */
typedef enum { REQ_APPEND, REQ_MARK, REQ_READ, REQ_MEMBERSHIP, REQ_ROOMS, REQ_MEMBERS } req_kind_t;

typedef struct req {
    struct req *next;
    uint32_t id;
    req_kind_t kind;
    chat_store_append_cb append_cb;
    chat_store_mark_cb mark_cb;
    chat_store_history_cb read_cb;
    chat_store_done_cb done_cb; /* join, forget */
    chat_store_user_rooms_cb rooms_cb;
    chat_store_members_cb members_cb;
    void *arg;
} req_t;

/* An answer as decoded from its frame, for any kind of request (the fields its kind has;
 * the arrays borrowed for the callback). */
typedef struct {
    int err;
    chat_msg_t *const *msgs; /* APPEND (at most one), READ */
    size_t n;                /* msgs, rooms or members */
    uint64_t seq;            /* MARK: the mark; MEMBERS: the room's last seq */
    const chat_user_room_t *rooms;
    const chat_member_t *members;
} answer_t;

typedef struct room_seq {
    uint64_t seq;
    char id[]; /* the map key */
} room_seq_t;

typedef struct {
    store_head_t head; /* first: see store_internal.h */
    uv_loop_t *loop;
    parley_worker_t *w;
    req_t *reqs; /* waiting for an answer; few at a time per worker */
    size_t nreqs;
    uint32_t next_id;
    map_t last; /* room → the last seq seen (room_seq_t) */
    int health;
    char why[128];
    bool closing;
    void (*close_done)(void *arg);
    void *close_arg;
    uv_idle_t finish; /* runs close_done outside the caller's stack */
} remote_t;

static const chat_store_ops_t remote_ops;

static remote_t *remote_of(chat_store_t *st) {
    return (remote_t *)st;
}

/* ---- messages on the wire (shared with the owner) ---- */

int chat_wire_put_msg(buf_t *b, const chat_msg_t *m) {
    int rc = wire_str(b, m->id);
    if (rc == 0)
        rc = wire_u64(b, m->seq);
    if (rc == 0)
        rc = wire_u64(b, (uint64_t)m->timestamp);
    if (rc == 0)
        rc = wire_str(b, m->room_id);
    if (rc == 0)
        rc = wire_str(b, m->user_id);
    if (rc == 0)
        rc = wire_str(b, m->username);
    if (rc == 0)
        rc = wire_bytes(b, m->text, m->text_len);
    return rc;
}

int chat_wire_get_msg(wire_reader_t *r, chat_msg_t **out) {
    slice_t id = wire_get_bytes(r);
    uint64_t seq = wire_get_u64(r);
    int64_t ts = (int64_t)wire_get_u64(r);
    slice_t room = wire_get_bytes(r), user = wire_get_bytes(r), name = wire_get_bytes(r);
    slice_t text = wire_get_bytes(r);
    if (r->bad)
        return -EINVAL;
    store_msg_fields_t f = {id.base,  room.base, user.base, name.base, text.base, id.len,
                            room.len, user.len,  name.len,  text.len,  seq,       ts};
    return store_msg_new(&f, true, out);
}

/* ---- requests ---- */

static int send_frame(remote_t *rs, buf_t *b, size_t start, int rc) {
    if (rc == 0) {
        wire_end(b, start);
        rc = cluster_worker_send(rs->w, b->data, b->len);
    }
    buf_free(b);
    return rc;
}

static req_t *req_new(remote_t *rs, req_kind_t kind, void *arg) {
    req_t *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->id = ++rs->next_id;
    q->kind = kind;
    q->arg = arg;
    return q;
}

static void req_add(remote_t *rs, req_t *q) {
    q->next = rs->reqs;
    rs->reqs = q;
    rs->nreqs++;
}

static req_t *req_take(remote_t *rs, uint32_t id) {
    for (req_t **p = &rs->reqs; *p; p = &(*p)->next) {
        if ((*p)->id == id) {
            req_t *q = *p;
            *p = q->next;
            rs->nreqs--;
            return q;
        }
    }
    return NULL;
}

/* A request frame of `type` begun in *b with its number; *q is the request, to be sent
 * with req_send. Returns 0, or -ECANCELED when closing, -ENOMEM. */
static int req_begin(remote_t *rs, req_kind_t kind, uint8_t type, void *arg, req_t **q, buf_t *b,
                     size_t *start) {
    if (rs->closing)
        return -ECANCELED;
    if (!(*q = req_new(rs, kind, arg)))
        return -ENOMEM;
    int rc = wire_begin(b, type, start);
    if (rc == 0)
        rc = wire_u32(b, (*q)->id);
    return rc;
}

/* Sends the frame begun with req_begin (rc: how writing its fields went) and waits for
 * the answer; on failure nothing is waited for. */
static int req_send(remote_t *rs, req_t *q, buf_t *b, size_t start, int rc) {
    if ((rc = send_frame(rs, b, start, rc))) {
        free(q);
        return rc;
    }
    req_add(rs, q);
    return 0;
}

/* The handle lives in rs: rs goes once libuv has closed it. */
static void handle_freed(uv_handle_t *h) {
    free(h->data);
}

/* Closed, nothing due: the caller hears of it from the loop, not from inside a call. */
static void finish_cb(uv_idle_t *h) {
    remote_t *rs = h->data;
    if (uv_idle_stop(h))
        LOG_DEBUG(STORE_TAG, "idle stop failed");
    void (*done)(void *) = rs->close_done;
    void *arg = rs->close_arg;
    if (cluster_worker_on_app(rs->w, CHAT_F_DONE, CHAT_F_HEALTH, NULL, NULL))
        LOG_DEBUG(STORE_TAG, "store frames not unregistered");
    map_entry_t *e;
    for (size_t i = 0; map_next(&rs->last, &i, &e);)
        free(e->value);
    map_free(&rs->last);
    uv_close((uv_handle_t *)h, handle_freed);
    if (done)
        done(arg);
}

static void maybe_finish(remote_t *rs) {
    if (!rs->closing || rs->nreqs || uv_is_active((uv_handle_t *)&rs->finish) ||
        uv_is_closing((uv_handle_t *)&rs->finish))
        return;
    if (uv_idle_start(&rs->finish, finish_cb))
        LOG_ERROR(STORE_TAG, "remote store not closed cleanly");
}

/* q's callback with answer a (with an error, nothing but the error is passed on). */
static void req_answer(remote_t *rs, req_t *q, const answer_t *a) {
    int err = a->err;
    size_t n = err ? 0 : a->n;
    switch (q->kind) {
    case REQ_APPEND:
        if (q->append_cb)
            q->append_cb(err, n ? a->msgs[0] : NULL, q->arg);
        break;
    case REQ_MARK:
        if (q->mark_cb)
            q->mark_cb(err, err ? 0 : a->seq, q->arg);
        break;
    case REQ_READ:
        q->read_cb(err, n ? a->msgs : NULL, n, q->arg);
        break;
    case REQ_MEMBERSHIP:
        if (q->done_cb)
            q->done_cb(err, q->arg);
        break;
    case REQ_ROOMS:
        q->rooms_cb(err, n ? a->rooms : NULL, n, q->arg);
        break;
    case REQ_MEMBERS:
        q->members_cb(err, n ? a->members : NULL, n, err ? 0 : a->seq, q->arg);
        break;
    }
    free(q);
    maybe_finish(rs);
}

static void req_fail(remote_t *rs, req_t *q, int err) {
    answer_t a = {.err = err};
    req_answer(rs, q, &a);
}

static void seen(remote_t *rs, const chat_msg_t *m) {
    size_t len = strlen(m->room_id);
    room_seq_t *r = map_get(&rs->last, m->room_id, len);
    if (!r) {
        if (!(r = calloc(1, sizeof *r + len + 1)))
            return;
        memcpy(r->id, m->room_id, len + 1);
        if (map_put(&rs->last, r->id, len, r)) {
            free(r);
            return;
        }
    }
    if (m->seq > r->seq)
        r->seq = m->seq;
}

static int send_append(remote_t *rs, const char *room_id, const char *user_id, const char *username,
                       const char *text, size_t text_len, uint32_t burst, uint32_t per_sec,
                       chat_store_append_cb cb, void *arg) {
    if (!room_id || !user_id || !username || (!text && text_len))
        return -EINVAL;
    req_t *q = NULL;
    buf_t b = {0};
    size_t start = 0;
    int rc = req_begin(rs, REQ_APPEND, CHAT_F_APPEND, arg, &q, &b, &start);
    if (!q)
        return rc;
    q->append_cb = cb;
    if (rc == 0)
        rc = wire_str(&b, room_id);
    if (rc == 0)
        rc = wire_str(&b, user_id);
    if (rc == 0)
        rc = wire_str(&b, username);
    if (rc == 0)
        rc = wire_bytes(&b, text, text_len);
    if (rc == 0)
        rc = wire_u32(&b, burst);
    if (rc == 0)
        rc = wire_u32(&b, per_sec);
    return req_send(rs, q, &b, start, rc);
}

static int r_append(chat_store_t *st, const char *room_id, const char *user_id,
                    const char *username, const char *text, size_t text_len,
                    chat_store_append_cb cb, void *arg, chat_msg_t **out) {
    if (out)
        *out = NULL; /* the seq is the owner's to assign: known with the answer */
    return send_append(remote_of(st), room_id, user_id, username, text, text_len, 0, 0, cb, arg);
}

static int r_append_limited(chat_store_t *st, const char *room_id, const char *user_id,
                            const char *username, const char *text, size_t text_len, uint32_t burst,
                            uint32_t per_sec, chat_store_append_cb cb, void *arg) {
    return send_append(remote_of(st), room_id, user_id, username, text, text_len, burst, per_sec,
                       cb, arg);
}

static int r_read(chat_store_t *st, uint8_t type, const char *room_id, uint64_t pos, size_t limit,
                  chat_store_history_cb cb, void *arg) {
    remote_t *rs = remote_of(st);
    if (!room_id || !cb)
        return -EINVAL;
    req_t *q = NULL;
    buf_t b = {0};
    size_t start = 0;
    int rc = req_begin(rs, REQ_READ, type, arg, &q, &b, &start);
    if (!q)
        return rc;
    q->read_cb = cb;
    if (rc == 0)
        rc = wire_str(&b, room_id);
    if (rc == 0)
        rc = wire_u64(&b, pos);
    if (rc == 0)
        rc = wire_u32(&b, limit > UINT32_MAX ? UINT32_MAX : (uint32_t)limit);
    return req_send(rs, q, &b, start, rc);
}

static int r_history(chat_store_t *st, const char *room_id, uint64_t before_seq, size_t limit,
                     chat_store_history_cb cb, void *arg) {
    return r_read(st, CHAT_F_HISTORY, room_id, before_seq, limit, cb, arg);
}

static int r_after(chat_store_t *st, const char *room_id, uint64_t after_seq, size_t limit,
                   chat_store_history_cb cb, void *arg) {
    return r_read(st, CHAT_F_AFTER, room_id, after_seq, limit, cb, arg);
}

static uint64_t r_last_seq(chat_store_t *st, const char *room_id) {
    remote_t *rs = remote_of(st);
    room_seq_t *r = room_id ? map_get(&rs->last, room_id, strlen(room_id)) : NULL;
    return r ? r->seq : 0;
}

static int r_mark_read(chat_store_t *st, const char *room_id, const char *user_id,
                       const char *const *message_ids, size_t n, uint64_t upto_seq,
                       chat_store_mark_cb cb, void *arg) {
    remote_t *rs = remote_of(st);
    if (!room_id || !user_id || (n && !message_ids) || n > UINT32_MAX)
        return -EINVAL;
    req_t *q = NULL;
    buf_t b = {0};
    size_t start = 0;
    int rc = req_begin(rs, REQ_MARK, CHAT_F_MARK, arg, &q, &b, &start);
    if (!q)
        return rc;
    q->mark_cb = cb;
    if (rc == 0)
        rc = wire_str(&b, room_id);
    if (rc == 0)
        rc = wire_str(&b, user_id);
    if (rc == 0)
        rc = wire_u64(&b, upto_seq);
    if (rc == 0)
        rc = wire_u32(&b, (uint32_t)n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = wire_str(&b, message_ids[i]);
    return req_send(rs, q, &b, start, rc);
}

/* A JOIN (username set) or FORGET. */
static int r_membership(chat_store_t *st, uint8_t type, const char *room_id, const char *user_id,
                        const char *username, chat_store_done_cb cb, void *arg) {
    remote_t *rs = remote_of(st);
    if (!room_id || !user_id || (type == CHAT_F_JOIN && !username))
        return -EINVAL;
    req_t *q = NULL;
    buf_t b = {0};
    size_t start = 0;
    int rc = req_begin(rs, REQ_MEMBERSHIP, type, arg, &q, &b, &start);
    if (!q)
        return rc;
    q->done_cb = cb;
    if (rc == 0)
        rc = wire_str(&b, room_id);
    if (rc == 0)
        rc = wire_str(&b, user_id);
    if (rc == 0 && type == CHAT_F_JOIN)
        rc = wire_str(&b, username);
    return req_send(rs, q, &b, start, rc);
}

static int r_join(chat_store_t *st, const char *room_id, const char *user_id, const char *username,
                  chat_store_done_cb cb, void *arg) {
    return r_membership(st, CHAT_F_JOIN, room_id, user_id, username, cb, arg);
}

static int r_forget(chat_store_t *st, const char *room_id, const char *user_id,
                    chat_store_done_cb cb, void *arg) {
    return r_membership(st, CHAT_F_FORGET, room_id, user_id, NULL, cb, arg);
}

/* A membership read: USER_ROOMS names a user, MEMBERS a room; one of the callbacks. */
static int r_list(chat_store_t *st, req_kind_t kind, uint8_t type, const char *id,
                  chat_store_user_rooms_cb rooms_cb, chat_store_members_cb members_cb, void *arg) {
    remote_t *rs = remote_of(st);
    if (!id || (!rooms_cb && !members_cb))
        return -EINVAL;
    req_t *q = NULL;
    buf_t b = {0};
    size_t start = 0;
    int rc = req_begin(rs, kind, type, arg, &q, &b, &start);
    if (!q)
        return rc;
    q->rooms_cb = rooms_cb;
    q->members_cb = members_cb;
    if (rc == 0)
        rc = wire_str(&b, id);
    return req_send(rs, q, &b, start, rc);
}

static int r_user_rooms(chat_store_t *st, const char *user_id, chat_store_user_rooms_cb cb,
                        void *arg) {
    return r_list(st, REQ_ROOMS, CHAT_F_USER_ROOMS, user_id, cb, NULL, arg);
}

static int r_members(chat_store_t *st, const char *room_id, chat_store_members_cb cb, void *arg) {
    return r_list(st, REQ_MEMBERS, CHAT_F_MEMBERS, room_id, NULL, cb, arg);
}

static int r_health(chat_store_t *st, const char **why) {
    remote_t *rs = remote_of(st);
    if (why)
        *why = rs->why;
    return rs->health;
}

static void r_close(chat_store_t *st, void (*done)(void *arg), void *arg) {
    remote_t *rs = remote_of(st);
    if (rs->closing)
        return;
    rs->closing = true;
    rs->close_done = done;
    rs->close_arg = arg;
    /* Answers still due come from the owner, which outlives its workers; without a
     * channel they cannot: they fail now. */
    if (!cluster_worker_connected(rs->w)) {
        while (rs->reqs)
            req_fail(rs, req_take(rs, rs->reqs->id), -EPIPE);
    }
    maybe_finish(rs);
}

static const chat_store_ops_t remote_ops = {
    .append = r_append,
    .append_limited = r_append_limited,
    .history = r_history,
    .after = r_after,
    .last_seq = r_last_seq,
    .mark_read = r_mark_read,
    .join = r_join,
    .forget = r_forget,
    .user_rooms = r_user_rooms,
    .members = r_members,
    .health = r_health,
    .close = r_close,
};

/* ---- answers from the owner ---- */

/* The request an answer of frame type `type` is for, taken from the waiting ones; NULL
 * (logged) when none waits under that number. An answer of another kind than the request
 * asked for is a confused owner: the request fails with -EPROTO, here, and NULL. */
static req_t *answer_take(remote_t *rs, uint32_t id, uint8_t type) {
    req_t *q = req_take(rs, id);
    if (!q) {
        LOG_ERROR(STORE_TAG, "an answer (frame %u) of the store owner was not understood", type);
        return NULL;
    }
    uint8_t want;
    switch (q->kind) {
    case REQ_APPEND:
    case REQ_MEMBERSHIP:
        want = CHAT_F_DONE;
        break;
    case REQ_MARK:
        want = CHAT_F_MARKED;
        break;
    case REQ_READ:
        want = CHAT_F_MSGS;
        break;
    case REQ_ROOMS:
        want = CHAT_F_ROOMS;
        break;
    case REQ_MEMBERS:
    default:
        want = CHAT_F_MEMBER_LIST;
        break;
    }
    if (want == type)
        return q;
    LOG_ERROR(STORE_TAG, "the store owner answered frame %u to a request of frame %u", type,
              (unsigned)want);
    req_fail(rs, q, -EPROTO);
    return NULL;
}

static void on_done(remote_t *rs, wire_reader_t *r) {
    uint32_t id = wire_get_u32(r);
    int err = (int32_t)wire_get_u32(r);
    bool has_msg = wire_get_u8(r) != 0;
    chat_msg_t *m = NULL;
    if (has_msg && chat_wire_get_msg(r, &m))
        r->bad = true;
    bool ok = wire_done(r);
    if (!ok)
        LOG_ERROR(STORE_TAG, "an answer of the store owner was not understood");
    req_t *q = answer_take(rs, id, CHAT_F_DONE);
    if (q) {
        /* A membership is answered without a message; a message there is not for it. */
        answer_t a = {
            ok ? err : -EPROTO, &m, ok && m && q->kind == REQ_APPEND ? 1 : 0, 0, NULL, NULL};
        req_answer(rs, q, &a);
    }
    if (m)
        chat_msg_unref(m);
}

static void on_msgs(remote_t *rs, wire_reader_t *r) {
    uint32_t id = wire_get_u32(r);
    int err = (int32_t)wire_get_u32(r);
    uint32_t n = wire_get_u32(r);
    chat_msg_t **msgs = n && !r->bad ? calloc(n, sizeof *msgs) : NULL;
    size_t got = 0;
    if (n && !msgs)
        err = -ENOMEM;
    for (; msgs && got < n && !r->bad; got++)
        if (chat_wire_get_msg(r, &msgs[got]))
            r->bad = true;
    req_t *q = answer_take(rs, id, CHAT_F_MSGS);
    if (q) {
        if (r->bad || !wire_done(r))
            err = err ? err : -EPROTO;
        for (size_t i = 0; !err && i < got; i++)
            seen(rs, msgs[i]);
        answer_t a = {err, msgs, got, 0, NULL, NULL};
        req_answer(rs, q, &a);
    }
    for (size_t i = 0; i < got; i++)
        if (msgs[i])
            chat_msg_unref(msgs[i]);
    free(msgs);
}

static void on_marked(remote_t *rs, wire_reader_t *r) {
    uint32_t id = wire_get_u32(r);
    int err = (int32_t)wire_get_u32(r);
    uint64_t mark = wire_get_u64(r);
    int rc = wire_done(r) ? err : -EPROTO;
    req_t *q = answer_take(rs, id, CHAT_F_MARKED);
    if (q) {
        answer_t a = {rc, NULL, 0, mark, NULL, NULL};
        req_answer(rs, q, &a);
    }
}

/* A string field of a list, copied NUL-terminated into the list's arena at *at (which
 * has room: the arena is as large as the frame's rest plus two bytes per entry, at most
 * two strings each). NULL and r bad when the field is missing or holds a NUL (it could
 * not be a C string). */
static const char *list_str(wire_reader_t *r, char **at) {
    slice_t s = wire_get_bytes(r);
    if (r->bad || (s.len && memchr(s.base, '\0', s.len))) {
        r->bad = true;
        return NULL;
    }
    char *out = *at;
    if (s.len)
        memcpy(out, s.base, s.len);
    out[s.len] = '\0';
    *at += s.len + 1;
    return out;
}

/* Room for a list of n entries of at least min_size bytes each that the frame's rest
 * (what r has left) can hold, with its strings: the entries (size each) and one arena
 * for the strings, in *arena. n larger than the frame could carry marks r bad (no
 * allocation sized by a count that lies). NULL when bad, empty or out of memory (then
 * *nomem). */
static void *list_alloc(wire_reader_t *r, uint32_t n, size_t min_size, size_t size, char **arena,
                        bool *nomem) {
    size_t left = (size_t)(r->end - r->p);
    if (r->bad || n > left / min_size) {
        r->bad = true;
        return NULL;
    }
    if (n == 0)
        return NULL;
    void *list = calloc(n, size);
    *arena = malloc(left + 2 * (size_t)n);
    if (!list || !*arena) {
        free(list);
        free(*arena);
        *arena = NULL;
        *nomem = true;
        return NULL;
    }
    return list;
}

/* A user's rooms: room (u32 length + bytes) and three u64 each, 28 bytes at least. */
static void on_rooms(remote_t *rs, wire_reader_t *r) {
    uint32_t id = wire_get_u32(r);
    int err = (int32_t)wire_get_u32(r);
    uint32_t n = wire_get_u32(r);
    char *arena = NULL;
    bool nomem = false;
    chat_user_room_t *rooms = list_alloc(r, n, 28, sizeof *rooms, &arena, &nomem);
    char *at = arena;
    for (uint32_t i = 0; rooms && i < n && !r->bad; i++) {
        rooms[i].room_id = list_str(r, &at);
        rooms[i].last_seq = wire_get_u64(r);
        rooms[i].last_read_seq = wire_get_u64(r);
        rooms[i].joined_at = (int64_t)wire_get_u64(r);
    }
    int rc = nomem ? -ENOMEM : wire_done(r) ? err : -EPROTO;
    req_t *q = answer_take(rs, id, CHAT_F_ROOMS);
    if (q) {
        answer_t a = {rc, NULL, n, 0, rooms, NULL};
        req_answer(rs, q, &a);
    }
    free(rooms);
    free(arena);
}

/* A room's members: user and username (u32 length + bytes each) and two u64 each, 24
 * bytes at least. */
static void on_member_list(remote_t *rs, wire_reader_t *r) {
    uint32_t id = wire_get_u32(r);
    int err = (int32_t)wire_get_u32(r);
    uint64_t last = wire_get_u64(r);
    uint32_t n = wire_get_u32(r);
    char *arena = NULL;
    bool nomem = false;
    chat_member_t *members = list_alloc(r, n, 24, sizeof *members, &arena, &nomem);
    char *at = arena;
    for (uint32_t i = 0; members && i < n && !r->bad; i++) {
        members[i].user_id = list_str(r, &at);
        members[i].username = list_str(r, &at);
        members[i].last_read_seq = wire_get_u64(r);
        members[i].joined_at = (int64_t)wire_get_u64(r);
    }
    int rc = nomem ? -ENOMEM : wire_done(r) ? err : -EPROTO;
    req_t *q = answer_take(rs, id, CHAT_F_MEMBER_LIST);
    if (q) {
        answer_t a = {rc, NULL, n, last, NULL, members};
        req_answer(rs, q, &a);
    }
    free(members);
    free(arena);
}

static void on_frame(const uint8_t *frame, size_t size, void *arg) {
    remote_t *rs = arg;
    if (!frame) {
        /* The owner is gone: nothing asked of it will be answered, nothing can be stored. */
        rs->health = -EPIPE;
        snprintf(rs->why, sizeof rs->why, "lost the store owner");
        while (rs->reqs)
            req_fail(rs, req_take(rs, rs->reqs->id), -EPIPE);
        return;
    }
    wire_reader_t r;
    wire_reader_init(&r, frame, size);
    switch (r.type) {
    case CHAT_F_STORED: {
        chat_msg_t *m;
        if (chat_wire_get_msg(&r, &m) || !wire_done(&r)) {
            LOG_ERROR(STORE_TAG, "a stored message from the owner was not understood");
            return;
        }
        seen(rs, m);
        if (rs->head.on_stored && !rs->closing)
            rs->head.on_stored(m, rs->head.on_stored_arg);
        chat_msg_unref(m);
        return;
    }
    case CHAT_F_DONE:
        on_done(rs, &r);
        return;
    case CHAT_F_MSGS:
        on_msgs(rs, &r);
        return;
    case CHAT_F_MARKED:
        on_marked(rs, &r);
        return;
    case CHAT_F_ROOMS:
        on_rooms(rs, &r);
        return;
    case CHAT_F_MEMBER_LIST:
        on_member_list(rs, &r);
        return;
    case CHAT_F_HEALTH:
        rs->health = (int32_t)wire_get_u32(&r);
        wire_get_cstr(&r, rs->why, sizeof rs->why);
        if (r.bad) {
            rs->health = -EPROTO;
            snprintf(rs->why, sizeof rs->why, "the store owner's health was not understood");
        }
        return;
    default:
        LOG_ERROR(STORE_TAG, "unexpected frame %u from the store owner", r.type);
    }
}

int chat_store_open_remote(uv_loop_t *loop, parley_worker_t *w, chat_store_t **out) {
    remote_t *rs = calloc(1, sizeof *rs);
    if (!rs)
        return -ENOMEM;
    rs->head.ops = &remote_ops;
    rs->loop = loop;
    rs->w = w;
    snprintf(rs->why, sizeof rs->why, "ok");
    int rc = map_init(&rs->last) ? -EIO : 0;
    if (rc == 0)
        rc = cluster_worker_connect(w, loop);
    if (rc == 0)
        rc = uv_idle_init(loop, &rs->finish);
    if (rc) {
        map_free(&rs->last);
        free(rs);
        return rc;
    }
    rs->finish.data = rs;
    if ((rc = cluster_worker_on_app(w, CHAT_F_DONE, CHAT_F_HEALTH, on_frame, rs))) {
        map_free(&rs->last);
        uv_close((uv_handle_t *)&rs->finish, handle_freed); /* rs goes with its handle */
        return rc;
    }
    buf_t b = {0};
    size_t start = 0;
    rc = wire_begin(&b, CHAT_F_HELLO, &start);
    if ((rc = send_frame(rs, &b, start, rc)))
        LOG_WARN(STORE_TAG, "the store owner was not greeted: %s", strerror(-rc));
    *out = (chat_store_t *)rs;
    return 0;
}
