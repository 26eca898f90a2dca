#!/usr/bin/env bash
# Two builds side by side: the engine workloads W0, W1, W3 (bench/engine.sh's sizes) and one
# cnn-job epoch on local-cluster[2,1], each run RUNS times (default 7) alternating the builds,
# medians and the ratio new / old. For "no regression" checks of a refactor; run it on a quiet
# machine; KEEP=FILE keeps every run's JSON line. Each DIR holds a release `driver` and `executor`; build the old one in a worktree:
#
#   git worktree add /tmp/old REV && (cd /tmp/old && cargo build --release --bin driver --bin executor)
#   bench/compare-builds.sh /tmp/old/target/release target/release ../shared/data/cifar-10-batches-bin
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 3 ]]; then
  echo "usage: bench/compare-builds.sh OLD_DIR NEW_DIR CIFAR_DIR" >&2
  exit 2
fi
old=$1 new=$2 data=$3
RUNS=${RUNS:-7}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
engine_workloads=("w0 1000" "w1 5000000" "w3-group 5000000" "w3-sort 5000000")

run_engine() { # build-dir name workload size
  "$1/driver" bench engine --workload "$3" --size "$4" --master 'local[2]' --json |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"build":sys.argv[1],"w":sys.argv[2],"s":r["wall_s"]}))' "$2" "$3 $4" \
      >>"$out/runs.jsonl"
}

run_cnn() { # build-dir name
  local start end
  start=$(date +%s.%N)
  DISCNN_EXECUTOR_BIN="$1/executor" "$1/driver" submit --master 'local-cluster[2,1]' --no-progress \
    cnn-job --data "$data" --output "$out/cnn-$2" --overwrite --epochs 1 --validation 5000 --json >/dev/null
  end=$(date +%s.%N)
  python3 -c 'import json,sys; print(json.dumps({"build":sys.argv[1],"w":"cnn-job 1 epoch","s":float(sys.argv[3])-float(sys.argv[2])}))' \
    "$2" "$start" "$end" >>"$out/runs.jsonl"
}

for i in $(seq "$RUNS"); do
  # Alternate which build goes first, so neither always runs on a warmer cache.
  if (( i % 2 )); then order=("old $old" "new $new"); else order=("new $new" "old $old"); fi
  for w in "${engine_workloads[@]}"; do
    for b in "${order[@]}"; do
      set -- $b
      run_engine "$2" "$1" $w
    done
  done
  for b in "${order[@]}"; do
    set -- $b
    run_cnn "$2" "$1"
  done
  echo "round $i of $RUNS done" >&2
done

[[ -n "${KEEP:-}" ]] && cp "$out/runs.jsonl" "$KEEP"
python3 - "$out/runs.jsonl" "$RUNS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
names = list(dict.fromkeys(r["w"] for r in rows))
print(f"medians (and minima) of {sys.argv[2]} alternating runs, wall seconds")
print("| workload | old | new | new / old (medians) | new / old (minima) |")
print("|---|---|---|---|---|")
for n in names:
    s = {b: [r["s"] for r in rows if r["w"] == n and r["build"] == b] for b in ("old", "new")}
    m = {b: statistics.median(v) for b, v in s.items()}
    lo = {b: min(v) for b, v in s.items()}
    print(f"| {n} | {m['old']:.4f} ({lo['old']:.4f}) | {m['new']:.4f} ({lo['new']:.4f}) "
          f"| {m['new'] / m['old']:.3f} | {lo['new'] / lo['old']:.3f} |")
PY
