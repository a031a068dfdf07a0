/* chat/auth.c — JWT verification and development tokens on libjwt (see auth.h). */
#include "chat/auth.h"

#include <errno.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/utf8.h"

struct chat_auth {
    jwt_alg_t alg;
    unsigned char *key;
    size_t key_len;
    char *room_claim; /* NULL: rooms are not restricted */
};

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
    return auth;
}

void chat_auth_free(chat_auth_t *a) {
    if (!a)
        return;
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

/* The room claim's value as JSON (an array), or NULL when absent or not an array. */
static json_t *room_claim_of(const chat_auth_t *a, jwt_t *jwt) {
    char *text = jwt_get_grants_json(jwt, a->room_claim);
    json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    free(text);
    if (v && !json_is_array(v)) {
        json_decref(v);
        return NULL;
    }
    return v;
}

bool chat_id_valid(const char *s, size_t len, size_t max) {
    if (!s || len == 0 || len > max || memchr(s, '\0', len) ||
        !utf8_is_valid((const uint8_t *)s, len))
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* A claim that must be a printable UTF-8 string of at most max bytes. */
static bool copy_claim(const char *v, char *out, size_t max) {
    size_t n = v ? strlen(v) : 0;
    if (!chat_id_valid(v, n, max))
        return false;
    memcpy(out, v, n + 1);
    return true;
}

int chat_auth_verify(const chat_auth_t *a, const char *token, long now_s, chat_user_t *user,
                     json_t **rooms) {
    if (rooms)
        *rooms = NULL;
    if (!token || !*token || strlen(token) > CHAT_AUTH_TOKEN_MAX) {
        LOG_DEBUG("auth", "no token");
        return -1;
    }
    jwt_t *jwt = NULL;
    int rc = jwt_decode(&jwt, token, a->key, (int)a->key_len);
    if (rc || !jwt) {
        LOG_DEBUG("auth", "token rejected: %s", rc ? strerror(rc) : "undecodable");
        jwt_free(jwt);
        return -1;
    }
    int result = -1;
    if (jwt_get_alg(jwt) != a->alg) {
        LOG_DEBUG("auth", "token algorithm %s refused", jwt_alg_str(jwt_get_alg(jwt)));
        goto done;
    }
    if (!copy_claim(jwt_get_grant(jwt, "sub"), user->user_id, CHAT_USER_ID_MAX)) {
        LOG_DEBUG("auth", "token without a usable sub");
        goto done;
    }
    const char *name = jwt_get_grant(jwt, "name");
    if (!name || !copy_claim(name, user->username, CHAT_USERNAME_MAX))
        memcpy(user->username, user->user_id, strlen(user->user_id) + 1);
    errno = 0;
    long exp = jwt_get_grant_int(jwt, "exp");
    if (errno == 0 && exp + CHAT_AUTH_LEEWAY_S < now_s) {
        LOG_DEBUG("auth", "token expired");
        goto done;
    }
    errno = 0;
    long nbf = jwt_get_grant_int(jwt, "nbf");
    if (errno == 0 && nbf - CHAT_AUTH_LEEWAY_S > now_s) {
        LOG_DEBUG("auth", "token not valid yet");
        goto done;
    }
    if (rooms && a->room_claim)
        *rooms = room_claim_of(a, jwt);
    result = 0;
done:
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
