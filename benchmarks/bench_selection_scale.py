"""Selection time of every method at CIFAR-10 scale on this machine, proxy excluded.

The pool has the CIFAR-10 JPEG training set's shape after the harness's 10 % validation carve-out
(45,000 images, 4,500 per class, 3x32x32). Signals have the shapes a cnn-small proxy would record
(embedding width 64, 10 classes, 12 epochs); their values are synthetic, because selection time
depends on shapes, not on values. The proxy run itself is measured separately (its cost is the
same for every method and is shared; see ``bench_signals.py``).

Usage::

    python benchmarks/bench_selection_scale.py [--per-class 4500] [--fraction 0.1] [--methods a,b]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

DEFAULT = [
    "random", "easycore", "cld", "ltc", "el2n", "grand", "forgetting", "aum", "uncertainty-entropy",
    "ccs", "moderate", "d2-pruning", "tdds", "herding", "kcenter", "contextual-diversity", "cal",
    "deepfool", "craig", "gradmatch", "glister", "submodular-graphcut",
    "submodular-facility-location", "submodular-logdet",
]


def main() -> None:
    from coreset_bench import models as M
    from coreset_bench import plugins
    from coreset_bench.kinds import SelectionView, Signals
    from coreset_bench.testing import synthetic_signals, validate_selection

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=4500)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--methods", default=",".join(DEFAULT))
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("CORESET_BENCH_THREADS", 0)) or (os.cpu_count() or 1))
    plugins.load_plugins()
    n, c = a.per_class * a.classes, a.classes
    nv = n // 9
    y = np.repeat(np.arange(c), a.per_class)
    yv = np.repeat(np.arange(c), nv // c)
    sig = synthetic_signals(n, len(yv), c, epochs=a.epochs, dim=a.dim, seed=0, labels=y, val_labels=yv)
    # checkpoints at every epoch, as the quick profile records them
    gen = np.random.default_rng(1)
    sig["logits"] = gen.standard_normal((a.epochs, n, c)).astype(np.float32)
    sig["logits"][:, np.arange(n), y] += np.linspace(0.5, 3.0, a.epochs)[:, None].astype(np.float32)
    sig["embeddings"] = gen.standard_normal((a.epochs, n, a.dim)).astype(np.float32)
    sig["val_logits"] = gen.standard_normal((a.epochs, len(yv), c)).astype(np.float32)
    sig["val_embeddings"] = gen.standard_normal((a.epochs, len(yv), a.dim)).astype(np.float32)
    sig["checkpoint_epochs"] = np.arange(1, a.epochs + 1)
    k = a.epochs
    x = torch.rand(n, 3, 32, 32)
    factory = lambda: M.build("cnn-small", (3, 32, 32), c, (0.5,) * 3, (0.25,) * 3, 0).eval()  # noqa: E731
    sig["proxy_model"] = factory
    budget = int(round(a.fraction * n))
    print(f"pool {n} x 3x32x32, {c} classes, {a.epochs} epochs, {k} checkpoints, D={a.dim}, budget {budget} ({a.fraction:g}); threads {torch.get_num_threads()}")
    print("| method | selection seconds |")
    print("|---|---|")
    for name in a.methods.split(","):
        m = plugins.method(name)
        view = SelectionView(torch.from_numpy(x.numpy()), torch.from_numpy(y), torch.rand(len(yv), 3, 32, 32), torch.from_numpy(yv), c, budget, a.fraction,
                             Signals({s: v for s, v in sig.items() if s in m.signals}, method=name), 0, torch.Generator().manual_seed(0), np.random.default_rng(0), factory)
        t = time.perf_counter()
        out = validate_selection(m.select(view), view, m)
        dt = time.perf_counter() - t
        print(f"| {name} | {dt:.1f} |" + ("" if len(out.indices) == budget else f" (returned {len(out.indices)})"), flush=True)


if __name__ == "__main__":
    main()
