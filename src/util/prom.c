/* util/prom.c — Prometheus sample sets, their JSON form and the text format (see prom.h).
 *
 * A set is a util/map.h map from series text to a series_t allocated with its key
 * inline (the map borrows the key from the value). Every way in — prom_set_add*, merge
 * and from_json — ends in add_keyed, after the key has been built by build_key, the
 * one place that knows the canonical form (label order, escaping, limits). from_json
 * parses a key into family and labels, rebuilds it and accepts it only when the rebuilt
 * text is byte for byte the key it read: one grammar, no second parser to drift.
 *
 * Rendering sorts the series once by (family, label text) and finds each family of the
 * table by binary search, rather than keeping the set sorted: a set is built once per
 * scrape and rendered once, so sorting at the end is the cheaper of the two. */
#include "util/prom.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/assert.h"
#include "util/map.h"
#include "util/utf8.h"

const double prom_bucket_bounds[PROM_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
};

/* One series: a counter or gauge value, or a histogram. key is "family" or
 * "family{labels}", NUL-terminated; key[0..family_len) is the family name. */
typedef struct {
    bool histogram;
    uint32_t family_len;
    uint32_t key_len;
    union {
        double value;
        prom_histogram_t hist;
    } u;
    char key[];
} series_t;

struct prom_set {
    map_t map; /* series text -> series_t, which owns the key */
};

/* A label pair on its way into a key. The value is not NUL-terminated when it was
 * unescaped from JSON into a scratch buffer. */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} label_t;

/* ---- Histograms ---- */

void prom_histogram_observe(prom_histogram_t *h, double seconds) {
    if (!isfinite(seconds))
        return;
    /* The first bound >= seconds, or PROM_BUCKETS for above them all. */
    size_t lo = 0, hi = PROM_BUCKETS;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (seconds <= prom_bucket_bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    h->counts[lo]++;
    h->count++;
    h->sum += seconds;
}

/* What the set requires of a histogram it takes in. Each bucket is at most
 * PROM_COUNT_MAX (2^53), so their sum cannot overflow 64 bits. */
static bool hist_valid(const prom_histogram_t *h) {
    if (h->count > PROM_COUNT_MAX || !isfinite(h->sum))
        return false;
    uint64_t total = 0;
    for (size_t i = 0; i <= PROM_BUCKETS; i++) {
        if (h->counts[i] > PROM_COUNT_MAX)
            return false;
        total += h->counts[i];
    }
    return total == h->count;
}

/* Whether a + b stays within the set's invariants (both valid). */
static bool hist_fits(const prom_histogram_t *a, const prom_histogram_t *b) {
    return b->count <= PROM_COUNT_MAX - a->count && isfinite(a->sum + b->sum);
}

static void hist_add(prom_histogram_t *a, const prom_histogram_t *b) {
    for (size_t i = 0; i <= PROM_BUCKETS; i++)
        a->counts[i] += b->counts[i];
    a->sum += b->sum;
    a->count += b->count;
}

/* ---- Series text ---- */

/* Metric names may hold colons, label names may not; neither starts with a digit. */
static bool name_valid(const char *s, size_t len, bool metric) {
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (metric && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen) {
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* A key under construction in a caller's buffer of PROM_KEY_MAX + 1 bytes. */
typedef struct {
    char *p;
    size_t len;
    bool overflow;
} keybuf_t;

static void key_put(keybuf_t *k, const char *s, size_t n) {
    if (n > PROM_KEY_MAX - k->len) {
        k->overflow = true;
        return;
    }
    memcpy(k->p + k->len, s, n);
    k->len += n;
}

/* The label value escaping of the text format: backslash, double quote, newline. */
static void key_put_escaped(keybuf_t *k, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\')
            key_put(k, "\\\\", 2);
        else if (s[i] == '"')
            key_put(k, "\\\"", 2);
        else if (s[i] == '\n')
            key_put(k, "\\n", 2);
        else
            key_put(k, s + i, 1);
    }
}

/* Builds the canonical series text of family{labels} into out (PROM_KEY_MAX + 1 bytes,
 * NUL-terminated), sorting labels in place. Returns 0 or -EINVAL (see prom_set_add). */
static int build_key(const char *family, size_t family_len, label_t *labels, size_t n,
                     bool histogram, char *out, size_t *key_len) {
    if (!name_valid(family, family_len, true) || n > PROM_LABELS_MAX)
        return -EINVAL;
    /* Insertion sort: at most PROM_LABELS_MAX pairs. */
    for (size_t i = 1; i < n; i++) {
        label_t l = labels[i];
        size_t j = i;
        for (;
             j > 0 && bytes_cmp(labels[j - 1].name, labels[j - 1].name_len, l.name, l.name_len) > 0;
             j--)
            labels[j] = labels[j - 1];
        labels[j] = l;
    }
    keybuf_t k = {out, 0, false};
    key_put(&k, family, family_len);
    for (size_t i = 0; i < n; i++) {
        const label_t *l = &labels[i];
        if (!name_valid(l->name, l->name_len, false) ||
            (l->name_len >= 2 && l->name[0] == '_' && l->name[1] == '_') ||
            (histogram && l->name_len == 2 && memcmp(l->name, "le", 2) == 0) ||
            (i > 0 &&
             bytes_cmp(labels[i - 1].name, labels[i - 1].name_len, l->name, l->name_len) == 0) ||
            l->value_len == 0 || memchr(l->value, '\0', l->value_len) ||
            !utf8_is_valid((const uint8_t *)l->value, l->value_len))
            return -EINVAL;
        key_put(&k, i == 0 ? "{" : ",", 1);
        key_put(&k, l->name, l->name_len);
        key_put(&k, "=\"", 2);
        key_put_escaped(&k, l->value, l->value_len);
        key_put(&k, "\"", 1);
    }
    if (n > 0)
        key_put(&k, "}", 1);
    if (k.overflow)
        return -EINVAL;
    out[k.len] = '\0';
    *key_len = k.len;
    return 0;
}

/* Reads "k1", "v1", ..., NULL from the first n entries of arr (or none, arr NULL). */
static int labels_from_array(const char *const *arr, size_t n, label_t *labels, size_t *count) {
    *count = 0;
    if (!arr)
        return 0;
    for (size_t i = 0;; i += 2) {
        if (i >= n)
            return -EINVAL; /* no NULL within n */
        if (!arr[i])
            return 0;
        if (i + 1 >= n || !arr[i + 1] || *count == PROM_LABELS_MAX)
            return -EINVAL;
        labels[(*count)++] = (label_t){arr[i], strlen(arr[i]), arr[i + 1], strlen(arr[i + 1])};
    }
}

/* Parses a series text into family and labels, unescaping the values into scratch
 * (PROM_KEY_MAX bytes: unescaping only shortens). Only the structure is checked here;
 * build_key checks the rest, and the caller that the rebuilt text is the same. */
static int parse_key(const char *key, size_t len, size_t *family_len, label_t *labels, size_t *n,
                     char *scratch) {
    size_t i = 0, sp = 0;
    while (i < len && key[i] != '{')
        i++;
    *family_len = i;
    *n = 0;
    if (i == len)
        return 0;
    i++;
    for (;;) {
        if (*n == PROM_LABELS_MAX)
            return -EINVAL;
        label_t *l = &labels[*n];
        l->name = key + i;
        while (i < len && key[i] != '=')
            i++;
        if (i + 1 >= len || key[i + 1] != '"')
            return -EINVAL;
        l->name_len = (size_t)(key + i - l->name);
        i += 2;
        l->value = scratch + sp;
        while (i < len && key[i] != '"') {
            char c = key[i++];
            if (c == '\\') {
                if (i == len)
                    return -EINVAL;
                c = key[i++];
                if (c == 'n')
                    c = '\n';
                else if (c != '\\' && c != '"')
                    return -EINVAL;
            } else if (c == '\n' || c == '\0') {
                return -EINVAL;
            }
            PARLEY_ASSERT(sp < PROM_KEY_MAX);
            scratch[sp++] = c;
        }
        if (i == len)
            return -EINVAL;
        l->value_len = (size_t)(scratch + sp - l->value);
        (*n)++;
        i++;
        if (i < len && key[i] == ',') {
            i++;
            continue;
        }
        return i + 1 == len && key[i] == '}' ? 0 : -EINVAL;
    }
}

/* ---- Sets ---- */

prom_set_t *prom_set_new(void) {
    prom_set_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (map_init(&s->map)) {
        free(s);
        return NULL;
    }
    return s;
}

void prom_set_free(prom_set_t *s) {
    if (!s)
        return;
    map_entry_t *e;
    for (size_t i = 0; map_next(&s->map, &i, &e);)
        free(e->value);
    map_free(&s->map);
    free(s);
}

size_t prom_set_size(const prom_set_t *s) {
    return s->map.count;
}

/* Adds a value (h NULL) or a histogram to the series with this canonical key, creating
 * it when new. Nothing changes on error. */
static int add_keyed(prom_set_t *s, const char *key, size_t key_len, size_t family_len,
                     double value, const prom_histogram_t *h) {
    PARLEY_ASSERT(key_len <= PROM_KEY_MAX && family_len <= key_len);
    PARLEY_ASSERT(h ? hist_valid(h) : isfinite(value));
    bool histogram = h != NULL;
    series_t *se = map_get(&s->map, key, key_len);
    if (se) {
        if (se->histogram != histogram)
            return -EINVAL;
        if (histogram ? !hist_fits(&se->u.hist, h) : !isfinite(se->u.value + value))
            return -ERANGE;
        if (histogram)
            hist_add(&se->u.hist, h);
        else
            se->u.value += value;
        return 0;
    }
    if (s->map.count >= PROM_SERIES_MAX)
        return -ENOSPC;
    se = calloc(1, sizeof *se + key_len + 1);
    if (!se)
        return -ENOMEM;
    se->histogram = histogram;
    se->family_len = (uint32_t)family_len;
    se->key_len = (uint32_t)key_len;
    memcpy(se->key, key, key_len);
    if (histogram)
        se->u.hist = *h;
    else
        se->u.value = value;
    int rc = map_put(&s->map, se->key, key_len, se);
    if (rc) {
        free(se);
        return rc;
    }
    return 0;
}

static int add_labelled(prom_set_t *s, const char *family, double value, const prom_histogram_t *h,
                        const char *const *arr, size_t narr) {
    if (!family)
        return -EINVAL;
    if (h ? !hist_valid(h) : !isfinite(value))
        return -EINVAL;
    label_t labels[PROM_LABELS_MAX];
    size_t n;
    char key[PROM_KEY_MAX + 1];
    size_t key_len;
    size_t family_len = strlen(family);
    int rc = labels_from_array(arr, narr, labels, &n);
    if (!rc)
        rc = build_key(family, family_len, labels, n, h != NULL, key, &key_len);
    return rc ? rc : add_keyed(s, key, key_len, family_len, value, h);
}

int prom_set_addv(prom_set_t *s, const char *family, double value, const char *const *labels,
                  size_t n) {
    return add_labelled(s, family, value, NULL, labels, n);
}

int prom_set_add_histogramv(prom_set_t *s, const char *family, const prom_histogram_t *h,
                            const char *const *labels, size_t n) {
    return h ? add_labelled(s, family, 0, h, labels, n) : -EINVAL;
}

int prom_set_merge(prom_set_t *s, const prom_set_t *other) {
    /* First every check, so that a refused merge changes nothing; then the sums. */
    map_entry_t *e;
    size_t fresh = 0;
    for (size_t i = 0; map_next(&other->map, &i, &e);) {
        const series_t *o = e->value;
        const series_t *t = map_get(&s->map, o->key, o->key_len);
        if (!t) {
            fresh++;
            continue;
        }
        if (t->histogram != o->histogram)
            return -EINVAL;
        if (o->histogram ? !hist_fits(&t->u.hist, &o->u.hist) : !isfinite(t->u.value + o->u.value))
            return -ERANGE;
    }
    if (fresh > PROM_SERIES_MAX - s->map.count)
        return -ENOSPC;
    /* With s == other every series exists already, so the map is not grown while it is
     * being walked. */
    for (size_t i = 0; map_next(&other->map, &i, &e);) {
        const series_t *o = e->value;
        int rc = add_keyed(s, o->key, o->key_len, o->family_len, o->histogram ? 0 : o->u.value,
                           o->histogram ? &o->u.hist : NULL);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- JSON ---- */

static json_t *hist_to_json(const prom_histogram_t *h) {
    json_t *j = json_object(), *buckets = json_array();
    if (!j || !buckets || json_object_set_new(j, "buckets", buckets)) {
        json_decref(j);
        return NULL;
    }
    for (size_t i = 0; i <= PROM_BUCKETS; i++)
        if (json_array_append_new(buckets, json_integer((json_int_t)h->counts[i])))
            goto fail;
    if (json_object_set_new(j, "sum", json_real(h->sum)) ||
        json_object_set_new(j, "count", json_integer((json_int_t)h->count)))
        goto fail;
    return j;
fail:
    json_decref(j);
    return NULL;
}

json_t *prom_set_to_json(const prom_set_t *s) {
    json_t *j = json_object();
    if (!j)
        return NULL;
    map_entry_t *e;
    for (size_t i = 0; map_next(&s->map, &i, &e);) {
        const series_t *se = e->value;
        /* json_object_setn_new takes the value's reference even when it fails, and
         * fails for a NULL value. */
        json_t *v = se->histogram ? hist_to_json(&se->u.hist) : json_real(se->u.value);
        if (json_object_setn_new(j, se->key, se->key_len, v)) {
            json_decref(j);
            return NULL;
        }
    }
    return j;
}

/* A JSON integer in 0..PROM_COUNT_MAX. */
static bool count_read(const json_t *j, uint64_t *out) {
    if (!json_is_integer(j))
        return false;
    json_int_t v = json_integer_value(j);
    if (v < 0 || (uint64_t)v > PROM_COUNT_MAX)
        return false;
    *out = (uint64_t)v;
    return true;
}

static int hist_from_json(const json_t *j, prom_histogram_t *h) {
    const json_t *buckets = json_object_get(j, "buckets");
    const json_t *sum = json_object_get(j, "sum");
    if (json_object_size(j) != 3 || !json_is_array(buckets) ||
        json_array_size(buckets) != PROM_BUCKETS + 1 || !json_is_number(sum) ||
        !count_read(json_object_get(j, "count"), &h->count))
        return -EINVAL;
    for (size_t i = 0; i <= PROM_BUCKETS; i++)
        if (!count_read(json_array_get(buckets, i), &h->counts[i]))
            return -EINVAL;
    h->sum = json_number_value(sum);
    return hist_valid(h) ? 0 : -EINVAL;
}

static int series_from_json(prom_set_t *s, const char *key, size_t key_len, const json_t *v) {
    double value = 0;
    prom_histogram_t h;
    bool histogram = json_is_object(v);
    if (histogram) {
        if (hist_from_json(v, &h))
            return -EINVAL;
    } else if (json_is_number(v)) {
        value = json_number_value(v);
        if (!isfinite(value))
            return -EINVAL;
    } else {
        return -EINVAL;
    }
    if (key_len > PROM_KEY_MAX)
        return -EINVAL;
    label_t labels[PROM_LABELS_MAX];
    size_t n, family_len, canon_len;
    char scratch[PROM_KEY_MAX], canon[PROM_KEY_MAX + 1];
    if (parse_key(key, key_len, &family_len, labels, &n, scratch) ||
        build_key(key, family_len, labels, n, histogram, canon, &canon_len) ||
        canon_len != key_len || memcmp(canon, key, key_len) != 0)
        return -EINVAL;
    /* Keys of a JSON object are unique and canonical keys name distinct series, so
     * this always creates; -EINVAL should it not. */
    if (map_get(&s->map, canon, canon_len))
        return -EINVAL;
    return add_keyed(s, canon, canon_len, family_len, value, histogram ? &h : NULL);
}

int prom_set_from_json(const json_t *j, prom_set_t **out) {
    if (!json_is_object(j) || json_object_size(j) > PROM_SERIES_MAX)
        return -EINVAL;
    prom_set_t *s = prom_set_new();
    if (!s)
        return -ENOMEM;
    const char *key;
    size_t key_len;
    json_t *v;
    /* The iteration macro wants a non-const object; the walk does not modify it. */
    json_t *obj = (json_t *)j;
    json_object_keylen_foreach(obj, key, key_len, v) {
        int rc = series_from_json(s, key, key_len, v);
        if (rc) {
            prom_set_free(s);
            return rc;
        }
    }
    *out = s;
    return 0;
}

/* ---- Text format ---- */

/* Integers for whole values below 1e17 (so counters never read "3e+00"); otherwise the
 * shortest %g that reads back to the same double. -0 is written as 0. */
static void format_number(char *dst, size_t size, double v) {
    if (v == 0) {
        snprintf(dst, size, "0");
    } else if (isnan(v)) {
        snprintf(dst, size, "NaN");
    } else if (isinf(v)) {
        snprintf(dst, size, v > 0 ? "+Inf" : "-Inf");
    } else if (fabs(v) < 1e17 && v == trunc(v)) {
        snprintf(dst, size, "%.0f", v);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(dst, size, "%.*g", prec, v);
            if (strtod(dst, NULL) == v)
                break;
        }
    }
}

static void labels_of(const series_t *se, const char **p, size_t *len) {
    if (se->key_len == se->family_len) {
        *p = "";
        *len = 0;
    } else {
        *p = se->key + se->family_len + 1;
        *len = se->key_len - se->family_len - 2;
    }
}

static int series_cmp(const void *a, const void *b) {
    const series_t *x = *(const series_t *const *)a, *y = *(const series_t *const *)b;
    int c = bytes_cmp(x->key, x->family_len, y->key, y->family_len);
    if (c)
        return c;
    const char *xl, *yl;
    size_t xn, yn;
    labels_of(x, &xl, &xn);
    labels_of(y, &yl, &yn);
    return bytes_cmp(xl, xn, yl, yn);
}

/* One line: family + suffix, the series' labels plus le when given, the value. */
static int write_sample(buf_t *out, const series_t *se, const char *suffix, const char *le,
                        double v) {
    const char *labels;
    size_t labels_len;
    labels_of(se, &labels, &labels_len);
    char num[40];
    format_number(num, sizeof num, v);
    int rc = buf_append(out, se->key, se->family_len);
    if (!rc)
        rc = buf_append_str(out, suffix);
    if (!rc && (labels_len || le)) {
        rc = buf_append(out, "{", 1);
        if (!rc)
            rc = buf_append(out, labels, labels_len);
        if (!rc && le)
            rc = buf_printf(out, "%sle=\"%s\"", labels_len ? "," : "", le);
        if (!rc)
            rc = buf_append(out, "}", 1);
    }
    return rc ? rc : buf_printf(out, " %s\n", num);
}

static int write_histogram(buf_t *out, const series_t *se) {
    const prom_histogram_t *h = &se->u.hist;
    uint64_t cumulative = 0;
    char le[40];
    int rc = 0;
    for (size_t i = 0; i < PROM_BUCKETS && !rc; i++) {
        cumulative += h->counts[i];
        format_number(le, sizeof le, prom_bucket_bounds[i]);
        rc = write_sample(out, se, "_bucket", le, (double)cumulative);
    }
    cumulative += h->counts[PROM_BUCKETS];
    PARLEY_ASSERT(cumulative == h->count);
    if (!rc)
        rc = write_sample(out, se, "_bucket", "+Inf", (double)cumulative);
    if (!rc)
        rc = write_sample(out, se, "_sum", NULL, h->sum);
    if (!rc)
        rc = write_sample(out, se, "_count", NULL, (double)h->count);
    return rc;
}

/* HELP text escaping of the text format: backslash and newline. */
static int write_header(buf_t *out, const prom_family_t *f) {
    static const char *const types[] = {"counter", "gauge", "histogram"};
    int rc = buf_printf(out, "# HELP %s ", f->name);
    for (const char *p = f->help ? f->help : ""; *p && !rc; p++) {
        if (*p == '\\')
            rc = buf_append(out, "\\\\", 2);
        else if (*p == '\n')
            rc = buf_append(out, "\\n", 2);
        else
            rc = buf_append(out, p, 1);
    }
    return rc ? rc : buf_printf(out, "\n# TYPE %s %s\n", f->name, types[f->type]);
}

int prom_render(const prom_set_t *s, const prom_family_t *families, size_t nfamilies, buf_t *out) {
    size_t n = s->map.count, start = out->len;
    const series_t **all = malloc((n + 1) * sizeof *all); /* + 1: never malloc(0) */
    if (!all)
        return -ENOMEM;
    map_entry_t *e;
    size_t k = 0;
    for (size_t i = 0; map_next(&s->map, &i, &e);)
        all[k++] = e->value;
    PARLEY_ASSERT(k == n);
    qsort(all, n, sizeof *all, series_cmp);

    int rc = 0;
    for (size_t f = 0; f < nfamilies && !rc; f++) {
        const prom_family_t *fam = &families[f];
        PARLEY_ASSERT(fam->type <= PROM_HISTOGRAM);
        size_t name_len = strlen(fam->name);
        /* The first series of this family: a lower bound on the family alone. */
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (bytes_cmp(all[mid]->key, all[mid]->family_len, fam->name, name_len) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        bool want_histogram = fam->type == PROM_HISTOGRAM, header = false;
        for (size_t i = lo; i < n && !rc; i++) {
            const series_t *se = all[i];
            if (bytes_cmp(se->key, se->family_len, fam->name, name_len) != 0)
                break;
            if (se->histogram != want_histogram)
                continue;
            if (!header) {
                header = true;
                if ((rc = write_header(out, fam)))
                    break;
            }
            rc = se->histogram ? write_histogram(out, se)
                               : write_sample(out, se, "", NULL, se->u.value);
        }
    }
    free(all);
    if (rc)
        out->len = start;
    return rc;
}
