/* cluster/redis_msg.c — socket.io Redis adapter messages (cluster/redis_msg.h). */
#include "cluster/redis_msg.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sio/packet.h"

void rmsg_bins_free(rmsg_bins_t *b) {
    for (size_t i = 0; i < b->n; i++)
        free((void *)b->v[i].data);
    free(b->v);
    b->v = NULL;
    b->n = 0;
}

/* ---- checking before msgpack-c reads ---- */

static bool need(size_t len, size_t *pos, size_t n) {
    if (len - *pos < n)
        return false;
    *pos += n;
    return true;
}

static uint64_t be(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Walks one value: every length within the bytes left, every container count at most
 * the bytes left (each element takes one at least), nesting bounded. msgpack-c
 * allocates a container's elements from its header alone; this is what keeps a
 * five-byte message from asking it for gigabytes. */
static bool check(const uint8_t *d, size_t len, size_t *pos, int depth) {
    if (*pos >= len || depth > RMSG_DEPTH_MAX)
        return false;
    uint8_t t = d[(*pos)++];
    uint64_t n = 0, per = 0; /* a container: n entries of `per` values */
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3)
        return true;
    if ((t & 0xe0) == 0xa0)
        return need(len, pos, t & 0x1f);
    if ((t & 0xf0) == 0x90) {
        n = t & 0x0f;
        per = 1;
    } else if ((t & 0xf0) == 0x80) {
        n = t & 0x0f;
        per = 2;
    } else {
        switch (t) {
        case 0xcc:
        case 0xd0:
            return need(len, pos, 1);
        case 0xcd:
        case 0xd1:
            return need(len, pos, 2);
        case 0xca:
        case 0xce:
        case 0xd2:
            return need(len, pos, 4);
        case 0xcb:
        case 0xcf:
        case 0xd3:
            return need(len, pos, 8);
        case 0xd4:
            return need(len, pos, 2);
        case 0xd5:
            return need(len, pos, 3);
        case 0xd6:
            return need(len, pos, 5);
        case 0xd7:
            return need(len, pos, 9);
        case 0xd8:
            return need(len, pos, 17);
        case 0xc4:
        case 0xd9:
        case 0xc5:
        case 0xda:
        case 0xc6:
        case 0xdb: {
            size_t w = t == 0xc4 || t == 0xd9 ? 1 : t == 0xc5 || t == 0xda ? 2 : 4;
            if (len - *pos < w)
                return false;
            uint64_t l = be(d + *pos, w);
            *pos += w;
            return l <= len - *pos && need(len, pos, (size_t)l);
        }
        case 0xc7:
        case 0xc8:
        case 0xc9: {
            size_t w = t == 0xc7 ? 1 : t == 0xc8 ? 2 : 4;
            if (len - *pos < w)
                return false;
            uint64_t l = be(d + *pos, w);
            *pos += w;
            return l < len - *pos && need(len, pos, (size_t)l + 1);
        }
        case 0xdc:
        case 0xdd:
        case 0xde:
        case 0xdf: {
            size_t w = t == 0xdc || t == 0xde ? 2 : 4;
            if (len - *pos < w)
                return false;
            n = be(d + *pos, w);
            *pos += w;
            per = t >= 0xde ? 2 : 1;
            break;
        }
        default:
            return false; /* 0xc1: never used */
        }
    }
    if (n > (len - *pos) / per)
        return false;
    for (uint64_t i = 0; i < n * per; i++)
        if (!check(d, len, pos, depth + 1))
            return false;
    return true;
}

/* ---- MessagePack → JSON ---- */

/* A timestamp (ext -1) as JavaScript's Date.prototype.toJSON writes it. */
static json_t *timestamp(const char *p, uint32_t size) {
    const uint8_t *u = (const uint8_t *)p;
    int64_t sec;
    uint32_t nsec = 0;
    if (size == 4) {
        sec = (int64_t)be(u, 4);
    } else if (size == 8) {
        uint64_t v = be(u, 8);
        nsec = (uint32_t)(v >> 34);
        sec = (int64_t)(v & 0x3ffffffffULL);
    } else if (size == 12) {
        nsec = (uint32_t)be(u, 4);
        sec = (int64_t)be(u + 4, 8);
    } else {
        return json_null();
    }
    time_t t = (time_t)sec;
    struct tm tm;
    char text[64];
    if (nsec >= 1000000000u || !gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 ||
        tm.tm_year + 1900 < 0)
        return json_null();
    snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, nsec / 1000000u);
    return json_string(text);
}

static json_t *to_json(const msgpack_object *o, rmsg_bins_t *bins);

static int add_bin(rmsg_bins_t *bins, const char *p, uint32_t size, json_t **out) {
    if (bins->n >= RMSG_BINS_MAX)
        return -EINVAL;
    sio_bin_t *v = realloc(bins->v, (bins->n + 1) * sizeof *v);
    if (!v)
        return -ENOMEM;
    bins->v = v;
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return -ENOMEM;
    if (size)
        memcpy(copy, p, size);
    v[bins->n].data = copy; /* bins owns it from here */
    v[bins->n].len = size;
    bins->n++;
    *out = sio_placeholder(bins->n - 1);
    return *out ? 0 : -ENOMEM;
}

static char *key_text(const msgpack_object *k) {
    char num[32];
    if (k->type == MSGPACK_OBJECT_STR) {
        /* An empty string's pointer may be NULL. */
        if (k->via.str.size == 0)
            return strdup("");
        if (memchr(k->via.str.ptr, '\0', k->via.str.size))
            return NULL;
        return strndup(k->via.str.ptr, k->via.str.size);
    }
    if (k->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        snprintf(num, sizeof num, "%" PRIu64, k->via.u64);
    else if (k->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        snprintf(num, sizeof num, "%" PRId64, k->via.i64);
    else
        return NULL;
    return strdup(num);
}

static json_t *to_json(const msgpack_object *o, rmsg_bins_t *bins) {
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return o->via.u64 <= INT64_MAX ? json_integer((json_int_t)o->via.u64)
                                       : json_real((double)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        /* JSON has no NaN or infinity: JSON.stringify writes null. */
        return isfinite(o->via.f64) ? json_real(o->via.f64) : json_null();
    case MSGPACK_OBJECT_STR:
        /* Checked: a string goes on to clients in WebSocket text frames, which must be
         * UTF-8 (a client closes the connection on anything else). */
        return o->via.str.size ? json_stringn(o->via.str.ptr, o->via.str.size) : json_string("");
    case MSGPACK_OBJECT_BIN: {
        json_t *p = NULL;
        return add_bin(bins, o->via.bin.ptr, o->via.bin.size, &p) == 0 ? p : NULL;
    }
    case MSGPACK_OBJECT_EXT:
        return o->via.ext.type == -1 ? timestamp(o->via.ext.ptr, o->via.ext.size) : json_null();
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < o->via.array.size; i++) {
            json_t *v = to_json(&o->via.array.ptr[i], bins);
            if (!v || json_array_append_new(a, v)) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; m && i < o->via.map.size; i++) {
            char *key = key_text(&o->via.map.ptr[i].key);
            /* A key twice: no JavaScript object is written so (and its first value's
             * attachments would be left without a place). */
            json_t *v =
                key && !json_object_get(m, key) ? to_json(&o->via.map.ptr[i].val, bins) : NULL;
            int rc = v ? json_object_set_new(m, key, v) : -1;
            free(key);
            if (rc) {
                json_decref(m);
                return NULL;
            }
        }
        /* One shaped like a placeholder would take an attachment's place. */
        if (m && json_object_get(m, "_placeholder")) {
            json_decref(m);
            return NULL;
        }
        return m;
    }
    }
    return NULL;
}

json_t *rmsg_unpack(const void *data, size_t len, rmsg_bins_t *bins) {
    size_t pos = 0;
    if (!check(data, len, &pos, 0) || pos != len)
        return NULL;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    json_t *v = NULL;
    if (msgpack_unpack_next(&u, data, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len)
        v = to_json(&u.data, bins);
    msgpack_unpacked_destroy(&u);
    if (!v)
        rmsg_bins_free(bins);
    return v;
}

/* ---- JSON → MessagePack ---- */

static int write_buf(void *data, const char *p, size_t len) {
    return buf_append(data, p, len);
}

static int pack_str(msgpack_packer *pk, const char *s, size_t len) {
    int rc = msgpack_pack_str(pk, len);
    return rc ? rc : msgpack_pack_str_body(pk, s, len);
}

static int pack_value(msgpack_packer *pk, const json_t *v, const sio_bin_t *bins, size_t nbins,
                      int depth) {
    if (depth > RMSG_DEPTH_MAX)
        return -EINVAL;
    switch (json_typeof(v)) {
    case JSON_NULL:
        return msgpack_pack_nil(pk);
    case JSON_TRUE:
        return msgpack_pack_true(pk);
    case JSON_FALSE:
        return msgpack_pack_false(pk);
    case JSON_INTEGER:
        return msgpack_pack_int64(pk, json_integer_value(v));
    case JSON_REAL:
        return msgpack_pack_double(pk, json_real_value(v));
    case JSON_STRING:
        return pack_str(pk, json_string_value(v), json_string_length(v));
    case JSON_ARRAY: {
        int rc = msgpack_pack_array(pk, json_array_size(v));
        for (size_t i = 0; rc == 0 && i < json_array_size(v); i++)
            rc = pack_value(pk, json_array_get(v, i), bins, nbins, depth + 1);
        return rc;
    }
    case JSON_OBJECT: {
        json_t *num = json_object_get(v, "num");
        if (json_object_size(v) == 2 && json_is_true(json_object_get(v, "_placeholder")) &&
            json_is_integer(num)) {
            json_int_t i = json_integer_value(num);
            if (i < 0 || (size_t)i >= nbins)
                return -EINVAL;
            int rc = msgpack_pack_bin(pk, bins[i].len);
            return rc ? rc : msgpack_pack_bin_body(pk, bins[i].data, bins[i].len);
        }
        int rc = msgpack_pack_map(pk, json_object_size(v));
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)v, key, val) {
            if (rc == 0)
                rc = pack_str(pk, key, strlen(key));
            if (rc == 0)
                rc = pack_value(pk, val, bins, nbins, depth + 1);
        }
        return rc;
    }
    }
    return -EINVAL;
}

int rmsg_pack(buf_t *out, const json_t *v, const sio_bin_t *bins, size_t nbins) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, write_buf);
    int rc = pack_value(&pk, v, bins, nbins, 0);
    return rc > 0 ? -ENOMEM : rc;
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
