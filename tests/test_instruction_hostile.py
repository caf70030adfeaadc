"""A hostile text-selection method on the instruction track, through the real command line
(issues 36 and 37): ``select`` runs in the contestant worker, a process that holds only the
view (the pool's texts and token ids, the target examples, the base model as its architecture and
weights). The pool's task ids, the twin answers, the corruption flags and the held-out sets are
not in its memory, on its stack or in a track's memo there (it finds nothing); regenerating the
world or reading it through the track is refused (the cell fails with one line naming it); a
method that switches the in-process guard off (clearing ``coreset_bench.data._CONTESTANT``) and
rebuilds the world from the public seed formula gets another world (the profile is salted, and
the salt is neither in the worker's environment nor readable from the results store there); an
invalid selection fails its own cell, and the run goes on.
"""

from __future__ import annotations

import gc
import inspect
import os
import types

import numpy as np
import pytest

from cli_helpers import invoke
from coreset_bench import hookimpl
from coreset_bench.tracks.instruction import world as W
from coreset_bench.kinds import Selection, SelectionMethod


class HostileText(SelectionMethod):
    """Looks for the hidden truth of its cell (``probe``): in memory, or by asking the track or
    the generator; selects the target task's examples when it finds them."""

    name = "hostile-text"
    modalities = frozenset({"text"})
    params = {"probe": "memory"}

    def select(self, view):
        from coreset_bench import registry
        from coreset_bench.tracks.base import CellContext

        probe = self.params["probe"]
        track = registry.track("instruction")
        prof = track.profile("tiny@1")
        ctx = CellContext(results_dir=".", cache_dir=None, data_dir=None)
        target = view.target_task[0]
        if probe == "memory":
            import warnings

            warnings.simplefilter("ignore")  # touching every object wakes deprecation warnings
            found: list[str] = []
            hit = None
            memos = [v for k, v in vars(track).items() if k.startswith("_")]
            frames = [v for fr in inspect.stack() for v in fr.frame.f_locals.values()]
            for obj in [*memos, *frames, *gc.get_objects()]:
                for cand in (obj.values() if isinstance(obj, dict) else [obj]):
                    if isinstance(cand, types.ModuleType) or str(getattr(type(cand), "__module__", "")).startswith("ctypes"):  # probing these loads native code (refused)
                        continue
                    try:
                        tasks = getattr(cand, "pool_task", None)
                    except Exception:  # noqa: BLE001 - whatever the object is
                        tasks = None
                    if isinstance(tasks, np.ndarray) and len(tasks) == view.n:
                        found.append(type(cand).__name__ + ".pool_task")
                        hit = np.asarray(tasks)
                    if isinstance(cand, W.World) or isinstance(cand, W.Example) and cand.task:
                        found.append(type(cand).__name__)
                    if isinstance(cand, np.ndarray) and cand.dtype.kind == "U" and len(cand) == view.n and target in set(cand.tolist()):
                        found.append("task array")
                        hit = cand
            idx = np.flatnonzero(hit == target)[: view.budget] if hit is not None else np.array([], dtype=int)
            rest = np.setdiff1d(np.arange(view.n), idx)[: view.budget - len(idx)]
            return Selection(np.sort(np.concatenate([idx, rest])), info={"found": sorted(set(found))})
        if probe == "guard_off":  # the in-process guard switched off, then the world rebuilt from the public seed formula
            from coreset_bench import data as D

            saved = list(D._CONTESTANT)
            D._CONTESTANT.clear()
            world = W.make_world(W.seed_of(prof.id, "world", "synth-instruct", 0), pool_size=600, n_targets=8, n_test=60, n_general=20, ctx=24)
            hidden = track.data(prof, "synth-instruct", 0, ctx, part="all")
            D._CONTESTANT.extend(saved)  # put back, unnoticed
            same = [tuple(e.text for e in world.pool) == tuple(view.texts), tuple(hidden.pool_texts) == tuple(view.texts)]
            tasks = hidden.pool_task
            idx = np.flatnonzero(tasks == target)[: view.budget]
            rest = np.setdiff1d(np.arange(view.n), idx)[: view.budget - len(idx)]
            return Selection(np.sort(np.concatenate([idx, rest])), info={"same_pool": same})
        if probe == "env_salt":
            return Selection(np.arange(view.budget), info={"salt": os.environ.get("CORESET_BENCH_HIDDEN_SALT")})
        if probe == "store_salt":  # the results store holds the salt
            import glob

            for f in sorted(glob.glob("*.db")):
                with open(f, "rb") as fh:
                    fh.read(100)
            return Selection(np.arange(view.budget))
        if probe == "bad_indices":
            return Selection(np.arange(view.n - view.budget + 1, view.n + 1))
        if probe == "make_world":
            world = W.make_world(W.seed_of(prof.id, "world", "synth-instruct", 0), pool_size=view.n)
            tasks = world.pool_task
        elif probe == "track_data":
            tasks = track.data(prof, "synth-instruct", 0, ctx).pool_task
        elif probe == "hidden_world":
            tasks = track.hidden_world(prof, "synth-instruct", 0, ctx, None).pool_task  # type: ignore[arg-type]
        elif probe == "build_data":
            tasks = track._build_data(prof, "synth-instruct", 0, ctx, None, "hidden").pool_task
        elif probe == "pretrain_corpus":
            W.pretrain_corpus(0, n_worlds=1, pool_size=10)
            tasks = np.array([""] * view.n)
        else:
            raise AssertionError(probe)
        return Selection(np.sort(np.flatnonzero(tasks == target)[: view.budget]))


class HostileIndices(HostileText):
    """Returns indices past the end of the pool."""

    name = "hostile-indices"
    params = {"probe": "bad_indices"}


class _Plugin:
    @hookimpl
    def register_methods(self, register):
        register(HostileText())
        register(HostileIndices())


@pytest.fixture
def reg(fresh_plugins):
    fresh_plugins.register(_Plugin(), name="hostile-text-test")
    return fresh_plugins


def _run(tmp_path, probe):
    res, rows = _run_plugins(tmp_path, probe, "--plugin", "hostile-text", "--param", f"probe={probe}")
    (row,) = rows
    return res, row


def _run_plugins(tmp_path, name, *args: str):
    from coreset_bench.store import Store

    db = tmp_path / f"{name}.db"
    res = invoke("run", "--track", "instruction", *args, "--profile", "tiny@1", "--no-references", "--db", str(db), "--device", "cpu", "--executor", "inprocess")
    store = Store(db)
    try:
        rows = store.results()
    finally:
        store.close()
    return res, rows


def test_a_hostile_text_method_finds_no_hidden_truth_in_memory_on_the_stack_or_in_a_memo(reg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a cell of another method first: the harness's memos (world, warm-up) are populated
    assert invoke("run", "--track", "instruction", "--plugin", "random", "--profile", "tiny@1", "--no-references", "--db", str(tmp_path / "r.db"),
                  "--device", "cpu", "--executor", "inprocess").exit_code == 0
    res, row = _run(tmp_path, "memory")
    assert row["status"] == "done", row["error"]
    assert row["info"]["method_found"] == []
    # with nothing found it picked its first indices: the target share of the pool, not the target task
    assert row["metrics"]["sel_target_frac"] < 0.3


LEAK = "LeakageError: plugin 'hostile-text' tried to {what} while it was being evaluated; a method may only use the view it is given (no test data)"


@pytest.mark.parametrize("probe, what", [("make_world", "generate the instruction world"), ("track_data", "read the instruction world"),
                                         ("hidden_world", "read the instruction world"), ("build_data", "generate the instruction world"),
                                         ("pretrain_corpus", "generate the instruction pretraining corpus")])
def test_regenerating_or_reading_the_world_fails_the_cell_with_one_line(reg, tmp_path, monkeypatch, probe, what):
    monkeypatch.chdir(tmp_path)
    res, row = _run(tmp_path, probe)
    assert row["status"] == "failed"
    assert row["error"] == LEAK.format(what=what)
    assert "1 failed" in res.stdout


def test_switching_the_guard_off_and_rebuilding_the_world_from_public_seeds_gets_another_world(reg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res, row = _run(tmp_path, "guard_off")
    assert row["status"] == "done", row["error"]
    # the worker's guard is the process, not the module global: the world it rebuilt is not the cell's (salted) one
    assert row["info"]["method_same_pool"] == [False, False]
    assert row["metrics"]["sel_target_frac"] < 0.5


def test_the_salt_is_neither_in_the_workers_environment_nor_readable_from_the_store(reg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CORESET_BENCH_HIDDEN_SALT", "ab" * 16)  # the harness's salt for this run
    res, row = _run(tmp_path, "env_salt")
    assert row["status"] == "done", row["error"]
    assert row["info"]["method_salt"] is None
    monkeypatch.delenv("CORESET_BENCH_HIDDEN_SALT")
    res, row = _run(tmp_path, "store_salt")
    assert row["status"] == "failed"
    assert row["error"].startswith("LeakageError: plugin 'hostile-text' tried to open ") and ".db (protected" in row["error"] and "\n" not in row["error"]


def test_invalid_indices_fail_their_cell_with_one_line_and_the_run_goes_on(reg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res, rows = _run_plugins(tmp_path, "bad_indices", "--plugin", "hostile-indices", "--plugin", "random")
    by = {r["method"]: r for r in rows}
    assert by["hostile-indices"]["status"] == "failed" and by["random"]["status"] == "done", by["random"]["error"]
    assert by["hostile-indices"]["error"] == "invalid output of plugin 'hostile-indices': hostile-indices: returned index out of range [0, 600) (min 541, max 600)"
