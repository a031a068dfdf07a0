/* tools/bench/worker.h — one worker process of parley-bench: its clients, its epoll
 * loop, its share of the scenario, and its report.
 *
 * Worker w owns the global clients g with bench_client_worker(g) == w. It opens them at its share
 * of the connect rate, reports READY when all have finished their handshake (or
 * failed, or timed out), waits for the parent's GO, sends on schedule (a binary heap of
 * senders ordered by due time: one timer for all), drains, and reports RESULT. The
 * protocol modules call the worker_client_* functions as things happen. */
#ifndef PARLEY_BENCH_WORKER_H
#define PARLEY_BENCH_WORKER_H

#include <stdint.h>

#include "bench.h"
#include "conn.h"

#define WORKER_RBUF_SIZE (256 * 1024)

struct sender {
    client_t *c;
    uint32_t number; /* sender number s */
    uint32_t heap_pos;
    uint64_t due; /* next send, ns */
    uint32_t outstanding;
    uint32_t ring_mask;
    struct sent_slot {
        uint32_t id;
        uint64_t t; /* 0 when free */
    } * ring;       /* send time per ack id, indexed by id & ring_mask */
};

struct worker {
    const bench_config_t *cfg;
    uint32_t index;
    int ep;  /* epoll */
    int ctl; /* socketpair end to the parent */
    uint8_t *rbuf;
    uint32_t mask_state; /* xorshift state for WebSocket masking keys */
    client_t *clients;
    uint32_t nclients, nopened, npending; /* npending: opened, not yet ready or failed */
    uint64_t t_open_start, t_ready_deadline;
    client_t *dirty;
    sender_t *senders;
    sender_t **heap;
    uint32_t nsenders, heap_len;
    int phase; /* see worker.c */
    bench_go_t go;
    uint32_t *room_ready; /* per room: ready receivers (own at READY, all after GO) */
    double cpu_at_start;
    bench_report_t rep;
    void *inflater;        /* z_stream shared by connections whose server resets per message */
    buf_t zout;            /* the last inflated message */
    size_t frame_wire;     /* size of the frame being handled, header included */
    bool frame_compressed; /* it had RSV1 */
};

/* Runs worker `index` over its socketpair end `ctl`; never returns. */
void worker_main(const bench_config_t *cfg, uint32_t index, int ctl) __attribute__((noreturn));

/* Events from the protocol modules. */
void worker_client_connected(worker_t *w, client_t *c);
void worker_client_ack(worker_t *w, client_t *c, uint32_t id, bool ok);
void worker_client_delivery(worker_t *w, client_t *c, uint64_t stamp, uint64_t now);
void worker_client_closed(worker_t *w, client_t *c, const char *why);

#endif
