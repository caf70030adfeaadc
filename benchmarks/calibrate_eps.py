"""Calibrate the digits threat model of ``coreset/quick@2``: robust accuracy of full-data models.

For each candidate eps (L-inf, [0, 1] pixels; step size eps/4, 5 inner steps for TRADES, PGD-20
and AutoAttack APGD-CE + APGD-T for evaluation), train cnn-small on the whole quick@2 pool with
standard and TRADES training (the quick@2 recipe) for a few seeds and print clean, PGD and
AutoAttack accuracy on every test point. Pick the eps at which the undefended full-data model
keeps a measurable robust accuracy (issue 20 asks for roughly 20-60 %).

    python benchmarks/calibrate_eps.py --eps 0.03,0.05,0.075,0.1 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from coreset_bench import data as D
from coreset_bench import models as M
from coreset_bench import registry as R
from coreset_bench import training as T
from coreset_bench.kinds import ThreatModel
from coreset_bench.robust import evaluate_robustness
from coreset_bench.tracks.coreset import QUICK_TRAIN


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--eps", default="0.03,0.05,0.075,0.1")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--dataset", default="digits:test=0.3")
    ap.add_argument("--trainings", default="standard,trades")
    ap.add_argument("--steps", type=int, default=QUICK_TRAIN["steps"])
    a = ap.parse_args()
    torch.set_num_threads(1)
    ds = D.resolve(a.dataset)
    sp = D.make_splits(ds, val_fraction=0.1, seed=12345)
    print(f"pool {len(sp.y_pool)}  test {len(sp.y_test)}  train steps {a.steps}")
    aa = R.method("autoattack").with_params(attacks="apgd-ce,apgd-t")
    pgd = R.method("pgd")
    std_models: dict[int, torch.nn.Module] = {}
    for eps in [float(e) for e in a.eps.split(",")]:
        rb = {"eps": eps, "step_size": eps / 4, "attack_steps": 5, "beta": 6.0}
        threat = ThreatModel(norm="linf", eps=eps, step_size=eps / 4, steps=20)
        for training in a.trainings.split(","):
            rows = []
            for seed in [int(s) for s in a.seeds.split(",")]:
                t0 = time.perf_counter()
                if training == "standard" and seed in std_models:
                    model = std_models[seed]
                else:
                    model = M.build("cnn-small", ds.shape, ds.num_classes, ds.mean, ds.std, seed)
                    T.train(model, sp.x_pool, sp.y_pool, method=R.method(training), recipe={**QUICK_TRAIN, "steps": a.steps, **rb},
                            num_classes=ds.num_classes, seed=seed, pad=ds.crop_pad, hflip=ds.hflip)
                    if training == "standard":
                        std_models[seed] = model
                res = evaluate_robustness(model, sp.x_test, sp.y_test, {"pgd": pgd, "autoattack": aa}, threat, seed=seed)
                rows.append((res["clean_acc"], res["pgd_acc"], res["autoattack_acc"]))
                print(f"eps={eps:.3f} {training:8s} seed={seed} clean={res['clean_acc']:.3f} pgd={res['pgd_acc']:.3f} aa={res['autoattack_acc']:.3f} ({time.perf_counter() - t0:.1f} s)", flush=True)
            m = np.mean(rows, axis=0)
            print(f"== eps={eps:.3f} {training:8s} mean clean={m[0]:.3f} pgd={m[1]:.3f} aa={m[2]:.3f}", flush=True)


if __name__ == "__main__":
    main()
