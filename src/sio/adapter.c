/* sio/adapter.c — the in-process adapter: rooms, broadcast, and the recovery log.
 *
 * The first implementation of the fan-out seam (adapter.h): every operation reaches
 * only the sockets of this process. Adapters that span processes wrap it.
 *
 * A broadcast is encoded here, once (emit.c), with its recovery offset when it is
 * logged, then queued by reference on every recipient.
 *
 * Broadcast de-duplication: each broadcast takes a new epoch; a socket stamped with it
 * is skipped. Sockets in an `except` room are stamped first, so the union of the target
 * rooms is walked once and each socket receives the packet at most once.
 *
 * A socket's own room (named by its id) is not stored: recipients_collect() finds the
 * socket through the namespace's id index instead, which saves a room, a membership and
 * an index entry per socket.
 *
 * Delivery (deliver()) is the per-recipient cost of a broadcast, so it does the least:
 * queueing calls nothing back, so no recipient is held (referenced) while it runs, and
 * the few that must be closed are closed after the walk.
 *
 * Recovery log (when enabled): every logged broadcast gets the next offset of its
 * namespace; offsets are consecutive, so an offset's entry is found by subtraction.
 * Entries older than the maximum disconnection duration are purged, and the log is
 * capped at SIO_LOG_MAX entries and at recovery_max_bytes of memory (a client whose
 * offset fell off cannot recover and gets a fresh session, as socket.io does for an
 * unknown offset). Emits flagged SIO_NO_RECOVERY (replies the client asks for again) and
 * volatile ones are not logged. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sio/internal.h"
#include "util/assert.h"
#include "util/log.h"
#include "util/time.h"

#define SIO_LOG_MAX 100000

sio_room_t *sio_room_get(sio_nsp_t *nsp, const char *name, bool create) {
    size_t len = strlen(name);
    sio_room_t *r = map_get(&nsp->rooms, name, len);
    if (r || !create)
        return r;
    r = calloc(1, sizeof *r + len + 1);
    if (!r)
        return NULL;
    memcpy(r->name, name, len + 1);
    if (map_put(&nsp->rooms, r->name, len, r)) {
        free(r);
        return NULL;
    }
    return r;
}

static void room_drop_if_empty(sio_nsp_t *nsp, sio_room_t *r) {
    if (r->members.count)
        return;
    if (r->members.cap && nsp->room_fn) /* had members: it was told of */
        nsp->room_fn(nsp, r->name, false, nsp->room_arg);
    map_del(&nsp->rooms, r->name, strlen(r->name));
    sio_sockets_free(&r->members);
    free(r);
}

bool sio_adapter_member(const sio_socket_t *s, const sio_room_t *r) {
    for (uint32_t i = 0; r && i < s->nrooms; i++)
        if (s->rooms[i].room == r)
            return true;
    return false;
}

static int local_join(sio_adapter_t *a, sio_socket_t *s, const char *name) {
    if (strcmp(name, s->id) == 0)
        return 0; /* always in its own room */
    sio_nsp_t *nsp = s->nsp;
    if (sio_adapter_member(s, sio_room_get(nsp, name, false)))
        return 0;
    if (s->nrooms == s->caprooms) {
        uint32_t cap = s->caprooms ? s->caprooms * 2 : 1;
        sio_membership_t *m = realloc(s->rooms, cap * sizeof *m);
        if (!m)
            return -ENOMEM;
        s->rooms = m;
        s->caprooms = cap;
    }
    sio_room_t *r = sio_room_get(nsp, name, true);
    if (!r)
        return -ENOMEM;
    if (sio_sockets_push(&r->members, s)) {
        room_drop_if_empty(nsp, r);
        return -ENOMEM;
    }
    PARLEY_ASSERT(s->nrooms < s->caprooms);
    s->rooms[s->nrooms++] = (sio_membership_t){r, r->members.count - 1};
    if (r->members.count == 1 && nsp->room_fn)
        nsp->room_fn(nsp, r->name, true, nsp->room_arg);
    if (nsp->io->monitor.join)
        nsp->io->monitor.join(s, r->name, nsp->io->monitor_arg);
    return 0;
}

void sio_nsp_on_room(sio_nsp_t *nsp, sio_room_fn fn, void *arg) {
    nsp->room_fn = fn;
    nsp->room_arg = arg;
}

/* Removes membership i of s: swap-remove in the room, then in the socket. */
static void leave_at(sio_socket_t *s, uint32_t i) {
    sio_room_t *r = s->rooms[i].room;
    uint32_t pos = s->rooms[i].pos;
    sio_socket_t **members = sio_sockets_items(&r->members);
    PARLEY_ASSERT(r->members.count > 0 && pos < r->members.count && members[pos] == s);
    sio_socket_t *last = members[--r->members.count];
    if (last != s) {
        members[pos] = last;
        for (uint32_t j = 0; j < last->nrooms; j++) {
            if (last->rooms[j].room == r) {
                last->rooms[j].pos = pos;
                break;
            }
        }
    }
    s->rooms[i] = s->rooms[--s->nrooms];
    sio_server_t *io = s->nsp->io;
    if (io->monitor.leave)
        io->monitor.leave(s, r->name, io->monitor_arg);
    room_drop_if_empty(s->nsp, r);
}

static int local_leave(sio_adapter_t *a, sio_socket_t *s, const char *name) {
    for (uint32_t i = 0; i < s->nrooms; i++) {
        if (strcmp(s->rooms[i].room->name, name) == 0) {
            leave_at(s, i);
            return 0;
        }
    }
    return 0;
}

static void local_leave_all(sio_adapter_t *a, sio_socket_t *s) {
    while (s->nrooms)
        leave_at(s, s->nrooms - 1);
    free(s->rooms);
    s->rooms = NULL;
    s->caprooms = 0;
}

/* The sockets a target matches, each once and connected: in place for a small target
 * (a room of a few), else on the heap. */
#define RECIPIENTS_INLINE 32

typedef struct {
    sio_socket_t **items;
    size_t n, cap;
    sio_socket_t *inline_items[RECIPIENTS_INLINE];
} recipients_t;

/* Room for `more` sockets. False: out of memory. */
static bool recipients_reserve(recipients_t *r, size_t more) {
    if (r->n + more <= r->cap)
        return true;
    size_t cap = r->cap * 2 > r->n + more ? r->cap * 2 : r->n + more;
    sio_socket_t **a =
        r->items == r->inline_items ? malloc(cap * sizeof *a) : realloc(r->items, cap * sizeof *a);
    if (!a)
        return false;
    if (r->items == r->inline_items)
        memcpy(a, r->inline_items, r->n * sizeof *a);
    r->items = a;
    r->cap = cap;
    return true;
}

static void recipients_free(recipients_t *r) {
    if (r->items != r->inline_items)
        free(r->items);
}

static void recipients_add(recipients_t *r, sio_socket_t *s, uint64_t epoch) {
    if (!s || s->epoch == epoch || !s->connected)
        return;
    s->epoch = epoch;
    r->items[r->n++] = s;
}

/* Fills r (initialised here; recipients_free after) with the sockets matching `to` (NULL:
 * all). Each room's name is looked up once, as a room and as a socket's own room.
 * own_alone: a target that is one socket's own room and nothing else is that socket
 * alone, not also a room of that name (an emit to one socket, the most frequent kind).
 * False: out of memory (r is empty). */
static bool recipients_collect(sio_nsp_t *nsp, const sio_target_t *to, bool own_alone,
                               recipients_t *r) {
    r->items = r->inline_items;
    r->n = 0;
    r->cap = RECIPIENTS_INLINE;
    uint64_t epoch = ++nsp->io->epoch;
    size_t nexcept = to ? to->nexcept : 0;
    for (size_t i = 0; i < nexcept; i++) {
        sio_room_t *room = sio_room_get(nsp, to->except[i], false);
        for (uint32_t j = 0; room && j < room->members.count; j++)
            sio_sockets_items(&room->members)[j]->epoch = epoch;
        sio_socket_t *own = sio_nsp_find_socket(nsp, to->except[i]);
        if (own)
            own->epoch = epoch;
    }
    size_t nrooms = to ? to->nrooms : 0;
    if (nrooms == 0) {
        if (!recipients_reserve(r, nsp->nsockets))
            return false;
        for (uint32_t j = 0; j < nsp->nsockets; j++)
            recipients_add(r, nsp->sockets[j], epoch);
        return true;
    }
    for (size_t i = 0; i < nrooms; i++) {
        sio_socket_t *own = sio_nsp_find_socket(nsp, to->rooms[i]);
        if (own && own_alone && nrooms == 1 && nexcept == 0) {
            recipients_add(r, own, epoch);
            return true;
        }
        sio_room_t *room = sio_room_get(nsp, to->rooms[i], false);
        uint32_t count = room ? room->members.count : 0;
        /* + the socket whose own room it may be */
        if (!recipients_reserve(r, (size_t)count + 1)) {
            recipients_free(r);
            r->items = r->inline_items;
            r->n = 0;
            return false;
        }
        for (uint32_t j = 0; j < count; j++)
            recipients_add(r, sio_sockets_items(&room->members)[j], epoch);
        recipients_add(r, own, epoch);
    }
    return true;
}

/* Calls fn for each socket matching `to` (each once). fn may run the application's code,
 * which may make any socket leave or disconnect: each is held (sio_socket_ref) until the
 * walk is over. */
static void each(sio_nsp_t *nsp, const sio_target_t *to, void (*fn)(sio_socket_t *s, void *arg),
                 void *arg) {
    recipients_t r;
    if (!recipients_collect(nsp, to, false, &r)) {
        LOG_ERROR("sio", "out of memory in a broadcast");
        return;
    }
    for (size_t i = 0; i < r.n; i++)
        sio_socket_ref(r.items[i]);
    for (size_t i = 0; i < r.n; i++) {
        if (r.items[i]->connected)
            fn(r.items[i], arg);
        sio_socket_unref(r.items[i]);
    }
    recipients_free(&r);
}

/* A broadcast's delivery: the messages are queued on every recipient first, which calls
 * nothing back (sio_client_queue), so no socket can go meanwhile and none is held; the
 * few whose queueing failed are held, and closed once every recipient has its copy. */
static void deliver(sio_nsp_t *nsp, const sio_target_t *to, eio_msg_t *const *msgs, size_t n,
                    bool is_volatile) {
    recipients_t r;
    if (!recipients_collect(nsp, to, true, &r)) {
        LOG_ERROR("sio", "out of memory in a broadcast");
        return;
    }
    sio_stats_t *totals = &nsp->io->totals;
    size_t failed = 0;
    for (size_t i = 0; i < r.n; i++) {
        sio_socket_t *s = r.items[i];
        if (is_volatile && !eio_session_writable(s->client->eio)) {
            totals->volatile_dropped++;
            continue;
        }
        totals->deliveries++;
        if (!sio_client_queue(s->client, msgs, n)) {
            sio_socket_ref(s);
            r.items[failed++] = s; /* behind i: the slots walked already */
        }
    }
    for (size_t i = 0; i < failed; i++) {
        sio_client_queue_failed(r.items[i]->client);
        sio_socket_unref(r.items[i]);
    }
    recipients_free(&r);
}

static bool logs(const sio_nsp_t *nsp, const sio_target_t *to) {
    return nsp->io->cfg.recovery && !(to->flags & (SIO_VOLATILE | SIO_NO_RECOVERY));
}

static char **copy_names(const char *const *names, size_t n) {
    if (n == 0)
        return NULL;
    char **out = calloc(n, sizeof *out);
    for (size_t i = 0; out && i < n; i++) {
        if (!(out[i] = strdup(names[i]))) {
            while (i)
                free(out[--i]);
            free(out);
            return NULL;
        }
    }
    return out;
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static void log_entry_free(sio_logged_t *e) {
    for (size_t i = 0; i < e->nmsgs; i++)
        eio_msg_release(e->msgs[i]);
    free(e->msgs);
    free_names(e->rooms, e->nrooms);
    free_names(e->except, e->nexcept);
    memset(e, 0, sizeof *e);
}

static void log_pop(sio_nsp_t *nsp) {
    PARLEY_ASSERT(nsp->log_len > 0 && nsp->log_head < nsp->log_cap);
    PARLEY_ASSERT(nsp->log_bytes >= nsp->log[nsp->log_head].bytes);
    nsp->log_bytes -= nsp->log[nsp->log_head].bytes;
    log_entry_free(&nsp->log[nsp->log_head]);
    nsp->log_head = (nsp->log_head + 1) % nsp->log_cap;
    nsp->log_len--;
}

static int log_push(sio_nsp_t *nsp, const sio_target_t *to, eio_msg_t *const *msgs, size_t n,
                    uint64_t offset) {
    PARLEY_ASSERT(nsp->log_len <= nsp->log_cap && nsp->log_len <= SIO_LOG_MAX);
    if (nsp->log_len == SIO_LOG_MAX)
        log_pop(nsp);
    if (nsp->log_len == nsp->log_cap) {
        size_t cap = nsp->log_cap ? nsp->log_cap * 2 : 64;
        sio_logged_t *log = calloc(cap, sizeof *log);
        if (!log)
            return -ENOMEM;
        for (size_t i = 0; i < nsp->log_len; i++)
            log[i] = nsp->log[(nsp->log_head + i) % nsp->log_cap];
        free(nsp->log);
        nsp->log = log;
        nsp->log_cap = cap;
        nsp->log_head = 0;
    }
    sio_logged_t e = {.offset = offset, .time_ms = time_mono_ms(), .nmsgs = n};
    e.msgs = malloc(n * sizeof *e.msgs);
    e.nrooms = to ? to->nrooms : 0;
    e.nexcept = to ? to->nexcept : 0;
    e.rooms = to ? copy_names(to->rooms, e.nrooms) : NULL;
    e.except = to ? copy_names(to->except, e.nexcept) : NULL;
    if (!e.msgs || (e.nrooms && !e.rooms) || (e.nexcept && !e.except)) {
        e.nmsgs = 0;
        log_entry_free(&e);
        return -ENOMEM;
    }
    /* Memory held, roughly: the packets (shared with the sockets' queues while they are
     * being sent, but kept here alone afterwards) and the entry's own arrays. */
    e.bytes = sizeof e + n * sizeof *e.msgs;
    for (size_t i = 0; i < n; i++) {
        e.msgs[i] = msgs[i];
        ref_retain(&msgs[i]->ref);
        e.bytes += msgs[i]->len + sizeof *msgs[i];
    }
    for (size_t i = 0; i < e.nrooms; i++)
        e.bytes += sizeof *e.rooms + strlen(e.rooms[i]) + 1;
    for (size_t i = 0; i < e.nexcept; i++)
        e.bytes += sizeof *e.except + strlen(e.except[i]) + 1;
    nsp->log[(nsp->log_head + nsp->log_len) % nsp->log_cap] = e;
    nsp->log_len++;
    nsp->log_bytes += e.bytes;
    while (nsp->log_len > 1 && nsp->log_bytes > nsp->io->cfg.recovery_max_bytes)
        log_pop(nsp);
    return 0;
}

/* An offset as clients see it: with its server's tag first, when servers are told apart
 * by one, so that an offset of one server's log is never looked up in another's. */
#define OFFSET_TEXT_MAX (SIO_OFFSET_TAG_MAX + 24)

static void format_offset(const sio_nsp_t *nsp, uint64_t off, char out[OFFSET_TEXT_MAX]) {
    snprintf(out, OFFSET_TEXT_MAX, "%s%" PRIu64, nsp->io->offset_tag, off);
}

static bool parse_offset(const sio_nsp_t *nsp, const char *offset, uint64_t *out) {
    size_t tag = strlen(nsp->io->offset_tag);
    if (!offset || strncmp(offset, nsp->io->offset_tag, tag) != 0)
        return false;
    offset += tag;
    unsigned long long v;
    if (!slice_to_u64(slice_make(offset, strlen(offset)), &v))
        return false;
    *out = v;
    return true;
}

static int local_broadcast(sio_adapter_t *a, const sio_bcast_t *b) {
    sio_nsp_t *nsp = a->nsp;
    bool logged = logs(nsp, &b->to);
    /* Taken for good only once encoding succeeded: offsets must stay consecutive. */
    uint64_t off = logged ? nsp->next_offset + 1 : 0;
    char offset[OFFSET_TEXT_MAX];
    if (logged)
        format_offset(nsp, off, offset);
    eio_msg_t **msgs;
    int n = sio_encode_event(nsp, SIO_EVENT, -1, b->event, b->args_json, b->args_len, b->bins,
                             b->nbins, logged ? offset : NULL, &msgs);
    if (n < 0)
        return n;
    if (logged) {
        nsp->next_offset = off;
        if (log_push(nsp, &b->to, msgs, (size_t)n, off))
            LOG_WARN("sio", "recovery log: out of memory; packet %" PRIu64 " not kept", off);
    }
    deliver(nsp, &b->to, msgs, (size_t)n, b->to.flags & SIO_VOLATILE);
    sio_msgs_release(msgs, (size_t)n);
    for (size_t i = 0; i < nsp->nobservers; i++)
        nsp->observers[i].fn(nsp, b->event, b->args_json, b->args_len, &b->to,
                             nsp->observers[i].arg);
    return 0;
}

typedef struct {
    uint64_t id;
    eio_msg_t **msgs;
    size_t n;
    sio_bcast_count_fn count;
    sio_ack_fn ack;
    void *arg;
} ack_bcast_t;

/* Counted before it is sent: a recipient that drops during the send settles its share at
 * once, and the collector must already expect it. */
static void ack_bcast_one(sio_socket_t *s, void *arg) {
    ack_bcast_t *ab = arg;
    if (sio_socket_expect_ack(s, ab->id, 0, ab->ack, ab->arg))
        return;
    ab->count(1, false, ab->arg);
    sio_socket_send(s, ab->msgs, ab->n, false);
}

static int local_broadcast_with_ack(sio_adapter_t *a, const sio_bcast_t *b, uint64_t ack_id,
                                    sio_bcast_count_fn count, sio_ack_fn ack, void *arg) {
    eio_msg_t **msgs;
    int n = sio_encode_event(a->nsp, SIO_EVENT, (int64_t)ack_id, b->event, b->args_json,
                             b->args_len, b->bins, b->nbins, NULL, &msgs);
    if (n < 0)
        return n;
    ack_bcast_t ab = {ack_id, msgs, (size_t)n, count, ack, arg};
    each(a->nsp, &b->to, ack_bcast_one, &ab);
    sio_msgs_release(msgs, (size_t)n);
    if (!b->more)
        count(0, true, arg);
    return 0;
}

static void join_one(sio_socket_t *s, void *arg) {
    if (local_join(s->nsp->adapter, s, arg))
        LOG_WARN("sio", "out of memory joining a room");
}

static void leave_one(sio_socket_t *s, void *arg) {
    local_leave(s->nsp->adapter, s, arg);
}

static void disconnect_one(sio_socket_t *s, void *arg) {
    sio_socket_disconnect(s, *(bool *)arg);
}

static int local_sockets_join(sio_adapter_t *a, const sio_target_t *which, const char *room) {
    each(a->nsp, which, join_one, (void *)room);
    return 0;
}

static int local_sockets_leave(sio_adapter_t *a, const sio_target_t *which, const char *room) {
    each(a->nsp, which, leave_one, (void *)room);
    return 0;
}

static int local_disconnect_sockets(sio_adapter_t *a, const sio_target_t *which, bool close) {
    each(a->nsp, which, disconnect_one, &close);
    return 0;
}

static int local_fetch_sockets(sio_adapter_t *a, const sio_target_t *which,
                               void (*fn)(sio_socket_t *s, void *arg), void *arg) {
    each(a->nsp, which, fn, arg);
    return 0;
}

typedef struct {
    json_t *list;
    int rc;
} describe_t;

static void describe_one(sio_socket_t *s, void *arg) {
    describe_t *d = arg;
    if (d->rc == 0 && json_array_append_new(d->list, sio_socket_describe(s)))
        d->rc = -ENOMEM;
}

static int local_fetch_all(sio_adapter_t *a, const sio_target_t *which, uint32_t timeout_ms,
                           sio_fetch_fn done, void *arg) {
    describe_t d = {json_array(), 0};
    if (!d.list)
        return -ENOMEM;
    each(a->nsp, which, describe_one, &d);
    if (d.rc == 0)
        done(0, d.list, arg);
    json_decref(d.list);
    return d.rc;
}

/* Alone: no other server to hear it. */
static int local_server_emit(sio_adapter_t *a, const char *event, const char *args_json, size_t len,
                             uint32_t timeout_ms, sio_bcast_ack_fn done, void *arg) {
    if (!done)
        return 0;
    json_t *none = json_array();
    if (!none)
        return -ENOMEM;
    done(0, none, arg);
    json_decref(none);
    return 0;
}

static size_t local_room_size(sio_adapter_t *a, const char *room) {
    sio_room_t *r = sio_room_get(a->nsp, room, false);
    sio_socket_t *own = sio_nsp_find_socket(a->nsp, room); /* its own room is not stored */
    return (r ? r->members.count : 0) + (own && own->connected);
}

static size_t local_server_count(sio_adapter_t *a) {
    return 1;
}

/* ---- sessions ---- */

void sio_session_free(sio_session_t *session) {
    free_names(session->rooms, session->nrooms);
    json_decref(session->data);
    free(session);
}

static void local_persist(sio_adapter_t *a, sio_socket_t *s) {
    sio_nsp_t *nsp = a->nsp;
    sio_session_t *session = calloc(1, sizeof *session);
    if (!session)
        return;
    PARLEY_ASSERT(nsp->io->cfg.recovery); /* s->pid exists */
    memcpy(session->pid, s->pid, RAND_ID_SIZE);
    memcpy(session->sid, s->id, sizeof s->id);
    session->rooms = calloc(s->nrooms + 2, sizeof *session->rooms);
    /* Its own room first: packets to it are matched by room like any other. */
    if (session->rooms && (session->rooms[0] = strdup(s->id)))
        session->nrooms++;
    for (uint32_t i = 0; session->rooms && i < s->nrooms; i++)
        if ((session->rooms[session->nrooms] = strdup(s->rooms[i].room->name)))
            session->nrooms++;
    session->data = json_incref(s->data);
    session->disconnected_ms = time_mono_ms();
    if (!session->rooms || map_put(&nsp->sessions, session->pid, strlen(session->pid), session))
        sio_session_free(session);
}

static bool names_has(char *const *names, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

/* socket.io's shouldIncludePacket: in one of the target rooms (or no rooms given), and
 * in none of the excluded ones. */
static bool session_wants(const sio_session_t *ss, const sio_logged_t *e) {
    bool included = e->nrooms == 0;
    for (size_t i = 0; i < ss->nrooms; i++) {
        if (!included && names_has(e->rooms, e->nrooms, ss->rooms[i]))
            included = true;
        if (names_has(e->except, e->nexcept, ss->rooms[i]))
            return false;
    }
    return included;
}

sio_session_t *sio_adapter_take(sio_nsp_t *nsp, const char *pid, const char *offset,
                                sio_logged_t ***missed, size_t *nmissed) {
    *missed = NULL;
    *nmissed = 0;
    sio_session_t *ss = map_get(&nsp->sessions, pid, strlen(pid));
    if (!ss)
        return NULL;
    uint64_t now = time_mono_ms();
    map_del(&nsp->sessions, pid, strlen(pid));
    uint64_t off;
    uint64_t first = nsp->log_len ? nsp->log[nsp->log_head].offset : 0;
    if (ss->disconnected_ms + nsp->io->cfg.recovery_max_disconnection < now ||
        !parse_offset(nsp, offset, &off) || !nsp->log_len || off < first ||
        off >= first + nsp->log_len) {
        sio_session_free(ss);
        return NULL;
    }
    size_t from = (size_t)(off - first) + 1;
    sio_logged_t **list = malloc((nsp->log_len - from + 1) * sizeof *list);
    if (!list) {
        sio_session_free(ss);
        return NULL;
    }
    size_t n = 0;
    for (size_t i = from; i < nsp->log_len; i++) {
        sio_logged_t *e = &nsp->log[(nsp->log_head + i) % nsp->log_cap];
        if (session_wants(ss, e))
            list[n++] = e;
    }
    *missed = list;
    *nmissed = n;
    return ss;
}

void sio_adapter_give_back(sio_nsp_t *nsp, sio_session_t *session) {
    if (map_put(&nsp->sessions, session->pid, strlen(session->pid), session))
        sio_session_free(session);
}

bool sio_recovery_allowed(sio_socket_t *s, const sio_session_t *ss) {
    const sio_config_t *cfg = &s->nsp->io->cfg;
    if (cfg->recovery_allow && !cfg->recovery_allow(s, ss->data, cfg->recovery_arg)) {
        LOG_LIMITED(LOG_LEVEL_INFO, "sio",
                    "recovery of a session refused by the application; a fresh one instead");
        return false;
    }
    return true;
}

static void local_restore(sio_adapter_t *a, sio_socket_t *s, const char *pid, const char *offset,
                          sio_restore_fn done, void *arg) {
    sio_nsp_t *nsp = a->nsp;
    sio_session_t *ss = map_get(&nsp->sessions, pid, strlen(pid));
    sio_logged_t **missed = NULL;
    size_t nmissed = 0;
    if (ss && sio_recovery_allowed(s, ss))
        ss = sio_adapter_take(nsp, pid, offset, &missed, &nmissed);
    else
        ss = NULL;
    done(s, ss, missed, nmissed, arg);
    free(missed);
}

static void local_purge(sio_adapter_t *a, uint64_t now_ms) {
    sio_nsp_t *nsp = a->nsp;
    uint64_t max = nsp->io->cfg.recovery_max_disconnection;
    while (nsp->log_len && nsp->log[nsp->log_head].time_ms + max < now_ms)
        log_pop(nsp);
    /* Collect first: deleting moves entries under the iterator. */
    sio_session_t **expired = malloc((nsp->sessions.count + 1) * sizeof *expired);
    size_t n = 0;
    map_entry_t *e;
    for (size_t pos = 0; expired && map_next(&nsp->sessions, &pos, &e);) {
        sio_session_t *ss = e->value;
        if (ss->disconnected_ms + max < now_ms)
            expired[n++] = ss;
    }
    for (size_t i = 0; i < n; i++) {
        map_del(&nsp->sessions, expired[i]->pid, strlen(expired[i]->pid));
        sio_session_free(expired[i]);
    }
    free(expired);
}

static void local_free(sio_adapter_t *a) {
    sio_nsp_t *nsp = a->nsp;
    free(a);
    while (nsp->log_len)
        log_pop(nsp);
    free(nsp->log);
    map_entry_t *e;
    for (size_t pos = 0; map_next(&nsp->sessions, &pos, &e);)
        sio_session_free(e->value);
    map_free(&nsp->sessions);
    for (size_t pos = 0; map_next(&nsp->rooms, &pos, &e);) {
        sio_room_t *r = e->value;
        sio_sockets_free(&r->members);
        free(r);
    }
    map_free(&nsp->rooms);
}

static const sio_adapter_ops_t local_ops = {
    .broadcast = local_broadcast,
    .broadcast_with_ack = local_broadcast_with_ack,
    .join = local_join,
    .leave = local_leave,
    .leave_all = local_leave_all,
    .sockets_join = local_sockets_join,
    .sockets_leave = local_sockets_leave,
    .disconnect_sockets = local_disconnect_sockets,
    .fetch_sockets = local_fetch_sockets,
    .fetch_all = local_fetch_all,
    .server_emit = local_server_emit,
    .room_size = local_room_size,
    .persist = local_persist,
    .restore = local_restore,
    .purge = local_purge,
    .server_count = local_server_count,
    .free = local_free,
};

sio_adapter_t *sio_adapter_local_new(sio_nsp_t *nsp) {
    sio_adapter_t *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->ops = &local_ops;
    a->nsp = nsp;
    return a;
}

/* ---- pass-throughs for adapters that wrap this one ---- */

static sio_adapter_t *wrapped(sio_adapter_t *a) {
    return ((sio_wrapper_t *)a)->local;
}

int sio_wrapped_join(sio_adapter_t *a, sio_socket_t *s, const char *room) {
    return wrapped(a)->ops->join(wrapped(a), s, room);
}

int sio_wrapped_leave(sio_adapter_t *a, sio_socket_t *s, const char *room) {
    return wrapped(a)->ops->leave(wrapped(a), s, room);
}

void sio_wrapped_leave_all(sio_adapter_t *a, sio_socket_t *s) {
    wrapped(a)->ops->leave_all(wrapped(a), s);
}

int sio_wrapped_fetch_sockets(sio_adapter_t *a, const sio_target_t *which,
                              void (*fn)(sio_socket_t *s, void *arg), void *arg) {
    return wrapped(a)->ops->fetch_sockets(wrapped(a), which, fn, arg);
}

size_t sio_wrapped_room_size(sio_adapter_t *a, const char *room) {
    return wrapped(a)->ops->room_size(wrapped(a), room);
}

void sio_wrapped_persist(sio_adapter_t *a, sio_socket_t *s) {
    wrapped(a)->ops->persist(wrapped(a), s);
}

void sio_wrapped_restore(sio_adapter_t *a, sio_socket_t *s, const char *pid, const char *offset,
                         sio_restore_fn done, void *arg) {
    wrapped(a)->ops->restore(wrapped(a), s, pid, offset, done, arg);
}

void sio_wrapped_purge(sio_adapter_t *a, uint64_t now_ms) {
    wrapped(a)->ops->purge(wrapped(a), now_ms);
}
