/* sio/nsp.c — namespaces: handler registration, the connect sequence (middleware,
 * recovery), packet dispatch, and the namespace-wide emit operations.
 *
 * Connect sequence (socket.io 4.8 order): recovery lookup when the client offers a
 * pid; the middlewares in order (skipped for a recovered socket unless configured
 * otherwise); on success the socket joins its own room, the CONNECT reply goes out,
 * missed packets follow it, and the connection handlers run. A middleware may call
 * sio_next later; if the client left meanwhile, that call just cleans up. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sio/internal.h"
#include "util/log.h"

struct sio_next_ctx {
    sio_socket_t *s;
    size_t next;
    char *pid, *offset; /* recovery credentials, checked once middleware has passed */
};

static bool valid_name(const char *name) {
    size_t len = strlen(name);
    return len >= 1 && len <= SIO_NSP_MAX && name[0] == '/' && !memchr(name, ',', len);
}

static sio_nsp_t *nsp_new(sio_server_t *io, const char *name) {
    sio_nsp_t *nsp = calloc(1, sizeof *nsp);
    if (!nsp || !(nsp->name = strdup(name)) || map_init(&nsp->handlers) || map_init(&nsp->by_id) ||
        map_init(&nsp->rooms) || map_init(&nsp->sessions) ||
        !(nsp->adapter = sio_adapter_local_new(nsp))) {
        if (nsp)
            free(nsp->name);
        free(nsp);
        return NULL;
    }
    if (io->wrap) {
        sio_adapter_t *wrapped = io->wrap(nsp, nsp->adapter, io->wrap_arg);
        if (!wrapped) {
            nsp->adapter->ops->free(nsp->adapter);
            free(nsp->name);
            free(nsp);
            return NULL;
        }
        nsp->adapter = wrapped;
    }
    nsp->io = io;
    if (map_put(&io->nsps, nsp->name, strlen(nsp->name), nsp)) {
        sio_nsp_free(nsp);
        return NULL;
    }
    return nsp;
}

sio_nsp_t *sio_server_of(sio_server_t *io, const char *name) {
    if (!valid_name(name))
        return NULL;
    sio_nsp_t *nsp = map_get(&io->nsps, name, strlen(name));
    return nsp ? nsp : nsp_new(io, name);
}

sio_nsp_t *sio_server_find(sio_server_t *io, const char *name) {
    return map_get(&io->nsps, name, strlen(name));
}

int sio_server_of_match(sio_server_t *io, sio_nsp_match_fn match, sio_nsp_setup_fn setup,
                        void *arg) {
    sio_matcher_t *m = realloc(io->matchers, (io->nmatchers + 1) * sizeof *m);
    if (!m)
        return -ENOMEM;
    io->matchers = m;
    m[io->nmatchers++] = (sio_matcher_t){match, setup, arg};
    return 0;
}

sio_nsp_t *sio_nsp_find_or_match(sio_server_t *io, const char *name, json_t *auth) {
    sio_nsp_t *nsp = map_get(&io->nsps, name, strlen(name));
    if (nsp || !valid_name(name))
        return nsp;
    for (size_t i = 0; i < io->nmatchers; i++) {
        if (io->matchers[i].match(name, auth, io->matchers[i].arg)) {
            nsp = nsp_new(io, name);
            if (nsp && io->matchers[i].setup)
                io->matchers[i].setup(nsp, io->matchers[i].arg);
            return nsp;
        }
    }
    return NULL;
}

void sio_nsp_free(sio_nsp_t *nsp) {
    map_entry_t *e;
    for (size_t pos = 0; map_next(&nsp->handlers, &pos, &e);)
        free(e->value);
    map_free(&nsp->handlers);
    map_free(&nsp->by_id);
    if (nsp->adapter)
        nsp->adapter->ops->free(nsp->adapter);
    free(nsp->observers);
    free(nsp->any);
    free(nsp->mws);
    free(nsp->on_conn);
    free(nsp->on_disc);
    free(nsp->sockets);
    free(nsp->name);
    free(nsp);
}

const char *sio_nsp_name(const sio_nsp_t *nsp) {
    return nsp->name;
}

sio_server_t *sio_nsp_server(const sio_nsp_t *nsp) {
    return nsp->io;
}

size_t sio_nsp_socket_count(const sio_nsp_t *nsp) {
    return nsp->nsockets;
}

sio_socket_t *sio_nsp_find_socket(sio_nsp_t *nsp, const char *id) {
    return map_get(&nsp->by_id, id, strlen(id));
}

size_t sio_nsp_room_size(sio_nsp_t *nsp, const char *room) {
    return nsp->adapter->ops->room_size(nsp->adapter, room);
}

/* ---- registration ---- */

#define APPEND(arr, n, item)                                                                       \
    do {                                                                                           \
        void *grown = realloc((arr), ((n) + 1) * sizeof *(arr));                                   \
        if (!grown)                                                                                \
            return -ENOMEM;                                                                        \
        (arr) = grown;                                                                             \
        (arr)[(n)++] = (item);                                                                     \
    } while (0)

int sio_nsp_use(sio_nsp_t *nsp, sio_middleware_fn fn, void *arg) {
    APPEND(nsp->mws, nsp->nmws, ((sio_mw_t){fn, arg}));
    return 0;
}

int sio_nsp_on_connection(sio_nsp_t *nsp, sio_connection_fn fn, void *arg) {
    APPEND(nsp->on_conn, nsp->non_conn, ((sio_conn_cb_t){fn, arg}));
    return 0;
}

int sio_nsp_on_disconnect(sio_nsp_t *nsp, sio_disconnect_fn fn, void *arg) {
    APPEND(nsp->on_disc, nsp->non_disc, ((sio_disc_cb_t){fn, arg}));
    return 0;
}

static sio_handler_t *handler_new(const char *event, sio_event_fn fn, void *arg) {
    size_t len = strlen(event);
    sio_handler_t *h = malloc(sizeof *h + len + 1);
    if (!h)
        return NULL;
    h->fn = fn;
    h->arg = arg;
    memcpy(h->name, event, len + 1);
    return h;
}

int sio_nsp_on(sio_nsp_t *nsp, const char *event, sio_event_fn fn, void *arg) {
    sio_handler_t *h = handler_new(event, fn, arg);
    if (!h)
        return -ENOMEM;
    sio_handler_t *old = map_get(&nsp->handlers, event, strlen(event));
    if (map_put(&nsp->handlers, h->name, strlen(h->name), h)) {
        free(h);
        return -ENOMEM;
    }
    free(old);
    return 0;
}

int sio_nsp_on_any(sio_nsp_t *nsp, sio_event_fn fn, void *arg) {
    sio_handler_t *h = handler_new("", fn, arg);
    if (!h)
        return -ENOMEM;
    free(nsp->any);
    nsp->any = h;
    return 0;
}

json_t *sio_error_new(const char *message, json_t *data) {
    json_t *err = json_object();
    if (!err)
        return NULL;
    json_object_set_new(err, "message", json_string(message));
    if (data)
        json_object_set(err, "data", data);
    return err;
}

/* ---- connecting ---- */

static void send_connect_error(sio_client_t *c, const char *nsp, json_t *err) {
    eio_msg_t *m = NULL;
    /* A v3 client gets the error's data, or else its message, alone (socket.io 2 emits
     * it as the socket's "error" event). */
    json_t *data = json_object_get(err, "data");
    if (c->protocol == 3 && json_is_object(err))
        err = data ? data : json_object_get(err, "message");
    if (!err || sio_encode_control(c->io, SIO_CONNECT_ERROR, nsp, err, &m)) {
        sio_client_close(c, "transport error");
        return;
    }
    sio_client_send(c, &m, 1);
    eio_msg_release(m);
}

static void ctx_free(sio_next_ctx_t *ctx) {
    free(ctx->pid);
    free(ctx->offset);
    free(ctx);
}

static void finish(sio_socket_t *s, sio_session_t *restored, sio_logged_t *const *missed,
                   size_t nmissed) {
    sio_nsp_t *nsp = s->nsp;
    if (sio_socket_establish(s, restored)) {
        LOG_WARN("sio", "out of memory connecting a socket");
        sio_client_close(s->client, "transport error");
    } else {
        for (size_t i = 0; i < nmissed; i++)
            sio_socket_send(s, missed[i]->msgs, missed[i]->nmsgs, false);
        LOG_DEBUG("sio", "socket %s joined %s%s", s->id, nsp->name, restored ? " (recovered)" : "");
        sio_socket_ref(s);
        if (nsp->io->monitor.connect)
            nsp->io->monitor.connect(s, nsp->io->monitor_arg);
        for (size_t i = 0; i < nsp->non_conn && s->connected; i++)
            nsp->on_conn[i].fn(s, nsp->on_conn[i].arg);
        if (nsp->io->cfg.lean_handshake && s->auth != nsp->io->empty) {
            json_decref(s->auth);
            s->auth = json_incref(nsp->io->empty);
        }
        sio_socket_unref(s);
    }
    if (restored)
        sio_session_free(restored);
}

/* A restore's outcome once the middlewares passed (the adapter may answer later: the
 * client may have left meanwhile). */
static void restored_after_middlewares(sio_socket_t *s, sio_session_t *ss,
                                       sio_logged_t *const *missed, size_t nmissed, void *arg) {
    if (s->connecting)
        finish(s, ss, missed, nmissed);
    else if (ss)
        sio_session_free(ss);
    sio_socket_unref(s);
}

static void step(sio_next_ctx_t *ctx) {
    sio_socket_t *s = ctx->s;
    sio_nsp_t *nsp = s->nsp;
    if (ctx->next < nsp->nmws) {
        sio_mw_t *mw = &nsp->mws[ctx->next++];
        mw->fn(s, ctx, mw->arg);
        return;
    }
    if (ctx->pid) {
        sio_socket_ref(s);
        nsp->adapter->ops->restore(nsp->adapter, s, ctx->pid, ctx->offset,
                                   restored_after_middlewares, NULL);
    } else {
        finish(s, NULL, NULL, 0);
    }
    sio_socket_unref(s);
    ctx_free(ctx);
}

void sio_next(sio_next_ctx_t *ctx, json_t *err) {
    sio_socket_t *s = ctx->s;
    if (!s->connecting) {
        /* The client left while the middleware ran. */
        sio_socket_unref(s);
        ctx_free(ctx);
        return;
    }
    if (err) {
        json_t *e = json_is_object(err) || json_is_string(err) ? err : NULL;
        json_t *fallback = e ? NULL : sio_error_new("Unauthorized", NULL);
        send_connect_error(s->client, s->nsp->name, e ? e : fallback);
        json_decref(fallback);
        sio_socket_discard(s);
        sio_socket_unref(s);
        ctx_free(ctx);
        return;
    }
    step(ctx);
}

static char *auth_string(json_t *auth, const char *key) {
    const char *v = json_string_value(json_object_get(auth, key));
    return v ? strdup(v) : NULL;
}

/* The middlewares, then (when the client offers them) the recovery credentials. */
static void run_middlewares(sio_socket_t *s, json_t *recovery_auth) {
    sio_next_ctx_t *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        sio_client_t *c = s->client;
        sio_socket_discard(s);
        sio_client_close(c, "transport error");
        return;
    }
    ctx->s = s;
    if (recovery_auth) {
        ctx->pid = auth_string(recovery_auth, "pid");
        ctx->offset = auth_string(recovery_auth, "offset");
    }
    sio_socket_ref(s);
    step(ctx);
}

/* A restore's outcome before the middlewares (recovery_skip_middlewares): a restored
 * socket skips them, any other goes through them. */
static void restored_before_middlewares(sio_socket_t *s, sio_session_t *ss,
                                        sio_logged_t *const *missed, size_t nmissed, void *arg) {
    if (!s->connecting) {
        if (ss)
            sio_session_free(ss);
    } else if (ss) {
        finish(s, ss, missed, nmissed);
    } else {
        run_middlewares(s, NULL);
    }
    sio_socket_unref(s);
}

void sio_nsp_connect(sio_nsp_t *nsp, sio_client_t *c, json_t *auth) {
    for (uint32_t i = 0; i < c->sockets.count; i++) {
        if (sio_sockets_items(&c->sockets)[i]->nsp == nsp) {
            LOG_DEBUG("sio", "duplicate CONNECT to %s ignored", nsp->name);
            return;
        }
    }
    sio_socket_t *s = sio_socket_new(nsp, c, auth);
    if (!s || sio_client_add_socket(c, s)) {
        if (s)
            sio_socket_unref(s);
        sio_client_close(c, "transport error");
        return;
    }
    sio_server_t *io = nsp->io;
    bool offers_recovery =
        io->cfg.recovery && c->protocol != 3 && json_is_string(json_object_get(auth, "pid"));
    if (offers_recovery && io->cfg.recovery_skip_middlewares) {
        sio_socket_ref(s);
        nsp->adapter->ops->restore(nsp->adapter, s, json_string_value(json_object_get(auth, "pid")),
                                   json_string_value(json_object_get(auth, "offset")),
                                   restored_before_middlewares, NULL);
        return;
    }
    run_middlewares(s, offers_recovery ? auth : NULL);
}

/* ---- dispatch ---- */

void sio_nsp_dispatch(sio_socket_t *s, sio_packet_t *p) {
    switch (p->type) {
    case SIO_EVENT:
    case SIO_BINARY_EVENT: {
        json_t *name = json_array_get(p->data, 0);
        char num[32];
        const char *event = json_string_value(name);
        if (!event) {
            snprintf(num, sizeof num, "%.17g", json_number_value(name));
            event = num;
        }
        sio_server_t *io = s->nsp->io;
        if (io->monitor.event_in)
            io->monitor.event_in(s, p->data, io->monitor_arg);
        sio_handler_t *h = map_get(&s->nsp->handlers, event, strlen(event));
        if (!h)
            h = s->nsp->any;
        if (!h) {
            LOG_DEBUG("sio", "socket %s: no handler for event '%s'", s->id, event);
            return;
        }
        /* The packet is ours: take the name out of the array in place. */
        char *copy = strdup(event);
        if (!copy || json_array_remove(p->data, 0)) {
            free(copy);
            return;
        }
        sio_bin_t bins[p->nbins ? p->nbins : 1];
        for (size_t i = 0; i < p->nbins; i++)
            bins[i] = (sio_bin_t){p->bins[i]->data, p->bins[i]->len};
        sio_payload_t payload = {p->data, bins, p->nbins};
        /* The socket stays valid through the handler even if the handler disconnects
         * it (or every socket of a room, this one included). */
        sio_socket_ref(s);
        h->fn(s, copy, &payload, p->id, h->arg);
        sio_socket_unref(s);
        free(copy);
        return;
    }
    case SIO_ACK:
    case SIO_BINARY_ACK:
        sio_socket_on_ack(s, p);
        return;
    case SIO_DISCONNECT:
        sio_socket_onclose(s, "client namespace disconnect");
        return;
    default:
        LOG_DEBUG("sio", "socket %s: unexpected packet type %d", s->id, (int)p->type);
        return;
    }
}

/* ---- namespace-wide operations ---- */

/* Every emit of the namespace, to any target, goes through here: one path to the
 * adapter. */
static int emit_encoded(sio_nsp_t *nsp, const sio_target_t *to, const char *event, const char *json,
                        size_t len, const sio_bin_t *bins, size_t nbins) {
    sio_bcast_t b = {event, json, len, bins, nbins, to ? *to : (sio_target_t){0}, false, 0};
    return nsp->adapter->ops->broadcast(nsp->adapter, &b);
}

static int dump_payload(const sio_payload_t *p, buf_t *b) {
    if (!p || !p->args)
        return buf_append(b, "[]", 2);
    return sio_args_dump(p->args, b);
}

int sio_nsp_emit(sio_nsp_t *nsp, const sio_target_t *to, const char *event,
                 const sio_payload_t *p) {
    buf_t b = {0};
    int rc = dump_payload(p, &b);
    if (rc == 0)
        rc = emit_encoded(nsp, to, event, (const char *)b.data, b.len, p ? p->bins : NULL,
                          p ? p->nbins : 0);
    buf_free(&b);
    return rc;
}

int sio_nsp_emit_json(sio_nsp_t *nsp, const sio_target_t *to, const char *event,
                      const char *args_json, size_t len) {
    return emit_encoded(nsp, to, event, args_json, len, NULL, 0);
}

int sio_server_emit(sio_server_t *io, const char *event, const sio_payload_t *p) {
    map_entry_t *e;
    int rc = 0;
    for (size_t pos = 0; rc == 0 && map_next(&io->nsps, &pos, &e);)
        rc = sio_nsp_emit(e->value, NULL, event, p);
    return rc;
}

typedef struct {
    sio_bcast_ack_fn done;
    void *arg;
    json_t *responses;
    size_t expected, received, lost;
    uint32_t refs;
    bool counted; /* every server counted its recipients */
    bool finished;
    uv_timer_t timer;
} collector_t;

static void collector_timer_closed(uv_handle_t *h) {
    collector_t *col = h->data;
    if (--col->refs == 0)
        free(col);
}

static void collector_release(collector_t *col, uint32_t n) {
    col->refs -= n;
    if (col->refs == 0)
        free(col);
}

static void collector_unref(collector_t *col) {
    collector_release(col, 1);
}

static void collector_finish(collector_t *col, int err) {
    if (col->finished)
        return;
    col->finished = true;
    col->done(err, col->responses, col->arg);
    json_decref(col->responses);
    col->responses = NULL;
    uv_close((uv_handle_t *)&col->timer, collector_timer_closed);
}

static void collector_timeout(uv_timer_t *t) {
    collector_finish(t->data, -ETIMEDOUT);
}

/* A recipient that disconnects before answering settles its share: the broadcast
 * completes as soon as everyone answered or left, with -EPIPE when someone left
 * (socket.io would wait for its timeout, or forever without one). */
static void collector_ack(sio_socket_t *s, int err, const sio_payload_t *p, void *arg) {
    collector_t *col = arg;
    if (!col->finished) {
        if (err == 0)
            json_array_append(col->responses, p->args ? p->args : json_null());
        else
            col->lost++;
        if (++col->received == col->expected && col->counted)
            collector_finish(col, col->lost ? -EPIPE : 0);
    }
    collector_unref(col);
}

/* The adapter holds a reference until its last count (more counts may follow answers). */
static void collector_count(size_t n, bool last, void *arg) {
    collector_t *col = arg;
    col->expected += n;
    col->refs += (uint32_t)n;
    if (last) {
        col->counted = true;
        if (col->received == col->expected)
            collector_finish(col, col->lost ? -EPIPE : 0);
        collector_unref(col);
    }
}

int sio_nsp_emit_with_ack(sio_nsp_t *nsp, const sio_target_t *to, uint32_t timeout_ms,
                          const char *event, const sio_payload_t *p, sio_bcast_ack_fn done,
                          void *arg) {
    collector_t *col = calloc(1, sizeof *col);
    if (!col || !(col->responses = json_array()) || uv_timer_init(nsp->io->loop, &col->timer)) {
        if (col)
            json_decref(col->responses);
        free(col);
        return -ENOMEM;
    }
    col->done = done;
    col->arg = arg;
    /* This call's, the timer's (released when it is closed), and the adapter's until its
     * last count. */
    col->refs = 3;
    col->timer.data = col;
    buf_t b = {0};
    int rc = dump_payload(p, &b);
    if (rc == 0) {
        sio_bcast_t bc = {event,
                          (const char *)b.data,
                          b.len,
                          p ? p->bins : NULL,
                          p ? p->nbins : 0,
                          to ? *to : (sio_target_t){0},
                          false,
                          timeout_ms};
        rc = nsp->adapter->ops->broadcast_with_ack(nsp->adapter, &bc, nsp->next_ack_id++,
                                                   collector_count, collector_ack, col);
    }
    buf_free(&b);
    if (rc) {
        if (!col->finished) {
            col->finished = true;
            json_decref(col->responses);
            uv_close((uv_handle_t *)&col->timer, collector_timer_closed);
        }
        /* A failed adapter never counted: its reference goes with this call's. */
        collector_release(col, 2);
        return rc;
    }
    if (!col->finished && timeout_ms &&
        uv_timer_start(&col->timer, collector_timeout, timeout_ms, 0))
        collector_finish(col, -ENOMEM);
    collector_unref(col);
    return 0;
}

int sio_nsp_sockets_join(sio_nsp_t *nsp, const sio_target_t *which, const char *room) {
    return nsp->adapter->ops->sockets_join(nsp->adapter, which, room);
}

int sio_nsp_sockets_leave(sio_nsp_t *nsp, const sio_target_t *which, const char *room) {
    return nsp->adapter->ops->sockets_leave(nsp->adapter, which, room);
}

int sio_nsp_disconnect_sockets(sio_nsp_t *nsp, const sio_target_t *which, bool close) {
    return nsp->adapter->ops->disconnect_sockets(nsp->adapter, which, close);
}

int sio_nsp_fetch_sockets(sio_nsp_t *nsp, const sio_target_t *which,
                          void (*fn)(sio_socket_t *s, void *arg), void *arg) {
    return nsp->adapter->ops->fetch_sockets(nsp->adapter, which, fn, arg);
}

int sio_nsp_on_broadcast(sio_nsp_t *nsp, sio_broadcast_fn fn, void *arg) {
    sio_observer_t *o = realloc(nsp->observers, (nsp->nobservers + 1) * sizeof *o);
    if (!o)
        return -ENOMEM;
    nsp->observers = o;
    o[nsp->nobservers++] = (sio_observer_t){fn, arg};
    return 0;
}

int sio_nsp_fetch_all(sio_nsp_t *nsp, const sio_target_t *which, uint32_t timeout_ms,
                      sio_fetch_fn done, void *arg) {
    return nsp->adapter->ops->fetch_all(nsp->adapter, which, timeout_ms, done, arg);
}

int sio_nsp_server_emit(sio_nsp_t *nsp, const char *event, const sio_payload_t *p,
                        uint32_t timeout_ms, sio_bcast_ack_fn done, void *arg) {
    if (p && p->nbins)
        return -EINVAL;
    buf_t b = {0};
    int rc = dump_payload(p, &b);
    if (rc == 0)
        rc = nsp->adapter->ops->server_emit(nsp->adapter, event, (const char *)b.data, b.len,
                                            timeout_ms, done, arg);
    buf_free(&b);
    return rc;
}

int sio_nsp_on_server_event(sio_nsp_t *nsp, sio_server_event_fn fn, void *arg) {
    nsp->server_event = fn;
    nsp->server_event_arg = arg;
    return 0;
}

json_t *sio_nsp_server_event(sio_nsp_t *nsp, const char *event, json_t *args) {
    return nsp->server_event ? nsp->server_event(nsp, event, args, nsp->server_event_arg) : NULL;
}

size_t sio_nsp_server_count(sio_nsp_t *nsp) {
    return nsp->adapter->ops->server_count(nsp->adapter);
}
