#!/usr/bin/env bash
# Release build of `sentinel` and a Debian package of it.
#
#   appliance/build-release.sh [--build-path DIR] [--out DIR]
#   appliance/build-release.sh --binary PATH --allow-shared-swift --fast [--out DIR]   (package an existing build; CI)
# --fast: gzip -1 instead of xz, for a package only inspected, never shipped.
#
# The binary is built with --static-swift-stdlib: the Swift runtime and Foundation are linked in,
# so it runs on a bare Debian 12 with libsqlite3-0 (plus libc6, libgcc-s1, libstdc++6, zlib1g and
# libzstd1, which every Debian has: dpkg needs the last two). The script refuses a binary that
# needs any other library not owned by a Debian package (the Swift runtime of a toolchain, say),
# unless --allow-shared-swift.
#
# Output in --out (default dist/): sentinel (the binary) and sentinel_VERSION_ARCH.deb, holding
#   /usr/bin/sentinel
#   /lib/systemd/system/sentinel.service, sentinel-backup.service, sentinel-backup.timer,
#                       sentinel-litestream@.service, sentinel-litestream-reload@.path and .service
#                       (paths rewritten for /usr/bin)
#   /usr/lib/sentinel/backup-prune.sh
#   /etc/sentinel/sentinel.yaml (a conffile: the documented defaults)
#   /var/lib/sentinel, /var/backups/sentinel
# and a postinst that creates the `sentinel` system user and gives it those directories. Nothing
# is enabled or started: `systemctl enable --now sentinel` (appliance/INSTALL.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_path="$root/.build"
out="$root/dist"
binary=""
allow_shared=false
compression=(-Zxz)
# How the appliance's binary is compiled and linked (docs/benchmarks.md, "Code order"): every
# function in its own section, linked by lld with the functions start-up, idle and a review run
# (appliance/code-order.txt, made by appliance/code-order.sh) next to each other, relative
# relocations packed (it stays a position-independent executable) and no symbol table for dlopen.
# Each cuts the pages the process touches, which is most of its resident memory.
link_flags=(-Xswiftc -Xfrontend -Xswiftc -function-sections -Xswiftc -use-ld=lld
  -Xlinker -z -Xlinker pack-relative-relocs -Xlinker --no-export-dynamic
  -Xlinker --symbol-ordering-file="$root/appliance/code-order.txt" -Xlinker --no-warn-symbol-ordering)
while [ $# -gt 0 ]; do
  case "$1" in
    --build-path) build_path=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --allow-shared-swift) allow_shared=true; shift ;;
    --fast) compression=(-Zgzip -z1); shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

if [ -z "$binary" ]; then
  [ -s "$root/appliance/code-order.txt" ] || { echo "appliance/code-order.txt is missing" >&2; exit 1; }
  toolchain_bin=$(dirname "$(readlink -f "$(command -v swiftc)")")
  if [ ! -x "$toolchain_bin/ld.lld" ] && ! command -v ld.lld > /dev/null; then
    echo "no ld.lld beside swiftc ($toolchain_bin) or on PATH: the Swift toolchain ships it; or apt-get install lld" >&2; exit 1
  fi
  (cd "$root" && swift build -c release --product sentinel --static-swift-stdlib --build-path "$build_path" \
    "${link_flags[@]}")
  binary="$build_path/release/sentinel"
fi
[ -x "$binary" ] || { echo "no executable at $binary" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Shared libraries: each must be found and owned by a Debian package, which becomes a dependency.
depends=()
while read -r lib; do
  [ -n "$lib" ] || continue
  case "$lib" in ld-linux*) depends+=(libc6); continue ;; esac  # the dynamic loader, part of libc6
  path=$(ldd "$binary" | awk -v l="$lib" '$1 == l { print $3 }')
  if [ -z "$path" ] || [ "$path" = "not" ]; then echo "$lib: not found" >&2; exit 1; fi
  real=$(readlink -f "$path")
  package=$(dpkg -S "$path" 2>/dev/null || dpkg -S "$real" 2>/dev/null || dpkg -S "${path#/usr}" 2>/dev/null || dpkg -S "/usr$path" 2>/dev/null || true)
  package=${package%%:*}
  if [ -z "$package" ]; then
    if $allow_shared; then echo "warning: $lib ($path) belongs to no Debian package; the package will not run without it" >&2; continue; fi
    echo "$lib ($path) belongs to no Debian package: build with --static-swift-stdlib" >&2; exit 1
  fi
  depends+=("$package")
done < <(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
depends_line=$(printf '%s\n' "${depends[@]}" | sort -u | paste -sd, - | sed 's/,/, /g')
case "$depends_line" in *libsqlite3-0*) ;; *) echo "the binary does not link libsqlite3 (expected libsqlite3-0 in Depends)" >&2; exit 1 ;; esac

version=$("$binary" --version)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/sentinel"
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/usr/lib/sentinel" "$pkg/etc/sentinel" \
  "$pkg/var/lib/sentinel" "$pkg/var/backups/sentinel" "$pkg/usr/share/doc/sentinel"
install -m 0755 "$binary" "$pkg/usr/bin/sentinel"
install -m 0755 "$root/appliance/backup-prune.sh" "$pkg/usr/lib/sentinel/backup-prune.sh"
install -m 0644 "$root/appliance/sentinel.example.yaml" "$pkg/etc/sentinel/sentinel.yaml"
install -m 0644 "$root/appliance/INSTALL.md" "$pkg/usr/share/doc/sentinel/INSTALL.md"
for unit in sentinel.service sentinel-backup.service sentinel-backup.timer sentinel-litestream@.service \
            sentinel-litestream-reload@.path sentinel-litestream-reload@.service; do
  sed -e 's#/usr/local/bin/sentinel#/usr/bin/sentinel#g' \
      -e 's#/usr/local/lib/sentinel/#/usr/lib/sentinel/#g' \
      -e 's#/usr/local/bin/litestream#/usr/bin/litestream#g' \
      "$root/appliance/systemd/$unit" > "$pkg/lib/systemd/system/$unit"
  chmod 0644 "$pkg/lib/systemd/system/$unit"
done
if grep -l '/usr/local/' "$pkg/lib/systemd/system/"*; then echo "a unit still points into /usr/local" >&2; exit 1; fi

echo "/etc/sentinel/sentinel.yaml" > "$pkg/DEBIAN/conffiles"
cat > "$pkg/DEBIAN/control" <<EOF
Package: sentinel
Version: $version
Architecture: $arch
Maintainer: Sentinel maintainers <sentinel@localhost>
Depends: $depends_line
Suggests: litestream
Section: net
Priority: optional
Installed-Size: $(du -sk "$pkg" | cut -f1)
Description: self-hosted AI code-review appliance
 Sentinel receives GitHub webhooks over HTTPS, reviews pull requests with
 your own LLM keys and posts the reviews back. Each workspace lives in its
 own SQLite file under /var/lib/sentinel. See
 /usr/share/doc/sentinel/INSTALL.md.
EOF

cat > "$pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# Creates the sentinel system user and gives it the data and backup directories. Idempotent.
set -e
if [ "$1" = configure ]; then
  if ! getent passwd sentinel >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/sentinel --no-create-home \
            --shell /usr/sbin/nologin sentinel
  fi
  chown sentinel:sentinel /var/lib/sentinel /var/backups/sentinel
  chmod 0750 /var/lib/sentinel
  chmod 0700 /var/backups/sentinel
  chown root:sentinel /etc/sentinel /etc/sentinel/sentinel.yaml
  chmod 0750 /etc/sentinel
  chmod 0640 /etc/sentinel/sentinel.yaml
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
exit 0
EOF
cat > "$pkg/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# On removal, stop the services (the data in /var/lib/sentinel is kept, also on purge).
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop 'sentinel-litestream@*.service' sentinel-backup.timer sentinel-backup.service sentinel.service || true
fi
exit 0
EOF
cat > "$pkg/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
exit 0
EOF
chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm" "$pkg/DEBIAN/postrm"

deb="$out/sentinel_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compression[@]}" --build "$pkg" "$deb" >/dev/null
if [ "$(readlink -f "$binary")" != "$out/sentinel" ]; then install -m 0755 "$binary" "$out/sentinel"; fi
echo "$deb"
