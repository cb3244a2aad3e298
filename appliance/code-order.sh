#!/usr/bin/env bash
# Regenerates appliance/code-order.txt: the functions `sentinel serve` runs while it starts, sits
# idle and reviews pull requests, one symbol per line. appliance/build-release.sh hands the list to
# the linker, which places those functions next to each other, so start-up and a review touch a few
# contiguous megabytes of code instead of pages spread over all ~39 MB of it
# (docs/benchmarks.md, "Code order"). A stale list only costs memory: names that no longer exist
# are skipped, and new functions land where the linker puts them anyway.
#
#   appliance/code-order.sh [--build-path DIR] [--bench PATH]
#
# Needs valgrind (callgrind records every function executed). Builds the appliance binary with
# build-release.sh, then runs `sentinel-bench review` (a few 20-file PRs through its loopback fakes)
# and `sentinel-bench idle` against it under callgrind. --bench: a sentinel-bench executable
# (default: `swift build -c release --product sentinel-bench`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_path="$root/.build-appliance"
bench=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build-path) build_path=$2; shift 2 ;;
    --bench) bench=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash "$root/appliance/build-release.sh" --build-path "$build_path" --out "$work/dist" --fast > /dev/null
if [ -z "$bench" ]; then
  (cd "$root" && swift build -c release --product sentinel-bench)
  bench="$root/.build/release/sentinel-bench"
fi

# valgrind does not read this toolchain's DWARF; the symbol table is all it needs.
objcopy --strip-debug "$work/dist/sentinel" "$work/sentinel"
cat > "$work/sentinel-under-callgrind" <<SCRIPT
#!/bin/sh
exec valgrind --quiet --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \\
  --callgrind-out-file="$work/callgrind.%p" "$work/sentinel" "\$@"
SCRIPT
chmod +x "$work/sentinel-under-callgrind"
"$bench" review --sentinel "$work/sentinel-under-callgrind" --prs 5 --warmup 1 --concurrency 1 --concurrency 4 > /dev/null
"$bench" idle --sentinel "$work/sentinel-under-callgrind" --workspaces 1 --starts 1 --idle-seconds 10 > /dev/null

# Every function callgrind saw run, with the other names the executable gives the same address
# (a merged function answers to several names and callgrind reports one of them); libc's and
# SQLite's functions are not in the executable and drop out.
cat "$work"/callgrind.* | sed -n 's/^c\{0,1\}fn=//p' | sort -u > "$work/executed"
nm --defined-only "$work/sentinel" > "$work/defined"
awk 'NR == FNR { executed[$0] = 1; next }
     $2 ~ /^[tTwW]$/ { names[$1] = names[$1] "\n" $3; if ($3 in executed) hit[$1] = 1 }
     END { for (a in hit) print substr(names[a], 2) }' "$work/executed" "$work/defined" | sort -u > "$root/appliance/code-order.txt"
echo "$(wc -l < "$root/appliance/code-order.txt") functions in appliance/code-order.txt"
