/* eio/server.h — Engine.IO v4 server, as the layers above see it inside the library.
 *
 * The public API (sessions, callbacks, reasons) is parley/eio.h. This header adds
 * eio_session_send, which queues an eio_msg_t shared by any number of sessions (each
 * keeps a reference until the bytes are written, so nothing is re-encoded per session),
 * and in-process sessions for benchmarks and tests. */
#ifndef PARLEY_EIO_SERVER_H
#define PARLEY_EIO_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eio/packet.h"
#include "http/server.h"
#include "parley/eio.h"

/* Queues m (retained) for the session: one encoded packet shared by any number of
 * sessions. Returns 0, or -EPIPE when the session is closed, -ENOMEM. Calls nothing back
 * and closes nothing (net_conn_write does not either): the caller decides what a failure
 * means, after queueing on its other recipients if it likes. */
int eio_session_send(eio_session_t *s, eio_msg_t *m);
/* One of a group of servers on one port (parley/cluster.h): every session id this server
 * makes starts with `tag` (a base64url character), and a request with a session id of
 * another tag is given to foreign(hc, req, tag, arg), which must take it (hand it to its
 * owner). tag '\0' turns it off. */
typedef bool (*eio_foreign_fn)(http_conn_t *hc, http_req_t *req, char tag, void *arg);
void eio_server_set_group(eio_server_t *srv, char tag, eio_foreign_fn foreign, void *arg);
/* Server-side close with an explicit reason (on_close reports it). */
void eio_session_close_reason(eio_session_t *s, const char *reason);

/* In-process sessions: no transport and no heartbeat; what is sent to them waits in
 * their queue until eio_session_drain. For benchmarks and for tests of upper layers
 * without sockets. eio_session_inject hands data to on_message as if the client had
 * sent it (data must be writable). */
eio_session_t *eio_session_open_local(eio_server_t *srv);
void eio_session_inject(eio_session_t *s, uint8_t *data, size_t len, bool binary);
/* Drops every queued packet; returns how many there were. */
size_t eio_session_drain(eio_session_t *s);

#endif
