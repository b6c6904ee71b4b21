#!/usr/bin/env bash
# Drain jobs/s over 12 queues: one plain Redis (Sidekiq's layout), a Redis Cluster of one
# master, and one of three masters, all on this machine. Usage: bench/cluster.sh [JOBS] [RUNS]
# Needs redis-server and redis-cli; starts its own nodes on ports 7101 and 7111-7113 (and a
# plain Redis on 7121) and stops them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${1:-100000}
RUNS=${2:-3}
DIR=$(mktemp -d)
PORTS=(7101 7111 7112 7113 7121)
stop() {
  for p in "${PORTS[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
  rm -rf "$DIR"
}
trap stop EXIT

node() { # port [cluster]
  local args=(--port "$1" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR" --daemonize yes
              --logfile "$DIR/$1.log")
  [ "${2:-}" = cluster ] && args+=(--cluster-enabled yes --cluster-config-file "nodes-$1.conf")
  redis-server "${args[@]}"
  for _ in $(seq 50); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis-server on $1 did not start; see $DIR/$1.log" >&2; exit 1
}
ready() { # port
  for _ in $(seq 100); do
    redis-cli -p "$1" cluster info | grep -q cluster_state:ok && return; sleep 0.1
  done
  echo "the cluster on $1 is not ok" >&2; exit 1
}

cargo build --release --locked --features cli --example cluster_drain --bin psychiq >/dev/null
node 7121
node 7101 cluster
redis-cli -p 7101 cluster addslotsrange 0 16383 >/dev/null
ready 7101
for p in 7111 7112 7113; do node "$p" cluster; done
redis-cli --cluster create 127.0.0.1:7111 127.0.0.1:7112 127.0.0.1:7113 --cluster-yes >/dev/null
for p in 7111 7112 7113; do ready "$p"; done
sleep 1 # let every node learn the others' slots

for run in $(seq "$RUNS"); do
  echo "run $run"
  printf '  one Redis, Sidekiq layout:  '
  target/release/examples/cluster_drain redis://127.0.0.1:7121 "$JOBS" 12 25 7121
  printf '  cluster of 1 master:        '
  target/release/examples/cluster_drain redis+cluster://127.0.0.1:7101 "$JOBS" 12 25 7101
  printf '  cluster of 3 masters:       '
  target/release/examples/cluster_drain redis+cluster://127.0.0.1:7111,127.0.0.1:7112 "$JOBS" 12 25 7111,7112,7113
done
