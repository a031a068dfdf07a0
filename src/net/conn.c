/* net/conn.c — connections on the loop's epoll set: shared receive buffer, corked sendmsg
 * queues, deadlines.
 *
 * See conn.h for the model. The notes here are about lifetimes and events:
 * - The epoll set is level-triggered: a connection is watched for EPOLLIN while it is
 *   read (not while its output is over the limit) and for EPOLLOUT only while the kernel
 *   has refused some of its output. Whatever one wake-up leaves unread is reported again
 *   on the next, so no handler needs to read until EAGAIN.
 * - A connection is closed exactly once (close_now): ops->on_close runs right away so
 *   upper layers drop their pointers, queued chunks are released, the descriptor is
 *   closed, and the memory is freed at the end of the next flush pass (after the I/O
 *   callbacks), when no batch of epoll events or flush list can still name it. Anything
 *   that reaches a closed connection in between checks CONN_CLOSED first.
 * - Output the kernel does not take at once stays queued (nothing is handed to libuv);
 *   the next EPOLLOUT writes it from where it stopped. */
#include "net/conn.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "net/tls.h"
#include "util/assert.h"
#include "util/log.h"

enum {
    CONN_CLOSING = 1 << 0,    /* graceful close started: no input offered, output drains */
    CONN_SHUTDOWN = 1 << 1,   /* write side shut down; waiting for the peer's EOF */
    CONN_CLOSED = 1 << 2,     /* descriptor closed; memory freed at the next flush pass */
    CONN_TX_FULL = 1 << 3,    /* not reading: queued output over the output limit */
    CONN_IN_FLUSH = 1 << 4,   /* on the loop's flush list */
    CONN_PROCESSING = 1 << 5, /* inside feed(); re-entrant resume must not recurse */
    CONN_WRITING = 1 << 6,    /* the kernel refused output: waiting for EPOLLOUT */
    CONN_RELEASED = 1 << 7,   /* handed to another process: nothing more is read */
};

/* Chunks gathered per sendmsg: all a queue array of the largest class holds. Each
 * delivery is one chunk (ws/conn.h), so a burst to a connection goes in one call. */
#define TX_IOV_MAX (NET_TX_POOLED << (NET_TX_CLASSES - 1))
_Static_assert(TX_IOV_MAX <= IOV_MAX, "sendmsg takes at most IOV_MAX iovecs");
/* What a queued chunk costs beyond its payload: the slot in the queue and, at most, the
 * allocation of a small buffer of its own. Counted so that a flood of tiny answers (pongs)
 * meets the output limit as soon as a few large ones would. */
#define TX_CHUNK_COST (sizeof(net_chunk_t) + 48)
/* Bytes of queue arrays kept for reuse, all sizes together: enough for every connection
 * written in one loop iteration of a busy server (10,000 of the smallest, or 1,000 that
 * each queue 64 deliveries at once), bounded so a burst gives memory back. */
#define TX_POOL_BYTES (2u << 20)
/* The stalled-output check runs every this many deadline sweeps. */
#define STALL_SWEEPS 4
#define RX_HARD_LIMIT (64u << 20) /* protocols bound their units far below this */
/* Events taken from the epoll set per wake-up; the rest are reported on the next. */
#define EVENT_BATCH 512

/* A pooled array: its first chunk's place holds the link. */
typedef union tx_free {
    union tx_free *next;
    net_chunk_t chunk;
} tx_free_t;

struct net_loop {
    uv_loop_t *loop;
    int epfd;                   /* every connection's descriptor */
    uv_poll_t epoll;            /* watches epfd; referenced while connections exist */
    uv_check_t flush_check;     /* after I/O callbacks */
    uv_prepare_t flush_prepare; /* after timers and close callbacks, before blocking */
    uv_timer_t sweep_timer;
    net_conn_t *flush_head;
    net_dl_t deadlines;                 /* sentinel of the circular deadline list */
    net_conn_t *all;                    /* every open connection */
    net_conn_t *dead;                   /* closed connections waiting to be freed */
    size_t conn_count;                  /* open and dead */
    tx_free_t *tx_pool[NET_TX_CLASSES]; /* free queue arrays by size class */
    size_t tx_pool_bytes;
    unsigned nhooks;
    struct {
        void (*fn)(void *);
        void *arg;
    } hooks[NET_LOOP_MAX_HOOKS];
    net_loop_config_t cfg;
    size_t writing;          /* connections waiting for EPOLLOUT (their output is stuck) */
    net_loop_stats_t totals; /* its counters (the queued bytes are summed when asked) */
    unsigned sweeps;
    bool closing; /* net_loop_close called: close the handles once no connection is left */
    uint8_t rbuf[NET_READ_BUFFER_SIZE];
};

static void flush_all(net_loop_t *nl);
static void flush_check_cb(uv_check_t *h);
static void flush_prepare_cb(uv_prepare_t *h);
static void sweep(uv_timer_t *t);
static void on_events(uv_poll_t *h, int status, int events);
static void close_now(net_conn_t *c);
static void conn_flush(net_conn_t *c);

void net_loop_config_defaults(net_loop_config_t *cfg) {
    *cfg = (net_loop_config_t){.output_limit = 1u << 20, .send_timeout = 60000};
}

int net_loop_configure(net_loop_t *nl, const net_loop_config_t *cfg) {
    if (cfg->output_limit == 0 || cfg->send_timeout == 0)
        return -EINVAL;
    nl->cfg = *cfg;
    return 0;
}

net_loop_t *net_loop_new(uv_loop_t *loop) {
    net_loop_t *nl = calloc(1, sizeof *nl);
    if (!nl)
        return NULL;
    nl->loop = loop;
    net_loop_config_defaults(&nl->cfg);
    nl->deadlines.next = nl->deadlines.prev = &nl->deadlines;
    nl->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (nl->epfd < 0) {
        LOG_ERROR("net", "epoll_create1: %s", strerror(errno));
        free(nl);
        return NULL;
    }
    int rc = uv_poll_init(loop, &nl->epoll, nl->epfd);
    if (rc) {
        LOG_ERROR("net", "loop handles: %s", uv_strerror(rc));
        close(nl->epfd);
        free(nl);
        return NULL;
    }
    /* nl is in the loop's handle queue from here on, so these cannot be undone; libuv's
     * init of them only fills their structs and cannot fail. */
    if (uv_check_init(loop, &nl->flush_check) || uv_prepare_init(loop, &nl->flush_prepare) ||
        uv_timer_init(loop, &nl->sweep_timer))
        abort();
    nl->epoll.data = nl;
    nl->flush_check.data = nl;
    nl->flush_prepare.data = nl;
    nl->sweep_timer.data = nl;
    if ((rc = uv_poll_start(&nl->epoll, UV_READABLE, on_events)) ||
        (rc = uv_check_start(&nl->flush_check, flush_check_cb)) ||
        (rc = uv_prepare_start(&nl->flush_prepare, flush_prepare_cb)) ||
        (rc = uv_timer_start(&nl->sweep_timer, sweep, NET_SWEEP_MS, NET_SWEEP_MS))) {
        LOG_ERROR("net", "loop handles: %s", uv_strerror(rc));
    }
    /* None of these should keep the loop alive on its own; the epoll handle does while
     * connections are open, as their own handles would. */
    uv_unref((uv_handle_t *)&nl->epoll);
    uv_unref((uv_handle_t *)&nl->flush_check);
    uv_unref((uv_handle_t *)&nl->flush_prepare);
    uv_unref((uv_handle_t *)&nl->sweep_timer);
    return nl;
}

uv_loop_t *net_loop_uv(net_loop_t *nl) {
    return nl->loop;
}

int net_loop_on_flush(net_loop_t *nl, void (*fn)(void *), void *arg) {
    if (nl->nhooks == NET_LOOP_MAX_HOOKS)
        return -ENOSPC;
    nl->hooks[nl->nhooks].fn = fn;
    nl->hooks[nl->nhooks].arg = arg;
    nl->nhooks++;
    return 0;
}

void net_loop_off_flush(net_loop_t *nl, void (*fn)(void *), void *arg) {
    for (unsigned i = 0; i < nl->nhooks; i++) {
        if (nl->hooks[i].fn == fn && nl->hooks[i].arg == arg) {
            memmove(&nl->hooks[i], &nl->hooks[i + 1], (nl->nhooks - i - 1) * sizeof nl->hooks[0]);
            nl->nhooks--;
            return;
        }
    }
}

void net_loop_stats(const net_loop_t *nl, net_loop_stats_t *out) {
    *out = nl->totals;
    out->queued_bytes = 0;
    for (const net_conn_t *c = nl->all; c; c = c->all_next)
        out->queued_bytes += c->tx_bytes;
}

size_t net_loop_conn_count(const net_loop_t *nl) {
    return nl->conn_count;
}

void net_loop_close_conns(net_loop_t *nl) {
    for (net_conn_t *c = nl->all; c; c = c->all_next)
        net_conn_close(c);
}

/* close_now moves a connection off the list: the next one is taken first. */
void net_loop_abort_conns(net_loop_t *nl) {
    for (net_conn_t *c = nl->all, *next; c; c = next) {
        next = c->all_next;
        close_now(c);
    }
}

static void close_handles(net_loop_t *nl) {
    uv_close((uv_handle_t *)&nl->epoll, NULL);
    uv_close((uv_handle_t *)&nl->flush_check, NULL);
    uv_close((uv_handle_t *)&nl->flush_prepare, NULL);
    uv_close((uv_handle_t *)&nl->sweep_timer, NULL);
}

/* Connections still closing need the flush and the deadline sweep (their lingering
 * close is bounded by it), so the handles go only after the last connection. */
void net_loop_close(net_loop_t *nl) {
    nl->closing = true;
    if (nl->conn_count == 0)
        close_handles(nl);
}

static void conn_free(net_conn_t *c);

void net_loop_free(net_loop_t *nl) {
    while (nl->dead) {
        net_conn_t *c = nl->dead;
        nl->dead = c->all_next;
        conn_free(c);
    }
    for (unsigned k = 0; k < NET_TX_CLASSES; k++) {
        while (nl->tx_pool[k]) {
            tx_free_t *t = nl->tx_pool[k];
            nl->tx_pool[k] = t->next;
            free(t);
        }
    }
    if (close(nl->epfd))
        LOG_DEBUG("net", "closing the epoll set: %s", strerror(errno));
    free(nl);
}

/* ---- the epoll set ---- */

/* What c should be watched for now. */
static uint32_t wanted_events(const net_conn_t *c) {
    uint32_t ev = 0;
    if (!(c->flags & (CONN_TX_FULL | CONN_RELEASED)))
        ev |= EPOLLIN;
    if (c->flags & CONN_WRITING)
        ev |= EPOLLOUT;
    return ev;
}

/* Brings the epoll set up to date with c's flags (one epoll_ctl, only on a change).
 * Returns 0, or -1 after closing c. */
static int update_events(net_conn_t *c) {
    uint32_t ev = wanted_events(c);
    if (ev == c->events || (c->flags & CONN_CLOSED))
        return 0;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(c->nl->epfd, EPOLL_CTL_MOD, c->fd, &e)) {
        LOG_WARN("net", "epoll_ctl: %s", strerror(errno));
        close_now(c);
        return -1;
    }
    c->events = ev;
    return 0;
}

/* ---- output queue arrays ---- */

_Static_assert(sizeof(tx_free_t) == sizeof(net_chunk_t), "the link takes a chunk's place");

static size_t tx_class_bytes(unsigned k) {
    return ((size_t)NET_TX_POOLED << k) * sizeof(net_chunk_t);
}

/* The class of an array of cap chunks (a power of two times NET_TX_POOLED); classes from
 * NET_TX_CLASSES on are not pooled. */
static unsigned tx_class_of(uint32_t cap) {
    return (unsigned)(__builtin_ctz(cap) - __builtin_ctz(NET_TX_POOLED));
}

/* An array of class k (< NET_TX_CLASSES): from its pool, or new. NULL: out of memory. */
static net_chunk_t *tx_array_get(net_loop_t *nl, unsigned k) {
    tx_free_t *t = nl->tx_pool[k];
    if (!t)
        return malloc(tx_class_bytes(k));
    nl->tx_pool[k] = t->next;
    nl->tx_pool_bytes -= tx_class_bytes(k);
    return &t->chunk;
}

/* Gives an array of cap chunks back: to its pool when it is of a pooled class and the
 * pools have room, else to malloc. */
static void tx_array_free(net_loop_t *nl, net_chunk_t *a, uint32_t cap) {
    unsigned k = tx_class_of(cap);
    if (k < NET_TX_CLASSES && nl->tx_pool_bytes + tx_class_bytes(k) <= TX_POOL_BYTES) {
        tx_free_t *t = (tx_free_t *)a;
        t->next = nl->tx_pool[k];
        nl->tx_pool[k] = t;
        nl->tx_pool_bytes += tx_class_bytes(k);
    } else {
        free(a);
    }
}

/* Gives c's queue array back once nothing is queued (used: the chunks it held), and
 * picks the class the next queue starts with. */
static void tx_array_put(net_conn_t *c, uint32_t used) {
    if (!c->tx)
        return;
    unsigned k = tx_class_of(c->tx_cap);
    if (k >= NET_TX_CLASSES)
        k = NET_TX_CLASSES - 1;
    if (k > 0 && used <= c->tx_cap / 4)
        k--;
    c->tx_class = (uint8_t)k;
    tx_array_free(c->nl, c->tx, c->tx_cap);
    c->tx = NULL;
    c->tx_cap = 0;
}

/* ---- deadlines ---- */

static net_conn_t *conn_of_dl(net_dl_t *dl) {
    return (net_conn_t *)((char *)dl - offsetof(net_conn_t, dl));
}

static void dl_unlink(net_conn_t *c) {
    if (!c->dl.next)
        return;
    c->dl.prev->next = c->dl.next;
    c->dl.next->prev = c->dl.prev;
    c->dl.next = c->dl.prev = NULL;
}

static void dl_push(net_dl_t *head, net_conn_t *c) {
    c->dl.prev = head->prev;
    c->dl.next = head;
    head->prev->next = &c->dl;
    head->prev = &c->dl;
}

void net_conn_set_deadline(net_conn_t *c, uint64_t ms) {
    dl_unlink(c);
    c->deadline = 0;
    if (ms == 0 || (c->flags & CONN_CLOSED))
        return;
    c->deadline = uv_now(c->nl->loop) + ms;
    dl_push(&c->nl->deadlines, c);
}

/* Memory held by the connection's queued output. */
static size_t tx_cost(const net_conn_t *c) {
    return c->tx_bytes + (size_t)(c->tx_len - c->tx_head) * TX_CHUNK_COST;
}

/* Closes connections whose output the kernel has not taken for send_timeout: no EPOLLOUT
 * came in that many checks in a row. */
static void sweep_stalled(net_loop_t *nl) {
    uint32_t limit = nl->cfg.send_timeout / (STALL_SWEEPS * NET_SWEEP_MS);
    if (limit == 0)
        limit = 1;
    if (limit > UINT16_MAX - 1)
        limit = UINT16_MAX - 1; /* stall_checks is 16 bits: about 18 hours */
    for (net_conn_t *c = nl->all, *next; c && nl->writing; c = next) {
        next = c->all_next;
        if (!(c->flags & CONN_WRITING) || ++c->stall_checks <= limit)
            continue;
        LOG_LIMITED(LOG_LEVEL_INFO, "net",
                    "output stalled for %u ms (%zu bytes queued): closing the connection",
                    nl->cfg.send_timeout, tx_cost(c));
        nl->totals.stalled_closed++;
        close_now(c);
    }
}

static void sweep(uv_timer_t *t) {
    net_loop_t *nl = t->data;
    uint64_t now = uv_now(nl->loop);
    if (++nl->sweeps % STALL_SWEEPS == 0 && nl->writing)
        sweep_stalled(nl);
    /* Move the expired ones to a local list first: a timeout handler may close or
     * re-arm other connections, which unlinks them from whichever list holds them. */
    net_dl_t expired = {&expired, &expired};
    for (net_dl_t *d = nl->deadlines.next, *next; d != &nl->deadlines; d = next) {
        next = d->next;
        net_conn_t *c = conn_of_dl(d);
        if (c->deadline <= now) {
            dl_unlink(c);
            dl_push(&expired, c);
        }
    }
    while (expired.next != &expired) {
        net_conn_t *c = conn_of_dl(expired.next);
        dl_unlink(c);
        c->deadline = 0;
        if ((c->flags & CONN_CLOSING) || !c->ops->on_timeout)
            close_now(c);
        else
            c->ops->on_timeout(c);
    }
}

/* ---- writing ---- */

static void tx_release(net_conn_t *c, uint32_t from, uint32_t to) {
    for (uint32_t i = from; i < to; i++)
        ref_release(c->tx[i].owner);
}

static void mark_dirty(net_conn_t *c) {
    if (c->flags & CONN_IN_FLUSH)
        return;
    c->flags |= CONN_IN_FLUSH;
    c->flush_next = c->nl->flush_head;
    c->nl->flush_head = c;
}

static void drain_rx(net_conn_t *c);

/* Output over the limit: stop reading the peer until half of it is written. The epoll
 * set is told by the flush c is queued for (conn_flush), not here: a failure there closes
 * c, and net_conn_write must not close (conn.h). */
static void tx_check_full(net_conn_t *c) {
    if ((c->flags & (CONN_TX_FULL | CONN_CLOSING | CONN_CLOSED)) ||
        tx_cost(c) <= c->nl->cfg.output_limit)
        return;
    c->flags |= CONN_TX_FULL;
    LOG_DEBUG("net", "%zu bytes of output queued: not reading until it drains", tx_cost(c));
}

static void tx_check_resume(net_conn_t *c) {
    if (!(c->flags & CONN_TX_FULL) || (c->flags & CONN_CLOSED) ||
        tx_cost(c) > c->nl->cfg.output_limit / 2)
        return;
    c->flags &= ~CONN_TX_FULL;
    if (update_events(c) || (c->flags & CONN_CLOSING))
        return; /* closing: input is read and discarded already */
    if (!(c->flags & CONN_PROCESSING) && c->rx)
        drain_rx(c);
}

/* Makes room for one more chunk in c's full (or absent) queue array. Returns 0 or
 * -ENOMEM. */
static int tx_grow(net_conn_t *c) {
    if (!c->tx) {
        if (!(c->tx = tx_array_get(c->nl, c->tx_class)))
            return -ENOMEM;
        c->tx_cap = (uint32_t)NET_TX_POOLED << c->tx_class;
        return 0;
    }
    if (c->tx_head >= c->tx_cap / 2) {
        /* At least half of it written: moving the rest down costs less than what was
         * written, so a slow reader's queue is not moved once per chunk. */
        memmove(c->tx, c->tx + c->tx_head, (c->tx_len - c->tx_head) * sizeof *c->tx);
        c->tx_len -= c->tx_head;
        c->tx_head = 0;
        return 0;
    }
    uint32_t cap = c->tx_cap * 2;
    net_chunk_t *tx;
    if (tx_class_of(cap) < NET_TX_CLASSES) {
        if (!(tx = tx_array_get(c->nl, tx_class_of(cap))))
            return -ENOMEM;
        memcpy(tx, c->tx, c->tx_len * sizeof *tx);
        tx_array_free(c->nl, c->tx, c->tx_cap);
    } else if (!(tx = realloc(c->tx, cap * sizeof *tx))) {
        return -ENOMEM;
    }
    c->tx = tx;
    c->tx_cap = cap;
    return 0;
}

int net_conn_write(net_conn_t *c, ref_t *owner, const void *base, size_t len) {
    if (c->flags & (CONN_CLOSED | CONN_SHUTDOWN))
        return -EPIPE;
    if (len == 0)
        return 0;
    if (c->tx_len == c->tx_cap && tx_grow(c))
        return -ENOMEM;
    c->tx[c->tx_len++] = (net_chunk_t){ref_retain(owner), base, len};
    c->tx_bytes += len;
    mark_dirty(c);
    tx_check_full(c);
    return 0;
}

int net_conn_write_copy(net_conn_t *c, const void *data, size_t len) {
    if (len == 0)
        return 0;
    rcbuf_t *b = rcbuf_new(data, len);
    if (!b)
        return -ENOMEM;
    int rc = net_conn_write(c, &b->ref, b->data, len);
    ref_release(&b->ref);
    return rc;
}

/* Writes what the kernel takes of iov now (MSG_NOSIGNAL: a peer gone is an error here,
 * not a signal). One chunk, the usual case of a fan-out to many connections, goes with
 * send, which spares the kernel importing a message header and an iovec array (a few %
 * of a small write's cost). Returns the bytes taken (counted in the loop's bytes_out;
 * the caller drops them from its queue), or -1 after closing c. */
static ssize_t write_some(net_conn_t *c, struct iovec *iov, size_t n) {
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
    ssize_t w;
    do
        w = n == 1 ? send(c->fd, iov->iov_base, iov->iov_len, MSG_NOSIGNAL | MSG_DONTWAIT)
                   : sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (w < 0 && errno == EINTR);
    if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        LOG_DEBUG("net", "write failed: %s", strerror(errno));
        close_now(c);
        return -1;
    }
    c->nl->totals.bytes_out += (size_t)w;
    c->nl->totals.write_calls++;
    return w;
}

/* The kernel took part of the output: the rest waits for EPOLLOUT. Returns 0, or -1
 * after closing c. */
static int wait_writable(net_conn_t *c) {
    c->flags |= CONN_WRITING;
    c->nl->writing++;
    c->stall_checks = 0;
    return update_events(c);
}

/* EPOLLOUT: the kernel has room again (progress, for the stall check). */
static void on_writable(net_conn_t *c) {
    if (!(c->flags & CONN_WRITING))
        return;
    c->flags &= ~CONN_WRITING;
    c->nl->writing--;
    conn_flush(c);
    update_events(c); /* stops watching EPOLLOUT once everything is written */
}

static void start_shutdown(net_conn_t *c) {
    c->flags |= CONN_SHUTDOWN;
    if (shutdown(c->fd, SHUT_WR)) {
        LOG_DEBUG("net", "shutdown: %s", strerror(errno));
        close_now(c);
    }
}

/* After the queue is written: the idle connection gives its memory back, reading
 * resumes if it was stopped, and a graceful close goes on. */
static void flushed(net_conn_t *c) {
    tx_array_put(c, c->tx_len);
    c->tx_head = c->tx_len = 0;
    tx_check_resume(c);
    if (c->flags & CONN_CLOSED)
        return;
    if ((c->flags & CONN_CLOSING) && !(c->flags & CONN_SHUTDOWN))
        start_shutdown(c);
}

/* TLS output: the queued plaintext is encrypted a batch at a time, only as fast as the
 * kernel takes the ciphertext, so a slow reader's queue stays shared plaintext (encoded
 * packets queued on many connections) rather than ciphertext of its own. */
#define TLS_WIRE_BATCH (4 * NET_TLS_RECORD)

/* Copies queued chunks into rec, up to a record, so that a frame header and its payload
 * (two chunks) go in one TLS record: one encryption and one record's overhead rather
 * than two. Returns the bytes copied. */
static size_t tls_gather(const net_conn_t *c, uint8_t rec[NET_TLS_RECORD]) {
    size_t n = 0;
    for (uint32_t i = c->tx_head; i < c->tx_len && n < NET_TLS_RECORD; i++) {
        size_t take = c->tx[i].len < NET_TLS_RECORD - n ? c->tx[i].len : NET_TLS_RECORD - n;
        memcpy(rec + n, c->tx[i].base, take);
        n += take;
    }
    return n;
}

/* Drops the first n queued bytes (written or encrypted), releasing the chunks done. */
static void tx_consume(net_conn_t *c, size_t n) {
    c->tx_bytes -= n;
    while (n > 0) {
        net_chunk_t *ch = &c->tx[c->tx_head];
        if (ch->len <= n) {
            n -= ch->len;
            ref_release(ch->owner);
            c->tx_head++;
        } else {
            ch->base += n;
            ch->len -= n;
            n = 0;
        }
    }
}

static void tls_flush(net_conn_t *c) {
    net_tls_conn_t *tc = c->tls;
    buf_t *out = &tc->out;
    uint8_t record[NET_TLS_RECORD];
    for (;;) {
        while (tc->established && c->tx_head < c->tx_len && out->len < TLS_WIRE_BATCH) {
            size_t before = out->len;
            size_t n = tls_gather(c, record);
            int rc = net_tls_conn_write(tc, record, n);
            if (rc < 0) {
                LOG_LIMITED(LOG_LEVEL_WARN, "net", "TLS write: %s", strerror(-rc));
                close_now(c);
                return;
            }
            c->tx_bytes += out->len - before;
            tx_consume(c, (size_t)rc);
        }
        if (out->len == 0 && c->tx_head == c->tx_len && (c->flags & CONN_CLOSING) &&
            !tc->notified) {
            size_t before = out->len;
            net_tls_conn_shutdown(tc);
            c->tx_bytes += out->len - before;
        }
        if (out->len == 0)
            break;
        struct iovec iov = {out->data, out->len};
        ssize_t w = write_some(c, &iov, 1);
        if (w < 0)
            return;
        buf_consume(out, (size_t)w);
        c->tx_bytes -= (size_t)w;
        if (out->len == 0)
            continue;
        /* The kernel buffer is full: the rest waits in out, and what OpenSSL writes
         * meanwhile (a handshake answer) is appended to it. */
        if (wait_writable(c) == 0)
            tx_check_resume(c);
        return;
    }
    buf_free(out);
    if (c->tx_head < c->tx_len)
        return; /* the handshake is not done: the answer waits for it */
    flushed(c);
}

/* Writes as much as the kernel takes now; the rest waits for EPOLLOUT. */
static void conn_flush(net_conn_t *c) {
    if (c->flags & CONN_CLOSED)
        return;
    /* Over the output limit since the last flush (tx_check_full): stop reading now. */
    if ((c->flags & CONN_TX_FULL) && (c->events & EPOLLIN) && update_events(c))
        return;
    if (c->flags & CONN_WRITING)
        return;
    if (c->tls) {
        tls_flush(c);
        return;
    }
    while (c->tx_head < c->tx_len) {
        struct iovec iov[TX_IOV_MAX];
        size_t n = 0, total = 0;
        for (uint32_t i = c->tx_head; i < c->tx_len && n < TX_IOV_MAX; i++, n++) {
            iov[n] = (struct iovec){(void *)c->tx[i].base, c->tx[i].len};
            total += c->tx[i].len;
        }
        ssize_t w = write_some(c, iov, n);
        if (w < 0)
            return;
        tx_consume(c, (size_t)w);
        if ((size_t)w == total)
            continue;
        if (wait_writable(c) == 0)
            tx_check_resume(c);
        return;
    }
    flushed(c);
}

/* Flushing runs twice per iteration: after the I/O callbacks (check) and before the
 * loop blocks (prepare), so output queued by timers or close callbacks does not wait
 * for the next wake-up. An empty pass costs a few loads. */
static void flush_check_cb(uv_check_t *h) {
    flush_all(h->data);
}

static void flush_prepare_cb(uv_prepare_t *h) {
    flush_all(h->data);
}

static void free_dead(net_loop_t *nl);

static void flush_all(net_loop_t *nl) {
    for (unsigned i = 0; i < nl->nhooks; i++)
        nl->hooks[i].fn(nl->hooks[i].arg);
    while (nl->flush_head) {
        net_conn_t *c = nl->flush_head;
        nl->flush_head = c->flush_next;
        c->flags &= ~CONN_IN_FLUSH;
        conn_flush(c);
    }
    free_dead(nl);
}

/* ---- reading ---- */

/* Offers data to the protocol until it stops consuming. Returns bytes consumed. */
static size_t feed(net_conn_t *c, uint8_t *data, size_t len) {
    size_t off = 0;
    c->flags |= CONN_PROCESSING;
    while (off < len && !(c->flags & (CONN_CLOSING | CONN_CLOSED | CONN_TX_FULL))) {
        ssize_t r = c->ops->on_data(c, data + off, len - off);
        if (r < 0) {
            close_now(c);
            break;
        }
        if (r == 0)
            break;
        off += (size_t)r;
    }
    c->flags &= ~CONN_PROCESSING;
    return off;
}

static void rx_free(net_conn_t *c) {
    if (!c->rx)
        return;
    buf_free(c->rx);
    free(c->rx);
    c->rx = NULL;
}

static void keep_rest(net_conn_t *c, const uint8_t *data, size_t len) {
    if (len == 0 || (c->flags & CONN_CLOSED))
        return;
    if (!c->rx && !(c->rx = calloc(1, sizeof *c->rx))) {
        LOG_ERROR("net", "out of memory keeping partial input; closing connection");
        close_now(c);
        return;
    }
    if (c->rx->len + len > RX_HARD_LIMIT || buf_append(c->rx, data, len)) {
        LOG_LIMITED(LOG_LEVEL_WARN, "net", "input buffer limit reached; closing connection");
        close_now(c);
    }
}

/* Invariant: c->rx is NULL or holds bytes. */
static void drain_rx(net_conn_t *c) {
    size_t used = feed(c, c->rx->data, c->rx->len);
    if (c->flags & CONN_CLOSED)
        return;
    buf_consume(c->rx, used);
    if (c->rx->len == 0)
        rx_free(c);
}

/* Input for the protocol (decrypted already, with TLS). */
static void plain_input(net_conn_t *c, uint8_t *data, size_t len) {
    if (c->rx) {
        keep_rest(c, data, len);
        if (!(c->flags & (CONN_CLOSED | CONN_TX_FULL)))
            drain_rx(c);
        return;
    }
    size_t used = feed(c, data, len);
    if (!(c->flags & CONN_CLOSING))
        keep_rest(c, data + used, len - used);
}

static int tls_plain(void *arg, uint8_t *data, size_t len) {
    net_conn_t *c = arg;
    plain_input(c, data, len);
    return (c->flags & (CONN_CLOSING | CONN_CLOSED)) != 0;
}

static void tls_input(net_conn_t *c, const uint8_t *data, size_t len) {
    net_tls_conn_t *tc = c->tls;
    bool was = tc->established;
    size_t before = tc->out.len;
    int rc = net_tls_conn_read(tc, data, len, tls_plain, c);
    if (c->flags & CONN_CLOSED)
        return;
    if (!was && tc->established)
        c->nl->totals.tls_handshakes++;
    if (rc == -EPROTO) {
        c->nl->totals.tls_errors++;
        /* The alert OpenSSL wrote says why, if the kernel takes it at once. */
        if (tc->out.len && send(c->fd, tc->out.data, tc->out.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            LOG_DEBUG("net", "the TLS alert was not sent");
    }
    if (rc) {
        close_now(c);
        return;
    }
    if (tc->out.len > before) {
        c->tx_bytes += tc->out.len - before; /* queued until written, as plaintext is */
        mark_dirty(c);
    }
}

/* EPOLLIN (or a hang-up or error, which read reports). One read per wake-up: what is
 * left is reported again by the level-triggered set. */
static void on_readable(net_conn_t *c) {
    net_loop_t *nl = c->nl;
    ssize_t n;
    do
        n = read(c->fd, nl->rbuf, sizeof nl->rbuf);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        if (n < 0)
            LOG_DEBUG("net", "read: %s", strerror(errno));
        close_now(c);
        return;
    }
    if (c->flags & CONN_CLOSING)
        return; /* lingering: discard until the peer closes */
    nl->totals.bytes_in += (size_t)n;
    if (c->tls)
        tls_input(c, nl->rbuf, (size_t)n);
    else
        plain_input(c, nl->rbuf, (size_t)n);
}

/* The epoll set is readable: its ready connections' events, a batch at a time. A
 * connection closed by an earlier event of the batch is still in memory (freed at the
 * next flush pass) and is skipped. */
static void on_events(uv_poll_t *h, int status, int events) {
    net_loop_t *nl = h->data;
    if (status < 0) {
        LOG_LIMITED(LOG_LEVEL_ERROR, "net", "epoll set: %s", uv_strerror(status));
        return;
    }
    struct epoll_event ev[EVENT_BATCH];
    int n;
    do
        n = epoll_wait(nl->epfd, ev, EVENT_BATCH, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        LOG_LIMITED(LOG_LEVEL_ERROR, "net", "epoll_wait: %s", strerror(errno));
        return;
    }
    for (int i = 0; i < n; i++) {
        net_conn_t *c = ev[i].data.ptr;
        uint32_t e = ev[i].events;
        if ((e & EPOLLOUT) && !(c->flags & CONN_CLOSED))
            on_writable(c);
        if (c->flags & CONN_CLOSED)
            continue;
        if (c->events & EPOLLIN) {
            if (e & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(c);
        } else if (e & (EPOLLHUP | EPOLLERR)) {
            /* Not reading (output over the limit): the peer is gone, and its output with it. */
            close_now(c);
        }
    }
}

void net_conn_resume(net_conn_t *c) {
    if (c->flags & (CONN_CLOSED | CONN_CLOSING | CONN_TX_FULL))
        return;
    if (c->flags & CONN_PROCESSING)
        return; /* the feed loop on the stack carries on */
    if (c->rx)
        drain_rx(c);
}

void net_conn_set_ops(net_conn_t *c, const net_conn_ops_t *ops) {
    c->ops = ops;
}

/* ---- closing ---- */

static void conn_free(net_conn_t *c) {
    rx_free(c);
    tx_array_put(c, 0);
    net_tls_conn_free(c->tls);
    free(c);
}

static void free_dead(net_loop_t *nl) {
    while (nl->dead) {
        net_conn_t *c = nl->dead;
        nl->dead = c->all_next;
        conn_free(c);
        if (--nl->conn_count == 0) {
            uv_unref((uv_handle_t *)&nl->epoll);
            if (nl->closing)
                close_handles(nl);
        }
    }
}

static void close_now(net_conn_t *c) {
    if (c->flags & CONN_CLOSED)
        return;
    net_loop_t *nl = c->nl;
    if (c->flags & CONN_WRITING)
        nl->writing--;
    c->flags |= CONN_CLOSED;
    dl_unlink(c);
    c->ops->on_close(c);
    tx_release(c, c->tx_head, c->tx_len);
    c->tx_head = c->tx_len = 0;
    c->tx_bytes = 0;
    /* Out of the set first: closing the descriptor is not enough while another copy of
     * the socket is open (a hand-off's, in the process that sent or relayed it), and the
     * set would go on reporting it for memory freed here. */
    if (!(c->flags & CONN_RELEASED) && epoll_ctl(nl->epfd, EPOLL_CTL_DEL, c->fd, NULL))
        LOG_DEBUG("net", "epoll_ctl: %s", strerror(errno));
    if (close(c->fd))
        LOG_DEBUG("net", "close: %s", strerror(errno));
    c->fd = -1;
    if (c->all_prev)
        c->all_prev->all_next = c->all_next;
    else
        nl->all = c->all_next;
    if (c->all_next)
        c->all_next->all_prev = c->all_prev;
    c->all_prev = NULL;
    c->all_next = nl->dead;
    nl->dead = c;
}

void net_conn_close(net_conn_t *c) {
    if (c->flags & (CONN_CLOSING | CONN_CLOSED))
        return;
    c->flags |= CONN_CLOSING;
    net_conn_set_deadline(c, NET_LINGER_MS);
    if (c->flags & CONN_TX_FULL) {
        c->flags &= ~CONN_TX_FULL;
        if (update_events(c))
            return;
    }
    mark_dirty(c);
}

void net_conn_abort(net_conn_t *c) {
    close_now(c);
}

static ssize_t released_data(net_conn_t *c, uint8_t *data, size_t len) {
    return (ssize_t)len;
}

static void released_close(net_conn_t *c) {}

static const net_conn_ops_t released_ops = {released_data, NULL, released_close};

int net_conn_release(net_conn_t *c) {
    PARLEY_ASSERT(!(c->flags & CONN_CLOSED));
    if (c->tls)
        return -EPROTO; /* its TLS state cannot go with it */
    dl_unlink(c);
    c->ops = &released_ops;
    c->flags |= CONN_RELEASED;
    /* Out of the set for good: the copy sent away must not report here. */
    if (epoll_ctl(c->nl->epfd, EPOLL_CTL_DEL, c->fd, NULL))
        LOG_DEBUG("net", "epoll_ctl: %s", strerror(errno));
    c->events = 0;
    return c->fd;
}

int net_conn_peer(net_conn_t *c, char *out, size_t size) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len = sizeof ss;
    if (getpeername(c->fd, (struct sockaddr *)&ss, &len))
        return -errno;
    if (ss.ss_family == AF_INET6)
        return uv_ip6_name((struct sockaddr_in6 *)&ss, out, size);
    if (ss.ss_family == AF_INET)
        return uv_ip4_name((struct sockaddr_in *)&ss, out, size);
    return -EAFNOSUPPORT;
}

/* ---- opening ---- */

net_conn_t *net_conn_open(net_loop_t *nl, int fd, size_t ext_size, const net_conn_ops_t *ops,
                          net_tls_t *tls) {
    net_conn_t *c = calloc(1, sizeof *c + ext_size);
    if (!c) {
        LOG_ERROR("net", "out of memory accepting a connection");
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->nl = nl;
    c->ops = ops;
    c->events = EPOLLIN;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
    if ((tls && !(c->tls = net_tls_conn_new(tls))) || epoll_ctl(nl->epfd, EPOLL_CTL_ADD, fd, &e)) {
        LOG_LIMITED(LOG_LEVEL_WARN, "net", "accept: %s",
                    c->tls || !tls ? strerror(errno) : "no TLS state");
        net_tls_conn_free(c->tls);
        close(fd);
        free(c);
        return NULL;
    }
    if (nl->conn_count++ == 0)
        uv_ref((uv_handle_t *)&nl->epoll);
    c->all_next = nl->all;
    if (c->all_next)
        c->all_next->all_prev = c;
    nl->all = c;
    return c;
}

void net_conn_feed_first(net_conn_t *c, uint8_t *data, size_t len) {
    if (len && !(c->flags & (CONN_CLOSED | CONN_CLOSING))) {
        size_t used = feed(c, data, len);
        if (!(c->flags & CONN_CLOSING))
            keep_rest(c, data + used, len - used);
    }
}
