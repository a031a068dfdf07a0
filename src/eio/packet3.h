/* eio/packet3.h — Engine.IO protocol v3 framing, for socket.io 2 clients (allow_eio3).
 *
 * Packets are the same as in v4 (eio/packet.h: eio_packet_t, eio_msg_t); what differs
 * is how they are framed:
 *   - a long-polling payload is either text, each packet `<length>:<packet>` where the
 *     length counts UTF-16 code units (JavaScript's String.length) and binary packets
 *     are "b4" + base64, or binary (application/octet-stream), each packet a 0 (text) or
 *     1 (binary) byte, the length's decimal digits as bytes 0..9, 0xFF, then the packet
 *     (text: UTF-8 bytes; binary: the type byte 4 and the raw bytes);
 *   - a binary WebSocket message starts with the type byte 4.
 * Decoding works in place on the caller's buffer, as eio/packet.h's does; encoding
 * writes only the small per-packet prefix, the body is the shared message's own bytes. */
#ifndef PARLEY_EIO_PACKET3_H
#define PARLEY_EIO_PACKET3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eio/packet.h"

/* The JavaScript length (UTF-16 code units) of valid UTF-8 text. */
size_t eio3_utf16_len(const uint8_t *s, size_t len);

/* Decodes one v3 WebSocket message: text as in v4; binary: the type byte (only 4, a
 * message, is accepted) then the data. Returns 0 or -1. */
int eio3_packet_decode_ws(uint8_t *data, size_t len, bool binary, eio_packet_t *out);

/* Iterates a v3 long-polling payload, text or (binary_payload) binary framing. Same
 * contract as eio_payload_next: start with *pos = 0; returns 1 with *out, 0 at the end,
 * -1 on a malformed payload (empty, a length that is not digits or runs past the end,
 * text that is not UTF-8, a length ending inside a character, an unknown type), after
 * which the whole payload must be rejected. Empty packets ("0:") are skipped, as the
 * reference parser skips them. */
int eio3_payload_next(uint8_t *buf, size_t len, bool binary_payload, size_t *pos,
                      eio_packet_t *out);

/* Bytes of the longest prefix eio3_frame writes. */
#define EIO3_PREFIX_MAX 32

/* The v3 polling frame of m: a prefix written into `prefix` (EIO3_PREFIX_MAX bytes) and
 * a body that points into m (valid while m is). binary_payload chooses the framing.
 * Returns 0, or -ENOMEM (the base64 form of a binary message is made on first use). */
int eio3_frame(eio_msg_t *m, bool binary_payload, uint8_t *prefix, size_t *prefix_len,
               const uint8_t **body, size_t *body_len);

#endif
