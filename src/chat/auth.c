/* chat/auth.c — JWT verification and development tokens (see auth.h).
 *
 * HS256, the default and the one a handshake meets in practice, is verified here: split
 * the token, decode its segments (strict base64url, RFC 7515 §2), check the header, the
 * HMAC (a key schedule made once per secret) and the claims, each parsed once. libjwt,
 * which did all of it before, decoded the claims, dumped them as text and we parsed that
 * again; and its HMAC() fetched SHA-256 from OpenSSL's provider tables on every call:
 * about 4.9 µs a token against 1.2 µs here (issue 17's bench token, one core). libjwt
 * still verifies RS256 and ES256 and signs development tokens. What a token must be is
 * unchanged (the fuzzer tests/fuzz/jwt_token_fuzz.c holds the two paths to it), except
 * that a segment must now be base64url exactly as a JWT library writes it, and its JSON
 * free of NUL bytes: libjwt also took '+', '/', '=' padding and leftover bits, and
 * stopped reading at the first byte outside the alphabet, or at a NUL.
 *
 * Everything the claims say is checked here, on the claims as one JSON object
 * (chat_auth_check_claims), so that a claim of the wrong type is a refusal rather than
 * "absent" (libjwt's jwt_get_grant_int reports both the same way). */
#include "chat/auth.h"

#include <errno.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/base64.h"
#include "util/log.h"
#include "util/utf8.h"

#define HS256_BLOCK 64     /* SHA-256's block: HMAC's pads are this long */
#define HS256_LEN 32       /* the MAC */
#define HS256_SIG_CHARS 43 /* the MAC in base64url without padding */

struct chat_auth {
    jwt_alg_t alg;
    unsigned char *key;
    size_t key_len;
    char *room_claim; /* NULL: rooms are not restricted */
    /* HS256: SHA-256 after the key XOR ipad and after the key XOR opad (RFC 2104). Each
     * verification copies them (EVP_MD_CTX_copy_ex) rather than redo those two blocks
     * and look the digest up again. */
    EVP_MD_CTX *inner, *outer;
};

/* The two states an HMAC-SHA256 with key starts from. Returns 0 or -1. */
static int hs256_prepare(chat_auth_t *a) {
    uint8_t k[HS256_BLOCK] = {0}, pad[HS256_BLOCK];
    unsigned int klen = 0;
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
    int rc = -1;
    if (!md)
        goto done;
    if (a->key_len > HS256_BLOCK) { /* RFC 2104: a longer key is hashed first */
        if (!EVP_Digest(a->key, a->key_len, k, &klen, md, NULL))
            goto done;
    } else {
        memcpy(k, a->key, a->key_len);
    }
    if (!(a->inner = EVP_MD_CTX_new()) || !(a->outer = EVP_MD_CTX_new()))
        goto done;
    for (size_t i = 0; i < HS256_BLOCK; i++)
        pad[i] = k[i] ^ 0x36;
    if (!EVP_DigestInit_ex(a->inner, md, NULL) || !EVP_DigestUpdate(a->inner, pad, sizeof pad))
        goto done;
    for (size_t i = 0; i < HS256_BLOCK; i++)
        pad[i] = k[i] ^ 0x5c;
    if (!EVP_DigestInit_ex(a->outer, md, NULL) || !EVP_DigestUpdate(a->outer, pad, sizeof pad))
        goto done;
    rc = 0;
done:
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    EVP_MD_free(md);
    return rc;
}

/* HMAC-SHA256 of the len bytes at msg, from the prepared states. Returns 0 or -1. */
static int hs256_mac(const chat_auth_t *a, const char *msg, size_t len, uint8_t mac[HS256_LEN]) {
    uint8_t inner[HS256_LEN];
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_MD_CTX_copy_ex(c, a->inner) && EVP_DigestUpdate(c, msg, len) &&
             EVP_DigestFinal_ex(c, inner, NULL) && EVP_MD_CTX_copy_ex(c, a->outer) &&
             EVP_DigestUpdate(c, inner, sizeof inner) && EVP_DigestFinal_ex(c, mac, NULL);
    EVP_MD_CTX_free(c);
    return ok ? 0 : -1;
}

chat_auth_t *chat_auth_new(const char *alg, const char *key, size_t key_len) {
    jwt_alg_t a = jwt_str_alg(alg);
    if (a != JWT_ALG_HS256 && a != JWT_ALG_RS256 && a != JWT_ALG_ES256) {
        LOG_ERROR("auth", "unsupported JWT algorithm '%s' (HS256, RS256 or ES256)", alg);
        return NULL;
    }
    if (!key || key_len == 0) {
        LOG_ERROR("auth", "no JWT key or secret");
        return NULL;
    }
    chat_auth_t *auth = calloc(1, sizeof *auth);
    if (!auth || !(auth->key = malloc(key_len + 1))) {
        free(auth);
        return NULL;
    }
    memcpy(auth->key, key, key_len);
    auth->key[key_len] = '\0';
    auth->key_len = key_len;
    auth->alg = a;
    if (a == JWT_ALG_HS256 && hs256_prepare(auth)) {
        LOG_ERROR("auth", "cannot prepare HMAC-SHA256");
        chat_auth_free(auth);
        return NULL;
    }
    return auth;
}

void chat_auth_free(chat_auth_t *a) {
    if (!a)
        return;
    EVP_MD_CTX_free(a->inner);
    EVP_MD_CTX_free(a->outer);
    if (a->key)
        OPENSSL_cleanse(a->key, a->key_len);
    free(a->key);
    free(a->room_claim);
    free(a);
}

int chat_auth_set_room_claim(chat_auth_t *a, const char *name) {
    char *copy = name && *name ? strdup(name) : NULL;
    if (name && *name && !copy)
        return -ENOMEM;
    free(a->room_claim);
    a->room_claim = copy;
    return 0;
}

bool chat_auth_room_allowed(const chat_auth_t *a, const json_t *rooms, const char *room) {
    if (!a->room_claim)
        return true;
    size_t i;
    const json_t *v;
    json_array_foreach(rooms, i, v) {
        const char *r = json_string_value(v);
        if (r && (strcmp(r, "*") == 0 || strcmp(r, room) == 0))
            return true;
    }
    return false;
}

/* ---- ids and names ---- */

/* Unicode's format characters (general category Cf, Unicode 15), sorted, as inclusive
 * ranges. They draw nothing, or change how the text around them is drawn (bidi
 * overrides), so two ids that differ only by them would look the same. */
static const struct {
    uint32_t lo, hi;
} format_chars[] = {
    {0x00AD, 0x00AD},   {0x0600, 0x0605},   {0x061C, 0x061C},   {0x06DD, 0x06DD},
    {0x070F, 0x070F},   {0x0890, 0x0891},   {0x08E2, 0x08E2},   {0x180E, 0x180E},
    {0x200B, 0x200F},   {0x202A, 0x202E},   {0x2060, 0x2064},   {0x2066, 0x206F},
    {0xFEFF, 0xFEFF},   {0xFFF9, 0xFFFB},   {0x110BD, 0x110BD}, {0x110CD, 0x110CD},
    {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001},
    {0xE0020, 0xE007F},
};

bool chat_codepoint_hidden(uint32_t cp) {
    if (cp < 0x80) /* ASCII, most ids: only the C0 controls and DEL */
        return cp < 0x20 || cp == 0x7F;
    if (cp <= 0x9F) /* Cc: the C1 controls */
        return true;
    if (cp == 0x2028 || cp == 0x2029) /* Zl, Zp: line breaks in disguise */
        return true;
    size_t lo = 0, hi = sizeof format_chars / sizeof format_chars[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < format_chars[mid].lo)
            hi = mid;
        else if (cp > format_chars[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

/* The code point at p (valid UTF-8, so the lead byte says the length); *n its bytes. */
static uint32_t utf8_decode_valid(const uint8_t *p, size_t *n) {
    if (p[0] < 0x80) {
        *n = 1;
        return p[0];
    }
    if (p[0] < 0xE0) {
        *n = 2;
        return (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F);
    }
    if (p[0] < 0xF0) {
        *n = 3;
        return (uint32_t)(p[0] & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
    }
    *n = 4;
    return (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 |
           (uint32_t)(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
}

bool chat_id_valid(const char *s, size_t len, size_t max) {
    const uint8_t *p = (const uint8_t *)s;
    if (!s || len == 0 || len > max || !utf8_is_valid(p, len))
        return false;
    for (size_t i = 0, n; i < len; i += n) /* NUL is a Cc: refused here too */
        if (chat_codepoint_hidden(utf8_decode_valid(p + i, &n)))
            return false;
    return true;
}

/* ---- claims ---- */

/* A claim that must be a valid id or name of at most max bytes (chat_id_valid). */
static bool copy_claim(const json_t *v, char *out, size_t max) {
    const char *s = json_string_value(v);
    size_t n = s ? json_string_length(v) : 0;
    if (!s || !chat_id_valid(s, n, max))
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

/* A NumericDate claim: true when absent (*present false) or an integer from 0 to
 * CHAT_AUTH_TIME_MAX (*t); false for anything else (a real, a string, out of range). */
static bool time_claim(const json_t *claims, const char *name, bool *present, int64_t *t) {
    const json_t *v = json_object_get(claims, name);
    *present = v != NULL;
    if (!v)
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > CHAT_AUTH_TIME_MAX) {
        LOG_DEBUG("auth", "token refused: %s is not a date in whole seconds", name);
        return false;
    }
    *t = json_integer_value(v);
    return true;
}

int chat_auth_check_claims(const chat_auth_t *a, const json_t *claims, long now_s,
                           chat_user_t *user, json_t **rooms) {
    if (rooms)
        *rooms = NULL;
    if (!json_is_object(claims) ||
        !copy_claim(json_object_get(claims, "sub"), user->user_id, CHAT_USER_ID_MAX)) {
        LOG_DEBUG("auth", "token without a usable sub");
        return -1;
    }
    if (!copy_claim(json_object_get(claims, "name"), user->username, CHAT_USERNAME_MAX))
        memcpy(user->username, user->user_id, strlen(user->user_id) + 1);
    bool has_exp, has_nbf, has_iat;
    int64_t exp = 0, nbf = 0, iat = 0;
    if (!time_claim(claims, "exp", &has_exp, &exp) || !time_claim(claims, "nbf", &has_nbf, &nbf) ||
        !time_claim(claims, "iat", &has_iat, &iat))
        return -1;
    /* The clock is clamped into the claims' range, so now ± leeway cannot overflow
     * whatever the caller passes; the claims are never added to. */
    int64_t now = now_s < 0 ? 0 : (int64_t)now_s > CHAT_AUTH_TIME_MAX ? CHAT_AUTH_TIME_MAX : now_s;
    if (has_exp && exp < now - CHAT_AUTH_LEEWAY_S) {
        LOG_DEBUG("auth", "token expired");
        return -1;
    }
    if (has_nbf && nbf > now + CHAT_AUTH_LEEWAY_S) {
        LOG_DEBUG("auth", "token not valid yet");
        return -1;
    }
    if (rooms && a->room_claim) {
        json_t *v = json_object_get(claims, a->room_claim);
        *rooms = json_is_array(v) ? json_incref(v) : NULL;
    }
    return 0;
}

/* ---- HS256 ---- */

/* The headers JWT libraries write for HS256 (jsonwebtoken, jose, PyJWT, libjwt): taken
 * byte for byte without a JSON parse. Any other header is parsed. */
static const char *const hs256_headers[] = {
    "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
    "{\"typ\":\"JWT\",\"alg\":\"HS256\"}",
    "{\"alg\":\"HS256\"}",
};

/* libjwt's rules for a header, with HS256 configured: a JSON object or array whose "alg"
 * is a string equal to "HS256" ignoring case ("none" and every other algorithm are
 * refused); "typ", when it is a string, "JWT" ignoring case. */
static bool hs256_header_ok(const uint8_t *h, size_t len) {
    for (size_t i = 0; i < sizeof hs256_headers / sizeof hs256_headers[0]; i++)
        if (len == strlen(hs256_headers[i]) && memcmp(h, hs256_headers[i], len) == 0)
            return true;
    json_t *head = json_loadb((const char *)h, len, 0, NULL);
    const char *alg = json_string_value(json_object_get(head, "alg"));
    const char *typ = json_string_value(json_object_get(head, "typ"));
    bool ok = alg && strcasecmp(alg, "HS256") == 0 && (!typ || strcasecmp(typ, "JWT") == 0);
    if (!ok)
        LOG_DEBUG("auth", "token header refused (alg %s)", alg ? alg : "missing");
    json_decref(head);
    return ok;
}

/* chat_auth_verify for HS256, on the len bytes of token. The signature is checked
 * first: nothing from a token that is not ours is parsed as JSON. */
static int hs256_verify(const chat_auth_t *a, const char *token, size_t len, long now_s,
                        chat_user_t *user, json_t **rooms) {
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2) {
        LOG_DEBUG("auth", "token rejected: not three segments");
        return -1;
    }
    size_t hlen = (size_t)(dot1 - token), plen = (size_t)(dot2 - dot1 - 1);
    const char *sig = dot2 + 1;
    uint8_t mac[HS256_LEN];
    char expected[BASE64_ENCODED_LEN(HS256_LEN) + 1]; /* base64url_encode's bound */
    if (hs256_mac(a, token, (size_t)(dot2 - token), mac)) {
        LOG_LIMITED(LOG_LEVEL_WARN, "auth", "HMAC-SHA256 failed (out of memory?)");
        return -1;
    }
    base64url_encode(mac, sizeof mac, expected);
    /* The signature as text, as libjwt compared it: so exactly 43 characters, no padding. */
    if (len - (size_t)(sig - token) != HS256_SIG_CHARS ||
        CRYPTO_memcmp(expected, sig, HS256_SIG_CHARS) != 0) {
        LOG_DEBUG("auth", "token rejected: bad signature");
        return -1;
    }
    /* Both segments decoded side by side: together at most CHAT_AUTH_TOKEN_MAX characters. */
    uint8_t buf[BASE64URL_DECODED_MAX(CHAT_AUTH_TOKEN_MAX)];
    long hn = base64url_decode(token, hlen, buf);
    long pn = hn < 0 ? -1 : base64url_decode(dot1 + 1, plen, buf + hn);
    if (pn < 0) {
        LOG_DEBUG("auth", "token rejected: a segment is not base64url");
        return -1;
    }
    /* JSON text has no NUL byte. jansson drops one after a number ("{\"n\":1\0}" loads);
     * libjwt read the text only up to it. */
    if (memchr(buf, '\0', (size_t)(hn + pn))) {
        LOG_DEBUG("auth", "token rejected: a NUL byte in its JSON");
        return -1;
    }
    if (!hs256_header_ok(buf, (size_t)hn))
        return -1;
    /* flags 0, as libjwt read them: an object or an array, no NUL in a string. */
    json_t *claims = json_loadb((const char *)buf + hn, (size_t)pn, 0, NULL);
    if (!claims) {
        LOG_DEBUG("auth", "token claims unreadable");
        return -1;
    }
    int rc = chat_auth_check_claims(a, claims, now_s, user, rooms);
    json_decref(claims);
    return rc;
}

int chat_auth_verify(const chat_auth_t *a, const char *token, long now_s, chat_user_t *user,
                     json_t **rooms) {
    if (rooms)
        *rooms = NULL;
    size_t len = token ? strlen(token) : 0;
    if (len == 0 || len > CHAT_AUTH_TOKEN_MAX) {
        LOG_DEBUG("auth", "no token");
        return -1;
    }
    if (a->alg == JWT_ALG_HS256)
        return hs256_verify(a, token, len, now_s, user, rooms);
    jwt_t *jwt = NULL;
    int rc = jwt_decode(&jwt, token, a->key, (int)a->key_len);
    if (rc || !jwt) {
        LOG_DEBUG("auth", "token rejected: %s", rc ? strerror(rc) : "undecodable");
        jwt_free(jwt);
        return -1;
    }
    int result = -1;
    char *text = NULL;
    json_t *claims = NULL;
    if (jwt_get_alg(jwt) != a->alg) {
        LOG_DEBUG("auth", "token algorithm %s refused", jwt_alg_str(jwt_get_alg(jwt)));
        goto done;
    }
    /* The claims as one JSON object (libjwt's getters cannot tell "absent" from "of the
     * wrong type"). RS256 and ES256 only: their signature costs far more than this. */
    if (!(text = jwt_get_grants_json(jwt, NULL)) || !(claims = json_loads(text, 0, NULL))) {
        LOG_DEBUG("auth", "token claims unreadable");
        goto done;
    }
    result = chat_auth_check_claims(a, claims, now_s, user, rooms);
done:
    json_decref(claims);
    free(text);
    jwt_free(jwt);
    return result;
}

char *chat_auth_sign(const chat_auth_t *a, const char *user_id, const char *name, long now_s,
                     long ttl_s) {
    if (a->alg != JWT_ALG_HS256)
        return NULL;
    jwt_t *jwt = NULL;
    char *out = NULL;
    if (jwt_new(&jwt) == 0 && jwt_add_grant(jwt, "sub", user_id) == 0 &&
        jwt_add_grant(jwt, "name", name) == 0 && jwt_add_grant_int(jwt, "iat", now_s) == 0 &&
        jwt_add_grant_int(jwt, "exp", now_s + ttl_s) == 0 &&
        jwt_set_alg(jwt, JWT_ALG_HS256, a->key, (int)a->key_len) == 0)
        out = jwt_encode_str(jwt);
    jwt_free(jwt);
    return out;
}
