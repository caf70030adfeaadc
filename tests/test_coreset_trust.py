"""Issue 20, track side: the quick@2 protocol, degenerate-model flags, per-point correctness.

A constant classifier is trained through the real coreset track (a selection plugin that keeps
only class-0 samples): its cells must carry the flags the board uses to keep it from leading.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coreset_bench import hookimpl
from coreset_bench.data import DatasetError, resolve
from coreset_bench.kinds import Selection, SelectionMethod
from coreset_bench.robust import evaluate_robustness
from coreset_bench.runner import default_context, expand, run_one
from coreset_bench.tracks.base import Profile
from coreset_bench.tracks.coreset import CoresetTrack, degeneracy, pack_bits, unpack_bits

AUDITED_EASYCORE_SUBSET = [91, 0, 1, 0, 17, 5, 0, 1, 4, 2]  # audit-coreset-quick.md, section 1


def test_the_audited_easycore_subset_is_flagged():
    pool = np.full(10, 113)
    d = degeneracy(np.array(AUDITED_EASYCORE_SUBSET), pool, np.array([65, 0, 0, 0, 114, 112, 0, 0, 126, 33]))
    assert d["flags"] == ["never-predicts-class", "subset-class-coverage"]
    assert d["underrepresented_classes"] == [1, 2, 3, 6, 7, 9]
    assert d["never_predicted_classes"] == [1, 2, 3, 6, 7]


def test_a_balanced_subset_and_a_healthy_model_are_not_flagged():
    pool = np.array([120, 110, 100, 115, 118, 112, 109, 117, 105, 116])
    sub = np.round(pool * 0.1).astype(int)
    d = degeneracy(sub, pool, np.full(10, 54))
    assert d == {"flags": [], "underrepresented_classes": [], "never_predicted_classes": []}
    # a class at a third of its share is not "far below" it; at a fifth it is
    sub2 = sub.copy()
    sub2[0] = 4
    assert degeneracy(sub2, pool, np.full(10, 54))["flags"] == []
    sub2[0] = 2
    assert degeneracy(sub2, pool, np.full(10, 54))["flags"] == ["subset-class-coverage"]


@pytest.mark.parametrize("n", [1, 7, 8, 9, 539])
def test_per_point_bits_round_trip(n):
    rng = np.random.default_rng(n)
    c = rng.random(n) < 0.4
    packed = pack_bits(c)
    assert packed["n"] == n and len(packed["bits"]) == 2 * ((n + 7) // 8)
    assert np.array_equal(unpack_bits(packed), c)


@pytest.fixture
def with_pgd(monkeypatch):
    """The core plugins plus the PGD attack (a fresh manager, the old one restored after)."""
    from coreset_bench import registry

    monkeypatch.delenv("CORESET_BENCH_DISABLE_PLUGINS", raising=False)
    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", "core,random,full,standard,pgd")
    old = registry._manager
    registry.reset()
    registry.load_plugins()
    yield registry
    registry._manager = old


def test_per_point_correctness_agrees_with_the_accuracies(with_pgd):
    from coreset_bench import models as M
    from coreset_bench.kinds import ThreatModel

    torch.manual_seed(0)
    ds = resolve("digits")
    model = M.build("mlp", ds.shape, ds.num_classes, ds.mean, ds.std, 0)
    x, y = ds.x_test[:64], ds.y_test[:64]
    pp: dict[str, np.ndarray] = {}
    attacks = {"pgd": with_pgd.method("pgd")}
    res = evaluate_robustness(model, x, y, attacks, ThreatModel("linf", 0.05, 0.0125, 5), seed=0, per_point=pp)
    assert set(pp) == {"clean_acc", "pgd_acc"}
    for k, v in pp.items():
        assert v.dtype == bool and v.shape == (64,)
        assert abs(v.mean() - res[k]) < 1e-12


def test_digits_takes_a_test_fraction_and_rejects_nonsense():
    assert len(resolve("digits").y_test) == 450
    assert len(resolve("digits:test=0.3").y_test) == 539
    for bad in ("digits:test=2", "digits:foo=0.3", "digits:test=x"):
        with pytest.raises(DatasetError, match="digits:test=0.3"):
            resolve(bad)


def test_quick2_is_the_default_and_quick1_is_unchanged():
    t = CoresetTrack()
    q2 = t.profile("quick")
    assert q2.id == "coreset/quick@2"
    st = q2.settings
    assert len(q2.seeds) >= 3
    assert st["eval_subset"] == "all" and st["dataset_args"] == {"digits": "test=0.3"}  # 539 PGD points
    assert 0.0 < st["robust"]["eps"] < 0.1
    assert st["attack_subsets"]["autoattack"] >= 60 and st["masking_subset"] >= 60
    q1 = t.profile("quick@1")
    assert q1.settings["robust"]["eps"] == 0.1 and q1.settings["eval_subset"] == 100 and tuple(q1.seeds) == (0, 1)
    assert "dataset_args" not in q1.settings


# ---- a constant classifier through the real track -----------------------------------------------


class OnlyClassZero(SelectionMethod):
    """Keeps only samples of class 0: the trained model predicts class 0 everywhere."""

    name = "test-only-class-zero"
    version = "1"
    summary = "Degenerate on purpose."

    def select(self, view):
        zeros = np.flatnonzero(np.asarray(view.y) == 0)
        return Selection(np.sort(zeros[: view.budget]))


class _Plugin:
    @hookimpl
    def register_methods(self, register):
        register(OnlyClassZero())


TRUST = Profile(
    "coreset",
    "trust-test",
    1,
    {"dataset": ["digits"], "arch": ["mlp"], "budget": [0.1], "training": ["standard"]},
    seeds=(0, 1),
    settings={
        "val_fraction": 0.1,
        "max_train_per_class": 120,
        "dataset_args": {"digits": "test=0.3"},
        "proxy": {"epochs": 1, "batch_size": 64, "lr": 0.05},
        "checkpoints": "all",
        "train": {"budget_mode": "iterations", "steps": 80, "batch_size": 32, "lr": 0.05},
        "robust": {"eps": 0.05, "step_size": 0.0125, "attack_steps": 2, "beta": 6.0, "eval_steps": 3},
        "attacks": ["pgd"],
        "eval_subset": 120,
        "eval_subset_per_repeat": True,
        "masking_subset": 40,
    },
)


@pytest.fixture
def trust_track(with_pgd, monkeypatch):
    with_pgd.register(_Plugin(), name="trust-test")
    monkeypatch.setattr(CoresetTrack, "profiles", lambda self: [TRUST])
    return with_pgd


def test_a_constant_classifier_trained_through_the_track_is_flagged_and_never_leads(trust_track, tmp_path):
    """Issue 20's 'done when': a constant classifier, trained through the real track and stored,
    is flagged, is not ranked first on the rendered board, and its flag is shown."""
    from coreset_bench.leaderboard.board import build_board
    from coreset_bench.leaderboard.data import normalize_records
    from coreset_bench.leaderboard.render import render_site
    from coreset_bench.runner import execute, make_plan
    from coreset_bench.store import Store

    t = trust_track.track("coreset")
    m = trust_track.method("test-only-class-zero")
    store = Store(tmp_path / "r.db")
    ctx = default_context(tmp_path / "results", "cpu", None)
    plan = make_plan(t, TRUST, [m], store)  # plus the random and full references
    outcomes = execute(plan, store, ctx)
    assert outcomes and all(o.status == "done" for o in outcomes), [o.error for o in outcomes]
    rows = store.results(profile=TRUST.id)
    const = [r for r in rows if r["method"] == m.name]
    rand = [r for r in rows if r["method"] == "random"]
    assert len(const) == 2 and len(rand) == 2
    info = const[0]["info"]
    assert info["pred_histogram"][0] == sum(info["pred_histogram"])  # predicts class 0 only
    assert info["flags"] == ["never-predicts-class", "subset-class-coverage"]
    assert info["never_predicted_classes"] == list(range(1, 10))
    assert info["chance_floor"] == pytest.approx(0.1)
    # per-point correctness: clean on every test point, PGD on the attacked ones
    clean = unpack_bits(info["per_point"]["clean_acc"])
    assert clean.size == 539 and clean.mean() == pytest.approx(const[0]["metrics"]["clean_acc"])
    pgd = unpack_bits(info["per_point"]["pgd_acc"])
    assert pgd.size == 120 and pgd.mean() == pytest.approx(const[0]["metrics"]["pgd_acc"])
    # the constant classifier's accuracy is its class's share: the floor, not robustness
    assert const[0]["metrics"]["clean_acc"] == pytest.approx(0.1, abs=0.01)
    assert const[0]["metrics"]["class_pgd_acc_1"] == 0.0
    assert "pgd_masking_flag" in const[0]["metrics"]
    assert all(r["info"]["flags"] == [] for r in rand), [(r["info"]["flags"], r["info"]["class_histogram"], r["info"]["pred_histogram"]) for r in rand]
    # paired: the same points for every method (and budget, recipe) of a repeat, other points at another repeat
    sha = {(r["method"], r["repeat"]): r["info"]["per_point"]["pgd_acc"]["points_sha"] for r in const + rand}
    assert sha[(m.name, 0)] == sha[("random", 0)] and sha[(m.name, 1)] == sha[("random", 1)]
    assert sha[(m.name, 0)] != sha[(m.name, 1)]
    # the board: flagged, never ranked, never the leader, flag shown; the floor row is there
    board = build_board(t, TRUST, normalize_records(rows))
    for table in board.tables:
        for row in table.rows:
            if row.variant.label.startswith(m.name):
                assert row.flags and not row.leader and not row.ranked
    report = render_site(store, tmp_path / "site")
    page = next(p for p in report.pages if "trust-test" in p.name).read_text()
    assert "flagged" in page and "never-predicts-class" in page and "subset-class-coverage" in page
    assert "constant classifier" in page
    store.close()
