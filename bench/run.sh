#!/usr/bin/env bash
# Side-by-side benchmark: dohost (release) vs workerd on the same machine, same client.
#   (a) one hot counter object, (b) 10,000 counter objects chosen at random (a durable put each);
#   (c) /sql on one object for $SQL_SECONDS (60 by default: the table grows by a row per request, so
#   its rate is printed every 10 s against the table's size), (d) /sql on 1,000 objects chosen at random
#   (an INSERT and a COUNT(*) each);
#   (e) RPC: one object calls ping() on another 100 times per request (one connection: round trips
#   are sequential), a worker calls ping() on 100 objects per request, one after another and all at
#   once (Promise.all), and a hot object awaits a local HTTP service (bench/src/upstream.rs) in each
#   request; in Rust (bench/guests) and in JavaScript (bench/js/rpc.js, the file workerd runs);
#   (f) JavaScript: workerd's own Counter (bench/js/counter.js) built for dohost, one hot object through its
#   worker and the default router, and $JS_OBJECTS objects at random, beside the Rust counter and workerd;
#   (g) WebSockets: one room (bench/js/room.js, the file workerd runs) with 1 sender and 100 receivers,
#   messages delivered per second, and the server's memory for $IDLE_SOCKETS idle sockets (opened after
#   500 others, so the count is what each socket adds; 4,000 by default: workerd, at two descriptors
#   per socket, stops with "Too many open files" before 10,000 under a 20,000-descriptor limit).
#   (h) live idle objects (ONLY=objects): $LIVE_OBJECTS counters (10,000) touched once each and left idle,
#   then $MANY_OBJECTS (100,000): the server's resident memory and memory mappings per object
#   (bench/src/objects.rs), dohost's Rust counter and workerd's; and activation p50 on reused slots, Rust
#   and JavaScript (the activation bench). The 100,000 need vm.max_map_count above ~620,000.
#   (i) Python: the Python counter (examples/python/counter, one component for its Counter and its
#   worker), one hot object through its worker and the default router, and $PY_OBJECTS objects at
#   random, beside the Rust counter and workerd (ONLY=python).
# Every dohost response is durable (the output gate waits for the fsync'd commit). A run over several
# objects first sends each object one request, on both servers, so it measures live objects rather
# than their first activations.
# Usage: bench/run.sh            (env: SECONDS_PER_RUN=8 SQL_SECONDS=60 CONNECTIONS=16 OBJECTS=10000 SQL_OBJECTS=1000 JS_OBJECTS=2000 PY_OBJECTS=200
#                                 IDLE_SOCKETS=4000
#                                 ONLY=kv|sql|rpc|js|python|ws|objects to run only (a)-(b), (c)-(d), (e), (a),(b),(f),
#                                 (a),(b),(i), (g) or (h); several with commas, e.g. ONLY=js,python,
#                                 WORKERD_RUN=path/to/run.sh)
# Needs: cargo, curl, npm; workerd is installed from npm on first use by bench/workerd/run.sh.
set -euo pipefail
# workerd takes two descriptors per idle WebSocket: raise the limit where
# allowed (IDLE_SOCKETS below fits a limit of 20,000 either way).
ulimit -n 65536 2>/dev/null || true
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# The binaries cargo builds below: under CARGO_TARGET_DIR when it is set.
release=${CARGO_TARGET_DIR:-$root/target}/release
secs=${SECONDS_PER_RUN:-8}
sql_secs=${SQL_SECONDS:-60}
conns=${CONNECTIONS:-16}
objects=${OBJECTS:-10000}
sql_objects=${SQL_OBJECTS:-1000}
js_objects=${JS_OBJECTS:-2000}
py_objects=${PY_OBJECTS:-200}
idle_sockets=${IDLE_SOCKETS:-4000}
only=${ONLY:-}
for part in ${only//,/ }; do
  case "$part" in
    kv | sql | rpc | js | python | ws | objects) ;;
    *) echo "ONLY=$only: expected kv, sql, rpc, js, python, ws or objects, or several with commas (or unset for every run)" >&2; exit 2 ;;
  esac
done
want() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }
want_kv() { want kv || want js || want python; }
want_js() { want js; }
want_python() { want python; }
want_sql() { want sql; }
want_rpc() { want rpc; }
want_ws() { want ws; }
workerd_run=${WORKERD_RUN:-$root/bench/workerd/run.sh}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

echo "building dohost and the load generator (release)..." >&2
cargo build --release -q -p dohost -p dohost-bench
"$release"/dohost build examples/counter >&2
"$release"/dohost build bench/guests >&2

load() { # label url objects [connections]: with several objects, each gets one request first (not counted)
  local touch=()
  [ "$3" -gt 1 ] && touch=(--touch-first)
  "$release"/loadgen --label "$1" --url "$2" --objects "$3" --connections "${4:-$conns}" --seconds "$secs" "${touch[@]}" \
    | tee -a "$work/results" | grep -v '^RESULT' >&2
}

load_curve() { # label url: one object for $sql_secs, its rate every 10 s (CURVE lines)
  "$release"/loadgen --label "$1" --url "$2" --objects 1 --connections "$conns" --seconds "$sql_secs" --every 10 \
    | tee -a "$work/results" | grep -v '^RESULT\|^CURVE' >&2
}

wait_http() { # url
  # Up to 60 s: a JavaScript component takes seconds to compile on first start.
  for _ in $(seq 1 1200); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "server at $1 did not answer" >&2; return 1
}

start_dohost() { # config data [ready-url]
  "$release"/dohost serve --config "$1" --data "$2" --listen 127.0.0.1:8787 2>"$work/dohost.log" &
  pids+=($!)
  if [ -n "${3:-}" ]; then wait_http "$3"; else
    wait_http "http://127.0.0.1:8787/COUNTER/warmup/" || wait_http "http://127.0.0.1:8787/"; fi
}

stop_last() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

# dohost with the counter example's worker in front (forwards everything to "my-counter").
if want_kv; then
  start_dohost examples/counter/dohost.toml "$work/dohost-worker"
  load dohost-worker-hot "http://127.0.0.1:8787/" 1
  stop_last
fi

# A configuration with only the binding COUNTER (class Counter) to component $2, written to $1:
# dohost's default router serves /COUNTER/<name>/.
router_config() {
  cat > "$1" <<TOML
[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"
component = "$2"
TOML
}

# dohost with its default router: /COUNTER/<name>/.
router_config "$work/router.toml" "$root/examples/counter/counter"
if want_kv || want_sql; then
start_dohost "$work/router.toml" "$work/dohost-router"
if want_kv; then
  load dohost-hot "http://127.0.0.1:8787/COUNTER/my-counter/" 1
  load dohost-random "http://127.0.0.1:8787/COUNTER/o{}/" "$objects"
fi
if want_sql; then
  load_curve dohost-sql-hot "http://127.0.0.1:8787/COUNTER/my-counter/sql"
  load dohost-sql-random "http://127.0.0.1:8787/COUNTER/s{}/sql" "$sql_objects"
fi
stop_last
fi

rpc_loads() { # prefix base
  load "$1-rpc-pingpong" "$2/pingpong/a?peer=b&n=100" 1 1
  load "$1-rpc-fanout" "$2/fanout/f?n=100" 1
  load "$1-rpc-fanout-parallel" "$2/fanout-parallel/p?n=100" 1
  load "$1-upstream-hot" "$2/upstream/hot" 1
}
# The JavaScript counter: workerd's Counter, built for dohost.
if want_js; then
  "$release"/dohost build bench/js >&2
  wasm=$(ls -t bench/js/node_modules/.cache/dohost/out/durable-object-counter-*.wasm | head -1)
  echo "JavaScript counter component: $(stat -c %s "$wasm") bytes ($wasm)" | tee "$work/js-size" >&2
  start_dohost bench/js/dohost.toml "$work/dohost-js-worker" "http://127.0.0.1:8787/warmup"
  load js-worker-hot "http://127.0.0.1:8787/my-counter" 1
  stop_last
  sed '/^main = /d' bench/js/dohost.toml | sed "s|counter.js|$root/bench/js/counter.js|" >"$work/js-router.toml"
  start_dohost "$work/js-router.toml" "$work/dohost-js-router" "http://127.0.0.1:8787/COUNTER/warmup/"
  load js-hot "http://127.0.0.1:8787/COUNTER/my-counter/" 1
  load js-random "http://127.0.0.1:8787/COUNTER/j{}/" "$js_objects"
  stop_last
fi

# The Python counter: one component serves its Counter and its worker (which forwards everything to
# "my-counter"); its build tools go into examples/python/.dohost on the first build.
if want_python; then
  "$release"/dohost build examples/python/counter >&2
  wasm=$(ls -t examples/python/.dohost/python/out/*.wasm | head -1)
  echo "Python counter component: $(stat -c %s "$wasm") bytes ($wasm)" | tee "$work/py-size" >&2
  start_dohost examples/python/counter/dohost.toml "$work/dohost-py-worker" "http://127.0.0.1:8787/"
  load python-worker-hot "http://127.0.0.1:8787/" 1
  stop_last
  router_config "$work/py-router.toml" "$root/examples/python/counter/counter.py"
  start_dohost "$work/py-router.toml" "$work/dohost-py-router" "http://127.0.0.1:8787/COUNTER/warmup/"
  load python-hot "http://127.0.0.1:8787/COUNTER/my-counter/" 1
  load python-random "http://127.0.0.1:8787/COUNTER/p{}/" "$py_objects"
  stop_last
fi

if want_rpc; then
  # The local HTTP service the upstream runs' objects fetch from.
  "$release"/upstream --listen 127.0.0.1:8790 2>"$work/upstream.log" &
  pids+=($!)
  wait_http "http://127.0.0.1:8790/"
  start_dohost bench/guests/dohost.toml "$work/dohost-rpc" "http://127.0.0.1:8787/pingpong/warmup?n=1"
  rpc_loads dohost "http://127.0.0.1:8787"
  stop_last
  "$release"/dohost build bench/js/rpc.toml >&2
  start_dohost bench/js/rpc.toml "$work/dohost-js-rpc" "http://127.0.0.1:8787/pingpong/warmup?n=1"
  rpc_loads js "http://127.0.0.1:8787"
  stop_last
  if [ -x "$workerd_run" ]; then
    ipid=$("$workerd_run" 8789 "$work/workerd-install") # installs workerd on first use
    kill "$ipid" 2>/dev/null || true
    wpid=$(bench/workerd/run-module.sh rpc.js Peer PEER "/pingpong/warmup?n=1" 8788 "$work/workerd-rpc")
    pids+=("$wpid")
    rpc_loads workerd "http://127.0.0.1:8788"
    kill "$wpid" 2>/dev/null || true
  fi
fi

ws_loads() { # prefix port pid
  "$release"/wsload broadcast --label "$1-ws-broadcast" --url "ws://127.0.0.1:$2/rooms/b/websocket" \
    --receivers 100 --seconds "$secs" | tee -a "$work/results" | grep -v '^RESULT' >&2 || true
  "$release"/wsload idle --label "$1-ws-idle" --url "ws://127.0.0.1:$2/rooms/idle/websocket" \
    --sockets "$idle_sockets" --warm 500 --pid "$3" >>"$work/memory" || true
}
if want_ws; then
  "$release"/dohost build bench/js/room.toml >&2
  start_dohost bench/js/room.toml "$work/dohost-ws" "http://127.0.0.1:8787/rooms/warmup"
  ws_loads dohost 8787 "${pids[-1]}"
  stop_last
  if [ -x "$workerd_run" ]; then
    ipid=$("$workerd_run" 8789 "$work/workerd-install") # installs workerd on first use
    kill "$ipid" 2>/dev/null || true
    wpid=$(bench/workerd/run-module.sh room.js Room ROOM /rooms/warmup 8788 "$work/workerd-ws")
    pids+=("$wpid")
    ws_loads workerd 8788 "$wpid"
    kill "$wpid" 2>/dev/null || true
  fi
fi

# ---- (h) live idle objects: memory and mappings per object, activation on reused slots ----
want_objects() { want objects; }
if want_objects; then
  live_objects=${LIVE_OBJECTS:-10000}
  many_objects=${MANY_OBJECTS:-100000}
  # Every object stays live: no idle timeout within the run, and a memory budget that does not
  # evict (it counts each instance's linear memory, 1.06 MiB for the Rust counter, not what is
  # resident).
  router_config "$work/objects.toml" "$root/examples/counter/counter"
  cat >> "$work/objects.toml" <<TOML
[limits]
max_live_objects = $((many_objects + 1000))
idle_timeout_ms = 3600000
total_memory_bytes = $((many_objects * 2 * 1048576 + 1073741824))
TOML
  objects_at() { # label url pid counts
    "$release"/objects --label "$1" --url "$2" --pid "$3" --at "$4" | tee -a "$work/objects" | grep -v '^RESULT' >&2 || true
  }
  if "$release"/dohost serve --config "$work/objects.toml" --data "$work/objects-check" --listen 127.0.0.1:0 2>"$work/objects-check.log" & cpid=$!; sleep 3; kill -0 "$cpid" 2>/dev/null; then
    kill "$cpid"; wait "$cpid" 2>/dev/null || true
    start_dohost "$work/objects.toml" "$work/dohost-objects"
    objects_at dohost-objects "http://127.0.0.1:8787/COUNTER/o{}/" "${pids[-1]}" "$live_objects,$many_objects"
    stop_last
  else
    echo "dohost refuses $many_objects live objects here: $(grep -m1 error "$work/objects-check.log")" >&2
    sed -i "s/^max_live_objects = .*/max_live_objects = $((live_objects + 1000))/" "$work/objects.toml"
    start_dohost "$work/objects.toml" "$work/dohost-objects"
    objects_at dohost-objects "http://127.0.0.1:8787/COUNTER/o{}/" "${pids[-1]}" "$live_objects"
    stop_last
  fi
  if [ -x "$workerd_run" ]; then
    wpid=$("$workerd_run" 8788 "$work/workerd-objects")
    pids+=("$wpid")
    # workerd makes objects at 36-83 a second here: 100,000 would take most of an hour, so it
    # is measured at $live_objects unless WORKERD_MANY=1.
    objects_at workerd-objects "http://127.0.0.1:8788/o{}" "$wpid" "$live_objects${WORKERD_MANY:+,$many_objects}"
    kill "$wpid" 2>/dev/null || true
  fi
  ONLY=reused OBJECTS=1000 cargo bench -q -p dohost-bench --bench activation 2>/dev/null | grep -E '^\|' >"$work/activation" || true
fi
# ---- end of (h) ----

if ! [ -x "$workerd_run" ]; then
  echo "workerd runner not found at $workerd_run; set WORKERD_RUN to compare" >&2
elif want_kv || want_sql; then
  wpid=$("$workerd_run" 8788 "$work/workerd")
  pids+=("$wpid")
  if want_kv; then
    load workerd-hot "http://127.0.0.1:8788/my-counter" 1
    load workerd-random "http://127.0.0.1:8788/o{}" "$objects"
  fi
  if want_js; then
    load workerd-js-random "http://127.0.0.1:8788/j{}" "$js_objects"
  fi
  if want_python; then
    load workerd-python-random "http://127.0.0.1:8788/p{}" "$py_objects"
  fi
  if want_sql; then
    load_curve workerd-sql-hot "http://127.0.0.1:8788/my-counter/sql"
    load workerd-sql-random "http://127.0.0.1:8788/s{}/sql" "$sql_objects"
  fi
  kill "$wpid" 2>/dev/null || true
fi

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB; $conns connections, ${secs}s per run; random: $objects objects (put), $sql_objects objects (sql), $js_objects objects (js), $py_objects objects (python)"
[ -f "$work/js-size" ] && cat "$work/js-size"
[ -f "$work/py-size" ] && cat "$work/py-size"
if [ -s "$work/results" ]; then # ONLY=objects has no load runs
awk '
  /^RESULT/ { rps[$2]=$3; p50[$2]=$4; p99[$2]=$5; err[$2]=$6; order[n++]=$2 }
  END {
    printf "| run | req/s | p50 ms | p99 ms | errors | vs workerd |\n|---|---:|---:|---:|---:|---:|\n"
    for (i = 0; i < n; i++) {
      # dohost-worker-hot and dohost-hot compare with workerd-hot, dohost-sql-random with workerd-sql-random, ...
      # js-hot and python-hot with workerd-hot, js-random with workerd-js-random and python-random
      # with workerd-python-random (the same number of objects).
      k = order[i]; peer = k; sub(/^(dohost|js|python)-(worker-)?/, "workerd-", peer)
      if (k == "js-random" || k == "python-random") peer = "workerd-" k
      ratio = (k !~ /^workerd/ && rps[peer] > 0) ? sprintf("%.1fx", rps[k] / rps[peer]) : "-"
      printf "| %s | %d | %s | %s | %s | %s |\n", k, rps[k], p50[k], p99[k], err[k], ratio
    }
  }' "$work/results"
fi
if [ -s "$work/results" ] && grep -q '^CURVE' "$work/results"; then
  echo
  echo "/sql on one object: req/s in each 10 s and the table's rows at its end (warm-up included)"
  awk '
    /^CURVE/ { t[$3]=1; rows[$2,$3]=$4; rps[$2,$3]=$5; if ($3 > max) max = $3 }
    END {
      printf "| s | dohost rows | dohost req/s | workerd rows | workerd req/s | ratio |\n|---:|---:|---:|---:|---:|---:|\n"
      for (s = 0; s <= max; s++) {
        if (!(s in t)) continue
        d = rps["dohost-sql-hot", s]; w = rps["workerd-sql-hot", s]
        printf "| %s | %d | %d | %d | %d | %s |\n", s, rows["dohost-sql-hot", s], d, rows["workerd-sql-hot", s], w, (w > 0 ? sprintf("%.1fx", d / w) : "-")
      }
    }' "$work/results"
fi
if [ -f "$work/objects" ]; then # (h)
  echo
  awk '/^RESULT/ { printf "%s: %d live idle objects, %.1f KiB resident (Pss %.1f KiB) and %.2f mappings each (server: %d MiB, %d mappings), %d errors\n", $2, $3, $6, $9, $7, $4 / 1024, $5, $8 }' "$work/objects"
  [ -s "$work/activation" ] && { echo; echo "activation (activation bench, 1,000 objects; reused slots, where the goals are set):"; cat "$work/activation"; }
fi
if [ -f "$work/memory" ]; then
  echo
  awk '{ printf "%s: %d idle WebSockets, %d bytes of server RSS each\n", $2, $4, $3 }' "$work/memory"
fi
