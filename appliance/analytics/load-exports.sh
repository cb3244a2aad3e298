#!/bin/sh
# Loads every Sentinel export in $EXPORTS (default /srv/sentinel-exports) into PostgreSQL, oldest
# first, moving each loaded file (and its manifest) to $EXPORTS/loaded/. Connection settings come
# from the usual libpq variables (PGHOST, PGDATABASE, PGUSER, ...). Stops at the first failure;
# rerunning is always safe because loading an export twice changes nothing.
set -eu
EXPORTS=${EXPORTS:-/srv/sentinel-exports}
mkdir -p "$EXPORTS/loaded"
for f in $(ls "$EXPORTS"/*.sql 2>/dev/null | sort); do
  psql -X -q -v ON_ERROR_STOP=1 -f "$f"
  mv "$f" "$EXPORTS/loaded/"
  if [ -e "$f.manifest.json" ]; then mv "$f.manifest.json" "$EXPORTS/loaded/"; fi
  echo "loaded $(basename "$f")"
done
