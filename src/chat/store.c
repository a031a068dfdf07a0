/* chat/store.c — the store's public functions, dispatched to the store's kind (a local
 * store, or a worker's remote view of its supervisor's store; store_internal.h). */
#include <errno.h>

#include "chat/store_internal.h"

int chat_store_append(chat_store_t *st, const char *room_id, const char *user_id,
                      const char *username, const char *text, size_t text_len,
                      chat_store_append_cb cb, void *arg, chat_msg_t **out) {
    if (!st)
        return -EINVAL;
    return store_head(st)->ops->append(st, room_id, user_id, username, text, text_len, cb, arg,
                                       out);
}

int chat_store_append_limited(chat_store_t *st, const char *room_id, const char *user_id,
                              const char *username, const char *text, size_t text_len,
                              uint32_t burst, uint32_t per_sec, chat_store_append_cb cb,
                              void *arg) {
    if (!st)
        return -EINVAL;
    if (!store_head(st)->ops->append_limited)
        return -ENOTSUP;
    return store_head(st)->ops->append_limited(st, room_id, user_id, username, text, text_len,
                                               burst, per_sec, cb, arg);
}

int chat_store_history(chat_store_t *st, const char *room_id, uint64_t before_seq, size_t limit,
                       chat_store_history_cb cb, void *arg) {
    return st ? store_head(st)->ops->history(st, room_id, before_seq, limit, cb, arg) : -EINVAL;
}

int chat_store_after(chat_store_t *st, const char *room_id, uint64_t after_seq, size_t limit,
                     chat_store_history_cb cb, void *arg) {
    return st ? store_head(st)->ops->after(st, room_id, after_seq, limit, cb, arg) : -EINVAL;
}

uint64_t chat_store_last_seq(chat_store_t *st, const char *room_id) {
    return st ? store_head(st)->ops->last_seq(st, room_id) : 0;
}

int chat_store_mark_read(chat_store_t *st, const char *room_id, const char *user_id,
                         const char *const *message_ids, size_t n, uint64_t upto_seq,
                         chat_store_mark_cb cb, void *arg) {
    return st ? store_head(st)->ops->mark_read(st, room_id, user_id, message_ids, n, upto_seq, cb,
                                               arg)
              : -EINVAL;
}

int chat_store_join(chat_store_t *st, const char *room_id, const char *user_id,
                    const char *username, chat_store_done_cb cb, void *arg) {
    return st ? store_head(st)->ops->join(st, room_id, user_id, username, cb, arg) : -EINVAL;
}

int chat_store_forget(chat_store_t *st, const char *room_id, const char *user_id,
                      chat_store_done_cb cb, void *arg) {
    return st ? store_head(st)->ops->forget(st, room_id, user_id, cb, arg) : -EINVAL;
}

int chat_store_user_rooms(chat_store_t *st, const char *user_id, chat_store_user_rooms_cb cb,
                          void *arg) {
    return st ? store_head(st)->ops->user_rooms(st, user_id, cb, arg) : -EINVAL;
}

int chat_store_members(chat_store_t *st, const char *room_id, chat_store_members_cb cb, void *arg) {
    return st ? store_head(st)->ops->members(st, room_id, cb, arg) : -EINVAL;
}

int chat_store_health(chat_store_t *st, const char **why) {
    if (!st) {
        if (why)
            *why = "no store";
        return -EINVAL;
    }
    return store_head(st)->ops->health(st, why);
}

void chat_store_on_stored(chat_store_t *st, chat_store_stored_fn fn, void *arg) {
    store_head(st)->on_stored = fn;
    store_head(st)->on_stored_arg = arg;
}

int chat_store_use_net_loop(chat_store_t *st, net_loop_t *nl) {
    if (!st || !nl)
        return -EINVAL;
    return store_head(st)->ops->use_net_loop ? store_head(st)->ops->use_net_loop(st, nl) : 0;
}

void chat_store_close(chat_store_t *st, void (*done)(void *arg), void *arg) {
    if (st)
        store_head(st)->ops->close(st, done, arg);
}
