/* chat/store.h — durable chat history: per-room sequence numbers, group commit, and an
 * in-memory window of recent messages.
 *
 * Two implementations behind one table of functions: SQLite (WAL mode, one writer
 * thread, group commit) and memory (ephemeral, for benchmarks of the network path).
 *
 * Threading: every function is called on the loop thread and every callback runs on the
 * loop thread. The SQLite store's writer thread owns its write connection; the loop
 * never waits on the disk: appends are queued to the writer, which commits everything
 * that arrived during one commit in the next one (group commit) and hands the batch back
 * through a uv_async_t; acks go out when their commit returned. History older than the
 * in-memory window is read on a libuv worker (uv_queue_work) with its own connection.
 *
 * Sequence numbers: per room, from 1, strictly increasing, without gaps. They are
 * assigned when append is called (from a per-room counter loaded from the database), and
 * batches commit in order, so the database always holds a gap-free prefix of each room
 * even after a crash: a message whose callback reported success is durable, one that was
 * not acknowledged may be missing but never duplicated.
 *
 * Ownership: strings passed in are copied. chat_msg_t values handed to callbacks are
 * borrowed for the duration of the callback (chat_msg_ref to keep one). */
#ifndef PARLEY_CHAT_STORE_H
#define PARLEY_CHAT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct chat_msg {
    uint32_t refs;
    uint64_t seq;
    int64_t timestamp; /* Unix ms */
    char *id;          /* unique: "<room-independent random prefix>-<counter>" or similar */
    char *room_id;
    char *user_id;
    char *username;
    char *text;
    size_t text_len;
    char *json; /* the message as compact JSON {id,seq,roomId,userId,username,text,timestamp},
                   made once (for broadcast and history); NUL-terminated */
    size_t json_len;
} chat_msg_t;

void chat_msg_ref(chat_msg_t *m);
void chat_msg_unref(chat_msg_t *m);

typedef struct chat_store chat_store_t;

typedef struct {
    size_t window;      /* messages kept in memory per room (200) */
    uint32_t max_batch; /* messages per commit at most (10000) */
} chat_store_config_t;

void chat_store_config_defaults(chat_store_config_t *cfg);

/* Opens (creating it and its schema on first run, migrating older versions) the SQLite
 * store in `dir` (file dir/parley.db). Returns 0 or a negative errno; logs why. */
int chat_store_open_sqlite(uv_loop_t *loop, const char *dir, const chat_store_config_t *cfg,
                           chat_store_t **out);
int chat_store_open_memory(uv_loop_t *loop, const chat_store_config_t *cfg, chat_store_t **out);

/* Called once the message is durable (err 0) or could not be stored (err < 0; then the
 * message must not be announced). msg is borrowed. */
typedef void (*chat_store_append_cb)(int err, chat_msg_t *msg, void *arg);

/* Assigns id, seq and timestamp now and returns the message through *out (borrowed: valid
 * at least until the callback returns) so the caller can broadcast in seq order as soon
 * as the callback reports durability. Returns 0 or a negative errno (nothing queued). */
int chat_store_append(chat_store_t *st, const char *room_id, const char *user_id,
                      const char *username, const char *text, size_t text_len,
                      chat_store_append_cb cb, void *arg, chat_msg_t **out);

/* Messages of a room, oldest first: the `limit` newest with seq < before_seq (0: newest
 * overall). cb may run synchronously (window hit) or later (worker read). msgs borrowed. */
typedef void (*chat_store_history_cb)(int err, chat_msg_t *const *msgs, size_t n, void *arg);
int chat_store_history(chat_store_t *st, const char *room_id, uint64_t before_seq, size_t limit,
                       chat_store_history_cb cb, void *arg);

/* Messages with seq > after_seq, oldest first, at most limit (for SSE resume and
 * long-polling). Same callback rules. */
int chat_store_after(chat_store_t *st, const char *room_id, uint64_t after_seq, size_t limit,
                     chat_store_history_cb cb, void *arg);

/* The last assigned seq of a room (0 when it has none). */
uint64_t chat_store_last_seq(chat_store_t *st, const char *room_id);

/* Read receipts: user has read these message ids in room. Queued like appends; cb may
 * be NULL. */
typedef void (*chat_store_done_cb)(int err, void *arg);
int chat_store_mark_read(chat_store_t *st, const char *room_id, const char *user_id,
                         const char *const *message_ids, size_t n, chat_store_done_cb cb,
                         void *arg);

/* Flushes what is queued, stops the writer, frees everything; done(arg) runs on the loop
 * once the store is closed (the loop must keep running until then). */
void chat_store_close(chat_store_t *st, void (*done)(void *arg), void *arg);

#endif
