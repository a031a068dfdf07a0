/* tools/bench/jwt.h — HS256 tokens for the load generator's clients.
 *
 * Every simulated user gets its own token (sub "u<N>", name "user<N>"), signed with the
 * secret the server was started with. Signing is one HMAC-SHA256 (OpenSSL) per
 * connection; no expiry claim, so a token outlives any run. */
#ifndef PARLEY_BENCH_JWT_H
#define PARLEY_BENCH_JWT_H

#include <stddef.h>
#include <stdint.h>

#define JWT_MAX 256 /* bytes of a token made here, NUL included */

/* Writes the token for user number `user` into out (JWT_MAX bytes). Returns its length,
 * or -1 when HMAC failed. `secret` is borrowed. */
int jwt_sign_user(const char *secret, uint64_t user, char out[JWT_MAX]);

#endif
