#!/bin/sh
# Loads every Sentinel export in $EXPORTS (default /srv/sentinel-exports) into PostgreSQL, oldest
# first, moving each loaded file (and its manifest) to $EXPORTS/loaded/. Connection settings come
# from the usual libpq variables (PGHOST, PGDATABASE, PGUSER, ...). Stops at the first failure;
# rerunning is always safe because loading an export twice changes nothing.
#
# A file cut off in transit (a copy interrupted, a disk that filled) would load "successfully":
# psql ends a script whose COMMIT never comes without an error, and rolls everything back. So each
# file is checked against the SHA-256 in its manifest before it is loaded, and after the load its
# export must be listed in sentinel.exports (the last statement before the COMMIT records it).
set -eu
EXPORTS=${EXPORTS:-/srv/sentinel-exports}
mkdir -p "$EXPORTS/loaded"
for f in $(ls "$EXPORTS"/*.sql 2>/dev/null | sort); do
  name=$(basename "$f")
  manifest="$f.manifest.json"
  if [ ! -e "$manifest" ]; then
    echo "$name: no manifest beside it ($name.manifest.json); copy it with the file (its SHA-256 shows the file arrived whole); nothing loaded" >&2
    exit 1
  fi
  want=$(sed -n 's/.*"sha256" *: *"\([0-9a-f]*\)".*/\1/p' "$manifest" | head -n 1)
  have=$(sha256sum "$f" | cut -d ' ' -f 1)
  if [ -z "$want" ] || [ "$want" != "$have" ]; then
    echo "$name: its SHA-256 is not the one in its manifest (cut off or changed on the way); copy it again; nothing loaded" >&2
    exit 1
  fi
  id=$(sed -n '1s/^-- Sentinel analytics export \([^,]*\),.*/\1/p' "$f")
  if [ -z "$id" ]; then
    echo "$name: not a Sentinel analytics export (its first line names no export); nothing loaded" >&2
    exit 1
  fi
  psql -X -q -v ON_ERROR_STOP=1 -f "$f"
  loaded=$(printf '%s\n' "SELECT count(*) FROM sentinel.exports WHERE export_id = :'id';" | psql -X -q -A -t -v ON_ERROR_STOP=1 -v id="$id" || true)
  if [ "$loaded" != "1" ]; then
    echo "$name: psql ended without loading it (the script stopped before its COMMIT); nothing loaded" >&2
    exit 1
  fi
  mv "$f" "$EXPORTS/loaded/"
  mv "$manifest" "$EXPORTS/loaded/"
  echo "loaded $name"
done
