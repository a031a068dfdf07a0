/* tools/bench/bench.h — what the parent and the workers of parley-bench share: the run's
 * configuration (fixed before fork, so workers inherit it), and the messages they
 * exchange over their socketpair.
 *
 * Parent → worker: one bench_go_t once every worker is ready, followed by `rooms`
 * uint32_t: how many counted receivers of each room are ready, over all workers (what a
 * message to that room owes). Worker → parent: a bench_report_t when its connections
 * are ready (kind READY, followed by its own `rooms` counts), and again when its run is
 * over (kind RESULT). Both ends are the same binary, so messages are plain structs. */
#ifndef PARLEY_BENCH_BENCH_H
#define PARLEY_BENCH_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"

typedef enum {
    SCENARIO_RAMP,
    SCENARIO_IDLE,
    SCENARIO_BROADCAST,
    SCENARIO_BURST,
    SCENARIO_CHAT,
    SCENARIO_SSE,
    SCENARIO_LONGPOLL,
} scenario_t;

typedef struct {
    scenario_t scenario;
    const char *name;   /* the scenario's name on the command line */
    uint32_t host_addr; /* server IPv4, network order */
    const char *host;   /* as given, for the Host header */
    uint16_t port;
    const char *path;       /* Socket.IO path, "/socket.io/" */
    const char *jwt_secret; /* HS256 secret of the server */
    uint32_t clients;       /* N: Socket.IO clients, or HTTP subscribers for sse/longpoll */
    uint32_t room_size;     /* K: client i is in room i / K */
    uint32_t rooms;         /* ceil(N / K); 0 when clients join no room */
    uint32_t senders;       /* S */
    double rate;            /* M: messages per second per sender */
    double connect_rate;    /* R: connections opened per second (all workers) */
    uint32_t in_flight;     /* handshakes under way at most (all workers); 0: no bound */
    uint32_t window;        /* burst: acks outstanding at most */
    double warmup_s, duration_s, drain_s, timeout_s;
    uint32_t procs;      /* worker processes */
    uint32_t per_addr;   /* connections per loopback source address */
    uint32_t text_bytes; /* length of each message's text */
    uint32_t wait_s;     /* longpoll: the wait= of each request */
    char run_id[32];     /* prefix of the room names: fresh per run, or --room-prefix */
    uint64_t user_base;  /* client g signs in as user u<user_base + g> */
    bool http_receivers; /* sse/longpoll: receivers are HTTP clients, senders extra sockets */
    bool deflate;        /* offer permessage-deflate as browsers do; inflate what comes */
    bool text_words;     /* pad texts with pseudo-random words, not 'x' (for compression) */
} bench_config_t;

/* The global index of sender s (clients [0, N) receive; for sse/longpoll the senders
 * are extra Socket.IO clients N, N+1, ...), and the room it sends to. */
uint32_t bench_sender_client(const bench_config_t *cfg, uint32_t s);
/* The sender number of global client g, or -1 when g does not send. */
int64_t bench_client_sender(const bench_config_t *cfg, uint32_t g);
/* Room of global client g (0 when there are no rooms). */
uint32_t bench_client_room(const bench_config_t *cfg, uint32_t g);
/* The worker that runs global client g: g + g / K modulo procs, so that the senders
 * (often one member per room) are spread over the workers as evenly as the members. */
uint32_t bench_client_worker(const bench_config_t *cfg, uint32_t g);
/* Receivers in room r when every one is ready: its size (the last room may be smaller). */
uint32_t bench_room_receivers(const bench_config_t *cfg, uint32_t r);

typedef struct {
    uint64_t t_go;         /* senders start (CLOCK_MONOTONIC ns) */
    uint64_t t_meas_start; /* the measured window: messages stamped in [start, end) */
    uint64_t t_meas_end;   /* senders stop here; workers drain, then report */
} bench_go_t;

enum { REPORT_READY = 1, REPORT_RESULT = 2 };

typedef struct {
    uint32_t kind;
    uint32_t worker;
    uint64_t clients;         /* connections this worker opened */
    uint64_t connected;       /* full handshake done (Socket.IO CONNECT, or HTTP 200) */
    uint64_t connect_errors;  /* refused, reset, timed out, connect_error, HTTP status */
    uint64_t join_errors;     /* joinRoom not acknowledged with ok */
    uint64_t closed;          /* connections lost after they were ready */
    uint64_t t_first, t_last; /* first connect started, last handshake done (ns) */
    uint64_t sent, acked, ack_errors, unacked; /* sendMessage in the measured window */
    uint64_t expected;       /* deliveries owed by the window's messages not refused */
    uint64_t received;       /* deliveries of the window's messages */
    uint64_t late_sends;     /* sent 50 ms or more after their schedule */
    uint64_t stalled_sends;  /* skipped: too many acks outstanding on that sender */
    uint64_t msg_frames;     /* newMessage frames received (all, not only the window's) */
    uint64_t msg_wire_bytes; /* their size on the wire: frame headers and payloads */
    uint64_t msg_compressed; /* of them, compressed (RSV1) */
    double cpu_s;            /* this worker's CPU in the measured window */
    double window_s;         /* the measured window as this worker saw it */
    hist_t connect;          /* connect start → handshake done */
    hist_t delivery;         /* send timestamp → newMessage received */
    hist_t ack;              /* sendMessage written → its ack read */
} bench_report_t;

/* CLOCK_MONOTONIC in ns: the same clock in every process of the machine, so a
 * timestamp written by one worker can be read by another. */
uint64_t bench_now(void);

/* pipeio.c: whole blocking reads/writes on the parent-worker pipes; false when the pipe
 * broke or closed. */
bool bench_read_all(int fd, void *dst, size_t len);
bool bench_write_all(int fd, const void *src, size_t len);

#endif
