/* tools/bench/procstat.h — what the server under test uses, read from /proc.
 *
 * The server is a set of PIDs given on the command line (--server-pid a,b,...) plus
 * every process descending from them at the time of the sample (a server that forks
 * workers, or `npm start` running node). Memory is the sum of VmRSS; CPU is the sum of
 * utime + stime of each process (its own threads included), with utime (user space)
 * also apart. Processes that exited
 * between two samples simply stop counting. The bench's own CPU comes from getrusage. */
#ifndef PARLEY_BENCH_PROCSTAT_H
#define PARLEY_BENCH_PROCSTAT_H

#include <stddef.h>
#include <sys/types.h>

#define PROCSTAT_MAX_PIDS 64

typedef struct {
    pid_t roots[PROCSTAT_MAX_PIDS];
    size_t nroots;
} procstat_t;

/* Parses a comma-separated PID list into ps. Returns 0, or -1 on a malformed list. */
int procstat_parse(procstat_t *ps, const char *list);

typedef struct {
    double cpu_s;         /* utime + stime, seconds */
    double user_s;        /* utime alone: the server's own code, not the kernel's */
    unsigned long rss_kb; /* VmRSS, KiB */
    size_t nprocs;        /* processes found alive */
} procstat_sample_t;

/* Samples the roots and their descendants. Returns 0, or -1 when no root is alive. */
int procstat_sample(const procstat_t *ps, procstat_sample_t *out);

/* CPU seconds (user + system) of the calling process. */
double procstat_self_cpu(void);

#endif
