/* net/tls.c — certificates (net_tls_t) and per-connection TLS state over a BIO of our own.
 *
 * Choices, and why:
 * - TLS 1.2 and 1.3 only, OpenSSL's default ciphers at its default security level: what
 *   every client of the last decade speaks.
 * - No renegotiation (TLS 1.2 can be asked for one by a client: a way to make the server
 *   work without end): OpenSSL refuses it with a warning alert, and the connection that
 *   asked is closed, as a client may wait for an answer forever. No compression (CRIME).
 * - Sessions resume with stateless tickets only (no server-side cache: its memory would
 *   grow with clients); one TLS 1.3 ticket per handshake instead of two.
 * - ALPN: "http/1.1" when the client offers it; a client that offers only h2 gets no ALPN
 *   answer and may still speak HTTP/1.1.
 * - Reloading makes a new SSL_CTX and drops ours: open connections' SSL objects hold
 *   references to the old one, which goes with the last of them. */
#include "net/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "util/log.h"

struct net_tls {
    SSL_CTX *ctx;
    char *cert_file, *key_file;
};

/* ---- the BIO: reads what net_tls_conn_read lends, writes into out ---- */

static BIO_METHOD *bio_method;
static uv_once_t bio_once = UV_ONCE_INIT;

static int bio_read(BIO *b, char *data, int len) {
    net_tls_conn_t *tc = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (tc->in_len == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = (size_t)len < tc->in_len ? (size_t)len : tc->in_len;
    memcpy(data, tc->in, n);
    tc->in += n;
    tc->in_len -= n;
    return (int)n;
}

static int bio_write(BIO *b, const char *data, int len) {
    net_tls_conn_t *tc = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    return buf_append(&tc->out, data, (size_t)len) ? -1 : len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
    /* OpenSSL flushes after each flight; the output waits for the loop's flush anyway. */
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b) {
    BIO_set_init(b, 1);
    return 1;
}

static void bio_method_make(void) {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "parley");
    if (m && BIO_meth_set_read(m, bio_read) && BIO_meth_set_write(m, bio_write) &&
        BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create)) {
        bio_method = m;
        return;
    }
    BIO_meth_free(m);
}

/* ---- certificates ---- */

/* OpenSSL's queued errors, logged as one line and cleared. */
static void log_ssl_errors(const char *what) {
    char line[512] = "";
    size_t used = 0;
    unsigned long e;
    while ((e = ERR_get_error()) != 0 && used + 2 < sizeof line) {
        if (used)
            line[used++] = ';';
        ERR_error_string_n(e, line + used, sizeof line - used);
        used += strlen(line + used);
    }
    LOG_ERROR("tls", "%s: %s", what, used ? line : "unknown error");
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
    static const unsigned char http11[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, http11, sizeof http11 - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* The no_renegotiation alert OpenSSL sends marks the connection to be closed. */
static void info_cb(const SSL *ssl, int where, int ret) {
    if ((where & SSL_CB_WRITE_ALERT) == SSL_CB_WRITE_ALERT &&
        (ret & 0xff) == SSL_AD_NO_RENEGOTIATION) {
        net_tls_conn_t *tc = SSL_get_app_data(ssl);
        tc->renegotiation = true;
    }
}

static SSL_CTX *ctx_load(const char *cert_file, const char *key_file) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        log_ssl_errors("no TLS context");
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    SSL_CTX_set_info_callback(ctx, info_cb);
    const char *what = NULL;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) || !SSL_CTX_set_num_tickets(ctx, 1))
        what = "TLS settings";
    else if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        what = cert_file;
    else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
        what = key_file;
    else if (SSL_CTX_check_private_key(ctx) != 1)
        what = "the key does not match the certificate";
    if (what) {
        log_ssl_errors(what);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int net_tls_new(const char *cert_file, const char *key_file, net_tls_t **out) {
    uv_once(&bio_once, bio_method_make);
    if (!bio_method)
        return -ENOMEM;
    net_tls_t *t = calloc(1, sizeof *t);
    if (!t || !(t->cert_file = strdup(cert_file)) || !(t->key_file = strdup(key_file))) {
        net_tls_free(t);
        return -ENOMEM;
    }
    if (!(t->ctx = ctx_load(cert_file, key_file))) {
        net_tls_free(t);
        return -EINVAL;
    }
    *out = t;
    return 0;
}

int net_tls_reload(net_tls_t *t) {
    SSL_CTX *ctx = ctx_load(t->cert_file, t->key_file);
    if (!ctx)
        return -EINVAL;
    SSL_CTX_free(t->ctx);
    t->ctx = ctx;
    return 0;
}

void net_tls_free(net_tls_t *t) {
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t->cert_file);
    free(t->key_file);
    free(t);
}

/* ---- connections ---- */

net_tls_conn_t *net_tls_conn_new(net_tls_t *t) {
    net_tls_conn_t *tc = calloc(1, sizeof *tc);
    BIO *bio = NULL;
    if (!tc || !(tc->ssl = SSL_new(t->ctx)) || !(bio = BIO_new(bio_method))) {
        LOG_LIMITED(LOG_LEVEL_ERROR, "tls", "out of memory for a connection");
        ERR_clear_error();
        net_tls_conn_free(tc);
        return NULL;
    }
    BIO_set_data(bio, tc);
    SSL_set_app_data(tc->ssl, tc);
    SSL_set_bio(tc->ssl, bio, bio); /* the SSL owns the BIO from here */
    SSL_set_accept_state(tc->ssl);
    return tc;
}

void net_tls_conn_free(net_tls_conn_t *tc) {
    if (!tc)
        return;
    SSL_free(tc->ssl);
    buf_free(&tc->out);
    free(tc);
}

int net_tls_conn_read(net_tls_conn_t *tc, const uint8_t *in, size_t len, net_tls_plain_fn fn,
                      void *arg) {
    uint8_t plain[NET_TLS_RECORD];
    tc->in = in;
    tc->in_len = len;
    int rc = 0;
    for (;;) {
        int n = SSL_read(tc->ssl, plain, sizeof plain);
        if (n > 0) {
            tc->established = true;
            if (fn(arg, plain, (size_t)n))
                break;
            continue;
        }
        int err = SSL_get_error(tc->ssl, n);
        if (tc->renegotiation) {
            LOG_LIMITED(LOG_LEVEL_INFO, "tls", "closing a connection: it asked to renegotiate");
            rc = -EPROTO;
            break;
        }
        if (err == SSL_ERROR_WANT_READ) {
            tc->established = tc->established || SSL_is_init_finished(tc->ssl);
            break;
        }
        if (err == SSL_ERROR_ZERO_RETURN) {
            rc = -EPIPE;
        } else {
            unsigned long e = ERR_peek_error();
            LOG_LIMITED(LOG_LEVEL_INFO, "tls", "closing a connection: %s",
                        e ? ERR_reason_error_string(e) : "TLS error");
            rc = -EPROTO;
        }
        break;
    }
    ERR_clear_error();
    tc->in = NULL;
    tc->in_len = 0;
    return rc;
}

int net_tls_conn_write(net_tls_conn_t *tc, const uint8_t *data, size_t len) {
    if (len > NET_TLS_RECORD)
        len = NET_TLS_RECORD;
    int n = SSL_write(tc->ssl, data, (int)len);
    if (n > 0)
        return n;
    int err = SSL_get_error(tc->ssl, n);
    ERR_clear_error();
    return err == SSL_ERROR_SYSCALL ? -ENOMEM : -EPROTO;
}

void net_tls_conn_shutdown(net_tls_conn_t *tc) {
    if (tc->notified)
        return;
    tc->notified = true;
    /* 0 (sent, the peer's not seen yet) is the expected answer: we do not wait for it. */
    if (SSL_shutdown(tc->ssl) < 0)
        ERR_clear_error();
}
