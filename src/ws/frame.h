/* ws/frame.h — RFC 6455 frame parsing and frame headers for outgoing messages.
 *
 * Parses one frame at a time in place from a caller-owned buffer. Never allocates: the
 * payload comes back as a pointer into the input, unmasked in place, valid until the
 * caller reuses that buffer. Checks everything one frame can violate on its own
 * (reserved bits, opcodes, masking, control frame rules, the 64-bit length's top bit,
 * the size limit); sequencing across frames (continuations, UTF-8, close payloads)
 * lives in ws/conn.c.
 *
 * Outgoing frames are unmasked (server side). ws_frame_header() writes only the header
 * so that one encoded message can be sent to many connections with a single shared
 * header: the payload is never copied. */
#ifndef PARLEY_WS_FRAME_H
#define PARLEY_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Close codes (RFC 6455 §7.4.1). */
enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005,
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
};

#define WS_FRAME_HEADER_MAX 10 /* server frames carry no mask */

typedef struct {
    bool fin;
    bool rsv1; /* "compressed" (RFC 7692); only from ws_frame_parse_rsv1 */
    uint8_t opcode;
    uint8_t *payload; /* into the input buffer, already unmasked */
    size_t len;
} ws_frame_t;

/* Parses one client frame from in[0..len). Returns the number of bytes the whole frame
 * takes (> 0) and fills *out; 0 when more bytes are needed; or minus a close code:
 * -WS_CLOSE_PROTOCOL_ERROR for reserved bits, unknown opcodes, an unmasked frame,
 * a control frame that is fragmented or longer than 125 bytes, a non-minimal or
 * top-bit length; -WS_CLOSE_TOO_BIG when the payload length exceeds max_payload
 * (decided from the header alone, before the payload has arrived). The buffer is only
 * modified (unmasked) when a whole frame is returned, so after 0 call again with more
 * bytes; a returned frame must not be parsed again, which would re-mask it. */
ssize_t ws_frame_parse(uint8_t *in, size_t len, size_t max_payload, ws_frame_t *out);
/* The same on a connection that negotiated permessage-deflate (RFC 7692 §6): RSV1 is
 * allowed, and reported in out->rsv1, on a text or binary frame (the first of a message);
 * on a continuation or control frame it is still -WS_CLOSE_PROTOCOL_ERROR. */
ssize_t ws_frame_parse_rsv1(uint8_t *in, size_t len, size_t max_payload, ws_frame_t *out);

/* Writes a final, unmasked frame header for `opcode` and `payload_len` into out
 * (WS_FRAME_HEADER_MAX bytes). Returns the header length (2, 4 or 10). */
size_t ws_frame_header(uint8_t *out, uint8_t opcode, uint64_t payload_len);

/* Checks a close frame's payload: empty, or a 2-byte code valid on the wire (1000-1003,
 * 1007-1011, 3000-4999) followed by valid UTF-8. Returns 0 or -WS_CLOSE_PROTOCOL_ERROR
 * (bad code or 1-byte payload) or -WS_CLOSE_INVALID_DATA (reason not UTF-8). Sets
 * *code to the code, or WS_CLOSE_NO_STATUS when the payload is empty — also on error
 * (the code as sent, or WS_CLOSE_NO_STATUS for 1 byte), for logging. */
int ws_close_payload_check(const uint8_t *payload, size_t len, uint16_t *code);

#endif
