/* chat/api.h — the chat service over plain HTTP (docs/HTTP-API.md): a REST API to post
 * messages and emit Socket.IO events from other backends, message history with
 * long-polling, room members, and Server-Sent Events streams (through chat/feed.h).
 *
 * Everything is under /api/: routes answer JSON, errors are {error, message} with the
 * status the contract gives. Requests are authenticated by the API key (constant-time
 * comparison; `Authorization: Bearer <key>` or `X-API-Key`) or a user JWT
 * (`Authorization: Bearer <jwt>` or `?token=`), verified by chat/auth.h as Socket.IO
 * handshakes are.
 *
 * Ownership: the API borrows every object given to chat_api_new; they must outlive it.
 * A POST waiting for the store holds its request; when the connection goes first, the
 * message is still stored and announced, only the answer is dropped. */
#ifndef PARLEY_CHAT_API_H
#define PARLEY_CHAT_API_H

#include <stddef.h>

#include "chat/auth.h"
#include "chat/feed.h"
#include "chat/service.h"
#include "http/server.h"
#include "parley/sio.h"

typedef struct {
    const char *api_key;             /* NULL or "": no key, only user tokens */
    size_t max_body;                 /* request body bytes; 413 above (65536) */
    const char *const *cors_origins; /* allowed Origins ("*": any); borrowed */
    size_t cors_origin_count;
} chat_api_config_t;

void chat_api_config_defaults(chat_api_config_t *cfg);

typedef struct chat_api chat_api_t;

/* Registers the route /api/ on http (register /api/dev/token before it if wanted). */
int chat_api_new(http_server_t *http, sio_server_t *io, chat_service_t *svc,
                 const chat_auth_t *auth, chat_feed_t *feed, const chat_api_config_t *cfg,
                 chat_api_t **out);
/* After the HTTP server is closed. Answers still due (POSTs waiting for the store) are
 * dropped; their messages are still stored. */
void chat_api_free(chat_api_t *api);

/* ---- JSON answers (for the program's own routes too) ---- */

/* Answers hc with body as compact JSON, Cache-Control: no-store, then `extra` (complete
 * "Name: value\r\n" lines, or NULL). Takes body's reference; NULL (a failed json_pack)
 * answers 500 {error: internal_error, message: out of memory}. An answer that cannot be
 * queued is logged: the connection is then going away. */
void chat_api_respond_json(http_conn_t *hc, int status, const char *extra, json_t *body);
/* An error answer: {error, message} as above. The strings are borrowed for the call. */
void chat_api_respond_error(http_conn_t *hc, int status, const char *extra, const char *error,
                            const char *message);

#endif
