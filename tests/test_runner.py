"""The runner: cell keys and seeds, failure isolation, resume, determinism, executors, time-outs,
and the no-leakage guard.

Most tests use a tiny in-test track (``fake``) whose cells return metrics computed from the
cell's seed, so no model is trained; the tests of the harness's output checks and of the
leakage guard go through the real ``coreset/tiny@1`` profile.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import numpy as np
import pytest

from coreset_bench import hookimpl
from coreset_bench.kinds import Selection, SelectionMethod
from coreset_bench.runner import default_context, execute, expand, make_plan, run_one
from coreset_bench.store import Store
from coreset_bench.testing import make_selection_view, validate_selection
from coreset_bench.tracks.base import Cell, CellFailure, CellResult, Profile, Track

CALLS: list[str] = []  # cell keys run in this process by the fake track


class FakeTrack(Track):
    name = "fake"
    summary = "metrics from the seed"
    contestant_kind = "selection"
    primary_metric = "score"
    reference_methods = ("random",)

    def profiles(self):
        return [
            Profile("fake", "small", 1, {"size": ["a", "b"], "budget": [0.25, 0.5]}, seeds=(0, 1)),
            Profile("fake", "small", 2, {"size": ["a"], "budget": [0.25]}, seeds=(0,)),
        ]

    def run_cell(self, cell, method, ctx):
        import torch

        from coreset_bench import data as D

        CALLS.append(cell.key)
        view = make_selection_view(n=40, num_classes=4, fraction=float(cell.axes["budget"]), seed=cell.seed, method=method.name)
        with D.contestant_guard(method.name):
            raw = method.select(view)
        try:
            sel = validate_selection(raw, view, method)
        except ValueError as exc:
            raise CellFailure(f"invalid output of plugin {method.name!r}: {exc}") from None
        g = torch.Generator().manual_seed(cell.seed)
        noise = torch.rand(3, generator=g)
        return CellResult(
            metrics={"score": float(noise[0]), "subset_sum": float(sel.indices.sum()), "seed": float(cell.seed)},
            timings={"total_s": 0.0},
            info={"n": len(sel.indices)},
        )


class FirstK(SelectionMethod):
    name = "firstk"
    version = "2"
    params = {"offset": 0}

    def select(self, view):
        return Selection(np.arange(self.params["offset"], self.params["offset"] + view.budget))


class Sleeper(SelectionMethod):
    name = "sleeper"

    def select(self, view):
        time.sleep(60)
        return np.arange(view.budget)


class SlowFirstK(SelectionMethod):
    """Takes a moment per cell, so two runs started together overlap."""

    name = "slowk"

    def select(self, view):
        time.sleep(0.3)
        return np.arange(view.budget)


class Raiser(SelectionMethod):
    name = "raiser"

    def select(self, view):
        raise RuntimeError("kaboom")


class Duplicates(SelectionMethod):
    name = "dupes"

    def select(self, view):
        idx = np.arange(view.budget)
        idx[-1] = 0
        return idx


class OutOfRange(SelectionMethod):
    name = "outofrange"

    def select(self, view):
        return np.arange(view.n - view.budget + 1, view.n + 1)


class TooMany(SelectionMethod):
    name = "toomany"

    def select(self, view):
        return np.arange(view.budget + 1)


class NanWeights(SelectionMethod):
    name = "nanweights"
    weighted = True

    def select(self, view):
        return Selection(np.arange(view.budget), weights=np.full(view.budget, np.nan))


class Peeker(SelectionMethod):
    name = "peeker"

    def select(self, view):
        import coreset_bench.data

        coreset_bench.data.resolve("digits")  # would hand it the test split
        return np.arange(view.budget)


class LowestLoss(SelectionMethod):
    """Reads a signal, so its cells include the shared proxy run."""

    name = "test-lowest-loss"
    signals = frozenset({"loss", "embeddings"})

    def select(self, view):
        return np.sort(np.argsort(view.signals["loss"][-1], kind="stable")[: view.budget])


class _Plugin:
    @hookimpl
    def register_tracks(self, register):
        register(FakeTrack())

    @hookimpl
    def register_methods(self, register):
        for cls in (FirstK, SlowFirstK, Sleeper, Raiser, Duplicates, OutOfRange, TooMany, NanWeights, Peeker, LowestLoss):
            register(cls())


@pytest.fixture
def reg(fresh_plugins):
    fresh_plugins.register(_Plugin(), name="runner-test")
    CALLS.clear()
    return fresh_plugins


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "r.db")
    yield s
    s.close()


def ctx_for(tmp_path, name="results"):
    return default_context(tmp_path / name, "cpu", None)


def fake_plan(reg, store, *names, profile="small@1", references=False, **kw):
    t = reg.track("fake")
    return make_plan(t, t.profile(profile), [reg.method(n) for n in names], store, references=references, **kw)


# ---- keys and seeds --------------------------------------------------------------------------


def base_cell(**over):
    fields = dict(track="coreset", profile="coreset/tiny@1", method="random", method_version="1", params={"class_balanced": False}, axes={"dataset": "digits", "arch": "mlp", "budget": 0.2, "training": "standard"}, repeat=0)
    fields.update(over)
    return Cell(**fields)


def test_cell_key_and_seed_are_stable():
    c = base_cell()
    # pinned: a change here orphans every stored result
    assert c.key == "db9f41f3ba0da7acd0640b20"
    assert c.seed == 467189502
    same = base_cell(params={"class_balanced": False}, axes={"training": "standard", "budget": 0.2, "arch": "mlp", "dataset": "digits"})
    assert (same.key, same.seed) == (c.key, c.seed)  # insensitive to dict order


@pytest.mark.parametrize(
    "change",
    [
        {"params": {"class_balanced": True}},
        {"params": {}},
        {"axes": {"dataset": "digits", "arch": "mlp", "budget": 0.5, "training": "standard"}},
        {"axes": {"dataset": "digits", "arch": "cnn-small", "budget": 0.2, "training": "standard"}},
        {"repeat": 1},
        {"method_version": "2"},
        {"method": "el2n"},
        {"profile": "coreset/tiny@2"},
        {"track": "other"},
    ],
)
def test_cell_key_is_sensitive_to_every_field(change):
    assert base_cell(**change).key != base_cell().key


def test_seed_is_shared_across_methods_and_params_but_not_axes_or_repeats():
    c = base_cell()
    assert base_cell(method="el2n", method_version="7", params={"x": 1}).seed == c.seed
    assert base_cell(repeat=1).seed != c.seed
    assert base_cell(axes={"dataset": "digits", "arch": "mlp", "budget": 0.5, "training": "standard"}).seed != c.seed
    assert base_cell(profile="coreset/tiny@2").seed != c.seed


def test_expand_shares_seeds_across_methods(reg):
    t = reg.track("fake")
    prof = t.profile("small@1")
    a = expand(t, prof, reg.method("firstk"))
    b = expand(t, prof, reg.method("raiser"))
    assert len(a) == prof.n_cells() == 8
    assert [c.seed for c in a] == [c.seed for c in b]
    assert len({c.seed for c in a}) == 8 and len({c.key for c in a + b}) == 16
    # params change keys, not seeds
    a2 = expand(t, prof, reg.method("firstk").with_params(offset="1"))
    assert [c.seed for c in a2] == [c.seed for c in a] and not {c.key for c in a2} & {c.key for c in a}


def test_expand_overrides_keep_the_profile_id(reg):
    t = reg.track("fake")
    prof = t.profile("small@1")
    cells = expand(t, prof, reg.method("firstk"), seeds=[5, 6, 7])
    assert len(cells) == 12 and {c.repeat for c in cells} == {5, 6, 7}
    assert {c.profile for c in cells} == {"fake/small@1"}
    with pytest.raises(ValueError, match="no dataset axis"):
        expand(t, prof, reg.method("firstk"), dataset="digits")


def test_plan_adds_reference_cells_once(reg, store):
    with_refs = fake_plan(reg, store, "firstk", references=True)
    assert sorted({p.method.name for p in with_refs.todo}) == ["firstk", "random"]
    assert len(with_refs.todo) == 16
    assert len(fake_plan(reg, store, "firstk").todo) == 8
    assert len(fake_plan(reg, store, "random", references=True).todo) == 8  # no duplicate cells


# ---- execution and failure isolation --------------------------------------------------------


def test_fake_track_cells_run_and_are_stored(reg, store, tmp_path):
    plan = fake_plan(reg, store, "firstk", "raiser")
    outs = execute(plan, store, ctx_for(tmp_path))
    by = {o.cell.key: o for o in outs}
    assert len(outs) == 16 and CALLS == [p.cell.key for p in plan.todo]
    for p in plan.todo:
        o = by[p.cell.key]
        if p.method.name == "firstk":
            assert o.status == "done" and o.metrics["seed"] == p.cell.seed
        else:
            assert o.status == "failed" and o.error == "plugin 'raiser' failed: RuntimeError: kaboom"
    rows = {r["key"]: r for r in store.results()}
    assert {r["status"] for r in rows.values() if r["method"] == "firstk"} == {"done"}
    failed = [r for r in rows.values() if r["method"] == "raiser"]
    assert len(failed) == 8 and all(r["status"] == "failed" and "kaboom" in r["error"] for r in failed)
    tb = store.runs(method="raiser")[0].traceback
    assert "RuntimeError: kaboom" in tb and "select" in tb
    # metrics are paired across methods through the shared seed
    random_plan = fake_plan(reg, store, "random")
    for o in execute(random_plan, store, ctx_for(tmp_path)):
        twin = next(x for x in outs if x.cell.axes == o.cell.axes and x.cell.repeat == o.cell.repeat and x.status == "done")
        assert o.metrics["score"] == twin.metrics["score"]


BAD = {
    "raiser": "plugin 'raiser' failed: RuntimeError: kaboom",
    "dupes": "invalid output of plugin 'dupes': dupes: returned 1 duplicate indices",
    "outofrange": "invalid output of plugin 'outofrange': outofrange: returned index out of range",
    "toomany": "invalid output of plugin 'toomany': toomany: returned 73 indices for a budget of 72",
    "nanweights": "invalid output of plugin 'nanweights': nanweights: returned non-finite weights",
}


def test_invalid_outputs_fail_their_cells_and_the_others_finish(reg, store, tmp_path):
    t = reg.track("coreset")
    prof = t.profile("tiny@1")
    one_budget = Profile(prof.track, prof.name, prof.version, {**prof.axes, "budget": [0.2]}, prof.seeds, prof.settings)
    methods = [reg.method(n) for n in ("random", *BAD)]
    plan = make_plan(t, one_budget, methods, store, references=False)
    assert len(plan.todo) == 6
    outs = {o.cell.method: o for o in execute(plan, store, ctx_for(tmp_path))}
    assert outs["random"].status == "done" and 0.0 <= outs["random"].metrics["clean_acc"] <= 1.0
    for name, msg in BAD.items():
        assert outs[name].status == "failed", name
        assert outs[name].error.startswith(msg), outs[name].error
    stored = {r["method"]: r for r in store.results()}
    assert stored["random"]["status"] == "done" and stored["random"]["metrics"]["subset_size"] == 72
    assert all(stored[n]["status"] == "failed" and stored[n]["error"].startswith(BAD[n]) for n in BAD)


def test_a_method_that_loads_a_dataset_during_select_fails_with_leakage_error(reg, store, tmp_path):
    t = reg.track("coreset")
    plan = make_plan(t, t.profile("tiny@1"), [reg.method("peeker")], store, references=False)
    outs = execute(plan, store, ctx_for(tmp_path))
    assert [o.status for o in outs] == ["failed", "failed"]
    for o in outs:
        assert o.error.startswith("LeakageError: plugin 'peeker' tried to load dataset 'digits' while it was being evaluated")
    # the guard is lifted after the cell: the harness itself can load data again
    from coreset_bench import data as D

    assert D.resolve("digits").x_test is not None


# ---- resume -------------------------------------------------------------------------------


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_resume_after_an_interrupted_run_runs_only_missing_cells(reg, store, tmp_path):
    plan = fake_plan(reg, store, "firstk")
    done_first: list[str] = []

    def stop_after_three(out):
        done_first.append(out.cell.key)
        if len(done_first) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(plan, store, ctx_for(tmp_path), on_done=stop_after_three)
    gc.collect()  # the executor's generator must close cleanly (no "generator ignored GeneratorExit")
    assert store.done_keys() == set(done_first)
    # issue 23: cells cut by Ctrl-C have their own status, never `failed`
    assert store.runs(status="failed") == []
    interrupted = store.runs(status="interrupted")
    assert len(interrupted) == 5 and all(r.error.startswith("interrupted (Ctrl-C)") for r in interrupted)

    # a crashed driver leaves rows `running`: simulate one by restarting a pending cell by hand
    rest = fake_plan(reg, store, "firstk")
    assert len(rest.done) == 3 and len(rest.todo) == 5
    stale = rest.todo[0]
    store.start(stale.cell, stale.method, {})
    assert store.runs(status="running")[0].key == stale.cell.key
    CALLS.clear()
    outs = execute(fake_plan(reg, store, "firstk"), store, ctx_for(tmp_path))
    assert sorted(CALLS) == sorted(p.cell.key for p in rest.todo)
    assert all(o.status == "done" for o in outs)
    assert store.done_keys() == {p.cell.key for p in plan.todo}
    assert len(store.runs()) == 8  # rows reused, no duplicates
    assert {r.key: r.attempts for r in store.runs()}[stale.cell.key] == 3
    # nothing left: a third run plans nothing
    again = fake_plan(reg, store, "firstk")
    assert again.todo == [] and len(again.done) == 8


_FORK_SIGINT = r"""
import os, pathlib, signal, sys
sys.path.insert(0, {tests!r})
from coreset_bench import registry
registry.load_plugins()
import test_runner as T
registry.register(T._Plugin(), name="runner-test")
from coreset_bench.runner import execute, make_plan
from coreset_bench.store import Store
store = Store({db!r})
t = registry.track("fake")
plan = make_plan(t, t.profile("small@1"), [registry.method("firstk")], store, references=False)
sent = []

def ctrl_c_inside_fork():
    if not sent:
        sent.append(1)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C landing while the pool forks its first worker

os.register_at_fork(after_in_parent=ctrl_c_inside_fork)
try:
    execute(plan, store, T.ctx_for(pathlib.Path({tmp!r})), jobs=2, executor="process")
    print("COMPLETED")
except KeyboardInterrupt as exc:
    print("INTERRUPTED", getattr(exc, "interrupted", None))
print("STATUSES", sorted({{r.status for r in store.runs()}}))
"""


def test_a_sigint_held_during_a_fork_is_raised_after_it():
    """The fast check of the mechanism below: a SIGINT inside ``_sigint_held`` is recorded, not
    raised there, and raised as KeyboardInterrupt when the block ends; none, nothing raised."""
    import os
    import signal

    from coreset_bench.runner import _sigint_held

    reached = []
    with pytest.raises(KeyboardInterrupt):
        with _sigint_held():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the Python handler runs at a bytecode boundary in here
                pass
            reached.append("end of block")
    assert reached == ["end of block"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with _sigint_held():
        pass


@pytest.mark.slow
def test_ctrl_c_while_the_pool_forks_a_worker_is_not_lost(tmp_path):
    """A Ctrl-C that landed inside os.fork() ran Python's SIGINT handler in an at-fork callback,
    which ignores exceptions: the KeyboardInterrupt was printed as 'Exception ignored' and the
    run went on to the end (seen with `coreset-bench run` at the default --jobs)."""
    import subprocess
    import sys

    script = _FORK_SIGINT.format(tests=str(Path(__file__).parent), db=str(tmp_path / "r.db"), tmp=str(tmp_path))
    env = {**__import__("os").environ, "CORESET_BENCH_LOAD_PLUGINS": "core,random,full,standard", "CORESET_BENCH_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert "INTERRUPTED" in res.stdout, (res.stdout, res.stderr[-2000:])
    assert "STATUSES ['interrupted']" in res.stdout, res.stdout
    assert "Exception ignored" not in res.stderr


def test_ctrl_c_right_after_a_claim_is_committed_leaves_no_cell_running(reg, store, tmp_path, monkeypatch):
    """Ctrl-C can land between the commit of a cell's claim and the runner noting that it holds
    the cell (the entry-point test hit this window: a cell stayed `running`). Every cell this
    run holds is then marked interrupted, never failed and never left running."""
    from coreset_bench.runner import RunInterrupted

    plan = fake_plan(reg, store, "firstk")
    real = Store.claim
    calls = []

    def claim_then_interrupt(self, cell, method, env):
        state = real(self, cell, method, env)
        calls.append(cell.key)
        if len(calls) == 3:  # committed, but the caller never sees the answer
            raise KeyboardInterrupt
        return state

    monkeypatch.setattr(Store, "claim", claim_then_interrupt)
    with pytest.raises(RunInterrupted) as info:
        execute(plan, store, ctx_for(tmp_path))
    assert store.runs(status="running") == [] and store.runs(status="failed") == []
    assert sorted(r.key for r in store.runs(status="interrupted")) == sorted(calls)
    assert info.value.interrupted == 3
    # a run on the same database leaves another owner's running cell alone
    other = Store(tmp_path / "r.db")
    monkeypatch.setattr(Store, "claim", real)
    rest = fake_plan(reg, other, "firstk")
    assert other.claim(rest.todo[0].cell, rest.todo[0].method, {}) == "claimed"
    assert store.interrupt_running([p.cell.key for p in rest.todo], "x") == 0
    assert other.runs(status="running")[0].key == rest.todo[0].cell.key
    other.close()


# ---- determinism and executors ----------------------------------------------------------------


def test_the_same_coreset_cell_twice_gives_identical_metrics(reg, tmp_path):
    t = reg.track("coreset")
    m = reg.method("test-lowest-loss")
    cell = expand(t, t.profile("tiny@1"), m)[0]
    r1 = run_one("coreset", m.name, {}, cell, ctx_for(tmp_path, "a"))
    r2 = run_one("coreset", m.name, {}, cell, ctx_for(tmp_path, "b"))
    assert r1.info["proxy_shared"] is False and r2.info["proxy_shared"] is False  # both computed the proxy
    assert (tmp_path / "b" / "cache" / "signals" / r2.info["proxy_key"]).is_dir()
    assert r1.metrics == r2.metrics
    assert r1.info["subset_sha256"] == r2.info["subset_sha256"]
    assert [a.data for a in r1.artifacts] == [a.data for a in r2.artifacts]
    assert r1.timings["proxy_s"] > 0 and r1.timings["selection_s"] >= r1.timings["proxy_s"]
    # a third run reads the cache, records the proxy cost as shared, and agrees
    r3 = run_one("coreset", m.name, {}, cell, ctx_for(tmp_path, "a"))
    assert r3.info["proxy_shared"] is True and r3.timings["proxy_s"] == r1.timings["proxy_s"]
    assert r3.metrics == r1.metrics


def test_process_executor_with_two_jobs_matches_in_process(reg, tmp_path):
    s1, s2 = Store(tmp_path / "in.db"), Store(tmp_path / "proc.db")
    inproc = execute(fake_plan(reg, s1, "firstk", "raiser"), s1, ctx_for(tmp_path, "r1"))
    pooled = execute(fake_plan(reg, s2, "firstk", "raiser"), s2, ctx_for(tmp_path, "r2"), jobs=2)
    a = {o.cell.key: (o.status, o.metrics, o.error) for o in inproc}
    b = {o.cell.key: (o.status, o.metrics, o.error) for o in pooled}
    assert a == b and len(a) == 16
    assert {r["key"]: r["metrics"] for r in s1.results()} == {r["key"]: r["metrics"] for r in s2.results()}


def test_a_cell_past_its_time_out_fails_and_the_others_finish(reg, store, tmp_path):
    plan = fake_plan(reg, store, "sleeper", "firstk", profile="small@2")
    t0 = time.perf_counter()
    outs = {o.cell.method: o for o in execute(plan, store, ctx_for(tmp_path), timeout_s=1.5)}
    assert time.perf_counter() - t0 < 30
    assert outs["sleeper"].status == "failed"
    assert outs["sleeper"].error == "plugin 'sleeper' timed out: the cell ran past its 1.5 s limit"
    assert outs["firstk"].status == "done"
    assert {r["method"]: r["status"] for r in store.results()} == {"sleeper": "failed", "firstk": "done"}


def test_dataset_override_is_its_own_profile(tmp_path):
    """--dataset runs the profile's protocol on other data under a derived profile id, which the
    track resolves again (to run cells) and the leaderboard renders as its own board."""
    import numpy as np
    from PIL import Image

    from coreset_bench import plugins as P
    from coreset_bench.leaderboard.render import render_site
    from coreset_bench.runner import default_context, execute, make_plan
    from coreset_bench.store import Store

    root = tmp_path / "tree"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(30):
            base = 40 if c == "a" else 200
            Image.fromarray((base + rng.integers(0, 30, (8, 8, 3))).astype(np.uint8)).save(root / c / f"{i}.png")
    P.load_plugins()
    track = P.track("coreset")
    prof = track.profile("tiny")
    store = Store(tmp_path / "o.db")
    ref = f"imagefolder:{root}"
    plan = make_plan(track, prof, [P.method("random")], store, dataset=ref)
    assert plan.profile.id == f"coreset/tiny:{ref}@1"
    assert {p.cell.profile for p in plan.todo} == {plan.profile.id}
    assert track.profile(plan.profile.id).axes["dataset"] == [ref]
    outs = execute(plan, store, default_context(tmp_path, "cpu", None))
    assert all(o.status == "done" for o in outs), [o.error for o in outs]
    assert all(o.metrics["clean_acc"] > 0.9 for o in outs)  # two well-separated classes
    report = render_site(store, tmp_path / "site")
    assert not any("outside the profile" in w for w in report.warnings)
    assert any("tiny" in p.name for p in report.pages)


def test_parallel_executors_start_the_costliest_cells_first(reg, store, tmp_path, monkeypatch):
    """Cells are handed to a pool by the track's cost hint, highest first, in plan order within a
    cost; the in-process executor keeps the plan order."""
    from coreset_bench import runner

    track = reg.track("fake")
    monkeypatch.setattr(type(track), "cost_hint", lambda self, cell: 3.0 if cell.axes["size"] == "b" else 1.0, raising=False)
    seen = {}

    def capture(name):
        def run(self, items, on_progress):
            seen[name] = [p.cell for p in items]
            return iter(())

        return run

    monkeypatch.setattr(runner.ProcessExecutor, "run", capture("pool"))
    monkeypatch.setattr(runner.InProcessExecutor, "run", capture("inprocess"))
    plan = fake_plan(reg, store, "firstk")
    execute(plan, store, ctx_for(tmp_path), jobs=2)
    sizes = [c.axes["size"] for c in seen["pool"]]
    assert sizes == ["b"] * 4 + ["a"] * 4
    planned_b = [p.cell.key for p in plan.todo if p.cell.axes["size"] == "b"]
    assert [c.key for c in seen["pool"][:4]] == planned_b  # stable within a cost
    store2 = Store(tmp_path / "other.db")
    plan2 = fake_plan(reg, store2, "firstk")
    execute(plan2, store2, ctx_for(tmp_path, "b"), jobs=1)
    assert [c.key for c in seen["inprocess"]] == [p.cell.key for p in plan2.todo]


# ---- two runs on one database (issue 24, item 11) ---------------------------------------------


def _run_in_child(db: str, results: str, go, out) -> None:
    from coreset_bench import registry

    CALLS.clear()
    store = Store(db)
    t = registry.track("fake")
    plan = make_plan(t, t.profile("small@1"), [registry.method("slowk")], store, references=False)
    go.wait(30)
    outs = execute(plan, store, default_context(Path(results), "cpu", None))
    out.put((list(CALLS), sorted((o.cell.key, o.status, o.metrics.get("score")) for o in outs)))


def test_two_processes_on_one_database_compute_each_cell_once(reg, tmp_path):
    """README: two runs on one database compute each cell once and store no duplicated rows.

    Both processes plan all 8 cells while none is done, then start together; the lease makes
    each cell run in exactly one of them, and the other reports the stored result.
    """
    import multiprocessing as mp
    import sqlite3

    db = str(tmp_path / "shared.db")
    Store(db).close()
    ctx = mp.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_run_in_child, args=(db, str(tmp_path / f"res{i}"), go, out)) for i in range(2)]
    for p in procs:
        p.start()
    time.sleep(0.5)
    go.set()
    got = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    (calls_a, outs_a), (calls_b, outs_b) = got
    keys = [c.key for c in expand(reg.track("fake"), reg.track("fake").profile("small@1"), reg.method("slowk"))]
    assert len(keys) == 8
    assert sorted(calls_a + calls_b) == sorted(keys)  # every cell computed exactly once
    assert outs_a == outs_b and [k for k, _s, _v in outs_a] == sorted(keys)  # both report every cell
    assert all(s == "done" and v is not None for _k, s, v in outs_a)
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT key), SUM(status = 'done') FROM run").fetchone() == (8, 8, 8)
        assert con.execute("SELECT COUNT(*) FROM (SELECT run_id, name FROM metric GROUP BY run_id, name HAVING COUNT(*) > 1)").fetchone() == (0,)
        assert con.execute("SELECT MAX(attempts) FROM run").fetchone() == (1,)
    finally:
        con.close()


@pytest.mark.parametrize("release", ["finish", "fail"])
def test_a_run_waits_for_a_cell_another_live_run_holds(reg, tmp_path, monkeypatch, release):
    """Held elsewhere: not computed here; its stored result is reported once the holder finishes
    it, or it is computed here once the holder fails it."""
    import threading

    from coreset_bench import runner

    monkeypatch.setattr(runner, "WAIT_POLL_S", 0.05)
    db = tmp_path / "r.db"
    other, mine = Store(db), Store(db)
    plan = fake_plan(reg, mine, "firstk")
    held = plan.todo[0]
    assert other.claim(held.cell, held.method, {}) == "claimed"
    if release == "finish":
        act = lambda: other.finish(held.cell.key, metrics={"score": 0.125}, timings={}, info={})  # noqa: E731
    else:
        act = lambda: other.fail(held.cell.key, "boom", None)  # noqa: E731
    timer = threading.Timer(0.5, act)
    timer.start()
    outs = execute(plan, mine, ctx_for(tmp_path))
    timer.join()
    assert len(outs) == len(plan.todo) and all(o.status == "done" for o in outs)
    (held_out,) = [o for o in outs if o.cell.key == held.cell.key]
    rest = sorted(p.cell.key for p in plan.todo[1:])
    if release == "finish":
        assert sorted(CALLS) == rest  # never computed here
        assert held_out.metrics == {"score": 0.125} and held_out.elsewhere
    else:
        assert sorted(CALLS) == sorted(rest + [held.cell.key]) and CALLS[-1] == held.cell.key
    assert {r.key: r.attempts for r in mine.runs()}[held.cell.key] == (1 if release == "finish" else 2)
