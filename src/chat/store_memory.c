/* chat/store_memory.c — the ephemeral chat store: the common store with no disk behind it.
 *
 * For benchmarks of the network path and for tests. Semantics match the SQLite store:
 * seqs per room from 1 without gaps, append callbacks later on the loop (never from
 * inside chat_store_append: submitted ops are handed straight back, finished, to the
 * store's pump, which delivers them in order before the network loop flushes its output
 * when the store is tied to one, chat_store_use_net_loop, else through the uv_async path
 * the SQLite writer uses), and history served from each room's window — which here is the
 * whole history, or the newest cfg.memory_keep messages when that is set. Read receipts
 * are checked like the SQLite store's (at least one id must name a kept message of the
 * room, else -ENOENT); marks and memberships live in the common index
 * (store_members.c) only. It never fails a commit, so it is always healthy. Nothing
 * survives close. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat/store_internal.h"
#include "util/log.h"

/* Nothing to write: the ops are finished as they come (err 0 from op_alloc). */
static void mem_submit(chat_store_t *st, store_op_t *head, store_op_t *tail) {
    store_deliver_loop(st, head, tail);
}

static void mem_stop(chat_store_t *st) {
    store_backend_stopped(st);
}

/* The seq of the message with this id if room r keeps it, else 0. Ids of this open
 * carry a counter that grows in append order, and the window holds one open's messages
 * in seq order, so it is sorted by counter: one binary search, whatever the size of the
 * room. */
static uint64_t window_seq(const chat_store_t *st, const store_room_t *r, const char *id) {
    uint64_t want;
    if (!r || r->count == 0 || !store_id_counter(st, id, &want))
        return 0;
    size_t lo = 0, hi = r->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const chat_msg_t *m = r->ring[(r->head + mid) % r->cap];
        uint64_t c = 0;
        if (!store_id_counter(st, m->id, &c))
            return 0; /* not one of ours: cannot happen in the memory store */
        if (c == want)
            return strcmp(m->id, id) == 0 ? m->seq : 0;
        if (c < want)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* Delivery of a MARK_READ op: every earlier append is in its window by now. */
static int mem_check_receipts(chat_store_t *st, store_receipts_t *r) {
    const store_room_t *room = store_room_get(st, r->room_id, strlen(r->room_id));
    r->found = r->upto_seq;
    for (size_t i = 0; i < r->n; i++) {
        uint64_t seq = window_seq(st, room, r->ids[i]);
        if (seq > r->found)
            r->found = seq;
    }
    return r->found || r->asked == 0 ? 0 : -ENOENT;
}

static const store_backend_t mem_backend = {
    .name = "memory",
    .submit = mem_submit,
    .read = NULL,
    .stop = mem_stop,
    .destroy = NULL,
    .check_receipts = mem_check_receipts,
};

int chat_store_open_memory(uv_loop_t *loop, const chat_store_config_t *cfg, chat_store_t **out) {
    *out = NULL;
    if (!loop)
        return -EINVAL;
    chat_store_t *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    chat_store_config_t c;
    if (cfg)
        c = *cfg;
    else
        chat_store_config_defaults(&c);
    int err = store_init(st, loop, &c, &mem_backend, c.memory_keep ? c.memory_keep : SIZE_MAX);
    if (!err && (err = store_start(st)))
        store_fini_unopened(st);
    if (err) {
        free(st);
        return err;
    }
    LOG_INFO(STORE_TAG, "memory store open (%s)",
             c.memory_keep ? "keeping the newest messages of each room" : "keeping everything");
    *out = st;
    return 0;
}
