# scripts/bench-common.sh — what scripts/bench.sh, scripts/bench-workers.sh and
# scripts/bench-redis.sh share:
# the servers' command lines, starting and stopping a server (and every process it
# started: the workers of parley --workers N), one parley-bench run recorded as a JSON
# line, and the broadcast load ladder. Sourced, never run; sourcing sets the EXIT, INT
# and TERM traps that stop a server left running.
#
# The sourcing script sets, before calling anything here:
#   BUILD OUT RESULTS SECRET API_KEY T0   build dir, output dir, results file (JSON lines),
#                                         JWT secret, the sse/longpoll API key, start time
#   REPS WARM DUR DRAIN IDLE_HOLD         repetitions; parley-bench window defaults (s)
#   FAST_CONNECT NODE_CONNECT RUN_TIMEOUT setup connect rates (Node: its own), the bound
#                                         of one parley-bench run (s)
# and may set LOG_PREFIX (names of the logs in $OUT/logs/) and STOP_POLLS (how many
# 50 ms waits a server gets to exit after SIGTERM before SIGKILL; 10).
# Overrides from the environment: PARLEY_BIN ($BUILD/parley), BENCH_BIN
# ($BUILD/parley-bench), NODE_SERVER (bench/node/server.mjs; its node_modules next to it).
# shellcheck shell=bash

PARLEY_BIN=${PARLEY_BIN:-$BUILD/parley}
BENCH_BIN=${BENCH_BIN:-$BUILD/parley-bench}
NODE_SERVER=${NODE_SERVER:-bench/node/server.mjs}
LOG_PREFIX=${LOG_PREFIX:-}
STOP_POLLS=${STOP_POLLS:-10}
SERVER_PID="" BENCH_PID="" PORT="" RUN_NO=0

cleanup() {
  [[ -n $BENCH_PID ]] && kill -TERM "$BENCH_PID" 2>/dev/null
  stop_server
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

elapsed() { echo $(($(date +%s) - T0)); }

# The command line of each server; --port 0: the kernel picks a free port, read back
# from the "listening HOST:PORT" line every one of them prints once ready. Kinds:
# parley (one process, the default), parley-wN (parley --workers N), node, echo, and
# parley-deflate / node-deflate (permessage-deflate on: --ws-deflate / perMessageDeflate).
server_cmd() { # kind [extra parley flags]
  case $1 in
    parley | parley-w*)
      local workers=""
      [[ $1 == parley-w* ]] && workers=" --workers ${1#parley-w}"
      echo "$PARLEY_BIN --port 0 --store memory --jwt-secret $SECRET --rate-burst 1000000" \
        "--rate-per-sec 1000000 --log-level warn --no-recovery$workers${2:+ $2}" ;;
    parley-deflate)
      echo "$PARLEY_BIN --port 0 --store memory --jwt-secret $SECRET --rate-burst 1000000" \
        "--rate-per-sec 1000000 --log-level warn --no-recovery --ws-deflate${2:+ $2}" ;;
    node) echo "env PARLEY_JWT_SECRET=$SECRET node $NODE_SERVER --port 0" ;;
    node-deflate) echo "env PARLEY_JWT_SECRET=$SECRET node $NODE_SERVER --port 0 --deflate" ;;
    echo) echo "$BUILD/echo_server --port 0" ;;
  esac
}

start_server() { # kind [extra parley flags]
  local log cmd
  log=$OUT/logs/$LOG_PREFIX$(printf %03d "$RUN_NO")-$1.log
  read -ra cmd <<<"$(server_cmd "$1" "${2:-}")"
  "${cmd[@]}" >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 200); do
    PORT=$(sed -n 's/^listening [0-9.]*:\([0-9]*\)$/\1/p' "$log")
    [[ -n $PORT ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "bench: $1 did not start: $(head -c 500 "$log")" >&2
  stop_server
  return 1
}

# The process and its descendants, by parent links (the supervisor and its workers).
server_tree() { # pid
  local c
  echo "$1"
  for c in $(pgrep -P "$1" 2>/dev/null); do server_tree "$c"; done
}

# CPU (utime + stime, in clock ticks: getconf CLK_TCK) of a process and its descendants,
# from /proc; 0 when none is alive. For processes parley-bench does not sample itself
# (scripts/bench-redis.sh: Redis, nginx).
tree_cpu_ticks() { # pid
  local p sum=0 stat
  for p in $(server_tree "$1"); do
    stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    stat=${stat##*) } # after the command name, which may hold spaces
    read -ra stat <<<"$stat"
    sum=$((sum + stat[11] + stat[12])) # fields 14 and 15 of the whole line
  done
  echo "$sum"
}

# SIGTERM, STOP_POLLS × 50 ms to exit (its shutdown is not measured), then SIGKILL to
# what is still its tree; returns once every process of the tree is gone, so that the
# next run has the cores to itself.
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  local tree alive p
  tree=$(server_tree "$SERVER_PID")
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq "$STOP_POLLS"); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    # shellcheck disable=SC2046 # one PID per word
    kill -KILL $(server_tree "$SERVER_PID") 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 40); do # workers notice a lost supervisor and stop by themselves
    alive=""
    for p in $tree; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ -n $alive ]] || break
    sleep 0.05
  done
  SERVER_PID=""
}

# run CASE SERVER REP LOAD SCENARIO [parley-bench options...]: one run on a fresh server,
# its JSON line appended to the results with the run's labels. Prints a progress line;
# returns 3 when the run was over the limit (p99 > 100 ms, bench saturated, or lost;
# scripts/bench-report.mjs line decides). A broadcast record also says "within": whether
# the run stayed within that limit.
run() {
  local case=$1 server=$2 rep=$3 load=$4 scenario=$5 extra=""
  shift 5
  RUN_NO=$((RUN_NO + 1))
  [[ $case == sse || $case == longpoll ]] && extra="--api-key $API_KEY"
  local la json rate=$FAST_CONNECT
  [[ $server == node* ]] && rate=$NODE_CONNECT
  la=$(cut -d' ' -f1 /proc/loadavg)
  local t_run=$(($(date +%s) - T0))
  # the run's own options, then the defaults it does not set
  local i args=("$scenario" "$@") defaults=(--procs 2 --connect-rate "$rate")
  case $scenario in
    ramp) ;;
    idle) defaults+=(--duration "$IDLE_HOLD") ;;
    *) defaults+=(--warmup "$WARM" --duration "$DUR" --drain "$DRAIN") ;;
  esac
  for ((i = 0; i < ${#defaults[@]}; i += 2)); do
    [[ " $* " == *" ${defaults[i]} "* ]] || args+=("${defaults[i]}" "${defaults[i + 1]}")
  done
  if start_server "$server" "$extra"; then
    timeout "$RUN_TIMEOUT" "$BENCH_BIN" "${args[@]}" --port "$PORT" --jwt-secret "$SECRET" \
      --server-pid "$SERVER_PID" >"$OUT/run.out" 2>>"$OUT/logs/$LOG_PREFIX$(printf %03d "$RUN_NO")-bench.log" &
    BENCH_PID=$!
    wait "$BENCH_PID" || true
    BENCH_PID=""
    stop_server
    json=$(grep '^{' "$OUT/run.out" | tail -n 1 || true)
  fi
  local line rc=0
  line=$(printf '{"case":"%s","server":"%s","rep":%s,"load":%s,"t":%s,"loadavg":%s,"cmd":"%s","server_cmd":"%s","result":%s}' \
    "$case" "$server" "$rep" "$load" "$t_run" "$la" "parley-bench ${args[*]} --port PORT --jwt-secret $SECRET --server-pid PID" \
    "$(server_cmd "$server" "$extra")" "${json:-null}")
  node scripts/bench-report.mjs line <<<"$line" || rc=$?
  [[ $case == broadcast ]] && line="${line%\}},\"within\":$( ((rc == 0)) && echo true || echo false)}"
  echo "$line" >>"$RESULTS"
  return "$rc"
}

# ladder CLIENTS ROOM "SERVER..." LOAD...: the broadcast ladder. CLIENTS clients in rooms
# of ROOM, one sender per room; in each of REPS repetitions every offered load
# (deliveries/s) in turn, the servers alternating within it, a server leaving the
# repetition's ladder at its first run past the limit.
ladder() {
  local clients=$1 room=$2 servers=$3 rep load rate s rc
  shift 3
  local -A over=()
  for rep in $(seq "$REPS"); do
    over=()
    for load in "$@"; do
      rate=$(awk -v l="$load" -v n="$clients" 'BEGIN { printf "%g", l / n }')
      for s in $servers; do
        [[ -n ${over[$s]:-} ]] && continue
        rc=0
        run broadcast "$s" "$rep" "$load" broadcast --clients "$clients" --room-size "$room" \
          --rate "$rate" || rc=$?
        ((rc == 0)) || over[$s]=1
      done
    done
  done
}

# A free loopback TCP port (the kernel's pick, released at once: a small race, retried
# by the callers that bind it).
free_port() {
  node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}

# A redis-server of the Redis benchmarks on a free loopback port (RPORT, REDIS_PID;
# REDIS_SERVER, OUT, LOG_PREFIX from the caller), without persistence; retried on
# another port when the one drawn was taken meanwhile. redis_stop stops it.
rcli() { redis-cli -p "$RPORT" "$@"; }

redis_start() {
  local try log=$OUT/logs/${LOG_PREFIX}redis-server.log
  mkdir -p "$OUT/redis"
  for try in 1 2 3 4 5; do
    RPORT=$(free_port)
    "$REDIS_SERVER" --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$OUT/redis" >"$log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 100); do
      [[ $(rcli ping 2>/dev/null) == PONG ]] && return 0
      kill -0 "$REDIS_PID" 2>/dev/null || break
      sleep 0.05
    done
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    echo "bench: redis-server on port $RPORT, try $try: $(tail -n 2 "$log")" >&2
  done
  REDIS_PID=""
  return 1
}

redis_stop() {
  [[ -n $REDIS_PID ]] || return 0
  rcli shutdown nosave >/dev/null 2>&1 || kill "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=""
}
