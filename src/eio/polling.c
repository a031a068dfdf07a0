/* eio/polling.c — the HTTP long-polling transport.
 *
 * GET: answered at once when packets are queued, otherwise held until the flush hook
 * finds something queued (the heartbeat's ping at the latest). A held GET's response
 * is one writev: the head, then every queued packet by reference, joined by 0x1e.
 * POST: the body is decoded in place and each packet handed to the session; "ok".
 * A second GET while one is held is a protocol violation that ends the session, as is a
 * malformed POST. */
#include "eio/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eio/compress.h"
#include "eio/packet3.h"
#include "util/log.h"

static const uint8_t separator = EIO_RECORD_SEPARATOR;

#define POLL_CONTENT_TYPE "Content-Type: text/plain; charset=UTF-8\r\n"

/* The per-packet prefixes of one v3 response, one allocation that the connection's
 * write queue holds by reference like the messages. */
typedef struct {
    ref_t ref;
    uint8_t bytes[];
} prefixes_t;

static void prefixes_destroy(ref_t *r) {
    free(r);
}

/* Whether this response is compressed: the client accepts an encoding and the body is at
 * least the threshold (engine.io's httpCompression). */
static bool compress_wanted(const eio_session_t *s, size_t total) {
    size_t threshold = s->srv->cfg.http_compression_threshold;
    return s->get_encoding != EIO_ENC_NONE && threshold > 0 && total >= threshold;
}

/* The response head: the content type, the held GET's own lines, the encoding. */
static int send_head(eio_session_t *s, http_conn_t *hc, const char *content_type,
                     const eio_zbuf_t *zb, size_t total) {
    char lines[1200];
    int l =
        snprintf(lines, sizeof lines, "%s%s%s%s%s", content_type,
                 s->get_headers ? s->get_headers : "", zb ? "Content-Encoding: " : "",
                 zb ? eio_encoding_name((eio_encoding_t)s->get_encoding) : "", zb ? "\r\n" : "");
    if (l <= 0 || (size_t)l >= sizeof lines)
        return -1;
    return http_send_head(hc, 200, lines, (int64_t)(zb ? zb->len : total));
}

/* The v3 form of respond(): each packet framed with its length (eio/packet3.h), as
 * binary when one of them is binary and the client did not ask for base64. */
static int respond3(eio_session_t *s, http_conn_t *hc, eio_msg_t *const *msgs, uint32_t n,
                    uint32_t *sent) {
    bool binary = false;
    for (uint32_t i = 0; i < n && !s->b64; i++)
        binary = binary || msgs[i]->binary;
    prefixes_t *pre = malloc(sizeof *pre + (size_t)n * EIO3_PREFIX_MAX);
    if (!pre)
        return -1;
    ref_init(&pre->ref, prefixes_destroy);
    size_t total = 0;
    uint32_t used = 0;
    const uint8_t *bodies[n ? n : 1];
    size_t pre_lens[n ? n : 1], body_lens[n ? n : 1];
    for (; used < n; used++) {
        uint8_t *p = pre->bytes + (size_t)used * EIO3_PREFIX_MAX;
        if (eio3_frame(msgs[used], binary, p, &pre_lens[used], &bodies[used], &body_lens[used]))
            break;
        size_t size = pre_lens[used] + body_lens[used];
        if (used > 0 && total + size > s->srv->cfg.max_payload)
            break;
        total += size;
    }
    eio_zbuf_t *zb = NULL;
    if (used > 0 && compress_wanted(s, total)) {
        eio_deflate_t d;
        eio_deflate_begin(&d, (eio_encoding_t)s->get_encoding, total);
        for (uint32_t i = 0; i < used; i++) {
            eio_deflate_add(&d, pre->bytes + (size_t)i * EIO3_PREFIX_MAX, pre_lens[i]);
            eio_deflate_add(&d, bodies[i], body_lens[i]);
        }
        zb = eio_deflate_end(&d); /* NULL: answered uncompressed */
    }
    int rc = used > 0 ? send_head(s, hc,
                                  binary ? "Content-Type: application/octet-stream\r\n"
                                         : POLL_CONTENT_TYPE,
                                  zb, total)
                      : -1;
    if (zb) { /* every packet is in the compressed body */
        if (rc == 0)
            rc = http_send_body(hc, &zb->ref, zb->data, zb->len);
        ref_release(&zb->ref);
    }
    for (uint32_t i = 0; !zb && rc == 0 && i < used; i++) {
        rc = http_send_body(hc, &pre->ref, pre->bytes + (size_t)i * EIO3_PREFIX_MAX, pre_lens[i]);
        if (rc == 0)
            rc = http_send_body(hc, &msgs[i]->ref, bodies[i], body_lens[i]);
    }
    ref_release(&pre->ref);
    *sent = used;
    return rc;
}

/* Writes the response for the held GET: msgs[0..n), then releases the GET. */
static void respond(eio_session_t *s, eio_msg_t *const *msgs, uint32_t n) {
    http_conn_t *hc = s->get;
    if (s->protocol == 3) {
        s->get = NULL;
        uint32_t used = 0;
        int rc = respond3(s, hc, msgs, n, &used);
        free(s->get_headers);
        s->get_headers = NULL;
        if (rc) {
            net_conn_abort(http_conn_net(hc));
            return;
        }
        if (msgs == s->queue + s->qhead)
            eio_session_queue_drop(s, used);
        http_response_done(hc);
        return;
    }
    s->get = NULL;
    size_t total = 0;
    uint32_t used = 0;
    const uint8_t *parts[n ? n : 1];
    size_t lens[n ? n : 1];
    for (; used < n; used++) {
        if (eio_msg_polling(msgs[used], &parts[used], &lens[used]))
            break;
        /* Keep a response near maxPayload, but always send at least one packet. */
        if (used > 0 && total + 1 + lens[used] > s->srv->cfg.max_payload)
            break;
        total += lens[used] + (used > 0);
    }
    /* A response of one message uses that message's own compressed form (made once for
     * every session that polls it); several are compressed together, here. */
    eio_zbuf_t *zb = NULL;
    bool owned = false;
    if (used > 0 && compress_wanted(s, total)) {
        if (used == 1) {
            zb = eio_msg_compressed(msgs[0], (eio_encoding_t)s->get_encoding);
        } else {
            eio_deflate_t d;
            eio_deflate_begin(&d, (eio_encoding_t)s->get_encoding, total);
            for (uint32_t i = 0; i < used; i++) {
                if (i > 0)
                    eio_deflate_add(&d, &separator, 1);
                eio_deflate_add(&d, parts[i], lens[i]);
            }
            zb = eio_deflate_end(&d);
            owned = zb != NULL;
        }
    }
    int rc = send_head(s, hc, POLL_CONTENT_TYPE, zb, total);
    free(s->get_headers);
    s->get_headers = NULL;
    if (zb) {
        if (rc == 0)
            rc = http_send_body(hc, &zb->ref, zb->data, zb->len);
        if (owned)
            ref_release(&zb->ref);
    }
    for (uint32_t i = 0; !zb && rc == 0 && i < used; i++) {
        if (i > 0)
            rc = http_send_body(hc, NULL, &separator, 1);
        if (rc == 0)
            rc = http_send_body(hc, &msgs[i]->ref, parts[i], lens[i]);
    }
    if (rc) {
        net_conn_abort(http_conn_net(hc));
        return;
    }
    /* The connection holds its own references now: drop what was sent from the queue
     * (when msgs is the queue) before completing the response, which may let a pipelined
     * request run and touch the queue. */
    if (msgs == s->queue + s->qhead)
        eio_session_queue_drop(s, used);
    http_response_done(hc);
}

void eio_polling_flush(eio_session_t *s) {
    if (s->get && s->qlen > s->qhead)
        respond(s, s->queue + s->qhead, s->qlen - s->qhead);
}

void eio_polling_release(eio_session_t *s, eio_msg_t *m) {
    if (s->get)
        respond(s, &m, 1);
}

static void on_get_abort(http_conn_t *hc, void *arg) {
    eio_session_t *s = arg;
    s->get = NULL;
    free(s->get_headers);
    s->get_headers = NULL;
    eio_session_finish_drain(s);
    eio_session_end(s, "transport error", false);
}

static void handle_get(eio_session_t *s, http_conn_t *hc, http_req_t *req) {
    if (s->get) {
        LOG_DEBUG("eio", "session %s: overlapping GET", s->sid);
        eio_respond_error(s->srv, hc, req, EIO_ERR_BAD_REQUEST);
        eio_session_end(s, "transport error", true);
        return;
    }
    char cors[1024];
    size_t cl = eio_cors_headers(s->srv, &req->head, cors, sizeof cors);
    s->get_encoding = EIO_ENC_NONE;
    if (s->srv->cfg.http_compression_threshold > 0) {
        /* Any poll's answer may be compressed: caches must tell them apart. */
        static const char vary[] = "Vary: Accept-Encoding\r\n";
        if (cl + sizeof vary <= sizeof cors) {
            memcpy(cors + cl, vary, sizeof vary - 1);
            cl += sizeof vary - 1;
        }
        s->get_encoding = (uint8_t)eio_accepted_encoding(&req->head);
    }
    if (cl) {
        cors[cl] = '\0';
        s->get_headers = strdup(cors);
    }
    s->get = hc;
    if (s->draining && s->qlen == s->qhead) {
        eio_session_finish_drain(s); /* everything went out: now the close packet */
    } else if (s->qlen > s->qhead) {
        eio_polling_flush(s);
    } else if (s->probe && s->probed) {
        /* Upgrading: end this poll at once so the client can finish the switch. */
        eio_polling_release(s, s->srv->noop);
    } else {
        http_conn_hold(hc, on_get_abort, s);
    }
}

static void handle_post(eio_session_t *s, http_conn_t *hc, http_req_t *req) {
    char lines[1024];
    size_t cl = eio_cors_headers(s->srv, &req->head, lines, sizeof lines);
    lines[cl] = '\0';
    /* The HTTP server's body limit may be above the max_payload advertised in the open
     * packet (it serves other routes too); the advertised one is what counts here. */
    if (req->body_too_large || req->body.len > s->srv->cfg.max_payload) {
        LOG_LIMITED(LOG_LEVEL_INFO, "eio", "session %s: payload too large", s->sid);
        http_respond_error(hc, 413, "payload too large");
        eio_session_end(s, "transport error", true);
        return;
    }
    /* Packets reach the session as they are decoded, as in the reference server: a
     * malformed packet ends the session after the ones before it were delivered. */
    uint8_t *body = (uint8_t *)req->body.base;
    eio_packet_t p;
    size_t pos = 0;
    int rc = 0;
    /* v3 payloads are binary when the client says so (engine.io-client 3's XHR). */
    const slice_t *type = http_request_header(&req->head, "content-type");
    bool binary = s->protocol == 3 && type && slice_eq(*type, "application/octet-stream");
    while (!s->closed &&
           (rc = s->protocol == 3 ? eio3_payload_next(body, req->body.len, binary, &pos, &p)
                                  : eio_payload_next(body, req->body.len, &pos, &p)) == 1)
        eio_session_on_packet(s, &p);
    if (!s->closed && rc < 0) {
        LOG_LIMITED(LOG_LEVEL_INFO, "eio", "session %s: malformed payload", s->sid);
        eio_respond_error(s->srv, hc, req, EIO_ERR_BAD_REQUEST);
        eio_session_end(s, "parse error", true);
        return;
    }
    http_respond(hc, 200, "text/html", lines, "ok", 2);
}

void eio_polling_handle(eio_session_t *s, http_conn_t *hc, http_req_t *req) {
    if (slice_eq(req->head.method, "GET"))
        handle_get(s, hc, req);
    else if (slice_eq(req->head.method, "POST"))
        handle_post(s, hc, req);
    else
        eio_respond_error(s->srv, hc, req, EIO_ERR_BAD_REQUEST);
}
