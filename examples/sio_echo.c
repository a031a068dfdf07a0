/* examples/sio_echo.c — the smallest useful Socket.IO server on Parley.
 *
 * "echo" comes back to its sender (and is acknowledged when asked); "chat" goes to every
 * connected client. Serves /socket.io/ on --port (3000). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "parley/parley.h"

static void on_echo(sio_socket_t *s, const char *event, const sio_payload_t *p, int64_t ack,
                    void *arg) {
    if (ack >= 0)
        sio_socket_ack(s, ack, p);
    else
        sio_socket_emit(s, "echo", p, 0);
}

static void on_chat(sio_socket_t *s, const char *event, const sio_payload_t *p, int64_t ack,
                    void *arg) {
    sio_nsp_emit(sio_socket_nsp(s), NULL, "chat", p);
}

static struct {
    net_loop_t *nl;
    http_server_t *http;
    sio_server_t *io;
    uv_signal_t sig;
} app;

static void on_sigterm(uv_signal_t *sig, int signum) {
    sio_server_close(app.io);
    http_server_close(app.http);
    net_loop_close(app.nl);
    uv_close((uv_handle_t *)sig, NULL);
}

int main(int argc, char **argv) {
    uv_loop_t *loop = uv_default_loop();
    http_server_config_t hcfg;
    http_server_config_defaults(&hcfg);
    for (int i = 1; i + 1 < argc; i += 2)
        if (strcmp(argv[i], "--port") == 0)
            hcfg.port = atoi(argv[i + 1]);
    sio_config_t cfg;
    sio_config_defaults(&cfg);
    /* Writes to connections whose peer is gone must fail with EPIPE, not kill us. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR || !(app.nl = net_loop_new(loop)) ||
        http_server_new(app.nl, &hcfg, &app.http) || sio_server_new(app.http, &cfg, &app.io))
        return 1;
    sio_nsp_t *root = sio_server_of(app.io, "/");
    if (sio_nsp_on(root, "echo", on_echo, NULL) || sio_nsp_on(root, "chat", on_chat, NULL) ||
        uv_signal_init(loop, &app.sig) || uv_signal_start(&app.sig, on_sigterm, SIGTERM))
        return 1;
    printf("listening %s:%d\n", hcfg.host, http_server_port(app.http));
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    net_loop_free(app.nl);
    return uv_loop_close(loop) ? 1 : 0;
}
