/* tests/unit/net/tls_test.c — net/tls.c without sockets: an OpenSSL client over memory
 * BIOs talks to a net_tls_conn_t, the test carrying the bytes between them.
 *
 * Certificates: a key and a self-signed certificate made here (P-256) and written to a
 * temporary directory, plus a second pair for reloading. Checked: bad files and a key of
 * another certificate are refused; the handshake completes (TLS 1.3 and 1.2) and ALPN
 * picks http/1.1; plaintext crosses both ways, and one write call takes at most a record;
 * close_notify reads as -EPIPE; garbage and a renegotiation request read as -EPROTO;
 * a reload changes the certificate of new connections only, and a failed reload keeps
 * the old one; an idle connection holds no buffers of ours. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/tls.h"
#include "util/buf.h"

static char dir[] = "/tmp/parley-tls-unit-XXXXXX";
static char cert1[64], key1[64], cert2[64], key2[64], bad[64];

/* A P-256 key and a self-signed certificate for CN=cn, written as PEM. */
static void make_pair(const char *cn, const char *cert_path, const char *key_path) {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    assert_non_null(x);
    assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), 1));
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_true(X509_set_pubkey(x, key));
    X509_NAME *name = X509_get_subject_name(x);
    assert_true(
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0));
    assert_true(X509_set_issuer_name(x, name));
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    FILE *f = fopen(cert_path, "w");
    assert_non_null(f);
    assert_true(PEM_write_X509(f, x));
    assert_int_equal(fclose(f), 0);
    f = fopen(key_path, "w");
    assert_non_null(f);
    assert_true(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL));
    assert_int_equal(fclose(f), 0);
    X509_free(x);
    EVP_PKEY_free(key);
}

static int setup(void **state) {
    assert_non_null(mkdtemp(dir));
    snprintf(cert1, sizeof cert1, "%s/one.pem", dir);
    snprintf(key1, sizeof key1, "%s/one.key", dir);
    snprintf(cert2, sizeof cert2, "%s/two.pem", dir);
    snprintf(key2, sizeof key2, "%s/two.key", dir);
    snprintf(bad, sizeof bad, "%s/bad.pem", dir);
    make_pair("one", cert1, key1);
    make_pair("two", cert2, key2);
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    assert_true(fputs("-----BEGIN CERTIFICATE-----\nnot base64\n", f) >= 0);
    assert_int_equal(fclose(f), 0);
    return 0;
}

static int teardown(void **state) {
    const char *files[] = {cert1, key1, cert2, key2, bad};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink(files[i]);
    rmdir(dir);
    return 0;
}

/* ---- a client over memory BIOs ---- */

typedef struct {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out; /* in: what the server wrote; out: what the client wrote */
    net_tls_conn_t *tc;
    buf_t plain; /* what the server decrypted */
    int rc;      /* the last net_tls_conn_read answer */
} pair_t;

static int collect(void *arg, uint8_t *data, size_t len) {
    pair_t *p = arg;
    return buf_append(&p->plain, data, len);
}

/* Carries the client's bytes to the server and the server's back, once. */
static void pump(pair_t *p) {
    uint8_t tmp[65536];
    int n;
    while ((n = BIO_read(p->out, tmp, sizeof tmp)) > 0)
        p->rc = net_tls_conn_read(p->tc, tmp, (size_t)n, collect, p);
    if (p->tc->out.len) {
        assert_int_equal(BIO_write(p->in, p->tc->out.data, (int)p->tc->out.len),
                         (int)p->tc->out.len);
        buf_free(&p->tc->out);
    }
}

static void pair_open(pair_t *p, net_tls_t *t, int max_version) {
    memset(p, 0, sizeof *p);
    p->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(p->ctx);
    assert_true(SSL_CTX_set_max_proto_version(p->ctx, max_version));
    static const unsigned char alpn[] = "\x02h2\x08http/1.1";
    assert_int_equal(SSL_CTX_set_alpn_protos(p->ctx, alpn, sizeof alpn - 1), 0);
    p->ssl = SSL_new(p->ctx);
    p->in = BIO_new(BIO_s_mem());
    p->out = BIO_new(BIO_s_mem());
    SSL_set_bio(p->ssl, p->in, p->out);
    SSL_set_connect_state(p->ssl);
    p->tc = net_tls_conn_new(t);
    assert_non_null(p->tc);
    for (int i = 0; i < 10 && !SSL_is_init_finished(p->ssl); i++) {
        int r = SSL_do_handshake(p->ssl);
        if (r != 1)
            assert_int_equal(SSL_get_error(p->ssl, r), SSL_ERROR_WANT_READ);
        pump(p);
    }
    assert_true(SSL_is_init_finished(p->ssl));
    assert_int_equal(p->rc, 0);
}

static void pair_close(pair_t *p) {
    SSL_free(p->ssl);
    SSL_CTX_free(p->ctx);
    net_tls_conn_free(p->tc);
    buf_free(&p->plain);
}

static const char *peer_cn(pair_t *p) {
    static char cn[64];
    X509 *x = SSL_get1_peer_certificate(p->ssl);
    assert_non_null(x);
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) >
                0);
    X509_free(x);
    return cn;
}

/* ---- tests ---- */

static void test_bad_files_are_refused(void **state) {
    net_tls_t *t = NULL;
    assert_int_equal(net_tls_new(bad, key1, &t), -EINVAL);
    assert_int_equal(net_tls_new(cert1, key2, &t), -EINVAL); /* another certificate's key */
    assert_int_equal(net_tls_new("/nonexistent/cert.pem", key1, &t), -EINVAL);
    assert_null(t);
}

static void test_handshake_and_data_both_ways(void **state) {
    net_tls_t *t;
    assert_int_equal(net_tls_new(cert1, key1, &t), 0);
    const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};
    for (size_t v = 0; v < 2; v++) {
        pair_t p;
        pair_open(&p, t, versions[v]);
        assert_int_equal(SSL_version(p.ssl), versions[v]);
        const unsigned char *proto;
        unsigned len;
        SSL_get0_alpn_selected(p.ssl, &proto, &len);
        assert_int_equal(len, 8);
        assert_memory_equal(proto, "http/1.1", 8);
        assert_string_equal(peer_cn(&p), "one");

        /* client → server */
        assert_int_equal(SSL_write(p.ssl, "GET / HTTP/1.1\r\n\r\n", 18), 18);
        pump(&p);
        assert_int_equal(p.rc, 0);
        assert_true(p.tc->established);
        assert_int_equal(p.plain.len, 18);
        assert_memory_equal(p.plain.data, "GET / HTTP/1.1\r\n\r\n", 18);

        /* server → client: a large body goes a record per call */
        size_t big = 3 * NET_TLS_RECORD + 100;
        uint8_t *body = malloc(big), *got = malloc(big);
        assert_non_null(body);
        assert_non_null(got);
        for (size_t i = 0; i < big; i++)
            body[i] = (uint8_t)(i * 31);
        size_t off = 0;
        while (off < big) {
            int n = net_tls_conn_write(p.tc, body + off, big - off);
            assert_true(n > 0 && n <= NET_TLS_RECORD);
            off += (size_t)n;
        }
        pump(&p);
        size_t read = 0;
        int n;
        while (read < big && (n = SSL_read(p.ssl, got + read, (int)(big - read))) > 0)
            read += (size_t)n;
        assert_int_equal(read, big);
        assert_memory_equal(got, body, big);
        free(body);
        free(got);

        /* nothing of ours held while idle */
        assert_int_equal(p.tc->out.len, 0);
        assert_null(p.tc->out.data);

        /* the client says goodbye */
        assert_true(SSL_shutdown(p.ssl) >= 0);
        pump(&p);
        assert_int_equal(p.rc, -EPIPE);
        pair_close(&p);
    }
    net_tls_free(t);
}

static void test_garbage_is_a_protocol_error(void **state) {
    net_tls_t *t;
    assert_int_equal(net_tls_new(cert1, key1, &t), 0);
    net_tls_conn_t *tc = net_tls_conn_new(t);
    assert_non_null(tc);
    buf_t plain = {0};
    const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(net_tls_conn_read(tc, (const uint8_t *)http, strlen(http), collect, &plain),
                     -EPROTO);
    assert_int_equal(plain.len, 0);
    assert_false(tc->established);
    net_tls_conn_free(tc);

    /* The same after a handshake: a forged record is refused. */
    pair_t p;
    pair_open(&p, t, TLS1_3_VERSION);
    uint8_t forged[64] = {0x17, 0x03, 0x03, 0x00, 59};
    p.rc = net_tls_conn_read(p.tc, forged, sizeof forged, collect, &p);
    assert_int_equal(p.rc, -EPROTO);
    assert_int_equal(p.plain.len, 0);
    pair_close(&p);
    net_tls_free(t);
}

static void test_renegotiation_is_refused(void **state) {
    net_tls_t *t;
    assert_int_equal(net_tls_new(cert1, key1, &t), 0);
    pair_t p;
    pair_open(&p, t, TLS1_2_VERSION);
    assert_int_equal(SSL_renegotiate(p.ssl), 1);
    int r = SSL_do_handshake(p.ssl);
    assert_true(r != 1);
    pump(&p);
    assert_int_equal(p.rc, -EPROTO);
    assert_true(p.tc->renegotiation);
    pair_close(&p);
    net_tls_free(t);
}

static void test_reload(void **state) {
    net_tls_t *t;
    assert_int_equal(net_tls_new(cert1, key1, &t), 0);
    pair_t old;
    pair_open(&old, t, TLS1_3_VERSION);
    assert_string_equal(peer_cn(&old), "one");

    /* Same paths, new contents. */
    char c1[64], k1[64];
    snprintf(c1, sizeof c1, "%s/one.pem.keep", dir);
    snprintf(k1, sizeof k1, "%s/one.key.keep", dir);
    assert_int_equal(rename(cert1, c1), 0);
    assert_int_equal(rename(key1, k1), 0);
    assert_int_equal(link(cert2, cert1), 0);
    assert_int_equal(link(key2, key1), 0);
    assert_int_equal(net_tls_reload(t), 0);
    pair_t fresh;
    pair_open(&fresh, t, TLS1_3_VERSION);
    assert_string_equal(peer_cn(&fresh), "two");

    /* The connection made before the reload still works with its certificate. */
    assert_int_equal(SSL_write(old.ssl, "ping", 4), 4);
    pump(&old);
    assert_int_equal(old.rc, 0);
    assert_int_equal(old.plain.len, 4);

    /* A broken file: refused, and "two" stays. */
    unlink(cert1);
    assert_int_equal(link(bad, cert1), 0);
    assert_int_equal(net_tls_reload(t), -EINVAL);
    pair_t after;
    pair_open(&after, t, TLS1_3_VERSION);
    assert_string_equal(peer_cn(&after), "two");

    pair_close(&old);
    pair_close(&fresh);
    pair_close(&after);
    net_tls_free(t);
    unlink(cert1);
    unlink(key1);
    assert_int_equal(rename(c1, cert1), 0);
    assert_int_equal(rename(k1, key1), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_files_are_refused),
        cmocka_unit_test(test_handshake_and_data_both_ways),
        cmocka_unit_test(test_garbage_is_a_protocol_error),
        cmocka_unit_test(test_renegotiation_is_refused),
        cmocka_unit_test(test_reload),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
