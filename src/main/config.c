/* main/config.c — the options table, defaults, --help, and reading the --config file,
 * the environment and the command line (main/config.h). */
#include "main/config.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat/api.h"
#include "chat/feed.h"
#include "chat/notify.h"
#include "chat/service.h"
#include "parley/http.h"
#include "parley/loop.h"
#include "parley/sio.h"

#ifndef PARLEY_SOURCE_DIR
#define PARLEY_SOURCE_DIR "."
#endif
/* Where `make install` puts the web page (web/) and the client bundle (client/). */
#ifndef PARLEY_DATA_DIR_INSTALLED
#define PARLEY_DATA_DIR_INSTALLED "/usr/local/share/parley"
#endif

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
    {"ws-deflate", "PARLEY_WS_DEFLATE",
     "permessage-deflate on WebSockets whose client offers it (CPU for bandwidth; a broadcast "
     "is compressed once)",
     OPT_BOOL, O(ws_deflate), NULL, 0, 0},
    {"ws-deflate-threshold", "PARLEY_WS_DEFLATE_THRESHOLD",
     "bytes below which --ws-deflate sends a message uncompressed", OPT_LONG,
     O(ws_deflate_threshold), NULL, 0, 1000000000},
    {"ws-deflate-client-context", "PARLEY_WS_DEFLATE_CLIENT_CONTEXT",
     "let clients keep their compression context (an inflate stream of ~40 KiB per such "
     "connection)",
     OPT_BOOL, O(ws_deflate_client_context), NULL, 0, 0},
    {"drain-timeout", "PARLEY_DRAIN_TIMEOUT",
     "seconds a drain (SIGTERM) may take before what is still open is closed hard", OPT_LONG,
     O(drain_timeout), NULL, 1, 86400},
    {"reuse-port", "PARLEY_REUSE_PORT",
     "let another process listen on the port too (SO_REUSEPORT): a restart's new process, "
     "which gets the new connections once this one stops listening",
     OPT_BOOL, O(reuse_port), NULL, 0, 0},
    {"allow-eio3", "PARLEY_ALLOW_EIO3",
     "accept socket.io 2 clients (Engine.IO v3); they pass the token as the query parameter "
     "token",
     OPT_BOOL, O(allow_eio3), NULL, 0, 0},
    {"polling-compression", "PARLEY_POLLING_COMPRESSION",
     "gzip or deflate for long-polling responses of 1 KiB or more, as the client accepts", OPT_BOOL,
     O(polling_compression), NULL, 0, 0},
    {"notify-url", "PARLEY_NOTIFY_URL",
     "POST notifications of messages for offline members, signed, to this http(s) URL "
     "(docs/NOTIFY.md; needs --notify-secret)",
     OPT_STR, O(notify_url), "none", 0, 0},
    {"notify-secret", "PARLEY_NOTIFY_SECRET",
     "HMAC-SHA256 key of the notifications' X-Parley-Signature header", OPT_STR, O(notify_secret),
     "none", 0, 0},
    {"notify-window-ms", "PARLEY_NOTIFY_WINDOW_MS",
     "ms a user's notifications of one room are gathered into one request (mentions and "
     "direct messages go at once)",
     OPT_LONG, O(notify_window_ms), NULL, 0, 3600000},
    {"notify-queue", "PARLEY_NOTIFY_QUEUE",
     "notification batches waiting at most; past it the oldest is dropped", OPT_LONG,
     O(notify_queue), NULL, 1, 100000000},
    {"store-lock-wait", "PARLEY_STORE_LOCK_WAIT",
     "seconds the SQLite store waits for another process's lock on --data-dir (a restart) "
     "before it gives up (0: refuse to start)",
     OPT_LONG, O(store_lock_wait), NULL, 0, 86400},
};
#define NOPTIONS (sizeof options / sizeof options[0])

bool config_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The source tree's directory when it is there (a binary run from its build tree), else
 * the installed one. */
static const char *default_dir(const char *in_source, const char *installed) {
    return config_is_dir(in_source) ? in_source : installed;
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
    sio_config_t iocfg;
    sio_config_defaults(&iocfg);
    chat_notify_config_t nocfg;
    chat_notify_config_defaults(&nocfg);
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
        /* Closing every transport and committing what is queued takes well under a second,
         * and a graceful close of a connection is bounded by NET_LINGER_MS (2 s): 10 s
         * leaves room for a slow disk, and stays under the 30 s that Kubernetes
         * (terminationGracePeriodSeconds) and docs/deploy/parley.service (TimeoutStopSec)
         * give a process after SIGTERM before they kill it. */
        .drain_timeout = 10,
        .reuse_port = true,
        /* A drain closes the old process's store within its first second or so, and at
         * worst within its --drain-timeout: 60 s covers that with room to spare and still
         * stops a misconfiguration (two processes on one directory) within a minute. */
        .store_lock_wait = 60,
        .workers = "1",
        .redis_key = "socket.io",
        .redis_mode = "classic",
        .parser = "json",
        .polling_compression = true, /* as engine.io's httpCompression */
        .web_root = default_dir(PARLEY_SOURCE_DIR "/web", PARLEY_DATA_DIR_INSTALLED "/web"),
        .client_dir = default_dir(PARLEY_SOURCE_DIR "/assets/node_modules/socket.io-client/dist",
                                  PARLEY_DATA_DIR_INSTALLED "/client"),
        .ws_deflate_threshold = (long)iocfg.ws_deflate_threshold,
        .notify_window_ms = (long)nocfg.window_ms,
        .notify_queue = (long)nocfg.queue_max,
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

int config_parse(int argc, char **argv, config_t *cfg) {
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
