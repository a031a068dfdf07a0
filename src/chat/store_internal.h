/* chat/store_internal.h — what the two chat stores share; private to src/chat/store_*.c.
 *
 * store_common.c owns everything that does not touch the disk: messages and their JSON,
 * message ids, the rooms with their seq counters and in-memory windows, the loop-side
 * queue of operations, acknowledgement delivery and the close sequence. A backend
 * (store_sqlite.c, store_memory.c) is a small table of functions that takes batches of
 * operations, hands them back once they are stored, and optionally reads ranges of a
 * room that are no longer in its window.
 *
 * The path of an append: chat_store_append (loop) builds the message and queues an op on
 * the loop-local list; once per loop iteration (the "pump": a flush hook of the network
 * loop when the store is tied to one, chat_store_use_net_loop, else a uv_prepare) the list
 * goes to the backend in one piece (backend->submit); the backend returns finished ops in
 * order, from its writer thread through store_deliver, which wakes the loop (uv_async, once
 * for everything that arrives before the loop takes it), or on the loop from inside submit
 * through store_deliver_loop (memory), which the pump delivers at once when it runs as a
 * flush hook (else through the same uv_async); delivery advances the room's durable seq,
 * pushes the message into the window and calls the callback.
 *
 * A failed commit: the backend marks the ops of the failed batch (and every later op of
 * the same or an older epoch, see store_op_t.epoch) commit_failed; the first such op the
 * loop delivers rewinds every room's counter to its durable seq, starts a new epoch and
 * makes the store "failing" (writes refused); a timer then queues STORE_OP_PROBE ops,
 * with backoff, until one commits. */
#ifndef PARLEY_CHAT_STORE_INTERNAL_H
#define PARLEY_CHAT_STORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "chat/store.h"
#include "util/map.h"

#define STORE_TAG "chat"
/* Longest message id: "<16 hex digits>-<counter in hex>" (see store_common.c). Receipts
 * name messages by id; strings of another shape cannot be ids and are dropped on arrival. */
#define STORE_ID_MAX 33

/* ---- kinds of store ----
 *
 * chat_store_t is either a local store (struct chat_store below, store_common.c with a
 * backend) or a worker's view of its supervisor's store (store_remote.c). Each begins
 * with a store_head_t, and the public functions (store.c) dispatch through its ops. */

typedef struct chat_store_ops {
    int (*append)(chat_store_t *st, const char *room_id, const char *user_id, const char *username,
                  const char *text, size_t text_len, chat_store_append_cb cb, void *arg,
                  chat_msg_t **out);
    /* append with the user's token bucket kept where every process sees it (NULL: the
     * store keeps none; chat_store_append_limited then returns -ENOTSUP). */
    int (*append_limited)(chat_store_t *st, const char *room_id, const char *user_id,
                          const char *username, const char *text, size_t text_len, uint32_t burst,
                          uint32_t per_sec, chat_store_append_cb cb, void *arg);
    int (*history)(chat_store_t *st, const char *room_id, uint64_t before_seq, size_t limit,
                   chat_store_history_cb cb, void *arg);
    int (*after)(chat_store_t *st, const char *room_id, uint64_t after_seq, size_t limit,
                 chat_store_history_cb cb, void *arg);
    uint64_t (*last_seq)(chat_store_t *st, const char *room_id);
    int (*mark_read)(chat_store_t *st, const char *room_id, const char *user_id,
                     const char *const *message_ids, size_t n, uint64_t upto_seq,
                     chat_store_mark_cb cb, void *arg);
    int (*join)(chat_store_t *st, const char *room_id, const char *user_id, const char *username,
                chat_store_done_cb cb, void *arg);
    int (*forget)(chat_store_t *st, const char *room_id, const char *user_id, chat_store_done_cb cb,
                  void *arg);
    int (*user_rooms)(chat_store_t *st, const char *user_id, chat_store_user_rooms_cb cb,
                      void *arg);
    int (*members)(chat_store_t *st, const char *room_id, chat_store_members_cb cb, void *arg);
    int (*health)(chat_store_t *st, const char **why);
    void (*close)(chat_store_t *st, void (*done)(void *arg), void *arg);
    /* chat_store_use_net_loop; NULL: the store has no use for the hook. */
    int (*use_net_loop)(chat_store_t *st, net_loop_t *nl);
} chat_store_ops_t;

typedef struct {
    const chat_store_ops_t *ops;
    chat_store_stored_fn on_stored; /* chat_store_on_stored */
    void *on_stored_arg;
} store_head_t;

static inline store_head_t *store_head(chat_store_t *st) {
    return (store_head_t *)st;
}

/* The local stores' operations (store_common.c). */
extern const chat_store_ops_t store_local_ops;

/* ---- messages ---- */

/* The fields of a message as byte slices (not necessarily NUL-terminated). */
typedef struct {
    const char *id, *room_id, *user_id, *username, *text;
    size_t id_len, room_id_len, user_id_len, username_len, text_len;
    uint64_t seq;
    int64_t timestamp;
} store_msg_fields_t;

/* A new message with one reference: the struct, its strings and its JSON in one
 * allocation. With `validate`, every string must be UTF-8 (else -EINVAL); messages read
 * back from the database were validated when they were appended. Returns 0, -EINVAL or
 * -ENOMEM. Safe on any thread (it touches no shared state). */
int store_msg_new(const store_msg_fields_t *f, bool validate, chat_msg_t **out);

/* ---- rooms and their windows (loop thread only) ---- */

/* A room: its counters and the ring of its newest acknowledged messages. The window
 * holds the contiguous seqs [durable_seq - count + 1, durable_seq]; it may be shorter
 * than the limit (after a restart it starts empty and fills from new acks and from
 * database reads adjacent to it). */
typedef struct store_room {
    uint64_t last_seq;    /* last seq assigned by append (pending ones included) */
    uint64_t durable_seq; /* last seq acknowledged (committed and delivered) */
    chat_msg_t **ring;    /* cap slots, count used from head, one reference each */
    size_t cap, head, count;
    size_t id_len;
    char id[]; /* NUL-terminated; the rooms map's key points here */
} store_room_t;

/* ---- operations queued to a backend ---- */

/* PROBE: the store's own small write after a failed commit (see chat_store_health); the
 * backend stores something minimal (SQLite: one row) and reports whether it committed. */
typedef enum {
    STORE_OP_APPEND,
    STORE_OP_MARK_READ,
    STORE_OP_JOIN,
    STORE_OP_FORGET,
    STORE_OP_PROBE
} store_op_kind_t;

/* Read receipts of one mark_read call, one allocation. ids holds only the strings shaped
 * like message ids (of any open of the store); asked counts all that were given, and
 * the upto_seq argument as one more when it was not 0. */
typedef struct {
    const char *room_id, *user_id;
    int64_t read_at;   /* Unix ms */
    uint64_t upto_seq; /* read up to and including it (0: none); at most the room's
                          acknowledged seq (the loop clamps it) */
    uint64_t found;    /* set by the backend: the highest of upto_seq and the seqs of the
                          ids that name a message of the room (0: none did) */
    size_t asked, n;
    const char *ids[];
} store_receipts_t;

/* A JOIN or FORGET, one allocation. */
typedef struct {
    const char *room_id, *user_id;
    const char *username; /* JOIN: the name to keep; FORGET: NULL */
    int64_t at;           /* JOIN: Unix ms, kept only by a first join */
} store_membership_t;

/* One queued operation. Owned by the store from append until its callback returned; a
 * backend reads it (and the message) but never frees it. Ops are recycled through a
 * loop-side free list, so the steady state allocates nothing here. */
typedef struct store_op {
    struct store_op *next;
    store_op_kind_t kind;
    int err;            /* set by the backend: 0 stored, < 0 not stored */
    bool commit_failed; /* set by the backend: err is the store's failure, not this op's */
    uint64_t epoch;     /* the store's epoch when queued: once a commit failed, the backend
                           fails every op of that epoch or older (their seqs may follow the
                           failed ones) without writing it */
    store_room_t *room;
    chat_msg_t *msg;                /* APPEND: one reference, dropped after the callback */
    store_receipts_t *receipts;     /* MARK_READ: owned, freed after the callback */
    store_membership_t *membership; /* JOIN, FORGET: owned, freed after the callback */
    chat_store_append_cb append_cb;
    chat_store_mark_cb mark_cb;
    chat_store_done_cb done_cb;
    void *arg;
} store_op_t;

/* A range read handed to a worker: [lo, hi] of one room, both acknowledged. */
typedef struct store_read {
    uv_work_t req;
    chat_store_t *st;
    const char *room_id; /* the room's own copy: immutable, lives until close */
    size_t room_id_len;
    uint64_t lo, hi;
    chat_msg_t **msgs; /* filled by the backend: ascending seq, one reference each */
    size_t n;
    int err;
    chat_store_history_cb cb;
    void *arg;
} store_read_t;

typedef struct store_backend {
    const char *name;
    /* Takes ops head..tail (linked through next, in order) on the loop thread and later
     * hands each back, in the same order, through store_deliver, or at once through
     * store_deliver_loop (a backend with nothing to wait for). Never calls an op's
     * callback itself. */
    void (*submit)(chat_store_t *st, store_op_t *head, store_op_t *tail);
    /* Starts reading rd->lo..rd->hi of a room; store_read_finish(rd) must follow on the
     * loop (as uv_queue_work's after_work). NULL: the backend keeps only the window. */
    int (*read)(chat_store_t *st, store_read_t *rd);
    /* Called once, on the loop, when close found nothing in flight: flush, stop, and
     * call store_backend_stopped (any thread) when the backend is idle for good. */
    void (*stop)(chat_store_t *st);
    /* Frees the backend's resources on the loop after it stopped; may be NULL. */
    void (*destroy)(chat_store_t *st);
    /* For a backend that keeps no receipts (memory): called on the loop when a MARK_READ op
     * is delivered without error, when every earlier append is in its room's window;
     * sets r->found and returns the op's result (0 or -ENOENT, see chat_store_mark_read).
     * NULL: the backend did both itself. */
    int (*check_receipts)(chat_store_t *st, store_receipts_t *r);
} store_backend_t;

/* ---- memberships and read marks (store_members.c; loop thread only) ----
 *
 * Every membership and read mark of the store, in memory, indexed both ways: a room's
 * members and a user's rooms. The SQLite backend loads them at open; delivery of a
 * JOIN, FORGET or MARK_READ op (once durable) updates them, so they are what the disk
 * holds. A pair (room, user) is kept while it is a membership or has a read mark. */
typedef struct store_member {
    uint64_t read_seq; /* the read mark (0: none) */
    int64_t joined_at; /* Unix ms of the first join; 0: not a member (a read mark only) */
    char *username;    /* at the latest join; NULL when not a member */
    const char *room_id, *user_id; /* the ids of the two groups it is in */
} store_member_t;

typedef struct {
    map_t rooms; /* room id -> store_group_t of user id -> store_member_t */
    map_t users; /* user id -> store_group_t of room id -> store_member_t */
    size_t count;
} store_members_t;

int store_members_init(store_members_t *ms);
void store_members_free(store_members_t *ms);
/* Records a join: creates the membership (joined_at `at`) or renews its username.
 * Returns 0 or -ENOMEM (nothing changed). */
int store_members_join(store_members_t *ms, const char *room_id, const char *user_id,
                       const char *username, int64_t at);
/* Ends a membership, keeping its read mark. */
void store_members_forget(store_members_t *ms, const char *room_id, const char *user_id);
/* Moves the read mark up to seq (never down). Returns 0 or -ENOMEM. */
int store_members_mark(store_members_t *ms, const char *room_id, const char *user_id, uint64_t seq);
/* The pair, or NULL. */
const store_member_t *store_members_get(const store_members_t *ms, const char *room_id,
                                        const char *user_id);
/* The memberships (not bare read marks) of a room (by_room) or of a user, sorted by the
 * other id, as a new array (the caller frees it; may be NULL) of borrowed pointers (valid
 * until the index next changes) in *out. Returns the count, or -ENOMEM. */
long store_members_list(const store_members_t *ms, const char *id, bool by_room,
                        const store_member_t ***out);

struct chat_store {
    store_head_t head; /* first: see "kinds of store" */
    const store_backend_t *backend;
    uv_loop_t *loop;
    chat_store_config_t cfg;
    size_t window_limit; /* messages per room window (SIZE_MAX: unlimited) */
    map_t rooms;         /* room id -> store_room_t */
    store_members_t members;
    size_t membership_ops; /* JOIN and FORGET ops queued and not yet delivered: while any
                              is, the index may be about to change, so no call is
                              answered from it alone */

    char id_prefix[17]; /* 16 random hex digits drawn at open */
    uint64_t id_counter;

    /* Loop side. */
    store_op_t *local_head, *local_tail; /* appended, not yet submitted */
    store_op_t *free_ops;
    size_t free_ops_count;
    size_t in_flight;       /* ops appended and not yet delivered */
    size_t reads_in_flight; /* worker reads not yet finished */
    /* Health: 0, or < 0 while failing (a commit failed and no probe has committed since):
     * writes are refused with it. epoch counts failures (stamped on ops); retry_ms is the
     * next backoff, back to retry_min_ms once a real write (not a probe) commits. */
    int health;
    uint64_t epoch;
    uint32_t retry_ms;
    uint32_t failures; /* failed commits and probes since the store was last healthy */
    char health_why[96];
    uv_timer_t retry_timer; /* queues the next probe */
    bool closing, stop_requested, stopped, handles_closing;
    int handles_open;
    void (*close_done)(void *arg);
    void *close_arg;
    uv_prepare_t flush_handle;           /* the pump, when not tied to a network loop */
    uv_async_t done_async;               /* wakes the loop when ops were delivered */
    net_loop_t *nl;                      /* chat_store_use_net_loop: the pump is its flush hook */
    store_op_t *ready_head, *ready_tail; /* finished on the loop (store_deliver_loop), not
                                            yet delivered */

    /* Shared with backend threads, under mu. */
    uv_mutex_t mu;
    store_op_t *done_head, *done_tail;
    bool backend_stopped;
    bool started; /* store_start succeeded: the async handle exists */
};

/* Initialises the common part of a store the backend allocated (zeroed, with `st` at
 * its start). window_limit SIZE_MAX means unlimited. Returns 0 or a negative errno. */
int store_init(chat_store_t *st, uv_loop_t *loop, const chat_store_config_t *cfg,
               const store_backend_t *backend, size_t window_limit);
/* Creates the store's loop handles; the last step of a successful open (after it the
 * store can only go away through chat_store_close). Returns 0 or a negative errno. */
int store_start(chat_store_t *st);
/* Undoes store_init (and what open added to the rooms) when open fails before
 * store_start. Frees nothing the backend owns, nor st itself. */
void store_fini_unopened(chat_store_t *st);

/* The counter of a message id made by this open of the store (its prefix is this open's),
 * in *counter; false for any other string. Counters grow in append order, so a room's
 * window (one open, seq order) is sorted by them. */
bool store_id_counter(const chat_store_t *st, const char *id, uint64_t *counter);

/* Finds a room, or creates it with the given counters. NULL when out of memory. */
store_room_t *store_room_get(chat_store_t *st, const char *id, size_t id_len);
store_room_t *store_room_add(chat_store_t *st, const char *id, size_t id_len, uint64_t seq);

/* Backend -> store, from any thread: ops head..tail are finished (their err is set).
 * Must be called in submit order. */
void store_deliver(chat_store_t *st, store_op_t *head, store_op_t *tail);
/* Backend -> store, on the loop thread from inside submit: ops head..tail are finished.
 * The pump delivers them (see "the path of an append"), in order, after those before. */
void store_deliver_loop(chat_store_t *st, store_op_t *head, store_op_t *tail);
/* Backend -> store, from any thread, after its last store_deliver. Before store_start
 * (a failed open) it only records the fact. */
void store_backend_stopped(chat_store_t *st);
/* after_work of a backend read (loop thread). */
void store_read_finish(uv_work_t *req, int status);

/* Maps a negative errno to its name for logs. */
const char *store_strerror(int err);

#endif
