/* util/map.c — SipHash-keyed open-addressing map (see map.h). */
#include "util/map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/rand.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

uint64_t siphash24(const void *data, size_t len, uint64_t k0, uint64_t k1) {
    const uint8_t *in = data;
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)len << 56;
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m;
        memcpy(&m, in + i, 8);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)in[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

int map_init(map_t *m) {
    memset(m, 0, sizeof *m);
    uint64_t k[2];
    if (rand_bytes(k, sizeof k))
        return -1;
    m->k0 = k[0];
    m->k1 = k[1];
    return 0;
}

void map_free(map_t *m) {
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

static map_entry_t *find(const map_t *m, uint32_t h, const char *key, size_t klen) {
    if (!m->cap || klen > UINT32_MAX)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        map_entry_t *e = &m->slots[i];
        if (!e->key)
            return NULL;
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    }
}

void *map_get(const map_t *m, const char *key, size_t klen) {
    map_entry_t *e = find(m, (uint32_t)siphash24(key, klen, m->k0, m->k1), key, klen);
    return e ? e->value : NULL;
}

static void insert_slot(map_entry_t *slots, size_t cap, const map_entry_t *src) {
    size_t mask = cap - 1;
    size_t i = src->hash & mask;
    while (slots[i].key)
        i = (i + 1) & mask;
    slots[i] = *src;
}

/* A map starts at 4 slots: many hold one entry for good (a chat room's presence with
 * one user, a `user:<id>` room's), and 16 slots of 24 bytes were 384 bytes for it. */
static int grow(map_t *m) {
    size_t cap = m->cap ? m->cap * 2 : 4;
    map_entry_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            insert_slot(slots, cap, &m->slots[i]);
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int map_put(map_t *m, const char *key, size_t klen, void *value) {
    if (klen > UINT32_MAX)
        return -EINVAL;
    uint32_t h = (uint32_t)siphash24(key, klen, m->k0, m->k1);
    map_entry_t *e = find(m, h, key, klen);
    if (e) {
        e->key = key;
        e->value = value;
        return 0;
    }
    if ((m->count + 1) * 4 > m->cap * 3) {
        int rc = grow(m);
        if (rc)
            return rc;
    }
    map_entry_t ne = {key, value, h, (uint32_t)klen};
    insert_slot(m->slots, m->cap, &ne);
    m->count++;
    return 0;
}

void *map_del(map_t *m, const char *key, size_t klen) {
    map_entry_t *e = find(m, (uint32_t)siphash24(key, klen, m->k0, m->k1), key, klen);
    if (!e)
        return NULL;
    void *value = e->value;
    size_t mask = m->cap - 1;
    size_t hole = (size_t)(e - m->slots);
    /* Backward-shift: pull later entries of the probe run into the hole when their home
     * slot is not between the hole and their current position. */
    for (size_t i = (hole + 1) & mask; m->slots[i].key; i = (i + 1) & mask) {
        size_t home = m->slots[i].hash & mask;
        size_t dist_i = (i - home) & mask;
        size_t dist_hole = (hole - home) & mask;
        if (dist_hole < dist_i) {
            m->slots[hole] = m->slots[i];
            hole = i;
        }
    }
    memset(&m->slots[hole], 0, sizeof m->slots[hole]);
    m->count--;
    return value;
}

int map_next(const map_t *m, size_t *pos, map_entry_t **entry) {
    while (*pos < m->cap) {
        map_entry_t *e = &m->slots[(*pos)++];
        if (e->key) {
            *entry = e;
            return 1;
        }
    }
    return 0;
}
