/* examples/sio_conformance.c — the server the official Socket.IO and Engine.IO protocol
 * suites expect: one process on port 3000 with an Engine.IO echo at /engine.io/ and
 * Socket.IO at /socket.io/ (namespaces "/" and "/custom"), pingInterval 300,
 * pingTimeout 200, maxPayload 1e6, connectTimeout 1000, CORS for any origin.
 *
 * On connection a socket is sent its auth payload ("auth"); "message" is answered with
 * "message-back" and the same arguments (binary included); "message-with-ack" is acked
 * with its arguments. Options: --port N (3000), --recovery. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "parley/parley.h"

typedef struct {
    uv_loop_t loop;
    net_loop_t *nl;
    http_server_t *http;
    eio_server_t *echo;
    sio_server_t *io;
    uv_signal_t sigint, sigterm;
} app_t;

static void echo_message(eio_session_t *s, uint8_t *data, size_t len, bool binary, void *arg) {
    if (eio_session_send_message(s, data, len, binary))
        eio_session_close(s);
}

/* The "auth" emit is deferred by AUTH_DELAY_MS. Parley writes everything a callback
 * queued in one writev, so the CONNECT reply and this event would reach the client in
 * one read; the official suite handles one frame per read (it registers its next
 * listener only after the first frame's promise resolves) and would miss the second.
 * The server is not changed for that: only this example spaces the two out. */
#define AUTH_DELAY_MS 5
typedef struct {
    uv_timer_t timer;
    sio_socket_t *socket;
} deferred_t;

static void deferred_free(uv_handle_t *h) {
    free(h->data);
}

static void emit_auth(uv_timer_t *t) {
    deferred_t *d = t->data;
    sio_socket_t *s = d->socket;
    json_t *args = json_pack("[O]", sio_socket_handshake(s).auth);
    sio_payload_t p = {args, NULL, 0};
    if (sio_socket_connected(s) && sio_socket_emit(s, "auth", &p, 0))
        fprintf(stderr, "sio_conformance: emit failed\n");
    json_decref(args);
    sio_socket_unref(s);
    uv_close((uv_handle_t *)t, deferred_free);
}

static void on_connection(sio_socket_t *s, void *arg) {
    app_t *app = arg;
    deferred_t *d = malloc(sizeof *d);
    if (!d || uv_timer_init(&app->loop, &d->timer)) {
        free(d);
        return;
    }
    d->timer.data = d;
    d->socket = s;
    sio_socket_ref(s);
    if (uv_timer_start(&d->timer, emit_auth, AUTH_DELAY_MS, 0))
        emit_auth(&d->timer);
}

static void on_message(sio_socket_t *s, const char *event, const sio_payload_t *p, int64_t ack_id,
                       void *arg) {
    if (sio_socket_emit(s, "message-back", p, 0))
        fprintf(stderr, "sio_conformance: emit failed\n");
}

static void on_message_with_ack(sio_socket_t *s, const char *event, const sio_payload_t *p,
                                int64_t ack_id, void *arg) {
    if (ack_id >= 0 && sio_socket_ack(s, ack_id, p))
        fprintf(stderr, "sio_conformance: ack failed\n");
}

static void on_signal(uv_signal_t *sig, int signum) {
    app_t *app = sig->data;
    sio_server_close(app->io);
    eio_server_close(app->echo);
    http_server_close(app->http);
    net_loop_close(app->nl);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
}

int main(int argc, char **argv) {
    static app_t app;
    http_server_config_t hcfg;
    http_server_config_defaults(&hcfg);
    sio_config_t scfg;
    sio_config_defaults(&scfg);
    static const char *const any_origin[] = {"*"};
    scfg.ping_interval = 300;
    scfg.ping_timeout = 200;
    scfg.connect_timeout = 1000;
    scfg.cors_origins = any_origin;
    scfg.cors_origin_count = 1;
    static const struct option opts[] = {
        {"port", 1, 0, 'p'}, {"recovery", 0, 0, 'r'}, {"log-level", 1, 0, 'l'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'p')
            hcfg.port = atoi(optarg);
        else if (o == 'r')
            scfg.recovery = true;
        else if (o != 'l' || parley_log_set_level(optarg))
            return 2;
    }
    eio_config_t ecfg;
    eio_config_defaults(&ecfg);
    ecfg.ping_interval = 300;
    ecfg.ping_timeout = 200;
    ecfg.cors_origins = any_origin;
    ecfg.cors_origin_count = 1;
    eio_callbacks_t ecb = {.on_message = echo_message};
    /* Writes to connections whose peer is gone must fail with EPIPE, not kill us. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR || uv_loop_init(&app.loop) ||
        !(app.nl = net_loop_new(&app.loop)))
        return 1;
    int rc = http_server_new(app.nl, &hcfg, &app.http);
    if (rc) {
        fprintf(stderr, "listen: %s\n", uv_strerror(rc));
        return 1;
    }
    if (eio_server_new(app.http, &ecfg, &ecb, &app, &app.echo) ||
        sio_server_new(app.http, &scfg, &app.io))
        return 1;
    sio_nsp_t *root = sio_server_of(app.io, "/");
    sio_nsp_t *custom = sio_server_of(app.io, "/custom");
    if (!root || !custom || sio_nsp_on_connection(root, on_connection, &app) ||
        sio_nsp_on_connection(custom, on_connection, &app) ||
        sio_nsp_on(root, "message", on_message, NULL) ||
        sio_nsp_on(root, "message-with-ack", on_message_with_ack, NULL))
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
