/* cluster/proto.h — what workers and their supervisor say to each other.
 *
 * Frames (cluster/wire.h) of these types:
 *   READY      worker → supervisor   u32 worker id: it listens and is attached
 *   BCAST      worker → others       a Socket.IO broadcast (proto_bcast_t)
 *   ROOMS      worker → others       socketsJoin / socketsLeave / disconnectSockets
 *   HANDOFF    worker → owner        u8 owner id, the request's bytes, and (flag
 *                                    CHANNEL_F_HANDLE) its TCP connection
 * The supervisor forwards BCAST and ROOMS to every other worker as they are (the frame
 * is encoded once by its sender) and HANDOFF to its owner. */
#ifndef PARLEY_CLUSTER_PROTO_H
#define PARLEY_CLUSTER_PROTO_H

#include "cluster/wire.h"
#include "sio/adapter.h"

enum {
    PROTO_READY = 1,
    PROTO_BCAST = 2,
    PROTO_ROOMS = 3,
    PROTO_HANDOFF = 4,
};

/* The operations a ROOMS frame carries. */
enum { PROTO_ROOMS_JOIN = 1, PROTO_ROOMS_LEAVE = 2, PROTO_ROOMS_DISCONNECT = 3 };

/* The most rooms or except rooms one broadcast may name across processes. */
#define PROTO_ROOMS_MAX 1024

/* A decoded BCAST or ROOMS frame. Strings are copied into `arena` (owned; free with
 * proto_msg_free); bins point into the frame. */
typedef struct {
    char *nsp;
    sio_bcast_t b;     /* BCAST: the event, arguments, attachments and target */
    uint8_t op;        /* ROOMS: PROTO_ROOMS_* */
    const char *room;  /* ROOMS join/leave */
    bool close;        /* ROOMS disconnect */
    char *arena;       /* every string above */
    sio_bin_t *bins;   /* b.bins */
    const char **list; /* b.to.rooms then b.to.except */
} proto_msg_t;

int proto_bcast_encode(buf_t *out, const char *nsp, const sio_bcast_t *b);
int proto_rooms_encode(buf_t *out, const char *nsp, uint8_t op, const sio_target_t *which,
                       const char *room, bool close);
/* Decodes a whole BCAST or ROOMS frame. Returns 0 or -EINVAL (malformed) / -ENOMEM. */
int proto_msg_decode(const uint8_t *frame, size_t size, proto_msg_t *out);
void proto_msg_free(proto_msg_t *m);

#endif
