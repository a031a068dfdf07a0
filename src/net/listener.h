/* net/listener.h — listening sockets that make net_conn_t connections.
 *
 * A listener is a non-blocking socket watched by its own uv_poll_t. Each wake-up accepts
 * up to a batch of connections with accept4 and opens each on the loop's epoll set
 * (net_conn_open); connections handed over by another process are adopted the same way.
 * The listener owns its socket; the connections it makes are the loop's. */
#ifndef PARLEY_NET_LISTENER_H
#define PARLEY_NET_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/conn.h"

typedef struct net_listener net_listener_t;
/* Accepted connections start with `ops` and ext_size bytes of zeroed ext; on_open is
 * called for each. */
typedef void (*net_open_fn)(net_conn_t *c, void *arg);
/* Listens on host:port (port 0: ephemeral). reuse_port: SO_REUSEPORT, so that several
 * processes listen on the same port and the kernel spreads connections over them.
 * Returns 0 or a negative uv error. */
int net_listener_open(net_loop_t *nl, const char *host, int port, bool reuse_port, size_t ext_size,
                      const net_conn_ops_t *ops, net_open_fn on_open, void *arg,
                      net_listener_t **out);
/* A connection accepted elsewhere (another process handed it over): fd, which the
 * listener owns from now on, is opened like an accepted one (ops, on_open) and `data`
 * (what was already read from it, writable) is offered as its first input. Returns 0 or
 * a negative error (fd is then closed). */
int net_listener_adopt(net_listener_t *l, int fd, uint8_t *data, size_t len);
/* Connections accepted from now on speak TLS with tls's certificate (borrowed: it
 * outlives the listener); NULL: plain TCP. Such a listener adopts nothing. */
void net_listener_set_tls(net_listener_t *l, net_tls_t *tls);
/* The port actually bound. */
int net_listener_port(const net_listener_t *l);
/* Stops accepting and frees the listener (asynchronously). */
void net_listener_close(net_listener_t *l);
/* With reuse_port: every new connection to the port goes to the process that listened on
 * it first (the oldest), the others get them only once it stops listening — a restart's
 * new process takes over the moment the old one closes its listener, and none of the old
 * one's clients (a long-poll's next request) lands on the new one meanwhile. Not for
 * processes that should share the load (workers). Returns 0 or a negative error. */
int net_listener_handover(net_listener_t *l);
/* Stops listening, for a process that goes on serving its open connections (a drain):
 * first accepts the connections already queued for this socket, which closing it would
 * reset, then closes the socket. The listener stays for net_listener_adopt (a worker's
 * sessions keep getting their requests from the other workers) until net_listener_close,
 * which still frees it; net_listener_port is -1 after this. */
void net_listener_stop(net_listener_t *l);

#endif
