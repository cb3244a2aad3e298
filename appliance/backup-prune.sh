#!/bin/sh
# Keep the KEEP newest complete Sentinel backups in DIR and delete the older ones.
#
# Usage: backup-prune.sh [DIR] [KEEP]        defaults: /var/backups/sentinel 14
#
# Only directories named like 20250131T033000Z (what sentinel-backup.service creates) are
# considered, and only those holding manifest.json (written last by `sentinel backup`) count as
# complete. An incomplete one older than a complete backup was left by a backup that was
# interrupted (killed, a power cut) and is deleted, unless a backup still writes into it (it
# holds .backup-in-progress locked); newer incomplete ones are reported and left alone. Nothing
# else in DIR is touched.
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
nl='
'
set --
stale=""     # incomplete backups older than a complete one
pending=""   # incomplete backups seen since the last complete one
for backup in "$dir"/[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z; do
    [ -d "$backup" ] || continue
    if [ -f "$backup/manifest.json" ]; then
        set -- "$@" "$backup"
        stale="$stale$pending"
        pending=""
    else
        pending="$pending$backup$nl"
    fi
done

# One name per line; no globbing of the names.
set -f
IFS=$nl
for backup in $pending; do
    echo "backup-prune: $backup has no manifest.json (incomplete backup, newer than every complete one); left in place" >&2
done
for backup in $stale; do
    lock="$backup/.backup-in-progress"
    if [ -e "$lock" ] && ! flock -n "$lock" true; then
        echo "backup-prune: $backup is incomplete and a backup is still writing it; left in place" >&2
        continue
    fi
    echo "backup-prune: removing $backup (incomplete: the backup writing it was interrupted)"
    rm -rf -- "$backup"
done
unset IFS
set +f

excess=$(($# - keep))
while [ "$excess" -gt 0 ]; do
    echo "backup-prune: removing $1"
    rm -rf -- "$1"
    shift
    excess=$((excess - 1))
done
