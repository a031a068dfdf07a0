/* cluster/wire.h — the byte format of messages between the processes of one machine.
 *
 * A frame is a 4-byte big-endian length (of what follows), a type byte, and fields.
 * Fields are written and read in order, each as the reader expects it: unsigned
 * integers (u8, u32, u64, big-endian) and byte strings (u32 length + bytes). Strings
 * are not NUL-terminated on the wire; the reader hands out slices into the frame.
 *
 * The reader never trusts the frame: every field is bounds-checked, and a failed read
 * makes every later read fail too (wire_reader_t.bad), so a decoder can read all its
 * fields and check once at the end. The peers are our own processes, but a parser is a
 * parser: it is fuzzed (tests/fuzz/cluster_wire_fuzz.c). */
#ifndef PARLEY_CLUSTER_WIRE_H
#define PARLEY_CLUSTER_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/slice.h"

/* A frame may not be larger than this (a message of the largest payload with room for
 * its description). */
#define WIRE_FRAME_MAX (64u << 20)
#define WIRE_HEADER 5 /* length + type */

/* ---- writing: into a buf_t; each returns 0 or -ENOMEM ---- */

/* Starts a frame of `type`; wire_end fills in its length. */
int wire_begin(buf_t *b, uint8_t type, size_t *start);
void wire_end(buf_t *b, size_t start);
int wire_u8(buf_t *b, uint8_t v);
int wire_u32(buf_t *b, uint32_t v);
int wire_u64(buf_t *b, uint64_t v);
int wire_bytes(buf_t *b, const void *data, size_t len);
int wire_str(buf_t *b, const char *s); /* NULL is written as an empty string */

/* ---- reading ---- */

/* Whether buf[0..len) starts with a whole frame: returns its total size (header
 * included), 0 when more bytes are needed, -1 when the length is over WIRE_FRAME_MAX. */
long wire_frame_size(const uint8_t *buf, size_t len);

typedef struct {
    const uint8_t *p, *end;
    uint8_t type;
    bool bad;
} wire_reader_t;

/* A reader over one whole frame (as measured by wire_frame_size). */
void wire_reader_init(wire_reader_t *r, const uint8_t *frame, size_t size);
uint8_t wire_get_u8(wire_reader_t *r);
uint32_t wire_get_u32(wire_reader_t *r);
uint64_t wire_get_u64(wire_reader_t *r);
slice_t wire_get_bytes(wire_reader_t *r);
/* A string field copied into out (NUL-terminated); bad when it holds a NUL or does not
 * fit in size bytes. */
void wire_get_cstr(wire_reader_t *r, char *out, size_t size);
/* True when every field was read and nothing is left over. */
bool wire_done(const wire_reader_t *r);

#endif
