/* chat/notify.c — the notifier of chat/notify.h: batches of owed messages, a heap of due
 * times, and libcurl's multi interface on the libuv loop.
 *
 * A batch is in one of three places: open (in the map of open batches and in the heap,
 * due at the end of its window), waiting (only in the heap: due now, or at a retry's
 * time) or in flight (a curl easy handle under way). Every batch is also on one list in
 * the order they opened: the oldest waiting one, the one dropped for a full queue, is
 * the first on it that is not in flight. One uv_timer_t fires for the heap's earliest
 * due time; when it fires, due batches are sent while fewer than max_inflight requests
 * are under way, and the rest stay due in the heap until a request ends.
 *
 * curl is driven as its docs describe for an event loop: curl tells which sockets to
 * watch (on_curl_socket → a uv_poll_t each) and when to call it back without I/O
 * (on_curl_timer → one uv_timer_t); the poll and the timer call
 * curl_multi_socket_action, and finished transfers are then read with
 * curl_multi_info_read. Nothing is added to or removed from the multi handle inside
 * curl's own callbacks. An easy handle is made per attempt (cheap, and a retry starts
 * clean); connections live in the multi handle's pool, so they outlast the handles.
 *
 * Not taken: a uv_timer_t per batch (10,000 timers, and a handle to close before each
 * batch can be freed), and a thread with curl's blocking interface (a second thread
 * touching the batches). */
#include "chat/notify.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley/parley.h"
#include "util/assert.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/map.h"
#include "util/time.h"
#include "util/utf8.h"

#define NOT_IN_HEAP SIZE_MAX
#define NOT_ARMED UINT64_MAX
#define SIG_HEADER_MAX 128 /* "X-Parley-Signature: t=<20 digits>,v1=<64 hex>" */

typedef struct batch batch_t;
struct batch {
    chat_notify_t *n;
    batch_t *older, *newer; /* every batch, in the order they opened */
    size_t heap_at;         /* index in n->heap, or NOT_IN_HEAP (in flight) */
    uint64_t due;           /* loop ms: the window's end, or the retry's time */
    uint64_t owed_at;       /* loop ms of its first message (the latency's start) */
    uint64_t unread;
    uint32_t attempts; /* requests started */
    uint32_t nmsgs;
    bool urgent, open, sealed, inflight;
    buf_t data; /* open: the messages, comma-separated; sealed: the request body */
    CURL *easy; /* in flight */
    struct curl_slist *headers;
    const char *room; /* in key, or NULL for a direct message */
    size_t klen;      /* the map key: "user" or "user\0room" */
    char key[];       /* user NUL [room NUL] */
};

/* A socket curl asked us to watch. */
typedef struct sock {
    uv_poll_t poll;
    chat_notify_t *n;
    curl_socket_t fd;
    struct sock *prev, *next;
} sock_t;

struct chat_notify {
    uv_loop_t *loop;
    chat_notify_config_t cfg; /* url and secret point at the copies below */
    char *url;
    chat_notify_online_fn online;
    void *online_arg;
    CURLM *multi;
    EVP_MAC_CTX *mac;     /* HMAC-SHA256 keyed with the secret; duplicated per signature */
    uv_timer_t due_timer; /* the heap's earliest due time */
    uv_timer_t curl_timer;
    uint64_t armed_for; /* the due time due_timer is set for, or NOT_ARMED */
    map_t open;         /* (user, room) → its open batch */
    batch_t **heap;     /* min-heap on due: open and waiting batches */
    size_t heap_len, heap_cap;
    batch_t *oldest, *newest;
    size_t total; /* batches held, in flight included */
    size_t inflight;
    sock_t *socks;
    uint64_t rng; /* xorshift64* state, for the backoff's jitter */
    chat_notify_stats_t st;
    unsigned handles; /* libuv handles open (timers, polls) */
    bool closing;
    void (*done)(void *arg);
    void *done_arg;
};

void chat_notify_config_defaults(chat_notify_config_t *cfg) {
    *cfg = (chat_notify_config_t){
        .window_ms = 2000,
        .queue_max = 10000,
        .timeout_ms = 5000,
        .max_attempts = 5,
        .backoff_ms = 1000,
        .batch_max_msgs = 20,
        .max_inflight = 16,
    };
}

const char *chat_notify_fail_name(chat_notify_fail_t r) {
    return r == CHAT_NOTIFY_REJECTED ? "rejected" : "gave_up";
}

void chat_notify_set_online(chat_notify_t *n, chat_notify_online_fn online, void *arg) {
    n->online = online;
    n->online_arg = arg;
}

void chat_notify_stats(const chat_notify_t *n, chat_notify_stats_t *out) {
    *out = n->st;
    out->queued = n->total - n->inflight;
    out->inflight = n->inflight;
}

/* ---- the heap of due times ---- */

static void heap_set(chat_notify_t *n, size_t i, batch_t *b) {
    n->heap[i] = b;
    b->heap_at = i;
}

static void heap_up(chat_notify_t *n, size_t i) {
    batch_t *b = n->heap[i];
    while (i > 0 && n->heap[(i - 1) / 2]->due > b->due) {
        heap_set(n, i, n->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(n, i, b);
}

static void heap_down(chat_notify_t *n, size_t i) {
    batch_t *b = n->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n->heap_len)
            break;
        if (c + 1 < n->heap_len && n->heap[c + 1]->due < n->heap[c]->due)
            c++;
        if (n->heap[c]->due >= b->due)
            break;
        heap_set(n, i, n->heap[c]);
        i = c;
    }
    heap_set(n, i, b);
}

/* Never fails: batch_new reserved a slot for every batch held. */
static void heap_push(chat_notify_t *n, batch_t *b) {
    PARLEY_ASSERT(b->heap_at == NOT_IN_HEAP && n->heap_len < n->heap_cap);
    heap_set(n, n->heap_len++, b);
    heap_up(n, b->heap_at);
}

static void heap_remove(chat_notify_t *n, batch_t *b) {
    size_t i = b->heap_at;
    PARLEY_ASSERT(i < n->heap_len && n->heap[i] == b);
    b->heap_at = NOT_IN_HEAP;
    batch_t *last = n->heap[--n->heap_len];
    if (last == b)
        return;
    heap_set(n, i, last);
    heap_up(n, i);
    heap_down(n, last->heap_at);
}

/* ---- batches ---- */

/* Forgets b wherever it is (map, heap, flight, list) and frees it. */
static void batch_free(batch_t *b) {
    chat_notify_t *n = b->n;
    if (b->open)
        map_del(&n->open, b->key, b->klen);
    if (b->heap_at != NOT_IN_HEAP)
        heap_remove(n, b);
    if (b->easy) {
        /* Only when closing: an abort. Its sockets are released through on_curl_socket. */
        CURLMcode mc = curl_multi_remove_handle(n->multi, b->easy);
        if (mc != CURLM_OK)
            LOG_WARN("notify", "a request not removed: %s", curl_multi_strerror(mc));
        curl_easy_cleanup(b->easy);
    }
    curl_slist_free_all(b->headers);
    if (b->inflight)
        n->inflight--;
    if (n->oldest == b)
        n->oldest = b->newer;
    else
        b->older->newer = b->newer;
    if (n->newest == b)
        n->newest = b->older;
    else
        b->newer->older = b->older;
    n->total--;
    buf_free(&b->data);
    free(b);
}

/* A new open batch for (user, room), due at the end of its window; NULL when out of
 * memory. */
static batch_t *batch_new(chat_notify_t *n, const char *user, size_t ulen, const char *room,
                          size_t rlen) {
    if (n->heap_cap < n->total + 1) {
        size_t cap = n->heap_cap ? 2 * n->heap_cap : 64;
        batch_t **grown = realloc(n->heap, cap * sizeof *grown);
        if (!grown)
            return NULL;
        n->heap = grown;
        n->heap_cap = cap;
    }
    size_t keysize = ulen + 1 + (room ? rlen + 1 : 0);
    batch_t *b = calloc(1, sizeof *b + keysize);
    if (!b)
        return NULL;
    b->n = n;
    memcpy(b->key, user, ulen);
    b->klen = ulen;
    if (room) {
        memcpy(b->key + ulen + 1, room, rlen);
        b->room = b->key + ulen + 1;
        b->klen = ulen + 1 + rlen;
    }
    if (map_put(&n->open, b->key, b->klen, b)) {
        free(b);
        return NULL;
    }
    b->open = true;
    b->owed_at = uv_now(n->loop);
    b->due = b->owed_at + n->cfg.window_ms;
    b->heap_at = NOT_IN_HEAP;
    b->older = n->newest;
    if (n->newest)
        n->newest->newer = b;
    else
        n->oldest = b;
    n->newest = b;
    n->total++;
    heap_push(n, b);
    return b;
}

/* The queue is full: the oldest batch not in flight goes. */
static void drop_oldest(chat_notify_t *n) {
    batch_t *b = n->oldest;
    while (b && b->inflight)
        b = b->newer;
    PARLEY_ASSERT(b != NULL);
    if (!b)
        return;
    n->st.dropped++;
    LOG_LIMITED(LOG_LEVEL_WARN, "notify",
                "queue full (%zu batches): the oldest dropped (%" PRIu32 " messages)",
                n->cfg.queue_max, b->nmsgs);
    batch_free(b);
}

/* ---- the request ---- */

/* A JSON string for s (valid UTF-8: owe checked), appended to out. */
static int append_json_string(buf_t *out, const char *s) {
    json_t *j = json_string(s);
    char *text = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    int rc = text ? buf_append_str(out, text) : -ENOMEM;
    free(text);
    return rc;
}

/* The window ended: the messages become the request body, made once for every attempt. */
static int seal(batch_t *b) {
    buf_t body = {0};
    int rc = buf_append_str(&body, "{\"userId\":");
    if (!rc)
        rc = append_json_string(&body, b->key);
    if (!rc)
        rc = buf_append_str(&body, ",\"roomId\":");
    if (!rc)
        rc = b->room ? append_json_string(&body, b->room) : buf_append_str(&body, "null");
    if (!rc)
        rc = buf_append_str(&body, ",\"messages\":[");
    if (!rc)
        rc = buf_append(&body, b->data.data, b->data.len);
    if (!rc)
        rc = buf_printf(&body, "],\"unread\":%" PRIu64 ",\"urgent\":%s}", b->unread,
                        b->urgent ? "true" : "false");
    if (rc) {
        buf_free(&body);
        return rc;
    }
    buf_free(&b->data);
    b->data = body;
    b->sealed = true;
    return 0;
}

/* The signature header for body, stamped now: t=<unix seconds>,v1=<hex HMAC-SHA256 of
 * t "." body>. */
static int sign(chat_notify_t *n, const buf_t *body, char out[SIG_HEADER_MAX]) {
    long long t = (long long)(time_wall_ms() / 1000);
    char stamp[32];
    int slen = snprintf(stamp, sizeof stamp, "%lld.", t);
    unsigned char mac[32];
    size_t maclen = 0;
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(n->mac);
    bool ok = c && EVP_MAC_update(c, (const unsigned char *)stamp, (size_t)slen) == 1 &&
              EVP_MAC_update(c, body->data, body->len) == 1 &&
              EVP_MAC_final(c, mac, &maclen, sizeof mac) == 1 && maclen == sizeof mac;
    EVP_MAC_CTX_free(c);
    if (!ok)
        return -EIO;
    static const char hex[] = "0123456789abcdef";
    char digest[2 * sizeof mac + 1];
    for (size_t i = 0; i < sizeof mac; i++) {
        digest[2 * i] = hex[mac[i] >> 4];
        digest[2 * i + 1] = hex[mac[i] & 15];
    }
    digest[2 * sizeof mac] = '\0';
    snprintf(out, SIG_HEADER_MAX, "X-Parley-Signature: t=%lld,v1=%s", t, digest);
    return 0;
}

/* The receiver's answer is not read: only its status counts. */
static size_t discard(char *data, size_t size, size_t nmemb, void *arg) {
    return size * nmemb;
}

/* Starts b's request on the multi handle. Returns 0, -ENOMEM or -EIO (nothing started). */
static int request_start(batch_t *b) {
    chat_notify_t *n = b->n;
    char sig[SIG_HEADER_MAX];
    int rc = sign(n, &b->data, sig);
    if (rc)
        return rc;
    CURL *e = curl_easy_init();
    if (!e)
        return -ENOMEM;
    struct curl_slist *h = NULL;
    /* "Expect:" turns off curl's Expect: 100-continue for bodies over 1 KiB, which would
     * wait for an interim answer most receivers never send. */
    static const char *const fixed[] = {"Content-Type: application/json", "Expect:"};
    for (size_t i = 0; i < 2; i++) {
        struct curl_slist *grown = curl_slist_append(h, fixed[i]);
        if (!grown) {
            curl_slist_free_all(h);
            curl_easy_cleanup(e);
            return -ENOMEM;
        }
        h = grown;
    }
    struct curl_slist *grown = curl_slist_append(h, sig);
    if (!grown) {
        curl_slist_free_all(h);
        curl_easy_cleanup(e);
        return -ENOMEM;
    }
    h = grown;
    bool ok =
        curl_easy_setopt(e, CURLOPT_URL, n->url) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *)b->data.data) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->data.len) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_USERAGENT, "parley/" PARLEY_VERSION_STRING) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)n->cfg.timeout_ms) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_PRIVATE, b) == CURLE_OK;
    CURLMcode mc = ok ? curl_multi_add_handle(n->multi, e) : CURLM_OK;
    if (!ok || mc != CURLM_OK) {
        if (mc != CURLM_OK)
            LOG_WARN("notify", "request not started: %s", curl_multi_strerror(mc));
        curl_slist_free_all(h);
        curl_easy_cleanup(e);
        return -EIO;
    }
    b->easy = e;
    b->headers = h;
    return 0;
}

/* ---- sending, retrying ---- */

static uint64_t rng_next(chat_notify_t *n) {
    n->rng ^= n->rng >> 12;
    n->rng ^= n->rng << 25;
    n->rng ^= n->rng >> 27;
    return n->rng * 2685821657736338717ULL;
}

/* The delay after the attempts-th failed attempt: backoff_ms doubled per earlier failure,
 * capped, times a random factor in [0.8, 1.2) so that batches failed together do not
 * come back together. */
static uint64_t backoff(chat_notify_t *n, uint32_t attempts) {
    uint64_t d = n->cfg.backoff_ms;
    for (uint32_t i = 1; i < attempts && d < CHAT_NOTIFY_BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > CHAT_NOTIFY_BACKOFF_MAX_MS)
        d = CHAT_NOTIFY_BACKOFF_MAX_MS;
    double jitter = 0.8 + 0.4 * (double)(rng_next(n) >> 11) / (double)(1ULL << 53);
    return (uint64_t)((double)d * jitter);
}

/* b's attempt failed in a way that may pass later: due again after delay_ms, unless its
 * attempts are spent. b may be freed. */
static void retry(batch_t *b, uint64_t delay_ms, const char *why) {
    chat_notify_t *n = b->n;
    if (b->attempts >= n->cfg.max_attempts) {
        n->st.failed[CHAT_NOTIFY_GAVE_UP]++;
        LOG_LIMITED(LOG_LEVEL_WARN, "notify",
                    "a batch given up after %" PRIu32 " attempts (last: %s)", b->attempts, why);
        batch_free(b);
        return;
    }
    LOG_DEBUG("notify", "attempt %" PRIu32 " failed (%s): again in %" PRIu64 " ms", b->attempts,
              why, delay_ms);
    b->due = uv_now(n->loop) + delay_ms;
    heap_push(n, b);
    while (n->total - n->inflight > n->cfg.queue_max)
        drop_oldest(n);
}

/* b is due: sent now, unless its user is back. b may be freed. */
static void attempt(batch_t *b) {
    chat_notify_t *n = b->n;
    /* In flight from here: whatever the online callback does, b is not dropped. */
    b->inflight = true;
    n->inflight++;
    if (n->online && n->online(b->key, b->room, n->online_arg)) {
        n->st.skipped++;
        batch_free(b);
        return;
    }
    if (b->attempts > 0)
        n->st.retries++;
    b->attempts++;
    int rc = b->sealed ? 0 : seal(b);
    if (!rc)
        rc = request_start(b);
    if (rc) {
        b->inflight = false;
        n->inflight--;
        retry(b, backoff(n, b->attempts), strerror(-rc));
    }
}

static void on_due(uv_timer_t *t);

/* Sets due_timer for the heap's earliest due time, or stops it: no batch waits, or the
 * earliest is due and every request slot is taken (a request's end sends it). */
static void arm(chat_notify_t *n) {
    if (n->closing)
        return;
    uint64_t now = uv_now(n->loop), want = NOT_ARMED;
    if (n->heap_len && !(n->heap[0]->due <= now && n->inflight >= n->cfg.max_inflight))
        want = n->heap[0]->due;
    if (want == n->armed_for)
        return;
    n->armed_for = want;
    if (want == NOT_ARMED) {
        if (uv_timer_stop(&n->due_timer))
            LOG_DEBUG("notify", "timer not stopped");
        return;
    }
    int rc = uv_timer_start(&n->due_timer, on_due, want > now ? want - now : 0, 0);
    if (rc)
        LOG_ERROR("notify", "timer not started: %s", uv_strerror(rc));
}

/* Sends what is due, as far as request slots allow. */
static void pump(chat_notify_t *n) {
    uint64_t now = uv_now(n->loop);
    while (!n->closing && n->heap_len && n->heap[0]->due <= now &&
           n->inflight < n->cfg.max_inflight) {
        batch_t *b = n->heap[0];
        heap_remove(n, b);
        if (b->open) {
            map_del(&n->open, b->key, b->klen);
            b->open = false;
        }
        attempt(b);
    }
    arm(n);
}

static void on_due(uv_timer_t *t) {
    chat_notify_t *n = t->data;
    n->armed_for = NOT_ARMED;
    pump(n);
}

/* b's request ended (result: curl's; the status when it is CURLE_OK). b may be freed. */
static void request_done(batch_t *b, CURLcode result) {
    chat_notify_t *n = b->n;
    long status = 0;
    curl_off_t retry_after = 0;
    if (result == CURLE_OK &&
        (curl_easy_getinfo(b->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK ||
         curl_easy_getinfo(b->easy, CURLINFO_RETRY_AFTER, &retry_after) != CURLE_OK))
        result = CURLE_GOT_NOTHING; /* no status to read: as if none came */
    CURLMcode mc = curl_multi_remove_handle(n->multi, b->easy);
    if (mc != CURLM_OK)
        LOG_WARN("notify", "a finished request not removed: %s", curl_multi_strerror(mc));
    curl_easy_cleanup(b->easy);
    curl_slist_free_all(b->headers);
    b->easy = NULL;
    b->headers = NULL;
    b->inflight = false;
    n->inflight--;
    if (result != CURLE_OK) {
        retry(b, backoff(n, b->attempts), curl_easy_strerror(result));
        return;
    }
    if (status >= 200 && status < 300) {
        n->st.sent++;
        prom_histogram_observe(&n->st.latency, (double)(uv_now(n->loop) - b->owed_at) / 1000.0);
        batch_free(b);
        return;
    }
    char why[32];
    snprintf(why, sizeof why, "HTTP %ld", status);
    if (status == 429 && retry_after > 0) {
        uint64_t s = retry_after < CHAT_NOTIFY_RETRY_AFTER_MAX_S ? (uint64_t)retry_after
                                                                 : CHAT_NOTIFY_RETRY_AFTER_MAX_S;
        retry(b, s * 1000, why);
    } else if (status == 408 || status == 429 || status >= 500) {
        retry(b, backoff(n, b->attempts), why);
    } else {
        n->st.failed[CHAT_NOTIFY_REJECTED]++;
        LOG_LIMITED(LOG_LEVEL_WARN, "notify", "a batch refused by the receiver: %s", why);
        batch_free(b);
    }
}

/* Reads curl's finished transfers, then sends what waited for a slot. */
static void collect(chat_notify_t *n) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(n->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode result = m->data.result;
        char *priv = NULL;
        if (curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv) != CURLE_OK || !priv) {
            LOG_ERROR("notify", "a finished request without its batch");
            continue;
        }
        request_done((batch_t *)(void *)priv, result);
    }
    pump(n);
}

/* ---- curl on libuv ---- */

static void notify_free(chat_notify_t *n);

/* One of the notifier's libuv handles is closed; the last one, while closing, ends it:
 * the memory goes, then done(arg) runs. */
static void handle_closed(chat_notify_t *n) {
    n->handles--;
    if (!n->closing || n->handles > 0)
        return;
    void (*done)(void *) = n->done;
    void *arg = n->done_arg;
    notify_free(n);
    if (done)
        done(arg);
}

static void on_sock_closed(uv_handle_t *h) {
    sock_t *s = h->data;
    chat_notify_t *n = s->n;
    free(s);
    handle_closed(n);
}

static void on_timer_closed(uv_handle_t *h) {
    handle_closed(h->data);
}

static void sock_close(sock_t *s) {
    chat_notify_t *n = s->n;
    if (uv_poll_stop(&s->poll))
        LOG_DEBUG("notify", "poll not stopped");
    if (s->prev)
        s->prev->next = s->next;
    else
        n->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *p, int status, int events) {
    sock_t *s = p->data;
    chat_notify_t *n = s->n;
    int flags = status < 0 ? CURL_CSELECT_ERR
                           : ((events & UV_READABLE) ? CURL_CSELECT_IN : 0) |
                                 ((events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0);
    int running;
    CURLMcode mc = curl_multi_socket_action(n->multi, s->fd, flags, &running);
    if (mc != CURLM_OK)
        LOG_ERROR("notify", "curl: %s", curl_multi_strerror(mc));
    collect(n);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl wants (a new uv_poll_t the first time),
 * or stop watching it. A non-zero return makes curl fail its transfers. */
static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
    chat_notify_t *n = userp;
    sock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            sock_close(s);
        return 0;
    }
    if (n->closing)
        return 0;
    if (!s) {
        if (!(s = calloc(1, sizeof *s)))
            return -1;
        int rc = uv_poll_init_socket(n->loop, &s->poll, fd);
        if (rc) {
            LOG_ERROR("notify", "cannot watch a socket: %s", uv_strerror(rc));
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->n = n;
        s->fd = fd;
        s->next = n->socks;
        if (n->socks)
            n->socks->prev = s;
        n->socks = s;
        n->handles++;
        if (curl_multi_assign(n->multi, fd, s) != CURLM_OK) {
            sock_close(s);
            return -1;
        }
    }
    int events =
        ((what & CURL_POLL_IN) ? UV_READABLE : 0) | ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0);
    int rc = uv_poll_start(&s->poll, events, on_poll);
    if (rc) {
        LOG_ERROR("notify", "cannot watch a socket: %s", uv_strerror(rc));
        return -1;
    }
    return 0;
}

static void on_curl_timeout(uv_timer_t *t) {
    chat_notify_t *n = t->data;
    int running;
    CURLMcode mc = curl_multi_socket_action(n->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    if (mc != CURLM_OK)
        LOG_ERROR("notify", "curl: %s", curl_multi_strerror(mc));
    collect(n);
}

/* CURLMOPT_TIMERFUNCTION: call curl back after ms (-1: never). Only the timer is set
 * here: curl must not be re-entered from its own callback. */
static int on_curl_timer(CURLM *m, long ms, void *userp) {
    chat_notify_t *n = userp;
    if (n->closing)
        return 0;
    if (ms < 0) {
        if (uv_timer_stop(&n->curl_timer))
            LOG_DEBUG("notify", "timer not stopped");
        return 0;
    }
    int rc = uv_timer_start(&n->curl_timer, on_curl_timeout, (uint64_t)ms, 0);
    if (rc) {
        LOG_ERROR("notify", "curl's timer not started: %s", uv_strerror(rc));
        return -1;
    }
    return 0;
}

/* ---- open, owe, close ---- */

bool chat_notify_url_ok(const char *url) {
    /* libcurl wants its global state before any other call (counted: open's stays). */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return false;
    CURLU *u = curl_url();
    char *scheme = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
    curl_free(scheme);
    curl_url_cleanup(u);
    curl_global_cleanup();
    return ok;
}

static EVP_MAC_CTX *hmac_new(const char *secret) {
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); /* the context holds its own reference */
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    if (c && EVP_MAC_init(c, (const unsigned char *)secret, strlen(secret), params) != 1) {
        EVP_MAC_CTX_free(c);
        c = NULL;
    }
    return c;
}

/* Frees what open made (n->multi and the handles excepted: see close). */
static void notify_free(chat_notify_t *n) {
    EVP_MAC_CTX_free(n->mac);
    map_free(&n->open);
    free(n->heap);
    free(n->url);
    free(n);
    curl_global_cleanup();
}

int chat_notify_open(uv_loop_t *loop, const chat_notify_config_t *cfg, chat_notify_online_fn online,
                     void *arg, chat_notify_t **out) {
    if (!cfg->url || !cfg->secret || !*cfg->secret || cfg->queue_max == 0 || cfg->timeout_ms == 0 ||
        cfg->max_attempts == 0 || cfg->batch_max_msgs == 0 || cfg->max_inflight == 0)
        return -EINVAL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -EIO;
    if (!chat_notify_url_ok(cfg->url)) {
        curl_global_cleanup();
        return -EINVAL;
    }
    chat_notify_t *n = calloc(1, sizeof *n);
    if (!n) {
        curl_global_cleanup();
        return -ENOMEM;
    }
    n->loop = loop;
    n->cfg = *cfg;
    n->online = online;
    n->online_arg = arg;
    n->armed_for = NOT_ARMED;
    /* The jitter needs no secrecy, only spread between processes and batches. */
    n->rng = uv_hrtime() | 1;
    n->url = strdup(cfg->url);
    n->mac = hmac_new(cfg->secret);
    if (map_init(&n->open) || !n->url || !n->mac) {
        int rc = n->url ? -EIO : -ENOMEM;
        notify_free(n);
        return rc;
    }
    n->cfg.url = n->url;
    n->cfg.secret = NULL; /* only the keyed HMAC context keeps it */
    if (!(n->multi = curl_multi_init())) {
        notify_free(n);
        return -ENOMEM;
    }
    if (curl_multi_setopt(n->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
        curl_multi_setopt(n->multi, CURLMOPT_SOCKETDATA, n) != CURLM_OK ||
        curl_multi_setopt(n->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
        curl_multi_setopt(n->multi, CURLMOPT_TIMERDATA, n) != CURLM_OK ||
        curl_multi_setopt(n->multi, CURLMOPT_MAXCONNECTS, (long)cfg->max_inflight) != CURLM_OK) {
        LOG_ERROR("notify", "cannot set up curl's multi handle");
        curl_multi_cleanup(n->multi);
        notify_free(n);
        return -EIO;
    }
    int rc = uv_timer_init(loop, &n->due_timer);
    if (rc) {
        curl_multi_cleanup(n->multi);
        notify_free(n);
        return rc;
    }
    n->due_timer.data = n;
    n->handles = 1;
    if ((rc = uv_timer_init(loop, &n->curl_timer))) {
        /* The due timer is a handle already: the memory goes once it is closed. */
        curl_multi_cleanup(n->multi);
        n->closing = true;
        uv_close((uv_handle_t *)&n->due_timer, on_timer_closed);
        return rc;
    }
    n->curl_timer.data = n;
    n->handles = 2;
    *out = n;
    return 0;
}

/* What chat_notify_owe and chat_notify_owe_batch share: msgs (nmsgs objects joined with
 * commas) into the (user, room) batch; due now when `now` (the caller batched them). */
static int owe(chat_notify_t *n, const char *user_id, const char *room_id, const char *msgs,
               size_t len, uint32_t nmsgs, uint64_t unread, bool urgent, bool now) {
    if (!user_id || !msgs || nmsgs == 0 || len < 2 || msgs[0] != '{' || msgs[len - 1] != '}')
        return -EINVAL;
    size_t ulen = strlen(user_id), rlen = room_id ? strlen(room_id) : 0;
    if (ulen == 0 || (room_id && rlen == 0) || !utf8_is_valid((const uint8_t *)user_id, ulen) ||
        (room_id && !utf8_is_valid((const uint8_t *)room_id, rlen)))
        return -EINVAL;
    /* The map key as batch_new lays it out: "user", or "user\0room". */
    size_t klen = ulen + (room_id ? 1 + rlen : 0);
    char small[256], *key = klen <= sizeof small ? small : malloc(klen);
    if (!key)
        return -ENOMEM;
    memcpy(key, user_id, ulen);
    if (room_id) {
        key[ulen] = '\0';
        memcpy(key + ulen + 1, room_id, rlen);
    }
    batch_t *b = map_get(&n->open, key, klen);
    if (key != small)
        free(key);
    bool fresh = !b;
    if (fresh) {
        if (n->total - n->inflight >= n->cfg.queue_max)
            drop_oldest(n);
        if (!(b = batch_new(n, user_id, ulen, room_id, rlen)))
            return -ENOMEM;
    }
    if (b->nmsgs + nmsgs <= n->cfg.batch_max_msgs) {
        /* Reserved first, so that the comma and the messages go in together or not at all. */
        if (buf_reserve(&b->data, len + 1)) {
            if (fresh)
                batch_free(b);
            return -ENOMEM;
        }
        if (b->nmsgs)
            b->data.data[b->data.len++] = ',';
        memcpy(b->data.data + b->data.len, msgs, len);
        b->data.len += len;
        b->nmsgs += nmsgs;
    }
    if (unread > b->unread)
        b->unread = unread;
    if (urgent)
        b->urgent = true;
    if ((urgent || now) && b->due > uv_now(n->loop)) {
        b->due = uv_now(n->loop);
        heap_up(n, b->heap_at);
    }
    arm(n);
    return 0;
}

int chat_notify_owe(chat_notify_t *n, const char *user_id, const char *room_id,
                    const char *msg_json, size_t len, uint64_t unread, bool urgent) {
    return owe(n, user_id, room_id, msg_json, len, 1, unread, urgent, false);
}

int chat_notify_owe_batch(chat_notify_t *n, const char *user_id, const char *room_id,
                          const char *msgs_json, size_t len, uint32_t nmsgs, uint64_t unread,
                          bool urgent, bool batched) {
    return owe(n, user_id, room_id, msgs_json, len, nmsgs, unread, urgent, batched);
}

const chat_notify_config_t *chat_notify_config(const chat_notify_t *n) {
    return &n->cfg;
}

void chat_notify_close(chat_notify_t *n, void (*done)(void *arg), void *arg) {
    size_t inflight = n->inflight, waiting = n->total - n->inflight;
    if (inflight || waiting)
        LOG_WARN("notify", "closing: %zu requests under way aborted, %zu waiting batches dropped",
                 inflight, waiting);
    /* Aborting the transfers first lets curl release their sockets through
     * on_curl_socket, while it still may. */
    for (batch_t *b = n->oldest, *next; b; b = next) {
        next = b->newer;
        batch_free(b);
    }
    n->closing = true;
    while (n->socks) {
        if (curl_multi_assign(n->multi, n->socks->fd, NULL) != CURLM_OK)
            LOG_DEBUG("notify", "a socket unknown to curl");
        sock_close(n->socks);
    }
    CURLMcode mc = curl_multi_cleanup(n->multi);
    if (mc != CURLM_OK)
        LOG_WARN("notify", "curl not cleaned up: %s", curl_multi_strerror(mc));
    n->multi = NULL;
    n->done = done;
    n->done_arg = arg;
    uv_close((uv_handle_t *)&n->due_timer, on_timer_closed);
    uv_close((uv_handle_t *)&n->curl_timer, on_timer_closed);
}
