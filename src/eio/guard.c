/* eio/guard.c — per-address session caps and handshake rates (see guard.h). */
#include "eio/guard.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/assert.h"
#include "util/log.h"
#include "util/map.h"

#define IP_MAX 64
/* Entries are swept for leftovers every this many handshakes. */
#define PURGE_EVERY 1024

struct eio_guard_ip {
    uint32_t sessions;
    double tokens; /* handshakes left in the budget */
    uint64_t at;   /* loop time (ms) when tokens was computed */
    char ip[IP_MAX];
};

struct eio_guard {
    map_t ips; /* address → eio_guard_ip_t */
    size_t max_sessions;
    double rate, burst;
    char **trusted;
    size_t ntrusted;
    unsigned admitted;
};

eio_guard_t *eio_guard_new(const eio_limits_t *lim, int *err) {
    *err = 0;
    if (!lim->max_sessions_per_ip && !lim->handshake_rate)
        return NULL;
    eio_guard_t *g = calloc(1, sizeof *g);
    if (!g || map_init(&g->ips))
        goto fail;
    g->max_sessions = lim->max_sessions_per_ip;
    g->rate = lim->handshake_rate;
    g->burst = lim->handshake_burst ? lim->handshake_burst : lim->handshake_rate;
    if (lim->trusted_proxy_count) {
        if (!(g->trusted = calloc(lim->trusted_proxy_count, sizeof *g->trusted)))
            goto fail;
        for (; g->ntrusted < lim->trusted_proxy_count; g->ntrusted++)
            if (!(g->trusted[g->ntrusted] = strdup(lim->trusted_proxies[g->ntrusted])))
                goto fail;
    }
    return g;
fail:
    eio_guard_free(g);
    *err = -ENOMEM;
    return NULL;
}

void eio_guard_free(eio_guard_t *g) {
    if (!g)
        return;
    map_entry_t *e;
    for (size_t i = 0; map_next(&g->ips, &i, &e);)
        free(e->value);
    map_free(&g->ips);
    for (size_t i = 0; i < g->ntrusted; i++)
        free(g->trusted[i]);
    free(g->trusted);
    free(g);
}

static bool trusted(const eio_guard_t *g, slice_t ip) {
    for (size_t i = 0; i < g->ntrusted; i++)
        if (slice_eq(ip, g->trusted[i]))
            return true;
    return false;
}

static slice_t trim(slice_t s) {
    while (s.len && (s.base[0] == ' ' || s.base[0] == '\t'))
        s = slice_make(s.base + 1, s.len - 1);
    while (s.len && (s.base[s.len - 1] == ' ' || s.base[s.len - 1] == '\t'))
        s.len--;
    return s;
}

/* The client's address into out: the peer, or what the trusted proxies say it is. */
static int client_ip(const eio_guard_t *g, http_conn_t *hc, const http_req_t *req, char *out) {
    int rc = net_conn_peer(http_conn_net(hc), out, IP_MAX);
    if (rc)
        return rc;
    const slice_t *xff = http_request_header(&req->head, "x-forwarded-for");
    if (!xff || !trusted(g, slice_make(out, strlen(out))))
        return 0;
    /* Right to left: each trusted proxy appended the address it saw. */
    size_t end = xff->len;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff->base[start - 1] != ',')
            start--;
        slice_t hop = trim(slice_make(xff->base + start, end - start));
        if (hop.len == 0 || hop.len >= IP_MAX)
            break;
        memcpy(out, hop.base, hop.len);
        out[hop.len] = '\0';
        if (!trusted(g, hop))
            break;
        end = start ? start - 1 : 0;
    }
    return 0;
}

static void refill(const eio_guard_t *g, eio_guard_ip_t *e, uint64_t now) {
    if (now > e->at) {
        e->tokens += (double)(now - e->at) * g->rate / 1000.0;
        if (e->tokens > g->burst)
            e->tokens = g->burst;
    }
    e->at = now;
}

/* Drops entries that hold no session and whose budget is whole: they say nothing.
 * Collected first: deleting moves entries under the iterator. */
static void purge(eio_guard_t *g, uint64_t now) {
    eio_guard_ip_t **idle = malloc((g->ips.count + 1) * sizeof *idle);
    size_t n = 0;
    map_entry_t *e;
    for (size_t i = 0; idle && map_next(&g->ips, &i, &e);) {
        eio_guard_ip_t *ip = e->value;
        refill(g, ip, now);
        if (ip->sessions == 0 && (g->rate == 0 || ip->tokens >= g->burst))
            idle[n++] = ip;
    }
    for (size_t i = 0; i < n; i++) {
        map_del(&g->ips, idle[i]->ip, strlen(idle[i]->ip));
        free(idle[i]);
    }
    free(idle);
}

int eio_guard_admit(eio_guard_t *g, http_conn_t *hc, const http_req_t *req, uint64_t now,
                    eio_guard_ip_t **out) {
    char ip[IP_MAX];
    if (client_ip(g, hc, req, ip)) {
        LOG_DEBUG("eio", "handshake refused: no peer address");
        return 503;
    }
    if (++g->admitted % PURGE_EVERY == 0)
        purge(g, now);
    size_t len = strlen(ip);
    eio_guard_ip_t *e = map_get(&g->ips, ip, len);
    if (!e) {
        if (!(e = calloc(1, sizeof *e)))
            return 503;
        memcpy(e->ip, ip, len + 1);
        e->tokens = g->burst;
        e->at = now;
        if (map_put(&g->ips, e->ip, len, e)) {
            free(e);
            return 503;
        }
    }
    refill(g, e, now);
    if (g->max_sessions && e->sessions >= g->max_sessions) {
        LOG_DEBUG("eio", "handshake from %s refused: %u sessions open", ip, e->sessions);
        return 503;
    }
    if (g->rate) {
        if (e->tokens < 1.0) {
            LOG_DEBUG("eio", "handshake from %s refused: over %.0f/s", ip, g->rate);
            return 429;
        }
        e->tokens -= 1.0;
    }
    e->sessions++;
    *out = e;
    return 0;
}

void eio_guard_leave(eio_guard_t *g, eio_guard_ip_t *ip) {
    PARLEY_ASSERT(ip->sessions > 0);
    ip->sessions--;
}
