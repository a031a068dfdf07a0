/* ws/handshake.c — RFC 6455 §4.2.1-2, the server's side of the opening handshake.
 *
 * Reads only the parsed request (header values arrive trimmed from http/parser.c) and
 * allocates nothing except OpenSSL's digest context. Header fields are scanned here
 * rather than looked up once, because Connection and Upgrade may legitimately be split
 * over several fields while the key and version must appear exactly once. Origin is
 * deliberately not checked: which origins to admit is the caller's policy. */
#include "ws/handshake.h"

#include <openssl/evp.h>
#include <string.h>

#include "util/base64.h"
#include "util/log.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_LEN 24     /* base64 of 16 bytes, with "==" */
#define WS_KEY_RAW_LEN 16 /* §4.1: "a randomly selected 16-byte value" */
#define SHA1_LEN 20

/* True when any field called `name` carries `token` in its comma-separated list. */
static bool header_has_token(const http_request_t *req, const char *name, const char *token) {
    for (size_t i = 0; i < req->num_headers; i++) {
        const http_header_t *h = &req->headers[i];
        if (slice_case_eq(h->name, name) && slice_has_token(h->value, token))
            return true;
    }
    return false;
}

/* Finds the one field called `name`. Returns 1 and sets *value when it occurs exactly
 * once, 0 when it is absent, -1 when it is repeated. */
static int header_unique(const http_request_t *req, const char *name, slice_t *value) {
    int found = 0;
    for (size_t i = 0; i < req->num_headers; i++) {
        if (!slice_case_eq(req->headers[i].name, name))
            continue;
        if (found)
            return -1;
        *value = req->headers[i].value;
        found = 1;
    }
    return found;
}

static bool key_valid(slice_t key) {
    uint8_t raw[BASE64_DECODED_MAX(WS_KEY_LEN)];
    return key.len == WS_KEY_LEN && base64_decode(key.base, key.len, raw) == WS_KEY_RAW_LEN;
}

int ws_handshake_check(const http_request_t *req) {
    if (!slice_eq(req->method, "GET") || req->minor_version != 1)
        return -400;
    slice_t host;
    if (header_unique(req, "Host", &host) != 1)
        return -400;
    if (!header_has_token(req, "Connection", "upgrade") ||
        !header_has_token(req, "Upgrade", "websocket"))
        return -400;
    slice_t key;
    if (header_unique(req, "Sec-WebSocket-Key", &key) != 1 || !key_valid(key))
        return -400;
    /* Checked last: -426 promises the client that only the version stood in its way. */
    slice_t version;
    int n = header_unique(req, "Sec-WebSocket-Version", &version);
    if (n < 0)
        return -400;
    if (n == 0 || !slice_eq(version, "13"))
        return -426;
    return 0;
}

void ws_handshake_accept(slice_t key, char accept[WS_ACCEPT_LEN + 1]) {
    uint8_t digest[SHA1_LEN];
    unsigned int digest_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
              EVP_DigestUpdate(ctx, key.base, key.len) == 1 &&
              EVP_DigestUpdate(ctx, WS_GUID, sizeof(WS_GUID) - 1) == 1 &&
              EVP_DigestFinal_ex(ctx, digest, &digest_len) == 1 && digest_len == SHA1_LEN;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        /* Only an allocation failure gets here. The signature has no error path, so
         * fail closed: 28 characters that are not base64 of any digest (a real one
         * ends in exactly one '='), which every client refuses. */
        LOG_ERROR("ws", "SHA-1 for Sec-WebSocket-Accept failed");
        memset(accept, '=', WS_ACCEPT_LEN);
        accept[WS_ACCEPT_LEN] = '\0';
        return;
    }
    base64_encode(digest, SHA1_LEN, accept);
}
