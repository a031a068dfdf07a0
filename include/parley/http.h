/* parley/http.h — the HTTP/1.1 server: listening, routing, answering, static files.
 *
 * A server listens on one address and hands each complete request to the first route
 * whose path prefix matches; the Engine.IO and Socket.IO servers (parley/eio.h,
 * parley/sio.h) register their own routes on it, beside the application's. A route
 * answers at once, or holds the request and answers later (long-polling), or streams a
 * response until the connection closes (Server-Sent Events).
 *
 * Ownership: the server owns its connections and requests. An http_req_t and every
 * string read from it are valid only during the route call; an http_conn_t is valid
 * until its response is done (or, when held or streamed, until its on_abort runs).
 * Bodies passed to the answering functions are copied. */
#ifndef PARLEY_HTTP_H
#define PARLEY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parley/loop.h"
#include "parley/tls.h"

#pragma GCC visibility push(default)

typedef struct http_server http_server_t;
typedef struct http_conn http_conn_t;
typedef struct http_req http_req_t;

typedef struct {
    const char *host;           /* default "127.0.0.1" */
    int port;                   /* 3000; 0: ephemeral (see http_server_port) */
    size_t max_head_size;       /* bytes of request line + headers; 431 above (8192) */
    size_t max_headers;         /* header fields; 431 above (100) */
    size_t max_body_size;       /* request body bytes; 413 above (1 MiB) */
    uint32_t request_timeout;   /* ms from a request's first byte to its last; 408 (10000) */
    uint32_t keepalive_timeout; /* ms an idle keep-alive connection is kept (30000) */
    bool reuse_port;            /* SO_REUSEPORT: several processes on one port (parley/cluster.h) */
    net_tls_t *tls; /* borrowed: connections speak TLS (parley/tls.h); NULL: plain TCP */
} http_server_config_t;

void http_server_config_defaults(http_server_config_t *cfg);

/* A route: returns true when it took the request (answered, held or streamed), false
 * to let the next route try. */
typedef bool (*http_route_fn)(http_conn_t *hc, http_req_t *req, void *arg);

/* Creates a server listening on cfg->host:cfg->port (cfg is copied). */
int http_server_new(net_loop_t *nl, const http_server_config_t *cfg, http_server_t **out);
/* Routes are tried in registration order; prefix "" matches every path. The server
 * answers 404 when none takes a request. */
int http_server_route(http_server_t *srv, const char *prefix, http_route_fn fn, void *arg);
/* The port actually bound. */
int http_server_port(const http_server_t *srv);

/* One answered request, for an access log. Strings are NUL-terminated and valid during
 * the call; the query string is never included (it may carry tokens). */
typedef struct {
    const char *remote;     /* the peer's address ("" when unknown) */
    const char *method;     /* cut at 15 bytes */
    const char *path;       /* up to '?', cut at 255 bytes */
    const char *user_agent; /* cut at 127 bytes; "" when absent */
    int status;             /* 101: switched protocols; 499: the client left unanswered */
    int64_t length;         /* the answer's Content-Length; -1 for a stream or none */
    uint64_t duration_ms;   /* from the complete request to the end of its answer */
} http_access_t;
typedef void (*http_access_fn)(const http_access_t *entry, void *arg);
/* fn is called once per request a route took, when its answer ends (a long-poll when
 * answered, a stream when it closes, an upgrade at once), possibly after the server is
 * closed: arg must outlive the server's connections. NULL: none (the default). A request
 * costs one small allocation while fn is set, none otherwise. */
void http_server_on_access(http_server_t *srv, http_access_fn fn, void *arg);

/* With reuse_port, for a restart: new connections go to the process that listened on the
 * port first; this one gets them once the older one stops listening (net_listener_handover).
 * Returns 0 or a negative error. */
int http_server_handover(http_server_t *srv);
/* Stops listening (connections the kernel already queued are taken first) and keeps
 * serving the open connections, and those handed over by other workers: the start of a
 * drain. http_server_port is -1 after it. */
void http_server_stop_listening(http_server_t *srv);
/* Stops listening and closes every connection; the server is freed once they are gone
 * (run the loop until it has no handles). Close the servers attached to it first. */
void http_server_close(http_server_t *srv);

/* ---- the request (valid during the route call) ---- */

/* Each returns the start of the text and its length in *len (not NUL-terminated). */
const char *http_req_method(const http_req_t *req, size_t *len);
const char *http_req_path(const http_req_t *req, size_t *len);  /* up to '?' */
const char *http_req_query(const http_req_t *req, size_t *len); /* after '?'; "" if none */
const char *http_req_body(const http_req_t *req, size_t *len);
/* The first header field named `name` (case-insensitive), or NULL. */
const char *http_req_header(const http_req_t *req, const char *name, size_t *len);

/* ---- answering (exactly one response per request) ---- */

/* Head + body + done. content_type may be NULL (no body type); extra is zero or more
 * complete "Name: value\r\n" lines, or NULL. */
int http_respond(http_conn_t *hc, int status, const char *content_type, const char *extra,
                 const void *body, size_t len);
/* An error answer with a short text body; the connection is closed after it. */
void http_respond_error(http_conn_t *hc, int status, const char *message);
/* A response in parts: the head (Content-Length: content_length), then body bytes
 * (copied) until content_length are queued, then http_response_done. */
int http_send_head(http_conn_t *hc, int status, const char *extra, int64_t content_length);
int http_send_body_copy(http_conn_t *hc, const void *data, size_t len);
void http_response_done(http_conn_t *hc);
/* Forces "Connection: close" on the current response and closing after it. */
void http_conn_set_close(http_conn_t *hc);

/* ---- answering later ---- */

/* The route keeps the request open to answer later (long-polling). The request timeout
 * no longer applies; on_abort(hc, arg) is called if the connection dies first (the
 * holder must then forget hc). Sending the head ends the hold. Only from a route call. */
void http_conn_hold(http_conn_t *hc, void (*on_abort)(http_conn_t *hc, void *arg), void *arg);
/* For a held request: on_timeout(hc, arg) runs once ms have passed (resolution 250 ms)
 * unless the request was answered first; it must answer it. */
void http_conn_hold_deadline(http_conn_t *hc, uint64_t ms,
                             void (*on_timeout)(http_conn_t *hc, void *arg));
/* A response without a length that lasts until the connection closes (Server-Sent
 * Events): sends the head with `extra` lines and "Connection: close", after which
 * http_send_body_copy queues more of the body at any time. on_abort(hc, arg) runs when
 * the connection is gone, whoever closed it; http_stream_end ends the stream. Only from
 * a route call or a hold. */
int http_stream_begin(http_conn_t *hc, int status, const char *extra,
                      void (*on_abort)(http_conn_t *hc, void *arg), void *arg);
void http_stream_end(http_conn_t *hc);
/* Bytes of response queued and not yet taken by the kernel (backpressure). */
size_t http_conn_queued(http_conn_t *hc);

/* ---- static files ---- */

/* Files under a directory, read once and kept in memory (re-validated with stat() on
 * each request), with Content-Type by extension, ETag/304 and precompressed
 * "<file>.gz" when the client accepts gzip. Paths with ".." segments are refused. */
typedef struct http_static http_static_t;
/* Serves files under `root` (copied). NULL when out of memory. */
http_static_t *http_static_new(const char *root);
/* Only once no response of it is being written (after http_server_close). */
void http_static_free(http_static_t *st);
/* Header lines ("Name: value\r\n" each, copied; NULL or "" for none; under 1 KiB) added
 * to every answer of st (200, 304, 405), e.g. a page's security headers. Returns 0,
 * -EINVAL (too long) or -ENOMEM. */
int http_static_set_headers(http_static_t *st, const char *lines);
/* Answers req with the file at path[0..len) relative to the root ("/" means
 * "/index.html"). Returns true when it answered (200, 304, 404 or 405), false when the
 * path names no file under the root (so another route may try). */
bool http_static_serve(http_static_t *st, http_conn_t *hc, const http_req_t *req, const char *path,
                       size_t len);

#pragma GCC visibility pop

#endif
