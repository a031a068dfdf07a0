/* chat/feed.c — SSE streams and long-polls fed by the chat service's room events (see
 * feed.h for the guarantees).
 *
 * A subscriber (sub_t) is in its room's list from the request until it is answered,
 * ended or its connection dies. While it replays from the store it buffers the room's
 * live messages (references, bounded); once the replay is done it delivers the buffered
 * ones above its position and is live. A store read outstanding pins the subscriber
 * (busy): if its connection dies meanwhile, the read's callback frees it. */
#include "chat/feed.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/log.h"
#include "util/map.h"

#define REPLAY_PAGE 500
#define HELD_MAX 10000 /* live messages buffered during one replay; past it the stream ends */
/* A replay pauses while more than this waits unwritten on its stream, and goes on once
 * half of it is written (checked every RESUME_CHECK_MS): a long backlog streams at the
 * client's pace instead of piling up in memory, and is not mistaken for a slow client. */
#define REPLAY_HIGH (1u << 20)
#define RESUME_CHECK_MS 10

static const char heartbeat_line[] = ":\n\n";

typedef struct feed_room feed_room_t;

typedef struct sub {
    struct sub *prev, *next; /* in its room's list */
    chat_feed_t *feed;
    feed_room_t *room; /* NULL once detached */
    http_conn_t *hc;   /* NULL once the connection is gone or answered (polls) */
    bool stream;       /* SSE; else a long-poll */
    bool replaying;    /* reading from the store; live messages are held */
    bool busy;         /* a store read is outstanding (its callback owns the sub then) */
    bool in_loop;      /* inside stream_replay's loop (synchronous callbacks) */
    bool paused;       /* replay waiting for its stream to drain (in the feed's list) */
    struct sub *paused_prev, *paused_next;
    size_t allowance; /* bytes the replay left queued when the stream went live: the slow
                         reader check starts above them */
    uint64_t last;    /* highest seq delivered or resumed from; 0 takes every seq */
    size_t limit;     /* polls: messages per answer */
    uint32_t wait_ms; /* polls */
    chat_msg_t **held;
    size_t nheld, capheld;
    char *extra; /* polls: header lines for the answer */
    char room_name[];
} sub_t;

struct feed_room {
    sub_t *head;
    char name[]; /* map key */
};

struct chat_feed {
    chat_feed_config_t cfg;
    chat_service_t *svc;
    chat_store_t *store;
    uv_timer_t heartbeat;
    uv_timer_t resume; /* runs while replays are paused */
    sub_t *paused;     /* paused replays */
    map_t rooms;       /* room id → feed_room_t, while it has subscribers */
    size_t streams;    /* attached SSE streams */
    size_t polls;      /* attached polls */
    size_t subs;       /* allocated subscribers; the feed is freed after the last */
    bool closed;
    bool draining; /* chat_feed_drain: no new streams or polls */
    int timers_open;
};

void chat_feed_config_defaults(chat_feed_config_t *cfg) {
    *cfg = (chat_feed_config_t){
        .heartbeat_ms = 25000,
        .retry_ms = 2000,
        .max_queued = 4u << 20,
    };
}

static void feed_maybe_free(chat_feed_t *f) {
    if (!f->closed || f->subs > 0 || f->timers_open > 0)
        return;
    map_free(&f->rooms);
    free(f);
}

/* ---- subscribers ---- */

static void sub_detach(sub_t *s) {
    feed_room_t *r = s->room;
    if (!r)
        return;
    if (s->prev)
        s->prev->next = s->next;
    else
        r->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    s->room = NULL;
    if (s->stream)
        s->feed->streams--;
    else
        s->feed->polls--;
    if (!r->head) {
        map_del(&s->feed->rooms, r->name, strlen(r->name));
        free(r);
    }
}

static void drop_held(sub_t *s) {
    for (size_t i = 0; i < s->nheld; i++)
        chat_msg_unref(s->held[i]);
    free(s->held);
    s->held = NULL;
    s->nheld = s->capheld = 0;
}

static void unpause(sub_t *s) {
    if (!s->paused)
        return;
    s->paused = false;
    if (s->paused_prev)
        s->paused_prev->paused_next = s->paused_next;
    else
        s->feed->paused = s->paused_next;
    if (s->paused_next)
        s->paused_next->paused_prev = s->paused_prev;
    s->paused_prev = s->paused_next = NULL;
}

static void sub_free(sub_t *s) {
    chat_feed_t *f = s->feed;
    unpause(s);
    sub_detach(s);
    drop_held(s);
    free(s->extra);
    free(s);
    f->subs--;
    feed_maybe_free(f);
}

static int sub_attach(sub_t *s) {
    chat_feed_t *f = s->feed;
    size_t len = strlen(s->room_name);
    feed_room_t *r = map_get(&f->rooms, s->room_name, len);
    if (!r) {
        if (!(r = calloc(1, sizeof *r + len + 1)))
            return -ENOMEM;
        memcpy(r->name, s->room_name, len + 1);
        if (map_put(&f->rooms, r->name, len, r)) {
            free(r);
            return -ENOMEM;
        }
    }
    s->next = r->head;
    if (r->head)
        r->head->prev = s;
    r->head = s;
    s->room = r;
    if (s->stream)
        f->streams++;
    else
        f->polls++;
    return 0;
}

static sub_t *sub_new(chat_feed_t *f, http_conn_t *hc, const char *room, bool stream) {
    size_t len = strlen(room);
    sub_t *s = calloc(1, sizeof *s + len + 1);
    if (!s)
        return NULL;
    s->feed = f;
    s->hc = hc;
    s->stream = stream;
    memcpy(s->room_name, room, len + 1);
    f->subs++;
    return s;
}

/* Ends a stream (its client reconnects and resumes): the sub leaves its room now and is
 * freed when the connection is gone (on_abort). */
static void stream_end(sub_t *s) {
    sub_detach(s);
    http_stream_end(s->hc);
}

/* The connection died (either kind) before the sub was done with it. */
static void on_abort(http_conn_t *hc, void *arg) {
    sub_t *s = arg;
    s->hc = NULL;
    sub_detach(s);
    if (!s->busy)
        sub_free(s);
}

static void hold_msg(sub_t *s, chat_msg_t *m) {
    if (s->nheld == s->capheld) {
        size_t cap = s->capheld ? s->capheld * 2 : 16;
        chat_msg_t **grown = cap <= HELD_MAX ? realloc(s->held, cap * sizeof *grown) : NULL;
        if (!grown) {
            /* Cannot keep up: a stream ends (its client resumes), a poll answers what the
             * store gives it (its client asks again from there). */
            if (s->stream && s->hc)
                stream_end(s);
            return;
        }
        s->held = grown;
        s->capheld = cap;
    }
    chat_msg_ref(m);
    s->held[s->nheld++] = m;
}

/* ---- SSE streams ---- */

static int sse_frame(buf_t *b, const chat_msg_t *m) {
    return buf_printf(b, "id: %" PRIu64 "\nevent: newMessage\ndata: %s\n\n", m->seq, m->json);
}

/* Ends the stream (its client reconnects and resumes) once too much waits unread. */
static void stream_check_queue(sub_t *s) {
    if (!s->hc || !s->room)
        return;
    size_t queued = http_conn_queued(s->hc);
    if (queued <= s->feed->cfg.max_queued)
        s->allowance = 0;
    if (queued > s->feed->cfg.max_queued + s->allowance) {
        LOG_INFO("feed", "SSE client of %s too slow (%zu bytes waiting): ending its stream",
                 s->room_name, http_conn_queued(s->hc));
        stream_end(s);
    }
}

static void stream_send_msg(sub_t *s, const chat_msg_t *m) {
    buf_t b = {0};
    if (sse_frame(&b, m) || http_send_body_copy(s->hc, b.data, b.len))
        LOG_WARN("feed", "SSE message %s not queued", m->id);
    buf_free(&b);
    s->last = m->seq;
}

static void stream_replay(sub_t *s);
static void on_resume_check(uv_timer_t *t);

static void stream_replayed(sub_t *s, int err, chat_msg_t *const *msgs, size_t n) {
    if (!s->room)
        return; /* already ended */
    if (err == -ERANGE) {
        /* A position beyond the room's history comes from another history (a wiped
         * store): only what is new is sent. */
        s->last = 0;
        err = 0;
        n = 0;
    }
    if (err) {
        LOG_WARN("feed", "replay of %s failed: %s", s->room_name, strerror(-err));
        stream_end(s);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (msgs[i]->seq > s->last)
            stream_send_msg(s, msgs[i]);
    if (n < REPLAY_PAGE) {
        for (size_t i = 0; i < s->nheld; i++)
            if (s->held[i]->seq > s->last)
                stream_send_msg(s, s->held[i]);
        drop_held(s);
        s->replaying = false;
        s->allowance = http_conn_queued(s->hc);
    } else if (http_conn_queued(s->hc) > REPLAY_HIGH) {
        chat_feed_t *f = s->feed;
        s->paused = true;
        s->paused_next = f->paused;
        if (f->paused)
            f->paused->paused_prev = s;
        f->paused = s;
        if (!uv_is_active((uv_handle_t *)&f->resume) &&
            uv_timer_start(&f->resume, on_resume_check, RESUME_CHECK_MS, RESUME_CHECK_MS)) {
            LOG_WARN("feed", "replay of %s cannot wait for its reader: ending it", s->room_name);
            unpause(s);
            stream_end(s);
        }
    }
}

static void poll_replayed(sub_t *s, int err, chat_msg_t *const *msgs, size_t n);

static void replay_done(int err, chat_msg_t *const *msgs, size_t n, void *arg) {
    sub_t *s = arg;
    s->busy = false;
    if (!s->hc) {
        sub_free(s);
        return;
    }
    if (!s->stream) {
        poll_replayed(s, err, msgs, n);
        return;
    }
    stream_replayed(s, err, msgs, n);
    if (s->replaying && !s->paused && !s->in_loop)
        stream_replay(s);
}

/* Paused replays whose stream drained go on. */
static void on_resume_check(uv_timer_t *t) {
    chat_feed_t *f = t->data;
    for (sub_t *s = f->paused, *next; s; s = next) {
        next = s->paused_next;
        if (!s->hc || !s->room) {
            unpause(s);
        } else if (http_conn_queued(s->hc) <= REPLAY_HIGH / 2) {
            unpause(s);
            stream_replay(s);
        }
    }
    if (!f->paused && uv_timer_stop(&f->resume))
        LOG_WARN("feed", "resume timer cannot be stopped");
}

/* Reads page after page (callbacks may run synchronously: hence a loop, not recursion)
 * until the store has nothing newer than the stream's position. */
static void stream_replay(sub_t *s) {
    while (s->replaying && !s->busy && !s->paused && s->hc && s->room) {
        s->busy = true;
        s->in_loop = true;
        int rc =
            chat_store_after(s->feed->store, s->room_name, s->last, REPLAY_PAGE, replay_done, s);
        s->in_loop = false;
        if (rc) {
            s->busy = false;
            LOG_WARN("feed", "replay of %s refused: %s", s->room_name, strerror(-rc));
            stream_end(s);
            return;
        }
        if (s->busy)
            return; /* answered later, on the loop */
    }
}

int chat_feed_stream(chat_feed_t *f, http_conn_t *hc, const char *room, bool resume, uint64_t after,
                     const char *extra) {
    if (f->closed || f->draining)
        return -ECANCELED;
    sub_t *s = sub_new(f, hc, room, true);
    if (!s)
        return -ENOMEM;
    /* A resumed stream replays what the store has after its position first (the store
     * answers -ERANGE for a position beyond the history: stream_replayed). */
    if (resume) {
        s->last = after;
        s->replaying = true;
    }
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     "X-Accel-Buffering: no\r\n%s",
                     extra ? extra : "");
    char retry[32];
    int rn = snprintf(retry, sizeof retry, "retry: %" PRIu32 "\n\n", f->cfg.retry_ms);
    if (n < 0 || (size_t)n >= sizeof head || sub_attach(s)) {
        sub_free(s);
        return -ENOMEM;
    }
    if (http_stream_begin(hc, 200, head, on_abort, s) ||
        http_send_body_copy(hc, retry, (size_t)rn)) {
        /* The head may be out: the stream is ours now; end it. */
        sub_detach(s);
        http_stream_end(hc);
        return 0;
    }
    stream_replay(s);
    return 0;
}

/* ---- long-polls ---- */

/* Answers a poll with body (shared by reference when owner is given, else copied) and
 * frees the poll. */
static void poll_answer(sub_t *s, ref_t *owner, const void *body, size_t len) {
    http_conn_t *hc = s->hc;
    s->hc = NULL;
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "Content-Type: application/json\r\nCache-Control: no-store\r\n%s",
                     s->extra ? s->extra : "");
    if (n < 0 || (size_t)n >= sizeof head || http_send_head(hc, 200, head, (int64_t)len) ||
        (owner ? http_send_body(hc, owner, body, len) : http_send_body_copy(hc, body, len)))
        LOG_WARN("feed", "long-poll answer for %s not queued", s->room_name);
    http_response_done(hc);
    sub_free(s);
}

/* Answers a poll with no messages. */
static void poll_answer_empty(sub_t *s) {
    poll_answer(s, NULL, "[]", 2);
}

static void poll_answer_msgs(sub_t *s, chat_msg_t *const *msgs, size_t n) {
    buf_t b = {0};
    if (chat_msg_join(&b, "[", msgs, n, "]")) {
        LOG_WARN("feed", "long-poll of %s answered empty: out of memory", s->room_name);
        buf_free(&b);
        poll_answer_empty(s);
        return;
    }
    poll_answer(s, NULL, b.data, b.len);
    buf_free(&b);
}

static void poll_timeout(http_conn_t *hc, void *arg) {
    poll_answer_empty(arg);
}

/* Waits for the next message, or answers [] when the caller does not want to wait. */
static void poll_wait(sub_t *s) {
    s->replaying = false;
    if (s->wait_ms == 0 || !s->room) {
        poll_answer_empty(s);
        return;
    }
    http_conn_hold_deadline(s->hc, s->wait_ms, poll_timeout);
}

static void poll_replayed(sub_t *s, int err, chat_msg_t *const *msgs, size_t n) {
    if (err == -ERANGE) {
        /* Beyond the history (another history's position): any new message answers. */
        s->last = 0;
        poll_wait(s);
        return;
    }
    if (err) {
        LOG_WARN("feed", "history read of %s failed: %s", s->room_name, strerror(-err));
        poll_answer_empty(s);
        return;
    }
    /* The store's page, then what went live meanwhile, above the position. */
    chat_msg_t **all = malloc((n + s->nheld + 1) * sizeof *all);
    size_t count = 0;
    uint64_t last = s->last;
    for (size_t i = 0; all && i < n && count < s->limit; i++)
        if (msgs[i]->seq > last)
            last = (all[count++] = msgs[i])->seq;
    for (size_t i = 0; all && i < s->nheld && count < s->limit; i++)
        if (s->held[i]->seq > last)
            last = (all[count++] = s->held[i])->seq;
    if (count > 0) {
        poll_answer_msgs(s, all, count);
    } else if (all) {
        poll_wait(s);
    } else {
        LOG_WARN("feed", "long-poll of %s answered empty: out of memory", s->room_name);
        poll_answer_empty(s);
    }
    free(all);
}

int chat_feed_poll(chat_feed_t *f, http_conn_t *hc, const char *room, uint64_t after, size_t limit,
                   uint32_t wait_ms, const char *extra) {
    if (f->closed || f->draining)
        return -ECANCELED;
    sub_t *s = sub_new(f, hc, room, false);
    if (!s)
        return -ENOMEM;
    s->limit = limit;
    s->wait_ms = wait_ms;
    if ((extra && *extra && !(s->extra = strdup(extra))) || sub_attach(s)) {
        sub_free(s);
        return -ENOMEM;
    }
    http_conn_hold(hc, on_abort, s);
    s->last = after;
    s->replaying = true;
    s->busy = true;
    int rc = chat_store_after(f->store, room, after, limit, replay_done, s);
    if (rc) {
        s->busy = false;
        LOG_WARN("feed", "history read of %s refused: %s", room, strerror(-rc));
        poll_answer_empty(s);
    }
    return 0;
}

/* ---- fan-out ---- */

static void deliver_msg(feed_room_t *r, chat_msg_t *m) {
    buf_t frame = {0}, array = {0};
    rcbuf_t *frame_rc = NULL, *array_rc = NULL;
    bool frame_failed = false, array_failed = false; /* made at most once each */
    for (sub_t *s = r->head, *next; s; s = next) {
        next = s->next;
        if (s->replaying) {
            hold_msg(s, m);
            continue;
        }
        if (s->last && m->seq <= s->last)
            continue;
        /* Out of memory for the frame or the array: the subscriber is ended or answered
         * empty rather than skipped, so that it asks the store again from its position
         * and loses nothing. */
        if (s->stream) {
            if (!frame_rc && !frame_failed)
                frame_failed =
                    sse_frame(&frame, m) || !(frame_rc = rcbuf_new(frame.data, frame.len));
            if (!frame_rc) {
                LOG_WARN("feed", "SSE message %s not framed: ending a stream of %s", m->id,
                         s->room_name);
                stream_end(s);
                continue;
            }
            if (http_send_body(s->hc, &frame_rc->ref, frame_rc->data, frame_rc->len))
                LOG_WARN("feed", "SSE message %s not queued", m->id);
            s->last = m->seq;
            stream_check_queue(s);
        } else {
            if (!array_rc && !array_failed)
                array_failed = chat_msg_join(&array, "[", &m, 1, "]") ||
                               !(array_rc = rcbuf_new(array.data, array.len));
            if (!array_rc) {
                LOG_WARN("feed", "message %s not encoded for a long-poll of %s", m->id,
                         s->room_name);
                poll_answer_empty(s);
                continue;
            }
            poll_answer(s, &array_rc->ref, array_rc->data, array_rc->len);
        }
    }
    buf_free(&frame);
    buf_free(&array);
    if (frame_rc)
        ref_release(&frame_rc->ref);
    if (array_rc)
        ref_release(&array_rc->ref);
}

/* Presence and receipt events go to live streams only: they are not stored, so there is
 * nothing to replay and nothing a poll could ask for. */
static void deliver_event(feed_room_t *r, const chat_event_t *ev) {
    rcbuf_t *frame = NULL;
    for (sub_t *s = r->head, *next; s; s = next) {
        next = s->next;
        if (!s->stream || s->replaying)
            continue;
        if (!frame) {
            buf_t b = {0};
            if (buf_printf(&b, "event: %s\ndata: %.*s\n\n", ev->name, (int)ev->json_len,
                           ev->json) == 0)
                frame = rcbuf_new(b.data, b.len);
            buf_free(&b);
            if (!frame) {
                LOG_WARN("feed", "SSE %s in %s not sent: out of memory", ev->name, ev->room);
                return;
            }
        }
        if (http_send_body(s->hc, &frame->ref, frame->data, frame->len))
            LOG_WARN("feed", "SSE %s not queued", ev->name);
        stream_check_queue(s);
    }
    if (frame)
        ref_release(&frame->ref);
}

static void on_event(const chat_event_t *ev, void *arg) {
    chat_feed_t *f = arg;
    feed_room_t *r = map_get(&f->rooms, ev->room, strlen(ev->room));
    if (!r)
        return;
    if (ev->msg)
        deliver_msg(r, ev->msg);
    else
        deliver_event(r, ev);
}

static void on_heartbeat(uv_timer_t *t) {
    chat_feed_t *f = t->data;
    map_entry_t *e;
    for (size_t pos = 0; map_next(&f->rooms, &pos, &e);) {
        for (sub_t *s = ((feed_room_t *)e->value)->head; s; s = s->next)
            if (s->stream && http_send_body(s->hc, NULL, heartbeat_line, sizeof heartbeat_line - 1))
                LOG_DEBUG("feed", "heartbeat not queued");
    }
}

/* ---- lifecycle ---- */

static void on_timer_closed(uv_handle_t *h) {
    chat_feed_t *f = h->data;
    f->timers_open--;
    feed_maybe_free(f);
}

int chat_feed_new(uv_loop_t *loop, chat_service_t *svc, chat_store_t *store,
                  const chat_feed_config_t *cfg, chat_feed_t **out) {
    chat_feed_t *f = calloc(1, sizeof *f);
    if (!f || map_init(&f->rooms)) {
        free(f);
        return -ENOMEM;
    }
    f->cfg = *cfg;
    f->svc = svc;
    f->store = store;
    int rc = uv_timer_init(loop, &f->heartbeat);
    if (rc) {
        map_free(&f->rooms);
        free(f);
        return rc;
    }
    f->timers_open = 1;
    f->heartbeat.data = f->resume.data = f;
    if ((rc = uv_timer_init(loop, &f->resume))) {
        f->closed = true;
        uv_close((uv_handle_t *)&f->heartbeat, on_timer_closed); /* frees f */
        return rc;
    }
    f->timers_open = 2;
    chat_feed_config_t def;
    chat_feed_config_defaults(&def);
    uint32_t every = cfg->heartbeat_ms ? cfg->heartbeat_ms : def.heartbeat_ms;
    if ((rc = uv_timer_start(&f->heartbeat, on_heartbeat, every, every))) {
        LOG_ERROR("feed", "heartbeat timer: %s", uv_strerror(rc));
        chat_feed_close(f);
        return rc;
    }
    chat_service_observe(svc, on_event, f);
    *out = f;
    return 0;
}

/* Ends every stream and answers every poll. */
static void end_subs(chat_feed_t *f) {
    map_entry_t *e;
    /* Every subscriber leaves its room (and the last one frees the room): restart the
     * walk after each, the map changes under it. */
    while (f->rooms.count > 0) {
        size_t pos = 0;
        if (!map_next(&f->rooms, &pos, &e))
            break;
        sub_t *s = ((feed_room_t *)e->value)->head;
        if (s->stream) {
            stream_end(s);
        } else if (s->busy) {
            sub_detach(s); /* its store callback answers it */
        } else {
            poll_answer_empty(s);
        }
    }
}

void chat_feed_drain(chat_feed_t *f) {
    f->draining = true;
    end_subs(f);
}

void chat_feed_close(chat_feed_t *f) {
    if (f->closed)
        return;
    f->closed = true;
    chat_service_observe(f->svc, NULL, NULL);
    end_subs(f);
    while (f->paused)
        unpause(f->paused);
    uv_close((uv_handle_t *)&f->heartbeat, on_timer_closed);
    uv_close((uv_handle_t *)&f->resume, on_timer_closed);
}

void chat_feed_counts(const chat_feed_t *f, size_t *streams, size_t *polls) {
    *streams = f->streams;
    *polls = f->polls;
}
