/* sio/socket.c — a Socket.IO socket: one client's membership of one namespace.
 *
 * Lifetime: created when a CONNECT arrives (sio_socket_new), connected once the
 * namespace's middleware has accepted it (sio_socket_establish), and closed exactly once
 * (sio_socket_onclose) for one of socket.io's disconnect reasons. The library holds one
 * reference until then; applications may hold more (sio_socket_ref).
 *
 * Acknowledgements the server asked for are kept in a short list per socket (a client
 * rarely has more than a few outstanding); each has its own timer only when the caller
 * asked for a timeout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sio/internal.h"
#include "util/assert.h"
#include "util/log.h"

/* Reasons after which socket.io keeps the session for recovery. */
static bool reason_recoverable(const char *reason) {
    static const char *const ok[] = {"transport error",      "transport close",
                                     "forced close",         "ping timeout",
                                     "server shutting down", "forced server close"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(reason, ok[i]) == 0)
            return true;
    return false;
}

sio_socket_t *sio_socket_new(sio_nsp_t *nsp, sio_client_t *c, json_t *auth) {
    bool recovery = nsp->io->cfg.recovery;
    sio_socket_t *s = calloc(1, sizeof *s + (recovery ? RAND_ID_SIZE : 0));
    if (!s)
        return NULL;
    s->refs = 1;
    s->nsp = nsp;
    s->client = c;
    s->connecting = true;
    s->auth = json_is_object(auth) ? json_incref(auth) : json_object();
    char id[RAND_ID_SIZE];
    if (rand_id(id) || (recovery && rand_id(s->pid)) || !s->auth) {
        json_decref(s->auth);
        free(s);
        return NULL;
    }
    memcpy(s->id, id, SIO_SOCKET_ID_LEN); /* as socket.io's: 20 characters, 120 bits */
    s->id[SIO_SOCKET_ID_LEN] = '\0';
    if (nsp->io->id_tag) {
        s->id[0] = nsp->io->id_tag;
        if (recovery)
            s->pid[0] = nsp->io->id_tag;
    }
    sio_client_ref(c); /* the handshake is read from it (sio_socket_handshake) */
    return s;
}

static void socket_free(sio_socket_t *s) {
    json_decref(s->data);
    json_decref(s->auth);
    free(s->rooms);
    sio_client_unref(s->client);
    free(s);
}

void sio_socket_ref(sio_socket_t *s) {
    s->refs++;
}

void sio_socket_unref(sio_socket_t *s) {
    if (--s->refs == 0)
        socket_free(s);
}

/* Sends a packet without arguments (CONNECT reply, DISCONNECT); data borrowed. */
static void send_control(sio_socket_t *s, sio_packet_type_t type, const json_t *data) {
    eio_msg_t *m = NULL;
    if (sio_encode_control(s->nsp->io, type, s->nsp->name, data, &m)) {
        sio_client_close(s->client, "transport error");
        return;
    }
    sio_client_send(s->client, &m, 1);
    eio_msg_release(m);
}

static int nsp_add(sio_socket_t *s) {
    sio_nsp_t *nsp = s->nsp;
    if (nsp->nsockets == nsp->capsockets) {
        uint32_t cap = nsp->capsockets ? nsp->capsockets * 2 : 16;
        sio_socket_t **a = realloc(nsp->sockets, cap * sizeof *a);
        if (!a)
            return -ENOMEM;
        nsp->sockets = a;
        nsp->capsockets = cap;
    }
    if (map_put(&nsp->by_id, s->id, strlen(s->id), s))
        return -ENOMEM;
    s->nsp_pos = nsp->nsockets;
    nsp->sockets[nsp->nsockets++] = s;
    return 0;
}

static void nsp_remove(sio_socket_t *s) {
    sio_nsp_t *nsp = s->nsp;
    sio_socket_t *last = nsp->sockets[--nsp->nsockets];
    nsp->sockets[s->nsp_pos] = last;
    last->nsp_pos = s->nsp_pos;
    if (map_get(&nsp->by_id, s->id, strlen(s->id)) == s)
        map_del(&nsp->by_id, s->id, strlen(s->id));
}

int sio_socket_establish(sio_socket_t *s, const sio_session_t *restored) {
    sio_nsp_t *nsp = s->nsp;
    if (restored) {
        PARLEY_ASSERT(nsp->io->cfg.recovery); /* s->pid exists */
        /* An id of this namespace's sockets (any server's): SIO_SOCKET_ID_LEN characters. */
        memcpy(s->id, restored->sid, SIO_SOCKET_ID_LEN);
        s->id[SIO_SOCKET_ID_LEN] = '\0';
        memcpy(s->pid, restored->pid, RAND_ID_SIZE);
        json_decref(s->data);
        s->data = json_incref(restored->data);
        s->recovered = true;
    }
    if (nsp_add(s))
        return -ENOMEM;
    s->connecting = false;
    s->connected = true;
    nsp->io->nsockets++;
    int rc = 0;
    for (size_t i = 0; rc == 0 && restored && i < restored->nrooms; i++)
        rc = nsp->adapter->ops->join(nsp->adapter, s, restored->rooms[i]);
    if (rc)
        return rc;
    /* v3 clients take no payload in the reply (socket.io 2 named sockets itself). */
    json_t *reply = s->client->protocol == 3 ? NULL
                    : nsp->io->cfg.recovery  ? json_pack("{s:s,s:s}", "sid", s->id, "pid", s->pid)
                                             : json_pack("{s:s}", "sid", s->id);
    if (!reply && s->client->protocol != 3)
        return -ENOMEM;
    send_control(s, SIO_CONNECT, reply);
    json_decref(reply);
    sio_client_stop_waiting(s->client);
    return 0;
}

static void ack_free_cb(uv_handle_t *h) {
    free(h->data);
}

static void ack_dispose(sio_pending_ack_t *a) {
    if (a->has_timer) {
        a->timer.data = a;
        uv_close((uv_handle_t *)&a->timer, ack_free_cb);
    } else {
        free(a);
    }
}

static void ack_unlink(sio_socket_t *s, sio_pending_ack_t *a) {
    for (sio_pending_ack_t **p = &s->acks; *p; p = &(*p)->next) {
        if (*p == a) {
            *p = a->next;
            return;
        }
    }
}

/* The namespace's slot destructors, for what the application left set. */
static void release_slots(sio_socket_t *s) {
    for (unsigned i = 0; i < SIO_DATA_SLOTS; i++) {
        if (s->slots[i] && s->nsp->slot_free[i]) {
            void *v = s->slots[i];
            s->slots[i] = NULL;
            s->nsp->slot_free[i](v);
        }
    }
}

int sio_nsp_slot_free(sio_nsp_t *nsp, unsigned slot, void (*fn)(void *value)) {
    if (slot >= SIO_DATA_SLOTS)
        return -EINVAL;
    nsp->slot_free[slot] = fn;
    return 0;
}

void sio_socket_onclose(sio_socket_t *s, const char *reason) {
    sio_client_t *c = s->client;
    if (!s->connected) {
        /* Still in middleware: the pending sio_next will see it is gone. */
        s->connecting = false;
        release_slots(s);
        sio_client_remove_socket(c, s);
        sio_socket_unref(s);
        return;
    }
    sio_nsp_t *nsp = s->nsp;
    sio_socket_ref(s);
    if (nsp->io->monitor.disconnect)
        nsp->io->monitor.disconnect(s, reason, nsp->io->monitor_arg);
    for (size_t i = 0; i < nsp->non_disc; i++)
        nsp->on_disc[i].fn(s, reason, nsp->on_disc[i].arg);
    if (nsp->io->cfg.recovery && reason_recoverable(reason))
        nsp->adapter->ops->persist(nsp->adapter, s);
    s->connected = false;
    nsp->io->nsockets--;
    release_slots(s);
    nsp->adapter->ops->leave_all(nsp->adapter, s);
    nsp_remove(s);
    while (s->acks) {
        sio_pending_ack_t *a = s->acks;
        s->acks = a->next;
        if (a->has_timer)
            uv_timer_stop(&a->timer);
        a->cb(s, -EPIPE, NULL, a->arg);
        ack_dispose(a);
    }
    sio_client_remove_socket(c, s);
    LOG_DEBUG("sio", "socket %s left %s: %s", s->id, nsp->name, reason);
    s->refs--;           /* the one taken above; the library's is still held */
    sio_socket_unref(s); /* the library's */
}

void sio_socket_discard(sio_socket_t *s) {
    s->connecting = false;
    release_slots(s);
    sio_client_remove_socket(s->client, s);
    sio_socket_unref(s);
}

/* ---- sending ---- */

static bool writable(sio_socket_t *s) {
    return eio_session_writable(s->client->eio);
}

void sio_socket_send(sio_socket_t *s, eio_msg_t *const *msgs, size_t n, bool is_volatile) {
    if (!s->connected)
        return;
    sio_stats_t *totals = &s->client->io->totals;
    if (is_volatile && !writable(s)) {
        totals->volatile_dropped++;
        return;
    }
    totals->deliveries++;
    sio_client_send(s->client, msgs, n);
}

/* An emit to this socket alone is a broadcast to its own room, through the one emit path
 * (the adapter): with recovery on it gets an offset and is kept, as socket.io does. */
static int emit_encoded(sio_socket_t *s, const char *event, const char *json, size_t len,
                        const sio_bin_t *bins, size_t nbins, unsigned flags) {
    if (!s->connected)
        return -EPIPE;
    sio_server_t *io = s->nsp->io;
    if (io->monitor.event_out)
        io->monitor.event_out(s, event, json, len, io->monitor_arg);
    const char *room = s->id;
    /* The socket is here: nothing for other processes (a room of that name elsewhere is
     * not this socket's). */
    sio_bcast_t b = {.event = event,
                     .args_json = json,
                     .args_len = len,
                     .bins = bins,
                     .nbins = nbins,
                     .to = {.rooms = &room, .nrooms = 1, .flags = flags | SIO_LOCAL}};
    return s->nsp->adapter->ops->broadcast(s->nsp->adapter, &b);
}

int sio_socket_emit(sio_socket_t *s, const char *event, const sio_payload_t *p, unsigned flags) {
    buf_t b = {0};
    int rc = sio_args_dump(p ? p->args : NULL, &b);
    if (rc == -EINVAL && (!p || !p->args))
        rc = buf_append(&b, "[]", 2);
    if (rc == 0)
        rc = emit_encoded(s, event, (const char *)b.data, b.len, p ? p->bins : NULL,
                          p ? p->nbins : 0, flags);
    buf_free(&b);
    return rc;
}

int sio_socket_emit_json(sio_socket_t *s, const char *event, const char *args_json, size_t len,
                         unsigned flags) {
    return emit_encoded(s, event, args_json, len, NULL, 0, flags);
}

static void ack_timeout(uv_timer_t *t) {
    sio_pending_ack_t *a = t->data;
    sio_socket_t *s = a->socket;
    ack_unlink(s, a);
    a->cb(s, -ETIMEDOUT, NULL, a->arg);
    ack_dispose(a);
}

int sio_socket_expect_ack(sio_socket_t *s, uint64_t id, uint32_t timeout_ms, sio_ack_fn cb,
                          void *arg) {
    sio_pending_ack_t *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    *a = (sio_pending_ack_t){.socket = s, .id = id, .cb = cb, .arg = arg};
    if (timeout_ms) {
        if (uv_timer_init(s->nsp->io->loop, &a->timer)) {
            free(a);
            return -ENOMEM;
        }
        a->has_timer = true;
        a->timer.data = a;
        if (uv_timer_start(&a->timer, ack_timeout, timeout_ms, 0)) {
            ack_dispose(a);
            return -ENOMEM;
        }
    }
    a->next = s->acks;
    s->acks = a;
    return 0;
}

int sio_socket_emit_with_ack(sio_socket_t *s, uint32_t timeout_ms, const char *event,
                             const sio_payload_t *p, sio_ack_fn cb, void *arg) {
    if (!s->connected)
        return -EPIPE;
    buf_t b = {0};
    int rc = sio_args_dump(p ? p->args : NULL, &b);
    if (rc == -EINVAL && (!p || !p->args))
        rc = buf_append(&b, "[]", 2);
    uint64_t id = s->nsp->next_ack_id++;
    eio_msg_t **msgs = NULL;
    int n = rc ? rc
               : sio_encode_event(s->nsp, SIO_EVENT, (int64_t)id, event, (const char *)b.data,
                                  b.len, p ? p->bins : NULL, p ? p->nbins : 0, NULL, &msgs);
    sio_server_t *io = s->nsp->io;
    if (n >= 0 && io->monitor.event_out)
        io->monitor.event_out(s, event, (const char *)b.data, b.len, io->monitor_arg);
    buf_free(&b);
    if (n < 0)
        return n;
    rc = sio_socket_expect_ack(s, id, timeout_ms, cb, arg);
    if (rc == 0)
        sio_socket_send(s, msgs, (size_t)n, false);
    sio_msgs_release(msgs, (size_t)n);
    return rc;
}

void sio_socket_on_ack(sio_socket_t *s, sio_packet_t *p) {
    for (sio_pending_ack_t *a = s->acks; a; a = a->next) {
        if ((int64_t)a->id != p->id)
            continue;
        ack_unlink(s, a);
        if (a->has_timer)
            uv_timer_stop(&a->timer);
        sio_bin_t bins[p->nbins ? p->nbins : 1];
        for (size_t i = 0; i < p->nbins; i++)
            bins[i] = (sio_bin_t){p->bins[i]->data, p->bins[i]->len};
        sio_payload_t payload = {p->data, bins, p->nbins};
        a->cb(s, 0, &payload, a->arg);
        ack_dispose(a);
        return;
    }
    LOG_DEBUG("sio", "socket %s: ack %lld matches nothing", s->id, (long long)p->id);
}

static int ack_encoded(sio_socket_t *s, int64_t ack_id, const char *json, size_t len,
                       const sio_bin_t *bins, size_t nbins) {
    if (!s->connected)
        return -EPIPE;
    if (ack_id < 0)
        return -EINVAL;
    eio_msg_t **msgs;
    int n = sio_encode_event(s->nsp, SIO_ACK, ack_id, NULL, json, len, bins, nbins, NULL, &msgs);
    if (n < 0)
        return n;
    sio_socket_send(s, msgs, (size_t)n, false);
    sio_msgs_release(msgs, (size_t)n);
    return 0;
}

int sio_socket_ack(sio_socket_t *s, int64_t ack_id, const sio_payload_t *p) {
    buf_t b = {0};
    int rc = sio_args_dump(p ? p->args : NULL, &b);
    if (rc == -EINVAL && (!p || !p->args))
        rc = buf_append(&b, "[]", 2);
    if (rc == 0)
        rc = ack_encoded(s, ack_id, (const char *)b.data, b.len, p ? p->bins : NULL,
                         p ? p->nbins : 0);
    buf_free(&b);
    return rc;
}

int sio_socket_ack_json(sio_socket_t *s, int64_t ack_id, const char *args_json, size_t len) {
    return ack_encoded(s, ack_id, args_json, len, NULL, 0);
}

int sio_socket_broadcast(sio_socket_t *s, const sio_target_t *to, const char *event,
                         const sio_payload_t *p) {
    const char *except[65];
    sio_target_t t = to ? *to : (sio_target_t){0};
    if (t.nexcept >= 64)
        return -EINVAL;
    for (size_t i = 0; i < t.nexcept; i++)
        except[i] = t.except[i];
    except[t.nexcept] = s->id;
    t.except = except;
    t.nexcept++;
    return sio_nsp_emit(s->nsp, &t, event, p);
}

void sio_socket_disconnect(sio_socket_t *s, bool close) {
    if (!s->connected)
        return;
    if (close) {
        /* socket.disconnect(true): every namespace of the connection is told, then the
         * connection is closed (its packets go out before the close). */
        sio_client_t *c = s->client;
        while (c->sockets.count) {
            sio_socket_t *x = sio_sockets_items(&c->sockets)[c->sockets.count - 1];
            if (x->connected)
                send_control(x, SIO_DISCONNECT, NULL);
            sio_socket_onclose(x, "server namespace disconnect");
        }
        sio_client_close(c, "forced server close");
        return;
    }
    send_control(s, SIO_DISCONNECT, NULL);
    sio_socket_onclose(s, "server namespace disconnect");
}

/* ---- accessors ---- */

const char *sio_socket_id(const sio_socket_t *s) {
    return s->id;
}

sio_nsp_t *sio_socket_nsp(const sio_socket_t *s) {
    return s->nsp;
}

bool sio_socket_connected(const sio_socket_t *s) {
    return s->connected;
}

const char *sio_socket_client_id(const sio_socket_t *s) {
    return s->connected ? eio_session_id(s->client->eio) : "";
}

const char *sio_socket_transport(const sio_socket_t *s) {
    return s->connected ? eio_session_transport(s->client->eio) : "";
}

bool sio_socket_recovered(const sio_socket_t *s) {
    return s->recovered;
}

static void add_room(const char *room, void *arg) {
    json_array_append_new(arg, json_string(room));
}

json_t *sio_socket_describe(const sio_socket_t *s) {
    sio_handshake_t hs = sio_socket_handshake(s);
    char when[64] = "";
    time_t secs = (time_t)(hs.time_ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm))
        strftime(when, sizeof when, "%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)",
                 &tm);
    json_t *rooms = json_array();
    if (rooms)
        sio_socket_rooms(s, add_room, rooms);
    json_t *d = json_pack("{s:s, s:{s:O?, s:s, s:s, s:b, s:b, s:I, s:s, s:O?, s:O?}, s:o?, s:O?}",
                          "id", s->id, "handshake", "headers", hs.headers, "time", when, "address",
                          hs.address, "xdomain", json_object_get(hs.headers, "origin") != NULL,
                          "secure", hs.secure, "issued", (json_int_t)hs.time_ms, "url", hs.url,
                          "query", hs.query, "auth", hs.auth, "rooms", rooms, "data", s->data);
    if (d && !s->data && json_object_set_new(d, "data", json_object())) {
        json_decref(d);
        d = NULL;
    }
    return d;
}

/* All but auth are the client's, shared by its sockets of every namespace. */
sio_handshake_t sio_socket_handshake(const sio_socket_t *s) {
    const sio_client_t *c = s->client;
    return (sio_handshake_t){.auth = s->auth,
                             .headers = c->headers,
                             .query = c->query,
                             .address = c->address ? c->address : "",
                             .url = c->url ? c->url : "",
                             .time_ms = c->time_ms,
                             .protocol = c->protocol};
}

void *sio_socket_get(const sio_socket_t *s, unsigned slot) {
    return slot < SIO_DATA_SLOTS ? s->slots[slot] : NULL;
}

void sio_socket_set(sio_socket_t *s, unsigned slot, void *value) {
    if (slot < SIO_DATA_SLOTS)
        s->slots[slot] = value;
}

json_t *sio_socket_data(sio_socket_t *s) {
    if (!s->data)
        s->data = json_object();
    return s->data;
}

int sio_socket_join(sio_socket_t *s, const char *room) {
    return s->connected ? s->nsp->adapter->ops->join(s->nsp->adapter, s, room) : -EPIPE;
}

int sio_socket_leave(sio_socket_t *s, const char *room) {
    return s->connected ? s->nsp->adapter->ops->leave(s->nsp->adapter, s, room) : -EPIPE;
}

bool sio_socket_in(const sio_socket_t *s, const char *room) {
    if (strcmp(room, s->id) == 0)
        return s->connected;
    return sio_adapter_member(s, sio_room_get(s->nsp, room, false));
}

size_t sio_socket_room_count(const sio_socket_t *s) {
    return s->nrooms;
}

void sio_socket_rooms(const sio_socket_t *s, void (*fn)(const char *room, void *arg), void *arg) {
    if (s->connected)
        fn(s->id, arg);
    for (uint32_t i = 0; i < s->nrooms; i++)
        fn(s->rooms[i].room->name, arg);
}

json_t *sio_placeholder(size_t num) {
    return json_pack("{s:b,s:I}", "_placeholder", 1, "num", (json_int_t)num);
}
