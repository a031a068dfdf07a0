/* http/access.h — an access log: one line per answered request (http_server_on_access),
 * as text or as a JSON object, to a file or to stdout.
 *
 * Lines are buffered and written out at least once a second and when the log is closed,
 * as nginx's buffered access_log: a write per request would cost a system call on the
 * loop each time. The owner opens it, passes http_access_log_write and the log to
 * http_server_on_access, and closes it after the server. */
#ifndef PARLEY_HTTP_ACCESS_H
#define PARLEY_HTTP_ACCESS_H

#include <stdbool.h>
#include <uv.h>

#include "parley/http.h"

typedef struct http_access_log http_access_log_t;

/* path "-": stdout; else the file, appended to (created 0640). Returns 0, -ENOMEM or a
 * negative errno from opening it. */
int http_access_log_open(uv_loop_t *loop, const char *path, bool json, http_access_log_t **out);
/* An http_access_fn; arg is the log. */
void http_access_log_write(const http_access_t *e, void *arg);
/* Writes what is buffered, closes the file (not stdout) and frees the log once its timer
 * is closed. */
void http_access_log_close(http_access_log_t *al);

#endif
