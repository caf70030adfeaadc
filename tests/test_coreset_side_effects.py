"""Side effects of a coreset (issue 40): membership leakage, worst class, calibration and the share
of flipped labels a selection keeps; off for every published profile."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from coreset_bench.tracks.coreset import side_effects as SE
from coreset_bench.cells import Cell, CellContext, Profile
from coreset_bench.tracks.coreset import SIDE_EFFECTS_DIGITS, CoresetTrack

ROOT = Path(__file__).resolve().parents[1]


# ---- calibration -------------------------------------------------------------------------------


def test_ece_of_a_known_toy_case():
    # 4 predictions: two at confidence 0.9 (one right), two at 0.6 (both right); 10 bins
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]])
    labels = np.array([0, 1, 1, 0])
    # bin (0.8, 0.9]: acc 0.5, conf 0.9 -> 0.4; bin (0.5, 0.6]: acc 1, conf 0.6 -> 0.4; weights 1/2 each
    assert SE.expected_calibration_error(probs, labels, bins=10) == pytest.approx(0.4)
    # one bin: |mean acc - mean conf| = |0.75 - 0.75| = 0
    assert SE.expected_calibration_error(probs, labels, bins=1) == pytest.approx(0.0)
    # a perfectly confident, always right model is calibrated; always wrong: ECE 1
    eye = np.eye(3)
    assert SE.expected_calibration_error(eye, np.arange(3)) == 0.0
    assert SE.expected_calibration_error(eye, np.array([1, 2, 0])) == pytest.approx(1.0)
    # a confidence exactly on a bin edge goes to the lower bin: 0.6 with 5 bins is in (0.4, 0.6]
    p = np.array([[0.6, 0.4], [0.7, 0.3]])
    assert SE.expected_calibration_error(p, np.array([0, 1]), bins=5) == pytest.approx(0.5 * 0.4 + 0.5 * 0.7)
    with pytest.raises(ValueError, match="bin"):
        SE.expected_calibration_error(probs, labels, bins=0)


def test_worst_class_skips_classes_without_points():
    m = {"class_acc_0": 0.9, "class_acc_1": 0.3, "class_acc_2": float("nan"), "class_pgd_acc_0": 0.5}
    assert SE.worst_class(m, "class_acc_", 3) == 0.3
    assert SE.worst_class(m, "class_pgd_acc_", 3) == 0.5
    assert SE.worst_class(m, "class_autoattack_acc_", 3) is None


# ---- leakage ---------------------------------------------------------------------------------


def _memorizer(x: torch.Tensor, y: torch.Tensor, epochs: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(x[0].numel(), 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def test_a_model_that_memorises_its_subset_is_detected_and_one_that_did_not_train_is_not():
    """Random inputs with random labels: the only way to fit them is to memorise them. Every
    threshold attack then tells members from fresh points (AUC near 1); an untrained model of the
    same shape gives no signal (AUC near 0.5)."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(160, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (160,), generator=g)
    xm, ym, xo, yo = x[:80], y[:80], x[80:], y[80:]
    model = _memorizer(xm, ym, epochs=300)
    assert (model(xm).argmax(1) == ym).float().mean() == 1.0
    out = SE.leakage(model, xm, ym, xo, yo, 10, seed=3, input_std=[1.0])
    assert set(out) == {f"mia_{s}_{m}" for s in SE.MIA_SCORES for m in ("auc", "tpr_at_1pct_fpr")}
    assert out["mia_loss_auc"] > 0.95 and out["mia_mentr_auc"] > 0.95, out
    assert out["mia_loss_tpr_at_1pct_fpr"] > 0.1, out  # far above the 1 % of a blind guess
    assert out["mia_curvature_auc"] > 0.9, out  # memorised points sit in flat regions of the loss
    fresh = _memorizer(xm, ym, epochs=0)
    base = SE.leakage(fresh, xm, ym, xo, yo, 10, which=["loss"], seed=3)
    assert 0.3 < base["mia_loss_auc"] < 0.7, base
    # deterministic: the same model, points and seed give the same numbers
    assert SE.leakage(model, xm, ym, xo, yo, 10, seed=3, input_std=[1.0]) == out


def test_paired_draw_takes_equal_numbers_and_the_same_heldout_points_for_every_method():
    m1, h1 = SE.paired_draw(50, 30, None, member_seed=1, heldout_seed=7)
    m2, h2 = SE.paired_draw(80, 30, None, member_seed=2, heldout_seed=7)
    assert len(m1) == len(h1) == 30 and np.array_equal(h1, h2)
    m3, h3 = SE.paired_draw(12, 30, None, member_seed=1, heldout_seed=7)
    assert len(m3) == len(h3) == 12 and np.array_equal(m3, np.arange(12))
    assert len(SE.paired_draw(500, 400, 100, 0, 0)[0]) == 100


def test_settings_fill_defaults_and_reject_nonsense():
    assert SE.settings({}) is None and SE.settings({"side_effects": None}) is None
    assert SE.settings({"side_effects": True})["ece_bins"] == 15
    assert SE.settings({"side_effects": {"ece_bins": 20}})["curvature"]["n_iter"] == 10
    for bad, word in (({"ece_bins": 0}, "ece_bins"), ({"mia": ["lira"]}, "lira"), ({"bins": 3}, "unknown key"), ({"heldout_fraction": 1.5}, "heldout_fraction")):
        with pytest.raises(ValueError, match=word):
            SE.settings({"side_effects": bad})
    with pytest.raises(ValueError, match="rate"):
        SE.noise_settings({"label_noise": {"rate": 0}})


# ---- profiles: off where published -------------------------------------------------------------


def test_side_effects_are_off_for_every_published_profile_and_on_for_the_new_ones():
    t = CoresetTrack()
    published = {json.loads(f.read_text())["profile"]["id"] for f in (ROOT / "results" / "entries" / "coreset").rglob("*.json")}
    assert {"coreset/quick@2", "coreset/cifar10-study@1"} <= published
    # the profiles published before issue 40 keep their numbers: no side effects, no noise
    for p in t.profiles():
        with_side_effects = p.name == "quick-noisy" or (p.name, p.version) in (("quick", 3), ("cifar10-study", 2))
        if p.id in published and not with_side_effects:
            assert SE.settings(p.settings) is None and SE.noise_settings(p.settings) is None, p.id
    noisy, study = t.profile("quick-noisy@1"), t.profile("cifar10-study@2")
    q2, s1 = t.profile("quick@2"), t.profile("cifar10-study@1")
    assert dict(noisy.axes) == dict(q2.axes) and tuple(noisy.seeds) == tuple(q2.seeds)
    assert SE.noise_settings(noisy.settings) == {"kind": "symmetric", "rate": 0.2, "flip_validation": False}
    assert noisy.salted and not q2.salted
    assert SE.settings(study.settings) is not None and dict(study.axes) == dict(s1.axes)
    # the study's pool keeps 1,000 images per class: 1,200 drawn, 100 validation, 100 held out
    st = study.settings
    per_class = st["max_train_per_class"] * (1 - st["val_fraction"])
    assert round(per_class) == 1100 and round(per_class * (1 - st["side_effects"]["heldout_fraction"])) == 1000


def test_a_published_profile_keeps_its_pool_and_proxy_key(tmp_path):
    """quick@2 (published): no held-out split, no noise, the proxy cache key of before."""
    t = CoresetTrack()
    q2 = t.profile("quick@2")
    cell = Cell("coreset", q2.id, "random", "1", {}, {"dataset": "digits", "arch": "cnn-small", "budget": 0.1, "training": "standard"}, 0)
    ctx = CellContext(tmp_path, tmp_path / "cache", None)
    fx = t.fixture(q2, cell, ctx)
    assert fx.world is None and fx.side is None
    assert len(fx.sp.y_pool) == len(t.splits(q2, "digits", ctx).y_pool)
    assert set(fx.spec.split) == {"profile", "val_fraction", "max_train_per_class", "n_pool"}


def test_check_inputs_names_a_missing_attack_plugin(monkeypatch):
    from coreset_bench import registry

    real = registry.method

    def method(name, *a, **k):
        if name == "mentr":
            raise registry.UnknownNameError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(registry, "method", method)
    with pytest.raises(ValueError, match="'mentr'.*entry point 'mentr'"):
        CoresetTrack().check_inputs(CoresetTrack().profile("quick-noisy@1"), None)
    CoresetTrack().check_inputs(CoresetTrack().profile("quick@2"), None)  # no side effects: nothing to check


# ---- the noisy pool through the real track -----------------------------------------------------

NOISY = Profile(
    "coreset",
    "side-test",
    1,
    {"dataset": ["digits"], "arch": ["mlp"], "budget": [0.3], "training": ["standard"]},
    seeds=(0,),
    settings={
        "val_fraction": 0.1,
        "proxy": {"epochs": 1, "batch_size": 64, "lr": 0.05},
        "checkpoints": "all",
        "train": {"budget_mode": "iterations", "steps": 60, "batch_size": 32, "lr": 0.05},
        "robust": {"eps": 0.05, "step_size": 0.0125, "attack_steps": 2, "beta": 6.0, "eval_steps": 3},
        "attacks": [],
        "side_effects": {**SIDE_EFFECTS_DIGITS, "curvature": {"h": 1e-3, "n_iter": 2, "estimator": "zo"}},
        "label_noise": {"kind": "symmetric", "rate": 0.2},
    },
)
SALT = "ab" * 16


def _cell(method: str = "random", repeat: int = 0) -> Cell:
    return Cell("coreset", NOISY.id, method, "1", {}, {"dataset": "digits", "arch": "mlp", "budget": 0.3, "training": "standard"}, repeat)


def _walk(obj, seen=None):
    """Every array-like value reachable from a view's fields (one level into containers)."""
    for name in obj.__dataclass_fields__:
        v = getattr(obj, name)
        yield name, v
        if isinstance(v, (dict,)) or hasattr(v, "items"):
            try:
                for k, w in v.items():
                    yield f"{name}.{k}", w
            except Exception:
                pass
        if hasattr(v, "__dataclass_fields__"):
            yield from ((f"{name}.{k}", w) for k, w in _walk(v))


def test_the_noisy_pool_flips_exact_counts_and_the_selection_view_holds_no_flip_flags(tmp_path):
    from coreset_bench import registry

    t = CoresetTrack()
    ctx = CellContext(tmp_path, tmp_path / "cache", None, hidden_salt=SALT)
    fx = t.fixture(NOISY, _cell(), ctx)
    world = fx.world
    assert world is not None
    clean_pool = t.splits(NOISY, "digits", ctx)
    keep = np.setdiff1d(np.arange(len(clean_pool.y_pool)), np.flatnonzero(np.isin(clean_pool.pool_index, world.heldout_index)))
    y_clean = clean_pool.y_pool.numpy()[keep]
    y_noisy = fx.sp.y_pool.numpy()
    flipped = world.flipped
    assert np.array_equal(flipped, y_clean != y_noisy)
    for c in range(10):  # exact count per class: round(0.2 * n_c)
        n_c = int((y_clean == c).sum())
        assert int(flipped[y_clean == c].sum()) == int(np.floor(0.2 * n_c + 0.5))
    # the held-out split never enters the pool, the validation split keeps its labels
    assert not set(world.heldout_index) & set(fx.sp.pool_index)
    assert np.array_equal(fx.sp.y_val.numpy(), clean_pool.y_val.numpy())
    # the salt decides the flips; another salt, other flips (same pool and held-out split)
    other = t.fixture(NOISY, _cell(), CellContext(tmp_path, tmp_path / "cache", None, hidden_salt="cd" * 16))
    assert np.array_equal(other.world.heldout_index, world.heldout_index) and not np.array_equal(other.world.flipped, flipped)

    view = t.view(fx, _cell(), registry.method("random"))
    assert np.array_equal(view.labels, y_noisy)  # the labels the selection sees are the noisy ones
    for name, v in _walk(view):
        arr = v.detach().cpu().numpy() if hasattr(v, "detach") else v
        if isinstance(arr, np.ndarray) and arr.ndim == 1 and arr.shape == flipped.shape:
            assert not np.array_equal(arr.astype(bool), flipped), f"view field {name} holds the flip flags"
            assert not np.array_equal(arr, y_clean), f"view field {name} holds the clean pool labels"
        assert not (isinstance(v, str) and SALT in v)
    blob = pickle.dumps({k: getattr(view, k) for k in ("x", "y", "x_val", "y_val", "signals", "budget", "fraction", "seed")})
    assert np.packbits(flipped).tobytes() not in blob and y_clean.astype(np.int64).tobytes() not in blob


def test_a_noisy_side_effect_cell_runs_end_to_end(tmp_path, monkeypatch):
    """random through the pipeline on the noisy profile: every side-effect metric present and in
    range, the kept-noise share near the pool's, deterministic, no flip flag in what is stored."""
    from coreset_bench import registry

    monkeypatch.setattr(CoresetTrack, "profiles", lambda self: [NOISY])
    t = CoresetTrack()
    ctx = CellContext(tmp_path, tmp_path / "cache", None, hidden_salt=SALT)
    t.check_inputs(NOISY, None)
    res = t.run_cell(_cell(), registry.method("random"), ctx)
    m = res.metrics
    for k in ("ece", "worst_class_acc", "noise_kept_share", *(f"mia_{s}_auc" for s in SE.MIA_SCORES), *(f"mia_{s}_tpr_at_1pct_fpr" for s in SE.MIA_SCORES)):
        assert k in m and 0.0 <= m[k] <= 1.0, (k, m.get(k))
    assert m["worst_class_acc"] == min(m[f"class_acc_{c}"] for c in range(10))
    pool_share = res.info["noise_pool_share"]
    assert pool_share == pytest.approx(0.2, abs=0.01)
    assert abs(m["noise_kept_share"] - pool_share) < 0.1  # random keeps about the pool's share
    assert res.info["side_effects"]["mia_points"] > 0 and "side_effects_s" in res.timings
    assert "flipped" not in json.dumps(res.info, default=str)
    # every key the cell records is one an exported entry may carry (the validator rejects others)
    assert not [k for k in res.info if k not in t.info_keys and not k.startswith("method_")]
    again = CoresetTrack().run_cell(_cell(), registry.method("random"), CellContext(tmp_path, tmp_path / "cache", None, hidden_salt=SALT))
    assert again.metrics == m


def test_clean_label_leakage_adds_metrics_without_changing_the_others(tmp_path, monkeypatch):
    """``mia_clean_labels``: the attacks again on unflipped members and unflipped held-out points
    (quick-noisy@2); every other number of the cell is the one the profile without it gives, and
    a subset that kept no flipped label queries at most its own size."""
    import dataclasses

    from coreset_bench import registry

    clean = dataclasses.replace(NOISY, settings={**NOISY.settings, "side_effects": {**NOISY.settings["side_effects"], "mia_clean_labels": True}})
    runs = {}
    for prof in (NOISY, clean):
        monkeypatch.setattr(CoresetTrack, "profiles", lambda self, prof=prof: [prof])
        t = CoresetTrack()
        cell = Cell("coreset", prof.id, "random", "1", {}, {"dataset": "digits", "arch": "mlp", "budget": 0.3, "training": "standard"}, 0)
        runs[prof is clean] = t.run_cell(cell, registry.method("random"), CellContext(tmp_path, tmp_path / "cache", None, hidden_salt=SALT))
    plain, both = runs[False], runs[True]
    extra = {k: v for k, v in both.metrics.items() if k not in plain.metrics}
    assert sorted(extra) == sorted(f"mia_clean_{s}_{m}" for s in SE.MIA_SCORES for m in ("auc", "tpr_at_1pct_fpr"))
    assert all(0.0 <= v <= 1.0 for v in extra.values())
    assert {k: v for k, v in both.metrics.items() if k in plain.metrics} == plain.metrics
    info = both.info["side_effects"]
    # random keeps about 20 % flipped labels: fewer unflipped members than members
    assert 0 < info["mia_clean_points"] < info["mia_points"]
    assert not [k for k in both.info if k not in CoresetTrack.info_keys and not k.startswith("method_")]
    with pytest.raises(ValueError, match="mia_clean_labels"):
        SE.settings({"side_effects": {"mia_clean_labels": "yes"}})


# ---- the board's side-effects panel --------------------------------------------------------------


def _panel_store(tmp_path, registry):
    """quick-noisy@1 records of random and a made-up selection that keeps clean samples: more
    robust, less exposed, fewer flipped samples than random, paired by seed."""
    from coreset_bench import hookimpl
    from coreset_bench.kinds import SelectionMethod
    from coreset_bench.store import Store
    from coreset_bench.tracks.base import ArtifactOut  # noqa: F401 - the store's artifact type

    class CleanPicker(SelectionMethod):
        name = "test-clean-picker"
        version = "1"
        summary = "Made-up side-effect numbers for the panel test."
        modalities = ("image",)

        def select(self, view):
            return np.arange(view.budget)

    class _P:
        @hookimpl
        def register_methods(self, register):
            register(CleanPicker())

    registry.register(_P(), name="side-panel-test")
    t = registry.track("coreset")
    prof = t.profile("quick-noisy@1")
    st = Store(tmp_path / "r.db")
    env = {"coreset_bench": "0.1.0", "git_commit": "abc", "device": "cpu", "device_name": "cpu", "torch": "2.5", "hidden_salt": SALT}
    rng = np.random.default_rng(0)
    for name, shift in (("random", 0.0), ("test-clean-picker", 1.0)):
        m = registry.method(name)
        for cell in t.cells(prof, m):
            noise = rng.normal(0, 0.003, 9) + 0.01 * cell.repeat
            st.start(cell, m, env)
            st.finish(
                cell.key,
                metrics={
                    "autoattack_acc": 0.40 + 0.05 * shift + noise[0], "clean_acc": 0.85 + noise[1],
                    "mia_loss_auc": 0.60 - 0.03 * shift + noise[2], "mia_mentr_auc": 0.60 + noise[3], "mia_curvature_auc": 0.55 + noise[4],
                    "worst_class_acc": 0.60 + noise[5], "worst_class_autoattack_acc": 0.0, "worst_class_pgd_acc": 0.10 + noise[6],
                    "ece": 0.08 + 0.02 * shift + noise[7], "noise_kept_share": 0.20 - 0.15 * shift + noise[8],
                },
                timings={"selection_s": 1.0, "training_s": 1.0, "evaluation_s": 1.0, "total_s": 3.0},
                info={"budget": 10, "realized_size": 10, "chance_floor": 0.1, "flags": []},
                artifacts=[],
            )
    return t, prof, st


def test_the_side_effects_panel_shows_paired_differences_and_the_figure(fresh_plugins, tmp_path):
    from coreset_bench.leaderboard import side_effects as panel_mod
    from coreset_bench.leaderboard.board import build_board
    from coreset_bench.leaderboard.data import normalize_records
    from coreset_bench.leaderboard.render import render_site

    t, prof, st = _panel_store(tmp_path, fresh_plugins)
    board = build_board(t, prof, normalize_records(st.results(profile=prof.id)))
    (tmp_path / "figs" / "figures").mkdir(parents=True)
    model = panel_mod.panel(board, "x", tmp_path / "figs")
    assert model is not None and model["baseline"] == "random" and model["noisy"]
    labels = [h["label"] for h in model["headers"]]
    assert "worst class (PGD)" in labels and "worst class (AutoAttack)" not in labels  # PGD attacks every test point
    assert labels[0] == "robust acc. (AutoAttack)" and "kept noise" in labels and "ECE (15 bins)" in labels and "AUC (curvature)" in labels
    assert len(model["tables"]) == 2  # standard and TRADES training, never averaged together
    for tb in model["tables"]:
        (row,) = tb["rows"]  # random is the baseline, not a row
        assert row["method"] == "test-clean-picker"
        cells = dict(zip([h["metric"] for h in model["headers"]], row["cells"]))
        assert cells["autoattack_acc"]["cls"] == "better" and float(cells["autoattack_acc"]["text"].split()[0]) == pytest.approx(5.0, abs=1.0)
        assert cells["noise_kept_share"]["cls"] == "better" and float(cells["noise_kept_share"]["text"].split()[0]) == pytest.approx(-15.0, abs=1.0)
        assert cells["mia_loss_auc"]["cls"] == "better"  # a lower AUC leaks less
        assert cells["ece"]["cls"] == "worse" and cells["mia_mentr_auc"]["cls"] == ""
    assert model["figure"] and (tmp_path / "figs" / "figures" / "x-side-effects.svg").exists()
    # the rendered page carries the panel; a profile without side-effect metrics has none
    out = tmp_path / "site"
    render_site(st, out)
    page = next(out.glob("coreset-quick-noisy*.html")).read_text()
    assert 'id="side-effects"' in page and "kept noise" in page and "side-effects.svg" in page
    empty = build_board(t, t.profile("quick@2"), [])
    assert panel_mod.panel(empty, "y", tmp_path / "figs") is None
