#!/usr/bin/env bash
# Proves that `make run` needs only what `scripts/deps.sh build` installs, on a machine
# that has much more installed (a developer's, CI's), where a missing install step would
# otherwise stay hidden.
#
# It builds what `make run` builds, in a fresh directory, with pkg-config restricted to
# the .pc files that the build packages and their dependencies ship (PKG_CONFIG_LIBDIR),
# so a test-only or undeclared library fails the configure step. Then it checks what the
# compiler and the loader actually used: every header the build read (ninja's dependency
# log) and every shared library the programs load (ldd) must belong to one of those
# packages. CMake's only find_package is PkgConfig itself; libraries are found through
# pkg-config alone, so restricting pkg-config restricts them all.
#
#   scripts/check-deps.sh          exit 0 when the run build is self-contained
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh build >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The installed dependency closure of the build packages (Depends and Pre-Depends, every
# installed alternative; a virtual name counts through the installed packages that
# provide it).
declare -A seen=()
queue=()
while read -r p; do
  queue+=("$p")
done < <(scripts/deps.sh --list build)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
declare -A provides=()
while IFS='|' read -r pkg prov; do
  IFS=',' read -ra names <<<"$prov"
  for n in "${names[@]}"; do
    n=${n%%(*}; n=${n// /}
    [[ -n $n ]] && provides[$n]+=" $pkg"
  done
done < <(dpkg-query -W -f='${db:Status-Abbrev}|${Package}|${Provides}\n' | awk -F'|' '$1 ~ /^ii/ {print $2 "|" $3}')
while ((${#queue[@]})); do
  p=${queue[0]}
  queue=("${queue[@]:1}")
  p=${p%%:*}
  [[ -n ${seen[$p]:-} ]] && continue
  if ! installed "$p"; then
    for q in ${provides[$p]:-}; do queue+=("$q"); done
    seen[$p]=virtual
    continue
  fi
  seen[$p]=1
  deps=$(dpkg-query -W -f='${Depends}, ${Pre-Depends}' "$p")
  IFS=',|' read -ra alts <<<"$deps"
  for a in "${alts[@]}"; do
    a=${a%%(*}; a=${a// /}
    [[ -n $a ]] && queue+=("$a")
  done
done
closure=()
for p in "${!seen[@]}"; do [[ ${seen[$p]} == 1 ]] && closure+=("$p"); done
echo "check-deps: ${#closure[@]} packages in the closure of scripts/deps.sh build"

mkdir "$work/pc"
for p in "${closure[@]}"; do
  while read -r f; do
    if [[ -f $f ]]; then ln -sf "$f" "$work/pc/"; fi
  done < <(dpkg -L "$p" 2>/dev/null | grep '\.pc$' || true)
done

# The package that owns a file, trying both sides of the /usr merge.
owner() {
  local f=$1 o
  for cand in "$f" "${f#/usr}" "/usr$f" "$(readlink -f "$f")"; do
    o=$(dpkg -S "$cand" 2>/dev/null | head -n1) && { echo "${o%%:*}"; return; }
  done
  echo "?"
}
in_closure() {
  local p=${1%%,*}
  for c in "${closure[@]}"; do [[ $c == "$p" ]] && return 0; done
  return 1
}

echo "check-deps: configuring and building as make run does, pkg-config limited to $(ls "$work/pc" | wc -l) .pc files"
PKG_CONFIG_LIBDIR="$work/pc" PKG_CONFIG_PATH="" \
  cmake -S . -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARLEY_TESTS=OFF >"$work/log" 2>&1 ||
  { cat "$work/log"; echo "check-deps: FAILED: make run's configure needs something scripts/deps.sh build does not install"; exit 1; }
cmake --build "$work/build" >>"$work/log" 2>&1 ||
  { tail -n 40 "$work/log"; echo "check-deps: FAILED: make run's build needs something scripts/deps.sh build does not install"; exit 1; }

bad=0
src=$(pwd)
while read -r f; do
  [[ $f == "$src"/* || $f == "$work"/* ]] && continue
  o=$(owner "$f")
  if ! in_closure "$o"; then
    echo "check-deps: header $f comes from '$o', which scripts/deps.sh build does not install"
    bad=1
  fi
done < <(ninja -C "$work/build" -t deps | awk '/^    \// {print $1}' | sort -u)

while read -r bin; do
  while read -r lib; do
    o=$(owner "$lib")
    if ! in_closure "$o"; then
      echo "check-deps: $(basename "$bin") loads $lib from '$o', which scripts/deps.sh build does not install"
      bad=1
    fi
  done < <(ldd "$bin" | awk '$3 ~ /^\// {print $3}')
done < <(find "$work/build" -maxdepth 1 -type f -perm -u+x)
((bad == 0)) || { echo "check-deps: FAILED"; exit 1; }
echo "check-deps: ok: make run needs only what scripts/deps.sh build installs"
