/* cluster/redis_msg.h — the messages of socket.io's Redis adapter, in and out.
 *
 * Node.js socket.io nodes with @socket.io/redis-adapter 8.x talk over Redis pub/sub in
 * MessagePack (notepack.io) and, for most requests and responses, JSON. A Parley node
 * must read and write the same bytes:
 *
 *   broadcast   MessagePack [uid, packet, opts] on "<key>#<nsp>#" (or "...#<room>#" when
 *               exactly one room is targeted): packet {type: 2, data: [event, ...args],
 *               nsp}, opts {rooms: [...], except: [...], flags: {volatile, local, ...}}.
 *               Binary arguments are MessagePack bin values where Socket.IO has
 *               placeholders.
 *   requests    on "<key>-request#<nsp>#": JSON when the first byte is '{', else a
 *               MessagePack map; responses on "<key>-response#<nsp>#" likewise.
 *
 * Parley keeps a Socket.IO payload as the JSON text of its arguments with placeholders
 * ({"_placeholder":true,"num":N}) and a list of attachments; this module converts
 * between that and MessagePack. MessagePack comes from msgpack-c; what is checked here
 * is everything msgpack-c trusts: counts larger than the bytes that follow are refused
 * before msgpack-c allocates for them, nesting is bounded, and maps with keys other than
 * strings or numbers are refused.
 *
 * Ownership: decoded values are new references with their attachments copied
 * (rmsg_bins_t, freed with rmsg_bins_free). */
#ifndef PARLEY_CLUSTER_REDIS_MSG_H
#define PARLEY_CLUSTER_REDIS_MSG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "sio/adapter.h"
#include "util/buf.h"

/* How deep a message may nest (arrays and maps), and how many binary values it may
 * hold; more is refused. */
#define RMSG_DEPTH_MAX 32
#define RMSG_BINS_MAX 256

typedef struct {
    sio_bin_t *v;
    size_t n;
} rmsg_bins_t;

void rmsg_bins_free(rmsg_bins_t *b);

/* MessagePack → JSON: bin values become placeholders, their bytes appended to bins;
 * ext values become null, except the timestamp extension (a JavaScript Date), which
 * becomes its ISO 8601 text as JSON.stringify writes it. Map keys that are numbers
 * become their decimal text. Returns a new reference, or NULL when data is not exactly
 * one well-formed MessagePack value, holds a string that is not UTF-8, a map with a
 * "_placeholder" key (it would take an attachment's place) or a key twice, or out of
 * memory. */
json_t *rmsg_unpack(const void *data, size_t len, rmsg_bins_t *bins);

/* JSON → MessagePack, appended to out: placeholders become bin values taken from bins
 * (an index past nbins: -EINVAL); integers in their smallest encoding, reals as float64.
 * Returns 0, -EINVAL or -ENOMEM. */
int rmsg_pack(buf_t *out, const json_t *v, const sio_bin_t *bins, size_t nbins);

/* A broadcast as the adapter publishes it: [uid, {type: 2, data: [event, ...args], nsp},
 * {rooms, except, flags}]. with_request: instead the map of a BROADCAST request
 * {uid, requestId, type: 7, packet, opts} (a broadcast with acknowledgements). */
int rmsg_pack_bcast(buf_t *out, const char *uid, const char *nsp, const sio_bcast_t *b,
                    const char *request_id);

/* The cluster protocol of socket.io-adapter (ClusterAdapter), which the Redis adapter's
 * sharded mode speaks: every message is {uid, nsp, type, data}, JSON unless it holds
 * binary, then MessagePack. Its types: */
enum {
    RMSG_CLUSTER_INITIAL_HEARTBEAT = 1,
    RMSG_CLUSTER_HEARTBEAT = 2,
    RMSG_CLUSTER_BROADCAST = 3,
    RMSG_CLUSTER_SOCKETS_JOIN = 4,
    RMSG_CLUSTER_SOCKETS_LEAVE = 5,
    RMSG_CLUSTER_DISCONNECT_SOCKETS = 6,
    RMSG_CLUSTER_FETCH_SOCKETS = 7,
    RMSG_CLUSTER_FETCH_SOCKETS_RESPONSE = 8,
    RMSG_CLUSTER_SERVER_SIDE_EMIT = 9,
    RMSG_CLUSTER_SERVER_SIDE_EMIT_RESPONSE = 10,
    RMSG_CLUSTER_BROADCAST_CLIENT_COUNT = 11,
    RMSG_CLUSTER_BROADCAST_ACK = 12,
    RMSG_CLUSTER_ADAPTER_CLOSE = 13,
};

/* A broadcast in the cluster protocol: {uid, nsp, type: 3, data: {packet, opts,
 * requestId?}}, JSON text unless it has attachments. */
int rmsg_pack_cluster_bcast(buf_t *out, const char *uid, const char *nsp, const sio_bcast_t *b,
                            const char *request_id);

/* msg as JSON text when there are no attachments, else as MessagePack (as rmsg_pack). */
int rmsg_encode(buf_t *out, const json_t *msg, const sio_bin_t *bins, size_t nbins);

/* A message that is JSON text when its first byte is '{' (a key given twice is refused),
 * else MessagePack (as rmsg_unpack; *bins set either way). NULL when malformed. */
json_t *rmsg_decode(const void *data, size_t len, rmsg_bins_t *bins);

/* A broadcast read back: its parts (strings owned by `arena`), in sio_bcast_t form. */
typedef struct {
    char *uid;
    char *nsp;
    char *request_id; /* BROADCAST requests only */
    sio_bcast_t b;
    json_t *msg;      /* the whole message, as JSON */
    char *args;       /* b.args_json */
    char *event;      /* b.event */
    rmsg_bins_t bins; /* b.bins */
} rmsg_bcast_t;

/* Reads a broadcast ([uid, packet, opts]) or, when it is a map, a BROADCAST request, or
 * a cluster protocol BROADCAST (with or without requestId), JSON or MessagePack.
 * Returns 0, -EINVAL (not one: the reason is logged by the caller) or -ENOMEM. */
int rmsg_bcast_decode(const void *data, size_t len, rmsg_bcast_t *out);
/* The same from a message already decoded (rmsg_decode): msg and *bins are taken over
 * (out holds them; both freed by rmsg_bcast_free, also on failure). */
int rmsg_bcast_from(json_t *msg, rmsg_bins_t *bins, rmsg_bcast_t *out);
void rmsg_bcast_free(rmsg_bcast_t *m);

/* The rooms of a JSON array (strings, or integers: made their decimal text in place) as
 * a target's list: *out (free it) points into the array's strings. NULL or null: none. */
int rmsg_rooms(json_t *list, const char ***out, size_t *n);

#endif
