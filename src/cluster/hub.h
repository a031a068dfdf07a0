/* cluster/hub.h — services of a program that run in the supervisor, for its workers.
 *
 * Some state must have one owner for all workers (the chat's store: one writer, one
 * order per room). A program gives parley_cluster_start_with a service; the supervisor
 * starts it on its own loop before the workers, hands it every frame a worker sends with
 * a type at or above CLUSTER_APP_TYPE, lets it answer one worker or send to all, and
 * stops it once the last worker has exited (so nothing a worker asked for is cut short).
 * In a worker, cluster_worker_send sends such frames to the supervisor and
 * cluster_worker_on_app receives the service's. Frames to all workers go out in the
 * order they were sent, on FIFO pipes, so every worker sees one order. */
#ifndef PARLEY_CLUSTER_HUB_H
#define PARLEY_CLUSTER_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "parley/cluster.h"

/* Frame types from here up belong to the program's service (below them, the cluster's). */
#define CLUSTER_APP_TYPE 32

typedef struct cluster_hub cluster_hub_t;

typedef struct cluster_service {
    /* On the supervisor's loop, before any worker starts. Returns 0 or a negative error
     * (the supervisor then does not start). */
    int (*start)(cluster_hub_t *hub, uv_loop_t *loop, void *arg);
    /* A frame of an application type from worker `from` (1..count), valid during the
     * call. */
    void (*on_frame)(cluster_hub_t *hub, unsigned from, const uint8_t *frame, size_t size,
                     void *arg);
    /* Worker `id` exited or was restarted: what it had (connections, presence) is gone.
     * May be NULL. */
    void (*on_worker_gone)(cluster_hub_t *hub, unsigned id, void *arg);
    /* Every worker has exited: close, then call done(hub) (on the loop, any time later). */
    void (*stop)(cluster_hub_t *hub, void (*done)(cluster_hub_t *hub), void *arg);
} cluster_service_t;

/* parley_cluster_start with a service run by the supervisor (svc and arg borrowed for
 * its lifetime; svc NULL: none). */
int cluster_start(int argc, char **argv, unsigned nworkers, const char *host, int *port,
                  const cluster_service_t *svc, void *arg, parley_worker_t **worker);

/* From the service: a copy of frame to worker `to` (1..count), or to every worker when
 * to is 0. Returns 0 or a negative error (a worker that is not running is skipped). */
int cluster_hub_send(cluster_hub_t *hub, unsigned to, const void *frame, size_t len);
unsigned cluster_hub_count(const cluster_hub_t *hub);
/* From the service: it cannot go on (its store could not be opened). The supervisor stops
 * as on SIGTERM (every worker drains, then the service's stop) and exits with status 1. */
void cluster_hub_fail(cluster_hub_t *hub);

/* The worker (1..PARLEY_WORKERS_MAX) whose letter tag is (session and socket ids of a
 * worker start with it), or 0. */
unsigned cluster_tag_worker(char tag);
/* In a worker: whether its channel to the supervisor is open. */
bool cluster_worker_connected(const parley_worker_t *w);
/* In a worker: sends a frame of an application type to the supervisor's service. */
int cluster_worker_send(parley_worker_t *w, const void *frame, size_t len);
/* In a worker: fn receives every frame from the service whose type is in [first, last]
 * (application types), and fn(NULL, 0, arg) once if the channel to the supervisor is
 * lost (what was asked of the service will not be answered). fn NULL removes the
 * receiver of that range. Returns 0, or -ENOSPC past CLUSTER_APP_RECEIVERS ranges. */
#define CLUSTER_APP_RECEIVERS 4
typedef void (*cluster_app_fn)(const uint8_t *frame, size_t size, void *arg);
int cluster_worker_on_app(parley_worker_t *w, uint8_t first, uint8_t last, cluster_app_fn fn,
                          void *arg);
/* The worker's channel must exist before the application sends: parley_worker_attach
 * opens it, or this does when the application needs it earlier (idempotent). */
int cluster_worker_connect(parley_worker_t *w, uv_loop_t *loop);

#endif
