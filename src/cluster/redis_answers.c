/* cluster/redis_answers.c — the other nodes' requests, answered here (redis_internal.h).
 *
 * What another socket.io node asks: the ids of the sockets here and the rooms they are
 * in (REQ_SOCKETS, REQ_ALL_ROOMS), fetchSockets, sockets to join, leave or disconnect,
 * serverSideEmit, a broadcast with acknowledgements (its count of recipients, then each
 * answer as it comes), and Parley's recovery requests (redis_recovery.c's). Each is done
 * on this node's in-process adapter with SIO_LOCAL, so that nothing goes round again, and
 * answered on the common response channel, or in sharded mode on the asker's own channel
 * in the cluster form. A request of our own comes back to us too, and is ignored.
 *
 * Owns nothing past a call but the state of a broadcast with acks still being answered
 * (remote_acks_t, freed once its count and every answer are sent). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/redis_internal.h"
#include "util/log.h"

/* An answer (classic form, taken over) to node `to` for a request of type `type`: on the
 * common response channel, or in sharded mode in the cluster form on the asker's
 * channel; binary attachments make it MessagePack. */
static void respond_with(radapter_t *ra, const char *to, int type, json_t *msg,
                         const sio_bin_t *bins, size_t nbins) {
    buf_t b = {0};
    int rc;
    if (!ra->r->sharded) {
        /* The Node adapter sends acknowledgements in MessagePack, the rest in JSON. */
        rc = !msg                                 ? -ENOMEM
             : nbins || type == REQ_BROADCAST_ACK ? rmsg_pack(&b, msg, bins, nbins)
                                                  : rmsg_encode(&b, msg, NULL, 0);
        json_decref(msg);
        if (rc == 0)
            redis_publish(ra->r, ra->resp_channel, b.data, b.len);
    } else {
        json_t *c = msg ? redis_to_cluster(ra, type, true, msg) : NULL;
        rc = c && to ? rmsg_encode(&b, c, bins, nbins) : -ENOMEM;
        json_decref(c);
        size_t n = strlen(ra->channel) + (to ? strlen(to) : 0) + 2;
        char *ch = rc == 0 ? malloc(n) : NULL;
        if (ch) {
            snprintf(ch, n, "%s%s#", ra->channel, to);
            redis_publish(ra->r, ch, b.data, b.len);
        }
        rc = rc ? rc : ch ? 0 : -ENOMEM;
        free(ch);
    }
    if (rc)
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "an answer to node %s is lost: %d", to ? to : "?", rc);
    buf_free(&b);
}

void redis_respond(radapter_t *ra, const char *to, int type, json_t *msg) {
    respond_with(ra, to, type, msg, NULL, 0);
}

/* ---- what is asked ---- */

static void add_id(sio_socket_t *s, void *arg) {
    json_array_append_new(arg, json_string(s->id));
}

/* The sockets' ids in `rooms` (all when empty): request SOCKETS. */
static json_t *local_ids(radapter_t *ra, json_t *rooms_json) {
    const char **rooms;
    size_t n;
    json_t *ids = json_array();
    if (!ids || rmsg_rooms(rooms_json, &rooms, &n)) {
        json_decref(ids);
        return NULL;
    }
    sio_target_t t = {.rooms = rooms, .nrooms = n};
    ra->wrap.local->ops->fetch_sockets(ra->wrap.local, &t, add_id, ids);
    free(rooms);
    return ids;
}

/* Every room with a member here, each socket's own included (socket.io's rooms map). */
static json_t *local_rooms(radapter_t *ra) {
    sio_nsp_t *nsp = ra->wrap.base.nsp;
    json_t *all = json_array();
    map_entry_t *e;
    for (size_t pos = 0; all && map_next(&nsp->rooms, &pos, &e);)
        json_array_append_new(all, json_string(((sio_room_t *)e->value)->name));
    for (uint32_t i = 0; all && i < nsp->nsockets; i++)
        if (nsp->sockets[i]->connected)
            json_array_append_new(all, json_string(nsp->sockets[i]->id));
    return all;
}

static int target_of(json_t *opts, sio_target_t *t) {
    memset(t, 0, sizeof *t);
    const char **rooms, **except;
    size_t nrooms, nexcept;
    if (rmsg_rooms(json_object_get(opts, "rooms"), &rooms, &nrooms))
        return -EINVAL;
    if (rmsg_rooms(json_object_get(opts, "except"), &except, &nexcept)) {
        free(rooms);
        return -EINVAL;
    }
    *t = (sio_target_t){rooms, nrooms, except, nexcept, SIO_LOCAL};
    return 0;
}

static void target_free(sio_target_t *t) {
    free((void *)t->rooms);
    free((void *)t->except);
}

/* socketsJoin / socketsLeave / disconnectSockets from another node (with opts), or the
 * same for one socket of this node (with sid), answered then. */
static void on_remote_op(radapter_t *ra, int type, json_t *req) {
    json_t *opts = json_object_get(req, "opts");
    bool close = json_is_true(json_object_get(req, "close"));
    const char **rooms = NULL;
    size_t nrooms = 0;
    if (opts && rmsg_rooms(json_object_get(req, "rooms"), &rooms, &nrooms))
        return;
    if (opts) {
        sio_target_t t;
        if (target_of(opts, &t) == 0) {
            for (size_t i = 0; i < nrooms; i++) {
                if (type == REQ_REMOTE_JOIN)
                    ra->wrap.local->ops->sockets_join(ra->wrap.local, &t, rooms[i]);
                else
                    ra->wrap.local->ops->sockets_leave(ra->wrap.local, &t, rooms[i]);
            }
            if (type == REQ_REMOTE_DISCONNECT)
                ra->wrap.local->ops->disconnect_sockets(ra->wrap.local, &t, close);
            target_free(&t);
        }
        free(rooms);
        return;
    }
    free(rooms);
    const char *sid = json_string_value(json_object_get(req, "sid"));
    const char *room = json_string_value(json_object_get(req, "room"));
    sio_socket_t *s = sid ? sio_nsp_find_socket(ra->wrap.base.nsp, sid) : NULL;
    if (!s)
        return;
    if (type == REQ_REMOTE_JOIN && room)
        sio_socket_join(s, room);
    else if (type == REQ_REMOTE_LEAVE && room)
        sio_socket_leave(s, room);
    else if (type == REQ_REMOTE_DISCONNECT)
        sio_socket_disconnect(s, close);
    redis_respond(ra, json_string_value(json_object_get(req, "uid")), type,
                  json_pack("{s:O?}", "requestId", json_object_get(req, "requestId")));
}

/* What a broadcast with acks from another node owes it: the count, then each answer. */
typedef struct {
    radapter_t *ra;
    char id[64];
    char to[64]; /* the asking node's uid */
    size_t expected, received;
    bool counted;
} remote_acks_t;

static void remote_count(size_t n, bool last, void *arg) {
    remote_acks_t *ra_ = arg;
    ra_->expected += n;
    if (!last)
        return;
    ra_->counted = true;
    redis_respond(ra_->ra, ra_->to, REQ_BROADCAST_CLIENT_COUNT,
                  json_pack("{s:i,s:s,s:I}", "type", REQ_BROADCAST_CLIENT_COUNT, "requestId",
                            ra_->id, "clientCount", (json_int_t)ra_->expected));
    if (ra_->received == ra_->expected)
        free(ra_);
}

static void remote_ack(sio_socket_t *s, int err, const sio_payload_t *p, void *arg) {
    remote_acks_t *st = arg;
    st->received++;
    /* socket.io passes on an answer's first argument; a recipient that left says nothing. */
    if (err == 0 && p) {
        json_t *first = json_array_get(p->args, 0);
        respond_with(st->ra, st->to, REQ_BROADCAST_ACK,
                     json_pack("{s:i,s:s,s:O?}", "type", REQ_BROADCAST_ACK, "requestId", st->id,
                               "packet", first),
                     p->bins, p->nbins);
    }
    if (st->counted && st->received == st->expected)
        free(st);
}

/* A broadcast with acks from another node (m: read from the request, freed here). */
static void on_broadcast_request(radapter_t *ra, const rmsg_bcast_t *m_) {
    rmsg_bcast_t m = *m_;
    remote_acks_t *st = NULL;
    if (strcmp(m.uid, ra->r->uid) != 0 && strcmp(m.nsp, ra->wrap.base.nsp->name) == 0 &&
        strlen(m.request_id) < sizeof st->id && strlen(m.uid) < sizeof st->to &&
        (st = calloc(1, sizeof *st))) {
        st->ra = ra;
        snprintf(st->id, sizeof st->id, "%s", m.request_id);
        snprintf(st->to, sizeof st->to, "%s", m.uid);
        m.b.to.flags |= SIO_LOCAL;
        sio_nsp_t *nsp = ra->wrap.base.nsp;
        int rc = ra->wrap.local->ops->broadcast_with_ack(ra->wrap.local, &m.b, nsp->next_ack_id++,
                                                         remote_count, remote_ack, st);
        if (rc) {
            free(st);
            LOG_LIMITED(LOG_LEVEL_WARN, "redis", "broadcast with acks from another node: %d", rc);
        }
    }
    rmsg_bcast_free(&m);
}

/* A request from another node (classic form; req and bins borrowed). */
void redis_on_request(radapter_t *ra, json_t *req, rmsg_bins_t *bins) {
    json_t *type_j = json_object_get(req, "type");
    const char *uid = json_string_value(json_object_get(req, "uid"));
    if (!json_is_integer(type_j)) {
        LOG_LIMITED(LOG_LEVEL_WARN, "redis", "malformed request ignored");
        return;
    }
    int type = (int)json_integer_value(type_j);
    json_t *rid = json_object_get(req, "requestId");
    bool mine = uid && strcmp(uid, ra->r->uid) == 0;
    sio_nsp_t *nsp = ra->wrap.base.nsp;
    if (mine) {
        /* Our own requests come back to us too. */
    } else if (type == REQ_SOCKETS) {
        redis_respond(ra, uid, type,
                      json_pack("{s:O?,s:o}", "requestId", rid, "sockets",
                                local_ids(ra, json_object_get(req, "rooms"))));
    } else if (type == REQ_ALL_ROOMS) {
        redis_respond(ra, uid, type,
                      json_pack("{s:O?,s:o}", "requestId", rid, "rooms", local_rooms(ra)));
    } else if (type == REQ_REMOTE_JOIN || type == REQ_REMOTE_LEAVE ||
               type == REQ_REMOTE_DISCONNECT) {
        on_remote_op(ra, type, req);
    } else if (type == REQ_REMOTE_FETCH) {
        sio_target_t t;
        json_t *sockets = NULL;
        if (target_of(json_object_get(req, "opts"), &t) == 0) {
            ra->wrap.local->ops->fetch_all(ra->wrap.local, &t, 0, redis_keep_local, &sockets);
            target_free(&t);
        }
        redis_respond(
            ra, uid, type,
            json_pack("{s:O?,s:o}", "requestId", rid, "sockets", sockets ? sockets : json_array()));
    } else if (type == REQ_SERVER_SIDE_EMIT) {
        json_t *data = json_object_get(req, "data");
        const char *event = json_string_value(json_array_get(data, 0));
        json_t *args = json_array();
        json_t *answer = NULL;
        if (event && args && json_array_extend(args, data) == 0 && json_array_remove(args, 0) == 0)
            answer = sio_nsp_server_event(nsp, event, args);
        json_decref(args);
        /* Asked for an answer: one, even without a handler (null), or the asker waits. */
        if (rid)
            redis_respond(ra, uid, type,
                          json_pack("{s:i,s:O,s:o}", "type", REQ_SERVER_SIDE_EMIT, "requestId", rid,
                                    "data", answer ? answer : json_null()));
        else
            json_decref(answer);
    } else if (type == REQ_BROADCAST) {
        rmsg_bcast_t m;
        if (rmsg_bcast_from(json_incref(req), bins, &m) == 0)
            on_broadcast_request(ra, &m);
        else
            LOG_LIMITED(LOG_LEVEL_WARN, "redis", "malformed broadcast request ignored");
    } else if (type == REQ_PARLEY_RESTORE) {
        redis_recovery_lend(ra, req);
    } else if (type == REQ_PARLEY_RETURN) {
        redis_recovery_take_back(ra, req);
    }
}
