"""Tables of bench/method.sh's results: per set, each configuration's final test accuracy as
mean ± sample std over seeds, worst, best and every seed's value.

    python3 bench/method-report.py /tmp/method/results.tsv
"""
import statistics
import sys
from collections import OrderedDict


def main(path):
    groups = OrderedDict()
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 6:
            continue
        run_set, config, seed, acc, epochs, wall = parts[:6]
        groups.setdefault(run_set, OrderedDict()).setdefault(config, []).append(
            (int(seed), float(acc), int(epochs), float(wall)))
    for run_set, configs in groups.items():
        print(f"\n{run_set}\n")
        print("| configuration | epochs | seeds | mean ± std (%) | worst | best | per seed (%) |")
        print("|---|---|---|---|---|---|---|")
        for config, runs in configs.items():
            runs.sort()
            acc = [a for _, a, _, _ in runs]
            sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
            seeds = ",".join(str(s) for s, _, _, _ in runs)
            print(f"| {config} | {runs[0][2]} | {seeds} | {statistics.mean(acc):.2f} ± {sd:.2f} "
                  f"| {min(acc):.2f} | {max(acc):.2f} | {' / '.join(f'{a:.2f}' for a in acc)} |")


if __name__ == "__main__":
    main(sys.argv[1])
