/* chat/presence_redis.h — presence across nodes that share a Redis (presence_redis.c has
 * the layout and the scripts).
 *
 * presence.c reports this node's transitions (a user's first or last connection in a
 * room here) with presence_redis_change; the cluster-wide news (a user's first or last
 * connection in a room on any node) comes back through the event function, once per
 * transition, to every node. Owned by the presence module; loop thread only. */
#ifndef PARLEY_CHAT_PRESENCE_REDIS_H
#define PARLEY_CHAT_PRESENCE_REDIS_H

#include <stdbool.h>
#include <uv.h>

typedef struct presence_redis presence_redis_t;

/* News of user in room: joined or left, cluster-wide; sid the socket that caused it (may
 * be NULL). loaded: not news, a member already there when this node asked
 * (presence_redis_load; username NULL then). */
typedef void (*presence_redis_event_fn)(const char *room, const char *user, const char *username,
                                        bool joined, const char *sid, bool loaded, void *arg);

/* Returns 0, -EINVAL (not a Redis URL) or -ENOMEM; Redis need not be up yet. */
int presence_redis_open(uv_loop_t *loop, const char *url, presence_redis_event_fn fn, void *arg,
                        presence_redis_t **out);
/* This node's first (joined) or last connection of user in room. Returns 0 or -EIO (Redis
 * unreachable: the news is lost, the heartbeat's expiry corrects what stays behind). */
int presence_redis_change(presence_redis_t *pr, const char *room, const char *user,
                          const char *username, bool joined, const char *sid);
/* Asks for the room's members already there (events with loaded set). 0 or -EIO. */
int presence_redis_load(presence_redis_t *pr, const char *room);
/* Removes this node's users at once, closes; frees itself on the loop. */
void presence_redis_close(presence_redis_t *pr);

#endif
