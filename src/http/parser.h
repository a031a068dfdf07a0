/* http/parser.h — HTTP/1.1 request head and chunked-body parsing.
 *
 * Resumable and allocation-free in the picohttpparser style: the caller passes
 * everything received so far; the parser either reports that more bytes are needed,
 * or fills an http_request_t whose slices point into the caller's buffer (valid as
 * long as that buffer is), or returns an error that maps to an HTTP status. The
 * parser keeps no state between calls: a head is re-parsed from the start when more
 * bytes arrive (heads are small, and limits bound the work).
 *
 * What it checks: request line "METHOD SP target SP HTTP/1.x CRLF" with single spaces
 * (method a token, target visible ASCII, origin-form or asterisk-form; HTTP/1.0 and
 * 1.1, a higher 1.x minor is handled as 1.1 per RFC 9110 §2.5), header field names
 * are tokens with no whitespace before the colon, values have no CTLs other than
 * HTAB, no obsolete line folding, a bare LF is accepted as a line end as RFC 9112
 * §2.2 allows, and empty lines before the request line are skipped (they count as
 * head bytes); at most limits->max_headers fields and limits->max_head_size bytes of
 * head. It derives Content-Length (digits only; repeated fields must agree),
 * Transfer-Encoding (only "chunked", once; refused with Content-Length, in HTTP/1.0,
 * or empty), keep-alive (1.1 default on, 1.0 default off, Connection header wins) and
 * the Upgrade intent (never for HTTP/1.0). A second Host field is refused. A missing
 * Host is accepted: this server does not route on it. */
#ifndef PARLEY_HTTP_PARSER_H
#define PARLEY_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/slice.h"

#define HTTP_MAX_HEADERS_CAP 100

typedef struct {
    slice_t name;
    slice_t value; /* leading and trailing whitespace removed */
} http_header_t;

typedef struct {
    size_t max_head_size; /* request line + headers incl. final CRLF, bytes; over: 431 */
    size_t max_headers;   /* header fields; over it: 431 (at most HTTP_MAX_HEADERS_CAP) */
} http_limits_t;

typedef struct {
    slice_t method;
    slice_t target; /* as sent: path and query */
    slice_t path;   /* target up to '?' */
    slice_t query;  /* after '?', without it; empty when absent */
    int minor_version;
    http_header_t headers[HTTP_MAX_HEADERS_CAP];
    size_t num_headers;
    int64_t content_length; /* -1 when absent */
    bool chunked;
    bool keep_alive;
    bool upgrade; /* Connection: upgrade and an Upgrade header */
} http_request_t;

/* Result codes below zero. HTTP_PARSE_INCOMPLETE means "call again with more bytes".
 * The other negatives are minus the HTTP status to answer with before closing:
 * -400 malformed, -431 head too large / too many headers, -501 unsupported
 * Transfer-Encoding, -505 unsupported HTTP version. */
#define HTTP_PARSE_INCOMPLETE (-1)

/* Parses a request head from buf[0..len). Returns the head's length in bytes (> 0,
 * including the final CRLF CRLF), HTTP_PARSE_INCOMPLETE, or -status. Errors in lines
 * that are complete are reported at once, before the rest of the head arrives. Once
 * max_head_size bytes are present without a complete head among them, returns -431,
 * so a slow client cannot grow a head past the limit. Bytes after the head (a body,
 * a pipelined request) are not looked at. req is only meaningful on a return > 0;
 * its slices borrow buf. limits is borrowed for the call. */
ssize_t http_parse_request(const char *buf, size_t len, const http_limits_t *limits,
                           http_request_t *req);

/* Case-insensitive header lookup; the first match, or NULL. */
const slice_t *http_request_header(const http_request_t *req, const char *name);

/* Chunked transfer decoding, in place and resumable: zero-initialise before the body. */
typedef struct {
    uint64_t chunk_left; /* payload bytes left in the current chunk */
    int state;           /* internal */
    size_t ext_len;      /* framing bytes of this size line or trailer section, to bound them */
} http_chunked_t;

/* Decodes chunked data in buf[0..*len) in place: on return buf[0..*len) holds the
 * decoded payload bytes found in this call, and *consumed the encoded bytes used.
 * Returns 1 when the final chunk and trailers are complete (bytes after *consumed
 * belong to the next request; further calls return 1 and consume nothing), 0 when
 * more input is needed (all input was consumed), or -400 on malformed input (and on
 * every later call). Framing lines must end in CRLF — a bare LF is refused here,
 * unlike in the head, because lenient chunk framing is a request-smuggling vector.
 * Chunk sizes above 2^62, a chunk-size line (with extensions) over 4 KiB, and a
 * trailer section over 4 KiB in total are malformed; trailers are validated as
 * fields and dropped. Callers should still bound the encoded bytes they accept, since
 * extensions make the encoding larger than the payload. */
int http_chunked_decode(http_chunked_t *dec, char *buf, size_t *len, size_t *consumed);

/* Percent-decodes src into dst (which needs src.len bytes and may be src.base to
 * decode in place; '+' is left as is; "%00" yields a NUL byte). Returns the decoded
 * length, or -1 on a malformed escape ('%' not followed by two hex digits). */
ssize_t http_percent_decode(slice_t src, char *dst);

#endif
