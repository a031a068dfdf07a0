/* chat/admin.h — the /admin namespace of @socket.io/admin-ui 0.5 (docs/OPERATIONS.md,
 * "Admin UI").
 *
 * Speaks the admin UI's protocol as the package's server side (`instrument`) does, on
 * the Socket.IO layer's public API alone: basic auth against a bcrypt hash (libxcrypt,
 * checked on the loop's thread pool), sessions the UI reconnects with, `config`,
 * `server_stats` every stats_interval_ms, `all_sockets`, the socket and room events
 * (from a sio monitor, set only while an admin is connected to some server) and the
 * actions (emit, join, leave, _disconnect), refused in readonly mode.
 *
 * Several servers (workers, Redis nodes): the namespace's broadcasts go through its
 * adapter, so each server's stats and events reach an admin connected to any of them;
 * the others are asked for their sockets and told of sessions and of connected admins
 * with serverSideEmit on the admin namespace.
 *
 * Ownership: the config's strings are copied; io and the loops are borrowed and must
 * outlive the module until chat_admin_close's work is done (run the loop). */
#ifndef PARLEY_CHAT_ADMIN_H
#define PARLEY_CHAT_ADMIN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "parley/loop.h"
#include "parley/sio.h"

typedef struct {
    const char *nsp;           /* the namespace ("/admin") */
    const char *username;      /* with password_hash: basic auth; both NULL: none */
    const char *password_hash; /* bcrypt ($2a$, $2b$ or $2y$) */
    bool readonly;             /* advertise and accept no action */
    /* socket.io-admin-ui's production mode: stats only (no sockets, rooms, events), and
     * no monitor at all. */
    bool production;
    const char *server_id;      /* NULL: the host name (with workers: name#pid) */
    bool worker;                /* one of several processes on this machine */
    uint32_t stats_interval_ms; /* between server_stats (2000) */
} chat_admin_config_t;

void chat_admin_config_defaults(chat_admin_config_t *cfg);

/* 0 when `hash` is a bcrypt hash libxcrypt can check, else -EINVAL. */
int chat_admin_hash_valid(const char *hash);

typedef struct chat_admin chat_admin_t;

/* Creates the namespace and starts the stats timer. nl may be NULL (no byte counts). */
int chat_admin_new(sio_server_t *io, uv_loop_t *loop, net_loop_t *nl,
                   const chat_admin_config_t *cfg, chat_admin_t **out);
/* Stops the timers and the monitor; the memory goes once the loop has closed them and
 * every password check under way has ended. NULL is ignored. */
void chat_admin_close(chat_admin_t *a);

#endif
