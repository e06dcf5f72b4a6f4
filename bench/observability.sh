#!/usr/bin/env bash
# What metrics and traces cost the hot path: one hot counter (the counter example's object behind
# the default router, a durable put per request) served by the release host of this tree and by
# the release host of BASELINE (by default 3e2be67, the last commit before the metrics and the
# event spans), one after the other, ROUNDS times each, with the same load generator; then this
# tree with [observability] otlp_endpoint set (every event's span made and exported to a local
# sink that answers 200). Prints each run and the ratio of the medians.
# Usage: bench/observability.sh   (env: BASELINE=<commit> ROUNDS=3 SECONDS_PER_RUN=8 CONNECTIONS=16,
#                                  BASELINE_BIN=<a dohost binary built from BASELINE> to skip its build)
# The baseline is built in a temporary worktree sharing this tree's target directory (only the
# workspace's crates build again); its binary is copied out before this tree's is built.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
baseline=${BASELINE:-3e2be67}
rounds=${ROUNDS:-3}
secs=${SECONDS_PER_RUN:-8}
conns=${CONNECTIONS:-16}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  git worktree remove --force "$work/base" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${BASELINE_BIN:-}" ]; then
  cp "$BASELINE_BIN" "$work/dohost-base"
else
  echo "building the baseline host ($baseline, release)..." >&2
  git worktree add -q --detach "$work/base" "$baseline"
  (cd "$work/base" && CARGO_TARGET_DIR="$root/target" cargo build --release -q -p dohost)
  cp target/release/dohost "$work/dohost-base"
  # For a rerun without the build: BASELINE_BIN=target/dohost-baseline.
  cp target/release/dohost target/dohost-baseline
fi
echo "building this tree's host and the load generator (release)..." >&2
cargo build --release -q -p dohost -p dohost-bench
cp target/release/dohost "$work/dohost-new"
./target/release/dohost build examples/counter >&2

cat >"$work/router.toml" <<TOML
[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"
component = "$root/examples/counter/counter"
TOML
cp "$work/router.toml" "$work/otlp.toml"
printf '[observability]\notlp_endpoint = "http://127.0.0.1:8790"\n' >>"$work/otlp.toml"
./target/release/upstream --listen 127.0.0.1:8790 2>"$work/upstream.log" &
pids+=($!)

wait_http() {
  for _ in $(seq 1 1200); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "server at $1 did not answer" >&2; return 1
}

run() { # label binary config
  "$2" serve --config "$3" --data "$work/data-$1-$RANDOM" --listen 127.0.0.1:8787 2>"$work/$1.log" &
  pids+=($!)
  wait_http "http://127.0.0.1:8787/COUNTER/warmup/"
  ./target/release/loadgen --label "$1" --url "http://127.0.0.1:8787/COUNTER/my-counter/" \
    --objects 1 --connections "$conns" --seconds "$secs" | tee -a "$work/results" | grep -v '^RESULT' >&2
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'
}

for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds" >&2
  run baseline "$work/dohost-base" "$work/router.toml"
  run metrics "$work/dohost-new" "$work/router.toml"
  run metrics+otlp "$work/dohost-new" "$work/otlp.toml"
done

echo
echo "median req/s of $rounds runs each ($(date -u +%F), $(nproc) cores):"
median() { grep "^RESULT $1 " "$work/results" | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(median baseline)
for label in baseline metrics metrics+otlp; do
  m=$(median "$label")
  awk -v l="$label" -v m="$m" -v b="$base" 'BEGIN {printf "  %-14s %8.0f req/s  %.3f x baseline\n", l, m, m / b}'
done
