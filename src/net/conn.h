/* net/conn.h — TCP connections on a libuv loop: reading into a shared buffer, a corked
 * write queue flushed once per loop iteration, coarse deadlines, and protocol switching.
 *
 * A net_loop_t (public part in parley/loop.h) belongs to one uv_loop_t and holds what its
 * connections share: one 64 KiB receive buffer, the list of connections with queued
 * output, the deadline sweeper, and one epoll set with every connection's descriptor,
 * which a single uv_poll_t watches. A connection is a descriptor in that set, not a libuv
 * handle: libuv's uv_tcp_t (248 bytes, plus a watcher slot) was the largest part of an
 * idle connection's memory, and reading and writing the socket directly (read, send, sendmsg)
 * is all that is asked of it. libuv stays the loop, its timers, signals and threads.
 *
 * A net_conn_t is one accepted TCP connection. Its protocol (HTTP, then maybe WebSocket)
 * is a table of callbacks (net_conn_ops_t) that can be swapped mid-stream; the bytes
 * after an upgrade request go straight to the new protocol. Each connection carries
 * `ext_size` bytes of protocol state inline in its own allocation (no second malloc),
 * reached with net_conn_ext().
 *
 * Reading: bytes land in the loop's shared buffer and are offered to ops->on_data in
 * place. Only what a protocol leaves unconsumed (a partial request or frame) is copied
 * into the connection's own buffer, so an idle connection holds no receive memory.
 *
 * Output is bounded: past the loop's output_limit of queued memory a connection is not
 * read (so a peer that sends requests or pings but never reads cannot grow its queue),
 * and output that the kernel has not taken for send_timeout closes the connection.
 *
 * Writing: net_conn_write() queues a reference to bytes owned by a ref_t (an encoded
 * packet shared by many connections is queued on each without copying). Queues are
 * flushed with one sendmsg per connection once per loop phase that can produce output (after
 * the I/O callbacks, and before the loop blocks); hooks registered with net_loop_on_flush run just
 * before that, so upper layers can batch too. */
#ifndef PARLEY_NET_CONN_H
#define PARLEY_NET_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "parley/loop.h"
#include "parley/tls.h"
#include "util/buf.h"
#include "util/ref.h"

typedef struct net_conn net_conn_t;

typedef struct {
    /* Bytes arrived (data is writable: parsers may unmask or decode in place). Returns
     * how many were consumed; 0 means "nothing until more arrives" and the bytes are
     * offered again with the next read; < 0 aborts the connection. May swap ops. */
    ssize_t (*on_data)(net_conn_t *c, uint8_t *data, size_t len);
    /* The deadline set with net_conn_set_deadline passed. NULL: close the connection. */
    void (*on_timeout)(net_conn_t *c);
    /* The connection is gone (peer closed, error, or closed by us). Called once; the
     * memory, ext included, is freed when this returns. */
    void (*on_close)(net_conn_t *c);
} net_conn_ops_t;

/* Links of the loop's deadline list. */
typedef struct net_dl {
    struct net_dl *prev, *next;
} net_dl_t;

typedef struct net_chunk {
    ref_t *owner; /* one reference held while queued; NULL for static memory */
    const uint8_t *base;
    size_t len;
} net_chunk_t;

/* Output queue arrays hold NET_TX_POOLED << k chunks (k < NET_TX_CLASSES: 8 to 1,024,
 * the most one sendmsg takes) and are lent by the loop, from a pool per size, while output
 * is queued, so an idle connection holds none. */
#define NET_TX_POOLED 8
#define NET_TX_CLASSES 8

/* What writing touches is last, right before the ext area, whose protocol (ws/conn.h)
 * puts its own sending state first: one delivery reads two cache lines of the block. */
struct net_conn {
    const net_conn_ops_t *ops;
    buf_t *rx;                       /* unconsumed input, only while a partial unit is pending */
    net_dl_t dl;                     /* deadline list, when a deadline is set */
    net_conn_t *all_prev, *all_next; /* every open connection of the loop; then the closed
                                        ones waiting to be freed */
    uint64_t deadline;               /* loop time in ms, 0 for none */
    /* The size class (k above) of the array the next queue starts with: the last one's,
     * shrinking by one for each queue that used a quarter of it or less, so a busy
     * connection does not grow its array chunk by chunk every loop iteration. */
    uint8_t tx_class;
    net_loop_t *nl;  /* the hot part, from offset 64 */
    net_chunk_t *tx; /* queued output, tx[tx_head..tx_len); NULL while nothing is queued */
    uint32_t tx_head, tx_len, tx_cap;
    uint32_t events; /* what the loop's epoll set watches for it (EPOLLIN, EPOLLOUT) */
    size_t tx_bytes; /* bytes queued and not yet written */
    net_conn_t *flush_next;
    struct net_tls_conn *tls; /* NULL: plain TCP */
    int fd;
    uint16_t flags;
    uint16_t stall_checks; /* stalled-output checks in a row that saw no progress */
    _Alignas(max_align_t) uint8_t ext[];
};
_Static_assert(offsetof(struct net_conn, nl) == 64 && offsetof(struct net_conn, ext) == 128,
               "the hot part is the 64 bytes before ext");

#define NET_READ_BUFFER_SIZE 65536

uv_loop_t *net_loop_uv(net_loop_t *nl);
/* Registers fn(arg) to run once per loop iteration just before queued output is
 * flushed. At most NET_LOOP_MAX_HOOKS. Returns 0 or -ENOSPC. */
#define NET_LOOP_MAX_HOOKS 8
int net_loop_on_flush(net_loop_t *nl, void (*fn)(void *arg), void *arg);
void net_loop_off_flush(net_loop_t *nl, void (*fn)(void *arg), void *arg);
/* Gracefully closes every open connection of the loop (net_conn_close). */
void net_loop_close_conns(net_loop_t *nl);
/* Closes every open connection at once (net_conn_abort): the end of a drain's time. */
void net_loop_abort_conns(net_loop_t *nl);

/* For net/listener.c. A connection on fd (taken: the connection's, or closed when this
 * fails), speaking `ops` with ext_size bytes of zeroed ext, and TLS with tls's certificate
 * when tls is not NULL, registered on the loop's set. NULL when it failed (logged). */
net_conn_t *net_conn_open(net_loop_t *nl, int fd, size_t ext_size, const net_conn_ops_t *ops,
                          net_tls_t *tls);
/* For net/listener.c: offers `data` (what another process read from c before handing it
 * over; writable) as c's first input. */
void net_conn_feed_first(net_conn_t *c, uint8_t *data, size_t len);

static inline void *net_conn_ext(net_conn_t *c) {
    return c->ext;
}
static inline net_conn_t *net_conn_from_ext(void *ext) {
    return (net_conn_t *)((uint8_t *)ext - offsetof(net_conn_t, ext));
}

/* Switches protocol. The ext area is kept as is (the new protocol reinitialises it). */
void net_conn_set_ops(net_conn_t *c, const net_conn_ops_t *ops);

/* Queues len bytes at base, owned by `owner` (retained here, released once written or
 * when the connection closes; NULL for memory that outlives the connection). Returns 0,
 * -ENOMEM, or -EPIPE when the connection is closing. Never closes the connection nor
 * calls any of its ops: a fan-out can queue on every recipient, and only then see to
 * those that failed. */
int net_conn_write(net_conn_t *c, ref_t *owner, const void *base, size_t len);
/* Queues a copy of data. */
int net_conn_write_copy(net_conn_t *c, const void *data, size_t len);
/* Bytes queued and not yet accepted by the kernel: the backpressure signal. */
static inline size_t net_conn_queued(const net_conn_t *c) {
    return c->tx_bytes;
}

/* Offers pending input (kept because on_data returned 0) again. Input stays unread while
 * the connection's queued output is over the loop's output_limit (parley/loop.h). */
void net_conn_resume(net_conn_t *c);

/* Calls ops->on_timeout (or closes) once the loop time passes now + ms; 0 clears it.
 * Resolution is NET_SWEEP_MS. */
#define NET_SWEEP_MS 250
void net_conn_set_deadline(net_conn_t *c, uint64_t ms);

/* Graceful close: writes what is queued, shuts the write side down, discards input
 * until the peer closes or NET_LINGER_MS pass, then closes. No more input is offered. */
#define NET_LINGER_MS 2000
void net_conn_close(net_conn_t *c);
/* Immediate close; queued output is dropped. */
void net_conn_abort(net_conn_t *c);
/* Stops reading and switches to ops that ignore everything, for a connection about to be
 * handed to another process: its descriptor (returned, still the connection's) is sent
 * over a Unix socket, then the connection is closed here with net_conn_abort (the other
 * process keeps its copy). -EPROTO for a TLS connection, which cannot be handed over:
 * nothing is changed. */
int net_conn_release(net_conn_t *c);

/* The peer's address as text ("127.0.0.1"), into out (INET6_ADDRSTRLEN bytes). */
int net_conn_peer(net_conn_t *c, char *out, size_t size);

#endif
