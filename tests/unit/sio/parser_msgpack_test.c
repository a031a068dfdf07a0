/* tests/unit/sio/parser_msgpack_test.c — the msgpack parser (sio/parser_msgpack.c) and
 * the parser table (sio/parser.h).
 *
 * Bytes written by socket.io-msgpack-parser 3.0.2's encoder (notepack.io 2.2) are
 * decoded, the official client's "options" key, undefined, Dates and ArrayBuffers among
 * them; every packet type round-trips through
 * encode and decode, with namespaces, ack ids and binary values; what encode writes for
 * a CONNECT reply is notepack's byte for byte; every way a message can be refused is
 * tried, each followed by a good packet on the same decoder. The table's event encoding
 * is checked for both parsers with the same arguments. Run under ASan so a leaked tree
 * or buffer shows. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sio/mpack.h"
#include "sio/parser.h"

#define MAX_ATTACHMENTS 10

static sio_decoder_t dec;

static int setup(void **state) {
    (void)state;
    sio_decoder_init(&dec, MAX_ATTACHMENTS);
    return 0;
}

/* A well-formed packet the decoder must still take after a refusal. */
static const uint8_t good[] = {0x83, 0xa4, 't',  'y', 'p', 'e', 0x02, 0xa3, 'n',  's', 'p',
                               0xa1, '/',  0xa4, 'd', 'a', 't', 'a',  0x91, 0xa1, 'x'};

static void assert_good_after(void) {
    sio_packet_t p;
    assert_int_equal(sio_msgpack_decode(&dec, good, sizeof good, true, &p), SIO_DECODE_PACKET);
    assert_int_equal(p.type, SIO_EVENT);
    sio_packet_clear(&p);
}

static void assert_refused_bytes(const uint8_t *data, size_t len) {
    sio_packet_t p;
    memset(&p, 0x5a, sizeof p);
    sio_packet_t before = p;
    assert_int_equal(sio_msgpack_decode(&dec, data, len, true, &p), SIO_DECODE_ERROR);
    assert_memory_equal(&p, &before, sizeof p); /* *out untouched */
    assert_good_after();
}

/* MessagePack of a JSON text (keys in its order), placeholders taken from bins. */
static void pack_json(buf_t *out, const char *json, const sio_bin_t *bins, size_t nbins) {
    json_t *v = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    assert_non_null(v);
    msgpack_packer pk;
    sio_mp_packer_init(&pk, out);
    assert_int_equal(sio_mp_pack(&pk, v, bins, nbins, 64), 0);
    json_decref(v);
}

static void assert_refused(const char *json) {
    buf_t b = {0};
    pack_json(&b, json, NULL, 0);
    assert_refused_bytes(b.data, b.len);
    buf_free(&b);
}

static sio_decode_result_t decode_json(const char *json, const sio_bin_t *bins, size_t nbins,
                                       sio_packet_t *p) {
    buf_t b = {0};
    pack_json(&b, json, bins, nbins);
    sio_decode_result_t r = sio_msgpack_decode(&dec, b.data, b.len, true, p);
    buf_free(&b);
    return r;
}

static void assert_data(const sio_packet_t *p, const char *json) {
    json_t *want = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    assert_non_null(want);
    if (!json_equal(want, p->data)) {
        char *got = json_dumps(p->data, JSON_ENCODE_ANY);
        print_error("data %s, want %s\n", got ? got : "(null)", json);
        free(got);
        fail();
    }
    json_decref(want);
}

/* ---- what socket.io-msgpack-parser 3.0.2 (notepack.io 2.2) writes ---- */

static void test_notepack_client_event(void **state) {
    (void)state;
    /* new Encoder().encode({type: 2, data: ["msg", {a: 1, b: undefined, c: 1.5}],
     *                       options: {compress: true}, id: 3, nsp: "/chat"}) */
    static const uint8_t in[] = {
        0x85, 0xa4, 0x74, 0x79, 0x70, 0x65, 0x02, 0xa4, 0x64, 0x61, 0x74, 0x61, 0x92, 0xa3,
        0x6d, 0x73, 0x67, 0x83, 0xa1, 0x61, 0x01, 0xa1, 0x62, 0xd4, 0x00, 0x00, 0xa1, 0x63,
        0xcb, 0x3f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa7, 0x6f, 0x70, 0x74, 0x69,
        0x6f, 0x6e, 0x73, 0x81, 0xa8, 0x63, 0x6f, 0x6d, 0x70, 0x72, 0x65, 0x73, 0x73, 0xc3,
        0xa2, 0x69, 0x64, 0x03, 0xa3, 0x6e, 0x73, 0x70, 0xa5, 0x2f, 0x63, 0x68, 0x61, 0x74};
    sio_packet_t p;
    assert_int_equal(sio_msgpack_decode(&dec, in, sizeof in, true, &p), SIO_DECODE_PACKET);
    assert_int_equal(p.type, SIO_EVENT);
    assert_string_equal(p.nsp, "/chat");
    assert_int_equal(p.id, 3);
    assert_int_equal(p.nbins, 0);
    /* The undefined property is left out, as JSON.stringify leaves it out. */
    assert_data(&p, "[\"msg\",{\"a\":1,\"c\":1.5}]");
    assert_true(json_is_integer(json_object_get(json_array_get(p.data, 1), "a")));
    sio_packet_clear(&p);
}

static void test_notepack_connect_undefined(void **state) {
    (void)state;
    /* A CONNECT without auth: encode({type: 0, data: undefined, nsp: "/"}). */
    static const uint8_t in[] = {0x83, 0xa4, 0x74, 0x79, 0x70, 0x65, 0x00, 0xa4, 0x64, 0x61, 0x74,
                                 0x61, 0xd4, 0x00, 0x00, 0xa3, 0x6e, 0x73, 0x70, 0xa1, 0x2f};
    sio_packet_t p;
    assert_int_equal(sio_msgpack_decode(&dec, in, sizeof in, true, &p), SIO_DECODE_PACKET);
    assert_int_equal(p.type, SIO_CONNECT);
    assert_null(p.data);
    sio_packet_clear(&p);
}

static void test_notepack_binary(void **state) {
    (void)state;
    /* encode({type: 2, data: ["file", Buffer.from([1, 2, 3]), new Uint8Array([4, 5]).buffer,
     *         undefined, new Date(Date.UTC(2024, 1, 29, 12, 34, 56, 789))], nsp: "/"}) */
    static const uint8_t in[] = {0x83, 0xa4, 0x74, 0x79, 0x70, 0x65, 0x02, 0xa4, 0x64, 0x61,
                                 0x74, 0x61, 0x95, 0xa4, 0x66, 0x69, 0x6c, 0x65, 0xc4, 0x03,
                                 0x01, 0x02, 0x03, 0xc7, 0x02, 0x00, 0x04, 0x05, 0xd4, 0x00,
                                 0x00, 0xd7, 0x00, 0x00, 0x00, 0x01, 0x8d, 0xf4, 0xdc, 0x54,
                                 0x95, 0xa3, 0x6e, 0x73, 0x70, 0xa1, 0x2f};
    sio_packet_t p;
    assert_int_equal(sio_msgpack_decode(&dec, in, sizeof in, true, &p), SIO_DECODE_PACKET);
    /* Delivered as the json parser delivers binary: a BINARY_EVENT with placeholders; the
     * ArrayBuffer (ext type 0) is binary as much as the Buffer (bin); undefined in an
     * array is null and a Date its ISO text, as JSON.stringify makes them. */
    assert_int_equal(p.type, SIO_BINARY_EVENT);
    assert_string_equal(p.nsp, "/");
    assert_int_equal(p.id, -1);
    assert_data(&p, "[\"file\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,"
                    "\"num\":1},null,\"2024-02-29T12:34:56.789Z\"]");
    assert_int_equal(p.nbins, 2);
    assert_int_equal(p.bins[0]->len, 3);
    assert_memory_equal(p.bins[0]->data, "\x01\x02\x03", 3);
    assert_int_equal(p.bins[1]->len, 2);
    assert_memory_equal(p.bins[1]->data, "\x04\x05", 2);
    sio_packet_clear(&p);
}

static void test_ext_forms(void **state) {
    (void)state;
    /* {type: 2, nsp: "/", data: ["e", <x>]} for each x below. */
    static const uint8_t head[] = {0x83, 0xa4, 't',  'y', 'p', 'e', 0x02, 0xa3, 'n',  's', 'p',
                                   0xa1, '/',  0xa4, 'd', 'a', 't', 'a',  0x92, 0xa1, 'e'};
    static const struct {
        uint8_t bytes[16];
        size_t len;
        const char *json;
    } cases[] = {
        /* ext 8 of one byte, type 0: an ArrayBuffer of one byte, not undefined */
        {{0xc7, 0x01, 0x00, 0x09}, 4, "{\"_placeholder\":true,\"num\":0}"},
        /* ext 8 of eight bytes, type 0: an ArrayBuffer, not a Date */
        {{0xc7, 0x08, 0x00, 1, 2, 3, 4, 5, 6, 7, 8}, 11, "{\"_placeholder\":true,\"num\":0}"},
        /* a Date before 1970, and one beyond what a Date holds */
        {{0xd7, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
         10,
         "\"1969-12-31T23:59:59.999Z\""},
        {{0xd7, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 10, "null"},
        /* the timestamp extension (notepack.io 3), 32 bits */
        {{0xd6, 0xff, 0x00, 0x00, 0x00, 0x3c}, 6, "\"1970-01-01T00:01:00.000Z\""},
        /* other extensions and fixext of type 0 that notepack never writes */
        {{0xd4, 0x05, 0x00}, 3, "null"},
        {{0xd5, 0x00, 0x00, 0x00}, 4, "null"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint8_t in[sizeof head + 16];
        memcpy(in, head, sizeof head);
        memcpy(in + sizeof head, cases[i].bytes, cases[i].len);
        sio_packet_t p;
        assert_int_equal(sio_msgpack_decode(&dec, in, sizeof head + cases[i].len, true, &p),
                         SIO_DECODE_PACKET);
        json_t *want = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
        assert_true(json_equal(json_array_get(p.data, 1), want));
        json_decref(want);
        sio_packet_clear(&p);
    }
}

static void test_encode_as_notepack(void **state) {
    (void)state;
    /* new Encoder().encode({type: 0, nsp: "/", data: {sid: "abc"}}): what socket.io
     * sends as a CONNECT reply. */
    static const uint8_t want[] = {0x83, 0xa4, 0x74, 0x79, 0x70, 0x65, 0x00, 0xa3, 0x6e,
                                   0x73, 0x70, 0xa1, 0x2f, 0xa4, 0x64, 0x61, 0x74, 0x61,
                                   0x81, 0xa3, 0x73, 0x69, 0x64, 0xa3, 0x61, 0x62, 0x63};
    sio_packet_t p = {.type = SIO_CONNECT, .nsp = "/", .id = -1};
    p.data = json_pack("{s:s}", "sid", "abc");
    buf_t b = {0};
    assert_int_equal(sio_msgpack_encode_packet(&b, &p), 0);
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.data, want, sizeof want);
    buf_free(&b);
    sio_packet_clear(&p);
}

/* ---- round trips ---- */

static void round_trip(sio_packet_type_t type, const char *nsp, int64_t id, const char *json,
                       size_t nbins) {
    sio_packet_t p = {.type = type, .id = id};
    snprintf(p.nsp, sizeof p.nsp, "%s", nsp);
    p.data = json ? json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;
    if (nbins) {
        p.bins = calloc(nbins, sizeof *p.bins);
        p.nbins = nbins;
        for (size_t i = 0; i < nbins; i++) {
            uint8_t bytes[300];
            for (size_t j = 0; j < sizeof bytes; j++)
                bytes[j] = (uint8_t)(i + j);
            p.bins[i] = rcbuf_new(bytes, i * 100); /* the first one empty */
        }
    }
    buf_t b = {0};
    assert_int_equal(sio_msgpack_encode_packet(&b, &p), 0);
    sio_packet_t q;
    assert_int_equal(sio_msgpack_decode(&dec, b.data, b.len, true, &q), SIO_DECODE_PACKET);
    assert_int_equal(q.type, type);
    assert_string_equal(q.nsp, nsp);
    assert_int_equal(q.id, id);
    assert_true(p.data ? json_equal(p.data, q.data) : q.data == NULL);
    assert_int_equal(q.nbins, nbins);
    for (size_t i = 0; i < nbins; i++) {
        assert_int_equal(q.bins[i]->len, p.bins[i]->len);
        assert_memory_equal(q.bins[i]->data, p.bins[i]->data, p.bins[i]->len);
    }
    buf_free(&b);
    sio_packet_clear(&p);
    sio_packet_clear(&q);
}

static void test_round_trips(void **state) {
    (void)state;
    round_trip(SIO_CONNECT, "/", -1, NULL, 0);
    round_trip(SIO_CONNECT, "/admin", -1, "{\"token\":\"t\",\"pid\":\"p\",\"offset\":\"42\"}", 0);
    round_trip(SIO_DISCONNECT, "/chat", -1, NULL, 0);
    round_trip(SIO_EVENT, "/", -1, "[\"hello\",1,-2,3.25,true,false,null,\"\",{},[]]", 0);
    round_trip(SIO_EVENT, "/x", 0, "[\"e\",{\"nested\":{\"deep\":[[[1]]]}}]", 0);
    round_trip(SIO_EVENT, "/", 12, "[42]", 0); /* a number as the event name */
    round_trip(SIO_ACK, "/", SIO_ID_MAX, "[]", 0);
    round_trip(SIO_ACK, "/a", 5, "[\"ok\",9007199254740991,-9007199254740991]", 0);
    round_trip(SIO_CONNECT_ERROR, "/", -1, "\"not authorized\"", 0);
    round_trip(SIO_CONNECT_ERROR, "/", -1, "{\"message\":\"m\",\"data\":{\"code\":4}}", 0);
    round_trip(SIO_BINARY_EVENT, "/", -1,
               "[\"up\",{\"_placeholder\":true,\"num\":0},{\"f\":{\"_placeholder\":true,"
               "\"num\":1}},[{\"_placeholder\":true,\"num\":2}]]",
               3);
    round_trip(SIO_BINARY_ACK, "/b", 7, "[{\"_placeholder\":true,\"num\":0}]", 1);
    /* A string with NUL and non-ASCII text. */
    round_trip(SIO_EVENT, "/", -1, "[\"m\",\"a\\u0000b \\u00e9\\u4e2d \\ud83d\\ude00\"]", 0);
    /* A namespace of the longest length. */
    char nsp[SIO_NSP_MAX + 1];
    memset(nsp, 'n', SIO_NSP_MAX);
    nsp[0] = '/';
    nsp[SIO_NSP_MAX] = '\0';
    round_trip(SIO_EVENT, nsp, -1, "[\"e\"]", 0);
}

static void test_strings_and_numbers(void **state) {
    (void)state;
    /* Long strings and big arrays take the str 16/32 and array 16 forms. */
    buf_t big = {0};
    assert_int_equal(buf_append_str(&big, "[\"e\",\""), 0);
    for (int i = 0; i < 70000; i++)
        assert_int_equal(buf_append(&big, "x", 1), 0);
    assert_int_equal(buf_append_str(&big, "\""), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(buf_append_str(&big, ",1"), 0);
    assert_int_equal(buf_append_str(&big, "]"), 0);
    assert_int_equal(buf_append(&big, "", 1), 0);
    round_trip(SIO_EVENT, "/", -1, (const char *)big.data, 0);
    buf_free(&big);
    /* Integers at every width, negative and positive. */
    round_trip(SIO_EVENT, "/", -1,
               "[\"n\",0,127,128,255,256,65535,65536,4294967295,4294967296,-1,-32,-33,-128,"
               "-129,-32768,-32769,-2147483648,-2147483649,9223372036854775807,"
               "-9223372036854775808]",
               0);
}

/* ---- refused ---- */

static void test_refused_envelope(void **state) {
    (void)state;
    sio_packet_t p;
    /* A text message: what a json-parser client sends. */
    assert_int_equal(sio_msgpack_decode(&dec, (const uint8_t *)"0", 1, false, &p),
                     SIO_DECODE_ERROR);
    assert_int_equal(sio_msgpack_decode(&dec, good, sizeof good, false, &p), SIO_DECODE_ERROR);
    assert_good_after();
    assert_refused_bytes(NULL, 0);
    assert_refused_bytes(good, sizeof good - 1); /* cut short */
    uint8_t longer[sizeof good + 1];
    memcpy(longer, good, sizeof good);
    longer[sizeof good] = 0xc0;
    assert_refused_bytes(longer, sizeof longer);      /* trailing bytes */
    assert_refused_bytes((const uint8_t *)"\xc1", 1); /* never used */
    /* Counts far beyond the bytes that follow. */
    assert_refused_bytes((const uint8_t *)"\xdf\xff\xff\xff\xff", 5);
    assert_refused_bytes((const uint8_t *)"\xdd\xff\xff\xff\xff", 5);
    assert_refused_bytes((const uint8_t *)"\xdb\xff\xff\xff\xff", 5);
    assert_refused("[2,\"/\",[\"x\"]]"); /* an array, not a map */
    assert_refused("\"2/,[]\"");
    assert_refused("{}");
    /* A known key twice (jansson cannot write it: the bytes by hand). */
    static const uint8_t twice[] = {0x84, 0xa4, 't', 'y',  'p',  'e', 0x02, 0xa4, 't',
                                    'y',  'p',  'e', 0x03, 0xa3, 'n', 's',  'p',  0xa1,
                                    '/',  0xa4, 'd', 'a',  't',  'a', 0x91, 0xa1, 'x'};
    assert_refused_bytes(twice, sizeof twice);
    /* Keys that are not strings are ignored, as are unknown ones. */
    static const uint8_t int_key[] = {0x84, 0x01, 0x02, 0xa4, 't',  'y',  'p', 'e',
                                      0x02, 0xa3, 'n',  's',  'p',  0xa1, '/', 0xa4,
                                      'd',  'a',  't',  'a',  0x91, 0xa1, 'x'};
    assert_int_equal(sio_msgpack_decode(&dec, int_key, sizeof int_key, true, &p),
                     SIO_DECODE_PACKET);
    sio_packet_clear(&p);
}

static void test_refused_fields(void **state) {
    (void)state;
    /* type: an integer 0..4 */
    assert_refused("{\"nsp\":\"/\",\"data\":[\"x\"]}");
    assert_refused("{\"type\":5,\"nsp\":\"/\",\"data\":[\"x\"]}");
    assert_refused("{\"type\":6,\"nsp\":\"/\",\"id\":1,\"data\":[]}");
    assert_refused("{\"type\":-1,\"nsp\":\"/\",\"data\":[\"x\"]}");
    assert_refused("{\"type\":\"2\",\"nsp\":\"/\",\"data\":[\"x\"]}");
    assert_refused("{\"type\":2.0,\"nsp\":\"/\",\"data\":[\"x\"]}");
    assert_refused("{\"type\":null,\"nsp\":\"/\",\"data\":[\"x\"]}");
    /* nsp: a string starting with '/', at most SIO_NSP_MAX bytes, no NUL */
    assert_refused("{\"type\":2,\"data\":[\"x\"]}");
    assert_refused("{\"type\":2,\"nsp\":1,\"data\":[\"x\"]}");
    assert_refused("{\"type\":2,\"nsp\":\"\",\"data\":[\"x\"]}");
    assert_refused("{\"type\":2,\"nsp\":\"chat\",\"data\":[\"x\"]}");
    assert_refused("{\"type\":2,\"nsp\":\"/a\\u0000b\",\"data\":[\"x\"]}");
    char json[SIO_NSP_MAX + 64];
    char nsp[SIO_NSP_MAX + 2];
    memset(nsp, 'n', SIO_NSP_MAX + 1);
    nsp[0] = '/';
    nsp[SIO_NSP_MAX + 1] = '\0';
    snprintf(json, sizeof json, "{\"type\":2,\"nsp\":\"%s\",\"data\":[\"x\"]}", nsp);
    assert_refused(json);
    /* id: absent or an integer 0..SIO_ID_MAX */
    assert_refused("{\"type\":2,\"nsp\":\"/\",\"id\":-1,\"data\":[\"x\"]}");
    assert_refused("{\"type\":2,\"nsp\":\"/\",\"id\":1.5,\"data\":[\"x\"]}");
    assert_refused("{\"type\":2,\"nsp\":\"/\",\"id\":null,\"data\":[\"x\"]}");
    assert_refused("{\"type\":2,\"nsp\":\"/\",\"id\":\"1\",\"data\":[\"x\"]}");
    assert_refused("{\"type\":2,\"nsp\":\"/\",\"id\":1000000000000000,\"data\":[\"x\"]}");
    sio_packet_t p;
    assert_int_equal(
        decode_json("{\"type\":2,\"nsp\":\"/\",\"id\":999999999999999,\"data\":[\"x\"]}", NULL, 0,
                    &p),
        SIO_DECODE_PACKET);
    assert_int_equal(p.id, SIO_ID_MAX);
    sio_packet_clear(&p);
}

static void test_refused_payloads(void **state) {
    (void)state;
    /* The shapes socket.io-msgpack-parser's checkPacket wants, */
    assert_refused("{\"type\":0,\"nsp\":\"/\",\"data\":[]}");
    assert_refused("{\"type\":0,\"nsp\":\"/\",\"data\":null}");
    assert_refused("{\"type\":1,\"nsp\":\"/\",\"data\":{}}");
    assert_refused("{\"type\":2,\"nsp\":\"/\",\"data\":{}}");
    assert_refused("{\"type\":2,\"nsp\":\"/\"}");
    assert_refused("{\"type\":3,\"nsp\":\"/\",\"id\":1,\"data\":\"x\"}");
    assert_refused("{\"type\":4,\"nsp\":\"/\",\"data\":1}");
    assert_refused("{\"type\":4,\"nsp\":\"/\"}");
    /* and those the json parser wants of every event: a name, not a reserved one. */
    assert_refused("{\"type\":2,\"nsp\":\"/\",\"data\":[]}");
    assert_refused("{\"type\":2,\"nsp\":\"/\",\"data\":[null]}");
    assert_refused("{\"type\":2,\"nsp\":\"/\",\"data\":[\"connect\"]}");
    assert_refused("{\"type\":2,\"nsp\":\"/\",\"data\":[\"disconnecting\",1]}");
    /* A map shaped like a placeholder would take an attachment's place. */
    assert_refused("{\"type\":2,\"nsp\":\"/\",\"data\":[\"x\",{\"_placeholder\":true,"
                   "\"num\":0,\"more\":1}]}");
    assert_refused("{\"type\":2,\"nsp\":\"/\",\"data\":[\"x\",{\"_placeholder\":false}]}");
    /* Strings must be UTF-8. */
    static const uint8_t latin1[] = {0x83, 0xa4, 't',  'y', 'p', 'e', 0x02, 0xa3, 'n',  's', 'p',
                                     0xa1, '/',  0xa4, 'd', 'a', 't', 'a',  0x91, 0xa1, 0xe9};
    assert_refused_bytes(latin1, sizeof latin1);
}

static void test_refused_binary(void **state) {
    (void)state;
    sio_bin_t bins[MAX_ATTACHMENTS + 1];
    for (size_t i = 0; i < MAX_ATTACHMENTS + 1; i++)
        bins[i] = (sio_bin_t){(const uint8_t *)"abc", 3};
    buf_t args = {0};
    assert_int_equal(buf_append_str(&args, "{\"type\":2,\"nsp\":\"/\",\"data\":[\"x\""), 0);
    for (size_t i = 0; i < MAX_ATTACHMENTS; i++)
        assert_int_equal(buf_printf(&args, ",{\"_placeholder\":true,\"num\":%zu}", i), 0);
    assert_int_equal(buf_append(&args, "]}", 3), 0);
    /* As many buffers as max_attachments: taken. */
    sio_packet_t p;
    assert_int_equal(decode_json((const char *)args.data, bins, MAX_ATTACHMENTS, &p),
                     SIO_DECODE_PACKET);
    assert_int_equal(p.nbins, MAX_ATTACHMENTS);
    sio_packet_clear(&p);
    /* One more: refused. */
    args.len -= 3;
    assert_int_equal(buf_printf(&args, ",{\"_placeholder\":true,\"num\":%d}]}", MAX_ATTACHMENTS),
                     0);
    assert_int_equal(buf_append(&args, "", 1), 0);
    buf_t b = {0};
    pack_json(&b, (const char *)args.data, bins, MAX_ATTACHMENTS + 1);
    assert_refused_bytes(b.data, b.len);
    buf_free(&b);
    buf_free(&args);
    /* Buffers where no packet can take them: CONNECT auth, CONNECT_ERROR. */
    pack_json(&b, "{\"type\":0,\"nsp\":\"/\",\"data\":{\"k\":{\"_placeholder\":true,\"num\":0}}}",
              bins, 1);
    assert_refused_bytes(b.data, b.len);
    b.len = 0;
    pack_json(&b, "{\"type\":4,\"nsp\":\"/\",\"data\":{\"k\":{\"_placeholder\":true,\"num\":0}}}",
              bins, 1);
    assert_refused_bytes(b.data, b.len);
    buf_free(&b);
}

static void test_refused_depth(void **state) {
    (void)state;
    /* {type: 2, nsp: "/", data: ["x", [[[...]]]]}: the map and the data array are two
     * levels; msgpack-c takes SIO_MP_DEPTH_MAX in all. */
    for (int extra = SIO_MP_DEPTH_MAX - 3; extra <= SIO_MP_DEPTH_MAX; extra++) {
        buf_t b = {0};
        assert_int_equal(buf_append_str(&b, "{\"type\":2,\"nsp\":\"/\",\"data\":[\"x\""), 0);
        assert_int_equal(buf_append_str(&b, ","), 0);
        for (int i = 0; i < extra; i++)
            assert_int_equal(buf_append_str(&b, "["), 0);
        for (int i = 0; i < extra; i++)
            assert_int_equal(buf_append_str(&b, "]"), 0);
        assert_int_equal(buf_append(&b, "]}", 3), 0);
        sio_packet_t p;
        sio_decode_result_t r = decode_json((const char *)b.data, NULL, 0, &p);
        if (2 + extra <= SIO_MP_DEPTH_MAX) {
            assert_int_equal(r, SIO_DECODE_PACKET);
            sio_packet_clear(&p);
        } else {
            assert_int_equal(r, SIO_DECODE_ERROR);
        }
        buf_free(&b);
    }
    assert_good_after();
}

/* ---- encoding refusals ---- */

static void test_encode_refused(void **state) {
    (void)state;
    sio_packet_t p = {.type = SIO_CONNECT, .nsp = "/", .id = -1};
    rcbuf_t *bin = rcbuf_new("x", 1);
    p.bins = &bin;
    p.nbins = 1;
    buf_t b = {0};
    assert_int_equal(sio_msgpack_encode_packet(&b, &p), -EINVAL); /* buffers in a CONNECT */
    p.nbins = 0;
    p.bins = NULL;
    snprintf(p.nsp, sizeof p.nsp, "%s", "chat");
    assert_int_equal(sio_msgpack_encode_packet(&b, &p), -EINVAL); /* no leading '/' */
    snprintf(p.nsp, sizeof p.nsp, "%s", "/");
    p.type = SIO_ACK;
    p.id = SIO_ID_MAX + 1;
    p.data = json_array();
    assert_int_equal(sio_msgpack_encode_packet(&b, &p), -EINVAL);
    p.id = 1;
    json_array_append_new(p.data, sio_placeholder(0));
    assert_int_equal(sio_msgpack_encode_packet(&b, &p), -EINVAL); /* a placeholder past nbins */
    p.type = (sio_packet_type_t)7;
    assert_int_equal(sio_msgpack_encode_packet(&b, &p), -EINVAL);
    assert_int_equal(b.len, 0); /* nothing written on error */
    json_decref(p.data);
    ref_release(&bin->ref);
    buf_free(&b);
}

/* ---- the table ---- */

static size_t payload_len(const eio_msg_t *m) {
    return m->binary ? m->len : m->len - 1; /* text starts with the Engine.IO type */
}

static void release_all(eio_msg_t **msgs, size_t n) {
    for (size_t i = 0; i < n; i++)
        eio_msg_release(msgs[i]);
    free(msgs);
}

static void test_parser_table(void **state) {
    (void)state;
    assert_ptr_equal(sio_parser_of(SIO_PARSER_JSON), &sio_parser_json);
    assert_ptr_equal(sio_parser_of(SIO_PARSER_MSGPACK), &sio_parser_msgpack);
    assert_null(sio_parser_of((sio_parser_kind_t)2));
    assert_string_equal(sio_parser_json.name, "json");
    assert_string_equal(sio_parser_msgpack.name, "msgpack");
}

/* The same event through both tables: the json one writes the text and an attachment,
 * the msgpack one a single binary message; each decodes back with its own decoder to
 * the same packet, the offset last. */
static void test_encode_event_both(void **state) {
    (void)state;
    static const char args[] = " [1,{\"_placeholder\":true,\"num\":0}] ";
    sio_bin_t bin = {(const uint8_t *)"\x00\xff", 2};
    sio_event_out_t e = {.type = SIO_EVENT,
                         .nsp = "/chat",
                         .id = 4,
                         .event = "up\"load",
                         .args_json = args,
                         .args_len = sizeof args - 1,
                         .bins = &bin,
                         .nbins = 1,
                         .offset = "7"};
    const sio_parser_t *parsers[] = {&sio_parser_json, &sio_parser_msgpack};
    for (size_t k = 0; k < 2; k++) {
        eio_msg_t **msgs;
        int n = parsers[k]->encode_event(&e, &msgs);
        assert_int_equal(n, k == 0 ? 2 : 1);
        assert_int_equal(msgs[0]->binary, k == 1);
        sio_decoder_t d;
        sio_decoder_init(&d, MAX_ATTACHMENTS);
        sio_packet_t p = {0};
        sio_decode_result_t r = SIO_DECODE_MORE;
        for (int i = 0; i < n; i++)
            r = parsers[k]->decode(&d, eio_msg_payload(msgs[i]), payload_len(msgs[i]),
                                   msgs[i]->binary, &p);
        assert_int_equal(r, SIO_DECODE_PACKET);
        assert_int_equal(p.type, SIO_BINARY_EVENT);
        assert_string_equal(p.nsp, "/chat");
        assert_int_equal(p.id, 4);
        assert_data(&p, "[\"up\\\"load\",1,{\"_placeholder\":true,\"num\":0},\"7\"]");
        assert_int_equal(p.nbins, 1);
        assert_memory_equal(p.bins[0]->data, "\x00\xff", 2);
        sio_packet_clear(&p);
        sio_decoder_clear(&d);
        release_all(msgs, (size_t)n);
    }
    /* Arguments that are not an array: refused by both. */
    e.args_json = "{}";
    e.args_len = 2;
    for (size_t k = 0; k < 2; k++) {
        eio_msg_t **msgs;
        assert_int_equal(parsers[k]->encode_event(&e, &msgs), -EINVAL);
    }
}

static void test_encode_control_both(void **state) {
    (void)state;
    json_t *err = json_pack("{s:s,s:{s:i}}", "message", "bad token", "data", "code", 401);
    const sio_parser_t *parsers[] = {&sio_parser_json, &sio_parser_msgpack};
    for (size_t k = 0; k < 2; k++) {
        eio_msg_t *m;
        assert_int_equal(parsers[k]->encode_control(SIO_CONNECT_ERROR, "/admin", err, &m), 0);
        sio_decoder_t d;
        sio_decoder_init(&d, MAX_ATTACHMENTS);
        sio_packet_t p;
        assert_int_equal(parsers[k]->decode(&d, eio_msg_payload(m), payload_len(m), m->binary, &p),
                         SIO_DECODE_PACKET);
        assert_int_equal(p.type, SIO_CONNECT_ERROR);
        assert_string_equal(p.nsp, "/admin");
        assert_true(json_equal(p.data, err));
        sio_packet_clear(&p);
        eio_msg_release(m);
        /* A DISCONNECT carries nothing. */
        assert_int_equal(parsers[k]->encode_control(SIO_DISCONNECT, "/", NULL, &m), 0);
        assert_int_equal(parsers[k]->decode(&d, eio_msg_payload(m), payload_len(m), m->binary, &p),
                         SIO_DECODE_PACKET);
        assert_int_equal(p.type, SIO_DISCONNECT);
        assert_null(p.data);
        sio_packet_clear(&p);
        eio_msg_release(m);
        sio_decoder_clear(&d);
    }
    json_decref(err);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_notepack_client_event, setup),
        cmocka_unit_test_setup(test_notepack_connect_undefined, setup),
        cmocka_unit_test_setup(test_notepack_binary, setup),
        cmocka_unit_test_setup(test_ext_forms, setup),
        cmocka_unit_test_setup(test_encode_as_notepack, setup),
        cmocka_unit_test_setup(test_round_trips, setup),
        cmocka_unit_test_setup(test_strings_and_numbers, setup),
        cmocka_unit_test_setup(test_refused_envelope, setup),
        cmocka_unit_test_setup(test_refused_fields, setup),
        cmocka_unit_test_setup(test_refused_payloads, setup),
        cmocka_unit_test_setup(test_refused_binary, setup),
        cmocka_unit_test_setup(test_refused_depth, setup),
        cmocka_unit_test_setup(test_encode_refused, setup),
        cmocka_unit_test_setup(test_parser_table, setup),
        cmocka_unit_test_setup(test_encode_event_both, setup),
        cmocka_unit_test_setup(test_encode_control_both, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
