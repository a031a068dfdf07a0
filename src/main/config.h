/* main/config.h — the parley program's options.
 *
 * Every option is a command-line flag, a PARLEY_* environment variable and a key of the
 * --config JSON file; precedence: flags > environment > file > defaults. The table in
 * config.c is the single list of them, and `--help` prints it (docs/CONFIG.md lists the
 * same, checked by tests/integration/chat/config.test.mjs).
 *
 * Defaults: the modules' own (their *_config_defaults) wherever an option feeds a module;
 * only what is this program's choice is written in config.c, and `--help` prints the
 * defaults from the same values. The strings of a config_t live as long as the process
 * (argv, the environment, or the parsed file, kept). */
#ifndef PARLEY_MAIN_CONFIG_H
#define PARLEY_MAIN_CONFIG_H

#include <stdbool.h>

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
    long ws_deflate_threshold;
    bool ws_deflate, ws_deflate_client_context;
    bool allow_eio3, polling_compression;
    long drain_timeout, store_lock_wait; /* seconds (see the drain, below) */
    const char *notify_url, *notify_secret;
    long notify_window_ms, notify_queue;
    bool reuse_port;
} config_t;

/* Fills cfg from the defaults, the --config file, the environment and argv. Returns 0, or
 * -1 after printing why (the caller exits with 2). --help prints the options and exits 0. */
int config_parse(int argc, char **argv, config_t *cfg);
bool config_is_dir(const char *path);

#endif
