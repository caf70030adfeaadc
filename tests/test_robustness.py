"""Attacks (fgsm, pgd, autoattack), adversarial training (trades, pgd-at) and evaluate_robustness.

The reference point is a binary linear classifier f(x) = w.x + b (logits [0, f(x)]): with label
sign s = 2y - 1 the optimal l-inf perturbation is -eps * s * sign(w) and the point stays correct
iff s * f(x) > eps * ||w||_1 (l2: -eps * s * w / ||w||_2, iff s * f(x) > eps * ||w||_2), as long as
the points lie in [eps, 1 - eps] so the [0, 1] clip does not interfere.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from coreset_bench.kinds import AttackMethod, ThreatModel, TrainContext
from coreset_bench.plugins.attack import autoattack as autoattack_mod
from coreset_bench.plugins.attack import fgsm as fgsm_mod
from coreset_bench.plugins.attack import pgd as pgd_mod
from coreset_bench.plugins.training import pgd_at as pgd_at_mod
from coreset_bench.plugins.training import trades as trades_mod
from coreset_bench.plugins.attack.autoattack import AutoAttackMethod
from coreset_bench.plugins.attack.fgsm import FGSM
from coreset_bench.plugins.attack.pgd import PGD
from coreset_bench.plugins.training.pgd_at import PGDAT
from coreset_bench.plugins.training.trades import TRADES
from coreset_bench.robust import (
    AttackOutputError,
    check_attack_output,
    eval_mode,
    evaluate_robustness,
    perturbation_norm,
    project,
    threat_from_recipe,
)

RECIPE = {"eps": 0.1, "step_size": 0.025, "attack_steps": 5, "beta": 6.0}


# --------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def binary_linear(d: int = 6, seed: int = 0) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    """A 2-class linear model whose logit difference is w.x + b (|w_i| >= 0.2)."""
    g = gen(seed)
    w = (torch.rand(d, generator=g) + 0.2) * torch.sign(torch.randn(d, generator=g))
    b = -0.5 * w.sum()
    model = nn.Linear(d, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.weight[1] = w
        model.bias[1] = b
    return model, w, b


def linear_points(w, b, eps, n=200, seed=1, flip=0.1, margin_norm=None):
    """Points in [eps, 1 - eps]^d with labels (a fraction flipped, i.e. misclassified), away from
    ties of the clean and the closed-form robust decision."""
    g = gen(seed)
    d = w.numel()
    x = eps + (1 - 2 * eps) * torch.rand(4 * n, d, generator=g)
    z = x @ w + b
    y = (z > 0).long()
    flips = torch.rand(4 * n, generator=g) < flip
    y = torch.where(flips, 1 - y, y)
    s = (2 * y - 1).float()
    budget = eps * (w.abs().sum() if margin_norm in (None, "linf") else w.norm())
    keep = ((s * z - budget).abs() > 1e-3) & (z.abs() > 1e-3)
    return x[keep][:n], y[keep][:n]


def closed_form_correct(w, b, x, y, eps, norm="linf") -> int:
    s = (2 * y - 1).float()
    budget = eps * (w.abs().sum() if norm == "linf" else w.norm())
    return int((s * (x @ w + b) > budget).sum())


def n_correct(model, x, y) -> int:
    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum())


def tiny_cnn(classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, classes)
    )


def tiny_mlp(d: int = 8, classes: int = 4, seed: int = 0, dropout: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(d, 16), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers, nn.Linear(16, classes))


def boundary_images(n: int = 12, seed: int = 0) -> torch.Tensor:
    """(n, 1, 6, 6) images in [0, 1] with many pixels exactly at 0 and 1 (the clip matters)."""
    g = gen(seed)
    x = torch.rand(n, 1, 6, 6, generator=g)
    x[:, :, :2] = 0.0
    x[:, :, -2:] = 1.0
    return x


class ModeRecorder(nn.Module):
    """Wraps a model and records ``self.training`` at each forward."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.inner(x)


def assert_in_threat(x_adv, x, threat):
    assert x_adv.shape == x.shape
    assert torch.isfinite(x_adv).all()
    dist = perturbation_norm(x_adv - x, threat.norm)
    assert float(dist.max()) <= threat.eps + 1e-6
    assert float(x_adv.min()) >= threat.lower - 1e-6 and float(x_adv.max()) <= threat.upper + 1e-6
    check_attack_output("under-test", x_adv, x, threat)


# --------------------------------------------------------------------------------------------
# registration and metadata
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module, name, kind, defaults",
    [
        (fgsm_mod, "fgsm", "attack", {}),
        (pgd_mod, "pgd", "attack", {"steps": None, "step_size": None, "restarts": 1, "random_start": True}),
        (autoattack_mod, "autoattack", "attack", {"version": "standard", "attacks": "", "targets": 9}),
        (trades_mod, "trades", "training", {"beta": 6.0}),
        (pgd_at_mod, "pgd-at", "training", {}),
    ],
)
def test_register_methods(module, name, kind, defaults):
    got = []
    module.register_methods(got.append)
    assert len(got) == 1
    m = got[0]
    assert (m.name, m.kind) == (name, kind)
    assert m.params == defaults
    assert m.summary and m.citation and m.version
    assert "20" in m.citation  # a year


# --------------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_project_lands_in_ball_and_box_and_keeps_feasible_points(norm):
    g = gen(3)
    x = torch.rand(50, 1, 4, 4, generator=g)
    threat = ThreatModel(norm=norm, eps=0.2 if norm == "linf" else 0.8)
    far = x + 3 * torch.randn(x.shape, generator=g)
    p = project(far, x, threat)
    assert_in_threat(p, x, threat)
    inside = project(p, x, threat)
    assert torch.allclose(inside, p, atol=1e-6)  # idempotent on feasible points
    if norm == "linf":  # exact projection: each coordinate is the clip of the request
        expect = torch.minimum(torch.maximum(far, x - 0.2), x + 0.2).clamp(0, 1)
        assert torch.equal(p, expect)


def test_threat_from_recipe_and_missing_keys():
    t = threat_from_recipe(RECIPE)
    assert (t.norm, t.eps, t.step_size, t.steps, t.lower, t.upper) == ("linf", 0.1, 0.025, 5, 0.0, 1.0)
    with pytest.raises(KeyError, match="attack_steps"):
        threat_from_recipe({"eps": 0.1, "step_size": 0.01})


# --------------------------------------------------------------------------------------------
# attacks on a linear model: closed form
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("attack", [FGSM(), PGD(), PGD(restarts=3)], ids=["fgsm", "pgd", "pgd-restarts"])
def test_attacks_reach_the_closed_form_on_a_binary_linear_model(attack, norm):
    model, w, b = binary_linear()
    eps = 0.05 if norm == "linf" else 0.2
    x, y = linear_points(w, b, eps, margin_norm=norm)
    threat = ThreatModel(norm=norm, eps=eps, step_size=eps / 2, steps=20)
    expected = closed_form_correct(w, b, x, y, eps, norm)
    assert 0 < expected < n_correct(model, x, y) < len(y)  # the attack matters, some are wrong
    x_adv = attack.perturb(model, x, y, threat, gen())
    assert_in_threat(x_adv, x, threat)
    assert n_correct(model, x_adv, y) == expected


def test_fgsm_is_the_closed_form_perturbation():
    model, w, b = binary_linear()
    eps = 0.05
    x, y = linear_points(w, b, eps, n=50)
    x_adv = FGSM().perturb(model, x, y, ThreatModel(eps=eps), gen())
    s = (2 * y - 1).float()[:, None]
    assert torch.allclose(x_adv, x - eps * s * torch.sign(w), atol=1e-6)


def test_pgd_returns_misclassified_points_unchanged_and_restarts_never_hurt():
    model = tiny_mlp()
    g = gen(5)
    x = torch.rand(64, 8, generator=g)
    y = torch.randint(0, 4, (64,), generator=g)
    wrong = model(x).argmax(1) != y
    assert wrong.any()
    threat = ThreatModel(eps=0.03, step_size=0.01, steps=5)
    one = PGD().perturb(model, x, y, threat, gen(0))
    assert torch.equal(one[wrong], x[wrong])
    three = PGD(restarts=3).perturb(model, x, y, threat, gen(0))
    assert n_correct(model, three, y) <= n_correct(model, one, y)


# --------------------------------------------------------------------------------------------
# invariants: ball, range, modes, determinism
# --------------------------------------------------------------------------------------------

FAST_ATTACKS = {
    "fgsm": FGSM(),
    "pgd": PGD(),
    "pgd-restarts": PGD(restarts=2, steps=4, step_size=0.1),
    "pgd-no-random-start": PGD(random_start=False),
}


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("key", list(FAST_ATTACKS))
def test_attack_outputs_stay_in_ball_and_range(key, norm):
    model = tiny_cnn()
    x = boundary_images()
    y = torch.arange(len(x)) % 3
    threat = ThreatModel(norm=norm, eps=0.1 if norm == "linf" else 0.5, step_size=0.05, steps=5)
    x_adv = FAST_ATTACKS[key].perturb(model, x, y, threat, gen())
    assert_in_threat(x_adv, x, threat)
    assert not torch.equal(x_adv, x)


def test_attacks_on_a_narrower_box():
    model = tiny_cnn()
    x = 0.2 + 0.6 * boundary_images()
    y = torch.arange(len(x)) % 3
    threat = ThreatModel(eps=0.15, step_size=0.05, steps=5, lower=0.2, upper=0.8)
    for attack in (FGSM(), PGD()):
        assert_in_threat(attack.perturb(model, x, y, threat, gen()), x, threat)


@pytest.mark.parametrize("attack", [FGSM(), PGD(restarts=2)], ids=["fgsm", "pgd"])
def test_attacks_use_eval_mode_restore_modes_and_leave_param_grads_alone(attack):
    inner = tiny_mlp(dropout=True)
    model = ModeRecorder(inner).train()
    x = torch.rand(16, 8, generator=gen(1))
    y = torch.randint(0, 4, (16,), generator=gen(2))
    with torch.no_grad():  # the harness may hold no_grad; attacks need their own gradients
        x_adv = attack.perturb(model, x, y, ThreatModel(eps=0.1, step_size=0.03, steps=4), gen())
    assert model.modes and not any(model.modes)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert not x_adv.requires_grad


def test_pgd_is_deterministic_under_a_fixed_generator_and_uses_it():
    model = tiny_cnn()
    x = boundary_images()
    y = torch.arange(len(x)) % 3
    threat = ThreatModel(eps=0.1, step_size=0.02, steps=3)
    state = torch.get_rng_state()
    a = PGD(restarts=2).perturb(model, x, y, threat, gen(7))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not consumed
    b = PGD(restarts=2).perturb(model, x, y, threat, gen(7))
    c = PGD(restarts=2).perturb(model, x, y, threat, gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(FGSM().perturb(model, x, y, threat, gen(1)), FGSM().perturb(model, x, y, threat, gen(2)))


def test_pgd_step_and_steps_overrides():
    model, w, b = binary_linear()
    x, y = linear_points(w, b, 0.05, n=50)
    threat = ThreatModel(eps=0.05, step_size=0.02, steps=10)
    eff = PGD(steps=3, step_size=0.001).effective_threat(threat)
    assert (eff.steps, eff.step_size, eff.eps) == (3, 0.001, 0.05)
    assert PGD().effective_threat(threat) == threat
    # 3 tiny steps from the clean point cannot reach the closed-form optimum
    weak = PGD(steps=3, step_size=0.001, random_start=False).perturb(model, x, y, threat, gen())
    assert float(perturbation_norm(weak - x, "linf").max()) <= 0.003 + 1e-6


# --------------------------------------------------------------------------------------------
# autoattack
# --------------------------------------------------------------------------------------------


def test_autoattack_closed_form_ball_and_rng_on_breakable_points():
    """Every correctly classified point is breakable, so APGD-CE ends the run (fast)."""
    model, w, b = binary_linear()
    eps = 0.1
    g = gen(4)
    x = eps + (1 - 2 * eps) * torch.rand(400, 6, generator=g)
    z = x @ w + b
    keep = (z.abs() > 1e-3) & (z.abs() < eps * w.abs().sum() - 0.05)
    x = x[keep][:10]
    y = ((x @ w + b) > 0).long()
    y[:2] = 1 - y[:2]  # two misclassified points: returned unchanged
    threat = ThreatModel(eps=eps)
    state = torch.get_rng_state()
    x_adv = AutoAttackMethod().perturb(model, x, y, threat, gen())
    assert torch.equal(torch.get_rng_state(), state)
    assert_in_threat(x_adv, x, threat)
    assert n_correct(model, x_adv, y) == closed_form_correct(w, b, x, y, eps) == 0
    assert torch.equal(x_adv[:2], x[:2])


def test_autoattack_rejects_unknown_norm_and_version():
    model, w, b = binary_linear()
    x, y = linear_points(w, b, 0.05, n=4)
    with pytest.raises(ValueError, match="norm"):
        AutoAttackMethod().perturb(model, x, y, ThreatModel(norm="l1"), gen())
    with pytest.raises(ValueError, match="version"):
        AutoAttackMethod(version="custom").perturb(model, x, y, ThreatModel(), gen())
    for bad in (0, -2, "three"):
        with pytest.raises(ValueError, match="targets must be a positive whole number"):
            AutoAttackMethod(targets=bad).perturb(model, x, y, ThreatModel(), gen())


def test_autoattack_targets_sets_the_target_class_count(monkeypatch):
    """``targets`` reaches APGD-T and FAB-T (capped at classes - 1); the default is the standard 9."""
    import pyautoattack

    seen = []
    real = pyautoattack.AutoAttack.run_standard_evaluation

    def spy(self, x, y, **kw):
        seen.append((self.apgd_targeted.n_target_classes, self.fab.n_target_classes))
        return real(self, x, y, **kw)

    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", spy)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 12))
    x, y = torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 2])
    for params, want in (({}, 9), ({"targets": 3}, 3), ({"targets": 20}, 11)):
        AutoAttackMethod(attacks="apgd-ce", **params).perturb(model, x, y, ThreatModel(eps=0.01), gen())
        assert seen[-1] == (want, want)


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_autoattack_reaches_the_closed_form_with_robust_points(norm):
    model, w, b = binary_linear()
    eps = 0.05 if norm == "linf" else 0.2
    x, y = linear_points(w, b, eps, n=12, margin_norm=norm)
    expected = closed_form_correct(w, b, x, y, eps, norm)
    assert expected > 0
    threat = ThreatModel(norm=norm, eps=eps)
    x_adv = AutoAttackMethod().perturb(model, x, y, threat, gen())
    assert_in_threat(x_adv, x, threat)
    assert n_correct(model, x_adv, y) == expected


@pytest.mark.slow
def test_autoattack_full_standard_run_on_a_small_cnn(caplog):
    """All four attacks of the standard version run (points survive to Square): ball, range,
    modes restored, and no weaker than PGD."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 5))
    model.train()
    x = boundary_images(4)
    with torch.no_grad():
        y = model(x).argmax(1)
    threat = ThreatModel(eps=0.2)
    with caplog.at_level("DEBUG", logger="auto-attack"):
        a = AutoAttackMethod().perturb(model, x, y, threat, gen(3))
    for attack in ("apgd-ce", "apgd-t", "fab-t", "square"):
        assert f"running {attack}" in caplog.text
    assert model.training
    assert_in_threat(a, x, threat)
    assert 0 < n_correct(model, a, y) < len(y)
    pgd_adv = PGD(steps=20).perturb(model, x, y, dataclasses.replace(threat, step_size=0.05), gen(3))
    assert n_correct(model, a, y) <= n_correct(model, pgd_adv, y) + 1


def test_autoattack_is_deterministic_under_a_fixed_generator_and_uses_it():
    model = tiny_mlp(classes=4)
    x = torch.rand(6, 8, generator=gen(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    threat = ThreatModel(eps=0.5)  # every point breaks in APGD-CE: fast
    a = AutoAttackMethod().perturb(model, x, y, threat, gen(5))
    b = AutoAttackMethod().perturb(model, x, y, threat, gen(5))
    c = AutoAttackMethod().perturb(model, x, y, threat, gen(6))
    assert_in_threat(a, x, threat)
    assert n_correct(model, a, y) == 0
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# --------------------------------------------------------------------------------------------
# training methods
# --------------------------------------------------------------------------------------------


def ctx(recipe=RECIPE, seed=0) -> TrainContext:
    return TrainContext(recipe=recipe, num_classes=4, generator=gen(seed))


@pytest.mark.parametrize("method", [TRADES(), PGDAT()], ids=["trades", "pgd-at"])
def test_training_losses_shape_grads_modes_and_determinism(method):
    inner = tiny_mlp()
    model = ModeRecorder(inner).train()
    x = torch.rand(10, 8, generator=gen(1))
    y = torch.randint(0, 4, (10,), generator=gen(2))
    loss = method.batch_loss(model, x, y, ctx())
    assert loss.shape == (10,)
    assert torch.isfinite(loss).all() and (loss >= 0).all()
    assert all(p.grad is None for p in model.parameters())  # crafting left .grad alone
    assert False in model.modes and model.modes[-1] is True  # crafted in eval, loss in train
    assert model.training and all(m.training for m in model.modules())
    loss.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    again = method.batch_loss(model, x, y, ctx())
    assert torch.equal(loss.detach(), again.detach())
    other = method.batch_loss(model, x, y, ctx(seed=9))
    assert not torch.equal(loss.detach(), other.detach())


def test_trades_is_clean_ce_plus_a_nonnegative_kl_and_beta_from_recipe():
    model = tiny_mlp().train()
    x = torch.rand(12, 8, generator=gen(1))
    y = torch.randint(0, 4, (12,), generator=gen(2))
    ce = F.cross_entropy(model(x), y, reduction="none").detach()
    loss = TRADES().batch_loss(model, x, y, ctx()).detach()
    assert (loss > ce).all()
    zero = TRADES().batch_loss(model, x, y, ctx({**RECIPE, "beta": 0.0})).detach()
    assert torch.allclose(zero, ce, atol=1e-6)
    no_beta = {k: v for k, v in RECIPE.items() if k != "beta"}
    kl6 = loss - ce
    kl1 = TRADES(beta=1.0).batch_loss(model, x, y, ctx(no_beta)).detach() - ce
    assert torch.allclose(kl6, 6.0 * kl1, rtol=1e-4, atol=1e-6)
    assert TRADES(beta=1.0).beta(RECIPE) == 6.0 and TRADES(beta=1.0).beta(no_beta) == 1.0


def test_trades_adversarial_increases_the_kl_and_stays_in_ball():
    model = tiny_mlp().train()
    x = torch.rand(12, 8, generator=gen(1))
    t = TRADES()
    x_adv = t.adversarial(model, x, ctx())
    assert_in_threat(x_adv, x, threat_from_recipe(RECIPE))
    with eval_mode(model), torch.no_grad():
        p = F.log_softmax(model(x), 1)
        kl_adv = trades_mod._kl(p, F.log_softmax(model(x_adv), 1))
        x_rand = project(x + 0.1 * torch.sign(torch.randn(x.shape, generator=gen(4))), x, threat_from_recipe(RECIPE))
        kl_rand = trades_mod._kl(p, F.log_softmax(model(x_rand), 1))
    assert kl_adv.mean() > kl_rand.mean()


def test_pgd_at_loss_is_at_least_clean_ce_on_a_linear_model():
    model, w, b = binary_linear()
    x, y = linear_points(w, b, 0.1, n=40)
    recipe = {"eps": 0.1, "step_size": 0.05, "attack_steps": 5}
    ce = F.cross_entropy(model(x), y, reduction="none").detach()
    loss = PGDAT().batch_loss(model, x, y, ctx(recipe)).detach()
    assert (loss > ce).all()
    # the final iterate is the closed-form worst case: -eps * s * sign(w)
    s = (2 * y - 1).float()[:, None]
    worst = F.cross_entropy(model(x - 0.1 * s * torch.sign(w)), y, reduction="none").detach()
    assert torch.allclose(loss, worst, atol=1e-5)


def toy_robust_problem(n: int, g: torch.Generator):
    """One strongly separating feature (margin 0.25 > eps) and 30 weak, non-robust ones (0.06 < eps)."""
    y = torch.randint(0, 2, (n,), generator=g)
    sign = (2 * y - 1).float()[:, None]
    strong = 0.5 + 0.25 * sign + 0.03 * torch.randn(n, 1, generator=g)
    weak = 0.5 + 0.06 * sign + 0.06 * torch.randn(n, 30, generator=g)
    return torch.cat([strong, weak], 1).clamp(0, 1), y


def test_pgd_at_and_trades_raise_pgd_accuracy_over_standard_training():
    g = gen(0)
    x, y = toy_robust_problem(256, g)
    xt, yt = toy_robust_problem(256, g)
    threat = ThreatModel(eps=0.1, step_size=0.025, steps=10)
    recipe = {"eps": 0.1, "step_size": 0.025, "attack_steps": 5, "beta": 6.0}
    robust = {}
    for name, method in [("standard", None), ("pgd-at", PGDAT()), ("trades", TRADES())]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(31, 16), nn.ReLU(), nn.Linear(16, 2)).train()
        opt = torch.optim.Adam(model.parameters(), lr=0.02)
        c = TrainContext(recipe=recipe, num_classes=2, generator=gen(1))
        for _ in range(60):
            if method is None:
                loss = F.cross_entropy(model(x), y, reduction="none")
            else:
                loss = method.batch_loss(model, x, y, c)
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
        model.eval()
        assert n_correct(model, xt, yt) / len(yt) > 0.95
        robust[name] = n_correct(model, PGD().perturb(model, xt, yt, threat, gen()), yt) / len(yt)
    assert robust["standard"] < 0.6
    assert robust["pgd-at"] > robust["standard"] + 0.3
    assert robust["trades"] > robust["standard"] + 0.3


# --------------------------------------------------------------------------------------------
# evaluate_robustness
# --------------------------------------------------------------------------------------------


class Shift(AttackMethod):
    """Test double: moves every input by ``factor * eps`` (out of the ball when factor > 1)."""

    name = "bad-shift"
    params = {"factor": 2.0}

    def perturb(self, model, x, y, threat, generator):
        return (x + self.params["factor"] * threat.eps).clamp(threat.lower, threat.upper)


class Push(AttackMethod):
    """Test double: in the ball but not in the box (x - eps without clipping)."""

    name = "bad-range"

    def perturb(self, model, x, y, threat, generator):
        return x - threat.eps


class NoOp(AttackMethod):
    """Test double: returns the clean inputs (the weakest possible attack)."""

    name = "noop"

    def perturb(self, model, x, y, threat, generator):
        return x.clone()


class MaskedPGD(PGD):
    """Test double: a 'pgd' that gets weaker with more steps, as under gradient masking."""

    def perturb(self, model, x, y, threat, generator):
        if self.effective_threat(threat).steps > 10:
            return x.clone()
        return super().perturb(model, x, y, threat, generator)


def linear_setup(n=120):
    model, w, b = binary_linear()
    eps = 0.05
    x, y = linear_points(w, b, eps, n=n)
    return model, w, b, x, y, ThreatModel(eps=eps, step_size=0.02, steps=10)


def test_evaluate_robustness_metrics_match_the_closed_form():
    model, w, b, x, y, threat = linear_setup()
    model.train()
    attacks = {"fgsm": FGSM(), "pgd": PGD()}
    m = evaluate_robustness(model, x, y, attacks, threat, seed=0, batch_size=32, masking_check=True)
    n = len(y)
    expected = closed_form_correct(w, b, x, y, threat.eps) / n
    assert set(m) == {"clean_acc", "fgsm_acc", "pgd_acc", "check_order_ok", "check_ball_ok", "pgd_masking_acc", "pgd_masking_flag"}
    assert m["clean_acc"] == n_correct(model, x, y) / n
    assert m["fgsm_acc"] == expected and m["pgd_acc"] == expected and m["pgd_masking_acc"] == expected
    assert m["check_order_ok"] == 1.0 and m["check_ball_ok"] == 1.0 and m["pgd_masking_flag"] == 0.0
    assert model.training
    reordered = evaluate_robustness(model, x, y, {"pgd": PGD(), "fgsm": FGSM()}, threat, seed=0, batch_size=32, masking_check=True)
    assert reordered == m
    no_mask = evaluate_robustness(model, x, y, attacks, threat, seed=0)
    assert "pgd_masking_flag" not in no_mask and no_mask["pgd_acc"] == expected


def test_evaluate_robustness_with_autoattack_orders_accuracies():
    model, w, b, x, y, threat = linear_setup(n=60)
    # only breakable or misclassified points, so AutoAttack stops after APGD-CE (fast)
    s = (2 * y - 1).float()
    breakable = s * (x @ w + b) < threat.eps * w.abs().sum()
    x, y = x[breakable][:12], y[breakable][:12]
    m = evaluate_robustness(model, x, y, {"pgd": PGD(), "autoattack": AutoAttackMethod()}, threat, seed=1)
    assert m["clean_acc"] > 0.5
    assert m["autoattack_acc"] == m["pgd_acc"] == 0.0
    assert m["check_order_ok"] == 1.0 and m["check_ball_ok"] == 1.0


def test_order_check_flags_an_autoattack_weaker_than_pgd():
    model, w, b, x, y, threat = linear_setup()
    m = evaluate_robustness(model, x, y, {"pgd": PGD(), "autoattack": NoOp()}, threat, seed=0)
    assert m["autoattack_acc"] == m["clean_acc"] > m["pgd_acc"] + 1 / len(y)
    assert m["check_order_ok"] == 0.0


def test_masking_flag_raised_when_more_pgd_steps_help_the_model():
    model, w, b, x, y, threat = linear_setup()
    m = evaluate_robustness(model, x, y, {"pgd": MaskedPGD()}, threat, seed=0, masking_check=True)
    assert m["pgd_masking_acc"] == m["clean_acc"] > m["pgd_acc"]
    assert m["pgd_masking_flag"] == 1.0


def test_masking_check_multiplies_an_explicit_steps_parameter():
    model, w, b, x, y, threat = linear_setup(n=20)
    seen: list[int] = []

    class Spy(PGD):
        def perturb(self, model, x, y, threat, generator):
            seen.append(self.effective_threat(threat).steps)
            return super().perturb(model, x, y, threat, generator)

    evaluate_robustness(model, x, y, {"pgd": Spy(steps=3)}, threat, seed=0, masking_check=True)
    assert seen == [3, 15]


@pytest.mark.parametrize("bad, message", [(Shift(), "exceed eps"), (Push(), "leave the range")])
def test_out_of_threat_outputs_raise_naming_the_plugin(bad, message):
    model, w, b, x, y, threat = linear_setup(n=20)
    x = x.clone()
    x[0, 0] = 0.0  # so that x - eps leaves [0, 1]
    with pytest.raises(AttackOutputError, match=rf"{bad.name}.*{message}"):
        evaluate_robustness(model, x, y, {"pgd": PGD(), bad.name: bad}, threat, seed=0)
    m = evaluate_robustness(model, x, y, {"pgd": PGD(), bad.name: bad}, threat, seed=0, strict=False)
    assert m["check_ball_ok"] == 0.0
    assert issubclass(AttackOutputError, ValueError)


def test_a_shift_within_the_ball_passes_and_unusable_outputs_raise():
    model, w, b, x, y, threat = linear_setup(n=20)
    m = evaluate_robustness(model, x, y, {"half": Shift(factor=0.5)}, threat, seed=0)
    assert m["check_ball_ok"] == 1.0

    class WrongShape(NoOp):
        name = "wrong-shape"

        def perturb(self, model, x, y, threat, generator):
            return x[:-1]

    with pytest.raises(AttackOutputError, match="wrong-shape.*shape"):
        evaluate_robustness(model, x, y, {"w": WrongShape()}, threat, seed=0, strict=False)


def test_evaluate_robustness_rejects_bad_inputs():
    model, w, b, x, y, threat = linear_setup(n=10)
    with pytest.raises(ValueError, match="samples"):
        evaluate_robustness(model, x, y[:-1], {}, threat, seed=0)
    with pytest.raises(ValueError, match="norm"):
        evaluate_robustness(model, x, y, {}, ThreatModel(norm="l7"), seed=0)


# --------------------------------------------------------------------------------------------
# slow: PGD against torchattacks
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_our_pgd_is_at_least_as_strong_as_torchattacks():
    torchattacks = pytest.importorskip("torchattacks")
    g = gen(0)
    n = 256
    y = torch.randint(0, 3, (n,), generator=g)
    x = 0.3 * torch.rand(n, 1, 8, 8, generator=g)
    for c in range(3):  # class c: a brighter band of rows
        rows = slice(c * 3, c * 3 + 2)
        x[y == c, :, rows] += 0.4
    x = x.clamp(0, 1)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 16, 3)
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    assert n_correct(model, x, y) == n
    cases = [("linf", 0.15, torchattacks.PGD), ("linf", 0.2, torchattacks.PGD), ("l2", 1.0, torchattacks.PGDL2)]
    for norm, eps, theirs_cls in cases:
        threat = ThreatModel(norm=norm, eps=eps, step_size=eps / 4, steps=10)
        ours = n_correct(model, PGD().perturb(model, x, y, threat, gen(0)), y)
        torch.manual_seed(0)
        theirs = n_correct(model, theirs_cls(model, eps=eps, alpha=eps / 4, steps=10, random_start=True)(x, y), y)
        assert ours <= theirs + 1, (norm, eps, ours, theirs)
        assert 0 < ours < n  # the attack matters at this eps, and does not trivially win
