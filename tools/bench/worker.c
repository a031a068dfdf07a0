/* tools/bench/worker.c — a worker process: opens its clients, runs its share of the
 * scenario, reports to the parent (see worker.h).
 *
 * Phases: OPENING (connections opened at the paced rate until all are ready, failed or
 * past the deadline; then READY is reported — or RESULT for ramp, which ends there),
 * WAIT_GO, RUN (senders send; a message counts when its stamp falls in the measured
 * window [t_meas_start, t_meas_end)), DRAIN (late deliveries and acks still count),
 * then RESULT and exit. Paced senders sit in one binary heap by due time; burst senders
 * keep `window` acks outstanding, topping up on every ack. */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "httpsub.h"
#include "procstat.h"
#include "wsio.h"

enum { PH_OPENING, PH_WAIT_GO, PH_RUN, PH_DRAIN };

#define LATE_NS (50 * 1000000ull) /* a send this far behind its schedule is late */

static bool in_window(const worker_t *w, uint64_t stamp) {
    return stamp >= w->go.t_meas_start && stamp < w->go.t_meas_end;
}

/* The parent is gone when its pipe fails: nothing left to report to. */
static void write_all(int fd, const void *data, size_t len) {
    if (!bench_write_all(fd, data, len))
        _exit(3);
}

static void report(worker_t *w, uint32_t kind) {
    w->rep.kind = kind;
    write_all(w->ctl, &w->rep, sizeof w->rep);
}

/* After RESULT the connections stay open until the parent has taken its last sample
 * of the server and closes its end: the server's teardown is not in the figures. */
static void __attribute__((noreturn)) exit_when_released(worker_t *w) {
    char byte;
    for (;;) {
        ssize_t n = read(w->ctl, &byte, 1);
        if (n == 0 || (n < 0 && errno != EINTR))
            _exit(0);
    }
}

/* ---- the send schedule: a min-heap of paced senders by due time ---- */

static void heap_swap(worker_t *w, uint32_t a, uint32_t b) {
    sender_t *t = w->heap[a];
    w->heap[a] = w->heap[b];
    w->heap[b] = t;
    w->heap[a]->heap_pos = a;
    w->heap[b]->heap_pos = b;
}

static void heap_down(worker_t *w, uint32_t i) {
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->heap_len && w->heap[l]->due < w->heap[m]->due)
            m = l;
        if (r < w->heap_len && w->heap[r]->due < w->heap[m]->due)
            m = r;
        if (m == i)
            return;
        heap_swap(w, i, m);
        i = m;
    }
}

static void heap_push(worker_t *w, sender_t *s) {
    uint32_t i = w->heap_len++;
    w->heap[i] = s;
    s->heap_pos = i;
    while (i > 0 && w->heap[(i - 1) / 2]->due > w->heap[i]->due) {
        heap_swap(w, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static sender_t *heap_pop(worker_t *w) {
    sender_t *top = w->heap[0];
    w->heap[0] = w->heap[--w->heap_len];
    w->heap[0]->heap_pos = 0;
    heap_down(w, 0);
    return top;
}

/* ---- sending ---- */

/* One sendMessage from s, stamped now. Returns false when its ring is full. */
static bool send_one(worker_t *w, sender_t *s) {
    client_t *c = s->c;
    uint32_t id = c->next_ack;
    struct sent_slot *slot = &s->ring[id & s->ring_mask];
    uint64_t stamp = bench_now();
    if (slot->t != 0) {
        if (in_window(w, stamp))
            w->rep.stalled_sends++;
        return false;
    }
    if (wsio_send_message(w, c, id, stamp))
        return false;
    c->next_ack++;
    slot->id = id;
    slot->t = stamp;
    s->outstanding++;
    if (in_window(w, stamp)) {
        w->rep.sent++;
        w->rep.expected += w->room_ready[c->room];
    }
    return true;
}

static void top_up(worker_t *w, sender_t *s, uint64_t now) {
    while (s->c->state == CONN_READY && s->outstanding < w->cfg->window && now < w->go.t_meas_end)
        if (!send_one(w, s))
            return;
}

static void run_schedule(worker_t *w, uint64_t now) {
    uint64_t period = (uint64_t)(1e9 / w->cfg->rate);
    while (w->heap_len > 0 && w->heap[0]->due <= now) {
        sender_t *s = heap_pop(w);
        if (s->due >= w->go.t_meas_end || s->c->state != CONN_READY)
            continue; /* done sending */
        if (w->cfg->scenario == SCENARIO_BURST) {
            top_up(w, s, now); /* from now on, acks drive it */
            continue;
        }
        if (now - s->due > LATE_NS && in_window(w, now))
            w->rep.late_sends++;
        send_one(w, s);
        s->due += period;
        if (s->due + 1000000000ull < now)
            s->due = now; /* more than a second behind: skip rather than burst */
        heap_push(w, s);
    }
}

static void start_sending(worker_t *w) {
    uint64_t period = (uint64_t)(1e9 / w->cfg->rate);
    for (uint32_t i = 0; i < w->nsenders; i++) {
        sender_t *s = &w->senders[i];
        /* spread the senders' phases evenly over one period (burst: all start at go) */
        s->due = w->go.t_go;
        if (w->cfg->scenario != SCENARIO_BURST)
            s->due += period * s->number / w->cfg->senders;
        heap_push(w, s);
    }
}

/* ---- events from the protocol modules ---- */

static void client_ready(worker_t *w, client_t *c, uint64_t now) {
    c->ready = true;
    if (c->proto == PROTO_SIO)
        c->state = CONN_READY;
    w->npending--;
    w->rep.t_last = now;
}

void worker_client_connected(worker_t *w, client_t *c) {
    uint64_t now = bench_now();
    hist_record(&w->rep.connect, now - c->t_start);
    w->rep.connected++;
    if (c->proto == PROTO_SIO && w->cfg->rooms > 0) {
        c->state = CONN_JOINING;
        c->next_ack = 1;
        if (wsio_join(w, c, 0))
            conn_close(w, c, "out of memory");
        return;
    }
    client_ready(w, c, now);
}

void worker_client_ack(worker_t *w, client_t *c, uint32_t id, bool ok) {
    uint64_t now = bench_now();
    if (c->state == CONN_JOINING && id == 0) {
        if (ok)
            client_ready(w, c, now);
        else
            conn_close(w, c, "joinRoom refused");
        return;
    }
    sender_t *s = c->sender;
    if (!s)
        return;
    struct sent_slot *slot = &s->ring[id & s->ring_mask];
    if (slot->t == 0 || slot->id != id)
        return; /* not ours */
    if (in_window(w, slot->t)) {
        hist_record(&w->rep.ack, now - slot->t);
        if (ok) {
            w->rep.acked++;
        } else {
            w->rep.ack_errors++; /* refused: nobody gets it */
            w->rep.expected -= w->room_ready[c->room];
        }
    }
    slot->t = 0;
    s->outstanding--;
    if (w->cfg->scenario == SCENARIO_BURST && w->phase == PH_RUN)
        top_up(w, s, now);
}

void worker_client_delivery(worker_t *w, client_t *c, uint64_t stamp, uint64_t now) {
    if (c->counting && in_window(w, stamp)) {
        w->rep.received++;
        hist_record(&w->rep.delivery, now > stamp ? now - stamp : 0);
    }
}

void worker_client_closed(worker_t *w, client_t *c, const char *why) {
    if (c->ready) {
        w->rep.closed++;
    } else {
        if (c->state == CONN_JOINING)
            w->rep.join_errors++;
        else
            w->rep.connect_errors++;
        w->npending--;
    }
    if (w->rep.connect_errors + w->rep.join_errors + w->rep.closed <= 3)
        fprintf(stderr, "parley-bench: worker %u: client %u: %s\n", w->index, c->id, why);
}

/* ---- the loop ---- */

static void open_due(worker_t *w, uint64_t now) {
    double rate = w->cfg->connect_rate / w->cfg->procs;
    uint64_t due = (uint64_t)((double)(now - w->t_open_start) / 1e9 * rate) + 1;
    uint32_t cap =
        w->cfg->in_flight ? (w->cfg->in_flight + w->cfg->procs - 1) / w->cfg->procs : UINT32_MAX;
    while (w->nopened < w->nclients && w->nopened < due && w->npending < cap) {
        client_t *c = &w->clients[w->nopened++];
        int rc = c->proto == PROTO_SIO ? wsio_open(w, c) : httpsub_open(w, c);
        if (rc) {
            w->rep.connect_errors++;
            if (w->rep.connect_errors <= 3)
                fprintf(stderr, "parley-bench: worker %u: connect: %s\n", w->index,
                        strerror(errno));
        } else {
            w->npending++;
        }
    }
}

static void end_opening(worker_t *w) {
    for (uint32_t i = 0; i < w->nclients; i++) {
        client_t *c = &w->clients[i];
        if (!c->ready && c->state != CONN_CLOSED && c->state != CONN_IDLE)
            conn_close(w, c, "handshake timed out");
    }
    if (w->cfg->scenario == SCENARIO_RAMP) {
        w->rep.cpu_s = procstat_self_cpu();
        w->rep.window_s = (double)(w->rep.t_last - w->rep.t_first) / 1e9;
        report(w, REPORT_RESULT);
        exit_when_released(w);
    }
    for (uint32_t i = 0; i < w->nclients; i++)
        if (w->clients[i].ready && w->clients[i].counting)
            w->room_ready[w->clients[i].room]++;
    report(w, REPORT_READY);
    write_all(w->ctl, w->room_ready, w->cfg->rooms * sizeof *w->room_ready);
    w->phase = PH_WAIT_GO;
}

static void read_all(int fd, void *dst, size_t len) {
    if (!bench_read_all(fd, dst, len))
        _exit(0); /* the parent is gone (or ended the run) */
}

static void on_ctl(worker_t *w) {
    read_all(w->ctl, &w->go, sizeof w->go);
    read_all(w->ctl, w->room_ready, w->cfg->rooms * sizeof *w->room_ready);
    w->phase = PH_RUN;
    start_sending(w);
}

static void finish(worker_t *w) {
    for (uint32_t i = 0; i < w->nsenders; i++) {
        sender_t *s = &w->senders[i];
        /* setup gave every sender its ring (or exited); the analyzer cannot tell that the
         * two passes over the clients agree. */
        for (uint32_t j = 0; j <= s->ring_mask; j++)
            // NOLINTNEXTLINE(clang-analyzer-core.NullDereference)
            if (s->ring[j].t && in_window(w, s->ring[j].t))
                w->rep.unacked++;
    }
    report(w, REPORT_RESULT);
    exit_when_released(w);
}

/* Milliseconds until `t` (rounded up), at least 0. */
static int ms_until(uint64_t t, uint64_t now) {
    if (t <= now)
        return 0;
    uint64_t ms = (t - now + 999999) / 1000000;
    return ms > 1000 ? 1000 : (int)ms;
}

static int next_timeout(worker_t *w, uint64_t now) {
    switch (w->phase) {
    case PH_OPENING:
        return w->nopened < w->nclients ? 1 : ms_until(w->t_ready_deadline, now);
    case PH_RUN: {
        uint64_t t = w->go.t_meas_end;
        if (now < w->go.t_meas_start)
            t = w->go.t_meas_start;
        // NOLINTNEXTLINE(clang-analyzer-core.NullDereference): heap[0..heap_len) are set
        if (w->heap_len > 0 && w->heap[0]->due < t)
            t = w->heap[0]->due;
        return ms_until(t, now);
    }
    case PH_DRAIN:
        return ms_until(w->go.t_meas_end + (uint64_t)(w->cfg->drain_s * 1e9), now);
    default:
        return 1000;
    }
}

static void tick(worker_t *w, uint64_t now) {
    switch (w->phase) {
    case PH_OPENING:
        open_due(w, now);
        if ((w->nopened == w->nclients && w->npending == 0) || now >= w->t_ready_deadline)
            end_opening(w);
        break;
    case PH_RUN:
        if (w->cpu_at_start < 0 && now >= w->go.t_meas_start)
            w->cpu_at_start = procstat_self_cpu();
        run_schedule(w, now);
        if (now >= w->go.t_meas_end) {
            if (w->cpu_at_start < 0)
                w->cpu_at_start = procstat_self_cpu();
            w->rep.cpu_s = procstat_self_cpu() - w->cpu_at_start;
            w->rep.window_s = (double)(now - w->go.t_meas_start) / 1e9;
            w->phase = PH_DRAIN;
        }
        break;
    case PH_DRAIN:
        if (now >= w->go.t_meas_end + (uint64_t)(w->cfg->drain_s * 1e9))
            finish(w);
        break;
    default:
        break;
    }
}

static void setup(worker_t *w, const bench_config_t *cfg, uint32_t index, int ctl) {
    memset(w, 0, sizeof *w);
    w->cfg = cfg;
    w->index = index;
    w->ctl = ctl;
    w->cpu_at_start = -1;
    w->mask_state = 0x9e3779b9u ^ (index * 2654435761u) ^ (uint32_t)getpid();
    w->rep.worker = index;
    hist_init(&w->rep.connect);
    hist_init(&w->rep.delivery);
    hist_init(&w->rep.ack);
    uint32_t total = cfg->clients + (cfg->http_receivers ? cfg->senders : 0);
    for (uint32_t g = 0; g < total; g++)
        w->nclients += bench_client_worker(cfg, g) == index;
    w->clients = calloc(w->nclients ? w->nclients : 1, sizeof *w->clients);
    w->rbuf = malloc(WORKER_RBUF_SIZE);
    w->senders = calloc(cfg->senders + 1, sizeof *w->senders);
    w->heap = calloc(cfg->senders + 1, sizeof *w->heap);
    w->room_ready = calloc(cfg->rooms + 1, sizeof *w->room_ready);
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (!w->clients || !w->rbuf || !w->senders || !w->heap || !w->room_ready || w->ep < 0) {
        fprintf(stderr, "parley-bench: worker %u: out of memory\n", index);
        _exit(3);
    }
    /* ring of send times: room for two seconds of sends, or twice the burst window */
    uint32_t ring = cfg->scenario == SCENARIO_BURST ? 2 * cfg->window : (uint32_t)(2 * cfg->rate);
    uint32_t size = 64;
    while (size < ring)
        size *= 2;
    for (uint32_t g = 0, i = 0; g < total; g++) {
        if (bench_client_worker(cfg, g) != index)
            continue;
        client_t *c = &w->clients[i++];
        c->fd = -1;
        c->id = g;
        c->room = bench_client_room(cfg, g);
        c->counting = g < cfg->clients;
        c->proto = !cfg->http_receivers || g >= cfg->clients ? PROTO_SIO
                   : cfg->scenario == SCENARIO_SSE           ? PROTO_SSE
                                                             : PROTO_POLL;
        int64_t s = bench_client_sender(cfg, g);
        if (s >= 0) {
            sender_t *snd = &w->senders[w->nsenders++];
            snd->c = c;
            snd->number = (uint32_t)s;
            snd->ring_mask = size - 1;
            snd->ring = calloc(size, sizeof *snd->ring);
            if (!snd->ring)
                _exit(3);
            c->sender = snd;
        }
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, ctl, &ev))
        _exit(3);
    w->t_open_start = bench_now();
    w->rep.t_first = w->t_open_start;
    w->rep.clients = w->nclients;
    w->t_ready_deadline =
        w->t_open_start +
        (uint64_t)(((double)w->nclients / (cfg->connect_rate / cfg->procs) + cfg->timeout_s) * 1e9);
}

void worker_main(const bench_config_t *cfg, uint32_t index, int ctl) {
    static worker_t w;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setup(&w, cfg, index, ctl);
    struct epoll_event events[512];
    uint64_t now = bench_now();
    for (;;) {
        int n = epoll_wait(w.ep, events, 512, next_timeout(&w, now));
        if (n < 0 && errno != EINTR)
            _exit(3);
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL)
                on_ctl(&w);
            else
                conn_on_events(&w, events[i].data.ptr, events[i].events);
        }
        now = bench_now();
        tick(&w, now);
        conn_flush_all(&w);
    }
}
