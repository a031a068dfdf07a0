/* chat/admin.c — the /admin namespace of @socket.io/admin-ui 0.5 (chat/admin.h).
 *
 * What the UI sees, as the package's server side sends it:
 * - auth {username, password} checked against a bcrypt hash, or {sessionId} of an
 *   earlier login ("session" is sent after a password login); otherwise connect_error
 *   "invalid credentials";
 * - config {supportedFeatures}: EMIT, JOIN, LEAVE, DISCONNECT, MJOIN, MLEAVE,
 *   MDISCONNECT (none in readonly mode), AGGREGATED_EVENTS, and ALL_EVENTS unless in
 *   production mode (the UI then shows sockets, rooms, clients and events);
 * - server_stats to the namespace every interval, from every server;
 * - all_sockets on connect; socket_connected, socket_updated (transport),
 *   socket_disconnected, room_joined, room_left, event_received, event_sent as they
 *   happen.
 *
 * The events come from a sio monitor (parley/sio.h), set only while an admin is
 * connected to this server or, lately, to another: with none, the chat's hot path pays
 * a pointer test. The monitor's callbacks may not emit (they run inside the operation
 * they report), so they queue the event's JSON, and a zero timer emits the queue from
 * the loop, in order. The aggregated traffic figures are differences of the layers'
 * counters between two stats, never counted per message here.
 *
 * bcrypt costs tens of milliseconds: it runs on libuv's thread pool, at most
 * ADMIN_AUTH_PENDING at once (more are refused), and the password is compared in full
 * whatever the user name, then both results in constant time. */
#include "chat/admin.h"

#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sio/adapter.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/rand.h"
#include "util/time.h"

/* Password checks running at once; more are refused (each takes a pool thread). */
#define ADMIN_AUTH_PENDING 4
/* Bytes of a user name or password looked at; longer ones are refused. */
#define ADMIN_CRED_MAX 1024
/* Sessions kept (the oldest goes first) and for how long (the package's Redis store's
 * default duration). */
#define ADMIN_SESSIONS 64
#define ADMIN_SESSION_MS (24 * 3600 * 1000ULL)
#define ADMIN_SESSION_LEN 16
/* Events waiting to be emitted at most; past it they are dropped (and counted). */
#define ADMIN_QUEUE_MAX 65536
/* Room names and event names an action may carry, in bytes. */
#define ADMIN_NAME_MAX 1024
/* How long another server's admin keeps this one monitoring, in stats intervals. */
#define ADMIN_REMOTE_TICKS 3
/* How long an admin waits for the other servers' sockets. */
#define ADMIN_ASK_MS 2000

#define EV_ACTIVE "parley:admin-active"
#define EV_SOCKETS "parley:admin-sockets"
#define EV_SESSION "parley:admin-session"

typedef struct {
    char id[ADMIN_SESSION_LEN + 1];
    uint64_t expires; /* monotonic ms */
} admin_session_t;

typedef struct {
    const char *event; /* a literal */
    char *args;        /* JSON text of the argument array */
    size_t len;
} queued_t;

typedef struct {
    uint64_t handshakes, ended[EIO_END_REASONS], packets_in, packets_out, bytes_in, bytes_out;
} counters_t;

struct chat_admin {
    sio_server_t *io;
    sio_nsp_t *nsp;
    uv_loop_t *loop;
    net_loop_t *nl;
    chat_admin_config_t cfg;
    char *username, *hash, *nsp_name, server_id[300], hostname[256];
    uv_timer_t stats_timer, flush_timer;
    unsigned open_handles;
    unsigned pending_auth;
    bool closing, monitoring;
    uint64_t started, remote_until;
    admin_session_t sessions[ADMIN_SESSIONS];
    queued_t *queue;
    size_t nqueue, capqueue;
    uint64_t dropped;
    counters_t last;
};

void chat_admin_config_defaults(chat_admin_config_t *cfg) {
    *cfg = (chat_admin_config_t){.nsp = "/admin", .stats_interval_ms = 2000};
}

static bool is_bcrypt_prefix(const char *h) {
    return strncmp(h, "$2a$", 4) == 0 || strncmp(h, "$2b$", 4) == 0 || strncmp(h, "$2y$", 4) == 0;
}

int chat_admin_hash_valid(const char *hash) {
    if (!hash || strlen(hash) != 60 || !is_bcrypt_prefix(hash))
        return -EINVAL;
    /* libxcrypt parses the setting (cost, salt) without the cost of a full check only
     * by doing one; at start-up once is fine. */
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (!cd)
        return -ENOMEM;
    const char *out = crypt_rn("", hash, cd, sizeof *cd);
    int rc = out && is_bcrypt_prefix(out) ? 0 : -EINVAL;
    free(cd);
    return rc;
}

/* Constant time in the length of `want` (the secret side). */
static bool same(const char *got, size_t got_len, const char *want) {
    size_t n = strlen(want);
    unsigned diff = got_len != n;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned)(unsigned char)want[i] ^ (unsigned char)(i < got_len ? got[i] : 0);
    return diff == 0;
}

/* ---- time and text ---- */

/* new Date().toISOString() of now. */
static void iso_now(char out[32]) {
    uint64_t ms = time_wall_ms();
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) {
        snprintf(out, 32, "1970-01-01T00:00:00.000Z");
        return;
    }
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03uZ", day, (unsigned)(ms % 1000));
}

/* ---- the queue of events for the admins ---- */

/* What goes to the admins is never kept for connection state recovery (nor numbered
 * with an offset): the UI asks for everything again when it reconnects. */
static const sio_target_t to_admins = {.flags = SIO_NO_RECOVERY};

static void flush_cb(uv_timer_t *t) {
    chat_admin_t *a = t->data;
    /* Emitting may report more (an admin's own socket): take the queue first. */
    queued_t *q = a->queue;
    size_t n = a->nqueue;
    a->queue = NULL;
    a->nqueue = a->capqueue = 0;
    for (size_t i = 0; i < n; i++) {
        if (!a->closing && sio_nsp_emit_json(a->nsp, &to_admins, q[i].event, q[i].args, q[i].len))
            LOG_LIMITED(LOG_LEVEL_WARN, "admin", "%s not sent: out of memory", q[i].event);
        free(q[i].args);
    }
    free(q);
    if (a->dropped) {
        LOG_LIMITED(LOG_LEVEL_WARN, "admin", "%llu events for the admin UI dropped",
                    (unsigned long long)a->dropped);
        a->dropped = 0;
    }
}

/* Queues `event` with the arguments `args` (taken over). */
static void enqueue(chat_admin_t *a, const char *event, json_t *args) {
    char *text = args ? json_dumps(args, JSON_COMPACT) : NULL;
    json_decref(args);
    if (!text || a->nqueue >= ADMIN_QUEUE_MAX) {
        free(text);
        a->dropped++;
        return;
    }
    if (a->nqueue == a->capqueue) {
        size_t cap = a->capqueue ? a->capqueue * 2 : 64;
        queued_t *q = realloc(a->queue, cap * sizeof *q);
        if (!q) {
            free(text);
            a->dropped++;
            return;
        }
        a->queue = q;
        a->capqueue = cap;
    }
    a->queue[a->nqueue++] = (queued_t){event, text, strlen(text)};
    if (a->nqueue == 1 && uv_timer_start(&a->flush_timer, flush_cb, 0, 0))
        LOG_LIMITED(LOG_LEVEL_ERROR, "admin", "cannot start the flush timer");
}

/* ---- sockets as the UI shows them ---- */

static json_t *serialize(sio_socket_t *s) {
    json_t *d = sio_socket_describe(s);
    json_t *hs = json_object_get(d, "handshake");
    char client[13];
    snprintf(client, sizeof client, "%.12s", sio_socket_client_id(s));
    /* The auth object is the admin's own password or a user's token: never shown. */
    if (!hs || json_object_del(hs, "auth") ||
        json_object_set_new(d, "clientId", json_string(client)) ||
        json_object_set_new(d, "transport", json_string(sio_socket_transport(s))) ||
        json_object_set_new(d, "nsp", json_string(sio_nsp_name(sio_socket_nsp(s))))) {
        json_decref(d);
        return NULL;
    }
    /* The address the UI shows is the proxy's client header when there is one. */
    json_t *headers = json_object_get(hs, "headers");
    json_t *fwd = json_object_get(headers, "cf-connecting-ip");
    if (!fwd)
        fwd = json_object_get(headers, "x-forwarded-for");
    if (json_is_string(fwd) && json_object_set(hs, "address", fwd)) {
        json_decref(d);
        return NULL;
    }
    return d;
}

typedef struct {
    json_t *list;
    int rc;
} collect_t;

static void collect_socket(sio_socket_t *s, void *arg) {
    collect_t *c = arg;
    if (c->rc == 0 && json_array_append_new(c->list, serialize(s)))
        c->rc = -ENOMEM;
}

static void collect_nsp(sio_nsp_t *nsp, void *arg) {
    collect_t *c = arg;
    if (c->rc == 0)
        c->rc = sio_nsp_fetch_sockets(nsp, NULL, collect_socket, c);
}

/* This server's sockets, every namespace (a new array, or NULL). */
static json_t *local_sockets(chat_admin_t *a) {
    collect_t c = {json_array(), 0};
    if (c.list)
        sio_server_each_nsp(a->io, collect_nsp, &c);
    if (c.rc) {
        json_decref(c.list);
        return NULL;
    }
    return c.list;
}

/* ---- the monitor: what happens to sockets, queued for the admins ---- */

static void on_connect(sio_socket_t *s, void *arg) {
    char now[32];
    iso_now(now);
    json_t *sj = serialize(s);
    enqueue(arg, "socket_connected", sj ? json_pack("[o,s]", sj, now) : NULL);
}

static void on_disconnect(sio_socket_t *s, const char *reason, void *arg) {
    char now[32];
    iso_now(now);
    const char *nsp = sio_nsp_name(sio_socket_nsp(s)), *id = sio_socket_id(s);
    enqueue(arg, "socket_disconnected", json_pack("[s,s,s,s]", nsp, id, reason, now));
    /* Its own room goes with it (leaves of the others follow from the sio layer). */
    enqueue(arg, "room_left", json_pack("[s,s,s,s]", nsp, id, id, now));
}

static void on_room(chat_admin_t *a, sio_socket_t *s, const char *room, const char *event) {
    char now[32];
    iso_now(now);
    enqueue(a, event,
            json_pack("[s,s,s,s]", sio_nsp_name(sio_socket_nsp(s)), room, sio_socket_id(s), now));
}

static void on_join(sio_socket_t *s, const char *room, void *arg) {
    on_room(arg, s, room, "room_joined");
}

static void on_leave(sio_socket_t *s, const char *room, void *arg) {
    on_room(arg, s, room, "room_left");
}

static void on_event_in(sio_socket_t *s, json_t *packet, void *arg) {
    chat_admin_t *a = arg;
    if (sio_socket_nsp(s) == a->nsp)
        return; /* the admins' own actions are not shown, as the package does */
    char now[32];
    iso_now(now);
    enqueue(a, "event_received",
            json_pack("[s,s,O,s]", sio_nsp_name(sio_socket_nsp(s)), sio_socket_id(s), packet, now));
}

static void on_event_out(sio_socket_t *s, const char *event, const char *args_json, size_t len,
                         void *arg) {
    chat_admin_t *a = arg;
    if (sio_socket_nsp(s) == a->nsp)
        return;
    json_t *args = json_loadb(args_json, len, 0, NULL);
    json_t *all = json_pack("[s]", event);
    char now[32];
    iso_now(now);
    json_t *msg = NULL;
    if (json_is_array(args) && all && json_array_extend(all, args) == 0)
        msg = json_pack("[s,s,O,s]", sio_nsp_name(sio_socket_nsp(s)), sio_socket_id(s), all, now);
    json_decref(args);
    json_decref(all);
    enqueue(a, "event_sent", msg);
}

static void on_transport(sio_socket_t *s, const char *transport, void *arg) {
    enqueue(arg, "socket_updated",
            json_pack("[{s:s,s:s,s:s}]", "id", sio_socket_id(s), "nsp",
                      sio_nsp_name(sio_socket_nsp(s)), "transport", transport));
}

static const sio_monitor_t monitor = {
    .connect = on_connect,
    .disconnect = on_disconnect,
    .join = on_join,
    .leave = on_leave,
    .event_in = on_event_in,
    .event_out = on_event_out,
    .transport = on_transport,
};

/* Monitors while an admin is connected here or, lately, to another server. */
static void update_monitor(chat_admin_t *a) {
    bool want = !a->closing && !a->cfg.production &&
                (sio_nsp_socket_count(a->nsp) > 0 || time_mono_ms() < a->remote_until);
    if (want == a->monitoring)
        return;
    a->monitoring = want;
    sio_server_monitor(a->io, want ? &monitor : NULL, a);
    LOG_INFO("admin", "%s following sockets for the admin UI", want ? "now" : "no longer");
}

/* ---- server_stats ---- */

static void read_counters(chat_admin_t *a, counters_t *c) {
    eio_stats_t es;
    sio_stats_t ss;
    eio_server_stats(sio_server_eio(a->io), &es);
    sio_server_stats(a->io, &ss);
    *c = (counters_t){.handshakes = es.handshakes,
                      .packets_in = ss.packets_received,
                      .packets_out = ss.packets_sent};
    memcpy(c->ended, es.ended, sizeof c->ended);
    if (a->nl) {
        net_loop_stats_t ns;
        net_loop_stats(a->nl, &ns);
        c->bytes_in = ns.bytes_in;
        c->bytes_out = ns.bytes_out;
    }
}

static int add_agg(json_t *list, json_int_t ts, const char *type, const char *sub, uint64_t n) {
    if (n == 0)
        return 0;
    json_t *e =
        sub ? json_pack("{s:I,s:s,s:s,s:I}", "timestamp", ts, "type", type, "subType", sub, "count",
                        (json_int_t)n)
            : json_pack("{s:I,s:s,s:I}", "timestamp", ts, "type", type, "count", (json_int_t)n);
    return json_array_append_new(list, e);
}

/* What happened since the last call, as the package's aggregated events. */
static json_t *aggregated(chat_admin_t *a) {
    counters_t now;
    read_counters(a, &now);
    json_t *list = json_array();
    json_int_t ts = (json_int_t)time_wall_ms() / 1000 * 1000; /* whole seconds, in ms */
    int rc = list ? 0 : -ENOMEM;
    if (rc == 0)
        rc = add_agg(list, ts, "rawConnection", NULL, now.handshakes - a->last.handshakes);
    for (int r = 0; rc == 0 && r < EIO_END_REASONS; r++)
        rc = add_agg(list, ts, "rawDisconnection", eio_end_reason_name((eio_end_reason_t)r),
                     now.ended[r] - a->last.ended[r]);
    if (rc == 0)
        rc = add_agg(list, ts, "packetsIn", NULL, now.packets_in - a->last.packets_in);
    if (rc == 0)
        rc = add_agg(list, ts, "packetsOut", NULL, now.packets_out - a->last.packets_out);
    if (rc == 0)
        rc = add_agg(list, ts, "bytesIn", NULL, now.bytes_in - a->last.bytes_in);
    if (rc == 0)
        rc = add_agg(list, ts, "bytesOut", NULL, now.bytes_out - a->last.bytes_out);
    a->last = now;
    if (rc) {
        json_decref(list);
        return NULL;
    }
    return list;
}

static void add_nsp(sio_nsp_t *nsp, void *arg) {
    json_t *list = arg;
    if (json_array_append_new(list,
                              json_pack("{s:s,s:I}", "name", sio_nsp_name(nsp), "socketsCount",
                                        (json_int_t)sio_nsp_socket_count(nsp))))
        LOG_LIMITED(LOG_LEVEL_WARN, "admin", "server_stats: out of memory");
}

static json_t *server_stats(chat_admin_t *a, json_t *events) {
    eio_stats_t es;
    sio_stats_t ss;
    eio_server_stats(sio_server_eio(a->io), &es);
    sio_server_stats(a->io, &ss);
    json_t *nsps = json_array();
    if (nsps)
        sio_server_each_nsp(a->io, add_nsp, nsps);
    double uptime = (double)(time_mono_ms() - a->started) / 1000.0;
    return json_pack("{s:s,s:s,s:I,s:f,s:I,s:I,s:o,s:o}", "serverId", a->server_id, "hostname",
                     a->hostname, "pid", (json_int_t)getpid(), "uptime", uptime, "clientsCount",
                     (json_int_t)ss.clients, "pollingClientsCount", (json_int_t)es.polling,
                     "aggregatedEvents", events ? events : json_array(), "namespaces",
                     nsps ? nsps : json_array());
}

static bool admins_here(chat_admin_t *a) {
    return sio_nsp_socket_count(a->nsp) > 0;
}

static void stats_cb(uv_timer_t *t) {
    chat_admin_t *a = t->data;
    json_t *events = aggregated(a);
    update_monitor(a);
    bool active = admins_here(a) || time_mono_ms() < a->remote_until;
    if (admins_here(a) && sio_nsp_server_count(a->nsp) > 1 &&
        sio_nsp_server_emit(a->nsp, EV_ACTIVE, NULL, 0, NULL, NULL))
        LOG_LIMITED(LOG_LEVEL_WARN, "admin", "other servers not told of the admin UI");
    if (!active) {
        json_decref(events);
        return;
    }
    json_t *stats = server_stats(a, events);
    json_t *args = stats ? json_pack("[o]", stats) : NULL;
    char *text = args ? json_dumps(args, JSON_COMPACT) : NULL;
    if (!text || sio_nsp_emit_json(a->nsp, &to_admins, "server_stats", text, strlen(text)))
        LOG_LIMITED(LOG_LEVEL_WARN, "admin", "server_stats not sent: out of memory");
    free(text);
    json_decref(args);
}

/* ---- sessions ---- */

static bool session_known(chat_admin_t *a, const char *id, size_t len) {
    uint64_t now = time_mono_ms();
    bool found = false;
    for (size_t i = 0; i < ADMIN_SESSIONS; i++)
        found |= a->sessions[i].expires > now && same(id, len, a->sessions[i].id);
    return found;
}

static void session_keep(chat_admin_t *a, const char *id) {
    size_t oldest = 0;
    for (size_t i = 1; i < ADMIN_SESSIONS; i++)
        if (a->sessions[i].expires < a->sessions[oldest].expires)
            oldest = i;
    snprintf(a->sessions[oldest].id, sizeof a->sessions[oldest].id, "%s", id);
    a->sessions[oldest].expires = time_mono_ms() + ADMIN_SESSION_MS;
}

static bool session_id_ok(const char *id) {
    return id && strlen(id) == ADMIN_SESSION_LEN &&
           strspn(id, "0123456789abcdef") == ADMIN_SESSION_LEN;
}

/* A new session (8 random bytes in hex, as the package's), kept and told to the other
 * servers; NULL when there is no randomness. */
static char *session_new(chat_admin_t *a) {
    uint8_t raw[ADMIN_SESSION_LEN / 2];
    if (rand_bytes(raw, sizeof raw))
        return NULL;
    char *id = malloc(ADMIN_SESSION_LEN + 1);
    if (!id)
        return NULL;
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    session_keep(a, id);
    json_t *args = json_pack("[s]", id);
    sio_payload_t p = {args, NULL, 0};
    if (args && sio_nsp_server_count(a->nsp) > 1 &&
        sio_nsp_server_emit(a->nsp, EV_SESSION, &p, 0, NULL, NULL))
        LOG_LIMITED(LOG_LEVEL_WARN, "admin", "other servers not told of an admin session");
    json_decref(args);
    return id;
}

/* ---- authentication ---- */

typedef struct {
    uv_work_t req;
    chat_admin_t *a;
    sio_next_ctx_t *ctx;
    char *password;
    bool user_ok, ok;
} auth_work_t;

static void auth_run(uv_work_t *req) {
    auth_work_t *w = req->data;
    struct crypt_data *cd = calloc(1, sizeof *cd);
    const char *out = cd ? crypt_rn(w->password, w->a->hash, cd, sizeof *cd) : NULL;
    w->ok = out && same(out, strlen(out), w->a->hash);
    if (cd)
        explicit_bzero(cd, sizeof *cd);
    free(cd);
}

static void admin_maybe_free(chat_admin_t *a);

static void auth_done(uv_work_t *req, int status) {
    auth_work_t *w = req->data;
    chat_admin_t *a = w->a;
    bool ok = status == 0 && w->ok && w->user_ok && !a->closing;
    json_t *err = ok ? NULL : sio_error_new("invalid credentials", NULL);
    if (!ok)
        LOG_LIMITED(LOG_LEVEL_WARN, "admin", "admin UI login refused: invalid credentials");
    sio_next(w->ctx, err);
    json_decref(err);
    explicit_bzero(w->password, strlen(w->password));
    free(w->password);
    free(w);
    a->pending_auth--;
    admin_maybe_free(a);
}

static void refuse(sio_next_ctx_t *ctx) {
    json_t *err = sio_error_new("invalid credentials", NULL);
    sio_next(ctx, err);
    json_decref(err);
}

static void auth_middleware(sio_socket_t *s, sio_next_ctx_t *ctx, void *arg) {
    chat_admin_t *a = arg;
    if (!a->hash) {
        sio_next(ctx, NULL);
        return;
    }
    json_t *auth = sio_socket_handshake(s).auth;
    json_t *sid = json_object_get(auth, "sessionId");
    if (json_is_string(sid) && session_known(a, json_string_value(sid), json_string_length(sid))) {
        sio_next(ctx, NULL);
        return;
    }
    json_t *user = json_object_get(auth, "username"), *pass = json_object_get(auth, "password");
    if (!json_is_string(user) || !json_is_string(pass) ||
        json_string_length(user) > ADMIN_CRED_MAX || json_string_length(pass) > ADMIN_CRED_MAX ||
        a->pending_auth >= ADMIN_AUTH_PENDING || a->closing) {
        refuse(ctx);
        return;
    }
    auth_work_t *w = calloc(1, sizeof *w);
    /* A password with a NUL in it could not be the one hashed: checked as it is. */
    if (!w || !(w->password = strdup(json_string_value(pass)))) {
        free(w);
        refuse(ctx);
        return;
    }
    w->a = a;
    w->ctx = ctx;
    w->user_ok = same(json_string_value(user), json_string_length(user), a->username);
    w->req.data = w;
    if (uv_queue_work(a->loop, &w->req, auth_run, auth_done)) {
        free(w->password);
        free(w);
        refuse(ctx);
        return;
    }
    a->pending_auth++;
}

/* ---- an admin connects ---- */

static json_t *features(const chat_admin_t *a) {
    json_t *f = a->cfg.readonly ? json_array()
                                : json_pack("[s,s,s,s,s,s,s]", "EMIT", "JOIN", "LEAVE",
                                            "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT");
    if (f && json_array_append_new(f, json_string("AGGREGATED_EVENTS")) == 0 &&
        (a->cfg.production || json_array_append_new(f, json_string("ALL_EVENTS")) == 0))
        return f;
    json_decref(f);
    return NULL;
}

static void emit_one(sio_socket_t *s, const char *event, json_t *args) {
    sio_payload_t p = {args, NULL, 0};
    if (!args || sio_socket_emit(s, event, &p, SIO_NO_RECOVERY))
        LOG_LIMITED(LOG_LEVEL_WARN, "admin", "%s not sent to an admin", event);
    json_decref(args);
}

typedef struct {
    chat_admin_t *a;
    sio_socket_t *s; /* a reference is held */
    json_t *mine;
} sockets_ask_t;

static void others_sockets(int err, json_t *responses, void *arg) {
    sockets_ask_t *q = arg;
    size_t i;
    json_t *r;
    json_array_foreach(responses, i, r) {
        if (json_is_array(r) && json_array_extend(q->mine, r))
            LOG_LIMITED(LOG_LEVEL_WARN, "admin", "all_sockets: out of memory");
    }
    if (err)
        LOG_LIMITED(LOG_LEVEL_WARN, "admin", "all_sockets: not every server answered (%d)", err);
    if (sio_socket_connected(q->s))
        emit_one(q->s, "all_sockets", json_pack("[O]", q->mine));
    sio_socket_unref(q->s);
    json_decref(q->mine);
    free(q);
}

static void send_all_sockets(chat_admin_t *a, sio_socket_t *s) {
    json_t *mine = local_sockets(a);
    if (!mine) {
        LOG_LIMITED(LOG_LEVEL_WARN, "admin", "all_sockets: out of memory");
        return;
    }
    if (sio_nsp_server_count(a->nsp) <= 1) {
        emit_one(s, "all_sockets", json_pack("[o]", mine));
        return;
    }
    sockets_ask_t *q = calloc(1, sizeof *q);
    if (!q) {
        emit_one(s, "all_sockets", json_pack("[o]", mine));
        return;
    }
    *q = (sockets_ask_t){a, s, mine};
    sio_socket_ref(s);
    int rc = sio_nsp_server_emit(a->nsp, EV_SOCKETS, NULL, ADMIN_ASK_MS, others_sockets, q);
    if (rc)
        others_sockets(rc, NULL, q);
}

static void on_admin(sio_socket_t *s, void *arg) {
    chat_admin_t *a = arg;
    json_t *auth = sio_socket_handshake(s).auth;
    LOG_INFO("admin", "admin UI connected (socket %s)", sio_socket_id(s));
    /* A password login gets a session to reconnect with. */
    if (a->hash && json_is_string(json_object_get(auth, "password"))) {
        char *id = session_new(a);
        if (id)
            emit_one(s, "session", json_pack("[s]", id));
        free(id);
    }
    emit_one(s, "config", json_pack("[{s:o?}]", "supportedFeatures", features(a)));
    update_monitor(a);
    if (!a->cfg.production)
        send_all_sockets(a, s);
    json_t *stats = server_stats(a, json_array());
    emit_one(s, "server_stats", stats ? json_pack("[o]", stats) : NULL);
    if (sio_nsp_server_count(a->nsp) > 1 &&
        sio_nsp_server_emit(a->nsp, EV_ACTIVE, NULL, 0, NULL, NULL))
        LOG_LIMITED(LOG_LEVEL_WARN, "admin", "other servers not told of the admin UI");
}

/* ---- actions ---- */

static const char *arg_str(const sio_payload_t *p, size_t i) {
    json_t *v = json_array_get(p->args, i);
    return json_is_string(v) && json_string_length(v) <= ADMIN_NAME_MAX &&
                   strlen(json_string_value(v)) == json_string_length(v)
               ? json_string_value(v)
               : NULL;
}

/* The namespace an action names (never created by it), and its filter: a room or a
 * socket id (NULL: the whole namespace). false when the arguments are not those. */
static bool action_target(chat_admin_t *a, const sio_payload_t *p, size_t nsp_at, size_t filter_at,
                          sio_nsp_t **nsp, const char **filter) {
    const char *name = arg_str(p, nsp_at);
    json_t *f = json_array_get(p->args, filter_at);
    *filter = arg_str(p, filter_at);
    if (!name || (f && !json_is_null(f) && !*filter) || (*filter && !**filter))
        return false;
    *nsp = sio_server_find(a->io, name);
    return *nsp != NULL;
}

static bool reserved(const char *event) {
    static const char *const names[] = {"connect",       "connect_error", "disconnect",
                                        "disconnecting", "newListener",   "removeListener"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(event, names[i]) == 0)
            return true;
    return false;
}

/* Read-only, or arguments that are not the UI's: nothing done, nothing answered (the
 * UI expects no answer). */
static void action_refused(chat_admin_t *a, sio_socket_t *s, const char *what) {
    LOG_LIMITED(LOG_LEVEL_INFO, "admin", "admin socket %s: %s ignored (%s)", sio_socket_id(s), what,
                a->cfg.readonly ? "read-only" : "bad arguments or unknown namespace");
}

/* emit(nsp, filter, event, ...args) */
static void on_emit(sio_socket_t *s, const char *event, const sio_payload_t *p, int64_t ack,
                    void *arg) {
    chat_admin_t *a = arg;
    sio_nsp_t *nsp;
    const char *filter, *ev = arg_str(p, 2);
    if (a->cfg.readonly || p->nbins || !ev || !*ev || reserved(ev) ||
        !action_target(a, p, 0, 1, &nsp, &filter)) {
        action_refused(a, s, event);
        return;
    }
    json_t *args = json_array();
    for (size_t i = 3; args && i < json_array_size(p->args); i++)
        if (json_array_append(args, json_array_get(p->args, i)))
            break;
    sio_target_t to = {.rooms = &filter, .nrooms = filter ? 1 : 0};
    sio_payload_t out = {args, NULL, 0};
    if (!args || sio_nsp_emit(nsp, &to, ev, &out))
        LOG_LIMITED(LOG_LEVEL_WARN, "admin", "emit from the admin UI failed");
    json_decref(args);
}

/* join(nsp, room, filter) and leave(nsp, room, filter) */
static void on_room_action(sio_socket_t *s, const char *event, const sio_payload_t *p, int64_t ack,
                           void *arg) {
    chat_admin_t *a = arg;
    sio_nsp_t *nsp;
    const char *filter, *room = arg_str(p, 1);
    if (a->cfg.readonly || !room || !*room || !action_target(a, p, 0, 2, &nsp, &filter)) {
        action_refused(a, s, event);
        return;
    }
    sio_target_t which = {.rooms = &filter, .nrooms = filter ? 1 : 0};
    int rc = strcmp(event, "join") == 0 ? sio_nsp_sockets_join(nsp, &which, room)
                                        : sio_nsp_sockets_leave(nsp, &which, room);
    if (rc)
        LOG_LIMITED(LOG_LEVEL_WARN, "admin", "%s from the admin UI failed: %d", event, rc);
}

/* _disconnect(nsp, close, filter) */
static void on_disconnect_action(sio_socket_t *s, const char *event, const sio_payload_t *p,
                                 int64_t ack, void *arg) {
    chat_admin_t *a = arg;
    sio_nsp_t *nsp;
    const char *filter;
    json_t *close = json_array_get(p->args, 1);
    if (a->cfg.readonly || !json_is_boolean(close) || !action_target(a, p, 0, 2, &nsp, &filter)) {
        action_refused(a, s, event);
        return;
    }
    sio_target_t which = {.rooms = &filter, .nrooms = filter ? 1 : 0};
    int rc = sio_nsp_disconnect_sockets(nsp, &which, json_is_true(close));
    if (rc)
        LOG_LIMITED(LOG_LEVEL_WARN, "admin", "_disconnect from the admin UI failed: %d", rc);
}

/* ---- the other servers ---- */

static json_t *on_server_event(sio_nsp_t *nsp, const char *event, json_t *args, void *arg) {
    chat_admin_t *a = arg;
    if (strcmp(event, EV_ACTIVE) == 0) {
        a->remote_until = time_mono_ms() + (uint64_t)a->cfg.stats_interval_ms * ADMIN_REMOTE_TICKS;
        update_monitor(a);
        return NULL;
    }
    if (strcmp(event, EV_SOCKETS) == 0)
        return a->cfg.production ? json_array() : local_sockets(a);
    if (strcmp(event, EV_SESSION) == 0) {
        const char *id = json_string_value(json_array_get(args, 0));
        if (session_id_ok(id) && !session_known(a, id, strlen(id)))
            session_keep(a, id);
    }
    return NULL;
}

/* ---- life ---- */

static void admin_maybe_free(chat_admin_t *a) {
    if (!a->closing || a->open_handles || a->pending_auth)
        return;
    for (size_t i = 0; i < a->nqueue; i++)
        free(a->queue[i].args);
    free(a->queue);
    free(a->username);
    if (a->hash)
        explicit_bzero(a->hash, strlen(a->hash));
    free(a->hash);
    free(a->nsp_name);
    free(a);
}

static void handle_closed(uv_handle_t *h) {
    chat_admin_t *a = h->data;
    a->open_handles--;
    admin_maybe_free(a);
}

void chat_admin_close(chat_admin_t *a) {
    if (!a || a->closing)
        return;
    a->closing = true;
    update_monitor(a);
    uv_close((uv_handle_t *)&a->stats_timer, handle_closed);
    uv_close((uv_handle_t *)&a->flush_timer, handle_closed);
}

static void set_server_id(chat_admin_t *a, const char *id) {
    if (gethostname(a->hostname, sizeof a->hostname))
        snprintf(a->hostname, sizeof a->hostname, "localhost");
    a->hostname[sizeof a->hostname - 1] = '\0';
    if (id)
        snprintf(a->server_id, sizeof a->server_id, "%s", id);
    else if (a->cfg.worker)
        snprintf(a->server_id, sizeof a->server_id, "%s#%ld", a->hostname, (long)getpid());
    else
        snprintf(a->server_id, sizeof a->server_id, "%s", a->hostname);
}

int chat_admin_new(sio_server_t *io, uv_loop_t *loop, net_loop_t *nl,
                   const chat_admin_config_t *cfg, chat_admin_t **out) {
    if (!cfg->nsp || (!cfg->username != !cfg->password_hash) ||
        (cfg->password_hash && chat_admin_hash_valid(cfg->password_hash)) ||
        cfg->stats_interval_ms == 0)
        return -EINVAL;
    chat_admin_t *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->io = io;
    a->loop = loop;
    a->nl = nl;
    a->cfg = *cfg;
    a->started = time_mono_ms();
    a->nsp_name = strdup(cfg->nsp);
    a->username = cfg->username ? strdup(cfg->username) : NULL;
    a->hash = cfg->password_hash ? strdup(cfg->password_hash) : NULL;
    a->cfg.nsp = a->nsp_name;
    a->cfg.username = a->username;
    a->cfg.password_hash = a->hash;
    a->cfg.server_id = NULL; /* not kept: copied into server_id */
    set_server_id(a, cfg->server_id);
    if (!a->nsp_name || (cfg->username && (!a->username || !a->hash)) ||
        !(a->nsp = sio_server_of(io, a->nsp_name))) {
        free(a->nsp_name);
        free(a->username);
        free(a->hash);
        free(a);
        return -ENOMEM;
    }
    read_counters(a, &a->last);
    /* Timers cannot fail to initialise on a valid loop (libuv); they are then closed
     * through chat_admin_close on any later failure. */
    int rc = uv_timer_init(loop, &a->stats_timer);
    if (rc == 0)
        rc = uv_timer_init(loop, &a->flush_timer);
    if (rc) {
        free(a->nsp_name);
        free(a->username);
        free(a->hash);
        free(a);
        return rc;
    }
    a->stats_timer.data = a->flush_timer.data = a;
    a->open_handles = 2;
    rc = uv_timer_start(&a->stats_timer, stats_cb, cfg->stats_interval_ms, cfg->stats_interval_ms);
    if (rc == 0)
        rc = sio_nsp_use(a->nsp, auth_middleware, a);
    if (rc == 0)
        rc = sio_nsp_on_connection(a->nsp, on_admin, a);
    if (rc == 0)
        rc = sio_nsp_on(a->nsp, "emit", on_emit, a);
    if (rc == 0)
        rc = sio_nsp_on(a->nsp, "join", on_room_action, a);
    if (rc == 0)
        rc = sio_nsp_on(a->nsp, "leave", on_room_action, a);
    if (rc == 0)
        rc = sio_nsp_on(a->nsp, "_disconnect", on_disconnect_action, a);
    if (rc == 0)
        rc = sio_nsp_on_server_event(a->nsp, on_server_event, a);
    if (rc) {
        chat_admin_close(a);
        return rc;
    }
    if (!a->hash)
        LOG_WARN("admin", "the admin UI namespace %s has no authentication", a->nsp_name);
    *out = a;
    return 0;
}
