/* bench/sio_broadcast.c — micro-benchmark: a 100-byte event broadcast to a room of
 * 10,000 in-process Socket.IO sockets.
 *
 * The sockets sit on in-process Engine.IO sessions (eio_session_open_local), so what is
 * measured is the Socket.IO and Engine.IO work per delivery — encoding, the room walk,
 * queueing by reference — without the kernel. Each round broadcasts once and then drains
 * every session's queue (what writing to the socket would release). Reports CPU time
 * (getrusage) and heap bytes and calls (counted by wrapping malloc) per delivery, as a
 * human line and a JSON line.
 *
 * The parser is the server's (json or msgpack, as --parser): the one encode per broadcast
 * is the parser's, the rest is the same, so the difference between the two is the
 * encoding's share per delivery; a small room (say 10 sockets) shows it most.
 *
 * usage: sio_broadcast [sockets (10000)] [rounds (200)] [json|msgpack (json)] */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "eio/server.h"
#include "parley/sio.h"
#include "sio/internal.h"

/* ---- counting allocator: glibc lets the executable interpose malloc ---- */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static size_t alloc_calls, alloc_bytes;

void *malloc(size_t n) {
    alloc_calls++;
    alloc_bytes += n;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m) {
    alloc_calls++;
    alloc_bytes += n * m;
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n) {
    alloc_calls++;
    alloc_bytes += n;
    return __libc_realloc(p, n);
}

void free(void *p) {
    __libc_free(p);
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void join_room(sio_socket_t *s, void *arg) {
    if (sio_socket_join(s, "room"))
        abort();
}

int main(int argc, char **argv) {
    size_t nsockets = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
    size_t rounds = argc > 2 ? strtoul(argv[2], NULL, 10) : 200;
    const char *parser = argc > 3 ? argv[3] : "json";
    bool msgpack = strcmp(parser, "msgpack") == 0;
    if (!msgpack && strcmp(parser, "json") != 0)
        return 2;
    uv_loop_t loop;
    net_loop_t *nl;
    http_server_t *http;
    sio_server_t *io;
    http_server_config_t hcfg;
    http_server_config_defaults(&hcfg);
    hcfg.port = 0;
    sio_config_t cfg;
    sio_config_defaults(&cfg);
    cfg.parser = msgpack ? SIO_PARSER_MSGPACK : SIO_PARSER_JSON;
    if (uv_loop_init(&loop) || !(nl = net_loop_new(&loop)) || http_server_new(nl, &hcfg, &http) ||
        sio_server_new(http, &cfg, &io))
        return 1;
    sio_nsp_t *nsp = sio_server_of(io, "/");
    if (sio_nsp_on_connection(nsp, join_room, NULL))
        return 1;
    eio_server_t *eio = io->eio;
    eio_session_t **sessions = malloc(nsockets * sizeof *sessions);
    for (size_t i = 0; i < nsockets; i++) {
        /* A CONNECT to "/": "0", or the map {type: 0, nsp: "/"}. */
        uint8_t text_connect[] = "0";
        uint8_t mp_connect[] = {0x82, 0xa4, 't', 'y', 'p',  'e', 0x00,
                                0xa3, 'n',  's', 'p', 0xa1, '/'};
        if (!(sessions[i] = eio_session_open_local(eio)))
            return 1;
        if (msgpack)
            eio_session_inject(sessions[i], mp_connect, sizeof mp_connect, true);
        else
            eio_session_inject(sessions[i], text_connect, 1, false);
        eio_session_drain(sessions[i]);
    }
    if (sio_nsp_room_size(nsp, "room") != nsockets) {
        fprintf(stderr, "only %zu sockets joined\n", sio_nsp_room_size(nsp, "room"));
        return 1;
    }
    char text[101];
    memset(text, 'x', 100);
    text[100] = '\0';
    json_t *args = json_pack("[s]", text);
    sio_payload_t p = {args, NULL, 0};
    const char *room = "room";
    sio_target_t to = {.rooms = &room, .nrooms = 1};
    /* One warm-up round grows every queue to its steady size. */
    if (sio_nsp_emit(nsp, &to, "message", &p))
        return 1;
    for (size_t i = 0; i < nsockets; i++)
        eio_session_drain(sessions[i]);
    size_t delivered = 0;
    alloc_calls = alloc_bytes = 0;
    double t0 = cpu_seconds();
    for (size_t r = 0; r < rounds; r++) {
        if (sio_nsp_emit(nsp, &to, "message", &p))
            return 1;
        for (size_t i = 0; i < nsockets; i++)
            delivered += eio_session_drain(sessions[i]);
    }
    double cpu = cpu_seconds() - t0;
    size_t calls = alloc_calls, bytes = alloc_bytes;
    if (delivered != nsockets * rounds) {
        fprintf(stderr, "delivered %zu of %zu\n", delivered, nsockets * rounds);
        return 1;
    }
    double ns = cpu * 1e9 / (double)delivered;
    printf("sio broadcast (%s parser): %zu sockets x %zu rounds, 100-byte event: %.1f ns "
           "CPU/delivery, %.2f bytes and %.4f allocations/delivery (%.0f deliveries per "
           "CPU-second)\n",
           parser, nsockets, rounds, ns, (double)bytes / (double)delivered,
           (double)calls / (double)delivered, (double)delivered / cpu);
    printf("{\"bench\":\"sio_broadcast\",\"parser\":\"%s\",\"sockets\":%zu,\"rounds\":%zu,"
           "\"ns_per_delivery\":%.1f,\"bytes_per_delivery\":%.3f,\"allocs_per_delivery\":%.5f}\n",
           parser, nsockets, rounds, ns, (double)bytes / (double)delivered,
           (double)calls / (double)delivered);
    json_decref(args);
    for (size_t i = 0; i < nsockets; i++)
        eio_session_close(sessions[i]);
    free(sessions);
    sio_server_close(io);
    http_server_close(http);
    net_loop_close(nl);
    uv_run(&loop, UV_RUN_DEFAULT);
    net_loop_free(nl);
    return uv_loop_close(&loop) ? 1 : 0;
}
