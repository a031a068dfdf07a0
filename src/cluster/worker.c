/* cluster/worker.c — a worker's side of parley/cluster.h.
 *
 * A worker finds its place in the environment its supervisor set (CLUSTER_ENV) and its
 * channel on descriptor CLUSTER_CHANNEL_FD. Attaching wraps the adapters of its
 * Socket.IO server, tags its session ids, and takes over requests for other workers'
 * sessions: the request is written out again (http_conn_handoff) and sent with its
 * connection, through the supervisor, to the owner, which adopts the connection as if
 * it had accepted it and reads the request from those bytes. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/hub.h"
#include "cluster/internal.h"
#include "cluster/proto.h"
#include "eio/server.h"
#include "http/server.h"
#include "util/log.h"

/* Session ids start with their worker's character (base64url, so still a valid id). */
static const char tags[PARLEY_WORKERS_MAX + 1] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef";

char cluster_worker_tag(unsigned id) {
    return id >= 1 && id <= PARLEY_WORKERS_MAX ? tags[id - 1] : '\0';
}

unsigned cluster_tag_worker(char tag) {
    const char *p = tag ? strchr(tags, tag) : NULL;
    return p ? (unsigned)(p - tags) + 1 : 0;
}

int parley_cluster_start(int argc, char **argv, unsigned nworkers, const char *host, int *port,
                         parley_worker_t **worker) {
    return cluster_start(argc, argv, nworkers, host, port, NULL, NULL, worker);
}

int cluster_start(int argc, char **argv, unsigned nworkers, const char *host, int *port,
                  const cluster_service_t *svc, void *arg, parley_worker_t **worker) {
    *worker = NULL;
    const char *role = getenv(CLUSTER_ENV);
    /* Both roles write to pipes whose other end may exit at any time: that is an error
     * to handle (EPIPE), not a reason to die. */
    if ((role || nworkers > 1) && signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        LOG_ERROR("cluster", "cannot ignore SIGPIPE: %s", strerror(errno));
        return 1;
    }
    if (role) {
        unsigned id, count;
        int p;
        if (sscanf(role, "%u/%u/%d", &id, &count, &p) != 3 || id < 1 || id > count ||
            count > PARLEY_WORKERS_MAX) {
            LOG_ERROR("cluster", "%s=%s is not ID/COUNT/PORT", CLUSTER_ENV, role);
            return 1;
        }
        parley_worker_t *w = calloc(1, sizeof *w);
        if (!w)
            return 1;
        w->id = id;
        w->count = count;
        *port = p;
        char name[16];
        snprintf(name, sizeof name, "w%u", id);
        log_set_role(name);
        *worker = w;
        return 0;
    }
    if (nworkers <= 1)
        return 0;
    if (nworkers > PARLEY_WORKERS_MAX) {
        LOG_ERROR("cluster", "at most %d workers", PARLEY_WORKERS_MAX);
        return 1;
    }
    log_set_role("sup");
    return cluster_supervise(argv, nworkers, host, port, svc, arg);
}

unsigned parley_worker_id(const parley_worker_t *w) {
    return w->id;
}

unsigned parley_worker_count(const parley_worker_t *w) {
    return w->count;
}

/* ---- hand-offs ---- */

static void handed_off(int status, void *arg) {
    net_conn_t *c = arg;
    if (status < 0)
        LOG_WARN("cluster", "a connection could not be handed on: %s", uv_strerror(status));
    net_conn_abort(c);
}

static bool foreign_request(http_conn_t *hc, http_req_t *req, char tag, void *arg) {
    parley_worker_t *w = arg;
    unsigned owner = cluster_tag_worker(tag);
    if (!owner || owner > w->count || owner == w->id || !w->ch)
        return false; /* not a session of the group: eio answers "unknown sid" */
    buf_t request = {0}, frame = {0};
    int fd = -1;
    size_t start;
    int rc = http_conn_handoff(hc, req, &request, &fd);
    if (rc == 0)
        rc = wire_begin(&frame, PROTO_HANDOFF | CHANNEL_F_HANDLE, &start);
    if (rc == 0)
        rc = wire_u8(&frame, (uint8_t)owner);
    if (rc == 0)
        rc = wire_bytes(&frame, request.data, request.len);
    if (rc == 0) {
        wire_end(&frame, start);
        rc = channel_send_fd(w->ch, frame.data, frame.len, fd, handed_off, http_conn_net(hc));
    }
    buf_free(&request);
    buf_free(&frame);
    if (rc == 0) {
        LOG_DEBUG("cluster", "request for worker %u handed on", owner);
        return true;
    }
    LOG_WARN("cluster", "request for worker %u not handed on: %s", owner, strerror(-rc));
    if (fd >= 0)
        net_conn_abort(http_conn_net(hc)); /* already released: nobody can answer it */
    else
        http_respond_error(hc, 503, "cannot reach the session's worker");
    return true;
}

static void adopt(parley_worker_t *w, channel_t *ch, const uint8_t *frame, size_t size) {
    wire_reader_t r;
    wire_reader_init(&r, frame, size);
    wire_get_u8(&r);
    slice_t req = wire_get_bytes(&r);
    /* Taken in any case, so that it does not stay pending; closed if it cannot be served. */
    int fd = -1;
    int rc = channel_accept_fd(ch, &fd);
    if (rc) {
        LOG_WARN("cluster", "hand-off without its connection: %s", uv_strerror(rc));
        return;
    }
    uint8_t *copy = wire_done(&r) && w->io ? malloc(req.len ? req.len : 1) : NULL;
    if (!copy) {
        close(fd);
        if (w->io)
            LOG_ERROR("cluster", "malformed or unaffordable hand-off dropped");
        return;
    }
    memcpy(copy, req.base, req.len);
    if (http_server_adopt(sio_server_http(w->io), fd, copy, req.len))
        LOG_WARN("cluster", "a handed-on connection could not be adopted");
    free(copy);
}

static void on_frame(channel_t *ch, const uint8_t *frame, size_t size, void *arg) {
    parley_worker_t *w = arg;
    uint8_t type = frame[4];
    switch (type & ~CHANNEL_F_HANDLE) {
    case PROTO_BCAST:
    case PROTO_ROOMS:
        cluster_adapter_apply(w, frame, size);
        return;
    case PROTO_HANDOFF:
        if (type & CHANNEL_F_HANDLE) {
            adopt(w, ch, frame, size);
            return;
        }
        break;
    case PROTO_REQ:
        creq_on_request(w, frame, size);
        return;
    case PROTO_FANOUT:
        creq_on_fanout(w, frame, size);
        return;
    case PROTO_REPLY:
        creq_on_reply(w, frame, size);
        return;
    case PROTO_GONE:
        creq_on_gone(w, frame, size);
        return;
    default:
        for (int i = 0;
             type >= CLUSTER_APP_TYPE && !(type & CHANNEL_F_HANDLE) && i < CLUSTER_APP_RECEIVERS;
             i++) {
            if (w->app[i].fn && type >= w->app[i].first && type <= w->app[i].last) {
                w->app[i].fn(frame, size, w->app[i].arg);
                return;
            }
        }
        break;
    }
    LOG_ERROR("cluster", "unexpected frame %u from the supervisor", type);
}

static void on_channel_close(channel_t *ch, void *arg) {
    parley_worker_t *w = arg;
    w->ch = NULL;
    creq_fail_all(w);
    if (w->detaching)
        return;
    for (int i = 0; i < CLUSTER_APP_RECEIVERS; i++)
        if (w->app[i].fn)
            w->app[i].fn(NULL, 0, w->app[i].arg);
    /* Without its supervisor a worker is alone on a port that others may take over:
     * it stops as if told to. */
    LOG_ERROR("cluster", "lost the supervisor: stopping");
    if (raise(SIGTERM))
        LOG_ERROR("cluster", "cannot signal myself: %s", strerror(errno));
}

static const channel_cb_t worker_cb = {on_frame, on_channel_close};

int cluster_worker_connect(parley_worker_t *w, uv_loop_t *loop) {
    if (w->ch)
        return 0;
    w->loop = loop;
    return channel_open(loop, CLUSTER_CHANNEL_FD, &worker_cb, w, &w->ch);
}

bool cluster_worker_connected(const parley_worker_t *w) {
    return w->ch != NULL;
}

int cluster_worker_send(parley_worker_t *w, const void *frame, size_t len) {
    return w->ch ? channel_send(w->ch, frame, len) : -EPIPE;
}

int cluster_worker_on_app(parley_worker_t *w, uint8_t first, uint8_t last, cluster_app_fn fn,
                          void *arg) {
    int free_slot = -1;
    for (int i = 0; i < CLUSTER_APP_RECEIVERS; i++) {
        if (w->app[i].fn && w->app[i].first == first && w->app[i].last == last) {
            w->app[i].fn = fn;
            w->app[i].arg = arg;
            return 0;
        }
        if (!w->app[i].fn && free_slot < 0)
            free_slot = i;
    }
    if (!fn)
        return 0;
    if (free_slot < 0)
        return -ENOSPC;
    w->app[free_slot].first = first;
    w->app[free_slot].last = last;
    w->app[free_slot].fn = fn;
    w->app[free_slot].arg = arg;
    return 0;
}

static int attach(parley_worker_t *w, uv_loop_t *loop, sio_server_t *io, bool fan_out) {
    w->io = io;
    int rc = cluster_worker_connect(w, loop);
    if (rc)
        return rc;
    if (fan_out) {
        if ((rc = sio_server_wrap_adapters(io, cluster_adapter_wrap, w)))
            return rc;
        cluster_adapter_answer(w);
    }
    eio_server_set_group(sio_server_eio(io), cluster_worker_tag(w->id), foreign_request, w);
    sio_server_set_id_tag(io, cluster_worker_tag(w->id));
    buf_t b = {0};
    size_t start;
    rc = wire_begin(&b, PROTO_READY, &start);
    if (rc == 0)
        rc = wire_u32(&b, w->id);
    if (rc == 0) {
        wire_end(&b, start);
        rc = channel_send(w->ch, b.data, b.len);
    }
    buf_free(&b);
    return rc;
}

int parley_worker_attach(parley_worker_t *w, uv_loop_t *loop, sio_server_t *io) {
    return attach(w, loop, io, true);
}

int parley_worker_attach_handoff(parley_worker_t *w, uv_loop_t *loop, sio_server_t *io) {
    return attach(w, loop, io, false);
}

void parley_worker_detach_io(parley_worker_t *w) {
    /* What was asked of the others ends now, while the server it reports to still is
     * (nothing new can be asked: creq_start needs w->io). */
    w->io = NULL;
    creq_fail_all(w);
}

void parley_worker_detach(parley_worker_t *w) {
    w->detaching = true;
    if (w->ch)
        channel_close(w->ch); /* on_channel_close runs now, while w still exists */
    free(w);
}
