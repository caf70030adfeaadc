"""Attack evaluation throughput: the harness's PGD and AutoAttack evaluation against a plain
``pyautoattack`` call on the same model and points (images per second, ratios printed).

Usage::

    python benchmarks/bench_attacks.py                      # digits, cnn-small, CPU
    python benchmarks/bench_attacks.py --device cuda --dataset cifar10 --arch resnet18 --n 1000
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def main() -> None:
    from pyautoattack import AutoAttack

    from coreset_bench import data as D
    from coreset_bench import models as M
    from coreset_bench import plugins
    from coreset_bench import training as T
    from coreset_bench.kinds import ThreatModel
    from coreset_bench.robust import evaluate_robustness

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--arch", default="cnn-small")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=200, help="training steps of the model under attack")
    ap.add_argument("--attacks", default="apgd-ce,apgd-t", help="AutoAttack components (empty: the standard four)")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    plugins.load_plugins()
    ds = D.resolve(a.dataset)
    sp = D.make_splits(ds, val_fraction=0.1, seed=0, device=a.device)
    model = M.build(a.arch, ds.shape, ds.num_classes, ds.mean, ds.std, 0).to(a.device)
    T.train(model, sp.x_pool, sp.y_pool, method=plugins.method("standard"), recipe={"budget_mode": "iterations", "steps": a.steps, "batch_size": 64, "lr": 0.05}, num_classes=ds.num_classes, seed=0, pad=ds.crop_pad, hflip=ds.hflip)
    model.eval()
    x, y = sp.x_test[: a.n], sp.y_test[: a.n]
    threat = ThreatModel(eps=a.eps, step_size=a.eps / 4, steps=20)

    pgd = plugins.method("pgd")
    t = time.perf_counter()
    res_pgd = evaluate_robustness(model, x, y, {"pgd": pgd}, threat, seed=0)
    pgd_s = time.perf_counter() - t

    aa_m = plugins.method("autoattack").with_params(attacks=a.attacks)
    t = time.perf_counter()
    res_aa = evaluate_robustness(model, x, y, {"autoattack": aa_m}, threat, seed=0)
    ours = time.perf_counter() - t

    aa = AutoAttack(model, device=a.device, eps=a.eps, norm="Linf", seed=0, version="standard")
    aa.verbose = False
    if a.attacks:
        aa.attacks_to_run = [s for s in aa.attacks_to_run if s in a.attacks.split(",")]
    t = time.perf_counter()
    x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=len(x))
    plain = time.perf_counter() - t
    with torch.no_grad():
        plain_acc = (model(x_adv).argmax(1) == y).float().mean().item()
    n = len(x)
    print(f"{a.dataset} {a.arch} {a.device}, {n} points, eps {a.eps}: clean {res_pgd['clean_acc']:.3f}")
    print(f"PGD-20 (harness):              {n / pgd_s:8.1f} img/s  acc {res_pgd['pgd_acc']:.3f}")
    print(f"AutoAttack [{a.attacks or 'standard'}] harness: {n / ours:8.1f} img/s  acc {res_aa['autoattack_acc']:.3f}")
    print(f"AutoAttack plain pyautoattack: {n / plain:8.1f} img/s  acc {plain_acc:.3f}")
    print(f"ratio harness / plain: {plain / ours:.2f} (1.0 = no overhead)")


if __name__ == "__main__":
    main()
