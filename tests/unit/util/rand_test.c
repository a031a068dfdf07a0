/* tests/unit/util/rand_test.c — random bytes and ids from the per-thread pool
 * (src/util/rand.c).
 *
 * Ids: 22 characters of the URL-safe alphabet and a NUL, all distinct over many draws
 * (several pools' worth). The pool: draws of every size from 1 to RAND_POOLED_MAX
 * across several refills never hand out the same bytes twice (no 16-byte window seen
 * twice), never hand out the zeros left where bytes were erased, and fill every byte
 * asked for; draws above RAND_POOLED_MAX (straight from the kernel) too. A forked child
 * draws different ids from its parent (without the fork handler both would cut the
 * same slice of one pool); threads draw different ids from each other. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/rand.h"

#define IDS 20000 /* about 80 refills of the pool */

static int cmp_id(const void *a, const void *b) {
    return memcmp(a, b, RAND_ID_SIZE);
}

static bool id_alphabet(const char *id) {
    for (size_t i = 0; i < RAND_ID_SIZE - 1; i++) {
        char c = id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return id[RAND_ID_SIZE - 1] == '\0';
}

static void test_ids_distinct_and_alphabet(void **state) {
    char(*ids)[RAND_ID_SIZE] = malloc(IDS * sizeof *ids);
    assert_non_null(ids);
    for (size_t i = 0; i < IDS; i++) {
        memset(ids[i], 'X', RAND_ID_SIZE);
        assert_int_equal(rand_id(ids[i]), 0);
        assert_int_equal(strlen(ids[i]), RAND_ID_SIZE - 1);
        assert_true(id_alphabet(ids[i]));
    }
    qsort(ids, IDS, sizeof *ids, cmp_id);
    for (size_t i = 1; i < IDS; i++)
        assert_true(memcmp(ids[i - 1], ids[i], RAND_ID_SIZE) != 0);
    /* 128 bits each: the first character takes all 64 values within 20,000 draws (a
     * fixed or biased id would not). */
    bool seen[128] = {false};
    size_t kinds = 0;
    for (size_t i = 0; i < IDS; i++)
        if (!seen[(unsigned char)ids[i][0]]) {
            seen[(unsigned char)ids[i][0]] = true;
            kinds++;
        }
    assert_int_equal(kinds, 64);
    free(ids);
}

static int cmp_u64x2(const void *a, const void *b) {
    return memcmp(a, b, 16);
}

/* Draws of sizes 1, 2, ... RAND_POOLED_MAX, 1, 2, ... over several pools: every draw
 * ending exactly at, or straddling, a refill point. The bytes, cut into 16-byte windows,
 * are all distinct (a pool handed out twice, or a slice re-read after a refill, would
 * repeat a window), and no draw is all zeros (bytes erased but handed out). */
static void test_pool_across_refills(void **state) {
    size_t total = 6 * RAND_POOL_SIZE, got = 0, size = 1;
    uint8_t *all = malloc(total + RAND_POOLED_MAX);
    assert_non_null(all);
    while (got < total) {
        uint8_t *p = all + got;
        memset(p, 0, size);
        assert_int_equal(rand_bytes(p, size), 0);
        if (size >= 8) {
            size_t zeros = 0;
            for (size_t i = 0; i < size; i++)
                zeros += p[i] == 0;
            assert_true(zeros < size);
        }
        got += size;
        size = size % RAND_POOLED_MAX + 1;
    }
    size_t windows = got / 16;
    qsort(all, windows, 16, cmp_u64x2);
    for (size_t i = 1; i < windows; i++)
        assert_true(memcmp(all + 16 * (i - 1), all + 16 * i, 16) != 0);
    free(all);
}

/* Exactly a pool's worth in ids: the next id comes from a fresh pool. */
static void test_pool_boundary_ids(void **state) {
    char prev[RAND_ID_SIZE], id[RAND_ID_SIZE];
    assert_int_equal(rand_id(prev), 0);
    for (size_t i = 0; i < 3 * RAND_POOL_SIZE / 16 + 3; i++) {
        assert_int_equal(rand_id(id), 0);
        assert_true(id_alphabet(id));
        assert_string_not_equal(id, prev);
        memcpy(prev, id, sizeof id);
    }
}

static void test_large_and_empty(void **state) {
    size_t sizes[] = {RAND_POOLED_MAX + 1, RAND_POOL_SIZE, 3 * RAND_POOL_SIZE + 7, 1 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint8_t *a = calloc(1, sizes[k]), *b = calloc(1, sizes[k]);
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(rand_bytes(a, sizes[k]), 0);
        assert_int_equal(rand_bytes(b, sizes[k]), 0);
        assert_true(memcmp(a, b, sizes[k]) != 0);
        /* The last 16 bytes were written too (not left zero). */
        static const uint8_t zero[16];
        assert_true(memcmp(a + sizes[k] - 16, zero, 16) != 0);
        free(a);
        free(b);
    }
    uint8_t one = 0x5a;
    assert_int_equal(rand_bytes(&one, 0), 0);
    assert_int_equal(one, 0x5a);
}

/* After fork the child's pool is empty: its ids are not the parent's next ones. */
static void test_fork_child_differs(void **state) {
    char warm[RAND_ID_SIZE];
    assert_int_equal(rand_id(warm), 0); /* the pool holds bytes now */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char ids[4][RAND_ID_SIZE];
        int ok = 1;
        for (size_t i = 0; i < 4; i++)
            ok &= rand_id(ids[i]) == 0;
        ok &= write(fds[1], ids, sizeof ids) == (ssize_t)sizeof ids;
        _exit(ok ? 0 : 1);
    }
    char mine[4][RAND_ID_SIZE], theirs[4][RAND_ID_SIZE];
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(rand_id(mine[i]), 0);
    close(fds[1]);
    size_t got = 0;
    while (got < sizeof theirs) {
        ssize_t n = read(fds[0], (char *)theirs + got, sizeof theirs - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 4; j++)
            assert_string_not_equal(mine[i], theirs[j]);
}

#define THREADS 4
#define THREAD_IDS 2000

static void *draw_ids(void *arg) {
    char(*ids)[RAND_ID_SIZE] = arg;
    for (size_t i = 0; i < THREAD_IDS; i++)
        if (rand_id(ids[i]))
            return arg;
    return NULL;
}

static void test_threads_distinct(void **state) {
    char(*ids)[RAND_ID_SIZE] = malloc(THREADS * THREAD_IDS * sizeof *ids);
    assert_non_null(ids);
    pthread_t t[THREADS];
    for (size_t i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, draw_ids, ids + i * THREAD_IDS), 0);
    for (size_t i = 0; i < THREADS; i++) {
        void *failed = (void *)1;
        assert_int_equal(pthread_join(t[i], &failed), 0);
        assert_null(failed);
    }
    qsort(ids, THREADS * THREAD_IDS, sizeof *ids, cmp_id);
    for (size_t i = 1; i < THREADS * THREAD_IDS; i++) {
        assert_true(id_alphabet(ids[i]));
        assert_true(memcmp(ids[i - 1], ids[i], RAND_ID_SIZE) != 0);
    }
    free(ids);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_distinct_and_alphabet),
        cmocka_unit_test(test_pool_across_refills),
        cmocka_unit_test(test_pool_boundary_ids),
        cmocka_unit_test(test_large_and_empty),
        cmocka_unit_test(test_fork_child_differs),
        cmocka_unit_test(test_threads_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
