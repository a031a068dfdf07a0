/* http/server.h — the HTTP/1.1 server: connections, routing, responses.
 *
 * Reads requests with http/parser.c (head re-parsed in place while incomplete; bodies
 * by Content-Length or chunked, decoded in place), enforces limits and timeouts, and
 * hands each complete request to the first route whose path prefix matches. A route
 * answers at once or holds the request (long-polling) and answers later; requests
 * pipelined behind a held one wait their turn. A route may also take the connection
 * over (WebSocket upgrade): it swaps the net ops and reinitialises the connection's
 * ext area, which is sized for the largest protocol registered (http_server_config_t
 * ext_size).
 *
 * Responses are written with net_conn_write: the head is formatted into one small
 * buffer, bodies are queued by reference (static files, shared packets) or copied. */
#ifndef PARLEY_HTTP_SERVER_H
#define PARLEY_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/parser.h"
#include "net/conn.h"

typedef struct http_server http_server_t;
typedef struct http_conn http_conn_t;

typedef struct {
    const char *host;           /* default "127.0.0.1" */
    int port;                   /* 0: ephemeral */
    size_t max_head_size;       /* bytes of request line + headers; 431 above (8192) */
    size_t max_headers;         /* header fields; 431 above (100, at most 64 kept) */
    size_t max_body_size;       /* request body bytes; 413 above (1 MiB) */
    uint32_t request_timeout;   /* ms from a request's first byte to its last; 408 (10000) */
    uint32_t keepalive_timeout; /* ms an idle keep-alive connection is kept (30000) */
    size_t ext_size;            /* bytes of per-connection state upper protocols need */
} http_server_config_t;

void http_server_config_defaults(http_server_config_t *cfg);

/* What a route sees. Slices point into the connection's input and are valid only
 * during the route call. body_too_large: the body exceeded max_body_size; the body is
 * empty and the server answers 413 and closes the connection after the route returns
 * unless the route answered itself. */
typedef struct {
    http_request_t head;
    slice_t body;
    bool body_too_large;
} http_req_t;

/* A route: returns true when it took the request (answered, held, or upgraded), false
 * to let the next route try. */
typedef bool (*http_route_fn)(http_conn_t *hc, http_req_t *req, void *arg);

/* Creates a server listening on cfg->host:cfg->port. Returns 0 or a negative uv code. */
int http_server_new(net_loop_t *nl, const http_server_config_t *cfg, http_server_t **out);
/* Routes are tried in registration order; prefix "" matches every path. The server
 * answers 404 when none takes a request. */
int http_server_route(http_server_t *srv, const char *prefix, http_route_fn fn, void *arg);
int http_server_port(const http_server_t *srv);
net_loop_t *http_server_loop(const http_server_t *srv);
/* Stops listening and closes every connection; then frees the server once they are
 * gone (run the loop until it has no handles). */
void http_server_close(http_server_t *srv);

/* ---- answering (exactly one response per request) ---- */

/* Queues the status line and headers: Content-Length (unless content_length < 0, which
 * means chunked is not supported: pass the length), Connection, and `extra` (zero or
 * more complete "Name: value\r\n" lines, or NULL). */
int http_send_head(http_conn_t *hc, int status, const char *extra, int64_t content_length);
/* Queues body bytes by reference (retained until written) or by copy. */
int http_send_body(http_conn_t *hc, ref_t *owner, const void *data, size_t len);
int http_send_body_copy(http_conn_t *hc, const void *data, size_t len);
/* The response is complete: the next pipelined request (if any) is read, or the
 * connection is closed when it is not keep-alive. */
void http_response_done(http_conn_t *hc);

/* Head + copied body + done. content_type may be NULL (no body type). */
int http_respond(http_conn_t *hc, int status, const char *content_type, const char *extra,
                 const void *body, size_t len);
/* An error answer with a short text body; the connection is closed after it. */
void http_respond_error(http_conn_t *hc, int status, const char *message);
/* Forces "Connection: close" on the current response and closing after it. */
void http_conn_set_close(http_conn_t *hc);

/* ---- holding and taking over ---- */

/* The route keeps the request open to answer later (long-polling). The request timeout
 * no longer applies; on_abort(hc, arg) is called if the connection dies first (the
 * holder must then forget hc). Calling http_send_head ends the hold. */
void http_conn_hold(http_conn_t *hc, void (*on_abort)(http_conn_t *hc, void *arg), void *arg);
/* For a held request: on_timeout(hc, arg) runs once ms have passed (resolution
 * NET_SWEEP_MS) unless the request was answered first; it must answer it. Costs no
 * timer: the connection's deadline is used. */
void http_conn_hold_deadline(http_conn_t *hc, uint64_t ms,
                             void (*on_timeout)(http_conn_t *hc, void *arg));

/* A response without a length that lasts until the connection closes (Server-Sent
 * Events): sends the head with `extra` lines and "Connection: close", after which
 * http_send_body queues more of the body at any time. on_abort(hc, arg) runs when the
 * connection is gone, whoever closed it (the streamer must then forget hc); the
 * streamer ends the stream with http_stream_end. Only from a route call or a hold. */
int http_stream_begin(http_conn_t *hc, int status, const char *extra,
                      void (*on_abort)(http_conn_t *hc, void *arg), void *arg);
/* Ends a stream: what is queued is written, then the connection closes (on_abort runs
 * then). */
void http_stream_end(http_conn_t *hc);
/* Bytes of response queued and not yet taken by the kernel (backpressure). */
size_t http_conn_queued(http_conn_t *hc);

/* For protocol switches: the underlying connection. After http_conn_detach the HTTP
 * layer no longer touches the connection or its ext area; the bytes after the current
 * request go to whatever ops the route installed. */
net_conn_t *http_conn_net(http_conn_t *hc);
void http_conn_detach(http_conn_t *hc);

const char *http_status_reason(int status);

/* CORS: when the request's Origin is one of `origins` ("*" allows any), writes the
 * Access-Control-Allow-Origin (the origin echoed, so credentialed requests work),
 * -Allow-Credentials and Vary header lines into out (NUL-terminated) and returns their
 * length; else writes "" and returns 0. */
size_t http_cors_headers(const char *const *origins, size_t count, const http_request_t *req,
                         char *out, size_t size);

#endif
