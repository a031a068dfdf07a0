/* chat/api.c — the /api/ routes (see api.h and docs/HTTP-API.md, the contract).
 *
 * One route function splits the path, answers CORS preflights, authenticates, then
 * hands over to one handler per endpoint. Every failure is a JSON {error, message} with
 * its status; nothing here closes a connection except what the HTTP layer decides
 * (bodies past its own limit). */
#include "chat/api.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/time.h"

#define LIMIT_MAX 100
#define WAIT_MAX_S 30
#define EMIT_ROOMS_MAX 100 /* rooms one emit names */
#define EVENT_NAME_MAX 256 /* bytes of an emitted event's name */
#define API_USER "api"
/* A number in a string literal: STR(CHAT_ROOM_ID_MAX) is "128". */
#define STR_(x) #x
#define STR(x) STR_(x)

struct chat_api {
    chat_api_config_t cfg;
    sio_server_t *io;
    chat_service_t *svc;
    const chat_auth_t *auth;
    chat_feed_t *feed;
    unsigned char key_digest[EVP_MAX_MD_SIZE]; /* SHA-256 of the API key */
    bool has_key;
};

/* Who is asking. */
typedef struct {
    bool api_key;     /* the API key: trusted backend */
    chat_user_t user; /* a token's user otherwise */
    json_t *rooms;    /* the token's room claim (chat_auth_verify) */
} principal_t;

/* What a handler gets. */
typedef struct {
    chat_api_t *api;
    http_conn_t *hc;
    http_req_t *req;
    char room[CHAT_ROOM_ID_MAX + 1];
    size_t room_len; /* bytes (a NUL inside makes the id malformed) */
    char cors[512];  /* CORS header lines for the answer, or "" */
} call_t;

void chat_api_config_defaults(chat_api_config_t *cfg) {
    *cfg = (chat_api_config_t){.max_body = 65536};
}

/* ---- answers ---- */

void chat_api_respond_json(http_conn_t *hc, int status, const char *extra, json_t *body) {
    static const char oom[] = "{\"error\":\"internal_error\",\"message\":\"out of memory\"}";
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    char lines[1280];
    int n = snprintf(lines, sizeof lines, "Cache-Control: no-store\r\n%s", extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof lines) {
        LOG_WARN("api", "answer %d: header lines too long, sent without them", status);
        lines[0] = '\0';
    }
    if (!text)
        status = 500;
    if (http_respond(hc, status, "application/json", lines, text ? text : oom,
                     text ? strlen(text) : sizeof oom - 1))
        LOG_WARN("api", "answer %d not queued", status);
    free(text);
}

void chat_api_respond_error(http_conn_t *hc, int status, const char *extra, const char *error,
                            const char *message) {
    chat_api_respond_json(hc, status, extra,
                          json_pack("{s:s,s:s}", "error", error, "message", message));
}

/* The header lines of a call's answer: its CORS lines, then extra. out is the buffer;
 * when both do not fit (they always do: cors is shorter than 512 bytes and extra lines
 * are short), the CORS lines alone. */
static const char *call_lines(const call_t *c, const char *extra, char *out, size_t size) {
    int n = snprintf(out, size, "%s%s", c->cors, extra ? extra : "");
    return n >= 0 && (size_t)n < size ? out : c->cors;
}

static void answer_obj(call_t *c, int status, const char *extra, json_t *obj) {
    char lines[1024];
    chat_api_respond_json(c->hc, status, call_lines(c, extra, lines, sizeof lines), obj);
}

static void fail_with(call_t *c, int status, const char *extra, const char *error,
                      const char *message) {
    LOG_DEBUG("api", "%.*s %.*s: %d %s", (int)c->req->head.method.len, c->req->head.method.base,
              (int)c->req->head.path.len, c->req->head.path.base, status, error);
    char lines[1024];
    chat_api_respond_error(c->hc, status, call_lines(c, extra, lines, sizeof lines), error,
                           message);
}

static void fail(call_t *c, int status, const char *error, const char *message) {
    fail_with(c, status, NULL, error, message);
}

/* ---- authentication ---- */

static bool sha256(const void *data, size_t len, unsigned char *out) {
    return EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL) == 1;
}

/* Compares digests so that the time taken says nothing about the key. */
static bool is_api_key(const chat_api_t *api, slice_t v) {
    unsigned char d[EVP_MAX_MD_SIZE];
    return api->has_key && sha256(v.base, v.len, d) && CRYPTO_memcmp(d, api->key_digest, 32) == 0;
}

/* Fills *who from the request; returns false (and answers 401) when nothing valid was
 * presented. */
static bool authenticate(call_t *c, principal_t *who) {
    const http_request_t *h = &c->req->head;
    memset(who, 0, sizeof *who);
    const slice_t *key = http_request_header(h, "x-api-key");
    if (key) {
        if (is_api_key(c->api, *key)) {
            who->api_key = true;
            return true;
        }
        fail(c, 401, "unauthorized", "invalid API key");
        return false;
    }
    char token[CHAT_AUTH_TOKEN_MAX + 1];
    const slice_t *authz = http_request_header(h, "authorization");
    slice_t q;
    if (authz) {
        if (authz->len < 7 || strncasecmp(authz->base, "Bearer ", 7) != 0) {
            fail_with(c, 401, "WWW-Authenticate: Bearer\r\n", "unauthorized",
                      "Authorization must be 'Bearer <token>'");
            return false;
        }
        slice_t v = slice_make(authz->base + 7, authz->len - 7);
        if (is_api_key(c->api, v)) {
            who->api_key = true;
            return true;
        }
        if (v.len >= sizeof token) {
            fail(c, 401, "unauthorized", "invalid token");
            return false;
        }
        memcpy(token, v.base, v.len);
        token[v.len] = '\0';
    } else if (slice_query_get(h->query, "token", &q) && q.len < sizeof token) {
        ssize_t n = http_percent_decode(q, token);
        token[n < 0 ? 0 : n] = '\0';
    } else {
        fail_with(c, 401, "WWW-Authenticate: Bearer\r\n", "unauthorized",
                  "send an API key or a token (Authorization: Bearer, X-API-Key or ?token=)");
        return false;
    }
    if (chat_auth_verify(c->api->auth, token, (long)(time_wall_ms() / 1000), &who->user,
                         &who->rooms)) {
        fail_with(c, 401, "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n", "unauthorized",
                  "invalid or expired token");
        return false;
    }
    return true;
}

/* Room-scoped calls: a token must be allowed the room (the room claim, when set). */
static bool may_use_room(call_t *c, const principal_t *who) {
    if (who->api_key || chat_auth_room_allowed(c->api->auth, who->rooms, c->room))
        return true;
    fail(c, 403, "forbidden", "this token does not grant this room");
    return false;
}

/* ---- request helpers ---- */

/* A query parameter as an unsigned integer in [min, max]; def when absent. False (and
 * answers 400) when malformed or out of range. */
static bool query_uint(call_t *c, const char *name, uint64_t min, uint64_t max, uint64_t def,
                       uint64_t *out) {
    slice_t v;
    if (!slice_query_get(c->req->head.query, name, &v)) {
        *out = def;
        return true;
    }
    unsigned long long n;
    if (!slice_to_u64(v, &n) || n < min || n > max) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s: an integer from %" PRIu64 " to %" PRIu64, name, min, max);
        fail(c, 400, "invalid_payload", msg);
        return false;
    }
    *out = n;
    return true;
}

/* The JSON object body of a POST: checks type, size and syntax. NULL when answered. */
static json_t *json_body(call_t *c) {
    const slice_t *ct = http_request_header(&c->req->head, "content-type");
    size_t n = ct ? ct->len : 0;
    const char *semi = ct ? memchr(ct->base, ';', ct->len) : NULL;
    if (semi)
        n = (size_t)(semi - ct->base);
    while (n > 0 && ct->base[n - 1] == ' ')
        n--;
    if (!ct || !slice_case_eq(slice_make(ct->base, n), "application/json")) {
        fail(c, 415, "unsupported_media_type", "send Content-Type: application/json");
        return NULL;
    }
    if (c->req->body_too_large || c->req->body.len > c->api->cfg.max_body) {
        char msg[96];
        snprintf(msg, sizeof msg, "the body is over %zu bytes", c->api->cfg.max_body);
        fail(c, 413, "too_large", msg);
        return NULL;
    }
    json_error_t err;
    /* Text may hold NULs, as over Socket.IO; ids and names are checked for them. */
    json_t *o = json_loadb(c->req->body.base, c->req->body.len, JSON_ALLOW_NUL, &err);
    if (!json_is_object(o)) {
        json_decref(o);
        fail(c, 400, "bad_json", o ? "the body must be a JSON object" : err.text);
        return NULL;
    }
    return o;
}

/* An optional string field (an id or name: chat_id_valid, 1..max bytes); false (answered)
 * when malformed. */
static bool opt_string(call_t *c, json_t *o, const char *name, size_t max, const char **out) {
    json_t *v = json_object_get(o, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return true;
    const char *s = json_string_value(v);
    if (!chat_id_valid(s, s ? json_string_length(v) : 0, max)) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s: 1 to %zu bytes, no control or format characters", name, max);
        fail(c, 400, "invalid_payload", msg);
        return false;
    }
    *out = s;
    return true;
}

/* ---- endpoints ---- */

/* GET /api/rooms/{room}/events */
static void get_events(call_t *c, const principal_t *who) {
    if (!may_use_room(c, who))
        return;
    const slice_t *hdr = http_request_header(&c->req->head, "last-event-id");
    slice_t q;
    bool resume = hdr || slice_query_get(c->req->head.query, "lastEventId", &q);
    unsigned long long after = 0;
    /* A browser reconnects to the same URL with a newer Last-Event-ID: the header wins. */
    if (resume && !slice_to_u64(hdr ? *hdr : q, &after)) {
        fail(c, 400, "invalid_payload", "Last-Event-ID: a message seq");
        return;
    }
    int rc = chat_feed_stream(c->api->feed, c->hc, c->room, resume, after, c->cors);
    if (rc)
        fail(c, 503, "unavailable", "cannot open a stream now");
}

/* GET /api/rooms/{room}/messages?after&limit&wait */
static void get_messages(call_t *c, const principal_t *who) {
    uint64_t after, limit, wait;
    if (!may_use_room(c, who) || !query_uint(c, "after", 0, INT64_MAX, 0, &after) ||
        !query_uint(c, "limit", 1, LIMIT_MAX, LIMIT_MAX, &limit) ||
        !query_uint(c, "wait", 0, WAIT_MAX_S, 0, &wait))
        return;
    int rc = chat_feed_poll(c->api->feed, c->hc, c->room, after, (size_t)limit,
                            (uint32_t)wait * 1000, c->cors);
    if (rc)
        fail(c, 503, "unavailable", "cannot read history now");
}

/* A request waiting for the store (a durable post, a membership read). */
typedef struct {
    http_conn_t *hc; /* NULL once its connection is gone */
    chat_service_t *svc;
    char cors[512];
    char room[CHAT_ROOM_ID_MAX + 1]; /* members: the room */
    bool starting; /* a read is being started: an answer now is given within the route call */
    bool answered; /* ... and it was */
} post_wait_t;

static void post_abort(http_conn_t *hc, void *arg) {
    ((post_wait_t *)arg)->hc = NULL;
}

static post_wait_t *wait_new(call_t *c) {
    post_wait_t *w = calloc(1, sizeof *w);
    if (!w) {
        fail(c, 500, "internal_error", "out of memory");
        return NULL;
    }
    w->hc = c->hc;
    w->svc = c->api->svc;
    snprintf(w->cors, sizeof w->cors, "%s", c->cors);
    snprintf(w->room, sizeof w->room, "%s", c->room);
    w->starting = true;
    return w;
}

/* Answers a membership read (obj taken; NULL: the store could not answer). */
static void read_done(post_wait_t *w, json_t *obj) {
    if (w->hc) {
        http_req_t done = {.head = {.method = SLICE_LIT("GET"), .path = SLICE_LIT("(read)")}};
        call_t c = {.hc = w->hc, .req = &done};
        snprintf(c.cors, sizeof c.cors, "%s", w->cors);
        if (obj)
            answer_obj(&c, 200, NULL, obj);
        else
            fail(&c, 503, "unavailable", "cannot read memberships now");
    } else {
        json_decref(obj);
    }
    if (w->starting)
        w->answered = true;
    else
        free(w);
}

/* After a membership read was started (rc from the service): answers at once when it
 * failed, holds the request when the answer comes later. */
static void read_started(call_t *c, post_wait_t *w, int rc) {
    if (rc)
        fail(c, 503, "unavailable", "cannot read memberships now");
    if (rc || w->answered) {
        free(w);
        return;
    }
    w->starting = false;
    http_conn_hold(c->hc, post_abort, w);
}

static void members_done(json_t *result, void *arg) {
    post_wait_t *w = arg;
    json_t *present = json_pack("{s:s,s:I,s:o}", "roomId", w->room, "count",
                                (json_int_t)chat_service_room_users(w->svc, w->room), "members",
                                chat_service_members(w->svc, w->room));
    json_t *all = result ? json_object_get(result, "members") : NULL;
    json_t *obj = NULL;
    if (present && all && json_object_set(present, "memberships", all) == 0 &&
        json_object_set(present, "lastSeq", json_object_get(result, "lastSeq")) == 0)
        obj = json_incref(present);
    json_decref(present);
    json_decref(result);
    read_done(w, obj);
}

/* GET /api/rooms/{room}/members: who is present, and every member, present or away. */
static void get_members(call_t *c, const principal_t *who) {
    if (!may_use_room(c, who))
        return;
    post_wait_t *w = wait_new(c);
    if (w)
        read_started(c, w, chat_service_memberships(c->api->svc, c->room, members_done, w));
}

static void my_rooms_done(json_t *result, void *arg) {
    read_done(arg, result ? json_pack("{s:o}", "rooms", result) : NULL);
}

/* GET /api/users/me/rooms: the token's user's rooms, as myRooms lists them. */
static void get_my_rooms(call_t *c, const principal_t *who) {
    if (who->api_key) {
        fail(c, 400, "invalid_payload", "a user's token names the user; an API key does not");
        return;
    }
    post_wait_t *w = wait_new(c);
    if (w)
        read_started(
            c, w,
            chat_service_user_rooms(c->api->svc, who->user.user_id, who->rooms, my_rooms_done, w));
}

static void post_done(const char *error, chat_msg_t *msg, void *arg) {
    post_wait_t *w = arg;
    if (w->hc) {
        /* The request itself is gone (its buffer was reused); only the answer is due. */
        http_req_t done = {.head = {.method = SLICE_LIT("POST"), .path = SLICE_LIT("(message)")}};
        call_t c = {.hc = w->hc, .req = &done};
        snprintf(c.cors, sizeof c.cors, "%s", w->cors);
        if (error && strcmp(error, "rate_limited") == 0) {
            char extra[48];
            snprintf(extra, sizeof extra, "Retry-After: %u\r\n", chat_service_retry_after(w->svc));
            fail_with(&c, 429, extra, error, "too many messages: slow down");
        } else if (error) {
            fail(&c, 500, error, "the message could not be stored");
        } else
            answer_obj(&c, 201, NULL,
                       json_pack("{s:s,s:I,s:I}", "id", msg->id, "seq", (json_int_t)msg->seq,
                                 "timestamp", (json_int_t)msg->timestamp));
    }
    free(w);
}

/* POST /api/rooms/{room}/messages {text, userId?, username?} */
static void post_message(call_t *c, const principal_t *who) {
    if (!may_use_room(c, who))
        return;
    json_t *o = json_body(c);
    if (!o)
        return;
    chat_user_t user = who->user;
    if (who->api_key) {
        const char *uid, *name;
        if (!opt_string(c, o, "userId", CHAT_USER_ID_MAX, &uid) ||
            !opt_string(c, o, "username", CHAT_USERNAME_MAX, &name)) {
            json_decref(o);
            return;
        }
        snprintf(user.user_id, sizeof user.user_id, "%s", uid ? uid : API_USER);
        snprintf(user.username, sizeof user.username, "%s", name ? name : user.user_id);
    }
    post_wait_t *w = calloc(1, sizeof *w);
    if (!w) {
        json_decref(o);
        fail(c, 500, "internal_error", "out of memory");
        return;
    }
    w->hc = c->hc;
    w->svc = c->api->svc;
    snprintf(w->cors, sizeof w->cors, "%s", c->cors);
    unsigned retry = 0;
    /* A trusted backend (the API key) is not rate limited; users are, per user. */
    const char *err = chat_service_post(c->api->svc, c->room, &user, json_object_get(o, "text"),
                                        !who->api_key, &retry, post_done, w);
    json_decref(o);
    if (!err) {
        http_conn_hold(c->hc, post_abort, w);
        return;
    }
    free(w);
    if (strcmp(err, "rate_limited") == 0) {
        char extra[48];
        snprintf(extra, sizeof extra, "Retry-After: %u\r\n", retry);
        fail_with(c, 429, extra, err, "too many messages: slow down");
    } else if (strcmp(err, "too_long") == 0) {
        fail(c, 400, err, "text: too many characters");
    } else if (strcmp(err, "invalid_payload") == 0) {
        fail(c, 400, err, "text: a non-empty string");
    } else {
        fail(c, 503, err, "the message cannot be stored now");
    }
}

/* The rooms an emit goes to: "room" (a string) or "rooms" (an array of strings). Fills
 * names (borrowed from o) and returns the count, or -1 (answered). */
static int emit_rooms(call_t *c, json_t *o, const char **names, size_t max) {
    json_t *one = json_object_get(o, "room"), *many = json_object_get(o, "rooms");
    size_t n = 0;
    if (one && !json_is_null(one)) {
        if (!json_is_string(one)) {
            fail(c, 400, "invalid_payload", "room: a string");
            return -1;
        }
        names[n++] = json_string_value(one);
    }
    size_t i;
    json_t *v;
    json_array_foreach(many, i, v) {
        if (!json_is_string(v) || n == max) {
            fail(c, 400, "invalid_payload",
                 "rooms: an array of at most " STR(EMIT_ROOMS_MAX) " strings");
            return -1;
        }
        names[n++] = json_string_value(v);
    }
    if (many && !json_is_null(many) && !json_is_array(many)) {
        fail(c, 400, "invalid_payload", "rooms: an array of strings");
        return -1;
    }
    return (int)n;
}

static bool reserved_event(const char *ev) {
    static const char *const reserved[] = {"connect",       "connect_error", "disconnect",
                                           "disconnecting", "newListener",   "removeListener"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcmp(ev, reserved[i]) == 0)
            return true;
    return false;
}

/* POST /api/emit {room?|rooms?, namespace?, event, data?} — API key only. */
static void post_emit(call_t *c, const principal_t *who) {
    if (!who->api_key) {
        fail(c, 403, "forbidden", "emit needs the API key");
        return;
    }
    json_t *o = json_body(c);
    if (!o)
        return;
    const char *rooms[EMIT_ROOMS_MAX];
    int nrooms = emit_rooms(c, o, rooms, EMIT_ROOMS_MAX);
    json_t *ev = json_object_get(o, "event"), *ns = json_object_get(o, "namespace");
    const char *event = json_string_value(ev);
    const char *ns_name = ns && !json_is_null(ns) ? json_string_value(ns) : "/";
    if (nrooms < 0) {
        json_decref(o);
        return;
    }
    if (!event || !*event || json_string_length(ev) > EVENT_NAME_MAX ||
        strlen(event) != json_string_length(ev) || reserved_event(event)) {
        fail(c, 400, "invalid_payload",
             "event: a string of 1 to " STR(EVENT_NAME_MAX) " bytes, not a reserved name");
        json_decref(o);
        return;
    }
    if (!ns_name) {
        fail(c, 400, "invalid_payload", "namespace: a string");
        json_decref(o);
        return;
    }
    sio_nsp_t *nsp = sio_server_find(c->api->io, ns_name);
    if (!nsp) {
        fail(c, 404, "not_found", "no such namespace");
        json_decref(o);
        return;
    }
    json_t *data = json_object_get(o, "data");
    json_t *args = data ? json_pack("[O]", data) : json_array();
    sio_payload_t p = {args, NULL, 0};
    sio_target_t to = {.rooms = rooms, .nrooms = (size_t)nrooms};
    int rc = args ? sio_nsp_emit(nsp, &to, event, &p) : -ENOMEM;
    json_decref(args);
    json_decref(o);
    if (rc) {
        fail(c, 500, "internal_error", "the event could not be sent");
        return;
    }
    answer_obj(c, 200, NULL, json_pack("{s:b}", "ok", 1));
}

/* ---- routing ---- */

typedef void (*handler_fn)(call_t *c, const principal_t *who);

/* Which handler a path and method name: 0 found, else the status to answer (404, 405)
 * with *allow set for 405. */
static int pick(call_t *c, slice_t path, slice_t method, handler_fn *out, const char **allow) {
    static const char rooms[] = "/api/rooms/";
    bool get = slice_eq(method, "GET") || slice_eq(method, "HEAD");
    bool post = slice_eq(method, "POST");
    if (slice_eq(path, "/api/emit")) {
        *allow = "POST";
        *out = post_emit;
        return post ? 0 : 405;
    }
    if (slice_eq(path, "/api/users/me/rooms")) {
        *allow = "GET";
        *out = get_my_rooms;
        return get ? 0 : 405;
    }
    if (path.len <= sizeof rooms - 1 || memcmp(path.base, rooms, sizeof rooms - 1) != 0)
        return 404;
    const char *id = path.base + sizeof rooms - 1;
    const char *slash = memchr(id, '/', (size_t)(path.base + path.len - id));
    if (!slash)
        return 404;
    slice_t what = slice_make(slash + 1, (size_t)(path.base + path.len - slash - 1));
    slice_t raw = slice_make(id, (size_t)(slash - id));
    if (raw.len == 0)
        return 404;
    if (raw.len > 3 * CHAT_ROOM_ID_MAX)
        return 400;
    char decoded[3 * CHAT_ROOM_ID_MAX + 1];
    ssize_t n = http_percent_decode(raw, decoded);
    if (n <= 0 || n > CHAT_ROOM_ID_MAX)
        return 400;
    memcpy(c->room, decoded, (size_t)n);
    c->room[n] = '\0';
    c->room_len = (size_t)n;
    if (slice_eq(what, "events")) {
        *allow = "GET";
        *out = get_events;
        return get ? 0 : 405;
    }
    if (slice_eq(what, "members")) {
        *allow = "GET";
        *out = get_members;
        return get ? 0 : 405;
    }
    if (slice_eq(what, "messages")) {
        *allow = "GET, POST";
        *out = post ? post_message : get_messages;
        return get || post ? 0 : 405;
    }
    return 404;
}

static void preflight(call_t *c) {
    char lines[1024];
    int n = snprintf(lines, sizeof lines,
                     "%sAccess-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                     "Access-Control-Allow-Headers: Authorization, Content-Type, X-API-Key, "
                     "Last-Event-ID\r\nAccess-Control-Max-Age: 600\r\n",
                     c->cors);
    if (n < 0 || (size_t)n >= sizeof lines || http_respond(c->hc, 204, NULL, lines, NULL, 0))
        LOG_WARN("api", "preflight answer not queued");
}

static bool api_route(http_conn_t *hc, http_req_t *req, void *arg) {
    chat_api_t *api = arg;
    call_t c = {.api = api, .hc = hc, .req = req};
    http_cors_headers(api->cfg.cors_origins, api->cfg.cors_origin_count, &req->head, c.cors,
                      sizeof c.cors);
    handler_fn fn = NULL;
    const char *allow = NULL;
    int status = pick(&c, req->head.path, req->head.method, &fn, &allow);
    if (status == 0 || (status == 405 && slice_eq(req->head.method, "OPTIONS"))) {
        if (slice_eq(req->head.method, "OPTIONS")) {
            preflight(&c);
            return true;
        }
    } else if (status == 405) {
        char extra[64];
        snprintf(extra, sizeof extra, "Allow: %s\r\n", allow);
        fail_with(&c, 405, extra, "method_not_allowed", "this method is not allowed here");
        return true;
    } else if (status == 400) {
        fail(&c, 400, "invalid_payload", "room id: 1 to " STR(CHAT_ROOM_ID_MAX) " bytes");
        return true;
    } else {
        fail(&c, 404, "not_found", "no such API route");
        return true;
    }
    if (fn != post_emit && fn != get_my_rooms) {
        int rc = chat_service_check_room(api->svc, c.room, c.room_len);
        if (rc == -EINVAL) {
            fail(&c, 400, "invalid_payload",
                 "room id: 1 to " STR(
                     CHAT_ROOM_ID_MAX) " bytes of UTF-8, no control or format characters");
            return true;
        }
        if (rc == -ENOENT) {
            fail(&c, 404, "not_found", "no such room");
            return true;
        }
    }
    principal_t who;
    if (!authenticate(&c, &who))
        return true;
    fn(&c, &who);
    json_decref(who.rooms);
    return true;
}

int chat_api_new(http_server_t *http, sio_server_t *io, chat_service_t *svc,
                 const chat_auth_t *auth, chat_feed_t *feed, const chat_api_config_t *cfg,
                 chat_api_t **out) {
    chat_api_t *api = calloc(1, sizeof *api);
    if (!api)
        return -ENOMEM;
    api->cfg = *cfg;
    api->io = io;
    api->svc = svc;
    api->auth = auth;
    api->feed = feed;
    if (cfg->api_key && *cfg->api_key) {
        if (!sha256(cfg->api_key, strlen(cfg->api_key), api->key_digest)) {
            free(api);
            return -EINVAL;
        }
        api->has_key = true;
    }
    int rc = http_server_route(http, "/api/", api_route, api);
    if (rc) {
        free(api);
        return rc;
    }
    *out = api;
    return 0;
}

void chat_api_free(chat_api_t *api) {
    free(api);
}
