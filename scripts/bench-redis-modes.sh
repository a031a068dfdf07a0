#!/usr/bin/env bash
# make bench, the Redis adapter's modes (issue 13), after scripts/bench-redis.sh: what
# crosses Redis per delivered message with 4 nodes in classic mode (PUBLISH / PSUBSCRIBE
# socket.io#/#*: every node gets every broadcast and drops those for rooms it has no
# member in), sharded mode (SPUBLISH / SSUBSCRIBE, @socket.io/redis-adapter's
# createShardedAdapter, subscriptionMode "dynamic": a node subscribes to a room's channel
# socket.io#/#<room># only while the room has members there) and sharded-static (one
# sharded channel per namespace, every node on it), for two layouts of the rooms:
#   local   rooms spread over the nodes, each room's members all on one node (4 nodes ×
#           50 rooms × 10 members: 2,000 clients), as a balancer sticky by room, or the
#           users of one region on their region's node, give;
#   spread  every room with members on every node (200 rooms × 10 members, member j of
#           room r on node (r + j) mod 4), where sharding cannot save anything.
# Each case on 4 Parley nodes (build/sio_test_server --redis-mode MODE: events join and
# broadcast, GET /stats) and on 4 Node.js socket.io nodes (bench/node/server-redis.mjs
# --redis-mode MODE --test-events: the same events and /stats), one Redis.
#
# Per run, on fresh node processes and a fresh Redis state (FLUSHALL, CONFIG RESETSTAT;
# Redis itself stays up), bench/node/redis-modes.mjs connects the clients, joins them,
# waits for the nodes' subscriptions, then samples Redis (INFO stats commandstats:
# total_net_input_bytes, total_net_output_bytes, calls per command) and every node's
# GET /stats (.redis: published, publishedBytes, received, receivedBytes, unused — the
# messages a node got from Redis and had no use for: its own, or a room without members
# there) around the sending phase: member 0 of every room sends BROADCASTS broadcasts of
# a 100-byte text to its room (every member, sender included, gets it), until every
# delivery arrived (bounded: losses are reported, never waited for). These are counts,
# not timings: one repetition of each case. About 1.5 minutes (QUICK=1: about 25 s,
# 10 rooms per node and 40 spread rooms, 5 broadcasts each).
#
# Writes build/bench/redis-modes.jsonl (one record per run: the driver's JSON line in
# "result"), build/bench/redis-modes-meta.json, and the section between the redis-modes
# markers of docs/BENCHMARKS.md (a QUICK run writes build/bench/doc/redis-modes.md
# instead; BENCH_DOC overrides either), keeping the hand-written reading inside it
# (scripts/bench-redis-modes-report.mjs).
# Environment: BUILD (build), SERVERS ("parley node": a subset for a partial run), MODES
# ("classic sharded sharded-static"), LAYOUTS ("local spread"), BROADCASTS (per room),
# TEST_SERVER ($BUILD/sio_test_server), NODE_REDIS_SERVER (bench/node/server-redis.mjs),
# REDIS_SERVER (redis-server), PARLEY_VERSION (git describe).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
QUICK=${QUICK:-0}
[[ $QUICK == 0 || -z $QUICK ]] && QUICK=0 || QUICK=1
OUT=$BUILD/bench
RESULTS=$OUT/redis-modes.jsonl
SECRET=parley-bench-secret-0123456789abcdef
T0=$(date +%s)
SERVERS=${SERVERS:-parley node}
MODES=${MODES:-classic sharded sharded-static}
LAYOUTS=${LAYOUTS:-local spread}
NODES=4 ROOM=10 PAYLOAD=100
if ((QUICK)); then
  ROOMS_PER_NODE=10 SPREAD_ROOMS=40 BROADCASTS=${BROADCASTS:-5}
  DOC=${BENCH_DOC:-$OUT/doc/redis-modes.md}
else
  ROOMS_PER_NODE=50 SPREAD_ROOMS=200 BROADCASTS=${BROADCASTS:-20}
  DOC=${BENCH_DOC:-docs/BENCHMARKS.md}
fi
RUN_TIMEOUT=120     # s: the bound of one driver run
DELIVERY_TIMEOUT=30 # s: the driver's bound on the sending phase
LOG_PREFIX=redis-modes- STOP_POLLS=100
# elapsed, stop_server, server_tree; the traps
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
TEST_SERVER=${TEST_SERVER:-$BUILD/sio_test_server}
NODE_REDIS_SERVER=${NODE_REDIS_SERVER:-bench/node/server-redis.mjs}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
DRIVER=bench/node/redis-modes.mjs
PARLEY_VERSION=${PARLEY_VERSION:-$(git describe --always --dirty --tags 2>/dev/null || echo unknown)}
REDIS_PID="" RPORT="" NODE_PIDS=() NODE_PORTS=()

if [[ $SERVERS == *parley* && ! -x $TEST_SERVER ]]; then
  echo "bench-redis-modes: $TEST_SERVER missing (make build)" >&2
  exit 1
fi
for c in "$REDIS_SERVER" redis-cli node; do
  command -v "$c" >/dev/null || { echo "bench-redis-modes: $c missing (scripts/deps.sh bench)" >&2; exit 1; }
done
# the driver's WebSocket client (ws) and the Node nodes' packages
if [[ ! -d bench/node/node_modules/ws || ! -d bench/node/node_modules/@socket.io/redis-adapter ]]; then
  echo "bench-redis-modes: bench/node/node_modules missing (scripts/deps.sh bench)" >&2
  exit 1
fi

# A node's command line (RPORT as a word, as the report prints it).
node_cmd() { # server mode
  case $1 in
    parley) echo "$TEST_SERVER --port 0 --redis-url redis://127.0.0.1:RPORT --redis-mode $2 --log-level warn" ;;
    node) echo "env PARLEY_JWT_SECRET=$SECRET node $NODE_REDIS_SERVER --redis-url redis://127.0.0.1:RPORT --redis-mode $2 --test-events --port 0" ;;
  esac
}

# NODES nodes started together, their ports read back from their "listening HOST:PORT"
# lines; then until Redis has both connections of each (publishing and subscribed).
nodes_start() { # server mode run-name
  local cmd i p port log
  NODE_PIDS=() NODE_PORTS=()
  read -ra cmd <<<"$(node_cmd "$1" "$2")"
  cmd=("${cmd[@]/RPORT/$RPORT}")
  for ((i = 1; i <= NODES; i++)); do
    "${cmd[@]}" >"$OUT/logs/$LOG_PREFIX$3-node$i.log" 2>&1 &
    NODE_PIDS+=("$!")
  done
  for ((i = 1; i <= NODES; i++)); do
    log=$OUT/logs/$LOG_PREFIX$3-node$i.log port=""
    for _ in $(seq 200); do
      port=$(sed -n 's/^listening [0-9.]*:\([0-9]*\)$/\1/p' "$log")
      [[ -n $port ]] && break
      kill -0 "${NODE_PIDS[i - 1]}" 2>/dev/null || break
      sleep 0.05
    done
    [[ -n $port ]] || { echo "bench-redis-modes: node $i did not start: $(head -c 500 "$log")" >&2; return 1; }
    NODE_PORTS+=("$port")
  done
  for _ in $(seq 100); do # redis-cli's own connection is in the list too
    (($(rcli client list | wc -l) > 2 * NODES)) && return 0
    sleep 0.05
  done
  echo "bench-redis-modes: the nodes did not all connect to Redis" >&2
  return 1
}

# SIGTERM to all, then scripts/bench-common.sh's stop_server on each (waits, SIGKILL
# past STOP_POLLS).
nodes_stop() {
  local p
  for p in "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${NODE_PIDS[@]}"; do
    SERVER_PID=$p
    stop_server
  done
  NODE_PIDS=()
}

trap 'cleanup; nodes_stop; redis_stop' EXIT

# run_case SERVER MODE LAYOUT: one run on fresh nodes; its record appended to RESULTS.
run_case() {
  local server=$1 mode=$2 layout=$3 name rooms urls="" p json="" rc=0 la t_run
  RUN_NO=$((RUN_NO + 1))
  name=$(printf %03d "$RUN_NO")-$server-$mode-$layout
  rooms=$([[ $layout == local ]] && echo $((NODES * ROOMS_PER_NODE)) || echo "$SPREAD_ROOMS")
  local args=(--mode "$mode" --layout "$layout" --rooms "$rooms" --room-size "$ROOM"
    --broadcasts "$BROADCASTS" --payload "$PAYLOAD" --timeout "$DELIVERY_TIMEOUT" --jwt-secret "$SECRET")
  la=$(cut -d' ' -f1 /proc/loadavg)
  t_run=$(elapsed)
  rcli flushall >/dev/null && rcli config resetstat >/dev/null
  if nodes_start "$server" "$mode" "$name"; then
    for p in "${NODE_PORTS[@]}"; do urls+="${urls:+,}http://127.0.0.1:$p"; done
    timeout "$RUN_TIMEOUT" node "$DRIVER" --urls "$urls" --redis "redis://127.0.0.1:$RPORT" "${args[@]}" \
      >"$OUT/run.out" 2>"$OUT/logs/$LOG_PREFIX$name-driver.log" || rc=$?
    json=$(grep '^{' "$OUT/run.out" | tail -n 1 || true)
  else
    rc=1
  fi
  nodes_stop
  printf '{"server":"%s","mode":"%s","layout":"%s","t":%s,"loadavg":%s,"cmd":"%s","server_cmd":"%s","nodes":%s,"result":%s}\n' \
    "$server" "$mode" "$layout" "$t_run" "$la" "node $DRIVER --urls URLS --redis redis://127.0.0.1:RPORT ${args[*]}" \
    "$(node_cmd "$server" "$mode")" "$NODES" "${json:-null}" >>"$RESULTS"
  # shellcheck disable=SC2016 # JavaScript's ${}, not the shell's
  node -e '
    const r = JSON.parse(process.argv[1]).result;
    const a = process.argv.slice(2).join(" ");
    if (!r) { console.log(`${a}: no result`); process.exit(0); }
    const t = r.node_total ?? {}, d = r.delivered || NaN;
    console.log(`${a}: ${r.delivered}/${r.expected} delivered${r.lost ? ` (${r.lost} LOST)` : ""}, ` +
      `Redis out ${(r.redis?.net_out / d).toFixed(1)} B/delivery, in ${(r.redis?.net_in / d).toFixed(1)}, ` +
      `to nodes ${(t.received / r.broadcasts).toFixed(2)}/broadcast, unused ${(t.unused / r.broadcasts).toFixed(2)}`);
  ' "$(tail -n 1 "$RESULTS")" "$server" "$mode" "$layout"
  ((rc == 0)) || echo "bench-redis-modes: $name: driver exit $rc (see $OUT/logs/$LOG_PREFIX$name-driver.log)" >&2
  return 0
}

mkdir -p "$OUT/logs" "$(dirname "$DOC")"
rm -f "$OUT"/logs/"$LOG_PREFIX"*.log
: >"$RESULTS"
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
redis_start || { echo "bench-redis-modes: redis-server did not start" >&2; exit 1; }
echo "== redis-modes: $NODES nodes; $SERVERS; modes $MODES; layouts $LAYOUTS; rooms of $ROOM, $BROADCASTS broadcasts per room; Redis on port $RPORT"
for layout in $LAYOUTS; do
  for server in $SERVERS; do
    for mode in $MODES; do
      run_case "$server" "$mode" "$layout"
    done
  done
done
REDIS_VERSION=$(rcli info server | tr -d '\r' | sed -n 's/^redis_version://p')
redis_stop

printf '{"t0":%s,"quick":%s,"nodes":%s,"room_size":%s,"rooms_per_node":%s,"spread_rooms":%s,"broadcasts":%s,"payload":%s,"servers":"%s","modes":"%s","layouts":"%s","loadavg_start":"%s","loadavg_end":"%s","elapsed_s":%s,"parley":"%s","node_server":"%s","redis":"%s"}\n' \
  "$T0" "$QUICK" "$NODES" "$ROOM" "$ROOMS_PER_NODE" "$SPREAD_ROOMS" "$BROADCASTS" "$PAYLOAD" "$SERVERS" "$MODES" \
  "$LAYOUTS" "$LOADAVG_START" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(elapsed)" "$PARLEY_VERSION" \
  "$NODE_REDIS_SERVER" "$REDIS_VERSION" >"$OUT/redis-modes-meta.json"
node scripts/bench-redis-modes-report.mjs "$RESULTS" "$DOC" "$OUT/redis-modes-meta.json"
echo "== bench-redis-modes done in $(elapsed) s; $DOC"
