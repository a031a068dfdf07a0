/* tests/unit/cluster/redis_conn_test.c — Redis URLs (redis_conn.c: redis_endpoint_parse).
 *
 * The forms --redis-url takes: host and port, the default port, user and password
 * (percent-decoded), a password alone, a database number, unix sockets; and the ones it
 * refuses: another scheme, no host, a port or database that is not a number or is out
 * of range, text after the database. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>

#include "cluster/redis_conn.h"

static void test_forms(void **state) {
    redis_endpoint_t ep;
    assert_int_equal(redis_endpoint_parse("redis://10.0.0.5:6380", &ep), 0);
    assert_string_equal(ep.host, "10.0.0.5");
    assert_int_equal(ep.port, 6380);
    assert_null(ep.password);
    assert_int_equal(ep.db, 0);
    redis_endpoint_free(&ep);

    assert_int_equal(redis_endpoint_parse("redis://cache", &ep), 0);
    assert_string_equal(ep.host, "cache");
    assert_int_equal(ep.port, 6379);
    redis_endpoint_free(&ep);

    assert_int_equal(redis_endpoint_parse("redis://app:p%40ss%3Aw@h:1/7", &ep), 0);
    assert_string_equal(ep.user, "app");
    assert_string_equal(ep.password, "p@ss:w");
    assert_string_equal(ep.host, "h");
    assert_int_equal(ep.port, 1);
    assert_int_equal(ep.db, 7);
    redis_endpoint_free(&ep);

    assert_int_equal(redis_endpoint_parse("redis://:secret@h/", &ep), 0);
    assert_null(ep.user);
    assert_string_equal(ep.password, "secret");
    redis_endpoint_free(&ep);

    assert_int_equal(redis_endpoint_parse("unix:///run/redis.sock", &ep), 0);
    assert_string_equal(ep.path, "/run/redis.sock");
    assert_null(ep.host);
    redis_endpoint_free(&ep);
    assert_int_equal(redis_endpoint_parse("/tmp/r.sock", &ep), 0);
    assert_string_equal(ep.path, "/tmp/r.sock");
    redis_endpoint_free(&ep);
}

static void test_refused(void **state) {
    const char *bad[] = {"http://h:6379", "rediss://h",      "redis://",    "redis://:6379",
                         "redis://h:0",   "redis://h:65536", "redis://h:x", "redis://h/x",
                         "redis://h/1/2", "unix://relative", "h:6379"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        redis_endpoint_t ep;
        assert_int_equal(redis_endpoint_parse(bad[i], &ep), -EINVAL);
        assert_null(ep.host);
        assert_null(ep.path);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
