/* chat/store_memory.c — the ephemeral chat store: the common store with no disk behind it.
 *
 * For benchmarks of the network path and for tests. Semantics match the SQLite store:
 * seqs per room from 1 without gaps, append callbacks later on the loop (never from
 * inside chat_store_append: submitted ops are handed straight back through the same
 * uv_async path the SQLite writer uses, so they arrive in the same order and at the same
 * point of the loop), and history served from each room's window — which here is the
 * whole history, or the newest cfg.memory_keep messages when that is set. Read receipts
 * are accepted and forgotten (nothing reads them back). Nothing survives close. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "chat/store_internal.h"
#include "util/log.h"

static void mem_submit(chat_store_t *st, store_op_t *head, store_op_t *tail) {
    store_deliver(st, head, tail);
}

static void mem_stop(chat_store_t *st) {
    store_backend_stopped(st);
}

static const store_backend_t mem_backend = {
    .name = "memory",
    .submit = mem_submit,
    .read = NULL,
    .stop = mem_stop,
    .destroy = NULL,
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
