#!/usr/bin/env bash
# permessage-deflate (parley --ws-deflate, docs/DESIGN.md) beside the Node.js socket.io
# server with perMessageDeflate (threshold 1024 both), and both with compression off:
#   broadcast  100-byte and 4,000-byte texts in rooms of 10 (1,000 clients, 100 rooms, one
#              sender each) and of 1,000 (one room, one sender), at a fixed offered
#              DELIVERIES/s (500: what Node with perMessageDeflate still keeps up with for
#              4,000-byte texts in a room of 1,000 once its 1,000 zlib streams exist, so
#              CPU is compared at equal work; a warm-up of 4 s lets them be made): server
#              CPU per delivery, bytes per newMessage frame on the wire, delivery latency
#   idle       IDLE connections with the extension negotiated: server RSS per connection
#   micro      bench/ws_deflate: CPU per delivery of compressing once per broadcast against
#              once per recipient, in-process (the end-to-end CPU figures above are at the
#              resolution of /proc's clock ticks: ~3 µs per delivery at this load)
# parley-bench offers the extension as browsers do (permessage-deflate;
# client_max_window_bits) in every run, and pads texts with pseudo-random words
# (--text-words) rather than one repeated letter, which would compress unrealistically well.
# A 100-byte event is under the threshold: it goes uncompressed with deflate on too (what
# its run measures is the cost of having the extension on). Each case R times (3; QUICK=1:
# 1), servers alternating; results in build/bench/deflate.jsonl (scripts/bench-common.sh's
# records), medians printed by scripts/bench-deflate-report.mjs (also into
# build/bench/deflate.md). About 13 minutes on the project's 2-core machine.
# Environment: BUILD (build), PARLEY_BIN, BENCH_BIN, NODE_SERVER (scripts/bench-common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
QUICK=${QUICK:-0}
[[ $QUICK == 0 || -z $QUICK ]] && QUICK=0 || QUICK=1
OUT=$BUILD/bench
RESULTS=$OUT/deflate.jsonl
SECRET=parley-bench-secret-0123456789abcdef
API_KEY=parley-bench-api-key-0123456789
T0=$(date +%s)
if ((QUICK)); then REPS=1 DUR=3 WARM=2; else REPS=3 DUR=6 WARM=4; fi
DRAIN=1 IDLE_HOLD=2
DELIVERIES=500 CLIENTS=1000 IDLE=5000
FAST_CONNECT=20000 NODE_CONNECT=2000 # setup pace only
RUN_TIMEOUT=180
LOG_PREFIX=deflate-
SERVERS="parley parley-deflate node node-deflate"
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh

for f in "$PARLEY_BIN" "$BENCH_BIN" "$BUILD/ws_deflate"; do
  [[ -x $f ]] || { echo "bench-deflate: $f missing (make build)" >&2; exit 1; }
done
[[ -d $(dirname "$NODE_SERVER")/node_modules/socket.io ]] ||
  { echo "bench-deflate: $(dirname "$NODE_SERVER")/node_modules missing (scripts/deps.sh bench)" >&2; exit 1; }
mkdir -p "$OUT/logs"
rm -f "$OUT"/logs/deflate-*.log
: >"$RESULTS"

echo "== deflate: in-process, compressing once per broadcast vs once per recipient"
for rep in $(seq "$REPS"); do "$BUILD/ws_deflate" 3000; done | tee "$OUT/deflate-micro.txt" | grep -v '^{'

for rep in $(seq "$REPS"); do
  for room in 10 1000; do
    senders=$((CLIENTS / room))
    rate=$(awk -v d="$DELIVERIES" -v s="$senders" -v k="$room" 'BEGIN { printf "%g", d / (s * k) }')
    for bytes in 100 4000; do
      echo "== deflate: rep $rep, rooms of $room, $bytes-byte texts, $DELIVERIES deliveries/s"
      for s in $SERVERS; do
        run "broadcast-$room-$bytes" "$s" "$rep" "$DELIVERIES" broadcast --clients "$CLIENTS" \
          --room-size "$room" --rate "$rate" --text-bytes "$bytes" --text-words --deflate || true
      done
    done
  done
  echo "== deflate: rep $rep, $IDLE idle connections, extension negotiated"
  for s in $SERVERS; do
    run idle "$s" "$rep" "$IDLE" idle --clients "$IDLE" --deflate || true
  done
done

node scripts/bench-deflate-report.mjs "$RESULTS" | tee "$OUT/deflate.md"
echo "== bench-deflate done in $(elapsed) s"
