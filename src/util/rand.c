/* util/rand.c — CSPRNG-backed ids from a per-thread pool (see rand.h).
 *
 * Why not OpenSSL's RAND_bytes per id, as before: each call took its DRBG's lock and
 * asked getpid() twice (fork detection), two system calls per handshake. getrandom(2)
 * reads the kernel's ChaCha20 generator, the source OpenSSL's own generator seeds from;
 * drawing it 4 KiB at a time makes the per-id cost a memcpy. A thread-local pool needs no
 * lock (ids are drawn on the loop thread, hash seeds and store ids on others too); the
 * fork handler empties the forking thread's pool in the child, the only thread a child
 * has. Parley's own workers are exec'd (cluster/supervisor.c), which starts them empty
 * anyway; the handler is for programs that embed the library and fork. */
#include "util/rand.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#include "util/base64.h"

static _Thread_local struct {
    uint8_t buf[RAND_POOL_SIZE];
    size_t left; /* bytes not handed out yet: the last `left` of buf */
} pool;

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static int fork_rc; /* pthread_atfork's result: without the handler the pool is unsafe */

static void pool_forget(void) {
    explicit_bzero(&pool, sizeof pool);
}

static void fork_register(void) {
    fork_rc = pthread_atfork(NULL, NULL, pool_forget);
}

/* len bytes straight from the kernel. Requests above 256 bytes may return short when a
 * signal arrives, hence the loop. */
static int draw(uint8_t *buf, size_t len) {
    while (len > 0) {
        ssize_t n = getrandom(buf, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int rand_bytes(void *buf, size_t len) {
    if (len > RAND_POOLED_MAX)
        return draw(buf, len);
    if (pthread_once(&fork_once, fork_register) || fork_rc)
        return -1;
    if (pool.left < len) { /* the few bytes left are overwritten, never used */
        if (draw(pool.buf, sizeof pool.buf))
            return -1;
        pool.left = sizeof pool.buf;
    }
    uint8_t *p = pool.buf + sizeof pool.buf - pool.left;
    memcpy(buf, p, len);
    explicit_bzero(p, len);
    pool.left -= len;
    return 0;
}

int rand_id(char out[RAND_ID_SIZE]) {
    uint8_t raw[16];
    if (rand_bytes(raw, sizeof raw))
        return -1;
    base64url_encode(raw, sizeof raw, out);
    return 0;
}
