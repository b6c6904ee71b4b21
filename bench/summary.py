"""Medians (min-max) and ratios of the runs bench/compare.sh printed on stdin."""
import re
import statistics
import sys

figures = {}
mode = None
for line in sys.stdin:
    if line.startswith("psychiq-load:"):
        mode = "psychiq " + ("basic" if "basic" in line else "reliable")
        continue
    ruby = re.match(r"ruby sidekiq [\d.]+: (.*?): .*?= ([\d.]+) jobs/s|ruby sidekiq [\d.]+: (.*?): ([\d.]+) jobs/s", line)
    if ruby:
        name = (ruby.group(1) or ruby.group(3)).split(" (")[0].split(" at ")[0]
        figures.setdefault(("ruby", name), []).append(float(ruby.group(2) or ruby.group(4)))
        continue
    ours = re.match(r"\s+(.+?)\s{2,}([\d.]+) (jobs/s|µs|MB)?", line)
    if ours and mode:
        name = ours.group(1).split(" (")[0]
        name = "drain" if name.startswith("drain") else name
        figures.setdefault((mode, name), []).append(float(ours.group(2)))

def show(values):
    return f"{statistics.median(values):>10,.1f}  ({min(values):,.1f}–{max(values):,.1f})"

for (who, name), values in sorted(figures.items()):
    print(f"{who:<17} {name:<42} {show(values)}")
ruby_drain = figures.get(("ruby", "drain 100000 jobs"), figures.get(("ruby", "drain"), []))
for key, values in figures.items():
    if key[0] == "ruby" and key[1].startswith("drain"):
        ruby_drain = values
for mode in ("psychiq reliable", "psychiq basic"):
    ours = figures.get((mode, "drain"))
    if ours and ruby_drain:
        print(f"{mode} drains {statistics.median(ours) / statistics.median(ruby_drain):.1f}x Ruby Sidekiq (medians)")
