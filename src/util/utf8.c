/* util/utf8.c — UTF-8 validation as a table-driven DFA (see utf8.h).
 *
 * Every byte is first mapped to one of 13 classes, then (state, class) to the next
 * state, in the manner of Bjoern Hoehrmann's decoder. The classes are chosen so that
 * the second byte of E0, ED, F0 and F4 sequences can be range-checked by the state
 * alone; that is what rejects overlongs, surrogates and code points above U+10FFFF
 * without ever assembling a code point. The DFA never looks back, so a sequence split
 * across calls (WebSocket fragments) is validated exactly as if it were contiguous.
 *
 * Text frames are overwhelmingly ASCII (Socket.IO packets are JSON), so whenever the
 * DFA is between characters it skips ASCII eight bytes at a time; the tables only see
 * the non-ASCII bytes. A SIMD validator would be faster still on long non-ASCII text,
 * but is not worth its size for chat-sized messages. */
#include "util/utf8.h"

#include <string.h>

/* Byte classes; byte_class below spells them as numbers, so they are numbered here. */
enum {
    C_ASCII = 0, /* 00..7F */
    C_CONT1 = 1, /* 80..8F continuation */
    C_CONT2 = 2, /* 90..9F continuation */
    C_CONT3 = 3, /* A0..BF continuation */
    C_BAD = 4,   /* C0, C1 (overlong 2-byte leads), F5..FF (beyond U+10FFFF) */
    C_L2 = 5,    /* C2..DF: lead of 2 */
    C_E0 = 6,    /* E0: lead of 3, next byte A0..BF (else overlong) */
    C_L3 = 7,    /* E1..EC, EE, EF: lead of 3 */
    C_ED = 8,    /* ED: lead of 3, next byte 80..9F (else a surrogate) */
    C_F0 = 9,    /* F0: lead of 4, next byte 90..BF (else overlong) */
    C_L4 = 10,   /* F1..F3: lead of 4 */
    C_F4 = 11,   /* F4: lead of 4, next byte 80..8F (else above U+10FFFF) */
    C_COUNT
};

/* States: UTF8_ACCEPT (between characters) and UTF8_REJECT (sink) come from the header;
 * the rest say how many continuation bytes are still due and, for the four special
 * leads, which range the next one must fall in. */
enum {
    S_ACC = UTF8_ACCEPT,
    S_REJ = UTF8_REJECT,
    S_1,  /* one continuation byte due */
    S_2,  /* two due */
    S_3,  /* three due */
    S_E0, /* after E0: A0..BF, then one more */
    S_ED, /* after ED: 80..9F, then one more */
    S_F0, /* after F0: 90..BF, then two more */
    S_F4, /* after F4: 80..8F, then two more */
    S_COUNT
};

/* clang-format off */
#define R S_REJ

/* Indexed by byte; values are the C_* classes above (numbers keep the rows short). */
static const uint8_t byte_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 00..0F */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 10..1F */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 20..2F */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 30..3F */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 40..4F */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 50..5F */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 60..6F */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 70..7F */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 80..8F */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 90..9F */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, /* A0..AF */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, /* B0..BF */
    4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, /* C0..CF */
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, /* D0..DF */
    6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 7, /* E0..EF */
    9,10,10,10,11, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* F0..FF */
};

static const uint8_t transition[S_COUNT][C_COUNT] = {
    /*          ASCII  CONT1  CONT2  CONT3  BAD  L2    E0    L3    ED    F0    L4    F4 */
    [S_ACC] = { S_ACC, R,     R,     R,     R,   S_1,  S_E0, S_2,  S_ED, S_F0, S_3,  S_F4 },
    [S_REJ] = { R,     R,     R,     R,     R,   R,    R,    R,    R,    R,    R,    R    },
    [S_1]   = { R,     S_ACC, S_ACC, S_ACC, R,   R,    R,    R,    R,    R,    R,    R    },
    [S_2]   = { R,     S_1,   S_1,   S_1,   R,   R,    R,    R,    R,    R,    R,    R    },
    [S_3]   = { R,     S_2,   S_2,   S_2,   R,   R,    R,    R,    R,    R,    R,    R    },
    [S_E0]  = { R,     R,     R,     S_1,   R,   R,    R,    R,    R,    R,    R,    R    },
    [S_ED]  = { R,     S_1,   S_1,   R,     R,   R,    R,    R,    R,    R,    R,    R    },
    [S_F0]  = { R,     R,     S_2,   S_2,   R,   R,    R,    R,    R,    R,    R,    R    },
    [S_F4]  = { R,     S_2,   R,     R,     R,   R,    R,    R,    R,    R,    R,    R    },
};

#undef R
/* clang-format on */

#define HIGH_BITS 0x8080808080808080ull

uint32_t utf8_validate(uint32_t *state, const uint8_t *data, size_t len) {
    uint32_t s = *state;
    /* The state indexes a table: a caller's stray value must not become a wild read. */
    if (s >= S_COUNT)
        s = UTF8_REJECT;
    size_t i = 0;
    while (i < len && s != UTF8_REJECT) {
        if (s == UTF8_ACCEPT && data[i] < 0x80) {
            /* Between characters on an ASCII byte: skip the ASCII run, a word at a time
             * (memcpy, not a cast: data has no alignment guarantee; compilers turn it
             * into one unaligned load). Testing the byte first keeps non-Latin text,
             * which seldom has runs, off this path. */
            i++;
            while (len - i >= 8) {
                uint64_t word;
                memcpy(&word, data + i, 8);
                if (word & HIGH_BITS)
                    break;
                i += 8;
            }
            continue;
        }
        s = transition[s][byte_class[data[i++]]];
    }
    *state = s;
    return s;
}

bool utf8_is_valid(const uint8_t *data, size_t len) {
    uint32_t state = UTF8_ACCEPT;
    return utf8_validate(&state, data, len) == UTF8_ACCEPT;
}

size_t utf8_count(const uint8_t *data, size_t len) {
    /* Code points = bytes - continuation bytes (10xxxxxx). A byte is a continuation
     * when its top bit is set and the next bit is clear: bit 7 of (b & ~(b << 1)),
     * computed for eight bytes at once (the shift's carry into a neighbouring byte
     * only reaches bit 0 of that byte, which the mask drops). */
    size_t cont = 0;
    size_t i = 0;
    for (; len - i >= 8; i += 8) {
        uint64_t word;
        memcpy(&word, data + i, 8);
        cont += (size_t)__builtin_popcountll(word & ~(word << 1) & HIGH_BITS);
    }
    for (; i < len; i++)
        cont += (data[i] & 0xC0) == 0x80;
    return len - cont;
}
