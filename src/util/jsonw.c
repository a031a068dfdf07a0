/* util/jsonw.c — JSON text written directly (see jsonw.h).
 *
 * One table says, per byte, how many bytes its escape adds (0: copied as it is), so the
 * length is one pass of table lookups and the writer copies runs of plain bytes with
 * memcpy, stopping only at bytes to escape. Bytes of multi-byte UTF-8 sequences are all
 * 0x80 or above and so are copied: no decoding is needed to keep UTF-8 as it is. */
#include "util/jsonw.h"

#include <string.h>

/* Bytes an escape adds: "\"" and the short forms 1, "\u00XX" 5. */
static const uint8_t escape_extra[256] = {
    5,          5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5, /* 00..0F: \b \t \n \f \r short */
    5,          5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, /* 10..1F */
    0,          0, 1,                                        /* 20..22: '"' */
    ['\\'] = 1,
};

size_t jsonw_string_len(const char *s, size_t len) {
    const uint8_t *p = (const uint8_t *)s;
    size_t n = len + 2;
    for (size_t i = 0; i < len; i++)
        n += escape_extra[p[i]];
    return n;
}

/* The escape of byte c (one with escape_extra[c] != 0) at out; returns the end. */
static char *escape(char *out, uint8_t c) {
    static const char hex[] = "0123456789ABCDEF";
    *out++ = '\\';
    switch (c) {
    case '"':
    case '\\':
        *out++ = (char)c;
        return out;
    case '\b':
        *out++ = 'b';
        return out;
    case '\f':
        *out++ = 'f';
        return out;
    case '\n':
        *out++ = 'n';
        return out;
    case '\r':
        *out++ = 'r';
        return out;
    case '\t':
        *out++ = 't';
        return out;
    default:
        out[0] = 'u';
        out[1] = '0';
        out[2] = '0';
        out[3] = hex[c >> 4];
        out[4] = hex[c & 15];
        return out + 5;
    }
}

char *jsonw_string(char *out, const char *s, size_t len) {
    const uint8_t *p = (const uint8_t *)s;
    size_t run = 0; /* start of the plain bytes not yet copied */
    *out++ = '"';
    for (size_t i = 0; i < len; i++) {
        if (!escape_extra[p[i]])
            continue;
        memcpy(out, s + run, i - run);
        out = escape(out + (i - run), p[i]);
        run = i + 1;
    }
    memcpy(out, s + run, len - run);
    out += len - run;
    *out++ = '"';
    return out;
}

/* The magnitude of v, which for INT64_MIN does not fit an int64_t. */
static uint64_t magnitude(int64_t v) {
    return v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
}

size_t jsonw_int_len(int64_t v) {
    size_t n = v < 0 ? 2 : 1;
    for (uint64_t m = magnitude(v); m >= 10; m /= 10)
        n++;
    return n;
}

char *jsonw_int(char *out, int64_t v) {
    char digits[JSONW_INT_MAX];
    size_t n = 0;
    uint64_t m = magnitude(v);
    do {
        digits[sizeof digits - ++n] = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    if (v < 0)
        digits[sizeof digits - ++n] = '-';
    memcpy(out, digits + sizeof digits - n, n);
    return out + n;
}

char *jsonw_raw(char *out, const char *s, size_t len) {
    memcpy(out, s, len);
    return out + len;
}
