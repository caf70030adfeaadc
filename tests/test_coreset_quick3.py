"""Issue 41: ``coreset/quick@3`` (AutoAttack on every attacked point, batched) and the attack step."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from coreset_bench import models as M
from coreset_bench.plugins.attack.autoattack import AutoAttackMethod
from coreset_bench.tracks.base import Profile
from coreset_bench.tracks.coreset import CoresetTrack


def test_quick3_is_quick2_with_autoattack_on_every_point_and_quick2_stays_the_default():
    t = CoresetTrack()
    q2, q3 = t.profile("quick@2"), t.profile("quick@3")
    assert t.profile(None).id == t.profile("quick").id == t.profile("coreset/quick").id == "coreset/quick@2"
    assert q3.id == "coreset/quick@3" and q3.axes == q2.axes and tuple(q3.seeds) == tuple(q2.seeds)
    same = ("val_fraction", "dataset_args", "proxy", "checkpoints", "train", "robust", "attacks", "eval_subset", "masking_subset", "eval_subset_per_repeat", "coverage_flag_ratio")
    assert all(q3.settings[k] == q2.settings[k] for k in same)
    assert "attack_subsets" not in q3.settings  # AutoAttack on all of the 539 attacked points
    assert q3.settings["eval_subset"] == "all" and q3.settings["attack_batch_size"] >= 539
    assert q3.settings["attack_params"]["autoattack"] == {"attacks": "apgd-ce,apgd-t", "backend": "batched"}
    # quick@2 as published: AutoAttack by pyautoattack on 60 points
    assert q2.settings["attack_subsets"] == {"autoattack": 60} and "backend" not in q2.settings["attack_params"]["autoattack"]
    assert "coreset/quick@3" in t.claim_profiles and "coreset/quick@2" in t.claim_profiles


def test_the_attack_step_runs_the_batched_autoattack_on_all_points_in_one_batch(monkeypatch):
    g = torch.Generator().manual_seed(0)
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    model = M.build("cnn-small", (1, 8, 8), 10, [0.5], [0.5], 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(60):
        i = torch.randint(0, 1200, (64,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i]), y[i]).backward()
        opt.step()
    model.eval()
    sp = SimpleNamespace(x_test=x[1200:1320], y_test=y[1200:1320])
    q3 = CoresetTrack().profile("quick@3")
    settings = {**q3.settings, "robust": {**q3.settings["robust"], "eval_steps": 3}, "masking_subset": 20}
    prof = Profile("coreset", "quick3-test", 1, q3.axes, seeds=(0,), settings=settings)
    sizes = []
    real = AutoAttackMethod.perturb

    def spy(self, model, xb, yb, threat, generator):
        sizes.append((self.params.get("backend"), len(xb)))
        return real(self, model, xb, yb, threat, generator)

    monkeypatch.setattr(AutoAttackMethod, "perturb", spy)
    per_point: dict[str, np.ndarray] = {}
    out = CoresetTrack()._robust_metrics(model, sp, prof, ["pgd", "autoattack"], 0, per_point=per_point, num_classes=10, points={}, subset_seed=5)
    assert sizes == [("batched", 120)]
    assert per_point["autoattack_acc"].size == per_point["pgd_acc"].size == 120
    assert out["autoattack_acc"] == per_point["autoattack_acc"].mean()
    assert 0.0 < out["autoattack_acc"] <= out["pgd_acc"] + 1 / 120 and out["check_order_ok"] == 1.0 and out["check_ball_ok"] == 1.0
    assert out["autoattack_acc"] < out["eval_subset_clean_acc"]
