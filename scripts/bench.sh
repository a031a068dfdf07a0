#!/usr/bin/env bash
# make bench: the benchmarks that exist so far, each printing a human line and a JSON
# line. (The load generator and the side-by-side comparison with Node come with the
# benchmark issue.)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
echo "== Socket.IO broadcast micro-benchmark (in-process sockets)"
"$BUILD/sio_broadcast" 10000 200
echo "== Chat store: durable appends (SQLite, then memory)"
"$BUILD/chat_store" 200000 100 2000 50000 both
