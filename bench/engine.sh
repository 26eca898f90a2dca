#!/usr/bin/env bash
# The engine benchmarks of BENCHMARKS.md, with the COST baselines beside them: every workload
# runs RUNS times (default 5) as separate processes, alternating the plain single-threaded
# program (`bench/naive`, the `naive` binary) and the engine at each master of MASTERS (default
# `local[1] local[2]`) within each round. Every run prints its output (a digest of the words
# file it wrote, the final weights, the grouped or sorted pairs); the script fails if any two
# differ. Medians of measured wall time (per iteration for W2, per job for W0) and of peak RSS.
# With PEER_PYTHON set to a python that has pyspark and numpy (a virtualenv outside the
# repository), Spark's RDD API (local[2]) runs the same workloads afterwards, in the same
# sitting, and its ratio to the engine's local[2] is printed.
#
#   bench/engine.sh
#   PEER_PYTHON=~/venv/bin/python bench/engine.sh
#   QUICK=1 RUNS=1 bench/engine.sh           # small sizes, for trying the script
#   WORKLOADS="w1:5000000" bench/engine.sh   # a subset
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
MASTERS=${MASTERS:-"local[1] local[2]"}
if [[ -n "${WORKLOADS:-}" ]]; then
  workloads=()
  for t in $WORKLOADS; do workloads+=("${t%%:*} ${t#*:}"); done
elif [[ -n "${QUICK:-}" ]]; then
  workloads=("w0 100" "w1 100000" "w2 200000" "w3-group 500000" "w3-sort 500000")
else
  workloads=("w0 1000" "w1 5000000" "w2 2000000" "w3-group 5000000" "w3-sort 5000000")
fi
cargo build --release -q -p discnn -p discnn-naive --bin driver --bin naive
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for w in "${workloads[@]}"; do
  set -- $w
  words="$out/words-$2.txt"
  if [[ "$1" == w1 && ! -f "$words" ]]; then target/release/driver bench words --lines "$2" --output "$words"; fi
  for _ in $(seq "$RUNS"); do
    case "$1" in
      w0) ;; # no naive program: a job's fixed cost has no single-threaded counterpart
      w1) rm -f "$out/naive-out.txt"
          target/release/naive w1 "$words" "$out/naive-out.txt" >>"$out/naive.jsonl" ;;
      *) target/release/naive "$1" "$2" >>"$out/naive.jsonl" ;;
    esac
    for m in $MASTERS; do
      target/release/driver bench engine --workload "$1" --size "$2" --master "$m" --json >>"$out/discnn.jsonl"
    done
  done
done
if [[ -n "${PEER_PYTHON:-}" ]]; then
  for w in "${workloads[@]}"; do
    set -- $w
    words="$out/words-$2.txt"
    if [[ "$1" == w1 && ! -f "$words" ]]; then target/release/driver bench words --lines "$2" --output "$words"; fi
    peer_size=$2
    # Spark's per-job cost is ~1000x ours: 100 jobs measure it as well as 1,000.
    [[ "$1" == w0 ]] && peer_size=100
    for _ in $(seq "$RUNS"); do
      if ! "$PEER_PYTHON" bench/peers/pyspark_engine.py "$1" "$peer_size" "$words" >"$out/peer.out" 2>"$out/peer.err"; then
        echo "peer run of $1 failed; last lines of its log:" >&2
        tail -n 5 "$out/peer.err" >&2
        continue
      fi
      tail -n 1 "$out/peer.out" >>"$out/spark.jsonl"
    done
  done
fi
python3 - "$out" "$RUNS" $MASTERS <<'PY'
import json, os, statistics, sys
out, runs_each, masters = sys.argv[1], sys.argv[2], sys.argv[3:]
def load(name):
    rows = []
    p = os.path.join(out, name)
    if os.path.exists(p):
        rows = [json.loads(line) for line in open(p)]
    return rows
runs = load("naive.jsonl") + load("discnn.jsonl")
spark = load("spark.jsonl")
med = lambda rs, k: statistics.median(r[k] for r in rs)
workloads = list(dict.fromkeys(r["workload"] for r in runs))
failed = False
header = f"{'workload':<10}{'size':>9}{'naive ms':>10}"
for m in masters:
    header += f"{m + ' ms':>17}{'÷naive':>8}{'MiB':>6}"
if spark:
    header += f"{'spark ms':>11}{'spark÷' + masters[-1]:>16}"
print(header)
for w in workloads:
    rs = [r for r in runs if r["workload"] == w]
    outputs = {r["detail"].get("output") for r in rs}
    if len(outputs) > 1:
        failed = True
        print(f"{w}: OUTPUTS DIFFER: {sorted(map(str, outputs))}")
    naive = [r for r in rs if r["master"] == "naive"]
    size = max(r["size"] for r in rs)
    line = f"{w:<10}{size:>9}"
    base = med(naive, "per_unit_ms") if naive else None
    line += f"{base:>10.1f}" if base else f"{'—':>10}"
    last = None
    for m in masters:
        ms = [r for r in rs if r["master"] == m]
        if not ms:
            line += f"{'—':>31}"
            continue
        last = med(ms, "per_unit_ms")
        ratio = f"{last / base:.2f}" if base else "—"
        line += f"{last:>17.1f}{ratio:>8}{med(ms, 'peak_rss_bytes') / 2**20:>6.0f}"
    ss = [r for r in spark if r["workload"] == w]
    if ss and last:
        line += f"{med(ss, 'per_unit_ms'):>11.1f}{med(ss, 'per_unit_ms') / last:>15.1f}x"
    print(line)
    if len(outputs) == 1 and None not in outputs:
        print(f"{'':<10}output, all {len(rs)} runs: {outputs.pop()}")
print(f"(medians of {runs_each} alternating runs per program; ms per job, per iteration for w2)")
sys.exit(1 if failed else 0)
PY
