/* util/utf8.h — UTF-8 validation, incremental across fragments.
 *
 * WebSocket text messages must be valid UTF-8 (RFC 6455 §8.1) and may be split over
 * fragments at any byte; the chat service limits text by code points. Validation is
 * the DFA of RFC 3629's grammar: no overlongs, no surrogates, nothing above U+10FFFF. */
#ifndef PARLEY_UTIL_UTF8_H
#define PARLEY_UTIL_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTF8_ACCEPT 0
#define UTF8_REJECT 1

/* Feeds bytes to the validator. Start with *state = UTF8_ACCEPT. Returns the new state:
 * UTF8_REJECT as soon as the input cannot be UTF-8 (it stays rejected), UTF8_ACCEPT
 * when the bytes so far end on a character boundary, another value mid-character. */
uint32_t utf8_validate(uint32_t *state, const uint8_t *data, size_t len);

/* Whole-buffer check. */
bool utf8_is_valid(const uint8_t *data, size_t len);

/* Number of code points in valid UTF-8 (counts lead bytes). */
size_t utf8_count(const uint8_t *data, size_t len);

#endif
