/* examples/eio_echo.c — an Engine.IO echo server on Parley's lower layers.
 *
 * Every message a client sends comes back to it unchanged (text as text, binary as
 * binary). This is the server the official engine.io-protocol test suite expects
 * (run it with --port 3000 --ping-interval 300 --ping-timeout 200) and the one the
 * transport, hostile-input and churn tests drive. GET /stats answers
 * {"sessions":N,"connections":M}. SIGINT/SIGTERM close everything and exit 0. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "parley/parley.h"

typedef struct {
    uv_loop_t loop;
    net_loop_t *nl;
    http_server_t *http;
    eio_server_t *eio;
    http_static_t *files;
    uv_signal_t sigint, sigterm;
} app_t;

static void on_message(eio_session_t *s, uint8_t *data, size_t len, bool binary, void *arg) {
    if (eio_session_send_message(s, data, len, binary))
        eio_session_close(s);
}

static bool stats_route(http_conn_t *hc, http_req_t *req, void *arg) {
    app_t *app = arg;
    size_t len;
    const char *path = http_req_path(req, &len);
    if (len != 6 || memcmp(path, "/stats", 6) != 0)
        return false;
    const char *method = http_req_method(req, &len);
    if (len != 3 || memcmp(method, "GET", 3) != 0) {
        http_respond(hc, 405, "text/plain", "Allow: GET\r\n", "Method Not Allowed\n", 19);
        return true;
    }
    char body[128];
    int n = snprintf(body, sizeof body, "{\"sessions\":%zu,\"connections\":%zu}",
                     eio_server_session_count(app->eio), net_loop_conn_count(app->nl));
    http_respond(hc, 200, "application/json", NULL, body, (size_t)n);
    return true;
}

static bool static_route(http_conn_t *hc, http_req_t *req, void *arg) {
    app_t *app = arg;
    size_t len;
    const char *path = http_req_path(req, &len);
    return http_static_serve(app->files, hc, req, path, len);
}

static void on_signal(uv_signal_t *sig, int signum) {
    app_t *app = sig->data;
    eio_server_close(app->eio);
    http_server_close(app->http);
    if (app->files)
        http_static_free(app->files);
    net_loop_close(app->nl);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
}

static void usage(void) {
    fprintf(stderr, "usage: eio_echo [--host H] [--port N] [--path P] [--ping-interval MS]\n"
                    "  [--ping-timeout MS] [--upgrade-timeout MS] [--max-payload BYTES]\n"
                    "  [--request-timeout MS] [--keepalive-timeout MS] [--ws-max-message BYTES]\n"
                    "  [--cors-origin ORIGIN]... [--check-origin] [--cookie] [--static DIR]\n"
                    "  [--output-limit BYTES] [--send-timeout MS] [--max-connections-per-ip N]\n"
                    "  [--handshake-rate N] [--handshake-burst N] [--trusted-proxy IP]...\n"
                    "  [--log-level LEVEL] [--allow-eio3]\n"
                    "  [--no-http-compression]\n");
}

int main(int argc, char **argv) {
    static app_t app;
    http_server_config_t hcfg;
    eio_config_t ecfg;
    http_server_config_defaults(&hcfg);
    eio_config_defaults(&ecfg);
    const char *origins[16], *proxies[16];
    size_t norigins = 0, nproxies = 0;
    net_loop_config_t lcfg;
    net_loop_config_defaults(&lcfg);
    static const struct option opts[] = {
        {"host", 1, 0, 'h'},
        {"port", 1, 0, 'p'},
        {"path", 1, 0, 'P'},
        {"ping-interval", 1, 0, 'i'},
        {"ping-timeout", 1, 0, 't'},
        {"upgrade-timeout", 1, 0, 'u'},
        {"max-payload", 1, 0, 'm'},
        {"request-timeout", 1, 0, 'r'},
        {"keepalive-timeout", 1, 0, 'k'},
        {"ws-max-message", 1, 0, 'w'},
        {"cors-origin", 1, 0, 'c'},
        {"cookie", 0, 0, 'C'},
        {"log-level", 1, 0, 'l'},
        {"static", 1, 0, 's'},
        {"check-origin", 0, 0, 'O'},
        {"output-limit", 1, 0, 'L'},
        {"send-timeout", 1, 0, 'T'},
        {"max-connections-per-ip", 1, 0, 'M'},
        {"handshake-rate", 1, 0, 'R'},
        {"handshake-burst", 1, 0, 'B'},
        {"trusted-proxy", 1, 0, 'X'},
        {"allow-eio3", 0, 0, '3'},
        {"no-http-compression", 0, 0, 'z'},
        {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'h':
            hcfg.host = optarg;
            break;
        case 'p':
            hcfg.port = atoi(optarg);
            break;
        case 'P':
            ecfg.path = optarg;
            break;
        case 'i':
            ecfg.ping_interval = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 't':
            ecfg.ping_timeout = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'u':
            ecfg.upgrade_timeout = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'm':
            ecfg.max_payload = strtoul(optarg, NULL, 10);
            break;
        case 'r':
            hcfg.request_timeout = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'k':
            hcfg.keepalive_timeout = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'w':
            ecfg.ws_max_message = strtoul(optarg, NULL, 10);
            break;
        case 'c':
            if (norigins < 16)
                origins[norigins++] = optarg;
            break;
        case 'C':
            ecfg.cookie = true;
            break;
        case 'O':
            ecfg.limits.check_origin = true;
            break;
        case 'L':
            lcfg.output_limit = strtoul(optarg, NULL, 10);
            break;
        case 'T':
            lcfg.send_timeout = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'M':
            ecfg.limits.max_sessions_per_ip = strtoul(optarg, NULL, 10);
            break;
        case 'R':
            ecfg.limits.handshake_rate = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'B':
            ecfg.limits.handshake_burst = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case '3':
            ecfg.allow_eio3 = true;
            break;
        case 'z':
            ecfg.http_compression_threshold = 0;
            break;
        case 'X':
            if (nproxies < 16)
                proxies[nproxies++] = optarg;
            break;
        case 's':
            if (!(app.files = http_static_new(optarg)))
                return 1;
            break;
        case 'l':
            if (parley_log_set_level(optarg)) {
                usage();
                return 2;
            }
            break;
        default:
            usage();
            return 2;
        }
    }
    ecfg.cors_origins = origins;
    ecfg.cors_origin_count = norigins;
    ecfg.limits.trusted_proxies = proxies;
    ecfg.limits.trusted_proxy_count = nproxies;
    hcfg.max_body_size = ecfg.max_payload;

    /* Writes to connections whose peer is gone must fail with EPIPE, not kill us. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR || uv_loop_init(&app.loop) ||
        !(app.nl = net_loop_new(&app.loop)) || net_loop_configure(app.nl, &lcfg))
        return 1;
    int rc = http_server_new(app.nl, &hcfg, &app.http);
    if (rc) {
        fprintf(stderr, "listen %s:%d: %s\n", hcfg.host, hcfg.port, uv_strerror(rc));
        return 1;
    }
    eio_callbacks_t cb = {.on_message = on_message};
    if (eio_server_new(app.http, &ecfg, &cb, &app, &app.eio) ||
        http_server_route(app.http, "/stats", stats_route, &app) ||
        (app.files && http_server_route(app.http, "", static_route, &app)))
        return 1;
    app.sigint.data = app.sigterm.data = &app;
    if (uv_signal_init(&app.loop, &app.sigint) || uv_signal_init(&app.loop, &app.sigterm) ||
        uv_signal_start(&app.sigint, on_signal, SIGINT) ||
        uv_signal_start(&app.sigterm, on_signal, SIGTERM))
        return 1;
    printf("listening %s:%d\n", hcfg.host, http_server_port(app.http));
    fflush(stdout);
    uv_run(&app.loop, UV_RUN_DEFAULT);
    net_loop_free(app.nl);
    return uv_loop_close(&app.loop) == 0 ? 0 : 3;
}
