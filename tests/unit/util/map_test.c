/* tests/unit/util/map_test.c — the SipHash-keyed open-addressing map.
 *
 * SipHash-2-4 is checked against the 64 reference vectors of the SipHash authors
 * (key 00..0f, message 00..n-1). The map is checked against a plain array used as the
 * reference model over 100k keys with random deletes, and — with the hash key pinned so
 * that probe chains can be built on purpose — backward-shift deletion is checked at every
 * position of clustered and wrapped-around chains, with the table's own invariant (no
 * entry separated from its home slot by an empty one) verified after each step. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/map.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* vectors_sip64 of the SipHash reference implementation: SipHash-2-4 with key
 * 00 01 .. 0f over the messages 00 01 .. (n-1), n = 0..63. */
static const uint64_t sip64_vectors[64] = {
    0x726fdb47dd0e0e31, 0x74f839c593dc67fd, 0x0d6c8009d9a94f5a, 0x85676696d7fb7e2d,
    0xcf2794e0277187b7, 0x18765564cd99a68d, 0xcbc9466e58fee3ce, 0xab0200f58b01d137,
    0x93f5f5799a932462, 0x9e0082df0ba9e4b0, 0x7a5dbbc594ddb9f3, 0xf4b32f46226bada7,
    0x751e8fbc860ee5fb, 0x14ea5627c0843d90, 0xf723ca908e7af2ee, 0xa129ca6149be45e5,
    0x3f2acc7f57c29bdb, 0x699ae9f52cbe4794, 0x4bc1b3f0968dd39c, 0xbb6dc91da77961bd,
    0xbed65cf21aa2ee98, 0xd0f2cbb02e3b67c7, 0x93536795e3a33e88, 0xa80c038ccd5ccec8,
    0xb8ad50c6f649af94, 0xbce192de8a85b8ea, 0x17d835b85bbb15f3, 0x2f2e6163076bcfad,
    0xde4daaaca71dc9a5, 0xa6a2506687956571, 0xad87a3535c49ef28, 0x32d892fad841c342,
    0x7127512f72f27cce, 0xa7f32346f95978e3, 0x12e0b01abb051238, 0x15e034d40fa197ae,
    0x314dffbe0815a3b4, 0x027990f029623981, 0xcadcd4e59ef40c4d, 0x9abfd8766a33735c,
    0x0e3ea96b5304a7d0, 0xad0c42d6fc585992, 0x187306c89bc215a9, 0xd4a60abcf3792b95,
    0xf935451de4f21df2, 0xa9538f0419755787, 0xdb9acddff56ca510, 0xd06c98cd5c0975eb,
    0xe612a3cb9ecba951, 0xc766e62cfcadaf96, 0xee64435a9752fe72, 0xa192d576b245165a,
    0x0a8787bf8ecb74b2, 0x81b3e73d20b49b6f, 0x7fa8220ba3b2ecea, 0x245731c13ca42499,
    0xb78dbfaf3a8d83bd, 0xea1ad565322a1a0b, 0x60e61c23a3795013, 0x6606d7e446282b93,
    0x6ca4ecb15c5f91e1, 0x9f626da15c9625f3, 0xe51b38608ef25f57, 0x958a324ceb064572,
};

/* The reference key as two little-endian words. */
#define SIP_K0 0x0706050403020100ULL
#define SIP_K1 0x0f0e0d0c0b0a0908ULL

/* A small deterministic generator, so that failures reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* The table's invariant: every entry sits at its home slot or after it with no empty
 * slot in between (otherwise lookups stop early), the cached hash is the key's hash,
 * and `count` is the number of occupied slots. */
static void assert_table_sound(const map_t *m) {
    size_t used = 0;
    for (size_t i = 0; i < m->cap; i++) {
        const map_entry_t *e = &m->slots[i];
        if (!e->key)
            continue;
        used++;
        assert_int_equal(e->hash, (uint32_t)siphash24(e->key, e->klen, m->k0, m->k1));
        size_t mask = m->cap - 1;
        for (size_t j = e->hash & mask; j != i; j = (j + 1) & mask)
            if (!m->slots[j].key)
                fail_msg("slot %zu: gap at %zu before its entry", i, j);
    }
    assert_int_equal(used, m->count);
}

/* ---- SipHash ---- */

static void test_siphash_paper_example(void **state) {
    uint8_t msg[15];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)i;
    assert_int_equal(siphash24(msg, sizeof msg, SIP_K0, SIP_K1), 0xa129ca6149be45e5ULL);
}

static void test_siphash_reference_vectors(void **state) {
    uint8_t msg[64];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)i;
    for (size_t n = 0; n < ARRAY_LEN(sip64_vectors); n++) {
        uint64_t got = siphash24(msg, n, SIP_K0, SIP_K1);
        if (got != sip64_vectors[n])
            fail_msg("length %zu: got %016llx, want %016llx", n, (unsigned long long)got,
                     (unsigned long long)sip64_vectors[n]);
    }
}

/* Reading 8-byte words with memcpy: the result must not depend on the alignment of the
 * input (UBSan would also flag a misaligned load). */
static void test_siphash_unaligned_input(void **state) {
    uint8_t raw[64 + 8];
    for (size_t shift = 1; shift < 8; shift++) {
        for (size_t i = 0; i < 64; i++)
            raw[shift + i] = (uint8_t)i;
        for (size_t n = 0; n < 64; n++)
            assert_int_equal(siphash24(raw + shift, n, SIP_K0, SIP_K1), sip64_vectors[n]);
    }
}

static void test_siphash_key_matters(void **state) {
    assert_int_not_equal(siphash24("room", 4, 1, 2), siphash24("room", 4, 1, 3));
    assert_int_not_equal(siphash24("room", 4, 1, 2), siphash24("room", 4, 2, 2));
    assert_int_not_equal(siphash24("room", 4, 1, 2), siphash24("roon", 4, 1, 2));
}

/* ---- basic operations ---- */

static void test_empty_map(void **state) {
    map_t m;
    assert_int_equal(map_init(&m), 0);
    assert_int_equal(m.count, 0);
    assert_null(map_get(&m, "a", 1));
    assert_null(map_del(&m, "a", 1));
    size_t pos = 0;
    map_entry_t *e = NULL;
    assert_int_equal(map_next(&m, &pos, &e), 0);
    map_free(&m);
    /* Freed maps are empty and reusable. */
    assert_null(map_get(&m, "a", 1));
    int v = 1;
    assert_int_equal(map_put(&m, "a", 1, &v), 0);
    assert_ptr_equal(map_get(&m, "a", 1), &v);
    map_free(&m);
}

static void test_random_keys_differ_per_map(void **state) {
    map_t a, b;
    assert_int_equal(map_init(&a), 0);
    assert_int_equal(map_init(&b), 0);
    assert_true(a.k0 != b.k0 || a.k1 != b.k1);
    map_free(&a);
    map_free(&b);
}

static void test_put_get_del(void **state) {
    map_t m;
    assert_int_equal(map_init(&m), 0);
    int one = 1, two = 2, three = 3;
    assert_int_equal(map_put(&m, "one", 3, &one), 0);
    assert_int_equal(map_put(&m, "two", 3, &two), 0);
    assert_int_equal(map_put(&m, "three", 5, &three), 0);
    assert_int_equal(m.count, 3);
    assert_ptr_equal(map_get(&m, "one", 3), &one);
    assert_ptr_equal(map_get(&m, "two", 3), &two);
    assert_ptr_equal(map_get(&m, "three", 5), &three);
    /* Lengths are part of the key: prefixes and extensions are other keys. */
    assert_null(map_get(&m, "thre", 4));
    assert_null(map_get(&m, "one!", 4));
    assert_null(map_get(&m, "on", 2));
    assert_null(map_get(&m, "four", 4));

    assert_ptr_equal(map_del(&m, "two", 3), &two);
    assert_int_equal(m.count, 2);
    assert_null(map_get(&m, "two", 3));
    assert_null(map_del(&m, "two", 3));
    assert_int_equal(m.count, 2);
    assert_ptr_equal(map_get(&m, "one", 3), &one);
    assert_ptr_equal(map_get(&m, "three", 5), &three);
    assert_table_sound(&m);
    map_free(&m);
}

/* Replacing keeps one entry and takes the new key pointer: callers (handler tables)
 * free the old key's storage right after replacing it. */
static void test_replace_takes_new_key(void **state) {
    map_t m;
    assert_int_equal(map_init(&m), 0);
    char *first = strdup("event");
    char *second = strdup("event");
    int a = 1, b = 2;
    assert_int_equal(map_put(&m, first, 5, &a), 0);
    assert_int_equal(map_put(&m, second, 5, &b), 0);
    assert_int_equal(m.count, 1);
    assert_ptr_equal(map_get(&m, "event", 5), &b);
    memset(first, 'x', 5);
    free(first); /* ASan reports a use after free if the map still points here */
    assert_ptr_equal(map_get(&m, "event", 5), &b);
    size_t pos = 0;
    map_entry_t *e;
    assert_int_equal(map_next(&m, &pos, &e), 1);
    assert_ptr_equal(e->key, second);
    assert_int_equal(map_next(&m, &pos, &e), 0);
    assert_ptr_equal(map_del(&m, "event", 5), &b);
    assert_int_equal(m.count, 0);
    free(second);
    map_free(&m);
}

static void test_binary_keys(void **state) {
    map_t m;
    assert_int_equal(map_init(&m), 0);
    static const char k1[] = {'a', '\0', 'b'};
    static const char k2[] = {'a', '\0', 'c'};
    static const char k3[] = {'a'};
    static const char k4[] = {'a', '\0'};
    static const char k5[] = {'\0', '\0', '\0', '\0', '\0', '\0', '\0', '\0', '\0'};
    static const char k6[] = {'\0', '\0', '\0', '\0', '\0', '\0', '\0', '\0'};
    static const char k7[] = {(char)0xff, (char)0x80, 0x7f, 0x01};
    static const char empty[] = "";
    int v[8];
    assert_int_equal(map_put(&m, k1, sizeof k1, &v[0]), 0);
    assert_int_equal(map_put(&m, k2, sizeof k2, &v[1]), 0);
    assert_int_equal(map_put(&m, k3, sizeof k3, &v[2]), 0);
    assert_int_equal(map_put(&m, k4, sizeof k4, &v[3]), 0);
    assert_int_equal(map_put(&m, k5, sizeof k5, &v[4]), 0);
    assert_int_equal(map_put(&m, k6, sizeof k6, &v[5]), 0);
    assert_int_equal(map_put(&m, k7, sizeof k7, &v[6]), 0);
    assert_int_equal(map_put(&m, empty, 0, &v[7]), 0); /* the zero-length key */
    assert_int_equal(m.count, 8);

    /* Looked up through copies: equality is by bytes, not by pointer or strcmp. */
    char copy[16];
    memcpy(copy, k1, sizeof k1);
    assert_ptr_equal(map_get(&m, copy, sizeof k1), &v[0]);
    memcpy(copy, k2, sizeof k2);
    assert_ptr_equal(map_get(&m, copy, sizeof k2), &v[1]);
    assert_ptr_equal(map_get(&m, "a", 1), &v[2]);
    memcpy(copy, k4, sizeof k4);
    assert_ptr_equal(map_get(&m, copy, sizeof k4), &v[3]);
    memset(copy, 0, sizeof copy);
    assert_ptr_equal(map_get(&m, copy, 9), &v[4]);
    assert_ptr_equal(map_get(&m, copy, 8), &v[5]);
    assert_null(map_get(&m, copy, 7));
    assert_null(map_get(&m, copy, 10));
    memcpy(copy, k7, sizeof k7);
    assert_ptr_equal(map_get(&m, copy, sizeof k7), &v[6]);
    assert_ptr_equal(map_get(&m, "zzz", 0), &v[7]);

    assert_ptr_equal(map_del(&m, copy, sizeof k7), &v[6]);
    memset(copy, 0, sizeof copy);
    assert_ptr_equal(map_del(&m, copy, 9), &v[4]);
    assert_ptr_equal(map_get(&m, copy, 8), &v[5]);
    assert_ptr_equal(map_del(&m, "", 0), &v[7]);
    assert_null(map_get(&m, "", 0));
    assert_int_equal(m.count, 5);
    assert_table_sound(&m);
    map_free(&m);
}

static void test_iteration_visits_each_entry_once(void **state) {
    map_t m;
    assert_int_equal(map_init(&m), 0);
    enum { N = 1000 };
    static char keys[N][8];
    static int seen[N];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        assert_int_equal(map_put(&m, keys[i], strlen(keys[i]), &seen[i]), 0);
        seen[i] = 0;
    }
    size_t pos = 0, visits = 0;
    map_entry_t *e;
    while (map_next(&m, &pos, &e)) {
        int *slot = e->value;
        (*slot)++;
        visits++;
        assert_int_equal(e->klen, strlen(keys[slot - seen]));
        assert_memory_equal(e->key, keys[slot - seen], e->klen);
    }
    assert_int_equal(visits, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    /* A finished iteration stays finished. */
    assert_int_equal(map_next(&m, &pos, &e), 0);
    map_free(&m);
}

/* ---- against a reference model ---- */

/* 100k keys inserted, then rounds of random deletes and re-inserts, every key's presence
 * checked against a plain array after each round; iteration must list exactly the live
 * keys. */
static void test_many_keys_against_reference(void **state) {
    enum { N = 100000 };
    char(*keys)[12] = malloc(sizeof(*keys) * N);
    unsigned char *live = calloc(N, 1);
    unsigned char *seen = calloc(N, 1);
    assert_non_null(keys);
    assert_non_null(live);
    assert_non_null(seen);
    map_t m;
    assert_int_equal(map_init(&m), 0);
    /* Value i+1 (never NULL) identifies key i. */
    for (size_t i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "key:%zu", i);
        assert_int_equal(map_put(&m, keys[i], strlen(keys[i]), (void *)(uintptr_t)(i + 1)), 0);
        live[i] = 1;
    }
    assert_int_equal(m.count, N);
    assert_true(m.count * 4 <= m.cap * 3); /* the load factor limit held while growing */
    size_t nlive = N;
    for (int round = 0; round < 4; round++) {
        for (size_t k = 0; k < N / 2; k++) {
            size_t i = (size_t)(rng() % N);
            void *got = map_del(&m, keys[i], strlen(keys[i]));
            if (live[i]) {
                assert_ptr_equal(got, (void *)(uintptr_t)(i + 1));
                live[i] = 0;
                nlive--;
            } else {
                assert_null(got);
            }
        }
        for (size_t k = 0; k < N / 4; k++) {
            size_t i = (size_t)(rng() % N);
            assert_int_equal(map_put(&m, keys[i], strlen(keys[i]), (void *)(uintptr_t)(i + 1)), 0);
            if (!live[i])
                nlive++;
            live[i] = 1;
        }
        assert_int_equal(m.count, nlive);
        for (size_t i = 0; i < N; i++) {
            void *got = map_get(&m, keys[i], strlen(keys[i]));
            if (live[i])
                assert_ptr_equal(got, (void *)(uintptr_t)(i + 1));
            else if (got)
                fail_msg("deleted key %s still found", keys[i]);
        }
        memset(seen, 0, N);
        size_t pos = 0, visits = 0;
        map_entry_t *e;
        while (map_next(&m, &pos, &e)) {
            size_t i = (uintptr_t)e->value - 1;
            assert_true(i < N);
            assert_true(live[i]);
            assert_int_equal(seen[i], 0);
            seen[i] = 1;
            visits++;
        }
        assert_int_equal(visits, nlive);
    }
    assert_table_sound(&m);
    /* Delete everything: the table ends empty. */
    for (size_t i = 0; i < N; i++)
        if (live[i])
            assert_ptr_equal(map_del(&m, keys[i], strlen(keys[i])), (void *)(uintptr_t)(i + 1));
    assert_int_equal(m.count, 0);
    size_t pos = 0;
    map_entry_t *e;
    assert_int_equal(map_next(&m, &pos, &e), 0);
    map_free(&m);
    free(keys);
    free(live);
    free(seen);
}

/* ---- backward-shift deletion in built probe chains ---- */

/* With the hash key pinned, finds `count` distinct short keys whose home slot in a
 * 16-slot table is `home`, writing them to out (each up to 15 bytes + NUL). */
static size_t keys_homed_at(const map_t *m, size_t home, size_t count, char (*out)[16],
                            unsigned *counter) {
    size_t n = 0;
    while (n < count) {
        char k[16];
        snprintf(k, sizeof k, "c%u", (*counter)++);
        if ((siphash24(k, strlen(k), m->k0, m->k1) & 15) == home)
            memcpy(out[n++], k, sizeof k);
    }
    return n;
}

typedef struct {
    char keys[12][16];
    size_t n;
} chain_t;

/* A layout that fills 12 of 16 slots (the most before the table grows) with runs that
 * overlap and wrap around the end: homes 13,13,13,14,15,15,0,0,2,3,3,5. Deleting from
 * the front of a run must pull later entries back, including across slot 15 → 0, but
 * never in front of their home. */
static void build_chain(map_t *m, chain_t *c) {
    static const size_t homes[] = {13, 13, 13, 14, 15, 15, 0, 0, 2, 3, 3, 5};
    unsigned counter = 0;
    c->n = ARRAY_LEN(homes);
    for (size_t i = 0; i < c->n; i++)
        keys_homed_at(m, homes[i], 1, &c->keys[i], &counter);
}

static map_t pinned_map(void) {
    map_t m;
    assert_int_equal(map_init(&m), 0);
    m.k0 = 0x0123456789abcdefULL; /* deterministic layouts */
    m.k1 = 0xfedcba9876543210ULL;
    return m;
}

static void assert_exactly_live(const map_t *m, const chain_t *c, const bool *live) {
    for (size_t i = 0; i < c->n; i++) {
        void *got = map_get(m, c->keys[i], strlen(c->keys[i]));
        if (live[i])
            assert_ptr_equal(got, (void *)(uintptr_t)(i + 1));
        else
            assert_null(got);
    }
    bool seen[12] = {false};
    size_t pos = 0, visits = 0;
    map_entry_t *e;
    while (map_next(m, &pos, &e)) {
        size_t i = (uintptr_t)e->value - 1;
        assert_true(i < c->n);
        assert_true(live[i]);
        assert_false(seen[i]);
        seen[i] = true;
        visits++;
    }
    size_t nlive = 0;
    for (size_t i = 0; i < c->n; i++)
        nlive += live[i];
    assert_int_equal(visits, nlive);
    assert_table_sound(m);
}

static void fill_chain(map_t *m, const chain_t *c) {
    for (size_t i = 0; i < c->n; i++)
        assert_int_equal(map_put(m, c->keys[i], strlen(c->keys[i]), (void *)(uintptr_t)(i + 1)), 0);
    assert_int_equal(m->cap, 16); /* the layout depends on it */
}

/* Delete each position of the chain alone, from a fresh table each time. */
static void test_backward_shift_each_position(void **state) {
    map_t m = pinned_map();
    chain_t c;
    build_chain(&m, &c);
    for (size_t victim = 0; victim < c.n; victim++) {
        map_t t = pinned_map();
        fill_chain(&t, &c);
        /* The layout really has wrapped, overlapping runs: slots 13..15 and 0.. busy. */
        assert_non_null(t.slots[15].key);
        assert_non_null(t.slots[0].key);
        bool live[12];
        for (size_t i = 0; i < c.n; i++)
            live[i] = i != victim;
        assert_ptr_equal(map_del(&t, c.keys[victim], strlen(c.keys[victim])),
                         (void *)(uintptr_t)(victim + 1));
        assert_exactly_live(&t, &c, live);
        map_free(&t);
    }
    map_free(&m);
}

/* Delete everything in many random orders, checking after every step; then re-insert
 * deleted keys into the holes and check again. */
static void test_backward_shift_random_orders(void **state) {
    map_t m = pinned_map();
    chain_t c;
    build_chain(&m, &c);
    for (int trial = 0; trial < 500; trial++) {
        map_t t = pinned_map();
        fill_chain(&t, &c);
        size_t order[12];
        for (size_t i = 0; i < c.n; i++)
            order[i] = i;
        for (size_t i = c.n - 1; i > 0; i--) {
            size_t j = (size_t)(rng() % (i + 1));
            size_t tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        bool live[12];
        for (size_t i = 0; i < c.n; i++)
            live[i] = true;
        for (size_t k = 0; k < c.n; k++) {
            size_t v = order[k];
            assert_ptr_equal(map_del(&t, c.keys[v], strlen(c.keys[v])), (void *)(uintptr_t)(v + 1));
            live[v] = false;
            assert_exactly_live(&t, &c, live);
            /* Now and then put one back: it must land in a reachable slot. */
            if (k % 3 == 2) {
                size_t back = order[k - 1];
                assert_int_equal(
                    map_put(&t, c.keys[back], strlen(c.keys[back]), (void *)(uintptr_t)(back + 1)),
                    0);
                live[back] = true;
                assert_exactly_live(&t, &c, live);
                assert_ptr_equal(map_del(&t, c.keys[back], strlen(c.keys[back])),
                                 (void *)(uintptr_t)(back + 1));
                live[back] = false;
                assert_exactly_live(&t, &c, live);
            }
        }
        assert_int_equal(t.count, 0);
        map_free(&t);
    }
    map_free(&m);
}

/* Keys colliding on the whole 64-bit hash cannot be built, but entries that share a
 * home slot in a long single run can: 11 keys homed at slot 7. */
static void test_long_run_same_home(void **state) {
    map_t t = pinned_map();
    chain_t c;
    unsigned counter = 0;
    c.n = 11;
    keys_homed_at(&t, 7, c.n, c.keys, &counter);
    fill_chain(&t, &c);
    bool live[12];
    for (size_t i = 0; i < c.n; i++)
        live[i] = true;
    /* Middle, first, last, then the rest from the front. */
    static const size_t order[] = {5, 0, 10, 1, 2, 3, 4, 6, 7, 8, 9};
    for (size_t k = 0; k < ARRAY_LEN(order); k++) {
        size_t v = order[k];
        assert_ptr_equal(map_del(&t, c.keys[v], strlen(c.keys[v])), (void *)(uintptr_t)(v + 1));
        live[v] = false;
        assert_exactly_live(&t, &c, live);
        /* The run stays contiguous from slot 7 (wrapping): holes were filled from behind. */
        size_t remaining = c.n - k - 1;
        for (size_t s = 0; s < 16; s++) {
            bool in_run = ((s - 7) & 15) < remaining; /* 7..15 then 0, 1 */
            assert_int_equal(t.slots[s].key != NULL, in_run);
        }
    }
    map_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_paper_example),
        cmocka_unit_test(test_siphash_reference_vectors),
        cmocka_unit_test(test_siphash_unaligned_input),
        cmocka_unit_test(test_siphash_key_matters),
        cmocka_unit_test(test_empty_map),
        cmocka_unit_test(test_random_keys_differ_per_map),
        cmocka_unit_test(test_put_get_del),
        cmocka_unit_test(test_replace_takes_new_key),
        cmocka_unit_test(test_binary_keys),
        cmocka_unit_test(test_iteration_visits_each_entry_once),
        cmocka_unit_test(test_many_keys_against_reference),
        cmocka_unit_test(test_backward_shift_each_position),
        cmocka_unit_test(test_backward_shift_random_orders),
        cmocka_unit_test(test_long_run_same_home),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
