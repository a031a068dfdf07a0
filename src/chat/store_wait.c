/* chat/store_wait.c — a SQLite store that opens once another process lets go of its
 * directory (chat_store_open_sqlite_wait, store.h).
 *
 * A restart on the same data directory (docs/deploy/restart.md): the new process serves
 * at once while the old one drains, and the old one's store holds the directory's flock
 * until it closed. This store stands in meanwhile: every call is queued in call order with
 * its strings copied (at most max_pending; -EAGAIN beyond), and a timer tries the lock
 * every CHAT_STORE_LOCK_RETRY_MS. Once the lock is free, chat_store_open_sqlite opens the
 * real store, the queue is replayed into it in the same order, and every later call goes
 * straight through. Seqs are assigned by the real store as the calls are replayed, from the
 * counters it loaded: nothing is numbered before the old process's last commit is known.
 *
 * Why a timer on the loop rather than a thread blocked in flock: a try costs one system
 * call, the interval bounds what a restart adds to the wait (tens of ms), and the open
 * itself (migrations, the rooms' seqs) runs on the loop as it does at start-up. The lock
 * is tried with a descriptor of its own and let go before chat_store_open_sqlite takes it;
 * losing the race to a third process in between is only another -EBUSY, tried again.
 *
 * Not done: a queue that outlives the wait. When the lock is still held after wait_ms the
 * store fails for good (every queued and later call gets -EBUSY) and the caller is told:
 * two processes configured with one directory is a mistake to stop on, not to wait out. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "chat/store_internal.h"
#include "util/assert.h"
#include "util/log.h"

typedef enum { W_APPEND, W_MARK, W_HISTORY, W_AFTER } wait_kind_t;

/* A call made before the store opened, with copies of its strings. */
typedef struct wait_op {
    struct wait_op *next;
    wait_kind_t kind;
    char *room_id, *user_id, *username, *text;
    size_t text_len;
    uint64_t seq; /* history: before_seq; after: after_seq */
    size_t limit;
    char **ids; /* mark_read */
    size_t nids;
    chat_store_append_cb append_cb;
    chat_store_mark_cb mark_cb;
    uint64_t upto_seq;
    chat_store_history_cb read_cb;
    void *arg;
} wait_op_t;

typedef struct {
    store_head_t head; /* first: see store_internal.h */
    uv_loop_t *loop;
    char *dir;
    chat_store_config_t cfg;
    chat_store_t *real; /* once open; every call goes there */
    int err;            /* the wait failed: every call fails with it */
    uv_timer_t retry;
    uint64_t deadline; /* uv_now() at which the wait ends */
    wait_op_t *ops, *ops_tail;
    size_t nops;
    void (*opened)(int err, void *arg);
    void *opened_arg;
    bool closing;
    void (*close_done)(void *arg);
    void *close_arg;
    char why[160];
} wait_store_t;

static const chat_store_ops_t wait_ops;

static wait_store_t *wait_of(chat_store_t *st) {
    return (wait_store_t *)st;
}

static void op_free(wait_op_t *op) {
    free(op->room_id);
    free(op->user_id);
    free(op->username);
    free(op->text);
    for (size_t i = 0; i < op->nids; i++)
        free(op->ids[i]);
    free(op->ids);
    free(op);
}

/* The operation's callback with an error (nothing was stored or read). */
static void op_fail(wait_op_t *op, int err) {
    switch (op->kind) {
    case W_APPEND:
        if (op->append_cb)
            op->append_cb(err, NULL, op->arg);
        break;
    case W_MARK:
        if (op->mark_cb)
            op->mark_cb(err, 0, op->arg);
        break;
    case W_HISTORY:
    case W_AFTER:
        op->read_cb(err, NULL, 0, op->arg);
        break;
    }
}

/* The queued calls, in order, into the real store; the ones it refuses get its error. */
static void replay(wait_store_t *w) {
    wait_op_t *op = w->ops;
    w->ops = w->ops_tail = NULL;
    w->nops = 0;
    while (op) {
        wait_op_t *next = op->next;
        int rc = 0;
        switch (op->kind) {
        case W_APPEND:
            rc = chat_store_append(w->real, op->room_id, op->user_id, op->username, op->text,
                                   op->text_len, op->append_cb, op->arg, NULL);
            break;
        case W_MARK:
            rc = chat_store_mark_read(w->real, op->room_id, op->user_id,
                                      (const char *const *)op->ids, op->nids, op->upto_seq,
                                      op->mark_cb, op->arg);
            break;
        case W_HISTORY:
            rc = chat_store_history(w->real, op->room_id, op->seq, op->limit, op->read_cb, op->arg);
            break;
        case W_AFTER:
            rc = chat_store_after(w->real, op->room_id, op->seq, op->limit, op->read_cb, op->arg);
            break;
        }
        if (rc)
            op_fail(op, rc);
        op_free(op);
        op = next;
    }
}

static void fail_all(wait_store_t *w, int err) {
    wait_op_t *op = w->ops;
    w->ops = w->ops_tail = NULL;
    w->nops = 0;
    while (op) {
        wait_op_t *next = op->next;
        op_fail(op, err);
        op_free(op);
        op = next;
    }
}

/* Whether another process holds dir's lock now (a descriptor of our own, let go at once). */
static bool lock_held(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false; /* not there yet: chat_store_open_sqlite makes it */
    bool held = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd); /* releases the lock if it was taken */
    return held;
}

static void try_open(uv_timer_t *t) {
    wait_store_t *w = t->data;
    int rc =
        lock_held(w->dir) ? -EBUSY : chat_store_open_sqlite(w->loop, w->dir, &w->cfg, &w->real);
    if (rc == -EBUSY && uv_now(w->loop) < w->deadline)
        return; /* still the other process's */
    if (uv_timer_stop(&w->retry))
        LOG_DEBUG(STORE_TAG, "lock retry timer not stopped");
    if (rc) {
        w->err = rc;
        snprintf(w->why, sizeof w->why, "%s: %s", w->dir,
                 rc == -EBUSY ? "still locked by another process" : strerror(-rc));
        LOG_ERROR(STORE_TAG, "cannot open the store in %s: %s", w->dir,
                  rc == -EBUSY ? "its lock is still held by another process" : strerror(-rc));
        fail_all(w, rc);
    } else {
        LOG_INFO(STORE_TAG, "%s: the lock is ours; %zu waiting operations go to the store", w->dir,
                 w->nops);
        chat_store_on_stored(w->real, w->head.on_stored, w->head.on_stored_arg);
        replay(w);
    }
    if (w->opened)
        w->opened(rc, w->opened_arg);
}

int chat_store_open_sqlite_wait(uv_loop_t *loop, const char *dir, const chat_store_config_t *cfg,
                                uint64_t wait_ms, void (*opened)(int err, void *arg), void *arg,
                                chat_store_t **out) {
    int rc = chat_store_open_sqlite(loop, dir, cfg, out);
    if (rc != -EBUSY || wait_ms == 0)
        return rc;
    wait_store_t *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        return -ENOMEM;
    }
    w->head.ops = &wait_ops;
    w->loop = loop;
    if (cfg)
        w->cfg = *cfg;
    else
        chat_store_config_defaults(&w->cfg);
    w->opened = opened;
    w->opened_arg = arg;
    w->deadline = uv_now(loop) + wait_ms;
    snprintf(w->why, sizeof w->why, "%s: waiting for its lock (held by another process)", dir);
    w->retry.data = w;
    /* Timer initialisation cannot fail on Linux; a failed start is refused all the same. */
    if ((rc = uv_timer_init(loop, &w->retry)) ||
        (rc = uv_timer_start(&w->retry, try_open, CHAT_STORE_LOCK_RETRY_MS,
                             CHAT_STORE_LOCK_RETRY_MS))) {
        free(w->dir);
        free(w);
        return rc;
    }
    LOG_WARN(STORE_TAG,
             "%s is locked by another process (a restart: it is draining?); serving now, the "
             "store opens once the lock is free (at most %g s)",
             dir, (double)wait_ms / 1000);
    *out = (chat_store_t *)w;
    return 0;
}

/* ---- the operations ---- */

/* A new queued call, or the error to return instead (closing, failed, queue full). */
static int enqueue(wait_store_t *w, wait_kind_t kind, const char *room_id, wait_op_t **out) {
    if (w->closing)
        return -ECANCELED;
    if (w->err)
        return w->err;
    if (w->cfg.max_pending && w->nops >= w->cfg.max_pending)
        return -EAGAIN;
    if (!room_id)
        return -EINVAL;
    wait_op_t *op = calloc(1, sizeof *op);
    if (!op || !(op->room_id = strdup(room_id))) {
        free(op);
        return -ENOMEM;
    }
    op->kind = kind;
    *out = op;
    return 0;
}

static void push(wait_store_t *w, wait_op_t *op) {
    if (w->ops_tail)
        w->ops_tail->next = op;
    else
        w->ops = op;
    w->ops_tail = op;
    w->nops++;
}

static int w_append(chat_store_t *st, const char *room_id, const char *user_id,
                    const char *username, const char *text, size_t text_len,
                    chat_store_append_cb cb, void *arg, chat_msg_t **out) {
    wait_store_t *w = wait_of(st);
    if (w->real)
        return chat_store_append(w->real, room_id, user_id, username, text, text_len, cb, arg, out);
    if (out)
        *out = NULL; /* numbered only once the store is open */
    if (!user_id || !username || (!text && text_len))
        return -EINVAL;
    wait_op_t *op;
    int rc = enqueue(w, W_APPEND, room_id, &op);
    if (rc)
        return rc;
    op->user_id = strdup(user_id);
    op->username = strdup(username);
    op->text = malloc(text_len + 1);
    if (!op->user_id || !op->username || !op->text) {
        op_free(op);
        return -ENOMEM;
    }
    if (text_len)
        memcpy(op->text, text, text_len);
    op->text[text_len] = '\0';
    op->text_len = text_len;
    op->append_cb = cb;
    op->arg = arg;
    push(w, op);
    return 0;
}

static int w_read(chat_store_t *st, wait_kind_t kind, const char *room_id, uint64_t seq,
                  size_t limit, chat_store_history_cb cb, void *arg) {
    wait_store_t *w = wait_of(st);
    if (w->real)
        return kind == W_HISTORY ? chat_store_history(w->real, room_id, seq, limit, cb, arg)
                                 : chat_store_after(w->real, room_id, seq, limit, cb, arg);
    if (!cb)
        return -EINVAL;
    wait_op_t *op;
    int rc = enqueue(w, kind, room_id, &op);
    if (rc)
        return rc;
    op->seq = seq;
    op->limit = limit;
    op->read_cb = cb;
    op->arg = arg;
    push(w, op);
    return 0;
}

static int w_history(chat_store_t *st, const char *room_id, uint64_t before_seq, size_t limit,
                     chat_store_history_cb cb, void *arg) {
    return w_read(st, W_HISTORY, room_id, before_seq, limit, cb, arg);
}

static int w_after(chat_store_t *st, const char *room_id, uint64_t after_seq, size_t limit,
                   chat_store_history_cb cb, void *arg) {
    return w_read(st, W_AFTER, room_id, after_seq, limit, cb, arg);
}

/* Until the store is open the last seqs are not known: 0, as for a room without any. */
static uint64_t w_last_seq(chat_store_t *st, const char *room_id) {
    wait_store_t *w = wait_of(st);
    return w->real ? chat_store_last_seq(w->real, room_id) : 0;
}

static int w_mark_read(chat_store_t *st, const char *room_id, const char *user_id,
                       const char *const *message_ids, size_t n, uint64_t upto_seq,
                       chat_store_mark_cb cb, void *arg) {
    wait_store_t *w = wait_of(st);
    if (w->real)
        return chat_store_mark_read(w->real, room_id, user_id, message_ids, n, upto_seq, cb, arg);
    if (!user_id || (n && !message_ids))
        return -EINVAL;
    wait_op_t *op;
    int rc = enqueue(w, W_MARK, room_id, &op);
    if (rc)
        return rc;
    op->user_id = strdup(user_id);
    op->ids = calloc(n ? n : 1, sizeof *op->ids);
    if (!op->user_id || !op->ids) {
        op_free(op);
        return -ENOMEM;
    }
    for (; op->nids < n; op->nids++) {
        if (!message_ids[op->nids] || !(op->ids[op->nids] = strdup(message_ids[op->nids]))) {
            rc = message_ids[op->nids] ? -ENOMEM : -EINVAL;
            op_free(op);
            return rc;
        }
    }
    op->mark_cb = cb;
    op->upto_seq = upto_seq;
    op->arg = arg;
    push(w, op);
    return 0;
}

static int w_health(chat_store_t *st, const char **why) {
    wait_store_t *w = wait_of(st);
    if (w->real)
        return chat_store_health(w->real, why);
    if (why)
        *why = w->why;
    return w->err ? w->err : -EBUSY;
}

static void w_free(wait_store_t *w) {
    void (*done)(void *) = w->close_done;
    void *arg = w->close_arg;
    free(w->dir);
    free(w);
    if (done)
        done(arg);
}

static void real_closed(void *arg) {
    w_free(arg);
}

/* Callbacks never run inside chat_store_close's call: the queue fails from here. */
static void retry_closed(uv_handle_t *h) {
    wait_store_t *w = h->data;
    if (w->real) {
        chat_store_close(w->real, real_closed, w);
        return;
    }
    fail_all(w, -ECANCELED);
    w_free(w);
}

static void w_close(chat_store_t *st, void (*done)(void *arg), void *arg) {
    wait_store_t *w = wait_of(st);
    PARLEY_ASSERT(!w->closing);
    w->closing = true;
    w->close_done = done;
    w->close_arg = arg;
    w->opened = NULL;
    uv_close((uv_handle_t *)&w->retry, retry_closed);
}

static const chat_store_ops_t wait_ops = {
    .append = w_append,
    .history = w_history,
    .after = w_after,
    .last_seq = w_last_seq,
    .mark_read = w_mark_read,
    .health = w_health,
    .close = w_close,
};
