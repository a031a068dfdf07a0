/* sio/server.c — the Socket.IO server: configuration, the Engine.IO server under it,
 * the namespaces, the recovery purge, and shutting down. Clients (one per Engine.IO
 * session) are client.c's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sio/internal.h"
#include "util/assert.h"
#include "util/log.h"
#include "util/time.h"

void sio_config_defaults(sio_config_t *cfg) {
    *cfg = (sio_config_t){
        .path = "/socket.io/",
        .ping_interval = 25000,
        .ping_timeout = 20000,
        .connect_timeout = 45000,
        .max_payload = 1000000,
        .max_attachments = 10,
        .recovery_max_disconnection = 120000,
        .recovery_skip_middlewares = true,
        .recovery_max_bytes = 64u << 20,
        .backpressure_bytes = 262144,
        .ws_deflate_threshold = 1024,
        .http_compression_threshold = 1024,
    };
}

/* ---- the server ---- */

static void on_purge(uv_timer_t *t) {
    sio_server_t *io = t->data;
    uint64_t now = time_mono_ms();
    map_entry_t *e;
    for (size_t pos = 0; map_next(&io->nsps, &pos, &e);) {
        sio_nsp_t *nsp = e->value;
        nsp->adapter->ops->purge(nsp->adapter, now);
    }
}

int sio_server_new(http_server_t *http, const sio_config_t *cfg, sio_server_t **out) {
    sio_server_t *io = calloc(1, sizeof *io);
    if (!io)
        return -ENOMEM;
    io->cfg = *cfg;
    io->parser = sio_parser_of(cfg->parser);
    if (!io->parser) {
        free(io);
        return -EINVAL;
    }
    io->path = strdup(cfg->path ? cfg->path : "/socket.io/");
    io->cfg.path = io->path;
    io->http = http;
    io->loop = net_loop_uv(http_server_loop(http));
    io->empty = json_object();
    if (!io->path || !io->empty || map_init(&io->nsps) || !sio_server_of(io, "/")) {
        sio_server_close(io);
        return -ENOMEM;
    }
    /* Timer initialisation cannot fail on Linux; a failed start is refused all the same. */
    int rc = uv_timer_init(io->loop, &io->connect_timer);
    if (rc == 0)
        rc = uv_timer_init(io->loop, &io->purge_timer);
    io->connect_timer.data = io->purge_timer.data = io;
    if (rc == 0 && cfg->recovery) {
        uint64_t every = cfg->recovery_max_disconnection / 4;
        if (every < 1000)
            every = 1000;
        if (every > 60000)
            every = 60000;
        rc = uv_timer_start(&io->purge_timer, on_purge, every, every);
        uv_unref((uv_handle_t *)&io->purge_timer);
    }
    if (rc) {
        sio_server_close(io);
        return rc;
    }
    eio_config_t ecfg;
    eio_config_defaults(&ecfg);
    ecfg.path = io->path;
    ecfg.ping_interval = cfg->ping_interval;
    ecfg.ping_timeout = cfg->ping_timeout;
    ecfg.max_payload = cfg->max_payload;
    ecfg.cors_origins = cfg->cors_origins;
    ecfg.cors_origin_count = cfg->cors_origin_count;
    ecfg.cookie = cfg->cookie;
    ecfg.sid_suffix = cfg->sid_suffix;
    ecfg.limits = cfg->limits;
    ecfg.peer_address = !cfg->lean_handshake;
    ecfg.ws_deflate = cfg->ws_deflate;
    ecfg.ws_deflate_threshold = cfg->ws_deflate_threshold;
    ecfg.ws_deflate_client_context = cfg->ws_deflate_client_context;
    ecfg.allow_eio3 = cfg->allow_eio3;
    ecfg.http_compression_threshold = cfg->http_compression_threshold;
    eio_callbacks_t cb;
    sio_client_callbacks(&cb);
    rc = eio_server_new(http, &ecfg, &cb, io, &io->eio);
    if (rc) {
        sio_server_close(io);
        return rc;
    }
    *out = io;
    return 0;
}

static void server_free_cb(uv_handle_t *h) {
    sio_server_t *io = h->data;
    /* Both timers were closed; this runs for the second. */
    if (h == (uv_handle_t *)&io->purge_timer)
        free(io);
}

void sio_server_close(sio_server_t *io) {
    io->closing = true;
    if (io->eio)
        eio_server_close(io->eio);
    map_entry_t *e;
    for (size_t pos = 0; map_next(&io->nsps, &pos, &e);)
        sio_nsp_free(e->value);
    map_free(&io->nsps);
    json_decref(io->empty);
    free(io->matchers);
    free(io->path);
    if (!uv_is_active((uv_handle_t *)&io->connect_timer) && io->connect_timer.loop == NULL) {
        free(io);
        return;
    }
    uv_close((uv_handle_t *)&io->connect_timer, NULL);
    uv_close((uv_handle_t *)&io->purge_timer, server_free_cb);
}

void sio_server_drain(sio_server_t *io) {
    if (io->eio)
        eio_server_drain(io->eio);
}

bool sio_server_drained(const sio_server_t *io) {
    return !io->eio || eio_server_session_count(io->eio) == 0;
}

int sio_server_wrap_adapters(sio_server_t *io, sio_adapter_wrap_fn wrap, void *arg) {
    io->wrap = wrap;
    io->wrap_arg = arg;
    map_entry_t *e;
    for (size_t pos = 0; map_next(&io->nsps, &pos, &e);) {
        sio_nsp_t *nsp = e->value;
        sio_adapter_t *wrapped = wrap(nsp, nsp->adapter, arg);
        if (!wrapped)
            return -ENOMEM;
        nsp->adapter = wrapped;
    }
    return 0;
}

void sio_server_set_offset_tag(sio_server_t *io, const char *tag) {
    PARLEY_ASSERT(strlen(tag) <= SIO_OFFSET_TAG_MAX);
    snprintf(io->offset_tag, sizeof io->offset_tag, "%s", tag);
}

void sio_server_set_id_tag(sio_server_t *io, char tag) {
    io->id_tag = tag;
    io->offset_tag[0] = tag;
    io->offset_tag[1] = '\0';
}

http_server_t *sio_server_http(sio_server_t *io) {
    return io->http;
}

eio_server_t *sio_server_eio(sio_server_t *io) {
    return io->eio;
}

void sio_server_monitor(sio_server_t *io, const sio_monitor_t *m, void *arg) {
    io->monitor = m ? *m : (sio_monitor_t){0};
    io->monitor_arg = m ? arg : NULL;
}

void sio_server_each_nsp(sio_server_t *io, void (*fn)(sio_nsp_t *nsp, void *arg), void *arg) {
    map_entry_t *e;
    for (size_t pos = 0; map_next(&io->nsps, &pos, &e);)
        fn(e->value, arg);
}

void sio_server_stats(const sio_server_t *io, sio_stats_t *out) {
    *out = io->totals;
    out->recovery_sessions = out->recovery_packets = 0;
    out->clients = io->nclients;
    out->sockets = io->nsockets;
    map_entry_t *e;
    for (size_t pos = 0; map_next(&io->nsps, &pos, &e);) {
        sio_nsp_t *nsp = e->value;
        out->recovery_sessions += nsp->sessions.count;
        out->recovery_packets += nsp->log_len;
    }
}
