/* main/drain.c — the shutdown SIGTERM or SIGINT starts (main/app.h). */
#include <errno.h>
#include <string.h>

#include "main/app.h"
#include "util/log.h"

/* ---- drain (SIGTERM, SIGINT) ----
 *
 * The first signal drains the process, in this order:
 *   1. the listener closes (what the kernel had queued for it is taken first): with
 *      --reuse-port another process of the port gets every new connection; /readyz and
 *      /healthz answer 503 "draining" on the connections still open;
 *   2. the chat takes no new work (chat_service_drain) and waits until the store work
 *      under way has been answered: appends committed, their acks queued;
 *   3. the clients are told, each in the way that makes the official clients reconnect
 *      (tell_clients): WebSockets close with 1001, a poll gets the Engine.IO close packet
 *      after what was queued for it, SSE streams end, API long-polls are answered. Never a
 *      Socket.IO DISCONNECT: socket.io-client does not reconnect after one;
 *      The store flushes and closes at once (nothing can ask it for more): its directory's
 *      lock is free for the next process from here;
 *   4. once every Engine.IO session is gone (a polling client fetches its last packets
 *      within a round trip; DRAIN_GRACE_MS at most), the servers close (and the notifier:
 *      its requests under way are aborted, its waiting batches lost), and the process
 *      exits 0 when the last connection has closed (a graceful close lingers NET_LINGER_MS
 *      at most).
 * --drain-timeout bounds all of it: what is still open then is closed hard (cut), and the
 * store still flushes. A second signal cuts at once. */
#define DRAIN_GRACE_MS 1000
#define DRAIN_POLL_MS 20

static void store_closed(void *arg) {
    app_t *app = arg;
    app->store = NULL; /* /readyz and /healthz: "no store" until the servers close */
    app->store_closed = true;
    if (app->finished)
        app_teardown(app);
}

static void finish(app_t *app) {
    app->finished = true;
    if (uv_timer_stop(&app->drain_step))
        LOG_DEBUG("main", "drain step timer not stopped");
    if (app->redis)
        parley_redis_detach(app->redis);
    app->redis = NULL;
    if (app->worker)
        parley_worker_detach_io(app->worker);
    /* Nothing is owed after chat_service_stop; what is still waiting or under way goes
     * (the messages stay stored, unread). */
    if (app->notify)
        chat_notify_close(app->notify, NULL, NULL);
    app->notify = NULL;
    sio_server_close(app->io);
    chat_feed_close(app->feed);
    http_server_close(app->http);
    if (app->store_closed)
        app_teardown(app);
}

static void drain_step_due(uv_timer_t *t);

static void tell_clients(app_t *app) {
    app->told = true;
    app->told_at = uv_now(&app->loop);
    chat_service_stop(app->chat);
    chat_admin_close(app->admin); /* its sessions go with the rest; NULL: none */
    app->admin = NULL;
    sio_server_drain(app->io);
    chat_feed_drain(app->feed);
    chat_store_close(app->store, store_closed, app);
    int rc = uv_timer_start(&app->drain_step, drain_step_due, DRAIN_POLL_MS, DRAIN_POLL_MS);
    if (rc) {
        LOG_WARN("main", "drain: %s; closing now", uv_strerror(rc));
        finish(app);
    }
}

static void drain_step_due(uv_timer_t *t) {
    app_t *app = t->data;
    if (!app->told)
        tell_clients(app);
    else if (!app->finished &&
             (sio_server_drained(app->io) || uv_now(&app->loop) - app->told_at >= DRAIN_GRACE_MS))
        finish(app);
}

/* The chat's store work is answered: the clients are told on the next loop iteration (this
 * may run inside a store callback, where closing the servers is not safe). */
static void chat_drained(void *arg) {
    app_t *app = arg;
    if (app->told)
        return;
    int rc = uv_timer_start(&app->drain_step, drain_step_due, 0, 0);
    if (rc) {
        LOG_WARN("main", "drain: %s; telling the clients now", uv_strerror(rc));
        tell_clients(app);
    }
}

/* --drain-timeout, or a second signal: whatever is still open closes now. */
static void cut(app_t *app, const char *why) {
    LOG_WARN("main", "%s: closing what is still open", why);
    if (!app->told)
        tell_clients(app);
    if (!app->finished)
        finish(app);
    net_loop_abort_conns(app->nl);
}

static void drain_timeout_due(uv_timer_t *t) {
    cut(t->data, "drain timeout");
}

static void drain(app_t *app) {
    app->stopping = true;
    http_server_stop_listening(app->http);
    /* None of these may keep the process alive once everything else is closed (drain_step
     * does, until finish stops it: the steps may be all that is left to run). */
    uv_unref((uv_handle_t *)&app->sigint);
    uv_unref((uv_handle_t *)&app->sigterm);
    uv_unref((uv_handle_t *)&app->sighup);
    int rc = uv_timer_start(&app->drain_timer, drain_timeout_due,
                            (uint64_t)app->cfg.drain_timeout * 1000, 0);
    if (rc)
        LOG_WARN("main", "drain timeout not set: %s", uv_strerror(rc));
    uv_unref((uv_handle_t *)&app->drain_timer);
    chat_service_drain(app->chat, chat_drained, app);
}

void app_on_signal(uv_signal_t *sig, int signum) {
    app_t *app = sig->data;
    if (app->stopping) {
        cut(app, "second signal");
        return;
    }
    LOG_INFO("main", "signal %d: draining (at most %ld s)", signum, app->cfg.drain_timeout);
    drain(app);
}

/* The SQLite store waited for another process's lock (a restart) and opened, or gave up:
 * then this process cannot keep its promise (acks mean durable) and goes away. */
void app_store_opened(int err, void *arg) {
    app_t *app = arg;
    if (err == 0) {
        LOG_INFO("main", "the store is open: ready");
        return;
    }
    LOG_ERROR("main", "no store (%s): stopping", strerror(-err));
    app->status = 1;
    if (!app->stopping)
        drain(app);
}
