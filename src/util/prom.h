/* util/prom.h — Prometheus metrics: sample sets that sum across processes, rendered in
 * the text exposition format (version 0.0.4).
 *
 * Who calls it: the chat's metrics collection, once per scrape of /metrics. Each layer
 * adds its counters, gauges and histograms to one prom_set_t; with --workers N every
 * worker sends its set as JSON (prom_set_to_json) to the worker answering the scrape,
 * which reads them back (prom_set_from_json — an input from another process, checked as
 * such), sums them (prom_set_merge) and renders (prom_render). None of this is on a hot
 * path, and the set allocates freely: one allocation per series, a hash map keyed by the
 * series text. The one hot-path function is prom_histogram_observe, which a module calls
 * per delivery or commit on the histogram it keeps inline: no allocation, a binary
 * search over the PROM_BUCKETS bounds.
 *
 * A series is identified by its text as the exposition format writes it, `family` or
 * `family{k1="v1",k2="v2"}`: label pairs sorted by name, values escaped (backslash,
 * double quote, newline). That text is the map key, the JSON key and, cut after the
 * family name, what render sorts a family's series by. Series of the same family with
 * the labels given in another order are the same series.
 *
 * Invariants the set keeps (so that to_json only fails for lack of memory and from_json
 * accepts all that to_json writes): every value and histogram sum is finite, every
 * histogram's count is the sum of its buckets and at most PROM_COUNT_MAX, a set holds
 * at most PROM_SERIES_MAX series, a series text is at most PROM_KEY_MAX bytes. A call
 * that would break one fails (-EINVAL, -ERANGE or -ENOSPC) and changes nothing.
 *
 * Deliberately not here: metric types other than counter, gauge and classic histogram,
 * per-family bucket layouts (one shared layout), timestamps, the OpenMetrics format,
 * and any notion of "the process's metrics": a set is a value the caller builds. */
#ifndef PARLEY_UTIL_PROM_H
#define PARLEY_UTIL_PROM_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util/buf.h"

/* ---- Families ---- */

typedef enum { PROM_COUNTER, PROM_GAUGE, PROM_HISTOGRAM } prom_type_t;

/* A metric family as /metrics describes it. All three strings are borrowed and, in
 * practice, static. `name` follows Prometheus conventions (base units, `_total` for
 * counters); `help` may hold any text (backslash and newline are escaped). */
typedef struct {
    const char *name;
    prom_type_t type;
    const char *help;
} prom_family_t;

/* ---- Histograms ---- */

/* Upper bounds of the buckets, in seconds, shared by every latency histogram (+Inf is
 * implied after the last): 100 µs to 2.5 s on a 1-2.5-5 scale. In-process deliveries
 * land in the lower half; a synchronous=FULL SQLite commit (an fsync) in the
 * millisecond range; the last bounds catch a stalled disk or loop. Changing them changes
 * the JSON shape between workers, which is fine: workers are one binary. */
#define PROM_BUCKETS 14
extern const double prom_bucket_bounds[PROM_BUCKETS];

/* A histogram as a module keeps it, inline (zeroed = empty). counts[i] is the number of
 * observations v with bounds[i-1] < v <= bounds[i] (not cumulative: render makes the
 * cumulative counts); counts[PROM_BUCKETS] those above the last bound. count is the
 * sum of counts, sum the sum of the observed values. */
typedef struct {
    uint64_t counts[PROM_BUCKETS + 1];
    double sum;
    uint64_t count;
} prom_histogram_t;

/* Records one observation, in seconds. A value equal to a bound counts in that bound's
 * bucket (Prometheus buckets are "less than or equal"). NaN and infinities are dropped:
 * a broken clock reading is not a latency. O(log PROM_BUCKETS), no allocation. */
void prom_histogram_observe(prom_histogram_t *h, double seconds);

/* ---- Sample sets ---- */

/* Limits, for the series a set holds and for what from_json accepts. The chat makes
 * about a hundred series from bounded label sets; these are far above that and far
 * below what could hurt the worker answering the scrape. */
#define PROM_SERIES_MAX 10000       /* series in one set */
#define PROM_KEY_MAX 1024           /* bytes of one series text, `family{...}` */
#define PROM_LABELS_MAX 8           /* label pairs of one series */
#define PROM_COUNT_MAX (1ULL << 53) /* a histogram's count: exact as a double and in JSON */

typedef struct prom_set prom_set_t;

/* A new empty set, or NULL (no memory, or no randomness for the map's hash key). The
 * caller owns it and frees it with prom_set_free (NULL is accepted). */
prom_set_t *prom_set_new(void);
void prom_set_free(prom_set_t *s);
/* The number of series in the set. */
size_t prom_set_size(const prom_set_t *s);

/* Adds value to the series `family{labels}`, creating it at 0 when new:
 *     prom_set_add(s, "parley_connections", n, "transport", "polling", NULL);
 *     prom_set_add(s, "parley_handshakes_total", n, NULL);
 * Labels are "k1", "v1", "k2", "v2", ... and a NULL, all borrowed for the call. This is
 * a macro over prom_set_addv: the labels become an array whose length is known, so an
 * odd count of arguments (a name without a value, or no NULL after the pairs) does not
 * compile and nothing is read past the last; and no bare NULL goes through `...`
 * (which is not portable, and what cppcheck's varFuncNullUB reports). Each argument is
 * evaluated once. Returns 0 or:
 *   -EINVAL  a family name not [a-zA-Z_:][a-zA-Z0-9_:]*; a label name not
 *            [a-zA-Z_][a-zA-Z0-9_]*, starting with "__" or given twice; a name without
 *            a value; an empty or non-UTF-8 label value (an empty value means "no such
 *            label" to Prometheus: leave the pair out); more than PROM_LABELS_MAX pairs;
 *            a series text over PROM_KEY_MAX bytes; a non-finite value; the series is a
 *            histogram;
 *   -ERANGE  the sum would not be finite;
 *   -ENOSPC  the series is new and the set holds PROM_SERIES_MAX;
 *   -ENOMEM.
 * The set is unchanged on error. O(labels² + series text) plus one allocation for a
 * new series. */
#define prom_set_add(s, family, value, ...)                                                        \
    prom_set_addv((s), (family), (value), PROM__LABELS(__VA_ARGS__))

/* Adds a histogram's buckets, sum and count to the series `family{labels}`; labels as
 * for prom_set_add, except "le" (the bucket label). h is borrowed for the call. Errors
 * as for prom_set_add, and -EINVAL also when h is inconsistent (count not the sum of
 * its buckets, a non-finite sum, count over PROM_COUNT_MAX) or the series is not a
 * histogram; -ERANGE when the summed count would exceed PROM_COUNT_MAX. */
#define prom_set_add_histogram(s, family, h, ...)                                                  \
    prom_set_add_histogramv((s), (family), (h), PROM__LABELS(__VA_ARGS__))

/* The same with the labels as an array, for labels chosen at run time: labels is NULL
 * (no labels), or holds "k1", "v1", ..., NULL within its first n entries (-EINVAL when
 * the NULL is not among them; nothing past them is read). */
int prom_set_addv(prom_set_t *s, const char *family, double value, const char *const *labels,
                  size_t n);
int prom_set_add_histogramv(prom_set_t *s, const char *family, const prom_histogram_t *h,
                            const char *const *labels, size_t n);

/* The macros' arguments `labels, n` (private): the count is checked odd — pairs and the
 * NULL — when compiling ("size of array is negative" otherwise). */
#define PROM__NLABELS(...) (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))
#define PROM__LABELS(...)                                                                          \
    ((void)sizeof(char[(PROM__NLABELS(__VA_ARGS__) % 2) ? 1 : -1]),                                \
     (const char *const[]){__VA_ARGS__}),                                                          \
        PROM__NLABELS(__VA_ARGS__)

/* Sums every series of other into s (other is borrowed, unchanged; s == other doubles
 * s). Returns 0, -EINVAL (a series is a histogram in one set and not in the other),
 * -ERANGE, -ENOSPC (as for prom_set_add), with s unchanged, or -ENOMEM, in which case
 * s may hold part of other's samples. O(series of other). */
int prom_set_merge(prom_set_t *s, const prom_set_t *other);

/* The set as JSON, for carrying it to another process: one member per series, keyed by
 * its series text, whose value is a number for a counter or gauge and, for a histogram,
 *   {"buckets": [PROM_BUCKETS + 1 non-cumulative counts], "sum": number, "count": n}.
 * Numbers are written so that they read back to the same doubles: a set read back
 * renders exactly as the original. Returns a new reference (the caller owns it) or NULL
 * when out of memory. O(series). */
json_t *prom_set_to_json(const prom_set_t *s);

/* Reads what prom_set_to_json wrote; j is borrowed. On success *out is a new set the
 * caller owns. Refuses with -EINVAL, *out untouched, anything else: not an object; more
 * than PROM_SERIES_MAX members; a key that is not a series text exactly as to_json
 * writes it (canonical label order, escaping, names and values as prom_set_add
 * accepts); a value of another type or shape (extra or missing histogram members, a
 * bucket array of another length); a non-finite number; a count that is negative, over
 * PROM_COUNT_MAX or not the sum of the buckets. -ENOMEM when out of memory.
 * O(size of j). */
int prom_set_from_json(const json_t *j, prom_set_t **out);

/* Appends the text exposition format (0.0.4) to out: for each of the nfamilies
 * families, in that order, that has samples in s: "# HELP name help", "# TYPE name
 * type", then its series in byte order of their label text. A counter or gauge is
 * `name{labels} value`; a histogram is name_bucket{labels,le="bound"} with cumulative
 * counts (le as Prometheus writes it, "+Inf" last, equal to the count), then name_sum
 * and name_count. Values are written as integers when whole (below 1e17), otherwise in
 * the shortest form that reads back to the same double. Series of families not in the
 * table, and series whose kind does not match their family's type (a histogram under a
 * gauge, say), are not written. families is borrowed; each name should appear once.
 * Returns 0 or -ENOMEM (out is then as it was). O(S log S + F log S + output) for S
 * series and F families. */
int prom_render(const prom_set_t *s, const prom_family_t *families, size_t nfamilies, buf_t *out);

#endif
