/* tests/servers/sio_test_server.c — a Socket.IO server whose behaviour the integration
 * tests drive through events, so every feature of the C API is exercised by the official
 * client. The contract (events, acks, /stats) is documented in
 * tests/integration/sio/README.md.
 *
 * Namespaces: "/" (open), "/admin" (middleware: auth.token must be "secret", else
 * connect_error {message:"not authorized", data:{code:"E_AUTH"}}), "/slow" (asynchronous
 * middleware accepting after 50 ms), and any "/dyn-*" created on demand. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "eio/server.h"
#include "net/conn.h"
#include "parley/cluster.h"
#include "parley/redis.h"
#include "parley/sio.h"
#include "util/log.h"

#define MAX_REASONS 256

typedef struct {
    uv_loop_t loop;
    net_loop_t *nl;
    http_server_t *http;
    sio_server_t *io;
    uv_signal_t sigint, sigterm;
    json_t *disconnects;     /* [{id, nsp, reason}], newest last */
    parley_worker_t *worker; /* with --workers N: this worker */
    parley_redis_t *redis;   /* with --redis-url: a node of that cluster */
} app_t;

static app_t app;

/* ---- helpers ---- */

static void ack(sio_socket_t *s, int64_t id, json_t *args) {
    sio_payload_t p = {args, NULL, 0};
    if (id >= 0 && sio_socket_ack(s, id, &p))
        LOG_WARN("test", "ack failed");
    json_decref(args);
}

static json_t *arg0(const sio_payload_t *p) {
    return json_array_get(p->args, 0);
}

/* Reads {rooms:[...], except:[...], volatile:bool} into a target; strings borrowed. */
typedef struct {
    const char *rooms[16], *except[16];
    sio_target_t t;
} target_buf_t;

static void read_target(json_t *o, target_buf_t *tb) {
    memset(tb, 0, sizeof *tb);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(o, "rooms"), i, v) if (i < 16 && json_is_string(v))
        tb->rooms[tb->t.nrooms++] = json_string_value(v);
    json_array_foreach(json_object_get(o, "except"), i, v) if (i < 16 && json_is_string(v))
        tb->except[tb->t.nexcept++] = json_string_value(v);
    tb->t.rooms = tb->rooms;
    tb->t.except = tb->except;
    if (json_is_true(json_object_get(o, "volatile")))
        tb->t.flags |= SIO_VOLATILE;
}

/* ---- events ---- */

static void on_echo(sio_socket_t *s, const char *ev, const sio_payload_t *p, int64_t id,
                    void *arg) {
    if (sio_socket_emit(s, "echo", p, 0))
        LOG_WARN("test", "emit failed");
    if (id >= 0 && sio_socket_ack(s, id, p))
        LOG_WARN("test", "ack failed");
}

static void on_join(sio_socket_t *s, const char *ev, const sio_payload_t *p, int64_t id,
                    void *arg) {
    const char *room = json_string_value(arg0(p));
    int rc = room ? sio_socket_join(s, room) : -1;
    ack(s, id, json_pack("[b]", rc == 0));
}

static void on_leave(sio_socket_t *s, const char *ev, const sio_payload_t *p, int64_t id,
                     void *arg) {
    const char *room = json_string_value(arg0(p));
    int rc = room ? sio_socket_leave(s, room) : -1;
    ack(s, id, json_pack("[b]", rc == 0));
}

static void add_room(const char *room, void *arg) {
    json_array_append_new(arg, json_string(room));
}

static void on_rooms(sio_socket_t *s, const char *ev, const sio_payload_t *p, int64_t id,
                     void *arg) {
    json_t *rooms = json_array();
    sio_socket_rooms(s, add_room, rooms);
    ack(s, id, json_pack("[o]", rooms));
}

/* broadcast {event, args:[...], rooms, except, volatile, excludeSelf, allNamespaces} */
static void on_broadcast(sio_socket_t *s, const char *ev, const sio_payload_t *p, int64_t id,
                         void *arg) {
    json_t *o = arg0(p);
    const char *event = json_string_value(json_object_get(o, "event"));
    json_t *args = json_object_get(o, "args");
    if (!event || !json_is_array(args)) {
        ack(s, id, json_pack("[b]", 0));
        return;
    }
    target_buf_t tb;
    read_target(o, &tb);
    sio_payload_t payload = {args, p->bins, p->nbins};
    int rc;
    if (json_is_true(json_object_get(o, "allNamespaces")))
        rc = sio_server_emit(sio_nsp_server(sio_socket_nsp(s)), event, &payload);
    else if (json_is_true(json_object_get(o, "excludeSelf")))
        rc = sio_socket_broadcast(s, &tb.t, event, &payload);
    else
        rc = sio_nsp_emit(sio_socket_nsp(s), &tb.t, event, &payload);
    ack(s, id, json_pack("[b]", rc == 0));
}

/* emitJson {event, json}: the pre-encoded path */
static void on_emit_json(sio_socket_t *s, const char *ev, const sio_payload_t *p, int64_t id,
                         void *arg) {
    json_t *o = arg0(p);
    const char *event = json_string_value(json_object_get(o, "event"));
    const char *text = json_string_value(json_object_get(o, "json"));
    int rc =
        event && text ? sio_nsp_emit_json(sio_socket_nsp(s), NULL, event, text, strlen(text)) : -1;
    ack(s, id, json_pack("[b]", rc == 0));
}

static void server_ack_done(sio_socket_t *s, int err, const sio_payload_t *p, void *arg) {
    if (!sio_socket_connected(s))
        return;
    json_t *result = json_pack("[{s:i,s:O?}]", "err", err, "args", p ? p->args : NULL);
    sio_payload_t out = {result, p ? p->bins : NULL, p ? p->nbins : 0};
    if (sio_socket_emit(s, "server-ack-result", &out, 0))
        LOG_WARN("test", "emit failed");
    json_decref(result);
}

/* serverAck {event, args, timeout}: the server emits with an ack to this socket and
 * reports the outcome as "server-ack-result" {err, args}. */
static void on_server_ack(sio_socket_t *s, const char *ev, const sio_payload_t *p, int64_t id,
                          void *arg) {
    json_t *o = arg0(p);
    const char *event = json_string_value(json_object_get(o, "event"));
    sio_payload_t payload = {json_object_get(o, "args"), p->bins, p->nbins};
    int rc =
        sio_socket_emit_with_ack(s, (uint32_t)json_integer_value(json_object_get(o, "timeout")),
                                 event ? event : "ask", &payload, server_ack_done, NULL);
    ack(s, id, json_pack("[b]", rc == 0));
}

static void room_ack_result(sio_socket_t *s, const char *event, int err, json_t *responses) {
    if (sio_socket_connected(s)) {
        json_t *result = json_pack("[{s:i,s:O}]", "err", err, "responses", responses);
        sio_payload_t out = {result, NULL, 0};
        if (sio_socket_emit(s, event, &out, 0))
            LOG_WARN("test", "emit failed");
        json_decref(result);
    }
    sio_socket_unref(s);
}

static void room_ack_done(int err, json_t *responses, void *arg) {
    room_ack_result(arg, "room-ack-result", err, responses);
}

/* roomAck {rooms, except, event, args, timeout}: timeout(t).emitWithAck to a room;
 * the outcome arrives as "room-ack-result" {err, responses}. */
static void on_room_ack(sio_socket_t *s, const char *ev, const sio_payload_t *p, int64_t id,
                        void *arg) {
    json_t *o = arg0(p);
    target_buf_t tb;
    read_target(o, &tb);
    const char *event = json_string_value(json_object_get(o, "event"));
    sio_payload_t payload = {json_object_get(o, "args"), NULL, 0};
    sio_socket_ref(s);
    int rc = sio_nsp_emit_with_ack(sio_socket_nsp(s), &tb.t,
                                   (uint32_t)json_integer_value(json_object_get(o, "timeout")),
                                   event ? event : "ask", &payload, room_ack_done, s);
    if (rc)
        sio_socket_unref(s);
    ack(s, id, json_pack("[b]", rc == 0));
}

/* disconnectMe {close} */
static void on_disconnect_me(sio_socket_t *s, const char *ev, const sio_payload_t *p, int64_t id,
                             void *arg) {
    sio_socket_disconnect(s, json_is_true(json_object_get(arg0(p), "close")));
}

/* With workers, the ack of an operation that other workers apply when it reaches them
 * waits for a serverSideEmit round trip: it went to each worker after the operation, on
 * the same pipes, so each answer means that worker applied it. The client that got the
 * ack then sees it applied everywhere. */
typedef struct {
    sio_socket_t *s;
    int64_t ack_id;
    bool ok;
} barrier_t;

static void barrier_done(int err, json_t *responses, void *arg) {
    barrier_t *b = arg;
    if (sio_socket_connected(b->s))
        ack(b->s, b->ack_id, json_pack("[b]", b->ok && err == 0));
    sio_socket_unref(b->s);
    free(b);
}

static void ack_applied(sio_socket_t *s, int64_t id, bool ok) {
    barrier_t *b = app.worker && id >= 0 ? malloc(sizeof *b) : NULL;
    if (b) {
        *b = (barrier_t){s, id, ok};
        sio_socket_ref(s);
        if (sio_nsp_server_emit(sio_socket_nsp(s), "__barrier", NULL, 5000, barrier_done, b) == 0)
            return;
        sio_socket_unref(s);
        free(b);
    }
    if (sio_socket_connected(s))
        ack(s, id, json_pack("[b]", ok));
}

/* socketsJoin / socketsLeave / disconnectSockets {rooms, except, room, close} */
static void on_sockets_op(sio_socket_t *s, const char *ev, const sio_payload_t *p, int64_t id,
                          void *arg) {
    json_t *o = arg0(p);
    target_buf_t tb;
    read_target(o, &tb);
    const char *room = json_string_value(json_object_get(o, "room"));
    sio_nsp_t *nsp = sio_socket_nsp(s);
    int rc = -1;
    sio_socket_ref(s);
    if (strcmp(ev, "socketsJoin") == 0 && room)
        rc = sio_nsp_sockets_join(nsp, &tb.t, room);
    else if (strcmp(ev, "socketsLeave") == 0 && room)
        rc = sio_nsp_sockets_leave(nsp, &tb.t, room);
    else if (strcmp(ev, "disconnectSockets") == 0)
        rc = sio_nsp_disconnect_sockets(nsp, &tb.t, json_is_true(json_object_get(o, "close")));
    if (sio_socket_connected(s))
        ack_applied(s, id, rc == 0);
    sio_socket_unref(s);
}

/* fetchSockets {rooms, except} → ack [ids] (of every worker's sockets). */
typedef struct {
    sio_socket_t *s;
    int64_t ack_id;
} pending_t;

static void fetch_done(int err, json_t *sockets, void *arg) {
    pending_t *pd = arg;
    json_t *ids = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(sockets, i, v) {
        json_array_append(ids, json_object_get(v, "id"));
    }
    if (err)
        LOG_WARN("test", "fetchSockets: %d", err);
    if (sio_socket_connected(pd->s))
        ack(pd->s, pd->ack_id, json_pack("[o]", ids));
    else
        json_decref(ids);
    sio_socket_unref(pd->s);
    free(pd);
}

static void on_fetch(sio_socket_t *s, const char *ev, const sio_payload_t *p, int64_t id,
                     void *arg) {
    target_buf_t tb;
    read_target(arg0(p), &tb);
    pending_t *pd = malloc(sizeof *pd);
    if (!pd)
        return;
    *pd = (pending_t){s, id};
    sio_socket_ref(s);
    int rc = sio_nsp_fetch_all(sio_socket_nsp(s), &tb.t, 5000, fetch_done, pd);
    if (rc) {
        LOG_WARN("test", "fetchSockets: %d", rc);
        sio_socket_unref(s);
        free(pd);
    }
}

/* serverEmit {event, args, timeout, ack}: serverSideEmit; with ack the outcome comes as
 * "server-emit-result" {err, responses}. */
static void server_emit_done(int err, json_t *responses, void *arg) {
    room_ack_result(arg, "server-emit-result", err, responses);
}

static void on_server_emit(sio_socket_t *s, const char *ev, const sio_payload_t *p, int64_t id,
                           void *arg) {
    json_t *o = arg0(p);
    const char *event = json_string_value(json_object_get(o, "event"));
    sio_payload_t payload = {json_object_get(o, "args"), NULL, 0};
    bool wants = json_is_true(json_object_get(o, "ack"));
    if (wants)
        sio_socket_ref(s);
    int rc = sio_nsp_server_emit(sio_socket_nsp(s), event ? event : "hello", &payload,
                                 (uint32_t)json_integer_value(json_object_get(o, "timeout")),
                                 wants ? server_emit_done : NULL, s);
    if (rc && wants)
        sio_socket_unref(s);
    ack(s, id, json_pack("[b]", rc == 0));
}

/* Events from other workers: "__stats" answers this worker's counts (GET /stats sums
 * them); any other is answered {pid, event, args} and emitted to this worker's sockets
 * of the namespace as "server-event" {event, args}. */
static json_t *local_stats(void);

static json_t *on_server_event(sio_nsp_t *nsp, const char *event, json_t *args, void *arg) {
    if (strcmp(event, "__stats") == 0)
        return local_stats();
    if (strcmp(event, "__barrier") == 0)
        return NULL;
    json_t *shown = json_pack("[{s:s,s:O}]", "event", event, "args", args);
    sio_payload_t p = {shown, NULL, 0};
    sio_target_t here = {.flags = SIO_LOCAL};
    if (sio_nsp_emit(nsp, &here, "server-event", &p))
        LOG_WARN("test", "emit failed");
    json_decref(shown);
    return json_pack("{s:I,s:s,s:O}", "pid", (json_int_t)getpid(), "event", event, "args", args);
}

/* dataSet {key: value, ...} merges into socket.data; dataGet acks it. */
static void on_data(sio_socket_t *s, const char *ev, const sio_payload_t *p, int64_t id,
                    void *arg) {
    if (strcmp(ev, "dataSet") == 0 && json_is_object(arg0(p)))
        json_object_update(sio_socket_data(s), arg0(p));
    ack(s, id, json_pack("[O]", sio_socket_data(s)));
}

static void on_whoami(sio_socket_t *s, const char *ev, const sio_payload_t *p, int64_t id,
                      void *arg) {
    sio_handshake_t hs = sio_socket_handshake(s);
    ack(s, id,
        json_pack("[{s:s,s:s,s:b,s:O,s:O,s:O,s:s,s:s,s:I,s:I}]", "id", sio_socket_id(s), "nsp",
                  sio_nsp_name(sio_socket_nsp(s)), "recovered", sio_socket_recovered(s), "auth",
                  hs.auth, "query", hs.query, "headers", hs.headers, "address", hs.address, "url",
                  hs.url, "time", (json_int_t)hs.time_ms, "pid", (json_int_t)getpid()));
}

static void on_connection(sio_socket_t *s, void *arg) {
    json_t *args =
        json_pack("[{s:s,s:b}]", "id", sio_socket_id(s), "recovered", sio_socket_recovered(s));
    sio_payload_t p = {args, NULL, 0};
    if (sio_socket_emit(s, "welcome", &p, 0))
        LOG_WARN("test", "emit failed");
    json_decref(args);
}

static void on_disconnect(sio_socket_t *s, const char *reason, void *arg) {
    json_array_append_new(app.disconnects,
                          json_pack("{s:s,s:s,s:s}", "id", sio_socket_id(s), "nsp",
                                    sio_nsp_name(sio_socket_nsp(s)), "reason", reason));
    if (json_array_size(app.disconnects) > MAX_REASONS)
        json_array_remove(app.disconnects, 0);
}

static void admin_auth(sio_socket_t *s, sio_next_ctx_t *ctx, void *arg) {
    const char *token = json_string_value(json_object_get(sio_socket_handshake(s).auth, "token"));
    if (token && strcmp(token, "secret") == 0) {
        sio_next(ctx, NULL);
        return;
    }
    json_t *data = json_pack("{s:s}", "code", "E_AUTH");
    json_t *err = sio_error_new("not authorized", data);
    sio_next(ctx, err);
    json_decref(err);
    json_decref(data);
}

typedef struct {
    uv_timer_t timer;
    sio_next_ctx_t *ctx;
} slow_t;

static void slow_free(uv_handle_t *h) {
    free(h->data);
}

static void slow_go(uv_timer_t *t) {
    slow_t *sl = t->data;
    sio_next(sl->ctx, NULL);
    uv_close((uv_handle_t *)t, slow_free);
}

static void slow_mw(sio_socket_t *s, sio_next_ctx_t *ctx, void *arg) {
    slow_t *sl = malloc(sizeof *sl);
    if (!sl || uv_timer_init(&app.loop, &sl->timer)) {
        free(sl);
        sio_next(ctx, NULL);
        return;
    }
    sl->timer.data = sl;
    sl->ctx = ctx;
    uv_timer_start(&sl->timer, slow_go, 50, 0);
}

static const struct {
    const char *name;
    sio_event_fn fn;
} events[] = {
    {"echo", on_echo},
    {"join", on_join},
    {"leave", on_leave},
    {"rooms", on_rooms},
    {"broadcast", on_broadcast},
    {"emitJson", on_emit_json},
    {"serverAck", on_server_ack},
    {"roomAck", on_room_ack},
    {"disconnectMe", on_disconnect_me},
    {"socketsJoin", on_sockets_op},
    {"socketsLeave", on_sockets_op},
    {"disconnectSockets", on_sockets_op},
    {"fetchSockets", on_fetch},
    {"dataSet", on_data},
    {"dataGet", on_data},
    {"whoami", on_whoami},
    {"serverEmit", on_server_emit},
};

static int setup_nsp(sio_nsp_t *nsp) {
    if (!nsp || sio_nsp_on_connection(nsp, on_connection, NULL) ||
        sio_nsp_on_server_event(nsp, on_server_event, NULL) ||
        sio_nsp_on_disconnect(nsp, on_disconnect, NULL))
        return -1;
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        if (sio_nsp_on(nsp, events[i].name, events[i].fn, NULL))
            return -1;
    return 0;
}

static bool match_dyn(const char *name, json_t *auth, void *arg) {
    return strncmp(name, "/dyn-", 5) == 0;
}

static void setup_dyn(sio_nsp_t *nsp, void *arg) {
    if (setup_nsp(nsp))
        LOG_ERROR("test", "cannot set up %s", sio_nsp_name(nsp));
}

static json_t *local_stats(void) {
    sio_stats_t st;
    sio_server_stats(app.io, &st);
    /* The disconnects are copied: the sum of several workers' adds to them. */
    json_t *o = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:o}", "clients", (json_int_t)st.clients, "sockets",
        (json_int_t)st.sockets, "recoverySessions", (json_int_t)st.recovery_sessions,
        "recoveryPackets", (json_int_t)st.recovery_packets, "connections",
        (json_int_t)net_loop_conn_count(app.nl), "disconnects", json_copy(app.disconnects));
    if (o && app.redis) {
        parley_redis_stats_t rs;
        parley_redis_stats(app.redis, &rs);
        json_object_set_new(
            o, "redis",
            json_pack("{s:I,s:I,s:I,s:I,s:I}", "published", (json_int_t)rs.published,
                      "publishedBytes", (json_int_t)rs.published_bytes, "received",
                      (json_int_t)rs.received, "receivedBytes", (json_int_t)rs.received_bytes,
                      "unused", (json_int_t)rs.unused));
    }
    return o;
}

static void respond_json(http_conn_t *hc, json_t *o) {
    char *text = json_dumps(o, JSON_COMPACT);
    if (!text || http_respond(hc, 200, "application/json", NULL, text, strlen(text)))
        LOG_WARN("test", "stats not sent");
    free(text);
}

/* With workers, the counts of all of them: asked of the others with serverSideEmit. */
typedef struct {
    http_conn_t *hc; /* NULL once the client left */
} stats_wait_t;

static void stats_abort(http_conn_t *hc, void *arg) {
    ((stats_wait_t *)arg)->hc = NULL;
}

static void stats_sum(int err, json_t *responses, void *arg) {
    stats_wait_t *sw = arg;
    json_t *sum = local_stats();
    size_t i;
    json_t *r;
    json_array_foreach(responses, i, r) {
        const char *key;
        json_t *v;
        json_object_foreach(r, key, v) {
            json_t *mine = json_object_get(sum, key);
            if (json_is_integer(v) && json_is_integer(mine))
                json_integer_set(mine, json_integer_value(mine) + json_integer_value(v));
            else if (json_is_array(v) && json_is_array(mine))
                json_array_extend(mine, v);
        }
    }
    if (err)
        LOG_WARN("test", "stats of every worker: %d", err);
    if (sw->hc)
        respond_json(sw->hc, sum);
    json_decref(sum);
    free(sw);
}

static bool stats_route(http_conn_t *hc, http_req_t *req, void *arg) {
    if (!slice_eq(req->head.path, "/stats"))
        return false;
    if (app.worker) {
        stats_wait_t *sw = calloc(1, sizeof *sw);
        if (sw) {
            sw->hc = hc;
            http_conn_hold(hc, stats_abort, sw);
            int rc = sio_nsp_server_emit(sio_server_of(app.io, "/"), "__stats", NULL, 5000,
                                         stats_sum, sw);
            if (rc)
                stats_sum(rc, NULL, sw);
            return true;
        }
    }
    json_t *mine = local_stats();
    respond_json(hc, mine);
    json_decref(mine);
    return true;
}

static void on_signal(uv_signal_t *sig, int signum) {
    if (app.redis)
        parley_redis_detach(app.redis);
    app.redis = NULL;
    if (app.worker)
        parley_worker_detach_io(app.worker);
    sio_server_close(app.io);
    http_server_close(app.http);
    if (app.worker)
        parley_worker_detach(app.worker);
    app.worker = NULL;
    net_loop_close(app.nl);
    uv_close((uv_handle_t *)&app.sigint, NULL);
    uv_close((uv_handle_t *)&app.sigterm, NULL);
}

int main(int argc, char **argv) {
    http_server_config_t hcfg;
    http_server_config_defaults(&hcfg);
    sio_config_t cfg;
    sio_config_defaults(&cfg);
    static const struct option opts[] = {
        {"port", 1, 0, 'p'},
        {"recovery", 0, 0, 'r'},
        {"max-disconnection", 1, 0, 'm'},
        {"ping-interval", 1, 0, 'i'},
        {"ping-timeout", 1, 0, 't'},
        {"connect-timeout", 1, 0, 'c'},
        {"log-level", 1, 0, 'l'},
        {"workers", 1, 0, 'w'},
        {"redis-url", 1, 0, 'R'},
        {"redis-mode", 1, 0, 'M'},
        {"redis-cluster", 0, 0, 'C'},
        {"parser", 1, 0, 'P'},
        {"allow-eio3", 0, 0, '3'},
        {0, 0, 0, 0},
    };
    int o;
    unsigned workers = 1;
    const char *redis_url = NULL;
    parley_redis_mode_t redis_mode = PARLEY_REDIS_CLASSIC;
    bool redis_cluster = false;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'R':
            redis_url = optarg;
            break;
        case 'M':
            if (parley_redis_mode_parse(optarg, &redis_mode))
                return 2;
            break;
        case 'C':
            redis_cluster = true;
            break;
        case '3':
            cfg.allow_eio3 = true;
            break;
        case 'P':
            if (strcmp(optarg, "msgpack") == 0)
                cfg.parser = SIO_PARSER_MSGPACK;
            else if (strcmp(optarg, "json") != 0)
                return 2;
            break;
        case 'w':
            workers = (unsigned)atoi(optarg);
            break;
        case 'p':
            hcfg.port = atoi(optarg);
            break;
        case 'r':
            cfg.recovery = true;
            break;
        case 'm':
            cfg.recovery_max_disconnection = (uint32_t)atoi(optarg);
            break;
        case 'i':
            cfg.ping_interval = (uint32_t)atoi(optarg);
            break;
        case 't':
            cfg.ping_timeout = (uint32_t)atoi(optarg);
            break;
        case 'c':
            cfg.connect_timeout = (uint32_t)atoi(optarg);
            break;
        case 'l':
            if (log_level_parse(optarg, &log_threshold))
                return 2;
            break;
        default:
            return 2;
        }
    }
    int rc = parley_cluster_start(argc, argv, workers, hcfg.host, &hcfg.port, &app.worker);
    if (rc || (workers > 1 && !app.worker))
        return rc;
    hcfg.reuse_port = app.worker != NULL;
    app.disconnects = json_array();
    if (uv_loop_init(&app.loop) || !(app.nl = net_loop_new(&app.loop)))
        return 1;
    rc = http_server_new(app.nl, &hcfg, &app.http);
    if (rc) {
        fprintf(stderr, "listen: %s\n", uv_strerror(rc));
        return 1;
    }
    if (sio_server_new(app.http, &cfg, &app.io) ||
        http_server_route(app.http, "/stats", stats_route, NULL))
        return 1;
    sio_nsp_t *admin = sio_server_of(app.io, "/admin");
    sio_nsp_t *slow = sio_server_of(app.io, "/slow");
    if (setup_nsp(sio_server_of(app.io, "/")) || setup_nsp(admin) || setup_nsp(slow) ||
        sio_nsp_use(admin, admin_auth, NULL) || sio_nsp_use(slow, slow_mw, NULL) ||
        sio_server_of_match(app.io, match_dyn, setup_dyn, NULL) ||
        (app.worker && parley_worker_attach(app.worker, &app.loop, app.io)))
        return 1;
    if (redis_url) {
        parley_redis_config_t rcfg;
        parley_redis_config_defaults(&rcfg);
        rcfg.url = redis_url;
        rcfg.mode = redis_mode;
        rcfg.cluster = redis_cluster;
        if (parley_redis_attach(&app.loop, app.io, &rcfg, &app.redis)) {
            fprintf(stderr, "--redis-url %s: not a Redis URL\n", redis_url);
            return 1;
        }
    }
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR || uv_signal_init(&app.loop, &app.sigint) ||
        uv_signal_init(&app.loop, &app.sigterm) ||
        uv_signal_start(&app.sigint, on_signal, SIGINT) ||
        uv_signal_start(&app.sigterm, on_signal, SIGTERM))
        return 1;
    if (!app.worker) {
        printf("listening %s:%d\n", hcfg.host, http_server_port(app.http));
        fflush(stdout);
    }
    uv_run(&app.loop, UV_RUN_DEFAULT);
    net_loop_free(app.nl);
    json_decref(app.disconnects);
    return uv_loop_close(&app.loop) == 0 ? 0 : 3;
}
