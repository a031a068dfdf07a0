#!/usr/bin/env bash
# make bench [QUICK=1]: Parley beside the Node.js socket.io reference server
# (bench/node/server.mjs) and the trivial C echo server (bench/echo_server.c), driven by
# parley-bench (tools/bench), then docs/BENCHMARKS.md and its plots (docs/bench/*.png).
#
#   1. the micro-benchmarks (sio_broadcast, chat_store; shorter under QUICK)
#   2. every scenario, the servers alternating (parley, node[, echo]), R repetitions
#      (3; QUICK=1: 1), each run on a fresh server process on a port the kernel picks:
#        ramp       handshakes/s with JWT verification, connect latency
#        idle       RSS per connection at several connection counts
#        broadcast  10,000 clients in rooms of 10 at increasing offered deliveries/s,
#                   each server until its p99 passes 100 ms or the bench saturates
#        burst      one room of 1,000, one sender with 64 acks outstanding: max deliveries/s
#        chat       everyone sends: ack latency
#        sse, longpoll  HTTP fan-out (Parley only: Node has no such API)
#   3. scripts/bench-report.mjs: medians, ratios, targets, gnuplot PNGs, the generated
#      section of docs/BENCHMARKS.md (a QUICK run writes build/bench/doc/ instead).
# Every run is bounded (parley-bench stops by itself, under `timeout`); servers are
# stopped after each run and on any exit. Results: build/bench/results.jsonl (one line
# per run: case, server, repetition, load, parley-bench's JSON line), logs in
# build/bench/logs/. Default run < 15 min, QUICK < 3 min on the project's 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
QUICK=${QUICK:-0}
[[ $QUICK == 0 || -z $QUICK ]] && QUICK=0 || QUICK=1
OUT=$BUILD/bench
RESULTS=$OUT/results.jsonl
SECRET=parley-bench-secret-0123456789abcdef
API_KEY=parley-bench-api-key-0123456789
T0=$(date +%s)

if ((QUICK)); then
  REPS=1 DUR=2 IDLE_HOLD=1 IDLE_COUNTS=(1000 10000) LOADS=(10000 50000 100000)
  DOC=${BENCH_DOC:-$OUT/doc/BENCHMARKS.md}
else
  REPS=3 DUR=3 IDLE_HOLD=2 IDLE_COUNTS=(1000 5000 10000 19900) LOADS=(10000 20000 50000 75000 100000 150000)
  DOC=${BENCH_DOC:-docs/BENCHMARKS.md}
fi
WARM=1 DRAIN=1
# The same offered connect rate for both servers, from 4 load processes: with 2, parley-bench's
# own pacing and handshake work held the completed rate near 20,000/s whatever the server did.
# At most 500 handshakes under way, below both listen backlogs (Node's 511, Parley's 4096):
# unbounded, the accept queue overflows, the kernel drops SYNs, and the clients' 1 s SYN
# retransmit, not the server, sets the rate.
RAMP_CLIENTS=10000 RAMP_RATE=80000 RAMP_PROCS=4 RAMP_IN_FLIGHT=500
BCAST_CLIENTS=10000 ROOM=10         # 1,000 rooms, one sender each
FAST_CONNECT=20000 NODE_CONNECT=2000 # setup pace only (not measured outside ramp)
RUN_TIMEOUT=180

for f in "$BUILD/parley" "$BUILD/parley-bench" "$BUILD/echo_server" "$BUILD/sio_broadcast" "$BUILD/chat_store"; do
  [[ -x $f ]] || { echo "bench: $f missing (make build)" >&2; exit 1; }
done
[[ -d bench/node/node_modules/socket.io ]] || { echo "bench: bench/node/node_modules missing (scripts/deps.sh bench)" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "bench: gnuplot missing (scripts/deps.sh bench)" >&2; exit 1; }

mkdir -p "$OUT/logs"
rm -f "$OUT"/logs/*.log
: >"$RESULTS"
printf '{"t0":%s,"quick":%s,"reps":%s,"loadavg_start":"%s"}\n' "$T0" "$QUICK" "$REPS" \
  "$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/meta.json"

# server_cmd, start_server, stop_server, run, ladder; the traps that stop a server left running
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh

echo "== make bench$( ((QUICK)) && echo ' QUICK=1'): $REPS repetition(s); results in $RESULTS"

echo "== Socket.IO broadcast micro-benchmark (in-process sockets)"
if ((QUICK)); then "$BUILD/sio_broadcast" 10000 50; else "$BUILD/sio_broadcast" 10000 200; fi |
  tee "$OUT/micro.txt"
echo "== Chat store: durable appends (SQLite, then memory)"
if ((QUICK)); then "$BUILD/chat_store" 40000 100 2000 50000 both; else "$BUILD/chat_store" 200000 100 2000 50000 both; fi |
  tee -a "$OUT/micro.txt"

echo "== ramp: $RAMP_CLIENTS handshakes (WebSocket + Socket.IO CONNECT with a JWT) offered at $RAMP_RATE/s, $RAMP_IN_FLIGHT under way at most"
for rep in $(seq "$REPS"); do
  for s in parley node; do
    run ramp "$s" "$rep" "$RAMP_CLIENTS" ramp --clients "$RAMP_CLIENTS" --connect-rate "$RAMP_RATE" \
      --procs "$RAMP_PROCS" --in-flight "$RAMP_IN_FLIGHT" || true
  done
done

echo "== idle: server RSS per connection at ${IDLE_COUNTS[*]} connections"
for rep in $(seq "$REPS"); do
  for n in "${IDLE_COUNTS[@]}"; do
    for s in parley node; do
      run idle "$s" "$rep" "$n" idle --clients "$n" || true
    done
  done
done

echo "== broadcast: $BCAST_CLIENTS clients, rooms of $ROOM, one sender per room; offered deliveries/s ${LOADS[*]}"
ladder "$BCAST_CLIENTS" "$ROOM" "parley node echo" "${LOADS[@]}"

echo "== burst: one room of 1,000, one sender keeping 64 acks outstanding (3 s drain: late is not lost)"
for rep in $(seq "$REPS"); do
  for s in parley node echo; do
    run burst "$s" "$rep" 1000 burst --clients 1000 --window 64 --drain 3 || true
  done
done

echo "== chat: 1,000 clients in rooms of 10, every client sends 1 msg/s (10,000 deliveries/s)"
for rep in $(seq "$REPS"); do
  for s in parley node; do
    run chat "$s" "$rep" 10000 chat --clients 1000 --room-size 10 --rate 1 || true
  done
done

echo "== sse, longpoll: 10,000 HTTP subscribers in rooms of 100, 100 Socket.IO senders at 2 msg/s (20,000 deliveries/s), Parley only"
for rep in $(seq "$REPS"); do
  for sc in sse longpoll; do
    run "$sc" parley "$rep" 20000 "$sc" --clients 10000 --room-size 100 --senders 100 --rate 2 || true
  done
done

echo "== report ($(elapsed) s so far)"
node scripts/bench-report.mjs report --results "$RESULTS" --meta "$OUT/meta.json" \
  --micro "$OUT/micro.txt" --doc "$DOC" --work "$OUT/plot" --elapsed "$(elapsed)"
echo "== make bench done in $(elapsed) s; $DOC"
