/* tools/bench/conn.h — one client connection of a worker: non-blocking TCP from a
 * loopback source address, input framing, output buffering.
 *
 * Every connection is registered once with the worker's epoll, edge-triggered for
 * input and output, and never modified afterwards. Input is read into the worker's
 * shared buffer and handed to the protocol (wsio.c or httpsub.c), which says how much it
 * consumed; only an unconsumed tail (a partial frame or HTTP head) is copied into the
 * connection's own buffer, freed once it empties. Output is appended to the
 * connection's buffer and written once per loop iteration for all connections that
 * have some (the dirty list), so several packets cost one write(). */
#ifndef PARLEY_BENCH_CONN_H
#define PARLEY_BENCH_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/buf.h"

typedef struct worker worker_t;
typedef struct sender sender_t;

typedef enum { PROTO_SIO, PROTO_SSE, PROTO_POLL } conn_proto_t;

typedef enum {
    CONN_IDLE,       /* not opened yet */
    CONN_CONNECTING, /* TCP connect in progress; the request is already queued */
    CONN_HEAD,       /* waiting for the HTTP response head */
    CONN_OPENING,    /* WebSocket up, waiting for the Engine.IO open packet */
    CONN_AUTHING,    /* Socket.IO CONNECT sent */
    CONN_JOINING,    /* joinRoom sent */
    CONN_READY,      /* Socket.IO: handshake and join done; HTTP: reading a body */
    CONN_CLOSED,
} conn_state_t;

typedef struct client client_t;
struct client {
    int fd;
    uint32_t id;       /* global client index (also its user number) */
    uint32_t room;     /* room number */
    uint8_t proto;     /* conn_proto_t */
    uint8_t state;     /* conn_state_t */
    bool counting;     /* its deliveries count toward received */
    bool dirty;        /* on the worker's dirty list */
    bool ready;        /* handshake (and join, or first response) done */
    uint32_t next_ack; /* next Socket.IO ack id */
    uint64_t t_start;  /* connect started, ns */
    buf_t in;          /* unconsumed input; empty (no memory) between partial frames */
    buf_t out;         /* output not yet written */
    client_t *next_dirty;
    sender_t *sender; /* NULL unless this client sends */
    /* HTTP response body (sse, longpoll): streaming state, see httpsub.c */
    int64_t body_left;   /* Content-Length bytes left, -1 when chunked or unbounded */
    uint32_t chunk_left; /* bytes left in the current chunk */
    uint8_t chunk_state;
    uint8_t scan_pos[2]; /* progress through the two markers the body is scanned for */
    uint8_t scan_num;    /* which marker's number is being read, 0 none */
    uint64_t scan_val;
    uint64_t after_seq; /* longpoll: highest seq seen */
    bool deflate;       /* permessage-deflate was agreed */
    void *inflater;     /* z_stream of its own when the server keeps its context, else NULL */
};

/* Starts connecting c (c->id, proto, room filled) to the configured server from the
 * loopback source address for its id; queues `request` (borrowed) as the first bytes.
 * Returns 0, or -1 (c is CLOSED and counted by the caller as a connect error). */
int conn_open(worker_t *w, client_t *c, const void *request, size_t len);
/* Queues bytes for c (copied); written at the end of the loop iteration. */
int conn_send(worker_t *w, client_t *c, const void *data, size_t len);
/* The epoll events for c. */
void conn_on_events(worker_t *w, client_t *c, uint32_t events);
/* Writes every dirty connection's output. */
void conn_flush_all(worker_t *w);
/* Closes c (idempotent) and tells the worker why. */
void conn_close(worker_t *w, client_t *c, const char *why);

#endif
