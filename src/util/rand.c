/* util/rand.c — CSPRNG-backed ids (see rand.h). */
#include "util/rand.h"

#include <openssl/rand.h>

#include "util/base64.h"

int rand_bytes(void *buf, size_t len) {
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

int rand_id(char out[RAND_ID_SIZE]) {
    uint8_t raw[16];
    if (rand_bytes(raw, sizeof raw))
        return -1;
    base64url_encode(raw, sizeof raw, out);
    return 0;
}
