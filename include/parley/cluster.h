/* parley/cluster.h — every core of a machine: worker processes behind one port.
 *
 * A program that calls parley_cluster_start first thing in main() becomes, when asked
 * for more than one worker, a supervisor: it starts that many copies of itself (the
 * same executable and arguments, told apart by the environment), restarts one that dies
 * (after 100 ms, doubling up to 10 s while it keeps dying young), passes SIGTERM and
 * SIGINT on to all of them and returns once they have all exited. Each copy returns from
 * parley_cluster_start as a worker and builds its servers as a single process would;
 * every worker listens on the same port (SO_REUSEPORT: the kernel spreads connections).
 *
 *   parley_worker_t *w;
 *   int rc = parley_cluster_start(argc, argv, 4, host, &port, &w);
 *   if (rc || (!w && workers > 1)) return rc;  the supervisor is done
 *   ... the loop, http_server_new (http_server_config_t.reuse_port = true), sio_server_new
 *   parley_worker_attach(w, loop, io);       before running the loop
 *
 * Attached, the workers act as one Socket.IO server: a broadcast reaches the sockets of
 * every worker (encoded once per worker), socketsJoin / socketsLeave / disconnectSockets
 * apply everywhere, broadcasts with acknowledgements, fetchSockets (sio_nsp_fetch_all)
 * and serverSideEmit gather the answers of every worker, a client that comes back to
 * another worker recovers its session there (connection state recovery), and an
 * Engine.IO request that lands on a worker that does not own its
 * session (long-polling without a sticky balancer, or the upgrade of such a session) is
 * handed, connection and all, to the worker that does. Session ids name their worker.
 *
 * Worker processes talk through the supervisor (a star of Unix socketpairs): one hop more
 * than a mesh, but a worker that dies and restarts needs no re-wiring of the others. */
#ifndef PARLEY_CLUSTER_H
#define PARLEY_CLUSTER_H

#include <uv.h>

#include "parley/sio.h"

#pragma GCC visibility push(default)

typedef struct parley_worker parley_worker_t;

/* The most workers (session ids name their worker with one character). */
#define PARLEY_WORKERS_MAX 32

/* Three outcomes, told apart by *worker and the process's role:
 * - nworkers <= 1: returns 0 with *worker NULL at once; run as a single process.
 * - the supervisor (nworkers >= 2, not started as a worker): runs until every worker has
 *   exited after SIGTERM/SIGINT, then returns main's exit status (0, or 1 when the
 *   workers could not be started) with *worker NULL.
 * - a worker: returns 0 with *worker set (or 1 with *worker NULL when it cannot reach
 *   its supervisor).
 * With more than one worker, both roles ignore SIGPIPE (they write to pipes whose other
 * end may be gone; that is an error code, not a signal).
 * argv is borrowed for the supervisor's lifetime (workers are restarted with it).
 * host/port: where the workers will listen; a port of 0 is chosen by the supervisor and
 * written to *port in the supervisor and in every worker (which must listen on it).
 * The supervisor prints "listening HOST:PORT" once every worker is attached; workers
 * should not print it themselves. */
int parley_cluster_start(int argc, char **argv, unsigned nworkers, const char *host, int *port,
                         parley_worker_t **worker);

/* This worker's number (1..count) and the number of workers. */
unsigned parley_worker_id(const parley_worker_t *w);
unsigned parley_worker_count(const parley_worker_t *w);

/* Joins io (on loop) to the other workers: the cross-worker adapter on every namespace,
 * session ids that name this worker, and the hand-off of requests for other workers'
 * sessions. Call once, after sio_server_new and before running the loop. */
int parley_worker_attach(parley_worker_t *w, uv_loop_t *loop, sio_server_t *io);

/* parley_worker_attach without the cross-worker adapter: session ids name this worker
 * and requests for other workers' sessions are handed to them, but broadcasts and the
 * rest go through whatever adapter the program installs instead — each worker then being
 * a node of its own, as when every worker joins a Redis cluster (parley/redis.h), where
 * the workers' own fan-out would deliver a second time what Redis brings. */
int parley_worker_attach_handoff(parley_worker_t *w, uv_loop_t *loop, sio_server_t *io);
/* Shutdown, first step, before sio_server_close: the worker stops applying the other
 * workers' operations and adopting connections handed to it (they are closed: their
 * clients retry elsewhere). Its channel stays open for what else the program sends. */
void parley_worker_detach_io(parley_worker_t *w);

/* Leaves the group (closes the channel to the supervisor) and frees w; for shutdown,
 * after the servers are closed. */
void parley_worker_detach(parley_worker_t *w);

#pragma GCC visibility pop

#endif
