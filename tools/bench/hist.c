/* tools/bench/hist.c — log-linear histogram (see hist.h). */
#include "hist.h"

#include <string.h>

void hist_init(hist_t *h) {
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

static unsigned bucket_of(uint64_t v) {
    if (v < 128)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - 6; /* v >> shift is in [64, 128) */
    return 128 + (shift - 1) * 64 + (unsigned)((v >> shift) - 64);
}

/* Lowest value of bucket b, and its width. */
static uint64_t bucket_low(unsigned b, uint64_t *width) {
    if (b < 128) {
        *width = 1;
        return b;
    }
    unsigned shift = (b - 128) / 64 + 1;
    *width = (uint64_t)1 << shift;
    return ((uint64_t)((b - 128) % 64) + 64) << shift;
}

void hist_record(hist_t *h, uint64_t v) {
    h->buckets[bucket_of(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(hist_t *dst, const hist_t *src) {
    if (src->count == 0)
        return;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_quantile(const hist_t *h, double q) {
    if (h->count == 0)
        return 0;
    if (q >= 1.0)
        return h->max;
    uint64_t rank = (uint64_t)(q * (double)h->count) + 1; /* 1-based rank */
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t width, v = bucket_low(i, &width);
            v += width / 2;
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}
