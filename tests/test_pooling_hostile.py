"""Hostile provisioning methods, through the real command line (issue 37, the provisioning bullet).

A provisioning method runs in the contestant worker, in a session for its cell: it receives the
history up to the evaluation start and then, call by call, only the demand the harness's pool
simulation has already consumed. Each method here tries, as a third party would, to reach the
future demand: the simulator's stack frames, objects in memory (``gc.get_objects()``), the
trace rebuilt from the public seed formula (through the guarded generator, or with the guard
switched off in its own worker), or a ``privileged`` attribute that answers True only when the
simulator reads it. It finds nothing (its cell finishes and records what it found: nothing) or
its cell fails with one line; bad plans fail their own cells; an honest cell of the same run
passes. The in-process controls show each probe would find the future where it is.

The methods are module-level classes registered inside the tests (the contestant worker imports
them by reference, as it does an installed plugin).
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import invoke

from coreset_bench import hookimpl
from coreset_bench.kinds import ProvisioningMethod

PROFILE = "pooling/tiny@2"  # 4 days of the hourly trace: 3 of history, 1 evaluated; salted
TRACE = "synth-sessions:hourly"


def _continues(history: np.ndarray):
    """A predicate: an integer array that holds the history and more steps after it (the trace)."""
    t = len(history)

    def pred(v):
        return isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "iu" and len(v) > t and np.array_equal(v[:t], history)

    return pred


def _in_frames(pred) -> int:
    found, f = 0, sys._getframe(1)
    while f is not None:
        for value in list(f.f_locals.values()):
            try:
                found += bool(pred(value))
            except Exception:  # noqa: BLE001 - a probe, not a check
                pass
        f = f.f_back
    return found


def _in_memory(pred) -> int:
    """Objects the garbage collector tracks and what they refer to (numpy arrays are not tracked
    themselves: they are found in the dicts, lists and frames that hold them)."""
    import warnings

    found, seen = 0, set()
    warnings.simplefilter("ignore")  # reading some modules' attributes warns (deprecations)
    for obj in gc.get_objects():
        for v in (obj, *gc.get_referents(obj)):
            if id(v) in seen:
                continue
            seen.add(id(v))
            try:
                found += bool(pred(v))
            except Exception:  # noqa: BLE001
                pass
    return found


def _rebuild(history: np.ndarray, days: int, unguarded: bool) -> bool:
    """Rebuild the cell's trace from the public seed formula (profile, trace, repeat 0); True
    when it matches the history the method was given (then its later days are the future)."""
    from coreset_bench import pooling
    from coreset_bench.tracks.pooling import PoolingTrack

    if unguarded:  # switch the generator's guard off in this worker
        pooling._guard = lambda what: None
    track = PoolingTrack()
    seed = track.public_seed(track.profile(PROFILE), TRACE, 0)
    trace = pooling.synth_sessions(TRACE.split(":")[1], days=days, seed=seed)
    return bool(np.array_equal(trace.demand[: len(history)], history))


class FutureThief(ProvisioningMethod):
    """Looks for the future demand at every fit and plan (``probe``: stack, memory, formula,
    unguarded) and records in ``view.info`` what it found; plans the future when it has it."""

    name = "future-thief"
    params = {"probe": "stack"}

    def _look(self, view) -> int:
        probe, pred = self.params["probe"], _continues(view.history)
        if probe == "stack":
            return _in_frames(pred)
        if probe == "memory":
            return _in_memory(pred)
        if probe in ("formula", "unguarded"):
            return int(_rebuild(view.history, 4, unguarded=probe == "unguarded"))
        raise ValueError(probe)

    def fit(self, view):
        view.info["found"] = self._look(view)

    def plan(self, view):
        first = not getattr(self, "_looked", False)  # the first plan looks (a memory scan per plan is slow)
        self._looked = True
        if first and self._look(view):
            raise RuntimeError("found the future demand")  # in the worker there is none to find
        return np.full(view.horizon, float(max(view.history[-60:].max(), 1)))


def _sneaky_privileged(self) -> bool:
    """True only when the harness's pool simulation reads it (to hand out ``view.future``)."""
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_name in ("run_method", "_provisioning_drive"):
            return True
        f = f.f_back
    return False


class SneakyOracle(ProvisioningMethod):
    """Claims to be privileged only while the simulator asks (it would get ``view.future`` and
    still be ranked: the board reads False)."""

    name = "sneaky-oracle"
    privileged = property(_sneaky_privileged)  # type: ignore[assignment]

    def fit(self, view):
        view.info["future_none"] = view.future is None

    def plan(self, view):
        if view.future is not None:
            return np.asarray(view.future, dtype=np.float64)
        return np.full(view.horizon, 8.0)


class BadPlan(ProvisioningMethod):
    """Returns a plan of the wrong shape, with a negative or a NaN value, or not numbers."""

    name = "bad-plan"
    params = {"how": "shape"}

    def plan(self, view):
        how, out = self.params["how"], np.full(view.horizon, 4.0)
        if how == "shape":
            return out[:-1]
        if how == "negative":
            out[1] = -2.0
        elif how == "nan":
            out[0] = np.nan
        elif how == "text":
            return ["four"] * view.horizon
        return out


class Saboteur(ProvisioningMethod):
    """Kills its worker in the middle of the simulation (``exit``), or reaches for the trace
    generator and swallows the guard's refusal (``caught``)."""

    name = "saboteur"
    params = {"how": "exit"}

    def plan(self, view):
        if view.t % 1440 == 60:  # an hour into the evaluated day
            if self.params["how"] == "exit":
                import os

                os._exit(3)
            try:
                from coreset_bench import pooling

                pooling.synth_sessions("hourly", days=4, seed=0)
            except Exception:  # noqa: BLE001 - the refusal is swallowed: the cell fails all the same
                pass
        return np.full(view.horizon, 8.0)


class HonestPool(ProvisioningMethod):
    name = "honest-pool"

    def plan(self, view):
        return np.full(view.horizon, 8.0)


class _Plugin:
    @hookimpl
    def register_methods(self, register):
        for cls in (FutureThief, SneakyOracle, BadPlan, Saboteur, HonestPool):
            register(cls())


@pytest.fixture
def reg(monkeypatch):
    """The core plugins, ``static`` (the track's reference) and these hostile methods."""
    from coreset_bench import registry

    for var in ("CORESET_BENCH_DISABLE_PLUGINS", "CORESET_BENCH_STRICT_PLUGINS", "CORESET_BENCH_HIDDEN_SALT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", "core,random,full,standard,static,oracle")
    old = registry._manager
    registry.reset()
    registry.load_plugins()
    registry.register(_Plugin(), name="hostile-pooling")
    yield registry
    registry._manager = old


def _run(db: Path, *args: str) -> dict[tuple[str, str], dict]:
    """``coreset-bench run ARGS`` then ``results --json``: (method, its parameter) -> row."""
    res = invoke("run", "--profile", PROFILE, *args, "--no-references", "--db", str(db), "--device", "cpu", "--jobs", "1")
    assert res.exit_code in (0, 1), res.stderr
    rows = json.loads(invoke("results", "--json", "--db", str(db)).stdout)
    return {(r["method"], str(next(iter(r["params"].values()), ""))): r for r in rows}


def _one_line(row) -> str:
    assert row["status"] == "failed", row
    assert "\n" not in row["error"], row["error"]
    return row["error"]


def test_the_future_is_not_in_the_workers_stack_or_memory_and_the_formula_needs_the_salt(reg, tmp_path):
    db = tmp_path / "r.db"
    rows: dict = {}
    for p in ("stack", "memory", "formula", "unguarded"):
        rows.update(_run(db, "--plugin", "future-thief", "--param", f"probe={p}"))
    rows.update(_run(db, "--plugin", "honest-pool"))
    assert rows[("honest-pool", "")]["status"] == "done", rows[("honest-pool", "")]["error"]
    # nothing on the stack or in memory holds a step past the view's: the cells finish
    for p in ("stack", "memory", "unguarded"):
        row = rows[("future-thief", p)]
        assert row["status"] == "done", (p, row["error"])
        assert row["info"]["method_found"] == [0.0], (p, row["info"])
    # the guarded generator refuses; with its guard switched off, the public seed rebuilds
    # another trace (the seed is salted with the store's secret): found 0 above
    formula = _one_line(rows[("future-thief", "formula")])
    assert formula.startswith("LeakageError: plugin 'future-thief' tried to generate the pooling trace"), formula


def test_without_the_salt_the_public_formula_would_rebuild_the_trace(reg, tmp_path):
    """The control of the test above: with public seeds (``--hidden-salt public``) the same
    unguarded rebuild matches the history, so its 0 there is the salt's doing."""
    rows = _run(tmp_path / "p.db", "--plugin", "future-thief", "--param", "probe=unguarded", "--hidden-salt", "public")
    row = rows[("future-thief", "unguarded")]
    assert row["status"] == "failed" and "found the future demand" in row["error"] and "\n" not in row["error"]


def test_a_privileged_attribute_that_answers_only_to_the_simulator_gets_nothing(reg, tmp_path):
    rows = _run(tmp_path / "r.db", "--plugin", "sneaky-oracle")
    row = rows[("sneaky-oracle", "")]
    assert row["status"] == "done", row["error"]
    assert row["info"]["method_future_none"] == [True]  # no view.future
    assert not any(f.startswith("bound") for f in row["info"]["flags"])  # and ranked as what it is
    assert row["metrics"]["idle_saving"] < 0.9  # not the oracle's near-perfect pool


BAD_PLANS = {"shape": r"plan has shape \(9,\), expected \(10,\)", "negative": "negative pool sizes", "nan": "not finite", "text": "is not numeric"}


def test_a_bad_plan_fails_its_own_cell_with_one_line(reg, tmp_path):
    import re

    db = tmp_path / "r.db"
    rows: dict = {}
    for how in BAD_PLANS:
        rows.update(_run(db, "--plugin", "bad-plan", "--param", f"how={how}"))
    rows.update(_run(db, "--plugin", "honest-pool"))  # the next cell, in the same process
    for how, needle in BAD_PLANS.items():
        err = _one_line(rows[("bad-plan", how)])
        assert "'bad-plan'" in err and re.search(needle, err), (how, err)
    assert rows[("honest-pool", "")]["status"] == "done"


def test_a_worker_killed_mid_simulation_or_a_swallowed_refusal_fails_only_that_cell(reg, tmp_path):
    db = tmp_path / "r.db"
    rows = _run(db, "--plugin", "saboteur", "--param", "how=exit")
    rows.update(_run(db, "--plugin", "saboteur", "--param", "how=caught"))
    rows.update(_run(db, "--plugin", "honest-pool"))  # a fresh worker serves the next cell
    assert _one_line(rows[("saboteur", "exit")]) == "plugin 'saboteur' crashed the contestant worker process (exit code 3)"
    caught = _one_line(rows[("saboteur", "caught")])
    assert caught.startswith("LeakageError: plugin 'saboteur' tried to generate the pooling trace"), caught
    assert rows[("honest-pool", "")]["status"] == "done"


def test_the_probes_find_the_future_where_it_is(tmp_path):
    """Controls: run in the harness's own process (``pooling.run_method`` with its in-process
    agent), the stack and memory probes find the trace; so their 0 in the worker is meaningful.
    And the sneaky attribute answers True to the simulator's read (``getattr``)."""
    from coreset_bench import pooling
    from coreset_bench.tracks.pooling import PoolingTrack

    demand = pooling.synth_sessions("hourly", days=2, seed=3).demand
    for probe in ("stack", "memory"):
        with pytest.raises(RuntimeError, match="found the future"):
            pooling.run_method(FutureThief().with_params(probe=probe), demand, start_step=1440, lead=5, decision_every=5)
    run = pooling.run_method(SneakyOracle(), demand, start_step=1440, lead=5, decision_every=5)  # reads method.privileged
    assert run.plans and np.array_equal(run.plans[0], demand[1440 : 1440 + 10].astype(np.float64))
    assert PoolingTrack.declared_privileged(SneakyOracle()) is False
    from coreset_bench import registry

    assert PoolingTrack.declared_privileged(registry.method("oracle")) is True


@pytest.mark.parametrize("kind", ["diurnal", "scheduled", "bursty", "hourly", "overdispersed"])
def test_every_generated_trace_kind_is_seeded_through_the_salt(kind, tmp_path):
    """Each synthetic kind: with public seeds the trace is the public formula's; with a salt it
    is another trace, one per salt, and the same one again with the same salt (the run
    reproduces from the salt it records)."""
    from coreset_bench import pooling
    from coreset_bench.cells import CellContext
    from coreset_bench.tracks.pooling import PoolingTrack

    assert kind in pooling.SYNTH_KINDS
    track = PoolingTrack()
    prof = track.profile("quick@2")
    ref = f"synth-sessions:{kind}"
    ctx = [CellContext(tmp_path, tmp_path, None, hidden_salt=s) for s in ("", "a" * 32, "b" * 32)]
    public, salted, other = (track.trace(prof, ref, 0, c).demand for c in ctx)
    formula = pooling.synth_sessions(kind, days=int(prof.settings["days"]), seed=track.public_seed(prof, ref, 0)).demand
    assert np.array_equal(public, formula)
    assert not np.array_equal(salted, formula) and not np.array_equal(salted, other)
    assert np.array_equal(salted, track.trace(prof, ref, 0, ctx[1]).demand)


def test_a_trace_read_from_a_file_is_protected_from_the_contestant(tmp_path):
    """``counts-csv:FILE`` / ``azure-functions:PATH`` hold the evaluation days in a file: the
    contestant worker refuses to open it (it is among the cell's protected paths)."""
    import os

    from coreset_bench.cells import Cell, CellContext
    from coreset_bench.tracks.pooling import PoolingTrack

    track = PoolingTrack()
    prof = track.profile("azure@1")
    f = tmp_path / "elsewhere" / "counts.csv"
    for ref, want in ((f"counts-csv:{f}", f), ("azure-functions:traces/az", tmp_path / "data" / "traces" / "az")):
        cell = Cell("pooling", prof.id, "static", "1", {}, {"trace": ref, "lead": 5, "target": 0.99}, 0)
        paths = track.protected(prof, cell, CellContext(tmp_path, tmp_path / "cache", tmp_path / "data"))
        assert os.path.realpath(want) in paths, (ref, paths)
