/* util/ref.h — intrusive reference counts for buffers shared by many writers.
 *
 * An object that many connections send (an encoded broadcast packet, say) embeds a
 * ref_t as its first member. Every queue that points into it holds one reference; the
 * last ref_release() calls destroy. Counts are not atomic: a shared object lives on one
 * event loop, and loops share nothing. */
#ifndef PARLEY_UTIL_REF_H
#define PARLEY_UTIL_REF_H

#include <stdint.h>

typedef struct ref ref_t;
struct ref {
    uint32_t count;
    void (*destroy)(ref_t *ref);
};

static inline void ref_init(ref_t *r, void (*destroy)(ref_t *)) {
    r->count = 1;
    r->destroy = destroy;
}

static inline ref_t *ref_retain(ref_t *r) {
    if (r)
        r->count++;
    return r;
}

static inline void ref_release(ref_t *r) {
    if (r && --r->count == 0)
        r->destroy(r);
}

#endif
