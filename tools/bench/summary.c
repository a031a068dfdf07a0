/* tools/bench/summary.c — the table and the JSON line (see summary.h). */
#include "summary.h"

#include <math.h>
#include <stdio.h>
#include <unistd.h>

#define MS(ns) ((double)(ns) / 1e6)

static bool has_rooms(const bench_config_t *cfg) {
    return cfg->rooms > 0;
}

static void json_hist(const char *name, const hist_t *h) {
    if (h->count == 0) {
        printf(",\"%s\":null", name);
        return;
    }
    printf(",\"%s\":{\"count\":%llu,\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
           "\"p999\":%.3f,\"max\":%.3f}",
           name, (unsigned long long)h->count, h->sum / (double)h->count / 1e6,
           MS(hist_quantile(h, 0.5)), MS(hist_quantile(h, 0.9)), MS(hist_quantile(h, 0.99)),
           MS(hist_quantile(h, 0.999)), MS(h->max));
}

static void table_hist(const char *name, const hist_t *h) {
    if (h->count == 0)
        return;
    printf("  %-22s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (n=%llu)\n", name,
           MS(hist_quantile(h, 0.5)), MS(hist_quantile(h, 0.9)), MS(hist_quantile(h, 0.99)),
           MS(hist_quantile(h, 0.999)), MS(h->max), (unsigned long long)h->count);
}

/* A number (integers exactly, others with 3 decimals), or null when `ok` is false. */
static void json_num(const char *name, bool ok, double v) {
    if (!ok)
        printf(",\"%s\":null", name);
    else if (v == floor(v) && fabs(v) < 1e15)
        printf(",\"%s\":%.0f", name, v);
    else
        printf(",\"%s\":%.3f", name, v);
}

void summary_print(const bench_config_t *cfg, const summary_t *s) {
    const bench_report_t *t = &s->total;
    bool sends = cfg->senders > 0 && has_rooms(cfg);
    bool ramp = cfg->scenario == SCENARIO_RAMP, idle = cfg->scenario == SCENARIO_IDLE;
    double w = s->window_s > 0 ? s->window_s : 1e-9;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double srv_cpu = s->srv_end.cpu_s - s->srv_start.cpu_s;
    double srv_user = s->srv_end.user_s - s->srv_start.user_s;
    double lost = (double)t->expected - (double)t->received;
    double ready = (double)t->connected - (double)t->join_errors;
    double rss_per_conn =
        ready > 0 ? ((double)s->srv_end.rss_kb - (double)s->srv_before.rss_kb) * 1024 / ready : 0;
    /* The bench was the bottleneck when one worker kept its core 90% busy, when all of
     * them together used 90% of the machine, or when sends fell behind schedule. */
    bool saturated = s->bench_worker_max >= 0.9 || s->bench_cpu_s >= 0.9 * (double)ncpu * w ||
                     (t->sent > 0 && (double)t->late_sends > 0.01 * (double)t->sent);
    double deliveries = (double)t->received;
    double units = ramp ? (double)t->connected : deliveries;

    printf("parley-bench %s  %s:%u  clients %u", cfg->name, cfg->host, cfg->port, cfg->clients);
    if (has_rooms(cfg))
        printf("  rooms %u of %u  senders %u", cfg->rooms, cfg->room_size, cfg->senders);
    if (sends && cfg->scenario != SCENARIO_BURST)
        printf(" at %g msg/s", cfg->rate);
    if (cfg->scenario == SCENARIO_BURST)
        printf(" window %u", cfg->window);
    printf("  procs %u\n", cfg->procs);
    printf("  %-22s %llu of %llu (errors %llu, join errors %llu, lost later %llu)\n", "connected",
           (unsigned long long)t->connected, (unsigned long long)t->clients,
           (unsigned long long)t->connect_errors, (unsigned long long)t->join_errors,
           (unsigned long long)t->closed);
    if (ramp)
        printf("  %-22s %.0f over %.2f s\n", "handshakes/s", (double)t->connected / w, w);
    table_hist("connect latency (ms)", &t->connect);
    if (sends) {
        printf("  %-22s sent %llu  acked %llu  ack errors %llu  unacked %llu  late %llu  "
               "stalled %llu\n",
               "messages (window)", (unsigned long long)t->sent, (unsigned long long)t->acked,
               (unsigned long long)t->ack_errors, (unsigned long long)t->unacked,
               (unsigned long long)t->late_sends, (unsigned long long)t->stalled_sends);
        printf("  %-22s expected %llu  received %llu  lost %.0f  (%.0f/s over %.2f s)\n",
               "deliveries", (unsigned long long)t->expected, (unsigned long long)t->received, lost,
               deliveries / w, w);
        table_hist("delivery latency (ms)", &t->delivery);
        table_hist("ack latency (ms)", &t->ack);
        if (t->msg_frames)
            printf("  %-22s %.1f bytes per newMessage frame on the wire (%llu of %llu "
                   "compressed)\n",
                   "wire", (double)t->msg_wire_bytes / (double)t->msg_frames,
                   (unsigned long long)t->msg_compressed, (unsigned long long)t->msg_frames);
    }
    if (s->have_server) {
        printf("  %-22s %.2f CPU-s (user %.2f) in %.2f s (%.0f%%)", "server", srv_cpu, srv_user, w,
               100 * srv_cpu / w);
        if (units > 0)
            printf(", %.2f us (user %.2f) per %s", srv_cpu * 1e6 / units, srv_user * 1e6 / units,
                   ramp ? "handshake" : "delivery");
        printf("; RSS %lu -> %lu KiB", s->srv_before.rss_kb, s->srv_end.rss_kb);
        if (idle)
            printf(" (%.0f bytes per connection)", rss_per_conn);
        printf("\n");
    }
    printf("  %-22s %.2f CPU-s (%.0f%% of one core; busiest worker %.0f%%)%s\n", "bench",
           s->bench_cpu_s, 100 * s->bench_cpu_s / w, 100 * s->bench_worker_max,
           saturated ? "  ** bench saturated: figures are a lower bound **" : "");

    printf("{\"scenario\":\"%s\",\"target\":\"%s:%u\",\"clients\":%u,\"room_size\":%u,"
           "\"rooms\":%u,\"senders\":%u",
           cfg->name, cfg->host, cfg->port, cfg->clients, has_rooms(cfg) ? cfg->room_size : 0,
           cfg->rooms, sends ? cfg->senders : 0);
    json_num("rate_per_sender", sends && cfg->scenario != SCENARIO_BURST, cfg->rate);
    json_num("window", cfg->scenario == SCENARIO_BURST, cfg->window);
    json_num("warmup_s", !ramp && !idle, cfg->warmup_s);
    json_num("duration_s", !ramp, cfg->duration_s);
    printf(",\"procs\":%u,\"window_s\":%.3f", cfg->procs, s->window_s);
    printf(",\"connected\":%llu,\"connect_errors\":%llu,\"join_errors\":%llu,\"closed\":%llu",
           (unsigned long long)t->connected, (unsigned long long)t->connect_errors,
           (unsigned long long)t->join_errors, (unsigned long long)t->closed);
    json_num("handshakes_per_s", ramp, (double)t->connected / w);
    json_hist("connect_ms", &t->connect);
    json_num("sent", sends, (double)t->sent);
    json_num("acked", sends, (double)t->acked);
    json_num("ack_errors", sends, (double)t->ack_errors);
    json_num("unacked", sends, (double)t->unacked);
    json_num("expected", sends, (double)t->expected);
    json_num("received", sends, (double)t->received);
    json_num("lost", sends, lost);
    json_num("deliveries_per_s", sends, deliveries / w);
    json_hist("delivery_ms", &t->delivery);
    json_num("wire_bytes_per_delivery", t->msg_frames > 0,
             (double)t->msg_wire_bytes / (double)(t->msg_frames ? t->msg_frames : 1));
    json_num("compressed_deliveries", t->msg_frames > 0, (double)t->msg_compressed);
    json_hist("ack_ms", &t->ack);
    printf(",\"server_pids\":");
    if (s->have_server)
        printf("\"%s\"", s->server_pids);
    else
        printf("null");
    json_num("server_procs", s->have_server, (double)s->srv_end.nprocs);
    json_num("server_cpu_s", s->have_server, srv_cpu);
    json_num("server_cpu_pct", s->have_server, 100 * srv_cpu / w);
    json_num("server_user_cpu_s", s->have_server, srv_user);
    json_num("server_cpu_us_per_delivery", s->have_server && sends && deliveries > 0,
             srv_cpu * 1e6 / deliveries);
    json_num("server_user_us_per_delivery", s->have_server && sends && deliveries > 0,
             srv_user * 1e6 / deliveries);
    json_num("server_cpu_us_per_handshake", s->have_server && ramp && t->connected > 0,
             srv_cpu * 1e6 / (double)t->connected);
    json_num("server_rss_before_kb", s->have_server, (double)s->srv_before.rss_kb);
    json_num("server_rss_after_kb", s->have_server, (double)s->srv_end.rss_kb);
    json_num("server_bytes_per_conn", s->have_server && idle && ready > 0, rss_per_conn);
    printf(",\"bench_cpu_s\":%.3f,\"bench_cpu_pct\":%.1f,\"bench_worker_max_pct\":%.1f",
           s->bench_cpu_s, 100 * s->bench_cpu_s / w, 100 * s->bench_worker_max);
    printf(",\"late_sends\":%llu,\"stalled_sends\":%llu,\"bench_saturated\":%s}\n",
           (unsigned long long)t->late_sends, (unsigned long long)t->stalled_sends,
           saturated ? "true" : "false");
    fflush(stdout);
}
