/* cluster/supervisor.c — the supervising process of parley/cluster.h.
 *
 * It re-executes its own program once per worker (uv_spawn of /proc/self/exe with the
 * same arguments and PARLEY_WORKER="id/count/port" in the environment), each with one
 * end of a socketpair as descriptor 3: the worker's channel. Spawning a fresh program
 * rather than forking keeps the workers free of the supervisor's loop and handlers.
 *
 * It then relays frames between workers (cluster/proto.h), restarts a worker that exits
 * unasked (backoff: 100 ms, doubling while it keeps dying within 10 s of its start, at
 * most 10 s), forwards SIGTERM/SIGINT to every worker (each drains; a second signal is
 * forwarded too and cuts their drains short) and returns when all are gone. It
 * prints "listening HOST:PORT" once every worker reported READY (the first time). */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/channel.h"
#include "cluster/hub.h"
#include "cluster/internal.h"
#include "cluster/proto.h"
#include "util/log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define STABLE_MS 10000

/* The supervisor is the hub its service sees. */
typedef struct cluster_hub supervisor_t;

typedef struct {
    supervisor_t *sup;
    unsigned id;
    uv_process_t proc;
    uv_timer_t restart;
    channel_t *ch;
    uint64_t started_at;
    uint32_t backoff_ms;
    bool running, ready;
} member_t;

struct cluster_hub {
    uv_loop_t loop;
    const cluster_service_t *svc;
    void *svc_arg;
    member_t members[PARLEY_WORKERS_MAX];
    unsigned n, running;
    char **argv;
    char exe[4096];
    const char *host;
    int port;
    int port_fd; /* holds the port chosen for port 0 while the workers bind it */
    uv_signal_t sigterm, sigint;
    bool stopping, announced, svc_stopping;
    int status;
};

static int spawn_member(member_t *m);

static void on_relay_frame(channel_t *ch, const uint8_t *frame, size_t size, void *arg);

static void member_channel_closed(channel_t *ch, void *arg) {
    member_t *m = arg;
    if (m->ch == ch)
        m->ch = NULL;
}

static const channel_cb_t relay_cb = {on_relay_frame, member_channel_closed};

static void announce_if_ready(supervisor_t *sup) {
    if (sup->announced)
        return;
    for (unsigned i = 0; i < sup->n; i++)
        if (!sup->members[i].ready)
            return;
    sup->announced = true;
    LOG_INFO("cluster", "%u workers listening on %s:%d", sup->n, sup->host, sup->port);
    if (printf("listening %s:%d\n", sup->host, sup->port) < 0 || fflush(stdout))
        LOG_WARN("cluster", "stdout: %s", strerror(errno));
}

typedef struct {
    uv_tcp_t tcp;
} relayed_t;

static void relayed_closed(uv_handle_t *h) {
    free(h->data);
}

static void relayed_sent(int status, void *arg) {
    relayed_t *r = arg;
    if (status < 0)
        LOG_WARN("cluster", "handing a connection on failed: %s", uv_strerror(status));
    uv_close((uv_handle_t *)&r->tcp, relayed_closed);
}

/* A request for a session of another worker: passed on with its connection. */
static void relay_handoff(supervisor_t *sup, member_t *from, const uint8_t *frame, size_t size) {
    relayed_t *r = calloc(1, sizeof *r);
    if (!r || uv_tcp_init(&sup->loop, &r->tcp)) {
        free(r);
        LOG_ERROR("cluster", "out of memory relaying a connection");
        return;
    }
    r->tcp.data = r;
    if (channel_accept(from->ch, &r->tcp)) {
        LOG_WARN("cluster", "worker %u sent a hand-off without its connection", from->id);
        uv_close((uv_handle_t *)&r->tcp, relayed_closed);
        return;
    }
    unsigned owner = size > WIRE_HEADER ? frame[WIRE_HEADER] : 0;
    member_t *to = owner >= 1 && owner <= sup->n ? &sup->members[owner - 1] : NULL;
    if (!to || !to->ch || channel_send_handle(to->ch, frame, size, &r->tcp, relayed_sent, r)) {
        /* The owner is gone (restarting): the client's request fails and it reconnects. */
        LOG_INFO("cluster", "worker %u is not there to take its connection", owner);
        uv_close((uv_handle_t *)&r->tcp, relayed_closed);
    }
}

/* A request: to the workers it asks (those running), after telling the asker which. */
static void relay_request(supervisor_t *sup, member_t *from, const uint8_t *frame, size_t size) {
    wire_reader_t r;
    wire_reader_init(&r, frame, size);
    unsigned to = wire_get_u32(&r);
    unsigned origin = wire_get_u32(&r);
    uint32_t id = wire_get_u32(&r);
    if (r.bad || origin != from->id || to > sup->n) {
        LOG_ERROR("cluster", "malformed request from worker %u", from->id);
        return;
    }
    uint32_t mask = 0;
    for (unsigned i = 0; i < sup->n; i++) {
        member_t *o = &sup->members[i];
        if (o != from && o->ch && (to == 0 || to == o->id))
            mask |= 1u << i;
    }
    buf_t b = {0};
    size_t start;
    int rc = wire_begin(&b, PROTO_FANOUT, &start);
    if (rc == 0)
        rc = wire_u32(&b, id);
    if (rc == 0)
        rc = wire_u32(&b, mask);
    if (rc == 0) {
        wire_end(&b, start);
        rc = channel_send(from->ch, b.data, b.len);
    }
    buf_free(&b);
    if (rc) {
        LOG_WARN("cluster", "request of worker %u dropped: %d", from->id, rc);
        return;
    }
    for (unsigned i = 0; i < sup->n; i++) {
        member_t *o = &sup->members[i];
        /* A worker that cannot take it now is reported GONE when its channel goes. */
        if ((mask & (1u << i)) && channel_send(o->ch, frame, size))
            LOG_WARN("cluster", "request for worker %u dropped", o->id);
    }
}

static void relay_reply(supervisor_t *sup, member_t *from, const uint8_t *frame, size_t size) {
    wire_reader_t r;
    wire_reader_init(&r, frame, size);
    unsigned origin = wire_get_u32(&r);
    wire_get_u32(&r);
    unsigned replier = wire_get_u32(&r);
    if (r.bad || replier != from->id || origin < 1 || origin > sup->n) {
        LOG_ERROR("cluster", "malformed reply from worker %u", from->id);
        return;
    }
    member_t *to = &sup->members[origin - 1];
    if (to->ch && channel_send(to->ch, frame, size))
        LOG_WARN("cluster", "reply for worker %u dropped", origin);
}

/* Tells the others that worker id will not answer what it was asked. */
static void announce_gone(supervisor_t *sup, unsigned id) {
    buf_t b = {0};
    size_t start;
    int rc = wire_begin(&b, PROTO_GONE, &start);
    if (rc == 0)
        rc = wire_u32(&b, id);
    if (rc == 0) {
        wire_end(&b, start);
        for (unsigned i = 0; i < sup->n; i++) {
            member_t *o = &sup->members[i];
            if (o->id != id && o->ch && channel_send(o->ch, b.data, b.len))
                LOG_WARN("cluster", "GONE for worker %u dropped", o->id);
        }
    }
    buf_free(&b);
    if (rc)
        LOG_ERROR("cluster", "out of memory telling that worker %u is gone", id);
}

static void on_relay_frame(channel_t *ch, const uint8_t *frame, size_t size, void *arg) {
    member_t *m = arg;
    supervisor_t *sup = m->sup;
    uint8_t type = frame[4];
    switch (type & ~CHANNEL_F_HANDLE) {
    case PROTO_READY:
        m->ready = true;
        announce_if_ready(sup);
        return;
    case PROTO_BCAST:
    case PROTO_ROOMS:
        for (unsigned i = 0; i < sup->n; i++) {
            member_t *o = &sup->members[i];
            if (o != m && o->ch && channel_send(o->ch, frame, size))
                LOG_WARN("cluster", "frame for worker %u dropped", o->id);
        }
        return;
    case PROTO_HANDOFF:
        if (type & CHANNEL_F_HANDLE) {
            relay_handoff(sup, m, frame, size);
            return;
        }
        break;
    case PROTO_REQ:
        relay_request(sup, m, frame, size);
        return;
    case PROTO_REPLY:
        relay_reply(sup, m, frame, size);
        return;
    default:
        if (type >= CLUSTER_APP_TYPE && !(type & CHANNEL_F_HANDLE) && sup->svc) {
            sup->svc->on_frame(sup, m->id, frame, size, sup->svc_arg);
            return;
        }
        break;
    }
    LOG_ERROR("cluster", "unexpected frame %u from worker %u", type, m->id);
}

static void close_handles(supervisor_t *sup) {
    for (unsigned i = 0; i < sup->n; i++) {
        member_t *m = &sup->members[i];
        if (m->ch)
            channel_close(m->ch);
        uv_close((uv_handle_t *)&m->restart, NULL);
    }
    uv_close((uv_handle_t *)&sup->sigterm, NULL);
    uv_close((uv_handle_t *)&sup->sigint, NULL);
}

/* The service stops after the last worker, so nothing a worker asked of it is cut short. */
static void maybe_done(supervisor_t *sup) {
    if (!sup->stopping || sup->running || sup->svc_stopping)
        return;
    sup->svc_stopping = true;
    if (sup->svc)
        sup->svc->stop(sup, close_handles, sup->svc_arg);
    else
        close_handles(sup);
}

static void restart_due(uv_timer_t *t) {
    member_t *m = t->data;
    if (m->sup->stopping)
        return;
    if (spawn_member(m)) {
        m->backoff_ms = m->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : m->backoff_ms * 2;
        if (uv_timer_start(&m->restart, restart_due, m->backoff_ms, 0))
            LOG_ERROR("cluster", "worker %u cannot be restarted", m->id);
    }
}

static void process_closed(uv_handle_t *h) {
    member_t *m = h->data;
    supervisor_t *sup = m->sup;
    sup->running--;
    if (sup->stopping) {
        maybe_done(sup);
        return;
    }
    uint64_t lived = uv_now(&sup->loop) - m->started_at;
    m->backoff_ms = lived >= STABLE_MS || m->backoff_ms == 0
                        ? BACKOFF_MIN_MS
                        : (m->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : m->backoff_ms * 2);
    LOG_WARN("cluster", "worker %u restarts in %u ms", m->id, m->backoff_ms);
    if (uv_timer_start(&m->restart, restart_due, m->backoff_ms, 0))
        LOG_ERROR("cluster", "worker %u cannot be restarted", m->id);
}

static void member_exited(uv_process_t *p, int64_t status, int signal) {
    member_t *m = p->data;
    m->running = false;
    m->ready = false;
    if (signal)
        LOG_WARN("cluster", "worker %u (pid %d) killed by signal %d", m->id, p->pid, signal);
    else if (status || !m->sup->stopping)
        LOG_WARN("cluster", "worker %u (pid %d) exited with status %lld", m->id, p->pid,
                 (long long)status);
    else
        LOG_INFO("cluster", "worker %u (pid %d) stopped", m->id, p->pid);
    if (m->sup->stopping && (status || signal))
        m->sup->status = 1;
    if (m->ch)
        channel_close(m->ch);
    announce_gone(m->sup, m->id);
    if (m->sup->svc && m->sup->svc->on_worker_gone)
        m->sup->svc->on_worker_gone(m->sup, m->id, m->sup->svc_arg);
    uv_close((uv_handle_t *)p, process_closed);
}

extern char **environ;

static int spawn_member(member_t *m) {
    supervisor_t *sup = m->sup;
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds))
        return -errno;
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **env = calloc(nenv + 2, sizeof *env);
    char role[64];
    snprintf(role, sizeof role, "%s=%u/%u/%d", CLUSTER_ENV, m->id, sup->n, sup->port);
    if (!env) {
        close(fds[0]);
        close(fds[1]);
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], CLUSTER_ENV "=", sizeof CLUSTER_ENV) != 0)
            env[k++] = environ[i];
    env[k++] = role;
    uv_stdio_container_t stdio[4] = {
        {.flags = UV_INHERIT_FD, .data.fd = 0},
        {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
        {.flags = UV_INHERIT_FD, .data.fd = fds[1]},
    };
    uv_process_options_t opt = {
        .exit_cb = member_exited,
        .file = sup->exe,
        .args = sup->argv,
        .env = env,
        .stdio_count = 4,
        .stdio = stdio,
    };
    m->proc.data = m;
    int rc = uv_spawn(&sup->loop, &m->proc, &opt);
    free(env);
    close(fds[1]);
    if (rc) {
        close(fds[0]);
        LOG_ERROR("cluster", "worker %u cannot start: %s", m->id, uv_strerror(rc));
        /* uv_spawn leaves the handle to be closed even when it fails. */
        uv_close((uv_handle_t *)&m->proc, NULL);
        return rc;
    }
    if ((rc = channel_open(&sup->loop, fds[0], &relay_cb, m, &m->ch))) {
        LOG_ERROR("cluster", "worker %u: no channel: %s", m->id, uv_strerror(rc));
        m->ch = NULL;
    }
    sup->running++;
    m->running = true;
    m->started_at = uv_now(&sup->loop);
    LOG_INFO("cluster", "worker %u started (pid %d)", m->id, m->proc.pid);
    return 0;
}

static void stop_all(supervisor_t *sup) {
    sup->stopping = true;
    for (unsigned i = 0; i < sup->n; i++) {
        member_t *m = &sup->members[i];
        if (uv_timer_stop(&m->restart))
            LOG_DEBUG("cluster", "restart timer of worker %u not stopped", m->id);
        if (m->running && uv_process_kill(&m->proc, SIGTERM))
            LOG_WARN("cluster", "worker %u did not take SIGTERM", m->id);
    }
    maybe_done(sup);
}

static void on_stop_signal(uv_signal_t *s, int signum) {
    supervisor_t *sup = s->data;
    if (sup->stopping) {
        /* A second signal: the workers cut their drains short (they stop at once). */
        for (unsigned i = 0; i < sup->n; i++)
            if (sup->members[i].running && uv_process_kill(&sup->members[i].proc, SIGTERM))
                LOG_WARN("cluster", "worker %u did not take SIGTERM", sup->members[i].id);
        return;
    }
    LOG_INFO("cluster", "signal %d: stopping %u workers", signum, sup->running);
    stop_all(sup);
}

/* Port 0: one is chosen here and held (SO_REUSEPORT, not listening) so that every
 * worker binds the same one. */
static int choose_port(supervisor_t *sup) {
    if (sup->port != 0)
        return 0;
    struct sockaddr_storage ss;
    int rc = uv_ip4_addr(sup->host, 0, (struct sockaddr_in *)&ss);
    if (rc)
        rc = uv_ip6_addr(sup->host, 0, (struct sockaddr_in6 *)&ss);
    if (rc)
        return rc;
    socklen_t len =
        ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&ss, len) || getsockname(fd, (struct sockaddr *)&ss, &len)) {
        rc = -errno;
        if (fd >= 0)
            close(fd);
        return rc;
    }
    sup->port_fd = fd;
    sup->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

int cluster_hub_send(cluster_hub_t *hub, unsigned to, const void *frame, size_t len) {
    int rc = 0;
    for (unsigned i = 0; i < hub->n; i++) {
        member_t *m = &hub->members[i];
        if ((to == 0 || to == m->id) && m->ch) {
            int r = channel_send(m->ch, frame, len);
            if (r)
                rc = r;
        }
    }
    return rc;
}

void cluster_hub_fail(cluster_hub_t *hub) {
    hub->status = 1;
    if (!hub->stopping)
        stop_all(hub);
}

unsigned cluster_hub_count(const cluster_hub_t *hub) {
    return hub->n;
}

int cluster_supervise(char **argv, unsigned n, const char *host, int *port,
                      const cluster_service_t *svc, void *svc_arg) {
    supervisor_t *sup = calloc(1, sizeof *sup);
    if (!sup)
        return 1;
    sup->svc = svc;
    sup->svc_arg = svc_arg;
    sup->n = n;
    sup->argv = argv;
    sup->host = host;
    sup->port = *port;
    sup->port_fd = -1;
    ssize_t len = readlink("/proc/self/exe", sup->exe, sizeof sup->exe - 1);
    int rc = len > 0 ? 0 : -errno;
    if (rc == 0)
        rc = choose_port(sup);
    if (rc == 0)
        rc = uv_loop_init(&sup->loop);
    if (rc) {
        LOG_ERROR("cluster", "cannot start: %s", uv_strerror(rc));
        free(sup);
        return 1;
    }
    *port = sup->port;
    sup->sigterm.data = sup->sigint.data = sup;
    if ((rc = uv_signal_init(&sup->loop, &sup->sigterm)) ||
        (rc = uv_signal_init(&sup->loop, &sup->sigint)) ||
        (rc = uv_signal_start(&sup->sigterm, on_stop_signal, SIGTERM)) ||
        (rc = uv_signal_start(&sup->sigint, on_stop_signal, SIGINT))) {
        LOG_ERROR("cluster", "signals: %s", uv_strerror(rc));
        return 1;
    }
    for (unsigned i = 0; i < n; i++) {
        member_t *m = &sup->members[i];
        m->sup = sup;
        m->id = i + 1;
        m->restart.data = m;
        /* Timer initialisation cannot fail on Linux (it only links the handle). */
        if (uv_timer_init(&sup->loop, &m->restart))
            return 1;
    }
    if (svc && (rc = svc->start(sup, &sup->loop, svc_arg)))
        LOG_ERROR("cluster", "the supervisor's service did not start: %s", uv_strerror(rc));
    for (unsigned i = 0; i < n && rc == 0; i++)
        rc = spawn_member(&sup->members[i]);
    if (rc) {
        sup->status = 1;
        stop_all(sup);
    }
    rc = uv_run(&sup->loop, UV_RUN_DEFAULT);
    int status = sup->status;
    if (uv_loop_close(&sup->loop))
        LOG_WARN("cluster", "supervisor loop closed with handles left (%d)", rc);
    if (sup->port_fd >= 0)
        close(sup->port_fd);
    free(sup);
    return status;
}
