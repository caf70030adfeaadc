"""Signal sharing: every score-based method from ONE proxy run, against each method training
its own proxy (how DeepCore runs its selectors). Both sides are measured in this process.

Targets (issue 26): shared cost (one proxy run with the union of signals + every method's
selection) <= 1.5 x one 3-epoch proxy run on 2,700 CIFAR-10 images, <= 2 x on 45,000, and the goal
<= 1.3 x over a 40-epoch proxy. Wall-clock ratios are printed first; the same ratios in CPU
seconds of this process follow (they hold on a machine that other jobs load, where wall time
does not).

Usage::

    python benchmarks/bench_signals.py                    # digits, cnn-small (the quick profile)
    python benchmarks/bench_signals.py --dataset imagefolder:/path/cifar10-jpeg --per-class 200
    python benchmarks/bench_signals.py --dataset imagefolder:/path/cifar10-jpeg --epochs 3 --own-proxies 1 \
        --methods "$(python -c 'import bench_signals as b; print(",".join(b.METHODS + ["deepfool"]))')"
    # the same with DeepFool's one-step reading on three head-ranked candidates (issue 26)
    python benchmarks/bench_signals.py ... --param deepfool.max_iter=1 --param deepfool.candidates=3 \
        --param deepfool.candidate_rank=head
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

METHODS = [
    "easycore", "easycore-hard", "cld", "ltc", "el2n", "grand", "forgetting", "aum",
    "uncertainty-entropy", "uncertainty-margin", "uncertainty-least-confidence", "ccs",
    "moderate", "d2-pruning", "tdds", "herding", "kcenter", "contextual-diversity", "cal",
    "craig", "gradmatch", "glister", "submodular-graphcut", "submodular-facility-location",
    "submodular-logdet",
]


def main() -> None:
    from coreset_bench import data as D
    from coreset_bench import models as M
    from coreset_bench import plugins
    from coreset_bench import signals as S
    from coreset_bench.kinds import SelectionView, Signals
    from coreset_bench.testing import validate_selection
    from coreset_bench.tracks.coreset import QUICK_PROXY

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--arch", default="cnn-small")
    ap.add_argument("--per-class", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=QUICK_PROXY["epochs"])
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--own-proxies", type=int, default=0, help="how many methods to time with their own proxy run (0 = all)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods (default: the 25 score-based ones; add deepfool to time it too)")
    ap.add_argument("--param", action="append", default=[], metavar="METHOD.KEY=VALUE",
                    help="a method parameter, e.g. deepfool.max_iter=1 (repeatable; the method's label shows it)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: one per core)")
    a = ap.parse_args()
    torch.set_num_threads(max(1, a.threads))
    plugins.load_plugins()
    ds = D.resolve(a.dataset, None, Path(tempfile.gettempdir()) / "cb-bench-cache")
    sp = D.make_splits(ds, val_fraction=0.1, seed=0, max_train_per_class=a.per_class)
    methods = [plugins.method(m.strip()) for m in a.methods.split(",") if m.strip()]
    overrides: dict[str, dict[str, str]] = {}
    for item in a.param:
        target, eq, value = item.partition("=")
        name, dot, key = target.partition(".")
        if not (eq and dot and name and key):
            ap.error(f"--param {item!r} is not METHOD.KEY=VALUE; write e.g. --param deepfool.max_iter=1")
        overrides.setdefault(name, {})[key] = value
    unknown = sorted(set(overrides) - {m.name for m in methods})
    if unknown:
        ap.error(f"--param names {', '.join(unknown)}, which --methods does not run")
    methods = [m.with_params(**overrides[m.name]) if m.name in overrides else m for m in methods]

    def label(m) -> str:
        extra = overrides.get(m.name)
        return m.name + (" (" + ", ".join(f"{k}={v}" for k, v in extra.items()) + ")" if extra else "")
    recipe = {**QUICK_PROXY, "epochs": a.epochs}
    ck = tuple(range(1, a.epochs + 1))

    def proxy(wanted, cache):
        spec = S.ProxySpec(a.dataset, {"bench": 1}, a.arch, recipe, 0, ck)
        return S.compute_signals(spec, wanted, x_pool=sp.x_pool, y_pool=sp.y_pool, x_val=sp.x_val, y_val=sp.y_val,
                                 num_classes=ds.num_classes, model_factory=lambda: M.build(a.arch, ds.shape, ds.num_classes, ds.mean, ds.std, 0),
                                 training=plugins.method("standard"), pad=ds.crop_pad, hflip=ds.hflip, cache_dir=cache)

    cpu = time.process_time  # CPU seconds of this process (all its threads): robust to other jobs

    def select(m, arrays):
        budget = int(round(a.fraction * len(sp.y_pool)))
        view = SelectionView(sp.x_pool, sp.y_pool, sp.x_val, sp.y_val, ds.num_classes, budget, a.fraction,
                             Signals(S.restrict(arrays, m.signals), method=m.name), 0, torch.Generator().manual_seed(0),
                             np.random.default_rng(0), lambda: M.build(a.arch, ds.shape, ds.num_classes, ds.mean, ds.std, 0))
        t, c = time.perf_counter(), cpu()
        validate_selection(m.select(view), view, m)
        sel_cpu[label(m)] = cpu() - c
        return time.perf_counter() - t

    sel_cpu: dict[str, float] = {}

    # one proxy run without any optional signal group: the unit of cost
    with tempfile.TemporaryDirectory() as tmp:
        t, c = time.perf_counter(), cpu()
        proxy({"loss"}, Path(tmp))
        one, one_cpu = time.perf_counter() - t, cpu() - c
    # shared: the union of all signals once, then every method reads it
    union = set().union(*(m.signals for m in methods))
    with tempfile.TemporaryDirectory() as tmp:
        t, c = time.perf_counter(), cpu()
        bundle = proxy(union, Path(tmp))
        shared_proxy, shared_proxy_cpu = time.perf_counter() - t, cpu() - c
        sel_times = {label(m): select(m, bundle.arrays) for m in methods}
    shared = shared_proxy + sum(sel_times.values())
    # DeepCore-style: every method trains its own proxy with the signals it needs
    timed = methods if a.own_proxies == 0 else methods[: a.own_proxies]
    own = 0.0
    for m in timed:
        t = time.perf_counter()
        b = proxy(set(m.signals), None)
        own += time.perf_counter() - t + sel_times[label(m)]
    own_total = own * len(methods) / len(timed)
    print(f"pool {len(sp.y_pool)} samples, {a.arch}, {a.epochs} proxy epochs, {len(methods)} methods at {a.fraction:g}")
    print(f"one proxy run (dynamics only):        {one:7.1f} s")
    print(f"shared proxy (all signals) + selects: {shared:7.1f} s  = {shared / one:.2f} x one proxy run")
    print(f"  of which input gradients/embeddings add {shared_proxy - one:.1f} s, selections {sum(sel_times.values()):.1f} s")
    print(f"each method its own proxy (DeepCore): {own_total:7.1f} s  = {own_total / one:.1f} x one proxy run"
          + ("" if len(timed) == len(methods) else f" (extrapolated from {len(timed)} methods)"))
    print(f"saving: {own_total / shared:.1f} x")
    print("selection seconds per method (proxy excluded): " + ", ".join(f"{k} {v:.2f}" for k, v in sel_times.items()))
    shared_cpu = shared_proxy_cpu + sum(sel_cpu.values())
    print(f"CPU time: one proxy run {one_cpu:.1f} s; shared proxy (all signals) + selects {shared_cpu:.1f} s = {shared_cpu / one_cpu:.2f} x one proxy run; "
          f"optional signal groups add {shared_proxy_cpu - one_cpu:.1f} s ({(shared_proxy_cpu - one_cpu) / one_cpu:.0%}), selections {sum(sel_cpu.values()):.1f} s")
    print("selection CPU seconds per method: " + ", ".join(f"{k} {v:.2f}" for k, v in sel_cpu.items()))


if __name__ == "__main__":
    main()
