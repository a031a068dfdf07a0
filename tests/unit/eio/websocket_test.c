/* tests/unit/eio/websocket_test.c — an Engine.IO message on its way to a WebSocket
 * (eio_websocket_send → ws_conn_send_message → net_conn_write): the per-delivery path of a
 * broadcast.
 *
 * - A v4 message is queued as one chunk, its frame header right before its data in the
 *   message (eio/packet.h), and the bytes on the wire are the header ws_frame_header
 *   makes for its length and opcode, then the data: for 2-, 4- and 10-byte headers.
 * - Many deliveries queued on one connection go to the kernel in one system call.
 * - A v3 client's binary message (its own header, ending with the type byte) still goes
 *   out right.
 * The connection is a real one of the loop (a socketpair end, adopted), its ext area a
 * WebSocket that negotiated nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "eio/internal.h"
#include "net/listener.h"
#include "util/buf.h"
#include "util/log.h"
#include "ws/conn.h"
#include "ws/frame.h"

typedef struct {
    uv_loop_t loop;
    net_loop_t *nl;
    net_listener_t *l;
    net_conn_t *c;
    int peer; /* the client's end */
    bool closed;
} fixture_t;

static ssize_t on_data(net_conn_t *c, uint8_t *data, size_t len) {
    return (ssize_t)len;
}

static void on_close(net_conn_t *c) {
    fixture_t *f = ((ws_conn_t *)net_conn_ext(c))->data;
    f->closed = true;
}

static const net_conn_ops_t ops = {on_data, NULL, on_close};

static void on_open(net_conn_t *c, void *arg) {
    fixture_t *f = arg;
    f->c = c;
    ((ws_conn_t *)net_conn_ext(c))->data = f;
}

static void fixture_open(fixture_t *f) {
    memset(f, 0, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_non_null(f->nl = net_loop_new(&f->loop));
    assert_int_equal(
        net_listener_open(f->nl, "127.0.0.1", 0, false, sizeof(ws_conn_t), &ops, on_open, f, &f->l),
        0);
    int pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    assert_int_equal(net_listener_adopt(f->l, pair[0], NULL, 0), 0);
    assert_non_null(f->c);
    f->peer = pair[1];
}

static void fixture_close(fixture_t *f) {
    close(f->peer);
    for (int i = 0; i < 5000 && !f->closed; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    assert_true(f->closed);
    net_listener_close(f->l);
    net_loop_close(f->nl);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    net_loop_free(f->nl);
}

static ws_conn_t *ws_of(fixture_t *f) {
    return net_conn_ext(f->c);
}

/* Runs the loop (which flushes) and reads n bytes from the client's end. */
static void read_all(fixture_t *f, uint8_t *out, size_t n) {
    size_t got = 0;
    for (int spins = 0; got < n && spins < 20000; spins++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        ssize_t r = recv(f->peer, out + got, n - got, MSG_DONTWAIT);
        if (r > 0)
            got += (size_t)r;
        else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            fail_msg("read: %s", r == 0 ? "closed" : strerror(errno));
        else
            usleep(200);
    }
    assert_int_equal(got, n);
}

/* Appends what a client should receive for m: its header, then its data. */
static void expect_frame(buf_t *want, const eio_msg_t *m) {
    uint8_t h[WS_FRAME_HEADER_MAX];
    size_t hl = ws_frame_header(h, m->binary ? WS_OP_BINARY : WS_OP_TEXT, m->len);
    assert_int_equal(buf_append(want, h, hl), 0);
    assert_int_equal(buf_append(want, m->data, m->len), 0);
}

static eio_msg_t *message(bool binary, size_t len, unsigned seed) {
    eio_msg_t *m = eio_msg_alloc(EIO_MESSAGE, binary, len);
    assert_non_null(m);
    uint8_t *p = eio_msg_payload(m);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)('a' + (i + seed) % 26);
    return m;
}

static void check_wire(fixture_t *f, const buf_t *want) {
    uint8_t *got = malloc(want->len);
    assert_non_null(got);
    read_all(f, got, want->len);
    assert_memory_equal(got, want->data, want->len);
    free(got);
    assert_int_equal(net_conn_queued(f->c), 0);
}

static void test_one_chunk_per_frame(void **state) {
    fixture_t f;
    fixture_open(&f);
    static const size_t lens[] = {0, 1, 124, 125, 126, 1000, 65534, 65535, 65536, 200000};
    buf_t want = {0};
    uint32_t queued = 0;
    for (int binary = 0; binary < 2; binary++) {
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            eio_msg_t *m = message(binary, lens[i], (unsigned)i);
            assert_int_equal(eio_websocket_send(ws_of(&f), m, 4), 0);
            queued++;
            assert_int_equal(f.c->tx_len - f.c->tx_head, queued);
            assert_ptr_equal(f.c->tx[f.c->tx_len - 1].base, eio_msg_ws_header(m));
            expect_frame(&want, m);
            eio_msg_release(m); /* the queue holds its own reference */
        }
    }
    check_wire(&f, &want);
    buf_free(&want);
    fixture_close(&f);
}

/* 500 deliveries of 100 bytes, as a burst's fan-out queues them on one connection in
 * one loop iteration: one sendmsg. */
static void test_burst_in_one_call(void **state) {
    fixture_t f;
    fixture_open(&f);
    buf_t want = {0};
    for (unsigned i = 0; i < 500; i++) {
        eio_msg_t *m = message(false, 100, i);
        assert_int_equal(eio_websocket_send(ws_of(&f), m, 4), 0);
        expect_frame(&want, m);
        eio_msg_release(m);
    }
    assert_int_equal(f.c->tx_len, 500);
    net_loop_stats_t before, after;
    net_loop_stats(f.nl, &before);
    check_wire(&f, &want);
    net_loop_stats(f.nl, &after);
    assert_int_equal(after.write_calls - before.write_calls, 1);
    buf_free(&want);
    fixture_close(&f);
}

static void test_v3_binary(void **state) {
    fixture_t f;
    fixture_open(&f);
    eio_msg_t *m = message(true, 3, 0);
    assert_int_equal(eio_websocket_send(ws_of(&f), m, 3), 0);
    eio_msg_t *t = message(false, 2, 0);
    assert_int_equal(eio_websocket_send(ws_of(&f), t, 3), 0);
    const uint8_t want[] = {0x82, 4, 4, 'a', 'b', 'c', 0x81, 3, '4', 'a', 'b'};
    buf_t w = {0};
    assert_int_equal(buf_append(&w, want, sizeof want), 0);
    check_wire(&f, &w);
    buf_free(&w);
    eio_msg_release(m);
    eio_msg_release(t);
    fixture_close(&f);
}

int main(void) {
    log_threshold = LOG_LEVEL_ERROR;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_chunk_per_frame),
        cmocka_unit_test(test_burst_in_one_call),
        cmocka_unit_test(test_v3_binary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
