#!/usr/bin/env bash
# What status tracking, results and the event stream cost a job (issue 27): the load
# example draining 100,000 no-op jobs at -c 25, once per mode, alternating, ROUNDS times,
# with the Redis CPU each run took (INFO cpu, enqueue and drain together, not the cleanup)
# per job. The private Redis is flushed after each run.
#
#   cargo build --release --example load --features cli
#   REDIS_PORT=6399 ROUNDS=3 bench/lifecycle.sh [OLD_LOAD_BINARY]
#
# OLD_LOAD_BINARY (a build of an earlier commit) is run too, as "before".
set -euo pipefail
port=${REDIS_PORT:-6399}
rounds=${ROUNDS:-3}
jobs=100000
new=target/release/examples/load
old=${1:-}
redis-cli -p "$port" ping >/dev/null || {
  echo "start a private Redis first: redis-server --port $port --save '' --appendonly no --daemonize yes" >&2
  exit 1
}
cpu() { redis-cli -p "$port" info cpu | awk -F: '/used_cpu_(user|sys):/ {s += $2} END {printf "%.6f", s}'; }
run() {
  local label=$1 binary=$2; shift 2
  local before after line
  before=$(cpu)
  local keep=--keep
  [ "$binary" = "$old" ] && keep=  # an earlier build may not know --keep; it cleans up itself
  line=$(RUST_LOG=warn "$binary" --jobs "$jobs" -c 25 --redis-url "redis://127.0.0.1:$port" $keep "$@" 2>/dev/null | grep '^drain' | grep -o '[0-9]* jobs/s$')
  after=$(cpu)
  redis-cli -p "$port" flushall >/dev/null
  printf '%-22s drain %8s   Redis CPU %5.1f µs/job\n' "$label" "${line% jobs/s}" \
    "$(echo "($after - $before) * 1000000 / $jobs" | bc -l)"
}
for _ in $(seq "$rounds"); do
  [ -n "$old" ] && run "before (everything off)" "$old"
  run "off" "$new"
  run "--track" "$new" --track
  run "--results" "$new" --results
  run "--events" "$new" --events
  run "--track --events" "$new" --track --events
  run "--workflow" "$new" --workflow
done
