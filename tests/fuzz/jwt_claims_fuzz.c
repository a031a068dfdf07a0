/* tests/fuzz/jwt_claims_fuzz.c — libFuzzer target for the chat's trust boundary past the
 * signature: chat_auth_check_claims (chat/auth.c), chat_payload_parse (chat/service.c)
 * and chat_id_valid, the rule for every id and name.
 *
 * The input is read as JSON (any value) and checked as a token's claims, at several
 * clocks (extremes included: the leeway arithmetic must not overflow whatever the claims
 * and the clock say), with and without a room claim; and as the payload of every client
 * event. Beyond "no crash" (and no UBSan report), what is accepted is checked against the
 * rules: an accepted token has a valid sub copied exactly, integer exp/nbf/iat within
 * range and within the leeway of the clock; an accepted payload has the fields its event
 * needs, of the right types and sizes. The raw input is also checked as an id:
 * chat_id_valid must agree with a direct reading of the rule, and valid ids must stay
 * valid when cut at a character boundary or joined. Last, the input is the claims segment
 * of an HS256 token signed with the key: chat_auth_verify must take it exactly when the
 * input is a JSON object or array (without a NUL byte) that chat_auth_check_claims takes,
 * with the same user (tests/fuzz/jwt_token_fuzz.c fuzzes the rest of the token). */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "chat/auth.h"
#include "chat/service.h"
#include "util/base64.h"
#include "util/utf8.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define MAX_TEXT 16 /* small, so that too_long is reached */

static chat_auth_t *plain, *claimed; /* without and with --room-claim rooms */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    plain = chat_auth_new("HS256", "fuzz-secret", 11);
    claimed = chat_auth_new("HS256", "fuzz-secret", 11);
    CHECK(plain && claimed && chat_auth_set_room_claim(claimed, "rooms") == 0);
    return 0;
}

/* The length in bytes of the UTF-8 sequence led by b (input known valid). */
static size_t seq_len(uint8_t b) {
    return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

/* chat_id_valid read directly off its definition. */
static bool id_rule(const uint8_t *s, size_t len, size_t max) {
    if (len == 0 || len > max || !utf8_is_valid(s, len))
        return false;
    for (size_t i = 0; i < len;) {
        size_t n = seq_len(s[i]);
        uint32_t cp = n == 1   ? s[i]
                      : n == 2 ? (uint32_t)(s[i] & 0x1F) << 6 | (s[i + 1] & 0x3F)
                      : n == 3 ? (uint32_t)(s[i] & 0x0F) << 12 | (uint32_t)(s[i + 1] & 0x3F) << 6 |
                                     (s[i + 2] & 0x3F)
                               : (uint32_t)(s[i] & 0x07) << 18 | (uint32_t)(s[i + 1] & 0x3F) << 12 |
                                     (uint32_t)(s[i + 2] & 0x3F) << 6 | (s[i + 3] & 0x3F);
        if (chat_codepoint_hidden(cp))
            return false;
        i += n;
    }
    return true;
}

static void check_id(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    bool valid = chat_id_valid(s, size, CHAT_ROOM_ID_MAX);
    CHECK(valid == id_rule(data, size, CHAT_ROOM_ID_MAX));
    if (!valid)
        return;
    CHECK(!memchr(s, '\0', size));
    for (size_t i = 0; i < size; i++)
        CHECK(data[i] >= 0x20 && data[i] != 0x7F);
    /* Cut at a character boundary: both halves are valid ids; joined, the id again. */
    size_t cut = size / 2;
    while (cut > 0 && (data[cut] & 0xC0) == 0x80)
        cut--;
    if (cut > 0) {
        CHECK(chat_id_valid(s, cut, CHAT_ROOM_ID_MAX));
        CHECK(chat_id_valid(s + cut, size - cut, CHAT_ROOM_ID_MAX));
    }
    CHECK(!chat_id_valid(s, size, size - 1)); /* the length limit holds */
}

/* A time claim as the rules take it: absent, or an integer in range. */
static bool time_ok(const json_t *claims, const char *name, json_int_t *t) {
    const json_t *v = json_object_get(claims, name);
    if (!v)
        return true;
    *t = json_integer_value(v);
    return json_is_integer(v) && *t >= 0 && *t <= CHAT_AUTH_TIME_MAX;
}

static void check_claims(const chat_auth_t *a, const json_t *claims, long now) {
    chat_user_t user;
    json_t *rooms = (json_t *)1; /* must be overwritten */
    int rc = chat_auth_check_claims(a, claims, now, &user, &rooms);
    CHECK(rc == 0 || rc == -1);
    if (rc) {
        CHECK(rooms == NULL);
        return;
    }
    const json_t *sub = json_object_get(claims, "sub");
    CHECK(json_is_string(sub) && strlen(user.user_id) == json_string_length(sub) &&
          memcmp(user.user_id, json_string_value(sub), json_string_length(sub)) == 0);
    CHECK(chat_id_valid(user.user_id, strlen(user.user_id), CHAT_USER_ID_MAX));
    CHECK(chat_id_valid(user.username, strlen(user.username), CHAT_USERNAME_MAX));
    json_int_t exp = 0, nbf = 0, iat = 0;
    CHECK(time_ok(claims, "exp", &exp) && time_ok(claims, "nbf", &nbf) &&
          time_ok(claims, "iat", &iat));
    long long clock = now < 0 ? 0 : now > CHAT_AUTH_TIME_MAX ? CHAT_AUTH_TIME_MAX : now;
    if (json_object_get(claims, "exp"))
        CHECK(exp >= clock - CHAT_AUTH_LEEWAY_S);
    if (json_object_get(claims, "nbf"))
        CHECK(nbf <= clock + CHAT_AUTH_LEEWAY_S);
    if (a == claimed)
        CHECK(rooms == NULL || (json_is_array(rooms) && rooms == json_object_get(claims, "rooms")));
    else
        CHECK(rooms == NULL);
    json_decref(rooms);
}

static void check_payload(const char *event, json_t *payload) {
    chat_payload_t p;
    const char *err = chat_payload_parse(event, payload, MAX_TEXT, &p);
    CHECK(!err || strcmp(err, "invalid_payload") == 0 || strcmp(err, "too_long") == 0);
    bool direct = strcmp(event, "sendDirect") == 0;
    if (p.room)
        CHECK(!direct && chat_id_valid(p.room, strlen(p.room), CHAT_ROOM_ID_MAX) &&
              p.room == json_string_value(json_object_get(payload, "roomId")));
    if (err)
        return;
    if (strcmp(event, "joinRooms") == 0) {
        size_t i;
        json_t *v;
        CHECK(!p.room && (!p.room_ids || json_array_size(p.room_ids) <= CHAT_JOIN_ROOMS_MAX));
        json_array_foreach(p.room_ids, i, v)
            CHECK(chat_id_valid(json_string_value(v), json_string_length(v), CHAT_ROOM_ID_MAX));
        return;
    }
    CHECK(direct ? p.to_user != NULL : p.room != NULL);
    if (direct || strcmp(event, "sendMessage") == 0) {
        CHECK(json_is_string(p.text) && json_string_length(p.text) > 0 &&
              utf8_count((const uint8_t *)json_string_value(p.text), json_string_length(p.text)) <=
                  MAX_TEXT);
    } else if (strcmp(event, "markRead") == 0) {
        size_t i;
        json_t *v;
        CHECK(p.message_ids ? json_is_array(p.message_ids) &&
                                  json_array_size(p.message_ids) <= CHAT_READ_IDS_MAX
                            : p.seq > 0);
        CHECK(p.seq <= INT64_MAX);
        json_array_foreach(p.message_ids, i, v) CHECK(json_is_string(v));
    } else if (strcmp(event, "leaveRoom") == 0) {
        CHECK(p.forget == json_is_true(json_object_get(payload, "forget")));
    } else if (strcmp(event, "history") == 0) {
        CHECK(p.limit >= 1 && p.limit <= CHAT_HISTORY_MAX && p.before_seq <= INT64_MAX);
    } else if (strcmp(event, "typing") == 0) {
        CHECK(p.is_typing == json_is_true(json_object_get(payload, "isTyping")));
    }
}

/* The input as the claims of a signed HS256 token, against chat_auth_check_claims. */
static void check_token(const uint8_t *data, size_t size) {
    static const char header[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."; /* HS256, JWT */
    char *token = malloc(sizeof header + (size + 2) / 3 * 4 + 48);
    CHECK(token);
    size_t at = sizeof header - 1;
    memcpy(token, header, at);
    at += base64url_encode(data, size, token + at);
    uint8_t mac[32];
    unsigned int n = 0;
    CHECK(HMAC(EVP_sha256(), "fuzz-secret", 11, (const uint8_t *)token, at, mac, &n));
    token[at++] = '.';
    base64url_encode(mac, n, token + at);
    /* libjwt's flags; and no NUL byte, which jansson drops after a number. */
    json_t *claims = strlen(token) <= CHAT_AUTH_TOKEN_MAX && !memchr(data, '\0', size)
                         ? json_loadb((const char *)data, size, 0, NULL)
                         : NULL;
    chat_user_t got, want;
    json_t *got_rooms = NULL, *want_rooms = NULL;
    int rc = chat_auth_verify(claimed, token, 1700000000L, &got, &got_rooms);
    int expect =
        claims ? chat_auth_check_claims(claimed, claims, 1700000000L, &want, &want_rooms) : -1;
    CHECK(rc == expect);
    if (rc == 0)
        CHECK(strcmp(got.user_id, want.user_id) == 0 && strcmp(got.username, want.username) == 0 &&
              (got_rooms ? want_rooms && json_equal(got_rooms, want_rooms) : !want_rooms));
    json_decref(got_rooms);
    json_decref(want_rooms);
    json_decref(claims);
    free(token);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_id(data, size);
    check_token(data, size);
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!v)
        return 0;
    static const long clocks[] = {1700000000L, 0, -1, LONG_MIN, LONG_MAX, 253402300799L};
    for (size_t i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
        check_claims(plain, v, clocks[i]);
        check_claims(claimed, v, clocks[i]);
    }
    static const char *const events[] = {"joinRoom", "leaveRoom", "sendMessage",
                                         "typing",   "markRead",  "sendDirect",
                                         "history",  "joinRooms", "unknown"};
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        check_payload(events[i], v);
    json_decref(v);
    return 0;
}
