/* util/jsonw.h — JSON text written directly: strings and integers.
 *
 * For hot paths that would otherwise build a jansson value only to dump it once (a chat
 * message, an acknowledgement). The bytes are jansson's: json_dumps (without
 * JSON_ENSURE_ASCII or JSON_ESCAPE_SLASH) of the same string or integer gives exactly
 * what these write, so text made either way compares equal byte for byte. Strings keep
 * UTF-8 as it is and escape '"', '\\' and the control characters U+0000..U+001F (\b, \f,
 * \n, \r, \t, the rest \u00XX with upper-case hex); U+007F and everything above stay raw.
 *
 * Two steps, so that the caller sizes its buffer once: the exact length, then the
 * bytes. The input must be valid UTF-8 (it is not checked here: validate where the
 * text enters, as the chat store does); it may hold NULs (written \u0000). Nothing here
 * allocates or writes a terminating NUL. */
#ifndef PARLEY_UTIL_JSONW_H
#define PARLEY_UTIL_JSONW_H

#include <stddef.h>
#include <stdint.h>

/* Longest integer: "-9223372036854775808". */
#define JSONW_INT_MAX 20

/* Length of the len bytes at s written as a JSON string, quotes included. */
size_t jsonw_string_len(const char *s, size_t len);
/* Writes them at out (jsonw_string_len bytes of room); returns the end of what it wrote. */
char *jsonw_string(char *out, const char *s, size_t len);

/* Length of v in decimal (at most JSONW_INT_MAX). */
size_t jsonw_int_len(int64_t v);
/* Writes v at out (jsonw_int_len bytes of room); returns the end. */
char *jsonw_int(char *out, int64_t v);

/* Copies the len bytes of a literal piece of JSON (a key with its quotes and colon,
 * punctuation) at out; returns the end. */
char *jsonw_raw(char *out, const char *s, size_t len);

#endif
