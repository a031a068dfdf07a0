/* eio/compress.c — gzip and deflate for long-polling responses (see compress.h).
 *
 * zlib at its default level, as Node's zlib (engine.io's httpCompression) uses; "deflate"
 * is the zlib format (RFC 1950), which is what browsers and Node's createDeflate mean by
 * it. The output is sized once with deflateBound, so a body is one allocation. */
#include "eio/compress.h"

#include <stdlib.h>
#include <string.h>

static void zbuf_destroy(ref_t *r) {
    free(r);
}

const char *eio_encoding_name(eio_encoding_t e) {
    return e == EIO_ENC_GZIP ? "gzip" : "deflate";
}

/* The q-value of one Accept-Encoding element's parameters (";q=0.5"), 1 when absent;
 * in thousandths, 0 for a malformed one. */
static int qvalue(slice_t params) {
    const char *q = memmem(params.base, params.len, "q=", 2);
    if (!q)
        return 1000;
    size_t i = (size_t)(q + 2 - params.base);
    int v = 0, scale = 1000, digits = 0;
    bool frac = false;
    for (; i < params.len && digits < 5; i++) {
        char c = params.base[i];
        if (c == '.' && !frac) {
            frac = true;
        } else if (c >= '0' && c <= '9') {
            if (!frac) {
                v = v * 10 + (c - '0') * 1000;
            } else if (scale > 1) {
                scale /= 10;
                v += (c - '0') * scale;
            }
            digits++;
        } else {
            break;
        }
    }
    return v > 1000 ? 1000 : v;
}

static slice_t trim(slice_t s) {
    while (s.len && (s.base[0] == ' ' || s.base[0] == '\t')) {
        s.base++;
        s.len--;
    }
    while (s.len && (s.base[s.len - 1] == ' ' || s.base[s.len - 1] == '\t'))
        s.len--;
    return s;
}

eio_encoding_t eio_accepted_encoding(const http_request_t *req) {
    const slice_t *h = http_request_header(req, "accept-encoding");
    if (!h)
        return EIO_ENC_NONE;
    int best_q[3] = {0, 0, 0}, star = -1;
    bool named[3] = {false, false, false};
    size_t i = 0;
    while (i < h->len) {
        size_t start = i;
        while (i < h->len && h->base[i] != ',')
            i++;
        slice_t el = trim(slice_make(h->base + start, i - start));
        i++;
        const char *semi = memchr(el.base, ';', el.len);
        size_t nlen = semi ? (size_t)(semi - el.base) : el.len;
        slice_t name = trim(slice_make(el.base, nlen));
        int q = semi ? qvalue(slice_make(semi, el.len - nlen)) : 1000;
        eio_encoding_t e = slice_case_eq(name, "gzip")      ? EIO_ENC_GZIP
                           : slice_case_eq(name, "deflate") ? EIO_ENC_DEFLATE
                                                            : EIO_ENC_NONE;
        if (e != EIO_ENC_NONE) {
            best_q[e] = q;
            named[e] = true;
        } else if (slice_eq(name, "*")) {
            star = q;
        }
    }
    /* "*" stands for the encodings not named. */
    for (int e = EIO_ENC_GZIP; star >= 0 && e <= EIO_ENC_DEFLATE; e++)
        if (!named[e])
            best_q[e] = star;
    if (best_q[EIO_ENC_GZIP] > 0 && best_q[EIO_ENC_GZIP] >= best_q[EIO_ENC_DEFLATE])
        return EIO_ENC_GZIP;
    return best_q[EIO_ENC_DEFLATE] > 0 ? EIO_ENC_DEFLATE : EIO_ENC_NONE;
}

void eio_deflate_begin(eio_deflate_t *d, eio_encoding_t enc, size_t total_in) {
    memset(d, 0, sizeof *d);
    /* windowBits 15 + 16 writes the gzip wrapper, 15 alone the zlib one. */
    if (deflateInit2(&d->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, enc == EIO_ENC_GZIP ? 31 : 15, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        d->failed = true;
        return;
    }
    d->started = true;
    size_t cap = deflateBound(&d->z, (uLong)total_in);
    d->buf = total_in == (uLong)total_in ? malloc(sizeof *d->buf + cap) : NULL;
    if (!d->buf) {
        d->failed = true;
        return;
    }
    ref_init(&d->buf->ref, zbuf_destroy);
    d->z.next_out = d->buf->data;
    d->z.avail_out = (uInt)cap;
    if (cap != d->z.avail_out) /* above 4 GiB: not a polling response */
        d->failed = true;
}

static void run(eio_deflate_t *d, const void *data, size_t len, int flush) {
    if (d->failed)
        return;
    d->z.next_in = data;
    d->z.avail_in = (uInt)len;
    int rc = deflate(&d->z, flush);
    /* The output was sized with deflateBound: all input is taken at once. */
    if (d->z.avail_in != 0 || (flush == Z_FINISH ? rc != Z_STREAM_END : rc != Z_OK))
        d->failed = true;
}

void eio_deflate_add(eio_deflate_t *d, const void *data, size_t len) {
    if (len > 0)
        run(d, data, len, Z_NO_FLUSH);
}

eio_zbuf_t *eio_deflate_end(eio_deflate_t *d) {
    run(d, NULL, 0, Z_FINISH);
    eio_zbuf_t *b = d->buf;
    if (b)
        b->len = (size_t)(d->z.next_out - b->data);
    /* deflateEnd reports a stream ended early (Z_DATA_ERROR): a failure already known. */
    if (d->started && deflateEnd(&d->z) != Z_OK)
        d->failed = true;
    if (d->failed) {
        free(b);
        return NULL;
    }
    return b;
}

eio_zbuf_t *eio_msg_compressed(eio_msg_t *m, eio_encoding_t enc) {
    eio_zbuf_t **slot = &m->zipped[enc == EIO_ENC_GZIP ? 0 : 1];
    const uint8_t *body;
    size_t len;
    if (!*slot && eio_msg_polling(m, &body, &len) == 0) {
        eio_deflate_t d;
        eio_deflate_begin(&d, enc, len);
        eio_deflate_add(&d, body, len);
        *slot = eio_deflate_end(&d);
    }
    return *slot;
}
