#!/usr/bin/env bash
# scripts/bench-profile.sh [SCENARIO...]: where a release Parley spends its CPU in the
# scenarios of the performance targets (issue 17), as perf profiles of the server. Not
# part of make bench: a measuring aid, run by hand after make build.
#   ramp       10,000 handshakes offered at 80,000/s by 4 load processes, 500 under way
#              at most (TCP, WebSocket upgrade, Engine.IO open, Socket.IO CONNECT with an
#              HS256 JWT): CPU per handshake
#   broadcast  10,000 clients in rooms of 10, one sender per room, 20,000 deliveries/s
#              offered: CPU per delivery
#   burst      one room of 1,000, one sender keeping 64 acks outstanding: CPU per delivery
# Each run starts a fresh server (scripts/bench-common.sh: the flags, JWT secret and port of
# make bench) and attaches to it, disabled, `perf record` (cpu-clock: this machine's VM
# has no hardware counters; call graphs by frame pointer, CALL_GRAPH=dwarf for callers
# through code built without them) and `perf stat` (exact on-CPU time, context
# switches). Both are enabled over parley-bench's measured part only: ramp from before the
# first connect until parley-bench has every result (it is then in waitpid, and its
# workers' exits close the connections: teardown is left out); the others over the window
# (GO is 100 ms after parley-bench's "ready" line, then WARM s of warmup, then DUR s).
# /proc/PID/io, read at both ends, gives the read and write system calls. Prints per
# scenario, one column per repetition (do they agree?): the rate; CPU per unit of work
# (perf stat, and parley-bench's /proc samples); user vs kernel (perf's samples, and
# /proc's 10 ms ticks); system calls per unit; shares by DSO; the top symbols by self
# time, then the top user-space ones. In a VM without a PMU, time with interrupts off is
# charged to where they come back on (_raw_spin_unlock_irqrestore, finish_task_switch).
#
# Writes build/bench/profile/: SCENARIO-SERVER-REP.{data,stat,io,json,dsos,syms,usyms}
# (perf record's data, perf stat's counts, /proc/PID/io at both ends, parley-bench's JSON
# line, shares by DSO, by symbol, by user-space symbol), summary.txt (what is printed),
# logs/ (server, parley-bench and perf output). Every run is bounded (timeout; the waits
# for parley-bench's phases too); the server and perf are stopped after each run and on
# any exit. About 25 s per repetition of the three scenarios (with echo: 45 s).
# Environment: BUILD (build), REPS (2), SERVERS ("parley"; "parley echo" adds the C echo
# server, the kernel's floor, to broadcast and burst), FREQ (samples/s, 4999), DUR
# (measured seconds, 5), TOP (symbols listed, 15), CALL_GRAPH (fp), SYSCALLS (1: perf
# stat also counts each system call, through tracepoints that add a few % of kernel
# time to the profile; 0), PERF (perf), PROF (the output directory), PARLEY_BIN,
# BENCH_BIN (scripts/bench-common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=$BUILD/bench
PROF=${PROF:-$OUT/profile}
SECRET=parley-bench-secret-0123456789abcdef
T0=$(date +%s)
REPS=${REPS:-2}
SERVERS=${SERVERS:-parley}
FREQ=${FREQ:-4999}
DUR=${DUR:-5}
TOP=${TOP:-15}
CALL_GRAPH=${CALL_GRAPH:-fp}
SYSCALLS=${SYSCALLS:-0}
PERF=${PERF:-perf}
SCENARIOS=${*:-ramp broadcast burst}
WARM=1 DRAIN=1
RAMP_CLIENTS=10000 RAMP_RATE=80000 RAMP_PROCS=4 RAMP_IN_FLIGHT=500 # as scripts/bench.sh
BCAST_CLIENTS=10000 ROOM=10 BCAST_LOAD=20000 # the per-delivery target's load
BURST_CLIENTS=1000 BURST_WINDOW=64 BURST_DRAIN=3
FAST_CONNECT=20000 # setup pace (not measured outside ramp)
# SYSCALLS=1: these system calls counted one by one, and the total (each tracepoint perf
# stat holds costs time to release: syscalls:sys_enter_* would take about 15 s).
STAT_SYSCALLS=$(printf 'syscalls:sys_enter_%s,' read readv recvfrom recvmsg write writev sendto \
  sendmsg epoll_wait epoll_pwait epoll_ctl accept4 close shutdown setsockopt getsockopt \
  getpeername getpid getrandom ioctl fcntl brk mmap munmap madvise futex)
STAT_SYSCALLS=${STAT_SYSCALLS%,}
RUN_TIMEOUT=120    # s: the bound of one parley-bench run, and of each wait for a phase
LOG_PREFIX=profile-
# server_cmd, start_server, stop_server, elapsed; the traps that stop a server left running
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
PERF_PIDS="" CTL_FDS=() ACK_FDS=()

for f in "$PARLEY_BIN" "$BENCH_BIN"; do
  [[ -x $f ]] || { echo "bench-profile: $f missing (make build)" >&2; exit 1; }
done
[[ " $SERVERS " != *" echo "* || -x $BUILD/echo_server ]] ||
  { echo "bench-profile: $BUILD/echo_server missing (make build)" >&2; exit 1; }
command -v "$PERF" >/dev/null || { echo "bench-profile: perf missing (apt-get install linux-perf)" >&2; exit 1; }
command -v node >/dev/null || { echo "bench-profile: node missing (scripts/deps.sh build)" >&2; exit 1; }
for sc in $SCENARIOS; do
  [[ $sc == ramp || $sc == broadcast || $sc == burst ]] ||
    { echo "usage: $0 [ramp|broadcast|burst]..." >&2; exit 2; }
done

# Stops both perf processes (they write their files on SIGINT) and closes their FIFOs.
stop_perf() {
  local p
  for p in $PERF_PIDS; do kill -INT "$p" 2>/dev/null || true; done
  for p in $PERF_PIDS; do wait "$p" 2>/dev/null || true; done
  PERF_PIDS=""
  for p in "${CTL_FDS[@]}"; do exec {p}>&-; done
  for p in "${ACK_FDS[@]}"; do exec {p}<&-; done
  CTL_FDS=() ACK_FDS=()
  rm -f "$PROF"/*.ctl "$PROF"/*.ack
}
trap 'stop_perf; cleanup' EXIT

mkdir -p "$PROF/logs" "$OUT/logs"

# perf_start NAME perf-arguments...: a perf (record or stat) attached to the server,
# disabled until perf_ctl enables it through its control FIFOs ($PROF/NAME.{ctl,ack}).
perf_start() {
  local name=$1 ctl ack
  shift
  rm -f "$PROF/$name.ctl" "$PROF/$name.ack"
  mkfifo "$PROF/$name.ctl" "$PROF/$name.ack"
  exec {ctl}<>"$PROF/$name.ctl" {ack}<>"$PROF/$name.ack"
  CTL_FDS+=("$ctl") ACK_FDS+=("$ack")
  "$PERF" "$@" -D -1 --control "fifo:$PROF/$name.ctl,$PROF/$name.ack" -p "$SERVER_PID" &
  PERF_PIDS+=" $!"
}

# perf_ctl enable|disable: every perf started, each acknowledging.
perf_ctl() {
  local i reply
  for i in "${!CTL_FDS[@]}"; do echo "$1" >&"${CTL_FDS[i]}"; done
  for i in "${!ACK_FDS[@]}"; do
    reply=""
    read -r -t 5 reply <&"${ACK_FDS[i]}" || true
    [[ $reply == ack* ]] || { echo "bench-profile: perf did not ack '$1'" >&2; return 1; }
  done
}

# The server's read and write system calls so far (all threads) and the bytes they moved,
# from /proc/PID/io: "syscr syscw rchar wchar". Free, unlike counting with tracepoints.
io_sample() {
  awk '{ v[$1] = $2 } END { print v["syscr:"], v["syscw:"], v["rchar:"], v["wchar:"] }' \
    "/proc/$SERVER_PID/io"
}

# Polls until FILE holds a line matching PATTERN or PID is gone; 1 on timeout or exit.
wait_for_line() { # file pattern pid
  local deadline=$((SECONDS + RUN_TIMEOUT))
  while ((SECONDS < deadline)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.01
  done
  return 1
}

# Polls until process PID waits for its children (parley-bench's parent has every result
# and has released its workers) or is gone; 1 on timeout.
wait_for_reap() { # pid
  local deadline=$((SECONDS + RUN_TIMEOUT)) w
  while ((SECONDS < deadline)); do
    w=""
    read -r w <"/proc/$1/wchan" 2>/dev/null || true # no newline: read "fails" but sets w
    [[ -n $w ]] || return 0
    [[ $w == do_wait ]] && return 0
    sleep 0.005
  done
  return 1
}

# DSO as the summary names it: kernel, parley, libc, libuv, libcrypto, jansson, ...
dso_group() {
  awk -F'\t' -v OFS='\t' '{
    d = $2
    if (d ~ /^\[kernel/) d = "kernel"
    else { sub(/\.so(\..*)?$/, "", d); sub(/^libjansson$/, "jansson", d) }
    $2 = d; print }'
}

# profile_run SCENARIO SERVER REP: one run, its files under $PROF.
profile_run() {
  local sc=$1 server=$2 rep=$3 name args
  name=$sc-$server-$rep
  case $sc in
    ramp) args=(ramp --clients "$RAMP_CLIENTS" --connect-rate "$RAMP_RATE" --procs "$RAMP_PROCS"
      --in-flight "$RAMP_IN_FLIGHT") ;;
    broadcast)
      args=(broadcast --clients "$BCAST_CLIENTS" --room-size "$ROOM" --connect-rate "$FAST_CONNECT"
        --rate "$(awk -v l="$BCAST_LOAD" -v n="$BCAST_CLIENTS" 'BEGIN { printf "%g", l / n }')"
        --warmup "$WARM" --duration "$DUR" --drain "$DRAIN" --procs 2) ;;
    burst)
      args=(burst --clients "$BURST_CLIENTS" --window "$BURST_WINDOW" --connect-rate "$FAST_CONNECT"
        --warmup "$WARM" --duration "$DUR" --drain "$BURST_DRAIN" --procs 2) ;;
  esac
  RUN_NO=$((RUN_NO + 1))
  rm -f "$PROF/$name".*
  start_server "$server" || return 1
  perf_start record record -e cpu-clock -F "$FREQ" --call-graph "$CALL_GRAPH" \
    -o "$PROF/$name.data" >"$PROF/logs/$name-perf.log" 2>&1
  # exact on-CPU time, context switches and system calls (counted, not sampled)
  local events=task-clock,context-switches
  ((SYSCALLS)) && events+=",raw_syscalls:sys_enter,$STAT_SYSCALLS"
  perf_start stat stat -x , -e "$events" \
    -o "$PROF/$name.stat" >>"$PROF/logs/$name-perf.log" 2>&1
  local bench_err=$PROF/logs/$name-bench.log ok=1 pb=""
  [[ $sc == ramp ]] && { perf_ctl enable && io_sample >"$PROF/$name.io" || ok=0; }
  timeout "$RUN_TIMEOUT" "$BENCH_BIN" "${args[@]}" --port "$PORT" --jwt-secret "$SECRET" \
    --server-pid "$SERVER_PID" >"$PROF/$name.out" 2>"$bench_err" &
  BENCH_PID=$!
  if [[ $sc == ramp ]]; then
    for _ in $(seq 100); do # parley-bench, under timeout
      pb=$(pgrep -P "$BENCH_PID" || true)
      [[ -n $pb ]] && break
      sleep 0.01
    done
    [[ -n $pb ]] && wait_for_reap "$pb" || ok=0
  elif wait_for_line "$bench_err" ' ready, ' "$BENCH_PID"; then
    sleep "$(awk -v w="$WARM" 'BEGIN { print 0.1 + w }')"
    perf_ctl enable && io_sample >"$PROF/$name.io" || ok=0
    sleep "$DUR"
  else
    ok=0
  fi
  perf_ctl disable && io_sample >>"$PROF/$name.io" || ok=0
  wait "$BENCH_PID" || ok=0
  BENCH_PID=""
  stop_perf
  stop_server
  grep '^{' "$PROF/$name.out" | tail -n 1 >"$PROF/$name.json" || true
  if ((!ok)) || [[ ! -s $PROF/$name.json || ! -s $PROF/$name.data || ! -s $PROF/$name.stat ||
    $(wc -l <"$PROF/$name.io") != 2 ]]; then
    echo "bench-profile: $name failed (logs in $PROF/logs, $OUT/logs)" >&2
    return 1
  fi
  # self time by DSO and by symbol, tab-separated: share (%), DSO, symbol
  "$PERF" report -i "$PROF/$name.data" --no-children --sort dso -g none --stdio -q \
    -F overhead,dso,sample 2>>"$PROF/logs/$name-perf.log" |
    awk -v OFS='\t' 'NF >= 3 { p = $1; sub(/%/, "", p); print p, $2, $3 }' |
    dso_group >"$PROF/$name.dsos"
  "$PERF" report -i "$PROF/$name.data" --no-children --sort dso,sym -g none --stdio -q \
    -F overhead,dso,sym 2>>"$PROF/logs/$name-perf.log" |
    awk -v OFS='\t' 'NF >= 4 { p = $1; sub(/%/, "", p); d = $2; s = $0
      sub(/^ *[^ ]+ +[^ ]+ +\[.\] +/, "", s); print p, d, s }' | dso_group >"$PROF/$name.syms"
  echo "$(elapsed) s: $name done"
}

# The figures of one run, one "name<TAB>value" a line: its rate; CPU per unit of work
# (handshake or delivery) by perf stat (exact on-CPU time) and by parley-bench's /proc
# samples (10 ms ticks); the user-space share by perf's samples and by /proc; user and
# kernel CPU per unit (perf stat's CPU split by the samples' share); context switches and
# each system call per unit.
run_figures() { # name
  node -e '
    const fs = require("fs");
    const [json, dsos, stat, io] = process.argv.slice(1).map((f) => fs.readFileSync(f, "utf8"));
    const r = JSON.parse(json);
    const ramp = r.scenario === "ramp", unit = ramp ? "handshake" : "delivery";
    const units = (ramp ? r.connected : r.received) || 0;
    const f = (x, d) => (x == null || !isFinite(x) ? "-" : x.toFixed(d));
    const row = (k, v) => console.log(k + "\t" + v);
    let kernel = 0, total = 0, samples = 0;
    for (const l of dsos.split("\n").filter(Boolean)) {
      const [pct, dso, n] = l.split("\t");
      total += +pct;
      samples += +n;
      if (dso === "kernel") kernel += +pct;
    }
    const userShare = total > 0 ? (total - kernel) / total : null;
    let cpuMs = null, ctx = null, calls = 0;
    const sys = [];
    for (const l of stat.split("\n")) {
      const c = l.split(",");
      if (!/^[0-9.]+$/.test(c[0])) continue;
      if (c[2] === "task-clock") cpuMs = +c[0];
      else if (c[2] === "context-switches") ctx = +c[0];
      else if (c[2] === "raw_syscalls:sys_enter") calls = +c[0];
      else if (c[2].startsWith("syscalls:sys_enter_") && +c[0] > 0) sys.push([c[2].slice(19), +c[0]]);
    }
    sys.push(["other", calls - sys.reduce((t, [, n]) => t + n, 0)]);
    const per = (x, d) => f(units > 0 && x != null ? x / units : null, d);
    row(ramp ? "handshakes/s" : "deliveries/s", f(ramp ? r.handshakes_per_s : r.deliveries_per_s, 0));
    row(ramp ? "connect errors" : "lost", ramp ? r.connect_errors : r.lost);
    row("CPU us/" + unit + " (stat)", per(cpuMs * 1000, 2));
    row("CPU us/" + unit + " (/proc)", per(r.server_cpu_s * 1e6, 2));
    row("user % (samples)", f(userShare * 100, 1));
    row("user % (/proc)", f((100 * r.server_user_cpu_s) / r.server_cpu_s, 1));
    row("user us/" + unit, per(cpuMs * 1000 * userShare, 3));
    row("kernel us/" + unit, per(cpuMs * 1000 * (1 - userShare), 3));
    row("samples", samples);
    row("ctx switches/" + unit, per(ctx, 3));
    const [a, b] = io.trim().split("\n").map((l) => l.split(" ").map(Number));
    const d = b ? b.map((x, i) => x - a[i]) : [null, null, null, null];
    row("read calls/" + unit, per(d[0], 3));
    row("write calls/" + unit, per(d[1], 3));
    row("bytes/write call", f(d[1] > 0 ? d[3] / d[1] : null, 0));
    if (calls > 0) {
      row("syscalls/" + unit, per(calls, 3));
      for (const [name, n] of sys.sort((x, y) => y[1] - x[1]))
        if (units > 0 && n / units >= 0.001) row("  " + name, per(n, 3));
    }
    row("bench saturated", r.bench_saturated ? "yes" : "no");
  ' "$PROF/$1.json" "$PROF/$1.dsos" "$PROF/$1.stat" "$PROF/$1.io"
}

# The summary of one scenario and server: a column per repetition.
summarize() { # scenario server
  local sc=$1 server=$2 rep names=()
  for rep in $(seq "$REPS"); do
    [[ -s $PROF/$sc-$server-$rep.syms ]] && names+=("$sc-$server-$rep")
  done
  ((${#names[@]})) || return 0
  echo
  echo "== $sc, $server ($(printf '%s ' "${names[@]}"))"
  local n tmp
  tmp=$(mktemp -d)
  local figs=()
  for n in "${names[@]}"; do
    run_figures "$n" >"$tmp/$n.fig"
    figs+=("$tmp/$n.fig")
  done
  # rows: key, value per run
  awk -F'\t' 'FNR == 1 { r++ } { v[$1, r] = $2; if (!($1 in seen)) { seen[$1] = 1; k[++m] = $1 } }
    END {
      for (i = 1; i <= m; i++) {
        line = sprintf("  %-24s", k[i])
        for (j = 1; j <= r; j++) line = line sprintf("%12s", ((k[i], j) in v) ? v[k[i], j] : "-")
        print line
      }
    }' "${figs[@]}"
  rm -rf "$tmp"
  echo "  self time by DSO, % of the server's samples (per run):"
  local files=() sfiles=()
  for n in "${names[@]}"; do files+=("$PROF/$n.dsos") sfiles+=("$PROF/$n.syms"); done
  table 2 10 "${files[@]}"
  echo "  top $TOP symbols by self time, % of the server's samples (per run), DSO, symbol:"
  table 3 "$TOP" "${sfiles[@]}"
  # the targets are on user-space CPU, which the kernel's TCP work crowds out of the above
  echo "  top $TOP user-space symbols, the same shares:"
  local ufiles=()
  for n in "${names[@]}"; do
    awk -F'\t' '$2 != "kernel"' "$PROF/$n.syms" >"$PROF/$n.usyms"
    ufiles+=("$PROF/$n.usyms")
  done
  table 3 "$TOP" "${ufiles[@]}"
}

# table KEYCOLS N FILE...: the N keys (columns 2..KEYCOLS of share-first rows) with the
# highest mean share over the files, each file's share in a column.
table() {
  local keys=$1 limit=$2
  shift 2
  awk -F'\t' -v keys="$keys" -v limit="$limit" -v runs=$# '
    FNR == 1 { r++ }
    { k = $2; for (i = 3; i <= keys; i++) k = k "\t" $i; s[k, r] += $1; t[k] += $1 }
    END {
      n = 0
      for (k in t) key[++n] = k
      for (i = 2; i <= n; i++) { # insertion sort by total, descending
        x = key[i]
        for (j = i - 1; j >= 1 && t[key[j]] < t[x]; j--) key[j + 1] = key[j]
        key[j + 1] = x
      }
      for (i = 1; i <= n && i <= limit; i++) {
        line = "   "
        for (j = 1; j <= runs; j++) line = line sprintf("%7.2f", s[key[i], j])
        split(key[i], f, "\t")
        line = line sprintf("  %-10s", f[1])
        if (keys > 2) line = line " " f[2]
        print line
      }
    }' "$@"
}

echo "== bench-profile: $SCENARIOS; servers $SERVERS; $REPS repetition(s); perf at $FREQ Hz ($CALL_GRAPH); $PROF"
for rep in $(seq "$REPS"); do
  for sc in $SCENARIOS; do
    for server in $SERVERS; do
      [[ $server == echo && $sc == ramp ]] && continue # no Socket.IO handshake to profile
      profile_run "$sc" "$server" "$rep" || true
    done
  done
done
{
  echo "bench-profile $(date -u +%FT%TZ), $(git describe --always --dirty --tags 2>/dev/null || echo unknown)," \
    "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
  for sc in $SCENARIOS; do
    for server in $SERVERS; do summarize "$sc" "$server"; done
  done
} | tee "$PROF/summary.txt"
echo "== bench-profile done in $(elapsed) s; $PROF/summary.txt"
