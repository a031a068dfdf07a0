/* bench/chat_store.c — throughput and ack latency of the chat stores (src/chat/store_*.c).
 *
 * Appends `messages` messages of ~100 bytes spread round-robin over `rooms` rooms, in two
 * ways, for the SQLite store (in a fresh directory under $TMPDIR or /tmp, synchronous=FULL
 * as in production) and for the memory store:
 *   saturate  closed loop: `inflight` appends outstanding at all times, a new one as each
 *             ack arrives. Measures the most messages per second; the latency is then
 *             bounded below by Little's law (inflight / throughput).
 *   paced     open loop at `rate` messages per second (a 1 ms timer appends what is due),
 *             whatever the acks do. Measures the ack latency a server sees at that rate.
 * Ack latency is from chat_store_append to its callback. Also reported: how many acks
 * each wake-up of the loop delivered (about the size of a group commit). Prints a human
 * line and a JSON line per run.
 *
 * usage: chat_store [messages (200000)] [rooms (100)] [inflight (2000)] [rate (50000)]
 *                   [store: both|sqlite|memory (both)]
 * environment: TMPDIR (where the database goes), CHECKPOINT_PAGES (the store's
 * checkpoint_pages instead of its default). */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "chat/store.h"
#include "util/log.h"

typedef struct {
    uv_loop_t loop;
    chat_store_t *st;
    const char *store_name;
    const char *mode;
    size_t total, rooms, inflight_max;
    double rate;
    size_t sent, acked, failed, refused;
    uint64_t *t0;  /* append time per message, ns */
    uint64_t *lat; /* ack latency per message, ns */
    uint64_t start_ns, end_ns;
    uint64_t iterations, wakeups, last_iteration;
    uv_timer_t pacer;
    uv_check_t counter;
    bool done;
} bench_t;

static const char TEXT[] = "The quick brown fox jumps over the lazy dog, then checks the "
                           "chat history for anything it missed while out.";

static void on_ack(int err, chat_msg_t *msg, void *arg);

static int send_one(bench_t *b) {
    char room[32], user[32];
    size_t i = b->sent;
    snprintf(room, sizeof room, "room-%zu", i % b->rooms);
    snprintf(user, sizeof user, "user-%zu", i % 997);
    b->t0[i] = uv_hrtime();
    int err =
        chat_store_append(b->st, room, user, user, TEXT, sizeof TEXT - 1, on_ack, &b->t0[i], NULL);
    if (err == 0)
        b->sent++;
    return err;
}

/* The callback's arg points at the message's slot in t0; the bench is this one global. */
static bench_t bench;

static void on_ack(int err, chat_msg_t *msg, void *arg) {
    bench_t *b = &bench;
    size_t i = (size_t)((uint64_t *)arg - b->t0);
    uint64_t now = uv_hrtime();
    b->lat[b->acked++] = now - b->t0[i];
    if (err)
        b->failed++;
    if (b->iterations != b->last_iteration) {
        b->wakeups++;
        b->last_iteration = b->iterations;
    }
    if (b->acked == b->total) {
        b->end_ns = now;
        b->done = true;
        uv_timer_stop(&b->pacer);
        return;
    }
    if (strcmp(b->mode, "saturate") == 0 && b->sent < b->total)
        send_one(b);
}

static void on_tick(uv_timer_t *t) {
    bench_t *b = t->data;
    double elapsed = (double)(uv_hrtime() - b->start_ns) / 1e9;
    size_t due = (size_t)(elapsed * b->rate);
    if (due > b->total)
        due = b->total;
    while (b->sent < due) {
        if (send_one(b)) {
            b->refused++; /* max_pending reached: the store is behind; try next tick */
            break;
        }
    }
}

static void on_check(uv_check_t *h) {
    ((bench_t *)h->data)->iterations++;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void on_closed(void *arg) {
    *(bool *)arg = true;
}

static void remove_dir(const char *dir, long long *db_bytes) {
    static const char *const files[] = {"parley.db", "parley.db-wal", "parley.db-shm"};
    char path[300];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        FILE *f = i == 0 ? fopen(path, "rb") : NULL;
        if (f) {
            if (fseek(f, 0, SEEK_END) == 0)
                *db_bytes = ftell(f);
            fclose(f);
        }
        unlink(path);
    }
    rmdir(dir);
}

static void report(const bench_t *b, double close_ms, long long db_bytes) {
    bool saturate = strcmp(b->mode, "saturate") == 0;
    size_t i50 = b->acked / 2, i99 = b->acked * 99 / 100;
    double secs = (double)(b->end_ns - b->start_ns) / 1e9;
    double p50 = (double)b->lat[i50] / 1e6;
    double p99 = (double)b->lat[i99] / 1e6;
    double max = (double)b->lat[b->acked - 1] / 1e6;
    double rate = (double)b->acked / secs;
    double per_wakeup = b->wakeups ? (double)b->acked / (double)b->wakeups : 0;
    char load[64];
    if (saturate)
        snprintf(load, sizeof load, "%zu in flight", b->inflight_max);
    else
        snprintf(load, sizeof load, "offered %.0f msg/s", b->rate);
    printf("chat_store %-6s %-8s %zu msgs over %zu rooms (%s): %.0f msg/s, ack p50 %.2f ms "
           "p99 %.2f ms max %.2f ms, %.0f acks/wake-up, %zu failed, close %.0f ms\n",
           b->store_name, b->mode, b->acked, b->rooms, load, rate, p50, p99, max, per_wakeup,
           b->failed, close_ms);
    printf("{\"bench\":\"chat_store\",\"store\":\"%s\",\"mode\":\"%s\",\"messages\":%zu,"
           "\"rooms\":%zu,\"inflight\":%zu,\"offered_rate\":%.0f,\"msgs_per_s\":%.0f,"
           "\"ack_p50_ms\":%.3f,\"ack_p99_ms\":%.3f,\"ack_max_ms\":%.3f,"
           "\"acks_per_wakeup\":%.1f,\"failed\":%zu,\"refused\":%zu,\"close_ms\":%.1f,"
           "\"db_bytes\":%lld}\n",
           b->store_name, b->mode, b->acked, b->rooms, saturate ? b->inflight_max : 0,
           saturate ? 0 : b->rate, rate, p50, p99, max, per_wakeup, b->failed, b->refused, close_ms,
           db_bytes);
    fflush(stdout);
}

static int run(const char *store, const char *mode, size_t total, size_t rooms, size_t inflight,
               double rate) {
    bench_t *b = &bench;
    memset(b, 0, sizeof *b);
    b->store_name = store;
    b->mode = mode;
    b->total = total;
    b->rooms = rooms;
    b->inflight_max = inflight;
    b->rate = rate;
    bool sqlite = strcmp(store, "sqlite") == 0;
    char dir[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/parley-bench-XXXXXX", tmp ? tmp : "/tmp");
    b->t0 = calloc(total, sizeof *b->t0);
    b->lat = calloc(total, sizeof *b->lat);
    int err = !b->t0 || !b->lat ? -ENOMEM : 0;
    if (!err && sqlite && !mkdtemp(dir))
        err = -errno;
    if (!err)
        err = uv_loop_init(&b->loop);
    if (err) {
        fprintf(stderr, "chat_store: %s\n", strerror(-err));
        free(b->t0);
        free(b->lat);
        return err;
    }
    chat_store_config_t cfg;
    chat_store_config_defaults(&cfg);
    const char *ckpt = getenv("CHECKPOINT_PAGES"); /* for tuning: the store's default else */
    if (ckpt)
        cfg.checkpoint_pages = (uint32_t)strtoul(ckpt, NULL, 10);
    err = sqlite ? chat_store_open_sqlite(&b->loop, dir, &cfg, &b->st)
                 : chat_store_open_memory(&b->loop, &cfg, &b->st);
    if (err) {
        fprintf(stderr, "chat_store: open %s: %s\n", store, strerror(-err));
        uv_loop_close(&b->loop);
        free(b->t0);
        free(b->lat);
        return err;
    }
    uv_timer_init(&b->loop, &b->pacer);
    b->pacer.data = b;
    uv_check_init(&b->loop, &b->counter);
    b->counter.data = b;
    uv_check_start(&b->counter, on_check);
    uv_unref((uv_handle_t *)&b->counter);

    b->start_ns = uv_hrtime();
    if (strcmp(mode, "saturate") == 0) {
        for (size_t i = 0; i < inflight && b->sent < total; i++)
            send_one(b);
    } else {
        uv_timer_start(&b->pacer, on_tick, 1, 1);
    }
    while (!b->done)
        uv_run(&b->loop, UV_RUN_ONCE);

    uint64_t close_start = uv_hrtime();
    bool closed = false;
    chat_store_close(b->st, on_closed, &closed);
    while (!closed)
        uv_run(&b->loop, UV_RUN_ONCE);
    double close_ms = (double)(uv_hrtime() - close_start) / 1e6;
    uv_close((uv_handle_t *)&b->pacer, NULL);
    uv_close((uv_handle_t *)&b->counter, NULL);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_loop_close(&b->loop);

    long long db_bytes = 0;
    if (sqlite)
        remove_dir(dir, &db_bytes);
    qsort(b->lat, b->acked, sizeof *b->lat, cmp_u64);
    report(b, close_ms, db_bytes);
    free(b->t0);
    free(b->lat);
    return b->failed ? -EIO : 0;
}

int main(int argc, char **argv) {
    size_t total = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    size_t rooms = argc > 2 ? strtoul(argv[2], NULL, 10) : 100;
    size_t inflight = argc > 3 ? strtoul(argv[3], NULL, 10) : 2000;
    double rate = argc > 4 ? strtod(argv[4], NULL) : 50000;
    const char *which = argc > 5 ? argv[5] : "both";
    if (!total || !rooms || !inflight || rate <= 0) {
        fprintf(stderr, "usage: chat_store [messages] [rooms] [inflight] [rate] "
                        "[both|sqlite|memory]\n");
        return 2;
    }
    log_threshold = LOG_LEVEL_WARN;
    int rc = 0;
    static const char *const stores[] = {"sqlite", "memory"};
    for (size_t s = 0; s < 2; s++) {
        if (strcmp(which, "both") != 0 && strcmp(which, stores[s]) != 0)
            continue;
        rc |= run(stores[s], "saturate", total, rooms, inflight, rate);
        rc |= run(stores[s], "paced", total, rooms, inflight, rate);
    }
    return rc ? 1 : 0;
}
