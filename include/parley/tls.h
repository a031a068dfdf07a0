/* parley/tls.h — TLS for Parley's listeners: a certificate and its key, reloadable.
 *
 * A net_tls_t is given to a server in its configuration (http_server_config_t.tls);
 * every connection it accepts then speaks TLS 1.2 or 1.3 (ALPN "http/1.1") before its
 * HTTP. Reloading reads the files again: connections accepted afterwards use the new
 * certificate, the ones already open keep theirs (each holds a reference to what it
 * started with), so nothing is dropped.
 *
 * Ownership: the application owns the net_tls_t and frees it after the servers that use
 * it are closed. Not thread-safe: use it from the loop thread. */
#ifndef PARLEY_TLS_H
#define PARLEY_TLS_H

#pragma GCC visibility push(default)

typedef struct net_tls net_tls_t;

/* Reads a PEM certificate chain (the server's certificate first) and its PEM private
 * key. Returns 0, -ENOMEM, or -EINVAL when a file cannot be read or the key does not
 * match the certificate (the reason is logged). */
int net_tls_new(const char *cert_file, const char *key_file, net_tls_t **out);
/* Reads the same files again. On failure (the same errors) the previous certificate
 * stays in use. */
int net_tls_reload(net_tls_t *t);
void net_tls_free(net_tls_t *t);

#pragma GCC visibility pop

#endif
