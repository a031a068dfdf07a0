/* ws/conn.h — WebSocket connections (RFC 6455), server side.
 *
 * Takes an HTTP connection over after a valid upgrade request: writes the 101 answer,
 * switches the net ops and keeps its state in the connection's ext area
 * (it fits in the HTTP_CONN_EXT_SIZE bytes every connection has: checked at compile time).
 * Delivers whole messages: an unfragmented frame is handed over in place, with no copy;
 * fragments are joined in a per-connection buffer that exists only while a fragmented
 * message is open. Text is checked for UTF-8 incrementally. Pings are answered, and the
 * close handshake is done with the right codes (see ws/frame.h).
 *
 * Sending: ws_conn_send() queues a frame header and payload by reference, so one
 * encoded message (its header computed once, in front of its payload) goes to many
 * connections without copies.
 *
 * permessage-deflate (ws/deflate.h), when the server offers a context and the client asks:
 * ws_conn_send_message() sends a message's shared compressed frame, made by the first
 * connection that needs it; received compressed messages are inflated (also when
 * fragmented) under the same max_message limit as plain ones, counted after inflating. */
#ifndef PARLEY_WS_CONN_H
#define PARLEY_WS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/server.h"
#include "util/buf.h"
#include "ws/deflate.h"
#include "ws/frame.h"

typedef struct ws_conn ws_conn_t;

typedef struct {
    /* A complete message; data is writable and valid during the call only. */
    void (*on_message)(ws_conn_t *ws, uint8_t *data, size_t len, bool binary);
    /* The connection is gone; code is the close code received or sent (1006 when the
     * TCP connection dropped without one). Do not use ws afterwards. */
    void (*on_close)(ws_conn_t *ws, uint16_t code);
} ws_handler_t;

#define WS_CLOSE_ABNORMAL 1006

/* What sending reads (deflate, close_sent) comes first: right after the net connection's
 * own hot fields (net/conn.h), in the same cache lines. */
struct ws_conn {
    ws_deflate_t *deflate; /* a reference to the server's context, while zp.on */
    uint32_t utf8_state;
    uint16_t close_code;
    uint8_t frag_opcode; /* WS_OP_TEXT/BINARY while fragmented, else 0 */
    bool close_sent;
    const ws_handler_t *handler;
    void *data;              /* the handler's */
    buf_t frag;              /* the open fragmented message, if any */
    size_t max_message;      /* bytes; 1009 above */
    bool frag_compressed;    /* the open fragmented message is compressed */
    ws_deflate_params_t zp;  /* what was agreed (zp.on: permessage-deflate is in use) */
    ws_inflater_t *inflater; /* the client's kept context, if it keeps one */
};

/* Validates the upgrade (ws/handshake.h), answers 101 with `extra` header lines (or
 * NULL), and takes the connection over. deflate (borrowed; NULL: off): the server's
 * permessage-deflate context, used when the client offers the extension. On a bad request
 * answers 400/426 itself and returns a negative status; returns 0 and *out on success. */
int ws_conn_accept(http_conn_t *hc, const http_req_t *req, const ws_handler_t *handler, void *data,
                   size_t max_message, const char *extra, ws_deflate_t *deflate, ws_conn_t **out);

/* Queues one frame: header bytes and payload, both owned by `owner` (retained until
 * written; NULL for static memory). A payload right after its header (eio_msg_t keeps
 * them so) is queued as one chunk: one reference and one iovec rather than two. Returns
 * 0, -EPIPE once closing, or -ENOMEM. */
int ws_conn_send(ws_conn_t *ws, ref_t *owner, const uint8_t *header, size_t header_len,
                 const void *payload, size_t len);
/* ws_conn_send of a final text or binary frame (opcode) that may go compressed: when the
 * connection negotiated permessage-deflate and the payload qualifies (ws_deflate_fits), z,
 * the message's shared compressed frame (owned by `owner` too), is made if still untried
 * and queued instead. */
int ws_conn_send_message(ws_conn_t *ws, ref_t *owner, ws_deflated_t *z, uint8_t opcode,
                         const uint8_t *header, size_t header_len, const void *payload, size_t len);
/* Frames and copies a text or binary message (never compressed). */
int ws_conn_send_copy(ws_conn_t *ws, uint8_t opcode, const void *payload, size_t len);

/* Starts the close handshake with `code` (no reason text); on_close follows when the
 * peer answers or after NET_LINGER_MS. */
void ws_conn_close(ws_conn_t *ws, uint16_t code);

/* The net connection whose ext area ws is. */
static inline net_conn_t *ws_conn_net(ws_conn_t *ws) {
    return net_conn_from_ext(ws);
}
/* Bytes waiting to be written: backpressure. */
static inline size_t ws_conn_queued(ws_conn_t *ws) {
    return net_conn_queued(ws_conn_net(ws));
}
/* Sets a deadline after which the connection is closed with 1001 (0 clears it). */
void ws_conn_set_deadline(ws_conn_t *ws, uint64_t ms);

#endif
