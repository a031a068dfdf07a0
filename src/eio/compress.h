/* eio/compress.h — HTTP compression of long-polling responses (engine.io's
 * httpCompression): gzip or deflate, as the client's Accept-Encoding allows, for
 * responses of at least eio_config_t.http_compression_threshold bytes.
 *
 * The compressed body is an eio_zbuf_t, reference counted so that the connection's write
 * queue holds it like any shared message. A response that is a single message uses that
 * message's own compressed form, made once (eio_msg_compressed) and kept with it, so a
 * broadcast that many polling clients receive is compressed once per encoding. */
#ifndef PARLEY_EIO_COMPRESS_H
#define PARLEY_EIO_COMPRESS_H

#include <stddef.h>
#include <stdint.h>
/* The input is the shared messages' bytes: zlib promises not to write them. */
#define ZLIB_CONST
#include <zlib.h>

#include "eio/packet.h"
#include "http/parser.h"

typedef enum { EIO_ENC_NONE = 0, EIO_ENC_GZIP = 1, EIO_ENC_DEFLATE = 2 } eio_encoding_t;

/* The encoding to answer req with: the accepted one of gzip and deflate with the highest
 * q-value, gzip on a tie (the reference's order); NONE when neither is accepted. */
eio_encoding_t eio_accepted_encoding(const http_request_t *req);
/* "gzip" or "deflate" (the Content-Encoding token). */
const char *eio_encoding_name(eio_encoding_t e);

struct eio_zbuf {
    ref_t ref;
    size_t len;
    uint8_t data[];
};

/* One compressed body made from pieces: begin with the total input size (it sizes the
 * output once, so nothing is reallocated), add the pieces, end. Any failure is remembered
 * and end returns NULL (the caller then answers uncompressed). */
typedef struct {
    z_stream z;
    eio_zbuf_t *buf;
    bool started; /* deflateInit2 succeeded: deflateEnd is owed */
    bool failed;
} eio_deflate_t;

void eio_deflate_begin(eio_deflate_t *d, eio_encoding_t enc, size_t total_in);
void eio_deflate_add(eio_deflate_t *d, const void *data, size_t len);
/* The body with one reference for the caller, or NULL. */
eio_zbuf_t *eio_deflate_end(eio_deflate_t *d);

/* m's long-polling form compressed with enc, made on first use and kept with m (owned by
 * m: valid while m is). NULL when out of memory. */
eio_zbuf_t *eio_msg_compressed(eio_msg_t *m, eio_encoding_t enc);

#endif
