#!/usr/bin/env bash
# make bench, membership and offline notifications (issue 16, docs/MEMBERSHIP.md): what
# persistent room membership costs the durable append path, with the SQLite store.
#   saturate  ROOMS rooms of MEMBERS offline members each (users who joined and left:
#             membership rows), one connected sender per room keeping WINDOW sendMessage
#             acks outstanding (parley-bench burst): durable appends/s, ack p99
#   paced     the same rooms, the senders at PACED appends/s in all (parley-bench chat):
#             ack p99 and server CPU per append at a load every variant sustains
# for three servers, alternating within each repetition (the order rotating):
#   a         the build before membership (BASE_REV, 40e8599), which keeps no members:
#             the same users join and leave, so the work outside membership is the same
#   b         this build, no --notify-url: memberships written at join, read by nothing
#             on the append path
#   c         this build with --notify-url to a local receiver answering 204
#             (bench/node/notify-sink.mjs): each stored message is owed to the room's
#             offline members (a read of the room's members, batches, signed POSTs)
# Each run: a fresh server on an empty data directory; a parley-bench run joins the
# members (ROOMS × MEMBERS connections, users u1000000…, rooms m-0…) and closes them; then
# the measured parley-bench run (senders u0…, one per room, 100-byte texts).
#   memory    this build's RSS right after it opened a database with N memberships
#             (users each in 10 rooms of 1,000, joined through the Socket.IO API by
#             parley-bench, then the server restarted: the in-memory index is loaded at
#             open) against one with none, restarts alternating; bytes per membership
# The base build: a git worktree of BASE_REV at BASE_SRC (/tmp/parley-BASE_REV; added
# when missing), built there with $BUILD's CMAKE_BUILD_TYPE into build-<type>; BASE_BIN
# overrides. QUICK=1: one repetition, shorter windows, memory with 20,000 memberships,
# and (a) only when its binary is built already (a build takes minutes). About 6
# minutes (QUICK=1: about 1), plus the base build's first time.
#
# Writes build/bench/members.jsonl (one record per run, the parley-bench JSON line in
# "result"), build/bench/members-meta.json, and the section between the members markers
# of docs/BENCHMARKS.md (a QUICK run writes build/bench/doc/members.md instead; BENCH_DOC
# overrides either), keeping the hand-written reading inside it
# (scripts/bench-members-report.mjs).
# Environment: BUILD (build), CASES ("saturate paced memory": a subset), VARIANTS
# ("a b c"), REPS, BASE_REV, BASE_SRC, BASE_BIN, PARLEY_BIN, BENCH_BIN (see
# scripts/bench-common.sh), PARLEY_VERSION (git describe).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
QUICK=${QUICK:-0}
[[ $QUICK == 0 || -z $QUICK ]] && QUICK=0 || QUICK=1
OUT=$BUILD/bench
RESULTS=$OUT/members.jsonl
SECRET=parley-bench-secret-0123456789abcdef
API_KEY=parley-bench-api-key-0123456789
NOTIFY_SECRET=parley-bench-notify-secret-0123456789
T0=$(date +%s)
CASES=" ${CASES:-saturate paced memory} "
VARIANTS=${VARIANTS:-a b c}
BASE_REV=${BASE_REV:-40e8599}
BASE_SRC=${BASE_SRC:-/tmp/parley-$BASE_REV}
ROOMS=10 MEMBERS=1000 WINDOW=32 PACED=2000 MEMBER_BASE=1000000
if ((QUICK)); then
  REPS=${REPS:-1} WARM=1 DUR=2 MEM_MEMBERSHIPS=20000 MEM_REPS=1
  DOC=${BENCH_DOC:-$OUT/doc/members.md}
else
  REPS=${REPS:-5} WARM=1 DUR=4 MEM_MEMBERSHIPS=100000 MEM_REPS=3
  DOC=${BENCH_DOC:-docs/BENCHMARKS.md}
fi
DRAIN=1
RUN_TIMEOUT=120
LOG_PREFIX=members- STOP_POLLS=100
# stop_server, server_tree, elapsed; the traps (extended below for the receiver)
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
PARLEY_VERSION=${PARLEY_VERSION:-$(git describe --always --dirty --tags 2>/dev/null || echo unknown)}
SINK_PID="" SINK_PORT="" SINK_LOG="" SINK_RESULT=null

for f in "$PARLEY_BIN" "$BENCH_BIN"; do
  [[ -x $f ]] || { echo "bench-members: $f missing (make build)" >&2; exit 1; }
done
command -v node >/dev/null || { echo "bench-members: node missing (scripts/deps.sh bench)" >&2; exit 1; }
mkdir -p "$OUT/logs" "$(dirname "$DOC")"
rm -f "$OUT"/logs/members-*.log
rm -rf "$OUT/members-data"
: >"$RESULTS"
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the base build (a) ----

# The base revision's parley, built with $BUILD's build type; prints its path, or nothing
# when it cannot be had (QUICK: when it is not built yet).
base_bin() {
  if [[ -n ${BASE_BIN:-} ]]; then
    [[ -x $BASE_BIN ]] && echo "$BASE_BIN"
    return 0
  fi
  local type dir
  type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
  type=${type:-RelWithDebInfo}
  dir=$BASE_SRC/build-${type,,}
  if [[ -x $dir/parley ]]; then # the revision is fixed: a build of it stays good
    echo "$dir/parley"
    return 0
  fi
  ((QUICK)) && return 0
  if [[ ! -e $BASE_SRC/.git ]]; then
    echo "== members: git worktree add --detach $BASE_SRC $BASE_REV" >&2
    git worktree add --detach "$BASE_SRC" "$BASE_REV" >&2 || return 0
  fi
  echo "== members: building $BASE_REV ($type) in $dir" >&2
  cmake -S "$BASE_SRC" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" -DPARLEY_TESTS=OFF >&2 &&
    cmake --build "$dir" -j "$(nproc)" --target parley >&2 || return 0
  echo "$dir/parley"
}

if [[ " $VARIANTS " == *" a "* && ($CASES == *" saturate "* || $CASES == *" paced "*) ]]; then
  BASE=$(base_bin)
  if [[ -z $BASE ]]; then
    echo "== members: no build of $BASE_REV$( ((QUICK)) && echo " (QUICK=1 does not build it)"): (a) left out" >&2
    VARIANTS=$(echo " $VARIANTS " | sed 's/ a / /' | xargs)
  fi
fi
BASE=${BASE:-}

# ---- the receiver of (c) ----

sink_start() {
  SINK_LOG=$OUT/logs/members-$(printf %03d "$RUN_NO")-sink.log
  local log=$SINK_LOG
  node bench/node/notify-sink.mjs --port 0 >"$log" 2>&1 &
  SINK_PID=$!
  for _ in $(seq 100); do
    SINK_PORT=$(sed -n 's/^listening [0-9.]*:\([0-9]*\)$/\1/p' "$log")
    [[ -n $SINK_PORT ]] && return 0
    kill -0 "$SINK_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "bench-members: the receiver did not start: $(head -c 300 "$log")" >&2
  return 1
}

# Stops the receiver; SINK_RESULT: its JSON line ({requests, bytes, messages}) or null.
sink_stop() {
  SINK_RESULT=null
  [[ -n $SINK_PID ]] || return 0
  kill -TERM "$SINK_PID" 2>/dev/null || true
  wait "$SINK_PID" 2>/dev/null || true
  SINK_PID=""
  SINK_RESULT=$(grep '^{' "$SINK_LOG" | tail -n 1 || true)
  SINK_RESULT=${SINK_RESULT:-null}
}

members_cleanup() {
  if [[ -n $SINK_PID ]]; then kill -TERM "$SINK_PID" 2>/dev/null || true; fi
  cleanup
}
trap members_cleanup EXIT

# ---- servers ----

# The command line of variant a|b|c on data directory DIR.
members_cmd() { # variant dir [log level]
  local bin=$PARLEY_BIN extra=""
  [[ $1 == a ]] && bin=$BASE
  [[ $1 == c ]] && extra=" --notify-url http://127.0.0.1:$SINK_PORT/notify --notify-secret $NOTIFY_SECRET"
  echo "$bin --port 0 --store sqlite --data-dir $2 --jwt-secret $SECRET --api-key $API_KEY" \
    "--rate-burst 1000000 --rate-per-sec 1000000 --log-level ${3:-warn} --no-recovery$extra"
}

# Starts variant on dir (SERVER_PID, PORT); OPEN_MS: from exec to "listening".
start_members_server() { # variant dir [log level]
  local log cmd t
  log=$OUT/logs/members-$(printf %03d "$RUN_NO")-$1.log
  read -ra cmd <<<"$(members_cmd "$@")"
  t=$(date +%s%N)
  "${cmd[@]}" >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1200); do
    PORT=$(sed -n 's/^listening [0-9.]*:\([0-9]*\)$/\1/p' "$log")
    if [[ -n $PORT ]]; then
      OPEN_MS=$((($(date +%s%N) - t) / 1000000))
      return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.01
  done
  echo "bench-members: server $1 did not start: $(head -c 500 "$log")" >&2
  stop_server
  return 1
}

# Joins MEMBERS users to each of ROOMS rooms PREFIX-0… (users u<MEMBER_BASE>… in room
# order, MEMBERS per room), then closes their connections: offline members. Prints
# parley-bench's JSON line.
populate() { # prefix
  timeout "$RUN_TIMEOUT" "$BENCH_BIN" broadcast --clients $((ROOMS * MEMBERS)) --room-size "$MEMBERS" \
    --senders 0 --warmup 0 --duration 0.1 --drain 0 --timeout 30 --procs 2 --connect-rate 20000 \
    --room-prefix "$1" --user-base "$MEMBER_BASE" --port "$PORT" --jwt-secret "$SECRET" \
    2>>"$OUT/logs/members-$(printf %03d "$RUN_NO")-populate.log" | grep '^{' | tail -n 1 || true
}

# The memberships of room m-0 as the HTTP API reads them (this build), or null.
memberships_of() { # room
  curl -s -m 5 -H "X-API-Key: $API_KEY" "http://127.0.0.1:$PORT/api/rooms/$1/members" |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const m=JSON.parse(s).memberships;console.log(Array.isArray(m)?m.length:"null")}catch{console.log("null")}})'
}

# The notifier's counters from /metrics (variant c), as JSON, or null.
notify_metrics() {
  curl -s -m 5 "http://127.0.0.1:$PORT/metrics" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const v = (k) => { const m = new RegExp("^" + k + " (\\S+)$", "m").exec(s); return m ? Number(m[1]) : null; };
      const sent = v("parley_notify_sent_total"), sum = v("parley_notify_latency_seconds_sum"),
        count = v("parley_notify_latency_seconds_count");
      console.log(sent == null ? "null" : JSON.stringify({ sent, dropped: v("parley_notify_dropped_total"),
        skipped: v("parley_notify_skipped_total"), queue: v("parley_notify_queue"),
        latency_mean_s: count ? sum / count : null }));
    });'
}

# ---- appends ----

# One measured run: case (saturate|paced), variant, rep. Appends a record.
members_run() {
  local case=$1 v=$2 rep=$3 dir pop=null members=null json="" notify=null sink=null la args
  RUN_NO=$((RUN_NO + 1))
  dir=$OUT/members-data/$(printf %03d "$RUN_NO")
  mkdir -p "$dir"
  la=$(cut -d' ' -f1 /proc/loadavg)
  local t_run=$(($(date +%s) - T0))
  if [[ $case == saturate ]]; then
    args=(burst --clients "$ROOMS" --room-size 1 --senders "$ROOMS" --window "$WINDOW")
  else
    args=(chat --clients "$ROOMS" --room-size 1 --rate "$(awk -v p="$PACED" -v r="$ROOMS" 'BEGIN { printf "%g", p / r }')")
  fi
  args+=(--warmup "$WARM" --duration "$DUR" --drain "$DRAIN" --procs 1 --connect-rate 1000 --room-prefix m)
  if { [[ $v != c ]] || sink_start; } && start_members_server "$v" "$dir"; then
    pop=$(populate m)
    pop=${pop:-null}
    sleep 1 # the server closes the members' connections
    [[ $v == a ]] || members=$(memberships_of m-0)
    timeout "$RUN_TIMEOUT" "$BENCH_BIN" "${args[@]}" --port "$PORT" --jwt-secret "$SECRET" \
      --server-pid "$SERVER_PID" >"$OUT/run.out" 2>>"$OUT/logs/members-$(printf %03d "$RUN_NO")-bench.log" || true
    json=$(grep '^{' "$OUT/run.out" | tail -n 1 || true)
    [[ $v == c ]] && notify=$(notify_metrics)
    stop_server
  fi
  if [[ $v == c ]]; then
    sink_stop
    sink=$SINK_RESULT
  fi
  rm -rf "$dir"
  local line
  line=$(printf '{"case":"%s","variant":"%s","rep":%s,"t":%s,"loadavg":%s,"server_cmd":"%s","cmd":"%s","memberships_m0":%s,"result":%s,"notify":%s,"sink":%s,"populate":%s}' \
    "$case" "$v" "$rep" "$t_run" "$la" "$(SINK_PORT=SINK_PORT members_cmd "$v" DIR)" \
    "parley-bench ${args[*]} --port PORT --jwt-secret $SECRET --server-pid PID" \
    "${members:-null}" "${json:-null}" "${notify:-null}" "${sink:-null}" "$pop")
  echo "$line" >>"$RESULTS"
  node scripts/bench-members-report.mjs line <<<"$line"
}

# The variants in a rotating order: rep 1 a b c, rep 2 b c a, …
rotate() { # rep
  local -a v
  read -ra v <<<"$VARIANTS"
  local i n=${#v[@]} out=""
  for ((i = 0; i < n; i++)); do out+="${v[((i + $1 - 1) % n)]} "; done
  echo "$out"
}

for rep in $(seq "$REPS"); do
  for case in saturate paced; do
    [[ $CASES == *" $case "* ]] || continue
    echo "== members: rep $rep, $case, $ROOMS rooms of $MEMBERS offline members; $(rotate "$rep")"
    for v in $(rotate "$rep"); do members_run "$case" "$v" "$rep"; done
  done
done

# ---- memory of the membership index ----

# RSS (kB) of the server now.
rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$SERVER_PID/status"; }

# Opens dir with this build, waits 1 s, appends a record {memberships, rss_kb, open_ms}.
memory_run() { # dir memberships rep
  RUN_NO=$((RUN_NO + 1))
  local rss=null loaded=null open=null
  if start_members_server b "$1" info; then
    sleep 1
    rss=$(rss_kb)
    open=$OPEN_MS
    loaded=$(sed -n 's/.*: \([0-9]*\) memberships and read marks.*/\1/p' \
      "$OUT/logs/members-$(printf %03d "$RUN_NO")-b.log" | tail -n 1)
    stop_server
  fi
  local disk=0 f
  for f in "$1"/parley.db "$1"/parley.db-wal; do
    if [[ -f $f ]]; then disk=$((disk + $(stat -c %s "$f"))); fi
  done
  printf '{"case":"memory","memberships":%s,"rep":%s,"loaded":%s,"rss_kb":%s,"open_ms":%s,"db_bytes":%s,"server_cmd":"%s"}\n' \
    "$2" "$3" "${loaded:-null}" "${rss:-null}" "${open:-null}" "$disk" "$(members_cmd b DIR info)" >>"$RESULTS"
  tail -n 1 "$RESULTS" | node scripts/bench-members-report.mjs line
}

if [[ $CASES == *" memory "* ]]; then
  empty=$OUT/members-data/empty full=$OUT/members-data/full
  mkdir -p "$empty" "$full"
  echo "== members: memory, $MEM_MEMBERSHIPS memberships joined through Socket.IO (users in 10 rooms each)"
  RUN_NO=$((RUN_NO + 1))
  # the users of every group of 10 rooms are the same: each joins one room per group
  if start_members_server b "$full"; then
    for g in $(seq 0 $((MEM_MEMBERSHIPS / (ROOMS * MEMBERS) - 1))); do
      pop=$(populate "g$g")
      node -e 'const p = JSON.parse(process.argv[1] || "null"); if (!p || p.connected !== p.clients || p.join_errors)
        console.error("bench-members: a join run fell short:", p && p.connected, "of", p && p.clients)' "${pop:-null}"
    done
    stop_server
  fi
  for rep in $(seq "$MEM_REPS"); do
    memory_run "$empty" 0 "$rep"
    memory_run "$full" "$MEM_MEMBERSHIPS" "$rep"
  done
  rm -rf "$OUT/members-data"
fi

printf '{"t0":%s,"build":"%s","quick":%s,"reps":%s,"rooms":%s,"members":%s,"window":%s,"paced":%s,"dur":%s,"warm":%s,"loadavg_start":"%s","loadavg_end":"%s","elapsed_s":%s,"parley":"%s","base_rev":"%s","base_bin":"%s","build_type":"%s"}\n' \
  "$T0" "$BUILD" "$QUICK" "$REPS" "$ROOMS" "$MEMBERS" "$WINDOW" "$PACED" "$DUR" "$WARM" "$LOADAVG_START" \
  "$(cut -d' ' -f1-3 /proc/loadavg)" "$(elapsed)" "$PARLEY_VERSION" "$BASE_REV" "$BASE" \
  "$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)" >"$OUT/members-meta.json"
node scripts/bench-members-report.mjs "$RESULTS" "$DOC" "$OUT/members-meta.json"
echo "== bench-members done in $(elapsed) s; $DOC"
