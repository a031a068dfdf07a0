/* chat/store_members.c — the local stores' memberships and read marks, in memory.
 *
 * Why in memory: "my rooms" on every connect, a room's members on every window the
 * notifier closes and unread counts are read far more often than memberships change,
 * and the loop must not wait on the disk. A pair costs about 150 bytes of heap (the
 * struct, the username and an entry in each of two maps; 224 of RSS measured with the
 * SQLite pages its load read, docs/BENCHMARKS.md), so a million memberships hold about
 * 180 MB: fine for the deployments one SQLite file serves. The SQLite backend loads the
 * pairs at open; the disk stays the truth, this is its image (store_internal.h).
 *
 * Shape: a group per room and per user, each a map from the other id to the shared
 * store_member_t. A member's ids point at its groups' ids, and each map's key is the
 * other group's id, so a pair is one allocation plus its username; a group is freed with
 * its last pair. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chat/store_internal.h"
#include "util/assert.h"

typedef struct {
    map_t pairs; /* the other id -> store_member_t */
    char id[];   /* NUL-terminated; the outer map's key */
} store_group_t;

int store_members_init(store_members_t *ms) {
    memset(ms, 0, sizeof *ms);
    if (map_init(&ms->rooms))
        return -EIO;
    if (map_init(&ms->users)) {
        map_free(&ms->rooms);
        return -EIO;
    }
    return 0;
}

static void group_free(store_group_t *g) {
    map_free(&g->pairs);
    free(g);
}

void store_members_free(store_members_t *ms) {
    map_entry_t *e, *p;
    for (size_t i = 0; map_next(&ms->rooms, &i, &e);) {
        store_group_t *g = e->value;
        for (size_t j = 0; map_next(&g->pairs, &j, &p);) {
            store_member_t *m = p->value;
            free(m->username);
            free(m);
        }
        group_free(g);
    }
    for (size_t i = 0; map_next(&ms->users, &i, &e);)
        group_free(e->value);
    map_free(&ms->rooms);
    map_free(&ms->users);
    ms->count = 0;
}

static store_group_t *group_get(const map_t *groups, const char *id) {
    return map_get(groups, id, strlen(id));
}

static store_group_t *group_add(map_t *groups, const char *id) {
    size_t len = strlen(id);
    store_group_t *g = malloc(sizeof *g + len + 1);
    if (!g)
        return NULL;
    memcpy(g->id, id, len + 1);
    if (map_init(&g->pairs)) {
        free(g);
        return NULL;
    }
    if (map_put(groups, g->id, len, g)) {
        group_free(g);
        return NULL;
    }
    return g;
}

/* Frees g when it holds no pair. */
static void group_drop_if_empty(map_t *groups, store_group_t *g) {
    if (g->pairs.count)
        return;
    map_del(groups, g->id, strlen(g->id));
    group_free(g);
}

const store_member_t *store_members_get(const store_members_t *ms, const char *room_id,
                                        const char *user_id) {
    const store_group_t *r = group_get(&ms->rooms, room_id);
    return r ? map_get(&r->pairs, user_id, strlen(user_id)) : NULL;
}

/* The pair, created (without membership nor mark) when missing; NULL when out of memory. */
static store_member_t *pair_get(store_members_t *ms, const char *room_id, const char *user_id) {
    store_member_t *m = (store_member_t *)store_members_get(ms, room_id, user_id);
    if (m)
        return m;
    store_group_t *r = group_get(&ms->rooms, room_id);
    store_group_t *u = group_get(&ms->users, user_id);
    bool new_r = !r, new_u = !u;
    if (new_r)
        r = group_add(&ms->rooms, room_id);
    if (r && new_u)
        u = group_add(&ms->users, user_id);
    m = r && u ? calloc(1, sizeof *m) : NULL;
    if (m) {
        m->room_id = r->id;
        m->user_id = u->id;
        if (map_put(&r->pairs, u->id, strlen(u->id), m) == 0) {
            if (map_put(&u->pairs, r->id, strlen(r->id), m) == 0) {
                ms->count++;
                return m;
            }
            map_del(&r->pairs, u->id, strlen(u->id));
        }
        free(m);
    }
    if (u && new_u)
        group_drop_if_empty(&ms->users, u);
    if (r && new_r)
        group_drop_if_empty(&ms->rooms, r);
    return NULL;
}

/* Removes a pair that is neither a membership nor a mark any more. */
static void pair_drop_if_empty(store_members_t *ms, store_member_t *m) {
    if (m->joined_at || m->read_seq)
        return;
    store_group_t *r = group_get(&ms->rooms, m->room_id);
    store_group_t *u = group_get(&ms->users, m->user_id);
    PARLEY_ASSERT(r && u);
    map_del(&r->pairs, u->id, strlen(u->id));
    map_del(&u->pairs, r->id, strlen(r->id));
    free(m->username);
    free(m);
    ms->count--;
    group_drop_if_empty(&ms->rooms, r);
    group_drop_if_empty(&ms->users, u);
}

int store_members_join(store_members_t *ms, const char *room_id, const char *user_id,
                       const char *username, int64_t at) {
    store_member_t *m = pair_get(ms, room_id, user_id);
    char *name = m ? strdup(username) : NULL;
    if (!name) {
        if (m)
            pair_drop_if_empty(ms, m);
        return -ENOMEM;
    }
    free(m->username);
    m->username = name;
    if (!m->joined_at)
        m->joined_at = at > 0 ? at : 1;
    return 0;
}

void store_members_forget(store_members_t *ms, const char *room_id, const char *user_id) {
    store_member_t *m = (store_member_t *)store_members_get(ms, room_id, user_id);
    if (!m)
        return;
    free(m->username);
    m->username = NULL;
    m->joined_at = 0;
    pair_drop_if_empty(ms, m);
}

int store_members_mark(store_members_t *ms, const char *room_id, const char *user_id,
                       uint64_t seq) {
    if (seq == 0)
        return 0;
    store_member_t *m = pair_get(ms, room_id, user_id);
    if (!m)
        return -ENOMEM;
    if (seq > m->read_seq)
        m->read_seq = seq;
    return 0;
}

static int by_user_id(const void *a, const void *b) {
    return strcmp((*(const store_member_t *const *)a)->user_id,
                  (*(const store_member_t *const *)b)->user_id);
}

static int by_room_id(const void *a, const void *b) {
    return strcmp((*(const store_member_t *const *)a)->room_id,
                  (*(const store_member_t *const *)b)->room_id);
}

long store_members_list(const store_members_t *ms, const char *id, bool by_room,
                        const store_member_t ***out) {
    *out = NULL;
    const store_group_t *g = group_get(by_room ? &ms->rooms : &ms->users, id);
    if (!g || g->pairs.count == 0)
        return 0;
    const store_member_t **list = malloc(g->pairs.count * sizeof *list);
    if (!list)
        return -ENOMEM;
    size_t n = 0;
    map_entry_t *e;
    for (size_t i = 0; map_next(&g->pairs, &i, &e);) {
        const store_member_t *m = e->value;
        if (m->joined_at)
            list[n++] = m;
    }
    qsort(list, n, sizeof *list, by_room ? by_user_id : by_room_id);
    *out = list;
    return (long)n;
}
