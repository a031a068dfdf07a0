/* util/map.h — hash map from byte-string keys to pointers.
 *
 * Keys are borrowed: the map stores the pointer and length the caller gave, so the key
 * must stay valid and unchanged while the entry exists (typically it lives inside the
 * value, like a session's id). Hashing is SipHash-2-4 with a per-map random key, so
 * client-chosen keys (room names) cannot be made to collide on purpose. Open addressing
 * with linear probing and backward-shift deletion; no tombstones. */
#ifndef PARLEY_UTIL_MAP_H
#define PARLEY_UTIL_MAP_H

#include <stddef.h>
#include <stdint.h>

/* 24 bytes: the hash's low 32 bits are enough to pick slots and skip mismatches. */
typedef struct {
    const char *key;
    void *value;
    uint32_t hash;
    uint32_t klen;
} map_entry_t;

typedef struct {
    map_entry_t *slots;
    size_t cap; /* power of two, or 0 */
    size_t count;
    uint64_t k0, k1;
} map_t;

/* Returns 0, or -1 when the random key could not be drawn. */
int map_init(map_t *m);
void map_free(map_t *m);
void *map_get(const map_t *m, const char *key, size_t klen);
/* Inserts or replaces. Returns 0, -ENOMEM, or -EINVAL for a key of 4 GiB or more. */
int map_put(map_t *m, const char *key, size_t klen, void *value);
/* Removes the key; returns the value it had, or NULL. */
void *map_del(map_t *m, const char *key, size_t klen);

/* Iteration: for (size_t i = 0; map_next(m, &i, &e);) — safe only without inserts or
 * deletes during the loop. */
int map_next(const map_t *m, size_t *pos, map_entry_t **entry);

uint64_t siphash24(const void *data, size_t len, uint64_t k0, uint64_t k1);

#endif
