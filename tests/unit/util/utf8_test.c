/* tests/unit/util/utf8_test.c — the UTF-8 validator and code point counter.
 *
 * Beyond Markus Kuhn's edge cases, the DFA is checked against a naive decoder over
 * every 1-, 2- and 3-byte input and a structured sample of 4-byte ones, and every
 * input is also fed split at each byte position, since WebSocket fragments may split
 * a character anywhere. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "util/utf8.h"

#define U(s) ((const uint8_t *)(s)), (sizeof(s) - 1)

/* The obvious decoder, written independently of the DFA: true when buf is UTF-8. */
static bool reference_valid(const uint8_t *p, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t b = p[i];
        size_t n;
        uint32_t cp;
        uint32_t min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            n = 2, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            n = 3, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            n = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i < n)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n;
    }
    return true;
}

/* Validates data whole, byte by byte, and split in two at every position; all must
 * agree with `expect`. A split must never report REJECT early for valid input. */
static void check_all_splits(const uint8_t *data, size_t len, bool expect) {
    assert_int_equal(utf8_is_valid(data, len), expect);

    uint32_t state = UTF8_ACCEPT;
    for (size_t i = 0; i < len; i++) {
        uint32_t s = utf8_validate(&state, data + i, 1);
        assert_int_equal(s, state);
        if (expect)
            assert_int_not_equal(s, UTF8_REJECT);
    }
    assert_int_equal(state == UTF8_ACCEPT, expect);

    for (size_t cut = 0; cut <= len; cut++) {
        state = UTF8_ACCEPT;
        uint32_t first = utf8_validate(&state, data, cut);
        if (expect)
            assert_int_not_equal(first, UTF8_REJECT);
        utf8_validate(&state, data + cut, len - cut);
        assert_int_equal(state == UTF8_ACCEPT, expect);
    }
}

static void valid(const uint8_t *data, size_t len) {
    check_all_splits(data, len, true);
}

static void invalid(const uint8_t *data, size_t len) {
    check_all_splits(data, len, false);
}

static void test_empty_and_ascii(void **unused) {
    (void)unused;
    valid(U(""));
    valid(U("a"));
    valid(U("hello, world"));
    valid((const uint8_t *)"\0\x01\x7f", 3);
    valid(U("0123456789abcdefghijklmnopqrstuvwxyz0123456789"));
}

/* Markus Kuhn's "UTF-8 decoder capability and stress test", section 2: first and last
 * code point of each length, plus the other boundaries. */
static void test_boundaries_valid(void **unused) {
    (void)unused;
    valid(U("\xc2\x80"));         /* U+0080 */
    valid(U("\xdf\xbf"));         /* U+07FF */
    valid(U("\xe0\xa0\x80"));     /* U+0800 */
    valid(U("\xed\x9f\xbf"));     /* U+D7FF, just below the surrogates */
    valid(U("\xee\x80\x80"));     /* U+E000, just above them */
    valid(U("\xef\xbf\xbd"));     /* U+FFFD */
    valid(U("\xef\xbf\xbf"));     /* U+FFFF: a noncharacter, but valid UTF-8 */
    valid(U("\xf0\x90\x80\x80")); /* U+10000 */
    valid(U("\xf3\xbf\xbf\xbf")); /* U+FFFFF */
    valid(U("\xf4\x80\x80\x80")); /* U+100000 */
    valid(U("\xf4\x8f\xbf\xbf")); /* U+10FFFF, the last code point */
    valid(U("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")); /* "κόσμε" */
    valid(U("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80!"));  /* é, €, 😀 */
}

static void test_out_of_range(void **unused) {
    (void)unused;
    invalid(U("\xf4\x90\x80\x80")); /* U+110000 */
    invalid(U("\xf4\x90"));         /* rejected at the second byte already */
    invalid(U("\xf7\xbf\xbf\xbf")); /* U+1FFFFF */
    invalid(U("\xf5\x80\x80\x80"));
    invalid(U("\xf8\x88\x80\x80\x80"));     /* old 5-byte form */
    invalid(U("\xfc\x84\x80\x80\x80\x80")); /* old 6-byte form */
    invalid(U("\xfe"));
    invalid(U("\xff"));
    invalid(U("a\xfe\xfe\xff\xff"));
}

static void test_surrogates(void **unused) {
    (void)unused;
    invalid(U("\xed\xa0\x80"));             /* U+D800 */
    invalid(U("\xed\xad\xbf"));             /* U+DB7F */
    invalid(U("\xed\xb0\x80"));             /* U+DC00 */
    invalid(U("\xed\xbf\xbf"));             /* U+DFFF */
    invalid(U("\xed\xa0\x80\xed\xb0\x80")); /* a CESU-8 surrogate pair */
    invalid(U("\xed\xa0"));
}

static void test_overlongs(void **unused) {
    (void)unused;
    invalid(U("\xc0\x80")); /* NUL as 2 bytes ("modified UTF-8") */
    invalid(U("\xc0\xaf")); /* '/' */
    invalid(U("\xc1\xbf"));
    invalid(U("\xe0\x80\x80"));
    invalid(U("\xe0\x80\xaf"));
    invalid(U("\xe0\x9f\xbf")); /* U+07FF in 3 bytes */
    invalid(U("\xf0\x80\x80\x80"));
    invalid(U("\xf0\x80\x80\xaf"));
    invalid(U("\xf0\x8f\xbf\xbf")); /* U+FFFF in 4 bytes */
}

static void test_stray_and_truncated(void **unused) {
    (void)unused;
    invalid(U("\x80"));
    invalid(U("\xbf"));
    invalid(U("a\x80z"));
    invalid(U("\x80\xbf\x80\xbf"));
    invalid(U("\xc2")); /* truncated at the end */
    invalid(U("\xe2\x82"));
    invalid(U("\xf0\x9f\x98"));
    invalid(U("\xc2\x41")); /* lead followed by ASCII */
    invalid(U("\xe2\x82\x41"));
    invalid(U("\xf0\x9f\x98\x41"));
    invalid(U("\xc2\xc2\x80"));     /* lead followed by lead */
    invalid(U("\xe2\x82\xac\x82")); /* one continuation too many */
}

static void test_truncated_is_pending_not_rejected(void **unused) {
    (void)unused;
    /* Mid-character is neither accept nor reject: the rest may come in the next
     * fragment. */
    const char *prefixes[] = {"\xc2", "\xe0",     "\xe0\xa0",     "\xed", "\xed\x9f",
                              "\xf0", "\xf0\x90", "\xf0\x90\x80", "\xf4", "\xf4\x8f\xbf"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        uint32_t state = UTF8_ACCEPT;
        uint32_t s = utf8_validate(&state, (const uint8_t *)prefixes[i], strlen(prefixes[i]));
        assert_int_not_equal(s, UTF8_ACCEPT);
        assert_int_not_equal(s, UTF8_REJECT);
    }
}

static void test_reject_is_sticky(void **unused) {
    (void)unused;
    uint32_t state = UTF8_ACCEPT;
    assert_int_equal(utf8_validate(&state, U("\xc0")), UTF8_REJECT);
    assert_int_equal(utf8_validate(&state, U("plain ascii from now on")), UTF8_REJECT);
    assert_int_equal(utf8_validate(&state, U("\xc2\x80")), UTF8_REJECT);
    assert_int_equal(utf8_validate(&state, U("")), UTF8_REJECT);
    assert_int_equal(state, UTF8_REJECT);
}

static void test_garbage_state_is_rejected(void **unused) {
    (void)unused;
    uint32_t state = 0xdeadbeef;
    assert_int_equal(utf8_validate(&state, U("a")), UTF8_REJECT);
}

/* The ASCII fast path reads eight bytes at a time: put a bad or a multi-byte sequence
 * at every offset and alignment around those words. */
static void test_fast_path_offsets(void **unused) {
    (void)unused;
    uint8_t buf[64 + 4];
    uint8_t storage[sizeof(buf) + 8];
    for (size_t align = 0; align < 8; align++) {
        uint8_t *p = storage + align;
        for (size_t at = 0; at < 40; at++) {
            memset(buf, 'x', sizeof(buf));
            size_t len = 48;

            buf[at] = 0x80; /* stray continuation */
            memcpy(p, buf, len);
            invalid(p, len);

            memset(buf, 'x', sizeof(buf));
            memcpy(buf + at, "\xf0\x9f\x98\x80", 4);
            memcpy(p, buf, len);
            valid(p, len);

            memcpy(buf + at, "\xed\xa0\x80", 3);
            memcpy(p, buf, len);
            invalid(p, len);

            /* A truncated character ending the buffer after a long ASCII run. */
            memset(buf, 'x', sizeof(buf));
            buf[at] = 0xe2;
            buf[at + 1] = 0x82;
            memcpy(p, buf, at + 2);
            invalid(p, at + 2);
        }
    }
}

static void test_all_short_sequences_match_reference(void **unused) {
    (void)unused;
    uint8_t b[4];
    for (unsigned a = 0; a < 256; a++) {
        b[0] = (uint8_t)a;
        assert_int_equal(utf8_is_valid(b, 1), reference_valid(b, 1));
        for (unsigned c = 0; c < 256; c++) {
            b[1] = (uint8_t)c;
            assert_int_equal(utf8_is_valid(b, 2), reference_valid(b, 2));
        }
    }
    /* Every 3-byte input whose first byte is not ASCII (an ASCII first byte reduces
     * to the 2-byte case just covered). */
    for (unsigned a = 0x80; a < 256; a++) {
        for (unsigned c = 0; c < 256; c++) {
            for (unsigned d = 0; d < 256; d++) {
                b[0] = (uint8_t)a, b[1] = (uint8_t)c, b[2] = (uint8_t)d;
                if (utf8_is_valid(b, 3) != reference_valid(b, 3))
                    fail_msg("mismatch on %02x %02x %02x", a, c, d);
            }
        }
    }
    /* 4 bytes: every lead from F0 up, every second byte, and third and fourth bytes
     * drawn from each class boundary. */
    static const uint8_t tails[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f,
                                    0xa0, 0xbf, 0xc0, 0xc2, 0xe0, 0xf0, 0xff};
    for (unsigned a = 0xf0; a < 256; a++) {
        for (unsigned c = 0; c < 256; c++) {
            for (size_t x = 0; x < sizeof(tails); x++) {
                for (size_t y = 0; y < sizeof(tails); y++) {
                    b[0] = (uint8_t)a, b[1] = (uint8_t)c, b[2] = tails[x], b[3] = tails[y];
                    if (utf8_is_valid(b, 4) != reference_valid(b, 4))
                        fail_msg("mismatch on %02x %02x %02x %02x", a, c, tails[x], tails[y]);
                }
            }
        }
    }
}

static void test_count(void **unused) {
    (void)unused;
    assert_int_equal(utf8_count(U("")), 0);
    assert_int_equal(utf8_count(U("a")), 1);
    assert_int_equal(utf8_count(U("hello")), 5);
    assert_int_equal(utf8_count(U("h\xc3\xa9llo")), 5);
    assert_int_equal(utf8_count(U("\xe2\x82\xac")), 1);
    assert_int_equal(utf8_count(U("\xf0\x9f\x98\x80")), 1);
    assert_int_equal(utf8_count(U("\xf4\x8f\xbf\xbf")), 1);
    /* Long enough for the eight-byte path, with characters straddling the words. */
    assert_int_equal(utf8_count(U("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 "
                                  "\xf0\x9f\x98\x80\xf0\x9f\x98\x80 abcdefgh \xc3\xa9")),
                     5 + 1 + 2 + 10 + 1);
}

static void test_count_matches_naive(void **unused) {
    (void)unused;
    static const char *pieces[] = {"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", " "};
    uint8_t buf[512];
    uint32_t seed = 12345;
    for (int round = 0; round < 200; round++) {
        size_t len = 0;
        size_t chars = 0;
        for (;;) {
            seed = seed * 1103515245u + 12345u;
            const char *piece = pieces[(seed >> 16) % 5];
            size_t n = strlen(piece);
            if (len + n > (size_t)(round * 2 + 1))
                break;
            memcpy(buf + len, piece, n);
            len += n;
            chars++;
        }
        assert_true(utf8_is_valid(buf, len));
        assert_int_equal(utf8_count(buf, len), chars);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_ascii),
        cmocka_unit_test(test_boundaries_valid),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_surrogates),
        cmocka_unit_test(test_overlongs),
        cmocka_unit_test(test_stray_and_truncated),
        cmocka_unit_test(test_truncated_is_pending_not_rejected),
        cmocka_unit_test(test_reject_is_sticky),
        cmocka_unit_test(test_garbage_state_is_rejected),
        cmocka_unit_test(test_fast_path_offsets),
        cmocka_unit_test(test_all_short_sequences_match_reference),
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_count_matches_naive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
