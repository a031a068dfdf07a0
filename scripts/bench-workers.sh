#!/usr/bin/env bash
# make bench, worker processes (parley --workers N), after scripts/bench.sh:
#   idle       100,000 idle Socket.IO connections (JWT, CONNECT) on one machine: 8
#              workers (each under the 20,000-descriptor limit), parley-bench in 12
#              processes over 127.0.0.x source addresses; RSS of the supervisor and all
#              workers per connection
#   ramp       handshakes/s with JWT, --workers 1 vs 2 (10,000 connections offered at
#              40,000/s)
#   ladder     the broadcast ladder of scripts/bench.sh (10,000 clients in rooms of 10,
#              one sender per room, 100-byte texts, offered deliveries/s stepping up,
#              each server until p99 > 100 ms, losses or the bench saturated) for
#              parley --workers 1, parley --workers 2 and the Node.js socket.io server,
#              alternating; with 2 workers a room's members are spread over them
#              (SO_REUSEPORT), so most messages cross worker → supervisor → worker.
#              Server CPU is summed over the server's process tree (parley-bench
#              --server-pid samples the PID and its descendants). About 7 minutes.
# Each case R times (3; QUICK=1: 1, and smaller), medians. Writes build/bench/workers.jsonl
# (the records of scripts/bench-common.sh's run), build/bench/workers-meta.json and the
# section between the workers markers of docs/BENCHMARKS.md (a QUICK run writes
# build/bench/doc/workers.md instead; BENCH_DOC overrides either). Every run is bounded
# (timeout) and its server stopped, workers included.
# Environment: BUILD (build), CASES ("idle ramp ladder": a subset for a partial run; the
# report leaves out what was not run), PARLEY_BIN, BENCH_BIN, NODE_SERVER (see
# scripts/bench-common.sh), PARLEY_VERSION (the name the report gives the binary;
# git describe).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
QUICK=${QUICK:-0}
[[ $QUICK == 0 || -z $QUICK ]] && QUICK=0 || QUICK=1
CASES=" ${CASES:-idle ramp ladder} "
OUT=$BUILD/bench
RESULTS=$OUT/workers.jsonl
SECRET=parley-bench-secret-0123456789abcdef
API_KEY=parley-bench-api-key-0123456789
T0=$(date +%s)
if ((QUICK)); then
  REPS=1 IDLE_CLIENTS=20000 IDLE_PROCS=3 LOADS=(10000 50000 100000) DUR=2
  DOC=${BENCH_DOC:-$OUT/doc/workers.md}
else
  REPS=3 IDLE_CLIENTS=100000 IDLE_PROCS=12 LOADS=(10000 20000 50000 75000 100000 150000) DUR=3
  DOC=${BENCH_DOC:-docs/BENCHMARKS.md}
fi
WARM=1 DRAIN=1 IDLE_HOLD=3
BCAST_CLIENTS=10000 ROOM=10          # as scripts/bench.sh: 1,000 rooms, one sender each
FAST_CONNECT=20000 NODE_CONNECT=2000 # setup pace only (not measured outside ramp)
RUN_TIMEOUT=240
LOG_PREFIX=workers- STOP_POLLS=100 # workers drain, then the supervisor exits: up to 5 s
# server_cmd, start_server, stop_server, run, ladder; the traps that stop a server left running
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
PARLEY_VERSION=${PARLEY_VERSION:-$(git describe --always --dirty --tags 2>/dev/null || echo unknown)}

for f in "$PARLEY_BIN" "$BENCH_BIN"; do
  [[ -x $f ]] || { echo "bench-workers: $f missing (make build)" >&2; exit 1; }
done
if [[ $CASES == *" ladder "* && ! -d $(dirname "$NODE_SERVER")/node_modules/socket.io ]]; then
  echo "bench-workers: $(dirname "$NODE_SERVER")/node_modules missing (scripts/deps.sh bench)" >&2
  exit 1
fi
mkdir -p "$OUT/logs" "$(dirname "$DOC")"
rm -f "$OUT"/logs/workers-*.log
: >"$RESULTS"
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
LADDER_S=null

if [[ $CASES == *" idle "* ]]; then
  echo "== workers: idle $IDLE_CLIENTS connections on 8 workers"
  for rep in $(seq "$REPS"); do
    run idle parley-w8 "$rep" "$IDLE_CLIENTS" idle --clients "$IDLE_CLIENTS" --procs "$IDLE_PROCS" \
      --connect-rate 10000 --duration 3 --timeout 30 || true
  done
fi
if [[ $CASES == *" ramp "* ]]; then
  echo "== workers: handshakes/s with JWT, 1 vs 2 workers"
  for rep in $(seq "$REPS"); do
    for w in 1 2; do
      run ramp "parley-w$w" "$rep" 10000 ramp --clients 10000 --connect-rate 40000 --procs 1 || true
    done
  done
fi
if [[ $CASES == *" ladder "* ]]; then
  echo "== workers: broadcast ladder, $BCAST_CLIENTS clients in rooms of $ROOM spread over the workers;" \
    "parley --workers 1, --workers 2, Node; offered deliveries/s ${LOADS[*]}"
  t=$(date +%s)
  ladder "$BCAST_CLIENTS" "$ROOM" "parley-w1 parley-w2 node" "${LOADS[@]}"
  LADDER_S=$(($(date +%s) - t))
fi

printf '{"t0":%s,"quick":%s,"reps":%s,"room_size":%s,"loadavg_start":"%s","loadavg_end":"%s","elapsed_s":%s,"ladder_s":%s,"parley":"%s","node_server":"%s"}\n' \
  "$T0" "$QUICK" "$REPS" "$ROOM" "$LOADAVG_START" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(elapsed)" \
  "$LADDER_S" "$PARLEY_VERSION" "$NODE_SERVER" >"$OUT/workers-meta.json"
node scripts/bench-workers-report.mjs "$RESULTS" "$DOC" "$OUT/workers-meta.json"
echo "== bench-workers done in $(elapsed) s; $DOC"
