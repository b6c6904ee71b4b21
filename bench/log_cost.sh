#!/usr/bin/env bash
# What the per-job log lines cost: psychiq-load drains JOBS no-op jobs with the server at
# RUST_LOG=warn and at its default level (a start and a done line per job, written to a
# file), alternating, ROUNDS times, on a private redis-server (127.0.0.1:6399, started and
# stopped here). With OTHER_PSYCHIQ (another build's binary) it runs that one too, in turn.
# Prints every run, then the median server CPU per job of each and the difference.
# Usage: bench/log_cost.sh [JOBS] [ROUNDS] [OTHER_PSYCHIQ]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-200000}; rounds=${2:-5}; other=${3:-}
port=6399
. bench/private_redis.sh
cargo build --release --bin psychiq --bin psychiq-load -q
bins=(target/release/psychiq); [ -n "$other" ] && bins+=("$other")
out=$(mktemp)
for round in $(seq "$rounds"); do
  for bin in "${bins[@]}"; do
    for log in warn default; do
      redis-cli -p $port flushall >/dev/null
      REDIS_URL=redis://127.0.0.1:$port target/release/psychiq-load --server "$bin" --jobs "$jobs" \
        --log $log --idle-secs 1 --trickle 10 --singles 320 2>/dev/null |
        awk -v bin="$bin" -v level="$log" '
          /^  drain [0-9]+ jobs at/ { rate = $(NF-3) }
          /^  server CPU per job/ { cpu = $(NF-1) }
          /^  Redis CPU per job  / { redis = $(NF-1) }
          END { printf "%s %s %s %s %s\n", bin, level, rate, cpu, redis }' | tee -a "$out"
    done
  done
done
python3 - "$out" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = lambda b, lg, i: statistics.median(float(r[i]) for r in rows if r[0] == b and r[1] == lg)
for b in dict.fromkeys(r[0] for r in rows):
    w, d = med(b, "warn", 3), med(b, "default", 3)
    print(f"{b}: server CPU per job, median: warn {w:.1f} µs, default {d:.1f} µs, lines cost {d - w:+.1f} µs; "
          f"drain {med(b, 'warn', 2):,.0f} vs {med(b, 'default', 2):,.0f} jobs/s; Redis CPU {med(b, 'warn', 4):.1f} vs {med(b, 'default', 4):.1f} µs")
PY
rm -f "$out"
