"""The label-noise track and its noise-correction plugins.

* noise injection: exact per-class flip counts, the realized transition matrix against the
  requested one (symmetric and asymmetric), the documented asymmetric mappings;
* Verifix: the projection removes a planted weight direction that the verified activations do
  not span and leaves the spanned directions as the formula says; the plugin picks an alpha that
  suppresses a noise direction and recovers accuracy;
* every plugin end to end on ``label-noise/tiny@1`` through the runner; the noisy model is
  trained once and shared; invalid plugin outputs fail their cell with a message naming the
  plugin; the CLI runs the track.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from coreset_bench import hookimpl
from coreset_bench.kinds import NoiseCorrectionMethod, NoiseView
from coreset_bench.runner import default_context, execute, make_plan
from coreset_bench.store import Store
from coreset_bench.tracks import label_noise as LN
from coreset_bench.tracks.base import CellFailure

NOISE_PLUGINS = "core,standard,verifix,none-correction,finetune-verified,retrain-verified,confident-learning"


# ---- noise injection ---------------------------------------------------------------------------


def _labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.37])
def test_symmetric_noise_rate_and_transition_are_exact(rate):
    counts = [50, 37, 101, 64, 13]
    y = _labels(counts)
    C = len(counts)
    noisy = LN.inject_noise(y, C, "symmetric", rate, seed=3)
    tc = LN.transition_counts(y, noisy, C)
    assert tc.sum(1).tolist() == counts
    for c, n_c in enumerate(counts):
        k = int(np.floor(rate * n_c + 0.5))
        assert n_c - tc[c, c] == k  # exactly round(rate * n_c) flipped
        off = np.delete(tc[c], c)
        assert off.max() - off.min() <= 1 and off.sum() == k  # spread evenly over the others
    realized = LN.transition_matrix(y, noisy, C)
    requested = LN.requested_transition("symmetric", rate, C)
    # every entry within one sample of the request (integer rounding only)
    assert np.all(np.abs(realized - requested) * np.asarray(counts)[:, None] <= 1 + 0.5 / (C - 1) + 1e-9)
    np.testing.assert_allclose(realized.sum(1), 1.0)
    assert np.array_equal(noisy, LN.inject_noise(y, C, "symmetric", rate, seed=3))
    assert not np.array_equal(noisy, LN.inject_noise(y, C, "symmetric", rate, seed=4))


def test_symmetric_noise_on_divisible_counts_matches_the_request_exactly():
    y = _labels([36] * 10)  # 36 * 0.25 = 9 flips = 1 per other class
    noisy = LN.inject_noise(y, 10, "symmetric", 0.25, seed=0)
    np.testing.assert_allclose(LN.transition_matrix(y, noisy, 10), LN.requested_transition("symmetric", 0.25, 10), atol=1e-12)


@pytest.mark.parametrize("rate", [0.25, 0.5])
def test_asymmetric_noise_follows_the_digits_mapping_exactly(rate):
    counts = [40, 41, 42, 43, 44, 45, 46, 47, 48, 49]
    y = _labels(counts)
    mapping, name = LN.asymmetric_mapping([str(i) for i in range(10)])
    assert name == "patrini2017-mnist" and mapping == {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}
    noisy = LN.inject_noise(y, 10, "asymmetric", rate, seed=1, mapping=mapping)
    tc = LN.transition_counts(y, noisy, 10)
    for c, n_c in enumerate(counts):
        k = int(np.floor(rate * n_c + 0.5)) if c in mapping else 0
        expect = np.zeros(10, dtype=np.int64)
        expect[c] = n_c - k
        if k:
            expect[mapping[c]] += k
        assert tc[c].tolist() == expect.tolist(), c
    realized = LN.transition_matrix(y, noisy, 10)
    requested = LN.requested_transition("asymmetric", rate, 10, mapping)
    assert np.all(np.abs(realized - requested) * np.asarray(counts)[:, None] <= 0.5 + 1e-9)


def test_asymmetric_mappings_for_cifar_names_and_fallback():
    c10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    m, name = LN.asymmetric_mapping(c10)
    named = {c10[a]: c10[b] for a, b in m.items()}
    assert name == "patrini2017-cifar10"
    assert named == {"truck": "automobile", "bird": "airplane", "deer": "horse", "cat": "dog", "dog": "cat"}
    names100 = sorted(n for g in LN.CIFAR100_SUPERCLASSES for n in g)
    assert len(set(names100)) == 100
    m100, name100 = LN.asymmetric_mapping(names100)
    assert name100 == "cifar100-next-in-superclass"
    group_of = {n: i for i, g in enumerate(LN.CIFAR100_SUPERCLASSES) for n in g}
    assert sorted(m100) == list(range(100)) and sorted(m100.values()) == list(range(100))  # a permutation
    assert all(group_of[names100[a]] == group_of[names100[b]] and a != b for a, b in m100.items())
    mf, namef = LN.asymmetric_mapping(["a", "b", "c"])
    assert namef == "pairflip-next-class" and mf == {0: 1, 1: 2, 2: 0}


def test_verified_carve_is_per_class_and_low_curvature_picks_the_flattest():
    y = _labels([30, 20, 5])
    idx = LN.carve_verified(y, 3, fraction=0.1, min_per_class=4, seed=0)
    assert np.bincount(y[idx], minlength=3).tolist() == [4, 4, 4]
    assert np.bincount(y[LN.carve_verified(y, 3, fraction=0.5, min_per_class=1, seed=0)], minlength=3).tolist() == [15, 10, 3]
    curv = np.arange(len(y), dtype=float)[::-1]  # later samples are flatter
    low = LN.low_curvature_verified(curv, y, np.array([2, 3, 1]))
    assert low.tolist() == sorted([28, 29, 47, 48, 49, 54])


def test_input_curvature_is_finite_and_seeded():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.rand(10, 1, 2, 2)
    y = torch.arange(10) % 3
    a = LN.input_curvature(model, x, y, h=1e-2, n_iter=3, seed=0)
    assert a.shape == (10,) and np.all(np.isfinite(a)) and np.all(a > 0)
    np.testing.assert_array_equal(a, LN.input_curvature(model, x, y, h=1e-2, n_iter=3, seed=0))


def test_input_curvature_normalized_units_follow_the_reference_convention():
    """units "normalized" (label-noise profiles from version 2, issue 22 item 5): h and the
    gradient are in normalized-input units, as the reference and the privacy tracks' helper, so a
    model g((x - m) / std) scored at x = m + std z gives g's score at z for any std, and the value
    equals the privacy tracks' ``_mia.regr_curvature``; pixel units (version 1) do not."""
    from coreset_bench.plugins.privacy import _mia

    torch.manual_seed(0)
    g = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    z = torch.rand(10, 1, 2, 2, dtype=torch.float64)
    y = torch.arange(10) % 3
    base = LN.input_curvature(g, z, y, h=1e-2, n_iter=3, seed=0, std=(1.0,))
    for sd in (0.25, 4.0):
        m = nn.Sequential(_Affine(0.5, sd), g)
        x = 0.5 + sd * z
        np.testing.assert_allclose(LN.input_curvature(m, x, y, h=1e-2, n_iter=3, seed=0, std=(sd,)), base, rtol=1e-6)
        assert not np.allclose(LN.input_curvature(m, x, y, h=1e-2, n_iter=3, seed=0), base, rtol=1e-3)
        ref = _mia.regr_curvature(m, x, y, h=1e-2, n_iter=3, generator=torch.Generator().manual_seed(0), std=(sd,))
        np.testing.assert_allclose(LN.input_curvature(m, x, y, h=1e-2, n_iter=3, seed=0, std=(sd,)), ref.numpy(), rtol=1e-3)
    track = LN.LabelNoiseTrack() if hasattr(LN, "LabelNoiseTrack") else None
    profs = {p.id: p for p in (track.profiles() if track else LN._profiles())}
    assert "units" not in profs["label-noise/tiny@1"].settings["curvature"]
    assert profs["label-noise/tiny@2"].settings["curvature"]["units"] == "normalized"
    assert profs["label-noise/quick-lowcurv@2"].settings["curvature"]["units"] == "normalized"


class _Affine(nn.Module):
    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


# ---- Verifix -------------------------------------------------------------------------------------


def test_verifix_projection_removes_a_planted_direction_and_keeps_the_rest():
    from coreset_bench.plugins.noise_correction import verifix as V

    d, k = 6, 3
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    span, noise_dir, other = q[:, :k], q[:, k], q[:, k + 1 :]
    # verified activations: equal energy along k orthonormal directions, nothing along the rest
    coef = torch.cat([torch.eye(k), -torch.eye(k)]) * 2.0
    x = (coef.double() @ span.T).float()
    model = nn.Linear(d, 4).float()
    with torch.no_grad():
        model.weight.copy_(torch.randn(4, d, generator=torch.Generator().manual_seed(1)))
        model.weight.add_(5.0 * torch.randn(4, 1, generator=torch.Generator().manual_seed(2)) * noise_dir.float()[None, :])
    w0 = model.weight.detach().double().clone()
    b0 = model.bias.detach().clone()
    alpha = 1e3
    out = V.project_model(model, x, alpha)
    w = out.weight.detach().double()
    s = alpha / (alpha + k - 1)  # lambda = 1/k for each spanned direction
    assert torch.allclose(w @ noise_dir, torch.zeros(4, dtype=torch.float64), atol=1e-5)  # removed
    assert torch.allclose(w @ other, torch.zeros(4, d - k - 1, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(w @ span, s * (w0 @ span), atol=1e-5)  # kept, scaled by s
    assert torch.equal(out.bias.detach(), b0)  # biases untouched
    assert torch.equal(model.weight.detach().double(), w0)  # the input model is not modified
    P = V.projection(V.layer_grams(model, x, [("", model)])[""][0], alpha)
    torch.testing.assert_close(P, s * span @ span.T, atol=1e-6, rtol=0)


def test_verifix_thin_svd_and_gram_paths_give_the_same_projection():
    from coreset_bench.plugins.noise_correction import verifix as V

    layer = nn.Linear(40, 5)
    x = torch.randn(12, 40, generator=torch.Generator().manual_seed(0)) @ torch.randn(40, 40, generator=torch.Generator().manual_seed(1))
    thin = V.layer_stats(layer, x, [("", layer)])[""]
    gram = V.layer_stats(layer, x, [("", layer)], force_gram=True)[""]
    assert thin.keep_columns and not gram.keep_columns
    for alpha in (1e2, 1e5):
        u, lam = thin.basis([0])
        p_thin = (u * V.importance(lam, alpha)) @ u.T
        torch.testing.assert_close(p_thin, V.projection(gram.gram([0]), alpha), atol=1e-8, rtol=0)


def test_verifix_projects_conv_layers_through_unfolded_patches():
    from coreset_bench.plugins.noise_correction import verifix as V

    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    # inputs only in channel 0: the channel-1 weights receive no verified activation
    x = torch.zeros(8, 2, 5, 5)
    x[:, 0] = torch.rand(8, 5, 5, generator=torch.Generator().manual_seed(0))
    out = V.project_model(nn.Sequential(conv), x, 1e6)
    w = out[0].weight.detach()
    assert torch.allclose(w[:, 1], torch.zeros_like(w[:, 1]), atol=1e-6)
    assert torch.allclose(w[:, 0], conv.weight.detach()[:, 0], rtol=0, atol=5e-3)


class _Lin(nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.head = nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            self.head.weight.copy_(w)

    def forward(self, x):
        return self.head(x)


def _planted_data(n, seed, eps=0.01, orthogonal=False):
    """3 classes on coordinates 0..2 (plus isotropic noise on 0..8); coordinate 9 is a weak
    nuisance direction, tiny in every input. ``orthogonal``: the nuisance column is made exactly
    orthogonal to the others in this sample, so it is an exact singular direction."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.zeros(n, 10, dtype=torch.float64)
    x[torch.arange(n), y] = 1.0
    x[:, :9] += 0.3 * torch.randn(n, 9, generator=g, dtype=torch.float64)
    z = torch.randn(n, generator=g, dtype=torch.float64)
    if orthogonal:
        q, _ = torch.linalg.qr(x[:, :9])
        z = z - q @ (q.T @ z)
        z = z / z.std()
    x[:, 9] = eps * z
    return x.float(), y


def test_verifix_plugin_chooses_an_alpha_that_suppresses_the_noise_direction():
    from coreset_bench.plugins.noise_correction.verifix import Verifix

    w = torch.zeros(3, 10)
    w[:3, :3] = 3 * torch.eye(3)
    w[:, 9] = torch.tensor([400.0, -400.0, 0.0])  # memorized noise: large weights on a weak direction
    model = _Lin(w).eval()
    x_ver, y_ver = _planted_data(90, seed=1, orthogonal=True)
    x_test, y_test = _planted_data(600, seed=2)
    acc = lambda m: float((m(x_test).argmax(1) == y_test).float().mean())  # noqa: E731
    view = NoiseView(model=model, x_verified=x_ver, y_verified=y_ver, x_pool=x_test[:0], y_pool_noisy=y_test[:0], num_classes=3, model_factory=lambda: None, train=lambda *a, **k: None, seed=0, generator=torch.Generator().manual_seed(0), recipe={}, info={})
    out = Verifix().correct(view)
    alpha = view.info["alpha"]
    assert alpha is not None and alpha <= 1e4, view.info
    wn = out.head.weight.detach()
    assert wn[:, 9].abs().max() < 0.05 * 400  # the noise direction is suppressed
    assert torch.allclose(wn[:3, :3], w[:3, :3], rtol=0.02, atol=0.02)  # the class directions are kept
    assert acc(out) > acc(model) + 0.2 and acc(out) > 0.9
    # with the nuisance weights absent the unmodified model is kept (never worse on the selection set)
    # selection on the verified set itself: the returned model is never worse there than the input
    view2 = NoiseView(**{**view.__dict__, "info": {}})
    out2 = Verifix().with_params(selection="verified").correct(view2)
    acc_ver = lambda m: float((m(x_ver).argmax(1) == y_ver).float().mean())  # noqa: E731
    assert view2.info["selection_acc_unmodified"] == pytest.approx(acc_ver(model))
    assert acc_ver(out2) == pytest.approx(max([acc_ver(model), *view2.info["selection_acc"].values()]))


def test_verifix_rejects_bad_parameters():
    from coreset_bench.plugins.noise_correction.verifix import Verifix, parse_alphas

    assert parse_alphas("1e4, 1e3,1e4") == [1e3, 1e4]
    with pytest.raises(ValueError, match="alphas"):
        parse_alphas("0,1e3")
    with pytest.raises(ValueError, match="method 'verifix', parameter 'selection': expected one of"):
        Verifix().with_params(selection="oracle")  # the declaration, before any cell
    with pytest.raises(ValueError, match="selection must be"):
        Verifix(selection="oracle").correct(None)  # the method's own check (parameters set directly)
    x, y = _planted_data(30, seed=0)
    view = NoiseView(model=_Lin(torch.eye(3, 10)), x_verified=x, y_verified=y, x_pool=x[:0], y_pool_noisy=y[:0], num_classes=3, model_factory=lambda: None, train=lambda *a, **k: None, seed=0, generator=None)
    with pytest.raises(ValueError, match="needs a held-out split"):
        Verifix().with_params(selection="validation").correct(view)


# ---- the track end to end -----------------------------------------------------------------------


class ReturnsString(NoiseCorrectionMethod):
    name = "test-returns-string"

    def correct(self, view):
        return "not a model"


class NanWeights(NoiseCorrectionMethod):
    name = "test-nan-weights"

    def correct(self, view):
        import copy

        m = copy.deepcopy(view.model)
        with torch.no_grad():
            next(m.parameters()).fill_(float("nan"))
        return m


class WrongOutput(NoiseCorrectionMethod):
    name = "test-wrong-output"

    def correct(self, view):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))


class WrongClasses(NoiseCorrectionMethod):
    """A registered architecture, but for 3 classes instead of the view's 10."""

    name = "test-wrong-classes"

    def correct(self, view):
        from coreset_bench.models import build

        return build("mlp", (1, 8, 8), 3, (0.5,), (0.25,), 0)


class _BadPlugins:
    @hookimpl
    def register_methods(self, register):
        for cls in (ReturnsString, NanWeights, WrongOutput, WrongClasses):
            register(cls())


@pytest.fixture
def noise_reg(fresh_plugins, monkeypatch):
    from coreset_bench import registry

    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", NOISE_PLUGINS)
    registry.reset()
    registry.load_plugins()
    registry.register(_BadPlugins(), name="label-noise-test")
    return registry


def _run(reg, tmp_path, names, *, verified=None, params=None):
    track = reg.track("label-noise")
    prof = track.profile("tiny@1")
    store = Store(tmp_path / "r.db")
    methods = [reg.method(n).with_params(**(params or {}).get(n, {})) for n in names]
    plan = make_plan(track, prof, methods, store, references=False)
    if verified is not None:
        plan.todo = [p for p in plan.todo if p.cell.axes["verified"] in verified]
    outs = execute(plan, store, default_context(tmp_path / "results", "cpu", None))
    rows = {(r["method"], r["axes"]["verified"]): r for r in store.results(track="label-noise")}
    store.close()
    return outs, rows


def test_every_plugin_runs_on_the_tiny_profile(noise_reg, tmp_path):
    names = ["none", "verifix", "finetune-verified", "retrain-verified", "confident-learning"]
    params = {"confident-learning": {"folds": 2, "cv_epochs": 4}, "retrain-verified": {"epochs": 30}, "finetune-verified": {"epochs": 10}}
    outs, rows = _run(noise_reg, tmp_path, names, verified=["clean"], params=params)
    assert len(outs) == 5 and all(o.status == "done" for o in outs), [(o.cell.method, o.error) for o in outs]
    before = {r["metrics"]["acc_before"] for r in rows.values()}
    assert len(before) == 1  # one noisy model, shared
    keys = {r["info"]["noisy_model_key"] for r in rows.values()}
    assert len(keys) == 1
    assert sum(not r["info"]["noisy_model_shared"] for r in rows.values()) == 1  # trained once
    for (m, _v), r in rows.items():
        met, tim, info = r["metrics"], r["timings"], r["info"]
        assert 0 <= met["acc_after"] <= 1 and met["gain"] == pytest.approx(met["acc_after"] - met["acc_before"])
        assert tim["correction_s"] >= 0 and tim["noisy_train_s"] > 0 and tim["total_s"] >= tim["noisy_train_s"]
        assert info["noise_rate_realized"] == pytest.approx(0.5) and info["noise_rate_requested"] == 0.5
        T = np.asarray(info["transition_matrix"])
        np.testing.assert_allclose(np.diag(T), 0.5, atol=1 / 36 + 1e-9)  # 36 pool samples a class
        assert info["verified_size"] == 40 and info["verified_label_precision"] == 1.0 and info["val_size"] == 0
    assert rows[("none", "clean")]["metrics"]["gain"] == 0.0
    # every metric a cell emits is declared by the track, and within its range (issue 37)
    from coreset_bench.leaderboard.board import metric_ranges
    from coreset_bench.leaderboard.entries import value_problem

    ranges = metric_ranges(noise_reg.track("label-noise"))
    for r in rows.values():
        assert any(m.startswith("class_acc_") for m in r["metrics"])
        for m, v in r["metrics"].items():
            assert m in ranges and not value_problem(m, v, ranges, "label-noise"), (m, v)
    assert rows[("verifix", "clean")]["info"]["method_layers_projected"] == 3  # the MLP's three Linear layers
    assert rows[("verifix", "clean")]["info"]["method_selection"] == "cv"
    assert rows[("confident-learning", "clean")]["info"]["method_issues_found"] > 0
    assert rows[("confident-learning", "clean")]["timings"]["correction_training_s"] > 0


def test_low_curvature_verified_set_comes_from_the_noisy_pool(noise_reg, tmp_path):
    outs, rows = _run(noise_reg, tmp_path, ["none", "verifix"], verified=["low-curvature"])
    assert all(o.status == "done" for o in outs), [o.error for o in outs]
    r = rows[("verifix", "low-curvature")]
    # 4 samples a class held out for model selection; the verified set stays in the training pool
    assert r["info"]["pool_size"] == 360 and r["info"]["val_size"] == 40 and r["info"]["verified_size"] == 40
    assert r["info"]["method_selection"] == "validation"  # alpha scored on the held-out split, not on trained-on samples
    assert 0.0 <= r["info"]["verified_label_precision"] <= 1.0
    assert r["timings"]["curvature_s"] > 0
    assert rows[("none", "low-curvature")]["timings"]["curvature_s"] == r["timings"]["curvature_s"]  # shared cost


@pytest.mark.parametrize(
    "name, message",
    [
        ("test-returns-string", "correct() returned str, not a torch.nn.Module"),
        ("test-nan-weights", "non-finite (NaN or inf) values"),
        # models come back from the contestant worker as a registered architecture and weights
        ("test-wrong-output", "correct() returned a Sequential that is not a model of a registered architecture"),
        ("test-wrong-classes", "cannot be rebuilt as the view's model (it is a mlp for 3 classes; the view's model is a mlp for 10)"),
    ],
)
def test_invalid_output_fails_the_cell_naming_the_plugin(noise_reg, tmp_path, name, message):
    outs, _rows = _run(noise_reg, tmp_path, [name], verified=["clean"])
    assert len(outs) == 1 and outs[0].status == "failed"
    assert f"plugin {name!r}" in outs[0].error and message in outs[0].error


def test_check_corrected_model_checks_the_logit_shape():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(CellFailure, match=r"plugin 'p'.*shape \(2, 3\).*\(2, 5\)"):
        LN.check_corrected_model(model, "p", torch.rand(2, 1, 2, 2), 5, "cpu")
    assert LN.check_corrected_model(model, "p", torch.rand(2, 1, 2, 2), 3, "cpu") is model


def test_cli_runs_the_label_noise_track(noise_reg, workdir):
    from typer.testing import CliRunner

    from coreset_bench.cli import app

    res = CliRunner().invoke(app, ["run", "--plugin", "none", "--track", "label-noise", "--profile", "tiny", "--seeds", "0", "--db", str(workdir / "x.db"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "label-noise/tiny@2" in res.output and "acc_after" in res.output
    s = Store(workdir / "x.db")
    rows = s.results(track="label-noise", status="done")
    s.close()
    assert len(rows) == 2 and {r["axes"]["verified"] for r in rows} == {"clean", "low-curvature"}
