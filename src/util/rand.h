/* util/rand.h — unguessable identifiers from the OS CSPRNG (through OpenSSL). */
#ifndef PARLEY_UTIL_RAND_H
#define PARLEY_UTIL_RAND_H

#include <stddef.h>
#include <stdint.h>

/* Fills buf with cryptographically strong random bytes. Returns 0, or -1 when the
 * generator failed (the caller must refuse the operation, never fall back). */
int rand_bytes(void *buf, size_t len);

/* 128 random bits as 22 URL-safe base64 characters plus a NUL: out needs
 * RAND_ID_SIZE bytes. Returns 0 or -1 as rand_bytes. */
#define RAND_ID_SIZE 23
int rand_id(char out[RAND_ID_SIZE]);

#endif
