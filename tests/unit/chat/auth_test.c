/* tests/unit/chat/auth_test.c — token verification (src/chat/auth.c).
 *
 * HS256 tokens are built here from their parts: the header and claims as raw JSON text,
 * encoded with a small base64url encoder of this file, signed with OpenSSL's one-shot
 * HMAC() (independent of the key schedule auth.c prepares), then altered one way at a
 * time. What is checked: a good token gives its user; the headers libjwt took (any case
 * of "HS256", typ "JWT" or not a string, members in any order) still pass; every way the
 * signature can be wrong, every other algorithm ("none" signed or not, HS384, HS512,
 * RS256, a missing or non-string alg), a typ other than JWT, a token that is not three
 * segments, a segment with a character outside base64url, padding or leftover bits, and
 * claims that are not a JSON object are refused; exp and nbf within and beyond the
 * leeway; keys of 64 bytes and longer (RFC 2104 hashes those first); the length limit at
 * its edge; the room claim; development tokens (libjwt's signing) verify; and ES256,
 * still libjwt's, verifies its own tokens and refuses an HS256 one. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/auth.h"
#include "util/base64.h"

#define SECRET "unit-secret-0123456789abcdef"
#define NOW 1700000000L
#define CANON "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static chat_auth_t *auth; /* HS256 with SECRET */

static int setup(void **state) {
    auth = chat_auth_new("HS256", SECRET, strlen(SECRET));
    return auth ? 0 : -1;
}

static int teardown(void **state) {
    chat_auth_free(auth);
    return 0;
}

/* base64url without padding (util/base64.c's encoder, checked against a reference in
 * tests/unit/util/base64_test.c). */
static size_t b64url(const void *data, size_t len, char *out) {
    return base64url_encode(data, len, out);
}

/* "hseg.pseg." followed by the base64url HMAC-<md> of "hseg.pseg" under key (md NULL:
 * no signature, as alg none). Returns a malloc'd token. */
static char *sign_segments(const char *hseg, const char *pseg, const EVP_MD *md, const void *key,
                           size_t key_len) {
    size_t hl = strlen(hseg), pl = strlen(pseg);
    char *t = malloc(hl + pl + 2 + 90);
    assert_non_null(t);
    memcpy(t, hseg, hl);
    t[hl] = '.';
    memcpy(t + hl + 1, pseg, pl);
    t[hl + 1 + pl] = '.';
    t[hl + pl + 2] = '\0';
    if (md) {
        uint8_t mac[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        assert_non_null(HMAC(md, key, (int)key_len, (const uint8_t *)t, hl + 1 + pl, mac, &n));
        b64url(mac, n, t + hl + pl + 2);
    }
    return t;
}

/* A token whose header and claims are exactly the given JSON texts. */
static char *token_with(const char *header, const char *claims, const EVP_MD *md) {
    char *h = malloc(strlen(header) * 2 + 4), *p = malloc(strlen(claims) * 2 + 4);
    assert_non_null(h);
    assert_non_null(p);
    b64url(header, strlen(header), h);
    b64url(claims, strlen(claims), p);
    char *t = sign_segments(h, p, md, SECRET, strlen(SECRET));
    free(h);
    free(p);
    return t;
}

static char *token(const char *claims) {
    return token_with(CANON, claims, EVP_sha256());
}

static int verify_with(const chat_auth_t *a, const char *t, chat_user_t *u) {
    json_t *rooms = NULL;
    int rc = chat_auth_verify(a, t, NOW, u, &rooms);
    assert_true(rc == 0 || rc == -1);
    if (rc)
        assert_null(rooms);
    json_decref(rooms);
    return rc;
}

static void assert_accepted(char *t, const char *user_id, const char *username) {
    chat_user_t u;
    if (verify_with(auth, t, &u) != 0)
        fail_msg("refused: %s", t);
    assert_string_equal(u.user_id, user_id);
    assert_string_equal(u.username, username);
    free(t);
}

static void assert_refused(char *t) {
    chat_user_t u;
    if (verify_with(auth, t, &u) != -1)
        fail_msg("accepted: %s", t);
    free(t);
}

static void test_good_token(void **state) {
    assert_accepted(token("{\"sub\":\"alice\",\"name\":\"Alice\"}"), "alice", "Alice");
    assert_accepted(token("{\"sub\":\"bob\"}"), "bob", "bob"); /* no name: the user id */
    assert_accepted(token("{\"sub\":\"c\",\"name\":\"\\u0007\"}"), "c", "c"); /* bad name */
    assert_accepted(token("{\"sub\":\"d\",\"iat\":1700000000,\"exp\":1700003600}"), "d", "d");
    assert_accepted(token(" {\"sub\" : \"e\"} \n"), "e", "e"); /* JSON white space */
}

/* Headers other than the ones recognised byte for byte go through the JSON parse, with
 * libjwt's rules: alg in any case, typ JWT in any case or not a string, extra members. */
static void test_headers_taken(void **state) {
    static const char *const headers[] = {
        "{\"typ\":\"JWT\",\"alg\":\"HS256\"}",
        "{\"alg\":\"HS256\"}",
        "{ \"alg\": \"HS256\", \"typ\": \"JWT\" }",
        "{\"alg\":\"hs256\",\"typ\":\"jwt\"}",
        "{\"alg\":\"HS256\",\"typ\":7}",
        "{\"alg\":\"HS256\",\"typ\":null}",
        "{\"alg\":\"HS256\",\"kid\":\"k1\",\"cty\":\"x\"}",
        "{\"alg\":\"none\",\"alg\":\"HS256\"}", /* the last of duplicate members, as jansson */
        "{\"alg\":\"HS\\u0032\\u0035\\u0036\"}",
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++)
        assert_accepted(token_with(headers[i], "{\"sub\":\"h\"}", EVP_sha256()), "h", "h");
}

static void test_bad_signature(void **state) {
    const char *claims = "{\"sub\":\"mallory\"}";
    char *good = token(claims);
    size_t n = strlen(good);
    /* Each character of the signature changed in turn. */
    for (size_t i = n - 43; i < n; i++) {
        char *t = strdup(good);
        assert_non_null(t);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        assert_refused(t);
    }
    /* Cut short, padded, lengthened, empty, in the standard alphabet. */
    char *t = strdup(good);
    assert_non_null(t);
    t[n - 1] = '\0';
    assert_refused(t);
    t = malloc(n + 3);
    assert_non_null(t);
    snprintf(t, n + 3, "%s=", good);
    assert_refused(t);
    t = malloc(n + 3);
    assert_non_null(t);
    snprintf(t, n + 3, "%sA", good);
    assert_refused(t);
    t = strdup(good);
    assert_non_null(t);
    t[n - 43] = '\0';
    assert_refused(t);
    t = strdup(good);
    assert_non_null(t);
    for (size_t i = n - 43; i < n; i++)
        t[i] = t[i] == '-' ? '+' : t[i] == '_' ? '/' : t[i];
    if (strcmp(t, good) != 0)
        assert_refused(t);
    else
        free(t);
    /* The claims changed under the signature of others. */
    char *other = token("{\"sub\":\"admin\"}");
    char *dot = strrchr(other, '.');
    t = malloc(n + 64);
    assert_non_null(t);
    size_t head = strchr(good, '.') - good;
    snprintf(t, n + 64, "%.*s.%.*s%s", (int)head, good, (int)(dot - strchr(other, '.') - 1),
             strchr(other, '.') + 1, strrchr(good, '.'));
    assert_refused(t);
    free(other);
    /* Another secret. */
    char h[64], p[64];
    b64url(CANON, strlen(CANON), h);
    b64url(claims, strlen(claims), p);
    assert_refused(sign_segments(h, p, EVP_sha256(), "another-secret", 14));
    assert_refused(sign_segments(h, p, EVP_sha256(), SECRET, strlen(SECRET) - 1));
    free(good);
}

static void test_wrong_alg(void **state) {
    const char *claims = "{\"sub\":\"eve\"}";
    /* alg none, unsigned or signed with the secret, in any case. */
    assert_refused(token_with("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, NULL));
    assert_refused(token_with("{\"alg\":\"none\"}", claims, NULL));
    assert_refused(token_with("{\"alg\":\"None\",\"typ\":\"JWT\"}", claims, NULL));
    assert_refused(token_with("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, EVP_sha256()));
    assert_refused(token_with("{\"alg\":\"NONE\"}", claims, EVP_sha256()));
    /* Other HMACs, with their own hash; RS256 and ES256 names over an HS256 MAC. */
    assert_refused(token_with("{\"alg\":\"HS384\",\"typ\":\"JWT\"}", claims, EVP_sha384()));
    assert_refused(token_with("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", claims, EVP_sha512()));
    assert_refused(token_with("{\"alg\":\"HS384\",\"typ\":\"JWT\"}", claims, EVP_sha256()));
    assert_refused(token_with("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims, EVP_sha256()));
    assert_refused(token_with("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", claims, EVP_sha256()));
    /* No alg, or not a string, or near misses. */
    static const char *const headers[] = {
        "{\"typ\":\"JWT\"}",
        "{}",
        "{\"alg\":null}",
        "{\"alg\":256}",
        "{\"alg\":[\"HS256\"]}",
        "{\"alg\":\"HS256 \"}",
        "{\"alg\":\"HS2560\"}",
        "{\"alg\":\"\"}",
        "{\"ALG\":\"HS256\"}",
        "[\"HS256\"]",
        "\"HS256\"",
        "{\"alg\":\"HS256\"",
        "{\"alg\":\"HS256\"}x",
        "",
        /* typ, when a string, must be JWT */
        "{\"alg\":\"HS256\",\"typ\":\"JWS\"}",
        "{\"alg\":\"HS256\",\"typ\":\"\"}",
        "{\"alg\":\"HS256\",\"typ\":\"JWT \"}",
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++)
        assert_refused(token_with(headers[i], claims, EVP_sha256()));
}

/* A token of the given segments, signed over exactly "hseg.pseg" as given. */
static char *signed_raw(const char *hseg, const char *pseg) {
    return sign_segments(hseg, pseg, EVP_sha256(), SECRET, strlen(SECRET));
}

static void test_segments(void **state) {
    char *good = token("{\"sub\":\"seg\"}");
    char *h = strndup(good, strchr(good, '.') - good);
    char *p = strndup(strchr(good, '.') + 1, strrchr(good, '.') - strchr(good, '.') - 1);
    assert_non_null(h);
    assert_non_null(p);
    assert_accepted(signed_raw(h, p), "seg", "seg"); /* the control */
    /* Fewer or more than three segments. */
    static const char *const shapes[] = {"", ".", "..", "abc", "a.b", "a.b.", ".b.c", "a..c"};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        chat_user_t u;
        assert_int_equal(chat_auth_verify(auth, shapes[i], NOW, &u, NULL), -1);
    }
    assert_int_equal(chat_auth_verify(auth, NULL, NOW, &(chat_user_t){0}, NULL), -1);
    char *two = strndup(good, strrchr(good, '.') - good); /* header.payload */
    assert_non_null(two);
    assert_refused(two);
    char *four = malloc(strlen(good) + 8);
    assert_non_null(four);
    snprintf(four, strlen(good) + 8, "%s.e30", good);
    assert_refused(four);
    assert_refused(signed_raw("", p));
    assert_refused(signed_raw(h, ""));
    /* Truncated segments (the signature made over what is left). */
    char *cut = strndup(h, strlen(h) - 1);
    assert_non_null(cut);
    assert_refused(signed_raw(cut, p));
    free(cut);
    cut = strndup(p, strlen(p) - 2);
    assert_non_null(cut);
    assert_refused(signed_raw(h, cut));
    free(cut);
    free(good);
    free(h);
    free(p);
}

/* Segments that libjwt decoded leniently are refused, even correctly signed. */
static void test_not_base64url(void **state) {
    const char *claims = "{\"sub\":\"b64\",\"name\":\"?>?>\"}"; /* "?>" encodes with '/' '+' */
    char h[128], p[128], alt[140];
    b64url(CANON, strlen(CANON), h);
    size_t pl = b64url(claims, strlen(claims), p);
    assert_accepted(signed_raw(h, p), "b64", "?>?>");
    assert_true(strpbrk(p, "-_") != NULL);
    /* The standard alphabet's 62 and 63 in place of '-' and '_'. */
    snprintf(alt, sizeof alt, "%s", p);
    for (char *c = alt; *c; c++)
        *c = *c == '-' ? '+' : *c == '_' ? '/' : *c;
    assert_refused(signed_raw(h, alt));
    /* Padding, on the header (27 bytes: one '=') and on the claims. */
    assert_int_equal(strlen(CANON) % 3, 0);
    const char *hdr2 = "{\"alg\":\"HS256\",\"typ\":\"JWT\" }"; /* 28 bytes: "==" */
    char h2[64], h2pad[80];
    b64url(hdr2, strlen(hdr2), h2);
    assert_accepted(signed_raw(h2, p), "b64", "?>?>");
    snprintf(h2pad, sizeof h2pad, "%s==", h2);
    assert_refused(signed_raw(h2pad, p));
    snprintf(alt, sizeof alt, "%s=", p);
    assert_refused(signed_raw(h, alt));
    snprintf(alt, sizeof alt, "%s==", p);
    assert_refused(signed_raw(h, alt));
    /* Bytes outside the alphabet, anywhere in either segment. */
    static const char bad[] = {' ', '*', '=', '+', '/', '\t', '\n', '~', '\x80', '\xff'};
    for (size_t i = 0; i < sizeof bad; i++) {
        for (size_t at = 0; at < pl; at += 7) {
            snprintf(alt, sizeof alt, "%s", p);
            alt[at] = bad[i];
            assert_refused(signed_raw(h, alt));
            snprintf(alt, sizeof alt, "%s", h);
            alt[at % strlen(h)] = bad[i];
            assert_refused(signed_raw(alt, p));
        }
    }
    /* Text after the JSON, hidden behind an invalid character (libjwt stopped there). */
    snprintf(alt, sizeof alt, "%s!AAAA", p);
    assert_refused(signed_raw(h, alt));
    /* A length that leaves one character alone (6 bits: no byte). */
    snprintf(alt, sizeof alt, "%s", p);
    for (size_t n = strlen(alt); n % 4 != 1; n++) {
        alt[n] = 'A';
        alt[n + 1] = '\0';
    }
    assert_refused(signed_raw(h, alt));
    /* Leftover bits set in the last character. */
    char p3[64];
    const char *c3 = "{\"sub\":\"x\"}"; /* 11 bytes: 15 characters, 2 bits left over */
    b64url(c3, strlen(c3), p3);
    assert_accepted(signed_raw(h, p3), "x", "x");
    p3[14] = p3[14] == 'Q' ? 'R' : p3[14] + 1;
    assert_refused(signed_raw(h, p3));
}

static void test_claims_not_an_object(void **state) {
    static const char *const claims[] = {
        "",
        "[]",
        "[{\"sub\":\"a\"}]",
        "\"sub\"",
        "1",
        "null",
        "{\"sub\":\"a\"",
        "{\"sub\":\"a\"}}",
        "{\"sub\":\"a\"} x",
        "{\"sub\":\"a\\u0000b\"}",
        "{\"sub\":1}",
        "{\"sub\":\"\"}",
    };
    for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++)
        assert_refused(token(claims[i]));
    /* A NUL byte inside the JSON text (libjwt read up to it). */
    char p[64], h[64];
    b64url(CANON, strlen(CANON), h);
    b64url("{\"sub\":\"n\"}\0x", 13, p);
    assert_refused(signed_raw(h, p));
    static const char after_number[] = "{\"sub\":\"n\",\"x\":1\0}"; /* jansson drops it */
    b64url(after_number, sizeof after_number - 1, p);
    assert_refused(signed_raw(h, p));
    char h0[64];
    static const char header_nul[] = "{\"alg\":\"HS256\",\"x\":1\0}";
    b64url(header_nul, sizeof header_nul - 1, h0);
    b64url("{\"sub\":\"n\"}", 11, p);
    assert_refused(signed_raw(h0, p));
}

static void test_time_claims(void **state) {
    char claims[160];
    const struct {
        const char *fmt;
        long delta;
        bool ok;
    } cases[] = {
        {"{\"sub\":\"t\",\"exp\":%ld}", -90, false},      /* expired beyond the leeway */
        {"{\"sub\":\"t\",\"exp\":%ld}", -86400, false},   /* long expired */
        {"{\"sub\":\"t\",\"exp\":%ld}", -31, false},      /* one second past the leeway */
        {"{\"sub\":\"t\",\"exp\":%ld}", -30, true},       /* at its edge */
        {"{\"sub\":\"t\",\"exp\":%ld}", -5, true},        /* within the leeway */
        {"{\"sub\":\"t\",\"exp\":%ld}", 3600, true},      /* in the future */
        {"{\"sub\":\"t\",\"nbf\":%ld}", 120, false},      /* not valid yet */
        {"{\"sub\":\"t\",\"nbf\":%ld}", 31, false},       /* one second beyond the leeway */
        {"{\"sub\":\"t\",\"nbf\":%ld}", 30, true},        /* at its edge */
        {"{\"sub\":\"t\",\"nbf\":%ld}", -5, true},        /* valid already */
        {"{\"sub\":\"t\",\"exp\":%ld.0}", 3600, false},   /* a real */
        {"{\"sub\":\"t\",\"exp\":\"%ld\"}", 3600, false}, /* a string */
        {"{\"sub\":\"t\",\"iat\":%ld.5}", 0, false},      /* iat a real */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(claims, sizeof claims, cases[i].fmt, NOW + cases[i].delta);
        if (cases[i].ok)
            assert_accepted(token(claims), "t", "t");
        else
            assert_refused(token(claims));
    }
}

/* Keys of every length around SHA-256's 64-byte block: longer ones are hashed first. */
static void test_key_lengths(void **state) {
    static const size_t lens[] = {1, 31, 32, 63, 64, 65, 100, 200};
    char key[201]; /* the longest, and one byte more for the wrong key */
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (char)('a' + i % 26);
    char h[64], p[64];
    b64url(CANON, strlen(CANON), h);
    b64url("{\"sub\":\"k\"}", 11, p);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        chat_auth_t *a = chat_auth_new("HS256", key, lens[i]);
        assert_non_null(a);
        chat_user_t u;
        char *t = sign_segments(h, p, EVP_sha256(), key, lens[i]);
        assert_int_equal(verify_with(a, t, &u), 0);
        assert_string_equal(u.user_id, "k");
        free(t);
        t = sign_segments(h, p, EVP_sha256(), key, lens[i] + 1);
        assert_int_equal(verify_with(a, t, &u), -1);
        free(t);
        chat_auth_free(a);
    }
}

/* A token of exactly CHAT_AUTH_TOKEN_MAX characters is read; one more is refused. */
static void test_length_limit(void **state) {
    for (int extra = 0; extra <= 1; extra++) {
        size_t pad_len = 5900; /* grown until the token has the length wanted */
        for (;;) {
            char *claims = malloc(pad_len + 40);
            assert_non_null(claims);
            int n = snprintf(claims, pad_len + 40, "{\"sub\":\"big\",\"pad\":\"%*s\"}",
                             (int)pad_len, "");
            assert_true(n > 0);
            char *t = token(claims);
            free(claims);
            size_t len = strlen(t);
            if (len < CHAT_AUTH_TOKEN_MAX + (size_t)extra) {
                free(t);
                pad_len++;
                continue;
            }
            if (len == CHAT_AUTH_TOKEN_MAX + (size_t)extra) {
                if (extra)
                    assert_refused(t);
                else
                    assert_accepted(t, "big", "big");
                break;
            }
            free(t);
            fail_msg("no token of %zu characters", CHAT_AUTH_TOKEN_MAX + (size_t)extra);
        }
    }
}

static void test_room_claim(void **state) {
    chat_auth_t *a = chat_auth_new("HS256", SECRET, strlen(SECRET));
    assert_non_null(a);
    assert_int_equal(chat_auth_set_room_claim(a, "rooms"), 0);
    char *t = token("{\"sub\":\"r\",\"rooms\":[\"lobby\",\"dev\"]}");
    chat_user_t u;
    json_t *rooms = NULL;
    assert_int_equal(chat_auth_verify(a, t, NOW, &u, &rooms), 0);
    assert_true(json_is_array(rooms) && json_array_size(rooms) == 2);
    assert_true(chat_auth_room_allowed(a, rooms, "dev"));
    assert_false(chat_auth_room_allowed(a, rooms, "ops"));
    json_decref(rooms);
    free(t);
    chat_auth_free(a);
}

/* Development tokens are signed by libjwt and must verify here. */
static void test_dev_token(void **state) {
    char *t = chat_auth_sign(auth, "dev-1", "Dev", NOW, 3600);
    assert_non_null(t);
    assert_accepted(t, "dev-1", "Dev");
    t = chat_auth_sign(auth, "dev-2", "Old", NOW - 7200, 3600);
    assert_non_null(t);
    assert_refused(t);
}

/* ES256 stays on libjwt: a key pair made here, a token signed by libjwt. */
static void test_es256_on_libjwt(void **state) {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    BIO *priv = BIO_new(BIO_s_mem()), *pub = BIO_new(BIO_s_mem());
    assert_non_null(priv);
    assert_non_null(pub);
    assert_int_equal(PEM_write_bio_PrivateKey(priv, key, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(PEM_write_bio_PUBKEY(pub, key), 1);
    char *priv_pem, *pub_pem;
    long priv_len = BIO_get_mem_data(priv, &priv_pem), pub_len = BIO_get_mem_data(pub, &pub_pem);
    chat_auth_t *a = chat_auth_new("ES256", pub_pem, (size_t)pub_len);
    assert_non_null(a);
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grant(jwt, "sub", "ec-user"), 0);
    assert_int_equal(jwt_add_grant_int(jwt, "exp", NOW + 60), 0);
    assert_int_equal(jwt_set_alg(jwt, JWT_ALG_ES256, (unsigned char *)priv_pem, (int)priv_len), 0);
    char *t = jwt_encode_str(jwt);
    assert_non_null(t);
    chat_user_t u;
    assert_int_equal(verify_with(a, t, &u), 0);
    assert_string_equal(u.user_id, "ec-user");
    free(t);
    /* An HS256 token, even one "signed" with the public key as secret, is refused. */
    char h[64], p[64];
    b64url(CANON, strlen(CANON), h);
    b64url("{\"sub\":\"ec-user\"}", 17, p);
    t = sign_segments(h, p, EVP_sha256(), pub_pem, (size_t)pub_len);
    assert_int_equal(verify_with(a, t, &u), -1);
    free(t);
    jwt_free(jwt);
    chat_auth_free(a);
    BIO_free(priv);
    BIO_free(pub);
    EVP_PKEY_free(key);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_token),
        cmocka_unit_test(test_headers_taken),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_wrong_alg),
        cmocka_unit_test(test_segments),
        cmocka_unit_test(test_not_base64url),
        cmocka_unit_test(test_claims_not_an_object),
        cmocka_unit_test(test_time_claims),
        cmocka_unit_test(test_key_lengths),
        cmocka_unit_test(test_length_limit),
        cmocka_unit_test(test_room_claim),
        cmocka_unit_test(test_dev_token),
        cmocka_unit_test(test_es256_on_libjwt),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
