/* tests/unit/util/base64_test.c — standard (padded) base64 both ways and the URL-safe
 * encoder used for ids.
 *
 * RFC 4648 §10 vectors in both directions; every way a padded input can be malformed;
 * decoding in place; and a small independent encoder in this file as the reference for
 * every length up to a few hundred bytes and for inputs large enough to cross the
 * chunking done around OpenSSL's int-sized calls. The strict base64url decoder: the
 * vectors, every length against the reference and in place, and each way a string can
 * be other than what base64url_encode writes (padding, the standard alphabet's 62 and
 * 63, other bytes, a lone last character, leftover bits set). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/base64.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;
static uint8_t rng_byte(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint8_t)(rng_state >> 32);
}

/* The reference: the obvious 6-bits-at-a-time encoder. */
static size_t ref_encode(const uint8_t *in, size_t len, char *out, bool url) {
    const char *alpha = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                            : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = alpha[(acc >> bits) & 63];
        }
    }
    if (bits)
        out[o++] = alpha[(acc << (6 - bits)) & 63];
    while (!url && o % 4)
        out[o++] = '=';
    out[o] = '\0';
    return o;
}

typedef struct {
    const char *plain;
    const char *std;
    const char *url;
} vector_t;

/* RFC 4648 §10. */
static const vector_t rfc_vectors[] = {
    {"", "", ""},
    {"f", "Zg==", "Zg"},
    {"fo", "Zm8=", "Zm8"},
    {"foo", "Zm9v", "Zm9v"},
    {"foob", "Zm9vYg==", "Zm9vYg"},
    {"fooba", "Zm9vYmE=", "Zm9vYmE"},
    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
};

static void test_encode_rfc4648(void **state) {
    for (size_t i = 0; i < ARRAY_LEN(rfc_vectors); i++) {
        const vector_t *v = &rfc_vectors[i];
        size_t n = strlen(v->plain);
        char out[32];
        memset(out, 'X', sizeof out);
        assert_int_equal(base64_encode((const uint8_t *)v->plain, n, out), strlen(v->std));
        assert_int_equal(BASE64_ENCODED_LEN(n), strlen(v->std));
        assert_string_equal(out, v->std); /* NUL-terminated right after */
    }
}

static void test_decode_rfc4648(void **state) {
    for (size_t i = 0; i < ARRAY_LEN(rfc_vectors); i++) {
        const vector_t *v = &rfc_vectors[i];
        size_t len = strlen(v->std);
        uint8_t out[32];
        memset(out, 0xAA, sizeof out);
        long n = base64_decode(v->std, len, out);
        assert_int_equal(n, (long)strlen(v->plain));
        assert_true((size_t)n <= BASE64_DECODED_MAX(len));
        assert_memory_equal(out, v->plain, (size_t)n);
    }
}

static void test_url_encode_rfc4648(void **state) {
    for (size_t i = 0; i < ARRAY_LEN(rfc_vectors); i++) {
        const vector_t *v = &rfc_vectors[i];
        char out[32];
        memset(out, 'X', sizeof out);
        assert_int_equal(base64url_encode((const uint8_t *)v->plain, strlen(v->plain), out),
                         strlen(v->url));
        assert_string_equal(out, v->url);
    }
}

/* The two alphabets differ only in 62 and 63. */
static void test_alphabet_ends(void **state) {
    static const uint8_t all_high[] = {0xfb, 0xff, 0xbf}; /* 62 63 62 63 */
    static const uint8_t tail[] = {0xff, 0xfe};           /* 63 63 56 (2 bytes) */
    char out[16];
    assert_int_equal(base64_encode(all_high, 3, out), 4);
    assert_string_equal(out, "+/+/");
    assert_int_equal(base64url_encode(all_high, 3, out), 4);
    assert_string_equal(out, "-_-_");
    assert_int_equal(base64_encode(tail, 2, out), 4);
    assert_string_equal(out, "//4=");
    assert_int_equal(base64url_encode(tail, 2, out), 3);
    assert_string_equal(out, "__4");
    uint8_t back[3];
    assert_int_equal(base64_decode("+/+/", 4, back), 3);
    assert_memory_equal(back, all_high, 3);
    assert_int_equal(base64_decode("//4=", 4, back), 2);
    assert_memory_equal(back, tail, 2);
    /* The URL alphabet is not accepted by the standard decoder. */
    assert_int_equal(base64_decode("-_-_", 4, back), -1);
}

static void test_encode_nul_terminates_empty(void **state) {
    char out[4] = {'X', 'X', 'X', 'X'};
    assert_int_equal(base64_encode((const uint8_t *)"", 0, out), 0);
    assert_int_equal(out[0], '\0');
    assert_int_equal(out[1], 'X'); /* nothing written past the NUL */
    /* NULL input with length 0 is fine too (nothing is read). */
    out[0] = 'X';
    assert_int_equal(base64_encode(NULL, 0, out), 0);
    assert_int_equal(out[0], '\0');
    out[0] = 'X';
    assert_int_equal(base64url_encode(NULL, 0, out), 0);
    assert_int_equal(out[0], '\0');
}

/* Writes exactly BASE64_ENCODED_LEN(n) + 1 bytes (the documented size), no more. */
static void test_encode_stays_in_bounds(void **state) {
    for (size_t n = 0; n <= 40; n++) {
        uint8_t in[40];
        for (size_t i = 0; i < n; i++)
            in[i] = rng_byte();
        size_t need = BASE64_ENCODED_LEN(n) + 1;
        char *out = malloc(need); /* exact size: ASan catches an overrun */
        assert_non_null(out);
        assert_int_equal(base64_encode(in, n, out), need - 1);
        assert_int_equal(out[need - 1], '\0');
        free(out);
        size_t url_need = ((n + 2) / 3) * 4 + 1;
        out = malloc(url_need);
        assert_non_null(out);
        size_t got = base64url_encode(in, n, out);
        assert_int_equal(got, (n * 8 + 5) / 6);
        assert_int_equal(out[got], '\0');
        free(out);
    }
}

static void assert_invalid(const char *s) {
    uint8_t out[64];
    long n = base64_decode(s, strlen(s), out);
    if (n != -1)
        fail_msg("accepted \"%s\" (%ld bytes)", s, n);
}

static void test_decode_rejects(void **state) {
    /* Lengths that are not a multiple of 4. */
    assert_invalid("Z");
    assert_invalid("Zg");
    assert_invalid("Zg=");
    assert_invalid("Zm9vY");
    assert_invalid("Zm9vYmFy=");
    /* Characters outside the alphabet. */
    assert_invalid("Zm9-");
    assert_invalid("Zm9_");
    assert_invalid("Zm 9");
    assert_invalid("Zm9v\nYmFy");
    assert_invalid("Zm9v\r\n==");
    assert_invalid("Zm.v");
    assert_invalid("Zm9\x80");
    assert_invalid("Zm9v\tmFy");
    /* Misplaced padding. */
    assert_invalid("====");
    assert_invalid("Z===");
    assert_invalid("=Zg=");
    assert_invalid("Zg=a");
    assert_invalid("Z=g=");
    assert_invalid("Zg==Zg=="); /* padding in the middle */
    assert_invalid("Zm8=Zm9v"); /* padding in the middle */
    assert_invalid("Zm9v=m9v"); /* '=' at the start of a group */
    assert_invalid("Zm9vYg=A"); /* data after padding */
    assert_invalid("Zm9vYmFy====");
}

static void test_decode_rejects_embedded_nul(void **state) {
    uint8_t out[8];
    assert_int_equal(base64_decode("Zm\0v", 4, out), -1);
    assert_int_equal(base64_decode("Zm9v\0\0\0\0", 8, out), -1);
}

static void test_decode_empty(void **state) {
    uint8_t out[1] = {0x5a};
    assert_int_equal(base64_decode("", 0, out), 0);
    assert_int_equal(out[0], 0x5a);
}

static void test_decode_in_place(void **state) {
    for (size_t n = 0; n <= 200; n++) {
        uint8_t plain[200];
        for (size_t i = 0; i < n; i++)
            plain[i] = rng_byte();
        char text[300];
        size_t tlen = base64_encode(plain, n, text);
        long got = base64_decode(text, tlen, (uint8_t *)text);
        assert_int_equal(got, (long)n);
        assert_memory_equal(text, plain, n);
    }
}

/* Every length from 0 to 300 against the reference, both alphabets, and back. */
static void test_matches_reference(void **state) {
    uint8_t in[300];
    char want[420], got[420];
    uint8_t back[300];
    for (size_t n = 0; n <= sizeof in; n++) {
        for (size_t i = 0; i < n; i++)
            in[i] = rng_byte();
        size_t wl = ref_encode(in, n, want, false);
        assert_int_equal(base64_encode(in, n, got), wl);
        assert_string_equal(got, want);
        assert_int_equal(base64_decode(got, wl, back), (long)n);
        assert_memory_equal(back, in, n);
        wl = ref_encode(in, n, want, true);
        assert_int_equal(base64url_encode(in, n, got), wl);
        assert_string_equal(got, want);
    }
}

/* Inputs past the encoder's 3 MiB and the decoder's 4 Mi-character chunks: the pieces
 * must join into one valid encoding and decode back, in place as well. */
static void test_large_crosses_chunks(void **state) {
    size_t sizes[] = {3u << 20, (3u << 20) + 1, (3u << 20) + 2, (3u << 20) + 3, (6u << 20) + 4};
    for (size_t k = 0; k < ARRAY_LEN(sizes); k++) {
        size_t n = sizes[k];
        uint8_t *in = malloc(n);
        char *want = malloc(BASE64_ENCODED_LEN(n) + 1);
        char *got = malloc(BASE64_ENCODED_LEN(n) + 1);
        assert_non_null(in);
        assert_non_null(want);
        assert_non_null(got);
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)(i * 131 + (i >> 11));
        size_t wl = ref_encode(in, n, want, false);
        assert_true(wl > (4u << 20) || n == (3u << 20)); /* the decoder chunks too */
        assert_int_equal(base64_encode(in, n, got), wl);
        assert_true(memcmp(got, want, wl + 1) == 0);
        long dn = base64_decode(got, wl, (uint8_t *)got);
        assert_int_equal(dn, (long)n);
        assert_true(memcmp(got, in, n) == 0);
        free(in);
        free(want);
        free(got);
    }
}

static void test_url_decode_rfc4648(void **state) {
    for (size_t i = 0; i < ARRAY_LEN(rfc_vectors); i++) {
        const vector_t *v = &rfc_vectors[i];
        size_t len = strlen(v->url);
        uint8_t out[32];
        memset(out, 0xAA, sizeof out);
        long n = base64url_decode(v->url, len, out);
        assert_int_equal(n, (long)strlen(v->plain));
        assert_int_equal(BASE64URL_DECODED_MAX(len), strlen(v->plain));
        assert_memory_equal(out, v->plain, (size_t)n);
        assert_int_equal(out[n], 0xAA); /* nothing written past the decoded bytes */
    }
    uint8_t back[3];
    assert_int_equal(base64url_decode("-_-_", 4, back), 3);
    assert_memory_equal(back, "\xfb\xff\xbf", 3);
    assert_int_equal(base64url_decode("__4", 3, back), 2);
    assert_memory_equal(back, "\xff\xfe", 2);
}

static void assert_url_invalid(const char *s, size_t len) {
    uint8_t out[64];
    long n = base64url_decode(s, len, out);
    if (n != -1)
        fail_msg("accepted \"%.*s\" (%ld bytes)", (int)len, s, n);
}

static void test_url_decode_rejects(void **state) {
    static const char *const bad[] = {
        "Z",    "Zm9vY",                                   /* a lone last character: 6 bits */
        "Zg==", "Zm8=",    "Zg=",  "Zm9vYg==", "Zm9vY===", /* padding, whole or partial */
        "+/+/", "Zm9+",    "Zm9/",                         /* the standard alphabet's 62, 63 */
        "Zm 9", "Zm9v\n",  "Zm.v", "Zm9\x80",  "Zm9v\tmFy",
        "Zm9*", "Zm9~",    "=Zm9", "Zh",       "Zm9vYh", /* 'h' (33): low 4 bits not 0 */
        "Zm9",  "Zm9vYmF",                               /* '9' (61), 'F' (5): low 2 bits */
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        assert_url_invalid(bad[i], strlen(bad[i]));
    uint8_t out[8];
    assert_int_equal(base64url_decode("Zm8", 3, out), 2); /* '8' (60): the canonical "fo" */
    assert_memory_equal(out, "fo", 2);
    assert_int_equal(base64url_decode("Zm9vYmE", 7, out), 5);
    assert_memory_equal(out, "fooba", 5);
    assert_url_invalid("Zm\0v", 4);
    assert_url_invalid("Zm9vYmFy\0", 9);
    /* Every byte that is not one of the 64, in each position of a group. */
    for (int c = 0; c < 256; c++) {
        bool url = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_';
        for (size_t at = 0; at < 4; at++) {
            char s[4] = {'Q', 'U', 'J', 'D'}; /* "QUJD" is "ABC" */
            s[at] = (char)c;
            long n = base64url_decode(s, 4, out);
            assert_int_equal(n, url ? 3 : -1);
        }
    }
}

static void test_url_decode_empty(void **state) {
    uint8_t out[1] = {0x5a};
    assert_int_equal(base64url_decode("", 0, out), 0);
    assert_int_equal(out[0], 0x5a);
}

/* Every length from 0 to 300: the reference's encoding decodes back, also in place, and
 * each of its leftover-bit variants is refused. */
static void test_url_decode_matches_reference(void **state) {
    uint8_t in[300], back[300];
    char text[420];
    for (size_t n = 0; n <= sizeof in; n++) {
        for (size_t i = 0; i < n; i++)
            in[i] = rng_byte();
        size_t tl = ref_encode(in, n, text, true);
        assert_int_equal(BASE64URL_DECODED_MAX(tl), n);
        assert_int_equal(base64url_decode(text, tl, back), (long)n);
        assert_memory_equal(back, in, n);
        if (tl % 4) { /* the last character with a leftover bit set */
            char keep = text[tl - 1];
            static const char alpha[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            size_t v = (size_t)(strchr(alpha, keep) - alpha);
            text[tl - 1] = alpha[v | 1];
            assert_int_equal(base64url_decode(text, tl, back), -1);
            text[tl - 1] = keep;
        }
        assert_int_equal(base64url_decode(text, tl, (uint8_t *)text), (long)n);
        assert_memory_equal(text, in, n);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_rfc4648),
        cmocka_unit_test(test_decode_rfc4648),
        cmocka_unit_test(test_url_encode_rfc4648),
        cmocka_unit_test(test_alphabet_ends),
        cmocka_unit_test(test_encode_nul_terminates_empty),
        cmocka_unit_test(test_encode_stays_in_bounds),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_decode_rejects_embedded_nul),
        cmocka_unit_test(test_decode_empty),
        cmocka_unit_test(test_decode_in_place),
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_large_crosses_chunks),
        cmocka_unit_test(test_url_decode_rfc4648),
        cmocka_unit_test(test_url_decode_rejects),
        cmocka_unit_test(test_url_decode_empty),
        cmocka_unit_test(test_url_decode_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
