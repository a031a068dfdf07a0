/* http/parser.c — HTTP/1.1 request heads, chunked bodies and percent-escapes.
 *
 * The head parser works a line at a time over at most max_head_size bytes: it finds
 * each complete line, checks it, and stops with "need more" at the first line that
 * has not fully arrived. So an error on a complete line is reported at once (a bad
 * request line does not wait for the rest of the head), and the work per call is
 * bounded by the limit, not by what the peer sends. Framing (Content-Length,
 * Transfer-Encoding) is derived only once the head is complete, because it depends
 * on every field together.
 *
 * The chunked decoder is a byte state machine, because chunk boundaries can fall
 * anywhere in a read; payload runs are moved with memmove rather than byte by byte.
 * It is stricter than the head parser about line ends (CRLF only) since lenient
 * chunk framing is the classic request-smuggling gap between a proxy and a server. */
#include "http/parser.h"

#include <string.h>

#define HTTP_E_BAD_REQUEST (-400)
#define HTTP_E_TOO_LARGE (-431)
#define HTTP_E_NOT_IMPLEMENTED (-501)
#define HTTP_E_VERSION (-505)

/* Largest chunk size accepted: far beyond any real body, and small enough that the
 * hex accumulator cannot overflow before the check. */
#define HTTP_CHUNK_SIZE_MAX (UINT64_C(1) << 62)
/* Bound on one chunk-size line (size, extensions, CRLF) and on the whole trailer
 * section, in bytes: neither carries payload, so neither may grow without limit. */
#define HTTP_CHUNK_LINE_MAX 4096

/* RFC 9110 §5.6.2 tchar. */
static bool is_tchar(unsigned char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Bytes allowed in a field value, chunk extension or trailer: VCHAR, obs-text, SP and
 * HTAB — every control character except HTAB is refused. */
static bool is_field_char(unsigned char c) {
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_ows(char c) {
    return c == ' ' || c == '\t';
}

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool all_tchar(slice_t s) {
    for (size_t i = 0; i < s.len; i++)
        if (!is_tchar((unsigned char)s.base[i]))
            return false;
    return s.len > 0;
}

/* ---- request head ---------------------------------------------------------------- */

typedef struct {
    const char *buf;
    size_t len; /* the window: min(bytes received, max_head_size) */
    size_t pos;
} head_cursor_t;

/* Takes the next complete line (without its LF or CRLF) from the window. False when
 * the line has not fully arrived. A CR left inside the line is rejected later as a
 * control character, so a bare CR never passes for a line end. */
static bool head_next_line(head_cursor_t *cur, slice_t *line) {
    const char *start = cur->buf + cur->pos;
    const char *lf = memchr(start, '\n', cur->len - cur->pos);
    if (lf == NULL)
        return false;
    size_t n = (size_t)(lf - start);
    cur->pos += n + 1;
    if (n > 0 && start[n - 1] == '\r')
        n--;
    *line = slice_make(start, n);
    return true;
}

/* "HTTP/" DIGIT "." DIGIT. Another major version is understood but unsupported
 * (505); a higher 1.x minor is handled as 1.1, as RFC 9110 §2.5 asks. */
static int parse_version(slice_t v, int *minor) {
    if (v.len != 8 || memcmp(v.base, "HTTP/", 5) != 0 || v.base[6] != '.')
        return HTTP_E_BAD_REQUEST;
    int major = v.base[5] - '0';
    int min = v.base[7] - '0';
    if (major < 0 || major > 9 || min < 0 || min > 9)
        return HTTP_E_BAD_REQUEST;
    if (major != 1)
        return HTTP_E_VERSION;
    *minor = min > 1 ? 1 : min;
    return 0;
}

/* Origin-form ("/path?query") or asterisk-form ("*"); visible ASCII only. Absolute-
 * and authority-form are for proxies and CONNECT, which this server is not. */
static int parse_target(slice_t t, http_request_t *req) {
    if (t.len == 0 || (t.base[0] != '/' && !(t.len == 1 && t.base[0] == '*')))
        return HTTP_E_BAD_REQUEST;
    for (size_t i = 0; i < t.len; i++) {
        unsigned char c = (unsigned char)t.base[i];
        if (c <= 0x20 || c >= 0x7f)
            return HTTP_E_BAD_REQUEST;
    }
    const char *q = memchr(t.base, '?', t.len);
    size_t path_len = q ? (size_t)(q - t.base) : t.len;
    req->target = t;
    req->path = slice_make(t.base, path_len);
    req->query = q ? slice_make(q + 1, t.len - path_len - 1) : slice_make(t.base + t.len, 0);
    return 0;
}

/* METHOD SP target SP HTTP-version, single spaces only. */
static int parse_request_line(slice_t line, http_request_t *req) {
    const char *end = line.base + line.len;
    const char *sp1 = memchr(line.base, ' ', line.len);
    if (sp1 == NULL)
        return HTTP_E_BAD_REQUEST;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
    if (sp2 == NULL)
        return HTTP_E_BAD_REQUEST;
    req->method = slice_make(line.base, (size_t)(sp1 - line.base));
    if (!all_tchar(req->method))
        return HTTP_E_BAD_REQUEST;
    int rc = parse_target(slice_make(sp1 + 1, (size_t)(sp2 - sp1 - 1)), req);
    if (rc < 0)
        return rc;
    return parse_version(slice_make(sp2 + 1, (size_t)(end - sp2 - 1)), &req->minor_version);
}

/* name ":" OWS value OWS. A line starting with whitespace is obsolete folding (or
 * whitespace before the first field); both are refused, as is whitespace between the
 * name and the colon (RFC 9112 §5.1), because proxies disagree on what they mean. */
static int parse_header_line(slice_t line, http_header_t *h) {
    const char *colon = memchr(line.base, ':', line.len);
    if (colon == NULL)
        return HTTP_E_BAD_REQUEST;
    h->name = slice_make(line.base, (size_t)(colon - line.base));
    if (!all_tchar(h->name))
        return HTTP_E_BAD_REQUEST;
    const char *v = colon + 1;
    const char *end = line.base + line.len;
    for (const char *p = v; p < end; p++)
        if (!is_field_char((unsigned char)*p))
            return HTTP_E_BAD_REQUEST;
    while (v < end && is_ows(*v))
        v++;
    while (end > v && is_ows(end[-1]))
        end--;
    h->value = slice_make(v, (size_t)(end - v));
    return 0;
}

/* Reads field lines up to the empty line. Returns 1 when the head is complete, 0 when
 * a line has not fully arrived, or a negative status. */
static int parse_header_lines(head_cursor_t *cur, size_t max_headers, http_request_t *req) {
    slice_t line;
    while (head_next_line(cur, &line)) {
        if (line.len == 0)
            return 1;
        if (req->num_headers == max_headers)
            return HTTP_E_TOO_LARGE;
        int rc = parse_header_line(line, &req->headers[req->num_headers]);
        if (rc < 0)
            return rc;
        req->num_headers++;
    }
    return 0;
}

/* Next element of a comma-separated list, OWS trimmed, empty elements skipped
 * (RFC 9110 §5.6.1). False at the end of the list. */
static bool list_next(slice_t *list, slice_t *item) {
    size_t i = 0;
    while (i < list->len && (is_ows(list->base[i]) || list->base[i] == ','))
        i++;
    size_t start = i;
    while (i < list->len && list->base[i] != ',')
        i++;
    size_t end = i;
    while (end > start && is_ows(list->base[end - 1]))
        end--;
    *item = slice_make(list->base + start, end - start);
    *list = slice_make(list->base + i, list->len - i);
    return item->len > 0;
}

/* Content-Length must be plain digits; repeated fields must agree. A list such as
 * "5, 5" in one field is refused: nothing legitimate sends it. */
static int add_content_length(slice_t value, int64_t *length) {
    unsigned long long n;
    if (!slice_to_u64(value, &n))
        return HTTP_E_BAD_REQUEST;
    if (*length >= 0 && (unsigned long long)*length != n)
        return HTTP_E_BAD_REQUEST;
    *length = (int64_t)n;
    return 0;
}

/* Only "chunked" is implemented, so any other coding is 501 wherever it appears;
 * chunked twice is a framing error (RFC 9112 §6.1). */
static int add_transfer_codings(slice_t value, bool *chunked) {
    slice_t coding;
    while (list_next(&value, &coding)) {
        if (!slice_case_eq(coding, "chunked"))
            return HTTP_E_NOT_IMPLEMENTED;
        if (*chunked)
            return HTTP_E_BAD_REQUEST;
        *chunked = true;
    }
    return 0;
}

/* Body framing. Transfer-Encoding together with Content-Length, or in an HTTP/1.0
 * request, is refused rather than resolved: those are the shapes request smuggling
 * uses (RFC 9112 §6.1, §6.3). A second Host is refused for the same reason. */
static int derive_framing(http_request_t *req) {
    bool has_te = false, has_host = false;
    req->content_length = -1;
    req->chunked = false;
    for (size_t i = 0; i < req->num_headers; i++) {
        const http_header_t *h = &req->headers[i];
        int rc = 0;
        if (slice_case_eq(h->name, "content-length")) {
            rc = add_content_length(h->value, &req->content_length);
        } else if (slice_case_eq(h->name, "transfer-encoding")) {
            has_te = true;
            rc = add_transfer_codings(h->value, &req->chunked);
        } else if (slice_case_eq(h->name, "host")) {
            rc = has_host ? HTTP_E_BAD_REQUEST : 0;
            has_host = true;
        }
        if (rc < 0)
            return rc;
    }
    if (has_te && (!req->chunked || req->content_length >= 0 || req->minor_version == 0))
        return HTTP_E_BAD_REQUEST;
    return 0;
}

/* Connection options may be spread over several fields. Upgrade is ignored in
 * HTTP/1.0 requests (RFC 9110 §7.8). */
static void derive_connection(http_request_t *req) {
    bool close = false, keep_alive = false, upgrade_token = false, upgrade_field = false;
    for (size_t i = 0; i < req->num_headers; i++) {
        const http_header_t *h = &req->headers[i];
        if (slice_case_eq(h->name, "connection")) {
            close |= slice_has_token(h->value, "close");
            keep_alive |= slice_has_token(h->value, "keep-alive");
            upgrade_token |= slice_has_token(h->value, "upgrade");
        } else if (slice_case_eq(h->name, "upgrade")) {
            upgrade_field |= h->value.len > 0;
        }
    }
    req->keep_alive = !close && (req->minor_version >= 1 || keep_alive);
    req->upgrade = req->minor_version >= 1 && upgrade_token && upgrade_field;
}

/* Out of complete lines: if the window already holds max_head_size bytes, the head
 * cannot fit however many more arrive. */
static ssize_t head_need_more(size_t len, size_t max_head_size) {
    return len >= max_head_size ? HTTP_E_TOO_LARGE : HTTP_PARSE_INCOMPLETE;
}

ssize_t http_parse_request(const char *buf, size_t len, const http_limits_t *limits,
                           http_request_t *req) {
    size_t max_size = limits->max_head_size;
    size_t max_headers = limits->max_headers;
    if (max_headers > HTTP_MAX_HEADERS_CAP)
        max_headers = HTTP_MAX_HEADERS_CAP;
    head_cursor_t cur = {buf, len < max_size ? len : max_size, 0};
    slice_t line;
    req->num_headers = 0;

    /* RFC 9112 §2.2: empty lines before the request line (left over after a body by
     * some clients) are skipped; they still count toward the head size. */
    do {
        if (!head_next_line(&cur, &line))
            return head_need_more(len, max_size);
    } while (line.len == 0);

    int rc = parse_request_line(line, req);
    if (rc < 0)
        return rc;
    rc = parse_header_lines(&cur, max_headers, req);
    if (rc <= 0)
        return rc < 0 ? rc : head_need_more(len, max_size);
    rc = derive_framing(req);
    if (rc < 0)
        return rc;
    derive_connection(req);
    return (ssize_t)cur.pos;
}

const slice_t *http_request_header(const http_request_t *req, const char *name) {
    for (size_t i = 0; i < req->num_headers; i++)
        if (slice_case_eq(req->headers[i].name, name))
            return &req->headers[i].value;
    return NULL;
}

/* ---- chunked bodies -------------------------------------------------------------- */

enum {
    CHUNK_SIZE_START, /* zero-initialised state: first hex digit of a size */
    CHUNK_SIZE,       /* more hex digits */
    CHUNK_SIZE_WS,    /* BWS after the size, which must lead to ';' */
    CHUNK_EXT,        /* extension bytes up to CR */
    CHUNK_SIZE_LF,
    CHUNK_DATA,
    CHUNK_DATA_CR,
    CHUNK_DATA_LF,
    CHUNK_TRAILER_START, /* start of a trailer field or of the final empty line */
    CHUNK_TRAILER_NAME,
    CHUNK_TRAILER_VALUE,
    CHUNK_TRAILER_LF,
    CHUNK_FINAL_LF,
    CHUNK_DONE,
    CHUNK_ERROR,
};

static bool chunk_size_digit(http_chunked_t *dec, unsigned char c) {
    int v = hex_value(c);
    if (v < 0 || dec->chunk_left > HTTP_CHUNK_SIZE_MAX >> 4)
        return false;
    dec->chunk_left = dec->chunk_left << 4 | (uint64_t)v;
    dec->state = CHUNK_SIZE;
    return dec->chunk_left <= HTTP_CHUNK_SIZE_MAX;
}

/* After at least one digit: more digits, BWS before an extension, ';' or CR. Bare
 * whitespace before CR is refused, as the grammar only allows it before ';'. */
static bool chunk_size_char(http_chunked_t *dec, unsigned char c) {
    if (hex_value(c) >= 0)
        return dec->state == CHUNK_SIZE && chunk_size_digit(dec, c);
    if (c == ' ' || c == '\t')
        dec->state = CHUNK_SIZE_WS;
    else if (c == ';')
        dec->state = CHUNK_EXT;
    else if (c == '\r' && dec->state == CHUNK_SIZE)
        dec->state = CHUNK_SIZE_LF;
    else
        return false;
    return true;
}

/* The size line is complete; a zero size starts the trailer section, whose byte
 * count is bounded as a whole from here on. */
static bool chunk_size_line_end(http_chunked_t *dec, unsigned char c) {
    if (c != '\n')
        return false;
    dec->state = dec->chunk_left == 0 ? CHUNK_TRAILER_START : CHUNK_DATA;
    dec->ext_len = 0;
    return true;
}

static bool chunk_expect(http_chunked_t *dec, unsigned char c, unsigned char want, int next) {
    dec->state = next;
    return c == want;
}

/* Trailer fields are checked like header fields (name ':' value, no folding) and
 * then dropped: nothing in this server reads them. */
static bool chunk_trailer_char(http_chunked_t *dec, unsigned char c) {
    switch (dec->state) {
    case CHUNK_TRAILER_START:
        dec->state = c == '\r' ? CHUNK_FINAL_LF : CHUNK_TRAILER_NAME;
        return c == '\r' || is_tchar(c);
    case CHUNK_TRAILER_NAME:
        if (c == ':')
            dec->state = CHUNK_TRAILER_VALUE;
        return c == ':' || is_tchar(c);
    case CHUNK_TRAILER_VALUE:
        if (c == '\r')
            dec->state = CHUNK_TRAILER_LF;
        return is_field_char(c) || c == '\r';
    case CHUNK_TRAILER_LF:
        return chunk_expect(dec, c, '\n', CHUNK_TRAILER_START);
    default: /* CHUNK_FINAL_LF */
        return chunk_expect(dec, c, '\n', CHUNK_DONE);
    }
}

/* One framing byte (anything but payload). Every one counts toward the line bound;
 * the count restarts with each size line and once at the trailer section. */
static bool chunk_step(http_chunked_t *dec, unsigned char c) {
    if (++dec->ext_len > HTTP_CHUNK_LINE_MAX)
        return false;
    switch (dec->state) {
    case CHUNK_SIZE_START:
        return chunk_size_digit(dec, c);
    case CHUNK_SIZE:
    case CHUNK_SIZE_WS:
        return chunk_size_char(dec, c);
    case CHUNK_EXT:
        if (c == '\r')
            dec->state = CHUNK_SIZE_LF;
        return is_field_char(c) || c == '\r';
    case CHUNK_SIZE_LF:
        return chunk_size_line_end(dec, c);
    case CHUNK_DATA_CR:
        return chunk_expect(dec, c, '\r', CHUNK_DATA_LF);
    case CHUNK_DATA_LF:
        dec->ext_len = 0;
        return chunk_expect(dec, c, '\n', CHUNK_SIZE_START);
    default: /* the trailer section; CHUNK_DATA, DONE and ERROR never get here */
        return chunk_trailer_char(dec, c);
    }
}

int http_chunked_decode(http_chunked_t *dec, char *buf, size_t *len, size_t *consumed) {
    size_t r = 0, w = 0, n = *len;
    while (r < n && dec->state != CHUNK_DONE && dec->state != CHUNK_ERROR) {
        if (dec->state == CHUNK_DATA) {
            size_t take = n - r;
            if (take > dec->chunk_left)
                take = (size_t)dec->chunk_left;
            memmove(buf + w, buf + r, take);
            w += take;
            r += take;
            dec->chunk_left -= take;
            if (dec->chunk_left == 0)
                dec->state = CHUNK_DATA_CR;
        } else if (!chunk_step(dec, (unsigned char)buf[r++])) {
            dec->state = CHUNK_ERROR;
        }
    }
    *len = w;
    *consumed = r;
    if (dec->state == CHUNK_ERROR)
        return HTTP_E_BAD_REQUEST;
    return dec->state == CHUNK_DONE;
}

/* ---- percent-decoding ------------------------------------------------------------ */

ssize_t http_percent_decode(slice_t src, char *dst) {
    size_t w = 0;
    for (size_t i = 0; i < src.len; i++) {
        char c = src.base[i];
        if (c == '%') {
            if (src.len - i < 3)
                return -1;
            int hi = hex_value((unsigned char)src.base[i + 1]);
            int lo = hex_value((unsigned char)src.base[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        dst[w++] = c;
    }
    return (ssize_t)w;
}
