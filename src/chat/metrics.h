/* chat/metrics.h — what GET /metrics shows: every layer's counters gathered into one
 * Prometheus sample set (util/prom.h), and the one table of the families' names, types
 * and help texts (docs/OPERATIONS.md lists them; the names are a stable contract).
 *
 * Each layer keeps its own counters (net_loop_stats, eio_server_stats,
 * sio_server_stats, chat_service_stats, chat_feed_counts, parley_redis_stats,
 * chat_notify_stats); this
 * reads them once per scrape, so nothing here is on a message's path. Labels come from
 * bounded sets only: transports, end reasons, the chat's own event names ("other" for the
 * rest), causes. With workers each worker collects its own set and the one answering
 * the scrape sums them (main.c), so gauges and counters are the machine's.
 *
 * Ownership: the sources are borrowed for the call; NULL ones (no feed, no Redis, no
 * notifier) are left out. */
#ifndef PARLEY_CHAT_METRICS_H
#define PARLEY_CHAT_METRICS_H

#include <stddef.h>

#include "chat/feed.h"
#include "chat/notify.h"
#include "chat/service.h"
#include "parley/loop.h"
#include "parley/redis.h"
#include "parley/sio.h"
#include "util/buf.h"
#include "util/prom.h"

typedef struct {
    net_loop_t *nl;
    sio_server_t *io;
    chat_service_t *svc;
    chat_feed_t *feed;     /* may be NULL */
    parley_redis_t *redis; /* may be NULL */
    chat_notify_t *notify; /* may be NULL (no --notify-url) */
} chat_metrics_src_t;

/* Adds this process's samples to out. Returns 0 or a negative error of prom_set_add
 * (-ENOMEM in practice). */
int chat_metrics_collect(const chat_metrics_src_t *src, prom_set_t *out);

/* The text format of s, with every family of the table. Returns 0 or -ENOMEM. */
int chat_metrics_render(const prom_set_t *s, buf_t *out);

#endif
