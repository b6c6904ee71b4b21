#!/usr/bin/env bash
# What each of this round's capabilities costs a job that uses it, against the same run with
# it off: examples/load (client and server in one process) pushes JOBS no-op jobs in bulk and
# drains them at -c 25, once plain and once per flag, alternating, ROUNDS times, on a private
# redis-server (127.0.0.1:6399, started and stopped here). Reports the drain rate and the
# process's CPU per job (push and drain together, from /usr/bin/time), medians.
# Usage: bench/costs.sh [JOBS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-100000}; rounds=${2:-3}
port=6399
. bench/private_redis.sh
cargo build --release --example load --features cli -q
flags=("" "--track" "--results" "--events" "--priority 5" "--groups 1000" "--groups 100000"
  "--workflow" "--encrypt")
out=$(mktemp)
for round in $(seq "$rounds"); do
  for flag in "${flags[@]}"; do
    redis-cli -p $port flushall >/dev/null
    # shellcheck disable=SC2086
    /usr/bin/time -f "TIME %U %S" target/release/examples/load --jobs "$jobs" -c 25 \
      --redis-url redis://127.0.0.1:$port $flag > "$out.run" 2>&1 || { cat "$out.run"; exit 1; }
    rate=$(sed -n 's/^drain .* = \([0-9]*\) jobs\/s$/\1/p' "$out.run")
    cpu=$(awk '/^TIME/ { print ($2 + $3) * 1e6 / '"$jobs"' }' "$out.run")
    echo "${flag:-plain}|$rate|$cpu" | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import statistics, sys
rows = [l.strip().split("|") for l in open(sys.argv[1]) if l.strip()]
names = list(dict.fromkeys(r[0] for r in rows))
med = lambda n, i: statistics.median(float(r[i]) for r in rows if r[0] == n)
base_rate, base_cpu = med("plain", 1), med("plain", 2)
print("\n| jobs carry | drain jobs/s | vs plain | process CPU µs/job (push + drain) | added |")
print("|---|---|---|---|---|")
for n in names:
    rate, cpu = med(n, 1), med(n, 2)
    print(f"| {n} | {rate:,.0f} | {rate / base_rate:.2f}× | {cpu:.1f} | {cpu - base_cpu:+.1f} |")
PY
rm -f "$out" "$out.run"
