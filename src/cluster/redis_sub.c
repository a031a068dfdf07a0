/* cluster/redis_sub.c — a sharded pub/sub connection that comes back (cluster/redis_sub.h).
 *
 * One connection attempt runs: start → (uv_getaddrinfo → on_resolved) → connect_next →
 * on_connected → setup writes → on_read until the setup replies are in → ready. Whatever
 * ends it goes through drop(), which only closes the stream; io_closed, the stream's close
 * callback, decides what comes next (the next address, the backoff timer, or the end of
 * redis_sub_close). Freeing happens only in maybe_done, reached from close and lookup
 * callbacks, so nothing is freed under a read callback that is still walking the replies.
 *
 * Commands are rare here (a subscription per room or channel, not per message), so each
 * one is its own allocation and its own uv_write rather than a shared output buffer. */
#include "cluster/redis_sub.h"

#include <errno.h>
#include <hiredis/read.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "util/assert.h"
#include "util/log.h"

/* A subscriber's connection is idle for as long as nothing is published to it: TCP
 * keepalive (seconds before the first probe) is what notices a peer that vanished. */
#define SUB_KEEPALIVE_S 60
/* Bytes read per read callback. hiredis copies them into its own buffer, so this only
 * bounds one read; it lives inline (a process has a handful of these connections). */
#define SUB_READ_BUF 16384
/* A subscribed connection only listens: a Redis that vanished (a host down, a network
 * cut) would go unnoticed for as long as TCP keepalive takes (minutes). A PING every
 * SUB_PING_MS, and a connection with no answer by the next one is dropped: it is known
 * dead within two periods, and made again. */
#define SUB_PING_MS 5000

struct redis_sub {
    uv_loop_t *loop;
    redis_endpoint_t ep;
    char name[32];
    redis_sub_cb_t cb;
    void *arg;
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;                     /* the stream of the current attempt */
    bool io_open;             /* io initialised, its close callback not yet run */
    bool io_closing;          /* uv_close called on io */
    uv_getaddrinfo_t gai;     /* the name lookup, while resolving */
    bool resolving;           /* gai in flight */
    struct addrinfo *ai;      /* the lookup's result, until connected or given up */
    struct addrinfo *ai_next; /* the next address to try */
    uv_connect_t connect_req;
    redisReader *reader; /* replies of the current connection, from connected to io_closed */
    unsigned setup_left; /* setup replies still expected */
    bool ready;          /* connected and set up */
    bool was_ready;      /* the connection being closed had been ready */
    char why[128];       /* why the current attempt ended, for the log line */
    uint32_t backoff_ms;
    uv_timer_t retry;
    bool retry_open;
    uv_timer_t ping; /* every SUB_PING_MS: a PING, or the drop of a silent connection */
    bool ping_open;
    bool ping_due; /* a PING went out and nothing came back since */
    bool closing;  /* redis_sub_close called */
    void (*done)(void *arg);
    void *done_arg;
    char rbuf[SUB_READ_BUF];
};

/* One command on its way to the kernel; freed in on_written. */
typedef struct {
    uv_write_t req; /* first: on_written gets this pointer */
    char *cmd;      /* from redisFormatCommandArgv */
} sub_write_t;

/* ---- the end of a connection ---- */

static void start(redis_sub_t *s);
static void connect_next(redis_sub_t *s);
static void attempt_failed(redis_sub_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void drop(redis_sub_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void maybe_done(redis_sub_t *s) {
    if (!s->closing || s->retry_open || s->ping_open || s->resolving || s->io_open)
        return;
    PARLEY_ASSERT(!s->ai && !s->reader);
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    redis_endpoint_free(&s->ep);
    free(s);
    if (done)
        done(arg);
}

static void free_addresses(redis_sub_t *s) {
    uv_freeaddrinfo(s->ai);
    s->ai = s->ai_next = NULL;
}

static void retry_due(uv_timer_t *t) {
    start(t->data);
}

/* Nothing of the last attempt is open any more: log why it ended (s->why), tell the owner
 * if it had been ready, and try again after the backoff. */
static void retry_later(redis_sub_t *s, bool was_ready) {
    if (was_ready)
        LOG_WARN("redis", "%s connection lost (%s); retrying", s->name, s->why);
    else
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "%s: cannot connect to Redis (%s); retrying in %u ms",
                    s->name, s->why, s->backoff_ms);
    if (was_ready && s->cb.lost) {
        s->cb.lost(s, s->arg);
        if (s->closing)
            return; /* closed from lost: retry_closed finishes */
    }
    int rc = uv_timer_start(&s->retry, retry_due, s->backoff_ms, 0);
    if (rc)
        LOG_ERROR("redis", "%s: cannot schedule a reconnection: %s", s->name, uv_strerror(rc));
    s->backoff_ms =
        s->backoff_ms * 2 > REDIS_BACKOFF_MAX_MS ? REDIS_BACKOFF_MAX_MS : s->backoff_ms * 2;
}

/* An attempt that failed before its stream was opened. */
static void attempt_failed(redis_sub_t *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
    retry_later(s, false);
}

static void io_closed(uv_handle_t *h) {
    redis_sub_t *s = h->data;
    s->io_open = false;
    s->io_closing = false;
    if (s->reader) {
        redisReaderFree(s->reader);
        s->reader = NULL;
    }
    if (s->closing) {
        free_addresses(s);
        maybe_done(s);
    } else if (s->ai_next) {
        LOG_DEBUG("redis", "%s: %s; trying the next address", s->name, s->why);
        connect_next(s);
    } else {
        free_addresses(s);
        retry_later(s, s->was_ready);
    }
}

/* Ends the current connection or attempt: closes the stream (io_closed goes on from
 * there). Only the first reason counts; later calls, until io_closed, do nothing. */
static void drop(redis_sub_t *s, const char *fmt, ...) {
    if (s->io_closing)
        return;
    PARLEY_ASSERT(s->io_open);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
    s->io_closing = true;
    s->was_ready = s->ready;
    s->ready = false;
    s->setup_left = 0;
    uv_close(&s->io.handle, io_closed);
}

/* ---- writing ---- */

static void on_written(uv_write_t *req, int status) {
    sub_write_t *w = (sub_write_t *)req;
    redis_sub_t *s = req->handle->data;
    redisFreeCommand(w->cmd);
    free(w);
    if (status < 0)
        drop(s, "cannot write: %s", uv_strerror(status)); /* nothing if we closed it */
}

static int send_argv(redis_sub_t *s, int argc, const char **argv, const size_t *argvlen) {
    sub_write_t *w = malloc(sizeof *w);
    if (!w)
        return -ENOMEM;
    int len = redisFormatCommandArgv(&w->cmd, argc, argv, argvlen);
    if (len < 0) {
        free(w);
        return -ENOMEM;
    }
    uv_buf_t buf = uv_buf_init(w->cmd, (unsigned)len);
    int rc = uv_write(&w->req, &s->io.stream, &buf, 1, on_written);
    if (rc) {
        redisFreeCommand(w->cmd);
        free(w);
        drop(s, "cannot write: %s", uv_strerror(rc));
        return -EPIPE;
    }
    return 0;
}

/* AUTH when there is a password, then PING: `ready` waits for the last reply. */
static int send_setup(redis_sub_t *s) {
    const redis_endpoint_t *ep = &s->ep;
    s->setup_left = 1;
    if (ep->password) {
        const char *auth[3] = {"AUTH"};
        int argc = 1;
        if (ep->user)
            auth[argc++] = ep->user;
        auth[argc++] = ep->password;
        int rc = send_argv(s, argc, auth, NULL);
        if (rc)
            return rc;
        s->setup_left++;
    }
    const char *ping[] = {"PING"};
    return send_argv(s, 1, ping, NULL);
}

/* ---- reading ---- */

/* The answer to our PING: "+PONG", or ["pong", ""] once subscribed. */
static bool is_pong(const redisReply *rep) {
    if (rep->type == REDIS_REPLY_STATUS)
        return strcmp(rep->str, "PONG") == 0;
    return rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
           rep->element[0]->type == REDIS_REPLY_STRING && strcmp(rep->element[0]->str, "pong") == 0;
}

static void on_reply(redis_sub_t *s, const redisReply *rep) {
    if (!s->setup_left) {
        if (!is_pong(rep))
            s->cb.push(s, rep, s->arg);
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        LOG_LIMITED(LOG_LEVEL_ERROR, "redis", "%s: Redis refused the connection's setup: %.*s",
                    s->name, (int)rep->len, rep->str);
        drop(s, "setup refused");
        return;
    }
    if (--s->setup_left)
        return;
    s->ready = true;
    s->ping_due = false;
    s->backoff_ms = REDIS_BACKOFF_MIN_MS;
    LOG_INFO("redis", "%s connected", s->name);
    s->cb.ready(s, s->arg);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    redis_sub_t *s = h->data;
    *buf = uv_buf_init(s->rbuf, sizeof s->rbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    redis_sub_t *s = st->data;
    if (nread < 0) {
        drop(s, "%s", nread == UV_EOF ? "closed by the server" : uv_strerror((int)nread));
        return;
    }
    s->ping_due = false;
    if (redisReaderFeed(s->reader, buf->base, (size_t)nread) != REDIS_OK) {
        drop(s, "%s", s->reader->errstr);
        return;
    }
    /* A callback may close or drop the connection: the reader stays until io_closed, but
     * nothing more is delivered once the stream is closing. */
    while (!s->io_closing) {
        void *reply;
        if (redisReaderGetReply(s->reader, &reply) != REDIS_OK) {
            drop(s, "%s", s->reader->errstr);
            return;
        }
        if (!reply)
            return;
        on_reply(s, reply);
        freeReplyObject(reply);
    }
}

/* ---- connecting ---- */

static void on_connected(uv_connect_t *req, int status) {
    redis_sub_t *s = req->handle->data;
    if (status < 0) {
        drop(s, "%s", uv_strerror(status)); /* nothing if we closed it */
        return;
    }
    free_addresses(s);
    int rc = 0;
    if (!s->ep.path && (rc = uv_tcp_keepalive(&s->io.tcp, 1, SUB_KEEPALIVE_S))) {
        drop(s, "cannot enable keepalive: %s", uv_strerror(rc));
        return;
    }
    if (!(s->reader = redisReaderCreate())) {
        drop(s, "out of memory");
        return;
    }
    if ((rc = uv_read_start(&s->io.stream, on_alloc, on_read))) {
        drop(s, "cannot read: %s", uv_strerror(rc));
        return;
    }
    if ((rc = send_setup(s)))
        drop(s, "cannot send the setup: %s", strerror(-rc));
}

static void connect_next(redis_sub_t *s) {
    const struct addrinfo *ai = s->ai_next;
    s->ai_next = ai->ai_next;
    int rc = uv_tcp_init(s->loop, &s->io.tcp);
    if (rc) {
        free_addresses(s);
        attempt_failed(s, "%s", uv_strerror(rc));
        return;
    }
    s->io.handle.data = s;
    s->io_open = true;
    /* Small commands go out at once rather than behind the previous one's ACK. */
    if ((rc = uv_tcp_nodelay(&s->io.tcp, 1)) ||
        (rc = uv_tcp_connect(&s->connect_req, &s->io.tcp, ai->ai_addr, on_connected)))
        drop(s, "%s", uv_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    redis_sub_t *s = req->data;
    s->resolving = false;
    if (s->closing) {
        uv_freeaddrinfo(res);
        maybe_done(s);
        return;
    }
    if (status < 0) {
        attempt_failed(s, "cannot resolve %s: %s", s->ep.host, uv_strerror(status));
        return;
    }
    PARLEY_ASSERT(res);
    s->ai = s->ai_next = res;
    connect_next(s);
}

static void start(redis_sub_t *s) {
    PARLEY_ASSERT(!s->io_open && !s->resolving && !s->closing);
    if (s->ep.path) {
        /* uv_pipe_connect would cut a longer path short and connect elsewhere. */
        if (strlen(s->ep.path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
            attempt_failed(s, "socket path too long: %s", s->ep.path);
            return;
        }
        int rc = uv_pipe_init(s->loop, &s->io.pipe, 0);
        if (rc) {
            attempt_failed(s, "%s", uv_strerror(rc));
            return;
        }
        s->io.handle.data = s;
        s->io_open = true;
        uv_pipe_connect(&s->connect_req, &s->io.pipe, s->ep.path, on_connected);
        return;
    }
    char port[8];
    snprintf(port, sizeof port, "%d", s->ep.port);
    const struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(s->loop, &s->gai, on_resolved, s->ep.host, port, &hints);
    if (rc) {
        attempt_failed(s, "cannot resolve %s: %s", s->ep.host, uv_strerror(rc));
        return;
    }
    s->resolving = true;
}

static void ping_tick(uv_timer_t *t) {
    redis_sub_t *s = t->data;
    if (!s->ready)
        return;
    if (s->ping_due) {
        drop(s, "no answer to PING within %d ms", SUB_PING_MS);
        return;
    }
    const char *argv[] = {"PING"};
    int rc = send_argv(s, 1, argv, NULL);
    if (rc)
        drop(s, "cannot send PING: %s", strerror(-rc));
    else
        s->ping_due = true;
}

/* ---- the interface ---- */

int redis_sub_open(uv_loop_t *loop, const redis_endpoint_t *ep, const char *name,
                   const redis_sub_cb_t *cb, void *arg, redis_sub_t **out) {
    PARLEY_ASSERT(cb->ready && cb->push);
    PARLEY_ASSERT(ep->path || ep->host);
    redis_sub_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    if (redis_endpoint_copy(ep, &s->ep)) {
        free(s);
        return -ENOMEM;
    }
    /* uv_timer_init only fails for a bad loop: the first one tells. */
    if (uv_timer_init(loop, &s->retry) || uv_timer_init(loop, &s->ping)) {
        redis_endpoint_free(&s->ep);
        free(s);
        return -ENOMEM;
    }
    s->loop = loop;
    snprintf(s->name, sizeof s->name, "%s", name);
    s->cb = *cb;
    s->arg = arg;
    s->backoff_ms = REDIS_BACKOFF_MIN_MS;
    s->retry.data = s;
    s->retry_open = true;
    s->ping.data = s;
    s->ping_open = true;
    if (uv_timer_start(&s->ping, ping_tick, SUB_PING_MS, SUB_PING_MS))
        LOG_ERROR("redis", "%s: no liveness checks (the timer did not start)", s->name);
    s->gai.data = s;
    *out = s;
    start(s);
    return 0;
}

bool redis_sub_ready(const redis_sub_t *s) {
    return s && s->ready;
}

int redis_sub_send(redis_sub_t *s, int argc, const char **argv, const size_t *argvlen) {
    PARLEY_ASSERT(argc > 0 && argv);
    if (!redis_sub_ready(s))
        return -EPIPE;
    return send_argv(s, argc, argv, argvlen);
}

static void retry_closed(uv_handle_t *h) {
    redis_sub_t *s = h->data;
    s->retry_open = false;
    maybe_done(s);
}

static void ping_closed(uv_handle_t *h) {
    redis_sub_t *s = h->data;
    s->ping_open = false;
    maybe_done(s);
}

void redis_sub_close(redis_sub_t *s, void (*done)(void *arg), void *arg) {
    PARLEY_ASSERT(!s->closing);
    s->closing = true;
    s->done = done;
    s->done_arg = arg;
    uv_close((uv_handle_t *)&s->retry, retry_closed); /* stops it too */
    uv_close((uv_handle_t *)&s->ping, ping_closed);
    if (s->resolving) {
        int rc = uv_cancel((uv_req_t *)&s->gai);
        if (rc)
            LOG_DEBUG("redis", "%s: the name lookup cannot be cancelled (%s); waiting for it",
                      s->name, uv_strerror(rc));
    }
    if (s->io_open)
        drop(s, "closed");
}
