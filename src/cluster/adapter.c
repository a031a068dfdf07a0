/* cluster/adapter.c — the cross-worker Socket.IO adapter.
 *
 * It wraps a namespace's in-process adapter. An operation that reaches sockets by room
 * (broadcast, socketsJoin, socketsLeave, disconnectSockets) is done here through the
 * in-process adapter and sent once, as one frame, to the supervisor, which passes the
 * same bytes to every other worker; there it is applied with SIO_LOCAL set, so it goes
 * no further. Everything about this worker's own sockets (join, leave) is the in-process
 * adapter's.
 *
 * What needs answers from the others is a request (cluster/request.h):
 * - a broadcast with acknowledgements: each worker sends it to its own sockets and
 *   replies with how many it sent it to, then each answer as it comes (or each
 *   recipient that left first); the asker's count is final once every worker counted;
 * - fetchSockets: each worker replies with its matching sockets, described;
 * - serverSideEmit: each worker hands it to its namespace's handler and replies with
 *   the handler's answer;
 * - recovery on another worker: a client comes back to a worker that did not keep its
 *   session. The one that did lends the session and the packets of its log the client
 *   missed; the asker's application decides (recovery_allow) and, when it refuses, or
 *   the client left meanwhile, the session is given back. Offsets name their worker,
 *   and are looked up only in that worker's log: a client that recovered on another
 *   worker and lost its connection again before any packet of the new one reached it
 *   comes back with an offset of the old worker, and gets a fresh session. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "cluster/proto.h"
#include "cluster/request.h"
#include "sio/internal.h"
#include "util/log.h"
#include "util/time.h"

typedef struct {
    sio_wrapper_t wrap; /* wrap.local: this worker's in-process adapter */
    parley_worker_t *w;
} wadapter_t;

static sio_adapter_t *local_of(sio_adapter_t *a) {
    return ((wadapter_t *)a)->wrap.local;
}

/* Sends a frame to the other workers; a failure costs them this operation, not us. */
static void send_frame(wadapter_t *wa, buf_t *b, int rc) {
    if (rc == 0 && wa->w->ch)
        rc = channel_send(wa->w->ch, b->data, b->len);
    if (rc)
        LOG_LIMITED(LOG_LEVEL_WARN, "cluster", "operation not sent to the other workers: %d", rc);
    buf_free(b);
}

static int w_broadcast(sio_adapter_t *a, const sio_bcast_t *b) {
    wadapter_t *wa = (wadapter_t *)a;
    int rc = wa->wrap.local->ops->broadcast(wa->wrap.local, b);
    if (rc == 0 && !(b->to.flags & SIO_LOCAL)) {
        buf_t f = {0};
        send_frame(wa, &f, proto_bcast_encode(&f, a->nsp->name, b));
    }
    return rc;
}

/* Replies to a broadcast with acknowledgements (u8 kind first). */
enum { BCA_COUNT = 1, BCA_ACK = 2, BCA_LOST = 3 };

/* The asker's side: the collector's callbacks, and the answers each worker still owes
 * (reported lost if it exits). */
typedef struct {
    sio_bcast_count_fn count;
    sio_ack_fn ack;
    void *arg;
    uint32_t owed[PARLEY_WORKERS_MAX];
} bca_t;

static void bca_reply(creq_t *q, unsigned from, const uint8_t *body, size_t len, void *arg) {
    bca_t *st = arg;
    wire_reader_t r = {body, body + len, 0, false};
    uint8_t kind = wire_get_u8(&r);
    if (kind == BCA_COUNT) {
        uint32_t n = wire_get_u32(&r);
        if (wire_done(&r)) {
            st->owed[from - 1] += n;
            st->count(n, false, st->arg);
            return;
        }
    } else if ((kind == BCA_ACK || kind == BCA_LOST) && st->owed[from - 1]) {
        slice_t args = kind == BCA_ACK ? wire_get_bytes(&r) : SLICE_NULL;
        if (wire_done(&r)) {
            st->owed[from - 1]--;
            json_t *j = kind == BCA_ACK ? json_loadb(args.base, args.len, 0, NULL) : NULL;
            if (kind == BCA_ACK && !json_is_array(j))
                LOG_LIMITED(LOG_LEVEL_WARN, "cluster", "an answer from worker %u was lost", from);
            sio_payload_t p = {j, NULL, 0};
            st->ack(NULL, j ? 0 : -EPIPE, j ? &p : NULL, st->arg);
            json_decref(j);
            return;
        }
    }
    LOG_LIMITED(LOG_LEVEL_ERROR, "cluster", "malformed acknowledgement from worker %u", from);
}

static void bca_gone(creq_t *q, unsigned from, void *arg) {
    bca_t *st = arg;
    for (; st->owed[from - 1]; st->owed[from - 1]--)
        st->ack(NULL, -EPIPE, NULL, st->arg);
}

static void bca_done(creq_t *q, int err, void *arg) {
    bca_t *st = arg;
    /* Timed out or cut off: what is still owed will not come. */
    for (unsigned i = 0; i < PARLEY_WORKERS_MAX; i++)
        for (; st->owed[i]; st->owed[i]--)
            st->ack(NULL, -EPIPE, NULL, st->arg);
    st->count(0, true, st->arg);
    free(st);
}

static const creq_cb_t bca_cb = {bca_reply, bca_gone, bca_done};

static int w_broadcast_with_ack(sio_adapter_t *a, const sio_bcast_t *b, uint64_t ack_id,
                                sio_bcast_count_fn count, sio_ack_fn ack, void *arg) {
    wadapter_t *wa = (wadapter_t *)a;
    if ((b->to.flags & SIO_LOCAL) || !wa->w->ch)
        return wa->wrap.local->ops->broadcast_with_ack(wa->wrap.local, b, ack_id, count, ack, arg);
    sio_bcast_t mine = *b;
    mine.more = true;
    int rc =
        wa->wrap.local->ops->broadcast_with_ack(wa->wrap.local, &mine, ack_id, count, ack, arg);
    if (rc)
        return rc;
    bca_t *st = calloc(1, sizeof *st);
    buf_t f = {0};
    rc = st ? proto_bcast_encode(&f, a->nsp->name, b) : -ENOMEM;
    if (rc == 0) {
        *st = (bca_t){count, ack, arg, {0}};
        rc = creq_start(wa->w, 0, CREQ_BCAST_ACK, f.data, f.len, 0, &bca_cb, st);
    }
    buf_free(&f);
    if (rc) {
        LOG_LIMITED(LOG_LEVEL_WARN, "cluster",
                    "broadcast with acknowledgements not sent to the other workers: %d", rc);
        free(st);
        count(0, true, arg);
    }
    return 0;
}

/* The answering side: this worker's recipients, reported to the asker. */
typedef struct {
    parley_worker_t *w;
    creq_from_t from;
    size_t expected, told, received;
    bool counted;
} bca_remote_t;

static void bca_reply_send(bca_remote_t *rs, uint8_t kind, const buf_t *args, bool final) {
    buf_t b = {0};
    int rc = wire_u8(&b, kind);
    if (rc == 0 && kind == BCA_COUNT)
        rc = wire_u32(&b, (uint32_t)(rs->expected - rs->told));
    if (rc == 0 && kind == BCA_ACK)
        rc = wire_bytes(&b, args->data, args->len);
    if (rc == 0)
        rc = creq_reply(rs->w, &rs->from, final, b.data, b.len);
    buf_free(&b);
    if (rc)
        LOG_LIMITED(LOG_LEVEL_WARN, "cluster", "acknowledgement not passed on: %d", rc);
    if (kind == BCA_COUNT)
        rs->told = rs->expected;
}

static void bca_remote_count(size_t n, bool last, void *arg) {
    bca_remote_t *rs = arg;
    rs->expected += n;
    if (!last)
        return;
    rs->counted = true;
    bool final = rs->received == rs->expected;
    bca_reply_send(rs, BCA_COUNT, NULL, final);
    if (final)
        free(rs);
}

static void bca_remote_ack(sio_socket_t *s, int err, const sio_payload_t *p, void *arg) {
    bca_remote_t *rs = arg;
    rs->received++;
    /* The asker must hear of recipients before their answers. */
    if (rs->told < rs->expected)
        bca_reply_send(rs, BCA_COUNT, NULL, false);
    buf_t args = {0};
    bool answered = err == 0 && p && p->args && sio_args_dump(p->args, &args) == 0;
    bool final = rs->counted && rs->received == rs->expected;
    bca_reply_send(rs, answered ? BCA_ACK : BCA_LOST, &args, final);
    buf_free(&args);
    if (final)
        free(rs);
}

static void reply_none(parley_worker_t *w, const creq_from_t *from) {
    buf_t b = {0};
    if (wire_u8(&b, BCA_COUNT) == 0 && wire_u32(&b, 0) == 0)
        creq_reply(w, from, true, b.data, b.len);
    buf_free(&b);
}

/* A BCAST or ROOMS frame inside a request. */
static int decode_inner(const uint8_t *body, size_t len, uint8_t type, proto_msg_t *m) {
    if (len <= WIRE_HEADER || body[4] != type)
        return -EINVAL;
    return proto_msg_decode(body, len, m);
}

static void answer_bcast_ack(parley_worker_t *w, const creq_from_t *from, const uint8_t *body,
                             size_t len, void *arg) {
    proto_msg_t m;
    int rc = decode_inner(body, len, PROTO_BCAST, &m);
    if (rc) {
        LOG_LIMITED(LOG_LEVEL_ERROR, "cluster", "broadcast request not decoded: %d", rc);
        reply_none(w, from);
        return;
    }
    sio_nsp_t *nsp = sio_server_find(w->io, m.nsp);
    bool sent = false;
    if (nsp) {
        bca_remote_t *rs = calloc(1, sizeof *rs);
        m.b.to.flags |= SIO_LOCAL;
        sio_adapter_t *local = local_of(nsp->adapter);
        if (rs) {
            rs->w = w;
            rs->from = *from;
            /* From here rs belongs to the callbacks (the last one frees it), unless the
             * adapter failed before counting. */
            rc = local->ops->broadcast_with_ack(local, &m.b, nsp->next_ack_id++, bca_remote_count,
                                                bca_remote_ack, rs);
            sent = rc == 0;
            if (!sent)
                free(rs);
        }
        if (!sent)
            LOG_LIMITED(LOG_LEVEL_WARN, "cluster", "broadcast with acknowledgements failed: %d",
                        rs ? rc : -ENOMEM);
    }
    proto_msg_free(&m);
    if (!sent)
        reply_none(w, from);
}
static void rooms_op(wadapter_t *wa, uint8_t op, const sio_target_t *which, const char *room,
                     bool close) {
    if (which && (which->flags & SIO_LOCAL))
        return;
    buf_t f = {0};
    send_frame(wa, &f, proto_rooms_encode(&f, wa->wrap.base.nsp->name, op, which, room, close));
}

static int w_sockets_join(sio_adapter_t *a, const sio_target_t *which, const char *room) {
    wadapter_t *wa = (wadapter_t *)a;
    int rc = wa->wrap.local->ops->sockets_join(wa->wrap.local, which, room);
    rooms_op(wa, PROTO_ROOMS_JOIN, which, room, false);
    return rc;
}

static int w_sockets_leave(sio_adapter_t *a, const sio_target_t *which, const char *room) {
    wadapter_t *wa = (wadapter_t *)a;
    int rc = wa->wrap.local->ops->sockets_leave(wa->wrap.local, which, room);
    rooms_op(wa, PROTO_ROOMS_LEAVE, which, room, false);
    return rc;
}

static int w_disconnect_sockets(sio_adapter_t *a, const sio_target_t *which, bool close) {
    wadapter_t *wa = (wadapter_t *)a;
    /* Told to the others first: the local disconnects may free what `which` names. */
    rooms_op(wa, PROTO_ROOMS_DISCONNECT, which, NULL, close);
    return wa->wrap.local->ops->disconnect_sockets(wa->wrap.local, which, close);
}

/* fetchSockets: this worker's sockets, then each other's as they answer. */
typedef struct {
    json_t *list;
    sio_fetch_fn done;
    void *arg;
} fetch_t;

static void take_local(int err, json_t *sockets, void *arg) {
    fetch_t *st = arg;
    st->list = json_incref(sockets);
}

static void fetch_reply(creq_t *q, unsigned from, const uint8_t *body, size_t len, void *arg) {
    fetch_t *st = arg;
    json_t *more = len ? json_loadb((const char *)body, len, 0, NULL) : NULL;
    if (len && (!json_is_array(more) || json_array_extend(st->list, more)))
        LOG_LIMITED(LOG_LEVEL_WARN, "cluster", "sockets of worker %u not added", from);
    json_decref(more);
}

static void fetch_done(creq_t *q, int err, void *arg) {
    fetch_t *st = arg;
    st->done(err, st->list, st->arg);
    json_decref(st->list);
    free(st);
}

static const creq_cb_t fetch_cb = {fetch_reply, NULL, fetch_done};

static int w_fetch_all(sio_adapter_t *a, const sio_target_t *which, uint32_t timeout_ms,
                       sio_fetch_fn done, void *arg) {
    wadapter_t *wa = (wadapter_t *)a;
    if ((which && (which->flags & SIO_LOCAL)) || !wa->w->ch)
        return wa->wrap.local->ops->fetch_all(wa->wrap.local, which, timeout_ms, done, arg);
    fetch_t *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    st->done = done;
    st->arg = arg;
    int rc = wa->wrap.local->ops->fetch_all(wa->wrap.local, which, timeout_ms, take_local, st);
    buf_t f = {0};
    if (rc == 0)
        rc = proto_rooms_encode(&f, a->nsp->name, PROTO_ROOMS_FETCH, which, NULL, false);
    if (rc == 0)
        rc = creq_start(wa->w, 0, CREQ_FETCH, f.data, f.len, timeout_ms, &fetch_cb, st);
    buf_free(&f);
    if (rc) {
        json_decref(st->list);
        free(st);
    }
    return rc;
}

static void describe_into(int err, json_t *sockets, void *arg) {
    *(char **)arg = json_dumps(sockets, JSON_COMPACT);
}

static void answer_fetch(parley_worker_t *w, const creq_from_t *from, const uint8_t *body,
                         size_t len, void *arg) {
    proto_msg_t m;
    int rc = decode_inner(body, len, PROTO_ROOMS, &m);
    char *text = NULL;
    if (rc == 0) {
        sio_nsp_t *nsp = sio_server_find(w->io, m.nsp);
        if (nsp) {
            sio_adapter_t *local = local_of(nsp->adapter);
            rc = local->ops->fetch_all(local, &m.b.to, 0, describe_into, &text);
            if (rc == 0 && !text)
                rc = -ENOMEM;
        }
        proto_msg_free(&m);
    }
    if (rc)
        LOG_LIMITED(LOG_LEVEL_WARN, "cluster", "fetchSockets for worker %u failed: %d",
                    from->origin, rc);
    creq_reply(w, from, true, text, text ? strlen(text) : 0);
    free(text);
}

/* serverSideEmit: the body is u8 (answer wanted) and a BCAST frame; the reply is the JSON
 * text of the handler's answer, empty for none. */
typedef struct {
    json_t *responses;
    sio_bcast_ack_fn done;
    void *arg;
} emit_t;

static void emit_reply(creq_t *q, unsigned from, const uint8_t *body, size_t len, void *arg) {
    emit_t *st = arg;
    json_t *answer = len ? json_loadb((const char *)body, len, JSON_DECODE_ANY, NULL) : NULL;
    if (answer && json_array_append_new(st->responses, answer))
        LOG_LIMITED(LOG_LEVEL_WARN, "cluster", "answer of worker %u not kept", from);
}

static void emit_done(creq_t *q, int err, void *arg) {
    emit_t *st = arg;
    if (st->done)
        st->done(err, st->responses, st->arg);
    json_decref(st->responses);
    free(st);
}

static const creq_cb_t emit_cb = {emit_reply, NULL, emit_done};

static int w_server_emit(sio_adapter_t *a, const char *event, const char *args_json, size_t len,
                         uint32_t timeout_ms, sio_bcast_ack_fn done, void *arg) {
    wadapter_t *wa = (wadapter_t *)a;
    if (!wa->w->ch)
        return wa->wrap.local->ops->server_emit(wa->wrap.local, event, args_json, len, timeout_ms,
                                                done, arg);
    emit_t *st = calloc(1, sizeof *st);
    if (!st || !(st->responses = json_array())) {
        free(st);
        return -ENOMEM;
    }
    st->done = done;
    st->arg = arg;
    buf_t f = {0};
    sio_bcast_t b = {.event = event, .args_json = args_json, .args_len = len};
    int rc = wire_u8(&f, done != NULL);
    if (rc == 0)
        rc = proto_bcast_encode(&f, a->nsp->name, &b);
    if (rc == 0)
        rc = creq_start(wa->w, 0, CREQ_SERVER_EMIT, f.data, f.len, timeout_ms, &emit_cb, st);
    buf_free(&f);
    if (rc) {
        json_decref(st->responses);
        free(st);
    }
    return rc;
}

static void answer_server_emit(parley_worker_t *w, const creq_from_t *from, const uint8_t *body,
                               size_t len, void *arg) {
    proto_msg_t m;
    int rc = len ? decode_inner(body + 1, len - 1, PROTO_BCAST, &m) : -EINVAL;
    char *text = NULL;
    if (rc == 0) {
        sio_nsp_t *nsp = sio_server_find(w->io, m.nsp);
        json_t *args = json_loadb(m.b.args_json, m.b.args_len, 0, NULL);
        json_t *answer =
            nsp && json_is_array(args) ? sio_nsp_server_event(nsp, m.b.event, args) : NULL;
        if (answer && body[0])
            text = json_dumps(answer, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(answer);
        json_decref(args);
        proto_msg_free(&m);
    } else {
        LOG_LIMITED(LOG_LEVEL_ERROR, "cluster", "serverSideEmit not decoded: %d", rc);
    }
    creq_reply(w, from, true, text, text ? strlen(text) : 0);
    free(text);
}

/* A request whose answer says nothing. */
static void ignore_reply(creq_t *q, unsigned from, const uint8_t *body, size_t len, void *arg) {}
static void ignore_done(creq_t *q, int err, void *arg) {}
static const creq_cb_t none_cb = {ignore_reply, NULL, ignore_done};

/* Recovery on another worker: how long the asker waits for the session's worker. */
#define RESTORE_TIMEOUT_MS 5000

typedef struct {
    wadapter_t *wa;
    sio_socket_t *s;
    sio_restore_fn done;
    void *arg;
    bool answered; /* a worker lent the session */
} restore_t;

/* A lent session goes back to its worker (the asker refused it, or its client left). */
static void give_back(parley_worker_t *w, unsigned owner, const char *nsp, sio_session_t *ss) {
    buf_t b = {0};
    int rc = wire_str(&b, nsp);
    if (rc == 0)
        rc = proto_session_encode(&b, ss, time_mono_ms(), NULL, 0);
    if (rc == 0)
        rc = creq_start(w, owner, CREQ_RETURN, b.data, b.len, RESTORE_TIMEOUT_MS, &none_cb, NULL);
    buf_free(&b);
    if (rc)
        LOG_LIMITED(LOG_LEVEL_WARN, "cluster", "a recovery session could not be given back: %d",
                    rc);
    sio_session_free(ss);
}

static void restore_reply(creq_t *q, unsigned from, const uint8_t *body, size_t len, void *arg) {
    restore_t *st = arg;
    sio_socket_t *s = st->s;
    wire_reader_t r = {body, body + len, 0, false};
    sio_session_t *ss = NULL;
    sio_logged_t **missed = NULL;
    size_t nmissed = 0;
    int rc = len ? proto_session_decode(&r, time_mono_ms(), &ss, &missed, &nmissed) : 0;
    if (rc)
        LOG_LIMITED(LOG_LEVEL_ERROR, "cluster", "recovery session from worker %u not decoded: %d",
                    from, rc);
    if (ss && (st->answered || !s->connecting || !sio_recovery_allowed(s, ss))) {
        give_back(st->wa->w, from, st->wa->wrap.base.nsp->name, ss);
        ss = NULL;
    }
    if (ss) {
        st->answered = true;
        LOG_DEBUG("cluster", "session of worker %u recovered here (%zu missed packets)", from,
                  nmissed);
        st->done(s, ss, missed, nmissed, st->arg);
    }
    proto_missed_free(missed, nmissed);
}

static void restore_done(creq_t *q, int err, void *arg) {
    restore_t *st = arg;
    if (!st->answered) {
        if (err)
            LOG_LIMITED(LOG_LEVEL_INFO, "cluster", "not every worker answered for a session: %d",
                        err);
        st->done(st->s, NULL, NULL, 0, st->arg);
    }
    free(st);
}

static const creq_cb_t restore_cb = {restore_reply, NULL, restore_done};

/* A session is looked for here first, then asked of every other worker: the one that
 * kept it may not be the one whose letter starts its pid (the pid stays the same across
 * recoveries, as socket.io's client checks it to tell that it recovered). */
static void w_restore(sio_adapter_t *a, sio_socket_t *s, const char *pid, const char *offset,
                      sio_restore_fn done, void *arg) {
    wadapter_t *wa = (wadapter_t *)a;
    if (map_get(&a->nsp->sessions, pid, strlen(pid)) || !wa->w->ch) {
        wa->wrap.local->ops->restore(wa->wrap.local, s, pid, offset, done, arg);
        return;
    }
    restore_t *st = calloc(1, sizeof *st);
    buf_t b = {0};
    int rc = st ? wire_str(&b, a->nsp->name) : -ENOMEM;
    if (rc == 0)
        rc = wire_str(&b, pid);
    if (rc == 0)
        rc = wire_str(&b, offset);
    if (rc == 0) {
        *st = (restore_t){wa, s, done, arg, false};
        rc = creq_start(wa->w, 0, CREQ_RESTORE, b.data, b.len, RESTORE_TIMEOUT_MS, &restore_cb, st);
    }
    buf_free(&b);
    if (rc) {
        free(st);
        LOG_LIMITED(LOG_LEVEL_WARN, "cluster", "session not asked of the other workers: %d", rc);
        done(s, NULL, NULL, 0, arg);
    }
}

/* The session's worker: lends it, with what its client missed. */
static void answer_restore(parley_worker_t *w, const creq_from_t *from, const uint8_t *body,
                           size_t len, void *arg) {
    wire_reader_t r = {body, body + len, 0, false};
    char name[SIO_NSP_MAX + 1], pid[RAND_ID_SIZE], offset[32];
    wire_get_cstr(&r, name, sizeof name);
    wire_get_cstr(&r, pid, sizeof pid);
    wire_get_cstr(&r, offset, sizeof offset);
    sio_nsp_t *nsp = wire_done(&r) ? sio_server_find(w->io, name) : NULL;
    sio_logged_t **missed = NULL;
    size_t nmissed = 0;
    sio_session_t *ss = nsp ? sio_adapter_take(nsp, pid, offset, &missed, &nmissed) : NULL;
    buf_t b = {0};
    int rc = proto_session_encode(&b, ss, time_mono_ms(), missed, nmissed);
    free(missed);
    if (rc && ss) {
        LOG_LIMITED(LOG_LEVEL_WARN, "cluster", "recovery session not lent: %d", rc);
        sio_adapter_give_back(nsp, ss);
        ss = NULL;
        b.len = 0;
        rc = proto_session_encode(&b, NULL, 0, NULL, 0);
    } else if (ss) {
        sio_session_free(ss);
    }
    creq_reply(w, from, true, rc ? NULL : b.data, rc ? 0 : b.len);
    buf_free(&b);
}

static void answer_return(parley_worker_t *w, const creq_from_t *from, const uint8_t *body,
                          size_t len, void *arg) {
    wire_reader_t r = {body, body + len, 0, false};
    char name[SIO_NSP_MAX + 1];
    wire_get_cstr(&r, name, sizeof name);
    sio_session_t *ss = NULL;
    sio_logged_t **missed = NULL;
    size_t nmissed = 0;
    int rc = proto_session_decode(&r, time_mono_ms(), &ss, &missed, &nmissed);
    proto_missed_free(missed, nmissed);
    sio_nsp_t *nsp = rc == 0 && ss ? sio_server_find(w->io, name) : NULL;
    if (nsp)
        sio_adapter_give_back(nsp, ss);
    else if (ss)
        sio_session_free(ss);
    creq_reply(w, from, true, NULL, 0);
}

static size_t w_server_count(sio_adapter_t *a) {
    return ((wadapter_t *)a)->w->count;
}

static void w_free(sio_adapter_t *a) {
    sio_adapter_t *l = local_of(a);
    l->ops->free(l);
    free(a);
}

static const sio_adapter_ops_t worker_ops = {
    .broadcast = w_broadcast,
    .broadcast_with_ack = w_broadcast_with_ack,
    .join = sio_wrapped_join,
    .leave = sio_wrapped_leave,
    .leave_all = sio_wrapped_leave_all,
    .sockets_join = w_sockets_join,
    .sockets_leave = w_sockets_leave,
    .disconnect_sockets = w_disconnect_sockets,
    .fetch_sockets = sio_wrapped_fetch_sockets,
    .fetch_all = w_fetch_all,
    .server_emit = w_server_emit,
    .room_size = sio_wrapped_room_size,
    .persist = sio_wrapped_persist,
    .restore = w_restore,
    .purge = sio_wrapped_purge,
    .server_count = w_server_count,
    .free = w_free,
};

sio_adapter_t *cluster_adapter_wrap(sio_nsp_t *nsp, sio_adapter_t *local, void *worker) {
    wadapter_t *wa = calloc(1, sizeof *wa);
    if (!wa)
        return NULL;
    wa->wrap.base.ops = &worker_ops;
    wa->wrap.base.nsp = nsp;
    wa->wrap.local = local;
    wa->w = worker;
    return &wa->wrap.base; /* cppcheck-suppress memleak ; wa itself, freed by w_free */
}

void cluster_adapter_answer(parley_worker_t *w) {
    creq_handle(w, CREQ_BCAST_ACK, answer_bcast_ack, NULL);
    creq_handle(w, CREQ_FETCH, answer_fetch, NULL);
    creq_handle(w, CREQ_SERVER_EMIT, answer_server_emit, NULL);
    creq_handle(w, CREQ_RESTORE, answer_restore, NULL);
    creq_handle(w, CREQ_RETURN, answer_return, NULL);
}

void cluster_adapter_apply(parley_worker_t *w, const uint8_t *frame, size_t size) {
    if (!w->io)
        return; /* shutting down: its server is closed */
    proto_msg_t m;
    int rc = proto_msg_decode(frame, size, &m);
    if (rc) {
        LOG_LIMITED(LOG_LEVEL_ERROR, "cluster", "frame from another worker not decoded: %d", rc);
        return;
    }
    /* A namespace that exists there exists here too, once a client asked for it. */
    sio_nsp_t *nsp = sio_server_find(w->io, m.nsp);
    if (nsp) {
        sio_adapter_t *a = nsp->adapter;
        sio_target_t which = m.b.to;
        which.flags |= SIO_LOCAL;
        if (frame[4] == PROTO_BCAST) {
            m.b.to = which;
            rc = a->ops->broadcast(a, &m.b);
        } else if (m.op == PROTO_ROOMS_JOIN) {
            rc = a->ops->sockets_join(a, &which, m.room);
        } else if (m.op == PROTO_ROOMS_LEAVE) {
            rc = a->ops->sockets_leave(a, &which, m.room);
        } else if (m.op == PROTO_ROOMS_DISCONNECT) {
            rc = a->ops->disconnect_sockets(a, &which, m.close);
        } else {
            rc = -EINVAL;
        }
        if (rc)
            LOG_LIMITED(LOG_LEVEL_WARN, "cluster", "operation from another worker failed: %d", rc);
    }
    proto_msg_free(&m);
}
