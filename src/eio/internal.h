/* eio/internal.h — what the Engine.IO files share: the session and server structures.
 *
 * server.c routes requests and owns the session table; session.c is the session's
 * lifecycle (queue, heartbeat, close); polling.c and websocket.c are the two transports.
 * Each transport hands decoded packets to eio_session_on_packet and drains the queue
 * its own way. */
#ifndef PARLEY_EIO_INTERNAL_H
#define PARLEY_EIO_INTERNAL_H

#include <errno.h>
#include <uv.h>

#include "eio/guard.h"
#include "eio/server.h"
#include "util/map.h"
#include "util/rand.h"
#include "ws/conn.h"

typedef enum { EIO_TRANSPORT_POLLING, EIO_TRANSPORT_WEBSOCKET } eio_transport_t;

/* Ordered without holes (152 bytes), what sending reads first (eio_session_send and
 * eio_session_buffered: ws, qbytes, transport, protocol, closed): one cache line. */
struct eio_session {
    eio_server_t *srv;
    ws_conn_t *ws; /* the websocket transport */
    size_t qbytes; /* memory the queued messages stand for (payload and overhead) */
    uint32_t qhead, qlen, qcap;
    int8_t due_list; /* EIO_DUE_*, or -1 when none */
    uint8_t transport;
    uint8_t protocol;     /* Engine.IO revision: 4, or 3 (cfg.allow_eio3) */
    bool b64;             /* v3 polling: the client asked for text payloads only (b64=1) */
    uint8_t get_encoding; /* the held GET's answer: an eio_encoding_t (eio/compress.h) */
    bool opened;          /* the application was told (on_open) */
    bool closed;
    bool draining; /* closed, but queued packets still go out with the next poll */
    bool probed;   /* "2probe" seen on the probe transport */
    bool awaiting_pong;
    bool flush_scheduled;
    bool free_pending; /* closed and its timer closed, waiting to leave the flush list */
    void *data;
    http_conn_t *get;  /* a held polling GET */
    char *get_headers; /* extra response lines (CORS) for the held GET, or NULL */
    ws_conn_t *probe;  /* a websocket being probed for an upgrade */
    eio_msg_t **queue; /* waiting for the next poll (or for the upgrade to finish) */
    eio_session_t *flush_next;
    eio_guard_ip_t *guard; /* its client address's entry, when limits are on */
    /* The session's one deadline (see session.c: heartbeat lists). */
    eio_session_t *due_prev, *due_next;
    uint64_t due_at; /* loop time, ms */
    char sid[RAND_ID_SIZE];
};

/* The deadlines a session can wait for. Each has a fixed duration per server, so each
 * list is in deadline order when sessions are appended at its tail. */
enum { EIO_DUE_PING, EIO_DUE_PONG, EIO_DUE_DRAIN, EIO_DUE_CLIENT_PING, EIO_DUE_LISTS };

typedef struct {
    eio_session_t *head, *tail;
} eio_due_list_t;

struct eio_server {
    eio_config_t cfg;
    char *path;
    char **cors_origins;
    eio_callbacks_t cb;
    void *arg;
    http_server_t *http;
    net_loop_t *nl;
    map_t sessions;
    eio_session_t *flush_head;
    eio_due_list_t due[EIO_DUE_LISTS];
    uv_timer_t *due_timer; /* fires at the earliest head; its own allocation (closed async) */
    uint64_t due_timer_at; /* when it is set to fire, 0: stopped */
    eio_msg_t *ping, *noop, *close, *pong_probe, *pong; /* pong: answers v3 clients' pings */
    eio_guard_t *guard;    /* per-address limits, NULL when none are set */
    ws_deflate_t *deflate; /* permessage-deflate context (one reference), NULL when off */
    char group_tag;        /* first character of this server's session ids, or '\0' */
    char sid_suffix[EIO_SID_SUFFIX_MAX + 1]; /* last characters of them (cfg.sid_suffix) */
    eio_foreign_fn foreign;
    void *foreign_arg;
    bool closing;
    bool going_away; /* eio_server_drain: no new sessions; WebSockets close with 1001 */
    uint64_t handshakes, upgrades, ended[EIO_END_REASONS]; /* eio_stats_t */
};

/* server.c: the counted reason of a session's end. */
eio_end_reason_t eio_end_reason_of(const char *reason);

/* session.c */
/* guard: the client address's entry the session takes over (NULL when limits are off). */
eio_session_t *eio_session_create(eio_server_t *srv, eio_transport_t transport,
                                  eio_guard_ip_t *guard);
void eio_session_start(eio_session_t *s, const http_req_t *req, http_conn_t *hc);
void eio_session_on_packet(eio_session_t *s, const eio_packet_t *p);
/* Ends the session. notify_client: a held GET gets "1" (server-side close) instead of
 * "6" (acknowledging the client's close). */
void eio_session_end(eio_session_t *s, const char *reason, bool notify_client);
void eio_session_schedule_flush(eio_session_t *s);
/* The server's deadline timer fired: runs what is due. */
void eio_server_due(uv_timer_t *t);
/* Ends a draining session: a held poll gets the close packet, then the memory goes. */
void eio_session_finish_drain(eio_session_t *s);
/* Releases the first n queued messages. */
void eio_session_queue_drop(eio_session_t *s, uint32_t n);
void eio_server_flush_hook(void *arg);
/* The open packet's text into out; returns its length. */
size_t eio_session_open_packet(const eio_session_t *s, char *out, size_t size);

/* polling.c */
void eio_polling_handle(eio_session_t *s, http_conn_t *hc, http_req_t *req);
void eio_polling_flush(eio_session_t *s);
/* Answers a held GET with a single packet of its own (noop or close). */
void eio_polling_release(eio_session_t *s, eio_msg_t *m);

/* websocket.c */
/* protocol: the Engine.IO revision the client asked for (3 or 4). */
void eio_websocket_handshake(eio_server_t *srv, http_conn_t *hc, http_req_t *req,
                             eio_guard_ip_t *guard, uint8_t protocol);
void eio_websocket_upgrade(eio_session_t *s, http_conn_t *hc, http_req_t *req);
/* Sends m on ws (the session's transport or its probe) as a client of `protocol` reads
 * it. Inline: it is every WebSocket delivery's. */
static inline int eio_websocket_send(ws_conn_t *ws, eio_msg_t *m, uint8_t protocol) {
    if (!ws)
        return -EPIPE;
    /* v3 binary messages lead with the type byte, which ends their own header; they go
     * uncompressed (the shared compressed twin is of the v4 form). */
    if (protocol == 3 && m->binary)
        return ws_conn_send(ws, &m->ref, m->ws3_header, m->ws3_header_len, m->data, m->len);
    return ws_conn_send_message(ws, &m->ref, &m->deflated, m->binary ? WS_OP_BINARY : WS_OP_TEXT,
                                eio_msg_ws_header(m), m->ws_header_len, m->data, m->len);
}

/* server.c */
/* CORS response lines for this request's Origin, into out; returns their length (0
 * when none apply). */
size_t eio_cors_headers(const eio_server_t *srv, const http_request_t *req, char *out, size_t size);
void eio_respond_error(eio_server_t *srv, http_conn_t *hc, const http_req_t *req, eio_error_t code);

#endif
