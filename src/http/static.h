/* http/static.h — static files: the web page and the client bundle.
 *
 * Files are read once and kept in memory (reference counted, so a response in flight
 * keeps its bytes even if the file changes); each request re-validates with stat() and
 * reloads a changed file. Responses carry the Content-Type of the extension, a strong
 * ETag made from size and modification time (If-None-Match → 304), and, when the client
 * accepts gzip and "<file>.gz" exists beside the file, the precompressed bytes with
 * Content-Encoding: gzip. Paths with ".." segments, NULs or backslashes are refused. */
#ifndef PARLEY_HTTP_STATIC_H
#define PARLEY_HTTP_STATIC_H

#include "http/server.h"

typedef struct http_static http_static_t;

/* Serves files under `root` (copied). Returns NULL when out of memory. */
http_static_t *http_static_new(const char *root);
void http_static_free(http_static_t *st);

/* Answers req with the file at `path` (relative to the root, "/" meaning "/index.html").
 * Returns true when it answered (200, 304, 404 or 405), false when the path is not a
 * file under the root (so that another route may try). */
bool http_static_serve(http_static_t *st, http_conn_t *hc, const http_req_t *req, slice_t path);

/* The Content-Type for a file name, from its extension. */
const char *http_static_type(const char *name);

#endif
