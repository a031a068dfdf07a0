/* http/static.h — static files: the web page and the client bundle. The API is in
 * parley/http.h; this header adds what the library uses inside.
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

/* The Content-Type for a file name, from its extension. */
const char *http_static_type(const char *name);

#endif
