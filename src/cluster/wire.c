/* cluster/wire.c — frames and fields (see wire.h). */
#include "cluster/wire.h"

#include <errno.h>
#include <string.h>

int wire_begin(buf_t *b, uint8_t type, size_t *start) {
    *start = b->len;
    uint8_t head[WIRE_HEADER] = {0, 0, 0, 0, type};
    return buf_append(b, head, sizeof head);
}

void wire_end(buf_t *b, size_t start) {
    uint32_t n = (uint32_t)(b->len - start - 4);
    b->data[start] = (uint8_t)(n >> 24);
    b->data[start + 1] = (uint8_t)(n >> 16);
    b->data[start + 2] = (uint8_t)(n >> 8);
    b->data[start + 3] = (uint8_t)n;
}

int wire_u8(buf_t *b, uint8_t v) {
    return buf_append(b, &v, 1);
}

int wire_u32(buf_t *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return buf_append(b, x, sizeof x);
}

int wire_u64(buf_t *b, uint64_t v) {
    int rc = wire_u32(b, (uint32_t)(v >> 32));
    return rc ? rc : wire_u32(b, (uint32_t)v);
}

int wire_bytes(buf_t *b, const void *data, size_t len) {
    if (len > UINT32_MAX)
        return -EINVAL;
    int rc = wire_u32(b, (uint32_t)len);
    return rc ? rc : buf_append(b, data, len);
}

int wire_str(buf_t *b, const char *s) {
    return wire_bytes(b, s ? s : "", s ? strlen(s) : 0);
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

long wire_frame_size(const uint8_t *buf, size_t len) {
    if (len < 4)
        return 0;
    uint32_t n = be32(buf);
    if (n < 1 || n > WIRE_FRAME_MAX)
        return -1;
    return len - 4 >= n ? (long)n + 4 : 0;
}

void wire_reader_init(wire_reader_t *r, const uint8_t *frame, size_t size) {
    r->bad = size < WIRE_HEADER;
    r->type = r->bad ? 0 : frame[4];
    r->p = r->bad ? frame : frame + WIRE_HEADER;
    r->end = frame + size;
}

static const uint8_t *take(wire_reader_t *r, size_t n) {
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *at = r->p;
    r->p += n;
    return at;
}

uint8_t wire_get_u8(wire_reader_t *r) {
    const uint8_t *p = take(r, 1);
    return p ? p[0] : 0;
}

uint32_t wire_get_u32(wire_reader_t *r) {
    const uint8_t *p = take(r, 4);
    return p ? be32(p) : 0;
}

uint64_t wire_get_u64(wire_reader_t *r) {
    uint64_t hi = wire_get_u32(r);
    return hi << 32 | wire_get_u32(r);
}

slice_t wire_get_bytes(wire_reader_t *r) {
    uint32_t n = wire_get_u32(r);
    const uint8_t *p = take(r, n);
    return p ? slice_make(p, n) : SLICE_NULL;
}

void wire_get_cstr(wire_reader_t *r, char *out, size_t size) {
    slice_t s = wire_get_bytes(r);
    if (r->bad || s.len >= size || (s.len && memchr(s.base, '\0', s.len))) {
        r->bad = true;
        if (size)
            out[0] = '\0';
        return;
    }
    if (s.len)
        memcpy(out, s.base, s.len);
    out[s.len] = '\0';
}

bool wire_done(const wire_reader_t *r) {
    return !r->bad && r->p == r->end;
}
