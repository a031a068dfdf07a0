/* cluster/adapter.c — the cross-worker Socket.IO adapter.
 *
 * It wraps a namespace's in-process adapter. An operation that reaches sockets by room
 * (broadcast, socketsJoin, socketsLeave, disconnectSockets) is done here through the
 * in-process adapter and sent once, as one frame, to the supervisor, which passes the
 * same bytes to every other worker; there it is applied with SIO_LOCAL set, so it goes
 * no further. Everything about this worker's own sockets (join, leave, fetchSockets of
 * local sockets, recovery) is the in-process adapter's.
 *
 * Not across workers yet: broadcasts with acknowledgements and fetchSockets reach this
 * worker's sockets only, and a recovery session is found only on the worker that kept
 * it (docs/DESIGN.md). */
#include <errno.h>
#include <stdlib.h>

#include "cluster/internal.h"
#include "cluster/proto.h"
#include "sio/internal.h"
#include "util/log.h"

typedef struct {
    sio_adapter_t base;
    sio_adapter_t *local;
    parley_worker_t *w;
} wadapter_t;

static sio_adapter_t *local_of(sio_adapter_t *a) {
    return ((wadapter_t *)a)->local;
}

/* Sends a frame to the other workers; a failure costs them this operation, not us. */
static void send_frame(wadapter_t *wa, buf_t *b, int rc) {
    if (rc == 0 && wa->w->ch)
        rc = channel_send(wa->w->ch, b->data, b->len);
    if (rc)
        LOG_LIMITED(LOG_LEVEL_WARN, "cluster", "operation not sent to the other workers: %d", rc);
    buf_free(b);
}

static int w_broadcast(sio_adapter_t *a, const sio_bcast_t *b) {
    wadapter_t *wa = (wadapter_t *)a;
    int rc = wa->local->ops->broadcast(wa->local, b);
    if (rc == 0 && !(b->to.flags & SIO_LOCAL)) {
        buf_t f = {0};
        send_frame(wa, &f, proto_bcast_encode(&f, a->nsp->name, b));
    }
    return rc;
}

static int w_broadcast_with_ack(sio_adapter_t *a, const sio_bcast_t *b, uint64_t ack_id,
                                sio_bcast_count_fn count, sio_ack_fn ack, void *arg) {
    sio_adapter_t *l = local_of(a);
    return l->ops->broadcast_with_ack(l, b, ack_id, count, ack, arg);
}

static int w_join(sio_adapter_t *a, sio_socket_t *s, const char *room) {
    sio_adapter_t *l = local_of(a);
    return l->ops->join(l, s, room);
}

static int w_leave(sio_adapter_t *a, sio_socket_t *s, const char *room) {
    sio_adapter_t *l = local_of(a);
    return l->ops->leave(l, s, room);
}

static void w_leave_all(sio_adapter_t *a, sio_socket_t *s) {
    sio_adapter_t *l = local_of(a);
    l->ops->leave_all(l, s);
}

static void rooms_op(wadapter_t *wa, uint8_t op, const sio_target_t *which, const char *room,
                     bool close) {
    if (which && (which->flags & SIO_LOCAL))
        return;
    buf_t f = {0};
    send_frame(wa, &f, proto_rooms_encode(&f, wa->base.nsp->name, op, which, room, close));
}

static int w_sockets_join(sio_adapter_t *a, const sio_target_t *which, const char *room) {
    wadapter_t *wa = (wadapter_t *)a;
    int rc = wa->local->ops->sockets_join(wa->local, which, room);
    rooms_op(wa, PROTO_ROOMS_JOIN, which, room, false);
    return rc;
}

static int w_sockets_leave(sio_adapter_t *a, const sio_target_t *which, const char *room) {
    wadapter_t *wa = (wadapter_t *)a;
    int rc = wa->local->ops->sockets_leave(wa->local, which, room);
    rooms_op(wa, PROTO_ROOMS_LEAVE, which, room, false);
    return rc;
}

static int w_disconnect_sockets(sio_adapter_t *a, const sio_target_t *which, bool close) {
    wadapter_t *wa = (wadapter_t *)a;
    /* Told to the others first: the local disconnects may free what `which` names. */
    rooms_op(wa, PROTO_ROOMS_DISCONNECT, which, NULL, close);
    return wa->local->ops->disconnect_sockets(wa->local, which, close);
}

static int w_fetch_sockets(sio_adapter_t *a, const sio_target_t *which,
                           void (*fn)(sio_socket_t *s, void *arg), void *arg) {
    sio_adapter_t *l = local_of(a);
    return l->ops->fetch_sockets(l, which, fn, arg);
}

static size_t w_room_size(sio_adapter_t *a, const char *room) {
    sio_adapter_t *l = local_of(a);
    return l->ops->room_size(l, room);
}

static void w_persist(sio_adapter_t *a, sio_socket_t *s) {
    sio_adapter_t *l = local_of(a);
    l->ops->persist(l, s);
}

static sio_session_t *w_restore(sio_adapter_t *a, sio_socket_t *s, const char *pid,
                                const char *offset, sio_logged_t ***missed, size_t *nmissed) {
    sio_adapter_t *l = local_of(a);
    return l->ops->restore(l, s, pid, offset, missed, nmissed);
}

static void w_purge(sio_adapter_t *a, uint64_t now_ms) {
    sio_adapter_t *l = local_of(a);
    l->ops->purge(l, now_ms);
}

static size_t w_server_count(sio_adapter_t *a) {
    return ((wadapter_t *)a)->w->count;
}

static void w_free(sio_adapter_t *a) {
    sio_adapter_t *l = local_of(a);
    l->ops->free(l);
    free(a);
}

static const sio_adapter_ops_t worker_ops = {
    .broadcast = w_broadcast,
    .broadcast_with_ack = w_broadcast_with_ack,
    .join = w_join,
    .leave = w_leave,
    .leave_all = w_leave_all,
    .sockets_join = w_sockets_join,
    .sockets_leave = w_sockets_leave,
    .disconnect_sockets = w_disconnect_sockets,
    .fetch_sockets = w_fetch_sockets,
    .room_size = w_room_size,
    .persist = w_persist,
    .restore = w_restore,
    .purge = w_purge,
    .server_count = w_server_count,
    .free = w_free,
};

sio_adapter_t *cluster_adapter_wrap(sio_nsp_t *nsp, sio_adapter_t *local, void *worker) {
    wadapter_t *wa = calloc(1, sizeof *wa);
    if (!wa)
        return NULL;
    wa->base.ops = &worker_ops;
    wa->base.nsp = nsp;
    wa->local = local;
    wa->w = worker;
    return &wa->base;
}

void cluster_adapter_apply(parley_worker_t *w, const uint8_t *frame, size_t size) {
    if (!w->io)
        return; /* shutting down: its server is closed */
    proto_msg_t m;
    int rc = proto_msg_decode(frame, size, &m);
    if (rc) {
        LOG_LIMITED(LOG_LEVEL_ERROR, "cluster", "frame from another worker not decoded: %d", rc);
        return;
    }
    /* A namespace that exists there exists here too, once a client asked for it. */
    sio_nsp_t *nsp = sio_server_find(w->io, m.nsp);
    if (nsp) {
        sio_adapter_t *a = nsp->adapter;
        sio_target_t which = m.b.to;
        which.flags |= SIO_LOCAL;
        if (frame[4] == PROTO_BCAST) {
            m.b.to = which;
            rc = a->ops->broadcast(a, &m.b);
        } else if (m.op == PROTO_ROOMS_JOIN) {
            rc = a->ops->sockets_join(a, &which, m.room);
        } else if (m.op == PROTO_ROOMS_LEAVE) {
            rc = a->ops->sockets_leave(a, &which, m.room);
        } else if (m.op == PROTO_ROOMS_DISCONNECT) {
            rc = a->ops->disconnect_sockets(a, &which, m.close);
        } else {
            rc = -EINVAL;
        }
        if (rc)
            LOG_LIMITED(LOG_LEVEL_WARN, "cluster", "operation from another worker failed: %d", rc);
    }
    proto_msg_free(&m);
}
