/* chat/auth.h — JWT verification for Socket.IO handshakes and HTTP requests, and
 * development tokens; and the rule every id and name follows (chat_id_valid).
 *
 * Tokens are verified against the one configured algorithm: HS256 with a shared secret
 * by default (verified in chat/auth.c on OpenSSL's SHA-256; its segments must be base64url
 * without padding, RFC 7515 §2), or RS256 or ES256 with a PEM public key (verified by
 * libjwt). Anything else — another algorithm, "none", a bad signature, a missing or
 * non-string `sub`, an `exp` in the past or an `nbf` in the future beyond
 * CHAT_AUTH_LEEWAY_S, an `exp`, `nbf` or `iat` that is not an integer from 0 to
 * CHAT_AUTH_TIME_MAX — is refused. The claims are checked by a pure function
 * (chat_auth_check_claims), which the fuzzer drives. */
#ifndef PARLEY_CHAT_AUTH_H
#define PARLEY_CHAT_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHAT_AUTH_LEEWAY_S 30
#define CHAT_AUTH_TOKEN_MAX 8192 /* bytes of a token; longer ones are refused */
/* The largest exp/nbf/iat taken (seconds: 9999-12-31T23:59:59Z). Bounding them keeps the
 * leeway arithmetic far from overflow and refuses nonsense dates. */
#define CHAT_AUTH_TIME_MAX 253402300799LL
#define CHAT_USER_ID_MAX 128
#define CHAT_USERNAME_MAX 128

/* The rule for user ids, user names and room ids: len is 1 to max, and the len bytes at
 * s (no NUL among them; s needs no terminator) are valid UTF-8 without a code point that
 * is invisible or changes how the text around it is shown: controls (Unicode Cc: C0,
 * DEL, C1), format characters (Cf: soft hyphen, zero-width spaces and joiners, the
 * bidirectional marks, embeddings, overrides and isolates, the BOM, tags...) and the
 * line and paragraph separators (U+2028, U+2029). s may be NULL (not valid). */
bool chat_id_valid(const char *s, size_t len, size_t max);

/* Whether code point cp is one that chat_id_valid refuses (Cc, Cf, Zl, Zp). */
bool chat_codepoint_hidden(uint32_t cp);

typedef struct chat_auth chat_auth_t;

/* alg: "HS256", "RS256" or "ES256". key: the secret (HS256) or the PEM public key's text
 * (RS256/ES256); copied. Returns NULL (and logs) on a bad algorithm or key. */
chat_auth_t *chat_auth_new(const char *alg, const char *key, size_t key_len);
void chat_auth_free(chat_auth_t *a);

typedef struct {
    char user_id[CHAT_USER_ID_MAX + 1];
    char username[CHAT_USERNAME_MAX + 1];
} chat_user_t;

/* Restricts rooms by a claim (e.g. "rooms"): a token may then use only the rooms its
 * claim lists (an array of room ids; "*" in it allows every room). NULL or "" lifts
 * the restriction (the default). name is copied. Returns 0 or -ENOMEM. */
int chat_auth_set_room_claim(chat_auth_t *a, const char *name);

/* Verifies token; fills *user on success. Returns 0, or -1 (the reason is logged at
 * debug level: clients only ever learn "Authentication failed"). now_s: Unix seconds.
 * rooms (may be NULL): receives the room claim's value when a room claim is set and the
 * token carries it (a new reference for the caller), else NULL. */
int chat_auth_verify(const chat_auth_t *a, const char *token, long now_s, chat_user_t *user,
                     json_t **rooms);

/* The claims part of chat_auth_verify, on a token's decoded claims (any JSON value;
 * borrowed) whose signature was checked: `sub` a valid user id; `name` used when it is a
 * valid name, else the user id; `exp`, `nbf`, `iat` absent or integers from 0 to
 * CHAT_AUTH_TIME_MAX, with exp and nbf honoured within CHAT_AUTH_LEEWAY_S of now_s; the
 * room claim as for chat_auth_verify. Returns 0 or -1 as chat_auth_verify does (*user
 * and *rooms are only meaningful on 0). Pure: no clock, no I/O. */
int chat_auth_check_claims(const chat_auth_t *a, const json_t *claims, long now_s,
                           chat_user_t *user, json_t **rooms);

/* Whether a token whose room claim is `rooms` (from chat_auth_verify) may use `room`:
 * always without a room claim configured; never when the token had no such claim. */
bool chat_auth_room_allowed(const chat_auth_t *a, const json_t *rooms, const char *room);

/* Signs a development token (HS256 only) for user_id/name, valid for ttl_s seconds.
 * Returns a malloc'd string, or NULL. */
char *chat_auth_sign(const chat_auth_t *a, const char *user_id, const char *name, long now_s,
                     long ttl_s);

#endif
