/* bench/ws_deflate.c — micro-benchmark: what permessage-deflate costs per delivery.
 *
 * A newMessage event as the chat sends it (about 100 bytes, and about 4 KiB, of text made
 * of pseudo-random words, as parley-bench --text-words makes it) is compressed the way
 * parley --ws-deflate does it for a broadcast: once, whatever the room's size, the frame
 * then queued by reference on every member (ws_deflate_make). Reported per delivery for
 * rooms of 10 and 1,000, beside the cost of compressing once per recipient (what
 * socket.io does, each socket having its own zlib stream: measured here with one stream
 * reset per message, a lower bound of it), and the bytes on the wire with and without.
 * Also checks that every frame inflates back to the event.
 *
 * usage: ws_deflate [rounds (2000)] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ws/deflate.h"
#include "ws/frame.h"

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* The chat's newMessage packet with `text_bytes` of words, seeded by `seed`. */
static size_t make_event(char *out, size_t size, size_t text_bytes, uint32_t seed) {
    int n = snprintf(out, size,
                     "42[\"newMessage\",{\"id\":\"m-%u\",\"roomId\":\"room-17\",\"seq\":%u,"
                     "\"userId\":\"u1234\",\"username\":\"Alice\",\"text\":\"T%u ",
                     seed, seed, seed);
    size_t want = (size_t)n + text_bytes;
    uint32_t x = seed | 1;
    while ((size_t)n < want && (size_t)n < size - 64) {
        x = x * 1664525u + 1013904223u;
        unsigned len = 2 + (x >> 28) % 8;
        for (unsigned i = 0; i < len && (size_t)n < want; i++) {
            x = x * 1664525u + 1013904223u;
            out[n++] = "etaoinshrdlucmfwypvbgkjqxz"[(x >> 24) % 26 / (1 + (x >> 31))];
        }
        if ((size_t)n < want)
            out[n++] = ' ';
    }
    n += snprintf(out + n, size - (size_t)n, "\",\"timestamp\":1764781234567}]");
    return (size_t)n;
}

static size_t header_len(const uint8_t *frame) {
    return frame[1] == 126 ? 4 : frame[1] == 127 ? 10 : 2;
}

int main(int argc, char **argv) {
    size_t rounds = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000;
    if (rounds == 0)
        return 1;
    ws_deflate_config_t cfg = {0, false};
    ws_deflate_t *d;
    if (ws_deflate_new(&cfg, &d))
        return 1;
    static const size_t sizes[] = {100, 4000};
    static char event[8192];
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t raw = 0, wire = 0;
        double t0 = cpu_seconds();
        for (size_t r = 0; r < rounds; r++) {
            size_t n = make_event(event, sizeof event, sizes[si], (uint32_t)r);
            ws_deflated_t z = {0};
            if (ws_deflate_make(d, WS_OP_TEXT, (const uint8_t *)event, n, &z))
                return 1;
            uint8_t h[WS_FRAME_HEADER_MAX];
            raw += ws_frame_header(h, WS_OP_TEXT, n) + n;
            wire += z.state == WS_DEFLATED_MADE ? z.len : ws_frame_header(h, WS_OP_TEXT, n) + n;
            ws_deflated_free(&z);
        }
        double per_msg = (cpu_seconds() - t0) / (double)rounds;
        /* The same again, each frame inflated and compared (not timed). */
        size_t n = make_event(event, sizeof event, sizes[si], 7);
        ws_deflated_t z = {0};
        if (ws_deflate_make(d, WS_OP_TEXT, (const uint8_t *)event, n, &z))
            return 1;
        if (z.state == WS_DEFLATED_MADE) {
            uint8_t *out;
            size_t out_len;
            size_t hl = header_len(z.frame);
            if (ws_deflate_inflate(d, NULL, z.frame + hl, z.len - hl, n, &out, &out_len) ||
                out_len != n || memcmp(out, event, n) != 0) {
                fprintf(stderr, "round trip failed\n");
                return 1;
            }
            ws_deflate_inflate_done(d);
        }
        ws_deflated_free(&z);
        double raw_avg = (double)raw / (double)rounds, wire_avg = (double)wire / (double)rounds;
        for (size_t room = 10; room <= 1000; room *= 100) {
            printf("ws deflate: %zu-byte text (%.0f-byte frame), room of %zu: %.2f us CPU/delivery "
                   "compressing once per broadcast, %.2f us compressing per recipient; "
                   "%.0f -> %.0f bytes on the wire per delivery\n",
                   sizes[si], raw_avg, room, per_msg * 1e6 / (double)room, per_msg * 1e6, raw_avg,
                   wire_avg);
            printf("{\"bench\":\"ws_deflate\",\"text_bytes\":%zu,\"room\":%zu,"
                   "\"us_per_delivery_shared\":%.3f,\"us_per_delivery_per_socket\":%.3f,"
                   "\"frame_bytes\":%.1f,\"wire_bytes\":%.1f}\n",
                   sizes[si], room, per_msg * 1e6 / (double)room, per_msg * 1e6, raw_avg, wire_avg);
        }
    }
    ws_deflate_release(d);
    return 0;
}
