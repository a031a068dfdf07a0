/* tools/bench/main.c — parley-bench: a load generator for Socket.IO chat servers (Parley
 * and the Node.js reference in bench/node), speaking the chat contract of
 * docs/CHAT-API.md.
 *
 * The parent parses the command line, forks --procs workers (each process may hold
 * fewer than 20,000 descriptors, so large runs need several), waits until every worker
 * has its connections ready, starts them together (GO: send start, measured window),
 * samples the server from /proc at the window's edges, merges the workers' reports and
 * prints them (summary.c). The workers are worker.c; the protocols wsio.c and
 * httpsub.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "procstat.h"
#include "summary.h"
#include "worker.h"

#define MAX_PROCS 64
#define FDS_PER_PROC 18000 /* connections per worker by default (ulimit -n is 20,000) */

static const char USAGE[] =
    "usage: parley-bench <scenario> [options]\n"
    "\n"
    "Scenarios (every one stops by itself):\n"
    "  ramp       open N connections at R/s (WebSocket, Socket.IO CONNECT with a JWT);\n"
    "             handshakes/s, errors, connect latency\n"
    "  idle       open N connections, hold them D s; server RSS per connection and CPU\n"
    "  broadcast  N clients in rooms of K (client i joins room i/K), S senders at M msg/s\n"
    "             each; newMessage latency, deliveries/s, lost\n"
    "  burst      one room of N, one sender with W acks outstanding, as fast as it goes\n"
    "  chat       rooms of K, every client sends at M msg/s; ack and delivery latency\n"
    "  sse        N subscribers on GET /api/rooms/<room>/events, S Socket.IO senders\n"
    "  longpoll   N subscribers on GET /api/rooms/<room>/messages?after=&wait=, S senders\n"
    "\n"
    "Options (defaults in brackets; * = depends on the scenario):\n"
    "  --host IP            server IPv4 address [127.0.0.1]\n"
    "  --port N             server port [3000]\n"
    "  --path P             Socket.IO path [/socket.io/]\n"
    "  --jwt-secret S       the server's HS256 secret [$PARLEY_JWT_SECRET] (required)\n"
    "  --clients N          connections, or HTTP subscribers for sse/longpoll [1000]\n"
    "  --room-size K        clients per room [* 10; burst: N; sse/longpoll: 100]\n"
    "  --senders S          senders [* one per room; chat: N; burst: 1]\n"
    "  --rate M             messages/s per sender [* 10; chat: 1]\n"
    "  --window W           burst: acks outstanding [64]\n"
    "  --connect-rate R     connections opened per second, all workers [2000]\n"
    "  --in-flight F        handshakes under way at most, all workers (0: no bound) [0];\n"
    "                       below the server's listen backlog, a ramp measures the\n"
    "                       server's pace, not the SYN retransmit timer of a full queue\n"
    "  --warmup S           seconds of sending before the measured window [* 2; idle: 0]\n"
    "  --duration D         seconds measured (idle: holding) [* 5; idle: 10]\n"
    "  --drain S            seconds to wait for late deliveries after the window [2]\n"
    "  --timeout S          handshake timeout after the last connect is due [10]\n"
    "  --procs N            worker processes [ceil(connections / 18000)]\n"
    "  --per-addr N         connections per source address 127.0.0.2, .3, ... [10000]\n"
    "  --text-bytes B       message text length (it starts with \"T<send ns> \") [100]\n"
    "  --text-words         pad the text with pseudo-random words instead of 'x' (what\n"
    "                       compresses like chat text, not like a run of one letter)\n"
    "  --deflate            offer permessage-deflate (as browsers: client_max_window_bits)\n"
    "                       and inflate compressed frames; sends stay uncompressed\n"
    "  --wait S             longpoll: wait= of each request [30]\n"
    "  --room-prefix P      name rooms P-0, P-1, ... instead of fresh ones per run, so a\n"
    "                       run can use rooms an earlier run or the server has already\n"
    "                       (at most 31 characters of [A-Za-z0-9_-])\n"
    "  --user-base B        client g signs in as user u<B+g>, not u<g>, so the users of\n"
    "                       one run can be kept apart from another's [0]\n"
    "  --server-pid LIST    comma-separated server PIDs: CPU and RSS of them and their\n"
    "                       descendants are sampled from /proc\n"
    "  --help               this text\n"
    "\n"
    "Output: a table, then one JSON line with every figure (see tools/bench/README.md).\n"
    "Exit status: 0 when the run completed (see the figures for errors), 1 on bad usage,\n"
    "2 when a worker failed.\n";

static const struct {
    const char *name;
    scenario_t scenario;
} SCENARIOS[] = {
    {"ramp", SCENARIO_RAMP},         {"idle", SCENARIO_IDLE}, {"broadcast", SCENARIO_BROADCAST},
    {"burst", SCENARIO_BURST},       {"chat", SCENARIO_CHAT}, {"sse", SCENARIO_SSE},
    {"longpoll", SCENARIO_LONGPOLL},
};

static int usage_error(const char *msg) {
    fprintf(stderr, "parley-bench: %s (see --help)\n", msg);
    return 1;
}

static bool parse_num(const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* Every sender must be a distinct member of its room (receivers are the senders). */
static bool senders_fit(const bench_config_t *cfg) {
    if (cfg->http_receivers)
        return true;
    for (uint32_t s = 0; s < cfg->senders; s++)
        if (s / cfg->rooms >= bench_room_receivers(cfg, s % cfg->rooms))
            return false;
    return true;
}

typedef struct {
    double clients, room_size, senders, rate, window, connect_rate, warmup, duration, drain,
        timeout, procs, per_addr, text_bytes, wait, user_base, in_flight;
} numeric_opts_t;

static int configure(int argc, char **argv, bench_config_t *cfg, procstat_t *srv,
                     const char **srv_list) {
    static const struct option opts[] = {
        {"host", 1, 0, 'H'},        {"port", 1, 0, 'p'},
        {"path", 1, 0, 'P'},        {"jwt-secret", 1, 0, 'j'},
        {"clients", 1, 0, 'n'},     {"room-size", 1, 0, 'k'},
        {"senders", 1, 0, 's'},     {"rate", 1, 0, 'm'},
        {"window", 1, 0, 'W'},      {"connect-rate", 1, 0, 'r'},
        {"warmup", 1, 0, 'u'},      {"duration", 1, 0, 'd'},
        {"drain", 1, 0, 'D'},       {"timeout", 1, 0, 't'},
        {"procs", 1, 0, 'N'},       {"per-addr", 1, 0, 'A'},
        {"text-bytes", 1, 0, 'b'},  {"wait", 1, 0, 'w'},
        {"server-pid", 1, 0, 'S'},  {"help", 0, 0, 'h'},
        {"deflate", 0, 0, 'Z'},     {"text-words", 0, 0, 'T'},
        {"room-prefix", 1, 0, 'R'}, {"user-base", 1, 0, 'U'},
        {"in-flight", 1, 0, 'F'},   {0, 0, 0, 0},
    };
    if (argc < 2 || argv[1][0] == '-') {
        bool help = argc >= 2 && strcmp(argv[1], "--help") == 0;
        fputs(USAGE, help ? stdout : stderr);
        return help ? -1 : 1;
    }
    memset(cfg, 0, sizeof *cfg);
    cfg->name = argv[1];
    size_t i;
    for (i = 0; i < sizeof SCENARIOS / sizeof SCENARIOS[0]; i++)
        if (strcmp(argv[1], SCENARIOS[i].name) == 0)
            break;
    if (i == sizeof SCENARIOS / sizeof SCENARIOS[0])
        return usage_error("unknown scenario");
    cfg->scenario = SCENARIOS[i].scenario;
    scenario_t sc = cfg->scenario;
    cfg->host = "127.0.0.1";
    cfg->port = 3000;
    cfg->path = "/socket.io/";
    cfg->jwt_secret = getenv("PARLEY_JWT_SECRET");
    cfg->http_receivers = sc == SCENARIO_SSE || sc == SCENARIO_LONGPOLL;
    /* negative: not given */
    numeric_opts_t o = {-1, -1, -1, -1, 64, 2000, -1, -1, 2, 10, -1, 10000, 100, 30, 0, 0};
    const char *room_prefix = NULL;
    o.clients = 1000;
    struct {
        int opt;
        double *dst, min, max;
    } nums[] = {
        {'n', &o.clients, 1, 4e6},      {'k', &o.room_size, 1, 4e6},
        {'s', &o.senders, 0, 4e6},      {'m', &o.rate, 0.001, 1e6},
        {'W', &o.window, 1, 1e5},       {'r', &o.connect_rate, 1, 1e7},
        {'u', &o.warmup, 0, 3600},      {'d', &o.duration, 0.1, 36000},
        {'D', &o.drain, 0, 3600},       {'t', &o.timeout, 0.1, 3600},
        {'N', &o.procs, 1, MAX_PROCS},  {'A', &o.per_addr, 1, 1e6},
        {'b', &o.text_bytes, 24, 4000}, {'w', &o.wait, 0, 3600},
        {'U', &o.user_base, 0, 1e15},   {'F', &o.in_flight, 0, 4e6},
    };
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        size_t k;
        for (k = 0; k < sizeof nums / sizeof nums[0]; k++)
            if (nums[k].opt == c)
                break;
        if (k < sizeof nums / sizeof nums[0]) {
            if (!parse_num(optarg, nums[k].min, nums[k].max, nums[k].dst)) {
                fprintf(stderr, "parley-bench: bad value: %s\n", optarg);
                return usage_error("numeric option out of range");
            }
            continue;
        }
        switch (c) {
        case 'H':
            cfg->host = strcmp(optarg, "localhost") == 0 ? "127.0.0.1" : optarg;
            break;
        case 'p':
            cfg->port = (uint16_t)atoi(optarg);
            break;
        case 'P':
            cfg->path = optarg;
            break;
        case 'j':
            cfg->jwt_secret = optarg;
            break;
        case 'S':
            if (procstat_parse(srv, optarg))
                return usage_error("bad --server-pid list");
            *srv_list = optarg;
            break;
        case 'Z':
            cfg->deflate = true;
            break;
        case 'T':
            cfg->text_words = true;
            break;
        case 'R':
            room_prefix = optarg;
            break;
        case 'h':
            fputs(USAGE, stdout);
            return -1;
        default:
            return usage_error("unknown option");
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument");
    struct in_addr a;
    if (inet_pton(AF_INET, cfg->host, &a) != 1)
        return usage_error("--host must be an IPv4 address");
    cfg->host_addr = a.s_addr;
    if (!cfg->jwt_secret || !*cfg->jwt_secret)
        return usage_error("--jwt-secret (or PARLEY_JWT_SECRET) is required");

    bool rooms = sc != SCENARIO_RAMP && sc != SCENARIO_IDLE;
    cfg->clients = (uint32_t)o.clients;
    if (rooms) {
        if (o.room_size < 0)
            o.room_size = sc == SCENARIO_BURST ? o.clients : cfg->http_receivers ? 100 : 10;
        cfg->room_size = (uint32_t)o.room_size;
        cfg->rooms = (cfg->clients + cfg->room_size - 1) / cfg->room_size;
        if (o.senders < 0)
            o.senders = sc == SCENARIO_BURST ? 1 : sc == SCENARIO_CHAT ? o.clients : cfg->rooms;
        cfg->senders = (uint32_t)o.senders;
        cfg->rate = o.rate > 0 ? o.rate : sc == SCENARIO_CHAT ? 1 : 10;
    } else {
        cfg->room_size = 1;
    }
    cfg->window = (uint32_t)o.window;
    cfg->connect_rate = o.connect_rate;
    cfg->in_flight = (uint32_t)o.in_flight;
    cfg->warmup_s = o.warmup >= 0 ? o.warmup : sc == SCENARIO_IDLE ? 0 : 2;
    cfg->duration_s = o.duration > 0 ? o.duration : sc == SCENARIO_IDLE ? 10 : 5;
    cfg->drain_s = sc == SCENARIO_IDLE ? 0 : o.drain;
    cfg->timeout_s = o.timeout;
    cfg->per_addr = (uint32_t)o.per_addr;
    cfg->text_bytes = (uint32_t)o.text_bytes;
    cfg->wait_s = (uint32_t)o.wait;
    uint32_t total = cfg->clients + (cfg->http_receivers ? cfg->senders : 0);
    cfg->procs = o.procs > 0 ? (uint32_t)o.procs : (total + FDS_PER_PROC - 1) / FDS_PER_PROC;
    if (cfg->procs > MAX_PROCS)
        return usage_error("too many connections");
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (total / cfg->procs + 64 > rl.rlim_cur) {
        fprintf(stderr, "parley-bench: %u connections per worker exceed ulimit -n %llu\n",
                total / cfg->procs, (unsigned long long)rl.rlim_cur);
        return usage_error("use more --procs");
    }
    if (rooms && !senders_fit(cfg))
        return usage_error("more senders than room members (each sender is one member)");
    if ((uint64_t)total / cfg->per_addr > 250 * 256)
        return usage_error("--per-addr too small");
    cfg->user_base = (uint64_t)o.user_base;
    if (room_prefix) {
        /* it goes into JSON strings and URL paths unescaped */
        size_t len = strlen(room_prefix);
        if (len == 0 || len >= sizeof cfg->run_id ||
            strspn(room_prefix,
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != len)
            return usage_error("bad --room-prefix");
        memcpy(cfg->run_id, room_prefix, len + 1);
    } else {
        snprintf(cfg->run_id, sizeof cfg->run_id, "b%x",
                 (unsigned)(getpid() ^ (unsigned)time(NULL) << 8) & 0xffffff);
    }
    return 0;
}

static void sleep_until(uint64_t t) {
    uint64_t now = bench_now();
    if (t > now) {
        struct timespec ts = {(time_t)((t - now) / 1000000000u), (long)((t - now) % 1000000000u)};
        while (nanosleep(&ts, &ts) && errno == EINTR) {
        }
    }
}

static pid_t pids[MAX_PROCS];
static int ctls[MAX_PROCS];

static void fail_workers(uint32_t n, const char *why) {
    fprintf(stderr, "parley-bench: %s\n", why);
    for (uint32_t i = 0; i < n; i++)
        kill(pids[i], SIGKILL);
    exit(2);
}

int main(int argc, char **argv) {
    static bench_config_t cfg;
    static summary_t sum;
    static bench_report_t rep;
    procstat_t srv = {0};
    const char *srv_list = NULL;
    int rc = configure(argc, argv, &cfg, &srv, &srv_list);
    if (rc)
        return rc < 0 ? 0 : rc;
    signal(SIGPIPE, SIG_IGN);
    sum.have_server = srv_list != NULL;
    sum.server_pids = srv_list;
    if (sum.have_server && procstat_sample(&srv, &sum.srv_before))
        return usage_error("no --server-pid process is alive");
    sum.srv_start = sum.srv_before;
    fprintf(stderr, "parley-bench: %s, %u clients over %u procs, rooms %s-*\n", cfg.name,
            cfg.clients, cfg.procs, cfg.run_id);
    fflush(NULL);

    for (uint32_t i = 0; i < cfg.procs; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
            fail_workers(i, "socketpair failed");
        pids[i] = fork();
        if (pids[i] < 0)
            fail_workers(i, "fork failed");
        if (pids[i] == 0) {
            close(sv[0]);
            for (uint32_t j = 0; j < i; j++)
                close(ctls[j]);
            worker_main(&cfg, i, sv[1]);
        }
        close(sv[1]);
        ctls[i] = sv[0];
    }

    hist_init(&sum.total.connect);
    hist_init(&sum.total.delivery);
    hist_init(&sum.total.ack);
    sum.total.t_first = UINT64_MAX;
    if (cfg.scenario != SCENARIO_RAMP) {
        /* everyone ready, then GO: a common start a little ahead, so that every worker
         * has it before the first message can be sent */
        uint64_t connected = 0, errors = 0;
        uint32_t *room_ready = calloc(cfg.rooms + 1, sizeof *room_ready);
        uint32_t *room_part = calloc(cfg.rooms + 1, sizeof *room_part);
        if (!room_ready || !room_part)
            fail_workers(cfg.procs, "out of memory");
        for (uint32_t i = 0; i < cfg.procs; i++) {
            if (!bench_read_all(ctls[i], &rep, sizeof rep) || rep.kind != REPORT_READY ||
                !bench_read_all(ctls[i], room_part, cfg.rooms * sizeof *room_part))
                fail_workers(cfg.procs, "a worker failed while connecting");
            for (uint32_t r = 0; r < cfg.rooms; r++)
                room_ready[r] += room_part[r];
            connected += rep.connected - rep.join_errors;
            errors += rep.connect_errors + rep.join_errors;
        }
        fprintf(stderr, "parley-bench: %llu ready, %llu failed\n", (unsigned long long)connected,
                (unsigned long long)errors);
        bench_go_t go;
        go.t_go = bench_now() + 100000000u;
        go.t_meas_start = go.t_go + (uint64_t)(cfg.warmup_s * 1e9);
        go.t_meas_end = go.t_meas_start + (uint64_t)(cfg.duration_s * 1e9);
        for (uint32_t i = 0; i < cfg.procs; i++)
            if (!bench_write_all(ctls[i], &go, sizeof go) ||
                !bench_write_all(ctls[i], room_ready, cfg.rooms * sizeof *room_ready))
                fail_workers(cfg.procs, "a worker is gone");
        free(room_ready);
        free(room_part);
        sleep_until(go.t_meas_start);
        if (sum.have_server)
            procstat_sample(&srv, &sum.srv_start);
        sleep_until(go.t_meas_end);
        if (sum.have_server)
            procstat_sample(&srv, &sum.srv_end);
        sum.window_s = (double)(go.t_meas_end - go.t_meas_start) / 1e9;
    }
    for (uint32_t i = 0; i < cfg.procs; i++) {
        if (!bench_read_all(ctls[i], &rep, sizeof rep) || rep.kind != REPORT_RESULT)
            fail_workers(cfg.procs, "a worker failed");
        bench_report_t *t = &sum.total;
        t->clients += rep.clients;
        t->connected += rep.connected;
        t->connect_errors += rep.connect_errors;
        t->join_errors += rep.join_errors;
        t->closed += rep.closed;
        t->sent += rep.sent;
        t->acked += rep.acked;
        t->ack_errors += rep.ack_errors;
        t->unacked += rep.unacked;
        t->expected += rep.expected;
        t->received += rep.received;
        t->late_sends += rep.late_sends;
        t->stalled_sends += rep.stalled_sends;
        t->msg_frames += rep.msg_frames;
        t->msg_wire_bytes += rep.msg_wire_bytes;
        t->msg_compressed += rep.msg_compressed;
        if (rep.t_first < t->t_first)
            t->t_first = rep.t_first;
        if (rep.t_last > t->t_last)
            t->t_last = rep.t_last;
        hist_merge(&t->connect, &rep.connect);
        hist_merge(&t->delivery, &rep.delivery);
        hist_merge(&t->ack, &rep.ack);
        sum.bench_cpu_s += rep.cpu_s;
        if (rep.window_s > 0 && rep.cpu_s / rep.window_s > sum.bench_worker_max)
            sum.bench_worker_max = rep.cpu_s / rep.window_s;
    }
    if (cfg.scenario == SCENARIO_RAMP) {
        if (sum.have_server)
            procstat_sample(&srv, &sum.srv_end);
        sum.window_s = sum.total.t_last > sum.total.t_first
                           ? (double)(sum.total.t_last - sum.total.t_first) / 1e9
                           : 0;
    }
    for (uint32_t i = 0; i < cfg.procs; i++)
        close(ctls[i]); /* releases the workers: they exit, closing their connections */
    for (uint32_t i = 0; i < cfg.procs; i++)
        waitpid(pids[i], NULL, 0);
    summary_print(&cfg, &sum);
    return 0;
}
