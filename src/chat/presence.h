/* chat/presence.h — who is in which chat room, and the news of it (userJoined/userLeft).
 *
 * A process counts its own connections per (room, user): a user "joins" a room with
 * their first connection and "leaves" with their last, and only those transitions are
 * news, announced to the room's other sockets — not at all above the presence limit.
 * With workers (chat_presence_use_workers) a process's transitions are reported to the
 * store owner instead, which counts which workers have the user and announces the
 * group's first and last to every worker (chat/store_remote.h); member lists and counts
 * are then the group's. Owned by the chat service; loop thread only. */
#ifndef PARLEY_CHAT_PRESENCE_H
#define PARLEY_CHAT_PRESENCE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "parley/cluster.h"
#include "parley/sio.h"
#include <uv.h>

#define CHAT_MEMBERS_MAX 100 /* user ids a member list holds at most */
/* Every socket of a user is in the room "user:<id>" (direct messages go there). Presence
 * counts it like a chat room, so that whether a user is online anywhere is known
 * (chat_presence_has), but its changes are never announced. */
#define CHAT_USER_ROOM_PREFIX "user:"

typedef struct chat_presence chat_presence_t;

/* Presence of nsp's chat rooms, announced while a room has at most `limit` users.
 * Returns 0 or -ENOMEM. */
int chat_presence_new(sio_nsp_t *nsp, size_t limit, chat_presence_t **out);
void chat_presence_free(chat_presence_t *p);
/* From now on nothing is announced (shutdown). */
void chat_presence_stop(chat_presence_t *p);
/* Count with the other workers (see above). Call once, before serving. */
int chat_presence_use_workers(chat_presence_t *p, parley_worker_t *worker);
/* Count with the other nodes on the Redis at url (chat/presence_redis.h): userJoined and
 * userLeft once per user cluster-wide, member lists of every node's users. Call once,
 * before serving. Returns 0, -EINVAL or -ENOMEM. */
int chat_presence_use_redis(chat_presence_t *p, uv_loop_t *loop, const char *url);

/* Socket s of user (username) is in room now: counted, and announced when it is the
 * user's first there. Returns 0, or -ENOMEM (then not counted: the caller undoes the
 * join). Strings are copied. */
int chat_presence_join(chat_presence_t *p, sio_socket_t *s, const char *room, const char *user,
                       const char *username);
/* Socket s of user left room (no effect when it was not counted there). */
void chat_presence_leave(chat_presence_t *p, sio_socket_t *s, const char *room, const char *user,
                         const char *username);

/* Distinct users present in room. */
size_t chat_presence_users(chat_presence_t *p, const char *room);
/* Whether user is present in room (on any worker or node, as counted above). */
bool chat_presence_has(chat_presence_t *p, const char *room, const char *user);
/* Their ids (at most CHAT_MEMBERS_MAX) as a new JSON array; NULL when out of memory. */
json_t *chat_presence_members(chat_presence_t *p, const char *room);

#endif
