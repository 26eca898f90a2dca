#!/usr/bin/env bash
# The Dis-CNN method's measurements (BENCHMARKS.md, "The paper's three ideas"): each set is a
# list of cnn-job runs on the real CIFAR-10 with every option spelled out, so the figures do not
# move when a default does. One line per run goes to OUT/results.tsv:
#   set  config  seed  final test accuracy  epochs  wall seconds (training + evaluation)
#
#   bench/method.sh ../shared/data/cifar-10-batches-bin /tmp/method init5 short recipe long
#
# Sets: init5 (5 epochs, full training set, each init, seeds 1–5), short (2 epochs on 5,000
# images, the full method against the plain CNN, seeds 1–5), readme (the README's main command,
# seeds 0–2), recipe (10 epochs, plain CNN, recipe variants, seeds 0–2), long (30 epochs, the
# full method, the plain CNN and one idea at a time, seeds 0–2), long-augment (30 epochs, the
# plain CNN without augmentation, seeds 0–2).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: bench/method.sh DATA OUT SET...}
out=${2:?usage: bench/method.sh DATA OUT SET...}
shift 2
mkdir -p "$out/runs"
cargo build --release --quiet --bin driver
driver=target/release/driver

# The recipe every run states in full: recipe WARMUP AUGMENT gives the README's defaults with
# those two set; old is the recipe before the flags existed.
recipe() {
    echo --lr 0.05 --momentum 0.9 --weight-decay 5e-4 --schedule cosine --warmup "$1" \
        --augment "$2" --batch-size 64 --partitions 4 --loss cross-entropy
}
read -ra std <<< "$(recipe 1 crop+flip)"
read -ra old <<< "--lr 0.01 --momentum 0.9 --weight-decay 0 --schedule constant --warmup 0 --augment none --batch-size 64 --partitions 4 --loss cross-entropy"
# method INIT A AGGREGATION: the method's flags (B 0.5 and divisor given separately).
method() { echo --init "$1" --prune-threshold "$2" --aggregation "$3"; }
read -ra full <<< "$(method dis 0.25 dis) --group-threshold 0.5"
read -ra plain <<< "$(method random 0 mean)"

# run SET CONFIG SEED ARGS...
run() {
    local set=$1 config=$2 seed=$3
    shift 3
    local dir="$out/runs/$set-$config-seed$seed"
    local start end
    start=$(date +%s.%N)
    "$driver" submit --no-progress cnn-job --data "$data" --output "$dir" --overwrite --seed "$seed" "$@" \
        > "$dir.log" 2>&1 || { echo "run $set $config $seed failed: see $dir.log" >&2; return 1; }
    end=$(date +%s.%N)
    python3 - "$dir/metrics.jsonl" "$set" "$config" "$seed" "$start" "$end" >> "$out/results.tsv" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
print("\t".join([sys.argv[2], sys.argv[3], sys.argv[4], f"{lines[-1]['test_accuracy'] * 100:.2f}",
                 str(len(lines)), f"{float(sys.argv[6]) - float(sys.argv[5]):.1f}"]))
EOF
    tail -1 "$out/results.tsv"
}

for set in "$@"; do
    case $set in
    init5)
        for s in 1 2 3 4 5; do
            for init in dis kmeans random; do
                run init5 "$init" $s --epochs 5 --init "$init" --aggregation mean "${std[@]}"
                run init5-old "$init" $s --epochs 5 --init "$init" --aggregation mean "${old[@]}"
            done
            run init5 dis-center $s --epochs 5 --init dis --init-bias center --aggregation mean "${std[@]}"
        done ;;
    short)
        for s in 1 2 3 4 5; do
            args=(--epochs 2 --prune-at 1 --train-limit 5000)
            run short full $s "${args[@]}" "${full[@]}" --dis-divisor weights "${std[@]}"
            run short full-divisor-n $s "${args[@]}" "${full[@]}" --dis-divisor n "${std[@]}"
            run short plain $s "${args[@]}" "${plain[@]}" "${std[@]}"
        done ;;
    readme)
        for s in 0 1 2; do
            run readme full $s --epochs 18 "${full[@]}" --dis-divisor weights "${std[@]}"
            run readme full-divisor-n $s --epochs 18 "${full[@]}" --dis-divisor n "${std[@]}"
        done ;;
    recipe)
        for s in 0 1 2; do
            run recipe defaults $s --epochs 10 "${plain[@]}" "${std[@]}"
            run recipe old $s --epochs 10 "${plain[@]}" "${old[@]}"
            run recipe no-augment $s --epochs 10 "${plain[@]}" $(recipe 1 none)
            run recipe no-warmup $s --epochs 10 "${plain[@]}" $(recipe 0 crop+flip)
        done ;;
    long)
        for s in 0 1 2; do
            run long full $s --epochs 30 "${full[@]}" --dis-divisor weights "${std[@]}"
            run long plain $s --epochs 30 "${plain[@]}" "${std[@]}"
            run long dis-init-only $s --epochs 30 $(method dis 0 mean) "${std[@]}"
            run long prune-only $s --epochs 30 $(method random 0.25 mean) "${std[@]}"
            run long dis-aggregation-only $s --epochs 30 $(method random 0 dis) \
                --group-threshold 0.5 --dis-divisor weights "${std[@]}"
        done ;;
    long-augment)
        for s in 0 1 2; do
            run long plain-no-augment $s --epochs 30 "${plain[@]}" $(recipe 1 none)
        done ;;
    *) echo "unknown set $set" >&2; exit 2 ;;
    esac
done
