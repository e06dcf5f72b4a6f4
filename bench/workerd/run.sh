#!/usr/bin/env bash
# Start workerd with the reference Counter Durable Object (bench/js/counter.js, the same file
# dohost runs in the JavaScript runs), for side-by-side benchmarks.
# Usage: run.sh [PORT] [DATA_DIR]    (defaults: 8788, a fresh temp dir)
# Installs the npm package `workerd` into $WORKERD_HOME (default ~/.cache/dohost-bench-workerd) on first use.
# Prints the server's pid on stdout once it answers; stop it with `kill PID`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${1:-8788}
data=${2:-$(mktemp -d)}
home=${WORKERD_HOME:-$HOME/.cache/dohost-bench-workerd}
version=1.20261117.1
if [ ! -x "$home/node_modules/.bin/workerd" ]; then
  mkdir -p "$home"
  (cd "$home" && [ -f package.json ] || echo '{"private":true}' > "$home/package.json"
   cd "$home" && npm install --no-audit --no-fund "workerd@$version" >&2)
fi
mkdir -p "$data"
data=$(cd "$data" && pwd)
cfg="$data/config.capnp"
cp "$here/../js/counter.js" "$data/worker.js"
cat > "$cfg" <<CAPNP
using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .mainWorker),
    (name = "disk", disk = (path = "$data/store", writable = true)),
  ],
  sockets = [ ( name = "http", address = "127.0.0.1:$port", http = (), service = "main" ) ],
);
const mainWorker :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed "worker.js") ],
  compatibilityDate = "2025-01-01",
  durableObjectNamespaces = [ (className = "Counter", uniqueKey = "counter-key", enableSql = true) ],
  durableObjectStorage = (localDisk = "disk"),
  bindings = [ (name = "COUNTER", durableObjectNamespace = "Counter") ],
);
CAPNP
mkdir -p "$data/store"
"$home/node_modules/.bin/workerd" serve "$cfg" >"$data/workerd.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$port/warmup" >/dev/null 2>&1; then echo "$pid"; exit 0; fi
  sleep 0.1
done
echo "workerd did not answer on port $port; see $data/workerd.log" >&2
kill "$pid" 2>/dev/null || true
exit 1
