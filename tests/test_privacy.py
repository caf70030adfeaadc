"""Privacy and memorization tracks: metrics against scikit-learn, attacks on overfit and untrained
models, curvature estimators on a loss with a closed-form input Hessian, output validation, DP-SGD,
and the tracks end to end on the ``tiny`` profiles through the runner."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coreset_bench import hookimpl
from coreset_bench.tracks.privacy import metrics as PM
from coreset_bench.kinds import PrivacyMethod, PrivacyView
from coreset_bench.plugins.privacy import _mia
from coreset_bench.tracks.base import CellFailure
from coreset_bench.tracks.privacy import BlackBox, masks_for, validate_scores

ATTACKS = ["loss", "sablayrolles", "watson", "attack-r", "mentr", "lira", "curvature-mia"]
PROXIES = ["loss-proxy", "el2n-proxy", "zero-order-curvature", "input-curvature"]


# ---- metrics against scikit-learn ---------------------------------------------------------------

LABELS = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 1])
SCORES = np.array([0.9, 0.1, 0.8, 0.4, 0.4, 0.35, 0.7, 0.2, 0.4, 0.6, 0.05, 0.95, 0.3, 0.3, 0.85, 0.5, 0.15, 0.25, 0.65, 0.55])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_match_sklearn(seed):
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(seed)
    y = np.concatenate([LABELS, rng.integers(0, 2, 200)])
    s = np.concatenate([SCORES, np.round(rng.normal(size=200) + 0.5 * y[20:], 1)])  # many ties
    fpr, tpr, thr = PM.roc_curve(y, s)
    f2, t2, th2 = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2)
    np.testing.assert_allclose(tpr, t2)
    np.testing.assert_allclose(thr[1:], th2[1:])
    assert PM.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_balanced_accuracy_and_tpr_match_sklearn():
    from sklearn.metrics import balanced_accuracy_score, roc_curve

    bal, thr = PM.balanced_accuracy(LABELS, SCORES)
    assert bal == pytest.approx(balanced_accuracy_score(LABELS, SCORES >= thr))
    f, t, _ = roc_curve(LABELS, SCORES, drop_intermediate=False)
    i = np.argmin(np.abs(f + t - 1))
    assert bal == pytest.approx((t[i] + 1 - f[i]) / 2)
    for lvl in (0.01, 0.1, 0.25):
        r = PM.tpr_at_fpr(LABELS, SCORES, lvl)
        assert r.tpr == pytest.approx(np.interp(lvl, f, t))
        assert r.realized_fpr <= lvl
        # the realized point is a real threshold's operating point
        thr_pts = sorted(set(SCORES), reverse=True)
        ops = [((SCORES >= c)[LABELS == 0].mean(), (SCORES >= c)[LABELS == 1].mean()) for c in thr_pts]
        best = max([o for o in ops if o[0] <= lvl] + [(0.0, 0.0)])
        assert (r.realized_fpr, r.realized_tpr) == pytest.approx(best)
    m = PM.membership_metrics(LABELS, SCORES)
    assert set(m) >= {"auc", "balanced_acc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "realized_fpr_1pct", "realized_fpr_0.1pct"}
    # 10 negatives: no threshold reaches FPR <= 1 % except the origin
    assert m["realized_fpr_1pct"] == 0.0


def test_metrics_reject_bad_inputs():
    with pytest.raises(ValueError, match="both"):
        PM.auc(np.ones(4), np.arange(4.0))
    with pytest.raises(ValueError, match="finite"):
        PM.auc(np.array([0, 1]), np.array([0.0, np.nan]))


def test_correlations_match_scipy_and_fz_estimate():
    from scipy.stats import pearsonr, spearmanr

    rng = np.random.default_rng(0)
    a = np.round(rng.normal(size=300), 1)
    b = a + rng.normal(size=300)
    assert PM.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert PM.pearson(a, b) == pytest.approx(pearsonr(a, b).statistic)
    assert PM.cosine(a, b) == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    correct = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1]])
    member = np.array([[1, 1, 0], [1, 0, 1], [0, 0, 1], [0, 1, 0]], dtype=bool)
    # sample 0: in {0, 1} -> 1.0, out {2, 3} -> 0.5; sample 1: in {0, 3} -> 1, out {1, 2} -> 0.5
    # sample 2: in {1, 2} -> 0.5, out {0, 3} -> 0.5
    np.testing.assert_allclose(PM.fz_memorization(correct, member), [0.5, 0.5, 0.0])


def test_masks_are_complementary_and_targets_separate():
    sh, tg = masks_for(500, 8, 3, seed=7, scheme="paired")
    assert sh.shape == (8, 500) and tg.shape == (3, 500)
    assert np.array_equal(sh[:4], ~sh[4:])
    assert np.all(sh.sum(0) == 4)  # every query is in exactly half of the shadows
    assert 0.4 < tg.mean() < 0.6
    assert not any(np.array_equal(t, s) or np.array_equal(t, ~s) for t in tg for s in sh)
    sh2, tg2 = masks_for(500, 8, 3, seed=7, scheme="paired")
    assert np.array_equal(sh, sh2) and np.array_equal(tg, tg2)


def test_independent_masks_are_the_references_bernoulli_rows():
    """shadow_masks="independent": S + T independent Bernoulli(0.5) rows of one generator, shadows
    first (the reference's shadows 0-63 and targets 64-66); a query's in-count is Binomial(S, 1/2)."""
    n, s, t = 20000, 16, 3
    sh, tg = masks_for(n, s, t, seed=11, scheme="independent")
    rows = np.random.default_rng(11).random((s + t, n)) < 0.5
    assert np.array_equal(sh, rows[:s]) and np.array_equal(tg, rows[s:])
    counts = sh.sum(0)
    assert abs(counts.mean() - s / 2) < 0.05 and abs(counts.var() - s / 4) < 0.15  # Binomial(16, 1/2): mean 8, var 4
    hist = np.bincount(counts, minlength=s + 1) / n
    from math import comb

    binom = np.array([comb(s, k) for k in range(s + 1)]) / 2**s
    assert np.abs(hist - binom).max() < 0.01
    assert not any(np.array_equal(a, ~b) for a in sh for b in sh)  # no complements
    # paired: every query is in exactly S/2 shadows
    sp, _ = masks_for(n, s, t, seed=11, scheme="paired")
    assert np.all(sp.sum(0) == s // 2)
    with pytest.raises(ValueError, match="shadow_masks"):
        masks_for(10, 4, 1, seed=0, scheme="complement")
    with pytest.raises(ValueError, match="even"):
        masks_for(10, 5, 1, seed=0, scheme="paired")
    assert masks_for(10, 5, 1, seed=0, scheme="independent")[0].shape == (5, 10)


def test_profile_versions_keep_paired_masks_and_add_the_references(workdir):
    """Version 1 profiles keep their masks (and bank keys); version 2 use independent masks."""
    from coreset_bench import registry as plugins
    from coreset_bench.runner import default_context, expand

    ctx = default_context(workdir / "results", "cpu", None)
    for tname in ("privacy", "memorization"):
        track = plugins.track(tname)
        method = plugins.method("loss" if tname == "privacy" else "loss-proxy")
        assert track.profile("quick@1").settings["shadow_masks"] == "paired"
        # the default is version 3: version 2's matrix with masks seeded from the store's salt
        assert track.profile("quick").version == 3 and track.profile("quick").settings["shadow_masks"] == "independent"
        assert track.profile("quick").salted and not track.profile("quick@2").salted
        assert dict(track.profile("quick").settings) == dict(track.profile("quick@2").settings)
        (c1,) = expand(track, track.profile("tiny@1"), method)
        (c2,) = expand(track, track.profile("tiny@2"), method)
        _, s1, m1, _, _ = track.bank_specs(c1, ctx)
        _, s2, m2, _, _ = track.bank_specs(c2, ctx)
        assert np.all(m1.sum(0) == 2) and s1.mask_scheme == "paired"
        assert len(set(m2.sum(0).tolist())) > 1 and s2.mask_scheme == "independent"
        assert s1.key != s2.key
    assert plugins.track("privacy").profile("quick@2").settings["n_targets"] > plugins.track("privacy").profile("quick@1").settings["n_targets"]


# ---- curvature estimators on a quadratic loss ---------------------------------------------------


class Quadratic(nn.Module):
    """Two-class model whose cross-entropy for label 0 is exactly q(x) = c + b.x + x^T A x / 2,
    so the input Hessian of the loss is A. Logits: (0, log(expm1(q)))."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, c: float = 3.0) -> None:
        super().__init__()
        self.a, self.b, self.c = a, b, c

    def q(self, x: torch.Tensor) -> torch.Tensor:
        f = x.flatten(1)
        return self.c + f @ self.b + 0.5 * ((f @ self.a) * f).sum(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z1 = torch.log(torch.expm1(self.q(x)))
        return torch.stack([torch.zeros_like(z1), z1], 1)


def _quadratic(d: int = 12, diagonal: bool = False, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if diagonal:
        a = torch.diag(torch.rand(d, generator=g, dtype=torch.float64) * 0.4 - 0.1)
    else:
        m = torch.randn(d, d, generator=g, dtype=torch.float64) * 0.1
        a = m + m.T
    b = torch.randn(d, generator=g, dtype=torch.float64) * 0.05
    x = torch.rand(5, 1, 3, 4, generator=g, dtype=torch.float64) * 0.5
    return Quadratic(a, b), a, x, torch.zeros(5, dtype=torch.long)


def test_quadratic_model_loss_is_the_quadratic():
    model, a, x, y = _quadratic()
    torch.testing.assert_close(F.cross_entropy(model(x), y, reduction="none"), model.q(x))


def test_curv_zo_is_the_four_point_formula_of_the_reference():
    model, a, x, y = _quadratic()
    h, n_iter = 0.05, 6
    curv, loss0 = _mia.curv_zo(model, x, y, h=h, n_iter=n_iter, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(loss0, model.q(x))
    # replay the draws: for a quadratic, the four-point numerator is exactly 4 v^T A u
    g = torch.Generator().manual_seed(3)
    expect = torch.zeros(len(x), dtype=torch.float64)
    for _ in range(n_iter):
        v = h * (_mia.rademacher(x.shape, g, x) + 1e-7)
        u = h * (_mia.rademacher(x.shape, g, x) + 1e-7)
        expect += ((v.flatten(1) @ a) * u.flatten(1)).sum(1).abs() / h  # |4 v^T A u| / (4h)
    torch.testing.assert_close(curv, expect / n_iter)
    # it is not a trace estimate: with A = I, E|r_v . r_u| ~ sqrt(2d/pi) h, while tr(A) = d
    model_i = Quadratic(torch.eye(12, dtype=torch.float64), torch.zeros(12, dtype=torch.float64))
    c, _ = _mia.curv_zo(model_i, x, y, h=1.0, n_iter=400, generator=torch.Generator().manual_seed(0))
    assert float(c.mean()) == pytest.approx(math.sqrt(2 * 12 / math.pi), rel=0.15)


def test_hutchinson_estimators_recover_the_trace():
    model, a, x, y = _quadratic(diagonal=True)
    tr = float(torch.trace(a))
    g = torch.Generator().manual_seed(0)
    # Rademacher r^T A r equals tr(A) exactly for a diagonal A
    torch.testing.assert_close(_mia.hutchinson_trace(model, x, y, n_iter=3, generator=g), torch.full((5,), tr, dtype=torch.float64))
    zo, _ = _mia.hutchinson_zo(model, x, y, h=0.1, n_iter=3, generator=g)
    torch.testing.assert_close(zo, torch.full((5,), abs(tr), dtype=torch.float64))
    # per-channel std: the trace is taken in normalized units, tr(S A S)
    std = [0.5]
    torch.testing.assert_close(_mia.hutchinson_trace(model, x, y, n_iter=2, generator=g, std=std), torch.full((5,), 0.25 * tr, dtype=torch.float64))
    # a dense A: unbiased, converging to tr(A)
    model, a, x, y = _quadratic(diagonal=False, seed=1)
    est = _mia.hutchinson_trace(model, x, y, n_iter=3000, generator=torch.Generator().manual_seed(1))
    off = float(torch.sqrt(2 * ((a**2).sum() - (torch.diag(a) ** 2).sum()) / 3000))  # std of the mean
    assert torch.all((est - torch.trace(a)).abs() < 5 * off)


def test_regr_curvature_is_h_times_norm_of_hv():
    model, a, x, y = _quadratic(seed=2)
    h = 0.01
    got = _mia.regr_curvature(model, x, y, h=h, n_iter=4, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    expect = torch.zeros(len(x), dtype=torch.float64)
    for _ in range(4):
        v = h * (_mia.rademacher(x.shape, g, x) + 1e-7)
        expect += (v.flatten(1) @ a).norm(dim=1)
    torch.testing.assert_close(got, expect / 4)


# ---- attacks on synthetic black boxes ------------------------------------------------------------


class TableBox:
    """A 'model' that looks up precomputed logits by the query index stored in x[:, 0]."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x[:, 0].round().long()]


def _synthetic_view(n=400, s=16, gap=2.0, seed=0):
    """Members get a higher true-class margin (by ``gap`` units of per-example noise)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(size=n)
    shadow_in, _ = masks_for(n, s, 0, seed, scheme="paired")
    target_in = rng.random(n) < 0.5
    y = torch.from_numpy(rng.integers(0, 3, n))

    def box(member):
        margin = difficulty + gap * member + 0.5 * rng.normal(size=n)
        z = torch.zeros(n, 3, dtype=torch.float64)
        z[torch.arange(n), y] = torch.from_numpy(margin)
        return TableBox(z.float())

    x = torch.arange(n, dtype=torch.float32)[:, None]
    view = PrivacyView(x=x, y=y, num_classes=3, target=box(target_in), shadows=[box(m) for m in shadow_in], shadow_in=shadow_in,
                       views=[lambda t: t], seed=0, generator=torch.Generator().manual_seed(0))
    return view, target_in


@pytest.mark.parametrize("name", ["loss", "sablayrolles", "watson", "attack-r", "mentr", "lira"])
def test_logit_attacks_separate_members_on_synthetic_models(name):
    from coreset_bench import registry as plugins

    view, members = _synthetic_view()
    scores = validate_scores(plugins.method(name).score(view), len(members), plugins.method(name))
    assert PM.auc(members, scores) > 0.75
    # calibrated attacks beat the uncalibrated LOSS attack when difficulty varies per example
    if name in ("sablayrolles", "watson", "lira"):
        loss = plugins.method("loss").score(view)
        assert PM.auc(members, scores) > PM.auc(members, loss)


def test_curvature_test_statistics_on_gaussian_scores():
    from coreset_bench.plugins.privacy.curvature_mia import test_statistic

    rng = np.random.default_rng(0)
    n = 2000
    mu_in, mu_out = rng.normal(size=(1, n)), rng.normal(size=(1, n)) + 1.0
    fit = {"mean_in": mu_in, "mean_out": mu_out, "var_in": np.full((1, n), 0.3), "var_out": np.full((1, n), 0.3)}
    member = rng.random(n) < 0.5
    s = np.where(member, mu_in, mu_out) + np.sqrt(0.3) * rng.normal(size=(1, n))
    for stat in ("nll", "lr"):
        for mode in ("paper_code", "proper"):
            out = test_statistic(s, fit, stat, mode)
            assert out.shape == (n,) and np.all(np.isfinite(out))
            assert PM.auc(member, out) > 0.75, (stat, mode)
    # the code's NLL quirk: variance in the place of sigma, var_in for both hypotheses
    s1 = np.array([[0.2]])
    f1 = {"mean_in": np.array([[0.0]]), "mean_out": np.array([[1.0]]), "var_in": np.array([[0.5]]), "var_out": np.array([[9.0]])}
    v = 0.5 + 1e-32
    expect = ((0.2 - 1.0) ** 2 - 0.2**2) / (2 * v**2)
    assert test_statistic(s1, f1, "nll", "paper_code")[0] == pytest.approx(expect)


# ---- attacks on real models: overfit vs untrained --------------------------------------------------


def _digits(n, seed):
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = np.random.default_rng(seed).permutation(len(d.target))[:n]
    x = torch.from_numpy((d.images[idx] / 16.0).astype(np.float32)).unsqueeze(1)
    return x, torch.from_numpy(d.target[idx].astype(np.int64))


def _mlp(seed):
    from coreset_bench import models as M

    return M.build("mlp", (1, 8, 8), 10, (0.3,), (0.4,), seed)


def test_loss_attack_on_overfit_and_untrained_models():
    from coreset_bench import registry as plugins
    from coreset_bench import training as T

    x, y = _digits(240, 0)
    members = np.zeros(240, dtype=bool)
    members[::2] = True
    # few labelled samples with noisy labels on the members: the model must memorize them
    y_train = y.clone()
    flip = torch.arange(0, 240, 6)
    y_train[flip] = (y_train[flip] + 3) % 10
    overfit = _mlp(0)
    T.train(overfit, x[members], y_train[members], method=plugins.method("standard"), recipe={"epochs": 60, "batch_size": 30, "lr": 0.05, "weight_decay": 0.0}, num_classes=10, seed=0)
    y_view = y.clone()
    y_view[flip] = y_train[flip]  # query with the labels the member was trained on
    attack = plugins.method("loss")

    def auc_for(model):
        view = PrivacyView(x=x, y=y_view, num_classes=10, target=BlackBox(model), shadows=[], shadow_in=np.zeros((0, 240), bool),
                           views=[lambda t: t], seed=0, generator=torch.Generator().manual_seed(0))
        return PM.auc(members, validate_scores(attack.score(view), 240, attack))

    assert auc_for(overfit) > 0.8
    assert abs(auc_for(_mlp(1)) - 0.5) < 0.1


# ---- every plugin's output on small real models ----------------------------------------------------


@pytest.fixture(scope="module")
def small_models():
    torch.manual_seed(0)
    x, y = _digits(48, 1)
    models = [_mlp(k).eval() for k in range(5)]
    return x, y, models


@pytest.mark.parametrize("name", ATTACKS + PROXIES)
def test_each_plugin_returns_one_finite_score_per_query(name, small_models):
    from coreset_bench import registry as plugins

    x, y, models = small_models
    method = plugins.method(name)
    if name in ("curvature-mia", "zero-order-curvature"):
        method = method.with_params(n_iter=2)
    if name == "input-curvature":
        method = method.with_params(n_iter=2)
    shadow_in, _ = masks_for(len(y), 4, 0, 0, scheme="paired")
    proxy = method.role == "proxy"
    view = PrivacyView(
        x=x, y=y, num_classes=10, target=BlackBox(models[0]),
        shadows=[] if proxy else [BlackBox(m) for m in models[1:]],
        shadow_in=np.zeros((0, len(y)), bool) if proxy else shadow_in,
        views=[lambda t: t, lambda t: t.flip(-1)], seed=3, generator=torch.Generator().manual_seed(3),
        target_model=models[0] if proxy else None, target_checkpoints=models[:2] if proxy else None, input_std=(0.4,),
    )
    out = validate_scores(method.score(view), len(y), method)
    again = method.score(view)
    np.testing.assert_allclose(out, again)  # deterministic under the view's seed


def test_validate_scores_names_the_plugin():
    m = types.SimpleNamespace(name="badplugin")
    with pytest.raises(CellFailure, match="badplugin.*not finite"):
        validate_scores(np.array([0.1, np.nan]), 2, m)
    with pytest.raises(CellFailure, match="badplugin.*shape"):
        validate_scores(np.zeros(3), 2, m)


# ---- DP-SGD ----------------------------------------------------------------------------------------


def test_dp_clipping_matches_a_per_sample_loop():
    from coreset_bench.plugins.training.dp_sgd import batchnorm_to_groupnorm, clipped_grad_sum
    from coreset_bench import models as M

    model = batchnorm_to_groupnorm(M.build("cnn-small", (1, 8, 8), 10, (0.3,), (0.4,), 0))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x, y = _digits(6, 2)
    sums, norms = clipped_grad_sum(model, x, y, max_norm=0.5, chunk=4)
    params = [p for p in model.parameters()]
    expect = [torch.zeros_like(p) for p in params]
    for i in range(len(y)):
        g = torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), params)
        nrm = torch.sqrt(sum((gi**2).sum() for gi in g))
        assert float(norms[i]) == pytest.approx(float(nrm), rel=1e-4)
        for e, gi in zip(expect, g):
            e += gi * min(1.0, 0.5 / (float(nrm) + 1e-6))
    for s, e in zip(sums, expect):
        torch.testing.assert_close(s, e, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="BatchNorm"):
        clipped_grad_sum(M.build("cnn-small", (1, 8, 8), 10, (0.3,), (0.4,), 0), x, y, 1.0)


def test_dp_sgd_trains_at_the_requested_epsilon():
    pytest.importorskip("opacus")
    from coreset_bench import registry as plugins

    dp = plugins.method("dp-sgd")
    x, y = _digits(200, 3)
    model = dp.prepare_model(_mlp(0))
    info = dp.fit(model, x, y, recipe={"epsilon": 4.0, "epochs": 3, "batch_size": 50, "lr": 1e-3}, num_classes=10, seed=0)
    assert info["epsilon"] == pytest.approx(4.0, rel=0.05)
    assert info["noise_multiplier"] > 0.5 and info["sample_rate"] == pytest.approx(0.25)
    assert info["steps"] == 12
    # more privacy needs more noise
    from coreset_bench.plugins.training.dp_sgd import noise_multiplier_for

    assert noise_multiplier_for(1.0, 1e-5, 0.25, 12) > info["noise_multiplier"]


def test_dp_accountant_defaults_to_the_references_prv_and_is_a_parameter():
    """The reference calls make_private_with_epsilon on PrivacyEngine(), whose default accountant
    in the pinned Opacus is PRV: the default sigma is Opacus's PRV calibration, RDP gives more
    noise at the same epsilon, and each run returns sigma, realized epsilon and the accountant."""
    pytest.importorskip("opacus")
    import inspect

    from opacus import PrivacyEngine
    from opacus.accountants.utils import get_noise_multiplier

    from coreset_bench import registry as plugins
    from coreset_bench.plugins.training.dp_sgd import epsilon_spent, noise_multiplier_for

    assert inspect.signature(PrivacyEngine.__init__).parameters["accountant"].default == "prv"
    dp = plugins.method("dp-sgd")
    assert dp.params["accountant"] == "prv"
    q, steps = 1 / 6, 120  # quick-dp: ~670 members, batch 128, 20 epochs
    prv = noise_multiplier_for(1.0, 1e-5, q, steps)
    assert prv == get_noise_multiplier(target_epsilon=1.0, target_delta=1e-5, sample_rate=q, steps=steps, accountant="prv")
    rdp = noise_multiplier_for(1.0, 1e-5, q, steps, "rdp")
    assert 1.02 < rdp / prv < 1.15  # RDP: a few per cent more noise at the same epsilon
    assert epsilon_spent(prv, q, steps, 1e-5) == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="unknown DP accountant 'moments'"):
        noise_multiplier_for(1.0, 1e-5, q, steps, "moments")
    x, y = _digits(120, 3)
    # an RDP-calibrated run: RDP's own bound reaches the target, the realized epsilon (PRV) is below
    info = dp.fit(dp.prepare_model(_mlp(0)), x, y, recipe={"epsilon": 4.0, "epochs": 2, "batch_size": 40, "accountant": "rdp"}, num_classes=10, seed=0)
    assert info["accountant"] == "rdp" and info["noise_multiplier"] == noise_multiplier_for(4.0, 1e-5, 1 / 3, 6, "rdp")
    assert info["epsilon_rdp"] == pytest.approx(4.0, abs=0.05)
    assert info["epsilon_accountant"] == "prv" and info["epsilon"] == epsilon_spent(info["noise_multiplier"], 1 / 3, 6, 1e-5) < info["epsilon_rdp"] - 0.1
    # gdp under-noises: refused from the recipe too, naming the fix
    with pytest.raises(ValueError, match="'gdp' is refused.*use 'prv'"):
        dp.fit(dp.prepare_model(_mlp(0)), x, y, recipe={"epsilon": 4.0, "epochs": 2, "batch_size": 40, "accountant": "gdp"}, num_classes=10, seed=0)
    # the non-private reference: same loop, no noise, no clipping, no epsilon
    plain = dp.fit(dp.prepare_model(_mlp(0)), x, y, recipe={"epsilon": float("inf"), "epochs": 2, "batch_size": 40}, num_classes=10, seed=0)
    assert plain["noise_multiplier"] == 0.0 and plain["private"] == 0.0 and "epsilon" not in plain
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        dp.fit(dp.prepare_model(_mlp(0)), x, y, recipe={"epsilon": 0.0}, num_classes=10, seed=0)


def test_dp_cells_report_the_prv_epsilon_of_banks_cached_by_dp_sgd_2():
    """A bank trained by dp-sgd 2 with the RDP calibrator stored RDP's epsilon; the cell reports
    the PRV epsilon of the same sigma, as a bank trained now does, so a cached and a fresh bank
    give the same target_epsilon; non-private models report none."""
    pytest.importorskip("opacus")
    from coreset_bench.plugins.training.dp_sgd import epsilon_spent, noise_multiplier_for
    from coreset_bench.tracks.privacy import Bank, BankSpec, PrivacyBase

    q, steps = 1 / 3, 60
    sigma = noise_multiplier_for(4.0, 1e-5, q, steps, "rdp")
    v2 = {"accountant": "rdp", "epsilon": epsilon_spent(sigma, q, steps, 1e-5, "rdp"), "noise_multiplier": sigma, "sample_rate": q,
          "steps": float(steps), "delta": 1e-5, "private": 1.0, "test_acc": 0.5, "train_acc": 0.6}
    v3 = {**v2, "epsilon": epsilon_spent(sigma, q, steps, 1e-5), "epsilon_accountant": "prv", "epsilon_rdp": v2["epsilon"]}

    def bank(training, models):
        spec = BankSpec("digits", {}, "mlp", training, {}, "targets", len(models), 0)
        return Bank(spec, np.zeros((len(models), 4), bool), [], [], {"models": models}, True, np.zeros((len(models), 4), bool))

    plain = bank("standard", [{"test_acc": 0.9, "train_acc": 1.0}])
    old, new = PrivacyBase._model_metrics(plain, bank("dp-sgd", [v2, v2])), PrivacyBase._model_metrics(plain, bank("dp-sgd", [v3, v3]))
    assert old == new and old["target_epsilon"] == v3["epsilon"] < v2["epsilon"] - 0.1
    dp = PrivacyBase._dp_info(plain, bank("dp-sgd", [v2]))
    assert dp == {"targets": {"accountant": "rdp", "epsilon_accountant": "prv", "delta": 1e-5, "private": True, "noise_multiplier": [sigma], "epsilon": [v3["epsilon"]]}}
    nonprivate = {"accountant": "none", "noise_multiplier": 0.0, "private": 0.0, "test_acc": 0.9, "train_acc": 1.0}
    m = PrivacyBase._model_metrics(plain, bank("dp-sgd", [nonprivate]))
    assert m["target_noise_multiplier"] == 0.0 and "target_epsilon" not in m
    assert PrivacyBase._dp_info(plain, bank("dp-sgd", [nonprivate]))["targets"]["epsilon"] == [None]


def test_fz_standard_error_and_split_half():
    from coreset_bench.tracks.privacy import metrics as PM

    rng = np.random.default_rng(3)
    member = rng.random((40, 30)) < 0.5
    correct = rng.random((40, 30)) < np.where(member, 0.9, 0.6)
    se = PM.fz_standard_error(correct, member)
    for i in range(30):
        a, b = correct[member[:, i], i].astype(float), correct[~member[:, i], i].astype(float)
        assert se[i] == pytest.approx(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    m2 = member.copy()
    m2[:, 0] = False  # no "in" model
    assert np.isnan(PM.fz_standard_error(correct, m2)[0])
    # split-half reliability: high for a strong, consistent signal, near zero for pure noise
    truth = rng.random(400)
    mem = rng.random((64, 400)) < 0.5
    corr = rng.random((64, 400)) < np.where(mem, 0.5 + 0.5 * truth, 0.5 - 0.5 * truth)
    assert PM.fz_split_half(corr, mem, seed=0) > 0.6
    assert abs(PM.fz_split_half(rng.random((64, 400)) < 0.5, mem, seed=0)) < 0.2
    d = PM.distribution(np.array([1.0, 2.0, np.nan, 3.0]), "x")
    assert d["x_mean"] == 2.0 and d["x_q50"] == 2.0 and set(d) == {"x_mean", "x_std", "x_q10", "x_q50", "x_q90"}


# ---- the tracks end to end ---------------------------------------------------------------------------


class NaNAttack(PrivacyMethod):
    name = "nan-attack"
    version = "1"
    tracks = ("privacy",)

    def score(self, view):
        out = np.zeros(len(view.y))
        out[0] = np.nan
        return out


@hookimpl
def register_methods(register):
    register(NaNAttack())


def test_tracks_end_to_end_on_tiny(workdir, coreset_bench_register):
    from coreset_bench import registry as plugins
    from coreset_bench.runner import default_context, execute, make_plan
    from coreset_bench.store import Store

    coreset_bench_register(__import__(__name__, fromlist=["register_methods"]), name="test-privacy-nan")
    store = Store(str(workdir / "p.db"))
    ctx = default_context(workdir / "results", "cpu", None)
    track = plugins.track("privacy")
    prof = track.profile("tiny")
    plan = make_plan(track, prof, [plugins.method(n) for n in ("loss", "lira", "nan-attack", "input-curvature")], store)
    outs = {o.cell.method: o for o in execute(plan, store, ctx)}
    assert outs["loss"].status == "done" and outs["lira"].status == "done"
    assert outs["nan-attack"].status == "failed" and "nan-attack" in outs["nan-attack"].error and "not finite" in outs["nan-attack"].error
    # the pipeline's one kind check (Track.accepts): a memorization proxy is refused by the privacy track
    assert outs["input-curvature"].status == "failed" and "takes part only in track(s) memorization" in outs["input-curvature"].error
    rows = {r["method"]: r for r in store.results(track="privacy", status="done")}
    for name in ("loss", "lira"):
        r = rows[name]
        for k in ("auc", "auc_std", "balanced_acc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "realized_fpr_1pct", "target_test_acc"):
            assert math.isfinite(r["metrics"][k]), (name, k)
        assert 0.0 <= r["metrics"]["auc"] <= 1.0
        assert r["timings"]["training_s"] > 0 and r["timings"]["attack_s"] >= 0
        assert r["info"]["n_shadows"] == 4 and r["info"]["n_targets"] == 2
    # the bank was trained once: the first cell trained it, the second read it (cost still recorded)
    assert rows["loss"]["info"]["models_shared"] == {"shadows": False, "targets": False}
    assert rows["lira"]["info"]["models_shared"] == {"shadows": True, "targets": True}
    assert rows["lira"]["timings"]["training_s"] == pytest.approx(rows["loss"]["timings"]["training_s"])
    # memorization reuses the same bank (targets carry checkpoints) and ranks proxies
    mtrack = plugins.track("memorization")
    mplan = make_plan(mtrack, mtrack.profile("tiny"), [plugins.method("loss-proxy")], store)
    (mout,) = execute(mplan, store, ctx)
    assert mout.status == "done", mout.error
    assert -1.0 <= mout.metrics["spearman"] <= 1.0 and math.isfinite(mout.metrics["pearson"])
    (mrow,) = store.results(track="memorization", status="done")
    assert mrow["info"]["models_shared"]["shadows"] is True and mrow["info"]["n_checkpoints"] == 2


def test_dp_targets_against_non_private_shadows(workdir):
    pytest.importorskip("opacus")
    from coreset_bench import registry as plugins
    from coreset_bench.runner import default_context, expand

    track = plugins.track("privacy")
    ctx = default_context(workdir / "results", "cpu", None)
    method = plugins.method("loss")
    (cell,) = expand(track, track.profile("tiny-dp"), method)
    res = track.run_cell(cell, method, ctx)
    assert res.metrics["target_epsilon"] == pytest.approx(8.0, rel=0.05)
    assert 0.0 <= res.metrics["auc"] <= 1.0
    tm = res.info["target_models"]
    assert len(tm) == 2 and all(m["noise_multiplier"] > 0 for m in tm)
    # the shadows are the non-private bank of privacy/tiny (same key), the targets are DP
    (plain,) = expand(track, track.profile("tiny"), method)
    _, shadow_spec, _, target_spec, _ = track.bank_specs(plain, ctx)
    assert shadow_spec.key == res.info["shadow_bank"] and target_spec.key != res.info["target_bank"]


@pytest.mark.slow
def test_quick_profile_attacks_and_proxies(workdir):
    """privacy/quick@1 and memorization/quick@1 (about 5-20 minutes on 2 shared cores): every
    shadow-calibrated attack beats chance clearly, and curvature tracks memorization."""
    from coreset_bench import registry as plugins
    from coreset_bench.runner import default_context, expand

    ctx = default_context(workdir / "results", "cpu", None)
    track = plugins.track("privacy")
    for name in ("loss", "lira", "attack-r"):
        method = plugins.method(name)
        (cell,) = expand(track, track.profile("quick"), method)
        res = track.run_cell(cell, method, ctx)
        assert res.metrics["auc"] > (0.53 if name == "loss" else 0.56), name
        assert res.metrics["target_test_acc"] > 0.9
    mtrack = plugins.track("memorization")
    method = plugins.method("input-curvature")
    (cell,) = expand(mtrack, mtrack.profile("quick"), method)
    assert mtrack.run_cell(cell, method, ctx).metrics["spearman"] > 0.1


def test_epsilon_sweep_board_figure(tmp_path):
    """memorization/quick-dp: the board draws score and FZ memorization against epsilon (the
    non-private reference at the right end) with the fitted bound shape; other profiles: none."""
    import math as _m

    from coreset_bench import registry as plugins
    from coreset_bench.leaderboard import figures
    from coreset_bench.leaderboard.board import build_board
    from coreset_bench.leaderboard.data import normalize_records

    track = plugins.track("memorization")
    prof = track.profile("quick-dp@1")
    rows = []
    for name, params, scale in (("input-curvature", {"estimator": "hutchinson"}, 1.0), ("input-curvature", {"estimator": "regr"}, 0.01)):
        for eps in prof.axes["epsilon"]:
            f = 1.0 - _m.exp(-float(eps)) if float(eps) != _m.inf else 1.0
            rows.append({"track": "memorization", "profile": prof.id, "method": name, "method_version": "1", "params": params,
                         "axes": {"dataset": "digits", "arch": "mlp", "training": "dp-sgd", "epsilon": eps}, "repeat": 0, "status": "done",
                         "metrics": {"spearman": 0.3 * f, "score_mean": scale * (0.2 + f), "mem_mean": 0.1 * f, "mem_q90": 0.4 * f, "mem_se_mean": 0.05},
                         "info": {}, "timings": {"total_s": 1.0}})
    board = build_board(track, prof, normalize_records(rows))
    out = tmp_path / "eps.svg"
    assert figures.epsilon_sweep(board, out, metric="score_mean", relative=True)  # the memorization track declares this figure (board_figures)
    svg = out.read_text()
    assert "non-private" in svg and "estimator=regr" in svg and "FZ memorization" in svg
    assert figures._bound_shape_fit([1.0, 4.0, _m.inf], [0.2 + (1 - _m.exp(-1.0)), 0.2 + (1 - _m.exp(-4.0)), 1.2]) == pytest.approx((1.0, 0.2))
    plain = build_board(track, track.profile("quick@2"), normalize_records([{**rows[0], "profile": "memorization/quick@2", "axes": {"dataset": "digits", "arch": "cnn-small", "training": "standard"}}]))
    assert not figures.epsilon_sweep(plain, tmp_path / "none.svg") and not (tmp_path / "none.svg").exists()


def test_epsilon_sweep_trains_the_shadows_like_the_targets(workdir):
    """memorization/*-dp: at each epsilon the shadows (the FZ estimate) are DP-trained at that
    epsilon with the targets' recipe; inf is the non-private reference; the privacy track's DP
    profiles keep non-private shadows."""
    from coreset_bench import registry as plugins
    from coreset_bench.runner import default_context, expand

    ctx = default_context(workdir / "results", "cpu", None)
    track = plugins.track("memorization")
    method = plugins.method("loss-proxy")
    cells = expand(track, track.profile("tiny-dp"), method)
    assert [c.axes["epsilon"] for c in cells] == [8.0, "inf"]
    keys = set()
    for c in cells:
        _, sspec, smask, tspec, _ = track.bank_specs(c, ctx)
        assert sspec.training == tspec.training == "dp-sgd" and sspec.recipe == tspec.recipe
        assert sspec.recipe["epsilon"] == float(c.axes["epsilon"]) and sspec.recipe["accountant"] == "prv"
        assert sspec.mask_scheme == "independent" and len(set(smask.sum(0).tolist())) > 1
        keys.add(sspec.key)
    assert len(keys) == 2
    ptrack = plugins.track("privacy")
    (pc,) = expand(ptrack, ptrack.profile("tiny-dp"), plugins.method("loss"))
    _, sspec, _, tspec, _ = ptrack.bank_specs(pc, ctx)
    assert sspec.training == "standard" and tspec.training == "dp-sgd" and tspec.recipe["accountant"] == "prv"
    (p1,) = expand(ptrack, ptrack.profile("tiny-dp@1"), plugins.method("loss"))
    assert ptrack.bank_specs(p1, ctx)[3].recipe["accountant"] == "rdp"


def test_dp_sgd_is_deterministic():
    pytest.importorskip("opacus")
    from coreset_bench import registry as plugins

    dp = plugins.method("dp-sgd")
    x, y = _digits(90, 4)
    states = []
    for _ in range(2):
        m = dp.prepare_model(_mlp(1))
        info = dp.fit(m, x, y, recipe={"epsilon": 2.0, "epochs": 2, "batch_size": 30}, num_classes=10, seed=5)
        states.append((m.state_dict(), info["noise_multiplier"], info["epsilon"]))
    assert states[0][1:] == states[1][1:]
    for k in states[0][0]:
        assert torch.equal(states[0][0][k], states[1][0][k])


@pytest.mark.slow
def test_memorization_epsilon_sweep_end_to_end(workdir):
    """memorization/tiny-dp@1 through run_cell (minutes on a loaded CPU): both cells finish with
    the distributions, the FZ standard error, sigma and realized epsilon (none at inf), and the
    same cell run again from a fresh cache gives the same numbers."""
    from coreset_bench import registry as plugins
    from coreset_bench.runner import default_context, expand

    track = plugins.track("memorization")
    method = plugins.method("input-curvature").with_params(estimator="regr")
    res = {}
    for c in expand(track, track.profile("tiny-dp"), method):
        r = track.run_cell(c, method, default_context(workdir / "r1", "cpu", None))
        res[c.axes["epsilon"]] = r
        for k in ("spearman", "mem_se_mean", "mem_split_half_spearman", "score_mean", "score_q90", "mem_q90", "target_noise_multiplier"):
            assert math.isfinite(r.metrics[k]), k
    assert res[8.0].metrics["target_epsilon"] == pytest.approx(8.0, abs=0.05) and res[8.0].info["dp"]["targets"]["accountant"] == "prv"
    assert "target_epsilon" not in res["inf"].metrics and res["inf"].metrics["target_noise_multiplier"] == 0.0
    again = track.run_cell(expand(track, track.profile("tiny-dp"), method)[0], method, default_context(workdir / "r2", "cpu", None))
    assert again.metrics == res[8.0].metrics
