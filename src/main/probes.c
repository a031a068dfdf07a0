/* main/probes.c — /healthz, /readyz and /metrics (docs/OPERATIONS.md, Probes and
 * Metrics). With --workers (no Redis) /healthz and /metrics answer the sum over every
 * worker: each sum asks the others with a serverSideEmit. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chat/metrics.h"
#include "http/server.h"
#include "main/app.h"
#include "util/log.h"

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

json_t *app_on_server_event(sio_nsp_t *nsp, const char *event, json_t *args, void *arg) {
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
    chat_metrics_src_t src = {app->nl, app->io, app->chat, app->feed, app->redis, app->notify};
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
bool app_metrics_route(http_conn_t *hc, http_req_t *req, void *arg) {
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
bool app_ready_route(http_conn_t *hc, http_req_t *req, void *arg) {
    app_t *app = arg;
    if (!slice_eq(req->head.path, "/readyz"))
        return false;
    if (!probe_request_ok(hc, req, "/readyz"))
        return true;
    json_t *reasons = json_array();
    const char *store_why;
    /* Draining says it all (the store closes during the drain, Redis is left). */
    if (app->stopping)
        json_array_append_new(reasons, json_string("draining"));
    else if (chat_store_health(app->store, &store_why))
        json_array_append_new(reasons, json_sprintf("store: %s", store_why));
    if (!app->stopping && app->cfg.redis_url &&
        (!app->redis || !parley_redis_connected(app->redis)))
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
bool app_health_route(http_conn_t *hc, http_req_t *req, void *arg) {
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

int app_probes_start(app_t *app) {
    app->health_sum = worker_sum_new(app, HEALTH_EVENT, health_counts, health_add, health_respond);
    app->metrics_sum =
        worker_sum_new(app, METRICS_EVENT, metrics_json, metrics_add, metrics_respond);
    return app->health_sum && app->metrics_sum ? 0 : -ENOMEM;
}

void app_probes_free(app_t *app) {
    free(app->health_sum);
    free(app->metrics_sum);
    app->health_sum = app->metrics_sum = NULL;
}
