#!/usr/bin/env bash
# scripts/bench-callgrind.sh [SERVER...]: user-space instructions per delivery, counted by
# callgrind, in the broadcast scenario of the per-delivery CPU target (issue 17). Not
# part of make bench: a measuring aid, run by hand after make build.
#
# Why: on a virtual machine without hardware counters, "user" CPU time (perf's samples,
# /proc's ticks) also holds the kernel's way back from each system call, so it cannot
# say what the server's own code costs. Instructions retired in user space can: callgrind
# counts them exactly, whatever the machine, load or neighbours.
#
# Each SERVER ("parley echo" by default: Parley and the C echo server) runs under
# `valgrind --tool=callgrind` with instrumentation off; parley-bench connects CLIENTS
# (2,000) in rooms of 10, one sender per room at RATE (2) messages/s, i.e. 4,000
# deliveries/s, slow enough for a server under valgrind; once the senders have run for
# WARM s, instrumentation is switched on for DUR (10) s, then the counts are dumped.
# Deliveries = 10 × the messages handled in that time (calls of client_message for
# Parley, of on_event for the echo server: one each per incoming message).
#
# Writes build/bench/callgrind/: SERVER.out (callgrind's dump), SERVER.log (server),
# SERVER.bench (parley-bench), SERVER.txt (callgrind_annotate, inclusive), summary.txt
# (what is printed: instructions per delivery and per message, and the functions with
# the largest inclusive share). About 1 minute per server.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=$BUILD/bench
CG=$OUT/callgrind
SECRET=parley-bench-secret-0123456789abcdef
T0=$(date +%s)
CLIENTS=${CLIENTS:-2000} RATE=${RATE:-2} WARM=${WARM:-4} DUR=${DUR:-10}
SERVERS=("$@")
((${#SERVERS[@]})) || SERVERS=(parley echo)
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
for f in "$BUILD/parley" "$BUILD/echo_server" "$BENCH_BIN"; do
  [[ -x $f ]] || { echo "bench-callgrind: $f missing (make build)" >&2; exit 1; }
done
command -v valgrind >/dev/null || { echo "bench-callgrind: valgrind missing" >&2; exit 1; }
mkdir -p "$CG"
: >"$CG/summary.txt"

# The function counted once per incoming message, per server.
message_fn() { [[ $1 == parley ]] && echo client_message || echo on_event; }

run_one() { # server
  local s=$1 cmd log=$CG/$1.log out=$CG/$1.out
  rm -f "$out" "$out".*
  read -ra cmd <<<"$(server_cmd "$s")"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "${cmd[@]}" \
    >"$log" 2>&1 &
  SERVER_PID=$!
  PORT=""
  for _ in $(seq 300); do
    PORT=$(sed -n 's/^listening [0-9.]*:\([0-9]*\)$/\1/p' "$log")
    [[ -n $PORT ]] && break
    sleep 0.1
  done
  [[ -n $PORT ]] || { echo "bench-callgrind: $s did not start" >&2; return 1; }
  timeout 300 "$BENCH_BIN" broadcast --clients "$CLIENTS" --room-size 10 --rate "$RATE" --procs 1 \
    --connect-rate 500 --warmup $((WARM + 4)) --duration "$DUR" --drain 2 --port "$PORT" \
    --jwt-secret "$SECRET" >"$CG/$s.bench" 2>&1 &
  BENCH_PID=$!
  for _ in $(seq 600); do
    grep -q ' ready, ' "$CG/$s.bench" && break
    sleep 0.1
  done
  sleep "$WARM"
  callgrind_control -i on "$SERVER_PID" >/dev/null
  sleep "$DUR"
  callgrind_control -i off "$SERVER_PID" >/dev/null
  callgrind_control -d "$SERVER_PID" >/dev/null
  wait "$BENCH_PID" || true
  BENCH_PID=""
  stop_server
  local dumps=("$out".*) dump
  dump=${dumps[0]}
  callgrind_annotate --inclusive=yes "$dump" >"$CG/$s.txt"
  local total msgs fn
  fn=$(message_fn "$s")
  total=$(sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' "$CG/$s.txt" | tr -d ,)
  # callgrind's caller tree: a function's callers ("< CALLER (Nx)") come right before its
  # own line ("*  FILE:FUNCTION"); their counts add up to its calls. (awk reads to the end:
  # leaving early would fail the pipeline.)
  msgs=$(callgrind_annotate --inclusive=yes --tree=caller "$dump" | awk -v fn="$fn" '
    /^$/ { n = 0; next }
    / < / { if (match($0, /\(([0-9,]+)x\)/)) { c = substr($0, RSTART + 1, RLENGTH - 3); gsub(",", "", c); n += c } next }
    !done && $0 ~ ("\\*  .*:" fn "( |$)") { print n; done = 1 }')
  ((msgs > 0)) || { echo "bench-callgrind: $s: no $fn call counted" >&2; return 1; }
  {
    printf '== %s: %s instructions in %s messages (%s deliveries): %s a delivery, %s a message\n' \
      "$s" "$total" "$msgs" $((msgs * 10)) $((total / (msgs * 10))) $((total / msgs))
    echo "   inclusive share, instructions a delivery, function:"
    grep -E '^ *[0-9,]+ +\( *[0-9.]+%\)  [^ ].* \[/' "$CG/$s.txt" |
      grep -v 'uv_run\|libuv.so\|???:0x' | head -30 |
      awk -v d=$((msgs * 10)) '{ n = $1; gsub(",", "", n); $1 = ""; printf "   %7.1f %s\n", n / d, $0 }'
  } | tee -a "$CG/summary.txt"
}

for s in "${SERVERS[@]}"; do
  run_one "$s"
done
echo "== bench-callgrind done in $(elapsed) s; $CG/summary.txt"
