#!/usr/bin/env bash
# Ruby Sidekiq 6.4.1 and Psychiq on the same workloads, alternating, each server started and
# measured by the same harness (psychiq-load; --ruby starts `sidekiq -r
# bench/sidekiq_workers.rb`), on a private redis-server (127.0.0.1:6399, started and stopped
# here) so Ruby can use bare keys without touching anyone's data. Workloads: 100,000 no-op
# jobs (and Psychiq's basic fetch on them), 1 KB orders read into structs, and 90% no-op /
# 10% 50 ms; enqueue rates (bulk, single) of both, back to back. Prints every run, then
# medians and ratios.
# Usage: bench/compare.sh [JOBS] [CONCURRENCY] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-100000}; concurrency=${2:-25}; runs=${3:-3}
port=6399
. bench/private_redis.sh
cargo build --release --bin psychiq --bin psychiq-load -q
export REDIS_URL=redis://127.0.0.1:$port
load=./target/release/psychiq-load
out=$(mktemp)
for run in $(seq "$runs"); do
  echo "--- run $run" | tee -a "$out"
  redis-cli -p $port flushall >/dev/null
  DRAIN=0 NAMESPACE="" ruby bench/sidekiq_drain.rb "$jobs" "$concurrency" 2>/dev/null | tee -a "$out"
  # Psychiq's enqueue rates right after Ruby's: loopback latency drifts within minutes here.
  redis-cli -p $port flushall >/dev/null
  $load --enqueue-only --jobs "$jobs" --singles 10000 2>/dev/null | tee -a "$out"
  for workload in noop ingest mixed; do
    quick=(); [ "$workload" = noop ] || quick=(--idle-secs 1 --trickle 10 --singles 320)
    redis-cli -p $port flushall >/dev/null
    $load --ruby --jobs "$jobs" -c "$concurrency" --workload $workload "${quick[@]}" 2>/dev/null | tee -a "$out"
    redis-cli -p $port flushall >/dev/null
    $load --jobs "$jobs" -c "$concurrency" --workload $workload "${quick[@]}" 2>/dev/null | tee -a "$out"
  done
  redis-cli -p $port flushall >/dev/null
  $load --jobs "$jobs" -c "$concurrency" --server-flags "--fetch basic" --idle-secs 1 --trickle 10 --singles 320 2>/dev/null | tee -a "$out"
done
python3 bench/summary.py < "$out"
rm -f "$out"
