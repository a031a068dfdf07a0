#!/usr/bin/env bash
# make bench, TLS (issue 14): what serving https and wss costs, Parley (parley
# --tls-cert/--tls-key: OpenSSL over a BIO of its own, SSL_MODE_RELEASE_BUFFERS, no session
# cache, stateless tickets) beside the Node.js socket.io reference server
# (bench/node/server.mjs --tls-cert/--tls-key: https.createServer), each also over plain
# TCP, the same client code (bench/node/tls.mjs) for all four:
#   idle       N Socket.IO connections over WebSocket (CONNECT with a JWT, no room),
#              server RSS per connection right after the last CONNECT ack and after HOLD s
#              of silence (OpenSSL releases a connection's record buffers once it is idle)
#   handshake  M fresh connections, at most 32 at a time, each TCP (+ TLS, a full
#              handshake: no resumption) + an Engine.IO polling handshake, then closed:
#              server CPU per handshake, handshakes/s
#   resume     the same, TLS servers only, each connection resuming with the latest
#              session ticket (TLS 1.3 PSK + ECDHE)
# A self-signed CA and a certificate for 127.0.0.1 (ECDSA P-256, made by the openssl tool
# in a temporary directory, removed on exit). Every run on a fresh server process on a port
# the kernel picks, the servers alternating within each of REPS repetitions (3; QUICK=1:
# 1); medians. About 7 minutes (QUICK=1: about 1.5).
#
# Writes build/bench/tls.jsonl (one record per run: the driver's JSON line in "result"),
# build/bench/tls-meta.json, and the section between the tls markers of docs/BENCHMARKS.md
# (a QUICK run writes build/bench/doc/tls.md instead; BENCH_DOC overrides either),
# keeping the hand-written reading inside it (scripts/bench-tls-report.mjs).
# Environment: BUILD (build), SERVERS ("parley parley-tls node node-tls": a subset for a
# partial run), IDLE_CLIENTS, HANDSHAKES, HOLD (s), KEY_TYPE (ec: P-256; rsa: RSA 2048),
# PARLEY_VERSION (git describe).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
QUICK=${QUICK:-0}
[[ $QUICK == 0 || -z $QUICK ]] && QUICK=0 || QUICK=1
OUT=$BUILD/bench
RESULTS=$OUT/tls.jsonl
SECRET=parley-bench-secret-0123456789abcdef
T0=$(date +%s)
SERVERS=${SERVERS:-parley parley-tls node node-tls}
KEY_TYPE=${KEY_TYPE:-ec}
if ((QUICK)); then
  REPS=1 IDLE_CLIENTS=${IDLE_CLIENTS:-1000} HANDSHAKES=${HANDSHAKES:-1000} HOLD=${HOLD:-3}
  DOC=${BENCH_DOC:-$OUT/doc/tls.md}
else
  REPS=3 IDLE_CLIENTS=${IDLE_CLIENTS:-5000} HANDSHAKES=${HANDSHAKES:-3000} HOLD=${HOLD:-5}
  DOC=${BENCH_DOC:-docs/BENCHMARKS.md}
fi
CONCURRENCY=32  # handshakes in flight (idle: connections being opened)
RUN_TIMEOUT=150 # s: the bound of one driver run (the driver's own: 120 s)
LOG_PREFIX=tls- STOP_POLLS=100
DRIVER=bench/node/tls.mjs
# server_cmd, stop_server, elapsed; the traps
# shellcheck source=scripts/bench-common.sh
source scripts/bench-common.sh
PARLEY_VERSION=${PARLEY_VERSION:-$(git describe --always --dirty --tags 2>/dev/null || echo unknown)}

[[ -x $PARLEY_BIN ]] || { echo "bench-tls: $PARLEY_BIN missing (make build)" >&2; exit 1; }
for c in node openssl; do
  command -v "$c" >/dev/null || { echo "bench-tls: $c missing (scripts/deps.sh bench)" >&2; exit 1; }
done
if [[ ! -d bench/node/node_modules/ws || ! -d bench/node/node_modules/socket.io ]]; then
  echo "bench-tls: bench/node/node_modules missing (scripts/deps.sh bench)" >&2
  exit 1
fi

CERTS=$(mktemp -d /tmp/parley-bench-tls.XXXXXX)
trap 'cleanup; rm -rf "$CERTS"' EXIT

# The CA and the server's certificate (SAN IP:127.0.0.1, DNS:localhost).
make_certs() {
  local key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
  [[ $KEY_TYPE == rsa ]] && key=(-newkey rsa:2048)
  (
    cd "$CERTS"
    openssl req -x509 "${key[@]}" -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=parley bench CA"
    openssl req "${key[@]}" -nodes -keyout key.pem -out req.csr -subj "/CN=localhost"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext.cnf
    openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile ext.cnf
  ) >"$OUT/logs/${LOG_PREFIX}openssl.log" 2>&1
}

# A server's command line (the certificate's directory as CERTS, as the report prints it).
tls_server_cmd() { # kind
  local tls="--tls-cert CERTS/cert.pem --tls-key CERTS/key.pem"
  case $1 in
    parley) server_cmd parley ;;
    parley-tls) server_cmd parley "$tls" ;;
    node) server_cmd node ;;
    node-tls) echo "$(server_cmd node) $tls" ;;
  esac
}

# As scripts/bench-common.sh's start_server, with tls_server_cmd.
tls_start() { # kind log
  local cmd
  read -ra cmd <<<"$(tls_server_cmd "$1")"
  cmd=("${cmd[@]//CERTS/$CERTS}")
  "${cmd[@]}" >"$2" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 200); do
    PORT=$(sed -n 's/^listening [0-9.]*:\([0-9]*\)$/\1/p' "$2")
    [[ -n $PORT ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "bench-tls: $1 did not start: $(head -c 500 "$2")" >&2
  stop_server
  return 1
}

# run_case CASE SERVER REP: one driver run on a fresh server; its record appended to RESULTS.
run_case() {
  local case=$1 server=$2 rep=$3 name scheme=http json="" rc=0 la t_run args
  RUN_NO=$((RUN_NO + 1))
  name=$(printf %03d "$RUN_NO")-$case-$server
  [[ $server == *-tls ]] && scheme=https
  case $case in
    idle) args=(idle --clients "$IDLE_CLIENTS" --hold "$HOLD" --jwt-secret "$SECRET") ;;
    handshake) args=(handshake --count "$HANDSHAKES") ;;
    resume) args=(handshake --count "$HANDSHAKES" --resume) ;;
  esac
  args+=(--concurrency "$CONCURRENCY")
  [[ $scheme == https ]] && args+=(--ca CERTS/ca.pem)
  la=$(cut -d' ' -f1 /proc/loadavg)
  t_run=$(elapsed)
  if tls_start "$server" "$OUT/logs/$LOG_PREFIX$name-server.log"; then
    timeout "$RUN_TIMEOUT" node "$DRIVER" "${args[@]//CERTS/$CERTS}" --url "$scheme://127.0.0.1:$PORT" \
      --pid "$SERVER_PID" >"$OUT/run.out" 2>"$OUT/logs/$LOG_PREFIX$name-driver.log" || rc=$?
    stop_server
    json=$(grep '^{' "$OUT/run.out" | tail -n 1 || true)
  else
    rc=1
  fi
  printf '{"case":"%s","server":"%s","rep":%s,"t":%s,"loadavg":%s,"cmd":"%s","server_cmd":"%s","result":%s}\n' \
    "$case" "$server" "$rep" "$t_run" "$la" "node $DRIVER ${args[*]} --url $scheme://127.0.0.1:PORT --pid PID" \
    "$(tls_server_cmd "$server")" "${json:-null}" >>"$RESULTS"
  # shellcheck disable=SC2016 # JavaScript's ${}, not the shell's
  node -e '
    const r = JSON.parse(process.argv[1]).result, f = (x, d = 0) => (x == null ? "?" : x.toFixed(d));
    const a = process.argv.slice(2).join(" ");
    if (!r) console.log(`${a}: no result`);
    else if (r.mode === "idle")
      console.log(`${a}: ${r.held}/${r.clients} held, ${f(r.bytes_per_conn_active)} B/conn active, ` +
        `${f(r.bytes_per_conn_idle)} B/conn idle${r.errors ? `, ${r.errors} errors (${r.first_error})` : ""}`);
    else
      console.log(`${a}: ${r.ok}/${r.count} in ${f(r.wall_s, 1)} s, ${f(r.handshakes_per_s)}/s, server ` +
        `${f(r.server_cpu_ms_per_handshake, 3)} ms CPU each, client CPU ${f(r.client_cpu_pct)}%` +
        `${r.tls && r.resume ? `, ${r.resumed} resumed` : ""}${r.errors ? `, ${r.errors} errors (${r.first_error})` : ""}`);
  ' "$(tail -n 1 "$RESULTS")" "$rep" "$case" "$server"
  ((rc == 0)) || echo "bench-tls: $name: driver exit $rc (see $OUT/logs/$LOG_PREFIX$name-driver.log)" >&2
  return 0
}

mkdir -p "$OUT/logs" "$(dirname "$DOC")"
rm -f "$OUT"/logs/"$LOG_PREFIX"*.log
: >"$RESULTS"
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
make_certs || { echo "bench-tls: openssl could not make the certificates (see $OUT/logs/${LOG_PREFIX}openssl.log)" >&2; exit 1; }
echo "== tls: $SERVERS; $REPS repetition(s); idle $IDLE_CLIENTS connections held ${HOLD} s; $HANDSHAKES handshakes, $CONCURRENCY in flight; $KEY_TYPE certificate"
for rep in $(seq "$REPS"); do
  for case in idle handshake resume; do
    for server in $SERVERS; do
      [[ $case == resume && $server != *-tls ]] && continue
      run_case "$case" "$server" "$rep"
    done
  done
done

printf '{"t0":%s,"quick":%s,"reps":%s,"idle_clients":%s,"handshakes":%s,"hold_s":%s,"concurrency":%s,"key_type":"%s","servers":"%s","loadavg_start":"%s","loadavg_end":"%s","elapsed_s":%s,"parley":"%s","openssl":"%s","node":"%s"}\n' \
  "$T0" "$QUICK" "$REPS" "$IDLE_CLIENTS" "$HANDSHAKES" "$HOLD" "$CONCURRENCY" "$KEY_TYPE" "$SERVERS" \
  "$LOADAVG_START" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(elapsed)" "$PARLEY_VERSION" \
  "$(openssl version | cut -d' ' -f1-2)" "$(node --version) (OpenSSL $(node -p process.versions.openssl))" >"$OUT/tls-meta.json"
node scripts/bench-tls-report.mjs "$RESULTS" "$DOC" "$OUT/tls-meta.json"
echo "== bench-tls done in $(elapsed) s; $DOC"
