#!/usr/bin/env bash
# Start workerd serving one module of bench/js whose default export is the worker and which exports
# one Durable Object class, with in-memory storage and fetch() allowed to loopback (the local HTTP
# service on 127.0.0.1:8790): bench/js/rpc.js (class Peer, binding PEER) and bench/js/room.js
# (class Room, binding ROOM).
# Usage: run-module.sh MODULE CLASS BINDING READY_PATH [PORT] [DATA_DIR]
#   e.g. run-module.sh rpc.js Peer PEER "/pingpong/warmup?n=1" 8788    (defaults: 8788, a fresh temp dir)
# Uses the workerd that bench/workerd/run.sh installs into $WORKERD_HOME
# (default ~/.cache/dohost-bench-workerd). Prints the server's pid once it answers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
module=$1
class=$2
binding=$3
ready=$4
port=${5:-8788}
data=${6:-$(mktemp -d)}
home=${WORKERD_HOME:-$HOME/.cache/dohost-bench-workerd}
workerd="$home/node_modules/.bin/workerd"
if [ ! -x "$workerd" ]; then
  echo "workerd is not installed at $workerd; run bench/workerd/run.sh once" >&2
  exit 1
fi
mkdir -p "$data"
data=$(cd "$data" && pwd)
cp "$here/../js/$module" "$data/$module"
cat > "$data/config.capnp" <<CAPNP
using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .mainWorker),
    (name = "internet", network = (allow = ["public", "local"])),
  ],
  sockets = [ ( name = "http", address = "127.0.0.1:$port", http = (), service = "main" ) ],
);
const mainWorker :Workerd.Worker = (
  modules = [ (name = "$module", esModule = embed "$module") ],
  compatibilityDate = "2025-01-01",
  durableObjectNamespaces = [ (className = "$class", uniqueKey = "$class-key") ],
  durableObjectStorage = (inMemory = void),
  bindings = [ (name = "$binding", durableObjectNamespace = "$class") ],
  globalOutbound = "internet",
);
CAPNP
"$workerd" serve "$data/config.capnp" >"$data/workerd.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$port$ready" >/dev/null 2>&1; then echo "$pid"; exit 0; fi
  sleep 0.1
done
echo "workerd did not answer on port $port; see $data/workerd.log" >&2
kill "$pid" 2>/dev/null || true
exit 1
