/* tests/unit/cluster/redis_harness.h — what the Redis unit tests share (redis_sub_test.c,
 * redis_shards_test.c), prefixed rh_.
 *
 * Real redis-server processes started from C: each on a free loopback port (or a given one,
 * to come back where it was) or on a Unix socket alone, no persistence; a password or
 * cluster mode when asked. Their files (cluster configurations, logs, Unix sockets) go in
 * one temporary directory per test. The teardown, which cmocka runs after a failed test
 * too, kills them and removes it; should the test program die first, the kernel kills them
 * (PR_SET_PDEATHSIG). Bounded waits on a uv loop: a timer ends every wait, and RH_WAIT_FOR
 * fails the test when it fires. Plain synchronous hiredis connections for the commands the
 * code under test does not send, replies copied out of callbacks (they are borrowed there),
 * and a fake Redis on the loop for what a real one does not send. The loop, the servers and
 * the fake live in one rh_env_t, made in a test's set-up (rh_env_init) and freed in its
 * teardown (rh_env_close): those two return 0 or -1; every other helper fails the test
 * itself (cmocka asserts).
 *
 * A .c file, not header-only like tests/unit/sio/adapter_env.h: CMakeLists.txt builds the
 * *_harness.c files under tests/unit into the static library unit_support, linked to every
 * unit test (a test that calls nothing of it pulls nothing in). */
#ifndef PARLEY_TESTS_UNIT_CLUSTER_REDIS_HARNESS_H
#define PARLEY_TESTS_UNIT_CLUSTER_REDIS_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <sys/types.h>
#include <uv.h>

#define RH_MAX_SERVERS 4
#define RH_MAX_FAKE_CONNS 4
#define RH_MAX_ELEMENTS 4
#define RH_STR_MAX 64
/* How long a redis-server may take to accept connections, in milliseconds. */
#define RH_SERVER_START_MS 3000

/* ---- redis-server ---- */

/* The servers a test started. */
typedef struct {
    pid_t pids[RH_MAX_SERVERS];
    int ports[RH_MAX_SERVERS]; /* 0 for a server on a Unix socket alone */
    int n;
    char dir[64]; /* the temporary directory, "" until rh_servers_file makes it */
} rh_servers_t;

typedef struct {
    int port;              /* 0: a free one */
    const char *unix_path; /* when set: this Unix socket alone, no TCP port */
    const char *password;  /* required (--requirepass) when set */
    bool cluster;          /* a cluster node (--cluster-enabled), its files in the directory */
} rh_server_opts_t;

/* A loopback TCP port nobody listens on (bound, read, closed: free until someone takes it). */
int rh_free_port(void);

void rh_sleep_ms(long ms);

/* Runs argv (NULL-terminated) in a child that dies with this process, its stdout and stderr
 * to the file `out` (truncated), or to /dev/null when NULL. The caller reaps it. */
pid_t rh_spawn(const char **argv, const char *out);

/* Starts redis-server on 127.0.0.1 as `opts` says (NULL: a free port, no password) and
 * returns its port (0 on a Unix socket alone) once it accepts connections. */
int rh_server_start(rh_servers_t *s, const rh_server_opts_t *opts);

/* SIGKILLs the server on `port` and reaps it (a restart may take the port again). */
void rh_server_kill(rh_servers_t *s, int port);

/* Writes "<the directory>/<name>" to out (size bytes), making the directory on first use,
 * and returns out. */
const char *rh_servers_file(rh_servers_t *s, const char *name, char *out, size_t size);

/* ---- synchronous connections ---- */

/* A plain synchronous connection to 127.0.0.1:port, or to the Unix socket `path` when set,
 * with a 2 s timeout on connecting and on every command. The caller frees it (redisFree). */
redisContext *rh_connect(int port, const char *path);

/* One command on a connection of its own (rh_connect); the caller frees the reply. */
redisReply *rh_command(int port, const char *path, const char *fmt, ...);

/* ---- replies copied out of callbacks ---- */

typedef struct {
    int type;
    long long integer;
    size_t len;
    char str[RH_STR_MAX]; /* the first RH_STR_MAX - 1 bytes of a string, NUL-terminated */
} rh_value_t;

typedef struct {
    bool got;
    rh_value_t top;
    size_t elements;
    rh_value_t el[RH_MAX_ELEMENTS]; /* the first RH_MAX_ELEMENTS of an array */
} rh_reply_t;

void rh_reply_copy(rh_reply_t *out, const redisReply *r);

/* A push of three: an array whose first two elements are `kind` and `ch`. */
void rh_assert_push(const rh_reply_t *p, const char *kind, const char *ch);

/* ---- a fake Redis on the loop ---- */

typedef struct rh_fake rh_fake_t;

typedef struct {
    uv_tcp_t tcp;
    redisReader *reader; /* what the client sends */
    rh_fake_t *fake;
} rh_fake_conn_t;

/* A command a client sent (borrowed: freed when this returns); answer with rh_fake_reply. */
typedef void (*rh_fake_command_cb)(rh_fake_conn_t *conn, const redisReply *cmd);

struct rh_fake {
    uv_tcp_t listener;
    bool open;
    int port;
    const char *greeting;          /* written to each client once accepted, when set */
    rh_fake_command_cb on_command; /* NULL: commands are read and dropped */
    void *data;                    /* the test's */
    rh_fake_conn_t conns[RH_MAX_FAKE_CONNS];
    int nconns;
    int err; /* a failure inside its callbacks (negative), for the test to assert 0 */
};

/* Listens on a free loopback port (f->port). `greeting` is borrowed for as long as the
 * fake runs. */
void rh_fake_start(rh_fake_t *f, uv_loop_t *loop, const char *greeting,
                   rh_fake_command_cb on_command, void *data);

/* Writes out (a C string of RESP) to the client at once, or records the failure in err. */
void rh_fake_reply(rh_fake_conn_t *conn, const char *out);

/* ---- a test's environment: the loop, every wait on it bounded ---- */

typedef struct {
    uv_loop_t loop;
    uv_timer_t deadline; /* ends the wait under way */
    bool expired;        /* the wait under way has run out */
    rh_servers_t srv;
    rh_fake_t fake; /* started by the test when it wants one */
} rh_env_t;

/* For the set-up, on zeroed memory (calloc): the loop and its timer; 0 or -1. */
int rh_env_init(rh_env_t *e);

/* For the teardown, once the code under test is closed: kills the servers and removes
 * their directory, closes the fake and the timer, runs the loop until nothing is left and
 * closes it; 0, or -1 when any of that failed or something was still active. */
int rh_env_close(rh_env_t *e);

/* A wait of ms from now; rh_wait_end stops its timer. Between them the caller runs the loop
 * until its condition holds or e->expired. */
void rh_wait_begin(rh_env_t *e, uint64_t ms);
void rh_wait_end(rh_env_t *e);

/* Runs the loop until cond holds or ms have passed, whichever comes first. */
#define RH_RUN_UNTIL(e, cond, ms)                                                                  \
    do {                                                                                           \
        rh_wait_begin((e), (ms));                                                                  \
        while (!(cond) && !(e)->expired)                                                           \
            uv_run(&(e)->loop, UV_RUN_ONCE);                                                       \
        rh_wait_end(e);                                                                            \
    } while (0)

/* Runs the loop until cond holds; fails the test after ms. */
#define RH_WAIT_FOR(e, cond, ms)                                                                   \
    do {                                                                                           \
        RH_RUN_UNTIL((e), (cond), (ms));                                                           \
        if (!(cond))                                                                               \
            fail_msg("timed out after %d ms waiting for %s", (int)(ms), #cond);                    \
    } while (0)

/* Runs the loop for ms, whatever happens. */
void rh_run_for(rh_env_t *e, uint64_t ms);

#endif
