#!/usr/bin/env bash
# Wasm instructions per event of the JavaScript counter (bench/js/counter.js, workerd's reference
# file), counted with wasmtime's fuel (DOHOST_FUEL=1, host/src/runtime/instructions.rs): the same
# on every run, where timings on a shared machine are not. Prints, for the last of REQUESTS hot
# requests to one object: the worker's share of a request through the JavaScript worker
# (bench/js/dohost.toml), the object's share of it, the object's request through the default
# router (no worker), and the object's constructor.
# Usage: bench/instructions.sh [REQUESTS]   (default 20; env PORT=8797)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
requests=${1:-20}
port=${PORT:-8797}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release -q -p dohost
./target/release/dohost build bench/js >&2

serve() { # config url
  DOHOST_FUEL=1 RUST_LOG=warn,dohost::instructions=info NO_COLOR=1 \
    ./target/release/dohost serve --config "$1" --data "$work/data" --listen "127.0.0.1:$port" 2>"$work/log" &
  pid=$!
  for _ in $(seq 1 1200); do curl -sf "$2" >/dev/null 2>&1 && break; sleep 0.05; done
  for _ in $(seq 1 "$requests"); do curl -sf "$2" >/dev/null; done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}
last() { # what
  sed 's/\x1b\[[0-9;]*m//g' "$work/log" | grep -F "$1: " | tail -1 | sed 's/.*: \([0-9]*\) wasm instructions.*/\1/'
}

serve bench/js/dohost.toml "http://127.0.0.1:$port/my-counter"
worker=$(last "worker fetch")
through=$(last "COUNTER Counter fetch")
constructor=$(last "COUNTER Counter constructor")
sed '/^main = /d' bench/js/dohost.toml | sed "s|counter.js|$root/bench/js/counter.js|" >"$work/router.toml"
serve "$work/router.toml" "http://127.0.0.1:$port/COUNTER/my-counter/"
router=$(last "COUNTER Counter fetch")
printf '%-48s %12s\n' "event (hot, wasm instructions)" "count" \
  "worker fetch, forwarding to the object" "$worker" \
  "object fetch, through the worker" "$through" \
  "object fetch, through the default router" "$router" \
  "object constructor" "$constructor"
