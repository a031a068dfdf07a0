/* main/main.c — the parley server: start-up of the chat service.
 *
 * The options come from main/config.c. Start-up wires the layers together: net loop →
 * HTTP server → Socket.IO server → store → chat service, plus the HTTP routes of this
 * program (the web page, the client bundle, the development token endpoint, the admin
 * UI's files, the probes of main/probes.c). SIGINT/SIGTERM drain the process
 * (main/drain.c) and let the store flush before exiting. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "chat/admin.h"
#include "chat/api.h"
#include "chat/auth.h"
#include "chat/feed.h"
#include "chat/notify.h"
#include "chat/service.h"
#include "chat/store.h"
#include "chat/store_remote.h"
#include "http/access.h"
#include "http/server.h"
#include "http/static.h"
#include "main/app.h"
#include "parley/loop.h"
#include "parley/redis.h"
#include "parley/sio.h"
#include "parley/tls.h"
#include "util/log.h"
#include "util/rand.h"
#include "util/time.h"

#define DEV_TOKEN_TTL_S (7 * 24 * 3600) /* development tokens last a week */

/* POST /api/dev/token {name} → {token, userId}: development logins (--dev-login). */
static bool dev_token_route(http_conn_t *hc, http_req_t *req, void *arg) {
    app_t *app = arg;
    if (!slice_eq(req->head.path, "/api/dev/token"))
        return false;
    if (!app->cfg.dev_login) {
        chat_api_respond_error(hc, 404, NULL, "not_found", "development login is disabled");
        return true;
    }
    if (!slice_eq(req->head.method, "POST")) {
        chat_api_respond_error(hc, 405, NULL, "method_not_allowed", "use POST");
        return true;
    }
    json_t *body = json_loadb(req->body.base, req->body.len, 0, NULL);
    json_t *nv = json_object_get(body, "name");
    const char *name = json_string_value(nv);
    if (!chat_id_valid(name, name ? json_string_length(nv) : 0, CHAT_USERNAME_MAX)) {
        json_decref(body);
        char msg[96];
        snprintf(msg, sizeof msg,
                 "name: a string of 1 to %d bytes, no control or format characters",
                 CHAT_USERNAME_MAX);
        chat_api_respond_error(hc, 400, NULL, "invalid_payload", msg);
        return true;
    }
    char id[RAND_ID_SIZE], user_id[RAND_ID_SIZE + 2];
    if (rand_id(id)) {
        json_decref(body);
        LOG_ERROR("main", "dev token: no randomness");
        chat_api_respond_error(hc, 500, NULL, "internal_error", "no randomness");
        return true;
    }
    snprintf(user_id, sizeof user_id, "u-%.10s", id);
    char *token =
        chat_auth_sign(app->auth, user_id, name, (long)(time_wall_ms() / 1000), DEV_TOKEN_TTL_S);
    json_decref(body);
    if (!token) {
        chat_api_respond_error(hc, 500, NULL, "internal_error",
                               "cannot sign tokens with this algorithm");
        return true;
    }
    chat_api_respond_json(hc, 200, NULL, json_pack("{s:s,s:s}", "token", token, "userId", user_id));
    free(token);
    return true;
}

/* /socket.io/socket.io.js, .min.js and their maps, from socket.io-client's dist. */
static bool client_route(http_conn_t *hc, http_req_t *req, void *arg) {
    app_t *app = arg;
    slice_t p = req->head.path;
    static const char prefix[] = "/socket.io/socket.io";
    if (!app->client || p.len <= sizeof prefix - 1 ||
        memcmp(p.base, prefix, sizeof prefix - 1) != 0)
        return false;
    return http_static_serve(app->client, hc, req, p.base + 10, p.len - 10);
}

/* The page's security headers, for every file under the web root (docs/HTTP-API.md).
 * The page is ES modules and one stylesheet from its own origin, with no inline script
 * or style, so it needs nothing else: no framing (clickjacking), no <base> rewriting, no
 * plugins, no other origins to connect to ('self' covers ws: and wss: to the same host,
 * CSP level 3), no sniffing, no Referer leaking room names to other sites. */
#define PAGE_SECURITY_HEADERS                                                                      \
    "Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; "           \
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "               \
    "frame-ancestors 'none'; form-action 'self'\r\n"                                               \
    "X-Content-Type-Options: nosniff\r\n"                                                          \
    "X-Frame-Options: DENY\r\n"                                                                    \
    "Referrer-Policy: no-referrer\r\n"

/* /admin/...: the admin UI's static build (--admin-ui); /admin alone is sent to /admin/,
 * since the page's links are relative. */
static bool admin_ui_route(http_conn_t *hc, http_req_t *req, void *arg) {
    app_t *app = arg;
    slice_t p = req->head.path;
    if (!app->admin_ui)
        return false;
    if (slice_eq(p, "/admin")) {
        if (http_respond(hc, 301, "text/plain", "Location: /admin/\r\n", "", 0))
            LOG_WARN("main", "/admin: redirect not sent");
        return true;
    }
    if (p.len < 7 || memcmp(p.base, "/admin/", 7) != 0)
        return false;
    return http_static_serve(app->admin_ui, hc, req, p.base + 6, p.len - 6);
}

static bool web_route(http_conn_t *hc, http_req_t *req, void *arg) {
    app_t *app = arg;
    return app->web &&
           http_static_serve(app->web, hc, req, req->head.path.base, req->head.path.len);
}

/* The end of the drain: the store closed (tell_clients) and the servers (finish). */
void app_teardown(app_t *app) {
    chat_api_free(app->api);
    chat_service_free(app->chat);
    app_probes_free(app);
    if (app->worker)
        parley_worker_detach(app->worker);
    app->worker = NULL;
    net_loop_close(app->nl);
}

/* --workers: a count, or "auto" for one per core. 0 when it is neither. */
static unsigned worker_count(const char *v) {
    if (strcmp(v, "auto") == 0) {
        unsigned n = uv_available_parallelism();
        return n > PARLEY_WORKERS_MAX ? PARLEY_WORKERS_MAX : n;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    return errno || *end || end == v || n < 1 || n > PARLEY_WORKERS_MAX ? 0 : (unsigned)n;
}

/* With workers, the process that runs main first becomes their supervisor and owns the
 * store; the workers (the same program, started again) serve. Returns -1 to go on as a
 * worker or a single process, else main's exit status (the supervisor is done). */
static int start_workers(app_t *app, int argc, char **argv) {
    static chat_owner_config_t owner;
    unsigned n = worker_count(app->cfg.workers);
    if (n == 0) {
        fprintf(stderr, "parley: --workers takes 1 to %d or auto, not '%s'\n", PARLEY_WORKERS_MAX,
                app->cfg.workers);
        return 2;
    }
    if (n > 1 && !getenv("PARLEY_WORKER") && !app->cfg.jwt_secret &&
        strcmp(app->cfg.jwt_alg, "HS256") == 0) {
        /* One random secret for every worker, or a token from one fails on the others. */
        if (rand_id(app->secret) || setenv("PARLEY_JWT_SECRET", app->secret, 1)) {
            LOG_ERROR("main", "no random JWT secret for the workers");
            return 1;
        }
        LOG_WARN("main", "no --jwt-secret: using a random one; tokens will not survive a restart");
    }
    chat_store_config_defaults(&owner.store);
    owner.kind = app->cfg.store;
    owner.data_dir = app->cfg.data_dir;
    owner.lock_wait_ms = (uint64_t)app->cfg.store_lock_wait * 1000;
    int port = (int)app->cfg.port;
    /* With Redis every worker is a node of the cluster: it has its own store connection
     * and no owner is needed in the supervisor. */
    int rc = cluster_start(argc, argv, n, app->cfg.host, &port,
                           app->cfg.redis_url ? NULL : &chat_owner_service, &owner, &app->worker);
    app->cfg.port = port;
    if (rc || (n > 1 && !app->worker))
        return rc;
    return -1;
}

#define KEY_FILE_MAX 65535 /* bytes of a PEM key file */

/* A small text file (a PEM key), NUL-terminated and malloc'd; NULL (and logged) when it
 * cannot be read or is larger than KEY_FILE_MAX. */
static char *read_text_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        LOG_ERROR("main", "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(KEY_FILE_MAX + 1);
    *len = buf ? fread(buf, 1, KEY_FILE_MAX + 1, f) : 0;
    const char *why = !buf                  ? "out of memory"
                      : ferror(f)           ? "read error"
                      : *len > KEY_FILE_MAX ? "too large"
                                            : NULL;
    fclose(f); /* read only: nothing to lose */
    if (why) {
        LOG_ERROR("main", "cannot read %s: %s", path, why);
        free(buf);
        return NULL;
    }
    buf[*len] = '\0';
    return buf;
}

/* Where the chat keeps what nodes share: its own Redis, or the adapter's. */
static const char *chat_redis_url(const config_t *c) {
    return c->chat_redis_url ? c->chat_redis_url : c->redis_url;
}

static int setup_auth(app_t *app) {
    const config_t *c = &app->cfg;
    if (strcmp(c->jwt_alg, "HS256") == 0) {
        const char *secret = c->jwt_secret;
        if (!secret) {
            /* No secret configured: tokens live as long as this process. */
            if (rand_id(app->secret)) {
                LOG_ERROR("main", "no randomness for a JWT secret");
                return -1;
            }
            secret = app->secret;
            LOG_WARN("main", "no --jwt-secret: using a random one; tokens will not survive "
                             "a restart");
        }
        app->auth = chat_auth_new("HS256", secret, strlen(secret));
    } else {
        size_t len = 0;
        if (!c->jwt_public_key) {
            LOG_ERROR("main", "--jwt-alg %s needs --jwt-public-key FILE", c->jwt_alg);
            return -1;
        }
        char *pem = read_text_file(c->jwt_public_key, &len);
        if (!pem)
            return -1;
        app->auth = chat_auth_new(c->jwt_alg, pem, len);
        free(pem);
    }
    if (!app->auth) {
        LOG_ERROR("main", "cannot set up JWT verification (%s)", c->jwt_alg);
        return -1;
    }
    if (chat_auth_set_room_claim(app->auth, c->room_claim)) {
        LOG_ERROR("main", "--room-claim: out of memory");
        return -1;
    }
    return 0;
}

/* A comma-separated option value as an array of strings (freed with free_list). */
static int split_list(const char *value, const char *flag, char ***out, size_t *n) {
    if (!value || !*value)
        return 0;
    char *copy = strdup(value);
    if (!copy) {
        LOG_ERROR("main", "--%s: out of memory", flag);
        return -1;
    }
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        char **grown = realloc(*out, (*n + 1) * sizeof *grown);
        if (grown)
            *out = grown; /* what is in it is freed at exit, as on success */
        if (!grown || !(grown[*n] = strdup(tok))) {
            free(copy);
            LOG_ERROR("main", "--%s: out of memory", flag);
            return -1;
        }
        (*n)++;
    }
    free(copy);
    return 0;
}

static void free_list(char **list, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

/* --notify-url: this process's notifier (each worker has its own; a supervisor none),
 * closed at the end of the drain (drain.c, finish). */
static int start_notify(app_t *app) {
    const config_t *c = &app->cfg;
    if (!c->notify_url)
        return 0;
    chat_notify_config_t ncfg;
    chat_notify_config_defaults(&ncfg);
    ncfg.url = c->notify_url;
    ncfg.secret = c->notify_secret;
    ncfg.window_ms = (uint32_t)c->notify_window_ms;
    ncfg.queue_max = (size_t)c->notify_queue;
    /* No online check yet: the service installs its own (chat_notify_set_online). */
    int rc = chat_notify_open(&app->loop, &ncfg, NULL, NULL, &app->notify);
    if (rc) {
        /* Never the URL itself in the log: it may carry credentials. */
        LOG_ERROR("main", "--notify-url: %s",
                  rc == -EINVAL ? "not an http(s) URL, or no --notify-secret" : strerror(-rc));
        return -1;
    }
    if ((rc = chat_service_use_notify(app->chat, &app->loop, app->notify))) {
        LOG_ERROR("main", "--notify-url: %s", strerror(-rc));
        return -1;
    }
    return 0;
}

static int start(app_t *app) {
    const config_t *c = &app->cfg;
    /* The modules' configurations: their defaults, then the options. */
    chat_store_config_t scfg;
    chat_store_config_defaults(&scfg);
    chat_api_config_t acfg;
    chat_api_config_defaults(&acfg);
    acfg.api_key = c->api_key;
    if (c->max_body > 0)
        acfg.max_body = (size_t)c->max_body;
    acfg.cors_origins = (const char *const *)app->origins;
    acfg.cors_origin_count = app->norigins;
    http_server_config_t hcfg;
    http_server_config_defaults(&hcfg);
    hcfg.host = c->host;
    hcfg.port = (int)c->port;
    hcfg.reuse_port = app->worker != NULL || c->reuse_port;
    hcfg.tls = app->tls;
    if (acfg.max_body > hcfg.max_body_size)
        hcfg.max_body_size = acfg.max_body; /* the API answers 413 above its own limit */
    sio_config_t iocfg;
    sio_config_defaults(&iocfg);
    iocfg.recovery = c->recovery;
    iocfg.sid_suffix = c->node_name;
    iocfg.lean_handshake = true; /* the chat reads only auth.token, in its middleware */
    iocfg.allow_eio3 = c->allow_eio3;
    if (!c->polling_compression)
        iocfg.http_compression_threshold = 0;
    iocfg.parser = strcmp(c->parser, "msgpack") == 0 ? SIO_PARSER_MSGPACK : SIO_PARSER_JSON;
    iocfg.ws_deflate = c->ws_deflate;
    iocfg.ws_deflate_threshold = (size_t)c->ws_deflate_threshold;
    iocfg.ws_deflate_client_context = c->ws_deflate_client_context;
    /* Recovered connections show their token again: the middleware checks it and makes
     * the connection's state; then the chat allows the restore only to the session's own
     * user (socket.data keeps who that is), never to whoever knows its pid. */
    iocfg.recovery_skip_middlewares = false;
    iocfg.recovery_allow = chat_service_recovery_allow;
    iocfg.cors_origins = (const char *const *)app->origins;
    iocfg.cors_origin_count = app->norigins;
    /* With origins listed, browsers of other sites are refused (403), not only left
     * without CORS headers: a WebSocket is not subject to CORS at all. */
    iocfg.limits.check_origin = app->norigins > 0;
    iocfg.limits.max_sessions_per_ip = (size_t)c->max_per_ip;
    iocfg.limits.handshake_rate = (uint32_t)c->handshake_rate;
    iocfg.limits.handshake_burst = (uint32_t)c->handshake_burst;
    iocfg.limits.trusted_proxies = (const char *const *)app->proxies;
    iocfg.limits.trusted_proxy_count = app->nproxies;
    chat_config_t ccfg;
    chat_config_defaults(&ccfg);
    ccfg.max_text = (size_t)c->max_text;
    ccfg.rate_burst = (double)c->rate_burst;
    ccfg.rate_per_sec = (double)c->rate_per_sec;
    ccfg.presence_limit = (size_t)c->presence_limit;
    ccfg.event_burst = (double)c->event_burst;
    ccfg.event_rate = (double)c->event_rate;
    ccfg.flood_limit = (size_t)c->flood_limit;
    ccfg.max_rooms = (size_t)c->max_rooms;
    ccfg.recovery = c->recovery;
    net_loop_config_t ncfg;
    net_loop_config_defaults(&ncfg);
    ncfg.output_limit = (size_t)c->output_limit;
    ncfg.send_timeout = (uint32_t)c->send_timeout;
    chat_feed_config_t fcfg;
    chat_feed_config_defaults(&fcfg);
    if (c->sse_heartbeat > 0)
        fcfg.heartbeat_ms =
            c->sse_heartbeat < UINT32_MAX / 1000 ? (uint32_t)c->sse_heartbeat * 1000 : UINT32_MAX;

    int rc = net_loop_configure(app->nl, &ncfg);
    if (rc) {
        LOG_ERROR("main", "--output-limit / --send-timeout: %s", strerror(-rc));
        return -1;
    }
    if (app->worker && !c->redis_url) {
        /* The supervisor owns the store (chat/store_remote.h). */
        rc = chat_store_open_remote(&app->loop, app->worker, &app->store);
    } else if (strcmp(c->store, "memory") == 0) {
        rc = chat_store_open_memory(&app->loop, &scfg, &app->store);
    } else if (strcmp(c->store, "redis") == 0) {
        scfg.memory_keep = 0; /* the store's own retention per room */
        rc = chat_store_open_redis(&app->loop, chat_redis_url(c), &scfg, &app->store);
    } else if (strcmp(c->store, "sqlite") == 0) {
        if (mkdir(c->data_dir, 0700) && errno != EEXIST) {
            LOG_ERROR("main", "cannot create %s: %s", c->data_dir, strerror(errno));
            return -1;
        }
        rc = chat_store_open_sqlite_wait(&app->loop, c->data_dir, &scfg,
                                         (uint64_t)c->store_lock_wait * 1000, app_store_opened, app,
                                         &app->store);
        if (rc == -EBUSY) {
            LOG_ERROR("main", "%s is in use by another process (--store-lock-wait is 0)",
                      c->data_dir);
            return -1;
        }
    } else {
        LOG_ERROR("main", "--store must be sqlite, memory or redis, not '%s'", c->store);
        return -1;
    }
    if (rc) {
        LOG_ERROR("main", "cannot open the %s store: %s", c->store, strerror(-rc));
        return -1;
    }
    /* Before the servers: the store's flush hook must run before theirs. */
    if ((rc = chat_store_use_net_loop(app->store, app->nl))) {
        LOG_ERROR("main", "cannot tie the store to the network loop: %s", strerror(-rc));
        return -1;
    }
    if ((rc = http_server_new(app->nl, &hcfg, &app->http))) {
        LOG_ERROR("main", "cannot listen on %s:%ld: %s", c->host, c->port, uv_strerror(rc));
        return -1;
    }
    if (c->access_log) {
        if ((rc = http_access_log_open(&app->loop, c->access_log,
                                       strcmp(c->log_format, "json") == 0, &app->access_log))) {
            LOG_ERROR("main", "--access-log %s: %s", c->access_log, strerror(-rc));
            return -1;
        }
        http_server_on_access(app->http, http_access_log_write, app->access_log);
    }
    /* A restart's new process gets no connection while the old one still listens: a
     * long-poll's next request of an old session would find no session here. (Workers
     * share the load instead: theirs is spread, and handed to the right worker.) */
    if (c->reuse_port && !app->worker && (rc = http_server_handover(app->http)))
        LOG_WARN("main", "the port will be shared during a restart, not handed over: %s",
                 uv_strerror(rc));
    if (!config_is_dir(c->web_root))
        LOG_WARN("main", "web root %s is not a directory: the page will answer 404", c->web_root);
    if (!config_is_dir(c->client_dir))
        LOG_WARN("main", "client dir %s is not a directory: the client bundle will answer 404",
                 c->client_dir);
    if (!(app->web = http_static_new(c->web_root)) ||
        http_static_set_headers(app->web, PAGE_SECURITY_HEADERS) ||
        !(app->client = http_static_new(c->client_dir)) ||
        http_static_set_headers(app->client, "X-Content-Type-Options: nosniff\r\n")) {
        LOG_ERROR("main", "static files: out of memory");
        return -1;
    }
    if (app_probes_start(app)) {
        LOG_ERROR("main", "out of memory");
        return -1;
    }
    if ((rc = sio_server_new(app->http, &iocfg, &app->io)) ||
        (rc = chat_service_new(app->io, app->store, app->auth, &ccfg, &app->chat)) ||
        (app->worker && !c->redis_url && (rc = chat_service_use_workers(app->chat, app->worker))) ||
        (rc = chat_feed_new(&app->loop, app->chat, app->store, &fcfg, &app->feed)) ||
        (rc = http_server_route(app->http, "/api/dev/token", dev_token_route, app)) ||
        (rc =
             chat_api_new(app->http, app->io, app->chat, app->auth, app->feed, &acfg, &app->api)) ||
        (rc = http_server_route(app->http, "/healthz", app_health_route, app)) ||
        (rc = http_server_route(app->http, "/readyz", app_ready_route, app)) ||
        (rc = http_server_route(app->http, "/metrics", app_metrics_route, app)) ||
        (rc = http_server_route(app->http, "/socket.io/socket.io", client_route, app)) ||
        (rc = http_server_route(app->http, "/admin", admin_ui_route, app)) ||
        (rc = http_server_route(app->http, "", web_route, app)) ||
        (app->worker && !c->redis_url &&
         (rc = parley_worker_attach(app->worker, &app->loop, app->io))) ||
        (app->worker && c->redis_url &&
         (rc = parley_worker_attach_handoff(app->worker, &app->loop, app->io))) ||
        (app->worker && !c->redis_url &&
         (rc = sio_nsp_on_server_event(sio_server_of(app->io, "/"), app_on_server_event, app)))) {
        LOG_ERROR("main", "cannot start the chat service: %s", uv_strerror(rc));
        return -1;
    }
    if (start_notify(app))
        return -1;
    if (c->redis_url) {
        if ((rc = chat_service_use_redis(app->chat, &app->loop, chat_redis_url(c)))) {
            LOG_ERROR("main", "Redis %s: %s", chat_redis_url(c),
                      rc == -EINVAL ? "not a Redis URL" : uv_strerror(rc));
            return -1;
        }
        parley_redis_config_t rcfg;
        parley_redis_config_defaults(&rcfg);
        rcfg.url = c->redis_url;
        rcfg.key = c->redis_key;
        rcfg.cluster = c->redis_cluster;
        if (parley_redis_mode_parse(c->redis_mode, &rcfg.mode))
            return -1; /* checked before start */
        if ((rc = parley_redis_attach(&app->loop, app->io, &rcfg, &app->redis))) {
            LOG_ERROR("main", "--redis-url %s: %s", c->redis_url,
                      rc == -EINVAL ? "not a Redis URL" : uv_strerror(rc));
            return -1;
        }
    }
    if (c->admin_ui && (!(app->admin_ui = http_static_new(c->admin_ui)) ||
                        http_static_set_headers(app->admin_ui, "X-Content-Type-Options: nosniff\r\n"
                                                               "X-Frame-Options: DENY\r\n"))) {
        LOG_ERROR("main", "--admin-ui: out of memory");
        return -1;
    }
    if (c->admin_ui && !config_is_dir(c->admin_ui))
        LOG_WARN("main", "--admin-ui %s is not a directory: /admin/ will answer 404", c->admin_ui);
    if (c->admin) {
        chat_admin_config_t adcfg;
        chat_admin_config_defaults(&adcfg);
        adcfg.username = c->admin_username;
        adcfg.password_hash = c->admin_password_hash;
        adcfg.readonly = c->admin_readonly;
        adcfg.production = c->admin_production;
        adcfg.server_id = c->admin_server_id;
        adcfg.worker = app->worker != NULL;
        if ((rc = chat_admin_new(app->io, &app->loop, app->nl, &adcfg, &app->admin))) {
            LOG_ERROR("main", "--admin: %s", strerror(-rc));
            return -1;
        }
    }
    if (c->dev_login)
        LOG_WARN("main", "development login is ON: anyone can get a token at /api/dev/token");
    return 0;
}

/* SIGHUP: the certificate and key are read again; open connections keep theirs. */
static void on_sighup(uv_signal_t *sig, int signum) {
    app_t *app = sig->data;
    if (!app->tls) {
        LOG_INFO("main", "SIGHUP: nothing to reload (no --tls-cert)");
        return;
    }
    if (net_tls_reload(app->tls))
        LOG_ERROR("main", "SIGHUP: the certificate was not reloaded; the previous one stays");
    else
        LOG_INFO("main", "SIGHUP: certificate %s reloaded", app->cfg.tls_cert);
}

/* SIGINT and SIGTERM start the drain (on_signal); SIGHUP reloads the certificate. */
static int watch_signals(app_t *app) {
    int rc;
    app->sigint.data = app->sigterm.data = app->sighup.data = app;
    app->drain_timer.data = app->drain_step.data = app;
    if ((rc = uv_timer_init(&app->loop, &app->drain_timer)) ||
        (rc = uv_timer_init(&app->loop, &app->drain_step)) ||
        (rc = uv_signal_init(&app->loop, &app->sigint)) ||
        (rc = uv_signal_init(&app->loop, &app->sigterm)) ||
        (rc = uv_signal_init(&app->loop, &app->sighup)) ||
        (rc = uv_signal_start(&app->sigint, app_on_signal, SIGINT)) ||
        (rc = uv_signal_start(&app->sigterm, app_on_signal, SIGTERM)) ||
        (rc = uv_signal_start(&app->sighup, on_sighup, SIGHUP))) {
        LOG_ERROR("main", "cannot watch SIGINT/SIGTERM/SIGHUP: %s", uv_strerror(rc));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    static app_t app;
    /* A peer that closes while we write must cost its connection an EPIPE, not the
     * process its life: SIGPIPE's default action is to exit, and libuv does not ignore it. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        LOG_ERROR("main", "cannot ignore SIGPIPE: %s", strerror(errno));
        return 1;
    }
    if (config_parse(argc, argv, &app.cfg))
        return 2;
    if (log_set_format(app.cfg.log_format)) {
        fprintf(stderr, "parley: --log-format must be text or json, not '%s'\n",
                app.cfg.log_format);
        return 2;
    }
    if (log_level_parse(app.cfg.log_level, &log_threshold)) {
        fprintf(stderr, "parley: bad log level '%s'\n", app.cfg.log_level);
        return 2;
    }
    if (strcmp(app.cfg.store, "memory") != 0 && strcmp(app.cfg.store, "sqlite") != 0 &&
        strcmp(app.cfg.store, "redis") != 0) {
        fprintf(stderr, "parley: --store must be sqlite, memory or redis, not '%s'\n",
                app.cfg.store);
        return 2;
    }
    if (strcmp(app.cfg.parser, "json") != 0 && strcmp(app.cfg.parser, "msgpack") != 0) {
        fprintf(stderr, "parley: --parser must be json or msgpack, not '%s'\n", app.cfg.parser);
        return 2;
    }
    parley_redis_mode_t mode;
    if (parley_redis_mode_parse(app.cfg.redis_mode, &mode)) {
        fprintf(stderr, "parley: --redis-mode must be classic, sharded or sharded-static\n");
        return 2;
    }
    const char *name = app.cfg.node_name;
    if (name && (strlen(name) < 1 || strlen(name) > EIO_SID_SUFFIX_MAX ||
                 strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") !=
                     strlen(name))) {
        fprintf(stderr, "parley: --node-name must be 1 to %d letters or digits\n",
                EIO_SID_SUFFIX_MAX);
        return 2;
    }
    if (app.cfg.redis_cluster && (mode == PARLEY_REDIS_CLASSIC || !app.cfg.chat_redis_url)) {
        /* The chat's scripts span a room's keys and every node's presence: one Redis. */
        fprintf(stderr, "parley: --redis-cluster needs --redis-mode sharded (or "
                        "sharded-static) and --chat-redis-url (a Redis that is not a cluster, "
                        "for the chat's shared state)\n");
        return 2;
    }
    if (strcmp(app.cfg.store, "redis") == 0 && !app.cfg.redis_url) {
        fprintf(stderr, "parley: --store redis needs --redis-url\n");
        return 2;
    }
    if (app.cfg.redis_url && strcmp(app.cfg.workers, "1") != 0 &&
        strcmp(app.cfg.store, "sqlite") == 0) {
        /* With Redis each worker is a node, and nodes share no SQLite file. */
        fprintf(stderr, "parley: --workers with --redis-url needs --store redis (or memory)\n");
        return 2;
    }
    if (!app.cfg.tls_cert != !app.cfg.tls_key) {
        fprintf(stderr, "parley: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (app.cfg.tls_cert && worker_count(app.cfg.workers) > 1) {
        /* A connection's TLS state cannot follow a request to the worker of its session. */
        fprintf(stderr, "parley: --tls-cert needs --workers 1: terminate TLS in front of the "
                        "workers (docs/OPERATIONS.md, TLS)\n");
        return 2;
    }
    if (app.cfg.admin && !app.cfg.admin_no_auth &&
        (!app.cfg.admin_username || !app.cfg.admin_password_hash)) {
        fprintf(stderr, "parley: --admin needs --admin-username and --admin-password-hash "
                        "(or --admin-no-auth)\n");
        return 2;
    }
    if (!app.cfg.admin_username != !app.cfg.admin_password_hash) {
        fprintf(stderr, "parley: --admin-username and --admin-password-hash go together\n");
        return 2;
    }
    if (app.cfg.admin_password_hash && chat_admin_hash_valid(app.cfg.admin_password_hash)) {
        fprintf(stderr, "parley: --admin-password-hash is not a bcrypt hash ($2a$, $2b$ or "
                        "$2y$, 60 characters)\n");
        return 2;
    }
    if (app.cfg.notify_url && (!app.cfg.notify_secret || !*app.cfg.notify_secret)) {
        fprintf(stderr, "parley: --notify-url needs --notify-secret (or PARLEY_NOTIFY_SECRET): "
                        "the receiver checks the requests' signature with it\n");
        return 2;
    }
    if (app.cfg.notify_url && !chat_notify_url_ok(app.cfg.notify_url)) {
        fprintf(stderr, "parley: --notify-url must be an http:// or https:// URL\n");
        return 2;
    }
    if (!app.cfg.reuse_port && strcmp(app.cfg.workers, "1") != 0) {
        fprintf(stderr, "parley: --workers shares the port between the workers: it needs "
                        "--reuse-port\n");
        return 2;
    }
    int done = start_workers(&app, argc, argv);
    if (done >= 0)
        return done;
    int rc = uv_loop_init(&app.loop);
    if (rc) {
        LOG_ERROR("main", "cannot make the event loop: %s", uv_strerror(rc));
        return 1;
    }
    if (!(app.nl = net_loop_new(&app.loop))) {
        LOG_ERROR("main", "cannot make the network loop: out of memory");
        return 1;
    }
    if (app.cfg.tls_cert && net_tls_new(app.cfg.tls_cert, app.cfg.tls_key, &app.tls)) {
        LOG_ERROR("main", "--tls-cert %s / --tls-key %s: unusable (see above)", app.cfg.tls_cert,
                  app.cfg.tls_key);
        return 1;
    }
    if (setup_auth(&app) ||
        split_list(app.cfg.cors_origins, "cors-origins", &app.origins, &app.norigins) ||
        split_list(app.cfg.trusted_proxies, "trusted-proxies", &app.proxies, &app.nproxies) ||
        start(&app) || watch_signals(&app))
        return 1;
    /* Scripts and tests wait for this line on stdout (with workers, the supervisor
     * writes it once all of them serve). */
    if (!app.worker && (printf("listening %s:%d\n", app.cfg.host, http_server_port(app.http)) < 0 ||
                        fflush(stdout)))
        LOG_WARN("main", "cannot write the listening line to stdout");
    LOG_INFO("main", "serving the chat at %s://%s:%d/", app.tls ? "https" : "http", app.cfg.host,
             http_server_port(app.http));
    uv_run(&app.loop, UV_RUN_DEFAULT);
    http_access_log_close(app.access_log); /* NULL: none */
    /* What the drain left open, unreferenced so as not to hold the loop. */
    uv_close((uv_handle_t *)&app.sigint, NULL);
    uv_close((uv_handle_t *)&app.sigterm, NULL);
    uv_close((uv_handle_t *)&app.sighup, NULL);
    uv_close((uv_handle_t *)&app.drain_timer, NULL);
    uv_close((uv_handle_t *)&app.drain_step, NULL);
    uv_run(&app.loop, UV_RUN_DEFAULT);
    http_static_free(app.web);
    http_static_free(app.client);
    if (app.admin_ui)
        http_static_free(app.admin_ui);
    chat_auth_free(app.auth);
    net_tls_free(app.tls);
    free_list(app.origins, app.norigins);
    free_list(app.proxies, app.nproxies);
    net_loop_free(app.nl);
    return uv_loop_close(&app.loop) == 0 ? app.status : 3;
}
