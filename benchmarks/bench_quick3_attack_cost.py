"""Issue 41: the AutoAttack cost of one coreset/quick cell, quick@3's way against quick@2's.

On quick@2-like models (digits test=0.3, cnn-small, the quick@2 recipe and threat model; a 30 %
random subset and the full pool; standard and TRADES training) it times, in CPU-seconds of this
process with one torch thread (a cell's setting), the batched AutoAttack (APGD-CE + APGD-T) on all
539 attacked points in one batch (quick@3) and pyautoattack's on quick@2's 60 points, through the
harness's ``evaluate_robustness``. The difference per cell, times the main job's cells, estimates
what quick@3 adds to the main job (``bench_quick_profile.py --baseline quick@2 --profile quick@3``
measures it directly).

Usage::

    python benchmarks/bench_quick3_attack_cost.py
"""

from __future__ import annotations

import time

import numpy as np
import torch


def main() -> None:
    from coreset_bench import data as D
    from coreset_bench import models as M
    from coreset_bench import plugins
    from coreset_bench import training as T
    from coreset_bench.kinds import ThreatModel
    from coreset_bench.robust import evaluate_robustness
    from coreset_bench.tracks.coreset import QUICK2_TRAIN, ROBUST_DIGITS_2

    torch.set_num_threads(1)
    plugins.load_plugins()
    ds = D.resolve("digits:test=0.3")
    sp = D.make_splits(ds, val_fraction=0.1, seed=0, device="cpu")
    rb = ROBUST_DIGITS_2
    threat = ThreatModel(eps=rb["eps"], step_size=rb["step_size"], steps=20)
    x, y = sp.x_test, sp.y_test
    sub = torch.from_numpy(D.stratified_subset(y.numpy(), 60, seed=1))
    for training in ("standard", "trades"):
        for frac in (0.3, 1.0):
            g = np.random.default_rng(0)
            idx = torch.from_numpy(np.sort(g.choice(len(sp.y_pool), int(frac * len(sp.y_pool)), replace=False)))
            model = M.build("cnn-small", ds.shape, ds.num_classes, ds.mean, ds.std, 1)
            T.train(model, sp.x_pool[idx], sp.y_pool[idx], method=plugins.method(training), recipe={**QUICK2_TRAIN, **rb}, num_classes=10, seed=0, pad=ds.crop_pad, hflip=ds.hflip)
            model.eval()
            aa_b = plugins.method("autoattack").with_params(attacks="apgd-ce,apgd-t", backend="batched")
            aa_p = plugins.method("autoattack").with_params(attacks="apgd-ce,apgd-t")
            t = time.process_time()
            rb_ = evaluate_robustness(model, x, y, {"autoattack": aa_b}, threat, seed=0, batch_size=1024)
            tb = time.process_time() - t
            t = time.process_time()
            rp_ = evaluate_robustness(model, x[sub], y[sub], {"autoattack": aa_p}, threat, seed=0)
            tp = time.process_time() - t
            print(f"{training} frac {frac}: clean {rb_['clean_acc']:.3f}; batched {len(x)} pts {tb:.1f} CPU-s (AA {rb_['autoattack_acc']:.3f}); "
                  f"pyautoattack 60 pts {tp:.1f} CPU-s (AA {rp_['autoattack_acc']:.3f}); per point: pyautoattack {tp / 60 * 1000:.1f} ms, "
                  f"batched {tb / len(x) * 1000:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
