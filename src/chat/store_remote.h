/* chat/store_remote.h — the chat's store with workers: one owner, every worker a view.
 *
 * With --workers, the supervisor owns the store (store_owner.c, a cluster/hub.h service):
 * one SQLite writer, so one seq order per room and one place where writes are
 * acknowledged. Each worker opens a remote store (store_remote.c): a chat_store_t whose
 * appends, receipts, memberships and reads are requests to the owner over the worker's
 * channel. The owner answers the requester once its store did, and sends every stored
 * message to every worker (STORED), in the order its store stored them, before it
 * answers the message's sender: so every worker announces every message once, each room
 * in seq order, and a sender sees its own message announced before its ack, as with one
 * process. The owner also tells every worker its store's health.
 *
 * Frames (cluster/wire.h, types from CLUSTER_APP_TYPE; fields in order):
 *   HELLO    w→o  —                                      (the owner answers HEALTH)
 *   APPEND   w→o  u32 req, room, user, username, text, u32 burst, u32 per second
 *                 (a post limited per user, across workers: 0, 0 for none)
 *   MARK     w→o  u32 req, room, user, u64 up to seq (0: none), u32 n, n ids
 *   HISTORY  w→o  u32 req, room, u64 before, u32 limit
 *   AFTER    w→o  u32 req, room, u64 after, u32 limit
 *   JOIN     w→o  u32 req, room, user, username
 *   FORGET   w→o  u32 req, room, user
 *   USER_ROOMS  w→o  u32 req, user
 *   MEMBERS  w→o  u32 req, room
 *   DONE     o→w  u32 req, i32 err, u8 has message, [message]   (APPEND, JOIN, FORGET)
 *   MSGS     o→w  u32 req, i32 err, u32 n, n messages           (HISTORY, AFTER)
 *   MARKED   o→w  u32 req, i32 err, u64 mark                    (MARK)
 *   ROOMS    o→w  u32 req, i32 err, u32 n, n × (room, u64 last seq, u64 read seq,
 *                 u64 joined at)                                 (USER_ROOMS)
 *   MEMBER_LIST  o→w  u32 req, i32 err, u64 last seq, u32 n, n × (user, username,
 *                 u64 read seq, u64 joined at)                   (MEMBERS)
 *   STORED   o→all  message
 *   HEALTH   o→all  i32 err, why
 * A message is: id, u64 seq, u64 timestamp, room, user, username, text. An answer of
 * another kind than its request asked for fails that request (-EPROTO).
 *
 * Presence (the owner counts, in each room, which workers have each user): a worker
 * says PRESENCE when a user's first connection in a room arrives on it or its last one
 * leaves; when that makes the user new to the room (or gone from it) across all workers,
 * the owner sends PRESENCE_EV to every worker, which announces userJoined/userLeft to its
 * own sockets of the room (except the socket that caused it) and keeps the room's member
 * list. A worker that says HELLO gets the present users as quiet PRESENCE_EV (nothing
 * announced); a worker that exits takes its users with it. */
#ifndef PARLEY_CHAT_STORE_REMOTE_H
#define PARLEY_CHAT_STORE_REMOTE_H

#include "chat/store.h"
#include "cluster/hub.h"
#include "cluster/wire.h"

enum {
    CHAT_F_HELLO = CLUSTER_APP_TYPE,
    CHAT_F_APPEND,
    CHAT_F_MARK,
    CHAT_F_HISTORY,
    CHAT_F_AFTER,
    CHAT_F_JOIN,
    CHAT_F_FORGET,
    CHAT_F_USER_ROOMS,
    CHAT_F_MEMBERS,
    /* The remote store receives CHAT_F_DONE..CHAT_F_HEALTH: keep its frames between. */
    CHAT_F_DONE,
    CHAT_F_MSGS,
    CHAT_F_MARKED,
    CHAT_F_ROOMS,
    CHAT_F_MEMBER_LIST,
    CHAT_F_STORED,
    CHAT_F_HEALTH,
    CHAT_F_PRESENCE,    /* w→o  u8 joined, room, user, username, socket id */
    CHAT_F_PRESENCE_EV, /* o→all  u8 joined, u8 quiet, room, user, username, socket id */
};

/* In a worker: the store, through the worker's channel (opened here when needed). */
int chat_store_open_remote(uv_loop_t *loop, parley_worker_t *w, chat_store_t **out);

/* In the supervisor: the service that owns the store. The configuration is borrowed for
 * the supervisor's lifetime. */
typedef struct {
    const char *kind;      /* "sqlite" or "memory" */
    const char *data_dir;  /* sqlite */
    uint64_t lock_wait_ms; /* sqlite: chat_store_open_sqlite_wait (a restart) */
    chat_store_config_t store;
} chat_owner_config_t;

extern const cluster_service_t chat_owner_service; /* arg: a chat_owner_config_t */

/* A message as the frames carry it (both sides). get: a new message (one reference) or
 * -EINVAL, which also marks the reader bad. */
int chat_wire_put_msg(buf_t *b, const chat_msg_t *m);
int chat_wire_get_msg(wire_reader_t *r, chat_msg_t **out);

#endif
