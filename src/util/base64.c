/* util/base64.c — base64 through OpenSSL's EVP block codec, and base64url both ways by
 * hand (OpenSSL has no URL-safe codec) (see base64.h). */
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

/* Each byte's value in the URL-safe alphabet; 255 for a byte outside it. Sixteen bytes a
 * row: '-' is 0x2D, '0'-'9' 0x30-0x39, 'A'-'Z' 0x41-0x5A, '_' 0x5F, 'a'-'z' 0x61-0x7A. */
/* clang-format off */
static const uint8_t url_value[256] = {
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0x00 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0x10 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,  62, 255, 255, /* 0x20 */
     52,  53,  54,  55,  56,  57,  58,  59,  60,  61, 255, 255, 255, 255, 255, 255, /* 0x30 */
    255,   0,   1,   2,   3,   4,   5,   6,   7,   8,   9,  10,  11,  12,  13,  14, /* 0x40 */
     15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25, 255, 255, 255, 255,  63, /* 0x50 */
    255,  26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,  38,  39,  40, /* 0x60 */
     41,  42,  43,  44,  45,  46,  47,  48,  49,  50,  51, 255, 255, 255, 255, 255, /* 0x70 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0x80 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0x90 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0xA0 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0xB0 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0xC0 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0xD0 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0xE0 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0xF0 */
};
/* clang-format on */

long base64url_decode(const char *in, size_t len, uint8_t *out) {
    const uint8_t *p = (const uint8_t *)in;
    if (len % 4 == 1) /* a lone character carries 6 bits: no whole byte */
        return -1;
    size_t o = 0;
    size_t i = 0;
    /* All four characters are read before their three bytes are written: in place is safe. */
    for (; i + 4 <= len; i += 4) {
        uint32_t a = url_value[p[i]], b = url_value[p[i + 1]], c = url_value[p[i + 2]],
                 d = url_value[p[i + 3]];
        if ((a | b | c | d) > 63)
            return -1;
        uint32_t v = a << 18 | b << 12 | c << 6 | d;
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    if (len - i >= 2) {
        uint32_t a = url_value[p[i]], b = url_value[p[i + 1]];
        uint32_t c = len - i == 3 ? url_value[p[i + 2]] : 0;
        /* The bits past the last whole byte must be zero: one encoding per byte string. */
        if ((a | b | c) > 63 || (len - i == 2 ? b & 0x0F : c & 0x03))
            return -1;
        out[o++] = (uint8_t)(a << 2 | b >> 4);
        if (len - i == 3)
            out[o++] = (uint8_t)((b & 0x0F) << 4 | c >> 2);
    }
    return (long)o;
}
