/* main.c — the parley server: configuration, start-up and shutdown of the chat service.
 *
 * Every option is a command-line flag and a PARLEY_* environment variable (the flag
 * wins); the table below is the single list of them, and `--help` prints it. Start-up
 * wires the layers together: net loop → HTTP server → Socket.IO server → store → chat
 * service, plus the HTTP routes of this program (the web page, the client bundle, the
 * development token endpoint, health). SIGINT/SIGTERM close everything in reverse and
 * let the store flush before exiting. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "chat/api.h"
#include "chat/auth.h"
#include "chat/feed.h"
#include "chat/service.h"
#include "chat/store.h"
#include "http/server.h"
#include "http/static.h"
#include "parley/sio.h"
#include "util/log.h"
#include "util/rand.h"
#include "ws/conn.h"

#ifndef PARLEY_SOURCE_DIR
#define PARLEY_SOURCE_DIR "."
#endif

typedef struct {
    const char *host, *jwt_secret, *jwt_alg, *jwt_public_key, *api_key, *data_dir, *store;
    const char *cors_origins, *log_level, *web_root, *client_dir, *room_claim;
    long port, max_text, rate_burst, rate_per_sec, presence_limit, max_body, sse_heartbeat;
    bool dev_login, recovery;
} config_t;

enum opt_type { OPT_STR, OPT_LONG, OPT_BOOL };

typedef struct {
    const char *flag, *env, *help;
    enum opt_type type;
    size_t offset;
} option_t;

#define O(field) offsetof(config_t, field)
static const option_t options[] = {
    {"port", "PARLEY_PORT", "TCP port (3000)", OPT_LONG, O(port)},
    {"host", "PARLEY_HOST", "listen address (127.0.0.1)", OPT_STR, O(host)},
    {"jwt-secret", "PARLEY_JWT_SECRET", "HS256 secret (random per start)", OPT_STR, O(jwt_secret)},
    {"jwt-alg", "PARLEY_JWT_ALG", "HS256, RS256 or ES256 (HS256)", OPT_STR, O(jwt_alg)},
    {"jwt-public-key", "PARLEY_JWT_PUBLIC_KEY", "PEM public key file for RS256/ES256", OPT_STR,
     O(jwt_public_key)},
    {"api-key", "PARLEY_API_KEY", "key for the HTTP API (none)", OPT_STR, O(api_key)},
    {"max-body", "PARLEY_MAX_BODY", "HTTP API request body bytes (65536)", OPT_LONG, O(max_body)},
    {"sse-heartbeat", "PARLEY_SSE_HEARTBEAT", "seconds between SSE heartbeat comments (25)",
     OPT_LONG, O(sse_heartbeat)},
    {"room-claim", "PARLEY_ROOM_CLAIM", "JWT claim listing the rooms a token may use (none)",
     OPT_STR, O(room_claim)},
    {"data-dir", "PARLEY_DATA_DIR", "where parley.db lives (./data)", OPT_STR, O(data_dir)},
    {"store", "PARLEY_STORE", "sqlite or memory (sqlite)", OPT_STR, O(store)},
    {"cors-origins", "PARLEY_CORS_ORIGINS", "comma-separated allowed origins, * for any", OPT_STR,
     O(cors_origins)},
    {"log-level", "PARLEY_LOG_LEVEL", "debug, info, warn or error (info)", OPT_STR, O(log_level)},
    {"dev-login", "PARLEY_DEV_LOGIN", "enable POST /api/dev/token (off)", OPT_BOOL, O(dev_login)},
    {"max-text", "PARLEY_MAX_TEXT", "code points per message (4000)", OPT_LONG, O(max_text)},
    {"rate-burst", "PARLEY_RATE_BURST", "messages per connection in a burst (5)", OPT_LONG,
     O(rate_burst)},
    {"rate-per-sec", "PARLEY_RATE_PER_SEC", "sustained messages per second (5)", OPT_LONG,
     O(rate_per_sec)},
    {"presence-limit", "PARLEY_PRESENCE_LIMIT",
     "members above which joins/leaves are not announced (1000)", OPT_LONG, O(presence_limit)},
    {"recovery", "PARLEY_RECOVERY", "connection state recovery, 1 or 0 (1)", OPT_BOOL, O(recovery)},
    {"web-root", "PARLEY_WEB_ROOT", "directory of the web page", OPT_STR, O(web_root)},
    {"client-dir", "PARLEY_CLIENT_DIR", "directory of socket.io-client's dist files", OPT_STR,
     O(client_dir)},
};

static void usage(FILE *out) {
    fprintf(out, "usage: parley [options]\n\nEvery option is also an environment variable; "
                 "flags win.\n\n");
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        const option_t *o = &options[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s%s", o->flag,
                 o->type == OPT_BOOL ? "[=0|1]" : (o->type == OPT_LONG ? " N" : " VALUE"));
        fprintf(out, "  %-26s %-24s %s\n", flag, o->env, o->help);
    }
    fprintf(out, "  %-26s %-24s %s\n", "--no-recovery", "", "same as --recovery=0");
    fprintf(out, "  %-26s %-24s %s\n", "--help", "", "this text");
}

static int set_option(config_t *cfg, const option_t *o, const char *value) {
    void *field = (char *)cfg + o->offset;
    char *end;
    switch (o->type) {
    case OPT_STR:
        *(const char **)field = value;
        return 0;
    case OPT_LONG:
        errno = 0;
        *(long *)field = strtol(value, &end, 10);
        return errno || *end || end == value ? -1 : 0;
    case OPT_BOOL:
        *(bool *)field = !value || strcmp(value, "1") == 0 || strcmp(value, "true") == 0 ||
                         strcmp(value, "yes") == 0 || strcmp(value, "on") == 0;
        return 0;
    }
    return -1;
}

static int parse_config(int argc, char **argv, config_t *cfg) {
    *cfg = (config_t){
        .host = "127.0.0.1",
        .port = 3000,
        .jwt_alg = "HS256",
        .data_dir = "./data",
        .store = "sqlite",
        .log_level = "info",
        .max_text = 4000,
        .rate_burst = 5,
        .rate_per_sec = 5,
        .presence_limit = 1000,
        .max_body = 65536,
        .sse_heartbeat = 25,
        .recovery = true,
        .web_root = PARLEY_SOURCE_DIR "/web",
        .client_dir = PARLEY_SOURCE_DIR "/assets/node_modules/socket.io-client/dist",
    };
    size_t n = sizeof options / sizeof options[0];
    for (size_t i = 0; i < n; i++) {
        const char *v = getenv(options[i].env);
        if (v && set_option(cfg, &options[i], v)) {
            fprintf(stderr, "parley: bad value for %s: %s\n", options[i].env, v);
            return -1;
        }
    }
    struct option long_opts[sizeof options / sizeof options[0] + 3];
    for (size_t i = 0; i < n; i++)
        long_opts[i] = (struct option){
            options[i].flag, options[i].type == OPT_BOOL ? optional_argument : required_argument,
            NULL, (int)i};
    long_opts[n] = (struct option){"help", no_argument, NULL, 'h'};
    long_opts[n + 1] = (struct option){"no-recovery", no_argument, NULL, 'R'};
    long_opts[n + 2] = (struct option){0};
    int o;
    while ((o = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (o == 'h') {
            usage(stdout);
            exit(0);
        }
        if (o == 'R') {
            cfg->recovery = false;
            continue;
        }
        if (o < 0 || (size_t)o >= n || set_option(cfg, &options[o], optarg)) {
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* ---- the application ---- */

typedef struct {
    config_t cfg;
    uv_loop_t loop;
    net_loop_t *nl;
    http_server_t *http;
    sio_server_t *io;
    chat_store_t *store;
    chat_auth_t *auth;
    chat_service_t *chat;
    chat_feed_t *feed;
    chat_api_t *api;
    http_static_t *web, *client;
    uv_signal_t sigint, sigterm;
    char **origins;
    size_t norigins;
    char secret[64];
    bool stopping;
} app_t;

static long now_s(void) {
    return (long)time(NULL);
}

static void respond_json(http_conn_t *hc, int status, json_t *body) {
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (text)
        http_respond(hc, status, "application/json", NULL, text, strlen(text));
    else
        http_respond_error(hc, 500, "out of memory");
    free(text);
    json_decref(body);
}

static void respond_error(http_conn_t *hc, int status, const char *error, const char *message) {
    respond_json(hc, status, json_pack("{s:s,s:s}", "error", error, "message", message));
}

/* POST /api/dev/token {name} → {token, userId}: development logins (--dev-login). */
static bool dev_token_route(http_conn_t *hc, http_req_t *req, void *arg) {
    app_t *app = arg;
    if (!slice_eq(req->head.path, "/api/dev/token"))
        return false;
    if (!app->cfg.dev_login) {
        respond_error(hc, 404, "not_found", "development login is disabled");
        return true;
    }
    if (!slice_eq(req->head.method, "POST")) {
        respond_error(hc, 405, "method_not_allowed", "use POST");
        return true;
    }
    json_t *body = json_loadb(req->body.base, req->body.len, 0, NULL);
    const char *name = json_string_value(json_object_get(body, "name"));
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > CHAT_USERNAME_MAX) {
        json_decref(body);
        respond_error(hc, 400, "invalid_payload", "name: a string of 1 to 128 bytes");
        return true;
    }
    char id[RAND_ID_SIZE], user_id[RAND_ID_SIZE + 2];
    if (rand_id(id)) {
        json_decref(body);
        respond_error(hc, 500, "internal_error", "no randomness");
        return true;
    }
    snprintf(user_id, sizeof user_id, "u-%.10s", id);
    char *token = chat_auth_sign(app->auth, user_id, name, now_s(), 7 * 24 * 3600);
    json_decref(body);
    if (!token) {
        respond_error(hc, 500, "internal_error", "cannot sign tokens with this algorithm");
        return true;
    }
    respond_json(hc, 200, json_pack("{s:s,s:s}", "token", token, "userId", user_id));
    free(token);
    return true;
}

static bool health_route(http_conn_t *hc, http_req_t *req, void *arg) {
    app_t *app = arg;
    if (!slice_eq(req->head.path, "/healthz"))
        return false;
    sio_stats_t st;
    sio_server_stats(app->io, &st);
    size_t streams, polls;
    chat_feed_counts(app->feed, &streams, &polls);
    respond_json(hc, app->stopping ? 503 : 200,
                 json_pack("{s:s,s:I,s:I,s:I,s:I}", "status", app->stopping ? "draining" : "ok",
                           "clients", (json_int_t)st.clients, "sockets", (json_int_t)st.sockets,
                           "sseStreams", (json_int_t)streams, "longPolls", (json_int_t)polls));
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
    return http_static_serve(app->client, hc, req, slice_make(p.base + 10, p.len - 10));
}

static bool web_route(http_conn_t *hc, http_req_t *req, void *arg) {
    app_t *app = arg;
    return app->web && http_static_serve(app->web, hc, req, req->head.path);
}

static void store_closed(void *arg) {
    app_t *app = arg;
    chat_api_free(app->api);
    chat_service_free(app->chat);
    net_loop_close(app->nl);
}

static void on_signal(uv_signal_t *sig, int signum) {
    app_t *app = sig->data;
    if (app->stopping)
        return;
    app->stopping = true;
    LOG_INFO("main", "signal %d: shutting down", signum);
    chat_service_stop(app->chat);
    chat_feed_close(app->feed);
    sio_server_close(app->io);
    http_server_close(app->http);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    chat_store_close(app->store, store_closed, app);
}

static char *read_text_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(65536);
    *len = buf ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (buf)
        buf[*len] = '\0';
    return buf;
}

static int setup_auth(app_t *app) {
    const config_t *c = &app->cfg;
    if (strcmp(c->jwt_alg, "HS256") == 0) {
        const char *secret = c->jwt_secret;
        if (!secret) {
            /* No secret configured: tokens live as long as this process. */
            if (rand_id(app->secret))
                return -1;
            secret = app->secret;
            LOG_WARN("main", "no --jwt-secret: using a random one; tokens will not survive "
                             "a restart");
        }
        app->auth = chat_auth_new("HS256", secret, strlen(secret));
    } else {
        size_t len = 0;
        char *pem = c->jwt_public_key ? read_text_file(c->jwt_public_key, &len) : NULL;
        if (!pem) {
            LOG_ERROR("main", "--jwt-alg %s needs --jwt-public-key FILE", c->jwt_alg);
            return -1;
        }
        app->auth = chat_auth_new(c->jwt_alg, pem, len);
        free(pem);
    }
    return app->auth && chat_auth_set_room_claim(app->auth, c->room_claim) == 0 ? 0 : -1;
}

static int split_origins(app_t *app) {
    if (!app->cfg.cors_origins || !*app->cfg.cors_origins)
        return 0;
    char *copy = strdup(app->cfg.cors_origins);
    if (!copy)
        return -1;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        char **grown = realloc(app->origins, (app->norigins + 1) * sizeof *grown);
        if (!grown || !(grown[app->norigins] = strdup(tok))) {
            free(grown ? grown : app->origins);
            free(copy);
            return -1;
        }
        app->origins = grown;
        app->norigins++;
    }
    free(copy);
    return 0;
}

static int start(app_t *app) {
    const config_t *c = &app->cfg;
    chat_store_config_t scfg;
    chat_store_config_defaults(&scfg);
    int rc;
    if (strcmp(c->store, "memory") == 0) {
        rc = chat_store_open_memory(&app->loop, &scfg, &app->store);
    } else if (strcmp(c->store, "sqlite") == 0) {
        if (mkdir(c->data_dir, 0700) && errno != EEXIST) {
            LOG_ERROR("main", "cannot create %s: %s", c->data_dir, strerror(errno));
            return -1;
        }
        rc = chat_store_open_sqlite(&app->loop, c->data_dir, &scfg, &app->store);
    } else {
        LOG_ERROR("main", "--store must be sqlite or memory, not '%s'", c->store);
        return -1;
    }
    if (rc)
        return -1;
    http_server_config_t hcfg;
    http_server_config_defaults(&hcfg);
    hcfg.host = c->host;
    hcfg.port = (int)c->port;
    hcfg.ext_size = WS_CONN_EXT_SIZE;
    if (c->max_body > 0 && (size_t)c->max_body > hcfg.max_body_size)
        hcfg.max_body_size = (size_t)c->max_body; /* the API answers 413 above its own limit */
    if ((rc = http_server_new(app->nl, &hcfg, &app->http))) {
        LOG_ERROR("main", "cannot listen on %s:%ld: %s", c->host, c->port, uv_strerror(rc));
        return -1;
    }
    sio_config_t iocfg;
    sio_config_defaults(&iocfg);
    iocfg.recovery = c->recovery;
    iocfg.lean_handshake = true; /* the chat reads only auth.token, in its middleware */
    /* Recovered connections show their token again: the middleware checks it and makes
     * the connection's state (nothing of the user is kept in socket.data). */
    iocfg.recovery_skip_middlewares = false;
    iocfg.cors_origins = (const char *const *)app->origins;
    iocfg.cors_origin_count = app->norigins;
    chat_config_t ccfg;
    chat_config_defaults(&ccfg);
    ccfg.max_text = (size_t)c->max_text;
    ccfg.rate_burst = (double)c->rate_burst;
    ccfg.rate_per_sec = (double)c->rate_per_sec;
    ccfg.presence_limit = (size_t)c->presence_limit;
    chat_feed_config_t fcfg;
    chat_feed_config_defaults(&fcfg);
    fcfg.heartbeat_ms = (uint32_t)(c->sse_heartbeat > 0 ? c->sse_heartbeat * 1000 : 25000);
    chat_api_config_t acfg;
    chat_api_config_defaults(&acfg);
    acfg.api_key = c->api_key;
    acfg.max_body = c->max_body > 0 ? (size_t)c->max_body : 65536;
    acfg.cors_origins = (const char *const *)app->origins;
    acfg.cors_origin_count = app->norigins;
    app->web = http_static_new(c->web_root);
    app->client = http_static_new(c->client_dir);
    if (sio_server_new(app->http, &iocfg, &app->io) ||
        chat_service_new(app->io, app->store, app->auth, &ccfg, &app->chat) || !app->web ||
        !app->client || chat_feed_new(&app->loop, app->chat, app->store, &fcfg, &app->feed) ||
        http_server_route(app->http, "/api/dev/token", dev_token_route, app) ||
        chat_api_new(app->http, app->io, app->chat, app->auth, app->feed, &acfg, &app->api) ||
        http_server_route(app->http, "/healthz", health_route, app) ||
        http_server_route(app->http, "/socket.io/socket.io", client_route, app) ||
        http_server_route(app->http, "", web_route, app))
        return -1;
    if (c->dev_login)
        LOG_WARN("main", "development login is ON: anyone can get a token at /api/dev/token");
    return 0;
}

int main(int argc, char **argv) {
    static app_t app;
    if (parse_config(argc, argv, &app.cfg))
        return 2;
    if (log_level_parse(app.cfg.log_level, &log_threshold)) {
        fprintf(stderr, "parley: bad log level '%s'\n", app.cfg.log_level);
        return 2;
    }
    if (uv_loop_init(&app.loop) || !(app.nl = net_loop_new(&app.loop)) || setup_auth(&app) ||
        split_origins(&app) || start(&app))
        return 1;
    uv_signal_init(&app.loop, &app.sigint);
    uv_signal_init(&app.loop, &app.sigterm);
    app.sigint.data = app.sigterm.data = &app;
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    printf("listening %s:%d\n", app.cfg.host, http_server_port(app.http));
    fflush(stdout);
    LOG_INFO("main", "serving the chat at http://%s:%d/", app.cfg.host, http_server_port(app.http));
    uv_run(&app.loop, UV_RUN_DEFAULT);
    http_static_free(app.web);
    http_static_free(app.client);
    chat_auth_free(app.auth);
    for (size_t i = 0; i < app.norigins; i++)
        free(app.origins[i]);
    free(app.origins);
    net_loop_free(app.nl);
    return uv_loop_close(&app.loop) == 0 ? 0 : 3;
}
