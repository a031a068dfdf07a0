/* tools/bench/hist.h — fixed-size log-linear latency histograms (HDR-like).
 *
 * Values (nanoseconds) are counted in buckets that are exact below 128 and keep the top
 * 7 significant bits above (64 sub-buckets per power of two: at most 1.6% wide, reported
 * at their midpoint). The whole range of uint64 fits in HIST_BUCKETS counters, so
 * recording never allocates and two histograms merge by adding counters — which is how
 * the workers' figures become one. Min, max and the sum are kept exactly. */
#ifndef PARLEY_BENCH_HIST_H
#define PARLEY_BENCH_HIST_H

#include <stdint.h>

#define HIST_BUCKETS 3776 /* 128 exact + 57 powers of two x 64 */

typedef struct {
    uint64_t count;
    uint64_t min, max;
    double sum;
    uint64_t buckets[HIST_BUCKETS];
} hist_t;

void hist_init(hist_t *h);
void hist_record(hist_t *h, uint64_t v);
/* Adds every count of src into dst. */
void hist_merge(hist_t *dst, const hist_t *src);
/* The value at quantile q (0..1): the midpoint of the bucket holding it, clamped to
 * [min, max]; q >= 1 gives max. 0 when empty. */
uint64_t hist_quantile(const hist_t *h, double q);

#endif
