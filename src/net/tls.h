/* net/tls.h — one connection's TLS state, for net/conn.c.
 *
 * OpenSSL runs over a BIO of Parley's own instead of the socket: net_tls_conn_read lends
 * it the bytes a read brought (in the loop's shared buffer, nothing copied) and what
 * OpenSSL writes is appended to `out`. So reading and writing stay net/conn.c's: it
 * offers the plaintext to the protocol as it would plain input, and writes `out` as it
 * would queued output.
 *
 * Memory: OpenSSL's record buffers are released while a connection is idle
 * (SSL_MODE_RELEASE_BUFFERS), and `out` is freed once written, so an idle
 * TLS connection holds the SSL object and nothing else. */
#ifndef PARLEY_NET_TLS_H
#define PARLEY_NET_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parley/tls.h"
#include "util/buf.h"

typedef struct net_tls_conn {
    SSL *ssl;
    const uint8_t *in; /* ciphertext lent by net_tls_conn_read */
    size_t in_len;
    buf_t out; /* ciphertext to write */
    bool established, notified;
    bool renegotiation; /* the peer asked for one: close */
} net_tls_conn_t;

/* A connection's state, accepting with t's current certificate. NULL when out of
 * memory (logged). */
net_tls_conn_t *net_tls_conn_new(net_tls_t *t);
void net_tls_conn_free(net_tls_conn_t *tc);

/* Called with each piece of plaintext; returns nonzero to stop (the connection is
 * closing). data is writable scratch, valid during the call. */
typedef int (*net_tls_plain_fn)(void *arg, uint8_t *data, size_t len);

/* Decrypts the ciphertext `in` (all of it is taken: OpenSSL keeps a partial record),
 * handing the plaintext to fn. Handshake messages and alerts OpenSSL answers with are
 * appended to out. Returns 0; -EPIPE when the peer sent close_notify; -EPROTO for a TLS
 * error (logged, rate-limited): the connection must be closed. */
int net_tls_conn_read(net_tls_conn_t *tc, const uint8_t *in, size_t len, net_tls_plain_fn fn,
                      void *arg);
/* Encrypts up to NET_TLS_RECORD of the len bytes (a record at a time keeps `out` small)
 * onto out, once the handshake is done. Returns the bytes taken, -ENOMEM or -EPROTO. */
#define NET_TLS_RECORD 16384
int net_tls_conn_write(net_tls_conn_t *tc, const uint8_t *data, size_t len);
/* Appends close_notify to out (once). */
void net_tls_conn_shutdown(net_tls_conn_t *tc);

#endif
