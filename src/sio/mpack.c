/* sio/mpack.c — MessagePack ↔ jansson with binary placeholders (see mpack.h).
 *
 * Moved here from the Redis adapter when the Socket.IO msgpack parser needed the same
 * conversion: the checks before msgpack-c reads, the value mapping both ways. */
#include "sio/mpack.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
static bool check(const uint8_t *d, size_t len, size_t *pos, int depth, int depth_max) {
    if (*pos >= len || depth > depth_max)
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
    if (depth >= depth_max)
        return false; /* msgpack-c takes no deeper container, not even an empty one */
    if (n > (len - *pos) / per)
        return false;
    for (uint64_t i = 0; i < n * per; i++)
        if (!check(d, len, pos, depth + 1, depth_max))
            return false;
    return true;
}

bool sio_mp_check(const void *data, size_t len, int depth_max) {
    size_t pos = 0;
    if (depth_max > SIO_MP_DEPTH_MAX)
        depth_max = SIO_MP_DEPTH_MAX;
    return check(data, len, &pos, 0, depth_max) && pos == len;
}

/* ---- MessagePack → JSON ---- */

/* A time as JavaScript's Date.prototype.toJSON writes it; null where a Date cannot be. */
static json_t *date_text(int64_t sec, uint32_t nsec) {
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

/* A timestamp (ext -1) as a JavaScript Date. */
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
    return date_text(sec, nsec);
}

/* A bin value: a slice into the input, and its placeholder. */
static int add_bin(sio_mp_bins_t *bins, const char *p, uint32_t size, json_t **out) {
    if (bins->n >= bins->max)
        return -EINVAL;
    sio_bin_t *v = realloc(bins->v, (bins->n + 1) * sizeof *v);
    if (!v)
        return -ENOMEM;
    bins->v = v;
    v[bins->n].data = (const uint8_t *)p;
    v[bins->n].len = size;
    bins->n++;
    *out = sio_placeholder(bins->n - 1);
    return *out ? 0 : -ENOMEM;
}

/* Whether an extension value came as fixext `format` (0xd4: 1 byte, 0xd5: 2, 0xd6: 4,
 * 0xd7: 8, 0xd8: 16): msgpack-c says only type and size, but notepack.io 2 gives fixext
 * and ext of the same type different meanings. ptr points into the unpacked input (see
 * sio_mp_to_json) after the type byte, so a fixext's format byte is just before that;
 * an ext 8/16/32 has its length's last byte there, which only equals a fixext format
 * when the length is not that format's. */
static bool is_fixext(const msgpack_object *o, uint8_t format) {
    static const uint32_t sizes[] = {1, 2, 4, 8, 16};
    return format >= 0xd4 && format <= 0xd8 && o->via.ext.size == sizes[format - 0xd4] &&
           (uint8_t)o->via.ext.ptr[-2] == format;
}

bool sio_mp_is_undefined(const msgpack_object *o) {
    return o->type == MSGPACK_OBJECT_EXT && o->via.ext.type == 0 && is_fixext(o, 0xd4);
}

/* notepack.io 2 (socket.io-msgpack-parser 3): fixext 8 of type 0 a Date (milliseconds,
 * big-endian signed), any other ext of type 0 an ArrayBuffer or typed array (binary as
 * much as a bin is). notepack.io 3 (the Redis adapter's): the timestamp extension -1. */
static json_t *ext_to_json(const msgpack_object *o, sio_mp_bins_t *bins) {
    const char *p = o->via.ext.ptr;
    uint32_t size = o->via.ext.size;
    if (o->via.ext.type == -1)
        return timestamp(p, size);
    if (o->via.ext.type != 0)
        return json_null();
    if (is_fixext(o, 0xd4)) /* undefined, where JSON.stringify writes null (in an array) */
        return json_null();
    if (is_fixext(o, 0xd7)) {
        /* Beyond what a Date holds (8.64e15 ms either way of 1970) is no Date. */
        int64_t ms = (int64_t)be((const uint8_t *)p, 8);
        if (ms > INT64_C(8640000000000000) || ms < -INT64_C(8640000000000000))
            return json_null();
        int64_t sec = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
        return date_text(sec, (uint32_t)(ms - sec * 1000) * 1000000u);
    }
    if (is_fixext(o, 0xd5) || is_fixext(o, 0xd6) || is_fixext(o, 0xd8))
        return json_null();
    json_t *ph = NULL;
    return add_bin(bins, p, size, &ph) == 0 ? ph : NULL;
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

json_t *sio_mp_to_json(const msgpack_object *o, sio_mp_bins_t *bins) {
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
        return ext_to_json(o, bins);
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < o->via.array.size; i++) {
            json_t *v = sio_mp_to_json(&o->via.array.ptr[i], bins);
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
            /* As JSON.stringify does with an undefined property. */
            if (sio_mp_is_undefined(&o->via.map.ptr[i].val))
                continue;
            char *key = key_text(&o->via.map.ptr[i].key);
            /* A key twice: no JavaScript object is written so (and its first value's
             * attachments would be left without a place). */
            json_t *v = key && !json_object_get(m, key)
                            ? sio_mp_to_json(&o->via.map.ptr[i].val, bins)
                            : NULL;
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

/* ---- JSON → MessagePack ---- */

static int write_buf(void *data, const char *p, size_t len) {
    return buf_append(data, p, len);
}

static int pack_str(msgpack_packer *pk, const char *s, size_t len) {
    int rc = msgpack_pack_str(pk, len);
    return rc ? rc : msgpack_pack_str_body(pk, s, len);
}

static int pack_value(msgpack_packer *pk, const json_t *v, const sio_bin_t *bins, size_t nbins,
                      int depth, int depth_max) {
    if (depth > depth_max)
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
        if (depth >= depth_max)
            return -EINVAL; /* what sio_mp_check would refuse */
        int rc = msgpack_pack_array(pk, json_array_size(v));
        for (size_t i = 0; rc == 0 && i < json_array_size(v); i++)
            rc = pack_value(pk, json_array_get(v, i), bins, nbins, depth + 1, depth_max);
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
        if (depth >= depth_max)
            return -EINVAL;
        int rc = msgpack_pack_map(pk, json_object_size(v));
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)v, key, val) {
            if (rc == 0)
                rc = pack_str(pk, key, strlen(key));
            if (rc == 0)
                rc = pack_value(pk, val, bins, nbins, depth + 1, depth_max);
        }
        return rc;
    }
    }
    return -EINVAL;
}

int sio_mp_pack(msgpack_packer *pk, const json_t *v, const sio_bin_t *bins, size_t nbins,
                int depth_max) {
    int rc = pack_value(pk, v, bins, nbins, 0, depth_max);
    return rc > 0 ? -ENOMEM : rc;
}

void sio_mp_packer_init(msgpack_packer *pk, buf_t *out) {
    msgpack_packer_init(pk, out, write_buf);
}
