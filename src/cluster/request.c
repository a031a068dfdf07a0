/* cluster/request.c — requests to the other workers (cluster/request.h). */
#include "cluster/request.h"

#include <errno.h>
#include <stdlib.h>

#include "cluster/internal.h"
#include "cluster/proto.h"
#include "util/assert.h"
#include "util/log.h"

struct creq {
    creq_t *next;
    parley_worker_t *w;
    uint32_t id;
    uint32_t asked;    /* from FANOUT: the workers the request went to */
    uint32_t finished; /* those that sent their final reply or are gone */
    bool fanned;       /* FANOUT came */
    creq_cb_t cb;
    void *arg;
    bool has_timer;
    uv_timer_t timer;
};

static uint32_t bit(unsigned worker) {
    return worker >= 1 && worker <= PARLEY_WORKERS_MAX ? 1u << (worker - 1) : 0;
}

static void timer_closed(uv_handle_t *h) {
    free(h->data);
}

static void unlink_req(creq_t *q) {
    for (creq_t **p = &q->w->reqs; *p; p = &(*p)->next) {
        if (*p == q) {
            *p = q->next;
            return;
        }
    }
}

/* q is off the list: its done, then it is freed. */
static void end(creq_t *q, int err) {
    q->cb.done(q, err, q->arg);
    if (q->has_timer)
        uv_close((uv_handle_t *)&q->timer, timer_closed);
    else
        free(q);
}

static void finish(creq_t *q, int err) {
    unlink_req(q);
    end(q, err);
}

static void maybe_finish(creq_t *q) {
    if (q->fanned && (q->finished & q->asked) == q->asked)
        finish(q, 0);
}

static void timed_out(uv_timer_t *t) {
    finish(t->data, -ETIMEDOUT);
}

static creq_t *find(parley_worker_t *w, uint32_t id) {
    for (creq_t *q = w->reqs; q; q = q->next)
        if (q->id == id)
            return q;
    return NULL;
}

/* REQ and REPLY have one shape: three numbers, a flag or kind, and the body. */
static int send_frame(parley_worker_t *w, uint8_t type, uint32_t a, uint32_t b, uint32_t c,
                      uint8_t d, const void *body, size_t len) {
    buf_t f = {0};
    size_t start;
    int rc = wire_begin(&f, type, &start);
    if (rc == 0)
        rc = wire_u32(&f, a);
    if (rc == 0)
        rc = wire_u32(&f, b);
    if (rc == 0)
        rc = wire_u32(&f, c);
    if (rc == 0)
        rc = wire_u8(&f, d);
    if (rc == 0)
        rc = wire_bytes(&f, body, len);
    if (rc == 0) {
        wire_end(&f, start);
        rc = channel_send(w->ch, f.data, f.len);
    }
    buf_free(&f);
    return rc;
}

int creq_start(parley_worker_t *w, unsigned to, uint8_t kind, const void *body, size_t len,
               uint32_t timeout_ms, const creq_cb_t *cb, void *arg) {
    PARLEY_ASSERT(cb->reply && cb->done);
    if (!w->io || !w->ch)
        return -EPIPE;
    creq_t *q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    q->w = w;
    q->id = ++w->next_req;
    q->cb = *cb;
    q->arg = arg;
    int rc = send_frame(w, PROTO_REQ, to, w->id, q->id, kind, body, len);
    if (rc == 0 && timeout_ms) {
        if (uv_timer_init(w->loop, &q->timer) == 0) {
            q->has_timer = true;
            q->timer.data = q;
            rc = uv_timer_start(&q->timer, timed_out, timeout_ms, 0) ? -ENOMEM : 0;
        } else {
            rc = -ENOMEM;
        }
    }
    if (rc) {
        /* Sent or not, nothing will match it: its id is never found again. */
        if (q->has_timer)
            uv_close((uv_handle_t *)&q->timer, timer_closed);
        else
            free(q);
        return rc;
    }
    q->next = w->reqs;
    w->reqs = q;
    return 0;
}

int creq_reply(parley_worker_t *w, const creq_from_t *from, bool final, const void *body,
               size_t len) {
    if (!w->ch)
        return -EPIPE;
    int rc = send_frame(w, PROTO_REPLY, from->origin, from->id, w->id, final, body, len);
    if (rc)
        LOG_LIMITED(LOG_LEVEL_WARN, "cluster", "reply to worker %u not sent: %d", from->origin, rc);
    return rc;
}

void creq_handle(parley_worker_t *w, uint8_t kind, creq_handler_fn fn, void *arg) {
    PARLEY_ASSERT(kind < CREQ_KINDS);
    w->handlers[kind].fn = fn;
    w->handlers[kind].arg = arg;
}

void creq_on_request(parley_worker_t *w, const uint8_t *frame, size_t size) {
    wire_reader_t r;
    wire_reader_init(&r, frame, size);
    wire_get_u32(&r); /* to: this worker */
    creq_from_t from = {wire_get_u32(&r), 0};
    from.id = wire_get_u32(&r);
    uint8_t kind = wire_get_u8(&r);
    slice_t body = wire_get_bytes(&r);
    if (!wire_done(&r)) {
        LOG_LIMITED(LOG_LEVEL_ERROR, "cluster", "malformed request from the supervisor");
        return;
    }
    if (kind < CREQ_KINDS && w->handlers[kind].fn && w->io) {
        w->handlers[kind].fn(w, &from, (const uint8_t *)body.base, body.len, w->handlers[kind].arg);
        return;
    }
    /* Nothing here to do it (shutting down, or a kind this worker does not know): an
     * empty answer, so that the asker does not wait for its timeout. */
    creq_reply(w, &from, true, NULL, 0);
}

void creq_on_fanout(parley_worker_t *w, const uint8_t *frame, size_t size) {
    wire_reader_t r;
    wire_reader_init(&r, frame, size);
    uint32_t id = wire_get_u32(&r);
    uint32_t mask = wire_get_u32(&r);
    if (!wire_done(&r)) {
        LOG_LIMITED(LOG_LEVEL_ERROR, "cluster", "malformed fan-out from the supervisor");
        return;
    }
    creq_t *q = find(w, id);
    if (!q)
        return; /* timed out already */
    q->fanned = true;
    q->asked = mask;
    maybe_finish(q);
}

void creq_on_reply(parley_worker_t *w, const uint8_t *frame, size_t size) {
    wire_reader_t r;
    wire_reader_init(&r, frame, size);
    wire_get_u32(&r); /* origin: this worker */
    uint32_t id = wire_get_u32(&r);
    unsigned from = wire_get_u32(&r);
    bool final = wire_get_u8(&r) != 0;
    slice_t body = wire_get_bytes(&r);
    if (!wire_done(&r) || !bit(from)) {
        LOG_LIMITED(LOG_LEVEL_ERROR, "cluster", "malformed reply from the supervisor");
        return;
    }
    creq_t *q = find(w, id);
    if (!q || (q->finished & bit(from)))
        return;
    q->cb.reply(q, from, (const uint8_t *)body.base, body.len, q->arg);
    if (final) {
        q->finished |= bit(from);
        maybe_finish(q);
    }
}

void creq_on_gone(parley_worker_t *w, const uint8_t *frame, size_t size) {
    wire_reader_t r;
    wire_reader_init(&r, frame, size);
    unsigned gone = wire_get_u32(&r);
    if (!wire_done(&r) || !bit(gone)) {
        LOG_LIMITED(LOG_LEVEL_ERROR, "cluster", "malformed GONE from the supervisor");
        return;
    }
    for (creq_t *q = w->reqs; q; q = q->next) {
        if (q->fanned && (q->asked & bit(gone)) && !(q->finished & bit(gone))) {
            q->finished |= bit(gone);
            if (q->cb.gone)
                q->cb.gone(q, gone, q->arg);
        }
    }
    /* Taken off the list first, then ended: a done may start new requests. */
    creq_t *ended = NULL;
    for (creq_t **p = &w->reqs; *p;) {
        creq_t *q = *p;
        if (q->fanned && (q->finished & q->asked) == q->asked) {
            *p = q->next;
            q->next = ended;
            ended = q;
        } else {
            p = &q->next;
        }
    }
    while (ended) {
        creq_t *q = ended;
        ended = q->next;
        end(q, 0);
    }
}

void creq_fail_all(parley_worker_t *w) {
    creq_t *all = w->reqs;
    w->reqs = NULL;
    while (all) {
        creq_t *q = all;
        all = q->next;
        end(q, -EPIPE);
    }
}
