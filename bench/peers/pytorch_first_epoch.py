"""PyTorch reference for cnn-job's first epoch: what the paper's net reaches after one pass over
the first N CIFAR-10 training images, trained as `driver submit cnn-job --aggregation mean`
trains it (per-channel normalisation from the training images, He initialisation with the
classifier started at zero — `--init he` leaves He there too — cross-entropy,
SGD lr 0.01 momentum 0.9, one step per iteration on the union of P partitions' mini-batches of B).
`--step-scale 0.45` gives the step `--aggregation dis` takes while every partition is in the
high-error group (E > B: the case for the whole first epoch at the defaults).

Run from a virtualenv outside the repository:
    python bench/peers/pytorch_first_epoch.py --data ../shared/data/cifar-10-batches-bin --seeds 10
"""
import argparse
import json
import os
import statistics

import numpy as np
import torch
import torch.nn as nn

from pytorch_cnn import paper_net  # the same net as the speed peer (this script's folder)

RECORD = 1 + 3 * 32 * 32


def load(folder, names, limit=None):
    raw = b"".join(open(os.path.join(folder, n), "rb").read() for n in names)
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    if limit is not None:
        rec = rec[:limit]
    x = rec[:, 1:].astype(np.float32).reshape(-1, 3, 32, 32) / 255.0
    return torch.from_numpy(x), torch.from_numpy(rec[:, 0].astype(np.int64))


def he_init(net, zero_classifier):
    for m in net:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    if zero_classifier:
        nn.init.zeros_(net[-1].weight)


def run(args, seed, xtr, ytr, xte, yte):
    torch.manual_seed(seed)
    net = paper_net()
    if args.init != "pytorch":
        he_init(net, zero_classifier=args.init == "he-zero-classifier")
    opt = torch.optim.SGD(net.parameters(), lr=args.lr * args.step_scale, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    shards = np.array_split(np.arange(len(xtr)), args.partitions)
    rng = np.random.default_rng(seed)
    orders = [s[rng.permutation(len(s))] for s in shards]
    iterations = -(-max(len(s) for s in shards) // args.batch)
    for it in range(iterations):
        idx = np.concatenate(
            [o[[(it * args.batch + k) % len(o) for k in range(args.batch)]] for o in orders])
        opt.zero_grad(set_to_none=True)
        loss_fn(net(xtr[idx]), ytr[idx]).backward()
        opt.step()
    with torch.inference_mode():
        return (net(xte).argmax(1) == yte).float().mean().item(), iterations


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--train-limit", type=int, default=5000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--step-scale", type=float, default=1.0)
    ap.add_argument("--init", choices=["he-zero-classifier", "he", "pytorch"],
                    default="he-zero-classifier")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    xtr, ytr = load(a.data, [f"data_batch_{i}.bin" for i in range(1, 6)], a.train_limit)
    xte, yte = load(a.data, ["test_batch.bin"])
    mean = xtr.mean(dim=(0, 2, 3), keepdim=True)
    std = xtr.std(dim=(0, 2, 3), keepdim=True)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    accs = []
    for seed in range(1, a.seeds + 1):
        acc, iterations = run(a, seed, xtr, ytr, xte, yte)
        accs.append(acc)
    print(json.dumps({
        "system": f"pytorch {torch.__version__}",
        "train_limit": a.train_limit, "partitions": a.partitions, "batch": a.batch,
        "lr": a.lr, "step_scale": a.step_scale, "init": a.init, "iterations": iterations,
        "test_accuracy_mean": statistics.mean(accs), "test_accuracy_max": max(accs),
        "test_accuracy": accs,
    }))


if __name__ == "__main__":
    main()
