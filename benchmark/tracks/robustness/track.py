"""The ``robustness`` track: attacks ranked by the accuracy they leave on fixed models.

The RobustBench idea turned around: the models are fixtures and the ``attack`` plugins are the
contestants. For each profile the harness trains, once and cached on disk, a model per
(dataset, architecture, training recipe, repeat) on the full training pool (standard and TRADES),
then evaluates each attack on a fixed, seeded test subset under the profile's threat model.
The primary metric is the robust accuracy the attack leaves (``robust_acc``, lower is better:
a stronger attack); clean accuracy of the same points is stored beside it, and every output is
checked to lie in the eps-ball and the valid pixel range (a violation fails the cell, naming
the plugin). Standard AutoAttack is the reference row.

The track runs on the cell pipeline (``Track.run_cell``): ``fixture`` (the cached model and the
fixed test points), ``view`` (an ``AttackView``), ``evaluate`` (accuracies of the harness's own
model). The attack runs in the contestant worker (``coreset_bench.contest``) on its own copy of
the model, rebuilt from its architecture and weights, and of the attacked points with their
labels (the attack protocol's inputs); no other test point is in its process, and a model it
damages is its own copy.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import data as D
from ... import locks
from ... import models as M
from ... import training as T
from ...contest import ContestResult
from ...kinds import AttackView, Method, ThreatModel
from ..base import Cell, CellContext, CellResult, Profile, Track, canonical_json
from ..coreset.track import QUICK_TRAIN, ROBUST_DIGITS, CIFAR_RECIPE, CIFAR_ROBUST


def _profiles() -> list[Profile]:
    return [
        Profile(
            "robustness",
            "tiny",
            1,
            {"dataset": ["digits"], "arch": ["mlp"], "training": ["standard"]},
            seeds=(0,),
            settings={"val_fraction": 0.1, "max_train_per_class": 40, "train": {"budget_mode": "iterations", "steps": 40, "batch_size": 32, "lr": 0.05}, "robust": ROBUST_DIGITS, "eval_subset": 40, "reference_params": {"autoattack": {"attacks": "apgd-ce"}}},
            description="Seconds-long profile for tests.",
        ),
        Profile(
            "robustness",
            "quick",
            1,
            {"dataset": ["digits"], "arch": ["cnn-small"], "training": ["standard", "trades"]},
            seeds=(0, 1),
            settings={"val_fraction": 0.1, "train": QUICK_TRAIN, "robust": ROBUST_DIGITS, "eval_subset": 100, "reference_params": {"autoattack": {"attacks": "apgd-ce,apgd-t"}}},
            description="Digits, cnn-small trained with standard and TRADES recipes, eps = 0.1, on the CPU.",
        ),
        Profile(
            "robustness",
            "quick",
            2,
            {"dataset": ["digits"], "arch": ["cnn-small"], "training": ["standard", "trades"]},
            seeds=(0, 1, 2, 3, 4),
            settings={"val_fraction": 0.1, "train": QUICK_TRAIN, "robust": ROBUST_DIGITS, "eval_subset": 200, "reference_params": {"autoattack": {"attacks": "apgd-ce,apgd-t"}}},
            description="Digits, cnn-small trained with standard and TRADES recipes, eps = 0.1, on the CPU; 5 seeds and 200 attacked points (version 1: 2 seeds, 100 points: too few for an interval).",
        ),
        Profile(
            "robustness",
            "cifar10",
            1,
            {"dataset": ["cifar10"], "arch": ["resnet18"], "training": ["standard", "trades"]},
            seeds=(0,),
            settings={"val_fraction": 0.02, "train": CIFAR_RECIPE, "robust": CIFAR_ROBUST, "eval_subset": 1000},
            description="CIFAR-10 ResNet-18 (standard and TRADES), eps = 8/255, on a GPU.",
            device="cuda",
        ),
    ]


class RobustnessTrack(Track):
    name = "robustness"
    summary = "Attacks ranked by the accuracy they leave on fixed standard- and TRADES-trained models."
    contestant_kind = "attack"
    fixtures = ("training",)
    primary_metric = "robust_acc"
    secondary_metrics = ("clean_acc", "attack_s")
    metric_directions = {"robust_acc": "min", "clean_acc": "max", "attack_s": "min"}
    metric_bounds = {"robust_acc": (0.0, 1.0), "clean_acc": (0.0, 1.0), "attack_s": (0.0, None)}
    #: 1 when the attack left no more points robust than clean (+1), per cell
    proportion_metrics = ("check_below_clean",)
    metric_units = {"robust_acc": "%", "clean_acc": "%", "attack_s": "s"}
    baseline_method = "autoattack"
    reference_methods = ("autoattack",)

    def __init__(self) -> None:
        self._models: dict[str, torch.nn.Module] = {}

    def profiles(self) -> list[Profile]:
        return _profiles()

    def _fixture(self, profile: Profile, cell: Cell, sp: D.Splits, ctx: CellContext) -> tuple[torch.nn.Module, float, bool]:
        """The fixed model of this cell's (dataset, arch, training, repeat), trained once."""
        from ... import registry as plugins

        ax = cell.axes
        spec = {"profile": profile.id, "dataset": ax["dataset"], "arch": ax["arch"], "training": ax["training"], "repeat": cell.repeat}
        key = hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:24]
        ds = sp.dataset
        seed = int(key[:8], 16) % (2**31)
        model = M.build(str(ax["arch"]), ds.shape, ds.num_classes, ds.mean, ds.std, seed).to(ctx.device)
        path = Path(ctx.cache_dir) / "robustness" / f"{key}.pt"
        with locks.lock_for(path):  # one cell trains, concurrent ones wait and load
            if path.exists():
                blob = torch.load(path, weights_only=True)
                model.load_state_dict(blob["state"])
                return model.eval(), float(blob["train_s"]), True
            t0 = time.perf_counter()
            recipe = {**dict(profile.settings["train"]), **dict(profile.settings["robust"])}
            ctx.progress(f"training the attacked model ({ax['training']})", 0.0)
            T.train(model, sp.x_pool, sp.y_pool, method=plugins.method(str(ax["training"])), recipe=recipe, num_classes=ds.num_classes, seed=seed, pad=ds.crop_pad, hflip=ds.hflip,
                    progress=lambda what, f: ctx.progress(f"training the attacked model ({ax['training']})", f))
            train_s = time.perf_counter() - t0
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save({"state": {k: v.cpu() for k, v in model.state_dict().items()}, "train_s": train_s}, tmp)
            os.replace(tmp, path)
            return model.eval(), train_s, False

    # ---- the pipeline's pieces -------------------------------------------------------------
    def fixture(self, profile: Profile, cell: Cell, ctx: CellContext) -> _Fixture:
        """The attacked model of the cell (trained once, cached) and the fixed, seeded test points."""
        st = profile.settings
        sp = self.splits(profile, str(cell.axes["dataset"]), ctx)
        model, train_s, shared = self._fixture(profile, cell, sp, ctx)
        n = min(int(st.get("eval_subset", 500)), len(sp.y_test))
        sub = torch.from_numpy(np.sort(D.stratified_subset(sp.y_test.cpu().numpy(), n, seed=0))).to(sp.x_test.device)
        rb = st["robust"]
        threat = ThreatModel(norm="linf", eps=float(rb["eps"]), step_size=float(rb["step_size"]), steps=int(rb.get("eval_steps", 20)))
        ctx.progress(f"attack on {n} points", 0.0)
        return _Fixture(model, sp.x_test[sub], sp.y_test[sub], threat, train_s, shared)

    def view(self, fixture: _Fixture, cell: Cell, method: Method) -> AttackView:
        """The model, the attacked points with their labels, the threat model and the cell's
        generator (the contestant worker receives a copy: the model as its weights)."""
        return AttackView(fixture.model, fixture.x, fixture.y, fixture.threat, torch.Generator().manual_seed(cell.seed))

    def evaluate(self, fixture: _Fixture, cell: Cell, contest: ContestResult) -> CellResult:
        """Accuracy of the harness's own model on the attacked points, clean and perturbed."""
        x_adv, x, y, n = contest.output, fixture.x, fixture.y, len(fixture.y)
        with torch.no_grad():
            clean = (T.predict(fixture.model, x).argmax(1) == y).float().mean().item()
            robust = (T.predict(fixture.model, x_adv.detach()).argmax(1) == y).float().mean().item()
        attack_s = contest.seconds
        return CellResult(
            metrics={"robust_acc": robust, "clean_acc": clean, "attack_s": attack_s, "check_below_clean": float(robust <= clean + 1.0 / n)},
            timings={"fixture_train_s": fixture.train_s, "attack_s": attack_s, "total_s": attack_s},
            info={"eval_points": n, "eps": fixture.threat.eps, "fixture_shared": fixture.shared, "primary_metric": self.primary_metric},
        )


@dataclass
class _Fixture:
    model: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor
    threat: ThreatModel
    train_s: float
    shared: bool
