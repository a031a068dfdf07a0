/* ws/conn.c — WebSocket message assembly, control frames and the close handshake on
 * a net connection (see conn.h).
 *
 * Closing: whichever side starts it, the handler is told at once (on_close) and then
 * forgotten; the close frame is queued and the net connection closed gracefully (the
 * server closes TCP first, as RFC 6455 §7.1.1 asks), lingering to let the peer's own
 * close frame arrive and be discarded. */
#include "ws/conn.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/log.h"
#include "util/utf8.h"
#include "ws/handshake.h"

_Static_assert(sizeof(ws_conn_t) <= HTTP_CONN_EXT_SIZE,
               "a WebSocket takes over the HTTP connection's ext area: it must fit");

static ssize_t ws_on_data(net_conn_t *c, uint8_t *data, size_t len);
static void ws_on_timeout(net_conn_t *c);
static void ws_on_close(net_conn_t *c);

static const net_conn_ops_t ws_ops = {ws_on_data, ws_on_timeout, ws_on_close};

static inline ws_conn_t *ws_of(net_conn_t *c) {
    return net_conn_ext(c);
}

int ws_conn_accept(http_conn_t *hc, const http_req_t *req, const ws_handler_t *handler, void *data,
                   size_t max_message, const char *extra, ws_deflate_t *deflate, ws_conn_t **out) {
    int rc = ws_handshake_check(&req->head);
    if (rc == -426) {
        http_conn_set_close(hc);
        http_respond(hc, 426, "text/plain; charset=utf-8", "Sec-WebSocket-Version: 13\r\n",
                     "Upgrade Required\n", 17);
        return rc;
    }
    if (rc) {
        http_respond_error(hc, 400, "bad WebSocket upgrade request");
        return rc;
    }
    const slice_t *key = http_request_header(&req->head, "sec-websocket-key");
    char accept[WS_ACCEPT_LEN + 1];
    ws_handshake_accept(*key, accept);
    ws_deflate_params_t zp = {0};
    char zline[WS_DEFLATE_RESPONSE_MAX] = "";
    ws_inflater_t *inflater = NULL;
    if (deflate &&
        ws_deflate_negotiate(&req->head, ws_deflate_config(deflate)->client_context, &zp)) {
        ws_deflate_response(&zp, zline);
        if (!zp.client_no_context && !(inflater = ws_inflater_new(deflate))) {
            http_respond_error(hc, 503, "out of memory");
            return -503;
        }
    }
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s\r\n",
                     accept, zline, extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof head) {
        ws_inflater_free(deflate, inflater);
        http_respond_error(hc, 500, "upgrade response too large");
        return -500;
    }
    net_conn_t *c = http_conn_net(hc);
    http_conn_detach(hc);
    /* From here on the ext area is ours. */
    ws_conn_t *ws = ws_of(c);
    memset(ws, 0, sizeof *ws);
    ws->handler = handler;
    ws->data = data;
    ws->max_message = max_message;
    if (zp.on) {
        ws->zp = zp;
        ws->deflate = ws_deflate_retain(deflate);
        ws->inflater = inflater;
    }
    net_conn_set_ops(c, &ws_ops);
    if (net_conn_write_copy(c, head, (size_t)n)) {
        net_conn_abort(c);
        return -ENOMEM;
    }
    *out = ws;
    return 0;
}

/* Tells the handler the connection is over (once). */
static void finish(ws_conn_t *ws, uint16_t code) {
    const ws_handler_t *h = ws->handler;
    ws->handler = NULL;
    buf_free(&ws->frag);
    /* Nothing is read after this (ws_on_data discards it): the zlib memory can go. */
    if (ws->deflate) {
        ws_inflater_free(ws->deflate, ws->inflater);
        ws->inflater = NULL;
        ws_deflate_release(ws->deflate);
        ws->deflate = NULL;
    }
    if (h)
        h->on_close(ws, code);
}

static void send_close(ws_conn_t *ws, uint16_t code) {
    if (ws->close_sent)
        return;
    ws->close_sent = true;
    ws->close_code = code;
    uint8_t frame[4] = {0x80 | WS_OP_CLOSE, 0, 0, 0};
    size_t n = 2;
    if (code != WS_CLOSE_NO_STATUS) {
        frame[1] = 2;
        frame[2] = (uint8_t)(code >> 8);
        frame[3] = (uint8_t)code;
        n = 4;
    }
    net_conn_t *c = ws_conn_net(ws);
    if (net_conn_write_copy(c, frame, n))
        net_conn_abort(c);
    else
        net_conn_close(c);
}

void ws_conn_close(ws_conn_t *ws, uint16_t code) {
    send_close(ws, code);
    finish(ws, code);
}

void ws_conn_set_deadline(ws_conn_t *ws, uint64_t ms) {
    net_conn_set_deadline(ws_conn_net(ws), ms);
}

/* ws_conn_send once the connection is known to be open. */
static int queue_frame(ws_conn_t *ws, ref_t *owner, const uint8_t *header, size_t header_len,
                       const void *payload, size_t len) {
    net_conn_t *c = ws_conn_net(ws);
    if (header + header_len == (const uint8_t *)payload)
        return net_conn_write(c, owner, header, header_len + len);
    int rc = net_conn_write(c, owner, header, header_len);
    if (rc == 0)
        rc = net_conn_write(c, owner, payload, len);
    return rc;
}

int ws_conn_send(ws_conn_t *ws, ref_t *owner, const uint8_t *header, size_t header_len,
                 const void *payload, size_t len) {
    if (ws->close_sent)
        return -EPIPE;
    return queue_frame(ws, owner, header, header_len, payload, len);
}

int ws_conn_send_message(ws_conn_t *ws, ref_t *owner, ws_deflated_t *z, uint8_t opcode,
                         const uint8_t *header, size_t header_len, const void *payload,
                         size_t len) {
    if (ws->close_sent)
        return -EPIPE;
    if (ws->deflate && ws_deflate_fits(ws->deflate, &ws->zp, len)) {
        /* The first recipient pays for the compression; the others share its frame. Out
         * of memory leaves z untried and the message goes plain this time. */
        if (z->state == WS_DEFLATED_UNTRIED &&
            ws_deflate_make(ws->deflate, opcode, payload, len, z))
            LOG_LIMITED(LOG_LEVEL_WARN, "ws", "no memory to compress; sent uncompressed");
        if (z->state == WS_DEFLATED_MADE) {
            int rc = net_conn_write(ws_conn_net(ws), owner, z->frame, z->len);
            if (rc == 0)
                ws_deflate_count_sent(ws->deflate, 1);
            return rc;
        }
    }
    return queue_frame(ws, owner, header, header_len, payload, len);
}

int ws_conn_send_copy(ws_conn_t *ws, uint8_t opcode, const void *payload, size_t len) {
    if (ws->close_sent)
        return -EPIPE;
    uint8_t header[WS_FRAME_HEADER_MAX];
    size_t hl = ws_frame_header(header, opcode, len);
    rcbuf_t *b = rcbuf_new(NULL, hl + len);
    if (!b)
        return -ENOMEM;
    memcpy(b->data, header, hl);
    if (len)
        memcpy(b->data + hl, payload, len);
    int rc = net_conn_write(ws_conn_net(ws), &b->ref, b->data, b->len);
    ref_release(&b->ref);
    return rc;
}

static void fail(ws_conn_t *ws, uint16_t code, const char *why) {
    LOG_LIMITED(LOG_LEVEL_INFO, "ws", "closing with %u: %s", code, why);
    ws_conn_close(ws, code);
}

static void deliver(ws_conn_t *ws, uint8_t *data, size_t len, bool binary) {
    if (ws->handler)
        ws->handler->on_message(ws, data, len, binary);
}

/* A whole compressed message (RFC 7692 §7.2.2): inflated into the context's buffer under
 * the message limit, checked, delivered. */
static void deliver_compressed(ws_conn_t *ws, const uint8_t *data, size_t len, bool text) {
    /* Held across the delivery: the handler may close this connection, which drops the
     * connection's reference, and the buffer is the context's. */
    ws_deflate_t *d = ws_deflate_retain(ws->deflate);
    uint8_t *msg;
    size_t n;
    int rc = ws_deflate_inflate(d, ws->inflater, data, len, ws->max_message, &msg, &n);
    if (rc < 0)
        fail(ws, (uint16_t)-rc,
             rc == -WS_CLOSE_TOO_BIG        ? "message too big once inflated"
             : rc == -WS_CLOSE_INVALID_DATA ? "corrupt compressed data"
                                            : "out of memory");
    else if (text && !utf8_is_valid(msg, n))
        fail(ws, WS_CLOSE_INVALID_DATA, "invalid UTF-8");
    else
        deliver(ws, msg, n, !text);
    ws_deflate_inflate_done(d);
    ws_deflate_release(d);
}

static void on_data_frame(ws_conn_t *ws, ws_frame_t *f) {
    bool text = f->opcode == WS_OP_TEXT;
    if (ws->frag_opcode) {
        fail(ws, WS_CLOSE_PROTOCOL_ERROR, "data frame inside a fragmented message");
        return;
    }
    if (f->rsv1) {
        /* Compressed text is checked for UTF-8 once inflated, whole. */
        if (f->fin) {
            deliver_compressed(ws, f->payload, f->len, text);
            return;
        }
        ws->frag_opcode = f->opcode;
        ws->frag_compressed = true;
        if (buf_append(&ws->frag, f->payload, f->len))
            fail(ws, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    if (f->fin) {
        if (text && !utf8_is_valid(f->payload, f->len)) {
            fail(ws, WS_CLOSE_INVALID_DATA, "invalid UTF-8");
            return;
        }
        deliver(ws, f->payload, f->len, !text);
        return;
    }
    ws->frag_opcode = f->opcode;
    ws->utf8_state = UTF8_ACCEPT;
    if (text && utf8_validate(&ws->utf8_state, f->payload, f->len) == UTF8_REJECT) {
        fail(ws, WS_CLOSE_INVALID_DATA, "invalid UTF-8");
        return;
    }
    if (buf_append(&ws->frag, f->payload, f->len))
        fail(ws, WS_CLOSE_INTERNAL, "out of memory");
}

static void on_continuation(ws_conn_t *ws, ws_frame_t *f) {
    if (!ws->frag_opcode) {
        fail(ws, WS_CLOSE_PROTOCOL_ERROR, "continuation without a message");
        return;
    }
    bool text = ws->frag_opcode == WS_OP_TEXT;
    bool compressed = ws->frag_compressed;
    if (f->len > ws->max_message - ws->frag.len) {
        fail(ws, WS_CLOSE_TOO_BIG, "message too big");
        return;
    }
    if (text && !compressed && utf8_validate(&ws->utf8_state, f->payload, f->len) == UTF8_REJECT) {
        fail(ws, WS_CLOSE_INVALID_DATA, "invalid UTF-8");
        return;
    }
    if (buf_append(&ws->frag, f->payload, f->len)) {
        fail(ws, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    if (!f->fin)
        return;
    if (text && !compressed && ws->utf8_state != UTF8_ACCEPT) {
        fail(ws, WS_CLOSE_INVALID_DATA, "truncated UTF-8");
        return;
    }
    /* Hand the joined message over, then drop the buffer: an idle connection keeps no
     * reassembly memory. */
    buf_t msg = ws->frag;
    ws->frag = (buf_t){0};
    ws->frag_opcode = 0;
    ws->frag_compressed = false;
    if (compressed)
        deliver_compressed(ws, msg.data, msg.len, text);
    else
        deliver(ws, msg.data, msg.len, !text);
    buf_free(&msg);
}

static void on_close_frame(ws_conn_t *ws, ws_frame_t *f) {
    uint16_t code;
    int rc = ws_close_payload_check(f->payload, f->len, &code);
    if (rc < 0) {
        fail(ws, (uint16_t)-rc, "bad close frame");
        return;
    }
    /* Echo the peer's code (RFC 6455 §5.5.1); an empty close gets an empty answer. */
    ws_conn_close(ws, code);
}

static ssize_t ws_on_data(net_conn_t *c, uint8_t *data, size_t len) {
    ws_conn_t *ws = ws_of(c);
    /* Closed for the handler: what the peer still sends (its close frame, say) is
     * discarded unread. */
    if (!ws->handler)
        return (ssize_t)len;
    ws_frame_t f;
    ssize_t r = ws->zp.on ? ws_frame_parse_rsv1(data, len, ws->max_message, &f)
                          : ws_frame_parse(data, len, ws->max_message, &f);
    if (r == 0)
        return 0;
    if (r < 0) {
        fail(ws, (uint16_t)-r, "bad frame");
        return (ssize_t)len;
    }
    switch (f.opcode) {
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        on_data_frame(ws, &f);
        break;
    case WS_OP_CONT:
        on_continuation(ws, &f);
        break;
    case WS_OP_PING:
        if (ws_conn_send_copy(ws, WS_OP_PONG, f.payload, f.len) == -ENOMEM)
            fail(ws, WS_CLOSE_INTERNAL, "out of memory");
        break;
    case WS_OP_CLOSE:
        on_close_frame(ws, &f);
        break;
    default: /* WS_OP_PONG: nothing to do */
        break;
    }
    return r;
}

static void ws_on_timeout(net_conn_t *c) {
    ws_conn_close(ws_of(c), WS_CLOSE_GOING_AWAY);
}

static void ws_on_close(net_conn_t *c) {
    ws_conn_t *ws = ws_of(c);
    finish(ws, ws->close_sent ? ws->close_code : WS_CLOSE_ABNORMAL);
}
