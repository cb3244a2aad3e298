#!/usr/bin/env bash
# Inspects a Sentinel .deb built by appliance/build-release.sh: its control fields, its contents
# and their modes, the maintainer scripts, the units' paths, and that the binary it carries runs.
# With --static also that the binary needs no library outside Debian (no Swift runtime) and was
# linked as build-release.sh links it: the check for a release build.
#
# usage: appliance/tests/deb-check.sh PACKAGE.deb [--static]
set -euo pipefail
deb=${1:?usage: $0 PACKAGE.deb [--static]}
static=false
[ "${2:-}" = --static ] && static=true
fail() { echo "deb-check: FAIL: $*" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

info=$(dpkg-deb -I "$deb")
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = sentinel ] || fail "Package is not sentinel"
[ "$(field Architecture)" = "$(dpkg --print-architecture)" ] || fail "Architecture $(field Architecture)"
field Depends | grep -q 'libsqlite3-0' || fail "Depends lacks libsqlite3-0: $(field Depends)"
! field Depends | grep -qi swift || fail "Depends names a Swift package: $(field Depends)"
for script in postinst prerm postrm conffiles; do
  echo "$info" | grep -q " $script" || fail "no $script in the control archive"
done

contents=$(dpkg-deb -c "$deb")
expect() {  # MODE PATH: the entry exists with that mode, owned by root
  echo "$contents" | awk -v m="$1" -v p="$2" '$1 == m && $2 == "root/root" && $6 == p { found = 1 } END { exit !found }' \
    || fail "missing or wrong mode/owner: $1 root/root $2"
}
expect -rwxr-xr-x ./usr/bin/sentinel
expect -rwxr-xr-x ./usr/lib/sentinel/backup-prune.sh
expect -rw-r--r-- ./etc/sentinel/sentinel.yaml
for unit in sentinel.service sentinel-backup.service sentinel-backup.timer sentinel-litestream@.service \
            sentinel-litestream-reload@.path sentinel-litestream-reload@.service; do
  expect -rw-r--r-- "./lib/systemd/system/$unit"
done
expect drwxr-xr-x ./var/lib/sentinel/
expect drwxr-xr-x ./var/backups/sentinel/
! echo "$contents" | grep -q '/usr/local/' || fail "the package installs into /usr/local"

dpkg-deb -x "$deb" "$work/root"
dpkg-deb -e "$deb" "$work/control"
# The units' syntax, where systemd's analyzer is installed (a CI container may lack it): systemd
# ignores a key it does not know, with one line in the journal, so a mistyped one fails here.
if command -v systemd-analyze >/dev/null 2>&1; then
  for unit in "$work"/root/lib/systemd/system/*; do
    problems=$(systemd-analyze verify --root="$work/root" "/lib/systemd/system/$(basename "$unit")" 2>&1 \
      | grep -E "Unknown (key|section)|[Ii]nvalid|[Ff]ailed to parse" || true)
    [ -z "$problems" ] || fail "$(basename "$unit"): $problems"
  done
else
  echo "deb-check: systemd-analyze is not installed; the units' syntax is not checked"
fi
grep -q 'useradd --system' "$work/control/postinst" || fail "postinst does not create the sentinel system user"
grep -q 'chown sentinel:sentinel /var/lib/sentinel' "$work/control/postinst" || fail "postinst does not give /var/lib/sentinel to sentinel"
grep -qx /etc/sentinel/sentinel.yaml "$work/control/conffiles" || fail "sentinel.yaml is not a conffile"
sh -n "$work/control/postinst" && sh -n "$work/control/prerm" && sh -n "$work/control/postrm" || fail "a maintainer script does not parse"
grep -q '^ExecStart=/usr/bin/sentinel serve ' "$work/root/lib/systemd/system/sentinel.service" || fail "sentinel.service does not run /usr/bin/sentinel"
grep -q '/usr/lib/sentinel/backup-prune.sh' "$work/root/lib/systemd/system/sentinel-backup.service" || fail "backup unit does not prune with /usr/lib/sentinel/backup-prune.sh"
grep -q '^ExecStart=/usr/bin/litestream replicate ' "$work/root/lib/systemd/system/sentinel-litestream@.service" || fail "litestream unit path"
cmp -s "$work/root/etc/sentinel/sentinel.yaml" "$(dirname "$0")/../sentinel.example.yaml" || fail "sentinel.yaml is not the example configuration"

version=$("$work/root/usr/bin/sentinel" --version) || fail "the packaged binary does not run"
[ "$version" = "$(field Version)" ] || fail "binary version $version, package version $(field Version)"
if $static; then
  ldd "$work/root/usr/bin/sentinel" | grep -q 'not found' && fail "unresolved libraries: $(ldd "$work/root/usr/bin/sentinel" | grep 'not found')"
  needed=$(readelf -d "$work/root/usr/bin/sentinel" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | paste -sd' ' -)
  for lib in $needed; do
    case "$lib" in
      libsqlite3.so.0|libc.so.6|libm.so.6|libdl.so.2|libpthread.so.0|librt.so.1|libutil.so.1|libgcc_s.so.1|libstdc++.so.6|libz.so.1|libzstd.so.1|ld-linux-*) ;;
      *) fail "the binary needs $lib, which a bare Debian with libsqlite3-0 does not have" ;;
    esac
  done
  echo "deb-check: binary needs only: $needed"
  # Linked as build-release.sh links it (docs/benchmarks.md, "Code order"): packed relative
  # relocations, no exported symbol table, and the functions of appliance/code-order.txt together
  # (the middle half of them within 10 MB; spread over the whole ~39 MB of code they span ~16 MB).
  bin="$work/root/usr/bin/sentinel"
  readelf -SW "$bin" | grep -q '\.relr\.dyn' || fail "relative relocations are not packed (-z pack-relative-relocs)"
  exported=$(readelf --dyn-syms -W "$bin" | wc -l)
  [ "$exported" -lt 5000 ] || fail "$exported dynamic symbols: linked with -export-dynamic"
  nm --defined-only "$bin" | awk 'NR == FNR { listed[$0] = 1; next } $2 ~ /^[tTwW]$/ && ($3 in listed) { print $1 }' \
    "$(dirname "$0")/../code-order.txt" - | sort > "$work/ordered"
  count=$(wc -l < "$work/ordered")
  [ "$count" -gt 1000 ] || fail "only $count functions of appliance/code-order.txt are in the binary"
  low=$(sed -n "$((count / 4))p" "$work/ordered"); high=$(sed -n "$((count * 3 / 4))p" "$work/ordered")
  span=$(( 16#$high - 16#$low ))
  [ "$span" -lt 10000000 ] || fail "the functions of appliance/code-order.txt are spread over $span bytes: not linked in that order"
  echo "deb-check: $exported dynamic symbols, packed relocations, $count ordered functions (middle half within $span bytes)"
fi
echo "deb-check: ok: $(basename "$deb") ($(field Version), Depends: $(field Depends))"
