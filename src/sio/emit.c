/* sio/emit.c — turning an event into Engine.IO messages, once per emit.
 *
 * An emit to any number of sockets is encoded here exactly once, by the server's parser
 * (parser.h). This file is also the json parser's side of that table: the Socket.IO text
 * (type, attachment count, namespace, ack id, JSON) becomes one eio_msg_t, and each
 * binary attachment one more. The adapter then queues the same messages, by reference,
 * on every recipient. The argument array is spliced as JSON text (from jansson or from
 * the application's own pre-encoded text), never parsed again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sio/internal.h"

static int dump_cb(const char *chunk, size_t size, void *arg) {
    return buf_append(arg, chunk, size) ? -1 : 0;
}

int sio_json_dump(json_t *value, buf_t *out) {
    return json_dump_callback(value, dump_cb, out, JSON_COMPACT | JSON_ENCODE_ANY) ? -ENOMEM : 0;
}

int sio_args_dump(json_t *args, buf_t *out) {
    return json_is_array(args) ? sio_json_dump(args, out) : -EINVAL;
}

/* Appends s as a JSON string. */
static int append_json_string(buf_t *b, const char *s) {
    if (buf_reserve(b, strlen(s) + 2))
        return -ENOMEM;
    int rc = buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; rc == 0 && *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            rc = buf_append(b, esc, 2);
        } else if (*p < 0x20) {
            rc = buf_printf(b, "\\u%04x", *p);
        } else {
            rc = buf_append(b, p, 1);
        }
    }
    return rc ? rc : buf_append(b, "\"", 1);
}

/* The inside of a JSON array's text ("[1,2]" → "1,2"); false when it is not an array. */
static bool array_inner(const char *json, size_t len, const char **inner, size_t *inner_len) {
    size_t a = 0, z = len;
    while (a < z && (json[a] == ' ' || json[a] == '\n' || json[a] == '\t' || json[a] == '\r'))
        a++;
    while (z > a && (json[z - 1] == ' ' || json[z - 1] == '\n' || json[z - 1] == '\t' ||
                     json[z - 1] == '\r'))
        z--;
    if (z - a < 2 || json[a] != '[' || json[z - 1] != ']')
        return false;
    a++;
    z--;
    while (a < z && (json[a] == ' ' || json[a] == '\n' || json[a] == '\t' || json[a] == '\r'))
        a++;
    *inner = json + a;
    *inner_len = z - a;
    return true;
}

void sio_msgs_release(eio_msg_t **msgs, size_t n) {
    for (size_t i = 0; i < n; i++)
        eio_msg_release(msgs[i]);
    free(msgs);
}

static int json_encode_event(const sio_event_out_t *e, eio_msg_t ***out) {
    const char *inner;
    size_t inner_len;
    if (!array_inner(e->args_json, e->args_len, &inner, &inner_len))
        return -EINVAL;
    const char *event = e->event;
    const char *offset = e->offset;
    size_t nbins = e->nbins;
    sio_packet_type_t type = e->type;
    if (nbins)
        type = type == SIO_ACK ? SIO_BINARY_ACK : SIO_BINARY_EVENT;
    buf_t b = {0};
    int rc = sio_encode_head(&b, type, e->nsp, e->id, nbins);
    if (rc == 0)
        rc = buf_append(&b, "[", 1);
    if (rc == 0 && event)
        rc = append_json_string(&b, event);
    if (rc == 0 && inner_len)
        rc = (event ? buf_append(&b, ",", 1) : 0) || buf_append(&b, inner, inner_len);
    if (rc == 0 && offset) {
        rc = (event || inner_len ? buf_append(&b, ",", 1) : 0) || append_json_string(&b, offset);
    }
    if (rc == 0)
        rc = buf_append(&b, "]", 1);
    eio_msg_t **msgs = rc == 0 ? calloc(1 + nbins, sizeof *msgs) : NULL;
    if (!msgs) {
        buf_free(&b);
        return rc == -EINVAL ? -EINVAL : -ENOMEM;
    }
    size_t n = 0;
    msgs[n] = eio_msg_new(EIO_MESSAGE, false, b.data, b.len);
    buf_free(&b);
    if (msgs[n])
        n++;
    for (size_t i = 0; n == i + 1 && i < nbins; i++)
        if ((msgs[n] = eio_msg_new(EIO_MESSAGE, true, e->bins[i].data, e->bins[i].len)))
            n++;
    if (n != 1 + nbins) {
        sio_msgs_release(msgs, n);
        return -ENOMEM;
    }
    *out = msgs;
    return (int)n;
}

static int json_encode_control(sio_packet_type_t type, const char *nsp, const json_t *data,
                               eio_msg_t **msg) {
    buf_t b = {0};
    int rc = sio_encode_head(&b, type, nsp, -1, 0);
    /* sio_json_dump wants a non-const value; dumping does not modify it. */
    if (rc == 0 && data)
        rc = sio_json_dump((json_t *)data, &b);
    if (rc == 0 && !(*msg = eio_msg_new(EIO_MESSAGE, false, b.data, b.len)))
        rc = -ENOMEM;
    buf_free(&b);
    return rc;
}

static sio_decode_result_t json_decode(sio_decoder_t *d, const uint8_t *data, size_t len,
                                       bool binary, sio_packet_t *out) {
    return binary ? sio_decode_binary(d, data, len, out)
                  : sio_decode_text(d, (const char *)data, len, out);
}

const sio_parser_t sio_parser_json = {
    .name = "json",
    .encode_event = json_encode_event,
    .encode_control = json_encode_control,
    .decode = json_decode,
};

const sio_parser_t *sio_parser_of(sio_parser_kind_t kind) {
    switch (kind) {
    case SIO_PARSER_JSON:
        return &sio_parser_json;
    case SIO_PARSER_MSGPACK:
        return &sio_parser_msgpack;
    }
    return NULL;
}

int sio_encode_event(const sio_nsp_t *nsp, sio_packet_type_t type, int64_t id, const char *event,
                     const char *args_json, size_t args_len, const sio_bin_t *bins, size_t nbins,
                     const char *offset, eio_msg_t ***out) {
    sio_event_out_t e = {.type = type,
                         .nsp = nsp->name,
                         .id = id,
                         .event = event,
                         .args_json = args_json,
                         .args_len = args_len,
                         .bins = bins,
                         .nbins = nbins,
                         .offset = offset};
    return nsp->io->parser->encode_event(&e, out);
}

int sio_encode_control(const sio_server_t *io, sio_packet_type_t type, const char *nsp,
                       const json_t *data, eio_msg_t **msg) {
    return io->parser->encode_control(type, nsp, data, msg);
}
