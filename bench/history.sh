#!/usr/bin/env bash
# History benchmark (docs/recovery.md): the Rust counter, one hot object and $OBJECTS objects at
# random (each touched once first), on redb with `[storage] history` off and on, alternating
# ($ROUNDS rounds of off then on, each on a fresh data directory). After each run it prints the
# redb file's size, and with history on the commits and bytes the history holds
# (GET /_dohost/history): bytes per commit. Every response waits for its durable commit.
# Usage: bench/history.sh   (env: SECONDS_PER_RUN=8 CONNECTIONS=16 OBJECTS=10000 ROUNDS=2)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=${SECONDS_PER_RUN:-8}
conns=${CONNECTIONS:-16}
objects=${OBJECTS:-10000}
rounds=${ROUNDS:-2}
token="the history benchmark's admin token"
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "building dohost and the load generator (release)..." >&2
cargo build --release -q -p dohost -p dohost-bench
./target/release/dohost build examples/counter >&2

config() { # file history-table
  cat >"$1" <<CONF
[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"
component = "$root/examples/counter/counter"
[admin]
token = "$token"
$2
CONF
}
config "$work/off.toml" ""
config "$work/on.toml" "$(printf '[storage]\nhistory = "7d"')"

wait_http() { for _ in $(seq 1 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }

run() { # label config objects path
  local data="$work/data-$1-$RANDOM"
  ./target/release/dohost serve --config "$2" --data "$data" --listen 127.0.0.1:8851 2>"$data.log" &
  pid=$!
  wait_http "http://127.0.0.1:8851/COUNTER/warmup/"
  local touch=()
  [ "$3" -gt 1 ] && touch=(--touch-first)
  ./target/release/loadgen --label "$1" --url "http://127.0.0.1:8851/COUNTER/$4/" --objects "$3" \
    --connections "$conns" --seconds "$secs" "${touch[@]}" | grep '^RESULT' | tee -a "$work/results" >&2
  local history
  history=$(curl -sf -H "Authorization: Bearer $token" http://127.0.0.1:8851/_dohost/history | tr -d ' \n')
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  local bytes
  bytes=$(stat -c %s "$data/dohost.redb")
  echo "SIZE $1 $bytes $history" | tee -a "$work/results" >&2
}

for _ in $(seq 1 "$rounds"); do
  for mode in off on; do
    run "$mode-hot" "$work/$mode.toml" 1 hot
    run "$mode-random" "$work/$mode.toml" "$objects" 'o{}'
  done
done

echo
echo "$(date -u +%Y-%m-%d) on $(nproc) cores; ${secs}s per run, $conns connections, $objects objects"
printf '%-12s %10s %9s %9s %7s %12s %10s %14s\n' run req/s p50_ms p99_ms errors redb_bytes commits history_B/commit
paste -d' ' <(grep '^RESULT' "$work/results") <(grep '^SIZE' "$work/results") | awk '{
  commits = "-"; per = "-";
  if (match($0, /"commits":[0-9]+/)) { commits = substr($0, RSTART + 10, RLENGTH - 10) }
  if (match($0, /"bytes":[0-9]+/)) { b = substr($0, RSTART + 8, RLENGTH - 8); if (commits > 0) per = sprintf("%.0f", b / commits) }
  printf "%-12s %10s %9s %9s %7s %12s %10s %14s\n", $2, $3, $4, $5, $6, $9, commits, per }'
