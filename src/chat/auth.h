/* chat/auth.h — JWT verification for Socket.IO handshakes and HTTP requests, and
 * development tokens.
 *
 * Tokens are verified with libjwt against the one configured algorithm (HS256 with a
 * shared secret by default; RS256 or ES256 with a PEM public key). Anything else —
 * another algorithm, "none", a bad signature, a missing or non-string `sub`, an `exp` in
 * the past or an `nbf` in the future beyond CHAT_AUTH_LEEWAY_S — is refused. */
#ifndef PARLEY_CHAT_AUTH_H
#define PARLEY_CHAT_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CHAT_AUTH_LEEWAY_S 30
#define CHAT_AUTH_TOKEN_MAX 8192 /* bytes of a token; longer ones are refused */
#define CHAT_USER_ID_MAX 128
#define CHAT_USERNAME_MAX 128

/* The rule for user ids, user names and room ids: len is 1 to max, and the len bytes at
 * s (no NUL among them; s needs no terminator) are valid UTF-8 without control
 * characters (below 0x20, or 0x7f). s may be NULL (not valid). */
bool chat_id_valid(const char *s, size_t len, size_t max);

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

/* Whether a token whose room claim is `rooms` (from chat_auth_verify) may use `room`:
 * always without a room claim configured; never when the token had no such claim. */
bool chat_auth_room_allowed(const chat_auth_t *a, const json_t *rooms, const char *room);

/* Signs a development token (HS256 only) for user_id/name, valid for ttl_s seconds.
 * Returns a malloc'd string, or NULL. */
char *chat_auth_sign(const chat_auth_t *a, const char *user_id, const char *name, long now_s,
                     long ttl_s);

#endif
