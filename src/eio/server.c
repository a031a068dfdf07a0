/* eio/server.c — Engine.IO request routing: handshakes, errors, CORS, the session table.
 *
 * Request checks follow the reference server's order so clients see the same errors:
 * transport name (0), then for an existing sid: unknown sid (1) or a transport that
 * does not match and is not an upgrade (3); for a handshake: method (2), protocol
 * version (5: anything but 4, and 3 unless allow_eio3), the allow_request hook (4). */
#include "eio/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

static const char *const error_messages[] = {
    "Transport unknown", "Session ID unknown", "Bad handshake method",
    "Bad request",       "Forbidden",          "Unsupported protocol version",
};

void eio_config_defaults(eio_config_t *cfg) {
    *cfg = (eio_config_t){
        .path = "/engine.io/",
        .ping_interval = 25000,
        .ping_timeout = 20000,
        .upgrade_timeout = 10000,
        .max_payload = 1000000,
        .allow_websocket = true,
        .allow_polling = true,
        .peer_address = true,
        .ws_deflate_threshold = 1024,
        .http_compression_threshold = 1024,
    };
}

size_t eio_cors_headers(const eio_server_t *srv, const http_request_t *req, char *out,
                        size_t size) {
    return http_cors_headers(srv->cfg.cors_origins, srv->cfg.cors_origin_count, req, out, size);
}

void eio_respond_error(eio_server_t *srv, http_conn_t *hc, const http_req_t *req,
                       eio_error_t code) {
    char body[96];
    int n = snprintf(body, sizeof body, "{\"code\":%d,\"message\":\"%s\"}", (int)code,
                     error_messages[code]);
    char cors[512];
    size_t cl = eio_cors_headers(srv, &req->head, cors, sizeof cors);
    cors[cl] = '\0';
    LOG_LIMITED(LOG_LEVEL_INFO, "eio", "request refused: %s", error_messages[code]);
    http_respond(hc, code == EIO_ERR_FORBIDDEN ? 403 : 400, "application/json", cors, body,
                 (size_t)n);
}

static void respond_preflight(eio_server_t *srv, http_conn_t *hc, const http_req_t *req) {
    char lines[1024];
    size_t n = eio_cors_headers(srv, &req->head, lines, sizeof lines);
    if (n > 0) {
        const slice_t *asked = http_request_header(&req->head, "access-control-request-headers");
        int m = snprintf(lines + n, sizeof lines - n,
                         "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                         "Access-Control-Allow-Headers: %.*s\r\n"
                         "Access-Control-Max-Age: 86400\r\n",
                         asked ? (int)asked->len : 12, asked ? asked->base : "content-type");
        if (m > 0 && (size_t)m < sizeof lines - n)
            n += (size_t)m;
    }
    lines[n] = '\0';
    http_respond(hc, 204, NULL, lines, NULL, 0);
}

/* check_origin: a browser's request from another site (cross-site WebSocket hijacking,
 * forged polls) is refused unless its Origin is allowed. Same-origin requests (the
 * Origin names the Host the request was sent to) and requests with no Origin (not from
 * a browser) pass. */
static bool origin_allowed(const eio_server_t *srv, const http_request_t *req) {
    const slice_t *origin = http_request_header(req, "origin");
    if (!srv->cfg.limits.check_origin || !origin)
        return true;
    for (size_t i = 0; i < srv->cfg.cors_origin_count; i++)
        if (strcmp(srv->cfg.cors_origins[i], "*") == 0 ||
            slice_eq(*origin, srv->cfg.cors_origins[i]))
            return true;
    const slice_t *host = http_request_header(req, "host");
    const char *sep = memmem(origin->base, origin->len, "://", 3);
    if (!host || !sep)
        return false;
    size_t skip = (size_t)(sep + 3 - origin->base);
    slice_t origin_host = slice_make(origin->base + skip, origin->len - skip);
    return origin_host.len == host->len &&
           strncasecmp(origin_host.base, host->base, host->len) == 0;
}

static void handshake(eio_server_t *srv, http_conn_t *hc, http_req_t *req,
                      eio_transport_t transport, uint8_t protocol) {
    if (srv->cb.allow_request) {
        int code = srv->cb.allow_request(req, srv->arg);
        if (code) {
            eio_respond_error(srv, hc, req, (eio_error_t)code);
            return;
        }
    }
    eio_guard_ip_t *guard = NULL;
    if (srv->guard) {
        int status = eio_guard_admit(srv->guard, hc, req, uv_now(net_loop_uv(srv->nl)), &guard);
        if (status) {
            const char *why = status == 429 ? "too many handshakes from this address"
                                            : "too many sessions from this address";
            LOG_LIMITED(LOG_LEVEL_INFO, "eio", "handshake refused with %d: %s", status, why);
            char body[96];
            int n = snprintf(body, sizeof body, "{\"code\":%d,\"message\":\"%s\"}",
                             (int)EIO_ERR_FORBIDDEN, why);
            http_respond(hc, status, "application/json",
                         status == 429 ? "Retry-After: 1\r\n" : NULL, body, (size_t)n);
            return;
        }
    }
    if (transport == EIO_TRANSPORT_WEBSOCKET) {
        eio_websocket_handshake(srv, hc, req, guard, protocol);
        return;
    }
    eio_session_t *s = eio_session_create(srv, EIO_TRANSPORT_POLLING, guard);
    if (!s) {
        http_respond_error(hc, 503, "cannot create session");
        return;
    }
    s->protocol = protocol;
    s->b64 = slice_query_get(req->head.query, "b64", &(slice_t){0});
    char open[256];
    size_t n = 0;
    if (protocol == 3) {
        /* A v3 payload of one text packet: its length (ASCII: bytes are units) first. */
        char packet[224];
        size_t pn = eio_session_open_packet(s, packet, sizeof packet);
        int m = pn ? snprintf(open, sizeof open, "%zu:%s", pn, packet) : 0;
        n = m > 0 && (size_t)m < sizeof open ? (size_t)m : 0;
    } else {
        n = eio_session_open_packet(s, open, sizeof open);
    }
    char lines[1024];
    size_t cl = eio_cors_headers(srv, &req->head, lines, sizeof lines);
    if (srv->cfg.cookie) {
        int m = snprintf(lines + cl, sizeof lines - cl,
                         "Set-Cookie: io=%s; Path=/; HttpOnly; SameSite=Lax\r\n", s->sid);
        if (m > 0 && (size_t)m < sizeof lines - cl)
            cl += (size_t)m;
    }
    lines[cl] = '\0';
    eio_session_start(s, req, hc);
    http_respond(hc, 200, "text/plain; charset=UTF-8", lines, open, n);
}

/* A query parameter, percent-decoded into buf (as the reference server decodes them).
 * Returns 1, 0 when absent, -1 when malformed or longer than size (*out then holds an
 * empty slice, which matches no transport, version or session). */
static int query_param(const http_req_t *req, const char *key, char *buf, size_t size,
                       slice_t *out) {
    slice_t raw;
    *out = SLICE_NULL;
    if (!slice_query_get(req->head.query, key, &raw))
        return 0;
    ssize_t n = raw.len <= size ? http_percent_decode(raw, buf) : -1;
    if (n < 0)
        return -1;
    *out = slice_make(buf, (size_t)n);
    return 1;
}

static bool route(http_conn_t *hc, http_req_t *req, void *arg) {
    eio_server_t *srv = arg;
    size_t plen = strlen(srv->path);
    slice_t path = req->head.path;
    /* Accept the path with or without its trailing slash. */
    bool match = slice_eq(path, srv->path) ||
                 (plen > 1 && srv->path[plen - 1] == '/' && path.len == plen - 1 &&
                  memcmp(path.base, srv->path, plen - 1) == 0);
    if (!match)
        return false;
    if (slice_eq(req->head.method, "OPTIONS")) {
        respond_preflight(srv, hc, req);
        return true;
    }
    if (srv->closing) {
        http_respond_error(hc, 503, "shutting down");
        return true;
    }
    if (!origin_allowed(srv, &req->head)) {
        eio_respond_error(srv, hc, req, EIO_ERR_FORBIDDEN);
        return true;
    }
    slice_t transport_name = SLICE_NULL, sid = SLICE_NULL, eio = SLICE_NULL;
    char transport_buf[16], sid_buf[64], eio_buf[8];
    query_param(req, "transport", transport_buf, sizeof transport_buf, &transport_name);
    bool has_sid = query_param(req, "sid", sid_buf, sizeof sid_buf, &sid) != 0;
    if (srv->going_away && !has_sid) {
        http_respond_error(hc, 503, "shutting down"); /* the client tries again, elsewhere */
        return true;
    }
    eio_transport_t transport;
    if (slice_eq(transport_name, "polling") && srv->cfg.allow_polling)
        transport = EIO_TRANSPORT_POLLING;
    else if (slice_eq(transport_name, "websocket") && srv->cfg.allow_websocket)
        transport = EIO_TRANSPORT_WEBSOCKET;
    else {
        eio_respond_error(srv, hc, req, EIO_ERR_UNKNOWN_TRANSPORT);
        return true;
    }
    bool is_upgrade = req->head.upgrade;
    if ((transport == EIO_TRANSPORT_WEBSOCKET) != is_upgrade) {
        eio_respond_error(srv, hc, req, EIO_ERR_BAD_REQUEST);
        return true;
    }
    if (has_sid) {
        eio_session_t *s = map_get(&srv->sessions, sid.base, sid.len);
        if (!s && srv->group_tag && sid.len && sid.base[0] != srv->group_tag &&
            srv->foreign(hc, req, sid.base[0], srv->foreign_arg))
            return true;
        if (!s) {
            eio_respond_error(srv, hc, req, EIO_ERR_UNKNOWN_SID);
        } else if (transport == EIO_TRANSPORT_WEBSOCKET) {
            eio_websocket_upgrade(s, hc, req);
        } else if (s->transport != EIO_TRANSPORT_POLLING) {
            eio_respond_error(srv, hc, req, EIO_ERR_BAD_REQUEST);
        } else {
            eio_polling_handle(s, hc, req);
        }
        return true;
    }
    if (!slice_eq(req->head.method, "GET")) {
        eio_respond_error(srv, hc, req, EIO_ERR_BAD_HANDSHAKE_METHOD);
        return true;
    }
    uint8_t protocol = 0;
    if (query_param(req, "EIO", eio_buf, sizeof eio_buf, &eio) == 1) {
        if (slice_eq(eio, "4"))
            protocol = 4;
        else if (slice_eq(eio, "3") && srv->cfg.allow_eio3)
            protocol = 3;
    }
    if (!protocol) {
        eio_respond_error(srv, hc, req, EIO_ERR_UNSUPPORTED_PROTOCOL_VERSION);
        return true;
    }
    handshake(srv, hc, req, transport, protocol);
    return true;
}

static int copy_config(eio_server_t *srv, const eio_config_t *cfg) {
    srv->cfg = *cfg;
    srv->cfg.sid_suffix = NULL;
    if (cfg->sid_suffix) {
        size_t n = strlen(cfg->sid_suffix);
        const char *b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        if (n == 0 || n > EIO_SID_SUFFIX_MAX || strspn(cfg->sid_suffix, b64url) != n)
            return -EINVAL;
        memcpy(srv->sid_suffix, cfg->sid_suffix, n + 1);
        srv->cfg.sid_suffix = srv->sid_suffix;
    }
    srv->path = strdup(cfg->path ? cfg->path : "/engine.io/");
    if (!srv->path)
        return -ENOMEM;
    srv->cfg.path = srv->path;
    if (cfg->cors_origin_count) {
        srv->cors_origins = calloc(cfg->cors_origin_count, sizeof *srv->cors_origins);
        if (!srv->cors_origins)
            return -ENOMEM;
        for (size_t i = 0; i < cfg->cors_origin_count; i++)
            if (!(srv->cors_origins[i] = strdup(cfg->cors_origins[i])))
                return -ENOMEM;
    }
    srv->cfg.cors_origins = (const char *const *)srv->cors_origins;
    return 0;
}

static void due_timer_closed(uv_handle_t *h) {
    free(h);
}

static void server_free(eio_server_t *srv) {
    if (srv->due_timer)
        uv_close((uv_handle_t *)srv->due_timer, due_timer_closed);
    for (size_t i = 0; srv->cors_origins && i < srv->cfg.cors_origin_count; i++)
        free(srv->cors_origins[i]);
    free(srv->cors_origins);
    free(srv->path);
    map_free(&srv->sessions);
    eio_guard_free(srv->guard);
    if (srv->ping)
        eio_msg_release(srv->ping);
    if (srv->noop)
        eio_msg_release(srv->noop);
    if (srv->close)
        eio_msg_release(srv->close);
    if (srv->pong_probe)
        eio_msg_release(srv->pong_probe);
    ws_deflate_release(srv->deflate);
    if (srv->pong)
        eio_msg_release(srv->pong);
    free(srv);
}

int eio_server_new(http_server_t *http, const eio_config_t *cfg, const eio_callbacks_t *cb,
                   void *arg, eio_server_t **out) {
    eio_server_t *srv = calloc(1, sizeof *srv);
    if (!srv)
        return -ENOMEM;
    srv->cb = *cb;
    srv->arg = arg;
    srv->http = http;
    srv->nl = http_server_loop(http);
    int rc = copy_config(srv, cfg);
    if (rc == 0 && map_init(&srv->sessions))
        rc = -EIO;
    if (rc == 0)
        srv->guard = eio_guard_new(&cfg->limits, &rc);
    /* The guard keeps its own copy of the proxies; the caller's array is not kept. */
    srv->cfg.limits.trusted_proxies = NULL;
    srv->cfg.limits.trusted_proxy_count = 0;
    if (rc == 0 && !(srv->due_timer = malloc(sizeof *srv->due_timer)))
        rc = -ENOMEM;
    if (rc == 0 && (rc = uv_timer_init(net_loop_uv(srv->nl), srv->due_timer))) {
        free(srv->due_timer);
        srv->due_timer = NULL;
    }
    if (srv->due_timer)
        srv->due_timer->data = srv;
    if (rc == 0) {
        srv->ping = eio_msg_new(EIO_PING, false, NULL, 0);
        srv->noop = eio_msg_new(EIO_NOOP, false, NULL, 0);
        srv->close = eio_msg_new(EIO_CLOSE, false, NULL, 0);
        srv->pong_probe = eio_msg_new(EIO_PONG, false, "probe", 5);
        srv->pong = eio_msg_new(EIO_PONG, false, NULL, 0);
        if (!srv->ping || !srv->noop || !srv->close || !srv->pong_probe || !srv->pong)
            rc = -ENOMEM;
    }
    if (rc == 0 && cfg->ws_deflate) {
        ws_deflate_config_t zc = {cfg->ws_deflate_threshold, cfg->ws_deflate_client_context};
        rc = ws_deflate_new(&zc, &srv->deflate);
    }
    if (rc == 0)
        rc = net_loop_on_flush(srv->nl, eio_server_flush_hook, srv);
    if (rc == 0) {
        /* The route takes the path without its trailing slash; route() checks the rest. */
        char prefix[256];
        snprintf(prefix, sizeof prefix, "%s", srv->path);
        size_t pl = strlen(prefix);
        if (pl > 1 && prefix[pl - 1] == '/')
            prefix[pl - 1] = '\0';
        rc = http_server_route(http, prefix, route, srv);
    }
    if (rc) {
        server_free(srv);
        return rc;
    }
    *out = srv;
    return 0;
}

void eio_server_close(eio_server_t *srv) {
    srv->closing = true;
    map_entry_t *e;
    size_t n = 0;
    eio_session_t **all = malloc((srv->sessions.count + 1) * sizeof *all);
    /* Collect first: ending a session removes it from the map. */
    for (size_t pos = 0; all && map_next(&srv->sessions, &pos, &e);)
        all[n++] = e->value;
    for (size_t i = 0; i < n; i++) {
        if (all[i]->draining)
            eio_session_finish_drain(all[i]);
        else
            eio_session_end(all[i], "server shutting down", true);
    }
    free(all);
    /* Answer what the sessions queued; the same pass frees the ended ones. */
    eio_server_flush_hook(srv);
    net_loop_off_flush(srv->nl, eio_server_flush_hook, srv);
    server_free(srv);
}

void eio_server_drain(eio_server_t *srv) {
    srv->going_away = true;
    size_t n = 0;
    map_entry_t *e;
    eio_session_t **all = malloc((srv->sessions.count + 1) * sizeof *all);
    if (!all) {
        LOG_ERROR("eio", "drain: out of memory; the sessions end with the server");
        return;
    }
    for (size_t pos = 0; map_next(&srv->sessions, &pos, &e);)
        all[n++] = e->value;
    for (size_t i = 0; i < n; i++)
        eio_session_close_reason(all[i], "server shutting down");
    free(all);
}

void eio_server_set_group(eio_server_t *srv, char tag, eio_foreign_fn foreign, void *arg) {
    srv->group_tag = tag;
    srv->foreign = foreign;
    srv->foreign_arg = arg;
}

size_t eio_server_session_count(const eio_server_t *srv) {
    return srv->sessions.count;
}

static const char *const end_reasons[EIO_END_REASONS] = {
    "transport close", "transport error",      "ping timeout", "parse error",
    "forced close",    "server shutting down", "other",
};

const char *eio_end_reason_name(eio_end_reason_t r) {
    return r < EIO_END_REASONS ? end_reasons[r] : end_reasons[EIO_END_OTHER];
}

eio_end_reason_t eio_end_reason_of(const char *reason) {
    for (int r = 0; r < EIO_END_OTHER; r++)
        if (strcmp(reason, end_reasons[r]) == 0)
            return (eio_end_reason_t)r;
    return EIO_END_OTHER;
}

void eio_server_stats(const eio_server_t *srv, eio_stats_t *out) {
    memset(out, 0, sizeof *out);
    out->handshakes = srv->handshakes;
    out->upgrades = srv->upgrades;
    memcpy(out->ended, srv->ended, sizeof out->ended);
    if (srv->deflate) {
        ws_deflate_stats_t z;
        ws_deflate_stats(srv->deflate, &z);
        out->ws_deflated = z.messages_deflated;
        out->ws_deflated_frames = z.frames_sent;
        out->ws_deflate_bytes_in = z.bytes_before;
        out->ws_deflate_bytes_out = z.bytes_after;
        out->ws_inflated = z.messages_inflated;
        out->ws_inflaters = z.inflaters;
        out->ws_zlib_bytes = z.zlib_bytes;
    }
    map_entry_t *e;
    for (size_t pos = 0; map_next(&srv->sessions, &pos, &e);) {
        const eio_session_t *s = e->value;
        if (!s->opened)
            continue;
        if (s->transport == EIO_TRANSPORT_WEBSOCKET)
            out->websocket++;
        else
            out->polling++;
        if (s->get)
            out->polls_held++;
    }
}
