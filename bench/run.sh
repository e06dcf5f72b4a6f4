#!/usr/bin/env bash
# Side-by-side benchmark: dohost (release) vs workerd on the same machine, same client.
#   (a) one hot counter object, (b) 10,000 counter objects chosen at random.
# Every dohost response is durable (the output gate waits for the fsync'd commit).
# Usage: bench/run.sh            (env: SECONDS_PER_RUN=8 CONNECTIONS=16 OBJECTS=10000 WORKERD_RUN=path/to/run.sh)
# Needs: cargo, curl; workerd is installed from npm on first use by shared/bench/workerd/run.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=${SECONDS_PER_RUN:-8}
conns=${CONNECTIONS:-16}
objects=${OBJECTS:-10000}
workerd_run=${WORKERD_RUN:-$root/../shared/bench/workerd/run.sh}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

echo "building dohost and the load generator (release)..." >&2
cargo build --release -q -p dohost -p dohost-bench
./target/release/dohost build examples/counter >&2

load() { # label url objects
  ./target/release/loadgen --label "$1" --url "$2" --objects "$3" --connections "$conns" --seconds "$secs" | tee -a "$work/results" | grep -v '^RESULT' >&2
}

wait_http() { # url
  for _ in $(seq 1 200); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "server at $1 did not answer" >&2; return 1
}

start_dohost() { # config data
  ./target/release/dohost serve --config "$1" --data "$2" --listen 127.0.0.1:8787 2>"$work/dohost.log" &
  pids+=($!)
  wait_http "http://127.0.0.1:8787/COUNTER/warmup/" || wait_http "http://127.0.0.1:8787/"
}

stop_last() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

# dohost with the seed's worker in front (forwards everything to "my-counter").
start_dohost examples/counter/dohost.toml "$work/dohost-worker"
load dohost-worker-hot "http://127.0.0.1:8787/" 1
stop_last

# dohost with its default router: /COUNTER/<name>/.
cat > "$work/router.toml" <<TOML
[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"
component = "$root/examples/counter/counter"
TOML
start_dohost "$work/router.toml" "$work/dohost-router"
load dohost-hot "http://127.0.0.1:8787/COUNTER/my-counter/" 1
load dohost-random "http://127.0.0.1:8787/COUNTER/o{}/" "$objects"
stop_last

if [ -x "$workerd_run" ]; then
  wpid=$("$workerd_run" 8788 "$work/workerd")
  pids+=("$wpid")
  load workerd-hot "http://127.0.0.1:8788/my-counter" 1
  load workerd-random "http://127.0.0.1:8788/o{}" "$objects"
  kill "$wpid" 2>/dev/null || true
else
  echo "workerd runner not found at $workerd_run; set WORKERD_RUN to compare" >&2
fi

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB; $conns connections, ${secs}s per run"
awk '
  /^RESULT/ { rps[$2]=$3; p50[$2]=$4; p99[$2]=$5; err[$2]=$6; order[n++]=$2 }
  END {
    printf "| run | req/s | p50 ms | p99 ms | errors | vs workerd |\n|---|---:|---:|---:|---:|---:|\n"
    for (i = 0; i < n; i++) {
      k = order[i]; peer = (k ~ /random/) ? "workerd-random" : "workerd-hot"
      ratio = (k !~ /^workerd/ && rps[peer] > 0) ? sprintf("%.1fx", rps[k] / rps[peer]) : "-"
      printf "| %s | %d | %s | %s | %s | %s |\n", k, rps[k], p50[k], p99[k], err[k], ratio
    }
  }' "$work/results"
