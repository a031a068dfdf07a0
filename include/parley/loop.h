/* parley/loop.h — the state Parley's connections share on one libuv loop.
 *
 * A net_loop_t belongs to one uv_loop_t: one receive buffer for all connections, the
 * write queues flushed once per loop iteration, the deadline sweeper. Nothing is
 * global, so several loops (threads or processes) can each have their own. The
 * application owns the uv_loop_t and runs it; servers (parley/http.h) are created on
 * the net_loop_t. */
#ifndef PARLEY_LOOP_H
#define PARLEY_LOOP_H

#include <stddef.h>
#include <uv.h>

#pragma GCC visibility push(default)

typedef struct net_loop net_loop_t;

/* Creates the shared state for `loop` (borrowed; it must outlive the net_loop_t).
 * Returns NULL when out of memory. */
net_loop_t *net_loop_new(uv_loop_t *loop);
/* Protection against peers that send but never read (every connection of the loop). */
typedef struct {
    /* Bytes of memory queued for one connection (payload plus bookkeeping) past which
     * its input is no longer read, until half of it is written: a peer that never reads
     * cannot make the server queue answers without bound. (1 MiB) */
    size_t output_limit;
    /* ms a connection's queued output may wait without any of it being taken by the
     * kernel before the connection is closed, as nginx's send_timeout. (60000) */
    uint32_t send_timeout;
} net_loop_config_t;

void net_loop_config_defaults(net_loop_config_t *cfg);
/* Applies cfg (copied) to the loop; net_loop_new starts with the defaults. Returns 0 or
 * -EINVAL for a zero limit. */
int net_loop_configure(net_loop_t *nl, const net_loop_config_t *cfg);
/* Open connections on this loop. */
size_t net_loop_conn_count(const net_loop_t *nl);
/* Totals since the loop started, and the output waiting now (summed over the
 * connections: once per scrape, not per message). */
typedef struct {
    uint64_t bytes_in, bytes_out; /* taken from and handed to the kernel */
    uint64_t stalled_closed;      /* connections closed for send_timeout */
    uint64_t tls_handshakes;      /* TLS handshakes completed */
    uint64_t tls_errors;          /* connections closed for a TLS error (bad input) */
    uint64_t write_calls;         /* system calls that handed output to the kernel */
    size_t queued_bytes;          /* output not yet taken by the kernel */
} net_loop_stats_t;
void net_loop_stats(const net_loop_t *nl, net_loop_stats_t *out);
/* Shutdown, in this order: close the servers (http_server_close and the ones above
 * it), then net_loop_close, which closes the loop's own handles once the last
 * connection is gone; run the loop until it has no handles; then net_loop_free. */
void net_loop_close(net_loop_t *nl);
void net_loop_free(net_loop_t *nl);

#pragma GCC visibility pop

#endif
