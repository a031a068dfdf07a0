/* cluster/redis_conn.c — a Redis connection that comes back (cluster/redis_conn.h). */
#include "cluster/redis_conn.h"

#include <errno.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

struct redis_conn {
    uv_loop_t *loop;
    redis_endpoint_t ep;
    char name[32];
    redis_conn_cb_t cb;
    void *arg;
    redisAsyncContext *ac; /* while connecting or connected */
    bool ready;            /* connected and set up */
    bool closing;
    uint32_t backoff_ms;
    uv_timer_t retry;
    bool retry_open;
    void (*done)(void *arg);
    void *done_arg;
};

/* ---- endpoints ---- */

static char *decode_part(const char *s, size_t len) {
    char *out = malloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; out && i < len; i++) {
        unsigned v;
        if (s[i] == '%' && i + 2 < len + 1 && sscanf(s + i + 1, "%2x", &v) == 1) {
            out[o++] = (char)v;
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    if (out)
        out[o] = '\0';
    return out;
}

void redis_endpoint_free(redis_endpoint_t *ep) {
    free(ep->host);
    free(ep->path);
    free(ep->user);
    free(ep->password);
    memset(ep, 0, sizeof *ep);
}

static int parse(const char *url, redis_endpoint_t *ep) {
    if (url[0] == '/' || strncmp(url, "unix://", 7) == 0) {
        ep->path = strdup(url[0] == '/' ? url : url + 7);
        return ep->path && ep->path[0] == '/' ? 0 : -EINVAL;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return -EINVAL;
    const char *p = url + 8;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p)
                ep->user = decode_part(p, (size_t)(colon - p));
            ep->password = decode_part(colon + 1, (size_t)(at - colon - 1));
        } else {
            ep->password = decode_part(p, (size_t)(at - p));
        }
        p = at + 1;
    }
    size_t hlen = strcspn(p, ":/");
    if (hlen == 0 || !(ep->host = strndup(p, hlen)))
        return -EINVAL;
    p += hlen;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535)
            return -EINVAL;
        ep->port = (int)port;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end;
        long db = strtol(p + 1, &end, 10);
        if (*end || db < 0 || db > 1000000)
            return -EINVAL;
        ep->db = (int)db;
    } else if (*p && strcmp(p, "/") != 0) {
        return -EINVAL;
    }
    return 0;
}

int redis_endpoint_parse(const char *url, redis_endpoint_t *out) {
    memset(out, 0, sizeof *out);
    out->port = 6379;
    int rc = parse(url, out);
    if (rc)
        redis_endpoint_free(out);
    return rc;
}

int redis_endpoint_copy(const redis_endpoint_t *from, redis_endpoint_t *to) {
    *to = (redis_endpoint_t){.port = from->port, .db = from->db};
    if ((from->host && !(to->host = strdup(from->host))) ||
        (from->path && !(to->path = strdup(from->path))) ||
        (from->user && !(to->user = strdup(from->user))) ||
        (from->password && !(to->password = strdup(from->password)))) {
        redis_endpoint_free(to);
        return -ENOMEM;
    }
    return 0;
}

/* ---- the connection ---- */

static void start(redis_conn_t *c);

static void maybe_done(redis_conn_t *c) {
    if (!c->closing || c->ac || c->retry_open)
        return;
    void (*done)(void *) = c->done;
    void *arg = c->done_arg;
    redis_endpoint_free(&c->ep);
    free(c);
    if (done)
        done(arg);
}

static void retry_due(uv_timer_t *t) {
    start(t->data);
}

static void lost(redis_conn_t *c, const char *why) {
    bool was = c->ready;
    c->ready = false;
    c->ac = NULL;
    if (c->closing) {
        maybe_done(c);
        return;
    }
    if (was)
        LOG_WARN("redis", "%s connection lost (%s); retrying", c->name, why);
    else
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "%s: cannot connect to Redis (%s); retrying in %u ms",
                    c->name, why, c->backoff_ms);
    if (was && c->cb.lost)
        c->cb.lost(c, c->arg);
    if (uv_timer_start(&c->retry, retry_due, c->backoff_ms, 0))
        LOG_ERROR("redis", "%s: cannot schedule a reconnection", c->name);
    c->backoff_ms =
        c->backoff_ms * 2 > REDIS_BACKOFF_MAX_MS ? REDIS_BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void set_up(redisAsyncContext *ac, void *reply, void *priv) {
    redis_conn_t *c = priv;
    redisReply *rep = reply;
    if (!rep)
        return; /* closing */
    if (rep->type == REDIS_REPLY_ERROR) {
        LOG_LIMITED(LOG_LEVEL_ERROR, "redis", "%s: Redis refused the connection's setup: %s",
                    c->name, rep->str);
        redisAsyncDisconnect(ac);
        return;
    }
    if (c->ready || c->closing)
        return;
    c->ready = true;
    c->backoff_ms = REDIS_BACKOFF_MIN_MS;
    LOG_INFO("redis", "%s connected", c->name);
    c->cb.ready(c, c->arg);
}

static void on_connect(const redisAsyncContext *cac, int status) {
    redis_conn_t *c = cac->data;
    if (status != REDIS_OK) {
        lost(c, cac->errstr); /* hiredis frees the context after this */
        return;
    }
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    const redis_endpoint_t *ep = &c->ep;
    int rc = REDIS_OK;
    /* Authenticated and the database chosen before anything else; PING otherwise, so
     * that readiness is the last setup reply either way. */
    if (ep->password && ep->user)
        rc = redisAsyncCommand(ac, set_up, c, "AUTH %s %s", ep->user, ep->password);
    else if (ep->password)
        rc = redisAsyncCommand(ac, set_up, c, "AUTH %s", ep->password);
    if (rc == REDIS_OK && ep->db)
        rc = redisAsyncCommand(ac, set_up, c, "SELECT %d", ep->db);
    if (rc == REDIS_OK && !ep->password && !ep->db)
        rc = redisAsyncCommand(ac, set_up, c, "PING");
    if (rc != REDIS_OK)
        redisAsyncDisconnect(ac);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    lost(ac->data, status == REDIS_OK ? "closed" : ac->errstr);
}

static void start(redis_conn_t *c) {
    redisAsyncContext *ac =
        c->ep.path ? redisAsyncConnectUnix(c->ep.path) : redisAsyncConnect(c->ep.host, c->ep.port);
    if (!ac) {
        lost(c, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof why, "%s", ac->errstr);
        redisAsyncFree(ac);
        lost(c, why);
        return;
    }
    ac->data = c;
    if (redisLibuvAttach(ac, c->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        lost(c, "cannot attach to the loop");
        return;
    }
    c->ac = ac;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

int redis_conn_open(uv_loop_t *loop, const redis_endpoint_t *ep, const char *name,
                    const redis_conn_cb_t *cb, void *arg, redis_conn_t **out) {
    redis_conn_t *c = calloc(1, sizeof *c);
    if (!c || redis_endpoint_copy(ep, &c->ep)) {
        free(c);
        return -ENOMEM;
    }
    c->loop = loop;
    snprintf(c->name, sizeof c->name, "%s", name);
    c->cb = *cb;
    c->arg = arg;
    c->backoff_ms = REDIS_BACKOFF_MIN_MS;
    if (uv_timer_init(loop, &c->retry)) {
        redis_endpoint_free(&c->ep);
        free(c);
        return -ENOMEM;
    }
    c->retry.data = c;
    c->retry_open = true;
    *out = c;
    start(c);
    return 0;
}

redisAsyncContext *redis_conn_ctx(const redis_conn_t *c) {
    return c && c->ready ? c->ac : NULL;
}

static void retry_closed(uv_handle_t *h) {
    redis_conn_t *c = h->data;
    c->retry_open = false;
    maybe_done(c);
}

void redis_conn_close(redis_conn_t *c, void (*done)(void *arg), void *arg) {
    c->closing = true;
    c->done = done;
    c->done_arg = arg;
    uv_timer_stop(&c->retry);
    uv_close((uv_handle_t *)&c->retry, retry_closed);
    redisAsyncContext *ac = c->ac;
    if (!ac)
        return;
    if (ac->c.flags & REDIS_CONNECTED) {
        redisAsyncDisconnect(ac); /* on_disconnect follows, now or once replies are in */
    } else {
        c->ac = NULL; /* still connecting: freed at once, without callbacks */
        redisAsyncFree(ac);
    }
}
