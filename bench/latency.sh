#!/usr/bin/env bash
# Sidekiq's published setup, reproduced here: N no-op jobs (500,000) at concurrency 30, with
# Redis behind a proxy that delays each direction by DELAY_US (500 µs: a 1 ms round trip;
# this kernel has no netem, so examples/latency_proxy.rs does it). Measures the round trip
# through the proxy with redis-cli --latency, then drains with Psychiq, Sidekiq 8.0.10 (from
# ../shared/peers, when there) and Debian's Sidekiq 6.4.1, each measured by psychiq-load, on a
# private redis-server (127.0.0.1:6399, started and stopped here; the proxy listens on 6400).
# Usage: bench/latency.sh [JOBS] [CONCURRENCY] [DELAY_US]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-500000}; concurrency=${2:-30}; delay=${3:-500}
port=6399
. bench/private_redis.sh
cargo build --release --bin psychiq --bin psychiq-load --example latency_proxy -q
target/release/examples/latency_proxy 127.0.0.1:6400 127.0.0.1:$port "$delay" 2>/dev/null &
proxy=$!
trap 'kill $proxy 2>/dev/null || true; redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true' EXIT
for _ in $(seq 50); do redis-cli -p 6400 ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "round trip, straight (ms; min max avg samples):   $(redis-cli -p $port --latency -i 5)"
echo "round trip, through the proxy:                    $(redis-cli -p 6400 --latency -i 5)"
export REDIS_URL=redis://127.0.0.1:6400
run() {
  redis-cli -p $port flushall >/dev/null
  echo "--- $1"
  shift
  target/release/psychiq-load --jobs "$jobs" -c "$concurrency" --idle-secs 1 --trickle 10 \
    --singles 320 "$@" 2>/dev/null | grep -E "^  (drain [0-9]|server CPU|Redis CPU per job  |Redis commands|server peak)"
}
run psychiq
[ -x ../shared/peers/ruby-sidekiq ] &&
  run "sidekiq 8.0.10" --ruby --ruby-cmd "../shared/peers/ruby-sidekiq 8 --server"
run "sidekiq 6.4.1" --ruby
