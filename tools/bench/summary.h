/* tools/bench/summary.h — the figures of one run, and how they are printed.
 *
 * The parent merges the workers' reports (counters added, histograms merged) and adds
 * what it sampled itself: the server's CPU and RSS from /proc, the wall-clock windows.
 * Output is a human-readable table and then exactly one JSON line (the only stdout line
 * starting with '{'); every field is always present, null when it does not apply. */
#ifndef PARLEY_BENCH_SUMMARY_H
#define PARLEY_BENCH_SUMMARY_H

#include <stdbool.h>

#include "bench.h"
#include "procstat.h"

typedef struct {
    bench_report_t total;    /* workers' reports merged */
    double window_s;         /* the measured window (ramp: first connect → last handshake) */
    double bench_cpu_s;      /* the workers' CPU in the window */
    double bench_worker_max; /* the busiest worker's CPU share of the window, 0..1 */
    bool have_server;
    const char *server_pids;
    procstat_sample_t srv_before; /* before any connection */
    procstat_sample_t srv_start;  /* start of the window */
    procstat_sample_t srv_end;    /* end of the window */
} summary_t;

void summary_print(const bench_config_t *cfg, const summary_t *s);

#endif
