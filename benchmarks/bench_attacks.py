"""AutoAttack (APGD-CE + APGD-T) throughput and agreement: the batched attack
(``coreset_bench.apgd``, the ``autoattack`` plugin's ``backend="batched"``) against a plain
``pyautoattack`` call on the same model and points (issue 41).

For each model it prints both attacks' robust accuracy, their per-point verdict agreement, the
seconds each took (wall and CPU of this process), the ratio pyautoattack / batched (the speed-up),
and the image passes (forward + input gradient) each made, with their cost per pass and the
standard algorithm's floor: a point that stays robust needs ``(1 + targets) x (n_iter + 1)``
passes in any implementation (APGD-CE and every APGD-T target run to the end), so on a model that
keeps many points robust the speed-up is bounded by the ratio of the per-pass costs. ``--models K`` also attacks K models of the same architecture (different seeds) together
(stacked weights, vmapped) and one after another, to show what stacking buys on the device.

Cases: ``digits`` (cnn-small trained on the digits pool; quick@2's test split of 539 points),
``cifar10-jpeg`` / ``cifar10`` (cnn-small trained briefly on the real images, where present:
``CORESET_BENCH_DATA`` or ``./data``), ``cifar-shaped`` (3x32x32 random images with a
class-coloured pattern, cnn-small trained for 300 steps: the same network and per-point cost as on
CIFAR-10, for machines without the data; every point stays robust at 4/255, a degenerate case)
and ``cifar-shaped-mixed`` (the same trained for 40 steps on 400 images: some points break).

Usage::

    python benchmarks/bench_attacks.py                                   # digits and cifar-shaped-mixed, CPU
    python benchmarks/bench_attacks.py --case digits --n 539 --eps 0.075
    python benchmarks/bench_attacks.py --case cifar-shaped-mixed --n 100 --threads 1
    python benchmarks/bench_attacks.py --case digits --search-precision bf16   # the weaker option
    python benchmarks/bench_attacks.py --case cifar10-jpeg --n 500 --device cuda --models 8
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def _model(case: str, steps: int, seed: int, device: str):
    from coreset_bench import data as D
    from coreset_bench import models as M
    from coreset_bench import plugins
    from coreset_bench import training as T

    if case.startswith("cifar-shaped"):
        g = torch.Generator().manual_seed(0)
        patterns = torch.rand(10, 3, 4, 4, generator=g)
        n = 6000
        y = torch.randint(0, 10, (n,), generator=g)
        pat = torch.nn.functional.interpolate(patterns[y], size=32, mode="nearest")
        x = (0.5 * torch.rand(n, 3, 32, 32, generator=g) + 0.5 * pat).clamp(0, 1)
        n_pool = 400 if case == "cifar-shaped-mixed" else 5000
        x_pool, y_pool, x_test, y_test = x[:n_pool], y[:n_pool], x[5000:], y[5000:]
        shape, k, mean, std, pad, hflip = (3, 32, 32), 10, [0.5] * 3, [0.25] * 3, 0, False
    else:
        ds = D.resolve("digits:test=0.3" if case == "digits" else case)
        sp = D.make_splits(ds, val_fraction=0.1, seed=0, device="cpu")
        x_pool, y_pool, x_test, y_test = sp.x_pool, sp.y_pool, sp.x_test, sp.y_test
        shape, k, mean, std, pad, hflip = ds.shape, ds.num_classes, ds.mean, ds.std, ds.crop_pad, ds.hflip
    model = M.build("cnn-small", shape, k, mean, std, seed)
    T.train(model, x_pool, y_pool, method=plugins.method("standard"),
            recipe={"budget_mode": "iterations", "steps": steps, "batch_size": 64, "lr": 0.05}, num_classes=k, seed=seed, pad=pad, hflip=hflip)
    return model.to(device).eval(), x_test.to(device), y_test.to(device)


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


class _Passes:
    """Counts the images that go through a model's forward (a function hook survives
    ``copy.deepcopy`` as the same function, so the batched attack's folded copy is counted too)."""

    def __init__(self, model: torch.nn.Module) -> None:
        count = self.count = [0]

        def hook(module, inputs) -> None:
            count[0] += int(inputs[0].shape[0])

        self.handle = model.register_forward_pre_hook(hook)

    def take(self) -> int:
        n, self.count[0] = self.count[0], 0
        return n


def _pyautoattack(model, x, y, eps, targets, device):
    from pyautoattack import AutoAttack

    aa = AutoAttack(model, device=device, eps=eps, norm="Linf", seed=0, version="standard")
    aa.verbose = False
    aa.attacks_to_run = ["apgd-ce", "apgd-t"]
    aa.apgd_targeted.n_target_classes = targets
    x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=len(x))
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def main() -> None:
    from coreset_bench import plugins
    from coreset_bench.apgd import autoattack_apgd, autoattack_apgd_models

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", help="digits, cifar-shaped, cifar-shaped-mixed, cifar10-jpeg or cifar10 (repeatable; default: digits and cifar-shaped-mixed)")
    ap.add_argument("--n", type=int, default=0, help="attacked points (default: 539 on digits, 200 otherwise)")
    ap.add_argument("--eps", type=float, default=0.0, help="l-inf radius (default: 0.075 on digits, 4/255 otherwise)")
    ap.add_argument("--steps", type=int, default=0, help="training steps of the attacked model (default: 200 on digits, 40 on cifar-shaped-mixed, 300 otherwise)")
    ap.add_argument("--targets", type=int, default=9, help="APGD-T target classes (standard: 9)")
    ap.add_argument("--targets-in", default="auto", help="the batched attack's targets_in: auto, sequence or batch")
    ap.add_argument("--search-precision", default="fp32", help="the batched attack's search_precision: fp32 or bf16")
    ap.add_argument("--models", type=int, default=1, help="also attack this many models stacked vs one by one")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads or max(1, os.cpu_count() or 1))
    plugins.load_plugins()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {a.device}; times are wall (CPU of this process)", flush=True)
    opts = dict(targets_in=a.targets_in, search_precision=a.search_precision)
    for case in a.case or ["digits", "cifar-shaped-mixed"]:
        digits = case == "digits"
        n = a.n or (539 if digits else 200)
        eps = a.eps or (0.075 if digits else 4 / 255)
        steps = a.steps or (200 if digits else 40 if case == "cifar-shaped-mixed" else 300)
        model, xt, yt = _model(case, steps, 0, a.device)
        x, y = xt[:n], yt[:n]
        with torch.no_grad():
            clean = (model(x).argmax(1) == y).float().mean().item()
        passes = _Passes(model)
        ref, pw, pc = _timed(lambda: _pyautoattack(model, x, y, eps, a.targets, a.device))
        p_ref = passes.take()
        (adv, ours), bw, bc = _timed(lambda: autoattack_apgd(model, x, y, eps=eps, n_target_classes=a.targets, seed=0, **opts))
        p_ours = passes.take()
        passes.handle.remove()
        agree = (ours == ref).float().mean().item()
        floor = int(ours.sum()) * (1 + a.targets) * 101
        print(f"\n{case} cnn-small, {len(x)} points, eps {eps:.4g}, {a.targets} targets: clean {clean:.3f}; batched with {opts}", flush=True)
        print(f"  pyautoattack APGD-CE + APGD-T: robust {ref.float().mean().item():.4f}  {pw:7.1f} s ({pc:7.1f} s CPU)  {len(x) / pw:7.1f} img/s  "
              f"{p_ref} passes, {1e6 * pc / max(p_ref, 1):.0f} us CPU each", flush=True)
        print(f"  batched      APGD-CE + APGD-T: robust {ours.float().mean().item():.4f}  {bw:7.1f} s ({bc:7.1f} s CPU)  {len(x) / bw:7.1f} img/s  "
              f"{p_ours} passes, {1e6 * bc / max(p_ours, 1):.0f} us CPU each", flush=True)
        print(f"  verdict agreement {agree:.4f} ({int((ours != ref).sum())} of {len(x)} differ); robust accuracy difference "
              f"{100 * abs(ours.float().mean().item() - ref.float().mean().item()):.2f} points")
        print(f"  the robust points alone need {floor} passes ({100 * floor / max(p_ours, 1):.0f} % of the batched attack's); at the batched "
              f"per-pass cost the speed-up cannot exceed {pc / max(1e-9, bc / max(p_ours, 1) * floor):.2f}x CPU on this model", flush=True)
        print(f"  ratio pyautoattack / batched: {pw / bw:.2f}x wall, {pc / bc:.2f}x CPU", flush=True)
        if a.models > 1:
            models = [model] + [_model(case, steps, s, a.device)[0] for s in range(1, a.models)]
            _, sw, sc = _timed(lambda: autoattack_apgd_models(models, x, y, eps=eps, n_target_classes=a.targets, seed=0, stack=True, **opts))
            _, lw, lc = _timed(lambda: autoattack_apgd_models(models, x, y, eps=eps, n_target_classes=a.targets, seed=0, stack=False, **opts))
            print(f"  {a.models} models: stacked (vmap) {sw:.1f} s ({sc:.1f} s CPU), one by one {lw:.1f} s ({lc:.1f} s CPU): stacking {lw / sw:.2f}x", flush=True)


if __name__ == "__main__":
    main()
