/* main.c — the parley server: configuration, start-up and shutdown of the chat service.
 *
 * Every option is a command-line flag and a PARLEY_* environment variable (the flag
 * wins); the table below is the single list of them, and `--help` prints it. Start-up
 * wires the layers together: net loop → HTTP server → Socket.IO server → store → chat
 * service, plus the HTTP routes of this program (the web page, the client bundle, the
 * development token endpoint, health). SIGINT/SIGTERM close everything in reverse and
 * let the store flush before exiting.
 *
 * Defaults: the modules' own (their *_config_defaults) wherever an option feeds a module;
 * only what is this program's choice is written here (config_defaults), and `--help`
 * prints the defaults from the same values. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "chat/admin.h"
#include "chat/api.h"
#include "chat/auth.h"
#include "chat/feed.h"
#include "chat/metrics.h"
#include "chat/service.h"
#include "chat/store.h"
#include "chat/store_remote.h"
#include "http/access.h"
#include "http/server.h"
#include "http/static.h"
#include "parley/loop.h"
#include "parley/redis.h"
#include "parley/sio.h"
#include "parley/tls.h"
#include "util/log.h"
#include "util/rand.h"
#include "util/time.h"

#ifndef PARLEY_SOURCE_DIR
#define PARLEY_SOURCE_DIR "."
#endif
/* Where `make install` puts the web page (web/) and the client bundle (client/). */
#ifndef PARLEY_DATA_DIR_INSTALLED
#define PARLEY_DATA_DIR_INSTALLED "/usr/local/share/parley"
#endif

#define DEV_TOKEN_TTL_S (7 * 24 * 3600) /* development tokens last a week */

typedef struct {
    const char *host, *jwt_secret, *jwt_alg, *jwt_public_key, *api_key, *data_dir, *store;
    const char *cors_origins, *log_level, *log_format, *web_root, *client_dir, *room_claim,
        *trusted_proxies;
    const char *workers, *redis_url, *redis_key, *redis_mode, *chat_redis_url, *node_name;
    const char *config_file, *tls_cert, *tls_key, *access_log;
    const char *parser;
    long port, max_text, rate_burst, rate_per_sec, presence_limit, max_body, sse_heartbeat;
    long event_burst, event_rate, flood_limit, max_rooms, output_limit, send_timeout;
    long max_per_ip, handshake_rate, handshake_burst;
    bool dev_login, recovery, redis_cluster;
    const char *admin_username, *admin_password_hash, *admin_ui, *admin_server_id;
    bool admin, admin_no_auth, admin_readonly, admin_production;
    bool allow_eio3, polling_compression;
} config_t;

enum opt_type { OPT_STR, OPT_LONG, OPT_BOOL };

typedef struct {
    const char *flag, *env, *help;
    enum opt_type type;
    size_t offset;
    const char *unset; /* --help: what an unset string option means, or NULL */
    long min, max;     /* OPT_LONG: the values taken, when max > min (else any) */
} option_t;

#define O(field) offsetof(config_t, field)
static const option_t options[] = {
    {"port", "PARLEY_PORT", "TCP port", OPT_LONG, O(port), NULL, 0, 65535},
    {"host", "PARLEY_HOST", "listen address", OPT_STR, O(host), NULL, 0, 0},
    {"jwt-secret", "PARLEY_JWT_SECRET", "HS256 secret", OPT_STR, O(jwt_secret), "random per start",
     0, 0},
    {"jwt-alg", "PARLEY_JWT_ALG", "HS256, RS256 or ES256", OPT_STR, O(jwt_alg), NULL, 0, 0},
    {"jwt-public-key", "PARLEY_JWT_PUBLIC_KEY", "PEM public key file for RS256/ES256", OPT_STR,
     O(jwt_public_key), NULL, 0, 0},
    {"api-key", "PARLEY_API_KEY", "key for the HTTP API", OPT_STR, O(api_key), "none", 0, 0},
    {"max-body", "PARLEY_MAX_BODY", "HTTP API request body bytes", OPT_LONG, O(max_body), NULL, 0,
     0},
    {"sse-heartbeat", "PARLEY_SSE_HEARTBEAT", "seconds between SSE heartbeat comments", OPT_LONG,
     O(sse_heartbeat), NULL, 0, 0},
    {"room-claim", "PARLEY_ROOM_CLAIM", "JWT claim listing the rooms a token may use", OPT_STR,
     O(room_claim), "none", 0, 0},
    {"data-dir", "PARLEY_DATA_DIR", "where parley.db lives", OPT_STR, O(data_dir), NULL, 0, 0},
    {"store", "PARLEY_STORE",
     "sqlite, memory, or redis (history shared by every node on --redis-url)", OPT_STR, O(store),
     NULL, 0, 0},
    {"cors-origins", "PARLEY_CORS_ORIGINS", "comma-separated allowed origins, * for any", OPT_STR,
     O(cors_origins), "none", 0, 0},
    {"config", "PARLEY_CONFIG",
     "a JSON file of options: {\"flag-name\": value, ...} (environment and flags win)", OPT_STR,
     O(config_file), "none", 0, 0},
    {"log-level", "PARLEY_LOG_LEVEL", "debug, info, warn or error", OPT_STR, O(log_level), NULL, 0,
     0},
    {"log-format", "PARLEY_LOG_FORMAT",
     "text, or json (one object per line: time, level, module, role, msg)", OPT_STR, O(log_format),
     NULL, 0, 0},
    {"dev-login", "PARLEY_DEV_LOGIN", "enable POST /api/dev/token", OPT_BOOL, O(dev_login), NULL, 0,
     0},
    {"max-text", "PARLEY_MAX_TEXT", "code points per message", OPT_LONG, O(max_text), NULL, 0, 0},
    {"rate-burst", "PARLEY_RATE_BURST", "messages per connection in a burst", OPT_LONG,
     O(rate_burst), NULL, 0, 0},
    {"rate-per-sec", "PARLEY_RATE_PER_SEC", "sustained messages per second", OPT_LONG,
     O(rate_per_sec), NULL, 0, 0},
    {"presence-limit", "PARLEY_PRESENCE_LIMIT",
     "members above which joins/leaves are not announced", OPT_LONG, O(presence_limit), NULL, 0, 0},
    {"event-burst", "PARLEY_EVENT_BURST", "events per connection in a burst", OPT_LONG,
     O(event_burst), NULL, 1, 1000000000},
    {"event-rate", "PARLEY_EVENT_RATE", "sustained events per connection per second", OPT_LONG,
     O(event_rate), NULL, 1, 1000000000},
    {"flood-limit", "PARLEY_FLOOD_LIMIT",
     "refused events within 10 s that disconnect a connection (0: never)", OPT_LONG, O(flood_limit),
     NULL, 0, 1000000000},
    {"max-rooms-per-socket", "PARLEY_MAX_ROOMS_PER_SOCKET", "chat rooms one connection may join",
     OPT_LONG, O(max_rooms), NULL, 1, 1000000000},
    {"output-limit", "PARLEY_OUTPUT_LIMIT",
     "bytes queued for a connection before its input is no longer read", OPT_LONG, O(output_limit),
     NULL, 1, LONG_MAX},
    {"send-timeout", "PARLEY_SEND_TIMEOUT",
     "ms queued output may wait without progress before the connection is closed", OPT_LONG,
     O(send_timeout), NULL, 1, UINT32_MAX < LONG_MAX ? (long)UINT32_MAX : LONG_MAX},
    {"max-connections-per-ip", "PARLEY_MAX_CONNECTIONS_PER_IP",
     "open sessions per client address, 503 above (0: no limit)", OPT_LONG, O(max_per_ip), NULL, 0,
     1000000000},
    {"handshake-rate", "PARLEY_HANDSHAKE_RATE",
     "handshakes per second per client address, 429 above (0: no limit)", OPT_LONG,
     O(handshake_rate), NULL, 0, 1000000000},
    {"handshake-burst", "PARLEY_HANDSHAKE_BURST", "handshakes per address in a burst (0: the rate)",
     OPT_LONG, O(handshake_burst), NULL, 0, 1000000000},
    {"trusted-proxies", "PARLEY_TRUSTED_PROXIES",
     "comma-separated proxy addresses whose X-Forwarded-For is believed", OPT_STR,
     O(trusted_proxies), "none", 0, 0},
    {"workers", "PARLEY_WORKERS",
     "worker processes on the port: a number, or auto for one per core (1: one process)", OPT_STR,
     O(workers), NULL, 0, 0},
    {"redis-url", "PARLEY_REDIS_URL",
     "join the socket.io cluster on this Redis (redis://[[user]:pass@]host[:port][/db] or a "
     "unix socket path), next to Node.js nodes with @socket.io/redis-adapter",
     OPT_STR, O(redis_url), "one node alone", 0, 0},
    {"redis-key", "PARLEY_REDIS_KEY", "the Redis channels' prefix (the adapter's key option)",
     OPT_STR, O(redis_key), NULL, 0, 0},
    {"redis-mode", "PARLEY_REDIS_MODE",
     "classic (createAdapter), sharded (createShardedAdapter: a channel per room, Redis 7) or "
     "sharded-static (one channel per namespace); the same on every node",
     OPT_STR, O(redis_mode), NULL, 0, 0},
    {"node-name", "PARLEY_NODE_NAME",
     "1 to 4 letters or digits ending this node's session ids, for a balancer that routes by "
     "sid (docs/deploy/nginx-sid.conf)",
     OPT_STR, O(node_name), "none", 0, 0},
    {"redis-cluster", "PARLEY_REDIS_CLUSTER",
     "--redis-url is a master of a Redis Cluster (sharded modes; needs --chat-redis-url)", OPT_BOOL,
     O(redis_cluster), NULL, 0, 0},
    {"chat-redis-url", "PARLEY_CHAT_REDIS_URL",
     "the Redis of the chat's shared state (--store redis, presence across nodes) when it is "
     "not --redis-url's",
     OPT_STR, O(chat_redis_url), "--redis-url", 0, 0},
    {"recovery", "PARLEY_RECOVERY", "connection state recovery", OPT_BOOL, O(recovery), NULL, 0, 0},
    {"web-root", "PARLEY_WEB_ROOT", "directory of the web page", OPT_STR, O(web_root), NULL, 0, 0},
    {"client-dir", "PARLEY_CLIENT_DIR", "directory of socket.io-client's dist files", OPT_STR,
     O(client_dir), NULL, 0, 0},
    {"tls-cert", "PARLEY_TLS_CERT",
     "PEM certificate chain: serve https and wss (with --tls-key; SIGHUP reloads both)", OPT_STR,
     O(tls_cert), "plain http", 0, 0},
    {"tls-key", "PARLEY_TLS_KEY", "PEM private key of --tls-cert", OPT_STR, O(tls_key), NULL, 0, 0},
    {"access-log", "PARLEY_ACCESS_LOG",
     "a line per HTTP request to this file (- for stdout), in --log-format; never the query "
     "string",
     OPT_STR, O(access_log), "none", 0, 0},
    {"admin", "PARLEY_ADMIN",
     "the /admin namespace of @socket.io/admin-ui (needs --admin-username and "
     "--admin-password-hash, or --admin-no-auth)",
     OPT_BOOL, O(admin), NULL, 0, 0},
    {"admin-username", "PARLEY_ADMIN_USERNAME", "the admin UI's user name", OPT_STR,
     O(admin_username), "none", 0, 0},
    {"admin-password-hash", "PARLEY_ADMIN_PASSWORD_HASH",
     "bcrypt hash of the admin UI's password ($2b$..., e.g. from htpasswd -nbBC 10)", OPT_STR,
     O(admin_password_hash), "none", 0, 0},
    {"admin-no-auth", "PARLEY_ADMIN_NO_AUTH", "let --admin run without a password", OPT_BOOL,
     O(admin_no_auth), NULL, 0, 0},
    {"admin-readonly", "PARLEY_ADMIN_READONLY",
     "the admin UI may look but not emit, join, leave or disconnect", OPT_BOOL, O(admin_readonly),
     NULL, 0, 0},
    {"admin-production", "PARLEY_ADMIN_PRODUCTION",
     "the admin UI gets server stats only (no sockets, rooms or events)", OPT_BOOL,
     O(admin_production), NULL, 0, 0},
    {"admin-server-id", "PARLEY_ADMIN_SERVER_ID", "this server's name in the admin UI", OPT_STR,
     O(admin_server_id), "host name; host#pid for a worker", 0, 0},
    {"admin-ui", "PARLEY_ADMIN_UI",
     "directory of the admin UI's static build (ui/dist of @socket.io/admin-ui), served at "
     "/admin/",
     OPT_STR, O(admin_ui), "none", 0, 0},
    {"parser", "PARLEY_PARSER",
     "json, or msgpack (socket.io-msgpack-parser: every client must use it)", OPT_STR, O(parser),
     NULL, 0, 0},
    {"allow-eio3", "PARLEY_ALLOW_EIO3",
     "accept socket.io 2 clients (Engine.IO v3); they pass the token as the query parameter "
     "token",
     OPT_BOOL, O(allow_eio3), NULL, 0, 0},
    {"polling-compression", "PARLEY_POLLING_COMPRESSION",
     "gzip or deflate for long-polling responses of 1 KiB or more, as the client accepts", OPT_BOOL,
     O(polling_compression), NULL, 0, 0},
};
#define NOPTIONS (sizeof options / sizeof options[0])

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The source tree's directory when it is there (a binary run from its build tree), else
 * the installed one. */
static const char *default_dir(const char *in_source, const char *installed) {
    return is_dir(in_source) ? in_source : installed;
}

/* Every default. Options that feed a module start from that module's defaults; what is
 * set here is this program's own choice. */
static void config_defaults(config_t *cfg) {
    http_server_config_t hcfg;
    http_server_config_defaults(&hcfg);
    chat_config_t ccfg;
    chat_config_defaults(&ccfg);
    chat_api_config_t acfg;
    chat_api_config_defaults(&acfg);
    chat_feed_config_t fcfg;
    chat_feed_config_defaults(&fcfg);
    net_loop_config_t ncfg;
    net_loop_config_defaults(&ncfg);
    *cfg = (config_t){
        .host = hcfg.host,
        .port = hcfg.port,
        .jwt_alg = "HS256",
        .data_dir = "./data",
        .store = "sqlite",
        .log_level = "info",
        .log_format = "text",
        .max_text = (long)ccfg.max_text,
        .rate_burst = (long)ccfg.rate_burst,
        .rate_per_sec = (long)ccfg.rate_per_sec,
        .presence_limit = (long)ccfg.presence_limit,
        .event_burst = (long)ccfg.event_burst,
        .event_rate = (long)ccfg.event_rate,
        .flood_limit = (long)ccfg.flood_limit,
        .max_rooms = (long)ccfg.max_rooms,
        .output_limit = (long)ncfg.output_limit,
        .send_timeout = (long)ncfg.send_timeout,
        .max_body = (long)acfg.max_body,
        .sse_heartbeat = (long)(fcfg.heartbeat_ms / 1000),
        .recovery = true, /* off in socket.io and sio_config_defaults; the chat wants it */
        .workers = "1",
        .redis_key = "socket.io",
        .redis_mode = "classic",
        .parser = "json",
        .polling_compression = true, /* as engine.io's httpCompression */
        .web_root = default_dir(PARLEY_SOURCE_DIR "/web", PARLEY_DATA_DIR_INSTALLED "/web"),
        .client_dir = default_dir(PARLEY_SOURCE_DIR "/assets/node_modules/socket.io-client/dist",
                                  PARLEY_DATA_DIR_INSTALLED "/client"),
    };
}

static void usage(FILE *out) {
    config_t def;
    config_defaults(&def);
    fprintf(out, "usage: parley [options]\n\nEvery option is also an environment variable and "
                 "a key of the --config file;\nflags win over the environment, which wins over "
                 "the file. Defaults in parentheses.\n\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option_t *o = &options[i];
        const void *field = (const char *)&def + o->offset;
        char flag[64], value[512] = "";
        snprintf(flag, sizeof flag, "--%s%s", o->flag,
                 o->type == OPT_BOOL ? "[=0|1]" : (o->type == OPT_LONG ? " N" : " VALUE"));
        if (o->type == OPT_LONG) {
            snprintf(value, sizeof value, " (%ld)", *(const long *)field);
        } else if (o->type == OPT_BOOL) {
            snprintf(value, sizeof value, " (%s)", *(const bool *)field ? "on" : "off");
        } else {
            const char *v = *(const char *const *)field;
            if (v || o->unset)
                snprintf(value, sizeof value, " (%s)", v ? v : o->unset);
        }
        fprintf(out, "  %-26s %-24s %s%s\n", flag, o->env, o->help, value);
    }
    fprintf(out, "  %-26s %-24s %s\n", "--no-recovery", "", "same as --recovery=0");
    fprintf(out, "  %-26s %-24s %s\n", "--help", "", "this text");
    fprintf(out,
            "\nThe web page and the client bundle come from the source tree when it is there\n"
            "(a binary in its build tree), else from the installed copies in\n"
            "%s/web and %s/client.\n",
            PARLEY_DATA_DIR_INSTALLED, PARLEY_DATA_DIR_INSTALLED);
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
        if (o->max > o->min && (*(long *)field < o->min || *(long *)field > o->max))
            return -1;
        return errno || *end || end == value ? -1 : 0;
    case OPT_BOOL:
        *(bool *)field = !value || strcmp(value, "1") == 0 || strcmp(value, "true") == 0 ||
                         strcmp(value, "yes") == 0 || strcmp(value, "on") == 0;
        return 0;
    }
    return -1;
}

/* The --config file (or PARLEY_CONFIG's), before the environment and the flags:
 * {"flag-name": value} with a string, number or boolean as the option takes, every name
 * one of the options. Its strings stay for the life of the process (*keep). */
static int apply_file(int argc, char **argv, config_t *cfg, json_t **keep) {
    const char *path = getenv("PARLEY_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
    }
    if (!path)
        return 0;
    json_error_t err;
    json_t *file = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(file)) {
        fprintf(stderr, "parley: --config %s: %s (line %d)\n", path,
                file ? "not a JSON object" : err.text, err.line);
        json_decref(file);
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(file, key, v) {
        const option_t *o = NULL;
        for (size_t i = 0; i < NOPTIONS && !o; i++)
            if (strcmp(options[i].flag, key) == 0 && strcmp(key, "config") != 0)
                o = &options[i];
        char num[32];
        const char *text = json_string_value(v);
        if (o && o->type == OPT_LONG && json_is_integer(v)) {
            snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            text = num;
        } else if (o && o->type == OPT_BOOL && json_is_boolean(v)) {
            text = json_is_true(v) ? "1" : "0";
        }
        if (!o || !text || set_option(cfg, o, text)) {
            fprintf(stderr, "parley: --config %s: %s: %s\n", path, key,
                    o ? "a value of the wrong type or out of range" : "no such option");
            json_decref(file);
            return -1;
        }
    }
    *keep = file;
    return 0;
}

static int parse_config(int argc, char **argv, config_t *cfg) {
    config_defaults(cfg);
    static json_t *file; /* its strings are the config's */
    if (apply_file(argc, argv, cfg, &file))
        return -1;
    size_t n = NOPTIONS;
    for (size_t i = 0; i < n; i++) {
        const char *v = getenv(options[i].env);
        if (v && set_option(cfg, &options[i], v)) {
            fprintf(stderr, "parley: bad value for %s: %s\n", options[i].env, v);
            return -1;
        }
    }
    struct option long_opts[NOPTIONS + 3];
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
    chat_admin_t *admin;     /* --admin */
    http_static_t *admin_ui; /* --admin-ui */
    uv_signal_t sigint, sigterm, sighup;
    net_tls_t *tls;                /* --tls-cert: the certificate (NULL: plain http) */
    http_access_log_t *access_log; /* --access-log (NULL: none); outlives the connections */
    parley_worker_t *worker;       /* --workers N: this worker (NULL: one process) */
    parley_redis_t *redis;         /* --redis-url: this node's link to the others */
    /* With workers: the sums over every worker that /healthz and /metrics answer with. */
    struct worker_sum *health_sum, *metrics_sum;
    char **origins, **proxies;
    size_t norigins, nproxies;
    char secret[64];
    bool stopping;
} app_t;

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

/* This process's connection counts, for /healthz. */
static json_t *health_counts(app_t *app) {
    sio_stats_t st;
    sio_server_stats(app->io, &st);
    size_t streams, polls;
    chat_feed_counts(app->feed, &streams, &polls);
    return json_pack("{s:I,s:I,s:I,s:I}", "clients", (json_int_t)st.clients, "sockets",
                     (json_int_t)st.sockets, "sseStreams", (json_int_t)streams, "longPolls",
                     (json_int_t)polls);
}

/* With workers, /healthz and /metrics show the figures of all of them: each sum asks the
 * others with a serverSideEmit, and the requests that come while one is made share it
 * (one at a time: these routes answer anyone, and a sum asks every worker). */
#define HEALTH_EVENT "parley:health"
#define METRICS_EVENT "parley:metrics"
#define SUM_ASK_MS 2000

typedef struct sum_wait {
    struct sum_wait *next;
    http_conn_t *hc; /* NULL once the client left */
} sum_wait_t;

typedef struct worker_sum {
    app_t *app;
    const char *event;
    json_t *(*mine)(app_t *app);                               /* this worker's part (new) */
    int (*add)(json_t *sum, const json_t *other);              /* another worker's part, into sum */
    void (*respond)(app_t *app, http_conn_t *hc, json_t *sum); /* takes sum over */
    sum_wait_t *waiting;
    json_t *sum; /* while one is made */
} worker_sum_t;

static json_t *metrics_json(app_t *app);

static json_t *on_server_event(sio_nsp_t *nsp, const char *event, json_t *args, void *arg) {
    app_t *app = arg;
    if (strcmp(event, HEALTH_EVENT) == 0)
        return health_counts(app);
    if (strcmp(event, METRICS_EVENT) == 0)
        return metrics_json(app);
    return NULL;
}

static void health_respond(app_t *app, http_conn_t *hc, json_t *counts) {
    const char *store_why;
    int store_err = chat_store_health(app->store, &store_why);
    json_t *body = json_pack("{s:s,s:s}", "status",
                             app->stopping ? "draining"
                             : store_err   ? "degraded"
                                           : "ok",
                             "store", store_why);
    if (body && counts && json_object_update(body, counts)) {
        json_decref(body);
        body = NULL;
    }
    json_decref(counts);
    chat_api_respond_json(hc, app->stopping ? 503 : 200, NULL, body);
}

/* Health counts are integers: summed member by member. */
static int health_add(json_t *sum, const json_t *other) {
    const char *key;
    json_t *v;
    json_object_foreach(sum, key, v) {
        json_int_t more = json_integer_value(json_object_get(other, key));
        if (json_integer_set(v, json_integer_value(v) + more))
            return -EINVAL;
    }
    return 0;
}

static void sum_abort(http_conn_t *hc, void *arg) {
    ((sum_wait_t *)arg)->hc = NULL;
}

static void worker_summed(int err, json_t *responses, void *arg) {
    worker_sum_t *ws = arg;
    size_t i;
    json_t *r;
    json_array_foreach(responses, i, r) {
        if (ws->sum && ws->add(ws->sum, r))
            LOG_LIMITED(LOG_LEVEL_WARN, "main", "%s: a worker's figures not summed", ws->event);
    }
    if (err)
        LOG_LIMITED(LOG_LEVEL_WARN, "main", "%s: not every worker answered: %d", ws->event, err);
    sum_wait_t *all = ws->waiting;
    json_t *sum = ws->sum;
    ws->waiting = NULL;
    ws->sum = NULL;
    while (all) {
        sum_wait_t *w = all;
        all = w->next;
        if (w->hc)
            ws->respond(ws->app, w->hc, json_deep_copy(sum));
        free(w);
    }
    json_decref(sum);
}

/* With workers: this request waits for the sum in progress, or starts one. */
static bool worker_sum_wait(worker_sum_t *ws, http_conn_t *hc) {
    sum_wait_t *w = calloc(1, sizeof *w);
    if (!w)
        return false;
    w->hc = hc;
    http_conn_hold(hc, sum_abort, w);
    w->next = ws->waiting;
    ws->waiting = w;
    if (ws->sum)
        return true;
    if (!(ws->sum = ws->mine(ws->app))) {
        worker_summed(-ENOMEM, NULL, ws);
        return true;
    }
    int rc = sio_nsp_server_emit(sio_server_of(ws->app->io, "/"), ws->event, NULL, SUM_ASK_MS,
                                 worker_summed, ws);
    if (rc)
        worker_summed(rc, NULL, ws);
    return true;
}

static worker_sum_t *worker_sum_new(app_t *app, const char *event, json_t *(*mine)(app_t *),
                                    int (*add)(json_t *, const json_t *),
                                    void (*respond)(app_t *, http_conn_t *, json_t *)) {
    worker_sum_t *ws = calloc(1, sizeof *ws);
    if (ws)
        *ws = (worker_sum_t){app, event, mine, add, respond, NULL, NULL};
    return ws;
}

/* ---- /metrics ---- */

/* This process's samples (chat/metrics.h) as a set; NULL when out of memory. */
static prom_set_t *metrics_set(app_t *app) {
    chat_metrics_src_t src = {app->nl, app->io, app->chat, app->feed, app->redis};
    prom_set_t *set = prom_set_new();
    if (set && chat_metrics_collect(&src, set)) {
        prom_set_free(set);
        set = NULL;
    }
    return set;
}

static json_t *metrics_json(app_t *app) {
    prom_set_t *set = metrics_set(app);
    json_t *j = set ? prom_set_to_json(set) : NULL;
    prom_set_free(set);
    return j;
}

/* Another worker's samples into sum (both in prom_set_to_json's form). */
static int metrics_add(json_t *sum, const json_t *other) {
    prom_set_t *a = NULL, *b = NULL;
    int rc = prom_set_from_json(sum, &a);
    if (rc == 0)
        rc = prom_set_from_json(other, &b);
    if (rc == 0)
        rc = prom_set_merge(a, b);
    json_t *merged = rc == 0 ? prom_set_to_json(a) : NULL;
    if (rc == 0)
        rc = merged && json_object_update(sum, merged) == 0 ? 0 : -ENOMEM;
    json_decref(merged);
    prom_set_free(a);
    prom_set_free(b);
    return rc;
}

static void metrics_respond_set(http_conn_t *hc, const prom_set_t *set) {
    buf_t b = {0};
    if (!set || chat_metrics_render(set, &b)) {
        chat_api_respond_error(hc, 500, NULL, "internal_error", "out of memory");
    } else if (http_respond(hc, 200, "text/plain; version=0.0.4; charset=utf-8", NULL,
                            (const char *)b.data, b.len)) {
        LOG_WARN("main", "/metrics not sent");
    }
    buf_free(&b);
}

static void metrics_respond(app_t *app, http_conn_t *hc, json_t *sum) {
    prom_set_t *set = NULL;
    if (sum && prom_set_from_json(sum, &set))
        set = NULL;
    metrics_respond_set(hc, set);
    prom_set_free(set);
    json_decref(sum);
}

static bool probe_request_ok(http_conn_t *hc, http_req_t *req, const char *path);

/* GET or HEAD /metrics: the Prometheus text format (chat/metrics.h), of every worker
 * summed (with Redis, each worker is a node of its own and shows itself). */
static bool metrics_route(http_conn_t *hc, http_req_t *req, void *arg) {
    app_t *app = arg;
    if (!slice_eq(req->head.path, "/metrics"))
        return false;
    if (!probe_request_ok(hc, req, "/metrics"))
        return true;
    if (app->worker && !app->cfg.redis_url && worker_sum_wait(app->metrics_sum, hc))
        return true;
    prom_set_t *set = metrics_set(app);
    metrics_respond_set(hc, set);
    prom_set_free(set);
    return true;
}

/* Probes (/healthz, /readyz) take GET and HEAD without a body. Anything else is refused
 * before any work (false): other methods 405, and a request with a body 413 (the
 * connection is then closed, since the body may not have been read: over the server's
 * own limit it never is). */
static bool probe_request_ok(http_conn_t *hc, http_req_t *req, const char *path) {
    char why[64];
    if (!slice_eq(req->head.method, "GET") && !slice_eq(req->head.method, "HEAD")) {
        snprintf(why, sizeof why, "%s answers GET and HEAD", path);
        chat_api_respond_error(hc, 405, "Allow: GET, HEAD\r\n", "method_not_allowed", why);
        return false;
    }
    if (req->head.content_length > 0 || req->head.chunked || req->body_too_large) {
        http_conn_set_close(hc);
        snprintf(why, sizeof why, "%s takes no body", path);
        chat_api_respond_error(hc, 413, NULL, "too_large", why);
        return false;
    }
    return true;
}

/* GET or HEAD /readyz: whether this node should get traffic (Kubernetes readiness, a
 * load balancer's check): 200 {"status":"ready"}, or 503 {"status":"not_ready",
 * "reasons":[...]} while draining, while the store refuses writes, or while Redis (when
 * configured) is unreachable. /healthz stays 200 meanwhile: the process is alive. */
static bool ready_route(http_conn_t *hc, http_req_t *req, void *arg) {
    app_t *app = arg;
    if (!slice_eq(req->head.path, "/readyz"))
        return false;
    if (!probe_request_ok(hc, req, "/readyz"))
        return true;
    json_t *reasons = json_array();
    const char *store_why;
    if (app->stopping)
        json_array_append_new(reasons, json_string("draining"));
    if (chat_store_health(app->store, &store_why))
        json_array_append_new(reasons, json_sprintf("store: %s", store_why));
    if (app->cfg.redis_url && (!app->redis || !parley_redis_connected(app->redis)))
        json_array_append_new(reasons, json_string("redis: unreachable"));
    bool ready = reasons && json_array_size(reasons) == 0;
    chat_api_respond_json(hc, ready ? 200 : 503, NULL,
                          json_pack("{s:s,s:o}", "status", ready ? "ready" : "not_ready", "reasons",
                                    reasons ? reasons : json_array()));
    return true;
}

/* GET or HEAD /healthz → {status, store, clients, sockets, sseStreams, longPolls}: the
 * liveness probe. 200 while the process serves ("ok", or "degraded" while the store
 * refuses writes: a restart would not help; /readyz says not ready then), 503 draining. */
static bool health_route(http_conn_t *hc, http_req_t *req, void *arg) {
    app_t *app = arg;
    if (!slice_eq(req->head.path, "/healthz"))
        return false;
    if (!probe_request_ok(hc, req, "/healthz"))
        return true;
    /* With Redis each worker is a node and reports itself alone. */
    if (app->worker && !app->cfg.redis_url && worker_sum_wait(app->health_sum, hc))
        return true;
    json_t *counts = health_counts(app);
    health_respond(app, hc, counts);
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

static void store_closed(void *arg) {
    app_t *app = arg;
    chat_api_free(app->api);
    chat_service_free(app->chat);
    free(app->health_sum);
    free(app->metrics_sum);
    app->health_sum = app->metrics_sum = NULL;
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

static void on_signal(uv_signal_t *sig, int signum) {
    app_t *app = sig->data;
    if (app->stopping)
        return;
    app->stopping = true;
    LOG_INFO("main", "signal %d: shutting down", signum);
    chat_service_stop(app->chat);
    chat_admin_close(app->admin);
    app->admin = NULL;
    chat_feed_close(app->feed);
    if (app->redis)
        parley_redis_detach(app->redis);
    app->redis = NULL;
    if (app->worker)
        parley_worker_detach_io(app->worker);
    sio_server_close(app->io);
    http_server_close(app->http);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sighup, NULL);
    chat_store_close(app->store, store_closed, app);
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
    hcfg.reuse_port = app->worker != NULL;
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
        rc = chat_store_open_sqlite(&app->loop, c->data_dir, &scfg, &app->store);
    } else {
        LOG_ERROR("main", "--store must be sqlite, memory or redis, not '%s'", c->store);
        return -1;
    }
    if (rc) {
        LOG_ERROR("main", "cannot open the %s store: %s", c->store, strerror(-rc));
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
    if (!is_dir(c->web_root))
        LOG_WARN("main", "web root %s is not a directory: the page will answer 404", c->web_root);
    if (!is_dir(c->client_dir))
        LOG_WARN("main", "client dir %s is not a directory: the client bundle will answer 404",
                 c->client_dir);
    if (!(app->web = http_static_new(c->web_root)) ||
        http_static_set_headers(app->web, PAGE_SECURITY_HEADERS) ||
        !(app->client = http_static_new(c->client_dir)) ||
        http_static_set_headers(app->client, "X-Content-Type-Options: nosniff\r\n")) {
        LOG_ERROR("main", "static files: out of memory");
        return -1;
    }
    app->health_sum = worker_sum_new(app, HEALTH_EVENT, health_counts, health_add, health_respond);
    app->metrics_sum =
        worker_sum_new(app, METRICS_EVENT, metrics_json, metrics_add, metrics_respond);
    if (!app->health_sum || !app->metrics_sum) {
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
        (rc = http_server_route(app->http, "/healthz", health_route, app)) ||
        (rc = http_server_route(app->http, "/readyz", ready_route, app)) ||
        (rc = http_server_route(app->http, "/metrics", metrics_route, app)) ||
        (rc = http_server_route(app->http, "/socket.io/socket.io", client_route, app)) ||
        (rc = http_server_route(app->http, "/admin", admin_ui_route, app)) ||
        (rc = http_server_route(app->http, "", web_route, app)) ||
        (app->worker && !c->redis_url &&
         (rc = parley_worker_attach(app->worker, &app->loop, app->io))) ||
        (app->worker && c->redis_url &&
         (rc = parley_worker_attach_handoff(app->worker, &app->loop, app->io))) ||
        (app->worker && !c->redis_url &&
         (rc = sio_nsp_on_server_event(sio_server_of(app->io, "/"), on_server_event, app)))) {
        LOG_ERROR("main", "cannot start the chat service: %s", uv_strerror(rc));
        return -1;
    }
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
    if (c->admin_ui && !is_dir(c->admin_ui))
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

/* SIGINT and SIGTERM start the shutdown (on_signal); SIGHUP reloads the certificate. */
static int watch_signals(app_t *app) {
    int rc;
    app->sigint.data = app->sigterm.data = app->sighup.data = app;
    if ((rc = uv_signal_init(&app->loop, &app->sigint)) ||
        (rc = uv_signal_init(&app->loop, &app->sigterm)) ||
        (rc = uv_signal_init(&app->loop, &app->sighup)) ||
        (rc = uv_signal_start(&app->sigint, on_signal, SIGINT)) ||
        (rc = uv_signal_start(&app->sigterm, on_signal, SIGTERM)) ||
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
    if (parse_config(argc, argv, &app.cfg))
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
    if (app.access_log) {
        http_access_log_close(app.access_log); /* its timer goes in one more turn */
        uv_run(&app.loop, UV_RUN_DEFAULT);
    }
    http_static_free(app.web);
    http_static_free(app.client);
    if (app.admin_ui)
        http_static_free(app.admin_ui);
    chat_auth_free(app.auth);
    net_tls_free(app.tls);
    free_list(app.origins, app.norigins);
    free_list(app.proxies, app.nproxies);
    net_loop_free(app.nl);
    return uv_loop_close(&app.loop) == 0 ? 0 : 3;
}
