/* cluster/request.h — asking the other workers and gathering their answers.
 *
 * Some operations need an answer from every other worker (fetchSockets, serverSideEmit
 * with acknowledgements, a broadcast with acknowledgements) or from one (the worker that
 * keeps a recovery session). A request goes to the supervisor, which passes it on to the
 * workers that are running and tells the asker which those are (a FANOUT frame, sent
 * before the request is passed on, so it arrives before any reply). Each of them replies
 * once or more; its last reply is marked final. A worker that exits before its final
 * reply is reported by the supervisor (GONE), after whatever it had sent. So a request
 * ends — every asked worker done, or its timeout — whatever happens to the others.
 *
 *   REQ     worker → supervisor → workers   u32 to (0: all others), u32 origin, u32 id,
 *                                           u8 kind, bytes body
 *   FANOUT  supervisor → origin             u32 id, u32 mask of the workers asked
 *   REPLY   worker → supervisor → origin    u32 origin, u32 id, u32 from, u8 final,
 *                                           bytes body
 *   GONE    supervisor → workers            u32 the worker that exited
 *
 * Ownership: a request is the caller's until done is called; it is freed after. */
#ifndef PARLEY_CLUSTER_REQUEST_H
#define PARLEY_CLUSTER_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parley/cluster.h"

typedef struct creq creq_t;

/* What kinds of request a worker answers: the cluster's own, then the program's. */
enum {
    CREQ_BCAST_ACK = 1,   /* a broadcast with acknowledgements (body: a BCAST frame) */
    CREQ_FETCH = 2,       /* fetchSockets (body: a ROOMS frame naming the sockets) */
    CREQ_SERVER_EMIT = 3, /* serverSideEmit (body: a BCAST frame, no target) */
    CREQ_RESTORE = 4,     /* a recovery session and the packets it missed */
    CREQ_RETURN = 5,      /* a lent recovery session given back (no answer) */
    CREQ_KINDS = 16,
};

typedef struct {
    /* A reply from worker `from`: its body, valid during the call. */
    void (*reply)(creq_t *q, unsigned from, const uint8_t *body, size_t len, void *arg);
    /* Worker `from` exited before its final reply (may be NULL). */
    void (*gone)(creq_t *q, unsigned from, void *arg);
    /* Once: every asked worker sent its final reply or is gone (err 0), or timeout_ms
     * passed first (-ETIMEDOUT), or the supervisor is lost (-EPIPE). */
    void (*done)(creq_t *q, int err, void *arg);
} creq_cb_t;

/* Asks worker `to` (0: every other running worker) to do a request of `kind`. cb and
 * arg are kept until done; body is copied. timeout_ms 0: none. Returns 0 (done will be
 * called, never from within this call) or a negative error. */
int creq_start(parley_worker_t *w, unsigned to, uint8_t kind, const void *body, size_t len,
               uint32_t timeout_ms, const creq_cb_t *cb, void *arg);

/* Where a request came from, to answer it. */
typedef struct {
    unsigned origin;
    uint32_t id;
} creq_from_t;

/* Answers a request (final: the last answer of this worker). Returns 0 or an error (the
 * asker then hears of this worker by its timeout, or GONE). */
int creq_reply(parley_worker_t *w, const creq_from_t *from, bool final, const void *body,
               size_t len);

/* A worker's answerer of a kind of request: it must call creq_reply with final set once
 * (now or later), except for kinds that want no answer. */
typedef void (*creq_handler_fn)(parley_worker_t *w, const creq_from_t *from, const uint8_t *body,
                                size_t len, void *arg);
void creq_handle(parley_worker_t *w, uint8_t kind, creq_handler_fn fn, void *arg);

/* The worker's side of the frames (worker.c passes them on). */
void creq_on_request(parley_worker_t *w, const uint8_t *frame, size_t size);
void creq_on_fanout(parley_worker_t *w, const uint8_t *frame, size_t size);
void creq_on_reply(parley_worker_t *w, const uint8_t *frame, size_t size);
void creq_on_gone(parley_worker_t *w, const uint8_t *frame, size_t size);
/* The supervisor is lost: every request ends with -EPIPE. */
void creq_fail_all(parley_worker_t *w);

#endif
