/* parley/parley.h — everything an embedding program needs, in one include.
 *
 *   #include <parley/parley.h>      cc app.c $(pkg-config --cflags --libs parley)
 *
 * The layers, each its own header: the loop glue (parley/loop.h), the HTTP/1.1 server
 * (parley/http.h), Engine.IO v4 (parley/eio.h), Socket.IO v5 (parley/sio.h), worker
 * processes on one port (parley/cluster.h) and nodes joined over Redis (parley/redis.h),
 * next to Node.js socket.io nodes; TLS certificates for the HTTP server (parley/tls.h). Every
 * function returns 0 or a negative errno/libuv code unless its comment says otherwise.
 *
 * The library writes to sockets whose peers may be gone: the process must ignore
 * SIGPIPE (signal(SIGPIPE, SIG_IGN) before running the loop), or a write to a closed
 * connection kills it. The library does not change process-wide signal dispositions
 * itself, except parley_cluster_start with more than one worker (which ignores SIGPIPE). */
#ifndef PARLEY_PARLEY_H
#define PARLEY_PARLEY_H

#define PARLEY_VERSION_MAJOR 0
#define PARLEY_VERSION_MINOR 4
#define PARLEY_VERSION_PATCH 0
#define PARLEY_VERSION_STRING "0.4.0"
/* For compile-time checks: PARLEY_VERSION >= PARLEY_VERSION_OF(0, 3, 0). */
#define PARLEY_VERSION_OF(major, minor, patch) ((major)*10000 + (minor)*100 + (patch))
#define PARLEY_VERSION                                                                             \
    PARLEY_VERSION_OF(PARLEY_VERSION_MAJOR, PARLEY_VERSION_MINOR, PARLEY_VERSION_PATCH)

#include "parley/cluster.h"
#include "parley/eio.h"
#include "parley/http.h"
#include "parley/loop.h"
#include "parley/redis.h"
#include "parley/sio.h"
#include "parley/tls.h"

#pragma GCC visibility push(default)

/* The version of the library linked at run time ("0.3.0"), to compare with
 * PARLEY_VERSION_STRING, the one compiled against. */
const char *parley_version(void);

/* Log threshold of the library's own lines (stderr): "debug", "info" (the default),
 * "warn" or "error". Set it before starting servers. Returns 0 or -EINVAL. */
int parley_log_set_level(const char *level);

#pragma GCC visibility pop

#endif
