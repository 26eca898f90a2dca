#!/usr/bin/env bash
# The engine's share of a Dis-CNN epoch (BENCHMARKS.md, "COST"). RUNS rounds (default 5), each
# alternating: `driver bench cnn-train --batch 256 --threads 2` (the pure compute: the paper's
# net, one process, no engine), then a 2-epoch cnn-job on 45,000 images, 2 partitions × batch
# 256 per iteration, at each master of MASTERS (default `local[2] local-cluster[2,1]`), with an
# event log. For the second epoch it prints, as medians over the rounds:
#   - the epoch against pure compute (45,000 images at cnn-train's rate);
#   - the engine's own work, from the event log: per iteration, the job's wall time less its
#     slowest gradient task (broadcast, task encode/decode, scheduling, the leader shuffle, the
#     result, the driver's step), as a share of the epoch;
#   - the slowest gradient task of an iteration against the pure compute of its 2 × 256 images
#     (what the tasks themselves add: batch assembly, a shared or split thread pool).
#
#   bench/cnn-overhead.sh ../shared/data/cifar-10-batches-bin
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: bench/cnn-overhead.sh CIFAR_DIR}
RUNS=${RUNS:-5}
MASTERS=${MASTERS:-"local[2] local-cluster[2,1]"}
cargo build --release -q --bin driver --bin executor
out=$(mktemp -d)
# KEEP=1 leaves the runs (event logs, metrics) in the directory it names, for a closer look.
trap '[ -n "${KEEP:-}" ] || rm -rf "$out"' EXIT
[ -z "${KEEP:-}" ] || echo "runs kept in $out" >&2
for r in $(seq "$RUNS"); do
  target/release/driver bench cnn-train --batch 256 --threads 2 --json >>"$out/compute.jsonl"
  for m in $MASTERS; do
    run="$out/run-$r-${m//[^a-z0-9]/_}"
    mkdir -p "$run/events"
    target/release/driver submit --master "$m" --no-progress --event-log "$run/events" cnn-job \
      --data "$data" --output "$run/out" --train-limit 45000 --epochs 2 --partitions 2 \
      --batch-size 256 --augment none --init random >/dev/null 2>"$run/log"
    echo "$m" >"$run/master"
  done
done
python3 - "$out" <<'PY'
import glob, json, os, statistics, subprocess, sys
out = sys.argv[1]
compute = [json.loads(l)["train_img_per_s"] for l in open(os.path.join(out, "compute.jsonl"))]
rate = statistics.median(compute)
images = 45000
pure = images / rate
print(f"pure compute: cnn-train {rate:,.0f} images/s (median of {len(compute)}): {pure:.3f} s for {images:,} images")

def engine_share(events_dir):
    """Per iteration of the second epoch: job wall, slowest gradient task, from the event log."""
    path = glob.glob(os.path.join(events_dir, "*.jsonl.zst"))[0]
    text = subprocess.run(["zstd", "-dc", path], capture_output=True, check=True).stdout
    jobs, stage_job, epoch_ends = {}, {}, []
    for line in text.splitlines():
        e = json.loads(line)
        kind = e["event"]
        if kind == "JobStart":
            jobs[e["job"]] = {"start": e["time_ms"], "desc": e.get("description"), "runs": {}, "sub": {}}
        elif kind == "StageSubmitted":
            stage_job[e["stage"]] = e["job"]
            jobs[e["job"]]["sub"][e["stage"]] = e["time_ms"]
        elif kind == "TaskEnd" and e["stage"] in stage_job:
            jobs[stage_job[e["stage"]]]["runs"].setdefault(e["stage"], []).append(e["metrics"]["run_micros"] / 1000)
        elif kind == "JobEnd":
            jobs[e["job"]]["end"] = e["time_ms"]
        elif kind == "Custom" and e.get("kind") == "EpochEnd":
            epoch_ends.append(e["time_ms"])
    # Training iterations (--aggregation dis): the two-stage collect jobs of the second epoch,
    # gradients then the leader shuffle; their slowest task is a gradient.
    its = [j for j in jobs.values() if j["desc"] == "collect" and "end" in j and len(j["sub"]) == 2
           and j["start"] >= epoch_ends[0] and j["end"] <= epoch_ends[1]]
    wall = sum(j["end"] - j["start"] for j in its)
    slowest = sum(max(max(r) for r in j["runs"].values()) for j in its)
    return len(its), wall, slowest

rows = {}
for run in sorted(glob.glob(os.path.join(out, "run-*"))):
    m = open(os.path.join(run, "master")).read().strip()
    lines = [json.loads(l) for l in open(os.path.join(run, "out", "metrics.jsonl"))]
    epoch = lines[-1]["wall_s"]
    n, wall_ms, slowest_ms = engine_share(os.path.join(run, "events"))
    rows.setdefault(m, []).append((epoch, n, (wall_ms - slowest_ms) / 1000, slowest_ms / n))
for m, rs in rows.items():
    epoch = statistics.median(r[0] for r in rs)
    engine = statistics.median(r[2] for r in rs)
    n = rs[0][1]
    print(f"{m:<20} epoch {epoch:.3f} s ({images / epoch:,.0f} images/s), over pure compute {100 * (epoch / pure - 1):+.1f} %;"
          f" engine work {engine * 1000 / n:.2f} ms per iteration ({n} iterations) = {100 * engine / epoch:.1f} % of the epoch")
    task = statistics.median(r[3] for r in rs)
    per_it = 2 * 256 / rate * 1000
    print(f"{'':<20} slowest gradient task {task:.2f} ms per iteration, pure compute {per_it:.2f} ms: {100 * (task / per_it - 1):+.1f} %")
    print(f"{'':<20} epochs: {', '.join(f'{r[0]:.3f}' for r in rs)}")
PY
