/* chat/store_sqlite.c — the durable chat store: SQLite in WAL mode, one writer thread
 * with group commit, reads of old history on libuv workers.
 *
 * Threads and connections:
 *   - the loop (store_common.c) assigns seqs and hands over one list of operations per
 *     loop iteration (submit);
 *   - the writer thread owns the write connection: it takes everything queued (up to
 *     max_batch), writes it in one transaction, and returns the batch to the loop
 *     (store_deliver) once COMMIT returned, i.e. once the WAL was fsynced. Operations
 *     that arrive during a commit wait for the next one: that is the group commit, and it
 *     makes one fsync serve a whole burst;
 *   - the checkpoint thread owns a third connection and copies the WAL into the database
 *     in the background, woken by the writer's WAL hook when the WAL has grown past
 *     checkpoint_pages; the writer only copies the last few frames itself, so that the
 *     WAL starts over (see "checkpoints" below);
 *   - history older than a room's window is read on uv_queue_work workers with read-only
 *     connections from a small pool (WAL lets them read while the writer writes).
 *
 * Durability: synchronous=FULL, so COMMIT fsyncs the WAL and an acknowledged message
 * survives a power cut. (synchronous=NORMAL in WAL mode only syncs at checkpoints: a
 * process crash loses nothing but a power cut may lose the last commits, which were
 * already acknowledged.) With group commit the fsync is paid once per batch, not per
 * message.
 *
 * Failure: a batch that fails (disk full, I/O error) is rolled back and every operation in
 * it reports the error, and so does every operation queued behind it in the same epoch
 * (store_op_t.epoch): their seqs follow the failed ones, so writing them would leave a
 * hole in a room's seqs; the writer fails them without touching the database. The loop
 * (store_common.c) then rewinds the counters to what is durable, refuses new writes at
 * once, and sends probe ops with backoff, each one row in write_probe in a transaction of
 * its own; the first probe that commits ends the failure, writes are accepted again and
 * the failed seqs (never announced) are given again. A failed batch is answered with its
 * error, never held and retried: the sender learns at once, and nothing is acknowledged
 * that is not in the file. The process keeps running (history still works), the log says
 * why and chat_store_health reports it.
 *
 * Read receipts are positions: one row per (room, user) in read_marks, moved forward to
 * the highest seq among the message ids of a mark_read that name a message of the room
 * (and its upto_seq), looked up in the same transaction (so an append earlier in the
 * batch counts). Strings that name no message are never written: receipts cannot grow
 * the file. Memberships are rows of `members`, written in the same batches; the loop
 * keeps both tables in memory too (store_members.c), loaded at open.
 *
 * Only one process may use a directory at a time (an flock on the directory): two writers
 * would assign the same seqs. */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chat/store_internal.h"
#include "util/log.h"
#include "util/time.h"

#define SQ_DB_FILE "parley.db"
#define SQ_BUSY_TIMEOUT_MS 5000
/* The write connection's page cache: the right edges of every active room's B-tree and of
 * the id index stay cached between commits. Negative: KiB. */
#define SQ_WRITER_CACHE_KIB (-16384)

/* ---- schema ---- */

/* The schema is versioned with PRAGMA user_version. Each step moves the database from
 * version - 1 to version inside one transaction; a new version is a new entry at the end,
 * never an edit of an old one. A database newer than the last step is refused. */
typedef struct {
    int version;
    const char *sql;
} sq_migration_t;

static const sq_migration_t sq_migrations[] = {
    {1,
     /* A rowid table (rows in commit order) with the primary key (room_id, seq) as its
      * index, rather than a WITHOUT ROWID table clustered by room: a commit then
      * appends its rows to the end of one B-tree and touches one small index leaf per
      * room, instead of rewriting one full 4 KiB leaf per room with the rows in it. That
      * halves the WAL written per message (1.7 vs 3.6 KB at 100 rooms, 3.6 vs 8.3 KB at
      * 1,000) and the writer's CPU per insert; history pays one rowid lookup per row,
      * and most history comes from the windows anyway. MAX(seq) per room is one seek in
      * the index. The id index keeps ids unique across restarts and lets receipts and
      * future edits find a message by id. ts is Unix ms. */
     "CREATE TABLE messages ("
     "  room_id TEXT NOT NULL,"
     "  seq INTEGER NOT NULL,"
     "  id TEXT NOT NULL,"
     "  user_id TEXT NOT NULL,"
     "  username TEXT NOT NULL,"
     "  text TEXT NOT NULL,"
     "  ts INTEGER NOT NULL,"
     "  PRIMARY KEY (room_id, seq)"
     ");"
     "CREATE UNIQUE INDEX messages_id ON messages (id);"
     /* One row per (room, user, message); read_at (Unix ms) is the first time it was
      * marked read: marking again is an upsert that keeps the earliest time. */
     "CREATE TABLE read_receipts ("
     "  room_id TEXT NOT NULL,"
     "  user_id TEXT NOT NULL,"
     "  message_id TEXT NOT NULL,"
     "  read_at INTEGER NOT NULL,"
     "  PRIMARY KEY (room_id, user_id, message_id)"
     ") WITHOUT ROWID;"},
    {2,
     /* Read receipts become positions (chat_store_mark_read): one row per (room, user)
      * holding the highest seq read, its message id, and when the mark last moved (Unix
      * ms). Version 1 kept a row per (room, user, string sent), which any client could
      * grow without bound with made-up ids. Old rows that name a message of their room
      * become the mark of their (room, user) (bare columns take the row of MAX(seq));
      * the rest are dropped. The file keeps its size (the freed pages are reused). */
     "CREATE TABLE read_marks ("
     "  room_id TEXT NOT NULL,"
     "  user_id TEXT NOT NULL,"
     "  seq INTEGER NOT NULL,"
     "  message_id TEXT NOT NULL,"
     "  read_at INTEGER NOT NULL,"
     "  PRIMARY KEY (room_id, user_id)"
     ") WITHOUT ROWID;"
     "INSERT INTO read_marks (room_id, user_id, seq, message_id, read_at)"
     "  SELECT r.room_id, r.user_id, MAX(m.seq), m.id, r.read_at"
     "  FROM read_receipts r JOIN messages m ON m.id = r.message_id AND m.room_id = r.room_id"
     "  GROUP BY r.room_id, r.user_id;"
     "DROP TABLE read_receipts;"
     /* What the store writes to find out whether writes work again after a failed commit
      * (a probe): one row, rewritten. */
     "CREATE TABLE write_probe ("
     "  id INTEGER PRIMARY KEY CHECK (id = 1),"
     "  at INTEGER NOT NULL"
     ");"},
    {3,
     /* Memberships (chat_store_join): kept while the user's connections come and go,
      * ended only by a forget. joined_at (Unix ms) is the first join's; username the
      * latest join's, for member lists of users who are away. Clustered by room (a
      * room's members are one range); the index answers "my rooms". */
     "CREATE TABLE members ("
     "  room_id TEXT NOT NULL,"
     "  user_id TEXT NOT NULL,"
     "  username TEXT NOT NULL,"
     "  joined_at INTEGER NOT NULL,"
     "  PRIMARY KEY (room_id, user_id)"
     ") WITHOUT ROWID;"
     "CREATE INDEX members_user ON members (user_id, room_id);"},
};

#define SQ_SCHEMA_VERSION                                                                          \
    (sq_migrations[sizeof sq_migrations / sizeof sq_migrations[0] - 1].version)

static const char SQ_INSERT_MSG[] =
    "INSERT INTO messages (room_id, seq, id, user_id, username, text, ts) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
/* One seek in the unique id index; the room must match too. */
static const char SQ_FIND_MSG[] = "SELECT seq FROM messages WHERE id = ?1 AND room_id = ?2";
/* Marks only move forward; when they would not, nothing is written. */
static const char SQ_UPSERT_MARK[] =
    "INSERT INTO read_marks (room_id, user_id, seq, message_id, read_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (room_id, user_id) DO UPDATE SET "
    "seq = excluded.seq, message_id = excluded.message_id, read_at = excluded.read_at "
    "WHERE excluded.seq > read_marks.seq";
/* The id of the message a seq names (mark_read's upto_seq), one seek in the key. */
static const char SQ_FIND_SEQ[] = "SELECT id FROM messages WHERE room_id = ?1 AND seq = ?2";
/* A first join keeps its time; a later one only renews the name. */
static const char SQ_UPSERT_MEMBER[] =
    "INSERT INTO members (room_id, user_id, username, joined_at) VALUES (?1, ?2, ?3, ?4) "
    "ON CONFLICT (room_id, user_id) DO UPDATE SET username = excluded.username";
static const char SQ_DELETE_MEMBER[] = "DELETE FROM members WHERE room_id = ?1 AND user_id = ?2";
/* What the loop keeps in memory (store_members.c), read at open. */
static const char SQ_LOAD_MEMBERS[] = "SELECT room_id, user_id, username, joined_at FROM members";
static const char SQ_LOAD_MARKS[] = "SELECT room_id, user_id, seq FROM read_marks";
static const char SQ_PROBE[] = "INSERT INTO write_probe (id, at) VALUES (1, ?1) "
                               "ON CONFLICT (id) DO UPDATE SET at = excluded.at";
static const char SQ_READ_RANGE[] = "SELECT seq, id, user_id, username, text, ts FROM messages "
                                    "WHERE room_id = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq";
/* The last seq of every room: a skip-scan over the primary key (one seek per room)
 * rather than GROUP BY, which would read every row at start-up. */
static const char SQ_ROOM_SEQS[] =
    "WITH RECURSIVE r(room) AS ("
    "  SELECT (SELECT room_id FROM messages ORDER BY room_id LIMIT 1)"
    "  UNION ALL"
    "  SELECT (SELECT room_id FROM messages WHERE room_id > r.room ORDER BY room_id LIMIT 1)"
    "  FROM r WHERE r.room IS NOT NULL)"
    "SELECT room, (SELECT MAX(seq) FROM messages WHERE room_id = r.room) FROM r "
    "WHERE room IS NOT NULL";

/* ---- the store ---- */

typedef struct sq_reader {
    struct sq_reader *next;
    sqlite3 *db;
    sqlite3_stmt *range;
} sq_reader_t;

typedef struct {
    chat_store_t base; /* first: the common code frees the whole struct through it */
    char *path;
    int dir_fd; /* holds the directory's flock */

    /* Writer thread. The connection and statements are used only there after open. */
    sqlite3 *db;
    sqlite3_stmt *begin, *commit, *rollback, *insert_msg, *find_msg, *upsert_mark, *probe;
    sqlite3_stmt *find_seq, *upsert_member, *delete_member;
    uv_thread_t writer;
    /* Writer thread only: ops of an epoch below failed_below are failed with fail_err
     * without being written (a commit of their epoch failed). */
    uint64_t failed_below;
    int fail_err;
    bool writer_started;
    uv_mutex_t wmu; /* guards the queue and the flags below */
    uv_cond_t wcond;
    store_op_t *q_head, *q_tail;
    bool stopping;

    /* Checkpoint thread: its own connection, woken by the WAL hook. */
    sqlite3 *ckpt_db;
    uv_thread_t ckpt;
    bool ckpt_started;
    uv_mutex_t cmu;
    uv_cond_t ccond;
    bool ckpt_running; /* a round is under way (started by the WAL hook) */
    bool final_wanted; /* the thread did the bulk; the writer does the last pass */
    bool ckpt_stopping;

    /* Read-only connections for workers, opened on demand (one per concurrent worker at
     * most, so as many as the thread pool has threads). */
    uv_mutex_t rmu;
    sq_reader_t *readers;
} sq_store_t;

static int sq_errno(int rc) {
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return 0;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CONSTRAINT:
        return -EEXIST;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EILSEQ;
    default:
        return -EIO;
    }
}

/* Steps a statement that returns no rows and resets it. Returns the step's code. */
static int step_done(sqlite3_stmt *s) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc;
}

static int exec(sqlite3 *db, const char *sql, const char *what) {
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        LOG_ERROR(STORE_TAG, "sqlite: %s: %s", what, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
    }
    return rc;
}

/* ---- writer thread ---- */

static void writer_checkpoint(sq_store_t *sq);

static int write_msg(sq_store_t *sq, const chat_msg_t *m) {
    sqlite3_stmt *s = sq->insert_msg;
    /* SQLITE_STATIC: the message outlives the statement's use of it (the op holds a
     * reference until it is delivered back to the loop, after the commit). */
    int rc = sqlite3_bind_text(s, 1, m->room_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 2, (sqlite3_int64)m->seq);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 3, m->id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 4, m->user_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 5, m->username, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 6, m->text, (int)m->text_len, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 7, m->timestamp);
    return rc == SQLITE_OK ? step_done(s) : rc;
}

/* The id of message seq of room into out (STORE_ID_MAX + 1 bytes). Returns SQLITE_ROW
 * when found, SQLITE_DONE when not, or an error code. */
static int find_seq(sq_store_t *sq, const char *room_id, uint64_t seq, char *out) {
    sqlite3_stmt *s = sq->find_seq;
    int rc = sqlite3_bind_text(s, 1, room_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 2, (sqlite3_int64)seq);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        snprintf(out, STORE_ID_MAX + 1, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_reset(s);
    return rc;
}

/* Moves the (room, user) read mark up to the highest of upto_seq and the seqs of the ids
 * that name a message of the room, and sets r->found and op->err: 0, or -ENOENT when
 * something was asked and nothing named a message (then nothing is written). Returns an
 * SQLite code (SQLITE_DONE: fine). */
static int write_receipts(sq_store_t *sq, store_op_t *op) {
    store_receipts_t *r = op->receipts;
    sqlite3_stmt *s = sq->find_msg;
    sqlite3_int64 best = 0;
    const char *best_id = NULL;
    for (size_t i = 0; i < r->n; i++) {
        int rc = sqlite3_bind_text(s, 1, r->ids[i], -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_text(s, 2, r->room_id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            sqlite3_int64 seq = sqlite3_column_int64(s, 0);
            if (seq > best) {
                best = seq;
                best_id = r->ids[i];
            }
            rc = SQLITE_DONE;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return rc;
    }
    char upto_id[STORE_ID_MAX + 1];
    if (r->upto_seq > (uint64_t)best) {
        int rc = find_seq(sq, r->room_id, r->upto_seq, upto_id);
        if (rc == SQLITE_ROW) {
            best = (sqlite3_int64)r->upto_seq;
            best_id = upto_id;
        } else if (rc != SQLITE_DONE) {
            return rc;
        }
    }
    r->found = (uint64_t)best;
    op->err = best > 0 || r->asked == 0 ? 0 : -ENOENT;
    if (best == 0)
        return SQLITE_DONE;
    s = sq->upsert_mark;
    int rc = sqlite3_bind_text(s, 1, r->room_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 2, r->user_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 3, best);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 4, best_id, -1, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 5, r->read_at);
    return rc == SQLITE_OK ? step_done(s) : rc;
}

static int write_membership(sq_store_t *sq, const store_op_t *op) {
    const store_membership_t *m = op->membership;
    sqlite3_stmt *s = op->kind == STORE_OP_JOIN ? sq->upsert_member : sq->delete_member;
    int rc = sqlite3_bind_text(s, 1, m->room_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 2, m->user_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && op->kind == STORE_OP_JOIN)
        rc = sqlite3_bind_text(s, 3, m->username, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && op->kind == STORE_OP_JOIN)
        rc = sqlite3_bind_int64(s, 4, m->at);
    return rc == SQLITE_OK ? step_done(s) : rc;
}

static int write_probe(sq_store_t *sq) {
    int rc = sqlite3_bind_int64(sq->probe, 1, time_wall_ms());
    return rc == SQLITE_OK ? step_done(sq->probe) : rc;
}

/* Writes the ops of head..(end of list) that are not commit_failed already in one
 * transaction, setting each one's err. Returns 0 or a negative errno (then nothing of
 * the batch was stored and the errs are to be overwritten). */
static int write_batch(sq_store_t *sq, store_op_t *head) {
    int rc = step_done(sq->begin);
    for (store_op_t *op = head; rc == SQLITE_DONE && op; op = op->next) {
        if (op->commit_failed)
            continue;
        op->err = 0;
        switch (op->kind) {
        case STORE_OP_APPEND:
            rc = write_msg(sq, op->msg);
            break;
        case STORE_OP_MARK_READ:
            rc = write_receipts(sq, op);
            break;
        case STORE_OP_JOIN:
        case STORE_OP_FORGET:
            rc = write_membership(sq, op);
            break;
        case STORE_OP_PROBE:
            rc = write_probe(sq);
            break;
        }
    }
    if (rc == SQLITE_DONE)
        rc = step_done(sq->commit);
    if (rc == SQLITE_DONE)
        return 0;
    LOG_ERROR(STORE_TAG, "sqlite: commit failed: %s (%s)", sqlite3_errmsg(sq->db),
              sqlite3_errstr(rc));
    /* COMMIT can fail and leave the transaction open (BUSY), or SQLite may have rolled
     * it back already (some I/O errors); roll back only what is still open. */
    if (!sqlite3_get_autocommit(sq->db))
        step_done(sq->rollback);
    return sq_errno(rc) ? sq_errno(rc) : -EIO;
}

static void close_readers(sq_store_t *sq) {
    while (sq->readers) {
        sq_reader_t *r = sq->readers;
        sq->readers = r->next;
        sqlite3_finalize(r->range);
        sqlite3_close(r->db);
        free(r);
    }
}

static void close_writer_db(sq_store_t *sq) {
    sqlite3_finalize(sq->begin);
    sqlite3_finalize(sq->commit);
    sqlite3_finalize(sq->rollback);
    sqlite3_finalize(sq->insert_msg);
    sqlite3_finalize(sq->find_msg);
    sqlite3_finalize(sq->upsert_mark);
    sqlite3_finalize(sq->probe);
    sqlite3_finalize(sq->find_seq);
    sqlite3_finalize(sq->upsert_member);
    sqlite3_finalize(sq->delete_member);
    sq->begin = sq->commit = sq->rollback = sq->insert_msg = NULL;
    sq->find_msg = sq->upsert_mark = sq->probe = NULL;
    sq->find_seq = sq->upsert_member = sq->delete_member = NULL;
    if (sq->db && sqlite3_close(sq->db) != SQLITE_OK)
        LOG_ERROR(STORE_TAG, "sqlite: close: %s", sqlite3_errmsg(sq->db));
    sq->db = NULL;
}

static void stop_checkpointer(sq_store_t *sq) {
    if (!sq->ckpt_started)
        return;
    uv_mutex_lock(&sq->cmu);
    sq->ckpt_stopping = true;
    uv_cond_signal(&sq->ccond);
    uv_mutex_unlock(&sq->cmu);
    uv_thread_join(&sq->ckpt);
    sq->ckpt_started = false;
}

static void writer_main(void *arg) {
    sq_store_t *sq = arg;
    uint32_t max_batch = sq->base.cfg.max_batch;
    uv_mutex_lock(&sq->wmu);
    for (;;) {
        while (!sq->q_head && !sq->stopping)
            uv_cond_wait(&sq->wcond, &sq->wmu);
        if (!sq->q_head)
            break;
        /* Everything that arrived while the previous batch committed, up to max_batch. */
        store_op_t *head = sq->q_head, *tail = head;
        for (uint32_t n = 1; tail->next && n < max_batch; n++)
            tail = tail->next;
        sq->q_head = tail->next;
        if (!sq->q_head)
            sq->q_tail = NULL;
        tail->next = NULL;
        uv_mutex_unlock(&sq->wmu);

        /* Ops of an epoch whose commit failed are failed unwritten (see "Failure"). */
        bool write = false;
        uint64_t last_epoch = 0;
        for (store_op_t *op = head; op; op = op->next) {
            op->commit_failed = op->epoch < sq->failed_below;
            if (op->commit_failed)
                op->err = sq->fail_err;
            else
                write = true;
            if (op->epoch > last_epoch)
                last_epoch = op->epoch;
        }
        if (write) {
            writer_checkpoint(sq);
            int err = write_batch(sq, head);
            if (err) {
                sq->failed_below = last_epoch + 1;
                sq->fail_err = err;
                for (store_op_t *op = head; op; op = op->next) {
                    if (!op->commit_failed)
                        op->err = err;
                    op->commit_failed = true;
                }
            }
        }
        store_deliver(&sq->base, head, tail);
        uv_mutex_lock(&sq->wmu);
    }
    uv_mutex_unlock(&sq->wmu);

    /* Shut down in an order that keeps disk work off the loop: readers (no worker uses
     * them any more: stop is only requested when no read is in flight), the checkpoint
     * thread, and last the write connection, whose close checkpoints the WAL into the
     * database and removes it. */
    close_readers(sq);
    stop_checkpointer(sq);
    if (sq->ckpt_db)
        sqlite3_close(sq->ckpt_db);
    sq->ckpt_db = NULL;
    close_writer_db(sq);
    store_backend_stopped(&sq->base);
}

/* ---- checkpoints ----
 *
 * SQLite's automatic checkpoint runs inside COMMIT on the writer: copying thousands of
 * pages into the database and fsyncing it would stall every queued ack for tens of ms.
 * So checkpoints run on a thread of their own, woken by the WAL hook once the WAL holds
 * checkpoint_pages pages. A PASSIVE checkpoint never blocks the writer, but on its own
 * it does not bound the WAL: the WAL starts over from its beginning only when a write
 * transaction begins while every frame is already in the database, and under continuous
 * writes a pass never ends at such a moment. So the thread copies the bulk concurrently
 * with the writer and then asks the writer (final_wanted) to copy the few frames
 * committed meanwhile itself, between two transactions: the next transaction restarts
 * the WAL. That short pass (its copy and the database fsync) is the only time the writer
 * spends on checkpoints — once per checkpoint_pages of WAL. */

/* Frames left behind by a concurrent pass after which the thread goes round again
 * before it hands over to the writer. */
#define SQ_CKPT_AGAIN_PAGES 256

/* WAL hook, on the writer thread after each commit. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages) {
    sq_store_t *sq = arg;
    if (pages >= (int)sq->base.cfg.checkpoint_pages) {
        uv_mutex_lock(&sq->cmu);
        if (!sq->ckpt_running) {
            sq->ckpt_running = true;
            uv_cond_signal(&sq->ccond);
        }
        uv_mutex_unlock(&sq->cmu);
    }
    return SQLITE_OK;
}

static int checkpoint_pass(sqlite3 *db, int *log, int *done) {
    int rc = sqlite3_wal_checkpoint_v2(db, "main", SQLITE_CHECKPOINT_PASSIVE, log, done);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        LOG_WARN(STORE_TAG, "sqlite: checkpoint: %s", sqlite3_errmsg(db));
    return rc;
}

/* On the writer, before each transaction: the last pass, when the thread asked for it. */
static void writer_checkpoint(sq_store_t *sq) {
    uv_mutex_lock(&sq->cmu);
    bool wanted = sq->final_wanted;
    uv_mutex_unlock(&sq->cmu);
    if (!wanted)
        return;
    int log = 0, done = 0;
    checkpoint_pass(sq->db, &log, &done);
    LOG_DEBUG(STORE_TAG, "checkpoint: %d of %d WAL pages in the database", done, log);
    uv_mutex_lock(&sq->cmu);
    sq->final_wanted = false;
    sq->ckpt_running = false; /* the hook may start the next round */
    uv_mutex_unlock(&sq->cmu);
}

static void checkpoint_main(void *arg) {
    sq_store_t *sq = arg;
    uv_mutex_lock(&sq->cmu);
    for (;;) {
        /* A round: started by the hook (ckpt_running), ended by the writer. */
        while ((!sq->ckpt_running || sq->final_wanted) && !sq->ckpt_stopping)
            uv_cond_wait(&sq->ccond, &sq->cmu);
        if (sq->ckpt_stopping)
            break;
        uv_mutex_unlock(&sq->cmu);
        int rc, log = 0, done = 0;
        do
            rc = checkpoint_pass(sq->ckpt_db, &log, &done);
        while (rc == SQLITE_OK && log - done > SQ_CKPT_AGAIN_PAGES);
        uv_mutex_lock(&sq->cmu);
        if (rc == SQLITE_OK)
            sq->final_wanted = true;
        else
            sq->ckpt_running = false; /* BUSY or an error: the next commit retries */
    }
    uv_mutex_unlock(&sq->cmu);
}

/* ---- backend table ---- */

static void sq_submit(chat_store_t *st, store_op_t *head, store_op_t *tail) {
    sq_store_t *sq = (sq_store_t *)st;
    uv_mutex_lock(&sq->wmu);
    if (sq->q_tail)
        sq->q_tail->next = head;
    else
        sq->q_head = head;
    sq->q_tail = tail;
    uv_cond_signal(&sq->wcond);
    uv_mutex_unlock(&sq->wmu);
}

static void sq_stop(chat_store_t *st) {
    sq_store_t *sq = (sq_store_t *)st;
    uv_mutex_lock(&sq->wmu);
    sq->stopping = true;
    uv_cond_signal(&sq->wcond);
    uv_mutex_unlock(&sq->wmu);
}

static void sq_free_parts(sq_store_t *sq) {
    if (sq->dir_fd >= 0)
        close(sq->dir_fd); /* releases the flock */
    sq->dir_fd = -1;
    free(sq->path);
    sq->path = NULL;
    uv_mutex_destroy(&sq->wmu);
    uv_cond_destroy(&sq->wcond);
    uv_mutex_destroy(&sq->cmu);
    uv_cond_destroy(&sq->ccond);
    uv_mutex_destroy(&sq->rmu);
}

static void sq_destroy(chat_store_t *st) {
    sq_store_t *sq = (sq_store_t *)st;
    /* The writer has delivered its last batch and is returning: the join is immediate. */
    uv_thread_join(&sq->writer);
    sq_free_parts(sq);
}

/* ---- reads (worker threads) ---- */

static int reader_open(const sq_store_t *sq, sq_reader_t **out) {
    sq_reader_t *r = calloc(1, sizeof *r);
    if (!r)
        return SQLITE_NOMEM;
    int rc = sqlite3_open_v2(sq->path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(r->db, SQ_BUSY_TIMEOUT_MS);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(r->db, SQ_READ_RANGE, -1, SQLITE_PREPARE_PERSISTENT, &r->range,
                                NULL);
    if (rc != SQLITE_OK) {
        LOG_ERROR(STORE_TAG, "sqlite: read connection: %s",
                  r->db ? sqlite3_errmsg(r->db) : sqlite3_errstr(rc));
        sqlite3_close(r->db);
        free(r);
        return rc;
    }
    *out = r;
    return SQLITE_OK;
}

static int read_rows(store_read_t *rd, sqlite3_stmt *s) {
    size_t want = (size_t)(rd->hi - rd->lo + 1);
    rd->n = 0;
    rd->msgs = malloc(want * sizeof *rd->msgs);
    if (!rd->msgs)
        return SQLITE_NOMEM;
    int rc = sqlite3_bind_text(s, 1, rd->room_id, (int)rd->room_id_len, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 2, (sqlite3_int64)rd->lo);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 3, (sqlite3_int64)rd->hi);
    while (rc == SQLITE_OK && rd->n < want && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_msg_fields_t f = {
            .seq = (uint64_t)sqlite3_column_int64(s, 0),
            .id = (const char *)sqlite3_column_text(s, 1),
            .id_len = (size_t)sqlite3_column_bytes(s, 1),
            .user_id = (const char *)sqlite3_column_text(s, 2),
            .user_id_len = (size_t)sqlite3_column_bytes(s, 2),
            .username = (const char *)sqlite3_column_text(s, 3),
            .username_len = (size_t)sqlite3_column_bytes(s, 3),
            .text = (const char *)sqlite3_column_text(s, 4),
            .text_len = (size_t)sqlite3_column_bytes(s, 4),
            .timestamp = sqlite3_column_int64(s, 5),
            .room_id = rd->room_id,
            .room_id_len = rd->room_id_len,
        };
        if (!f.id || !f.user_id || !f.username || !f.text) {
            rc = SQLITE_NOMEM; /* column_text returns NULL only when out of memory */
            break;
        }
        int err = store_msg_new(&f, false, &rd->msgs[rd->n]);
        if (err) {
            rc = err == -ENOMEM ? SQLITE_NOMEM : SQLITE_CORRUPT;
            break;
        }
        rd->n++;
        rc = SQLITE_OK;
    }
    if (rc == SQLITE_DONE || (rc == SQLITE_OK && rd->n == want))
        rc = SQLITE_OK;
    sqlite3_reset(s);
    return rc;
}

static void read_work(uv_work_t *req) {
    store_read_t *rd = req->data;
    sq_store_t *sq = (sq_store_t *)rd->st;
    uv_mutex_lock(&sq->rmu);
    sq_reader_t *r = sq->readers;
    if (r)
        sq->readers = r->next;
    uv_mutex_unlock(&sq->rmu);
    int rc = r ? SQLITE_OK : reader_open(sq, &r);
    if (rc == SQLITE_OK) {
        rc = read_rows(rd, r->range);
        if (rc != SQLITE_OK)
            LOG_ERROR(STORE_TAG, "sqlite: reading %s: %s", rd->room_id, sqlite3_errmsg(r->db));
        uv_mutex_lock(&sq->rmu);
        r->next = sq->readers;
        sq->readers = r;
        uv_mutex_unlock(&sq->rmu);
    }
    if (rc != SQLITE_OK) {
        rd->err = sq_errno(rc) ? sq_errno(rc) : -EIO;
        for (size_t i = 0; i < rd->n; i++)
            chat_msg_unref(rd->msgs[i]);
        rd->n = 0;
    } else if (rd->n != (size_t)(rd->hi - rd->lo + 1)) {
        /* Acknowledged seqs are in the database, gap-free: anything else is damage. */
        LOG_WARN(STORE_TAG, "sqlite: room %s: %zu of seqs %llu..%llu found", rd->room_id, rd->n,
                 (unsigned long long)rd->lo, (unsigned long long)rd->hi);
    }
}

static int sq_read(chat_store_t *st, store_read_t *rd) {
    return uv_queue_work(st->loop, &rd->req, read_work, store_read_finish);
}

static const store_backend_t sq_backend = {
    .name = "sqlite",
    .submit = sq_submit,
    .read = sq_read,
    .stop = sq_stop,
    .destroy = sq_destroy,
};

/* ---- open ---- */

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out) {
    int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
    if (rc != SQLITE_OK)
        LOG_ERROR(STORE_TAG, "sqlite: prepare: %s", sqlite3_errmsg(db));
    return rc;
}

static int pragma_text(sqlite3 *db, const char *sql, char *out, size_t outlen) {
    sqlite3_stmt *s;
    int rc = prepare(db, sql, &s);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        snprintf(out, outlen, "%s", t ? (const char *)t : "");
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_ERROR;
    }
    sqlite3_finalize(s);
    return rc;
}

static int migrate(sqlite3 *db, const char *path) {
    char buf[32];
    int rc = pragma_text(db, "PRAGMA user_version", buf, sizeof buf);
    if (rc != SQLITE_OK)
        return rc;
    int version = atoi(buf);
    if (version > SQ_SCHEMA_VERSION) {
        LOG_ERROR(STORE_TAG, "%s: schema version %d is newer than this build's %d", path, version,
                  SQ_SCHEMA_VERSION);
        return SQLITE_MISMATCH;
    }
    for (size_t i = 0; i < sizeof sq_migrations / sizeof sq_migrations[0]; i++) {
        const sq_migration_t *m = &sq_migrations[i];
        if (m->version <= version)
            continue;
        char set[64];
        snprintf(set, sizeof set, "PRAGMA user_version = %d", m->version);
        rc = exec(db, "BEGIN IMMEDIATE", "migration");
        if (rc == SQLITE_OK)
            rc = exec(db, m->sql, "migration");
        if (rc == SQLITE_OK)
            rc = exec(db, set, "migration");
        if (rc == SQLITE_OK)
            rc = exec(db, "COMMIT", "migration");
        if (rc != SQLITE_OK) {
            if (!sqlite3_get_autocommit(db))
                exec(db, "ROLLBACK", "migration rollback");
            return rc;
        }
        LOG_INFO(STORE_TAG, "%s: schema version %d", path, m->version);
        version = m->version;
    }
    return SQLITE_OK;
}

static int load_rooms(sq_store_t *sq) {
    sqlite3_stmt *s;
    int rc = prepare(sq->db, SQ_ROOM_SEQS, &s);
    if (rc != SQLITE_OK)
        return rc;
    size_t rooms = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(s, 0);
        size_t len = (size_t)sqlite3_column_bytes(s, 0);
        sqlite3_int64 seq = sqlite3_column_int64(s, 1);
        if (!id || seq < 0 || !store_room_add(&sq->base, id, len, (uint64_t)seq)) {
            rc = SQLITE_NOMEM;
            break;
        }
        rooms++;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        LOG_ERROR(STORE_TAG, "sqlite: loading rooms: %s", sqlite3_errstr(rc));
        return rc;
    }
    LOG_INFO(STORE_TAG, "%s: %zu rooms", sq->path, rooms);
    return SQLITE_OK;
}

static int load_member_row(store_members_t *ms, sqlite3_stmt *s) {
    const char *room = (const char *)sqlite3_column_text(s, 0);
    const char *user = (const char *)sqlite3_column_text(s, 1);
    const char *name = (const char *)sqlite3_column_text(s, 2);
    return room && user && name &&
                   store_members_join(ms, room, user, name, sqlite3_column_int64(s, 3)) == 0
               ? SQLITE_OK
               : SQLITE_NOMEM;
}

static int load_mark_row(store_members_t *ms, sqlite3_stmt *s) {
    const char *room = (const char *)sqlite3_column_text(s, 0);
    const char *user = (const char *)sqlite3_column_text(s, 1);
    sqlite3_int64 seq = sqlite3_column_int64(s, 2);
    return room && user && seq >= 0 && store_members_mark(ms, room, user, (uint64_t)seq) == 0
               ? SQLITE_OK
               : SQLITE_NOMEM;
}

/* Runs sql and hands each row to fn. Returns SQLITE_OK or an error code. */
static int load_rows(sq_store_t *sq, const char *sql,
                     int (*fn)(store_members_t *ms, sqlite3_stmt *s)) {
    sqlite3_stmt *s;
    int rc = prepare(sq->db, sql, &s);
    if (rc != SQLITE_OK)
        return rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && (rc = fn(&sq->base.members, s)) == SQLITE_OK)
        ;
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Memberships and read marks into the loop's index (store_members.c). */
static int load_members(sq_store_t *sq) {
    int rc = load_rows(sq, SQ_LOAD_MEMBERS, load_member_row);
    if (rc == SQLITE_OK)
        rc = load_rows(sq, SQ_LOAD_MARKS, load_mark_row);
    if (rc != SQLITE_OK) {
        LOG_ERROR(STORE_TAG, "sqlite: loading memberships: %s", sqlite3_errstr(rc));
        return rc;
    }
    LOG_INFO(STORE_TAG, "%s: %zu memberships and read marks", sq->path, sq->base.members.count);
    return SQLITE_OK;
}

static int open_db(sq_store_t *sq) {
    int rc = sqlite3_open_v2(
        sq->path, &sq->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        LOG_ERROR(STORE_TAG, "%s: %s", sq->path,
                  sq->db ? sqlite3_errmsg(sq->db) : sqlite3_errstr(rc));
        return rc;
    }
    char mode[16] = "";
    sqlite3_extended_result_codes(sq->db, 1);
    rc = sqlite3_busy_timeout(sq->db, SQ_BUSY_TIMEOUT_MS);
    if (rc == SQLITE_OK)
        rc = pragma_text(sq->db, "PRAGMA journal_mode = WAL", mode, sizeof mode);
    if (rc == SQLITE_OK && strcmp(mode, "wal") != 0) {
        LOG_ERROR(STORE_TAG, "%s: cannot use WAL mode (journal_mode is %s)", sq->path, mode);
        return SQLITE_CANTOPEN;
    }
    if (rc == SQLITE_OK)
        rc = exec(sq->db, "PRAGMA synchronous = FULL", "synchronous");
    if (rc == SQLITE_OK)
        rc = exec(sq->db, "PRAGMA foreign_keys = OFF", "foreign_keys");
    if (rc == SQLITE_OK) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA cache_size = %d", SQ_WRITER_CACHE_KIB);
        rc = exec(sq->db, sql, "cache_size");
    }
    if (rc == SQLITE_OK)
        rc = migrate(sq->db, sq->path);
    if (rc == SQLITE_OK)
        rc = load_rooms(sq);
    if (rc == SQLITE_OK)
        rc = load_members(sq);
    if (rc == SQLITE_OK)
        rc = prepare(sq->db, "BEGIN IMMEDIATE", &sq->begin);
    if (rc == SQLITE_OK)
        rc = prepare(sq->db, "COMMIT", &sq->commit);
    if (rc == SQLITE_OK)
        rc = prepare(sq->db, "ROLLBACK", &sq->rollback);
    if (rc == SQLITE_OK)
        rc = prepare(sq->db, SQ_INSERT_MSG, &sq->insert_msg);
    if (rc == SQLITE_OK)
        rc = prepare(sq->db, SQ_FIND_MSG, &sq->find_msg);
    if (rc == SQLITE_OK)
        rc = prepare(sq->db, SQ_UPSERT_MARK, &sq->upsert_mark);
    if (rc == SQLITE_OK)
        rc = prepare(sq->db, SQ_PROBE, &sq->probe);
    if (rc == SQLITE_OK)
        rc = prepare(sq->db, SQ_FIND_SEQ, &sq->find_seq);
    if (rc == SQLITE_OK)
        rc = prepare(sq->db, SQ_UPSERT_MEMBER, &sq->upsert_member);
    if (rc == SQLITE_OK)
        rc = prepare(sq->db, SQ_DELETE_MEMBER, &sq->delete_member);
    if (rc != SQLITE_OK)
        return rc;

    /* Checkpoints move to their own thread and connection (see on_wal_commit). The
     * hook replaces SQLite's automatic checkpoint on the writer. */
    rc = sqlite3_open_v2(sq->path, &sq->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(sq->ckpt_db, SQ_BUSY_TIMEOUT_MS);
    if (rc == SQLITE_OK)
        rc = exec(sq->ckpt_db, "PRAGMA synchronous = FULL", "synchronous");
    if (rc != SQLITE_OK) {
        LOG_ERROR(STORE_TAG, "%s: checkpoint connection: %s", sq->path,
                  sq->ckpt_db ? sqlite3_errmsg(sq->ckpt_db) : sqlite3_errstr(rc));
        return rc;
    }
    if (sq->base.cfg.checkpoint_pages)
        sqlite3_wal_hook(sq->db, on_wal_commit, sq);
    return SQLITE_OK;
}

/* Takes the directory's lock: a second process on the same data would assign the same
 * seqs. Returns 0 or a negative errno. */
static int lock_dir(sq_store_t *sq, const char *dir) {
    if (mkdir(dir, 0700) && errno != EEXIST) {
        int err = -errno;
        LOG_ERROR(STORE_TAG, "cannot create %s: %s", dir, strerror(errno));
        return err;
    }
    sq->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sq->dir_fd < 0) {
        int err = -errno;
        LOG_ERROR(STORE_TAG, "cannot open %s: %s", dir, strerror(errno));
        return err;
    }
    if (flock(sq->dir_fd, LOCK_EX | LOCK_NB)) {
        /* In use: the caller says what it does about it (waits, or stops). */
        if (errno == EWOULDBLOCK)
            return -EBUSY;
        int err = -errno;
        LOG_ERROR(STORE_TAG, "cannot lock %s: %s", dir, strerror(errno));
        return err;
    }
    return 0;
}

int chat_store_open_sqlite(uv_loop_t *loop, const char *dir, const chat_store_config_t *cfg,
                           chat_store_t **out) {
    *out = NULL;
    if (!loop || !dir)
        return -EINVAL;
    sq_store_t *sq = calloc(1, sizeof *sq);
    if (!sq)
        return -ENOMEM;
    sq->dir_fd = -1;
    chat_store_config_t c;
    if (cfg)
        c = *cfg;
    else
        chat_store_config_defaults(&c);
    int err = store_init(&sq->base, loop, &c, &sq_backend, c.window);
    if (err) {
        free(sq);
        return err;
    }
    if (uv_mutex_init(&sq->wmu) || uv_cond_init(&sq->wcond) || uv_mutex_init(&sq->cmu) ||
        uv_cond_init(&sq->ccond) || uv_mutex_init(&sq->rmu)) {
        /* Only fails when the system is out of resources; the primitives that did
         * initialise are leaked rather than tracked one by one. */
        store_fini_unopened(&sq->base);
        free(sq);
        return -ENOMEM;
    }
    size_t plen = strlen(dir) + sizeof "/" SQ_DB_FILE;
    sq->path = malloc(plen);
    if (!sq->path) {
        err = -ENOMEM;
        goto fail;
    }
    snprintf(sq->path, plen, "%s/%s", dir, SQ_DB_FILE);
    if ((err = lock_dir(sq, dir)))
        goto fail;
    int rc = open_db(sq);
    if (rc != SQLITE_OK) {
        err = sq_errno(rc) ? sq_errno(rc) : -EIO;
        goto fail;
    }
    if ((err = uv_thread_create(&sq->ckpt, checkpoint_main, sq)))
        goto fail;
    sq->ckpt_started = true;
    if ((err = uv_thread_create(&sq->writer, writer_main, sq)))
        goto fail;
    sq->writer_started = true;
    if ((err = store_start(&sq->base)))
        goto fail;
    LOG_INFO(STORE_TAG, "%s: open (WAL, synchronous=FULL, window %zu)", sq->path, c.window);
    *out = &sq->base;
    return 0;

fail:
    if (sq->writer_started) {
        /* Nothing was submitted: the writer stops at once, closing the connections. It
         * calls store_backend_stopped, which only records a flag before store_start. */
        sq_stop(&sq->base);
        uv_thread_join(&sq->writer);
    } else {
        stop_checkpointer(sq);
        if (sq->ckpt_db)
            sqlite3_close(sq->ckpt_db);
        close_writer_db(sq);
    }
    store_fini_unopened(&sq->base);
    sq_free_parts(sq);
    free(sq);
    return err;
}
