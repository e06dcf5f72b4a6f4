#!/usr/bin/env bash
# Cluster benchmark (docs/cluster.md): the Rust counter, one hot object and $OBJECTS objects at
# random (each touched once first), on
#   redb       one node, its state in redb (the default);
#   redb-base  the same, served by $BASE_BIN (a dohost binary of an earlier commit), when set:
#              single-node speed side by side with the commit before the storage backends;
#   pg-1       one node of a cluster, its state in PostgreSQL;
#   pg-3       three nodes of one cluster on this machine, the load spread over the three (one
#              load generator per node, $CONNECTIONS / 3 connections each; the rate is their sum,
#              p50/p99 the highest of the three).
# PostgreSQL is a throwaway server started here (initdb, pg_ctl; fsync on, synchronous_commit on).
# Every dohost response waits for its durable commit.
# Usage: bench/cluster.sh   (env: SECONDS_PER_RUN=8 CONNECTIONS=16 OBJECTS=10000 BASE_BIN=path/to/dohost)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=${SECONDS_PER_RUN:-8}
conns=${CONNECTIONS:-16}
objects=${OBJECTS:-10000}
base_bin=${BASE_BIN:-}
work=$(mktemp -d)
chmod 755 "$work"
pids=()
pg_ctl_bin=""
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$pg_ctl_bin" ] && as_pg "$pg_ctl_bin" -D "$work/pg" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "building dohost and the load generator (release)..." >&2
cargo build --release -q -p dohost -p dohost-bench
./target/release/dohost build examples/counter >&2

# PostgreSQL: the newest server binaries installed.
bin=$(dirname "$(readlink -f "$(command -v initdb || ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")")
pg_ctl_bin="$bin/pg_ctl"
[ "$(id -u)" = 0 ] && chown postgres: "$work"
as_pg "$bin/initdb" -D "$work/pg" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
as_pg "$pg_ctl_bin" -D "$work/pg" -l "$work/pg.log" -w \
  -o "-p 5499 -k $work -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB" start >/dev/null
database() { # name: a fresh database
  as_pg "$bin/createdb" -h 127.0.0.1 -p 5499 -U postgres "$1"
  echo "postgres://postgres@127.0.0.1:5499/$1"
}
psql_version=$(as_pg "$bin/postgres" --version)

config() { # file [cluster-table]
  cat >"$1" <<EOF
[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"
component = "$root/examples/counter/counter"
${2:-}
EOF
}
cluster_table() { # database node port
  printf '[cluster]\ndatabase = "%s"\nnode = "%s"\nadvertise = "127.0.0.1:%s"\nsecret = "the benchmark cluster secret"\n' "$1" "$2" "$3"
}

wait_http() { # url
  for _ in $(seq 1 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; return 1
}

start() { # binary config data port
  "$1" serve --config "$2" --data "$3" --listen "127.0.0.1:$4" 2>"$3.log" &
  pids+=($!)
  wait_http "http://127.0.0.1:$4/COUNTER/warmup/"
}

stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; pids=(); }

load() { # label objects connections url...: one load generator per url, at once; one RESULT line
  local label=$1 n=$2 c=$3; shift 3
  local touch=() outs=()
  [ "$n" -gt 1 ] && touch=(--touch-first)
  local i=0
  for url in "$@"; do
    ./target/release/loadgen --label "$label" --url "$url" --objects "$n" --connections "$c" --seconds "$secs" "${touch[@]}" \
      >"$work/load.$i" &
    outs+=($!); i=$((i + 1))
  done
  for p in "${outs[@]}"; do wait "$p"; done
  cat "$work"/load.* | grep '^RESULT' | awk -v label="$label" '
    { rate += $3; if ($4 > p50) p50 = $4; if ($5 > p99) p99 = $5; errors += $6 }
    END { printf "RESULT %s %.0f %.2f %.2f %d\n", label, rate, p50, p99, errors }' | tee -a "$work/results" >&2
  rm -f "$work"/load.*
}

run_single() { # label binary config
  start "$2" "$3" "$work/$1" 8801
  load "$1-hot" 1 "$conns" "http://127.0.0.1:8801/COUNTER/hot/"
  load "$1-random" "$objects" "$conns" "http://127.0.0.1:8801/COUNTER/o{}/"
  stop_all
}

config "$work/redb.toml"
run_single redb ./target/release/dohost "$work/redb.toml"
if [ -n "$base_bin" ]; then
  run_single redb-base "$base_bin" "$work/redb.toml"
  run_single redb-again ./target/release/dohost "$work/redb.toml"
fi

config "$work/pg1.toml" "$(cluster_table "$(database one)" n1 9301)"
run_single pg-1 ./target/release/dohost "$work/pg1.toml"

db=$(database three)
for n in 1 2 3; do
  config "$work/pg3-n$n.toml" "$(cluster_table "$db" "n$n" "930$((n + 1))")"
  start ./target/release/dohost "$work/pg3-n$n.toml" "$work/pg3-n$n" "881$n"
done
urls_hot=() urls_random=()
for n in 1 2 3; do
  urls_hot+=("http://127.0.0.1:881$n/COUNTER/hot/")
  urls_random+=("http://127.0.0.1:881$n/COUNTER/o{}/")
done
per=$(((conns + 2) / 3))
load pg-3-hot 1 "$per" "${urls_hot[@]}"
load pg-3-random "$objects" "$per" "${urls_random[@]}"
stop_all

echo
echo "$(date -u +%Y-%m-%d) on $(nproc) cores, $psql_version; ${secs}s per run, $conns connections, $objects objects"
printf '%-18s %10s %9s %9s %7s\n' run req/s p50_ms p99_ms errors
awk '/^RESULT/ { printf "%-18s %10s %9s %9s %7s\n", $2, $3, $4, $5, $6 }' "$work/results"
