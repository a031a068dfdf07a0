/* tests/unit/chat/store_crash_test.c — "acknowledged = durable" across a crash.
 *
 * A child process appends to the SQLite store at full speed (2,000 in flight over 8
 * rooms) and writes every acknowledged (room, seq) to a pipe from the ack callback; the
 * parent SIGKILLs it at a random point in the stream, collects what was acknowledged,
 * and reads the database directly: every acknowledged message is there with the text the
 * child gave it, each room's seqs run from 1 without a gap, and no message (text or id)
 * is stored twice. Then the next child continues on the same directory, and so on for a
 * few rounds, so seq counters reloaded after a crash are checked too.
 *
 * SIGKILL leaves the page cache alone: this checks consistency after a process crash
 * (commit order, no seq reuse, no partial batches), not fsync on power loss. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "chat/store.h"
#include "util/log.h"

#define ROOMS 8
#define IN_FLIGHT 2000
#define ROUNDS 4

typedef struct {
    uint32_t room;
    uint32_t pad;
    uint64_t seq;
} ack_rec_t;

/* ---- the child ---- */

static struct {
    uv_loop_t loop;
    chat_store_t *st;
    int fd;
    uint64_t sent;
} child;

static void child_append(void);

static const uint32_t room_numbers[ROOMS] = {0, 1, 2, 3, 4, 5, 6, 7};

static void child_on_ack(int err, chat_msg_t *msg, void *arg) {
    if (err)
        _exit(3);
    ack_rec_t r = {.room = *(const uint32_t *)arg, .seq = msg->seq};
    if (write(child.fd, &r, sizeof r) != (ssize_t)sizeof r)
        _exit(4);
    child_append();
}

static void child_append(void) {
    uint32_t room = (uint32_t)(child.sent++ % ROOMS);
    char name[16], text[96];
    snprintf(name, sizeof name, "room-%u", room);
    /* The seq this message will get, so the parent can check it is stored under it. */
    snprintf(text, sizeof text, "pid %d room %u seq %llu", (int)getpid(), room,
             (unsigned long long)chat_store_last_seq(child.st, name) + 1);
    if (chat_store_append(child.st, name, "u", "user", text, strlen(text), child_on_ack,
                          (void *)&room_numbers[room], NULL))
        _exit(5);
}

static void child_main(const char *dir, int fd) {
    log_threshold = LOG_LEVEL_ERROR;
    child.fd = fd;
    if (uv_loop_init(&child.loop))
        _exit(1);
    if (chat_store_open_sqlite(&child.loop, dir, NULL, &child.st))
        _exit(2);
    for (int i = 0; i < IN_FLIGHT; i++)
        child_append();
    uv_run(&child.loop, UV_RUN_DEFAULT); /* until killed */
    _exit(6);
}

/* ---- the parent ---- */

static size_t read_acks(int fd, uint64_t acked[ROOMS], size_t kill_after, pid_t pid) {
    size_t n = 0, have = 0;
    char buf[sizeof(ack_rec_t) * 512];
    bool killed = false;
    for (;;) {
        ssize_t got = read(fd, buf + have, sizeof buf - have);
        if (got < 0 && errno == EINTR)
            continue;
        assert_true(got >= 0);
        if (got == 0)
            break;
        have += (size_t)got;
        size_t whole = have / sizeof(ack_rec_t);
        for (size_t i = 0; i < whole; i++) {
            ack_rec_t r;
            memcpy(&r, buf + i * sizeof r, sizeof r);
            assert_true(r.room < ROOMS);
            /* Acks arrive in seq order per room. */
            assert_true(r.seq > acked[r.room]);
            acked[r.room] = r.seq;
            n++;
        }
        memmove(buf, buf + whole * sizeof(ack_rec_t), have - whole * sizeof(ack_rec_t));
        have -= whole * sizeof(ack_rec_t);
        if (!killed && n >= kill_after) {
            kill(pid, SIGKILL);
            killed = true;
        }
    }
    assert_int_equal(have, 0);
    if (!killed)
        kill(pid, SIGKILL);
    return n;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Checks the database; returns the number of messages per room in last[]. */
static void verify(const char *dir, const uint64_t acked[ROOMS], uint64_t last[ROOMS]) {
    char path[128];
    snprintf(path, sizeof path, "%s/parley.db", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT room_id, seq, id, text FROM messages "
                                        "ORDER BY room_id, seq",
                                        -1, &s, NULL),
                     SQLITE_OK);
    size_t cap = 1024, n = 0;
    char **ids = malloc(cap * sizeof *ids), **texts = malloc(cap * sizeof *texts);
    assert_non_null(ids);
    assert_non_null(texts);
    memset(last, 0, ROOMS * sizeof *last);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        unsigned room;
        assert_int_equal(sscanf((const char *)sqlite3_column_text(s, 0), "room-%u", &room), 1);
        assert_true(room < ROOMS);
        uint64_t seq = (uint64_t)sqlite3_column_int64(s, 1);
        assert_int_equal(seq, last[room] + 1); /* from 1, without gaps */
        last[room] = seq;
        const char *text = (const char *)sqlite3_column_text(s, 3);
        unsigned troom;
        unsigned long long tseq;
        assert_int_equal(sscanf(text, "pid %*d room %u seq %llu", &troom, &tseq), 2);
        assert_int_equal(troom, room);
        assert_int_equal(tseq, seq);
        if (n == cap) {
            cap *= 2;
            char **more_ids = realloc(ids, cap * sizeof *ids);
            assert_non_null(more_ids);
            ids = more_ids;
            char **more_texts = realloc(texts, cap * sizeof *texts);
            assert_non_null(more_texts);
            texts = more_texts;
        }
        ids[n] = strdup((const char *)sqlite3_column_text(s, 2));
        texts[n] = strdup(text);
        n++;
    }
    assert_int_equal(rc, SQLITE_DONE);
    sqlite3_finalize(s);
    sqlite3_close(db);
    for (int r = 0; r < ROOMS; r++)
        if (last[r] < acked[r])
            fail_msg("room %d: seq %llu acknowledged but only %llu stored", r,
                     (unsigned long long)acked[r], (unsigned long long)last[r]);
    qsort(ids, n, sizeof *ids, cmp_str);
    qsort(texts, n, sizeof *texts, cmp_str);
    for (size_t i = 1; i < n; i++) {
        assert_string_not_equal(ids[i - 1], ids[i]);
        assert_string_not_equal(texts[i - 1], texts[i]);
    }
    for (size_t i = 0; i < n; i++) {
        free(ids[i]);
        free(texts[i]);
    }
    free(ids);
    free(texts);
}

static void test_crash(void **state) {
    (void)state;
    char dir[] = "/tmp/parley-crash-XXXXXX";
    assert_non_null(mkdtemp(dir));
    uint64_t acked[ROOMS] = {0}, last[ROOMS] = {0};
    srand((unsigned)getpid());
    size_t total_acked = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_main(dir, fds[1]);
        }
        close(fds[1]);
        size_t kill_after = 2000 + (size_t)(rand() % 15000);
        size_t n = read_acks(fds[0], acked, kill_after, pid);
        close(fds[0]);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            fail_msg("child exited with %d instead of being killed", WEXITSTATUS(status));
        assert_true(n >= kill_after);
        total_acked += n;
        verify(dir, acked, last);
        for (int r = 0; r < ROOMS; r++)
            acked[r] = last[r]; /* the next child continues from what is stored */
    }
    print_message("%d crashes, %zu acknowledged messages, all present\n", ROUNDS, total_acked);

    /* The store itself agrees after the last crash. */
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    chat_store_t *st;
    assert_int_equal(chat_store_open_sqlite(&loop, dir, NULL, &st), 0);
    for (int r = 0; r < ROOMS; r++) {
        char name[16];
        snprintf(name, sizeof name, "room-%d", r);
        assert_int_equal(chat_store_last_seq(st, name), last[r]);
    }
    chat_store_close(st, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);

    static const char *const files[] = {"parley.db", "parley.db-wal", "parley.db-shm"};
    char path[128];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void) {
    log_threshold = LOG_LEVEL_WARN;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
