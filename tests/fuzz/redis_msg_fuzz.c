/* tests/fuzz/redis_msg_fuzz.c — libFuzzer target for cluster/redis_msg.c.
 *
 * The input is what another node could publish in Redis. Read as MessagePack
 * (rmsg_unpack), a value that decodes is packed again and that must decode to the same
 * JSON with the same attachments; read as a broadcast (rmsg_bcast_decode: the classic
 * forms, or the cluster protocol's in JSON or MessagePack), one that decodes is packed
 * again as Parley would publish it, in both protocols, and must read back the same. Any
 * mismatch aborts; ASan sees any read past the exact-size copy. */
#include <stdlib.h>
#include <string.h>

#include "cluster/redis_msg.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void same_bins(const rmsg_bins_t *a, const rmsg_bins_t *b) {
    CHECK(a->n == b->n);
    for (size_t i = 0; i < a->n; i++)
        CHECK(a->v[i].len == b->v[i].len &&
              (a->v[i].len == 0 || memcmp(a->v[i].data, b->v[i].data, a->v[i].len) == 0));
}

static void value_round_trip(const uint8_t *data, size_t size) {
    rmsg_bins_t bins = {0};
    json_t *v = rmsg_unpack(data, size, &bins);
    if (!v)
        return;
    buf_t out = {0};
    if (rmsg_pack(&out, v, bins.v, bins.n) == 0) {
        rmsg_bins_t again_bins = {0};
        json_t *again = rmsg_unpack(out.data, out.len, &again_bins);
        CHECK(again && json_equal(v, again));
        same_bins(&bins, &again_bins);
        json_decref(again);
        rmsg_bins_free(&again_bins);
    }
    buf_free(&out);
    json_decref(v);
    rmsg_bins_free(&bins);
}

static void bcast_round_trip(const uint8_t *data, size_t size) {
    rmsg_bcast_t m;
    if (rmsg_bcast_decode(data, size, &m))
        return;
    for (int cluster = 0; cluster < 2; cluster++) {
        buf_t out = {0};
        int rc = cluster ? rmsg_pack_cluster_bcast(&out, m.uid, m.nsp, &m.b, m.request_id)
                         : rmsg_pack_bcast(&out, m.uid, m.nsp, &m.b, m.request_id);
        if (rc) {
            buf_free(&out);
            continue;
        }
        rmsg_bcast_t again;
        CHECK(rmsg_bcast_decode(out.data, out.len, &again) == 0);
        CHECK(strcmp(m.uid, again.uid) == 0 && strcmp(m.nsp, again.nsp) == 0);
        CHECK(strcmp(m.b.event, again.b.event) == 0 && strcmp(m.args, again.args) == 0);
        CHECK(m.b.to.nrooms == again.b.to.nrooms && m.b.to.nexcept == again.b.to.nexcept);
        for (size_t i = 0; i < m.b.to.nrooms; i++)
            CHECK(strcmp(m.b.to.rooms[i], again.b.to.rooms[i]) == 0);
        CHECK((m.request_id == NULL) == (again.request_id == NULL));
        same_bins(&m.bins, &again.bins);
        rmsg_bcast_free(&again);
        buf_free(&out);
    }
    rmsg_bcast_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    value_round_trip(copy, size);
    bcast_round_trip(copy, size);
    free(copy);
    return 0;
}
