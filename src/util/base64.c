/* util/base64.c — base64 through OpenSSL's EVP block codec (see base64.h). */
#include "util/base64.h"

#include <openssl/evp.h>

size_t base64_encode(const uint8_t *in, size_t len, char *out) {
    size_t done = 0;
    /* EVP_EncodeBlock takes an int length and NUL-terminates; feed it in chunks that
     * are multiples of 3 so the pieces concatenate into one valid encoding. */
    while (len > 0) {
        size_t chunk = len > 3 * (1u << 20) ? 3 * (1u << 20) : len;
        size_t enc = BASE64_ENCODED_LEN(chunk);
        EVP_EncodeBlock((unsigned char *)out + done, in, (int)chunk);
        done += enc;
        in += chunk;
        len -= chunk;
    }
    out[done] = '\0'; /* EVP_EncodeBlock wrote it unless len was 0 (no chunk at all) */
    return done;
}

long base64_decode(const char *in, size_t len, uint8_t *out) {
    if (len % 4 != 0)
        return -1;
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/' || (c == '=' && i >= len - 2);
        if (!ok)
            return -1;
    }
    if (in[len - 2] == '=' && in[len - 1] != '=')
        return -1;
    size_t pad = (in[len - 1] == '=') + (in[len - 2] == '=');
    size_t done = 0;
    while (done < len) {
        size_t chunk = len - done > (1u << 22) ? (1u << 22) : len - done;
        int n = EVP_DecodeBlock(out + (done / 4) * 3, (const unsigned char *)in + done, (int)chunk);
        if (n < 0)
            return -1;
        done += chunk;
    }
    return (long)((len / 4) * 3 - pad);
}

size_t base64url_encode(const uint8_t *in, size_t len, char *out) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}
