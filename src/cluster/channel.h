/* cluster/channel.h — one end of a channel between two processes of one machine.
 *
 * A channel is a Unix socketpair end opened as a libuv IPC pipe, carrying frames in the
 * format of cluster/wire.h. Because it is an IPC pipe, a frame can carry an open TCP
 * connection with it (the kernel passes the descriptor): that is how a request that
 * reached the wrong worker is handed to the worker that owns its session.
 *
 * Sending copies the frame into the channel's output buffer; everything queued during a
 * loop iteration goes out in one write just before the loop waits (as net/conn.c does
 * for sockets). Receiving accumulates bytes until whole frames are there and hands each
 * to on_frame. A frame whose type has CHANNEL_F_HANDLE set carries a connection: the
 * receiver takes it with channel_accept during on_frame. The channel owns its memory;
 * channel_close frees it once libuv has closed the pipe. Loop thread only. */
#ifndef PARLEY_CLUSTER_CHANNEL_H
#define PARLEY_CLUSTER_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Set in a frame's type byte when the frame carries a TCP connection. */
#define CHANNEL_F_HANDLE 0x80
/* Bytes queued and unwritten past which the peer is considered stuck and the channel
 * is closed: a process does not hold unbounded memory for another. */
#define CHANNEL_OUTPUT_MAX (256u << 20)

typedef struct channel channel_t;

typedef struct {
    /* A whole frame, header included, valid during the call only. */
    void (*on_frame)(channel_t *ch, const uint8_t *frame, size_t size, void *arg);
    /* The peer closed, or the channel failed; the channel is being freed. */
    void (*on_close)(channel_t *ch, void *arg);
} channel_cb_t;

/* Opens fd (a socketpair end; the channel owns it from now on) on loop. */
int channel_open(uv_loop_t *loop, int fd, const channel_cb_t *cb, void *arg, channel_t **out);
/* Queues a copy of one or more whole frames. Returns 0, -EPIPE once closing, -ENOMEM,
 * or -ENOBUFS when the peer is stuck (the channel is then closed). */
int channel_send(channel_t *ch, const void *frames, size_t len);
/* Sends one frame with the connection `tcp` (its type must have CHANNEL_F_HANDLE); the
 * frames queued before it go first. done(status, arg) runs once the kernel has the
 * descriptor: the caller then closes its own handle (the peer has a copy). */
int channel_send_handle(channel_t *ch, const void *frame, size_t len, uv_tcp_t *tcp,
                        void (*done)(int status, void *arg), void *arg);
/* The same with a connection known by its descriptor (borrowed: the channel sends a
 * copy of its own, so the caller may close fd once done runs). */
int channel_send_fd(channel_t *ch, const void *frame, size_t len, int fd,
                    void (*done)(int status, void *arg), void *arg);
/* From on_frame of a frame with CHANNEL_F_HANDLE: the connection it carries, into an
 * initialised uv_tcp_t. */
int channel_accept(channel_t *ch, uv_tcp_t *tcp);
/* The same, as a descriptor of the caller's (*fd). */
int channel_accept_fd(channel_t *ch, int *fd);
void channel_close(channel_t *ch);

#endif
