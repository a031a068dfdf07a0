/* http/static.c — static files from memory, validated by stat() (see static.h). */
#include "http/static.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"
#include "util/map.h"

#define STATIC_MAX_FILE (16u << 20)

typedef struct {
    char *path; /* map key: the full path */
    rcbuf_t *body, *gz;
    off_t size, gz_size;
    struct timespec mtime, gz_mtime;
    char etag[64];
} entry_t;

struct http_static {
    char *root;
    char *headers; /* extra header lines for every answer, or NULL */
    map_t files;
};

http_static_t *http_static_new(const char *root) {
    http_static_t *st = calloc(1, sizeof *st);
    if (!st || !(st->root = strdup(root)) || map_init(&st->files)) {
        if (st)
            free(st->root);
        free(st);
        return NULL;
    }
    return st;
}

static void entry_free(entry_t *e) {
    if (e->body)
        ref_release(&e->body->ref);
    if (e->gz)
        ref_release(&e->gz->ref);
    free(e->path);
    free(e);
}

void http_static_free(http_static_t *st) {
    map_entry_t *me;
    for (size_t pos = 0; map_next(&st->files, &pos, &me);)
        entry_free(me->value);
    map_free(&st->files);
    free(st->headers);
    free(st->root);
    free(st);
}

/* Room for the extra lines in the answers' head buffers (lines[], allow[] below). */
#define STATIC_HEADERS_MAX 1024

int http_static_set_headers(http_static_t *st, const char *lines) {
    if (lines && strlen(lines) >= STATIC_HEADERS_MAX)
        return -EINVAL;
    char *copy = lines && *lines ? strdup(lines) : NULL;
    if (lines && *lines && !copy)
        return -ENOMEM;
    free(st->headers);
    st->headers = copy;
    return 0;
}

const char *http_static_type(const char *name) {
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".map", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".woff2", "font/woff2"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

static bool path_safe(slice_t p) {
    if (p.len == 0 || p.base[0] != '/' || memchr(p.base, '\0', p.len) ||
        memchr(p.base, '\\', p.len))
        return false;
    for (size_t i = 0; i + 1 < p.len; i++)
        if (p.base[i] == '/' && p.base[i + 1] == '.')
            return false; /* no "..", no hidden files */
    return true;
}

/* Reads a whole regular file into a new rcbuf. */
static rcbuf_t *read_file(const char *path, const struct stat *sb) {
    if (sb->st_size > STATIC_MAX_FILE)
        return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    rcbuf_t *b = rcbuf_new(NULL, (size_t)sb->st_size);
    size_t got = 0;
    while (b && got < b->len) {
        ssize_t n = read(fd, b->data + got, b->len - got);
        if (n <= 0) {
            ref_release(&b->ref);
            b = NULL;
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    return b;
}

/* Whether Accept-Encoding lists gzip with a q-value above 0. */
static bool accepts_gzip(slice_t ae) {
    size_t i = 0;
    while (i < ae.len) {
        while (i < ae.len && (ae.base[i] == ' ' || ae.base[i] == ','))
            i++;
        size_t start = i;
        while (i < ae.len && ae.base[i] != ',')
            i++;
        char item[64];
        size_t n = i - start < sizeof item - 1 ? i - start : sizeof item - 1;
        memcpy(item, ae.base + start, n);
        item[n] = '\0';
        char *semi = strchr(item, ';');
        if (semi)
            *semi = '\0';
        size_t name_len = strcspn(item, " \t");
        if (name_len != 4 || strncasecmp(item, "gzip", 4) != 0)
            continue;
        const char *q = semi ? strstr(semi + 1, "q=") : NULL;
        return !q || strtod(q + 2, NULL) > 0;
    }
    return false;
}

static bool same_time(struct timespec a, struct timespec b) {
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* The cache entry for full, loaded or refreshed to match the file now on disk. */
static entry_t *lookup(http_static_t *st, const char *full) {
    struct stat sb;
    if (stat(full, &sb) || !S_ISREG(sb.st_mode))
        return NULL;
    entry_t *e = map_get(&st->files, full, strlen(full));
    if (!e || e->size != sb.st_size || !same_time(e->mtime, sb.st_mtim)) {
        rcbuf_t *body = read_file(full, &sb);
        if (!body)
            return NULL;
        if (!e) {
            e = calloc(1, sizeof *e);
            if (!e || !(e->path = strdup(full)) ||
                map_put(&st->files, e->path, strlen(e->path), e)) {
                if (e)
                    free(e->path);
                free(e);
                ref_release(&body->ref);
                return NULL;
            }
        } else {
            ref_release(&e->body->ref);
        }
        e->body = body;
        e->size = sb.st_size;
        e->mtime = sb.st_mtim;
        snprintf(e->etag, sizeof e->etag, "\"%" PRIx64 "-%" PRIx64 "%09ld\"", (uint64_t)sb.st_size,
                 (uint64_t)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec);
    }
    /* The precompressed variant, when present and current. */
    char gz_path[4200];
    struct stat gz;
    snprintf(gz_path, sizeof gz_path, "%s.gz", full);
    if (stat(gz_path, &gz) == 0 && S_ISREG(gz.st_mode)) {
        if (!e->gz || e->gz_size != gz.st_size || !same_time(e->gz_mtime, gz.st_mtim)) {
            rcbuf_t *b = read_file(gz_path, &gz);
            if (e->gz)
                ref_release(&e->gz->ref);
            e->gz = b;
            e->gz_size = gz.st_size;
            e->gz_mtime = gz.st_mtim;
        }
    } else if (e->gz) {
        ref_release(&e->gz->ref);
        e->gz = NULL;
    }
    return e;
}

bool http_static_serve(http_static_t *st, http_conn_t *hc, const http_req_t *req,
                       const char *path_base, size_t path_len) {
    slice_t path = slice_make(path_base, path_len);
    if (!path_safe(path) || path.len > 4000)
        return false;
    char full[4200];
    bool dir = path.base[path.len - 1] == '/';
    snprintf(full, sizeof full, "%s%.*s%s", st->root, (int)path.len, path.base,
             dir ? "index.html" : "");
    entry_t *e = lookup(st, full);
    if (!e)
        return false;
    bool get = slice_eq(req->head.method, "GET") || slice_eq(req->head.method, "HEAD");
    if (!get) {
        char allow[1024];
        snprintf(allow, sizeof allow, "Allow: GET, HEAD\r\n%s", st->headers ? st->headers : "");
        http_respond(hc, 405, "text/plain; charset=utf-8", allow, "Method Not Allowed\n", 19);
        return true;
    }
    const slice_t *inm = http_request_header(&req->head, "if-none-match");
    const slice_t *ae = http_request_header(&req->head, "accept-encoding");
    bool use_gz = e->gz && ae && accepts_gzip(*ae);
    char lines[1536];
    snprintf(lines, sizeof lines,
             "Content-Type: %s\r\nETag: %s\r\nCache-Control: no-cache\r\n%s%s%s",
             http_static_type(full), e->etag, e->gz ? "Vary: Accept-Encoding\r\n" : "",
             use_gz ? "Content-Encoding: gzip\r\n" : "", st->headers ? st->headers : "");
    if (inm && (slice_eq(*inm, e->etag) || slice_has_token(*inm, e->etag) || slice_eq(*inm, "*"))) {
        if (http_send_head(hc, 304, lines, 0) == 0)
            http_response_done(hc);
        return true;
    }
    rcbuf_t *b = use_gz ? e->gz : e->body;
    if (http_send_head(hc, 200, lines, (int64_t)b->len) ||
        http_send_body(hc, &b->ref, b->data, b->len)) {
        net_conn_abort(http_conn_net(hc));
        return true;
    }
    http_response_done(hc);
    return true;
}
