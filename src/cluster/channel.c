/* cluster/channel.c — framed IPC pipes between processes (see channel.h).
 *
 * Output: frames are appended to one buffer during a loop iteration and written with one
 * uv_write from a prepare handle (just before the loop waits). Each write owns its buffer
 * until its callback; writes complete in order, and a frame with a connection is its own
 * uv_write2, issued after the buffer queued before it. */
#include "cluster/channel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/wire.h"
#include "util/buf.h"
#include "util/log.h"

#define READ_CHUNK 65536

struct channel {
    uv_pipe_t pipe;
    uv_prepare_t prepare;
    channel_cb_t cb;
    void *arg;
    buf_t in;         /* bytes received, not yet whole frames */
    buf_t out;        /* frames queued this iteration */
    size_t unwritten; /* bytes handed to uv_write and not yet written */
    int open_handles;
    bool closing;
};

typedef struct {
    uv_write_t req;
    channel_t *ch;
    buf_t buf;
    void (*done)(int status, void *arg);
    void *arg;
} write_t;

static void handle_closed(uv_handle_t *h) {
    channel_t *ch = h->data;
    if (--ch->open_handles > 0)
        return;
    buf_free(&ch->in);
    buf_free(&ch->out);
    free(ch);
}

void channel_close(channel_t *ch) {
    if (ch->closing)
        return;
    ch->closing = true;
    if (ch->cb.on_close)
        ch->cb.on_close(ch, ch->arg);
    uv_close((uv_handle_t *)&ch->pipe, handle_closed);
    uv_close((uv_handle_t *)&ch->prepare, handle_closed);
}

static void write_cb(uv_write_t *req, int status) {
    write_t *w = req->data;
    channel_t *ch = w->ch;
    ch->unwritten -= w->buf.len;
    if (w->done)
        w->done(status, w->arg);
    buf_free(&w->buf);
    free(w);
    if (status < 0 && status != UV_ECANCELED && !ch->closing) {
        LOG_WARN("cluster", "channel write failed: %s", uv_strerror(status));
        channel_close(ch);
    }
}

/* Issues w (its buffer, and tcp when not NULL) as one write; w is freed on failure. */
static int write_issue(channel_t *ch, write_t *w, uv_tcp_t *tcp) {
    w->ch = ch;
    w->req.data = w;
    uv_buf_t b = uv_buf_init((char *)w->buf.data, (unsigned)w->buf.len);
    int rc = tcp ? uv_write2(&w->req, (uv_stream_t *)&ch->pipe, &b, 1, (uv_stream_t *)tcp, write_cb)
                 : uv_write(&w->req, (uv_stream_t *)&ch->pipe, &b, 1, write_cb);
    if (rc) {
        buf_free(&w->buf);
        free(w);
        return rc;
    }
    ch->unwritten += w->buf.len;
    return 0;
}

/* Hands the queued frames to libuv as one write. */
static int flush(channel_t *ch) {
    if (ch->out.len == 0 || ch->closing)
        return 0;
    write_t *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->buf = ch->out;
    ch->out = (buf_t){0};
    return write_issue(ch, w, NULL);
}

static void prepare_cb(uv_prepare_t *h) {
    channel_t *ch = h->data;
    int rc = flush(ch);
    if (rc) {
        LOG_WARN("cluster", "channel write failed: %s", uv_strerror(rc));
        channel_close(ch);
    }
}

int channel_send(channel_t *ch, const void *frames, size_t len) {
    if (ch->closing)
        return -EPIPE;
    if (ch->unwritten + ch->out.len + len > CHANNEL_OUTPUT_MAX) {
        LOG_ERROR("cluster", "peer process stuck (%zu bytes unwritten): closing its channel",
                  ch->unwritten + ch->out.len);
        channel_close(ch);
        return -ENOBUFS;
    }
    return buf_append(&ch->out, frames, len);
}

int channel_send_handle(channel_t *ch, const void *frame, size_t len, uv_tcp_t *tcp,
                        void (*done)(int status, void *arg), void *arg) {
    if (ch->closing)
        return -EPIPE;
    int rc = flush(ch);
    if (rc)
        return rc;
    write_t *w = calloc(1, sizeof *w);
    if (!w || buf_append(&w->buf, frame, len)) {
        free(w);
        return -ENOMEM;
    }
    w->done = done;
    w->arg = arg;
    return write_issue(ch, w, tcp);
}

int channel_accept(channel_t *ch, uv_tcp_t *tcp) {
    if (uv_pipe_pending_count(&ch->pipe) < 1 || uv_pipe_pending_type(&ch->pipe) != UV_TCP)
        return -EINVAL;
    return uv_accept((uv_stream_t *)&ch->pipe, (uv_stream_t *)tcp);
}

/* A descriptor sent as a handle: libuv sends a stream's, so a copy of it gets a handle
 * of its own for the time of the write. */
typedef struct {
    uv_tcp_t tcp;
    void (*done)(int status, void *arg);
    void *arg;
} fd_send_t;

static void fd_send_closed(uv_handle_t *h) {
    free(h->data);
}

static void fd_sent(int status, void *arg) {
    fd_send_t *s = arg;
    s->done(status, s->arg);
    uv_close((uv_handle_t *)&s->tcp, fd_send_closed);
}

int channel_send_fd(channel_t *ch, const void *frame, size_t len, int fd,
                    void (*done)(int status, void *arg), void *arg) {
    fd_send_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    int rc = uv_tcp_init(ch->pipe.loop, &s->tcp);
    if (rc) {
        free(s);
        return rc;
    }
    s->tcp.data = s;
    s->done = done;
    s->arg = arg;
    int copy = dup(fd);
    if (copy < 0)
        rc = -errno;
    else if ((rc = uv_tcp_open(&s->tcp, copy)))
        close(copy);
    if (rc == 0)
        rc = channel_send_handle(ch, frame, len, &s->tcp, fd_sent, s);
    if (rc)
        uv_close((uv_handle_t *)&s->tcp, fd_send_closed);
    return rc;
}

int channel_accept_fd(channel_t *ch, int *fd) {
    uv_tcp_t *tcp = malloc(sizeof *tcp);
    if (!tcp)
        return -ENOMEM;
    int rc = uv_tcp_init(ch->pipe.loop, tcp);
    if (rc) {
        free(tcp);
        return rc;
    }
    tcp->data = tcp;
    uv_os_fd_t got;
    if ((rc = channel_accept(ch, tcp)) == 0 && (rc = uv_fileno((uv_handle_t *)tcp, &got)) == 0 &&
        (*fd = dup(got)) < 0)
        rc = -errno;
    uv_close((uv_handle_t *)tcp, fd_send_closed);
    return rc;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    channel_t *ch = h->data;
    if (buf_reserve(&ch->in, READ_CHUNK)) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)ch->in.data + ch->in.len, (unsigned)(ch->in.cap - ch->in.len));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    channel_t *ch = s->data;
    if (nread == 0 || ch->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            LOG_WARN("cluster", "channel read failed: %s", uv_strerror((int)nread));
        channel_close(ch);
        return;
    }
    ch->in.len += (size_t)nread;
    size_t off = 0;
    while (!ch->closing) {
        long size = wire_frame_size(ch->in.data + off, ch->in.len - off);
        if (size == 0)
            break;
        if (size < 0) {
            LOG_ERROR("cluster", "malformed frame on a channel: closing it");
            channel_close(ch);
            break;
        }
        ch->cb.on_frame(ch, ch->in.data + off, (size_t)size, ch->arg);
        off += (size_t)size;
    }
    if (!ch->closing)
        buf_consume(&ch->in, off);
}

int channel_open(uv_loop_t *loop, int fd, const channel_cb_t *cb, void *arg, channel_t **out) {
    channel_t *ch = calloc(1, sizeof *ch);
    if (!ch) {
        close(fd);
        return -ENOMEM;
    }
    ch->cb = *cb;
    ch->arg = arg;
    ch->pipe.data = ch->prepare.data = ch;
    int rc = uv_pipe_init(loop, &ch->pipe, 1);
    if (rc) {
        free(ch);
        close(fd);
        return rc;
    }
    ch->open_handles = 1;
    if ((rc = uv_pipe_open(&ch->pipe, fd))) {
        close(fd);
        uv_close((uv_handle_t *)&ch->pipe, handle_closed);
        return rc;
    }
    if ((rc = uv_prepare_init(loop, &ch->prepare))) {
        uv_close((uv_handle_t *)&ch->pipe, handle_closed);
        return rc;
    }
    ch->open_handles = 2;
    if ((rc = uv_prepare_start(&ch->prepare, prepare_cb)) ||
        (rc = uv_read_start((uv_stream_t *)&ch->pipe, alloc_cb, read_cb))) {
        ch->closing = true;
        uv_close((uv_handle_t *)&ch->pipe, handle_closed);
        uv_close((uv_handle_t *)&ch->prepare, handle_closed);
        return rc;
    }
    /* The prepare handle must not keep the loop alive on its own; the pipe does. */
    uv_unref((uv_handle_t *)&ch->prepare);
    *out = ch;
    return 0;
}
