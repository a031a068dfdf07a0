/* tools/bench/httpsub.h — subscribers over the plain-HTTP chat API: Server-Sent Events
 * and long-polling.
 *
 *   sse       GET /api/rooms/<room>/events (text/event-stream; `data:` carries the
 *             message JSON); ready when the 200 head arrives.
 *   longpoll  GET /api/rooms/<room>/messages?after=<seq>&wait=<s> on one keep-alive
 *             connection: a JSON array of messages; the next request asks after the
 *             highest seq seen. The first request has wait=0 and makes the client ready.
 * Both send `Authorization: Bearer <JWT>`. Bodies (Content-Length, chunked, or an
 * unbounded stream) are scanned byte by byte as they arrive for `"text":"T<stamp>` and
 * `"seq":<n>`, with the scanner's state kept in the client, so nothing is buffered
 * between reads except an incomplete response head. */
#ifndef PARLEY_BENCH_HTTPSUB_H
#define PARLEY_BENCH_HTTPSUB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "conn.h"

/* Starts c's connection (c->proto PROTO_SSE or PROTO_POLL) with its first request. */
int httpsub_open(worker_t *w, client_t *c);
/* Parses what arrived (conn.c's protocol hook). Returns bytes consumed or -1. */
ssize_t httpsub_parse(worker_t *w, client_t *c, uint8_t *data, size_t len);

#endif
