/* eio/packet.h — Engine.IO v4 packets: decoding what clients send, and the shared
 * encoded form of what the server sends.
 *
 * Decoding works in place on the caller's buffer (a WebSocket message or a polling POST
 * body): packets come back as pointers into it, base64 binary packets decoded in place.
 *
 * Outgoing packets are eio_msg_t: encoded once, reference counted, and queued by
 * reference on every session that sends them. The WebSocket frame header is computed
 * when the message is made (one per message, not per recipient), right before the data,
 * so that a WebSocket frame is one piece of memory; the long-polling form
 * of a binary packet ("b" + base64) and the permessage-deflate frame are computed on
 * first use and cached. */
#ifndef PARLEY_EIO_PACKET_H
#define PARLEY_EIO_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/ref.h"
#include "ws/deflate.h"
#include "ws/frame.h"

typedef enum {
    EIO_OPEN = 0,
    EIO_CLOSE = 1,
    EIO_PING = 2,
    EIO_PONG = 3,
    EIO_MESSAGE = 4,
    EIO_UPGRADE = 5,
    EIO_NOOP = 6,
} eio_packet_type_t;

#define EIO_RECORD_SEPARATOR '\x1e'

typedef struct {
    eio_packet_type_t type;
    bool binary;   /* a binary message: data is the raw bytes */
    uint8_t *data; /* payload after the type character; into the caller's buffer */
    size_t len;
} eio_packet_t;

/* Decodes one WebSocket message. A text message is a type digit '0'..'6' and payload;
 * a binary message is a binary EIO_MESSAGE as is. Returns 0, or -1 when the message is
 * not a valid packet (empty text, unknown type). */
int eio_packet_decode_ws(uint8_t *data, size_t len, bool binary, eio_packet_t *out);

/* Iterates the packets of a long-polling payload: packets separated by 0x1e, each a type
 * digit and payload, or 'b' and padded base64 for a binary message (decoded in place,
 * over its own base64; the rest of buf is not modified). Start with *pos = 0 and treat
 * it as opaque (it ends at len + 1). Returns 1 with *out filled, 0 when the payload is
 * exhausted, or -1 on a malformed packet (empty packet, unknown type, bad base64); after
 * -1 the whole payload must be rejected. An empty payload, a leading or trailing
 * separator and two separators in a row are all malformed (an empty packet). */
int eio_payload_next(uint8_t *buf, size_t len, size_t *pos, eio_packet_t *out);

typedef struct eio_zbuf eio_zbuf_t; /* eio/compress.h */

typedef struct eio_msg {
    ref_t ref;
    size_t utf16_len;       /* text, v3 polling: data's JavaScript length; SIZE_MAX until used */
    char *polling;          /* binary only: "b" + base64, made on first use; owned */
    ws_deflated_t deflated; /* the compressed frame, made on first use (ws/deflate.h) */
    /* The polling form gzipped and deflated (eio/compress.h), made on first use; one
     * reference each. */
    eio_zbuf_t *zipped[2];
    size_t polling_len;
    size_t len; /* bytes in data */
    uint8_t type;
    bool binary;
    /* Binary only: the frame header an Engine.IO v3 client gets (eio/packet3.h), which
     * counts the leading type byte 4, and that byte as its last byte. */
    uint8_t ws3_header_len;
    uint8_t ws3_header[WS_FRAME_HEADER_MAX + 1];
    uint8_t ws_header_len;
    /* The WebSocket frame header fills the end of this room, so that header and data are
     * one frame in one piece (eio_msg_ws_header): one chunk per recipient's queue, one
     * iovec per write. */
    uint8_t ws_room[WS_FRAME_HEADER_MAX];
    uint8_t data[]; /* text: the type digit then the payload; binary: the raw bytes */
} eio_msg_t;

/* A message of `type` with room for payload_len payload bytes, one reference held by the
 * caller. For text the type digit is written at data[0] and the payload goes at
 * eio_msg_payload(); the caller fills it before queueing the message anywhere. The
 * WebSocket header is computed here. Returns NULL when out of memory, or when `type` is
 * unknown or binary is asked for a type other than EIO_MESSAGE. */
eio_msg_t *eio_msg_alloc(eio_packet_type_t type, bool binary, size_t payload_len);

/* eio_msg_alloc + copy of payload (borrowed; may be NULL when payload_len is 0). */
eio_msg_t *eio_msg_new(eio_packet_type_t type, bool binary, const void *payload,
                       size_t payload_len);

/* The WebSocket frame: ws_header_len header bytes, then data (m->len bytes). */
static inline const uint8_t *eio_msg_ws_header(const eio_msg_t *m) {
    return m->data - m->ws_header_len;
}

static inline uint8_t *eio_msg_payload(eio_msg_t *m) {
    return m->binary ? m->data : m->data + 1;
}

static inline void eio_msg_release(eio_msg_t *m) {
    ref_release(&m->ref);
}

/* The long-polling encoding of the message (text: data as is; binary: "b" + base64,
 * computed once and cached). *out is owned by m and valid while m is. Returns 0, or
 * -ENOMEM (m is unchanged and the call may be retried). */
int eio_msg_polling(eio_msg_t *m, const uint8_t **out, size_t *out_len);

#endif
