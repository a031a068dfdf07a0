/* tests/unit/util/slice_test.c — the small parsers over borrowed ranges: header token
 * lists, query strings, decimal integers.
 *
 * Every slice here is cut out of a larger buffer with bytes after it (see cut()), so a
 * parser that reads past a slice's length and stops at the NUL would be caught. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "util/slice.h"

/* The text followed by junk that a parser must never look at. */
static char storage[512];
static slice_t cut(const char *text) {
    size_t n = strlen(text);
    assert_true(n + 16 < sizeof storage);
    memcpy(storage, text, n);
    memcpy(storage + n, ",upgrade&sid=JUNK9", 18);
    storage[n + 18] = '\0';
    return slice_make(storage, n);
}

static bool has(const char *list, const char *token) {
    return slice_has_token(cut(list), token);
}

static void test_slice_helpers(void **state) {
    slice_t s = SLICE_LIT("Keep-Alive");
    assert_int_equal(s.len, 10);
    assert_true(slice_eq(s, "Keep-Alive"));
    assert_false(slice_eq(s, "keep-alive"));
    assert_false(slice_eq(s, "Keep-Aliv"));
    assert_true(slice_case_eq(s, "keep-alive"));
    assert_true(slice_case_eq(s, "KEEP-ALIVE"));
    assert_false(slice_case_eq(s, "keep-alive2"));
    assert_true(slice_eq(SLICE_NULL, ""));
    assert_true(slice_case_eq(SLICE_NULL, ""));
    assert_false(slice_eq(SLICE_NULL, "a"));
}

static void test_has_token_basic(void **state) {
    assert_true(has("Upgrade", "upgrade"));
    assert_true(has("upgrade", "Upgrade"));
    assert_true(has("keep-alive, Upgrade", "upgrade"));
    assert_true(has("keep-alive, Upgrade", "KEEP-ALIVE"));
    assert_true(has("a,b,c", "b"));
    assert_true(has("a,b,c", "c"));
    assert_false(has("a,b,c", "d"));
    assert_false(has("keep-alive", "upgrade"));
}

static void test_has_token_whole_elements_only(void **state) {
    assert_false(has("Upgrader", "upgrade"));
    assert_false(has("xupgrade", "upgrade"));
    assert_false(has("upgrade-insecure", "upgrade"));
    assert_false(has("upgr", "upgrade"));
    assert_false(has("up grade", "up"));
    assert_false(has("up grade", "grade"));
    /* The slice ends before the junk ",upgrade" that cut() appends. */
    assert_false(has("keep-alive", "upgrade"));
    assert_false(has("keep-alive,", "upgrade"));
}

static void test_has_token_ows_and_empty_elements(void **state) {
    assert_true(has("  upgrade  ", "upgrade"));
    assert_true(has("\tupgrade\t", "upgrade"));
    assert_true(has("keep-alive ,\t Upgrade \t", "upgrade"));
    assert_true(has(",,upgrade,,", "upgrade"));
    assert_true(has(", , ,upgrade", "upgrade"));
    assert_true(has("keep-alive,,,Upgrade", "upgrade"));
    assert_true(has("a , b", "a"));
    assert_true(has("a , b", "b"));
    assert_false(has("", "upgrade"));
    assert_false(has(" ", "upgrade"));
    assert_false(has(",", "upgrade"));
    assert_false(has(" , ,\t,", "upgrade"));
    /* An empty token never matches, not even empty elements. */
    assert_false(has("", ""));
    assert_false(has(" , ,", ""));
    assert_false(slice_has_token(SLICE_NULL, "upgrade"));
}

static bool query(const char *q, const char *key, const char *expect) {
    slice_t v = {(const char *)0x1, 12345}; /* must be overwritten on success */
    bool found = slice_query_get(cut(q), key, &v);
    if (!expect) {
        assert_false(found);
        assert_int_equal(v.len, 12345); /* left alone when absent */
        return found;
    }
    if (!found)
        fail_msg("%s not found in %s", key, q);
    if (!slice_eq(v, expect))
        fail_msg("%s in %s: got \"%.*s\", want \"%s\"", key, q, (int)v.len, v.base, expect);
    assert_true(v.base >= storage && v.base + v.len <= storage + strlen(q));
    return found;
}

static void test_query_positions(void **state) {
    const char *q = "EIO=4&transport=polling&sid=abc123";
    query(q, "EIO", "4");
    query(q, "transport", "polling");
    query(q, "sid", "abc123");
    query("only=1", "only", "1");
    query("a=1&b=2&c=3", "b", "2");
}

static void test_query_missing(void **state) {
    query("EIO=4&transport=polling", "sid", NULL);
    query("", "sid", NULL);
    query("&&&", "sid", NULL);
    query("a=1&", "b", NULL);
    /* Keys match case-sensitively. */
    query("SID=1", "sid", NULL);
    /* A value that looks like the key is not the key. */
    query("x=sid", "sid", NULL);
    query("x=sid=1", "sid", NULL);
}

static void test_query_key_prefixes(void **state) {
    query("sidx=1", "sid", NULL);
    query("sidx=1&sid=2", "sid", "2");
    query("sid=2&sidx=1", "sidx", "1");
    query("sid=2&sidx=1", "sid", "2");
    query("xsid=1&sid=3", "sid", "3");
    query("si=1", "sid", NULL);
    query("s=1&si=2&sid=3", "si", "2");
}

static void test_query_odd_values(void **state) {
    query("flag&sid=1", "flag", "");  /* key without '=' */
    query("sid=1&flag", "flag", "");  /* last, without '=' */
    query("flag=&sid=1", "flag", ""); /* '=' and nothing */
    query("a=b=c", "a", "b=c");       /* only the first '=' splits */
    query("a=%20x", "a", "%20x");     /* not percent-decoded */
    query("a=1&a=2", "a", "1");       /* the first wins */
    query("&a=1", "a", "1");          /* leading empty pair */
    query("a=1&&b=2", "b", "2");      /* empty pair in the middle */
}

static void test_query_empty_slice(void **state) {
    slice_t v = {NULL, 99};
    assert_false(slice_query_get(SLICE_LIT(""), "a", &v));
    assert_false(slice_query_get(SLICE_NULL, "a", &v));
    assert_int_equal(v.len, 99);
}

static bool u64(const char *text, unsigned long long *out) {
    *out = 0xdeadbeefULL;
    return slice_to_u64(cut(text), out);
}

static void test_to_u64_values(void **state) {
    unsigned long long v;
    assert_true(u64("0", &v));
    assert_int_equal(v, 0);
    assert_true(u64("7", &v));
    assert_int_equal(v, 7);
    assert_true(u64("007", &v));
    assert_int_equal(v, 7);
    assert_true(u64("1234567890", &v));
    assert_int_equal(v, 1234567890ULL);
    assert_true(u64("9223372036854775807", &v)); /* INT64_MAX */
    assert_int_equal(v, (unsigned long long)LLONG_MAX);
    assert_true(u64("1000000000000000000", &v));
    assert_int_equal(v, 1000000000000000000ULL);
}

static void test_to_u64_rejects(void **state) {
    unsigned long long v;
    assert_false(u64("", &v));
    assert_int_equal(v, 0xdeadbeefULL);            /* untouched on failure */
    assert_false(u64("9223372036854775808", &v));  /* INT64_MAX + 1 */
    assert_false(u64("9999999999999999999", &v));  /* fits in u64, not in int64 */
    assert_false(u64("18446744073709551615", &v)); /* UINT64_MAX */
    assert_false(u64("18446744073709551616", &v)); /* would wrap */
    assert_false(u64("99999999999999999999999", &v));
    assert_false(u64("-1", &v));
    assert_false(u64("+1", &v));
    assert_false(u64(" 1", &v));
    assert_false(u64("1 ", &v));
    assert_false(u64("12a", &v));
    assert_false(u64("a12", &v));
    assert_false(u64("1.5", &v));
    assert_false(u64("0x10", &v));
    assert_false(u64("1e3", &v));
    assert_int_equal(v, 0xdeadbeefULL);
    assert_false(slice_to_u64(SLICE_NULL, &v));
    assert_false(slice_to_u64(slice_make("1\0002", 3), &v));
}

/* Every value around powers of ten and of two up to INT64_MAX round-trips. */
static void test_to_u64_round_trip(void **state) {
    char text[32];
    unsigned long long v;
    for (unsigned long long p = 1; p <= (unsigned long long)LLONG_MAX / 10; p *= 10) {
        for (unsigned long long x = p - 1; x <= p + 1; x++) {
            snprintf(text, sizeof text, "%llu", x);
            assert_true(u64(text, &v));
            assert_int_equal(v, x);
        }
    }
    for (int b = 0; b < 63; b++) {
        unsigned long long x = 1ULL << b;
        snprintf(text, sizeof text, "%llu", x);
        assert_true(u64(text, &v));
        assert_int_equal(v, x);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slice_helpers),
        cmocka_unit_test(test_has_token_basic),
        cmocka_unit_test(test_has_token_whole_elements_only),
        cmocka_unit_test(test_has_token_ows_and_empty_elements),
        cmocka_unit_test(test_query_positions),
        cmocka_unit_test(test_query_missing),
        cmocka_unit_test(test_query_key_prefixes),
        cmocka_unit_test(test_query_odd_values),
        cmocka_unit_test(test_query_empty_slice),
        cmocka_unit_test(test_to_u64_values),
        cmocka_unit_test(test_to_u64_rejects),
        cmocka_unit_test(test_to_u64_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
