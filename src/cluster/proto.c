/* cluster/proto.c — encoding and decoding the frames of cluster/proto.h. */
#include "cluster/proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "eio/packet.h"
#include "sio/internal.h"

static int put_target(buf_t *out, const sio_target_t *t) {
    size_t nrooms = t ? t->nrooms : 0, nexcept = t ? t->nexcept : 0;
    if (nrooms > PROTO_ROOMS_MAX || nexcept > PROTO_ROOMS_MAX)
        return -E2BIG;
    int rc = wire_u32(out, (uint32_t)nrooms);
    for (size_t i = 0; rc == 0 && i < nrooms; i++)
        rc = wire_str(out, t->rooms[i]);
    if (rc == 0)
        rc = wire_u32(out, (uint32_t)nexcept);
    for (size_t i = 0; rc == 0 && i < nexcept; i++)
        rc = wire_str(out, t->except[i]);
    if (rc == 0)
        rc = wire_u32(out, t ? t->flags : 0);
    return rc;
}

int proto_bcast_encode(buf_t *out, const char *nsp, const sio_bcast_t *b) {
    size_t start;
    int rc = wire_begin(out, PROTO_BCAST, &start);
    if (rc == 0)
        rc = wire_str(out, nsp);
    if (rc == 0)
        rc = wire_str(out, b->event);
    if (rc == 0)
        rc = wire_bytes(out, b->args_json, b->args_len);
    if (rc == 0)
        rc = wire_u32(out, (uint32_t)b->nbins);
    for (size_t i = 0; rc == 0 && i < b->nbins; i++)
        rc = wire_bytes(out, b->bins[i].data, b->bins[i].len);
    if (rc == 0)
        rc = put_target(out, &b->to);
    if (rc == 0)
        wire_end(out, start);
    return rc;
}

int proto_rooms_encode(buf_t *out, const char *nsp, uint8_t op, const sio_target_t *which,
                       const char *room, bool close) {
    size_t start;
    int rc = wire_begin(out, PROTO_ROOMS, &start);
    if (rc == 0)
        rc = wire_str(out, nsp);
    if (rc == 0)
        rc = wire_u8(out, op);
    if (rc == 0)
        rc = put_target(out, which);
    if (rc == 0)
        rc = wire_str(out, room);
    if (rc == 0)
        rc = wire_u8(out, close);
    if (rc == 0)
        wire_end(out, start);
    return rc;
}

/* The strings of a frame, gathered before they are copied into one arena: inline for
 * the usual few (a namespace, an event, a room or two), on the heap past them. Nothing
 * here is proportional to the limits, so a frame costs what it holds. */
#define STRINGS_INLINE 8

typedef struct {
    slice_t small[STRINGS_INLINE];
    slice_t *s;
    size_t n, cap, bytes;
} strings_t;

static void take_str(wire_reader_t *r, strings_t *st) {
    slice_t s = wire_get_bytes(r);
    if (r->bad)
        return;
    if ((s.len && memchr(s.base, '\0', s.len)) || st->n == 2 * PROTO_ROOMS_MAX + 2) {
        r->bad = true;
        return;
    }
    if (st->n == st->cap) {
        size_t cap = st->cap * 2;
        slice_t *grown =
            st->s == st->small ? malloc(cap * sizeof *grown) : realloc(st->s, cap * sizeof *grown);
        if (!grown) {
            r->bad = true;
            return;
        }
        if (st->s == st->small)
            memcpy(grown, st->small, sizeof st->small);
        st->s = grown;
        st->cap = cap;
    }
    st->s[st->n++] = s;
    st->bytes += s.len + 1;
}

static uint32_t take_count(wire_reader_t *r) {
    uint32_t n = wire_get_u32(r);
    if (n > PROTO_ROOMS_MAX)
        r->bad = true;
    return r->bad ? 0 : n;
}

int proto_msg_decode(const uint8_t *frame, size_t size, proto_msg_t *out) {
    memset(out, 0, sizeof *out);
    strings_t st = {.n = 0, .cap = STRINGS_INLINE, .bytes = 0};
    st.s = st.small;
    wire_reader_t r;
    wire_reader_init(&r, frame, size);
    uint8_t type = r.type;
    bool bcast = type == PROTO_BCAST;
    if (!bcast && type != PROTO_ROOMS)
        r.bad = true;
    take_str(&r, &st); /* the namespace */
    slice_t args = SLICE_NULL;
    uint32_t nbins = 0;
    slice_t bins[16];
    if (bcast) {
        take_str(&r, &st); /* the event */
        args = wire_get_bytes(&r);
        nbins = wire_get_u32(&r);
        if (nbins > sizeof bins / sizeof bins[0])
            r.bad = true;
        for (uint32_t i = 0; !r.bad && i < nbins; i++)
            bins[i] = wire_get_bytes(&r);
    } else {
        out->op = wire_get_u8(&r);
    }
    uint32_t nrooms = take_count(&r);
    for (uint32_t i = 0; i < nrooms; i++)
        take_str(&r, &st);
    uint32_t nexcept = take_count(&r);
    for (uint32_t i = 0; i < nexcept; i++)
        take_str(&r, &st);
    uint32_t flags = wire_get_u32(&r);
    if (!bcast) {
        take_str(&r, &st); /* the room */
        out->close = wire_get_u8(&r) != 0;
    }
    /* The namespace, the event or the room, and the lists: nothing less, nothing more. */
    int rc = wire_done(&r) && st.n == 2 + nrooms + nexcept ? 0 : -EINVAL;
    if (rc == 0 && !(out->arena = malloc(st.bytes)))
        rc = -ENOMEM;
    if (rc == 0 && !(out->list = calloc(nrooms + nexcept + 1, sizeof *out->list)))
        rc = -ENOMEM;
    if (rc == 0 && nbins && !(out->bins = calloc(nbins, sizeof *out->bins)))
        rc = -ENOMEM;
    if (rc) {
        if (st.s != st.small)
            free(st.s);
        proto_msg_free(out);
        return rc;
    }
    /* Copied in order: the namespace, [the event], the rooms, the except rooms, [the
     * room]; each string's place in the arena is where the previous one ended. */
    char *p = out->arena;
    for (size_t i = 0; i < st.n; i++) {
        if (st.s[i].len)
            memcpy(p, st.s[i].base, st.s[i].len);
        p[st.s[i].len] = '\0';
        if (i == 0) {
            out->nsp = p;
        } else if (bcast && i == 1) {
            out->b.event = p;
        } else if (i - (bcast ? 2 : 1) < nrooms + nexcept) {
            out->list[i - (bcast ? 2 : 1)] = p;
        } else {
            out->room = p;
        }
        p += st.s[i].len + 1;
    }
    if (st.s != st.small)
        free(st.s);
    if (bcast) {
        out->b.args_json = args.base;
        out->b.args_len = args.len;
        for (uint32_t i = 0; i < nbins; i++)
            out->bins[i] = (sio_bin_t){(const uint8_t *)bins[i].base, bins[i].len};
        out->b.bins = out->bins;
        out->b.nbins = nbins;
    }
    out->b.to = (sio_target_t){.rooms = out->list,
                               .nrooms = nrooms,
                               .except = out->list + nrooms,
                               .nexcept = nexcept,
                               .flags = flags};
    return 0;
}

void proto_msg_free(proto_msg_t *m) {
    free(m->arena);
    free(m->bins);
    free(m->list);
    memset(m, 0, sizeof *m);
}

/* ---- recovery sessions ---- */

/* What one missed packet may hold at most: its text and its attachments. */
#define PACKET_MSGS_MAX 64

int proto_session_encode(buf_t *out, const sio_session_t *ss, uint64_t now_ms,
                         sio_logged_t *const *missed, size_t nmissed) {
    if (!ss)
        return wire_u8(out, 0);
    if (ss->nrooms > PROTO_ROOMS_MAX)
        return -E2BIG;
    char *data = ss->data ? json_dumps(ss->data, JSON_COMPACT) : NULL;
    if (ss->data && !data)
        return -ENOMEM;
    int rc = wire_u8(out, 1);
    if (rc == 0)
        rc = wire_str(out, ss->pid);
    if (rc == 0)
        rc = wire_str(out, ss->sid);
    if (rc == 0)
        rc = wire_u32(out, (uint32_t)ss->nrooms);
    for (size_t i = 0; rc == 0 && i < ss->nrooms; i++)
        rc = wire_str(out, ss->rooms[i]);
    if (rc == 0)
        rc = wire_str(out, data);
    free(data);
    if (rc == 0)
        rc = wire_u64(out, now_ms > ss->disconnected_ms ? now_ms - ss->disconnected_ms : 0);
    if (rc == 0)
        rc = wire_u32(out, (uint32_t)nmissed);
    for (size_t i = 0; rc == 0 && i < nmissed; i++) {
        rc = wire_u32(out, (uint32_t)missed[i]->nmsgs);
        for (size_t j = 0; rc == 0 && j < missed[i]->nmsgs; j++) {
            eio_msg_t *m = missed[i]->msgs[j];
            size_t head = m->binary ? 0 : 1;
            rc = wire_u8(out, m->type);
            if (rc == 0)
                rc = wire_u8(out, m->binary);
            if (rc == 0)
                rc = wire_bytes(out, m->data + head, m->len - head);
        }
    }
    return rc;
}

static char *get_str(wire_reader_t *r) {
    slice_t s = wire_get_bytes(r);
    if (r->bad || (s.len && memchr(s.base, '\0', s.len))) {
        r->bad = true;
        return NULL;
    }
    char *copy = malloc(s.len + 1);
    if (copy) {
        if (s.len)
            memcpy(copy, s.base, s.len);
        copy[s.len] = '\0';
    }
    return copy;
}

void proto_missed_free(sio_logged_t **missed, size_t n) {
    for (size_t i = 0; missed && i < n; i++) {
        sio_msgs_release(missed[i]->msgs, missed[i]->nmsgs);
        free(missed[i]);
    }
    free(missed);
}

static sio_logged_t *get_packet(wire_reader_t *r, int *rc) {
    uint32_t n = wire_get_u32(r);
    if (r->bad || n == 0 || n > PACKET_MSGS_MAX) {
        *rc = -EINVAL;
        return NULL;
    }
    sio_logged_t *e = calloc(1, sizeof *e);
    if (!e || !(e->msgs = calloc(n, sizeof *e->msgs))) {
        free(e);
        *rc = -ENOMEM;
        return NULL;
    }
    for (uint32_t j = 0; j < n; j++) {
        uint8_t type = wire_get_u8(r);
        bool binary = wire_get_u8(r) != 0;
        slice_t payload = wire_get_bytes(r);
        /* A logged packet is Engine.IO messages only (the text, then its attachments). */
        if (type != EIO_MESSAGE)
            r->bad = true;
        eio_msg_t *m = r->bad ? NULL : eio_msg_new(type, binary, payload.base, payload.len);
        if (!m) {
            *rc = r->bad ? -EINVAL : -ENOMEM;
            break;
        }
        e->msgs[e->nmsgs++] = m;
    }
    if (e->nmsgs < n) {
        sio_msgs_release(e->msgs, e->nmsgs);
        free(e);
        return NULL;
    }
    return e;
}

int proto_session_decode(wire_reader_t *r, uint64_t now_ms, sio_session_t **ss,
                         sio_logged_t ***missed, size_t *nmissed) {
    *ss = NULL;
    *missed = NULL;
    *nmissed = 0;
    if (wire_get_u8(r) == 0)
        return r->bad ? -EINVAL : 0;
    sio_session_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    int rc = 0;
    wire_get_cstr(r, s->pid, sizeof s->pid);
    wire_get_cstr(r, s->sid, sizeof s->sid);
    uint32_t nrooms = take_count(r);
    if (!r->bad && !(s->rooms = calloc(nrooms + 1, sizeof *s->rooms)))
        rc = -ENOMEM;
    for (uint32_t i = 0; rc == 0 && !r->bad && i < nrooms; i++) {
        if (!(s->rooms[i] = get_str(r)) && !r->bad)
            rc = -ENOMEM;
        else if (s->rooms[i])
            s->nrooms++;
    }
    slice_t data = wire_get_bytes(r);
    if (rc == 0 && !r->bad && data.len && !(s->data = json_loadb(data.base, data.len, 0, NULL)))
        r->bad = true;
    uint64_t age = wire_get_u64(r);
    s->disconnected_ms = now_ms > age ? now_ms - age : 0;
    uint32_t n = wire_get_u32(r);
    /* Each packet takes at least 4 bytes: a count past what is left is a lie. */
    if (n > (size_t)(r->end - r->p) / 4)
        r->bad = true;
    if (rc == 0 && !r->bad && n && !(*missed = calloc(n, sizeof **missed)))
        rc = -ENOMEM;
    for (uint32_t i = 0; rc == 0 && !r->bad && i < n; i++) {
        sio_logged_t *e = get_packet(r, &rc);
        if (e)
            (*missed)[(*nmissed)++] = e;
    }
    if (rc == 0 && !wire_done(r))
        rc = -EINVAL;
    if (rc) {
        sio_session_free(s);
        proto_missed_free(*missed, *nmissed);
        *missed = NULL;
        *nmissed = 0;
        return rc;
    }
    *ss = s;
    return 0;
}
