/* tools/bench/pipeio.c — whole reads and writes on the pipes between the parent and its
 * workers (blocking; EINTR retried). Both sides use them: the parent reports a broken
 * pipe, a worker exits (its parent is gone). */
#include <errno.h>
#include <unistd.h>

#include "bench.h"

bool bench_read_all(int fd, void *dst, size_t len) {
    char *p = dst;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool bench_write_all(int fd, const void *src, size_t len) {
    const char *p = src;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}
