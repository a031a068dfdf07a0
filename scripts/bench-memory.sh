#!/usr/bin/env bash
# scripts/bench-memory.sh [sizes|rss|massif|all]: where the bytes of an idle Socket.IO
# connection go (issue 17; docs/BENCHMARKS.md, "Where the bytes of an idle connection go").
#
#   sizes   build/conn_sizes (bench/conn_sizes.c): every block one idle connection holds,
#           from the code's sizeof values, and what issue 17's changes would take off.
#           Milliseconds; `make bench` runs this one.
#   rss     RSS growth per connection with CONNS idle connections, as `make bench`'s idle
#           scenario measures it (parley-bench idle --server-pid), REPS runs, each on a
#           fresh server; the median.
#   massif  the release server under valgrind's massif with CONNS idle connections from
#           parley-bench: after a warm-up connection (OpenSSL and the store make their
#           tables on first use) a detailed snapshot before, another once all CONNS are held
#           (valgrind's detailed_snapshot, through vgdb), the bytes per connection by
#           allocation site (scripts/massif-sites.mjs), and ms_print's peak. About a minute.
#   all     the three (the default).
# Results in $BUILD/bench/memory/. The server is the one `make bench` runs (--no-recovery),
# stopped after each run and on any exit (scripts/bench-common.sh). Loads are small:
# CONNS (2000) connections opened at 20,000/s natively, 500/s under valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CONNS=${CONNS:-2000}
REPS=${REPS:-3}
WHAT=${1:-all}
OUT=$BUILD/bench/memory
RESULTS=$OUT/results.jsonl
SECRET=parley-bench-secret-0123456789abcdef
API_KEY=parley-bench-api-key-0123456789
T0=$(date +%s)
WARM=1 DUR=2 DRAIN=1 IDLE_HOLD=2 FAST_CONNECT=20000 NODE_CONNECT=2000 RUN_TIMEOUT=120
LOG_PREFIX=memory-

case $WHAT in sizes | rss | massif | all) ;; *)
  echo "usage: $0 [sizes|rss|massif|all]" >&2
  exit 2
  ;;
esac
for f in "$BUILD/conn_sizes" "$BUILD/parley" "$BUILD/parley-bench"; do
  [[ -x $f ]] || { echo "bench-memory: $f missing (make build)" >&2; exit 1; }
done
mkdir -p "$OUT/logs"

# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh

if [[ $WHAT == sizes || $WHAT == all ]]; then
  echo "== per-connection blocks from sizeof (bench/conn_sizes): 19,900 and $CONNS connections"
  "$BUILD/conn_sizes" 19900 | tee "$OUT/conn_sizes-19900.md"
  "$BUILD/conn_sizes" "$CONNS" >"$OUT/conn_sizes-$CONNS.md"
  echo "(the same at $CONNS connections: $OUT/conn_sizes-$CONNS.md)"
fi

if [[ $WHAT == rss || $WHAT == all ]]; then
  echo "== RSS per idle connection at $CONNS connections, $REPS runs"
  : >"$RESULTS"
  for rep in $(seq "$REPS"); do
    run idle parley "$rep" "$CONNS" idle --clients "$CONNS" || true
  done
  # shellcheck disable=SC2016 # JavaScript, not shell
  node -e '
    const runs = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n")
      .map((l) => JSON.parse(l).result).filter((r) => r && r.server_bytes_per_conn);
    const b = runs.map((r) => r.server_bytes_per_conn).sort((x, y) => x - y);
    if (!b.length) { console.log("no run measured"); process.exit(1); }
    console.log(`RSS growth per connection: median ${b[b.length >> 1].toFixed(0)} B ` +
      `(runs: ${b.map((x) => x.toFixed(0)).join(", ")}; connected ${runs.map((r) => r.connected).join(", ")})`);
  ' "$RESULTS"
fi

if [[ $WHAT == massif || $WHAT == all ]]; then
  command -v valgrind >/dev/null || { echo "bench-memory: valgrind missing (scripts/deps.sh bench)" >&2; exit 1; }
  echo "== massif: the server with $CONNS idle connections"
  M=$OUT/massif
  mkdir -p "$M"
  rm -f "$M"/*
  # valgrind keeps the server's pid; massif writes massif.out when the server exits, so it
  # gets 20 s after SIGTERM.
  PARLEY_BIN="valgrind --tool=massif --massif-out-file=$M/massif.out --vgdb=yes --depth=12 --threshold=0.01 $BUILD/parley"
  STOP_POLLS=400
  start_server parley
  bench() { # clients hold_s log
    timeout "$RUN_TIMEOUT" "$BENCH_BIN" idle --clients "$1" --procs 2 --connect-rate 500 \
      --timeout 60 --duration "$2" --port "$PORT" --jwt-secret "$SECRET" >"$M/$3.out" 2>"$M/$3.err"
  }
  bench 1 1 warmup || true
  sleep 1
  vgdb --pid="$SERVER_PID" detailed_snapshot "$M/before.ms" >/dev/null
  bench "$CONNS" 15 held &
  BENCH_PID=$!
  for _ in $(seq 600); do
    grep -q ' ready, ' "$M/held.err" 2>/dev/null && break
    kill -0 "$BENCH_PID" 2>/dev/null || break
    sleep 0.1
  done
  grep ' ready, ' "$M/held.err" || { echo "bench-memory: the connections never got ready" >&2; exit 1; }
  sleep 2 # the last CONNECT answers and myRooms written
  vgdb --pid="$SERVER_PID" detailed_snapshot "$M/held.ms" >/dev/null
  wait "$BENCH_PID" || true
  BENCH_PID=""
  stop_server
  echo "-- bytes per connection by allocation site: $CONNS connections held, minus before (vgdb snapshots)"
  node scripts/massif-sites.mjs --before "$M/before.ms" --after "$M/held.ms" --conns "$CONNS" --top 10 |
    tee "$M/sites-held.md"
  echo "-- the same from ms_print's peak snapshot (massif.out)"
  node scripts/massif-sites.mjs --before "$M/before.ms" --after "$M/massif.out" --conns "$CONNS" --top 10 |
    tee "$M/sites-peak.md"
  ms_print "$M/massif.out" >"$M/ms_print.txt"
  peak=$(sed -n 's/.*[ []\([0-9]*\) (peak).*/\1/p' "$M/ms_print.txt")
  echo "-- ms_print's peak snapshot ($peak) and the one before the first connection:"
  grep -m1 -E '^ +n +time\(i\)' "$M/ms_print.txt"
  grep -m1 -E "^ +$peak " "$M/ms_print.txt"
  grep -E '^mem_heap(_extra)?_B=' "$M/before.ms" | tr '\n' ' '
  echo
  echo "(ms_print's whole output: $M/ms_print.txt)"
fi
