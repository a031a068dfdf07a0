/* tests/fuzz/prom_json_fuzz.c — libFuzzer target for prom_set_from_json (util/prom.c),
 * which reads the sample sets that the other workers send to the one answering a scrape.
 *
 * The input is read as JSON text. Beyond "no crash", a set that is accepted is checked:
 * it has one series per member, and to_json writes back the very keys and numbers it
 * read (from_json takes keys only in to_json's form, and sums nothing); from_json
 * accepts what to_json writes, and a second trip writes the same JSON; through text as
 * well. Both sets render the same bytes, with a family table made of the input's own
 * names, and the rendering has exactly the lines the members call for (two header lines
 * per family with samples, one per counter, PROM_BUCKETS + 3 per histogram): a label
 * value that broke out of its quotes or a newline left unescaped would show. Merged into
 * an empty set it renders the same; merged into itself it is doubled or refused
 * (-ERANGE) unchanged. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/prom.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* A family table from the members' keys: each family once, a histogram when its first
 * member is one; with the number of lines the rendering must have. */
typedef struct {
    prom_family_t *fams;
    char **names;
    size_t n;
    size_t lines;
} table_t;

/* The index of the family named key[0..len), or t->n. */
static size_t family_find(const table_t *t, const char *key, size_t len) {
    for (size_t f = 0; f < t->n; f++)
        if (strlen(t->names[f]) == len && memcmp(t->names[f], key, len) == 0)
            return f;
    return t->n;
}

static void table_build(const json_t *j, table_t *t) {
    size_t cap = json_object_size(j);
    t->fams = calloc(cap + 1, sizeof *t->fams);
    t->names = calloc(cap + 1, sizeof *t->names);
    size_t *samples = calloc(cap + 1, sizeof *samples);
    CHECK(t->fams && t->names && samples);
    t->n = t->lines = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v) {
        size_t len = strcspn(key, "{");
        bool histogram = json_is_object(v);
        size_t f = family_find(t, key, len);
        if (f == t->n) {
            CHECK((t->names[f] = strndup(key, len)) != NULL);
            t->fams[f] =
                (prom_family_t){t->names[f], histogram ? PROM_HISTOGRAM : PROM_COUNTER, "Fuzz."};
            t->n++;
        }
        if ((t->fams[f].type == PROM_HISTOGRAM) == histogram)
            samples[f] += histogram ? PROM_BUCKETS + 3 : 1;
    }
    for (size_t f = 0; f < t->n; f++)
        t->lines += samples[f] ? 2 + samples[f] : 0;
    free(samples);
}

static void table_free(table_t *t) {
    for (size_t f = 0; f < t->n; f++)
        free(t->names[f]);
    free(t->names);
    free(t->fams);
}

static void render(const prom_set_t *s, const table_t *t, buf_t *out) {
    out->len = 0;
    CHECK(prom_render(s, t->fams, t->n, out) == 0);
}

static bool same_text(const buf_t *a, const buf_t *b) {
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* What to_json wrote has the input's keys, each with the input's numbers: from_json
 * accepts only keys in the form to_json writes them, and sums nothing. */
static void same_members(const json_t *in, const json_t *out) {
    CHECK(json_object_size(in) == json_object_size(out));
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)in, key, v) {
        const json_t *w = json_object_get(out, key);
        CHECK(w != NULL && json_is_object(v) == json_is_object(w));
        if (json_is_object(v)) {
            CHECK(json_equal(json_object_get(v, "buckets"), json_object_get(w, "buckets")));
            CHECK(json_equal(json_object_get(v, "count"), json_object_get(w, "count")));
            CHECK(json_number_value(json_object_get(v, "sum")) ==
                  json_number_value(json_object_get(w, "sum")));
        } else {
            CHECK(json_number_value(v) == json_number_value(w));
        }
    }
}

static prom_set_t *trip(const prom_set_t *s, json_t **written) {
    json_t *j = prom_set_to_json(s);
    CHECK(j != NULL && json_object_size(j) == prom_set_size(s));
    prom_set_t *back = NULL;
    CHECK(prom_set_from_json(j, &back) == 0 && back != NULL);
    *written = j;
    return back;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!j)
        return 0;
    prom_set_t *s = NULL;
    int rc = prom_set_from_json(j, &s);
    CHECK(rc == 0 || rc == -EINVAL);
    if (rc) {
        CHECK(s == NULL);
        json_decref(j);
        return 0;
    }
    CHECK(prom_set_size(s) == json_object_size(j));

    /* to_json ∘ from_json reads back, and is then a fixed point. */
    json_t *j1, *j2;
    prom_set_t *s1 = trip(s, &j1);
    prom_set_t *s2 = trip(s1, &j2);
    CHECK(json_equal(j1, j2));
    same_members(j, j1);
    /* Through text, as between processes. */
    char *text = json_dumps(j1, JSON_COMPACT);
    CHECK(text != NULL);
    json_t *j3 = json_loads(text, 0, NULL);
    CHECK(j3 != NULL && json_equal(j1, j3));
    prom_set_t *s3 = NULL;
    CHECK(prom_set_from_json(j3, &s3) == 0);

    table_t t;
    table_build(j, &t);
    buf_t r = {0}, r1 = {0};
    render(s, &t, &r);
    size_t lines = 0;
    for (size_t i = 0; i < r.len; i++)
        lines += r.data[i] == '\n';
    CHECK(lines == t.lines);
    CHECK(r.len == 0 || r.data[r.len - 1] == '\n');
    render(s1, &t, &r1);
    CHECK(same_text(&r, &r1));
    render(s3, &t, &r1);
    CHECK(same_text(&r, &r1));

    /* Merging: into an empty set copies; into itself doubles or changes nothing. */
    prom_set_t *m = prom_set_new();
    CHECK(m != NULL && prom_set_merge(m, s) == 0 && prom_set_size(m) == prom_set_size(s));
    render(m, &t, &r1);
    CHECK(same_text(&r, &r1));
    rc = prom_set_merge(m, m);
    CHECK(rc == 0 || rc == -ERANGE);
    render(m, &t, &r1);
    if (rc == -ERANGE)
        CHECK(same_text(&r, &r1));
    if (rc == 0) {
        /* Doubling: the sum of the set with a copy of itself. */
        prom_set_t *d = prom_set_new();
        CHECK(d != NULL && prom_set_merge(d, s) == 0 && prom_set_merge(d, s1) == 0);
        buf_t rd = {0};
        render(d, &t, &rd);
        CHECK(same_text(&r1, &rd));
        buf_free(&rd);
        prom_set_free(d);
    }

    prom_set_free(m);
    buf_free(&r);
    buf_free(&r1);
    table_free(&t);
    prom_set_free(s3);
    json_decref(j3);
    free(text);
    prom_set_free(s2);
    prom_set_free(s1);
    json_decref(j2);
    json_decref(j1);
    prom_set_free(s);
    json_decref(j);
    return 0;
}
