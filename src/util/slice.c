/* util/slice.c — small parsers over borrowed byte ranges (see slice.h). */
#include "util/slice.h"

#include <limits.h>

static bool is_ows(char c) {
    return c == ' ' || c == '\t';
}

bool slice_has_token(slice_t list, const char *token) {
    size_t i = 0;
    while (i < list.len) {
        while (i < list.len && (is_ows(list.base[i]) || list.base[i] == ','))
            i++;
        size_t start = i;
        while (i < list.len && list.base[i] != ',')
            i++;
        size_t end = i;
        while (end > start && is_ows(list.base[end - 1]))
            end--;
        if (end > start && slice_case_eq(slice_make(list.base + start, end - start), token))
            return true;
    }
    return false;
}

bool slice_query_get(slice_t query, const char *key, slice_t *value) {
    size_t klen = strlen(key);
    size_t i = 0;
    while (i <= query.len) {
        size_t start = i;
        while (i < query.len && query.base[i] != '&')
            i++;
        slice_t pair = slice_make(query.base + start, i - start);
        if (pair.len >= klen && memcmp(pair.base, key, klen) == 0 &&
            (pair.len == klen || pair.base[klen] == '=')) {
            size_t off = pair.len == klen ? klen : klen + 1;
            *value = slice_make(pair.base + off, pair.len - off);
            return true;
        }
        i++;
    }
    return false;
}

bool slice_to_u64(slice_t s, unsigned long long *out) {
    if (s.len == 0 || s.len > 19)
        return false;
    unsigned long long v = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.base[i] < '0' || s.base[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s.base[i] - '0');
    }
    if (v > LLONG_MAX)
        return false;
    *out = v;
    return true;
}
