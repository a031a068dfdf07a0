/* eio/guard.h — per-client-address limits on Engine.IO handshakes.
 *
 * What a single address may take: at most max_sessions_per_ip open sessions, and new
 * handshakes at handshake_rate per second (bursts of handshake_burst). The address is
 * the TCP peer's, or, when the peer is one of the trusted proxies, the last address of
 * X-Forwarded-For that is not itself a trusted proxy (a client can write anything in
 * that header; only what the proxies appended is believed). Every session holds a
 * reference to its address's entry; entries are dropped once they hold no session and
 * their handshake budget is whole again. Disabled (no lookups, no memory) when both
 * limits are 0. Loop thread only. */
#ifndef PARLEY_EIO_GUARD_H
#define PARLEY_EIO_GUARD_H

#include <stdbool.h>

#include "http/server.h"
#include "parley/eio.h"

typedef struct eio_guard eio_guard_t;
typedef struct eio_guard_ip eio_guard_ip_t;

/* NULL with *err 0 when lim sets no limit; NULL with *err -ENOMEM on failure. */
eio_guard_t *eio_guard_new(const eio_limits_t *lim, int *err);
void eio_guard_free(eio_guard_t *g);

/* Admits a handshake from hc/req at loop time now (ms): 0 and *out (a reference, given
 * to the session), or the HTTP status that refuses it (429 over the rate, 503 over the
 * session cap). */
int eio_guard_admit(eio_guard_t *g, http_conn_t *hc, const http_req_t *req, uint64_t now,
                    eio_guard_ip_t **out);
/* The session holding ip is gone. */
void eio_guard_leave(eio_guard_t *g, eio_guard_ip_t *ip);

#endif
