/* eio/packet3.c — Engine.IO v3 framing: the polling payload codec and v3 WebSocket
 * binary messages (see packet3.h).
 *
 * Follows engine.io-parser 2.x (what socket.io 2 clients speak) and is stricter where
 * it is lenient: text must be UTF-8 (Node would substitute U+FFFD), a length may not
 * end inside a character or run past the payload, and binary data is accepted only in
 * message packets. Nothing allocates on the receive path. */
#include "eio/packet3.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/base64.h"
#include "util/utf8.h"

/* A length has at most this many digits: 10^9 is above any max_payload. */
#define LENGTH_DIGITS_MAX 9

size_t eio3_utf16_len(const uint8_t *s, size_t len) {
    /* Every character is one unit but those outside the BMP (4-byte sequences), which
     * are two: count lead bytes, and once more those of 4-byte sequences. */
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((s[i] & 0xC0) != 0x80) + (s[i] >= 0xF0);
    return n;
}

int eio3_packet_decode_ws(uint8_t *data, size_t len, bool binary, eio_packet_t *out) {
    if (!binary)
        return eio_packet_decode_ws(data, len, false, out);
    if (len == 0 || data[0] != EIO_MESSAGE)
        return -1;
    out->type = EIO_MESSAGE;
    out->binary = true;
    out->data = data + 1;
    out->len = len - 1;
    return 0;
}

/* The byte length of the UTF-8 sequence a lead byte starts, 0 when it is not one. */
static size_t seq_len(uint8_t b) {
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF)
        return 2;
    if (b >= 0xE0 && b <= 0xEF)
        return 3;
    if (b >= 0xF0 && b <= 0xF4)
        return 4;
    return 0;
}

/* One packet of a text payload: a type digit and data, or "b", the type digit and
 * base64 (decoded in place). */
static int decode_text_packet(uint8_t *data, size_t len, eio_packet_t *out) {
    if (len == 0 || data[0] != 'b')
        return eio_packet_decode_ws(data, len, false, out);
    if (len < 2 || data[1] != '0' + EIO_MESSAGE)
        return -1;
    long n = base64_decode((const char *)data + 2, len - 2, data + 2);
    if (n < 0)
        return -1;
    out->type = EIO_MESSAGE;
    out->binary = true;
    out->data = data + 2;
    out->len = (size_t)n;
    return 0;
}

static int next_text(uint8_t *buf, size_t len, size_t *pos, eio_packet_t *out) {
    for (;;) {
        size_t i = *pos;
        if (i >= len)
            return 0;
        size_t units = 0, digits = 0;
        for (; i < len && buf[i] != ':'; i++, digits++) {
            if (buf[i] < '0' || buf[i] > '9' || digits == LENGTH_DIGITS_MAX)
                return -1;
            units = units * 10 + (size_t)(buf[i] - '0');
        }
        if (i == len || digits == 0)
            return -1;
        size_t start = ++i, seen = 0;
        while (seen < units) {
            size_t k = i < len ? seq_len(buf[i]) : 0;
            if (k == 0 || k > len - i)
                return -1;
            seen += k == 4 ? 2 : 1;
            i += k;
        }
        /* More than asked: the length ends between the halves of a surrogate pair. */
        if (seen != units || !utf8_is_valid(buf + start, i - start))
            return -1;
        *pos = i;
        if (units > 0)
            return decode_text_packet(buf + start, i - start, out) < 0 ? -1 : 1;
    }
}

static int next_binary(uint8_t *buf, size_t len, size_t *pos, eio_packet_t *out) {
    size_t i = *pos;
    if (i >= len)
        return 0;
    uint8_t kind = buf[i++];
    if (kind > 1)
        return -1;
    size_t n = 0, digits = 0;
    for (; i < len && buf[i] != 0xFF; i++, digits++) {
        if (buf[i] > 9 || digits == LENGTH_DIGITS_MAX)
            return -1;
        n = n * 10 + buf[i];
    }
    if (i == len || digits == 0 || n == 0 || n > len - i - 1)
        return -1;
    uint8_t *data = buf + i + 1;
    *pos = i + 1 + n;
    if (kind == 0) {
        if (!utf8_is_valid(data, n) || eio_packet_decode_ws(data, n, false, out))
            return -1;
        return 1;
    }
    return eio3_packet_decode_ws(data, n, true, out) < 0 ? -1 : 1;
}

int eio3_payload_next(uint8_t *buf, size_t len, bool binary_payload, size_t *pos,
                      eio_packet_t *out) {
    if (len == 0)
        return -1;
    return binary_payload ? next_binary(buf, len, pos, out) : next_text(buf, len, pos, out);
}

int eio3_frame(eio_msg_t *m, bool binary_payload, uint8_t *prefix, size_t *prefix_len,
               const uint8_t **body, size_t *body_len) {
    int n;
    if (binary_payload) {
        /* The length's digits as byte values 0..9, after the kind byte. */
        char digits[24];
        int d = snprintf(digits, sizeof digits, "%zu", m->len + (m->binary ? 1 : 0));
        if (d <= 0 || (size_t)d >= sizeof digits)
            return -EINVAL;
        prefix[0] = m->binary ? 1 : 0;
        for (int k = 0; k < d; k++)
            prefix[1 + k] = (uint8_t)(digits[k] - '0');
        prefix[1 + d] = 0xFF;
        n = d + 2;
        if (m->binary)
            prefix[n++] = EIO_MESSAGE;
        *body = m->data;
        *body_len = m->len;
        *prefix_len = (size_t)n;
        return 0;
    }
    if (m->binary) {
        /* "b4" and the base64 of the v4 polling form ("b" + base64), shared with it. */
        const uint8_t *b64;
        size_t b64_len;
        int rc = eio_msg_polling(m, &b64, &b64_len);
        if (rc)
            return rc;
        n = snprintf((char *)prefix, EIO3_PREFIX_MAX, "%zu:b4", b64_len + 1);
        *body = b64 + 1;
        *body_len = b64_len - 1;
    } else {
        if (m->utf16_len == SIZE_MAX)
            m->utf16_len = eio3_utf16_len(m->data, m->len);
        n = snprintf((char *)prefix, EIO3_PREFIX_MAX, "%zu:", m->utf16_len);
        *body = m->data;
        *body_len = m->len;
    }
    if (n <= 0 || n >= EIO3_PREFIX_MAX)
        return -EINVAL;
    *prefix_len = (size_t)n;
    return 0;
}
