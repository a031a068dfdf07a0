/* tests/unit/sio/rooms_test.c — the room index: joining and leaving (positions kept
 * right when a member moves, empty rooms deleted), thousands of random joins and leaves
 * against a reference matrix, and joining, leaving and fetching the sockets a target
 * selects. assert_rooms_consistent (adapter_env.h) checks the index from both sides. */
#include "adapter_env.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef struct {
    char names[16][64];
    size_t n;
} room_list_t;

static void collect_room(const char *room, void *arg) {
    room_list_t *l = arg;
    assert_true(l->n < ARRAY_LEN(l->names));
    snprintf(l->names[l->n++], sizeof l->names[0], "%s", room);
}

static bool list_has(const room_list_t *l, const char *name) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0)
            return true;
    return false;
}

/* ---- rooms ---- */

static void test_rooms_join_leave(void **state) {
    env_t *e = *state;
    sio_socket_t *a, *b, *c;
    client_connect(e, &a);
    client_connect(e, &b);
    client_connect(e, &c);
    const char *rooms[] = {"r1", "r2", "r3"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(sio_socket_join(a, rooms[i]), 0);
        assert_int_equal(sio_socket_join(b, rooms[i]), 0);
    }
    assert_int_equal(sio_socket_join(c, "r2"), 0);
    assert_int_equal(sio_socket_join(c, "r2"), 0); /* again: no second membership */
    assert_int_equal(sio_nsp_room_size(e->root, "r1"), 2);
    assert_int_equal(sio_nsp_room_size(e->root, "r2"), 3);
    assert_int_equal(sio_nsp_room_size(e->root, "r3"), 2);
    assert_int_equal(sio_nsp_room_size(e->root, "r4"), 0);
    assert_rooms_consistent(e->root);

    /* Leave the middle room: a is first in r2, so the last member moves into its place
     * and that member's recorded position must follow. */
    assert_int_equal(sio_socket_leave(a, "r2"), 0);
    assert_int_equal(sio_nsp_room_size(e->root, "r2"), 2);
    assert_false(sio_socket_in(a, "r2"));
    assert_true(sio_socket_in(a, "r1"));
    assert_true(sio_socket_in(a, "r3"));
    assert_true(sio_socket_in(b, "r2"));
    assert_true(sio_socket_in(c, "r2"));
    assert_rooms_consistent(e->root);

    room_list_t l = {0};
    sio_socket_rooms(a, collect_room, &l);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.names[0], sio_socket_id(a)); /* its own id first */
    assert_true(list_has(&l, "r1"));
    assert_true(list_has(&l, "r3"));
    assert_false(list_has(&l, "r2"));

    /* Leaving a room one is not in changes nothing. */
    assert_int_equal(sio_socket_leave(a, "r2"), 0);
    assert_int_equal(sio_socket_leave(a, "never"), 0);
    assert_int_equal(sio_nsp_room_size(e->root, "r2"), 2);

    /* The last member leaving deletes the room. */
    assert_int_equal(sio_socket_leave(a, "r1"), 0);
    assert_int_equal(sio_socket_leave(b, "r1"), 0);
    assert_int_equal(sio_nsp_room_size(e->root, "r1"), 0);
    assert_null(map_get(&e->root->rooms, "r1", 2));
    assert_rooms_consistent(e->root);

    /* Rejoining recreates it. */
    assert_int_equal(sio_socket_join(c, "r1"), 0);
    assert_int_equal(sio_nsp_room_size(e->root, "r1"), 1);
    assert_rooms_consistent(e->root);
}

/* A room of one holds its member inline; a second member moves both into an array, in
 * order, which the room keeps while members come and go. */
static void test_room_member_inline(void **state) {
    env_t *e = *state;
    sio_socket_t *a, *b, *c;
    eio_session_t *sa = client_connect(e, &a);
    eio_session_t *sb = client_connect(e, &b);
    client_connect(e, &c);
    assert_int_equal(sio_socket_join(a, "solo"), 0);
    sio_room_t *r = sio_room_get(e->root, "solo", false);
    assert_non_null(r);
    assert_int_equal(r->members.cap, 1);
    assert_ptr_equal(r->members.at.one, a);
    assert_int_equal(sio_socket_join(b, "solo"), 0);
    assert_int_equal(r->members.cap, 2);
    assert_ptr_equal(r->members.at.many[0], a);
    assert_ptr_equal(r->members.at.many[1], b);
    assert_int_equal(sio_socket_join(c, "solo"), 0);
    assert_int_equal(sio_nsp_room_size(e->root, "solo"), 3);
    assert_rooms_consistent(e->root);
    assert_int_equal(sio_socket_leave(a, "solo"), 0);
    assert_int_equal(sio_socket_leave(c, "solo"), 0);
    assert_int_equal(sio_nsp_room_size(e->root, "solo"), 1);
    assert_rooms_consistent(e->root);
    /* A broadcast to the room reaches its one member, and only it. */
    const char *to_room[] = {"solo"};
    sio_target_t to = {.rooms = to_room, .nrooms = 1};
    assert_int_equal(sio_nsp_emit_json(e->root, &to, "hi", "[1]", 3), 0);
    assert_int_equal(qcount(sb), 1);
    assert_int_equal(qcount(sa), 0);
    assert_int_equal(sio_socket_leave(b, "solo"), 0);
    assert_null(sio_room_get(e->root, "solo", false));
    assert_rooms_consistent(e->root);
}

/* Random joins and leaves of 12 sockets over 8 rooms against a reference matrix. */
static void test_rooms_random_against_reference(void **state) {
    env_t *e = *state;
    enum { NS = 12, NR = 8 };
    sio_socket_t *socks[NS];
    bool in[NS][NR] = {{false}};
    char names[NR][8];
    for (int i = 0; i < NS; i++)
        client_connect(e, &socks[i]);
    for (int r = 0; r < NR; r++)
        snprintf(names[r], sizeof names[r], "room%d", r);
    uint32_t seed = 12345;
    for (int step = 0; step < 3000; step++) {
        seed = seed * 1103515245 + 12345;
        int si = (int)((seed >> 8) % NS);
        int ri = (int)((seed >> 16) % NR);
        bool join = (seed >> 28) & 1;
        if (join) {
            assert_int_equal(sio_socket_join(socks[si], names[ri]), 0);
            in[si][ri] = true;
        } else {
            assert_int_equal(sio_socket_leave(socks[si], names[ri]), 0);
            in[si][ri] = false;
        }
        if (step % 50 == 0 || step > 2950) {
            assert_rooms_consistent(e->root);
            for (int r = 0; r < NR; r++) {
                size_t n = 0;
                for (int s = 0; s < NS; s++) {
                    assert_int_equal(sio_socket_in(socks[s], names[r]), in[s][r]);
                    n += in[s][r];
                }
                assert_int_equal(sio_nsp_room_size(e->root, names[r]), n);
            }
        }
    }
}

static void join_x(sio_socket_t *s, void *arg) {
    (*(int *)arg)++;
}

static void test_sockets_join_leave_many(void **state) {
    env_t *e = *state;
    sio_socket_t *a, *b, *c;
    client_connect(e, &a);
    client_connect(e, &b);
    client_connect(e, &c);
    sio_socket_join(a, "src");
    sio_socket_join(b, "src");
    const char *src = "src";
    sio_target_t which = {.rooms = &src, .nrooms = 1};
    assert_int_equal(sio_nsp_sockets_join(e->root, &which, "dst"), 0);
    assert_true(sio_socket_in(a, "dst"));
    assert_true(sio_socket_in(b, "dst"));
    assert_false(sio_socket_in(c, "dst"));
    int count = 0;
    const char *dst = "dst";
    sio_target_t in_dst = {.rooms = &dst, .nrooms = 1};
    assert_int_equal(sio_nsp_fetch_sockets(e->root, &in_dst, join_x, &count), 0);
    assert_int_equal(count, 2);
    assert_int_equal(sio_nsp_sockets_leave(e->root, NULL, "dst"), 0);
    assert_int_equal(sio_nsp_room_size(e->root, "dst"), 0);
    assert_rooms_consistent(e->root);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_plain, teardown)
    const struct CMUnitTest tests[] = {
        T(test_rooms_join_leave),
        T(test_room_member_inline),
        T(test_rooms_random_against_reference),
        T(test_sockets_join_leave_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
