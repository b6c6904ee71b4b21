"""Medians (min-max) and ratios of the runs bench/compare.sh printed on stdin.

Reads psychiq-load's reports (Psychiq's and, with --ruby, Ruby Sidekiq's) and the enqueue
lines of bench/sidekiq_drain.rb; groups every figure by who ran it and the workload.
"""
import re
import statistics
import sys

figures = {}
who = None
for line in sys.stdin:
    header = re.match(r"psychiq-load: (ruby sidekiq, )?\d+ (.+?) jobs, .*server flags \"(.*)\"", line)
    if header:
        workload = header.group(2).split(" (")[0]
        if header.group(1):
            who = ("ruby", workload)
        else:
            who = ("psychiq basic" if "basic" in header.group(3) else "psychiq", workload)
        continue
    ruby = re.match(r"ruby sidekiq [\d.]+: (.*?): .*?= ([\d.]+) jobs/s|ruby sidekiq [\d.]+: (.*?): ([\d.]+) jobs/s", line)
    if ruby:
        name = (ruby.group(1) or ruby.group(3)).split(" (")[0]
        figures.setdefault(("ruby", "client", name), []).append(float(ruby.group(2) or ruby.group(4)))
        continue
    ours = re.match(r"\s+(.+?)\s{2,}([\d.]+)", line)
    if ours and who:
        name = ours.group(1).split(" (")[0]
        name = "drain" if re.match(r"drain \d+ jobs", name) else name
        figures.setdefault((who[0], who[1], name), []).append(float(ours.group(2)))


def show(values):
    return f"{statistics.median(values):>12,.1f}  ({min(values):,.1f}–{max(values):,.1f}, {len(values)} runs)"


for (by, workload, name), values in sorted(figures.items()):
    print(f"{by:<14} {workload:<8} {name:<62} {show(values)}")


def median(by, workload, name):
    values = figures.get((by, workload, name))
    return statistics.median(values) if values else None


print()
for workload in sorted({w for (_, w, _) in figures if w != "client"}):
    for by in ("psychiq", "psychiq basic"):
        ours, ruby = median(by, workload, "drain"), median("ruby", workload, "drain")
        if ours and ruby:
            line = f"{by} drains {workload} {ours / ruby:.1f}x Ruby Sidekiq"
            cpu, ruby_cpu = median(by, workload, "server CPU per job"), median("ruby", workload, "server CPU per job")
            if cpu and ruby_cpu:
                line += f", at {cpu / ruby_cpu:.2f}x its server CPU per job"
            print(line + " (medians)")
# The enqueue ratios pair Ruby's figures with psychiq-load --enqueue-only, run right after them.
bulk, ruby_bulk = median("psychiq", "client", "enqueue, bulk"), median("ruby", "client", "enqueue 100000 jobs")
if bulk and ruby_bulk:
    print(f"bulk enqueue {bulk / ruby_bulk:.1f}x push_bulk (medians)")
single, ruby_single = median("psychiq", "client", "enqueue, single, 1 task"), median("ruby", "client", "enqueue, single, 1 thread")
if single and ruby_single:
    print(f"single enqueue {single / ruby_single:.2f}x perform_async (medians)")
