#!/usr/bin/env bash
# Drains the same no-op workload with Ruby Sidekiq 6.4.1 and Psychiq (basic BRPOP fetch and
# crash-safe reliable fetch), alternating, on a
# private redis-server (127.0.0.1:6399, started and stopped here) so Ruby can use bare keys
# without touching anyone's data. Usage: bench/compare.sh [JOBS] [CONCURRENCY] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-100000}; concurrency=${2:-25}; runs=${3:-3}
port=6399
redis-server --daemonize yes --bind 127.0.0.1 --port $port --save "" --appendonly no \
  --dir /tmp --logfile /tmp/psychiq-bench-redis.log --pidfile /tmp/psychiq-bench-redis.pid
trap 'redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true' EXIT
for _ in $(seq 50); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
cargo build --release --example load -q
export REDIS_URL=redis://127.0.0.1:$port
for run in $(seq "$runs"); do
  echo "--- run $run"
  redis-cli -p $port flushall >/dev/null
  NAMESPACE="" ruby bench/sidekiq_drain.rb "$jobs" "$concurrency" 2>/dev/null
  for fetch in basic reliable; do
    redis-cli -p $port flushall >/dev/null
    ./target/release/examples/load --jobs "$jobs" -c "$concurrency" --fetch $fetch
  done
done
