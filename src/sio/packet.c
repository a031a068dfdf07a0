/* sio/packet.c — Socket.IO v5 packet decoding and encoding (see packet.h).
 *
 * Decoding follows socket.io-parser v4 (Decoder.decodeString, isPayloadValid and
 * reconstructPacket) where it is strict, and is stricter where JavaScript's Number()
 * makes it lenient: counts and ids are plain decimal digits here (the reference also
 * takes " 1", "0x1" or "1e0"). The payload check is isPacketValid's, which wants a
 * payload for EVENT, ACK and CONNECT_ERROR even where the reference decoder would let
 * an absent one through. Allocation on the receive path is what the packet must keep:
 * the JSON tree and, for binary packets, the slot array and one copy of each buffer.
 *
 * Where jansson and JSON.parse differ, a packet is rejected that Node would accept:
 * integers beyond int64, reals beyond double ("1e400") and lone UTF-16 surrogates
 * ("\ud800"). Encoding differs from JSON.stringify in spelling only: reals get 17
 * significant digits and keep a fraction (JSON "0.1" goes out as 0.10000000000000001,
 * "1.0" as 1.0 where JS writes 1) and control characters are escaped with upper-case
 * hex (\u001F). Both read back as the same values. */
#include "sio/packet.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/jsonw.h"

#define SIO_ID_DIGITS_MAX 15
/* Containers the placeholder walk descends through: jansson's own parse limit, so every
 * tree it parses can be walked, while a deeper tree built in memory cannot exhaust the
 * stack. */
#define SIO_JSON_DEPTH_MAX 2048

/* Event names the reference reserves for its own use on either side. */
static const char *const reserved_events[] = {
    "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
};

static bool is_binary_type(sio_packet_type_t type) {
    return type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK;
}

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* A packet with nothing in it yet: what the header documents as the defaults. */
static void packet_reset(sio_packet_t *p) {
    p->type = SIO_CONNECT;
    p->nsp[0] = '/';
    p->nsp[1] = '\0';
    p->id = -1;
    p->data = NULL;
    p->bins = NULL;
    p->nbins = 0;
}

void sio_packet_clear(sio_packet_t *p) {
    json_decref(p->data);
    p->data = NULL;
    for (size_t i = 0; i < p->nbins; i++)
        if (p->bins[i])
            ref_release(&p->bins[i]->ref);
    free(p->bins);
    p->bins = NULL;
    p->nbins = 0;
}

void sio_decoder_init(sio_decoder_t *d, size_t max_attachments) {
    d->pending = NULL;
    d->expected = 0;
    d->max_attachments = max_attachments > UINT32_MAX ? UINT32_MAX : (uint32_t)max_attachments;
}

void sio_decoder_clear(sio_decoder_t *d) {
    if (d->pending)
        sio_packet_clear(d->pending);
    free(d->pending);
    d->pending = NULL;
    d->expected = 0;
}

/* ---- validation --------------------------------------------------------------- */

static bool is_reserved_event(const json_t *name) {
    const char *s = json_string_value(name);
    size_t len = json_string_length(name);
    for (size_t i = 0; i < sizeof reserved_events / sizeof *reserved_events; i++)
        if (strlen(reserved_events[i]) == len && memcmp(reserved_events[i], s, len) == 0)
            return true;
    return false;
}

/* As reconstructPacket: an object whose "_placeholder" is true is a placeholder and is
 * not looked into further; its "num" must name a buffer. The reference accepts any
 * number there (0.5 then reconstructs as undefined); an integer is required here. */
static bool placeholders_valid(const json_t *j, size_t nbins, int depth) {
    if (!json_is_array(j) && !json_is_object(j))
        return true;
    if (depth > SIO_JSON_DEPTH_MAX)
        return false;
    if (json_is_array(j)) {
        size_t i;
        const json_t *v;
        json_array_foreach(j, i, v) {
            if (!placeholders_valid(v, nbins, depth + 1))
                return false;
        }
        return true;
    }
    if (json_is_true(json_object_get(j, "_placeholder"))) {
        const json_t *num = json_object_get(j, "num");
        return json_is_integer(num) && json_integer_value(num) >= 0 &&
               (uint64_t)json_integer_value(num) < nbins;
    }
    const char *key;
    const json_t *v;
    /* json_object_foreach wants a non-const object; the walk does not modify it. */
    json_t *obj = (json_t *)j;
    json_object_foreach(obj, key, v) {
        if (!placeholders_valid(v, nbins, depth + 1))
            return false;
    }
    return true;
}

static bool payload_valid(sio_packet_type_t type, const json_t *data) {
    switch (type) {
    case SIO_CONNECT:
        return !data || json_is_object(data);
    case SIO_DISCONNECT:
        return !data;
    case SIO_CONNECT_ERROR:
        return json_is_string(data) || json_is_object(data);
    case SIO_EVENT:
    case SIO_BINARY_EVENT: {
        const json_t *name = json_array_get(data, 0);
        return json_is_number(name) || (json_is_string(name) && !is_reserved_event(name));
    }
    case SIO_ACK:
    case SIO_BINARY_ACK:
        return json_is_array(data);
    }
    return false;
}

bool sio_packet_validate(const sio_packet_t *p) {
    if (!payload_valid(p->type, p->data))
        return false;
    /* Only binary packets are walked: a non-binary packet's placeholder-shaped object is
     * plain data to the reference, and EVENTs should not pay for a walk. */
    if (!is_binary_type(p->type) && p->nbins == 0)
        return true;
    return !p->data || placeholders_valid(p->data, p->nbins, 1);
}

/* ---- decoding ----------------------------------------------------------------- */

/* Reads <type>[<attachments>-][<nsp>,][<id>][<json>] into p (reset beforehand) and the
 * announced buffer count into *attachments (0 for non-binary types). The payload is
 * not validated here. Returns 0 or -1. */
static int parse_text(const sio_decoder_t *d, const char *s, size_t len, sio_packet_t *p,
                      size_t *attachments) {
    if (len == 0 || s[0] < '0' + SIO_CONNECT || s[0] > '0' + SIO_BINARY_ACK)
        return -1;
    p->type = (sio_packet_type_t)(s[0] - '0');
    size_t i = 1;

    *attachments = 0;
    if (is_binary_type(p->type)) {
        size_t start = i, n = 0;
        for (; i < len && is_digit(s[i]); i++)
            n = n > (SIZE_MAX - 9) / 10 ? SIZE_MAX : n * 10 + (size_t)(s[i] - '0');
        if (i == start || i == len || s[i] != '-')
            return -1;
        if (n < 1 || n > d->max_attachments)
            return -1;
        *attachments = n;
        i++;
    }

    /* The namespace runs to ',' or, as in the reference, to the end of the input
     * ("1/admin"). Only SIO_NSP_MAX + 1 bytes are searched: one more is too long. */
    if (i < len && s[i] == '/') {
        size_t room = len - i < SIO_NSP_MAX + 1 ? len - i : SIO_NSP_MAX + 1;
        const char *comma = memchr(s + i, ',', room);
        size_t n = comma ? (size_t)(comma - (s + i)) : len - i;
        /* A NUL would make two names compare equal as C strings. */
        if (n > SIO_NSP_MAX || memchr(s + i, '\0', n))
            return -1;
        memcpy(p->nsp, s + i, n);
        p->nsp[n] = '\0';
        i += comma ? n + 1 : n;
    }

    size_t start = i;
    int64_t id = 0;
    for (; i < len && is_digit(s[i]); i++) {
        if (i - start == SIO_ID_DIGITS_MAX)
            return -1;
        id = id * 10 + (s[i] - '0');
    }
    if (i > start)
        p->id = id;

    if (i < len) {
        /* jansson rejects trailing bytes unless told otherwise; NULs inside strings are
         * allowed because JSON.parse allows "\u0000". */
        json_error_t err;
        p->data = json_loadb(s + i, len - i, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!p->data)
            return -1;
    }
    return 0;
}

sio_decode_result_t sio_decode_text(sio_decoder_t *d, const char *data, size_t len,
                                    sio_packet_t *out) {
    if (d->expected) {
        sio_decoder_clear(d);
        return SIO_DECODE_ERROR;
    }
    sio_packet_t p;
    packet_reset(&p);
    size_t attachments;
    if (parse_text(d, data, len, &p, &attachments) != 0)
        goto fail;
    if (attachments) {
        p.bins = calloc(attachments, sizeof *p.bins);
        if (!p.bins)
            goto fail;
        p.nbins = attachments;
    }
    if (!sio_packet_validate(&p))
        goto fail;

    if (attachments) {
        if (!(d->pending = malloc(sizeof *d->pending)))
            goto fail;
        *d->pending = p;
        d->expected = (uint32_t)attachments; /* at most max_attachments */
        return SIO_DECODE_MORE;
    }
    *out = p;
    return SIO_DECODE_PACKET;

fail:
    sio_packet_clear(&p);
    return SIO_DECODE_ERROR;
}

sio_decode_result_t sio_decode_binary(sio_decoder_t *d, const uint8_t *data, size_t len,
                                      sio_packet_t *out) {
    if (!d->expected)
        return SIO_DECODE_ERROR;
    /* Copied: the message lives in the connection's read buffer, the packet may outlive
     * it (and is shared by reference when forwarded). */
    rcbuf_t *b = rcbuf_new(data, len);
    if (!b) {
        sio_decoder_clear(d);
        return SIO_DECODE_ERROR;
    }
    d->pending->bins[d->pending->nbins - d->expected] = b;
    if (--d->expected)
        return SIO_DECODE_MORE;
    *out = *d->pending;
    free(d->pending);
    d->pending = NULL;
    return SIO_DECODE_PACKET;
}

/* ---- encoding ----------------------------------------------------------------- */

int sio_encode_head(buf_t *out, sio_packet_type_t type, const char *nsp, int64_t id, size_t nbins) {
    if (nbins > 0) {
        if (type == SIO_EVENT)
            type = SIO_BINARY_EVENT;
        else if (type == SIO_ACK)
            type = SIO_BINARY_ACK;
        else if (!is_binary_type(type))
            return -EINVAL;
    } else if (type == SIO_BINARY_EVENT) {
        type = SIO_EVENT;
    } else if (type == SIO_BINARY_ACK) {
        type = SIO_ACK;
    } else if (type < SIO_CONNECT || type > SIO_BINARY_ACK) {
        return -EINVAL;
    }

    size_t nsp_len = 0;
    if (nsp && nsp[0] && strcmp(nsp, "/") != 0) {
        nsp_len = strnlen(nsp, SIO_NSP_MAX + 1);
        if (nsp[0] != '/' || nsp_len > SIO_NSP_MAX || memchr(nsp, ',', nsp_len))
            return -EINVAL;
    }
    if (id > SIO_ID_MAX)
        return -EINVAL;

    /* Built on the stack and appended once: at most "6", 20 digits and "-", the
     * namespace and ',', then 15 digits. */
    char head[1 + 20 + 1 + SIO_NSP_MAX + 1 + 15 + 1];
    char *end = head;
    *end++ = (char)('0' + type);
    if (nbins) {
        end = jsonw_int(end, (int64_t)nbins);
        *end++ = '-';
    }
    if (nsp_len) {
        memcpy(end, nsp, nsp_len);
        end += nsp_len;
        *end++ = ',';
    }
    if (id >= 0)
        end = jsonw_int(end, id);
    return buf_append(out, head, (size_t)(end - head));
}

static int append_json(const char *text, size_t size, void *out) {
    return buf_append(out, text, size) == 0 ? 0 : -1;
}

int sio_encode_packet(buf_t *out, const sio_packet_t *p) {
    size_t mark = out->len;
    int rc = sio_encode_head(out, p->type, p->nsp, p->id, p->nbins);
    if (rc)
        return rc;
    /* Written straight into out, without an intermediate string. JSON_ENCODE_ANY for a
     * CONNECT_ERROR's string; jansson keeps keys in insertion order, as JS does. Apart
     * from allocation, dumping fails only for trees no parse produces (a cycle, a
     * string made with json_stringn_nocheck holding bad UTF-8). */
    if (p->data && json_dump_callback(p->data, append_json, out, JSON_COMPACT | JSON_ENCODE_ANY)) {
        out->len = mark;
        return -ENOMEM;
    }
    return 0;
}
