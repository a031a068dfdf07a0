/* chat/metrics.c — the samples of /metrics (chat/metrics.h). */
#include "chat/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include "parley/eio.h"
#include "sio/adapter.h"

static const prom_family_t families[] = {
    {"parley_connections", PROM_GAUGE, "Engine.IO connections open, by transport."},
    {"parley_handshakes_total", PROM_COUNTER, "Engine.IO sessions opened."},
    {"parley_upgrades_total", PROM_COUNTER, "Long-polling sessions upgraded to WebSocket."},
    {"parley_disconnects_total", PROM_COUNTER, "Engine.IO sessions ended, by reason."},
    {"parley_long_polls_held", PROM_GAUGE, "Engine.IO long-polling requests held open."},
    {"parley_sockets", PROM_GAUGE, "Socket.IO sockets connected, all namespaces."},
    {"parley_packets_received_total", PROM_COUNTER, "Socket.IO packets received."},
    {"parley_packets_sent_total", PROM_COUNTER, "Socket.IO packets queued to clients."},
    {"parley_deliveries_total", PROM_COUNTER,
     "Packets queued to a socket by an emit or a broadcast (fan-out deliveries)."},
    {"parley_volatile_dropped_total", PROM_COUNTER,
     "Volatile packets dropped because a socket could not take them at once."},
    {"parley_slow_consumers_cut_total", PROM_COUNTER,
     "Connections closed for output they left unread, by cause."},
    {"parley_queued_bytes", PROM_GAUGE, "Output bytes not yet taken by the kernel."},
    {"parley_received_bytes_total", PROM_COUNTER, "Bytes read from client connections."},
    {"parley_sent_bytes_total", PROM_COUNTER, "Bytes written to client connections."},
    {"parley_tls_handshakes_total", PROM_COUNTER, "TLS handshakes completed."},
    {"parley_tls_errors_total", PROM_COUNTER,
     "Connections closed for a TLS error (bad input, a failed handshake)."},
    {"parley_recovery_sessions", PROM_GAUGE,
     "Disconnected sessions kept for connection state recovery."},
    {"parley_recovery_packets", PROM_GAUGE, "Packets kept for connection state recovery."},
    {"parley_events_received_total", PROM_COUNTER,
     "Chat events received, by event (the chat's own; other for the rest)."},
    {"parley_rate_limited_total", PROM_COUNTER,
     "Chat events and messages refused by a rate limit."},
    {"parley_store_commit_seconds", PROM_HISTOGRAM,
     "A message append, from the call to the store's answer (committed, or Redis replied)."},
    {"parley_ack_latency_seconds", PROM_HISTOGRAM,
     "sendMessage received to its acknowledgement queued."},
    {"parley_delivery_latency_seconds", PROM_HISTOGRAM,
     "A message made in this process (appended, or come from another node or worker) to "
     "queued to every local member of its room; observed in every process that announces "
     "it."},
    {"parley_sse_streams", PROM_GAUGE, "Server-Sent Events streams open."},
    {"parley_http_long_polls", PROM_GAUGE, "HTTP API long-polls held open."},
    {"parley_redis_connected", PROM_GAUGE, "1 when every connection to Redis is up."},
    {"parley_redis_published_total", PROM_COUNTER, "Messages published to the other nodes."},
    {"parley_redis_published_bytes_total", PROM_COUNTER, "Bytes published to the other nodes."},
    {"parley_redis_received_total", PROM_COUNTER, "Messages received from Redis."},
    {"parley_redis_received_bytes_total", PROM_COUNTER, "Bytes received from Redis."},
    {"parley_redis_unused_total", PROM_COUNTER,
     "Messages received from Redis and dropped unread (own, or a room without members here)."},
    {"parley_ws_deflate_messages_total", PROM_COUNTER,
     "Messages compressed for permessage-deflate (once per message, whatever its recipients)."},
    {"parley_ws_deflate_frames_total", PROM_COUNTER,
     "Compressed WebSocket frames queued (once per recipient)."},
    {"parley_ws_deflate_bytes_total", PROM_COUNTER,
     "Payload bytes of the messages compressed, before (stage=in) and after (stage=out)."},
    {"parley_ws_inflate_messages_total", PROM_COUNTER, "Compressed WebSocket messages received."},
    {"parley_ws_inflaters", PROM_GAUGE,
     "Connections keeping their own inflate stream (clients that keep their context)."},
    {"parley_ws_zlib_bytes", PROM_GAUGE, "Memory held by zlib for permessage-deflate."},
    {"parley_notify_sent_total", PROM_COUNTER,
     "Offline notification batches delivered (the receiver answered 2xx)."},
    {"parley_notify_failed_total", PROM_COUNTER,
     "Offline notification batches that failed for good, by reason (rejected: a 4xx or "
     "another status the notifier does not retry; gave_up: out of attempts)."},
    {"parley_notify_dropped_total", PROM_COUNTER,
     "Offline notification batches dropped unsent, the oldest, to keep the queue within "
     "--notify-queue."},
    {"parley_notify_skipped_total", PROM_COUNTER,
     "Offline notification batches not sent: the user was online when it was due."},
    {"parley_notify_queue", PROM_GAUGE,
     "Offline notification batches waiting (window open, due, or waiting for a retry)."},
    {"parley_notify_latency_seconds", PROM_HISTOGRAM,
     "A notification batch's first owed message to its delivery (window and retries "
     "included)."},
    {"process_resident_memory_bytes", PROM_GAUGE, "Resident memory size in bytes."},
    {"process_cpu_seconds_total", PROM_COUNTER, "User and system CPU time spent in seconds."},
    {"process_open_fds", PROM_GAUGE, "Open file descriptors."},
};

int chat_metrics_render(const prom_set_t *s, buf_t *out) {
    return prom_render(s, families, sizeof families / sizeof families[0], out);
}

/* The process's own: resident memory, CPU time, descriptors (read from /proc). */
static int add_process(prom_set_t *out) {
    int rc = 0;
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) == 2)
            rc = prom_set_add(out, "process_resident_memory_bytes",
                              (double)resident * (double)sysconf(_SC_PAGESIZE), NULL);
        fclose(f);
    }
    struct rusage ru;
    if (rc == 0 && getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                     (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
        rc = prom_set_add(out, "process_cpu_seconds_total", cpu, NULL);
    }
    DIR *d = rc == 0 ? opendir("/proc/self/fd") : NULL;
    if (d) {
        size_t fds = 0;
        for (struct dirent *e; (e = readdir(d));)
            fds += e->d_name[0] != '.';
        closedir(d);
        rc = prom_set_add(out, "process_open_fds", (double)(fds ? fds - 1 : 0), NULL);
    }
    return rc;
}

static int add_redis(parley_redis_t *r, prom_set_t *out) {
    parley_redis_stats_t st;
    parley_redis_stats(r, &st);
    const struct {
        const char *name;
        uint64_t v;
    } c[] = {
        {"parley_redis_published_total", st.published},
        {"parley_redis_published_bytes_total", st.published_bytes},
        {"parley_redis_received_total", st.received},
        {"parley_redis_received_bytes_total", st.received_bytes},
        {"parley_redis_unused_total", st.unused},
    };
    int rc = prom_set_add(out, "parley_redis_connected", parley_redis_connected(r) ? 1 : 0, NULL);
    for (size_t i = 0; rc == 0 && i < sizeof c / sizeof c[0]; i++)
        rc = prom_set_add(out, c[i].name, (double)c[i].v, NULL);
    return rc;
}

static int add_notify(const chat_notify_t *n, prom_set_t *out) {
    chat_notify_stats_t st;
    chat_notify_stats(n, &st);
    const struct {
        const char *name;
        double v;
    } c[] = {
        {"parley_notify_sent_total", (double)st.sent},
        {"parley_notify_dropped_total", (double)st.dropped},
        {"parley_notify_skipped_total", (double)st.skipped},
        {"parley_notify_queue", (double)st.queued},
    };
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof c / sizeof c[0]; i++)
        rc = prom_set_add(out, c[i].name, c[i].v, NULL);
    for (int r = 0; rc == 0 && r < CHAT_NOTIFY_FAIL_REASONS; r++)
        rc = prom_set_add(out, "parley_notify_failed_total", (double)st.failed[r], "reason",
                          chat_notify_fail_name((chat_notify_fail_t)r), NULL);
    if (rc == 0)
        rc = prom_set_add_histogram(out, "parley_notify_latency_seconds", &st.latency, NULL);
    return rc;
}

int chat_metrics_collect(const chat_metrics_src_t *src, prom_set_t *out) {
    net_loop_stats_t ns;
    eio_stats_t es;
    sio_stats_t ss;
    chat_service_stats_t cs;
    net_loop_stats(src->nl, &ns);
    eio_server_stats(sio_server_eio(src->io), &es);
    sio_server_stats(src->io, &ss);
    chat_service_stats(src->svc, &cs);
    const struct {
        const char *name;
        double v;
    } plain[] = {
        {"parley_handshakes_total", (double)es.handshakes},
        {"parley_upgrades_total", (double)es.upgrades},
        {"parley_long_polls_held", (double)es.polls_held},
        {"parley_sockets", (double)ss.sockets},
        {"parley_packets_received_total", (double)ss.packets_received},
        {"parley_packets_sent_total", (double)ss.packets_sent},
        {"parley_deliveries_total", (double)ss.deliveries},
        {"parley_volatile_dropped_total", (double)ss.volatile_dropped},
        {"parley_queued_bytes", (double)ns.queued_bytes},
        {"parley_received_bytes_total", (double)ns.bytes_in},
        {"parley_sent_bytes_total", (double)ns.bytes_out},
        {"parley_tls_handshakes_total", (double)ns.tls_handshakes},
        {"parley_tls_errors_total", (double)ns.tls_errors},
        {"parley_recovery_sessions", (double)ss.recovery_sessions},
        {"parley_recovery_packets", (double)ss.recovery_packets},
        {"parley_rate_limited_total", (double)cs.rate_limited},
        {"parley_ws_deflate_messages_total", (double)es.ws_deflated},
        {"parley_ws_deflate_frames_total", (double)es.ws_deflated_frames},
        {"parley_ws_inflate_messages_total", (double)es.ws_inflated},
        {"parley_ws_inflaters", (double)es.ws_inflaters},
        {"parley_ws_zlib_bytes", (double)es.ws_zlib_bytes},
    };
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof plain / sizeof plain[0]; i++)
        rc = prom_set_add(out, plain[i].name, plain[i].v, NULL);
    if (rc == 0)
        rc = prom_set_add(out, "parley_ws_deflate_bytes_total", (double)es.ws_deflate_bytes_in,
                          "stage", "in", NULL);
    if (rc == 0)
        rc = prom_set_add(out, "parley_ws_deflate_bytes_total", (double)es.ws_deflate_bytes_out,
                          "stage", "out", NULL);
    if (rc == 0)
        rc = prom_set_add(out, "parley_connections", (double)es.polling, "transport", "polling",
                          NULL);
    if (rc == 0)
        rc = prom_set_add(out, "parley_connections", (double)es.websocket, "transport", "websocket",
                          NULL);
    for (int r = 0; rc == 0 && r < EIO_END_REASONS; r++)
        rc = prom_set_add(out, "parley_disconnects_total", (double)es.ended[r], "reason",
                          eio_end_reason_name((eio_end_reason_t)r), NULL);
    if (rc == 0)
        rc = prom_set_add(out, "parley_slow_consumers_cut_total", (double)ss.slow_clients_cut,
                          "cause", "unread_output", NULL);
    if (rc == 0)
        rc = prom_set_add(out, "parley_slow_consumers_cut_total", (double)ns.stalled_closed,
                          "cause", "send_timeout", NULL);
    for (size_t i = 0; rc == 0 && i < CHAT_EVENT_KINDS; i++)
        rc = prom_set_add(out, "parley_events_received_total", (double)cs.events[i], "event",
                          chat_service_event_name(i), NULL);
    if (rc == 0)
        rc = prom_set_add_histogram(out, "parley_store_commit_seconds", &cs.store_append, NULL);
    if (rc == 0)
        rc = prom_set_add_histogram(out, "parley_ack_latency_seconds", &cs.ack, NULL);
    if (rc == 0)
        rc = prom_set_add_histogram(out, "parley_delivery_latency_seconds", &cs.delivery, NULL);
    if (rc == 0 && src->feed) {
        size_t streams, polls;
        chat_feed_counts(src->feed, &streams, &polls);
        rc = prom_set_add(out, "parley_sse_streams", (double)streams, NULL);
        if (rc == 0)
            rc = prom_set_add(out, "parley_http_long_polls", (double)polls, NULL);
    }
    if (rc == 0 && src->redis)
        rc = add_redis(src->redis, out);
    if (rc == 0 && src->notify)
        rc = add_notify(src->notify, out);
    if (rc == 0)
        rc = add_process(out);
    return rc;
}
