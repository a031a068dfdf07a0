/* chat/presence.c — who is in which chat room (see presence.h).
 *
 * A count is room → {user id → that user's sockets there}; this process's own counts in
 * `local`, and with workers the group's view in `group` (one "socket" per user, as the
 * store owner reports them), from which member lists and sizes are read. */
#include "chat/presence.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chat/auth.h"
#include "chat/presence_redis.h"
#include "chat/service.h"
#include "chat/store_remote.h"
#include "cluster/wire.h"
#include "util/log.h"
#include "util/map.h"

typedef struct {
    size_t users; /* distinct users present */
    map_t counts; /* user id → count_t */
    char name[];  /* map key */
} room_t;

typedef struct {
    size_t sockets;
    char user_id[]; /* map key */
} count_t;

struct chat_presence {
    sio_nsp_t *nsp;
    size_t limit;
    map_t local; /* room id → room_t: this process's connections */
    map_t group; /* with workers or Redis: every process's users, as reported to it */
    parley_worker_t *worker;
    presence_redis_t *redis; /* with nodes over Redis */
    bool stopping;
};

static room_t *room_get(map_t *rooms, const char *name, bool create) {
    room_t *r = map_get(rooms, name, strlen(name));
    if (r || !create)
        return r;
    size_t len = strlen(name);
    r = calloc(1, sizeof *r + len + 1);
    if (!r || map_init(&r->counts)) {
        free(r);
        return NULL;
    }
    memcpy(r->name, name, len + 1);
    if (map_put(rooms, r->name, len, r)) {
        map_free(&r->counts);
        free(r);
        return NULL;
    }
    return r;
}

/* One more socket of user in room: 1 when the user was not present, 0 when they were,
 * -ENOMEM. */
static int count_add(map_t *rooms, const char *room, const char *user) {
    room_t *r = room_get(rooms, room, true);
    if (!r)
        return -ENOMEM;
    count_t *u = map_get(&r->counts, user, strlen(user));
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
    if (map_put(&r->counts, u->user_id, len, u)) {
        free(u);
        return -ENOMEM;
    }
    r->users++;
    return 1;
}

/* One socket of user left room; true when it was the user's last there. */
static bool count_remove(map_t *rooms, const char *room, const char *user) {
    room_t *r = room_get(rooms, room, false);
    count_t *u = r ? map_get(&r->counts, user, strlen(user)) : NULL;
    if (!u || --u->sockets > 0)
        return false;
    map_del(&r->counts, user, strlen(user));
    free(u);
    if (--r->users == 0) {
        map_del(rooms, r->name, strlen(r->name));
        map_free(&r->counts);
        free(r);
    }
    return true;
}

static void rooms_free(map_t *rooms) {
    map_entry_t *e;
    for (size_t pos = 0; map_next(rooms, &pos, &e);) {
        room_t *r = e->value;
        map_entry_t *u;
        for (size_t upos = 0; map_next(&r->counts, &upos, &u);)
            free(u->value);
        map_free(&r->counts);
        free(r);
    }
    map_free(rooms);
}

int chat_presence_new(sio_nsp_t *nsp, size_t limit, chat_presence_t **out) {
    chat_presence_t *p = calloc(1, sizeof *p);
    if (!p || map_init(&p->local)) {
        free(p);
        return -ENOMEM;
    }
    p->nsp = nsp;
    p->limit = limit;
    *out = p;
    return 0;
}

void chat_presence_free(chat_presence_t *p) {
    rooms_free(&p->local);
    if (p->worker || p->redis)
        rooms_free(&p->group);
    if (p->redis)
        presence_redis_close(p->redis);
    free(p);
}

void chat_presence_stop(chat_presence_t *p) {
    p->stopping = true;
}

/* Where members are counted: the group's view with workers or Redis, else this process. */
static map_t *members_of(chat_presence_t *p) {
    return p->worker || p->redis ? &p->group : &p->local;
}

/* The group's view from news that says, not counts: present or not (idempotent). */
static void group_set(chat_presence_t *p, const char *room, const char *user, bool present) {
    room_t *r = room_get(&p->group, room, false);
    bool there = r && map_get(&r->counts, user, strlen(user));
    if (present && !there && count_add(&p->group, room, user) < 0)
        LOG_WARN("chat", "member %s of %s not kept: out of memory", user, room);
    else if (!present && there)
        count_remove(&p->group, room, user);
}

size_t chat_presence_users(chat_presence_t *p, const char *room) {
    room_t *r = map_get(members_of(p), room, strlen(room));
    return r ? r->users : 0;
}

bool chat_presence_has(chat_presence_t *p, const char *room, const char *user) {
    room_t *r = map_get(members_of(p), room, strlen(room));
    return r && map_get(&r->counts, user, strlen(user));
}

json_t *chat_presence_members(chat_presence_t *p, const char *room) {
    json_t *a = json_array();
    room_t *r = room_get(members_of(p), room, false);
    map_entry_t *e;
    for (size_t pos = 0;
         a && r && json_array_size(a) < CHAT_MEMBERS_MAX && map_next(&r->counts, &pos, &e);) {
        if (json_array_append_new(a, json_string(((count_t *)e->value)->user_id))) {
            json_decref(a); /* a short list would be a wrong answer */
            return NULL;
        }
    }
    return a;
}

/* The news, to the room's sockets in this process but `except`, while the room is small
 * enough (users: its size at the time, a leaver still counted). */
static void announce(chat_presence_t *p, const char *room, bool joined, const char *user,
                     const char *username, const char *except, size_t users) {
    if (p->stopping || users > p->limit ||
        strncmp(room, CHAT_USER_ROOM_PREFIX, sizeof CHAT_USER_ROOM_PREFIX - 1) == 0)
        return;
    const char *rooms[1] = {room}, *ex[1] = {except};
    sio_target_t to = {
        .rooms = rooms, .nrooms = 1, .except = ex, .nexcept = except ? 1 : 0, .flags = SIO_LOCAL};
    json_t *args =
        json_pack("[{s:s,s:s,s:s}]", "userId", user, "username", username, "roomId", room);
    sio_payload_t pl = {args, NULL, 0};
    if (!args || sio_nsp_emit(p->nsp, &to, joined ? "userJoined" : "userLeft", &pl))
        LOG_DEBUG("chat", "%s to %s failed", joined ? "userJoined" : "userLeft", room);
    json_decref(args);
}

/* A user's first connection in a room arrived here, or the last one here left: alone,
 * that is the room's news; with workers, the store owner decides. */
static void changed(chat_presence_t *p, sio_socket_t *s, const char *room, bool joined,
                    const char *user, const char *username) {
    if (p->redis) {
        /* Seen at once in its own member list; others hear it from Redis. */
        if (joined)
            group_set(p, room, user, true);
        if (presence_redis_change(p->redis, room, user, username, joined, sio_socket_id(s)))
            LOG_LIMITED(LOG_LEVEL_WARN, "chat", "presence of %s in %s not reported: Redis away",
                        user, room);
        return;
    }
    if (!p->worker) {
        announce(p, room, joined, user, username, sio_socket_id(s),
                 chat_presence_users(p, room) + (joined ? 0 : 1));
        return;
    }
    buf_t b = {0};
    size_t start;
    int rc = wire_begin(&b, CHAT_F_PRESENCE, &start);
    if (rc == 0)
        rc = wire_u8(&b, joined);
    if (rc == 0)
        rc = wire_str(&b, room);
    if (rc == 0)
        rc = wire_str(&b, user);
    if (rc == 0)
        rc = wire_str(&b, username);
    if (rc == 0)
        rc = wire_str(&b, sio_socket_id(s));
    if (rc == 0) {
        wire_end(&b, start);
        rc = cluster_worker_send(p->worker, b.data, b.len);
    }
    if (rc)
        LOG_WARN("chat", "presence of %s in %s not reported: %s", user, room, strerror(-rc));
    buf_free(&b);
}

int chat_presence_join(chat_presence_t *p, sio_socket_t *s, const char *room, const char *user,
                       const char *username) {
    /* The first member here of a room: who is there on the other nodes. */
    if (p->redis && !room_get(&p->local, room, false) && presence_redis_load(p->redis, room))
        LOG_LIMITED(LOG_LEVEL_WARN, "chat", "members of %s not loaded: Redis away", room);
    int added = count_add(&p->local, room, user);
    if (added == 1)
        changed(p, s, room, true, user, username);
    return added < 0 ? added : 0;
}

void chat_presence_leave(chat_presence_t *p, sio_socket_t *s, const char *room, const char *user,
                         const char *username) {
    if (count_remove(&p->local, room, user))
        changed(p, s, room, false, user, username);
}

/* The owner's news of a user in a room: kept for the member lists, and announced to this
 * process's sockets of the room (but the one that caused it) unless quiet. */
static void on_event(const uint8_t *frame, size_t size, void *arg) {
    chat_presence_t *p = arg;
    if (!frame)
        return; /* the owner is gone: the worker stops */
    wire_reader_t r;
    wire_reader_init(&r, frame, size);
    bool joined = wire_get_u8(&r) != 0, quiet = wire_get_u8(&r) != 0;
    char room[CHAT_ROOM_ID_MAX + 1], user[CHAT_USER_ID_MAX + 1], name[CHAT_USERNAME_MAX * 4 + 1];
    char sid[64];
    wire_get_cstr(&r, room, sizeof room);
    wire_get_cstr(&r, user, sizeof user);
    wire_get_cstr(&r, name, sizeof name);
    wire_get_cstr(&r, sid, sizeof sid);
    if (!wire_done(&r)) {
        LOG_ERROR("chat", "a presence event from the store owner was not understood");
        return;
    }
    size_t users = chat_presence_users(p, room);
    if (joined) {
        if (count_add(&p->group, room, user) < 0)
            LOG_WARN("chat", "member %s of %s not kept: out of memory", user, room);
        users = chat_presence_users(p, room);
    } else {
        count_remove(&p->group, room, user);
    }
    if (!quiet)
        announce(p, room, joined, user, name, *sid ? sid : NULL, users);
}

int chat_presence_use_workers(chat_presence_t *p, parley_worker_t *worker) {
    if (map_init(&p->group))
        return -EIO;
    p->worker = worker;
    return cluster_worker_on_app(worker, CHAT_F_PRESENCE_EV, CHAT_F_PRESENCE_EV, on_event, p);
}

/* Cluster-wide news from Redis: kept for the member lists, announced to this node's
 * sockets of the room (but the one that caused it). */
static void on_redis_event(const char *room, const char *user, const char *username, bool joined,
                           const char *sid, bool loaded, void *arg) {
    chat_presence_t *p = arg;
    group_set(p, room, user, joined);
    if (!loaded)
        announce(p, room, joined, user, username, sid, chat_presence_users(p, room) + !joined);
}

int chat_presence_use_redis(chat_presence_t *p, uv_loop_t *loop, const char *url) {
    if (map_init(&p->group))
        return -ENOMEM;
    int rc = presence_redis_open(loop, url, on_redis_event, p, &p->redis);
    if (rc)
        map_free(&p->group);
    return rc;
}
