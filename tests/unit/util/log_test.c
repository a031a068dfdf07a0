/* tests/unit/util/log_test.c — the logger's two formats (util/log.c).
 *
 * stderr goes to a temporary file for each case and the lines are read back: a JSON line
 * is one object that jansson parses, with time, level, module, role (only when set) and
 * msg, whatever the message holds (quotes, backslashes, control characters, UTF-8, bytes
 * that are not UTF-8, more than a line can take); the text format keeps its shape. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

/* Runs fn with stderr in a temporary file; returns what was written (free it). */
static char *captured(void (*fn)(void)) {
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    assert_true(saved >= 0 && dup2(fileno(tmp), STDERR_FILENO) >= 0);
    fn();
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    long len = ftell(tmp);
    assert_true(len >= 0);
    char *out = calloc(1, (size_t)len + 1);
    assert_non_null(out);
    rewind(tmp);
    assert_int_equal(fread(out, 1, (size_t)len, tmp), (size_t)len);
    fclose(tmp);
    return out;
}

static void tricky(void) {
    log_write(LOG_LEVEL_WARN, "redis", "quote \" backslash \\ newline \n tab \t é \xe9 end");
}

static void long_line(void) {
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    big[1500] = '"'; /* an escape near the cut */
    log_write(LOG_LEVEL_INFO, "chat", "%s", big);
}

static json_t *one_object(const char *text) {
    size_t len = strlen(text);
    assert_true(len > 0 && text[len - 1] == '\n');
    assert_null(memchr(text, '\n', len - 1)); /* one line */
    json_error_t err;
    json_t *o = json_loadb(text, len - 1, 0, &err);
    if (!o)
        fail_msg("not JSON: %s (%s)", err.text, text);
    return o;
}

static void test_json(void **state) {
    assert_int_equal(log_set_format("json"), 0);
    log_set_role(NULL);
    char *out = captured(tricky);
    json_t *o = one_object(out);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(o, "module")), "redis");
    assert_null(json_object_get(o, "role"));
    assert_int_equal(strlen(json_string_value(json_object_get(o, "time"))), 24);
    assert_string_equal(json_string_value(json_object_get(o, "msg")),
                        "quote \" backslash \\ newline \n tab \t é \xef\xbf\xbd end");
    json_decref(o);
    free(out);

    log_set_role("w2");
    out = captured(long_line);
    o = one_object(out);
    assert_string_equal(json_string_value(json_object_get(o, "role")), "w2");
    size_t msg_len = json_string_length(json_object_get(o, "msg"));
    assert_true(msg_len > 900 && msg_len < 1024);
    json_decref(o);
    free(out);
    log_set_role(NULL);
}

static void test_text(void **state) {
    assert_int_equal(log_set_format("text"), 0);
    char *out = captured(tricky);
    assert_non_null(strstr(out, " warn  redis quote \" backslash"));
    assert_int_equal(out[strlen(out) - 1], '\n');
    free(out);
    assert_int_equal(log_set_format("xml"), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
