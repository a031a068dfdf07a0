/* bench/conn_sizes.c — where the bytes of one idle Socket.IO-over-WebSocket connection of
 * the chat server go, from the code's own sizeof values (issue 17).
 *
 * The connection is the one `make bench`'s idle scenario holds (parley --no-recovery, so
 * the lean handshake and no socket.data; an HS256 JWT without a room claim for user
 * "u<g>" named "user<g>"): handshake done, in its own room (never stored) and in
 * "user:<id>", which the chat joins and presence counts. For each block allocated per
 * connection: the struct, the function that allocates it, what malloc is asked for, and
 * what it takes from glibc's heap (the request plus the 8-byte chunk header, rounded up to
 * 16, at least 32: malloc_usable_size + 8 of a block of that size, asked of this
 * process's malloc). Arrays shared by all connections (hash maps, the namespace's socket
 * array) are charged per connection at N connections; a map's
 * capacity is read from a real map_t filled with N keys.
 *
 * What sizeof cannot give is said in the table: chat_conn_t is private to chat/service.c
 * (mirrored here, field by field); presence.c's room_t and count_t and jansson's objects
 * (socket.data, with recovery on) are measured by running the real code once with a
 * recording allocator. The massif run in docs/BENCHMARKS.md checks the whole.
 *
 * Then the what-ifs of issue 17, computed from the same sizes: what each layout change
 * would take off the total. Prints markdown; docs/BENCHMARKS.md holds a run.
 *
 * usage: conn_sizes [connections (19900)] */
#include <jansson.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "chat/auth.h"
#include "chat/presence.h"
#include "eio/internal.h"
#include "http/server.h"
#include "net/conn.h"
#include "sio/internal.h"
#include "util/map.h"
#include "ws/conn.h"

/* ---- a recording allocator: glibc lets the executable interpose malloc ---- */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

#define REC_MAX 64

typedef struct {
    void *p;
    size_t n;
} rec_t;

static rec_t recs[REC_MAX];
static size_t nrecs;
static bool recording;

static void rec_add(void *p, size_t n) {
    if (recording && p && nrecs < REC_MAX)
        recs[nrecs++] = (rec_t){p, n};
}

static void rec_drop(void *p) {
    for (size_t i = 0; recording && p && i < nrecs; i++)
        if (recs[i].p == p)
            recs[i] = recs[--nrecs];
}

void *malloc(size_t n) {
    void *p = __libc_malloc(n);
    rec_add(p, n);
    return p;
}

void *calloc(size_t n, size_t m) {
    void *p = __libc_calloc(n, m);
    rec_add(p, n * m);
    return p;
}

void *realloc(void *old, size_t n) {
    void *p = __libc_realloc(old, n);
    if (p) {
        rec_drop(old);
        rec_add(p, n);
    }
    return p;
}

void free(void *p) {
    rec_drop(p);
    __libc_free(p);
}

/* What a block of n bytes takes from the heap: its usable size and the chunk header. */
static size_t heap_cost(size_t n) {
    void *p = __libc_malloc(n);
    if (!p) {
        fprintf(stderr, "conn_sizes: out of memory\n");
        exit(1);
    }
    size_t c = malloc_usable_size(p) + sizeof(size_t);
    __libc_free(p);
    return c;
}

/* ---- what sizeof cannot see ---- */

/* chat/service.c's chat_conn_t, field by field (private there; keep in step). */
typedef struct {
    double tokens;
    uint64_t refilled_ms;
} mirror_bucket_t;

typedef struct {
    void *svc;
    const char *username;
    json_t *rooms;
    mirror_bucket_t bucket, events;
    uint64_t flood_since_ms;
    size_t refused;
    char user_id[];
} mirror_chat_conn_t;

typedef struct {
    size_t n;
    size_t request[REC_MAX];
    size_t heap;
} measured_t;

static void measure_begin(void) {
    nrecs = 0;
    recording = true;
}

/* The blocks allocated since measure_begin and still live. */
static measured_t measure_end(void) {
    recording = false;
    measured_t m = {.n = nrecs};
    for (size_t i = 0; i < nrecs; i++) {
        size_t k = i; /* largest first, so that a run prints them in one order */
        for (; k > 0 && m.request[k - 1] < recs[i].n; k--)
            m.request[k] = m.request[k - 1];
        m.request[k] = recs[i].n;
        m.heap += heap_cost(recs[i].n);
    }
    return m;
}

/* chat_presence_join of one more user's room "user:<id>", as on_connection does: the
 * blocks it leaves (room_t with its name, the room's map of users, count_t with the id).
 * A first user grows the process's room map beforehand (shared, charged separately). The
 * socket is only asked its id; the namespace is not used for user rooms (never
 * announced). */
static int measure_presence(const char *user, measured_t *out) {
    chat_presence_t *p;
    sio_socket_t *s = calloc(1, sizeof *s);
    if (!s || chat_presence_new(NULL, 1000, &p)) {
        free(s);
        return -1;
    }
    memcpy(s->id, "conn_sizes", sizeof "conn_sizes");
    char room[sizeof CHAT_USER_ROOM_PREFIX + CHAT_USER_ID_MAX];
    snprintf(room, sizeof room, "%s%s", CHAT_USER_ROOM_PREFIX, user);
    int rc = chat_presence_join(p, s, CHAT_USER_ROOM_PREFIX "first", "first", "first");
    if (rc == 0) {
        measure_begin();
        rc = chat_presence_join(p, s, room, user, user);
        *out = measure_end();
    }
    chat_presence_free(p);
    free(s);
    return rc;
}

/* socket.data as remember_owner leaves it with recovery on: {"userId": "<id>"}. */
static int measure_socket_data(const char *user, measured_t *out) {
    measure_begin();
    json_t *d = json_object();
    int rc = d ? json_object_set_new(d, "userId", json_string(user)) : -1;
    *out = measure_end();
    json_decref(d);
    return rc;
}

/* The capacity a map_t reaches with n entries (util/map.c's growth, run for real). */
static size_t map_cap(size_t n) {
    char(*keys)[24] = __libc_malloc(n * sizeof *keys);
    map_t m;
    if (!keys || map_init(&m)) {
        fprintf(stderr, "conn_sizes: cannot build a map\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(keys[i], sizeof keys[i], "k%zu", i);
        if (map_put(&m, keys[i], (size_t)len, keys[i])) {
            fprintf(stderr, "conn_sizes: out of memory\n");
            exit(1);
        }
    }
    size_t cap = m.cap;
    map_free(&m);
    __libc_free(keys);
    return cap;
}

/* sio/socket.c nsp_add: the namespace's socket array starts at 16 and doubles. */
static size_t nsp_sockets_cap(size_t n) {
    size_t cap = 16;
    while (cap < n)
        cap *= 2;
    return cap;
}

/* ---- the table ---- */

typedef struct {
    char what[128];
    char where[64];
    char request[64];
    double bytes; /* per connection, what malloc was asked for */
    double heap;  /* per connection, with the chunk header and rounding */
    const char *how;
} row_t;

#define ROWS_MAX 32
static row_t rows[ROWS_MAX];
static size_t nrows;

static row_t *row(const char *what, const char *where, double bytes, double heap, const char *how) {
    if (nrows == ROWS_MAX) {
        fprintf(stderr, "conn_sizes: too many rows\n");
        exit(1);
    }
    row_t *r = &rows[nrows++];
    snprintf(r->what, sizeof r->what, "%s", what);
    snprintf(r->where, sizeof r->where, "%s", where);
    snprintf(r->request, sizeof r->request, "%.0f", bytes);
    r->bytes = bytes;
    r->heap = heap;
    r->how = how;
    return r;
}

static void block(const char *what, const char *where, size_t request, const char *how) {
    row(what, where, (double)request, (double)heap_cost(request), how);
}

/* A shared array of cap elements of elem bytes, charged to n connections (large arrays
 * are mmapped: no chunk overhead worth counting). */
static void shared(const char *what, const char *where, size_t elem, size_t cap, size_t n,
                   const char *how) {
    double per = (double)(elem * cap) / (double)n;
    row_t *r = row(what, where, per, per, how);
    snprintf(r->request, sizeof r->request, "%zu × %zu / %zu", elem, cap, n);
}

static void measured_row(const char *what, const char *where, const measured_t *m,
                         const char *how) {
    size_t bytes = 0;
    for (size_t i = 0; i < m->n; i++)
        bytes += m->request[i];
    row_t *r = row(what, where, (double)bytes, (double)m->heap, how);
    size_t off = 0;
    for (size_t i = 0; i < m->n && off < sizeof r->request; i++) {
        int k = snprintf(r->request + off, sizeof r->request - off, "%s%zu", i ? " + " : "",
                         m->request[i]);
        if (k < 0)
            break;
        off += (size_t)k;
    }
}

static void print_rows(size_t from, size_t to, double *bytes, double *heap) {
    printf("| # | block | allocated in | malloc request (B) | per connection (B) | with malloc "
           "overhead (B) | size from |\n");
    printf("| ---: | --- | --- | ---: | ---: | ---: | --- |\n");
    *bytes = *heap = 0;
    for (size_t i = from; i < to; i++) {
        const row_t *r = &rows[i];
        printf("| %zu | %s | %s | %s | %.1f | %.1f | %s |\n", i - from + 1, r->what, r->where,
               r->request, r->bytes, r->heap, r->how);
        *bytes += r->bytes;
        *heap += r->heap;
    }
    printf("| | **total** | | | **%.0f** | **%.0f** | |\n\n", *bytes, *heap);
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 19900;
    if (n < 2) {
        fprintf(stderr, "usage: conn_sizes [connections >= 2 (19900)]\n");
        return 2;
    }
    /* The idle scenario's last user: ids u0..u<n-1>, names user0..user<n-1>. */
    char user[32], name[32], room[64];
    snprintf(user, sizeof user, "u%zu", n - 1);
    snprintf(name, sizeof name, "user%zu", n - 1);
    snprintf(room, sizeof room, "%s%s", CHAT_USER_ROOM_PREFIX, user);
    size_t cap = map_cap(n);

    measured_t presence, data;
    if (measure_presence(user, &presence) || measure_socket_data(user, &data)) {
        fprintf(stderr, "conn_sizes: out of memory\n");
        return 1;
    }

    printf("### One idle connection, %zu connections: user `%s` (`%s`), rooms: its own and "
           "`%s`\n\nThe presence rows (the `user:<id>` count and its index entry) are there "
           "only with `--notify-url`.\n\n",
           n, user, name, room);
    size_t conn_block = sizeof(net_conn_t) + HTTP_CONN_EXT_SIZE;
    block("net_conn_t (a descriptor on the loop's epoll set) + ext area (HTTP_CONN_EXT_SIZE; "
          "ws_conn_t after the upgrade)",
          "net/conn.c net_conn_open", conn_block, "sizeof");
    block("eio_session_t", "eio/session.c eio_session_create", sizeof(eio_session_t), "sizeof");
    block("sio_client_t (its one socket inline)", "sio/client.c client_open", sizeof(sio_client_t),
          "sizeof");
    block("sio_socket_t (no pid: recovery off)", "sio/socket.c sio_socket_new",
          sizeof(sio_socket_t), "sizeof");
    block("sio_socket_t.rooms (1 membership: user room)", "sio/adapter.c local_join",
          sizeof(sio_membership_t), "sizeof");
    {
        char what[128];
        snprintf(what, sizeof what, "sio_room_t (its one member inline) + name `%s`", room);
        block(what, "sio/adapter.c sio_room_get", sizeof(sio_room_t) + strlen(room) + 1, "sizeof");
    }
    block("chat_conn_t + user id + username", "chat/service.c auth_middleware",
          sizeof(mirror_chat_conn_t) + strlen(user) + strlen(name) + 2,
          "sizeof of a mirror (private struct)");
    measured_row("presence of `user:<id>`: its user map's slots, room_t + name, count_t + id",
                 "chat/presence.c count_add", &presence,
                 "measured (private structs): chat_presence_join run once");
    size_t presence_row = nrows; /* 1-based: the row just added */
    shared("Engine.IO session index entry", "eio/session.c (srv->sessions)", sizeof(map_entry_t),
           cap, n, "sizeof, map capacity at N");
    shared("socket index entry (by id)", "sio/socket.c nsp_add (nsp->by_id)", sizeof(map_entry_t),
           cap, n, "sizeof, map capacity at N");
    shared("namespace socket array slot", "sio/socket.c nsp_add (nsp->sockets)",
           sizeof(sio_socket_t *), nsp_sockets_cap(n), n, "sizeof, capacity at N");
    shared("room index entry (`user:<id>`)", "sio/adapter.c sio_room_get (nsp->rooms)",
           sizeof(map_entry_t), cap, n, "sizeof, map capacity at N");
    shared("presence room index entry", "chat/presence.c room_get (local)", sizeof(map_entry_t),
           cap, n, "sizeof, map capacity at N");
    const row_t *presence_index = &rows[nrows - 1];
    size_t end = nrows;
    double bytes, heap;
    print_rows(0, end, &bytes, &heap);
    const row_t *presence_blocks = &rows[presence_row - 1];
    printf("Without `--notify-url` (no presence rows): **%.0f B** requested, **%.0f B** of heap "
           "per connection.\n\n",
           bytes - presence_blocks->bytes - presence_index->bytes,
           heap - presence_blocks->heap - presence_index->heap);

    printf("Inside the first block: net_conn_t %zu (no libuv handle: the descriptor is on the "
           "loop's epoll set, and the output queue's array is lent by the loop while output "
           "is queued), the ext area %d (ws_conn_t %zu of it after the upgrade; the HTTP state "
           "before it, private to http/server.c, is at most %d). Blocks per connection: %zu; "
           "malloc's headers and rounding: %.0f B.\n\n",
           sizeof(net_conn_t), HTTP_CONN_EXT_SIZE, sizeof(ws_conn_t), HTTP_CONN_EXT_SIZE,
           presence_row + presence.n - 1, heap - bytes);

    printf("With recovery on (the server's default; `make bench` runs --no-recovery): "
           "socket.data `{\"userId\": \"%s\"}`, made by chat/service.c remember_owner, is %zu "
           "jansson blocks (",
           user, data.n);
    size_t dbytes = 0;
    for (size_t i = 0; i < data.n; i++) {
        printf("%s%zu", i ? " + " : "", data.request[i]);
        dbytes += data.request[i];
    }
    printf(" = %zu B requested, %zu B with malloc overhead; measured: jansson's structs are "
           "private to it), and sio_socket_t is %d B longer for its pid (%zu B of heap, not "
           "%zu).\n\n",
           dbytes, data.heap, RAND_ID_SIZE, heap_cost(sizeof(sio_socket_t) + RAND_ID_SIZE),
           heap_cost(sizeof(sio_socket_t)));

    /* ---- what-ifs ---- */
    size_t c_conn = heap_cost(conn_block), c_sess = heap_cost(sizeof(eio_session_t)),
           c_cli = heap_cost(sizeof(sio_client_t)), c_sock = heap_cost(sizeof(sio_socket_t)),
           c_memb = heap_cost(sizeof(sio_membership_t));
    size_t three = sizeof(eio_session_t) + sizeof(sio_client_t) + sizeof(sio_socket_t) +
                   sizeof(sio_membership_t);
    size_t ws_conn = sizeof(net_conn_t) + sizeof(ws_conn_t);
    double index_share = (double)(sizeof(map_entry_t) * cap) / (double)n;
    size_t count_block = sizeof(size_t) + strlen(user) + 1; /* presence.c count_t + id */
    char how[4][160];                                       /* one for each change below */
    struct {
        const char *change;
        double saves;
        const char *how;
    } w[] = {
        {"presence of `user:<id>` read from the adapter's room of that name (it exists anyway; "
         "its member count is the user's sockets here): no presence room per user",
         (double)presence.heap + index_share, how[0]},
        {"one block for the connection, ws_conn_t (the ext area sized for it), session, client "
         "and socket, with the socket's first membership inline",
         (double)(c_conn + c_sess + c_cli + c_sock + c_memb - heap_cost(ws_conn + three)), how[1]},
        {"Engine.IO session index only for polling sessions (a poll naming a live WebSocket "
         "session's sid would then get code 1, where engine.io answers 3)",
         index_share, how[2]},
        {"the socket and room indexes as arrays of pointers keyed through the id each entry "
         "holds (util/map.c stores key pointer, length and value: 24 B a slot)",
         2 * (index_share - (double)(sizeof(void *) * cap) / (double)n), how[3]},
    };
    snprintf(how[0], sizeof how[0], "row %zu (%zu) + its index share (%.1f)", presence_row,
             presence.heap, index_share);
    snprintf(how[1], sizeof how[1], "%zu + %zu + %zu + %zu + %zu − heap_cost(%zu + %zu)", c_conn,
             c_sess, c_cli, c_sock, c_memb, ws_conn, three);
    snprintf(how[2], sizeof how[2], "%zu × %zu / %zu", sizeof(map_entry_t), cap, n);
    snprintf(how[3], sizeof how[3], "2 × (%zu − %zu) × %zu / %zu", sizeof(map_entry_t),
             sizeof(void *), cap, n);
    size_t nw = sizeof w / sizeof w[0];
    for (size_t a = 1; a < nw; a++) /* by bytes saved, largest first */
        for (size_t b = a; b > 0 && w[b].saves > w[b - 1].saves; b--) {
            __typeof__(w[0]) t = w[b];
            w[b] = w[b - 1];
            w[b - 1] = t;
        }
    printf("### What the changes of issue 17 would take off (computed from the same sizes)\n\n");
    printf("| # | change | saves per connection (B) | how |\n| ---: | --- | ---: | --- |\n");
    for (size_t k = 0; k < nw; k++)
        printf("| %zu | %s | %.0f | %s |\n", k + 1, w[k].change, w[k].saves, w[k].how);
    printf("\nA smaller alternative to the first: online users counted in one map (user id → "
           "count) instead of a room each saves %.0f B (row %zu less a count_t block of %zu). "
           "The ext area per protocol alone (ws_conn_t is %zu of the %d bytes) saves %zu B; a "
           "block of its own for session + client + socket (not the connection's) saves %zu "
           "B.\n\n",
           (double)presence.heap - (double)heap_cost(count_block), presence_row,
           heap_cost(count_block), sizeof(ws_conn_t), HTTP_CONN_EXT_SIZE,
           c_conn - heap_cost(ws_conn), c_sess + c_cli + c_sock + c_memb - heap_cost(three));

    /* The layout changes at once: one block per connection (chat_conn_t in it too), the
     * adapter's user room, the socket and room indexes, the namespace array. */
    size_t one = ws_conn + three + sizeof(mirror_chat_conn_t) + strlen(user) + strlen(name) + 2;
    double rest = (double)heap_cost(sizeof(sio_room_t) + strlen(room) + 1) + 2 * index_share +
                  (double)(sizeof(sio_socket_t *) * nsp_sockets_cap(n)) / (double)n;
    printf("With one block for all of it (connection, ws_conn_t, session, client, socket, "
           "chat_conn_t with the ids: %zu B), the user room, the socket and room indexes and "
           "the namespace's array: %.0f B per connection without `--notify-url`.\n",
           one, (double)heap_cost(one) + rest);
    return 0;
}
