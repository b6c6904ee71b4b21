#!/usr/bin/env python3
"""The panel: Psychiq beside the job systems a team would pick instead, in one run.

    bench/panel.py [--jobs 100000] [-c 25] [--runs 3] [--logs default,warn]
                   [--systems psychiq,sidekiq6,sidekiq8,bullmq,rusty-sidekiq,apalis]

Each system, in turn and in each round: a private redis-server (127.0.0.1:6399, started and
stopped here, flushed before every system), N no-op jobs pushed in bulk with the system's own
client, then drained at concurrency C by the system's own server in its recommended
production settings. Drain time is from the server's start (Psychiq and Sidekiq: from its
registration) to the last job; server CPU and peak RSS are the server process's (from /proc,
or from wait4 via /usr/bin/time); Redis CPU is `INFO cpu` across the drain. `--logs` runs
everything at each system's default log level (per-job lines where it logs them, written to a
file) and again with all at warn. Each Psychiq run also measures the Redis job floor (LPUSH +
RPOP + INCR a job, 1,000 a pipeline). Prints every run, then medians (min-max) and ratios.

Peers: Debian's Sidekiq 6.4.1 (`sidekiq`), Sidekiq 8.0.10 from ../shared/peers, BullMQ from npm
(bench/peers/bullmq, installed here with `npm ci`), rusty-sidekiq and apalis from crates.io
(bench/peers/rust, built here). A peer that is not on this machine is skipped, and said so.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 6399
URL = f"redis://127.0.0.1:{PORT}"
PEERS = os.path.join(ROOT, "..", "shared", "peers", "ruby-sidekiq")
RUST_PEERS = os.path.join(ROOT, "bench", "peers", "rust")
BULLMQ = os.path.join(ROOT, "bench", "peers", "bullmq")
LOAD = os.path.join(ROOT, "target", "release", "psychiq-load")
QUICK = ["--idle-secs", "1", "--trickle", "10", "--singles", "320"]


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def redis(*args):
    return sh(["redis-cli", "-p", str(PORT), *args])


def redis_cpu():
    info = redis("info", "cpu")
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def number(text, pattern):
    found = re.search(pattern, text)
    if not found:
        raise RuntimeError(f"no {pattern!r} in:\n{text}")
    return float(found.group(1).replace(",", ""))


def psychiq_load(n, c, log, extra=()):
    """Psychiq (or Ruby Sidekiq with --ruby) measured by psychiq-load; its report parsed."""
    out = sh([LOAD, "--jobs", str(n), "-c", str(c), "--log", log, *QUICK, *extra],
             cwd=ROOT, env={**os.environ, "REDIS_URL": URL})
    return {
        "jobs/s": number(out, r"drain \d+ jobs at -c \d+\s+([\d.]+) jobs/s"),
        "server µs": number(out, r"server CPU per job\s+([\d.]+) µs"),
        "redis µs": number(out, r"Redis CPU per job\s+([\d.]+) µs"),
        "rss MB": number(out, r"server peak RSS while draining\s+([\d.]+) MB"),
        "floor": number(out, r"Redis floor.*?\s([\d.]+) jobs/s"),
    }


def driver(cmd, n, c, log, logfile):
    """A peer's driver (`CMD push N`, then `CMD drain N C`), timed by /usr/bin/time."""
    env = {**os.environ, "REDIS_URL": URL, "LOG": log}
    sh([*cmd, "push", str(n)], env=env, cwd=ROOT)
    before = redis_cpu()
    with open(logfile, "w") as log_out:
        run = subprocess.run(["/usr/bin/time", "-f", "TIME %U %S %M", *cmd, "drain", str(n), str(c)],
                             env=env, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        log_out.write(run.stderr)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} drain failed ({run.returncode}):\n{run.stdout}\n{run.stderr[-2000:]}")
    after = redis_cpu()
    user, system, rss_kb = re.search(r"TIME ([\d.]+) ([\d.]+) (\d+)", run.stderr).groups()
    secs = number(run.stdout, r"drained \d+ jobs at -c \d+ in ([\d.]+) s")
    return {
        "jobs/s": n / secs,
        "server µs": (float(user) + float(system)) * 1e6 / n,
        "redis µs": (after - before) * 1e6 / n,
        "rss MB": int(rss_kb) / 1024,
    }


def systems(n, c, log, logfile):
    """name -> a function measuring it once, for the systems on this machine."""
    found = {
        "psychiq": lambda: psychiq_load(n, c, log),
        "sidekiq6": lambda: psychiq_load(n, c, log, ["--ruby"]),
    }
    if os.access(PEERS, os.X_OK):
        found["sidekiq8"] = lambda: psychiq_load(n, c, log, ["--ruby", "--ruby-cmd", f"{PEERS} 8 --server"])
    if os.path.isdir(os.path.join(BULLMQ, "node_modules")):
        found["bullmq"] = lambda: driver(["node", os.path.join(BULLMQ, "driver.mjs")], n, c, log, logfile)
    for name, binary in [("rusty-sidekiq", "rusty-sidekiq-peer"), ("apalis", "apalis-peer")]:
        path = os.path.join(RUST_PEERS, "target", "release", binary)
        if os.access(path, os.X_OK):
            found[name] = lambda path=path: driver([path], n, c, log, logfile)
    return found


def prepare(wanted):
    sh(["cargo", "build", "--release", "--bin", "psychiq", "--bin", "psychiq-load", "-q"], cwd=ROOT)
    if {"rusty-sidekiq", "apalis"} & wanted and os.path.isfile(os.path.join(RUST_PEERS, "Cargo.toml")):
        sh(["cargo", "build", "--release", "-q"], cwd=RUST_PEERS)
    if "bullmq" in wanted and shutil.which("npm") and not os.path.isdir(os.path.join(BULLMQ, "node_modules")):
        sh(["npm", "ci", "--silent"], cwd=BULLMQ)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("-c", "--concurrency", type=int, default=25)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--logs", default="default,warn")
    parser.add_argument("--systems", default="psychiq,sidekiq6,sidekiq8,bullmq,rusty-sidekiq,apalis")
    parser.add_argument("--apalis-jobs", type=int, default=5_000,
                        help="jobs for apalis: apalis-redis 1.0.0 cannot start on a backlog of 8,000 or more "
                             "(its fetch unpacks every due job into one Lua call)")
    args = parser.parse_args()
    wanted = args.systems.split(",")
    logs = args.logs.split(",")
    prepare(set(wanted))
    subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(PORT),
                    "--save", "", "--appendonly", "no", "--dir", "/tmp",
                    "--logfile", "/tmp/psychiq-panel-redis.log"], check=True)
    for _ in range(50):
        if subprocess.run(["redis-cli", "-p", str(PORT), "ping"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    results = {}
    floors = []
    logfile = tempfile.mktemp(prefix="psychiq-panel-", suffix=".log")
    try:
        for run in range(1, args.runs + 1):
            for log in logs:
                for name in wanted:
                    n = args.jobs
                    if name == "apalis":
                        n = min(args.apalis_jobs, args.jobs)
                    measure = systems(n, args.concurrency, log, logfile).get(name)
                    if measure is None:
                        if run == 1 and log == logs[0]:
                            print(f"skipped {name}: not on this machine (see bench/panel.py)", file=sys.stderr)
                        continue
                    redis("flushall")
                    figures = measure()
                    if "floor" in figures:
                        floors.append(figures.pop("floor"))
                    results.setdefault((name, log), []).append(figures)
                    print(f"run {run} log={log:<7} {name:<14} n={n:<7} "
                          + "  ".join(f"{k} {v:,.1f}" for k, v in figures.items()), flush=True)
    finally:
        subprocess.run(["redis-cli", "-p", str(PORT), "shutdown", "nosave"], capture_output=True)
        if os.path.exists(logfile):
            os.remove(logfile)
    report(results, floors, logs, wanted)


def report(results, floors, logs, wanted):
    def med(rows, key):
        values = [r[key] for r in rows]
        return statistics.median(values), min(values), max(values)

    floor = statistics.median(floors) if floors else None
    for log in logs:
        print(f"\n### log level: {'each system at its default' if log == 'default' else 'warn, all'}\n")
        print("| system | drain jobs/s | Psychiq is | server CPU µs/job | Redis CPU µs/job | peak RSS |")
        print("|---|---|---|---|---|---|")
        ours = results.get(("psychiq", log))
        ours_rate = med(ours, "jobs/s")[0] if ours else None
        for name in wanted:
            rows = results.get((name, log))
            if not rows:
                continue
            rate = med(rows, "jobs/s")
            ratio = "" if name == "psychiq" or not ours_rate else f"{ours_rate / rate[0]:.1f}×"
            cells = [f"{rate[0]:,.0f} ({rate[1]:,.0f}–{rate[2]:,.0f})", ratio]
            for key, fmt in [("server µs", "{:.1f}"), ("redis µs", "{:.1f}"), ("rss MB", "{:.0f} MB")]:
                m, lo, hi = med(rows, key)
                cells.append(fmt.format(m) + (f" ({lo:.1f}–{hi:.1f})" if key != "rss MB" else ""))
            print(f"| {name} | " + " | ".join(cells) + " |")
        if floor and ours_rate:
            print(f"\nRedis job floor (median of the Psychiq runs): {floor:,.0f} jobs/s; "
                  f"Psychiq's drain is {100 * ours_rate / floor:.0f}% of it.")


if __name__ == "__main__":
    main()
