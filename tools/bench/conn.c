/* tools/bench/conn.c — client connections: connect, read, write, close (see conn.h). */
#include "conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpsub.h"
#include "worker.h"
#include "wsio.h"

/* Output buffers above this are freed once written (a burst sender's or a big request's);
 * smaller ones are kept for the next packet. */
#define CONN_OUT_KEEP (64 * 1024)

static void mark_dirty(worker_t *w, client_t *c) {
    if (!c->dirty) {
        c->dirty = true;
        c->next_dirty = w->dirty;
        w->dirty = c;
    }
}

int conn_open(worker_t *w, client_t *c, const void *request, size_t len) {
    const bench_config_t *cfg = w->cfg;
    c->t_start = bench_now();
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        goto fail;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* To a loopback server, spread the connections over 127.0.0.2, .3, ...: the kernel
     * then picks each source port for the whole 4-tuple at connect time
     * (IP_BIND_ADDRESS_NO_PORT), so ephemeral ports never run out. */
    if ((ntohl(cfg->host_addr) >> 24) == 127) {
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(0x7f000002u + c->id / cfg->per_addr)};
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src))
            goto fail;
    }
    struct sockaddr_in dst = {
        .sin_family = AF_INET, .sin_port = htons(cfg->port), .sin_addr.s_addr = cfg->host_addr};
    int rc = connect(c->fd, (struct sockaddr *)&dst, sizeof dst);
    if (rc && errno != EINPROGRESS)
        goto fail;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev))
        goto fail;
    c->state = rc == 0 ? CONN_HEAD : CONN_CONNECTING;
    if (buf_append(&c->out, request, len))
        goto fail;
    if (rc == 0)
        mark_dirty(w, c);
    return 0;
fail:
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = CONN_CLOSED;
    buf_free(&c->out);
    return -1;
}

int conn_send(worker_t *w, client_t *c, const void *data, size_t len) {
    if (c->state == CONN_CLOSED)
        return -1;
    if (buf_append(&c->out, data, len))
        return -1;
    mark_dirty(w, c);
    return 0;
}

/* Writes what c has queued; a short write leaves the rest for the next EPOLLOUT edge. */
static void flush_one(worker_t *w, client_t *c) {
    while (c->out.len > 0 && c->state != CONN_CONNECTING && c->state != CONN_CLOSED) {
        ssize_t n = write(c->fd, c->out.data, c->out.len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                conn_close(w, c, strerror(errno));
            return;
        }
        buf_consume(&c->out, (size_t)n);
    }
    if (c->out.len == 0 && c->out.cap > CONN_OUT_KEEP)
        buf_free(&c->out);
}

void conn_flush_all(worker_t *w) {
    while (w->dirty) {
        client_t *c = w->dirty;
        w->dirty = c->next_dirty;
        c->dirty = false;
        flush_one(w, c);
    }
}

void conn_close(worker_t *w, client_t *c, const char *why) {
    if (c->state == CONN_CLOSED)
        return;
    close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    buf_free(&c->in);
    buf_free(&c->out);
    wsio_closed(c);
    worker_client_closed(w, c, why);
    c->state = CONN_CLOSED;
}

static ssize_t parse(worker_t *w, client_t *c, uint8_t *data, size_t len) {
    return c->proto == PROTO_SIO ? wsio_parse(w, c, data, len) : httpsub_parse(w, c, data, len);
}

static void on_readable(worker_t *w, client_t *c) {
    for (;;) {
        uint8_t *base;
        size_t have, room;
        if (c->in.len > 0) {
            if (buf_reserve(&c->in, 16 * 1024)) {
                conn_close(w, c, "out of memory");
                return;
            }
            base = c->in.data;
            have = c->in.len;
            room = c->in.cap - have;
        } else {
            base = w->rbuf;
            have = 0;
            room = WORKER_RBUF_SIZE;
        }
        ssize_t n = read(c->fd, base + have, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            conn_close(w, c, n == 0 ? "closed by server" : strerror(errno));
            return;
        }
        size_t total = have + (size_t)n;
        ssize_t used = parse(w, c, base, total);
        if (used < 0 || c->state == CONN_CLOSED) {
            conn_close(w, c, "protocol error");
            return;
        }
        if (have > 0) {
            c->in.len = total;
            buf_consume(&c->in, (size_t)used);
            if (c->in.len == 0)
                buf_free(&c->in);
        } else if ((size_t)used < total && buf_append(&c->in, base + used, total - (size_t)used)) {
            conn_close(w, c, "out of memory");
            return;
        }
        /* Edge-triggered: a short read emptied the socket; new bytes make a new edge. */
        if ((size_t)n < room)
            return;
    }
}

void conn_on_events(worker_t *w, client_t *c, uint32_t events) {
    if (c->state == CONN_CLOSED)
        return;
    if (c->state == CONN_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            conn_close(w, c, strerror(err));
            return;
        }
        c->state = CONN_HEAD;
        flush_one(w, c);
    } else if (events & EPOLLOUT) {
        flush_one(w, c);
    }
    if (c->state != CONN_CLOSED && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        on_readable(w, c);
}
