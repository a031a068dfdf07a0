/* tests/unit/net/conn_test.c — connections on the loop's epoll set (src/net/conn.c):
 * what replacing libuv's stream handle must keep.
 *
 * - Accepted sockets have TCP_NODELAY, inherited from the listening socket (no
 *   setsockopt per connection).
 * - Output the kernel refuses waits for EPOLLOUT and arrives whole and in order once the
 *   peer reads; while it is over the output limit the peer's input is not read, and it is
 *   read again once the output drained.
 * - A peer that never reads is closed after send_timeout (the stall check).
 * - Out of descriptors, the listener sheds its backlog (those clients are closed) instead
 *   of waking the loop forever, and serves again once descriptors are free.
 * - A released connection (handed to another process) is no longer watched: its peer's
 *   bytes reach nobody, and the descriptor still works for whoever holds it.
 * - A burst of small chunks goes out in one system call; queue arrays are lent by size
 *   and start at the size the connection needed last (see test_burst_in_one_call).
 * - A closed connection whose socket is still open elsewhere (a hand-off's copy in the
 *   process that sent it) leaves the epoll set: no event reaches its freed memory (the
 *   ASan run of this test catches one that would). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "net/listener.h"
#include "util/log.h"

typedef struct {
    int opened, closed;
    int nodelay;      /* TCP_NODELAY of the last accepted socket */
    size_t bytes;     /* input offered */
    size_t reply;     /* bytes to queue in answer to the first input */
    net_conn_t *last; /* the last connection opened */
} state_t;

static state_t st;

static ssize_t on_data(net_conn_t *c, uint8_t *data, size_t len) {
    st.bytes += len;
    if (st.reply) {
        /* A numbered pattern in chunks of 1 KiB, so that order can be checked. */
        uint8_t chunk[1024];
        for (size_t off = 0; off < st.reply; off += sizeof chunk) {
            for (size_t i = 0; i < sizeof chunk; i++)
                chunk[i] = (uint8_t)((off + i) % 251);
            if (net_conn_write_copy(c, chunk, sizeof chunk))
                return -1;
        }
        st.reply = 0;
    } else if (net_conn_write_copy(c, "ok", 2)) {
        return -1;
    }
    return (ssize_t)len;
}

static void on_close(net_conn_t *c) {
    st.closed++;
}

static const net_conn_ops_t ops = {on_data, NULL, on_close};

static void on_open(net_conn_t *c, void *arg) {
    st.opened++;
    st.last = c;
    socklen_t len = sizeof st.nodelay;
    if (getsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &st.nodelay, &len))
        st.nodelay = -1;
}

/* A client connected to 127.0.0.1:port, with a receive buffer of rcvbuf bytes (0: the
 * kernel's, which grows to megabytes); -1 when refused. */
static int client(int port, int rcvbuf) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf)) {
        close(fd);
        return -1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Runs the loop until cond holds or about 5 s passed. */
#define RUN_UNTIL(loop, cond)                                                                      \
    do {                                                                                           \
        for (int spins_ = 0; !(cond) && spins_ < 5000; spins_++) {                                 \
            uv_run((loop), UV_RUN_NOWAIT);                                                         \
            usleep(1000);                                                                          \
        }                                                                                          \
        assert_true(cond);                                                                         \
    } while (0)

/* Reads n bytes from fd while running the loop. */
static void read_all(uv_loop_t *loop, int fd, uint8_t *out, size_t n) {
    size_t got = 0;
    for (int spins = 0; got < n && spins < 20000; spins++) {
        uv_run(loop, UV_RUN_NOWAIT);
        ssize_t r = recv(fd, out + got, n - got, MSG_DONTWAIT);
        if (r > 0)
            got += (size_t)r;
        else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            fail_msg("read: %s", r == 0 ? "closed" : strerror(errno));
        else
            usleep(500);
    }
    assert_int_equal(got, n);
}

typedef struct {
    uv_loop_t loop;
    net_loop_t *nl;
    net_listener_t *l;
    int port;
} fixture_t;

static void fixture_open(fixture_t *f, const net_loop_config_t *cfg) {
    st = (state_t){0};
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_non_null(f->nl = net_loop_new(&f->loop));
    if (cfg)
        assert_int_equal(net_loop_configure(f->nl, cfg), 0);
    assert_int_equal(net_listener_open(f->nl, "127.0.0.1", 0, false, 0, &ops, on_open, NULL, &f->l),
                     0);
    f->port = net_listener_port(f->l);
    assert_true(f->port > 0);
}

static void fixture_close(fixture_t *f) {
    net_loop_abort_conns(f->nl);
    net_listener_close(f->l);
    net_loop_close(f->nl);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    net_loop_free(f->nl);
}

static void test_nodelay_inherited(void **state) {
    fixture_t f;
    fixture_open(&f, NULL);
    int fd = client(f.port, 0);
    assert_true(fd >= 0);
    RUN_UNTIL(&f.loop, st.opened == 1);
    assert_int_equal(st.nodelay, 1);
    close(fd);
    RUN_UNTIL(&f.loop, st.closed == 1);
    fixture_close(&f);
}

/* 8 MiB queued to a client that does not read: far more than the socket buffers hold,
 * and over a 1 MiB output limit. */
static void test_refused_output_waits_for_epollout(void **state) {
    fixture_t f;
    net_loop_config_t cfg;
    net_loop_config_defaults(&cfg);
    fixture_open(&f, &cfg);
    int fd = client(f.port, 4096);
    assert_true(fd >= 0);
    const size_t total = 8u << 20;
    st.reply = total;
    assert_int_equal(write(fd, "go", 2), 2);
    RUN_UNTIL(&f.loop, st.bytes == 2);
    for (int i = 0; i < 50; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    net_conn_t *c = st.last;
    assert_true(net_conn_queued(c) > cfg.output_limit); /* the kernel refused most of it */
    /* Over the limit, input is not read. */
    assert_int_equal(write(fd, "x", 1), 1);
    for (int i = 0; i < 50; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_int_equal(st.bytes, 2);
    uint8_t *got = malloc(total);
    assert_non_null(got);
    read_all(&f.loop, fd, got, total);
    for (size_t i = 0; i < total; i++)
        if (got[i] != (uint8_t)(i % 251))
            fail_msg("byte %zu out of order", i);
    free(got);
    /* Drained: the waiting byte is read and answered. */
    RUN_UNTIL(&f.loop, st.bytes == 3);
    uint8_t ok[2];
    read_all(&f.loop, fd, ok, 2);
    assert_memory_equal(ok, "ok", 2);
    assert_int_equal(net_conn_queued(c), 0);
    close(fd);
    RUN_UNTIL(&f.loop, st.closed == 1);
    fixture_close(&f);
}

static void test_stalled_output_is_closed(void **state) {
    fixture_t f;
    net_loop_config_t cfg;
    net_loop_config_defaults(&cfg);
    cfg.send_timeout = 1000;
    fixture_open(&f, &cfg);
    int fd = client(f.port, 4096);
    assert_true(fd >= 0);
    st.reply = 8u << 20;
    assert_int_equal(write(fd, "go", 2), 2);
    RUN_UNTIL(&f.loop, st.bytes == 2);
    /* Never read: closed within send_timeout and a few sweeps. */
    RUN_UNTIL(&f.loop, st.closed == 1);
    net_loop_stats_t s;
    net_loop_stats(f.nl, &s);
    assert_int_equal(s.stalled_closed, 1);
    assert_int_equal(s.queued_bytes, 0);
    close(fd);
    fixture_close(&f);
}

static void test_out_of_descriptors_sheds_backlog(void **state) {
    fixture_t f;
    fixture_open(&f, NULL);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    /* Clients first (their descriptors exist before the limit bites), then fill the
     * table up to a lowered limit. */
    int clients[4];
    for (int i = 0; i < 4; i++)
        assert_true((clients[i] = client(f.port, 0)) >= 0);
    int fill[64], nfill = 0;
    int probe = dup(0);
    assert_true(probe >= 0);
    struct rlimit low = {.rlim_cur = (rlim_t)probe + 1, .rlim_max = old.rlim_max};
    close(probe);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    while (nfill < 64 && (fill[nfill] = dup(0)) >= 0)
        nfill++;
    assert_int_equal(errno, EMFILE);
    /* The loop wakes, cannot accept, sheds: every client is closed unserved. */
    for (int i = 0; i < 20; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_int_equal(st.opened, 0);
    for (int i = 0; i < 4; i++) {
        char b;
        ssize_t r;
        for (int spins = 0;
             (r = recv(clients[i], &b, 1, MSG_DONTWAIT)) < 0 && errno == EAGAIN && spins < 1000;
             spins++) {
            uv_run(&f.loop, UV_RUN_NOWAIT);
            usleep(1000);
        }
        assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
        close(clients[i]);
    }
    /* Descriptors back: served again. */
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    int fd = client(f.port, 0);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "hi", 2), 2);
    uint8_t ok[2];
    read_all(&f.loop, fd, ok, 2);
    assert_memory_equal(ok, "ok", 2);
    close(fd);
    fixture_close(&f);
}

static void test_released_is_not_watched(void **state) {
    fixture_t f;
    fixture_open(&f, NULL);
    int fd = client(f.port, 0);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "hi", 2), 2);
    uint8_t ok[2];
    read_all(&f.loop, fd, ok, 2);
    net_conn_t *c = st.last;
    int sfd = net_conn_release(c);
    assert_true(sfd >= 0);
    int copy = dup(sfd);
    assert_true(copy >= 0);
    /* The peer's bytes are no longer read here... */
    assert_int_equal(write(fd, "more", 4), 4);
    for (int i = 0; i < 50; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_int_equal(st.bytes, 2);
    net_conn_abort(c); /* its ops are the released ones now: on_close is not ours */
    RUN_UNTIL(&f.loop, net_loop_conn_count(f.nl) == 0);
    assert_int_equal(st.closed, 0);
    /* ...but wait in the socket for the process that holds it now. */
    char got[4];
    assert_int_equal(recv(copy, got, sizeof got, MSG_DONTWAIT), 4);
    assert_memory_equal(got, "more", 4);
    close(copy);
    close(fd);
    fixture_close(&f);
}

static void test_closed_leaves_the_set(void **state) {
    fixture_t f;
    fixture_open(&f, NULL);
    int pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    int other = dup(pair[0]); /* the copy "another process" still holds */
    assert_true(other >= 0);
    assert_int_equal(net_listener_adopt(f.l, pair[0], (uint8_t *)"hi", 2), 0);
    assert_int_equal(st.opened, 1);
    net_conn_abort(st.last);
    RUN_UNTIL(&f.loop, net_loop_conn_count(f.nl) == 0); /* freed */
    assert_int_equal(write(pair[1], "late", 4), 4);
    for (int i = 0; i < 50; i++)
        uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_int_equal(st.bytes, 2);
    assert_int_equal(st.closed, 1);
    close(other);
    close(pair[1]);
    fixture_close(&f);
}

/* Flushes c's queue (the loop's flush runs in each iteration) and reads n bytes of it
 * from peer. */
static void flush_into(fixture_t *f, net_conn_t *c, int peer, uint8_t *out, size_t n) {
    RUN_UNTIL(&f->loop, net_conn_queued(c) == 0);
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(peer, out + got, n - got, MSG_DONTWAIT);
        assert_true(r > 0);
        got += (size_t)r;
    }
}

/* A burst of small chunks (what a fan-out queues on one connection in one loop
 * iteration, one chunk per delivery) goes to the kernel in one system call, in order.
 * Once written the connection holds no queue array; its next queue starts with an array
 * of the size the burst needed (no growing chunk by chunk again), and that size shrinks
 * back one step per small queue. */
static void test_burst_in_one_call(void **state) {
    fixture_t f;
    fixture_open(&f, NULL);
    int pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    assert_int_equal(net_listener_adopt(f.l, pair[0], NULL, 0), 0);
    net_conn_t *c = st.last;
    static uint8_t pattern[1000], got[1000];
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (uint8_t)(i % 251);
    for (size_t i = 0; i < sizeof pattern; i++)
        assert_int_equal(net_conn_write(c, NULL, &pattern[i], 1), 0);
    assert_int_equal(c->tx_len, 1000);
    net_loop_stats_t before, after;
    net_loop_stats(f.nl, &before);
    flush_into(&f, c, pair[1], got, sizeof got);
    net_loop_stats(f.nl, &after);
    assert_int_equal(after.write_calls - before.write_calls, 1);
    assert_memory_equal(got, pattern, sizeof pattern);
    assert_null(c->tx);
    for (int k = NET_TX_CLASSES - 1; k >= 0; k--) {
        assert_int_equal(net_conn_write(c, NULL, pattern, 1), 0);
        assert_int_equal(c->tx_cap, (uint32_t)NET_TX_POOLED << k);
        flush_into(&f, c, pair[1], got, 1);
        assert_null(c->tx);
    }
    assert_int_equal(net_conn_write(c, NULL, pattern, 1), 0);
    assert_int_equal(c->tx_cap, NET_TX_POOLED);
    flush_into(&f, c, pair[1], got, 1);
    close(pair[1]);
    RUN_UNTIL(&f.loop, st.closed == 1);
    fixture_close(&f);
}

int main(void) {
    log_threshold = LOG_LEVEL_ERROR;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nodelay_inherited),
        cmocka_unit_test(test_refused_output_waits_for_epollout),
        cmocka_unit_test(test_stalled_output_is_closed),
        cmocka_unit_test(test_out_of_descriptors_sheds_backlog),
        cmocka_unit_test(test_released_is_not_watched),
        cmocka_unit_test(test_closed_leaves_the_set),
        cmocka_unit_test(test_burst_in_one_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
