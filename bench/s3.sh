#!/usr/bin/env bash
# Reading from S3 against reading the local file (BENCHMARKS.md, "Data on S3"): W1 (wordcount of
# the 5M-line file, output local) and a one-epoch cnn-job on CIFAR-10, each RUNS times (default
# 3), alternating local and S3 input, in one sitting. The S3 server is moto on loopback, from
# the virtualenv whose moto_server is $MOTO_SERVER (pip install 'moto[server]').
#
#   MOTO_SERVER=~/venv/bin/moto_server bench/s3.sh CIFAR_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: bench/s3.sh CIFAR_DIR}
moto=${MOTO_SERVER:?set MOTO_SERVER to moto_server of a virtualenv with moto[server]}
python="$(dirname "$moto")/python3"
RUNS=${RUNS:-3}
cargo build --release -q --bin driver
out=$(mktemp -d)
port=$((20000 + RANDOM % 10000))
"$moto" -H 127.0.0.1 -p "$port" >"$out/moto.log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null; rm -rf "$out"' EXIT
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true
until "$python" -c "import urllib.request; urllib.request.urlopen('$AWS_ENDPOINT')" 2>/dev/null; do sleep 0.2; done
target/release/driver bench words --lines 5000000 --output "$out/words.txt"
"$python" - "$AWS_ENDPOINT" "$out/words.txt" "$data" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
s3.create_bucket(Bucket="bench")
s3.upload_file(sys.argv[2], "bench", "words/words.txt")
for name in sorted(os.listdir(sys.argv[3])):
    if name.endswith(".bin"):
        s3.upload_file(os.path.join(sys.argv[3], name), "bench", "cifar/" + name)
PY
now() { date +%s.%N; }
for i in $(seq "$RUNS"); do
  for src in local s3; do
    input="$out/words.txt"; cifar="$data"
    [[ $src == s3 ]] && input="s3://bench/words/words.txt" && cifar="s3://bench/cifar"
    t0=$(now)
    target/release/driver submit --master 'local[2]' --no-progress wordcount --input "$input" --output "$out/wc-$src-$i" >/dev/null
    t1=$(now)
    echo "w1 $src $(echo "$t1 - $t0" | bc)" >>"$out/results"
    t0=$(now)
    target/release/driver submit --master 'local[2]' --no-progress cnn-job --data "$cifar" --output "$out/cnn-$src-$i" --epochs 1 >/dev/null 2>&1
    t1=$(now)
    epoch=$(python3 -c "import json; print(json.loads(open('$out/cnn-$src-$i/metrics.jsonl').readline())['wall_s'])")
    echo "cnn-total $src $(echo "$t1 - $t0" | bc)" >>"$out/results"
    echo "cnn-epoch $src $epoch" >>"$out/results"
    rm -rf "$out/wc-$src-$i" "$out/cnn-$src-$i"
  done
done
python3 - "$out/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    w, src, v = line.split()
    rows.setdefault((w, src), []).append(float(v))
for w, what in (("w1", "W1 wordcount, 5M lines, whole process (s)"),
                ("cnn-total", "cnn-job 1 epoch, whole process incl. loading (s)"),
                ("cnn-epoch", "cnn-job epoch wall_s (s)")):
    a, b = statistics.median(rows[(w, "local")]), statistics.median(rows[(w, "s3")])
    print(f"{what}: local {a:.3f}, S3 {b:.3f} (medians of {len(rows[(w, 's3')])}); ratio {b / a:.2f}")
    print(f"  local {rows[(w, 'local')]}  s3 {rows[(w, 's3')]}")
PY
