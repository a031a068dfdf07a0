#!/usr/bin/env bash
# scripts/bench-ab.sh BEFORE_BUILD [AFTER_BUILD] [SCENARIO...]: two builds of Parley side by
# side, the way `make bench` runs them, for a change's before/after (issue 17). The
# servers alternate within each repetition (before, after, before, ...) so that both see
# the same machine; parley-bench is AFTER_BUILD's for both. Scenarios (default: all):
#   ramp       10,000 handshakes (WebSocket + Socket.IO CONNECT with a JWT) offered at 80,000/s,
#              500 under way at most (as scripts/bench.sh)
#   broadcast  10,000 clients in rooms of 10 at 20,000 and 50,000 deliveries/s
#   burst      one room of 1,000, one sender keeping 64 acks outstanding
#   idle       RSS per connection at 19,900 idle connections
# REPS (3) repetitions of DUR (10) s measured; results in AFTER_BUILD/bench/ab/results.jsonl, and a table of
# medians (with every run) on stdout. A build dir is one with parley in it, e.g. a
# worktree of the earlier commit built in release: git worktree add /tmp/before REV &&
# cmake -S /tmp/before -B /tmp/before/build -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
# cmake --build /tmp/before/build --target parley.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 1 ]] || { echo "usage: $0 BEFORE_BUILD [AFTER_BUILD] [ramp|broadcast|burst|idle...]" >&2; exit 2; }
BEFORE=$1
AFTER=${2:-build}
shift $(($# >= 2 ? 2 : 1))
SCENARIOS=("$@")
((${#SCENARIOS[@]})) || SCENARIOS=(ramp broadcast burst idle)
for f in "$BEFORE/parley" "$AFTER/parley" "$AFTER/parley-bench"; do
  [[ -x $f ]] || { echo "bench-ab: $f missing" >&2; exit 1; }
done
BUILD=$AFTER
OUT=$AFTER/bench/ab
RESULTS=$OUT/results.jsonl
SECRET=parley-bench-secret-0123456789abcdef
API_KEY=parley-bench-api-key-0123456789
T0=$(date +%s)
REPS=${REPS:-3}
DUR=${DUR:-10} # long enough for /proc's 10 ms CPU ticks to resolve 1 µs per delivery
WARM=1 DRAIN=1 IDLE_HOLD=2 FAST_CONNECT=20000 NODE_CONNECT=2000 RUN_TIMEOUT=180
LOG_PREFIX=ab-
mkdir -p "$OUT/logs"
: >"$RESULTS"

# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh

# One run of the "parley" server kind with the given build's binary, labelled by side.
side() { # before|after case rep load scenario [options...]
  local which=$1
  shift
  if [[ $which == before ]]; then PARLEY_BIN=$BEFORE/parley; else PARLEY_BIN=$AFTER/parley; fi
  local n
  n=$(wc -l <"$RESULTS")
  run "$1" parley "$2" "$3" "${@:4}" || true
  # the server label says which side the line is
  if (($(wc -l <"$RESULTS") > n)); then
    sed -i '$ s/"server":"parley"/"server":"'"$which"'"/' "$RESULTS"
  fi
}

for rep in $(seq "$REPS"); do
  for sc in "${SCENARIOS[@]}"; do
    for which in before after; do
      case $sc in
        ramp) side "$which" ramp "$rep" 10000 ramp --clients 10000 --connect-rate 80000 --procs 4 --in-flight 500 ;;
        broadcast)
          for load in 20000 50000; do
            side "$which" broadcast "$rep" "$load" broadcast --clients 10000 --room-size 10 \
              --rate "$(awk -v l="$load" 'BEGIN { printf "%g", l / 10000 }')"
          done ;;
        burst) side "$which" burst "$rep" 1000 burst --clients 1000 --window 64 --drain 3 ;;
        idle) side "$which" idle "$rep" 19900 idle --clients 19900 ;;
        *) echo "bench-ab: unknown scenario $sc" >&2; exit 2 ;;
      esac
    done
  done
done

# shellcheck disable=SC2016 # JavaScript, not shell
node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n")
    .map((l) => JSON.parse(l)).filter((l) => l.result);
  const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[s.length >> 1]; };
  const metrics = {
    ramp: [["handshakes_per_s", "handshakes/s"], ["server_cpu_us_per_handshake", "µs CPU/handshake"]],
    broadcast: [["deliveries_per_s", "deliveries/s"], ["server_cpu_us_per_delivery", "µs CPU/delivery"],
      ["server_user_us_per_delivery", "µs user/delivery"], ["delivery_ms.p99", "p99 ms"]],
    burst: [["deliveries_per_s", "deliveries/s"], ["server_cpu_us_per_delivery", "µs CPU/delivery"],
      ["server_user_us_per_delivery", "µs user/delivery"]],
    idle: [["server_bytes_per_conn", "RSS B/conn"]],
  };
  const get = (r, k) => k.split(".").reduce((o, p) => (o == null ? o : o[p]), r);
  console.log("| case | load | metric | before (runs) | after (runs) | after/before |");
  console.log("| --- | ---: | --- | --- | --- | ---: |");
  const keys = [...new Set(lines.map((l) => `${l.case}|${l.load}`))];
  for (const key of keys) {
    const [c, load] = key.split("|");
    for (const [k, label] of metrics[c] || []) {
      const vals = (side) => lines.filter((l) => l.case === c && String(l.load) === load && l.server === side)
        .map((l) => get(l.result, k)).filter((v) => typeof v === "number");
      const b = vals("before"), a = vals("after");
      if (!b.length || !a.length) continue;
      const f = (xs) => `${med(xs).toFixed(2)} (${xs.map((x) => x.toFixed(2)).join(", ")})`;
      console.log(`| ${c} | ${load} | ${label} | ${f(b)} | ${f(a)} | ${(med(a) / med(b)).toFixed(2)} |`);
    }
  }
' "$RESULTS"
echo "bench-ab: done in $(elapsed) s; $RESULTS"
