/* util/buf.h — growable byte buffers.
 *
 * buf_t owns its heap memory; a zeroed buf_t is empty and allocates nothing until the
 * first append. rcbuf_t is an immutable, reference-counted byte string for data shared
 * by many send queues (see util/ref.h). */
#ifndef PARLEY_UTIL_BUF_H
#define PARLEY_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "util/ref.h"

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} buf_t;

/* Ensures room for `extra` more bytes. Returns 0 or -ENOMEM. */
int buf_reserve(buf_t *b, size_t extra);
int buf_append(buf_t *b, const void *data, size_t len);
int buf_append_str(buf_t *b, const char *s);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes, keeping the rest. */
void buf_consume(buf_t *b, size_t n);
/* Frees the memory; the buffer is empty and reusable afterwards. */
void buf_free(buf_t *b);

typedef struct {
    ref_t ref;
    size_t len;
    uint8_t data[];
} rcbuf_t;

/* A new rcbuf of `len` bytes (uninitialised when data is NULL) with one reference. */
rcbuf_t *rcbuf_new(const void *data, size_t len);

#endif
