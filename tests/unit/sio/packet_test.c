/* tests/unit/sio/packet_test.c — Socket.IO packet decoding, binary reassembly,
 * validation and encoding. Every example of the protocol README (the packet encoding
 * section and the sample session) is decoded and re-encoded byte for byte; every way
 * a message can be rejected is tried, each followed by a good packet on the same
 * decoder. Run under ASan so a leaked tree, slot array or buffer shows. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sio/packet.h"

#define MAX_ATTACHMENTS 10

/* The length of a literal without its NUL, so that literals may hold NULs. */
#define LIT(s) (s), (sizeof(s) - 1)

/* A packet filled with garbage, to show that MORE and ERROR leave *out alone. */
static sio_packet_t sentinel(void) {
    sio_packet_t p;
    memset(&p, 0x5a, sizeof p);
    return p;
}

static void assert_untouched(const sio_packet_t *p) {
    sio_packet_t s = sentinel();
    assert_memory_equal(p, &s, sizeof s);
}

static sio_decode_result_t decode(sio_decoder_t *d, const char *text, size_t len,
                                  sio_packet_t *out) {
    *out = sentinel();
    sio_decode_result_t r = sio_decode_text(d, text, len, out);
    if (r != SIO_DECODE_PACKET)
        assert_untouched(out);
    return r;
}

/* The text must be rejected, and the decoder must then still decode a good packet. */
static void assert_rejected_len(sio_decoder_t *d, const char *text, size_t len) {
    sio_packet_t p;
    if (decode(d, text, len, &p) != SIO_DECODE_ERROR)
        fail_msg("accepted: %.*s", (int)len, text);
    assert_int_equal(d->expected, 0);
    assert_int_equal(decode(d, LIT("2[\"ok\"]"), &p), SIO_DECODE_PACKET);
    assert_int_equal(p.type, SIO_EVENT);
    sio_packet_clear(&p);
}

static void assert_rejected(sio_decoder_t *d, const char *text) {
    assert_rejected_len(d, text, strlen(text));
}

/* The text must be accepted: as a packet, or as a binary packet now waiting (which is
 * then dropped). */
static void assert_accepted(sio_decoder_t *d, const char *text) {
    sio_packet_t p;
    sio_decode_result_t r = decode(d, text, strlen(text), &p);
    if (r == SIO_DECODE_ERROR)
        fail_msg("rejected: %s", text);
    if (r == SIO_DECODE_PACKET)
        sio_packet_clear(&p);
    sio_decoder_clear(d);
}

static void assert_json(const json_t *data, const char *expected) {
    if (!expected) {
        assert_null(data);
        return;
    }
    json_t *want = json_loads(expected, JSON_DECODE_ANY, NULL);
    assert_non_null(want);
    assert_true(json_equal(data, want));
    json_decref(want);
}

static void assert_encodes(const sio_packet_t *p, const char *expected) {
    buf_t out = {0};
    assert_int_equal(sio_encode_packet(&out, p), 0);
    assert_int_equal(out.len, strlen(expected));
    assert_memory_equal(out.data, expected, out.len);
    buf_free(&out);
}

/* ---- the README examples -------------------------------------------------------- */

typedef struct {
    const char *text;
    sio_packet_type_t type;
    const char *nsp;
    int64_t id;
    const char *json; /* NULL: no payload */
    size_t nbins;
    const char *bins[2]; /* as strings of bytes */
    size_t bin_lens[2];
} example_t;

static const example_t examples[] = {
    /* Packet encoding: connection to a namespace. */
    {"0", SIO_CONNECT, "/", -1, NULL, 0, {0}, {0}},
    {"0/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}",
     SIO_CONNECT,
     "/admin",
     -1,
     "{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}",
     0,
     {0},
     {0}},
    {"4{\"message\":\"Not authorized\"}",
     SIO_CONNECT_ERROR,
     "/",
     -1,
     "{\"message\":\"Not authorized\"}",
     0,
     {0},
     {0}},
    /* Sending and receiving data. */
    {"2[\"foo\"]", SIO_EVENT, "/", -1, "[\"foo\"]", 0, {0}, {0}},
    {"2/admin,[\"bar\"]", SIO_EVENT, "/admin", -1, "[\"bar\"]", 0, {0}, {0}},
    {"51-[\"baz\",{\"_placeholder\":true,\"num\":0}]",
     SIO_BINARY_EVENT,
     "/",
     -1,
     "[\"baz\",{\"_placeholder\":true,\"num\":0}]",
     1,
     {"\x01\x02\x03\x04"},
     {4}},
    {"52-/admin,[\"baz\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
     SIO_BINARY_EVENT,
     "/admin",
     -1,
     "[\"baz\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
     2,
     {"\x01\x02", "\x03\x04"},
     {2, 2}},
    /* Acknowledgement. */
    {"212[\"foo\"]", SIO_EVENT, "/", 12, "[\"foo\"]", 0, {0}, {0}},
    {"312[]", SIO_ACK, "/", 12, "[]", 0, {0}, {0}},
    {"3/admin,13[\"bar\"]", SIO_ACK, "/admin", 13, "[\"bar\"]", 0, {0}, {0}},
    {"61-15[\"bar\",{\"_placeholder\":true,\"num\":0}]",
     SIO_BINARY_ACK,
     "/",
     15,
     "[\"bar\",{\"_placeholder\":true,\"num\":0}]",
     1,
     {"\x01\x02\x03\x04"},
     {4}},
    /* Disconnection. */
    {"1", SIO_DISCONNECT, "/", -1, NULL, 0, {0}, {0}},
    {"1/admin,", SIO_DISCONNECT, "/admin", -1, NULL, 0, {0}, {0}},
    /* The sample session, without the Engine.IO "4". */
    {"0{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}",
     SIO_CONNECT,
     "/",
     -1,
     "{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}",
     0,
     {0},
     {0}},
    {"2[\"hey\",\"Jude\"]", SIO_EVENT, "/", -1, "[\"hey\",\"Jude\"]", 0, {0}, {0}},
    {"2[\"hello\"]", SIO_EVENT, "/", -1, "[\"hello\"]", 0, {0}, {0}},
    {"0/admin,", SIO_CONNECT, "/admin", -1, NULL, 0, {0}, {0}},
    {"0/admin,{\"sid\":\"-G5j-67EZFp-q59rADQM\"}",
     SIO_CONNECT,
     "/admin",
     -1,
     "{\"sid\":\"-G5j-67EZFp-q59rADQM\"}",
     0,
     {0},
     {0}},
    {"2/admin,1[\"tellme\"]", SIO_EVENT, "/admin", 1, "[\"tellme\"]", 0, {0}, {0}},
    {"61-/admin,1[{\"_placeholder\":true,\"num\":0}]",
     SIO_BINARY_ACK,
     "/admin",
     1,
     "[{\"_placeholder\":true,\"num\":0}]",
     1,
     {"\xde\xad"},
     {2}},
    /* A few more of the same shapes. */
    {"2[\"hello\",1]", SIO_EVENT, "/", -1, "[\"hello\",1]", 0, {0}, {0}},
    {"2/admin,[\"bye\"]", SIO_EVENT, "/admin", -1, "[\"bye\"]", 0, {0}, {0}},
    {"20[42]", SIO_EVENT, "/", 0, "[42]", 0, {0}, {0}},
    {"4\"Not authorized\"", SIO_CONNECT_ERROR, "/", -1, "\"Not authorized\"", 0, {0}, {0}},
};

static void test_readme_examples(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    for (size_t i = 0; i < sizeof examples / sizeof *examples; i++) {
        const example_t *e = &examples[i];
        sio_packet_t p;
        sio_decode_result_t r = decode(&d, e->text, strlen(e->text), &p);
        for (size_t b = 0; b < e->nbins; b++) {
            assert_int_equal(r, SIO_DECODE_MORE);
            assert_int_equal(d.expected, e->nbins - b);
            r = sio_decode_binary(&d, (const uint8_t *)e->bins[b], e->bin_lens[b], &p);
        }
        if (r != SIO_DECODE_PACKET)
            fail_msg("not decoded: %s", e->text);
        assert_int_equal(d.expected, 0);
        assert_int_equal(p.type, e->type);
        assert_string_equal(p.nsp, e->nsp);
        assert_int_equal(p.id, e->id);
        assert_json(p.data, e->json);
        assert_int_equal(p.nbins, e->nbins);
        for (size_t b = 0; b < e->nbins; b++) {
            assert_int_equal(p.bins[b]->len, e->bin_lens[b]);
            assert_memory_equal(p.bins[b]->data, e->bins[b], e->bin_lens[b]);
        }
        assert_true(sio_packet_validate(&p));
        assert_encodes(&p, e->text);
        sio_packet_clear(&p);
    }
    sio_decoder_clear(&d);
}

/* ---- binary reassembly ---------------------------------------------------------- */

static void test_binary_one(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    sio_packet_t p;
    assert_int_equal(decode(&d, LIT("51-[\"a\",{\"_placeholder\":true,\"num\":0}]"), &p),
                     SIO_DECODE_MORE);
    /* An empty buffer is a buffer. */
    assert_int_equal(sio_decode_binary(&d, NULL, 0, &p), SIO_DECODE_PACKET);
    assert_int_equal(p.nbins, 1);
    assert_int_equal(p.bins[0]->len, 0);
    assert_int_equal(p.bins[0]->ref.count, 1);
    sio_packet_clear(&p);
    assert_null(p.bins);
    assert_int_equal(p.nbins, 0);
    assert_null(p.data);
    sio_decoder_clear(&d);
}

static void test_binary_two(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    sio_packet_t p = sentinel();
    /* The placeholders may come in any order and be used more than once; both buffers
     * are kept in arrival order. */
    const char *text = "62-/chat,7[{\"b\":{\"_placeholder\":true,\"num\":1}},"
                       "{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]";
    assert_int_equal(sio_decode_text(&d, text, strlen(text), &p), SIO_DECODE_MORE);
    assert_int_equal(d.expected, 2);
    uint8_t first[] = {0x00, 0xff, '2'};
    assert_int_equal(sio_decode_binary(&d, first, sizeof first, &p), SIO_DECODE_MORE);
    assert_untouched(&p);
    first[0] = 0x11; /* the decoder copied it */
    assert_int_equal(sio_decode_binary(&d, (const uint8_t *)"xyz!", 4, &p), SIO_DECODE_PACKET);
    assert_int_equal(p.type, SIO_BINARY_ACK);
    assert_string_equal(p.nsp, "/chat");
    assert_int_equal(p.id, 7);
    assert_int_equal(p.nbins, 2);
    assert_int_equal(p.bins[0]->len, 3);
    assert_memory_equal(p.bins[0]->data,
                        "\x00\xff"
                        "2",
                        3);
    assert_memory_equal(p.bins[1]->data, "xyz!", 4);
    assert_encodes(&p, text);

    /* The buffers are reference counted: one held elsewhere outlives the packet. */
    rcbuf_t *kept = p.bins[1];
    ref_retain(&kept->ref);
    sio_packet_clear(&p);
    assert_int_equal(kept->ref.count, 1);
    assert_memory_equal(kept->data, "xyz!", 4);
    ref_release(&kept->ref);

    /* The decoder is ready for the next packet. */
    assert_int_equal(d.expected, 0);
    assert_int_equal(decode(&d, LIT("2[\"next\"]"), &p), SIO_DECODE_PACKET);
    assert_string_equal(p.nsp, "/");
    sio_packet_clear(&p);
    sio_decoder_clear(&d);
}

static void test_binary_zero(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    /* socket.io-parser: "Illegal attachments" for a count under 1, so a binary packet
     * always waits for at least one buffer. */
    assert_rejected(&d, "50-[\"a\"]");
    assert_rejected(&d, "600-[]");
    assert_rejected(&d, "5-[\"a\"]");
    /* Leading zeros are still a number. */
    sio_packet_t p;
    assert_int_equal(decode(&d, LIT("501-[\"a\"]"), &p), SIO_DECODE_MORE);
    assert_int_equal(d.expected, 1);
    sio_decoder_clear(&d);
    assert_int_equal(d.expected, 0);
}

static void test_binary_max_attachments(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    sio_packet_t p;
    assert_int_equal(decode(&d, LIT("510-[\"a\"]"), &p), SIO_DECODE_MORE);
    for (int i = 0; i < 9; i++)
        assert_int_equal(sio_decode_binary(&d, (const uint8_t *)"b", 1, &p), SIO_DECODE_MORE);
    assert_int_equal(sio_decode_binary(&d, (const uint8_t *)"b", 1, &p), SIO_DECODE_PACKET);
    assert_int_equal(p.nbins, 10);
    sio_packet_clear(&p);

    assert_rejected(&d, "511-[\"a\"]");
    assert_rejected(&d, "6100-[]");
    /* Far beyond size_t: saturates rather than wrapping to a small count. */
    assert_rejected(&d, "5184467440737095516200000001-[\"a\"]");
    assert_rejected(&d, "599999999999999999999999999999999999999999-[\"a\"]");

    sio_decoder_t none;
    sio_decoder_init(&none, 0);
    assert_rejected(&none, "51-[\"a\"]");
    assert_accepted(&none, "2[\"a\"]");
    sio_decoder_clear(&d);
}

static void test_binary_without_pending(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    sio_packet_t p = sentinel();
    assert_int_equal(sio_decode_binary(&d, (const uint8_t *)"x", 1, &p), SIO_DECODE_ERROR);
    assert_untouched(&p);

    /* One buffer too many: the packet completed with the first. */
    assert_int_equal(decode(&d, LIT("51-[\"a\"]"), &p), SIO_DECODE_MORE);
    assert_int_equal(sio_decode_binary(&d, (const uint8_t *)"x", 1, &p), SIO_DECODE_PACKET);
    sio_packet_clear(&p);
    p = sentinel();
    assert_int_equal(sio_decode_binary(&d, (const uint8_t *)"x", 1, &p), SIO_DECODE_ERROR);
    assert_untouched(&p);
    assert_accepted(&d, "2[\"a\"]");
}

static void test_text_while_pending(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    sio_packet_t p;
    assert_int_equal(decode(&d, LIT("52-[\"a\"]"), &p), SIO_DECODE_MORE);
    assert_int_equal(sio_decode_binary(&d, (const uint8_t *)"x", 1, &p), SIO_DECODE_MORE);
    /* Even a good packet is an error here, and the half-received one is dropped (ASan
     * would report its tree and first buffer otherwise). */
    assert_int_equal(decode(&d, LIT("2[\"a\"]"), &p), SIO_DECODE_ERROR);
    assert_int_equal(d.expected, 0);
    assert_null(d.pending);
    /* Nothing is pending any more: a buffer is an error, a text packet is fine. */
    assert_int_equal(sio_decode_binary(&d, (const uint8_t *)"x", 1, &p), SIO_DECODE_ERROR);
    assert_accepted(&d, "2[\"a\"]");

    /* Clearing a decoder mid-packet releases it too. */
    assert_int_equal(decode(&d, LIT("52-[\"a\"]"), &p), SIO_DECODE_MORE);
    assert_int_equal(sio_decode_binary(&d, (const uint8_t *)"x", 1, &p), SIO_DECODE_MORE);
    sio_decoder_clear(&d);
    assert_int_equal(d.expected, 0);
    assert_accepted(&d, "2[\"a\"]");
}

/* ---- malformed text ------------------------------------------------------------- */

static void test_bad_type(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    assert_rejected_len(&d, "", 0);
    assert_rejected(&d, "7");
    assert_rejected(&d, "7[\"a\"]");
    assert_rejected(&d, "9");
    assert_rejected(&d, "a[\"a\"]");
    assert_rejected(&d, "/");
    assert_rejected(&d, "[\"a\"]");
    assert_rejected(&d, " 2[\"a\"]");
    assert_rejected_len(&d, LIT("\0"));
    sio_decoder_clear(&d);
}

static void test_bad_attachments(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    assert_rejected(&d, "5");
    assert_rejected(&d, "51");
    assert_rejected(&d, "5[\"a\"]");
    assert_rejected(&d, "51[\"a\"]");
    assert_rejected(&d, "5x-[\"a\"]");
    assert_rejected(&d, "51x-[\"a\"]");
    assert_rejected(&d, "5 1-[\"a\"]"); /* JS Number(" 1") is 1; not here */
    assert_rejected(&d, "5+1-[\"a\"]");
    assert_rejected(&d, "50x1-[\"a\"]");
    assert_rejected(&d, "51.0-[\"a\"]");
    assert_rejected(&d, "5/admin,1-[\"a\"]");
    assert_rejected(&d, "6-1[]");
    /* Only binary types have the "N-" form: elsewhere "1" is an id and "-" bad JSON. */
    assert_rejected(&d, "21-[\"a\"]");
    assert_rejected(&d, "31-[]");
    assert_rejected(&d, "01-{}");
    sio_decoder_clear(&d);
}

static void test_namespace(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    sio_packet_t p;

    /* Up to the end of the input when there is no comma (as the reference). */
    assert_int_equal(decode(&d, LIT("1/admin"), &p), SIO_DECODE_PACKET);
    assert_string_equal(p.nsp, "/admin");
    assert_encodes(&p, "1/admin,");
    sio_packet_clear(&p);

    /* An explicit "/" is the default and is not written back. */
    assert_int_equal(decode(&d, LIT("2/,[\"a\"]"), &p), SIO_DECODE_PACKET);
    assert_string_equal(p.nsp, "/");
    assert_encodes(&p, "2[\"a\"]");
    sio_packet_clear(&p);

    /* Anything up to the first comma, including digits and brackets. */
    assert_int_equal(decode(&d, LIT("2/a1[é],5[\"a\"]"), &p), SIO_DECODE_PACKET);
    assert_string_equal(p.nsp, "/a1[é]");
    assert_int_equal(p.id, 5);
    sio_packet_clear(&p);

    char text[SIO_NSP_MAX + 32];
    char nsp[SIO_NSP_MAX + 2];
    nsp[0] = '/';
    memset(nsp + 1, 'n', SIO_NSP_MAX);
    nsp[SIO_NSP_MAX] = '\0'; /* exactly SIO_NSP_MAX bytes */
    snprintf(text, sizeof text, "2%s,[\"a\"]", nsp);
    assert_int_equal(decode(&d, text, strlen(text), &p), SIO_DECODE_PACKET);
    assert_string_equal(p.nsp, nsp);
    assert_encodes(&p, text);
    sio_packet_clear(&p);
    snprintf(text, sizeof text, "1%s", nsp);
    assert_int_equal(decode(&d, text, strlen(text), &p), SIO_DECODE_PACKET);
    assert_string_equal(p.nsp, nsp);
    sio_packet_clear(&p);

    nsp[SIO_NSP_MAX] = 'n'; /* one byte too many */
    nsp[SIO_NSP_MAX + 1] = '\0';
    snprintf(text, sizeof text, "2%s,[\"a\"]", nsp);
    assert_rejected(&d, text);
    snprintf(text, sizeof text, "1%s", nsp);
    assert_rejected(&d, text);
    snprintf(text, sizeof text, "1%s,", nsp);
    assert_rejected(&d, text);

    /* A NUL would truncate the C string. */
    assert_rejected_len(&d, LIT("2/a\0b,[\"a\"]"));
    sio_decoder_clear(&d);
}

static void test_ack_id(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    sio_packet_t p;

    assert_int_equal(decode(&d, LIT("3999999999999999[]"), &p), SIO_DECODE_PACKET);
    assert_int_equal(p.id, INT64_C(999999999999999));
    assert_encodes(&p, "3999999999999999[]");
    sio_packet_clear(&p);

    assert_int_equal(decode(&d, LIT("3/a,007[]"), &p), SIO_DECODE_PACKET);
    assert_int_equal(p.id, 7);
    assert_encodes(&p, "3/a,7[]");
    sio_packet_clear(&p);

    /* An id with nothing after it: fine where no payload is needed. */
    assert_int_equal(decode(&d, LIT("042"), &p), SIO_DECODE_PACKET);
    assert_int_equal(p.id, 42);
    assert_null(p.data);
    sio_packet_clear(&p);

    /* The Engine.IO-framed form of a CONNECT_ERROR reads as one with id 4. */
    assert_int_equal(decode(&d, LIT("44{\"message\":\"Not authorized\"}"), &p), SIO_DECODE_PACKET);
    assert_int_equal(p.type, SIO_CONNECT_ERROR);
    assert_int_equal(p.id, 4);
    sio_packet_clear(&p);

    assert_rejected(&d, "31000000000000000[]"); /* 16 digits */
    assert_rejected(&d, "399999999999999999999999999999[]");
    assert_rejected(&d, "2-1[\"a\"]");
    assert_rejected(&d, "2 1[\"a\"]");
    assert_rejected(&d, "21.5[\"a\"]");
    sio_decoder_clear(&d);
}

static void test_bad_json(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    assert_rejected(&d, "2[\"a\"");
    assert_rejected(&d, "2[\"a\",]");
    assert_rejected(&d, "2{");
    assert_rejected(&d, "2 ");
    assert_rejected(&d, "2['a']");
    assert_rejected(&d, "2[\"\\x\"]");
    assert_rejected(&d, "2[\"a\xff\"]");
    assert_rejected(&d, "2/admin,[\"a\"");
    assert_rejected(&d, "0{\"a\":}");
    assert_rejected(&d, "51-[\"a\",{\"_placeholder\":true,\"num\":0}");
    /* Trailing garbage. */
    assert_rejected(&d, "2[\"a\"]x");
    assert_rejected(&d, "2[\"a\"][]");
    assert_rejected(&d, "2[\"a\"],");
    assert_rejected(&d, "0{}{}");
    assert_rejected(&d, "4\"a\"\"b\"");
    assert_rejected_len(&d, LIT("2[\"a\"]\0"));
    /* Whitespace around the value is JSON, as for JSON.parse. */
    assert_accepted(&d, "2 [\"a\"] ");
    assert_accepted(&d, "2[\"a\"]\n");
    /* Known differences from JSON.parse: both are rejected here. */
    assert_rejected(&d, "2[\"a\",123456789012345678901]");
    assert_rejected(&d, "2[\"a\",1e400]");
    assert_rejected(&d, "2[\"\\ud800\"]");
    sio_decoder_clear(&d);
}

/* ---- payload validation --------------------------------------------------------- */

static void test_payload_per_type(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);

    /* CONNECT: an object or nothing. */
    assert_accepted(&d, "0");
    assert_accepted(&d, "0{}");
    assert_accepted(&d, "0{\"token\":\"123\"}");
    assert_rejected(&d, "0[]");
    assert_rejected(&d, "0\"a\"");
    assert_rejected(&d, "01[]");
    assert_rejected(&d, "0/a,1.5");
    assert_rejected(&d, "0null");
    assert_rejected(&d, "0true");

    /* DISCONNECT: nothing. */
    assert_accepted(&d, "1");
    assert_rejected(&d, "1{}");
    assert_rejected(&d, "1[]");
    assert_rejected(&d, "1null");
    assert_rejected(&d, "1\"a\"");

    /* EVENT: a non-empty array led by a number or a non-reserved string. */
    assert_accepted(&d, "2[\"a\"]");
    assert_accepted(&d, "2[1]");
    assert_accepted(&d, "2[-1.5e3,{}]");
    assert_accepted(&d, "2[\"\"]");
    assert_accepted(&d, "2[\"a\\u0000b\"]");
    assert_rejected(&d, "2");
    assert_rejected(&d, "212");
    assert_rejected(&d, "2[]");
    assert_rejected(&d, "2{}");
    assert_rejected(&d, "2\"a\"");
    assert_rejected(&d, "2[null]");
    assert_rejected(&d, "2[true]");
    assert_rejected(&d, "2[[\"a\"]]");
    assert_rejected(&d, "2[{\"a\":1}]");
    assert_rejected(&d, "2null");

    /* ACK: an array, possibly empty. */
    assert_accepted(&d, "3[]");
    assert_accepted(&d, "31[null]");
    assert_rejected(&d, "3");
    assert_rejected(&d, "31");
    assert_rejected(&d, "3{}");
    assert_rejected(&d, "3\"a\"");
    assert_rejected(&d, "31null");

    /* CONNECT_ERROR: a string or an object. */
    assert_accepted(&d, "4\"nope\"");
    assert_accepted(&d, "4{}");
    assert_rejected(&d, "4");
    assert_rejected(&d, "4[]");
    assert_rejected(&d, "4[\"a\"]");
    assert_rejected(&d, "44");
    assert_rejected(&d, "4null");

    /* The binary types follow EVENT and ACK. */
    assert_accepted(&d, "51-[\"a\"]");
    assert_accepted(&d, "51-[7]");
    assert_rejected(&d, "51-");
    assert_rejected(&d, "51-[]");
    assert_rejected(&d, "51-{}");
    assert_rejected(&d, "51-[null]");
    assert_rejected(&d, "51-[{\"_placeholder\":true,\"num\":0}]");
    assert_accepted(&d, "61-[]");
    assert_accepted(&d, "61-1[{\"_placeholder\":true,\"num\":0}]");
    assert_rejected(&d, "61-");
    assert_rejected(&d, "61-1");
    assert_rejected(&d, "61-{}");
    assert_rejected(&d, "61-\"a\"");
    sio_decoder_clear(&d);
}

static void test_reserved_events(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    static const char *const reserved[] = {
        "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
    };
    char text[64];
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++) {
        snprintf(text, sizeof text, "2[\"%s\"]", reserved[i]);
        assert_rejected(&d, text);
        snprintf(text, sizeof text, "2/admin,3[\"%s\",1]", reserved[i]);
        assert_rejected(&d, text);
        snprintf(text, sizeof text, "51-[\"%s\",{\"_placeholder\":true,\"num\":0}]", reserved[i]);
        assert_rejected(&d, text);
    }
    /* Only the exact names; acks carry no event name. */
    assert_accepted(&d, "2[\"connected\"]");
    assert_accepted(&d, "2[\"Connect\"]");
    assert_accepted(&d, "2[\"connec\"]");
    assert_accepted(&d, "2[\"connect\\u0000\"]");
    assert_accepted(&d, "2[\"message\",\"connect\"]");
    assert_accepted(&d, "3[\"disconnect\"]");
    assert_accepted(&d, "61-[\"disconnect\"]");
    sio_decoder_clear(&d);
}

static void test_placeholders(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);

    assert_rejected(&d, "51-[\"a\",{\"_placeholder\":true,\"num\":1}]");
    assert_rejected(&d, "52-[\"a\",{\"_placeholder\":true,\"num\":2}]");
    assert_rejected(&d, "51-[\"a\",{\"_placeholder\":true,\"num\":-1}]");
    assert_rejected(&d, "51-[\"a\",{\"_placeholder\":true,\"num\":\"0\"}]");
    assert_rejected(&d, "51-[\"a\",{\"_placeholder\":true,\"num\":0.0}]");
    assert_rejected(&d, "51-[\"a\",{\"_placeholder\":true,\"num\":null}]");
    assert_rejected(&d, "51-[\"a\",{\"_placeholder\":true}]");
    assert_rejected(&d, "51-[\"a\",{\"_placeholder\":true,\"num\":9223372036854775807}]");
    /* Anywhere in the tree. */
    assert_rejected(&d, "51-[\"a\",{\"x\":[1,{\"y\":{\"_placeholder\":true,\"num\":3}}]}]");
    assert_rejected(&d, "61-[[[{\"_placeholder\":true,\"num\":1}]]]");

    /* Only "_placeholder": true makes one; inside one nothing more is looked at. */
    assert_accepted(&d, "51-[\"a\",{\"_placeholder\":false,\"num\":5}]");
    assert_accepted(&d, "51-[\"a\",{\"_placeholder\":1,\"num\":5}]");
    assert_accepted(&d, "51-[\"a\",{\"_placeholder\":\"true\",\"num\":5}]");
    assert_accepted(&d, "51-[\"a\",{\"num\":5}]");
    assert_accepted(&d, "51-[\"a\",{\"_placeholder\":true,\"num\":0,\"x\":{\"_placeholder\":true,"
                        "\"num\":9}}]");
    /* Duplicate keys: the last one counts, as in JSON.parse. */
    assert_rejected(&d, "51-[\"a\",{\"_placeholder\":false,\"_placeholder\":true,\"num\":4}]");
    assert_accepted(&d, "51-[\"a\",{\"_placeholder\":true,\"num\":4,\"num\":0}]");

    /* In a non-binary packet a placeholder is plain data (socket.io-parser leaves it). */
    sio_packet_t p;
    assert_int_equal(decode(&d, LIT("2[\"a\",{\"_placeholder\":true,\"num\":3}]"), &p),
                     SIO_DECODE_PACKET);
    assert_int_equal(p.nbins, 0);
    assert_true(sio_packet_validate(&p));
    /* ... but not once the packet carries buffers. */
    rcbuf_t *b = rcbuf_new("x", 1);
    p.bins = malloc(sizeof *p.bins);
    assert_non_null(p.bins);
    p.bins[0] = b;
    p.nbins = 1;
    assert_false(sio_packet_validate(&p));
    json_integer_set(json_object_get(json_array_get(p.data, 1), "num"), 0);
    assert_true(sio_packet_validate(&p));
    sio_packet_clear(&p);
    sio_decoder_clear(&d);
}

/* A binary event whose second element nests `depth` arrays around `leaf`. */
static char *nested_text(size_t depth, const char *leaf) {
    const char *head = "51-[\"a\",";
    char *s = malloc(strlen(head) + 2 * depth + strlen(leaf) + 2);
    assert_non_null(s);
    char *w = s + sprintf(s, "%s", head);
    memset(w, '[', depth);
    w += depth;
    w += sprintf(w, "%s", leaf);
    memset(w, ']', depth);
    w += depth;
    strcpy(w, "]");
    return s;
}

/* A binary event holding ["a", <depth nested arrays>] built in memory. */
static void assert_walk(size_t depth, bool valid) {
    json_t *inner = json_array();
    for (size_t i = 1; i < depth; i++) {
        json_t *outer = json_array();
        assert_int_equal(json_array_append_new(outer, inner), 0);
        inner = outer;
    }
    sio_packet_t p = {.type = SIO_BINARY_EVENT, .nsp = "/", .id = -1};
    p.data = json_pack("[so]", "a", inner);
    assert_non_null(p.data);
    p.bins = calloc(1, sizeof *p.bins);
    assert_non_null(p.bins);
    p.nbins = 1;
    assert_int_equal(sio_packet_validate(&p), valid);
    sio_packet_clear(&p);
}

static void test_nesting_depth(void **state) {
    (void)state;
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    /* jansson counts every value, scalars too, up to 2048: the outer array, 2045 arrays
     * and the placeholder object put its members at 2048. */
    char *text = nested_text(2045, "{\"_placeholder\":true,\"num\":0}");
    assert_accepted(&d, text);
    free(text);
    text = nested_text(2046, "{\"_placeholder\":true,\"num\":0}");
    assert_rejected(&d, text);
    free(text);
    /* The deepest tree jansson parses, 2048 containers, is walked to the bottom. */
    text = nested_text(2047, "");
    assert_accepted(&d, text);
    free(text);
    text = nested_text(2048, "");
    assert_rejected(&d, text);
    free(text);
    sio_decoder_clear(&d);

    /* A tree built in memory beyond the walk's limit fails validation rather than
     * exhausting the stack. */
    assert_walk(2047, true);
    assert_walk(2048, false);
    assert_walk(100000, false);
}

/* ---- encoding ------------------------------------------------------------------- */

static void assert_head(sio_packet_type_t type, const char *nsp, int64_t id, size_t nbins,
                        const char *expected) {
    buf_t out = {0};
    assert_int_equal(buf_append_str(&out, "~"), 0);
    assert_int_equal(sio_encode_head(&out, type, nsp, id, nbins), 0);
    assert_int_equal(out.len, 1 + strlen(expected));
    assert_memory_equal(out.data + 1, expected, out.len - 1);
    buf_free(&out);
}

static void assert_head_invalid(sio_packet_type_t type, const char *nsp, int64_t id, size_t nbins) {
    buf_t out = {0};
    assert_int_equal(buf_append_str(&out, "~"), 0);
    assert_int_equal(sio_encode_head(&out, type, nsp, id, nbins), -EINVAL);
    assert_int_equal(out.len, 1);
    buf_free(&out);
}

static void test_encode_head(void **state) {
    (void)state;
    assert_head(SIO_CONNECT, "/", -1, 0, "0");
    assert_head(SIO_CONNECT, NULL, -1, 0, "0");
    assert_head(SIO_CONNECT, "", -1, 0, "0");
    assert_head(SIO_DISCONNECT, "/admin", -1, 0, "1/admin,");
    assert_head(SIO_EVENT, "/", 0, 0, "20");
    assert_head(SIO_EVENT, "/admin", 12, 0, "2/admin,12");
    assert_head(SIO_ACK, "/", INT64_C(999999999999999), 0, "3999999999999999");
    assert_head(SIO_CONNECT_ERROR, "/x", -7, 0, "4/x,");
    assert_head(SIO_BINARY_EVENT, "/", -1, 1, "51-");
    assert_head(SIO_BINARY_ACK, "/admin", 456, 12, "612-/admin,456");
    /* The wire type follows the buffers, as socket.io-parser's Encoder.encode. */
    assert_head(SIO_EVENT, "/", -1, 2, "52-");
    assert_head(SIO_ACK, "/a", 3, 1, "61-/a,3");
    assert_head(SIO_BINARY_EVENT, "/", 1, 0, "21");
    assert_head(SIO_BINARY_ACK, "/", 1, 0, "31");

    char nsp[SIO_NSP_MAX + 2];
    nsp[0] = '/';
    memset(nsp + 1, 'n', SIO_NSP_MAX);
    nsp[SIO_NSP_MAX] = '\0';
    char expected[SIO_NSP_MAX + 8];
    snprintf(expected, sizeof expected, "2%s,", nsp);
    assert_head(SIO_EVENT, nsp, -1, 0, expected);

    /* What no decoder would take back. */
    nsp[SIO_NSP_MAX] = 'n';
    nsp[SIO_NSP_MAX + 1] = '\0';
    assert_head_invalid(SIO_EVENT, nsp, -1, 0);
    assert_head_invalid(SIO_EVENT, "admin", -1, 0);
    assert_head_invalid(SIO_EVENT, "/a,b", -1, 0);
    assert_head_invalid(SIO_EVENT, "/", INT64_C(1000000000000000), 0);
    assert_head_invalid(SIO_CONNECT, "/", -1, 1);
    assert_head_invalid(SIO_DISCONNECT, "/", -1, 1);
    assert_head_invalid(SIO_CONNECT_ERROR, "/", -1, 1);
    assert_head_invalid((sio_packet_type_t)7, "/", -1, 0);
    assert_head_invalid((sio_packet_type_t)7, "/", -1, 1);
}

static void test_encode_packet(void **state) {
    (void)state;
    sio_packet_t p = {.type = SIO_EVENT, .nsp = "/", .id = -1};
    /* Compact, keys in insertion order, '/' and UTF-8 unescaped, as JSON.stringify. */
    p.data = json_pack("[s{sisisn}s]", "a/b", "z", 1, "a", 2, "n", "h\xc3\xa9\xe2\x82\xac");
    assert_non_null(p.data);
    assert_encodes(&p, "2[\"a/b\",{\"z\":1,\"a\":2,\"n\":null},\"h\xc3\xa9\xe2\x82\xac\"]");
    sio_packet_clear(&p);

    p.type = SIO_CONNECT_ERROR;
    p.data = json_string("Not authorized");
    assert_encodes(&p, "4\"Not authorized\"");
    sio_packet_clear(&p);

    /* The short escapes are the ones JSON.stringify writes. */
    p.type = SIO_ACK;
    p.id = 1;
    p.data = json_pack("[s]", "q\"b\\n\nt\t");
    assert_encodes(&p, "31[\"q\\\"b\\\\n\\nt\\t\"]");
    sio_packet_clear(&p);

    /* Appends after what is there; nothing on error. */
    buf_t out = {0};
    assert_int_equal(buf_append_str(&out, "prefix:"), 0);
    p.type = SIO_CONNECT;
    p.id = -1;
    snprintf(p.nsp, sizeof p.nsp, "/admin");
    p.data = json_pack("{ss}", "sid", "abc");
    assert_int_equal(sio_encode_packet(&out, &p), 0);
    const char *want = "prefix:0/admin,{\"sid\":\"abc\"}";
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);
    snprintf(p.nsp, sizeof p.nsp, "admin");
    assert_int_equal(sio_encode_packet(&out, &p), -EINVAL);
    assert_int_equal(out.len, strlen(want));
    sio_packet_clear(&p);
    buf_free(&out);

    /* A cleared packet is reusable: the same struct decodes again. */
    sio_decoder_t d;
    sio_decoder_init(&d, MAX_ATTACHMENTS);
    assert_int_equal(sio_decode_text(&d, LIT("3/admin,13[\"bar\"]"), &p), SIO_DECODE_PACKET);
    assert_encodes(&p, "3/admin,13[\"bar\"]");
    sio_packet_clear(&p);
    sio_decoder_clear(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readme_examples),
        cmocka_unit_test(test_binary_one),
        cmocka_unit_test(test_binary_two),
        cmocka_unit_test(test_binary_zero),
        cmocka_unit_test(test_binary_max_attachments),
        cmocka_unit_test(test_binary_without_pending),
        cmocka_unit_test(test_text_while_pending),
        cmocka_unit_test(test_bad_type),
        cmocka_unit_test(test_bad_attachments),
        cmocka_unit_test(test_namespace),
        cmocka_unit_test(test_ack_id),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_payload_per_type),
        cmocka_unit_test(test_reserved_events),
        cmocka_unit_test(test_placeholders),
        cmocka_unit_test(test_nesting_depth),
        cmocka_unit_test(test_encode_head),
        cmocka_unit_test(test_encode_packet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
