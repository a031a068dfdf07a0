/* tests/unit/cluster/redis_harness.c — real redis-servers, bounded loop waits, synchronous
 * connections and a fake Redis for the Redis unit tests (redis_harness.h says what each
 * gives and who frees what).
 *
 * Servers are waited for by polling connect() every 10 ms rather than by reading their log:
 * a server that exits instead is reaped at once and reported with its status. The fake's
 * connections share one static read buffer (everything runs on the test's one thread, and
 * a read is parsed before the next). */
#include "redis_harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- redis-server ---- */

int rh_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    assert_int_equal(close(fd), 0);
    return ntohs(sa.sin_port);
}

/* Whether a connection to 127.0.0.1:port, or to the Unix socket path when set, succeeds. */
static bool accepts(int port, const char *path) {
    int fd = socket(path ? AF_UNIX : AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int rc;
    if (path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    } else {
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    }
    assert_int_equal(close(fd), 0);
    return rc == 0;
}

void rh_sleep_ms(long ms) {
    nanosleep(&(struct timespec){.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000}, NULL);
}

pid_t rh_spawn(const char **argv, const char *out) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) || fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        execvp(argv[0], (char **)argv);
        _exit(127);
    }
    return pid;
}

int rh_server_start(rh_servers_t *s, const rh_server_opts_t *opts) {
    static const rh_server_opts_t plain = {0};
    const rh_server_opts_t *o = opts ? opts : &plain;
    assert_true(s->n < RH_MAX_SERVERS);
    int port = o->unix_path ? 0 : o->port ? o->port : rh_free_port();
    char port_s[16];
    /* Out here, not in the `if (o->cluster)`: argv points at them until rh_spawn. */
    /* cppcheck-suppress variableScope */
    char bus_s[16], conf[128];
    snprintf(port_s, sizeof port_s, "%d", port);
    /* At most 9 + 2 (Unix socket) + 2 (password) + 8 (cluster) arguments, then NULL. */
    const char *argv[24] = {"redis-server", "--port", port_s,         "--bind", "127.0.0.1",
                            "--save",       "",       "--appendonly", "no"};
    int argc = 9;
    if (o->unix_path) {
        argv[argc++] = "--unixsocket";
        argv[argc++] = o->unix_path;
    }
    if (o->password) {
        argv[argc++] = "--requirepass";
        argv[argc++] = o->password;
    }
    if (o->cluster) {
        /* The bus port would be port + 10000, past 65535 for a high ephemeral port. */
        snprintf(bus_s, sizeof bus_s, "%d", rh_free_port());
        char conf_name[32];
        snprintf(conf_name, sizeof conf_name, "nodes-%d.conf", port);
        rh_servers_file(s, conf_name, conf, sizeof conf);
        const char *more[] = {"--cluster-enabled",     "yes", "--cluster-port", bus_s,
                              "--cluster-config-file", conf,  "--dir",          s->dir};
        memcpy(&argv[argc], more, sizeof more);
        argc += (int)(sizeof more / sizeof more[0]);
    }
    assert_true(argc < (int)(sizeof argv / sizeof argv[0])); /* argv stays NULL-terminated */
    pid_t pid = rh_spawn(argv, NULL);
    s->pids[s->n] = pid;
    s->ports[s->n++] = port;
    for (int i = 0; i < RH_SERVER_START_MS / 10; i++) {
        if (accepts(port, o->unix_path))
            return port;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s->n--; /* reaped: not for the teardown to kill */
            fail_msg("redis-server exited (status %d)", status);
        }
        rh_sleep_ms(10);
    }
    fail_msg("redis-server did not accept connections within %d ms", RH_SERVER_START_MS);
    return -1;
}

void rh_server_kill(rh_servers_t *s, int port) {
    for (int i = 0; i < s->n; i++) {
        if (s->ports[i] != port)
            continue;
        assert_int_equal(kill(s->pids[i], SIGKILL), 0);
        assert_int_equal(waitpid(s->pids[i], NULL, 0), s->pids[i]);
        s->n--;
        s->pids[i] = s->pids[s->n];
        s->ports[i] = s->ports[s->n];
        return;
    }
    fail_msg("no server on %d", port);
}

const char *rh_servers_file(rh_servers_t *s, const char *name, char *out, size_t size) {
    if (!s->dir[0]) {
        snprintf(s->dir, sizeof s->dir, "/tmp/parley-redis-XXXXXX");
        if (!mkdtemp(s->dir)) {
            s->dir[0] = '\0'; /* nothing for the teardown to remove */
            fail_msg("mkdtemp: %s", strerror(errno));
        }
    }
    int n = snprintf(out, size, "%s/%s", s->dir, name);
    assert_true(n > 0 && (size_t)n < size);
    return out;
}

/* The directory and the files in it (the servers make no subdirectories). */
static int remove_dir(const char *path) {
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int rc = 0;
    const struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char file[512];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        rc |= unlink(file);
    }
    closedir(d);
    return rc | rmdir(path);
}

/* Kills and reaps every server, removes the directory; 0 or -1. */
static int servers_stop(rh_servers_t *s) {
    int rc = 0;
    for (int i = 0; i < s->n; i++) {
        if (kill(s->pids[i], SIGKILL) || waitpid(s->pids[i], NULL, 0) != s->pids[i])
            rc = -1;
    }
    s->n = 0;
    if (s->dir[0] && remove_dir(s->dir))
        rc = -1;
    s->dir[0] = '\0';
    return rc;
}

/* ---- synchronous connections ---- */

redisContext *rh_connect(int port, const char *path) {
    const struct timeval tv = {.tv_sec = 2};
    redisContext *rc = path ? redisConnectUnixWithTimeout(path, tv)
                            : redisConnectWithTimeout("127.0.0.1", port, tv);
    assert_non_null(rc);
    assert_int_equal(rc->err, 0);
    assert_int_equal(redisSetTimeout(rc, tv), REDIS_OK);
    return rc;
}

redisReply *rh_command(int port, const char *path, const char *fmt, ...) {
    redisContext *rc = rh_connect(port, path);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    redisFree(rc);
    return r;
}

/* ---- replies copied out of callbacks ---- */

static void copy_value(rh_value_t *v, const redisReply *r) {
    v->type = r->type;
    v->integer = r->integer;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
        r->type == REDIS_REPLY_ERROR) {
        size_t n = r->len < RH_STR_MAX ? r->len : RH_STR_MAX - 1;
        v->len = r->len;
        memcpy(v->str, r->str, n);
        v->str[n] = '\0';
    }
}

void rh_reply_copy(rh_reply_t *out, const redisReply *r) {
    out->got = true;
    copy_value(&out->top, r);
    if (r->type == REDIS_REPLY_ARRAY) {
        out->elements = r->elements;
        for (size_t i = 0; i < r->elements && i < RH_MAX_ELEMENTS; i++)
            copy_value(&out->el[i], r->element[i]);
    }
}

void rh_assert_push(const rh_reply_t *p, const char *kind, const char *ch) {
    assert_int_equal(p->top.type, REDIS_REPLY_ARRAY);
    assert_int_equal(p->elements, 3);
    assert_int_equal(p->el[0].type, REDIS_REPLY_STRING);
    assert_string_equal(p->el[0].str, kind);
    assert_string_equal(p->el[1].str, ch);
}

/* ---- a fake Redis on the loop ---- */

static void fake_conn_closed(uv_handle_t *h) {
    rh_fake_conn_t *conn = h->data;
    if (conn->reader)
        redisReaderFree(conn->reader);
    conn->reader = NULL;
}

static void fake_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    static char mem[4096];
    *buf = uv_buf_init(mem, sizeof mem);
}

void rh_fake_reply(rh_fake_conn_t *conn, const char *out) {
    uv_buf_t b = uv_buf_init((char *)out, (unsigned)strlen(out));
    int rc = uv_try_write((uv_stream_t *)&conn->tcp, &b, 1);
    if (rc != (int)b.len)
        conn->fake->err = rc < 0 ? rc : -EAGAIN;
}

static void fake_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    rh_fake_conn_t *conn = st->data;
    rh_fake_t *f = conn->fake;
    if (nread < 0) {
        if (!uv_is_closing((uv_handle_t *)st))
            uv_close((uv_handle_t *)st, fake_conn_closed);
        return;
    }
    if (redisReaderFeed(conn->reader, buf->base, (size_t)nread) != REDIS_OK) {
        f->err = -EPROTO;
        return;
    }
    void *r;
    while (redisReaderGetReply(conn->reader, &r) == REDIS_OK && r) {
        if (f->on_command)
            f->on_command(conn, r);
        freeReplyObject(r);
    }
}

static void fake_on_conn(uv_stream_t *l, int status) {
    rh_fake_t *f = l->data;
    if (status < 0 || f->nconns == RH_MAX_FAKE_CONNS) {
        f->err = status < 0 ? status : -ENOSPC;
        return;
    }
    rh_fake_conn_t *conn = &f->conns[f->nconns];
    int rc = uv_tcp_init(l->loop, &conn->tcp);
    if (rc) {
        f->err = rc;
        return;
    }
    f->nconns++;
    conn->fake = f;
    conn->tcp.data = conn;
    conn->reader = redisReaderCreate();
    if (!conn->reader || (rc = uv_accept(l, (uv_stream_t *)&conn->tcp)) ||
        (rc = uv_read_start((uv_stream_t *)&conn->tcp, fake_alloc, fake_read)))
        f->err = rc ? rc : -ENOMEM;
    else if (f->greeting)
        rh_fake_reply(conn, f->greeting);
}

void rh_fake_start(rh_fake_t *f, uv_loop_t *loop, const char *greeting,
                   rh_fake_command_cb on_command, void *data) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int len = sizeof sa;
    f->greeting = greeting;
    f->on_command = on_command;
    f->data = data;
    assert_int_equal(uv_tcp_init(loop, &f->listener), 0);
    f->open = true;
    f->listener.data = f;
    assert_int_equal(uv_tcp_bind(&f->listener, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 8, fake_on_conn), 0);
    assert_int_equal(uv_tcp_getsockname(&f->listener, (struct sockaddr *)&sa, &len), 0);
    f->port = ntohs(sa.sin_port);
}

/* Closes the listener and every connection (the loop finishes it). */
static void fake_close(rh_fake_t *f) {
    if (f->open)
        uv_close((uv_handle_t *)&f->listener, NULL);
    f->open = false;
    for (int i = 0; i < f->nconns; i++) {
        if (!uv_is_closing((uv_handle_t *)&f->conns[i].tcp))
            uv_close((uv_handle_t *)&f->conns[i].tcp, fake_conn_closed);
    }
}

/* ---- the environment ---- */

static void on_deadline(uv_timer_t *t) {
    rh_env_t *e = t->data;
    e->expired = true;
}

int rh_env_init(rh_env_t *e) {
    if (uv_loop_init(&e->loop))
        return -1;
    if (uv_timer_init(&e->loop, &e->deadline)) {
        uv_loop_close(&e->loop);
        return -1;
    }
    e->deadline.data = e;
    return 0;
}

int rh_env_close(rh_env_t *e) {
    int rc = servers_stop(&e->srv);
    fake_close(&e->fake);
    uv_close((uv_handle_t *)&e->deadline, NULL);
    if (uv_run(&e->loop, UV_RUN_DEFAULT) || uv_loop_close(&e->loop))
        rc = -1;
    return rc;
}

void rh_wait_begin(rh_env_t *e, uint64_t ms) {
    e->expired = false;
    /* The loop's clock stands still while the test works without it (starting servers,
     * synchronous commands, a cluster being made): from that stale "now" the deadline
     * would come early. */
    uv_update_time(&e->loop);
    assert_int_equal(uv_timer_start(&e->deadline, on_deadline, ms, 0), 0);
}

void rh_wait_end(rh_env_t *e) {
    assert_int_equal(uv_timer_stop(&e->deadline), 0);
}

void rh_run_for(rh_env_t *e, uint64_t ms) {
    RH_RUN_UNTIL(e, false, ms);
}
