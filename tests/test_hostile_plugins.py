"""Hostile plugins of every kind on the cell pipeline, through the real command line (issue 37).

Each hostile method tries, as a third party would, to read what its view hides: the harness's
stack frames, the track's memo, objects in memory (``gc.get_objects()``), the fixture's files
in the cache, or the data regenerated through the harness's own functions. In the contestant
worker there is nothing to find (the method finishes and finds nothing) or the attempt is refused
(its cell fails with one line); an honest plugin's cell in the same run passes.

The methods are module-level classes registered inside the tests (the contestant worker imports
them by reference, as it does an installed plugin).
"""

from __future__ import annotations

import copy
import gc
import glob
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import invoke

from coreset_bench import hookimpl
from coreset_bench.kinds import AttackMethod, NoiseCorrectionMethod, PrivacyMethod, Selection, SelectionMethod

GUARD = "the contestant guard refuses it"


def _frames_holding(pred) -> list[str]:
    """Names of locals, in every frame of the stack above, whose value satisfies ``pred``."""
    found, f = [], sys._getframe(1)
    while f is not None:
        for name, value in list(f.f_locals.items()):
            try:
                if pred(value):
                    found.append(f"{f.f_code.co_name}:{name}")
            except Exception:  # noqa: BLE001 - a probe, not a check
                pass
        f = f.f_back
    return found


def _memory_holding(pred) -> list[str]:
    found = []
    for obj in gc.get_objects():
        try:
            if pred(obj):
                found.append(type(obj).__name__)
        except Exception:  # noqa: BLE001
            pass
    return found


def _track_memo(name: str, attrs: tuple[str, ...]) -> list[str]:
    from coreset_bench import registry

    track = registry.track(name)
    return [f"{a}[{k}]" for a in attrs for k in dict(getattr(track, a, {}) or {})]


# ---- privacy: score() must not learn the targets' membership ------------------------------------


class MembershipThief(PrivacyMethod):
    """Scores with the targets' true membership when it finds it (AUC 1.0); otherwise with the
    target's confidence, and says what it found in the exception it raises (probe ``report``)."""

    name = "membership-thief"
    params = {"probe": "stack", "bank_dir": ""}

    def score(self, view):
        n, s = len(view.y), len(view.shadows)
        probe = self.params["probe"]

        def is_membership(v):  # a (T, N) boolean array (or an object holding one as .masks) that is not the shadows'
            if not isinstance(v, np.ndarray):
                try:
                    v = vars(v).get("masks")  # vars(): no attribute lookup that could run code
                except TypeError:
                    return False
            m = v
            return isinstance(m, np.ndarray) and m.dtype == bool and m.ndim == 2 and m.shape[1] == n and m.shape[0] != s

        if probe == "stack":
            found = _frames_holding(is_membership)
        elif probe == "memory":
            found = _memory_holding(is_membership)
        elif probe == "memo":
            found = _track_memo("privacy", ("_banks", "_universes"))
        elif probe == "files":  # the model banks hold the targets' masks (arrays.npz)
            found = []
            for path in glob.glob(str(Path(self.params["bank_dir"]) / "*" / "arrays.npz")):
                with np.load(path) as z:
                    found.append(f"{path}: {z['masks'].shape}")
        elif probe == "formula":  # rebuild the masks through the track's own (seeded) code
            from coreset_bench import registry
            from coreset_bench.cells import Cell, CellContext

            track = registry.track("privacy")
            cell = Cell("privacy", "privacy/tiny@2", self.name, self.version, {}, {"dataset": "digits", "arch": "mlp", "training": "standard"}, 0)
            _, _, _, _, masks = track.bank_specs(cell, CellContext(Path("."), Path("."), None))
            found = [f"rebuilt masks {masks.shape}"]
        else:
            raise ValueError(probe)
        if found:
            raise RuntimeError(f"found membership: {found[:3]}")
        with torch.no_grad():
            return view.target(view.x).max(1).values.double().numpy()


class HonestScores(PrivacyMethod):
    name = "honest-scores"

    def score(self, view):
        with torch.no_grad():
            return view.target(view.x).max(1).values.double().numpy()


# ---- noise correction: correct() must not read the test split or the clean labels --------------


class LabelThief(NoiseCorrectionMethod):
    """Looks for the test split and the pool's clean labels; returns a copy of the noisy model
    and lists what it found in ``view.info``."""

    name = "label-thief"
    params = {"probe": "memory", "cache_dir": ""}

    def correct(self, view):
        probe, n = self.params["probe"], len(view.y_pool_noisy)
        noisy = view.y_pool_noisy.cpu().numpy()
        shape = tuple(view.x_pool.shape[1:])
        sizes = {len(view.x_pool), len(view.x_verified)} | ({len(view.x_val)} if view.x_val is not None else set())

        def test_split(v):  # images of the pool's shape in a set of another size: the test split
            return isinstance(v, torch.Tensor) and v.dim() == 1 + len(shape) and tuple(v.shape[1:]) == shape and v.shape[0] not in sizes

        def clean_labels(v):  # integer labels of the pool that differ from the noisy ones
            a = v.cpu().numpy() if isinstance(v, torch.Tensor) else v
            return isinstance(a, np.ndarray) and a.shape == (n,) and np.issubdtype(a.dtype, np.integer) and not np.array_equal(a, noisy)

        if probe == "memory":
            found = _memory_holding(lambda v: test_split(v) or clean_labels(v))
        elif probe == "stack":
            found = _frames_holding(lambda v: test_split(v) or clean_labels(v) or hasattr(v, "x_test"))
        elif probe == "memo":
            found = _track_memo("label-noise", ("_splits",))
        elif probe == "resolve":
            import coreset_bench.data as D

            found = [f"test split {tuple(D.resolve('digits').x_test.shape)}"]
        elif probe == "files":
            found = []
            for path in glob.glob(str(Path(self.params["cache_dir"]) / "label-noise" / "*" / "meta.json")):
                found.append(Path(path).read_text()[:40])
        else:
            raise ValueError(probe)
        view.info["found"] = found
        return copy.deepcopy(view.model)


class HonestCopy(NoiseCorrectionMethod):
    name = "honest-copy"

    def correct(self, view):
        return copy.deepcopy(view.model)


class Damager(NoiseCorrectionMethod):
    """Writes NaN into the model it was given and returns it: its own cell fails."""

    name = "damager"

    def correct(self, view):
        with torch.no_grad():
            for p in view.model.parameters():
                p.fill_(float("nan"))
        return view.model


# ---- attacks: perturb() gets the attacked points and their labels, nothing else ----------------


class HeldOutThief(AttackMethod):
    """Looks for other test points (in memory, on the stack, in the track's memo); returns the
    clean inputs and says what it found through the exception it raises."""

    name = "test-set-thief"
    params = {"probe": "memory"}

    def perturb(self, model, x, y, threat, generator):
        shape, probe = tuple(x.shape[1:]), self.params["probe"]

        def other_points(v):
            return isinstance(v, torch.Tensor) and v.dim() == 1 + len(shape) and tuple(v.shape[1:]) == shape and v.shape[0] > len(x)

        if probe == "memory":
            found = _memory_holding(other_points)
        elif probe == "stack":
            found = _frames_holding(lambda v: other_points(v) or hasattr(v, "x_test"))
        elif probe == "memo":
            found = _track_memo("robustness", ("_models", "_splits_cache"))
        else:
            raise ValueError(probe)
        if found:
            raise RuntimeError(f"found test data: {found[:3]}")
        return x.clone()


class ModelWrecker(AttackMethod):
    """Zeroes the attacked model's weights in place (a shared fixture, were it the harness's)."""

    name = "model-wrecker"

    def perturb(self, model, x, y, threat, generator):
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        return x.clone()


class NoAttack(AttackMethod):
    name = "honest-no-attack"

    def perturb(self, model, x, y, threat, generator):
        return x.clone()


# ---- selection -------------------------------------------------------------------------------


class SplitThief(SelectionMethod):
    """Looks for the test split in memory and in the coreset track's memo."""

    name = "split-thief"

    def select(self, view):
        shape = tuple(view.x.shape[1:])
        sizes = {len(view.y), len(view.y_val)}
        found = _memory_holding(lambda v: isinstance(v, torch.Tensor) and v.dim() == 1 + len(shape) and tuple(v.shape[1:]) == shape and v.shape[0] not in sizes)
        found += _track_memo("coreset", ("_splits_cache",))
        return Selection(np.arange(view.budget), info={"found": found})


class _Plugin:
    @hookimpl
    def register_methods(self, register):
        for cls in (MembershipThief, HonestScores, LabelThief, HonestCopy, Damager, HeldOutThief, ModelWrecker, NoAttack, SplitThief):
            register(cls())


@pytest.fixture
def reg(fresh_plugins):
    fresh_plugins.register(_Plugin(), name="hostile-plugins")
    return fresh_plugins


def _run(db: Path, *args: str) -> dict[tuple[str, str], dict]:
    """``coreset-bench run ARGS`` then ``results --json``: (method, probe) -> row."""
    res = invoke("run", *args, "--no-references", "--db", str(db), "--device", "cpu")
    assert res.exit_code in (0, 1), res.stderr
    rows = json.loads(invoke("results", "--json", "--db", str(db)).stdout)
    out = {}
    for r in rows:
        out.setdefault((r["method"], str(r["params"].get("probe", ""))), []).append(r)
    return out


def _one_line(row) -> str:
    assert row["status"] == "failed", row
    assert "\n" not in row["error"], row["error"]
    return row["error"]


def test_privacy_score_finds_no_membership_and_the_bank_files_are_refused(reg, tmp_path):
    db = tmp_path / "r.db"
    bank_dir = tmp_path / "cache" / "privacy"
    rows: dict = {}
    for p in ("stack", "memory", "memo", "files", "formula"):  # --param applies to every --plugin of a run
        rows.update(_run(db, "--profile", "privacy/tiny@2", "--plugin", "membership-thief", "--param", f"probe={p}", "--param", f"bank_dir={bank_dir}"))
    rows.update(_run(db, "--profile", "privacy/tiny@2", "--plugin", "honest-scores"))
    honest = rows[("honest-scores", "")][0]
    assert honest["status"] == "done", honest["error"]
    # nothing on the stack, in memory or in the track's memo: the cell finishes at chance-like AUC
    for p in ("stack", "memory", "memo"):
        (row,) = rows[("membership-thief", p)]
        assert row["status"] == "done", (p, row["error"])
        assert row["metrics"]["auc"] == honest["metrics"]["auc"] < 0.9, p
    # the bank's files are refused by the worker's audit hook, the seeded code cannot load the data
    files = _one_line(rows[("membership-thief", "files")][0])
    assert files.startswith("LeakageError: plugin 'membership-thief' tried to open ") and str(bank_dir) in files and GUARD in files
    formula = _one_line(rows[("membership-thief", "formula")][0])
    assert formula.startswith("LeakageError: plugin 'membership-thief' tried to load dataset 'digits'")


def test_noise_correction_finds_no_test_split_or_clean_labels(reg, tmp_path):
    db = tmp_path / "r.db"
    rows: dict = {}
    for p in ("memory", "stack", "memo", "resolve", "files"):
        rows.update(_run(db, "--profile", "label-noise/tiny@1", "--plugin", "label-thief", "--param", f"probe={p}", "--param", f"cache_dir={tmp_path / 'cache'}"))
    rows.update(_run(db, "--profile", "label-noise/tiny@1", "--plugin", "damager", "--plugin", "honest-copy"))
    for p in ("memory", "stack", "memo"):
        for row in rows[("label-thief", p)]:  # both verified strategies
            assert row["status"] == "done", (p, row["error"])
            assert row["info"]["method_found"] == [], (p, row["info"]["method_found"])
    for row in rows[("label-thief", "resolve")]:
        assert _one_line(row).startswith("LeakageError: plugin 'label-thief' tried to load dataset 'digits'")
    for row in rows[("label-thief", "files")]:
        err = _one_line(row)
        assert "tried to open" in err and "label-noise" in err and GUARD in err
    # a method that wrecks its model fails its own cell; the honest one after it sees the fixture intact
    for row in rows[("damager", "")]:
        assert "non-finite" in _one_line(row)
    nones = rows[("honest-copy", "")]
    assert all(r["status"] == "done" for r in nones)
    thief = {json.dumps(r["axes"], sort_keys=True): r["metrics"]["acc_before"] for r in rows[("label-thief", "memory")]}
    assert {json.dumps(r["axes"], sort_keys=True): r["metrics"]["acc_before"] for r in nones} == thief


def test_an_attack_finds_no_other_test_points_and_cannot_damage_the_model(reg, tmp_path):
    db = tmp_path / "r.db"
    rows: dict = {}
    for p in ("memory", "stack", "memo"):
        rows.update(_run(db, "--profile", "robustness/tiny@1", "--plugin", "test-set-thief", "--param", f"probe={p}"))
    rows.update(_run(db, "--profile", "robustness/tiny@1", "--plugin", "model-wrecker", "--plugin", "honest-no-attack"))
    for p in ("memory", "stack", "memo"):
        (row,) = rows[("test-set-thief", p)]
        assert row["status"] == "done", (p, row["error"])
    (wrecker,) = rows[("model-wrecker", "")]
    (honest,) = rows[("honest-no-attack", "")]
    assert wrecker["status"] == honest["status"] == "done"
    # the wrecker zeroed its own copy: the harness evaluated its output on the intact model
    assert wrecker["metrics"]["clean_acc"] == honest["metrics"]["clean_acc"] == honest["metrics"]["robust_acc"] > 0.5


def test_selection_finds_no_test_split_through_the_cli(reg, tmp_path):
    rows = _run(tmp_path / "r.db", "--profile", "coreset/tiny@1", "--plugin", "split-thief", "--plugin", "random")
    assert all(r["status"] == "done" for r in rows[("random", "")])
    for row in rows[("split-thief", "")]:
        assert row["status"] == "done", row["error"]
        assert row["info"]["method_found"] == []
