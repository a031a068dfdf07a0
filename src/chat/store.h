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
 * A commit that fails (disk full, I/O error) reports its error to every callback of its
 * batch, and to every write queued behind it (their seqs follow the failed ones); none of
 * them is stored, so none may be announced. The store then rewinds each room's counter to
 * its last durable seq (the failed seqs, never announced, are reused: no gap) and is
 * "failing": chat_store_health reports the error and every new write is refused with it
 * at once (history still works) while the store retries in the background with a small
 * write of its own, after retry_min_ms, then twice as long each time up to retry_max_ms.
 * The first retry that commits makes the store healthy again and writes are accepted as
 * before: once space is freed, writes resume by themselves, without a restart.
 *
 * Visibility: history and after return acknowledged messages only (those whose callback
 * already reported success), so nothing is shown that was not announced; last_seq counts
 * every assigned seq, pending ones included.
 *
 * Ownership: strings passed in are copied. chat_msg_t values handed to callbacks are
 * borrowed for the duration of the callback (chat_msg_ref to keep one). Reference counts
 * are not atomic: messages live on the loop (the writer only reads them while the loop
 * holds its reference). */
#ifndef PARLEY_CHAT_STORE_H
#define PARLEY_CHAT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "parley/loop.h"
#include "util/buf.h"

typedef struct chat_msg {
    uint32_t refs;
    uint64_t seq;
    int64_t timestamp; /* Unix ms */
    char *id;          /* unique: "<16 hex digits drawn at open>-<hex counter>" */
    char *room_id;
    char *user_id;
    char *username;
    char *text;
    size_t text_len;
    char *json; /* the message as compact JSON {id,seq,roomId,userId,username,text,timestamp},
                   made once (for broadcast and history); NUL-terminated */
    size_t json_len;
    uint64_t made_ns; /* uv_hrtime() when this process made it (appended, read or received) */
} chat_msg_t;

void chat_msg_ref(chat_msg_t *m);
void chat_msg_unref(chat_msg_t *m);
/* Appends pre, the messages' JSON separated by commas, then post to b: "[" and "]" make
 * a JSON array. The one place message lists are put together (history, acks, polls,
 * broadcasts). Returns 0 or -ENOMEM (b then holds a part). */
int chat_msg_join(buf_t *b, const char *pre, chat_msg_t *const *msgs, size_t n, const char *post);

typedef struct chat_store chat_store_t;

/* Limits; chat_store_config_defaults sets the values in parentheses. */
typedef struct {
    size_t window;             /* SQLite: newest acknowledged messages kept in memory per room;
                                  older history is read from the database (200) */
    uint32_t max_batch;        /* operations (appends, mark_reads) per commit at most (10000) */
    size_t max_pending;        /* operations accepted but not yet acknowledged; beyond it append
                                  and mark_read return -EAGAIN, so a stalled disk cannot grow the
                                  queue without bound; 0: no limit (100000) */
    size_t max_read;           /* messages one history/after call returns at most;
                                  0: no limit (1000) */
    size_t memory_keep;        /* memory store: messages kept per room, oldest dropped first;
                                  0 keeps every message until close (0) */
    uint32_t checkpoint_pages; /* SQLite: WAL size in pages (4 KiB) past which the
                                  checkpoint thread copies the WAL into the database;
                                  0 leaves checkpoints to SQLite, on the writer (4000) */
    uint32_t retry_min_ms;     /* after a failed commit: ms until the first retry (100) */
    uint32_t retry_max_ms;     /* each failed retry doubles the wait, up to this (5000) */
} chat_store_config_t;

void chat_store_config_defaults(chat_store_config_t *cfg);

/* Opens (creating it and its schema on first run, migrating older versions) the SQLite
 * store in `dir` (file dir/parley.db; dir is created when missing and locked with flock
 * against a second process: -EBUSY, not logged). Runs synchronously on the caller's thread — it is
 * start-up, before anything is served. cfg is copied; NULL means defaults. Returns 0 or
 * a negative errno; logs why. */
int chat_store_open_sqlite(uv_loop_t *loop, const char *dir, const chat_store_config_t *cfg,
                           chat_store_t **out);
/* chat_store_open_sqlite for a restart on the same directory: when another process holds
 * its lock (-EBUSY), and wait_ms > 0, returns 0 at once with a store that waits for the
 * lock (tried every CHAT_STORE_LOCK_RETRY_MS, store_wait.c) while it takes every call:
 * they are queued in order (at most max_pending) and go to the SQLite store once it is
 * open, where seqs are assigned. Until then chat_store_health reports -EBUSY ("waiting for
 * its lock"), chat_store_last_seq 0, and append's *out is NULL. opened(err, arg) runs
 * when the wait ends: 0 open, or the error (-EBUSY: still locked after wait_ms), after
 * which every queued and later call fails with it. opened is not called when the store
 * opened at once (or the open failed at once: the error is returned). The observer of
 * chat_store_on_stored is handed on at open: set it before. */
#define CHAT_STORE_LOCK_RETRY_MS 50
int chat_store_open_sqlite_wait(uv_loop_t *loop, const char *dir, const chat_store_config_t *cfg,
                                uint64_t wait_ms, void (*opened)(int err, void *arg), void *arg,
                                chat_store_t **out);
int chat_store_open_memory(uv_loop_t *loop, const chat_store_config_t *cfg, chat_store_t **out);
/* The history in Redis at url, shared by every node that opens it (store_redis.c: the
 * layout, the order across nodes, what an ack means). Opens at once; Redis need not be up
 * (writes fail with -EIO until it is). cfg->memory_keep is the retention per room (0:
 * CHAT_REDIS_KEEP). */
#define CHAT_REDIS_KEEP 10000
int chat_store_open_redis(uv_loop_t *loop, const char *url, const chat_store_config_t *cfg,
                          chat_store_t **out);

/* Called once the message is durable (err 0) or could not be stored (err < 0: a failed
 * commit's error such as -ENOSPC or -EIO, or -ECANCELED; then the message is not in the
 * store and must not be announced, and its seq will be given to a later message).
 * Callbacks of one store run in seq order per room and in append order overall; never
 * from inside chat_store_append. msg is borrowed. */
typedef void (*chat_store_append_cb)(int err, chat_msg_t *msg, void *arg);

/* Assigns id, seq and timestamp now and returns the message through *out (borrowed: valid
 * at least until the callback returns) so the caller can broadcast in seq order as soon
 * as the callback reports durability. The strings must be UTF-8 (text may hold NULs: it
 * is text_len bytes). cb may be NULL; out may be NULL. Returns 0 or a negative errno
 * (nothing queued, cb not called): -EINVAL (bad argument or not UTF-8), -EAGAIN
 * (max_pending reached), -ECANCELED (closing), -ENOMEM, or, while the store is failing
 * (see chat_store_health), the error of the failed commit. */
int chat_store_append(chat_store_t *st, const char *room_id, const char *user_id,
                      const char *username, const char *text, size_t text_len,
                      chat_store_append_cb cb, void *arg, chat_msg_t **out);

/* chat_store_append for posts rate limited per user across every process that shares
 * the store (a worker's remote store: the owner keeps the bucket; the Redis store: Redis
 * does): the user's token bucket (burst, per_sec) is taken from where the append is made,
 * and an empty one refuses the post with -EDQUOT (nothing stored). -ENOTSUP when the
 * store keeps no shared buckets (the caller counts its own). */
int chat_store_append_limited(chat_store_t *st, const char *room_id, const char *user_id,
                              const char *username, const char *text, size_t text_len,
                              uint32_t burst, uint32_t per_sec, chat_store_append_cb cb, void *arg);

/* Messages of a room, oldest first: the `limit` newest (at most max_read) acknowledged
 * ones with seq < before_seq (0: newest overall). cb may run synchronously (window hit)
 * or later (worker read), exactly once when 0 is returned, never when an error is. msgs
 * and the messages are borrowed for the callback (chat_msg_ref to keep one). An unknown
 * room has no messages (n 0, err 0). */
typedef void (*chat_store_history_cb)(int err, chat_msg_t *const *msgs, size_t n, void *arg);
int chat_store_history(chat_store_t *st, const char *room_id, uint64_t before_seq, size_t limit,
                       chat_store_history_cb cb, void *arg);

/* Messages with seq > after_seq, oldest first, at most limit (for SSE resume and
 * long-polling). Same callback rules; err is -ERANGE when after_seq is beyond the room's
 * last seq (a position from another history, such as a wiped store). */
int chat_store_after(chat_store_t *st, const char *room_id, uint64_t after_seq, size_t limit,
                     chat_store_history_cb cb, void *arg);

/* Every stored message, once it is durable and before its append callback, in seq order
 * per room: the place to announce messages. A local store reports its own appends; a
 * worker's remote store (store_remote.c) reports every message the supervisor's store
 * took, from any worker, so each worker announces each message once, in one order.
 * fn NULL removes it. msg is borrowed for the call. */
typedef void (*chat_store_stored_fn)(chat_msg_t *msg, void *arg);
void chat_store_on_stored(chat_store_t *st, chat_store_stored_fn fn, void *arg);

/* The last assigned seq of a room (0 when it has none), pending appends included. A
 * remote store knows the last it saw (announced, or read). */
uint64_t chat_store_last_seq(chat_store_t *st, const char *room_id);

/* Read receipts: user has read these message ids of room, and everything up to and
 * including upto_seq (0: none). A receipt is a position, not a set: the store keeps one
 * read mark per (room, user), the highest seq among upto_seq (taken as the room's last
 * acknowledged seq when beyond it) and the ids that name a message of that room, with
 * the time it last moved; marks never move back (reading up to seq N implies everything
 * before it). Ids that name no message of the room (unknown, malformed, or another
 * room's) are ignored and never stored, so receipts cannot grow the database beyond one
 * row per (room, user) whatever is sent.
 *
 * Queued and committed like appends, in the same order; cb (may be NULL) gets 0 and the
 * mark as it stands after the call (which may be above what was asked: marks do not move
 * back) when upto_seq or at least one id named a message of the room, or when nothing
 * was asked (n 0, upto_seq 0); -ENOENT when nothing named a message (nothing stored; the
 * caller should say so rather than ok); or the error of a failed commit (nothing
 * stored). The strings are copied. Returns 0 or a negative errno as append. The memory
 * store checks the ids against the messages it keeps, with the same results. */
typedef void (*chat_store_mark_cb)(int err, uint64_t mark, void *arg);
int chat_store_mark_read(chat_store_t *st, const char *room_id, const char *user_id,
                         const char *const *message_ids, size_t n, uint64_t upto_seq,
                         chat_store_mark_cb cb, void *arg);

/* ---- membership ----
 *
 * A user is a member of a room from their first join until they forget it: a row
 * (room, user, username at the latest join, time of the first join), kept however the
 * user's connections come and go. Joins and forgets are writes, queued and committed
 * like appends (the SQLite store writes them in the same group commit); their callback
 * reports 0 once the row is durable, or the error (nothing changed). A forget keeps the
 * user's read mark, so rejoining shows the same unread count. The local stores keep
 * every membership and read mark in memory too (loaded at open), so the reads below
 * cost no disk; the Redis store asks Redis, a worker's remote store asks its owner.
 *
 * Reads: cb runs exactly once when 0 is returned (maybe synchronously), never when an
 * error is; the arrays and their strings are borrowed for the callback. */
typedef void (*chat_store_done_cb)(int err, void *arg);

/* Makes user a member of room (or renews the username of a member). A local store that
 * finds the user a member under that name already (and no join or forget under way)
 * writes nothing and calls cb before returning. */
int chat_store_join(chat_store_t *st, const char *room_id, const char *user_id,
                    const char *username, chat_store_done_cb cb, void *arg);
/* Ends user's membership of room (0 too when they were not a member; a local store then,
 * with no join or forget under way, writes nothing and calls cb before returning). */
int chat_store_forget(chat_store_t *st, const char *room_id, const char *user_id,
                      chat_store_done_cb cb, void *arg);

/* A membership seen from its user (chat_store_user_rooms). */
typedef struct {
    const char *room_id;
    uint64_t last_seq;      /* the room's last acknowledged seq */
    uint64_t last_read_seq; /* the user's read mark there (0: none) */
    int64_t joined_at;      /* Unix ms of the first join */
} chat_user_room_t;
typedef void (*chat_store_user_rooms_cb)(int err, const chat_user_room_t *rooms, size_t n,
                                         void *arg);
/* The rooms user is a member of, sorted by room id. */
int chat_store_user_rooms(chat_store_t *st, const char *user_id, chat_store_user_rooms_cb cb,
                          void *arg);

/* A membership seen from its room (chat_store_members). */
typedef struct {
    const char *user_id;
    const char *username;   /* at the latest join */
    uint64_t last_read_seq; /* 0: none */
    int64_t joined_at;      /* Unix ms of the first join */
} chat_member_t;
/* The members of room, sorted by user id; last_seq gets the room's last acknowledged seq. */
typedef void (*chat_store_members_cb)(int err, const chat_member_t *members, size_t n,
                                      uint64_t last_seq, void *arg);
int chat_store_members(chat_store_t *st, const char *room_id, chat_store_members_cb cb, void *arg);

/* Whether the store takes writes: 0, or the negative errno of the commit that failed
 * (-ENOSPC for a full disk, -EIO, ...) while the store is failing and retrying. *why (may
 * be NULL) gets a short text for a health report ("ok", or what failed and when the next
 * retry is), borrowed: valid until the loop next runs a store callback or timer. The
 * memory store is always healthy. */
int chat_store_health(chat_store_t *st, const char **why);

/* Ties a local store (memory, SQLite; the others ignore it: 0) to the network loop of the
 * same uv loop: it then hands appends to its backend from a flush hook of nl
 * (net_loop_on_flush) rather than from a prepare handle of its own, and the memory store
 * answers them from that same hook, so a message read from a socket is stored, announced
 * and acknowledged before the loop flushes its output, without waking the loop again (an
 * eventfd write and read per iteration otherwise). Call it once, before the servers on nl
 * are made: hooks run in the order they were registered, and an announcement to a polling
 * client must be queued before Engine.IO's hook answers the polls. nl must outlive the
 * store's close (the store unhooks itself there). Returns 0, -EINVAL (closing or tied
 * already) or -ENOSPC (no hook left). */
int chat_store_use_net_loop(chat_store_t *st, net_loop_t *nl);

/* Flushes what is queued, stops the writer, frees everything; done(arg) runs on the loop
 * once the store is closed (the loop must keep running until then). Every pending append
 * and mark_read callback and every pending history callback runs before done; calls made
 * after close return -ECANCELED. done may be NULL. The store keeps the loop alive (an
 * active uv_async_t) from open until close finished. */
void chat_store_close(chat_store_t *st, void (*done)(void *arg), void *arg);

#endif
