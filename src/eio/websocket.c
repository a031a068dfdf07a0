/* eio/websocket.c — the WebSocket transport and the polling→websocket upgrade.
 *
 * Each Engine.IO packet is one WebSocket message. A session opened directly over
 * WebSocket gets its open packet as the first frame. An upgrade attaches a second
 * connection as the session's probe: "2probe" is answered "3probe" (and a held poll is
 * released with a noop), "5" makes it the transport and flushes what was queued
 * meanwhile, in order. A probe that does anything else, or takes longer than
 * upgrade_timeout, is closed and the session carries on over polling. */
#include "eio/internal.h"

#include <errno.h>
#include <string.h>

#include "eio/packet3.h"
#include "util/log.h"

static void ws_message(ws_conn_t *ws, uint8_t *data, size_t len, bool binary);
static void ws_closed(ws_conn_t *ws, uint16_t code);

static const ws_handler_t handler = {ws_message, ws_closed};

static size_t max_message(const eio_server_t *srv) {
    return srv->cfg.ws_max_message ? srv->cfg.ws_max_message : srv->cfg.max_payload;
}

void eio_websocket_handshake(eio_server_t *srv, http_conn_t *hc, http_req_t *req,
                             eio_guard_ip_t *guard, uint8_t protocol) {
    eio_session_t *s = eio_session_create(srv, EIO_TRANSPORT_WEBSOCKET, guard);
    if (!s) {
        http_respond_error(hc, 503, "cannot create session");
        return;
    }
    s->protocol = protocol;
    char cookie[96] = "";
    if (srv->cfg.cookie)
        snprintf(cookie, sizeof cookie, "Set-Cookie: io=%s; Path=/; HttpOnly; SameSite=Lax\r\n",
                 s->sid);
    ws_conn_t *ws;
    if (ws_conn_accept(hc, req, &handler, s, max_message(srv), cookie, srv->deflate, &ws)) {
        eio_session_end(s, "transport error", false);
        return;
    }
    s->ws = ws;
    char open[256];
    size_t n = eio_session_open_packet(s, open, sizeof open);
    if (ws_conn_send_copy(ws, WS_OP_TEXT, open, n)) {
        eio_session_end(s, "transport error", false);
        return;
    }
    eio_session_start(s, req, hc);
}

void eio_websocket_upgrade(eio_session_t *s, http_conn_t *hc, http_req_t *req) {
    bool refuse = s->transport != EIO_TRANSPORT_POLLING || s->probe;
    ws_conn_t *ws;
    if (ws_conn_accept(hc, req, &handler, refuse ? NULL : s, max_message(s->srv), NULL,
                       s->srv->deflate, &ws))
        return;
    if (refuse) {
        /* As the reference server does: accept, then close the extra connection. */
        LOG_DEBUG("eio", "session %s: extra websocket refused", s->sid);
        ws_conn_close(ws, WS_CLOSE_POLICY);
        return;
    }
    s->probe = ws;
    s->probed = false;
    ws_conn_set_deadline(ws, s->srv->cfg.upgrade_timeout);
}

static void drop_probe(eio_session_t *s, const char *why) {
    ws_conn_t *ws = s->probe;
    LOG_DEBUG("eio", "session %s: upgrade abandoned: %s", s->sid, why);
    s->probe = NULL;
    s->probed = false;
    ws->data = NULL;
    ws_conn_close(ws, WS_CLOSE_POLICY);
}

static void complete_upgrade(eio_session_t *s) {
    ws_conn_t *ws = s->probe;
    s->probe = NULL;
    s->ws = ws;
    s->transport = EIO_TRANSPORT_WEBSOCKET;
    ws_conn_set_deadline(ws, 0);
    eio_polling_release(s, s->srv->noop);
    /* Everything queued while the client switched goes out first, in order. */
    for (uint32_t i = s->qhead; i < s->qlen; i++) {
        if (eio_websocket_send(ws, s->queue[i], s->protocol)) {
            eio_session_end(s, "transport error", false);
            return;
        }
    }
    eio_session_queue_drop(s, s->qlen - s->qhead);
    s->srv->upgrades++;
    LOG_DEBUG("eio", "session %s upgraded to websocket", s->sid);
    if (s->srv->cb.on_upgrade)
        s->srv->cb.on_upgrade(s, s->srv->arg);
}

static void probe_message(eio_session_t *s, const eio_packet_t *p) {
    if (p->type == EIO_PING && p->len == 5 && memcmp(p->data, "probe", 5) == 0) {
        if (eio_websocket_send(s->probe, s->srv->pong_probe, s->protocol)) {
            drop_probe(s, "write failed");
            return;
        }
        s->probed = true;
        if (s->qlen == s->qhead)
            eio_polling_release(s, s->srv->noop);
    } else if (p->type == EIO_UPGRADE && s->probed) {
        complete_upgrade(s);
    } else {
        drop_probe(s, "unexpected packet");
    }
}

static void ws_message(ws_conn_t *ws, uint8_t *data, size_t len, bool binary) {
    eio_session_t *s = ws->data;
    if (!s)
        return;
    eio_packet_t p;
    int rc = s->protocol == 3 ? eio3_packet_decode_ws(data, len, binary, &p)
                              : eio_packet_decode_ws(data, len, binary, &p);
    if (rc) {
        LOG_LIMITED(LOG_LEVEL_INFO, "eio", "session %s: malformed packet", s->sid);
        if (ws == s->probe)
            drop_probe(s, "malformed packet");
        else
            eio_session_end(s, "parse error", true);
        return;
    }
    if (ws == s->probe)
        probe_message(s, &p);
    else
        eio_session_on_packet(s, &p);
}

static void ws_closed(ws_conn_t *ws, uint16_t code) {
    eio_session_t *s = ws->data;
    if (!s)
        return;
    ws->data = NULL;
    if (ws == s->probe) {
        s->probe = NULL;
        s->probed = false;
        return;
    }
    s->ws = NULL;
    /* A close the client asked for, or a dropped connection, is a "transport close"; a
     * close we sent because the client broke the WebSocket protocol is an error. */
    bool clean = code == WS_CLOSE_NORMAL || code == WS_CLOSE_GOING_AWAY ||
                 code == WS_CLOSE_NO_STATUS || code == WS_CLOSE_ABNORMAL;
    eio_session_end(s, clean ? "transport close" : "transport error", false);
}
