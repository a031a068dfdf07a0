/* cluster/redis_recovery.c — connection state recovery across nodes (redis_internal.h).
 *
 * A client that comes back on another node than the one that kept its session: a
 * session that is not here is asked of every Parley node (REQ_PARLEY_RESTORE, the nodes
 * counted on "<key>-parley#<nsp>#", which Node nodes do not subscribe: they keep none to
 * lend). The one that kept it takes it out of its namespace and lends it with the packets
 * of its log the client missed, as base64 of cluster/proto.h's session form; it gets it
 * back (REQ_PARLEY_RETURN) if this node's application refuses it, the client left
 * meanwhile, or another node lent it first. Both types are Parley's own: Node nodes
 * ignore them.
 *
 * Owns nothing: a lent session belongs to the socket it is restored to, or goes back. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/proto.h"
#include "cluster/redis_internal.h"
#include "util/base64.h"
#include "util/log.h"
#include "util/map.h"
#include "util/time.h"

/* A session's wire form (cluster/proto.h) as base64 text, or NULL. */
static char *session_text(const sio_session_t *ss, sio_logged_t *const *missed, size_t n) {
    buf_t b = {0};
    char *text = NULL;
    if (proto_session_encode(&b, ss, time_mono_ms(), missed, n) == 0 &&
        (text = malloc(BASE64_ENCODED_LEN(b.len) + 1)))
        text[base64_encode(b.data, b.len, text)] = '\0';
    buf_free(&b);
    return text;
}

static int session_read(const char *text, sio_session_t **ss, sio_logged_t ***missed, size_t *n) {
    size_t len = strlen(text);
    uint8_t *raw = malloc(BASE64_DECODED_MAX(len) + 1);
    long got = raw ? base64_decode(text, len, raw) : -1;
    int rc = -EINVAL;
    if (got >= 0) {
        wire_reader_t r = {raw, raw + got, 0, false};
        rc = proto_session_decode(&r, time_mono_ms(), ss, missed, n);
    }
    free(raw);
    return rc;
}

/* Another node asks for a session: lent if it is here (taken out of this node). */
void redis_recovery_lend(radapter_t *ra, json_t *req) {
    const char *pid = json_string_value(json_object_get(req, "pid"));
    const char *offset = json_string_value(json_object_get(req, "offset"));
    sio_logged_t **missed = NULL;
    size_t n = 0;
    sio_session_t *ss = pid ? sio_adapter_take(ra->wrap.base.nsp, pid, offset, &missed, &n) : NULL;
    char *text = ss ? session_text(ss, missed, n) : NULL;
    free(missed);
    if (ss && !text) {
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "a recovery session could not be lent");
        sio_adapter_give_back(ra->wrap.base.nsp, ss);
        ss = NULL;
    } else if (ss) {
        sio_session_free(ss);
    }
    redis_respond(ra, json_string_value(json_object_get(req, "uid")), REQ_PARLEY_RESTORE,
                  json_pack("{s:i,s:O?,s:s,s:s?}", "type", REQ_PARLEY_RESTORE, "requestId",
                            json_object_get(req, "requestId"), "uid", ra->r->uid, "session", text));
    free(text);
}

void redis_recovery_take_back(radapter_t *ra, json_t *req) {
    const char *to = json_string_value(json_object_get(req, "to"));
    const char *text = json_string_value(json_object_get(req, "session"));
    sio_session_t *ss = NULL;
    sio_logged_t **missed = NULL;
    size_t n = 0;
    if (!to || strcmp(to, ra->r->uid) != 0 || !text)
        return;
    if (session_read(text, &ss, &missed, &n) == 0 && ss)
        sio_adapter_give_back(ra->wrap.base.nsp, ss);
    proto_missed_free(missed, n);
}

/* A lent session goes back to its node (the application refused it, or its client left). */
static void give_back(radapter_t *ra, const char *lender, sio_session_t *ss) {
    char *text = session_text(ss, NULL, 0);
    if (text)
        redis_request_send(ra, REQ_PARLEY_RETURN,
                           json_pack("{s:s,s:i,s:s,s:s}", "uid", ra->r->uid, "type",
                                     REQ_PARLEY_RETURN, "to", lender, "session", text));
    else
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "a recovery session could not be given back");
    free(text);
    sio_session_free(ss);
}

/* An answer to a recovery request of ours. */
void redis_recovery_on_lent(rreq_t *q, json_t *resp) {
    const char *text = json_string_value(json_object_get(resp, "session"));
    const char *lender = json_string_value(json_object_get(resp, "uid"));
    sio_session_t *ss = NULL;
    sio_logged_t **missed = NULL;
    size_t n = 0;
    if (text && lender && session_read(text, &ss, &missed, &n))
        LOG_LIMITED(LOG_LEVEL_ERROR, "redis", "recovery session from node %s not decoded", lender);
    if (ss && (q->lent || !q->s->connecting || !sio_recovery_allowed(q->s, ss))) {
        give_back(q->ra, lender, ss);
        ss = NULL;
    }
    if (ss) {
        q->lent = true;
        LOG_DEBUG("redis", "session of node %s recovered here (%zu missed packets)", lender, n);
        q->restore_done(q->s, ss, missed, n, q->arg);
    }
    proto_missed_free(missed, n);
}

/* Connection state recovery across nodes: a session that is not here is asked of every
 * Parley node (Node nodes keep none to lend); the one that kept it lends it with the
 * packets of its log the client missed, and gets it back if this node's application
 * refuses it or the client left meanwhile. */
void redis_recovery_restore(sio_adapter_t *a, sio_socket_t *s, const char *pid, const char *offset,
                            sio_restore_fn done, void *arg) {
    radapter_t *ra = (radapter_t *)a;
    rreq_t *q = NULL;
    if (!map_get(&a->nsp->sessions, pid, strlen(pid)) && redis_pub_ctx(ra->r, ra->parley_channel) &&
        (q = redis_req_new(ra, REQ_PARLEY_RESTORE, arg))) {
        q->s = s;
        q->restore_done = done;
        json_t *req = json_pack("{s:s,s:s,s:i,s:s,s:s?}", "uid", ra->r->uid, "requestId", q->id,
                                "type", REQ_PARLEY_RESTORE, "pid", pid, "offset", offset);
        int rc = req ? redis_request_bytes(ra, REQ_PARLEY_RESTORE, req, &q->msg) : -ENOMEM;
        if (rc == 0)
            rc = redis_req_send_counting(q, 0, ra->parley_channel);
        if (rc)
            redis_req_end(q, rc); /* its restore_done: no session */
        return;
    }
    sio_wrapped_restore(a, s, pid, offset, done, arg);
}
