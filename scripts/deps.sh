#!/usr/bin/env bash
# Installs what Parley needs to build, run and test, and nothing else.
#   scripts/deps.sh build   Debian packages for building and running the server
#   scripts/deps.sh test    the above, plus test tools and the npm packages in tests/
#   scripts/deps.sh bench   build, plus gnuplot (the plots of make bench) and the Node.js
#                           reference server's packages in bench/node/
#   scripts/deps.sh --list STEP   prints STEP's Debian packages, one a line, and stops
#                           (scripts/check-deps.sh builds with only these)
# As root it runs apt-get itself; otherwise it prints the exact apt-get line and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the code links: libuv, jansson, OpenSSL (libssl for TLS, libcrypto), hiredis and
# msgpack-c (the library; the last two for the Redis adapter), zlib (permessage-deflate,
# compressed long-polling), SQLite, libjwt and libcurl (the chat service; libcurl for the
# offline notifications' webhook, its runtime libcurl4 comes with it), libxcrypt (bcrypt,
# for the admin UI's login).
# Node and npm fetch the page's client bundle at build time.
build_pkgs=(build-essential cmake ninja-build pkg-config
  libuv1-dev libssl-dev libsqlite3-dev libjansson-dev libjwt-dev libhiredis-dev libmsgpack-dev
  libcrypt-dev zlib1g-dev libcurl4-openssl-dev nodejs npm)
# clang and its runtime for the fuzzers, cmocka for the unit tests, curl and chromium
# for the integration and browser suites (certutil, of libnss3-tools, gives the browser
# the TLS suite's test CA), redis-server and nginx for the cluster suites;
# for the benchmarks gnuplot (plots), redis-server, nginx and curl (nodes over Redis), and
# valgrind (scripts/bench-memory.sh massif: bytes per connection by allocation site).
test_pkgs=(clang libclang-rt-14-dev libcmocka-dev curl openssl chromium libnss3-tools redis-server
  nginx-light)
lint_pkgs=(clang-format clang-tidy cppcheck)
bench_pkgs=(gnuplot-nox redis-server nginx-light curl valgrind)

list_only=false
if [[ ${1:-} == --list ]]; then
  list_only=true
  shift
fi

want=("${build_pkgs[@]}")
case "${1:-build}" in
  build) ;;
  test) want+=("${test_pkgs[@]}") ;;
  lint) want+=("${lint_pkgs[@]}") ;;
  bench) want+=("${bench_pkgs[@]}") ;;
  *) echo "usage: $0 build|test|lint|bench" >&2; exit 2 ;;
esac

if $list_only; then
  printf '%s\n' "${want[@]}"
  exit 0
fi

missing=()
for p in "${want[@]}"; do
  # node/npm may come from outside Debian (e.g. nodesource); accept any working binary.
  if [[ $p == nodejs || $p == npm ]] && command -v "${p/nodejs/node}" >/dev/null; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "Parley needs these Debian packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The client bundle parley serves at /socket.io/socket.io.js, from npm at build time,
# with gzip copies for clients that accept them.
if [[ ! -d assets/node_modules ]] || [[ assets/package-lock.json -nt assets/node_modules/.package-lock.json ]]; then
  echo "deps: npm ci in assets/"
  (cd assets && npm ci --no-audit --no-fund --loglevel=error)
fi
dist=assets/node_modules/socket.io-client/dist
if [[ ! -f $dist/socket.io.min.js.gz ]]; then
  for f in "$dist"/socket.io*.js "$dist"/socket.io*.map; do gzip -9 -k -f "$f"; done
fi

if [[ ${1:-build} == test ]]; then
  if [[ ! -d tests/node_modules ]] || [[ tests/package-lock.json -nt tests/node_modules/.package-lock.json ]]; then
    echo "deps: npm ci in tests/"
    (cd tests && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

if [[ ${1:-build} == bench ]]; then
  if [[ ! -d bench/node/node_modules ]] || [[ bench/node/package-lock.json -nt bench/node/node_modules/.package-lock.json ]]; then
    echo "deps: npm ci in bench/node/"
    (cd bench/node && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
