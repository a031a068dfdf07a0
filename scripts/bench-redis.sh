#!/usr/bin/env bash
# make bench, nodes over Redis (issue 13), after scripts/bench-workers.sh: the broadcast
# ladder of scripts/bench.sh (10,000 clients in 1,000 rooms of 10, one sender per room,
# 100-byte chat messages: sendMessage, then newMessage to every member, sender included;
# offered deliveries/s stepping up, each server until p99 > 100 ms, losses or the bench
# saturated) for, alternating within each repetition:
#   parley         one Parley node, --store memory, clients straight to it (the main
#                  section's single process)
#   parley-redis1  one Parley node, --redis-url and --store redis, behind nginx
#   parley-redis2  two Parley nodes, --redis-url and --store redis, behind nginx
#   node-redis2    two Node.js socket.io nodes with @socket.io/redis-adapter 8
#                  (bench/node/server-redis.mjs), behind nginx
# Classic mode (PUBLISH / PSUBSCRIBE); sharded mode's Redis traffic: bench-redis-modes.sh.
#
# Why --store redis: parley-bench's clients send chat messages; with --store memory a
# node announces a message only to its own clients (docs/CLUSTER.md), so members on the
# other node would never get it. With --store redis each message is one Lua script in
# Redis (INCR, ZADD, HSET, trim, PUBLISH chat:messages) and every node announces it to
# its own members. Node's server broadcasts newMessage through the adapter (one PUBLISH
# on socket.io#/#<room>#, PSUBSCRIBEd by every node).
# Why nginx: parley-bench connects to one port, and names its rooms per process (a random
# run id), so two parley-bench processes, one per node, cannot share rooms; Parley sets
# SO_REUSEPORT only among its own workers. nginx (random balancing, upgraded WebSockets)
# puts each connection on either node: a room of 10 has members on both nodes but for
# 2 in 1,024. nginx's CPU is measured apart from the nodes'.
#
# Per run, on a fresh set of processes (Redis stays up, emptied: FLUSHALL, CONFIG
# RESETSTAT): parley-bench samples the nodes' CPU (--server-pid); this script notices
# parley-bench's "ready" line (GO follows 100 ms later) and samples Redis (INFO: bytes in
# and out, commands, calls per command, CPU) and nginx's CPU (/proc) at both ends of a
# window SIDE_MARGIN inside parley-bench's measured one, so that Redis's traffic and CPU
# and nginx's CPU are divided by the deliveries of that window (at the rate parley-bench
# measured). About 8 minutes (QUICK=1: about 1.5). Writes build/bench/redis.jsonl (one
# record per run: scripts/bench-common.sh's fields, plus "nodes", "within" and "side", the
# script's own samples), build/bench/redis-meta.json and the section between the redis
# markers of docs/BENCHMARKS.md (a QUICK run writes build/bench/doc/redis.md instead;
# BENCH_DOC overrides either), keeping the hand-written reading inside it.
# Environment: BUILD (build), SERVERS (the four above: a subset for a partial run),
# LOADS (offered deliveries/s, space-separated), REPS, PARLEY_BIN, BENCH_BIN (see
# scripts/bench-common.sh), NODE_REDIS_SERVER (bench/node/server-redis.mjs),
# REDIS_SERVER (redis-server), NGINX (nginx), PARLEY_VERSION (git describe).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
QUICK=${QUICK:-0}
[[ $QUICK == 0 || -z $QUICK ]] && QUICK=0 || QUICK=1
OUT=$BUILD/bench
RESULTS=$OUT/redis.jsonl
SECRET=parley-bench-secret-0123456789abcdef
T0=$(date +%s)
SERVERS=${SERVERS:-parley parley-redis1 parley-redis2 node-redis2}
if ((QUICK)); then
  REPS=${REPS:-1} DUR=2
  read -ra LOADS <<<"${LOADS:-10000 30000}"
  DOC=${BENCH_DOC:-$OUT/doc/redis.md}
else
  REPS=${REPS:-3} DUR=3
  read -ra LOADS <<<"${LOADS:-10000 20000 30000 50000 75000}"
  DOC=${BENCH_DOC:-docs/BENCHMARKS.md}
fi
WARM=1 DRAIN=1
CLIENTS=10000 ROOM=10                # as scripts/bench.sh: 1,000 rooms, one sender each
FAST_CONNECT=20000 NODE_CONNECT=2000 # setup pace only (not measured)
RUN_TIMEOUT=120
HANDSHAKE_TIMEOUT=30 # s after the last connect is due: Node's nodes fall behind at 2,000/s
SIDE_MARGIN=0.15 # s: the script's window of Redis and nginx samples, inside parley-bench's
LOG_PREFIX=redis- STOP_POLLS=100
# server_cmd, start_server, stop_server, server_tree, tree_cpu_ticks; the traps
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
NODE_REDIS_SERVER=${NODE_REDIS_SERVER:-bench/node/server-redis.mjs}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
NGINX=${NGINX:-nginx}
PARLEY_VERSION=${PARLEY_VERSION:-$(git describe --always --dirty --tags 2>/dev/null || echo unknown)}
REDIS_PID="" RPORT="" NGINX_PID="" NODE_PIDS=() NODE_PORTS=() TARGET_PORT=""

for f in "$PARLEY_BIN" "$BENCH_BIN"; do
  [[ -x $f ]] || { echo "bench-redis: $f missing (make build)" >&2; exit 1; }
done
for c in "$REDIS_SERVER" redis-cli "$NGINX" curl; do
  command -v "$c" >/dev/null || {
    echo "bench-redis: $c missing (apt-get install redis-server nginx-light curl)" >&2
    exit 1
  }
done
if [[ $SERVERS == *node-redis* && ! -d $(dirname "$NODE_REDIS_SERVER")/node_modules/@socket.io/redis-adapter ]]; then
  echo "bench-redis: $(dirname "$NODE_REDIS_SERVER")/node_modules missing (scripts/deps.sh bench)" >&2
  exit 1
fi

# One node of a cluster: started with its log, its port read back from its
# "listening HOST:PORT" line; appends to NODE_PIDS and NODE_PORTS.
start_node() { # log command...
  local log=$1 pid port=""
  shift
  "$@" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    port=$(sed -n 's/^listening [0-9.]*:\([0-9]*\)$/\1/p' "$log")
    [[ -n $port ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  NODE_PIDS+=("$pid")
  [[ -n $port ]] || { echo "bench-redis: node did not start: $(head -c 500 "$log")" >&2; return 1; }
  NODE_PORTS+=("$port")
}

# nginx in front of NODE_PORTS on a free port (TARGET_PORT): random balancing, WebSocket
# upgrades passed through (docs/deploy/nginx.conf's proxy settings), 2 workers with
# reuseport, enough descriptors for 10,000 clients and as many upstream connections.
nginx_start() { # run-name
  local dir=$OUT/nginx servers="" p try
  mkdir -p "$dir"
  for p in "${NODE_PORTS[@]}"; do servers+="    server 127.0.0.1:$p;"$'\n'; done
  for try in 1 2 3; do
    TARGET_PORT=$(free_port)
    cat >"$dir/nginx.conf" <<EOF
worker_processes 2;
worker_rlimit_nofile 20000;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 16000; }
http {
  access_log off;
  client_body_temp_path $dir/client_body; proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
  upstream nodes {
    random;
$servers  }
  map \$http_upgrade \$connection_upgrade {
    default upgrade;
    ''      close;
  }
  server {
    listen 127.0.0.1:$TARGET_PORT reuseport backlog=4096;
    location = /nginx-ready { return 204; }
    location / {
      proxy_pass http://nodes;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Host \$host;
      proxy_read_timeout 120s;
      proxy_send_timeout 120s;
      proxy_buffering off;
    }
  }
}
EOF
    : >"$dir/error.log"
    "$NGINX" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' \
      >"$OUT/logs/$LOG_PREFIX$1-nginx.log" 2>&1 &
    NGINX_PID=$!
    for _ in $(seq 100); do
      if curl -s -o /dev/null -m 1 "http://127.0.0.1:$TARGET_PORT/nginx-ready" 2>/dev/null; then
        return 0
      fi
      kill -0 "$NGINX_PID" 2>/dev/null || break
      sleep 0.05
    done
    kill "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    echo "bench-redis: nginx on port $TARGET_PORT, try $try: $(tail -n 3 "$dir/error.log")" >&2
  done
  NGINX_PID=""
  return 1
}

# The server's command lines, as the report prints them (RPORT and ports as words).
kind_cmd() { # kind
  case $1 in
    parley) server_cmd parley ;;
    parley-redis*) server_cmd parley | sed 's|--store memory|--store redis --redis-url redis://127.0.0.1:RPORT|' ;;
    node-redis*) echo "env PARLEY_JWT_SECRET=$SECRET node $NODE_REDIS_SERVER --redis-url redis://127.0.0.1:RPORT --port 0" ;;
  esac
}

# Starts a kind: its node(s), and nginx unless it is the direct single node. Sets
# NODE_PIDS, TARGET_PORT (where parley-bench connects).
cluster_start() { # kind run-name
  local kind=$1 n i p cmd
  NODE_PIDS=() NODE_PORTS=() TARGET_PORT=""
  if [[ $kind == parley ]]; then
    start_server parley || return 1
    NODE_PIDS=("$SERVER_PID") TARGET_PORT=$PORT SERVER_PID=""
    return 0
  fi
  n=${kind##*redis}
  read -ra cmd <<<"$(kind_cmd "$kind")"
  cmd=("${cmd[@]/RPORT/$RPORT}")
  for ((i = 1; i <= n; i++)); do
    start_node "$OUT/logs/$LOG_PREFIX$2-node$i.log" "${cmd[@]}" || return 1
  done
  if [[ $kind == parley-redis* ]]; then # ready: connected to Redis (/readyz 200)
    for p in "${NODE_PORTS[@]}"; do
      for _ in $(seq 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' -m 1 "http://127.0.0.1:$p/readyz") == 200 ]] && break
        sleep 0.05
      done
    done
  fi
  nginx_start "$2"
}

# nginx first (its connections to the nodes close), then every node: SIGTERM to all,
# then scripts/bench-common.sh's stop_server on each (waits, SIGKILL past STOP_POLLS).
cluster_stop() {
  local p
  if [[ -n $NGINX_PID ]]; then
    kill -TERM "$NGINX_PID" 2>/dev/null || true
    SERVER_PID=$NGINX_PID
    stop_server
    NGINX_PID=""
  fi
  for p in "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${NODE_PIDS[@]}"; do
    SERVER_PID=$p
    stop_server
  done
  NODE_PIDS=()
}

trap 'cleanup; cluster_stop; redis_stop' EXIT

# What the script samples at each end of the window: the time, Redis's counters (INFO:
# bytes, commands, calls per command, CPU seconds; info_bytes: the size of this INFO
# reply, which the next sample counts in net_out) and nginx's CPU ticks.
side_sample() {
  local t info redis ng=0
  t=$(date +%s.%N)
  info=$(rcli info all 2>/dev/null | tr -d '\r')
  redis=$(awk -F: -v len="${#info}" '
    /^total_net_input_bytes:/ { ni = $2 } /^total_net_output_bytes:/ { no = $2 }
    /^total_commands_processed:/ { tc = $2 } /^used_cpu_sys:/ { cs = $2 } /^used_cpu_user:/ { cu = $2 }
    /^cmdstat_/ { split($2, a, ","); sub("calls=", "", a[1]); calls = calls sep "\"" substr($1, 9) "\":" a[1]; sep = "," }
    END { if (ni == "") print "null"; else printf "{\"net_in\":%s,\"net_out\":%s,\"commands\":%s,\"cpu_s\":%.6f,\"info_bytes\":%d,\"calls\":{%s}}\n", ni, no, tc, cs + cu, len + NR + 10, calls }' <<<"$info")
  [[ -n $NGINX_PID ]] && ng=$(tree_cpu_ticks "$NGINX_PID")
  printf '{"t":%s,"redis":%s,"nginx_ticks":%s}' "$t" "${redis:-null}" "$ng"
}

# Sleeps until T + the expression OFFSET (seconds, awk arithmetic), if that is ahead.
sleep_until() { # T OFFSET
  local d
  d=$(awk -v t="$1" -v now="$(date +%s.%N)" "BEGIN { d = t + $2 - now; printf \"%.3f\", (d > 0 ? d : 0) }")
  sleep "$d"
}

# run_kind KIND REP LOAD: one broadcast run of the ladder on a fresh set of processes;
# its record appended to RESULTS. Returns 3 past the limit (scripts/bench-report.mjs
# line decides, as for the other ladders).
run_kind() {
  local kind=$1 rep=$2 load=$3 rate name blog la t_run json="" a="null" b="null" chat_subs=0 psubs=0
  RUN_NO=$((RUN_NO + 1))
  name=$(printf %03d "$RUN_NO")-$kind
  blog=$OUT/logs/$LOG_PREFIX$name-bench.log
  rate=$(awk -v l="$load" -v n="$CLIENTS" 'BEGIN { printf "%g", l / n }')
  local args=(broadcast --clients "$CLIENTS" --room-size "$ROOM" --rate "$rate" --procs 2
    --connect-rate "$([[ $kind == node* ]] && echo "$NODE_CONNECT" || echo "$FAST_CONNECT")"
    --warmup "$WARM" --duration "$DUR" --drain "$DRAIN" --timeout "$HANDSHAKE_TIMEOUT")
  la=$(cut -d' ' -f1 /proc/loadavg)
  t_run=$(elapsed)
  rcli flushall >/dev/null && rcli config resetstat >/dev/null
  : >"$blog"
  if cluster_start "$kind" "$name"; then
    local pids
    pids=$(IFS=,; echo "${NODE_PIDS[*]}")
    timeout "$RUN_TIMEOUT" "$BENCH_BIN" "${args[@]}" --port "$TARGET_PORT" --jwt-secret "$SECRET" \
      --server-pid "$pids" >"$OUT/run.out" 2>>"$blog" &
    BENCH_PID=$!
    while kill -0 "$BENCH_PID" 2>/dev/null && ! grep -q ' ready, ' "$blog"; do sleep 0.02; done
    if grep -q ' ready, ' "$blog"; then
      # GO is 100 ms after the line, parley-bench's window WARM s later, and its senders
      # stop at the window's end: this window is that one less SIDE_MARGIN at both ends
      # (the line is noticed up to 20 ms late; a sample takes some ms).
      local go
      go=$(awk -v t="$(date +%s.%N)" 'BEGIN { printf "%.3f", t + 0.1 }')
      # who hears a publication: the chat's channel (Parley), the adapter's pattern (both)
      chat_subs=$(rcli pubsub numsub chat:messages | tail -n 1)
      psubs=$(rcli client list | grep -c ' psub=[1-9]' || true)
      sleep_until "$go" "$WARM + $SIDE_MARGIN"
      a=$(side_sample)
      sleep_until "$go" "$WARM + $DUR - $SIDE_MARGIN"
      b=$(side_sample)
    fi
    wait "$BENCH_PID" || true
    BENCH_PID=""
    json=$(grep '^{' "$OUT/run.out" | tail -n 1 || true)
  fi
  cluster_stop
  local line rc=0 nodes=${kind##*redis}
  [[ $kind == parley ]] && nodes=1
  line=$(printf '{"case":"broadcast","server":"%s","rep":%s,"load":%s,"t":%s,"loadavg":%s,"cmd":"%s","server_cmd":"%s","nodes":%s,"result":%s}' \
    "$kind" "$rep" "$load" "$t_run" "$la" "parley-bench ${args[*]} --port PORT --jwt-secret $SECRET --server-pid PIDS" \
    "$(kind_cmd "$kind")" "$nodes" "${json:-null}")
  node scripts/bench-report.mjs line <<<"$line" || rc=$?
  line="${line%\}},\"within\":$( ((rc == 0)) && echo true || echo false),\"side\":{\"start\":$a,\"end\":$b,\"chat_subscribers\":$chat_subs,\"pattern_subscribers\":$psubs,\"clk_tck\":$(getconf CLK_TCK)}}"
  echo "$line" >>"$RESULTS"
  return "$rc"
}

mkdir -p "$OUT/logs" "$(dirname "$DOC")"
rm -f "$OUT"/logs/redis-*.log
: >"$RESULTS"
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
redis_start || { echo "bench-redis: redis-server did not start" >&2; exit 1; }
echo "== redis: broadcast ladder, $CLIENTS clients in rooms of $ROOM; $SERVERS; offered deliveries/s ${LOADS[*]}; Redis on port $RPORT"
for rep in $(seq "$REPS"); do
  declare -A over=()
  for load in "${LOADS[@]}"; do
    for s in $SERVERS; do
      [[ -n ${over[$s]:-} ]] && continue
      rc=0
      run_kind "$s" "$rep" "$load" || rc=$?
      ((rc == 0)) || over[$s]=1
    done
  done
  unset over
done
REDIS_VERSION=$(rcli info server | tr -d '\r' | sed -n 's/^redis_version://p')
redis_stop

printf '{"t0":%s,"quick":%s,"reps":%s,"room_size":%s,"clients":%s,"loads":[%s],"servers":"%s","loadavg_start":"%s","loadavg_end":"%s","elapsed_s":%s,"parley":"%s","node_server":"%s","redis":"%s","nginx":"%s","dur":%s}\n' \
  "$T0" "$QUICK" "$REPS" "$ROOM" "$CLIENTS" "$(IFS=,; echo "${LOADS[*]}")" "$SERVERS" "$LOADAVG_START" \
  "$(cut -d' ' -f1-3 /proc/loadavg)" "$(elapsed)" "$PARLEY_VERSION" "$NODE_REDIS_SERVER" "$REDIS_VERSION" \
  "$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')" "$DUR" >"$OUT/redis-meta.json"
node scripts/bench-redis-report.mjs "$RESULTS" "$DOC" "$OUT/redis-meta.json"
echo "== bench-redis done in $(elapsed) s; $DOC"
