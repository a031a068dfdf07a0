/* tests/unit/chat/store_test.c — the chat stores (src/chat/store_*.c).
 *
 * Every behavioural test runs three times, against the SQLite store (in a fresh temporary
 * directory), the memory store, and the memory store tied to a network loop (acks from
 * its flush hook: chat_store_use_net_loop): seqs from 1 per room without gaps, callbacks in order
 * and on the loop thread and never from inside append, history paging across the window
 * (with a window of 5, so that the SQLite store has to read older pages on a worker —
 * visible as a callback that arrives after chat_store_history returned), chat_store_after,
 * last_seq, the exact JSON of a message (UTF-8, quotes, backslashes, control characters
 * and NULs), invalid input refused synchronously, max_pending and max_read, batches
 * larger than one wake-up delivers, close (also from inside a callback) flushing
 * everything pending before done, and read receipts checked against the room's messages
 * (-ENOENT when no id names one). Tied to a network loop: an append, and what its
 * callback appends in turn, acknowledged before the hooks after the store's run in the same
 * pass. SQLite only: data, seq counters and windows after a
 * reopen, the schema version and the migration of version 1's receipts, read marks (one
 * row per room and user, only forward), receipts that cannot grow the file whatever ids
 * are sent (issue 11, defect 4), the directory lock, a schema newer than the build, a
 * failed commit (a conflicting row written behind the store's back; a real write error
 * from RLIMIT_FSIZE) failing its batch and what was queued behind it, the health it
 * reports, the retries that end it and the seqs that go on without a gap (defect 5), and
 * the WAL staying bounded under continuous writes; a store opened with
 * chat_store_open_sqlite_wait while another holds the lock (calls queued, replayed in order
 * and numbered after the other's seqs once it closes; joins, forgets, receipts up to a seq
 * and the membership reads queued alike; giving up; closed while waiting). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "chat/store.h"
#include "net/conn.h"
#include "util/log.h"

#define MAX_RECORDS 16384

typedef enum { KIND_SQLITE, KIND_MEMORY } kind_t;

typedef struct {
    kind_t kind;
    uv_loop_t loop;
    chat_store_t *st;
    char dir[64];
    chat_store_config_t cfg;
    net_loop_t *nl;  /* setup_memory_net: the loop the store is tied to */
    uv_timer_t tick; /* ... and a 1 ms tick, see there */
} fx_t;

static uv_thread_t loop_thread;
static bool in_store_call; /* set around calls that must not call back synchronously */

/* ---- fixture ---- */

static void rm_dir(const char *dir) {
    static const char *const files[] = {"parley.db", "parley.db-wal", "parley.db-shm"};
    char path[128];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static int open_store(fx_t *fx) {
    chat_store_t *st = NULL;
    int err = fx->kind == KIND_SQLITE ? chat_store_open_sqlite(&fx->loop, fx->dir, &fx->cfg, &st)
                                      : chat_store_open_memory(&fx->loop, &fx->cfg, &st);
    fx->st = st;
    return err;
}

static void on_closed(void *arg) {
    *(bool *)arg = true;
}

static void run_until(fx_t *fx, const bool *flag) {
    while (!*flag)
        uv_run(&fx->loop, UV_RUN_ONCE);
}

static void close_store(fx_t *fx) {
    bool closed = false;
    chat_store_close(fx->st, on_closed, &closed);
    run_until(fx, &closed);
    fx->st = NULL;
}

static int setup(void **state, kind_t kind, size_t window) {
    log_threshold = LOG_LEVEL_WARN;
    fx_t *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    fx->kind = kind;
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/parley-store-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    chat_store_config_defaults(&fx->cfg);
    fx->cfg.window = window;
    assert_int_equal(open_store(fx), 0);
    loop_thread = uv_thread_self();
    *state = fx;
    return 0;
}

static int setup_sqlite(void **state) {
    return setup(state, KIND_SQLITE, 5);
}

static int setup_memory(void **state) {
    return setup(state, KIND_MEMORY, 5);
}

static void on_fixture_tick(uv_timer_t *t) {
    (void)t;
}

/* The memory store tied to a network loop (chat_store_use_net_loop): its acks come from
 * the loop's flush hooks, with no wake-up of their own, so a pass that delivered them in
 * the prepare phase is followed by a poll with nothing to wait for. In a server the loop
 * then waits for its sockets; here the tick bounds that wait, so that the tests' loops of
 * uv_run(UV_RUN_ONCE) go on. */
static int setup_memory_net(void **state) {
    setup(state, KIND_MEMORY, 5);
    fx_t *fx = *state;
    fx->nl = net_loop_new(&fx->loop);
    assert_non_null(fx->nl);
    assert_int_equal(chat_store_use_net_loop(fx->st, fx->nl), 0);
    assert_int_equal(chat_store_use_net_loop(fx->st, fx->nl), -EINVAL); /* once */
    assert_int_equal(uv_timer_init(&fx->loop, &fx->tick), 0);
    assert_int_equal(uv_timer_start(&fx->tick, on_fixture_tick, 1, 1), 0);
    return 0;
}

/* test_write_error lowers RLIMIT_FSIZE; whatever happens, the next test writes freely. */
static void fsize_unlimited(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_FSIZE, &rl);
    }
}

static int teardown(void **state) {
    fx_t *fx = *state;
    fsize_unlimited();
    log_threshold = LOG_LEVEL_WARN;
    if (fx->st)
        close_store(fx);
    if (fx->nl) {
        /* The store unhooked itself: the loop's passes below would find a freed store. */
        uv_close((uv_handle_t *)&fx->tick, NULL);
        net_loop_close(fx->nl);
        assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
        net_loop_free(fx->nl);
    }
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    rm_dir(fx->dir);
    free(fx);
    return 0;
}

/* ---- recording callbacks ---- */

typedef struct {
    char room[16];
    uint64_t seq;
    int err;
    char id[48];
} record_t;

static record_t records[MAX_RECORDS];
static size_t nrecords;
static bool off_loop; /* a callback ran on another thread or inside a store call */

static void on_append(int err, chat_msg_t *msg, void *arg) {
    if (!uv_thread_equal(&loop_thread, &(uv_thread_t){uv_thread_self()}) || in_store_call)
        off_loop = true;
    assert_true(nrecords < MAX_RECORDS);
    record_t *r = &records[nrecords++];
    snprintf(r->room, sizeof r->room, "%s", msg->room_id);
    snprintf(r->id, sizeof r->id, "%s", msg->id);
    r->seq = msg->seq;
    r->err = err;
    (void)arg;
}

static void reset_records(void) {
    nrecords = 0;
    off_loop = false;
}

/* Appends one message and checks the synchronous part of the contract. */
static chat_msg_t *append(fx_t *fx, const char *room, const char *text) {
    chat_msg_t *m = NULL;
    in_store_call = true;
    int err = chat_store_append(fx->st, room, "u1", "Ann", text, strlen(text), on_append, NULL, &m);
    in_store_call = false;
    assert_int_equal(err, 0);
    assert_non_null(m);
    return m;
}

static void wait_records(fx_t *fx, size_t n) {
    while (nrecords < n)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(nrecords, n);
}

/* Appends n messages "<room> #i" to room and waits for their acks. */
static void fill(fx_t *fx, const char *room, int n) {
    size_t start = nrecords;
    for (int i = 0; i < n; i++) {
        char text[64];
        snprintf(text, sizeof text, "%s #%d", room, i + 1);
        append(fx, room, text);
    }
    wait_records(fx, start + (size_t)n);
}

/* ---- history results ---- */

typedef struct {
    bool called, sync;
    int err;
    size_t n;
    uint64_t seqs[64];
    char *json[64];
} hist_t;

static void on_history(int err, chat_msg_t *const *msgs, size_t n, void *arg) {
    hist_t *h = arg;
    if (!uv_thread_equal(&loop_thread, &(uv_thread_t){uv_thread_self()}))
        off_loop = true;
    assert_false(h->called);
    h->called = true;
    h->sync = in_store_call;
    h->err = err;
    h->n = n;
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++) {
        h->seqs[i] = msgs[i]->seq;
        h->json[i] = strdup(msgs[i]->json);
    }
}

static void hist_free(hist_t *h) {
    for (size_t i = 0; i < h->n; i++)
        free(h->json[i]);
    memset(h, 0, sizeof *h);
}

static void hist_wait(fx_t *fx, hist_t *h, int rc) {
    assert_int_equal(rc, 0);
    while (!h->called)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(h->err, 0);
}

static void history(fx_t *fx, hist_t *h, const char *room, uint64_t before, size_t limit) {
    memset(h, 0, sizeof *h);
    in_store_call = true;
    int rc = chat_store_history(fx->st, room, before, limit, on_history, h);
    in_store_call = false;
    hist_wait(fx, h, rc);
}

static void after(fx_t *fx, hist_t *h, const char *room, uint64_t after_seq, size_t limit) {
    memset(h, 0, sizeof *h);
    in_store_call = true;
    int rc = chat_store_after(fx->st, room, after_seq, limit, on_history, h);
    in_store_call = false;
    hist_wait(fx, h, rc);
}

/* Checks that h holds exactly seqs lo..hi and frees it. */
static void expect_range(hist_t *h, uint64_t lo, uint64_t hi) {
    size_t n = hi >= lo ? (size_t)(hi - lo + 1) : 0;
    if (h->n != n)
        fail_msg("expected %zu messages (%llu..%llu), got %zu", n, (unsigned long long)lo,
                 (unsigned long long)hi, h->n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(h->seqs[i], lo + i);
    hist_free(h);
}

/* ---- tests: both stores ---- */

static void test_seq_per_room(void **state) {
    fx_t *fx = *state;
    reset_records();
    static const char *const rooms[] = {"a", "b", "c"};
    uint64_t expect[3] = {0};
    for (int i = 0; i < 30; i++) {
        int r = (i * 7) % 3; /* interleaved */
        chat_msg_t *m = append(fx, rooms[r], "hi");
        assert_int_equal(m->seq, ++expect[r]);
        assert_string_equal(m->room_id, rooms[r]);
        assert_int_equal(chat_store_last_seq(fx->st, rooms[r]), expect[r]);
    }
    assert_int_equal(nrecords, 0); /* nothing acknowledged synchronously */
    wait_records(fx, 30);
    assert_false(off_loop);
    /* Callbacks in append order, so per room in seq order from 1 without gaps. */
    uint64_t seen[3] = {0};
    for (size_t i = 0; i < 30; i++) {
        int r = ((int)i * 7) % 3;
        assert_int_equal(records[i].err, 0);
        assert_string_equal(records[i].room, rooms[r]);
        assert_int_equal(records[i].seq, ++seen[r]);
    }
    for (size_t i = 0; i < 30; i++)
        for (size_t j = i + 1; j < 30; j++)
            assert_string_not_equal(records[i].id, records[j].id);
    assert_int_equal(chat_store_last_seq(fx->st, "a"), 10);
    assert_int_equal(chat_store_last_seq(fx->st, "nope"), 0);
}

static void test_many_batches(void **state) {
    fx_t *fx = *state;
    reset_records();
    /* Appends spread over many loop iterations, so over many commits. */
    size_t total = 0;
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < 52; i++) {
            char room[8];
            snprintf(room, sizeof room, "r%d", i % 4);
            append(fx, room, "x");
            total++;
        }
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    }
    wait_records(fx, total);
    assert_false(off_loop);
    uint64_t next[4] = {1, 1, 1, 1};
    for (size_t i = 0; i < total; i++) {
        int r = records[i].room[1] - '0';
        assert_int_equal(records[i].err, 0);
        assert_int_equal(records[i].seq, next[r]++);
    }
    for (int r = 0; r < 4; r++)
        assert_int_equal(next[r] - 1, 520);
}

/* A flush hook registered after the store's: what each of its runs finds delivered. */
static size_t probe_runs, probe_first, probe_last, probe_max_step;

static void probe_reset(void) {
    probe_runs = probe_first = probe_last = probe_max_step = 0;
}

static void probe_hook(void *arg) {
    (void)arg;
    if (probe_runs++ == 0)
        probe_first = nrecords;
    if (nrecords - probe_last > probe_max_step)
        probe_max_step = nrecords - probe_last;
    probe_last = nrecords;
}

/* One batch bigger than what one wake-up delivers (STORE_DELIVER_MAX): still every
 * callback, in order, the rest on later iterations (tied to a network loop: on later
 * runs of its hooks, each delivering at most as many). */
static void test_big_batch(void **state) {
    fx_t *fx = *state;
    reset_records();
    probe_reset();
    if (fx->nl)
        assert_int_equal(net_loop_on_flush(fx->nl, probe_hook, NULL), 0);
    for (int i = 0; i < 3000; i++)
        append(fx, i % 3 ? "big" : "small", "x");
    uv_run(&fx->loop, UV_RUN_ONCE); /* the flush */
    while (nrecords == 0)
        uv_run(&fx->loop, UV_RUN_ONCE);
    if (fx->nl)
        assert_int_equal(probe_first, 1024);
    else
        assert_true(nrecords <= 1024);
    wait_records(fx, 3000);
    if (fx->nl) {
        assert_int_equal(probe_max_step, 1024);
        net_loop_off_flush(fx->nl, probe_hook, NULL);
    }
    assert_false(off_loop);
    uint64_t big = 0, small = 0;
    for (size_t i = 0; i < 3000; i++) {
        assert_int_equal(records[i].err, 0);
        assert_int_equal(records[i].seq, i % 3 ? ++big : ++small);
    }
}

static void test_history_paging(void **state) {
    fx_t *fx = *state;
    bool sqlite = fx->kind == KIND_SQLITE;
    reset_records();
    fill(fx, "r", 12);
    fill(fx, "other", 3);
    hist_t h;

    history(fx, &h, "r", 0, 5); /* the window: 8..12 */
    assert_true(h.sync);
    expect_range(&h, 8, 12);
    history(fx, &h, "r", 0, 3);
    assert_true(h.sync);
    expect_range(&h, 10, 12);
    history(fx, &h, "r", 11, 2);
    assert_true(h.sync);
    expect_range(&h, 9, 10);
    history(fx, &h, "r", 100, 5); /* before beyond the end: the newest */
    expect_range(&h, 8, 12);

    history(fx, &h, "r", 8, 3); /* just below the window */
    assert_true(h.sync == !sqlite);
    expect_range(&h, 5, 7);
    history(fx, &h, "r", 10, 4); /* straddles the window's start */
    assert_true(h.sync == !sqlite);
    expect_range(&h, 6, 9);
    history(fx, &h, "r", 3, 10); /* the first page */
    expect_range(&h, 1, 2);
    history(fx, &h, "r", 0, 100);
    assert_true(h.sync == !sqlite);
    expect_range(&h, 1, 12);
    /* Paging backwards the way a client does: before = the oldest seq seen so far. */
    uint64_t before = 0, expect_hi = 12;
    for (;;) {
        history(fx, &h, "r", before, 4);
        if (h.n == 0)
            break;
        assert_int_equal(h.seqs[h.n - 1], expect_hi);
        before = h.seqs[0];
        expect_hi = before - 1;
        hist_free(&h);
    }
    assert_int_equal(before, 1);

    history(fx, &h, "r", 1, 5); /* nothing before the first */
    assert_true(h.sync);
    expect_range(&h, 1, 0);
    history(fx, &h, "r", 0, 0);
    expect_range(&h, 1, 0);
    history(fx, &h, "unknown", 0, 5);
    assert_true(h.sync);
    expect_range(&h, 1, 0);
    history(fx, &h, "other", 0, 50);
    expect_range(&h, 1, 3);
    assert_false(off_loop);
}

static void test_history_only_acknowledged(void **state) {
    fx_t *fx = *state;
    reset_records();
    fill(fx, "r", 3);
    append(fx, "r", "pending");
    assert_int_equal(chat_store_last_seq(fx->st, "r"), 4);
    hist_t h;
    history(fx, &h, "r", 0, 10); /* synchronous: the append is not acknowledged yet */
    assert_true(h.sync);
    expect_range(&h, 1, 3);
    after(fx, &h, "r", 3, 10);
    expect_range(&h, 1, 0);
    wait_records(fx, 4);
    history(fx, &h, "r", 0, 10);
    expect_range(&h, 1, 4);
}

static void test_after(void **state) {
    fx_t *fx = *state;
    bool sqlite = fx->kind == KIND_SQLITE;
    reset_records();
    fill(fx, "r", 12);
    hist_t h;
    after(fx, &h, "r", 0, 5);
    assert_true(h.sync == !sqlite);
    expect_range(&h, 1, 5);
    after(fx, &h, "r", 5, 100);
    expect_range(&h, 6, 12);
    after(fx, &h, "r", 7, 3); /* inside the window (8..12) */
    assert_true(h.sync);
    expect_range(&h, 8, 10);
    after(fx, &h, "r", 10, 1);
    expect_range(&h, 11, 11);
    after(fx, &h, "r", 12, 5);
    assert_true(h.sync);
    expect_range(&h, 1, 0);
    /* A position beyond the history (another history's, a wiped store): -ERANGE. */
    memset(&h, 0, sizeof h);
    assert_int_equal(chat_store_after(fx->st, "r", 1000, 5, on_history, &h), 0);
    while (!h.called)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(h.err, -ERANGE);
    assert_int_equal(h.n, 0);
    memset(&h, 0, sizeof h);
    assert_int_equal(chat_store_after(fx->st, "unknown", 1, 5, on_history, &h), 0);
    while (!h.called)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(h.err, -ERANGE);
    after(fx, &h, "unknown", 0, 5);
    expect_range(&h, 1, 0);
    /* Resuming in steps covers everything exactly once. */
    uint64_t last = 0;
    for (;;) {
        after(fx, &h, "r", last, 5);
        if (h.n == 0)
            break;
        assert_int_equal(h.seqs[0], last + 1);
        last = h.seqs[h.n - 1];
        hist_free(&h);
    }
    assert_int_equal(last, 12);
}

static void test_max_read(void **state) {
    fx_t *fx = *state;
    close_store(fx);
    fx->cfg.max_read = 4;
    assert_int_equal(open_store(fx), 0);
    reset_records();
    fill(fx, "r", 10);
    hist_t h;
    history(fx, &h, "r", 0, 100);
    expect_range(&h, 7, 10);
    after(fx, &h, "r", 0, 100);
    expect_range(&h, 1, 4);
}

/* The JSON a message carries, with its keys in the documented order. */
static void expect_json(const chat_msg_t *m, const char *text_json) {
    char want[1024];
    snprintf(want, sizeof want,
             "{\"id\":\"%s\",\"seq\":%llu,\"roomId\":\"%s\",\"userId\":\"%s\","
             "\"username\":\"%s\",\"text\":%s,\"timestamp\":%lld}",
             m->id, (unsigned long long)m->seq, "room \\\"1\\\"", "u\\\\1", "Zoë", text_json,
             (long long)m->timestamp);
    assert_string_equal(m->json, want);
    assert_int_equal(m->json_len, strlen(want));
}

static const char json_text[] = "h\xC3\xA9llo \xE2\x9C\x93 \xF0\x9F\x98\x80 \"q\" back\\slash\n"
                                "tab\t cr\r bell\x07 nul\0end </script>";
static const char json_text_json[] = "\"h\xC3\xA9llo \xE2\x9C\x93 \xF0\x9F\x98\x80 \\\"q\\\" "
                                     "back\\\\slash\\ntab\\t cr\\r bell\\u0007 nul\\u0000end "
                                     "</script>\"";

static void test_json(void **state) {
    fx_t *fx = *state;
    reset_records();
    chat_msg_t *m = NULL;
    int64_t t0 = (int64_t)time(NULL) * 1000;
    in_store_call = true;
    assert_int_equal(chat_store_append(fx->st, "room \"1\"", "u\\1", "Zo\xC3\xAB", json_text,
                                       sizeof json_text - 1, on_append, NULL, &m),
                     0);
    in_store_call = false;
    chat_msg_ref(m);
    assert_int_equal(m->seq, 1);
    assert_int_equal(m->text_len, sizeof json_text - 1);
    assert_memory_equal(m->text, json_text, sizeof json_text - 1);
    assert_int_equal(m->text[m->text_len], '\0');
    assert_string_equal(m->username, "Zo\xC3\xAB");
    assert_int_equal(strlen(m->id), 16 + 1 + 1); /* "<16 hex>-1" */
    assert_int_equal(m->id[16], '-');
    assert_true(m->timestamp >= t0 - 1000 && m->timestamp <= t0 + 5000);
    expect_json(m, json_text_json);
    wait_records(fx, 1);

    /* What history returns is the same text, from the window and (SQLite) from disk. */
    hist_t h;
    history(fx, &h, "room \"1\"", 0, 1);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.json[0], m->json);
    hist_free(&h);
    if (fx->kind == KIND_SQLITE) {
        close_store(fx);
        assert_int_equal(open_store(fx), 0);
        history(fx, &h, "room \"1\"", 0, 1);
        assert_false(h.sync); /* windows start empty after a restart */
        assert_int_equal(h.n, 1);
        assert_string_equal(h.json[0], m->json);
        hist_free(&h);
    }
    chat_msg_unref(m);
}

static void test_rejects(void **state) {
    fx_t *fx = *state;
    reset_records();
    chat_msg_t *m = (chat_msg_t *)1;
    assert_int_equal(chat_store_append(fx->st, "r", "u", "n", "bad \xFF", 5, on_append, NULL, &m),
                     -EINVAL);
    assert_null(m);
    assert_int_equal(chat_store_append(fx->st, "r\xC0\xAF", "u", "n", "x", 1, on_append, NULL, &m),
                     -EINVAL);
    assert_int_equal(chat_store_append(fx->st, "r", "u", "\xED\xA0\x80", "x", 1, NULL, NULL, &m),
                     -EINVAL); /* a surrogate */
    assert_int_equal(chat_store_append(fx->st, NULL, "u", "n", "x", 1, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(chat_store_append(fx->st, "r", "u", "n", NULL, 1, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(chat_store_last_seq(fx->st, "r"), 0);
    /* An empty text is fine; so are a NULL callback and a NULL out. */
    assert_int_equal(chat_store_append(fx->st, "r", "u", "n", NULL, 0, NULL, NULL, NULL), 0);
    m = append(fx, "r", "after");
    assert_int_equal(m->seq, 2);
    wait_records(fx, 1);
    assert_int_equal(records[0].seq, 2);
    assert_int_equal(chat_store_history(fx->st, "r", 0, 1, NULL, NULL), -EINVAL);
}

static void test_max_pending(void **state) {
    fx_t *fx = *state;
    close_store(fx);
    fx->cfg.max_pending = 3;
    assert_int_equal(open_store(fx), 0);
    reset_records();
    for (int i = 0; i < 3; i++)
        append(fx, "r", "x");
    assert_int_equal(chat_store_append(fx->st, "r", "u", "n", "x", 1, on_append, NULL, NULL),
                     -EAGAIN);
    const char *ids[] = {"x"};
    assert_int_equal(chat_store_mark_read(fx->st, "r", "u", ids, 1, 0, NULL, NULL), -EAGAIN);
    assert_int_equal(chat_store_last_seq(fx->st, "r"), 3);
    wait_records(fx, 3);
    append(fx, "r", "x");
    wait_records(fx, 4);
    assert_int_equal(records[3].seq, 4);
}

static int done_calls, done_err;
static void on_done(int err, void *arg) {
    if (in_store_call)
        off_loop = true;
    done_calls++;
    if (err)
        done_err = err;
    if (arg)
        assert_int_equal(*(int *)arg, done_calls);
}

static uint64_t last_mark; /* the mark the last on_marked call reported */

static void on_marked(int err, uint64_t mark, void *arg) {
    last_mark = mark;
    on_done(err, arg);
}

static void test_mark_read_order(void **state) {
    fx_t *fx = *state;
    reset_records();
    done_calls = done_err = 0;
    chat_msg_t *m = append(fx, "r", "one");
    const char *ids[] = {m->id};
    int one = 1, two = 2;
    in_store_call = true;
    assert_int_equal(chat_store_mark_read(fx->st, "r", "u2", ids, 1, 0, on_marked, &one), 0);
    assert_int_equal(chat_store_mark_read(fx->st, "r", "u3", ids, 0, 0, on_marked, &two), 0);
    assert_int_equal(chat_store_mark_read(fx->st, "r", "u2", ids, 1, 0, NULL, NULL), 0);
    assert_int_equal(chat_store_mark_read(fx->st, "r", "u2", NULL, 1, 0, NULL, NULL), -EINVAL);
    in_store_call = false;
    append(fx, "r", "two");
    assert_int_equal(done_calls, 0);
    wait_records(fx, 2);
    assert_int_equal(done_calls, 2); /* queued in order with the appends */
    assert_int_equal(done_err, 0);
    assert_false(off_loop);
}

/* Each mark_read's result, in call order. */
static int mark_results[16];
static size_t nmark_results;
static void on_mark_result(int err, uint64_t mark, void *arg) {
    (void)mark;
    (void)arg;
    if (in_store_call)
        off_loop = true;
    assert_true(nmark_results < 16);
    mark_results[nmark_results++] = err;
}

/* Receipts name messages of their room (issue 11, defect 4): a call succeeds when at
 * least one id does, and answers -ENOENT (nothing stored) when none does — made-up ids,
 * too long ones, ids of another room, or of this store's format but no message. A message
 * appended just before counts. The same answers from both stores. */
static void test_mark_read_checked(void **state) {
    fx_t *fx = *state;
    reset_records();
    nmark_results = 0;
    fill(fx, "r", 3);
    fill(fx, "o", 1);
    char r2[48], o1[48], unknown[48], longer[200];
    snprintf(r2, sizeof r2, "%s", records[1].id);
    snprintf(o1, sizeof o1, "%s", records[3].id);
    snprintf(unknown, sizeof unknown, "%.16s-fffff", records[0].id);
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    static const int expect[] = {-ENOENT, -ENOENT, 0, 0, -ENOENT, -ENOENT, 0, -ENOENT};
    const char *calls[][2] = {
        {"bogus", NULL}, {o1, NULL},      {"bogus", r2}, {NULL, NULL},
        {"", longer},    {unknown, NULL}, {NULL, NULL},  {r2, NULL},
    };
    static const size_t counts[] = {1, 1, 2, 0, 2, 1, 1, 1};
    in_store_call = true;
    for (size_t i = 0; i < 8; i++) {
        const char *room = i == 7 ? "o" : "r";
        if (i == 6) {
            /* A message appended in the same iteration, not yet acknowledged. */
            chat_msg_t *m = NULL;
            assert_int_equal(
                chat_store_append(fx->st, "r", "u1", "Ann", "new", 3, on_append, NULL, &m), 0);
            calls[6][0] = m->id;
        }
        assert_int_equal(
            chat_store_mark_read(fx->st, room, "u", calls[i], counts[i], 0, on_mark_result, NULL),
            0);
    }
    in_store_call = false;
    assert_int_equal(nmark_results, 0);
    while (nmark_results < 8)
        uv_run(&fx->loop, UV_RUN_ONCE);
    for (size_t i = 0; i < 8; i++)
        if (mark_results[i] != expect[i])
            fail_msg("call %zu answered %d, not %d", i, mark_results[i], expect[i]);
    assert_false(off_loop);
}

static size_t closed_records;
static void on_closed_count(void *arg) {
    closed_records = nrecords;
    *(bool *)arg = true;
}

static void test_close_flushes(void **state) {
    fx_t *fx = *state;
    reset_records();
    done_calls = 0;
    for (int i = 0; i < 300; i++)
        append(fx, i % 2 ? "odd" : "even", "bye");
    const char *ids[] = {"whatever"};
    assert_int_equal(chat_store_mark_read(fx->st, "odd", "u", ids, 1, 0, on_marked, NULL), 0);
    bool closed = false;
    chat_store_close(fx->st, on_closed_count, &closed); /* before the loop ever ran */
    assert_int_equal(nrecords, 0);
    hist_t h = {0};
    assert_int_equal(chat_store_history(fx->st, "odd", 0, 5, on_history, &h), -ECANCELED);
    assert_int_equal(chat_store_append(fx->st, "odd", "u", "n", "x", 1, on_append, NULL, NULL),
                     -ECANCELED);
    run_until(fx, &closed);
    fx->st = NULL;
    assert_int_equal(closed_records, 300);
    assert_int_equal(done_calls, 1);
    for (size_t i = 0; i < 300; i++) {
        assert_int_equal(records[i].err, 0);
        assert_int_equal(records[i].seq, i / 2 + 1);
    }
    if (fx->kind == KIND_SQLITE) {
        assert_int_equal(open_store(fx), 0);
        assert_int_equal(chat_store_last_seq(fx->st, "odd"), 150);
        assert_int_equal(chat_store_last_seq(fx->st, "even"), 150);
    }
}

/* close from inside an append callback, with more acks of the same batch still to come
 * and a worker read in flight. */
static fx_t *cb_fx;
static bool cb_closed;
static hist_t cb_hist;
static void on_append_close(int err, chat_msg_t *msg, void *arg) {
    on_append(err, msg, arg);
    if (msg->seq == 8) {
        assert_int_equal(chat_store_after(cb_fx->st, "r", 0, 3, on_history, &cb_hist), 0);
        chat_store_close(cb_fx->st, on_closed, &cb_closed);
    }
}

static void test_close_from_callback(void **state) {
    fx_t *fx = *state;
    reset_records();
    cb_fx = fx;
    cb_closed = false;
    memset(&cb_hist, 0, sizeof cb_hist);
    for (int i = 0; i < 10; i++)
        assert_int_equal(
            chat_store_append(fx->st, "r", "u", "n", "x", 1, on_append_close, NULL, NULL), 0);
    run_until(fx, &cb_closed);
    fx->st = NULL;
    assert_int_equal(nrecords, 10);
    assert_true(cb_hist.called);
    expect_range(&cb_hist, 1, 3);
}

/* ---- tests: the memory store tied to a network loop ---- */

static fx_t *chain_fx;
static int chain_left;

/* An append callback that appends the next message while chain_left lasts. */
static void on_append_chain(int err, chat_msg_t *msg, void *arg) {
    on_append(err, msg, arg);
    if (chain_left-- > 0)
        assert_int_equal(chat_store_append(chain_fx->st, msg->room_id, "u", "n", "next", 4,
                                           on_append_chain, NULL, NULL),
                         0);
}

/* Acks come from the store's flush hook: by the time a later hook (Engine.IO's, the
 * flush itself) runs in that pass, an append made before it is acknowledged, with what
 * its callback appended in turn; never inside append. */
static void test_net_hook(void **state) {
    fx_t *fx = *state;
    reset_records();
    probe_reset();
    assert_int_equal(net_loop_on_flush(fx->nl, probe_hook, NULL), 0);
    chain_fx = fx;
    chain_left = 9;
    in_store_call = true;
    assert_int_equal(
        chat_store_append(fx->st, "r", "u", "n", "first", 5, on_append_chain, NULL, NULL), 0);
    in_store_call = false;
    assert_int_equal(nrecords, 0);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_int_equal(probe_first, 10);
    assert_false(off_loop);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(records[i].seq, i + 1);
    net_loop_off_flush(fx->nl, probe_hook, NULL);
}

/* ---- tests: SQLite only ---- */

static sqlite3 *db_open(const fx_t *fx) {
    char path[128];
    snprintf(path, sizeof path, "%s/parley.db", fx->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int64_t db_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static void test_reopen(void **state) {
    fx_t *fx = *state;
    reset_records();
    fill(fx, "a", 12);
    fill(fx, "b", 3);
    fill(fx, "c\xC3\xA9", 1);
    hist_t before_close;
    history(fx, &before_close, "a", 0, 12);
    assert_int_equal(before_close.n, 12);
    char first_id[48];
    snprintf(first_id, sizeof first_id, "%s", records[0].id);
    close_store(fx);

    assert_int_equal(open_store(fx), 0);
    assert_int_equal(chat_store_last_seq(fx->st, "a"), 12);
    assert_int_equal(chat_store_last_seq(fx->st, "b"), 3);
    assert_int_equal(chat_store_last_seq(fx->st, "c\xC3\xA9"), 1);
    /* The same messages, byte for byte. */
    hist_t h;
    history(fx, &h, "a", 0, 12);
    assert_false(h.sync);
    assert_int_equal(h.n, 12);
    for (size_t i = 0; i < 12; i++)
        assert_string_equal(h.json[i], before_close.json[i]);
    hist_free(&h);
    hist_free(&before_close);
    /* That read warmed the window (newest 5 of a), so the newest page is a hit now. */
    history(fx, &h, "a", 0, 5);
    assert_true(h.sync);
    expect_range(&h, 8, 12);
    history(fx, &h, "a", 8, 2);
    assert_false(h.sync);
    expect_range(&h, 6, 7);

    /* Counting resumes without a gap; ids differ from the first run's. */
    size_t n0 = nrecords;
    chat_msg_t *m = append(fx, "a", "again");
    assert_int_equal(m->seq, 13);
    assert_string_not_equal(m->id, first_id);
    assert_memory_not_equal(m->id, first_id, 16); /* a new random prefix */
    m = append(fx, "new", "first");
    assert_int_equal(m->seq, 1);
    wait_records(fx, n0 + 2);
    history(fx, &h, "a", 0, 3);
    expect_range(&h, 11, 13);
    after(fx, &h, "a", 10, 10);
    expect_range(&h, 11, 13);
    close_store(fx);

    sqlite3 *db = db_open(fx);
    assert_int_equal(db_int(db, "SELECT COUNT(*) FROM messages"), 18);
    assert_int_equal(db_int(db, "SELECT COUNT(DISTINCT id) FROM messages"), 18);
    sqlite3_close(db);
    assert_int_equal(open_store(fx), 0);
}

static void test_schema(void **state) {
    fx_t *fx = *state;
    close_store(fx);
    sqlite3 *db = db_open(fx);
    assert_int_equal(db_int(db, "PRAGMA user_version"), 3);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    assert_int_equal(db_int(db, "SELECT COUNT(*) FROM sqlite_schema WHERE name IN "
                                "('messages', 'read_marks', 'messages_id', 'write_probe', "
                                "'members', 'members_user')"),
                     6);
    assert_int_equal(db_int(db, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'read_receipts'"),
                     0);
    /* A database from a newer build is refused, and left alone. */
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    log_threshold = LOG_LEVEL_ERROR + 1; /* the refusals below are logged at error */
    assert_true(open_store(fx) < 0);
    assert_null(fx->st);
    db = db_open(fx);
    assert_int_equal(db_int(db, "PRAGMA user_version"), 99);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 3", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(open_store(fx), 0);
    /* A second store on the same directory is refused while the first is open. */
    chat_store_t *other = NULL;
    assert_int_equal(chat_store_open_sqlite(&fx->loop, fx->dir, &fx->cfg, &other), -EBUSY);
    assert_null(other);
    log_threshold = LOG_LEVEL_WARN;
}

/* Reopens the store with quick retries (a failed commit is retried after 5 ms, then 10,
 * 20, 40 at most), so the failure tests do not wait for the defaults. */
static void reopen_quick_retries(fx_t *fx) {
    close_store(fx);
    fx->cfg.retry_min_ms = 5;
    fx->cfg.retry_max_ms = 40;
    assert_int_equal(open_store(fx), 0);
}

static void on_tick(uv_timer_t *t) {
    (void)t;
}

static void on_tick_closed(uv_handle_t *h) {
    *(bool *)h->data = true;
}

/* Runs the loop until chat_store_health is 0 (healthy) or not (failing), at most ms. */
static void wait_health(fx_t *fx, bool healthy, unsigned ms) {
    uint64_t deadline = uv_hrtime() + (uint64_t)ms * 1000000u;
    uv_timer_t tick; /* wakes the loop every 10 ms, so the deadline is checked */
    bool closed = false;
    tick.data = &closed;
    assert_int_equal(uv_timer_init(&fx->loop, &tick), 0);
    assert_int_equal(uv_timer_start(&tick, on_tick, 10, 10), 0);
    while ((chat_store_health(fx->st, NULL) == 0) != healthy && uv_hrtime() < deadline)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, on_tick_closed);
    run_until(fx, &closed);
    const char *why = NULL;
    int h = chat_store_health(fx->st, &why);
    if ((h == 0) != healthy)
        fail_msg("after %u ms the store is still %s (%d: %s)", ms, h ? "failing" : "healthy", h,
                 why);
}

/* The store's read marks as "room/user:seq:message_id" lines, sorted. */
static void marks(const fx_t *fx, char *out, size_t len) {
    sqlite3 *db = db_open(fx);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT room_id || '/' || user_id || ':' || seq || ':' || "
                                        "message_id FROM read_marks ORDER BY 1",
                                        -1, &s, NULL),
                     SQLITE_OK);
    size_t used = 0;
    out[0] = '\0';
    while (sqlite3_step(s) == SQLITE_ROW)
        used += (size_t)snprintf(out + used, len - used, "%s\n", sqlite3_column_text(s, 0));
    assert_true(used < len);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void mark(fx_t *fx, const char *room, const char *user, const char *const *ids, size_t n,
                 int expect) {
    done_calls = done_err = 0;
    assert_int_equal(chat_store_mark_read(fx->st, room, user, ids, n, 0, on_marked, NULL), 0);
    while (done_calls < 1)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(done_err, expect);
}

static int results_ok, results_enoent, results_other;
static void on_result(int err, uint64_t mark, void *arg) {
    (void)mark;
    (void)arg;
    if (err == 0)
        results_ok++;
    else if (err == -ENOENT)
        results_enoent++;
    else
        results_other++;
}

/* A receipt is a position: one row per (room, user) with the highest seq read, moved only
 * forward, by ids of that room only. */
static void test_read_marks(void **state) {
    fx_t *fx = *state;
    reset_records();
    fill(fx, "r", 5);
    fill(fx, "o", 1);
    char ids[6][48];
    for (size_t i = 0; i < 6; i++)
        snprintf(ids[i], sizeof ids[i], "%s", records[i].id);
    char want[512], got[512];

    mark(fx, "r", "u2", (const char *[]){ids[2]}, 1, 0);
    snprintf(want, sizeof want, "r/u2:3:%s\n", ids[2]);
    marks(fx, got, sizeof got);
    assert_string_equal(got, want);
    sqlite3 *db = db_open(fx);
    int64_t now = (int64_t)time(NULL) * 1000;
    int64_t t = db_int(db, "SELECT read_at FROM read_marks WHERE user_id = 'u2'");
    assert_true(t > now - 10000 && t < now + 10000);
    assert_int_equal(sqlite3_exec(db, "UPDATE read_marks SET read_at = 5", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    /* Never back: an older message is fine (0) and changes nothing, not even the time. */
    mark(fx, "r", "u2", (const char *[]){ids[0], ids[1]}, 2, 0);
    marks(fx, got, sizeof got);
    assert_string_equal(got, want);
    db = db_open(fx);
    assert_int_equal(db_int(db, "SELECT read_at FROM read_marks"), 5);
    sqlite3_close(db);

    /* Forward to the highest id given; unknown ids beside it are ignored. */
    mark(fx, "r", "u2", (const char *[]){"nope", ids[4], ids[3]}, 3, 0);
    mark(fx, "r", "u3", (const char *[]){ids[1]}, 1, 0);
    /* Another room's message is no message of r; r's are none of o's. */
    mark(fx, "r", "u4", (const char *[]){ids[5]}, 1, -ENOENT);
    mark(fx, "o", "u2", (const char *[]){ids[4]}, 1, -ENOENT);
    snprintf(want, sizeof want, "r/u2:5:%s\nr/u3:2:%s\n", ids[4], ids[1]);
    marks(fx, got, sizeof got);
    assert_string_equal(got, want);
}

/* Issue 11, defect 4: markRead stored every string it was given, one row each, so one
 * user grew the database at 36.7 MB/s. Whatever ids arrive — made up, too long, another
 * room's, the same valid ones again and again — the file must not grow: afterwards the
 * tables other than messages hold one row (the one read mark) and the file is as small as
 * the messages make it. */
static void test_receipts_bounded(void **state) {
    fx_t *fx = *state;
    reset_records();
    fill(fx, "r", 5);
    fill(fx, "o", 1);
    char valid[6][48];
    for (size_t i = 0; i < 6; i++)
        snprintf(valid[i], sizeof valid[i], "%s", records[i].id);
    char longer[300];
    memset(longer, 'z', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';

    enum { CALLS = 400, IDS = 50 };
    static char bogus[IDS][40];
    const char *ids[IDS];
    results_ok = results_enoent = results_other = 0;
    for (int c = 0; c < CALLS; c++) {
        for (int j = 0; j < IDS; j++) {
            /* Id-shaped (so they are looked up, not dropped on arrival) and all distinct. */
            snprintf(bogus[j], sizeof bogus[j], "%.16s-%x", valid[0], 0x100000 + c * IDS + j);
            ids[j] = bogus[j];
        }
        ids[0] = longer;
        ids[1] = valid[5]; /* room o's */
        if (c % 4 == 0)
            ids[2] = valid[c % 5]; /* the same few valid ids, again and again */
        assert_int_equal(chat_store_mark_read(fx->st, "r", "u", ids, IDS, 0, on_result, NULL), 0);
        if (c % 50 == 49) /* a few commits, not one per call */
            while (results_ok + results_enoent + results_other < c + 1)
                uv_run(&fx->loop, UV_RUN_ONCE);
    }
    close_store(fx); /* checkpoints the WAL into the file */

    sqlite3 *db = db_open(fx);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT name FROM sqlite_schema WHERE type = 'table' AND "
                                        "name NOT IN ('messages', 'sqlite_sequence')",
                                        -1, &s, NULL),
                     SQLITE_OK);
    int64_t rows = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM \"%s\"", sqlite3_column_text(s, 0));
        rows += db_int(db, sql);
    }
    sqlite3_finalize(s);
    int64_t pages = db_int(db, "PRAGMA page_count");
    sqlite3_close(db);
    if (rows != 1 || pages > 16)
        fail_msg("after %d markRead calls of %d ids: %lld rows beside the messages, %lld pages",
                 CALLS, IDS, (long long)rows, (long long)pages);
    /* The calls with a valid id of the room succeeded, the others said -ENOENT. */
    assert_int_equal(results_ok, CALLS / 4);
    assert_int_equal(results_enoent, CALLS - CALLS / 4);
    assert_int_equal(results_other, 0);
    assert_int_equal(open_store(fx), 0);
}

/* A database of schema version 1 (one receipt row per string sent) is migrated: the
 * receipts that name a message of their room become one mark per (room, user), the rest
 * are dropped, and the old table goes. */
static void test_migration_v1(void **state) {
    fx_t *fx = *state;
    close_store(fx);
    rm_dir(fx->dir);
    assert_int_equal(mkdir(fx->dir, 0700), 0);
    char path[128];
    snprintf(path, sizeof path, "%s/parley.db", fx->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "PRAGMA journal_mode = WAL;"
                     "CREATE TABLE messages (room_id TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT "
                     "NOT NULL, user_id TEXT NOT NULL, username TEXT NOT NULL, text TEXT NOT "
                     "NULL, ts INTEGER NOT NULL, PRIMARY KEY (room_id, seq));"
                     "CREATE UNIQUE INDEX messages_id ON messages (id);"
                     "CREATE TABLE read_receipts (room_id TEXT NOT NULL, user_id TEXT NOT NULL, "
                     "message_id TEXT NOT NULL, read_at INTEGER NOT NULL, PRIMARY KEY (room_id, "
                     "user_id, message_id)) WITHOUT ROWID;"
                     "INSERT INTO messages VALUES ('r', 1, 'm1', 'a', 'A', 'one', 1),"
                     " ('r', 2, 'm2', 'a', 'A', 'two', 2), ('r', 3, 'm3', 'a', 'A', 'three', 3),"
                     " ('o', 1, 'o1', 'a', 'A', 'other', 4);"
                     "INSERT INTO read_receipts VALUES ('r', 'u1', 'm1', 100), ('r', 'u1', 'm3', "
                     "300), ('r', 'u1', 'm2', 200), ('r', 'u1', 'bogus', 50), ('r', 'u2', 'o1', "
                     "70), ('r', 'u3', 'nope', 1), ('o', 'u1', 'o1', 9);"
                     "PRAGMA user_version = 1;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(open_store(fx), 0);
    assert_int_equal(chat_store_last_seq(fx->st, "r"), 3);
    char got[256];
    marks(fx, got, sizeof got);
    assert_string_equal(got, "o/u1:1:o1\nr/u1:3:m3\n");
    db = db_open(fx);
    assert_int_equal(db_int(db, "PRAGMA user_version"), 3);
    assert_int_equal(db_int(db, "SELECT read_at FROM read_marks WHERE room_id = 'r'"), 300);
    assert_int_equal(db_int(db, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'read_receipts'"),
                     0);
    sqlite3_close(db);
    /* And the migrated store works as a new one. */
    reset_records();
    fill(fx, "r", 1);
    assert_int_equal(records[0].seq, 4);
    mark(fx, "r", "u1", (const char *[]){records[0].id}, 1, 0);
}

/* A failed commit (here: a row another connection wrote behind the store's back takes
 * the seq the store gives next, so the insert breaks the primary key) fails its batch and
 * what was queued behind it, including a mark_read, and nothing of it is stored. The store
 * is then failing — it says so, and refuses writes with the error — until a retry
 * commits; then writes work again, and the failed seqs are given again, without a gap. */
static void test_failed_commit(void **state) {
    fx_t *fx = *state;
    reopen_quick_retries(fx);
    reset_records();
    fill(fx, "ok", 2);
    const char *why = NULL;
    assert_int_equal(chat_store_health(fx->st, &why), 0);
    assert_string_equal(why, "ok");
    sqlite3 *db = db_open(fx);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO messages VALUES ('x', 1, 'intruder', 'u', 'n', "
                                  "'t', 0)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    log_threshold = LOG_LEVEL_ERROR + 1; /* the failure is logged at error; keep it quiet */
    done_calls = done_err = 0;
    append(fx, "ok", "in the same batch, before");
    append(fx, "x", "conflict");
    append(fx, "ok", "in the same batch, after");
    const char *ids[] = {records[0].id};
    assert_int_equal(chat_store_mark_read(fx->st, "ok", "u", ids, 1, 0, on_marked, NULL), 0);
    /* Hand that batch to the writer, then queue more: it may join the failing batch or
     * follow it, or (if the failure is already known) be refused at once. */
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    size_t expect = 5;
    for (int i = 0; i < 2; i++) {
        int rc = chat_store_append(fx->st, "ok", "u1", "Ann", "queued behind", 13, on_append, NULL,
                                   NULL);
        if (rc == 0)
            expect++;
        else
            assert_int_equal(rc, -EEXIST);
    }
    wait_records(fx, expect);
    while (done_calls < 1)
        uv_run(&fx->loop, UV_RUN_ONCE);
    for (size_t i = 2; i < expect; i++)
        assert_int_equal(records[i].err, -EEXIST);
    assert_int_equal(done_err, -EEXIST); /* the receipt was not stored either */

    /* Failing: said so, and writes are refused with the error. */
    assert_int_equal(chat_store_health(fx->st, &why), -EEXIST);
    assert_non_null(strstr(why, "commit failed"));
    assert_int_equal(chat_store_append(fx->st, "ok", "u", "n", "x", 1, on_append, NULL, NULL),
                     -EEXIST);
    assert_int_equal(chat_store_mark_read(fx->st, "ok", "u", ids, 1, 0, NULL, NULL), -EEXIST);
    assert_int_equal(chat_store_last_seq(fx->st, "ok"), 2); /* rewound to what is durable */
    hist_t h;
    history(fx, &h, "ok", 0, 10);
    expect_range(&h, 1, 2);

    /* The retry (it does not touch room x) commits: writes work again, seqs go on at 3. */
    wait_health(fx, true, 5000);
    assert_int_equal(chat_store_health(fx->st, &why), 0);
    assert_string_equal(why, "ok");
    size_t n0 = nrecords;
    chat_msg_t *m = append(fx, "ok", "after the retry");
    assert_int_equal(m->seq, 3);
    wait_records(fx, n0 + 1);
    assert_int_equal(records[n0].err, 0);
    history(fx, &h, "ok", 0, 10);
    expect_range(&h, 1, 3);
    mark(fx, "ok", "u", (const char *[]){records[n0].id}, 1, 0);

    /* Room x still collides: that batch fails again, and the store recovers again. */
    append(fx, "x", "conflict again");
    wait_records(fx, n0 + 2);
    assert_int_equal(records[n0 + 1].err, -EEXIST);
    wait_health(fx, true, 5000);
    close_store(fx);
    log_threshold = LOG_LEVEL_WARN;
    assert_int_equal(open_store(fx), 0);
    assert_int_equal(chat_store_last_seq(fx->st, "ok"), 3);
    assert_int_equal(chat_store_last_seq(fx->st, "x"), 1);
    db = db_open(fx);
    assert_int_equal(db_int(db, "SELECT COUNT(*) FROM messages WHERE text LIKE '%batch%' OR "
                                "text LIKE 'queued%' OR text LIKE 'conflict%'"),
                     0);
    sqlite3_close(db);
}

static long long file_size(const fx_t *fx, const char *name);

/* Issue 11, defect 5, with a real write error: RLIMIT_FSIZE makes the WAL's write() fail
 * (EFBIG, as ENOSPC does on a full disk) once the file would pass the limit. Every
 * callback of the batch that hit it reports an error (appends and a mark_read); while
 * every write fails (the limit below the WAL's end) the store stays failing and refuses
 * writes however long it retries; once the limit is lifted ("space freed") it recovers
 * by itself, the next message takes the first failed seq, and after a reopen the file
 * holds exactly the acknowledged messages. */
static void test_write_error(void **state) {
    fx_t *fx = *state;
    reopen_quick_retries(fx);
    reset_records();
    fill(fx, "a", 3);
    const char *first[] = {records[0].id};
    mark(fx, "a", "u", first, 1, 0);
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    assert_int_equal(sigaction(SIGXFSZ, &ign, &old), 0); /* write() fails with EFBIG instead */
    long long wal = file_size(fx, "parley.db-wal");
    assert_true(wal > 8192);
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = (rlim_t)wal + 65536;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);

    log_threshold = LOG_LEVEL_ERROR + 1;
    static char big[8192];
    memset(big, 'b', sizeof big - 1);
    done_calls = done_err = 0;
    for (int i = 0; i < 30; i++) /* 240 KiB in one batch: past the limit */
        append(fx, "a", big);
    assert_int_equal(chat_store_mark_read(fx->st, "a", "u", (const char *[]){records[2].id}, 1, 0,
                                          on_marked, NULL),
                     0);
    wait_records(fx, 33);
    while (done_calls < 1)
        uv_run(&fx->loop, UV_RUN_ONCE);
    for (size_t i = 3; i < 33; i++)
        if (records[i].err >= 0)
            fail_msg("message %zu (seq %llu) was acknowledged past the size limit", i,
                     (unsigned long long)records[i].seq);
    assert_true(done_err < 0);
    const char *why = NULL;
    int err = chat_store_health(fx->st, &why);
    assert_int_equal(err, records[3].err);
    assert_non_null(strstr(why, "commit failed"));
    assert_int_equal(chat_store_append(fx->st, "a", "u", "n", "x", 1, on_append, NULL, NULL), err);

    /* Below the WAL's end every write fails, the store's own retries included. */
    rl.rlim_cur = 4096;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
    uint64_t until = uv_hrtime() + 300 * 1000000ull; /* 5 + 10 + 20 + 40 + ...: 8 retries */
    while (uv_hrtime() < until) {
        uv_run(&fx->loop, UV_RUN_NOWAIT);
        assert_true(chat_store_health(fx->st, NULL) < 0);
        usleep(2000);
    }
    assert_int_equal(chat_store_append(fx->st, "a", "u", "n", "x", 1, on_append, NULL, NULL), err);

    /* Space again: the store recovers without help, and seqs go on at 4. */
    fsize_unlimited();
    wait_health(fx, true, 5000);
    log_threshold = LOG_LEVEL_WARN;
    size_t n0 = nrecords;
    chat_msg_t *m = append(fx, "a", "after");
    assert_int_equal(m->seq, 4);
    wait_records(fx, n0 + 1);
    assert_int_equal(records[n0].err, 0);
    mark(fx, "a", "u", (const char *[]){records[n0].id}, 1, 0);
    sigaction(SIGXFSZ, &old, NULL);
    close_store(fx);

    sqlite3 *db = db_open(fx);
    assert_int_equal(db_int(db, "SELECT COUNT(*) FROM messages WHERE room_id = 'a'"), 4);
    assert_int_equal(db_int(db, "SELECT MAX(seq) FROM messages WHERE room_id = 'a'"), 4);
    assert_int_equal(db_int(db, "SELECT COUNT(*) FROM messages WHERE length(text) > 100"), 0);
    assert_int_equal(db_int(db, "SELECT seq FROM read_marks WHERE user_id = 'u'"), 4);
    sqlite3_close(db);
    assert_int_equal(open_store(fx), 0);
    assert_int_equal(chat_store_last_seq(fx->st, "a"), 4);
}

static long long file_size(const fx_t *fx, const char *name) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", fx->dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    long long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    fclose(f);
    return size;
}

/* Under continuous writes the WAL must not grow without bound: the checkpoint thread and
 * the writer's last pass let it start over. With checkpoint_pages 16 (64 KiB) the WAL
 * stays near that size; the bound below leaves room for a starved checkpoint thread on
 * a loaded machine and is still far below the ~15 MB of frames the commits write. */
static void test_wal_bounded(void **state) {
    fx_t *fx = *state;
    close_store(fx);
    fx->cfg.checkpoint_pages = 16;
    assert_int_equal(open_store(fx), 0);
    reset_records();
    char text[1024];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    size_t total = 0;
    long long max_wal = 0;
    for (int round = 0; round < 400; round++) {
        for (int i = 0; i < 20; i++, total++)
            append(fx, i % 2 ? "a" : "b", text);
        /* Keep the writer busy: wait for this round's acks only now and then. */
        if (round % 10 == 9)
            wait_records(fx, total);
        else
            uv_run(&fx->loop, UV_RUN_NOWAIT);
        long long wal = file_size(fx, "parley.db-wal");
        if (wal > max_wal)
            max_wal = wal;
    }
    wait_records(fx, total);
    for (size_t i = 0; i < total; i++)
        assert_int_equal(records[i].err, 0);
    if (max_wal > 4 * 1024 * 1024)
        fail_msg("the WAL grew to %lld bytes", max_wal);
    hist_t h;
    after(fx, &h, "a", 3990, 100);
    expect_range(&h, 3991, 4000);
    close_store(fx);
    assert_int_equal(file_size(fx, "parley.db-wal"), -1); /* the last close removes it */
    assert_int_equal(open_store(fx), 0);
    assert_int_equal(chat_store_last_seq(fx->st, "a"), 4000);
}

/* ---- a store that waits for another's lock (chat_store_open_sqlite_wait) ---- */

typedef struct {
    int calls, err;
    uint64_t seqs[8];
    int errs[8];
    size_t n;
} waited_t;

static void on_waited_open(int err, void *arg) {
    waited_t *w = arg;
    w->calls++;
    w->err = err;
}

static void on_waited_append(int err, chat_msg_t *msg, void *arg) {
    waited_t *w = arg;
    if (in_store_call)
        off_loop = true;
    assert_true(w->n < 8);
    w->errs[w->n] = err;
    w->seqs[w->n++] = err ? 0 : msg->seq;
}

static chat_store_t *open_waiting(fx_t *fx, uint64_t wait_ms, waited_t *w) {
    chat_store_t *st = NULL;
    assert_int_equal(
        chat_store_open_sqlite_wait(&fx->loop, fx->dir, &fx->cfg, wait_ms, on_waited_open, w, &st),
        0);
    assert_non_null(st);
    const char *why = NULL;
    assert_int_equal(chat_store_health(st, &why), -EBUSY);
    assert_non_null(strstr(why, "waiting for its lock"));
    return st;
}

static void waited_append(chat_store_t *st, const char *text, waited_t *w, int expect) {
    chat_msg_t *m = (chat_msg_t *)1;
    in_store_call = true;
    int err = chat_store_append(st, "a", "u1", "Ann", text, strlen(text), on_waited_append, w, &m);
    in_store_call = false;
    assert_int_equal(err, expect);
    assert_null(m); /* not numbered yet */
}

/* A restart: the second store takes calls while the first holds the lock, and once the
 * first closes it opens, replays them in order and numbers them after the first's seqs. */
static void test_lock_wait(void **state) {
    fx_t *fx = *state;
    reset_records();
    fill(fx, "a", 2);
    waited_t w = {0};
    chat_store_t *st = open_waiting(fx, 10000, &w);
    waited_append(st, "three", &w, 0);
    waited_append(st, "four", &w, 0);
    hist_t h = {0};
    in_store_call = true;
    assert_int_equal(chat_store_history(st, "a", 0, 10, on_history, &h), 0);
    in_store_call = false;
    assert_int_equal(chat_store_last_seq(st, "a"), 0);
    for (int i = 0; i < 5; i++)
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_int_equal(w.calls, 0);
    assert_int_equal(w.n, 0);
    assert_false(h.called);
    close_store(fx); /* the lock is free */
    fx->st = st;
    while (w.n < 2 || !h.called)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.err, 0);
    assert_false(off_loop);
    assert_int_equal(w.errs[0], 0);
    assert_int_equal(w.errs[1], 0);
    assert_int_equal(w.seqs[0], 3);
    assert_int_equal(w.seqs[1], 4);
    assert_int_equal(h.err, 0);
    assert_true(h.n >= 2); /* at least what the first store committed */
    hist_free(&h);
    assert_int_equal(chat_store_health(st, NULL), 0);
    assert_int_equal(chat_store_last_seq(st, "a"), 4);
    history(fx, &h, "a", 0, 10);
    expect_range(&h, 1, 4);
}

/* Still locked after wait_ms: the store fails for good, queued and later calls alike. */
static void test_lock_wait_gives_up(void **state) {
    fx_t *fx = *state;
    reset_records();
    waited_t w = {0};
    chat_store_t *st = open_waiting(fx, 100, &w);
    waited_append(st, "queued", &w, 0);
    while (w.calls == 0)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(w.err, -EBUSY);
    assert_int_equal(w.n, 1);
    assert_int_equal(w.errs[0], -EBUSY);
    waited_append(st, "later", &w, -EBUSY);
    assert_int_equal(chat_store_health(st, NULL), -EBUSY);
    bool closed = false;
    chat_store_close(st, on_closed, &closed);
    run_until(fx, &closed);
    assert_false(off_loop);
}

/* Closed while waiting: the queued calls get -ECANCELED, after the close call returned. */
static void test_lock_wait_closed(void **state) {
    fx_t *fx = *state;
    reset_records();
    waited_t w = {0};
    chat_store_t *st = open_waiting(fx, 10000, &w);
    waited_append(st, "queued", &w, 0);
    bool closed = false;
    in_store_call = true;
    chat_store_close(st, on_closed, &closed);
    in_store_call = false;
    assert_int_equal(w.n, 0);
    run_until(fx, &closed);
    assert_int_equal(w.n, 1);
    assert_int_equal(w.errs[0], -ECANCELED);
    assert_int_equal(w.calls, 0); /* no open to report */
    assert_false(off_loop);
}

/* The membership reads of a waiting store, recorded. */
typedef struct {
    int rooms_calls, rooms_err, members_calls, members_err;
    size_t rooms_n, members_n;
    uint64_t read_seq, last_seq; /* of the first room or member */
    char first[16];              /* its room id or user id */
} waited_reads_t;

static void on_waited_rooms(int err, const chat_user_room_t *rooms, size_t n, void *arg) {
    waited_reads_t *r = arg;
    if (in_store_call)
        off_loop = true;
    r->rooms_calls++;
    r->rooms_err = err;
    r->rooms_n = n;
    if (n) {
        snprintf(r->first, sizeof r->first, "%s", rooms[0].room_id);
        r->read_seq = rooms[0].last_read_seq;
        r->last_seq = rooms[0].last_seq;
    }
}

static void on_waited_members(int err, const chat_member_t *members, size_t n, uint64_t last_seq,
                              void *arg) {
    waited_reads_t *r = arg;
    if (in_store_call)
        off_loop = true;
    r->members_calls++;
    r->members_err = err;
    r->members_n = n;
    r->last_seq = last_seq;
    if (n) {
        snprintf(r->first, sizeof r->first, "%s", members[0].user_id);
        r->read_seq = members[0].last_read_seq;
    }
}

/* Memberships while waiting: joins, forgets and receipts (up to a seq) are queued in
 * order and replayed once the lock is free; the membership reads are queued too, not
 * refused, and answered once the store is open. */
static void test_lock_wait_membership(void **state) {
    fx_t *fx = *state;
    reset_records();
    fill(fx, "a", 2);
    done_calls = done_err = 0;
    assert_int_equal(chat_store_join(fx->st, "a", "u0", "Old", on_done, NULL), 0);
    while (done_calls < 1)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(done_err, 0);

    waited_t w = {0};
    chat_store_t *st = open_waiting(fx, 10000, &w);
    done_calls = 0;
    int one = 1, two = 2, three = 3;
    waited_reads_t queued = {0};
    in_store_call = true;
    assert_int_equal(chat_store_join(st, "a", "u1", "Ann", on_done, &one), 0);
    assert_int_equal(chat_store_forget(st, "a", "u0", on_done, &two), 0);
    assert_int_equal(chat_store_mark_read(st, "a", "u1", NULL, 0, 9, on_marked, &three), 0);
    assert_int_equal(chat_store_user_rooms(st, "u1", on_waited_rooms, &queued), 0);
    assert_int_equal(chat_store_members(st, "a", on_waited_members, &queued), 0);
    assert_int_equal(chat_store_join(st, "a", "u1", NULL, on_done, NULL), -EINVAL);
    assert_int_equal(chat_store_forget(st, "a", NULL, on_done, NULL), -EINVAL);
    assert_int_equal(chat_store_user_rooms(st, NULL, on_waited_rooms, &queued), -EINVAL);
    assert_int_equal(chat_store_members(st, "a", NULL, &queued), -EINVAL);
    in_store_call = false;
    for (int i = 0; i < 5; i++)
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_int_equal(done_calls, 0);
    assert_int_equal(queued.rooms_calls + queued.members_calls, 0);

    close_store(fx); /* the lock is free */
    fx->st = st;
    while (done_calls < 3 || !queued.rooms_calls || !queued.members_calls)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(w.err, 0);
    assert_int_equal(done_err, 0);
    assert_int_equal(last_mark, 2); /* up to 9: the room's last seq */
    assert_int_equal(queued.rooms_err, 0);
    assert_int_equal(queued.members_err, 0);
    assert_int_equal(queued.last_seq, 2);
    assert_false(off_loop);

    /* What the replayed writes left. */
    waited_reads_t now = {0};
    assert_int_equal(chat_store_user_rooms(st, "u1", on_waited_rooms, &now), 0);
    while (!now.rooms_calls)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(now.rooms_n, 1);
    assert_string_equal(now.first, "a");
    assert_int_equal(now.read_seq, 2);
    assert_int_equal(now.last_seq, 2);
    now = (waited_reads_t){0};
    assert_int_equal(chat_store_members(st, "a", on_waited_members, &now), 0);
    while (!now.members_calls)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(now.members_n, 1);
    assert_string_equal(now.first, "u1");
    assert_int_equal(now.read_seq, 2);
}

/* ---- membership ---- */

static void join(fx_t *fx, const char *room, const char *user, const char *name) {
    done_calls = done_err = 0;
    assert_int_equal(chat_store_join(fx->st, room, user, name, on_done, NULL), 0);
    while (done_calls < 1)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(done_err, 0);
}

static void forget(fx_t *fx, const char *room, const char *user) {
    done_calls = done_err = 0;
    assert_int_equal(chat_store_forget(fx->st, room, user, on_done, NULL), 0);
    while (done_calls < 1)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(done_err, 0);
}

/* The answer of a membership read as text, and the joined_at values seen. */
static char listed[512];
static int64_t listed_at[8];
static bool listed_done;

static void on_user_rooms(int err, const chat_user_room_t *rooms, size_t n, void *arg) {
    (void)arg;
    assert_int_equal(err, 0);
    size_t used = 0;
    listed[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        used += (size_t)snprintf(listed + used, sizeof listed - used, "%s:%" PRIu64 ":%" PRIu64 ";",
                                 rooms[i].room_id, rooms[i].last_seq, rooms[i].last_read_seq);
        if (i < 8)
            listed_at[i] = rooms[i].joined_at;
    }
    listed_done = true;
}

static void on_members(int err, const chat_member_t *members, size_t n, uint64_t last_seq,
                       void *arg) {
    (void)arg;
    assert_int_equal(err, 0);
    size_t used = (size_t)snprintf(listed, sizeof listed, "%" PRIu64 "|", last_seq);
    for (size_t i = 0; i < n; i++) {
        used += (size_t)snprintf(listed + used, sizeof listed - used, "%s/%s:%" PRIu64 ";",
                                 members[i].user_id, members[i].username, members[i].last_read_seq);
        if (i < 8)
            listed_at[i] = members[i].joined_at;
    }
    listed_done = true;
}

static const char *rooms_of(fx_t *fx, const char *user) {
    listed_done = false;
    assert_int_equal(chat_store_user_rooms(fx->st, user, on_user_rooms, NULL), 0);
    run_until(fx, &listed_done);
    return listed;
}

static const char *members_of(fx_t *fx, const char *room) {
    listed_done = false;
    assert_int_equal(chat_store_members(fx->st, room, on_members, NULL), 0);
    run_until(fx, &listed_done);
    return listed;
}

/* Marks with upto_seq, answering the mark as it stands after the call. */
static uint64_t mark_upto(fx_t *fx, const char *room, const char *user, uint64_t seq, int expect) {
    done_calls = done_err = 0;
    last_mark = 0;
    assert_int_equal(chat_store_mark_read(fx->st, room, user, NULL, 0, seq, on_marked, NULL), 0);
    while (done_calls < 1)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(done_err, expect);
    return last_mark;
}

/* Memberships outlive connections and change only by join and forget; unread counts are
 * positions (last seq, last read seq) moved forward only. */
static void test_membership(void **state) {
    fx_t *fx = *state;
    assert_string_equal(rooms_of(fx, "u1"), "");
    assert_string_equal(members_of(fx, "r1"), "0|");
    join(fx, "r1", "u1", "Ann");
    join(fx, "r2", "u1", "Ann");
    join(fx, "r1", "u2", "Bob");
    assert_string_equal(rooms_of(fx, "u1"), "r1:0:0;r2:0:0;");
    int64_t first_join = listed_at[0];
    assert_true(first_join > 0);
    assert_string_equal(members_of(fx, "r1"), "0|u1/Ann:0;u2/Bob:0;");

    /* Joining again under the same name writes nothing: answered before the call returns. */
    done_calls = 0;
    assert_int_equal(chat_store_join(fx->st, "r1", "u1", "Ann", on_done, NULL), 0);
    assert_int_equal(done_calls, 1);
    /* A new name is kept; the first join's time stays. */
    join(fx, "r1", "u1", "Anna");
    assert_string_equal(members_of(fx, "r1"), "0|u1/Anna:0;u2/Bob:0;");
    assert_int_equal(listed_at[0], first_join);

    reset_records();
    fill(fx, "r1", 3);
    assert_string_equal(rooms_of(fx, "u1"), "r1:3:0;r2:0:0;");
    assert_int_equal(mark_upto(fx, "r1", "u1", 2, 0), 2);
    assert_int_equal(mark_upto(fx, "r1", "u1", 1, 0), 2); /* never back */
    assert_string_equal(rooms_of(fx, "u1"), "r1:3:2;r2:0:0;");
    assert_int_equal(mark_upto(fx, "r1", "u2", 99, 0), 3); /* beyond: everything there is */
    assert_string_equal(members_of(fx, "r1"), "3|u1/Anna:2;u2/Bob:3;");
    /* By id, as before, and the answer is the mark. */
    done_calls = done_err = 0;
    const char *ids[] = {records[2].id};
    assert_int_equal(chat_store_mark_read(fx->st, "r1", "u1", ids, 1, 0, on_marked, NULL), 0);
    while (done_calls < 1)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(done_err, 0);
    assert_int_equal(last_mark, 3);
    /* Nothing to read in a room without messages. */
    mark_upto(fx, "r2", "u1", 5, -ENOENT);

    /* Forgetting ends the membership, not the mark: rejoining shows the same position. */
    forget(fx, "r1", "u1");
    assert_string_equal(rooms_of(fx, "u1"), "r2:0:0;");
    assert_string_equal(members_of(fx, "r1"), "3|u2/Bob:3;");
    forget(fx, "r1", "u1"); /* not a member: fine */
    forget(fx, "nowhere", "nobody");
    join(fx, "r1", "u1", "Ann");
    assert_string_equal(rooms_of(fx, "u1"), "r1:3:3;r2:0:0;");

    assert_int_equal(chat_store_join(fx->st, "r1", NULL, "x", NULL, NULL), -EINVAL);
    assert_int_equal(chat_store_join(fx->st, "r\xff", "u", "x", NULL, NULL), -EINVAL);
    assert_int_equal(chat_store_join(fx->st, "r", "u", "\xc3", NULL, NULL), -EINVAL);
    assert_int_equal(chat_store_user_rooms(fx->st, "u1", NULL, NULL), -EINVAL);

    if (fx->kind != KIND_SQLITE)
        return;
    /* Everything is on disk: a reopened store lists the same. */
    close_store(fx);
    assert_int_equal(open_store(fx), 0);
    assert_string_equal(rooms_of(fx, "u1"), "r1:3:3;r2:0:0;");
    assert_string_equal(members_of(fx, "r1"), "3|u1/Ann:3;u2/Bob:3;");
    assert_string_equal(rooms_of(fx, "u2"), "r1:3:3;");
    sqlite3 *db = db_open(fx);
    assert_int_equal(db_int(db, "SELECT COUNT(*) FROM members"), 3);
    assert_int_equal(db_int(db, "SELECT COUNT(*) FROM read_marks"), 2);
    sqlite3_close(db);
}

/* Joins and forgets take effect in the order they were called, even when one is still
 * under way when the next comes (no answer from the index alone then). */
static void test_membership_order(void **state) {
    fx_t *fx = *state;
    done_calls = done_err = 0;
    assert_int_equal(chat_store_join(fx->st, "r", "u", "U", on_done, NULL), 0);
    assert_int_equal(chat_store_forget(fx->st, "r", "u", on_done, NULL), 0);
    assert_int_equal(done_calls, 0); /* both queued: nothing answered from the index */
    while (done_calls < 2)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(done_err, 0);
    assert_string_equal(rooms_of(fx, "u"), "");
    join(fx, "r", "u", "U");
    done_calls = 0;
    assert_int_equal(chat_store_forget(fx->st, "r", "u", on_done, NULL), 0);
    assert_int_equal(chat_store_join(fx->st, "r", "u", "U", on_done, NULL), 0);
    assert_int_equal(done_calls, 0);
    while (done_calls < 2)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_string_equal(rooms_of(fx, "u"), "r:0:0;");
    /* Nothing under way: a forget of a non-member is answered at once. */
    done_calls = 0;
    assert_int_equal(chat_store_forget(fx->st, "other", "u", on_done, NULL), 0);
    assert_int_equal(done_calls, 1);
}

/* A failing store refuses joins and forgets like any write, and changes nothing. */
static void test_membership_failing(void **state) {
    fx_t *fx = *state;
    join(fx, "r", "u", "U");
    reopen_quick_retries(fx);
    sqlite3 *db = db_open(fx);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TRIGGER no_members BEFORE INSERT ON members "
                                  "BEGIN SELECT RAISE(FAIL, 'refused'); END",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    done_calls = done_err = 0;
    assert_int_equal(chat_store_join(fx->st, "r2", "u", "U", on_done, NULL), 0);
    while (done_calls < 1)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_true(done_err < 0);
    assert_string_equal(rooms_of(fx, "u"), "r:0:0;");
}

/* The SQLite store, the memory store, and the memory store tied to a network loop. */
#define EVERY(t)                                                                                   \
    cmocka_unit_test_setup_teardown(t, setup_sqlite, teardown),                                    \
        cmocka_unit_test_setup_teardown(t, setup_memory, teardown),                                \
        cmocka_unit_test_setup_teardown(t, setup_memory_net, teardown)
#define SQLITE(t) cmocka_unit_test_setup_teardown(t, setup_sqlite, teardown)
#define MEMORY_NET(t) cmocka_unit_test_setup_teardown(t, setup_memory_net, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        EVERY(test_seq_per_room),
        EVERY(test_many_batches),
        EVERY(test_big_batch),
        EVERY(test_history_paging),
        EVERY(test_history_only_acknowledged),
        EVERY(test_after),
        EVERY(test_max_read),
        EVERY(test_json),
        EVERY(test_rejects),
        EVERY(test_max_pending),
        EVERY(test_mark_read_order),
        EVERY(test_mark_read_checked),
        EVERY(test_close_flushes),
        EVERY(test_close_from_callback),
        MEMORY_NET(test_net_hook),
        SQLITE(test_reopen),
        SQLITE(test_schema),
        SQLITE(test_read_marks),
        SQLITE(test_receipts_bounded),
        SQLITE(test_migration_v1),
        SQLITE(test_failed_commit),
        SQLITE(test_write_error),
        SQLITE(test_wal_bounded),
        SQLITE(test_lock_wait),
        SQLITE(test_lock_wait_gives_up),
        SQLITE(test_lock_wait_closed),
        SQLITE(test_lock_wait_membership),
        EVERY(test_membership),
        EVERY(test_membership_order),
        SQLITE(test_membership_failing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
