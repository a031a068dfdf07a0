/* ws/handshake.h — the RFC 6455 opening handshake, server side.
 *
 * Validates an HTTP upgrade request and computes Sec-WebSocket-Accept. Writing the 101
 * response and switching the connection's protocol is the caller's job (ws/conn.c). */
#ifndef PARLEY_WS_HANDSHAKE_H
#define PARLEY_WS_HANDSHAKE_H

#include "http/parser.h"

#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

/* Checks method GET, HTTP/1.1, exactly one Host, Connection containing "upgrade",
 * Upgrade containing "websocket" (both lists may span several fields), exactly one
 * Sec-WebSocket-Version that is "13" and exactly one Sec-WebSocket-Key that is base64
 * of 16 bytes. Returns 0, -400 for a malformed request, or -426 when only the version
 * is absent or unsupported (the response must then carry Sec-WebSocket-Version: 13). */
int ws_handshake_check(const http_request_t *req);

/* accept gets WS_ACCEPT_LEN characters and a NUL: base64(SHA-1(key + GUID)). key is
 * borrowed for the call. Should OpenSSL fail (out of memory), accept is 28 '='
 * characters, which no client accepts, and an error is logged. */
void ws_handshake_accept(slice_t key, char accept[WS_ACCEPT_LEN + 1]);

#endif
