/* tests/fuzz/jwt_token_fuzz.c — libFuzzer target for HS256 token verification
 * (chat_auth_verify in chat/auth.c) and the base64url decoder under it (util/base64.c),
 * held against libjwt, which verified every token before.
 *
 * Input: a mode byte, then up to three parts separated by '\n': the header, the claims,
 * the signature. Mode bit 0 takes the header part as the segment's text as it is (else
 * it is base64url-encoded first), bit 1 the same for the claims; bit 2 takes the
 * signature part as it is (else the token is signed with the key, so that a fuzzed
 * header and claims get past the MAC); bit 3 picks a key longer than SHA-256's block
 * (hashed first, RFC 2104); bit 4 an instance with a room claim; bit 5 a second clock.
 *
 * The reference is the old path: jwt_decode with the key, alg HS256, the claims as libjwt
 * dumps them, then chat_auth_check_claims. A token taken here must be taken by the
 * reference with the same user and room claim. A token the reference takes and this one
 * refuses must be one libjwt read leniently: a header or claims segment that is not strict
 * base64url (another byte, padding, a lone last character, leftover bits set; checked
 * here by a direct reading of the rule) or whose decoded text has a NUL in it (libjwt
 * read up to it). Beyond that, base64url_decode on the raw input: what it takes is what
 * base64url_encode writes back, in place or not, and the encoding of any input decodes
 * back to it. */
#include <jansson.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat/auth.h"
#include "util/base64.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define SHORT_KEY "fuzz-secret-0123456789"
/* 80 bytes: longer than a SHA-256 block. */
#define LONG_KEY "fuzz-secret-long-0123456789abcdefghijklmnopqrstuvwxyz-0123456789abcdefghijklmnop"

static chat_auth_t *auths[2][2]; /* [long key][room claim] */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < 2; r++) {
            const char *key = k ? LONG_KEY : SHORT_KEY;
            auths[k][r] = chat_auth_new("HS256", key, strlen(key));
            CHECK(auths[k][r] && (!r || chat_auth_set_room_claim(auths[k][r], "rooms") == 0));
        }
    return 0;
}

/* The strict rule read directly: the 64 characters only, no lone last character, the
 * bits past the last byte zero. */
static bool strict_b64url(const char *s, size_t len) {
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if (len % 4 == 1)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '\0' || !strchr(alpha, s[i]))
            return false;
    if (len % 4 == 0)
        return true;
    size_t last = (size_t)(strchr(alpha, s[len - 1]) - alpha);
    return (last & (len % 4 == 2 ? 0x0F : 0x03)) == 0;
}

/* Whether the segment decodes strictly to text without a NUL. */
static bool clean_segment(const char *s, size_t len) {
    if (!strict_b64url(s, len))
        return false;
    uint8_t *out = malloc(len + 1);
    CHECK(out);
    long n = base64url_decode(s, len, out);
    CHECK(n >= 0);
    bool clean = !memchr(out, '\0', (size_t)n);
    free(out);
    return clean;
}

/* The old chat_auth_verify, on libjwt. */
static int reference(const chat_auth_t *a, const char *key, const char *token, long now,
                     chat_user_t *user, json_t **rooms) {
    *rooms = NULL;
    if (!*token || strlen(token) > CHAT_AUTH_TOKEN_MAX)
        return -1;
    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, token, (const unsigned char *)key, (int)strlen(key)) || !jwt) {
        jwt_free(jwt);
        return -1;
    }
    int rc = -1;
    char *text = NULL;
    json_t *claims = NULL;
    if (jwt_get_alg(jwt) == JWT_ALG_HS256 && (text = jwt_get_grants_json(jwt, NULL)) &&
        (claims = json_loads(text, 0, NULL)))
        rc = chat_auth_check_claims(a, claims, now, user, rooms);
    json_decref(claims);
    free(text);
    jwt_free(jwt);
    return rc;
}

static void check_base64url(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    uint8_t *out = malloc(BASE64URL_DECODED_MAX(size) + 1);
    char *text = malloc(size / 3 * 4 + 8);
    CHECK(out && text);
    long n = base64url_decode(s, size, out);
    CHECK(n == -1 || (n >= 0 && (size_t)n == BASE64URL_DECODED_MAX(size)));
    CHECK((n >= 0) == strict_b64url(s, size));
    if (n >= 0) {
        CHECK(base64url_encode(out, (size_t)n, text) == size && memcmp(text, s, size) == 0);
        memcpy(text, s, size);
        CHECK(base64url_decode(text, size, (uint8_t *)text) == n &&
              memcmp(text, out, (size_t)n) == 0);
    }
    free(out);
    free(text);
    /* And the other way: any bytes encode to text that decodes back to them. */
    text = malloc(((size + 2) / 3) * 4 + 1);
    out = malloc(size + 1);
    CHECK(text && out);
    size_t tl = base64url_encode(data, size, text);
    CHECK(base64url_decode(text, tl, out) == (long)size && memcmp(out, data, size) == 0);
    free(text);
    free(out);
}

/* Appends the len bytes at p to buf at *at, base64url-encoded or as they are. */
static void put(char *buf, size_t *at, const uint8_t *p, size_t len, bool raw) {
    if (raw) {
        memcpy(buf + *at, p, len);
        *at += len;
    } else {
        *at += base64url_encode(p, len, buf + *at);
    }
}

/* The next part of the input, up to a '\n' or the end. */
static const uint8_t *part(const uint8_t **p, const uint8_t *end, size_t *len) {
    const uint8_t *start = *p;
    const uint8_t *nl = memchr(start, '\n', (size_t)(end - start));
    *len = (size_t)((nl ? nl : end) - start);
    *p = nl ? nl + 1 : end;
    return start;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_base64url(data, size);
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    const uint8_t *p = data + 1, *end = data + size;
    size_t hl, pl, sl;
    const uint8_t *h = part(&p, end, &hl), *c = part(&p, end, &pl), *s = part(&p, end, &sl);
    const char *key = mode & 8 ? LONG_KEY : SHORT_KEY;
    const chat_auth_t *a = auths[(mode & 8) != 0][(mode & 16) != 0];
    long now = mode & 32 ? 1700000000L : 253402300799L;

    char *token = malloc(2 * size + 64);
    CHECK(token);
    size_t at = 0;
    put(token, &at, h, hl, mode & 1);
    token[at++] = '.';
    put(token, &at, c, pl, mode & 2);
    size_t signed_len = at;
    token[at++] = '.';
    if (mode & 4) {
        put(token, &at, s, sl, true);
    } else {
        uint8_t mac[32];
        unsigned int n = 0;
        CHECK(
            HMAC(EVP_sha256(), key, (int)strlen(key), (const uint8_t *)token, signed_len, mac, &n));
        put(token, &at, mac, n, false);
    }
    token[at] = '\0';

    chat_user_t got, want;
    json_t *got_rooms = (json_t *)1, *want_rooms = NULL;
    int rc = chat_auth_verify(a, token, now, &got, &got_rooms);
    int ref = reference(a, key, token, now, &want, &want_rooms);
    CHECK(rc == 0 || rc == -1);
    if (rc)
        CHECK(got_rooms == NULL);
    if (rc == 0) {
        CHECK(ref == 0);
        CHECK(strcmp(got.user_id, want.user_id) == 0 && strcmp(got.username, want.username) == 0);
        CHECK(got_rooms ? want_rooms && json_equal(got_rooms, want_rooms) : !want_rooms);
    } else if (ref == 0) {
        /* The segments as libjwt split them: at the first two dots of the C string. */
        size_t len = strlen(token);
        const char *d1 = memchr(token, '.', len);
        const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
        CHECK(d1 && d2);
        CHECK(!clean_segment(token, (size_t)(d1 - token)) ||
              !clean_segment(d1 + 1, (size_t)(d2 - d1 - 1)));
    }
    json_decref(got_rooms);
    json_decref(want_rooms);
    free(token);
    return 0;
}
