/* sio/packet.h — Socket.IO v5 packets: decoding with binary reassembly, and encoding.
 *
 * Wire format (socket.io-protocol README): <type>[<attachments>-][<nsp>,][<id>][<json>]
 * where type is 0..6, nsp is "/" unless given (a namespace other than "/" starts with
 * '/' and ends at ','), id is a decimal ack id, json the payload. BINARY_EVENT and
 * BINARY_ACK packets are followed by <attachments> binary Engine.IO messages; their
 * JSON holds {"_placeholder":true,"num":N} where the N-th buffer goes.
 *
 * Binary values stay placeholders in the JSON tree handed to the application; the
 * buffers travel beside it (sio_packet_t.bins). Re-encoding the same tree with the
 * same buffers reproduces the packet, so an application can forward binary payloads
 * untouched.
 *
 * This is the default (JSON) parser's codec; socket.io-msgpack-parser's sits beside it
 * (sio/parser_msgpack.c) and the two are drawn into one table in sio/parser.h. */
#ifndef PARLEY_SIO_PACKET_H
#define PARLEY_SIO_PACKET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef enum {
    SIO_CONNECT = 0,
    SIO_DISCONNECT = 1,
    SIO_EVENT = 2,
    SIO_ACK = 3,
    SIO_CONNECT_ERROR = 4,
    SIO_BINARY_EVENT = 5,
    SIO_BINARY_ACK = 6,
} sio_packet_type_t;

#define SIO_NSP_MAX 256 /* bytes of a namespace name */
/* An ack id has at most 15 digits, so it stays exact in a JavaScript number (< 2^53). */
#define SIO_ID_MAX INT64_C(999999999999999)

typedef struct {
    sio_packet_type_t type;
    char nsp[SIO_NSP_MAX + 1]; /* NUL-terminated, "/" by default */
    int64_t id;                /* ack id, -1 when absent */
    json_t *data;              /* owned reference; NULL when absent */
    rcbuf_t **bins;            /* owned array of nbins; one reference held per buffer */
    size_t nbins;
} sio_packet_t;

/* Releases data and bins and sets them to NULL/0 (type, nsp and id are kept); the
 * packet can be reused afterwards. */
void sio_packet_clear(sio_packet_t *p);

/* Decoder state for one connection: a binary packet waiting for its buffers. While
 * waiting, pending->bins already has all nbins slots (the missing ones NULL), so the
 * placeholders are checked against the announced count before any buffer arrives. The
 * packet is on the heap only while it waits: an idle connection's decoder is 16 bytes. */
typedef struct {
    sio_packet_t *pending;
    uint32_t expected; /* buffers still missing for `pending`; 0 when none pending */
    uint32_t max_attachments;
} sio_decoder_t;

/* max_attachments: most buffers one packet may announce (socket.io-parser: 10); values
 * above UINT32_MAX count as UINT32_MAX. */
void sio_decoder_init(sio_decoder_t *d, size_t max_attachments);
/* Drops a waiting packet; the decoder holds nothing else and stays usable. */
void sio_decoder_clear(sio_decoder_t *d);

/* Result of feeding one Engine.IO message to the decoder. */
typedef enum {
    SIO_DECODE_ERROR = -1, /* malformed: the connection must be closed ("parse error") */
    SIO_DECODE_MORE = 0,   /* a binary packet is waiting for more buffers */
    SIO_DECODE_PACKET = 1, /* *out holds a complete packet (caller clears it) */
} sio_decode_result_t;

/* Feeds one text Engine.IO message; data is borrowed for the call only. On
 * SIO_DECODE_PACKET *out is overwritten (not released first) and owned by the caller;
 * on MORE or ERROR it is untouched. Errors: unknown type, bad attachment count (not
 * decimal digits then '-', 0, or above max_attachments), namespace over SIO_NSP_MAX
 * bytes or holding a NUL, bad ack id (more than 15 digits), invalid JSON or trailing
 * bytes after it, a payload invalid for the type (see sio_packet_validate), a text
 * message while buffers are awaited (the awaited packet is dropped), out of memory.
 * A decoder is reusable after an error. */
sio_decode_result_t sio_decode_text(sio_decoder_t *d, const char *data, size_t len,
                                    sio_packet_t *out);
/* Feeds one binary Engine.IO message (an attachment); data is borrowed for the call
 * only (it is copied into an rcbuf). *out as for sio_decode_text. Errors: no binary
 * packet is waiting, out of memory (the awaited packet is dropped). */
sio_decode_result_t sio_decode_binary(sio_decoder_t *d, const uint8_t *data, size_t len,
                                      sio_packet_t *out);

/* Checks a packet's payload shape as socket.io-parser's isPacketValid does: CONNECT
 * object or none; DISCONNECT none; CONNECT_ERROR string or object; EVENT/BINARY_EVENT
 * non-empty array whose first element is a number or a string other than the reserved
 * names (connect, connect_error, disconnect, disconnecting, newListener,
 * removeListener); ACK and BINARY_ACK array. A payload is required where "none" is not
 * listed (the protocol README says so; the reference decoder skips the check when the
 * payload is absent). For binary packets (or any packet with nbins > 0) every
 * placeholder's num must be an integer < nbins, and the tree may nest at most 2048
 * containers deep; in other packets a placeholder-shaped object is plain data. */
bool sio_packet_validate(const sio_packet_t *p);

/* Appends the head of a packet's text to out: type, attachment count "N-" when
 * nbins > 0, nsp and ',' unless nsp is NULL, "" or "/", id unless negative. The caller
 * appends the payload JSON after it. As socket.io-parser's Encoder does, the wire type
 * follows nbins: EVENT/ACK with buffers go out as BINARY_EVENT/BINARY_ACK, and
 * BINARY_EVENT/BINARY_ACK without buffers as EVENT/ACK (the reference decoder rejects
 * "0-"). Returns 0, -ENOMEM, or -EINVAL for what no decoder would accept: another type
 * with buffers, a namespace not starting with '/', holding ',' or over SIO_NSP_MAX, an
 * id over 15 digits. Nothing is appended on error. */
int sio_encode_head(buf_t *out, sio_packet_type_t type, const char *nsp, int64_t id, size_t nbins);
/* Appends a whole packet's text: the head as sio_encode_head writes it for p->nbins,
 * then p->data (if any) serialised compactly with keys in insertion order, as
 * JSON.stringify does. The buffers p->bins are not written: the caller sends each as a
 * binary message after the text. Returns as sio_encode_head; nothing is appended on
 * error. */
int sio_encode_packet(buf_t *out, const sio_packet_t *p);

#endif
