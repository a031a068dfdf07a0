/* cluster/internal.h — what the cluster files share.
 *
 *   supervisor.c  the supervising process: spawns, relays, restarts, stops
 *   worker.c      a worker's side: its channel, parley_worker_attach, hand-offs
 *   adapter.c     the cross-worker Socket.IO adapter
 *   request.c     requests to other workers and their replies
 *   proto.c       the frames they exchange; wire.c their byte format; channel.c the pipes */
#ifndef PARLEY_CLUSTER_INTERNAL_H
#define PARLEY_CLUSTER_INTERNAL_H

#include "cluster/channel.h"
#include "cluster/hub.h"
#include "cluster/request.h"
#include "parley/cluster.h"
#include "sio/adapter.h"

/* Set in a worker's environment by its supervisor: "ID/COUNT/PORT". */
#define CLUSTER_ENV "PARLEY_WORKER"
/* The descriptor of a worker's channel to its supervisor. */
#define CLUSTER_CHANNEL_FD 3

struct parley_worker {
    unsigned id, count;
    uv_loop_t *loop;
    channel_t *ch;
    sio_server_t *io;
    struct {
        uint8_t first, last;
        cluster_app_fn fn; /* NULL: a free entry */
        void *arg;
    } app[CLUSTER_APP_RECEIVERS]; /* cluster/hub.h */
    bool detaching;
    /* Requests to other workers (request.c): those waiting, and the answerers. */
    struct creq *reqs;
    uint32_t next_req;
    struct {
        creq_handler_fn fn;
        void *arg;
    } handlers[CREQ_KINDS];
};

/* The supervisor: runs until its workers are gone; returns main's exit status. *port 0
 * is replaced by the port chosen for all workers. svc: cluster/hub.h (NULL: none). */
int cluster_supervise(char **argv, unsigned n, const char *host, int *port,
                      const cluster_service_t *svc, void *svc_arg);

/* The cross-worker adapter over `local` (adapter.c). */
sio_adapter_t *cluster_adapter_wrap(sio_nsp_t *nsp, sio_adapter_t *local, void *worker);
/* This worker answers the others' requests of the adapter's kinds. */
void cluster_adapter_answer(parley_worker_t *w);
/* A BCAST or ROOMS frame from another worker, applied here. */
void cluster_adapter_apply(parley_worker_t *w, const uint8_t *frame, size_t size);
/* The character that starts this worker's session ids. */
char cluster_worker_tag(unsigned id);

#endif
