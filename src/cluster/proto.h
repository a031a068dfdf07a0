/* cluster/proto.h — what workers and their supervisor say to each other.
 *
 * Frames (cluster/wire.h) of these types:
 *   READY      worker → supervisor   u32 worker id: it listens and is attached
 *   BCAST      worker → others       a Socket.IO broadcast (proto_bcast_t)
 *   ROOMS      worker → others       socketsJoin / socketsLeave / disconnectSockets
 *   HANDOFF    worker → owner        u8 owner id, the request's bytes, and (flag
 *                                    CHANNEL_F_HANDLE) its TCP connection
 *   REQ, FANOUT, REPLY, GONE             requests to other workers (cluster/request.h)
 * The supervisor forwards BCAST and ROOMS to every other worker as they are (the frame
 * is encoded once by its sender), HANDOFF to its owner, REQ to the workers asked and
 * REPLY to the asker. */
#ifndef PARLEY_CLUSTER_PROTO_H
#define PARLEY_CLUSTER_PROTO_H

#include "cluster/wire.h"
#include "sio/adapter.h"

enum {
    PROTO_READY = 1,
    PROTO_BCAST = 2,
    PROTO_ROOMS = 3,
    PROTO_HANDOFF = 4,
    /* Requests and their replies (cluster/request.h). */
    PROTO_REQ = 5,
    PROTO_FANOUT = 6,
    PROTO_REPLY = 7,
    PROTO_GONE = 8,
};

/* The operations a ROOMS frame carries (FETCH only inside a request: fetchSockets). */
enum {
    PROTO_ROOMS_JOIN = 1,
    PROTO_ROOMS_LEAVE = 2,
    PROTO_ROOMS_DISCONNECT = 3,
    PROTO_ROOMS_FETCH = 4,
};

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

/* A recovery session, and with it (in the answer to a RESTORE request) the packets it
 * missed: found (u8), pid, sid, rooms (u32 count + strings), data (JSON text), age in ms,
 * then packets (u32 count; each: u32 messages; each: u8 type, u8 binary, bytes payload).
 * ss NULL writes "none". now_ms: the clock disconnected_ms is read against. */
int proto_session_encode(buf_t *out, const sio_session_t *ss, uint64_t now_ms,
                         sio_logged_t *const *missed, size_t nmissed);
/* Reads one from r: *ss NULL when it says none; *missed an array of *nmissed packets
 * (their messages made anew), all owned by the caller (proto_missed_free). Returns 0,
 * -EINVAL when malformed, -ENOMEM. */
int proto_session_decode(wire_reader_t *r, uint64_t now_ms, sio_session_t **ss,
                         sio_logged_t ***missed, size_t *nmissed);
void proto_missed_free(sio_logged_t **missed, size_t n);

#endif
