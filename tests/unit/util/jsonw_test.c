/* tests/unit/util/jsonw_test.c — the direct JSON writer (util/jsonw.c).
 *
 * Its promise is jansson's bytes, so jansson is the reference: every byte 0..0x7F alone
 * and inside text, 2-, 3- and 4-byte UTF-8 (U+007F, U+0080, U+2028, U+FFFF, U+10FFFF),
 * NULs, and a few thousand random strings of valid UTF-8 heavy in what needs escaping,
 * each written and compared with json_dumps of the same string; the length the writer
 * announces is what it writes, and the text parses back to the input. Integers at the
 * edges of int64_t and of each decimal length, against jansson's too. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "util/jsonw.h"

/* Writes s both ways and compares; also parses the result back. */
static void check_string(const char *s, size_t len) {
    json_t *j = json_stringn(s, len);
    assert_non_null(j); /* the inputs are valid UTF-8 */
    char *want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    assert_non_null(want);

    size_t n = jsonw_string_len(s, len);
    char *got = malloc(n + 1);
    assert_non_null(got);
    char *end = jsonw_string(got, s, len);
    assert_int_equal(end - got, n);
    *end = '\0';
    assert_string_equal(got, want);

    json_error_t err;
    json_t *back = json_loadb(got, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    assert_non_null(back);
    assert_int_equal(json_string_length(back), len);
    assert_memory_equal(json_string_value(back), s, len);
    json_decref(back);
    free(got);
    free(want);
}

static void test_every_ascii_byte(void **state) {
    (void)state;
    for (int c = 0; c < 0x80; c++) {
        char one = (char)c;
        check_string(&one, 1);
        char mid[] = {'a', (char)c, 'b'};
        check_string(mid, sizeof mid);
    }
    check_string("", 0);
}

static void test_utf8_kept(void **state) {
    (void)state;
    static const char *const samples[] = {
        "\x7F",         "\xC2\x80",         "h\xC3\xA9llo",     "\xE2\x80\xA8\xE2\x80\xA9",
        "\xEF\xBF\xBF", "\xF4\x8F\xBF\xBF", "\xF0\x9F\x98\x80", "</script> \"q\" back\\slash",
    };
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++)
        check_string(samples[i], strlen(samples[i]));
    static const char nuls[] = "a\0b\0\0";
    check_string(nuls, sizeof nuls - 1);
}

/* One code point as UTF-8 at out; returns its length. */
static size_t put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static void test_random_strings(void **state) {
    (void)state;
    srand(17);
    char buf[4 * 64];
    for (int round = 0; round < 5000; round++) {
        size_t len = 0, count = (size_t)(rand() % 64);
        for (size_t i = 0; i < count; i++) {
            uint32_t cp;
            switch (rand() % 4) {
            case 0:
                cp = (uint32_t)(rand() % 0x20); /* control characters */
                break;
            case 1:
                cp = (unsigned char)"\"\\/ a"[rand() % 5];
                break;
            case 2:
                cp = (uint32_t)(0x20 + rand() % 0x60);
                break;
            default:
                do
                    cp = (uint32_t)(0x80 + rand() % (0x110000 - 0x80));
                while (cp >= 0xD800 && cp <= 0xDFFF); /* no surrogates in UTF-8 */
            }
            len += put_utf8(buf + len, cp);
        }
        check_string(buf, len);
    }
}

static void check_int(int64_t v) {
    json_t *j = json_integer(v);
    char *want = json_dumps(j, JSON_ENCODE_ANY);
    json_decref(j);
    assert_non_null(want);
    char got[JSONW_INT_MAX + 1];
    size_t n = jsonw_int_len(v);
    assert_true(n <= JSONW_INT_MAX);
    char *end = jsonw_int(got, v);
    assert_int_equal(end - got, n);
    *end = '\0';
    assert_string_equal(got, want);
    free(want);
}

static void test_integers(void **state) {
    (void)state;
    check_int(0);
    check_int(INT64_MAX);
    check_int(INT64_MIN);
    check_int(INT64_MIN + 1);
    for (int64_t p = 1; p <= INT64_MAX / 10; p *= 10) {
        check_int(p);
        check_int(p - 1);
        check_int(p * 10 - 1);
        check_int(-p);
        check_int(-p + 1);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_ascii_byte),
        cmocka_unit_test(test_utf8_kept),
        cmocka_unit_test(test_random_strings),
        cmocka_unit_test(test_integers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
