/* chat/store_owner.c — the store and the presence, owned by the supervisor for its
 * workers (store_remote.h).
 *
 * A cluster/hub.h service: it opens the store when the supervisor starts, turns each
 * worker's request into a store call, answers that worker when the store did, and sends
 * every stored message to every worker (chat_store_on_stored runs before the append's
 * own callback, so STORED precedes DONE on the requester's FIFO pipe). Its store's health
 * goes to every worker whenever it changes, and to a worker that says HELLO. A request
 * that cannot be read is logged and dropped: the worker's caller then waits, as for a
 * lost worker, until the worker closes its store.
 *
 * Presence: for each (room, user) the set of workers that have a connection of that user
 * in that room, as a bit mask; the first bit set and the last one cleared are announced
 * to every worker (PRESENCE_EV). A worker that exits has its bits cleared. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/store_internal.h"
#include "chat/store_remote.h"
#include "util/log.h"
#include "util/map.h"

#define OWNER_IDS_MAX 1000 /* receipts per request, as the chat's markRead */
#define OWNER_FIELD_MAX 4096

/* A user present in a room on some workers. The key is "room\0user". */
typedef struct {
    uint32_t workers; /* bit w-1 for worker w */
    char *username;
    size_t room_len, key_len;
    char key[];
} present_t;

typedef struct {
    cluster_hub_t *hub;
    const chat_owner_config_t *cfg;
    chat_store_t *store;
    uv_loop_t *loop;
    unsigned ticks;
    map_t present; /* "room\0user" → present_t */
    map_t buckets; /* user → bucket_t: posts limited per user across workers */
    int last_health;
    uv_timer_t health_timer; /* the store recovers by itself: workers hear of it */
    void (*stopped)(cluster_hub_t *hub);
} owner_t;

#define HEALTH_CHECK_MS 250

static owner_t owner; /* one supervisor per process */

typedef struct {
    unsigned worker;
    uint32_t req;
} ticket_t;

typedef struct {
    double tokens;
    uint64_t at_ms;
    char user[]; /* the map key */
} bucket_t;

/* One token from user's bucket (burst, per_sec): whether there was one. Buckets are
 * dropped once full again (an idle user costs nothing; a new bucket starts full). */
static bool take_token(const char *user, uint32_t burst, uint32_t per_sec) {
    uint64_t now = uv_now(owner.loop);
    size_t len = strlen(user);
    bucket_t *b = map_get(&owner.buckets, user, len);
    if (!b) {
        if (!(b = calloc(1, sizeof *b + len + 1)))
            return false;
        memcpy(b->user, user, len + 1);
        b->tokens = burst;
        b->at_ms = now;
        if (map_put(&owner.buckets, b->user, len, b)) {
            free(b);
            return false;
        }
    }
    b->tokens += (double)(now - b->at_ms) * per_sec / 1000.0;
    if (b->tokens > burst)
        b->tokens = burst;
    b->at_ms = now;
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

static void send_to(unsigned worker, buf_t *b, size_t start, int rc) {
    if (rc == 0) {
        wire_end(b, start);
        rc = cluster_hub_send(owner.hub, worker, b->data, b->len);
    }
    if (rc)
        LOG_WARN(STORE_TAG, "answer to worker %u not sent: %s", worker, strerror(-rc));
    buf_free(b);
}

static void send_health(unsigned worker) {
    const char *why;
    int h = chat_store_health(owner.store, &why);
    owner.last_health = h;
    buf_t b = {0};
    size_t start;
    int rc = wire_begin(&b, CHAT_F_HEALTH, &start);
    if (rc == 0)
        rc = wire_u32(&b, (uint32_t)h);
    if (rc == 0)
        rc = wire_str(&b, why);
    send_to(worker, &b, start, rc);
}

/* The health as workers last heard it changed: everyone hears the new one. */
static void health_check(void) {
    if (chat_store_health(owner.store, NULL) != owner.last_health)
        send_health(0);
}

#define BUCKET_SWEEP_TICKS 40 /* every 10 s */

/* Drops the buckets that are full again (collected first: deleting moves entries). */
static void buckets_sweep(void) {
    bucket_t **full = malloc((owner.buckets.count + 1) * sizeof *full);
    size_t n = 0;
    uint64_t now = uv_now(owner.loop);
    map_entry_t *e;
    for (size_t i = 0; full && map_next(&owner.buckets, &i, &e);) {
        bucket_t *b = e->value;
        if (now - b->at_ms >= 60000) /* any rate has refilled any burst by then */
            full[n++] = b;
    }
    for (size_t i = 0; i < n; i++) {
        map_del(&owner.buckets, full[i]->user, strlen(full[i]->user));
        free(full[i]);
    }
    free(full);
}

static void health_tick(uv_timer_t *t) {
    health_check();
    if (++owner.ticks % BUCKET_SWEEP_TICKS == 0)
        buckets_sweep();
}

static void on_stored(chat_msg_t *m, void *arg) {
    buf_t b = {0};
    size_t start;
    int rc = wire_begin(&b, CHAT_F_STORED, &start);
    if (rc == 0)
        rc = chat_wire_put_msg(&b, m);
    send_to(0, &b, start, rc);
}

static void send_done(unsigned worker, uint32_t req, int err, const chat_msg_t *m) {
    buf_t b = {0};
    size_t start;
    int rc = wire_begin(&b, CHAT_F_DONE, &start);
    if (rc == 0)
        rc = wire_u32(&b, req);
    if (rc == 0)
        rc = wire_u32(&b, (uint32_t)err);
    if (rc == 0)
        rc = wire_u8(&b, m != NULL);
    if (rc == 0 && m)
        rc = chat_wire_put_msg(&b, m);
    send_to(worker, &b, start, rc);
    health_check();
}

static void send_msgs(unsigned worker, uint32_t req, int err, chat_msg_t *const *msgs, size_t n) {
    buf_t b = {0};
    size_t start;
    int rc = wire_begin(&b, CHAT_F_MSGS, &start);
    if (rc == 0)
        rc = wire_u32(&b, req);
    if (rc == 0)
        rc = wire_u32(&b, (uint32_t)err);
    if (rc == 0)
        rc = wire_u32(&b, (uint32_t)n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = chat_wire_put_msg(&b, msgs[i]);
    send_to(worker, &b, start, rc);
}

static ticket_t *ticket_new(unsigned worker, uint32_t req) {
    ticket_t *t = malloc(sizeof *t);
    if (t)
        *t = (ticket_t){worker, req};
    return t;
}

static void append_done(int err, chat_msg_t *m, void *arg) {
    ticket_t *t = arg;
    send_done(t->worker, t->req, err, err ? NULL : m);
    free(t);
}

static void mark_done(int err, uint64_t mark, void *arg) {
    ticket_t *t = arg;
    send_done(t->worker, t->req, err, NULL);
    free(t);
}

static void read_done(int err, chat_msg_t *const *msgs, size_t n, void *arg) {
    ticket_t *t = arg;
    send_msgs(t->worker, t->req, err, msgs, n);
    free(t);
}

/* A string field copied out (NUL-terminated), for the store's C-string arguments. */
static char *get_str(wire_reader_t *r) {
    slice_t s = wire_get_bytes(r);
    if (r->bad || s.len > OWNER_FIELD_MAX || (s.len && memchr(s.base, '\0', s.len))) {
        r->bad = true;
        return NULL;
    }
    char *c = malloc(s.len + 1);
    if (!c) {
        r->bad = true;
        return NULL;
    }
    memcpy(c, s.base, s.len);
    c[s.len] = '\0';
    return c;
}

static void on_append(unsigned from, wire_reader_t *r) {
    uint32_t req = wire_get_u32(r);
    char *room = get_str(r), *user = get_str(r), *name = get_str(r);
    slice_t text = wire_get_bytes(r);
    uint32_t burst = wire_get_u32(r), per_sec = wire_get_u32(r);
    ticket_t *t = NULL;
    int rc = !wire_done(r) ? -EPROTO : 0;
    if (rc == 0 && burst && !take_token(user, burst, per_sec))
        rc = -EDQUOT; /* a limited post: the user's bucket is empty */
    if (rc == 0 && !(t = ticket_new(from, req)))
        rc = -ENOMEM;
    if (rc == 0)
        rc = chat_store_append(owner.store, room, user, name, text.base, text.len, append_done, t,
                               NULL);
    if (rc) {
        free(t);
        send_done(from, req, rc, NULL);
    }
    free(room);
    free(user);
    free(name);
}

static void on_mark(unsigned from, wire_reader_t *r) {
    uint32_t req = wire_get_u32(r);
    char *room = get_str(r), *user = get_str(r);
    uint32_t n = wire_get_u32(r);
    if (n > OWNER_IDS_MAX)
        r->bad = true;
    char **ids = r->bad ? NULL : calloc(n + 1, sizeof *ids);
    for (uint32_t i = 0; ids && i < n && !r->bad; i++)
        ids[i] = get_str(r);
    ticket_t *t = NULL;
    int rc = !wire_done(r) || !ids ? -EPROTO : !(t = ticket_new(from, req)) ? -ENOMEM : 0;
    if (rc == 0)
        rc = chat_store_mark_read(owner.store, room, user, (const char *const *)ids, n, 0,
                                  mark_done, t);
    if (rc) {
        free(t);
        send_done(from, req, rc, NULL);
    }
    for (uint32_t i = 0; ids && i < n; i++)
        free(ids[i]);
    free(ids);
    free(room);
    free(user);
}

static void on_read(unsigned from, wire_reader_t *r, bool history) {
    uint32_t req = wire_get_u32(r);
    char *room = get_str(r);
    uint64_t pos = wire_get_u64(r);
    uint32_t limit = wire_get_u32(r);
    ticket_t *t = NULL;
    int rc = !wire_done(r) ? -EPROTO : !(t = ticket_new(from, req)) ? -ENOMEM : 0;
    if (rc == 0)
        rc = history ? chat_store_history(owner.store, room, pos, limit, read_done, t)
                     : chat_store_after(owner.store, room, pos, limit, read_done, t);
    if (rc) {
        free(t);
        send_msgs(from, req, rc, NULL, 0);
    }
    free(room);
}

/* ---- presence ---- */

static int send_presence(unsigned to, const present_t *p, bool joined, bool quiet,
                         const char *sid) {
    buf_t b = {0};
    size_t start;
    int rc = wire_begin(&b, CHAT_F_PRESENCE_EV, &start);
    if (rc == 0)
        rc = wire_u8(&b, joined);
    if (rc == 0)
        rc = wire_u8(&b, quiet);
    if (rc == 0)
        rc = wire_bytes(&b, p->key, p->room_len);
    if (rc == 0)
        rc = wire_bytes(&b, p->key + p->room_len + 1, p->key_len - p->room_len - 1);
    if (rc == 0)
        rc = wire_str(&b, p->username);
    if (rc == 0)
        rc = wire_str(&b, sid);
    if (rc == 0) {
        wire_end(&b, start);
        rc = cluster_hub_send(owner.hub, to, b.data, b.len);
    }
    buf_free(&b);
    return rc;
}

static void present_free(present_t *p) {
    free(p->username);
    free(p);
}

static void on_presence(unsigned from, wire_reader_t *r) {
    bool joined = wire_get_u8(r) != 0;
    slice_t room = wire_get_bytes(r), user = wire_get_bytes(r);
    char *name = get_str(r), *sid = get_str(r);
    if (!wire_done(r) || room.len > OWNER_FIELD_MAX || user.len > OWNER_FIELD_MAX || from > 32) {
        LOG_ERROR(STORE_TAG, "a presence report of worker %u was not understood", from);
        free(name);
        free(sid);
        return;
    }
    char key[2 * OWNER_FIELD_MAX + 2];
    memcpy(key, room.base, room.len);
    key[room.len] = '\0';
    memcpy(key + room.len + 1, user.base, user.len);
    size_t klen = room.len + 1 + user.len;
    uint32_t bit = 1u << (from - 1);
    present_t *p = map_get(&owner.present, key, klen);
    if (joined && !p) {
        if (!(p = calloc(1, sizeof *p + klen)) || !(p->username = strdup(name))) {
            free(p);
            p = NULL;
        } else {
            memcpy(p->key, key, klen);
            p->room_len = room.len;
            p->key_len = klen;
            if (map_put(&owner.present, p->key, klen, p)) {
                present_free(p);
                p = NULL;
            }
        }
        if (!p)
            LOG_ERROR(STORE_TAG, "presence not counted: out of memory");
    }
    if (p) {
        bool was = p->workers != 0;
        p->workers = joined ? p->workers | bit : p->workers & ~bit;
        if (was != (p->workers != 0) && send_presence(0, p, joined, false, sid))
            LOG_WARN(STORE_TAG, "presence news not sent to every worker");
        if (!p->workers) {
            map_del(&owner.present, p->key, p->key_len);
            present_free(p);
        }
    }
    free(name);
    free(sid);
}

/* A worker greets: what is present now, without announcing it. */
static void presence_snapshot(unsigned to) {
    map_entry_t *e;
    for (size_t i = 0; map_next(&owner.present, &i, &e);)
        if (send_presence(to, e->value, true, true, ""))
            LOG_WARN(STORE_TAG, "presence not sent to worker %u", to);
}

/* A worker is gone: so are its users, where no other worker has them. Collected first:
 * deleting moves entries under the iterator. */
static void owner_gone(cluster_hub_t *hub, unsigned id, void *arg) {
    uint32_t bit = 1u << (id - 1);
    present_t **gone = malloc((owner.present.count + 1) * sizeof *gone);
    size_t n = 0;
    map_entry_t *e;
    for (size_t i = 0; map_next(&owner.present, &i, &e);) {
        present_t *p = e->value;
        if (!(p->workers & bit))
            continue;
        p->workers &= ~bit;
        if (!p->workers && gone)
            gone[n++] = p;
    }
    for (size_t i = 0; i < n; i++) {
        if (send_presence(0, gone[i], false, false, ""))
            LOG_WARN(STORE_TAG, "presence news not sent to every worker");
        map_del(&owner.present, gone[i]->key, gone[i]->key_len);
        present_free(gone[i]);
    }
    if (!gone)
        LOG_ERROR(STORE_TAG, "presence of worker %u not cleared: out of memory", id);
    free(gone);
}

static void owner_frame(cluster_hub_t *hub, unsigned from, const uint8_t *frame, size_t size,
                        void *arg) {
    wire_reader_t r;
    wire_reader_init(&r, frame, size);
    switch (r.type) {
    case CHAT_F_HELLO:
        send_health(from);
        presence_snapshot(from);
        return;
    case CHAT_F_PRESENCE:
        on_presence(from, &r);
        return;
    case CHAT_F_APPEND:
        on_append(from, &r);
        return;
    case CHAT_F_MARK:
        on_mark(from, &r);
        return;
    case CHAT_F_HISTORY:
    case CHAT_F_AFTER:
        on_read(from, &r, r.type == CHAT_F_HISTORY);
        return;
    default:
        LOG_ERROR(STORE_TAG, "unexpected frame %u from worker %u", r.type, from);
    }
}

/* The store waited for another process's lock (a restart) and gave up: the supervisor
 * stops, as a single process does (src/main/). */
static void owner_store_opened(int err, void *arg) {
    if (err) {
        LOG_ERROR(STORE_TAG, "no store (%s): stopping", strerror(-err));
        cluster_hub_fail(owner.hub);
    }
}

static int owner_start(cluster_hub_t *hub, uv_loop_t *loop, void *arg) {
    owner.hub = hub;
    owner.cfg = arg;
    owner.loop = loop;
    if (map_init(&owner.present) || map_init(&owner.buckets))
        return -EIO;
    int rc = strcmp(owner.cfg->kind, "memory") == 0
                 ? chat_store_open_memory(loop, &owner.cfg->store, &owner.store)
                 : chat_store_open_sqlite_wait(loop, owner.cfg->data_dir, &owner.cfg->store,
                                               owner.cfg->lock_wait_ms, owner_store_opened, NULL,
                                               &owner.store);
    if (rc == -EBUSY)
        LOG_ERROR(STORE_TAG, "%s is in use by another process (--store-lock-wait is 0)",
                  owner.cfg->data_dir);
    if (rc)
        return rc;
    chat_store_on_stored(owner.store, on_stored, NULL);
    if ((rc = uv_timer_init(loop, &owner.health_timer)) ||
        (rc = uv_timer_start(&owner.health_timer, health_tick, HEALTH_CHECK_MS, HEALTH_CHECK_MS)))
        return rc;
    uv_unref((uv_handle_t *)&owner.health_timer);
    return 0;
}

static void store_closed(void *arg) {
    map_entry_t *e;
    for (size_t i = 0; map_next(&owner.present, &i, &e);)
        present_free(e->value);
    map_free(&owner.present);
    for (size_t i = 0; map_next(&owner.buckets, &i, &e);)
        free(e->value);
    map_free(&owner.buckets);
    owner.stopped(owner.hub);
}

static void owner_stop(cluster_hub_t *hub, void (*done)(cluster_hub_t *hub), void *arg) {
    owner.stopped = done;
    if (!owner.store) {
        done(hub);
        return;
    }
    uv_close((uv_handle_t *)&owner.health_timer, NULL);
    chat_store_close(owner.store, store_closed, NULL);
}

const cluster_service_t chat_owner_service = {
    .start = owner_start,
    .on_frame = owner_frame,
    .on_worker_gone = owner_gone,
    .stop = owner_stop,
};
