"""Hidden generated truth stays hidden in the privacy, memorization and label-noise tracks (issue
37 item 3): a hostile contestant that rebuilds the truth from the public seed formula gets it on
a profile defined before the salt (the test can fail) and gets nothing on a salted profile; the
results store, which holds the salt, cannot be opened from the contestant worker wherever
``--db`` put it. All through the real CLI on seconds-long profiles defined here."""

from __future__ import annotations

import re
import sys

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from coreset_bench import hookimpl
from coreset_bench.cells import Cell, CellContext
from coreset_bench.kinds import NoiseCorrectionMethod, PrivacyMethod
from coreset_bench.salt import hidden_seed
from coreset_bench.store import Store

from cli_helpers import invoke

SALT = "0123456789abcdef0123456789abcdef"


# ---- hostile contestants (they run in the contestant worker) -------------------------------------


class MaskRebuilder(PrivacyMethod):
    """Hostile: rebuilds the targets' membership masks with the track's own mask code and the
    public seeds (``hidden_seed`` = identity: no salt), from the universe's index that anyone can
    compute offline from the public dataset (``index``, set by the test), and scores each query
    by its rebuilt membership of the view's target."""

    name = "mask-rebuilder"
    role = "attack"
    tracks = ("privacy",)
    summary = "test: rebuilds the targets' membership from public seeds"
    params = {"profile": "hostile@1"}

    def score(self, view):
        from types import SimpleNamespace

        from coreset_bench.tracks.privacy.track import PrivacyTrack

        prof = self.known[self.params["profile"]]
        u = SimpleNamespace(y=np.zeros(len(view.y)), index=self.index)
        _, shadows, _, targets = PrivacyTrack().masks_for_cell(prof, "digits", u, 0, lambda s: s)
        t = self.__dict__.get("_target", 0)  # the views of a cell come in target order, in one call
        self._target = t + 1
        return targets[t].astype(np.float64)


class StoreReader(PrivacyMethod):
    """Hostile: opens the results store (``path``) to read the salt, with ``open`` or SQLite."""

    name = "store-reader"
    role = "attack"
    tracks = ("privacy",)
    summary = "test: reads the results store"
    params = {"path": "", "probe": "open"}

    def score(self, view):
        path = self.params["path"]
        if self.params["probe"] == "sqlite":
            import sqlite3

            sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("select * from meta").fetchall()
        elif self.params["probe"] == "torch.from_file":  # opens the file in C++: no "open" audit event
            import torch

            torch.from_file(path, shared=False, size=100, dtype=torch.uint8)
        elif self.params["probe"] == "storage.from_file":
            import torch

            torch.UntypedStorage.from_file(path, False, 100)
        else:
            with open(path, "rb") as fh:
                fh.read(100)
        return np.zeros(len(view.y))


class FlipRebuilder(NoiseCorrectionMethod):
    """Hostile: rebuilds the noisy labels with the track's noise code and the public noise seed,
    and says whether they are the view's (``info.rebuilt``) and how many agree
    (``info.agreement``). To isolate the seed, the test hands it the pool's clean labels
    (``clean``): on a public dataset a plugin that ships a copy of it could match them, which no
    salt prevents; what the salt hides is which of them were flipped."""

    name = "flip-rebuilder"
    summary = "test: rebuilds the label flips from public seeds"
    params = {"profile": "hostile@1"}

    def correct(self, view):
        from coreset_bench.tracks.label_noise.track import _hash_seed, inject_noise

        prof = self.params["profile"]
        clean = self.clean[prof]
        rebuilt = inject_noise(clean, view.num_classes, "symmetric", 0.5, _hash_seed(f"label-noise/{prof}", "digits", "symmetric", 0.5, 0))
        noisy = np.asarray(view.y_pool_noisy)
        view.info["rebuilt"] = float(np.array_equal(rebuilt, noisy))
        view.info["agreement"] = float(np.mean(rebuilt == noisy))
        return copy.deepcopy(view.model)


class _Plugin:
    @hookimpl
    def register_methods(self, register):
        for m in (MaskRebuilder(), StoreReader(), FlipRebuilder()):
            register(m)


# ---- profiles defined here: one before the salt (public seeds), one salted -------------------------


def _pair(track, base_ref: str, **changes):
    base = track.profile(base_ref)
    public = dataclasses.replace(base, name="hostile", version=1, salted=False, **changes)
    return public, dataclasses.replace(public, version=2, salted=True)


@pytest.fixture
def reg(fresh_plugins, monkeypatch, tmp_path):
    from coreset_bench.tracks.label_noise.track import LabelNoiseTrack
    from coreset_bench.tracks.privacy.track import PrivacyBase

    monkeypatch.delenv("CORESET_BENCH_HIDDEN_SALT", raising=False)
    monkeypatch.chdir(tmp_path)
    fresh_plugins.register(_Plugin(), name="hostile-truth-test")
    extra = {}
    for name, base, changes in (("privacy", "tiny@2", {}), ("memorization", "tiny@2", {}), ("label-noise", "tiny@1", {})):
        t = fresh_plugins.track(name)
        if name == "label-noise":
            changes = {"axes": {**t.profile(base).axes, "verified": ["clean"]}}
        extra[name] = _pair(t, base, **changes)
    old_p, old_l = PrivacyBase.profiles, LabelNoiseTrack.profiles
    monkeypatch.setattr(PrivacyBase, "profiles", lambda self: old_p(self) + list(extra[self.name]))
    monkeypatch.setattr(LabelNoiseTrack, "profiles", lambda self: old_l(self) + list(extra[self.name]))
    return fresh_plugins


def _rows(db: Path, method: str) -> list[dict]:
    s = Store(db, read_only=True)
    try:
        return [r for r in s.results() if r["method"] == method]
    finally:
        s.close()


def _run(db: Path, track: str, profile: str, plugin: str, *params: str, code: int = 0):
    args = ["run", "--track", track, "--profile", profile, "-p", plugin, "--db", str(db), "--no-references", "--hidden-salt", SALT, "--device", "cpu"]
    for p in params:
        args += ["--param", p]
    res = invoke(*args)
    assert res.exit_code == code, (res.stdout, res.stderr)  # 1: a cell failed
    (row,) = _rows(db, plugin)
    return res, row


# ---- privacy ---------------------------------------------------------------------------------------


def test_a_hostile_attack_rebuilding_membership_from_public_seeds_gets_chance_on_a_salted_profile(reg, tmp_path):
    """The same attack gets AUC 1.0 on the profile seeded from public seeds (it rebuilt the
    targets' membership exactly: the test can fail) and chance on the salted one."""
    t = reg.track("privacy")
    u = t.universe(t.profile("hostile@1"), "digits", CellContext(tmp_path, tmp_path / "cache", None))
    method = reg.method("mask-rebuilder")
    method.index = u.index  # the attacker's offline work on the public dataset
    method.known = {p.name + "@" + str(p.version): p for p in t.profiles() if p.name == "hostile"}

    res, public = _run(tmp_path / "public.db", "privacy", "hostile@1", "mask-rebuilder", "profile=hostile@1")
    assert "public seeds" in res.stdout
    assert public["status"] == "done", public["error"]
    assert public["metrics"]["auc"] == 1.0 and public["environment"]["hidden_salt"] == ""

    res, salted = _run(tmp_path / "salted.db", "privacy", "hostile@2", "mask-rebuilder", "profile=hostile@2")
    assert "secret salt" in res.stdout
    assert salted["status"] == "done", salted["error"]
    assert abs(salted["metrics"]["auc"] - 0.5) < 0.1  # 2 targets x ~150 members: chance within 0.1 by far
    assert salted["environment"]["hidden_salt"] == SALT


@pytest.mark.parametrize("probe", ["open", "sqlite", "torch.from_file", "storage.from_file"])
def test_a_contestant_that_opens_the_store_fails_its_cell_with_one_line_wherever_db_is(reg, tmp_path, probe):
    """``--db`` in a directory of its own (not the working directory's results/): the worker
    cannot read the database file, by ``open`` or by SQLite's own C open (audit event
    ``sqlite3.connect``, URI form included)."""
    db = tmp_path / "stores" / "r.db"
    _, row = _run(db, "privacy", "hostile@2", "store-reader", f"path={db}", f"probe={probe}", code=1)
    assert row["status"] == "failed"
    err = row["error"]
    assert err.startswith("LeakageError: plugin 'store-reader' tried to open ") and "\n" not in err
    assert re.search(r"r\.db (through [\w.]+ )?\(protected", err), err


def test_native_file_readers_of_loaded_libraries_are_guarded(tmp_path):
    """The C++ readers of torch and torchvision (no "open" audit event) refuse a protected path and
    read any other. In the worker torchvision is only reachable when a track preloads it (importing
    it later loads native code, which the guard refuses), so this checks the wrappers in-process."""
    import torch
    import torchvision.io  # noqa: F401

    from coreset_bench import contestant as C

    saved = []
    for mod, path in C.NATIVE_READERS:
        *parents, attr = path.split(".")
        obj = sys.modules[mod]
        try:
            for part in parents:
                obj = getattr(obj, part)
            saved.append((obj, attr, obj.__dict__.get(attr, getattr(obj, attr)) if isinstance(obj, type) else getattr(obj, attr), attr in getattr(obj, "__dict__", {})))
        except AttributeError:
            continue
    secret, fine = tmp_path / "secret.bin", tmp_path / "fine.bin"
    secret.write_bytes(bytes(100))
    fine.write_bytes(bytes(range(100)))

    class Refused(Exception):
        pass

    def refuse(what):
        raise Refused(what)

    try:
        C._guard_native_readers(lambda p: str(p) if str(p).endswith("secret.bin") else None, refuse)
        for read in (
            lambda p: torch.from_file(str(p), shared=False, size=100, dtype=torch.uint8),
            lambda p: torch.UntypedStorage.from_file(str(p), False, 100),
            lambda p: torchvision.io.read_file(str(p)),
        ):
            with pytest.raises(Refused, match="secret.bin through"):
                read(secret)
            assert len(read(fine)) == 100
    finally:
        for obj, attr, orig, own in saved:
            try:
                if own or not isinstance(obj, type):
                    setattr(obj, attr, orig)
                else:
                    delattr(obj, attr)
            except (AttributeError, TypeError):  # a read-only C attribute the guard could not wrap either
                pass


def test_the_store_in_use_is_protected_even_outside_the_results_dir(reg, tmp_path):
    """Through the runner's API, a context whose ``results_dir`` is elsewhere: the store is
    still refused (``CellContext.store_path``, set by ``execute``)."""
    from coreset_bench.runner import default_context, execute, make_plan

    db = tmp_path / "stores" / "r.db"
    t = reg.track("privacy")
    store = Store(db)
    try:
        m = reg.method("store-reader").with_params(path=str(db))
        plan = make_plan(t, t.profile("hostile@2"), [m], store, references=False)
        execute(plan, store, default_context(tmp_path / "elsewhere", "cpu", None), hidden_salt=SALT)
    finally:
        store.close()
    (row,) = _rows(db, "store-reader")
    assert row["status"] == "failed" and row["error"].startswith("LeakageError: plugin 'store-reader' tried to open ") and "r.db (protected" in row["error"]


@pytest.mark.parametrize("track", ["privacy", "memorization", "label-noise", "coreset", "pooling", "decentralized", "instruction", "video"])
def test_every_track_with_hidden_data_refuses_the_store_to_its_contestants(reg, tmp_path, track):
    t = reg.track(track)
    assert t.hidden_data
    prof = next(p for p in t.profiles() if p.salted)
    db = tmp_path / "stores" / "r.db"
    ctx = CellContext(tmp_path / "elsewhere", tmp_path / "elsewhere" / "cache", None, store_path=db)
    cell = Cell(t.name, prof.id, "x", 1, {}, prof.axis_points()[0], 0)
    paths = t.protected(prof, cell, ctx)
    assert {str(db), f"{db}-wal", f"{db}-shm", f"{db}-journal"} <= set(paths)


def test_robustness_generates_no_hidden_truth():
    """The robustness track's contestant (an attack) is handed the model and the points it is
    evaluated on: nothing generated is hidden from it, so nothing is salted."""
    from coreset_bench import registry

    assert not registry.track("robustness").hidden_data


def test_salted_masks_differ_from_the_public_formula_and_hide_one_set_from_the_other(reg, tmp_path):
    """Unit level, both privacy tracks: an unsalted profile's masks are the single public
    generator's (what the published entries ran with); a salted profile's shadows and targets
    come from two salted seeds, each unlike the public formula's."""
    from coreset_bench.tracks.privacy.track import masks_for

    for name in ("privacy", "memorization"):
        t = reg.track(name)
        pub, sal = t.profile("hostile@1"), t.profile("hostile@2")
        u = t.universe(pub, "digits", CellContext(tmp_path, tmp_path / "cache", None))
        salt = lambda s: hidden_seed(SALT, s)  # noqa: E731
        seed, sm, tseed, tm = t.masks_for_cell(pub, "digits", u, 0, salt)
        ref = masks_for(len(u.y), int(pub.settings["n_shadows"]), int(pub.settings["n_targets"]), t._mask_seed(pub, "digits", u, 0), "independent")
        assert seed == tseed and np.array_equal(sm, ref[0]) and np.array_equal(tm, ref[1])
        _, sm_pub, _, tm_pub = t.masks_for_cell(sal, "digits", u, 0, lambda s: s)
        s1, sm_s, t1, tm_s = t.masks_for_cell(sal, "digits", u, 0, salt)
        assert s1 != t1
        assert not np.array_equal(sm_s, sm_pub) and not np.array_equal(tm_s, tm_pub)
        assert 0.4 < float(np.mean(tm_s == tm_pub)) < 0.6  # unrelated to the public formula's


# ---- label noise -----------------------------------------------------------------------------------


def test_a_hostile_corrector_rebuilding_the_flips_from_public_seeds_finds_nothing_on_a_salted_profile(reg, tmp_path):
    """With the pool's clean labels in hand, the public noise seed rebuilds the view's noisy
    labels exactly on the profile seeded from public seeds (the test can fail) and not on the
    salted one (about a quarter agree, as two independent 50 % flips would)."""
    t = reg.track("label-noise")
    method = reg.method("flip-rebuilder")
    method.clean = {}
    ctx = CellContext(tmp_path, tmp_path / "fixture-cache", None)
    for ref in ("hostile@1", "hostile@2"):
        prof = t.profile(ref)
        f = t.fixture(prof, Cell(t.name, prof.id, "x", 1, {}, prof.axis_points()[0], 0), ctx)
        method.clean[ref] = f.sp.y_pool.cpu().numpy().astype(np.int64)[f.keep]  # clean labels: salt-independent

    res, public = _run(tmp_path / "public.db", "label-noise", "hostile@1", "flip-rebuilder", "profile=hostile@1")
    assert public["status"] == "done", public["error"]
    assert public["info"]["method_rebuilt"] == 1.0 and public["info"]["method_agreement"] == 1.0

    res, salted = _run(tmp_path / "salted.db", "label-noise", "hostile@2", "flip-rebuilder", "profile=hostile@2")
    assert "secret salt" in res.stdout
    assert salted["status"] == "done", salted["error"]
    assert salted["info"]["method_rebuilt"] == 0.0 and salted["info"]["method_agreement"] < 0.5
    assert salted["environment"]["hidden_salt"] == SALT
