#!/usr/bin/env bash
# The engine benchmarks of BENCHMARKS.md: every workload in RUNS separate processes (default 3),
# medians of measured wall time and of peak RSS. With PEER_PYTHON set to a python that has
# pyspark and numpy (a virtualenv outside the repository), Spark's RDD API runs the same
# workloads in the same session and the ratios are printed.
#
#   bench/engine.sh                          # discnn only
#   PEER_PYTHON=~/venv/bin/python bench/engine.sh
#   QUICK=1 bench/engine.sh                  # small sizes, for trying the script
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
MASTER=${MASTER:-local[2]}
if [[ -n "${QUICK:-}" ]]; then
  workloads=("w0 100" "w1 100000" "w2 200000" "w3-group 500000" "w3-sort 500000")
else
  workloads=("w0 1000" "w1 1000000" "w1 5000000" "w2 2000000" "w3-group 5000000" "w3-sort 5000000")
fi
cargo build --release -q --bin driver
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# All discnn runs first, then all peer runs: neither system starts right after the other's
# memory-heavy processes.
for w in "${workloads[@]}"; do
  set -- $w
  for _ in $(seq "$RUNS"); do
    target/release/driver bench engine --workload "$1" --size "$2" --master "$MASTER" --json >>"$out/discnn.jsonl"
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
python3 - "$out" <<'PY'
import json, os, statistics, sys
out = sys.argv[1]
def load(name):
    p = os.path.join(out, name)
    rows = {}
    if os.path.exists(p):
        for line in open(p):
            r = json.loads(line)
            rows.setdefault((r["workload"], r["size"] if r["workload"] != "w0" else 0), []).append(r)
    return rows
ours, spark = load("discnn.jsonl"), load("spark.jsonl")
med = lambda rs, k: statistics.median(r[k] for r in rs)
print(f"{'workload':<10}{'size':>10}{'wall s':>9}{'per unit ms':>13}{'peak MiB':>10}", end="")
print(f"{'spark s':>10}{'spark unit ms':>15}{'spark MiB':>11}{'ratio':>8}" if spark else "")
for key, rs in ours.items():
    w, size = key
    line = f"{w:<10}{rs[0]['size']:>10}{med(rs,'wall_s'):>9.3f}{med(rs,'per_unit_ms'):>13.3f}{med(rs,'peak_rss_bytes')/2**20:>10.0f}"
    if key in spark:
        s = spark[key]
        ratio = med(s, "per_unit_ms") / med(rs, "per_unit_ms")
        line += f"{med(s,'wall_s'):>10.3f}{med(s,'per_unit_ms'):>15.3f}{med(s,'peak_rss_bytes')/2**20:>11.0f}{ratio:>7.1f}x"
    print(line)
PY
