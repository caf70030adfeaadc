"""A hostile text-selection method on the instruction track, through the real command line
(issue 36): while it selects, no memo of the harness holds the pool's task ids, the twin
answers, the corruption flags or the held-out sets, and regenerating the world or reading it
through the track fails its cell with one line naming it.

What this does not cover (issue 37, the contestant worker for every kind): the instruction
track's methods run in the harness's process under ``contestant_guard``, so a method that
switches the guard off (``coreset_bench.data._CONTESTANT``) or re-implements the generator from
its public seed formula is not stopped here.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

from cli_helpers import invoke
from coreset_bench import hookimpl
from coreset_bench import instruction_world as W
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
            for obj in [*memos, *gc.get_objects()]:
                for cand in (obj.values() if isinstance(obj, dict) else [obj]):
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


class _Plugin:
    @hookimpl
    def register_methods(self, register):
        register(HostileText())


@pytest.fixture
def reg(fresh_plugins):
    fresh_plugins.register(_Plugin(), name="hostile-text-test")
    return fresh_plugins


def _run(tmp_path, probe):
    from coreset_bench.store import Store

    db = tmp_path / f"{probe}.db"
    res = invoke("run", "--track", "instruction", "--plugin", "hostile-text", "--param", f"probe={probe}", "--profile", "tiny@1",
                 "--no-references", "--db", str(db), "--device", "cpu", "--executor", "inprocess")
    store = Store(db)
    try:
        (row,) = store.results()
    finally:
        store.close()
    return res, row


def test_a_hostile_text_method_finds_no_hidden_truth_in_the_harness_memory(reg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a cell of another method first: the track's memos (world, warm-up) are populated
    assert invoke("run", "--track", "instruction", "--plugin", "random", "--profile", "tiny@1", "--no-references", "--db", str(tmp_path / "r.db"),
                  "--device", "cpu", "--executor", "inprocess").exit_code == 0
    res, row = _run(tmp_path, "memory")
    assert row["status"] == "done", row["error"]
    assert row["info"]["method_found"] == []
    # with nothing found it picked its first indices: the target share of the pool, not the target task
    assert row["metrics"]["sel_target_frac"] < 0.3


@pytest.mark.parametrize("probe, what", [("make_world", "generate the instruction world"), ("track_data", "read the instruction world"),
                                         ("hidden_world", "read the instruction world"), ("build_data", "generate the instruction world"),
                                         ("pretrain_corpus", "generate the instruction pretraining corpus")])
def test_regenerating_or_reading_the_world_fails_the_cell_with_one_line(reg, tmp_path, monkeypatch, probe, what):
    monkeypatch.chdir(tmp_path)
    res, row = _run(tmp_path, probe)
    assert row["status"] == "failed"
    assert row["error"] == (f"plugin 'hostile-text': plugin 'hostile-text' tried to {what} while it was being evaluated; "
                            "a method may only use the view it is given (no test data)")
    assert "1 failed" in res.stdout
