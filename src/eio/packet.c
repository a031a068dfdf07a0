/* eio/packet.c — Engine.IO v4 packet decoding and the shared outgoing message (see
 * packet.h).
 *
 * Decoding follows the reference engine.io-parser (v5) where it is strict and is
 * stricter where it is lenient: a packet type outside '0'..'6' is an error, as there,
 * but so is base64 that Node's Buffer.from() would silently skip over. Nothing here
 * allocates on the receive path; the only allocations are the outgoing message itself
 * and, once per binary message, its long-polling form. */
#include "eio/packet.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "eio/compress.h"
#include "util/base64.h"

/* A text packet: a type digit and the payload after it, which may be empty ("2"). */
static int decode_text(uint8_t *data, size_t len, eio_packet_t *out) {
    if (len == 0 || data[0] < '0' + EIO_OPEN || data[0] > '0' + EIO_NOOP)
        return -1;
    out->type = (eio_packet_type_t)(data[0] - '0');
    out->binary = false;
    out->data = data + 1;
    out->len = len - 1;
    return 0;
}

int eio_packet_decode_ws(uint8_t *data, size_t len, bool binary, eio_packet_t *out) {
    if (!binary)
        return decode_text(data, len, out);
    /* Binary frames carry no type byte: they are always messages, possibly empty. */
    out->type = EIO_MESSAGE;
    out->binary = true;
    out->data = data;
    out->len = len;
    return 0;
}

/* One packet of a polling payload, already split off at the separators. */
static int decode_polling(uint8_t *data, size_t len, eio_packet_t *out) {
    if (len == 0 || data[0] != 'b')
        return decode_text(data, len, out);
    /* Decoded over its own base64 text, which base64_decode allows; the bytes after
     * this packet (the separator and the next packet) are never touched. */
    long n = base64_decode((const char *)data + 1, len - 1, data + 1);
    if (n < 0)
        return -1;
    out->type = EIO_MESSAGE;
    out->binary = true;
    out->data = data + 1;
    out->len = (size_t)n;
    return 0;
}

/* The cursor is the offset of the next packet. After the last packet (the one not
 * followed by a separator) it is set to len + 1, one past the end, so that "the payload
 * ended" (pos > len) differs from "a separator was the last byte" (pos == len), which
 * leaves an empty packet — an error, as it is in the reference parser. */
int eio_payload_next(uint8_t *buf, size_t len, size_t *pos, eio_packet_t *out) {
    size_t start = *pos;
    if (start > len)
        return 0;
    if (start == len) {
        *pos = len + 1;
        return -1;
    }
    uint8_t *sep = memchr(buf + start, EIO_RECORD_SEPARATOR, len - start);
    size_t end = sep ? (size_t)(sep - buf) : len;
    *pos = end + 1;
    return decode_polling(buf + start, end - start, out) < 0 ? -1 : 1;
}

_Static_assert(offsetof(eio_msg_t, data) == offsetof(eio_msg_t, ws_room) + WS_FRAME_HEADER_MAX,
               "the frame header's room ends where data starts");

static void msg_destroy(ref_t *ref) {
    eio_msg_t *m = (eio_msg_t *)((char *)ref - offsetof(eio_msg_t, ref));
    for (int i = 0; i < 2; i++)
        if (m->zipped[i])
            ref_release(&m->zipped[i]->ref);
    free(m->polling);
    ws_deflated_free(&m->deflated);
    free(m);
}

eio_msg_t *eio_msg_alloc(eio_packet_type_t type, bool binary, size_t payload_len) {
    /* Only messages have a binary form; control packets are always text. */
    if ((unsigned)type > EIO_NOOP || (binary && type != EIO_MESSAGE))
        return NULL;
    size_t len = binary ? payload_len : payload_len + 1;
    if (len < payload_len || len > SIZE_MAX - sizeof(eio_msg_t))
        return NULL;
    eio_msg_t *m = malloc(sizeof *m + len);
    if (!m)
        return NULL;
    ref_init(&m->ref, msg_destroy);
    m->type = (uint8_t)type;
    m->binary = binary;
    m->polling = NULL;
    m->polling_len = 0;
    m->deflated = (ws_deflated_t){0};
    m->zipped[0] = m->zipped[1] = NULL;
    m->len = len;
    if (!binary)
        m->data[0] = (uint8_t)('0' + type);
    uint8_t header[WS_FRAME_HEADER_MAX];
    size_t h = ws_frame_header(header, binary ? WS_OP_BINARY : WS_OP_TEXT, len);
    memcpy(m->data - h, header, h); /* the end of ws_room, against data */
    m->ws_header_len = (uint8_t)h;
    m->utf16_len = SIZE_MAX;
    m->ws3_header_len = 0;
    if (binary) {
        /* Computed here like the v4 header: ten bytes, cheaper than a branch per send. */
        size_t h3 = ws_frame_header(m->ws3_header, WS_OP_BINARY, len + 1);
        m->ws3_header[h3] = EIO_MESSAGE;
        m->ws3_header_len = (uint8_t)(h3 + 1);
    }
    return m;
}

eio_msg_t *eio_msg_new(eio_packet_type_t type, bool binary, const void *payload,
                       size_t payload_len) {
    eio_msg_t *m = eio_msg_alloc(type, binary, payload_len);
    if (m && payload_len > 0)
        memcpy(eio_msg_payload(m), payload, payload_len);
    return m;
}

int eio_msg_polling(eio_msg_t *m, const uint8_t **out, size_t *out_len) {
    if (!m->binary) {
        *out = m->data;
        *out_len = m->len;
        return 0;
    }
    if (!m->polling) {
        /* Built on first use, not in eio_msg_alloc: a binary message that only goes to
         * WebSocket sessions never pays for it. m->len came from a successful malloc,
         * so it is below PTRDIFF_MAX and the size below cannot overflow. 'b', the
         * base64 and the NUL that base64_encode always writes. */
        char *s = malloc(1 + BASE64_ENCODED_LEN(m->len) + 1);
        if (!s)
            return -ENOMEM;
        s[0] = 'b';
        m->polling_len = 1 + base64_encode(m->data, m->len, s + 1);
        m->polling = s;
    }
    *out = (const uint8_t *)m->polling;
    *out_len = m->polling_len;
    return 0;
}
