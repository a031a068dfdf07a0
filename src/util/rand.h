/* util/rand.h — unguessable identifiers from the kernel's CSPRNG (getrandom(2)).
 *
 * Small draws (an id per handshake, a hash seed per map) are cut from a per-thread pool
 * filled RAND_POOL_SIZE bytes at a time, so that a handshake costs no system call: one
 * getrandom per RAND_POOL_SIZE / 16 ids. Bytes are erased from the pool as they are handed
 * out (a later memory disclosure shows none already used), and a forked child starts
 * with an empty pool (it must not repeat its parent's ids). Safe from any thread. */
#ifndef PARLEY_UTIL_RAND_H
#define PARLEY_UTIL_RAND_H

#include <stddef.h>
#include <stdint.h>

#define RAND_POOL_SIZE 4096 /* bytes drawn from the kernel per refill, per thread */
#define RAND_POOLED_MAX 256 /* longer requests bypass the pool */

/* Fills buf with cryptographically strong random bytes. Returns 0, or -1 when the
 * generator failed (the caller must refuse the operation, never fall back). */
int rand_bytes(void *buf, size_t len);

/* 128 random bits as 22 URL-safe base64 characters plus a NUL: out needs
 * RAND_ID_SIZE bytes. Returns 0 or -1 as rand_bytes. */
#define RAND_ID_SIZE 23
int rand_id(char out[RAND_ID_SIZE]);

#endif
