/* sio/client.c — Socket.IO clients: one per Engine.IO session.
 *
 * A client owns a packet decoder (fed through the server's parser; with the json parser
 * binary packets wait there for their attachments), the handshake data its sockets
 * share, and its sockets, one per namespace. Packets are decoded here and dispatched to
 * the socket of their namespace. A client that has not joined any namespace within
 * connect_timeout is closed: clients waiting for that are a FIFO list (same timeout for
 * all) served by a single timer armed for the oldest deadline.
 *
 * Sockets read their handshake from their client rather than keeping a copy each, so a
 * client is reference-counted: its memory goes when its session has closed and the last
 * socket that the application still holds is released. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sio/internal.h"
#include "util/log.h"
#include "util/time.h"

static void wait_unlink(sio_server_t *io, sio_client_t *c) {
    if (!c->waiting)
        return;
    c->waiting = false;
    if (c->wait_prev)
        c->wait_prev->wait_next = c->wait_next;
    else
        io->wait_head = c->wait_next;
    if (c->wait_next)
        c->wait_next->wait_prev = c->wait_prev;
    else
        io->wait_tail = c->wait_prev;
    c->wait_prev = c->wait_next = NULL;
}

static void on_connect_timer(uv_timer_t *t);

static void arm_connect_timer(sio_server_t *io) {
    if (!io->wait_head) {
        uv_timer_stop(&io->connect_timer);
        return;
    }
    uint64_t now = time_mono_ms();
    uint64_t due = io->wait_head->connect_deadline;
    if (uv_timer_start(&io->connect_timer, on_connect_timer, due > now ? due - now : 0, 0))
        LOG_ERROR("sio", "cannot arm the connect timer");
}

static void on_connect_timer(uv_timer_t *t) {
    sio_server_t *io = t->data;
    uint64_t now = time_mono_ms();
    while (io->wait_head && io->wait_head->connect_deadline <= now) {
        sio_client_t *c = io->wait_head;
        wait_unlink(io, c);
        LOG_DEBUG("sio", "client %s joined no namespace in time", eio_session_id(c->eio));
        sio_client_close(c, "forced close");
    }
    arm_connect_timer(io);
}

void sio_client_stop_waiting(sio_client_t *c) {
    wait_unlink(c->io, c);
}

void sio_client_ref(sio_client_t *c) {
    c->refs++;
}

void sio_client_unref(sio_client_t *c) {
    if (--c->refs)
        return;
    json_decref(c->headers);
    json_decref(c->query);
    free(c->url);
    free(c->address);
    free(c);
}

int sio_client_add_socket(sio_client_t *c, sio_socket_t *s) {
    return sio_sockets_push(&c->sockets, s);
}

void sio_client_remove_socket(sio_client_t *c, sio_socket_t *s) {
    sio_socket_t **a = sio_sockets_items(&c->sockets);
    for (uint32_t i = 0; i < c->sockets.count; i++) {
        if (a[i] == s) {
            a[i] = a[--c->sockets.count];
            return;
        }
    }
}

bool sio_client_queue(sio_client_t *c, eio_msg_t *const *msgs, size_t n) {
    if (!c->eio)
        return true;
    c->io->totals.packets_sent++;
    for (size_t i = 0; i < n; i++)
        if (eio_session_send(c->eio, msgs[i]))
            return false;
    /* A client that does not read cannot make the server hold unbounded memory. */
    return eio_session_buffered(c->eio) <= SIO_SLOW_CLIENT_FACTOR * c->io->cfg.backpressure_bytes;
}

void sio_client_queue_failed(sio_client_t *c) {
    if (c->closing || !c->eio)
        return;
    size_t buffered = eio_session_buffered(c->eio);
    if (buffered > SIO_SLOW_CLIENT_FACTOR * c->io->cfg.backpressure_bytes) {
        LOG_WARN("sio", "client %s: %zu bytes waiting; closing a slow consumer",
                 eio_session_id(c->eio), buffered);
        c->io->totals.slow_clients_cut++;
    }
    sio_client_close(c, "transport error");
}

void sio_client_send(sio_client_t *c, eio_msg_t *const *msgs, size_t n) {
    if (!sio_client_queue(c, msgs, n))
        sio_client_queue_failed(c);
}

void sio_client_close(sio_client_t *c, const char *reason) {
    if (c->closing || !c->eio)
        return;
    c->closing = true;
    /* The session's end calls client_close with this same reason, at once. */
    eio_session_close_reason(c->eio, reason);
}

/* Handshake headers as a JSON object with lower-case names; repeated headers are
 * joined with ", " as Node does. Values that are not UTF-8 are left out. */
static json_t *headers_json(const http_request_t *req) {
    json_t *h = json_object();
    for (size_t i = 0; h && i < req->num_headers; i++) {
        char name[128];
        slice_t n = req->headers[i].name;
        if (n.len >= sizeof name)
            continue;
        for (size_t j = 0; j < n.len; j++)
            name[j] = (char)tolower((unsigned char)n.base[j]);
        name[n.len] = '\0';
        slice_t v = req->headers[i].value;
        json_t *old = json_object_get(h, name);
        json_t *val;
        if (old) {
            buf_t b = {0};
            int rc = buf_append_str(&b, json_string_value(old));
            if (rc == 0)
                rc = buf_append(&b, ", ", 2);
            if (rc == 0)
                rc = buf_append(&b, v.base, v.len);
            val = rc ? NULL : json_stringn((const char *)b.data, b.len);
            buf_free(&b);
        } else {
            val = json_stringn(v.base, v.len);
        }
        if (val)
            json_object_set_new(h, name, val);
    }
    return h;
}

static json_t *query_json(slice_t q) {
    json_t *o = json_object();
    size_t i = 0;
    while (o && i < q.len) {
        size_t start = i;
        while (i < q.len && q.base[i] != '&')
            i++;
        slice_t pair = slice_make(q.base + start, i - start);
        i++;
        const char *eq = memchr(pair.base, '=', pair.len);
        size_t klen = eq ? (size_t)(eq - pair.base) : pair.len;
        if (klen == 0 || klen > 255)
            continue;
        char key[256];
        memcpy(key, pair.base, klen);
        key[klen] = '\0';
        json_t *val = eq ? json_stringn(eq + 1, pair.len - klen - 1) : json_string("");
        if (val)
            json_object_set_new(o, key, val);
    }
    return o;
}

static void client_open(eio_session_t *es, const http_req_t *req, const char *address, void *arg) {
    sio_server_t *io = arg;
    sio_client_t *c = calloc(1, sizeof *c);
    if (!c) {
        eio_session_close(es);
        return;
    }
    c->refs = 1; /* the session's, dropped by client_close */
    c->io = io;
    c->eio = es;
    c->protocol = (uint8_t)eio_session_protocol(es);
    c->headers = io->cfg.lean_handshake ? json_incref(io->empty) : headers_json(&req->head);
    /* A v3 client's credentials can only be in its query: kept for it even when lean. */
    c->query = io->cfg.lean_handshake && c->protocol != 3 ? json_incref(io->empty)
                                                          : query_json(req->head.query);
    c->url = io->cfg.lean_handshake ? NULL : strndup(req->head.target.base, req->head.target.len);
    c->time_ms = time_wall_ms();
    c->address = *address && !io->cfg.lean_handshake ? strdup(address) : NULL;
    sio_decoder_init(&c->dec, io->cfg.max_attachments);
    eio_session_set_data(es, c);
    io->nclients++;
    if (!c->headers || !c->query || (!c->url && !io->cfg.lean_handshake) ||
        (!c->address && *address && !io->cfg.lean_handshake)) {
        sio_client_close(c, "transport error");
        return;
    }
    c->connect_deadline = time_mono_ms() + io->cfg.connect_timeout;
    c->waiting = true;
    c->wait_prev = io->wait_tail;
    if (io->wait_tail)
        io->wait_tail->wait_next = c;
    else
        io->wait_head = c;
    io->wait_tail = c;
    if (io->wait_head == c)
        arm_connect_timer(io);
    /* socket.io 2 clients are in "/" from the start: they send no CONNECT for it. */
    if (c->protocol == 3)
        sio_nsp_connect(sio_server_find(io, "/"), c, NULL);
}

static void send_invalid_namespace(sio_client_t *c, const char *nsp) {
    json_t *err = c->protocol == 3 ? json_string("Invalid namespace")
                                   : json_pack("{s:s}", "message", "Invalid namespace");
    eio_msg_t *m = NULL;
    int rc = err ? sio_encode_control(c->io, SIO_CONNECT_ERROR, nsp, err, &m) : -ENOMEM;
    json_decref(err);
    if (rc) {
        sio_client_close(c, "transport error");
        return;
    }
    sio_client_send(c, &m, 1);
    eio_msg_release(m);
}

/* socket.io 2 clients put the query of a namespace's URL after its name
 * ("/admin?token=…"); socket.io reads it as the CONNECT's auth object. */
static int split_v3_query(sio_packet_t *p) {
    char *q = strchr(p->nsp, '?');
    if (!q)
        return 0;
    *q++ = '\0';
    if (p->type != SIO_CONNECT)
        return 0;
    json_decref(p->data);
    p->data = query_json(slice_make(q, strlen(q)));
    return p->data ? 0 : -ENOMEM;
}

static void handle_packet(sio_client_t *c, sio_packet_t *p) {
    if (c->protocol == 3 && split_v3_query(p)) {
        sio_client_close(c, "transport error");
        return;
    }
    if (p->type == SIO_CONNECT) {
        sio_nsp_t *nsp = sio_nsp_find_or_match(c->io, p->nsp, p->data);
        if (!nsp) {
            LOG_DEBUG("sio", "CONNECT to unknown namespace %s", p->nsp);
            send_invalid_namespace(c, p->nsp);
            return;
        }
        sio_nsp_connect(nsp, c, p->data);
        return;
    }
    for (uint32_t i = 0; i < c->sockets.count; i++) {
        sio_socket_t *s = sio_sockets_items(&c->sockets)[i];
        if (s->connected && strcmp(s->nsp->name, p->nsp) == 0) {
            sio_nsp_dispatch(s, p);
            return;
        }
    }
    LOG_DEBUG("sio", "packet for namespace %s, which this client has not joined", p->nsp);
}

static void client_message(eio_session_t *es, uint8_t *data, size_t len, bool binary, void *arg) {
    sio_client_t *c = eio_session_data(es);
    if (!c || c->closing)
        return;
    sio_packet_t p;
    sio_decode_result_t r = c->io->parser->decode(&c->dec, data, len, binary, &p);
    if (r == SIO_DECODE_ERROR) {
        LOG_LIMITED(LOG_LEVEL_WARN, "sio", "client %s: malformed packet; closing",
                    eio_session_id(es));
        sio_client_close(c, "parse error");
        return;
    }
    if (r == SIO_DECODE_PACKET) {
        c->io->totals.packets_received++;
        handle_packet(c, &p);
        sio_packet_clear(&p);
    }
}

static void client_close(eio_session_t *es, const char *reason, void *arg) {
    sio_server_t *io = arg;
    sio_client_t *c = eio_session_data(es);
    if (!c)
        return;
    c->closing = true;
    /* Each onclose removes the socket from c->sockets. */
    while (c->sockets.count)
        sio_socket_onclose(sio_sockets_items(&c->sockets)[c->sockets.count - 1], reason);
    wait_unlink(io, c);
    if (io->wait_head == NULL)
        uv_timer_stop(&io->connect_timer);
    sio_decoder_clear(&c->dec);
    sio_sockets_free(&c->sockets);
    c->eio = NULL; /* the session is going: sockets that outlive it send nothing */
    eio_session_set_data(es, NULL);
    io->nclients--;
    sio_client_unref(c);
}

static void client_upgrade(eio_session_t *es, void *arg) {
    sio_server_t *io = arg;
    sio_client_t *c = eio_session_data(es);
    if (!c || !io->monitor.transport)
        return;
    for (uint32_t i = 0; i < c->sockets.count; i++) {
        sio_socket_t *s = sio_sockets_items(&c->sockets)[i];
        if (s->connected)
            io->monitor.transport(s, eio_session_transport(es), io->monitor_arg);
    }
}

void sio_client_callbacks(eio_callbacks_t *cb) {
    *cb = (eio_callbacks_t){.on_open = client_open,
                            .on_message = client_message,
                            .on_close = client_close,
                            .on_upgrade = client_upgrade};
}
