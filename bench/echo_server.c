/* bench/echo_server.c — the "trivial C echo server" of `make bench`: the least a server
 * can do on parley-bench's broadcast and burst scenarios, to show the ceiling that the
 * kernel (TCP over loopback on this machine's cores) puts on any server, Parley included.
 *
 * One thread, one epoll set, edge-triggered, nothing else:
 *   - accepts `GET /socket.io/?EIO=4&transport=websocket` WebSocket upgrades (anything
 *     else: 400 and close); sends the Engine.IO open packet (no pings are ever sent);
 *   - answers the Socket.IO CONNECT of namespace "/" with any auth at all (no JWT is
 *     verified: this is not a chat server, only what one costs at the least);
 *   - joinRoom {roomId}: remembers the one room of the connection, acks {ok:true};
 *     no history, no presence events;
 *   - sendMessage {roomId, text}: writes newMessage {id, seq, roomId, userId, username,
 *     text, timestamp} — the shape and about the size of Parley's — to every member of
 *     the room, sender included, and the ack {ok:true, id, seq, timestamp}; nothing is
 *     stored. The frame is built once per message and copied into each member's output.
 *   - Engine.IO ping/pong and close, WebSocket ping and close; nothing more.
 * No JSON library: the values of "roomId" and "text" are found by substring search and
 * copied as they are (still JSON-escaped). Input goes into a fixed buffer per connection
 * (a frame larger than it closes the connection); output is appended to a per-connection
 * buffer, grown on demand, and written once per loop iteration for every connection that
 * has some — so a burst of messages to one socket costs one write().
 *
 * usage: echo_server [--port N] [--host IPv4]   (defaults 3000, 127.0.0.1)
 * Prints "listening HOST:PORT" once ready; SIGINT/SIGTERM stop it. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IN_SIZE 4096        /* fixed input buffer per connection: the largest frame */
#define OUT_MAX (16u << 20) /* output queued for one connection above this: close it */
#define MAX_ROOM 128        /* room id bytes (as the chat contract) */
#define MAX_FRAME_OUT (IN_SIZE + 512)

typedef struct room room_t;

typedef struct conn {
    int fd;
    uint32_t id;
    uint8_t state; /* 0 HTTP head, 1 WebSocket */
    bool dirty;
    uint32_t in_len;
    uint8_t in[IN_SIZE];
    uint8_t *out;
    uint32_t out_len, out_cap, out_off;
    struct conn *next_dirty;
    room_t *room;
    uint32_t room_pos; /* index in room->members */
} conn_t;

struct room {
    char name[MAX_ROOM + 1];
    uint32_t name_len;
    uint64_t seq;
    conn_t **members;
    uint32_t n, cap;
    room_t *next; /* hash chain */
};

#define ROOM_BUCKETS 65536
static room_t *rooms[ROOM_BUCKETS];
static conn_t *dirty_list;
static int ep;
static uint32_t next_id;
static volatile sig_atomic_t stop;

/* ---- SHA-1 and base64, for Sec-WebSocket-Accept ---- */

static uint32_t rol(uint32_t x, int n) {
    return x << n | x >> (32 - n);
}

static void sha1(const uint8_t *msg, size_t len, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    uint8_t block[64];
    uint64_t bits = (uint64_t)len * 8;
    size_t total = ((len + 8) / 64 + 1) * 64;
    for (size_t off = 0; off < total; off += 64) {
        for (size_t i = 0; i < 64; i++) {
            size_t k = off + i;
            block[i] = k < len ? msg[k] : k == len ? 0x80 : 0;
        }
        if (off + 64 == total)
            for (int i = 0; i < 8; i++)
                block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
                   (uint32_t)block[4 * i + 2] << 8 | block[4 * i + 3];
        for (int i = 16; i < 80; i++)
            w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20)
                f = (b & c) | (~b & d), k = 0x5A827999;
            else if (i < 40)
                f = b ^ c ^ d, k = 0x6ED9EBA1;
            else if (i < 60)
                f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
            else
                f = b ^ c ^ d, k = 0xCA62C1D6;
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d, d = c, c = rol(b, 30), b = a, a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

static size_t base64(const uint8_t *in, size_t len, char *out) {
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
        out[o++] = T[v >> 18 & 63];
        out[o++] = T[v >> 12 & 63];
        out[o++] = i + 1 < len ? T[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? T[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

/* ---- output ---- */

static void conn_close(conn_t *c);

static bool out_append(conn_t *c, const void *data, size_t len) {
    if (c->out_len + len > c->out_cap) {
        if (c->out_off > 0) { /* compact what was written already */
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + len > c->out_cap) {
            size_t cap = c->out_cap ? c->out_cap : 1024;
            while (cap < c->out_len + len)
                cap *= 2;
            uint8_t *p = cap <= OUT_MAX ? realloc(c->out, cap) : NULL;
            if (!p)
                return false;
            c->out = p;
            c->out_cap = (uint32_t)cap;
        }
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += (uint32_t)len;
    if (!c->dirty) {
        c->dirty = true;
        c->next_dirty = dirty_list;
        dirty_list = c;
    }
    return true;
}

/* Writes what c has; the rest waits for EPOLLOUT. Returns false when c was closed. */
static bool flush(conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return true;
        if (n <= 0) {
            conn_close(c);
            return false;
        }
        c->out_off += (uint32_t)n;
    }
    c->out_off = c->out_len = 0;
    if (c->out_cap > 64 * 1024) { /* a burst's buffer: give it back */
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    return true;
}

/* A server → client frame header (unmasked) for a payload of len bytes. */
static size_t ws_header(uint8_t *h, uint8_t opcode, size_t len) {
    h[0] = 0x80 | opcode;
    if (len < 126) {
        h[1] = (uint8_t)len;
        return 2;
    }
    h[1] = 126;
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    return 4;
}

static bool send_frame(conn_t *c, uint8_t opcode, const char *payload, size_t len) {
    uint8_t h[4];
    size_t hl = ws_header(h, opcode, len);
    return out_append(c, h, hl) && out_append(c, payload, len);
}

/* ---- rooms ---- */

static uint32_t hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static room_t *room_get(const char *name, size_t len) {
    uint32_t b = hash(name, len) & (ROOM_BUCKETS - 1);
    for (room_t *r = rooms[b]; r; r = r->next)
        if (r->name_len == len && memcmp(r->name, name, len) == 0)
            return r;
    room_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    memcpy(r->name, name, len);
    r->name_len = (uint32_t)len;
    r->next = rooms[b];
    rooms[b] = r;
    return r;
}

static void room_leave(conn_t *c) {
    room_t *r = c->room;
    if (!r)
        return;
    conn_t *last = r->members[--r->n];
    r->members[c->room_pos] = last;
    last->room_pos = c->room_pos;
    c->room = NULL;
}

static bool room_join(conn_t *c, room_t *r) {
    if (c->room == r)
        return true;
    room_leave(c);
    if (r->n == r->cap) {
        uint32_t cap = r->cap ? 2 * r->cap : 16;
        conn_t **m = realloc(r->members, cap * sizeof *m);
        if (!m)
            return false;
        r->members = m;
        r->cap = cap;
    }
    c->room = r;
    c->room_pos = r->n;
    r->members[r->n++] = c;
    return true;
}

/* ---- Socket.IO ---- */

/* The JSON string value after `"key":"` in p[0..n): its start and length (escapes
 * kept), or NULL. */
static const char *string_value(const char *p, size_t n, const char *key, size_t *len) {
    size_t kl = strlen(key);
    const char *k = memmem(p, n, key, kl);
    if (!k)
        return NULL;
    const char *v = k + kl, *end = p + n;
    while (v < end && (*v == ' ' || *v == ':'))
        v++;
    if (v >= end || *v != '"')
        return NULL;
    const char *s = ++v;
    while (v < end && *v != '"')
        v += *v == '\\' ? 2 : 1;
    if (v >= end)
        return NULL;
    *len = (size_t)(v - s);
    return s;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool on_event(conn_t *c, const char *p, size_t n) {
    /* p: after "42": an optional ack id, then ["name",{...}] */
    uint64_t ack = 0;
    bool has_ack = false;
    size_t i = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
        ack = ack * 10 + (uint64_t)(p[i++] - '0');
        has_ack = true;
    }
    p += i;
    n -= i;
    char buf[MAX_FRAME_OUT + 64];
    size_t rlen, tlen;
    const char *room = string_value(p, n, "\"roomId\"", &rlen);
    if (n >= 11 && memcmp(p, "[\"joinRoom\"", 11) == 0) {
        room_t *r = room && rlen > 0 && rlen <= MAX_ROOM ? room_get(room, rlen) : NULL;
        if (r && !room_join(c, r))
            return false;
        if (!has_ack)
            return true;
        int len =
            r ? snprintf(buf, sizeof buf,
                         "43%llu[{\"ok\":true,\"roomId\":\"%.*s\",\"members\":[]}]",
                         (unsigned long long)ack, (int)rlen, room)
              : snprintf(buf, sizeof buf, "43%llu[{\"ok\":false,\"error\":\"invalid_payload\"}]",
                         (unsigned long long)ack);
        return send_frame(c, 0x1, buf, (size_t)len);
    }
    if (n >= 14 && memcmp(p, "[\"sendMessage\"", 14) == 0) {
        const char *text = string_value(p, n, "\"text\"", &tlen);
        room_t *r = c->room;
        int len;
        if (!room || !r || r->name_len != rlen || memcmp(r->name, room, rlen) != 0) {
            len = snprintf(buf, sizeof buf, "43%llu[{\"ok\":false,\"error\":\"not_in_room\"}]",
                           (unsigned long long)ack);
            return !has_ack || send_frame(c, 0x1, buf, (size_t)len);
        }
        if (!text || tlen == 0) {
            len = snprintf(buf, sizeof buf, "43%llu[{\"ok\":false,\"error\":\"invalid_payload\"}]",
                           (unsigned long long)ack);
            return !has_ack || send_frame(c, 0x1, buf, (size_t)len);
        }
        uint64_t seq = ++r->seq, ts = now_ms();
        /* the newMessage frame, once, header included */
        uint8_t *f = (uint8_t *)buf;
        char *pl = buf + 4;
        len = snprintf(
            pl, sizeof buf - 4,
            "42[\"newMessage\",{\"id\":\"e%x-%llx\",\"seq\":%llu,\"roomId\":\"%.*s\","
            "\"userId\":\"u%u\",\"username\":\"u%u\",\"text\":\"%.*s\",\"timestamp\":%llu}]",
            c->id, (unsigned long long)seq, (unsigned long long)seq, (int)rlen, room, c->id, c->id,
            (int)tlen, text, (unsigned long long)ts);
        if (len < 0 || (size_t)len >= sizeof buf - 4)
            return false;
        uint8_t h[4];
        size_t hl = ws_header(h, 0x1, (size_t)len);
        memcpy(f + 4 - hl, h, hl);
        const uint8_t *frame = f + 4 - hl;
        size_t flen = hl + (size_t)len;
        for (uint32_t m = 0; m < r->n; m++)
            if (!out_append(r->members[m], frame, flen))
                return false; /* only when out of memory: give up on the sender */
        if (!has_ack)
            return true;
        char ackbuf[160];
        len = snprintf(ackbuf, sizeof ackbuf,
                       "43%llu[{\"ok\":true,\"id\":\"e%x-%llx\",\"seq\":%llu,\"timestamp\":%llu}]",
                       (unsigned long long)ack, c->id, (unsigned long long)seq,
                       (unsigned long long)seq, (unsigned long long)ts);
        return send_frame(c, 0x1, ackbuf, (size_t)len);
    }
    return true; /* other events: ignored */
}

/* One Engine.IO packet (a text frame's payload). Returns false to close. */
static bool on_eio(conn_t *c, const char *p, size_t n) {
    if (n == 0)
        return true;
    switch (p[0]) {
    case '1': /* close */
        return false;
    case '2': /* ping → pong */
        return send_frame(c, 0x1, "3", 1);
    case '4':
        if (n >= 2 && p[1] == '0') { /* CONNECT "/" (any auth) */
            char buf[64];
            int len = snprintf(buf, sizeof buf, "40{\"sid\":\"s%08x\"}", c->id);
            return send_frame(c, 0x1, buf, (size_t)len);
        }
        if (n >= 2 && p[1] == '1') /* DISCONNECT */
            return false;
        if (n >= 2 && p[1] == '2')
            return on_event(c, p + 2, n - 2);
        return true;
    default:
        return true;
    }
}

/* ---- connections ---- */

static void conn_close(conn_t *c) {
    room_leave(c);
    close(c->fd);
    c->fd = -1;
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = c->out_cap = 0;
    /* freed after the loop iteration: it may still be on the dirty list */
    if (!c->dirty) {
        c->dirty = true;
        c->next_dirty = dirty_list;
        dirty_list = c;
    }
}

static bool on_head(conn_t *c, size_t *used) {
    const uint8_t *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end)
        return c->in_len < IN_SIZE;
    *used = (size_t)(end + 4 - c->in);
    const char *h = (const char *)c->in;
    size_t hl = *used;
    const char *key = memmem(h, hl, "Sec-WebSocket-Key:", 18);
    if (!key)
        key = memmem(h, hl, "sec-websocket-key:", 18);
    if (hl < 15 || memcmp(h, "GET /socket.io/", 15) != 0 || !key) {
        static const char BAD[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n";
        out_append(c, BAD, sizeof BAD - 1);
        flush(c);
        return false;
    }
    key += 18;
    while (*key == ' ')
        key++;
    const char *ke = key;
    while (ke < h + hl && *ke != '\r' && *ke != ' ')
        ke++;
    char cat[128];
    size_t kl = (size_t)(ke - key);
    if (kl > 64)
        return false;
    int cl = snprintf(cat, sizeof cat, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", (int)kl, key);
    uint8_t digest[20];
    sha1((const uint8_t *)cat, (size_t)cl, digest);
    char accept[32], resp[256], open[160];
    base64(digest, 20, accept);
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    int on = snprintf(open, sizeof open,
                      "0{\"sid\":\"e%08x\",\"upgrades\":[],\"pingInterval\":25000,"
                      "\"pingTimeout\":20000,\"maxPayload\":1000000}",
                      c->id);
    c->state = 1;
    return out_append(c, resp, (size_t)n) && send_frame(c, 0x1, open, (size_t)on);
}

/* Parses complete frames in c->in; returns false to close. */
static bool on_input(conn_t *c) {
    size_t off = 0;
    if (c->state == 0) {
        size_t used = 0;
        if (!on_head(c, &used))
            return false;
        off = used;
        if (c->state == 0)
            return true; /* head incomplete */
    }
    while (c->in_len - off >= 2) {
        uint8_t *p = c->in + off;
        size_t avail = c->in_len - off, h = 2;
        uint64_t plen = p[1] & 0x7f;
        if (!(p[1] & 0x80) || !(p[0] & 0x80))
            return false; /* unmasked or fragmented client frame */
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = (uint64_t)p[2] << 8 | p[3];
            h = 4;
        } else if (plen == 127) {
            return false; /* larger than IN_SIZE anyway */
        }
        if (h + 4 + plen > IN_SIZE)
            return false;
        if (avail < h + 4 + plen)
            break;
        uint8_t *mask = p + h, *payload = p + h + 4;
        for (uint64_t i = 0; i < plen; i++)
            payload[i] ^= mask[i & 3];
        off += h + 4 + (size_t)plen;
        switch (p[0] & 0x0f) {
        case 0x1:
            if (!on_eio(c, (const char *)payload, (size_t)plen))
                return false;
            break;
        case 0x8:
            return false;
        case 0x9:
            if (!send_frame(c, 0xA, (const char *)payload, (size_t)plen))
                return false;
            break;
        default:
            break;
        }
        if (c->fd < 0)
            return true;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= (uint32_t)off;
    return true;
}

static void on_readable(conn_t *c) {
    for (;;) {
        ssize_t n = read(c->fd, c->in + c->in_len, IN_SIZE - c->in_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->in_len += (uint32_t)n;
        if (!on_input(c)) {
            if (c->fd >= 0)
                conn_close(c);
            return;
        }
        if (c->fd < 0)
            return;
        if (c->in_len == IN_SIZE) { /* a frame larger than the buffer */
            conn_close(c);
            return;
        }
    }
}

static void on_accept(int lfd) {
    for (;;) {
        /* The analyzer loses the connection below once it is only in epoll's data. */
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                perror("echo_server: accept");
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* Owned by its epoll registration from here; conn_close frees it. */
        conn_t *c = calloc(1, sizeof *c);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = c};
        if (!c || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) {
            free(c);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->id = ++next_id;
    }
}

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 3000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else {
            fprintf(stderr, "usage: echo_server [--port N] [--host IPv4]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (lfd < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1 ||
        bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 4096)) {
        perror("echo_server: listen");
        return 1;
    }
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    printf("listening %s:%u\n", host, ntohs(a.sin_port));
    fflush(stdout);

    static struct epoll_event events[1024];
    while (!stop) {
        int n = epoll_wait(ep, events, 1024, 1000);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (!c) {
                on_accept(lfd);
                continue;
            }
            if (c->fd < 0)
                continue;
            if ((events[i].events & EPOLLOUT) && !flush(c))
                continue;
            if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                on_readable(c);
        }
        /* one write per connection per iteration; closed connections are freed here */
        while (dirty_list) {
            conn_t *c = dirty_list;
            dirty_list = c->next_dirty;
            c->dirty = false;
            if (c->fd >= 0)
                flush(c);
            if (c->fd < 0 && !c->dirty)
                free(c);
        }
    }
    return 0;
}
