"""The GPU figures of the coreset track, in one prepared run (issues 3 and 11).

1. ``fastnet`` time to 93 % test accuracy on full CIFAR-10 (all 50,000 training images, the
   10,000 test images) with the speed-run recipe below, trained by the harness's own loop
   (``coreset_bench.training.train``, tensor data path, batched crop+flip on the device). Test
   accuracy is measured after every epoch; its time is excluded from the training clock.
2. Training throughput (images/s) of the harness loop for ``standard`` and ``trades``
   (10-step inner maximization) on fastnet and resnet18, batch 512.
3. AutoAttack throughput (images/s) on the trained fastnet, eps 8/255 Linf, harness
   (``evaluate_robustness`` with the ``autoattack`` plugin) against a plain ``pyautoattack``
   call on the same model and points, for APGD-CE + APGD-T and for the standard four attacks.

Everything runs under the numeric settings of the harness's cells (``env.cell_scope``:
deterministic cuDNN/cuBLAS kernels on CUDA); ``--nondeterministic`` lifts them, to see their cost.
Everything is written to ``--out`` (``gpu_check.json`` and the log). Usage::

    python benchmarks/gpu_check.py --data shared/datasets/cifar10-jpeg.tar.gz --out "$OUT"
    python benchmarks/gpu_check.py --data /path/cifar10-jpeg --device cpu --limit 2000 \\
        --epochs 1 --n-attack 8 --throughput-steps 2 --throughput-batch 32 --archs fastnet --aa apgd-ce  # CPU smoke test

``--data`` takes the class-folder tree (``train/``, ``test/``) or the ``.tar.gz`` holding it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

# The speed-run recipe (after the public CIFAR-10 ResNet-9 recipes): batch 512, SGD with Nesterov
# momentum, one-cycle learning rate peaking at 0.4 a quarter into the run, label smoothing 0.2,
# random crop (pad 4) and horizontal flip. With the mean loss, lr 0.4 and weight decay 5e-4 match
# the summed-loss formulation of those recipes (lr 0.4 / 512, weight decay 5e-4 * 512).
FAST_RECIPE = {
    "budget_mode": "epochs",
    "epochs": 18,
    "batch_size": 512,
    "lr": 0.4,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "schedule": "onecycle",
    "warmup": 0.25,
    "label_smoothing": 0.2,
}


def _data_root(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise SystemExit(f"--data {path}: no such file or folder; run benchmarks/device/prepare.sh first (it copies the CIFAR-10 archive)")
    if p.is_dir():
        return p
    if p.name.endswith((".tar.gz", ".tgz", ".tar")):
        dest = Path(tempfile.mkdtemp(prefix="cifar10-"))
        with tarfile.open(p) as tf:
            tf.extractall(dest, filter="data")
        found = [d for d in dest.rglob("train") if d.is_dir()]
        if not found:
            raise SystemExit(f"{path}: no train/ folder inside the archive")
        return found[0].parent
    raise SystemExit(f"--data {path}: not a directory or a .tar.gz; pass the CIFAR-10 JPEG tree or its archive")


def main() -> None:
    from pyautoattack import AutoAttack

    from coreset_bench import data as D
    from coreset_bench import env as envmod
    from coreset_bench import models as M
    from coreset_bench import plugins
    from coreset_bench import training as T
    from coreset_bench.kinds import ThreatModel
    from coreset_bench.robust import evaluate_robustness

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default=".")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, default=FAST_RECIPE["epochs"])
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training images (smoke tests)")
    ap.add_argument("--n-attack", type=int, default=1000)
    ap.add_argument("--throughput-steps", type=int, default=40)
    ap.add_argument("--throughput-batch", type=int, default=512)
    ap.add_argument("--archs", default="fastnet,resnet18", help="architectures of the training-throughput part")
    ap.add_argument("--aa", default="apgd-ce,apgd-t;standard", help="AutoAttack configurations to time, ';'-separated ('standard' = all four)")
    ap.add_argument("--target", type=float, default=0.93)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nondeterministic", action="store_true", help="let cuDNN pick its fastest (nondeterministic) kernels, unlike the harness's cells")
    a = ap.parse_args()
    if a.nondeterministic:
        os.environ["CORESET_BENCH_NONDETERMINISTIC"] = "1"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log_f = open(out / "gpu_check.log", "w")

    def log(msg: str) -> None:
        print(msg, flush=True)
        log_f.write(msg + "\n")
        log_f.flush()

    def sync() -> None:
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()

    report: dict = {"environment": envmod.environment(a.device), "recipe": {**FAST_RECIPE, "epochs": a.epochs}}
    scope = envmod.cell_scope(a.device)  # the settings cells run under: deterministic kernels on CUDA
    scope.__enter__()
    log(f"deterministic kernels: {envmod.deterministic(a.device)}; torch threads: {envmod.cell_threads(a.device)}")
    plugins.load_plugins()
    t = time.perf_counter()
    root = _data_root(a.data)
    ds = D.resolve(f"imagefolder:{root}", None, Path(tempfile.gettempdir()) / "cb-gpu-cache")
    report["data_load_s"] = time.perf_counter() - t
    x_tr, y_tr = ds.x_train, ds.y_train
    if a.limit:
        x_tr, y_tr = x_tr[: a.limit], y_tr[: a.limit]
    x_tr, y_tr = x_tr.to(a.device), y_tr.to(a.device)
    x_te, y_te = ds.x_test.to(a.device), ds.y_test.to(a.device)
    log(f"data: {len(y_tr)} train, {len(y_te)} test images on {a.device} ({report['data_load_s']:.1f} s to load)")
    standard = plugins.method("standard")

    # 1. fastnet: time to the target accuracy with the speed-run recipe
    model = M.build("fastnet", ds.shape, ds.num_classes, ds.mean, ds.std, a.seed).to(a.device)
    curve: list[dict] = []
    clock = {"train": 0.0, "mark": 0.0}

    def on_epoch_end(epoch: int, m: torch.nn.Module) -> None:
        sync()
        clock["train"] += time.perf_counter() - clock["mark"]
        acc = T.accuracy(m, x_te, y_te, ds.num_classes)["acc"]
        curve.append({"epoch": epoch, "train_s": round(clock["train"], 2), "test_acc": acc})
        log(f"  epoch {epoch:2d}  train {clock['train']:7.1f} s  test acc {acc:.4f}")
        sync()
        clock["mark"] = time.perf_counter()

    sync()
    clock["mark"] = time.perf_counter()
    T.train(model, x_tr, y_tr, method=standard, recipe={**FAST_RECIPE, "epochs": a.epochs}, num_classes=ds.num_classes,
            seed=a.seed, pad=ds.crop_pad, hflip=ds.hflip, on_epoch_end=on_epoch_end)
    hit = next((c for c in curve if c["test_acc"] >= a.target), None)
    report["fastnet"] = {"curve": curve, "final_test_acc": curve[-1]["test_acc"], "train_s": curve[-1]["train_s"],
                         "time_to_target_s": hit["train_s"] if hit else None, "target": a.target,
                         "train_img_per_s": len(y_tr) * len(curve) / max(curve[-1]["train_s"], 1e-9)}
    log(f"fastnet: final {curve[-1]['test_acc']:.4f} after {curve[-1]['train_s']:.1f} s; "
        + (f"{a.target:.0%} reached at epoch {hit['epoch']} after {hit['train_s']:.1f} s" if hit else f"{a.target:.0%} not reached"))

    # 2. training throughput of the harness loop
    report["train_throughput"] = {}
    bs = a.throughput_batch
    for arch in [x.strip() for x in a.archs.split(",") if x.strip()]:
        for kind in ("standard", "trades"):
            net = M.build(arch, ds.shape, ds.num_classes, ds.mean, ds.std, a.seed).to(a.device)
            recipe = {"budget_mode": "iterations", "steps": 3, "batch_size": bs, "lr": 0.1,
                      "eps": 8 / 255, "step_size": 2 / 255, "attack_steps": 10, "beta": 6.0}
            T.train(net, x_tr, y_tr, method=plugins.method(kind), recipe=recipe, num_classes=ds.num_classes, seed=0, pad=ds.crop_pad, hflip=ds.hflip)  # warm-up
            sync()
            t = time.perf_counter()
            T.train(net, x_tr, y_tr, method=plugins.method(kind), recipe={**recipe, "steps": a.throughput_steps}, num_classes=ds.num_classes, seed=1, pad=ds.crop_pad, hflip=ds.hflip)
            sync()
            ips = a.throughput_steps * bs / (time.perf_counter() - t)
            report["train_throughput"][f"{arch}/{kind}"] = ips
            log(f"training {arch:8s} {kind:8s}: {ips:9.0f} img/s (batch {bs})")

    # 3. AutoAttack throughput, harness vs plain pyautoattack, on the trained fastnet
    model.eval()
    pick = torch.randperm(len(y_te), generator=torch.Generator().manual_seed(0))[: a.n_attack].to(a.device)
    x, y = x_te[pick], y_te[pick]  # a seeded sample of the test set (the folder order is by class)
    threat = ThreatModel(eps=8 / 255, step_size=2 / 255, steps=20)
    report["autoattack"] = {}
    for label in [c.strip() for c in a.aa.split(";") if c.strip()]:
        subset = "" if label == "standard" else label
        aa_m = plugins.method("autoattack").with_params(attacks=subset)
        sync()
        t = time.perf_counter()
        res = evaluate_robustness(model, x, y, {"autoattack": aa_m}, threat, seed=0, batch_size=len(x))
        sync()
        ours = time.perf_counter() - t
        aa = AutoAttack(model, device=a.device, eps=8 / 255, norm="Linf", seed=0, version="standard")
        aa.verbose = False
        if subset:
            aa.attacks_to_run = [s for s in aa.attacks_to_run if s in subset.split(",")]
        sync()
        t = time.perf_counter()
        x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=len(x))
        sync()
        plain = time.perf_counter() - t
        with torch.no_grad():
            plain_acc = (model(x_adv).argmax(1) == y).float().mean().item()
        report["autoattack"][label] = {"n": len(x), "harness_img_per_s": len(x) / ours, "plain_img_per_s": len(x) / plain,
                                       "ratio_harness_over_plain_speed": plain / ours, "harness_acc": res["autoattack_acc"],
                                       "plain_acc": plain_acc, "clean_acc": res["clean_acc"]}
        log(f"AutoAttack [{label}] on {len(x)} points: harness {len(x) / ours:8.1f} img/s (acc {res['autoattack_acc']:.3f}), "
            f"plain {len(x) / plain:8.1f} img/s (acc {plain_acc:.3f}), ratio {plain / ours:.2f}")

    scope.__exit__(None, None, None)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    log(f"wrote {out / 'gpu_check.json'}")


if __name__ == "__main__":
    sys.exit(main())
