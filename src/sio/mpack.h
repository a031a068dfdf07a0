/* sio/mpack.h — MessagePack values to and from jansson values with binary placeholders.
 *
 * Parley's payloads are jansson trees where a binary value is a placeholder
 * ({"_placeholder":true,"num":N}) and the bytes travel beside the tree (sio_bin_t). Two
 * places meet MessagePack, whose binary values sit inside the tree: the Socket.IO
 * msgpack parser (sio/parser_msgpack.c) and the Redis adapter's messages
 * (cluster/redis_msg.c). This is the one conversion both use; msgpack-c does the bytes.
 *
 * msgpack-c trusts its input: it allocates a container's elements from the count in its
 * header and recurses up to its own stack size. sio_mp_check is what must pass before it
 * reads: counts within the bytes that follow, nesting bounded, the value ending exactly
 * at the end of the input.
 *
 * Ownership: a bin value read becomes a placeholder whose bytes are a slice into the
 * unpacked input (sio_mp_bins_t.v[i].data): valid as long as that input is; the caller
 * copies what must outlive it. */
#ifndef PARLEY_SIO_MPACK_H
#define PARLEY_SIO_MPACK_H

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

#include "parley/sio.h"
#include "util/buf.h"

/* Nesting (arrays and maps) msgpack-c's unpacker takes: its stack has 32 entries
 * (MSGPACK_EMBED_STACK_SIZE), one per open container, an empty one included; so
 * sio_mp_check and sio_mp_pack refuse a container inside 32 others. */
#define SIO_MP_DEPTH_MAX 32

/* The binary values met while converting, in order: slices into the unpacked input.
 * `max` is how many are allowed (one more is an error); v is malloc'd (free it). */
typedef struct {
    sio_bin_t *v;
    size_t n, max;
} sio_mp_bins_t;

/* Whether data is exactly one well-formed MessagePack value, its containers nested at most
 * depth_max (<= SIO_MP_DEPTH_MAX) deep, whose every count and length fits in the bytes that follow
 * (each element taking one byte at least). */
bool sio_mp_check(const void *data, size_t len, int depth_max);

/* MessagePack → JSON, o being a value msgpack_unpack_next read from a buffer (its bin and
 * ext values point into that buffer) and that passed sio_mp_check: nil null, booleans,
 * integers (above INT64_MAX a real), floats (NaN and infinities null, as JSON.stringify
 * writes them), strings (UTF-8 required; NUL allowed), arrays, maps (keys strings
 * without NUL, or integers made their decimal text; a key twice or a "_placeholder" key
 * refused: the latter would take an attachment's place). Binary values become
 * placeholders numbered in the order met (appended to bins; more than bins->max
 * refused): bin, and notepack.io 2's ext type 0 (an ArrayBuffer or typed array). Dates
 * become their ISO 8601 text as Date.toJSON writes it: the timestamp extension (-1,
 * notepack.io 3) and notepack.io 2's fixext 8 of type 0. notepack.io 2's undefined
 * (fixext 1 of type 0) is left out of maps and null in arrays, as JSON.stringify does;
 * other extensions are null. Returns a new reference or NULL (refused, or out of
 * memory). */
json_t *sio_mp_to_json(const msgpack_object *o, sio_mp_bins_t *bins);

/* Whether o is notepack.io 2's undefined (0xd4 0x00 0x00): what it writes for a packet
 * field set to undefined, which is then as good as absent. o as for sio_mp_to_json. */
bool sio_mp_is_undefined(const msgpack_object *o);

/* JSON → MessagePack: integers in their smallest encoding (as notepack.io writes a JS
 * integer), reals as float64, placeholders (exactly {"_placeholder":true,"num":N}) as
 * the bin value bins[N] (N past nbins: -EINVAL), objects as maps with string keys in
 * insertion order. Nesting beyond depth_max: -EINVAL. Returns 0, -EINVAL or -ENOMEM;
 * on error the packer may have written part of the value. */
int sio_mp_pack(msgpack_packer *pk, const json_t *v, const sio_bin_t *bins, size_t nbins,
                int depth_max);
/* A msgpack_packer that appends to the buf_t `out`. */
void sio_mp_packer_init(msgpack_packer *pk, buf_t *out);

#endif
