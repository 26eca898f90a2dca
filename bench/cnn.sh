#!/usr/bin/env bash
# The CNN training benchmark of BENCHMARKS.md: `driver bench cnn-train` (the paper's net, ReLU,
# cross-entropy, SGD lr 0.01 momentum 0.9, CIFAR-shaped data) for each batch/threads setting,
# in RUNS separate processes (default 3), each itself the median of 5 repetitions after a
# warm-up; the table shows the medians over processes. With PEER_PYTHON set to a python that
# has torch (a virtualenv outside the repository), PyTorch runs the same settings alternately
# with discnn in the same session and the ratios are printed.
#
#   bench/cnn.sh
#   PEER_PYTHON=~/torch-venv/bin/python bench/cnn.sh
#   SETTINGS="256x2 64x2" RUNS=5 bench/cnn.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SETTINGS=${SETTINGS:-"256x2 64x2 256x1"}
cargo build --release -q --bin driver
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for s in $SETTINGS; do
  batch=${s%x*}
  threads=${s#*x}
  for _ in $(seq "$RUNS"); do
    target/release/driver bench cnn-train --batch "$batch" --threads "$threads" --json >>"$out/discnn-$s.jsonl"
    if [[ -n "${PEER_PYTHON:-}" ]]; then
      "$PEER_PYTHON" bench/peers/pytorch_cnn.py --batch "$batch" --threads "$threads" >>"$out/peer-$s.jsonl"
    fi
  done
done
python3 - "$out" $SETTINGS <<'PY'
import json, pathlib, statistics, sys
out, settings = pathlib.Path(sys.argv[1]), sys.argv[2:]
def med(path, key):
    if not path.exists():
        return None
    return statistics.median(json.loads(l)[key] for l in path.read_text().splitlines())
print("| batch × threads | discnn train img/s | PyTorch train img/s | ratio | discnn infer img/s | PyTorch infer img/s | ratio | discnn GFLOP/s |")
print("|---|---|---|---|---|---|---|---|")
for s in settings:
    d, p = out / f"discnn-{s}.jsonl", out / f"peer-{s}.jsonl"
    dt, pt = med(d, "train_img_per_s"), med(p, "train_img_per_s")
    di, pi = med(d, "infer_img_per_s"), med(p, "infer_img_per_s")
    g = med(d, "gflops")
    r = lambda a, b: f"{a / b:.2f}×" if b else "–"
    f = lambda v: f"{v:,.0f}" if v else "–"
    print(f"| {s.replace('x', ' × ')} | {f(dt)} | {f(pt)} | {r(dt, pt)} | {f(di)} | {f(pi)} | {r(di, pi)} | {g:.1f} |")
PY
