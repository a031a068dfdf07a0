/* tools/bench/wsio.h — a minimal Socket.IO v5 client over Engine.IO v4 over WebSocket.
 *
 * Connects straight to the websocket transport (GET <path>?EIO=4&transport=websocket,
 * no polling handshake first), waits for the Engine.IO open packet, sends CONNECT to
 * namespace "/" with auth {token} (an HS256 JWT for user c->id), answers Engine.IO pings
 * and WebSocket pings, and recognises only what the chat benchmark needs: CONNECT (ok),
 * CONNECT_ERROR, DISCONNECT, ACK (ok or not) and the newMessage event, whose text
 * carries the send timestamp. Every other event is skipped without being parsed.
 *
 * Frames are parsed in place from the read buffer, as many per read as it holds; a
 * delivery costs a scan for `"text":"T`, no JSON parse and no allocation. Outgoing
 * frames are masked (RFC 6455 client rule) with keys from a cheap per-worker PRNG.
 * Fragmented messages are not supported (neither server sends them).
 *
 * With --deflate the upgrade offers permessage-deflate as browsers do; compressed frames
 * are inflated through one stream per worker when the server answered
 * server_no_context_takeover (Parley), else through a stream per connection (Node's ws
 * keeps its context by default). What the client sends stays uncompressed. */
#ifndef PARLEY_BENCH_WSIO_H
#define PARLEY_BENCH_WSIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "conn.h"

/* Starts c's connection and queues the upgrade request. Returns 0 or -1 (closed). */
int wsio_open(worker_t *w, client_t *c);
/* Parses what arrived (conn.c's protocol hook). Returns bytes consumed or -1. */
ssize_t wsio_parse(worker_t *w, client_t *c, uint8_t *data, size_t len);
/* joinRoom {roomId: <run>-<c->room>} with ack id `ack`. */
int wsio_join(worker_t *w, client_t *c, uint32_t ack);
/* sendMessage {roomId, text} with ack id `ack`; the text is "T<stamp> " padded with 'x'
 * to the configured length. */
int wsio_send_message(worker_t *w, client_t *c, uint32_t ack, uint64_t stamp);

/* Frees what the connection held for permessage-deflate (conn.c, on close). */
void wsio_closed(client_t *c);

/* The marker before the send timestamp in a message's JSON (shared with httpsub.c). */
#define WSIO_STAMP_MARKER "\"text\":\"T"

#endif
