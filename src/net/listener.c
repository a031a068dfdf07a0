/* net/listener.c — listening sockets: accepting in batches, shedding a backlog when out of
 * descriptors, adopting connections another process accepted, handing a port over.
 *
 * See listener.h. Accepted sockets inherit TCP_NODELAY from the listening socket (Linux),
 * so a connection costs no setsockopt; they are opened on the loop's epoll set by
 * net_conn_open (net/conn.c), which owns them from then on. */
#include "net/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/log.h"

/* Connections accepted per wake-up of a listener, so one busy listener cannot starve
 * the loop's other work; the rest wait for the next. */
#define ACCEPT_BATCH 256

struct net_listener {
    uv_poll_t poll; /* the listening socket's readiness */
    int fd;
    net_loop_t *nl;
    size_t ext_size;
    const net_conn_ops_t *ops;
    net_open_fn on_open;
    void *arg;
    net_tls_t *tls; /* NULL: plain TCP */
    int spare_fd;   /* kept for shedding the backlog when out of descriptors */
    /* net_listener_stop: the socket is closed (or closing), the rest stays for adoption
     * until net_listener_close. */
    bool stopped, handle_closed, free_pending;
};

/* Out of descriptors: the waiting connections are accepted with the descriptor kept
 * spare and closed at once, as libuv does, rather than left to make the listener ready
 * on every wake-up. */
static void shed_backlog(net_listener_t *l) {
    if (l->spare_fd < 0)
        return;
    close(l->spare_fd);
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            break;
        close(fd);
    }
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* A connection accepted (or adopted) by l: opened on the loop's set, then announced. */
static net_conn_t *accepted(net_listener_t *l, int fd) {
    net_conn_t *c = net_conn_open(l->nl, fd, l->ext_size, l->ops, l->tls);
    if (c)
        l->on_open(c, l->arg);
    return c;
}

static void on_acceptable(uv_poll_t *h, int status, int events) {
    net_listener_t *l = h->data;
    if (status < 0) {
        LOG_LIMITED(LOG_LEVEL_WARN, "net", "listener: %s", uv_strerror(status));
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            accepted(l, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        LOG_LIMITED(LOG_LEVEL_WARN, "net", "accept: %s", strerror(errno));
        if (errno == EMFILE || errno == ENFILE)
            shed_backlog(l);
        return;
    }
}

int net_listener_adopt(net_listener_t *l, int fd, uint8_t *data, size_t len) {
    int flags = fcntl(fd, F_GETFL);
    if (l->tls || flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK)) {
        int rc = l->tls ? -EPROTO : -errno; /* a connection's TLS state is not handed over */
        close(fd);
        return rc;
    }
    net_conn_t *c = accepted(l, fd);
    if (!c)
        return -ECONNABORTED;
    net_conn_feed_first(c, data, len);
    return 0;
}

/* The listening socket: SO_REUSEADDR as libuv sets it, SO_REUSEPORT when asked (several
 * processes on one port), and TCP_NODELAY, which accepted sockets inherit on Linux: no
 * setsockopt per connection. Returns the descriptor or a negative error. */
static int listen_socket(const struct sockaddr *addr, bool reuse_port) {
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    socklen_t alen =
        addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one)) ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) || bind(fd, addr, alen) ||
        listen(fd, 4096)) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int net_listener_open(net_loop_t *nl, const char *host, int port, bool reuse_port, size_t ext_size,
                      const net_conn_ops_t *ops, net_open_fn on_open, void *arg,
                      net_listener_t **out) {
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc)
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    if (rc)
        return rc;
    net_listener_t *l = calloc(1, sizeof *l);
    if (!l)
        return UV_ENOMEM;
    *l = (net_listener_t){
        .nl = nl, .ext_size = ext_size, .ops = ops, .on_open = on_open, .arg = arg};
    if ((l->fd = listen_socket((struct sockaddr *)&addr, reuse_port)) < 0) {
        rc = l->fd;
        free(l);
        return rc;
    }
    if ((rc = uv_poll_init(net_loop_uv(nl), &l->poll, l->fd))) {
        close(l->fd);
        free(l);
        return rc;
    }
    /* Without it (-1) a backlog is not shed: the listener stays ready until descriptors
     * free up. */
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    l->poll.data = l;
    if ((rc = uv_poll_start(&l->poll, UV_READABLE, on_acceptable))) {
        net_listener_close(l);
        return rc;
    }
    *out = l;
    return 0;
}

void net_listener_set_tls(net_listener_t *l, net_tls_t *tls) {
    l->tls = tls;
}

int net_listener_port(const net_listener_t *l) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len = sizeof ss;
    if (l->stopped || getsockname(l->fd, (struct sockaddr *)&ss, &len))
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void close_spare(net_listener_t *l) {
    if (l->spare_fd >= 0)
        close(l->spare_fd);
    l->spare_fd = -1;
}

static void listener_free_cb(uv_handle_t *h) {
    free(h->data);
}

/* The poll handle is closed first; the descriptor may go right after (libuv stops
 * watching it in uv_close). */
void net_listener_close(net_listener_t *l) {
    if (!l->stopped) {
        uv_close((uv_handle_t *)&l->poll, listener_free_cb);
        close(l->fd);
        close_spare(l);
    } else if (l->handle_closed) {
        free(l);
    } else {
        l->free_pending = true; /* freed by listener_stopped_cb */
    }
}

static void listener_stopped_cb(uv_handle_t *h) {
    net_listener_t *l = h->data;
    l->handle_closed = true;
    if (l->free_pending)
        free(l);
}

/* A classic BPF program for the port's reuseport group that always picks the group's first
 * socket ("return 0"). The kernel appends a joining socket at the end and moves the last
 * one into the slot of one that leaves, so the first is the one that listened first until
 * it stops; an index past the end (none) falls back to the kernel's hash. The program
 * belongs to the group: the last process to attach it sets it, and each attaches the
 * same. */
int net_listener_handover(net_listener_t *l) {
    static struct sock_filter first[] = {{BPF_RET | BPF_K, 0, 0, 0}};
    struct sock_fprog prog = {.len = 1, .filter = first};
    if (setsockopt(l->fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog))
        return -errno;
    return 0;
}

/* What the kernel queued for this listener would be reset by the close, not handed to
 * another listener of the port (SO_REUSEPORT keeps one queue per socket): accepted here
 * first. Connections whose handshake ends between the last accept and the close are
 * still reset; their clients connect again. */
void net_listener_stop(net_listener_t *l) {
    if (l->stopped)
        return;
    int fd;
    while ((fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
        accepted(l, fd);
    l->stopped = true;
    uv_close((uv_handle_t *)&l->poll, listener_stopped_cb);
    close(l->fd);
    l->fd = -1;
    close_spare(l);
}
