/* chat/store_common.c — the part of the chat store that does not touch the disk.
 *
 * Messages (one allocation each: struct, strings and compact JSON), message ids, rooms
 * with their seq counters and windows, the public chat_store_* functions, the loop-side
 * operation queue and acknowledgement delivery, and the close sequence. Backends
 * (store_sqlite.c, store_memory.c) only store batches and read old ranges; see
 * store_internal.h for the contract between the two halves.
 *
 * Health: a failed commit is not forever. The loop rewinds the seq counters to what is
 * durable, refuses writes with the failure's error, and probes the backend with a small
 * write of its own on a timer (backoff from retry_min_ms, doubling to retry_max_ms) until
 * one commits; then writes are accepted again. Refusing, rather than letting writes
 * through as probes, answers users at once instead of after a doomed fsync and keeps a
 * full disk from filling the queue.
 *
 * Not done here on purpose: acknowledged-but-unannounced bookkeeping (the caller
 * broadcasts from the callback) and eviction of idle rooms (a room costs its counters and
 * its window until close). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/store_internal.h"
#include "net/conn.h"
#include "util/assert.h"
#include "util/jsonw.h"
#include "util/log.h"
#include "util/rand.h"
#include "util/utf8.h"
#include "util/time.h"

/* Ops kept on the free list at most; beyond, finished ops go back to malloc. */
#define STORE_FREE_OPS_MAX 4096
/* History results up to this many are assembled on the stack. */
#define STORE_STACK_MSGS 64
/* Acknowledgements delivered per wake-up of the loop at most. */
#define STORE_DELIVER_MAX 1024

void chat_store_config_defaults(chat_store_config_t *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->window = 200;
    cfg->max_batch = 10000;
    cfg->max_pending = 100000;
    cfg->max_read = 1000;
    cfg->memory_keep = 0;
    cfg->checkpoint_pages = 4000;
    cfg->retry_min_ms = 100;
    cfg->retry_max_ms = 5000;
}

const char *store_strerror(int err) {
    return err < 0 ? strerror(-err) : "ok";
}

/* ---- messages ---- */

void chat_msg_ref(chat_msg_t *m) {
    if (m)
        m->refs++;
}

void chat_msg_unref(chat_msg_t *m) {
    if (m && --m->refs == 0)
        free(m);
}

int chat_msg_join(buf_t *b, const char *pre, chat_msg_t *const *msgs, size_t n, const char *post) {
    int rc = buf_append_str(b, pre);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i)
            rc = buf_append(b, ",", 1);
        if (rc == 0)
            rc = buf_append(b, msgs[i]->json, msgs[i]->json_len);
    }
    return rc ? rc : buf_append_str(b, post);
}

/* Copies a slice behind *p as a NUL-terminated string and returns where it went. */
static char *put_str(char **p, const char *s, size_t len) {
    char *dst = *p;
    if (len)
        memcpy(dst, s, len);
    dst[len] = '\0';
    *p += len + 1;
    return dst;
}

/* The message's JSON, in the documented key order (store.h). Written directly rather than
 * through a jansson object: that object (seven members, about ten allocations) would be
 * built only to be dumped once. The bytes are what json_dumps of that object gave
 * (util/jsonw.h). */
#define MSG_KEY_ID "{\"id\":"
#define MSG_KEY_SEQ ",\"seq\":"
#define MSG_KEY_ROOM ",\"roomId\":"
#define MSG_KEY_USER ",\"userId\":"
#define MSG_KEY_NAME ",\"username\":"
#define MSG_KEY_TEXT ",\"text\":"
#define MSG_KEY_TS ",\"timestamp\":"
#define LIT(s) (s), (sizeof(s) - 1)

static size_t msg_json_len(const store_msg_fields_t *f) {
    return sizeof MSG_KEY_ID + sizeof MSG_KEY_SEQ + sizeof MSG_KEY_ROOM + sizeof MSG_KEY_USER +
           sizeof MSG_KEY_NAME + sizeof MSG_KEY_TEXT + sizeof MSG_KEY_TS - 7 + 1 /* } */ +
           jsonw_string_len(f->id, f->id_len) + jsonw_int_len((int64_t)f->seq) +
           jsonw_string_len(f->room_id, f->room_id_len) +
           jsonw_string_len(f->user_id, f->user_id_len) +
           jsonw_string_len(f->username, f->username_len) + jsonw_string_len(f->text, f->text_len) +
           jsonw_int_len(f->timestamp);
}

/* Writes it at out (msg_json_len bytes); returns the end. */
static char *msg_json_write(char *out, const store_msg_fields_t *f) {
    out = jsonw_raw(out, LIT(MSG_KEY_ID));
    out = jsonw_string(out, f->id, f->id_len);
    out = jsonw_raw(out, LIT(MSG_KEY_SEQ));
    out = jsonw_int(out, (int64_t)f->seq);
    out = jsonw_raw(out, LIT(MSG_KEY_ROOM));
    out = jsonw_string(out, f->room_id, f->room_id_len);
    out = jsonw_raw(out, LIT(MSG_KEY_USER));
    out = jsonw_string(out, f->user_id, f->user_id_len);
    out = jsonw_raw(out, LIT(MSG_KEY_NAME));
    out = jsonw_string(out, f->username, f->username_len);
    out = jsonw_raw(out, LIT(MSG_KEY_TEXT));
    out = jsonw_string(out, f->text, f->text_len);
    out = jsonw_raw(out, LIT(MSG_KEY_TS));
    out = jsonw_int(out, f->timestamp);
    *out++ = '}';
    return out;
}

int store_msg_new(const store_msg_fields_t *f, bool validate, chat_msg_t **out) {
    *out = NULL;
    if (validate && (!utf8_is_valid((const uint8_t *)f->room_id, f->room_id_len) ||
                     !utf8_is_valid((const uint8_t *)f->user_id, f->user_id_len) ||
                     !utf8_is_valid((const uint8_t *)f->username, f->username_len) ||
                     !utf8_is_valid((const uint8_t *)f->text, f->text_len)))
        return -EINVAL;
    if (f->seq > (uint64_t)INT64_MAX)
        return -EOVERFLOW;

    /* One allocation per message: it outlives the call (window, broadcast queues,
     * history) and is shared by reference, so it is the one allocation we cannot skip. */
    size_t json_len = msg_json_len(f);
    size_t strings =
        f->id_len + f->room_id_len + f->user_id_len + f->username_len + f->text_len + json_len + 6;
    chat_msg_t *m = malloc(sizeof *m + strings);
    if (!m)
        return -ENOMEM;
    char *p = (char *)(m + 1);
    m->refs = 1;
    m->seq = f->seq;
    m->timestamp = f->timestamp;
    m->made_ns = uv_hrtime();
    m->id = put_str(&p, f->id, f->id_len);
    m->room_id = put_str(&p, f->room_id, f->room_id_len);
    m->user_id = put_str(&p, f->user_id, f->user_id_len);
    m->username = put_str(&p, f->username, f->username_len);
    m->text = put_str(&p, f->text, f->text_len);
    m->text_len = f->text_len;
    m->json = p;
    m->json_len = json_len;
    char *end = msg_json_write(m->json, f);
    PARLEY_ASSERT((size_t)(end - m->json) == json_len);
    *end = '\0';
    *out = m;
    return 0;
}

/* ---- rooms and windows ---- */

store_room_t *store_room_get(chat_store_t *st, const char *id, size_t id_len) {
    return map_get(&st->rooms, id, id_len);
}

store_room_t *store_room_add(chat_store_t *st, const char *id, size_t id_len, uint64_t seq) {
    store_room_t *r = calloc(1, sizeof *r + id_len + 1);
    if (!r)
        return NULL;
    memcpy(r->id, id, id_len);
    r->id_len = id_len;
    r->last_seq = seq;
    r->durable_seq = seq;
    if (map_put(&st->rooms, r->id, id_len, r)) {
        free(r);
        return NULL;
    }
    return r;
}

static uint64_t window_lo(const store_room_t *r) {
    return r->durable_seq - r->count + 1;
}

/* Makes room for one more entry (doubling up to the limit). Returns 0 or -ENOMEM. */
static int window_grow(const chat_store_t *st, store_room_t *r) {
    if (r->count < r->cap)
        return 0;
    size_t cap = r->cap ? r->cap * 2 : 8;
    if (cap > st->window_limit)
        cap = st->window_limit;
    chat_msg_t **ring = calloc(cap, sizeof *ring);
    if (!ring)
        return -ENOMEM;
    for (size_t i = 0; r->cap && i < r->count; i++)
        ring[i] = r->ring[(r->head + i) % r->cap];
    free(r->ring);
    r->ring = ring;
    r->cap = cap;
    r->head = 0;
    return 0;
}

/* The newly acknowledged message m (seq durable_seq + 1) enters the window; the oldest
 * leaves when it is full. */
static void window_push(chat_store_t *st, store_room_t *r, chat_msg_t *m) {
    r->durable_seq = m->seq;
    if (st->window_limit == 0)
        return;
    if (r->count == st->window_limit) {
        chat_msg_unref(r->ring[r->head]);
        r->ring[r->head] = m;
        r->head = (r->head + 1) % r->cap;
    } else if (window_grow(st, r) == 0) {
        r->ring[(r->head + r->count) % r->cap] = m;
        r->count++;
    } else {
        /* Out of memory: restart the window at this message (it must stay contiguous). */
        for (size_t i = 0; i < r->count; i++)
            chat_msg_unref(r->ring[(r->head + i) % r->cap]);
        r->count = 0;
        r->head = 0;
        if (r->cap == 0)
            return;
        r->ring[0] = m;
        r->count = 1;
    }
    chat_msg_ref(m);
}

/* A message read from the database just before the window's oldest enters it while the
 * window is not full (after a restart windows start empty and warm up this way). */
static void window_prepend(chat_store_t *st, store_room_t *r, chat_msg_t *m) {
    if (r->count >= st->window_limit || m->seq + 1 != window_lo(r))
        return;
    if (window_grow(st, r))
        return;
    r->head = (r->head + r->cap - 1) % r->cap;
    r->ring[r->head] = m;
    r->count++;
    chat_msg_ref(m);
}

static void room_free(store_room_t *r) {
    for (size_t i = 0; i < r->count; i++)
        chat_msg_unref(r->ring[(r->head + i) % r->cap]);
    free(r->ring);
    free(r);
}

/* ---- ids ---- */

static int id_init(chat_store_t *st) {
    uint8_t raw[8];
    if (rand_bytes(raw, sizeof raw))
        return -EIO;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
        st->id_prefix[2 * i] = hex[raw[i] >> 4];
        st->id_prefix[2 * i + 1] = hex[raw[i] & 15];
    }
    st->id_prefix[16] = '\0';
    return 0;
}

/* "<16 random hex digits drawn at open>-<counter in hex>": unique across restarts with
 * overwhelming probability (64 random bits per open), and the database's unique index on
 * id turns the improbable collision into a failed commit rather than a duplicate. */
static size_t id_next(chat_store_t *st, char out[STORE_ID_MAX + 1]) {
    static const char hex[] = "0123456789abcdef";
    uint64_t c = ++st->id_counter;
    size_t digits = 1;
    while (digits < 16 && c >> (4 * digits))
        digits++;
    memcpy(out, st->id_prefix, 16);
    out[16] = '-';
    for (size_t i = 0; i < digits; i++)
        out[16 + digits - i] = hex[(c >> (4 * i)) & 15];
    out[17 + digits] = '\0';
    return 17 + digits;
}

static int hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Whether the len bytes at id are an id as id_next makes them (of any open); its counter
 * in *counter. */
static bool id_parse(const char *id, size_t len, uint64_t *counter) {
    if (len < 18 || len > STORE_ID_MAX || id[16] != '-' || id[17] == '0')
        return false;
    uint64_t c = 0;
    for (size_t i = 0; i < len; i++) {
        int v = i == 16 ? 0 : hex_digit(id[i]);
        if (v < 0)
            return false;
        if (i > 16)
            c = c << 4 | (uint64_t)v;
    }
    *counter = c;
    return true;
}

bool store_id_counter(const chat_store_t *st, const char *id, uint64_t *counter) {
    return strncmp(id, st->id_prefix, 16) == 0 &&
           id_parse(id, strnlen(id, STORE_ID_MAX + 1), counter);
}

/* ---- ops ---- */

static store_op_t *op_alloc(chat_store_t *st) {
    store_op_t *op = st->free_ops;
    if (op) {
        st->free_ops = op->next;
        st->free_ops_count--;
    } else if (!(op = malloc(sizeof *op))) {
        return NULL;
    }
    memset(op, 0, sizeof *op);
    return op;
}

static void op_release(chat_store_t *st, store_op_t *op) {
    chat_msg_unref(op->msg);
    free(op->receipts);
    free(op->membership);
    if (st->free_ops_count < STORE_FREE_OPS_MAX) {
        op->next = st->free_ops;
        st->free_ops = op;
        st->free_ops_count++;
    } else {
        free(op);
    }
}

static void flush_local(chat_store_t *st) {
    store_op_t *head = st->local_head, *tail = st->local_tail;
    st->local_head = st->local_tail = NULL;
    if (head)
        st->backend->submit(st, head, tail);
}

static void on_flush(uv_prepare_t *h);
static void on_net_flush(void *arg);

/* Queues op on the loop-local list, which the pump hands to the backend. */
static void op_queue(chat_store_t *st, store_op_t *op) {
    op->next = NULL;
    op->epoch = st->epoch;
    if (st->local_tail)
        st->local_tail->next = op;
    else
        st->local_head = op;
    st->local_tail = op;
    st->in_flight++;
    /* Tied to a network loop, its flush hooks run the pump in every iteration. Else a
     * no-op when already active; fails only without a callback. */
    if (!st->nl && uv_prepare_start(&st->flush_handle, on_flush))
        LOG_ERROR(STORE_TAG, "flush hook not started: the op waits for the next one");
}

/* ---- delivery and close ---- */

void store_deliver(chat_store_t *st, store_op_t *head, store_op_t *tail) {
    uv_mutex_lock(&st->mu);
    /* A list that was not empty has its wake-up under way already: the loop takes all
     * that is there when it runs (on_done, which wakes itself again for what it leaves),
     * so a burst of batches costs one wake-up, not one each. */
    bool wake = st->done_head == NULL;
    if (st->done_tail)
        st->done_tail->next = head;
    else
        st->done_head = head;
    st->done_tail = tail;
    tail->next = NULL;
    uv_mutex_unlock(&st->mu);
    if (wake && uv_async_send(&st->done_async))
        LOG_ERROR(STORE_TAG, "loop not woken: acknowledgements wait for the next batch");
}

void store_deliver_loop(chat_store_t *st, store_op_t *head, store_op_t *tail) {
    if (st->ready_tail)
        st->ready_tail->next = head;
    else
        st->ready_head = head;
    st->ready_tail = tail;
    tail->next = NULL;
}

void store_backend_stopped(chat_store_t *st) {
    uv_mutex_lock(&st->mu);
    st->backend_stopped = true;
    bool started = st->started;
    uv_mutex_unlock(&st->mu);
    if (started && uv_async_send(&st->done_async))
        LOG_ERROR(STORE_TAG, "loop not woken for the end of the writer");
}

static void store_free(chat_store_t *st) {
    void (*done)(void *) = st->close_done;
    void *arg = st->close_arg;
    map_entry_t *e;
    for (size_t i = 0; map_next(&st->rooms, &i, &e);)
        room_free(e->value);
    map_free(&st->rooms);
    store_members_free(&st->members);
    while (st->free_ops) {
        store_op_t *op = st->free_ops;
        st->free_ops = op->next;
        free(op);
    }
    uv_mutex_destroy(&st->mu);
    free(st);
    if (done)
        done(arg);
}

static void on_handle_closed(uv_handle_t *h) {
    chat_store_t *st = h->data;
    if (--st->handles_open == 0)
        store_free(st);
}

/* Advances the close sequence as far as it can: first everything in flight (acks and
 * reads) finishes, then the backend stops, then the handles close and all is freed. */
static void close_step(chat_store_t *st) {
    if (!st->closing || st->in_flight || st->reads_in_flight)
        return;
    if (!st->stop_requested) {
        st->stop_requested = true;
        st->backend->stop(st);
        return;
    }
    if (!st->stopped || st->handles_closing)
        return;
    st->handles_closing = true;
    /* Unhooked only now (on_done, or a read's after_work: never inside the loop's run of
     * its hooks, whose list this changes): until here the hook delivered what was
     * finished during the close. */
    if (st->nl)
        net_loop_off_flush(st->nl, on_net_flush, st);
    st->nl = NULL;
    if (st->backend->destroy)
        st->backend->destroy(st);
    uv_close((uv_handle_t *)&st->flush_handle, on_handle_closed);
    uv_close((uv_handle_t *)&st->done_async, on_handle_closed);
    uv_close((uv_handle_t *)&st->retry_timer, on_handle_closed);
}

/* ---- health ---- */

static void on_retry(uv_timer_t *h);

/* The text chat_store_health hands out while failing; delay_ms 0: a probe is under way. */
static void health_text(chat_store_t *st, uint32_t delay_ms) {
    char when[32] = "retrying";
    if (delay_ms)
        snprintf(when, sizeof when, "retry in %" PRIu32 " ms", delay_ms);
    snprintf(st->health_why, sizeof st->health_why, "commit failed: %s (%s)",
             store_strerror(st->health), when);
}

/* The first op of the current epoch that the backend failed. Every op still in flight was
 * queued in this epoch or an older one, and the backend fails all of them unwritten, so
 * nothing beyond a room's durable seq will be stored: the counters go back there (the
 * failed seqs were never announced and are given again, so no gap), a new epoch begins,
 * and its writes are refused until a probe commits. */
static void health_fail(chat_store_t *st, int err) {
    map_entry_t *e;
    for (size_t i = 0; map_next(&st->rooms, &i, &e);) {
        store_room_t *r = e->value;
        r->last_seq = r->durable_seq;
    }
    st->epoch++;
    uint32_t delay = st->retry_ms;
    st->retry_ms = delay > st->cfg.retry_max_ms / 2 ? st->cfg.retry_max_ms : delay * 2;
    bool first = st->health == 0;
    st->health = err;
    st->failures++;
    health_text(st, delay);
    if (first)
        LOG_ERROR(STORE_TAG,
                  "%s store: a commit failed (%s): writes refused, retry in %" PRIu32 " ms",
                  st->backend->name, store_strerror(err), delay);
    else
        LOG_WARN(STORE_TAG, "%s store: retry %" PRIu32 " failed (%s), next in %" PRIu32 " ms",
                 st->backend->name, st->failures - 1, store_strerror(err), delay);
    if (!st->closing)
        uv_timer_start(&st->retry_timer, on_retry, delay, 0);
}

/* A probe (or any op of the current epoch) committed: the store takes writes again. */
static void health_ok(chat_store_t *st) {
    LOG_WARN(STORE_TAG, "%s store: writable again after %" PRIu32 " failed commits and retries",
             st->backend->name, st->failures);
    st->health = 0;
    st->failures = 0;
    snprintf(st->health_why, sizeof st->health_why, "ok");
}

/* Retry timer: one probe op through the backend, as any write. */
static void on_retry(uv_timer_t *h) {
    chat_store_t *st = h->data;
    if (st->closing || st->health == 0)
        return;
    store_op_t *op = op_alloc(st);
    if (!op) {
        uv_timer_start(h, on_retry, st->retry_ms, 0);
        return;
    }
    op->kind = STORE_OP_PROBE;
    op_queue(st, op);
    health_text(st, 0);
}

static int local_health(chat_store_t *st, const char **why) {
    if (why)
        *why = st ? st->health_why : "no store";
    return st ? st->health : -EINVAL;
}

/* The index follows what is durable; when it cannot (out of memory) it is behind the
 * disk until the next open, which the log says. */
static void deliver_mark(chat_store_t *st, store_op_t *op) {
    store_receipts_t *r = op->receipts;
    if (op->err == 0 && st->backend->check_receipts)
        op->err = st->backend->check_receipts(st, r);
    uint64_t mark = 0;
    if (op->err == 0) {
        if (store_members_mark(&st->members, r->room_id, r->user_id, r->found))
            LOG_ERROR(STORE_TAG, "read mark of %s in %s stored but not indexed: out of memory",
                      r->user_id, r->room_id);
        const store_member_t *m = store_members_get(&st->members, r->room_id, r->user_id);
        mark = m && m->read_seq > r->found ? m->read_seq : r->found;
    }
    if (op->mark_cb)
        op->mark_cb(op->err, mark, op->arg);
}

static void deliver_membership(chat_store_t *st, store_op_t *op) {
    const store_membership_t *ms = op->membership;
    st->membership_ops--;
    if (op->err == 0 && op->kind == STORE_OP_FORGET)
        store_members_forget(&st->members, ms->room_id, ms->user_id);
    else if (op->err == 0 &&
             store_members_join(&st->members, ms->room_id, ms->user_id, ms->username, ms->at))
        LOG_ERROR(STORE_TAG, "membership of %s in %s stored but not indexed: out of memory",
                  ms->user_id, ms->room_id);
    if (op->done_cb)
        op->done_cb(op->err, op->arg);
}

static void deliver_one(chat_store_t *st, store_op_t *op) {
    PARLEY_ASSERT(!op->commit_failed || op->err < 0);
    PARLEY_ASSERT(op->epoch <= st->epoch);
    if (op->commit_failed) {
        if (op->epoch == st->epoch)
            health_fail(st, op->err);
    } else if (op->epoch == st->epoch) {
        if (st->health < 0)
            health_ok(st);
        else if (op->kind != STORE_OP_PROBE)
            st->retry_ms = st->cfg.retry_min_ms; /* real writes work: backoff starts over */
    }
    switch (op->kind) {
    case STORE_OP_APPEND:
        if (op->err == 0)
            window_push(st, op->room, op->msg);
        if (op->err == 0 && st->head.on_stored)
            st->head.on_stored(op->msg, st->head.on_stored_arg);
        if (op->append_cb)
            op->append_cb(op->err, op->msg, op->arg);
        break;
    case STORE_OP_MARK_READ:
        deliver_mark(st, op);
        break;
    case STORE_OP_JOIN:
    case STORE_OP_FORGET:
        deliver_membership(st, op);
        break;
    case STORE_OP_PROBE:
        break;
    }
}

/* Delivers up to max of the ops finished on the loop, oldest first; returns how many.
 * Their callbacks may append (the pump's next round takes those) or close the store
 * (which only starts the close sequence: st stays valid until its handles close). */
static size_t deliver_ready(chat_store_t *st, size_t max) {
    size_t n = 0;
    while (st->ready_head && n < max) {
        store_op_t *op = st->ready_head;
        st->ready_head = op->next;
        if (!st->ready_head)
            st->ready_tail = NULL;
        n++;
        st->in_flight--;
        deliver_one(st, op);
        op_release(st, op);
    }
    return n;
}

/* The pump: everything appended since its last run goes to the backend as one list (one
 * lock, one wake-up of the writer), so a burst of appends from one read or one round of
 * acks lands in one commit. As a flush hook of the network loop (deliver), what the
 * backend finished at once (memory) is delivered here, and what those callbacks append
 * goes round again, up to STORE_DELIVER_MAX callbacks, so that the output they queue
 * leaves with this flush; what is left waits for the next run, and the uv_async keeps
 * the loop from blocking until then. Elsewhere the uv_async wakes the loop to deliver
 * them (on_done): a callback must never run inside the call that queued its op. */
static void pump(chat_store_t *st, bool deliver) {
    size_t budget = STORE_DELIVER_MAX;
    flush_local(st);
    while (deliver && st->ready_head && budget) {
        budget -= deliver_ready(st, budget);
        flush_local(st);
    }
    if (st->ready_head && uv_async_send(&st->done_async))
        LOG_ERROR(STORE_TAG, "loop not woken: acknowledgements wait for the next batch");
    if (deliver)
        close_step(st); /* the callbacks may have been the last in flight of a close */
}

/* Runs just before the loop polls, when the store is not tied to a network loop. */
static void on_flush(uv_prepare_t *h) {
    chat_store_t *st = h->data;
    uv_prepare_stop(h);
    pump(st, false);
}

/* Once per flush of the network loop's output (check and prepare: after the I/O
 * callbacks, and before the loop blocks). */
static void on_net_flush(void *arg) {
    pump(arg, true);
}

static void on_done(uv_async_t *h) {
    chat_store_t *st = h->data;
    /* Finished on the loop and left by the pump. Tied to a network loop, the hook (the
     * check pass right after this) delivers them, so that they too go out with a flush
     * and no pass delivers more than STORE_DELIVER_MAX: the wake-up was only to keep the
     * loop from blocking meanwhile. */
    if (!st->nl) {
        deliver_ready(st, STORE_DELIVER_MAX);
        if (st->ready_head && uv_async_send(h))
            LOG_ERROR(STORE_TAG, "loop not woken: acknowledgements wait for the next batch");
    }
    uv_mutex_lock(&st->mu);
    /* At most STORE_DELIVER_MAX callbacks per wake-up, so that a big batch does not keep
     * the loop from its sockets; the rest follow on the next iteration. */
    store_op_t *op = st->done_head, *last = op;
    for (size_t n = 1; last && last->next && n < STORE_DELIVER_MAX; n++)
        last = last->next;
    if (last) {
        st->done_head = last->next;
        last->next = NULL;
        if (!st->done_head)
            st->done_tail = NULL;
    }
    bool more = st->done_head != NULL;
    /* backend_stopped is set after the backend's last delivery, under this lock, so when
     * it is seen with nothing left in the list nothing can follow. */
    bool stopped = st->backend_stopped && !more;
    uv_mutex_unlock(&st->mu);
    if (more && uv_async_send(h))
        LOG_ERROR(STORE_TAG, "loop not woken: acknowledgements wait for the next batch");
    while (op) {
        store_op_t *next = op->next;
        st->in_flight--;
        deliver_one(st, op);
        op_release(st, op);
        op = next;
    }
    st->stopped = stopped;
    close_step(st);
}

int store_init(chat_store_t *st, uv_loop_t *loop, const chat_store_config_t *cfg,
               const store_backend_t *backend, size_t window_limit) {
    st->head.ops = &store_local_ops;
    st->backend = backend;
    st->loop = loop;
    if (cfg)
        st->cfg = *cfg;
    else
        chat_store_config_defaults(&st->cfg);
    if (st->cfg.max_batch == 0)
        st->cfg.max_batch = 1;
    if (st->cfg.max_pending == 0)
        st->cfg.max_pending = SIZE_MAX;
    if (st->cfg.max_read == 0)
        st->cfg.max_read = SIZE_MAX;
    if (st->cfg.retry_min_ms == 0)
        st->cfg.retry_min_ms = 1;
    if (st->cfg.retry_max_ms < st->cfg.retry_min_ms)
        st->cfg.retry_max_ms = st->cfg.retry_min_ms;
    st->retry_ms = st->cfg.retry_min_ms;
    snprintf(st->health_why, sizeof st->health_why, "ok");
    st->window_limit = window_limit;
    int err = id_init(st);
    if (err)
        return err;
    if (map_init(&st->rooms))
        return -EIO;
    if ((err = store_members_init(&st->members))) {
        map_free(&st->rooms);
        return err;
    }
    if (uv_mutex_init(&st->mu)) {
        map_free(&st->rooms);
        store_members_free(&st->members);
        return -ENOMEM;
    }
    return 0;
}

int store_start(chat_store_t *st) {
    /* The loop's libuv state is touched last, so that a failed open never leaves a
     * handle behind that the caller would have to run the loop for. */
    int err = uv_async_init(st->loop, &st->done_async, on_done);
    if (err)
        return err;
    st->done_async.data = st;
    /* Cannot fail: libuv only links the handle into the loop (a failure here could not
     * be undone without running the loop, which the comment above rules out). */
    uv_prepare_init(st->loop, &st->flush_handle);
    st->flush_handle.data = st;
    uv_timer_init(st->loop, &st->retry_timer); /* the same: cannot fail */
    st->retry_timer.data = st;
    st->handles_open = 3;
    uv_mutex_lock(&st->mu);
    st->started = true;
    uv_mutex_unlock(&st->mu);
    return 0;
}

void store_fini_unopened(chat_store_t *st) {
    map_entry_t *e;
    for (size_t i = 0; map_next(&st->rooms, &i, &e);)
        room_free(e->value);
    map_free(&st->rooms);
    store_members_free(&st->members);
    uv_mutex_destroy(&st->mu);
}

/* ---- public functions ---- */

/* Whether the store takes one more write (append, mark_read): 0, -ECANCELED when closing,
 * the failed commit's error while failing, or -EAGAIN at max_pending. */
static int write_admit(const chat_store_t *st) {
    if (st->closing)
        return -ECANCELED;
    if (st->health)
        return st->health;
    if (st->in_flight >= st->cfg.max_pending)
        return -EAGAIN;
    return 0;
}

static int local_append(chat_store_t *st, const char *room_id, const char *user_id,
                        const char *username, const char *text, size_t text_len,
                        chat_store_append_cb cb, void *arg, chat_msg_t **out) {
    if (out)
        *out = NULL;
    if (!st || !room_id || !user_id || !username || (!text && text_len))
        return -EINVAL;
    int admit = write_admit(st);
    if (admit)
        return admit;

    size_t room_len = strlen(room_id);
    store_room_t *room = store_room_get(st, room_id, room_len);
    uint64_t seq = (room ? room->last_seq : 0) + 1;
    char id[STORE_ID_MAX + 1];
    store_msg_fields_t f = {
        .id = id,
        .id_len = id_next(st, id),
        .room_id = room_id,
        .room_id_len = room_len,
        .user_id = user_id,
        .user_id_len = strlen(user_id),
        .username = username,
        .username_len = strlen(username),
        .text = text ? text : "",
        .text_len = text_len,
        .seq = seq,
        .timestamp = time_wall_ms(),
    };
    chat_msg_t *m;
    int err = store_msg_new(&f, true, &m);
    if (err)
        return err;
    store_op_t *op = op_alloc(st);
    if (!op || (!room && !(room = store_room_add(st, room_id, room_len, 0)))) {
        if (op)
            op_release(st, op);
        chat_msg_unref(m);
        return -ENOMEM;
    }
    room->last_seq = seq;
    op->kind = STORE_OP_APPEND;
    op->room = room;
    op->msg = m;
    op->append_cb = cb;
    op->arg = arg;
    op_queue(st, op);
    if (out)
        *out = m;
    return 0;
}

static int local_mark_read(chat_store_t *st, const char *room_id, const char *user_id,
                           const char *const *message_ids, size_t n, uint64_t upto_seq,
                           chat_store_mark_cb cb, void *arg) {
    if (!st || !room_id || !user_id || (n && !message_ids))
        return -EINVAL;
    int admit = write_admit(st);
    if (admit)
        return admit;

    /* Only strings shaped like ids are kept: the rest can name no message, and dropping
     * them here spares the backend a lookup each (the SQLite writer's time is everyone's
     * acks) and the queue their memory. */
    size_t room_len = strlen(room_id) + 1, user_len = strlen(user_id) + 1, keep = 0;
    size_t bytes = sizeof(store_receipts_t) + room_len + user_len;
    uint64_t counter;
    for (size_t i = 0; i < n; i++) {
        if (!message_ids[i])
            return -EINVAL;
        size_t len = strnlen(message_ids[i], STORE_ID_MAX + 1);
        if (id_parse(message_ids[i], len, &counter)) {
            bytes += sizeof(char *) + len + 1;
            keep++;
        }
    }
    store_receipts_t *rc = malloc(bytes);
    store_op_t *op = rc ? op_alloc(st) : NULL;
    if (!op) {
        free(rc);
        return -ENOMEM;
    }
    char *p = (char *)&rc->ids[keep];
    rc->room_id = put_str(&p, room_id, room_len - 1);
    rc->user_id = put_str(&p, user_id, user_len - 1);
    rc->read_at = time_wall_ms();
    rc->asked = n + (upto_seq != 0);
    /* A seq beyond the acknowledged ones reads everything there is. */
    const store_room_t *room = store_room_get(st, room_id, room_len - 1);
    uint64_t durable = room ? room->durable_seq : 0;
    rc->upto_seq = upto_seq < durable ? upto_seq : durable;
    rc->found = 0;
    rc->n = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strnlen(message_ids[i], STORE_ID_MAX + 1);
        if (id_parse(message_ids[i], len, &counter))
            rc->ids[rc->n++] = put_str(&p, message_ids[i], len);
    }
    PARLEY_ASSERT(rc->n == keep);
    op->kind = STORE_OP_MARK_READ;
    op->receipts = rc;
    op->mark_cb = cb;
    op->arg = arg;
    op_queue(st, op);
    return 0;
}

/* Queues a JOIN (username not NULL) or FORGET. */
static int queue_membership(chat_store_t *st, store_op_kind_t kind, const char *room_id,
                            const char *user_id, const char *username, chat_store_done_cb cb,
                            void *arg) {
    int admit = write_admit(st);
    if (admit)
        return admit;
    size_t room_len = strlen(room_id), user_len = strlen(user_id);
    size_t name_len = username ? strlen(username) : 0;
    store_membership_t *ms =
        malloc(sizeof *ms + room_len + user_len + name_len + 2 + (username != NULL));
    store_op_t *op = ms ? op_alloc(st) : NULL;
    if (!op) {
        free(ms);
        return -ENOMEM;
    }
    char *p = (char *)(ms + 1);
    ms->room_id = put_str(&p, room_id, room_len);
    ms->user_id = put_str(&p, user_id, user_len);
    ms->username = username ? put_str(&p, username, name_len) : NULL;
    ms->at = time_wall_ms();
    op->kind = kind;
    op->membership = ms;
    st->membership_ops++;
    op->done_cb = cb;
    op->arg = arg;
    op_queue(st, op);
    return 0;
}

static bool membership_args_ok(const char *room_id, const char *user_id) {
    return room_id && user_id && utf8_is_valid((const uint8_t *)room_id, strlen(room_id)) &&
           utf8_is_valid((const uint8_t *)user_id, strlen(user_id));
}

static int local_join(chat_store_t *st, const char *room_id, const char *user_id,
                      const char *username, chat_store_done_cb cb, void *arg) {
    if (!st || !membership_args_ok(room_id, user_id) || !username ||
        !utf8_is_valid((const uint8_t *)username, strlen(username)))
        return -EINVAL;
    const store_member_t *m = store_members_get(&st->members, room_id, user_id);
    if (m && m->joined_at && strcmp(m->username, username) == 0 && !st->closing &&
        st->membership_ops == 0) {
        if (cb)
            cb(0, arg);
        return 0;
    }
    return queue_membership(st, STORE_OP_JOIN, room_id, user_id, username, cb, arg);
}

static int local_forget(chat_store_t *st, const char *room_id, const char *user_id,
                        chat_store_done_cb cb, void *arg) {
    if (!st || !membership_args_ok(room_id, user_id))
        return -EINVAL;
    const store_member_t *m = store_members_get(&st->members, room_id, user_id);
    if ((!m || !m->joined_at) && !st->closing && st->membership_ops == 0) {
        /* Not a member: nothing to write (a client repeating forgets costs no commits). */
        if (cb)
            cb(0, arg);
        return 0;
    }
    return queue_membership(st, STORE_OP_FORGET, room_id, user_id, NULL, cb, arg);
}

static int local_user_rooms(chat_store_t *st, const char *user_id, chat_store_user_rooms_cb cb,
                            void *arg) {
    if (!st || !user_id || !cb)
        return -EINVAL;
    if (st->closing)
        return -ECANCELED;
    const store_member_t **list;
    long n = store_members_list(&st->members, user_id, false, &list);
    if (n < 0)
        return (int)n;
    chat_user_room_t *rooms = n ? calloc((size_t)n, sizeof *rooms) : NULL;
    if (n && !rooms) {
        free(list);
        return -ENOMEM;
    }
    for (long i = 0; i < n; i++) {
        const store_room_t *r = store_room_get(st, list[i]->room_id, strlen(list[i]->room_id));
        rooms[i] = (chat_user_room_t){.room_id = list[i]->room_id,
                                      .last_seq = r ? r->durable_seq : 0,
                                      .last_read_seq = list[i]->read_seq,
                                      .joined_at = list[i]->joined_at};
    }
    free(list);
    cb(0, rooms, (size_t)n, arg);
    free(rooms);
    return 0;
}

static int local_members(chat_store_t *st, const char *room_id, chat_store_members_cb cb,
                         void *arg) {
    if (!st || !room_id || !cb)
        return -EINVAL;
    if (st->closing)
        return -ECANCELED;
    const store_member_t **list;
    long n = store_members_list(&st->members, room_id, true, &list);
    if (n < 0)
        return (int)n;
    chat_member_t *members = n ? calloc((size_t)n, sizeof *members) : NULL;
    if (n && !members) {
        free(list);
        return -ENOMEM;
    }
    for (long i = 0; i < n; i++)
        members[i] = (chat_member_t){.user_id = list[i]->user_id,
                                     .username = list[i]->username,
                                     .last_read_seq = list[i]->read_seq,
                                     .joined_at = list[i]->joined_at};
    free(list);
    const store_room_t *r = store_room_get(st, room_id, strlen(room_id));
    cb(0, members, (size_t)n, r ? r->durable_seq : 0, arg);
    free(members);
    return 0;
}

static uint64_t local_last_seq(chat_store_t *st, const char *room_id) {
    if (!st || !room_id)
        return 0;
    store_room_t *r = store_room_get(st, room_id, strlen(room_id));
    return r ? r->last_seq : 0;
}

/* Serves the acknowledged range [lo, hi] of room r: from the window when it holds lo
 * (synchronously), else from the backend on a worker. */
static int serve_range(chat_store_t *st, store_room_t *r, uint64_t lo, uint64_t hi,
                       chat_store_history_cb cb, void *arg) {
    uint64_t wlo = window_lo(r);
    if (lo < wlo && st->backend->read) {
        store_read_t *rd = calloc(1, sizeof *rd);
        if (!rd)
            return -ENOMEM;
        rd->st = st;
        rd->room_id = r->id;
        rd->room_id_len = r->id_len;
        rd->lo = lo;
        rd->hi = hi;
        rd->cb = cb;
        rd->arg = arg;
        rd->req.data = rd;
        int err = st->backend->read(st, rd);
        if (err) {
            free(rd);
            return err;
        }
        st->reads_in_flight++;
        return 0;
    }
    if (lo < wlo)
        lo = wlo; /* memory store: older messages were dropped */
    if (hi < lo) {
        cb(0, NULL, 0, arg);
        return 0;
    }
    size_t n = (size_t)(hi - lo + 1);
    size_t first = (r->head + (size_t)(lo - wlo)) % r->cap;
    if (first + n <= r->cap) {
        /* Contiguous in the ring: hand out the ring itself. Nothing the callback can do
         * changes a window synchronously (acks and reads land from the loop later). */
        cb(0, &r->ring[first], n, arg);
        return 0;
    }
    chat_msg_t *stack[STORE_STACK_MSGS] = {0};
    chat_msg_t **msgs = n <= STORE_STACK_MSGS ? stack : malloc(n * sizeof *msgs);
    if (!msgs)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        msgs[i] = r->ring[(first + i) % r->cap];
    cb(0, msgs, n, arg);
    if (msgs != stack)
        free(msgs);
    return 0;
}

void store_read_finish(uv_work_t *req, int status) {
    store_read_t *rd = req->data;
    chat_store_t *st = rd->st;
    st->reads_in_flight--;
    if (status < 0 && rd->err == 0)
        rd->err = status;
    store_room_t *r = store_room_get(st, rd->room_id, rd->room_id_len);
    if (rd->err == 0 && r) {
        for (size_t i = rd->n; i-- > 0;)
            window_prepend(st, r, rd->msgs[i]);
    }
    rd->cb(rd->err, rd->err ? NULL : rd->msgs, rd->err ? 0 : rd->n, rd->arg);
    for (size_t i = 0; i < rd->n; i++)
        chat_msg_unref(rd->msgs[i]);
    free(rd->msgs);
    free(rd);
    close_step(st);
}

/* What history and after share: the checks, the max_read cap on *limit, the room (NULL
 * when it has no messages). */
static int history_args(chat_store_t *st, const char *room_id, chat_store_history_cb cb,
                        size_t *limit, store_room_t **room) {
    if (!st || !room_id || !cb)
        return -EINVAL;
    if (st->closing)
        return -ECANCELED;
    if (*limit > st->cfg.max_read)
        *limit = st->cfg.max_read;
    *room = store_room_get(st, room_id, strlen(room_id));
    return 0;
}

static int local_history(chat_store_t *st, const char *room_id, uint64_t before_seq, size_t limit,
                         chat_store_history_cb cb, void *arg) {
    store_room_t *r;
    int err = history_args(st, room_id, cb, &limit, &r);
    if (err)
        return err;
    uint64_t hi = r ? r->durable_seq : 0;
    if (before_seq && before_seq - 1 < hi)
        hi = before_seq - 1;
    if (hi == 0 || limit == 0) {
        cb(0, NULL, 0, arg);
        return 0;
    }
    uint64_t lo = hi >= limit ? hi - limit + 1 : 1;
    return serve_range(st, r, lo, hi, cb, arg);
}

static int local_after(chat_store_t *st, const char *room_id, uint64_t after_seq, size_t limit,
                       chat_store_history_cb cb, void *arg) {
    store_room_t *r;
    int err = history_args(st, room_id, cb, &limit, &r);
    if (err)
        return err;
    if (after_seq > (r ? r->last_seq : 0)) {
        cb(-ERANGE, NULL, 0, arg);
        return 0;
    }
    if (!r || after_seq >= r->durable_seq || limit == 0) {
        cb(0, NULL, 0, arg);
        return 0;
    }
    uint64_t hi = r->durable_seq;
    if (hi - after_seq > limit)
        hi = after_seq + limit;
    return serve_range(st, r, after_seq + 1, hi, cb, arg);
}

static void local_close(chat_store_t *st, void (*done)(void *arg), void *arg) {
    if (!st || st->closing)
        return;
    st->closing = true;
    st->close_done = done;
    st->close_arg = arg;
    uv_prepare_stop(&st->flush_handle);
    uv_timer_stop(&st->retry_timer);
    pump(st, false); /* what it finishes is delivered later, never inside this call */
    close_step(st);
}

static int local_use_net_loop(chat_store_t *st, net_loop_t *nl) {
    if (st->closing || st->nl)
        return -EINVAL;
    int rc = net_loop_on_flush(nl, on_net_flush, st);
    if (rc)
        return rc;
    st->nl = nl;
    uv_prepare_stop(&st->flush_handle); /* what is queued goes with the hook's next run */
    return 0;
}

const chat_store_ops_t store_local_ops = {
    .append = local_append,
    .history = local_history,
    .after = local_after,
    .last_seq = local_last_seq,
    .mark_read = local_mark_read,
    .join = local_join,
    .forget = local_forget,
    .user_rooms = local_user_rooms,
    .members = local_members,
    .health = local_health,
    .close = local_close,
    .use_net_loop = local_use_net_loop,
};
