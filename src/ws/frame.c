/* ws/frame.c — RFC 6455 §5.2 framing: client frames in, server frame headers out.
 *
 * The parser is stateless: it looks at the bytes received so far and either needs
 * more, rejects the header, or hands back one whole frame. Every header check is made
 * as soon as the bytes it needs are present, so a bad or oversized frame is refused
 * before its payload is waited for (or buffered). Unmasking happens only once the
 * whole frame is present, so returning 0 leaves the buffer untouched and the caller
 * can simply call again with more bytes; a frame that was returned must not be parsed
 * a second time (that would mask it again). */
#include "ws/frame.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "util/utf8.h"

#define FIN 0x80
#define RSV_BITS 0x70
#define RSV1 0x40
#define OPCODE_BITS 0x0F
#define MASK_BIT 0x80
#define LEN7_BITS 0x7F
#define LEN7_MAX 125
#define LEN7_USE_16 126
#define LEN7_USE_64 127
#define MASK_KEY_LEN 4

static bool opcode_known(uint8_t op) {
    return op == WS_OP_CONT || op == WS_OP_TEXT || op == WS_OP_BINARY || op == WS_OP_CLOSE ||
           op == WS_OP_PING || op == WS_OP_PONG;
}

static bool opcode_is_control(uint8_t op) {
    return (op & 0x8) != 0;
}

/* XORs p[0..len) with the 4-byte key repeated. Eight bytes per step: the key is laid
 * out twice in memory order, so the XOR is correct whatever the host's endianness,
 * and memcpy keeps the unaligned loads and stores defined. */
static void unmask(uint8_t *p, size_t len, const uint8_t key[MASK_KEY_LEN]) {
    uint8_t key8[8];
    memcpy(key8, key, MASK_KEY_LEN);
    memcpy(key8 + MASK_KEY_LEN, key, MASK_KEY_LEN);
    uint64_t k;
    memcpy(&k, key8, 8);
    size_t i = 0;
    for (; len - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= k;
        memcpy(p + i, &w, 8);
    }
    for (; i < len; i++)
        p[i] ^= key[i % MASK_KEY_LEN];
}

static ssize_t parse(uint8_t *in, size_t len, size_t max_payload, bool rsv1_ok, ws_frame_t *out) {
    if (len < 2)
        return 0;
    uint8_t b0 = in[0];
    uint8_t b1 = in[1];
    bool fin = (b0 & FIN) != 0;
    bool rsv1 = (b0 & RSV1) != 0;
    uint8_t opcode = b0 & OPCODE_BITS;
    uint8_t len7 = b1 & LEN7_BITS;

    /* A reserved bit is an error unless an extension gave it a meaning (§5.2): only
     * permessage-deflate's RSV1, and only on a message's first frame (RFC 7692 §6.1). */
    if ((b0 & RSV_BITS & ~RSV1) != 0 || !opcode_known(opcode))
        return -WS_CLOSE_PROTOCOL_ERROR;
    if (rsv1 && (!rsv1_ok || (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY)))
        return -WS_CLOSE_PROTOCOL_ERROR;
    /* Clients must mask every frame (§5.1). */
    if ((b1 & MASK_BIT) == 0)
        return -WS_CLOSE_PROTOCOL_ERROR;
    /* Control frames are never fragmented and carry at most 125 bytes (§5.5). */
    if (opcode_is_control(opcode) && (!fin || len7 > LEN7_MAX))
        return -WS_CLOSE_PROTOCOL_ERROR;

    size_t hdr = 2;
    uint64_t plen = len7;
    if (len7 == LEN7_USE_16) {
        if (len < 4)
            return 0;
        plen = (uint64_t)in[2] << 8 | in[3];
        /* §5.2: "the minimal number of bytes MUST be used to encode the length". */
        if (plen <= LEN7_MAX)
            return -WS_CLOSE_PROTOCOL_ERROR;
        hdr = 4;
    } else if (len7 == LEN7_USE_64) {
        if (len < 10)
            return 0;
        plen = 0;
        for (int i = 2; i < 10; i++)
            plen = plen << 8 | in[i];
        if ((plen >> 63) != 0 || plen <= UINT16_MAX)
            return -WS_CLOSE_PROTOCOL_ERROR;
        hdr = 10;
    }
    hdr += MASK_KEY_LEN;

    /* The result must fit in ssize_t too; a frame that large could never be buffered
     * anyway, so it is "too big" whatever max_payload says. */
    if (plen > max_payload || plen > (uint64_t)(SSIZE_MAX - (ssize_t)hdr))
        return -WS_CLOSE_TOO_BIG;
    if (len < hdr || len - hdr < plen)
        return 0;

    uint8_t *payload = in + hdr;
    unmask(payload, (size_t)plen, in + hdr - MASK_KEY_LEN);
    out->fin = fin;
    out->rsv1 = rsv1;
    out->opcode = opcode;
    out->payload = payload;
    out->len = (size_t)plen;
    return (ssize_t)(hdr + plen);
}

ssize_t ws_frame_parse(uint8_t *in, size_t len, size_t max_payload, ws_frame_t *out) {
    return parse(in, len, max_payload, false, out);
}

ssize_t ws_frame_parse_rsv1(uint8_t *in, size_t len, size_t max_payload, ws_frame_t *out) {
    return parse(in, len, max_payload, true, out);
}

size_t ws_frame_header(uint8_t *out, uint8_t opcode, uint64_t payload_len) {
    out[0] = FIN | (opcode & OPCODE_BITS);
    if (payload_len <= LEN7_MAX) {
        out[1] = (uint8_t)payload_len;
        return 2;
    }
    if (payload_len <= UINT16_MAX) {
        out[1] = LEN7_USE_16;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        return 4;
    }
    out[1] = LEN7_USE_64;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
    return 10;
}

/* Codes a peer may put on the wire (§7.4.1-2): the defined ones except 1004 (reserved)
 * and 1005/1006/1015 (only ever reported locally), plus the ranges for libraries and
 * applications. 1012-1014, registered with IANA after the RFC, are refused too (the
 * Autobahn suite tests them neither way; Node's ws accepts them). */
static bool close_code_valid(uint16_t code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

int ws_close_payload_check(const uint8_t *payload, size_t len, uint16_t *code) {
    if (len < 2) {
        *code = WS_CLOSE_NO_STATUS;
        return len == 0 ? 0 : -WS_CLOSE_PROTOCOL_ERROR;
    }
    *code = (uint16_t)(payload[0] << 8 | payload[1]);
    if (!close_code_valid(*code))
        return -WS_CLOSE_PROTOCOL_ERROR;
    if (!utf8_is_valid(payload + 2, len - 2))
        return -WS_CLOSE_INVALID_DATA;
    return 0;
}
