/* tools/bench/procstat.c — /proc sampling of the server under test (see procstat.h). */
#include "procstat.h"

#include <ctype.h>
#include <stdbool.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int procstat_parse(procstat_t *ps, const char *list) {
    ps->nroots = 0;
    const char *p = list;
    while (*p) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p || pid <= 0 || ps->nroots == PROCSTAT_MAX_PIDS)
            return -1;
        ps->roots[ps->nroots++] = (pid_t)pid;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return -1;
    }
    return ps->nroots ? 0 : -1;
}

/* Reads ppid, utime and stime from /proc/<pid>/stat (fields 4, 14, 15; the command
 * name in field 2 may hold spaces and parentheses, so parsing starts after the last
 * ')'). Returns 0 or -1 when the process is gone. */
static int read_stat(pid_t pid, pid_t *ppid, unsigned long long *ticks,
                     unsigned long long *uticks) {
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    char *p = strrchr(line, ')');
    if (!p)
        return -1;
    int ppid_i;
    unsigned long long ut, st;
    /* after ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime stime */
    if (sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ppid_i, &ut, &st) !=
        3)
        return -1;
    *ppid = (pid_t)ppid_i;
    *ticks = ut + st;
    *uticks = ut;
    return 0;
}

static unsigned long read_rss_kb(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    unsigned long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lu kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

typedef struct {
    pid_t pid, ppid;
    unsigned long long ticks, uticks;
} proc_entry_t;

int procstat_sample(const procstat_t *ps, procstat_sample_t *out) {
    memset(out, 0, sizeof *out);
    /* One pass over /proc collects every process; the server's set is then grown from
     * the roots by parent links until it stops growing. */
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    size_t n = 0, cap = 1024;
    proc_entry_t *all = malloc(cap * sizeof *all);
    if (!all) {
        closedir(d);
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        proc_entry_t e = {.pid = (pid_t)atoi(de->d_name)};
        if (read_stat(e.pid, &e.ppid, &e.ticks, &e.uticks))
            continue;
        if (n == cap) {
            proc_entry_t *bigger = realloc(all, 2 * cap * sizeof *all);
            if (!bigger)
                break;
            all = bigger;
            cap *= 2;
        }
        all[n++] = e;
    }
    closedir(d);
    bool *in = calloc(n ? n : 1, sizeof *in);
    if (!in) {
        free(all);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t r = 0; r < ps->nroots; r++)
            if (all[i].pid == ps->roots[r])
                in[i] = true;
    for (bool grew = true; grew;) {
        grew = false;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; !in[i] && j < n; j++)
                if (in[j] && all[i].ppid == all[j].pid)
                    in[i] = grew = true;
    }
    long hz = sysconf(_SC_CLK_TCK);
    unsigned long long ticks = 0, uticks = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in[i])
            continue;
        ticks += all[i].ticks;
        uticks += all[i].uticks;
        out->rss_kb += read_rss_kb(all[i].pid);
        out->nprocs++;
    }
    out->cpu_s = (double)ticks / (double)hz;
    out->user_s = (double)uticks / (double)hz;
    free(in);
    free(all);
    return out->nprocs ? 0 : -1;
}

double procstat_self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}
