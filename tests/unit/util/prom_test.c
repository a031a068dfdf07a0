/* tests/unit/util/prom_test.c — Prometheus sample sets, their JSON form and the text
 * exposition format.
 *
 * The text is checked exactly against a golden rendering (a counter, a labelled gauge,
 * two histograms, a family with no samples and samples of a family not in the table).
 * Summing is checked by its results: adding twice, merging two sets against adding
 * everything to one (values chosen exact in binary, so the order of additions cannot
 * matter), a JSON round trip against the original (both rendered, byte for byte). What
 * is refused — by add, merge and from_json — is refused with the set left unchanged.
 * Histogram buckets are checked at, just below and just above every bound. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/prom.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const prom_family_t families[] = {
    {"parley_handshakes_total", PROM_COUNTER, "Engine.IO handshakes completed."},
    {"parley_connections", PROM_GAUGE, "Open connections, by transport."},
    {"parley_absent_total", PROM_COUNTER, "Never added to the set."},
    {"parley_delivery_latency_seconds", PROM_HISTOGRAM, "Publish to write, in seconds."},
    {"parley_store_commit_seconds", PROM_HISTOGRAM, "Store commits, in seconds."},
};

/* Renders s with the table above into a new NUL-terminated string (caller frees). */
static char *render(const prom_set_t *s, const prom_family_t *fams, size_t n) {
    buf_t b = {0};
    assert_int_equal(prom_render(s, fams, n, &b), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    return (char *)b.data;
}

static char *render_all(const prom_set_t *s) {
    return render(s, families, ARRAY_LEN(families));
}

static void assert_renders(const prom_set_t *s, const char *expected) {
    char *text = render_all(s);
    assert_string_equal(text, expected);
    free(text);
}

static void assert_same_rendering(const prom_set_t *a, const prom_set_t *b) {
    char *ta = render_all(a), *tb = render_all(b);
    assert_string_equal(ta, tb);
    free(ta);
    free(tb);
}

/* ---- Histograms ---- */

static void test_observe_bucket_edges(void **state) {
    for (size_t i = 0; i < PROM_BUCKETS; i++) {
        double bound = prom_bucket_bounds[i];
        prom_histogram_t h = {0};
        prom_histogram_observe(&h, bound); /* "le": equal counts in the bucket */
        assert_int_equal(h.counts[i], 1);
        prom_histogram_observe(&h, nextafter(bound, 0));
        assert_int_equal(h.counts[i], 2);
        prom_histogram_observe(&h, nextafter(bound, INFINITY));
        assert_int_equal(h.counts[i + 1], 1);
        assert_int_equal(h.count, 3);
    }
    prom_histogram_t h = {0};
    prom_histogram_observe(&h, 0);
    prom_histogram_observe(&h, -1); /* a clock step back: still "<= the first bound" */
    prom_histogram_observe(&h, 1e9);
    prom_histogram_observe(&h, DBL_MAX);
    assert_int_equal(h.counts[0], 2);
    assert_int_equal(h.counts[PROM_BUCKETS], 2);
    /* Not numbers are dropped. */
    prom_histogram_observe(&h, NAN);
    prom_histogram_observe(&h, INFINITY);
    prom_histogram_observe(&h, -INFINITY);
    assert_int_equal(h.count, 4);
}

static void test_bucket_bounds_increase(void **state) {
    for (size_t i = 1; i < PROM_BUCKETS; i++)
        assert_true(prom_bucket_bounds[i - 1] < prom_bucket_bounds[i]);
    assert_true(prom_bucket_bounds[0] > 0);
}

/* ---- Adding ---- */

static void test_add_sums(void **state) {
    prom_set_t *s = prom_set_new();
    assert_non_null(s);
    assert_int_equal(prom_set_add(s, "parley_handshakes_total", 1, NULL), 0);
    assert_int_equal(prom_set_add(s, "parley_handshakes_total", 2.5, NULL), 0);
    assert_int_equal(prom_set_add(s, "parley_connections", 2, "transport", "polling", NULL), 0);
    assert_int_equal(prom_set_add(s, "parley_connections", 1, "transport", "websocket", NULL), 0);
    assert_int_equal(prom_set_add(s, "parley_connections", -1, "transport", "polling", NULL), 0);
    /* The same labels in another order name the same series. */
    assert_int_equal(prom_set_add(s, "parley_connections", 1, "a", "1", "b", "2", NULL), 0);
    const char *const ba[] = {"b", "2", "a", "1", NULL};
    assert_int_equal(prom_set_addv(s, "parley_connections", 1, ba, ARRAY_LEN(ba)), 0);
    assert_int_equal(prom_set_addv(s, "parley_handshakes_total", 0.5, NULL, 0), 0);
    /* The macro evaluates each argument once (sizeof does not evaluate). */
    int calls = 0;
    assert_int_equal(
        prom_set_add(s, "parley_handshakes_total", 0.25, "transport", (calls++, "polling"), NULL),
        0);
    assert_int_equal(calls, 1);
    assert_int_equal(prom_set_size(s), 5);
    assert_renders(s, "# HELP parley_handshakes_total Engine.IO handshakes completed.\n"
                      "# TYPE parley_handshakes_total counter\n"
                      "parley_handshakes_total 4\n"
                      "parley_handshakes_total{transport=\"polling\"} 0.25\n"
                      "# HELP parley_connections Open connections, by transport.\n"
                      "# TYPE parley_connections gauge\n"
                      "parley_connections{a=\"1\",b=\"2\"} 2\n"
                      "parley_connections{transport=\"polling\"} 1\n"
                      "parley_connections{transport=\"websocket\"} 1\n");
    prom_set_free(s);
    prom_set_free(NULL);
}

static void test_labels_escaped(void **state) {
    prom_set_t *s = prom_set_new();
    assert_non_null(s);
    assert_int_equal(
        prom_set_add(s, "x_total", 1, "reason", "back\\slash \"quoted\"\nnext\ttab", NULL), 0);
    assert_int_equal(prom_set_add(s, "x_total", 1, "reason", "h\xc3\xa9", NULL), 0);
    static const prom_family_t fams[] = {{"x_total", PROM_COUNTER, "Help with \\ and\nnewline."}};
    char *text = render(s, fams, 1);
    assert_string_equal(text, "# HELP x_total Help with \\\\ and\\nnewline.\n"
                              "# TYPE x_total counter\n"
                              "x_total{reason=\"back\\\\slash \\\"quoted\\\"\\nnext\ttab\"} 1\n"
                              "x_total{reason=\"h\xc3\xa9\"} 1\n");
    free(text);
    prom_set_free(s);
}

static void test_add_refuses(void **state) {
    prom_set_t *s = prom_set_new();
    assert_non_null(s);
    assert_int_equal(prom_set_add(s, "parley_connections", 1, "transport", "polling", NULL), 0);
    prom_histogram_t h = {0};
    prom_histogram_observe(&h, 0.01);
    assert_int_equal(prom_set_add_histogram(s, "parley_store_commit_seconds", &h, NULL), 0);
    char *before = render_all(s);

    /* Names. */
    assert_int_equal(prom_set_add(s, "", 1, NULL), -EINVAL);
    assert_int_equal(prom_set_add(s, "9lives", 1, NULL), -EINVAL);
    assert_int_equal(prom_set_add(s, "has-dash", 1, NULL), -EINVAL);
    assert_int_equal(prom_set_add(s, "has{brace", 1, NULL), -EINVAL);
    assert_int_equal(prom_set_add(s, NULL, 1, NULL), -EINVAL);
    assert_int_equal(prom_set_add(s, "x", 1, "a:b", "v", NULL), -EINVAL);
    assert_int_equal(prom_set_add(s, "x", 1, "1a", "v", NULL), -EINVAL);
    assert_int_equal(prom_set_add(s, "x", 1, "", "v", NULL), -EINVAL);
    assert_int_equal(prom_set_add(s, "x", 1, "__name__", "v", NULL), -EINVAL);
    assert_int_equal(prom_set_add(s, "x", 1, "a", "1", "a", "2", NULL), -EINVAL);
    /* Values. */
    assert_int_equal(prom_set_add(s, "x", 1, "a", "", NULL), -EINVAL);
    assert_int_equal(prom_set_add(s, "x", 1, "a", "\xff", NULL), -EINVAL);
    /* A name without a value (prom_set_add would not compile this). */
    const char *const odd[] = {"a", "1", "b", NULL};
    assert_int_equal(prom_set_addv(s, "x", 1, odd, ARRAY_LEN(odd)), -EINVAL);
    assert_int_equal(prom_set_addv(s, "x", 1, odd + 2, ARRAY_LEN(odd) - 2), -EINVAL);
    /* No NULL within the array's length: refused, and nothing past it read (ASan). */
    const char *const unended[] = {"a", "1"};
    assert_int_equal(prom_set_addv(s, "x", 1, unended, ARRAY_LEN(unended)), -EINVAL);
    assert_int_equal(prom_set_addv(s, "x", 1, odd, 0), -EINVAL);
    assert_int_equal(prom_set_add(s, "x", NAN, NULL), -EINVAL);
    assert_int_equal(prom_set_add(s, "x", INFINITY, NULL), -EINVAL);
    /* Too many labels; PROM_LABELS_MAX fit. */
    assert_int_equal(prom_set_add(s, "x", 1, "a", "1", "b", "1", "c", "1", "d", "1", "e", "1", "f",
                                  "1", "g", "1", "h", "1", "i", "1", NULL),
                     -EINVAL);
    const char *const nine[] = {"a", "1", "b", "1", "c", "1", "d", "1", "e", "1",
                                "f", "1", "g", "1", "h", "1", "i", "1", NULL};
    assert_int_equal(prom_set_addv(s, "x", 1, nine + 2, ARRAY_LEN(nine) - 2), 0); /* eight fit */
    /* A series text over PROM_KEY_MAX bytes; escaping counts. */
    char *longv = malloc(PROM_KEY_MAX);
    assert_non_null(longv);
    memset(longv, 'v', PROM_KEY_MAX - 1);
    longv[PROM_KEY_MAX - 1] = '\0';
    assert_int_equal(prom_set_add(s, "x", 1, "a", longv, NULL), -EINVAL);
    size_t fits = PROM_KEY_MAX - strlen("x{a=\"\"}");
    longv[fits] = '\0';
    assert_int_equal(prom_set_add(s, "y", 1, "a", longv, NULL), 0);
    longv[fits - 1] = '"'; /* escaped as two bytes: one too many */
    assert_int_equal(prom_set_add(s, "y", 1, "a", longv, NULL), -EINVAL);
    free(longv);
    /* Kinds: a series is a histogram or not, for good. */
    assert_int_equal(prom_set_add(s, "parley_store_commit_seconds", 1, NULL), -EINVAL);
    assert_int_equal(
        prom_set_add_histogram(s, "parley_connections", &h, "transport", "polling", NULL), -EINVAL);
    assert_int_equal(prom_set_add_histogram(s, "x", &h, "le", "1", NULL), -EINVAL);
    assert_int_equal(prom_set_add(s, "x", 1, "le", "1", NULL), 0); /* only histograms */
    assert_int_equal(prom_set_add_histogram(s, "x", NULL, NULL), -EINVAL);
    /* Inconsistent histograms. */
    prom_histogram_t bad = h;
    bad.count++;
    assert_int_equal(prom_set_add_histogram(s, "parley_store_commit_seconds", &bad, NULL), -EINVAL);
    bad = h;
    bad.sum = NAN;
    assert_int_equal(prom_set_add_histogram(s, "parley_store_commit_seconds", &bad, NULL), -EINVAL);
    bad = (prom_histogram_t){.counts = {[3] = PROM_COUNT_MAX + 1}, .count = PROM_COUNT_MAX + 1};
    assert_int_equal(prom_set_add_histogram(s, "parley_store_commit_seconds", &bad, NULL), -EINVAL);
    /* Sums that would leave the finite range. */
    assert_int_equal(prom_set_add(s, "big", DBL_MAX, NULL), 0);
    assert_int_equal(prom_set_add(s, "big", DBL_MAX, NULL), -ERANGE);
    prom_histogram_t most = {.counts = {[0] = PROM_COUNT_MAX}, .count = PROM_COUNT_MAX};
    assert_int_equal(prom_set_add_histogram(s, "hmax", &most, NULL), 0);
    assert_int_equal(prom_set_add_histogram(s, "hmax", &h, NULL), -ERANGE);

    /* The families of the table are as they were. */
    char *after = render_all(s);
    assert_string_equal(before, after);
    free(before);
    free(after);
    prom_set_free(s);
}

static void test_series_limit(void **state) {
    prom_set_t *s = prom_set_new();
    assert_non_null(s);
    char v[16];
    for (int i = 0; i < PROM_SERIES_MAX; i++) {
        snprintf(v, sizeof v, "%d", i);
        assert_int_equal(prom_set_add(s, "x", 1, "n", v, NULL), 0);
    }
    assert_int_equal(prom_set_add(s, "x", 1, "n", "new", NULL), -ENOSPC);
    assert_int_equal(prom_set_add(s, "x", 1, "n", "7", NULL), 0); /* existing: fine */
    assert_int_equal(prom_set_size(s), PROM_SERIES_MAX);

    prom_set_t *t = prom_set_new();
    assert_non_null(t);
    assert_int_equal(prom_set_add(t, "x", 1, "n", "new", NULL), 0);
    assert_int_equal(prom_set_merge(s, t), -ENOSPC);
    assert_int_equal(prom_set_merge(t, s), -ENOSPC);
    assert_int_equal(prom_set_size(s), PROM_SERIES_MAX);
    assert_int_equal(prom_set_size(t), 1);
    /* JSON of the full set reads back; one more member is refused. */
    json_t *j = prom_set_to_json(s);
    assert_non_null(j);
    prom_set_t *back = NULL;
    assert_int_equal(prom_set_from_json(j, &back), 0);
    assert_int_equal(prom_set_size(back), PROM_SERIES_MAX);
    assert_int_equal(json_object_set_new(j, "x{n=\"new\"}", json_real(1)), 0);
    prom_set_t *none = NULL;
    assert_int_equal(prom_set_from_json(j, &none), -EINVAL);
    assert_null(none);
    json_decref(j);
    prom_set_free(back);
    prom_set_free(t);
    prom_set_free(s);
}

/* ---- Rendering ---- */

static prom_set_t *golden_set(void) {
    prom_set_t *s = prom_set_new();
    assert_non_null(s);
    assert_int_equal(prom_set_add(s, "parley_handshakes_total", 2, NULL), 0);
    assert_int_equal(prom_set_add(s, "parley_handshakes_total", 3, NULL), 0);
    assert_int_equal(prom_set_add(s, "parley_connections", 3, "transport", "websocket", NULL), 0);
    assert_int_equal(prom_set_add(s, "parley_connections", 1, "transport", "polling", NULL), 0);
    assert_int_equal(prom_set_add(s, "parley_connections", 0.5, "transport", "sse", NULL), 0);
    prom_histogram_t h = {0};
    prom_histogram_observe(&h, 0.0001);
    prom_histogram_observe(&h, 0.00390625);
    prom_histogram_observe(&h, 0.00390625);
    prom_histogram_observe(&h, 0.25);
    prom_histogram_observe(&h, 4);
    assert_int_equal(prom_set_add_histogram(s, "parley_delivery_latency_seconds", &h, NULL), 0);
    prom_histogram_t c = {0};
    prom_histogram_observe(&c, 0.5);
    assert_int_equal(
        prom_set_add_histogram(s, "parley_store_commit_seconds", &c, "store", "sqlite", NULL), 0);
    /* Neither is written: a family not in the table, a kind not its family's. */
    assert_int_equal(prom_set_add(s, "parley_unlisted_total", 7, NULL), 0);
    assert_int_equal(prom_set_add_histogram(s, "parley_connections", &c, "transport", "h", NULL),
                     0);
    return s;
}

static const char golden_text[] =
    "# HELP parley_handshakes_total Engine.IO handshakes completed.\n"
    "# TYPE parley_handshakes_total counter\n"
    "parley_handshakes_total 5\n"
    "# HELP parley_connections Open connections, by transport.\n"
    "# TYPE parley_connections gauge\n"
    "parley_connections{transport=\"polling\"} 1\n"
    "parley_connections{transport=\"sse\"} 0.5\n"
    "parley_connections{transport=\"websocket\"} 3\n"
    "# HELP parley_delivery_latency_seconds Publish to write, in seconds.\n"
    "# TYPE parley_delivery_latency_seconds histogram\n"
    "parley_delivery_latency_seconds_bucket{le=\"0.0001\"} 1\n"
    "parley_delivery_latency_seconds_bucket{le=\"0.00025\"} 1\n"
    "parley_delivery_latency_seconds_bucket{le=\"0.0005\"} 1\n"
    "parley_delivery_latency_seconds_bucket{le=\"0.001\"} 1\n"
    "parley_delivery_latency_seconds_bucket{le=\"0.0025\"} 1\n"
    "parley_delivery_latency_seconds_bucket{le=\"0.005\"} 3\n"
    "parley_delivery_latency_seconds_bucket{le=\"0.01\"} 3\n"
    "parley_delivery_latency_seconds_bucket{le=\"0.025\"} 3\n"
    "parley_delivery_latency_seconds_bucket{le=\"0.05\"} 3\n"
    "parley_delivery_latency_seconds_bucket{le=\"0.1\"} 3\n"
    "parley_delivery_latency_seconds_bucket{le=\"0.25\"} 4\n"
    "parley_delivery_latency_seconds_bucket{le=\"0.5\"} 4\n"
    "parley_delivery_latency_seconds_bucket{le=\"1\"} 4\n"
    "parley_delivery_latency_seconds_bucket{le=\"2.5\"} 4\n"
    "parley_delivery_latency_seconds_bucket{le=\"+Inf\"} 5\n"
    "parley_delivery_latency_seconds_sum 4.2579125\n"
    "parley_delivery_latency_seconds_count 5\n"
    "# HELP parley_store_commit_seconds Store commits, in seconds.\n"
    "# TYPE parley_store_commit_seconds histogram\n"
    "parley_store_commit_seconds_bucket{store=\"sqlite\",le=\"0.0001\"} 0\n"
    "parley_store_commit_seconds_bucket{store=\"sqlite\",le=\"0.00025\"} 0\n"
    "parley_store_commit_seconds_bucket{store=\"sqlite\",le=\"0.0005\"} 0\n"
    "parley_store_commit_seconds_bucket{store=\"sqlite\",le=\"0.001\"} 0\n"
    "parley_store_commit_seconds_bucket{store=\"sqlite\",le=\"0.0025\"} 0\n"
    "parley_store_commit_seconds_bucket{store=\"sqlite\",le=\"0.005\"} 0\n"
    "parley_store_commit_seconds_bucket{store=\"sqlite\",le=\"0.01\"} 0\n"
    "parley_store_commit_seconds_bucket{store=\"sqlite\",le=\"0.025\"} 0\n"
    "parley_store_commit_seconds_bucket{store=\"sqlite\",le=\"0.05\"} 0\n"
    "parley_store_commit_seconds_bucket{store=\"sqlite\",le=\"0.1\"} 0\n"
    "parley_store_commit_seconds_bucket{store=\"sqlite\",le=\"0.25\"} 0\n"
    "parley_store_commit_seconds_bucket{store=\"sqlite\",le=\"0.5\"} 1\n"
    "parley_store_commit_seconds_bucket{store=\"sqlite\",le=\"1\"} 1\n"
    "parley_store_commit_seconds_bucket{store=\"sqlite\",le=\"2.5\"} 1\n"
    "parley_store_commit_seconds_bucket{store=\"sqlite\",le=\"+Inf\"} 1\n"
    "parley_store_commit_seconds_sum{store=\"sqlite\"} 0.5\n"
    "parley_store_commit_seconds_count{store=\"sqlite\"} 1\n";

static void test_render_golden(void **state) {
    prom_set_t *s = golden_set();
    assert_renders(s, golden_text);
    /* Appends, and an empty table or set writes nothing. */
    buf_t b = {0};
    assert_int_equal(buf_append_str(&b, "before\n"), 0);
    assert_int_equal(prom_render(s, families, 0, &b), 0);
    assert_int_equal(b.len, 7);
    assert_int_equal(prom_render(s, families, 1, &b), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    assert_string_equal((char *)b.data, "before\n"
                                        "# HELP parley_handshakes_total Engine.IO handshakes "
                                        "completed.\n"
                                        "# TYPE parley_handshakes_total counter\n"
                                        "parley_handshakes_total 5\n");
    buf_free(&b);
    prom_set_t *empty = prom_set_new();
    assert_non_null(empty);
    assert_renders(empty, "");
    prom_set_free(empty);
    prom_set_free(s);
}

/* Values as Prometheus reads them back: whole numbers bare, others shortest exact. */
static void test_render_numbers(void **state) {
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {0, "0"},
        {-0.0, "0"},
        {42, "42"},
        {-7, "-7"},
        {1e16, "10000000000000000"},
        {1e17, "1e+17"},
        {0.1, "0.1"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1.5e-7, "1.5e-07"},
        {DBL_MAX, "1.7976931348623157e+308"},
        {9007199254740993.0, "9007199254740992"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        prom_set_t *s = prom_set_new();
        assert_non_null(s);
        assert_int_equal(prom_set_add(s, "g", cases[i].v, NULL), 0);
        static const prom_family_t fams[] = {{"g", PROM_GAUGE, "G."}};
        char *text = render(s, fams, 1);
        char expected[128];
        snprintf(expected, sizeof expected, "# HELP g G.\n# TYPE g gauge\ng %s\n", cases[i].text);
        assert_string_equal(text, expected);
        if (cases[i].v != 0)
            assert_true(strtod(strrchr(text, ' ') + 1, NULL) == cases[i].v);
        free(text);
        prom_set_free(s);
    }
}

/* Over many observations: buckets never decrease, +Inf equals _count. */
static void test_render_cumulative(void **state) {
    prom_histogram_t h = {0};
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 10000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        prom_histogram_observe(&h, (double)(x % 4000000) / 1e6); /* 0 .. 4 s */
    }
    prom_set_t *s = prom_set_new();
    assert_non_null(s);
    assert_int_equal(prom_set_add_histogram(s, "h", &h, "k", "v", NULL), 0);
    static const prom_family_t fams[] = {{"h", PROM_HISTOGRAM, "H."}};
    char *text = render(s, fams, 1);
    unsigned long long prev = 0, inf = 0, count = 0, v;
    size_t buckets = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "h_bucket{k=\"v\",le=\"", 19) == 0) {
            assert_int_equal(sscanf(strrchr(line, ' ') + 1, "%llu", &v), 1);
            assert_true(v >= prev);
            prev = v;
            if (strstr(line, "le=\"+Inf\""))
                inf = v;
            buckets++;
        } else if (strncmp(line, "h_count{k=\"v\"} ", 15) == 0) {
            assert_int_equal(sscanf(line + 15, "%llu", &count), 1);
        }
    }
    assert_int_equal(buckets, PROM_BUCKETS + 1);
    assert_int_equal(inf, 10000);
    assert_int_equal(count, 10000);
    free(text);
    prom_set_free(s);
}

/* ---- Merging ---- */

/* Random samples into `into` and also into `all`. Values are multiples of 1/64 and
 * observations multiples of 2^-12, so every sum is exact whatever the order. */
static void add_random(prom_set_t *into, prom_set_t *all, uint64_t *x, int n) {
    static const char *const transports[] = {"polling", "websocket", "sse"};
    static const char *const reasons[] = {"ping timeout", "transport \"close\"", "server\\side"};
    for (int i = 0; i < n; i++) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        double v = (double)(*x % 1000) / 64;
        const char *t = transports[*x / 1000 % 3], *r = reasons[*x / 3000 % 3];
        prom_set_t *sets[] = {into, all};
        for (size_t k = 0; k < 2; k++) {
            switch (*x / 9000 % 4) {
            case 0:
                assert_int_equal(prom_set_add(sets[k], "parley_handshakes_total", v, NULL), 0);
                break;
            case 1:
                assert_int_equal(prom_set_add(sets[k], "parley_connections", v, "transport", t,
                                              "reason", r, NULL),
                                 0);
                break;
            default: {
                prom_histogram_t h = {0};
                prom_histogram_observe(&h, (double)(*x % 20000) / 4096);
                prom_histogram_observe(&h, (double)(*x % 7) / 4096);
                const char *fam = *x / 9000 % 4 == 2 ? "parley_delivery_latency_seconds"
                                                     : "parley_store_commit_seconds";
                assert_int_equal(prom_set_add_histogram(sets[k], fam, &h, "transport", t, NULL), 0);
            }
            }
        }
    }
}

static void test_merge_equals_adding_to_one(void **state) {
    prom_set_t *a = prom_set_new(), *b = prom_set_new(), *all = prom_set_new();
    assert_true(a && b && all);
    uint64_t x = 12345;
    add_random(a, all, &x, 500);
    add_random(b, all, &x, 700);
    assert_int_equal(prom_set_merge(a, b), 0);
    assert_same_rendering(a, all);
    /* Merging an empty set, or into one, changes nothing / copies. */
    prom_set_t *empty = prom_set_new(), *copy = prom_set_new();
    assert_true(empty && copy);
    assert_int_equal(prom_set_merge(a, empty), 0);
    assert_int_equal(prom_set_merge(copy, a), 0);
    assert_same_rendering(copy, all);
    assert_int_equal(prom_set_size(copy), prom_set_size(all));
    /* Into itself: every sample doubled. */
    assert_int_equal(prom_set_merge(copy, copy), 0);
    assert_int_equal(prom_set_merge(all, a), 0);
    assert_same_rendering(copy, all);
    prom_set_free(a);
    prom_set_free(b);
    prom_set_free(all);
    prom_set_free(empty);
    prom_set_free(copy);
}

static void test_merge_refuses(void **state) {
    prom_set_t *s = golden_set(), *other = prom_set_new();
    assert_non_null(other);
    assert_int_equal(prom_set_add(other, "parley_handshakes_total", 1, NULL), 0);
    assert_int_equal(prom_set_add(other, "parley_new_total", 1, NULL), 0);
    assert_int_equal(prom_set_add(other, "parley_delivery_latency_seconds", 1, NULL), 0);
    assert_int_equal(prom_set_merge(s, other), -EINVAL);
    assert_renders(s, golden_text);
    assert_int_equal(prom_set_size(s), 8);

    prom_set_t *big = prom_set_new();
    assert_non_null(big);
    assert_int_equal(prom_set_add(big, "parley_new_total", 1, NULL), 0);
    assert_int_equal(prom_set_add(big, "parley_handshakes_total", DBL_MAX, NULL), 0);
    assert_int_equal(prom_set_merge(big, big), -ERANGE);
    assert_int_equal(prom_set_merge(s, big), 0);
    assert_int_equal(prom_set_merge(s, big), -ERANGE);
    assert_int_equal(prom_set_size(s), 9);
    prom_set_free(big);
    prom_set_free(other);
    prom_set_free(s);
}

/* ---- JSON ---- */

static prom_set_t *json_trip(const prom_set_t *s) {
    json_t *j = prom_set_to_json(s);
    assert_non_null(j);
    /* Through text, as between processes. */
    char *text = json_dumps(j, JSON_COMPACT);
    assert_non_null(text);
    json_decref(j);
    json_error_t err;
    json_t *back = json_loads(text, 0, &err);
    assert_non_null(back);
    free(text);
    prom_set_t *out = NULL;
    assert_int_equal(prom_set_from_json(back, &out), 0);
    assert_non_null(out);
    json_decref(back);
    return out;
}

static void test_json_round_trip(void **state) {
    prom_set_t *s = golden_set();
    assert_int_equal(prom_set_add(s, "parley_connections", 0.1, "transport", "x\"\\\n\ty", NULL),
                     0);
    assert_int_equal(prom_set_add(s, "parley_connections", 1e-300, "transport", "tiny", NULL), 0);
    assert_int_equal(prom_set_add(s, "parley_connections", -0.0, "transport", "zero", NULL), 0);
    assert_int_equal(prom_set_add(s, "parley_connections", 1e300, "transport", "huge", NULL), 0);
    assert_int_equal(prom_set_add(s, "parley_connections", 1.0 / 3, "a", "1", "b", "2", NULL), 0);
    prom_histogram_t h = {0};
    prom_histogram_observe(&h, 0.1 + 0.2);
    prom_histogram_observe(&h, 1e-9);
    prom_histogram_observe(&h, 100);
    assert_int_equal(prom_set_add_histogram(s, "parley_delivery_latency_seconds", &h, "event",
                                            "chat\xc3\xa9", NULL),
                     0);
    prom_set_t *back = json_trip(s);
    assert_int_equal(prom_set_size(back), prom_set_size(s));
    assert_same_rendering(s, back);
    /* Also the series of the families not in the table: the JSON forms agree. */
    json_t *js = prom_set_to_json(s), *jb = prom_set_to_json(back);
    assert_true(json_equal(js, jb));
    json_decref(js);
    json_decref(jb);
    /* And the trip again is stable. */
    prom_set_t *again = json_trip(back);
    assert_same_rendering(s, again);
    prom_set_free(again);
    prom_set_free(back);
    prom_set_free(s);

    prom_set_t *empty = prom_set_new();
    assert_non_null(empty);
    back = json_trip(empty);
    assert_int_equal(prom_set_size(back), 0);
    prom_set_free(back);
    prom_set_free(empty);
}

static void test_json_shape(void **state) {
    prom_set_t *s = prom_set_new();
    assert_non_null(s);
    assert_int_equal(prom_set_add(s, "c_total", 3, "k", "a\"b", NULL), 0);
    prom_histogram_t h = {0};
    prom_histogram_observe(&h, 0.5);
    prom_histogram_observe(&h, 3);
    assert_int_equal(prom_set_add_histogram(s, "h", &h, NULL), 0);
    json_t *j = prom_set_to_json(s);
    assert_non_null(j);
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(text);
    assert_string_equal(text, "{\"c_total{k=\\\"a\\\\\\\"b\\\"}\":3.0,"
                              "\"h\":{\"buckets\":[0,0,0,0,0,0,0,0,0,0,0,1,0,0,1],"
                              "\"count\":2,\"sum\":3.5}}");
    free(text);
    json_decref(j);
    prom_set_free(s);
}

static void test_json_accepts_numbers_in_either_form(void **state) {
    static const char *const texts[] = {
        "{\"x\":3}", "{\"x\":-3.25e2,\"y{a=\\\"b\\\"}\":0}",
        "{\"h\":{\"count\":1,\"sum\":2,\"buckets\":[0,0,0,0,0,0,0,0,0,0,0,0,0,1,0]}}",
        "{\"x{a=\\\"\\\\n\\\\\\\\\\\\\\\"\\\"}\":1}", /* x{a="\n\\\""} */
    };
    for (size_t i = 0; i < ARRAY_LEN(texts); i++) {
        json_error_t err;
        json_t *j = json_loads(texts[i], 0, &err);
        assert_non_null(j);
        prom_set_t *s = NULL;
        assert_int_equal(prom_set_from_json(j, &s), 0);
        assert_int_equal(prom_set_size(s), json_object_size(j));
        json_decref(j);
        prom_set_free(s);
    }
}

static void assert_json_refused(const char *text) {
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
    if (!j)
        fail_msg("does not parse (%s): %s", err.text, text);
    prom_set_t *s = (prom_set_t *)&err; /* must be left untouched */
    if (prom_set_from_json(j, &s) != -EINVAL)
        fail_msg("accepted: %s", text);
    assert_ptr_equal(s, (prom_set_t *)&err);
    json_decref(j);
}

static void test_json_refuses(void **state) {
    static const char *const texts[] = {
        /* Not an object of series. */
        "[]",
        "[{\"x\":1}]",
        "1",
        "\"x\"",
        "null",
        /* Values of other types. */
        "{\"x\":\"1\"}",
        "{\"x\":true}",
        "{\"x\":null}",
        "{\"x\":[1]}",
        "{\"h\":{}}",
        "{\"h\":{\"buckets\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],\"sum\":0}}",
        "{\"h\":{\"buckets\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],\"sum\":0,\"cnt\":0}}",
        /* Keys that are not series texts as to_json writes them. */
        "{\"\":1}",
        "{\"9x\":1}",
        "{\"x-y\":1}",
        "{\"x \":1}",
        "{\"x{}\":1}",
        "{\"x{a=\\\"1\\\"\":1}",
        "{\"x{a=\\\"1\\\"}y\":1}",
        "{\"x{a=\\\"1\\\"}}\":1}",
        "{\"x{a=\\\"1\\\",}\":1}",
        "{\"x{a=1}\":1}",
        "{\"x{a=\\\"1}\":1}",
        "{\"x{a=\\\"\\\"}\":1}",
        "{\"x{ a=\\\"1\\\"}\":1}",
        "{\"x{a=\\\"1\\\", b=\\\"2\\\"}\":1}",
        "{\"x{b=\\\"2\\\",a=\\\"1\\\"}\":1}",
        "{\"x{a=\\\"1\\\",a=\\\"2\\\"}\":1}",
        "{\"x{__a=\\\"1\\\"}\":1}",
        "{\"x{1a=\\\"1\\\"}\":1}",
        "{\"x{a=\\\"\\\\t\\\"}\":1}",
        "{\"x{a=\\\"\\\\\\\"}\":1}",
        "{\"x{a=\\\"\\n\\\"}\":1}",
        /* One bad member among good ones. */
        "{\"a\":1,\"b\":2,\"c\":\"3\",\"d\":4}",
    };
    for (size_t i = 0; i < ARRAY_LEN(texts); i++)
        assert_json_refused(texts[i]);
    assert_int_equal(prom_set_from_json(NULL, &(prom_set_t *){NULL}), -EINVAL);

    /* Histograms, as {"<key>":{"buckets":[<buckets>],"sum":<sum>,"count":<count>}<more>}
     * with one part wrong. */
    static const struct {
        const char *key, *buckets, *sum, *count, *more;
    } hists[] = {
        /* Members of other shapes: missing, extra, of other types. */
        {"h", "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0", "0", "0,\"x\":1", ""},
        {"h", "0,0,0,0,0,0,0,0,0,0,0,0,0,0", "0", "0", ""},
        {"h", "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0", "0", "0", ""},
        {"h", "0,0,0,0,0,0,0,0,0,0,0,0,0,0,[]", "0", "0", ""},
        {"h", "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0", "\"0\"", "0", ""},
        {"h", "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0", "null", "0", ""},
        {"h", "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0", "0", "0.0", ""},
        {"h", "0,0,0,0,0,0,0,0,0,0,0,0,0,0,1.0", "0", "1", ""},
        {"h", "0,0,0,0,0,0,0,0,0,0,0,0,0,0,\"1\"", "0", "1", ""},
        /* Counts: negative, absurd, not the sum of the buckets. */
        {"h", "-1,0,0,0,0,0,0,0,0,0,0,0,0,0,1", "0", "0", ""},
        {"h", "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0", "0", "-1", ""},
        {"h", "9007199254740993,0,0,0,0,0,0,0,0,0,0,0,0,0,0", "0", "9007199254740993", ""},
        {"h", "9223372036854775807,1,0,0,0,0,0,0,0,0,0,0,0,0,0", "0", "0", ""},
        {"h", "1,0,0,0,0,0,0,0,0,0,0,0,0,0,0", "0", "2", ""},
        {"h", "1,0,0,0,0,0,0,0,0,0,0,0,0,0,1", "0", "1", ""},
        /* "le" is the bucket label; a good histogram beside a bad member. */
        {"h{le=\\\"1\\\"}", "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0", "0", "0", ""},
        {"h", "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0", "0", "0", ",\"x\":{}"},
    };
    for (size_t i = 0; i < ARRAY_LEN(hists); i++) {
        char text[512];
        snprintf(text, sizeof text, "{\"%s\":{\"buckets\":[%s],\"sum\":%s,\"count\":%s}%s}",
                 hists[i].key, hists[i].buckets, hists[i].sum, hists[i].count, hists[i].more);
        assert_json_refused(text);
    }
    /* The same, right, is accepted. */
    json_t *j = json_loads("{\"h\":{\"buckets\":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,1],\"sum\":0,"
                           "\"count\":2}}",
                           0, NULL);
    assert_non_null(j);
    prom_set_t *s = NULL;
    assert_int_equal(prom_set_from_json(j, &s), 0);
    prom_set_free(s);
    json_decref(j);

    /* PROM_LABELS_MAX labels, and one more. */
    for (int n = PROM_LABELS_MAX; n <= PROM_LABELS_MAX + 1; n++) {
        char text[256] = "{\"x{";
        for (int l = 0; l < n; l++)
            snprintf(text + strlen(text), sizeof text - strlen(text), "%s%c=\\\"1\\\"",
                     l == 0 ? "" : ",", 'a' + l);
        snprintf(text + strlen(text), sizeof text - strlen(text), "}\":1}");
        if (n > PROM_LABELS_MAX) {
            assert_json_refused(text);
            continue;
        }
        j = json_loads(text, 0, NULL);
        assert_non_null(j);
        assert_int_equal(prom_set_from_json(j, &s), 0);
        prom_set_free(s);
        json_decref(j);
    }
}

/* What JSON text cannot say but a json_t can: a key with a NUL, an over-long key,
 * numbers out of range. */
static void test_json_refuses_built(void **state) {
    prom_set_t *s = NULL;
    json_t *j = json_object();
    assert_int_equal(json_object_setn_new(j, "x\0y", 3, json_real(1)), 0);
    assert_int_equal(prom_set_from_json(j, &s), -EINVAL);
    json_decref(j);

    j = json_object();
    assert_int_equal(json_object_setn_new(j, "x{a=\"\0\"}", 8, json_real(1)), 0);
    assert_int_equal(prom_set_from_json(j, &s), -EINVAL);
    json_decref(j);

    char key[PROM_KEY_MAX + 2];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    j = json_object();
    assert_int_equal(json_object_set_new(j, key, json_real(1)), 0);
    assert_int_equal(prom_set_from_json(j, &s), -EINVAL);
    json_decref(j);
    key[PROM_KEY_MAX] = '\0'; /* exactly the limit: fine */
    j = json_object();
    assert_int_equal(json_object_set_new(j, key, json_real(1)), 0);
    assert_int_equal(prom_set_from_json(j, &s), 0);
    assert_int_equal(prom_set_size(s), 1);
    prom_set_free(s);
    s = NULL;
    json_decref(j);

    /* A set at the edge of the finite range reads back; it can be summed no further. */
    j = json_object();
    assert_int_equal(json_object_set_new(j, "x", json_real(DBL_MAX)), 0);
    assert_int_equal(prom_set_from_json(j, &s), 0);
    assert_int_equal(prom_set_merge(s, s), -ERANGE);
    prom_set_free(s);
    json_decref(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_observe_bucket_edges),
        cmocka_unit_test(test_bucket_bounds_increase),
        cmocka_unit_test(test_add_sums),
        cmocka_unit_test(test_labels_escaped),
        cmocka_unit_test(test_add_refuses),
        cmocka_unit_test(test_series_limit),
        cmocka_unit_test(test_render_golden),
        cmocka_unit_test(test_render_numbers),
        cmocka_unit_test(test_render_cumulative),
        cmocka_unit_test(test_merge_equals_adding_to_one),
        cmocka_unit_test(test_merge_refuses),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_json_accepts_numbers_in_either_form),
        cmocka_unit_test(test_json_refuses),
        cmocka_unit_test(test_json_refuses_built),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
