/* parley/eio.h — Engine.IO v4 server: sessions over long-polling and WebSocket, the
 * polling→websocket upgrade, heartbeats.
 *
 * An eio_server_t attaches to an http_server_t (parley/http.h) under a path (default
 * "/engine.io/"; Socket.IO uses "/socket.io/") and owns every session it creates. The
 * application sees sessions through callbacks: opened (with the handshake request), a
 * message (text or binary), closed (with a reason).
 *
 * Reasons given to on_close follow engine.io's names: "transport close" (the client
 * closed or its connection dropped), "transport error", "parse error", "ping timeout",
 * "forced close" (eio_session_close), "server shutting down" (eio_server_close).
 *
 * Ownership: sessions belong to the server; an eio_session_t is valid until its
 * on_close returns. Data passed to callbacks is valid during the call only. */
#ifndef PARLEY_EIO_H
#define PARLEY_EIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parley/http.h"

#pragma GCC visibility push(default)

typedef struct eio_server eio_server_t;
typedef struct eio_session eio_session_t;

/* Engine.IO error codes, answered as {"code":N,"message":...} with HTTP 400 (403 for
 * EIO_ERR_FORBIDDEN). */
typedef enum {
    EIO_ERR_UNKNOWN_TRANSPORT = 0,
    EIO_ERR_UNKNOWN_SID = 1,
    EIO_ERR_BAD_HANDSHAKE_METHOD = 2,
    EIO_ERR_BAD_REQUEST = 3,
    EIO_ERR_FORBIDDEN = 4,
    EIO_ERR_UNSUPPORTED_PROTOCOL_VERSION = 5,
} eio_error_t;

/* Protection against what browsers on other sites and single addresses can do; part of
 * both eio_config_t and sio_config_t. All off by default. */
typedef struct {
    /* Cross-site browser requests: when set (and cors_origins is not "*"), a request whose
     * Origin is neither in cors_origins nor the server's own (the Host it was sent to) is
     * refused with 403. Clients that send no Origin (not browsers) are unaffected. */
    bool check_origin;
    /* Per client address (the TCP peer, or the X-Forwarded-For hop that a trusted proxy
     * recorded): open sessions at most (503 above) and handshakes per second with bursts
     * of handshake_burst (429 above). 0: no limit. */
    size_t max_sessions_per_ip;
    uint32_t handshake_rate;
    uint32_t handshake_burst;           /* 0: handshake_rate */
    const char *const *trusted_proxies; /* addresses whose X-Forwarded-For is believed */
    size_t trusted_proxy_count;
} eio_limits_t;

#define EIO_SID_SUFFIX_MAX 4

typedef struct {
    const char *path;                /* "/engine.io/" */
    uint32_t ping_interval;          /* ms (25000) */
    uint32_t ping_timeout;           /* ms (20000) */
    uint32_t upgrade_timeout;        /* ms a probe may take before it is dropped (10000) */
    size_t max_payload;              /* bytes per polling POST and per message (1000000) */
    size_t ws_max_message;           /* bytes per WebSocket message; 0: max_payload */
    bool allow_websocket;            /* offer and accept the websocket transport (true) */
    bool allow_polling;              /* accept long-polling (true) */
    const char *const *cors_origins; /* allowed Origins, "*" for any; NULL/0: no CORS */
    size_t cors_origin_count;
    bool cookie; /* Set-Cookie io=<sid> on the handshake, for sticky LBs */
    /* Ends every session id (1 to EIO_SID_SUFFIX_MAX base64url characters), so that a
     * balancer can send the requests of a session to the node that made it by its `sid`
     * (docs/deploy/nginx-sid.conf). NULL: none. */
    const char *sid_suffix;
    bool peer_address; /* look the client's address up for on_open (true); false: "" */
    eio_limits_t limits;
    /* permessage-deflate (RFC 7692) on WebSocket connections whose client offers it; off
     * by default, as in engine.io (it costs CPU per message: see docs/DESIGN.md). The server
     * compresses each message on its own (server_no_context_takeover), once however many
     * sessions receive it, and only from ws_deflate_threshold bytes up (1024). Clients are
     * asked to do the same (client_no_context_takeover) unless ws_deflate_client_context
     * is set, which lets a client that does not offer it keep its context at the price of
     * an inflate stream (~40 KiB) per such connection. */
    size_t ws_deflate_threshold;
    bool ws_deflate;
    bool ws_deflate_client_context;
    /* Accept Engine.IO v3 clients (socket.io 2; engine.io's allowEIO3): the client sends
     * the pings, v3 polling framing (eio/packet3.h). Off: EIO=3 is refused (code 5). */
    bool allow_eio3;
    /* Long-polling responses of at least this many bytes are compressed with gzip or
     * deflate when the request's Accept-Encoding allows (engine.io's httpCompression, on
     * by default there too). 0: never. (1024) */
    size_t http_compression_threshold;
} eio_config_t;

void eio_config_defaults(eio_config_t *cfg);

typedef struct {
    /* Handshake gate: return 0 to accept, or an eio_error_t (usually
     * EIO_ERR_FORBIDDEN) to refuse. NULL accepts everything. */
    int (*allow_request)(const http_req_t *req, void *arg);
    /* A session is open; req is the handshake request and address the client's IP
     * address (both valid during the call). */
    void (*on_open)(eio_session_t *s, const http_req_t *req, const char *address, void *arg);
    /* A message; data is writable and valid during the call only. */
    void (*on_message)(eio_session_t *s, uint8_t *data, size_t len, bool binary, void *arg);
    /* The session is over; it must not be used after this returns. */
    void (*on_close)(eio_session_t *s, const char *reason, void *arg);
    /* The session moved from polling to WebSocket (may be NULL). */
    void (*on_upgrade)(eio_session_t *s, void *arg);
} eio_callbacks_t;

/* Creates the server and registers its route on `http`. cfg and cb are copied. */
int eio_server_new(http_server_t *http, const eio_config_t *cfg, const eio_callbacks_t *cb,
                   void *arg, eio_server_t **out);
/* Closes every session ("server shutting down"): a WebSocket gets close code 1001 (going
 * away), a held poll the close packet; no packet of the layers above is sent, so clients
 * take it for a lost transport and reconnect. Frees the server once their
 * handles are closed (run the loop). The HTTP server is not closed. */
void eio_server_close(eio_server_t *srv);
/* The start of a drain: no new sessions (a handshake is answered 503), and every session
 * ends ("server shutting down") as eio_server_close ends them, except that a polling
 * session's queued packets (acks) still go out with its next poll, before the close
 * packet. Sessions still draining so are ended by eio_server_close. */
void eio_server_drain(eio_server_t *srv);
size_t eio_server_session_count(const eio_server_t *srv);

/* Why sessions ended, as counted (the reasons Engine.IO gives; anything else is OTHER). */
typedef enum {
    EIO_END_TRANSPORT_CLOSE,
    EIO_END_TRANSPORT_ERROR,
    EIO_END_PING_TIMEOUT,
    EIO_END_PARSE_ERROR,
    EIO_END_FORCED_CLOSE,
    EIO_END_SERVER_SHUTTING_DOWN,
    EIO_END_OTHER,
    EIO_END_REASONS
} eio_end_reason_t;
/* The reason's text ("transport close", …, "other"). */
const char *eio_end_reason_name(eio_end_reason_t r);

/* Counters since the server started, and the sessions as they are now (walked: call it
 * once per scrape, not per message). */
typedef struct {
    uint64_t handshakes; /* sessions opened */
    uint64_t upgrades;   /* polling sessions moved to WebSocket */
    uint64_t ended[EIO_END_REASONS];
    size_t polling, websocket; /* open sessions by transport */
    size_t polls_held;         /* long-polling GETs waiting */
    /* permessage-deflate: deflate runs (one per message, however many sessions get it),
     * compressed frames queued (one per session), the payload bytes before and after of
     * what was deflated, compressed messages received, per-connection inflate streams
     * and the bytes zlib holds now. */
    uint64_t ws_deflated, ws_deflated_frames, ws_deflate_bytes_in, ws_deflate_bytes_out;
    uint64_t ws_inflated;
    size_t ws_inflaters, ws_zlib_bytes;
} eio_stats_t;
void eio_server_stats(const eio_server_t *srv, eio_stats_t *out);

/* Sends a message packet with a copy of data. Returns 0, -EPIPE when the session is
 * closed, or -ENOMEM. */
int eio_session_send_message(eio_session_t *s, const void *data, size_t len, bool binary);
/* Server-initiated close: on_close follows with "forced close". */
void eio_session_close(eio_session_t *s);

const char *eio_session_id(const eio_session_t *s);
void *eio_session_data(const eio_session_t *s);
void eio_session_set_data(eio_session_t *s, void *data);
/* "polling" or "websocket". */
const char *eio_session_transport(const eio_session_t *s);
/* The protocol revision the client speaks: 4, or 3 (allow_eio3). */
int eio_session_protocol(const eio_session_t *s);
/* Bytes written to the transport but not yet taken by the kernel, plus the memory of
 * the packets queued for the next poll (payload and per-packet overhead): the
 * backpressure signal. */
size_t eio_session_buffered(const eio_session_t *s);
/* Whether a packet sent now would go out without waiting: a poll is held (polling), or
 * less than EIO_WRITABLE_BYTES are waiting (websocket). */
#define EIO_WRITABLE_BYTES 65536
bool eio_session_writable(const eio_session_t *s);

#pragma GCC visibility pop

#endif
