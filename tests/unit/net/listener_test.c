/* tests/unit/net/listener_test.c — net_listener_stop, net_listener_handover and
 * net_loop_abort_conns (src/net/conn.c), the network side of a drain and a restart.
 *
 * Connections the kernel completed for a listener but the loop has not accepted yet are
 * made here deterministically: the clients connect (loopback completes the handshake into
 * the listen queue) before the loop ever runs. net_listener_stop must take every one of
 * them — each is served (on_open, then its bytes), none is reset — and the port must be
 * closed afterwards. With SO_REUSEPORT a second listener of the port keeps taking new
 * connections after the first stopped; with net_listener_handover it gets none before.
 * net_loop_abort_conns closes every connection at once, output queued or not. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "net/listener.h"
#include "util/log.h"

#define CLIENTS 8

typedef struct {
    int opened, closed;
    size_t bytes;
    int by[2]; /* opened per listener (on_open's arg: 0 or 1) */
} counts_t;

static counts_t counts;

static ssize_t on_data(net_conn_t *c, uint8_t *data, size_t len) {
    counts.bytes += len;
    /* Answered, so that the client can tell a served connection from a reset one. */
    if (net_conn_write_copy(c, "ok", 2))
        return -1;
    return (ssize_t)len;
}

static void on_close(net_conn_t *c) {
    counts.closed++;
}

static const net_conn_ops_t ops = {on_data, NULL, on_close};

static void on_open(net_conn_t *c, void *arg) {
    counts.opened++;
    if (arg)
        counts.by[*(int *)arg]++;
}

/* A blocking client connected to 127.0.0.1:port that sent "hi"; -1 when refused. */
static int client(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 5};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    assert_int_equal(write(fd, "hi", 2), 2);
    return fd;
}

/* Runs the loop until every client got "ok" (or the read failed, which fails the test). */
static void expect_served(uv_loop_t *loop, const int *fds, int n) {
    for (int i = 0; i < n; i++) {
        char buf[2];
        ssize_t got = 0;
        for (int spins = 0; got == 0 && spins < 1000; spins++) {
            uv_run(loop, UV_RUN_NOWAIT);
            got = recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                got = 0;
            else if (got <= 0)
                fail_msg("client %d: %s", i, got < 0 ? strerror(errno) : "closed unanswered");
            if (got == 0)
                usleep(1000);
        }
        assert_int_equal(got, 2);
        assert_memory_equal(buf, "ok", 2);
    }
}

static void test_stop_takes_queued(void **state) {
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    net_loop_t *nl = net_loop_new(&loop);
    assert_non_null(nl);
    counts = (counts_t){0};
    net_listener_t *l, *other;
    assert_int_equal(net_listener_open(nl, "127.0.0.1", 0, true, 0, &ops, on_open, NULL, &l), 0);
    int port = net_listener_port(l);
    assert_true(port > 0);
    int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        assert_true((fds[i] = client(port)) >= 0);
    net_listener_stop(l); /* before the loop ever accepted */
    assert_int_equal(counts.opened, CLIENTS);
    expect_served(&loop, fds, CLIENTS);
    assert_int_equal(counts.bytes, 2 * CLIENTS);
    /* The port is closed now: a new client is refused. */
    for (int spins = 0; spins < 10; spins++)
        uv_run(&loop, UV_RUN_NOWAIT);
    int late = client(port);
    assert_int_equal(late, -1);
    assert_int_equal(net_listener_port(l), -1);
    /* Stopped, it still adopts (a worker's hand-off): the connection is served. */
    int pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    int before_opened = counts.opened;
    /* One end of a socket pair stands in for a handed-over TCP connection. */
    assert_int_equal(net_listener_adopt(l, pair[0], (uint8_t *)"hi", 2), 0);
    assert_int_equal(counts.opened, before_opened + 1);
    expect_served(&loop, &pair[1], 1);
    net_listener_close(l);

    /* A second listener sharing a port goes on taking connections once the first
     * stopped. */
    assert_int_equal(net_listener_open(nl, "127.0.0.1", 0, true, 0, &ops, on_open, NULL, &l), 0);
    port = net_listener_port(l);
    assert_int_equal(net_listener_open(nl, "127.0.0.1", port, true, 0, &ops, on_open, NULL, &other),
                     0);
    net_listener_stop(l);
    net_listener_close(l);
    int next = client(port);
    assert_true(next >= 0);
    expect_served(&loop, &next, 1);

    /* Abort closes every connection at once. */
    int before = counts.closed;
    net_loop_abort_conns(nl);
    assert_int_equal(counts.closed - before, CLIENTS + 2);
    net_listener_close(other);
    net_loop_close(nl);
    for (int i = 0; i < CLIENTS; i++)
        close(fds[i]);
    close(next);
    close(pair[1]);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    net_loop_free(nl);
}

/* net_listener_handover: the first listener of a port takes every new connection while it
 * listens; the second gets them once it stopped. */
static void test_handover(void **state) {
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    net_loop_t *nl = net_loop_new(&loop);
    assert_non_null(nl);
    counts = (counts_t){0};
    static int ids[2] = {0, 1};
    net_listener_t *first, *second;
    assert_int_equal(net_listener_open(nl, "127.0.0.1", 0, true, 0, &ops, on_open, &ids[0], &first),
                     0);
    assert_int_equal(net_listener_handover(first), 0);
    int port = net_listener_port(first);
    assert_int_equal(
        net_listener_open(nl, "127.0.0.1", port, true, 0, &ops, on_open, &ids[1], &second), 0);
    assert_int_equal(net_listener_handover(second), 0);
    int fds[2 * CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        assert_true((fds[i] = client(port)) >= 0);
    expect_served(&loop, fds, CLIENTS);
    assert_int_equal(counts.by[0], CLIENTS); /* none to the second while the first listens */
    assert_int_equal(counts.by[1], 0);
    net_listener_stop(first);
    net_listener_close(first);
    for (int i = CLIENTS; i < 2 * CLIENTS; i++)
        assert_true((fds[i] = client(port)) >= 0);
    expect_served(&loop, fds + CLIENTS, CLIENTS);
    assert_int_equal(counts.by[0], CLIENTS);
    assert_int_equal(counts.by[1], CLIENTS);
    net_loop_abort_conns(nl);
    net_listener_close(second);
    net_loop_close(nl);
    for (int i = 0; i < 2 * CLIENTS; i++)
        close(fds[i]);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    net_loop_free(nl);
}

int main(void) {
    log_threshold = LOG_LEVEL_WARN;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_takes_queued),
        cmocka_unit_test(test_handover),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
