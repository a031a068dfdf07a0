/* chat/feed.h — room feeds over plain HTTP: Server-Sent Events streams and held
 * long-poll requests (docs/HTTP-API.md).
 *
 * A feed observes the chat service (chat_service_observe) and fans every room event out
 * to the room's subscribers. A subscriber that resumes from a position first replays the
 * messages after it from the store, buffering live messages meanwhile, then goes live;
 * it delivers only seqs above the last one it delivered, so the switch from replay to
 * live has no gap and no duplicate. Each message is formatted once per room (one SSE
 * frame, one JSON array) and queued by reference on every subscriber.
 *
 * Costs: no thread and no timer per subscriber (long-poll waits use the connection's
 * deadline; one timer sends every stream's heartbeat). A stream whose client does not
 * read (more than max_queued bytes waiting) is ended; the client reconnects with its
 * Last-Event-ID and resumes from the store, so slowness costs it latency, never
 * messages, and costs the server no memory beyond the bound.
 *
 * Ownership: the feed borrows the service and the store. chat_feed_close ends every
 * stream and answers every held poll; the feed's memory goes once the last of their
 * connections is gone (which the caller needs not track). */
#ifndef PARLEY_CHAT_FEED_H
#define PARLEY_CHAT_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "chat/service.h"
#include "chat/store.h"
#include "http/server.h"

typedef struct {
    uint32_t heartbeat_ms; /* SSE comment line this often (25000; 0 also means that) */
    uint32_t retry_ms;     /* SSE "retry:" hint for the client's reconnect delay (2000) */
    size_t max_queued;     /* SSE bytes waiting on one stream past which it is ended (4 MiB) */
} chat_feed_config_t;

void chat_feed_config_defaults(chat_feed_config_t *cfg);

typedef struct chat_feed chat_feed_t;

int chat_feed_new(uv_loop_t *loop, chat_service_t *svc, chat_store_t *store,
                  const chat_feed_config_t *cfg, chat_feed_t **out);
/* Ends every stream, answers every held poll with an empty list, stops observing. */
void chat_feed_close(chat_feed_t *f);
/* The drain (SIGTERM): ends every stream (an EventSource reconnects, elsewhere) and
 * answers every held poll with an empty list, as chat_feed_close does, and refuses new
 * ones (-ECANCELED), but the feed stays until chat_feed_close: the HTTP API still calls
 * it. */
void chat_feed_drain(chat_feed_t *f);

/* Streams room's events on hc as text/event-stream. resume: replay the messages after
 * seq `after` first (Last-Event-ID); otherwise only what happens from now on. `extra`:
 * more response header lines (CORS), copied. Returns 0, or a negative errno (hc is then
 * untouched and the caller answers it). */
int chat_feed_stream(chat_feed_t *f, http_conn_t *hc, const char *room, bool resume, uint64_t after,
                     const char *extra);

/* Answers hc with the room's messages after seq `after` (at most limit, oldest first, as
 * a JSON array); when there are none and wait_ms > 0, holds hc until one arrives or the
 * wait ends (then []). Same return and `extra` rules. */
int chat_feed_poll(chat_feed_t *f, http_conn_t *hc, const char *room, uint64_t after, size_t limit,
                   uint32_t wait_ms, const char *extra);

/* Subscribers now (streams, held polls), for /healthz and tests. */
void chat_feed_counts(const chat_feed_t *f, size_t *streams, size_t *polls);

#endif
