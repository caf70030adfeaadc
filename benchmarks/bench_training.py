"""Harness training throughput and data-path speed, each measured against a baseline in the
same process (absolute times on shared machines are noisy; the ratios are what count).

1. The harness's training loop (``coreset_bench.training.train``: index gathers on in-memory
   tensors, batched augmentation, per-sample losses) against a bare PyTorch loop over the same
   model, data and batch size. Target: ratio >= 0.95.
2. The in-memory tensor data path (gather + batched random-crop/flip) against torchvision's
   ``ImageFolder`` + ``DataLoader`` with PIL transforms, on the CIFAR-10 JPEG copy, producing
   the same augmented batches. Target: >= 3x.

Usage::

    python benchmarks/bench_training.py --data ../shared/datasets/cifar10-jpeg  # unpacked tree
    python benchmarks/bench_training.py --skip-dataloader                       # part 1 only
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def bench_loop(arch: str, n: int, batch: int, steps: int, reps: int) -> None:
    from coreset_bench import data as D
    from coreset_bench import models as M
    from coreset_bench import plugins
    from coreset_bench import training as T

    plugins.load_plugins()
    torch.manual_seed(0)
    x = torch.rand(n, 3, 32, 32)
    y = torch.randint(0, 10, (n,))
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    recipe = {"budget_mode": "iterations", "steps": steps, "batch_size": batch, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4}
    std_m = plugins.method("standard")

    def harness() -> float:
        m = M.build(arch, (3, 32, 32), 10, mean, std, 0)
        t = time.perf_counter()
        T.train(m, x, y, method=std_m, recipe=recipe, num_classes=10, seed=0, pad=4, hflip=True)
        return steps * batch / (time.perf_counter() - t)

    def bare() -> float:
        m = M.build(arch, (3, 32, 32), 10, mean, std, 0)
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        g = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        done = 0
        while done < steps:
            perm = torch.randperm(n, generator=g)
            for b in range(n // batch):
                if done >= steps:
                    break
                idx = perm[b * batch : (b + 1) * batch]
                xb = D.augment(x[idx], pad=4, hflip=True, generator=g)
                loss = F.cross_entropy(m(xb), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                done += 1
        return steps * batch / (time.perf_counter() - t)

    harness()  # warm-up (oneDNN kernels)
    hs, bs = [], []
    for _ in range(reps):  # interleaved to share the machine's noise
        hs.append(harness())
        bs.append(bare())
    h, b = max(hs), max(bs)
    print(f"[1] training loop, {arch}, batch {batch}, {steps} steps: harness {h:.0f} img/s, bare PyTorch {b:.0f} img/s, ratio {h / b:.3f} (target >= 0.95)")


def bench_data(root: Path, batch: int, batches: int, workers: int) -> None:
    from torchvision import datasets, transforms

    from coreset_bench import data as D
    from coreset_bench import plugins

    plugins.load_plugins()
    t0 = time.perf_counter()
    ds = D.load_imagefolder(str(root), None, None)
    load_s = time.perf_counter() - t0
    x = ds.x_train
    g = torch.Generator().manual_seed(0)
    n = len(x)
    t = time.perf_counter()
    for i in range(batches):
        idx = torch.randint(0, n, (batch,), generator=g)
        xb = D.augment(x[idx], pad=4, hflip=True, generator=g)
        _ = ds.y_train[idx]
    ours = batches * batch / (time.perf_counter() - t)

    tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    folder = datasets.ImageFolder(str(root / "train") if (root / "train").is_dir() else str(root), transform=tf)
    loader = torch.utils.data.DataLoader(folder, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    it = iter(loader)
    next(it)  # worker start-up is not counted
    t = time.perf_counter()
    for _ in range(batches):
        xb, yb = next(it)
    theirs = batches * batch / (time.perf_counter() - t)
    print(
        f"[2] data path, CIFAR-10 JPEG, batch {batch}: tensors {ours:.0f} img/s, DataLoader+PIL ({workers} workers) {theirs:.0f} img/s, "
        f"ratio {ours / theirs:.1f}x (target >= 3x); one-time decode into memory {load_s:.1f}s (cached on disk by the harness)"
    )
    assert xb.shape[1:] == (3, 32, 32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("CIFAR10_JPEG", "../shared/datasets/cifar10-jpeg")))
    ap.add_argument("--arch", default="cnn-small")
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--skip-dataloader", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    bench_loop(a.arch, a.n, a.batch, a.steps, a.reps)
    if not a.skip_dataloader:
        if not a.data.exists():
            raise SystemExit(f"no CIFAR-10 JPEG tree at {a.data}; unpack ../shared/datasets/cifar10-jpeg.tar.gz and pass --data PATH")
        bench_data(a.data, a.batch, a.batches, a.workers)


if __name__ == "__main__":
    main()
