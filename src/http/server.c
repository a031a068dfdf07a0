/* http/server.c — HTTP/1.1 connections on net/conn: request framing, limits, timeouts,
 * routing and responses (see server.h).
 *
 * Per connection the state is small and lives in the net connection's ext area. A
 * request's head stays in the input buffer until its body is complete (the head is
 * re-parsed then, which is cheaper than copying it); chunked bodies are decoded in
 * place right behind the head. */
#include "http/server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/assert.h"
#include "util/log.h"

/* Bytes a client may send ahead while a response is pending. */
#define HTTP_PIPELINE_MAX (64u * 1024)

enum conn_state {
    HC_IDLE,       /* between requests */
    HC_READING,    /* head or body arriving */
    HC_DISPATCHED, /* a route has it; no response begun */
    HC_HELD,       /* a route holds it (long-poll) */
    HC_RESPONDING, /* head sent, body being queued */
    HC_STREAMING,  /* head sent, body until the connection closes */
};

/* The request being answered, kept for the access log while one is set. It has the
 * callback of its own: a connection may close after its server is gone. */
typedef struct {
    http_access_fn fn;
    void *arg;
    uv_loop_t *loop;
    uint64_t started; /* loop time (ms) of dispatch */
    int64_t length;
    int status;
    char method[16], path[256], user_agent[128];
} access_rec_t;

struct http_conn {
    http_server_t *srv;
    access_rec_t *access;
    void (*on_abort)(http_conn_t *, void *);
    void (*on_hold_timeout)(http_conn_t *, void *);
    void *abort_arg;
    http_chunked_t chunked;
    uint64_t body_raw; /* chunked: encoded bytes consumed after the head */
    uint64_t body_len; /* chunked: decoded bytes, kept right after the head */
    uint32_t head_len; /* while the body arrives */
    uint8_t state;
    bool in_body;
    bool keep_alive;
    bool is_head_method;
    bool in_on_data;
};

_Static_assert(sizeof(http_conn_t) <= HTTP_CONN_EXT_SIZE, "HTTP_CONN_EXT_SIZE is too small");

typedef struct route {
    char *prefix;
    size_t prefix_len;
    http_route_fn fn;
    void *arg;
} route_t;

struct http_server {
    http_server_config_t cfg;
    net_loop_t *nl;
    net_listener_t *listener;
    route_t *routes;
    size_t nroutes;
    http_limits_t limits;
    http_access_fn access;
    void *access_arg;
};

static ssize_t hc_on_data(net_conn_t *c, uint8_t *data, size_t len);
static void hc_on_timeout(net_conn_t *c);
static void hc_on_close(net_conn_t *c);

static const net_conn_ops_t http_ops = {hc_on_data, hc_on_timeout, hc_on_close};

void http_server_config_defaults(http_server_config_t *cfg) {
    *cfg = (http_server_config_t){
        .host = "127.0.0.1",
        .port = 3000,
        .max_head_size = 8192,
        .max_headers = 100,
        .max_body_size = 1u << 20,
        .request_timeout = 10000,
        .keepalive_timeout = 30000,
    };
}

static inline http_conn_t *hc_of(net_conn_t *c) {
    return net_conn_ext(c);
}

net_conn_t *http_conn_net(http_conn_t *hc) {
    return net_conn_from_ext(hc);
}

const char *http_status_reason(int status) {
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

size_t http_cors_headers(const char *const *origins, size_t count, const http_request_t *req,
                         char *out, size_t size) {
    if (size)
        out[0] = '\0';
    const slice_t *origin = http_request_header(req, "origin");
    bool allowed = false;
    for (size_t i = 0; origin && !allowed && i < count; i++)
        allowed = strcmp(origins[i], "*") == 0 || slice_eq(*origin, origins[i]);
    if (!allowed)
        return 0;
    int n = snprintf(out, size,
                     "Access-Control-Allow-Origin: %.*s\r\n"
                     "Access-Control-Allow-Credentials: true\r\nVary: Origin\r\n",
                     (int)origin->len, origin->base);
    if (n > 0 && (size_t)n < size)
        return (size_t)n;
    out[0] = '\0';
    return 0;
}

/* ---- the request, for callers outside the library (parley/http.h) ---- */

static const char *slice_out(slice_t s, size_t *len) {
    *len = s.len;
    return s.base ? s.base : "";
}

const char *http_req_method(const http_req_t *req, size_t *len) {
    return slice_out(req->head.method, len);
}

const char *http_req_path(const http_req_t *req, size_t *len) {
    return slice_out(req->head.path, len);
}

const char *http_req_query(const http_req_t *req, size_t *len) {
    return slice_out(req->head.query, len);
}

const char *http_req_body(const http_req_t *req, size_t *len) {
    return slice_out(req->body, len);
}

const char *http_req_header(const http_req_t *req, const char *name, size_t *len) {
    const slice_t *v = http_request_header(&req->head, name);
    if (!v) {
        *len = 0;
        return NULL;
    }
    return slice_out(*v, len);
}

static void on_open(net_conn_t *c, void *arg) {
    http_conn_t *hc = hc_of(c);
    hc->srv = arg;
    hc->state = HC_IDLE;
    net_conn_set_deadline(c, hc->srv->cfg.request_timeout);
}

int http_server_new(net_loop_t *nl, const http_server_config_t *cfg, http_server_t **out) {
    http_server_t *srv = calloc(1, sizeof *srv);
    if (!srv)
        return UV_ENOMEM;
    srv->cfg = *cfg;
    srv->nl = nl;
    srv->limits.max_head_size = cfg->max_head_size;
    srv->limits.max_headers = cfg->max_headers;
    int rc = net_listener_open(nl, cfg->host ? cfg->host : "127.0.0.1", cfg->port, cfg->reuse_port,
                               HTTP_CONN_EXT_SIZE, &http_ops, on_open, srv, &srv->listener);
    if (rc) {
        free(srv);
        return rc;
    }
    net_listener_set_tls(srv->listener, cfg->tls);
    *out = srv;
    return 0;
}

int http_server_route(http_server_t *srv, const char *prefix, http_route_fn fn, void *arg) {
    char *p = strdup(prefix);
    route_t *r = p ? realloc(srv->routes, (srv->nroutes + 1) * sizeof *r) : NULL;
    if (!r) {
        free(p);
        return -ENOMEM;
    }
    srv->routes = r;
    route_t *added = &r[srv->nroutes++];
    added->prefix = p;
    added->prefix_len = strlen(p);
    added->fn = fn;
    added->arg = arg;
    return 0;
}

void http_server_on_access(http_server_t *srv, http_access_fn fn, void *arg) {
    srv->access = fn;
    srv->access_arg = arg;
}

static void slice_copy(char *out, size_t size, slice_t s) {
    size_t n = s.len < size - 1 ? s.len : size - 1;
    if (n)
        memcpy(out, s.base, n);
    out[n] = '\0';
}

static access_rec_t *access_begin(http_conn_t *hc, const http_req_t *req) {
    access_rec_t *a = malloc(sizeof *a);
    if (!a) {
        LOG_LIMITED(LOG_LEVEL_WARN, "http", "access log: out of memory");
        return NULL;
    }
    a->fn = hc->srv->access;
    a->arg = hc->srv->access_arg;
    a->loop = net_loop_uv(hc->srv->nl);
    a->started = uv_now(a->loop);
    a->length = -1;
    a->status = 0;
    slice_copy(a->method, sizeof a->method, req->head.method);
    slice_copy(a->path, sizeof a->path, req->head.path);
    const slice_t *ua = http_request_header(&req->head, "user-agent");
    slice_copy(a->user_agent, sizeof a->user_agent, ua ? *ua : slice_make(NULL, 0));
    return a;
}

/* Reports and frees a (NULL: nothing to do). */
static void access_end(net_conn_t *c, access_rec_t *a, int status) {
    if (!a)
        return;
    char remote[64] = "";
    if (net_conn_peer(c, remote, sizeof remote))
        remote[0] = '\0';
    http_access_t e = {
        .remote = remote,
        .method = a->method,
        .path = a->path,
        .user_agent = a->user_agent,
        .status = status,
        .length = a->length,
        .duration_ms = uv_now(a->loop) - a->started,
    };
    a->fn(&e, a->arg); /* e's strings are a's */
    free(a);
}

int http_server_port(const http_server_t *srv) {
    return net_listener_port(srv->listener);
}

int http_server_adopt(http_server_t *srv, int fd, uint8_t *data, size_t len) {
    return net_listener_adopt(srv->listener, fd, data, len);
}

int http_conn_handoff(http_conn_t *hc, const http_req_t *req, buf_t *out, int *fd) {
    PARLEY_ASSERT(hc->state == HC_DISPATCHED);
    if (http_conn_net(hc)->tls)
        return -EPROTO; /* its TLS state cannot be handed over */
    free(hc->access);   /* the worker that answers logs it */
    hc->access = NULL;
    const http_request_t *h = &req->head;
    int rc = buf_printf(out, "%.*s %.*s HTTP/1.1\r\n", (int)h->method.len, h->method.base,
                        (int)h->target.len, h->target.base);
    for (size_t i = 0; rc == 0 && i < h->num_headers; i++) {
        const http_header_t *f = &h->headers[i];
        /* The body is re-framed with its decoded length. */
        if (slice_case_eq(f->name, "content-length") || slice_case_eq(f->name, "transfer-encoding"))
            continue;
        rc = buf_printf(out, "%.*s: %.*s\r\n", (int)f->name.len, f->name.base, (int)f->value.len,
                        f->value.base);
    }
    if (rc == 0 && req->body.len)
        rc = buf_printf(out, "Content-Length: %zu\r\n", req->body.len);
    if (rc == 0)
        rc = buf_append(out, "\r\n", 2);
    if (rc == 0)
        rc = buf_append(out, req->body.base, req->body.len);
    if (rc)
        return rc;
    hc->state = HC_RESPONDING; /* no answer from here: the other process gives it */
    *fd = net_conn_release(http_conn_net(hc));
    return 0;
}

net_loop_t *http_server_loop(const http_server_t *srv) {
    return srv->nl;
}

int http_server_handover(http_server_t *srv) {
    return net_listener_handover(srv->listener);
}

void http_server_stop_listening(http_server_t *srv) {
    net_listener_stop(srv->listener);
}

void http_server_close(http_server_t *srv) {
    net_listener_close(srv->listener);
    net_loop_close_conns(srv->nl);
    for (size_t i = 0; i < srv->nroutes; i++)
        free(srv->routes[i].prefix);
    free(srv->routes);
    free(srv);
}

/* ---- responses ---- */

/* Formats and queues a response head; content_length < 0 sends none. */
static int send_head(http_conn_t *hc, int status, const char *extra, int64_t content_length) {
    char head[512];
    char length[48] = "";
    if (content_length >= 0)
        snprintf(length, sizeof length, "Content-Length: %" PRId64 "\r\n", content_length);
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\n%sConnection: %s\r\n", status,
                     http_status_reason(status), length, hc->keep_alive ? "keep-alive" : "close");
    net_conn_t *c = http_conn_net(hc);
    size_t extra_len = extra ? strlen(extra) : 0;
    rcbuf_t *b = rcbuf_new(NULL, (size_t)n + extra_len + 2);
    if (!b)
        return -ENOMEM;
    memcpy(b->data, head, (size_t)n);
    if (extra_len)
        memcpy(b->data + n, extra, extra_len);
    memcpy(b->data + n + extra_len, "\r\n", 2);
    int rc = net_conn_write(c, &b->ref, b->data, b->len);
    ref_release(&b->ref);
    return rc;
}

int http_send_head(http_conn_t *hc, int status, const char *extra, int64_t content_length) {
    if (hc->state != HC_DISPATCHED && hc->state != HC_HELD)
        return -EINVAL;
    hc->state = HC_RESPONDING;
    hc->on_abort = NULL;
    hc->on_hold_timeout = NULL;
    net_conn_set_deadline(http_conn_net(hc), 0);
    /* 1xx, 204 and 304 answers carry no Content-Length (RFC 9110 §8.6). */
    bool no_length = status < 200 || status == 204 || status == 304;
    if (hc->access) {
        hc->access->status = status;
        hc->access->length = no_length ? -1 : content_length;
    }
    return send_head(hc, status, extra, no_length ? -1 : content_length);
}

int http_stream_begin(http_conn_t *hc, int status, const char *extra,
                      void (*on_abort)(http_conn_t *, void *), void *arg) {
    if (hc->state != HC_DISPATCHED && hc->state != HC_HELD)
        return -EINVAL;
    hc->state = HC_STREAMING;
    hc->keep_alive = false; /* the body ends with the connection */
    hc->on_abort = on_abort;
    hc->abort_arg = arg;
    hc->on_hold_timeout = NULL;
    net_conn_set_deadline(http_conn_net(hc), 0);
    if (hc->access)
        hc->access->status = status;
    return send_head(hc, status, extra, -1);
}

void http_stream_end(http_conn_t *hc) {
    if (hc->state == HC_STREAMING)
        net_conn_close(http_conn_net(hc));
}

size_t http_conn_queued(http_conn_t *hc) {
    return net_conn_queued(http_conn_net(hc));
}

int http_send_body(http_conn_t *hc, ref_t *owner, const void *data, size_t len) {
    if (hc->is_head_method)
        return 0;
    return net_conn_write(http_conn_net(hc), owner, data, len);
}

int http_send_body_copy(http_conn_t *hc, const void *data, size_t len) {
    if (hc->is_head_method)
        return 0;
    return net_conn_write_copy(http_conn_net(hc), data, len);
}

void http_response_done(http_conn_t *hc) {
    net_conn_t *c = http_conn_net(hc);
    if (hc->state != HC_RESPONDING)
        return;
    hc->state = HC_IDLE;
    if (hc->access) {
        access_rec_t *a = hc->access;
        hc->access = NULL;
        access_end(c, a, a->status);
    }
    if (!hc->keep_alive) {
        net_conn_close(c);
        return;
    }
    net_conn_set_deadline(c, hc->srv->cfg.keepalive_timeout);
    if (!hc->in_on_data)
        net_conn_resume(c);
}

int http_respond(http_conn_t *hc, int status, const char *content_type, const char *extra,
                 const void *body, size_t len) {
    char lines[1024];
    int n =
        snprintf(lines, sizeof lines, "%s%s%s%s", content_type ? "Content-Type: " : "",
                 content_type ? content_type : "", content_type ? "\r\n" : "", extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof lines)
        return -EINVAL;
    int rc = http_send_head(hc, status, lines, (int64_t)len);
    if (rc == 0)
        rc = http_send_body_copy(hc, body, len);
    http_response_done(hc);
    return rc;
}

void http_conn_set_close(http_conn_t *hc) {
    hc->keep_alive = false;
}

void http_respond_error(http_conn_t *hc, int status, const char *message) {
    hc->keep_alive = false;
    char body[256];
    int n = snprintf(body, sizeof body, "%s\n", message);
    if (http_respond(hc, status, "text/plain; charset=utf-8", NULL, body, (size_t)n))
        net_conn_abort(http_conn_net(hc));
}

/* Answers a request that never reached a route (framing errors, limits). */
static void reject(http_conn_t *hc, int status) {
    hc->state = HC_DISPATCHED;
    LOG_LIMITED(LOG_LEVEL_INFO, "http", "request refused with %d", status);
    http_respond_error(hc, status, http_status_reason(status));
}

void http_conn_hold(http_conn_t *hc, void (*on_abort)(http_conn_t *, void *), void *arg) {
    /* Only a route holds its request, during its own call. */
    PARLEY_ASSERT(hc->state == HC_DISPATCHED);
    if (hc->state != HC_DISPATCHED)
        return;
    hc->state = HC_HELD;
    hc->on_abort = on_abort;
    hc->on_hold_timeout = NULL;
    hc->abort_arg = arg;
}

void http_conn_hold_deadline(http_conn_t *hc, uint64_t ms,
                             void (*on_timeout)(http_conn_t *, void *)) {
    PARLEY_ASSERT(hc->state == HC_HELD);
    if (hc->state != HC_HELD)
        return;
    hc->on_hold_timeout = on_timeout;
    net_conn_set_deadline(http_conn_net(hc), ms);
}

void http_conn_detach(http_conn_t *hc) {
    net_conn_set_deadline(http_conn_net(hc), 0);
}

/* ---- requests ---- */

static void dispatch(http_conn_t *hc, http_req_t *req) {
    http_server_t *srv = hc->srv;
    hc->state = HC_DISPATCHED;
    hc->keep_alive = req->head.keep_alive && !req->body_too_large;
    hc->is_head_method = slice_eq(req->head.method, "HEAD");
    net_conn_set_deadline(http_conn_net(hc), 0);
    PARLEY_ASSERT(!hc->access); /* the previous request's ended with its answer */
    hc->access = srv->access ? access_begin(hc, req) : NULL;
    access_rec_t *access = hc->access;
    net_conn_t *c = http_conn_net(hc);
    for (size_t i = 0; i < srv->nroutes; i++) {
        route_t *r = &srv->routes[i];
        if (req->head.path.len < r->prefix_len ||
            memcmp(req->head.path.base, r->prefix, r->prefix_len) != 0)
            continue;
        if (r->fn(hc, req, r->arg)) {
            if (c->ops != &http_ops) {
                /* Taken over: hc's memory belongs to the new protocol now. */
                access_end(c, access, 101);
                return;
            }
            if (req->body_too_large && hc->state == HC_DISPATCHED)
                http_respond_error(hc, 413, "request body too large");
            return;
        }
    }
    if (req->body_too_large) {
        http_respond_error(hc, 413, "request body too large");
        return;
    }
    /* A client that asked to switch protocols cannot go on speaking HTTP. */
    if (req->head.upgrade)
        hc->keep_alive = false;
    http_respond(hc, 404, "text/plain; charset=utf-8", NULL, "Not Found\n", 10);
}

/* Chunked bodies: decode what has arrived, in place right behind the head. Returns 1
 * when the body is complete, 0 for more, or -status. */
static int read_chunked(http_conn_t *hc, uint8_t *data, size_t len, size_t *total) {
    char *body = (char *)data + hc->head_len;
    size_t raw_at = hc->head_len + hc->body_raw;
    size_t avail = len - raw_at;
    size_t consumed = 0;
    size_t out = avail;
    /* The decoder works in place on the raw bytes; move its output down to follow the
     * body decoded so far. */
    int rc = http_chunked_decode(&hc->chunked, (char *)data + raw_at, &out, &consumed);
    if (rc < 0)
        return rc;
    if (hc->body_len + out > hc->srv->cfg.max_body_size)
        return -413;
    memmove(body + hc->body_len, data + raw_at, out);
    hc->body_len += out;
    hc->body_raw += consumed;
    *total = hc->head_len + hc->body_raw;
    return rc == 1;
}

static ssize_t hc_on_data(net_conn_t *c, uint8_t *data, size_t len) {
    http_conn_t *hc = hc_of(c);
    if (hc->state != HC_IDLE && hc->state != HC_READING) {
        /* A response is pending: pipelined input waits in the connection's buffer. The
         * connection keeps reading, so a client that goes away while its request is held
         * (long-polling) is noticed at once; one that piles up input meanwhile is cut. */
        return len > HTTP_PIPELINE_MAX ? -1 : 0;
    }
    if (hc->state == HC_IDLE) {
        hc->state = HC_READING;
        hc->in_body = false;
        net_conn_set_deadline(c, hc->srv->cfg.request_timeout);
    }
    http_req_t req;
    ssize_t head = http_parse_request((const char *)data, len, &hc->srv->limits, &req.head);
    if (head == HTTP_PARSE_INCOMPLETE)
        return 0;
    if (head < 0) {
        reject(hc, (int)-head);
        return (ssize_t)len;
    }
    req.body = slice_make(data + head, 0);
    req.body_too_large = false;
    size_t total = (size_t)head;
    if (req.head.chunked) {
        if (!hc->in_body) {
            hc->in_body = true;
            hc->head_len = (uint32_t)head;
            hc->body_raw = hc->body_len = 0;
            memset(&hc->chunked, 0, sizeof hc->chunked);
        }
        int rc = read_chunked(hc, data, len, &total);
        if (rc == -413) {
            req.body_too_large = true;
        } else if (rc < 0) {
            reject(hc, -rc);
            return (ssize_t)len;
        } else if (rc == 0) {
            return 0;
        } else {
            req.body.len = hc->body_len;
        }
    } else if (req.head.content_length > 0) {
        if ((uint64_t)req.head.content_length > hc->srv->cfg.max_body_size) {
            req.body_too_large = true;
        } else {
            if (len - (size_t)head < (size_t)req.head.content_length)
                return 0;
            req.body.len = (size_t)req.head.content_length;
            total += req.body.len;
        }
    }
    hc->in_body = false;
    hc->in_on_data = true;
    dispatch(hc, &req);
    if (c->ops != &http_ops)
        return (ssize_t)total;
    hc->in_on_data = false;
    return (ssize_t)(req.body_too_large ? len : total);
}

static void hc_on_timeout(net_conn_t *c) {
    http_conn_t *hc = hc_of(c);
    if (hc->state == HC_READING) {
        LOG_DEBUG("http", "request timeout");
        reject(hc, 408);
    } else if (hc->state == HC_HELD && hc->on_hold_timeout) {
        void (*fn)(http_conn_t *, void *) = hc->on_hold_timeout;
        hc->on_hold_timeout = NULL;
        fn(hc, hc->abort_arg);
    } else {
        net_conn_close(c);
    }
}

static void hc_on_close(net_conn_t *c) {
    http_conn_t *hc = hc_of(c);
    if (hc->access) {
        access_rec_t *a = hc->access;
        hc->access = NULL;
        access_end(c, a, hc->state == HC_HELD || !a->status ? 499 : a->status);
    }
    if ((hc->state == HC_HELD || hc->state == HC_STREAMING) && hc->on_abort) {
        void (*fn)(http_conn_t *, void *) = hc->on_abort;
        hc->on_abort = NULL;
        fn(hc, hc->abort_arg);
    }
}
