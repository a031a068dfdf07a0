/* tests/unit/chat/notify_test.c — the notifier (src/chat/notify.c) against a real HTTP
 * receiver on loopback.
 *
 * The receiver runs on the test's own libuv loop (net/conn.h for the sockets,
 * http/parser.h for the requests): it records every request (head, body, arrival time,
 * the connection it came on) and answers from a script — a status per request, extra
 * header lines (Retry-After), or no answer at all (a stall). The signature is checked
 * here with OpenSSL's HMAC, independently of the notifier's code.
 *
 * What is checked: a burst within the window is one POST per (user, room) with every
 * message, in order, and the highest unread; a direct message has roomId null; the
 * messages past batch_max_msgs only raise unread; the signature verifies and its t is
 * now; an urgent message sends at once; a user online when the batch is due gets
 * nothing (skipped); a 500 then a 200 is one retry and one delivery; a stall past
 * timeout_ms is retried; a 400 is refused at once, never retried; a 429 waits its
 * Retry-After; max_attempts failures give up; a second batch reuses the connection of
 * the first; with the receiver down (connection refused) the waiting batches stay within
 * queue_max, the oldest are dropped and counted, and the newest are delivered once it is
 * back; close with batches waiting and a request under way aborts them, calls done and
 * leaves no handle; bad arguments are refused. Windows and timeouts are tens to hundreds
 * of milliseconds, so the whole file runs in a few seconds. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "chat/notify.h"
#include "http/parser.h"
#include "net/listener.h"
#include "util/log.h"

#define SECRET "test-secret-0123456789"
#define MAX_GOT 128
#define MAX_SCRIPT 16
#define STALL 0 /* a script entry: no answer */

typedef struct {
    int status; /* STALL: read the request, never answer */
    const char *extra;
} reply_t;

typedef struct {
    char *body;
    size_t len;
    char sig[160], ctype[64], method[8];
    uint64_t at; /* loop ms */
    int conn;    /* which connection (the receiver's count at its opening) */
    json_t *json;
} got_t;

typedef struct {
    int id;
} rconn_t;

static struct {
    uv_loop_t loop;
    uv_timer_t tick;
    net_loop_t *nl;
    net_listener_t *listener;
    int port;
    reply_t script[MAX_SCRIPT];
    size_t nscript;
    reply_t dflt;
    got_t got[MAX_GOT];
    size_t ngot;
    int conns;
    chat_notify_t *n;
    bool online;
    int online_asked;
    char online_user[64], online_room[64];
    int done_calls;
} t;

/* ---- the receiver ---- */

static ssize_t rx_data(net_conn_t *c, uint8_t *data, size_t len) {
    http_limits_t lim = {.max_head_size = 8192, .max_headers = 64};
    http_request_t req;
    ssize_t head = http_parse_request((const char *)data, len, &lim, &req);
    if (head == HTTP_PARSE_INCOMPLETE)
        return 0;
    if (head < 0 || req.content_length < 0)
        return -1;
    size_t total = (size_t)head + (size_t)req.content_length;
    if (len < total)
        return 0;
    assert_true(t.ngot < MAX_GOT);
    got_t *g = &t.got[t.ngot];
    *g = (got_t){.len = (size_t)req.content_length,
                 .at = uv_now(&t.loop),
                 .conn = ((rconn_t *)net_conn_ext(c))->id};
    g->body = malloc(g->len + 1);
    assert_non_null(g->body);
    memcpy(g->body, data + head, g->len);
    g->body[g->len] = '\0';
    snprintf(g->method, sizeof g->method, "%.*s", (int)req.method.len, req.method.base);
    const slice_t *sig = http_request_header(&req, "x-parley-signature");
    const slice_t *ct = http_request_header(&req, "content-type");
    if (sig)
        snprintf(g->sig, sizeof g->sig, "%.*s", (int)sig->len, sig->base);
    if (ct)
        snprintf(g->ctype, sizeof g->ctype, "%.*s", (int)ct->len, ct->base);
    g->json = json_loadb(g->body, g->len, 0, NULL);
    reply_t r = t.ngot < t.nscript ? t.script[t.ngot] : t.dflt;
    t.ngot++;
    if (r.status != STALL) {
        char resp[256];
        int n = snprintf(resp, sizeof resp, "HTTP/1.1 %d X\r\nContent-Length: 2\r\n%s\r\nok",
                         r.status, r.extra ? r.extra : "");
        assert_int_equal(net_conn_write_copy(c, resp, (size_t)n), 0);
    }
    return (ssize_t)total;
}

static void rx_close(net_conn_t *c) {}

static const net_conn_ops_t rx_ops = {rx_data, NULL, rx_close};

static void rx_open(net_conn_t *c, void *arg) {
    ((rconn_t *)net_conn_ext(c))->id = ++t.conns;
}

static void rx_listen(int port) {
    assert_int_equal(net_listener_open(t.nl, "127.0.0.1", port, true, sizeof(rconn_t), &rx_ops,
                                       rx_open, NULL, &t.listener),
                     0);
    t.port = net_listener_port(t.listener);
}

/* ---- the fixture ---- */

static void on_tick(uv_timer_t *timer) {}

static bool online(const char *user, const char *room, void *arg) {
    assert_ptr_equal(arg, &t);
    t.online_asked++;
    snprintf(t.online_user, sizeof t.online_user, "%s", user);
    snprintf(t.online_room, sizeof t.online_room, "%s", room ? room : "(null)");
    return t.online;
}

static void config(chat_notify_config_t *cfg, char *url, size_t size) {
    chat_notify_config_defaults(cfg);
    snprintf(url, size, "http://127.0.0.1:%d/hook", t.port);
    cfg->url = url;
    cfg->secret = SECRET;
    cfg->window_ms = 200;
    cfg->timeout_ms = 1000;
    cfg->backoff_ms = 50;
}

/* A loop with the receiver listening; no notifier yet (open). */
static void start(void) {
    log_threshold = LOG_LEVEL_ERROR;
    memset(&t, 0, sizeof t);
    t.dflt = (reply_t){200, NULL};
    assert_int_equal(uv_loop_init(&t.loop), 0);
    assert_non_null(t.nl = net_loop_new(&t.loop));
    /* The loop wakes every 5 ms, so that wait_got sees the time pass. */
    assert_int_equal(uv_timer_init(&t.loop, &t.tick), 0);
    assert_int_equal(uv_timer_start(&t.tick, on_tick, 5, 5), 0);
    rx_listen(0);
}

static void open_with(const chat_notify_config_t *cfg) {
    assert_int_equal(chat_notify_open(&t.loop, cfg, online, &t, &t.n), 0);
}

/* start, and a notifier with config()'s settings. */
static void start_default(void) {
    start();
    chat_notify_config_t cfg;
    char url[64];
    config(&cfg, url, sizeof url);
    open_with(&cfg);
}

static void on_done(void *arg) {
    assert_ptr_equal(arg, &t);
    t.done_calls++;
}

static void finish(void) {
    if (t.n) {
        chat_notify_close(t.n, on_done, &t);
        t.n = NULL;
    }
    if (t.listener)
        net_listener_close(t.listener);
    net_loop_abort_conns(t.nl);
    net_loop_close(t.nl);
    uv_close((uv_handle_t *)&t.tick, NULL);
    assert_int_equal(uv_run(&t.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(t.done_calls, 1);
    assert_int_equal(uv_loop_close(&t.loop), 0);
    net_loop_free(t.nl);
    for (size_t i = 0; i < t.ngot; i++) {
        free(t.got[i].body);
        json_decref(t.got[i].json);
    }
}

/* Runs the loop until at least `want` requests arrived or ms passed; true when they did. */
static bool wait_got(size_t want, uint64_t ms) {
    uv_update_time(&t.loop);
    uint64_t end = uv_now(&t.loop) + ms;
    while (t.ngot < want && uv_now(&t.loop) < end)
        uv_run(&t.loop, UV_RUN_ONCE);
    return t.ngot >= want;
}

static void run_for(uint64_t ms) {
    assert_false(wait_got(SIZE_MAX, ms));
}

static chat_notify_stats_t stats(void) {
    chat_notify_stats_t st;
    chat_notify_stats(t.n, &st);
    return st;
}

static void owe(const char *user, const char *room, const char *msg, uint64_t unread, bool urgent) {
    assert_int_equal(chat_notify_owe(t.n, user, room, msg, strlen(msg), unread, urgent), 0);
}

/* The request i was a signed JSON POST: the signature verifies with the secret, t is
 * within a few seconds of now. */
static void check_signed(size_t i) {
    got_t *g = &t.got[i];
    assert_string_equal(g->method, "POST");
    assert_string_equal(g->ctype, "application/json");
    long long ts;
    char hex[65];
    int used = 0;
    assert_int_equal(sscanf(g->sig, "t=%lld,v1=%64[0-9a-f]%n", &ts, hex, &used), 2);
    assert_int_equal((size_t)used, strlen(g->sig));
    assert_int_equal(strlen(hex), 64);
    long long now = (long long)time(NULL);
    assert_true(ts <= now && ts >= now - 5);
    char stamp[32];
    int slen = snprintf(stamp, sizeof stamp, "%lld.", ts);
    size_t mlen = (size_t)slen + g->len;
    unsigned char *signed_text = malloc(mlen);
    assert_non_null(signed_text);
    memcpy(signed_text, stamp, (size_t)slen);
    memcpy(signed_text + slen, g->body, g->len);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    assert_non_null(
        HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), signed_text, mlen, mac, &maclen));
    free(signed_text);
    assert_int_equal(maclen, 32);
    char want[65];
    for (unsigned k = 0; k < maclen; k++)
        snprintf(want + 2 * k, 3, "%02x", mac[k]);
    assert_string_equal(hex, want);
}

/* The request whose body names user and room (NULL: a direct message); fails if none. */
static got_t *find(const char *user, const char *room) {
    for (size_t i = 0; i < t.ngot; i++) {
        json_t *j = t.got[i].json;
        json_t *r = json_object_get(j, "roomId");
        if (strcmp(json_string_value(json_object_get(j, "userId")), user) == 0 &&
            (room ? json_is_string(r) && strcmp(json_string_value(r), room) == 0 : json_is_null(r)))
            return &t.got[i];
    }
    fail_msg("no request for %s in %s", user, room ? room : "a direct message");
    return NULL;
}

static json_int_t int_of(const got_t *g, const char *key) {
    json_t *v = json_object_get(g->json, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

/* ---- the tests ---- */

/* A burst within the window: one POST per (user, room), every message in order, the
 * highest unread; a direct message has roomId null; all signed; and a later batch
 * comes over a connection already open. */
static void test_burst(void **state) {
    start_default();
    uv_update_time(&t.loop);
    uint64_t owed = uv_now(&t.loop);
    owe("u1", "r1", "{\"id\":\"m1\",\"text\":\"one\"}", 1, false);
    owe("u2", "r1", "{\"id\":\"m1\",\"text\":\"one\"}", 4, false);
    owe("u1", "r1", "{\"id\":\"m2\",\"text\":\"two \\\"quoted\\\"\"}", 2, false);
    owe("u1", NULL, "{\"id\":\"d1\",\"text\":\"psst\"}", 1, false);
    owe("u1", "r1", "{\"id\":\"m3\",\"text\":\"three\"}", 3, false);
    assert_int_equal(stats().queued, 3);
    assert_true(wait_got(3, 3000));
    run_for(100);
    assert_int_equal(t.ngot, 3);
    for (size_t i = 0; i < 3; i++) {
        check_signed(i);
        /* Not before the window's end (a timer may fire a little early by the clock's
         * granularity, never by much). */
        assert_true(t.got[i].at + 5 >= owed + 200);
    }
    got_t *g = find("u1", "r1");
    assert_string_equal(g->body, "{\"userId\":\"u1\",\"roomId\":\"r1\",\"messages\":["
                                 "{\"id\":\"m1\",\"text\":\"one\"},"
                                 "{\"id\":\"m2\",\"text\":\"two \\\"quoted\\\"\"},"
                                 "{\"id\":\"m3\",\"text\":\"three\"}],"
                                 "\"unread\":3,\"urgent\":false}");
    g = find("u2", "r1");
    assert_int_equal(json_array_size(json_object_get(g->json, "messages")), 1);
    assert_int_equal(int_of(g, "unread"), 4);
    g = find("u1", NULL);
    assert_int_equal(json_array_size(json_object_get(g->json, "messages")), 1);
    assert_true(json_is_false(json_object_get(g->json, "urgent")));
    chat_notify_stats_t st = stats();
    assert_int_equal(st.sent, 3);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.inflight, 0);
    assert_int_equal(st.latency.count, 3);
    assert_true(st.latency.sum >= 3 * 0.19);
    assert_int_equal(t.online_asked, 3);

    /* Connection reuse: the next batch opens no new connection. */
    int conns = t.conns;
    owe("u3", "r2", "{\"id\":\"m9\"}", 1, true);
    assert_true(wait_got(4, 2000));
    assert_int_equal(t.conns, conns);
    check_signed(3);
    finish();
}

/* Messages past batch_max_msgs only raise unread. */
static void test_batch_cap(void **state) {
    start();
    chat_notify_config_t cfg;
    char url[64];
    config(&cfg, url, sizeof url);
    cfg.batch_max_msgs = 2;
    cfg.window_ms = 100;
    open_with(&cfg);
    char msg[32];
    for (int i = 1; i <= 5; i++) {
        snprintf(msg, sizeof msg, "{\"n\":%d}", i);
        owe("u1", "r1", msg, (uint64_t)i, false);
    }
    assert_true(wait_got(1, 2000));
    assert_string_equal(t.got[0].body, "{\"userId\":\"u1\",\"roomId\":\"r1\",\"messages\":"
                                       "[{\"n\":1},{\"n\":2}],\"unread\":5,\"urgent\":false}");
    finish();
}

/* An urgent message sends its batch at once, with what it held; other batches keep their
 * window. */
static void test_urgent(void **state) {
    start();
    chat_notify_config_t cfg;
    char url[64];
    config(&cfg, url, sizeof url);
    cfg.window_ms = 5000;
    open_with(&cfg);
    uv_update_time(&t.loop);
    uint64_t owed = uv_now(&t.loop);
    owe("u1", "r1", "{\"id\":\"m1\"}", 1, false);
    owe("u2", "r1", "{\"id\":\"m1\"}", 1, false);
    owe("u1", "r1", "{\"id\":\"m2\",\"text\":\"@u1\"}", 2, true);
    assert_true(wait_got(1, 1000));
    assert_true(t.got[0].at - owed < 500);
    check_signed(0);
    assert_string_equal(t.got[0].body, "{\"userId\":\"u1\",\"roomId\":\"r1\",\"messages\":"
                                       "[{\"id\":\"m1\"},{\"id\":\"m2\",\"text\":\"@u1\"}],"
                                       "\"unread\":2,\"urgent\":true}");
    /* A message after the batch was sealed opens a new one. */
    owe("u1", "r1", "{\"id\":\"m3\"}", 3, true);
    assert_true(wait_got(2, 1000));
    assert_string_equal(t.got[1].body, "{\"userId\":\"u1\",\"roomId\":\"r1\",\"messages\":"
                                       "[{\"id\":\"m3\"}],\"unread\":3,\"urgent\":true}");
    run_for(200);
    assert_int_equal(t.ngot, 2); /* u2's window is still open */
    assert_int_equal(stats().queued, 1);
    finish();
}

/* A user online when the batch is due gets nothing; the batch counts as skipped. */
static void test_online_skipped(void **state) {
    start_default();
    t.online = true;
    owe("u1", "r1", "{\"id\":\"m1\"}", 1, false);
    owe("u1", NULL, "{\"id\":\"d1\"}", 1, true);
    run_for(600);
    assert_int_equal(t.ngot, 0);
    assert_int_equal(t.online_asked, 2);
    assert_string_equal(t.online_user, "u1");
    assert_string_equal(t.online_room, "r1"); /* the window's batch, asked last */
    chat_notify_stats_t st = stats();
    assert_int_equal(st.skipped, 2);
    assert_int_equal(st.sent, 0);
    assert_int_equal(st.queued, 0);
    finish();
}

/* 500 then 200: retried after the backoff, delivered once. */
static void test_retry_500(void **state) {
    start_default();
    t.script[0] = (reply_t){500, NULL};
    t.nscript = 1;
    owe("u1", "r1", "{\"id\":\"m1\"}", 1, true);
    assert_true(wait_got(2, 3000));
    run_for(300);
    assert_int_equal(t.ngot, 2);
    assert_true(t.got[1].at - t.got[0].at >= 40); /* 50 ms, -20% */
    assert_string_equal(t.got[0].body, t.got[1].body);
    check_signed(0);
    check_signed(1);
    chat_notify_stats_t st = stats();
    assert_int_equal(st.sent, 1);
    assert_int_equal(st.retries, 1);
    assert_int_equal(st.failed[CHAT_NOTIFY_REJECTED] + st.failed[CHAT_NOTIFY_GAVE_UP], 0);
    assert_int_equal(t.online_asked, 2); /* asked again before the retry */
    finish();
}

/* A receiver that holds the request past timeout_ms: the request is abandoned and
 * retried. */
static void test_retry_stall(void **state) {
    start();
    chat_notify_config_t cfg;
    char url[64];
    config(&cfg, url, sizeof url);
    cfg.timeout_ms = 300;
    open_with(&cfg);
    t.script[0] = (reply_t){STALL, NULL};
    t.nscript = 1;
    owe("u1", "r1", "{\"id\":\"m1\"}", 1, true);
    assert_true(wait_got(2, 3000));
    assert_true(t.got[1].at - t.got[0].at >= 300 + 40 - 10);
    assert_int_not_equal(t.got[1].conn, t.got[0].conn); /* the stalled one was closed */
    run_for(100);
    chat_notify_stats_t st = stats();
    assert_int_equal(st.sent, 1);
    assert_int_equal(st.retries, 1);
    finish();
}

/* 400: refused for good, at once, never retried. */
static void test_rejected(void **state) {
    start_default();
    t.dflt = (reply_t){400, NULL};
    owe("u1", "r1", "{\"id\":\"m1\"}", 1, true);
    assert_true(wait_got(1, 2000));
    run_for(500); /* ten backoffs */
    assert_int_equal(t.ngot, 1);
    chat_notify_stats_t st = stats();
    assert_int_equal(st.failed[CHAT_NOTIFY_REJECTED], 1);
    assert_int_equal(st.failed[CHAT_NOTIFY_GAVE_UP], 0);
    assert_int_equal(st.retries, 0);
    assert_int_equal(st.sent, 0);
    assert_int_equal(st.queued, 0);
    finish();
}

/* 429 with Retry-After: 1 waits a second, not the 50 ms backoff. */
static void test_retry_after(void **state) {
    start_default();
    t.script[0] = (reply_t){429, "Retry-After: 1\r\n"};
    t.nscript = 1;
    owe("u1", "r1", "{\"id\":\"m1\"}", 1, true);
    assert_true(wait_got(1, 2000));
    run_for(700);
    assert_int_equal(t.ngot, 1);
    assert_true(wait_got(2, 2000));
    assert_true(t.got[1].at - t.got[0].at >= 990);
    run_for(100); /* the answer read */
    assert_int_equal(stats().sent, 1);
    finish();
}

/* Failures until max_attempts: given up, counted. */
static void test_gave_up(void **state) {
    start();
    chat_notify_config_t cfg;
    char url[64];
    config(&cfg, url, sizeof url);
    cfg.max_attempts = 3;
    cfg.backoff_ms = 20;
    open_with(&cfg);
    t.dflt = (reply_t){503, NULL};
    owe("u1", "r1", "{\"id\":\"m1\"}", 1, true);
    assert_true(wait_got(3, 2000));
    run_for(400);
    assert_int_equal(t.ngot, 3);
    /* Backoff doubles: 20 then 40 ms, each ±20%. */
    assert_true(t.got[1].at - t.got[0].at >= 15);
    assert_true(t.got[2].at - t.got[1].at >= 31);
    chat_notify_stats_t st = stats();
    assert_int_equal(st.failed[CHAT_NOTIFY_GAVE_UP], 1);
    assert_int_equal(st.retries, 2);
    assert_int_equal(st.queued, 0);
    finish();
}

/* The receiver down (connection refused) for a while: the batches waiting stay within
 * queue_max, the oldest are dropped and counted, and the newest are delivered once it
 * listens again. */
static void test_receiver_down(void **state) {
    start();
    chat_notify_config_t cfg;
    char url[64];
    config(&cfg, url, sizeof url);
    cfg.queue_max = 5;
    cfg.window_ms = 30;
    cfg.backoff_ms = 20;
    cfg.max_attempts = 1000;
    cfg.timeout_ms = 500;
    open_with(&cfg);
    int port = t.port;
    net_listener_close(t.listener); /* nobody listens on the port now */
    t.listener = NULL;
    char user[16];
    for (int i = 0; i < 12; i++) {
        snprintf(user, sizeof user, "u%02d", i);
        owe(user, "r1", "{\"id\":\"m1\"}", 1, false);
        assert_true(stats().queued <= 5);
    }
    assert_int_equal(stats().dropped, 7); /* u00..u06 */
    /* Attempts fail and wait; newer batches still push the oldest out. */
    for (int round = 0; round < 4; round++) {
        run_for(100);
        chat_notify_stats_t st = stats();
        assert_true(st.queued <= 5);
        assert_true(st.queued + st.inflight == 5);
        assert_true(st.retries > 0);
        snprintf(user, sizeof user, "u%02d", 12 + round);
        owe(user, "r1", "{\"id\":\"m1\"}", 1, false);
        assert_true(stats().queued <= 5);
    }
    chat_notify_stats_t st = stats();
    assert_int_equal(st.dropped, 11); /* u00..u10 */
    assert_int_equal(st.sent, 0);
    assert_int_equal(t.ngot, 0);
    /* Back: the five newest arrive (the longest backoff by now is about a second). */
    rx_listen(port);
    assert_int_equal(t.port, port);
    assert_true(wait_got(5, 5000));
    run_for(200);
    assert_int_equal(t.ngot, 5);
    for (int i = 11; i < 16; i++) {
        snprintf(user, sizeof user, "u%02d", i);
        find(user, "r1");
    }
    st = stats();
    assert_int_equal(st.sent, 5);
    assert_int_equal(st.dropped, 11);
    assert_int_equal(st.queued, 0);
    finish();
}

/* Close with batches waiting and a request under way: the request is aborted (the
 * receiver sees its connection close), nothing more is sent, done runs once, and no
 * handle is left (finish runs the loop to its end). */
static void test_close_pending(void **state) {
    start_default();
    t.dflt = (reply_t){STALL, NULL};
    owe("u1", "r1", "{\"id\":\"m1\"}", 1, true);
    assert_true(wait_got(1, 2000));
    owe("u2", "r1", "{\"id\":\"m1\"}", 1, false);
    owe("u3", NULL, "{\"id\":\"d1\"}", 1, false);
    chat_notify_stats_t st = stats();
    assert_int_equal(st.inflight, 1);
    assert_int_equal(st.queued, 2);
    chat_notify_close(t.n, on_done, &t);
    t.n = NULL;
    assert_int_equal(t.done_calls, 0); /* never inside close */
    run_for(600);
    assert_int_equal(t.done_calls, 1);
    assert_int_equal(t.ngot, 1);
    finish();
}

/* Arguments refused: URLs that are not http(s), an empty secret, zero limits; ids that
 * are empty or not UTF-8, a message that is not an object. */
static void test_invalid(void **state) {
    start_default();
    chat_notify_config_t cfg;
    char url[64];
    config(&cfg, url, sizeof url);
    chat_notify_t *other;
    const char *bad_urls[] = {"ftp://127.0.0.1/", "not a url", "", "file:///etc/passwd"};
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        cfg.url = bad_urls[i];
        assert_int_equal(chat_notify_open(&t.loop, &cfg, NULL, NULL, &other), -EINVAL);
    }
    config(&cfg, url, sizeof url);
    cfg.secret = "";
    assert_int_equal(chat_notify_open(&t.loop, &cfg, NULL, NULL, &other), -EINVAL);
    config(&cfg, url, sizeof url);
    cfg.queue_max = 0;
    assert_int_equal(chat_notify_open(&t.loop, &cfg, NULL, NULL, &other), -EINVAL);
    const char *msg = "{\"id\":\"m1\"}";
    size_t len = strlen(msg);
    assert_int_equal(chat_notify_owe(t.n, "", "r1", msg, len, 1, false), -EINVAL);
    assert_int_equal(chat_notify_owe(t.n, "u1", "", msg, len, 1, false), -EINVAL);
    assert_int_equal(chat_notify_owe(t.n, "u\xff", "r1", msg, len, 1, false), -EINVAL);
    assert_int_equal(chat_notify_owe(t.n, "u1", "r\xc3", msg, len, 1, false), -EINVAL);
    assert_int_equal(chat_notify_owe(t.n, "u1", "r1", "[1]", 3, 1, false), -EINVAL);
    assert_int_equal(chat_notify_owe(t.n, "u1", "r1", msg, 0, 1, false), -EINVAL);
    assert_int_equal(stats().queued, 0);
    /* A user id that needs escaping, and one longer than the map key's stack buffer. */
    char long_id[400];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    owe("u\"1\\", "r\xc3\xa9", msg, 1, true);
    owe(long_id, "r1", msg, 1, true);
    assert_true(wait_got(2, 2000));
    got_t *g = find("u\"1\\", "r\xc3\xa9");
    assert_non_null(strstr(g->body, "\"userId\":\"u\\\"1\\\\\""));
    find(long_id, "r1");
    finish();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst),         cmocka_unit_test(test_batch_cap),
        cmocka_unit_test(test_urgent),        cmocka_unit_test(test_online_skipped),
        cmocka_unit_test(test_retry_500),     cmocka_unit_test(test_retry_stall),
        cmocka_unit_test(test_rejected),      cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_gave_up),       cmocka_unit_test(test_receiver_down),
        cmocka_unit_test(test_close_pending), cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
