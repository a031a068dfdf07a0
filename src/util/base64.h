/* util/base64.h — standard base64 (RFC 4648 §4, padded), on OpenSSL's codec; and the
 * URL-safe alphabet without padding (§5), our own.
 *
 * Engine.IO carries binary packets over long-polling as base64; ids and the segments of a
 * JWT (RFC 7515 §2) are base64url without padding. */
#ifndef PARLEY_UTIL_BASE64_H
#define PARLEY_UTIL_BASE64_H

#include <stddef.h>
#include <stdint.h>

#define BASE64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4)
#define BASE64_DECODED_MAX(n) (((n) / 4) * 3)

/* Writes BASE64_ENCODED_LEN(len) characters and a NUL to out (which needs one byte
 * more than that). Returns the count without the NUL. */
size_t base64_encode(const uint8_t *in, size_t len, char *out);

/* Decodes padded base64; out needs BASE64_DECODED_MAX(len) bytes and may be `in`
 * itself (decoding in place is safe: each 4-character group is read before its 3 bytes
 * are written, and output never overtakes input). Returns the decoded length, or -1
 * when the input is not valid padded base64. */
long base64_decode(const char *in, size_t len, uint8_t *out);

/* URL-safe alphabet, no padding: used for ids. out needs ((len + 2) / 3) * 4 + 1 bytes;
 * the result is NUL-terminated. Returns its length. */
size_t base64url_encode(const uint8_t *in, size_t len, char *out);

/* The decoded size of len base64url characters (an upper bound when len % 4 == 1, which
 * is invalid). */
#define BASE64URL_DECODED_MAX(n) ((n) / 4 * 3 + ((n) % 4 * 3) / 4)

/* Decodes base64url without padding, strictly: only the 64 characters of the URL-safe
 * alphabet ('=', '+', '/', white space and NUL are refused), len % 4 != 1, and the bits
 * left over after the last byte are zero. So exactly the strings base64url_encode writes
 * are taken, and each has one decoding. out needs BASE64URL_DECODED_MAX(len) bytes and
 * may be `in` itself (output never overtakes input). Returns the decoded length, or -1. */
long base64url_decode(const char *in, size_t len, uint8_t *out);

#endif
