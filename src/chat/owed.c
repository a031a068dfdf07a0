/* chat/owed.c — the rooms' notification windows (see owed.h).
 *
 * Why per room and not per member: owing each message to each offline member at once
 * (a read of the room's members, then a notifier call per member, every message) was
 * most of the server's CPU with rooms of 1,000 members — 0.04× the appends/s of the
 * build without membership (docs/BENCHMARKS.md, "Membership and notifications"). Here a
 * message only joins its room's list; the members are read once per window.
 *
 * What it means: presence is looked at when a window closes, not per message, so a
 * member who was connected when a message came but left before the window closed
 * without reading it is owed it too: their read mark says they have not read it.
 *
 * Shape: a room_owed_t per room with a window open, in a map by room and a list in due
 * order (one window length for all, so the list is a queue); one timer for the first
 * due. A closing window's room_owed_t leaves both and is owned by its members' read. */
#include "chat/owed.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/buf.h"
#include "util/log.h"
#include "util/map.h"

typedef struct room_owed {
    struct room_owed *next; /* o->head..tail, in due order */
    chat_owed_t *o;
    uint64_t due;      /* loop ms */
    bool early;        /* closed by a mention before its window ended */
    uint64_t last_seq; /* the newest message's, kept or not */
    size_t n;          /* messages kept: the oldest batch_max_msgs, one reference each */
    chat_msg_t **msgs;
    size_t len;
    char room[]; /* the map key */
} room_owed_t;

struct chat_owed {
    uv_loop_t *loop;
    chat_store_t *store;
    chat_presence_t *presence;
    chat_notify_t *notify; /* NULL once closed */
    map_t rooms;           /* room id → room_owed_t with a window open */
    room_owed_t *head, *tail;
    uv_timer_t timer; /* the first window's end */
    size_t reads;     /* members' reads under way */
    bool timer_closed;
};

int chat_owed_new(uv_loop_t *loop, chat_store_t *store, chat_presence_t *presence,
                  chat_notify_t *notify, chat_owed_t **out) {
    chat_owed_t *o = calloc(1, sizeof *o);
    if (!o || map_init(&o->rooms)) {
        free(o);
        return -ENOMEM;
    }
    o->loop = loop;
    o->store = store;
    o->presence = presence;
    o->notify = notify;
    /* Cannot fail: libuv only links the handle into the loop. */
    uv_timer_init(loop, &o->timer);
    o->timer.data = o;
    *out = o;
    return 0;
}

static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || (unsigned char)c >= 0x80;
}

/* The '@' of text at `at` starts a word. */
static bool at_word_start(const char *text, const char *at) {
    return at == text || !name_char(at[-1]);
}

/* Whether text (len bytes) has "@name" as a word of its own (ASCII letters compared
 * without case). */
static bool mentions(const char *text, size_t len, const char *name) {
    size_t n = strlen(name);
    for (const char *at = memchr(text, '@', len); at && n;
         at = memchr(at + 1, '@', len - (size_t)(at + 1 - text))) {
        size_t rest = len - (size_t)(at + 1 - text);
        if (at_word_start(text, at) && rest >= n && strncasecmp(at + 1, name, n) == 0 &&
            (rest == n || !name_char(at[1 + n])))
            return true;
    }
    return false;
}

/* Whether text has an '@' that starts a word and is followed by a name's character: a
 * mention of someone, maybe a member ("bob@example.com" is none). */
static bool may_mention(const char *text, size_t len) {
    for (const char *at = memchr(text, '@', len); at;
         at = memchr(at + 1, '@', len - (size_t)(at + 1 - text))) {
        size_t rest = len - (size_t)(at + 1 - text);
        if (at_word_start(text, at) && rest > 0 && name_char(at[1]))
            return true;
    }
    return false;
}

static void room_free(room_owed_t *r) {
    for (size_t i = 0; i < r->n; i++)
        chat_msg_unref(r->msgs[i]);
    free(r->msgs);
    free(r);
}

static void owed_free(chat_owed_t *o) {
    map_free(&o->rooms);
    free(o);
}

static void timer_closed(uv_handle_t *h) {
    chat_owed_t *o = h->data;
    o->timer_closed = true;
    if (o->reads == 0)
        owed_free(o);
}

/* The messages of r that member m is owed (newer than their mark, not theirs), joined
 * with commas into b; their count, 0 when none (or out of memory: logged). *urgent is set
 * when one of them mentions m. */
static uint32_t owed_to(const room_owed_t *r, const chat_member_t *m, buf_t *b, bool *urgent) {
    uint32_t count = 0;
    for (size_t i = 0; i < r->n; i++) {
        const chat_msg_t *msg = r->msgs[i];
        if (msg->seq <= m->last_read_seq || strcmp(msg->user_id, m->user_id) == 0)
            continue;
        if ((count && buf_append(b, ",", 1)) || buf_append(b, msg->json, msg->json_len)) {
            LOG_WARN("chat", "notification for %s not owed: out of memory", m->user_id);
            return 0;
        }
        count++;
        if (!*urgent && memchr(msg->text, '@', msg->text_len))
            *urgent = mentions(msg->text, msg->text_len, m->username);
    }
    return count;
}

static void members_read(int err, const chat_member_t *members, size_t n, uint64_t last_seq,
                         void *arg) {
    room_owed_t *r = arg;
    chat_owed_t *o = r->o;
    (void)last_seq; /* unread is counted up to the window's last message */
    if (err)
        LOG_WARN("chat", "members of %s not read, %zu messages owed to nobody: %s", r->room, r->n,
                 strerror(-err));
    buf_t b = {0};
    for (size_t i = 0; !err && o->notify && i < n; i++) {
        const chat_member_t *m = &members[i];
        if (m->last_read_seq >= r->last_seq || chat_presence_has(o->presence, r->room, m->user_id))
            continue;
        bool urgent = false;
        b.len = 0;
        uint32_t count = owed_to(r, m, &b, &urgent);
        /* After a mention, only the mentioned are owed at once; the others' batches wait
         * for a window of the notifier's. */
        int rc = count ? chat_notify_owe_batch(o->notify, m->user_id, r->room, (const char *)b.data,
                                               b.len, count, r->last_seq - m->last_read_seq, urgent,
                                               urgent || !r->early)
                       : 0;
        if (rc)
            LOG_LIMITED(LOG_LEVEL_WARN, "chat", "messages of %s not owed to %s: %s", r->room,
                        m->user_id, strerror(-rc));
    }
    buf_free(&b);
    room_free(r);
    if (--o->reads == 0 && o->timer_closed)
        owed_free(o);
}

/* Takes r out of the map and the due list. */
static void room_unlink(chat_owed_t *o, room_owed_t *r) {
    room_owed_t **at = &o->head, *prev = NULL;
    while (*at != r) {
        prev = *at;
        at = &(*at)->next;
    }
    *at = r->next;
    if (o->tail == r)
        o->tail = prev;
    map_del(&o->rooms, r->room, r->len);
}

/* r's window closed (or a mention closed it): its members are read, r goes with the read. */
static void room_close(chat_owed_t *o, room_owed_t *r) {
    room_unlink(o, r);
    int rc = chat_store_members(o->store, r->room, members_read, r);
    if (rc) {
        LOG_WARN("chat", "%zu messages of %s owed to nobody: %s", r->n, r->room, strerror(-rc));
        room_free(r);
        return;
    }
    o->reads++;
}

static void due(uv_timer_t *t);

/* Arms the timer for the first window to end. */
static void arm(chat_owed_t *o) {
    if (!o->head) {
        if (uv_timer_stop(&o->timer))
            LOG_DEBUG("chat", "owed timer not stopped");
        return;
    }
    uint64_t now = uv_now(o->loop);
    if (uv_timer_start(&o->timer, due, o->head->due > now ? o->head->due - now : 0, 0))
        LOG_WARN("chat", "owed timer not started: notifications wait for the next message");
}

static void due(uv_timer_t *t) {
    chat_owed_t *o = t->data;
    uint64_t now = uv_now(o->loop);
    while (o->head && o->head->due <= now)
        room_close(o, o->head);
    arm(o);
}

/* A new window for room (len bytes), at the end of the due list; NULL out of memory. */
static room_owed_t *room_open(chat_owed_t *o, const char *room, size_t len) {
    const chat_notify_config_t *cfg = chat_notify_config(o->notify);
    room_owed_t *r = calloc(1, sizeof *r + len + 1);
    chat_msg_t **msgs =
        r ? calloc(cfg->batch_max_msgs ? cfg->batch_max_msgs : 1, sizeof *msgs) : NULL;
    if (r)
        memcpy(r->room, room, len + 1); /* the key, before it is hashed */
    if (!msgs || map_put(&o->rooms, r->room, len, r)) {
        free(msgs);
        free(r);
        return NULL;
    }
    r->len = len;
    r->o = o;
    r->msgs = msgs;
    r->due = uv_now(o->loop) + cfg->window_ms;
    if (o->tail)
        o->tail->next = r;
    else
        o->head = r;
    o->tail = r;
    return r;
}

void chat_owed_add(chat_owed_t *o, chat_msg_t *msg) {
    if (!o->notify)
        return;
    size_t len = strlen(msg->room_id);
    room_owed_t *r = map_get(&o->rooms, msg->room_id, len);
    if (!r && !(r = room_open(o, msg->room_id, len))) {
        LOG_WARN("chat", "%s owed to nobody: out of memory", msg->id);
        return;
    }
    if (r->n < chat_notify_config(o->notify)->batch_max_msgs) {
        chat_msg_ref(msg);
        r->msgs[r->n++] = msg;
    }
    if (msg->seq > r->last_seq)
        r->last_seq = msg->seq;
    if (may_mention(msg->text, msg->text_len)) {
        r->early = true;
        room_close(o, r);
    }
    arm(o);
}

void chat_owed_close(chat_owed_t *o) {
    if (!o)
        return;
    o->notify = NULL;
    while (o->head) {
        room_owed_t *r = o->head;
        o->head = r->next;
        room_free(r);
    }
    o->tail = NULL;
    uv_close((uv_handle_t *)&o->timer, timer_closed);
}
