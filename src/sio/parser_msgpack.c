/* sio/parser_msgpack.c — socket.io-msgpack-parser 3 (see parser.h).
 *
 * The reference (socket.io-msgpack-parser with notepack.io) writes a packet object as it
 * is: {type, nsp, data, id}, one MessagePack map in one binary Engine.IO message (over
 * long-polling a "b" + base64 packet of an EIO4 payload). There is no attachment step:
 * Buffers are MessagePack bin values inside data, and the types are 0..4 only. Its
 * decoder (checkPacket) wants an integer type 0..4, a string nsp, a payload shaped for
 * the type and an integer id if any; this one wants the same and, beyond it, what the
 * json parser wants of every packet (sio_packet_validate: an event name, no reserved
 * name) so that both deliver the same packets to the same handlers.
 *
 * Encoding parses the arguments' JSON text once per emit, however many recipients (the
 * adapter carries JSON text: it is what the json parser splices untouched and what the
 * cluster forwards); the map is then written straight into one Engine.IO message that
 * every recipient queues by reference. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sio/mpack.h"
#include "sio/parser.h"
#include "util/utf8.h"

/* Containers an outgoing payload may nest: jansson's own parse limit, so whatever the
 * arguments' JSON text parses to can be written. */
#define SIO_MP_PACK_DEPTH_MAX 2048

/* ---- decoding ---------------------------------------------------------------- */

static bool key_is(const msgpack_object *k, const char *name) {
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

/* The map's four known fields; false when one is given twice. */
typedef struct {
    const msgpack_object *type, *nsp, *data, *id;
} fields_t;

static bool read_fields(const msgpack_object_map *m, fields_t *f) {
    static const char *const names[] = {"type", "nsp", "data", "id"};
    const msgpack_object **slots[] = {&f->type, &f->nsp, &f->data, &f->id};
    *f = (fields_t){0};
    for (uint32_t i = 0; i < m->size; i++) {
        for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
            /* notepack.io 2 writes a field set to undefined ("data" of a CONNECT
             * without auth): as good as absent. */
            if (!key_is(&m->ptr[i].key, names[k]) || sio_mp_is_undefined(&m->ptr[i].val))
                continue;
            if (*slots[k])
                return false;
            *slots[k] = &m->ptr[i].val;
        }
    }
    return true;
}

static bool read_nsp(const msgpack_object *o, char out[SIO_NSP_MAX + 1]) {
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return false;
    const char *s = o->via.str.ptr;
    uint32_t n = o->via.str.size;
    /* A NUL would make two names compare equal as C strings; the name goes out again in
     * replies and logs, so it must be UTF-8. */
    if (n == 0 || n > SIO_NSP_MAX || s[0] != '/' || memchr(s, '\0', n) ||
        !utf8_is_valid((const uint8_t *)s, n))
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

/* Fills p (reset by the caller) from the map; the payload is converted with its buffers
 * copied into p->bins. Returns 0 or -1. */
static int read_packet(const sio_decoder_t *d, const msgpack_object *root, sio_packet_t *p) {
    fields_t f;
    if (root->type != MSGPACK_OBJECT_MAP || !read_fields(&root->via.map, &f))
        return -1;
    if (!f.type || f.type->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        f.type->via.u64 > SIO_CONNECT_ERROR)
        return -1;
    p->type = (sio_packet_type_t)f.type->via.u64;
    if (!read_nsp(f.nsp, p->nsp))
        return -1;
    if (f.id) {
        if (f.id->type != MSGPACK_OBJECT_POSITIVE_INTEGER || f.id->via.u64 > SIO_ID_MAX)
            return -1;
        p->id = (int64_t)f.id->via.u64;
    }
    if (!f.data)
        return 0;
    sio_mp_bins_t found = {.max = d->max_attachments};
    p->data = sio_mp_to_json(f.data, &found);
    int rc = p->data ? 0 : -1;
    /* Buffers belong in events and acks; a CONNECT's auth holding one has nowhere to
     * take it (the json parser refuses them there too). */
    if (rc == 0 && found.n && p->type != SIO_EVENT && p->type != SIO_ACK)
        rc = -1;
    if (rc == 0 && found.n) {
        p->type = p->type == SIO_EVENT ? SIO_BINARY_EVENT : SIO_BINARY_ACK;
        if (!(p->bins = calloc(found.n, sizeof *p->bins)))
            rc = -1;
        /* Copied: the message lives in the connection's read buffer, the packet may
         * outlive it (and is shared by reference when forwarded). */
        for (size_t i = 0; rc == 0 && i < found.n; i++) {
            if (!(p->bins[i] = rcbuf_new(found.v[i].data, found.v[i].len)))
                rc = -1;
            p->nbins = i + 1;
        }
    }
    free(found.v);
    return rc;
}

sio_decode_result_t sio_msgpack_decode(sio_decoder_t *d, const uint8_t *data, size_t len,
                                       bool binary, sio_packet_t *out) {
    /* A text message is what a client of the json parser sends first ("0"): refused
     * like any malformed packet, so the connection is closed with "parse error". */
    if (!binary || !sio_mp_check(data, len, SIO_MP_DEPTH_MAX))
        return SIO_DECODE_ERROR;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    sio_packet_t p = {.type = SIO_CONNECT, .nsp = "/", .id = -1};
    int rc = msgpack_unpack_next(&u, (const char *)data, len, &off) == MSGPACK_UNPACK_SUCCESS &&
                     off == len
                 ? read_packet(d, &u.data, &p)
                 : -1;
    msgpack_unpacked_destroy(&u);
    if (rc != 0 || !sio_packet_validate(&p)) {
        sio_packet_clear(&p);
        return SIO_DECODE_ERROR;
    }
    *out = p;
    return SIO_DECODE_PACKET;
}

/* ---- encoding ---------------------------------------------------------------- */

static int pack_str(msgpack_packer *pk, const char *s, size_t len) {
    int rc = msgpack_pack_str(pk, len);
    return rc ? rc : msgpack_pack_str_body(pk, s, len);
}

/* The map {type, nsp, data?, id?} appended to out; see sio_msgpack_encode_packet. */
static int pack_packet(buf_t *out, sio_packet_type_t type, const char *nsp, int64_t id,
                       const json_t *data, const sio_bin_t *bins, size_t nbins) {
    if (type == SIO_BINARY_EVENT)
        type = SIO_EVENT;
    else if (type == SIO_BINARY_ACK)
        type = SIO_ACK;
    if (type < SIO_CONNECT || type > SIO_CONNECT_ERROR ||
        (nbins && type != SIO_EVENT && type != SIO_ACK))
        return -EINVAL;
    if (!nsp || !nsp[0])
        nsp = "/";
    size_t nsp_len = strnlen(nsp, SIO_NSP_MAX + 1);
    if (nsp[0] != '/' || nsp_len > SIO_NSP_MAX || id > SIO_ID_MAX)
        return -EINVAL;

    size_t mark = out->len;
    msgpack_packer pk;
    sio_mp_packer_init(&pk, out);
    int rc = msgpack_pack_map(&pk, 2 + (data ? 1 : 0) + (id >= 0 ? 1 : 0));
    if (rc == 0)
        rc = pack_str(&pk, "type", 4);
    if (rc == 0)
        rc = msgpack_pack_int(&pk, (int)type);
    if (rc == 0)
        rc = pack_str(&pk, "nsp", 3);
    if (rc == 0)
        rc = pack_str(&pk, nsp, nsp_len);
    if (rc == 0 && data) {
        rc = pack_str(&pk, "data", 4);
        if (rc == 0)
            rc = sio_mp_pack(&pk, data, bins, nbins, SIO_MP_PACK_DEPTH_MAX);
    }
    if (rc == 0 && id >= 0) {
        rc = pack_str(&pk, "id", 2);
        if (rc == 0)
            rc = msgpack_pack_int64(&pk, id);
    }
    if (rc) {
        out->len = mark;
        return rc == -EINVAL ? -EINVAL : -ENOMEM;
    }
    return 0;
}

int sio_msgpack_encode_packet(buf_t *out, const sio_packet_t *p) {
    sio_bin_t *bins = p->nbins ? malloc(p->nbins * sizeof *bins) : NULL;
    if (p->nbins && !bins)
        return -ENOMEM;
    for (size_t i = 0; i < p->nbins; i++)
        bins[i] = (sio_bin_t){p->bins[i]->data, p->bins[i]->len};
    int rc = pack_packet(out, p->type, p->nsp, p->id, p->data, bins, p->nbins);
    free(bins);
    return rc;
}

/* One binary Engine.IO message holding what b holds, in a new one-element array. */
static int one_message(const buf_t *b, eio_msg_t ***msgs) {
    eio_msg_t **a = calloc(1, sizeof *a);
    if (!a || !(a[0] = eio_msg_new(EIO_MESSAGE, true, b->data, b->len))) {
        free(a);
        return -ENOMEM;
    }
    *msgs = a;
    return 1;
}

static int mp_encode_event(const sio_event_out_t *e, eio_msg_t ***msgs) {
    /* The one parse per emit (see the top of the file). */
    json_t *data = json_loadb(e->args_json, e->args_len, JSON_ALLOW_NUL, NULL);
    if (!json_is_array(data)) {
        json_decref(data);
        return -EINVAL;
    }
    /* The name and offset go out as the json parser writes them: the caller's bytes. */
    int rc = e->event ? json_array_insert_new(data, 0, json_string_nocheck(e->event)) : 0;
    if (rc == 0 && e->offset)
        rc = json_array_append_new(data, json_string_nocheck(e->offset));
    buf_t b = {0};
    if (rc == 0)
        rc = pack_packet(&b, e->type, e->nsp, e->id, data, e->bins, e->nbins);
    else
        rc = -ENOMEM;
    json_decref(data);
    if (rc == 0)
        rc = one_message(&b, msgs);
    buf_free(&b);
    return rc;
}

static int mp_encode_control(sio_packet_type_t type, const char *nsp, const json_t *data,
                             eio_msg_t **msg) {
    buf_t b = {0};
    eio_msg_t **msgs = NULL;
    int rc = pack_packet(&b, type, nsp, -1, data, NULL, 0);
    if (rc == 0)
        rc = one_message(&b, &msgs);
    buf_free(&b);
    if (rc < 0)
        return rc;
    *msg = msgs[0];
    free(msgs);
    return 0;
}

const sio_parser_t sio_parser_msgpack = {
    .name = "msgpack",
    .encode_event = mp_encode_event,
    .encode_control = mp_encode_control,
    .decode = sio_msgpack_decode,
};
