#!/usr/bin/env bash
# Scale on one machine, each against the single-queue case in the same run, on a private
# redis-server (127.0.0.1:6399, started and stopped here):
#   - 100,000 no-op jobs over 10,000 queues (10 each, weight 1 each) against one queue:
#     psychiq-load's drain and its enqueue-to-start latency on the idle server;
#   - 1,000,000 jobs scheduled to become due in the same second against 1,000,000 queued:
#     examples/load --due-in, the drain timed from that second, and the first job's delay;
#   - 100,000 groups (2 jobs each) against the same jobs ungrouped: examples/load --groups.
# Usage: bench/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
port=6399
. bench/private_redis.sh
cargo build --release --bin psychiq --bin psychiq-load -q
cargo build --release --example load --features cli -q
export REDIS_URL=redis://127.0.0.1:$port
for queues in 1 10000; do
  redis-cli -p $port flushall >/dev/null
  echo "--- 100,000 jobs over $queues queue(s)"
  target/release/psychiq-load --jobs 100000 --queues $queues --idle-secs 2 --trickle 100 --singles 320 2>/dev/null |
    grep -E "^  (drain [0-9]|server CPU|Redis CPU per job  |Redis commands|idle server: Redis|enqueue→start)"
done
for due in "" "--due-in 15"; do
  redis-cli -p $port flushall >/dev/null
  echo "--- 1,000,000 jobs ${due:-queued}"
  target/release/examples/load --jobs 1000000 -c 25 --redis-url "$REDIS_URL" $due
done
for groups in "" "--groups 100000"; do
  redis-cli -p $port flushall >/dev/null
  echo "--- 200,000 jobs ${groups:-ungrouped}"
  target/release/examples/load --jobs 200000 -c 25 --redis-url "$REDIS_URL" $groups
done
