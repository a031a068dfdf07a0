/* ws/deflate.h — permessage-deflate (RFC 7692): negotiation, compression, inflation.
 *
 * A ws_deflate_t belongs to one server (one event loop) and is shared by all its
 * connections. The server always answers with server_no_context_takeover, so every
 * outgoing message is compressed on its own: one shared deflate stream, reset between
 * messages, serves the whole loop, and a message sent to many connections is compressed
 * once (ws_deflated_t, kept beside the shared message and queued by reference).
 *
 * Inbound, the server also asks for client_no_context_takeover (§7.1.1.2 lets a server
 * always include it), so one shared inflate stream, reset per message, serves every
 * connection and an idle connection holds no zlib memory at all. Only when the
 * configuration lets clients keep their context (client_context) and a client does not
 * offer client_no_context_takeover does that connection get its own inflate stream
 * (ws_inflater_t), whose memory is counted in the stats.
 *
 * Not done: compressing with context takeover (better ratios on streams of similar small
 * messages, but a deflate state of ~256 KiB per connection and no sharing of broadcast
 * frames), and the window sizes below 2^15 for our own deflate stream (see
 * ws_deflate_fits). */
#ifndef PARLEY_WS_DEFLATE_H
#define PARLEY_WS_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/parser.h"
#include "util/ref.h"
#include "util/slice.h"

typedef struct ws_deflate ws_deflate_t;

typedef struct {
    size_t threshold;    /* bytes: shorter messages go uncompressed (1024, as engine.io) */
    bool client_context; /* let a client keep its context (costs an inflate stream each) */
} ws_deflate_config_t;

/* What was agreed with one client. */
typedef struct {
    bool on;
    bool client_no_context; /* the client compresses each message on its own */
    /* The client's limit on our window (server_max_window_bits), 8..15, echoed in the
     * response; 0 when it set none (2^15). */
    uint8_t server_window_bits;
} ws_deflate_params_t;

#define WS_DEFLATE_RESPONSE_MAX 192

/* Parses one Sec-WebSocket-Extensions field value and accepts the first permessage-deflate
 * offer in it that is valid (RFC 7692 §7: known parameters only, each at most once, window
 * bits 8..15, no value where none is allowed). Returns true and fills *out when one was
 * accepted; false when the field has none acceptable (or is not a valid list). */
bool ws_deflate_accept_offer(slice_t value, bool client_context, ws_deflate_params_t *out);

/* The same over every Sec-WebSocket-Extensions field of the request, in order. */
bool ws_deflate_negotiate(const http_request_t *req, bool client_context, ws_deflate_params_t *out);

/* The response header line for agreed parameters ("Sec-WebSocket-Extensions: ...\r\n")
 * into out (WS_DEFLATE_RESPONSE_MAX bytes); returns its length. */
size_t ws_deflate_response(const ws_deflate_params_t *p, char *out);

/* A new context with one reference, the caller's. Connections that negotiated the
 * extension hold one more each (ws/conn.c), so it outlives the server that made it for as
 * long as one of them lingers. */
int ws_deflate_new(const ws_deflate_config_t *cfg, ws_deflate_t **out);
ws_deflate_t *ws_deflate_retain(ws_deflate_t *d);
/* Drops a reference; the last frees the shared streams. */
void ws_deflate_release(ws_deflate_t *d);
const ws_deflate_config_t *ws_deflate_config(const ws_deflate_t *d);

typedef struct {
    uint64_t messages_deflated; /* deflate runs: once per message, however many receive it */
    uint64_t frames_sent;       /* compressed frames queued: once per recipient */
    uint64_t bytes_before, bytes_after; /* payload bytes of the messages deflated */
    uint64_t messages_inflated;         /* compressed messages received */
    size_t inflaters;                   /* per-connection inflate streams now */
    size_t zlib_bytes;                  /* memory zlib holds now, shared streams included */
} ws_deflate_stats_t;

void ws_deflate_stats(const ws_deflate_t *d, ws_deflate_stats_t *out);

/* ---- outgoing ---- */

enum { WS_DEFLATED_UNTRIED = 0, WS_DEFLATED_MADE = 1, WS_DEFLATED_SKIP = -1 };

/* The compressed frame of one message, made on first use and kept beside the message by
 * its owner (who frees it with the message). A zeroed one is untried. */
typedef struct {
    uint8_t *frame; /* frame header with RSV1, then the compressed payload; owned */
    size_t len;
    int8_t state; /* WS_DEFLATED_* (SKIP: compressing did not make it shorter) */
} ws_deflated_t;

void ws_deflated_free(ws_deflated_t *z);

/* Whether a message of len bytes may be sent compressed on a connection with params p:
 * at or over the threshold and, when the client limited our window below 2^15, no longer
 * than that window (a message compressed on its own never refers further back than its
 * own start, so such a message honours any window it fits in). */
bool ws_deflate_fits(const ws_deflate_t *d, const ws_deflate_params_t *p, size_t len);

/* Fills z (untried) with the compressed frame of a final data frame of opcode carrying
 * payload. Returns 0 (z->state MADE, or SKIP when it would not be shorter) or -ENOMEM
 * (z untried). Counts one deflated message. */
int ws_deflate_make(ws_deflate_t *d, uint8_t opcode, const uint8_t *payload, size_t len,
                    ws_deflated_t *z);
/* Counts n compressed frames queued. */
void ws_deflate_count_sent(ws_deflate_t *d, size_t n);

/* ---- incoming ---- */

typedef struct ws_inflater ws_inflater_t;

/* A per-connection inflate stream (client context takeover). NULL when out of memory. */
ws_inflater_t *ws_inflater_new(ws_deflate_t *d);
void ws_inflater_free(ws_deflate_t *d, ws_inflater_t *z);

/* Inflates one received compressed message (the payloads of its frames joined, without
 * the 00 00 ff ff that §7.2.2 appends: that is done here). own: the connection's stream,
 * or NULL for the shared one (reset first). The result is *out, *out_len: memory of d,
 * writable, valid until the next call on d. Returns 0, -WS_CLOSE_TOO_BIG when the result
 * would exceed max bytes (decided while inflating: a zip bomb costs at most max bytes),
 * -WS_CLOSE_INVALID_DATA for a corrupt stream, -WS_CLOSE_INTERNAL when out of memory. */
int ws_deflate_inflate(ws_deflate_t *d, ws_inflater_t *own, const uint8_t *in, size_t len,
                       size_t max, uint8_t **out, size_t *out_len);
/* Gives back memory the last inflation made d keep, once its result is no longer used. */
void ws_deflate_inflate_done(ws_deflate_t *d);

#endif
