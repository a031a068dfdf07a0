/* sio/parser.h — the codec seam: Socket.IO packets to Engine.IO messages and back.
 *
 * socket.io has two parsers a server and its clients agree on, and Parley both:
 *   json     the default (socket.io-parser; sio/packet.c, emit.c): a text message
 *            "2/chat,7[...]", then one binary message per attachment, the JSON holding
 *            {"_placeholder":true,"num":N} where each goes;
 *   msgpack  socket.io-msgpack-parser 3 (sio/parser_msgpack.c): the whole packet one
 *            MessagePack map {type, nsp, data, id} in one binary message, binary values
 *            inside it as MessagePack bin.
 * A server uses one for all its connections (sio_config_t.parser), as socket.io does;
 * the rest of sio asks this table and never which parser it is.
 *
 * Out: a packet as the rest of sio holds it — an event's arguments as JSON array text
 * (the adapter's currency, so a broadcast from another process needs no parse in the
 * json parser), a control packet's payload as a jansson value — is encoded once into
 * reference-counted eio_msg_t that any number of sessions queue by reference. In: each
 * Engine.IO message of a connection is fed to its decoder; the packet that comes out is
 * the same for both parsers (jansson tree, placeholders, buffers beside it), so handlers
 * never know which parser carried it. */
#ifndef PARLEY_SIO_PARSER_H
#define PARLEY_SIO_PARSER_H

#include "eio/packet.h"
#include "parley/sio.h"
#include "sio/packet.h"

/* An EVENT or ACK to encode. Everything is borrowed for the call. */
typedef struct {
    sio_packet_type_t type; /* SIO_EVENT or SIO_ACK; the binary types follow nbins */
    const char *nsp;        /* "/..." */
    int64_t id;             /* ack id, -1 when none */
    const char *event;      /* EVENT: the name, put first in the data; NULL for ACK */
    const char *args_json;  /* the arguments: the text of a JSON array */
    size_t args_len;
    const sio_bin_t *bins; /* what the placeholders in the arguments refer to */
    size_t nbins;
    const char *offset; /* non-NULL: appended as a last string argument (recovery) */
} sio_event_out_t;

typedef struct {
    const char *name;
    /* Returns the number of messages (>= 1) put in *msgs, a new array (release with
     * sio_msgs_release), or -EINVAL (arguments not an array, a name or namespace no
     * client would take) or -ENOMEM. */
    int (*encode_event)(const sio_event_out_t *e, eio_msg_t ***msgs);
    /* A packet without binary: CONNECT, DISCONNECT or CONNECT_ERROR; data borrowed, NULL
     * for none. *msg is one new message (caller releases). 0, -EINVAL or -ENOMEM. */
    int (*encode_control)(sio_packet_type_t type, const char *nsp, const json_t *data,
                          eio_msg_t **msg);
    /* Feeds one received Engine.IO message; data is borrowed for the call. Results and
     * ownership of *out as sio_decode_text's. */
    sio_decode_result_t (*decode)(sio_decoder_t *d, const uint8_t *data, size_t len, bool binary,
                                  sio_packet_t *out);
} sio_parser_t;

extern const sio_parser_t sio_parser_json;
extern const sio_parser_t sio_parser_msgpack;

/* The table for kind; NULL for a value that names no parser. */
const sio_parser_t *sio_parser_of(sio_parser_kind_t kind);

/* ---- the msgpack parser's packet codec, beside sio_decode_text/sio_encode_packet ---- */

/* Decodes one message: it must be binary and exactly one MessagePack map, nested at most
 * SIO_MP_DEPTH_MAX deep, with "type" an integer 0..4, "nsp" a string starting with '/'
 * (at most SIO_NSP_MAX bytes, no NUL), "id" absent or an integer 0..SIO_ID_MAX, "data" as
 * sio/mpack.h converts it (bin values become placeholders, at most d->max_attachments of
 * them, only in EVENT and ACK); other keys are ignored (the official client sends
 * "options"), a known key twice is refused. EVENT/ACK carrying buffers come out as
 * BINARY_EVENT/BINARY_ACK with the buffers copied into p->bins, as the json parser
 * delivers them; the payload must pass sio_packet_validate. Never SIO_DECODE_MORE. */
sio_decode_result_t sio_msgpack_decode(sio_decoder_t *d, const uint8_t *data, size_t len,
                                       bool binary, sio_packet_t *out);
/* Appends p as the map {type, nsp, data, id} (data and id only when present; BINARY_EVENT
 * and BINARY_ACK written as EVENT and ACK, their placeholders as bin values from
 * p->bins). -EINVAL for what sio_msgpack_decode would refuse (buffers in another type, a
 * bad namespace or id, a placeholder past nbins), -ENOMEM; out is unchanged on error. */
int sio_msgpack_encode_packet(buf_t *out, const sio_packet_t *p);

#endif
