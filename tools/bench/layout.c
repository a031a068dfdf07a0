/* tools/bench/layout.c — who is in which room and who sends (see bench.h).
 *
 * Receivers fill rooms in order: client g is member g % K of room g / K (the last room
 * may be smaller). Senders are spread over rooms first: sender s sends in room
 * s % rooms, as that room's member s / rooms — so S <= rooms gives one sender per room
 * in as many rooms, and S = N makes everybody a sender (chat). For sse/longpoll the
 * receivers are HTTP subscribers and sender s is an extra Socket.IO client N + s. */
#include <time.h>

#include "bench.h"

uint64_t bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint32_t bench_sender_client(const bench_config_t *cfg, uint32_t s) {
    if (cfg->http_receivers)
        return cfg->clients + s;
    return (s % cfg->rooms) * cfg->room_size + s / cfg->rooms;
}

int64_t bench_client_sender(const bench_config_t *cfg, uint32_t g) {
    if (cfg->rooms == 0 || cfg->senders == 0)
        return -1;
    if (cfg->http_receivers)
        return g >= cfg->clients ? (int64_t)(g - cfg->clients) : -1;
    uint64_t s = (uint64_t)(g % cfg->room_size) * cfg->rooms + g / cfg->room_size;
    return s < cfg->senders ? (int64_t)s : -1;
}

uint32_t bench_client_room(const bench_config_t *cfg, uint32_t g) {
    if (cfg->rooms == 0)
        return 0;
    if (g >= cfg->clients)
        return (g - cfg->clients) % cfg->rooms;
    return g / cfg->room_size;
}

uint32_t bench_client_worker(const bench_config_t *cfg, uint32_t g) {
    uint32_t k = cfg->room_size ? cfg->room_size : 1;
    return (uint32_t)(((uint64_t)g + g / k) % cfg->procs);
}

uint32_t bench_room_receivers(const bench_config_t *cfg, uint32_t r) {
    uint32_t first = r * cfg->room_size;
    uint32_t left = cfg->clients - first;
    return left < cfg->room_size ? left : cfg->room_size;
}
