/* chat/notify.h — notifications for offline members: batches of owed messages POSTed,
 * signed, to a webhook (docs/NOTIFY.md for the receiver, docs/MEMBERSHIP.md for why).
 *
 * Who calls it: the chat service, after a message is stored, once per member who is not
 * online (chat_notify_owe); it never blocks and never fails for the receiver's sake. The
 * notifier owns what it was told until it is delivered, refused, given up or dropped.
 *
 * The life of a batch, one per (user, room): the first owed message opens it and starts
 * its window (window_ms); later messages join it (the first batch_max_msgs are kept,
 * the rest only raise unread); an urgent message (a mention, a direct message) ends the
 * window at once. When the window ends the batch is sealed — messages from then on open
 * a new batch — and it is sent, unless the online callback says the user is back (then
 * it is skipped). A 2xx delivers it; 5xx, 408, a timeout or a connection error retry it
 * after an exponential backoff; 429 retries after its Retry-After; any other status
 * refuses it for good. The request: POST url, Content-Type application/json, body
 * {"userId","roomId"|null,"messages":[…],"unread","urgent"}, header
 * X-Parley-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t "." body)>, signed
 * again on each attempt.
 *
 * Bounds: at most queue_max batches wait (open, due, or waiting for a retry), the oldest
 * dropped when a new one would pass it; at most max_inflight requests at once (their
 * batches are not in the queue). Memory: those batches, each with at most
 * batch_max_msgs messages.
 *
 * How it runs: libcurl's multi interface on the caller's libuv loop — every socket curl
 * wants watched is a uv_poll_t, curl's timeout one uv_timer_t, and the windows and
 * retries one more uv_timer_t over a heap of due times. One multi handle keeps the
 * connections to the receiver alive between requests. Name resolution is curl's
 * threaded resolver, off the loop. Everything else is on the loop thread.
 *
 * Deliberately not here: who is owed a message (membership and presence, the service's),
 * persistence (a process that dies loses its pending batches: the messages themselves are
 * stored and show as unread), redirects (a 3xx is a refusal). */
#ifndef PARLEY_CHAT_NOTIFY_H
#define PARLEY_CHAT_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util/prom.h"

typedef struct {
    const char *url;       /* POST target, http:// or https:// (copied) */
    const char *secret;    /* HMAC key, non-empty (read by open, not kept) */
    uint32_t window_ms;    /* batching window per (user, room) (2000; 0: next loop turn) */
    size_t queue_max;      /* batches waiting at most: open, due, or for a retry (10000) */
    uint32_t timeout_ms;   /* one request, connecting included (5000) */
    uint32_t max_attempts; /* requests per batch at most, the first included (5) */
    uint32_t backoff_ms;   /* delay before the first retry, doubling after, ±20% (1000) */
    size_t batch_max_msgs; /* messages kept per batch; later ones only raise unread (20) */
    size_t max_inflight;   /* requests under way at once; due batches wait their turn (16) */
} chat_notify_config_t;

void chat_notify_config_defaults(chat_notify_config_t *cfg);

/* Retry-After above this is taken as this: a batch held longer is stale, and it holds
 * a place in the queue meanwhile. Seconds. */
#define CHAT_NOTIFY_RETRY_AFTER_MAX_S 300
/* Backoff delays are capped here, whatever max_attempts allows. ms. */
#define CHAT_NOTIFY_BACKOFF_MAX_MS 3600000u

typedef struct chat_notify chat_notify_t;

/* Asked just before each attempt to send a batch: true when the user is online now
 * (the batch is then dropped and counted as skipped). room_id is NULL for a direct
 * message. Both strings are borrowed for the call. It must not call back into the
 * notifier. */
typedef bool (*chat_notify_online_fn)(const char *user_id, const char *room_id, void *arg);

/* A notifier on loop (borrowed; it must outlive the notifier). cfg is read during the
 * call; online (may be NULL: nobody is online) and arg are kept. Returns 0 with *out
 * set, -EINVAL (a URL that is not http(s), an empty secret, a zero limit), or -ENOMEM /
 * -EIO (libcurl or OpenSSL would not start). */
int chat_notify_open(uv_loop_t *loop, const chat_notify_config_t *cfg, chat_notify_online_fn online,
                     void *arg, chat_notify_t **out);

/* Whether url is one chat_notify_open takes: it parses, and is http:// or https://. For a
 * program that checks its options before it starts. */
bool chat_notify_url_ok(const char *url);

/* Replaces the online check (for the service that knows presence, once it has the
 * notifier). Batches already waiting are asked the new one. */
void chat_notify_set_online(chat_notify_t *n, chat_notify_online_fn online, void *arg);

/* user_id is owed msg_json (len bytes: one JSON object, the message as broadcast; it is
 * copied into the body as is, so it must be valid JSON) of room_id (NULL for a direct
 * message). unread: the user's unread count in that room after it (the batch keeps the
 * highest). urgent: the batch is sent at once (on the next loop iteration) rather than
 * at the end of its window. Never blocks; when the queue is full the oldest waiting
 * batch is dropped to make room. Strings are copied. Returns 0, -ENOMEM, or -EINVAL (an
 * empty or non-UTF-8 id, an empty room id, or a msg_json that is not {…}). */
int chat_notify_owe(chat_notify_t *n, const char *user_id, const char *room_id,
                    const char *msg_json, size_t len, uint64_t unread, bool urgent);
/* chat_notify_owe for several messages at once: msgs_json is nmsgs message objects
 * joined by commas ("{…},{…}"). batched: the caller batched them over the window already,
 * so the batch is due at once (else it waits for its window, as chat_notify_owe's).
 * A batch keeps them only when all fit within batch_max_msgs (else only unread grows).
 * Same results as chat_notify_owe. */
int chat_notify_owe_batch(chat_notify_t *n, const char *user_id, const char *room_id,
                          const char *msgs_json, size_t len, uint32_t nmsgs, uint64_t unread,
                          bool urgent, bool batched);
/* The configuration in use (the window and the batch size, for a caller that batches). */
const chat_notify_config_t *chat_notify_config(const chat_notify_t *n);

/* Why a batch failed for good: the receiver refused it (a 4xx other than 408/429, a
 * 3xx, or another status outside 2xx), or max_attempts went by without a 2xx. */
typedef enum {
    CHAT_NOTIFY_REJECTED,
    CHAT_NOTIFY_GAVE_UP,
    CHAT_NOTIFY_FAIL_REASONS
} chat_notify_fail_t;
/* "rejected", "gave_up": the label of parley_notify_failed_total. */
const char *chat_notify_fail_name(chat_notify_fail_t r);

/* What the notifier counted since it opened, for /metrics (chat/metrics.c). */
typedef struct {
    uint64_t sent;                             /* batches delivered (a 2xx) */
    uint64_t failed[CHAT_NOTIFY_FAIL_REASONS]; /* batches refused or given up */
    uint64_t dropped;                          /* the oldest waiting, for a full queue */
    uint64_t skipped;                          /* the user was online when it was due */
    uint64_t retries;                          /* attempts after a batch's first */
    size_t queued;                             /* batches waiting (open, due, retry) */
    size_t inflight;                           /* requests under way */
    prom_histogram_t latency;                  /* first owed message → delivered, s */
} chat_notify_stats_t;
void chat_notify_stats(const chat_notify_t *n, chat_notify_stats_t *out);

/* Closes the notifier: requests under way are aborted and waiting batches dropped (both
 * counted in one log line). done(arg) (done may be NULL) runs once its libuv handles are
 * closed (from the loop, never inside this call); the notifier is freed by then. n must
 * not be used after this call. */
void chat_notify_close(chat_notify_t *n, void (*done)(void *arg), void *arg);

#endif
