/* main/app.h — the running parley program: what its parts share.
 *
 * main.c starts it (options → store → HTTP → Socket.IO → chat, and this program's routes)
 * and owns every handle in app_t; probes.c answers /healthz, /readyz and /metrics (with
 * workers, summed over all of them); drain.c runs the shutdown that SIGTERM starts and
 * calls app_teardown at its end. One app_t per process, on the loop thread only. */
#ifndef PARLEY_MAIN_APP_H
#define PARLEY_MAIN_APP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "chat/admin.h"
#include "chat/api.h"
#include "chat/auth.h"
#include "chat/feed.h"
#include "chat/notify.h"
#include "chat/service.h"
#include "chat/store.h"
#include "http/access.h"
#include "http/static.h"
#include "main/config.h"
#include "parley/cluster.h"
#include "parley/http.h"
#include "parley/loop.h"
#include "parley/redis.h"
#include "parley/sio.h"
#include "parley/tls.h"

typedef struct app {
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
    uv_timer_t drain_timer;        /* --drain-timeout */
    uv_timer_t drain_step;         /* the drain's next step, outside the callback that allows it */
    uint64_t told_at;              /* uv_now() when the clients were told */
    int status;                    /* the exit status: 1 when the store could not be opened */
    bool told, finished;           /* the drain's steps done (tell_clients, finish) */
    bool store_closed;             /* its close finished (app->store is then NULL) */
    net_tls_t *tls;                /* --tls-cert: the certificate (NULL: plain http) */
    http_access_log_t *access_log; /* --access-log (NULL: none); outlives the connections */
    parley_worker_t *worker;       /* --workers N: this worker (NULL: one process) */
    parley_redis_t *redis;         /* --redis-url: this node's link to the others */
    chat_notify_t *notify;         /* --notify-url: offline notifications (NULL: none) */
    /* With workers: the sums over every worker that /healthz and /metrics answer with. */
    struct worker_sum *health_sum, *metrics_sum;
    char **origins, **proxies;
    size_t norigins, nproxies;
    char secret[64];
    bool stopping;
} app_t;

/* main.c: frees what the chat holds and lets the loop end (the drain's last step). */
void app_teardown(app_t *app);

/* probes.c: the sums with workers (app->health_sum, metrics_sum; -ENOMEM), the routes,
 * and the workers' side of a sum (a serverSideEmit handler on "/"). */
int app_probes_start(app_t *app);
void app_probes_free(app_t *app);
bool app_health_route(http_conn_t *hc, http_req_t *req, void *arg);
bool app_ready_route(http_conn_t *hc, http_req_t *req, void *arg);
bool app_metrics_route(http_conn_t *hc, http_req_t *req, void *arg);
json_t *app_on_server_event(sio_nsp_t *nsp, const char *event, json_t *args, void *arg);

/* drain.c: SIGTERM/SIGINT (the drain; a second one cuts), and the SQLite store's answer
 * once it waited for another process's lock (a restart): without a store, drain. */
void app_on_signal(uv_signal_t *sig, int signum);
void app_store_opened(int err, void *arg);

#endif
