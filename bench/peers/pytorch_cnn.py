"""PyTorch peer of `driver bench cnn-train`: the paper's net, trained with cross-entropy and
SGD (lr 0.01, momentum 0.9) on CIFAR-shaped random data; median of --reps repetitions after a
warm-up, images/s for training (forward + backward + update) and for inference.

Run from a virtualenv outside the repository: python bench/peers/pytorch_cnn.py --batch 256 --threads 2
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn


def paper_net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 14, 5), nn.ReLU(), nn.Flatten(),
        nn.Linear(14, 120), nn.ReLU(), nn.Linear(120, 10),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--images", type=int, default=10240)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    net = paper_net()
    params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    inputs = [(torch.empty(a.batch, 3, 32, 32).uniform_(-2, 2), torch.randint(0, 10, (a.batch,)))
              for _ in range(4)]
    batches = max(1, -(-a.images // a.batch))

    def train(steps):
        net.train()
        t = time.perf_counter()
        for s in range(steps):
            x, y = inputs[s % 4]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
        return steps * a.batch / (time.perf_counter() - t)

    def infer(steps):
        net.eval()
        t = time.perf_counter()
        with torch.inference_mode():
            for s in range(steps):
                net(inputs[s % 4][0])
        return steps * a.batch / (time.perf_counter() - t)

    train(-(-batches // 4))
    train_samples = [train(batches) for _ in range(a.reps)]
    infer(-(-batches // 4))
    infer_samples = [infer(batches) for _ in range(a.reps)]
    flop = 3852480  # per training image: forward, weight gradients, input gradients but the first layer's
    rate = statistics.median(train_samples)
    print(json.dumps({
        "system": f"pytorch {torch.__version__}",
        "train_img_per_s": rate,
        "infer_img_per_s": statistics.median(infer_samples),
        "gflops": rate * flop / 1e9,
        "params": params,
        "flop_per_img": flop,
        "batch": a.batch,
        "threads": a.threads,
        "train_samples": train_samples,
        "infer_samples": infer_samples,
    }))


if __name__ == "__main__":
    main()
