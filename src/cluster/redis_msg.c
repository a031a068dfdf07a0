/* cluster/redis_msg.c — socket.io Redis adapter messages (cluster/redis_msg.h). */
#include "cluster/redis_msg.h"

#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sio/mpack.h"
#include "sio/packet.h"

void rmsg_bins_free(rmsg_bins_t *b) {
    for (size_t i = 0; i < b->n; i++)
        free((void *)b->v[i].data);
    free(b->v);
    b->v = NULL;
    b->n = 0;
}

/* ---- MessagePack values (the conversion is sio/mpack.c's) ---- */

json_t *rmsg_unpack(const void *data, size_t len, rmsg_bins_t *bins) {
    if (!sio_mp_check(data, len, RMSG_DEPTH_MAX))
        return NULL;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    json_t *v = NULL;
    sio_mp_bins_t found = {.max = RMSG_BINS_MAX};
    if (msgpack_unpack_next(&u, data, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len)
        v = sio_mp_to_json(&u.data, &found);
    /* The bytes are slices into data: copied, the message outlives it. */
    if (v && found.n && !(bins->v = calloc(found.n, sizeof *bins->v))) {
        json_decref(v);
        v = NULL;
    }
    for (size_t i = 0; v && i < found.n; i++) {
        uint8_t *copy = malloc(found.v[i].len ? found.v[i].len : 1);
        if (!copy) {
            json_decref(v);
            v = NULL;
            break;
        }
        if (found.v[i].len)
            memcpy(copy, found.v[i].data, found.v[i].len);
        bins->v[bins->n++] = (sio_bin_t){copy, found.v[i].len};
    }
    free(found.v);
    msgpack_unpacked_destroy(&u);
    if (!v)
        rmsg_bins_free(bins);
    return v;
}

int rmsg_pack(buf_t *out, const json_t *v, const sio_bin_t *bins, size_t nbins) {
    msgpack_packer pk;
    sio_mp_packer_init(&pk, out);
    return sio_mp_pack(&pk, v, bins, nbins, RMSG_DEPTH_MAX);
}

/* ---- broadcasts ---- */

static json_t *names(const char *const *list, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        if (json_array_append_new(a, json_string(list[i]))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* A broadcast's packet {type: 2, data: [event, ...args], nsp} and opts {rooms, except,
 * flags}, as both protocols carry them. */
static int bcast_parts(const sio_bcast_t *b, const char *nsp, json_t **packet, json_t **opts) {
    json_t *args = json_loadb(b->args_json, b->args_len, 0, NULL);
    if (!json_is_array(args)) {
        json_decref(args);
        return -EINVAL;
    }
    json_t *data = json_pack("[s]", b->event);
    if (!data || json_array_extend(data, args)) {
        json_decref(args);
        json_decref(data);
        return -ENOMEM;
    }
    json_decref(args);
    json_t *flags = json_object();
    if (flags && (b->to.flags & SIO_VOLATILE))
        json_object_set_new(flags, "volatile", json_true());
    if (flags && b->ack_timeout_ms)
        json_object_set_new(flags, "timeout", json_integer(b->ack_timeout_ms));
    *packet = json_pack("{s:i,s:o,s:s}", "type", 2, "data", data, "nsp", nsp);
    *opts = json_pack("{s:o,s:o,s:o}", "rooms", names(b->to.rooms, b->to.nrooms), "except",
                      names(b->to.except, b->to.nexcept), "flags", flags);
    if (!*packet || !*opts) {
        json_decref(*packet);
        json_decref(*opts);
        return -ENOMEM;
    }
    return 0;
}

int rmsg_pack_bcast(buf_t *out, const char *uid, const char *nsp, const sio_bcast_t *b,
                    const char *request_id) {
    json_t *packet, *opts, *msg;
    int rc = bcast_parts(b, nsp, &packet, &opts);
    if (rc)
        return rc;
    if (request_id)
        msg = json_pack("{s:s,s:s,s:i,s:o,s:o}", "uid", uid, "requestId", request_id, "type", 7,
                        "packet", packet, "opts", opts);
    else
        msg = json_pack("[s,o,o]", uid, packet, opts);
    rc = msg ? rmsg_pack(out, msg, b->bins, b->nbins) : -ENOMEM;
    json_decref(msg);
    return rc;
}

int rmsg_encode(buf_t *out, const json_t *msg, const sio_bin_t *bins, size_t nbins) {
    if (nbins)
        return rmsg_pack(out, msg, bins, nbins);
    char *text = json_dumps(msg, JSON_COMPACT);
    int rc = text ? buf_append_str(out, text) : -ENOMEM;
    free(text);
    return rc;
}

int rmsg_pack_cluster_bcast(buf_t *out, const char *uid, const char *nsp, const sio_bcast_t *b,
                            const char *request_id) {
    json_t *packet, *opts;
    int rc = bcast_parts(b, nsp, &packet, &opts);
    if (rc)
        return rc;
    json_t *data = json_pack("{s:o,s:o}", "packet", packet, "opts", opts);
    if (data && request_id)
        json_object_set_new(data, "requestId", json_string(request_id));
    json_t *msg = json_pack("{s:s,s:s,s:i,s:o}", "uid", uid, "nsp", nsp, "type",
                            RMSG_CLUSTER_BROADCAST, "data", data);
    rc = msg ? rmsg_encode(out, msg, b->bins, b->nbins) : -ENOMEM;
    json_decref(msg);
    return rc;
}

json_t *rmsg_decode(const void *data, size_t len, rmsg_bins_t *bins) {
    memset(bins, 0, sizeof *bins);
    if (len && *(const char *)data == '{')
        return json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    return rmsg_unpack(data, len, bins);
}

int rmsg_rooms(json_t *list, const char ***out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (!list || json_is_null(list))
        return 0;
    if (!json_is_array(list))
        return -EINVAL;
    size_t count = json_array_size(list);
    const char **names_out = calloc(count + 1, sizeof *names_out);
    if (!names_out)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        json_t *r = json_array_get(list, i);
        /* socket.io rooms may be numbers; Parley's are their decimal text. */
        if (json_is_integer(r)) {
            char num[32];
            snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(r));
            if (json_array_set_new(list, i, json_string(num))) {
                free(names_out);
                return -ENOMEM;
            }
            r = json_array_get(list, i);
        }
        if (!json_is_string(r) || strlen(json_string_value(r)) != json_string_length(r)) {
            free(names_out);
            return -EINVAL;
        }
        names_out[i] = json_string_value(r);
    }
    *out = names_out;
    *n = count;
    return 0;
}

void rmsg_bcast_free(rmsg_bcast_t *m) {
    json_decref(m->msg);
    free(m->args);
    free(m->event);
    free((void *)m->b.to.rooms);
    free((void *)m->b.to.except);
    rmsg_bins_free(&m->bins);
    memset(m, 0, sizeof *m);
}

/* The arguments' attachments, numbered in the order the arguments hold them and moved
 * from `all` (every bin value of the message) to `mine`: a bin elsewhere in the
 * message (a field Parley does not read) is not an attachment. */
static int renumber(json_t *v, rmsg_bins_t *all, rmsg_bins_t *mine) {
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            int rc = renumber(json_array_get(v, i), all, mine);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (!json_is_object(v))
        return 0;
    json_t *num = json_object_get(v, "num");
    if (json_is_true(json_object_get(v, "_placeholder"))) {
        json_int_t i = json_integer_value(num);
        if (i < 0 || (size_t)i >= all->n || !all->v[i].data)
            return -EINVAL;
        sio_bin_t *grown = realloc(mine->v, (mine->n + 1) * sizeof *grown);
        if (!grown)
            return -ENOMEM;
        mine->v = grown;
        mine->v[mine->n] = all->v[i];
        all->v[i].data = NULL; /* moved */
        return json_integer_set(num, (json_int_t)mine->n++) ? -ENOMEM : 0;
    }
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        int rc = renumber(val, all, mine);
        if (rc)
            return rc;
    }
    return 0;
}

int rmsg_bcast_decode(const void *data, size_t len, rmsg_bcast_t *out) {
    rmsg_bins_t all;
    json_t *msg = rmsg_decode(data, len, &all);
    if (!msg) {
        memset(out, 0, sizeof *out);
        return -EINVAL;
    }
    return rmsg_bcast_from(msg, &all, out);
}

int rmsg_bcast_from(json_t *msg, rmsg_bins_t *bins, rmsg_bcast_t *out) {
    memset(out, 0, sizeof *out);
    rmsg_bins_t all = *bins;
    memset(bins, 0, sizeof *bins);
    out->msg = msg;
    json_t *uid, *packet, *opts;
    json_t *data = json_object_get(msg, "data");
    if (json_is_array(msg)) {
        uid = json_array_get(msg, 0);
        packet = json_array_get(msg, 1);
        opts = json_array_get(msg, 2);
    } else if (json_is_object(data)) {
        /* The cluster protocol's {uid, nsp, type: 3, data: {packet, opts, requestId?}}. */
        uid = json_object_get(msg, "uid");
        packet = json_object_get(data, "packet");
        opts = json_object_get(data, "opts");
        out->request_id = (char *)json_string_value(json_object_get(data, "requestId"));
        if (json_integer_value(json_object_get(msg, "type")) != RMSG_CLUSTER_BROADCAST)
            goto bad;
    } else {
        uid = json_object_get(msg, "uid");
        packet = json_object_get(msg, "packet");
        opts = json_object_get(msg, "opts");
        json_t *rid = json_object_get(msg, "requestId");
        out->request_id = (char *)json_string_value(rid);
        if (!out->request_id)
            goto bad;
    }
    json_t *nsp = json_object_get(packet, "nsp");
    json_t *pdata = json_object_get(packet, "data");
    json_t *ev = json_array_get(pdata, 0);
    json_int_t type = json_integer_value(json_object_get(packet, "type"));
    if (!json_is_string(uid) || !json_is_array(pdata) || (type != SIO_EVENT && type != 5) ||
        (nsp && !json_is_string(nsp)) || (!json_is_string(ev) && !json_is_number(ev)))
        goto bad;
    out->uid = (char *)json_string_value(uid);
    out->nsp = nsp ? (char *)json_string_value(nsp) : "/";
    if (json_is_string(ev)) {
        out->event = strdup(json_string_value(ev));
    } else {
        char num[64];
        if (json_is_integer(ev))
            snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(ev));
        else
            snprintf(num, sizeof num, "%.17g", json_real_value(ev));
        out->event = strdup(num);
    }
    json_t *args = json_array();
    int rc = !out->event || !args || json_array_extend(args, pdata) || json_array_remove(args, 0)
                 ? -ENOMEM
                 : renumber(args, &all, &out->bins);
    rmsg_bins_free(&all);
    if (rc) {
        json_decref(args);
        rmsg_bcast_free(out);
        return rc;
    }
    out->args = json_dumps(args, JSON_COMPACT);
    json_decref(args);
    const char **rooms, **except;
    size_t nrooms, nexcept;
    if (!out->args || rmsg_rooms(json_object_get(opts, "rooms"), &rooms, &nrooms))
        goto bad;
    if (rmsg_rooms(json_object_get(opts, "except"), &except, &nexcept)) {
        free(rooms);
        goto bad;
    }
    json_t *flags = json_object_get(opts, "flags");
    out->b = (sio_bcast_t){
        .event = out->event,
        .args_json = out->args,
        .args_len = strlen(out->args),
        .bins = out->bins.v,
        .nbins = out->bins.n,
        .to = {.rooms = rooms,
               .nrooms = nrooms,
               .except = except,
               .nexcept = nexcept,
               .flags = json_is_true(json_object_get(flags, "volatile")) ? SIO_VOLATILE : 0}};
    return 0;
bad:
    rmsg_bins_free(&all);
    rmsg_bcast_free(out);
    return -EINVAL;
}
