/* tests/fuzz/http_parser_fuzz.c — libFuzzer target for http/parser.c.
 *
 * Besides letting ASan and UBSan watch every read, it checks properties that a
 * resumable parser must have:
 *   - the head parser's answer on every prefix of the input is either "need more" or
 *     the answer on the whole input, and once a prefix gets a final answer every
 *     longer prefix gets the same one (so feeding a head in pieces is safe);
 *   - returned slices lie inside the input, and a head never exceeds the limit;
 *   - the chunked decoder gives the same payload, result and consumed count whether
 *     the body arrives in one call or one byte per call.
 * Every buffer handed to the parser is a heap block that ends exactly where the
 * input does, so reading one byte too far is an ASan report, not a silent pass. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

/* Unlike assert(), stays on in every build type. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* Small limits so that the 431 paths are reachable with short inputs and the
 * all-prefixes check stays cheap (each parse reads at most max_head_size bytes). */
#define FUZZ_MAX_HEAD 512
static const http_limits_t fuzz_limits = {.max_head_size = FUZZ_MAX_HEAD, .max_headers = 12};

static bool slice_inside(slice_t s, const char *buf, size_t len) {
    return s.base >= buf && s.len <= len && (size_t)(s.base - buf) <= len - s.len;
}

static void check_request(const http_request_t *req, const char *buf, size_t len, ssize_t n) {
    CHECK((size_t)n <= len && (size_t)n <= fuzz_limits.max_head_size);
    CHECK(slice_inside(req->method, buf, (size_t)n) && req->method.len > 0);
    CHECK(slice_inside(req->target, buf, (size_t)n));
    CHECK(slice_inside(req->path, buf, (size_t)n) && slice_inside(req->query, buf, (size_t)n));
    CHECK(req->minor_version == 0 || req->minor_version == 1);
    CHECK(req->num_headers <= fuzz_limits.max_headers);
    for (size_t i = 0; i < req->num_headers; i++) {
        CHECK(slice_inside(req->headers[i].name, buf, (size_t)n));
        CHECK(slice_inside(req->headers[i].value, buf, (size_t)n));
        /* Lookup by the field's own name finds it or an earlier duplicate. */
        char name[FUZZ_MAX_HEAD + 1];
        memcpy(name, req->headers[i].name.base, req->headers[i].name.len);
        name[req->headers[i].name.len] = '\0';
        const slice_t *v = http_request_header(req, name);
        CHECK(v != NULL && v <= &req->headers[i].value);
    }
    CHECK(!(req->chunked && req->content_length >= 0));
    CHECK(!req->upgrade || req->minor_version == 1);
}

static bool is_head_result(ssize_t n) {
    return n > 0 || n == HTTP_PARSE_INCOMPLETE || n == -400 || n == -431 || n == -501 || n == -505;
}

/* Parses every prefix of data from the tail of work (size bytes, heap) and checks it
 * against the answer for the whole input. */
static void check_prefixes(const uint8_t *data, size_t size, char *work, ssize_t whole) {
    http_request_t req;
    ssize_t settled = HTTP_PARSE_INCOMPLETE;
    size_t last = size < fuzz_limits.max_head_size ? size : fuzz_limits.max_head_size;
    for (size_t k = 0; k <= last; k++) {
        char *p = work + size - k;
        memcpy(p, data, k);
        ssize_t n = http_parse_request(p, k, &fuzz_limits, &req);
        CHECK(n == HTTP_PARSE_INCOMPLETE || n == whole);
        CHECK(settled == HTTP_PARSE_INCOMPLETE || n == settled);
        settled = n;
    }
}

/* Decodes in[0..len) as a chunked body twice — in one call and a byte per call —
 * and checks that both agree. */
static void check_chunked(const uint8_t *in, size_t len) {
    char *one = malloc(len ? len : 1);
    char *out = malloc(len ? len : 1);
    if (one == NULL || out == NULL)
        abort();
    memcpy(one, in, len);
    http_chunked_t dec = {0};
    size_t out1 = len, used1;
    int rc1 = http_chunked_decode(&dec, one, &out1, &used1);
    CHECK(rc1 == 0 || rc1 == 1 || rc1 == -400);
    CHECK(out1 <= used1 && used1 <= len);
    CHECK(rc1 != 0 || used1 == len);

    http_chunked_t dec2 = {0};
    size_t out2 = 0, used2 = 0;
    int rc2 = 0;
    while (used2 < len && rc2 == 0) {
        char *b = malloc(1);
        if (b == NULL)
            abort();
        *b = (char)in[used2];
        size_t n = 1, used;
        rc2 = http_chunked_decode(&dec2, b, &n, &used);
        CHECK(used == 1 && n <= used);
        if (n == 1)
            out[out2++] = *b;
        used2 += used;
        free(b);
    }
    CHECK(rc1 == rc2);
    if (rc1 >= 0)
        CHECK(used1 == used2 && out1 == out2 && memcmp(one, out, out1) == 0);
    free(one);
    free(out);
}

static void check_percent(slice_t s) {
    char *dst = malloc(s.len ? s.len : 1);
    if (dst == NULL)
        abort();
    ssize_t n = http_percent_decode(s, dst);
    CHECK(n >= -1 && n <= (ssize_t)s.len);
    free(dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        abort();
    memcpy(buf, data, size);
    http_request_t req;
    ssize_t n = http_parse_request(buf, size, &fuzz_limits, &req);
    CHECK(is_head_result(n));
    check_prefixes(data, size, buf, n);

    /* check_prefixes reused buf; parse again so req's slices point at intact bytes. */
    memcpy(buf, data, size);
    if (n > 0) {
        CHECK(http_parse_request(buf, size, &fuzz_limits, &req) == n);
        check_request(&req, buf, size, n);
        check_percent(req.path);
        check_percent(req.query);
        if (req.chunked)
            check_chunked(data + n, size - (size_t)n);
    } else {
        /* Reaching a valid chunked head is rare, so the decoder also gets the raw
         * input; both inputs are worth exploring. */
        check_chunked(data, size);
        check_percent(slice_make(buf, size));
    }
    free(buf);
    return 0;
}
