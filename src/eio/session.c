/* eio/session.c — an Engine.IO session's life: creation, the outgoing queue, the
 * heartbeat, packets from either transport, and the one way out (eio_session_end).
 *
 * Heartbeat: each session alternates between "send a ping after ping_interval" and
 * "close unless a pong came within ping_timeout", as the reference server does. Not
 * with a timer each (152 bytes, and a handle the loop walks): every deadline kind has a
 * fixed duration, so the server keeps one list per kind in deadline order (append at
 * the tail) and one timer set to the earliest head.
 *
 * A session's memory is freed by the flush hook at the end of the loop iteration in
 * which it ended, so callers up the stack may still look at it. */
#include "eio/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/assert.h"
#include "util/log.h"

/* ---- deadlines ---- */

static void due_clear(eio_session_t *s) {
    if (s->due_list < 0)
        return;
    PARLEY_ASSERT(s->due_list < EIO_DUE_LISTS);
    eio_due_list_t *l = &s->srv->due[s->due_list];
    PARLEY_ASSERT(s->due_prev ? s->due_prev->due_next == s : l->head == s);
    PARLEY_ASSERT(s->due_next ? s->due_next->due_prev == s : l->tail == s);
    if (s->due_prev)
        s->due_prev->due_next = s->due_next;
    else
        l->head = s->due_next;
    if (s->due_next)
        s->due_next->due_prev = s->due_prev;
    else
        l->tail = s->due_prev;
    s->due_prev = s->due_next = NULL;
    s->due_list = -1;
}

static uint32_t due_duration(const eio_server_t *srv, int list) {
    if (list == EIO_DUE_CLIENT_PING) /* v3: the client's next ping, with its slack */
        return srv->cfg.ping_interval + srv->cfg.ping_timeout;
    return list == EIO_DUE_PING ? srv->cfg.ping_interval : srv->cfg.ping_timeout;
}

/* Sets the server's timer to the earliest head (or stops it). */
static int due_arm(eio_server_t *srv) {
    uint64_t first = 0;
    for (int i = 0; i < EIO_DUE_LISTS; i++)
        if (srv->due[i].head && (!first || srv->due[i].head->due_at < first))
            first = srv->due[i].head->due_at;
    if (first == srv->due_timer_at)
        return 0;
    srv->due_timer_at = first;
    if (!first)
        return uv_timer_stop(srv->due_timer);
    uint64_t now = uv_now(srv->due_timer->loop);
    return uv_timer_start(srv->due_timer, eio_server_due, first > now ? first - now : 0, 0);
}

/* The session's next deadline: `list`'s duration from now. */
static int due_set(eio_session_t *s, int list) {
    eio_server_t *srv = s->srv;
    due_clear(s);
    s->due_at = uv_now(srv->due_timer->loop) + due_duration(srv, list);
    s->due_list = (int8_t)list;
    eio_due_list_t *l = &srv->due[list];
    s->due_prev = l->tail;
    if (l->tail)
        l->tail->due_next = s;
    else
        l->head = s;
    l->tail = s;
    return srv->due_timer_at && srv->due_timer_at <= s->due_at ? 0 : due_arm(srv);
}

static void on_ping_due(eio_session_t *s);

void eio_server_due(uv_timer_t *t) {
    eio_server_t *srv = t->data;
    uint64_t now = uv_now(t->loop);
    srv->due_timer_at = 0;
    for (int i = 0; i < EIO_DUE_LISTS; i++) {
        eio_session_t *s;
        while ((s = srv->due[i].head) && s->due_at <= now) {
            due_clear(s);
            if (i == EIO_DUE_DRAIN)
                eio_session_finish_drain(s);
            else if (i == EIO_DUE_CLIENT_PING)
                eio_session_end(s, "ping timeout", true);
            else
                on_ping_due(s);
        }
    }
    if (due_arm(srv))
        LOG_ERROR("eio", "heartbeat timer cannot be set");
}

/* ---- sessions ---- */

eio_session_t *eio_session_create(eio_server_t *srv, eio_transport_t transport,
                                  eio_guard_ip_t *guard) {
    eio_session_t *s = calloc(1, sizeof *s);
    if (!s) {
        if (guard)
            eio_guard_leave(srv->guard, guard);
        return NULL;
    }
    s->guard = guard;
    s->srv = srv;
    s->transport = (uint8_t)transport;
    s->protocol = 4;
    s->due_list = -1;
    int rc = rand_id(s->sid);
    if (rc == 0 && srv->group_tag)
        s->sid[0] = srv->group_tag;
    if (rc == 0 && srv->cfg.sid_suffix) {
        size_t n = strlen(srv->cfg.sid_suffix);
        memcpy(s->sid + sizeof s->sid - 1 - n, srv->cfg.sid_suffix, n);
    }
    if (rc || map_put(&srv->sessions, s->sid, strlen(s->sid), s)) {
        if (guard)
            eio_guard_leave(srv->guard, guard);
        free(s);
        return NULL;
    }
    return s;
}

size_t eio_session_open_packet(const eio_session_t *s, char *out, size_t size) {
    const eio_config_t *cfg = &s->srv->cfg;
    bool upgrades = s->transport == EIO_TRANSPORT_POLLING && cfg->allow_websocket;
    int n = snprintf(out, size,
                     "0{\"sid\":\"%s\",\"upgrades\":[%s],\"pingInterval\":%u,"
                     "\"pingTimeout\":%u,\"maxPayload\":%zu}",
                     s->sid, upgrades ? "\"websocket\"" : "", cfg->ping_interval, cfg->ping_timeout,
                     cfg->max_payload);
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

void eio_session_start(eio_session_t *s, const http_req_t *req, http_conn_t *hc) {
    char address[64] = "";
    if (s->srv->cfg.peer_address && net_conn_peer(http_conn_net(hc), address, sizeof address))
        address[0] = '\0';
    /* v4: the server pings; v3: the client does, and the server waits for it. */
    if (due_set(s, s->protocol == 3 ? EIO_DUE_CLIENT_PING : EIO_DUE_PING)) {
        eio_session_end(s, "transport error", true);
        return;
    }
    LOG_DEBUG("eio", "session %s open (%s)", s->sid, eio_session_transport(s));
    s->opened = true;
    s->srv->handshakes++;
    if (s->srv->cb.on_open)
        s->srv->cb.on_open(s, req, address, s->srv->arg);
}

static void on_ping_due(eio_session_t *s) {
    if (s->awaiting_pong) {
        eio_session_end(s, "ping timeout", true);
        return;
    }
    s->awaiting_pong = true;
    if (eio_session_send(s, s->srv->ping) || due_set(s, EIO_DUE_PONG))
        eio_session_end(s, "transport error", true);
}

/* v3: the client's ping is answered and pushes the deadline for the next one. */
static void on_client_ping(eio_session_t *s) {
    if (eio_session_send(s, s->srv->pong) || due_set(s, EIO_DUE_CLIENT_PING))
        eio_session_end(s, "transport error", true);
}

static void on_pong(eio_session_t *s) {
    if (!s->awaiting_pong)
        return;
    s->awaiting_pong = false;
    if (due_set(s, EIO_DUE_PING))
        eio_session_end(s, "transport error", true);
}

void eio_session_on_packet(eio_session_t *s, const eio_packet_t *p) {
    if (s->closed)
        return;
    switch (p->type) {
    case EIO_PONG:
        if (s->protocol == 3) { /* the heartbeat's wrong direction, as for v4's ping */
            LOG_DEBUG("eio", "session %s: pong from a v3 client", s->sid);
            eio_session_end(s, "transport error", true);
        } else {
            on_pong(s);
        }
        break;
    case EIO_MESSAGE:
        if (s->srv->cb.on_message)
            s->srv->cb.on_message(s, p->data, p->len, p->binary, s->srv->arg);
        break;
    case EIO_CLOSE:
        eio_session_end(s, "transport close", false);
        break;
    case EIO_PING:
        /* v4 pings go server → client only; probes are handled by websocket.c. */
        if (s->protocol == 3) {
            on_client_ping(s);
            break;
        }
        LOG_DEBUG("eio", "session %s: ping from client", s->sid);
        eio_session_end(s, "transport error", true);
        break;
    default: /* open, upgrade and noop carry nothing for an open session */
        break;
    }
}

/* ---- sending ---- */

/* Memory a queued message stands for, not only its payload: many small packets cost
 * their headers and allocations too, and backpressure must see that. */
static size_t queued_cost(const eio_msg_t *m) {
    return m->len + sizeof *m + sizeof m + 32;
}

static int queue_push(eio_session_t *s, eio_msg_t *m) {
    PARLEY_ASSERT(s->qhead <= s->qlen && s->qlen <= s->qcap);
    if (s->qlen == s->qcap) {
        if (s->qhead > 0) {
            memmove(s->queue, s->queue + s->qhead, (s->qlen - s->qhead) * sizeof *s->queue);
            s->qlen -= s->qhead;
            s->qhead = 0;
        } else {
            uint32_t cap = s->qcap ? s->qcap * 2 : 8;
            eio_msg_t **q = realloc(s->queue, cap * sizeof *q);
            if (!q)
                return -ENOMEM;
            s->queue = q;
            s->qcap = cap;
        }
    }
    ref_retain(&m->ref);
    s->queue[s->qlen++] = m;
    s->qbytes += queued_cost(m);
    return 0;
}

static void queue_clear(eio_session_t *s) {
    for (uint32_t i = s->qhead; i < s->qlen; i++)
        eio_msg_release(s->queue[i]);
    free(s->queue);
    s->queue = NULL;
    s->qhead = s->qlen = s->qcap = 0;
    s->qbytes = 0;
}

void eio_session_queue_drop(eio_session_t *s, uint32_t n) {
    PARLEY_ASSERT(n <= s->qlen - s->qhead);
    for (uint32_t i = 0; i < n; i++) {
        PARLEY_ASSERT(s->qbytes >= queued_cost(s->queue[s->qhead]));
        s->qbytes -= queued_cost(s->queue[s->qhead]);
        eio_msg_release(s->queue[s->qhead++]);
    }
    if (s->qhead == s->qlen)
        s->qhead = s->qlen = 0;
}

int eio_session_send(eio_session_t *s, eio_msg_t *m) {
    if (s->closed)
        return -EPIPE;
    if (s->transport == EIO_TRANSPORT_WEBSOCKET)
        return eio_websocket_send(s->ws, m, s->protocol);
    int rc = queue_push(s, m);
    if (rc == 0 && s->get)
        eio_session_schedule_flush(s);
    return rc;
}

int eio_session_send_message(eio_session_t *s, const void *data, size_t len, bool binary) {
    eio_msg_t *m = eio_msg_new(EIO_MESSAGE, binary, data, len);
    if (!m)
        return -ENOMEM;
    int rc = eio_session_send(s, m);
    eio_msg_release(m);
    return rc;
}

void eio_session_schedule_flush(eio_session_t *s) {
    if (s->flush_scheduled)
        return;
    s->flush_scheduled = true;
    s->flush_next = s->srv->flush_head;
    s->srv->flush_head = s;
}

/* Runs once per loop iteration before connections are flushed: answers held polls with
 * everything queued during the iteration, in one response each. */
void eio_server_flush_hook(void *arg) {
    eio_server_t *srv = arg;
    while (srv->flush_head) {
        eio_session_t *s = srv->flush_head;
        srv->flush_head = s->flush_next;
        s->flush_scheduled = false;
        if (s->free_pending)
            free(s);
        else if (!s->closed || s->draining)
            eio_polling_flush(s);
    }
}

/* ---- closing ---- */

/* The memory goes with the next flush hook run (this iteration's). */
static void release(eio_session_t *s) {
    due_clear(s);
    if (s->guard) {
        eio_guard_leave(s->srv->guard, s->guard);
        s->guard = NULL;
    }
    s->free_pending = true;
    eio_session_schedule_flush(s);
}

static void end_session(eio_session_t *s, const char *reason, bool notify_client, bool graceful);

void eio_session_end(eio_session_t *s, const char *reason, bool notify_client) {
    end_session(s, reason, notify_client, false);
}

/* graceful: the application closed the session (not an error or a timeout). */
static void end_session(eio_session_t *s, const char *reason, bool notify_client, bool graceful) {
    if (s->closed)
        return;
    s->closed = true;
    eio_server_t *srv = s->srv;
    LOG_DEBUG("eio", "session %s closed: %s", s->sid, reason);
    if (s->opened)
        srv->ended[eio_end_reason_of(reason)]++;
    /* A server that goes away (a drain) says 1001: the client reconnects, to another
     * process of the port. */
    uint16_t code = srv->going_away || srv->closing ? WS_CLOSE_GOING_AWAY : WS_CLOSE_NORMAL;
    /* A server-side close over polling with packets still queued (a DISCONNECT, say):
     * deliver them first and send the close packet with the next poll, as the reference
     * server does, so that the client handles them before it sees the transport close.
     * A server going away does so for a session between two polls too: its next poll
     * gets the close packet ("transport close") rather than an unknown session. */
    if (graceful && s->transport == EIO_TRANSPORT_POLLING &&
        (s->qlen > s->qhead || (srv->going_away && !s->get)) && !srv->closing &&
        due_set(s, EIO_DUE_DRAIN) == 0) {
        s->draining = true;
        if (s->probe) {
            ws_conn_t *ws = s->probe;
            s->probe = NULL;
            ws->data = NULL;
            ws_conn_close(ws, code);
        }
        if (s->get)
            eio_polling_flush(s);
        if (s->opened && srv->cb.on_close)
            srv->cb.on_close(s, reason, srv->arg);
        return;
    }
    map_del(&srv->sessions, s->sid, strlen(s->sid));
    if (s->get)
        eio_polling_release(s, notify_client ? srv->close : srv->noop);
    if (s->ws) {
        ws_conn_t *ws = s->ws;
        s->ws = NULL;
        ws->data = NULL;
        ws_conn_close(ws, code);
    }
    if (s->probe) {
        ws_conn_t *ws = s->probe;
        s->probe = NULL;
        ws->data = NULL;
        ws_conn_close(ws, code);
    }
    queue_clear(s);
    if (s->opened && srv->cb.on_close)
        srv->cb.on_close(s, reason, srv->arg);
    release(s);
}

void eio_session_finish_drain(eio_session_t *s) {
    if (!s->draining)
        return;
    s->draining = false;
    map_del(&s->srv->sessions, s->sid, strlen(s->sid));
    if (s->get)
        eio_polling_release(s, s->srv->close);
    queue_clear(s);
    release(s);
}

void eio_session_close(eio_session_t *s) {
    end_session(s, "forced close", true, true);
}

void eio_session_close_reason(eio_session_t *s, const char *reason) {
    end_session(s, reason, true, true);
}

bool eio_session_writable(const eio_session_t *s) {
    if (s->closed)
        return false;
    if (s->transport == EIO_TRANSPORT_WEBSOCKET)
        return s->ws && ws_conn_queued(s->ws) < EIO_WRITABLE_BYTES;
    return s->get != NULL;
}

eio_session_t *eio_session_open_local(eio_server_t *srv) {
    eio_session_t *s = eio_session_create(srv, EIO_TRANSPORT_POLLING, NULL);
    if (!s)
        return NULL;
    http_req_t req;
    memset(&req, 0, sizeof req);
    req.head.method = SLICE_LIT("GET");
    req.head.target = req.head.path = SLICE_LIT("/");
    req.head.content_length = -1;
    s->opened = true;
    if (srv->cb.on_open)
        srv->cb.on_open(s, &req, "local", srv->arg);
    return s;
}

void eio_session_inject(eio_session_t *s, uint8_t *data, size_t len, bool binary) {
    eio_packet_t p = {EIO_MESSAGE, binary, data, len};
    eio_session_on_packet(s, &p);
}

size_t eio_session_drain(eio_session_t *s) {
    size_t n = s->qlen - s->qhead;
    eio_session_queue_drop(s, (uint32_t)n);
    return n;
}

const char *eio_session_id(const eio_session_t *s) {
    return s->sid;
}

void *eio_session_data(const eio_session_t *s) {
    return s->data;
}

void eio_session_set_data(eio_session_t *s, void *data) {
    s->data = data;
}

int eio_session_protocol(const eio_session_t *s) {
    return s->protocol;
}

const char *eio_session_transport(const eio_session_t *s) {
    return s->transport == EIO_TRANSPORT_WEBSOCKET ? "websocket" : "polling";
}

size_t eio_session_buffered(const eio_session_t *s) {
    return s->qbytes + (s->ws ? ws_conn_queued(s->ws) : 0);
}
