#!/usr/bin/env bash
# What writing the event log costs (BENCHMARKS.md, "The event log's cost"): W1 (wordcount of
# 5M lines on local[2]) and a cnn-job epoch (50,000 CIFAR-10 images, local[2]), each RUNS
# times (default 5) with and without --event-log, alternating; medians, their ratio, and the
# log's size per epoch.
#
#   bench/eventlog.sh CIFAR_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: bench/eventlog.sh CIFAR_DIR}
RUNS=${RUNS:-5}
W1_LINES=${W1_LINES:-5000000}
cargo build --release -q --bin driver
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq "$RUNS"); do
  for mode in off on; do
    flag=()
    [[ $mode == on ]] && flag=(--event-log "$out/w1-events-$i")
    target/release/driver bench engine --workload w1 --size "$W1_LINES" --master 'local[2]' \
      "${flag[@]}" --json | python3 -c "import json,sys; r=json.load(sys.stdin); print('w1 $mode', r['wall_s'])" >>"$out/results"
    flag=()
    [[ $mode == on ]] && flag=(--event-log "$out/cnn-events-$i")
    target/release/driver submit --master 'local[2]' --no-progress "${flag[@]}" cnn-job \
      --data "$data" --output "$out/cnn-$mode-$i" --epochs 1 >/dev/null 2>&1
    python3 -c "import json; r=json.loads(open('$out/cnn-$mode-$i/metrics.jsonl').readline()); print('cnn $mode', r['wall_s'])" >>"$out/results"
    rm -rf "$out/cnn-$mode-$i"
  done
done
python3 - "$out" <<'PY'
import glob, os, statistics, sys
out = sys.argv[1]
rows = {}
for line in open(os.path.join(out, "results")):
    w, mode, v = line.split()
    rows.setdefault((w, mode), []).append(float(v))
for w, what in (("w1", "W1 wall (s)"), ("cnn", "cnn-job epoch wall (s)")):
    off, on = statistics.median(rows[(w, "off")]), statistics.median(rows[(w, "on")])
    print(f"{what}: without {off:.3f}, with the event log {on:.3f} (median of {len(rows[(w, 'on')])}); ratio {on / off:.3f}")
    print(f"  runs without: {rows[(w, 'off')]}")
    print(f"  runs with:    {rows[(w, 'on')]}")
sizes = [os.path.getsize(f) for f in glob.glob(os.path.join(out, "cnn-events-*", "*"))]
print(f"cnn-job event log, one epoch: {statistics.median(sizes) / 1e6:.2f} MB (x100 epochs: {statistics.median(sizes) * 100 / 1e6:.1f} MB)")
PY
