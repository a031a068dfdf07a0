/* tools/bench/jwt.c — HS256 signing (see jwt.h). */
#include "jwt.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "util/base64.h"

int jwt_sign_user(const char *secret, uint64_t user, char out[JWT_MAX]) {
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char claims[96];
    int clen = snprintf(claims, sizeof claims, "{\"sub\":\"u%llu\",\"name\":\"user%llu\"}",
                        (unsigned long long)user, (unsigned long long)user);
    size_t n = base64url_encode((const uint8_t *)header, sizeof header - 1, out);
    out[n++] = '.';
    n += base64url_encode((const uint8_t *)claims, (size_t)clen, out + n);
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const uint8_t *)out, n, mac, &maclen))
        return -1;
    out[n++] = '.';
    n += base64url_encode(mac, maclen, out + n);
    return (int)n;
}
