#!/usr/bin/env bash
# make bench, worker processes (parley --workers N), after scripts/bench.sh:
#   idle       100,000 idle Socket.IO connections (JWT, CONNECT) on one machine: 8
#              workers (each under the 20,000-descriptor limit), parley-bench in 12
#              processes over 127.0.0.x source addresses; RSS of the supervisor and all
#              workers per connection
#   ramp       handshakes/s with JWT, --workers 1 vs 2 (10,000 connections offered at
#              40,000/s)
#   broadcast  10,000 clients in rooms of 10 spread over the workers, 1,000 senders, at
#              offered deliveries/s: p99 and server CPU per delivery, --workers 1 vs 2
# Each case R times (3; QUICK=1: 1, and smaller), medians. Writes build/bench/workers.jsonl
# and the section between the workers markers of docs/BENCHMARKS.md (a QUICK run writes
# build/bench/doc/workers.md instead). Every run is bounded (timeout) and its server
# stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
QUICK=${QUICK:-0}
[[ $QUICK == 0 || -z $QUICK ]] && QUICK=0 || QUICK=1
OUT=$BUILD/bench
RESULTS=$OUT/workers.jsonl
SECRET=parley-bench-secret-0123456789abcdef
if ((QUICK)); then
  REPS=1 IDLE_CLIENTS=20000 IDLE_PROCS=3 LOADS=(20000 50000) DUR=2
  DOC=$OUT/doc/workers.md
else
  REPS=3 IDLE_CLIENTS=100000 IDLE_PROCS=12 LOADS=(20000 50000 100000) DUR=3
  DOC=docs/BENCHMARKS.md
fi
mkdir -p "$OUT/logs" "$(dirname "$DOC")"
: >"$RESULTS"
SERVER_PID=""

stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 100); do # workers drain, then the supervisor exits
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
trap stop_server EXIT

start_parley() { # workers log
  "$BUILD/parley" --port 0 --store memory --jwt-secret "$SECRET" --rate-burst 1000000 \
    --rate-per-sec 1000000 --event-burst 1000000 --event-rate 1000000 --log-level warn \
    --no-recovery --workers "$1" >"$2" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 200); do
    PORT=$(sed -n 's/^listening [0-9.]*:\([0-9]*\)$/\1/p' "$2")
    [[ -n $PORT ]] && return 0
    sleep 0.05
  done
  echo "bench-workers: parley --workers $1 did not start" >&2
  return 1
}

# run CASE WORKERS REP LOAD parley-bench args...
run() {
  local case=$1 workers=$2 rep=$3 load=$4
  shift 4
  local log=$OUT/logs/workers-$case-$workers-$rep-$load.log
  start_parley "$workers" "$log.server"
  local json
  json=$(timeout 240 "$BUILD/parley-bench" "$@" --port "$PORT" --jwt-secret "$SECRET" \
    --server-pid "$SERVER_PID" 2>"$log" | grep '^{' || true)
  stop_server
  [[ -n $json ]] || { echo "bench-workers: $case w$workers $load: no result (see $log)" >&2; return 0; }
  printf '{"case":"%s","workers":%s,"rep":%s,"load":%s,"r":%s}\n' "$case" "$workers" "$rep" \
    "$load" "$json" >>"$RESULTS"
  echo "  $case workers=$workers rep=$rep load=$load done"
}

echo "== workers: idle $IDLE_CLIENTS connections on 8 workers"
for rep in $(seq "$REPS"); do
  run idle 8 "$rep" "$IDLE_CLIENTS" idle --clients "$IDLE_CLIENTS" --procs "$IDLE_PROCS" \
    --connect-rate 10000 --duration 3 --timeout 30
done
echo "== workers: handshakes/s with JWT, 1 vs 2 workers"
for rep in $(seq "$REPS"); do
  for w in 1 2; do
    run ramp "$w" "$rep" 10000 ramp --clients 10000 --connect-rate 40000 --procs 1
  done
done
echo "== workers: broadcast, rooms of 10 spread over the workers, 1 vs 2 workers"
for load in "${LOADS[@]}"; do
  for rep in $(seq "$REPS"); do
    for w in 1 2; do
      run broadcast "$w" "$rep" "$load" broadcast --clients 10000 --room-size 10 \
        --rate $((load / 10000)) --duration "$DUR" --warmup 1 --drain 1 --connect-rate 20000
    done
  done
done
node scripts/bench-workers-report.mjs "$RESULTS" "$DOC"
