/* tests/fuzz/ws_frame_fuzz.c — libFuzzer target for ws/frame.c and util/utf8.c.
 *
 * Reads the input as a stream of client frames, the way ws/conn.c would, under a few
 * payload limits. Beyond "no crash", each parsed frame is checked against the input:
 * it fits, obeys the limit and the control-frame rules, its payload is the input
 * unmasked, its header is the minimal encoding (as ws_frame_header would write it),
 * and a frame one byte short asks for more. Close payloads go through
 * ws_close_payload_check; text messages are validated fragment by fragment across
 * frames and compared with validating the reassembled message in one piece. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/utf8.h"
#include "ws/frame.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* ws/conn.c's view of a message in progress, reduced to what is checked here. */
typedef struct {
    bool in_text;     /* a text message is being reassembled */
    uint32_t utf8;    /* incremental validator state across its fragments */
    uint8_t *message; /* the reassembled text, for the one-piece comparison */
    size_t message_len;
} stream_t;

static void check_frame(const uint8_t *original, const uint8_t *frame, size_t n,
                        const ws_frame_t *f, size_t limit) {
    CHECK(f->len <= limit && f->len <= n);
    size_t hdr = n - f->len;
    CHECK(hdr == 6 || hdr == 8 || hdr == 14);
    CHECK(f->payload == frame + hdr);
    CHECK(f->opcode == (original[0] & 0x0F) && f->fin == ((original[0] & 0x80) != 0));
    if (f->opcode & 0x8)
        CHECK(f->fin && f->len <= 125);

    const uint8_t *key = original + hdr - 4;
    for (size_t i = 0; i < f->len; i++)
        CHECK(f->payload[i] == (original[hdr + i] ^ key[i % 4]));

    /* Minimal length encoding: the server header for this length has the same shape. */
    uint8_t h[WS_FRAME_HEADER_MAX];
    size_t hl = ws_frame_header(h, f->opcode, f->len);
    CHECK(hl == hdr - 4);
    CHECK(h[0] == (0x80 | f->opcode) && h[1] == (original[1] & 0x7F));
    CHECK(memcmp(h + 2, original + 2, hl - 2) == 0);
}

static void check_text(stream_t *st, const ws_frame_t *f) {
    if (f->opcode == WS_OP_TEXT) {
        st->in_text = true;
        st->utf8 = UTF8_ACCEPT;
        st->message_len = 0;
    } else if (f->opcode != WS_OP_CONT || !st->in_text) {
        return;
    }
    /* Feed the fragment in two pieces split at a data-chosen point, so characters
     * are split both at fragment and at call boundaries. */
    size_t cut = f->len > 0 ? f->payload[0] % (f->len + 1) : 0;
    utf8_validate(&st->utf8, f->payload, cut);
    utf8_validate(&st->utf8, f->payload + cut, f->len - cut);
    memcpy(st->message + st->message_len, f->payload, f->len);
    st->message_len += f->len;
    if (!f->fin)
        return;
    bool valid = utf8_is_valid(st->message, st->message_len);
    CHECK((st->utf8 == UTF8_ACCEPT) == valid);
    if (valid) {
        size_t lead = 0;
        for (size_t i = 0; i < st->message_len; i++)
            lead += (st->message[i] & 0xC0) != 0x80;
        CHECK(utf8_count(st->message, st->message_len) == lead);
    }
    st->in_text = false;
}

static void run(const uint8_t *data, size_t size, size_t limit) {
    /* A private, exactly sized copy: the parser unmasks in place, and ASan then
     * catches any read past the end. */
    uint8_t *buf = malloc(size + 1);
    uint8_t *message = malloc(size + 1);
    if (buf == NULL || message == NULL)
        abort();
    memcpy(buf, data, size);
    stream_t st = {.utf8 = UTF8_ACCEPT, .message = message};

    size_t off = 0;
    while (off < size) {
        ws_frame_t f;
        ssize_t n = ws_frame_parse(buf + off, size - off, limit, &f);
        if (n == 0)
            break;
        if (n < 0) {
            CHECK(n == -WS_CLOSE_PROTOCOL_ERROR || n == -WS_CLOSE_TOO_BIG);
            break;
        }
        CHECK((size_t)n <= size - off);
        check_frame(data + off, buf + off, (size_t)n, &f, limit);
        /* Unmasking touched only the payload, so the header still says the frame is
         * n bytes: one byte fewer must ask for more, and modify nothing. */
        ws_frame_t again;
        CHECK(ws_frame_parse(buf + off, (size_t)n - 1, limit, &again) == 0);

        if (f.opcode == WS_OP_CLOSE) {
            uint16_t code;
            int rc = ws_close_payload_check(f.payload, f.len, &code);
            CHECK(rc == 0 || rc == -WS_CLOSE_PROTOCOL_ERROR || rc == -WS_CLOSE_INVALID_DATA);
            CHECK(rc != 0 || f.len == 0 || code == (f.payload[0] << 8 | f.payload[1]));
            CHECK(f.len != 0 || (rc == 0 && code == WS_CLOSE_NO_STATUS));
        }
        check_text(&st, &f);
        off += (size_t)n;
    }
    free(buf);
    free(message);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* 0 admits only empty frames; 125 is the control-frame size; SIZE_MAX is no
     * limit but the parser's own. */
    static const size_t limits[] = {0, 125, 4096, SIZE_MAX};
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
        run(data, size, limits[i]);
    return 0;
}
