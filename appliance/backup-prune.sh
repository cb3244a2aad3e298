#!/bin/sh
# Keep the KEEP newest complete Sentinel backups in DIR and delete the older ones.
#
# Usage: backup-prune.sh [DIR] [KEEP]        defaults: /var/backups/sentinel 14
#
# Only directories named like 20250131T033000Z (what sentinel-backup.service creates) are
# considered, and only those holding manifest.json (written last by `sentinel backup`) count as
# complete. Incomplete ones are reported and left alone; nothing else in DIR is touched.
set -eu

dir=${1:-/var/backups/sentinel}
keep=${2:-14}
case $keep in
    '' | *[!0-9]*) echo "backup-prune: KEEP must be a whole number, got '$keep'" >&2; exit 2 ;;
esac
if [ "$keep" -lt 1 ]; then
    echo "backup-prune: KEEP must be at least 1" >&2
    exit 2
fi
[ -d "$dir" ] || exit 0

# Glob expansion is sorted, and these UTC timestamps sort oldest first.
set --
for backup in "$dir"/[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z; do
    [ -d "$backup" ] || continue
    if [ -f "$backup/manifest.json" ]; then
        set -- "$@" "$backup"
    else
        echo "backup-prune: $backup has no manifest.json (incomplete backup); left in place" >&2
    fi
done

excess=$(($# - keep))
while [ "$excess" -gt 0 ]; do
    echo "backup-prune: removing $1"
    rm -rf -- "$1"
    shift
    excess=$((excess - 1))
done
