"""PyTorch peer of a Table 1 run: the paper's net trained on CIFAR-10 with the recipe of
`cnn-experiment table1` (He-normal weights, zero biases, per-channel normalisation from the
training images, SGD momentum 0.9 with weight decay added to the gradient, linear warm-up per
iteration then cosine to zero, random crop from a zero-padded image and horizontal flip, the
last --validation training images held out), writing the files a cnn-experiment run writes
(`metrics.jsonl` with the same keys, `run.json`, `confusion.json`, `SHA256SUMS`) so that the
report shows it as a row beside ours. One step sees --partitions × --batch images, as one of
our `mean`-aggregated iterations does.

It checkpoints every epoch into DIR.in-progress/ and continues from there when run again;
DIR appears (by rename) only when the run has finished.

Run from a virtualenv outside the repository (numpy and torch from PyPI):
  python bench/peers/pytorch_train.py --data ../shared/data/cifar-10-batches-bin \
      --output results/table1/runs/torch-random-seed0 --seed 0 --epochs 100
"""
import argparse
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import time

import numpy as np
import torch
import torch.nn as nn

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def read(folder, names):
    raw = b"".join(open(os.path.join(folder, n), "rb").read() for n in names)
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3073)
    return rec[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, rec[:, 0].astype(np.int64)


def paper_net():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 14, 5), nn.ReLU(), nn.Flatten(),
        nn.Linear(14, 120), nn.ReLU(), nn.Linear(120, 10),
    )
    for m in net:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net


def rate(base, step, warmup, total):
    if step < warmup:
        return base * (step + 1) / warmup
    t = min((step - warmup) / max(total - warmup, 1), 1.0)
    return 0.5 * base * (1 + math.cos(math.pi * t))


def augment(x, gen):
    n = x.shape[0]
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=gen)
    dx = torch.randint(0, 9, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        img = padded[i, :, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
        out[i] = img.flip(2) if flip[i] else img
    return out


def confusion(net, x, y, batch=1000):
    net.eval()
    m = torch.zeros(10, 10, dtype=torch.int64)
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            pred = net(x[i:i + batch]).argmax(1)
            m += torch.bincount(y[i:i + batch] * 10 + pred, minlength=100).reshape(10, 10)
    return m


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--validation", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = a.output.rstrip("/")
    work = out + ".in-progress"
    if os.path.isdir(out):
        raise SystemExit(f"{out} exists: the run is finished")
    os.makedirs(work, exist_ok=True)

    x, y = read(a.data, [f"data_batch_{i}.bin" for i in range(1, 6)])
    xt, yt = read(a.data, ["test_batch.bin"])
    n_train = len(x) - a.validation
    mean = x[:n_train].mean(axis=(0, 2, 3), keepdims=True)
    std = x[:n_train].std(axis=(0, 2, 3), keepdims=True)
    norm = lambda v: torch.from_numpy((v - mean) / std)
    xtr, ytr = norm(x[:n_train]), torch.from_numpy(y[:n_train])
    xv, yv = norm(x[n_train:]), torch.from_numpy(y[n_train:])
    xte, yte = norm(xt), torch.from_numpy(yt)

    torch.manual_seed(a.seed)
    net = paper_net()
    opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
    gen = torch.Generator().manual_seed(a.seed)
    step_batch = a.batch * a.partitions
    iters = -(-n_train // step_batch)
    first = 0
    ckpt = os.path.join(work, "checkpoint.pt")
    metrics_path = os.path.join(work, "metrics.jsonl")
    if os.path.exists(ckpt):
        state = torch.load(ckpt, weights_only=False)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        first = state["epoch"]
        lines = open(metrics_path).read().splitlines()[:first]
        open(metrics_path, "w").write("".join(l + "\n" for l in lines))
    else:
        open(metrics_path, "w").close()
    options = {k: v for k, v in vars(a).items() if k not in ("output", "data", "threads")}
    machines = [{"cpu": cpu_model(), "cores": os.cpu_count(), "kernels": "pytorch", "from_epoch": first}]
    run_json = os.path.join(work, "run.json")
    if first and os.path.exists(run_json):
        machines = json.load(open(run_json)).get("machines", []) + machines
    json.dump({
        "options": options,
        "recipe": f"loss cross-entropy, SGD lr {a.lr} momentum {a.momentum} weight decay {a.weight_decay}, "
                  f"schedule cosine, warm-up {a.warmup} epoch(s), augment crop (pad 4) + flip, "
                  f"batch {a.batch} × {a.partitions} partitions, aggregation mean",
        "build": f"pytorch {torch.__version__}",
        "machines": machines,
    }, open(run_json, "w"), indent=2)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(first, a.epochs):
        net.train()
        start = time.perf_counter()
        order = torch.randperm(n_train, generator=gen)
        loss_sum, lr = 0.0, a.lr
        for it in range(iters):
            idx = order[it * step_batch:(it + 1) * step_batch]
            lr = rate(a.lr, epoch * iters + it, a.warmup * iters, a.epochs * iters)
            for g in opt.param_groups:
                g["lr"] = lr
            xb = augment(xtr[idx], gen)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xb), ytr[idx])
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
        wall = time.perf_counter() - start
        cm = confusion(net, xte, yte)
        recall = (cm.diag().double() / cm.sum(1).clamp(min=1).double()).tolist()
        cv = confusion(net, xv, yv)
        line = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / n_train,
            "test_accuracy": cm.diag().sum().item() / cm.sum().item(),
            "per_class_recall": recall,
            "mean_recall": sum(recall) / len(recall),
            "wall_s": wall,
            "images_per_s": n_train / wall,
            "iterations": iters,
            "driver_messages": 0,
            "driver_bytes": 0,
            "group_sizes": [0, 0],
            "maps_pruned": [0, 0, 0],
            "rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "lr": lr,
            "validation_accuracy": cv.diag().sum().item() / cv.sum().item(),
        }
        with open(metrics_path, "a") as f:
            f.write(json.dumps(line) + "\n")
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                    "epoch": epoch + 1}, ckpt + ".new")
        os.replace(ckpt + ".new", ckpt)
        print(f"epoch {epoch + 1}/{a.epochs}: loss {line['train_loss']:.4f}, test {line['test_accuracy']:.4f}, "
              f"validation {line['validation_accuracy']:.4f}, lr {lr:.4f}, {wall:.1f} s", flush=True)
    torch.save(net.state_dict(), os.path.join(work, "model.pt"))
    json.dump({"classes": CLASSES, "rows": "true class", "columns": "predicted class",
               "counts": cm.tolist()}, open(os.path.join(work, "confusion.json"), "w"))
    os.remove(ckpt)
    names = sorted(n for n in os.listdir(work) if os.path.isfile(os.path.join(work, n)))
    with open(os.path.join(work, "SHA256SUMS"), "w") as f:
        for n in names:
            f.write(hashlib.sha256(open(os.path.join(work, n), "rb").read()).hexdigest() + "  " + n + "\n")
    shutil.move(work, out)


if __name__ == "__main__":
    main()
