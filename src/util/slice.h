/* util/slice.h — borrowed byte ranges.
 *
 * A slice points into memory owned by someone else (usually a read buffer) and is
 * valid only as long as that memory is. Parsers hand out slices instead of copying. */
#ifndef PARLEY_UTIL_SLICE_H
#define PARLEY_UTIL_SLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

typedef struct {
    const char *base;
    size_t len;
} slice_t;

#define SLICE_LIT(s) ((slice_t){(s), sizeof(s) - 1})
#define SLICE_NULL ((slice_t){NULL, 0})

static inline slice_t slice_make(const void *base, size_t len) {
    return (slice_t){(const char *)base, len};
}

static inline bool slice_eq(slice_t a, const char *s) {
    size_t n = strlen(s);
    return a.len == n && (n == 0 || memcmp(a.base, s, n) == 0);
}

static inline bool slice_case_eq(slice_t a, const char *s) {
    size_t n = strlen(s);
    return a.len == n && (n == 0 || strncasecmp(a.base, s, n) == 0);
}

/* True when the comma-separated list `list` holds `token` (case-insensitive), as
 * HTTP headers such as Connection: keep-alive, Upgrade carry them. */
bool slice_has_token(slice_t list, const char *token);

/* Value of `key` in a URL query string ("a=1&b=2"), not percent-decoded. Returns
 * false when the key is absent. */
bool slice_query_get(slice_t query, const char *key, slice_t *value);

/* Parses a non-negative decimal integer that fits in int64; false on anything else. */
bool slice_to_u64(slice_t s, unsigned long long *out);

#endif
