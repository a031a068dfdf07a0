/* net/conn.c — libuv TCP glue: shared receive buffer, corked writev queues, deadlines.
 *
 * See conn.h for the model. The notes here are about lifetimes:
 * - A connection is closed exactly once (close_now): ops->on_close runs right away so
 *   upper layers drop their pointers, queued chunks are released, and the memory is
 *   freed later in uv_close's callback. Anything that reaches a closed connection in
 *   between (a flush, a write callback) checks CONN_CLOSED first.
 * - A write that the kernel does not take at once becomes one uv_write of the remaining
 *   chunks; they stay pinned in the queue (tx_inflight) until its callback. */
#include "net/conn.h"

#include <errno.h>
#include <linux/filter.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/tls.h"
#include "util/assert.h"
#include "util/log.h"

enum {
    CONN_CLOSING = 1 << 0,    /* graceful close started: no input offered, output drains */
    CONN_SHUTDOWN = 1 << 1,   /* write side shut down; waiting for the peer's EOF */
    CONN_CLOSED = 1 << 2,     /* uv_close called */
    CONN_TX_FULL = 1 << 3,    /* not reading: queued output over the output limit */
    CONN_IN_FLUSH = 1 << 4,   /* on the loop's flush list */
    CONN_PROCESSING = 1 << 5, /* inside feed(); re-entrant resume must not recurse */
    CONN_WRITING = 1 << 6,    /* a uv_write is in flight */
};

#define TX_IOV_MAX 64
/* What a queued chunk costs beyond its payload: the slot in the queue and, at most, the
 * allocation of a small buffer of its own. Counted so that a flood of tiny answers (pongs)
 * meets the output limit as soon as a few large ones would. */
#define TX_CHUNK_COST (sizeof(net_chunk_t) + 48)
/* The stalled-output check runs every this many deadline sweeps. */
#define STALL_SWEEPS 4
#define RX_HARD_LIMIT (64u << 20) /* protocols bound their units far below this */

struct net_loop {
    uv_loop_t *loop;
    uv_check_t flush_check;     /* after I/O callbacks */
    uv_prepare_t flush_prepare; /* after timers and close callbacks, before blocking */
    uv_timer_t sweep_timer;
    net_conn_t *flush_head;
    net_dl_t deadlines; /* sentinel of the circular deadline list */
    net_conn_t *all;    /* every open connection */
    size_t conn_count;
    unsigned nhooks;
    struct {
        void (*fn)(void *);
        void *arg;
    } hooks[NET_LOOP_MAX_HOOKS];
    net_loop_config_t cfg;
    size_t writing;          /* connections with a uv_write in flight (their output is stuck) */
    net_loop_stats_t totals; /* its counters (the queued bytes are summed when asked) */
    unsigned sweeps;
    bool rbuf_busy;
    bool closing; /* net_loop_close called: close the handles once no connection is left */
    uint8_t rbuf[NET_READ_BUFFER_SIZE];
};

struct net_listener {
    uv_tcp_t tcp;
    net_loop_t *nl;
    size_t ext_size;
    const net_conn_ops_t *ops;
    net_open_fn on_open;
    void *arg;
    net_tls_t *tls; /* NULL: plain TCP */
    /* net_listener_stop: the socket is closed (or closing), the rest stays for adoption
     * until net_listener_close. */
    bool stopped, handle_closed, free_pending;
};

static void flush_all(net_loop_t *nl);
static void flush_check_cb(uv_check_t *h);
static void flush_prepare_cb(uv_prepare_t *h);
static void sweep(uv_timer_t *t);
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
    int rc = uv_check_init(loop, &nl->flush_check);
    if (rc == 0)
        rc = uv_prepare_init(loop, &nl->flush_prepare);
    if (rc == 0)
        rc = uv_timer_init(loop, &nl->sweep_timer);
    if (rc) {
        LOG_ERROR("net", "loop handles: %s", uv_strerror(rc));
        free(nl);
        return NULL;
    }
    nl->flush_check.data = nl;
    nl->flush_prepare.data = nl;
    nl->sweep_timer.data = nl;
    if ((rc = uv_check_start(&nl->flush_check, flush_check_cb)) ||
        (rc = uv_prepare_start(&nl->flush_prepare, flush_prepare_cb)) ||
        (rc = uv_timer_start(&nl->sweep_timer, sweep, NET_SWEEP_MS, NET_SWEEP_MS))) {
        LOG_ERROR("net", "loop handles: %s", uv_strerror(rc));
    }
    /* None of these should keep the loop alive on its own. */
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

/* A closed connection stays on the list until its handle is closed (conn_free_cb). */
void net_loop_abort_conns(net_loop_t *nl) {
    for (net_conn_t *c = nl->all; c; c = c->all_next)
        close_now(c);
}

static void close_handles(net_loop_t *nl) {
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

void net_loop_free(net_loop_t *nl) {
    free(nl);
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

/* Closes connections whose output the kernel has not taken for send_timeout: their
 * in-flight write made no progress (libuv's write queue did not shrink) in that many
 * checks in a row. */
static void sweep_stalled(net_loop_t *nl) {
    uint32_t limit = nl->cfg.send_timeout / (STALL_SWEEPS * NET_SWEEP_MS);
    if (limit == 0)
        limit = 1;
    if (limit > UINT16_MAX - 1)
        limit = UINT16_MAX - 1; /* stall_checks is 16 bits: about 18 hours */
    for (net_conn_t *c = nl->all; c && nl->writing; c = c->all_next) {
        if ((c->flags & (CONN_WRITING | CONN_CLOSED)) != CONN_WRITING)
            continue;
        uint32_t wq = (uint32_t)c->tcp.write_queue_size;
        if (c->stall_checks == 0 || wq != c->stall_wq) {
            c->stall_wq = wq;
            c->stall_checks = 1;
        } else if (++c->stall_checks > limit) {
            LOG_LIMITED(LOG_LEVEL_INFO, "net",
                        "output stalled for %u ms (%zu bytes queued): closing the connection",
                        nl->cfg.send_timeout, tx_cost(c));
            nl->totals.stalled_closed++;
            close_now(c);
        }
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

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void drain_rx(net_conn_t *c);

/* Output over the limit: stop reading the peer until half of it is written. */
static void tx_check_full(net_conn_t *c) {
    if ((c->flags & (CONN_TX_FULL | CONN_CLOSING | CONN_CLOSED)) ||
        tx_cost(c) <= c->nl->cfg.output_limit)
        return;
    c->flags |= CONN_TX_FULL;
    LOG_DEBUG("net", "%zu bytes of output queued: not reading until it drains", tx_cost(c));
    if (uv_read_stop((uv_stream_t *)&c->tcp))
        close_now(c);
}

static void tx_check_resume(net_conn_t *c) {
    if (!(c->flags & CONN_TX_FULL) || (c->flags & CONN_CLOSED) ||
        tx_cost(c) > c->nl->cfg.output_limit / 2)
        return;
    c->flags &= ~CONN_TX_FULL;
    if (c->flags & CONN_CLOSING)
        return; /* net_conn_close reads (and discards) already */
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb)) {
        close_now(c);
        return;
    }
    if (!(c->flags & CONN_PROCESSING) && c->rx.len)
        drain_rx(c);
}

int net_conn_write(net_conn_t *c, ref_t *owner, const void *base, size_t len) {
    if (c->flags & (CONN_CLOSED | CONN_SHUTDOWN))
        return -EPIPE;
    if (len == 0)
        return 0;
    if (c->tx_len == c->tx_cap) {
        if (c->tx_head > 0 && c->tx_inflight == 0) {
            memmove(c->tx, c->tx + c->tx_head, (c->tx_len - c->tx_head) * sizeof *c->tx);
            c->tx_len -= c->tx_head;
            c->tx_head = 0;
        } else {
            uint32_t cap = c->tx_cap < 8 ? 8 : c->tx_cap * 2;
            bool small = c->tx == c->tx_small;
            net_chunk_t *tx = realloc(small ? NULL : c->tx, cap * sizeof *tx);
            if (!tx)
                return -ENOMEM;
            if (small)
                memcpy(tx, c->tx_small, c->tx_len * sizeof *tx);
            c->tx = tx;
            c->tx_cap = cap;
        }
    }
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

static void shutdown_cb(uv_shutdown_t *req, int status) {
    net_conn_t *c = req->data;
    free(req);
    if (status == UV_ECANCELED)
        return;
    if (status < 0)
        close_now(c);
}

static void start_shutdown(net_conn_t *c) {
    c->flags |= CONN_SHUTDOWN;
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req) {
        close_now(c);
        return;
    }
    req->data = c;
    int rc = uv_shutdown(req, (uv_stream_t *)&c->tcp, shutdown_cb);
    if (rc) {
        free(req);
        close_now(c);
    }
}

static void write_cb(uv_write_t *req, int status) {
    net_conn_t *c = req->data;
    if (c->flags & CONN_CLOSED)
        return;
    c->flags &= ~CONN_WRITING;
    c->nl->writing--;
    c->stall_checks = 0;
    if (c->tls) {
        buf_t *fly = &c->tls->flying;
        c->tx_bytes -= fly->len;
        if (status >= 0)
            c->nl->totals.bytes_out += fly->len;
        buf_free(fly);
        if (status < 0) {
            LOG_DEBUG("net", "write failed: %s", uv_strerror(status));
            close_now(c);
            return;
        }
        conn_flush(c);
        return;
    }
    tx_release(c, c->tx_head, c->tx_head + c->tx_inflight);
    for (uint32_t i = c->tx_head; i < c->tx_head + c->tx_inflight; i++) {
        c->tx_bytes -= c->tx[i].len;
        if (status >= 0)
            c->nl->totals.bytes_out += c->tx[i].len;
    }
    c->tx_head += c->tx_inflight;
    c->tx_inflight = 0;
    if (status < 0) {
        LOG_DEBUG("net", "write failed: %s", uv_strerror(status));
        close_now(c);
        return;
    }
    conn_flush(c);
}

/* Back to the inline array once everything is written. */
static void tx_shrink(net_conn_t *c) {
    if (c->tx != c->tx_small) {
        free(c->tx);
        c->tx = c->tx_small;
        c->tx_cap = NET_TX_SMALL;
    }
}

/* Writes what the kernel takes of bufs now. Returns the bytes taken (counted in the
 * loop's bytes_out; the caller drops them from its queue), or -1 after closing c. */
static ssize_t try_write(net_conn_t *c, const uv_buf_t *bufs, unsigned n) {
    int w = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    if (w == UV_EAGAIN)
        w = 0;
    if (w < 0) {
        LOG_DEBUG("net", "write failed: %s", uv_strerror(w));
        close_now(c);
        return -1;
    }
    c->nl->totals.bytes_out += (size_t)w;
    return w;
}

/* The kernel buffer is full: bufs fly with one uv_write (write_cb). Returns 0, or -1
 * after closing c. */
static int start_write(net_conn_t *c, const uv_buf_t *bufs, unsigned n) {
    if (!c->wreq && !(c->wreq = malloc(sizeof *c->wreq))) {
        close_now(c);
        return -1;
    }
    c->wreq->data = c;
    if (uv_write(c->wreq, (uv_stream_t *)&c->tcp, bufs, n, write_cb)) {
        close_now(c);
        return -1;
    }
    c->flags |= CONN_WRITING;
    c->nl->writing++;
    return 0;
}

/* After the queue is written: the idle connection gives its memory back, reading
 * resumes if it was stopped, and a graceful close goes on. */
static void flushed(net_conn_t *c) {
    c->tx_head = c->tx_len = 0;
    tx_shrink(c);
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
        uv_buf_t b = uv_buf_init((char *)out->data, (unsigned)out->len);
        ssize_t w = try_write(c, &b, 1);
        if (w < 0)
            return;
        buf_consume(out, (size_t)w);
        c->tx_bytes -= (size_t)w;
        if (out->len == 0)
            continue;
        /* The kernel buffer is full: the rest flies with one uv_write, and what OpenSSL
         * writes meanwhile (a handshake answer) collects in out. */
        tc->flying = *out;
        *out = (buf_t){0};
        b = uv_buf_init((char *)tc->flying.data, (unsigned)tc->flying.len);
        if (start_write(c, &b, 1) == 0)
            tx_check_resume(c);
        return;
    }
    buf_free(out);
    if (c->tx_head < c->tx_len)
        return; /* the handshake is not done: the answer waits for it */
    flushed(c);
}

/* Writes as much as the kernel takes now; hands the rest to one uv_write. */
static void conn_flush(net_conn_t *c) {
    if (c->flags & (CONN_CLOSED | CONN_WRITING))
        return;
    if (c->tls) {
        tls_flush(c);
        return;
    }
    while (c->tx_head < c->tx_len) {
        uv_buf_t iov[TX_IOV_MAX];
        uint32_t n = 0;
        size_t total = 0;
        for (uint32_t i = c->tx_head; i < c->tx_len && n < TX_IOV_MAX; i++, n++) {
            iov[n] = uv_buf_init((char *)c->tx[i].base, (unsigned)c->tx[i].len);
            total += c->tx[i].len;
        }
        ssize_t w = try_write(c, iov, n);
        if (w < 0)
            return;
        tx_consume(c, (size_t)w);
        if ((size_t)w == total)
            continue;
        /* The kernel buffer is full: let libuv wait for writability. */
        n = 0;
        for (uint32_t i = c->tx_head; i < c->tx_len && n < TX_IOV_MAX; i++, n++)
            iov[n] = uv_buf_init((char *)c->tx[i].base, (unsigned)c->tx[i].len);
        if (start_write(c, iov, n))
            return;
        c->tx_inflight = n;
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

static void flush_all(net_loop_t *nl) {
    for (unsigned i = 0; i < nl->nhooks; i++)
        nl->hooks[i].fn(nl->hooks[i].arg);
    while (nl->flush_head) {
        net_conn_t *c = nl->flush_head;
        nl->flush_head = c->flush_next;
        c->flags &= ~CONN_IN_FLUSH;
        conn_flush(c);
    }
}

/* ---- reading ---- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    net_conn_t *c = h->data;
    net_loop_t *nl = c->nl;
    /* The shared buffer is lent to one read at a time: libuv calls read_cb right after
     * alloc_cb and never re-enters the loop from a read callback. */
    PARLEY_ASSERT(!nl->rbuf_busy);
    if (nl->rbuf_busy) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    nl->rbuf_busy = true;
    *buf = uv_buf_init((char *)nl->rbuf, sizeof nl->rbuf);
}

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

static void keep_rest(net_conn_t *c, const uint8_t *data, size_t len) {
    if (len == 0 || (c->flags & CONN_CLOSED))
        return;
    if (c->rx.len + len > RX_HARD_LIMIT || buf_append(&c->rx, data, len)) {
        LOG_LIMITED(LOG_LEVEL_WARN, "net", "input buffer limit reached; closing connection");
        close_now(c);
    }
}

static void drain_rx(net_conn_t *c) {
    size_t used = feed(c, c->rx.data, c->rx.len);
    if (c->flags & CONN_CLOSED)
        return;
    buf_consume(&c->rx, used);
    if (c->rx.len == 0)
        buf_free(&c->rx);
}

/* Input for the protocol (decrypted already, with TLS). */
static void plain_input(net_conn_t *c, uint8_t *data, size_t len) {
    if (c->rx.len) {
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
        uv_buf_t alert = uv_buf_init((char *)tc->out.data, (unsigned)tc->out.len);
        if (tc->out.len && uv_try_write((uv_stream_t *)&c->tcp, &alert, 1) < 0)
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

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    net_conn_t *c = s->data;
    c->nl->rbuf_busy = false;
    if (nread == 0 || (c->flags & CONN_CLOSED))
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            LOG_DEBUG("net", "read: %s", uv_strerror((int)nread));
        close_now(c);
        return;
    }
    if (c->flags & CONN_CLOSING)
        return; /* lingering: discard until the peer closes */
    uint8_t *data = (uint8_t *)buf->base;
    size_t len = (size_t)nread;
    c->nl->totals.bytes_in += len;
    if (c->tls)
        tls_input(c, data, len);
    else
        plain_input(c, data, len);
}

void net_conn_resume(net_conn_t *c) {
    if (c->flags & (CONN_CLOSED | CONN_CLOSING | CONN_TX_FULL))
        return;
    if (c->flags & CONN_PROCESSING)
        return; /* the feed loop on the stack carries on */
    if (c->rx.len)
        drain_rx(c);
}

void net_conn_set_ops(net_conn_t *c, const net_conn_ops_t *ops) {
    c->ops = ops;
}

/* ---- closing ---- */

static void conn_free_cb(uv_handle_t *h) {
    net_conn_t *c = h->data;
    if (--c->nl->conn_count == 0 && c->nl->closing)
        close_handles(c->nl);
    if (c->all_prev)
        c->all_prev->all_next = c->all_next;
    else
        c->nl->all = c->all_next;
    if (c->all_next)
        c->all_next->all_prev = c->all_prev;
    buf_free(&c->rx);
    tx_shrink(c);
    net_tls_conn_free(c->tls); /* here: a cancelled write's buffer lives until now */
    free(c->wreq);
    free(c);
}

static void close_now(net_conn_t *c) {
    if (c->flags & CONN_CLOSED)
        return;
    if (c->flags & CONN_WRITING)
        c->nl->writing--;
    c->flags |= CONN_CLOSED;
    dl_unlink(c);
    c->ops->on_close(c);
    tx_release(c, c->tx_head, c->tx_len);
    c->tx_head = c->tx_len = c->tx_inflight = 0;
    c->tx_bytes = 0;
    uv_close((uv_handle_t *)&c->tcp, conn_free_cb);
}

void net_conn_close(net_conn_t *c) {
    if (c->flags & (CONN_CLOSING | CONN_CLOSED))
        return;
    c->flags |= CONN_CLOSING;
    net_conn_set_deadline(c, NET_LINGER_MS);
    if (c->flags & CONN_TX_FULL) {
        c->flags &= ~CONN_TX_FULL;
        if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb)) {
            close_now(c);
            return;
        }
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

uv_tcp_t *net_conn_release(net_conn_t *c) {
    PARLEY_ASSERT(!(c->flags & CONN_CLOSED));
    if (c->tls)
        return NULL; /* its TLS state cannot go with it */
    dl_unlink(c);
    c->ops = &released_ops;
    /* Stopping cannot fail on a TCP handle; the data callback drops anything anyway. */
    if (uv_read_stop((uv_stream_t *)&c->tcp))
        LOG_DEBUG("net", "read stop failed on a released connection");
    return &c->tcp;
}

int net_conn_peer(net_conn_t *c, char *out, size_t size) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    int rc = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
    if (rc)
        return rc;
    if (ss.ss_family == AF_INET6)
        return uv_ip6_name((struct sockaddr_in6 *)&ss, out, size);
    return uv_ip4_name((struct sockaddr_in *)&ss, out, size);
}

/* ---- listening ---- */

/* A new connection of listener l whose handle take() fills; NULL when it failed (then
 * already closed). */
static net_conn_t *conn_new(net_listener_t *l, int (*take)(uv_tcp_t *tcp, void *arg), void *arg) {
    net_conn_t *c = calloc(1, sizeof *c + l->ext_size);
    if (!c) {
        LOG_ERROR("net", "out of memory accepting a connection");
        return NULL;
    }
    c->nl = l->nl;
    c->ops = l->ops;
    c->ext_size = l->ext_size;
    c->tx = c->tx_small;
    c->tx_cap = NET_TX_SMALL;
    int rc = uv_tcp_init(l->nl->loop, &c->tcp);
    if (rc) {
        free(c);
        return NULL;
    }
    c->tcp.data = c;
    if (l->tls && !(c->tls = net_tls_conn_new(l->tls))) {
        uv_close((uv_handle_t *)&c->tcp, NULL);
        free(c);
        return NULL;
    }
    l->nl->conn_count++;
    c->all_next = l->nl->all;
    if (c->all_next)
        c->all_next->all_prev = c;
    l->nl->all = c;
    if ((rc = take(&c->tcp, arg)) ||
        (rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb))) {
        LOG_LIMITED(LOG_LEVEL_WARN, "net", "accept: %s", uv_strerror(rc));
        c->flags |= CONN_CLOSED;
        uv_close((uv_handle_t *)&c->tcp, conn_free_cb);
        return NULL;
    }
    /* Without Nagle, small answers go out at once; failing to set it costs latency only. */
    if (uv_tcp_nodelay(&c->tcp, 1))
        LOG_DEBUG("net", "TCP_NODELAY not set");
    l->on_open(c, l->arg);
    return c;
}

static int take_from_listener(uv_tcp_t *tcp, void *arg) {
    return uv_accept(arg, (uv_stream_t *)tcp);
}

static void on_connection(uv_stream_t *server, int status) {
    net_listener_t *l = server->data;
    if (status < 0) {
        LOG_LIMITED(LOG_LEVEL_WARN, "net", "accept: %s", uv_strerror(status));
        return;
    }
    conn_new(l, take_from_listener, server);
}

int net_listener_adopt(net_listener_t *l, int (*take)(uv_tcp_t *tcp, void *arg), void *arg,
                       uint8_t *data, size_t len) {
    if (l->tls)
        return -EPROTO; /* a connection's TLS state is not handed over */
    net_conn_t *c = conn_new(l, take, arg);
    if (!c)
        return -ECONNABORTED;
    if (len && !(c->flags & (CONN_CLOSED | CONN_CLOSING))) {
        size_t used = feed(c, data, len);
        if (!(c->flags & CONN_CLOSING))
            keep_rest(c, data + used, len - used);
    }
    return 0;
}

/* SO_REUSEPORT is set on a socket made here and then given to libuv (the libuv of this
 * system has no flag for it). */
static int bind_reuse_port(uv_tcp_t *tcp, const struct sockaddr *addr) {
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    int one = 1;
    socklen_t alen =
        addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) || bind(fd, addr, alen)) {
        int rc = uv_translate_sys_error(errno);
        close(fd);
        return rc;
    }
    int rc = uv_tcp_open(tcp, fd);
    if (rc)
        close(fd);
    return rc;
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
    if ((rc = uv_tcp_init(nl->loop, &l->tcp))) {
        free(l);
        return rc;
    }
    l->tcp.data = l;
    if ((rc = reuse_port ? bind_reuse_port(&l->tcp, (struct sockaddr *)&addr)
                         : uv_tcp_bind(&l->tcp, (struct sockaddr *)&addr, 0)) ||
        (rc = uv_listen((uv_stream_t *)&l->tcp, 4096, on_connection))) {
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
    int len = sizeof ss;
    if (l->stopped || uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len))
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void listener_free_cb(uv_handle_t *h) {
    free(h->data);
}

void net_listener_close(net_listener_t *l) {
    if (!l->stopped)
        uv_close((uv_handle_t *)&l->tcp, listener_free_cb);
    else if (l->handle_closed)
        free(l);
    else
        l->free_pending = true; /* freed by listener_stopped_cb */
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
    uv_os_fd_t fd;
    int rc = uv_fileno((uv_handle_t *)&l->tcp, &fd);
    if (rc)
        return rc;
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog))
        return uv_translate_sys_error(errno);
    return 0;
}

/* Takes the descriptor over (*arg becomes -1): the handle's, or closed. */
static int take_fd(uv_tcp_t *tcp, void *arg) {
    int fd = *(int *)arg;
    *(int *)arg = -1;
    int rc = uv_tcp_open(tcp, fd);
    if (rc)
        close(fd);
    return rc;
}

/* What the kernel queued for this listener would be reset by the close, not handed to
 * another listener of the port (SO_REUSEPORT keeps one queue per socket): accepted here
 * first. Connections whose handshake ends between the last accept and the close are
 * still reset; their clients connect again. */
void net_listener_stop(net_listener_t *l) {
    if (l->stopped)
        return;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&l->tcp, &fd) == 0) {
        int conn;
        while ((conn = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
            conn_new(l, take_fd, &conn);
            if (conn >= 0)
                close(conn); /* conn_new failed before it took the descriptor */
        }
    }
    l->stopped = true;
    uv_close((uv_handle_t *)&l->tcp, listener_stopped_cb);
}
