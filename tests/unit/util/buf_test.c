/* tests/unit/util/buf_test.c — growable buffers and reference-counted byte strings.
 *
 * buf_t: appends across many growths keep every byte, printf formats in place (also
 * output longer than the first allocation), consume keeps the tail, free leaves a
 * reusable empty buffer, and size overflow is refused before any allocation. rcbuf_t /
 * ref_t: the count moves by one per retain and release and destroy runs exactly once,
 * at the last release (ASan reports a leak or a double free otherwise). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/ref.h"

static void test_zeroed_buf_is_empty(void **state) {
    buf_t b = {0};
    assert_int_equal(buf_append(&b, NULL, 0), 0); /* nothing to do: no allocation */
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_append_str(&b, ""), 0);
    assert_null(b.data);
    buf_consume(&b, 10);
    assert_int_equal(b.len, 0);
    buf_free(&b);
    buf_free(&b); /* twice is harmless */
    assert_null(b.data);
}

static void test_append_grows_and_keeps_bytes(void **state) {
    buf_t b = {0};
    uint8_t expect[10000];
    size_t n = 0;
    for (size_t i = 0; n + 37 <= sizeof expect; i++) {
        uint8_t chunk[37];
        for (size_t k = 0; k < sizeof chunk; k++)
            chunk[k] = (uint8_t)(i * 7 + k);
        size_t len = 1 + i % sizeof chunk;
        assert_int_equal(buf_append(&b, chunk, len), 0);
        memcpy(expect + n, chunk, len);
        n += len;
        assert_int_equal(b.len, n);
        assert_true(b.cap >= b.len);
    }
    assert_memory_equal(b.data, expect, n);
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void test_append_binary_and_str(void **state) {
    buf_t b = {0};
    assert_int_equal(buf_append(&b, "a\0b", 3), 0);
    assert_int_equal(buf_append_str(&b, "cd"), 0);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "a\0bcd", 5);
    buf_free(&b);
}

static void test_reserve(void **state) {
    buf_t b = {0};
    assert_int_equal(buf_reserve(&b, 1000), 0);
    assert_true(b.cap >= 1000);
    assert_int_equal(b.len, 0);
    uint8_t *before = b.data;
    size_t cap = b.cap;
    /* Appending within the reservation does not move the memory. */
    char fill[1000];
    memset(fill, 'x', sizeof fill);
    assert_int_equal(buf_append(&b, fill, sizeof fill), 0);
    assert_ptr_equal(b.data, before);
    assert_int_equal(b.cap, cap);
    assert_int_equal(buf_reserve(&b, 0), 0);
    assert_int_equal(b.cap, cap);
    buf_free(&b);
}

/* len + extra wrapping around is refused, and the buffer is unchanged. */
static void test_reserve_overflow(void **state) {
    buf_t b = {0};
    assert_int_equal(buf_append(&b, "0123456789", 10), 0);
    uint8_t *data = b.data;
    size_t cap = b.cap;
    assert_int_equal(buf_reserve(&b, SIZE_MAX - 5), -ENOMEM);
    assert_int_equal(buf_append(&b, "x", SIZE_MAX - 2), -ENOMEM); /* never read */
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.cap, cap);
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.data, "0123456789", 10);
    buf_free(&b);
}

static void test_printf(void **state) {
    buf_t b = {0};
    assert_int_equal(buf_printf(&b, "%d-%s", 42, "x"), 0);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "42-x", 4);
    assert_int_equal(buf_printf(&b, "%c%05u", '#', 7u), 0);
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.data, "42-x#00007", 10);
    /* An empty format appends nothing. */
    assert_int_equal(buf_printf(&b, "%s", ""), 0);
    assert_int_equal(b.len, 10);
    buf_free(&b);
}

/* Output longer than the first allocation (256) and appended after existing data. */
static void test_printf_long(void **state) {
    buf_t b = {0};
    char big[3000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(buf_append(&b, "head:", 5), 0);
    assert_int_equal(buf_printf(&b, "[%s]%d", big, 123), 0);
    assert_int_equal(b.len, 5 + 1 + 2999 + 1 + 3);
    assert_memory_equal(b.data, "head:[", 6);
    assert_memory_equal(b.data + 6, big, 2999);
    assert_memory_equal(b.data + 6 + 2999, "]123", 4);
    /* The formatter's NUL landed inside the allocation, after len (not counted). */
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[b.len], '\0');
    buf_free(&b);
}

static void test_consume(void **state) {
    buf_t b = {0};
    assert_int_equal(buf_append_str(&b, "abcdefghij"), 0);
    buf_consume(&b, 0);
    assert_int_equal(b.len, 10);
    buf_consume(&b, 3);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "defghij", 7);
    buf_consume(&b, 6);
    assert_int_equal(b.len, 1);
    assert_memory_equal(b.data, "j", 1);
    assert_int_equal(buf_append_str(&b, "kl"), 0);
    assert_memory_equal(b.data, "jkl", 3);
    buf_consume(&b, 3); /* exactly everything */
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_append_str(&b, "mn"), 0);
    buf_consume(&b, 100); /* more than there is */
    assert_int_equal(b.len, 0);
    assert_non_null(b.data); /* memory kept for reuse */
    buf_free(&b);
}

static void test_reuse_after_free(void **state) {
    buf_t b = {0};
    for (int round = 0; round < 3; round++) {
        assert_int_equal(buf_printf(&b, "round %d", round), 0);
        assert_int_equal(b.len, 7);
        assert_memory_equal(b.data, round == 0 ? "round 0" : round == 1 ? "round 1" : "round 2", 7);
        buf_free(&b);
        assert_int_equal(b.len, 0);
        assert_int_equal(b.cap, 0);
    }
}

static void test_rcbuf_new(void **state) {
    rcbuf_t *r = rcbuf_new("hello\0world", 11);
    assert_non_null(r);
    assert_int_equal(r->len, 11);
    assert_memory_equal(r->data, "hello\0world", 11);
    assert_int_equal(r->ref.count, 1);
    ref_release(&r->ref); /* frees it */

    rcbuf_t *u = rcbuf_new(NULL, 64); /* uninitialised contents, the caller fills them */
    assert_non_null(u);
    assert_int_equal(u->len, 64);
    memset(u->data, 0x11, 64);
    ref_release(&u->ref);

    rcbuf_t *z = rcbuf_new(NULL, 0);
    assert_non_null(z);
    assert_int_equal(z->len, 0);
    ref_release(&z->ref);
}

static void test_rcbuf_shared(void **state) {
    rcbuf_t *r = rcbuf_new("shared", 6);
    assert_non_null(r);
    rcbuf_t *holders[5];
    for (int i = 0; i < 5; i++) {
        assert_ptr_equal(ref_retain(&r->ref), &r->ref);
        holders[i] = r;
    }
    assert_int_equal(r->ref.count, 6);
    ref_release(&r->ref); /* the creator's reference */
    for (int i = 0; i < 4; i++) {
        ref_release(&holders[i]->ref);
        assert_int_equal(r->ref.count, (uint32_t)(4 - i)); /* still alive */
        assert_memory_equal(r->data, "shared", 6);
    }
    ref_release(&holders[4]->ref); /* last one: freed (ASan: no leak) */
}

/* ref.h on its own: destroy runs exactly once, at the last release. */
typedef struct {
    ref_t ref;
    int *destroyed;
} counted_t;

static void counted_destroy(ref_t *r) {
    counted_t *c = (counted_t *)r;
    (*c->destroyed)++;
    free(c);
}

static void test_ref_destroy_once(void **state) {
    int destroyed = 0;
    counted_t *c = malloc(sizeof *c);
    assert_non_null(c);
    ref_init(&c->ref, counted_destroy);
    c->destroyed = &destroyed;
    ref_retain(&c->ref);
    ref_retain(&c->ref);
    ref_release(&c->ref);
    ref_release(&c->ref);
    assert_int_equal(destroyed, 0);
    ref_release(&c->ref);
    assert_int_equal(destroyed, 1);
    /* NULL is accepted by both. */
    assert_null(ref_retain(NULL));
    ref_release(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zeroed_buf_is_empty),
        cmocka_unit_test(test_append_grows_and_keeps_bytes),
        cmocka_unit_test(test_append_binary_and_str),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_reserve_overflow),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_printf_long),
        cmocka_unit_test(test_consume),
        cmocka_unit_test(test_reuse_after_free),
        cmocka_unit_test(test_rcbuf_new),
        cmocka_unit_test(test_rcbuf_shared),
        cmocka_unit_test(test_ref_destroy_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
