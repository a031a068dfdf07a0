/* http/server.h — the HTTP/1.1 server: connections, routing, responses. The public API
 * is parley/http.h; this header adds what the layers above need inside the library.
 *
 * Reads requests with http/parser.c (head re-parsed in place while incomplete; bodies
 * by Content-Length or chunked, decoded in place), enforces limits and timeouts, and
 * hands each complete request to the first route whose path prefix matches. A route
 * answers at once or holds the request (long-polling) and answers later; requests
 * pipelined behind a held one wait their turn. A route may also take the connection
 * over (WebSocket upgrade): it swaps the net ops and reinitialises the connection's
 * ext area (HTTP_CONN_EXT_SIZE bytes).
 *
 * Responses are written with net_conn_write: the head is formatted into one small
 * buffer, bodies are queued by reference (static files, shared packets) or copied. */
#ifndef PARLEY_HTTP_SERVER_H
#define PARLEY_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/parser.h"
#include "net/listener.h"
#include "parley/http.h"

/* Bytes of protocol state inline in every connection: the HTTP state, and after an
 * upgrade the state of whatever protocol took the connection over (each such protocol
 * checks at compile time that it fits). */
#define HTTP_CONN_EXT_SIZE 96

/* What a route sees (opaque in parley/http.h). Slices point into the connection's
 * input and are valid only during the route call. body_too_large: the body exceeded
 * max_body_size; the body is empty and the server answers 413 and closes the connection
 * after the route returns unless the route answered itself. */
struct http_req {
    http_request_t head;
    slice_t body;
    bool body_too_large;
};

net_loop_t *http_server_loop(const http_server_t *srv);

/* A connection handed over by another process (see net_listener_adopt): its descriptor
 * (owned from now on) and the bytes of its request. */
int http_server_adopt(http_server_t *srv, int fd, uint8_t *data, size_t len);
/* From a route: gives the request up to another process. The request is written to out
 * as HTTP/1.1 (its body re-framed with Content-Length), the connection stops being read
 * and *fd is its descriptor (still the connection's), to send over a Unix socket; then
 * net_conn_abort(http_conn_net(hc)) closes it here. Bytes the client pipelined behind
 * this request are dropped. */
int http_conn_handoff(http_conn_t *hc, const http_req_t *req, buf_t *out, int *fd);

/* Queues body bytes by reference (retained until written). */
int http_send_body(http_conn_t *hc, ref_t *owner, const void *data, size_t len);

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
